import { describe, expect, it } from 'vitest';
import { linear, niceTicks, pathOf, stepTicks } from './chart';

describe('chart geometry', () => {
  it('picks round ticks that cover the values', () => {
    expect(niceTicks(5.04, 5.95, 4)).toEqual([5, 5.5, 6]);
    expect(niceTicks(5.04, 5.95, 8)).toEqual([5, 5.2, 5.4, 5.6, 5.8, 6]);
    expect(niceTicks(0, 100, 4)).toEqual([0, 50, 100]);
    const single = niceTicks(2, 2);
    expect(single[0]).toBeLessThanOrEqual(2);
    expect(single.at(-1)).toBeGreaterThanOrEqual(2);
    expect(single.length).toBeGreaterThan(1);
    expect(niceTicks(Number.NaN, 1)).toEqual([]);
    // the last tick is never below the largest value
    expect(niceTicks(4e-5, 1.2e-4, 4)).toEqual([4e-5, 6e-5, 8e-5, 1e-4, 1.2e-4]);
    for (const [min, max] of [
      [4e-5, 1.2000000000000002e-4],
      [0.3, 7.9],
      [5.04, 5.951],
      [-2, 3],
    ] as const) {
      const ticks = niceTicks(min, max, 4);
      expect(ticks[0]!, `${min}..${max}`).toBeLessThanOrEqual(min);
      expect(ticks.at(-1)!, `${min}..${max}`).toBeGreaterThanOrEqual(max);
    }
  });
  it('numbers steps from 1 to the last one', () => {
    expect(stepTicks(1)).toEqual([1, 2]);
    expect(stepTicks(3)).toEqual([1, 2, 3]);
    expect(stepTicks(3, 6, 0)).toEqual([0, 1, 2, 3]);
    const many = stepTicks(54);
    expect(many[0]).toBe(1);
    expect(many.at(-1)).toBe(54);
    expect(many.length).toBeLessThanOrEqual(8);
    expect([...many].sort((a, b) => a - b)).toEqual(many);
  });
  it('maps values to pixels and draws a path', () => {
    const x = linear([1, 3], [0, 100]);
    expect(x(1)).toBe(0);
    expect(x(2)).toBe(50);
    const y = linear([0, 10], [100, 0]);
    expect(pathOf([{ x: 1, y: 0 }, { x: 3, y: 10 }], x, y)).toBe('M0.0,100.0 L100.0,0.0');
  });
});
