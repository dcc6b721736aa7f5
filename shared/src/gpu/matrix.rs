//! Weight matrices on the GPU, kept in their stored precision: f32, f16 (packed two per
//! word) or GGML q8_0 / q4_0 blocks, decoded inside the kernels (never expanded in memory).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Result, Tensor};

use super::device::{gpu_err, GpuDevice};
use super::pool::GpuBuffer;
use crate::nn::Weight;

/// Elements per GGML q8_0 / q4_0 block.
const BLOCK: usize = 32;

/// A matrix [rows, cols] (a linear map's W [out, in], or an embedding table [vocab, d]).
#[derive(Clone)]
pub struct MatrixData {
    /// Rows (output features, or vocabulary entries).
    pub rows: usize,
    /// Columns (input features, or the embedding width).
    pub cols: usize,
    /// The stored words (see `shaders/weights.wgsl` for each layout).
    pub buf: Arc<GpuBuffer>,
    /// Where the block scales start, in words (quantized formats; 0 otherwise).
    pub scale_offset: u32,
}

/// A weight matrix in one of the stored formats.
#[allow(non_camel_case_types)]
#[derive(Clone)]
pub enum GpuMatrix {
    /// 32-bit floats.
    F32(MatrixData),
    /// 16-bit floats.
    F16(MatrixData),
    /// GGML q8_0 blocks (an f16 scale and 32 int8 per block).
    Q8_0(MatrixData),
    /// GGML q4_0 blocks (an f16 scale and 32 nibbles per block).
    Q4_0(MatrixData),
}

impl std::fmt::Debug for GpuMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.data();
        write!(f, "GpuMatrix::{}[{}, {}]", self.format_name(), d.rows, d.cols)
    }
}

impl GpuMatrix {
    /// The shape and storage.
    pub fn data(&self) -> &MatrixData {
        match self {
            GpuMatrix::F32(d) | GpuMatrix::F16(d) | GpuMatrix::Q8_0(d) | GpuMatrix::Q4_0(d) => d,
        }
    }

    /// The kernels' `FMT` constant for this format.
    pub(crate) fn fmt_code(&self) -> u32 {
        match self {
            GpuMatrix::F32(_) => 0,
            GpuMatrix::F16(_) => 1,
            GpuMatrix::Q8_0(_) => 2,
            GpuMatrix::Q4_0(_) => 3,
        }
    }

    /// The format's name, for messages.
    pub fn format_name(&self) -> &'static str {
        match self {
            GpuMatrix::F32(_) => "f32",
            GpuMatrix::F16(_) => "f16",
            GpuMatrix::Q8_0(_) => "q8_0",
            GpuMatrix::Q4_0(_) => "q4_0",
        }
    }

    /// A dense candle matrix [rows, cols]: f16 stays f16 (half the memory); anything else
    /// becomes f32 (bf16 would not survive a trip through f16's range).
    pub fn from_dense(t: &Tensor, device: &GpuDevice) -> Result<Self> {
        let (rows, cols) = t.dims2()?;
        let what = format!("a {rows}x{cols} {:?} matrix", t.dtype());
        // Checked before the host copy, so a matrix that cannot fit fails fast and cheaply.
        let elem_bytes = if t.dtype() == DType::F16 { 2 } else { 4 };
        device.check_size(((rows * cols * elem_bytes) as u64).next_multiple_of(4), &what)?;
        if t.dtype() == DType::F16 {
            let vals = t.flatten_all()?.to_vec1::<half::f16>()?;
            let words: Vec<u32> = vals
                .chunks(2)
                .map(|p| p[0].to_bits() as u32 | (p.get(1).map_or(0, |h| h.to_bits()) as u32) << 16)
                .collect();
            let buf = device.upload(&words, &what)?;
            return Ok(GpuMatrix::F16(MatrixData {
                rows,
                cols,
                buf,
                scale_offset: 0,
            }));
        }
        let vals = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let buf = device.upload(bytemuck::cast_slice(&vals), &what)?;
        Ok(GpuMatrix::F32(MatrixData {
            rows,
            cols,
            buf,
            scale_offset: 0,
        }))
    }

    /// GGML blocks [rows, cols] re-laid out for 4-byte access: all quants, then all scales.
    pub fn from_qtensor(q: &QTensor, device: &GpuDevice) -> Result<Self> {
        let (rows, cols) = q.shape().dims2()?;
        let (block_bytes, quant_bytes) = match q.dtype() {
            GgmlDType::Q8_0 => (34, 32),
            GgmlDType::Q4_0 => (18, 16),
            // Other GGML formats have no kernel: expand them to f32.
            _ => return Self::from_dense(&q.dequantize(&candle_core::Device::Cpu)?, device),
        };
        let data = q.data()?;
        let blocks = rows * cols / BLOCK;
        if cols % BLOCK != 0 || data.len() != blocks * block_bytes {
            return Err(gpu_err(format!(
                "{:?} matrix [{rows}, {cols}]: {} bytes of blocks, expected {}",
                q.dtype(),
                data.len(),
                blocks * block_bytes
            )));
        }
        let quant_words = blocks * quant_bytes / 4;
        let mut words = vec![0u32; quant_words + blocks.div_ceil(2)];
        for (b, block) in data.chunks_exact(block_bytes).enumerate() {
            let scale = u16::from_le_bytes([block[0], block[1]]) as u32;
            words[quant_words + b / 2] |= scale << (16 * (b % 2));
            for (w, quad) in block[2..].chunks_exact(4).enumerate() {
                words[b * quant_bytes / 4 + w] = u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]);
            }
        }
        let what = format!("a {rows}x{cols} {:?} matrix", q.dtype());
        let buf = device.upload(&words, &what)?;
        let d = MatrixData {
            rows,
            cols,
            buf,
            scale_offset: quant_words as u32,
        };
        Ok(match q.dtype() {
            GgmlDType::Q8_0 => GpuMatrix::Q8_0(d),
            _ => GpuMatrix::Q4_0(d),
        })
    }

    /// A linear map's weight as the model holds it (see [`Weight`]).
    pub fn from_weight(w: &Weight, device: &GpuDevice) -> Result<Self> {
        match w {
            // Dense weights arrive as W^T [in, out].
            Weight::Dense(wt) => Self::from_dense(&wt.t()?.contiguous()?, device),
            Weight::Quantized(QMatMul::QTensor(q)) => Self::from_qtensor(q, device),
            Weight::Quantized(QMatMul::Tensor(t)) | Weight::Quantized(QMatMul::TensorF16(t)) => {
                Self::from_dense(t, device)
            }
        }
    }
}
