import { describe, expect, it } from 'vitest';
import { TOKEN_KEY, HttpSseTransport } from './http';
import { createClient, detectTransport } from './select';
import { TauriTransport } from './tauri';

function storage() {
  const data = new Map<string, string>();
  return { getItem: (k: string) => data.get(k) ?? null, setItem: (k: string, v: string) => void data.set(k, v), data };
}

describe('transport selection', () => {
  it('picks Tauri only when __TAURI_INTERNALS__ exists', () => {
    expect(detectTransport({ __TAURI_INTERNALS__: {} })).toBe('tauri');
    expect(detectTransport({})).toBe('http');
    expect(detectTransport({ __TAURI_INTERNALS__: undefined })).toBe('http');
    expect(detectTransport(undefined)).toBe('http');
  });

  it('creates a TauriTransport inside the desktop app', () => {
    const client = createClient({ __TAURI_INTERNALS__: {}, location: { search: '?token=x' } } as object);
    expect(client).toBeInstanceOf(TauriTransport);
    expect(client.transport).toBe('tauri');
  });

  it('creates an HttpSseTransport with the page token in a browser', () => {
    const s = storage();
    const client = createClient({ location: { search: '?token=abc' }, sessionStorage: s });
    expect(client).toBeInstanceOf(HttpSseTransport);
    expect(client.transport).toBe('http');
    expect((client as HttpSseTransport).token).toBe('abc');
    expect((client as HttpSseTransport).eventsUrl()).toBe('/api/events?token=abc');
    expect(s.data.get(TOKEN_KEY)).toBe('abc');
  });

  it('reuses the stored token after the address lost it', () => {
    const s = storage();
    s.setItem(TOKEN_KEY, 'kept');
    const client = createClient({ location: { search: '' }, sessionStorage: s }) as HttpSseTransport;
    expect(client.token).toBe('kept');
  });
});
