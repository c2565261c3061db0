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
  /** Datanets on the configured hub whose id, description or tags match `search` ('' lists them all). */
  searchHub(search: string): Promise<DatanetListing[]>;
  /** A hub Datanet's manifest and README; `id` is "owner/name". */
  hubCard(id: string): Promise<DatanetCard>;
  /**
   * Downloads a Datanet's shards into the workspace as a background job (`kind: "pull-datanet"`);
   * its events carry `fraction`, `message` and the figures `bytes` and `bytes_total`.
   */
  pullDatanet(id: string): Promise<JobInfo>;
  /** The Datanets in this workspace, pulled or imported. */
  listDatanets(): Promise<LocalDatanet[]>;
  /** Makes a local JSONL, CSV or Parquet file a Datanet `local/<name>`. */
  importDatanet(path: string, name: string): Promise<LocalDatanet>;
  /** One page of a Datanet's rows with their labels, filtered and sorted. */
  datanetRows(id: string, query: RowQuery): Promise<RowPage>;
  /** Sets or clears a row's status, rating or tags. */
  labelRow(id: string, contributionId: string, update: LabelUpdate): Promise<CuratedRow>;
  /** Stores a new version of a row's text; the contributor's text is kept. */
  editRow(id: string, contributionId: string, content: Content): Promise<CuratedRow>;
  /** Label counts, lengths and contributors of a Datanet. */
  datanetStats(id: string): Promise<DatanetStats>;
  /** Groups exact and near-duplicate rows; `reject` marks every row but the first of each group rejected. */
  scanDuplicates(id: string, threshold: number, reject: boolean): Promise<DuplicateScan>;
  /** The datasets built in this workspace. */
  listDatasets(): Promise<DatasetSummary[]>;
  /** Builds a training set (a JSONL the trainer reads) from Datanet rows and local files. */
  createDataset(dataset: NewDataset): Promise<DatasetSummary>;
  /** One page of a built dataset's rows, each with the contribution it came from. */
  datasetRows(name: string, offset: number, limit: number): Promise<DatasetPage>;
  /** Deletes a built dataset and its file. */
  deleteDataset(name: string): Promise<void>;
  /** The accounts in the workspace's keystore (no passphrase needed). */
  walletAccounts(): Promise<WalletAccount[]>;
  /**
   * Creates an account with a new random key, encrypted with the passphrase. Over HTTP this
   * needs the server's token even on loopback; the passphrase is not kept anywhere.
   */
  createAccount(request: NewAccount): Promise<WalletAccount>;
  /** Imports a private key or a mnemonic's account (needs the server's token over HTTP). */
  importAccount(request: KeyImport): Promise<WalletAccount>;
  /** Which chain is configured, whether it answers, and where the contracts are. */
  chainStatus(): Promise<ChainStatus>;
  /** Starts the local chain (or reaches the configured one) and deploys the contracts when needed. */
  chainUp(): Promise<ChainStatus>;
  getChainSettings(): Promise<ChainSettings>;
  /** Saves the chain settings after checking a remote chain's id and contracts; nothing is saved otherwise. */
  putChainSettings(settings: ChainSettings): Promise<ChainSettings>;
  /** A run's last attribution report and accuracy measurement, each null until computed. */
  runAttribution(runId: string): Promise<RunAttribution>;
  /**
   * Scores every training row of a run by its influence on the evaluation rows, as a background
   * job (`kind: "attribution"`; its events say `gradients done/total`). Cancelling it keeps the
   * previous report.
   */
  startAttribution(runId: string, request: AttributionRequest): Promise<JobInfo>;
  /**
   * Measures how far each attribution method can be trusted by retraining the adapter on
   * `request.subsets` random halves of the rows and without each contributor, as a background
   * job (`kind: "attribution-accuracy"`; its events say `trainings done/total`). Slow: minutes on
   * a tiny model, much longer on the default one.
   */
  startAttributionAccuracy(runId: string, request: AccuracyRequest): Promise<JobInfo>;
  /** What publishing `request.run_id` would sign, send and cost. Nothing is signed. */
  publishPreview(request: PublishRequest & { run_id: string }): Promise<PublishPreview>;
  /**
   * Signs the manifest and starts the publish job (`kind: "publish"`): upload to the hub, then
   * register on chain. Needs the server's token over HTTP; the passphrase is not kept.
   */
  publish(request: PublishRequest & { run_id: string }, passphrase: string): Promise<JobInfo>;
  /** The run's latest publication, or null when it was never published. */
  publication(runId: string): Promise<Publication | null>;
  /** Checks a published adapter (a folder or a hub repository): files, signature, registry, contributions. */
  verify(request: VerifyRequest): Promise<VerifyReport>;
  /** Pays into a registered adapter; the splitter credits its contributors (needs the token over HTTP). */
  rewardsPay(request: PaymentRequest): Promise<Payment>;
  /** An account's balance and what the splitter owes it. */
  rewardsBalance(address: string): Promise<RewardBalance>;
  /** Withdraws everything the splitter owes an account (needs the token over HTTP). */
  rewardsWithdraw(address: string, passphrase: string): Promise<WithdrawResult>;
  /** Job progress as it happens. Returns a function that stops the subscription. */
  subscribe(onEvent: (event: JobEvent) => void, options?: SubscribeOptions): Unsubscribe;
}
