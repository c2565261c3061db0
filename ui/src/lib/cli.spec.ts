import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, presetConfig, type TrainConfig } from './api/types';
import { addModelCommand, chatCommand, removeModelCommand, shellQuote, trainCommand } from './cli';
import { KNOBS } from './train-knobs';

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
  it('names the adapter of a run', () => {
    expect(chatCommand('m', { ...DEFAULT_SAMPLING }, 'Hi', 'run-1')).toBe("modelfactory chat --model m --adapter run-1 --prompt Hi");
  });
  it('writes floats as people type them', () => {
    expect(chatCommand('m', { ...DEFAULT_SAMPLING, temperature: 0.1 + 0.2 })).toBe('modelfactory chat --model m --temperature 0.3');
  });
});

/**
 * What `modelfactory train` does with the flags (studio/src/cli/train.rs `apply_knobs`): start
 * from the preset, then set each flag's setting. Used to check that the command recreates the form.
 */
function parse(command: string): TrainConfig {
  const words = command.split(' ');
  const preset = words[words.indexOf('--preset') + 1] as 'quick' | 'balanced' | 'thorough';
  const c = presetConfig(preset);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === '--method') c.method = words[++i] as TrainConfig['method'];
    const k = KNOBS.find((x) => x.flag === w);
    if (!k) continue;
    if (k.kind === 'bool') k.set(c, true);
    else if (k.kind === 'number') k.set(c, Number(words[++i]));
    else if (k.kind === 'choice') k.set(c, words[++i]!);
    else k.set(c, words[++i]!.split(',') as TrainConfig['lora']['targets']);
  }
  return c;
}

describe('trainCommand', () => {
  it('names the preset and only the settings that differ from it', () => {
    const form = { modelId: 'smollm2-135m-instruct', dataset: '/d/help.jsonl', name: '', preset: 'quick' as const, config: presetConfig('quick') };
    expect(trainCommand(form)).toEqual({ command: 'modelfactory train --model smollm2-135m-instruct --data /d/help.jsonl --preset quick', withoutFlag: [] });
    expect(trainCommand({ ...form, modelId: '', dataset: '', name: "Bob's run" }).command).toBe(
      "modelfactory train --model '<model>' --data '<file>' --name 'Bob'\\''s run' --preset quick",
    );
  });

  it('recreates every knob', () => {
    const config: TrainConfig = {
      method: 'lora',
      lora: { rank: 4, alpha: 8, dropout: 0, rslora: true, targets: ['q_proj', 'v_proj'] },
      learning_rate: 1e-4,
      weight_decay: 0,
      schedule: 'linear',
      warmup_steps: 0,
      epochs: 0.5,
      max_steps: 3,
      batch_size: 2,
      grad_accum: 1,
      max_grad_norm: 0,
      seed: 7,
      eval_every: 1,
      checkpoint_every: 1,
      keep_checkpoints: 2,
      gradient_checkpointing: true,
      backend: 'wgpu',
      max_length: 128,
      packing: true,
      precision: 'f32',
      eval_fraction: 0,
    };
    const { command, withoutFlag } = trainCommand({ modelId: 'm', dataset: '/d.jsonl', name: '', preset: 'balanced', config });
    expect(withoutFlag).toEqual([]);
    expect(command).toBe(
      'modelfactory train --model m --data /d.jsonl --preset balanced --method lora --rank 4 --alpha 8 --dropout 0 --rslora --targets q_proj,v_proj ' +
        '--epochs 0.5 --max-steps 3 --batch-size 2 --grad-accum 1 --learning-rate 0.0001 --schedule linear --warmup-steps 0 --weight-decay 0 ' +
        '--max-grad-norm 0 --max-length 128 --packing --eval-fraction 0 --eval-every 1 --checkpoint-every 1 --backend wgpu --precision f32 --gradient-checkpointing --seed 7',
    );
    expect(parse(command)).toEqual(config);
  });
});
