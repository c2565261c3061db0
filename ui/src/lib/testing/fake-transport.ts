import type { ApiClient, SubscribeOptions, Unsubscribe } from '../api/client';
import { ApiException } from '../api/errors';
import { contentLength, contentText } from '../rows';
import {
  DEFAULT_SAMPLING,
  type AccuracyReport,
  type AccuracyRequest,
  type AddModelResult,
  type AttributionReport,
  type AttributionRequest,
  type Content,
  type CuratedRow,
  type DatanetCard,
  type DatanetListing,
  type DatanetStats,
  type DatasetRow,
  type DatasetSummary,
  type DuplicateScan,
  type LabelUpdate,
  type LocalDatanet,
  type NewDataset,
  type RowPage,
  type RowQuery,
  type Conversation,
  type ConversationSummary,
  type ConversationUpdate,
  type DatasetPreview,
  type DemoDataset,
  type DoctorReport,
  type EvalRecord,
  type JobEvent,
  type JobInfo,
  type MessageStats,
  type ModelSummary,
  type NewConversation,
  type NewRun,
  type PreviewRequest,
  type RunDetail,
  type RunSummary,
  type SendMessage,
  type SendResult,
  type Settings,
  type StopReason,
  type StepRecord,
  type StopResult,
  type ChainSettings,
  type ChainStatus,
  type KeyImport,
  type NewAccount,
  type PaymentRequest,
  type Publication,
  type PublishPreview,
  type PublishRequest,
  type RunAttribution,
  type VerifyReport,
  type VerifyRequest,
  type WalletAccount,
  presetConfig,
} from '../api/types';

/** Test data builders. */
export function model(overrides: Partial<ModelSummary> = {}): ModelSummary {
  return {
    id: 'smollm2-135m-instruct',
    name: 'SmolLM2 135M Instruct',
    source: '/models/SmolLM2-135M-Instruct.Q4_1.gguf',
    path: '/models/SmolLM2-135M-Instruct.Q4_1.gguf',
    format: 'gguf',
    architecture: 'llama',
    parameters: 134_515_008,
    quantization: 'Q4_1',
    context_length: 8192,
    file_size: 98_903_328,
    layers: 30,
    hidden_size: 576,
    attention_heads: 9,
    kv_heads: 3,
    vocab_size: 49152,
    added_at: '2025-01-01T00:00:00Z',
    status: 'ready',
    problem: null,
    ...overrides,
  };
}

export function job(overrides: Partial<JobInfo> = {}): JobInfo {
  return {
    id: 'job-1',
    kind: 'pull',
    title: 'Pull HuggingFaceTB/SmolLM2-135M-Instruct',
    state: 'running',
    fraction: 0,
    message: 'starting',
    figures: {},
    error: null,
    created_at: '2025-01-01T00:00:00Z',
    updated_at: '2025-01-01T00:00:00Z',
    ...overrides,
  };
}

export function jobEvent(overrides: Partial<JobEvent> = {}): JobEvent {
  return {
    job_id: 'job-1',
    seq: 1,
    at: '2025-01-01T00:00:01Z',
    state: 'running',
    fraction: 0.1,
    message: 'downloading',
    figures: {},
    ...overrides,
  };
}

export function stats(overrides: Partial<MessageStats> = {}): MessageStats {
  return {
    prompt_tokens: 31,
    generated_tokens: 8,
    prefill_tokens_per_s: 412.5,
    decode_tokens_per_s: 41.25,
    stop_reason: 'end_of_turn',
    model_id: 'smollm2-135m-instruct',
    adapter_run_id: null,
    backend: 'cpu',
    citations: [],
    citations_error: null,
    ...overrides,
  };
}

export function conversation(overrides: Partial<Conversation> = {}): Conversation {
  return {
    id: 'conv-1',
    title: 'New conversation',
    model_id: 'smollm2-135m-instruct',
    adapter_run_id: null,
    sampling: { ...DEFAULT_SAMPLING },
    created_at: '2025-01-01T00:00:00Z',
    updated_at: '2025-01-01T00:00:00Z',
    messages: [],
    ...overrides,
  };
}

export function runSummary(overrides: Partial<RunSummary> = {}): RunSummary {
  return {
    id: 'run-1',
    name: 'modelfactory-help',
    model_id: 'smollm2-135m-instruct',
    dataset: '/data/modelfactory-help.jsonl',
    method: 'qlora',
    state: 'running',
    job_id: 'job-1',
    step: 0,
    total_steps: null,
    last_loss: null,
    last_eval_loss: null,
    adapter: null,
    error: null,
    created_at: '2025-01-01T00:00:00Z',
    updated_at: '2025-01-01T00:00:00Z',
    ...overrides,
  };
}

export function stepRecord(step: number, overrides: Partial<StepRecord> = {}): StepRecord {
  return {
    step,
    loss: 3 - step * 0.1,
    learning_rate: 2e-4,
    grad_norm: 1.5,
    tokens_per_s: 40,
    elapsed_s: step * 5,
    eta_s: 10,
    peak_memory_bytes: 700_000_000,
    ...overrides,
  };
}

export function evalRecord(step: number, overrides: Partial<EvalRecord> = {}): EvalRecord {
  return { step, loss: 3.2 - step * 0.1, perplexity: Math.exp(3.2 - step * 0.1), ...overrides };
}

