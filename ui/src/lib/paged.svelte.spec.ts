import { describe, expect, it, vi } from 'vitest';
import { ApiException } from './api/errors';
import { PagedRows, type Page } from './paged.svelte';

/** A list of `total` numbers served a page at a time, counting the requests. */
function source(total: number) {
  const fetch = vi.fn(async (offset: number, limit: number): Promise<Page<number>> => {
    const rows: number[] = [];
    for (let i = offset; i < Math.min(total, offset + limit); i++) rows.push(i);
    return { total, rows };
  });
  return fetch;
}

describe('PagedRows', () => {
  it('loads only the first page, then the pages asked for', async () => {
    const fetch = source(100_000);
    const rows = new PagedRows<number>(200, 5);
    expect(rows.total).toBeNull();
    await rows.reset(fetch);
    expect(rows.total).toBe(100_000);
    expect(fetch.mock.calls).toEqual([[0, 200]]);
    expect(rows.get(0)).toBe(0);
    expect(rows.get(199)).toBe(199);
    expect(rows.get(200)).toBeUndefined();

    // a jump to the middle asks only for the pages shown there
    await rows.want(50_190, 50_230);
    expect(fetch.mock.calls.slice(1)).toEqual([
      [50_000, 200],
      [50_200, 200],
    ]);
    expect(rows.get(50_210)).toBe(50_210);
    // asking again costs nothing
    await rows.want(50_190, 50_230);
    expect(fetch).toHaveBeenCalledTimes(3);
  });

  it('keeps a bounded number of pages, dropping the farthest', async () => {
    const fetch = source(100_000);
    const rows = new PagedRows<number>(100, 3);
    await rows.reset(fetch);
    for (const at of [1000, 2000, 3000, 4000]) await rows.want(at, at + 10);
    expect(rows.pagesHeld).toEqual([20, 30, 40]);
    expect(rows.get(0)).toBeUndefined();
    await rows.want(0, 10);
    expect(rows.get(5)).toBe(5);
  });

  it('does not ask for pages past the end', async () => {
    const fetch = source(250);
    const rows = new PagedRows<number>(200, 5);
    await rows.reset(fetch);
    await rows.want(180, 400);
    expect(fetch.mock.calls).toEqual([
      [0, 200],
      [200, 200],
    ]);
    expect(rows.get(249)).toBe(249);
  });

  it('ignores pages of a source it has left', async () => {
    let release: (p: Page<string>) => void = () => {};
    const slow = vi.fn(() => new Promise<Page<string>>((resolve) => (release = resolve)));
    const rows = new PagedRows<string>(10, 5);
    void rows.reset(slow);
    await rows.reset(async () => ({ total: 1, rows: ['new'] }));
    release({ total: 3, rows: ['old', 'old', 'old'] });
    await Promise.resolve();
    expect(rows.total).toBe(1);
    expect(rows.get(0)).toBe('new');
  });

  it('replaces a row in place, and finds rows by content', async () => {
    const rows = new PagedRows<{ id: string; n: number }>(10, 5);
    await rows.reset(async () => ({ total: 2, rows: [{ id: 'a', n: 1 }, { id: 'b', n: 2 }] }));
    rows.replace(1, { id: 'b', n: 3 });
    expect(rows.get(1)).toEqual({ id: 'b', n: 3 });
    expect(rows.findIndex((r) => r.id === 'b')).toBe(1);
    expect(rows.findIndex((r) => r.id === 'z')).toBe(-1);
  });

  it('keeps the error of a page, and refreshes the pages shown', async () => {
    const rows = new PagedRows<number>(10, 5);
    const failing = vi.fn(async (): Promise<Page<number>> => {
      throw new ApiException('database is locked', null);
    });
    await rows.reset(failing);
    expect(rows.error?.error).toBe('database is locked');
    expect(rows.total).toBeNull();

    let version = 0;
    const changing = vi.fn(async (offset: number): Promise<Page<number>> => ({ total: 30, rows: Array.from({ length: 10 }, (_, i) => version * 1000 + offset + i) }));
    await rows.reset(changing);
    await rows.want(10, 15);
    version = 1;
    const refreshed = rows.refresh();
    // the old rows stay shown until the new ones arrive
    expect(rows.get(12)).toBe(12);
    await refreshed;
    expect(rows.get(12)).toBe(1012);
    expect(rows.error).toBeNull();
  });
});
