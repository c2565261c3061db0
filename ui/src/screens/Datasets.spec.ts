import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { STATS_DELAY_MS, curationManager } from '../lib/managers/curation.svelte';
import { datanetsManager } from '../lib/managers/datanets.svelte';
import { datasetsManager } from '../lib/managers/datasets.svelte';
import { jobsManager } from '../lib/managers/jobs.svelte';
import { router } from '../lib/router.svelte';
import { FakeTransport, curatedRow, datasetSummary, flush, localDatanet } from '../lib/testing/fake-transport';
import Datasets from './Datasets.svelte';

const ID = 'modelfactory/python-faq';

let mounted: ReturnType<typeof mount> | null = null;
let target: HTMLElement;
let api: FakeTransport;

async function render(hash: string, setup: (api: FakeTransport) => void = () => {}) {
  window.location.hash = hash;
  router.start(window);
  api = new FakeTransport();
  api.datanets = [localDatanet()];
  setup(api);
  datanetsManager.connect(api);
  curationManager.connect(api);
  datasetsManager.connect(api);
  await jobsManager.connect(api);
  mounted = mount(Datasets, { target });
  await settle();
}

function rows(n: number) {
  return (api: FakeTransport) => {
    api.datanetRowsById[ID] = Array.from({ length: n }, (_, i) => curatedRow(i));
  };
}

