import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { FakeTransport, flush } from '../lib/testing/fake-transport';
import Settings from './Settings.svelte';

let app: ReturnType<typeof mount> | null = null;
let target: HTMLElement;

async function settle() {
  flushSync();
  await flush();
  flushSync();
}

async function render(api: FakeTransport) {
  app = mount(Settings, { target, props: { client: api } });
  await settle();
}

beforeEach(() => {
  target = document.createElement('div');
  document.body.appendChild(target);
});

afterEach(() => {
  if (app) unmount(app);
  app = null;
  target.remove();
});

describe('Settings screen', () => {
  it('shows the doctor report', async () => {
    const api = new FakeTransport();
    await render(api);
    expect(target.querySelector('[data-screen="settings"] h1')?.textContent).toBe('Settings');
    expect(target.querySelector('[data-testid="settings-workspace"]')?.textContent).toBe('/home/user/.modelfactory');
    expect(target.querySelector('[data-testid="settings-version"]')?.textContent).toBe('0.1.0');
    expect(target.querySelector('[data-testid="settings-database"]')?.textContent).toBe('/home/user/.modelfactory/studio.db');
    const wgpu = target.querySelector<HTMLElement>('[data-backend="wgpu"]')!;
    expect(wgpu.dataset.compiled).toBe('true');
    expect(wgpu.dataset.usable).toBe('false');
    expect(wgpu.textContent).toContain('no adapter found');
    expect(target.querySelector('[data-testid="cli"]')?.textContent).toContain('modelfactory doctor');
  });

  it('saves the settings', async () => {
    const api = new FakeTransport();
    await render(api);
    const hub = target.querySelector<HTMLInputElement>('[data-testid="settings-hub-endpoint"]')!;
    const backend = target.querySelector<HTMLSelectElement>('[data-testid="settings-default-backend"]')!;
    expect(hub.value).toBe('https://hub.example');
    expect(backend.value).toBe('auto');

    hub.value = 'https://mirror.example ';
    hub.dispatchEvent(new Event('input', { bubbles: true }));
    backend.value = 'cpu';
    backend.dispatchEvent(new Event('change', { bubbles: true }));
    flushSync();
    target.querySelector<HTMLButtonElement>('[data-testid="settings-save"]')!.click();
    await settle();
    expect(api.callsOf('putSettings')).toEqual([[{ hub_endpoint: 'https://mirror.example', default_backend: 'cpu', datanet_hub: '' }]]);
    expect(target.querySelector('[data-testid="settings-saved"]')).not.toBeNull();
  });

  it('shows a save error with its hint', async () => {
    const api = new FakeTransport();
    await render(api);
    api.failures.putSettings = new ApiException('hub endpoint is not a URL', 'Use a full URL such as https://huggingface.co', 400);
    target.querySelector<HTMLButtonElement>('[data-testid="settings-save"]')!.click();
    await settle();
    const box = target.querySelector('[data-testid="settings-save-error"]');
    expect(box?.textContent).toContain('hub endpoint is not a URL');
    expect(box?.textContent).toContain('Use a full URL such as https://huggingface.co');
  });
});
