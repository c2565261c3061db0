import { describe, expect, it, vi } from 'vitest';
import { Router } from './router.svelte';

function fakeWindow(hash: string) {
  const listeners = new Map<string, () => void>();
  const win = {
    location: { hash, pathname: '/', search: '' },
    history: {
      state: null,
      replaceState: vi.fn((_state: unknown, _title: string, url: string) => {
        win.location.hash = url.slice(url.indexOf('#'));
      }),
    },
    document: { title: '' },
    addEventListener: (name: string, fn: () => void) => listeners.set(name, fn),
    removeEventListener: (name: string) => listeners.delete(name),
    fire: (name: string) => listeners.get(name)?.(),
  };
  return win;
}

describe('Router', () => {
  it('sends an empty hash to #/models', () => {
    const win = fakeWindow('');
    const router = new Router();
    router.start(win as never);
    expect(router.current).toBe('models');
    expect(win.history.replaceState).toHaveBeenCalledWith(null, '', '/#/models');
    expect(win.document.title).toBe('Models · ModelFactory');
  });
  it('follows hash changes', () => {
    const win = fakeWindow('#/settings');
    const router = new Router();
    router.start(win as never);
    expect(router.current).toBe('settings');
    win.location.hash = '#/chat';
    win.fire('hashchange');
    expect(router.current).toBe('chat');
    router.stop();
    win.location.hash = '#/models';
    win.fire('hashchange');
    expect(router.current).toBe('chat');
  });
  it('keeps the place inside a screen, and goes to one', () => {
    const win = fakeWindow('#/finetune/runs/abc');
    const router = new Router();
    router.start(win as never);
    expect(router.current).toBe('finetune');
    expect(router.sub).toBe('runs/abc');
    router.go('finetune', 'runs');
    expect(win.location.hash).toBe('#/finetune/runs');
    expect(router.sub).toBe('runs');
    router.go('chat');
    expect(router.current).toBe('chat');
    expect(router.sub).toBe('');
  });
  it('reads the query of the address, and goes to one', () => {
    const win = fakeWindow('#/finetune?dataset=%2Fd.jsonl');
    const router = new Router();
    router.start(win as never);
    expect(router.current).toBe('finetune');
    expect(router.sub).toBe('');
    expect(router.query).toEqual({ dataset: '/d.jsonl' });
    router.go('datasets', 'named/faq');
    expect(router.query).toEqual({});
    router.go('finetune', '', { dataset: '/data/faq.jsonl' });
    expect(win.location.hash).toBe('#/finetune?dataset=%2Fdata%2Ffaq.jsonl');
    expect(router.query).toEqual({ dataset: '/data/faq.jsonl' });
  });
});
