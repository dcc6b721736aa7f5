//! GPT-2 (Hugging Face `GPT2LMHeadModel`) with a KV cache, and the gated cross-attention
//! blocks inserted before every `freq`-th block.

use candle_core::Tensor;

use crate::backend::{Backend, ModelVb};
use serde::{Deserialize, Serialize};

use crate::dropout::{Dropout, DropoutRng};
use crate::nn::Weight;
use crate::nn::{Activation, LayerNorm, Linear, QueryKeys};
use crate::weights::quant::quantized_matrix;
use crate::xattn::{GatedCrossAttention, MediaKv};
use crate::{Error, Result};

/// Hugging Face `GPT2Config` (unknown keys ignored, as transformers does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum sequence length (prefix + text).
    pub n_positions: usize,
    /// Model width.
    pub n_embd: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// MLP width; 4·n_embd when absent.
    pub n_inner: Option<usize>,
    /// MLP activation.
    pub activation_function: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// Beginning-of-sequence token.
    pub bos_token_id: u32,
    /// End-of-sequence token.
    pub eos_token_id: u32,
    /// Whether `lm_head` shares `wte`'s weights.
    pub tie_word_embeddings: bool,
    /// Dropout after the attention and MLP projections (training only).
    pub resid_pdrop: f32,
    /// Dropout on the input embeddings (training only).
    pub embd_pdrop: f32,
    /// Dropout on the attention probabilities (training only).
    pub attn_pdrop: f32,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Self::gpt2()
    }
}

impl Gpt2Config {
    /// The `gpt2` (small) hub model's config.
    pub fn gpt2() -> Self {
        Self {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: Activation::GeluNew,
            layer_norm_epsilon: 1e-5,
            bos_token_id: 50256,
            eos_token_id: 50256,
            tie_word_embeddings: true,
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
        }
    }

    /// Reads a hub `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config(format!("GPT-2 config.json: {e}")))
    }

    /// The MLP width.
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Checks the sizes divide as the model needs.
    pub fn validate(&self) -> Result<()> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(Error::Config(format!(
                "GPT-2 n_embd {} is not divisible by n_head {}",
                self.n_embd, self.n_head
            )));
        }
        for (name, p) in [
            ("resid_pdrop", self.resid_pdrop),
            ("embd_pdrop", self.embd_pdrop),
            ("attn_pdrop", self.attn_pdrop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::Config(format!("GPT-2 {name} ({p}) must lie in [0, 1)")));
            }
        }
        Ok(())
    }
}

pub use crate::backend::KvCache;

/// Causal self-attention (`attn.c_attn`, `attn.c_proj`).
#[derive(Debug, Clone)]
pub(crate) struct Gpt2Attention<T: Backend> {
    pub(crate) c_attn: Linear<T>,
    pub(crate) c_proj: Linear<T>,
    pub(crate) heads: usize,
    pub(crate) scale: f64,
    pub(crate) attn_drop: Dropout,
    pub(crate) resid_drop: Dropout,
}

impl<T: Backend> Gpt2Attention<T> {
    fn new(cfg: &Gpt2Config, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let d = cfg.n_embd;
        Ok(Self {
            c_attn: Linear::conv1d(d, 3 * d, vb.pp("c_attn"))?,
            c_proj: Linear::conv1d(d, d, vb.pp("c_proj"))?,
            heads: cfg.n_head,
            scale: ((d / cfg.n_head) as f64).powf(-0.5),
            attn_drop: Dropout::new(cfg.attn_pdrop),
            resid_drop: Dropout::new(cfg.resid_pdrop),
        })
    }

    /// `x` plus the attention branch of the block, whose input norm is `ln_1`.
    fn forward(
        &self,
        x: &T,
        ln_1: &LayerNorm<T>,
        bias: &T,
        cache: Option<&mut KvCache<T>>,
    ) -> candle_core::Result<T> {
        let qkv = x.norm_linear(ln_1, &self.c_attn, None)?;
        let mixed = T::self_attention(&qkv, self.heads, self.scale, bias, cache, &self.attn_drop)?;
        mixed.linear_residual(&self.c_proj, x, None, &self.resid_drop)
    }
}

/// One pre-LN GPT-2 block (an engine may run it whole: [`Backend::gpt2_block`]).
#[derive(Debug, Clone)]
pub struct Gpt2Block<T: Backend> {
    pub(crate) ln_1: LayerNorm<T>,
    pub(crate) attn: Gpt2Attention<T>,
    pub(crate) ln_2: LayerNorm<T>,
    pub(crate) c_fc: Linear<T>,
    pub(crate) act: Activation,
    pub(crate) c_proj: Linear<T>,
    pub(crate) mlp_drop: Dropout,
}

