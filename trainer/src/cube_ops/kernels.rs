//! The kernels, in CubeCL's language (whose `Tensor` and `Int` are not burn's).

use cubecl::prelude::*;

/// `silu(g) · u`, one thread per value.
#[cube(launch)]
pub(super) fn swiglu_forward_kernel<F: Float>(
    gate: &Tensor<F>,
    up: &Tensor<F>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let g = gate[i];
    let s = F::new(1.0) / (F::new(1.0) + F::exp(-g));
    out[i] = g * s * up[i];
}

/// `∂L/∂u = dy · silu(g)` and `∂L/∂g = dy · u · σ(g) · (1 + g · (1 − σ(g)))`.
#[cube(launch)]
pub(super) fn swiglu_backward_kernel<F: Float>(
    grad: &Tensor<F>,
    gate: &Tensor<F>,
    up: &Tensor<F>,
    d_gate: &mut Tensor<F>,
    d_up: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= d_gate.len() {
        terminate!();
    }
    let g = gate[i];
    let dy = grad[i];
    let one = F::new(1.0);
    let s = one / (one + F::exp(-g));
    d_up[i] = dy * g * s;
    d_gate[i] = dy * up[i] * s * (one + g * (one - s));
}

/// The sum (or with `max`, the largest) over the cube of each thread's `value`, returned to
/// every thread.
#[cube]
fn cube_reduce<F: Float>(value: F, #[comptime] threads: usize, #[comptime] max: bool) -> F {
    let mut shared = SharedMemory::<F>::new(threads);
    let unit = UNIT_POS_X as usize;
    shared[unit] = value;
    sync_cube();
    // A runtime value: it changes as the loop runs. The cube is `threads` wide.
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            if max {
                shared[unit] = F::max(shared[unit], shared[unit + stride]);
            } else {
                shared[unit] = shared[unit] + shared[unit + stride];
            }
        }
        sync_cube();
        stride /= 2;
    }
    let total = shared[0];
    // Every thread has read the total before a later reduction writes over it.
    sync_cube();
    total
}

/// The row a cube works on, where the rows are spread over a two-dimensional grid.
#[cube]
fn cube_row() -> usize {
    CUBE_POS_Y as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize
}

