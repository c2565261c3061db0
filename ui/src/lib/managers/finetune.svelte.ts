import type { ApiClient } from '../api/client';
import { ApiException, toApiException } from '../api/errors';
import type { DatasetPreview, DemoDataset, ModelSummary, Preset, RunSummary, TrainConfig, TrainMethod } from '../api/types';
import { trainCommand, type TrainCommand } from '../cli';
import { buildConfig, configProblems, knob, knobValue, sameValue, type KnobId, type KnobValue, type Overrides } from '../train-knobs';
import { runsManager, type RunsManager } from './runs.svelte';

/** Examples the preview renders. */
export const PREVIEW_COUNT = 5;

/**
 * The Fine-tune screen's form: model, dataset, method, preset and the knobs changed in
 * Advanced, the dataset preview for them, and starting the run. It outlives the screen, so a
 * half-filled form survives a look at the Runs list.
 */
export class FinetuneForm {
  #modelId = $state<string | null>(null);
  #dataset = $state('');
  #name = $state('');
  #method = $state<TrainMethod>('qlora');
  #preset = $state<Preset>('balanced');
  #overrides = $state<Overrides>({});
  #config = $derived(buildConfig(this.#preset, this.#method, this.#overrides));

  #demos = $state<DemoDataset[]>([]);
  #preview = $state<DatasetPreview | null>(null);
  /** What the preview shows: model, dataset and max length it was made for. */
  #previewKey = $state<string | null>(null);
  #previewing = $state(false);
  #previewError = $state<ApiException | null>(null);
  #starting = $state(false);
  #startError = $state<ApiException | null>(null);

  #client: ApiClient | null = null;
  readonly #runs: RunsManager;

  constructor(runs: RunsManager = runsManager) {
    this.#runs = runs;
  }

  get modelId(): string | null {
    return this.#modelId;
  }
  get dataset(): string {
    return this.#dataset;
  }
  get name(): string {
    return this.#name;
  }
  get method(): TrainMethod {
    return this.#method;
  }
  get preset(): Preset {
    return this.#preset;
  }
  /** The settings the run will get. */
  get config(): TrainConfig {
    return this.#config;
  }
  get overrides(): Overrides {
    return this.#overrides;
  }
  /** How many knobs differ from the preset. */
  get changedCount(): number {
    return Object.keys(this.#overrides).length;
  }
  get demos(): DemoDataset[] {
    return this.#demos;
  }
  get preview(): DatasetPreview | null {
    return this.#preview;
  }
  /** The preview was made for another model, dataset or max length than the form's now. */
  get previewStale(): boolean {
    return this.#preview !== null && this.#previewKey !== this.#key();
  }
  get previewing(): boolean {
    return this.#previewing;
  }
  get previewError(): ApiException | null {
    return this.#previewError;
  }
  get starting(): boolean {
    return this.#starting;
  }
  get startError(): ApiException | null {
    return this.#startError;
  }
  /** Why the run cannot start yet; empty when it can. */
  get problems(): string[] {
    const out: string[] = [];
    if (!this.#modelId) out.push('Choose a model');
    if (!this.#dataset.trim()) out.push('Choose a dataset');
    return [...out, ...configProblems(this.#config)];
  }
  /** The same run from a terminal. */
  get command(): TrainCommand {
    return trainCommand({
      modelId: this.#modelId ?? '',
      dataset: this.#dataset,
      name: this.#name,
      preset: this.#preset,
      config: this.#config,
    });
  }

  connect(client: ApiClient): void {
    this.#client = client;
  }

  disconnect(): void {
    this.#client = null;
  }

  /** Back to an empty form. */
  reset(): void {
    this.#modelId = null;
    this.#dataset = '';
    this.#name = '';
    this.#method = 'qlora';
    this.#preset = 'balanced';
    this.#overrides = {};
    this.#demos = [];
    this.#preview = null;
    this.#previewKey = null;
    this.#previewError = null;
    this.#startError = null;
  }

  #need(): ApiClient {
    if (!this.#client) throw new ApiException('Not connected to the studio', null);
    return this.#client;
  }

  /** The datasets shipped with the studio; a failure only leaves the buttons out. */
  async loadDemos(): Promise<void> {
    try {
      this.#demos = await this.#need().demoDatasets();
    } catch {
      this.#demos = [];
    }
  }

  /** Picks the first ready model when none is chosen, or when the chosen one left. */
  adoptModels(models: ModelSummary[]): void {
    if (this.#modelId !== null && models.some((m) => m.id === this.#modelId && m.status === 'ready')) return;
    this.#modelId = models.find((m) => m.status === 'ready')?.id ?? null;
  }

  setModel(id: string): void {
    this.#modelId = id || null;
  }
  setDataset(path: string): void {
    this.#dataset = path;
  }
  setName(name: string): void {
    this.#name = name;
  }
  setMethod(method: TrainMethod): void {
    this.#method = method;
  }
  /** A preset sets every knob the user has not changed. */
  setPreset(preset: Preset): void {
    this.#preset = preset;
  }

  /** Changes one knob; a value equal to the preset's is no change. */
  setKnob(id: KnobId, value: KnobValue): void {
    const k = knob(id);
    const rest: Overrides = { ...this.#overrides };
    delete rest[id];
    const base = knobValue(k, buildConfig(this.#preset, this.#method, {}));
    this.#overrides = sameValue(value, base) ? rest : { ...rest, [id]: Array.isArray(value) ? [...value] : value };
  }

  /** Every knob back to the preset's value. */
  resetKnobs(): void {
    this.#overrides = {};
  }

  #key(): string {
    return JSON.stringify([this.#modelId, this.#dataset.trim(), this.#config.max_length]);
  }

  /** Renders the first rows with the model's chat template, trained spans marked. */
  async runPreview(): Promise<void> {
    const modelId = this.#modelId;
    const dataset = this.#dataset.trim();
    if (!modelId || !dataset || this.#previewing) return;
    const key = this.#key();
    this.#previewing = true;
    this.#previewError = null;
    try {
      const preview = await this.#need().previewDataset({
        model_id: modelId,
        dataset,
        max_length: this.#config.max_length,
        count: PREVIEW_COUNT,
      });
      this.#preview = preview;
      this.#previewKey = key;
    } catch (e) {
      this.#preview = null;
      this.#previewKey = null;
      this.#previewError = toApiException(e);
    } finally {
      this.#previewing = false;
    }
  }

  /** Starts the run; null when it could not start (`startError` says why). */
  async start(): Promise<RunSummary | null> {
    if (this.#starting) return null;
    const problems = this.problems;
    const modelId = this.#modelId;
    if (problems.length > 0 || !modelId) {
      this.#startError = new ApiException(problems[0] ?? 'Choose a model', problems.slice(1).join('; ') || null);
      return null;
    }
    this.#starting = true;
    this.#startError = null;
    try {
      return await this.#runs.start({
        name: this.#name.trim() || null,
        model_id: modelId,
        dataset: this.#dataset.trim(),
        config: $state.snapshot(this.#config),
      });
    } catch (e) {
      this.#startError = toApiException(e);
      return null;
    } finally {
      this.#starting = false;
    }
  }

  clearStartError(): void {
    this.#startError = null;
  }
}

export const finetuneForm = new FinetuneForm();
