import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import {
  isActiveState,
  type AccuracyReport,
  type AttributionReport,
  type JobInfo,
  type RowScore,
  type RunAttribution,
} from '../api/types';
import { eventManager, type BaseEventManager, type Events } from '../events';
import { jobsManager, type JobsManager } from './jobs.svelte';

function time(value: string): number {
  const t = Date.parse(value);
  return Number.isNaN(t) ? 0 : t;
}

/** The two computations: the attribution itself, and the measurement of its accuracy. */
export type AttributionJob = 'attribution' | 'accuracy';

/** The studio's job kinds for each (docs/api.md). */
export const ATTRIBUTION_JOB_KINDS: Readonly<Record<AttributionJob, string>> = {
  attribution: 'attribution',
  accuracy: 'attribution-accuracy',
};

/** Random halves the accuracy measurement retrains on: with fewer the LDS means little. */
export const ACCURACY_SUBSETS = 20;

/**
 * The title the studio gives a run's job (studio/src/attribution.rs), to find one started
 * elsewhere (the CLI, another window) that still runs.
 */
export function attributionJobTitle(job: AttributionJob, runName: string): string {
  return job === 'attribution' ? `Attribution of ${runName}` : `Attribution accuracy of ${runName}`;
}

/** The plain name of an attribution method. */
export function methodName(method: string): string {
  const names: Record<string, string> = { datainf: 'DataInf', tracin: 'TracIn', similarity: 'Representation similarity' };
  return names[method] ?? method;
}

/** A contributor as people read it: a local file's rows, or an address. */
export function contributorLabel(contributor: string): { file: string | null; text: string } {
  if (contributor.startsWith('file:')) {
    const file = contributor.slice('file:'.length);
    return { file, text: `local file ${file}` };
  }
  return { file: null, text: contributor };
}

/** The rows that raised the evaluation loss, most harmful first. */
export function harmfulRows(report: AttributionReport): RowScore[] {
  return report.rows.filter((r) => r.score < 0).sort((a, b) => a.score - b.score);
}

/**
 * What leaving a contributor's rows out cost when the adapter was retrained: the evaluation
 * loss without them minus the full run's (positive: they helped); null when not measured.
 */
export function leaveOutCost(accuracy: AccuracyReport | null, contributor: string): number | null {
  const found = accuracy?.loco.find(([c]) => c.toLowerCase() === contributor.toLowerCase());
  return found ? found[1] : null;
}

/**
 * The attribution of the run open in the Fine-tune screen: its last report and accuracy
 * measurement, and the jobs that compute them as their events arrive. Reports live in the
 * studio (`runs/<id>/attribution.json`); this view reloads them when a job ends.
 */
export class AttributionManager {
  #runId = $state<string | null>(null);
  #runName = $state<string | null>(null);
  #data = $state<RunAttribution | null>(null);
  #loaded = $state(false);
  #error = $state<ApiException | null>(null);

  /** The job of each computation started from this page for the open run. */
  #started = $state<Record<AttributionJob, string | null>>({ attribution: null, accuracy: null });
  #starting = $state<AttributionJob | null>(null);
  #startError = $state<ApiException | null>(null);

  #client: ApiClient | null = null;
  #stops: (() => void)[] = [];
  /** Bumped by each load, so that a slower, older load does not win. */
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
  /** The last report; null until computed (or while it loads). */
  get report(): AttributionReport | null {
    return this.#data?.report ?? null;
  }
  /** The last accuracy measurement; null until measured. */
  get accuracy(): AccuracyReport | null {
    return this.#data?.accuracy ?? null;
  }
  /** The studio has answered for the open run (so a null report means none was computed). */
  get loaded(): boolean {
    return this.#loaded;
  }
  get error(): ApiException | null {
    return this.#error;
  }
  /** The computation whose job is being asked for (before the studio answers). */
  get starting(): AttributionJob | null {
    return this.#starting;
  }
  get startError(): ApiException | null {
    return this.#startError;
  }

