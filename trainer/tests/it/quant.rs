//! `trainer::quant`: dequantisation against gguf-py's values, the block matrix product against
//! dequantise-then-multiply, and the error cases.

use std::path::{Path, PathBuf};

use trainer::loading::ggml::GgmlType;
use trainer::quant::{
    DequantError, QuantMatrix, Simd, dequantize, dequantize_into, dequantize_with, is_supported,
};

/// Every type the module decodes.
const TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// The instruction sets this processor runs (scalar always, AVX2 where available).
fn simds() -> Vec<Simd> {
    [Simd::Scalar, Simd::Avx2]
        .into_iter()
        .filter(|s| s.is_available())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Golden values from gguf-py (trainer/tests/scripts/quant_golden.py).

struct Golden {
    ty: GgmlType,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

fn golden_path(ty: GgmlType) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/quant")
        .join(format!("{}.bin", ty.name().to_lowercase()))
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn read_golden(ty: GgmlType) -> Golden {
    let path = golden_path(ty);
    let data = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("read {} (see quant_golden.py): {e}", path.display()));
    assert_eq!(&data[..4], b"QGLD", "{}", path.display());
    let id = read_u32(&data, 4);
    let n = read_u32(&data, 8) as usize;
    let n_bytes = read_u32(&data, 12) as usize;
    assert_eq!(id, ty.id(), "{}", path.display());
    let bytes = data[16..16 + n_bytes].to_vec();
    let values: Vec<f32> = data[16 + n_bytes..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(values.len(), n, "{}", path.display());
    Golden { ty, bytes, values }
}

/// Bit-identical, except that any NaN matches any NaN.
fn assert_same_bits(ty: GgmlType, what: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{ty} {what}: length");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let same = g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan());
        assert!(
            same,
            "{ty} {what}: element {i} (block {}) is {g:e} ({:#010x}), gguf-py says {e:e} ({:#010x})",
            i / ty.block_size() as usize,
            g.to_bits(),
            e.to_bits()
        );
    }
}

#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    for ty in TYPES {
        let golden = read_golden(ty);
        let n = golden.values.len();
        assert!(n > 0);

        let got = dequantize(ty, &golden.bytes, n).expect("dequantize");
        assert_same_bits(ty, "dequantize", &got, &golden.values);

        for simd in simds() {
            let got = dequantize_with(ty, &golden.bytes, n, simd).expect("dequantize_with");
            assert_same_bits(
                ty,
                &format!("dequantize_with {simd:?}"),
                &got,
                &golden.values,
            );
        }

        let mut into = vec![f32::NAN; n];
        dequantize_into(ty, &golden.bytes, &mut into).expect("dequantize_into");
        assert_same_bits(ty, "dequantize_into", &into, &golden.values);

        // The same data as a matrix of two rows.
        let rows = 2;
        let cols = n / rows;
        let m = QuantMatrix::new(ty, rows, cols, golden.bytes.clone()).expect("a matrix");
        assert_same_bits(
            ty,
            "QuantMatrix::dequantize",
            &m.dequantize(),
            &golden.values,
        );
        for r in 0..rows {
            let expected = &golden.values[r * cols..(r + 1) * cols];
            assert_same_bits(ty, &format!("row {r}"), &m.row(r), expected);
        }
    }
}

#[test]
fn golden_files_cover_every_supported_type() {
    for &ty in GgmlType::ALL {
        assert_eq!(
            is_supported(ty),
            TYPES.contains(&ty),
            "{ty}: is_supported disagrees with the tested list"
        );
        assert_eq!(
            golden_path(ty).exists(),
            is_supported(ty),
            "golden file for {ty}"
        );
    }
    // Some golden values are special: make sure they survived.
    let f16 = read_golden(GgmlType::F16);
    assert!(f16.values.iter().any(|v| v.is_nan()));
    assert!(f16.values.contains(&f32::INFINITY));
    assert!(
        f16.values
            .iter()
            .any(|v| v.is_subnormal() || (v.abs() < 6.2e-5 && *v != 0.0))
    );
    let bf16 = read_golden(GgmlType::BF16);
    assert!(bf16.values.iter().any(|v| v.is_subnormal()));
    let _ = bf16.ty;
}

