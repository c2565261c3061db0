import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiException } from '../api/errors';
import type { DatanetStats } from '../api/types';
import { FakeTransport, address, curatedRow, flush } from '../testing/fake-transport';
import { CurationManager, DEFAULT_FILTERS, STATS_DELAY_MS, rowQuery } from './curation.svelte';

const ID = 'modelfactory/python-faq';

function setup(rows = 500, pageSize = 100) {
  const api = new FakeTransport();
  api.datanetRowsById[ID] = Array.from({ length: rows }, (_, i) => curatedRow(i));
  const curation = new CurationManager(0, pageSize);
  curation.connect(api);
  return { api, curation };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('rowQuery', () => {
  it('leaves out what does not filter', () => {
    expect(rowQuery({ ...DEFAULT_FILTERS })).toEqual({});
    expect(rowQuery({ ...DEFAULT_FILTERS, search: ' loop ', status: 'unlabeled', tag: 'Needs Review', min_len: 0, max_len: null, flag: 'pii', sort: 'length', desc: true })).toEqual({
      search: 'loop',
      status: 'unlabeled',
      tag: 'needs-review',
      min_len: 0,
      flag: 'pii',
      sort: 'length',
      desc: true,
    });
  });
});

describe('CurationManager', () => {
  it('opens a Datanet: the first page of rows and the statistics', async () => {
    const { api, curation } = setup();
    await curation.open(ID);
    await flush();
    expect(curation.total).toBe(500);
    expect(api.callsOf('datanetRows')).toEqual([[ID, { offset: 0, limit: 100 }]]);
    expect(curation.rows.get(0)?.contribution_id).toBe('c000000');
    expect(curation.stats?.rows).toBe(500);
    expect(curation.stats?.unlabeled).toBe(500);
  });

  it('asks the studio again when a filter changes, from the top', async () => {
    const { api, curation } = setup();
    await curation.open(ID);
    curation.select(40);
    await curation.setFilter('search', 'thing 7');
    expect(curation.selected).toBe(0);
    expect(api.callsOf('datanetRows').at(-1)).toEqual([ID, { search: 'thing 7', offset: 0, limit: 100 }]);
    // "thing 7", "thing 70".."thing 79", "thing 700".. is past the end
    expect(curation.total).toBe(11);
    expect(curation.filtered).toBe(true);
    await curation.setFilter('contributor', address(1));
    expect(api.callsOf('datanetRows').at(-1)?.[1]).toEqual({ search: 'thing 7', contributor: address(1), offset: 0, limit: 100 });
    await curation.clearFilters();
    expect(curation.total).toBe(500);
    expect(curation.filtered).toBe(false);
  });

  it('waits for typing to pause before searching', async () => {
    vi.useFakeTimers();
    const api = new FakeTransport();
    api.datanetRowsById[ID] = [curatedRow(0), curatedRow(1)];
    const curation = new CurationManager(300);
    curation.connect(api);
    await curation.open(ID);
    void curation.setFilter('search', 't');
    void curation.setFilter('search', 'th');
    const done = curation.setFilter('search', 'thing 1');
    expect(api.callsOf('datanetRows')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(300);
    await done;
    expect(api.callsOf('datanetRows')).toHaveLength(2);
    expect(api.callsOf('datanetRows')[1]?.[1]).toMatchObject({ search: 'thing 1' });
    expect(curation.total).toBe(1);
  });

  it('labels, rates and tags the selected row, replacing it with what the studio stored', async () => {
    const { api, curation } = setup();
    await curation.open(ID);
    await curation.setStatus(3, 'accepted');
    await curation.rate(3, 4);
    await curation.addTag(3, 'Good Answer');
    await curation.addTag(3, 'good-answer');
    expect(api.callsOf('labelRow')).toEqual([
      [ID, 'c000003', { status: 'accepted' }],
      [ID, 'c000003', { rating: 4 }],
      [ID, 'c000003', { tags: ['good-answer'] }],
    ]);
    expect(curation.rows.get(3)).toMatchObject({ status: 'accepted', rating: 4, tags: ['good-answer'] });
    await curation.removeTag(3, 'good-answer');
    await curation.setStatus(3, null);
    expect(curation.rows.get(3)).toMatchObject({ status: null, tags: [] });
  });

  it('keeps a refused label as the action error', async () => {
    const { api, curation } = setup();
    await curation.open(ID);
    api.failures.labelRow = new ApiException('the catalog is read-only', null);
    expect(await curation.setStatus(0, 'rejected')).toBeNull();
    expect(curation.actionError?.error).toBe('the catalog is read-only');
    expect(curation.rows.get(0)?.status).toBeNull();
  });

  it('saves an edit as a new version, the original kept', async () => {
    const { curation } = setup();
    await curation.open(ID);
    const before = curation.rows.get(2)!.content;
    const saved = await curation.edit(2, { instruction: 'How do I sort?', input: '', output: 'Use sorted().' });
    expect(saved?.version).toBe(1);
    expect(curation.rows.get(2)).toMatchObject({ version: 1, original: before, content: { output: 'Use sorted().' } });
  });

  it('counts the statistics again once a burst of labels and edits pauses', async () => {
    vi.useFakeTimers();
    const api = new FakeTransport();
    api.datanetRowsById[ID] = Array.from({ length: 5 }, (_, i) => curatedRow(i));
    const curation = new CurationManager(0);
    curation.connect(api);
    await curation.open(ID);
    await vi.advanceTimersByTimeAsync(0);
    expect(api.callsOf('datanetStats')).toHaveLength(1);

    // a key per row: one reload, after the last of them
    await curation.setStatus(0, 'accepted');
    await vi.advanceTimersByTimeAsync(STATS_DELAY_MS - 1);
    await curation.setStatus(1, 'rejected');
    await curation.rate(2, 5);
    await vi.advanceTimersByTimeAsync(STATS_DELAY_MS - 1);
    expect(api.callsOf('datanetStats')).toHaveLength(1);
    expect(curation.stats?.accepted).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(api.callsOf('datanetStats')).toHaveLength(2);
    expect(curation.stats).toMatchObject({ accepted: 1, rejected: 1, unlabeled: 3 });

    await curation.edit(3, { instruction: 'How do I sort?', input: '', output: 'Use sorted().' });
    await vi.advanceTimersByTimeAsync(STATS_DELAY_MS);
    expect(api.callsOf('datanetStats')).toHaveLength(3);
    expect(curation.stats?.edited).toBe(1);

    // a refused label changes nothing: no reload
    api.failures.labelRow = new ApiException('the catalog is read-only', null);
    await curation.setStatus(4, 'accepted');
    await vi.advanceTimersByTimeAsync(STATS_DELAY_MS * 2);
    expect(api.callsOf('datanetStats')).toHaveLength(3);

    // closing drops a reload still waiting
    await curation.setStatus(4, 'accepted');
    curation.close();
    await vi.advanceTimersByTimeAsync(STATS_DELAY_MS * 2);
    expect(api.callsOf('datanetStats')).toHaveLength(3);
  });

  it('keeps the newest statistics when an older answer arrives last', async () => {
    const { api, curation } = setup(3);
    const answers: ((s: DatanetStats) => void)[] = [];
    const count = (accepted: number) => ({ rows: 3, accepted, rejected: 0, unlabeled: 3 - accepted }) as DatanetStats;
    api.datanetStats = () => new Promise<DatanetStats>((resolve) => answers.push(resolve));
    void curation.open(ID);
    const newer = curation.loadStats();
    expect(answers).toHaveLength(2);
    answers[1]!(count(1));
    await newer;
    answers[0]!(count(0));
    await flush();
    expect(curation.stats?.accepted).toBe(1);
  });

  it('moves the selection within the rows', async () => {
    const { curation } = setup(3);
    await curation.open(ID);
    curation.move(1);
    curation.move(5);
    expect(curation.selected).toBe(2);
    curation.move(-10);
    expect(curation.selected).toBe(0);
    expect(curation.selectedRow?.contribution_id).toBe('c000000');
  });

  it('finds duplicates, rejects them and shows the rows again', async () => {
    const api = new FakeTransport();
    const same = { instruction: 'What is a list?', input: '', output: 'A sequence.' };
    api.datanetRowsById[ID] = [curatedRow(0, { content: same }), curatedRow(1), curatedRow(2, { content: same })];
    const curation = new CurationManager(0);
    curation.connect(api);
    await curation.open(ID);
    const scan = await curation.findDuplicates(0.8, false);
    expect(scan).toMatchObject({ threshold: 0.8, groups: [['c000000', 'c000002']], rejected: 0 });
    expect(curation.rows.get(2)?.duplicate_of).toBe('c000000');
    await curation.findDuplicates(0.8, true);
    expect(api.callsOf('scanDuplicates').at(-1)).toEqual([ID, 0.8, true]);
    expect(curation.scan?.rejected).toBe(1);
    expect(curation.rows.get(2)?.status).toBe('rejected');
    expect(curation.stats?.rejected).toBe(1);
  });
});
