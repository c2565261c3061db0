import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import {
  isActiveState,
  isRunActive,
  type EvalRecord,
  type JobEvent,
  type NewRun,
  type RunDetail,
  type RunSummary,
  type StepRecord,
} from '../api/types';
import { eventManager, type BaseEventManager, type Events } from '../events';

/** What the open run's job said last: "reading the dataset", "step 3 of 40", … */
export type RunProgress = { message: string; fraction: number; at: string };

/** How many recent job events are kept for a run whose detail is still loading. */
const RECENT_EVENTS = 500;

function num(figures: Record<string, number>, key: string): number {
  const v = figures[key];
  return typeof v === 'number' ? v : Number.NaN;
}

/**
 * The step a `train` job event reports, or null when it is not a step event. Events carry
 * `memory_bytes` for the record's `peak_memory_bytes`; figures an event lacks are NaN.
 */
export function stepFromFigures(figures: Record<string, number>): StepRecord | null {
  if (typeof figures.step !== 'number' || typeof figures.loss !== 'number') return null;
  return {
    step: figures.step,
    loss: figures.loss,
    learning_rate: num(figures, 'learning_rate'),
    grad_norm: num(figures, 'grad_norm'),
    tokens_per_s: num(figures, 'tokens_per_s'),
    elapsed_s: num(figures, 'elapsed_s'),
    eta_s: num(figures, 'eta_s'),
    peak_memory_bytes: num(figures, 'memory_bytes'),
  };
}

/** The evaluation a `train` job event reports (it has `perplexity` and no `loss`), or null. */
export function evalFromFigures(figures: Record<string, number>): EvalRecord | null {
  if (typeof figures.step !== 'number' || typeof figures.perplexity !== 'number' || typeof figures.eval_loss !== 'number') return null;
  if (typeof figures.loss === 'number') return null;
  return { step: figures.step, loss: figures.eval_loss, perplexity: figures.perplexity };
}

/**
 * Adds a point to a curve kept in step order. A point at or before the last one means the run
 * went back to a checkpoint (it was resumed): the points after it are replaced.
 */
function withPoint<T extends { step: number }>(curve: T[], point: T): T[] {
  const kept = curve.filter((p) => p.step < point.step);
  return [...kept, point];
}

/**
 * Fine-tuning runs: the list, and the one open with its curves. Runs and their curves live in
 * the studio (every step is stored as it happens); this view loads a run's stored curve and then
 * appends the live job events, so a page that reloads or reconnects redraws the whole curve.
 */
export class RunsManager {
  #runs = $state<RunSummary[]>([]);
  #loaded = $state(false);
  #error = $state<ApiException | null>(null);

  #detail = $state<RunDetail | null>(null);
  #openId = $state<string | null>(null);
  #detailError = $state<ApiException | null>(null);
  #progress = $state<RunProgress | null>(null);

  #client: ApiClient | null = null;
  #stops: (() => void)[] = [];
  /** Recent events of every job, replayed into a run's detail once it has loaded. */
  #recent: JobEvent[] = [];
  /** Bumped by each detail load, so that a slower, older load does not win. */
  #generation = 0;
  readonly #bus: BaseEventManager<Events>;

  constructor(bus: BaseEventManager<Events> = eventManager) {
    this.#bus = bus;
  }

  /** Newest first, like `GET /api/runs`. */
  get runs(): RunSummary[] {
    return this.#runs;
  }
  get loaded(): boolean {
    return this.#loaded;
  }
  /** The last failure of the list. */
  get error(): ApiException | null {
    return this.#error;
  }
  /** The open run, with its settings and curves; null while it loads. */
  get detail(): RunDetail | null {
    return this.#detail;
  }
  /** The id of the run asked for, loaded or not. */
  get openId(): string | null {
    return this.#openId;
  }
  get detailError(): ApiException | null {
    return this.#detailError;
  }
  /** The open run's job as it last reported; null before any event. */
  get progress(): RunProgress | null {
    return this.#progress;
  }