async function settle() {
  for (let i = 0; i < 4; i++) {
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

function $$(selector: string): HTMLElement[] {
  return [...target.querySelectorAll<HTMLElement>(selector)];
}

function input(selector: string, value: string) {
  const el = $(selector) as HTMLInputElement | HTMLTextAreaElement;
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

const grid = () => $('[data-testid="curation-table"]');
const row = (cid: string) => $(`[data-testid="curation-table"] [role="row"][data-contribution-id="${cid}"]`);

async function press(key: string, on: HTMLElement = grid()) {
  on.dispatchEvent(new KeyboardEvent('keydown', { key, bubbles: true, cancelable: true }));
  await settle();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  vi.useRealTimers();
  if (mounted) unmount(mounted);
  mounted = null;
  router.stop();
  jobsManager.disconnect();
  datanetsManager.disconnect();
  datanetsManager.reset();
  curationManager.disconnect();
  datasetsManager.disconnect();
  datasetsManager.reset();
  target.remove();
});

describe('Datasets screen: curation', () => {
  it('draws only the rows in view of a Datanet of 100,000 rows, and fetches pages as it scrolls', async () => {
    await render(`#/datasets/curate/${ID}`, rows(100_000));
    expect($('[data-screen="datasets"]').getAttribute('data-view')).toBe('curate');
    expect($('[data-testid="rows-total"]').getAttribute('data-total')).toBe('100000');
    expect(grid().getAttribute('aria-rowcount')).toBe('100001');
    expect(api.callsOf('datanetRows')).toEqual([[ID, { offset: 0, limit: 200 }]]);
    const drawn = $$('[data-testid="curation-table"] [role="rowgroup"].body [role="row"]');
    expect(drawn.length).toBeGreaterThan(5);
    expect(drawn.length).toBeLessThan(40);
    const first = row('c000000');
    expect(first.querySelector('[data-field="status"]')?.textContent).toContain('Unlabeled');
    expect(first.querySelector('[data-field="prompt"]')?.textContent).toContain('How do I do thing 0 in Python?');
    expect(first.querySelector('[data-field="answer"]')?.textContent).toContain('Use the standard library, step 0.');
    expect(first.querySelector('[data-field="contributor"]')?.textContent).toBe('0x0000…0000');

    // scroll half way down: the rows there are asked for, a page of 200
    const viewport = $('[data-testid="curation-table"] .viewport');
    viewport.scrollTop = 50_000 * 36;
    viewport.dispatchEvent(new Event('scroll'));
    await settle();
    const offsets = api.callsOf('datanetRows').map((c) => (c[1] as { offset: number }).offset);
    expect(offsets).toContain(49_800);
    expect(offsets.length).toBeLessThanOrEqual(3);
    expect(row('c050000').getAttribute('aria-rowindex')).toBe('50002');
    expect($$('[data-testid="curation-table"] [role="rowgroup"].body [role="row"]').length).toBeLessThan(40);
  });

  it('labels, rates, tags and edits the selected row from the keyboard', async () => {
    await render(`#/datasets/curate/${ID}`, rows(50));
    expect($('[data-testid="curation-keys"]').textContent).toMatch(/a\s*accept/);
    grid().focus();
    expect(grid().getAttribute('aria-activedescendant')).toBe('curate-row-0');
    await press('a');
    expect(api.callsOf('labelRow')).toEqual([[ID, 'c000000', { status: 'accepted' }]]);
    expect(row('c000000').getAttribute('data-status')).toBe('accepted');
    expect(row('c000000').querySelector('[data-field="status"]')?.textContent).toContain('Accepted');

    await press('j');
    expect(grid().getAttribute('aria-activedescendant')).toBe('curate-row-1');
    await press('r');
    expect(row('c000001').getAttribute('data-status')).toBe('rejected');
    await press('ArrowDown');
    await press('4');
    expect(row('c000002').getAttribute('data-rating')).toBe('4');
    expect(row('c000002').querySelector('[data-field="rating"]')?.getAttribute('aria-label')).toBe('Rated 4 of 5');
    await press('k');
    await press('u');
    expect(row('c000001').getAttribute('data-status')).toBe('unlabeled');

    // t: a tag for the selected row
    await press('t');
    input('[data-testid="tag-input"]', 'Needs Review');
    $('[data-testid="tag-input"]').closest('form')!.dispatchEvent(new Event('submit', { bubbles: true, cancelable: true }));
    await settle();
    expect(row('c000001').querySelector('[data-field="tags"]')?.getAttribute('data-value')).toBe('needs-review');
    expect(target.querySelector('[data-testid="tag-input"]')).toBeNull();

    // e: the editor; Save makes a new version and keeps the original
    await press('e');
    const detail = $('[data-testid="row-detail"]');
    expect(detail.getAttribute('data-contribution-id')).toBe('c000001');
    const output = [...detail.querySelectorAll('label')].find((l) => l.textContent?.startsWith('Output'))!.querySelector('textarea')!;
    expect(output.value).toBe('Use the standard library, step 1.');
    output.value = 'Use itertools.';
    output.dispatchEvent(new Event('input', { bubbles: true }));
    $('[data-testid="save-edit"]').click();
    await settle();
    expect(api.callsOf('editRow')).toEqual([[ID, 'c000001', { instruction: 'How do I do thing 1 in Python?', input: '', output: 'Use itertools.' }]]);
    expect(row('c000001').querySelector('[data-flag="edited"]')).not.toBeNull();
    expect($('[data-testid="row-edited"]').textContent).toContain('Edited, original kept');
    expect($('[data-testid="row-original"]').textContent).toContain('Use the standard library, step 1.');
    expect($('[data-testid="row-content"]').textContent).toContain('Use itertools.');
    expect(document.activeElement).toBe(grid());

    // Escape closes the detail, Enter opens it again
    await press('Escape');
    expect(target.querySelector('[data-testid="row-detail"]')).toBeNull();
    await press('Enter');
    expect($('[data-testid="row-detail"]').getAttribute('data-contribution-id')).toBe('c000001');
  });

  it('labels from the row detail, and shows a refused label', async () => {
    await render(`#/datasets/curate/${ID}`, rows(5));
    row('c000003').dispatchEvent(new MouseEvent('dblclick', { bubbles: true }));
    await settle();
    const detail = $('[data-testid="row-detail"]');
    expect(detail.getAttribute('data-contribution-id')).toBe('c000003');
    detail.querySelector<HTMLElement>('[data-set-status="rejected"]')!.click();
    await settle();
    expect(row('c000003').getAttribute('data-status')).toBe('rejected');
    detail.querySelector<HTMLElement>('[aria-label="Rate 5 of 5"]')!.click();
    await settle();
    expect(row('c000003').getAttribute('data-rating')).toBe('5');
    api.failures.labelRow = new ApiException('the catalog is read-only', 'Check the workspace');
    $('[data-testid="row-detail"] [data-set-status="accepted"]').click();
    await settle();
    expect($('[data-testid="label-error"]').textContent).toContain('the catalog is read-only');
  });

  it('filters and sorts through the studio', async () => {
    await render(`#/datasets/curate/${ID}`, rows(30));
    const status = $('[data-testid="filter-status"]') as HTMLSelectElement;
    status.value = 'unlabeled';
    status.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(api.callsOf('datanetRows').at(-1)?.[1]).toEqual({ status: 'unlabeled', offset: 0, limit: 200 });
    const sort = $('[data-testid="sort"]') as HTMLSelectElement;
    sort.value = 'length';
    sort.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(api.callsOf('datanetRows').at(-1)?.[1]).toEqual({ status: 'unlabeled', sort: 'length', offset: 0, limit: 200 });
    expect($('[data-testid="rows-total"]').textContent).toContain('30 rows match');
    expect($('[data-testid="cli"]').textContent).toContain(`modelfactory dataset rows ${ID} --status unlabeled --sort length`);
    // the contributors of the statistics are the contributor filter's choices
    const contributor = $('[data-testid="filter-contributor"]') as HTMLSelectElement;
    expect([...contributor.options].map((o) => o.value)).toHaveLength(4);
  });

  it('shows the statistics with a length histogram', async () => {
    await render(`#/datasets/curate/${ID}`, (api) => {
      api.datanetRowsById[ID] = [curatedRow(0, { status: 'accepted', pii: ['email'] }), curatedRow(1, { status: 'rejected' }), curatedRow(2)];
    });
    const stats = $('[data-testid="datanet-stats"]');
    expect(stats.querySelector('[data-stat="accepted"]')?.getAttribute('data-value')).toBe('1');
    expect(stats.querySelector('[data-stat="unlabeled"]')?.getAttribute('data-value')).toBe('1');
    expect(stats.querySelector('[data-stat="pii_rows"]')?.getAttribute('data-value')).toBe('1');
    expect(stats.querySelectorAll('[data-testid="length-histogram"] rect')).toHaveLength(4);
    expect(stats.querySelectorAll('[data-contributor]')).toHaveLength(3);
    expect(row('c000000').querySelector('[data-flag="pii"]')).not.toBeNull();
  });

  it('counts the statistics again once labelling from the keyboard pauses', async () => {
    await render(`#/datasets/curate/${ID}`, rows(5));
    const stat = (key: string) => $(`[data-testid="datanet-stats"] [data-stat="${key}"]`).getAttribute('data-value');
    expect(api.callsOf('datanetStats')).toHaveLength(1);
    expect(stat('accepted')).toBe('0');

    // fake timers from here on: settle without waiting on real ones
    vi.useFakeTimers();
    const key = async (k: string, ms = 0) => {
      grid().dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true }));
      for (let i = 0; i < 4; i++) {
        flushSync();
        await vi.advanceTimersByTimeAsync(0);
      }
      await vi.advanceTimersByTimeAsync(ms);
      flushSync();
    };
    grid().focus();
    await key('a', 100);
    await key('j', 100);
    await key('r', 100);
    await key('j');
    await key('a');
    expect(api.callsOf('labelRow')).toHaveLength(3);
    expect(row('c000002').getAttribute('data-status')).toBe('accepted');
    // a burst of keys does not ask for the statistics on every key
    expect(api.callsOf('datanetStats')).toHaveLength(1);
    expect(stat('accepted')).toBe('0');

    await vi.advanceTimersByTimeAsync(STATS_DELAY_MS);
    flushSync();
    expect(api.callsOf('datanetStats')).toHaveLength(2);
    expect(stat('accepted')).toBe('2');
    expect(stat('rejected')).toBe('1');
    expect(stat('unlabeled')).toBe('2');
    expect($('[data-testid="datanet-stats"] [data-stat="accepted"] dd').textContent).toBe('2');
  });

  it('finds duplicates and rejects them', async () => {
    await render(`#/datasets/curate/${ID}`, (api) => {
      const same = { instruction: 'What is a dict?', input: '', output: 'A mapping.' };
      api.datanetRowsById[ID] = [curatedRow(0, { content: same }), curatedRow(1), curatedRow(2, { content: same }), curatedRow(3, { content: same })];
    });
    expect(($('[data-testid="reject-duplicates"]') as HTMLButtonElement).disabled).toBe(true);
    $('[data-testid="find-duplicates"]').click();
    await settle();
    expect(api.callsOf('scanDuplicates')).toEqual([[ID, 0.8, false]]);
    expect($('[data-testid="duplicate-groups"]').getAttribute('data-groups')).toBe('1');
    expect($('[data-testid="duplicate-groups"]').textContent).toContain('2 rows repeat');
    expect(row('c000002').querySelector('[data-flag="duplicate"]')).not.toBeNull();
    const stats = $('[data-testid="datanet-stats"]');
    expect(stats.querySelector('[data-stat="duplicate_rows"]')?.getAttribute('data-value')).toBe('2');
    $('[data-testid="reject-duplicates"]').click();
    await settle();
    expect(api.callsOf('scanDuplicates').at(-1)).toEqual([ID, 0.8, true]);
    expect($('[data-testid="duplicate-groups"]').getAttribute('data-rejected')).toBe('2');
    expect(row('c000003').getAttribute('data-status')).toBe('rejected');
    expect(row('c000000').getAttribute('data-status')).toBe('unlabeled');
    expect(stats.querySelector('[data-stat="rejected"]')?.getAttribute('data-value')).toBe('2');
  });

  it('builds a dataset from accepted and unlabeled rows, and fine-tunes on it', async () => {
    await render(`#/datasets/curate/${ID}`, (api) => {
      api.datanetRowsById[ID] = Array.from({ length: 20 }, (_, i) => curatedRow(i, { status: i < 4 ? 'rejected' : i < 10 ? 'accepted' : null }));
    });
    const build = $('[data-testid="build-dataset"]');
    expect((build.querySelector(`[data-build-datanet="${ID}"]`) as HTMLInputElement).checked).toBe(true);
    expect((build.querySelector('[data-build-status="accepted"]') as HTMLInputElement).checked).toBe(true);
    expect((build.querySelector('[data-build-status="unlabeled"]') as HTMLInputElement).checked).toBe(true);
    expect((build.querySelector('[data-build-status="rejected"]') as HTMLInputElement).checked).toBe(false);
    expect((build.querySelector('[data-testid="eval-fraction"]') as HTMLInputElement).value).toBe('0.1');
    input('[data-testid="dataset-name"]', 'faq-accepted');
    $('[data-testid="build-submit"]').click();
    await settle();
    expect(api.callsOf('createDataset')).toEqual([
      [{ name: 'faq-accepted', sources: [{ datanet: ID, statuses: ['accepted', 'unlabeled'], search: null, tag: null }], files: [], eval_fraction: 0.1, seed: 42 }],
    ]);
    expect($('[data-testid="build-notice"]').textContent).toContain('16 rows');
    const listed = $('[data-dataset-row="faq-accepted"]');
    expect(listed.querySelector('[data-field="rows"]')?.getAttribute('data-value')).toBe('16');
    expect(listed.querySelector('[data-field="eval_rows"]')?.getAttribute('data-value')).toBe('2');
    expect(listed.querySelector('[data-field="contributors"]')?.getAttribute('data-value')).toBe('3');

    listed.querySelector<HTMLElement>('[data-finetune-dataset-path]')!.click();
    await settle();
    expect(router.current).toBe('finetune');
    expect(router.query).toEqual({ dataset: '/home/user/.modelfactory/datasets/faq-accepted.jsonl' });
    expect(window.location.hash).toBe('#/finetune?dataset=%2Fhome%2Fuser%2F.modelfactory%2Fdatasets%2Ffaq-accepted.jsonl');
  });

  it('refuses a build without a name', async () => {
    await render(`#/datasets/curate/${ID}`, rows(3));
    expect(($('[data-testid="build-submit"]') as HTMLButtonElement).disabled).toBe(true);
    input('[data-testid="dataset-name"]', 'bad/name');
    expect($('[data-testid="build-problems"]').textContent).toMatch(/letters, digits/);
  });
});

