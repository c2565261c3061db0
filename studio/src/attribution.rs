//! A run's attribution: how much each training row, contribution and contributor lowered the
//! run's evaluation loss, by DataInf over the adapter's LoRA parameters (`trainer::attribution`),
//! with shares for rewards. The report is written to `runs/<id>/attribution.json` only once it
//! is complete, so a failed or cancelled computation keeps the previous one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trainer::BackendKind;
use trainer::attribution::accuracy::{AccuracyJob, AccuracyReport, measure_accuracy};
use trainer::attribution::{AttributionJob, GradientStore, attribute};
use trainer::data::load_dataset;
use trainer::lora::Adapter;
use trainer::runtime::OpenedModel;
use trainer::train::{Sequence, prepare_data};
use wallet::manifest::influence_bps;

use crate::Studio;
use crate::chat::backend_of;
use crate::error::{Error, Result};
use crate::jobs::{JobContext, JobInfo, now};

/// The report's file in a run's folder.
pub const ATTRIBUTION_FILE: &str = "attribution.json";

/// Gradients kept in memory between DataInf's passes, beyond which they go to disk.
const GRADIENT_BUDGET_BYTES: usize = 1 << 30;

/// The accuracy report's file in a run's folder.
pub const ACCURACY_FILE: &str = "attribution-accuracy.json";

/// A run's rows as attribution sees them.
struct RunRows {
    detail: crate::RunDetail,
    model: PathBuf,
    /// Each training row's contribution id, contributor, text and tokens.
    ids: Vec<String>,
    contributors: Vec<String>,
    previews: Vec<String>,
    rows: Vec<Sequence>,
    eval: Vec<Sequence>,
}

/// Writes `value` as JSON through a staged file renamed into place, so a reader never sees
/// half a report and a failure keeps the previous one.
fn write_report<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let staged = path.with_extension("json.partial");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::InvalidInput {
        field: "attribution".into(),
        message: e.to_string(),
    })?;
    std::fs::write(&staged, bytes)
        .and_then(|()| std::fs::rename(&staged, path))
        .map_err(|source| Error::Io {
            what: format!("writing {}", path.display()),
            source,
        })
}

/// A run's attribution report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionReport {
    pub run_id: String,
    /// `datainf`.
    pub method: String,
    /// The damping of each layer, `mean ‖g‖² / 10` over the training rows.
    pub lambda: Vec<f64>,
    pub train_rows: usize,
    pub eval_rows: usize,
    pub backend: BackendKind,
    /// Contributors, most helpful first, with their shares of 10 000 basis points.
    pub contributors: Vec<ContributorScore>,
    /// Every training row's score, as trained.
    pub rows: Vec<RowScore>,
    pub computed_at: String,
}

/// A contributor's total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContributorScore {
    /// The contributor's address, or `file:<name>` for rows of a local file without one.
    pub contributor: String,
    /// The sum of its rows' scores: how much they lowered the evaluation loss.
    pub score: f64,
    /// Its share of the rewards in basis points (negative totals get none).
    pub bps: u16,
    /// Its rows raised the evaluation loss on the whole.
    pub harmful: bool,
    pub rows: usize,
}

/// One training row's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowScore {
    pub contribution_id: String,
    pub contributor: String,
    /// Positive: up-weighting the row lowers the evaluation loss; negative: it raises it.
    pub score: f64,
    /// The start of the row's conversation, so a person can see what it taught.
    #[serde(default)]
    pub preview: String,
}

/// A run's attribution as the Attribution view shows it: the last report and the last
/// accuracy measurement, each absent until computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAttribution {
    pub run_id: String,
    pub report: Option<AttributionReport>,
    pub accuracy: Option<AccuracyReport>,
}

/// What computing a run's attribution takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributionRequest {
    /// Where to compute; the run's backend, else the studio's default.
    #[serde(default)]
    pub backend: Option<BackendKind>,
}

/// What measuring attribution's accuracy takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRequest {
    #[serde(default)]
    pub backend: Option<BackendKind>,
    /// Random halves to retrain on (at least 20 for the LDS to mean much).
    #[serde(default = "default_subsets")]
    pub subsets: usize,
    /// Rows each retraining steps through; the run's rows × epochs by default.
    #[serde(default)]
    pub steps: Option<usize>,
}

fn default_subsets() -> usize {
    20
}

/// Characters of a row's conversation kept in its preview.
const PREVIEW_CHARS: usize = 160;

