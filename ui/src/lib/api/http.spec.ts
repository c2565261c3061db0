import { describe, expect, it, vi } from 'vitest';
import { ApiException } from './errors';
import { HttpSseTransport, TOKEN_KEY, datanetPath, resolveToken, rowQueryString } from './http';
import { presetConfig, type JobEvent } from './types';

function jsonResponse(status: number, body: unknown, statusText = ''): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    statusText,
    headers: { 'Content-Type': 'application/json' },
  });
}

function memoryStorage(initial: Record<string, string> = {}) {
  const data = new Map(Object.entries(initial));
  return {
    getItem: (k: string) => data.get(k) ?? null,
    setItem: (k: string, v: string) => void data.set(k, v),
    data,
  };
}

describe('resolveToken', () => {
  it('takes ?token= from the page address and keeps it in sessionStorage', () => {
    const storage = memoryStorage();
    expect(resolveToken('?token=s3cret', storage)).toBe('s3cret');
    expect(storage.data.get(TOKEN_KEY)).toBe('s3cret');
    // later pages without the query still have it
    expect(resolveToken('', storage)).toBe('s3cret');
  });
  it('prefers a new token in the address over the stored one', () => {
    const storage = memoryStorage({ [TOKEN_KEY]: 'old' });
    expect(resolveToken('?a=1&token=new', storage)).toBe('new');
    expect(storage.data.get(TOKEN_KEY)).toBe('new');
  });
  it('is null without a token', () => {
    expect(resolveToken('', memoryStorage())).toBeNull();
    expect(resolveToken('?token=', null)).toBeNull();
  });
});

describe('Datanet paths and row queries', () => {
  it('escapes each part of an owner/name id', () => {
    expect(datanetPath('modelfactory/python-faq')).toBe('modelfactory/python-faq');
    expect(datanetPath('local/my set')).toBe('local/my%20set');
  });
  it('writes only the fields a query has', () => {
    expect(rowQueryString({})).toBe('');
    expect(rowQueryString({ offset: 200, limit: 200, search: 'list comprehension', status: 'unlabeled', min_len: 0, desc: true, tag: '' })).toBe(
      '?offset=200&limit=200&search=list+comprehension&status=unlabeled&min_len=0&desc=true',
    );
  });
});