export function runDetail(overrides: Partial<RunDetail> = {}): RunDetail {
  return {
    run: runSummary(),
    config: presetConfig('quick'),
    steps: [],
    evals: [],
    data: null,
    command: 'modelfactory train --model smollm2-135m-instruct --data /data/modelfactory-help.jsonl',
    ...overrides,
  };
}

/** A preview of one example with a trained span, and a load report with one problem. */
export function datasetPreview(overrides: Partial<DatasetPreview> = {}): DatasetPreview {
  return {
    report: {
      path: '/data/modelfactory-help.jsonl',
      format: { file: 'jsonl', rows: 'alpaca' },
      rows_read: 120,
      rows_kept: 119,
      problems: [{ number: 7, unit: 'line', reason: 'no `output` field' }],
    },
    examples: [
      {
        id: 'modelfactory-help.jsonl:1',
        segments: [
          { text: '<|im_start|>user\nWhat is ModelFactory?<|im_end|>\n<|im_start|>assistant\n', kind: 'context' },
          { text: 'A desktop studio for fine-tuning.<|im_end|>', kind: 'trained' },
        ],
        tokens: 30,
        trained_tokens: 9,
        skipped: null,
      },
    ],
    ...overrides,
  };
}

/** A contributor's address: `0x` and 40 hex digits, from a small number. */
export function address(n: number): string {
  return `0x${n.toString(16).padStart(4, '0').repeat(10)}`;
}

/** Row `i` of a Datanet: an instruction row by contributor `i % 3`. */
export function curatedRow(i: number, overrides: Partial<CuratedRow> = {}): CuratedRow {
  const content: Content = overrides.content ?? {
    instruction: `How do I do thing ${i} in Python?`,
    input: '',
    output: `Use the standard library, step ${i}.`,
  };
  return {
    contribution_id: `c${String(i).padStart(6, '0')}`,
    contributor: address(i % 3),
    created_at: `2025-01-01T00:00:${String(i % 60).padStart(2, '0')}Z`,
    license: 'CC-BY-4.0',
    content,
    original: null,
    version: 0,
    status: null,
    rating: null,
    tags: [],
    length: contentLength(content),
    pii: [],
    duplicate_of: null,
    ...overrides,
  };
}

export function datanetListing(overrides: Partial<DatanetListing> = {}): DatanetListing {
  return {
    id: 'modelfactory/python-faq',
    sha: '0123456789abcdef0123456789abcdef01234567',
    tags: ['python', 'faq'],
    description: 'Questions and answers about Python',
    license: 'CC-BY-4.0',
    last_modified: '2025-01-01T00:00:00Z',
    pulled: false,
    ...overrides,
  };
}

export function datanetCard(overrides: Partial<DatanetCard> = {}): DatanetCard {
  const id = overrides.id ?? 'modelfactory/python-faq';
  return {
    id,
    revision: '0123456789abcdef0123456789abcdef01234567',
    manifest: {
      schema_version: 1,
      id,
      name: 'Python FAQ',
      domain: 'programming',
      description: 'Questions and answers about Python',
      license: 'CC-BY-4.0',
      source: 'written for the demo',
      row_schema: 'instruction',
      shards: [
        { path: 'shards/00000.parquet', rows: 150, bytes: 20_480, sha256: 'a'.repeat(64) },
        { path: 'shards/00001.parquet', rows: 90, bytes: 12_288, sha256: 'b'.repeat(64) },
      ],
      contributors: [
        { address: address(0), rows: 120 },
        { address: address(1), rows: 80 },
        { address: address(2), rows: 40 },
      ],
      contributions_root: 'c'.repeat(64),
    },
    readme: '# Python FAQ\n\nShort answers to common questions.',
    pulled: false,
    ...overrides,
  };
}

export function localDatanet(overrides: Partial<LocalDatanet> = {}): LocalDatanet {
  return {
    id: 'modelfactory/python-faq',
    name: 'Python FAQ',
    domain: 'programming',
    license: 'CC-BY-4.0',
    revision: '0123456789abcdef0123456789abcdef01234567',
    rows: 240,
    contributors: 3,
    pulled_at: '2025-01-02T00:00:00Z',
    origin: 'hub',
    ...overrides,
  };
}

export function datasetSummary(overrides: Partial<DatasetSummary> = {}): DatasetSummary {
  return {
    name: 'faq-accepted',
    rows: 200,
    eval_rows: 20,
    contributors: 3,
    created_at: '2025-01-03T00:00:00Z',
    path: '/home/user/.modelfactory/datasets/faq-accepted.jsonl',
    sources: [{ datanet: 'modelfactory/python-faq', revision: '0123456789abcdef0123456789abcdef01234567', rows: 200 }],
    ...overrides,
  };
}

/** The rows of a Datanet that a query selects, in its order (what the studio's view does). */
export function queryRows(rows: CuratedRow[], q: RowQuery): CuratedRow[] {
  const search = q.search?.trim().toLowerCase();
  let out = rows.filter((r) => {
    if (search && !contentText(r.content).toLowerCase().includes(search)) return false;
    if (q.contributor && r.contributor !== q.contributor) return false;
    if (q.status === 'unlabeled' ? r.status !== null : q.status && r.status !== q.status) return false;
    if (q.tag && !r.tags.includes(q.tag)) return false;
    if (q.min_len !== undefined && r.length < q.min_len) return false;
    if (q.max_len !== undefined && r.length > q.max_len) return false;
    if (q.flag === 'pii' && r.pii.length === 0) return false;
    if (q.flag === 'duplicate' && r.duplicate_of === null) return false;
    if (q.flag === 'edited' && r.version === 0) return false;
    return true;
  });
  const sort = q.sort ?? 'position';
  if (sort !== 'position') {
    const key = (r: CuratedRow): number | string =>
      sort === 'length' ? r.length : sort === 'rating' ? (r.rating ?? 0) : sort === 'contributor' ? r.contributor : r.created_at;
    out = [...out].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  }
  if (q.desc) out = [...out].reverse();
  return out;
}

