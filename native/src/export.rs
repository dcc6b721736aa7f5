//! `native export` (a checkpoint → a model folder) and `native inspect` (a folder's tensors).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use caption_model::tokenizer::{Tokenizer, GPT2_TOKENIZER_JSON};
use caption_model::weights::block_scales::split_block_scales;
use caption_model::weights::{
    check_description, checkpoint_description, export_folder, model_tensors, verify_folder, FolderBytes,
    Manifest, Quant, MANIFEST_FILE, MODEL_FILE,
};
use clap::Args;

use crate::cli::DeviceArgs;
use crate::files::write_atomic;
use crate::load::{load_folder_dir, load_tensors};

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The checkpoint, in any form `caption --checkpoint` takes (hub backbones are filled in).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The model config, when the checkpoint carries none.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The tokenizer.json the model was trained with; GPT-2's by default.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// How matrices are stored: f32 (exact), f16, q8 or q4 (32-value blocks, one f16 scale each).
    #[arg(long, default_value = "q8")]
    pub quant: String,
    /// What the model was trained on and what it knows, in plain text (one paragraph, at most
    /// 600 characters, no `<` `>`): shown beside the model's name in the page and by
    /// `native inspect`. Default: the checkpoint's own description, when it has one.
    #[arg(long)]
    pub description: Option<String>,
    /// The folder to write (created if missing; its model files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Where the checkpoint is read and the written folder loaded back as a check.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The tokenizer file to ship: the given one, or GPT-2's when the vocabulary is GPT-2's.
fn tokenizer_bytes(path: Option<&Path>, vocab: usize) -> Result<Vec<u8>> {
    let bytes = match path {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            let gpt2 = Tokenizer::gpt2()?.vocab_size();
            anyhow::ensure!(
                vocab == gpt2,
                "the model has a {vocab}-token vocabulary, GPT-2's tokenizer {gpt2}: pass --tokenizer \
                 with the tokenizer.json it was trained with"
            );
            GPT2_TOKENIZER_JSON.to_vec()
        }
    };
    Tokenizer::from_bytes(&bytes).context("the tokenizer does not load")?;
    Ok(bytes)
}

/// Exports a checkpoint as a model folder, then loads the folder back as a check. Returns the
/// manifest.
pub fn export(args: &ExportArgs) -> Result<Manifest> {
    let quant: Quant = args.quant.parse()?;
    let device = args.device.open()?;
    let (cfg, tensors) = load_tensors(&args.checkpoint, args.config.as_deref(), &device)?;
    // A quantization-aware run's trained block scales set the blocks of their scheme.
    let (tensors, scales) = split_block_scales(tensors);
    let tensors = model_tensors(&cfg, tensors, &device)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let tokenizer = tokenizer_bytes(args.tokenizer.as_deref(), cfg.text_config()?.vocab_size)?;
    let description = match &args.description {
        Some(d) => Some(d.trim().to_string()),
        None => stored_description(&args.checkpoint)?,
    };
    let mut folder = export_folder(&cfg, tensors.into_iter().chain(scales), quant, &tokenizer)?;
    folder
        .set_description(description.as_deref())
        .context("--description")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let manifest = verify_folder(folder.as_bytes())?;
    // The manifest goes last: until it is there, the folder is not a model folder.
    let _ = std::fs::remove_file(args.out.join(MANIFEST_FILE));
    write_atomic(&args.out.join(MODEL_FILE), &folder.model)?;
    write_atomic(&args.out.join(&manifest.tokenizer), &folder.tokenizer)?;
    write_atomic(&args.out.join(MANIFEST_FILE), &folder.manifest)?;
    load_folder_dir(&args.out, &device).context("the written folder does not load back")?;
    Ok(manifest)
}

