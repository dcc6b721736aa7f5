//! Building blocks shared by every component: linear layers, layer norm, activations,
//! multi-head attention and the bridge's feed-forward block. Each is written once, generic over
//! the [`Backend`] it runs on (candle's `Tensor` by default).

use candle_core::quantized::QMatMul;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, CandleMatrix, ModelVb};
use crate::dropout::Dropout;
use crate::weights::quant::quantized_matrix;

pub use crate::backend::{merge_heads, split_heads};

/// How a linear map's matrix is held on the candle side (before a backend takes it).
#[derive(Debug, Clone)]
pub enum Weight {
    /// `W^T` [in, out], dense (differentiable).
    Dense(Tensor),
    /// `W` [out, in] in GGML blocks, multiplied by candle's quantized kernels.
    Quantized(QMatMul),
}

/// A linear map `x W^T + b`. Dense weights arrive as `W^T` ([in, out]) so that both PyTorch
/// `Linear` ([out, in]) and GPT-2 `Conv1D` ([in, out]) weights are used without a copy; weights
/// that the store holds quantized (`<name>.q8_0`/`.q4_0`, see [`crate::weights::quant`]) stay in
/// their blocks, so one model structure serves f32 and quantized weights.
#[derive(Debug, Clone)]
pub struct Linear<T: Backend = Tensor> {
    weight: T::Matrix,
    bias: Option<T>,
}

impl<T: Backend> Linear<T> {
    /// PyTorch `nn.Linear(in_dim, out_dim)`: `weight` [out, in], optional `bias` [out].
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let weight = match quantized_matrix(vb.vb(), "weight", out_dim, in_dim)? {
            Some(q) => Weight::Quantized(q),
            None => Weight::Dense(vb.vb().get((out_dim, in_dim), "weight")?.t()?),
        };
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Self::from_weight(weight, bias, vb.device())
    }

    /// GPT-2 `Conv1D(out_dim, in_dim)`: `weight` stored [in, out], `bias` [out].
    pub fn conv1d(in_dim: usize, out_dim: usize, vb: ModelVb<T>) -> candle_core::Result<Self> {
        // Quantized Conv1D weights are stored transposed ([out, in]), blocks along `in`.
        let weight = match quantized_matrix(vb.vb(), "weight", out_dim, in_dim)? {
            Some(q) => Weight::Quantized(q),
            None => Weight::Dense(vb.vb().get((in_dim, out_dim), "weight")?),
        };
        Self::from_weight(weight, Some(vb.get(out_dim, "bias")?), vb.device())
    }

    /// A linear map from a candle-side weight and an optional bias, handed to `device`.
    pub fn from_weight(weight: Weight, bias: Option<T>, device: &T::Device) -> candle_core::Result<Self> {
        Ok(Self {
            weight: T::matrix_from_candle(weight, device)?,
            bias,
        })
    }

    /// A linear map over a matrix the backend already holds (the tied LM head).
    pub fn from_matrix(weight: T::Matrix, bias: Option<T>) -> Self {
        Self { weight, bias }
    }

    /// `x W^T + b` over the last dimension of `x`.
    pub fn forward(&self, x: &T) -> candle_core::Result<T> {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// The matrix W.
    pub fn weight(&self) -> &T::Matrix {
        &self.weight
    }

    /// The bias b, if any.
    pub fn bias(&self) -> Option<&T> {
        self.bias.as_ref()
    }
}

impl Linear {
    /// Whether the matrix is held in quantized blocks.
    pub fn is_quantized(&self) -> bool {
        matches!(
            self.weight,
            CandleMatrix::Blocks(_) | CandleMatrix::Candle(Weight::Quantized(_))
        )
    }
}

/// Layer normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm<T: Backend = Tensor> {
    weight: T,
    bias: T,
    eps: f64,
}

impl<T: Backend> LayerNorm<T> {
    /// `nn.LayerNorm(dim, eps)` with `weight` and `bias`.
    pub fn new(dim: usize, eps: f64, vb: ModelVb<T>) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }

    /// A norm from its scale (gamma) and shift (beta) [dim] and epsilon.
    pub fn from_parts(weight: T, bias: T, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &T) -> candle_core::Result<T> {
        x.layer_norm(&self.weight, &self.bias, self.eps)
    }

    /// The scale (gamma), the shift (beta) and epsilon.
    pub fn parts(&self) -> (&T, &T, f64) {
        (&self.weight, &self.bias, self.eps)
    }
}

/// Softmax over the last dimension, fused when no gradient is needed (candle).
pub use crate::backend::softmax_last;

