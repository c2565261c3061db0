import type { JobEvent, JobInfo, ModelSummary } from './api/types';

/**
 * Every event on the app's bus, with its payload tuple. `job-event` mirrors the studio's
 * `JobEvent` (docs/api.md); the others are raised by the UI's own managers and screens.
 */
export type Events = {
  /** A job's progress, exactly as the API's event stream delivered it. */
  'job-event': [event: JobEvent];
  /** A job the UI knows about reached a final state (succeeded, failed, cancelled, interrupted). */
  'job-finished': [job: JobInfo];
  /** A model was added to the workspace directly (a local path). */
  'model-added': [model: ModelSummary];
  /** A model was removed from the workspace. */
  'model-removed': [id: string];
  /**
   * The event stream may have dropped events (it reconnected, or the server said `lagged`):
   * whoever draws from events reloads what it shows.
   */
  'jobs-resynced': [];
};

type Handler<A extends unknown[]> = (...args: A) => void;

/** A small event bus whose `on`/`emit` are checked against an event map. */
export class BaseEventManager<E extends { [K in keyof E]: unknown[] }> {
  #handlers = new Map<keyof E, Set<Handler<never[]>>>();

  on<K extends keyof E>(name: K, handler: Handler<E[K]>): () => void {
    let set = this.#handlers.get(name);
    if (!set) {
      set = new Set();
      this.#handlers.set(name, set);
    }
    set.add(handler as unknown as Handler<never[]>);
    return () => {
      set.delete(handler as unknown as Handler<never[]>);
    };
  }

  emit<K extends keyof E>(name: K, ...args: E[K]): void {
    const set = this.#handlers.get(name);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        (handler as unknown as Handler<E[K]>)(...args);
      } catch (e) {
        console.error(`ModelFactory: a handler for "${String(name)}" failed`, e);
      }
    }
  }

  clear(): void {
    this.#handlers.clear();
  }
}

export const eventManager = new BaseEventManager<Events>();