describe('Datasets screen: overview and one dataset', () => {
  it('lists the Datanets to curate and the built datasets', async () => {
    await render('#/datasets', (api) => {
      api.datasets = [datasetSummary()];
    });
    expect($('[data-screen="datasets"]').getAttribute('data-view')).toBe('overview');
    expect($(`[data-local-datanet="${ID}"] a`).getAttribute('href')).toBe(`#/datasets/curate/${ID}`);
    expect($('[data-dataset-row="faq-accepted"] a').getAttribute('href')).toBe('#/datasets/named/faq-accepted');
    expect($('[data-testid="cli"]').textContent).toContain('modelfactory dataset list');
  });

  it('shows a dataset’s rows, each with its contribution and contributor', async () => {
    await render('#/datasets/named/faq-accepted', (api) => {
      api.datasets = [datasetSummary({ rows: 3, eval_rows: 1 })];
      api.datasetRowsByName['faq-accepted'] = [0, 1, 2].map((i) => ({
        contribution_id: `c${i}`,
        contributor: `0x${String(i).repeat(40)}`,
        datanet: ID,
        split: i === 0 ? ('eval' as const) : ('train' as const),
        content: { instruction: `q${i}`, input: '', output: `a${i}` },
      }));
    });
    expect($('[data-screen="datasets"]').getAttribute('data-view')).toBe('named');
    expect($('[data-testid="dataset-summary"]').getAttribute('data-rows')).toBe('3');
    const shown = $$('[data-testid="dataset-rows"] [role="rowgroup"].body [role="row"]');
    expect(shown).toHaveLength(3);
    for (const r of shown) {
      expect(r.querySelector('[data-field="contribution_id"]')?.textContent?.trim()).toMatch(/^c\d$/);
      expect(r.querySelector('[data-field="contributor"]')?.textContent?.trim()).toMatch(/^0x/);
    }
    expect(shown[0]?.getAttribute('data-split')).toBe('eval');
    expect($('[data-testid="cli"]').textContent).toContain('modelfactory dataset show faq-accepted');
    $('[data-testid="finetune-on-dataset"]').click();
    await settle();
    expect(router.query.dataset).toBe('/home/user/.modelfactory/datasets/faq-accepted.jsonl');
  });
});
