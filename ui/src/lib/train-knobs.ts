import {
  LORA_TARGETS,
  presetConfig,
  type BackendName,
  type LoraTarget,
  type LrSchedule,
  type Precision,
  type Preset,
  type TrainConfig,
  type TrainMethod,
} from './api/types';

/**
 * Every knob of a run, once: its label and help for the Advanced section, where it sits in a
 * `TrainConfig`, and its `modelfactory train` flag. The form, the CLI preview and the run view
 * all read this table, so they cannot disagree.
 */
export type KnobId =
  | 'rank'
  | 'alpha'
  | 'dropout'
  | 'rslora'
  | 'targets'
  | 'epochs'
  | 'max_steps'
  | 'batch_size'
  | 'grad_accum'
  | 'learning_rate'
  | 'schedule'
  | 'warmup_steps'
  | 'weight_decay'
  | 'max_grad_norm'
  | 'max_length'
  | 'packing'
  | 'eval_fraction'
  | 'eval_every'
  | 'checkpoint_every'
  | 'keep_checkpoints'
  | 'backend'
  | 'precision'
  | 'gradient_checkpointing'
  | 'seed';

export type KnobGroup = 'adapter' | 'length' | 'optimiser' | 'data' | 'checkpoints' | 'machine';

export const KNOB_GROUPS: readonly { id: KnobGroup; title: string }[] = [
  { id: 'adapter', title: 'Adapter' },
  { id: 'length', title: 'How long to train' },
  { id: 'optimiser', title: 'Learning rate' },
  { id: 'data', title: 'Data' },
  { id: 'checkpoints', title: 'Evaluation and checkpoints' },
  { id: 'machine', title: 'Machine' },
];

type Base = { id: KnobId; label: string; help: string; group: KnobGroup; flag: string | null };
export type NumberKnob = Base & {
  kind: 'number';
  integer: boolean;
  /** null allowed: an empty field (max steps: train by epochs instead) */
  optional: boolean;
  min: number;
  max?: number;
  step: number;
  get(c: TrainConfig): number | null;
  set(c: TrainConfig, v: number | null): void;
};
export type BoolKnob = Base & { kind: 'bool'; get(c: TrainConfig): boolean; set(c: TrainConfig, v: boolean): void };
export type ChoiceKnob = Base & {
  kind: 'choice';
  /** value '' stands for null */
  options: readonly { value: string; label: string }[];
  get(c: TrainConfig): string;
  set(c: TrainConfig, v: string): void;
};
export type TargetsKnob = Base & { kind: 'targets'; get(c: TrainConfig): LoraTarget[]; set(c: TrainConfig, v: LoraTarget[]): void };
export type Knob = NumberKnob | BoolKnob | ChoiceKnob | TargetsKnob;
export type KnobValue = number | null | boolean | string | LoraTarget[];

const SCHEDULES: readonly LrSchedule[] = ['constant', 'linear', 'cosine'];
const PRECISIONS: readonly Precision[] = ['auto', 'f32', 'bf16'];
const BACKENDS: readonly BackendName[] = ['cpu', 'wgpu', 'cuda'];

function int(
  id: KnobId,
  group: KnobGroup,
  label: string,
  help: string,
  flag: string | null,
  min: number,
  get: (c: TrainConfig) => number,
  set: (c: TrainConfig, v: number) => void,
  max?: number,
): NumberKnob {
  return {
    id,
    group,
    label,
    help,
    flag,
    kind: 'number',
    integer: true,
    optional: false,
    min,
    ...(max === undefined ? {} : { max }),
    step: 1,
    get,
    set: (c, v) => set(c, v ?? min),
  };
}

function float(
  id: KnobId,
  group: KnobGroup,
  label: string,
  help: string,
  flag: string,
  min: number,
  step: number,
  get: (c: TrainConfig) => number,
  set: (c: TrainConfig, v: number) => void,
  max?: number,
): NumberKnob {
  return {
    id,
    group,
    label,
    help,
    flag,
    kind: 'number',
    integer: false,
    optional: false,
    min,
    ...(max === undefined ? {} : { max }),
    step,
    get,
    set: (c, v) => set(c, v ?? min),
  };
}

function bool(id: KnobId, group: KnobGroup, label: string, help: string, flag: string, get: (c: TrainConfig) => boolean, set: (c: TrainConfig, v: boolean) => void): BoolKnob {
  return { id, group, label, help, flag, kind: 'bool', get, set };
}

