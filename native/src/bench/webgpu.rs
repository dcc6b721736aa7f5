//! `bench webgpu`: the full-size default model (random weights) on the WebGPU engine: ms per
//! caption, the GPU memory its weights take, and what a generated token asks of the GPU.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use caption_model::backend::Backend;
use caption_model::decode::Strategy;
use caption_model::gpu::{GpuCounters, GpuDevice, GpuTensor};
use caption_model::weights::{load_folder_on, Quant};
use caption_model::{CaptionModel, ModelConfig};

use super::caption::{caption_once, random_folder, strategy_label, time_captions};

/// ms per caption of the full-size default model on the first WebGPU adapter, for each
/// quantization, with the GPU memory its weights take and the per-token work counts.
pub fn bench_webgpu(iters: usize, tokens: usize, beam_width: usize, quants: &[Quant]) -> Result<()> {
    let gpu = GpuDevice::new_blocking()?;
    println!("adapter: {}", gpu.adapter_name());
    let cfg = ModelConfig::default();
    for &quant in quants {
        let start = Instant::now();
        let (folder, size) = random_folder(&cfg, quant)?;
        let before = gpu.allocated_bytes();
        let model = load_folder_on::<GpuTensor>(folder.as_bytes(), &gpu)?.model;
        let weights = gpu.allocated_bytes() - before;
        println!(
            "{quant}: folder {:.1} MB, weights on the GPU {:.1} MB ({:.2}x the folder), loaded in {:.1} s",
            size as f64 / 1e6,
            weights as f64 / 1e6,
            weights as f64 / size as f64,
            start.elapsed().as_secs_f64()
        );
        let pixels = GpuTensor::from_candle(
            &Tensor::randn(0f32, 1.0, (1, 1, 3, 224, 224), &Device::Cpu)?,
            &gpu,
        )?;
        println!("{iters} timed runs after one warm-up; {tokens} tokens per caption");
        time_captions(&model, &pixels, iters, tokens, beam_width)?;
        for strategy in [Strategy::Greedy, Strategy::Beam { width: beam_width }] {
            let c = decoding_counts(&model, &pixels, &gpu, tokens, strategy.clone())?;
            let per = |v: u64| v as f64 / (tokens - 1) as f64;
            println!(
                "{:<8} per generated token: {:.1} dispatches, {:.1} bind groups created, \
                 {:.0} bytes uploaded, {:.0} bytes read back; CPU {:.0} us recording, \
                 {:.0} us submitting",
                strategy_label(&strategy),
                per(c.dispatches),
                per(c.bind_groups),
                per(c.bytes_uploaded),
                per(c.bytes_read_back),
                per(c.record_ns) / 1e3,
                per(c.submit_ns) / 1e3
            );
        }
        println!(
            "{quant}: peak GPU memory {:.1} MB ({:.2}x the folder)",
            gpu.peak_bytes() as f64 / 1e6,
            gpu.peak_bytes() as f64 / size as f64
        );
    }
    Ok(())
}

/// The device's work for the last `tokens - 1` tokens of a caption: the counts of a
/// `tokens`-token caption less those of a 1-token caption (the image encode and the prefix's
/// step).
fn decoding_counts(
    model: &CaptionModel<GpuTensor>,
    pixels: &GpuTensor,
    gpu: &GpuDevice,
    tokens: usize,
    strategy: Strategy,
) -> Result<GpuCounters> {
    anyhow::ensure!(tokens >= 2, "per-token counts need captions of 2 tokens or more");
    let count = |n: usize| -> Result<GpuCounters> {
        let before = gpu.counters();
        caption_once(model, pixels, n, strategy.clone())?;
        Ok(gpu.counters().since(&before))
    };
    // A warm-up first, so that both counted captions find the caches in the same state.
    count(tokens)?;
    let (one, all) = (count(1)?, count(tokens)?);
    Ok(all.since(&one))
}
