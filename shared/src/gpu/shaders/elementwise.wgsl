// Unary elementwise kernels: activations and affine. op codes (word 1):
// 0 gelu (erf), 1 gelu (tanh approximation, candle's `gelu`), 2 quick_gelu, 3 relu,
// 4 squared relu, 5 tanh, 6 affine x*mul+add (mul word 2, add word 3).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): WGSL has no erf builtin.
fn erf_approx(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-a * a);
    return select(r, -r, v < 0.0);
}

// tanh with the argument clamped: some drivers compute tanh through exp and overflow to NaN.
fn safe_tanh(v: f32) -> f32 {
    return tanh(clamp(v, -15.0, 15.0));
}

fn apply(op: u32, v: f32) -> f32 {
    switch op {
        case 0u: {
            return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
        }
        case 1u: {
            return 0.5 * v * (1.0 + safe_tanh(0.79788456080286536 * v * (1.0 + 0.044715 * v * v)));
        }
        case 2u: {
            return v / (1.0 + exp(-1.702 * v));
        }
        case 3u: {
            return max(v, 0.0);
        }
        case 4u: {
            let r = max(v, 0.0);
            return r * r;
        }
        case 5u: {
            return safe_tanh(v);
        }
        default: {
            return v * pf(2u) + pf(3u);
        }
    }
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