/** In the order of the Advanced section, which is also the order of the CLI flags. */
export const KNOBS: readonly Knob[] = [
  int('rank', 'adapter', 'Rank', 'Size of the adapter: higher learns more, and takes more memory and time.', '--rank', 1, (c) => c.lora.rank, (c, v) => (c.lora.rank = v), 4096),
  float('alpha', 'adapter', 'Alpha', 'Strength of the adapter: its update is scaled by alpha ÷ rank.', '--alpha', 0.01, 1, (c) => c.lora.alpha, (c, v) => (c.lora.alpha = v)),
  float('dropout', 'adapter', 'Dropout', 'Share of the adapter’s inputs dropped at random while training, against over-fitting.', '--dropout', 0, 0.01, (c) => c.lora.dropout, (c, v) => (c.lora.dropout = v), 0.99),
  bool('rslora', 'adapter', 'rsLoRA scaling', 'Scale by alpha ÷ √rank instead (steadier at high ranks).', '--rslora', (c) => c.lora.rslora, (c, v) => (c.lora.rslora = v)),
  {
    id: 'targets',
    group: 'adapter',
    label: 'Layers to adapt',
    help: 'The projections of each block that get an adapter; all seven learn the most.',
    flag: '--targets',
    kind: 'targets',
    get: (c) => c.lora.targets,
    set: (c, v) => (c.lora.targets = LORA_TARGETS.filter((t) => v.includes(t))),
  },
  float('epochs', 'length', 'Epochs', 'Passes over the training examples (fractions allowed).', '--epochs', 0.1, 0.5, (c) => c.epochs, (c, v) => (c.epochs = v)),
  {
    id: 'max_steps',
    group: 'length',
    label: 'Max steps',
    help: 'Stop after this many steps instead of counting epochs; empty: train by epochs.',
    flag: '--max-steps',
    kind: 'number',
    integer: true,
    optional: true,
    min: 1,
    step: 1,
    get: (c) => c.max_steps,
    set: (c, v) => (c.max_steps = v),
  },
  int('batch_size', 'length', 'Batch size', 'Examples processed together.', '--batch-size', 1, (c) => c.batch_size, (c, v) => (c.batch_size = v)),
  int('grad_accum', 'length', 'Gradient accumulation', 'Batches added up into one step: examples per step = batch size × this.', '--grad-accum', 1, (c) => c.grad_accum, (c, v) => (c.grad_accum = v)),
  float('learning_rate', 'optimiser', 'Learning rate', 'How big each step is at its peak.', '--learning-rate', 0.000001, 0.00001, (c) => c.learning_rate, (c, v) => (c.learning_rate = v), 0.99),
  {
    id: 'schedule',
    group: 'optimiser',
    label: 'Schedule',
    help: 'How the learning rate moves after warm-up.',
    flag: '--schedule',
    kind: 'choice',
    options: SCHEDULES.map((s) => ({ value: s, label: s })),
    get: (c) => c.schedule,
    set: (c, v) => (c.schedule = SCHEDULES.find((s) => s === v) ?? c.schedule),
  },
  int('warmup_steps', 'optimiser', 'Warm-up steps', 'Steps over which the learning rate climbs to its peak.', '--warmup-steps', 0, (c) => c.warmup_steps, (c, v) => (c.warmup_steps = v)),
  float('weight_decay', 'optimiser', 'Weight decay', 'Pulls the adapter’s weights towards zero a little at every step.', '--weight-decay', 0, 0.01, (c) => c.weight_decay, (c, v) => (c.weight_decay = v), 0.99),
  float('max_grad_norm', 'optimiser', 'Gradient clipping', 'Largest gradient norm a step may use; 0 turns clipping off.', '--max-grad-norm', 0, 0.1, (c) => c.max_grad_norm, (c, v) => (c.max_grad_norm = v)),
  int('max_length', 'data', 'Max length', 'Tokens per example; longer examples lose their end.', '--max-length', 8, (c) => c.max_length, (c, v) => (c.max_length = v), 1_048_576),
  bool('packing', 'data', 'Packing', 'Put several short examples into one sequence (faster on short data).', '--packing', (c) => c.packing, (c, v) => (c.packing = v)),
  float('eval_fraction', 'data', 'Held out for evaluation', 'Share of the examples kept aside to measure the eval loss (0 to 0.9).', '--eval-fraction', 0, 0.05, (c) => c.eval_fraction, (c, v) => (c.eval_fraction = v), 0.89),
  int('eval_every', 'checkpoints', 'Evaluate every', 'Steps between two evaluations; 0 evaluates only at the end.', '--eval-every', 0, (c) => c.eval_every, (c, v) => (c.eval_every = v)),
  int('checkpoint_every', 'checkpoints', 'Checkpoint every', 'Steps between two checkpoints (where Resume starts again); 0: only at the end.', '--checkpoint-every', 0, (c) => c.checkpoint_every, (c, v) => (c.checkpoint_every = v)),
  int('keep_checkpoints', 'checkpoints', 'Checkpoints kept', 'Older checkpoints are deleted, besides the best one.', null, 0, (c) => c.keep_checkpoints, (c, v) => (c.keep_checkpoints = v)),
  {
    id: 'backend',
    group: 'machine',
    label: 'Backend',
    help: 'Where the maths runs; “as in Settings” takes the studio’s default.',
    flag: '--backend',
    kind: 'choice',
    options: [{ value: '', label: 'as in Settings' }, ...BACKENDS.map((b) => ({ value: b, label: b }))],
    get: (c) => c.backend ?? '',
    set: (c, v) => (c.backend = BACKENDS.find((b) => b === v) ?? null),
  },
  {
    id: 'precision',
    group: 'machine',
    label: 'Precision',
    help: 'bf16 multiplies the frozen model in half the memory and on a GPU’s tensor cores; the adapter stays f32. Auto is f32 for now.',
    flag: '--precision',
    kind: 'choice',
    options: PRECISIONS.map((p) => ({ value: p, label: p })),
    get: (c) => c.precision,
    set: (c, v) => (c.precision = PRECISIONS.find((p) => p === v) ?? c.precision),
  },
  bool('gradient_checkpointing', 'machine', 'Gradient checkpointing', 'Recompute activations instead of keeping them: less memory, more time.', '--gradient-checkpointing', (c) => c.gradient_checkpointing, (c, v) => (c.gradient_checkpointing = v)),
  int('seed', 'machine', 'Seed', 'The same seed and settings train the same adapter.', '--seed', 0, (c) => c.seed, (c, v) => (c.seed = v)),
];

