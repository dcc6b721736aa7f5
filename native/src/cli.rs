//! Command-line arguments.

use std::path::PathBuf;

use anyhow::Result;
use caption_model::backend::Backend;
use caption_model::decode::{DecodeOptions, Strategy};
use caption_model::CaptionModel;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Image and video captioning with CLIP + GPT-2 and a perceiver-resampler bridge.
#[derive(Debug, Parser)]
#[command(name = "native", version, about)]
pub struct Cli {
    /// CPU threads for tensor work (default: one per physical core). Tiny models train faster
    /// on 1: their ops are too small to split across threads.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Caption images and videos (files or folders): one caption per file.
    Caption(CaptionArgs),
    /// Check the model against a fixture directory (config.json, weights.safetensors,
    /// io.safetensors) laid out like ../shared/fixtures/seed/<variant>; exits non-zero on any mismatch.
    Verify {
        /// The fixture directory.
        dir: PathBuf,
        /// Where to run the checks (the tolerances are the same, in f32).
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Train or test as the original's `run.py` does: a config.yaml plus `key.sub=value`
    /// overrides (`mode=train|test`, `name=`, `pretrained_name=`, `resume_pretrained_state=`,
    /// `dataset.train_ds.visual_dir=`, `trainer.exp_dir=`, ...; `+key=value` adds a key).
    Train(TrainArgs),
    /// Score captions: reads a file in ../shared/metrics/cases.json's format and prints, per case,
    /// the COCO metrics (PTB tokens, BLEU-1..4, CIDEr-D, ROUGE-L), Hugging Face evaluate's BLEU and
    /// rouge-score's ROUGE-L, laid out like expected.json.
    Score {
        /// The cases file.
        cases: PathBuf,
    },
    /// Write a synthetic captioning dataset (rendered shapes; optional moving-shape clips) in
    /// COCO, MLSLT and JSONL layouts, plus a word-level tokenizer.json of its captions.
    Synth(crate::synth::SynthArgs),
    /// Export a checkpoint as a model folder (manifest.json, model.safetensors, tokenizer.json)
    /// that `caption --model` and the browser load, in f32, f16, q8 or q4.
    Export(crate::export::ExportArgs),
    /// Check a model folder and list its tensors, storage schemes and sizes.
    Inspect {
        /// The model folder.
        dir: PathBuf,
    },
    /// Get datasets in the layouts the original expects.
    Data {
        /// Which dataset.
        #[command(subcommand)]
        which: DataCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// Datasets to download.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// COCO 2017 images and caption annotations in the original's layout:
    /// `<out>/mscoco/{train2017,val2017}/*.jpg` and `<out>/mscoco/{train2017,val2017}.json`
    /// (about 19 GB). Downloads resume when run again after an interruption; sizes and every
    /// zip entry's CRC-32 are checked; a split already in place is skipped.
    Coco {
        /// The folder that receives `mscoco/` (and `downloads/` while downloading).
        #[arg(long)]
        out: PathBuf,
        /// Splits to get, comma-separated.
        #[arg(long, value_delimiter = ',', default_values = ["train", "val"])]
        splits: Vec<crate::data::coco_download::CocoSplit>,
        /// Where the zips are served (`<base>/zips/train2017.zip`, `<base>/annotations/...`).
        #[arg(long, default_value = crate::data::coco_download::COCO_BASE_URL)]
        base_url: String,
        /// Keep the downloaded zips in `<out>/downloads/` after extracting them.
        #[arg(long)]
        keep_zips: bool,
    },
}

/// `caption` arguments.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Images and videos, or folders of them (videos by extension: mp4, m4v, mov, webm, mkv,
    /// avi, ogv, mpg; decoded with ffmpeg).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Frames captioned per video, taken at the middles of equal spans of its duration (the
    /// page's rule); default 8, at most the model's frame limit (its time embeddings).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Model weights: our checkpoint (.safetensors with its config inside), the original's
    /// state dict as .safetensors, or the original trainer's .pt checkpoint.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub checkpoint: Option<PathBuf>,
    /// An exported model folder (`native export`); a checkpoint file is taken too.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The model config (config.yaml or config.json); needed when the weights carry none.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A tokenizer.json; by default the model folder's, else GPT-2's built-in tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Print a JSON array instead of `file<TAB>caption` lines.
    #[arg(long)]
    pub json: bool,
    /// Images decoded together.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Write each file's attention maps into this folder: `<name>.png` (each word's map over
    /// the picture, a row per video frame) and `<name>.json` (tokens, words, a grid per frame).
    /// Computed after captioning, on the candle engine.
    #[arg(long, value_name = "DIR")]
    pub attention_maps: Option<PathBuf>,
    /// How the maps are computed: rollout (default; attention through the cross-attention and
    /// the resampler), rollout-last, gradient, gradient-input.
    #[arg(long, default_value = "rollout", requires = "attention_maps")]
    pub map_method: caption_model::attention_maps::MapMethod,
    /// Engine: `cpu` (candle), or `webgpu` (the WGSL engine on Vulkan/Metal/DX12; model
    /// folders only).
    #[arg(long, value_enum, default_value_t = EngineName::Cpu)]
    pub backend: EngineName,
    /// Where the candle engine runs (`--backend cpu`).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Decoding settings.
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Where the tensor work runs: `--cuda` or `--device cpu|cuda|cuda:N`, the same on every
/// command that computes.
#[derive(Debug, Clone, Default, Args)]
pub struct DeviceArgs {
    /// Run on the first CUDA GPU (the same as `--device cuda:0`); needs a binary built with
    /// `--features cuda`.
    #[arg(long, conflicts_with = "device")]
    pub cuda: bool,
    /// Where to compute: `cpu` (the default), `cuda` or `cuda:N` (the N-th CUDA GPU).
    #[arg(long, value_name = "cpu|cuda[:N]")]
    pub device: Option<DeviceName>,
}

/// A device as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl std::str::FromStr for DeviceName {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

impl DeviceArgs {
    /// The device named by the flags (the CPU when none is given).
    pub fn name(&self) -> DeviceName {
        match (self.cuda, self.device) {
            (true, _) => DeviceName::Cuda(0),
            (false, Some(d)) => d,
            (false, None) => DeviceName::Cpu,
        }
    }

    /// Whether a CUDA device was asked for.
    pub fn is_cuda(&self) -> bool {
        self.name() != DeviceName::Cpu
    }

    /// Opens the device; a binary without CUDA, or a machine without that GPU, gets one line
    /// that says which.
    pub fn open(&self) -> Result<candle_core::Device> {
        match self.name() {
            DeviceName::Cpu => Ok(candle_core::Device::Cpu),
            DeviceName::Cuda(n) => open_cuda(n),
        }
    }
}

/// The `n`-th CUDA GPU.
#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<candle_core::Device> {
    candle_core::Device::new_cuda(n).map_err(|e| {
        anyhow::anyhow!("--cuda: this machine has no usable CUDA GPU {n} (the CUDA driver says: {e})")
    })
}

/// A binary built without CUDA says so, and how to get one.
#[cfg(not(feature = "cuda"))]
fn open_cuda(_: usize) -> Result<candle_core::Device> {
    anyhow::bail!(
        "--cuda: this binary was built without CUDA; build one with `cargo build --release -p native --features cuda` \
         (README, \"Training on a GPU box\")"
    )
}

/// Which engine runs `caption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineName {
    /// candle on the CPU.
    Cpu,
    /// The WebGPU engine (wgpu on the first adapter).
    Webgpu,
}

