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
  {
    id: 'datanets',
    title: 'Datanets',
    cli: 'modelfactory datanets list',
    notBuilt:
      'Not built yet. Browsing community Datanets and pulling their shards from a Hugging Face–compatible hub arrives with the Datanet milestone; the CLI command will be `modelfactory datanets list`.',
  },
  {
    id: 'datasets',
    title: 'Datasets',
    cli: 'modelfactory datasets list',
    notBuilt:
      'Not built yet. Curating and labeling training rows (search, accept or reject, tags, duplicates, train/eval split, JSONL, CSV and Parquet import) arrives with the dataset milestone; the CLI command will be `modelfactory datasets list`.',
  },
  { id: 'finetune', title: 'Fine-tune', cli: 'modelfactory runs list' },
  { id: 'chat', title: 'Chat', cli: 'modelfactory chat' },
  { id: 'models', title: 'Models', cli: 'modelfactory models list' },
  {
    id: 'publish',
    title: 'Publish',
    cli: 'modelfactory publish',
    notBuilt:
      'Not built yet. Publishing an adapter with its signed lineage manifest, recorded on chain so that contributors are credited, arrives with the publishing milestone; the CLI command will be `modelfactory publish`.',
  },
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

/** `#/chat`, or `#/finetune/runs/abc` with a subroute. */
export function routeHref(id: ScreenId, sub = ''): string {
  return sub ? `#/${id}/${sub}` : `#/${id}`;
}