/// The start of a conversation as one line: `user: … assistant: …`.
fn preview(messages: &[trainer::runtime::ChatMessage]) -> String {
    let text = messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| {
            format!(
                "{}: {}",
                m.role,
                m.content.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("  ");
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl Studio {
    /// Computes the attribution of `run_id` on `backend` (the studio's default when `None`),
    /// writes it next to the run and returns it. `progress(done, total)` counts per-example
    /// gradients; returning `false` cancels without touching an earlier report.
    pub fn compute_attribution(
        &self,
        run_id: &str,
        backend: Option<BackendKind>,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<AttributionReport> {
        let data = self.run_rows(run_id)?;
        let (run, config) = (&data.detail.run, &data.detail.config);
        let adapter = Adapter::load_peft(&self.run_adapter(&run.id)?)?;
        let backend = self.attribution_backend(backend, config.backend)?;
        // Gradients that do not fit in memory wait on the workspace's disk, as bf16.
        let run_dir = self.run_dir(&run.id);
        let scores = attribute(
            &AttributionJob {
                model: &data.model,
                adapter: &adapter,
                method: config.method,
                backend,
                train: &data.rows,
                eval: &data.eval,
                store: GradientStore {
                    memory_bytes: GRADIENT_BUDGET_BYTES,
                    spill_dir: Some(&run_dir),
                },
            },
            progress,
        )?;
        let rows: Vec<RowScore> = data
            .ids
            .iter()
            .zip(&data.contributors)
            .zip(&data.previews)
            .zip(&scores.scores)
            .map(|(((id, contributor), preview), &score)| RowScore {
                contribution_id: id.clone(),
                contributor: contributor.clone(),
                score,
                preview: preview.clone(),
            })
            .collect();
        let mut totals: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for r in &rows {
            let t = totals.entry(r.contributor.as_str()).or_default();
            t.0 += r.score;
            t.1 += 1;
        }
        // The manifest's rounding, so a report's shares are the ones publishing signs.
        let bps = influence_bps(&totals.iter().map(|(&c, t)| (c, t.0)).collect());
        let mut contributors: Vec<ContributorScore> = totals
            .iter()
            .zip(bps.into_values())
            .map(|((c, &(score, n)), bps)| ContributorScore {
                contributor: c.to_string(),
                score,
                bps,
                harmful: score < 0.0,
                rows: n,
            })
            .collect();
        contributors.sort_by(|a, b| b.score.total_cmp(&a.score));
        let report = AttributionReport {
            run_id: run.id.clone(),
            method: "datainf".into(),
            lambda: scores.lambda,
            train_rows: rows.len(),
            eval_rows: data.eval.len(),
            backend,
            contributors,
            rows,
            computed_at: now(),
        };
        write_report(&self.run_dir(&run.id).join(ATTRIBUTION_FILE), &report)?;
        Ok(report)
    }

    /// Retrains the run's adapter on `subsets` random halves of its rows and without each
    /// contributor (`steps` rows each, by default its rows × epochs), and measures how well
    /// each attribution method predicted the evaluation losses; written to
    /// `runs/<id>/attribution-accuracy.json`.
    pub fn measure_attribution_accuracy(
        &self,
        run_id: &str,
        backend: Option<BackendKind>,
        subsets: usize,
        steps: Option<usize>,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<AccuracyReport> {
        let data = self.run_rows(run_id)?;
        let (run, config) = (&data.detail.run, &data.detail.config);
        let opened = OpenedModel::open(&data.model)?;
        let init = Adapter::init(
            config.lora.clone(),
            &opened.config,
            &run.model_id,
            config.seed,
        )?;
        drop(opened);
        let steps = steps
            .unwrap_or_else(|| ((data.rows.len() as f64 * config.epochs).ceil() as usize).max(20));
        let backend = self.attribution_backend(backend, config.backend)?;
        let report = measure_accuracy(
            &AccuracyJob {
                model: &data.model,
                init: &init,
                method: config.method,
                backend,
                train: &data.rows,
                groups: &data.contributors,
                eval: &data.eval,
                steps,
                learning_rate: config.learning_rate,
                subsets,
                checkpoints: 4,
                seed: config.seed,
            },
            progress,
        )?;
        write_report(&self.run_dir(&run.id).join(ACCURACY_FILE), &report)?;
        Ok(report)
    }

    fn attribution_backend(
        &self,
        asked: Option<BackendKind>,
        run: Option<BackendKind>,
    ) -> Result<BackendKind> {
        Ok(match asked.or(run) {
            Some(b) => b,
            None => backend_of(self.settings()?.default_backend).unwrap_or(BackendKind::Cpu),
        })
    }

    /// The run's training rows as it trained on them (the same tokenisation, split and
    /// packing), each row's contributor, and its evaluation rows.
    fn run_rows(&self, run_id: &str) -> Result<RunRows> {
        let detail = self.get_run(run_id)?;
        let run = &detail.run;
        let config = &detail.config;
        let model = PathBuf::from(&self.inner.models.find(&run.model_id)?.path);
        let dataset = load_dataset(Path::new(&run.dataset))?;
        let opened = OpenedModel::open(&model)?;
        let prepared = prepare_data(&opened.tokenizer, &dataset.examples, config)?;
        drop(opened);
        // Rows of a local file without contributors are credited to the file as a whole.
        let file = Path::new(&run.dataset)
            .file_name()
            .map_or_else(|| run.dataset.clone(), |n| n.to_string_lossy().into_owned());
        let by_row: BTreeMap<&str, &trainer::data::Example> = dataset
            .examples
            .iter()
            .map(|e| (e.id.as_str(), e))
            .collect();
        let (mut ids, mut contributors, mut previews, mut rows) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (sequence, segments) in prepared.train.iter().zip(&prepared.train_sources) {
            for s in segments {
                let (Some(tokens), Some(trained)) = (
                    sequence.tokens.get(s.range.clone()),
                    sequence.trained.get(s.range.clone()),
                ) else {
                    continue;
                };
                let example = by_row.get(s.id.as_str());
                contributors.push(
                    example
                        .and_then(|e| e.contributor.clone())
                        .unwrap_or_else(|| format!("file:{file}")),
                );
                previews.push(example.map(|e| preview(&e.messages)).unwrap_or_default());
                ids.push(s.id.clone());
                rows.push(Sequence {
                    tokens: tokens.to_vec(),
                    trained: trained.to_vec(),
                });
            }
        }
        if prepared.eval.is_empty() {
            return Err(Error::InvalidInput {
                field: "run".into(),
                message: format!(
                    "run {} held out no evaluation rows (its eval fraction is {}): attribution \
                     measures each row's influence on them",
                    run.name, config.eval_fraction
                ),
            });
        }
        Ok(RunRows {
            model,
            ids,
            contributors,
            previews,
            rows,
            eval: prepared.eval,
            detail,
        })
    }

    /// The run's last attribution report.
    pub fn attribution(&self, run_id: &str) -> Result<AttributionReport> {
        let run = self.get_run(run_id)?.run;
        read_report(&self.run_dir(&run.id).join(ATTRIBUTION_FILE))?.ok_or_else(|| {
            Error::InvalidInput {
                field: "run".into(),
                message: format!(
                    "run {} has no attribution yet: `modelfactory attribution compute {}`",
                    run.name, run.id
                ),
            }
        })
    }

    /// The run's last attribution report and accuracy measurement, each `None` until computed.
    pub fn run_attribution(&self, run_id: &str) -> Result<RunAttribution> {
        let run = self.get_run(run_id)?.run;
        let dir = self.run_dir(&run.id);
        Ok(RunAttribution {
            report: read_report(&dir.join(ATTRIBUTION_FILE))?,
            accuracy: read_report(&dir.join(ACCURACY_FILE))?,
            run_id: run.id,
        })
    }

    /// Starts computing the run's attribution in the background (`kind: "attribution"`).
    pub fn start_attribution(&self, run_id: &str, request: &AttributionRequest) -> Result<JobInfo> {
        // Refuse at once what would fail in the job: an unknown run, no adapter.
        let run = self.get_run(run_id)?.run;
        self.run_adapter(&run.id)?;
        let studio = self.clone();
        let backend = request.backend;
        self.jobs().spawn(
            "attribution",
            &format!("Attribution of {}", run.name),
            move |ctx| {
                studio
                    .compute_attribution(&run.id, backend, &mut |done, total| {
                        report_progress(ctx, "gradients", done, total)
                    })
                    .map(|_| ())
            },
        )
    }

    /// Starts measuring attribution's accuracy by retraining (`kind: "attribution-accuracy"`).
    pub fn start_attribution_accuracy(
        &self,
        run_id: &str,
        request: &AccuracyRequest,
    ) -> Result<JobInfo> {
        let run = self.get_run(run_id)?.run;
        let studio = self.clone();
        let request = request.clone();
        self.jobs().spawn(
            "attribution-accuracy",
            &format!("Attribution accuracy of {}", run.name),
            move |ctx| {
                studio
                    .measure_attribution_accuracy(
                        &run.id,
                        request.backend,
                        request.subsets,
                        request.steps,
                        &mut |done, total| report_progress(ctx, "trainings", done, total),
                    )
                    .map(|_| ())
            },
        )
    }
}

/// A job's progress through `total` units of `what`; `false` once it is cancelled.
fn report_progress(ctx: &JobContext, what: &str, done: usize, total: usize) -> bool {
    ctx.progress(
        done as f64 / total.max(1) as f64,
        &format!("{what} {done}/{total}"),
        &[("done", done as f64), ("total", total as f64)],
    );
    !ctx.is_cancelled()
}

/// A report written by [`write_report`], or `None` when there is none yet.
fn read_report<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::InvalidInput {
            field: "attribution".into(),
            message: format!("{} is not a readable report: {e}", path.display()),
        })
}
