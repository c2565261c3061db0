import type { ApiClient, SubscribeOptions, Unsubscribe } from '../api/client';
import { ApiException } from '../api/errors';
import {
  DEFAULT_SAMPLING,
  type AddModelResult,
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

type Call = { method: string; args: unknown[] };

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
  settings: Settings = { hub_endpoint: 'https://hub.example', default_backend: 'auto' };
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
    const s = stats({ stop_reason: reason, model_id: c.model_id, adapter_run_id: c.adapter_run_id, generated_tokens: pieces.length });
    const message = { seq: next(), role: 'assistant' as const, content: text, stats: s, created_at: '2025-01-01T00:00:02Z' };
    c.messages.push(message);
    if (c.title === 'New conversation') c.title = request.content;
    return structuredClone({ message, stats: s });
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
