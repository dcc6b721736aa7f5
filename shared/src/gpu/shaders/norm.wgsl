// Layer-norm statistics of up to 8 rows by a workgroup of 256 threads, shared by the layer-norm
// kernel and the kernels that normalise their input rows themselves (the matmul's `small`,
// the projected attention): the same code, so a fused norm gives the separate kernel's bits.
// Needs the module's input `x` and a workgroup array `red` of at least 256 floats per row.
//
// A row's sum adds the threads' strided partial sums as a halving tree (stride 128, then 64,
// ..., 1), in two steps: 8-value subtrees by 32 threads a row, then the last 32 values by one
// thread a row. The same additions in the same order as a loop with a barrier per level, but
// 3 barriers for all rows instead of 10 a row. Lavapipe (a CPU driver) runs a workgroup's
// barriers and its threads' private arrays slowly, so there are neither.

// Each row's statistics (mean, 1 / std), set by `norm_stats_rows`.
var<workgroup> row_stats: array<vec2<f32>, 8>;

// Adds up each row's partials `red[r * 256 + t]` (thread t's): thread r < rows returns row
// r's total (the others 0). `red` may be written again after the caller's next barrier.
fn row_total(li: u32, rows: u32) -> f32 {
    workgroupBarrier();
    // Levels 128, 64, 32: red[r * 256 + i], i < 32, becomes its 8-value subtree.
    for (var t = li; t < rows * 32u; t += 256u) {
        let o = (t / 32u) * 256u + t % 32u;
        let lo = (red[o] + red[o + 128u]) + (red[o + 64u] + red[o + 192u]);
        let hi = (red[o + 32u] + red[o + 160u]) + (red[o + 96u] + red[o + 224u]);
        red[o] = lo + hi;
    }
    workgroupBarrier();
    // Levels 16, 8, 4, 2, 1.
    var total = 0.0;
    if li < rows {
        let o = li * 256u;
        for (var s = 16u; s > 0u; s = s / 2u) {
            for (var i = 0u; i < s; i++) {
                red[o + i] += red[o + i + s];
            }
        }
        total = red[o];
    }
    return total;
}

// Sets `row_stats[r]` to the (mean, 1 / sqrt(variance + eps)) of row x[base + r * n..][..n]
// for r < rows (at most 8). Two passes (the mean, then the mean of squared deviations) rather
// than E[x^2]-E[x]^2, which cancels badly.
fn norm_stats_rows(li: u32, base: u32, rows: u32, n: u32, eps: f32) {
    for (var r = 0u; r < rows; r++) {
        var s = 0.0;
        for (var i = li; i < n; i += 256u) {
            s += x[base + r * n + i];
        }
        red[r * 256u + li] = s;
    }
    let sum = row_total(li, rows);
    if li < rows {
        row_stats[li].x = sum / f32(n);
    }
    workgroupBarrier();
    for (var r = 0u; r < rows; r++) {
        let mean = row_stats[r].x;
        var dev = 0.0;
        for (var i = li; i < n; i += 256u) {
            let d = x[base + r * n + i] - mean;
            dev += d * d;
        }
        red[r * 256u + li] = dev;
    }
    let dev = row_total(li, rows);
    if li < rows {
        row_stats[li].y = inverseSqrt(dev / f32(n) + eps);
    }
    workgroupBarrier();
}

// The statistics of the one row x[base..base + n].
fn norm_stats(li: u32, base: u32, n: u32, eps: f32) -> vec2<f32> {
    norm_stats_rows(li, base, 1u, n, eps);
    return row_stats[0];
}

// `val` normalised with `stats` (from norm_stats), then scaled by `g` and shifted by `b`.
fn normed(val: f32, stats: vec2<f32>, g: f32, b: f32) -> f32 {
    return (val - stats.x) * stats.y * g + b;
}
