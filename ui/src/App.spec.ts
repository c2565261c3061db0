import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import App from './App.svelte';
import { attributionManager } from './lib/managers/attribution.svelte';
import { chatManager } from './lib/managers/chat.svelte';
import { compareManager } from './lib/managers/compare.svelte';
import { curationManager } from './lib/managers/curation.svelte';
import { datanetsManager } from './lib/managers/datanets.svelte';
import { datasetsManager } from './lib/managers/datasets.svelte';
import { finetuneForm } from './lib/managers/finetune.svelte';
import { jobsManager } from './lib/managers/jobs.svelte';
import { chainManager } from './lib/managers/chain.svelte';
import { modelsManager } from './lib/managers/models.svelte';
import { publishManager } from './lib/managers/publish.svelte';
import { runsManager } from './lib/managers/runs.svelte';
import { verifyManager } from './lib/managers/verify.svelte';
import { walletManager } from './lib/managers/wallet.svelte';
import { router } from './lib/router.svelte';
import { FakeTransport, flush, runSummary, walletAccount } from './lib/testing/fake-transport';

let app: ReturnType<typeof mount> | null = null;
let target: HTMLElement;

async function start(hash: string, setup: (api: FakeTransport) => void = () => {}) {
  window.location.hash = hash;
  const api = new FakeTransport();
  setup(api);
  router.start(window);
  modelsManager.connect(api);
  chatManager.connect(api);
  compareManager.connect(api);
  runsManager.connect(api);
  finetuneForm.connect(api);
  attributionManager.connect(api);
  datanetsManager.connect(api);
  curationManager.connect(api);
  datasetsManager.connect(api);
  walletManager.connect(api);
  chainManager.connect(api);
  publishManager.connect(api);
  verifyManager.connect(api);
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
  attributionManager.disconnect();
  datanetsManager.disconnect();
  datanetsManager.reset();
  curationManager.disconnect();
  datasetsManager.disconnect();
  datasetsManager.reset();
  walletManager.disconnect();
  chainManager.disconnect();
  publishManager.disconnect();
  publishManager.reset();
  verifyManager.disconnect();
  verifyManager.reset();
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

  it('opens the Publish screen: publishing a run and verifying an adapter', async () => {
    const api = await start('#/publish', (api) => {
      api.runs = [runSummary({ state: 'finished', adapter: '/ws/runs/run-1/adapter' })];
      api.accounts = [walletAccount(1)];
    });
    const screen = () => target.querySelector('[data-screen="publish"]');
    expect(screen()?.querySelector('h1')?.textContent).toBe('Publish');
    expect(screen()?.querySelector('[data-not-built]')).toBeNull();
    expect(screen()?.getAttribute('data-view')).toBe('publish');
    expect(target.querySelector<HTMLSelectElement>('[data-testid="publish-run"]')?.value).toBe('run-1');
    expect(target.querySelector<HTMLSelectElement>('[data-testid="publish-account"]')?.value).toBe(walletAccount(1).address);
    expect(api.callsOf('publication')).toEqual([['run-1']]);
    expect(screen()?.querySelector('[data-testid="cli"]')?.textContent).toContain(`modelfactory publish run-1 --address ${walletAccount(1).address}`);
    await go('#/publish/verify');
    expect(screen()?.getAttribute('data-view')).toBe('verify');
    expect(target.querySelector('[data-testid="verify-target"]')).not.toBeNull();
    expect(target.querySelector('[data-nav="publish"]')?.getAttribute('aria-current')).toBe('page');
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
