import { flushSync } from 'svelte';
import { describe, expect, it } from 'vitest';
import { defaultTrainConfig, presets as contractPresets } from '../api/contract.generated';
import { ApiException } from '../api/errors';
import { DEFAULT_TRAIN_CONFIG, PRESETS, presetConfig } from '../api/types';
import { BaseEventManager, type Events } from '../events';
import { FakeTransport, model } from '../testing/fake-transport';
import { FinetuneForm } from './finetune.svelte';
import { RunsManager } from './runs.svelte';

function setup() {
  const api = new FakeTransport();
  const runs = new RunsManager(new BaseEventManager<Events>());
  runs.connect(api);
  const form = new FinetuneForm(runs);
  form.connect(api);
  form.adoptModels([model({ id: 'broken', status: 'missing' }), model()]);
  return { api, form, runs };
}

describe('FinetuneForm', () => {
  it('knows the trainer defaults and the studio presets exactly', () => {
    expect(DEFAULT_TRAIN_CONFIG).toEqual(defaultTrainConfig);
    for (const p of PRESETS) expect(presetConfig(p), p).toEqual(contractPresets[p]);
  });

  it('picks the first ready model and starts from the balanced preset with QLoRA', () => {
    const { form } = setup();
    expect(form.modelId).toBe('smollm2-135m-instruct');
    expect(form.config).toEqual(presetConfig('balanced'));
    expect(form.problems).toEqual(['Choose a dataset']);
  });

  it('keeps the knobs a user changed across presets, and forgets a change back to the preset value', () => {
    const { form } = setup();
    form.setKnob('max_steps', 3);
    form.setKnob('max_length', 128);
    form.setPreset('quick');
    flushSync();
    expect(form.config).toMatchObject({ max_steps: 3, max_length: 128, grad_accum: 2, lora: { rank: 8, alpha: 16 } });
    expect(form.changedCount).toBe(2);
    form.setKnob('max_length', 512);
    expect(form.changedCount).toBe(1);
    form.setKnob('targets', ['v_proj', 'q_proj']);
    expect(form.config.lora.targets).toEqual(['q_proj', 'v_proj']);
    form.setMethod('lora');
    expect(form.config.method).toBe('lora');
    form.resetKnobs();
    expect(form.config).toEqual({ ...presetConfig('quick'), method: 'lora' });
  });

  it('shows the same run as a `modelfactory train` command', () => {
    const { form } = setup();
    form.setDataset('/data/my examples.jsonl');
    form.setPreset('quick');
    form.setKnob('max_steps', 3);
    form.setKnob('max_length', 128);
    form.setKnob('eval_every', 1);
    form.setKnob('checkpoint_every', 1);
    expect(form.command.command).toBe(
      "modelfactory train --model smollm2-135m-instruct --data '/data/my examples.jsonl' --preset quick --max-steps 3 --max-length 128 --eval-every 1 --checkpoint-every 1",
    );
    form.setKnob('keep_checkpoints', 5);
    expect(form.command.withoutFlag).toEqual(['Checkpoints kept']);
  });

  it('refuses settings the trainer would refuse, in words', () => {
    const { form } = setup();
    form.setDataset('/d.jsonl');
    form.setKnob('learning_rate', 2);
    form.setKnob('targets', []);
    form.setKnob('rank', 2.5);
    expect(form.problems).toEqual([
      'Rank must be a whole number',
      'Choose at least one layer to adapt',
      'The learning rate must be above 0 and below 1',
    ]);
  });

  it('previews the dataset for the model and max length, and knows when the preview is stale', async () => {
    const { api, form } = setup();
    form.setDataset('/data/modelfactory-help.jsonl');
    await form.runPreview();
    expect(api.callsOf('previewDataset')).toEqual([[{ model_id: 'smollm2-135m-instruct', dataset: '/data/modelfactory-help.jsonl', max_length: 512, count: 5 }]]);
    expect(form.preview?.examples[0]?.segments.some((s) => s.kind === 'trained')).toBe(true);
    expect(form.previewStale).toBe(false);
    form.setKnob('max_length', 128);
    expect(form.previewStale).toBe(true);

    api.failures.previewDataset = new ApiException('no such file: /nope.jsonl', 'check the path');
    form.setDataset('/nope.jsonl');
    await form.runPreview();
    expect(form.preview).toBeNull();
    expect(form.previewError).toMatchObject({ error: 'no such file: /nope.jsonl', hint: 'check the path' });
  });

  it('starts the run with every setting, or says why it cannot', async () => {
    const { api, form, runs } = setup();
    expect(await form.start()).toBeNull();
    expect(form.startError?.error).toBe('Choose a dataset');

    form.setDataset(' /data/modelfactory-help.jsonl ');
    form.setName('support answers');
    form.setKnob('max_steps', 3);
    const run = await form.start();
    expect(run?.id).toBe('run-1');
    expect(api.callsOf('startRun')).toEqual([
      [{ name: 'support answers', model_id: 'smollm2-135m-instruct', dataset: '/data/modelfactory-help.jsonl', config: { ...presetConfig('balanced'), max_steps: 3 } }],
    ]);
    expect(runs.runs.map((r) => r.id)).toEqual(['run-1']);

    api.failures.startRun = new ApiException('the dataset is not a file', null, 400);
    expect(await form.start()).toBeNull();
    expect(form.startError?.status).toBe(400);
  });

  it('lists the demo datasets', async () => {
    const { form } = setup();
    await form.loadDemos();
    expect(form.demos.map((d) => d.name)).toEqual(['modelfactory-help']);
  });
});
