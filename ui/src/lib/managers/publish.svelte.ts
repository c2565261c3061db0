import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import {
  canPublish,
  isActiveState,
  type AttributionMethod,
  type JobInfo,
  type JobState,
  type Publication,
  type PublishPreview,
  type PublishRequest,
  type RunSummary,
  type WalletAccount,
} from '../api/types';
import { eventManager, type BaseEventManager, type Events } from '../events';
import { jobsManager, type JobsManager } from './jobs.svelte';

function time(value: string): number {
  const t = Date.parse(value);
  return Number.isNaN(t) ? 0 : t;
}

/** What the publish job said last. */
export type PublishProgress = { state: JobState; fraction: number; message: string; error: string | null };

/** Wei (a decimal string) as ETH, with up to `digits` decimals: "0.000123 ETH". */
export function formatWei(wei: string | null | undefined, digits = 6): string {
  if (wei === null || wei === undefined || !/^\d+$/.test(wei)) return '—';
  const padded = wei.padStart(19, '0');
  const whole = padded.slice(0, -18).replace(/^0+(?=\d)/, '');
  const frac = padded.slice(-18, -18 + digits).replace(/0+$/, '');
  if (frac === '' && whole === '0' && wei !== '0') return `< 0.${'0'.repeat(digits - 1)}1 ETH`;
  return `${whole}${frac ? `.${frac}` : ''} ETH`;
}

/** How a preview's shares were computed, in words. */
export function attributionMethodText(method: AttributionMethod): string {
  return method === 'datainf' ? 'by measured influence (DataInf)' : 'by rows written';
}

/** Basis points (of 10 000) as a percentage: 2500 → "25%", 3333 → "33.33%". */
export function formatBps(bps: number): string {
  return `${Number((bps / 100).toFixed(2))}%`;
}