describe('HttpSseTransport requests', () => {
  it('sends the token as a Bearer header and calls the documented paths', async () => {
    const fetch = vi.fn(async () => jsonResponse(200, []));
    const api = new HttpSseTransport({ token: 'tok en', fetch });
    await api.listModels();
    await api.listJobs();
    await api.getJob('job/1');
    await api.jobEvents('j1');
    await api.doctor();
    await api.getSettings();

    const urls = fetch.mock.calls.map((c) => (c as unknown[])[0]);
    expect(urls).toEqual(['/api/models', '/api/jobs', '/api/jobs/job%2F1', '/api/jobs/j1/events', '/api/doctor', '/api/settings']);
    const init = (fetch.mock.calls[0] as unknown[])[1] as RequestInit;
    expect(init.method).toBe('GET');
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer tok en');
  });

  it('presents the token on the signing routes and calls the wallet, chain, publish and verify paths', async () => {
    const fetch = vi.fn(async () => jsonResponse(200, {}));
    const api = new HttpSseTransport({ token: 'signing-token', fetch });
    const request = { run_id: 'run/1', publisher: '0xabc', repo: 'me/adapter', license: null, attribution: 'row-share' as const };
    await api.walletAccounts();
    await api.createAccount({ name: 'me', passphrase: 'pass phrase' });
    await api.importAccount({ mnemonic: 'a b c', index: 2, passphrase: 'pp' });
    await api.chainStatus();
    await api.chainUp();
    await api.getChainSettings();
    await api.putChainSettings({ rpc_url: '', chain_id: null, registry: null, splitter: null });
    await api.publishPreview(request);
    await api.publish(request, 'pp');
    await api.publication('run/1');
    await api.verify({ target: 'me/adapter', contributions: ['c1'], skip_chain: true });
    await api.rewardsPay({ manifest_hash: '0x01', amount: '1eth', from: '0xabc', passphrase: 'pp' });
    await api.rewardsBalance('0xabc');
    await api.rewardsWithdraw('0xabc', 'pp');
    const calls = fetch.mock.calls.map((c) => {
      const [url, init] = c as unknown as [string, RequestInit];
      return [init.method, url, init.body === undefined ? undefined : JSON.parse(String(init.body))];
    });
    expect(calls).toEqual([
      ['GET', '/api/wallet/accounts', undefined],
      ['POST', '/api/wallet/new', { name: 'me', passphrase: 'pass phrase' }],
      ['POST', '/api/wallet/import', { mnemonic: 'a b c', index: 2, passphrase: 'pp' }],
      ['GET', '/api/chain', undefined],
      ['POST', '/api/chain/up', undefined],
      ['GET', '/api/chain/settings', undefined],
      ['PUT', '/api/chain/settings', { rpc_url: '', chain_id: null, registry: null, splitter: null }],
      ['POST', '/api/runs/run%2F1/publish/preview', request],
      ['POST', '/api/runs/run%2F1/publish', { ...request, passphrase: 'pp' }],
      ['GET', '/api/runs/run%2F1/publication', undefined],
      ['POST', '/api/verify', { target: 'me/adapter', contributions: ['c1'], skip_chain: true }],
      ['POST', '/api/rewards/pay', { manifest_hash: '0x01', amount: '1eth', from: '0xabc', passphrase: 'pp' }],
      ['GET', '/api/rewards/balance/0xabc', undefined],
      ['POST', '/api/rewards/withdraw', { address: '0xabc', passphrase: 'pp' }],
    ]);
    for (const c of fetch.mock.calls) {
      const init = (c as unknown[])[1] as RequestInit;
      expect((init.headers as Record<string, string>).Authorization).toBe('Bearer signing-token');
    }
  });

  it('answers null for a run never published, and passes on a signing route’s refusal', async () => {
    const fetch = vi.fn(async () => jsonResponse(200, null));
    const api = new HttpSseTransport({ fetch });
    await expect(api.publication('r')).resolves.toBeNull();
    const refused = vi.fn(async () =>
      jsonResponse(401, {
        error: 'using a key through the API needs the studio’s token, even on this machine',
        hint: 'open the address `modelfactory serve` printed, which carries ?token=...',
      }),
    );
    const e = await new HttpSseTransport({ fetch: refused }).createAccount({ passphrase: 'x' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiException);
    expect(e).toMatchObject({ status: 401, hint: 'open the address `modelfactory serve` printed, which carries ?token=...' });
  });

  it('sends no Authorization header without a token', async () => {
    const fetch = vi.fn(async () => jsonResponse(200, []));
    await new HttpSseTransport({ fetch }).listModels();
    const init = (fetch.mock.calls[0] as unknown[])[1] as RequestInit;
    expect(init.headers).not.toHaveProperty('Authorization');
  });

  it('posts JSON bodies for add, put and cancel', async () => {
    const fetch = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) =>
      jsonResponse(200, init?.method === 'PUT' ? JSON.parse(String(init.body)) : { model: null, job: null }),
    );
    const api = new HttpSseTransport({ baseUrl: 'http://box:8080/', fetch });
    await api.addModel('HuggingFaceTB/SmolLM2-135M-Instruct');
    const saved = await api.putSettings({ hub_endpoint: 'https://mirror', default_backend: 'cpu', datanet_hub: '' });
    await api.cancelJob('j1');

    const calls = fetch.mock.calls as unknown as [string, RequestInit][];
    expect(calls[0]![0]).toBe('http://box:8080/api/models');
    expect(calls[0]![1].method).toBe('POST');
    expect(JSON.parse(String(calls[0]![1].body))).toEqual({ source: 'HuggingFaceTB/SmolLM2-135M-Instruct' });
    expect((calls[0]![1].headers as Record<string, string>)['Content-Type']).toBe('application/json');
    expect(calls[1]![1].method).toBe('PUT');
    expect(calls[1]![0]).toBe('http://box:8080/api/settings');
    expect(saved).toEqual({ hub_endpoint: 'https://mirror', default_backend: 'cpu', datanet_hub: '' });
    expect(calls[2]![0]).toBe('http://box:8080/api/jobs/j1/cancel');
    expect(calls[2]![1].method).toBe('POST');
  });

  it('treats 204 from DELETE as success', async () => {
    const fetch = vi.fn(async () => new Response(null, { status: 204 }));
    const api = new HttpSseTransport({ fetch });
    await expect(api.removeModel('smollm2-135m-instruct')).resolves.toBeUndefined();
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/models/smollm2-135m-instruct');
    expect(init.method).toBe('DELETE');
  });

  it('throws ApiException with error and hint from a 4xx JSON body', async () => {
    const fetch = vi.fn(async () =>
      jsonResponse(400, { error: 'no such file: /nope.gguf', hint: 'Give the path to a .gguf file or a model folder' }, 'Bad Request'),
    );
    const api = new HttpSseTransport({ fetch });
    const failure = await api.addModel('/nope.gguf').then(
      () => null,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(ApiException);
    const e = failure as ApiException;
    expect(e.error).toBe('no such file: /nope.gguf');
    expect(e.hint).toBe('Give the path to a .gguf file or a model folder');
    expect(e.status).toBe(400);
    expect(e.message).toBe('no such file: /nope.gguf');
  });

  it('keeps a null hint as null', async () => {
    const api = new HttpSseTransport({ fetch: async () => jsonResponse(404, { error: 'no model x', hint: null }) });
    await expect(api.removeModel('x')).rejects.toMatchObject({ error: 'no model x', hint: null, status: 404 });
  });

  it('explains a 401 without a JSON body', async () => {
    const api = new HttpSseTransport({ fetch: async () => new Response('unauthorized', { status: 401 }) });
    await expect(api.listModels()).rejects.toMatchObject({ status: 401, hint: expect.stringContaining('?token=') });
  });

  it('turns a 5xx text body into an ApiException', async () => {
    const api = new HttpSseTransport({ fetch: async () => new Response('boom', { status: 502, statusText: 'Bad Gateway' }) });
    await expect(api.listJobs()).rejects.toMatchObject({ error: 'The server answered 502 Bad Gateway: boom', hint: null });
  });

  it('turns a network failure into an ApiException with a hint', async () => {
    const api = new HttpSseTransport({
      fetch: async () => {
        throw new TypeError('Failed to fetch');
      },
    });
    const e = await api.doctor().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiException);
    expect((e as ApiException).error).toContain('Failed to fetch');
    expect((e as ApiException).hint).toContain('modelfactory serve');
  });
});

