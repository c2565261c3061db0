// Mirrors docs/api.md ("The studio API") exactly. Keep the two in step.

export type BackendName = 'cpu' | 'wgpu' | 'cuda';

export type BackendStatus = {
  name: BackendName;
  compiled: boolean;
  usable: boolean;
  /** true when the adapter is a software emulation (e.g. Mesa lavapipe): usable but slow */
  software: boolean;
  detail: string;
};

export type ModelFormat = 'gguf' | 'safetensors';
export type ModelStatus = 'ready' | 'missing' | 'unreadable';

export type ModelSummary = {
  /** slug, unique in the workspace, e.g. "smollm2-135m-instruct" */
  id: string;
  /** display name, from the file's metadata when it has one */
  name: string;
  /** what was given to `models add`: a path or a hub repo id */
  source: string;
  /** the hub repository the model comes from, when known (owner/name) */
  hub_id?: string | null;
  /** absolute path: a .gguf file, or a folder with config.json + safetensors */
  path: string;
  format: ModelFormat;
  /** e.g. "llama", "qwen2" */
  architecture: string;
  /** number of weights, counted from the tensor shapes */
  parameters: number;
  /** e.g. "Q4_1", "BF16", "F32" (the dominant tensor type) */
  quantization: string;
  context_length: number | null;
  /** bytes of all weight files */
  file_size: number;
  layers: number | null;
  hidden_size: number | null;
  attention_heads: number | null;
  kv_heads: number | null;
  vocab_size: number | null;
  added_at: string;
  /** checked again each time the list is read */
  status: ModelStatus;
  /** why it is missing or unreadable, naming the file */
  problem: string | null;
};

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted';

export type JobInfo = {
  id: string;
  kind: string;
  title: string;
  state: JobState;
  /** 0..1 */
  fraction: number;
  message: string;
  /** e.g. { "tokens_per_s": 212.5 } */
  figures: Record<string, number>;
  error: string | null;
  created_at: string;
  updated_at: string;
};

export type JobEvent = {
  job_id: string;
  seq: number;
  at: string;
  state: JobState;
  fraction: number;
  message: string;
  figures: Record<string, number>;
};

export type DefaultBackend = 'auto' | BackendName;

export type Settings = {
  hub_endpoint: string;
  default_backend: DefaultBackend;
  /** where Datanets are searched and pulled from; empty = the hub built into the studio (demo Datanet) */
  datanet_hub: string;
};

export type DoctorReport = {
  version: string;
  workspace: string;
  database: string;
  backends: BackendStatus[];
  models: ModelSummary[];
};

/** local path: model; hub id: a pull job */
export type AddModelResult = { model: ModelSummary | null; job: JobInfo | null };

export type ApiError = { error: string; hint: string | null };

export const JOB_STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted'];
export const DEFAULT_BACKENDS: readonly DefaultBackend[] = ['auto', 'cpu', 'wgpu', 'cuda'];

export function isActiveState(state: JobState): boolean {
  return state === 'queued' || state === 'running';
}

// Local chat.

/** How the next token is chosen. */
export type SamplingParams = {
  /** 0 always takes the most likely token (greedy decoding) */
  temperature: number;
  /** keep only the k most likely tokens; 0 keeps all */
  top_k: number;
  /** keep the smallest set of tokens whose probabilities add up to top_p; 1 keeps all */
  top_p: number;
  /** divide the logits of tokens already in the context by this; 1 turns it off */
  repetition_penalty: number;
  /** seed of the sampler; null picks one from the clock */
  seed: number | null;
  /** stop an answer after this many tokens */
  max_new_tokens: number;
};

export type StopReason = 'end_of_turn' | 'max_tokens' | 'context_full' | 'cancelled';
export type ChatRole = 'system' | 'user' | 'assistant';

/** How an answer was generated. */
export type MessageStats = {
  prompt_tokens: number;
  /** the end-of-turn token included */
  generated_tokens: number;
  prefill_tokens_per_s: number;
  /** generation speed after the first token */
  decode_tokens_per_s: number;
  /** "cancelled": the answer was stopped and is kept as far as it got */
  stop_reason: StopReason;
  model_id: string;
  /** the fine-tuning run whose adapter answered; null: the base model */
  adapter_run_id: string | null;
  backend: BackendName;
  /** an adapter's answer: passages found word for word in the rows that trained it, rarest first */
  citations: AnswerCitation[];
  /** why an adapter's answer could not be looked up in its training rows */
  citations_error: string | null;
};

