use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::tensor::TensorData;

use super::*;
use crate::model::llama::rms_norm as burns_rms_norm;
use crate::train::op_testing::{assert_all_close, max_relative_difference};

type Ad = Autodiff<Wgpu, NoCheckpointing>;

/// Values spread over `[-spread, spread]`, different for each `seed`.
fn spread<const D: usize>(shape: [usize; D], spread: f32, seed: u64) -> Tensor<Ad, D> {
    let n = shape.iter().product::<usize>();
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let h = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xD6E8_FEB8);
            ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &WgpuDevice::default())
}

fn host<const D: usize>(t: Tensor<Ad, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().expect("f32 values")
}

fn kernels() -> FusedOps<Ad> {
    training_ops_for::<Wgpu, NoCheckpointing>().expect("wgpu has our kernels")
}

#[test]
fn rms_norm_kernels_match_burns_composition() {
    let op = kernels().rms_norm.expect("an RMSNorm kernel");
    // Widths below, at and above the threads of a row, and not multiples of them.
    for (rows, d) in [(5, 576), (3, 64), (4, 130), (2, 896)] {
        let weight = spread([d], 1.5, 1);
        let upstream = spread([rows, d], 1.0, 2);
        let run = |ours: bool| {
            let x = spread([rows, d], 3.0, 3).require_grad();
            let y = if ours {
                op(x.clone(), &weight, 1e-5)
            } else {
                burns_rms_norm(x.clone(), &weight, 1e-5)
            };
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let dx = x.grad(&grads).expect("x has a gradient");
            vec![host(y), dx.into_data().into_vec::<f32>().expect("f32")]
        };
        assert_all_close(
            &["output", "input gradient"],
            &run(true),
            &run(false),
            max_relative_difference,
            1e-5,
        );
    }
}

#[test]
fn causal_softmax_kernels_match_burns_composition() {
    let op = kernels().causal_softmax.expect("a causal softmax kernel");
    // Two key heads, each shared by three query heads; no cache, a cached prefix, and
    // rows longer than a cube's threads.
    for (n, start) in [(5, 0), (5, 4), (1, 6), (150, 0)] {
        let (kv_heads, group, keys) = (2, 3, start + n);
        let shape = [kv_heads, group * n, keys];
        let upstream = spread(shape, 1.0, 7);
        let mask: Vec<bool> = (0..kv_heads * group * n)
            .flat_map(|row| (0..keys).map(move |j| j > start + row % n))
            .collect();
        let mask = Tensor::<Ad, 3, burn::tensor::Bool>::from_data(
            TensorData::new(mask, shape),
            &WgpuDevice::default(),
        );
        let run = |ours: bool| {
            let scores = spread(shape, 8.0, 8).require_grad();
            let weights = if ours {
                op(scores.clone(), 0.125, n, start)
            } else {
                let masked = scores
                    .clone()
                    .mul_scalar(0.125)
                    .mask_fill(mask.clone(), f32::NEG_INFINITY);
                burn::tensor::activation::softmax(masked, 2)
            };
            let grads = (weights.clone() * upstream.clone()).sum().backward();
            let d = scores.grad(&grads).expect("the scores have a gradient");
            vec![host(weights), d.into_data().into_vec::<f32>().expect("f32")]
        };
        assert_all_close(
            &["weights", "score gradient"],
            &run(true),
            &run(false),
            max_relative_difference,
            1e-5,
        );
    }
}

