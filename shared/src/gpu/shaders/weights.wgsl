// Prepended to the kernels that read a weight matrix (matmul, gather). Every format is
// stored as 32-bit words so that no shader feature (shader-f16) is required:
//   FMT 0: f32 row-major [rows, cols]
//   FMT 1: f16 row-major, two values per word (low half first)
//   FMT 2: q8_0 — the blocks' 32 int8 quants as 8 words per block (row by row), then the
//          blocks' f16 scales, two per word, from word `soff`
//   FMT 3: q4_0 — 16 bytes of nibbles (4 words) per block, then the scales as for q8_0;
//          low nibbles are elements 0..15 of a block, high nibbles 16..31 (GGML's order)
override FMT: u32 = 0u;

@group(0) @binding(1) var<storage, read> wq: array<u32>;

// The f16 scale of block `blk` (blocks counted over the whole matrix).
fn block_scale(blk: u32, soff: u32) -> f32 {
    return unpack2x16float(wq[soff + blk / 2u])[blk % 2u];
}

// Element (o, k) of the matrix with `cols` columns.
fn load_w(o: u32, k: u32, cols: u32, soff: u32) -> f32 {
    if FMT == 0u {
        return bitcast<f32>(wq[o * cols + k]);
    } else if FMT == 1u {
        let i = o * cols + k;
        return unpack2x16float(wq[i / 2u])[i % 2u];
    } else if FMT == 2u {
        let blk = o * (cols / 32u) + k / 32u;
        let j = k % 32u;
        let word = wq[blk * 8u + j / 4u];
        // extractBits on i32 sign-extends: the int8 quant.
        let q = extractBits(bitcast<i32>(word), (j % 4u) * 8u, 8u);
        return f32(q) * block_scale(blk, soff);
    } else {
        let blk = o * (cols / 32u) + k / 32u;
        let j = k % 32u;
        let byte = j % 16u;
        let word = wq[blk * 4u + byte / 4u];
        let q = i32(extractBits(word, (byte % 4u) * 8u + (j / 16u) * 4u, 4u)) - 8;
        return f32(q) * block_scale(blk, soff);
    }
}
