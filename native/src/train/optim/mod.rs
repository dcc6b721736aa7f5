//! Adam and AdamW exactly as `torch.optim` computes them, with state that can be saved and
//! restored for exact resume; the learning-rate schedules in [`schedule`].

pub mod in_place;
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

/// How a step updates the parameters. Every path computes the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatePath {
    /// About 15 tensor ops per parameter (candle's op chain): the reference.
    PerTensor,
    /// Parameters that share a learning rate, dtype and device form a group whose moments are
    /// one flat buffer each; a step concatenates the group's parameters and gradients once,
    /// updates them in a dozen whole-buffer ops and writes each parameter back. The GPU's
    /// path, where every op is a kernel launch.
    FlatGroups,
    /// Two in-place passes per parameter, no tensor created ([`in_place`]): the CPU's path
    /// for f32 parameters (others take the per-tensor chain).
    InPlace,
}

/// The optimiser over named variables. The arithmetic per element is the per-tensor update's,
/// op for op, on every [`UpdatePath`], so the paths give bit-identical results.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    vars: BTreeMap<String, Var>,
    /// Moments by parameter: the per-tensor path's state, and where a restore puts them until
    /// the first step of another path packs them its way.
    state: BTreeMap<String, Moments>,
    /// The flat groups, once built (flat path only).
    groups: Option<Vec<Group>>,
    /// Packed `[2, n]` moments by parameter, once built (in-place path only).
    packed: Option<BTreeMap<String, Tensor>>,
    /// Learning-rate multipliers of single variables (1 for the rest).
    lr_scale: BTreeMap<String, f64>,
    step: u64,
    path: UpdatePath,
}

