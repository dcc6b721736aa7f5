use super::toy::{bigram, logits, ToyModel};
use super::{
    generate, max_and_sum_exp, max_and_sum_exp_plain, sequence_log_prob, DecodeOptions, LogNorm, StepModel,
    Strategy, TopTokens,
};
use crate::{Error, Result};

fn opts(strategy: Strategy, max_length: usize) -> DecodeOptions {
    DecodeOptions {
        strategy,
        max_length,
        bos: 3,
        eos: 0,
    }
}

fn nucleus(temperature: f32, top_p: f32, top_k: Option<usize>) -> Strategy {
    Strategy::Nucleus {
        temperature,
        top_p,
        top_k,
        seed: 1,
    }
}

#[test]
fn invalid_options_are_decode_errors_before_any_step() {
    // Each refused for its own reason, named in the message.
    let bad = [
        (opts(Strategy::Greedy, 0), "max_length"),
        (opts(Strategy::Beam { width: 2 }, 0), "max_length"),
        (opts(Strategy::Beam { width: 0 }, 5), "beam width"),
        (opts(nucleus(1.0, 0.0, None), 5), "top_p"),
        (opts(nucleus(1.0, -0.1, None), 5), "top_p"),
        (opts(nucleus(1.0, 1.01, None), 5), "top_p"),
        (opts(nucleus(1.0, f32::NAN, None), 5), "top_p"),
        (opts(nucleus(0.0, 0.9, None), 5), "temperature"),
        (opts(nucleus(-1.0, 0.9, None), 5), "temperature"),
        (opts(nucleus(f32::NAN, 0.9, None), 5), "temperature"),
        (opts(nucleus(f32::INFINITY, 0.9, None), 5), "temperature"),
        (opts(nucleus(1.0, 0.9, Some(0)), 5), "top_k"),
    ];
    for (o, word) in &bad {
        let mut model = ToyModel::new(2, logits(|_, _| vec![0.0, 1.0]));
        for result in [o.validate(), generate(&mut model, o).map(|_| ())] {
            match result {
                Err(Error::Decode(m)) => assert!(m.contains(word), "{o:?}: {m}"),
                other => panic!("{o:?}: {other:?}"),
            }
        }
        assert!(model.steps.is_empty(), "{o:?}");
    }
    let good = [
        opts(Strategy::Greedy, 1),
        opts(Strategy::Beam { width: 1 }, 1),
        opts(nucleus(1e-3, 1.0, Some(1)), 1),
        opts(nucleus(5.0, 1e-9, None), 1),
    ];
    for o in &good {
        assert!(o.validate().is_ok(), "{o:?}");
    }
}

/// A model of two rows whose steps return the given rows and which cannot select rows.
struct Broken(fn(usize) -> Vec<Vec<f32>>);

impl StepModel for Broken {
    fn rows(&self) -> usize {
        2
    }
    async fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        Ok((self.0)(tokens.len()))
    }
    fn select_rows(&mut self, _: &[usize]) -> Result<()> {
        Err(Error::Config("cannot select".into()))
    }
}

#[test]
fn malformed_logits_and_model_errors_surface() {
    let strategies = [
        Strategy::Greedy,
        Strategy::Beam { width: 2 },
        nucleus(1.0, 0.9, None),
    ];
    for s in strategies {
        let short = generate(&mut Broken(|n| vec![vec![0.0, 1.0]; n - 1]), &opts(s.clone(), 3));
        assert!(
            matches!(&short, Err(Error::Decode(m)) if m.contains("model returned") && m.contains("tokens")),
            "{s:?}: {short:?}"
        );
        let empty = generate(&mut Broken(|n| vec![Vec::new(); n]), &opts(s.clone(), 3));
        assert!(
            matches!(&empty, Err(Error::Decode(m)) if m.contains("row of length 0")),
            "{s:?}: {empty:?}"
        );
        // Row 0 ends at once and row 1 goes on (beam: both expand), so the rows must be
        // selected, and that model error comes back as it is.
        let rows = |n| {
            (0..n)
                .map(|i| {
                    if i % 2 == 0 {
                        vec![9.0, 0.0, 0.0]
                    } else {
                        vec![0.0, 9.0, 0.0]
                    }
                })
                .collect()
        };
        let model_error = generate(&mut Broken(rows), &opts(s.clone(), 3));
        assert!(matches!(model_error, Err(Error::Config(_))), "{s:?}");
    }
}

