import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { BaseEventManager, type Events } from '../events';
import { ALICE, CAROL, FakeTransport, accuracyReport, attributionReport, flush, job, jobEvent, runSummary } from '../testing/fake-transport';
import {
  ACCURACY_SUBSETS,
  AttributionManager,
  attributionJobTitle,
  contributorLabel,
  harmfulRows,
  leaveOutCost,
  methodName,
} from './attribution.svelte';
import { JobsManager } from './jobs.svelte';

async function setup(configure: (api: FakeTransport) => void = () => {}) {
  const api = new FakeTransport();
  api.runs = [runSummary({ id: 'run-1', name: 'dose-faq', state: 'finished', adapter: '/ws/runs/run-1/adapter', job_id: 'job-0' })];
  configure(api);
  const bus = new BaseEventManager<Events>();
  const jobs = new JobsManager(bus);
  await jobs.connect(api);
  const attribution = new AttributionManager(jobs, bus);
  attribution.connect(api);
  await attribution.open('run-1', 'dose-faq');
  return { api, jobs, attribution };
}

describe('attribution helpers', () => {
  it('lists the harmful rows most harmful first', () => {
    const report = attributionReport({
      rows: [
        { contribution_id: 'a', contributor: ALICE, score: -0.1, preview: 'a' },
        { contribution_id: 'b', contributor: ALICE, score: 2, preview: 'b' },
        { contribution_id: 'c', contributor: CAROL, score: -3, preview: 'c' },
        { contribution_id: 'd', contributor: CAROL, score: 0, preview: 'd' },
      ],
    });
    expect(harmfulRows(report).map((r) => r.contribution_id)).toEqual(['c', 'a']);
  });

  it('names local files, methods, and what leaving a contributor out cost', () => {
    expect(contributorLabel('file:notes.jsonl')).toEqual({ file: 'notes.jsonl', text: 'local file notes.jsonl' });
    expect(contributorLabel(ALICE)).toEqual({ file: null, text: ALICE });
    expect(methodName('datainf')).toBe('DataInf');
    expect(methodName('similarity')).toBe('Representation similarity');
    expect(methodName('newer')).toBe('newer');
    // addresses compare without their checksum's case
    expect(leaveOutCost(accuracyReport(), ALICE.toUpperCase().replace('0X', '0x'))).toBe(1.98);
    expect(leaveOutCost(accuracyReport(), CAROL)).toBe(-0.65);
    expect(leaveOutCost(accuracyReport(), 'file:notes.jsonl')).toBeNull();
    expect(leaveOutCost(null, ALICE)).toBeNull();
  });
});

describe('AttributionManager', () => {
  it('loads a run without attribution, then one with a report and its accuracy', async () => {
    const { api, attribution } = await setup();
    expect(api.callsOf('runAttribution')).toEqual([['run-1']]);
    expect(attribution.loaded).toBe(true);
    expect(attribution.report).toBeNull();
    expect(attribution.accuracy).toBeNull();

    api.attributions['run-1'] = { run_id: 'run-1', report: attributionReport(), accuracy: accuracyReport() };
    await attribution.load();
    expect(attribution.report?.contributors.map((c) => [c.contributor, c.bps])).toEqual([
      [ALICE, 7500],
      ['file:notes.jsonl', 2500],
      [CAROL, 0],
    ]);
    expect(attribution.accuracy?.methods.map((m) => m.lds)).toEqual([0.377, 0.285, -0.056]);
    // opening the same run again does not ask again
    await attribution.open('run-1', 'dose-faq');
    expect(api.callsOf('runAttribution')).toHaveLength(2);
  });

  it('starts the attribution job, follows it, and reloads the report when it succeeds', async () => {
    const { api, jobs, attribution } = await setup();
    const started = await attribution.compute();
    expect(api.callsOf('startAttribution')).toEqual([['run-1', {}]]);
    expect(started?.kind).toBe('attribution');
    expect(attribution.job('attribution')?.id).toBe(started!.id);
    expect(attribution.running('attribution')).toBe(true);
    // a second press while it runs starts nothing
    expect(await attribution.compute()).toBeNull();
    expect(api.callsOf('startAttribution')).toHaveLength(1);

    jobs.applyEvent(jobEvent({ job_id: started!.id, seq: 1, state: 'running', fraction: 0.5, message: 'gradients 2/3' }));
    expect(attribution.job('attribution')?.message).toBe('gradients 2/3');

    api.attributions['run-1'] = { run_id: 'run-1', report: attributionReport(), accuracy: null };
    jobs.applyEvent(jobEvent({ job_id: started!.id, seq: 2, state: 'succeeded', fraction: 1, message: 'gradients 3/3', at: '2025-01-01T00:01:00Z' }));
    await flush();
    expect(attribution.running('attribution')).toBe(false);
    expect(attribution.report?.method).toBe('datainf');
  });

  it('measures the accuracy on 20 random halves', async () => {
    const { api, attribution } = await setup();
    const started = await attribution.measure();
    expect(ACCURACY_SUBSETS).toBe(20);
    expect(api.callsOf('startAttributionAccuracy')).toEqual([['run-1', { subsets: 20 }]]);
    expect(started?.kind).toBe('attribution-accuracy');
    expect(attribution.running('accuracy')).toBe(true);
    expect(attribution.running('attribution')).toBe(false);
  });

  it('finds a job the studio runs for the run, started elsewhere, and reloads when it ends', async () => {
    const { api, jobs, attribution } = await setup((api) => {
      api.jobs = [
        job({ id: 'job-7', kind: 'attribution', title: attributionJobTitle('attribution', 'dose-faq'), state: 'running', fraction: 0.2 }),
        job({ id: 'job-8', kind: 'attribution', title: attributionJobTitle('attribution', 'another run'), state: 'running' }),
      ];
    });
    expect(attribution.job('attribution')?.id).toBe('job-7');
    expect(attribution.job('accuracy')).toBeUndefined();

    jobs.applyEvent(jobEvent({ job_id: 'job-8', seq: 1, state: 'succeeded', fraction: 1, at: '2025-01-01T00:01:00Z' }));
    await flush();
    expect(api.callsOf('runAttribution')).toHaveLength(1);
    api.attributions['run-1'] = { run_id: 'run-1', report: attributionReport(), accuracy: null };
    jobs.applyEvent(jobEvent({ job_id: 'job-7', seq: 1, state: 'succeeded', fraction: 1, at: '2025-01-01T00:01:00Z' }));
    await flush();
    expect(api.callsOf('runAttribution')).toHaveLength(2);
    expect(attribution.report).not.toBeNull();
  });

  it('keeps why the studio refused to start, and forgets it with the run', async () => {
    const { api, attribution } = await setup();
    api.failures.startAttribution = new ApiException('run dose-faq held out no evaluation rows', 'train it with an eval fraction above 0', 400);
    expect(await attribution.compute()).toBeNull();
    expect(attribution.startError).toMatchObject({ error: 'run dose-faq held out no evaluation rows', hint: 'train it with an eval fraction above 0' });
    attribution.close();
    expect(attribution.startError).toBeNull();
    expect(attribution.runId).toBeNull();
  });
});
