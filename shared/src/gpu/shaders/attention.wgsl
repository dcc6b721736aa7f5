// softmax(q k^T + bias) v for one query row per workgroup. q [B, H, Sq, Dh], k and v
// [B, H, Sk, Dh]; bias addressed with strides (0 along broadcast dims). The row's scores go
// through a scratch buffer: max, then exp(s - max) and its sum, then the weighted sum of v.
// Subtracting the max keeps every exponent <= 0, so a row whose bias is all -f32::MAX stays
// finite (it becomes uniform, like the reference). Words: 0 rows (B*H*Sq), 1 H, 2 Sq, 3 Sk,
// 4 Dh, 5 has bias, 8..12 bias strides over (b, h, i, j).
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

// Max (op 0) or sum (op 1) of `x` over the workgroup.
fn wg_reduce(li: u32, x: f32, op: u32) -> f32 {
    red[li] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if li < s {
            if op == 0u {
                red[li] = max(red[li], red[li + s]);
            } else {
                red[li] += red[li + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let heads = pu(1u);
    let sq = pu(2u);
    let sk = pu(3u);
    let dh = pu(4u);
    let bh = row / sq;
    let i = row % sq;
    let b = bh / heads;
    let h = bh % heads;
    let qo = row * dh;
    let ko = bh * sk * dh;
    let so = row * sk;
    let bo = b * pu(8u) + h * pu(9u) + i * pu(10u);
    // -f32::MAX (a decimal literal of it is refused by Chrome's WGSL compiler).
    var m = bitcast<f32>(0xff7fffffu);
    for (var j = li; j < sk; j += WG) {
        var s = 0.0;
        for (var d = 0u; d < dh; d++) {
            s += q[qo + d] * k[ko + j * dh + d];
        }
        if pu(5u) != 0u {
            s += bias[bo + j * pu(11u)];
        }
        scratch[so + j] = s;
        m = max(m, s);
    }
    m = wg_reduce(li, m, 0u);
    var l = 0.0;
    for (var j = li; j < sk; j += WG) {
        let e = exp(scratch[so + j] - m);
        scratch[so + j] = e;
        l += e;
    }
    l = wg_reduce(li, l, 1u);
    // The weights written above are read by other threads below.
    storageBarrier();
    for (var d = li; d < dh; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < sk; j++) {
            acc += scratch[so + j] * v[ko + j * dh + d];
        }
        out[qo + d] = acc / l;
    }
}
