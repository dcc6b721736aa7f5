//! Per-tensor storage schemes of an exported model folder and the GGML block codecs.
//!
//! # Naming convention (model folder format version 1)
//!
//! Every tensor of the model's state dict is stored in `model.safetensors` in exactly one
//! scheme, which the safetensors dtype and the entry's name state together:
//!
//! | scheme | entry name | dtype | entry shape |
//! |---|---|---|---|
//! | `f32` | `<name>` | F32 | the state-dict shape |
//! | `f16` | `<name>` | F16 | the state-dict shape |
//! | `q8_0` | `<name>.q8_0` | U8 | `[rows, cols / 32 * 34]` |
//! | `q4_0` | `<name>.q4_0` | U8 | `[rows, cols / 32 * 18]` |
//!
//! A quantized entry holds the raw GGML blocks (GGUF `Q8_0`/`Q4_0`): 32 values per block, one
//! f16 scale first, then 32 signed bytes (q8) or 16 bytes of nibbles biased by 8, no minimum (q4).
//! The matrix is `[rows, cols]` with the blocks along `cols`, the dimension a matmul reduces
//! over: `rows` = the first state-dict dim, `cols` = the product of the others (PyTorch's
//! `[out, fan_in]`, e.g. `[768, 3·32·32]` for CLIP's patch convolution), except for
//! GPT-2's `Conv1D` weights (stored `[in, out]` in the state dict), which are quantized
//! transposed (`[out, in]`) and marked `transposed` in the manifest. The manifest records every
//! tensor's state-dict shape, so nothing is guessed from sizes.
//!
//! Each block's scale is the writer's choice (the search of [`super::q4_search`] for q4, GGML's
//! for q8, or scales trained with the weights, [`super::block_scales`]); readers only decode.
//!
//! Rank-1 tensors (norms, biases, gates, CLIP's class embedding) always stay f32. With `q8`/`q4`,
//! a matrix whose `cols` is not a multiple of 32 is kept in f16 instead.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::weights::TEXT_PREFIX;
use crate::{Error, Result};

/// Values per quantization block (GGML `QK8_0` = `QK4_0`).
pub const BLOCK: usize = 32;

/// The export setting: how the model's matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    /// Everything f32 (bit-exact).
    F32,
    /// Matrices f16.
    F16,
    /// Matrices in 8-bit blocks.
    Q8,
    /// Matrices in 4-bit blocks.
    Q4,
}

impl std::str::FromStr for Quant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Quant::F32),
            "f16" => Ok(Quant::F16),
            "q8" => Ok(Quant::Q8),
            "q4" => Ok(Quant::Q4),
            other => Err(Error::Config(format!(
                "unknown quantization `{other}` (expected f32, f16, q8 or q4)"
            ))),
        }
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quant::F32 => "f32",
            Quant::F16 => "f16",
            Quant::Q8 => "q8",
            Quant::Q4 => "q4",
        })
    }
}

/// How one tensor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Dense f32.
    F32,
    /// Dense f16.
    F16,
    /// GGML `Q8_0` blocks.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// GGML `Q4_0` blocks.
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl Scheme {
    /// The quantized schemes, in the order a loader looks for them.
    pub const QUANTIZED: [Scheme; 2] = [Scheme::Q8_0, Scheme::Q4_0];

    /// Name suffix of a quantized entry (`q8_0`, `q4_0`); None for dense schemes.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Scheme::Q8_0 => Some("q8_0"),
            Scheme::Q4_0 => Some("q4_0"),
            Scheme::F32 | Scheme::F16 => None,
        }
    }

    /// The safetensors dtype of the entry.
    pub fn dtype(self) -> safetensors::Dtype {
        match self {
            Scheme::F32 => safetensors::Dtype::F32,
            Scheme::F16 => safetensors::Dtype::F16,
            Scheme::Q8_0 | Scheme::Q4_0 => safetensors::Dtype::U8,
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            Scheme::F32 => GgmlDType::F32,
            Scheme::F16 => GgmlDType::F16,
            Scheme::Q8_0 => GgmlDType::Q8_0,
            Scheme::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// Bytes of one row of `cols` values; None when `cols` does not fit the scheme's blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        match self {
            Scheme::F32 => cols.checked_mul(4),
            Scheme::F16 => cols.checked_mul(2),
            Scheme::Q8_0 | Scheme::Q4_0 if cols.is_multiple_of(BLOCK) => {
                (cols / BLOCK).checked_mul(self.ggml().type_size())
            }
            _ => None,
        }
    }
}

