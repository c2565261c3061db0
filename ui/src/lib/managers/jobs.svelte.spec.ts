import { flushSync } from 'svelte';
import { describe, expect, it, vi } from 'vitest';
import { ApiException } from '../api/errors';
import { BaseEventManager, type Events } from '../events';
import { FakeTransport, flush, job, jobEvent } from '../testing/fake-transport';
import { JobsManager } from './jobs.svelte';

async function setup(jobs = [job()]) {
  const api = new FakeTransport();
  api.jobs = jobs;
  const bus = new BaseEventManager<Events>();
  const manager = new JobsManager(bus);
  await manager.connect(api);
  return { api, bus, manager };
}

describe('JobsManager', () => {
  it('loads the job list and subscribes on connect', async () => {
    const { api, manager } = await setup([job({ id: 'a' }), job({ id: 'b', state: 'succeeded', fraction: 1 })]);
    expect(api.callsOf('subscribe')).toHaveLength(1);
    expect(manager.loaded).toBe(true);
    expect(manager.jobs.map((j) => j.id)).toEqual(['a', 'b']);
    expect(manager.active.map((j) => j.id)).toEqual(['a']);
    // old finished jobs are history, not news
    expect(manager.recent).toEqual([]);
  });

  it('applies progress events to the job', async () => {
    const { api, manager } = await setup();
    api.push(jobEvent({ seq: 1, fraction: 0.25, message: 'model.safetensors 25%', figures: { bytes_per_s: 1e6 } }));
    let j = manager.get('job-1')!;
    expect(j.fraction).toBe(0.25);
    expect(j.message).toBe('model.safetensors 25%');
    expect(j.figures).toEqual({ bytes_per_s: 1e6 });
    expect(j.updated_at).toBe('2025-01-01T00:00:01Z');

    api.push(jobEvent({ seq: 2, fraction: 0.5, at: '2025-01-01T00:00:02Z', figures: { eta_s: 3 } }));
    j = manager.get('job-1')!;
    expect(j.fraction).toBe(0.5);
    expect(j.figures).toEqual({ bytes_per_s: 1e6, eta_s: 3 });
    expect(manager.active).toHaveLength(1);
  });

  it('ignores stale and repeated events', async () => {
    const { manager } = await setup();
    expect(manager.applyEvent(jobEvent({ seq: 5, fraction: 0.5 }))).toBe(true);
    expect(manager.applyEvent(jobEvent({ seq: 4, fraction: 0.4 }))).toBe(false);
    expect(manager.applyEvent(jobEvent({ seq: 5, fraction: 0.9 }))).toBe(false);
    expect(manager.get('job-1')!.fraction).toBe(0.5);
  });

  it('moves a job out of the active list when it succeeds and announces it', async () => {
    const { api, bus, manager } = await setup();
    const finished = vi.fn();
    const progress = vi.fn();
    bus.on('job-finished', finished);
    bus.on('job-event', progress);

    api.push(jobEvent({ seq: 1, state: 'running', fraction: 0.9 }));
    api.push(jobEvent({ seq: 2, state: 'succeeded', fraction: 1, message: 'done' }));

    expect(manager.get('job-1')!.state).toBe('succeeded');
    expect(manager.active).toEqual([]);
    expect(manager.recent.map((j) => j.id)).toEqual(['job-1']);
    expect(progress).toHaveBeenCalledTimes(2);
    expect(finished).toHaveBeenCalledTimes(1);
    expect(finished.mock.calls[0]![0]).toMatchObject({ id: 'job-1', state: 'succeeded' });

    manager.dismiss('job-1');
    expect(manager.recent).toEqual([]);
  });

  it('fetches the error of a failed job', async () => {
    const { api, manager } = await setup();
    api.jobs[0] = job({ state: 'failed', error: 'hub answered 404 for HuggingFaceTB/nope', updated_at: '2025-01-01T00:00:01Z' });
    api.push(jobEvent({ seq: 1, state: 'failed', message: 'failed' }));
    await flush();
    expect(manager.get('job-1')!.error).toBe('hub answered 404 for HuggingFaceTB/nope');
    expect(manager.recent.map((j) => j.state)).toEqual(['failed']);
  });

  it('learns about a job it has only seen an event of', async () => {
    const { api, manager } = await setup([]);
    api.jobs = [job({ id: 'new', title: 'Pull Qwen/Qwen2.5-0.5B', updated_at: '2025-01-01T00:00:00Z' })];
    api.push(jobEvent({ job_id: 'new', seq: 1, fraction: 0.3 }));
    expect(manager.get('new')!.title).toBe('Job new');
    await flush();
    expect(api.callsOf('getJob')).toEqual([['new']]);
    const j = manager.get('new')!;
    expect(j.title).toBe('Pull Qwen/Qwen2.5-0.5B');
    // the stream's newer progress is kept over the older record
    expect(j.fraction).toBe(0.3);
  });

  it('cancels a job through the client', async () => {
    const { api, bus, manager } = await setup();
    const finished = vi.fn();
    bus.on('job-finished', finished);
    const pending = manager.cancel('job-1');
    expect(manager.isCancelling('job-1')).toBe(true);
    await pending;
    expect(api.callsOf('cancelJob')).toEqual([['job-1']]);
    expect(manager.get('job-1')!.state).toBe('cancelled');
    expect(manager.isCancelling('job-1')).toBe(false);
    expect(manager.active).toEqual([]);
    expect(finished).toHaveBeenCalledWith(expect.objectContaining({ id: 'job-1', state: 'cancelled' }));
  });

  it('keeps the job running when a cancel is refused, and rethrows as ApiException', async () => {
    const { api, manager } = await setup();
    api.failures.cancelJob = new ApiException('job-1 already finished', 'Refresh the list');
    await expect(manager.cancel('job-1')).rejects.toMatchObject({ error: 'job-1 already finished', hint: 'Refresh the list' });
    expect(manager.isCancelling('job-1')).toBe(false);
    expect(manager.get('job-1')!.state).toBe('running');
  });

  it('tracks a job started by the UI, even one that already finished', async () => {
    const { bus, manager } = await setup([]);
    const finished = vi.fn();
    bus.on('job-finished', finished);
    manager.track(job({ id: 'p1', state: 'queued' }));
    expect(manager.active.map((j) => j.id)).toEqual(['p1']);
    manager.track(job({ id: 'p2', state: 'succeeded', fraction: 1 }));
    expect(finished).toHaveBeenCalledWith(expect.objectContaining({ id: 'p2' }));
    expect(manager.jobs.map((j) => j.id)).toEqual(['p2', 'p1']);
  });

  it('reloads the list when the stream reconnects, keeping newer local progress', async () => {
    const { api, bus, manager } = await setup();
    const resynced = vi.fn();
    bus.on('jobs-resynced', resynced);
    api.push(jobEvent({ seq: 1, fraction: 0.6, at: '2025-01-01T00:00:05Z' }));
    api.jobs = [job({ fraction: 0.1, updated_at: '2025-01-01T00:00:01Z' }), job({ id: 'other', state: 'queued' })];
    api.resync();
    await flush();
    expect(api.callsOf('listJobs')).toHaveLength(2);
    expect(manager.get('job-1')!.fraction).toBe(0.6);
    expect(manager.get('other')!.state).toBe('queued');
    // whoever draws from events (a run's loss curve) is told to reload too
    expect(resynced).toHaveBeenCalledTimes(1);
  });

  it('records a failed load as an error', async () => {
    const api = new FakeTransport();
    api.failures.listJobs = new ApiException('database is locked', 'Close other ModelFactory windows');
    const manager = new JobsManager(new BaseEventManager<Events>());
    await manager.connect(api);
    expect(manager.error).toMatchObject({ error: 'database is locked', hint: 'Close other ModelFactory windows' });
    expect(manager.loaded).toBe(true);
  });

  it('stops applying events after disconnect', async () => {
    const { api, manager } = await setup();
    manager.disconnect();
    api.push(jobEvent({ seq: 1, fraction: 0.7 }));
    expect(manager.get('job-1')!.fraction).toBe(0);
  });

  it('keeps derived lists reactive', async () => {
    const { api, manager } = await setup([]);
    const seen: number[] = [];
    const stop = $effect.root(() => {
      $effect(() => {
        seen.push(manager.active.length);
      });
    });
    flushSync();
    manager.track(job({ id: 'x', state: 'running' }));
    flushSync();
    api.push(jobEvent({ job_id: 'x', seq: 1, state: 'succeeded', fraction: 1 }));
    flushSync();
    stop();
    expect(seen).toEqual([0, 1, 0]);
  });
});
