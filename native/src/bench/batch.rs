//! `bench batch`: images per second of `native caption` over a folder, one image per step
//! against several, for the full-size default model on random weights.
//!
//! A decoding step reads every GPT-2 and cross-attention weight once whatever the number of rows,
//! so a batch should cost less per image than single images; this measures by how much, on
//! the same folder of PNGs, and checks that every batch size gives the same captions.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use caption_model::backend::Backend;
use caption_model::decode::{DecodeOptions, Strategy};
use caption_model::weights::{load_folder_on, Quant};
use caption_model::{CaptionModel, ModelConfig};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};

use super::caption::random_folder;
use crate::caption::{caption_files, collect_inputs, CaptionResult};

/// What `bench batch` measures.
#[derive(Debug, Clone)]
pub struct BatchBenchOptions {
    /// Images in the folder.
    pub images: usize,
    /// Batch sizes compared (the first is the reference for the ratios and the captions).
    pub batch_sizes: Vec<usize>,
    /// Weights as exported.
    pub quants: Vec<Quant>,
    /// Tokens per caption (eos is never taken).
    pub tokens: usize,
    /// Run on the WebGPU engine instead of the CPU.
    pub webgpu: bool,
}

/// Writes `n` random 224×224 PNGs (noise over a few flat rectangles, seed 0) into a fresh
/// temporary folder, so decoding is real work and no two images are alike.
fn write_folder(n: usize) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for i in 0..n {
        let base: [u8; 3] = rng.random();
        let img = RgbImage::from_fn(224, 224, |x, y| {
            let jitter = ((x * 7 + y * 13 + i as u32 * 31) % 17) as u8;
            Rgb(base.map(|c| c.wrapping_add(jitter)))
        });
        img.save(dir.path().join(format!("{i:03}.png")))
            .context("writing a benchmark image")?;
    }
    Ok(dir)
}

/// Runs the batch benchmark and prints images/s per quantization and batch size.
pub fn bench_batch(opts: &BatchBenchOptions) -> Result<()> {
    anyhow::ensure!(
        !opts.batch_sizes.is_empty(),
        "--batch-size needs at least one size"
    );
    let dir = write_folder(opts.images)?;
    let files = collect_inputs(&[dir.path().to_path_buf()])?;
    println!(
        "{} random 224x224 PNGs, {} tokens per caption (eos never taken), greedy, engine: {}",
        files.len(),
        opts.tokens,
        if opts.webgpu { "WebGPU" } else { "CPU" }
    );
    for &quant in &opts.quants {
        if opts.webgpu {
            bench_webgpu_quant(quant, &files, opts)?;
        } else {
            let folder = random_folder(&ModelConfig::default(), quant)?.0;
            let loaded = load_folder_on::<candle_core::Tensor>(folder.as_bytes(), &Device::Cpu)?;
            time_batch_sizes(&loaded.model, &loaded.tokenizer, &files, quant, opts)?;
        }
    }
    Ok(())
}

#[cfg(feature = "webgpu")]
fn bench_webgpu_quant(quant: Quant, files: &[PathBuf], opts: &BatchBenchOptions) -> Result<()> {
    use caption_model::gpu::{GpuDevice, GpuTensor};
    let gpu = GpuDevice::new_blocking()?;
    let folder = random_folder(&ModelConfig::default(), quant)?.0;
    let loaded = load_folder_on::<GpuTensor>(folder.as_bytes(), &gpu)?;
    println!("adapter: {}", gpu.adapter_name());
    time_batch_sizes(&loaded.model, &loaded.tokenizer, files, quant, opts)
}

#[cfg(not(feature = "webgpu"))]
fn bench_webgpu_quant(_: Quant, _: &[PathBuf], _: &BatchBenchOptions) -> Result<()> {
    anyhow::bail!("this binary was built without the WebGPU engine (build with --features webgpu)")
}

/// Captions `files` at each batch size after one warm-up batch, prints images/s and the ratio
/// to the first size, and fails if any batch size changes a caption.
fn time_batch_sizes<T: Backend>(
    model: &CaptionModel<T>,
    tokenizer: &caption_model::tokenizer::Tokenizer,
    files: &[PathBuf],
    quant: Quant,
    opts: &BatchBenchOptions,
) -> Result<()> {
    let vocab = model.config().text_config()?.vocab_size as u32;
    let decode = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: opts.tokens,
        bos: vocab - 1,
        eos: vocab,
    };
    let mut reference: Option<(f64, Vec<CaptionResult>)> = None;
    for &size in &opts.batch_sizes {
        let size = size.max(1);
        caption_files(
            model,
            tokenizer,
            &files[..size.min(files.len())],
            &decode,
            size,
            |_| {},
        )?;
        let start = Instant::now();
        let results = caption_files(model, tokenizer, files, &decode, size, |_| {})?;
        let per_s = files.len() as f64 / start.elapsed().as_secs_f64();
        if let Some(r) = results.iter().find(|r| r.error.is_some()) {
            anyhow::bail!("{}: {}", r.file, r.error.as_deref().unwrap_or_default());
        }
        let ratio = match &reference {
            Some((base, first)) => {
                let same = first.iter().zip(&results).all(|(a, b)| a.tokens == b.tokens);
                anyhow::ensure!(
                    same,
                    "{quant}: captions at batch {size} differ from batch {}",
                    opts.batch_sizes[0]
                );
                per_s / base
            }
            None => 1.0,
        };
        let encode_ms = encode_ms_per_image(model, size)?;
        let clip_gflops = model.vision().config().forward_flops() as f64 / encode_ms / 1e6;
        println!(
            "{quant:<4} batch {size:>3}: {per_s:>7.2} images/s ({ratio:.2}x batch {}); {:.1} ms per image, \
             of which the image encode {encode_ms:.1} ms (CLIP at {clip_gflops:.0} GFLOP/s; compare \
             `native bench memory`)",
            opts.batch_sizes[0],
            1e3 / per_s
        );
        if reference.is_none() {
            reference = Some((per_s, results));
        }
    }
    println!("{quant}: captions identical at every batch size");
    Ok(())
}

/// ms per image of the image encode alone (CLIP, resampler and mapper) at `batch` images a
/// call: the part of a caption that batching cannot share, since every image is its own work.
fn encode_ms_per_image<T: Backend>(model: &CaptionModel<T>, batch: usize) -> Result<f64> {
    let s = model.vision().config().image_size;
    let pixels = candle_core::Tensor::randn(0f32, 1.0, (batch, 1, 3, s, s), &Device::Cpu)?;
    let pixels = T::from_candle(&pixels, model.device())?;
    let mask = CaptionModel::frame_mask_like(&vec![1; batch], 1, &pixels)?;
    let mut best = f64::MAX;
    for _ in 0..2 {
        let start = Instant::now();
        let visual = model.visual(&pixels, &mask)?;
        // Read a value back, so that an asynchronous engine is timed to the end.
        visual
            .prefix
            .to_candle()?
            .flatten_all()?
            .narrow(0, 0, 1)?
            .to_vec1::<f32>()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best * 1e3 / batch as f64)
}