impl<T: Backend> Gpt2Block<T> {
    fn new(cfg: &Gpt2Config, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let (d, eps) = (cfg.n_embd, cfg.layer_norm_epsilon);
        Ok(Self {
            ln_1: LayerNorm::new(d, eps, vb.pp("ln_1"))?,
            attn: Gpt2Attention::new(cfg, vb.pp("attn"))?,
            ln_2: LayerNorm::new(d, eps, vb.pp("ln_2"))?,
            c_fc: Linear::conv1d(d, cfg.inner_dim(), vb.pp("mlp.c_fc"))?,
            act: cfg.activation_function,
            c_proj: Linear::conv1d(cfg.inner_dim(), d, vb.pp("mlp.c_proj"))?,
            mlp_drop: Dropout::new(cfg.resid_pdrop),
        })
    }

    fn forward(&self, x: &T, bias: &T, cache: Option<&mut KvCache<T>>) -> candle_core::Result<T> {
        T::gpt2_block(self, x, bias, cache)
    }

    /// The block as the seam's ops: attention branch, then MLP branch, each with its residual.
    pub(crate) fn forward_composed(
        &self,
        x: &T,
        bias: &T,
        cache: Option<&mut KvCache<T>>,
    ) -> candle_core::Result<T> {
        let x = self.attn.forward(x, &self.ln_1, bias, cache)?;
        let h = x.norm_linear(&self.ln_2, &self.c_fc, Some(self.act))?;
        h.linear_residual(&self.c_proj, &x, None, &self.mlp_drop)
    }
}

/// Block `h.N`: a GPT-2 block, optionally preceded by a gated cross-attention block (then the
/// weights live at `h.N.xattn_block` and `h.N.lm_block`).
#[derive(Debug, Clone)]
struct TextLayer<T: Backend> {
    xattn: Option<GatedCrossAttention<T>>,
    block: Gpt2Block<T>,
}

/// GPT-2 with its LM head, built at `text_generator.lm` (weights `transformer.*`, `lm_head`).
#[derive(Debug, Clone)]
pub struct Gpt2<T: Backend = Tensor> {
    wte: T::Matrix,
    wpe: T,
    layers: Vec<TextLayer<T>>,
    ln_f: LayerNorm<T>,
    lm_head: Linear<T>,
    embd_drop: Dropout,
    cfg: Gpt2Config,
}