export function walletAccount(n: number, overrides: Partial<WalletAccount> = {}): WalletAccount {
  return { address: address(0x1000 + n), name: `account ${n}`, created: '2025-01-04T00:00:00Z', ...overrides };
}

export function chainStatus(overrides: Partial<ChainStatus> = {}): ChainStatus {
  return {
    local: true,
    url: 'http://127.0.0.1:8545',
    chain_id: 31337,
    reachable: true,
    block: 12,
    registry: address(0xa1),
    splitter: address(0xa2),
    state_file: '/home/user/.modelfactory/chain/state.json',
    problem: null,
    ...overrides,
  };
}

export function publication(overrides: Partial<Publication> = {}): Publication {
  return {
    manifest_hash: `0x${'ab'.repeat(32)}`,
    run_id: 'run-1',
    state: 'registered',
    publisher: address(0x1001),
    hub: 'http://127.0.0.1:4000',
    repo: '00010001/modelfactory-help',
    commit: 'f'.repeat(40),
    repo_url: 'http://127.0.0.1:4000/00010001/modelfactory-help',
    chain_id: 31337,
    registry: address(0xa1),
    tx_hash: `0x${'cd'.repeat(32)}`,
    block: 13,
    folder: '/home/user/.modelfactory/runs/run-1/publish',
    job_id: 'job-9',
    created_at: '2025-01-05T00:00:00Z',
    updated_at: '2025-01-05T00:00:10Z',
    ...overrides,
  };
}

export function publishPreview(overrides: Partial<PublishPreview> = {}): PublishPreview {
  return {
    run_id: 'run-1',
    run_name: 'modelfactory-help',
    manifest: { schema_version: 1, base_model: { repo: 'HuggingFaceTB/SmolLM2-135M-Instruct' }, publisher: address(0x1001) },
    manifest_hash: `0x${'ab'.repeat(32)}`,
    files: [
      { path: 'adapter_model.safetensors', bytes: 1_234_567, sha256: '1'.repeat(64) },
      { path: 'adapter_config.json', bytes: 512, sha256: '2'.repeat(64) },
      { path: 'lineage-manifest.json', bytes: 4_096, sha256: '3'.repeat(64) },
      { path: 'README.md', bytes: 2_048, sha256: '4'.repeat(64) },
    ],
    hub: 'http://127.0.0.1:4000',
    repo: '00010001/modelfactory-help',
    chain_id: 31337,
    chain_url: 'http://127.0.0.1:8545',
    registry: address(0xa1),
    attribution_method: 'datainf',
    shares: [
      [address(0), 7500],
      [address(1), 2500],
    ],
    harmful: [],
    uncredited_rows: 3,
    gas_estimate: 210_000,
    max_cost_wei: '420000000000000',
    gas_problem: null,
    publication: null,
    ...overrides,
  };
}

/** Contributors of the attribution examples (studio/tests/api_contract.rs). */
export const ALICE = '0x45c087ebfe09ba5bd55bd01a3bc19ffef7d6ce82';
export const CAROL = '0x90f79bf6eb2c4f870365e785982e1f101e93b906';

/**
 * The contract's attribution report: ALICE's row lowered the evaluation loss most, a local
 * file's row less, and CAROL's (a wrong dose) raised it.
 */
export function attributionReport(overrides: Partial<AttributionReport> = {}): AttributionReport {
  return {
    run_id: 'run-1',
    method: 'datainf',
    lambda: [0.0125, 0.0098],
    train_rows: 3,
    eval_rows: 2,
    backend: 'cpu',
    contributors: [
      { contributor: ALICE, score: 1.5, bps: 7500, harmful: false, rows: 1 },
      { contributor: 'file:notes.jsonl', score: 0.5, bps: 2500, harmful: false, rows: 1 },
      { contributor: CAROL, score: -0.25, bps: 0, harmful: true, rows: 1 },
    ],
    rows: [
      { contribution_id: 'ab'.repeat(32), contributor: ALICE, score: 1.5, preview: 'user: What is the dose? assistant: 5 mg.' },
      { contribution_id: 'notes.jsonl:1', contributor: 'file:notes.jsonl', score: 0.5, preview: 'user: Hi assistant: Hello.' },
      { contribution_id: 'cd'.repeat(32), contributor: CAROL, score: -0.25, preview: 'user: What is the dose? assistant: 50 mg.' },
    ],
    computed_at: '2026-01-01T00:10:00.000Z',
    ...overrides,
  };
}

