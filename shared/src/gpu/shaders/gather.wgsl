// Embedding lookup: rows `ids` of a weight table in any stored format (see weights.wgsl),
// decoded on the fly. Words: 0 element count, 1 columns, 2 scale offset, 3 table rows
// (an out-of-range id yields zeros).
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wid, nwg) * 256u + li;
    if i >= pu(0u) {
        return;
    }
    let cols = pu(1u);
    let row = ids[i / cols];
    var v = 0.0;
    if row < pu(3u) {
        v = load_w(row, i % cols, cols, pu(2u));
    }
    y[i] = v;
}
