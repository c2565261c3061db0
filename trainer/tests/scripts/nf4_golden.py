#!/usr/bin/env python3
"""Golden values for trainer::quant::nf4 (QLoRA's NF4 with double-quantised absmax), from
bitsandbytes running on the CPU.

Writes to trainer/tests/golden/quant/:
- nf4_maps.bin: bitsandbytes' NF4 code book (16 f32) and its dynamic 8-bit map
  (`create_dynamic_map(signed=True)`, 256 f32), which quantises the absmax values.
- nf4_small.bin: a [37, 71] tensor (2627 values: 42 blocks of 64, the last one 3 values long,
  an odd count so the last byte has a padding nibble) with its input, packed codes, quantised
  absmax, second-level scales, offset, dequantised absmax and dequantised values.
- nf4_large.bin: a [300, 71] tensor (21300 values, 333 blocks, so two second-level blocks of
  256 and 77 absmax values): the same without input and dequantised values.

Both come from `bitsandbytes.functional.quantize_4bit(x, blocksize=64, quant_type="nf4",
compress_statistics=True)` and `dequantize_4bit`. The input is not drawn from a library RNG but
from an integer hash that the Rust test regenerates (see `value`), exactly: each value is an
integer below 2^24 times a power of two.

The script also quantises the same tensors with a plain numpy implementation of the paper's
algorithm as the Rust code does it (the NF4 thresholds of bitsandbytes' dQuantizeNF4 tree, ties
to the lower code; the exact nearest 8-bit code for the absmax) and prints where bitsandbytes'
CPU path differs from it, for the record. Expected: NF4 codes only for the inputs placed
exactly on one of the two versions of a midpoint where they differ (the tree's threshold and
torch's f32 midpoint are one ulp apart for 4 of the 15), absmax codes only next to a midpoint
(bitsandbytes' CPU 8-bit quantiser rounds through a 65536-entry table).

File layout (little-endian): b"NF4G", u32 version (1), u32 rows, u32 cols, u32 salt,
u32 has_values (1: input and dequantised values are present), f32 offset, then length-prefixed
(u32 count) arrays: packed codes (u8), absmax codes (u8), second-level scales (f32),
dequantised absmax (f32), input (f32), dequantised values (f32). nf4_maps.bin: b"NF4M",
16 f32, 256 f32.

Rerun (from the repository root; torch comes with bitsandbytes, ~5 GB with its CUDA wheels):
    python3 -m venv /tmp/bnbvenv && /tmp/bnbvenv/bin/pip install bitsandbytes numpy
    /tmp/bnbvenv/bin/python trainer/tests/scripts/nf4_golden.py [OUT_DIR]
Written with bitsandbytes 0.50.2, torch 2.15.0, numpy 2.4.6 on x86-64 (AVX-512).
"""

import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F

M32 = 0xFFFFFFFF


def fmix(i: int, salt: int) -> int:
    """murmur3's 32-bit finaliser of i·0x9E3779B1 xor salt."""
    h = ((i * 0x9E3779B1) & M32) ^ salt
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


# Per-block magnitudes (exponents of 2) cycled over the blocks of 64.
SHIFTS = [21, 24, 27, 22, 29, 20, 23]
# NF4 code book and its midpoints (the thresholds of bitsandbytes' dQuantizeNF4).
NF4 = np.array(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
     -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
     0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
     0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0],
    dtype=np.float32,
)
# torch's f32 midpoints, which bitsandbytes' CPU path (torch.bucketize) compares with.
NF4_MID = ((NF4[:-1] + NF4[1:]) / np.float32(2)).astype(np.float32)
# The thresholds of bitsandbytes' dQuantizeNF4 decision tree (its CUDA kernels and C reference)
# as its C compiler rounds them to f32; some are one ulp from NF4_MID.
TREE = [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476",
    "0.03979014977812767", "0.1202552504837513", "0.2035212516784668", "0.2920137718319893",
    "0.3893125355243683", "0.5016634166240692", "0.6427869200706482", "0.8614784181118011",
]


def f32_nearest(decimal: str) -> np.float32:
    """The f32 nearest to a decimal string, rounded once (np.float32(float(s)) rounds twice)."""
    exact = Fraction(decimal)
    guess = np.float32(float(decimal))
    candidates = [np.nextafter(guess, np.float32(-2)), guess, np.nextafter(guess, np.float32(2))]
    return min(candidates, key=lambda c: abs(Fraction(float(c)) - exact))


NF4_TREE = np.array([f32_nearest(t) for t in TREE], dtype=np.float32)


def value(i: int, salt: int) -> np.float32:
    """Element i: a sum of three 22-bit hashes, centred, times 2^-shift of its block; some
    blocks are special (see the match)."""
    block, k = divmod(i, 64)
    special = block % 16
    if special == 5:  # all zeros
        return np.float32(0.0)
    if special == 9:  # constant
        return np.float32(0.375)
    if special == 13:  # absmax exactly 1: the codes, both kinds of midpoints (ties), negatives
        table = list(NF4) + list(NF4_MID) + list(NF4_TREE) + [-v for v in NF4_MID] + [1.0]
        return np.float32(table[k % len(table)])
    s = sum(fmix(i, salt + j) >> 10 for j in range(3)) - 3 * (1 << 21)
    v = np.float32(s) * np.float32(2.0 ** -SHIFTS[block % len(SHIFTS)])
    if special == 11 and k == 7:  # one outlier
        return np.float32(1000.0)
    if special == 3 and k == 0:  # the largest magnitude is negative
        return np.float32(-3.5)
    return v


