import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { FakeTransport, curatedRow, localDatanet } from '../testing/fake-transport';
import { DatasetsManager, datasetNameProblem } from './datasets.svelte';

const ID = 'modelfactory/python-faq';

function setup() {
  const api = new FakeTransport();
  api.datanets = [localDatanet()];
  api.datanetRowsById[ID] = Array.from({ length: 30 }, (_, i) => curatedRow(i, { status: i < 5 ? 'rejected' : i < 15 ? 'accepted' : null }));
  const datasets = new DatasetsManager(10);
  datasets.connect(api);
  return { api, datasets };
}

describe('DatasetsManager', () => {
  it('checks the name', () => {
    expect(datasetNameProblem('faq-accepted')).toBeNull();
    expect(datasetNameProblem(' ')).toBe('Give the dataset a name');
    expect(datasetNameProblem('a/b')).toMatch(/letters, digits/);
  });

  it('builds a dataset and lists it first', async () => {
    const { api, datasets } = setup();
    await datasets.load();
    expect(datasets.loaded).toBe(true);
    const built = await datasets.build({
      name: ' faq-accepted ',
      sources: [{ datanet: ID, statuses: ['accepted', 'unlabeled'] }],
      files: [],
      eval_fraction: 0.1,
      seed: 42,
    });
    expect(api.callsOf('createDataset')[0]?.[0]).toMatchObject({ name: 'faq-accepted' });
    expect(built).toMatchObject({ name: 'faq-accepted', rows: 25, eval_rows: 3, contributors: 3 });
    expect(datasets.datasets.map((d) => d.name)).toEqual(['faq-accepted']);
    expect(datasets.built?.name).toBe('faq-accepted');
  });

  it('refuses a build without a name or rows, and keeps the studio’s refusal', async () => {
    const { api, datasets } = setup();
    expect(await datasets.build({ name: '', sources: [], files: [], eval_fraction: 0.1, seed: 1 })).toBeNull();
    expect(datasets.buildError?.error).toBe('Give the dataset a name');
    expect(await datasets.build({ name: 'x', sources: [], files: [], eval_fraction: 0.1, seed: 1 })).toBeNull();
    expect(datasets.buildError?.error).toBe('Choose at least one Datanet or file');
    api.failures.createDataset = new ApiException('no rows left', 'Accept some rows first');
    expect(await datasets.build({ name: 'x', sources: [{ datanet: ID, statuses: ['accepted'] }], files: [], eval_fraction: 0, seed: 1 })).toBeNull();
    expect(datasets.buildError?.hint).toBe('Accept some rows first');
    expect(api.callsOf('createDataset')).toHaveLength(1);
  });

  it('opens a dataset’s rows a page at a time, and deletes it', async () => {
    const { api, datasets } = setup();
    await datasets.build({ name: 'all', sources: [{ datanet: ID, statuses: ['accepted', 'rejected', 'unlabeled'] }], files: [], eval_fraction: 0.2, seed: 1 });
    await datasets.openRows('all');
    expect(datasets.rows.total).toBe(30);
    expect(api.callsOf('datasetRows')).toEqual([['all', 0, 10]]);
    expect(datasets.rows.get(0)).toMatchObject({ contribution_id: 'c000000', datanet: ID, split: 'eval' });
    await datasets.rows.want(20, 30);
    expect(datasets.rows.get(29)?.split).toBe('train');
    await datasets.remove('all');
    expect(datasets.datasets).toEqual([]);
    expect(datasets.openName).toBeNull();
  });
});
