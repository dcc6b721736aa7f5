//! Frozen GPT-2 blocks under a tracked input run as one graph node with a hand-written backward
//! (`backend::frozen_block`): the forward is bit-identical to candle's autograd path and the
//! gradients of everything trainable before and between the blocks agree with it, with and
//! without dropout. One binary of its own: it switches the process-wide path.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use caption_model::backend::{set_frozen_blocks, ModelVb};
use caption_model::config::XattnConfig;
use caption_model::dropout::DropoutRng;
use caption_model::gpt2::{Gpt2, Gpt2Config};
use caption_model::nn::{causal_bias, key_bias, Activation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The tensors a [`RandomWeights`] handed out, by name (the trained ones are variables).
type Handed = Arc<Mutex<BTreeMap<String, Tensor>>>;

/// Seeded random weights; names containing one of `trained` become `Var`s (tracked).
struct RandomWeights {
    rng: Mutex<StdRng>,
    trained: Vec<&'static str>,
    handed: Handed,
}

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let values: Vec<f32> = {
            let mut rng = self.rng.lock().unwrap();
            (0..s.elem_count()).map(|_| rng.random_range(-0.5..0.5)).collect()
        };
        // Norm scales around 1, as trained ones are.
        let shift = if name.contains("norm") || name.contains("ln_") {
            1.0
        } else {
            0.0
        };
        let shift = if name.ends_with("weight") { shift } else { 0.0 };
        let mut t = (Tensor::from_vec(values, s, dev)? + shift)?.to_dtype(dtype)?;
        if self.trained.iter().any(|p| name.contains(p)) {
            t = Var::from_tensor(&t)?.as_tensor().clone();
        }
        self.handed.lock().unwrap().insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("no tensor {name} without a shape")
    }

    /// Every dense tensor, no quantized blocks (`<name>.q8_0`, `<name>.q4_0`).
    fn contains_tensor(&self, name: &str) -> bool {
        !name.ends_with("_0")
    }
}

/// The tests switch the process-wide path: one at a time.
static SWITCH: Mutex<()> = Mutex::new(());

const BATCH: usize = 2;
const SEQ: usize = 7;
const DIM: usize = 24;
const LATENTS: usize = 5;

