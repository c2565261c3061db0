import { describe, expect, it } from 'vitest';
import { BaseEventManager, type Events } from '../events';
import { FakeTransport, flush, jobEvent, publication, runSummary, walletAccount } from '../testing/fake-transport';
import { JobsManager } from './jobs.svelte';
import { PublishManager, attributionMethodText, formatBps, formatWei, publishCommand } from './publish.svelte';

const ADAPTER = '/ws/runs/run-1/adapter';

async function setup(configure: (api: FakeTransport) => void = () => {}) {
  const api = new FakeTransport();
  api.runs = [
    runSummary({ id: 'run-3', state: 'running', job_id: 'job-3' }),
    runSummary({ id: 'run-2', state: 'failed', adapter: null }),
    runSummary({ id: 'run-1', state: 'finished', adapter: ADAPTER }),
  ];
  api.accounts = [walletAccount(1), walletAccount(2)];
  api.passphrases[walletAccount(1).address] = 'correct horse';
  configure(api);
  const bus = new BaseEventManager<Events>();
  const jobs = new JobsManager(bus);
  await jobs.connect(api);
  const publish = new PublishManager(jobs, bus);
  publish.connect(api);
  publish.adoptRuns(api.runs);
  publish.adoptAccounts(api.accounts);
  await flush();
  return { api, jobs, publish };
}

describe('publish formatting', () => {
  it('shows wei as ETH and basis points as percentages', () => {
    expect(formatWei('420000000000000')).toBe('0.00042 ETH');
    expect(formatWei('1500000000000000000')).toBe('1.5 ETH');
    expect(formatWei('0')).toBe('0 ETH');
    expect(formatWei('12')).toBe('< 0.000001 ETH');
    expect(formatWei(null)).toBe('—');
    expect(formatBps(2500)).toBe('25%');
    expect(formatBps(3333)).toBe('33.33%');
    expect(formatBps(10000)).toBe('100%');
  });

  it('writes the CLI command', () => {
    expect(publishCommand({ run_id: 'run-1', publisher: '0xabc', repo: 'me/help', license: 'Apache-2.0' })).toBe(
      'modelfactory publish run-1 --address 0xabc --repo me/help --license Apache-2.0',
    );
    expect(publishCommand({ run_id: 'run-1', publisher: '0xabc' }, true)).toBe('modelfactory publish run-1 --address 0xabc --dry-run');
    expect(publishCommand({ run_id: 'run-1', publisher: '0xabc', attribution: 'row-share' }, true)).toBe(
      'modelfactory publish run-1 --address 0xabc --attribution row-share --dry-run',
    );
  });

  it('says how the shares were computed', () => {
    expect(attributionMethodText('datainf')).toBe('by measured influence (DataInf)');
    expect(attributionMethodText('row-share')).toBe('by rows written');
  });
});

