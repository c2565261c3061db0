import type { ApiClient } from './client';
import { HttpSseTransport, resolveToken } from './http';
import { TauriTransport } from './tauri';

export type TransportKind = 'tauri' | 'http';

/** Tauri injects `__TAURI_INTERNALS__` into its webview before any page script runs. */
export function detectTransport(win: object | undefined): TransportKind {
  return win !== undefined && win !== null && '__TAURI_INTERNALS__' in win && (win as Record<string, unknown>).__TAURI_INTERNALS__ != null
    ? 'tauri'
    : 'http';
}

type WindowLike = {
  location?: { search: string };
  sessionStorage?: Pick<Storage, 'getItem' | 'setItem'>;
};

/** The client for this page: Tauri IPC inside the desktop app, HTTP + SSE in a browser. */
export function createClient(win: (WindowLike & object) | undefined = typeof window === 'undefined' ? undefined : window): ApiClient {
  if (detectTransport(win) === 'tauri') return new TauriTransport();
  let storage: WindowLike['sessionStorage'] | null = null;
  try {
    storage = win?.sessionStorage ?? null;
  } catch {
    storage = null;
  }
  const token = resolveToken(win?.location?.search ?? '', storage);
  return new HttpSseTransport({ token });
}