/// The description a safetensors checkpoint carries (none for `.pt` files, for checkpoints
/// written before descriptions existed, or one that would not be accepted in a manifest, which
/// is then left out with a warning). Reads only the file's header.
fn stored_description(checkpoint: &Path) -> Result<Option<String>> {
    if matches!(
        checkpoint.extension().and_then(|e| e.to_str()),
        Some("pt" | "pth")
    ) {
        return Ok(None);
    }
    let mut file =
        std::fs::File::open(checkpoint).with_context(|| format!("reading {}", checkpoint.display()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .with_context(|| format!("{}: not a safetensors file", checkpoint.display()))?;
    // The header is bounded by the file; a claim beyond it is the loader's error to report.
    let header_len = u64::from_le_bytes(len).min(file.metadata()?.len());
    let mut head = len.to_vec();
    file.take(header_len).read_to_end(&mut head)?;
    let Ok(Some(d)) = checkpoint_description(&head) else {
        return Ok(None);
    };
    match check_description(&d) {
        Ok(()) => Ok(Some(d)),
        Err(why) => {
            eprintln!(
                "warning: {}: its description is left out of the manifest ({why})",
                checkpoint.display()
            );
            Ok(None)
        }
    }
}

/// Human-readable byte count.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// The table `native inspect` prints: every tensor with its scheme, then totals per scheme.
pub fn inspect_table(manifest: &Manifest, manifest_bytes: u64) -> String {
    let mut out = String::new();
    let width = manifest.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4);
    out.push_str(&format!(
        "format {} v{}, quant {}, tokenizer {}\n",
        manifest.format, manifest.format_version, manifest.quant, manifest.tokenizer
    ));
    out.push_str(&format!(
        "description: {}\n",
        manifest.description.as_deref().unwrap_or("(none)")
    ));
    out.push_str(&format!(
        "{:<width$}  {:<6}  {:<18}  {:>10}\n",
        "tensor", "scheme", "shape", "bytes"
    ));
    let mut per_scheme: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    for t in &manifest.tensors {
        let scheme = format!("{:?}", t.scheme).to_lowercase();
        let shape = format!("{:?}{}", t.shape, if t.transposed { "ᵀ" } else { "" });
        out.push_str(&format!(
            "{:<width$}  {scheme:<6}  {shape:<18}  {:>10}\n",
            t.name, t.bytes
        ));
        let e = per_scheme.entry(scheme).or_default();
        e.0 += 1;
        e.1 += t.shape.iter().product::<usize>() as u64;
        e.2 += t.bytes;
    }
    out.push('\n');
    for (scheme, (n, params, bytes)) in &per_scheme {
        out.push_str(&format!(
            "{scheme:<6} {n:>4} tensors {:>8.2} M values {:>10}\n",
            *params as f64 / 1e6,
            human(*bytes)
        ));
    }
    for f in &manifest.files {
        out.push_str(&format!(
            "{:<18} {:>10}  sha256 {}\n",
            f.name,
            human(f.bytes),
            f.sha256
        ));
    }
    let total = manifest.files_bytes() + manifest_bytes;
    out.push_str(&format!(
        "{MANIFEST_FILE:<18} {:>10}\ntotal folder size {} ({total} bytes)\n",
        human(manifest_bytes),
        human(total)
    ));
    out
}

/// Checks a folder (manifest, sizes, checksums, tensor list) and returns its table.
pub fn inspect(dir: &Path) -> Result<String> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let manifest_bytes = read(MANIFEST_FILE)?;
    let model = read(MODEL_FILE)?;
    let tokenizer_name = caption_model::weights::parse_manifest(&manifest_bytes)
        .map(|m| m.tokenizer)
        .map_err(caption_model::Error::from)?;
    let tokenizer = read(&tokenizer_name)?;
    let manifest = verify_folder(FolderBytes {
        manifest: &manifest_bytes,
        model: &model,
        tokenizer: &tokenizer,
    })
    .with_context(|| format!("checking {}", dir.display()))?;
    Ok(inspect_table(&manifest, manifest_bytes.len() as u64))
}
