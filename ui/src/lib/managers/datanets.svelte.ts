import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { DatanetCard, DatanetListing, JobInfo, LocalDatanet } from '../api/types';
import { eventManager, type BaseEventManager, type Events } from '../events';
import { jobsManager, type JobsManager } from './jobs.svelte';

/** The kind of the job that pulls a Datanet. */
export const PULL_JOB_KIND = 'pull-datanet';

function time(value: string): number {
  const t = Date.parse(value);
  return Number.isNaN(t) ? 0 : t;
}

/**
 * The Datanets screen's state: the hub search and the card open from it, pulls and their jobs,
 * and the Datanets in this workspace (pulled or imported).
 */
export class DatanetsManager {
  #query = $state('');
  #results = $state<DatanetListing[]>([]);
  #searched = $state(false);
  #searching = $state(false);
  #searchError = $state<ApiException | null>(null);

  #cardId = $state<string | null>(null);
  #card = $state<DatanetCard | null>(null);
  #cardError = $state<ApiException | null>(null);

  #local = $state<LocalDatanet[]>([]);
  #localLoaded = $state(false);
  #localError = $state<ApiException | null>(null);

  /** Datanet id → the job pulling it (started from this page). */
  #pulls = $state<Record<string, string>>({});
  #pullErrors = $state<Record<string, ApiException>>({});
  #starting = $state<string[]>([]);

  #client: ApiClient | null = null;
  #stop: (() => void) | null = null;
  #searchGeneration = 0;
  #cardGeneration = 0;
  readonly #jobs: JobsManager;
  readonly #bus: BaseEventManager<Events>;

  constructor(jobs: JobsManager = jobsManager, bus: BaseEventManager<Events> = eventManager) {
    this.#jobs = jobs;
    this.#bus = bus;
  }

  /** The last search's text. */
  get query(): string {
    return this.#query;
  }
  get results(): DatanetListing[] {
    return this.#results;
  }
  /** A search has answered (so an empty list means nothing matched). */
  get searched(): boolean {
    return this.#searched;
  }
  get searching(): boolean {
    return this.#searching;
  }
  get searchError(): ApiException | null {
    return this.#searchError;
  }
  /** The Datanet whose card is open, loaded or not. */
  get cardId(): string | null {
    return this.#cardId;
  }
  get card(): DatanetCard | null {
    return this.#card;
  }
  get cardError(): ApiException | null {
    return this.#cardError;
  }
  get local(): LocalDatanet[] {
    return this.#local;
  }
  get localLoaded(): boolean {
    return this.#localLoaded;
  }
  get localError(): ApiException | null {
    return this.#localError;
  }

  isPulled(id: string): boolean {
    return this.#local.some((d) => d.id === id);
  }

  /** The job pulling a Datanet: the one started here, or one running in the studio for it. */
  pullJob(id: string): JobInfo | undefined {
    const jobId = this.#pulls[id];
    if (jobId) return this.#jobs.get(jobId);
    return this.#jobs.active.find((j) => j.kind === PULL_JOB_KIND && (j.title === id || j.title.endsWith(` ${id}`)));
  }

  pullError(id: string): ApiException | null {
    return this.#pullErrors[id] ?? null;
  }

  /** The pull request is on its way (before the studio answers with a job). */
  isStarting(id: string): boolean {
    return this.#starting.includes(id);
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
    this.#stop = this.#bus.on('job-finished', (job) => this.#finished(job));
  }

  disconnect(): void {
    this.#stop?.();
    this.#stop = null;
    this.#client = null;
  }

  /** Back to the state of a fresh page. */
  reset(): void {
    this.#query = '';
    this.#results = [];
    this.#searched = false;
    this.#searchError = null;
    this.closeCard();
    this.#local = [];
    this.#localLoaded = false;
    this.#localError = null;
    this.#pulls = {};
    this.#pullErrors = {};
    this.#starting = [];
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  /** Searches the configured hub; '' lists every Datanet it has. */
  async search(text: string): Promise<void> {
    const generation = ++this.#searchGeneration;
    this.#query = text;
    this.#searching = true;
    try {
      const results = await this.#need().searchHub(text.trim());
      if (generation !== this.#searchGeneration) return;
      this.#results = results;
      this.#searchError = null;
      this.#searched = true;
    } catch (e) {
      if (generation !== this.#searchGeneration) return;
      this.#searchError = toApiException(e);
    } finally {
      if (generation === this.#searchGeneration) this.#searching = false;
    }
  }

  /** Opens a hub Datanet's card: its manifest and README. */
  async openCard(id: string): Promise<void> {
    const generation = ++this.#cardGeneration;
    if (this.#cardId !== id) this.#card = null;
    this.#cardId = id;
    this.#cardError = null;
    try {
      const card = await this.#need().hubCard(id);
      if (generation !== this.#cardGeneration) return;
      this.#card = card;
    } catch (e) {
      if (generation !== this.#cardGeneration) return;
      this.#cardError = toApiException(e);
    }
  }

  closeCard(): void {
    this.#cardGeneration++;
    this.#cardId = null;
    this.#card = null;
    this.#cardError = null;
  }

  async loadLocal(): Promise<void> {
    try {
      this.#local = await this.#need().listDatanets();
      this.#localError = null;
    } catch (e) {
      this.#localError = toApiException(e);
    } finally {
      this.#localLoaded = true;
    }
  }

  /** Starts pulling a Datanet; its progress is the job's (`pullJob`). */
  async pull(id: string): Promise<JobInfo | null> {
    if (this.#starting.includes(id)) return null;
    this.#starting = [...this.#starting, id];
    const errors = { ...this.#pullErrors };
    delete errors[id];
    this.#pullErrors = errors;
    try {
      const job = await this.#need().pullDatanet(id);
      this.#pulls = { ...this.#pulls, [id]: job.id };
      // a fast pull may have reported more (even its end) through events already
      const known = this.#jobs.get(job.id);
      if (!known || time(known.updated_at) <= time(job.updated_at)) this.#jobs.track(job);
      const now = this.#jobs.get(job.id) ?? job;
      if (now.state === 'succeeded') this.#pulled(id);
      return job;
    } catch (e) {
      this.#pullErrors = { ...this.#pullErrors, [id]: toApiException(e) };
      return null;
    } finally {
      this.#starting = this.#starting.filter((x) => x !== id);
    }
  }

  /** Makes a local file a Datanet `local/<name>`. Throws an ApiException when the studio refuses. */
  async importFile(path: string, name: string): Promise<LocalDatanet> {
    const file = path.trim();
    const short = name.trim();
    if (!file) throw new ApiException('Give the path of a file', 'A JSON Lines, CSV or Parquet file on the studio’s machine.');
    if (!short) throw new ApiException('Give the Datanet a name', 'It becomes local/<name>.');
    let made: LocalDatanet;
    try {
      made = await this.#need().importDatanet(file, short);
    } catch (e) {
      throw toApiException(e);
    }
    this.#local = [...this.#local.filter((d) => d.id !== made.id), made];
    return made;
  }

  #finished(job: JobInfo): void {
    if (job.state !== 'succeeded') return;
    const id = Object.keys(this.#pulls).find((k) => this.#pulls[k] === job.id);
    if (id !== undefined) this.#pulled(id);
    else if (job.kind === PULL_JOB_KIND) void this.loadLocal();
  }

  #pulled(id: string): void {
    this.#results = this.#results.map((d) => (d.id === id ? { ...d, pulled: true } : d));
    if (this.#card?.id === id) this.#card = { ...this.#card, pulled: true };
    void this.loadLocal();
  }
}

export const datanetsManager = new DatanetsManager();
