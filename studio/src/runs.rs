//! Fine-tuning runs: what the Fine-tune screen and `modelfactory train` start, watch, cancel,
//! resume and chat with.
//!
//! A run is a row in the catalog (its settings, state and result), a folder
//! `runs/<id>/` (checkpoints and the resulting adapter, see [`trainer::train`]), and the `train`
//! jobs that worked on it. Every step's and every evaluation's numbers are stored in
//! `run_metrics` as they happen, so a front end that reconnects draws the whole curve.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use trainer::citations::{CITATION_INDEX_FILE, CitationIndex};
use trainer::data::{ExamplePreview, LoadReport, load_dataset, preview};
use trainer::runtime::OpenedModel;
use trainer::train::{
    EvalRecord, Outcome, StepRecord, TrainConfig, TrainEvent, TrainJob, prepare_data, train,
};

use crate::Studio;
use crate::chat::backend_of;
use crate::error::{Error, Result};
use crate::jobs::{JobContext, JobInfo, now};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Created, not started.
    Queued,
    /// A job is training it.
    Running,
    /// Every step ran.
    Finished,
    /// Stopped by the user; the best checkpoint is its adapter, and it can be resumed.
    Cancelled,
    /// Stopped by an error; it can be resumed from its last checkpoint.
    Failed,
    /// The process training it died; it can be resumed from its last checkpoint.
    Interrupted,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Cancelled => "cancelled",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => RunState::Queued,
            "running" => RunState::Running,
            "finished" => RunState::Finished,
            "cancelled" => RunState::Cancelled,
            "failed" => RunState::Failed,
            _ => RunState::Interrupted,
        }
    }
}

/// Starting points for the settings a non-specialist should not have to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// A first look in minutes: rank 8, one epoch.
    Quick,
    /// The usual choice: rank 16, two epochs.
    Balanced,
    /// More capacity and passes, at a lower learning rate: rank 32, three epochs.
    Thorough,
}

impl Preset {
    /// The preset's settings (QLoRA on all seven projections, cosine schedule).
    pub fn config(self) -> TrainConfig {
        let base = TrainConfig::default();
        let (rank, epochs, lr, accum) = match self {
            Preset::Quick => (8, 1.0, 2e-4, 2),
            Preset::Balanced => (16, 2.0, 2e-4, 4),
            Preset::Thorough => (32, 3.0, 1e-4, 8),
        };
        TrainConfig {
            lora: trainer::lora::LoraConfig {
                rank,
                alpha: 2.0 * rank as f32,
                ..base.lora.clone()
            },
            epochs,
            learning_rate: lr,
            grad_accum: accum,
            ..base
        }
    }
}

/// What starting a run takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    /// A name for the Runs list; the dataset's file name when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The base model's id in the workspace.
    pub model_id: String,
    /// The dataset file (JSONL, JSON, CSV, TSV or Parquet).
    pub dataset: String,
    /// Every knob.
    pub config: TrainConfig,
}

/// A run as the Runs list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub name: String,
    pub model_id: String,
    pub dataset: String,
    pub method: trainer::train::Method,
    pub state: RunState,
    /// The job working on it now, or the last one that did.
    pub job_id: Option<String>,
    /// Optimiser steps done and planned.
    pub step: usize,
    pub total_steps: Option<usize>,
    pub last_loss: Option<f64>,
    pub last_eval_loss: Option<f64>,
    /// The adapter folder (PEFT layout), once a step has run.
    pub adapter: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A run with its settings, its curves and what its data held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunSummary,
    pub config: TrainConfig,
    pub steps: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
    pub data: Option<DataSummary>,
    /// The command that starts the same run from a terminal.
    pub command: String,
}

/// What the dataset gave the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    pub format: String,
    pub rows_read: usize,
    pub rows_kept: usize,
    /// The first problems found in the file (line or row, and why).
    pub problems: Vec<String>,
    pub train_examples: usize,
    pub eval_examples: usize,
    pub train_sequences: usize,
    pub skipped_examples: usize,
    pub truncated_examples: usize,
    pub trained_tokens: usize,
}