/// Parameters updated together: their names in buffer order and their moments, flat.
#[derive(Debug)]
struct Group {
    names: Vec<String>,
    /// Elements of each parameter, in `names` order.
    sizes: Vec<usize>,
    lr_scale: f64,
    m: Tensor,
    v: Tensor,
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
        let on_gpu = vars.values().next().is_some_and(|v| !v.device().is_cpu());
        Ok(Self {
            cfg,
            vars,
            state,
            groups: None,
            packed: None,
            lr_scale: BTreeMap::new(),
            step: 0,
            // Flat groups where each op is a kernel launch (a GPU); on the CPU in-place passes,
            // which create nothing (a whole-buffer chain measured slower than even the
            // per-tensor one there: BENCHMARKS.md).
            path: if on_gpu {
                UpdatePath::FlatGroups
            } else {
                UpdatePath::InPlace
            },
        })
    }

    /// The same optimiser on another update path (its moments carried over).
    pub fn with_path(mut self, path: UpdatePath) -> Result<Self> {
        self.state = self.state()?;
        (self.groups, self.packed) = (None, None);
        self.path = path;
        Ok(self)
    }

    /// The same optimiser updating tensor by tensor (about 15 ops per parameter tensor): the
    /// reference the other paths are tested against.
    pub fn per_tensor(self) -> Result<Self> {
        self.with_path(UpdatePath::PerTensor)
    }

    /// The same optimiser on flat groups (a dozen whole-buffer ops per group): the default on
    /// a GPU, where every op is a kernel launch.
    pub fn flat_groups(self) -> Result<Self> {
        self.with_path(UpdatePath::FlatGroups)
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

    /// The moments, by parameter name (for checkpoints; views of the flat buffers, copies of
    /// the packed ones).
    pub fn state(&self) -> Result<BTreeMap<String, Moments>> {
        if let Some(packed) = &self.packed {
            let mut out = self.state.clone();
            for (name, mv) in packed {
                let (m, v) = in_place::unpack(mv, self.vars[name].shape())?;
                out.insert(name.clone(), Moments { m, v });
            }
            return Ok(out);
        }
        let Some(groups) = &self.groups else {
            return Ok(self.state.clone());
        };
        let mut out = BTreeMap::new();
        for g in groups {
            let mut offset = 0;
            for (name, &n) in g.names.iter().zip(&g.sizes) {
                let shape = self.vars[name].shape().clone();
                let view = |t: &Tensor| t.narrow(0, offset, n)?.reshape(&shape);
                out.insert(
                    name.clone(),
                    Moments {
                        m: view(&g.m)?,
                        v: view(&g.v)?,
                    },
                );
                offset += n;
            }
        }
        Ok(out)
    }

    /// Restores moments and the step count saved by [`Adam::state`].
    pub fn restore(&mut self, state: BTreeMap<String, Moments>, step: u64) -> Result<()> {
        for (name, var) in &self.vars {
            let m = state
                .get(name)
                .with_context(|| format!("optimizer state has no moments for `{name}`"))?;
            anyhow::ensure!(
                m.m.shape() == var.shape() && m.v.shape() == var.shape(),
                "optimizer moments of `{name}` are {:?}, the parameter is {:?}",
                m.m.dims(),
                var.dims()
            );
        }
        self.state = state;
        (self.groups, self.packed) = (None, None);
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
        match self.path {
            UpdatePath::PerTensor => return self.step_per_tensor(grad_of, lr),
            UpdatePath::InPlace => return self.step_in_place(grad_of, lr),
            UpdatePath::FlatGroups => {}
        }
        if self.groups.is_none() {
            self.groups = Some(self.build_groups()?);
        }
        let groups = self.groups.as_mut().context("optimizer groups")?;
        for g in groups {
            step_group((self.cfg, self.step), g, &self.vars, &grad_of, lr)?;
        }
        Ok(())
    }

    /// Groups of parameters by learning-rate multiplier, dtype and device, their moments
    /// concatenated from the per-parameter state.
    fn build_groups(&self) -> Result<Vec<Group>> {
        let mut keyed: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for (name, var) in &self.vars {
            let scale = self.lr_scale.get(name).copied().unwrap_or(1.0);
            let key = format!("{scale:e} {:?} {:?}", var.dtype(), var.device().location());
            keyed.entry(key).or_default().push(name);
        }
        keyed
            .into_values()
            .map(|names| {
                let flat = |pick: fn(&Moments) -> &Tensor| -> Result<Tensor> {
                    let parts = names
                        .iter()
                        .map(|n| Ok(pick(&self.state[*n]).flatten_all()?))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Tensor::cat(&parts, 0)?)
                };
                Ok(Group {
                    sizes: names.iter().map(|n| self.vars[*n].elem_count()).collect(),
                    lr_scale: self.lr_scale.get(names[0]).copied().unwrap_or(1.0),
                    m: flat(|m| &m.m)?,
                    v: flat(|m| &m.v)?,
                    names: names.into_iter().cloned().collect(),
                })
            })
            .collect()
    }

    /// The in-place update (see [`UpdatePath::InPlace`]); parameters it does not apply to take
    /// the per-tensor chain.
    fn step_in_place(&mut self, grad_of: impl Fn(&str, &Var) -> Option<Tensor>, lr: f64) -> Result<()> {
        if self.packed.is_none() {
            let mut packed = BTreeMap::new();
            for (name, var) in &self.vars {
                if in_place::applies(var.as_tensor()) {
                    let st = &self.state[name];
                    packed.insert(name.clone(), in_place::pack(&st.m, &st.v)?);
                }
            }
            self.packed = Some(packed);
        }
        let packed = self.packed.as_ref().context("packed optimizer state")?;
        let c = self.cfg;
        let bias = bias_corrections(c, self.step);
        for (name, var) in &self.vars {
            let Some(grad) = grad_of(name, var) else {
                continue;
            };
            let lr = lr * self.lr_scale.get(name).copied().unwrap_or(1.0);
            match packed.get(name) {
                Some(mv) => in_place::step(c, bias, lr, var.as_tensor(), &grad, mv)?,
                None => update_var(c, bias, lr, var, &grad, moments_of(&mut self.state, name)?)?,
            }
        }
        Ok(())
    }

    /// The per-tensor update (see [`Adam::per_tensor`]).
    fn step_per_tensor(&mut self, grad_of: impl Fn(&str, &Var) -> Option<Tensor>, lr: f64) -> Result<()> {
        let c = self.cfg;
        let bias = bias_corrections(c, self.step);
        for (name, var) in &self.vars {
            let Some(grad) = grad_of(name, var) else {
                continue;
            };
            let lr = lr * self.lr_scale.get(name).copied().unwrap_or(1.0);
            update_var(c, bias, lr, var, &grad, moments_of(&mut self.state, name)?)?;
        }
        Ok(())
    }
}

