//! `bench curves`: whether two runs of one training config follow the same loss curve, e.g.
//! the CPU in f32 against CUDA in f32 or bf16 (`scripts/gpu-check.sh`).
//!
//! Two runs on different devices never agree bit for bit (summation orders differ), and a bf16
//! run rounds every activation to 8 significant bits (relative error up to 2^-9 ≈ 0.2 % per
//! rounding). So the first step's loss — the same weights on the same batch — is compared
//! alone, and the rest as means over windows of steps, which average out the batch-to-batch
//! noise that a slightly different trajectory brings.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::train::plot::read_curves;

/// Mean train loss of both runs over one window of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// First step of the window.
    pub first_step: u64,
    /// Last step of the window.
    pub last_step: u64,
    /// The reference run's mean loss.
    pub reference: f64,
    /// The candidate run's mean loss.
    pub candidate: f64,
}

impl Window {
    /// |candidate − reference| / |reference|.
    pub fn rel_diff(&self) -> f64 {
        rel_diff(self.reference, self.candidate)
    }
}

fn rel_diff(reference: f64, candidate: f64) -> f64 {
    (candidate - reference).abs() / reference.abs().max(1e-12)
}

/// How two train-loss curves compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveComparison {
    /// Steps in each curve.
    pub steps: usize,
    /// The first step's loss: reference, candidate.
    pub first: (f64, f64),
    /// Window means, in step order.
    pub windows: Vec<Window>,
}

impl CurveComparison {
    /// The first step's relative difference.
    pub fn first_rel_diff(&self) -> f64 {
        rel_diff(self.first.0, self.first.1)
    }

    /// The window with the largest relative difference.
    pub fn worst_window(&self) -> Option<&Window> {
        self.windows
            .iter()
            .max_by(|a, b| a.rel_diff().total_cmp(&b.rel_diff()))
    }

    /// Whether the first step is within `first_tol` and every window within `window_tol`
    /// (relative).
    pub fn passes(&self, first_tol: f64, window_tol: f64) -> bool {
        self.first_rel_diff() <= first_tol && self.windows.iter().all(|w| w.rel_diff() <= window_tol)
    }
}

impl fmt::Display for CurveComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} steps; first step loss {:.5} vs {:.5} (rel diff {:.2e})",
            self.steps,
            self.first.0,
            self.first.1,
            self.first_rel_diff()
        )?;
        writeln!(
            f,
            "{:>13}  {:>10}  {:>10}  {:>9}",
            "steps", "reference", "candidate", "rel diff"
        )?;
        for w in &self.windows {
            writeln!(
                f,
                "{:>6}-{:<6}  {:>10.5}  {:>10.5}  {:>9.2e}",
                w.first_step,
                w.last_step,
                w.reference,
                w.candidate,
                w.rel_diff()
            )?;
        }
        Ok(())
    }
}

/// Compares two `(step, loss)` curves over the same steps, in windows of `window` steps.
pub fn compare_curves(
    reference: &[(f64, f64)],
    candidate: &[(f64, f64)],
    window: usize,
) -> Result<CurveComparison> {
    if reference.is_empty() {
        bail!("the reference run has no train_loss points");
    }
    if reference.len() != candidate.len() {
        bail!(
            "the runs logged different numbers of steps: {} and {}",
            reference.len(),
            candidate.len()
        );
    }
    if let Some((a, b)) = reference.iter().zip(candidate).find(|(a, b)| a.0 != b.0) {
        bail!("the runs' steps differ: step {} against step {}", a.0, b.0);
    }
    let windows = reference
        .chunks(window.max(1))
        .zip(candidate.chunks(window.max(1)))
        .map(|(a, b)| {
            let mean = |c: &[(f64, f64)]| c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64;
            Window {
                first_step: a[0].0 as u64,
                last_step: a[a.len() - 1].0 as u64,
                reference: mean(a),
                candidate: mean(b),
            }
        })
        .collect();
    Ok(CurveComparison {
        steps: reference.len(),
        first: (reference[0].1, candidate[0].1),
        windows,
    })
}

/// The train-loss curve of a run: its `metrics.jsonl`, or a run folder holding one.
pub fn read_train_loss(run: &Path) -> Result<Vec<(f64, f64)>> {
    let file = if run.is_dir() {
        run.join("metrics.jsonl")
    } else {
        run.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let (mut by_kind, _) = read_curves(&text);
    Ok(by_kind.remove("train_loss").unwrap_or_default())
}

/// Compares the train-loss curves of two runs (folders or `metrics.jsonl` files).
pub fn compare_runs(reference: &Path, candidate: &Path, window: usize) -> Result<CurveComparison> {
    let a = read_train_loss(reference)?;
    let b = read_train_loss(candidate)?;
    compare_curves(&a, &b, window)
        .with_context(|| format!("comparing {} with {}", reference.display(), candidate.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(values: &[f64]) -> Vec<(f64, f64)> {
        values.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect()
    }

    #[test]
    fn window_means_and_relative_differences() {
        let a = curve(&[4.0, 2.0, 1.0, 1.0, 0.5]);
        let b = curve(&[4.04, 2.0, 1.1, 1.1, 0.5]);
        let c = compare_curves(&a, &b, 2).unwrap();
        assert_eq!(c.steps, 5);
        assert_eq!(c.first, (4.0, 4.04));
        assert!((c.first_rel_diff() - 0.01).abs() < 1e-12);
        let spans: Vec<_> = c.windows.iter().map(|w| (w.first_step, w.last_step)).collect();
        assert_eq!(spans, [(0, 1), (2, 3), (4, 4)]);
        assert!((c.windows[0].reference - 3.0).abs() < 1e-12);
        assert!((c.windows[0].candidate - 3.02).abs() < 1e-12);
        assert!((c.windows[1].rel_diff() - 0.1).abs() < 1e-9);
        assert_eq!(c.worst_window().unwrap().first_step, 2);
        assert!(c.passes(0.01 + 1e-9, 0.1 + 1e-9));
        assert!(!c.passes(0.01 + 1e-9, 0.09));
        assert!(!c.passes(0.009, 0.2));
    }

    #[test]
    fn curves_over_different_steps_are_refused() {
        let a = curve(&[1.0, 1.0]);
        let err = compare_curves(&a, &curve(&[1.0]), 1).unwrap_err().to_string();
        assert_eq!(err, "the runs logged different numbers of steps: 2 and 1");
        let shifted = vec![(0.0, 1.0), (2.0, 1.0)];
        let err = compare_curves(&a, &shifted, 1).unwrap_err().to_string();
        assert_eq!(err, "the runs' steps differ: step 1 against step 2");
        let err = compare_curves(&[], &[], 1).unwrap_err().to_string();
        assert_eq!(err, "the reference run has no train_loss points");
    }

    #[test]
    fn a_run_folder_is_read_through_its_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"kind\":\"train_loss\",\"step\":1,\"epoch\":0,\"value\":2.5,\"lr\":0.1,\"samples_per_s\":3}\n\
             {\"kind\":\"val_loss\",\"step\":1,\"epoch\":0,\"value\":9.0,\"lr\":0.1,\"samples_per_s\":3}\n\
             {\"kind\":\"train_loss\",\"step\":0,\"epoch\":0,\"value\":3.5,\"lr\":0.1,\"samples_per_s\":3}\n",
        )
        .unwrap();
        assert_eq!(read_train_loss(dir.path()).unwrap(), [(0.0, 3.5), (1.0, 2.5)]);
        let err = read_train_loss(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
