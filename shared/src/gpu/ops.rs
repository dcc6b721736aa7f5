//! Arithmetic: elementwise and broadcast ops, reductions, linear maps, layer norm,
//! attention.

use candle_core::Result;

use super::device::{gpu_err, grid, MAX_GROUPS};
use super::fused::{act_code, Epilogue, SMALL_ROWS};
use super::kernels::Kernel;
use super::layout::{broadcast_strides, MAX_RANK};
use super::matrix::GpuMatrix;
use super::tensor::{elem_count, GpuTensor};
use crate::nn::Activation;

/// Output tile of the tiled matmul (rows and columns).
const TILE: usize = 64;

/// numpy's broadcast shape of `a` and `b`.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |d: &[usize], i: usize| {
        if i + d.len() >= rank {
            d[i + d.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(gpu_err(format!("shapes {a:?} and {b:?} do not broadcast"))),
        })
        .collect()
}

impl GpuTensor {
    /// The elementwise kernel with op `code` (see `shaders/elementwise.wgsl`).
    fn unary(&self, code: u32, mul: f32, add: f32) -> Result<Self> {
        let out = GpuTensor::empty(&self.dev, &self.dims)?;
        let n = self.elem_count();
        let p = [n as u32, code, mul.to_bits(), add.to_bits()];
        self.dev.dispatch(
            Kernel::Elementwise,
            "unary",
            0,
            &p,
            &[&self.buf, &out.buf],
            grid(n.div_ceil(256)),
        )?;
        Ok(out)
    }

    /// An activation function, elementwise.
    pub fn activation(&self, act: Activation) -> Result<Self> {
        self.unary(act_code(act), 1.0, 0.0)
    }