/// The entry name of tensor `name` stored in `scheme`.
pub fn stored_name(name: &str, scheme: Scheme) -> String {
    match scheme.suffix() {
        Some(s) => format!("{name}.{s}"),
        None => name.to_string(),
    }
}

/// Splits a quantized entry name into the tensor's name and its scheme.
pub fn split_quantized(stored: &str) -> Option<(&str, Scheme)> {
    Scheme::QUANTIZED.into_iter().find_map(|s| {
        let suffix = s.suffix()?;
        let base = stored.strip_suffix(suffix)?.strip_suffix('.')?;
        Some((base, s))
    })
}

/// Whether `name` is one of GPT-2's `Conv1D` weights (stored `[in, out]`), which are quantized
/// transposed so that the blocks run along the input dimension, as a matmul needs.
pub fn is_conv1d_weight(name: &str) -> bool {
    const CONV1D: [&str; 4] = [
        ".attn.c_attn.weight",
        ".attn.c_proj.weight",
        ".mlp.c_fc.weight",
        ".mlp.c_proj.weight",
    ];
    name.starts_with(TEXT_PREFIX) && CONV1D.iter().any(|s| name.ends_with(s))
}

/// Where and how one tensor is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The storage scheme.
    pub scheme: Scheme,
    /// Whether the stored matrix is the transpose of the state-dict tensor.
    pub transposed: bool,
    /// The stored matrix `[rows, cols]` (blocks along cols); the state-dict shape when dense.
    pub matrix: Vec<usize>,
    /// The tensor's shape in the state dict (what the model asks for).
    pub shape: Vec<usize>,
}

/// The layout tensor `name` of state-dict shape `shape` gets under the export setting `quant`.
pub fn plan(name: &str, shape: &[usize], quant: Quant) -> Layout {
    let dense = |scheme| Layout {
        scheme,
        transposed: false,
        matrix: shape.to_vec(),
        shape: shape.to_vec(),
    };
    if shape.len() < 2 || quant == Quant::F32 {
        return dense(Scheme::F32);
    }
    if quant == Quant::F16 {
        return dense(Scheme::F16);
    }
    let transposed = shape.len() == 2 && is_conv1d_weight(name);
    let matrix = if transposed {
        vec![shape[1], shape[0]]
    } else {
        vec![shape[0], shape[1..].iter().product()]
    };
    let scheme = if quant == Quant::Q8 {
        Scheme::Q8_0
    } else {
        Scheme::Q4_0
    };
    if !matrix[1].is_multiple_of(BLOCK) {
        return dense(Scheme::F16);
    }
    Layout {
        scheme,
        transposed,
        matrix,
        shape: shape.to_vec(),
    }
}

/// The bytes of `t` stored as `layout` says (little-endian for dense schemes).
pub fn encode(t: &Tensor, layout: &Layout) -> Result<Vec<u8>> {
    let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let t = if layout.transposed { t.t()? } else { t };
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(match layout.scheme {
        Scheme::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Scheme::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        // GGML's own Q4_0 rounding loses too much on bell-shaped blocks (see `q4_search`).
        Scheme::Q4_0 => super::q4_search::quantize_q4_0(&values),
        Scheme::Q8_0 => {
            let matrix = Tensor::from_vec(values, layout.matrix.as_slice(), &Device::Cpu)?;
            QTensor::quantize(&matrix, layout.scheme.ggml())?
                .data()?
                .into_owned()
        }
    })
}