/// Three blocks of three heads with a cross-attention block before block 1 (trained), all
/// dropout rates 0.1; GPT-2's weights are frozen except those whose names contain one of
/// `trained_gpt2`.
fn stack(dtype: DType, trained_gpt2: &[&'static str]) -> (Gpt2, BTreeMap<String, Tensor>) {
    let cfg = Gpt2Config {
        vocab_size: 13,
        n_positions: 16,
        n_embd: DIM,
        n_layer: 3,
        n_head: 3,
        ..Gpt2Config::gpt2()
    };
    let xattn = XattnConfig {
        dim_head: 4,
        heads: 2,
        num_latents: LATENTS,
        ff_mult: 2,
        activation: Activation::Gelu,
        freq: 1,
    };
    let handed = Handed::default();
    let mut trained = vec!["xattn_block"];
    trained.extend_from_slice(trained_gpt2);
    let weights = RandomWeights {
        rng: Mutex::new(StdRng::seed_from_u64(11)),
        trained,
        handed: handed.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(weights), dtype, Device::Cpu);
    let model = Gpt2::new(&cfg, |i| (i == 1).then(|| xattn.clone()), ModelVb::candle(vb)).unwrap();
    let handed = handed.lock().unwrap().clone();
    (model, handed)
}

/// Seeded values of `dims` in [-1, 1).
fn random(dims: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Every value as f64.
fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// One forward and backward pass.
struct Pass {
    /// The blocks' output.
    out: Vec<f64>,
    /// The gradients of the input, the latents and every trained weight.
    grads: BTreeMap<String, Vec<f64>>,
    /// The frozen weights a gradient was computed for all the same (candle's autograd
    /// differentiates the fused layer norm's scale and shift whether tracked or not).
    frozen_graded: BTreeSet<String>,
}

/// Runs `model` over a tracked input and tracked latents (row 1 padded at its end), with
/// dropout drawn from seed 5 when `dropout`, on the whole-block path when `blocks`.
fn pass(model: &Gpt2, weights: &BTreeMap<String, Tensor>, dropout: bool, blocks: bool) -> Pass {
    set_frozen_blocks(blocks);
    let dtype = weights.values().next().unwrap().dtype();
    let mut model = model.clone();
    if dropout {
        model.enable_dropout(&DropoutRng::new(5));
    }
    let x = Var::from_tensor(&random(&[BATCH, SEQ, DIM], 1, dtype)).unwrap();
    let latents = Var::from_tensor(&random(&[BATCH, LATENTS, DIM], 2, dtype)).unwrap();
    let keep = Tensor::from_vec(
        vec![1f32, 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 0., 0.],
        (BATCH, SEQ),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    let bias = key_bias(&keep)
        .unwrap()
        .broadcast_add(&causal_bias(SEQ, SEQ, 0, dtype, &Device::Cpu).unwrap())
        .unwrap();
    let media = model.media_kv(latents.as_tensor()).unwrap();
    let out = model
        .forward_blocks(x.as_tensor(), 0, &bias, &media, None)
        .unwrap();
    let weighting = random(&[BATCH, SEQ, DIM], 3, dtype);
    let loss = (&out * weighting).unwrap().sum_all().unwrap();
    let store = loss.backward().unwrap();
    let (trained, frozen): (Vec<_>, Vec<_>) = weights.iter().partition(|(_, t)| t.is_variable());
    let mut grads: BTreeMap<String, Vec<f64>> = trained
        .into_iter()
        .map(|(name, t)| (name.clone(), values(store.get(t).unwrap())))
        .collect();
    grads.insert("input".into(), values(store.get(x.as_tensor()).unwrap()));
    grads.insert("latents".into(), values(store.get(latents.as_tensor()).unwrap()));
    Pass {
        out: values(&out),
        grads,
        frozen_graded: frozen
            .into_iter()
            .filter(|(_, t)| store.get(t).is_some())
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// max |got - want| / max |want| (and that the reference is not all zeros).
fn relative(got: &[f64], want: &[f64], what: &str) -> f64 {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-6, "{what}: a vanishing reference gradient");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: not finite");
    got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// The names of the norm weights of `blocks` (each block's `ln_1` and `ln_2`).
fn block_norms(blocks: &[&str]) -> BTreeSet<String> {
    blocks
        .iter()
        .flat_map(|b| {
            ["ln_1", "ln_2"]
                .into_iter()
                .flat_map(move |n| ["weight", "bias"].map(|w| format!("transformer.h.{b}.{n}.{w}")))
        })
        .collect()
}

#[test]
fn frozen_blocks_match_candles_autograd() {
    let _one_at_a_time = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        let (model, weights) = stack(dtype, &[]);
        for dropout in [false, true] {
            let what = format!("{dtype:?}, dropout {dropout}");
            let plain = pass(&model, &weights, dropout, false);
            let block = pass(&model, &weights, dropout, true);
            // The same values, bit for bit (the same masks too).
            assert_eq!(block.out, plain.out, "{what}: forward");
            // The path was taken: candle's autograd computes the frozen norms' gradients.
            assert_eq!(
                plain.frozen_graded,
                block_norms(&["0", "1.lm_block", "2"]),
                "{what}"
            );
            assert!(
                block.frozen_graded.is_empty(),
                "{what}: {:?}",
                block.frozen_graded
            );
            assert_eq!(
                block.grads.len(),
                2 + 11,
                "{what}: input, latents, cross-attention"
            );
            for (name, want) in &plain.grads {
                let diff = relative(&block.grads[name], want, &format!("{what}: {name}"));
                assert!(diff < tolerance, "{what}: {name} differs by {diff:e} (relative)");
            }
        }
        // Dropout changes the output (the masks are really drawn and used).
        assert_ne!(
            pass(&model, &weights, true, true).out,
            pass(&model, &weights, false, true).out
        );
    }
    set_frozen_blocks(true);
}

#[test]
fn a_block_with_a_trained_weight_keeps_candles_autograd() {
    let _one_at_a_time = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    // Block 2's qkv projection is trained: blocks 0 and 1 take the whole-block path, block 2
    // does not, and its weight gets the autograd path's gradient.
    let trained = "transformer.h.2.attn.c_attn.weight";
    let (model, weights) = stack(DType::F64, &[trained]);
    let plain = pass(&model, &weights, true, false);
    let block = pass(&model, &weights, true, true);
    assert_eq!(block.out, plain.out);
    assert!(block.grads.contains_key(trained));
    assert_eq!(block.frozen_graded, block_norms(&["2"]));
    for (name, want) in &plain.grads {
        let diff = relative(&block.grads[name], want, name);
        assert!(diff < 1e-12, "{name} differs by {diff:e} (relative)");
    }
    set_frozen_blocks(true);
}