// ---------------------------------------------------------------------------------------------
// Random matrices.

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn float(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Offsets of the f16 scale fields in a block (ggml-common.h).
fn scale_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// Random tensor data of `n` elements: random block bytes with small finite scales, or random
/// numbers for the float types.
fn random_data(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    match ty {
        GgmlType::F32 => (0..n).flat_map(|_| rng.float().to_le_bytes()).collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(rng.float()).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(rng.float()).to_le_bytes())
            .collect(),
        _ => {
            let block = ty.block_size() as usize;
            let size = ty.type_size() as usize;
            let mut bytes = rng.bytes(n / block * size);
            for b in bytes.chunks_exact_mut(size) {
                for &at in scale_fields(ty) {
                    let scale = half::f16::from_f32(rng.float() * 0.05);
                    b[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                }
            }
            bytes
        }
    }
}

/// `n × rows` products in f64 of `x` (`n × cols`) with the dequantised weights, and the sums
/// of `|w·x|` (the scale of the summation error).
fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0; n * rows];
    let mut mag = vec![0.0; n * rows];
    for i in 0..n {
        let xi = &x[i * cols..(i + 1) * cols];
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            for (&a, &b) in wr.iter().zip(xi) {
                out[i * rows + r] += f64::from(a) * f64::from(b);
                mag[i * rows + r] += (f64::from(a) * f64::from(b)).abs();
            }
        }
    }
    (out, mag)
}

/// Relative tolerance, against `Σ|w·x|`, of the f32 sums in `matmul_t` compared with the f64
/// reference on the same (possibly 8-bit-rounded) input: the kernels sum in f32, in blocks, so
/// the error is a few ulps of the magnitude sum.
const SUM_TOLERANCE: f64 = 1e-4;

/// Shapes `(rows, cols)` per type: odd row counts; a small product (run on the calling thread)
/// and one large enough to be split among threads.
fn shapes(ty: GgmlType) -> [(usize, usize); 2] {
    match ty.block_size() {
        1 => [(5, 75), (67, 301)],
        32 => [(7, 96), (67, 320)],
        _ => [(3, 256), (37, 768)],
    }
}

#[test]
fn matmul_t_matches_dequantise_then_multiply() {
    let mut rng = Rng(7);
    for ty in TYPES {
        for (rows, cols) in shapes(ty) {
            let bytes = random_data(ty, rows * cols, &mut rng);
            let m = QuantMatrix::new(ty, rows, cols, bytes).expect("a matrix");
            let w = m.dequantize();
            for n in [1, 3, 17] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.float() * 2.0).collect();
                // The integer kernels multiply with x rounded to 8 bits per block.
                let seen = m.rounded_input(&x);
                assert_eq!(seen == x, !m.quantizes_input(), "{ty}: rounded input");
                let (expected, mag) = reference(&w, rows, cols, &seen, n);
                for simd in simds() {
                    let mut out = vec![f32::NAN; n * rows];
                    m.matmul_t_with(&x, n, &mut out, simd);
                    for (k, (&got, (&e, &mag))) in
                        out.iter().zip(expected.iter().zip(&mag)).enumerate()
                    {
                        let err = (f64::from(got) - e).abs();
                        assert!(
                            err <= SUM_TOLERANCE * mag + 1e-30,
                            "{ty} {rows}×{cols} n={n} {simd:?}: out[{}][{}] = {got}, \
                             expected {e} (error {err:e}, Σ|w·x| = {mag:e})",
                            k / rows,
                            k % rows
                        );
                    }
                    // The public entry point picks one of these.
                    if simd == Simd::detect() {
                        let mut auto = vec![0.0; n * rows];
                        m.matmul_t(&x, n, &mut auto);
                        assert_eq!(auto, out, "{ty}: matmul_t vs matmul_t_with({simd:?})");
                    }
                }
            }
        }
    }
}

