// Binary ops with numpy broadcasting. Words: 0 element count, 1 op (0 add, 1 mul), 2 rank,
// 8.. output dims, 16.. strides of a, 24.. strides of b (0 along broadcast dims).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wid, nwg) * 256u + li;
    if i >= pu(0u) {
        return;
    }
    var ia = 0u;
    var ib = 0u;
    var rem = i;
    for (var d = pu(2u); d > 0u; d--) {
        let k = d - 1u;
        let n = pu(8u + k);
        let c = rem % n;
        rem = rem / n;
        ia += c * pu(16u + k);
        ib += c * pu(24u + k);
    }
    if pu(1u) == 0u {
        y[i] = a[ia] + b[ib];
    } else {
        y[i] = a[ia] * b[ib];
    }
}