def tensor(rows: int, cols: int, salt: int) -> np.ndarray:
    return np.array([value(i, salt) for i in range(rows * cols)], dtype=np.float32)


def nearest(code_mid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index of the nearest code, ties to the lower one: the number of midpoints below x."""
    return np.searchsorted(code_mid, x, side="left").astype(np.uint8)


def numpy_reference(x: np.ndarray, dyn: np.ndarray):
    """The paper's algorithm as our Rust code implements it."""
    n = x.size
    blocks = -(n // -64)
    absmax = np.array([np.abs(x[b * 64:(b + 1) * 64]).max() for b in range(blocks)],
                      dtype=np.float32)
    codes = np.zeros(blocks * 64 + 1, dtype=np.uint8)
    for b in range(blocks):
        v = x[b * 64:(b + 1) * 64]
        a = absmax[b]
        codes[b * 64:b * 64 + v.size] = 7 if a == 0 else nearest(NF4_TREE, v * (np.float32(1) / a))
    codes[n:] = 7
    codes = codes[:n + n % 2]
    packed = (codes[0::2] << 4) | codes[1::2]
    offset = np.float32(absmax.astype(np.float64).mean())
    centred = (absmax - offset).astype(np.float32)
    dyn_mid = ((dyn[:-1] + dyn[1:]) / np.float32(2)).astype(np.float32)
    groups = -(blocks // -256)
    scales = np.zeros(groups, dtype=np.float32)
    qabs = np.zeros(blocks, dtype=np.uint8)
    for g in range(groups):
        v = centred[g * 256:(g + 1) * 256]
        m = np.abs(v).max()
        scales[g] = m
        qabs[g * 256:g * 256 + v.size] = 0 if m == 0 else nearest(dyn_mid, v * (np.float32(1) / m))
    return packed, qabs, scales, offset


def write_tensor(path: Path, rows: int, cols: int, salt: int, with_values: bool, dyn):
    x = tensor(rows, cols, salt)
    t = torch.from_numpy(x.reshape(rows, cols))
    packed, state = F.quantize_4bit(t, blocksize=64, quant_type="nf4", compress_statistics=True)
    deq = F.dequantize_4bit(packed, state).numpy().reshape(-1)
    packed = packed.numpy().reshape(-1)
    qabs = state.absmax.numpy().reshape(-1)
    scales = state.state2.absmax.numpy().reshape(-1).astype(np.float32)
    offset = np.float32(state.offset.item())
    absmax_deq = (F.dequantize_blockwise(state.absmax, state.state2) + state.offset).numpy()
    assert state.state2.blocksize == 256 and np.array_equal(state.state2.code.numpy(), dyn)

    ref_packed, ref_qabs, ref_scales, ref_offset = numpy_reference(x, dyn)
    hi = np.count_nonzero((ref_packed >> 4) != (packed >> 4))
    lo = np.count_nonzero((ref_packed & 15) != (packed & 15))
    print(f"{path.name}: {x.size} values, {qabs.size} blocks, {scales.size} absmax blocks")
    print(f"  NF4 codes differing from the numpy reference: {hi + lo}")
    print(f"  absmax codes differing: {np.count_nonzero(ref_qabs != qabs)} "
          f"at blocks {np.nonzero(ref_qabs != qabs)[0].tolist()}")
    print(f"  offset: bnb {offset!r} numpy {ref_offset!r}; scales equal: "
          f"{np.array_equal(ref_scales, scales)}")

    out = bytearray(b"NF4G")
    out += struct.pack("<5I", 1, rows, cols, salt, int(with_values))
    out += struct.pack("<f", offset)
    for arr in (packed.astype(np.uint8), qabs.astype(np.uint8)):
        out += struct.pack("<I", arr.size) + arr.tobytes()
    for arr in (scales, absmax_deq.astype(np.float32),
                x if with_values else np.zeros(0, np.float32),
                deq.astype(np.float32) if with_values else np.zeros(0, np.float32)):
        out += struct.pack("<I", arr.size) + arr.astype("<f4").tobytes()
    path.write_bytes(bytes(out))


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("trainer/tests/golden/quant")
    out_dir.mkdir(parents=True, exist_ok=True)
    print("bitsandbytes", bitsandbytes.__version__, "torch", torch.__version__)
    nf4 = F.get_4bit_type("nf4", device="cpu").numpy().astype(np.float32)
    assert np.array_equal(nf4, NF4)
    dyn = F.create_dynamic_map(signed=True).numpy().astype(np.float32)
    (out_dir / "nf4_maps.bin").write_bytes(b"NF4M" + nf4.astype("<f4").tobytes()
                                           + dyn.astype("<f4").tobytes())
    write_tensor(out_dir / "nf4_small.bin", 37, 71, 0x5EED0001, True, dyn)
    write_tensor(out_dir / "nf4_large.bin", 300, 71, 0x5EED0002, False, dyn)


if __name__ == "__main__":
    main()