/// What the wizard shows before a run starts: what the file holds, and the first
/// conversations rendered with the model's chat template and their trained spans marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPreview {
    pub report: LoadReport,
    pub examples: Vec<ExamplePreview>,
}

/// What previewing a dataset takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewRequest {
    pub model_id: String,
    pub dataset: String,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub count: Option<usize>,
}

/// A dataset file shipped with the studio, for a first run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoDataset {
    pub name: String,
    pub path: String,
    pub bytes: u64,
}

/// The dataset files shipped in `assets/datasets/`: found beside the installed binary, through
/// `MODELFACTORY_ASSETS`, or in the source tree.
pub fn demo_datasets() -> Vec<DemoDataset> {
    let Some(dir) = crate::datanets::assets_dir()
        .map(|a| a.join("datasets"))
        .filter(|d| d.is_dir())
    else {
        return Vec::new();
    };
    let mut found: Vec<DemoDataset> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.path().extension().is_some_and(|x| {
                ["jsonl", "json", "csv", "parquet"].contains(&&*x.to_string_lossy())
            })
        })
        .map(|e| {
            let path = std::fs::canonicalize(e.path()).unwrap_or_else(|_| e.path());
            DemoDataset {
                name: e
                    .path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
                path: path.display().to_string(),
            }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

const RUN_COLUMNS: &str = "id, name, model_id, dataset_path, config_json, state, job_id, \
     adapter_path, error, created_at, COALESCE(updated_at, created_at), total_steps";

impl Studio {
    /// The runs, newest first.
    pub fn list_runs(&self) -> Result<Vec<RunSummary>> {
        let ids: Vec<String> = {
            let conn = self.inner.db.lock();
            let mut stmt = conn.prepare("SELECT id FROM runs ORDER BY created_at DESC, id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        ids.iter().map(|id| self.run_summary(id)).collect()
    }

    /// One run with its settings and curves.
    pub fn get_run(&self, id: &str) -> Result<RunDetail> {
        let run = self.run_summary(id)?;
        let (config, data) = {
            let conn = self.inner.db.lock();
            conn.query_row(
                "SELECT config_json, data_json FROM runs WHERE id = ?1",
                params![id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )?
        };
        let config: TrainConfig =
            serde_json::from_str(&config).map_err(|e| Error::InvalidInput {
                field: "run settings".into(),
                message: format!("the stored settings of run {id} cannot be read: {e}"),
            })?;
        let data = data.and_then(|d| serde_json::from_str(&d).ok());
        let (steps, evals) = self.run_metrics(id)?;
        let command = train_command(&run, &config);
        Ok(RunDetail {
            run,
            config,
            steps,
            evals,
            data,
            command,
        })
    }

    /// Checks a new run and records it as queued, without starting it.
    pub fn create_run(&self, request: &NewRun) -> Result<RunSummary> {
        request.config.validate().map_err(Error::Model)?;
        let model = self.inner.models.find(&request.model_id)?;
        let dataset = Path::new(&request.dataset);
        if !dataset.is_file() {
            return Err(Error::InvalidInput {
                field: "dataset".into(),
                message: format!("{} is not a file", dataset.display()),
            });
        }
        let name = request
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| {
                dataset
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "run".into())
            });
        let id = uuid::Uuid::new_v4().simple().to_string();
        let at = now();
        self.inner.db.lock().execute(
            "INSERT INTO runs (id, name, model_id, dataset_path, config_json, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?6)",
            params![
                id,
                name.trim(),
                model.id,
                dataset.display().to_string(),
                serde_json::to_string(&request.config).unwrap_or_default(),
                at
            ],
        )?;
        tracing::info!(run = %id, model = %model.id, dataset = %dataset.display(), "created a run");
        self.run_summary(&id)
    }

    /// Creates a run and trains it in a background job.
    pub fn start_run(&self, request: &NewRun) -> Result<RunSummary> {
        let run = self.create_run(request)?;
        self.resume_run(&run.id)
    }

    /// Trains a run in a background job: a new run from its start, any other from its last
    /// checkpoint.
    pub fn resume_run(&self, id: &str) -> Result<RunSummary> {
        let run = self.run_summary(id)?;
        if run.state == RunState::Running {
            return Err(Error::ChatBusy(format!(
                "run {} is already training",
                run.name
            )));
        }
        if run.state == RunState::Finished {
            return Err(Error::InvalidInput {
                field: "run".into(),
                message: format!(
                    "run {} has finished; start a new run to train more",
                    run.name
                ),
            });
        }
        let studio = self.clone();
        let run_id = id.to_owned();
        let job = self
            .jobs()
            .spawn("train", &format!("Fine-tune {}", run.name), move |ctx| {
                studio.train_run(&run_id, ctx, &mut |_| {})
            })?;
        self.set_run_job(id, &job)?;
        self.run_summary(id)
    }

    /// Asks the run's job to stop; the best checkpoint becomes the run's adapter.
    pub fn cancel_run(&self, id: &str) -> Result<RunSummary> {
        let run = self.run_summary(id)?;
        if let Some(job) = &run.job_id {
            self.jobs().cancel(job)?;
        }
        self.run_summary(id)
    }

    /// Deletes a run that is not training: its row, its curves and its folder.
    pub fn delete_run(&self, id: &str) -> Result<()> {
        let run = self.run_summary(id)?;
        if run.state == RunState::Running {
            return Err(Error::ChatBusy(format!(
                "run {} is training; cancel it first",
                run.name
            )));
        }
        {
            let conn = self.inner.db.lock();
            conn.execute("DELETE FROM run_metrics WHERE run_id = ?1", params![id])?;
            conn.execute("DELETE FROM runs WHERE id = ?1", params![id])?;
        }
        let dir = self.run_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                what: format!("deleting {}", dir.display()),
                source,
            })?;
        }
        Ok(())
    }

    /// The run's folder.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.workspace().runs_dir().join(id)
    }

    /// The run's adapter folder, once it has one.
    pub fn run_adapter(&self, id: &str) -> Result<PathBuf> {
        let run = self.run_summary(id)?;
        run.adapter
            .map(PathBuf::from)
            .ok_or_else(|| Error::InvalidInput {
                field: "run".into(),
                message: format!("run {} has no adapter yet (no step has finished)", run.name),
            })
    }

    /// Reads a dataset and renders its first conversations with the model's chat template,
    /// marking what a run would train on.
    pub fn preview_dataset(&self, request: &PreviewRequest) -> Result<DatasetPreview> {
        let model = self.inner.models.find(&request.model_id)?;
        let dataset = load_dataset(Path::new(&request.dataset))?;
        let opened = OpenedModel::open(Path::new(&model.path))?;
        let examples = preview(
            &opened.tokenizer,
            &dataset.examples,
            request.count.unwrap_or(5).min(50),
            request.max_length,
        );
        Ok(DatasetPreview {
            report: dataset.report,
            examples,
        })
    }

    /// Does the training of run `id` as job `ctx`: reads the dataset, tokenises it with the
    /// model's chat template, trains (resuming from the newest checkpoint), and records every
    /// step. `on_event` also sees each event (the CLI prints them).
    pub fn train_run(
        &self,
        id: &str,
        ctx: &JobContext,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<()> {
        let detail = self.get_run(id)?;
        let run = &detail.run;
        let config = detail.config.clone();
        self.set_run_state(id, RunState::Running, None)?;
        let outcome = self.train_run_inner(run, config, ctx, on_event);
        match &outcome {
            Ok(Outcome::Finished) => self.set_run_state(id, RunState::Finished, None)?,
            Ok(Outcome::Cancelled) => self.set_run_state(id, RunState::Cancelled, None)?,
            Err(Error::Cancelled) => self.set_run_state(id, RunState::Cancelled, None)?,
            Err(e) => self.set_run_state(id, RunState::Failed, Some(&e.to_string()))?,
        }
        match outcome {
            Ok(Outcome::Cancelled) => Err(Error::Cancelled),
            other => other.map(|_| ()),
        }
    }

    fn train_run_inner(
        &self,
        run: &RunSummary,
        mut config: TrainConfig,
        ctx: &JobContext,
        on_event: &mut dyn FnMut(&TrainEvent),
    ) -> Result<Outcome> {
        let model = self.inner.models.find(&run.model_id)?;
        let model_path = PathBuf::from(&model.path);
        if config.backend.is_none() {
            config.backend = backend_of(self.settings()?.default_backend);
        }
        ctx.progress(0.0, "reading the dataset", &[]);
        let dataset = load_dataset(Path::new(&run.dataset))?;
        ctx.check_cancelled()?;
        ctx.progress(0.0, "tokenising with the model's chat template", &[]);
        let opened = OpenedModel::open(&model_path)?;
        let prepared = prepare_data(&opened.tokenizer, &dataset.examples, &config)?;
        let tokenizer_fingerprint = opened.tokenizer.fingerprint();
        drop(opened);
        let report = &dataset.report;
        let data = DataSummary {
            format: format!("{:?} / {:?}", report.format.file, report.format.rows).to_lowercase(),
            rows_read: report.rows_read,
            rows_kept: report.rows_kept,
            problems: report
                .problems
                .iter()
                .take(20)
                .map(|p| p.to_string())
                .collect(),
            train_examples: prepared.train_examples,
            eval_examples: prepared.eval_examples,
            train_sequences: prepared.train.len(),
            skipped_examples: prepared.skipped.len(),
            truncated_examples: prepared.truncated,
            trained_tokens: prepared.trained_tokens,
        };
        let run_dir = self.run_dir(&run.id);
        std::fs::create_dir_all(&run_dir).map_err(|source| Error::Io {
            what: format!("creating {}", run_dir.display()),
            source,
        })?;
        // Which rows trained which sequence: what attribution and the manifest read later.
        let sources = serde_json::to_vec(&prepared.train_sources).unwrap_or_default();
        let sources_path = run_dir.join("train_sources.json");
        std::fs::write(&sources_path, sources).map_err(|source| Error::Io {
            what: format!("writing {}", sources_path.display()),
            source,
        })?;
        // The citation index over the rows that train: what chat answers are traced back to.
        let contributors: HashMap<&str, &str> = dataset
            .examples
            .iter()
            .filter_map(|e| Some((e.id.as_str(), e.contributor.as_deref()?)))
            .collect();
        let contributors = &contributors;
        let index =
            CitationIndex::build(
                &tokenizer_fingerprint,
                prepared.train.iter().zip(&prepared.train_sources).flat_map(
                    |(sequence, segments)| {
                        segments.iter().filter_map(move |s| {
                            let tokens = sequence.tokens.get(s.range.clone())?;
                            Some((
                                s.id.as_str(),
                                contributors.get(s.id.as_str()).copied(),
                                tokens,
                            ))
                        })
                    },
                ),
            )?;
        index.save(&run_dir.join(CITATION_INDEX_FILE))?;
        self.inner.db.lock().execute(
            "UPDATE runs SET data_json = ?2, total_steps = ?3 WHERE id = ?1",
            params![
                run.id,
                serde_json::to_string(&data).unwrap_or_default(),
                config.total_steps(prepared.train.len()) as i64
            ],
        )?;

        let job = TrainJob {
            model: &model_path,
            config,
            train: &prepared.train,
            eval: &prepared.eval,
            run_dir: &run_dir,
            base_model_name: crate::models::portable_id(&model),
        };
        let cancel = ctx.cancel_flag();
        let mut total = 1usize;
        let mut last_eval: Option<f64> = None;
        let result = train(&job, &cancel, &mut |event| {
            match &event {
                TrainEvent::Started {
                    total_steps,
                    start_step,
                    ..
                } => {
                    total = (*total_steps).max(1);
                    let message = if *start_step > 0 {
                        format!("resumed at step {start_step} of {total_steps}")
                    } else {
                        format!("training: {total_steps} steps")
                    };
                    ctx.progress(*start_step as f64 / total as f64, &message, &[]);
                }
                TrainEvent::Step(s) => {
                    self.store_step(&run.id, s);
                    let mut figures = vec![
                        ("step", s.step as f64),
                        ("total_steps", total as f64),
                        ("loss", s.loss),
                        ("learning_rate", s.learning_rate),
                        ("grad_norm", s.grad_norm),
                        ("tokens_per_s", s.tokens_per_s),
                        ("elapsed_s", s.elapsed_s),
                        ("eta_s", s.eta_s),
                        ("memory_bytes", s.peak_memory_bytes as f64),
                    ];
                    if let Some(eval) = last_eval {
                        figures.push(("eval_loss", eval));
                    }
                    ctx.progress(
                        s.step as f64 / total as f64,
                        &format!("step {} of {total}", s.step),
                        &figures,
                    );
                }
                TrainEvent::Eval(e) => {
                    self.store_eval(&run.id, e);
                    last_eval = Some(e.loss);
                    ctx.progress(
                        e.step as f64 / total as f64,
                        &format!("evaluated at step {}", e.step),
                        &[
                            ("step", e.step as f64),
                            ("total_steps", total as f64),
                            ("eval_loss", e.loss),
                            ("perplexity", e.perplexity),
                        ],
                    );
                }
                TrainEvent::Checkpoint { step, .. } => {
                    let adapter = run_dir.join(trainer::train::RESULT_ADAPTER);
                    let _ = self.inner.db.lock().execute(
                        "UPDATE runs SET updated_at = ?2 WHERE id = ?1",
                        params![run.id, now()],
                    );
                    tracing::debug!(run = %run.id, step, adapter = %adapter.display(), "checkpoint");
                }
            }
            on_event(&event);
            // A cancel asked for from another process arrives through the catalog.
            if ctx.is_cancelled() {
                cancel.store(true, Ordering::SeqCst);
            }
        })?;
        if let Some(adapter) = &result.adapter {
            self.inner.db.lock().execute(
                "UPDATE runs SET adapter_path = ?2 WHERE id = ?1",
                params![run.id, adapter.display().to_string()],
            )?;
        }
        Ok(result.outcome)
    }

    fn store_step(&self, run: &str, s: &StepRecord) {
        let result = self.inner.db.lock().execute(
            "INSERT OR REPLACE INTO run_metrics (run_id, kind, step, loss, learning_rate, grad_norm, tokens_per_s, elapsed_s, eta_s, memory_bytes)
             VALUES (?1, 'train', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run,
                s.step as i64,
                s.loss,
                s.learning_rate,
                s.grad_norm,
                s.tokens_per_s,
                s.elapsed_s,
                s.eta_s,
                s.peak_memory_bytes as i64
            ],
        );
        if let Err(e) = result {
            tracing::warn!(run, "could not store step {}: {e}", s.step);
        }
    }

    fn store_eval(&self, run: &str, e: &EvalRecord) {
        let result = self.inner.db.lock().execute(
            "INSERT OR REPLACE INTO run_metrics (run_id, kind, step, loss, perplexity) VALUES (?1, 'eval', ?2, ?3, ?4)",
            params![run, e.step as i64, e.loss, e.perplexity],
        );
        if let Err(err) = result {
            tracing::warn!(
                run,
                "could not store the evaluation at step {}: {err}",
                e.step
            );
        }
    }

    fn run_metrics(&self, id: &str) -> Result<(Vec<StepRecord>, Vec<EvalRecord>)> {
        let conn = self.inner.db.lock();
        let mut stmt = conn.prepare(
            "SELECT step, loss, learning_rate, grad_norm, tokens_per_s, elapsed_s, eta_s, memory_bytes
             FROM run_metrics WHERE run_id = ?1 AND kind = 'train' ORDER BY step",
        )?;
        let steps = stmt
            .query_map(params![id], |r| {
                Ok(StepRecord {
                    step: r.get::<_, i64>(0)? as usize,
                    loss: r.get(1)?,
                    learning_rate: r.get::<_, Option<f64>>(2)?.unwrap_or_default(),
                    grad_norm: r.get::<_, Option<f64>>(3)?.unwrap_or_default(),
                    tokens_per_s: r.get::<_, Option<f64>>(4)?.unwrap_or_default(),
                    elapsed_s: r.get::<_, Option<f64>>(5)?.unwrap_or_default(),
                    eta_s: r.get::<_, Option<f64>>(6)?.unwrap_or_default(),
                    peak_memory_bytes: r.get::<_, Option<i64>>(7)?.unwrap_or_default() as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = conn.prepare(
            "SELECT step, loss, perplexity FROM run_metrics WHERE run_id = ?1 AND kind = 'eval' ORDER BY step",
        )?;
        let evals = stmt
            .query_map(params![id], |r| {
                Ok(EvalRecord {
                    step: r.get::<_, i64>(0)? as usize,
                    loss: r.get(1)?,
                    perplexity: r.get::<_, Option<f64>>(2)?.unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((steps, evals))
    }

    fn run_summary(&self, id: &str) -> Result<RunSummary> {
        let row = {
            let conn = self.inner.db.lock();
            conn.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                params![id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, String>(9)?,
                        r.get::<_, String>(10)?,
                        r.get::<_, Option<i64>>(11)?,
                    ))
                },
            )
            .optional()?
        };
        let Some((
            id,
            name,
            model_id,
            dataset,
            config,
            state,
            job_id,
            adapter,
            error,
            created,
            updated,
            total,
        )) = row
        else {
            return Err(Error::RunNotFound(id.to_owned()));
        };
        let method = serde_json::from_str::<TrainConfig>(&config)
            .map(|c| c.method)
            .unwrap_or_default();
        let mut state = RunState::parse(&state);
        // A run marked running whose job is not running was left by a process that died.
        if state == RunState::Running {
            let job_running = job_id
                .as_deref()
                .and_then(|j| self.jobs().get(j).ok())
                .is_some_and(|j| !j.state.is_finished());
            if !job_running {
                state = RunState::Interrupted;
            }
        }
        let (last_step, last_loss, last_eval) = {
            let conn = self.inner.db.lock();
            let last = conn
                .query_row(
                    "SELECT step, loss FROM run_metrics WHERE run_id = ?1 AND kind = 'train' ORDER BY step DESC LIMIT 1",
                    params![id],
                    |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, f64>(1)?)),
                )
                .optional()?;
            let eval = conn
                .query_row(
                    "SELECT loss FROM run_metrics WHERE run_id = ?1 AND kind = 'eval' ORDER BY step DESC LIMIT 1",
                    params![id],
                    |r| r.get::<_, f64>(0),
                )
                .optional()?;
            (last.map(|l| l.0), last.map(|l| l.1), eval)
        };
        Ok(RunSummary {
            id,
            name,
            model_id,
            dataset,
            method,
            state,
            job_id,
            step: last_step.unwrap_or(0),
            total_steps: total.map(|t| t as usize),
            last_loss,
            last_eval_loss: last_eval,
            adapter,
            error,
            created_at: created,
            updated_at: updated,
        })
    }

    fn set_run_state(&self, id: &str, state: RunState, error: Option<&str>) -> Result<()> {
        self.inner.db.lock().execute(
            "UPDATE runs SET state = ?2, error = ?3, updated_at = ?4,
                 finished_at = CASE WHEN ?2 IN ('finished', 'cancelled', 'failed') THEN ?4 ELSE finished_at END
             WHERE id = ?1",
            params![id, state.as_str(), error, now()],
        )?;
        Ok(())
    }

    fn set_run_job(&self, id: &str, job: &JobInfo) -> Result<()> {
        self.inner.db.lock().execute(
            "UPDATE runs SET job_id = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, job.id, now()],
        )?;
        Ok(())
    }

    /// Records that job `job` trains run `id` (the CLI runs the job on its own thread).
    pub fn attach_run_job(&self, id: &str, job_id: &str) -> Result<()> {
        self.inner.db.lock().execute(
            "UPDATE runs SET job_id = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, job_id, now()],
        )?;
        Ok(())
    }
}

/// `modelfactory train …` with every setting that differs from the CLI's starting point (the
/// Balanced preset).
fn train_command(run: &RunSummary, c: &TrainConfig) -> String {
    let d = Preset::Balanced.config();
    let mut args = vec![
        "modelfactory train".to_owned(),
        format!("--model {}", shell_word(&run.model_id)),
        format!("--data {}", shell_word(&run.dataset)),
        format!("--name {}", shell_word(&run.name)),
        format!("--method {}", c.method),
    ];
    let mut flag = |name: &str, value: String, default: String| {
        if value != default {
            args.push(format!("--{name} {value}"));
        }
    };
    flag("rank", c.lora.rank.to_string(), d.lora.rank.to_string());
    flag("alpha", c.lora.alpha.to_string(), d.lora.alpha.to_string());
    flag(
        "dropout",
        c.lora.dropout.to_string(),
        d.lora.dropout.to_string(),
    );
    flag(
        "targets",
        c.lora
            .targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(","),
        d.lora
            .targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(","),
    );
    flag(
        "learning-rate",
        c.learning_rate.to_string(),
        d.learning_rate.to_string(),
    );
    flag(
        "weight-decay",
        c.weight_decay.to_string(),
        d.weight_decay.to_string(),
    );
    flag(
        "schedule",
        format!("{:?}", c.schedule).to_lowercase(),
        format!("{:?}", d.schedule).to_lowercase(),
    );
    flag(
        "warmup-steps",
        c.warmup_steps.to_string(),
        d.warmup_steps.to_string(),
    );
    flag("epochs", c.epochs.to_string(), d.epochs.to_string());
    flag(
        "batch-size",
        c.batch_size.to_string(),
        d.batch_size.to_string(),
    );
    flag(
        "grad-accum",
        c.grad_accum.to_string(),
        d.grad_accum.to_string(),
    );
    flag(
        "max-grad-norm",
        c.max_grad_norm.to_string(),
        d.max_grad_norm.to_string(),
    );
    flag(
        "max-length",
        c.max_length.to_string(),
        d.max_length.to_string(),
    );
    flag(
        "eval-fraction",
        c.eval_fraction.to_string(),
        d.eval_fraction.to_string(),
    );
    flag(
        "eval-every",
        c.eval_every.to_string(),
        d.eval_every.to_string(),
    );
    flag(
        "checkpoint-every",
        c.checkpoint_every.to_string(),
        d.checkpoint_every.to_string(),
    );
    flag("seed", c.seed.to_string(), d.seed.to_string());
    if let Some(steps) = c.max_steps {
        args.push(format!("--max-steps {steps}"));
    }
    if c.lora.rslora {
        args.push("--rslora".into());
    }
    if c.packing {
        args.push("--packing".into());
    }
    if c.gradient_checkpointing {
        args.push("--gradient-checkpointing".into());
    }
    if let Some(backend) = c.backend {
        args.push(format!("--backend {backend}"));
    }
    if c.precision != d.precision {
        args.push(format!("--precision {}", c.precision));
    }
    args.join(" ")
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,+=".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
