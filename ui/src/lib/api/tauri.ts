import { invoke as tauriInvoke } from '@tauri-apps/api/core';
import { listen as tauriListen } from '@tauri-apps/api/event';
import type { ApiClient, SubscribeOptions, Unsubscribe } from './client';
import { toApiException } from './errors';
import type {
  AccuracyRequest,
  AddModelResult,
  AttributionRequest,
  ChatToken,
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

export type InvokeFn = <T>(cmd: string, args?: Record<string, unknown>) => Promise<T>;
export type ListenFn = <T>(event: string, handler: (event: { payload: T }) => void) => Promise<() => void>;

/** The Tauri event that carries a `JobEvent` payload. */
export const JOB_EVENT = 'job-event';
/** The Tauri event that carries a `ChatToken` payload while an answer is generated. */
export const CHAT_TOKEN_EVENT = 'chat-token';

/**
 * Calls the desktop shell's Tauri commands (docs/api.md, "Tauri"). Command names are the Rust
 * snake_case names; argument keys are camelCase as Tauri expects from JavaScript.
 */
export class TauriTransport implements ApiClient {
  readonly transport = 'tauri' as const;
  readonly #invoke: InvokeFn;
  readonly #listen: ListenFn;

  constructor(invoke: InvokeFn = tauriInvoke, listen: ListenFn = tauriListen) {
    this.#invoke = invoke;
    this.#listen = listen;
  }

  async #call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
    try {
      return args === undefined ? await this.#invoke<T>(cmd) : await this.#invoke<T>(cmd, args);
    } catch (e) {
      throw toApiException(e);
    }
  }

  doctor(): Promise<DoctorReport> {
    return this.#call('doctor');
  }
  listModels(): Promise<ModelSummary[]> {
    return this.#call('list_models');
  }
  addModel(source: string): Promise<AddModelResult> {
    return this.#call('add_model', { source });
  }
  async removeModel(id: string): Promise<void> {
    await this.#call<unknown>('remove_model', { id });
  }
  listJobs(): Promise<JobInfo[]> {
    return this.#call('list_jobs');
  }
  getJob(id: string): Promise<JobInfo> {
    return this.#call('get_job', { id });
  }
  jobEvents(id: string): Promise<JobEvent[]> {
    return this.#call('job_events', { id });
  }
  cancelJob(id: string): Promise<JobInfo> {
    return this.#call('cancel_job', { id });
  }
  getSettings(): Promise<Settings> {
    return this.#call('get_settings');
  }
  putSettings(settings: Settings): Promise<Settings> {
    return this.#call('put_settings', { settings });
  }

  listConversations(): Promise<ConversationSummary[]> {
    return this.#call('list_conversations');
  }
  createConversation(request: NewConversation): Promise<Conversation> {
    return this.#call('create_conversation', { conversation: request });
  }
  getConversation(id: string): Promise<Conversation> {
    return this.#call('get_conversation', { id });
  }
  updateConversation(id: string, update: ConversationUpdate): Promise<Conversation> {
    return this.#call('update_conversation', { id, update });
  }
  async deleteConversation(id: string): Promise<void> {
    await this.#call<unknown>('delete_conversation', { id });
  }
  stopAnswer(conversationId: string): Promise<StopResult> {
    return this.#call('stop_answer', { id: conversationId });
  }

  listRuns(): Promise<RunSummary[]> {
    return this.#call('list_runs');
  }
  startRun(run: NewRun): Promise<RunSummary> {
    return this.#call('start_run', { run });
  }
  getRun(id: string): Promise<RunDetail> {
    return this.#call('get_run', { id });
  }
  async deleteRun(id: string): Promise<void> {
    await this.#call<unknown>('delete_run', { id });
  }
  cancelRun(id: string): Promise<RunSummary> {
    return this.#call('cancel_run', { id });
  }
  resumeRun(id: string): Promise<RunSummary> {
    return this.#call('resume_run', { id });
  }
  previewDataset(request: PreviewRequest): Promise<DatasetPreview> {
    return this.#call('preview_dataset', { request });
  }
  demoDatasets(): Promise<DemoDataset[]> {
    return this.#call('demo_datasets');
  }

  searchHub(search: string): Promise<DatanetListing[]> {
    return this.#call('search_hub', { search });
  }
  hubCard(id: string): Promise<DatanetCard> {
    return this.#call('hub_card', { id });
  }
  pullDatanet(id: string): Promise<JobInfo> {
    return this.#call('pull_datanet', { id });
  }
  listDatanets(): Promise<LocalDatanet[]> {
    return this.#call('list_datanets');
  }
  importDatanet(path: string, name: string): Promise<LocalDatanet> {
    return this.#call('import_datanet', { path, name });
  }
  datanetRows(id: string, query: RowQuery): Promise<RowPage> {
    return this.#call('datanet_rows', { id, query });
  }
  labelRow(id: string, contributionId: string, update: LabelUpdate): Promise<CuratedRow> {
    // the Rust parameter `contribution_id`, in Tauri's camelCase
    return this.#call('label_row', { id, contributionId, update });
  }
  editRow(id: string, contributionId: string, content: Content): Promise<CuratedRow> {
    return this.#call('edit_row', { id, contributionId, content });
  }
  datanetStats(id: string): Promise<DatanetStats> {
    return this.#call('datanet_stats', { id });
  }
  scanDuplicates(id: string, threshold: number, reject: boolean): Promise<DuplicateScan> {
    return this.#call('scan_duplicates', { id, threshold, reject });
  }
  listDatasets(): Promise<DatasetSummary[]> {
    return this.#call('list_datasets');
  }
  createDataset(dataset: NewDataset): Promise<DatasetSummary> {
    return this.#call('create_dataset', { dataset });
  }
  datasetRows(name: string, offset: number, limit: number): Promise<DatasetPage> {
    return this.#call('dataset_rows', { name, offset, limit });
  }
  async deleteDataset(name: string): Promise<void> {
    await this.#call<unknown>('delete_dataset', { name });
  }

  // The desktop app is its user: no token for the commands that unlock a key (the screens
  // still ask before anything is signed).
  walletAccounts(): Promise<WalletAccount[]> {
    return this.#call('wallet_accounts');
  }
  createAccount(request: NewAccount): Promise<WalletAccount> {
    return this.#call('create_account', { passphrase: request.passphrase, name: request.name ?? null });
  }
  importAccount(request: KeyImport): Promise<WalletAccount> {
    return this.#call('import_account', { request });
  }
  chainStatus(): Promise<ChainStatus> {
    return this.#call('chain_status');
  }
  chainUp(): Promise<ChainStatus> {
    return this.#call('chain_up');
  }
  getChainSettings(): Promise<ChainSettings> {
    return this.#call('get_chain_settings');
  }
  putChainSettings(settings: ChainSettings): Promise<ChainSettings> {
    return this.#call('put_chain_settings', { settings });
  }
  runAttribution(runId: string): Promise<RunAttribution> {
    return this.#call('run_attribution', { id: runId });
  }
  startAttribution(runId: string, request: AttributionRequest): Promise<JobInfo> {
    return this.#call('start_attribution', { id: runId, request });
  }
  startAttributionAccuracy(runId: string, request: AccuracyRequest): Promise<JobInfo> {
    return this.#call('start_attribution_accuracy', { id: runId, request });
  }
  publishPreview(request: PublishRequest & { run_id: string }): Promise<PublishPreview> {
    return this.#call('publish_preview', { request });
  }
  publish(request: PublishRequest & { run_id: string }, passphrase: string): Promise<JobInfo> {
    return this.#call('publish', { request, passphrase });
  }
  async publication(runId: string): Promise<Publication | null> {
    return (await this.#call<Publication | null | undefined>('run_publication', { id: runId })) ?? null;
  }
  verify(request: VerifyRequest): Promise<VerifyReport> {
    return this.#call('verify', { request });
  }
  rewardsPay(request: PaymentRequest): Promise<Payment> {
    return this.#call('rewards_pay', { request });
  }
  rewardsBalance(address: string): Promise<RewardBalance> {
    return this.#call('rewards_balance', { address });
  }
  rewardsWithdraw(address: string, passphrase: string): Promise<WithdrawResult> {
    return this.#call('rewards_withdraw', { address, passphrase });
  }

  /** Tokens arrive as `chat-token` events while the `send_message` command runs; it resolves with the answer. */
  async sendMessage(conversationId: string, request: SendMessage, onToken: (text: string) => void): Promise<SendResult> {
    let open = true;
    let unlisten: () => void;
    try {
      unlisten = await this.#listen<ChatToken>(CHAT_TOKEN_EVENT, (e) => {
        if (open && e.payload.conversation_id === conversationId) onToken(e.payload.text);
      });
    } catch (e) {
      throw toApiException(e);
    }
    try {
      return await this.#call<SendResult>('send_message', {
        id: conversationId,
        content: request.content,
        sampling: request.sampling ?? null,
      });
    } finally {
      open = false;
      unlisten();
    }
  }

  subscribe(onEvent: (event: JobEvent) => void, _options?: SubscribeOptions): Unsubscribe {
    // Tauri events do not drop while the app runs, so there is nothing to resync.
    let stopped = false;
    let unlisten: (() => void) | null = null;
    this.#listen<JobEvent>(JOB_EVENT, (e) => {
      if (!stopped) onEvent(e.payload);
    }).then(
      (fn) => {
        if (stopped) fn();
        else unlisten = fn;
      },
      (e: unknown) => console.error('ModelFactory: could not listen for job events', e),
    );
    return () => {
      stopped = true;
      unlisten?.();
      unlisten = null;
    };
  }
}
