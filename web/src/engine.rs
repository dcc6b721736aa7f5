//! The engine seam: the page asks an [`Engine`] for captions and never sees how it computes them.
//! [`ModelEngine`] runs the shared model on one backend: candle on the CPU (in the browser:
//! wasm32 with SIMD128, one thread) or the WebGPU engine ([`Backend::WebGpu`], the default;
//! `?backend=cpu` forces the CPU).

use candle_core::{Device, Tensor};
use caption_model::attention_maps::{rollout_maps_async, MapMethod, TokenMap};
use caption_model::backend::Backend as ModelBackend;
use caption_model::decode::{generate_async, DecodeOptions, Generated};
use caption_model::preprocess::{preprocess_bytes, preprocess_rgb, PreprocessConfig};
use caption_model::tokenizer::Tokenizer;
use caption_model::weights::{load_folder, FolderBytes, LoadedFolder};
use caption_model::{CaptionModel, Captioner, ModelConfig, Result};
use image::RgbImage;

pub use crate::protocol::Backend;
use crate::stream::Streaming;

/// One picture or clip to caption: preprocessed frames (CHW f32 each, `image_size`²).
#[derive(Debug, Clone)]
pub struct Frames {
    /// The frames, in time order (one for a picture).
    pub frames: Vec<Vec<f32>>,
}

impl Frames {
    /// An image file's bytes, decoded and preprocessed exactly as `native caption` does.
    pub fn from_image_bytes(bytes: &[u8], pre: &PreprocessConfig) -> Result<Self> {
        Ok(Self {
            frames: vec![preprocess_bytes(bytes, pre)?],
        })
    }

    /// Video frames as RGBA pixels (`width × height × 4` bytes each, as a canvas gives them).
    pub fn from_rgba_frames(
        frames: &[Vec<u8>],
        width: u32,
        height: u32,
        pre: &PreprocessConfig,
    ) -> Result<Self> {
        let expected = width as usize * height as usize * 4;
        let frames = frames
            .iter()
            .map(|rgba| {
                if rgba.len() != expected || expected == 0 {
                    return Err(caption_model::Error::Decode(format!(
                        "a video frame has {} bytes, {width}×{height} RGBA needs {expected}",
                        rgba.len()
                    )));
                }
                let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
                let img = RgbImage::from_raw(width, height, rgb).expect("length checked above");
                preprocess_rgb(&img, pre)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { frames })
    }
}

/// `k` evenly spaced indices of `n` frames, first and last included (all of them when `n <= k`):
/// `round(i·(n−1)/(k−1))`, as `native`'s video decoder samples clips.
pub fn even_indices(n: usize, k: usize) -> Vec<usize> {
    match k {
        _ if n <= k => (0..n).collect(),
        0 => Vec::new(),
        1 => vec![(n - 1) / 2],
        _ => (0..k)
            .map(|i| (2 * i * (n - 1) + (k - 1)) / (2 * (k - 1)))
            .collect(),
    }
}

/// A loaded model on one backend (candle on the CPU, or the WebGPU engine): the same model
/// code, the same decoding; only where the tensors live differs.
pub struct ModelEngine<T: ModelBackend> {
    folder: LoadedFolder<T>,
    name: String,
}

impl<T: ModelBackend> ModelEngine<T> {
    /// The loaded model.
    pub fn model(&self) -> &CaptionModel<T> {
        &self.folder.model
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        self.folder.model.config()
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.folder.tokenizer
    }

    /// The folder's quantisation scheme name (q8, q4, f16, f32).
    pub fn quant(&self) -> String {
        self.folder.manifest.quant.to_string()
    }

    /// What the model was trained on, as its manifest says (checked plain text), if it does.
    pub fn description(&self) -> Option<&str> {
        self.folder.manifest.description.as_deref()
    }

    /// Shown next to each caption (e.g. "cpu (wasm32 simd128, 1 thread)").
    pub fn backend_name(&self) -> &str {
        &self.name
    }

    /// Captions one picture or clip; `on_tokens` sees the leading hypothesis as it grows.
    pub async fn caption(
        &self,
        input: &Frames,
        opts: &DecodeOptions,
        on_tokens: &mut dyn FnMut(&[u32]),
    ) -> Result<Generated> {
        let model = &self.folder.model;
        let s = PreprocessConfig::for_image_size(self.config().vision_config()?.image_size).image_size;
        let t = input.frames.len();
        if t == 0 {
            return Err(caption_model::Error::Decode(
                "nothing to caption: no frames".into(),
            ));
        }
        let flat: Vec<f32> = input.frames.iter().flat_map(|f| f.iter().copied()).collect();
        let video = T::from_candle(
            &Tensor::from_vec(flat, (1, t, 3, s, s), &Device::Cpu)?,
            model.device(),
        )?;
        let mask = CaptionModel::frame_mask_like(&[t], t, &video)?;
        let visual = model.visual(&video, &mask)?;
        let captioner = Captioner::new(model, &visual)?;
        let mut streaming = Streaming::new(captioner, on_tokens);
        generate_async(&mut streaming, opts)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| caption_model::Error::Decode("the decoder returned no caption".into()))
    }

