// softmax(q k^T + bias) v for one query row, by the first WG threads of a workgroup (the
// others pass the barriers): the query is in the module's workgroup array `qs` (scaled), key
// and value j of batch row b, head h at k/v[key_at(b, h, j) + d] (the module's addressing),
// the row's scores in `scratch` from `so`, the result to out[oo + d]; the module's
// `score_bias(s, bo, j)` adds the mask. Subtracting the max
// keeps every exponent <= 0, so a row whose bias is all -f32::MAX stays finite (it becomes
// uniform, like the reference).

const WG: u32 = 64u;

// Max (op 0) or sum (op 1) of `x` over the first WG threads (`busy`; every thread gets it).
fn wg_reduce(li: u32, busy: bool, x: f32, op: u32) -> f32 {
    if busy {
        red[li] = x;
    }
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

// The row's attention (see above); every thread of the workgroup must call it.
fn attend_core(li: u32, sk: u32, dh: u32, b: u32, h: u32, so: u32, oo: u32, bo: u32) {
    let busy = li < WG;
    // -f32::MAX (a decimal literal of it is refused by Chrome's WGSL compiler).
    var m = bitcast<f32>(0xff7fffffu);
    if busy {
        for (var j = li; j < sk; j += WG) {
            let at = key_at(b, h, j);
            var s = 0.0;
            for (var d = 0u; d < dh; d++) {
                s += qs[d] * k[at + d];
            }
            s = score_bias(s, bo, j);
            scratch[so + j] = s;
            m = max(m, s);
        }
    }
    m = wg_reduce(li, busy, m, 0u);
    var l = 0.0;
    if busy {
        for (var j = li; j < sk; j += WG) {
            let e = exp(scratch[so + j] - m);
            scratch[so + j] = e;
            l += e;
        }
    }
    l = wg_reduce(li, busy, l, 1u);
    // The weights written above are read by other threads below.
    storageBarrier();
    if busy {
        for (var d = li; d < dh; d += WG) {
            var acc = 0.0;
            for (var j = 0u; j < sk; j++) {
                acc += scratch[so + j] * v[key_at(b, h, j) + d];
            }
            out[oo + d] = acc / l;
        }
    }
}
