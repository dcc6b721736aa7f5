//! Weight files: the original's safetensors/`.pt` state dicts, Hugging Face hub backbones,
//! and our own checkpoint (safetensors with the config in its metadata).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::config::ModelConfig;
use crate::{Error, Result};

/// Prefix of the vision tower in the original's names.
pub const VISION_PREFIX: &str = "vision_encoder.vision.";
/// Prefix of GPT-2's transformer in the original's names.
pub const TEXT_PREFIX: &str = "text_generator.lm.transformer.";
/// The tied LM head's name in the original's state dict.
pub const LM_HEAD: &str = "text_generator.lm.lm_head.weight";
/// `format` metadata value of our checkpoints.
pub const CHECKPOINT_FORMAT: &str = "caption-model";
/// Version of our checkpoint layout.
pub const CHECKPOINT_VERSION: &str = "1";

/// All tensors of a safetensors file.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_safetensors_bytes(&bytes, device).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
}

/// All tensors of a safetensors buffer. The header's claims are checked against the buffer
/// (see [`check_safetensors_sizes`]) before any tensor is allocated.
pub fn read_safetensors_bytes(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>> {
    check_safetensors_sizes(bytes)?;
    candle_core::safetensors::load_buffer(bytes, device).map_err(|e| Error::Weights(e.to_string()))
}

/// Refuses a safetensors buffer whose header claims more than the buffer holds: a header
/// longer than the file, or a tensor whose shape and dtype need more bytes than the file's
/// data section (the error names the tensor, its claim and the bytes present). Reads only
/// the header; allocates nothing in proportion to any claim.
pub fn check_safetensors_sizes(bytes: &[u8]) -> Result<()> {
    let bad = |m: String| Err(Error::Weights(format!("not a valid safetensors file: {m}")));
    let Some((len, rest)) = bytes.split_first_chunk::<8>() else {
        return bad(format!(
            "{} bytes, shorter than the 8-byte header length",
            bytes.len()
        ));
    };
    let header_len = u64::from_le_bytes(*len);
    if header_len > rest.len() as u64 {
        return bad(format!(
            "the header claims {header_len} bytes but only {} follow",
            rest.len()
        ));
    }
    let (header, data) = rest.split_at(header_len as usize);
    let Ok(header) = serde_json::from_slice::<HashMap<String, serde_json::Value>>(header) else {
        // Malformed headers are described by the safetensors reader itself.
        return Ok(());
    };
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let Some(bits) = safetensors_dtype_bits(dtype) else {
            continue;
        };
        let Some(shape) = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64()).collect::<Option<Vec<u64>>>())
        else {
            continue;
        };
        let claimed = shape
            .iter()
            .try_fold(bits, |a, &d| a.checked_mul(u128::from(d)))
            .map(|b| b.div_ceil(8));
        match claimed {
            Some(b) if b <= data.len() as u128 => {}
            Some(b) => {
                return bad(format!(
                    "tensor `{name}` claims shape {shape:?} of {dtype} ({b} bytes) but the file holds {} bytes of tensor data",
                    data.len()
                ))
            }
            None => return bad(format!("tensor `{name}`: shape {shape:?} overflows")),
        }
    }
    Ok(())
}

/// Bits per element of a safetensors dtype name.
fn safetensors_dtype_bits(dtype: &str) -> Option<u128> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "U16" | "I16" | "F16" | "BF16" => 16,
        "U32" | "I32" | "F32" => 32,
        "U64" | "I64" | "F64" | "C64" => 64,
        _ => return None,
    })
}

/// The `model_state_dict` of a checkpoint written by the original trainer (`torch.save` zip).
/// Only tensor data is read; the pickle is interpreted, never executed, and every size it
/// claims is checked against the file before anything is allocated for it.
pub fn read_original_pt(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    pt_tensors(std::io::BufReader::new(file)).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
}

/// [`read_original_pt`] of a file's bytes.
pub fn read_original_pt_bytes(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    pt_tensors(std::io::Cursor::new(bytes)).map_err(Error::Weights)
}

