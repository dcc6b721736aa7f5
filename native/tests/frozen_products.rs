//! Products with a frozen weight compute the input's gradient only (`backend::frozen`): every
//! trainable tensor's gradient is bit-identical to candle's plain product path, whichever parts
//! are frozen, and a tower or LM head that is trained still gets its gradient. One test in its
//! own binary: it switches the process-wide path.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use caption_model::backend::set_frozen_products;
use caption_model::{caption_loss, CaptionModel};

/// Each trainable tensor's gradient (as f64 values), where one reaches it, for `overrides` of `configs/synth.yaml`.
fn gradients(overrides: &[&str]) -> BTreeMap<String, Vec<f64>> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let (mcfg, model, params) = common::fresh_synth_model(&overrides, 3, DType::F32);
    let dev = Device::Cpu;
    let size = mcfg.vision_config().unwrap().image_size;
    // The same pixels for both paths (candle's `randn` draws from an unseeded generator).
    let n = 2 * 2 * 3 * size * size;
    let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let pixels = Tensor::from_vec(values, (2, 2, 3, size, size), &dev).unwrap();
    let mask = CaptionModel::frame_mask(&[2, 1], 2, &dev).unwrap();
    let (tokens, tmask) = common::two_captions(DType::F32);
    let (_, logits) = model.forward(&pixels, &mask, &tokens, &tmask).unwrap();
    let grads = caption_loss(&logits, &tokens).unwrap().backward().unwrap();
    // A parameter the loss does not reach (CLIP's post-layernorm: the pooled output is not
    // used) has no gradient on either path; the key sets are compared below.
    params
        .vars()
        .iter()
        .filter_map(|(name, var)| {
            let g = grads.get(var.as_tensor())?;
            let v = g.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            Some((name.clone(), v.to_vec1::<f64>().unwrap()))
        })
        .collect()
}

#[test]
fn trainable_gradients_are_bit_identical_with_frozen_products() {
    let settings: [(&str, &[&str], &str); 3] = [
        // The tower frozen, GPT-2 and its head trained (configs/synth.yaml).
        ("synth", &[], "text_generator.lm.transformer.wte.weight"),
        // GPT-2 frozen (the original's default) with the tower trained: its gradients must
        // still arrive through the frozen GPT-2's products.
        (
            "frozen GPT-2, trained tower",
            &[
                "model.vision.trainable=true",
                "model.text.trainable=false",
                "model.text.trainable_lm_head=false",
            ],
            "vision_encoder.vision.vision_model.encoder.layers.0.mlp.fc1.weight",
        ),
        // GPT-2 frozen, its LM head trained (tied: the token embedding).
        (
            "frozen GPT-2, trained head",
            &["model.text.trainable=false", "model.text.trainable_lm_head=true"],
            "text_generator.lm.transformer.wte.weight",
        ),
    ];
    for (what, overrides, must_train) in settings {
        set_frozen_products(false);
        let plain = gradients(overrides);
        set_frozen_products(true);
        let frozen = gradients(overrides);
        assert!(
            plain.contains_key(must_train),
            "{what}: `{must_train}` is not trained"
        );
        assert!(
            plain[must_train].iter().any(|g| *g != 0.0),
            "{what}: `{must_train}`"
        );
        assert_eq!(
            plain.keys().collect::<Vec<_>>(),
            frozen.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (name, g) in &plain {
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(g), bits(&frozen[name]), "{what}: `{name}`");
        }
        println!("{what}: {} tensors with a gradient, all identical", plain.len());
    }
}
