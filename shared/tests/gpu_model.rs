//! The WebGPU engine runs the fixture models from exported folders as the CPU engine does: f32
//! logits within 1e-3 at every decoding step and identical greedy tokens; q8/q4 folders give
//! the CPU engine's greedy captions on the same folder. Runs on whatever adapter wgpu finds
//! (lavapipe in CI); `CAPTION_GPU_TESTS=skip` skips it on a machine without one.
#![cfg(feature = "webgpu")]

mod common;

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use caption_model::backend::Backend;
use caption_model::decode::{generate, DecodeOptions, StepModel, Strategy};
use caption_model::gpu::{GpuDevice, GpuTensor};
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::{
    export_folder, load_folder, load_folder_on, model_tensors, read_safetensors, Quant,
};
use caption_model::{CaptionModel, Captioner, ModelConfig};
use common::fixture;

const VARIANTS: [&str; 4] = [
    "mlp_resampler",
    "mapper_only",
    "resampler_only",
    "transformer_mapper_freq2",
];

/// The adapter, or None when the environment asks to skip (a missing adapter fails otherwise).
fn gpu() -> Option<GpuDevice> {
    if std::env::var("CAPTION_GPU_TESTS").is_ok_and(|v| v == "skip") {
        return None;
    }
    match GpuDevice::new_blocking() {
        Ok(d) => {
            println!("adapter: {}", d.adapter_info().name);
            Some(d)
        }
        Err(e) => {
            panic!("no WebGPU adapter ({e}); install mesa-vulkan-drivers, or set CAPTION_GPU_TESTS=skip")
        }
    }
}

fn seed(variant: &str) -> (ModelConfig, BTreeMap<String, Tensor>, Tensor, Vec<usize>) {
    let dir = fixture(&format!("fixtures/seed/{variant}"));
    let cfg = ModelConfig::from_file(dir.join("config.json")).unwrap();
    let tensors = read_safetensors(&dir.join("weights.safetensors"), &Device::Cpu).unwrap();
    let used = model_tensors(&cfg, tensors, &Device::Cpu).unwrap();
    let io = read_safetensors(&dir.join("io.safetensors"), &Device::Cpu).unwrap();
    let lengths = io["video_length"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    (cfg, used, io["video"].clone(), lengths)
}

fn options(cfg: &ModelConfig, strategy: Strategy) -> DecodeOptions {
    let t = cfg.text_config().unwrap();
    DecodeOptions {
        strategy,
        max_length: 12,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    }
}

/// Greedy captions of the fixture video (padded frames included) and of each frame alone.
fn greedy<T: Backend>(model: &CaptionModel<T>, video: &T, lengths: &[usize]) -> Vec<Vec<u32>> {
    let frames = video.dim(1).unwrap();
    let mask = CaptionModel::frame_mask_like(lengths, frames, video).unwrap();
    let visual = model.visual(video, &mask).unwrap();
    let mut captioner = Captioner::new(model, &visual).unwrap();
    generate(&mut captioner, &options(model.config(), Strategy::Greedy))
        .unwrap()
        .into_iter()
        .map(|g| g.tokens)
        .collect()
}

/// Max |cpu - gpu| of the logits over every step of feeding `tokens` (row-wise) after bos.
fn max_logit_diff(
    cpu: &CaptionModel,
    gpu: &CaptionModel<GpuTensor>,
    video: (&Tensor, &GpuTensor),
    lengths: &[usize],
    tokens: &[Vec<u32>],
) -> f32 {
    let frames = video.0.dim(1).unwrap();
    let cpu_mask = CaptionModel::frame_mask(lengths, frames, &Device::Cpu).unwrap();
    let gpu_mask = CaptionModel::frame_mask_like(lengths, frames, video.1).unwrap();
    let cpu_visual = cpu.visual(video.0, &cpu_mask).unwrap();
    let gpu_visual = gpu.visual(video.1, &gpu_mask).unwrap();
    let mut a = Captioner::new(cpu, &cpu_visual).unwrap();
    let mut b = Captioner::new(gpu, &gpu_visual).unwrap();
    let bos = cpu.config().text_config().unwrap().bos_token_id;
    let steps = tokens.iter().map(Vec::len).min().unwrap_or(0);
    let mut worst = 0f32;
    for i in 0..=steps {
        let feed: Vec<u32> = tokens
            .iter()
            .map(|t| if i == 0 { bos } else { t[i - 1] })
            .collect();
        let (x, y) = (block(a.step(&feed)), block(b.step(&feed)));
        for (rx, ry) in x.iter().zip(&y) {
            for (p, q) in rx.iter().zip(ry) {
                worst = worst.max((p - q).abs());
            }
        }
    }
    worst
}

/// Runs a step future that never waits (native wgpu reads back synchronously).
fn block<F: std::future::Future<Output = caption_model::Result<Vec<Vec<f32>>>>>(f: F) -> Vec<Vec<f32>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v.unwrap(),
        std::task::Poll::Pending => panic!("a native GPU step waited"),
    }
}

