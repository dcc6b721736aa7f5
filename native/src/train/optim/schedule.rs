//! Learning-rate schedules as the original defines them (stepped every batch).

/// A schedule over `total` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Linear warmup, then constant (the original's "Linear": not a decay).
    Linear {
        /// Peak learning rate.
        base: f64,
        /// Warmup steps.
        warmup: u64,
    },
    /// Linear warmup, then a half cosine down to 0 over the remaining steps.
    Cosine {
        /// Peak learning rate.
        base: f64,
        /// Warmup steps.
        warmup: u64,
        /// All steps.
        total: u64,
    },
}

impl Schedule {
    /// From the config's scheduler section: `warmup_steps`, else ⌊warmup_ratio · total⌋.
    pub fn from_config(cfg: &caption_model::config::OptimizerConfig, total: u64) -> anyhow::Result<Self> {
        let s = &cfg.scheduler;
        let warmup = match (s.warmup_steps, s.warmup_ratio) {
            (Some(w), _) => w,
            (None, Some(r)) => (r * total as f64).floor() as u64,
            (None, None) => 0,
        };
        match s.name.as_str() {
            "Linear" => Ok(Schedule::Linear { base: cfg.lr, warmup }),
            "CosineAnnealing" => Ok(Schedule::Cosine {
                base: cfg.lr,
                warmup,
                total,
            }),
            other => anyhow::bail!("unknown scheduler `{other}` (Linear or CosineAnnealing)"),
        }
    }

    /// The learning rate for the update made at `step` (0-based, before the scheduler steps).
    pub fn lr(&self, step: u64) -> f64 {
        let warm = |base: f64, warmup: u64| {
            if warmup == 0 {
                base
            } else {
                base * (step as f64 / warmup as f64).min(1.0)
            }
        };
        match *self {
            Schedule::Linear { base, warmup } => warm(base, warmup),
            Schedule::Cosine { base, warmup, total } => {
                if step < warmup {
                    warm(base, warmup)
                } else {
                    let span = total.saturating_sub(warmup).max(1) as f64;
                    let progress = ((step - warmup) as f64 / span).min(1.0);
                    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_is_warmup_then_constant() {
        let s = Schedule::Linear {
            base: 1e-4,
            warmup: 10,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-5).abs() < 1e-18);
        assert_eq!(s.lr(10), 1e-4);
        assert_eq!(s.lr(10_000), 1e-4);
    }

    #[test]
    fn cosine_warms_up_then_falls_to_zero() {
        let s = Schedule::Cosine {
            base: 1.0,
            warmup: 10,
            total: 110,
        };
        assert!((s.lr(5) - 0.5).abs() < 1e-12);
        assert!((s.lr(10) - 1.0).abs() < 1e-12);
        assert!((s.lr(60) - 0.5).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12);
    }

    #[test]
    fn warmup_ratio_is_floored() {
        let mut cfg = caption_model::config::OptimizerConfig::default();
        cfg.scheduler.warmup_ratio = Some(0.1);
        assert_eq!(
            Schedule::from_config(&cfg, 95).unwrap(),
            Schedule::Linear {
                base: 1e-4,
                warmup: 9
            }
        );
        cfg.scheduler.warmup_steps = Some(3);
        assert_eq!(
            Schedule::from_config(&cfg, 95).unwrap(),
            Schedule::Linear {
                base: 1e-4,
                warmup: 3
            }
        );
    }
}
