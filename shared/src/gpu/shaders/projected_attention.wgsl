// Attention whose query is projected in the same dispatch (the gated cross-attention of a
// decoding step): one workgroup per query row (b, h, i) normalises its input row (norm.wgsl),
// projects it onto the head's Dh rows of W (matvec.wgsl, the matmul's own reduction), scales
// the query and attends over the head's keys (attend_core.wgsl). LayerNorm, to_q, the scale,
// the head split, attention and the head merge: one kernel, the bits of the separate ones.
// Words: 0 rows (B*H*Sq), 1 H, 2 Sq, 3 Sk, 4 Dh, 5 model width (x's rows), 6 q scale,
// 7 eps, 8 W's scale offset, 16..18 key/value strides (b, h, j), 20..22 output strides
// (b, i, h).
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read> k: array<f32>;
@group(0) @binding(6) var<storage, read> v: array<f32>;
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;
// The normalised input row (a model width of at most 2048).
var<workgroup> xn: array<f32, 2048>;
// The row's query, scaled (heads of at most 256).
var<workgroup> qs: array<f32, 256>;

// Input c of the (one) row: normalised, from `xn`.
fn xin(r: u32, c: u32) -> f32 {
    return xn[c];
}

// Inputs c..c+3.
fn xin4(r: u32, c: u32) -> vec4<f32> {
    return vec4<f32>(xn[c], xn[c + 1u], xn[c + 2u], xn[c + 3u]);
}

// Where key/value j of row b, head h starts.
fn key_at(b: u32, h: u32, j: u32) -> u32 {
    return b * pu(16u) + h * pu(17u) + j * pu(18u);
}

// No mask over the latents.

fn score_bias(s: f32, bo: u32, j: u32) -> f32 {
    return s;
}

@compute @workgroup_size(256)
fn attend_projected(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let heads = pu(1u);
    let sq = pu(2u);
    let dh = pu(4u);
    let width = pu(5u);
    let bh = row / sq;
    let i = row % sq;
    let b = bh / heads;
    let h = bh % heads;
    let base = (b * sq + i) * width;
    let st = norm_stats(li, base, width, pf(7u));
    for (var c = li; c < width; c += 256u) {
        xn[c] = normed(x[base + c], st, gamma[c], beta[c]);
    }
    workgroupBarrier();
    let lane = li % LANES;
    for (var c0 = 0u; c0 < dh; c0 += 256u / LANES) {
        let c = c0 + li / LANES;
        var acc: array<f32, 8>;
        if c < dh {
            acc = col_partials(h * dh + c, lane, 1u, width, pu(8u));
        }
        lane_sums(li, lane, 1u, acc);
        if lane == 0u && c < dh {
            qs[c] = red[li] * pf(6u);
        }
        workgroupBarrier();
    }
    let oo = b * pu(20u) + i * pu(21u) + h * pu(22u);
    attend_core(li, pu(3u), dh, b, h, row * pu(3u), oo, 0u);
}
