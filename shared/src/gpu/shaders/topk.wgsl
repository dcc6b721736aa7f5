// Decoding's candidates: per row of logits, the max, log(sum(exp(x))), the tempered mass
// log(sum(exp((x - max) / t))) and the k largest values with their indices (largest first, the
// lower index first on ties; NaN never taken). One workgroup per row; the k winners are found
// one after another, each the best value ranked after the previous winner. Output row:
// [max, lse, tempered, (index, value) x k], index -1 (value 0) once a row has no more values.
// Words: 0 rows, 1 row length, 2 k, 3 1 / t (f32 bits).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> rv: array<f32, 256>;
var<workgroup> ri: array<u32, 256>;
var<workgroup> rt: array<f32, 256>;

const NONE: u32 = 0xffffffffu;

// Whether (v, i) ranks before (bv, bi): larger value, or equal value and lower index.
fn before(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return bi == NONE || v > bv || (v == bv && i < bi);
}

// Reduces every thread's candidate to the workgroup's best, left in rv[0], ri[0].
fn reduce_best(li: u32) {
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if li < s && ri[li + s] != NONE && before(rv[li + s], ri[li + s], rv[li], ri[li]) {
            rv[li] = rv[li + s];
            ri[li] = ri[li + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn top_k(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let row = wg_linear(wid, nwg);
    if row >= pu(0u) {
        return;
    }
    let n = pu(1u);
    let k = pu(2u);
    let base = row * n;
    let obase = row * (3u + 2u * k);
    let inv_t = pf(3u);
    // The previous winner: candidates must rank after it.
    var pv = 0.0;
    var pi = NONE;
    var m = 0.0;
    for (var t = 0u; t < k + 1u; t++) {
        var bv = 0.0;
        var bi = NONE;
        for (var j = li; j < n; j += 256u) {
            let v = x[base + j];
            let after = pi == NONE || v < pv || (v == pv && j > pi);
            if v == v && after && before(v, j, bv, bi) {
                bv = v;
                bi = j;
            }
        }
        rv[li] = bv;
        ri[li] = bi;
        reduce_best(li);
        // Uniform loads: every thread continues (or stops) together.
        pv = workgroupUniformLoad(&rv[0]);
        pi = workgroupUniformLoad(&ri[0]);
        workgroupBarrier();
        if t == 0u {
            // The first winner is the max; the normaliser needs it before the other winners.
            m = pv;
            var e = 0.0;
            var et = 0.0;
            for (var j = li; j < n; j += 256u) {
                let v = x[base + j];
                if v == v {
                    e += exp(v - m);
                    et += exp((v - m) * inv_t);
                }
            }
            rv[li] = e;
            rt[li] = et;
            workgroupBarrier();
            for (var s = 128u; s > 0u; s = s / 2u) {
                if li < s {
                    rv[li] += rv[li + s];
                    rt[li] += rt[li + s];
                }
                workgroupBarrier();
            }
            if li == 0u {
                out[obase] = m;
                out[obase + 1u] = m + log(rv[0]);
                out[obase + 2u] = log(rt[0]);
            }
            workgroupBarrier();
            // Start over: the max is also the first of the k winners.
            pi = NONE;
            continue;
        }
        if li == 0u {
            let o = obase + 1u + 2u * t;
            if pi == NONE {
                out[o] = -1.0;
                out[o + 1u] = 0.0;
            } else {
                out[o] = f32(pi);
                out[o + 1u] = pv;
            }
        }
        if pi == NONE {
            // Nothing left: the remaining slots say so.
            for (var r = t + 1u; r < k + 1u; r++) {
                if li == 0u {
                    out[obase + 1u + 2u * r] = -1.0;
                    out[obase + 2u + 2u * r] = 0.0;
                }
            }
            return;
        }
    }
}
