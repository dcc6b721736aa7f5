//! What a decoding step asks of the GPU: the full-size model's structure (GPT-2's 12 blocks,
//! a gated cross-attention block before each, the 50257-word LM head) on the fixture's small
//! widths, so the count is the full-size model's (it depends on the blocks and on whether the
//! LM head is wide enough for its norm to run as a kernel of its own, not on the widths). The budget is 120
//! dispatches per generated token (issue 19), greedy or beam search (whose reordering of the
//! rows costs no dispatch); bind groups come from the cache once the first steps have run.

use caption_model::decode::StepModel;
use caption_model::gpu::GpuCounters;
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::{export_folder, load_folder_on, random_tensors, Quant};
use caption_model::{CaptionModel, Captioner, ModelConfig};

use super::model::{block, seed};
use super::*;

/// Most dispatches a generated token may take.
const DISPATCH_BUDGET: u64 = 120;

/// The fixture's small model with the full-size default model's block structure.
fn full_structure() -> ModelConfig {
    let (mut cfg, ..) = seed("mlp_resampler");
    let full = ModelConfig::default();
    let mut text = cfg.text_config().unwrap();
    text.n_layer = full.text_config().unwrap().n_layer;
    text.vocab_size = full.text_config().unwrap().vocab_size;
    cfg.text.config = Some(text);
    cfg.text.xattn.freq = full.text.xattn.freq;
    for i in 0..full.text_config().unwrap().n_layer {
        assert_eq!(cfg.has_xattn(i), full.has_xattn(i), "block {i}: cross-attention");
    }
    cfg
}

#[test]
fn a_decoding_step_takes_at_most_120_dispatches() {
    if dev().is_none() {
        return;
    }
    // A device of its own: the counters are per device, and the other tests run alongside.
    let dev = GpuDevice::new_blocking().unwrap();
    let cfg = full_structure();
    let tensors = random_tensors(&cfg, 0, &Device::Cpu).unwrap();
    let folder = export_folder(&cfg, tensors, Quant::F32, GPT2_TOKENIZER_JSON).unwrap();
    let model = load_folder_on::<GpuTensor>(folder.as_bytes(), &dev)
        .unwrap()
        .model;
    let (_, _, video, _) = seed("mlp_resampler");
    let video =
        GpuTensor::from_candle(&video.narrow(0, 0, 1).unwrap().narrow(1, 0, 1).unwrap(), &dev).unwrap();
    let mask = CaptionModel::frame_mask_like(&[1], 1, &video).unwrap();
    let visual = model.visual(&video, &mask).unwrap();
    let bos = cfg.text_config().unwrap().bos_token_id;
    for (strategy, rows) in [("greedy", 1), ("beam 5", 5)] {
        let mut captioner = Captioner::new(&model, &visual).unwrap();
        if rows > 1 {
            captioner.select_rows(&vec![0; rows]).unwrap();
        }
        let mut steps: Vec<GpuCounters> = Vec::new();
        let mut token = vec![bos; rows];
        for step in 0..6 {
            let before = dev.counters();
            let top = block(captioner.step_top(&token, rows.max(2)));
            if rows > 1 {
                // As beam search does: the beams continue from reordered, repeated rows.
                let parents: Vec<usize> = (0..rows).map(|r| (r + step) % rows / 2).collect();
                captioner.select_rows(&parents).unwrap();
            }
            steps.push(dev.counters().since(&before));
            token = top.iter().map(|t| t.best[0].0).collect();
        }
        eprintln!("{strategy}: per step {steps:?}");
        // The first step runs the prefix; from the second on each step is one token.
        for (i, c) in steps.iter().enumerate().skip(1) {
            assert!(
                c.dispatches <= DISPATCH_BUDGET,
                "{strategy} step {i}: {} dispatches (budget {DISPATCH_BUDGET})",
                c.dispatches
            );
            assert_eq!(
                c.dispatches, steps[1].dispatches,
                "{strategy} step {i}: steps differ"
            );
        }
        // From the fourth step on the pool hands out the buffers of the step before, so the
        // bind groups come from the cache: new ones only where the growing mask or score
        // buffers of the 12 self-attentions move to a larger size class.
        let layers = cfg.text_config().unwrap().n_layer as u64;
        for (i, c) in steps.iter().enumerate().skip(3) {
            assert!(
                c.bind_groups <= 2 * layers,
                "{strategy} step {i}: {} bind groups created",
                c.bind_groups
            );
        }
    }
}
