/** One server-sent event: its type (`message` when the stream names none) and its data. */
export type SseEvent = { event: string; data: string };

/**
 * Splits a `text/event-stream` body into events as its chunks arrive, per the HTML standard's
 * rules: `event:` and `data:` fields, one optional space after the colon, several `data:`
 * lines joined with newlines, comment lines (`:`) ignored, and LF, CRLF or CR line endings.
 */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];

  /** Feeds a chunk of text; returns the events it completed. */
  push(chunk: string): SseEvent[] {
    this.#buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      if (!match) break;
      // a lone CR at the very end may be the first half of CRLF: wait for the next chunk
      if (match[0] === '\r' && match.index === this.#buffer.length - 1) break;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      const event = this.#line(line);
      if (event) out.push(event);
    }
    return out;
  }

  /** Ends the stream: a last event without its blank line is dropped, as browsers do. */
  end(): void {
    this.#buffer = '';
    this.#event = '';
    this.#data = [];
  }

  #line(line: string): SseEvent | null {
    if (line === '') {
      if (this.#data.length === 0) {
        this.#event = '';
        return null;
      }
      const event = { event: this.#event || 'message', data: this.#data.join('\n') };
      this.#event = '';
      this.#data = [];
      return event;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.#event = value;
    else if (field === 'data') this.#data.push(value);
    return null;
  }
}
