// The few-rows product shared by the matmul's `small` kernel and the projected attention:
// LANES threads reduce each output column over the inner dimension, reading the weight row
// contiguously, every weight decoded once for all rows. The activations come from the
// module's `xin(r, c)` / `xin4(r, c)` (input c.. of row r); the partial sums are
// added up through the module's workgroup array `red` (256 per row).

// Threads reducing each output column (256 / LANES columns per workgroup).
const LANES: u32 = 32u;

// Lane `lane`'s partial sums of column `col` for rows 0..rows (at most 8).
fn col_partials(col: u32, lane: u32, rows: u32, inner: u32, soff: u32) -> array<f32, 8> {
    var acc: array<f32, 8>;
    if FMT == 2u {
        // q8_0: a word is 4 quants of one block; rows are whole blocks, 8 words each.
        let wpr = inner / 4u;
        for (var wi = lane; wi < wpr; wi += LANES) {
            let word = bitcast<i32>(wq[col * wpr + wi]);
            let s = block_scale(col * (inner / 32u) + wi / 8u, soff);
            let w = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)),
                              f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u))) * s;
            for (var r = 0u; r < rows; r++) {
                acc[r] += dot(w, xin4(r, wi * 4u));
            }
        }
    } else if FMT == 3u {
        // q4_0: a word is bytes 4i..4i+3 of a block: elements 4i.. (low nibbles) and
        // 16+4i.. (high nibbles); 4 words per block.
        let wpr = inner / 8u;
        for (var wi = lane; wi < wpr; wi += LANES) {
            let word = wq[col * wpr + wi];
            let s = block_scale(col * (inner / 32u) + wi / 4u, soff);
            let lo = vec4<f32>(f32(extractBits(word, 0u, 4u)), f32(extractBits(word, 8u, 4u)),
                               f32(extractBits(word, 16u, 4u)), f32(extractBits(word, 24u, 4u)));
            let hi = vec4<f32>(f32(extractBits(word, 4u, 4u)), f32(extractBits(word, 12u, 4u)),
                               f32(extractBits(word, 20u, 4u)), f32(extractBits(word, 28u, 4u)));
            let kk = (wi / 4u) * 32u + (wi % 4u) * 4u;
            for (var r = 0u; r < rows; r++) {
                acc[r] += (dot(lo - 8.0, xin4(r, kk)) + dot(hi - 8.0, xin4(r, kk + 16u))) * s;
            }
        }
    } else {
        for (var kk = lane; kk < inner; kk += LANES) {
            let w = load_w(col, kk, inner, soff);
            for (var r = 0u; r < rows; r++) {
                acc[r] += xin(r, kk) * w;
            }
        }
    }
    return acc;
}

// Adds up each row's partials over the LANES lanes of a column: lane 0 of a column finds the
// row's total at red[r * 256 + li]. Every thread of the workgroup must call it.
fn lane_sums(li: u32, lane: u32, rows: u32, acc: array<f32, 8>) {
    for (var r = 0u; r < rows; r++) {
        red[r * 256u + li] = acc[r];
    }
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s / 2u) {
        if lane < s {
            for (var r = 0u; r < rows; r++) {
                red[r * 256u + li] += red[r * 256u + li + s];
            }
        }
        workgroupBarrier();
    }
}
