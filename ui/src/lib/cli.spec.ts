import { describe, expect, it } from 'vitest';
import { addModelCommand, removeModelCommand, shellQuote } from './cli';

describe('shellQuote', () => {
  it('leaves plain arguments alone', () => {
    expect(shellQuote('HuggingFaceTB/SmolLM2-135M-Instruct')).toBe('HuggingFaceTB/SmolLM2-135M-Instruct');
    expect(shellQuote('/models/a.gguf')).toBe('/models/a.gguf');
  });
  it('quotes spaces, quotes and empty strings', () => {
    expect(shellQuote('/my models/a.gguf')).toBe("'/my models/a.gguf'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellQuote('')).toBe("''");
    expect(shellQuote('$(rm -rf ~)')).toBe("'$(rm -rf ~)'");
  });
  it('builds the models commands', () => {
    expect(addModelCommand('  HuggingFaceTB/SmolLM2-135M-Instruct ')).toBe(
      'modelfactory models add HuggingFaceTB/SmolLM2-135M-Instruct',
    );
    expect(removeModelCommand('smollm2-135m-instruct')).toBe('modelfactory models remove smollm2-135m-instruct');
  });
});
