//! The fused ops of a decoding step (see [`crate::backend::Backend::norm_linear`] and the
//! others): each one dispatch where the plain ops took several. The kernels reuse the plain
//! kernels' WGSL (norm statistics, the column reduction, the attention row), so a fused op
//! gives the bits of the ops it stands for; the tests compare them bit for bit.

use candle_core::Result;

use super::device::{gpu_err, grid};
use super::kernels::Kernel;
use super::layout::{broadcast_strides, copy_strided, strides};
use super::matrix::GpuMatrix;
use super::tensor::{GpuIds, GpuTensor};
use crate::backend::{compose, KvCache};
use crate::nn::{Activation, LayerNorm, Linear};

/// Rows up to which the few-rows matmul (and so the fusions) run: decoding steps.
pub(crate) const SMALL_ROWS: usize = 8;
/// Output columns per column group of the few-rows matmul (256 threads / 32 lanes).
const SMALL_COLS: usize = 8;
/// Output columns over which `norm_linear` runs the norm as a kernel of its own: every
/// workgroup of the few-rows matmul (8 columns) derives its rows' statistics itself, which
/// the LM head's 6,283 workgroups pay more for than for one dispatch (the other matrices of a
/// step have at most 384; the dispatch budget has room for one split, not for each).
const NORM_FUSED_COLS: usize = 8192;
/// Most values of input rows the few-rows matmul holds normalised (shaders/matmul.wgsl, `red`).
const NORMED_IN_WORKGROUP: usize = 4080;
/// Widest head the attention kernels hold (their query array).
const MAX_HEAD: usize = 256;
/// Widest row the projected attention normalises in workgroup memory.
const MAX_PROJECTED_WIDTH: usize = 2048;
/// The KV cache grows by this many positions at a time (so a step appends in place).
const CACHE_CHUNK: usize = 64;

/// What the few-rows matmul does around the product (shaders/matmul.wgsl, word 5).
#[derive(Default)]
pub(crate) struct Epilogue<'a> {
    /// Layer-normalise the input rows first.
    pub norm: Option<&'a LayerNorm<GpuTensor>>,
    /// Then an activation after the bias.
    pub act: Option<Activation>,
    /// Then add this [rows, out] tensor ...
    pub residual: Option<&'a GpuTensor>,
    /// ... with the product scaled by tanh of this one-value tensor first.
    pub gate: Option<&'a GpuTensor>,
}

/// Where the attention kernel finds a (b, i, h) row of a [.., Dh] operand: offset and the
/// strides of b, i and h (for keys and values: b, h and the position j).
#[derive(Clone, Copy)]
struct Rows {
    offset: usize,
    strides: [usize; 3],
}

impl Rows {
    /// A [B, S, H·Dh] tensor (heads side by side, as projections leave them) of which the
    /// heads start at `offset`; `width` is its last dimension.
    fn merged(s: usize, width: usize, dh: usize, offset: usize) -> Self {
        Rows {
            offset,
            strides: [s * width, width, dh],
        }
    }

    /// A [B, H, S, Dh] tensor, the position axis `len` long (b, i, h strides).
    fn split(h: usize, len: usize, dh: usize) -> Self {
        Rows {
            offset: 0,
            strides: [h * len * dh, dh, len * dh],
        }
    }

    /// Keys or values [B, H, C, Dh] (b, h, j strides).
    fn keys(h: usize, capacity: usize, dh: usize) -> Self {
        Rows {
            offset: 0,
            strides: [h * capacity * dh, capacity * dh, dh],
        }
    }
}

