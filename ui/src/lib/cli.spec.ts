import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING } from './api/types';
import { addModelCommand, chatCommand, removeModelCommand, shellQuote } from './cli';

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

describe('chatCommand', () => {
  it('names the model and only the sampling flags that differ from the defaults', () => {
    expect(chatCommand('smollm2-135m-instruct', { ...DEFAULT_SAMPLING })).toBe('modelfactory chat --model smollm2-135m-instruct');
    expect(
      chatCommand('m', { temperature: 0, top_k: 0, top_p: 1, repetition_penalty: 1.15, seed: 42, max_new_tokens: 256 }, " What's the capital of France? "),
    ).toBe(
      "modelfactory chat --model m --temperature 0 --top-k 0 --top-p 1 --repeat-penalty 1.15 --max-tokens 256 --seed 42 --prompt 'What'\\''s the capital of France?'",
    );
  });
  it('writes floats as people type them', () => {
    expect(chatCommand('m', { ...DEFAULT_SAMPLING, temperature: 0.1 + 0.2 })).toBe('modelfactory chat --model m --temperature 0.3');
  });
});
