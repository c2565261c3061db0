import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { BaseEventManager, type Events } from '../events';
import { FakeTransport, evalRecord, flush, jobEvent, runDetail, runSummary, stepRecord } from '../testing/fake-transport';
import { RunsManager, evalFromFigures, stepFromFigures } from './runs.svelte';

/** The figures a `train` job sends after a step (eval_loss: the last evaluation, repeated). */
function stepFigures(step: number, extra: Record<string, number> = {}) {
  return { step, total_steps: 3, loss: 5 - step * 0.1, learning_rate: 4e-5 * step, grad_norm: 2, tokens_per_s: 30 + step, eta_s: 10, memory_bytes: 7e8, ...extra };
}
function evalFigures(step: number) {
  return { step, total_steps: 3, eval_loss: 5.5 - step * 0.01, perplexity: Math.exp(5.5 - step * 0.01) };
}

function setup() {
  const api = new FakeTransport();
  const bus = new BaseEventManager<Events>();
  const runs = new RunsManager(bus);
  runs.connect(api);
  return { api, bus, runs };
}

describe('train job figures', () => {
  it('reads a step event, and an eval event, and tells them apart', () => {
    expect(stepFromFigures(stepFigures(2))).toEqual({
      step: 2,
      loss: 4.8,
      learning_rate: 8e-5,
      grad_norm: 2,
      tokens_per_s: 32,
      elapsed_s: Number.NaN,
      eta_s: 10,
      peak_memory_bytes: 7e8,
    });
    // a step event repeats the last eval loss: that is not a new evaluation
    expect(evalFromFigures(stepFigures(2, { eval_loss: 5.4 }))).toBeNull();
    expect(stepFromFigures(evalFigures(2))).toBeNull();
    expect(evalFromFigures(evalFigures(2))).toEqual({ step: 2, loss: 5.48, perplexity: Math.exp(5.48) });
    expect(stepFromFigures({ step: 0 })).toBeNull();
  });
});

