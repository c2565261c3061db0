//! Attribution on a tiny random model: per-example gradients against finite differences,
//! DataInf against the explicit damped per-layer inverses it approximates in closed form, and
//! planted data (rows that teach the evaluation set, unrelated rows, rows that contradict it).

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::flex::Flex;
use burn::tensor::{Tensor, TensorData};
use trainer::attribution::accuracy::{AccuracyJob, measure_accuracy};
use trainer::attribution::{
    GradientStore, LayerGradients, datainf, example_gradient, mean_gradient,
};
use trainer::lora::{Adapter, LoraConfig, Target};
use trainer::model::Decoder;
use trainer::runtime::OpenedModel;
use trainer::test_support::TinyLlama;
use trainer::train::optim::{AdamW, AdamWSettings, clip_global_norm};
use trainer::train::{BasePlacement, Method, Params, Sequence, load_frozen_base, sequence_loss};

use crate::{fill_b, temp_dir};

type Ad = burn::backend::Autodiff<Flex, NoCheckpointing>;

struct Tiny {
    _dir: tempfile::TempDir,
    decoder: Decoder<Ad>,
    params: Params<Flex>,
    layers: usize,
    scaling: f32,
}

/// The default tiny Llama and its tokenizer in `dir/model`.
fn tiny_model(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let folder = dir.path().join("model");
    let spec = TinyLlama::default();
    spec.write(&folder).expect("write the tiny model");
    spec.write_tokenizer(&folder).expect("write its tokenizer");
    folder
}

/// A fresh rank-2 adapter on q and v, as a run would start.
fn fresh_adapter(config: &trainer::model::DecoderConfig) -> Adapter {
    Adapter::init(
        LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            rslora: false,
            targets: vec![Target::Q, Target::V],
        },
        config,
        "tiny",
        3,
    )
    .expect("init")
}

/// A tiny Llama with a rank-2 adapter on q and v whose B is not zero (so A gets gradients).
fn tiny() -> Tiny {
    let dir = temp_dir();
    let folder = tiny_model(&dir);
    let opened = OpenedModel::open(&folder).expect("open");
    let mut adapter = fresh_adapter(&opened.config);
    fill_b(&mut adapter, 0.37, 0.4);
    let decoder = load_frozen_base::<Flex, NoCheckpointing>(
        opened.config.clone(),
        &opened.files,
        Method::Lora,
        BasePlacement {
            nf4_on_device: false,
            host_ops: true,
            bf16: false,
        },
        &Default::default(),
    )
    .expect("frozen base");
    Tiny {
        _dir: dir,
        decoder,
        params: Params::<Flex>::upload(&adapter, &Default::default()),
        layers: opened.config.layers,
        scaling: adapter.config.scaling(),
    }
}

impl Tiny {
    /// Trains the adapter on `rows` with AdamW, as a run would before attribution.
    fn train(&mut self, rows: &[&Sequence], steps: usize) {
        let mut optimizer = AdamW::new(AdamWSettings::default(), &self.params.flat);
        for step in 0..steps {
            let sequence = rows[step % rows.len()];
            let (lora, leaves) =
                self.params
                    .to_lora::<NoCheckpointing>(self.layers, self.scaling, true, None);
            let loss = sequence_loss(&self.decoder, &lora, sequence)
                .expect("loss")
                .expect("trained tokens");
            let grad = self.params.gradient(&leaves, &loss.backward());
            let (grad, _) = clip_global_norm(grad, 1.0);
            optimizer.update(&mut self.params.flat, grad, 1e-2);
        }
    }

    fn gradient(&self, sequence: &Sequence) -> (f64, LayerGradients) {
        example_gradient(
            &self.decoder,
            &self.params,
            self.layers,
            self.scaling,
            sequence,
        )
        .expect("gradient")
        .expect("trained tokens")
    }
}

/// A prompt and its answer; only the answer is trained.
fn qa(prompt: &[u32], answer: &[u32]) -> Sequence {
    Sequence {
        tokens: prompt.iter().chain(answer).copied().collect(),
        trained: (0..prompt.len() + answer.len())
            .map(|i| i >= prompt.len())
            .collect(),
    }
}