export type StoredMessage = {
  /** 1, 2, 3, … in conversation order */
  seq: number;
  role: ChatRole;
  content: string;
  /** assistant messages only */
  stats: MessageStats | null;
  created_at: string;
};

/** A passage of an answer found word for word in training rows. */
export type AnswerCitation = {
  /** the passage as it stands in the answer */
  text: string;
  tokens: number;
  /** how many times it occurs in the training rows: the fewer, the more telling */
  occurrences: number;
  /** rows it occurs in (a few at most) */
  sources: { contribution_id: string; contributor: string | null }[];
};

export type ConversationSummary = {
  id: string;
  /** "New conversation" until the first answer; then the first question */
  title: string;
  model_id: string;
  /** answers come from the base model with this run's adapter; null: the base model alone */
  adapter_run_id: string | null;
  /** questions and answers; the system prompt is not counted */
  message_count: number;
  created_at: string;
  updated_at: string;
};

export type Conversation = {
  id: string;
  title: string;
  model_id: string;
  /** answers come from the base model with this run's adapter; null: the base model alone */
  adapter_run_id: string | null;
  sampling: SamplingParams;
  created_at: string;
  updated_at: string;
  messages: StoredMessage[];
};

export type NewConversation = {
  model_id: string;
  /** chat through this run's adapter (a run trained on `model_id`) */
  adapter_run_id?: string | null;
  title?: string | null;
  /** a system prompt, stored as the first message */
  system?: string | null;
  sampling?: SamplingParams | null;
};

/** Absent fields stay as they are. `adapter_run_id`: a run id, or "" to go back to the base model. */
export type ConversationUpdate = {
  title?: string | null;
  model_id?: string | null;
  adapter_run_id?: string | null;
  sampling?: SamplingParams | null;
};

/** `sampling`, when given, becomes the conversation's setting. */
export type SendMessage = { content: string; sampling?: SamplingParams | null };

/** The stored answer (the `done` event). */
export type SendResult = { message: StoredMessage; stats: MessageStats };

export type StopResult = { stopped: boolean };

/** A piece of an answer as it is generated (the `token` event). */
export type ChatToken = { conversation_id: string; text: string };

/** The runtime's defaults (SamplingParams::default() in trainer). */
export const DEFAULT_SAMPLING: Readonly<SamplingParams> = Object.freeze({
  temperature: 0.7,
  top_k: 40,
  top_p: 0.9,
  repetition_penalty: 1.1,
  seed: null,
  max_new_tokens: 512,
});

export const STOP_REASONS: readonly StopReason[] = ['end_of_turn', 'max_tokens', 'context_full', 'cancelled'];

// Fine-tuning runs.

/** LoRA trains small adapters beside full-precision base weights; QLoRA keeps the base in 4 bits (NF4). */
export type TrainMethod = 'lora' | 'qlora';
export type LrSchedule = 'constant' | 'linear' | 'cosine';
/** A projection that can get an adapter, by its PEFT module name. */
export type LoraTarget = 'q_proj' | 'k_proj' | 'v_proj' | 'o_proj' | 'gate_proj' | 'up_proj' | 'down_proj';

export type LoraConfig = {
  rank: number;
  /** the update is scaled by alpha / rank (alpha / √rank with rsLoRA) */
  alpha: number;
  dropout: number;
  rslora: boolean;
  targets: LoraTarget[];
};

/** Every knob of a run (trainer's `TrainConfig`; every field has a default on the server). */
export type TrainConfig = {
  method: TrainMethod;
  lora: LoraConfig;
  learning_rate: number;
  weight_decay: number;
  schedule: LrSchedule;
  warmup_steps: number;
  /** passes over the training set; ignored when max_steps is set */
  epochs: number;
  max_steps: number | null;
  batch_size: number;
  grad_accum: number;
  /** 0 turns clipping off */
  max_grad_norm: number;
  seed: number;
  /** 0: only at the end */
  eval_every: number;
  /** 0: only at the end */
  checkpoint_every: number;
  keep_checkpoints: number;
  gradient_checkpointing: boolean;
  /** null: the one in Settings */
  backend: BackendName | null;
  /** tokens per sequence; longer examples lose their tail */
  max_length: number;
  packing: boolean;
  /** the frozen base's products; auto: f32 for now; bf16 multiplies them in bf16, the adapter stays f32 */
  precision: Precision;
  /** share of the examples held out for evaluation */
  eval_fraction: number;
};