class FakeEventSource {
  static last: FakeEventSource | null = null;
  url: string;
  listeners = new Map<string, (e: MessageEvent) => void>();
  onerror: ((ev: Event) => unknown) | null = null;
  onopen: ((ev: Event) => unknown) | null = null;
  closed = false;
  constructor(url: string) {
    this.url = url;
    FakeEventSource.last = this;
  }
  addEventListener(type: string, fn: (e: MessageEvent) => void) {
    this.listeners.set(type, fn);
  }
  close() {
    this.closed = true;
  }
  emit(type: string, data: string) {
    this.listeners.get(type)?.({ data } as MessageEvent);
  }
}

describe('HttpSseTransport events', () => {
  it('puts the token on the EventSource URL', () => {
    const api = new HttpSseTransport({ baseUrl: 'http://box:8080', token: 'a b&c', eventSource: FakeEventSource as never });
    expect(api.eventsUrl()).toBe('http://box:8080/api/events?token=a%20b%26c');
    expect(new HttpSseTransport({ eventSource: FakeEventSource as never }).eventsUrl()).toBe('/api/events');
  });

  it('delivers `job` events, resyncs after a reconnect, and closes on unsubscribe', () => {
    const api = new HttpSseTransport({ token: 't', eventSource: FakeEventSource as never });
    const got: JobEvent[] = [];
    const onResync = vi.fn();
    const stop = api.subscribe((e) => got.push(e), { onResync });
    const source = FakeEventSource.last!;
    expect(source.url).toBe('/api/events?token=t');

    const event: JobEvent = { job_id: 'j1', seq: 3, at: 'now', state: 'running', fraction: 0.5, message: 'half', figures: { bytes_per_s: 10 } };
    source.emit('job', JSON.stringify(event));
    expect(got).toEqual([event]);

    source.onopen?.(new Event('open'));
    expect(onResync).not.toHaveBeenCalled();
    source.onerror?.(new Event('error'));
    source.onopen?.(new Event('open'));
    expect(onResync).toHaveBeenCalledTimes(1);
    // the server says this client fell behind
    source.emit('lagged', '12');
    expect(onResync).toHaveBeenCalledTimes(2);

    const spy = vi.spyOn(console, 'error').mockImplementation(() => {});
    source.emit('job', 'not json');
    spy.mockRestore();
    expect(got).toHaveLength(1);

    stop();
    expect(source.closed).toBe(true);
  });
});

function streamResponse(chunks: string[], status = 200): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(encoder.encode(c));
      controller.close();
    },
  });
  return new Response(body, { status, headers: { 'Content-Type': 'text/event-stream' } });
}

