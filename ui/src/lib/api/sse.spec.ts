import { describe, expect, it } from 'vitest';
import { SseParser } from './sse';

describe('SseParser', () => {
  it('reads events split anywhere across chunks', () => {
    const text = 'event: token\ndata: {"text":"Par"}\n\nevent: token\ndata: {"text":"is"}\n\n:keep-alive\n\nevent: done\ndata: {}\n\n';
    for (let size = 1; size <= text.length; size++) {
      const parser = new SseParser();
      const events = [];
      for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)));
      expect(events, `chunks of ${size}`).toEqual([
        { event: 'token', data: '{"text":"Par"}' },
        { event: 'token', data: '{"text":"is"}' },
        { event: 'done', data: '{}' },
      ]);
    }
  });

  it('joins data lines, takes CRLF and CR, and names unnamed events "message"', () => {
    const parser = new SseParser();
    expect(parser.push('data: a\r\ndata:b\r\rdata: c\r')).toEqual([{ event: 'message', data: 'a\nb' }]);
    expect(parser.push('\n\r\n')).toEqual([{ event: 'message', data: 'c' }]);
  });

  it('drops an event the stream ends in the middle of', () => {
    const parser = new SseParser();
    expect(parser.push('event: token\ndata: {"text":"x"}\n')).toEqual([]);
    parser.end();
    expect(parser.push('\n')).toEqual([]);
  });
});
