// Layer normalisation over the last dimension, one workgroup per row (statistics in
// norm.wgsl). Words: 0 rows, 1 row length, 2 eps (f32 bits).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let n = pu(1u);
    let base = row * n;
    let stats = norm_stats(li, base, n, pf(2u));
    for (var i = li; i < n; i += 256u) {
        y[base + i] = normed(x[base + i], stats, gamma[i], beta[i]);
    }
}