export type Precision = 'auto' | 'f32' | 'bf16';

export type Preset = 'quick' | 'balanced' | 'thorough';

export type NewRun = {
  /** the dataset's file name when absent */
  name?: string | null;
  model_id: string;
  /** a dataset file on the studio's machine: JSONL / JSON, CSV, TSV or Parquet */
  dataset: string;
  config: TrainConfig;
};

export type RunState = 'queued' | 'running' | 'finished' | 'cancelled' | 'failed' | 'interrupted';

export type RunSummary = {
  id: string;
  name: string;
  model_id: string;
  dataset: string;
  method: TrainMethod;
  state: RunState;
  /** the job training it now, or the last one that did */
  job_id: string | null;
  /** optimiser steps done */
  step: number;
  total_steps: number | null;
  last_loss: number | null;
  last_eval_loss: number | null;
  /** the adapter folder (PEFT layout), once a checkpoint exists */
  adapter: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
};

export type StepRecord = {
  /** 1-based */
  step: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
  tokens_per_s: number;
  /** seconds since the run (or its resumption) started */
  elapsed_s: number;
  eta_s: number;
  peak_memory_bytes: number;
};

export type EvalRecord = { step: number; loss: number; perplexity: number };

export type DataSummary = {
  /** e.g. "jsonl / alpaca" */
  format: string;
  rows_read: number;
  rows_kept: number;
  /** the first problems found in the file ("line 7: …") */
  problems: string[];
  train_examples: number;
  eval_examples: number;
  train_sequences: number;
  skipped_examples: number;
  truncated_examples: number;
  trained_tokens: number;
};

export type RunDetail = {
  run: RunSummary;
  config: TrainConfig;
  /** every step so far, in order: a reconnecting page redraws the whole curve from here */
  steps: StepRecord[];
  evals: EvalRecord[];
  /** null until the dataset has been read */
  data: DataSummary | null;
  /** the command that starts the same run from a terminal */
  command: string;
};

export type PreviewRequest = {
  model_id: string;
  dataset: string;
  /** marks the text beyond this many tokens as truncated */
  max_length?: number | null;
  /** examples to render (5 when absent, at most 50) */
  count?: number | null;
};

export type FileFormat = 'jsonl' | 'json_array' | 'csv' | 'tsv' | 'parquet';
export type RowFormat = 'alpaca' | 'share_gpt' | 'chat_ml' | 'prompt_response';
/** what a problem's number counts: text lines (JSONL, CSV) or rows (Parquet, JSON arrays) */
export type RowUnit = 'line' | 'row';
export type RowProblem = { number: number; unit: RowUnit; reason: string };

export type LoadReport = {
  path: string;
  format: { file: FileFormat; rows: RowFormat };
  rows_read: number;
  rows_kept: number;
  /** every skipped row, in file order */
  problems: RowProblem[];
};

/** context: read, not trained; trained: what the model learns to say; truncated: beyond the maximum length */
export type SegmentKind = 'context' | 'trained' | 'truncated';
export type PreviewSegment = { text: string; kind: SegmentKind };

export type SkipReason =
  | { kind: 'longer_than_context'; tokens: number; first_trained: number; max_len: number }
  | { kind: 'no_trained_tokens' }
  | { kind: 'turn_not_found'; turn: number }
  | { kind: 'render'; message: string };

export type ExamplePreview = {
  id: string;
  /** the conversation as the chat template renders it; empty when skipped */
  segments: PreviewSegment[];
  tokens: number;
  trained_tokens: number;
  skipped: SkipReason | null;
};

export type DatasetPreview = { report: LoadReport; examples: ExamplePreview[] };

/** A dataset shipped with the studio, for a first run. */
export type DemoDataset = { name: string; path: string; bytes: number };

