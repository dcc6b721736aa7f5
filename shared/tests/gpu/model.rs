//! Whole models: a transformer block written once for both backends, and the fixture models
//! from exported folders: f32 logits within 1e-3 of the CPU engine at every decoding step and
//! identical greedy tokens; q8/q4 folders give the CPU engine's greedy captions on the same
//! folder; beam search and nucleus sampling agree.

use std::collections::BTreeMap;

use candle_core::quantized::{GgmlDType, QTensor};
use caption_model::backend::{merge_heads, split_heads};
use caption_model::decode::{generate, DecodeOptions, StepModel, Strategy};
use caption_model::dropout::Dropout;
use caption_model::nn::Activation;
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::{
    export_folder, load_folder, load_folder_on, model_tensors, read_safetensors, Quant,
};
use caption_model::{CaptionModel, Captioner, ModelConfig};

use super::common::fixture;
use super::*;

/// The weights of one GPT-2-style block on some backend.
struct BlockWeights<T: Backend> {
    ln: (T, T),
    qkv: T::Matrix,
    qkv_b: T,
    proj: T::Matrix,
    fc: T::Matrix,
    out: T::Matrix,
}

impl<T: Backend> BlockWeights<T> {
    /// The same random weights (q4_0 for the MLP's second matrix) on `device`.
    fn new(dm: usize, device: &T::Device) -> Self {
        let t = |dims: &[usize], seed: u64| {
            let c = Tensor::from_vec(rand_vec(dims.iter().product(), 0.5, seed), dims, &Device::Cpu).unwrap();
            T::from_candle(&c, device).unwrap()
        };
        let m = |w: Weight| T::matrix_from_candle(w, device).unwrap();
        let q4 = QTensor::quantize(&dense_weight(dm, 4 * dm, 1305).0, GgmlDType::Q4_0).unwrap();
        Self {
            ln: (t(&[dm], 1300), t(&[dm], 1301)),
            qkv: m(dense_weight(3 * dm, dm, 1302).1),
            qkv_b: t(&[3 * dm], 1303),
            proj: m(Weight::Dense(
                dense_weight(dm, dm, 1304)
                    .0
                    .to_dtype(DType::F16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .t()
                    .unwrap(),
            )),
            fc: m(dense_weight(4 * dm, dm, 1306).1),
            // Dequantized, so that candle's reference does not round the activations.
            out: m(Weight::Dense(q4.dequantize(&Device::Cpu).unwrap().t().unwrap())),
        }
    }
}

/// A pre-norm transformer block with causal self-attention, written once for any backend.
fn transformer_block<T: Backend>(x: &T, w: &BlockWeights<T>, heads: usize) -> candle_core::Result<T> {
    let d = x.dims();
    let (s, dm) = (d[1], d[2]);
    let h = x
        .layer_norm(&w.ln.0, &w.ln.1, 1e-5)?
        .linear(&w.qkv, Some(&w.qkv_b))?;
    let scale = 1.0 / ((dm / heads) as f64).sqrt();
    let q = split_heads(&h.narrow(2, 0, dm)?, heads)?.affine(scale, 0.0)?;
    let k = split_heads(&h.narrow(2, dm, dm)?, heads)?;
    let v = split_heads(&h.narrow(2, 2 * dm, dm)?, heads)?;
    let mask: Vec<f32> = (0..s * s)
        .map(|i| if i % s > i / s { f32::MIN } else { 0.0 })
        .collect();
    let mask = T::from_f32(mask, &[1, 1, s, s], x)?;
    let a = T::attention(&q, &k, &v, Some(&mask), &Dropout::new(0.1))?;
    let x = x.add(&merge_heads(&a)?.linear(&w.proj, None)?)?;
    let h = x
        .layer_norm(&w.ln.0, &w.ln.1, 1e-5)?
        .linear(&w.fc, None)?
        .activation(Activation::GeluNew)?;
    x.add(&h.linear(&w.out, None)?)
}

#[test]
fn transformer_block_matches_candle() {
    let Some(d) = dev() else { return };
    let (cx, gx) = pair(&[2, 7, 96], 1310, &d);
    let cw = BlockWeights::<Tensor>::new(96, &Device::Cpu);
    let gw = BlockWeights::<GpuTensor>::new(96, &d);
    let want = transformer_block(&cx, &cw, 4).unwrap();
    let got = transformer_block(&gx, &gw, 4).unwrap();
    assert_close(&got, &want, 1e-4, 1e-4, "transformer block");
}

const VARIANTS: [&str; 4] = [
    "mlp_resampler",
    "mapper_only",
    "resampler_only",
    "transformer_mapper_freq2",
];

/// A fixture variant's config, its weights, the test video and its frame counts.
pub(super) fn seed(variant: &str) -> (ModelConfig, BTreeMap<String, Tensor>, Tensor, Vec<usize>) {
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
        assert_eq!(x.len(), y.len(), "step {i}: rows");
        for (r, (rx, ry)) in x.iter().zip(&y).enumerate() {
            assert_eq!(rx.len(), ry.len(), "step {i} row {r}: logits");
            for (k, (p, q)) in rx.iter().zip(ry).enumerate() {
                // `max` would skip a NaN: a non-finite logit on either side fails here.
                assert!(
                    p.is_finite() && q.is_finite(),
                    "step {i} row {r} token {k}: CPU {p}, GPU {q}"
                );
                worst = worst.max((p - q).abs());
            }
        }
    }
    worst
}

/// Runs a step future that never waits (native wgpu reads back synchronously).
pub(super) fn block<R, F: std::future::Future<Output = caption_model::Result<R>>>(f: F) -> R {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v.unwrap(),
        std::task::Poll::Pending => panic!("a native GPU step waited"),
    }
}

#[test]
fn fixture_folders_caption_on_the_gpu_as_on_the_cpu() {
    let Some(dev) = dev() else { return };
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
    let Some(dev) = dev() else { return };
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
        assert_eq!(a.len(), b.len(), "{:?}: captions", opts.strategy);
        assert_eq!(
            a.len(),
            lengths.len(),
            "{:?}: one caption per video",
            opts.strategy
        );
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
    // No top-k cut: the device's candidates settle the peaked steps, whole rows the rest.
    run(Strategy::Nucleus {
        temperature: 0.3,
        top_p: 0.8,
        top_k: None,
        seed: 5,
    });
}
