import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { WalletAccount } from '../api/types';

/** A new account: a passphrase typed twice, and an optional name. */
export type NewAccountForm = { name: string; passphrase: string; confirm: string };

/** An import: a private key, or a mnemonic and the account index on m/44'/60'/0'/0/i. */
export type ImportForm = {
  kind: 'private_key' | 'mnemonic';
  secret: string;
  index: number;
  name: string;
  passphrase: string;
  confirm: string;
};

/** Why a passphrase cannot be used; null when it can. The keystore may still refuse a weak one. */
export function passphraseProblem(passphrase: string, confirm: string): string | null {
  if (passphrase.length === 0) return 'Choose a passphrase';
  if (passphrase !== confirm) return 'The two passphrases differ';
  return null;
}

/** Why a key to import cannot be used; null when it can. */
export function importProblem(form: Pick<ImportForm, 'kind' | 'secret' | 'index'>): string | null {
  const secret = form.secret.trim();
  if (form.kind === 'private_key') {
    if (!secret) return 'Paste the private key';
    if (!/^(0x)?[0-9a-fA-F]{64}$/.test(secret)) return 'A private key is 64 hex digits, with or without 0x';
    return null;
  }
  if (!secret) return 'Type the mnemonic';
  const words = secret.split(/\s+/).length;
  if (![12, 15, 18, 21, 24].includes(words)) return `A mnemonic has 12, 15, 18, 21 or 24 words; this one has ${words}`;
  if (!Number.isInteger(form.index) || form.index < 0) return 'The account index is a whole number from 0';
  return null;
}

/**
 * The accounts in the workspace's keystore. Creating and importing take the passphrase (and
 * the key) as arguments and pass them straight to the studio: nothing secret is kept here.
 */
export class WalletManager {
  #accounts = $state<WalletAccount[]>([]);
  #loaded = $state(false);
  #error = $state<ApiException | null>(null);
  #busy = $state<'create' | 'import' | null>(null);
  #actionError = $state<ApiException | null>(null);
  /** The account created or imported last, to point it out. */
  #added = $state<WalletAccount | null>(null);

  #client: ApiClient | null = null;

  get accounts(): WalletAccount[] {
    return this.#accounts;
  }
  get loaded(): boolean {
    return this.#loaded;
  }
  get error(): ApiException | null {
    return this.#error;
  }
  /** What is being done now: creating or importing an account. */
  get busy(): 'create' | 'import' | null {
    return this.#busy;
  }
  /** Why the last create or import failed. */
  get actionError(): ApiException | null {
    return this.#actionError;
  }
  get added(): WalletAccount | null {
    return this.#added;
  }

  connect(client: ApiClient): void {
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
    this.#accounts = [];
    this.#loaded = false;
    this.#error = null;
    this.#actionError = null;
    this.#added = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  async load(): Promise<void> {
    try {
      this.#accounts = await this.#need().walletAccounts();
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    } finally {
      this.#loaded = true;
    }
  }

  /** Creates an account with a new random key; null when it could not (`actionError` says why). */
  async create(form: NewAccountForm): Promise<WalletAccount | null> {
    if (this.#busy) return null;
    const problem = passphraseProblem(form.passphrase, form.confirm);
    if (problem) {
      this.#actionError = new ApiException(problem, null);
      return null;
    }
    return this.#add('create', () => this.#need().createAccount({ name: form.name.trim() || null, passphrase: form.passphrase }));
  }

  /** Imports a private key or a mnemonic's account; null when it could not (`actionError` says why). */
  async importKey(form: ImportForm): Promise<WalletAccount | null> {
    if (this.#busy) return null;
    const problem = importProblem(form) ?? passphraseProblem(form.passphrase, form.confirm);
    if (problem) {
      this.#actionError = new ApiException(problem, null);
      return null;
    }
    const secret = form.secret.trim();
    const name = form.name.trim() || null;
    return this.#add('import', () =>
      this.#need().importAccount(
        form.kind === 'private_key'
          ? { private_key: secret, name, passphrase: form.passphrase }
          : { mnemonic: secret.split(/\s+/).join(' '), index: form.index, name, passphrase: form.passphrase },
      ),
    );
  }

  clearActionError(): void {
    this.#actionError = null;
  }

  async #add(what: 'create' | 'import', call: () => Promise<WalletAccount>): Promise<WalletAccount | null> {
    this.#busy = what;
    this.#actionError = null;
    try {
      const account = await call();
      this.#added = account;
      this.#accounts = [...this.#accounts.filter((a) => a.address.toLowerCase() !== account.address.toLowerCase()), account];
      return account;
    } catch (e) {
      this.#actionError = toApiException(e);
      return null;
    } finally {
      this.#busy = null;
    }
  }
}

export const walletManager = new WalletManager();
