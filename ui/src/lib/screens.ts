/** The studio's screens, in navigation order. */
export type ScreenId = 'datanets' | 'datasets' | 'finetune' | 'chat' | 'models' | 'publish' | 'settings';

export type ScreenInfo = {
  id: ScreenId;
  title: string;
  /** The CLI command for what the screen shows. */
  cli: string;
  /** For screens not built yet: one honest sentence of what will come. The CLI command is planned. */
  notBuilt?: string;
};

export const SCREENS: readonly ScreenInfo[] = [
  { id: 'datanets', title: 'Datanets', cli: 'modelfactory datanet list' },
  { id: 'datasets', title: 'Datasets', cli: 'modelfactory dataset list' },
  { id: 'finetune', title: 'Fine-tune', cli: 'modelfactory runs list' },
  { id: 'chat', title: 'Chat', cli: 'modelfactory chat' },
  { id: 'models', title: 'Models', cli: 'modelfactory models list' },
  { id: 'publish', title: 'Publish', cli: 'modelfactory publish' },
  { id: 'settings', title: 'Settings', cli: 'modelfactory doctor' },
];

export const DEFAULT_SCREEN: ScreenId = 'models';

export function screenInfo(id: ScreenId): ScreenInfo {
  const info = SCREENS.find((s) => s.id === id);
  if (!info) throw new Error(`unknown screen ${id}`);
  return info;
}

/** `#/models` → 'models'; anything else → null. */
export function parseRoute(hash: string): ScreenId | null {
  const path = hash.replace(/^#\/?/, '').split(/[/?]/)[0] ?? '';
  const found = SCREENS.find((s) => s.id === path);
  return found ? found.id : null;
}

/** `#/finetune/runs/abc` → 'runs/abc': where inside its screen the address points; '' when nowhere. */
export function parseSubroute(hash: string): string {
  const path = hash.replace(/^#\/?/, '').split('?')[0] ?? '';
  const slash = path.indexOf('/');
  return slash < 0 ? '' : path.slice(slash + 1).replace(/\/+$/, '');
}

/** `#/finetune?dataset=%2Fd.jsonl` → { dataset: '/d.jsonl' }: what the address asks of its screen. */
export function parseQuery(hash: string): Record<string, string> {
  const at = hash.indexOf('?');
  if (at < 0) return {};
  return Object.fromEntries(new URLSearchParams(hash.slice(at + 1)));
}

/** `#/chat`, `#/finetune/runs/abc` with a subroute, `#/finetune?dataset=…` with a query. */
export function routeHref(id: ScreenId, sub = '', query: Record<string, string> = {}): string {
  const search = new URLSearchParams(query).toString();
  return `${sub ? `#/${id}/${sub}` : `#/${id}`}${search ? `?${search}` : ''}`;
}
