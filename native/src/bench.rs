//! `bench caption`: ms per caption for the full-size default model on random weights.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use caption_model::decode::{generate, DecodeOptions, Strategy};
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::{export_folder, load_folder, random_tensors, var_builder, Quant, RandomInit};
use caption_model::{CaptionModel, Captioner, ModelConfig};

/// Median and minimum of timings in ms.
fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0])
}

/// Runs the caption benchmark and prints its figures.
pub fn bench_caption(iters: usize, tokens: usize, beam_width: usize, quant: Quant) -> Result<()> {
    let device = Device::Cpu;
    let cfg = ModelConfig::default();
    let start = Instant::now();
    let model = if quant == Quant::F32 {
        CaptionModel::new(&cfg, var_builder(RandomInit::new(0), DType::F32, &device))?
    } else {
        // The same random weights, exported and loaded back as a model folder would be.
        let folder = export_folder(
            &cfg,
            random_tensors(&cfg, 0, &device)?,
            quant,
            GPT2_TOKENIZER_JSON,
        )?;
        let size = folder.manifest.len() + folder.model.len() + folder.tokenizer.len();
        println!("{quant} model folder: {:.1} MB", size as f64 / 1e6);
        load_folder(folder.as_bytes(), &device)?.model
    };
    println!(
        "built full-size default model (random weights, {quant}) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let pixels = Tensor::randn(0f32, 1.0, (1, 1, 3, 224, 224), &device)?;
    let mask = CaptionModel::frame_mask(&[1], 1, &device)?;
    let vocab = cfg.text_config()?.vocab_size as u32;
    // An eos outside the vocabulary is never produced: every caption has exactly `tokens` tokens.
    let opts = |strategy| DecodeOptions {
        strategy,
        max_length: tokens,
        bos: vocab - 1,
        eos: vocab,
    };
    // candle's own pool follows CANDLE_NUM_THREADS (what --threads sets), then rayon's count.
    let threads = std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(candle_core::utils::get_num_threads);
    println!("CPU threads: {threads}; {iters} timed runs after one warm-up; {tokens} tokens per caption");
    for (name, strategy) in [
        ("greedy", Strategy::Greedy),
        ("beam", Strategy::Beam { width: beam_width }),
    ] {
        let (mut encode_ms, mut total_ms) = (Vec::new(), Vec::new());
        for i in 0..=iters {
            let t0 = Instant::now();
            let visual = model.visual(&pixels, &mask)?;
            let t1 = Instant::now();
            let mut captioner = Captioner::new(&model, &visual)?;
            let out = generate(&mut captioner, &opts(strategy.clone()))?;
            anyhow::ensure!(
                out[0].tokens.len() == tokens,
                "expected {tokens} tokens, got {}",
                out[0].tokens.len()
            );
            if i > 0 {
                encode_ms.push((t1 - t0).as_secs_f64() * 1e3);
                total_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (enc_med, _) = summary(encode_ms);
        let (med, min) = summary(total_ms);
        let label = if name == "beam" {
            format!("beam {beam_width}")
        } else {
            name.to_string()
        };
        println!(
            "{label:<8} {med:>8.1} ms/caption (median; min {min:.1}), of which image encode {enc_med:.1} ms, \
             {:.1} ms/token",
            (med - enc_med) / tokens as f64
        );
    }
    Ok(())
}
