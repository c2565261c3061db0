import { flushSync, mount, unmount } from 'svelte';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiException } from '../lib/api/errors';
import { chainManager } from '../lib/managers/chain.svelte';
import { walletManager } from '../lib/managers/wallet.svelte';
import { FakeTransport, address, flush, walletAccount } from '../lib/testing/fake-transport';
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
  walletManager.disconnect();
  chainManager.disconnect();
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

function field(testid: string, within: ParentNode = document): HTMLInputElement {
  const el = within.querySelector<HTMLInputElement>(`[data-testid="${testid}"]`);
  if (!el) throw new Error(`no ${testid}`);
  return el;
}

function type(el: HTMLInputElement | HTMLTextAreaElement, value: string) {
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  flushSync();
}

describe('Settings: wallet', () => {
  it('lists the accounts', async () => {
    const api = new FakeTransport();
    api.accounts = [walletAccount(1, { name: 'publishing' })];
    await render(api);
    const row = target.querySelector<HTMLElement>(`[data-account="${walletAccount(1).address}"]`);
    expect(row?.textContent).toContain('publishing');
  });

  it('creates an account and clears the passphrase fields', async () => {
    const api = new FakeTransport();
    await render(api);
    expect(target.querySelector('[data-testid="wallet-empty"]')).not.toBeNull();
    field('wallet-new', target).click();
    flushSync();
    const form = target.querySelector('[data-testid="wallet-create-form"]')!;
    type(field('wallet-name', form), 'mine');
    type(field('wallet-passphrase', form), 'a long passphrase');
    type(field('wallet-confirm', form), 'a long passphrase');
    field('wallet-create-submit', form).click();
    await settle();
    expect(api.callsOf('createAccount')).toEqual([[{ name: 'mine', passphrase: 'a long passphrase' }]]);
    expect(target.querySelector('[data-testid="wallet-create-form"]')).toBeNull();
    expect(target.querySelector('[data-testid="wallet-added"]')?.textContent).toContain(walletAccount(1).address);
    expect(target.querySelectorAll('[data-account]')).toHaveLength(1);
    // reopening shows empty fields: nothing secret was kept
    field('wallet-new', target).click();
    flushSync();
    expect(field('wallet-passphrase', target).value).toBe('');
    expect(field('wallet-confirm', target).value).toBe('');
  });

  it('imports a mnemonic account, and clears the secret even when refused', async () => {
    const api = new FakeTransport();
    await render(api);
    field('wallet-import', target).click();
    flushSync();
    const mnemonic = field('wallet-kind-mnemonic', target);
    mnemonic.checked = true;
    mnemonic.dispatchEvent(new Event('change', { bubbles: true }));
    flushSync();
    const words = 'test test test test test test test test test test test junk';
    type(field('wallet-secret', target), words);
    type(field('wallet-index', target), '2');
    type(field('wallet-passphrase', target), 'short');
    type(field('wallet-confirm', target), 'short');
    field('wallet-import-submit', target).click();
    await settle();
    expect(target.querySelector('[data-testid="wallet-action-error"]')?.textContent).toContain('Use at least 8 characters');
    expect(field('wallet-secret', target).value).toBe('');
    expect(field('wallet-passphrase', target).value).toBe('');

    type(field('wallet-secret', target), words);
    type(field('wallet-passphrase', target), 'a long passphrase');
    type(field('wallet-confirm', target), 'a long passphrase');
    field('wallet-import-submit', target).click();
    await settle();
    expect(api.callsOf('importAccount').at(-1)).toEqual([{ mnemonic: words, index: 2, name: null, passphrase: 'a long passphrase' }]);
    expect(target.querySelector('[data-testid="wallet-import-form"]')).toBeNull();
  });
});

describe('Settings: chain', () => {
  it('shows the local chain and starts it', async () => {
    const api = new FakeTransport();
    await render(api);
    const status = target.querySelector<HTMLElement>('[data-testid="chain-status"]')!;
    expect(status.dataset.local).toBe('true');
    expect(status.dataset.reachable).toBe('false');
    expect(target.querySelector('[data-testid="chain-reachable"]')?.textContent).toContain('Not running');
    expect(field('chain-up', target).textContent).toContain('Start local chain');
    field('chain-up', target).click();
    await settle();
    expect(api.callsOf('chainUp')).toHaveLength(1);
    expect(target.querySelector<HTMLElement>('[data-testid="chain-status"]')?.dataset.reachable).toBe('true');
    expect(target.querySelector('[data-testid="chain-reachable"]')?.textContent).toContain('block 12');
  });

  it('saves a remote chain, and goes back to the local one', async () => {
    const api = new FakeTransport();
    await render(api);
    type(field('chain-rpc-url', target), 'https://rpc.example');
    type(field('chain-id', target), '84532');
    type(field('chain-registry', target), address(0xa1));
    type(field('chain-splitter', target), address(0xa2));
    field('chain-save', target).click();
    await settle();
    expect(api.callsOf('putChainSettings')).toEqual([[{ rpc_url: 'https://rpc.example', chain_id: 84532, registry: address(0xa1), splitter: address(0xa2) }]]);
    expect(target.querySelector('[data-testid="chain-saved"]')).not.toBeNull();
    expect(target.querySelector<HTMLElement>('[data-testid="chain-status"]')?.dataset.local).toBe('false');

    field('chain-use-local', target).click();
    flushSync();
    expect(target.querySelector('[data-testid="chain-id"]')).toBeNull();
    field('chain-save', target).click();
    await settle();
    expect(api.callsOf('putChainSettings').at(-1)).toEqual([{ rpc_url: '', chain_id: null, registry: null, splitter: null }]);
  });

  it('shows the studio’s refusal of a chain', async () => {
    const api = new FakeTransport();
    await render(api);
    api.failures.putChainSettings = new ApiException('no AdapterRegistry at that address', 'Check the registry address', 400);
    type(field('chain-rpc-url', target), 'https://rpc.example');
    type(field('chain-id', target), '1');
    type(field('chain-registry', target), address(0xa1));
    type(field('chain-splitter', target), address(0xa2));
    field('chain-save', target).click();
    await settle();
    expect(target.querySelector('[data-testid="chain-action-error"]')?.textContent).toContain('Check the registry address');
  });
});