  get(id: string): RunSummary | undefined {
    return this.#runs.find((r) => r.id === id);
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
    this.#stops = [
      this.#bus.on('job-event', (event) => this.applyEvent(event)),
      // events may have been lost: the stored curve is the truth
      this.#bus.on('jobs-resynced', () => {
        void this.load();
        const id = this.#openId;
        if (id) void this.#reloadDetail(id);
      }),
    ];
  }

  disconnect(): void {
    for (const stop of this.#stops) stop();
    this.#stops = [];
    this.#client = null;
    this.#recent = [];
    this.#runs = [];
    this.#loaded = false;
    this.#error = null;
    this.close();
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  async load(): Promise<void> {
    try {
      this.#runs = await this.#need().listRuns();
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    } finally {
      this.#loaded = true;
    }
  }

  /** Opens a run: its stored settings and curves, then its live events. */
  async open(id: string): Promise<void> {
    if (this.#openId !== id) {
      this.#openId = id;
      this.#detail = null;
      this.#progress = null;
    }
    await this.#reloadDetail(id);
  }

  close(): void {
    this.#generation++;
    this.#openId = null;
    this.#detail = null;
    this.#detailError = null;
    this.#progress = null;
  }

  async #reloadDetail(id: string): Promise<void> {
    const generation = ++this.#generation;
    try {
      const detail = await this.#need().getRun(id);
      if (generation !== this.#generation || this.#openId !== id) return;
      this.#detail = detail;
      this.#detailError = null;
      this.#upsert(detail.run);
      // events that arrived while it loaded (or before it was opened) and are newer than it
      const jobId = detail.run.job_id;
      if (jobId) for (const event of this.#recent) if (event.job_id === jobId) this.#applyToDetail(event, true);
    } catch (e) {
      if (generation !== this.#generation) return;
      this.#detailError = toApiException(e);
    }
  }

  /** Applies one job event (from the bus) to the list and the open run. */
  applyEvent(event: JobEvent): void {
    this.#recent.push(event);
    if (this.#recent.length > RECENT_EVENTS) this.#recent.splice(0, this.#recent.length - RECENT_EVENTS);

    const index = this.#runs.findIndex((r) => r.job_id === event.job_id);
    if (index >= 0) {
      const run = this.#runs[index]!;
      this.#runs[index] = this.#withEvent(run, event);
    }
    const detail = this.#detail;
    if (detail && detail.run.job_id === event.job_id) this.#applyToDetail(event, false);

    if (!isActiveState(event.state) && (index >= 0 || detail?.run.job_id === event.job_id)) {
      // the run's final state, adapter and error are in the catalog now
      void this.load();
      const id = this.#openId;
      if (id && this.#detail?.run.job_id === event.job_id) void this.#reloadDetail(id);
    }
  }

  /**
   * `replay`: an event remembered from before the detail loaded; it only adds what the stored
   * curve does not have yet.
   */
  #applyToDetail(event: JobEvent, replay: boolean): void {
    const detail = this.#detail;
    if (!detail) return;
    const step = stepFromFigures(event.figures);
    const evaluation = evalFromFigures(event.figures);
    // evaluations may start at step 0 (the untrained adapter)
    const lastStep = detail.steps.at(-1)?.step ?? -1;
    const lastEval = detail.evals.at(-1)?.step ?? -1;
    // a replayed event is older than the stored state: it may only add figures
    const next: RunDetail = { ...detail, run: this.#withEvent(detail.run, event, !replay) };
    if (step && !(replay && step.step <= lastStep)) next.steps = withPoint(detail.steps, step);
    if (evaluation && !(replay && evaluation.step <= lastEval)) next.evals = withPoint(detail.evals, evaluation);
    this.#detail = next;
    const progress = this.#progress;
    if (!progress || !replay || Date.parse(event.at) >= Date.parse(progress.at)) {
      this.#progress = { message: event.message, fraction: event.fraction, at: event.at };
    }
  }

  /** The summary with what an event of its job tells; `live`: the event is news, not a replay. */
  #withEvent(run: RunSummary, event: JobEvent, live = true): RunSummary {
    const f = event.figures;
    const next: RunSummary = { ...run };
    if (live && event.state === 'running' && !isRunActive(run.state)) next.state = 'running';
    if (typeof f.step === 'number' && typeof f.loss === 'number' && f.step >= run.step) {
      next.step = f.step;
      next.last_loss = f.loss;
    }
    if (typeof f.total_steps === 'number') next.total_steps = f.total_steps;
    if (typeof f.eval_loss === 'number' && typeof f.perplexity === 'number') next.last_eval_loss = f.eval_loss;
    return next;
  }

  #upsert(run: RunSummary): void {
    const index = this.#runs.findIndex((r) => r.id === run.id);
    if (index >= 0) this.#runs[index] = run;
    else this.#runs = [run, ...this.#runs];
  }

  /** Creates a run and starts training it. Throws an ApiException when the studio refuses. */
  async start(request: NewRun): Promise<RunSummary> {
    let run: RunSummary;
    try {
      run = await this.#need().startRun(request);
    } catch (e) {
      throw toApiException(e);
    }
    this.#upsert(run);
    return run;
  }

  /** Asks the run's job to stop; the run becomes cancelled once the job has stopped. */
  async cancel(id: string): Promise<void> {
    const run = await this.#act(() => this.#need().cancelRun(id));
    this.#upsert(run);
    if (this.#detail?.run.id === id) this.#detail = { ...this.#detail, run };
  }

  /** Trains a cancelled, failed or interrupted run further, from its last checkpoint. */
  async resume(id: string): Promise<void> {
    const answered = await this.#act(() => this.#need().resumeRun(id));
    // its new job has started; the job marks the run running once it runs
    const run: RunSummary = isRunActive(answered.state) ? answered : { ...answered, state: 'queued' };
    this.#upsert(run);
    if (this.#openId === id) {
      this.#progress = null;
      await this.#reloadDetail(id);
    }
  }

  /** Deletes a run that is not training. */
  async remove(id: string): Promise<void> {
    await this.#act(() => this.#need().deleteRun(id));
    this.#runs = this.#runs.filter((r) => r.id !== id);
    if (this.#openId === id) this.close();
  }

  async #act<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (e) {
      throw toApiException(e);
    }
  }
}

export const runsManager = new RunsManager();
