import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { chatManager } from '../lib/managers/chat.svelte';
import { compareManager } from '../lib/managers/compare.svelte';
import { modelsManager } from '../lib/managers/models.svelte';
import { runsManager } from '../lib/managers/runs.svelte';
import { FakeTransport, conversation, flush, model, runSummary, stats } from '../lib/testing/fake-transport';
import Chat from './Chat.svelte';

let mounted: ReturnType<typeof mount> | null = null;
let target: HTMLElement;
let api: FakeTransport;

async function render(setup: (api: FakeTransport) => void = () => {}) {
  api = new FakeTransport();
  api.models = [model()];
  setup(api);
  modelsManager.connect(api);
  chatManager.connect(api);
  compareManager.connect(api);
  runsManager.connect(api);
  mounted = mount(Chat, { target });
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
  const el = $(selector) as HTMLInputElement | HTMLTextAreaElement;
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  if (mounted) unmount(mounted);
  mounted = null;
  modelsManager.disconnect();
  chatManager.disconnect();
  compareManager.disconnect();
  runsManager.disconnect();
  target.remove();
});

describe('Chat screen', () => {
  it('picks the ready model and shows the equivalent command', async () => {
    await render((api) => {
      api.models = [model({ id: 'broken', name: 'Broken', status: 'unreadable' }), model()];
    });
    const picker = $('[data-chat-model]') as HTMLSelectElement;
    expect(picker.value).toBe('smollm2-135m-instruct');
    expect(picker.querySelector<HTMLOptionElement>('option[value="broken"]')?.disabled).toBe(true);
    expect($('[data-testid="cli"]').textContent).toContain('modelfactory chat --model smollm2-135m-instruct');
    expect(($('[data-chat-send]') as HTMLButtonElement).disabled).toBe(true);
    expect(($('[data-chat-stop]') as HTMLButtonElement).disabled).toBe(true);
  });

  it('sends a question, streams the answer and shows its speed', async () => {
    await render((api) => {
      api.holdAnswers = true;
    });
    type('[data-sampling="temperature"]', '0');
    type('[data-chat-input]', 'What is the capital of France?');
    expect($('[data-testid="cli"]').textContent).toContain(
      "modelfactory chat --model smollm2-135m-instruct --temperature 0 --prompt 'What is the capital of France?'",
    );
    $('[data-chat-send]').click();
    await settle();

    const streaming = $('[data-message-role="assistant"][data-state="streaming"]');
    expect(streaming.textContent).toContain('The capital of France is Paris.');
    expect(($('[data-chat-stop]') as HTMLButtonElement).disabled).toBe(false);
    expect(($('[data-chat-send]') as HTMLButtonElement).disabled).toBe(true);
    expect(($('[data-chat-input]') as HTMLTextAreaElement).value).toBe('');

    api.finishAnswers();
    await settle();
    const answer = $('[data-message-role="assistant"][data-state="done"]');
    expect(answer.querySelector('[data-message-content]')?.textContent).toBe('The capital of France is Paris.');
    expect(answer.querySelector('[data-message-stats]')?.textContent).toContain('41.3 tokens/s');
    expect($('[data-message-role="user"]').textContent).toContain('What is the capital of France?');
    expect(api.callsOf('sendMessage')[0]?.[1]).toMatchObject({ sampling: { temperature: 0 } });
    expect($('[data-conversation="conv-1"]').textContent).toContain('What is the capital of France?');
  });

  it('sends with Enter, not with Shift+Enter', async () => {
    await render();
    type('[data-chat-input]', 'Hello');
    $('[data-chat-input]').dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', shiftKey: true, bubbles: true }));
    await settle();
    expect(api.callsOf('sendMessage')).toEqual([]);
    $('[data-chat-input]').dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    await settle();
    expect(api.callsOf('sendMessage')).toHaveLength(1);
  });

  it('stops an answer and marks it as stopped', async () => {
    await render((api) => {
      api.holdAnswers = true;
    });
    type('[data-chat-input]', 'Tell me a story');
    $('[data-chat-send]').click();
    await settle();
    $('[data-chat-stop]').click();
    await settle();
    expect(api.callsOf('stopAnswer')).toEqual([['conv-1']]);
    const answer = $('[data-message-role="assistant"][data-state="done"]');
    expect(answer.querySelector('[data-message-stats]')?.getAttribute('data-stop-reason')).toBe('cancelled');
    expect(answer.textContent).toContain('stopped');
  });

  it('shows why a question failed and gives it back to the input box', async () => {
    await render((api) => {
      api.failures.sendMessage = new ApiException('cannot load the model x for chat: not a GGUF file: /m/x.gguf', 'download it again');
    });
    type('[data-chat-input]', 'Hello?');
    $('[data-chat-send]').click();
    await settle();
    expect($('[data-testid="chat-error"]').textContent).toContain('not a GGUF file');
    expect($('[data-testid="chat-error"]').textContent).toContain('download it again');
    expect(($('[data-chat-input]') as HTMLTextAreaElement).value).toBe('Hello?');
    expect(target.querySelector('[data-message-role="user"]')).toBeNull();
  });

  it('opens, starts and deletes conversations', async () => {
    await render((api) => {
      api.conversations = [
        conversation({
          id: 'old',
          title: 'Geography',
          messages: [
            { seq: 1, role: 'user', content: 'Capital of Italy?', stats: null, created_at: '' },
            { seq: 2, role: 'assistant', content: 'Rome.', stats: stats(), created_at: '' },
          ],
        }),
      ];
    });
    $('[data-conversation="old"] button.open').click();
    await settle();
    expect($('[data-message-role="assistant"]').textContent).toContain('Rome.');
    $('[data-chat-new]').click();
    await settle();
    expect(target.querySelector('[data-message-role]')).toBeNull();

    $('[data-conversation="old"] [data-conversation-delete]').click();
    await settle();
    expect(api.callsOf('deleteConversation')).toEqual([]);
    $('[data-conversation="old"] [data-conversation-confirm-delete]').click();
    await settle();
    expect(api.callsOf('deleteConversation')).toEqual([['old']]);
    expect(target.querySelector('[data-conversation="old"]')).toBeNull();
  });

  it('says where to get a model when none is ready', async () => {
    await render((api) => {
      api.models = [];
    });
    expect($('[data-testid="chat-no-models"]').textContent).toContain('Models');
    expect(($('[data-chat-input]') as HTMLTextAreaElement).disabled).toBe(true);
  });

  it('offers the adapters of finished and cancelled runs of the chosen model, and answers through one', async () => {
    await render((api) => {
      api.runs = [
        runSummary({ id: 'done', name: 'support answers', state: 'finished', adapter: '/a' }),
        runSummary({ id: 'stopped', name: 'first try', state: 'cancelled', step: 9, adapter: '/b' }),
        runSummary({ id: 'busy', name: 'training now', state: 'running', adapter: '/c' }),
        runSummary({ id: 'none', name: 'no adapter yet', state: 'cancelled', adapter: null }),
        runSummary({ id: 'other', name: 'another model', state: 'finished', adapter: '/d', model_id: 'qwen' }),
      ];
    });
    const picker = $('[data-chat-adapter]') as HTMLSelectElement;
    expect([...picker.options].map((o) => o.value)).toEqual(['', 'done', 'stopped']);
    expect(picker.value).toBe('');
    expect($('[data-chat-using]').textContent).toContain('the base model without an adapter');

    picker.value = 'done';
    picker.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect($('[data-chat-using]').getAttribute('data-chat-using')).toBe('done');
    expect($('[data-chat-using]').textContent).toContain('support answers');
    type('[data-chat-input]', 'What is ModelFactory?');
    expect($('[data-testid="cli"]').textContent).toContain('modelfactory chat --model smollm2-135m-instruct --adapter done');
    $('[data-chat-send]').click();
    await settle();
    expect(api.callsOf('createConversation')[0]?.[0]).toMatchObject({ adapter_run_id: 'done' });
    const answer = $('[data-message-role="assistant"][data-state="done"]');
    expect(answer.querySelector('[data-message-stats]')?.getAttribute('data-adapter-run')).toBe('done');
    expect(answer.querySelector('.who')?.textContent).toContain('SmolLM2 135M Instruct + adapter support answers');
    expect($('[data-conversation="conv-1"]').getAttribute('data-adapter-run')).toBe('done');
    expect($('[data-conversation="conv-1"]').textContent).toContain('adapter support answers');
    // the passages of the answer found in the adapter's training rows, with their contributors
    const cited = answer.querySelector('[data-citations]');
    expect(cited?.getAttribute('data-citations')).toBe('1');
    const passage = answer.querySelector('[data-citation]');
    expect(passage?.querySelector('q')?.textContent).toBe(answer.querySelector('[data-message-content]')?.textContent);
    expect(passage?.textContent).toContain('once in the training rows: c-0042 by 0x45c0');
  });

  it('says when an adapter answer could not be looked up in its training rows', async () => {
    await render((api) => {
      api.runs = [runSummary({ id: 'done', name: 'support answers', state: 'finished', adapter: '/a' })];
      api.conversations = [
        conversation({
          adapter_run_id: 'done',
          messages: [
            { seq: 1, role: 'user', content: 'Hi', stats: null, created_at: '2025-01-01T00:00:01Z' },
            {
              seq: 2,
              role: 'assistant',
              content: 'Hello.',
              stats: stats({ adapter_run_id: 'done', citations_error: 'runs/done/citations.idx is missing' }),
              created_at: '2025-01-01T00:00:02Z',
            },
            {
              seq: 3,
              role: 'assistant',
              content: 'Hello again.',
              stats: stats({ adapter_run_id: 'done' }),
              created_at: '2025-01-01T00:00:03Z',
            },
          ],
        }),
      ];
    });
    $('[data-conversation="conv-1"] button.open').click();
    await settle();
    expect($('[data-message-seq="2"] [data-citations-error]').textContent).toContain('runs/done/citations.idx is missing');
    expect($('[data-message-seq="3"] [data-citations]').getAttribute('data-citations')).toBe('0');
    expect($('[data-message-seq="3"]').textContent).toContain('No passage of this answer appears word for word');
  });

  it('asks the base model and the adapter side by side, one after the other', async () => {
    await render((api) => {
      api.runs = [runSummary({ id: 'done', name: 'support answers', state: 'finished', adapter: '/a' })];
      api.answerFor = (c) => (c.adapter_run_id ? ['Tuned.'] : ['Base.']);
      api.holdAnswers = true;
    });
    expect(($('[data-chat-compare]') as HTMLInputElement).disabled).toBe(false);
    $('[data-chat-compare]').click();
    await settle();
    // turning it on picks an adapter
    expect(($('[data-chat-adapter]') as HTMLSelectElement).value).toBe('done');
    expect($('[data-chat-send]').textContent).toBe('Ask both');
    type('[data-chat-input]', 'What is ModelFactory?');
    expect($$('[data-testid="cli"] [data-cli-command]').map((c) => c.textContent)).toEqual([
      "modelfactory chat --model smollm2-135m-instruct --prompt 'What is ModelFactory?'",
      "modelfactory chat --model smollm2-135m-instruct --adapter done --prompt 'What is ModelFactory?'",
    ]);
    $('[data-chat-send]').click();
    await settle();
    // the base model answers first; the adapter waits its turn
    expect($('[data-compare-side="base"] [data-state="streaming"]').textContent).toContain('Base.');
    expect($('[data-compare-side="adapter"] [data-state="waiting"]')).not.toBeNull();
    api.finishAnswers();
    await settle();
    expect($('[data-compare-side="adapter"] [data-state="streaming"]').textContent).toContain('Tuned.');
    api.finishAnswers();
    await settle();
    expect($('[data-compare-side="base"] [data-message-role="assistant"][data-state="done"]').textContent).toContain('Base.');
    const tuned = $('[data-compare-side="adapter"] [data-message-role="assistant"][data-state="done"]');
    expect(tuned.textContent).toContain('Tuned.');
    expect(tuned.querySelector('[data-message-stats]')?.getAttribute('data-adapter-run')).toBe('done');
    expect($('[data-compare-side="base"]').getAttribute('data-conversation-id')).toBe('conv-1');
    expect($('[data-compare-side="adapter"]').getAttribute('data-conversation-id')).toBe('conv-2');
    // both conversations are kept, and opening one leaves the comparison
    expect($$('[data-conversation]').length).toBe(2);
    $('[data-conversation="conv-1"] button.open').click();
    await settle();
    expect(target.querySelector('[data-testid="chat-compare"]')).toBeNull();
    expect(($('[data-chat-compare]') as HTMLInputElement).checked).toBe(false);
  });
});