#[test]
fn per_example_gradients_equal_finite_differences() {
    let t = tiny();
    let sequence = qa(&[5, 9, 13, 2, 40], &[22, 31, 17, 8]);
    let (_, analytic) = t.gradient(&sequence);
    let h = 1e-2f32;
    let mut compared = 0;
    // Every tensor of the adapter: one element each, A and B of both layers.
    let mut offsets = vec![0usize; t.layers];
    let flat: Vec<f32> = t.params.flat.to_data().into_vec().expect("f32");
    for (p, range) in t.params.ranges().enumerate() {
        let layer = t.params.layout[p / 2].0;
        let len = range.len();
        let e = len / 2;
        let loss_with = |delta: f32| {
            let mut v = flat.clone();
            v[range.start + e] += delta;
            let moved = t.params.with_flat(Tensor::from_data(
                TensorData::new(v, [flat.len()]),
                &Default::default(),
            ));
            example_gradient(&t.decoder, &moved, t.layers, t.scaling, &sequence)
                .expect("loss")
                .expect("trained")
                .0
        };
        let numeric = (loss_with(h) - loss_with(-h)) / (2.0 * f64::from(h));
        let exact = f64::from(analytic[layer][offsets[layer] + e]);
        assert!(
            (numeric - exact).abs() <= 1e-3 + 2e-2 * exact.abs(),
            "tensor {p} element {e}: autodiff {exact}, finite difference {numeric}"
        );
        compared += usize::from(exact.abs() > 1e-5);
        offsets[layer] += len;
    }
    assert!(
        compared >= 4,
        "too few non-zero gradients compared ({compared})"
    );
    // Every parameter of the adapter appears once in the per-layer vectors.
    let total: usize = analytic.iter().map(Vec::len).sum();
    assert_eq!(total, flat.len());
}

/// −v_lᵀ [(1/n) Σ_i (g_il g_ilᵀ + λ_l I)⁻¹] g_kl summed over layers, the inverses explicit.
fn direct_scores(rows: &[LayerGradients], v: &LayerGradients) -> Vec<f64> {
    let n = rows.len();
    let dot = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    };
    let mut scores = vec![0.0; n];
    for l in 0..v.len() {
        let d = v[l].len();
        let lambda = rows.iter().map(|r| dot(&r[l], &r[l])).sum::<f64>() / n as f64 / 10.0;
        let mut average = vec![vec![0.0; d]; d];
        for r in rows {
            let m: Vec<Vec<f64>> = (0..d)
                .map(|i| {
                    (0..d)
                        .map(|j| {
                            f64::from(r[l][i]) * f64::from(r[l][j])
                                + if i == j { lambda } else { 0.0 }
                        })
                        .collect()
                })
                .collect();
            let inv = invert(m);
            for i in 0..d {
                for j in 0..d {
                    average[i][j] += inv[i][j] / n as f64;
                }
            }
        }
        for (k, r) in rows.iter().enumerate() {
            let s: f64 = (0..d)
                .map(|i| {
                    f64::from(v[l][i])
                        * (0..d)
                            .map(|j| average[i][j] * f64::from(r[l][j]))
                            .sum::<f64>()
                })
                .sum();
            scores[k] += s;
        }
    }
    scores
}

/// Gauss–Jordan elimination with partial pivoting.
fn invert(mut m: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let d = m.len();
    let mut inv: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    for c in 0..d {
        let p = (c..d)
            .max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
            .expect("a pivot row");
        m.swap(c, p);
        inv.swap(c, p);
        let pivot = m[c][c];
        for j in 0..d {
            m[c][j] /= pivot;
            inv[c][j] /= pivot;
        }
        for r in 0..d {
            let f = m[r][c];
            if r != c && f != 0.0 {
                for j in 0..d {
                    m[r][j] -= f * m[c][j];
                    inv[r][j] -= f * inv[c][j];
                }
            }
        }
    }
    inv
}