export const RUN_STATES: readonly RunState[] = ['queued', 'running', 'finished', 'cancelled', 'failed', 'interrupted'];
export const LORA_TARGETS: readonly LoraTarget[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
export const PRESETS: readonly Preset[] = ['quick', 'balanced', 'thorough'];

export function isRunActive(state: RunState): boolean {
  return state === 'queued' || state === 'running';
}

/** Runs that can be trained further from their last checkpoint. */
export function canResume(state: RunState): boolean {
  return state === 'cancelled' || state === 'failed' || state === 'interrupted';
}

/** Runs whose adapter can answer in the chat. */
export function canChatWith(run: Pick<RunSummary, 'state' | 'adapter'>): boolean {
  return run.adapter !== null && (run.state === 'finished' || run.state === 'cancelled');
}

/** Runs whose adapter attribution can score: finished, or cancelled with an adapter. */
export function canAttribute(run: Pick<RunSummary, 'state' | 'adapter'>): boolean {
  return run.adapter !== null && (run.state === 'finished' || run.state === 'cancelled');
}

/** trainer's `TrainConfig::default()`. */
export const DEFAULT_TRAIN_CONFIG: Readonly<TrainConfig> = Object.freeze({
  method: 'qlora',
  lora: { rank: 16, alpha: 32, dropout: 0.05, rslora: false, targets: [...LORA_TARGETS] },
  learning_rate: 2e-4,
  weight_decay: 0.01,
  schedule: 'cosine',
  warmup_steps: 5,
  epochs: 1,
  max_steps: null,
  batch_size: 1,
  grad_accum: 4,
  max_grad_norm: 1,
  seed: 42,
  eval_every: 20,
  checkpoint_every: 20,
  keep_checkpoints: 2,
  gradient_checkpointing: false,
  backend: null,
  max_length: 512,
  packing: false,
  precision: 'auto',
  eval_fraction: 0.1,
} satisfies TrainConfig);

/** A fresh copy of the preset's settings (studio's `Preset::config`): QLoRA on all seven projections. */
export function presetConfig(preset: Preset): TrainConfig {
  const table: Record<Preset, [rank: number, epochs: number, learningRate: number, gradAccum: number]> = {
    quick: [8, 1, 2e-4, 2],
    balanced: [16, 2, 2e-4, 4],
    thorough: [32, 3, 1e-4, 8],
  };
  const [rank, epochs, learning_rate, grad_accum] = table[preset];
  const base = DEFAULT_TRAIN_CONFIG;
  return {
    ...base,
    lora: { ...base.lora, rank, alpha: 2 * rank, targets: [...base.lora.targets] },
    epochs,
    learning_rate,
    grad_accum,
  };
}

// Datanets (community datasets on a hub) and the datasets built from them.

/** How a Datanet's rows are shaped: alpaca-style instruction rows, or chat messages. */
export type RowSchema = 'instruction' | 'messages';

export type Shard = { path: string; rows: number; bytes: number; sha256: string };
export type Contributor = { address: string; rows: number };

/** A Datanet's `datanet.json`. */
export type Manifest = {
  schema_version: number;
  /** "owner/name" */
  id: string;
  name: string;
  domain: string;
  description: string;
  license: string;
  /** where the rows came from */
  source: string;
  row_schema: RowSchema;
  shards: Shard[];
  contributors: Contributor[];
  /** the Merkle root over the contribution ids */
  contributions_root: string;
};

/** A Datanet on the hub, as a search lists it. */
export type DatanetListing = {
  id: string;
  sha: string;
  tags: string[];
  description: string | null;
  license: string | null;
  last_modified: string | null;
  /** it is in this workspace already */
  pulled: boolean;
};

/** A Datanet's page on the hub. */
export type DatanetCard = { id: string; revision: string; manifest: Manifest; readme: string | null; pulled: boolean };

/** A Datanet in this workspace: pulled from the hub, or imported from a file (`local/<name>`). */
export type LocalDatanet = {
  id: string;
  name: string;
  domain: string;
  license: string;
  revision: string;
  rows: number;
  contributors: number;
  pulled_at: string;
  origin: 'hub' | 'import';
};

/** One turn of a conversation row. */
export type Message = { role: string; content: string };

/** A row's text: an instruction row, or a conversation. */
export type Content = { instruction: string; input: string; output: string } | { messages: Message[] };

export type LabelStatus = 'accepted' | 'rejected';

/** A Datanet row with its labels and edits, as the curation table shows it. */
export type CuratedRow = {
  contribution_id: string;
  /** the contributor's address */
  contributor: string;
  created_at: string;
  license: string;
  /** the current text: the latest edit, or the contributor's */
  content: Content;
  /** the contributor's text when edited; null when not */
  original: Content | null;
  /** 0 = original */
  version: number;
  status: LabelStatus | null;
  /** 1..5 */
  rating: number | null;
  tags: string[];
  /** characters */
  length: number;
  pii: ('email' | 'phone')[];
  /** set after a duplicates scan: the row this one repeats */
  duplicate_of: string | null;
};

export type RowFlag = 'pii' | 'duplicate' | 'edited';
export type RowSort = 'position' | 'length' | 'rating' | 'contributor' | 'created_at';
export type StatusFilter = LabelStatus | 'unlabeled';

/** Which rows, in which order. Absent fields do not filter. */
export type RowQuery = {
  offset?: number;
  limit?: number;
  search?: string;
  contributor?: string;
  status?: StatusFilter;
  tag?: string;
  min_len?: number;
  max_len?: number;
  flag?: RowFlag;
  sort?: RowSort;
  desc?: boolean;
};

export type RowPage = { total: number; offset: number; rows: CuratedRow[] };

/** Absent fields stay as they are; null clears. */
export type LabelUpdate = { status?: LabelStatus | null; rating?: number | null; tags?: string[] };

export type Bin = { start: number; end: number; count: number };
export type LengthStats = { count: number; min: number; max: number; mean: number; median: number; p95: number; histogram: Bin[] };

export type DatanetStats = {
  rows: number;
  accepted: number;
  rejected: number;
  unlabeled: number;
  edited: number;
  pii_rows: number;
  duplicate_rows: number;
  length: LengthStats;
  contributors: Contributor[];
};

export type DuplicateScan = {
  threshold: number;
  /** contribution ids, the first of each group being the one kept */
  groups: string[][];
  exact_groups: number;
  near_groups: number;
  /** rows marked rejected by this scan */
  rejected: number;
};

/** The rows of one Datanet that go into a dataset. */
export type DatasetSource = { datanet: string; statuses: StatusFilter[]; search?: string | null; tag?: string | null };

export type NewDataset = {
  name: string;
  sources: DatasetSource[];
  /** local JSONL/CSV/Parquet paths */
  files: string[];
  eval_fraction: number;
  seed: number;
};

export type DatasetSummary = {
  name: string;
  rows: number;
  eval_rows: number;
  contributors: number;
  created_at: string;
  /** the JSONL the trainer reads */
  path: string;
  sources: { datanet: string; revision: string; rows: number }[];
};

export type DatasetRow = {
  contribution_id: string;
  contributor: string;
  /** null for rows from a local file */
  datanet: string | null;
  split: 'train' | 'eval';
  content: Content;
};

export type DatasetPage = { total: number; offset: number; rows: DatasetRow[] };

export const LABEL_STATUSES: readonly LabelStatus[] = ['accepted', 'rejected'];
export const STATUS_FILTERS: readonly StatusFilter[] = ['accepted', 'rejected', 'unlabeled'];
export const ROW_FLAGS: readonly RowFlag[] = ['pii', 'duplicate', 'edited'];
export const ROW_SORTS: readonly RowSort[] = ['position', 'length', 'rating', 'contributor', 'created_at'];

export function isMessages(content: Content): content is { messages: Message[] } {
  return 'messages' in content;
}

// Attribution: which training rows and contributors shaped an adapter (docs/attribution.md)

/**
 * How a publication shares its rewards: `datainf` by the run's attribution report (measured
 * influence on the evaluation loss), `row-share` by the rows each contributor wrote.
 */
export type AttributionMethod = 'row-share' | 'datainf';

/** `POST /api/runs/{id}/attribution`. */
export type AttributionRequest = {
  /** null: the run's backend, else the one in Settings */
  backend?: BackendName | null;
};

/** `POST /api/runs/{id}/attribution/accuracy`. */
export type AccuracyRequest = {
  backend?: BackendName | null;
  /** random halves of the rows to retrain on (20 by default) */
  subsets: number;
  /** rows each retraining steps through; null: the run's rows × epochs, at least 20 */
  steps?: number | null;
};

/** What one contributor's rows did to the evaluation loss, summed. */
export type ContributorScore = {
  /** a 0x address, or `file:<name>` for rows of a local file without contributors */
  contributor: string;
  /** the sum of its rows' DataInf scores: how much they lowered the evaluation loss */
  score: number;
  /** its share of 10 000 basis points; 0 when harmful */
  bps: number;
  /** its rows raised the evaluation loss on the whole */
  harmful: boolean;
  rows: number;
};

/** One training row's influence. */
export type RowScore = {
  contribution_id: string;
  contributor: string;
  /** negative: the row raised the evaluation loss */
  score: number;
  /** the start of the conversation, "user: … assistant: …" */
  preview: string;
};

/** A run's attribution: every training row scored by its influence on the evaluation rows. */
export type AttributionReport = {
  run_id: string;
  /** "datainf" */
  method: string;
  /** the damping of each layer, mean ‖g‖² / 10 over the training rows */
  lambda: number[];
  train_rows: number;
  eval_rows: number;
  backend: BackendName;
  /** most helpful first */
  contributors: ContributorScore[];
  /** every training row, as trained */
  rows: RowScore[];
  computed_at: string;
};

/** How well one method's scores predicted what retraining measured. */
export type MethodAccuracy = {
  /** "datainf", "tracin" or "similarity" */
  method: string;
  /** linear datamodeling score: Spearman correlation over the random halves, in [-1, 1]; 0 is chance */
  lds: number;
  /** Spearman correlation with the leave-one-contributor-out losses; null with fewer than three contributors */
  loco_spearman: number | null;
  /** share of contributors whose credit has the sign of what leaving them out costs, 0..1 */
  loco_sign_agreement: number;
  /** the method's score of each training row, at the full run's adapter */
  scores: number[];
};

/** What retraining the adapter measured about the attribution methods. */
export type AccuracyReport = {
  methods: MethodAccuracy[];
  /** the evaluation loss trained on every row */
  full_eval_loss: number;
  /** the evaluation loss reached by each random half */
  subset_eval_losses: number[];
  /** [contributor, evaluation loss without its rows minus the full run's] */
  loco: [string, number][];
  subsets: number;
  /** optimiser steps of every retraining (one row a step) */
  steps: number;
  seed: number;
};

/** `GET /api/runs/{id}/attribution`: the last report and accuracy measurement, each null until computed. */
export type RunAttribution = { run_id: string; report: AttributionReport | null; accuracy: AccuracyReport | null };

// Wallet, chain, publishing, verifying and rewards

/** An account in the workspace's keystore; never its key. */
export type WalletAccount = {
  /** checksummed (EIP-55) */
  address: string;
  name: string | null;
  created: string | null;
};

/** `POST /api/wallet/new`. The passphrase encrypts the new key; it is not kept. */
export type NewAccount = { name?: string | null; passphrase: string };

/** `POST /api/wallet/import`: a private key (64 hex digits) or an English BIP-39 mnemonic, never both. */
export type KeyImport = {
  private_key?: string | null;
  mnemonic?: string | null;
  /** the mnemonic's account index on m/44'/60'/0'/0/i; 0 when absent */
  index?: number;
  name?: string | null;
  passphrase: string;
};

/** Which chain to use. An empty `rpc_url` is the local chain (anvil in the workspace). */
export type ChainSettings = {
  rpc_url: string;
  /** required for a remote chain */
  chain_id: number | null;
  registry: string | null;
  splitter: string | null;
};

export type ChainStatus = {
  /** the local chain (anvil) rather than a configured network */
  local: boolean;
  url: string | null;
  chain_id: number | null;
  /** whether the chain answered (for the local chain: whether it is running now) */
  reachable: boolean;
  block: number | null;
  registry: string | null;
  splitter: string | null;
  /** the local chain's state file */
  state_file: string | null;
  /** why it is not usable, when it is not */
  problem: string | null;
};

/** What publishing a run takes; `run_id` is taken from the address in the HTTP API. */
export type PublishRequest = {
  run_id?: string;
  /** the signing account, 0x… */
  publisher: string;
  /** owner/name on the hub; `<publisher's first 8 hex digits>/<run name>` when absent */
  repo?: string | null;
  /** the adapter's SPDX licence; the Datanets' when they share one */
  license?: string | null;
  /** the hub's address; MODELFACTORY_PUBLISH_HUB, else the workspace hub, when absent */
  hub?: string | null;
  /** how rewards are shared; when absent, by influence when the run's attribution credits someone, else by rows */
  attribution?: AttributionMethod | null;
};

export type PublishFile = { path: string; bytes: number; sha256: string };

export type PublicationState = 'signed' | 'uploaded' | 'registered';

/** A publication as the catalog records it, advanced one stage at a time. */
export type Publication = {
  manifest_hash: string;
  run_id: string;
  state: PublicationState;
  publisher: string;
  hub: string;
  repo: string;
  /** the hub's revision after the upload */
  commit: string | null;
  repo_url: string | null;
  chain_id: number;
  registry: string;
  tx_hash: string | null;
  block: number | null;
  /** the folder with the adapter, the signed manifest and the model card */
  folder: string;
  job_id: string | null;
  created_at: string;
  updated_at: string;
};

/** Everything the user confirms before publishing: what is signed, what is sent, where, and what it may cost. */
export type PublishPreview = {
  run_id: string;
  run_name: string;
  /** the lineage manifest exactly as it will be signed (without the signature) */
  manifest: Record<string, unknown>;
  /** keccak256 of its canonical JSON: what the signature covers and the registry records */
  manifest_hash: string;
  files: PublishFile[];
  hub: string;
  repo: string;
  chain_id: number;
  chain_url: string;
  registry: string;
  /** how the shares were computed */
  attribution_method: AttributionMethod;
  /** [contributor address, share in basis points (of 10 000)] */
  shares: [string, number][];
  /** checksummed addresses of contributors whose rows raised the evaluation loss (`datainf` only): no share */
  harmful: string[];
  /** rows from local files rather than a Datanet: trained on, credited to nobody */
  uncredited_rows: number;
  gas_estimate: number | null;
  /** the most the registration may cost, in wei (a decimal string) */
  max_cost_wei: string | null;
  /** why there is no estimate (e.g. too little ETH for gas) */
  gas_problem: string | null;
  /** an earlier publication of this run, if any */
  publication: Publication | null;
};

/** What to verify: an adapter folder, or a repository id (owner/name) on a hub. */
export type VerifyRequest = {
  target: string;
  /** the hub of a repository id; the publish hub when absent */
  hub?: string | null;
  /** contribution ids to prove members of their Datanet's contributions root */
  contributions?: string[];
  /** skip the on-chain check */
  skip_chain?: boolean;
};

export type VerifyCheck = {
  /** a file name, a manifest field, `signature`, `registry`, … */
  subject: string;
  ok: boolean;
  detail: string;
};

export type VerifyReport = {
  target: string;
  /** every check passed */
  ok: boolean;
  manifest_hash: string | null;
  publisher: string | null;
  checks: VerifyCheck[];
};

/** `POST /api/rewards/pay`. */
export type PaymentRequest = {
  /** 0x… manifest hash of a registered adapter */
  manifest_hash: string;
  /** wei, or ETH with an `eth` suffix ("0.5eth") */
  amount: string;
  /** the paying account */
  from: string;
  passphrase: string;
};

/** Amounts are wei as decimal strings: they exceed JSON's exact integers. */
export type Payment = {
  manifest_hash: string;
  payer: string;
  amount_wei: string;
  tx_hash: string;
  block: number;
  /** [contributor, credit in wei] */
  split: [string, string][];
};

export type RewardBalance = { address: string; balance_wei: string; owed_wei: string };

export type WithdrawResult = { address: string; amount_wei: string; tx_hash: string; block: number };

/** Runs whose adapter can be published: finished, or cancelled with an adapter. */
export function canPublish(run: Pick<RunSummary, 'state' | 'adapter'>): boolean {
  return (run.state === 'finished' || run.state === 'cancelled') && run.adapter !== null;
}
