//! Checkpoints: `checkpoints/step-NNNNNN/` with the adapter (PEFT layout), the optimiser's
//! moments (`optimizer.safetensors`) and `state.json` (the step, the curves, the settings).
//!
//! A checkpoint is written into a temporary folder beside the others and renamed into place
//! once every file is synced, so a run killed at any moment leaves only whole checkpoints; a
//! full disk fails the write and leaves the earlier ones as they were.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::Params;
use super::optim::AdamW;
use super::{EvalRecord, StepRecord, TrainConfig};
use crate::error::{Error, Result};
use crate::loading::safetensors_writer::{StTensor, safetensors_bytes, write_atomically};
use crate::lora::Adapter;
use crate::model::llama::to_host;
use crate::model::{DecoderConfig, WeightFiles};

/// The run folder's checkpoint folder.
pub const CHECKPOINTS: &str = "checkpoints";
const STATE: &str = "state.json";
const OPTIMIZER: &str = "optimizer.safetensors";
const FORMAT: u32 = 1;

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Version of this layout.
    pub format: u32,
    /// The run's settings; a resumed run must use the same.
    pub config: TrainConfig,
    /// Optimiser steps done.
    pub step: usize,
    /// AdamW's own step count (for bias correction).
    pub optimizer_step: u64,
    /// Every step's numbers so far.
    pub history: Vec<StepRecord>,
    /// Every evaluation so far.
    pub evals: Vec<EvalRecord>,
    /// The step and eval loss of the best checkpoint.
    pub best: Option<(usize, f64)>,
}

impl CheckpointState {
    /// The state of a run that has not started.
    pub fn new(config: TrainConfig) -> Self {
        CheckpointState {
            format: FORMAT,
            config,
            step: 0,
            optimizer_step: 0,
            history: Vec::new(),
            evals: Vec::new(),
            best: None,
        }
    }
}

/// The folder of step `step`'s checkpoint.
pub fn step_dir(dir: &Path, step: usize) -> PathBuf {
    dir.join(format!("step-{step:06}"))
}

/// Checkpoint folders, newest first.
fn checkpoints(dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list the checkpoints", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list the checkpoints", dir, e))?;
        let name = entry.file_name();
        if let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            found.push((step, entry.path()));
        }
    }
    found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(found)
}

/// The newest checkpoint whose state reads back; a damaged newer one is skipped with a
/// warning (the rename makes a half-written one impossible, so damage came from elsewhere).
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    let found = checkpoints(dir)?;
    let mut problems: Vec<(PathBuf, String)> = Vec::new();
    for (_, path) in &found {
        match read_state(path) {
            Ok(_) => {
                for (bad, why) in &problems {
                    tracing::warn!(checkpoint = %bad.display(), %why, "skipped a damaged checkpoint");
                }
                return Ok(Some(path.clone()));
            }
            Err(e) => problems.push((path.clone(), e.to_string())),
        }
    }
    match problems.first() {
        None => Ok(None),
        Some((path, why)) => Err(Error::Checkpoint {
            what: format!(
                "no checkpoint of this run can be read ({} tried; the newest: {why}); delete \
                 the checkpoints folder to start over",
                problems.len()
            ),
            path: path.clone(),
        }),
    }
}

fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let state: CheckpointState = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        what: format!("{STATE} is damaged: {e}"),
        path: path.clone(),
    })?;
    if state.format != FORMAT {
        return Err(Error::Checkpoint {
            what: format!(
                "written in layout {} but this version reads layout {FORMAT}",
                state.format
            ),
            path,
        });
    }
    Ok(state)
}

