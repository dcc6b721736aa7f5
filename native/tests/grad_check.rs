//! Gradients of a model trained from scratch (every tensor trainable, `configs/synth.yaml`)
//! against central finite differences in f64: the fixtures only cover the bridge's gradients,
//! this covers CLIP's and GPT-2's backward too.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use caption_model::{caption_loss, CaptionModel};

#[test]
fn every_part_backpropagates_like_finite_differences() {
    // The synthetic recipe freezes the tower; here it trains, so that its gradients are checked.
    let overrides = ["model.vision.trainable=true".to_string()];
    let (mcfg, model, params) = common::fresh_synth_model(&overrides, 1, DType::F64);
    let dev = Device::Cpu;
    let vars = params.vars();
    let size = mcfg.vision_config().unwrap().image_size;
    let pixels = Tensor::randn(0f64, 1.0, (2, 1, 3, size, size), &dev).unwrap();
    let mask = CaptionModel::frame_mask(&[1, 1], 1, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let (tokens, tmask) = common::two_captions(DType::F64);
    let loss = |m: &CaptionModel| -> Tensor {
        let (_, logits) = m.forward(&pixels, &mask, &tokens, &tmask).unwrap();
        caption_loss(&logits, &tokens).unwrap()
    };
    let grads = loss(&model).backward().unwrap();
    let probe = [
        "vision_encoder.vision.vision_model.embeddings.patch_embedding.weight",
        "vision_encoder.vision.vision_model.embeddings.position_embedding.weight",
        "vision_encoder.vision.vision_model.embeddings.class_embedding",
        "vision_encoder.vision.vision_model.pre_layrnorm.weight",
        "vision_encoder.vision.vision_model.encoder.layers.0.self_attn.q_proj.weight",
        "vision_encoder.vision.vision_model.encoder.layers.0.mlp.fc1.weight",
        "vision_encoder.vision.vision_model.encoder.layers.1.layer_norm2.bias",
        "resampler.latents",
        "resampler.layers.0.0.to_k.weight",
        "mapper._mapper.0.weight",
        "text_generator.lm.transformer.h.0.xattn_block.attn.to_kv.weight",
        "text_generator.lm.transformer.h.1.xattn_block.alpha_attn",
        "text_generator.lm.transformer.h.0.lm_block.attn.c_attn.weight",
        "text_generator.lm.transformer.h.1.lm_block.mlp.c_fc.weight",
        "text_generator.lm.transformer.wpe.weight",
        "text_generator.lm.transformer.wte.weight",
    ];
    let mut worst = 0f64;
    for name in probe {
        let var: &Var = vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not trainable"));
        let g = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name}"));
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let orig = var.as_tensor().copy().unwrap();
        let base = orig.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        // The elements with the largest gradients, where a wrong backward shows most.
        let mut idx: Vec<usize> = (0..g.len()).collect();
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        // A parameter the loss never reaches would pass below as 0 vs 0.
        assert!(g[idx[0]].abs() > 1e-6, "{name}: no gradient to check");
        for &i in idx.iter().take(3) {
            let eps = 1e-5;
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, orig.shape(), &dev).unwrap())
                    .unwrap();
                loss(&model).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&orig).unwrap();
            let rel = (numeric - g[i]).abs() / numeric.abs().max(g[i].abs()).max(1e-8);
            worst = worst.max(rel);
            assert!(
                rel < 1e-5,
                "{name}[{i}]: backward {} vs finite difference {numeric}",
                g[i]
            );
        }
    }
    println!(
        "worst relative difference {worst:.2e} over {} probes",
        probe.len() * 3
    );
}