describe('HttpSseTransport runs', () => {
  it('calls the run and dataset routes with JSON bodies', async () => {
    const fetch = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) =>
      init?.method === 'DELETE' ? new Response(null, { status: 204 }) : jsonResponse(200, {}),
    );
    const api = new HttpSseTransport({ token: 't', fetch });
    const run = { model_id: 'm', dataset: '/d.jsonl', config: presetConfig('quick') };
    await api.listRuns();
    await api.startRun(run);
    await api.getRun('r/1');
    await expect(api.deleteRun('r1')).resolves.toBeUndefined();
    await api.cancelRun('r1');
    await api.resumeRun('r1');
    await api.previewDataset({ model_id: 'm', dataset: '/d.jsonl', max_length: 128, count: 3 });
    await api.demoDatasets();
    const calls = fetch.mock.calls as unknown as [string, RequestInit][];
    expect(calls.map(([url, init]) => `${init.method} ${url}`)).toEqual([
      'GET /api/runs',
      'POST /api/runs',
      'GET /api/runs/r%2F1',
      'DELETE /api/runs/r1',
      'POST /api/runs/r1/cancel',
      'POST /api/runs/r1/resume',
      'POST /api/datasets/preview',
      'GET /api/datasets/demo',
    ]);
    expect(JSON.parse(String(calls[1]![1].body))).toEqual(run);
    expect(JSON.parse(String(calls[6]![1].body))).toEqual({ model_id: 'm', dataset: '/d.jsonl', max_length: 128, count: 3 });
  });
});

describe('HttpSseTransport attribution', () => {
  it('reads a run’s attribution and starts its jobs with JSON bodies', async () => {
    const fetch = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) =>
      jsonResponse(200, init?.method === 'GET' ? { run_id: 'r/1', report: null, accuracy: null } : { id: 'job-1', kind: 'attribution' }),
    );
    const api = new HttpSseTransport({ token: 't', fetch });
    await expect(api.runAttribution('r/1')).resolves.toEqual({ run_id: 'r/1', report: null, accuracy: null });
    await api.startAttribution('r/1', { backend: 'cpu' });
    await api.startAttributionAccuracy('r1', { subsets: 20, steps: null });
    const calls = (fetch.mock.calls as unknown as [string, RequestInit][]).map(([url, init]) => [
      init.method,
      url,
      init.body === undefined ? undefined : JSON.parse(String(init.body)),
    ]);
    expect(calls).toEqual([
      ['GET', '/api/runs/r%2F1/attribution', undefined],
      ['POST', '/api/runs/r%2F1/attribution', { backend: 'cpu' }],
      ['POST', '/api/runs/r1/attribution/accuracy', { subsets: 20, steps: null }],
    ]);
  });
});

describe('HttpSseTransport chat', () => {
  const result = { message: { seq: 2, role: 'assistant', content: 'Paris.', stats: null, created_at: 't' }, stats: {} };

  it('calls the conversation routes', async () => {
    const fetch = vi.fn(async () => jsonResponse(200, {}));
    const api = new HttpSseTransport({ token: 't', fetch });
    await api.listConversations();
    await api.createConversation({ model_id: 'm' });
    await api.getConversation('c/1');
    await api.updateConversation('c1', { title: 'x' });
    await api.stopAnswer('c1');
    const calls = fetch.mock.calls as unknown as [string, RequestInit][];
    expect(calls.map(([url, init]) => `${init.method} ${url}`)).toEqual([
      'GET /api/conversations',
      'POST /api/conversations',
      'GET /api/conversations/c%2F1',
      'PATCH /api/conversations/c1',
      'POST /api/conversations/c1/stop',
    ]);
    expect(JSON.parse(String(calls[1]![1].body))).toEqual({ model_id: 'm' });
  });

  it('streams the answer from the POST response and resolves with `done`', async () => {
    const fetch = vi.fn(async () =>
      streamResponse([
        'event: token\ndata: {"conversation_id":"c1","text":"Pa"}\n\nevent: tok',
        'en\ndata: {"conversation_id":"c1","text":"ris."}\n\n:\n\n',
        `event: done\ndata: ${JSON.stringify(result)}\n\n`,
      ]),
    );
    const api = new HttpSseTransport({ token: 't', fetch });
    const tokens: string[] = [];
    const done = await api.sendMessage('c1', { content: 'Capital of France?', sampling: null }, (t) => tokens.push(t));
    expect(tokens).toEqual(['Pa', 'ris.']);
    expect(done).toEqual(result);
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/conversations/c1/messages');
    expect(init.method).toBe('POST');
    expect((init.headers as Record<string, string>).Accept).toBe('text/event-stream');
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer t');
    expect(JSON.parse(String(init.body))).toEqual({ content: 'Capital of France?', sampling: null });
  });

  it('rejects with the `error` event', async () => {
    const api = new HttpSseTransport({
      fetch: async () =>
        streamResponse(['event: error\ndata: {"error":"cannot load the model m for chat: not a GGUF file: /m.gguf","hint":"download it again"}\n\n']),
    });
    await expect(api.sendMessage('c1', { content: 'hi' }, () => {})).rejects.toMatchObject({
      error: 'cannot load the model m for chat: not a GGUF file: /m.gguf',
      hint: 'download it again',
    });
  });

  it('rejects a refused question with the 4xx body', async () => {
    const api = new HttpSseTransport({ fetch: async () => jsonResponse(409, { error: 'busy', hint: 'wait' }) });
    await expect(api.sendMessage('c1', { content: 'hi' }, () => {})).rejects.toMatchObject({ error: 'busy', status: 409 });
  });

  it('rejects a stream that ends before `done`', async () => {
    const api = new HttpSseTransport({ fetch: async () => streamResponse(['event: token\ndata: {"text":"Pa"}\n\n']) });
    const tokens: string[] = [];
    await expect(api.sendMessage('c1', { content: 'hi' }, (t) => tokens.push(t))).rejects.toMatchObject({
      error: expect.stringContaining('stopped before it was complete'),
    });
    expect(tokens).toEqual(['Pa']);
  });
});

