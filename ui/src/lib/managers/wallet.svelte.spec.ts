import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { FakeTransport, walletAccount } from '../testing/fake-transport';
import { WalletManager, importProblem, passphraseProblem } from './wallet.svelte';

function setup() {
  const api = new FakeTransport();
  api.accounts = [walletAccount(1)];
  const wallet = new WalletManager();
  wallet.connect(api);
  return { api, wallet };
}

const KEY = `0x${'4c'.repeat(32)}`;
const MNEMONIC = 'test test test test test test test test test test test junk';

describe('WalletManager', () => {
  it('checks passphrases and keys before asking the studio', () => {
    expect(passphraseProblem('', '')).toBe('Choose a passphrase');
    expect(passphraseProblem('correct horse', 'correct hose')).toBe('The two passphrases differ');
    expect(passphraseProblem('correct horse', 'correct horse')).toBeNull();
    expect(importProblem({ kind: 'private_key', secret: KEY, index: 0 })).toBeNull();
    expect(importProblem({ kind: 'private_key', secret: '4c'.repeat(32), index: 0 })).toBeNull();
    expect(importProblem({ kind: 'private_key', secret: '0x1234', index: 0 })).toMatch(/64 hex digits/);
    expect(importProblem({ kind: 'mnemonic', secret: MNEMONIC, index: 3 })).toBeNull();
    expect(importProblem({ kind: 'mnemonic', secret: 'one two three', index: 0 })).toMatch(/this one has 3/);
    expect(importProblem({ kind: 'mnemonic', secret: MNEMONIC, index: -1 })).toMatch(/whole number/);
  });

  it('lists the accounts', async () => {
    const { wallet } = setup();
    await wallet.load();
    expect(wallet.loaded).toBe(true);
    expect(wallet.accounts.map((a) => a.address)).toEqual([walletAccount(1).address]);
  });

  it('creates an account and lists it, without asking the studio when the passphrases differ', async () => {
    const { api, wallet } = setup();
    await wallet.load();
    expect(await wallet.create({ name: ' me ', passphrase: 'long passphrase', confirm: 'long passphrase!' })).toBeNull();
    expect(wallet.actionError?.error).toBe('The two passphrases differ');
    expect(api.callsOf('createAccount')).toEqual([]);

    const made = await wallet.create({ name: ' me ', passphrase: 'long passphrase', confirm: 'long passphrase' });
    expect(made?.name).toBe('me');
    expect(api.callsOf('createAccount')).toEqual([[{ name: 'me', passphrase: 'long passphrase' }]]);
    expect(wallet.accounts).toHaveLength(2);
    expect(wallet.added?.address).toBe(made?.address);
    expect(wallet.actionError).toBeNull();
    expect(JSON.stringify(Object.entries(wallet))).not.toContain('long passphrase');
  });

  it('imports a private key or a mnemonic account', async () => {
    const { api, wallet } = setup();
    await wallet.load();
    await wallet.importKey({ kind: 'private_key', secret: ` ${KEY} `, index: 0, name: '', passphrase: 'long passphrase', confirm: 'long passphrase' });
    await wallet.importKey({ kind: 'mnemonic', secret: MNEMONIC.replace(/ /g, '  '), index: 2, name: 'dev', passphrase: 'long passphrase', confirm: 'long passphrase' });
    expect(api.callsOf('importAccount')).toEqual([
      [{ private_key: KEY, name: null, passphrase: 'long passphrase' }],
      [{ mnemonic: MNEMONIC, index: 2, name: 'dev', passphrase: 'long passphrase' }],
    ]);
    expect(wallet.accounts).toHaveLength(3);
  });

  it('keeps the studio’s refusal with its hint', async () => {
    const { api, wallet } = setup();
    api.failures.createAccount = new ApiException('the passphrase is too weak', 'Use at least 8 characters', 400);
    expect(await wallet.create({ name: '', passphrase: 'x', confirm: 'x' })).toBeNull();
    expect(wallet.actionError?.hint).toBe('Use at least 8 characters');
    expect(wallet.busy).toBeNull();
    wallet.clearActionError();
    expect(wallet.actionError).toBeNull();
  });
});
