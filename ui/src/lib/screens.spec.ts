import { describe, expect, it } from 'vitest';
import { DEFAULT_SCREEN, SCREENS, parseRoute, parseSubroute, routeHref } from './screens';

describe('screens', () => {
  it('lists exactly the seven screens in navigation order', () => {
    expect(SCREENS.map((s) => s.id)).toEqual(['datanets', 'datasets', 'finetune', 'chat', 'models', 'publish', 'settings']);
    expect(SCREENS.map((s) => s.title)).toEqual(['Datanets', 'Datasets', 'Fine-tune', 'Chat', 'Models', 'Publish', 'Settings']);
  });
  it('marks only Fine-tune, Chat, Models and Settings as built, and every not-built screen says so', () => {
    const built = SCREENS.filter((s) => !s.notBuilt).map((s) => s.id);
    expect(built).toEqual(['finetune', 'chat', 'models', 'settings']);
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
  });
});
