import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { VerifyReport, VerifyRequest } from '../api/types';

/** Contribution ids from a text box: one per line (commas and spaces also separate), without repeats. */
export function parseContributions(text: string): string[] {
  const ids = text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return [...new Set(ids)];
}

/** The `modelfactory verify` command for a request. */
export function verifyCommand(request: VerifyRequest): string {
  const quote = (p: string) => (/^[\w./:@=-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`);
  const parts = ['modelfactory', 'verify', request.target.trim() || 'TARGET'];
  if (request.hub) parts.push('--hub', request.hub);
  for (const id of request.contributions ?? []) parts.push('--contribution', id);
  if (request.skip_chain) parts.push('--skip-chain');
  return parts.map(quote).join(' ');
}

/**
 * The Verify view: an adapter folder or a hub repository, checked against its lineage
 * manifest, its publisher's signature, the registry's record and its Datanets' roots.
 */
export class VerifyManager {
  #target = $state('');
  #hub = $state('');
  #contributions = $state('');
  #skipChain = $state(false);
  #report = $state<VerifyReport | null>(null);
  #running = $state(false);
  #error = $state<ApiException | null>(null);

  #client: ApiClient | null = null;

  get target(): string {
    return this.#target;
  }
  get hub(): string {
    return this.#hub;
  }
  /** The contribution ids as typed, one per line. */
  get contributions(): string {
    return this.#contributions;
  }
  get skipChain(): boolean {
    return this.#skipChain;
  }
  get report(): VerifyReport | null {
    return this.#report;
  }
  get running(): boolean {
    return this.#running;
  }
  get error(): ApiException | null {
    return this.#error;
  }
  get request(): VerifyRequest {
    return {
      target: this.#target.trim(),
      hub: this.#hub.trim() || null,
      contributions: parseContributions(this.#contributions),
      skip_chain: this.#skipChain,
    };
  }
  get command(): string {
    return verifyCommand(this.request);
  }

  connect(client: ApiClient): void {
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
  }

  /** Back to an empty form. */
  reset(): void {
    this.#target = '';
    this.#hub = '';
    this.#contributions = '';
    this.#skipChain = false;
    this.#report = null;
    this.#error = null;
  }

  setTarget(target: string): void {
    this.#target = target;
  }
  setHub(hub: string): void {
    this.#hub = hub;
  }
  setContributions(text: string): void {
    this.#contributions = text;
  }
  setSkipChain(skip: boolean): void {
    this.#skipChain = skip;
  }

  /** Runs every check; a failing adapter is a report with `ok: false`, not an error. */
  async run(): Promise<VerifyReport | null> {
    if (this.#running) return null;
    const request = this.request;
    if (!request.target) {
      this.#error = new ApiException('Give an adapter folder or a repository id (owner/name)', null);
      return null;
    }
    if (!this.#client) {
      this.#error = new ApiException('Not connected to the studio', null);
      return null;
    }
    this.#running = true;
    this.#error = null;
    try {
      const report = await this.#client.verify(request);
      this.#report = report;
      return report;
    } catch (e) {
      this.#report = null;
      this.#error = toApiException(e);
      return null;
    } finally {
      this.#running = false;
    }
  }
}

export const verifyManager = new VerifyManager();