/// `train` arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Directory holding the config file.
    #[arg(long = "config-path", alias = "config_path")]
    pub config_path: PathBuf,
    /// Config file name inside --config-path.
    #[arg(long = "config-name", alias = "config_name", default_value = "config.yaml")]
    pub config_name: String,
    /// Overrides, e.g. `name=run1 trainer.epochs=3 dataset.train_ds.json_path=/data/train.json`.
    pub overrides: Vec<String>,
    /// Where to train or test; on CUDA with `trainer.precision=bf16` it computes in bf16 with
    /// f32 master weights.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Decoding strategy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyName {
    /// Arg-max each step.
    Greedy,
    /// Beam search with length-normalised scores.
    Beam,
    /// Nucleus (top-p) sampling.
    Nucleus,
}

/// Decoding settings (defaults are the original's `trainer.test` section).
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Decoding strategy.
    #[arg(long, value_enum, default_value_t = StrategyName::Beam)]
    pub strategy: StrategyName,
    /// Beams kept by beam search.
    #[arg(long, default_value_t = 5)]
    pub beam_width: usize,
    /// Most tokens generated per caption.
    #[arg(long, default_value_t = 100)]
    pub max_length: usize,
    /// Sampling temperature (nucleus).
    #[arg(long, default_value_t = 0.9)]
    pub temperature: f32,
    /// Probability mass kept (nucleus).
    #[arg(long, default_value_t = 0.8)]
    pub top_p: f32,
    /// Keep only the k most likely tokens before top-p (nucleus).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Random seed (nucleus).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DecodeArgs {
    /// The decoder options for `model` (bos/eos from its text config).
    pub fn options<T: Backend>(&self, model: &CaptionModel<T>) -> Result<DecodeOptions> {
        let strategy = match self.strategy {
            StrategyName::Greedy => Strategy::Greedy,
            StrategyName::Beam => Strategy::Beam {
                width: self.beam_width,
            },
            StrategyName::Nucleus => Strategy::Nucleus {
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                seed: self.seed,
            },
        };
        let t = model.config().text_config()?;
        Ok(DecodeOptions {
            strategy,
            max_length: self.max_length,
            bos: t.bos_token_id,
            eos: t.eos_token_id,
        })
    }
}

