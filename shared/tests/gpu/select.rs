//! Token selection on the device: greedy picks, top-k rows, nucleus candidates.

use caption_model::decode::{Cut, Nucleus, TopTokens};

use super::*;

#[test]
fn greedy_pick_with_log_sum_exp() {
    let Some(d) = dev() else { return };
    let (rows, vocab) = (3, 50257);
    let mut v = rand_vec(rows * vocab, 10.0, 1000);
    // Row 0: a tie at 7 and 40000 (first wins); row 1: maximum at the last index.
    v[7] = 20.0;
    v[40000] = 20.0;
    v[vocab + vocab - 1] = 30.0;
    let g = GpuTensor::from_vec(&v, &[rows, vocab], &d).unwrap();
    // Per row: max, lse, tempered mass, best id, best value.
    let top = g.top_k_rows(1, 1.0).unwrap().to_vec().unwrap();
    for r in 0..rows {
        let row = &v[r * vocab..(r + 1) * vocab];
        let (mut bi, mut bv) = (0, row[0]);
        for (j, &x) in row.iter().enumerate() {
            if x > bv {
                (bi, bv) = (j, x);
            }
        }
        let lse = bv as f64 + row.iter().map(|&x| ((x - bv) as f64).exp()).sum::<f64>().ln();
        let got = &top[5 * r..5 * r + 5];
        assert_eq!(got[3] as usize, bi, "row {r}");
        assert_eq!((got[0], got[4]), (bv, bv), "row {r} max");
        assert!(
            (got[1] as f64 - lse).abs() < 1e-4,
            "row {r} lse {} vs {lse}",
            got[1]
        );
    }
    assert_eq!(top[3], 7.0);
    assert_eq!(top[5 + 3] as usize, vocab - 1);
}

#[test]
fn top_k_rows_rank_like_the_host() {
    let Some(d) = dev() else { return };
    let (rows, vocab, k) = (4, 50257, 10);
    // Few distinct values, so that ties are everywhere; row 2 has NaNs among its best; row 3
    // has only 5 non-NaN values.
    let mut v: Vec<f32> = rand_vec(rows * vocab, 10.0, 1001)
        .iter()
        .map(|x| (x * 0.5).round())
        .collect();
    v[2 * vocab + 3] = f32::NAN;
    v[2 * vocab + 9] = f32::NAN;
    for (j, x) in v[3 * vocab..].iter_mut().enumerate() {
        *x = if j < 5 { j as f32 } else { f32::NAN };
    }
    let g = GpuTensor::from_vec(&v, &[rows, vocab], &d).unwrap();
    let temperature = 0.7;
    let top = g.top_k_rows(k, temperature).unwrap().to_vec().unwrap();
    for r in 0..rows {
        let want = TopTokens::of_row(&v[r * vocab..(r + 1) * vocab], k);
        let row = &v[r * vocab..(r + 1) * vocab];
        let got = &top[r * (3 + 2 * k)..(r + 1) * (3 + 2 * k)];
        let (max, lse) = want.norm.parts();
        assert_eq!(got[0] as f64, max, "row {r} max");
        assert!(
            (got[1] as f64 - lse).abs() < 1e-4,
            "row {r} lse {} vs {lse}",
            got[1]
        );
        let tempered: f64 = row
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| ((f64::from(x) - max) / f64::from(temperature)).exp())
            .sum::<f64>()
            .ln();
        assert!(
            (f64::from(got[2]) - tempered).abs() < 1e-4,
            "row {r} tempered mass {} vs {tempered}",
            got[2]
        );
        let pairs: Vec<(u32, f32)> = got[3..]
            .chunks(2)
            .filter(|p| p[0] >= 0.0)
            .map(|p| (p[0] as u32, p[1]))
            .collect();
        assert_eq!(pairs, want.best, "row {r}");
    }
}

#[test]
fn nucleus_candidates_settle_peaked_rows_as_the_host_does() {
    let Some(d) = dev() else { return };
    let (rows, vocab) = (4, 50257);
    let mut v = rand_vec(rows * vocab, 2.0, 1002);
    // Rows 0 and 1 have a few tokens far ahead (a nucleus of 2 or 3 at p ≤ 0.95); rows 2 and 3
    // are flat, so their nucleus reaches past any candidates.
    for (r, j) in [(0, 17), (0, 40000), (0, 123), (1, 5), (1, 50256)] {
        v[r * vocab + j] = 14.0 + j as f32 * 1e-5;
    }
    let g = GpuTensor::from_vec(&v, &[rows, vocab], &d).unwrap();
    let cuts = [(1.0, 0.9, None), (0.6, 0.95, None), (1.3, 0.5, Some(40))];
    for (temperature, top_p, top_k) in cuts {
        let cut = Cut {
            temperature,
            top_p,
            top_k,
        };
        let settled = pollster::block_on(g.nucleus_from_best(&cut)).unwrap();
        let got = pollster::block_on(g.nucleus_on_device(&cut)).unwrap();
        for r in 0..rows {
            let want = Nucleus::of_row(&v[r * vocab..(r + 1) * vocab], &cut);
            // The candidates settle the peaked rows, and every row under a top-k cut.
            let settles = r < 2 || top_k.is_some();
            assert_eq!(settled[r].is_some(), settles, "row {r}, {cut:?}");
            if r < 2 {
                assert!(want.kept.len() <= 3, "row {r}: {} kept", want.kept.len());
            }
            // Kept tokens and weights come from the same logits: exactly the host's.
            assert_eq!(got[r].kept, want.kept, "row {r}, {cut:?}");
            let (a, b) = (got[r].norm.parts(), want.norm.parts());
            assert!(
                a.0 == b.0 && (a.1 - b.1).abs() < 1e-4,
                "row {r} normaliser {a:?} vs {b:?}"
            );
        }
    }
}
