//! Building blocks shared by every component: linear layers, layer norm, activations,
//! multi-head attention and the bridge's feed-forward block. Each is written once.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::dropout::Dropout;
use crate::fused;
use crate::weights::quant::quantized_matrix;

/// How a linear map's matrix is held on the candle side (before a backend takes it).
#[derive(Debug, Clone)]
pub enum Weight {
    /// `W^T` [in, out], dense (differentiable).
    Dense(Tensor),
    /// `W` [out, in] in GGML blocks, multiplied by candle's quantized kernels.
    Quantized(QMatMul),
}

/// A linear map `x W^T + b`. Dense weights are held as `W^T` ([in, out]) so that both PyTorch
/// `Linear` ([out, in]) and GPT-2 `Conv1D` ([in, out]) weights are used without a copy; weights
/// that the store holds quantized (`<name>.q8_0`/`.q4_0`, see [`crate::weights::quant`]) stay in
/// their blocks, so one model structure serves f32 and quantized weights.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch `nn.Linear(in_dim, out_dim)`: `weight` [out, in], optional `bias` [out].
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = match quantized_matrix(&vb, "weight", out_dim, in_dim)? {
            Some(q) => Weight::Quantized(q),
            None => Weight::Dense(vb.get((out_dim, in_dim), "weight")?.t()?),
        };
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// GPT-2 `Conv1D(out_dim, in_dim)`: `weight` stored [in, out], `bias` [out].
    pub fn conv1d(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        // Quantized Conv1D weights are stored transposed ([out, in]), blocks along `in`.
        let weight = match quantized_matrix(&vb, "weight", out_dim, in_dim)? {
            Some(q) => Weight::Quantized(q),
            None => Weight::Dense(vb.get((in_dim, out_dim), "weight")?),
        };
        Ok(Self {
            weight,
            bias: Some(vb.get(out_dim, "bias")?),
        })
    }

    /// A linear map from explicit tensors (`weight` [out, in]).
    pub fn from_weights(weight: &Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        Ok(Self {
            weight: Weight::Dense(weight.t()?),
            bias,
        })
    }

    /// The LM head tied to the token embedding `wte` [vocab, d], whose weights live at `vb`
    /// (`wte`): the stored blocks when the embedding is quantized, else `wte` itself.
    pub fn tied(wte: &Tensor, vb: VarBuilder) -> candle_core::Result<Self> {
        let (vocab, d) = wte.dims2()?;
        match quantized_matrix(&vb, "weight", vocab, d)? {
            Some(q) => Ok(Self {
                weight: Weight::Quantized(q),
                bias: None,
            }),
            None => Self::from_weights(wte, None),
        }
    }

    /// Whether the matrix is held in quantized blocks.
    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, Weight::Quantized(_))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Flatten leading dims so one 2-D GEMM runs instead of a batched one.
        let dims = x.dims().to_vec();
        let (lead, last) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x = x.reshape((rows, last[0]))?;
        let y = match &self.weight {
            Weight::Dense(w) => x.matmul(w)?,
            // The quantized kernels read the activations as one contiguous f32 block.
            Weight::Quantized(q) => q.forward(&x.contiguous()?)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        y.reshape(out)
    }
}

/// Layer normalisation over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// `nn.LayerNorm(dim, eps)` with `weight` and `bias`.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }
}

/// Whether a computation involving these tensors must stay differentiable.
fn tracked(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // candle's fused kernel has no backward pass: use it only when no gradient is needed.
        if x.is_contiguous() && x.dtype() == DType::F32 && !tracked(&[x, &self.weight, &self.bias]) {
            return candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32);
        }
        if fused::applies(x) && x.dtype() == self.weight.dtype() {
            return fused::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        // Half precision is normalised in f32 (as PyTorch's autocast does); f32/f64 stay as they are.
        let dtype = x.dtype();
        let x = match dtype {
            DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
            _ => x.clone(),
        };
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension, fused when no gradient is needed.
pub fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    if tracked(&[x]) {
        if fused::applies(x) {
            return fused::softmax_last(x);
        }
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

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

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let fused = match self {
            Activation::Gelu => Some(fused::Act::GeluErf),
            Activation::GeluNew => Some(fused::Act::GeluNew),
            Activation::QuickGelu => Some(fused::Act::QuickGelu),
            _ => None,
        };
        if let Some(act) = fused.filter(|_| tracked(&[x]) && fused::applies(x)) {
            return act.apply(x);
        }
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluNew => x.gelu(),
            Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Activation::Relu => x.relu(),
            Activation::SqRelu => x.relu()?.sqr(),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// Splits [B, S, H*Dh] into heads: [B, H, S, Dh].
pub fn split_heads(x: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (b, s, hd) = x.dims3()?;
    x.reshape((b, s, heads, hd / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// Merges heads back: [B, H, S, Dh] → [B, S, H*Dh].
pub fn merge_heads(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, h, s, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, s, h * d))
}

/// Scaled dot-product attention over heads. `q` [B,H,Sq,Dh] (already scaled), `k`/`v`
/// [B,H,Sk,Dh]; `bias` is an additive mask broadcastable to [B,H,Sq,Sk] (0 or a large negative).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Tensor> {
    attention_with_dropout(q, k, v, bias, &Dropout::default())
}

/// [`attention`] with dropout on the attention probabilities (active only while training).
pub fn attention_with_dropout(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    drop: &Dropout,
) -> candle_core::Result<Tensor> {
    let scores = q.matmul(&k.t()?)?;
    let scores = match bias {
        Some(b) => scores.broadcast_add(b)?,
        None => scores,
    };
    drop.forward(&softmax_last(&scores)?)?.matmul(v)
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
pub struct FeedForward {
    norm: LayerNorm,
    up: Linear,
    act: Activation,
    down: Linear,
}

impl FeedForward {
    /// Builds the block for width `dim`.
    pub fn new(dim: usize, mult: usize, act: Activation, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            norm: LayerNorm::new(dim, 1e-5, vb.pp("0"))?,
            up: Linear::new(dim, dim * mult, false, vb.pp("1"))?,
            act,
            down: Linear::new(dim * mult, dim, false, vb.pp("3"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.up.forward(&self.norm.forward(x)?)?;
        self.down.forward(&self.act.forward(&h)?)
    }
}