fn pt_tensors<R: std::io::Read + std::io::Seek>(
    reader: R,
) -> std::result::Result<HashMap<String, Tensor>, String> {
    let tensors = super::pt::read_pt(reader, "model_state_dict")
        .map_err(|e| format!("not a readable PyTorch checkpoint: {e}"))?;
    if tensors.is_empty() {
        return Err("no `model_state_dict` tensors found".into());
    }
    Ok(tensors)
}

/// Renames a hub `CLIPModel`/`CLIPVisionModel` file's tensors to the original's names,
/// keeping only the vision tower.
pub fn clip_hub_to_original(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter(|(k, _)| k.starts_with("vision_model."))
        .map(|(k, v)| (format!("{VISION_PREFIX}{k}"), v))
        .collect()
}

/// Renames a hub GPT-2 file's tensors (with or without the `transformer.` prefix) to the
/// original's names: block `i` goes under `h.i.lm_block` when it has cross-attention. The
/// legacy causal-mask buffers and a stored tied `lm_head` are dropped.
pub fn gpt2_hub_to_original(tensors: HashMap<String, Tensor>, cfg: &ModelConfig) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.strip_prefix("transformer.").unwrap_or(&k).to_string();
            if k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias") || k == "lm_head.weight" {
                return None;
            }
            let renamed = match k.strip_prefix("h.").and_then(|r| r.split_once('.')) {
                Some((i, rest)) if i.parse::<usize>().is_ok_and(|i| cfg.has_xattn(i)) => {
                    format!("{TEXT_PREFIX}h.{i}.lm_block.{rest}")
                }
                _ => format!("{TEXT_PREFIX}{k}"),
            };
            Some((renamed, v))
        })
        .collect()
}

/// Writes our checkpoint: the tensors plus the model config as JSON in the metadata. The file
/// is written beside the target and renamed into place, so a crash never leaves half a file.
pub fn save_checkpoint(path: &Path, cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let config = serde_json::to_string(cfg).map_err(|e| Error::Config(e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("format_version".to_string(), CHECKPOINT_VERSION.to_string()),
        ("model_config".to_string(), config),
    ]);
    let tmp = path.with_extension("safetensors.tmp");
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    safetensors::serialize_to_file(&cpu, Some(metadata), &tmp)
        .map_err(|e| Error::Weights(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The model config stored in one of our checkpoints, or None for a plain safetensors file.
pub fn checkpoint_config(bytes: &[u8]) -> Result<Option<ModelConfig>> {
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights(e.to_string()))?;
    let Some(meta) = meta.metadata() else {
        return Ok(None);
    };
    if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Ok(None);
    }
    match meta.get("format_version").map(String::as_str) {
        Some(CHECKPOINT_VERSION) => {}
        other => {
            return Err(Error::Weights(format!(
                "checkpoint format version {other:?} is not supported (expected {CHECKPOINT_VERSION})"
            )))
        }
    }
    let cfg = meta
        .get("model_config")
        .ok_or_else(|| Error::Weights("checkpoint metadata has no model_config".into()))?;
    ModelConfig::from_str_any(cfg).map(Some)
}

/// Metadata key of a checkpoint's description (what it was trained on), which `native export`
/// copies into the model folder's manifest.
pub const CHECKPOINT_DESCRIPTION_KEY: &str = "description";

/// The description stored in a safetensors checkpoint's metadata, if any (checkpoints written
/// before it existed have none). `bytes` is the file or just its start: the 8-byte header
/// length and the JSON header are all that is read.
pub fn checkpoint_description(bytes: &[u8]) -> Result<Option<String>> {
    let bad = |why: &str| Error::Weights(format!("safetensors header: {why}"));
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("shorter than 8 bytes"))?;
    let end = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|n| n.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| bad("its length runs past the data"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| bad(&format!("not JSON: {e}")))?;
    Ok(header
        .get("__metadata__")
        .and_then(|m| m.get(CHECKPOINT_DESCRIPTION_KEY))
        .and_then(|d| d.as_str())
        .map(str::to_string))
}
