// Mean over one dimension of x viewed as [outer, n, inner]; one thread per output.
// Words: 0 output count (outer*inner), 1 n, 2 inner.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn mean_dim(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wid, nwg) * 256u + li;
    if i >= pu(0u) {
        return;
    }
    let n = pu(1u);
    let inner = pu(2u);
    let o = i / inner;
    let base = o * n * inner + i % inner;
    var s = 0.0;
    for (var j = 0u; j < n; j++) {
        s += x[base + j * inner];
    }
    y[i] = s / f32(n);
}
