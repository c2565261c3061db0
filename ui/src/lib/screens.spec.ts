import { describe, expect, it } from 'vitest';
import { DEFAULT_SCREEN, SCREENS, parseQuery, parseRoute, parseSubroute, routeHref } from './screens';

describe('screens', () => {
  it('lists exactly the seven screens in navigation order', () => {
    expect(SCREENS.map((s) => s.id)).toEqual(['datanets', 'datasets', 'finetune', 'chat', 'models', 'publish', 'settings']);
    expect(SCREENS.map((s) => s.title)).toEqual(['Datanets', 'Datasets', 'Fine-tune', 'Chat', 'Models', 'Publish', 'Settings']);
  });
  it('marks no screen as not built, and every not-built screen would say so', () => {
    const built = SCREENS.filter((s) => !s.notBuilt).map((s) => s.id);
    expect(built).toEqual(['datanets', 'datasets', 'finetune', 'chat', 'models', 'publish', 'settings']);
    expect(SCREENS.find((s) => s.id === 'publish')?.cli).toBe('modelfactory publish');
    expect(SCREENS.find((s) => s.id === 'datanets')?.cli).toBe('modelfactory datanet list');
    expect(SCREENS.find((s) => s.id === 'datasets')?.cli).toBe('modelfactory dataset list');
    for (const s of SCREENS.filter((s) => s.notBuilt)) {
      expect(s.notBuilt).toMatch(/^Not built yet\./);
      expect(s.notBuilt).toContain(s.cli);
    }
  });
  it('parses hash routes', () => {
    expect(parseRoute('#/models')).toBe('models');
    expect(parseRoute('#/finetune')).toBe('finetune');
    expect(parseRoute('#settings')).toBe('settings');
    expect(parseRoute('#/models/extra')).toBe('models');
    expect(parseRoute('')).toBeNull();
    expect(parseRoute('#/')).toBeNull();
    expect(parseRoute('#/nope')).toBeNull();
    expect(DEFAULT_SCREEN).toBe('models');
    expect(routeHref('chat')).toBe('#/chat');
    expect(routeHref('finetune', 'runs/abc')).toBe('#/finetune/runs/abc');
  });
  it('parses the part of the address inside a screen', () => {
    expect(parseSubroute('#/finetune')).toBe('');
    expect(parseSubroute('#/finetune/runs')).toBe('runs');
    expect(parseSubroute('#/finetune/runs/abc/')).toBe('runs/abc');
    expect(parseSubroute('#/finetune/runs/abc?x=1')).toBe('runs/abc');
    expect(parseRoute('#/finetune/runs/abc')).toBe('finetune');
    expect(parseSubroute('#/datasets/curate/modelfactory/python-faq')).toBe('curate/modelfactory/python-faq');
  });
  it('parses and writes the query of an address', () => {
    expect(parseQuery('#/finetune')).toEqual({});
    expect(parseQuery('#/finetune?dataset=%2Fdata%2Ffaq%20accepted.jsonl')).toEqual({ dataset: '/data/faq accepted.jsonl' });
    const href = routeHref('finetune', '', { dataset: '/data/faq accepted.jsonl' });
    expect(href).toBe('#/finetune?dataset=%2Fdata%2Ffaq+accepted.jsonl');
    expect(parseRoute(href)).toBe('finetune');
    expect(parseSubroute(href)).toBe('');
    expect(parseQuery(href)).toEqual({ dataset: '/data/faq accepted.jsonl' });
    expect(routeHref('datasets', 'named/x', {})).toBe('#/datasets/named/x');
  });
});
