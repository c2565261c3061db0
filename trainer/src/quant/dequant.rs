//! Decoding ggml blocks to f32.
//!
//! One function per block type, following ggml-quants.c's `dequantize_row_*` (and the
//! `block_*` structs of ggml-common.h) operation for operation: the same products in the same
//! order, so every value is bit-identical to ggml's. Rust never fuses a multiply and an add
//! into an FMA on its own, so the AVX2 build of these loops ([`decode`] with [`Simd::Avx2`])
//! gives the same bits as the portable one.

use rayon::prelude::*;

use super::{DequantError, Simd};
use crate::loading::ggml::GgmlType;

/// Elements per K-quant super-block.
const QK_K: usize = 256;

/// Whether [`dequantize`] and [`super::QuantMatrix`] handle this type.
pub fn is_supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q8_0
            | GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q2_K
            | GgmlType::Q3_K
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
    )
}

/// `(elements per block, bytes per block)`; both are small constants.
pub(crate) fn block_geometry(ty: GgmlType) -> (usize, usize) {
    (ty.block_size() as usize, ty.type_size() as usize)
}

/// Decodes `n_elements` elements of type `ty` stored in `bytes` (the tensor's data, exactly).
///
/// Errors: [`DequantError::Unsupported`] for types other than F32, F16, BF16, Q8_0, Q4_0,
/// Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K; [`DequantError::PartialBlock`] when
/// `n_elements` is not a multiple of the block size; [`DequantError::ByteLength`] when `bytes`
/// is not exactly the data of `n_elements` elements.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, DequantError> {
    check(ty, bytes, n_elements)?;
    let mut out = vec![0.0; n_elements];
    decode_parallel(ty, bytes, &mut out, Simd::detect());
    Ok(out)
}

/// [`dequantize`] into `out`, whose length is the element count.
///
/// Errors: those of [`dequantize`], with `out.len()` as the element count.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    check(ty, bytes, out.len())?;
    decode_parallel(ty, bytes, out, Simd::detect());
    Ok(())
}

/// [`dequantize`] with the given instruction set ([`Simd::Avx2`] falls back to
/// [`Simd::Scalar`] where unavailable); the values are the same bits either way. For tests.
pub fn dequantize_with(
    ty: GgmlType,
    bytes: &[u8],
    n_elements: usize,
    simd: Simd,
) -> Result<Vec<f32>, DequantError> {
    check(ty, bytes, n_elements)?;
    let mut out = vec![0.0; n_elements];
    decode_parallel(ty, bytes, &mut out, simd.or_scalar());
    Ok(out)
}

/// Validates type, element count and byte length.
fn check(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<(), DequantError> {
    if !is_supported(ty) {
        return Err(DequantError::Unsupported { ty });
    }
    let (block_size, type_size) = block_geometry(ty);
    if !n_elements.is_multiple_of(block_size) {
        return Err(DequantError::PartialBlock {
            ty,
            n_elements,
            block_size,
        });
    }
    let expected = (n_elements / block_size).checked_mul(type_size);
    if expected != Some(bytes.len()) {
        return Err(DequantError::ByteLength {
            ty,
            n_elements,
            expected: expected.unwrap_or(usize::MAX),
            got: bytes.len(),
        });
    }
    Ok(())
}

/// [`decode`], split among rayon's threads when there is enough to do.
fn decode_parallel(ty: GgmlType, bytes: &[u8], out: &mut [f32], simd: Simd) {
    const ELEMENTS_PER_TASK: usize = 1 << 16;
    if out.len() <= ELEMENTS_PER_TASK {
        decode(ty, bytes, out, simd);
        return;
    }
    let (block_size, type_size) = block_geometry(ty);
    let blocks_per_task = ELEMENTS_PER_TASK / block_size;
    bytes
        .par_chunks(blocks_per_task * type_size)
        .zip(out.par_chunks_mut(blocks_per_task * block_size))
        .for_each(|(b, o)| decode(ty, b, o, simd));
}

/// Decodes whole blocks: `bytes` holds `out.len() / block_size` blocks of `ty` (callers have
/// checked; extra bytes or values are left alone). Unsupported types leave `out` as it is.
pub(crate) fn decode(ty: GgmlType, bytes: &[u8], out: &mut [f32], simd: Simd) {
    #[cfg(target_arch = "x86_64")]
    if simd == Simd::Avx2 {
        // SAFETY: `Simd::Avx2` is only handed out by `Simd::detect` / `Simd::or_scalar` after
        // `is_x86_feature_detected!` confirmed AVX2, FMA and F16C on this processor.
        unsafe { decode_avx2(ty, bytes, out) };
        return;
    }
    let _ = simd;
    decode_generic(ty, bytes, out);
}

/// [`decode_generic`] compiled for AVX2, so that its loops vectorise 8 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_avx2(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    decode_generic(ty, bytes, out);
}

