//! NaN-proof tensor comparison for checks against references (`native verify`, the tests, the
//! GPU engine's parity checks).
//!
//! candle's `max` reduction on the CPU skips a NaN unless it comes first, so
//! `(a - b).abs().max()` can report a tiny difference for logits with a NaN column. Here every
//! value is read and a NaN or an infinity in either tensor is an error that says where it is.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// How far a produced tensor is from its reference; both were finite everywhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// max |got - want|.
    pub max_abs: f64,
    /// max |want|: the reference's scale.
    pub want_scale: f64,
}

impl Difference {
    /// max |got - want| / max |want| (the scale floored at 1e-30, so zeros compare too).
    pub fn relative(&self) -> f64 {
        self.max_abs / self.want_scale.max(1e-30)
    }
}

/// Compares `got` with `want` (same shape, any float or integer dtype, read as f64).
///
/// Fails on a shape mismatch, or on the first NaN or infinity in either tensor, naming which
/// tensor, the value, its index and how many of its values are not finite.
pub fn compare(got: &Tensor, want: &Tensor) -> Result<Difference> {
    if got.dims() != want.dims() {
        return Err(Error::Compare(format!(
            "shape {:?} differs from expected {:?}",
            got.dims(),
            want.dims()
        )));
    }
    let g = values(got)?;
    let w = values(want)?;
    check_finite("produced", &g, got.dims())?;
    check_finite("expected", &w, want.dims())?;
    let mut diff = Difference {
        max_abs: 0.0,
        want_scale: 0.0,
    };
    for (a, b) in g.iter().zip(&w) {
        diff.max_abs = diff.max_abs.max((a - b).abs());
        diff.want_scale = diff.want_scale.max(b.abs());
    }
    Ok(diff)
}

/// max |got - want|, NaN-proof (see [`compare`]).
pub fn max_abs_diff(got: &Tensor, want: &Tensor) -> Result<f64> {
    Ok(compare(got, want)?.max_abs)
}

/// max |x| over a tensor; a NaN or infinity is an error, as in [`compare`].
pub fn max_abs(x: &Tensor) -> Result<f64> {
    let v = values(x)?;
    check_finite("tensor", &v, x.dims())?;
    Ok(v.iter().fold(0.0, |m, a| m.max(a.abs())))
}

/// Every value of `t` as f64, in row-major order.
fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// An error naming the first non-finite value of `v` (a tensor of shape `dims`), if any.
fn check_finite(which: &str, v: &[f64], dims: &[usize]) -> Result<()> {
    let Some(first) = v.iter().position(|x| !x.is_finite()) else {
        return Ok(());
    };
    let bad = v.iter().filter(|x| !x.is_finite()).count();
    let kind = if v[first].is_nan() { "NaN" } else { "infinity" };
    Err(Error::Compare(format!(
        "{which} values hold {kind} ({} at index {:?}; {bad} of {} values are not finite)",
        v[first],
        unravel(first, dims),
        v.len()
    )))
}

/// The multi-dimensional index of flat position `i` in a row-major tensor of shape `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        if d > 0 {
            index[k] = i % d;
            i /= d;
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn t(v: &[f32], dims: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), dims, &Device::Cpu).unwrap()
    }

    #[test]
    fn finite_tensors_give_their_differences() {
        let d = compare(
            &t(&[1.0, 2.0, 3.0, 4.5], &[2, 2]),
            &t(&[1.0, 2.5, 3.0, -4.0], &[2, 2]),
        )
        .unwrap();
        assert_eq!(d.max_abs, 8.5);
        assert_eq!(d.want_scale, 4.0);
        assert_eq!(d.relative(), 8.5 / 4.0);
        assert_eq!(max_abs(&t(&[-7.0, 2.0], &[2])).unwrap(), 7.0);
    }

    #[test]
    fn one_nan_anywhere_fails_and_is_named() {
        // Not first: candle's CPU max would skip it and report 0.
        let want = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let got = t(&[1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0], &[2, 3]);
        let err = max_abs_diff(&got, &want).unwrap_err().to_string();
        assert!(err.contains("produced values hold NaN"), "{err}");
        assert!(err.contains("index [1, 1]"), "{err}");
        assert!(err.contains("1 of 6 values"), "{err}");
        let err = max_abs_diff(&want, &got).unwrap_err().to_string();
        assert!(err.contains("expected values hold NaN"), "{err}");
        assert!(max_abs(&got).unwrap_err().to_string().contains("NaN"));
    }

    #[test]
    fn infinities_fail_and_shapes_must_match() {
        let want = t(&[1.0, 2.0], &[2]);
        let err = max_abs_diff(&t(&[f32::NEG_INFINITY, 2.0], &[2]), &want)
            .unwrap_err()
            .to_string();
        assert!(err.contains("infinity (-inf at index [0]"), "{err}");
        let err = max_abs_diff(&t(&[1.0, 2.0], &[1, 2]), &want)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape [1, 2] differs from expected [2]"), "{err}");
    }
}
