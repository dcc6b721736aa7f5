// Greedy decoding's pick: per row of the last dimension the index of the largest value
// (the first one on ties), the max, and log(sum(exp(x))) so that log-probabilities are
// x - lse. One workgroup per row. Words: 0 rows, 1 row length.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let n = pu(1u);
    let base = row * n;
    // -f32::MAX (a decimal literal of it is refused by Chrome's WGSL compiler).
    var best = bitcast<f32>(0xff7fffffu);
    var bi = 0xffffffffu;
    for (var j = li; j < n; j += 256u) {
        let v = x[base + j];
        if bi == 0xffffffffu || v > best {
            best = v;
            bi = j;
        }
    }
    rv[li] = best;
    ri[li] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if li < s {
            let ov = rv[li + s];
            let oi = ri[li + s];
            let mine = ri[li];
            // Take the other candidate if it is larger, or equal with a smaller index; an
            // empty candidate (index all ones) never wins.
            if oi != 0xffffffffu && (mine == 0xffffffffu || ov > rv[li] || (ov == rv[li] && oi < mine)) {
                rv[li] = ov;
                ri[li] = oi;
            }
        }
        workgroupBarrier();
    }
    let m = rv[0];
    let arg = ri[0];
    workgroupBarrier();
    var e = 0.0;
    for (var j = li; j < n; j += 256u) {
        e += exp(x[base + j] - m);
    }
    rv[li] = e;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if li < s {
            rv[li] += rv[li + s];
        }
        workgroupBarrier();
    }
    if li == 0u {
        idx[row] = arg;
        stats[row * 2u] = m;
        stats[row * 2u + 1u] = m + log(rv[0]);
    }
}
