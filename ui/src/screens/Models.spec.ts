import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import JobsIndicator from '../lib/components/JobsIndicator.svelte';
import { jobsManager } from '../lib/managers/jobs.svelte';
import { modelsManager } from '../lib/managers/models.svelte';
import { FakeTransport, flush, job, jobEvent, model } from '../lib/testing/fake-transport';
import Models from './Models.svelte';

let mounted: ReturnType<typeof mount>[] = [];
let target: HTMLElement;
let api: FakeTransport;

async function render(setup: (api: FakeTransport) => void = () => {}) {
  api = new FakeTransport();
  setup(api);
  modelsManager.connect(api);
  await jobsManager.connect(api);
  mounted.push(mount(Models, { target }));
  mounted.push(mount(JobsIndicator, { target }));
  await settle();
}

async function settle() {
  flushSync();
  await flush();
  flushSync();
}

function cell(id: string, field: string): HTMLElement {
  const el = target.querySelector<HTMLElement>(`tr[data-model-row="${id}"] td[data-field="${field}"]`);
  if (!el) throw new Error(`no cell ${id}.${field}`);
  return el;
}

async function typeAndSubmit(value: string) {
  const input = target.querySelector<HTMLInputElement>('[data-testid="add-model-source"]')!;
  input.value = value;
  input.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
  target.querySelector<HTMLButtonElement>('[data-testid="add-model-submit"]')!.click();
  await settle();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  for (const m of mounted) unmount(m);
  mounted = [];
  for (const j of jobsManager.recent) jobsManager.dismiss(j.id);
  jobsManager.disconnect();
  modelsManager.disconnect();
  target.remove();
});