/** The contract's accuracy measurement: DataInf, TracIn and representation similarity. */
export function accuracyReport(overrides: Partial<AccuracyReport> = {}): AccuracyReport {
  const method = (name: string, lds: number, loco_spearman: number | null, loco_sign_agreement: number) => ({
    method: name,
    lds,
    loco_spearman,
    loco_sign_agreement,
    scores: [1.5, 0.5, -0.25],
  });
  return {
    methods: [method('datainf', 0.377, 1.0, 1.0), method('tracin', 0.285, 0.5, 0.667), method('similarity', -0.056, null, 0.333)],
    full_eval_loss: 1.25,
    subset_eval_losses: [1.3, 1.4],
    loco: [
      [ALICE, 1.98],
      [CAROL, -0.65],
    ],
    subsets: 20,
    steps: 60,
    seed: 42,
    ...overrides,
  };
}

export function verifyReport(overrides: Partial<VerifyReport> = {}): VerifyReport {
  return {
    target: '00010001/modelfactory-help',
    ok: true,
    manifest_hash: `0x${'ab'.repeat(32)}`,
    publisher: address(0x1001),
    checks: [
      { subject: 'adapter_model.safetensors', ok: true, detail: 'sha256 matches the manifest' },
      { subject: 'signature', ok: true, detail: `signed by ${address(0x1001)}` },
      { subject: 'registry', ok: true, detail: 'registered in block 13' },
    ],
    ...overrides,
  };
}

type Call = { method: string; args: unknown[] };

/** Numbers the attribution jobs of every fake, so that a job id is not reused in the jobs manager that outlives each test. */
let attributionJobs = 0;

/**
 * An in-memory ApiClient: returns what the test put in it, records every call, and lets the
 * test push job events as the studio would.
 */
export class FakeTransport implements ApiClient {
  readonly transport = 'http' as const;
  calls: Call[] = [];
  models: ModelSummary[] = [];
  jobs: JobInfo[] = [];
  events: Record<string, JobEvent[]> = {};
  settings: Settings = { hub_endpoint: 'https://hub.example', default_backend: 'auto', datanet_hub: '' };
  report: DoctorReport = {
    version: '0.1.0',
    workspace: '/home/user/.modelfactory',
    database: '/home/user/.modelfactory/studio.db',
    backends: [
      { name: 'cpu', compiled: true, usable: true, software: false, detail: 'flex, 2 threads' },
      { name: 'wgpu', compiled: true, usable: false, software: false, detail: 'no adapter found' },
      { name: 'cuda', compiled: false, usable: false, software: false, detail: 'not compiled in' },
    ],
    models: [],
  };
  /** What addModel answers; a function gets the source. */
  addResult: AddModelResult | ((source: string) => AddModelResult) = { model: null, job: null };
  /** When set, the next call of that method rejects with it. */
  failures: Partial<Record<keyof ApiClient, ApiException>> = {};
  /** Conversations, with their messages. */
  conversations: Conversation[] = [];
  /** The pieces every answer streams. */
  answer: string[] = ['The capital', ' of France', ' is Paris.'];
  /** When set, the pieces of the answer in that conversation (e.g. to tell base and adapter apart). */
  answerFor: ((c: Conversation) => string[]) | null = null;
  /** When true, an answer streams its pieces and then waits for `stopAnswer` or `finishAnswers`. */
  holdAnswers = false;
  #held = new Map<string, (reason: StopReason) => void>();
  #nextId = 1;
  /** Runs, newest first, and the details `getRun` answers (built from the summary when absent). */
  runs: RunSummary[] = [];
  details: Record<string, RunDetail> = {};
  preview: DatasetPreview = datasetPreview();
  demos: DemoDataset[] = [{ name: 'modelfactory-help', path: '/assets/datasets/modelfactory-help.jsonl', bytes: 45_857 }];
  listeners = new Set<(e: JobEvent) => void>();
  resyncs = new Set<() => void>();
  /** Datanets on the hub, their cards (built from the listing when absent), and this workspace's. */
  hub: DatanetListing[] = [datanetListing()];
  cards: Record<string, DatanetCard> = {};
  datanets: LocalDatanet[] = [];
  /** Every row of each local Datanet, in position order. */
  datanetRowsById: Record<string, CuratedRow[]> = {};
  /** Built datasets and their rows. */
  datasets: DatasetSummary[] = [];
  datasetRowsByName: Record<string, DatasetRow[]> = {};
  /** The keystore's accounts; the passphrase of each (to refuse a wrong one). */
  accounts: WalletAccount[] = [];
  passphrases: Record<string, string> = {};
  chainSettings: ChainSettings = { rpc_url: '', chain_id: null, registry: null, splitter: null };
  chain: ChainStatus = chainStatus({ reachable: false, block: null });
  /** What publishPreview answers (its run id, repo and publisher are the request's). */
  previewTemplate: PublishPreview = publishPreview();
  /** Each run's latest publication. */
  publications: Record<string, Publication> = {};
  /** Each run's attribution; a run without one has neither report nor accuracy. */
  attributions: Record<string, RunAttribution> = {};
  /** What verify answers; a function gets the request. */
  verifyResult: VerifyReport | ((request: VerifyRequest) => VerifyReport) = verifyReport();