/// One attention dispatch: shapes (b, h, sq, sk, dh) and where everything is.
struct Attend<'a> {
    shape: [usize; 5],
    q: (&'a GpuTensor, Rows),
    scale: f64,
    kv: (&'a GpuTensor, &'a GpuTensor, Rows),
    bias: Option<&'a GpuTensor>,
    out: (&'a GpuTensor, Rows),
    /// The new key's and value's offsets in q's buffer, copied to position sk - 1 first.
    append: Option<(usize, usize)>,
    /// [B, Sk]: the stored row of each key (see [`KvCache`]); none: row b's own.
    rowmap: Option<&'a GpuIds>,
}

impl Attend<'_> {
    /// Records the dispatch (shaders/attention.wgsl).
    fn run(&self) -> Result<()> {
        let [b, h, sq, sk, dh] = self.shape;
        check_head(dh)?;
        let (q, qa) = self.q;
        let (k, v, ka) = self.kv;
        let (out, oa) = self.out;
        let rows = b * h * sq;
        let scratch = q.dev.storage((rows * sk).max(1) as u64 * 4, "attention scores")?;
        let mut p = [0u32; 28];
        p[..5].copy_from_slice(&[rows as u32, h as u32, sq as u32, sk as u32, dh as u32]);
        p[6] = (self.scale as f32).to_bits();
        let bias_buf = match self.bias {
            Some(bt) => {
                bt.same_device(&q.dev)?;
                let s = broadcast_strides(&bt.dims, &[b, h, sq, sk])?;
                p[5] = 1;
                for i in 0..4 {
                    p[8 + i] = s[i] as u32;
                }
                &*bt.buf
            }
            None => q.dev.placeholder(),
        };
        p[12] = qa.offset as u32;
        for i in 0..3 {
            p[13 + i] = qa.strides[i] as u32;
            p[16 + i] = ka.strides[i] as u32;
            p[20 + i] = oa.strides[i] as u32;
        }
        if let Some((ko, vo)) = self.append {
            p[7] = 1;
            p[24] = ko as u32;
            p[25] = vo as u32;
        }
        let rowmap = match self.rowmap {
            Some(ids) => {
                p[26] = 1;
                p[27] = sk as u32;
                &*ids.buf
            }
            None => q.dev.placeholder(),
        };
        q.dev.dispatch(
            Kernel::Attention,
            "attend",
            0,
            &p,
            &[&q.buf, &k.buf, &v.buf, bias_buf, &scratch, &out.buf, rowmap],
            grid(rows),
        )
    }
}

/// Errors unless a head fits the attention kernels.
fn check_head(dh: usize) -> Result<()> {
    if dh == 0 || dh > MAX_HEAD {
        return Err(gpu_err(format!(
            "attention heads of {dh} values (the kernels take 1..={MAX_HEAD})"
        )));
    }
    Ok(())
}

/// The elementwise kernel's op code for an activation.
pub(crate) fn act_code(act: Activation) -> u32 {
    match act {
        Activation::Gelu => 0,
        Activation::GeluNew => 1,
        Activation::QuickGelu => 2,
        Activation::Relu => 3,
        Activation::SqRelu => 4,
        Activation::Tanh => 5,
    }
}

impl GpuTensor {
    /// `x W^T (+ bias)` for at most [`SMALL_ROWS`] rows, with `epi` around it, in one dispatch
    /// (`bias` must be [out]).
    pub(crate) fn matvec(&self, w: &GpuMatrix, bias: Option<&GpuTensor>, epi: &Epilogue) -> Result<Self> {
        let m = w.data();
        let (lead, last) = self.dims.split_at(self.dims.len().saturating_sub(1));
        let rows: usize = lead.iter().product();
        if last != [m.cols] || rows > SMALL_ROWS {
            return Err(gpu_err(format!("matvec of {:?} by a {w:?}", self.dims)));
        }
        let mut dims = lead.to_vec();
        dims.push(m.rows);
        let out = GpuTensor::empty(&self.dev, &dims)?;
        let ph = self.dev.placeholder();
        let (mut gamma, mut beta, mut eps, mut mode) = (ph, ph, 0.0, 0);
        if let Some(norm) = epi.norm {
            let (g, b, e) = norm.parts();
            (gamma, beta, eps) = (&*g.buf, &*b.buf, e);
            mode = if rows * m.cols <= NORMED_IN_WORKGROUP {
                1
            } else {
                2
            };
        }
        let act = epi.act.map_or(0, act_code);
        let mut flags = if epi.act.is_some() { 2 } else { 0 };
        let residual = match epi.residual {
            Some(r) if r.dims == dims => {
                flags |= 4;
                &*r.buf
            }
            Some(r) => return Err(gpu_err(format!("a residual {:?} for {dims:?}", r.dims))),
            None => ph,
        };
        let gate = match epi.gate {
            Some(g) if g.elem_count() == 1 => {
                flags |= 8;
                &*g.buf
            }
            Some(g) => return Err(gpu_err(format!("a gate {:?} (needs one value)", g.dims))),
            None => ph,
        };
        let p = [
            rows as u32,
            m.cols as u32,
            m.rows as u32,
            bias.is_some() as u32,
            m.scale_offset,
            flags,
            act,
            (eps as f32).to_bits(),
        ];
        let bias = bias.map_or(ph, |b| &*b.buf);
        self.dev.dispatch(
            Kernel::Matmul,
            "small",
            w.fmt_code() | mode << 8,
            &p,
            &[&m.buf, &self.buf, bias, &out.buf, gamma, beta, residual, gate],
            grid(m.rows.div_ceil(SMALL_COLS)),
        )?;
        Ok(out)
    }