    /// Where each of `tokens` (a caption of `input`, eos left out) looked, by attention
    /// rollout: plain ops and asynchronous reads, so this engine computes it itself.
    pub async fn word_maps(&self, input: &Frames, tokens: &[u32]) -> Result<Vec<TokenMap>> {
        let frames: Vec<&[f32]> = input.frames.iter().map(Vec::as_slice).collect();
        rollout_maps_async(&self.folder.model, &frames, tokens, MapMethod::Rollout).await
    }
}

/// The shared candle model on the CPU.
pub type CpuEngine = ModelEngine<Tensor>;

impl CpuEngine {
    /// Loads a model folder (checks sizes and sha256 of every file against the manifest).
    pub fn load(files: FolderBytes) -> Result<Self> {
        let name = if cfg!(target_arch = "wasm32") {
            "cpu (wasm32 simd128, 1 thread)"
        } else {
            "cpu (native)"
        };
        Ok(Self {
            folder: load_folder(files, &Device::Cpu)?,
            name: name.into(),
        })
    }
}

/// Whichever engine the page got.
pub enum Engine {
    /// The candle model on the CPU.
    Cpu(Box<CpuEngine>),
    /// The WebGPU engine.
    #[cfg(feature = "webgpu")]
    WebGpu(Box<ModelEngine<caption_model::gpu::GpuTensor>>),
}

/// Runs `$body` with `$e` bound to the engine inside, whichever it is.
macro_rules! with_engine {
    ($engine:expr, $e:ident => $body:expr) => {
        match $engine {
            Engine::Cpu($e) => $body,
            #[cfg(feature = "webgpu")]
            Engine::WebGpu($e) => $body,
        }
    };
}

impl Engine {
    /// Shown next to each caption.
    pub fn backend_name(&self) -> &str {
        with_engine!(self, e => e.backend_name())
    }

    /// The loaded model's config.
    pub fn config(&self) -> &ModelConfig {
        with_engine!(self, e => e.config())
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        with_engine!(self, e => e.tokenizer())
    }

    /// What the model was trained on, as its manifest says, if it does.
    pub fn description(&self) -> Option<&str> {
        with_engine!(self, e => e.description())
    }

    /// Captions one picture or clip; `on_tokens` sees the leading hypothesis as it grows.
    pub async fn caption(
        &self,
        input: &Frames,
        opts: &DecodeOptions,
        on_tokens: &mut dyn FnMut(&[u32]),
    ) -> Result<Generated> {
        with_engine!(self, e => e.caption(input, opts, on_tokens).await)
    }

    /// Where each of `tokens` (a caption of `input`, eos left out) looked ([`MapMethod::Rollout`]).
    pub async fn word_maps(&self, input: &Frames, tokens: &[u32]) -> Result<Vec<TokenMap>> {
        with_engine!(self, e => e.word_maps(input, tokens).await)
    }

    /// The preprocessing this model expects.
    pub fn preprocess_config(&self) -> Result<PreprocessConfig> {
        Ok(PreprocessConfig::for_image_size(
            self.config().vision_config()?.image_size,
        ))
    }

    /// Most frames a clip may have (the resampler's time embeddings).
    pub fn max_frames(&self) -> usize {
        caption_model::frame_sampling::model_max_frames(self.config())
    }
}

/// The engine for `backend`, and a notice for the page when another one had to be used.
pub async fn create_engine(backend: Backend, files: FolderBytes<'_>) -> Result<(Engine, Option<String>)> {
    if backend == Backend::WebGpu {
        match webgpu_engine(files).await {
            Ok(engine) => return Ok((engine, None)),
            Err(why) => {
                let notice = format!(
                    "WebGPU is not available here ({why}); captions run on the CPU engine (wasm) instead."
                );
                return Ok((Engine::Cpu(Box::new(CpuEngine::load(files)?)), Some(notice)));
            }
        }
    }
    Ok((Engine::Cpu(Box::new(CpuEngine::load(files)?)), None))
}

/// The WebGPU engine on the first adapter, or why there is none.
#[cfg(feature = "webgpu")]
async fn webgpu_engine(files: FolderBytes<'_>) -> std::result::Result<Engine, String> {
    use caption_model::gpu::{GpuDevice, GpuTensor};
    let device = GpuDevice::new().await.map_err(|e| e.to_string())?;
    let folder =
        caption_model::weights::load_folder_on::<GpuTensor>(files, &device).map_err(|e| e.to_string())?;
    Ok(Engine::WebGpu(Box::new(ModelEngine {
        folder,
        name: format!("webgpu ({})", device.adapter_name()),
    })))
}

/// Without the engine compiled in, WebGPU is never available.
#[cfg(not(feature = "webgpu"))]
async fn webgpu_engine(_: FolderBytes<'_>) -> std::result::Result<Engine, String> {
    Err("this build has no WebGPU engine".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_frames() {
        assert_eq!(even_indices(3, 8), vec![0, 1, 2]);
        assert_eq!(even_indices(10, 4), vec![0, 3, 6, 9]);
        assert_eq!(even_indices(9, 1), vec![4]);
    }

    #[test]
    fn rgba_frames_are_checked() {
        let pre = PreprocessConfig::for_image_size(32);
        let ok = Frames::from_rgba_frames(&[vec![128; 8 * 6 * 4], vec![128; 8 * 6 * 4]], 8, 6, &pre).unwrap();
        assert_eq!(ok.frames.len(), 2);
        assert_eq!(ok.frames[0].len(), 3 * 32 * 32);
        assert!(Frames::from_rgba_frames(&[vec![0; 10]], 8, 6, &pre).is_err());
    }
}
