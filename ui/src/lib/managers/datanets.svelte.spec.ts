import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { BaseEventManager, type Events } from '../events';
import { FakeTransport, datanetCard, datanetListing, flush, jobEvent, localDatanet } from '../testing/fake-transport';
import { DatanetsManager, PULL_JOB_KIND } from './datanets.svelte';
import { JobsManager } from './jobs.svelte';

async function setup() {
  const api = new FakeTransport();
  const bus = new BaseEventManager<Events>();
  const jobs = new JobsManager(bus);
  const datanets = new DatanetsManager(jobs, bus);
  await jobs.connect(api);
  datanets.connect(api);
  return { api, bus, jobs, datanets };
}

describe('DatanetsManager', () => {
  it('searches the hub and opens a card', async () => {
    const { api, datanets } = await setup();
    api.hub = [datanetListing(), datanetListing({ id: 'someone/rust-faq', tags: ['rust'], description: 'Rust' })];
    await datanets.search('python');
    expect(api.callsOf('searchHub')).toEqual([['python']]);
    expect(datanets.results.map((d) => d.id)).toEqual(['modelfactory/python-faq']);
    expect(datanets.searched).toBe(true);

    api.cards['modelfactory/python-faq'] = datanetCard({ readme: 'hello' });
    await datanets.openCard('modelfactory/python-faq');
    expect(datanets.card?.manifest.shards).toHaveLength(2);
    expect(datanets.card?.readme).toBe('hello');

    await datanets.openCard('nobody/none');
    expect(datanets.card).toBeNull();
    expect(datanets.cardError?.error).toBe('no Datanet nobody/none on the hub');
  });

  it('keeps the last search error and clears it with the next answer', async () => {
    const { api, datanets } = await setup();
    api.failures.searchHub = new ApiException('cannot reach the hub', 'Check the hub address in Settings');
    await datanets.search('');
    expect(datanets.searchError?.hint).toBe('Check the hub address in Settings');
    await datanets.search('');
    expect(datanets.searchError).toBeNull();
    expect(datanets.results).toHaveLength(1);
  });

  it('follows a pull through its job and lists the Datanet once it succeeds', async () => {
    const { api, datanets, jobs } = await setup();
    await datanets.search('');
    await datanets.openCard('modelfactory/python-faq');
    const job = await datanets.pull('modelfactory/python-faq');
    expect(job?.kind).toBe(PULL_JOB_KIND);
    expect(datanets.pullJob('modelfactory/python-faq')?.state).toBe('queued');

    jobs.applyEvent(
      jobEvent({ job_id: job!.id, seq: 1, state: 'running', fraction: 0.4, message: 'downloading shards/00000.parquet', figures: { bytes: 400, bytes_total: 1000 } }),
    );
    expect(datanets.pullJob('modelfactory/python-faq')).toMatchObject({ fraction: 0.4, figures: { bytes: 400, bytes_total: 1000 } });

    api.datanets = [localDatanet()];
    jobs.applyEvent(jobEvent({ job_id: job!.id, seq: 2, state: 'succeeded', fraction: 1, message: 'pulled' }));
    await flush();
    expect(datanets.local.map((d) => d.id)).toEqual(['modelfactory/python-faq']);
    expect(datanets.isPulled('modelfactory/python-faq')).toBe(true);
    expect(datanets.card?.pulled).toBe(true);
    expect(datanets.results[0]?.pulled).toBe(true);
  });

  it('does not let the answer of a fast pull undo the events that came first', async () => {
    const { api, datanets, jobs } = await setup();
    api.datanets = [];
    // the job finishes before the pull request answers
    const original = api.pullDatanet.bind(api);
    api.pullDatanet = async (id: string) => {
      const job = await original(id);
      jobs.applyEvent(jobEvent({ job_id: job.id, seq: 1, state: 'succeeded', fraction: 1, at: '2025-01-01T00:00:09Z' }));
      api.datanets = [localDatanet()];
      return job;
    };
    await datanets.pull('modelfactory/python-faq');
    await flush();
    expect(datanets.pullJob('modelfactory/python-faq')?.state).toBe('succeeded');
    expect(datanets.isPulled('modelfactory/python-faq')).toBe(true);
  });

  it('keeps a refused pull as its error', async () => {
    const { api, datanets } = await setup();
    api.failures.pullDatanet = new ApiException('the hub refused', null);
    expect(await datanets.pull('modelfactory/python-faq')).toBeNull();
    expect(datanets.pullError('modelfactory/python-faq')?.error).toBe('the hub refused');
    expect(datanets.isStarting('modelfactory/python-faq')).toBe(false);
  });

  it('imports a file as local/<name>', async () => {
    const { api, datanets } = await setup();
    const made = await datanets.importFile(' /data/rows.jsonl ', ' mine ');
    expect(api.callsOf('importDatanet')).toEqual([['/data/rows.jsonl', 'mine']]);
    expect(made.id).toBe('local/mine');
    expect(datanets.local.map((d) => d.id)).toEqual(['local/mine']);
    await expect(datanets.importFile('', 'x')).rejects.toMatchObject({ error: 'Give the path of a file' });
  });
});