    /// Whether `linear` can run as [`GpuTensor::matvec`] on `self` (few rows, a bias of [out]).
    fn fits_matvec(&self, linear: &Linear<GpuTensor>) -> bool {
        let rows = self.elem_count() / self.dims.last().copied().unwrap_or(1).max(1);
        let out = linear.weight().data().rows;
        rows <= SMALL_ROWS && linear.bias().is_none_or(|b| b.dims == [out])
    }

    /// [`crate::backend::Backend::norm_linear`]: one dispatch for few rows, two for a wide
    /// matrix (the norm, then the product with the activation).
    pub(crate) fn norm_linear_fused(
        &self,
        norm: &LayerNorm<Self>,
        linear: &Linear<Self>,
        act: Option<Activation>,
    ) -> Result<Self> {
        let width = self.dims.last().copied().unwrap_or(0);
        let (g, b, _) = norm.parts();
        if !self.fits_matvec(linear) || g.dims != [width] || b.dims != [width] {
            return compose::norm_linear(self, norm, linear, act);
        }
        if linear.weight().data().rows > NORM_FUSED_COLS {
            let epi = Epilogue {
                act,
                ..Default::default()
            };
            return norm.forward(self)?.matvec(linear.weight(), linear.bias(), &epi);
        }
        let epi = Epilogue {
            norm: Some(norm),
            act,
            ..Default::default()
        };
        self.matvec(linear.weight(), linear.bias(), &epi)
    }

    /// [`crate::backend::Backend::linear_residual`] without dropout: one dispatch for few rows.
    pub(crate) fn linear_residual_fused(
        &self,
        linear: &Linear<Self>,
        residual: &Self,
        gate: Option<&Self>,
    ) -> Result<Self> {
        if !self.fits_matvec(linear) || gate.is_some_and(|g| g.elem_count() != 1) {
            return compose::linear_residual(self, linear, residual, gate, &Default::default());
        }
        let epi = Epilogue {
            residual: Some(residual),
            gate,
            ..Default::default()
        };
        self.matvec(linear.weight(), linear.bias(), &epi)
    }

    /// `softmax(q k^T + bias) v` of [B, H, S, Dh] operands, contiguous.
    pub(crate) fn attend_split(q: &Self, k: &Self, v: &Self, bias: Option<&Self>) -> Result<Self> {
        let (qd, kd) = (&q.dims, &k.dims);
        if qd.len() != 4
            || kd.len() != 4
            || v.dims != *kd
            || qd[0] != kd[0]
            || qd[1] != kd[1]
            || qd[3] != kd[3]
        {
            return Err(gpu_err(format!(
                "attention of q {qd:?}, k {kd:?}, v {:?}",
                v.dims
            )));
        }
        let (b, h, sq, sk, dh) = (qd[0], qd[1], qd[2], kd[2], qd[3]);
        let out = GpuTensor::empty(&q.dev, qd)?;
        Attend {
            shape: [b, h, sq, sk, dh],
            q: (q, Rows::split(h, sq, dh)),
            scale: 1.0,
            kv: (k, v, Rows::keys(h, sk, dh)),
            bias,
            out: (&out, Rows::split(h, sq, dh)),
            append: None,
            rowmap: None,
        }
        .run()?;
        Ok(out)
    }

