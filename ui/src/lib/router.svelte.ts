import { DEFAULT_SCREEN, parseQuery, parseRoute, parseSubroute, routeHref, screenInfo, type ScreenId } from './screens';

type WindowLike = Pick<Window, 'addEventListener' | 'removeEventListener'> & {
  location: Pick<Location, 'hash' | 'pathname' | 'search'>;
  history: Pick<History, 'replaceState' | 'state'>;
  document?: { title: string };
};

/**
 * Hash routing: `#/models`, `#/settings`, … Unknown or empty hashes go to `#/models`. A screen
 * may have places inside it (`#/finetune/runs/<id>`): `sub` is that part, so a reload reopens it.
 */
export class Router {
  #current = $state<ScreenId>(DEFAULT_SCREEN);
  #sub = $state('');
  #query = $state<Record<string, string>>({});
  #win: WindowLike | null = null;
  #onHashChange = () => this.#sync();

  get current(): ScreenId {
    return this.#current;
  }
  /** The address inside the current screen, e.g. 'runs/abc'; '' for the screen itself. */
  get sub(): string {
    return this.#sub;
  }

  /** What the address asks of the screen (`#/finetune?dataset=…`); empty for most addresses. */
  get query(): Record<string, string> {
    return this.#query;
  }

  /** Goes to a screen (and a place inside it, with a query); Back returns here. */
  go(id: ScreenId, sub = '', query: Record<string, string> = {}): void {
    const win = this.#win;
    const href = routeHref(id, sub, query);
    if (!win) {
      this.#current = id;
      this.#sub = sub;
      this.#query = { ...query };
      return;
    }
    if (win.location.hash === href) return;
    win.location.hash = href;
    // hashchange arrives later; show the place now
    this.#sync();
  }

  start(win: WindowLike): void {
    this.stop();
    this.#win = win;
    win.addEventListener('hashchange', this.#onHashChange);
    this.#sync();
  }

  stop(): void {
    this.#win?.removeEventListener('hashchange', this.#onHashChange);
    this.#win = null;
  }

  #sync(): void {
    const win = this.#win;
    if (!win) return;
    const route = parseRoute(win.location.hash);
    if (route === null) {
      // replace rather than push, so Back does not bounce to an unknown route
      win.history.replaceState(win.history.state, '', `${win.location.pathname}${win.location.search}${routeHref(DEFAULT_SCREEN)}`);
      this.#current = DEFAULT_SCREEN;
      this.#sub = '';
      this.#query = {};
    } else {
      this.#current = route;
      this.#sub = parseSubroute(win.location.hash);
      this.#query = parseQuery(win.location.hash);
    }
    if (win.document) win.document.title = `${screenInfo(this.#current).title} · ModelFactory`;
  }
}

export const router = new Router();
