//! Checks `native::metrics` against the reference outputs in `shared/metrics/expected.json`.

use std::collections::BTreeMap;

use native::metrics::hf_bleu::HfBleu;
use native::metrics::ptb::ptb_tokenize_batch;
use native::metrics::{original_scores, score_case, score_cases_json, CaseScores};
use serde::Serialize;
use serde_json::{json, Value};

const CASES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/metrics/cases.json"
));
const EXPECTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/metrics/expected.json"
));

/// Largest absolute difference allowed; the reference floats are reproduced far closer than this.
const TOL: f64 = 1e-12;

/// `x` printed as JSON and parsed back, so it goes through the same (not correctly rounded)
/// float parser as the fixture: an exact reproduction then compares equal bit for bit.
fn reparsed(x: f64) -> f64 {
    serde_json::Number::from_f64(x).map_or(x, |n| serde_json::from_str(&n.to_string()).unwrap_or(x))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is valid JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn nested_strings(v: &Value) -> Vec<Vec<String>> {
    v.as_array().expect("array").iter().map(strings).collect()
}

/// Largest difference seen per metric name, over all cases.
type Diffs = BTreeMap<String, f64>;

/// Compares one case's numbers with the fixture, failing on any difference beyond [`TOL`].
struct Checker<'a> {
    case: &'a str,
    diffs: &'a mut Diffs,
}

impl Checker<'_> {
    fn num(&mut self, name: &str, expected: &Value, actual: f64) {
        let want = expected
            .as_f64()
            .unwrap_or_else(|| panic!("{}: {name}: not a number", self.case));
        let d = (want - reparsed(actual)).abs();
        assert!(
            d <= TOL,
            "{}: {name}: expected {want:e}, got {actual:e}",
            self.case
        );
        let slot = self.diffs.entry(name.to_string()).or_insert(0.0);
        *slot = slot.max(d);
    }

    fn nums(&mut self, name: &str, expected: &Value, actual: &[f64]) {
        let want = expected.as_array().expect("array");
        assert_eq!(want.len(), actual.len(), "{}: {name}: length", self.case);
        for (e, a) in want.iter().zip(actual) {
            self.num(name, e, *a);
        }
    }

    fn int(&self, name: &str, expected: &Value, actual: usize) {
        assert_eq!(expected.as_u64(), Some(actual as u64), "{}: {name}", self.case);
    }

    /// The tokenised lists must equal the fixture's exactly.
    fn tokens<C: Serialize, R: Serialize>(&self, e: &Value, cands: &C, refs: &R) {
        let want = (&e["tokenized_candidates"], &e["tokenized_references"]);
        assert_eq!(want, (&json!(cands), &json!(refs)), "{}: tokens", self.case);
    }

    fn hf(&mut self, n: &str, e: &Value, actual: &Result<HfBleu, String>) {
        if let Some(err) = e.get("error") {
            assert_eq!(
                actual.as_ref().err().map(String::as_str),
                err.as_str(),
                "{}: {n}",
                self.case
            );
            return;
        }
        let b = actual
            .as_ref()
            .unwrap_or_else(|err| panic!("{}: {n}: unexpected {err}", self.case));
        self.num(&format!("{n}.bleu"), &e["bleu"], b.bleu);
        self.nums(&format!("{n}.precisions"), &e["precisions"], &b.precisions);
        self.num(
            &format!("{n}.brevity_penalty"),
            &e["brevity_penalty"],
            b.brevity_penalty,
        );
        self.num(&format!("{n}.length_ratio"), &e["length_ratio"], b.length_ratio);
        self.int(
            "translation_length",
            &e["translation_length"],
            b.translation_length,
        );
        self.int("reference_length", &e["reference_length"], b.reference_length);
    }

    fn coco(&mut self, e: &Value, s: &CaseScores) {
        let c = &s.coco;
        self.tokens(e, &c.tokenized_candidates, &c.tokenized_references);
        for k in 0..4 {
            let name = format!("Bleu_{}", k + 1);
            self.num(&name, &e[&name], c.bleu.scores[k]);
            self.nums(
                &format!("per_image.{name}"),
                &e["per_image"][&name],
                &c.bleu.per_image[k],
            );
        }
        self.int("bleu_testlen", &e["bleu_testlen"], c.bleu.testlen);
        self.int("bleu_reflen_closest", &e["bleu_reflen_closest"], c.bleu.reflen);
        self.num("ROUGE_L", &e["ROUGE_L"], c.rouge_l);
        self.nums(
            "per_image.ROUGE_L",
            &e["per_image"]["ROUGE_L"],
            &c.rouge_l_per_image,
        );
        self.num("CIDEr", &e["CIDEr"], c.cider);
        self.nums("per_image.CIDEr", &e["per_image"]["CIDEr"], &c.cider_per_image);
        assert!(c.meteor.is_none(), "METEOR is not computed");
    }

    fn rouge_score(&mut self, e: &Value, s: &CaseScores) {
        let r = &s.rouge_score;
        self.tokens(e, &r.tokenized_candidates, &r.tokenized_references);
        self.num("rouge_score.mean_fmeasure", &e["mean_fmeasure"], r.mean_fmeasure);
        let per = e["per_image"].as_array().expect("per_image");
        assert_eq!(
            per.len(),
            r.per_image.len(),
            "{}: rouge per_image length",
            self.case
        );
        for (want, got) in per.iter().zip(&r.per_image) {
            self.num("rouge_score.precision", &want["precision"], got.precision);
            self.num("rouge_score.recall", &want["recall"], got.recall);
            self.num("rouge_score.fmeasure", &want["fmeasure"], got.fmeasure);
        }
    }

    fn hf_block(&mut self, e: &Value, s: &CaseScores) {
        let h = &s.hf_bleu;
        self.tokens(e, &h.tokenized_candidates, &h.tokenized_references);
        self.hf("max_order_1", &e["max_order_1"], &h.max_order_1);
        self.hf("max_order_4", &e["max_order_4"], &h.max_order_4);
    }
}

