import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { Conversation, SamplingParams, StoredMessage } from '../api/types';

export type CompareSide = 'base' | 'adapter';
export const COMPARE_SIDES: readonly CompareSide[] = ['base', 'adapter'];

/** The question of the round being answered, and the answer streaming now. */
export type ComparePending = {
  question: string;
  /** the side answering now */
  side: CompareSide;
  text: string;
  /** sides still to answer after this one */
  waiting: CompareSide[];
};

export type CompareTarget = { modelId: string; adapterRunId: string; sampling: SamplingParams };

/**
 * Base model and adapter side by side: every question goes to two conversations on the same
 * base model, one without and one with the run's adapter. One model answers at a time, so the
 * base answers first and the adapter next; the base model stays loaded between them.
 */
export class CompareManager {
  #enabled = $state(false);
  #base = $state<Conversation | null>(null);
  #adapter = $state<Conversation | null>(null);
  #pending = $state<ComparePending | null>(null);
  #stopping = $state(false);
  #error = $state<ApiException | null>(null);
  /** Stop was pressed: the sides not yet answering are skipped. */
  #skipRest = false;
  #client: ApiClient | null = null;

  /** The Chat screen shows the two sides. */
  get enabled(): boolean {
    return this.#enabled;
  }
  conversation(side: CompareSide): Conversation | null {
    return side === 'base' ? this.#base : this.#adapter;
  }
  get pending(): ComparePending | null {
    return this.#pending;
  }
  get busy(): boolean {
    return this.#pending !== null;
  }
  get stopping(): boolean {
    return this.#stopping;
  }
  get error(): ApiException | null {
    return this.#error;
  }

  connect(client: ApiClient): void {
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
    this.#enabled = false;
    this.reset();
  }

  setEnabled(on: boolean): void {
    if (this.busy) return;
    this.#enabled = on;
    if (!on) this.reset();
  }

  /** The next question starts a new pair of conversations. */
  reset(): void {
    if (this.busy) return;
    this.#base = null;
    this.#adapter = null;
    this.#error = null;
  }

  clearError(): void {
    this.#error = null;
  }

  #matches(target: CompareTarget): boolean {
    const base = this.#base;
    const adapter = this.#adapter;
    return (
      base !== null &&
      adapter !== null &&
      base.model_id === target.modelId &&
      adapter.model_id === target.modelId &&
      base.adapter_run_id === null &&
      adapter.adapter_run_id === target.adapterRunId
    );
  }

  /**
   * Asks both sides the question, the base model first. Resolves true when both answered (or
   * were stopped), false when it could not start or a side failed; `error` then says why, and
   * the answers already given stay.
   */
  async send(content: string, target: CompareTarget | null): Promise<boolean> {
    const question = content.trim();
    if (!question || this.#pending) return false;
    if (!this.#client) {
      this.#error = new ApiException('Not connected to the studio', null);
      return false;
    }
    if (!target) {
      this.#error = new ApiException('Choose an adapter to compare with the base model', 'Finished fine-tuning runs are listed under Adapter.');
      return false;
    }
    const client = this.#client;
    if (!this.#matches(target)) {
      this.#base = null;
      this.#adapter = null;
    }
    this.#error = null;
    this.#skipRest = false;
    const sampling = { ...target.sampling };
    this.#pending = { question, side: 'base', text: '', waiting: ['adapter'] };
    try {
      if (!this.#base) this.#base = await client.createConversation({ model_id: target.modelId, sampling });
      if (!this.#adapter) {
        this.#adapter = await client.createConversation({ model_id: target.modelId, adapter_run_id: target.adapterRunId, sampling });
      }
      for (const [i, side] of COMPARE_SIDES.entries()) {
        if (this.#skipRest) break;
        const open = this.conversation(side);
        if (!open) break;
        this.#pending = { question, side, text: '', waiting: COMPARE_SIDES.slice(i + 1) };
        const result = await client.sendMessage(open.id, { content: question, sampling }, (text) => {
          if (this.#pending?.side === side) this.#pending.text += text;
        });
        const asked: StoredMessage = { seq: result.message.seq - 1, role: 'user', content: question, stats: null, created_at: result.message.created_at };
        const updated: Conversation = { ...open, sampling, updated_at: result.message.created_at, messages: [...open.messages, asked, result.message] };
        if (side === 'base') this.#base = updated;
        else this.#adapter = updated;
      }
      return true;
    } catch (e) {
      this.#error = toApiException(e);
      return false;
    } finally {
      this.#pending = null;
      this.#stopping = false;
      this.#skipRest = false;
    }
  }

  /** Stops the answer streaming now (kept as far as it got) and skips the side still waiting. */
  async stop(): Promise<void> {
    const pending = this.#pending;
    if (!pending || this.#stopping || !this.#client) return;
    const open = this.conversation(pending.side);
    this.#stopping = true;
    this.#skipRest = true;
    if (!open) return;
    try {
      await this.#client.stopAnswer(open.id);
    } catch (e) {
      this.#stopping = false;
      this.#error = toApiException(e);
    }
  }
}

export const compareManager = new CompareManager();
