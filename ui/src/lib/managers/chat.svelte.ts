import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import {
  DEFAULT_SAMPLING,
  type Conversation,
  type ConversationSummary,
  type ModelSummary,
  type SamplingParams,
} from '../api/types';

/** The question being answered and the answer so far, shown until the stored answer replaces them. */
export type PendingAnswer = {
  /** null while the conversation for a first question is being created */
  conversationId: string | null;
  question: string;
  text: string;
};

function summaryOf(c: Conversation): ConversationSummary {
  return {
    id: c.id,
    title: c.title,
    model_id: c.model_id,
    adapter_run_id: c.adapter_run_id,
    message_count: c.messages.filter((m) => m.role !== 'system').length,
    created_at: c.created_at,
    updated_at: c.updated_at,
  };
}

/**
 * Local chat: the workspace's conversations, the one open, the model and sampling settings for
 * the next question, and the answer being streamed. Conversations live in the studio; this is a
 * view of them. A first question with no conversation open starts a new one.
 */
export class ChatManager {
  #conversations = $state<ConversationSummary[]>([]);
  #current = $state<Conversation | null>(null);
  #modelId = $state<string | null>(null);
  #adapterRunId = $state<string | null>(null);
  #sampling = $state<SamplingParams>({ ...DEFAULT_SAMPLING });
  #pending = $state<PendingAnswer | null>(null);
  #stopping = $state(false);
  #error = $state<ApiException | null>(null);
  #loaded = $state(false);

  #client: ApiClient | null = null;

  /** Most recently used first. */
  get conversations(): ConversationSummary[] {
    return this.#conversations;
  }
  /** The open conversation; null for a new one that starts with the next question. */
  get current(): Conversation | null {
    return this.#current;
  }
  /** The model the next question goes to. */
  get modelId(): string | null {
    return this.#modelId;
  }
  /** The fine-tuning run whose adapter answers the next question; null: the base model alone. */
  get adapterRunId(): string | null {
    return this.#adapterRunId;
  }
  get sampling(): SamplingParams {
    return this.#sampling;
  }
  get pending(): PendingAnswer | null {
    return this.#pending;
  }
  /** An answer is being generated (or its conversation created). */
  get busy(): boolean {
    return this.#pending !== null;
  }
  get stopping(): boolean {
    return this.#stopping;
  }
  /** The last failure: loading, sending, stopping, deleting. */
  get error(): ApiException | null {
    return this.#error;
  }
  get loaded(): boolean {
    return this.#loaded;
  }

  connect(client: ApiClient): void {
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
    this.#conversations = [];
    this.#current = null;
    this.#adapterRunId = null;
    this.#pending = null;
    this.#stopping = false;
    this.#error = null;
    this.#loaded = false;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  clearError(): void {
    this.#error = null;
  }

  /** Reloads the list of conversations. */
  async load(): Promise<void> {
    try {
      this.#conversations = await this.#need().listConversations();
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    } finally {
      this.#loaded = true;
    }
  }

