import type {
  AddModelResult,
  Conversation,
  ConversationSummary,
  ConversationUpdate,
  DoctorReport,
  JobEvent,
  JobInfo,
  ModelSummary,
  NewConversation,
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
  /** Job progress as it happens. Returns a function that stops the subscription. */
  subscribe(onEvent: (event: JobEvent) => void, options?: SubscribeOptions): Unsubscribe;
}