#[test]
fn every_case_matches_the_reference_implementations() {
    let (cases, expected) = (parse(CASES), parse(EXPECTED));
    let (cases, expected) = (
        cases["cases"].as_array().expect("cases"),
        expected["cases"].as_array().expect("cases"),
    );
    assert_eq!(cases.len(), expected.len());
    let mut diffs = Diffs::new();
    for (input, e) in cases.iter().zip(expected) {
        let case = input["id"].as_str().expect("id");
        assert_eq!(e["id"].as_str(), Some(case));
        let refs = nested_strings(&input["references"]);
        let scores = score_case(&strings(&input["candidates"]), &refs).expect("valid case");
        let mut check = Checker {
            case,
            diffs: &mut diffs,
        };
        check.int("n_images", &e["n_images"], scores.n_images);
        check.coco(&e["pycocoevalcap"], &scores);
        check.hf_block(&e["hf_evaluate_bleu"], &scores);
        check.rouge_score(&e["rouge_score_rougeL"], &scores);
    }
    for (name, d) in &diffs {
        println!("max |diff| {name}: {d:e}");
    }
}

/// Fields the Rust side does not produce (METEOR needs Java; the bootstrap needs NumPy's RNG).
const NOT_PRODUCED: [&str; 2] = ["METEOR", "bootstrap_mid_fmeasure_seed0"];

/// Walks `expected`, requiring the same structure in `actual`; returns the largest numeric difference.
fn compare(path: &str, expected: &Value, actual: &Value) -> f64 {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .filter(|(k, _)| !NOT_PRODUCED.contains(&k.as_str()))
            .map(|(k, v)| compare(&format!("{path}.{k}"), v, a.get(k).unwrap_or(&Value::Null)))
            .fold(0.0, f64::max),
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: length");
            e.iter()
                .zip(a)
                .enumerate()
                .map(|(i, (x, y))| compare(&format!("{path}[{i}]"), x, y))
                .fold(0.0, f64::max)
        }
        (Value::Number(e), Value::Number(a)) => {
            assert_eq!(e.is_f64(), a.is_f64(), "{path}: integer vs float ({e} vs {a})");
            let d = (e.as_f64().expect("number") - reparsed(a.as_f64().expect("number"))).abs();
            assert!(d <= TOL, "{path}: expected {e}, got {a}");
            d
        }
        _ => {
            assert_eq!(expected, actual, "{path}");
            0.0
        }
    }
}

#[test]
fn score_cases_json_matches_expected_field_by_field() {
    let actual = score_cases_json(CASES).expect("cases score");
    let expected = parse(EXPECTED);
    let max = compare("cases", &expected["cases"], &actual["cases"]);
    println!("max |diff| over all numbers: {max:e}");
}