  /**
   * Picks a model when none is chosen yet, or when the chosen one left the workspace: the first
   * ready one. Called whenever the model list changes.
   */
  adoptModels(models: ModelSummary[]): void {
    const ready = models.filter((m) => m.status === 'ready');
    if (this.#modelId !== null && models.some((m) => m.id === this.#modelId)) return;
    this.#modelId = ready[0]?.id ?? null;
    // an adapter belongs to its base model
    this.#adapterRunId = null;
  }

  /** Opens a stored conversation, with its model and sampling settings. */
  async select(id: string): Promise<void> {
    if (this.#current?.id === id) return;
    try {
      const c = await this.#need().getConversation(id);
      this.#current = c;
      this.#modelId = c.model_id;
      this.#adapterRunId = c.adapter_run_id;
      this.#sampling = { ...c.sampling };
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    }
  }

  /** Closes the open conversation; the next question starts a new one with the same settings. */
  startNew(): void {
    this.#current = null;
    this.#error = null;
  }

  /** Deletes a conversation and its messages. */
  async remove(id: string): Promise<void> {
    try {
      await this.#need().deleteConversation(id);
      this.#conversations = this.#conversations.filter((c) => c.id !== id);
      if (this.#current?.id === id) this.#current = null;
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    }
  }

  /**
   * Starts a new conversation (with the next question) that answers through a run's adapter,
   * on the run's base model: what "Chat with this adapter" opens.
   */
  startWithAdapter(run: { id: string; model_id: string }): void {
    this.#current = null;
    this.#error = null;
    this.#modelId = run.model_id;
    this.#adapterRunId = run.id;
  }

  /**
   * Chooses the adapter (a run id) or the base model alone (null); an open conversation
   * answers through it from its next question. The base model stays loaded.
   */
  async setAdapter(runId: string | null): Promise<void> {
    this.#adapterRunId = runId;
    const open = this.#current;
    if (!open || open.adapter_run_id === runId) return;
    try {
      const updated = await this.#need().updateConversation(open.id, { adapter_run_id: runId ?? '' });
      if (this.#current?.id === updated.id) this.#current = updated;
      this.#upsertSummary(summaryOf(updated));
      this.#error = null;
    } catch (e) {
      this.#adapterRunId = open.adapter_run_id;
      this.#error = toApiException(e);
    }
  }

  /**
   * Chooses the model; an open conversation moves to it for its next questions. An adapter
   * belongs to its base model, so another model goes back to no adapter.
   */
  async setModel(id: string): Promise<void> {
    const changed = this.#modelId !== id;
    this.#modelId = id;
    if (changed) this.#adapterRunId = null;
    const open = this.#current;
    if (!open || open.model_id === id) return;
    try {
      const update = open.adapter_run_id ? { model_id: id, adapter_run_id: '' } : { model_id: id };
      const updated = await this.#need().updateConversation(open.id, update);
      if (this.#current?.id === updated.id) this.#current = updated;
      this.#upsertSummary(summaryOf(updated));
      this.#error = null;
    } catch (e) {
      this.#error = toApiException(e);
    }
  }

  /** Changes sampling settings; they are stored with the next question. */
  setSampling(patch: Partial<SamplingParams>): void {
    this.#sampling = { ...this.#sampling, ...patch };
  }

  resetSampling(): void {
    this.#sampling = { ...DEFAULT_SAMPLING };
  }

  /**
   * Asks a question in the open conversation (a new one when none is open) and streams the
   * answer into `pending`. Resolves true once the answer is stored (also when it was stopped),
   * false when the question was refused or the answer failed; `error` then says why, and the
   * question is not kept.
   */
  async send(content: string): Promise<boolean> {
    const question = content.trim();
    if (!question || this.#pending) return false;
    let client: ApiClient;
    try {
      client = this.#need();
    } catch (e) {
      this.#error = toApiException(e);
      return false;
    }
    const modelId = this.#modelId;
    if (!modelId) {
      this.#error = new ApiException('Choose a model first', 'Add one on the Models screen if the list is empty.');
      return false;
    }
    this.#error = null;
    const sampling = { ...this.#sampling };
    const pending: PendingAnswer = { conversationId: this.#current?.id ?? null, question, text: '' };
    this.#pending = pending;
    try {
      let open = this.#current;
      if (!open) {
        const adapter = this.#adapterRunId;
        open = await client.createConversation(adapter ? { model_id: modelId, adapter_run_id: adapter, sampling } : { model_id: modelId, sampling });
        this.#current = open;
        this.#upsertSummary(summaryOf(open));
        if (this.#pending) this.#pending.conversationId = open.id;
      }
      const id = open.id;
      const result = await client.sendMessage(id, { content: question, sampling }, (text) => {
        if (this.#pending && this.#pending.conversationId === id) this.#pending.text += text;
      });
      const current = this.#current;
      if (current && current.id === id) {
        const asked = {
          seq: result.message.seq - 1,
          role: 'user' as const,
          content: question,
          stats: null,
          created_at: result.message.created_at,
        };
        const updated: Conversation = {
          ...current,
          sampling,
          updated_at: result.message.created_at,
          messages: [...current.messages, asked, result.message],
        };
        this.#current = updated;
      }
      // titles and order change with an answer
      void this.load();
      return true;
    } catch (e) {
      this.#error = toApiException(e);
      return false;
    } finally {
      this.#pending = null;
      this.#stopping = false;
    }
  }

  /** Stops the answer being generated; what it said so far is kept. */
  async stop(): Promise<void> {
    const id = this.#pending?.conversationId;
    if (!id || this.#stopping) return;
    this.#stopping = true;
    try {
      await this.#need().stopAnswer(id);
    } catch (e) {
      this.#stopping = false;
      this.#error = toApiException(e);
    }
  }

  #upsertSummary(summary: ConversationSummary): void {
    this.#conversations = [summary, ...this.#conversations.filter((c) => c.id !== summary.id)];
  }
}

export const chatManager = new ChatManager();
