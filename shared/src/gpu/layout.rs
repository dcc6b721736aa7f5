//! Shape-only operations: permute, narrow, cat, broadcast_as, index_select, gather_rows —
//! all through the strided-copy and gather kernels.

use candle_core::Result;

use super::device::{gpu_err, grid};
use super::kernels::Kernel;
use super::matrix::GpuMatrix;
use super::tensor::{elem_count, GpuIds, GpuTensor};

/// Highest rank the strided kernels address (their parameter block holds 8 dims).
pub(crate) const MAX_RANK: usize = 8;

/// Row-major strides of `dims`.
pub(crate) fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Strides of `dims` (rank r) read as the trailing dims of `target`, 0 along every
/// broadcast dimension; errors unless numpy's broadcasting rule allows it.
pub(crate) fn broadcast_strides(dims: &[usize], target: &[usize]) -> Result<Vec<usize>> {
    if dims.len() > target.len() {
        return Err(gpu_err(format!("cannot broadcast {dims:?} to {target:?}")));
    }
    let own = strides(dims);
    let pad = target.len() - dims.len();
    let mut out = vec![0; target.len()];
    for (i, (&d, &s)) in dims.iter().zip(&own).enumerate() {
        let t = target[pad + i];
        if d == t {
            out[pad + i] = if d == 1 { 0 } else { s };
        } else if d != 1 {
            return Err(gpu_err(format!("cannot broadcast {dims:?} to {target:?}")));
        }
    }
    Ok(out)
}

/// Copies the box `dims` from `src` (offset, strides) into `dst` (offset, strides).
pub(crate) fn copy_strided(
    src: &GpuTensor,
    dst: &GpuTensor,
    dims: &[usize],
    src_at: (usize, &[usize]),
    dst_at: (usize, &[usize]),
) -> Result<()> {
    if dims.len() > MAX_RANK {
        return Err(gpu_err(format!(
            "rank {} above the kernels' {MAX_RANK}",
            dims.len()
        )));
    }
    let n = elem_count(dims)?;
    let mut p = vec![0u32; 32];
    p[0] = n as u32;
    p[1] = dims.len() as u32;
    p[2] = src_at.0 as u32;
    p[3] = dst_at.0 as u32;
    for (i, &d) in dims.iter().enumerate() {
        p[8 + i] = d as u32;
        p[16 + i] = src_at.1[i] as u32;
        p[24 + i] = dst_at.1[i] as u32;
    }
    src.dev.dispatch(
        Kernel::Copy,
        "strided",
        0,
        &p,
        &[&src.buf, &dst.buf],
        grid(n.div_ceil(256)),
    )
}

impl GpuTensor {
    /// Dimensions reordered: output dim i is input dim `order[i]`.
    pub fn permute(&self, order: &[usize]) -> Result<Self> {
        let mut seen = vec![false; self.dims.len()];
        if order.len() != self.dims.len()
            || order
                .iter()
                .any(|&o| o >= seen.len() || std::mem::replace(&mut seen[o], true))
        {
            return Err(gpu_err(format!("permute {order:?} of a tensor {:?}", self.dims)));
        }
        let own = strides(&self.dims);
        let dims: Vec<usize> = order.iter().map(|&o| self.dims[o]).collect();
        let src_strides: Vec<usize> = order.iter().map(|&o| own[o]).collect();
        let out = GpuTensor::empty(&self.dev, &dims)?;
        copy_strided(self, &out, &dims, (0, &src_strides), (0, &strides(&dims)))?;
        Ok(out)
    }

    /// `len` entries of dimension `dim` from `start`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        if dim >= self.dims.len() || start + len > self.dims[dim] {
            return Err(gpu_err(format!(
                "narrow({dim}, {start}, {len}) of a tensor {:?}",
                self.dims
            )));
        }
        if len == self.dims[dim] {
            // The whole dimension (the last position of a one-token step): the same tensor.
            return Ok(self.clone());
        }
        let mut dims = self.dims.clone();
        dims[dim] = len;
        let own = strides(&self.dims);
        let out = GpuTensor::empty(&self.dev, &dims)?;
        copy_strided(self, &out, &dims, (start * own[dim], &own), (0, &strides(&dims)))?;
        Ok(out)
    }

    /// Concatenation along `dim`: one strided copy per part into its slab of the output.
    pub fn cat(parts: &[&Self], dim: usize) -> Result<Self> {
        let first = parts.first().ok_or_else(|| gpu_err("cat of no tensors"))?;
        let rank = first.dims.len();
        if dim >= rank {
            return Err(gpu_err(format!("cat along {dim} of rank-{rank} tensors")));
        }
        let mut dims = first.dims.clone();
        dims[dim] = 0;
        for p in parts {
            p.same_device(&first.dev)?;
            let same = p.dims.len() == rank && (0..rank).all(|i| i == dim || p.dims[i] == first.dims[i]);
            if !same {
                return Err(gpu_err(format!(
                    "cat along {dim} of {:?} and {:?}",
                    first.dims, p.dims
                )));
            }
            dims[dim] += p.dims[dim];
        }
        let out = GpuTensor::empty(&first.dev, &dims)?;
        let out_strides = strides(&dims);
        let mut at = 0;
        for p in parts {
            copy_strided(
                p,
                &out,
                &p.dims,
                (0, &strides(&p.dims)),
                (at * out_strides[dim], &out_strides),
            )?;
            at += p.dims[dim];
        }
        Ok(out)
    }

    /// Repeats size-1 dimensions (and adds leading ones) up to `dims`.
    pub fn broadcast_as(&self, dims: &[usize]) -> Result<Self> {
        let src_strides = broadcast_strides(&self.dims, dims)?;
        let out = GpuTensor::empty(&self.dev, dims)?;
        copy_strided(self, &out, dims, (0, &src_strides), (0, &strides(dims)))?;
        Ok(out)
    }

    /// Rows `ids` (rank 1) of dimension 0.
    pub fn index_select(&self, ids: &GpuIds) -> Result<Self> {
        self.same_device(&ids.dev)?;
        if ids.dims.len() != 1 || self.dims.is_empty() {
            return Err(gpu_err(format!(
                "index_select of {:?} by ids {:?}",
                self.dims, ids.dims
            )));
        }
        let mut dims = self.dims.clone();
        dims[0] = ids.dims[0];
        let row: usize = self.dims[1..].iter().product();
        let out = GpuTensor::empty(&self.dev, &dims)?;
        let n = elem_count(&dims)?;
        if n > 0 {
            let p = [n as u32, row as u32, self.dims[0] as u32];
            self.dev.dispatch(
                Kernel::Copy,
                "index_select",
                0,
                &p,
                &[&self.buf, &out.buf, &ids.buf],
                grid(n.div_ceil(256)),
            )?;
        }
        Ok(out)
    }

    /// Rows `ids` (any shape) of the table [vocab, d] → [ids dims.., d], decoded from the
    /// table's stored format.
    pub fn gather_rows(table: &GpuMatrix, ids: &GpuIds) -> Result<Self> {
        let t = table.data();
        let mut dims = ids.dims.clone();
        dims.push(t.cols);
        let out = GpuTensor::empty(&ids.dev, &dims)?;
        let n = elem_count(&dims)?;
        if n > 0 {
            let p = [n as u32, t.cols as u32, t.scale_offset, t.rows as u32];
            ids.dev.dispatch(
                Kernel::Gather,
                "gather_rows",
                table.fmt_code(),
                &p,
                &[&t.buf, &ids.buf, &out.buf],
                grid(n.div_ceil(256)),
            )?;
        }
        Ok(out)
    }
}
