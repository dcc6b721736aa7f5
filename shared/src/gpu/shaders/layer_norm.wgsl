// Layer normalisation over the last dimension, one workgroup per row. Two passes (mean,
// then the mean of squared deviations) rather than E[x^2]-E[x]^2, which cancels badly.
// Words: 0 rows, 1 row length, 2 eps (f32 bits).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

// Sum of `v` over the workgroup (every thread gets it).
fn wg_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if li < s {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let n = pu(1u);
    let base = row * n;
    var s = 0.0;
    for (var i = li; i < n; i += 256u) {
        s += x[base + i];
    }
    let mean = wg_sum(li, s) / f32(n);
    var q = 0.0;
    for (var i = li; i < n; i += 256u) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let inv = inverseSqrt(wg_sum(li, q) / f32(n) + pf(2u));
    for (var i = li; i < n; i += 256u) {
        y[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
