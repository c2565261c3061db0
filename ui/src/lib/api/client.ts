import type {
  AddModelResult,
  Conversation,
  ConversationSummary,
  ConversationUpdate,
  DatasetPreview,
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
} from './types';

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
  listConversations(): Promise<ConversationSummary[]>;
  createConversation(request: NewConversation): Promise<Conversation>;
  getConversation(id: string): Promise<Conversation>;
  updateConversation(id: string, update: ConversationUpdate): Promise<Conversation>;
  deleteConversation(id: string): Promise<void>;
  /**
   * Sends a question. `onToken` gets the answer's text piece by piece as it is generated; the
   * promise resolves with the stored answer, or rejects when the question is refused or the
   * answer fails (the conversation is then left as it was).
   */
  sendMessage(conversationId: string, request: SendMessage, onToken: (text: string) => void): Promise<SendResult>;
  /** Stops the answer being generated in a conversation; it is kept as far as it got. */
  stopAnswer(conversationId: string): Promise<StopResult>;
  /** Fine-tuning runs, newest first. */
  listRuns(): Promise<RunSummary[]>;
  /** Creates a run and starts training it as a background job (`kind: "train"`); progress arrives as job events. */
  startRun(run: NewRun): Promise<RunSummary>;
  /** A run with its settings, every step and evaluation so far, and its data summary. */
  getRun(id: string): Promise<RunDetail>;
  /** Deletes a run that is not training, with its checkpoints and adapter. */
  deleteRun(id: string): Promise<void>;
  /** Asks the run's job to stop; the best checkpoint becomes its adapter. */
  cancelRun(id: string): Promise<RunSummary>;
  /** Trains a cancelled, failed or interrupted run further from its last checkpoint, in a new job. */
  resumeRun(id: string): Promise<RunSummary>;
  /** The first rows of a dataset rendered with the model's chat template, trained spans marked. */
  previewDataset(request: PreviewRequest): Promise<DatasetPreview>;
  /** The datasets shipped with the studio. */
  demoDatasets(): Promise<DemoDataset[]>;
  /** Job progress as it happens. Returns a function that stops the subscription. */
  subscribe(onEvent: (event: JobEvent) => void, options?: SubscribeOptions): Unsubscribe;
}
