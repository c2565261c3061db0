import { describe, expect, it } from 'vitest';
import { formatBytes, formatContextLength, formatCount, formatFraction, formatParameters, formatTokensPerSecond, rawValue } from './format';

describe('formatParameters', () => {
  it('uses M and B with three significant digits', () => {
    expect(formatParameters(134_515_008)).toBe('134.5M');
    expect(formatParameters(1_235_814_400)).toBe('1.24B');
    expect(formatParameters(7_241_732_096)).toBe('7.24B');
    expect(formatParameters(12_300_000_000)).toBe('12.3B');
    expect(formatParameters(360_000_000)).toBe('360M');
    expect(formatParameters(4_900_000)).toBe('4.9M');
  });
  it('handles small counts and rounding across units', () => {
    expect(formatParameters(0)).toBe('0');
    expect(formatParameters(999)).toBe('999');
    expect(formatParameters(1_500)).toBe('1.5K');
    expect(formatParameters(999_960_000)).toBe('1B');
  });
  it('shows a dash for missing values', () => {
    expect(formatParameters(null)).toBe('—');
    expect(formatParameters(Number.NaN)).toBe('—');
  });
});

describe('formatBytes', () => {
  it('uses decimal units', () => {
    expect(formatBytes(98_903_328)).toBe('98.9 MB');
    expect(formatBytes(1_000_000)).toBe('1 MB');
    expect(formatBytes(2_470_000_000)).toBe('2.47 GB');
    expect(formatBytes(269_060_552)).toBe('269.1 MB');
    expect(formatBytes(1_500)).toBe('1.5 kB');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(0)).toBe('0 B');
  });
  it('never uses binary units', () => {
    // 1 MiB is 1.05 MB, not "1 MB"
    expect(formatBytes(1_048_576)).toBe('1.05 MB');
  });
});

describe('formatContextLength and formatCount', () => {
  it('adds thousands separators', () => {
    expect(formatContextLength(8192)).toBe('8,192');
    expect(formatContextLength(131_072)).toBe('131,072');
    expect(formatContextLength(1_048_576)).toBe('1,048,576');
    expect(formatContextLength(512)).toBe('512');
    expect(formatCount(-1234)).toBe('-1,234');
  });
  it('shows a dash for an unknown context length', () => {
    expect(formatContextLength(null)).toBe('—');
  });
});

describe('formatFraction', () => {
  it('clamps and floors', () => {
    expect(formatFraction(0)).toBe('0%');
    expect(formatFraction(0.424)).toBe('42%');
    expect(formatFraction(0.57)).toBe('57%');
    expect(formatFraction(0.29)).toBe('29%');
    expect(formatFraction(0.999)).toBe('99%');
    expect(formatFraction(1)).toBe('100%');
    expect(formatFraction(1.7)).toBe('100%');
    expect(formatFraction(-0.2)).toBe('0%');
    expect(formatFraction(Number.NaN)).toBe('0%');
  });
});

describe('rawValue', () => {
  it('writes numbers as given and null as an empty string', () => {
    expect(rawValue(134_515_008)).toBe('134515008');
    expect(rawValue(null)).toBe('');
    expect(rawValue('Q4_1')).toBe('Q4_1');
  });
});

describe('formatTokensPerSecond', () => {
  it('keeps one decimal below 100', () => {
    expect(formatTokensPerSecond(41.25)).toBe('41.3 tokens/s');
    expect(formatTokensPerSecond(0)).toBe('0.0 tokens/s');
    expect(formatTokensPerSecond(212.5)).toBe('213 tokens/s');
    expect(formatTokensPerSecond(Number.NaN)).toBe('—');
  });
});

describe('run figures', () => {
  it('formats durations, losses, learning rates and plain numbers', async () => {
    const { formatDuration, formatLoss, formatLearningRate, formatNumber } = await import('./format');
    expect(formatDuration(42.4)).toBe('42 s');
    expect(formatDuration(130)).toBe('2 min 10 s');
    expect(formatDuration(3725)).toBe('1 h 02 min');
    expect(formatDuration(Number.NaN)).toBe('—');
    expect(formatDuration(-1)).toBe('—');
    expect(formatLoss(5.42461)).toBe('5.425');
    expect(formatLoss(0.012345)).toBe('0.01235');
    expect(formatLoss(null)).toBe('—');
    expect(formatLearningRate(0.0002)).toBe('2.0e-4');
    expect(formatLearningRate(1.5)).toBe('1.5e0');
    expect(formatLearningRate(0)).toBe('0');
    expect(formatNumber(0.1 + 0.2)).toBe('0.3');
    expect(formatNumber(32)).toBe('32');
    expect(formatNumber(Number.NaN)).toBe('—');
  });
});