impl<T: Backend> Gpt2<T> {
    /// Builds GPT-2; `xattn(i)` gives the cross-attention config of block `i`, if it has one.
    pub fn new(
        cfg: &Gpt2Config,
        xattn: impl Fn(usize) -> Option<crate::config::XattnConfig>,
        vb: ModelVb<T>,
    ) -> candle_core::Result<Self> {
        let d = cfg.n_embd;
        let t = vb.pp("transformer");
        let dense_wte = t.vb().get((cfg.vocab_size, d), "wte.weight")?;
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let h = t.pp("h").pp(i);
                Ok(match xattn(i) {
                    Some(x) => TextLayer {
                        xattn: Some(GatedCrossAttention::new(d, &x, h.pp("xattn_block"))?),
                        block: Gpt2Block::new(cfg, h.pp("lm_block"))?,
                    },
                    None => TextLayer {
                        xattn: None,
                        block: Gpt2Block::new(cfg, h)?,
                    },
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let (wte, lm_head) = if cfg.tie_word_embeddings {
            // A quantized folder keeps the embedding's blocks: the head multiplies them directly.
            let head = match quantized_matrix(t.pp("wte").vb(), "weight", cfg.vocab_size, d)? {
                Some(q) => Weight::Quantized(q),
                None => Weight::Dense(dense_wte.t()?),
            };
            let (table, head) = T::tied_embedding(&dense_wte, head, vb.device())?;
            (table, Linear::from_matrix(head, None))
        } else {
            (
                T::embedding(&dense_wte, vb.device())?,
                Linear::new(d, cfg.vocab_size, false, vb.pp("lm_head"))?,
            )
        };
        Ok(Self {
            wpe: t.get((cfg.n_positions, d), "wpe.weight")?,
            wte,
            layers,
            ln_f: LayerNorm::new(d, cfg.layer_norm_epsilon, t.pp("ln_f"))?,
            lm_head,
            embd_drop: Dropout::new(cfg.embd_pdrop),
            cfg: cfg.clone(),
        })
    }

    /// Switches on GPT-2's dropout (training), drawing masks from `rng`.
    pub fn enable_dropout(&mut self, rng: &DropoutRng) {
        self.embd_drop.enable(rng);
        for layer in &mut self.layers {
            let b = &mut layer.block;
            for d in [&mut b.attn.attn_drop, &mut b.attn.resid_drop, &mut b.mlp_drop] {
                d.enable(rng);
            }
        }
    }

    /// The config GPT-2 was built with.
    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    /// Token embeddings of `tokens` [B, L] (u32) → [B, L, D].
    pub fn embed(&self, tokens: &T::Ids) -> candle_core::Result<T> {
        T::gather_rows(&self.wte, tokens)
    }

    /// Per-block keys/values of the visual latents (None for blocks without cross-attention).
    pub fn media_kv(&self, latents: &T) -> candle_core::Result<Vec<Option<MediaKv<T>>>> {
        self.layers
            .iter()
            .map(|l| l.xattn.as_ref().map(|x| x.media_kv(latents)).transpose())
            .collect()
    }

    /// Runs the blocks over input embeddings `x` [B, S, D] at positions `offset..offset+S`.
    /// `bias` is the additive attention mask broadcastable to [B, H, S, offset+S]; `media`
    /// comes from [`Gpt2::media_kv`] (empty when there is no cross-attention); `cache` holds one
    /// entry per block when generating. Returns the hidden states after `ln_f`.
    pub fn forward_embeds(
        &self,
        x: &T,
        offset: usize,
        bias: &T,
        media: &[Option<MediaKv<T>>],
        cache: Option<&mut [KvCache<T>]>,
    ) -> Result<T> {
        let x = self.forward_blocks(x, offset, bias, media, cache)?;
        Ok(self.ln_f.forward(&x)?)
    }

    /// [`Gpt2::forward_blocks`] without a cache, also returning the queries of every position
    /// and the latents' keys at each cross-attention block, in block order (the opt-in pass of
    /// attention maps).
    pub fn forward_blocks_traced(
        &self,
        x: &T,
        bias: &T,
        media: &[Option<MediaKv<T>>],
    ) -> Result<(T, Vec<QueryKeys<T>>)> {
        let mut trace = Vec::new();
        let x = self.blocks(x, 0, bias, media, None, Some(&mut trace))?;
        Ok((x, trace))
    }

    /// [`Gpt2::forward_embeds`] without the final norm (see [`Gpt2::norm_logits`]).
    pub fn forward_blocks(
        &self,
        x: &T,
        offset: usize,
        bias: &T,
        media: &[Option<MediaKv<T>>],
        cache: Option<&mut [KvCache<T>]>,
    ) -> Result<T> {
        self.blocks(x, offset, bias, media, cache, None)
    }

    /// The blocks' pass; `trace`, when given, receives each cross-attention block's queries
    /// and keys.
    fn blocks(
        &self,
        x: &T,
        offset: usize,
        bias: &T,
        media: &[Option<MediaKv<T>>],
        mut cache: Option<&mut [KvCache<T>]>,
        mut trace: Option<&mut Vec<QueryKeys<T>>>,
    ) -> Result<T> {
        let s = x.dim(1)?;
        if offset + s > self.cfg.n_positions {
            return Err(Error::Decode(format!(
                "sequence of {} positions exceeds GPT-2's n_positions {}",
                offset + s,
                self.cfg.n_positions
            )));
        }
        if cache.as_ref().is_some_and(|c| c.len() != self.layers.len()) {
            return Err(Error::Decode(format!(
                "the KV cache has {} entries for {} blocks (make it with Gpt2::new_cache)",
                cache.as_ref().map_or(0, |c| c.len()),
                self.layers.len()
            )));
        }
        let mut x = x
            .broadcast_add(&self.wpe.narrow(0, offset, s)?)?
            .dropout(&self.embd_drop)?;
        for (i, layer) in self.layers.iter().enumerate() {
            if let (Some(xattn), Some(Some(kv))) = (&layer.xattn, media.get(i)) {
                if let Some(trace) = trace.as_deref_mut() {
                    trace.push(xattn.query_keys(&x, kv)?);
                }
                x = xattn.forward(&x, kv)?;
            }
            let c = cache.as_deref_mut().map(|c| &mut c[i]);
            x = layer.block.forward(&x, bias, c)?;
        }
        Ok(x)
    }

    /// LM-head logits of hidden states [.., D] → [.., V].
    pub fn logits(&self, hidden: &T) -> candle_core::Result<T> {
        self.lm_head.forward(hidden)
    }

    /// LM-head logits of the blocks' output before the final norm ([`Gpt2::forward_blocks`]):
    /// `ln_f` and the head, fused where the engine can (the norm is per row, so norming only
    /// the rows wanted gives their values).
    pub fn norm_logits(&self, x: &T) -> candle_core::Result<T> {
        x.norm_linear(&self.ln_f, &self.lm_head, None)
    }

    /// A fresh, empty KV cache with one entry per block.
    pub fn new_cache(&self) -> Vec<KvCache<T>> {
        vec![KvCache::default(); self.layers.len()]
    }
}
