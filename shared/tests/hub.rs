//! Hugging Face hub-layout backbones reproduce transformers' outputs.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use caption_model::backend::ModelVb;
use caption_model::clip::{ClipVisionConfig, ClipVisionTransformer};
use caption_model::gpt2::{Gpt2, Gpt2Config};
use caption_model::nn::causal_bias;
use caption_model::weights::{
    clip_hub_to_original, gpt2_hub_to_original, read_safetensors, var_builder, TensorStore,
};
use caption_model::ModelConfig;
use common::{fixture, max_abs};

#[test]
fn clip_vision_from_whole_clip_model_file() {
    let dev = Device::Cpu;
    let cfg_text = std::fs::read_to_string(fixture("fixtures/hub/clip/config.json")).unwrap();
    let cfg = ClipVisionConfig::from_hf_json(&cfg_text).unwrap();
    assert_eq!(
        (cfg.hidden_size, cfg.num_hidden_layers, cfg.image_size),
        (64, 2, 64)
    );
    let all = read_safetensors(&fixture("fixtures/hub/clip/model.safetensors"), &dev).unwrap();
    assert!(
        all.keys().any(|k| k.starts_with("text_model.")),
        "the file is a whole CLIPModel"
    );
    let store = TensorStore::new(clip_hub_to_original(all));
    let vb = var_builder(store.clone(), DType::F32, &dev);
    let tower =
        ClipVisionTransformer::new(&cfg, ModelVb::candle(vb.pp("vision_encoder.vision.vision_model")))
            .unwrap();
    assert!(
        store.unused().is_empty(),
        "every vision tensor is used: {:?}",
        store.unused()
    );
    let io = read_safetensors(&fixture("fixtures/hub/clip/io.safetensors"), &dev).unwrap();
    let hidden = tower.forward(&io["pixel_values"]).unwrap();
    let d_hidden = max_abs(&hidden, &io["last_hidden_state"]);
    let d_pooled = max_abs(&tower.pooled(&hidden).unwrap(), &io["pooler_output"]);
    println!("CLIP last_hidden_state max abs diff {d_hidden:e}, pooler_output {d_pooled:e}");
    assert!(d_hidden < 1e-4 && d_pooled < 1e-4);
}

fn plain_text_config() -> ModelConfig {
    ModelConfig {
        enable_resampler_xattn: false,
        ..Default::default()
    }
}

fn load_gpt2(tensors: HashMap<String, Tensor>) -> (Gpt2, TensorStore) {
    let cfg_text = std::fs::read_to_string(fixture("fixtures/hub/gpt2/config.json")).unwrap();
    let cfg = Gpt2Config::from_hf_json(&cfg_text).unwrap();
    let store = TensorStore::new(gpt2_hub_to_original(tensors, &plain_text_config()));
    let vb = var_builder(store.clone(), DType::F32, &Device::Cpu);
    (
        Gpt2::new(&cfg, |_| None, ModelVb::candle(vb.pp("text_generator.lm"))).unwrap(),
        store,
    )
}

fn gpt2_logits(gpt2: &Gpt2, ids: &Tensor) -> Tensor {
    let x = gpt2.embed(ids).unwrap();
    let s = ids.dim(1).unwrap();
    let bias = causal_bias(s, s, 0, DType::F32, &Device::Cpu).unwrap();
    gpt2.logits(&gpt2.forward_embeds(&x, 0, &bias, &[], None).unwrap())
        .unwrap()
}

#[test]
fn gpt2_logits_with_and_without_transformer_prefix() {
    let dev = Device::Cpu;
    let raw = read_safetensors(&fixture("fixtures/hub/gpt2/model.safetensors"), &dev).unwrap();
    assert!(
        raw.contains_key("h.0.attn.bias"),
        "the legacy mask buffers are present and must be ignored"
    );
    let io = read_safetensors(&fixture("fixtures/hub/gpt2/io.safetensors"), &dev).unwrap();
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let (gpt2, store) = load_gpt2(raw.clone());
    assert!(store.unused().is_empty(), "{:?}", store.unused());
    let d = max_abs(&gpt2_logits(&gpt2, &ids), &io["logits"]);
    println!("GPT-2 logits max abs diff {d:e}");
    assert!(d < 1e-4);
    let prefixed: HashMap<String, Tensor> = raw
        .into_iter()
        .map(|(k, v)| (format!("transformer.{k}"), v))
        .collect();
    let (gpt2, _) = load_gpt2(prefixed);
    assert!(max_abs(&gpt2_logits(&gpt2, &ids), &io["logits"]) < 1e-4);
}

#[test]
fn gpt2_greedy_with_kv_cache_matches_generate() {
    let dev = Device::Cpu;
    let raw = read_safetensors(&fixture("fixtures/hub/gpt2/model.safetensors"), &dev).unwrap();
    let io = read_safetensors(&fixture("fixtures/hub/gpt2/io.safetensors"), &dev).unwrap();
    let expected: Vec<u32> = io["greedy_ids"]
        .i(0)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    let prompt = io["input_ids"].i(0..1).unwrap().to_dtype(DType::U32).unwrap();
    let (gpt2, _) = load_gpt2(raw);
    let mut cache = gpt2.new_cache();
    let mut ids: Vec<u32> = prompt.flatten_all().unwrap().to_vec1().unwrap();
    let mut input = prompt;
    while ids.len() < expected.len() {
        let (offset, s) = (ids.len() - input.dim(1).unwrap(), input.dim(1).unwrap());
        let bias = causal_bias(s, offset + s, offset, DType::F32, &dev).unwrap();
        let x = gpt2.embed(&input).unwrap();
        let h = gpt2
            .forward_embeds(&x, offset, &bias, &[], Some(&mut cache))
            .unwrap();
        let next = gpt2
            .logits(&h.i((.., s - 1)).unwrap())
            .unwrap()
            .argmax(D::Minus1)
            .unwrap();
        let next = next.to_vec1::<u32>().unwrap()[0];
        ids.push(next);
        input = Tensor::new(&[[next]], &dev).unwrap();
    }
    assert_eq!(ids, expected, "15 greedy tokens after the prompt");
}
