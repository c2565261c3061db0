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
