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

export type Settings = { hub_endpoint: string; default_backend: DefaultBackend };

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
  backend: BackendName;
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

export type ConversationSummary = {
  id: string;
  /** "New conversation" until the first answer; then the first question */
  title: string;
  model_id: string;
  /** questions and answers; the system prompt is not counted */
  message_count: number;
  created_at: string;
  updated_at: string;
};

export type Conversation = {
  id: string;
  title: string;
  model_id: string;
  sampling: SamplingParams;
  created_at: string;
  updated_at: string;
  messages: StoredMessage[];
};

export type NewConversation = {
  model_id: string;
  title?: string | null;
  /** a system prompt, stored as the first message */
  system?: string | null;
  sampling?: SamplingParams | null;
};

/** Absent fields stay as they are. */
export type ConversationUpdate = { title?: string | null; model_id?: string | null; sampling?: SamplingParams | null };

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
