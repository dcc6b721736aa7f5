//! Adam and AdamW exactly as `torch.optim` computes them, with state that can be saved and
//! restored for exact resume; the learning-rate schedules in [`schedule`].

pub mod schedule;

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

impl Default for AdamConfig {
    /// The original `config.yaml`'s optimizer: AdamW, betas (0.9, 0.98), weight decay 1e-3,
    /// PyTorch's eps 1e-8.
    fn default() -> Self {
        Self {
            kind: OptimizerKind::AdamW,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 1e-3,
        }
    }
}

impl AdamConfig {
    /// The hyper-parameters `model.optimizer` sets (`adamw` or `adam`).
    pub fn from_config(ocfg: &caption_model::config::OptimizerConfig) -> Result<Self> {
        let kind = match ocfg.name.as_str() {
            "adamw" => OptimizerKind::AdamW,
            "adam" => OptimizerKind::Adam,
            other => anyhow::bail!("unknown optimizer `{other}` (adamw or adam)"),
        };
        Ok(Self {
            kind,
            beta1: ocfg.betas[0],
            beta2: ocfg.betas[1],
            eps: 1e-8,
            weight_decay: ocfg.weight_decay,
        })
    }
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
    /// Learning-rate multipliers of single variables (1 for the rest).
    lr_scale: BTreeMap<String, f64>,
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
            lr_scale: BTreeMap::new(),
            step: 0,
        })
    }

    /// Multiplies the learning rate of the variables `names` by `factor`.
    pub fn scale_lr<'a>(&mut self, names: impl IntoIterator<Item = &'a String>, factor: f64) {
        self.lr_scale
            .extend(names.into_iter().map(|n| (n.clone(), factor)));
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
            let Some(grad) = grad_of(name, var).map(|g| g.detach()) else {
                continue;
            };
            let st = self
                .state
                .get_mut(name)
                .with_context(|| format!("no optimizer state for `{name}`"))?;
            let p = &var.as_tensor().detach();
            let lr = lr * self.lr_scale.get(name).copied().unwrap_or(1.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn adamw_without_decay() -> AdamConfig {
        AdamConfig {
            weight_decay: 0.0,
            ..AdamConfig::default()
        }
    }

    fn one_var(value: f32) -> (String, Var) {
        ("w".to_string(), Var::new(&[value], &Device::Cpu).unwrap())
    }

    #[test]
    fn adamw_first_step_matches_torch_by_hand() {
        let (name, w) = one_var(1.0);
        let cfg = AdamConfig {
            kind: OptimizerKind::AdamW,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        let mut opt = Adam::new(cfg, BTreeMap::from([(name, w.clone())])).unwrap();
        let loss = (w.as_tensor() * w.as_tensor()).unwrap().sum_all().unwrap(); // grad = 2w = 2
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        // p·(1 − lr·wd) − lr · m̂ / (√v̂ + eps), with m̂ = g and v̂ = g² after one step.
        let want = 1.0 * (1.0 - 0.1 * 0.01) - 0.1 * 2.0 / (2.0 + 1e-8);
        let got = w.as_tensor().to_vec1::<f32>().unwrap()[0] as f64;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(opt.step_count(), 1);
    }

    #[test]
    fn adam_adds_the_l2_term_to_the_gradient() {
        let (name, w) = one_var(1.0);
        let cfg = AdamConfig {
            kind: OptimizerKind::Adam,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut opt = Adam::new(cfg, BTreeMap::from([(name, w.clone())])).unwrap();
        let loss = (w.as_tensor() * -1.0).unwrap().sum_all().unwrap(); // grad = −1, +0.5·w = −0.5
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        let got = w.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!(
            (got - 1.1).abs() < 1e-6,
            "a negative gradient moves w up by lr: {got}"
        );
    }

    #[test]
    fn moments_hold_no_autograd_graph() {
        let (name, w) = one_var(3.0);
        let mut opt = Adam::new(adamw_without_decay(), BTreeMap::from([(name.clone(), w.clone())])).unwrap();
        for _ in 0..3 {
            let loss = (w.as_tensor() * w.as_tensor()).unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), 0.01).unwrap();
        }
        let m = &opt.state()[&name];
        // A moment that tracked ops would keep every past step's graph (and its memory) alive.
        assert!(!m.m.track_op() && !m.v.track_op());
    }

    #[test]
    fn a_scaled_learning_rate_moves_only_its_variable_by_that_factor() {
        let cfg = adamw_without_decay();
        let (a, b) = (one_var(1.0).1, one_var(1.0).1);
        let vars = BTreeMap::from([("a".to_string(), a.clone()), ("b".to_string(), b.clone())]);
        let mut opt = Adam::new(cfg, vars).unwrap();
        opt.scale_lr([&"b".to_string()], 0.1);
        let loss = (a.as_tensor() + b.as_tensor()).unwrap().sum_all().unwrap(); // grads 1, 1
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        // Adam's first step moves each by its learning rate: 0.1 and 0.01.
        let got = |v: &Var| v.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((got(&a) - 0.9).abs() < 1e-6, "{}", got(&a));
        assert!((got(&b) - 0.99).abs() < 1e-6, "{}", got(&b));
    }
}
