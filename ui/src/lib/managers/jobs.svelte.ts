import type { ApiClient, Unsubscribe } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import { isActiveState, type JobEvent, type JobInfo } from '../api/types';
import { eventManager, type BaseEventManager, type Events } from '../events';

function placeholder(event: JobEvent): JobInfo {
  return {
    id: event.job_id,
    kind: 'job',
    title: `Job ${event.job_id}`,
    state: event.state,
    fraction: event.fraction,
    message: event.message,
    figures: { ...event.figures },
    error: null,
    created_at: event.at,
    updated_at: event.at,
  };
}

function time(value: string): number {
  const t = Date.parse(value);
  return Number.isNaN(t) ? 0 : t;
}

/**
 * The jobs the studio runs (pulls now; training and publishing later) and their progress,
 * kept current by the API's event stream. Jobs live in the studio, not here: this is a view
 * that can be rebuilt at any time with `refresh()`.
 */
export class JobsManager {
  /** Newest first, like `GET /api/jobs`. */
  #jobs = $state<JobInfo[]>([]);
  /** Jobs that finished while this page was open, in the order they finished; shown until dismissed. */
  #finishedHere = $state<string[]>([]);
  /** Jobs whose cancellation was asked for and not yet confirmed by a final state. */
  #cancelling = $state<string[]>([]);
  #error = $state<ApiException | null>(null);
  #loaded = $state(false);

  #active = $derived(this.#jobs.filter((j) => isActiveState(j.state)));
  #recent = $derived(
    this.#finishedHere
      .map((id) => this.#jobs.find((j) => j.id === id))
      .filter((j): j is JobInfo => j !== undefined && !isActiveState(j.state)),
  );

  /** Highest event sequence number applied per job; older or repeated events are ignored. */
  #lastSeq = new Map<string, number>();
  #client: ApiClient | null = null;
  #unsubscribe: Unsubscribe | null = null;
  readonly #bus: BaseEventManager<Events>;

  constructor(bus: BaseEventManager<Events> = eventManager) {
    this.#bus = bus;
  }

  get jobs(): JobInfo[] {
    return this.#jobs;
  }
  /** Queued and running jobs. */
  get active(): JobInfo[] {
    return this.#active;
  }
  /** Jobs that finished while the page was open and have not been dismissed. */
  get recent(): JobInfo[] {
    return this.#recent;
  }
  get error(): ApiException | null {
    return this.#error;
  }
  get loaded(): boolean {
    return this.#loaded;
  }

  get(id: string): JobInfo | undefined {
    return this.#jobs.find((j) => j.id === id);
  }

  isCancelling(id: string): boolean {
    return this.#cancelling.includes(id);
  }

  /** Starts following the client's event stream and loads the current list. */
  connect(client: ApiClient): Promise<void> {
    this.disconnect();
    this.#client = client;
    this.#unsubscribe = client.subscribe((event) => this.applyEvent(event), {
      onResync: () => {
        void this.refresh();
        this.#bus.emit('jobs-resynced');
      },
    });
    return this.refresh();
  }

  disconnect(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#client = null;
  }

  /** Reloads the job list; keeps a local copy when the event stream has already made it newer. */
  async refresh(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    try {
      const fetched = await client.listJobs();
      const merged = fetched.map((job) => {
        const local = this.get(job.id);
        return local && time(local.updated_at) > time(job.updated_at) ? local : job;
      });
      // jobs only known from events that the list does not have yet stay on top
      const extra = this.#jobs.filter((j) => !fetched.some((f) => f.id === j.id));
      for (const job of merged) this.#noteTransition(this.get(job.id), job);
      this.#jobs = [...extra, ...merged];
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    } finally {
      this.#loaded = true;
    }
  }

  /** Adds or replaces a job the UI learned about directly, e.g. the pull job `addModel` started. */
  track(job: JobInfo): void {
    this.#upsert(job, true);
  }

  /** Applies one event from the stream. Returns false when it was stale or a repeat. */
  applyEvent(event: JobEvent): boolean {
    const last = this.#lastSeq.get(event.job_id);
    if (last !== undefined && event.seq <= last) return false;
    this.#lastSeq.set(event.job_id, event.seq);

    const previous = this.get(event.job_id);
    const next: JobInfo = previous
      ? {
          ...previous,
          state: event.state,
          fraction: event.fraction,
          message: event.message,
          figures: { ...previous.figures, ...event.figures },
          updated_at: event.at,
        }
      : placeholder(event);
    this.#upsert(next, true);
    this.#bus.emit('job-event', event);

    // A job first seen through an event, or one that just failed, needs its full record
    // (title, kind, error); fetch it without blocking the stream.
    if (!previous || (event.state === 'failed' && next.error === null)) void this.#reload(event.job_id);
    return true;
  }

  /** Asks the studio to cancel a job. Throws an ApiException when it cannot. */
  async cancel(id: string): Promise<void> {
    const client = this.#client;
    if (!client) throw new ApiException('Not connected to the studio', null);
    if (!this.#cancelling.includes(id)) this.#cancelling = [...this.#cancelling, id];
    try {
      const job = await client.cancelJob(id);
      this.#upsert(job);
    } catch (e) {
      this.#cancelling = this.#cancelling.filter((x) => x !== id);
      throw toApiException(e);
    }
  }

  /** Hides a finished job from the indicator. */
  dismiss(id: string): void {
    this.#finishedHere = this.#finishedHere.filter((x) => x !== id);
  }

  async #reload(id: string): Promise<void> {
    const client = this.#client;
    if (!client) return;
    try {
      const job = await client.getJob(id);
      const local = this.get(id);
      // keep progress the stream delivered meanwhile, take the descriptive fields from the record
      this.#upsert(
        local && time(local.updated_at) > time(job.updated_at)
          ? { ...local, kind: job.kind, title: job.title, error: job.error ?? local.error, created_at: job.created_at }
          : job,
      );
    } catch {
      // the placeholder stays; the next refresh fills it in
    }
  }

  /**
   * `live`: the job comes from this session (an event, or a job the UI just started), so a job
   * first seen in a final state still counts as having finished now; jobs from a list reload do not.
   */
  #upsert(job: JobInfo, live = false): void {
    const index = this.#jobs.findIndex((j) => j.id === job.id);
    const previous = index >= 0 ? this.#jobs[index] : undefined;
    if (index >= 0) this.#jobs[index] = job;
    else this.#jobs = [job, ...this.#jobs];
    this.#noteTransition(previous, job, live);
  }

  #noteTransition(previous: JobInfo | undefined, job: JobInfo, live = false): void {
    if (isActiveState(job.state)) return;
    if (this.#cancelling.includes(job.id)) this.#cancelling = this.#cancelling.filter((x) => x !== job.id);
    const finishedNow = previous === undefined ? live : isActiveState(previous.state);
    if (!finishedNow) return;
    if (!this.#finishedHere.includes(job.id)) this.#finishedHere = [...this.#finishedHere, job.id];
    this.#bus.emit('job-finished', job);
  }
}

export const jobsManager = new JobsManager();
