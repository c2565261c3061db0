import { DEFAULT_SAMPLING, presetConfig, type Preset, type SamplingParams, type TrainConfig } from './api/types';
import { KNOBS, knobValue, sameValue } from './train-knobs';

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
export function flagNumber(n: number): string {
  return String(Number.isInteger(n) ? n : Number(n.toPrecision(6)));
}

/**
 * `modelfactory chat --model <id> …` with the sampling flags that differ from the runtime's
 * defaults, and the question when there is one.
 */
export function chatCommand(modelId: string, sampling: SamplingParams, prompt = '', adapterRunId: string | null = null): string {
  const parts = ['modelfactory chat --model', shellQuote(modelId)];
  if (adapterRunId) parts.push('--adapter', shellQuote(adapterRunId));
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

export type TrainForm = {
  modelId: string;
  dataset: string;
  name: string;
  preset: Preset;
  config: TrainConfig;
};

export type TrainCommand = {
  command: string;
  /** Settings that differ from the preset and have no flag (set them in a run file's `[config]`). */
  withoutFlag: string[];
};

/**
 * `modelfactory train --model … --data … --preset …` and a flag for every setting that differs
 * from the preset: what the Fine-tune screen would start, from a terminal.
 */
export function trainCommand(form: TrainForm): TrainCommand {
  const parts = ['modelfactory train', '--model', shellQuote(form.modelId.trim() || '<model>'), '--data', shellQuote(form.dataset.trim() || '<file>')];
  if (form.name.trim()) parts.push('--name', shellQuote(form.name.trim()));
  parts.push('--preset', form.preset);
  const base = presetConfig(form.preset);
  if (form.config.method !== base.method) parts.push('--method', form.config.method);
  const withoutFlag: string[] = [];
  for (const k of KNOBS) {
    const value = knobValue(k, form.config);
    if (sameValue(value, knobValue(k, base))) continue;
    if (k.flag === null) {
      withoutFlag.push(k.label);
      continue;
    }
    if (typeof value === 'boolean') {
      // the CLI's switches only turn a setting on; every preset has them off
      if (value) parts.push(k.flag);
      else withoutFlag.push(k.label);
    } else if (typeof value === 'number') parts.push(k.flag, flagNumber(value));
    else if (Array.isArray(value)) parts.push(k.flag, value.join(','));
    else if (value === null || value === '') withoutFlag.push(k.label);
    else parts.push(k.flag, shellQuote(value));
  }
  return { command: parts.join(' '), withoutFlag };
}
