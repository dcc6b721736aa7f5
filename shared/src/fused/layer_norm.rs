//! Layer norm over the last dimension with a fused backward (see the parent module).

use candle_core::{Result, Shape, Tensor};

use super::kernel::{map_rows, nth_row, Arg, Kernel, Op, Real};

/// Layer norm over the last dimension (`weight`, `bias` of that length) with a fused backward.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, Op(LayerNorm { eps }))
}

struct LayerNorm {
    eps: f64,
}

/// Mean and 1/std of one row.
fn moments<T: Real>(row: &[T], eps: f64) -> (T, T) {
    let n = T::c(row.len() as f64);
    let mean = row.iter().fold(T::c(0.0), |a, &v| a + v) / n;
    let var = row.iter().fold(T::c(0.0), |a, &v| a + (v - mean) * (v - mean)) / n;
    (mean, T::c(1.0) / (var + T::c(eps)).sqrt())
}

impl Kernel<3> for LayerNorm {
    const NAME: &'static str = "fused-layer-norm";

    fn fwd<T: Real>(&self, [x, w, b]: [Arg; 3]) -> Result<(Vec<T>, Shape)> {
        let n = x.last_dim()?;
        let (w, b) = (w.slice::<T>()?, b.slice::<T>()?);
        let out = map_rows(x.slice::<T>()?, n, n, |_, row, out| {
            let (mean, rstd) = moments(row, self.eps);
            out.extend(
                row.iter()
                    .zip(w.iter().zip(b))
                    .map(|(&v, (&w, &b))| (v - mean) * rstd * w + b),
            );
            Ok(())
        })?;
        Ok((out, x.shape().clone()))
    }

    fn bwd(
        &self,
        [x, weight, _bias]: [&Tensor; 3],
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let grad = grad.contiguous()?;
        let x = x.contiguous()?;
        let dx = layer_norm_dx(&x, weight, &grad, self.eps)?;
        // Weight and bias gradients: the sums over rows of grad * x_hat and of grad.
        let parts = x.apply_op2_no_bwd(&grad, &Op(LayerNormDwDb { eps: self.eps }))?;
        Ok([Some(dx), Some(parts.get(0)?), Some(parts.get(1)?)])
    }
}

/// The layer norm input's gradient from the output's (no graph recorded).
pub(crate) fn layer_norm_dx(x: &Tensor, weight: &Tensor, grad: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &grad.contiguous()?,
        &Op(LayerNormDx { eps }),
    )
}

/// dx = rstd * (g w - mean(g w) - x_hat * mean(g w x_hat)) per row.
struct LayerNormDx {
    eps: f64,
}

impl Kernel<3> for LayerNormDx {
    const NAME: &'static str = "fused-layer-norm-dx";

    fn fwd<T: Real>(&self, [x, w, g]: [Arg; 3]) -> Result<(Vec<T>, Shape)> {
        let n = x.last_dim()?;
        let (w, g) = (w.slice::<T>()?, g.slice::<T>()?);
        let count = T::c(n as f64);
        let out = map_rows(x.slice::<T>()?, n, n, |i, row, out| {
            let g = nth_row(g, i, n);
            let (mean, rstd) = moments(row, self.eps);
            let (mut sum_gw, mut sum_gwx) = (T::c(0.0), T::c(0.0));
            for ((&v, &g), &w) in row.iter().zip(g).zip(w) {
                sum_gw += g * w;
                sum_gwx += g * w * (v - mean) * rstd;
            }
            let (mean_gw, mean_gwx) = (sum_gw / count, sum_gwx / count);
            out.extend(
                row.iter()
                    .zip(g)
                    .zip(w)
                    .map(|((&v, &g), &w)| rstd * (g * w - mean_gw - (v - mean) * rstd * mean_gwx)),
            );
            Ok(())
        })?;
        Ok((out, x.shape().clone()))
    }
}

/// `[2, dim]`: the row sums of grad * x_hat (weight gradient) and of grad (bias gradient).
struct LayerNormDwDb {
    eps: f64,
}

impl Kernel<2> for LayerNormDwDb {
    const NAME: &'static str = "fused-layer-norm-dw-db";

    fn fwd<T: Real>(&self, [x, g]: [Arg; 2]) -> Result<(Vec<T>, Shape)> {
        let n = x.last_dim()?;
        let g = g.slice::<T>()?;
        let mut out = vec![T::c(0.0); 2 * n];
        for (row, g) in x.slice::<T>()?.chunks(n).zip(g.chunks(n)) {
            let (mean, rstd) = moments(row, self.eps);
            let (dw, db) = out.split_at_mut(n);
            for (i, (&v, &g)) in row.iter().zip(g).enumerate() {
                dw[i] += g * (v - mean) * rstd;
                db[i] += g;
            }
        }
        Ok((out, Shape::from((2, n))))
    }
}
