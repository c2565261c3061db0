import { DEFAULT_SAMPLING, type SamplingParams } from './api/types';

/** Quotes one argument for a POSIX shell, only when it needs it. */
export function shellQuote(arg: string): string {
  if (arg !== '' && /^[A-Za-z0-9_./:@=+,%-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `modelfactory models add <source>`, quoted for a shell. */
export function addModelCommand(source: string): string {
  return `modelfactory models add ${shellQuote(source.trim())}`;
}

export function removeModelCommand(id: string): string {
  return `modelfactory models remove ${shellQuote(id)}`;
}

/** The number as a flag value: 0.7, not 0.7000000000000001; whole numbers without a point. */
function flagNumber(n: number): string {
  return String(Number.isInteger(n) ? n : Number(n.toPrecision(6)));
}

/**
 * `modelfactory chat --model <id> …` with the sampling flags that differ from the runtime's
 * defaults, and the question when there is one.
 */
export function chatCommand(modelId: string, sampling: SamplingParams, prompt = ''): string {
  const parts = ['modelfactory chat --model', shellQuote(modelId)];
  const flags: [keyof SamplingParams, string][] = [
    ['temperature', '--temperature'],
    ['top_k', '--top-k'],
    ['top_p', '--top-p'],
    ['repetition_penalty', '--repeat-penalty'],
    ['max_new_tokens', '--max-tokens'],
    ['seed', '--seed'],
  ];
  for (const [field, flag] of flags) {
    const value = sampling[field];
    if (value === null || value === DEFAULT_SAMPLING[field]) continue;
    parts.push(flag, flagNumber(value));
  }
  if (prompt.trim()) parts.push('--prompt', shellQuote(prompt.trim()));
  return parts.join(' ');
}
