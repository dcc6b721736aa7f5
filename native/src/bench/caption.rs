//! `bench caption`: ms per caption for the full-size default model on random weights.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use caption_model::backend::Backend;
use caption_model::decode::{generate, DecodeOptions, Strategy};
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::{
    export_folder, load_folder, parse_manifest, random_tensors, var_builder, ExportedFolder, Quant,
    RandomInit, ShapeRecorder,
};
use caption_model::{CaptionModel, Captioner, ModelConfig};

/// Median and minimum of timings in ms.
fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0])
}

/// What `bench caption` times.
#[derive(Debug, Clone)]
pub struct CaptionBenchOptions {
    /// Timed captions per strategy (after one warm-up).
    pub iters: usize,
    /// Tokens per caption.
    pub tokens: usize,
    /// Beam width of the beam run.
    pub beam_width: usize,
    /// Weights as exported.
    pub quant: Quant,
    /// The dtype an f32 model computes in (f32 or bf16).
    pub dtype: DType,
    /// Where the model runs.
    pub device: Device,
}

/// Runs the caption benchmark and prints its figures.
pub fn bench_caption(opts: &CaptionBenchOptions) -> Result<()> {
    let CaptionBenchOptions {
        iters,
        tokens,
        beam_width,
        quant,
        dtype,
        ref device,
    } = *opts;
    anyhow::ensure!(
        dtype == DType::F32 || quant == Quant::F32,
        "--precision bf16 casts f32 weights; it does not apply to {quant} weights"
    );
    let cfg = ModelConfig::default();
    let start = Instant::now();
    let (model, weight_bytes) = if quant == Quant::F32 {
        let recorder = ShapeRecorder::default();
        CaptionModel::new(&cfg, var_builder(recorder.clone(), DType::F32, &Device::Cpu))?;
        let per_token: u64 = recorder
            .shapes()
            .iter()
            .filter(|(name, _)| read_per_token(name))
            .map(|(_, shape)| shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64)
            .sum();
        let model = CaptionModel::new(&cfg, var_builder(RandomInit::new(0), dtype, device))?;
        (model, per_token)
    } else {
        let (folder, size) = random_folder(&cfg, quant)?;
        println!("{quant} model folder: {:.1} MB", size as f64 / 1e6);
        let manifest = parse_manifest(&folder.manifest)?;
        let per_token: u64 = manifest
            .tensors
            .iter()
            .filter(|t| read_per_token(&t.name))
            .map(|t| t.bytes)
            .sum();
        (load_folder(folder.as_bytes(), device)?.model, per_token)
    };
    println!(
        "built full-size default model (random weights, {quant}, computing in {dtype:?}) on {} in {:.1} s",
        device_label(device),
        start.elapsed().as_secs_f64()
    );
    let pixels = Tensor::randn(0f32, 1.0, (1, 1, 3, 224, 224), device)?.to_dtype(dtype)?;
    if device.is_cpu() {
        // candle's own pool follows CANDLE_NUM_THREADS (what --threads sets), then rayon's count.
        let threads = std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(candle_core::utils::get_num_threads);
        println!("CPU threads: {threads}");
    }
    println!("{iters} timed runs after one warm-up; {tokens} tokens per caption");
    let per_token = time_captions(&model, &pixels, iters, tokens, beam_width)?;
    println!(
        "weights read per generated token: {:.1} MB (GPT-2 blocks, cross-attention, LM head)",
        weight_bytes as f64 / 1e6
    );
    // The machine's read bandwidth measured now, in this run, on as many threads as decoding
    // uses: the target is half of it.
    let bandwidth = device.is_cpu().then(|| {
        let threads = candle_core::utils::get_num_threads();
        let buffer: Vec<u64> = (0..BANDWIDTH_BYTES / 8).map(|i| i as u64).collect();
        let gbs = super::memory::read_bandwidth(&buffer, threads, 5);
        println!("machine read bandwidth now: {gbs:.1} GB/s ({threads} threads, streaming 1 GB, best of 5)");
        gbs
    });
    for (label, ms) in per_token {
        let gbs = weight_bytes as f64 / (ms / 1e3) / 1e9;
        match bandwidth {
            Some(peak) => println!(
                "{label:<8} reads them at {gbs:.2} GB/s: {:.0} % of the bandwidth; {ms:.2} ms per token is \
                 {:.2}x the floor of {:.2} ms (bytes / bandwidth)",
                100.0 * gbs / peak,
                ms / (weight_bytes as f64 / peak / 1e6),
                weight_bytes as f64 / peak / 1e6
            ),
            None => println!("{label:<8} reads them at {gbs:.2} GB/s"),
        }
    }
    Ok(())
}