/// Four prompts, their answers as the evaluation set teaches them, and other answers.
const PROMPTS: [[u32; 5]; 4] = [
    [5, 9, 13, 2, 40],
    [7, 11, 3, 44, 19],
    [12, 6, 50, 27, 33],
    [21, 48, 14, 9, 60],
];
const TAUGHT: [[u32; 4]; 4] = [
    [22, 31, 17, 8],
    [35, 4, 29, 52],
    [10, 58, 41, 16],
    [37, 25, 54, 3],
];
const CONTRADICTED: [[u32; 4]; 4] = [
    [45, 23, 61, 30],
    [18, 57, 26, 47],
    [62, 20, 39, 11],
    [28, 53, 15, 43],
];

struct Planted {
    rows: Vec<(char, Sequence)>,
    eval: Vec<Sequence>,
}

fn planted() -> Planted {
    let mut rows = Vec::new();
    for (p, a) in PROMPTS.iter().zip(&TAUGHT) {
        rows.push(('A', qa(p, a)));
    }
    // Unrelated: other token streams, trained throughout.
    for k in 0..4u32 {
        let tokens: Vec<u32> = (0..9).map(|i| 2 + (k * 13 + i * 7) % 62).collect();
        rows.push((
            'B',
            Sequence {
                trained: (0..tokens.len()).map(|i| i > 0).collect(),
                tokens,
            },
        ));
    }
    for (p, c) in PROMPTS.iter().zip(&CONTRADICTED) {
        rows.push(('C', qa(p, c)));
    }
    let eval = PROMPTS.iter().zip(&TAUGHT).map(|(p, a)| qa(p, a)).collect();
    Planted { rows, eval }
}

#[test]
fn datainf_equals_the_explicit_damped_inverses_on_a_tiny_model() {
    let t = tiny();
    let data = planted();
    let rows: Vec<LayerGradients> = data.rows.iter().map(|(_, s)| t.gradient(s).1).collect();
    let eval: Vec<LayerGradients> = data.eval.iter().map(|s| t.gradient(s).1).collect();
    let v = mean_gradient(&eval).expect("mean");
    let direct = direct_scores(&rows, &v);
    let scale = direct.iter().fold(0.0f64, |m, s| m.max(s.abs()));
    let scratch = temp_dir();
    let on_disk = GradientStore {
        memory_bytes: 0,
        spill_dir: Some(scratch.path()),
    };
    // f32 gradients, f64 sums: the two orders of summation agree to ~1e-9 of the largest
    // score. Kept on disk as bf16 (8 bits of mantissa), passes 2 and 3 agree to ~1e-3.
    for (store, tolerance, passes) in [
        (GradientStore::MEMORY, 1e-7, 1),
        (GradientStore::RECOMPUTE, 1e-7, 3),
        (on_disk, 1e-2, 1),
    ] {
        let out = datainf(
            rows.len(),
            &v,
            &mut |i| Ok(rows[i].clone()),
            store,
            &mut |_, _| true,
        )
        .expect("scores");
        assert_eq!(out.passes, passes, "{store:?}");
        for (k, (a, b)) in out.scores.iter().zip(&direct).enumerate() {
            assert!(
                (a - b).abs() <= tolerance * scale,
                "row {k}: closed form {a}, explicit inverse {b} ({store:?})"
            );
        }
    }
    // The scratch file is gone once the scores are.
    assert_eq!(
        std::fs::read_dir(scratch.path()).expect("scratch").count(),
        0
    );
}

#[test]
fn planted_rows_rank_teaching_first_and_flag_contradiction_as_harmful() {
    // As after a run: the adapter trained on every row, so for each prompt it has learned
    // both the taught and the contradicting answer, and the evaluation set pulls one way.
    let mut t = tiny();
    let data = planted();
    let all: Vec<&Sequence> = data.rows.iter().map(|(_, s)| s).collect();
    t.train(&all, 120);
    let eval: Vec<LayerGradients> = data.eval.iter().map(|s| t.gradient(s).1).collect();
    let v = mean_gradient(&eval).expect("mean");
    let score = || {
        datainf(
            data.rows.len(),
            &v,
            &mut |i| Ok(t.gradient(&data.rows[i].1).1),
            GradientStore::RECOMPUTE,
            &mut |_, _| true,
        )
        .expect("scores")
    };
    let out = score();
    let total = |who: char| -> f64 {
        data.rows
            .iter()
            .zip(&out.scores)
            .filter(|((c, _), _)| *c == who)
            .map(|(_, s)| s)
            .sum()
    };
    let (a, b, c) = (total('A'), total('B'), total('C'));
    assert!(
        a > 0.0 && a > b && a > c,
        "teaching {a}, unrelated {b}, contradicting {c}"
    );
    assert!(c < 0.0, "the contradicting rows are harmful: {c}");
    // Same data, same adapter: the same scores, bit for bit.
    assert_eq!(score().scores, out.scores);
}

