import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { DEFAULT_SAMPLING } from '../api/types';
import { FakeTransport, flush } from '../testing/fake-transport';
import { CompareManager } from './compare.svelte';

const target = { modelId: 'smollm2-135m-instruct', adapterRunId: 'run-7', sampling: { ...DEFAULT_SAMPLING, temperature: 0 } };

function setup() {
  const api = new FakeTransport();
  api.answerFor = (c) => (c.adapter_run_id ? ['Tuned', ' answer.'] : ['Base', ' answer.']);
  const compare = new CompareManager();
  compare.connect(api);
  compare.setEnabled(true);
  return { api, compare };
}

describe('CompareManager', () => {
  it('asks the base model first and the adapter next, in two conversations', async () => {
    const { api, compare } = setup();
    const order: string[] = [];
    const sending = compare.send(' What is ModelFactory? ', target);
    for (let i = 0; i < 200 && compare.busy; i++) {
      const p = compare.pending;
      if (p && order.at(-1) !== p.side) order.push(p.side);
      if (p?.side === 'base') expect(p.waiting).toEqual(['adapter']);
      await Promise.resolve();
    }
    expect(await sending).toBe(true);
    expect(order).toEqual(['base', 'adapter']);
    expect(api.callsOf('createConversation')).toEqual([
      [{ model_id: 'smollm2-135m-instruct', sampling: target.sampling }],
      [{ model_id: 'smollm2-135m-instruct', adapter_run_id: 'run-7', sampling: target.sampling }],
    ]);
    expect(api.callsOf('sendMessage').map((c) => c[0])).toEqual(['conv-1', 'conv-2']);
    expect(compare.conversation('base')?.messages.map((m) => m.content)).toEqual(['What is ModelFactory?', 'Base answer.']);
    expect(compare.conversation('adapter')?.messages.map((m) => m.content)).toEqual(['What is ModelFactory?', 'Tuned answer.']);
    expect(compare.conversation('adapter')?.messages[1]?.stats?.adapter_run_id).toBe('run-7');

    // the next question goes to the same pair; another adapter starts a new pair
    await compare.send('And then?', target);
    expect(api.callsOf('createConversation')).toHaveLength(2);
    await compare.send('And with the other one?', { ...target, adapterRunId: 'run-8' });
    expect(api.callsOf('createConversation')).toHaveLength(4);
  });

  it('needs an adapter', async () => {
    const { api, compare } = setup();
    expect(await compare.send('Hi', null)).toBe(false);
    expect(compare.error?.error).toContain('Choose an adapter');
    expect(api.callsOf('createConversation')).toEqual([]);
  });

  it('stops the answer streaming and skips the side still waiting', async () => {
    const { api, compare } = setup();
    api.holdAnswers = true;
    const sending = compare.send('Tell me a story', target);
    await flush();
    expect(compare.pending?.side).toBe('base');
    await compare.stop();
    expect(await sending).toBe(true);
    expect(api.callsOf('stopAnswer')).toEqual([['conv-1']]);
    expect(api.callsOf('sendMessage')).toHaveLength(1);
    expect(compare.conversation('base')?.messages[1]?.stats?.stop_reason).toBe('cancelled');
    expect(compare.conversation('adapter')?.messages).toEqual([]);
  });

  it('keeps the base answer when the adapter fails, and says why', async () => {
    const { api, compare } = setup();
    let calls = 0;
    const send = api.sendMessage.bind(api);
    api.sendMessage = async (id, request, onToken) => {
      if (++calls === 2) throw new ApiException('cannot load the adapter of run run-7', 'train it again');
      return send(id, request, onToken);
    };
    expect(await compare.send('Hi', target)).toBe(false);
    expect(compare.error).toMatchObject({ error: 'cannot load the adapter of run run-7', hint: 'train it again' });
    expect(compare.conversation('base')?.messages).toHaveLength(2);
    expect(compare.busy).toBe(false);
  });

  it('forgets the pair when turned off', async () => {
    const { compare } = setup();
    await compare.send('Hi', target);
    compare.setEnabled(false);
    expect(compare.enabled).toBe(false);
    expect(compare.conversation('base')).toBeNull();
  });
});
