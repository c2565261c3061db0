import type { ApiClient, SubscribeOptions, Unsubscribe } from './client';
import { ApiException, isApiErrorShape } from './errors';
import { SseParser } from './sse';
import type {
  AccuracyRequest,
  AddModelResult,
  AttributionRequest,
  Conversation,
  ConversationSummary,
  ConversationUpdate,
  Content,
  CuratedRow,
  DatanetCard,
  DatanetListing,
  DatanetStats,
  DatasetPage,
  DatasetPreview,
  DatasetSummary,
  DuplicateScan,
  LabelUpdate,
  LocalDatanet,
  NewDataset,
  RowPage,
  RowQuery,
  DemoDataset,
  DoctorReport,
  JobEvent,
  JobInfo,
  ModelSummary,
  NewConversation,
  NewRun,
  PreviewRequest,
  RunDetail,
  RunSummary,
  SendMessage,
  SendResult,
  Settings,
  StopResult,
  ChainSettings,
  ChainStatus,
  KeyImport,
  NewAccount,
  Payment,
  PaymentRequest,
  Publication,
  PublishPreview,
  PublishRequest,
  RewardBalance,
  RunAttribution,
  VerifyReport,
  VerifyRequest,
  WalletAccount,
  WithdrawResult,
} from './types';

/** `owner/name` → `owner/name` with each part escaped, for a path. */
export function datanetPath(id: string): string {
  return id
    .split('/')
    .map((part) => encodeURIComponent(part))
    .join('/');
}

