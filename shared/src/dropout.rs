//! Training-time dropout (GPT-2's `embd/attn/resid_pdrop`, the transformer mapper's 0.1).
//!
//! A model is built without it (inference, validation, fixtures: the original's eval mode);
//! the trainer switches it on in a clone of the model with [`crate::CaptionModel::with_dropout`].
//! Masks come from one seeded generator that the trainer reseeds every step, so a resumed run
//! draws the same masks as an uninterrupted one. On the CPU the masks are drawn here; on a GPU
//! from the device's generator, which the trainer seeds per step (`Device::set_seed`), because
//! drawing hundreds of millions of numbers per step on the host would cost more than the step.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Module, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The shared, reseedable source of CPU dropout masks.
#[derive(Debug, Clone)]
pub struct DropoutRng(Arc<Mutex<StdRng>>);

impl DropoutRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Arc::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    /// Restarts the sequence from `seed` (once per training step).
    pub fn reseed(&self, seed: u64) {
        if let Ok(mut rng) = self.0.lock() {
            *rng = StdRng::seed_from_u64(seed);
        }
    }

    /// A keep-mask scaled by 1/(1-p), shaped and typed like `x`.
    fn mask(&self, x: &Tensor, p: f32) -> candle_core::Result<Tensor> {
        let scale = 1.0 / (1.0 - p);
        if !x.device().is_cpu() {
            let u = Tensor::rand(0f32, 1f32, x.shape(), x.device())?;
            return (u.ge(p)?.to_dtype(DType::F32)? * scale as f64)?.to_dtype(x.dtype());
        }
        let mut rng = self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg("dropout generator poisoned by a panic".into()))?;
        let keep: Vec<f32> = (0..x.elem_count())
            .map(|_| if rng.random::<f32>() >= p { scale } else { 0.0 })
            .collect();
        Tensor::from_vec(keep, x.shape(), x.device())?.to_dtype(x.dtype())
    }
}

/// Dropout with probability `p`; the identity until a generator is attached.
#[derive(Debug, Clone, Default)]
pub struct Dropout {
    p: f32,
    rng: Option<DropoutRng>,
}

impl Dropout {
    /// Inactive dropout with probability `p` (0 ≤ p < 1).
    pub fn new(p: f32) -> Self {
        Self { p, rng: None }
    }

    /// Whether masks are drawn (the trainer switched it on and p > 0).
    pub fn is_active(&self) -> bool {
        self.rng.is_some() && self.p > 0.0
    }

    /// Turns it on, drawing masks from `rng`.
    pub fn enable(&mut self, rng: &DropoutRng) {
        self.rng = Some(rng.clone());
    }

    /// The next keep-mask for `x` (scaled by 1/(1-p)), drawn as [`Module::forward`] draws it;
    /// `None` when inactive. A hand-written backward keeps it to scale the gradient.
    pub(crate) fn mask(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match &self.rng {
            Some(rng) if self.p > 0.0 => rng.mask(x, self.p).map(Some),
            _ => Ok(None),
        }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.mask(x)? {
            Some(mask) => x * mask,
            None => Ok(x.clone()),
        }
    }
}
