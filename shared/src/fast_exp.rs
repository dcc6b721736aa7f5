//! A branch-free f32 e^x (Cephes' expf polynomial), so that loops over it vectorise: libm's
//! scalar `expf` is a call per element. Used by the CPU engine's activations and by decoding's
//! log-softmax normaliser.

/// e^x for x in about [-87, 88] (clamped outside), within 2 ulp: x = n ln 2 + r, a degree-6
/// polynomial in r, and 2^n put in the exponent bits. Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n · LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    // The integer n also sits in `shifted`'s low mantissa bits: no float-to-int conversion
    // (Rust's saturating one would not vectorise).
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_two_ulp() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (super::exp(x), f64::from(x).exp());
            assert!(
                (f64::from(got) - want).abs() <= 2.5e-7 * want,
                "exp({x}) = {got}, exact {want}"
            );
        }
    }
}