describe('PublishManager', () => {
  it('chooses the newest publishable run and the first account, and loads the run’s publication', async () => {
    const { api, publish } = await setup((api) => (api.publications['run-1'] = publication({ state: 'uploaded', job_id: null })));
    expect(publish.runId).toBe('run-1');
    expect(publish.publisher).toBe(walletAccount(1).address);
    expect(api.callsOf('publication')).toEqual([['run-1']]);
    expect(publish.publication?.state).toBe('uploaded');
    expect(publish.progress).toBeNull();
    // a chosen run that is still there stays chosen
    publish.adoptRuns([runSummary({ id: 'run-9', state: 'finished', adapter: ADAPTER }), ...api.runs]);
    expect(publish.runId).toBe('run-1');
  });

  it('previews the request, and knows when the preview no longer matches the form', async () => {
    const { api, publish } = await setup();
    expect(publish.publishProblem).toMatch(/Preview first/);
    publish.setRepo(' me/help ');
    await publish.runPreview();
    expect(api.callsOf('publishPreview')).toEqual([[{ run_id: 'run-1', publisher: walletAccount(1).address, repo: 'me/help', license: null }]]);
    expect(publish.preview?.repo).toBe('me/help');
    expect(publish.previewStale).toBe(false);
    expect(publish.publishProblem).toBeNull();
    publish.setLicense('MIT');
    expect(publish.previewStale).toBe(true);
    expect(publish.publishProblem).toMatch(/out of date/);
    await publish.runPreview();
    expect(publish.previewStale).toBe(false);
  });

  it('asks for the chosen way of sharing, and leaves it out when the studio is to decide', async () => {
    const { api, publish } = await setup();
    expect(publish.request).not.toHaveProperty('attribution');
    publish.setAttribution('row-share');
    await publish.runPreview();
    expect(api.callsOf('publishPreview')).toEqual([[{ run_id: 'run-1', publisher: walletAccount(1).address, repo: null, license: null, attribution: 'row-share' }]]);
    expect(publish.preview?.attribution_method).toBe('row-share');
    publish.setAttribution('datainf');
    expect(publish.previewStale).toBe(true);
    publish.setAttribution(null);
    expect(publish.request).not.toHaveProperty('attribution');
    publish.setAttribution('datainf');
    publish.reset();
    expect(publish.attribution).toBeNull();
  });

  it('refuses to sign without a fresh preview or a passphrase, and keeps a wrong passphrase’s refusal', async () => {
    const { api, publish } = await setup();
    expect(await publish.publish('correct horse')).toBeNull();
    expect(publish.publishError?.error).toMatch(/Preview first/);
    await publish.runPreview();
    expect(await publish.publish('')).toBeNull();
    expect(publish.publishError?.error).toMatch(/passphrase/);
    expect(await publish.publish('wrong')).toBeNull();
    expect(publish.publishError?.error).toBe('wrong passphrase for this account');
    expect(api.callsOf('publish')).toHaveLength(1);
    expect(publish.jobId).toBeNull();
  });

  it('signs, follows the publish job through its events, then shows the publication', async () => {
    const { api, jobs, publish } = await setup();
    await publish.runPreview();
    const job = await publish.publish('correct horse');
    expect(job?.kind).toBe('publish');
    expect(api.callsOf('publish')).toEqual([[{ run_id: 'run-1', publisher: walletAccount(1).address, repo: null, license: null }, 'correct horse']]);
    expect(publish.jobId).toBe(job!.id);
    expect(jobs.get(job!.id)?.kind).toBe('publish');
    expect(publish.active).toBe(true);
    expect(publish.publishProblem).toMatch(/running/);

    jobs.applyEvent(jobEvent({ job_id: job!.id, seq: 1, state: 'running', fraction: 0.1, message: 'uploading to 00010001/modelfactory-help' }));
    expect(publish.progress).toMatchObject({ state: 'running', fraction: 0.1, message: 'uploading to 00010001/modelfactory-help' });
    // another job's events change nothing
    jobs.applyEvent(jobEvent({ job_id: 'job-other', seq: 1, fraction: 0.9, message: 'step 3' }));
    expect(publish.progress?.message).toBe('uploading to 00010001/modelfactory-help');

    api.publications['run-1'] = publication({ job_id: job!.id });
    jobs.applyEvent(jobEvent({ job_id: job!.id, seq: 2, state: 'succeeded', fraction: 1, message: 'registered in block 13', at: '2025-01-01T00:01:00Z' }));
    await flush();
    expect(publish.active).toBe(false);
    expect(publish.progress?.state).toBe('succeeded');
    expect(publish.publication).toMatchObject({ state: 'registered', tx_hash: `0x${'cd'.repeat(32)}` });
    // the same manifest is not published twice
    expect(publish.publishProblem).toBe('This manifest is published and registered');
  });

  it('shows why a publish job failed', async () => {
    const { api, jobs, publish } = await setup();
    await publish.runPreview();
    const job = (await publish.publish('correct horse'))!;
    api.jobs = api.jobs.map((j) => (j.id === job.id ? { ...j, state: 'failed', error: 'the hub refused the upload: 403' } : j));
    jobs.applyEvent(jobEvent({ job_id: job.id, seq: 1, state: 'failed', fraction: 0.1, message: 'uploading', at: '2025-01-01T00:01:00Z' }));
    await flush();
    expect(publish.progress).toMatchObject({ state: 'failed', error: 'the hub refused the upload: 403' });
  });

  it('follows a publish job still running for the chosen run', async () => {
    const { publish } = await setup((api) => {
      api.jobs = [{ ...api.jobs[0]!, id: 'job-9', kind: 'publish', state: 'running', fraction: 0.4, message: 'registering on chain', error: null, title: 'Publish', created_at: 't', updated_at: 't' }];
      api.publications['run-1'] = publication({ state: 'uploaded', job_id: 'job-9' });
    });
    expect(publish.jobId).toBe('job-9');
    expect(publish.progress).toMatchObject({ state: 'running', message: 'registering on chain' });
    publish.setRun('run-3');
    expect(publish.jobId).toBeNull();
    expect(publish.publication).toBeNull();
  });
});
