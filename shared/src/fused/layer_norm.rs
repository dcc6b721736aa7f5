//! Layer norm over the last dimension with a fused backward (see the parent module).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::{last_dim, slice, Real};

/// Layer norm over the last dimension (`weight`, `bias` of that length) with a fused backward.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNorm { eps })
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

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(xl)?;
        let out = by_dtype!(xs, self.name(), |T| {
            let (w, b) = (slice::<T>(ws, wl)?, slice::<T>(bs, bl)?);
            let mut out = Vec::with_capacity(xl.shape().elem_count());
            for row in slice::<T>(xs, xl)?.chunks(n) {
                let (mean, rstd) = moments(row, self.eps);
                out.extend(
                    row.iter()
                        .zip(w.iter().zip(b))
                        .map(|(&v, (&w, &b))| (v - mean) * rstd * w + b),
                );
            }
            out
        });
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let x = x.contiguous()?;
        let dx = x.apply_op3_no_bwd(&weight.contiguous()?, &grad, &LayerNormDx { eps: self.eps })?;
        // Weight and bias gradients: the sums over rows of grad * x_hat and of grad.
        let parts = x.apply_op2_no_bwd(&grad, &LayerNormDwDb { eps: self.eps })?;
        Ok((Some(dx), Some(parts.get(0)?), Some(parts.get(1)?)))
    }
}

/// dx = rstd * (g w - mean(g w) - x_hat * mean(g w x_hat)) per row.
struct LayerNormDx {
    eps: f64,
}

impl CustomOp3 for LayerNormDx {
    fn name(&self) -> &'static str {
        "fused-layer-norm-dx"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(xl)?;
        let out = by_dtype!(xs, self.name(), |T| {
            let (w, g) = (slice::<T>(ws, wl)?, slice::<T>(gs, gl)?);
            let mut out = Vec::with_capacity(g.len());
            let count = T::c(n as f64);
            for (row, g) in slice::<T>(xs, xl)?.chunks(n).zip(g.chunks(n)) {
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
            }
            out
        });
        Ok((out, xl.shape().clone()))
    }
}

/// `[2, dim]`: the row sums of grad * x_hat (weight gradient) and of grad (bias gradient).
struct LayerNormDwDb {
    eps: f64,
}

impl CustomOp2 for LayerNormDwDb {
    fn name(&self) -> &'static str {
        "fused-layer-norm-dw-db"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(xl)?;
        let out = by_dtype!(xs, self.name(), |T| {
            let g = slice::<T>(gs, gl)?;
            let mut out = vec![T::c(0.0); 2 * n];
            for (row, g) in slice::<T>(xs, xl)?.chunks(n).zip(g.chunks(n)) {
                let (mean, rstd) = moments(row, self.eps);
                let (dw, db) = out.split_at_mut(n);
                for (i, (&v, &g)) in row.iter().zip(g).enumerate() {
                    dw[i] += g * (v - mean) * rstd;
                    db[i] += g;
                }
            }
            out
        });
        Ok((out, Shape::from((2, n))))
    }
}