describe('Models screen', () => {
  it('shows one row per model with raw values and formatted text', async () => {
    await render((api) => {
      api.models = [
        model(),
        model({
          id: 'llama-1b',
          name: 'Llama 3.2 1B',
          parameters: 1_235_814_400,
          quantization: 'BF16',
          context_length: null,
          file_size: 2_471_645_608,
          format: 'safetensors',
        }),
      ];
    });
    expect(target.querySelector('[data-screen="models"] h1')?.textContent).toBe('Models');
    expect(target.querySelectorAll('tr[data-model-row]')).toHaveLength(2);

    const expected: Record<string, [string, string]> = {
      name: ['SmolLM2 135M Instruct', 'SmolLM2 135M Instruct'],
      architecture: ['llama', 'llama'],
      parameters: ['134515008', '134.5M'],
      quantization: ['Q4_1', 'Q4_1'],
      context_length: ['8192', '8,192'],
      file_size: ['98903328', '98.9 MB'],
      format: ['gguf', 'gguf'],
      status: ['ready', 'Ready'],
    };
    for (const [field, [raw, shown]] of Object.entries(expected)) {
      const el = cell('smollm2-135m-instruct', field);
      expect(el.dataset.value, field).toBe(raw);
      expect(el.textContent, field).toContain(shown);
    }
    expect(cell('llama-1b', 'parameters').textContent).toContain('1.24B');
    expect(cell('llama-1b', 'context_length').dataset.value).toBe('');
    expect(cell('llama-1b', 'file_size').textContent).toContain('2.47 GB');
    expect(target.querySelector('[data-testid="cli"]')?.textContent).toContain('modelfactory models list');
  });

  it('shows the problem of a model that is not ready', async () => {
    await render((api) => {
      api.models = [model({ status: 'missing', problem: 'file not found: /models/SmolLM2-135M-Instruct.Q4_1.gguf' })];
    });
    const status = cell('smollm2-135m-instruct', 'status');
    expect(status.dataset.value).toBe('missing');
    expect(target.querySelector('tr[data-model-row="smollm2-135m-instruct"]')?.textContent).toContain(
      'file not found: /models/SmolLM2-135M-Instruct.Q4_1.gguf',
    );
  });

  it('has an empty state that points to setup and the add form', async () => {
    await render();
    const empty = target.querySelector('[data-testid="models-empty"]');
    expect(empty?.textContent).toMatch(/setup/i);
    expect(target.querySelector('table')).toBeNull();
    expect(target.querySelector<HTMLInputElement>('[data-testid="add-model-source"]')?.placeholder).toBe(
      'Path to a .gguf file or model folder, or a hub id like HuggingFaceTB/SmolLM2-135M-Instruct',
    );
  });

  it('adds a local model to the table', async () => {
    await render((api) => {
      api.addResult = (source) => ({ model: model({ id: 'added', name: 'Added model', source }), job: null });
    });
    await typeAndSubmit('/models/a.gguf');
    expect(api.callsOf('addModel')).toEqual([['/models/a.gguf']]);
    expect(target.querySelector('tr[data-model-row="added"]')).not.toBeNull();
    expect(target.querySelector<HTMLInputElement>('[data-testid="add-model-source"]')!.value).toBe('');
  });

  it('shows a hub pull in the jobs indicator, and cancels it', async () => {
    await render((api) => {
      api.addResult = { model: null, job: job({ id: 'pull-1', title: 'Pull HuggingFaceTB/SmolLM2-135M-Instruct', state: 'running' }) };
      api.jobs = [];
    });
    await typeAndSubmit('HuggingFaceTB/SmolLM2-135M-Instruct');
    api.jobs = [job({ id: 'pull-1', state: 'running' })];
    api.push(jobEvent({ job_id: 'pull-1', seq: 1, fraction: 0.42, message: 'model.safetensors' }));
    await settle();
    const row = target.querySelector<HTMLElement>('[data-testid="jobs-indicator"] [data-job="pull-1"]');
    expect(row?.textContent).toContain('Pull HuggingFaceTB/SmolLM2-135M-Instruct');
    expect(row?.textContent).toContain('42%');
    expect(row?.querySelector('[role="progressbar"]')?.getAttribute('aria-valuenow')).toBe('42');

    row!.querySelector<HTMLButtonElement>('[data-testid="job-cancel"]')!.click();
    await settle();
    expect(api.callsOf('cancelJob')).toEqual([['pull-1']]);
    expect(target.querySelector('[data-job="pull-1"]')?.getAttribute('data-state')).toBe('cancelled');
    expect(target.querySelector('[data-job="pull-1"] [data-testid="job-cancel"]')).toBeNull();
  });

  it('shows an add error with its hint', async () => {
    await render((api) => {
      api.failures.addModel = new ApiException('no such file: /nope.gguf', 'Check the path; it must be readable by the studio', 400);
    });
    await typeAndSubmit('/nope.gguf');
    const box = target.querySelector('[data-testid="add-model-error"]');
    expect(box?.textContent).toContain('no such file: /nope.gguf');
    expect(box?.textContent).toContain('Check the path; it must be readable by the studio');
  });

  it('removes a model only after confirmation', async () => {
    await render((api) => {
      api.models = [model()];
    });
    target.querySelector<HTMLButtonElement>('[data-testid="remove-model"]')!.click();
    await settle();
    expect(api.callsOf('removeModel')).toEqual([]);
    target.querySelector<HTMLButtonElement>('[data-testid="cancel-remove"]')!.click();
    await settle();
    expect(target.querySelector('[data-testid="confirm-remove"]')).toBeNull();

    target.querySelector<HTMLButtonElement>('[data-testid="remove-model"]')!.click();
    await settle();
    expect(target.querySelector('[data-testid="cli"]')?.textContent).toContain('modelfactory models remove smollm2-135m-instruct');
    target.querySelector<HTMLButtonElement>('[data-testid="confirm-remove"]')!.click();
    await settle();
    expect(api.callsOf('removeModel')).toEqual([['smollm2-135m-instruct']]);
    expect(target.querySelector('tr[data-model-row]')).toBeNull();
  });

  it('shows a load error with its hint', async () => {
    await render((api) => {
      api.failures.listModels = new ApiException('cannot open the workspace', 'Run setup first');
    });
    const box = target.querySelector('[data-testid="models-error"]');
    expect(box?.textContent).toContain('cannot open the workspace');
    expect(box?.textContent).toContain('Run setup first');
    expect(target.querySelector('[data-testid="models-empty"]')).toBeNull();
  });
});