/// How the caption benchmarks time (`bench caption`, `bench webgpu`).
#[derive(Debug, Clone, Copy, Args)]
pub struct CaptionTiming {
    /// Timed captions per strategy (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Tokens generated per caption (eos is never taken, so every caption has this many).
    #[arg(long, default_value_t = 20)]
    pub tokens: usize,
    /// Beam width of the beam-search run.
    #[arg(long, default_value_t = 5)]
    pub beam_width: usize,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// ms per caption of the full-size default model (random weights, candle on the CPU or a
    /// CUDA GPU): greedy and beam.
    Caption {
        #[command(flatten)]
        timing: CaptionTiming,
        /// Weights as exported: f32, f16, q8 or q4.
        #[arg(long, default_value = "f32")]
        quant: String,
        /// Compute precision of the f32 weights: f32, or bf16 (the model cast to bf16).
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Where to caption.
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// ms per caption of the full-size default model (random weights) on the WebGPU engine
    /// (Vulkan/Metal/DX12 natively), greedy and beam, with the GPU memory the weights take.
    Webgpu {
        #[command(flatten)]
        timing: CaptionTiming,
        /// Weights as exported, comma-separated: f32, f16, q8, q4.
        #[arg(long, value_delimiter = ',', default_value = "q4,q8")]
        quant: Vec<String>,
    },
    /// Images per second of `caption` over a folder of random PNGs (full-size default model,
    /// random weights, greedy), one batch size against others, with the captions checked equal.
    Batch {
        /// Images in the folder.
        #[arg(long, default_value_t = 64)]
        images: usize,
        /// Batch sizes, comma-separated; the first is the reference for the ratios.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        batch_size: Vec<usize>,
        /// Weights as exported, comma-separated: f32, f16, q8, q4.
        #[arg(long, value_delimiter = ',', default_value = "q4,f32")]
        quant: Vec<String>,
        /// Tokens generated per caption (eos is never taken).
        #[arg(long, default_value_t = 20)]
        tokens: usize,
        /// Engine: cpu, or webgpu (Vulkan/Metal/DX12 natively).
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Training throughput (images/s) of the full-size default model (random weights): PNGs
    /// decoded and CLIP run every step, or CLIP features from the feature cache; forward, loss,
    /// backward and AdamW on the bridge.
    Train {
        /// Batch sizes to time, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "32,256")]
        batch: Vec<usize>,
        /// Timed steps per setting (after one warm-up step).
        #[arg(long, default_value_t = 2)]
        steps: usize,
        /// Tokens per caption, bos and eos included.
        #[arg(long, default_value_t = 24)]
        tokens: usize,
        /// Where to train.
        #[command(flatten)]
        device: DeviceArgs,
        /// Compute precision: f32, or bf16 with f32 master weights.
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Training paths to time back to back, comma-separated: `new` (frozen weights get no
        /// gradient; on a GPU the optimizer runs in flat groups) and `old` (candle's plain
        /// products, the optimizer tensor by tensor), for a ratio measured in one run.
        #[arg(long, value_delimiter = ',', default_value = "new")]
        paths: Vec<String>,
    },
    /// Memory read bandwidth (a streaming read far beyond the caches, 1 and N threads): the
    /// ceiling for decoding, which reads the text model's weights once per token.
    Memory {
        /// Buffer size in MB.
        #[arg(long, default_value_t = 1024)]
        mb: usize,
        /// Threads of the parallel run (default: the machine's).
        #[arg(long)]
        threads: Option<usize>,
        /// Passes; the best is reported.
        #[arg(long, default_value_t = 5)]
        iters: usize,
    },
    /// Whether two runs of one training config follow the same train-loss curve (e.g. the CPU
    /// in f32 against CUDA in bf16): the first step's loss, then means over windows of steps,
    /// each within a relative tolerance; exits non-zero when one is not.
    Curves {
        /// The reference run (its folder or its metrics.jsonl).
        reference: PathBuf,
        /// The run compared with it.
        candidate: PathBuf,
        /// Steps per window.
        #[arg(long, default_value_t = 20)]
        window: usize,
        /// Largest relative difference of the first step's loss (the defaults suit bf16
        /// against f32: 8 significant bits, a few roundings deep).
        #[arg(long, default_value_t = 0.02)]
        first_tol: f64,
        /// Largest relative difference of a window's mean loss.
        #[arg(long, default_value_t = 0.05)]
        window_tol: f64,
    },
    /// Pointing accuracy of the attention maps on a `native synth` set: for every colour and
    /// shape word of a correct greedy caption, whether the word's map peaks on an object it
    /// names (by the scenes' recorded centres and radii), per method, with the chance rate.
    Pointing {
        /// The model (folder or checkpoint; a checkpoint needs --tokenizer).
        #[arg(long)]
        model: PathBuf,
        /// The synth set (its `scenes/<split>.json` and `images/<split>/`).
        #[arg(long)]
        scenes: PathBuf,
        /// The split to read.
        #[arg(long, default_value = "test")]
        split: String,
        /// At most this many scenes.
        #[arg(long)]
        limit: Option<usize>,
        /// Methods to measure, comma-separated (rollout, rollout-last, gradient, gradient-input).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "rollout,rollout-last,gradient,gradient-input"
        )]
        methods: Vec<caption_model::attention_maps::MapMethod>,
        /// A tokenizer.json; by default the model folder's.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Most tokens per greedy caption.
        #[arg(long, default_value_t = 30)]
        max_length: usize,
    },
    /// How closely models follow a reference on images: identical greedy captions, top-1
    /// agreement and mean KL divergence of next-token predictions along the reference's greedy
    /// captions (e.g. q8/q4 folders against the f32 export).
    Agreement {
        /// The reference model (folder or checkpoint).
        #[arg(long)]
        reference: PathBuf,
        /// Models to compare (folders or checkpoints); repeat the flag for several.
        #[arg(long, required = true)]
        candidate: Vec<PathBuf>,
        /// Images, or folders of images.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Most tokens generated per caption.
        #[arg(long, default_value_t = 30)]
        max_length: usize,
        /// Where to run both models.
        #[command(flatten)]
        device: DeviceArgs,
    },
}