#[test]
fn score_cases_json_rejects_bad_input() {
    assert!(score_cases_json("{").is_err());
    let mismatched = r#"{"cases": [{"id": "x", "candidates": ["a"], "references": []}]}"#;
    assert!(score_cases_json(mismatched).is_err());
    let no_refs = r#"{"cases": [{"id": "x", "candidates": ["a"], "references": [[]]}]}"#;
    assert!(score_cases_json(no_refs).is_err());
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn original_weighting_drops_empty_predictions_and_scales() {
    let refs = vec![
        owned(&["the cat sat on the mat"]),
        owned(&["a dog runs"]),
        owned(&["two birds fly"]),
    ];
    let cands = owned(&["the cat sat on the mat", "", "  \t "]);
    let s = original_scores(&cands, &refs).expect("valid");
    assert_eq!((s.kept, s.total), (1, 3));
    // The one kept caption equals its reference: every unweighted score is 1.
    for value in [s.bleu1, s.bleu4, s.rouge_l] {
        assert!((value - 1.0 / 3.0).abs() < 1e-15, "{value}");
    }
}

#[test]
fn original_weighting_equals_scores_of_the_kept_images_times_the_kept_share() {
    let refs = vec![
        owned(&["a man riding a wave on a surfboard", "a surfer rides a big wave"]),
        owned(&["a plate of food"]),
        owned(&["a giraffe standing next to a tree", "a tall giraffe near a tree"]),
        owned(&["a red bus on the street"]),
    ];
    let cands = owned(&[
        "a man riding a wave",
        " ",
        "a giraffe next to a tall tree",
        "a bus on a street",
    ]);
    let s = original_scores(&cands, &refs).expect("valid");
    let kept = [0, 2, 3];
    let sub = score_case(
        &kept.iter().map(|&i| cands[i].clone()).collect::<Vec<_>>(),
        &kept.iter().map(|&i| refs[i].clone()).collect::<Vec<_>>(),
    )
    .expect("valid");
    let w = 3.0 / 4.0;
    assert_eq!(s.bleu1, sub.hf_bleu.max_order_1.as_ref().expect("bleu").bleu * w);
    assert_eq!(s.bleu4, sub.hf_bleu.max_order_4.as_ref().expect("bleu").bleu * w);
    assert_eq!(s.rouge_l, sub.rouge_score.mean_fmeasure * w);
    assert!(s.bleu4 > 0.0 && s.bleu4 < s.bleu1);
}

#[test]
fn original_weighting_all_empty_is_zero() {
    let s = original_scores(&owned(&["", " "]), &[owned(&["a"]), owned(&["b"])]).expect("valid");
    assert_eq!(
        (s.bleu1, s.bleu4, s.rouge_l, s.kept, s.total),
        (0.0, 0.0, 0.0, 0, 2)
    );
}

/// Outputs of the real `stanford-corenlp-3.4.1.jar` (`-preserveLines -lowerCase`, punctuation dropped),
/// one `input => output` per line, tokenised as one batch (the last line is the file's end).
const PTB_EXAMPLES: &str = "\
cannot gonna gotta wanna 'tis => can not gon na got ta wan na 't is
he's they're I'd can't won't isn't y'all o'clock rock 'n' roll => he 's they 're i 'd ca n't wo n't is n't y' all o'clock rock 'n' roll
the kids' toys. the '90s => the kids toys the '90s
Mr. Smith saw Dr. Who at St. Paul's. => mr. smith saw dr. who at st. paul 's
No. 5 and No. H2o => no. 5 and no h2o
a b. The end => a b the end
3.5 1,000 10:30 3/4 5-year-old $5.00 50% #1 => 3.5 1,000 10:30 3/4 5-year-old $ 5.00 50 % # 1
a [box] {brace} <b>bold</b> &lt; &amp; :-) => a -lsb- box -rsb- -lcb- brace -rcb- <b> bold </b> < & :--rrb-
a -- b --- c ... d \u{2026} e \u{2014} f => a b c d e f
\u{a3}5 \u{20ac}5 \u{bd} sat.rocket dog!cat => # 5 $ 5 1/2 sat.rocket dog!cat
A.B.C => a.b.c";

#[test]
fn ptb_tokenizer_matches_corenlp_examples() {
    let pairs: Vec<(&str, &str)> = PTB_EXAMPLES
        .lines()
        .filter_map(|l| l.split_once(" => "))
        .collect();
    assert_eq!(pairs.len(), 11);
    let inputs: Vec<&str> = pairs.iter().map(|(i, _)| *i).collect();
    let out = ptb_tokenize_batch(&inputs);
    assert_eq!(out.len(), pairs.len());
    for ((input, want), got) in pairs.iter().zip(out) {
        assert_eq!(&got, want, "{input}");
    }
}
