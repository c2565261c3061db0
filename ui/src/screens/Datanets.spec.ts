import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { datanetsManager } from '../lib/managers/datanets.svelte';
import { jobsManager } from '../lib/managers/jobs.svelte';
import { router } from '../lib/router.svelte';
import { FakeTransport, datanetCard, datanetListing, flush, jobEvent, localDatanet } from '../lib/testing/fake-transport';
import Datanets from './Datanets.svelte';

let mounted: ReturnType<typeof mount> | null = null;
let target: HTMLElement;
let api: FakeTransport;

async function render(setup: (api: FakeTransport) => void = () => {}) {
  window.location.hash = '#/datanets';
  router.start(window);
  api = new FakeTransport();
  setup(api);
  datanetsManager.connect(api);
  await jobsManager.connect(api);
  mounted = mount(Datanets, { target });
  await settle();
}

async function settle() {
  for (let i = 0; i < 3; i++) {
    flushSync();
    await flush();
  }
  flushSync();
}

function $(selector: string): HTMLElement {
  const el = target.querySelector<HTMLElement>(selector);
  if (!el) throw new Error(`nothing matches ${selector}`);
  return el;
}

function input(selector: string, value: string) {
  const el = $(selector) as HTMLInputElement;
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  if (mounted) unmount(mounted);
  mounted = null;
  router.stop();
  jobsManager.disconnect();
  datanetsManager.disconnect();
  datanetsManager.reset();
  target.remove();
});

