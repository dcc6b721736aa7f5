//! Beam search and greedy decoding on the fixture models, through the KV-cached captioner.

mod common;

use candle_core::{Device, Tensor};
use caption_model::decode::{generate, sequence_log_prob, DecodeOptions, Strategy};
use caption_model::weights::{model_from_tensors, read_safetensors};
use caption_model::{CaptionModel, Captioner, ModelConfig};
use common::fixture;

const VARIANTS: [&str; 4] = [
    "mlp_resampler",
    "mapper_only",
    "resampler_only",
    "transformer_mapper_freq2",
];

fn load(variant: &str) -> (CaptionModel, Tensor) {
    let dev = Device::Cpu;
    let dir = fixture(&format!("fixtures/seed/{variant}"));
    let cfg = ModelConfig::from_file(dir.join("config.json")).unwrap();
    let model = model_from_tensors(
        &cfg,
        read_safetensors(&dir.join("weights.safetensors"), &dev).unwrap(),
        &dev,
    )
    .unwrap();
    let io = read_safetensors(&dir.join("io.safetensors"), &dev).unwrap();
    (model, io["video"].clone())
}

/// Every frame of the fixture video as a one-frame image batch [N, 1, C, H, W].
fn frames(video: &Tensor) -> Tensor {
    let (b, t, c, h, w) = video.dims5().unwrap();
    video.reshape((b * t, 1, c, h, w)).unwrap()
}

fn decode(
    model: &CaptionModel,
    images: &Tensor,
    strategy: Strategy,
    max_length: usize,
) -> Vec<(Vec<u32>, f32)> {
    let n = images.dim(0).unwrap();
    let mask = CaptionModel::frame_mask(&vec![1; n], 1, model.device()).unwrap();
    let visual = model.visual(images, &mask).unwrap();
    let t = model.config().text_config().unwrap();
    let opts = DecodeOptions {
        strategy,
        max_length,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    let mut captioner = Captioner::new(model, &visual).unwrap();
    generate(&mut captioner, &opts)
        .unwrap()
        .into_iter()
        .map(|g| (g.tokens, g.score))
        .collect()
}

#[test]
fn beam_width_one_equals_greedy_on_every_fixture_frame() {
    for variant in VARIANTS {
        let (model, video) = load(variant);
        let images = frames(&video);
        let greedy = decode(&model, &images, Strategy::Greedy, 12);
        let beam1 = decode(&model, &images, Strategy::Beam { width: 1 }, 12);
        assert_eq!((greedy.len(), beam1.len()), (6, 6), "{variant}");
        for (g, b) in greedy.iter().zip(&beam1) {
            assert_eq!(g.0, b.0, "{variant}: beam width 1 differs from greedy");
        }
    }
}

#[test]
fn batched_greedy_equals_one_image_at_a_time() {
    let (model, video) = load("mlp_resampler");
    let images = frames(&video);
    let batched = decode(&model, &images, Strategy::Greedy, 12);
    assert_eq!(batched.len(), 6);
    for (i, expected) in batched.iter().enumerate() {
        let single = decode(&model, &images.narrow(0, i, 1).unwrap(), Strategy::Greedy, 12);
        assert_eq!(single[0].0, expected.0, "frame {i}");
        assert!((single[0].1 - expected.1).abs() < 1e-3, "frame {i}");
    }
}

#[test]
fn beam_width_three_finds_a_higher_scoring_caption_than_greedy() {
    let mut strictly_better = Vec::new();
    for variant in VARIANTS {
        let (model, video) = load(variant);
        let images = frames(&video);
        let greedy = decode(&model, &images, Strategy::Greedy, 12);
        let beam3 = decode(&model, &images, Strategy::Beam { width: 3 }, 12);
        assert_eq!((greedy.len(), beam3.len()), (6, 6), "{variant}");
        for (i, (g, b)) in greedy.iter().zip(&beam3).enumerate() {
            // Greedy reports the summed log-prob; beam the length-normalised one.
            let greedy_norm = g.1 / g.0.len() as f32;
            // Re-score beam's caption independently to check the score it reports.
            let n = images.dim(0).unwrap();
            let mask = CaptionModel::frame_mask(&[1], 1, model.device()).unwrap();
            let visual = model.visual(&images.narrow(0, i, 1).unwrap(), &mask).unwrap();
            let mut captioner = Captioner::new(&model, &visual).unwrap();
            let bos = model.config().text_config().unwrap().bos_token_id;
            let rescored = sequence_log_prob(&mut captioner, bos, std::slice::from_ref(&b.0)).unwrap()[0];
            assert!(
                (rescored as f32 / b.0.len() as f32 - b.1).abs() < 1e-3,
                "{variant} frame {i} of {n}"
            );
            assert!(
                b.1 >= greedy_norm - 1e-4,
                "{variant} frame {i}: beam {} < greedy {greedy_norm}",
                b.1
            );
            if b.1 > greedy_norm + 1e-4 {
                strictly_better.push(format!(
                    "{variant} frame {i}: beam {:.4} > greedy {greedy_norm:.4}",
                    b.1
                ));
            }
        }
    }
    println!("{}", strictly_better.join("\n"));
    assert!(
        !strictly_better.is_empty(),
        "beam width 3 never beat greedy on any fixture frame"
    );
}

#[test]
fn nucleus_is_reproducible_with_a_seed() {
    let (model, video) = load("mlp_resampler");
    let images = frames(&video);
    let nucleus = |seed| Strategy::Nucleus {
        temperature: 0.9,
        top_p: 0.8,
        top_k: None,
        seed,
    };
    let a = decode(&model, &images, nucleus(7), 12);
    assert_eq!(a, decode(&model, &images, nucleus(7), 12));
    let tiny_p = Strategy::Nucleus {
        temperature: 1.0,
        top_p: 1e-6,
        top_k: None,
        seed: 3,
    };
    let greedy = decode(&model, &images, Strategy::Greedy, 12);
    let tokens = |v: &[(Vec<u32>, f32)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(tokens(&decode(&model, &images, tiny_p, 12)), tokens(&greedy));
}

#[test]
fn captions_stop_where_gpt2_runs_out_of_positions() {
    let (model, video) = load("mlp_resampler");
    let images = frames(&video).narrow(0, 0, 2).unwrap();
    let mask = CaptionModel::frame_mask(&[1, 1], 1, model.device()).unwrap();
    let visual = model.visual(&images, &mask).unwrap();
    let t = model.config().text_config().unwrap();
    // One prefix token per frame: the rest of GPT-2's positions hold bos and what follows.
    let room = t.n_positions - visual.prefix.dim(1).unwrap();
    assert_eq!(room, 63);
    for strategy in [Strategy::Greedy, Strategy::Beam { width: 3 }] {
        let run = |max_length: usize| {
            let opts = DecodeOptions {
                strategy: strategy.clone(),
                max_length,
                bos: t.bos_token_id,
                // Outside the vocabulary: never produced, so every caption runs to its limit.
                eos: t.vocab_size as u32,
            };
            let mut captioner = Captioner::new(&model, &visual).unwrap();
            generate(&mut captioner, &opts).unwrap()
        };
        let (long, exact) = (run(500), run(room));
        assert_eq!(long.len(), 2);
        for (a, b) in long.iter().zip(&exact) {
            assert_eq!(a.tokens.len(), room, "{strategy:?}");
            assert_eq!(a.tokens, b.tokens, "{strategy:?}");
        }
    }
}