    /// [`crate::backend::Backend::self_attention`] with a cache, without dropout: the keys
    /// and values go into the cache in place (one step: inside the attention dispatch), the
    /// queries are read where the projection left them and the output is written merged.
    pub(crate) fn self_attention_cached(
        qkv: &Self,
        heads: usize,
        scale: f64,
        bias: &Self,
        cache: &mut KvCache<Self>,
    ) -> Result<Self> {
        let (b, s, width) = match qkv.dims[..] {
            [b, s, w] if heads > 0 && w % (3 * heads) == 0 => (b, s, w),
            ref d => return Err(gpu_err(format!("self-attention of qkv {d:?} with {heads} heads"))),
        };
        let d = width / 3;
        let dh = d / heads;
        check_head(dh)?;
        let total = cache.len + s;
        if !cache.rows.is_empty() && cache.rows.len() != b {
            return Err(gpu_err(format!(
                "a KV cache of {} rows for qkv {:?}",
                cache.rows.len(),
                qkv.dims
            )));
        }
        let (k, v) = reserve(cache, [b, heads, dh], total, &qkv.dev)?;
        let keys = Rows::keys(heads, k.dims[2], dh);
        let append = if s == 1 {
            Some((d, 2 * d))
        } else {
            // Several new positions: copied first (a query reads the keys of the others).
            for (part, dst) in [(1, &k), (2, &v)] {
                copy_strided(
                    qkv,
                    dst,
                    &[b, heads, s, dh],
                    (part * d, &[s * width, dh, width, 1]),
                    (cache.len * dh, &strides(&dst.dims)),
                )?;
            }
            None
        };
        // Row b's new positions are stored in row b.
        for (r, map) in cache.rows.iter_mut().enumerate() {
            map.extend(std::iter::repeat_n(r as u32, s));
        }
        let rowmap = if cache.rows.is_empty() {
            None
        } else {
            let flat: Vec<u32> = cache.rows.concat();
            Some(GpuIds::new(&flat, &[b, total], &qkv.dev)?)
        };
        let out = GpuTensor::empty(&qkv.dev, &[b, s, d])?;
        Attend {
            shape: [b, heads, s, total, dh],
            q: (qkv, Rows::merged(s, width, dh, 0)),
            scale,
            kv: (&k, &v, keys),
            bias: Some(bias),
            out: (&out, Rows::merged(s, d, dh, 0)),
            append,
            rowmap: rowmap.as_ref(),
        }
        .run()?;
        cache.len = total;
        cache.kv = Some((k, v));
        Ok(out)
    }

    /// [`crate::backend::Backend::select_cache_rows`]: the rows are reordered in the row map,
    /// not in the cache; the cache only gains stored rows when there are more rows than before
    /// (a row's new positions go to its own stored row), once per search.
    pub(crate) fn select_cache_rows(cache: &mut KvCache<Self>, rows: &[usize]) -> Result<()> {
        let Some((k, v)) = cache.kv.take() else {
            return Ok(());
        };
        let current = if cache.rows.is_empty() {
            k.dims[0]
        } else {
            cache.rows.len()
        };
        if let Some(bad) = rows.iter().find(|&&r| r >= current) {
            return Err(gpu_err(format!(
                "row {bad} selected from a KV cache of {current} rows"
            )));
        }
        let old = std::mem::take(&mut cache.rows);
        cache.rows = rows
            .iter()
            .map(|&r| match old.get(r) {
                Some(map) => map.clone(),
                None => vec![r as u32; cache.len],
            })
            .collect();
        let (stored, dims) = (k.dims[0], k.dims.clone());
        if rows.len() <= stored {
            cache.kv = Some((k, v));
            return Ok(());
        }
        let mut more = dims.clone();
        more[0] = rows.len();
        let (nk, nv) = (GpuTensor::empty(&k.dev, &more)?, GpuTensor::empty(&k.dev, &more)?);
        for (src, dst) in [(&k, &nk), (&v, &nv)] {
            copy_strided(src, dst, &dims, (0, &strides(&dims)), (0, &strides(&more)))?;
        }
        cache.kv = Some((nk, nv));
        Ok(())
    }

