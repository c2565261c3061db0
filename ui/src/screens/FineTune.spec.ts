import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { presetConfig } from '../lib/api/types';
import { chatManager } from '../lib/managers/chat.svelte';
import { compareManager } from '../lib/managers/compare.svelte';
import { finetuneForm } from '../lib/managers/finetune.svelte';
import { jobsManager } from '../lib/managers/jobs.svelte';
import { modelsManager } from '../lib/managers/models.svelte';
import { runsManager } from '../lib/managers/runs.svelte';
import { router } from '../lib/router.svelte';
import { FakeTransport, evalRecord, flush, jobEvent, model, runDetail, runSummary, stepRecord } from '../lib/testing/fake-transport';
import FineTune from './FineTune.svelte';

let mounted: ReturnType<typeof mount> | null = null;
let target: HTMLElement;
let api: FakeTransport;

async function render(hash: string, setup: (api: FakeTransport) => void = () => {}) {
  window.location.hash = hash;
  router.start(window);
  api = new FakeTransport();
  api.models = [model()];
  setup(api);
  modelsManager.connect(api);
  runsManager.connect(api);
  finetuneForm.connect(api);
  chatManager.connect(api);
  compareManager.connect(api);
  await jobsManager.connect(api);
  mounted = mount(FineTune, { target });
  await settle();
}

