// y = x W^T + b with x [rows, cols_in] f32 and W [out, cols_in] in any stored format (see
// weights.wgsl), decoded while loading. Words: 0 rows, 1 inner size, 2 out, 3 has bias,
// 4 scale offset.
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// Tiles stored k-major so that neighbouring threads read neighbouring words.
var<workgroup> xs: array<f32, 1024>;
var<workgroup> ws: array<f32, 1024>;

// Many rows: a 64x64 output tile per workgroup, 4x4 outputs per thread (strided by 16 so
// that a thread's neighbours share tile rows), the inner dimension in steps of 16 through
// workgroup memory. Each weight is decoded once per 64 rows.
@compute @workgroup_size(16, 16)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let rows = pu(0u);
    let inner = pu(1u);
    let out = pu(2u);
    let soff = pu(4u);
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < inner; k0 += TK) {
        for (var e = li; e < TM * TK; e += 256u) {
            let r = e / TK;
            let kk = e % TK;
            let gk = k0 + kk;
            var xv = 0.0;
            if row0 + r < rows && gk < inner {
                xv = x[(row0 + r) * inner + gk];
            }
            xs[kk * TM + r] = xv;
            var wv = 0.0;
            if col0 + r < out && gk < inner {
                wv = load_w(col0 + r, gk, inner, soff);
            }
            ws[kk * TN + r] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = xs[kk * TM + lid.y + 16u * i];
                bv[i] = ws[kk * TN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] += av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x + 16u * j;
            if r < rows && c < out {
                var v = acc[i][j];
                if pu(3u) != 0u {
                    v += bias[c];
                }
                y[r * out + c] = v;
            }
        }
    }
}

// Four consecutive activations from index i.
fn x4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

// Threads reducing each output column of `small` (256 / LANES columns per workgroup).
const LANES: u32 = 32u;

// Partial sums: 256 threads x up to 8 rows.
var<workgroup> red: array<f32, 2048>;

// Few rows (decode steps, rows <= 8): 8 output columns per workgroup, 32 threads (a warp
// on most GPUs) reducing over the inner dimension of each, reading the weight row
// contiguously; every weight is read once for all rows.
@compute @workgroup_size(256)
fn small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let rows = pu(0u);
    let inner = pu(1u);
    let out = pu(2u);
    let soff = pu(4u);
    let lane = li % LANES;
    let col = wg_linear(wid, nwg) * (256u / LANES) + li / LANES;
    var acc: array<f32, 8>;
    if col < out && FMT == 2u {
        // q8_0: a word is 4 quants of one block; rows are whole blocks, 8 words each.
        let wpr = inner / 4u;
        for (var wi = lane; wi < wpr; wi += LANES) {
            let word = bitcast<i32>(wq[col * wpr + wi]);
            let s = block_scale(col * (inner / 32u) + wi / 8u, soff);
            let w = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)),
                              f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u))) * s;
            for (var r = 0u; r < rows; r++) {
                acc[r] += dot(w, x4(r * inner + wi * 4u));
            }
        }
    } else if col < out && FMT == 3u {
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
            let k = (wi / 4u) * 32u + (wi % 4u) * 4u;
            for (var r = 0u; r < rows; r++) {
                acc[r] += (dot(lo - 8.0, x4(r * inner + k)) + dot(hi - 8.0, x4(r * inner + k + 16u))) * s;
            }
        }
    } else if col < out {
        for (var k = lane; k < inner; k += LANES) {
            let w = load_w(col, k, inner, soff);
            for (var r = 0u; r < rows; r++) {
                acc[r] += x[r * inner + k] * w;
            }
        }
    }
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
    if lane == 0u && col < out {
        for (var r = 0u; r < rows; r++) {
            var v = red[r * 256u + li];
            if pu(3u) != 0u {
                v += bias[col];
            }
            y[r * out + col] = v;
        }
    }
}
