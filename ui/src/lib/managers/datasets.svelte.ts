import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { DatasetRow, DatasetSummary, NewDataset } from '../api/types';
import { PAGE_SIZE, PagedRows } from '../paged.svelte';

/** The share of rows held out for evaluation unless changed. */
export const DEFAULT_EVAL_FRACTION = 0.1;
export const DEFAULT_SEED = 42;

/** A dataset name the studio accepts: letters, digits, dot, dash and underscore. */
export function datasetNameProblem(name: string): string | null {
  const n = name.trim();
  if (!n) return 'Give the dataset a name';
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(n)) return 'Use letters, digits, dots, dashes and underscores (it becomes a file name)';
  return null;
}

/** The datasets built from Datanets (training sets that remember each row's contribution), and one open. */
export class DatasetsManager {
  #datasets = $state<DatasetSummary[]>([]);
  #loaded = $state(false);
  #error = $state<ApiException | null>(null);
  #building = $state(false);
  #buildError = $state<ApiException | null>(null);
  #built = $state<DatasetSummary | null>(null);
  #openName = $state<string | null>(null);

  readonly rows: PagedRows<DatasetRow>;
  #client: ApiClient | null = null;

  constructor(pageSize = PAGE_SIZE) {
    this.rows = new PagedRows<DatasetRow>(pageSize);
  }

  /** Newest first, as the studio lists them. */
  get datasets(): DatasetSummary[] {
    return this.#datasets;
  }
  get loaded(): boolean {
    return this.#loaded;
  }
  get error(): ApiException | null {
    return this.#error;
  }
  get building(): boolean {
    return this.#building;
  }
  get buildError(): ApiException | null {
    return this.#buildError;
  }
  /** The dataset built last from this page. */
  get built(): DatasetSummary | null {
    return this.#built;
  }
  /** The dataset whose rows are open. */
  get openName(): string | null {
    return this.#openName;
  }

  get(name: string): DatasetSummary | undefined {
    return this.#datasets.find((d) => d.name === name);
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
    this.close();
  }

  reset(): void {
    this.#datasets = [];
    this.#loaded = false;
    this.#error = null;
    this.#buildError = null;
    this.#built = null;
    this.close();
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  async load(): Promise<void> {
    try {
      this.#datasets = await this.#need().listDatasets();
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    } finally {
      this.#loaded = true;
    }
  }

  /** Builds a dataset; null when it could not (`buildError` says why). */
  async build(dataset: NewDataset): Promise<DatasetSummary | null> {
    if (this.#building) return null;
    const problem = datasetNameProblem(dataset.name);
    if (problem) {
      this.#buildError = new ApiException(problem, null);
      return null;
    }
    if (dataset.sources.length === 0 && dataset.files.length === 0) {
      this.#buildError = new ApiException('Choose at least one Datanet or file', null);
      return null;
    }
    this.#building = true;
    this.#buildError = null;
    try {
      const built = await this.#need().createDataset({ ...dataset, name: dataset.name.trim() });
      this.#built = built;
      this.#datasets = [built, ...this.#datasets.filter((d) => d.name !== built.name)];
      return built;
    } catch (e) {
      this.#buildError = toApiException(e);
      return null;
    } finally {
      this.#building = false;
    }
  }

  clearBuildError(): void {
    this.#buildError = null;
  }

  /** Deletes a dataset and its file. Throws an ApiException when the studio refuses. */
  async remove(name: string): Promise<void> {
    try {
      await this.#need().deleteDataset(name);
    } catch (e) {
      throw toApiException(e);
    }
    this.#datasets = this.#datasets.filter((d) => d.name !== name);
    if (this.#built?.name === name) this.#built = null;
    if (this.#openName === name) this.close();
  }

  /** Opens a dataset's rows, a page at a time. */
  openRows(name: string): Promise<void> {
    this.#openName = name;
    const client = this.#client;
    if (!client) return this.rows.reset(null);
    return this.rows.reset((offset, limit) => client.datasetRows(name, offset, limit));
  }

  close(): void {
    this.#openName = null;
    void this.rows.reset(null);
  }
}

export const datasetsManager = new DatasetsManager();