/// `y = x / rms(x) · w` for each row of `x` `[rows, d]`, one cube per row.
#[cube(launch)]
pub(super) fn rms_norm_forward_kernel<F: Float>(
    x: &Tensor<F>,
    weight: &Tensor<F>,
    out: &mut Tensor<F>,
    eps: f32,
    #[comptime] threads: usize,
    #[define(F)] _dtype: StorageType,
) {
    let d = x.shape(1);
    let base = cube_row() * d;
    if base >= x.len() {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let mut squares = F::new(0.0);
    let mut i = unit;
    while i < d {
        let v = x[base + i];
        squares += v * v;
        i += threads;
    }
    let total = cube_reduce::<F>(squares, threads, false);
    let inv = F::inverse_sqrt(total / F::cast_from(d) + F::cast_from(eps));
    let mut i = unit;
    while i < d {
        out[base + i] = x[base + i] * inv * weight[i];
        i += threads;
    }
}

/// `∂L/∂x = r · (dy ⊙ w) − x · r³ · Σ(dy ⊙ w ⊙ x) / d` with `r = 1 / rms(x)`, per row. The
/// weight is frozen (the adapter trains no norm), so it gets no gradient.
#[cube(launch)]
pub(super) fn rms_norm_backward_kernel<F: Float>(
    grad: &Tensor<F>,
    x: &Tensor<F>,
    weight: &Tensor<F>,
    d_x: &mut Tensor<F>,
    eps: f32,
    #[comptime] threads: usize,
    #[define(F)] _dtype: StorageType,
) {
    let d = x.shape(1);
    let base = cube_row() * d;
    if base >= x.len() {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let mut squares = F::new(0.0);
    let mut dot = F::new(0.0);
    let mut i = unit;
    while i < d {
        let v = x[base + i];
        squares += v * v;
        dot += grad[base + i] * weight[i] * v;
        i += threads;
    }
    let squares = cube_reduce::<F>(squares, threads, false);
    let dot = cube_reduce::<F>(dot, threads, false);
    let dims = F::cast_from(d);
    let inv = F::inverse_sqrt(squares / dims + F::cast_from(eps));
    let coefficient = inv * inv * inv * dot / dims;
    let mut i = unit;
    while i < d {
        d_x[base + i] = inv * grad[base + i] * weight[i] - x[base + i] * coefficient;
        i += threads;
    }
}

/// The attention weights of each row of `scores` `[.., rows, keys]`: `softmax(scale · s)` over
/// the keys a causal mask leaves, those at or before the row's position. Rows cycle through
/// `queries` positions (query heads that share a key head are stacked), and position `t` is
/// `start + t` in the sequence.
#[cube(launch)]
pub(super) fn causal_softmax_forward_kernel<F: Float>(
    scores: &Tensor<F>,
    out: &mut Tensor<F>,
    scale: f32,
    queries: u32,
    start: u32,
    #[comptime] threads: usize,
    #[define(F)] _dtype: StorageType,
) {
    let keys = scores.shape(scores.rank() - 1);
    let row = cube_row();
    let base = row * keys;
    if base >= scores.len() {
        terminate!();
    }
    let last = row % queries as usize + start as usize;
    let unit = UNIT_POS_X as usize;
    let scale = F::cast_from(scale);
    let mut largest = F::min_value();
    let mut j = unit;
    while j <= last {
        largest = F::max(largest, scores[base + j] * scale);
        j += threads;
    }
    let largest = cube_reduce::<F>(largest, threads, true);
    let mut total = F::new(0.0);
    let mut j = unit;
    while j <= last {
        total += F::exp(scores[base + j] * scale - largest);
        j += threads;
    }
    let inv = F::new(1.0) / cube_reduce::<F>(total, threads, false);
    let mut j = unit;
    while j < keys {
        let mut p = F::new(0.0);
        if j <= last {
            p = F::exp(scores[base + j] * scale - largest) * inv;
        }
        out[base + j] = p;
        j += threads;
    }
}

/// `∂L/∂s = scale · p ⊙ (∂L/∂p − Σ ∂L/∂p ⊙ p)` per row, from the weights `p` the forward pass
/// returned (zero where masked, so masked scores get no gradient).
#[cube(launch)]
pub(super) fn causal_softmax_backward_kernel<F: Float>(
    grad: &Tensor<F>,
    weights: &Tensor<F>,
    d_scores: &mut Tensor<F>,
    scale: f32,
    #[comptime] threads: usize,
    #[define(F)] _dtype: StorageType,
) {
    let keys = weights.shape(weights.rank() - 1);
    let base = cube_row() * keys;
    if base >= weights.len() {
        terminate!();
    }
    let unit = UNIT_POS_X as usize;
    let mut dot = F::new(0.0);
    let mut j = unit;
    while j < keys {
        dot += grad[base + j] * weights[base + j];
        j += threads;
    }
    let dot = cube_reduce::<F>(dot, threads, false);
    let scale = F::cast_from(scale);
    let mut j = unit;
    while j < keys {
        d_scores[base + j] = scale * weights[base + j] * (grad[base + j] - dot);
        j += threads;
    }
}

/// The host's `mix32` (`crate::model::dropout`), in the kernel language.
#[cube]
fn mix32(x: u32) -> u32 {
    let mut x = x;
    x ^= x >> 16;
    x *= 0x7FEB_352Du32;
    x ^= x >> 15;
    x *= 0x846C_A68Bu32;
    x ^ (x >> 16)
}

/// `x ⊙ m · factor` for the dropout mask `m` of `key`: value `i` is kept where
/// `mix32(mix32(i ^ key0) ^ key1) >> 8 < threshold`, as [`crate::model::DropoutMask`] draws it on
/// the host.
#[cube(launch)]
pub(super) fn dropout_kernel<F: Float>(
    x: &Tensor<F>,
    out: &mut Tensor<F>,
    key0: u32,
    key1: u32,
    threshold: u32,
    factor: f32,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let hash = mix32(mix32(i as u32 ^ key0) ^ key1);
    let mut value = F::new(0.0);
    if hash >> 8 < threshold {
        value = x[i] * F::cast_from(factor);
    }
    out[i] = value;
}

/// The rotary embedding of `x` `[n, heads, d]` (the projection's rows as they come), written
/// head-major to `out` `[heads, n, d]`: `x ⊙ cos + rotate_half(x) ⊙ sin` with the tables
/// `[n, d]` of [`crate::model::llama::Rope`] (`sin` negated in its first half).
#[cube(launch)]
pub(super) fn rope_forward_kernel<F: Float>(
    x: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let (heads, n, d) = (out.shape(0), out.shape(1), out.shape(2));
    let j = i % d;
    let t = (i / d) % n;
    let head = i / (d * n);
    let row = (t * heads + head) * d;
    let partner = (j + d / 2) % d;
    out[i] = x[row + j] * cos[t * d + j] + x[row + partner] * sin[t * d + j];
}

/// The rotation's transpose, back to the projection's layout: `∂L/∂x` `[n, heads, d]` from
/// `∂L/∂out` `[heads, n, d]`. Value `j` of a head reaches outputs `j` (through `cos`) and
/// `j ± d/2` (through `sin`).
#[cube(launch)]
pub(super) fn rope_backward_kernel<F: Float>(
    grad: &Tensor<F>,
    cos: &Tensor<F>,
    sin: &Tensor<F>,
    d_x: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= d_x.len() {
        terminate!();
    }
    let (n, heads, d) = (d_x.shape(0), d_x.shape(1), d_x.shape(2));
    let j = i % d;
    let head = (i / d) % heads;
    let t = i / (d * heads);
    let row = (head * n + t) * d;
    let partner = (j + d / 2) % d;
    d_x[i] = grad[row + j] * cos[t * d + j] + grad[row + partner] * sin[t * d + partner];
}

/// `parts` end to end in `out`, part `p` from `out[offsets[p]]`: cube row `p` of the grid
/// copies part `p`, each thread striding over its values.
#[cube(launch)]
pub(super) fn concat_kernel<F: Float>(
    parts: &Sequence<Tensor<F>>,
    offsets: Sequence<usize>,
    out: &mut Tensor<F>,
    #[define(F)] _dtype: StorageType,
) {
    let part = CUBE_POS_Y as usize;
    let step = (CUBE_COUNT_X * CUBE_DIM_X) as usize;
    #[unroll]
    for p in 0..parts.len() {
        if part == p {
            let values = &parts[p];
            let start = offsets[p];
            let mut i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
            while i < values.len() {
                out[start + i] = values[i];
                i += step;
            }
        }
    }
}

/// `NF4[q] · (DYN[qa] · scale + offset)` for element `i` of an NF4 matrix: `q` the nibble
/// of `codes` (eight a word, the first highest), `qa` its block's byte of `absmax_codes`
/// (four a word, one per block of 64), `scale` its group's (one per 256 blocks).
#[cube(launch)]
pub(super) fn nf4_dequantize_kernel<F: Float, I: Int>(
    codes: &Tensor<I>,
    absmax_codes: &Tensor<I>,
    absmax_scales: &Tensor<F>,
    code_book: &Tensor<F>,
    dynamic: &Tensor<F>,
    out: &mut Tensor<F>,
    offset: f32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let i = ABSOLUTE_POS;
    if i >= out.len() {
        terminate!();
    }
    let block = i / 64;
    // Arithmetic shifts keep the sign bit; the masks drop it.
    let code_shift = I::cast_from((28 - 4 * (i % 8)) as u32);
    let q = (codes[i / 8] >> code_shift) & I::new(15);
    let absmax_shift = I::cast_from((24 - 8 * (block % 4)) as u32);
    let qa = (absmax_codes[block / 4] >> absmax_shift) & I::new(255);
    let absmax =
        dynamic[u32::cast_from(qa) as usize] * absmax_scales[block / 256] + F::cast_from(offset);
    out[i] = code_book[u32::cast_from(q) as usize] * absmax;
}
