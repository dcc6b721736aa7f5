// Activation functions, shared by the elementwise kernel and the matmul's epilogue (the same
// code, so a fused activation gives the bits of the separate kernel).
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

// Activation `op` (codes as in elementwise.wgsl) of `v`; any other code is the identity.
fn activate(op: u32, v: f32) -> f32 {
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
            return v;
        }
    }
}
