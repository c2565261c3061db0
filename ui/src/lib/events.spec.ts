import { describe, expect, it, vi } from 'vitest';
import { BaseEventManager } from './events';

type TestEvents = { ping: [n: number]; pair: [a: string, b: boolean] };

describe('BaseEventManager', () => {
  it('delivers payloads to handlers until they unsubscribe', () => {
    const bus = new BaseEventManager<TestEvents>();
    const ping = vi.fn();
    const off = bus.on('ping', ping);
    bus.emit('ping', 1);
    off();
    bus.emit('ping', 2);
    expect(ping).toHaveBeenCalledTimes(1);
    expect(ping).toHaveBeenCalledWith(1);
  });
  it('keeps delivering when one handler throws', () => {
    const bus = new BaseEventManager<TestEvents>();
    const spy = vi.spyOn(console, 'error').mockImplementation(() => {});
    const second = vi.fn();
    bus.on('pair', () => {
      throw new Error('boom');
    });
    bus.on('pair', second);
    bus.emit('pair', 'x', true);
    expect(second).toHaveBeenCalledWith('x', true);
    spy.mockRestore();
  });
});