    /// [`crate::backend::Backend::cross_attention`]: for few rows, one dispatch per step
    /// (norm, query projection, scale, attention, head merge; shaders/projected_attention.wgsl).
    pub(crate) fn cross_attention_fused(
        x: &Self,
        norm: &LayerNorm<Self>,
        to_q: &Linear<Self>,
        heads: usize,
        scale: f64,
        kv: (&Self, &Self),
    ) -> Result<Self> {
        let (k, v) = kv;
        let w = to_q.weight().data();
        let (b, s, width) = match x.dims[..] {
            [b, s, w] => (b, s, w),
            _ => return compose::cross_attention(x, norm, to_q, heads, scale, kv),
        };
        let (g, beta, eps) = norm.parts();
        let dh = w.rows.checked_div(heads).unwrap_or(0);
        let fits = b * s <= SMALL_ROWS
            && to_q.bias().is_none()
            && w.cols == width
            && width <= MAX_PROJECTED_WIDTH
            && g.dims == [width]
            && beta.dims == [width]
            && heads * dh == w.rows
            && (1..=MAX_HEAD).contains(&dh)
            && k.dims.len() == 4
            && k.dims[..2] == [b, heads]
            && k.dims[3] == dh
            && v.dims == k.dims;
        if !fits {
            return compose::cross_attention(x, norm, to_q, heads, scale, kv);
        }
        let m = k.dims[2];
        let rows = b * heads * s;
        let out = GpuTensor::empty(&x.dev, &[b, s, heads * dh])?;
        let scratch = x.dev.storage((rows * m).max(1) as u64 * 4, "attention scores")?;
        let keys = Rows::keys(heads, m, dh);
        let outs = Rows::merged(s, heads * dh, dh, 0);
        let mut p = [0u32; 23];
        p[..10].copy_from_slice(&[
            rows as u32,
            heads as u32,
            s as u32,
            m as u32,
            dh as u32,
            width as u32,
            (scale as f32).to_bits(),
            (eps as f32).to_bits(),
            w.scale_offset,
            0,
        ]);
        for i in 0..3 {
            p[16 + i] = keys.strides[i] as u32;
            p[20 + i] = outs.strides[i] as u32;
        }
        x.dev.dispatch(
            Kernel::ProjectedAttention,
            "attend_projected",
            to_q.weight().fmt_code(),
            &p,
            &[
                &w.buf, &x.buf, &g.buf, &beta.buf, &k.buf, &v.buf, &scratch, &out.buf,
            ],
            grid(rows),
        )?;
        Ok(out)
    }
}

/// The cache's key and value tensors [N, H, C, Dh] with room for `total` positions: its own
/// when they have it, else new ones (the positions so far copied over) with room to spare.
fn reserve(
    cache: &mut KvCache<GpuTensor>,
    [b, heads, dh]: [usize; 3],
    total: usize,
    dev: &super::GpuDevice,
) -> Result<(GpuTensor, GpuTensor)> {
    let old = cache.kv.take();
    let mut stored = b;
    if let Some((k, v)) = &old {
        // At least a stored row per row (the row map may point several rows at one).
        if k.dims[0] < b || k.dims[1] != heads || k.dims[3] != dh || v.dims != k.dims {
            return Err(gpu_err(format!(
                "a KV cache {:?} for {b} rows of {heads} heads of {dh}",
                k.dims
            )));
        }
        if k.dims[2] >= total {
            return Ok((k.clone(), v.clone()));
        }
        stored = k.dims[0];
    }
    let capacity = (total / CACHE_CHUNK + 1) * CACHE_CHUNK;
    let dims = [stored, heads, capacity, dh];
    let (k, v) = (GpuTensor::empty(dev, &dims)?, GpuTensor::empty(dev, &dims)?);
    if let Some((ok, ov)) = old {
        for (src, dst) in [(&ok, &k), (&ov, &v)] {
            copy_strided(
                src,
                dst,
                &[stored, heads, cache.len, dh],
                (0, &strides(&src.dims)),
                (0, &strides(&dims)),
            )?;
        }
    }
    Ok((k, v))
}
