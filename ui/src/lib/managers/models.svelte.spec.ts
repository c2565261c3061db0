import { describe, expect, it, vi } from 'vitest';
import { ApiException } from '../api/errors';
import { BaseEventManager, type Events } from '../events';
import { FakeTransport, flush, job, jobEvent, model } from '../testing/fake-transport';
import { JobsManager } from './jobs.svelte';
import { ModelsManager } from './models.svelte';

async function setup() {
  const api = new FakeTransport();
  const bus = new BaseEventManager<Events>();
  const jobs = new JobsManager(bus);
  const models = new ModelsManager(jobs, bus);
  await jobs.connect(api);
  models.connect(api);
  return { api, bus, jobs, models };
}

describe('ModelsManager', () => {
  it('loads the list', async () => {
    const { api, models } = await setup();
    api.models = [model(), model({ id: 'qwen', name: 'Qwen2.5 0.5B', status: 'missing', problem: 'file not found: /m/q.gguf' })];
    expect(models.loaded).toBe(false);
    await models.load();
    expect(models.loaded).toBe(true);
    expect(models.models.map((m) => m.id)).toEqual(['smollm2-135m-instruct', 'qwen']);
    expect(models.error).toBeNull();
  });

  it('keeps the error of a failed load', async () => {
    const { api, models } = await setup();
    api.failures.listModels = new ApiException('workspace not found', 'Run setup first');
    await models.load();
    expect(models.error).toMatchObject({ error: 'workspace not found', hint: 'Run setup first' });
    expect(models.loaded).toBe(true);
  });

  it('adds a local model straight into the list', async () => {
    const { api, bus, models, jobs } = await setup();
    const added = vi.fn();
    bus.on('model-added', added);
    api.addResult = (source) => ({ model: model({ id: 'local', source }), job: null });
    const result = await models.add('  /models/a.gguf ');
    expect(api.callsOf('addModel')).toEqual([['/models/a.gguf']]);
    expect(result.model?.id).toBe('local');
    expect(models.models.map((m) => m.id)).toEqual(['local']);
    expect(added).toHaveBeenCalledTimes(1);
    expect(jobs.jobs).toEqual([]);
  });

  it('hands a hub pull to the jobs manager and reloads the list when it succeeds', async () => {
    const { api, models, jobs } = await setup();
    api.addResult = { model: null, job: job({ id: 'pull-1', state: 'queued' }) };
    await models.add('HuggingFaceTB/SmolLM2-135M-Instruct');
    expect(models.models).toEqual([]);
    expect(jobs.active.map((j) => j.id)).toEqual(['pull-1']);

    api.models = [model()];
    api.push(jobEvent({ job_id: 'pull-1', seq: 1, state: 'running', fraction: 0.5 }));
    await flush();
    expect(api.callsOf('listModels')).toHaveLength(0);
    api.push(jobEvent({ job_id: 'pull-1', seq: 2, state: 'succeeded', fraction: 1 }));
    await flush();
    expect(api.callsOf('listModels')).toHaveLength(1);
    expect(models.models.map((m) => m.id)).toEqual(['smollm2-135m-instruct']);
  });

  it('does not reload after a failed pull', async () => {
    const { api, models } = await setup();
    api.addResult = { model: null, job: job({ id: 'pull-2', state: 'running' }) };
    await models.add('HuggingFaceTB/nope');
    api.push(jobEvent({ job_id: 'pull-2', seq: 1, state: 'failed' }));
    await flush();
    expect(api.callsOf('listModels')).toHaveLength(0);
  });

  it('rejects an empty source without calling the API', async () => {
    const { api, models } = await setup();
    await expect(models.add('   ')).rejects.toBeInstanceOf(ApiException);
    expect(api.callsOf('addModel')).toEqual([]);
  });

  it('passes add errors on with their hint', async () => {
    const { api, models } = await setup();
    api.failures.addModel = new ApiException('not a GGUF file: /tmp/x.bin', 'Give a .gguf file or a folder with config.json', 400);
    await expect(models.add('/tmp/x.bin')).rejects.toMatchObject({ hint: 'Give a .gguf file or a folder with config.json' });
  });

  it('removes a model', async () => {
    const { api, models } = await setup();
    api.models = [model(), model({ id: 'b' })];
    await models.load();
    await models.remove('b');
    expect(api.callsOf('removeModel')).toEqual([['b']]);
    expect(models.models.map((m) => m.id)).toEqual(['smollm2-135m-instruct']);
  });

  it('keeps the model when removing fails', async () => {
    const { api, models } = await setup();
    api.models = [model()];
    await models.load();
    api.failures.removeModel = new ApiException('model is in use by job j1', 'Cancel the job first', 409);
    await expect(models.remove('smollm2-135m-instruct')).rejects.toMatchObject({ status: 409 });
    expect(models.models).toHaveLength(1);
  });
});
