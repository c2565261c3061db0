import type { AddModelResult, DoctorReport, JobEvent, JobInfo, ModelSummary, Settings } from './types';

export type Unsubscribe = () => void;

export type SubscribeOptions = {
  /**
   * Called when events may have been missed (the stream reconnected after a break, or the
   * server reported `lagged`), so that callers can reload. Not called for the first connection.
   */
  onResync?: () => void;
};

/**
 * The studio API (docs/api.md), whatever the transport. Every method rejects with an
 * `ApiException` on failure.
 */
export interface ApiClient {
  readonly transport: 'tauri' | 'http';
  doctor(): Promise<DoctorReport>;
  listModels(): Promise<ModelSummary[]>;
  addModel(source: string): Promise<AddModelResult>;
  removeModel(id: string): Promise<void>;
  listJobs(): Promise<JobInfo[]>;
  getJob(id: string): Promise<JobInfo>;
  jobEvents(id: string): Promise<JobEvent[]>;
  cancelJob(id: string): Promise<JobInfo>;
  getSettings(): Promise<Settings>;
  putSettings(settings: Settings): Promise<Settings>;
  /** Job progress as it happens. Returns a function that stops the subscription. */
  subscribe(onEvent: (event: JobEvent) => void, options?: SubscribeOptions): Unsubscribe;
}
