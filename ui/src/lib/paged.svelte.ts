import { ApiException, toApiException } from './api/errors';

/** One page as the API answers it. */
export type Page<T> = { total: number; rows: T[] };
export type PageFetcher<T> = (offset: number, limit: number) => Promise<Page<T>>;

/** Rows per request. */
export const PAGE_SIZE = 200;
/** Pages kept in memory (the rest are fetched again when scrolled back to). */
export const MAX_PAGES = 25;
/** Requests at a time; a fast scroll asks only for where it stops. */
const MAX_IN_FLIGHT = 2;

/**
 * A long list read a page at a time: only the pages around what is shown are fetched and kept,
 * so a list of a million rows costs what a screenful does. `want(from, to)` says what is shown;
 * `get(i)` is the row, or undefined while its page loads.
 */
export class PagedRows<T> {
  readonly pageSize: number;
  readonly maxPages: number;
  #pages = new Map<number, T[]>();
  #loading = new Set<number>();
  /** Bumped on every change to the pages, so that readers of `get` update. */
  #version = $state(0);
  #total = $state<number | null>(null);
  #error = $state<ApiException | null>(null);
  #fetch: PageFetcher<T> | null = null;
  #generation = 0;
  #want: [number, number] = [0, 0];
  #waiters: (() => void)[] = [];
  /** Pages held from before a refresh: shown, and fetched again. */
  #stale = new Set<number>();

  constructor(pageSize = PAGE_SIZE, maxPages = MAX_PAGES) {
    this.pageSize = pageSize;
    this.maxPages = Math.max(2, maxPages);
  }

  /** Rows in the list; null until the first page has loaded. */
  get total(): number | null {
    return this.#total;
  }
  get error(): ApiException | null {
    return this.#error;
  }
  /** A request is under way. */
  get loading(): boolean {
    void this.#version;
    return this.#loading.size > 0;
  }
  /** Pages held now (for tests and the curious). */
  get pagesHeld(): number[] {
    void this.#version;
    return [...this.#pages.keys()].sort((a, b) => a - b);
  }

  get(index: number): T | undefined {
    void this.#version;
    return this.#pages.get(Math.floor(index / this.pageSize))?.[index % this.pageSize];
  }

  /** Starts over with another source (new filters): forgets every page and loads the first. */
  reset(fetch: PageFetcher<T> | null): Promise<void> {
    this.#generation++;
    this.#fetch = fetch;
    this.#pages.clear();
    this.#loading.clear();
    this.#stale.clear();
    this.#total = null;
    this.#error = null;
    this.#want = [0, this.pageSize];
    this.#version++;
    this.#wake();
    if (!fetch) return Promise.resolve();
    return this.want(0, this.pageSize);
  }

  /**
   * Loads the pages shown again (rows changed on the server), showing the old ones until the
   * new ones arrive; every other page is forgotten.
   */
  refresh(): Promise<void> {
    if (!this.#fetch) return Promise.resolve();
    this.#generation++;
    const shown = new Set(this.#wanted());
    for (const page of [...this.#pages.keys()]) if (!shown.has(page)) this.#pages.delete(page);
    this.#loading.clear();
    this.#stale = new Set(this.#pages.keys());
    this.#version++;
    const [from, to] = this.#want;
    return this.want(from, to);
  }

  /**
   * Rows `from` (inclusive) to `to` (exclusive) are shown: fetches the pages they are on. Resolves
   * when nothing more is loading.
   */
  want(from: number, to: number): Promise<void> {
    const lo = Math.max(0, Math.floor(from));
    const hi = Math.max(lo, Math.ceil(to));
    this.#want = [lo, hi];
    this.#pump();
    return this.#idle();
  }

  /** Puts a changed row in place (a label or an edit came back). */
  replace(index: number, row: T): void {
    const page = this.#pages.get(Math.floor(index / this.pageSize));
    if (!page || index % this.pageSize >= page.length) return;
    page[index % this.pageSize] = row;
    this.#version++;
  }

  /** The index of the first loaded row that matches, or -1. */
  findIndex(pred: (row: T) => boolean): number {
    for (const [n, rows] of this.#pages) {
      const at = rows.findIndex(pred);
      if (at >= 0) return n * this.pageSize + at;
    }
    return -1;
  }

  #wanted(): number[] {
    const [lo, hi] = this.#want;
    const first = Math.floor(lo / this.pageSize);
    const last = Math.floor(Math.max(lo, hi - 1) / this.pageSize);
    const out: number[] = [];
    for (let p = first; p <= last; p++) {
      if (this.#total !== null && p * this.pageSize >= this.#total && p > 0) break;
      out.push(p);
    }
    return out;
  }

  #pump(): void {
    const fetch = this.#fetch;
    if (!fetch) return;
    for (const page of this.#wanted()) {
      if (this.#loading.size >= MAX_IN_FLIGHT) break;
      if (this.#loading.has(page)) continue;
      if (this.#pages.has(page) && !this.#stale.has(page)) continue;
      void this.#load(fetch, page, this.#generation);
    }
    this.#wake();
  }

  async #load(fetch: PageFetcher<T>, page: number, generation: number): Promise<void> {
    this.#loading.add(page);
    this.#version++;
    let ok = false;
    try {
      const result = await fetch(page * this.pageSize, this.pageSize);
      if (generation !== this.#generation) return;
      this.#pages.set(page, result.rows);
      this.#stale.delete(page);
      this.#total = result.total;
      this.#error = null;
      this.#evict();
      ok = true;
    } catch (e) {
      if (generation !== this.#generation) return;
      // not asked again until something else is wanted
      this.#error = toApiException(e);
    }
    this.#loading.delete(page);
    this.#version++;
    if (ok) this.#pump();
    else this.#wake();
  }

  /** Drops the pages farthest from what is shown once more than `maxPages` are held. */
  #evict(): void {
    if (this.#pages.size <= this.maxPages) return;
    const [lo, hi] = this.#want;
    const center = (lo + hi) / 2 / this.pageSize;
    const byDistance = [...this.#pages.keys()].sort((a, b) => Math.abs(b + 0.5 - center) - Math.abs(a + 0.5 - center));
    for (const page of byDistance) {
      if (this.#pages.size <= this.maxPages) break;
      this.#pages.delete(page);
      this.#stale.delete(page);
    }
  }

  #idle(): Promise<void> {
    if (this.#loading.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #wake(): void {
    if (this.#loading.size > 0) return;
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w();
  }
}
