// A small, independent GGUF header reader, so the end-to-end tests can check the figures the
// Rust side reports against the file itself. Reads only the header (metadata and tensor
// infos), never the tensor data. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
import fs from "node:fs";

// ggml_type ids -> names (the ones GGUF files use).
export const GGML_TYPES = {
  0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
  10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
  16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
  22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
  29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
};

/** Reads a file sequentially through a buffer that refills from disk as needed. */
class Reader {
  constructor(path) {
    this.fd = fs.openSync(path, "r");
    this.size = fs.fstatSync(this.fd).size;
    this.buf = Buffer.alloc(0);
    this.bufStart = 0; // file offset of buf[0]
    this.pos = 0; // file offset of the next byte to read
  }
  close() { fs.closeSync(this.fd); }
  need(n) {
    if (this.pos + n > this.size) throw new Error(`GGUF truncated: wanted ${n} bytes at offset ${this.pos}, file has ${this.size}`);
    const end = this.bufStart + this.buf.length;
    if (this.pos >= this.bufStart && this.pos + n <= end) return;
    const len = Math.max(n, 1 << 20);
    const b = Buffer.alloc(Math.min(len, this.size - this.pos));
    fs.readSync(this.fd, b, 0, b.length, this.pos);
    this.buf = b;
    this.bufStart = this.pos;
  }
  take(n) {
    this.need(n);
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }
  u8() { return this.buf.readUInt8(this.take(1)); }
  i8() { return this.buf.readInt8(this.take(1)); }
  u16() { return this.buf.readUInt16LE(this.take(2)); }
  i16() { return this.buf.readInt16LE(this.take(2)); }
  u32() { return this.buf.readUInt32LE(this.take(4)); }
  i32() { return this.buf.readInt32LE(this.take(4)); }
  f32() { return this.buf.readFloatLE(this.take(4)); }
  f64() { return this.buf.readDoubleLE(this.take(8)); }
  u64() { return this.buf.readBigUInt64LE(this.take(8)); }
  i64() { return this.buf.readBigInt64LE(this.take(8)); }
  /** A u64 that must fit a JS number exactly (counts, lengths, dimensions). */
  count() {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`GGUF count too large at offset ${this.pos - 8}: ${v}`);
    return Number(v);
  }
  str() {
    const n = this.count();
    if (n > this.size) throw new Error(`GGUF string length ${n} is beyond the file size`);
    const o = this.take(n);
    return this.buf.toString("utf8", o, o + n);
  }
}

const SCALARS = {
  0: (r) => r.u8(), 1: (r) => r.i8(), 2: (r) => r.u16(), 3: (r) => r.i16(),
  4: (r) => r.u32(), 5: (r) => r.i32(), 6: (r) => r.f32(), 7: (r) => r.u8() !== 0,
  8: (r) => r.str(), 10: (r) => r.u64(), 11: (r) => r.i64(), 12: (r) => r.f64(),
};

function readValue(r, type) {
  if (type === 9) {
    const itemType = r.u32();
    const n = r.count();
    // Long arrays (the tokenizer's vocabulary) are only skipped through; keep their length.
    const keep = n <= 64;
    const items = keep ? [] : null;
    for (let i = 0; i < n; i++) {
      const v = readValue(r, itemType);
      if (keep) items.push(v);
    }
    return keep ? items : { arrayOf: itemType, length: n };
  }
  const f = SCALARS[type];
  if (!f) throw new Error(`GGUF: unknown metadata value type ${type} at offset ${r.pos - 4}`);
  return f(r);
}

/**
 * Parses the header of a GGUF file. Returns { version, tensorCount, metadata, tensors,
 * parameters, quantization, typeElements }, where parameters is the sum of every tensor's
 * element count and quantization the tensor type holding the most elements.
 */
export function readGguf(path) {
  const r = new Reader(path);
  try {
    const m = r.take(4);
    const magic = r.buf.toString("latin1", m, m + 4);
    if (magic !== "GGUF") throw new Error(`${path} is not a GGUF file (magic ${JSON.stringify(magic)})`);
    const version = r.u32();
    if (version < 2 || version > 3) throw new Error(`${path}: unsupported GGUF version ${version}`);
    const tensorCount = r.count();
    const kvCount = r.count();
    const metadata = {};
    for (let i = 0; i < kvCount; i++) {
      const key = r.str();
      const type = r.u32();
      metadata[key] = readValue(r, type);
    }
    const tensors = [];
    let parameters = 0n;
    const typeElements = {};
    for (let i = 0; i < tensorCount; i++) {
      const name = r.str();
      const nDims = r.u32();
      if (nDims > 8) throw new Error(`${path}: tensor ${name} has ${nDims} dimensions`);
      const dims = [];
      for (let d = 0; d < nDims; d++) dims.push(r.u64());
      const typeId = r.u32();
      const offset = r.u64();
      const elements = dims.reduce((a, b) => a * b, 1n);
      const type = GGML_TYPES[typeId] ?? `type${typeId}`;
      parameters += elements;
      typeElements[type] = (typeElements[type] ?? 0n) + elements;
      tensors.push({ name, dims: dims.map(Number), type, offset: Number(offset), elements: Number(elements) });
    }
    const quantization = Object.entries(typeElements).sort((a, b) => (b[1] > a[1] ? 1 : b[1] < a[1] ? -1 : 0))[0]?.[0] ?? null;
    return {
      version, tensorCount, metadata, tensors,
      parameters: Number(parameters),
      quantization,
      typeElements: Object.fromEntries(Object.entries(typeElements).map(([k, v]) => [k, Number(v)])),
      headerBytes: r.pos,
      fileSize: r.size,
    };
  } finally {
    r.close();
  }
}

/** The figures a ModelSummary reports, as read from the file. */
export function ggufFacts(path) {
  const g = readGguf(path);
  const arch = g.metadata["general.architecture"];
  const num = (k) => (g.metadata[k] === undefined ? null : Number(g.metadata[k]));
  return {
    architecture: arch,
    name: g.metadata["general.name"] ?? null,
    context_length: num(`${arch}.context_length`),
    layers: num(`${arch}.block_count`),
    hidden_size: num(`${arch}.embedding_length`),
    attention_heads: num(`${arch}.attention.head_count`),
    kv_heads: num(`${arch}.attention.head_count_kv`),
    parameters: g.parameters,
    quantization: g.quantization,
    file_size: fs.statSync(path).size,
    gguf: g,
  };
}

// `node tests/lib/gguf.mjs FILE` prints what it reads.
if (import.meta.url === `file://${process.argv[1]}`) {
  const f = ggufFacts(process.argv[2]);
  const { gguf, ...facts } = f;
  console.log(JSON.stringify({ ...facts, version: gguf.version, tensorCount: gguf.tensorCount, typeElements: gguf.typeElements,
    metadataKeys: Object.keys(gguf.metadata).length, headerBytes: gguf.headerBytes,
    metadata: Object.fromEntries(Object.entries(gguf.metadata).filter(([k]) => !k.startsWith("tokenizer.ggml.")).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v])) }, null, 1));
}