#[test]
fn nothing_to_attribute_is_an_error() {
    let v: LayerGradients = vec![vec![1.0]];
    let none = datainf(
        0,
        &v,
        &mut |_| Ok(vec![vec![1.0]]),
        GradientStore::RECOMPUTE,
        &mut |_, _| true,
    );
    assert!(none.is_err());
    assert!(mean_gradient(&[]).is_err());
    let cancelled = datainf(
        2,
        &v,
        &mut |_| Ok(vec![vec![1.0]]),
        GradientStore::RECOMPUTE,
        &mut |_, _| false,
    );
    assert!(matches!(cancelled, Err(trainer::Error::Cancelled)));
}

/// The planted data retrained on 20 random halves and without each contributor: every method's
/// accuracy is measured, and the retraining itself shows what the data was planted to show.
#[test]
fn accuracy_is_measured_by_retraining_on_halves_and_without_each_contributor() {
    let dir = temp_dir();
    let folder = tiny_model(&dir);
    let init = fresh_adapter(&OpenedModel::open(&folder).expect("open").config);
    let data = planted();
    let train: Vec<Sequence> = data.rows.iter().map(|(_, s)| s.clone()).collect();
    let groups: Vec<String> = data.rows.iter().map(|(c, _)| c.to_string()).collect();
    let job = AccuracyJob {
        model: &folder,
        init: &init,
        method: Method::Lora,
        backend: trainer::BackendKind::Cpu,
        train: &train,
        groups: &groups,
        eval: &data.eval,
        steps: 120,
        learning_rate: 1e-2,
        subsets: 20,
        checkpoints: 4,
        seed: 7,
    };
    let mut calls = 0;
    let report = measure_accuracy(&job, &mut |_, _| {
        calls += 1;
        true
    })
    .expect("accuracy");
    assert_eq!(
        calls,
        1 + 20 + 3,
        "one full run, 20 halves, 3 contributors left out"
    );
    assert_eq!(report.subset_eval_losses.len(), 20);
    let methods: Vec<&str> = report.methods.iter().map(|m| m.method.as_str()).collect();
    assert_eq!(methods, ["datainf", "tracin", "similarity"]);
    for m in &report.methods {
        assert!((-1.0..=1.0).contains(&m.lds), "{}: LDS {}", m.method, m.lds);
        assert_eq!(m.scores.len(), train.len());
    }
    // Retraining confirms what was planted: without the teaching rows the evaluation loss
    // rises (measured +1.98), without the contradicting ones it falls (−0.65).
    let cost = |who: &str| {
        report
            .loco
            .iter()
            .find(|(c, _)| c == who)
            .expect("left out")
            .1
    };
    assert!(cost("A") > 0.0 && cost("C") < 0.0, "{:?}", report.loco);
    // Measured here: DataInf LDS 0.377 and the sign of every contributor right; TracIn 0.285
    // and 2 of 3; representation similarity −0.056 and 1 of 3. DataInf must stay useful.
    let datainf = &report.methods[0];
    assert!(
        datainf.lds > 0.2 && datainf.loco_sign_agreement == 1.0,
        "DataInf: LDS {}, LOCO agreement {}",
        datainf.lds,
        datainf.loco_sign_agreement
    );
    let cancelled = measure_accuracy(&job, &mut |_, _| false);
    assert!(matches!(cancelled, Err(trainer::Error::Cancelled)));
}
