//! Attention rollout on the host: attention weights from read-back queries and keys, and
//! their composition from a generated token through the cross-attention and the resampler's
//! layers down to the CLIP tokens. Plain f32 arithmetic, the same on every engine.

use crate::{Error, Result};

/// A dense row-major matrix of f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows · cols` values, row after row.
    pub values: Vec<f32>,
}

impl Matrix {
    /// A matrix from its values (checked against the shape).
    pub fn new(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(Error::Decode(format!(
                "a {rows}x{cols} matrix needs {} values, got {}",
                rows * cols,
                values.len()
            )));
        }
        Ok(Self { rows, cols, values })
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.cols..(i + 1) * self.cols]
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Matrix) -> Result<Matrix> {
        if self.cols != other.rows {
            return Err(Error::Decode(format!(
                "rollout: {}x{} times {}x{}",
                self.rows, self.cols, other.rows, other.cols
            )));
        }
        let mut out = vec![0f32; self.rows * other.cols];
        for i in 0..self.rows {
            let dst = &mut out[i * other.cols..(i + 1) * other.cols];
            for (k, &a) in self.row(i).iter().enumerate() {
                for (d, &b) in dst.iter_mut().zip(other.row(k)) {
                    *d += a * b;
                }
            }
        }
        Matrix::new(self.rows, other.cols, out)
    }
}

/// The attention weights `softmax(q kᵀ)` of one layer for one batch row, averaged over the
/// heads: `q` [H, Sq, Dh] (already scaled) and `k` [H, Sk, Dh] flattened → [Sq, Sk].
pub fn head_mean_weights(q: &[f32], k: &[f32], heads: usize, dh: usize) -> Result<Matrix> {
    let per_head = |len: usize| len.checked_div(heads * dh).filter(|n| n * heads * dh == len);
    let (sq, sk) = match (per_head(q.len()), per_head(k.len())) {
        (Some(sq), Some(sk)) if sk > 0 => (sq, sk),
        _ => {
            return Err(Error::Decode(format!(
                "rollout: {} query and {} key values do not split into {heads} heads of {dh}",
                q.len(),
                k.len()
            )))
        }
    };
    let mut out = vec![0f32; sq * sk];
    let mut scores = vec![0f32; sk];
    for h in 0..heads {
        let kh = &k[h * sk * dh..(h + 1) * sk * dh];
        for i in 0..sq {
            let qi = &q[(h * sq + i) * dh..(h * sq + i + 1) * dh];
            for (s, kj) in scores.iter_mut().zip(kh.chunks_exact(dh)) {
                *s = qi.iter().zip(kj).map(|(a, b)| a * b).sum();
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
            for (o, s) in out[i * sk..(i + 1) * sk].iter_mut().zip(&scores) {
                *o += (s - max).exp() / total / heads as f32;
            }
        }
    }
    Matrix::new(sq, sk, out)
}

/// Rollout through the resampler: each layer's latents attend over `[media; latents]`
/// (`weights[l]` is [m, media + m], heads averaged) and keep their residual. A latent's
/// relevance over the sources (the media tokens, then the initial latents) follows
/// `R_l = ½·(A_media + A_latents · R_{l-1}) + ½·R_{l-1}`, from `R_0 = [0 | I]` (Abnar &
/// Zuidema's rollout: the residual stream counted as half of every layer). Returns the final
/// latents' relevance over the media tokens alone, [m, media]; the share left on the initial
/// latents (learned constants, not the picture) is dropped.
pub fn resampler_rollout(weights: &[Matrix], media: usize) -> Result<Matrix> {
    let m = match weights.first() {
        Some(w) => w.rows,
        None => return Err(Error::Decode("rollout: the resampler has no layers".into())),
    };
    let sources = media + m;
    let mut relevance = vec![0f32; m * sources];
    for i in 0..m {
        relevance[i * sources + media + i] = 1.0;
    }
    let mut r = Matrix::new(m, sources, relevance)?;
    for w in weights {
        if w.rows != m || w.cols != sources {
            return Err(Error::Decode(format!(
                "rollout: a resampler layer's weights are {}x{}, expected {m}x{sources}",
                w.rows, w.cols
            )));
        }
        // A_latents · R_{l-1}: the latent columns of this layer's weights mix last layer's rows.
        let latent_part =
            Matrix::new(m, m, (0..m).flat_map(|i| w.row(i)[media..].to_vec()).collect())?.matmul(&r)?;
        let values = (0..m * sources)
            .map(|at| {
                let (i, j) = (at / sources, at % sources);
                let direct = if j < media { w.values[i * sources + j] } else { 0.0 };
                0.5 * (direct + latent_part.values[at]) + 0.5 * r.values[at]
            })
            .collect();
        r = Matrix::new(m, sources, values)?;
    }
    Matrix::new(
        m,
        media,
        (0..m).flat_map(|i| r.row(i)[..media].to_vec()).collect(),
    )
}

/// Which cross-attention blocks a token's weights over the latents are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerMix {
    /// The mean over every cross-attention block.
    Mean,
    /// The last block only (nearest the prediction).
    Last,
}