/** A RowQuery as a query string (`?search=…&status=…`), leaving out absent fields; '' when empty. */
export function rowQueryString(query: RowQuery): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query) as [string, unknown][]) {
    if (value === undefined || value === null || value === '') continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** sessionStorage key of the access token for `modelfactory serve`. */
export const TOKEN_KEY = 'modelfactory.token';

type StorageLike = Pick<Storage, 'getItem' | 'setItem'>;

type EventSourceLike = {
  addEventListener(type: string, listener: (event: MessageEvent) => void): void;
  close(): void;
  onerror: ((this: EventSource, ev: Event) => unknown) | null;
  onopen: ((this: EventSource, ev: Event) => unknown) | null;
};

export type HttpSseOptions = {
  /** Prefix for `/api/...` paths; '' means the page's own origin. */
  baseUrl?: string;
  token?: string | null;
  fetch?: typeof fetch;
  eventSource?: new (url: string) => EventSourceLike;
};

/**
 * Reads the token from `?token=` in the page address and keeps it in sessionStorage, so it
 * survives reloads and in-app navigation. Falls back to the stored token.
 */
export function resolveToken(search: string, storage: StorageLike | null): string | null {
  const fromUrl = new URLSearchParams(search).get('token');
  if (fromUrl) {
    try {
      storage?.setItem(TOKEN_KEY, fromUrl);
    } catch {
      // storage can be disabled; the token still works for this page's life
    }
    return fromUrl;
  }
  try {
    return storage?.getItem(TOKEN_KEY) ?? null;
  } catch {
    return null;
  }
}

/** Talks to `modelfactory serve`: JSON over fetch, job events over server-sent events. */
export class HttpSseTransport implements ApiClient {
  readonly transport = 'http' as const;
  readonly #base: string;
  readonly #token: string | null;
  readonly #fetch: typeof fetch;
  readonly #eventSource: (new (url: string) => EventSourceLike) | null;

  constructor(options: HttpSseOptions = {}) {
    this.#base = (options.baseUrl ?? '').replace(/\/+$/, '');
    this.#token = options.token ?? null;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#eventSource = options.eventSource ?? (typeof EventSource === 'undefined' ? null : EventSource);
  }

  get token(): string | null {
    return this.#token;
  }

  /** URL of an API path, without the token (fetch sends it as a header). */
  url(path: string): string {
    return `${this.#base}${path}`;
  }

  /** URL of the event stream; EventSource cannot send headers, so the token goes in the query. */
  eventsUrl(): string {
    const url = this.url('/api/events');
    return this.#token ? `${url}?token=${encodeURIComponent(this.#token)}` : url;
  }

  async #send(method: string, path: string, body: unknown, accept: string): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept };
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response: Response;
    try {
      response = await this.#fetch(this.url(path), init);
    } catch (e) {
      throw unreachable(e);
    }
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  async #request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.#send(method, path, body, 'application/json');
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    if (text === '') return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiException(`The server answered ${method} ${path} with something that is not JSON`, null, response.status);
    }
  }

  doctor(): Promise<DoctorReport> {
    return this.#request('GET', '/api/doctor');
  }
  listModels(): Promise<ModelSummary[]> {
    return this.#request('GET', '/api/models');
  }
  addModel(source: string): Promise<AddModelResult> {
    return this.#request('POST', '/api/models', { source });
  }
  async removeModel(id: string): Promise<void> {
    await this.#request<unknown>('DELETE', `/api/models/${encodeURIComponent(id)}`);
  }
  listJobs(): Promise<JobInfo[]> {
    return this.#request('GET', '/api/jobs');
  }
  getJob(id: string): Promise<JobInfo> {
    return this.#request('GET', `/api/jobs/${encodeURIComponent(id)}`);
  }
  jobEvents(id: string): Promise<JobEvent[]> {
    return this.#request('GET', `/api/jobs/${encodeURIComponent(id)}/events`);
  }
  cancelJob(id: string): Promise<JobInfo> {
    return this.#request('POST', `/api/jobs/${encodeURIComponent(id)}/cancel`);
  }
  getSettings(): Promise<Settings> {
    return this.#request('GET', '/api/settings');
  }
  putSettings(settings: Settings): Promise<Settings> {
    return this.#request('PUT', '/api/settings', settings);
  }

  listConversations(): Promise<ConversationSummary[]> {
    return this.#request('GET', '/api/conversations');
  }
  createConversation(request: NewConversation): Promise<Conversation> {
    return this.#request('POST', '/api/conversations', request);
  }
  getConversation(id: string): Promise<Conversation> {
    return this.#request('GET', `/api/conversations/${encodeURIComponent(id)}`);
  }
  updateConversation(id: string, update: ConversationUpdate): Promise<Conversation> {
    return this.#request('PATCH', `/api/conversations/${encodeURIComponent(id)}`, update);
  }
  async deleteConversation(id: string): Promise<void> {
    await this.#request<unknown>('DELETE', `/api/conversations/${encodeURIComponent(id)}`);
  }
  stopAnswer(conversationId: string): Promise<StopResult> {
    return this.#request('POST', `/api/conversations/${encodeURIComponent(conversationId)}/stop`);
  }

  listRuns(): Promise<RunSummary[]> {
    return this.#request('GET', '/api/runs');
  }
  startRun(run: NewRun): Promise<RunSummary> {
    return this.#request('POST', '/api/runs', run);
  }
  getRun(id: string): Promise<RunDetail> {
    return this.#request('GET', `/api/runs/${encodeURIComponent(id)}`);
  }
  async deleteRun(id: string): Promise<void> {
    await this.#request<unknown>('DELETE', `/api/runs/${encodeURIComponent(id)}`);
  }
  cancelRun(id: string): Promise<RunSummary> {
    return this.#request('POST', `/api/runs/${encodeURIComponent(id)}/cancel`);
  }
  resumeRun(id: string): Promise<RunSummary> {
    return this.#request('POST', `/api/runs/${encodeURIComponent(id)}/resume`);
  }
  previewDataset(request: PreviewRequest): Promise<DatasetPreview> {
    return this.#request('POST', '/api/datasets/preview', request);
  }
  demoDatasets(): Promise<DemoDataset[]> {
    return this.#request('GET', '/api/datasets/demo');
  }

  searchHub(search: string): Promise<DatanetListing[]> {
    return this.#request('GET', `/api/hub/datanets?search=${encodeURIComponent(search)}`);
  }
  hubCard(id: string): Promise<DatanetCard> {
    return this.#request('GET', `/api/hub/datanets/${datanetPath(id)}`);
  }
  pullDatanet(id: string): Promise<JobInfo> {
    return this.#request('POST', '/api/datanets/pull', { id });
  }
  listDatanets(): Promise<LocalDatanet[]> {
    return this.#request('GET', '/api/datanets');
  }
  importDatanet(path: string, name: string): Promise<LocalDatanet> {
    return this.#request('POST', '/api/datanets/import', { path, name });
  }
  datanetRows(id: string, query: RowQuery): Promise<RowPage> {
    return this.#request('GET', `/api/datanets/${datanetPath(id)}/rows${rowQueryString(query)}`);
  }
  labelRow(id: string, contributionId: string, update: LabelUpdate): Promise<CuratedRow> {
    return this.#request('POST', `/api/datanets/${datanetPath(id)}/rows/${encodeURIComponent(contributionId)}/label`, update);
  }
  editRow(id: string, contributionId: string, content: Content): Promise<CuratedRow> {
    return this.#request('POST', `/api/datanets/${datanetPath(id)}/rows/${encodeURIComponent(contributionId)}/edit`, { content });
  }
  datanetStats(id: string): Promise<DatanetStats> {
    return this.#request('GET', `/api/datanets/${datanetPath(id)}/stats`);
  }
  scanDuplicates(id: string, threshold: number, reject: boolean): Promise<DuplicateScan> {
    return this.#request('POST', `/api/datanets/${datanetPath(id)}/duplicates`, { threshold, reject });
  }
  listDatasets(): Promise<DatasetSummary[]> {
    return this.#request('GET', '/api/datasets/list');
  }
  createDataset(dataset: NewDataset): Promise<DatasetSummary> {
    return this.#request('POST', '/api/datasets/list', dataset);
  }
  datasetRows(name: string, offset: number, limit: number): Promise<DatasetPage> {
    return this.#request('GET', `/api/datasets/named/${encodeURIComponent(name)}/rows?offset=${offset}&limit=${limit}`);
  }
  async deleteDataset(name: string): Promise<void> {
    await this.#request<unknown>('DELETE', `/api/datasets/named/${encodeURIComponent(name)}`);
  }

  // Routes that unlock a key need the server's token even on loopback; #send presents it as
  // `Authorization: Bearer` on every call, and the server answers 401 without it.
  walletAccounts(): Promise<WalletAccount[]> {
    return this.#request('GET', '/api/wallet/accounts');
  }
  createAccount(request: NewAccount): Promise<WalletAccount> {
    return this.#request('POST', '/api/wallet/new', request);
  }
  importAccount(request: KeyImport): Promise<WalletAccount> {
    return this.#request('POST', '/api/wallet/import', request);
  }
  chainStatus(): Promise<ChainStatus> {
    return this.#request('GET', '/api/chain');
  }
  chainUp(): Promise<ChainStatus> {
    return this.#request('POST', '/api/chain/up');
  }
  getChainSettings(): Promise<ChainSettings> {
    return this.#request('GET', '/api/chain/settings');
  }
  putChainSettings(settings: ChainSettings): Promise<ChainSettings> {
    return this.#request('PUT', '/api/chain/settings', settings);
  }
  runAttribution(runId: string): Promise<RunAttribution> {
    return this.#request('GET', `/api/runs/${encodeURIComponent(runId)}/attribution`);
  }
  startAttribution(runId: string, request: AttributionRequest): Promise<JobInfo> {
    return this.#request('POST', `/api/runs/${encodeURIComponent(runId)}/attribution`, request);
  }
  startAttributionAccuracy(runId: string, request: AccuracyRequest): Promise<JobInfo> {
    return this.#request('POST', `/api/runs/${encodeURIComponent(runId)}/attribution/accuracy`, request);
  }
  publishPreview(request: PublishRequest & { run_id: string }): Promise<PublishPreview> {
    return this.#request('POST', `/api/runs/${encodeURIComponent(request.run_id)}/publish/preview`, request);
  }
  publish(request: PublishRequest & { run_id: string }, passphrase: string): Promise<JobInfo> {
    return this.#request('POST', `/api/runs/${encodeURIComponent(request.run_id)}/publish`, { ...request, passphrase });
  }
  async publication(runId: string): Promise<Publication | null> {
    return (await this.#request<Publication | null | undefined>('GET', `/api/runs/${encodeURIComponent(runId)}/publication`)) ?? null;
  }
  verify(request: VerifyRequest): Promise<VerifyReport> {
    return this.#request('POST', '/api/verify', request);
  }
  rewardsPay(request: PaymentRequest): Promise<Payment> {
    return this.#request('POST', '/api/rewards/pay', request);
  }
  rewardsBalance(address: string): Promise<RewardBalance> {
    return this.#request('GET', `/api/rewards/balance/${encodeURIComponent(address)}`);
  }
  rewardsWithdraw(address: string, passphrase: string): Promise<WithdrawResult> {
    return this.#request('POST', '/api/rewards/withdraw', { address, passphrase });
  }

  /** The answer arrives as server-sent events on the POST's own response: `token`s, then `done` or `error`. */
  async sendMessage(conversationId: string, request: SendMessage, onToken: (text: string) => void): Promise<SendResult> {
    const path = `/api/conversations/${encodeURIComponent(conversationId)}/messages`;
    const response = await this.#send('POST', path, request, 'text/event-stream');
    if (!response.body) throw new ApiException('The server answered the question without a body', null, response.status);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          throw unreachable(e);
        }
        if (chunk.done) break;
        for (const { event, data } of parser.push(decoder.decode(chunk.value, { stream: true }))) {
          const value = parseJson(data, event);
          if (event === 'token') {
            const text = (value as { text?: unknown }).text;
            if (typeof text === 'string') onToken(text);
          } else if (event === 'done') {
            return value as SendResult;
          } else if (event === 'error') {
            if (isApiErrorShape(value)) throw new ApiException(value.error, value.hint ?? null);
            throw new ApiException('The answer failed', null);
          }
        }
      }
    } finally {
      parser.end();
      reader.cancel().catch(() => {});
    }
    throw new ApiException(
      'The answer stopped before it was complete: the connection to the server ended',
      'Check that `modelfactory serve` is still running; what was answered so far is kept in the conversation.',
    );
  }

  subscribe(onEvent: (event: JobEvent) => void, options: SubscribeOptions = {}): Unsubscribe {
    const Source = this.#eventSource;
    if (!Source) return () => {};
    const source = new Source(this.eventsUrl());
    let broken = false;
    source.addEventListener('job', (e: MessageEvent) => {
      let event: JobEvent;
      try {
        event = JSON.parse(String(e.data)) as JobEvent;
      } catch {
        console.error('ModelFactory: ignoring a job event that is not JSON', e.data);
        return;
      }
      onEvent(event);
    });
    // The server drops events for a client that falls behind and says so with `lagged`.
    source.addEventListener('lagged', () => options.onResync?.());
    // EventSource reconnects by itself; after a break, let the caller reload what it missed.
    source.onerror = () => {
      broken = true;
    };
    source.onopen = () => {
      if (broken) {
        broken = false;
        options.onResync?.();
      }
    };
    return () => source.close();
  }
}

function unreachable(e: unknown): ApiException {
  return new ApiException(
    `Cannot reach the ModelFactory server (${e instanceof Error ? e.message : String(e)})`,
    'Check that `modelfactory serve` is still running and that this page was opened from its address.',
  );
}

function parseJson(data: string, event: string): unknown {
  try {
    return JSON.parse(data) as unknown;
  } catch {
    throw new ApiException(`The server sent a \`${event}\` event that is not JSON`, null);
  }
}

async function errorFromResponse(response: Response): Promise<ApiException> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // fall through with no body
  }
  if (text) {
    try {
      const body: unknown = JSON.parse(text);
      if (isApiErrorShape(body)) return new ApiException(body.error, body.hint ?? null, response.status);
    } catch {
      // not JSON: use the text below
    }
  }
  const what = `The server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
  if (response.status === 401 || response.status === 403) {
    return new ApiException(
      what,
      'This server needs its access token: open the studio from the address `modelfactory serve` printed (it ends in ?token=…).',
      response.status,
    );
  }
  return new ApiException(text ? `${what}: ${text.slice(0, 300)}` : what, null, response.status);
}
