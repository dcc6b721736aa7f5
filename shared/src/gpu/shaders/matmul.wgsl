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

// Few rows (decode steps, rows <= 8): 8 output columns per workgroup, LANES threads (a warp
// on most GPUs) reducing over the inner dimension of each (matvec.wgsl). The override NORM
// layer-normalises the input rows first (gamma, beta, eps word 7), all rows' statistics at
// once (norm.wgsl): 1 the rows into workgroup memory, 2 each value where it is read (rows too
// long to hold). Word 5 fuses the ops after the product (flags): 2 the activation of code
// word 6 after the bias, 4 add `residual` [rows, out] after that, 8 with the branch scaled by
// tanh(gate[0]) first. Each is the separate kernel's code, so the fused result has the same
// bits.
@group(0) @binding(5) var<storage, read> gamma: array<f32>;
@group(0) @binding(6) var<storage, read> beta: array<f32>;
@group(0) @binding(7) var<storage, read> residual: array<f32>;
@group(0) @binding(8) var<storage, read> gate: array<f32>;

override NORM: u32 = 0u;

// With norm.wgsl's `row_stats`, the 16 KiB of workgroup memory every adapter has, used in turn
// for the norm's partial sums (256 a row), the normalised input rows (NORM 1: rows x inner <=
// 4080) and the product's partial sums (256 threads x up to 8 rows).
var<workgroup> red: array<f32, 4080>;
// The inner size (word 1), for the input readers.
var<private> inner_len: u32;

// Input c of row r.
fn xin(r: u32, c: u32) -> f32 {
    let i = r * inner_len + c;
    if NORM == 1u {
        return red[i];
    } else if NORM == 2u {
        return normed(x[i], row_stats[r], gamma[c], beta[c]);
    }
    return x[i];
}

// Inputs c..c+3 of row r.
fn xin4(r: u32, c: u32) -> vec4<f32> {
    if NORM == 0u {
        let i = r * inner_len + c;
        return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
    }
    return vec4<f32>(xin(r, c), xin(r, c + 1u), xin(r, c + 2u), xin(r, c + 3u));
}

// Normalises the input rows (norm.wgsl): their statistics, and in mode 1 the rows into `red`.
fn normalise_rows(li: u32, rows: u32, inner: u32) {
    norm_stats_rows(li, 0u, rows, inner, pf(7u));
    if NORM == 1u {
        for (var r = 0u; r < rows; r++) {
            let st = row_stats[r];
            for (var k = li; k < inner; k += 256u) {
                red[r * inner + k] = normed(x[r * inner + k], st, gamma[k], beta[k]);
            }
        }
        workgroupBarrier();
    }
}

// The fused ops after the product (word 5) on row r's total `v` of column `col`.
fn epilogue(r: u32, col: u32, out: u32, total: f32) -> f32 {
    let flags = pu(5u);
    var v = total;
    if pu(3u) != 0u {
        v += bias[col];
    }
    if (flags & 2u) != 0u {
        v = activate(pu(6u), v);
    }
    if (flags & 4u) != 0u {
        let res = residual[r * out + col];
        if (flags & 8u) != 0u {
            v = res + v * safe_tanh(gate[0]);
        } else {
            v = res + v;
        }
    }
    return v;
}

@compute @workgroup_size(256)
fn small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let rows = pu(0u);
    let inner = pu(1u);
    let out = pu(2u);
    inner_len = inner;
    if NORM != 0u {
        normalise_rows(li, rows, inner);
    }
    let lane = li % LANES;
    let col = wg_linear(wid, nwg) * (256u / LANES) + li / LANES;
    var acc: array<f32, 8>;
    if col < out {
        acc = col_partials(col, lane, rows, inner, pu(4u));
    }
    if NORM == 1u {
        // The normalised rows are read; their memory takes the partial sums next.
        workgroupBarrier();
    }
    lane_sums(li, lane, rows, acc);
    if lane == 0u && col < out {
        for (var r = 0u; r < rows; r++) {
            y[r * out + col] = epilogue(r, col, out, red[r * 256u + li]);
        }
    }
}