describe('Datanets screen', () => {
  it('lists the hub and searches it', async () => {
    await render((api) => {
      api.hub = [datanetListing(), datanetListing({ id: 'someone/rust-faq', tags: ['rust'], description: 'About Rust', license: 'MIT' })];
      api.datanets = [localDatanet({ id: 'someone/rust-faq' })];
    });
    expect($('h1').textContent).toBe('Datanets');
    expect(api.callsOf('searchHub')).toEqual([['']]);
    const rust = $('[data-hub-datanet="someone/rust-faq"]');
    expect(rust.textContent).toContain('About Rust');
    expect(rust.textContent).toContain('MIT');
    expect(rust.textContent).toContain('rust');
    expect(rust.querySelector('[data-pulled]')?.textContent).toBe('Pulled');
    expect($('[data-hub-datanet="modelfactory/python-faq"]').querySelector('[data-pulled]')).toBeNull();

    input('[data-testid="hub-search"]', 'python');
    $('[data-testid="hub-search-submit"]').click();
    await settle();
    expect(api.callsOf('searchHub').at(-1)).toEqual(['python']);
    expect(target.querySelectorAll('[data-hub-datanet]')).toHaveLength(1);

    input('[data-testid="hub-search"]', 'cobol');
    $('[data-testid="hub-search-submit"]').click();
    await settle();
    expect($('[data-testid="hub-empty"]').textContent).toContain('cobol');
  });

  it('shows a card, pulls the Datanet with a live progress bar, then offers curation', async () => {
    await render((api) => {
      api.cards['modelfactory/python-faq'] = datanetCard({ readme: '# Python FAQ\nShort answers.' });
    });
    $('[data-hub-datanet="modelfactory/python-faq"]').click();
    await settle();
    const card = $('[data-testid="datanet-card"]');
    expect(card.querySelector('h2')?.textContent).toBe('Python FAQ');
    expect(card.querySelector('[data-field="rows"]')?.getAttribute('data-value')).toBe('240');
    expect(card.querySelector('[data-field="domain"]')?.textContent).toBe('programming');
    expect(card.querySelector('[data-field="license"]')?.textContent).toBe('CC-BY-4.0');
    expect(card.querySelectorAll('[data-shard]')).toHaveLength(2);
    expect(card.querySelector('[data-shard="shards/00000.parquet"]')?.textContent).toContain('20.5 kB');
    expect(card.querySelectorAll('[data-contributor]')).toHaveLength(3);
    expect(card.querySelector('[data-testid="datanet-readme"]')?.textContent).toContain('Short answers.');
    expect(card.querySelector('[data-testid="open-curation"]')).toBeNull();
    const footer = $('[data-testid="cli"]').textContent;
    expect(footer).toContain('modelfactory datanet show modelfactory/python-faq');
    expect(footer).toContain('modelfactory datanet pull modelfactory/python-faq');

    $('[data-testid="pull-datanet"]').click();
    await settle();
    expect(api.callsOf('pullDatanet')).toEqual([['modelfactory/python-faq']]);
    const jobId = api.jobs[0]!.id;
    const bar = () => $('[data-testid="pull-progress"] [role="progressbar"]');
    expect(bar().getAttribute('aria-valuenow')).toBe('0');
    expect(bar().getAttribute('aria-label')).toBe('Pull progress');

    api.push(jobEvent({ job_id: jobId, seq: 1, state: 'running', fraction: 0.5, message: 'downloading shards/00001.parquet', figures: { bytes: 16_384, bytes_total: 32_768 } }));
    await settle();
    expect(bar().getAttribute('aria-valuenow')).toBe('50');
    expect($('[data-testid="pull-progress"]').textContent).toContain('downloading shards/00001.parquet');
    expect($('[data-testid="pull-progress"]').textContent).toContain('16.4 kB of 32.8 kB');
    expect(($('[data-testid="pull-datanet"]') as HTMLButtonElement).disabled).toBe(true);

    api.datanets = [localDatanet()];
    api.push(jobEvent({ job_id: jobId, seq: 2, state: 'succeeded', fraction: 1, message: 'verified 2 shards' }));
    await settle();
    expect($('[data-testid="pull-progress"]').getAttribute('data-state')).toBe('succeeded');
    expect(bar().getAttribute('aria-valuenow')).toBe('100');
    expect($('[data-testid="open-curation"]').getAttribute('href')).toBe('#/datasets/curate/modelfactory/python-faq');
    expect($('[data-testid="pull-datanet"]').textContent).toContain('Pull again');
    const row = $('[data-local-datanet="modelfactory/python-faq"]');
    expect(row.querySelector('[data-field="rows"]')?.getAttribute('data-value')).toBe('240');
    expect(row.querySelector('a')?.getAttribute('href')).toBe('#/datasets/curate/modelfactory/python-faq');
  });

  it('shows why a card or a pull failed', async () => {
    await render((api) => {
      api.failures.hubCard = new ApiException('the hub answered 500', 'Try again later');
    });
    $('[data-hub-datanet="modelfactory/python-faq"]').click();
    await settle();
    expect($('[data-testid="card-error"]').textContent).toContain('Try again later');
    $('[data-hub-datanet="modelfactory/python-faq"]').click();
    await settle();
    api.failures.pullDatanet = new ApiException('disk full', null);
    $('[data-testid="pull-datanet"]').click();
    await settle();
    expect($('[data-testid="pull-error"]').textContent).toContain('disk full');
  });

  it('imports a file as a local Datanet', async () => {
    await render();
    expect($('[data-testid="local-empty"]')).not.toBeNull();
    input('[data-testid="import-path"]', '/data/rows.jsonl');
    input('[data-testid="import-name"]', 'support');
    $('[data-testid="import-submit"]').click();
    await settle();
    expect(api.callsOf('importDatanet')).toEqual([['/data/rows.jsonl', 'support']]);
    expect($('[data-testid="import-notice"]').textContent).toContain('local/support');
    expect($('[data-local-datanet="local/support"]')).not.toBeNull();

    api.failures.importDatanet = new ApiException('line 3: not JSON', null);
    input('[data-testid="import-path"]', '/data/bad.jsonl');
    input('[data-testid="import-name"]', 'bad');
    $('[data-testid="import-submit"]').click();
    await settle();
    expect($('[data-testid="import-error"]').textContent).toContain('line 3: not JSON');
  });
});
