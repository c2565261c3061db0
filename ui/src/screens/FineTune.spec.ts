import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { presetConfig } from '../lib/api/types';
import { attributionManager } from '../lib/managers/attribution.svelte';
import { chatManager } from '../lib/managers/chat.svelte';
import { compareManager } from '../lib/managers/compare.svelte';
import { finetuneForm } from '../lib/managers/finetune.svelte';
import { jobsManager } from '../lib/managers/jobs.svelte';
import { modelsManager } from '../lib/managers/models.svelte';
import { runsManager } from '../lib/managers/runs.svelte';
import { router } from '../lib/router.svelte';
import {
  ALICE,
  CAROL,
  FakeTransport,
  accuracyReport,
  attributionReport,
  evalRecord,
  flush,
  jobEvent,
  model,
  runDetail,
  runSummary,
  stepRecord,
} from '../lib/testing/fake-transport';
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
  attributionManager.connect(api);
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
  attributionManager.disconnect();
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

describe('Fine-tune screen: a run’s attribution', () => {
  const finished = () => runSummary({ id: 'r', name: 'dose-faq', state: 'finished', adapter: '/ws/runs/r/adapter', job_id: 'job-0' });

  it('is offered only for a run with an adapter', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [runSummary({ id: 'r', job_id: 'j', state: 'running' })];
    });
    expect(target.querySelector('[data-attribution]')).toBeNull();
    expect(api.callsOf('runAttribution')).toEqual([]);
  });

  it('explains attribution before it is computed, starts it, follows its job and shows the report', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [finished()];
    });
    const panel = $('[data-attribution="r"]');
    expect(panel.dataset.computed).toBe('false');
    const text = panel.textContent?.replace(/\s+/g, ' ');
    expect(text).toContain('Which contributors’ rows made this adapter better?');
    expect(text).toContain('influence on the held-out evaluation rows');
    expect($$('[data-contributor]')).toEqual([]);
    // nothing to check the accuracy of yet
    expect(target.querySelector('[data-measure-accuracy]')).toBeNull();

    $('[data-compute-attribution]').click();
    await settle();
    expect(api.callsOf('startAttribution')).toEqual([['r', {}]]);
    const jobId = api.jobs[0]!.id;
    expect($('[data-attribution-job="attribution"]').dataset.state).toBe('queued');
    expect(($('[data-compute-attribution]') as HTMLButtonElement).disabled).toBe(true);

    api.push(jobEvent({ job_id: jobId, seq: 1, state: 'running', fraction: 0.5, message: 'gradients 12/24' }));
    await settle();
    expect($('[data-attribution-message]').textContent).toBe('gradients 12/24');
    expect($('[data-attribution-job="attribution"] [role="progressbar"]').getAttribute('aria-valuenow')).toBe('50');

    api.attributions.r = { run_id: 'r', report: attributionReport({ run_id: 'r' }), accuracy: null };
    api.push(jobEvent({ job_id: jobId, seq: 2, state: 'succeeded', fraction: 1, message: 'gradients 24/24', at: '2025-01-01T00:01:00Z' }));
    await settle();
    expect(target.querySelector('[data-attribution-job]')).toBeNull();
    expect($('[data-attribution="r"]').dataset.computed).toBe('true');
    expect($$('[data-contributor]').map((c) => c.dataset.contributor)).toEqual([ALICE, 'file:notes.jsonl', CAROL]);
    expect($('[data-compute-attribution]').textContent).toContain('Compute again');
  });

  it('cancels the running job', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [finished()];
    });
    $('[data-compute-attribution]').click();
    await settle();
    $('[data-attribution-cancel="attribution"]').click();
    await settle();
    expect(api.callsOf('cancelJob')).toEqual([[api.jobs[0]!.id]]);
    expect($('[data-attribution-stopped="attribution"]').textContent).toContain('cancelled');
  });

  it('shows why the studio refused to compute it', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [finished()];
      api.failures.startAttribution = new ApiException('run dose-faq held out no evaluation rows', 'train it with an eval fraction above 0', 400);
    });
    $('[data-compute-attribution]').click();
    await settle();
    expect($('[data-testid="attribution-start-error"]').textContent).toContain('held out no evaluation rows');
    expect($('[data-testid="attribution-start-error"] [data-hint]').textContent).toContain('eval fraction');
  });

  it('ranks the contributors with their shares, flags the harmful ones and their rows, and explains the accuracy', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [finished()];
      api.attributions.r = { run_id: 'r', report: attributionReport({ run_id: 'r' }), accuracy: accuracyReport() };
    });
    expect(cli()).toContain('modelfactory attribution show r');
    expect($('[data-attribution-summary] [data-train-rows]').textContent).toBe('3');
    expect($('[data-attribution-summary] [data-eval-rows]').textContent).toBe('2');
    const contributors = $$('[data-contributor]');
    expect(contributors.map((c) => [c.dataset.contributor, c.dataset.share, c.hasAttribute('data-harmful')])).toEqual([
      [ALICE, '7500', false],
      ['file:notes.jsonl', '2500', false],
      [CAROL, '0', true],
    ]);
    expect(contributors[0]!.textContent).toContain('75%');
    expect(contributors[0]!.querySelector<HTMLElement>('.share-bar span')?.style.width).toBe('75%');
    // what retraining without its rows cost
    expect(contributors[0]!.textContent).toContain('the evaluation loss rose by 1.98');
    expect(contributors[1]!.textContent).toContain('Local file notes.jsonl');
    expect(contributors[1]!.textContent).toContain('credited to no one on chain');
    expect(contributors[2]!.textContent).toContain('no share');
    expect(contributors[2]!.textContent).toContain('Harmful: its rows raised the evaluation loss, no share.');
    expect(contributors[2]!.textContent).toContain('the evaluation loss fell by 0.65');

    const rows = $$('[data-harmful-row]');
    expect(rows.map((r) => r.dataset.harmfulRow)).toEqual(['cd'.repeat(32)]);
    expect(rows[0]!.textContent).toContain('user: What is the dose? assistant: 50 mg.');
    expect(rows[0]!.textContent).toContain(CAROL);

    const methods = $$('[data-accuracy-method]');
    expect(methods.map((m) => [m.dataset.accuracyMethod, m.querySelector<HTMLElement>('[data-lds]')?.dataset.lds, m.dataset.used])).toEqual([
      ['datainf', '0.377', 'true'],
      ['tracin', '0.285', 'false'],
      ['similarity', '-0.056', 'false'],
    ]);
    expect(methods[0]!.textContent).toContain('DataInf');
    expect(methods[0]!.textContent).toContain('the shares use it');
    expect(methods[0]!.textContent).toContain('100%');
    expect(methods[1]!.textContent).toContain('66.7%');
    expect(methods[2]!.textContent).toContain('Representation similarity');
    const panel = ($('[data-attribution="r"]').textContent ?? '').replace(/\s+/g, ' ');
    expect(panel).toContain('retrained on 20 random halves of the rows (60 steps each)');
    expect(panel).toContain('1 is perfect, 0 no better than chance');
    expect($('[data-measure-accuracy]').textContent).toContain('Measure again');
  });

  it('caps the list of harmful rows and counts the rest', async () => {
    const rows = Array.from({ length: 23 }, (_, i) => ({ contribution_id: `row-${i}`, contributor: CAROL, score: -(i + 1), preview: `user: q${i}` }));
    await render('#/finetune/runs/r', (api) => {
      api.runs = [finished()];
      api.attributions.r = { run_id: 'r', report: attributionReport({ run_id: 'r', rows }), accuracy: null };
    });
    const shown = $$('[data-harmful-row]');
    expect(shown).toHaveLength(20);
    expect(shown[0]!.dataset.harmfulRow).toBe('row-22');
    expect($('[data-harmful-rest]').textContent).toContain('and 3 more');
  });

  it('offers to measure the accuracy, saying it is slow, and starts it on 20 halves', async () => {
    await render('#/finetune/runs/r', (api) => {
      api.runs = [finished()];
      api.attributions.r = { run_id: 'r', report: attributionReport({ run_id: 'r' }), accuracy: null };
    });
    expect($$('[data-accuracy-method]')).toEqual([]);
    expect($('[data-attribution="r"]').textContent?.replace(/\s+/g, ' ')).toContain('retrains the adapter about 20 times');
    $('[data-measure-accuracy]').click();
    await settle();
    expect(api.callsOf('startAttributionAccuracy')).toEqual([['r', { subsets: 20 }]]);
    expect($('[data-attribution-job="accuracy"]').dataset.state).toBe('queued');
    expect(($('[data-measure-accuracy]') as HTMLButtonElement).disabled).toBe(true);
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
