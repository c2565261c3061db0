import { describe, expect, it } from 'vitest';
import { contentAnswer, contentLength, contentPrompt, contentText, curateSub, datasetSub, normalizeTag, oneLine, ratingStars, shortAddress } from './rows';

describe('row helpers', () => {
  const instruction = { instruction: 'Sort a list', input: '[3, 1]', output: 'sorted([3, 1])' };
  const chat = {
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What is a tuple?' },
      { role: 'assistant', content: 'An immutable sequence.' },
    ],
  };

  it('reads the question and the answer of both row shapes', () => {
    expect(contentPrompt(instruction)).toBe('Sort a list\n[3, 1]');
    expect(contentAnswer(instruction)).toBe('sorted([3, 1])');
    expect(contentPrompt(chat)).toBe('What is a tuple?');
    expect(contentAnswer(chat)).toBe('An immutable sequence.');
    expect(contentText(chat)).toContain('Be brief.');
    expect(contentLength({ instruction: 'ab', input: '', output: 'cd' })).toBe(4);
    expect(contentPrompt({ messages: [] })).toBe('');
  });

  it('shortens addresses and text, and shows ratings', () => {
    expect(shortAddress('0x1234567890abcdef1234567890abcdef12345678')).toBe('0x1234…5678');
    expect(shortAddress('local')).toBe('local');
    expect(oneLine('a\n  b', 10)).toBe('a b');
    expect(oneLine('abcdefghijkl', 5)).toBe('abcd…');
    expect(ratingStars(4)).toBe('★★★★☆');
    expect(ratingStars(null)).toBe('');
    expect(normalizeTag('  Needs Review ')).toBe('needs-review');
  });

  it('writes the Datasets screen addresses', () => {
    expect(curateSub('modelfactory/python-faq')).toBe('curate/modelfactory/python-faq');
    expect(curateSub('local/my set')).toBe('curate/local/my%20set');
    expect(datasetSub('faq accepted')).toBe('named/faq%20accepted');
  });
});
