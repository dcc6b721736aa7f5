//! Model folders: `manifest.json` + `model.safetensors` + `tokenizer.json`, the one export that
//! the CLI and the browser both load. Everything works on bytes (no filesystem), so the loader
//! builds for wasm32; the storage schemes are described in [`super::quant`].

use std::borrow::Cow;
use std::collections::HashMap;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::block_scales::{encode_with_scales, scale_name, split_block_scales};
use super::manifest::{
    check_description, FileEntry, FolderError, Manifest, TensorEntry, FOLDER_FORMAT, FOLDER_VERSION,
    MODEL_FILE, TOKENIZER_FILE,
};
use super::quant::{encode, plan, split_quantized, stored_name, Layout, Quant, Scheme};
use super::quant_store::{LookupFailure, QuantStore};
use super::var_builder;
use crate::backend::{Backend, ModelVb};
use crate::config::ModelConfig;
use crate::model::CaptionModel;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The three files of a model folder, in memory.
#[derive(Debug, Clone, Copy)]
pub struct FolderBytes<'a> {
    /// `manifest.json`.
    pub manifest: &'a [u8],
    /// `model.safetensors`.
    pub model: &'a [u8],
    /// The tokenizer file the manifest names.
    pub tokenizer: &'a [u8],
}

/// A freshly exported folder's files.
#[derive(Debug, Clone)]
pub struct ExportedFolder {
    /// `manifest.json`.
    pub manifest: Vec<u8>,
    /// `model.safetensors`.
    pub model: Vec<u8>,
    /// `tokenizer.json`.
    pub tokenizer: Vec<u8>,
}

impl ExportedFolder {
    /// Sets (or, with `None`, removes) the manifest's description; the model and tokenizer
    /// files, and so their checksums, are untouched. An invalid description is refused with
    /// [`check_description`]'s reason.
    pub fn set_description(&mut self, description: Option<&str>) -> Result<()> {
        if let Some(d) = description {
            check_description(d).map_err(|e| Error::Weights(format!("description: {e}")))?;
        }
        let mut manifest = parse_manifest(&self.manifest).map_err(Error::from)?;
        manifest.description = description.map(str::to_string);
        self.manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Weights(e.to_string()))?;
        Ok(())
    }

    /// The files as [`FolderBytes`].
    pub fn as_bytes(&self) -> FolderBytes<'_> {
        FolderBytes {
            manifest: &self.manifest,
            model: &self.model,
            tokenizer: &self.tokenizer,
        }
    }
}

/// A loaded folder: the model, its tokenizer and the manifest.
#[derive(Debug, Clone)]
pub struct LoadedFolder<T: Backend = Tensor> {
    /// The model.
    pub model: CaptionModel<T>,
    /// The folder's tokenizer.
    pub tokenizer: Tokenizer,
    /// The manifest.
    pub manifest: Manifest,
}

