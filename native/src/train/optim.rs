//! Adam and AdamW exactly as `torch.optim` computes them, with state that can be saved and
//! restored for exact resume.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Decoupled weight decay (`torch.optim.AdamW`).
    AdamW,
    /// L2 penalty added to the gradient (`torch.optim.Adam`).
    Adam,
}

/// Hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Update rule.
    pub kind: OptimizerKind,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
}

/// Moments of one parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    /// First moment.
    pub m: Tensor,
    /// Second moment.
    pub v: Tensor,
}

/// The optimiser over named variables.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    vars: BTreeMap<String, Var>,
    state: BTreeMap<String, Moments>,
    step: u64,
}

impl Adam {
    /// An optimiser with fresh (zero) state.
    pub fn new(cfg: AdamConfig, vars: BTreeMap<String, Var>) -> Result<Self> {
        let state = vars
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    Moments {
                        m: v.zeros_like()?,
                        v: v.zeros_like()?,
                    },
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg,
            vars,
            state,
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The moments, by parameter name (for checkpoints).
    pub fn state(&self) -> &BTreeMap<String, Moments> {
        &self.state
    }

    /// Restores moments and the step count saved by [`Adam::state`].
    pub fn restore(&mut self, state: BTreeMap<String, Moments>, step: u64) -> Result<()> {
        for name in self.vars.keys() {
            anyhow::ensure!(
                state.contains_key(name),
                "optimizer state has no moments for `{name}`"
            );
        }
        self.state = state;
        self.step = step;
        Ok(())
    }

    /// One update at learning rate `lr`. Parameters without a gradient are left alone, as
    /// torch does.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step_with(|_, var| grads.get(var.as_tensor()).cloned(), lr)
    }

    /// [`Adam::step`] with gradients from any source, by parameter name.
    pub fn step_with(&mut self, grad_of: impl Fn(&str, &Var) -> Option<Tensor>, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (name, var) in &self.vars {
            // Detached: gradients (and the parameter read) carry the step's autograd graph, and
            // moments built on them would keep every past step's graph alive.
            let Some(grad) = grad_of(name, var).map(|g| g.detach()) else { continue };
            let st = self
                .state
                .get_mut(name)
                .with_context(|| format!("no optimizer state for `{name}`"))?;
            let p = &var.as_tensor().detach();
            let (p, grad) = match c.kind {
                OptimizerKind::AdamW => ((p * (1.0 - lr * c.weight_decay))?, grad),
                OptimizerKind::Adam => (p.clone(), (grad + (p * c.weight_decay)?)?),
            };
            let m = ((&st.m * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
            let v = ((&st.v * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
            let update = (m.div(&denom)? * (lr / bc1))?;
            var.set(&(p - update)?)?;
            *st = Moments { m, v };
        }
        Ok(())
    }
}