  /** The run's job of a computation: the one started here, else one the studio runs for the run. */
  job(which: AttributionJob): JobInfo | undefined {
    const id = this.#started[which];
    if (id) return this.#jobs.get(id);
    const name = this.#runName;
    if (name === null) return undefined;
    return this.#jobs.active.find((j) => j.kind === ATTRIBUTION_JOB_KINDS[which] && j.title === attributionJobTitle(which, name));
  }

  /** The computation's job is queued or running. */
  running(which: AttributionJob): boolean {
    const job = this.job(which);
    return job !== undefined && isActiveState(job.state);
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
    this.#stops = [
      this.#bus.on('job-finished', (job) => this.#finished(job)),
      // events may have been lost: the stored reports are the truth
      this.#bus.on('jobs-resynced', () => void this.load()),
    ];
  }

  disconnect(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
    this.#client = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  /** Opens a run's attribution: its stored reports, and its jobs as they run. */
  async open(runId: string, runName: string): Promise<void> {
    if (this.#runId !== runId) {
      this.close();
      this.#runId = runId;
      this.#runName = runName;
      await this.load();
    } else {
      this.#runName = runName;
    }
  }

  close(): void {
    this.#generation++;
    this.#runId = null;
    this.#runName = null;
    this.#data = null;
    this.#loaded = false;
    this.#error = null;
    this.#started = { attribution: null, accuracy: null };
    this.#starting = null;
    this.#startError = null;
  }

  /** Loads the open run's last report and accuracy measurement. */
  async load(): Promise<void> {
    const runId = this.#runId;
    if (!runId) return;
    const generation = ++this.#generation;
    try {
      const data = await this.#need().runAttribution(runId);
      if (generation !== this.#generation) return;
      this.#data = data;
      this.#error = null;
    } catch (e) {
      if (generation !== this.#generation) return;
      this.#error = toApiException(e);
    } finally {
      if (generation === this.#generation) this.#loaded = true;
    }
  }

  /** Starts computing the run's attribution; the previous report stays until the new one is complete. */
  compute(): Promise<JobInfo | null> {
    return this.#start('attribution', (client, runId) => client.startAttribution(runId, {}));
  }

  /** Starts measuring the accuracy of the attribution methods by retraining the adapter. */
  measure(): Promise<JobInfo | null> {
    return this.#start('accuracy', (client, runId) => client.startAttributionAccuracy(runId, { subsets: ACCURACY_SUBSETS }));
  }

  clearStartError(): void {
    this.#startError = null;
  }

  async #start(which: AttributionJob, call: (client: ApiClient, runId: string) => Promise<JobInfo>): Promise<JobInfo | null> {
    const runId = this.#runId;
    if (!runId || this.#starting !== null || this.running(which)) return null;
    this.#starting = which;
    this.#startError = null;
    try {
      const job = await call(this.#need(), runId);
      // its first events may have come before the answer: keep the newer of the two
      const known = this.#jobs.get(job.id);
      if (!known || time(known.updated_at) <= time(job.updated_at)) this.#jobs.track(job);
      if (this.#runId === runId) this.#started = { ...this.#started, [which]: job.id };
      return job;
    } catch (e) {
      if (this.#runId === runId) this.#startError = toApiException(e);
      return null;
    } finally {
      this.#starting = null;
    }
  }

  #finished(job: JobInfo): void {
    const ours = (Object.keys(ATTRIBUTION_JOB_KINDS) as AttributionJob[]).some(
      (which) =>
        this.#started[which] === job.id ||
        (this.#runName !== null && job.kind === ATTRIBUTION_JOB_KINDS[which] && job.title === attributionJobTitle(which, this.#runName)),
    );
    // the new report (or, after a cancel, the previous one) is in the studio now
    if (ours) void this.load();
  }
}

export const attributionManager = new AttributionManager();
