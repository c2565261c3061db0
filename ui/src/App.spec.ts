import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import App from './App.svelte';
import { chatManager } from './lib/managers/chat.svelte';
import { compareManager } from './lib/managers/compare.svelte';
import { curationManager } from './lib/managers/curation.svelte';
import { datanetsManager } from './lib/managers/datanets.svelte';
import { datasetsManager } from './lib/managers/datasets.svelte';
import { finetuneForm } from './lib/managers/finetune.svelte';
import { jobsManager } from './lib/managers/jobs.svelte';
import { modelsManager } from './lib/managers/models.svelte';
import { runsManager } from './lib/managers/runs.svelte';
import { router } from './lib/router.svelte';
import { FakeTransport, flush } from './lib/testing/fake-transport';

let app: ReturnType<typeof mount> | null = null;
let target: HTMLElement;

async function start(hash: string) {
  window.location.hash = hash;
  const api = new FakeTransport();
  router.start(window);
  modelsManager.connect(api);
  chatManager.connect(api);
  compareManager.connect(api);
  runsManager.connect(api);
  finetuneForm.connect(api);
  datanetsManager.connect(api);
  curationManager.connect(api);
  datasetsManager.connect(api);
  await jobsManager.connect(api);
  app = mount(App, { target, props: { client: api } });
  flushSync();
  await flush();
  return api;
}

async function go(hash: string) {
  window.location.hash = hash;
  window.dispatchEvent(new HashChangeEvent('hashchange'));
  flushSync();
  await flush();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  if (app) unmount(app);
  app = null;
  router.stop();
  jobsManager.disconnect();
  modelsManager.disconnect();
  chatManager.disconnect();
  compareManager.disconnect();
  runsManager.disconnect();
  finetuneForm.disconnect();
  finetuneForm.reset();
  datanetsManager.disconnect();
  datanetsManager.reset();
  curationManager.disconnect();
  datasetsManager.disconnect();
  datasetsManager.reset();
  target.remove();
});

describe('App shell', () => {
  it('shows the product name and the seven screens in order', async () => {
    await start('#/models');
    expect(target.querySelector('.sidebar')?.textContent).toContain('ModelFactory');
    const nav = [...target.querySelectorAll<HTMLAnchorElement>('[data-nav]')];
    expect(nav.map((a) => a.dataset.nav)).toEqual(['datanets', 'datasets', 'finetune', 'chat', 'models', 'publish', 'settings']);
    expect(nav.map((a) => a.getAttribute('href'))).toEqual([
      '#/datanets',
      '#/datasets',
      '#/finetune',
      '#/chat',
      '#/models',
      '#/publish',
      '#/settings',
    ]);
    expect(target.querySelector('[data-nav="models"]')?.getAttribute('aria-current')).toBe('page');
    expect(target.querySelector('[data-testid="jobs-indicator"]')).not.toBeNull();
  });

  it('defaults to the Models screen', async () => {
    await start('');
    expect(window.location.hash).toBe('#/models');
    expect(target.querySelector('[data-screen="models"] h1')?.textContent).toBe('Models');
  });

  it('shows each not-built screen honestly, with no controls', async () => {
    await start('#/models');
    for (const [id, title] of [['publish', 'Publish']] as const) {
      await go(`#/${id}`);
      const screen = target.querySelector(`[data-screen="${id}"]`);
      expect(screen, id).not.toBeNull();
      expect(screen!.querySelector('h1')?.textContent).toBe(title);
      expect(screen!.querySelector('[data-not-built]')?.textContent).toMatch(/^\s*Not built yet\./);
      expect(screen!.querySelectorAll('input, button, select, textarea')).toHaveLength(0);
      expect(screen!.querySelector('[data-testid="cli"]')?.textContent).toContain('planned');
      expect(target.querySelector(`[data-nav="${id}"]`)?.getAttribute('aria-current')).toBe('page');
    }
    await go('#/publish');
    expect(target.querySelector('[data-not-built]')?.textContent).toContain('modelfactory publish');
  });

  it('opens the Fine-tune screen: the new-run form, the runs list and one run', async () => {
    const api = await start('#/finetune');
    const screen = () => target.querySelector('[data-screen="finetune"]');
    expect(screen()?.querySelector('h1')?.textContent).toBe('Fine-tune');
    expect(screen()?.querySelector('[data-not-built]')).toBeNull();
    expect(screen()?.getAttribute('data-view')).toBe('new');
    expect(screen()?.querySelector('[data-finetune-start]')).not.toBeNull();
    await go('#/finetune/runs');
    expect(screen()?.getAttribute('data-view')).toBe('runs');
    expect(target.querySelector('[data-testid="runs-empty"]')).not.toBeNull();
    expect(target.querySelector('[data-nav="finetune"]')?.getAttribute('aria-current')).toBe('page');
    await go('#/finetune/runs/missing');
    expect(screen()?.getAttribute('data-view')).toBe('run');
    expect(api.callsOf('getRun')).toEqual([['missing']]);
    expect(target.querySelector('[data-testid="run-load-error"]')?.textContent).toContain('no run with id "missing"');
  });

  it('opens the Datanets screen with the hub listing', async () => {
    const api = await start('#/datanets');
    const screen = target.querySelector('[data-screen="datanets"]');
    expect(screen?.querySelector('h1')?.textContent).toBe('Datanets');
    expect(screen?.querySelector('[data-not-built]')).toBeNull();
    expect(api.callsOf('searchHub')).toEqual([['']]);
    expect(screen?.querySelector('[data-hub-datanet="modelfactory/python-faq"]')).not.toBeNull();
    expect(screen?.querySelector('[data-testid="cli"]')?.textContent).toContain('modelfactory datanet list');
  });

  it('opens the Datasets screen: the overview, one Datanet and one dataset', async () => {
    const api = await start('#/datasets');
    const screen = () => target.querySelector('[data-screen="datasets"]');
    expect(screen()?.querySelector('h1')?.textContent).toBe('Datasets');
    expect(screen()?.querySelector('[data-not-built]')).toBeNull();
    expect(screen()?.getAttribute('data-view')).toBe('overview');
    expect(screen()?.querySelector('[data-testid="cli"]')?.textContent).toContain('modelfactory dataset list');
    await go('#/datasets/curate/modelfactory/python-faq');
    expect(screen()?.getAttribute('data-view')).toBe('curate');
    expect(api.callsOf('datanetRows')[0]?.[0]).toBe('modelfactory/python-faq');
    expect(target.querySelector('[data-testid="rows-error"]')?.textContent).toContain('no Datanet modelfactory/python-faq');
    await go('#/datasets/named/faq-accepted');
    expect(screen()?.getAttribute('data-view')).toBe('named');
    expect(api.callsOf('datasetRows')[0]).toEqual(['faq-accepted', 0, 200]);
  });

  it('opens the Chat screen', async () => {
    await start('#/models');
    await go('#/chat');
    const screen = target.querySelector('[data-screen="chat"]');
    expect(screen?.querySelector('h1')?.textContent).toBe('Chat');
    expect(screen?.querySelector('[data-not-built]')).toBeNull();
    expect(screen?.querySelector('[data-chat-input]')).not.toBeNull();
  });

  it('switches to Settings', async () => {
    await start('#/models');
    await go('#/settings');
    expect(target.querySelector('[data-screen="settings"] h1')?.textContent).toBe('Settings');
    expect(target.querySelector('[data-screen="models"]')).toBeNull();
  });
});
