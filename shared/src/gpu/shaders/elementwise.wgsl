// Unary elementwise kernels: activations and affine. op codes (word 1):
// 0 gelu (erf), 1 gelu (tanh approximation, candle's `gelu`), 2 quick_gelu, 3 relu,
// 4 squared relu, 5 tanh, 6 affine x*mul+add (mul word 2, add word 3).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Op `op`: an activation (activation.wgsl), or the affine map (op 6).
fn apply(op: u32, v: f32) -> f32 {
    if op == 6u {
        return v * pf(2u) + pf(3u);
    }
    return activate(op, v);
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wid, nwg) * 256u + li;
    if i >= pu(0u) {
        return;
    }
    y[i] = apply(pu(1u), x[i]);
}