#[inline(always)]
fn decode_generic(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*b);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = f16_to_f32(u16::from_le_bytes(*b));
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
            }
        }
        GgmlType::Q8_0 => blocks(bytes, out, q8_0),
        GgmlType::Q4_0 => blocks(bytes, out, q4_0),
        GgmlType::Q4_1 => blocks(bytes, out, q4_1),
        GgmlType::Q5_0 => blocks(bytes, out, q5_0),
        GgmlType::Q5_1 => blocks(bytes, out, q5_1),
        GgmlType::Q2_K => blocks(bytes, out, q2_k),
        GgmlType::Q3_K => blocks(bytes, out, q3_k),
        GgmlType::Q4_K => blocks(bytes, out, q4_k),
        GgmlType::Q5_K => blocks(bytes, out, q5_k),
        GgmlType::Q6_K => blocks(bytes, out, q6_k),
        _ => {}
    }
}

/// Applies a block decoder to each `B`-byte block and `E`-value slot.
#[inline(always)]
fn blocks<const B: usize, const E: usize>(
    bytes: &[u8],
    out: &mut [f32],
    block: impl Fn(&[u8; B], &mut [f32; E]),
) {
    for (b, o) in bytes
        .as_chunks::<B>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<E>().0)
    {
        block(b, o);
    }
}

/// IEEE half-precision bits to f32, exactly (subnormals, infinities and NaN payloads
/// included, as numpy and ggml's table convert them). Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let magnitude = h & 0x7fff;
    // Rebias the exponent from 15 to 127 by a multiplication, which also normalises
    // subnormals exactly: 2^112 = 2^(127 - 15).
    let finite = (f32::from_bits(magnitude << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let inf_nan = (magnitude << 13) | 0x7f80_0000;
    let bits = if magnitude >= 0x7c00 { inf_nan } else { finite };
    f32::from_bits(bits | sign)
}

/// The little-endian f16 at `b[i..i + 2]`, as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// `block_q8_0 { ggml_half d; int8_t qs[32]; }`: `y = qs · d`.
#[inline(always)]
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..]) {
        *y = f32::from(q as i8) * d;
    }
}

/// `block_q4_0 { ggml_half d; uint8_t qs[16]; }`: element `j` is the low nibble of `qs[j]`,
/// element `j + 16` its high nibble; `y = (q - 8) · d`.
#[inline(always)]
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = y.split_at_mut(16);
    for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(&b[2..]) {
        *lo = f32::from(i16::from(q & 0x0f) - 8) * d;
        *hi = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// `block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }`: `y = q · d + m`.
#[inline(always)]
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let (lo, hi) = y.split_at_mut(16);
    for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(&b[4..]) {
        *lo = f32::from(q & 0x0f) * d + m;
        *hi = f32::from(q >> 4) * d + m;
    }
}

/// `block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }`: bit `e` of the little-endian
/// `qh` is the fifth bit of element `e`; `y = (q - 16) · d`.
#[inline(always)]
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let (lo, hi) = y.split_at_mut(16);
    for (j, ((lo, hi), &q)) in lo.iter_mut().zip(hi).zip(&b[6..]).enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        *lo = ((u32::from(q & 0x0f) | h0) as i32 - 16) as f32 * d;
        *hi = ((u32::from(q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// `block_q5_1 { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; }`: `y = q · d + m`.
#[inline(always)]
fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (lo, hi) = y.split_at_mut(16);
    for (j, ((lo, hi), &q)) in lo.iter_mut().zip(hi).zip(&b[8..]).enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        *lo = (u32::from(q & 0x0f) | h0) as f32 * d + m;
        *hi = (u32::from(q >> 4) | h1) as f32 * d + m;
    }
}

/// `block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }`.
///
/// Sixteen groups of 16; group `g` has scale `d · (scales[g] & 15)` and minimum
/// `dmin · (scales[g] >> 4)`. Element `128h + 32j + 16s + l` is bits `2j..2j+2` of
/// `qs[32h + 16s + l]`, in group `8h + 2j + s`.
#[inline(always)]
fn q2_k(b: &[u8; 84], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    let (scales, rest) = b.split_at(16);
    let qs = &rest[..64];
    for (g, y) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        let (h, j, s) = (g / 8, (g / 2) % 4, g % 2);
        let sc = scales[g];
        let dl = d * f32::from(sc & 0x0f);
        let ml = dmin * f32::from(sc >> 4);
        let q = &qs[32 * h + 16 * s..][..16];
        for (y, &q) in y.iter_mut().zip(q) {
            *y = dl * f32::from((q >> (2 * j)) & 3) - ml;
        }
    }
}

