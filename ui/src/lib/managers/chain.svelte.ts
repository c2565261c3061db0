import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { ChainSettings, ChainStatus } from '../api/types';

/** The form's view of the chain settings: every field as typed. Empty RPC URL = the local chain. */
export type ChainForm = { rpcUrl: string; chainId: string; registry: string; splitter: string };

export const LOCAL_CHAIN_FORM: Readonly<ChainForm> = Object.freeze({ rpcUrl: '', chainId: '', registry: '', splitter: '' });

export function chainForm(settings: ChainSettings): ChainForm {
  return {
    rpcUrl: settings.rpc_url,
    chainId: settings.chain_id === null ? '' : String(settings.chain_id),
    registry: settings.registry ?? '',
    splitter: settings.splitter ?? '',
  };
}

/** Why the form cannot be saved; null when it can. The studio checks a remote chain besides. */
export function chainFormProblem(form: ChainForm): string | null {
  const url = form.rpcUrl.trim();
  if (!url) return null;
  if (!/^https?:\/\//.test(url)) return 'The RPC URL starts with http:// or https://';
  if (!/^\d+$/.test(form.chainId.trim())) return 'A remote chain needs its chain id (a whole number)';
  for (const [label, value] of [
    ['registry', form.registry],
    ['splitter', form.splitter],
  ] as const) {
    if (!/^0x[0-9a-fA-F]{40}$/.test(value.trim())) return `The ${label} address is 0x and 40 hex digits`;
  }
  return null;
}

/** The settings a form asks for; a form without an RPC URL is the local chain. */
export function chainSettingsOf(form: ChainForm): ChainSettings {
  const url = form.rpcUrl.trim();
  if (!url) return { rpc_url: '', chain_id: null, registry: null, splitter: null };
  return {
    rpc_url: url,
    chain_id: Number.parseInt(form.chainId.trim(), 10),
    registry: form.registry.trim() || null,
    splitter: form.splitter.trim() || null,
  };
}

/** Which chain the studio registers adapters on, and whether it answers. */
export class ChainManager {
  #status = $state<ChainStatus | null>(null);
  #statusError = $state<ApiException | null>(null);
  #settings = $state<ChainSettings | null>(null);
  #settingsError = $state<ApiException | null>(null);
  #busy = $state<'up' | 'save' | null>(null);
  #actionError = $state<ApiException | null>(null);

  #client: ApiClient | null = null;

  get status(): ChainStatus | null {
    return this.#status;
  }
  get statusError(): ApiException | null {
    return this.#statusError;
  }
  get settings(): ChainSettings | null {
    return this.#settings;
  }
  get settingsError(): ApiException | null {
    return this.#settingsError;
  }
  get busy(): 'up' | 'save' | null {
    return this.#busy;
  }
  get actionError(): ApiException | null {
    return this.#actionError;
  }

  connect(client: ApiClient): void {
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
    this.#status = null;
    this.#settings = null;
    this.#statusError = null;
    this.#settingsError = null;
    this.#actionError = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  async load(): Promise<void> {
    await Promise.all([this.loadSettings(), this.refresh()]);
  }

  async loadSettings(): Promise<void> {
    try {
      this.#settings = await this.#need().getChainSettings();
      this.#settingsError = null;
    } catch (e) {
      this.#settingsError = toApiException(e);
    }
  }

  /** Asks the chain how it is (for the local chain: whether it runs now). */
  async refresh(): Promise<void> {
    try {
      this.#status = await this.#need().chainStatus();
      this.#statusError = null;
    } catch (e) {
      this.#statusError = toApiException(e);
    }
  }

  /** Starts the local chain (or reaches the configured one) and deploys the contracts when needed. */
  async up(): Promise<boolean> {
    if (this.#busy) return false;
    this.#busy = 'up';
    this.#actionError = null;
    try {
      this.#status = await this.#need().chainUp();
      this.#statusError = null;
      return true;
    } catch (e) {
      this.#actionError = toApiException(e);
      return false;
    } finally {
      this.#busy = null;
    }
  }

  /** Saves the form; a remote chain is checked (chain id, contracts) by the studio first. */
  async save(form: ChainForm): Promise<boolean> {
    if (this.#busy) return false;
    const problem = chainFormProblem(form);
    if (problem) {
      this.#actionError = new ApiException(problem, null);
      return false;
    }
    this.#busy = 'save';
    this.#actionError = null;
    try {
      this.#settings = await this.#need().putChainSettings(chainSettingsOf(form));
      this.#settingsError = null;
    } catch (e) {
      this.#actionError = toApiException(e);
      return false;
    } finally {
      this.#busy = null;
    }
    await this.refresh();
    return true;
  }

  clearActionError(): void {
    this.#actionError = null;
  }
}

export const chainManager = new ChainManager();