    /// `x * mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Self> {
        self.unary(6, mul as f32, add as f32)
    }

    /// `op` (0 add, 1 mul) with numpy broadcasting.
    fn binary(&self, other: &Self, op: u32) -> Result<Self> {
        self.same_device(&other.dev)?;
        let dims = broadcast_shape(&self.dims, &other.dims)?;
        if dims.len() > MAX_RANK {
            return Err(gpu_err(format!(
                "rank {} above the kernels' {MAX_RANK}",
                dims.len()
            )));
        }
        let sa = broadcast_strides(&self.dims, &dims)?;
        let sb = broadcast_strides(&other.dims, &dims)?;
        let out = GpuTensor::empty(&self.dev, &dims)?;
        let n = elem_count(&dims)?;
        let mut p = vec![0u32; 32];
        p[0] = n as u32;
        p[1] = op;
        p[2] = dims.len() as u32;
        for i in 0..dims.len() {
            p[8 + i] = dims[i] as u32;
            p[16 + i] = sa[i] as u32;
            p[24 + i] = sb[i] as u32;
        }
        self.dev.dispatch(
            Kernel::Binary,
            "binary",
            0,
            &p,
            &[&self.buf, &other.buf, &out.buf],
            grid(n.div_ceil(256)),
        )?;
        Ok(out)
    }

    /// Elementwise sum of two tensors of the same shape.
    pub fn add(&self, other: &Self) -> Result<Self> {
        if self.dims != other.dims {
            return Err(gpu_err(format!("add of {:?} and {:?}", self.dims, other.dims)));
        }
        self.binary(other, 0)
    }

    /// Sum with numpy broadcasting.
    pub fn broadcast_add(&self, other: &Self) -> Result<Self> {
        self.binary(other, 0)
    }

    /// Product with numpy broadcasting.
    pub fn broadcast_mul(&self, other: &Self) -> Result<Self> {
        self.binary(other, 1)
    }

    /// Mean over dimension `dim`, which is removed.
    pub fn mean_dim(&self, dim: usize) -> Result<Self> {
        if dim >= self.dims.len() {
            return Err(gpu_err(format!("mean over {dim} of a tensor {:?}", self.dims)));
        }
        let mut dims = self.dims.clone();
        let n = dims.remove(dim);
        let inner: usize = self.dims[dim + 1..].iter().product();
        let out = GpuTensor::empty(&self.dev, &dims)?;
        let count = elem_count(&dims)?;
        let p = [count as u32, n as u32, inner as u32];
        self.dev.dispatch(
            Kernel::Mean,
            "mean_dim",
            0,
            &p,
            &[&self.buf, &out.buf],
            grid(count.div_ceil(256)),
        )?;
        Ok(out)
    }

    /// `x W^T + b` over the last dimension (any leading dims). Quantized weights are decoded
    /// in the kernel and the activations stay f32, as in the CPU engine's block matmul.
    pub fn linear(&self, w: &GpuMatrix, bias: Option<&Self>) -> Result<Self> {
        let m = w.data();
        let (lead, last) = self.dims.split_at(self.dims.len().saturating_sub(1));
        if last != [m.cols] {
            return Err(gpu_err(format!("linear of {:?} by a {:?}", self.dims, w)));
        }
        let rows: usize = lead.iter().product();
        // A bias of `out` values is added inside the kernel; any other shape afterwards.
        let fused = bias.filter(|b| b.dims == [m.rows]);
        let out = if rows <= SMALL_ROWS {
            self.matvec(w, fused, &Epilogue::default())?
        } else {
            self.tiled(w, fused, rows)?
        };
        match bias {
            Some(b) if fused.is_none() => out.broadcast_add(b),
            _ => Ok(out),
        }
    }

    /// `x W^T (+ bias [out])` of many rows, by 64x64 output tiles.
    fn tiled(&self, w: &GpuMatrix, bias: Option<&Self>, rows: usize) -> Result<Self> {
        let m = w.data();
        let mut dims = self.dims[..self.dims.len() - 1].to_vec();
        dims.push(m.rows);
        let out = GpuTensor::empty(&self.dev, &dims)?;
        let p = [
            rows as u32,
            m.cols as u32,
            m.rows as u32,
            bias.is_some() as u32,
            m.scale_offset,
        ];
        let g = (m.rows.div_ceil(TILE), rows.div_ceil(TILE));
        if g.0 > MAX_GROUPS as usize || g.1 > MAX_GROUPS as usize {
            return Err(gpu_err(format!(
                "linear of {rows} rows by a {w:?}: grid too large"
            )));
        }
        let bias = bias.map_or(self.dev.placeholder(), |b| &*b.buf);
        self.dev.dispatch(
            Kernel::Matmul,
            "tiled",
            w.fmt_code(),
            &p,
            &[&m.buf, &self.buf, bias, &out.buf],
            (g.0 as u32, g.1 as u32),
        )?;
        Ok(out)
    }

    /// Layer normalisation over the last dimension.
    pub fn layer_norm(&self, weight: &Self, bias: &Self, eps: f64) -> Result<Self> {
        let d = *self
            .dims
            .last()
            .ok_or_else(|| gpu_err("layer_norm of a scalar"))?;
        if weight.elem_count() != d || bias.elem_count() != d {
            return Err(gpu_err(format!(
                "layer_norm of {:?} with weight {:?}, bias {:?}",
                self.dims, weight.dims, bias.dims
            )));
        }
        let rows = self.elem_count() / d.max(1);
        let out = GpuTensor::empty(&self.dev, &self.dims)?;
        let p = [rows as u32, d as u32, (eps as f32).to_bits()];
        self.dev.dispatch(
            Kernel::LayerNorm,
            "layer_norm",
            0,
            &p,
            &[&self.buf, &weight.buf, &bias.buf, &out.buf],
            grid(rows),
        )?;
        Ok(out)
    }

    /// `softmax(q k^T + bias) v` per head (see `Backend::attention`), without dropout.
    pub fn attention(q: &Self, k: &Self, v: &Self, bias: Option<&Self>) -> Result<Self> {
        GpuTensor::attend_split(q, k, v, bias)
    }
}