/// The moments of parameter `name`.
fn moments_of<'a>(state: &'a mut BTreeMap<String, Moments>, name: &str) -> Result<&'a mut Moments> {
    state
        .get_mut(name)
        .with_context(|| format!("no optimizer state for `{name}`"))
}

/// One parameter's update by the op chain: `var` and its moments `st` replaced.
fn update_var(
    c: AdamConfig,
    bias: (f64, f64),
    lr: f64,
    var: &Var,
    grad: &Tensor,
    st: &mut Moments,
) -> Result<()> {
    // Detached: gradients (and the parameter read) carry the step's autograd graph, and
    // moments built on them would keep every past step's graph alive.
    let p = &var.as_tensor().detach();
    let (p, m, v) = update(c, bias, lr, p, &grad.detach(), &st.m, &st.v)?;
    var.set(&p)?;
    *st = Moments { m, v };
    Ok(())
}

/// 1 − β₁ᵗ and 1 − β₂ᵗ.
fn bias_corrections(c: AdamConfig, step: u64) -> (f64, f64) {
    (1.0 - c.beta1.powi(step as i32), 1.0 - c.beta2.powi(step as i32))
}

/// One Adam/AdamW update of parameters `p` with gradient `grad` and moments `m`, `v`: the new
/// parameters and moments. Elementwise, so a flat group and a single tensor get the same bits.
fn update(
    c: AdamConfig,
    (bc1, bc2): (f64, f64),
    lr: f64,
    p: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (p, grad) = match c.kind {
        OptimizerKind::AdamW => ((p * (1.0 - lr * c.weight_decay))?, grad.clone()),
        OptimizerKind::Adam => (p.clone(), (grad + (p * c.weight_decay)?)?),
    };
    let m = ((m * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
    let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
    let step = (m.div(&denom)? * (lr / bc1))?;
    Ok(((p - step)?, m, v))
}

/// One flat update of a group: parameters without a gradient keep their values and moments.
fn step_group(
    (c, step): (AdamConfig, u64),
    g: &mut Group,
    vars: &BTreeMap<String, Var>,
    grad_of: &impl Fn(&str, &Var) -> Option<Tensor>,
    lr: f64,
) -> Result<()> {
    let mut grads = Vec::with_capacity(g.names.len());
    let mut params = Vec::with_capacity(g.names.len());
    let mut present = Vec::with_capacity(g.names.len());
    for name in &g.names {
        let var = &vars[name];
        // Detached: see the per-tensor path.
        let grad = grad_of(name, var).map(|t| t.detach());
        present.push(grad.is_some());
        grads.push(match grad {
            Some(t) => t.flatten_all()?,
            None => Tensor::zeros(var.elem_count(), var.dtype(), var.device())?,
        });
        params.push(var.as_tensor().detach().flatten_all()?);
    }
    if !present.contains(&true) {
        return Ok(());
    }
    let (grad, p) = (Tensor::cat(&grads, 0)?, Tensor::cat(&params, 0)?);
    let lr = lr * g.lr_scale;
    let (p, m, v) = update(c, bias_corrections(c, step), lr, &p, &grad, &g.m, &g.v)?;
    if present.contains(&false) {
        // Keep the moments of the parameters that had no gradient, as torch does.
        let keep: Vec<u8> = present
            .iter()
            .zip(&g.sizes)
            .flat_map(|(&on, &n)| std::iter::repeat_n(on as u8, n))
            .collect();
        let mask = Tensor::from_vec(keep, m.elem_count(), m.device())?;
        g.m = mask.where_cond(&m, &g.m)?;
        g.v = mask.where_cond(&v, &g.v)?;
    } else {
        (g.m, g.v) = (m, v);
    }
    write_back(g, vars, &p, &present)
}

/// Sets each parameter that had a gradient from its part of the flat `p`.
fn write_back(g: &Group, vars: &BTreeMap<String, Var>, p: &Tensor, present: &[bool]) -> Result<()> {
    let mut offset = 0;
    for ((name, &n), &on) in g.names.iter().zip(&g.sizes).zip(present) {
        if on {
            let var = &vars[name];
            var.set(&p.narrow(0, offset, n)?.reshape(var.shape())?)?;
        }
        offset += n;
    }
    Ok(())
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
        let state = opt.state().unwrap();
        let m = &state[&name];
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

    /// Seeded parameters of several shapes, as fresh `Var`s.
    fn params() -> BTreeMap<String, Var> {
        let dev = Device::Cpu;
        [
            ("a", vec![3, 5]),
            ("b", vec![7]),
            ("c", vec![2, 2, 3]),
            ("d", vec![1]),
            // Large enough to be split across threads by the in-place passes.
            ("e", vec![300, 250]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (name, dims))| {
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|j| ((i * 31 + j * 7) % 13) as f32 * 0.1 - 0.6)
                .collect();
            (
                name.to_string(),
                Var::from_tensor(&Tensor::from_vec(v, dims, &dev).unwrap()).unwrap(),
            )
        })
        .collect()
    }

    /// A gradient for `name` at `step` (none for `b` at step 2, as for an unused parameter).
    fn grad(name: &str, var: &Var, step: usize) -> Option<Tensor> {
        if name == "b" && step == 2 {
            return None;
        }
        let t = var.as_tensor();
        Some(((t.sin().unwrap() * (step as f64 + 1.0)).unwrap() + 0.01 * step as f64).unwrap())
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect()
    }

    #[test]
    fn every_path_updates_exactly_as_tensor_by_tensor() {
        for path in [UpdatePath::FlatGroups, UpdatePath::InPlace] {
            for kind in [OptimizerKind::AdamW, OptimizerKind::Adam] {
                let cfg = AdamConfig {
                    kind,
                    weight_decay: 0.05,
                    ..AdamConfig::default()
                };
                let (vars, ref_vars) = (params(), params());
                let mut opt = Adam::new(cfg, vars.clone()).unwrap().with_path(path).unwrap();
                let mut reference = Adam::new(cfg, ref_vars.clone()).unwrap().per_tensor().unwrap();
                for opt in [&mut opt, &mut reference] {
                    opt.scale_lr([&"c".to_string()], 0.1);
                }
                for step in 0..4 {
                    for opt in [&mut opt, &mut reference] {
                        opt.step_with(|n, v| grad(n, v, step), 0.01).unwrap();
                    }
                }
                let (fs, rs) = (opt.state().unwrap(), reference.state().unwrap());
                for (name, var) in &vars {
                    let at = format!("{path:?} {kind:?} {name}");
                    assert_eq!(bits(var.as_tensor()), bits(ref_vars[name].as_tensor()), "{at}");
                    assert_eq!(bits(&fs[name].m), bits(&rs[name].m), "{at} m");
                    assert_eq!(bits(&fs[name].v), bits(&rs[name].v), "{at} v");
                    assert_eq!(fs[name].m.dims(), var.dims());
                }
                // A restore (as from a checkpoint) carries on exactly.
                let mut resumed = Adam::new(cfg, vars.clone()).unwrap().with_path(path).unwrap();
                resumed.scale_lr([&"c".to_string()], 0.1);
                resumed.restore(fs, opt.step_count()).unwrap();
                resumed.step_with(|n, v| grad(n, v, 5), 0.01).unwrap();
                reference.step_with(|n, v| grad(n, v, 5), 0.01).unwrap();
                for (name, var) in &vars {
                    let at = format!("{path:?} {kind:?} {name} resumed");
                    assert_eq!(bits(var.as_tensor()), bits(ref_vars[name].as_tensor()), "{at}");
                }
            }
        }
    }

    #[test]
    fn the_cpu_default_is_the_in_place_path() {
        let vars = params();
        let mut opt = Adam::new(AdamConfig::default(), vars.clone()).unwrap();
        assert_eq!(opt.path, UpdatePath::InPlace);
        let before = in_place::kernel_calls();
        opt.step_with(|n, v| grad(n, v, 0), 0.01).unwrap();
        // Two passes per parameter (other tests may run kernels meanwhile, never fewer).
        assert!(in_place::kernel_calls() >= before + 2 * vars.len());
    }

    #[test]
    fn moments_of_another_shape_are_refused() {
        let vars = params();
        let mut opt = Adam::new(AdamConfig::default(), vars.clone()).unwrap();
        let mut state = opt.state().unwrap();
        let wrong = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
        state.insert(
            "a".into(),
            Moments {
                m: wrong.clone(),
                v: wrong,
            },
        );
        let err = opt.restore(state, 3).unwrap_err().to_string();
        assert!(
            err.contains("moments of `a` are [4], the parameter is [3, 5]"),
            "{err}"
        );
    }
}