/// One stored entry, as safetensors serialises it.
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &Entry {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a model folder in memory: every tensor in the scheme `quant` gives it (see
/// [`super::quant::plan`]), the manifest with offsets and checksums, and the tokenizer, checked
/// and re-serialised without whitespace (GPT-2's shrinks from 3.5 to 1.6 MB).
/// `tensors` are state-dict names and shapes: exactly what the model needs, nothing more, plus
/// any trained block scales (see [`super::block_scales`]), which set the blocks of their scheme.
pub fn export_folder(
    cfg: &ModelConfig,
    tensors: impl IntoIterator<Item = (String, Tensor)>,
    quant: Quant,
    tokenizer_json: &[u8],
) -> Result<ExportedFolder> {
    let tokenizer: serde_json::Value = serde_json::from_slice(tokenizer_json)
        .map_err(|e| Error::Tokenizer(format!("the tokenizer is not JSON: {e}")))?;
    let tokenizer_json = serde_json::to_vec(&tokenizer).map_err(|e| Error::Tokenizer(e.to_string()))?;
    Tokenizer::from_bytes(&tokenizer_json)?;
    let mut layouts = HashMap::new();
    let mut entries = Vec::new();
    let (tensors, scales): (Vec<_>, Vec<_>) = split_block_scales(tensors);
    let scales: HashMap<String, Tensor> = scales.into_iter().collect();
    for (name, t) in tensors {
        let layout = plan(&name, t.dims(), quant);
        let trained = scale_name(&name, layout.scheme).and_then(|n| scales.get(&n));
        let data = match trained {
            Some(s) => {
                encode_with_scales(&t, &layout, s).map_err(|e| Error::Weights(format!("`{name}`: {e}")))?
            }
            None => encode(&t, &layout)?,
        };
        let shape = match layout.scheme {
            Scheme::F32 | Scheme::F16 => layout.shape.clone(),
            q => vec![layout.matrix[0], q.row_bytes(layout.matrix[1]).unwrap_or(0)],
        };
        let stored = stored_name(&name, layout.scheme);
        entries.push((
            stored,
            Entry {
                dtype: layout.scheme.dtype(),
                shape,
                data,
            },
        ));
        layouts.insert(name, layout);
    }
    let meta = HashMap::from([("format".to_string(), FOLDER_FORMAT.to_string())]);
    let model = safetensors::serialize(entries.iter().map(|(n, e)| (n.as_str(), e)), Some(meta))
        .map_err(|e| Error::Weights(format!("serialising {MODEL_FILE}: {e}")))?;
    let (header, metadata) = safetensors::SafeTensors::read_metadata(&model)
        .map_err(|e| Error::Weights(format!("re-reading {MODEL_FILE}: {e}")))?;
    let mut listed: Vec<TensorEntry> = layouts
        .into_iter()
        .map(|(name, layout)| {
            let stored_as = stored_name(&name, layout.scheme);
            let info = metadata
                .info(&stored_as)
                .ok_or_else(|| Error::Weights(format!("`{stored_as}` vanished from {MODEL_FILE}")))?;
            let (start, end) = info.data_offsets;
            Ok(TensorEntry {
                offset: (8 + header + start) as u64,
                bytes: (end - start) as u64,
                name,
                stored_as,
                scheme: layout.scheme,
                shape: layout.shape,
                transposed: layout.transposed,
            })
        })
        .collect::<Result<_>>()?;
    listed.sort_by_key(|t| t.offset);
    let file = |name: &str, bytes: &[u8]| FileEntry {
        name: name.to_string(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    };
    let manifest = Manifest {
        format: FOLDER_FORMAT.to_string(),
        format_version: FOLDER_VERSION,
        quant,
        model_config: cfg.clone(),
        tokenizer: TOKENIZER_FILE.to_string(),
        description: None,
        files: vec![file(MODEL_FILE, &model), file(TOKENIZER_FILE, &tokenizer_json)],
        tensors: listed,
    };
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Weights(e.to_string()))?;
    Ok(ExportedFolder {
        manifest,
        model,
        tokenizer: tokenizer_json,
    })
}

/// Parses and checks the manifest: format and version first, so that a newer layout is named
/// as such rather than reported as a parse error.
pub fn parse_manifest(bytes: &[u8]) -> std::result::Result<Manifest, FolderError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| FolderError::Manifest(format!("not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FOLDER_FORMAT) {
        return Err(FolderError::Manifest(format!(
            "not a model folder manifest (no \"format\": \"{FOLDER_FORMAT}\")"
        )));
    }
    match value.get("format_version") {
        Some(v) if v.as_u64() == Some(FOLDER_VERSION as u64) => {}
        other => {
            return Err(FolderError::Version {
                found: other.map_or("(none)".to_string(), |v| v.to_string()),
                supported: FOLDER_VERSION,
            })
        }
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| FolderError::Manifest(e.to_string()))?;
    if let Some(d) = &manifest.description {
        check_description(d).map_err(|e| FolderError::Manifest(format!("\"description\": {e}")))?;
    }
    Ok(manifest)
}

/// Checks a file against its manifest entry: size first (truncation), then checksum.
fn check_file(manifest: &Manifest, name: &str, bytes: &[u8]) -> std::result::Result<(), FolderError> {
    let entry = manifest
        .file(name)
        .ok_or_else(|| FolderError::Manifest(format!("no entry for {name} in \"files\"")))?;
    if entry.bytes != bytes.len() as u64 {
        return Err(FolderError::Size {
            file: name.to_string(),
            actual: bytes.len() as u64,
            expected: entry.bytes,
        });
    }
    let actual = sha256_hex(bytes);
    if actual != entry.sha256 {
        return Err(FolderError::Checksum {
            file: name.to_string(),
            actual,
            expected: entry.sha256.clone(),
        });
    }
    Ok(())
}

/// Checks one manifest entry against the safetensors header.
fn check_entry(
    t: &TensorEntry,
    info: &safetensors::tensor::TensorInfo,
    data_start: usize,
) -> std::result::Result<(), FolderError> {
    let mismatch = |what: String| FolderError::Mismatch(format!("`{}`: {what}", t.stored_as));
    if t.stored_as != stored_name(&t.name, t.scheme) {
        return Err(mismatch(format!(
            "a {:?} tensor must be stored as `{}`",
            t.scheme,
            stored_name(&t.name, t.scheme)
        )));
    }
    if info.dtype != t.scheme.dtype() {
        return Err(mismatch(format!(
            "dtype {:?}, the scheme {:?} needs {:?}",
            info.dtype,
            t.scheme,
            t.scheme.dtype()
        )));
    }
    let layout = plan_of(t)?;
    let expected = match t.scheme {
        Scheme::F32 | Scheme::F16 => t.shape.clone(),
        q => vec![layout.matrix[0], q.row_bytes(layout.matrix[1]).unwrap_or(0)],
    };
    if info.shape != expected {
        return Err(FolderError::Shape {
            name: t.stored_as.clone(),
            expected,
            found: info.shape.clone(),
        });
    }
    let (start, end) = info.data_offsets;
    if (data_start + start) as u64 != t.offset || (end - start) as u64 != t.bytes {
        return Err(mismatch(format!(
            "data at {}..{}, the manifest says {}..{}",
            data_start + start,
            data_start + end,
            t.offset,
            t.offset.saturating_add(t.bytes)
        )));
    }
    Ok(())
}

/// The stored layout a manifest entry describes.
fn plan_of(t: &TensorEntry) -> std::result::Result<Layout, FolderError> {
    let bad = |what: &str| FolderError::Manifest(format!("tensor `{}`: {what}", t.name));
    let matrix = match (t.scheme, t.transposed, t.shape.as_slice()) {
        (Scheme::F32 | Scheme::F16, false, s) => s.to_vec(),
        (Scheme::F32 | Scheme::F16, true, _) => {
            return Err(bad("only quantized matrices are stored transposed"))
        }
        (_, true, [a, b]) => vec![*b, *a],
        (_, false, [rows, rest @ ..]) if !rest.is_empty() => {
            let cols = rest.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
            vec![*rows, cols.ok_or_else(|| bad("shape overflows"))?]
        }
        _ => return Err(bad("a quantized tensor must be a matrix")),
    };
    if matches!(t.scheme, Scheme::Q8_0 | Scheme::Q4_0) && t.scheme.row_bytes(matrix[1]).is_none() {
        return Err(bad("the rows are not whole 32-value blocks"));
    }
    Ok(Layout {
        scheme: t.scheme,
        transposed: t.transposed,
        matrix,
        shape: t.shape.clone(),
    })
}

/// Checks a folder without building the model: manifest format and version, file sizes and
/// checksums, and every tensor of the manifest against `model.safetensors` (and back).
pub fn verify_folder(files: FolderBytes) -> Result<Manifest> {
    let manifest = parse_manifest(files.manifest)?;
    check_file(&manifest, MODEL_FILE, files.model)?;
    check_file(&manifest, &manifest.tokenizer, files.tokenizer)?;
    let (header, metadata) = safetensors::SafeTensors::read_metadata(files.model)
        .map_err(|e| FolderError::Mismatch(format!("unreadable header: {e}")))?;
    let infos = metadata.tensors();
    for t in &manifest.tensors {
        let info = infos
            .get(&t.stored_as)
            .ok_or_else(|| FolderError::MissingTensor(t.stored_as.clone()))?;
        check_entry(t, info, 8 + header)?;
    }
    if infos.len() != manifest.tensors.len() {
        let listed: std::collections::HashSet<&str> =
            manifest.tensors.iter().map(|t| t.stored_as.as_str()).collect();
        let extra = infos
            .keys()
            .find(|k| !listed.contains(k.as_str()))
            .cloned()
            .unwrap_or_default();
        return Err(FolderError::Mismatch(format!(
            "`{extra}` is not in the manifest (or a tensor is listed twice)"
        ))
        .into());
    }
    Ok(manifest)
}

/// Loads a model folder after [`verify_folder`]'s checks; refuses tensors the model does not
/// use, so that a folder never silently loads into another config.
pub fn load_folder(files: FolderBytes, device: &Device) -> Result<LoadedFolder> {
    load_folder_with(files, device, ModelVb::candle)
}

/// [`load_folder`] onto another backend: the tensors are read on the CPU and handed to `device`
/// (a GPU engine keeps quantized matrices in their blocks).
pub fn load_folder_on<T: Backend>(files: FolderBytes, device: &T::Device) -> Result<LoadedFolder<T>> {
    load_folder_with(files, &Device::Cpu, |vb| ModelVb::new(vb, device.clone()))
}

/// Loads a folder with its tensors on `device`, building the model through `to_model_vb`.
fn load_folder_with<'a, T: Backend>(
    files: FolderBytes,
    device: &Device,
    to_model_vb: impl FnOnce(candle_nn::VarBuilder<'a>) -> ModelVb<'a, T>,
) -> Result<LoadedFolder<T>> {
    let manifest = verify_folder(files)?;
    let tokenizer = Tokenizer::from_bytes(files.tokenizer)?;
    let entries = candle_core::safetensors::load_buffer(files.model, device)
        .map_err(|e| FolderError::Mismatch(format!("unreadable tensors: {e}")))?;
    let layouts = manifest
        .tensors
        .iter()
        .filter(|t| split_quantized(&t.stored_as).is_some())
        .map(|t| Ok((t.name.clone(), plan_of(t)?)))
        .collect::<std::result::Result<HashMap<_, _>, FolderError>>()?;
    let store = QuantStore::new(entries, layouts);
    let model = CaptionModel::load(
        &manifest.model_config,
        to_model_vb(var_builder(store.clone(), candle_core::DType::F32, device)),
    );
    let model = match (model, store.failure()) {
        (Ok(m), _) => m,
        (Err(_), Some(LookupFailure::Missing(n))) => return Err(FolderError::MissingTensor(n).into()),
        (
            Err(_),
            Some(LookupFailure::Shape {
                name,
                expected,
                found,
            }),
        ) => {
            return Err(FolderError::Shape {
                name,
                expected,
                found,
            }
            .into())
        }
        (Err(e), None) => return Err(e),
    };
    if let Some(extra) = store.unused().first() {
        return Err(FolderError::Mismatch(format!(
            "`{extra}` is not used by a model of the manifest's config"
        ))
        .into());
    }
    Ok(LoadedFolder {
        model,
        tokenizer,
        manifest,
    })
}
