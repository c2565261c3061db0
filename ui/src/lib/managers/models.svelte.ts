import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { AddModelResult, ModelSummary } from '../api/types';
import { eventManager, type BaseEventManager, type Events } from '../events';
import { jobsManager, type JobsManager } from './jobs.svelte';

/** The workspace's models, as `listModels()` reports them. */
export class ModelsManager {
  #models = $state<ModelSummary[]>([]);
  #loading = $state(false);
  #loaded = $state(false);
  #error = $state<ApiException | null>(null);

  #client: ApiClient | null = null;
  #stop: (() => void) | null = null;
  readonly #jobs: JobsManager;
  readonly #bus: BaseEventManager<Events>;

  constructor(jobs: JobsManager = jobsManager, bus: BaseEventManager<Events> = eventManager) {
    this.#jobs = jobs;
    this.#bus = bus;
  }

  get models(): ModelSummary[] {
    return this.#models;
  }
  get loading(): boolean {
    return this.#loading;
  }
  /** True once the first load finished, successfully or not. */
  get loaded(): boolean {
    return this.#loaded;
  }
  /** The error of the last load, if it failed. */
  get error(): ApiException | null {
    return this.#error;
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
    // a finished pull (or any job that may have written a model) changes the list
    this.#stop = this.#bus.on('job-finished', (job) => {
      if (job.state === 'succeeded') void this.load();
    });
  }

  disconnect(): void {
    this.#stop?.();
    this.#stop = null;
    this.#client = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  async load(): Promise<void> {
    this.#loading = true;
    try {
      this.#models = await this.#need().listModels();
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    } finally {
      this.#loading = false;
      this.#loaded = true;
    }
  }

  /**
   * Adds a model by local path or hub id. A local path answers with the model, which joins the
   * table; a hub id answers with a pull job, which the jobs manager follows. Throws ApiException.
   */
  async add(source: string): Promise<AddModelResult> {
    const trimmed = source.trim();
    if (!trimmed) throw new ApiException('Give a path or a hub id', 'For example HuggingFaceTB/SmolLM2-135M-Instruct');
    let result: AddModelResult;
    try {
      result = await this.#need().addModel(trimmed);
    } catch (e) {
      throw toApiException(e);
    }
    if (result.model) {
      const model = result.model;
      const index = this.#models.findIndex((m) => m.id === model.id);
      if (index >= 0) this.#models[index] = model;
      else this.#models = [...this.#models, model];
      this.#bus.emit('model-added', model);
    }
    if (result.job) this.#jobs.track(result.job);
    return result;
  }

  /** Removes a model from the workspace; its files stay where they are. Throws ApiException. */
  async remove(id: string): Promise<void> {
    try {
      await this.#need().removeModel(id);
    } catch (e) {
      throw toApiException(e);
    }
    this.#models = this.#models.filter((m) => m.id !== id);
    this.#bus.emit('model-removed', id);
  }
}

export const modelsManager = new ModelsManager();
