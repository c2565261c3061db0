import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { DEFAULT_SAMPLING } from '../api/types';
import { sampling as contractSampling } from '../api/contract.generated';
import { FakeTransport, conversation, flush, model } from '../testing/fake-transport';
import { ChatManager } from './chat.svelte';

function setup() {
  const api = new FakeTransport();
  const chat = new ChatManager();
  chat.connect(api);
  chat.adoptModels([model()]);
  return { api, chat };
}

describe('ChatManager', () => {
  it('knows the runtime defaults', () => {
    expect(DEFAULT_SAMPLING).toEqual(contractSampling[0]);
  });

  it('picks the first ready model, and keeps a chosen one that is still there', () => {
    const chat = new ChatManager();
    chat.adoptModels([model({ id: 'gone', status: 'missing' }), model({ id: 'a' }), model({ id: 'b' })]);
    expect(chat.modelId).toBe('a');
    chat.adoptModels([model({ id: 'b' }), model({ id: 'a' })]);
    expect(chat.modelId).toBe('a');
    chat.adoptModels([model({ id: 'b' })]);
    expect(chat.modelId).toBe('b');
    chat.adoptModels([]);
    expect(chat.modelId).toBeNull();
  });

  it('starts a conversation with the first question and streams the answer', async () => {
    const { api, chat } = setup();
    chat.setSampling({ temperature: 0, max_new_tokens: 64 });
    const seen: string[] = [];
    const sending = chat.send('  What is the capital of France? ');
    expect(chat.busy).toBe(true);
    expect(chat.pending?.question).toBe('What is the capital of France?');
    // the text grows as tokens arrive
    for (let i = 0; i < 100 && chat.busy; i++) {
      seen.push(chat.pending?.text ?? '');
      await Promise.resolve();
    }
    expect(await sending).toBe(true);
    expect(seen.some((t) => t === 'The capital of France')).toBe(true);
    expect(chat.busy).toBe(false);

    const sampling = { ...DEFAULT_SAMPLING, temperature: 0, max_new_tokens: 64 };
    expect(api.callsOf('createConversation')).toEqual([[{ model_id: 'smollm2-135m-instruct', sampling }]]);
    expect(api.callsOf('sendMessage')).toEqual([['conv-1', { content: 'What is the capital of France?', sampling }]]);
    const messages = chat.current?.messages ?? [];
    expect(messages.map((m) => [m.seq, m.role, m.content])).toEqual([
      [1, 'user', 'What is the capital of France?'],
      [2, 'assistant', 'The capital of France is Paris.'],
    ]);
    expect(messages[1]?.stats?.decode_tokens_per_s).toBe(41.25);
    await flush();
    expect(chat.conversations.map((c) => [c.id, c.title, c.message_count])).toEqual([['conv-1', 'What is the capital of France?', 2]]);
  });

  it('asks the next question in the same conversation', async () => {
    const { api, chat } = setup();
    await chat.send('first');
    await chat.send('second');
    expect(api.callsOf('createConversation')).toHaveLength(1);
    expect(chat.current?.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
  });

  it('does not send an empty question, a second one while answering, or without a model', async () => {
    const { api, chat } = setup();
    expect(await chat.send('   ')).toBe(false);
    api.holdAnswers = true;
    const first = chat.send('one');
    expect(await chat.send('two')).toBe(false);
    await flush();
    api.finishAnswers();
    expect(await first).toBe(true);
    expect(api.callsOf('sendMessage')).toHaveLength(1);

    chat.adoptModels([]);
    chat.startNew();
    expect(await chat.send('three')).toBe(false);
    expect(chat.error?.error).toBe('Choose a model first');
  });

  it('stops an answer, which is kept as far as it got', async () => {
    const { api, chat } = setup();
    api.holdAnswers = true;
    const sending = chat.send('Tell me a story');
    await flush();
    expect(chat.pending?.text).toBe('The capital of France is Paris.');
    await chat.stop();
    expect(await sending).toBe(true);
    expect(api.callsOf('stopAnswer')).toEqual([['conv-1']]);
    const answer = chat.current?.messages.at(-1);
    expect(answer?.stats?.stop_reason).toBe('cancelled');
    expect(chat.stopping).toBe(false);
  });

  it('keeps nothing of a failed question and says why', async () => {
    const { api, chat } = setup();
    await chat.send('first');
    api.failures.sendMessage = new ApiException('cannot load the model x for chat: not a GGUF file: /m/x.gguf', 'download it again');
    expect(await chat.send('second')).toBe(false);
    expect(chat.error).toMatchObject({ hint: 'download it again' });
    expect(chat.current?.messages).toHaveLength(2);
    expect(chat.busy).toBe(false);
  });

  it('opens a stored conversation with its model and settings, and starts a new one', async () => {
    const { api, chat } = setup();
    const greedy = { ...DEFAULT_SAMPLING, temperature: 0, top_k: 0, top_p: 1, repetition_penalty: 1, seed: 0 };
    api.conversations = [conversation({ id: 'old', model_id: 'qwen', sampling: greedy, title: 'Old one' })];
    await chat.load();
    expect(chat.conversations.map((c) => c.title)).toEqual(['Old one']);
    await chat.select('old');
    expect(chat.current?.id).toBe('old');
    expect(chat.modelId).toBe('qwen');
    expect(chat.sampling).toEqual(greedy);
    chat.startNew();
    expect(chat.current).toBeNull();
    expect(chat.sampling).toEqual(greedy);
  });

  it('moves the open conversation to another model', async () => {
    const { api, chat } = setup();
    await chat.send('hi');
    await chat.setModel('qwen');
    expect(api.callsOf('updateConversation')).toEqual([['conv-1', { model_id: 'qwen' }]]);
    expect(chat.current?.model_id).toBe('qwen');
  });

  it('chats through a run\'s adapter, switches back to the base model, and drops the adapter with another model', async () => {
    const { api, chat } = setup();
    chat.startWithAdapter({ id: 'run-7', model_id: 'smollm2-135m-instruct' });
    expect(chat.adapterRunId).toBe('run-7');
    await chat.send('What is ModelFactory?');
    expect(api.callsOf('createConversation')[0]?.[0]).toMatchObject({ model_id: 'smollm2-135m-instruct', adapter_run_id: 'run-7' });
    expect(chat.current?.messages[1]?.stats?.adapter_run_id).toBe('run-7');
    expect(chat.conversations[0]?.adapter_run_id).toBe('run-7');

    await chat.setAdapter(null);
    expect(api.callsOf('updateConversation')).toEqual([['conv-1', { adapter_run_id: '' }]]);
    expect(chat.current?.adapter_run_id).toBeNull();
    await chat.setAdapter('run-7');
    expect(api.callsOf('updateConversation')[1]).toEqual(['conv-1', { adapter_run_id: 'run-7' }]);

    await chat.setModel('qwen');
    expect(chat.adapterRunId).toBeNull();
    expect(api.callsOf('updateConversation')[2]).toEqual(['conv-1', { model_id: 'qwen', adapter_run_id: '' }]);

    // opening a conversation takes its adapter
    api.conversations = [conversation({ id: 'tuned', adapter_run_id: 'run-9' })];
    await chat.select('tuned');
    expect(chat.adapterRunId).toBe('run-9');
  });

  it('keeps the adapter it had when the studio refuses another', async () => {
    const { api, chat } = setup();
    await chat.send('hi');
    api.failures.updateConversation = new ApiException('run x trained an adapter for model qwen, not smollm2-135m-instruct', null, 400);
    await chat.setAdapter('x');
    expect(chat.adapterRunId).toBeNull();
    expect(chat.error?.status).toBe(400);
  });

  it('deletes a conversation', async () => {
    const { api, chat } = setup();
    await chat.send('hi');
    await flush();
    await chat.remove('conv-1');
    expect(api.callsOf('deleteConversation')).toEqual([['conv-1']]);
    expect(chat.current).toBeNull();
    expect(chat.conversations).toEqual([]);
    api.failures.deleteConversation = new ApiException('no conversation with id "x"', null, 404);
    await chat.remove('x');
    expect(chat.error?.status).toBe(404);
  });
});