describe('RunsManager', () => {
  it('loads the list, newest first', async () => {
    const { api, runs } = setup();
    api.runs = [runSummary({ id: 'b' }), runSummary({ id: 'a', state: 'finished' })];
    await runs.load();
    expect(runs.loaded).toBe(true);
    expect(runs.runs.map((r) => r.id)).toEqual(['b', 'a']);
    api.failures.listRuns = new ApiException('database is locked', 'close the other studio');
    await runs.load();
    expect(runs.error?.hint).toBe('close the other studio');
  });

  it('opens a run with its stored curve, then appends live events of its job', async () => {
    const { api, bus, runs } = setup();
    api.runs = [runSummary({ id: 'r', job_id: 'j', step: 2, total_steps: 3 })];
    api.details.r = runDetail({ steps: [stepRecord(1), stepRecord(2)], evals: [evalRecord(1)] });
    await runs.open('r');
    expect(runs.detail?.steps.map((s) => s.step)).toEqual([1, 2]);

    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 9, message: 'evaluated at step 2', fraction: 0.66, figures: evalFigures(2) }));
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 10, message: 'step 3 of 3', fraction: 1, figures: stepFigures(3, { eval_loss: 5.48 }) }));
    // another job's events change nothing here
    bus.emit('job-event', jobEvent({ job_id: 'other', seq: 1, figures: stepFigures(7) }));

    expect(runs.detail?.steps.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(runs.detail?.steps[2]).toMatchObject({ loss: 4.7, tokens_per_s: 33, peak_memory_bytes: 7e8 });
    expect(runs.detail?.evals.map((e) => e.step)).toEqual([1, 2]);
    expect(runs.detail?.run).toMatchObject({ step: 3, total_steps: 3, last_loss: 4.7, last_eval_loss: 5.48 });
    expect(runs.progress).toMatchObject({ message: 'step 3 of 3', fraction: 1 });
    // the list row follows too
    expect(runs.get('r')).toMatchObject({ step: 3, last_loss: 4.7 });
  });

  it('replays the events that arrived before the stored curve loaded, without repeating points', async () => {
    const { api, bus, runs } = setup();
    api.runs = [runSummary({ id: 'r', job_id: 'j' })];
    // nothing is stored yet but the untrained eval; step 1's event came while the page was loading
    api.details.r = runDetail({ steps: [] });
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 1, figures: evalFigures(0) }));
    await runs.open('r');
    expect(runs.detail?.evals.map((e) => e.step)).toEqual([0]);
    runs.close();
    // step 1 is stored; step 2's event came while the page was loading
    api.details.r = runDetail({ steps: [stepRecord(1)] });
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 1, figures: stepFigures(1) }));
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 2, message: 'step 2 of 3', figures: stepFigures(2) }));
    await runs.open('r');
    expect(runs.detail?.steps.map((s) => s.step)).toEqual([1, 2]);
    // the stored record wins over the event for step 1 (it has elapsed_s)
    expect(runs.detail?.steps[0]?.elapsed_s).toBe(5);
    expect(runs.progress?.message).toBe('step 2 of 3');
  });

  it('redraws from the stored curve when the event stream reconnects', async () => {
    const { api, bus, runs } = setup();
    api.runs = [runSummary({ id: 'r', job_id: 'j' })];
    api.details.r = runDetail({ steps: [stepRecord(1)] });
    await runs.open('r');
    // events were lost while disconnected: the studio stored them
    api.details.r = runDetail({ steps: [stepRecord(1), stepRecord(2), stepRecord(3)], evals: [evalRecord(3)] });
    bus.emit('jobs-resynced');
    await flush();
    expect(api.callsOf('getRun')).toHaveLength(2);
    expect(runs.detail?.steps.map((s) => s.step)).toEqual([1, 2, 3]);
    expect(runs.detail?.evals.map((e) => e.step)).toEqual([3]);
  });

  it('replaces the points after a checkpoint when a resumed run goes back to it', async () => {
    const { api, bus, runs } = setup();
    api.runs = [runSummary({ id: 'r', job_id: 'j' })];
    api.details.r = runDetail({ steps: [stepRecord(1), stepRecord(2), stepRecord(3)] });
    await runs.open('r');
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 1, figures: stepFigures(2, { loss: 1.25 }) }));
    expect(runs.detail?.steps.map((s) => [s.step, s.loss])).toEqual([
      [1, 2.9],
      [2, 1.25],
    ]);
  });

  it('reloads the run and the list when its job ends', async () => {
    const { api, bus, runs } = setup();
    api.runs = [runSummary({ id: 'r', job_id: 'j' })];
    await runs.load();
    await runs.open('r');
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 4, state: 'running', figures: stepFigures(3) }));
    api.runs = [runSummary({ id: 'r', job_id: 'j', state: 'finished', adapter: '/ws/runs/r/adapter', step: 3 })];
    bus.emit('job-event', jobEvent({ job_id: 'j', seq: 5, state: 'succeeded', fraction: 1, message: 'done', figures: {} }));
    await flush();
    // the stored state wins over the running events replayed onto it
    expect(runs.detail?.run.state).toBe('finished');
    expect(runs.detail?.run.adapter).toBe('/ws/runs/r/adapter');
    expect(runs.get('r')?.state).toBe('finished');
  });

  it('starts, cancels, resumes and deletes runs', async () => {
    const { api, runs } = setup();
    const config = runDetail().config;
    const started = await runs.start({ model_id: 'smollm2-135m-instruct', dataset: '/d.jsonl', config });
    expect(api.callsOf('startRun')).toEqual([[{ model_id: 'smollm2-135m-instruct', dataset: '/d.jsonl', config }]]);
    expect(runs.runs.map((r) => r.id)).toEqual([started.id]);

    await runs.open(started.id);
    await runs.cancel(started.id);
    expect(api.callsOf('cancelRun')).toEqual([[started.id]]);

    api.runs[0]!.state = 'cancelled';
    await runs.resume(started.id);
    expect(api.callsOf('resumeRun')).toEqual([[started.id]]);
    expect(runs.detail?.run.job_id).not.toBe(started.job_id);
    expect(runs.get(started.id)?.state).toBe('running');

    api.failures.deleteRun = new ApiException('run modelfactory-help is training; cancel it first', null, 409);
    await expect(runs.remove(started.id)).rejects.toMatchObject({ status: 409 });
    await runs.remove(started.id);
    expect(runs.runs).toEqual([]);
    expect(runs.openId).toBeNull();
    expect(runs.detail).toBeNull();
  });

  it('says why a run cannot be opened', async () => {
    const { runs } = setup();
    await runs.open('nope');
    expect(runs.detail).toBeNull();
    expect(runs.detailError?.status).toBe(404);
  });
});