/// Elements per input scale of the integer kernels (see the `trainer::quant` docs).
fn input_block(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => 256,
        _ => 32,
    }
}

/// The 8-bit input rounding costs at most half a step per element: for each input block,
/// `|x - x̃| ≤ max|x| / 254`. So the product with the real input is within that bound (plus
/// the summation tolerance) of the kernels' result. This is llama.cpp's activation error.
#[test]
fn quantised_input_error_is_bounded_by_half_a_step() {
    let mut rng = Rng(11);
    for ty in TYPES {
        let (rows, cols) = shapes(ty)[1];
        let bytes = random_data(ty, rows * cols, &mut rng);
        let m = QuantMatrix::new(ty, rows, cols, bytes).expect("a matrix");
        if !m.quantizes_input() {
            continue;
        }
        let block = input_block(ty);
        let w = m.dequantize();
        let n = 3;
        let x: Vec<f32> = (0..n * cols).map(|_| rng.float() * 3.0).collect();
        let (exact, mag) = reference(&w, rows, cols, &x, n);
        let mut out = vec![0.0; n * rows];
        m.matmul_t(&x, n, &mut out);
        let mut worst = 0.0f64;
        for i in 0..n {
            for r in 0..rows {
                let mut bound = 0.0;
                for b in 0..cols / block {
                    let xs = &x[i * cols + block * b..][..block];
                    let ws = &w[r * cols + block * b..][..block];
                    let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                    let wsum: f64 = ws.iter().map(|v| f64::from(v.abs())).sum();
                    bound += wsum * f64::from(amax) / 254.0 * 1.001;
                }
                let k = i * rows + r;
                let err = (f64::from(out[k]) - exact[k]).abs();
                assert!(
                    err <= bound + SUM_TOLERANCE * mag[k],
                    "{ty}: out[{i}][{r}] = {}, unrounded input gives {} (error {err:e}, bound {bound:e})",
                    out[k],
                    exact[k]
                );
                worst = worst.max(err / mag[k]);
            }
        }
        assert!(worst > 0.0, "{ty}: the input was rounded");
    }
}

#[test]
fn rounded_input_is_within_half_a_step() {
    let mut rng = Rng(3);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let cols = 512;
        let m = QuantMatrix::new(ty, 1, cols, random_data(ty, cols, &mut rng)).expect("a matrix");
        let block = input_block(ty);
        let x: Vec<f32> = (0..3 * cols).map(|_| rng.float() * 10.0).collect();
        let q = m.rounded_input(&x);
        assert_eq!(q.len(), x.len());
        for (xb, qb) in x.chunks(block).zip(q.chunks(block)) {
            let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            for (&a, &b) in xb.iter().zip(qb) {
                assert!((a - b).abs() <= d * 0.5001, "{ty}: {a} → {b} (step {d})");
                let steps = b / d;
                assert!(
                    (steps.round() - steps).abs() < 1e-4,
                    "{ty}: {b} is a multiple of {d}"
                );
            }
        }
        // Zeros stay zero; the largest element is kept (up to the scale's rounding).
        assert_eq!(m.rounded_input(&vec![0.0; cols]), vec![0.0; cols]);
        let mut x = vec![0.0f32; cols];
        x[5] = -3.0;
        x[6] = 1.5;
        let q = m.rounded_input(&x);
        assert!((q[5] + 3.0).abs() < 1e-6, "{ty}: {}", q[5]);
        assert!((q[6] - 1.5).abs() <= 3.0 / 254.0, "{ty}: {}", q[6]);
    }
    // The other types take their input as it is.
    let f = QuantMatrix::from_f32(1, 3, &[1.0, 2.0, 3.0]);
    assert_eq!(f.rounded_input(&[0.1, 0.2, 0.3]), vec![0.1, 0.2, 0.3]);
}