#[test]
fn sequence_log_prob_sums_the_model_log_probs() {
    // eos 0, tokens 1 and 2, bos 3.
    let probs = vec![
        vec![0.2, 0.4, 0.4, 0.0],
        vec![0.3, 0.1, 0.6, 0.0],
        vec![0.5, 0.25, 0.25, 0.0],
        vec![0.1, 0.6, 0.3, 0.0],
    ];
    let mut model = ToyModel::new(3, bigram(probs.clone()));
    let seqs = vec![vec![1, 2, 0], vec![], vec![2]];
    let lp = sequence_log_prob(&mut model, 3, &seqs).unwrap();
    assert!((lp[0] - (0.6f64 * 0.6 * 0.5).ln()).abs() < 1e-6);
    assert_eq!(lp[1], 0.0);
    assert!((lp[2] - 0.3f64.ln()).abs() < 1e-6);
    // The empty row leaves before the first step, the single-token row after it.
    assert_eq!(model.steps, vec![2, 1, 1]);
    assert_eq!(model.selects, vec![vec![0, 2], vec![0]]);
    assert_eq!(model.history(0), vec![3, 1, 2]);
    // Greedy follows 1 (.6), 2 (.6), eos (.5) here and reports the same sum.
    let greedy = generate(
        &mut ToyModel::new(1, bigram(probs.clone())),
        &opts(Strategy::Greedy, 5),
    )
    .unwrap();
    assert_eq!(greedy[0].tokens, vec![1, 2, 0]);
    assert_eq!(greedy[0].score, lp[0] as f32);

    let mut model = ToyModel::new(1, bigram(probs.clone()));
    let outside = sequence_log_prob(&mut model, 3, &[vec![7]]);
    assert!(
        matches!(&outside, Err(Error::Decode(m)) if m.contains("token 7 is outside")),
        "{outside:?}"
    );
    let mut model = ToyModel::new(2, bigram(probs));
    let rows = sequence_log_prob(&mut model, 3, &[vec![1]]);
    assert!(
        matches!(&rows, Err(Error::Decode(m)) if m.contains("1 sequences for a model holding 2 rows")),
        "{rows:?}"
    );
}

/// The one-pass top-k keeps exactly what a full sort keeps: higher logit first, the lower index
/// on ties, NaN never; rows with many ties, NaN and infinities.
#[test]
fn top_tokens_by_scan_equal_a_full_sort() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for case in 0..200 {
        let len = 1 + case % 97;
        let row: Vec<f32> = (0..len)
            .map(|_| match rng.random_range(0..10) {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                // Few distinct values, so ties are common.
                _ => rng.random_range(-3..3) as f32 * 0.5,
            })
            .collect();
        let mut sorted: Vec<(u32, f32)> = row
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.is_nan())
            .map(|(i, &x)| (i as u32, x))
            .collect();
        sorted.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        for k in [0, 1, 2, 5, 10, 32, 33, 100] {
            let want: Vec<(u32, f32)> = sorted.iter().copied().take(k).collect();
            let got = TopTokens::of_row(&row, k).best;
            let bits = |v: &[(u32, f32)]| v.iter().map(|&(i, x)| (i, x.to_bits())).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "case {case}, k {k}, row {row:?}");
        }
    }
}

/// The normaliser against log-sum-exp in f64 with libm's exp: within 1e-6 on logits rows of
/// vocabulary size, with NaN skipped and an infinite maximum taken as the softmax's limit.
#[test]
fn the_log_normaliser_matches_an_exact_log_sum_exp() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let exact = |row: &[f32]| {
        let max = row
            .iter()
            .filter(|x| !x.is_nan())
            .fold(f64::NEG_INFINITY, |m, &x| m.max(x.into()));
        let sum: f64 = row
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| (f64::from(x) - max).exp())
            .sum();
        max + sum.ln()
    };
    for (len, spread) in [(50_257, 4.0), (50_257, 30.0), (13, 1.0), (1, 1.0)] {
        let mut row: Vec<f32> = (0..len)
            .map(|_| rng.random_range(-spread..spread) + 12.0)
            .collect();
        if len > 2 {
            row[1] = f32::NAN;
        }
        let (max, lse) = LogNorm::new(&row).parts();
        assert_eq!(
            max,
            row.iter()
                .filter(|x| !x.is_nan())
                .fold(f64::NEG_INFINITY, |m, &x| m.max(x.into()))
        );
        assert!(
            (lse - exact(&row)).abs() < 1e-6,
            "{len} logits: {lse} vs {}",
            exact(&row)
        );
        assert!(LogNorm::new(&row).log_prob(f32::NAN).is_infinite());
    }
    let (max, lse) = LogNorm::new(&[f32::INFINITY, 1.0, f32::INFINITY]).parts();
    assert_eq!((max, lse), (f64::INFINITY, 2f64.ln()));
    let (max, _) = LogNorm::new(&[f32::NAN, f32::NAN]).parts();
    assert_eq!(max, f64::NEG_INFINITY);
}

/// The normaliser's sums compiled for this CPU's widest vectors give the portable code's bits,
/// on rows with NaN, infinities, ties and lengths around the lane counts.
#[test]
fn the_log_normaliser_has_the_same_bits_on_every_instruction_set() {
    use rand::{Rng, SeedableRng};
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    if !wide {
        // The dispatch then runs the portable code itself; the max is still checked below.
        crate::test_skip::skip("no AVX2 here, so the normaliser's wide copies are untested");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for len in [0, 1, 7, 8, 15, 16, 17, 33, 1000, 50_257] {
        for special in [None, Some(f32::NAN), Some(f32::INFINITY), Some(f32::NEG_INFINITY)] {
            let mut row: Vec<f32> = (0..len).map(|_| rng.random_range(-20.0..20.0)).collect();
            if let (Some(v), true) = (special, len > 3) {
                row[len / 2] = v;
                row[len - 1] = v;
            }
            let (max, sum) = max_and_sum_exp(&row);
            let (want_max, want_sum) = max_and_sum_exp_plain(&row);
            assert_eq!(
                (max.to_bits(), sum.to_bits()),
                (want_max.to_bits(), want_sum.to_bits()),
                "{len} logits, {special:?}"
            );
            let serial = row
                .iter()
                .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
            assert_eq!(max, serial, "{len} logits, {special:?}");
        }
    }
}