describe('HttpSseTransport Datanet and dataset requests', () => {
  it('calls the documented paths with the documented bodies', async () => {
    const fetch = vi.fn(async (_url: RequestInfo | URL, init?: RequestInit) =>
      init?.method === 'DELETE' ? new Response(null, { status: 204 }) : jsonResponse(200, {}),
    );
    const api = new HttpSseTransport({ fetch });
    const id = 'modelfactory/python-faq';
    const dataset = { name: 'faq', sources: [{ datanet: id, statuses: ['accepted' as const] }], files: [], eval_fraction: 0.1, seed: 42 };
    await api.searchHub('python faq');
    await api.hubCard(id);
    await api.pullDatanet(id);
    await api.listDatanets();
    await api.importDatanet('/data/rows.jsonl', 'mine');
    await api.datanetRows(id, { offset: 0, limit: 200, search: 'loop', flag: 'edited' });
    await api.labelRow(id, 'c/1', { status: 'accepted', rating: null });
    await api.editRow(id, 'c1', { instruction: 'q', input: '', output: 'a' });
    await api.datanetStats(id);
    await api.scanDuplicates(id, 0.8, true);
    await api.listDatasets();
    await api.createDataset(dataset);
    await api.datasetRows('faq accepted', 200, 200);
    await expect(api.deleteDataset('faq')).resolves.toBeUndefined();

    const calls = (fetch.mock.calls as unknown as [string, RequestInit][]).map(([url, init]) => [
      init.method,
      url,
      init.body === undefined ? undefined : JSON.parse(String(init.body)),
    ]);
    expect(calls).toEqual([
      ['GET', '/api/hub/datanets?search=python%20faq', undefined],
      ['GET', '/api/hub/datanets/modelfactory/python-faq', undefined],
      ['POST', '/api/datanets/pull', { id }],
      ['GET', '/api/datanets', undefined],
      ['POST', '/api/datanets/import', { path: '/data/rows.jsonl', name: 'mine' }],
      ['GET', '/api/datanets/modelfactory/python-faq/rows?offset=0&limit=200&search=loop&flag=edited', undefined],
      ['POST', '/api/datanets/modelfactory/python-faq/rows/c%2F1/label', { status: 'accepted', rating: null }],
      ['POST', '/api/datanets/modelfactory/python-faq/rows/c1/edit', { content: { instruction: 'q', input: '', output: 'a' } }],
      ['GET', '/api/datanets/modelfactory/python-faq/stats', undefined],
      ['POST', '/api/datanets/modelfactory/python-faq/duplicates', { threshold: 0.8, reject: true }],
      ['GET', '/api/datasets/list', undefined],
      ['POST', '/api/datasets/list', dataset],
      ['GET', '/api/datasets/named/faq%20accepted/rows?offset=200&limit=200', undefined],
      ['DELETE', '/api/datasets/named/faq', undefined],
    ]);
  });
});