/** The `modelfactory publish` command for a request (the passphrase is read from stdin). */
export function publishCommand(request: PublishRequest & { run_id: string }, dryRun = false): string {
  const parts = ['modelfactory', 'publish', request.run_id || 'RUN', '--address', request.publisher || 'ADDRESS'];
  if (request.repo) parts.push('--repo', request.repo);
  if (request.license) parts.push('--license', request.license);
  if (request.hub) parts.push('--hub', request.hub);
  if (request.attribution) parts.push('--attribution', request.attribution);
  if (dryRun) parts.push('--dry-run');
  return parts.map((p) => (/^[\w./:@=-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/**
 * The Publish screen's state: which run, which account, where to; the preview of exactly what
 * will be signed and sent; the publish job as its events arrive; and the publication it left.
 * The passphrase is an argument of `publish` and goes straight to the studio: it is never kept.
 */
export class PublishManager {
  #runId = $state<string | null>(null);
  #publisher = $state<string | null>(null);
  #repo = $state('');
  #license = $state('');
  /** How the rewards are shared; null leaves it to the studio (influence when the run's attribution credits someone). */
  #attribution = $state<AttributionMethod | null>(null);

  #preview = $state<PublishPreview | null>(null);
  /** What the preview was made for; another key means it is stale. */
  #previewKey = $state<string | null>(null);
  #previewing = $state(false);
  #previewError = $state<ApiException | null>(null);

  #publishing = $state(false);
  #publishError = $state<ApiException | null>(null);
  #jobId = $state<string | null>(null);
  #progress = $state<PublishProgress | null>(null);

  #publication = $state<Publication | null>(null);
  #publicationError = $state<ApiException | null>(null);

  #client: ApiClient | null = null;
  #stops: (() => void)[] = [];
  /** Bumped by each publication load, so that a slower, older load does not win. */
  #generation = 0;
  readonly #jobs: JobsManager;
  readonly #bus: BaseEventManager<Events>;

  constructor(jobs: JobsManager = jobsManager, bus: BaseEventManager<Events> = eventManager) {
    this.#jobs = jobs;
    this.#bus = bus;
  }

  get runId(): string | null {
    return this.#runId;
  }
  get publisher(): string | null {
    return this.#publisher;
  }
  get repo(): string {
    return this.#repo;
  }
  get license(): string {
    return this.#license;
  }
  get attribution(): AttributionMethod | null {
    return this.#attribution;
  }
  /** The request the form makes now; null until a run and an account are chosen. */
  get request(): (PublishRequest & { run_id: string }) | null {
    if (!this.#runId || !this.#publisher) return null;
    return {
      run_id: this.#runId,
      publisher: this.#publisher,
      repo: this.#repo.trim() || null,
      license: this.#license.trim() || null,
      // absent: the studio's default
      ...(this.#attribution ? { attribution: this.#attribution } : {}),
    };
  }
  get preview(): PublishPreview | null {
    return this.#preview;
  }
  /** The preview was made for another run, account, repository, licence or way of sharing than the form's now. */
  get previewStale(): boolean {
    return this.#preview !== null && this.#previewKey !== this.#key();
  }
  get previewing(): boolean {
    return this.#previewing;
  }
  get previewError(): ApiException | null {
    return this.#previewError;
  }
  get publishing(): boolean {
    return this.#publishing;
  }
  get publishError(): ApiException | null {
    return this.#publishError;
  }
  /** The publish job followed now (started here, or one still running for the chosen run). */
  get jobId(): string | null {
    return this.#jobId;
  }
  get progress(): PublishProgress | null {
    return this.#progress;
  }
  /** The publish job is queued or running. */
  get active(): boolean {
    return this.#progress !== null && isActiveState(this.#progress.state);
  }
  /** The chosen run's latest publication, or null when it was never published. */
  get publication(): Publication | null {
    return this.#publication;
  }
  get publicationError(): ApiException | null {
    return this.#publicationError;
  }
  /** Why "Sign and publish" cannot be pressed; null when it can. */
  get publishProblem(): string | null {
    if (!this.request) return 'Choose a run and an account';
    if (!this.#preview) return 'Preview first: it shows what will be signed and sent';
    if (this.previewStale) return 'The preview is out of date: preview again';
    if (this.active) return 'The publish job is running';
    const done = this.#publication;
    if (done && done.state === 'registered' && done.manifest_hash === this.#preview.manifest_hash) return 'This manifest is published and registered';
    return null;
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
    this.#stops = [
      this.#bus.on('job-event', (event) => {
        if (event.job_id !== this.#jobId) return;
        this.#progress = {
          state: event.state,
          fraction: event.fraction,
          message: event.message,
          error: this.#progress?.error ?? null,
        };
      }),
      this.#bus.on('job-finished', (job) => this.#finished(job)),
      // events may have been lost: the job's record and the catalog are the truth
      this.#bus.on('jobs-resynced', () => void this.#resync()),
    ];
  }

  disconnect(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
    this.#client = null;
  }

  /** Back to an empty form. */
  reset(): void {
    this.setRun(null);
    this.#publisher = null;
    this.#repo = '';
    this.#license = '';
    this.#attribution = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  #key(): string {
    return JSON.stringify(this.request);
  }

  /** Chooses the newest publishable run when none is chosen, or when the chosen one is gone. */
  adoptRuns(runs: RunSummary[]): void {
    if (this.#runId !== null && runs.some((r) => r.id === this.#runId && canPublish(r))) return;
    const first = runs.find(canPublish);
    if (first) this.setRun(first.id);
    else if (this.#runId !== null && !runs.some((r) => r.id === this.#runId)) this.setRun(null);
  }

  /** Chooses the first account when none is chosen, or when the chosen one is gone. */
  adoptAccounts(accounts: WalletAccount[]): void {
    if (this.#publisher !== null && accounts.some((a) => a.address === this.#publisher)) return;
    this.#publisher = accounts[0]?.address ?? null;
  }

  /** Chooses a run: its earlier publication is loaded, and a publish job it has running is followed. */
  setRun(id: string | null): void {
    if (id === this.#runId) return;
    this.#runId = id;
    this.#preview = null;
    this.#previewKey = null;
    this.#previewError = null;
    this.#publishError = null;
    this.#jobId = null;
    this.#progress = null;
    this.#publication = null;
    this.#publicationError = null;
    if (id) void this.loadPublication();
  }
  setPublisher(address: string): void {
    this.#publisher = address || null;
  }
  setRepo(repo: string): void {
    this.#repo = repo;
  }
  setLicense(license: string): void {
    this.#license = license;
  }
  /** How the rewards are shared; null: as the studio decides. */
  setAttribution(method: AttributionMethod | null): void {
    this.#attribution = method;
  }

  /** Loads the chosen run's latest publication, and follows its job while it runs. */
  async loadPublication(): Promise<void> {
    const runId = this.#runId;
    if (!runId) return;
    const generation = ++this.#generation;
    try {
      const publication = await this.#need().publication(runId);
      if (generation !== this.#generation || runId !== this.#runId) return;
      this.#publication = publication;
      this.#publicationError = null;
      const jobId = publication?.job_id ?? null;
      if (jobId && this.#jobId === null) {
        const job = this.#jobs.get(jobId);
        if (job && isActiveState(job.state)) this.#follow(job);
      }
    } catch (e) {
      if (generation !== this.#generation) return;
      this.#publicationError = toApiException(e);
    }
  }

  /** Builds the manifest and asks what publishing would sign, send and cost. Nothing is signed. */
  async runPreview(): Promise<void> {
    const request = this.request;
    if (!request || this.#previewing) return;
    const key = this.#key();
    this.#previewing = true;
    this.#previewError = null;
    try {
      const preview = await this.#need().publishPreview(request);
      if (key !== this.#key()) return;
      this.#preview = preview;
      this.#previewKey = key;
      if (preview.publication) this.#publication = preview.publication;
    } catch (e) {
      this.#preview = null;
      this.#previewKey = null;
      this.#previewError = toApiException(e);
    } finally {
      this.#previewing = false;
    }
  }

  /**
   * Signs the previewed manifest and starts the publish job. The caller has asked the user to
   * confirm; the passphrase is passed on and not kept. Null when it could not start.
   */
  async publish(passphrase: string): Promise<JobInfo | null> {
    if (this.#publishing) return null;
    const problem = this.publishProblem;
    const request = this.request;
    if (problem || !request) {
      this.#publishError = new ApiException(problem ?? 'Choose a run and an account', null);
      return null;
    }
    if (!passphrase) {
      this.#publishError = new ApiException('Type the passphrase of the publishing account', null);
      return null;
    }
    this.#publishing = true;
    this.#publishError = null;
    try {
      const job = await this.#need().publish(request, passphrase);
      // its first events may have come before the answer: keep the newer of the two
      const known = this.#jobs.get(job.id);
      if (!known || time(known.updated_at) <= time(job.updated_at)) this.#jobs.track(job);
      this.#follow(this.#jobs.get(job.id) ?? job);
      return job;
    } catch (e) {
      this.#publishError = toApiException(e);
      return null;
    } finally {
      this.#publishing = false;
    }
  }

  clearPublishError(): void {
    this.#publishError = null;
  }

  #follow(job: JobInfo): void {
    this.#jobId = job.id;
    this.#progress = { state: job.state, fraction: job.fraction, message: job.message, error: job.error };
    // a job that ended before we learned of it
    if (!isActiveState(job.state)) this.#finished(job);
  }

  #finished(job: JobInfo): void {
    if (job.id !== this.#jobId) return;
    this.#progress = { state: job.state, fraction: job.fraction, message: job.message, error: job.error };
    // the publication's record (repository, transaction) is in the catalog now, as far as it got
    void this.loadPublication();
    if (job.state === 'failed' && job.error === null) void this.#reloadJob(job.id);
  }

  async #reloadJob(id: string): Promise<void> {
    try {
      const job = await this.#need().getJob(id);
      if (this.#jobId === id) this.#progress = { state: job.state, fraction: job.fraction, message: job.message, error: job.error };
    } catch {
      // the message stays; the error shows once the job list has it
    }
  }

  async #resync(): Promise<void> {
    const id = this.#jobId;
    if (id) {
      try {
        const job = await this.#need().getJob(id);
        if (this.#jobId !== id) return;
        const wasActive = this.active;
        this.#progress = { state: job.state, fraction: job.fraction, message: job.message, error: job.error };
        if (wasActive && !isActiveState(job.state)) this.#finished(job);
      } catch {
        // keep what we have
      }
    }
    await this.loadPublication();
  }
}

export const publishManager = new PublishManager();
