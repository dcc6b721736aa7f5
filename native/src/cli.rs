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
    /// Caption images (files or folders): one caption per image.
    Caption(CaptionArgs),
    /// Check the model against a fixture directory (config.json, weights.safetensors,
    /// io.safetensors) laid out like ../shared/fixtures/seed/<variant>; exits non-zero on any mismatch.
    Verify {
        /// The fixture directory.
        dir: PathBuf,
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
    /// Benchmarks that print figures.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// `caption` arguments.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Images, or folders of images.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
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
    /// Engine: `cpu` (candle), or `webgpu` (the WGSL engine on Vulkan/Metal/DX12; model
    /// folders only).
    #[arg(long, value_enum, default_value_t = EngineName::Cpu)]
    pub backend: EngineName,
    /// Decoding settings.
    #[command(flatten)]
    pub decode: DecodeArgs,
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
    /// Run on the first CUDA GPU (a binary built with `--features cuda`); with
    /// `trainer.precision=bf16` it computes in bf16 with f32 master weights.
    #[arg(long)]
    pub cuda: bool,
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
    /// ms per caption of the full-size default model (random weights, CPU): greedy and beam.
    Caption {
        #[command(flatten)]
        timing: CaptionTiming,
        /// Weights as exported: f32, f16, q8 or q4.
        #[arg(long, default_value = "f32")]
        quant: String,
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
        /// Train on the first CUDA GPU (a binary built with `--features cuda`).
        #[arg(long)]
        cuda: bool,
        /// Compute precision: f32, or bf16 with f32 master weights.
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Training paths to time back to back, comma-separated: `new` (frozen weights get no
        /// gradient; on a GPU the optimizer runs in flat groups) and `old` (candle's plain
        /// products, the optimizer tensor by tensor), for a ratio measured in one run.
        #[arg(long, value_delimiter = ',', default_value = "new")]
        paths: Vec<String>,
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
    },
}