/// `block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }`.
///
/// Sixteen groups of 16 with 6-bit scales (low 4 bits in `scales[0..8]`, high 2 bits in
/// `scales[8..12]`), offset by 32. Element `128h + 32j + 16s + l` takes its low 2 bits from
/// `qs[32h + 16s + l] >> 2j` and subtracts 4 unless bit `4h + j` of `hmask[16s + l]` is set.
#[inline(always)]
fn q3_k(b: &[u8; 110], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 108);
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sc = &b[96..108];
    for (g, y) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        let (h, j, s) = (g / 8, (g / 2) % 4, g % 2);
        let dl = d * f32::from(scale_q3_k(g, sc));
        let bit = 1u8 << (4 * h + j);
        let q = &qs[32 * h + 16 * s..][..16];
        let hm = &hmask[16 * s..][..16];
        for ((y, &q), &hm) in y.iter_mut().zip(q).zip(hm) {
            let v = i32::from((q >> (2 * j)) & 3) - if hm & bit != 0 { 0 } else { 4 };
            *y = dl * v as f32;
        }
    }
}

/// The signed 6-bit scale of group `g` (0..16) of a Q3_K block from its 12 packed scale bytes:
/// low 4 bits in `sc[0..8]` (low nibbles for groups 0..8, high nibbles for 8..16), high 2 bits
/// in `sc[8..12]`, offset by 32.
#[inline(always)]
pub(crate) fn scale_q3_k(g: usize, sc: &[u8]) -> i8 {
    let low = if g < 8 { sc[g] & 0x0f } else { sc[g - 8] >> 4 };
    let high = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// All eight 6-bit scales and minimums of a Q4_K or Q5_K block at once (as
/// [`scale_min_k4`] for `j` = 0..8), branch-free.
#[inline(always)]
pub(crate) fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0x0f) | ((q[j] >> 6) << 4);
        m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of group `j` (0..8) of a Q4_K or
/// Q5_K block from its 12 packed scale bytes.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }`.
///
/// Eight groups of 32; elements `64i .. 64i+32` are the low nibbles of `qs[32i .. 32i+32]`
/// (group `2i`), the next 32 their high nibbles (group `2i + 1`); `y = d·sc · q - dmin·m`.
#[inline(always)]
fn q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (i, y) in y.as_chunks_mut::<64>().0.iter_mut().enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = y.split_at_mut(32);
        let q = &qs[32 * i..][..32];
        for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(q) {
            *lo = d1 * f32::from(q & 0x0f) - m1;
            *hi = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// `block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32];
/// uint8_t qs[128]; }`: as Q4_K, with bit `g` of `qh[l]` as the fifth bit of element `l` of
/// group `g`.
#[inline(always)]
fn q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (i, y) in y.as_chunks_mut::<64>().0.iter_mut().enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
        let (lo, hi) = y.split_at_mut(32);
        let q = &qs[32 * i..][..32];
        for (((lo, hi), &q), &h) in lo.iter_mut().zip(hi).zip(q).zip(qh) {
            let h1 = if h & u1 != 0 { 16 } else { 0 };
            let h2 = if h & u2 != 0 { 16 } else { 0 };
            *lo = d1 * f32::from((q & 0x0f) + h1) - m1;
            *hi = d2 * f32::from((q >> 4) + h2) - m2;
        }
    }
}

/// `block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }`.
///
/// Per half `h` of 128 elements and `l` in 0..32, elements `128h + 32k + l` (k = 0..4) take
/// their low 4 bits from `ql[64h + l]` (k = 0: low nibble, k = 2: high nibble) or
/// `ql[64h + 32 + l]` (k = 1: low nibble, k = 3: high nibble), their high 2 bits from
/// `qh[32h + l] >> 2k`, and `y = d · scales[8h + l/16 + 2k] · (q - 32)`.
#[inline(always)]
fn q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 208);
    for (h, y) in y.as_chunks_mut::<128>().0.iter_mut().enumerate() {
        let ql = &b[64 * h..][..64];
        let qh = &b[128 + 32 * h..][..32];
        let sc = &b[192 + 8 * h..][..8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = i32::from((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
            let q2 = i32::from((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * f32::from(sc[is] as i8) * q1 as f32;
            y[l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
            y[l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
            y[l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
        }
    }
}