/// The optimiser's moments as read from a checkpoint.
pub struct Moments {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Moments {
    /// Uploads the moments laid out as [`super::Params::flat`], checking each against its
    /// parameter's shape in `shapes`.
    pub fn into_tensors<B: Backend>(
        self,
        device: &B::Device,
        shapes: &[[usize; 2]],
        path: &Path,
    ) -> Result<[Tensor<B, 1>; 2]> {
        if self.m.len() != shapes.len() || self.v.len() != shapes.len() {
            return Err(Error::Checkpoint {
                what: format!(
                    "{OPTIMIZER} holds moments for {} parameters but the adapter has {}",
                    self.m.len(),
                    shapes.len()
                ),
                path: path.to_path_buf(),
            });
        }
        let upload = |moments: Vec<Vec<f32>>| -> Result<Tensor<B, 1>> {
            let mut flat = Vec::with_capacity(shapes.iter().map(|[r, c]| r * c).sum());
            for (values, [rows, cols]) in moments.into_iter().zip(shapes) {
                if values.len() != rows * cols {
                    return Err(Error::Checkpoint {
                        what: format!(
                            "a moment in {OPTIMIZER} does not match its parameter's shape"
                        ),
                        path: path.to_path_buf(),
                    });
                }
                flat.extend(values);
            }
            let len = flat.len();
            Ok(Tensor::from_data(TensorData::new(flat, [len]), device))
        };
        Ok([upload(self.m)?, upload(self.v)?])
    }
}

/// Reads a checkpoint for a model of `model`'s shape.
pub fn read(dir: &Path, model: &DecoderConfig) -> Result<(Adapter, Moments, CheckpointState)> {
    let state = read_state(dir)?;
    let adapter = Adapter::load_peft(dir)?;
    adapter.check_fits(model, dir)?;
    let path = dir.join(OPTIMIZER);
    let files = WeightFiles::safetensors_file(&path)?;
    let count = files.tensor_names().len() / 2;
    let read = |name: String| -> Result<Vec<f32>> {
        let raw = files.require(&name)?;
        let shape = raw.shape.clone();
        files.f32s(&name, &shape)
    };
    let mut m = Vec::with_capacity(count);
    let mut v = Vec::with_capacity(count);
    for i in 0..count {
        m.push(read(format!("m.{i}"))?);
        v.push(read(format!("v.{i}"))?);
    }
    Ok((adapter, Moments { m, v }, state))
}

/// Writes step `state.step`'s checkpoint into `dir` and returns its folder.
pub fn write<B: Backend>(
    dir: &Path,
    state: &CheckpointState,
    adapter: &Adapter,
    optimizer: &AdamW<B>,
    params: &Params<B>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder", dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".incomplete-")
        .tempdir_in(dir)
        .map_err(|e| Error::io("create a temporary folder", dir, e))?;
    adapter.save_peft(tmp.path())?;
    // One tensor per parameter, as before the moments were kept flat, so that older
    // checkpoints still resume.
    let m = to_host(optimizer.m.clone());
    let v = to_host(optimizer.v.clone());
    let mut tensors = Vec::with_capacity(params.shapes().len() * 2);
    for (i, (range, [rows, cols])) in params.ranges().zip(params.shapes()).enumerate() {
        let shape = [*rows as u64, *cols as u64];
        tensors.push(StTensor::f32(&format!("m.{i}"), &shape, &m[range.clone()]));
        tensors.push(StTensor::f32(&format!("v.{i}"), &shape, &v[range]));
    }
    let path = tmp.path().join(OPTIMIZER);
    write_atomically(&path, &safetensors_bytes(&tensors, &Default::default()))
        .map_err(|e| Error::io("write the optimiser state", &path, e))?;
    let path = tmp.path().join(STATE);
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Training {
        what: format!("cannot encode the checkpoint state: {e}"),
    })?;
    write_atomically(&path, &json)
        .map_err(|e| Error::io("write the checkpoint state", &path, e))?;
    let target = step_dir(dir, state.step);
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .map_err(|e| Error::io("replace the checkpoint", &target, e))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &target)
        .map_err(|e| Error::io("move the checkpoint into place", &target, e))?;
    Ok(target)
}

/// Deletes all but the `keep` newest checkpoints, always keeping `best`.
pub fn prune(dir: &Path, keep: usize, best: Option<usize>) -> Result<()> {
    for (step, path) in checkpoints(dir)?.into_iter().skip(keep.max(1)) {
        if Some(step) != best {
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io("delete an old checkpoint", &path, e))?;
        }
    }
    Ok(())
}
