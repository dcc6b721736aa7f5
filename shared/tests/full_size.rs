//! The default config builds the original's full-size model, name for name and shape for shape.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device};
use caption_model::weights::{var_builder, ShapeRecorder, LM_HEAD};
use caption_model::{CaptionModel, ModelConfig};
use common::fixture;

#[test]
fn default_config_matches_full_size_state_dict() {
    let text = std::fs::read_to_string(fixture("original/config.yaml")).unwrap();
    let cfg = ModelConfig::from_str_any(&text).unwrap();
    assert_eq!(
        cfg,
        ModelConfig::default(),
        "config.yaml's model section is our default"
    );

    let recorder = ShapeRecorder::default();
    CaptionModel::new(&cfg, var_builder(recorder.clone(), DType::F32, &Device::Cpu)).unwrap();
    let mut ours = recorder.shapes();
    assert!(
        !ours.contains_key(LM_HEAD),
        "lm_head is tied to wte, not a separate tensor"
    );
    let n_params: usize = ours.values().map(|s| s.iter().product::<usize>()).sum();
    let n_trainable: usize = ours
        .iter()
        .filter(|(k, _)| cfg.is_trainable(k))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    // The original's state_dict also lists the tied head under its own name.
    ours.insert(
        LM_HEAD.into(),
        ours["text_generator.lm.transformer.wte.weight"].clone(),
    );

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("fixtures/seed/full_size_shapes.json")).unwrap(),
    )
    .unwrap();
    let expected: BTreeMap<String, Vec<usize>> = serde_json::from_value(json["state_dict"].clone()).unwrap();
    let trainable: BTreeMap<String, Vec<usize>> = serde_json::from_value(json["trainable"].clone()).unwrap();
    assert_eq!(expected.len(), 536);
    assert_eq!(ours, expected, "names and shapes equal the original's state_dict");
    assert_eq!(n_params, 250_922_264);
    assert_eq!(n_params as u64, json["n_params"].as_u64().unwrap());
    assert_eq!(n_trainable, 39_026_456);
    let mut our_trainable: Vec<String> = ours.keys().filter(|k| cfg.is_trainable(k)).cloned().collect();
    our_trainable.sort();
    assert_eq!(our_trainable.len(), 188);
    assert_eq!(our_trainable, trainable.keys().cloned().collect::<Vec<_>>());
}
