// Data movement. `strided` copies an n-d box from src to dst, each addressed with its own
// offset and strides: permute, narrow, cat (one part per dispatch), broadcast_as (stride 0).
// Words: 0 element count, 1 rank, 2 src offset, 3 dst offset, 8.. dims, 16.. src strides,
// 24.. dst strides. `index_select` copies whole rows picked by u32 ids: words 0 element
// count, 1 row length, 2 source rows (an out-of-range id yields zeros).
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;

@compute @workgroup_size(256)
fn strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wid, nwg) * 256u + li;
    if i >= pu(0u) {
        return;
    }
    var s_at = pu(2u);
    var d_at = pu(3u);
    var rem = i;
    for (var d = pu(1u); d > 0u; d--) {
        let k = d - 1u;
        let n = pu(8u + k);
        let c = rem % n;
        rem = rem / n;
        s_at += c * pu(16u + k);
        d_at += c * pu(24u + k);
    }
    dst[d_at] = src[s_at];
}

@compute @workgroup_size(256)
fn index_select(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wid, nwg) * 256u + li;
    if i >= pu(0u) {
        return;
    }
    let len = pu(1u);
    let row = ids[i / len];
    var v = 0.0;
    if row < pu(2u) {
        v = src[row * len + i % len];
    }
    dst[i] = v;
}