export function knob(id: KnobId): Knob {
  const found = KNOBS.find((k) => k.id === id);
  if (!found) throw new Error(`unknown knob ${id}`);
  return found;
}

/** The knobs a user changed, with their values. */
export type Overrides = Partial<Record<KnobId, KnobValue>>;

export function knobValue(k: Knob, c: TrainConfig): KnobValue {
  const v = k.get(c);
  return Array.isArray(v) ? [...v] : v;
}

export function sameValue(a: KnobValue, b: KnobValue): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

function setKnob(k: Knob, c: TrainConfig, v: KnobValue): void {
  switch (k.kind) {
    case 'number':
      if (v === null || typeof v === 'number') k.set(c, v);
      break;
    case 'bool':
      if (typeof v === 'boolean') k.set(c, v);
      break;
    case 'choice':
      if (typeof v === 'string') k.set(c, v);
      break;
    case 'targets':
      if (Array.isArray(v)) k.set(c, v);
      break;
  }
}

/** A preset's settings with the method and the user's changes applied. */
export function buildConfig(preset: Preset, method: TrainMethod, overrides: Overrides): TrainConfig {
  const c = presetConfig(preset);
  c.method = method;
  for (const k of KNOBS) {
    const v = overrides[k.id];
    if (v !== undefined) setKnob(k, c, v);
  }
  return c;
}

/** The problems `TrainConfig::validate` would refuse the settings for, in words. */
export function configProblems(c: TrainConfig): string[] {
  const out: string[] = [];
  const whole = (v: number) => Number.isInteger(v) && v >= 0;
  for (const k of KNOBS) {
    if (k.kind !== 'number') continue;
    const v = k.get(c);
    if (v === null) continue;
    if (!Number.isFinite(v)) out.push(`${k.label} is not a number`);
    else if (k.integer && !whole(v)) out.push(`${k.label} must be a whole number`);
  }
  if (!(c.lora.rank >= 1 && c.lora.rank <= 4096)) out.push('Rank must be between 1 and 4096');
  if (!(c.lora.alpha > 0)) out.push('Alpha must be above 0');
  if (!(c.lora.dropout >= 0 && c.lora.dropout < 1)) out.push('Dropout must be at least 0 and below 1');
  if (c.lora.targets.length === 0) out.push('Choose at least one layer to adapt');
  if (!(c.learning_rate > 0 && c.learning_rate < 1)) out.push('The learning rate must be above 0 and below 1');
  if (!(c.weight_decay >= 0 && c.weight_decay < 1)) out.push('Weight decay must be at least 0 and below 1');
  if (!(c.batch_size >= 1 && c.grad_accum >= 1)) out.push('Batch size and gradient accumulation must be at least 1');
  if (c.max_steps === null && !(c.epochs > 0)) out.push('Epochs must be above 0');
  if (c.max_steps !== null && !(c.max_steps >= 1)) out.push('Max steps must be at least 1 (or empty)');
  if (!(c.max_length >= 8 && c.max_length <= 1_048_576)) out.push('Max length must be between 8 and 1,048,576 tokens');
  if (!(c.eval_fraction >= 0 && c.eval_fraction < 0.9)) out.push('The share held out for evaluation must be at least 0 and below 0.9');
  return [...new Set(out)];
}