#[test]
fn fixture_folders_caption_on_the_gpu_as_on_the_cpu() {
    let Some(dev) = gpu() else { return };
    for variant in VARIANTS {
        let (cfg, tensors, video, lengths) = seed(variant);
        let gpu_video = GpuTensor::from_candle(&video, &dev).unwrap();
        for quant in [Quant::F32, Quant::Q8, Quant::Q4] {
            let folder = export_folder(&cfg, tensors.clone(), quant, GPT2_TOKENIZER_JSON).unwrap();
            let cpu = load_folder(folder.as_bytes(), &Device::Cpu).unwrap().model;
            let gpu = load_folder_on::<GpuTensor>(folder.as_bytes(), &dev)
                .unwrap()
                .model;
            let want = greedy(&cpu, &video, &lengths);
            let got = greedy(&gpu, &gpu_video, &lengths);
            println!("{variant} {quant}: greedy {want:?}");
            let diff = max_logit_diff(&cpu, &gpu, (&video, &gpu_video), &lengths, &want);
            println!("{variant} {quant}: max |logit difference| {diff:.2e}");
            assert_eq!(
                got, want,
                "{variant} {quant}: GPU greedy tokens differ from the CPU's"
            );
            if quant == Quant::F32 {
                assert!(diff < 1e-3, "{variant}: GPU logits differ by {diff}");
            }
        }
    }
}

#[test]
fn beam_search_on_the_gpu_matches_the_cpu() {
    let Some(dev) = gpu() else { return };
    let (cfg, tensors, video, lengths) = seed("mlp_resampler");
    let folder = export_folder(&cfg, tensors, Quant::F32, GPT2_TOKENIZER_JSON).unwrap();
    let cpu = load_folder(folder.as_bytes(), &Device::Cpu).unwrap().model;
    let gpu = load_folder_on::<GpuTensor>(folder.as_bytes(), &dev)
        .unwrap()
        .model;
    let gpu_video = GpuTensor::from_candle(&video, &dev).unwrap();
    let run = |strategy: Strategy| {
        let frames = video.dim(1).unwrap();
        let cm = CaptionModel::frame_mask(&lengths, frames, &Device::Cpu).unwrap();
        let gm = CaptionModel::frame_mask_like(&lengths, frames, &gpu_video).unwrap();
        let (cv, gv) = (
            cpu.visual(&video, &cm).unwrap(),
            gpu.visual(&gpu_video, &gm).unwrap(),
        );
        let opts = options(&cfg, strategy);
        let a = generate(&mut Captioner::new(&cpu, &cv).unwrap(), &opts).unwrap();
        let b = generate(&mut Captioner::new(&gpu, &gv).unwrap(), &opts).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.tokens, y.tokens, "{:?}", opts.strategy);
            assert!(
                (x.score - y.score).abs() < 1e-3,
                "scores {} vs {}",
                x.score,
                y.score
            );
        }
    };
    run(Strategy::Beam { width: 3 });
    run(Strategy::Nucleus {
        temperature: 0.7,
        top_p: 0.9,
        top_k: Some(20),
        seed: 4,
    });
}