#[test]
fn scalar_and_avx2_kernels_agree() {
    if !Simd::Avx2.is_available() {
        eprintln!("no AVX2 here: only the scalar kernels ran");
        return;
    }
    let mut rng = Rng(5);
    for ty in TYPES {
        let (rows, cols) = shapes(ty)[1];
        let bytes = random_data(ty, rows * cols, &mut rng);
        let m = QuantMatrix::new(ty, rows, cols, bytes).expect("a matrix");
        let n = 2;
        let x: Vec<f32> = (0..n * cols).map(|_| rng.float()).collect();
        let seen = m.rounded_input(&x);
        let (_, mag) = reference(&m.dequantize(), rows, cols, &seen, n);
        let mut scalar = vec![0.0; n * rows];
        let mut avx2 = vec![0.0; n * rows];
        m.matmul_t_with(&x, n, &mut scalar, Simd::Scalar);
        m.matmul_t_with(&x, n, &mut avx2, Simd::Avx2);
        for k in 0..n * rows {
            let diff = f64::from((scalar[k] - avx2[k]).abs());
            assert!(
                diff <= 2.0 * SUM_TOLERANCE * mag[k],
                "{ty}: {} vs {}",
                scalar[k],
                avx2[k]
            );
        }
    }
}

#[test]
fn matmul_t_with_an_empty_input_or_zero_rows() {
    let m = QuantMatrix::from_f32(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let mut out: Vec<f32> = Vec::new();
    m.matmul_t(&[], 0, &mut out);
    let mut out = vec![0.0; 2];
    m.matmul_t(&[1.0, 0.0, -1.0], 1, &mut out);
    assert_eq!(out, vec![-2.0, -2.0]);
    let empty = m.permute_rows(&[]);
    assert_eq!(empty.rows(), 0);
    let mut none: Vec<f32> = Vec::new();
    empty.matmul_t(&[1.0, 2.0, 3.0], 1, &mut none);
}

#[test]
#[should_panic(expected = "matmul_t: input")]
fn matmul_t_rejects_a_wrong_input_length() {
    let m = QuantMatrix::from_f32(2, 3, &[0.0; 6]);
    let mut out = vec![0.0; 2];
    m.matmul_t(&[0.0; 4], 1, &mut out);
}

// ---------------------------------------------------------------------------------------------
// Matrix accessors.

#[test]
fn accessors_rows_and_permutation() {
    let mut rng = Rng(13);
    let (rows, cols) = (9, 64);
    let ty = GgmlType::Q4_1;
    let bytes = random_data(ty, rows * cols, &mut rng);
    let m = QuantMatrix::new(ty, rows, cols, bytes.clone()).expect("a matrix");
    assert_eq!((m.ty(), m.rows(), m.cols()), (ty, rows, cols));
    assert_eq!(m.bytes(), &bytes[..]);
    assert_eq!(m.row_bytes(), 2 * 20);
    assert!(m.quantizes_input());
    assert!(!QuantMatrix::from_f32(1, 1, &[1.0]).quantizes_input());

    let w = m.dequantize();
    for r in 0..rows {
        assert_eq!(m.row(r), &w[r * cols..(r + 1) * cols]);
    }

    let order = [8, 0, 7, 1, 6, 2, 5, 3, 4];
    let p = m.permute_rows(&order);
    assert_eq!((p.ty(), p.rows(), p.cols()), (ty, rows, cols));
    for (k, &r) in order.iter().enumerate() {
        assert_eq!(p.row(k), m.row(r));
    }
    // Products follow the rows.
    let n = 3;
    let x: Vec<f32> = (0..n * cols).map(|_| rng.float()).collect();
    let mut a = vec![0.0; n * rows];
    let mut b = vec![0.0; n * rows];
    m.matmul_t(&x, n, &mut a);
    p.matmul_t(&x, n, &mut b);
    for i in 0..n {
        for (k, &r) in order.iter().enumerate() {
            assert_eq!(b[i * rows + k], a[i * rows + r]);
        }
    }
    // A gather may repeat or drop rows.
    let g = m.permute_rows(&[2, 2]);
    assert_eq!(g.rows(), 2);
    assert_eq!(g.row(1), m.row(2));

    let f = QuantMatrix::from_f32(2, 2, &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(f.ty(), GgmlType::F32);
    assert_eq!(f.dequantize(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(f.row(1), vec![3.0, 4.0]);
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn wrong_byte_length_says_expected_and_got() {
    let err = dequantize(GgmlType::Q4_0, &[0; 17], 32).expect_err("too short");
    assert_eq!(
        err,
        DequantError::ByteLength {
            ty: GgmlType::Q4_0,
            n_elements: 32,
            expected: 18,
            got: 17
        }
    );
    let message = err.to_string();
    for part in ["Q4_0", "32 elements", "18 bytes", "17 bytes"] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }

    let mut out = vec![0.0; 256];
    let err = dequantize_into(GgmlType::Q6_K, &[0; 211], &mut out).expect_err("too long");
    assert!(matches!(
        err,
        DequantError::ByteLength {
            expected: 210,
            got: 211,
            ..
        }
    ));

    let err = QuantMatrix::new(GgmlType::Q8_0, 3, 64, vec![0; 3 * 68 - 1]).expect_err("short");
    assert_eq!(
        err,
        DequantError::ByteLength {
            ty: GgmlType::Q8_0,
            n_elements: 192,
            expected: 204,
            got: 203
        }
    );
    let err = QuantMatrix::new(GgmlType::F16, 2, 3, vec![0; 13]).expect_err("long");
    assert!(err.to_string().contains("12 bytes"), "{err}");
}

#[test]
fn partial_blocks_are_rejected() {
    let err = dequantize(GgmlType::Q4_K, &[0; 144], 255).expect_err("partial block");
    assert_eq!(
        err,
        DequantError::PartialBlock {
            ty: GgmlType::Q4_K,
            n_elements: 255,
            block_size: 256
        }
    );
    assert!(err.to_string().contains("255 elements of Q4_K"), "{err}");

    // 2 × 128 is a whole number of blocks in total, but rows may not split a block.
    let err = QuantMatrix::new(GgmlType::Q4_K, 2, 128, vec![0; 144]).expect_err("partial row");
    assert_eq!(
        err,
        DequantError::PartialRow {
            ty: GgmlType::Q4_K,
            cols: 128,
            block_size: 256
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("128") && message.contains("256"),
        "{message}"
    );
    assert!(QuantMatrix::new(GgmlType::Q5_0, 1, 48, vec![0; 33]).is_err());
}

#[test]
fn unsupported_types_are_named() {
    for ty in [
        GgmlType::IQ2_XXS,
        GgmlType::Q8_K,
        GgmlType::I32,
        GgmlType::TQ2_0,
        GgmlType::F64,
    ] {
        let bytes = vec![0; ty.type_size() as usize];
        let n = ty.block_size() as usize;
        let err = dequantize(ty, &bytes, n).expect_err("unsupported");
        assert_eq!(err, DequantError::Unsupported { ty });
        assert!(err.to_string().contains(ty.name()), "{err}");
        assert!(
            err.to_string().contains("Q4_K"),
            "lists the supported types: {err}"
        );
        let err = QuantMatrix::new(ty, 1, n, bytes).expect_err("unsupported");
        assert_eq!(err, DequantError::Unsupported { ty });
    }
}

#[test]
fn overflowing_shapes_are_rejected() {
    let err = QuantMatrix::new(GgmlType::F32, usize::MAX, 2, Vec::new()).expect_err("overflow");
    assert!(matches!(err, DequantError::TooLarge { .. }), "{err}");
}

#[test]
fn error_wraps_into_the_crate_error_with_the_tensor_and_path() {
    let source = dequantize(GgmlType::IQ1_S, &[0; 50], 256).expect_err("unsupported");
    let err = trainer::Error::TensorData {
        tensor: "blk.0.attn_q.weight".into(),
        source,
        path: PathBuf::from("/models/m.gguf"),
    };
    let message = err.to_string();
    assert!(
        message.contains("blk.0.attn_q.weight") && message.contains("IQ1_S"),
        "{message}"
    );
    crate::assert_names_path(&err, Path::new("/models/m.gguf"));
}
