//! What every fused op shares, so that each states only its math: the float types the kernels
//! run on, one dtype dispatch over candle's CPU storages, the row loop, and one adapter from a
//! kernel to candle's custom ops of one, two and three arguments.

use std::ops::Neg;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};

/// The float types the kernels run on.
pub(super) trait Real: WithDType + Neg<Output = Self> {
    fn c(v: f64) -> Self;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
}

/// Implements [`Real`] for each float type with its own methods and candle's `erf` for it.
macro_rules! real {
    ($($t:ident => $erf:path),*) => {$(
        impl Real for $t {
            fn c(v: f64) -> Self {
                v as $t
            }
            fn exp(self) -> Self {
                $t::exp(self)
            }
            fn tanh(self) -> Self {
                $t::tanh(self)
            }
            fn erf(self) -> Self {
                $erf(self)
            }
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            fn ln(self) -> Self {
                $t::ln(self)
            }
        }
    )*};
}

real!(f32 => candle_core::cpu::erf::erf_f32, f64 => candle_core::cpu::erf::erf_f64);

/// One argument of a kernel: a CPU storage under its layout.
#[derive(Clone, Copy)]
pub(super) struct Arg<'a>(&'a CpuStorage, &'a Layout);

impl<'a> Arg<'a> {
    /// The contiguous elements, read as `T` (an error if the storage holds another type).
    pub(super) fn slice<T: WithDType>(self) -> Result<&'a [T]> {
        let (start, end) = self
            .1
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fused kernels take contiguous tensors".into()))?;
        Ok(&self.0.as_slice::<T>()?[start..end])
    }

    /// The length of the last dimension, which must not be empty.
    pub(super) fn last_dim(self) -> Result<usize> {
        self.1
            .dims()
            .last()
            .copied()
            .filter(|&d| d > 0)
            .ok_or_else(|| candle_core::Error::Msg("empty last dimension".into()))
    }

    /// The shape.
    pub(super) fn shape(self) -> &'a Shape {
        self.1.shape()
    }
}

/// A fused op of `N` arguments: its forward, written once for both float types, and its backward.
pub(super) trait Kernel<const N: usize> {
    /// The op's name in candle's errors.
    const NAME: &'static str;

    /// The output and its shape, in `T`: the float type of the first argument.
    fn fwd<T: Real>(&self, args: [Arg; N]) -> Result<(Vec<T>, Shape)>;

    /// The arguments' gradients from the output's; only ops applied with a backward need one.
    fn bwd(&self, _args: [&Tensor; N], _res: &Tensor, _grad: &Tensor) -> Result<[Option<Tensor>; N]> {
        Err(candle_core::Error::BackwardNotSupported { op: Self::NAME })
    }
}

/// Runs `k` in the float type of its first argument.
fn run<K: Kernel<N>, const N: usize>(k: &K, args: [Arg; N]) -> Result<(CpuStorage, Shape)> {
    fn store<T: Real>((out, shape): (Vec<T>, Shape)) -> (CpuStorage, Shape) {
        (T::to_cpu_storage_owned(out), shape)
    }
    match args[0].0 {
        CpuStorage::F32(_) => Ok(store(k.fwd::<f32>(args)?)),
        CpuStorage::F64(_) => Ok(store(k.fwd::<f64>(args)?)),
        _ => candle_core::bail!("{}: f32 or f64 only", K::NAME),
    }
}

/// A kernel as a candle custom op of its arity.
pub(super) struct Op<K>(pub K);

/// Implements candle's custom op of one arity for [`Op`]: each argument's storage `s` and layout
/// `l` go to the kernel's forward, its tensor `a` to the backward, whose gradient `d` comes back
/// in candle's tuple.
macro_rules! custom_op {
    ($op:ident, $n:literal, $grads:ty, $($s:ident $l:ident $a:ident $d:ident),+) => {
        impl<K: Kernel<$n>> $op for Op<K> {
            fn name(&self) -> &'static str {
                K::NAME
            }

            fn cpu_fwd(&self, $($s: &CpuStorage, $l: &Layout),+) -> Result<(CpuStorage, Shape)> {
                run(&self.0, [$(Arg($s, $l)),+])
            }

            fn bwd(&self, $($a: &Tensor,)+ res: &Tensor, grad: &Tensor) -> Result<$grads> {
                let [$($d),+] = self.0.bwd([$($a),+], res, grad)?;
                Ok(($($d),+))
            }
        }
    };
}

custom_op!(CustomOp1, 1, Option<Tensor>, s l a d);
custom_op!(CustomOp2, 2, (Option<Tensor>, Option<Tensor>), s1 l1 a1 d1, s2 l2 a2 d2);
custom_op!(
    CustomOp3,
    3,
    (Option<Tensor>, Option<Tensor>, Option<Tensor>),
    s1 l1 a1 d1,
    s2 l2 a2 d2,
    s3 l3 a3 d3
);

/// The output of `f(i, row, out)` over the rows of `n` elements of `x`, each row `i` appending
/// `per_row` values to `out` (the count sizes the output once).
pub(super) fn map_rows<T: Copy>(
    x: &[T],
    n: usize,
    per_row: usize,
    mut f: impl FnMut(usize, &[T], &mut Vec<T>) -> Result<()>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(x.len() / n * per_row);
    for (i, row) in x.chunks(n).enumerate() {
        f(i, row, &mut out)?;
    }
    Ok(out)
}

/// Row `i` of `n` elements of `v`.
pub(super) fn nth_row<T>(v: &[T], i: usize, n: usize) -> &[T] {
    &v[i * n..(i + 1) * n]
}
