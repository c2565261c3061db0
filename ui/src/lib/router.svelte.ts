import { DEFAULT_SCREEN, parseRoute, routeHref, screenInfo, type ScreenId } from './screens';

type WindowLike = Pick<Window, 'addEventListener' | 'removeEventListener'> & {
  location: Pick<Location, 'hash' | 'pathname' | 'search'>;
  history: Pick<History, 'replaceState' | 'state'>;
  document?: { title: string };
};

/** Hash routing: `#/models`, `#/settings`, … Unknown or empty hashes go to `#/models`. */
export class Router {
  #current = $state<ScreenId>(DEFAULT_SCREEN);
  #win: WindowLike | null = null;
  #onHashChange = () => this.#sync();

  get current(): ScreenId {
    return this.#current;
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
    } else {
      this.#current = route;
    }
    if (win.document) win.document.title = `${screenInfo(this.#current).title} · ModelFactory`;
  }
}

export const router = new Router();