/// A query position's weights over the latents, from each cross-attention block's weights
/// ([S, m] each, heads averaged), mixed as `mix` says.
pub fn latent_weights(blocks: &[Matrix], position: usize, mix: LayerMix) -> Result<Vec<f32>> {
    let used: &[Matrix] = match (mix, blocks) {
        (_, []) => return Err(Error::Decode("rollout: the model has no cross-attention".into())),
        (LayerMix::Mean, all) => all,
        (LayerMix::Last, [.., last]) => std::slice::from_ref(last),
    };
    let m = used[0].cols;
    let mut out = vec![0f32; m];
    for b in used {
        if position >= b.rows || b.cols != m {
            return Err(Error::Decode(format!(
                "rollout: position {position} of cross-attention weights {}x{}",
                b.rows, b.cols
            )));
        }
        for (o, w) in out.iter_mut().zip(b.row(position)) {
            *o += w / used.len() as f32;
        }
    }
    Ok(out)
}

/// `weights` [m] over the latents times their relevance [m, media] → relevance over the media.
pub fn through_latents(weights: &[f32], relevance: &Matrix) -> Result<Vec<f32>> {
    Ok(Matrix::new(1, weights.len(), weights.to_vec())?
        .matmul(relevance)?
        .values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    /// Two heads, one query, two keys: head 0 scores (0, ln 3) → (1/4, 3/4), head 1 scores
    /// (0, 0) → (1/2, 1/2); the mean is (3/8, 5/8).
    #[test]
    fn head_mean_is_the_mean_of_each_heads_softmax() {
        let ln3 = 3f32.ln();
        // q [2 heads, 1, 1], k [2 heads, 2, 1].
        let w = head_mean_weights(&[1.0, 1.0], &[0.0, ln3, 0.0, 0.0], 2, 1).unwrap();
        assert_eq!((w.rows, w.cols), (1, 2));
        close(&w.values, &[0.375, 0.625]);
    }

    /// One layer, two media tokens, two latents: by hand,
    /// R_1 = ½(A_media + A_lat·[0|I]) + ½[0|I]; only the media columns are returned.
    #[test]
    fn one_resampler_layer_by_hand() {
        // Latent 0 looks at media 0 (0.6) and latent 1 (0.4); latent 1 at media 1 (0.5), itself (0.5).
        let a = Matrix::new(2, 4, vec![0.6, 0.0, 0.0, 0.4, 0.0, 0.5, 0.0, 0.5]).unwrap();
        let r = resampler_rollout(&[a], 2).unwrap();
        // Media columns: ½·A_media (latent columns of R_0 are zero on media).
        close(&r.values, &[0.3, 0.0, 0.0, 0.25]);
    }

    /// Two layers compose: the second layer's latent 0 reads latent 1, which after layer one
    /// already carries media 1; so latent 0 ends up with some of media 1.
    #[test]
    fn two_layers_compose_through_the_latents() {
        let l1 = Matrix::new(2, 4, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]).unwrap();
        let l2 = Matrix::new(2, 4, vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let r = resampler_rollout(&[l1, l2], 2).unwrap();
        // After l1: R = [[.5, 0, .5, 0], [0, .5, 0, .5]].
        // l2: latent 0 = ½(0 + R[1]) + ½R[0] = [.25, .25, .25, .25] → media (.25, .25);
        //     latent 1 = ½(R[1]) + ½R[1] = R[1] → media (0, .5).
        close(&r.values, &[0.25, 0.25, 0.0, 0.5]);
        // Rows keep their mass: media plus initial latents sum to 1 before dropping latents.
    }

    #[test]
    fn layer_mix_and_the_last_step() {
        let b1 = Matrix::new(1, 2, vec![1.0, 0.0]).unwrap();
        let b2 = Matrix::new(1, 2, vec![0.0, 1.0]).unwrap();
        close(
            &latent_weights(&[b1.clone(), b2.clone()], 0, LayerMix::Mean).unwrap(),
            &[0.5, 0.5],
        );
        close(
            &latent_weights(&[b1, b2], 0, LayerMix::Last).unwrap(),
            &[0.0, 1.0],
        );
        let rel = Matrix::new(2, 3, vec![1.0, 0.0, 0.0, 0.0, 0.5, 0.5]).unwrap();
        close(&through_latents(&[0.5, 0.5], &rel).unwrap(), &[0.5, 0.25, 0.25]);
    }
}
