import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type {
  Content,
  CuratedRow,
  DatanetStats,
  DuplicateScan,
  LabelStatus,
  LabelUpdate,
  RowFlag,
  RowQuery,
  RowSort,
  StatusFilter,
} from '../api/types';
import { PAGE_SIZE, PagedRows } from '../paged.svelte';
import { normalizeTag } from '../rows';

/** What the curation table shows: the filters and the order. Empty strings and nulls do not filter. */
export type CurationFilters = {
  search: string;
  contributor: string;
  status: StatusFilter | '';
  tag: string;
  min_len: number | null;
  max_len: number | null;
  flag: RowFlag | '';
  sort: RowSort;
  desc: boolean;
};

export const DEFAULT_FILTERS: Readonly<CurationFilters> = Object.freeze({
  search: '',
  contributor: '',
  status: '',
  tag: '',
  min_len: null,
  max_len: null,
  flag: '',
  sort: 'position',
  desc: false,
});

/** The default similarity above which two rows count as near duplicates. */
export const DEFAULT_THRESHOLD = 0.8;
/** Typing in the search (or tag) box waits this long before asking the studio. */
export const SEARCH_DELAY_MS = 300;
/** After a label or an edit, the statistics are counted again once changes pause this long. */
export const STATS_DELAY_MS = 300;

/** The filters as the API's query (without offset and limit). */
export function rowQuery(f: CurationFilters): RowQuery {
  const q: RowQuery = {};
  if (f.search.trim()) q.search = f.search.trim();
  if (f.contributor) q.contributor = f.contributor;
  if (f.status) q.status = f.status;
  if (f.tag.trim()) q.tag = normalizeTag(f.tag);
  if (f.min_len !== null && Number.isFinite(f.min_len)) q.min_len = f.min_len;
  if (f.max_len !== null && Number.isFinite(f.max_len)) q.max_len = f.max_len;
  if (f.flag) q.flag = f.flag;
  if (f.sort !== 'position') q.sort = f.sort;
  if (f.desc) q.desc = true;
  return q;
}

/**
 * Curating one Datanet: its rows a page at a time under the chosen filters, the selected row,
 * labels and edits, statistics and the duplicates scan. Labels and edits live in the studio;
 * a changed row comes back from it and replaces the one shown.
 */
export class CurationManager {
  #id = $state<string | null>(null);
  #filters = $state<CurationFilters>({ ...DEFAULT_FILTERS });
  /** The filters the rows shown were fetched with (the search box runs ahead while typing). */
  #applied = $state<CurationFilters>({ ...DEFAULT_FILTERS });
  #selected = $state(0);
  #actionError = $state<ApiException | null>(null);
  #busy = $state(false);

  #stats = $state<DatanetStats | null>(null);
  #statsError = $state<ApiException | null>(null);

  #scan = $state<DuplicateScan | null>(null);
  #scanning = $state(false);
  #scanError = $state<ApiException | null>(null);

  readonly rows: PagedRows<CuratedRow>;
  #client: ApiClient | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Callers waiting for the typed filters to apply. */
  #waiting: (() => void)[] = [];
  #statsTimer: ReturnType<typeof setTimeout> | null = null;
  /** Bumped by every statistics request (and by close): only the newest answer is shown. */
  #statsSeq = 0;
  readonly #delay: number;
  readonly #statsDelay: number;

  constructor(delayMs = SEARCH_DELAY_MS, pageSize = PAGE_SIZE, statsDelayMs = STATS_DELAY_MS) {
    this.#delay = delayMs;
    this.#statsDelay = statsDelayMs;
    this.rows = new PagedRows<CuratedRow>(pageSize);
  }