/// Activation functions, named as in the configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh-approximated GELU (GPT-2's `gelu_new`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluNew,
    /// `x * sigmoid(1.702 x)` (CLIP).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// `max(x, 0)`.
    #[serde(rename = "relu")]
    Relu,
    /// `relu(x)^2`.
    #[serde(rename = "sqrelu")]
    SqRelu,
    /// Hyperbolic tangent.
    #[serde(rename = "tanh")]
    Tanh,
}

impl Activation {
    /// Applies the function elementwise.
    pub fn forward<T: Backend>(&self, x: &T) -> candle_core::Result<T> {
        x.activation(*self)
    }
}

/// One attention layer's scaled queries [B, H, Sq, Dh] and keys [B, H, Sk, Dh], kept by the
/// opt-in traced passes that attention maps read ([`crate::attention_maps`]); the layer's
/// weights are `softmax(q kᵀ)` per head (no mask: the traced layers attend without one).
#[derive(Debug, Clone)]
pub struct QueryKeys<T: Backend = Tensor> {
    /// Queries, already scaled.
    pub q: T,
    /// Keys.
    pub k: T,
}

/// Scaled dot-product attention over heads. `q` [B,H,Sq,Dh] (already scaled), `k`/`v`
/// [B,H,Sk,Dh]; `bias` is an additive mask broadcastable to [B,H,Sq,Sk] (0 or a large negative).
pub fn attention<T: Backend>(q: &T, k: &T, v: &T, bias: Option<&T>) -> candle_core::Result<T> {
    T::attention(q, k, v, bias, &Dropout::default())
}

/// [`attention`] with dropout on the attention probabilities (active only while training).
pub fn attention_with_dropout<T: Backend>(
    q: &T,
    k: &T,
    v: &T,
    bias: Option<&T>,
    drop: &Dropout,
) -> candle_core::Result<T> {
    T::attention(q, k, v, bias, drop)
}

/// Converts a float keep-mask (1 = visible, 0 = hidden) of shape [B, Sk] into an additive bias
/// [B, 1, 1, Sk]. Hidden keys get the most negative f32, as Hugging Face does, so that a row
/// with every key hidden stays finite.
pub fn key_bias(keep: &Tensor) -> candle_core::Result<Tensor> {
    let (b, sk) = keep.dims2()?;
    // Built in f32: in bf16 the factor f32::MIN rounds to -inf and 0 * -inf would be NaN for
    // every visible key; converting the finished bias gives -inf only where keys are hidden.
    let hidden = (1.0 - keep.to_dtype(DType::F32)?)?;
    (hidden * f32::MIN as f64)?
        .to_dtype(keep.dtype())?
        .reshape((b, 1, 1, sk))
}

/// Additive causal bias [Sq, Sk] for queries at positions `offset..offset+Sq` over keys `0..Sk`.
pub fn causal_bias(
    sq: usize,
    sk: usize,
    offset: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..sq)
        .flat_map(|i| (0..sk).map(move |j| if j > i + offset { f32::MIN } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (sq, sk), device)?.to_dtype(dtype)
}

/// The bridge's feed-forward block: LayerNorm → Linear(D, D·mult) → act → Linear(D·mult, D),
/// no biases on the linears (`.0`, `.1`, `.3` in the original's `nn.Sequential`).
#[derive(Debug, Clone)]
pub struct FeedForward<T: Backend = Tensor> {
    norm: LayerNorm<T>,
    up: Linear<T>,
    act: Activation,
    down: Linear<T>,
}

impl<T: Backend> FeedForward<T> {
    /// Builds the block for width `dim`.
    pub fn new(dim: usize, mult: usize, act: Activation, vb: ModelVb<T>) -> candle_core::Result<Self> {
        Ok(Self {
            norm: LayerNorm::new(dim, 1e-5, vb.pp("0"))?,
            up: Linear::new(dim, dim * mult, false, vb.pp("1"))?,
            act,
            down: Linear::new(dim * mult, dim, false, vb.pp("3"))?,
        })
    }

    /// LayerNorm → up → activation → down.
    pub fn forward(&self, x: &T) -> candle_core::Result<T> {
        self.down
            .forward(&x.norm_linear(&self.norm, &self.up, Some(self.act))?)
    }

    /// `x + forward(x) * tanh(gate)`: the block on a residual stream, gated.
    pub fn forward_gated(&self, x: &T, gate: &T) -> candle_core::Result<T> {
        let h = x.norm_linear(&self.norm, &self.up, Some(self.act))?;
        h.linear_residual(&self.down, x, Some(gate), &Dropout::default())
    }
}