  #record<T>(method: keyof ApiClient, args: unknown[], value: () => T): Promise<T> {
    this.calls.push({ method, args });
    const failure = this.failures[method];
    if (failure) {
      delete this.failures[method];
      return Promise.reject(failure);
    }
    try {
      return Promise.resolve(structuredClone(value()));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  callsOf(method: keyof ApiClient): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  doctor() {
    return this.#record('doctor', [], () => this.report);
  }
  listModels() {
    return this.#record('listModels', [], () => this.models);
  }
  addModel(source: string) {
    return this.#record('addModel', [source], () =>
      typeof this.addResult === 'function' ? this.addResult(source) : this.addResult,
    );
  }
  removeModel(id: string) {
    return this.#record('removeModel', [id], () => {
      this.models = this.models.filter((m) => m.id !== id);
      return undefined;
    });
  }
  listJobs() {
    return this.#record('listJobs', [], () => this.jobs);
  }
  getJob(id: string) {
    return this.#record('getJob', [id], () => {
      const found = this.jobs.find((j) => j.id === id);
      if (!found) throw new ApiException(`no job ${id}`, null, 404);
      return found;
    });
  }
  jobEvents(id: string) {
    return this.#record('jobEvents', [id], () => this.events[id] ?? []);
  }
  cancelJob(id: string) {
    return this.#record('cancelJob', [id], () => {
      const found = this.jobs.find((j) => j.id === id);
      if (!found) throw new ApiException(`no job ${id}`, null, 404);
      found.state = 'cancelled';
      return found;
    });
  }
  getSettings() {
    return this.#record('getSettings', [], () => this.settings);
  }
  putSettings(settings: Settings) {
    return this.#record('putSettings', [settings], () => {
      this.settings = { ...settings };
      return this.settings;
    });
  }
  #conversation(id: string): Conversation {
    const found = this.conversations.find((c) => c.id === id);
    if (!found) throw new ApiException(`no conversation with id "${id}"`, null, 404);
    return found;
  }
  listConversations() {
    return this.#record('listConversations', [], (): ConversationSummary[] =>
      this.conversations.map((c) => ({
        id: c.id,
        title: c.title,
        model_id: c.model_id,
        adapter_run_id: c.adapter_run_id,
        message_count: c.messages.filter((m) => m.role !== 'system').length,
        created_at: c.created_at,
        updated_at: c.updated_at,
      })),
    );
  }
  createConversation(request: NewConversation) {
    return this.#record('createConversation', [request], () => {
      const created = conversation({
        id: `conv-${this.#nextId++}`,
        model_id: request.model_id,
        adapter_run_id: request.adapter_run_id ?? null,
        title: request.title ?? 'New conversation',
        sampling: request.sampling ?? { ...DEFAULT_SAMPLING },
        messages: request.system
          ? [{ seq: 1, role: 'system', content: request.system, stats: null, created_at: '2025-01-01T00:00:00Z' }]
          : [],
      });
      this.conversations = [created, ...this.conversations];
      return created;
    });
  }
  getConversation(id: string) {
    return this.#record('getConversation', [id], () => this.#conversation(id));
  }
  updateConversation(id: string, update: ConversationUpdate) {
    return this.#record('updateConversation', [id, update], () => {
      const c = this.#conversation(id);
      if (update.title) c.title = update.title;
      if (update.model_id) c.model_id = update.model_id;
      if (update.adapter_run_id !== undefined && update.adapter_run_id !== null) c.adapter_run_id = update.adapter_run_id || null;
      if (update.sampling) c.sampling = { ...update.sampling };
      return c;
    });
  }
  deleteConversation(id: string) {
    return this.#record('deleteConversation', [id], () => {
      this.#conversation(id);
      this.conversations = this.conversations.filter((c) => c.id !== id);
      return undefined;
    });
  }
  #run(id: string): RunSummary {
    const found = this.runs.find((r) => r.id === id);
    if (!found) throw new ApiException(`no run with id "${id}"`, null, 404);
    return found;
  }
  listRuns() {
    return this.#record('listRuns', [], () => this.runs);
  }
  startRun(request: NewRun) {
    return this.#record('startRun', [request], () => {
      const n = this.#nextId++;
      const run = runSummary({
        id: `run-${n}`,
        job_id: `job-${n}`,
        name: request.name ?? 'modelfactory-help',
        model_id: request.model_id,
        dataset: request.dataset,
        method: request.config.method,
        state: 'running',
      });
      this.runs = [run, ...this.runs];
      this.details[run.id] = runDetail({ run, config: structuredClone(request.config) });
      return run;
    });
  }
  getRun(id: string) {
    return this.#record('getRun', [id], () => {
      const run = this.#run(id);
      return { ...(this.details[id] ?? runDetail()), run };
    });
  }
  deleteRun(id: string) {
    return this.#record('deleteRun', [id], () => {
      this.#run(id);
      this.runs = this.runs.filter((r) => r.id !== id);
      return undefined;
    });
  }
  cancelRun(id: string) {
    return this.#record('cancelRun', [id], () => this.#run(id));
  }
  resumeRun(id: string) {
    return this.#record('resumeRun', [id], () => {
      const run = this.#run(id);
      run.state = 'running';
      run.job_id = `job-${this.#nextId++}`;
      run.error = null;
      return run;
    });
  }
  previewDataset(request: PreviewRequest) {
    return this.#record('previewDataset', [request], () => this.preview);
  }
  demoDatasets() {
    return this.#record('demoDatasets', [], () => this.demos);
  }
  searchHub(search: string) {
    return this.#record('searchHub', [search], () => {
      const q = search.trim().toLowerCase();
      return this.hub
        .filter((d) => !q || [d.id, d.description ?? '', ...d.tags].some((t) => t.toLowerCase().includes(q)))
        .map((d) => ({ ...d, pulled: this.datanets.some((l) => l.id === d.id) }));
    });
  }
  hubCard(id: string) {
    return this.#record('hubCard', [id], () => {
      const listing = this.hub.find((d) => d.id === id);
      if (!listing) throw new ApiException(`no Datanet ${id} on the hub`, null, 404);
      const card = this.cards[id] ?? datanetCard({ id });
      return { ...card, pulled: this.datanets.some((l) => l.id === id) };
    });
  }
  pullDatanet(id: string) {
    return this.#record('pullDatanet', [id], () => {
      if (!this.hub.some((d) => d.id === id)) throw new ApiException(`no Datanet ${id} on the hub`, null, 404);
      const pulled = job({ id: `job-${this.#nextId++}`, kind: 'pull-datanet', title: `Pull ${id}`, state: 'queued', message: 'queued' });
      this.jobs = [pulled, ...this.jobs];
      return pulled;
    });
  }
  listDatanets() {
    return this.#record('listDatanets', [], () => this.datanets);
  }
  importDatanet(path: string, name: string) {
    return this.#record('importDatanet', [path, name], () => {
      if (!path.trim()) throw new ApiException('give the path of a JSONL, CSV or Parquet file', null, 400);
      const made = localDatanet({ id: `local/${name}`, name, origin: 'import', rows: 3, contributors: 1, domain: '', license: '' });
      this.datanets = [...this.datanets.filter((d) => d.id !== made.id), made];
      this.datanetRowsById[made.id] = [0, 1, 2].map((i) => curatedRow(i, { contributor: address(9) }));
      return made;
    });
  }
  #rowsOf(id: string): CuratedRow[] {
    const rows = this.datanetRowsById[id];
    if (!rows) throw new ApiException(`no Datanet ${id} in this workspace`, null, 404);
    return rows;
  }
  datanetRows(id: string, query: RowQuery) {
    return this.#record('datanetRows', [id, query], (): RowPage => {
      const all = queryRows(this.#rowsOf(id), query);
      const offset = query.offset ?? 0;
      const limit = query.limit ?? 100;
      return { total: all.length, offset, rows: all.slice(offset, offset + limit) };
    });
  }
  #row(id: string, cid: string): CuratedRow {
    const row = this.#rowsOf(id).find((r) => r.contribution_id === cid);
    if (!row) throw new ApiException(`no row ${cid} in ${id}`, null, 404);
    return row;
  }
  labelRow(id: string, contributionId: string, update: LabelUpdate) {
    return this.#record('labelRow', [id, contributionId, update], () => {
      const row = this.#row(id, contributionId);
      if (update.status !== undefined) row.status = update.status;
      if (update.rating !== undefined) row.rating = update.rating;
      if (update.tags !== undefined) row.tags = [...update.tags];
      return row;
    });
  }
  editRow(id: string, contributionId: string, content: Content) {
    return this.#record('editRow', [id, contributionId, content], () => {
      const row = this.#row(id, contributionId);
      row.original ??= row.content;
      row.content = structuredClone(content);
      row.version += 1;
      row.length = contentLength(content);
      return row;
    });
  }
  datanetStats(id: string) {
    return this.#record('datanetStats', [id], (): DatanetStats => {
      const rows = this.#rowsOf(id);
      const lengths = rows.map((r) => r.length).sort((a, b) => a - b);
      const at = (f: number) => lengths[Math.min(lengths.length - 1, Math.floor(f * lengths.length))] ?? 0;
      const min = lengths[0] ?? 0;
      const max = lengths.at(-1) ?? 0;
      const width = Math.max(1, Math.ceil((max - min + 1) / 4));
      const histogram = [0, 1, 2, 3].map((b) => {
        const start = min + b * width;
        return { start, end: start + width, count: lengths.filter((l) => l >= start && l < start + width).length };
      });
      const byContributor = new Map<string, number>();
      for (const r of rows) byContributor.set(r.contributor, (byContributor.get(r.contributor) ?? 0) + 1);
      return {
        rows: rows.length,
        accepted: rows.filter((r) => r.status === 'accepted').length,
        rejected: rows.filter((r) => r.status === 'rejected').length,
        unlabeled: rows.filter((r) => r.status === null).length,
        edited: rows.filter((r) => r.version > 0).length,
        pii_rows: rows.filter((r) => r.pii.length > 0).length,
        duplicate_rows: rows.filter((r) => r.duplicate_of !== null).length,
        length: {
          count: lengths.length,
          min,
          max,
          mean: lengths.reduce((a, b) => a + b, 0) / Math.max(1, lengths.length),
          median: at(0.5),
          p95: at(0.95),
          histogram,
        },
        contributors: [...byContributor].map(([address, n]) => ({ address, rows: n })).sort((a, b) => b.rows - a.rows),
      };
    });
  }
  /** Groups rows with the same text (the fake knows no near duplicates). */
  scanDuplicates(id: string, threshold: number, reject: boolean) {
    return this.#record('scanDuplicates', [id, threshold, reject], (): DuplicateScan => {
      const byText = new Map<string, CuratedRow[]>();
      for (const r of this.#rowsOf(id)) {
        const key = contentText(r.content).toLowerCase();
        byText.set(key, [...(byText.get(key) ?? []), r]);
      }
      const groups = [...byText.values()].filter((g) => g.length > 1);
      let rejected = 0;
      for (const [first, ...rest] of groups) {
        for (const r of rest) {
          r.duplicate_of = first!.contribution_id;
          if (reject && r.status !== 'rejected') {
            r.status = 'rejected';
            rejected++;
          }
        }
      }
      return { threshold, groups: groups.map((g) => g.map((r) => r.contribution_id)), exact_groups: groups.length, near_groups: 0, rejected };
    });
  }
  listDatasets() {
    return this.#record('listDatasets', [], () => this.datasets);
  }
  createDataset(dataset: NewDataset) {
    return this.#record('createDataset', [dataset], () => {
      if (!dataset.name.trim()) throw new ApiException('give the dataset a name', null, 400);
      const rows: DatasetRow[] = [];
      const sources: DatasetSummary['sources'] = [];
      for (const source of dataset.sources) {
        const picked = this.#rowsOf(source.datanet).filter((r) =>
          source.statuses.includes(r.status ?? 'unlabeled') &&
          (!source.search || contentText(r.content).toLowerCase().includes(source.search.toLowerCase())) &&
          (!source.tag || r.tags.includes(source.tag)),
        );
        const revision = this.datanets.find((d) => d.id === source.datanet)?.revision ?? '';
        sources.push({ datanet: source.datanet, revision, rows: picked.length });
        for (const r of picked) rows.push({ contribution_id: r.contribution_id, contributor: r.contributor, datanet: source.datanet, split: 'train', content: r.content });
      }
      const evalRows = Math.round(rows.length * dataset.eval_fraction);
      rows.forEach((r, i) => (r.split = i < evalRows ? 'eval' : 'train'));
      const summary = datasetSummary({
        name: dataset.name,
        rows: rows.length,
        eval_rows: evalRows,
        contributors: new Set(rows.map((r) => r.contributor)).size,
        path: `/home/user/.modelfactory/datasets/${dataset.name}.jsonl`,
        sources,
      });
      this.datasets = [summary, ...this.datasets.filter((d) => d.name !== dataset.name)];
      this.datasetRowsByName[dataset.name] = rows;
      return summary;
    });
  }
  datasetRows(name: string, offset: number, limit: number) {
    return this.#record('datasetRows', [name, offset, limit], () => {
      const rows = this.datasetRowsByName[name];
      if (!rows) throw new ApiException(`no dataset ${name}`, null, 404);
      return { total: rows.length, offset, rows: rows.slice(offset, offset + limit) };
    });
  }
  deleteDataset(name: string) {
    return this.#record('deleteDataset', [name], () => {
      if (!this.datasets.some((d) => d.name === name)) throw new ApiException(`no dataset ${name}`, null, 404);
      this.datasets = this.datasets.filter((d) => d.name !== name);
      delete this.datasetRowsByName[name];
      return undefined;
    });
  }
  stopAnswer(id: string) {
    return this.#record('stopAnswer', [id], (): StopResult => {
      this.#conversation(id);
      const held = this.#held.get(id);
      this.#held.delete(id);
      held?.('cancelled');
      return { stopped: held !== undefined };
    });
  }
  /** Lets every held answer finish normally. */
  finishAnswers(): void {
    for (const [id, finish] of [...this.#held]) {
      this.#held.delete(id);
      finish('end_of_turn');
    }
  }
  async sendMessage(id: string, request: SendMessage, onToken: (text: string) => void): Promise<SendResult> {
    this.calls.push({ method: 'sendMessage', args: [id, request] });
    const failure = this.failures.sendMessage;
    if (failure) {
      delete this.failures.sendMessage;
      throw failure;
    }
    const c = this.#conversation(id);
    if (request.sampling) c.sampling = { ...request.sampling };
    const next = () => c.messages.reduce((n, m) => Math.max(n, m.seq), 0) + 1;
    c.messages.push({ seq: next(), role: 'user', content: request.content, stats: null, created_at: '2025-01-01T00:00:01Z' });
    let text = '';
    const pieces = this.answerFor?.(c) ?? this.answer;
    for (const piece of pieces) {
      await Promise.resolve();
      text += piece;
      onToken(piece);
    }
    const reason = this.holdAnswers ? await new Promise<StopReason>((resolve) => this.#held.set(id, resolve)) : 'end_of_turn';
    // An adapter's answer is looked up in its training rows, as the studio does: here the whole
    // answer is one cited passage.
    const citations = c.adapter_run_id && text ? [{ text, tokens: pieces.length, occurrences: 1, sources: [{ contribution_id: 'c-0042', contributor: '0x45c087ebfe09ba5bd55bd01a3bc19ffef7d6ce82' }] }] : [];
    const s = stats({ stop_reason: reason, model_id: c.model_id, adapter_run_id: c.adapter_run_id, generated_tokens: pieces.length, citations });
    const message = { seq: next(), role: 'assistant' as const, content: text, stats: s, created_at: '2025-01-01T00:00:02Z' };
    c.messages.push(message);
    if (c.title === 'New conversation') c.title = request.content;
    return structuredClone({ message, stats: s });
  }

  walletAccounts() {
    return this.#record('walletAccounts', [], () => this.accounts);
  }
  #addAccount(name: string | null | undefined, passphrase: string): WalletAccount {
    if (passphrase.length < 8) throw new ApiException('the passphrase is too short', 'Use at least 8 characters', 400);
    const made = walletAccount(this.accounts.length + 1, { name: name ?? null });
    this.accounts = [...this.accounts, made];
    this.passphrases[made.address] = passphrase;
    return made;
  }
  createAccount(request: NewAccount) {
    return this.#record('createAccount', [request], () => this.#addAccount(request.name, request.passphrase));
  }
  importAccount(request: KeyImport) {
    return this.#record('importAccount', [request], () => this.#addAccount(request.name, request.passphrase));
  }
  chainStatus() {
    return this.#record('chainStatus', [], () => this.chain);
  }
  chainUp() {
    return this.#record('chainUp', [], () => {
      this.chain = chainStatus();
      return this.chain;
    });
  }
  getChainSettings() {
    return this.#record('getChainSettings', [], () => this.chainSettings);
  }
  putChainSettings(settings: ChainSettings) {
    return this.#record('putChainSettings', [settings], () => {
      this.chainSettings = { ...settings };
      this.chain = settings.rpc_url
        ? chainStatus({ local: false, url: settings.rpc_url, chain_id: settings.chain_id, registry: settings.registry, splitter: settings.splitter, state_file: null })
        : chainStatus({ reachable: false, block: null });
      return this.chainSettings;
    });
  }
  runAttribution(runId: string) {
    return this.#record('runAttribution', [runId], (): RunAttribution => {
      const run = this.#run(runId);
      return this.attributions[run.id] ?? { run_id: run.id, report: null, accuracy: null };
    });
  }
  startAttribution(runId: string, request: AttributionRequest) {
    return this.#record('startAttribution', [runId, request], () => {
      const run = this.#run(runId);
      if (!run.adapter) throw new ApiException(`run ${run.name} has no adapter yet`, null, 400);
      const started = job({ id: `job-attribution-${++attributionJobs}`, kind: 'attribution', title: `Attribution of ${run.name}`, state: 'queued', message: 'queued' });
      this.jobs = [started, ...this.jobs];
      return started;
    });
  }
  startAttributionAccuracy(runId: string, request: AccuracyRequest) {
    return this.#record('startAttributionAccuracy', [runId, request], () => {
      const run = this.#run(runId);
      const started = job({
        id: `job-attribution-${++attributionJobs}`,
        kind: 'attribution-accuracy',
        title: `Attribution accuracy of ${run.name}`,
        state: 'queued',
        message: 'queued',
      });
      this.jobs = [started, ...this.jobs];
      return started;
    });
  }
  /** The template, for the run and the request; shares by rows name no harmful contributors. */
  publishPreview(request: PublishRequest & { run_id: string }) {
    return this.#record('publishPreview', [request], (): PublishPreview => {
      const run = this.#run(request.run_id);
      const method = request.attribution ?? this.previewTemplate.attribution_method;
      return {
        ...this.previewTemplate,
        run_id: run.id,
        run_name: run.name,
        repo: request.repo ?? this.previewTemplate.repo,
        manifest: { ...this.previewTemplate.manifest, publisher: request.publisher },
        attribution_method: method,
        harmful: method === 'row-share' ? [] : this.previewTemplate.harmful,
        publication: this.publications[run.id] ?? null,
      };
    });
  }
  publish(request: PublishRequest & { run_id: string }, passphrase: string) {
    return this.#record('publish', [request, passphrase], () => {
      const run = this.#run(request.run_id);
      const expected = this.passphrases[request.publisher];
      if (expected !== undefined && expected !== passphrase) throw new ApiException('wrong passphrase for this account', null, 400);
      const started = job({ id: `job-${this.#nextId++}`, kind: 'publish', title: `Publish ${run.name}`, state: 'queued', message: 'queued' });
      this.jobs = [started, ...this.jobs];
      return started;
    });
  }
  publication(runId: string) {
    return this.#record('publication', [runId], () => this.publications[runId] ?? null);
  }
  verify(request: VerifyRequest) {
    return this.#record('verify', [request], () => (typeof this.verifyResult === 'function' ? this.verifyResult(request) : this.verifyResult));
  }
  rewardsPay(request: PaymentRequest) {
    return this.#record('rewardsPay', [request], () => ({
      manifest_hash: request.manifest_hash,
      payer: request.from,
      amount_wei: '1000',
      tx_hash: `0x${'ee'.repeat(32)}`,
      block: 20,
      split: [[address(0), '750'] as [string, string], [address(1), '250'] as [string, string]],
    }));
  }
  rewardsBalance(address: string) {
    return this.#record('rewardsBalance', [address], () => ({ address, balance_wei: '10000000000000000000', owed_wei: '0' }));
  }
  rewardsWithdraw(address: string, passphrase: string) {
    return this.#record('rewardsWithdraw', [address, passphrase], () => ({ address, amount_wei: '0', tx_hash: `0x${'ff'.repeat(32)}`, block: 21 }));
  }

  subscribe(onEvent: (event: JobEvent) => void, options?: SubscribeOptions): Unsubscribe {
    this.calls.push({ method: 'subscribe', args: [] });
    this.listeners.add(onEvent);
    const onResync = options?.onResync;
    if (onResync) this.resyncs.add(onResync);
    return () => {
      this.listeners.delete(onEvent);
      if (onResync) this.resyncs.delete(onResync);
    };
  }

  /** Delivers an event to every subscriber, as the studio's stream would. */
  push(event: JobEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }

  resync(): void {
    for (const fn of [...this.resyncs]) fn();
  }
}

/** Lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise((resolve) => setTimeout(resolve, 0));
}