async function settle() {
  for (let i = 0; i < 3; i++) {
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

function type(selector: string, value: string) {
  const el = $(selector) as HTMLInputElement;
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

function cli(): string {
  return $('[data-testid="cli"]').textContent ?? '';
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  if (mounted) unmount(mounted);
  mounted = null;
  router.stop();
  jobsManager.disconnect();
  modelsManager.disconnect();
  runsManager.disconnect();
  finetuneForm.disconnect();
  finetuneForm.reset();
  chatManager.disconnect();
  compareManager.disconnect();
  target.remove();
  window.location.hash = '';
});

describe('Fine-tune screen: a new run', () => {
  it('takes the dataset from the address (#/finetune?dataset=…)', async () => {
    await render('#/finetune?dataset=%2Fhome%2Fuser%2F.modelfactory%2Fdatasets%2Ffaq-accepted.jsonl');
    expect($('[data-screen="finetune"]').getAttribute('data-view')).toBe('new');
    expect(($('[data-finetune-dataset]') as HTMLInputElement).value).toBe('/home/user/.modelfactory/datasets/faq-accepted.jsonl');
    expect(cli()).toContain('--data /home/user/.modelfactory/datasets/faq-accepted.jsonl');
  });

  it('fills in the model and a demo dataset, and shows the command for the form', async () => {
    await render('#/finetune');
    expect(($('[data-finetune-model]') as HTMLSelectElement).value).toBe('smollm2-135m-instruct');
    expect(($('[data-finetune-start]') as HTMLButtonElement).disabled).toBe(true);
    $('[data-demo-dataset="modelfactory-help"]').click();
    await settle();
    expect(($('[data-finetune-dataset]') as HTMLInputElement).value).toBe('/assets/datasets/modelfactory-help.jsonl');
    expect(($('[data-finetune-start]') as HTMLButtonElement).disabled).toBe(false);
    expect(cli()).toContain('modelfactory train --model smollm2-135m-instruct --data /assets/datasets/modelfactory-help.jsonl --preset balanced');

    ($('[data-preset="quick"]') as HTMLInputElement).click();
    ($('[data-method="lora"]') as HTMLInputElement).click();
    await settle();
    type('[data-knob="max_steps"]', '3');
    type('[data-knob="max_length"]', '128');
    expect(cli()).toContain('--preset quick --method lora --max-steps 3 --max-length 128');
    expect($('[data-changed-count]').getAttribute('data-changed-count')).toBe('2');
    // the Advanced fields show the preset's values
    expect(($('[data-knob="rank"]') as HTMLInputElement).value).toBe('8');
    $('[data-knobs-reset]').click();
    await settle();
    expect(($('[data-knob="max_steps"]') as HTMLInputElement).value).toBe('');
    expect(cli()).not.toContain('--max-steps');
  });

  it('previews the data with the trained spans, the row counts and the bad rows', async () => {
    await render('#/finetune');
    $('[data-demo-dataset="modelfactory-help"]').click();
    await settle();
    $('[data-finetune-preview]').click();
    await settle();
    expect(api.callsOf('previewDataset')).toEqual([
      [{ model_id: 'smollm2-135m-instruct', dataset: '/assets/datasets/modelfactory-help.jsonl', max_length: 512, count: 5 }],
    ]);
    expect($('[data-segment="trained"]').textContent).toBe('A desktop studio for fine-tuning.<|im_end|>');
    expect($('[data-segment="context"]').textContent).toContain('What is ModelFactory?');
    expect($('[data-preview-report]').textContent).toContain('119 of 120 kept');
    expect($('[data-problem-number="7"]').textContent).toContain('line 7');
    expect($('[data-problem-number="7"]').textContent).toContain('no `output` field');
    // a change of max length makes the preview stale until it is made again
    $('[data-finetune-advanced] summary').click();
    type('[data-knob="max_length"]', '128');
    await settle();
    expect(target.querySelector('[data-preview-stale]')).not.toBeNull();
  });

  it('says why a skipped example will not train', async () => {
    await render('#/finetune', (api) => {
      api.preview.examples = [
        { id: 'long', segments: [], tokens: 900, trained_tokens: 0, skipped: { kind: 'longer_than_context', tokens: 900, first_trained: 600, max_len: 512 } },
      ];
    });
    $('[data-demo-dataset="modelfactory-help"]').click();
    await settle();
    $('[data-finetune-preview]').click();
    await settle();
    expect($('[data-preview-example="long"]').getAttribute('data-skipped')).toBe('longer_than_context');
    expect($('[data-preview-example="long"]').textContent).toContain('raise Max length');
  });

  it('refuses settings the trainer would refuse, and shows why the studio refused a start', async () => {
    await render('#/finetune');
    $('[data-demo-dataset="modelfactory-help"]').click();
    await settle();
    type('[data-knob="learning_rate"]', '3');
    expect($('[data-testid="finetune-problems"]').textContent).toContain('learning rate must be above 0 and below 1');
    expect(($('[data-finetune-start]') as HTMLButtonElement).disabled).toBe(true);
    type('[data-knob="learning_rate"]', '0.0002');
    api.failures.startRun = new ApiException('/assets/datasets/modelfactory-help.jsonl is not a file', 'check the path');
    $('[data-finetune-start]').click();
    await settle();
    expect($('[data-testid="start-error"]').textContent).toContain('is not a file');
    expect(window.location.hash).toBe('#/finetune');
  });

  it('starts the run with the form’s settings and opens its dashboard', async () => {
    await render('#/finetune');
    $('[data-demo-dataset="modelfactory-help"]').click();
    ($('[data-preset="quick"]') as HTMLInputElement).click();
    await settle();
    type('[data-knob="max_steps"]', '3');
    $('[data-finetune-start]').click();
    await settle();
    expect(api.callsOf('startRun')).toEqual([
      [{ name: null, model_id: 'smollm2-135m-instruct', dataset: '/assets/datasets/modelfactory-help.jsonl', config: { ...presetConfig('quick'), max_steps: 3 } }],
    ]);
    expect(window.location.hash).toBe('#/finetune/runs/run-1');
    expect($('[data-screen="finetune"]').getAttribute('data-view')).toBe('run');
    expect($('[data-run-view="run-1"]')).not.toBeNull();
  });
});

describe('Fine-tune screen: a run', () => {
  it('draws the stored curve from step 1, then appends live events and shows the figures', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', job_id: 'j', step: 2, total_steps: 4, last_loss: 2.8 })];
      api.details.r = runDetail({ steps: [stepRecord(1), stepRecord(2)], evals: [evalRecord(0), evalRecord(2)] });
    });
    const points = () => $$('[data-chart="loss"] circle[data-series="train"]').map((c) => [c.dataset.step, c.dataset.value]);
    expect(points()).toEqual([
      ['1', '2.9'],
      ['2', '2.8'],
    ]);
    // the untrained adapter's eval loss starts the eval curve at step 0
    expect($$('[data-chart="loss"] circle[data-series="eval"]').map((c) => c.dataset.step)).toEqual(['0', '2']);
    expect($('[data-run-step]').textContent).toContain('Step 2 of 4');
    expect($('[data-run-state]').getAttribute('data-run-state')).toBe('running');

    api.push(
      jobEvent({
        job_id: 'j',
        seq: 7,
        message: 'step 3 of 4',
        fraction: 0.75,
        figures: { step: 3, total_steps: 4, loss: 2.5, learning_rate: 1e-4, grad_norm: 1, tokens_per_s: 52.5, elapsed_s: 15, eta_s: 65, memory_bytes: 9e8 },
      }),
    );
    await settle();
    expect(points().map((p) => p[0])).toEqual(['1', '2', '3']);
    expect($('[data-run-step]').textContent).toContain('Step 3 of 4');
    expect($('[data-run-message]').textContent).toBe('step 3 of 4');
    expect($('[data-figure="tokens_per_s"]').textContent).toContain('52.5 tokens/s');
    expect($('[data-figure="eta_s"]').textContent).toContain('1 min 05 s');
    expect($('[data-figure="peak_memory_bytes"]').textContent).toContain('900 MB');
    expect($('[data-figure="learning_rate"]').textContent).toContain('1.0e-4');
    expect($$('[data-step-row]').map((r) => r.dataset.stepRow)).toEqual(['3', '2', '1', '0']);
    expect($('[data-step-row="0"]').textContent).toContain('before training');
    expect($('[data-step-row="2"] [data-field="eval_loss"]').textContent).toBe('3');
    expect(cli()).toContain('modelfactory train --model smollm2-135m-instruct');
    expect(cli()).toContain('modelfactory runs show r');
  });

  it('cancels a running run', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', job_id: 'j' })];
    });
    expect(target.querySelector('[data-run-resume]')).toBeNull();
    expect(target.querySelector('[data-run-delete]')).toBeNull();
    $('[data-run-cancel]').click();
    await settle();
    expect(api.callsOf('cancelRun')).toEqual([['r']]);
  });

  it('shows a failed run’s error and resumes it', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', job_id: 'j', state: 'failed', error: 'the gradient became NaN at step 3; lower the learning rate', step: 2 })];
    });
    expect($('[data-run-error]').textContent).toContain('lower the learning rate');
    expect(target.querySelector('[data-run-chat]')).toBeNull();
    $('[data-run-resume]').click();
    await settle();
    expect(api.callsOf('resumeRun')).toEqual([['r']]);
    expect($('[data-run-state]').getAttribute('data-run-state')).toBe('running');
  });

  it('deletes a finished run after asking, and goes back to the list', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', state: 'finished', adapter: '/ws/runs/r/adapter' })];
    });
    $('[data-run-delete]').click();
    await settle();
    expect(api.callsOf('deleteRun')).toEqual([]);
    $('[data-run-confirm-delete]').click();
    await settle();
    expect(api.callsOf('deleteRun')).toEqual([['r']]);
    expect(window.location.hash).toBe('#/finetune/runs');
    expect(target.querySelector('[data-testid="runs-empty"]')).not.toBeNull();
  });

  it('opens the Chat screen on a new conversation through the adapter', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', state: 'finished', adapter: '/ws/runs/r/adapter' })];
    });
    $('[data-run-chat]').click();
    await settle();
    expect(window.location.hash).toBe('#/chat');
    expect(chatManager.current).toBeNull();
    expect(chatManager.adapterRunId).toBe('r');
    expect(chatManager.modelId).toBe('smollm2-135m-instruct');
  });

  it('opens the Publish screen on a finished run', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', state: 'finished', adapter: '/ws/runs/r/adapter' })];
    });
    $('[data-run-publish]').click();
    await settle();
    expect(window.location.hash).toBe('#/publish?run=r');
  });
});

describe('Fine-tune screen: the runs list', () => {
  it('lists every run with its state, steps and losses', async () => {
    await render('#/finetune/runs', (api) => {
      api.runs = [
        runSummary({ id: 'a', name: 'second try', state: 'running', step: 5, total_steps: 54, last_loss: 2.345678 }),
        runSummary({ id: 'b', name: 'first try', state: 'cancelled', step: 9, total_steps: 54, last_loss: 2.5, last_eval_loss: 2.75 }),
      ];
    });
    const rows = $$('[data-run-row]');
    expect(rows.map((r) => r.dataset.runRow)).toEqual(['a', 'b']);
    expect($('[data-run-row="a"] [data-field="step"]').textContent?.trim()).toBe('5 / 54');
    expect($('[data-run-row="a"] [data-field="last_loss"]').textContent).toBe('2.346');
    expect($('[data-run-row="b"] [data-field="state"]').textContent).toContain('Cancelled');
    expect($('[data-run-row="b"] [data-field="last_eval_loss"]').getAttribute('data-value')).toBe('2.75');
    expect($('[data-run-open="b"]').getAttribute('href')).toBe('#/finetune/runs/b');
    expect($('[data-finetune-tab="runs"]').textContent).toContain('2');
  });
});