  /** The Datanet open, "owner/name". */
  get id(): string | null {
    return this.#id;
  }
  get filters(): CurationFilters {
    return this.#filters;
  }
  /** Rows matching the filters; null until the first page answers. */
  get total(): number | null {
    return this.rows.total;
  }
  get selected(): number {
    return this.#selected;
  }
  get selectedRow(): CuratedRow | undefined {
    return this.rows.get(this.#selected);
  }
  /** The last label or edit that failed. */
  get actionError(): ApiException | null {
    return this.#actionError;
  }
  get busy(): boolean {
    return this.#busy;
  }
  get stats(): DatanetStats | null {
    return this.#stats;
  }
  get statsError(): ApiException | null {
    return this.#statsError;
  }
  get scan(): DuplicateScan | null {
    return this.#scan;
  }
  get scanning(): boolean {
    return this.#scanning;
  }
  get scanError(): ApiException | null {
    return this.#scanError;
  }
  /** The filters differ from the defaults. */
  get filtered(): boolean {
    const q = rowQuery(this.#applied);
    return Object.keys(q).some((k) => k !== 'sort' && k !== 'desc');
  }
  /** The query the rows shown answer. */
  get query(): RowQuery {
    return rowQuery(this.#applied);
  }

  connect(client: ApiClient): void {
    this.disconnect();
    this.#client = client;
  }

  disconnect(): void {
    this.close();
    this.#client = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  /** Opens a Datanet (again): its first rows under the current filters, and its statistics. */
  open(id: string): Promise<void> {
    if (this.#id !== id) {
      this.#filters = { ...DEFAULT_FILTERS };
      this.#scan = null;
      this.#scanError = null;
      this.#stats = null;
    }
    this.#id = id;
    void this.loadStats();
    return this.#requery();
  }

  close(): void {
    this.#clearTimers();
    this.#statsSeq++;
    this.#id = null;
    this.#stats = null;
    this.#statsError = null;
    this.#scan = null;
    this.#scanError = null;
    this.#actionError = null;
    this.#selected = 0;
    this.#filters = { ...DEFAULT_FILTERS };
    this.#applied = { ...DEFAULT_FILTERS };
    void this.rows.reset(null);
  }

  #clearTimers(): void {
    for (const resolve of this.#waiting.splice(0)) resolve();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#statsTimer) clearTimeout(this.#statsTimer);
    this.#timer = null;
    this.#statsTimer = null;
  }

  /**
   * Changes one filter. Text boxes (search, tag, lengths) wait for typing to pause; the rest
   * apply at once. Resolves once the first page under the new filters has loaded.
   */
  setFilter<K extends keyof CurationFilters>(key: K, value: CurationFilters[K]): Promise<void> {
    this.#filters = { ...this.#filters, [key]: value };
    const typed = key === 'search' || key === 'tag' || key === 'min_len' || key === 'max_len';
    if (typed && this.#delay > 0) {
      if (this.#timer) clearTimeout(this.#timer);
      const done = new Promise<void>((resolve) => this.#waiting.push(resolve));
      this.#timer = setTimeout(() => void this.applyNow(), this.#delay);
      return done;
    }
    return this.applyNow();
  }

  /** Applies what is typed now, without waiting. */
  async applyNow(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const waiting = this.#waiting.splice(0);
    try {
      await this.#requery();
    } finally {
      for (const resolve of waiting) resolve();
    }
  }

  /** Every filter off, position order. */
  clearFilters(): Promise<void> {
    this.#filters = { ...DEFAULT_FILTERS };
    return this.applyNow();
  }

  #requery(): Promise<void> {
    const id = this.#id;
    this.#applied = { ...this.#filters };
    this.#selected = 0;
    const client = this.#client;
    if (!id || !client) return this.rows.reset(null);
    const query = rowQuery(this.#applied);
    return this.rows.reset(async (offset, limit) => client.datanetRows(id, { ...query, offset, limit }));
  }

  select(index: number): void {
    const total = this.rows.total ?? 0;
    this.#selected = Math.max(0, Math.min(Math.max(0, total - 1), Math.floor(index)));
  }

  move(delta: number): void {
    this.select(this.#selected + delta);
  }

  /** Changes the row at `index` (its status, rating or tags); it is replaced by what the studio stored. */
  async label(index: number, update: LabelUpdate): Promise<CuratedRow | null> {
    const id = this.#id;
    const row = this.rows.get(index);
    if (!id || !row) return null;
    return this.#act(index, () => this.#need().labelRow(id, row.contribution_id, update));
  }

  setStatus(index: number, status: LabelStatus | null): Promise<CuratedRow | null> {
    return this.label(index, { status });
  }

  rate(index: number, rating: number | null): Promise<CuratedRow | null> {
    return this.label(index, { rating: rating === null ? null : Math.max(1, Math.min(5, Math.round(rating))) });
  }

  addTag(index: number, tag: string): Promise<CuratedRow | null> {
    const row = this.rows.get(index);
    const t = normalizeTag(tag);
    if (!row || !t || row.tags.includes(t)) return Promise.resolve(row ?? null);
    return this.label(index, { tags: [...row.tags, t] });
  }

  removeTag(index: number, tag: string): Promise<CuratedRow | null> {
    const row = this.rows.get(index);
    if (!row) return Promise.resolve(null);
    return this.label(index, { tags: row.tags.filter((t) => t !== tag) });
  }

  /** Saves a new version of the row's text; the contributor's stays as `original`. */
  async edit(index: number, content: Content): Promise<CuratedRow | null> {
    const id = this.#id;
    const row = this.rows.get(index);
    if (!id || !row) return null;
    return this.#act(index, () => this.#need().editRow(id, row.contribution_id, content));
  }

  async #act(index: number, call: () => Promise<CuratedRow>): Promise<CuratedRow | null> {
    const id = this.#id;
    this.#busy = true;
    try {
      const changed = await call();
      if (this.#id !== id) return changed;
      // the row may have moved while the call was out (new page, new filters): find it by id
      const at = this.rows.get(index)?.contribution_id === changed.contribution_id
        ? index
        : this.rows.findIndex((r) => r.contribution_id === changed.contribution_id);
      if (at >= 0) this.rows.replace(at, changed);
      this.#actionError = null;
      this.#statsSoon();
      return changed;
    } catch (e) {
      this.#actionError = toApiException(e);
      return null;
    } finally {
      this.#busy = false;
    }
  }

  clearActionError(): void {
    this.#actionError = null;
  }

  /**
   * Counts the statistics now (a reload waiting for changes to pause is not needed any more).
   * An answer overtaken by a newer request is dropped, so the panel never goes back in time.
   */
  async loadStats(): Promise<void> {
    this.#cancelStatsReload();
    const id = this.#id;
    if (!id) return;
    const seq = ++this.#statsSeq;
    try {
      const stats = await this.#need().datanetStats(id);
      if (this.#id !== id || this.#statsSeq !== seq) return;
      this.#stats = stats;
      this.#statsError = null;
    } catch (e) {
      if (this.#id !== id || this.#statsSeq !== seq) return;
      this.#statsError = toApiException(e);
    }
  }

  /** Labels come in bursts (a key per row): count them again once the burst pauses. */
  #statsSoon(): void {
    this.#cancelStatsReload();
    this.#statsTimer = setTimeout(() => {
      this.#statsTimer = null;
      void this.loadStats();
    }, this.#statsDelay);
  }

  #cancelStatsReload(): void {
    if (this.#statsTimer) clearTimeout(this.#statsTimer);
    this.#statsTimer = null;
  }

  /**
   * Finds exact and near duplicates at `threshold` similarity; with `reject`, every row but the
   * first of each group becomes rejected. The rows shown are fetched again (they carry the result).
   */
  async findDuplicates(threshold: number, reject: boolean): Promise<DuplicateScan | null> {
    const id = this.#id;
    if (!id || this.#scanning) return null;
    this.#scanning = true;
    this.#scanError = null;
    try {
      const scan = await this.#need().scanDuplicates(id, threshold, reject);
      if (this.#id !== id) return scan;
      this.#scan = scan;
      await Promise.all([this.rows.refresh(), this.loadStats()]);
      return scan;
    } catch (e) {
      this.#scanError = toApiException(e);
      return null;
    } finally {
      this.#scanning = false;
    }
  }
}

export const curationManager = new CurationManager();