/// `t`, the state-dict tensor `name`, as a folder exported with `quant` gives it back:
/// quantized matrices rounded to their blocks, f16 entries to f16, the rest unchanged; same
/// shape, dtype and device as `t` (what quantization-aware training computes with).
pub fn round_trip(name: &str, t: &Tensor, quant: Quant) -> Result<Tensor> {
    let layout = plan(name, t.dims(), quant);
    let back = match layout.scheme {
        Scheme::F32 => return Ok(t.clone()),
        Scheme::F16 => t.to_dtype(DType::F16)?.to_dtype(DType::F32)?,
        _ => decode_blocks(&encode(t, &layout)?, &layout)?,
    };
    Ok(back.to_device(t.device())?.to_dtype(t.dtype())?)
}

/// A quantized tensor's block bytes decoded to f32 in its state-dict shape (on the CPU).
pub fn decode_blocks(bytes: &[u8], layout: &Layout) -> Result<Tensor> {
    let (rows, cols) = match layout.matrix[..] {
        [r, c] => (r, c),
        _ => {
            return Err(Error::Weights(format!(
                "{:?} is not a matrix layout",
                layout.matrix
            )))
        }
    };
    let blocks = qtensor_from_bytes(bytes, layout.scheme, rows, cols, &Device::Cpu)?;
    let m = blocks.dequantize(&Device::Cpu)?;
    let m = if layout.transposed {
        m.t()?.contiguous()?
    } else {
        m
    };
    Ok(m.reshape(layout.shape.as_slice())?)
}

/// A quantized `[rows, cols]` matrix from its GGML block bytes, with every size checked first
/// (candle asserts on a bad length).
pub fn qtensor_from_bytes(
    bytes: &[u8],
    scheme: Scheme,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Result<QTensor> {
    let expected = scheme
        .row_bytes(cols)
        .and_then(|r| r.checked_mul(rows))
        .filter(|_| scheme.suffix().is_some())
        .ok_or_else(|| {
            Error::Weights(format!(
                "a [{rows}, {cols}] matrix cannot be stored as {scheme:?}"
            ))
        })?;
    if bytes.len() != expected {
        return Err(Error::Weights(format!(
            "{scheme:?} data of a [{rows}, {cols}] matrix should be {expected} bytes, not {}",
            bytes.len()
        )));
    }
    // GGML blocks start with an f16 scale: copy into a 2-byte-aligned buffer.
    let mut aligned = vec![0u16; bytes.len().div_ceil(2)];
    bytemuck::cast_slice_mut::<u16, u8>(&mut aligned)[..bytes.len()].copy_from_slice(bytes);
    let data = &bytemuck::cast_slice::<u16, u8>(&aligned)[..bytes.len()];
    let storage = QStorage::from_data(Cow::Borrowed(data), device, scheme.ggml())?;
    Ok(QTensor::new(storage, (rows, cols))?)
}

/// The quantized matrix `[rows, cols]` stored under `name` at `vb`, when the backing store holds
/// one (`<name>.q8_0` or `<name>.q4_0`); None when the tensor is stored dense.
pub fn quantized_matrix(
    vb: &VarBuilder,
    name: &str,
    rows: usize,
    cols: usize,
) -> candle_core::Result<Option<QMatMul>> {
    for scheme in Scheme::QUANTIZED {
        let stored = stored_name(name, scheme);
        if !vb.contains_tensor(&stored) {
            continue;
        }
        let row_bytes = scheme.row_bytes(cols).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "`{stored}`: {cols} columns are not whole {BLOCK}-value blocks"
            ))
        })?;
        let raw = vb.get_with_hints_dtype((rows, row_bytes), &stored, Init::Const(0.0), DType::U8)?;
        let bytes = raw.flatten_all()?.to_vec1::<u8>()?;
        let q = qtensor_from_bytes(&bytes, scheme, rows, cols, vb.device())
            .map_err(|e| candle_core::Error::Msg(format!("`{stored}`: {e}")))?;
        return Ok(Some(QMatMul::from_qtensor(q)?));
    }
    Ok(None)
}
