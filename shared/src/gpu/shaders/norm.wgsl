// Layer-norm statistics of one row by a workgroup of 256 threads, shared by the layer-norm
// kernel and the kernels that normalise their input rows themselves (the matmul's `small`,
// the projected attention): the same code, so a fused norm gives the separate kernel's bits.
// Needs the module's input `x` and a workgroup array `red` of at least 256 floats.

// Sum of `v` over the 256 threads (every thread gets it).
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

// (mean, 1 / sqrt(variance + eps)) of x[base..base + n]. Two passes (mean, then the mean of
// squared deviations) rather than E[x^2]-E[x]^2, which cancels badly.
fn norm_stats(li: u32, base: u32, n: u32, eps: f32) -> vec2<f32> {
    var s = 0.0;
    for (var i = li; i < n; i += 256u) {
        s += x[base + i];
    }
    let mean = wg_sum(li, s) / f32(n);
    var dev = 0.0;
    for (var i = li; i < n; i += 256u) {
        let d = x[base + i] - mean;
        dev += d * d;
    }
    return vec2<f32>(mean, inverseSqrt(wg_sum(li, dev) / f32(n) + eps));
}

// `val` normalised with `stats` (from norm_stats), then scaled by `g` and shifted by `b`.
fn normed(val: f32, stats: vec2<f32>, g: f32, b: f32) -> f32 {
    return (val - stats.x) * stats.y * g + b;
}