#[test]
fn lora_dropout_kernels_match_burns_float_mask() {
    let op = kernels().lora_dropout.expect("a LoRA dropout kernel");
    // Keys whose top bits are set: the kernel's shifts and products are on unsigned words.
    let (n, inputs, r) = (3, 70, 4);
    let mask = DropoutMask::new(0xF00D_CAFE_DEAD_BEEF, [n, inputs], 0.7);
    let upstream = spread([n, r], 1.0, 10);
    let run = |ours: bool| {
        let x = spread([n, inputs], 2.0, 11).require_grad();
        let a = spread([inputs, r], 0.5, 12).require_grad();
        let y = if ours {
            op(x.clone(), a.clone(), mask, 0.25)
        } else {
            let m = TensorData::new(mask.floats(0.25), [n, inputs]);
            (x.clone() * Tensor::from_data(m, &WgpuDevice::default())).matmul(a.clone())
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        let grad = |t: &Tensor<Ad, 2>| {
            let g = t.grad(&grads).expect("a gradient");
            g.into_data().into_vec::<f32>().expect("f32")
        };
        vec![host(y), grad(&x), grad(&a)]
    };
    assert_all_close(
        &["output", "input gradient", "adapter gradient"],
        &run(true),
        &run(false),
        max_relative_difference,
        1e-5,
    );
}

#[test]
fn swiglu_kernels_match_burns_composition() {
    let op = kernels().swiglu.expect("a SwiGLU kernel");
    let shape = [7, 1536];
    let upstream = spread(shape, 1.0, 4);
    let run = |ours: bool| {
        // Gates far enough out that σ saturates at both ends.
        let gate = spread(shape, 12.0, 5).require_grad();
        let up = spread(shape, 2.0, 6).require_grad();
        let y = if ours {
            op(gate.clone(), up.clone())
        } else {
            burn::tensor::activation::silu(gate.clone()) * up.clone()
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        let grad = |t: &Tensor<Ad, 2>| {
            let g = t.grad(&grads).expect("a gradient");
            g.into_data().into_vec::<f32>().expect("f32")
        };
        vec![grad(&gate), grad(&up), host(y)]
    };
    assert_all_close(
        &["gate gradient", "up gradient", "output"],
        &run(true),
        &run(false),
        max_relative_difference,
        1e-5,
    );
}

#[test]
fn rope_kernels_match_burns_composition() {
    use crate::model::RopeTables;
    use crate::model::llama::{Rope, half_swap};
    let op = kernels().rope.expect("a rotary embedding kernel");
    for (n, heads, d) in [(5, 3, 8), (130, 9, 64), (1, 2, 128)] {
        let half = d / 2;
        let table = |seed| host(spread([n * half], 1.0, seed));
        let tables = RopeTables {
            cos: table(20),
            sin: table(21),
        };
        let rope = Rope::new(&tables, n, &half_swap(d, &WgpuDevice::default()));
        let upstream = spread([heads, n, d], 1.0, 22);
        let run = |ours: bool| {
            let x = spread([n, heads, d], 2.0, 23).require_grad();
            let y = rope.apply(x.clone(), if ours { Some(op) } else { None });
            let grads = (y.clone() * upstream.clone()).sum().backward();
            let dx = x.grad(&grads).expect("x has a gradient");
            vec![host(y), dx.into_data().into_vec::<f32>().expect("f32")]
        };
        assert_all_close(
            &["rotated", "input gradient"],
            &run(true),
            &run(false),
            max_relative_difference,
            1e-5,
        );
    }
}

/// More parts than one launch takes, of sizes that do not fill a cube, and one longer than
/// a grid row's threads, which they stride over.
#[test]
fn concat_matches_burns_cat() {
    let concat = concat_for::<Wgpu>().expect("wgpu has our concatenation");
    let device = WgpuDevice::default();
    let mut sizes: Vec<usize> = (0..2 * CONCAT_PARTS + 5).map(|k| 1 + 37 * k).collect();
    sizes.push(256 * u16::MAX as usize + 3);
    let parts: Vec<Tensor<Wgpu, 1>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &len)| {
            let values: Vec<f32> = (0..len).map(|i| (k * 100_000 + i) as f32).collect();
            Tensor::from_data(TensorData::new(values, [len]), &device)
        })
        .collect();
    let ours: Vec<f32> = concat(parts.clone()).into_data().into_vec().expect("f32");
    let burns: Vec<f32> = Tensor::cat(parts, 0).into_data().into_vec().expect("f32");
    assert_eq!(ours.len(), burns.len());
    let first_difference = ours.iter().zip(&burns).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "the same values in the same places");
}