/// Size of the streaming read that measures the bandwidth beside the captions.
const BANDWIDTH_BYTES: usize = 1 << 30;

/// The full-size model's random weights (seed 0) exported as a `quant` folder, as `native
/// export` would write it, and its size in bytes.
pub fn random_folder(cfg: &ModelConfig, quant: Quant) -> Result<(ExportedFolder, usize)> {
    let folder = export_folder(
        cfg,
        random_tensors(cfg, 0, &Device::Cpu)?,
        quant,
        GPT2_TOKENIZER_JSON,
    )?;
    let size = folder.manifest.len() + folder.model.len() + folder.tokenizer.len();
    Ok((folder, size))
}

/// Whether a stored tensor is read for every generated token: GPT-2's blocks and the
/// cross-attention blocks (but their media key/value projections, applied once per image), the
/// final norm and the tied LM head (`wte`); not the position table, of which a step reads one row.
fn read_per_token(name: &str) -> bool {
    name.starts_with("text_generator.lm.transformer.") && !name.contains(".wpe.") && !name.contains(".to_kv.")
}

/// "CPU", or the CUDA device and its ordinal.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "the CPU".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("CUDA GPU {gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("Metal GPU {gpu_id}"),
    }
}

/// One caption of `pixels` with `strategy`, exactly `tokens` tokens long: the image encode's
/// ms (timed to its end) and the whole caption's ms.
pub fn caption_once<T: Backend>(
    model: &CaptionModel<T>,
    pixels: &T,
    tokens: usize,
    strategy: Strategy,
) -> Result<(f64, f64)> {
    let mask = CaptionModel::frame_mask_like(&[1], 1, pixels)?;
    let vocab = model.config().text_config()?.vocab_size as u32;
    // An eos outside the vocabulary is never produced: every caption has exactly `tokens` tokens.
    let opts = DecodeOptions {
        strategy,
        max_length: tokens,
        bos: vocab - 1,
        eos: vocab,
    };
    let t0 = Instant::now();
    let visual = model.visual(pixels, &mask)?;
    // The encode is timed to its end: read one value back (GPU work is asynchronous).
    // (A CUDA tensor is read only when its values are copied to the host.)
    visual
        .prefix
        .narrow(2, 0, 1)?
        .to_candle()?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let t1 = Instant::now();
    let mut captioner = Captioner::new(model, &visual)?;
    let out = generate(&mut captioner, &opts)?;
    anyhow::ensure!(
        out[0].tokens.len() == tokens,
        "expected {tokens} tokens, got {}",
        out[0].tokens.len()
    );
    Ok(((t1 - t0).as_secs_f64() * 1e3, t0.elapsed().as_secs_f64() * 1e3))
}

/// The label of a strategy in the tables ("greedy", "beam 5").
pub fn strategy_label(strategy: &Strategy) -> String {
    match strategy {
        Strategy::Beam { width } => format!("beam {width}"),
        _ => "greedy".into(),
    }
}

/// Times greedy and beam captions of `pixels` [1, 1, 3, 224, 224], prints the figures and
/// returns each strategy's label and ms per generated token.
pub fn time_captions<T: Backend>(
    model: &CaptionModel<T>,
    pixels: &T,
    iters: usize,
    tokens: usize,
    beam_width: usize,
) -> Result<Vec<(String, f64)>> {
    let mut per_token = Vec::new();
    for strategy in [Strategy::Greedy, Strategy::Beam { width: beam_width }] {
        let (mut encode_ms, mut total_ms) = (Vec::new(), Vec::new());
        for i in 0..=iters {
            let (encode, total) = caption_once(model, pixels, tokens, strategy.clone())?;
            if i > 0 {
                encode_ms.push(encode);
                total_ms.push(total);
            }
        }
        let (enc_med, _) = summary(encode_ms);
        let (med, min) = summary(total_ms);
        let label = strategy_label(&strategy);
        println!(
            "{label:<8} {med:>8.1} ms/caption (median; min {min:.1}), of which image encode {enc_med:.1} ms, \
             {:.1} ms/token",
            (med - enc_med) / tokens as f64
        );
        per_token.push((label, (med - enc_med) / tokens as f64));
    }
    Ok(per_token)
}
