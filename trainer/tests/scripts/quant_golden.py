#!/usr/bin/env python3
"""Golden values for trainer::quant's dequantisation, from gguf-py (the `gguf` package).

Writes trainer/tests/golden/quant/<type>.bin for F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
Q2_K, Q3_K, Q4_K, Q5_K and Q6_K: a few blocks of tensor data and gguf-py's dequantisation of
them. The Rust tests in trainer/tests/it/quant.rs require our values to be bit-identical.

Data, deterministic (seeded numpy):
- Types gguf-py can quantise (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): random floats of
  varied magnitude, one all-zero block and one constant block, quantised by gguf-py. F16 and
  BF16 also get the special values (signed zeros, infinities, NaN, subnormals, extremes).
- K-quants (which gguf-py only dequantises): random block bytes with their f16 scale fields
  (`d`, `dmin`) replaced by small finite values.

File layout (little-endian): b"QGLD", u32 ggml type id, u32 element count, u32 byte count, the
tensor bytes, then one f32 per element.

Rerun (from the repository root):
    python3 -m venv /tmp/qvenv && /tmp/qvenv/bin/pip install gguf numpy
    /tmp/qvenv/bin/python trainer/tests/scripts/quant_golden.py [OUT_DIR]
OUT_DIR defaults to trainer/tests/golden/quant. Written with gguf 0.19.0 and numpy 2.4.
"""

import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

SEED = 20250601
# Blocks per file: 8 for the 32-element types, 4 for the 256-element K-quants.
BLOCKS_32 = 8
BLOCKS_K = 4
# Offsets of the f16 scale fields in each K-quant block (ggml-common.h).
K_SCALE_FIELDS = {
    T.Q2_K: [80, 82],  # scales[16], qs[64], d, dmin
    T.Q3_K: [108],  # hmask[32], qs[64], scales[12], d
    T.Q4_K: [0, 2],  # d, dmin, scales[12], qs[128]
    T.Q5_K: [0, 2],  # d, dmin, scales[12], qh[32], qs[128]
    T.Q6_K: [208],  # ql[128], qh[64], scales[16], d
}
SPECIALS = np.array(
    [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, -65504.0, 6e-8, -3e-6, 1e-5, 1.0, -2.5,
     3.0e38, 1e-40],
    dtype=np.float32,
)


def random_floats(rng: np.random.Generator, blocks: int, block: int) -> np.ndarray:
    """Blocks of normal floats, each block with its own magnitude; block 0 is all zeros and
    block 1 constant."""
    scale = 10.0 ** rng.uniform(-3, 1, size=(blocks, 1))
    data = (rng.standard_normal((blocks, block)) * scale).astype(np.float32)
    data[0] = 0.0
    data[1] = np.float32(0.375)
    return data


def write(out_dir: Path, qtype: T, raw: np.ndarray, values: np.ndarray) -> None:
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    block, size = GGML_QUANT_SIZES[qtype]
    assert len(values) % block == 0 and len(raw) == len(values) // block * size, qtype
    path = out_dir / f"{qtype.name.lower()}.bin"
    with open(path, "wb") as f:
        f.write(b"QGLD")
        f.write(struct.pack("<III", int(qtype), len(values), len(raw)))
        f.write(raw.tobytes())
        f.write(values.astype("<f4").tobytes())
    print(f"{path}: {len(values)} values, {len(raw)} bytes")


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "trainer/tests/golden/quant")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    # F32: the bytes are the values.
    data = np.concatenate([SPECIALS, rng.standard_normal(50).astype(np.float32)])
    write(out_dir, T.F32, data.view(np.uint8), data)

    # F16 and BF16, with the special values.
    for qtype in (T.F16, T.BF16):
        data = np.concatenate([SPECIALS, rng.standard_normal(50).astype(np.float32) * 3])
        with np.errstate(over="ignore"):  # 3e38 overflows to infinity in F16
            raw = quants.quantize(data, qtype).view(np.uint8)
        write(out_dir, qtype, raw, quants.dequantize(raw, qtype))

    # The 32-element block types gguf-py quantises.
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        data = random_floats(rng, BLOCKS_32, 32).reshape(1, -1)
        raw = quants.quantize(data, qtype)
        write(out_dir, qtype, raw, quants.dequantize(raw, qtype))

    # K-quants: random bytes, sane f16 scales.
    for qtype, fields in K_SCALE_FIELDS.items():
        _, size = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS_K, size), dtype=np.uint8)
        for offset in fields:
            scales = rng.uniform(-0.02, 0.05, size=BLOCKS_K).astype(np.float16)
            raw[:, offset : offset + 2] = scales.view(np.uint8).reshape(BLOCKS_K, 2)
        raw = raw.reshape(1, -1)
        write(out_dir, qtype, raw, quants.dequantize(raw, qtype))


if __name__ == "__main__":
    main()
