//! Model folders: export → load round trips on the fixture models (f32 bit-identical, f16 and
//! the block formats close), the storage plan, and refusal of damaged folders.

mod common;

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor};
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::quant::{plan, round_trip, split_quantized, stored_name};
use caption_model::weights::{
    export_folder, load_folder, model_tensors, read_safetensors, verify_folder, ExportedFolder, FolderError,
    Quant, Scheme,
};
use caption_model::{CaptionModel, Error, ModelConfig};
use common::{fixture, max_abs};

const VARIANTS: [&str; 4] = [
    "mlp_resampler",
    "mapper_only",
    "resampler_only",
    "transformer_mapper_freq2",
];

fn seed(variant: &str) -> (ModelConfig, BTreeMap<String, Tensor>) {
    let dir = fixture(&format!("fixtures/seed/{variant}"));
    let cfg = ModelConfig::from_file(dir.join("config.json")).unwrap();
    let tensors = read_safetensors(&dir.join("weights.safetensors"), &Device::Cpu).unwrap();
    let used = model_tensors(&cfg, tensors, &Device::Cpu).unwrap();
    (cfg, used)
}

fn logits(model: &CaptionModel, variant: &str) -> Tensor {
    let dev = Device::Cpu;
    let io = read_safetensors(&fixture(&format!("fixtures/seed/{variant}/io.safetensors")), &dev).unwrap();
    let lengths: Vec<usize> = io["video_length"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let mask = CaptionModel::frame_mask(&lengths, io["video"].dim(1).unwrap(), &dev).unwrap();
    let tokens = io["tokens"].to_dtype(DType::U32).unwrap();
    let (_, logits) = model
        .forward(&io["video"], &mask, &tokens, &io["tokens_mask"])
        .unwrap();
    logits
}

fn export(cfg: &ModelConfig, tensors: &BTreeMap<String, Tensor>, quant: Quant) -> ExportedFolder {
    export_folder(cfg, tensors.clone(), quant, GPT2_TOKENIZER_JSON).unwrap()
}

fn reference(variant: &str) -> (ModelConfig, BTreeMap<String, Tensor>, Tensor) {
    let (cfg, tensors) = seed(variant);
    let model = caption_model::weights::model_from_tensors(
        &cfg,
        tensors.clone().into_iter().collect::<HashMap<_, _>>(),
        &Device::Cpu,
    )
    .unwrap();
    let want = logits(&model, variant);
    (cfg, tensors, want)
}

#[test]
fn f32_folder_gives_bit_identical_logits_and_f16_stays_within_1e_2() {
    for variant in VARIANTS {
        let (cfg, tensors, want) = reference(variant);
        let f32 = export(&cfg, &tensors, Quant::F32);
        let loaded = load_folder(f32.as_bytes(), &Device::Cpu).unwrap();
        assert_eq!(loaded.model.config(), &cfg);
        let got = logits(&loaded.model, variant);
        assert_eq!(
            max_abs(&got, &want),
            0.0,
            "{variant}: f32 export must be bit-identical"
        );

        let f16 = export(&cfg, &tensors, Quant::F16);
        let got = logits(&load_folder(f16.as_bytes(), &Device::Cpu).unwrap().model, variant);
        let d = max_abs(&got, &want);
        println!("{variant}: f16 logits max abs diff {d:e}");
        assert!(d < 1e-2, "{variant}: f16 diff {d}");
    }
}

/// RMS of `got - want` relative to the RMS of `want`.
fn relative_rms(got: &Tensor, want: &Tensor) -> f32 {
    let rms = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .sqrt()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    rms(&(got - want).unwrap()) / rms(want)
}

#[test]
fn block_quantized_folders_stay_close_and_are_smaller() {
    for variant in VARIANTS {
        let (cfg, tensors, want) = reference(variant);
        let f32_size = export(&cfg, &tensors, Quant::F32).model.len();
        // Random fixture weights are uniform, the worst case for 4-bit blocks (no outliers to
        // spare): the trained-model agreement test in native/tests/export.rs is the real gauge.
        for (quant, tol, ratio) in [(Quant::Q8, 0.03, 0.35), (Quant::Q4, 0.3, 0.25)] {
            let folder = export(&cfg, &tensors, quant);
            let got = logits(
                &load_folder(folder.as_bytes(), &Device::Cpu).unwrap().model,
                variant,
            );
            let rel = relative_rms(&got, &want);
            let size = folder.model.len() as f64 / f32_size as f64;
            println!("{variant} {quant}: logits relative RMS error {rel:.4}, size {size:.3} of f32");
            assert!(rel < tol, "{variant} {quant}: relative error {rel}");
            assert!(size < ratio, "{variant} {quant}: {size}");
        }
    }
}

#[test]
fn storage_plan_is_explicit() {
    let conv = "text_generator.lm.transformer.h.0.lm_block.attn.c_attn.weight";
    let p = plan(conv, &[64, 192], Quant::Q4);
    assert_eq!(
        (p.scheme, p.transposed, p.matrix.clone()),
        (Scheme::Q4_0, true, vec![192, 64])
    );
    let p = plan("resampler.time_pos_emb", &[16, 1, 96], Quant::Q8);
    assert_eq!(
        (p.scheme, p.transposed, p.matrix),
        (Scheme::Q8_0, false, vec![16, 96])
    );
    let p = plan("vision.patch_embedding.weight", &[96, 3, 16, 16], Quant::Q4);
    assert_eq!((p.scheme, p.matrix), (Scheme::Q4_0, vec![96, 768]));
    // Rows that are not whole blocks fall back to f16; rank-1 tensors stay f32.
    assert_eq!(plan("mapper.x.weight", &[32, 48], Quant::Q8).scheme, Scheme::F16);
    assert_eq!(plan("mapper.x.bias", &[64], Quant::Q4).scheme, Scheme::F32);
    assert_eq!(plan("mapper.x.weight", &[64, 64], Quant::F16).scheme, Scheme::F16);
    assert_eq!(stored_name("a.weight", Scheme::Q8_0), "a.weight.q8_0");
    assert_eq!(split_quantized("a.weight.q4_0"), Some(("a.weight", Scheme::Q4_0)));
    assert_eq!(split_quantized("a.weight"), None);
}

fn q8_folder() -> (ModelConfig, BTreeMap<String, Tensor>, ExportedFolder) {
    let (cfg, tensors) = seed("mlp_resampler");
    let folder = export(&cfg, &tensors, Quant::Q8);
    (cfg, tensors, folder)
}

fn load_err(folder: &ExportedFolder) -> FolderError {
    match load_folder(folder.as_bytes(), &Device::Cpu) {
        Err(Error::Folder(e)) => e,
        Err(e) => panic!("expected a folder error, got {e}"),
        Ok(_) => panic!("a damaged folder loaded"),
    }
}

/// Re-states the manifest's size and checksum of model.safetensors, as a forger would.
fn reseal(folder: &mut ExportedFolder) {
    let mut m: serde_json::Value = serde_json::from_slice(&folder.manifest).unwrap();
    m["files"][0]["bytes"] = folder.model.len().into();
    m["files"][0]["sha256"] = caption_model::weights::sha256_hex(&folder.model).into();
    folder.manifest = serde_json::to_vec(&m).unwrap();
}

#[test]
fn damaged_folders_are_refused_each_with_its_own_error() {
    let (cfg, tensors, folder) = q8_folder();
    verify_folder(folder.as_bytes()).unwrap();

    let mut flipped = folder.clone();
    let at = flipped.model.len() / 2;
    flipped.model[at] ^= 0x10;
    let e = load_err(&flipped);
    assert!(matches!(e, FolderError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("corrupted or was modified"), "{e}");

    let mut truncated = folder.clone();
    truncated.model.truncate(truncated.model.len() - 100);
    let e = load_err(&truncated);
    assert!(matches!(e, FolderError::Size { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    let mut tok = folder.clone();
    tok.tokenizer[10] ^= 1;
    assert!(matches!(load_err(&tok), FolderError::Checksum { ref file, .. } if file == "tokenizer.json"));

    let mut version = folder.clone();
    let text = String::from_utf8(version.manifest.clone()).unwrap();
    version.manifest = text
        .replace("\"format_version\": 1", "\"format_version\": 2")
        .into_bytes();
    let e = load_err(&version);
    assert!(matches!(e, FolderError::Version { .. }), "{e}");
    assert!(e.to_string().contains("version 2 is not supported"), "{e}");

    // A folder written without one tensor: consistent files, but the model needs it.
    let gone = "text_generator.lm.transformer.h.1.lm_block.mlp.c_fc.weight";
    let mut fewer = tensors.clone();
    fewer.remove(gone);
    let missing = export(&cfg, &fewer, Quant::Q8);
    let e = load_err(&missing);
    assert_eq!(e, FolderError::MissingTensor(gone.to_string()), "{e}");

    // The manifest lists a tensor that model.safetensors lacks.
    let mut unlisted = folder.clone();
    let text = String::from_utf8(unlisted.manifest.clone()).unwrap();
    unlisted.manifest = text
        .replacen("\"stored_as\": \"", "\"stored_as\": \"x", 1)
        .into_bytes();
    assert!(matches!(
        load_err(&unlisted),
        FolderError::MissingTensor(_) | FolderError::Mismatch(_)
    ));

    // The manifest's config asks for other shapes than the weights have.
    let mut m: serde_json::Value = serde_json::from_slice(&folder.manifest).unwrap();
    m["model_config"]["text"]["config"]["n_positions"] = 80.into();
    let mut shape = folder.clone();
    shape.manifest = serde_json::to_vec(&m).unwrap();
    let e = load_err(&shape);
    assert!(
        matches!(e, FolderError::Shape { ref name, .. } if name.ends_with("wpe.weight")),
        "{e}"
    );

    // A resealed folder whose blocks were cut short: the header no longer fits the manifest.
    let mut cut = folder.clone();
    cut.model.truncate(cut.model.len() - 34);
    reseal(&mut cut);
    assert!(matches!(load_err(&cut), FolderError::Mismatch(_)));

    let e = load_err(&ExportedFolder {
        manifest: b"{not json".to_vec(),
        ..folder.clone()
    });
    assert!(matches!(e, FolderError::Manifest(_)), "{e}");
}

#[test]
fn quantized_folder_holds_quantized_matrices_and_dense_norms() {
    let (_, _, folder) = q8_folder();
    let manifest = verify_folder(folder.as_bytes()).unwrap();
    let scheme = |n: &str| manifest.tensors.iter().find(|t| t.name == n).unwrap().scheme;
    assert_eq!(scheme("text_generator.lm.transformer.wte.weight"), Scheme::Q8_0);
    assert_eq!(scheme("text_generator.lm.transformer.ln_f.weight"), Scheme::F32);
    assert_eq!(
        scheme("text_generator.lm.transformer.h.0.xattn_block.alpha_attn"),
        Scheme::F32
    );
    let conv = manifest
        .tensors
        .iter()
        .find(|t| t.name.ends_with("h.0.lm_block.attn.c_attn.weight"))
        .unwrap();
    assert!(conv.transposed && conv.shape == vec![64, 192]);
    let offsets_fit = manifest
        .tensors
        .windows(2)
        .all(|w| w[0].offset + w[0].bytes <= w[1].offset);
    assert!(offsets_fit);
}

/// Bell-shaped values from a fixed LCG (sums of uniforms), with a rare larger one.
fn bell(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut uniform = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|i| {
            let g: f32 = (0..4).map(|_| uniform()).sum::<f32>() - 2.0;
            if i % 97 == 0 {
                3.0 * g
            } else {
                g
            }
        })
        .collect()
}

#[test]
fn q4_search_blocks_decode_in_candle_and_beat_ggml_rounding() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use caption_model::weights::q4_search::quantize_q4_0;
    let (rows, cols) = (64, 256);
    let values = bell(rows * cols, 9);
    let x = Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu).unwrap();
    let err = |q: &QTensor| {
        let back = q.dequantize(&Device::Cpu).unwrap();
        (back - &x)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let ggml = QTensor::quantize(&x, GgmlDType::Q4_0).unwrap();
    let ours_bytes = quantize_q4_0(&values);
    assert_eq!(ours_bytes.len(), ggml.data().unwrap().len());
    let ours = caption_model::weights::quant::qtensor_from_bytes(
        &ours_bytes,
        caption_model::weights::quant::Scheme::Q4_0,
        rows,
        cols,
        &Device::Cpu,
    )
    .unwrap();
    let (e_ours, e_ggml) = (err(&ours), err(&ggml));
    println!("q4 squared error: searched {e_ours:.2}, GGML rounding {e_ggml:.2}");
    // About 10 % less squared error on bell-shaped blocks (measured 44.2 vs 48.9).
    assert!(e_ours < 0.93 * e_ggml, "searched {e_ours} vs GGML {e_ggml}");
}

#[test]
fn round_tripped_tensors_compute_what_the_folder_computes() {
    // What quantization-aware training multiplies with is what the exported folder holds.
    for variant in VARIANTS {
        let (cfg, tensors) = seed(variant);
        for quant in [Quant::F16, Quant::Q8, Quant::Q4] {
            let folder = load_folder(export(&cfg, &tensors, quant).as_bytes(), &Device::Cpu).unwrap();
            let rounded: HashMap<String, Tensor> = tensors
                .iter()
                .map(|(n, t)| (n.clone(), round_trip(n, t, quant).unwrap()))
                .collect();
            let changed = rounded
                .iter()
                .filter(|(n, t)| max_abs(t, &tensors[*n]) > 0.0)
                .count();
            assert!(changed > 0, "{variant} {quant}: nothing was rounded");
            let model = caption_model::weights::model_from_tensors(&cfg, rounded, &Device::Cpu).unwrap();
            let (got, want) = (logits(&model, variant), logits(&folder.model, variant));
            // Dense f32 products against the folder's block products: only the summation order differs.
            let diff = max_abs(&got, &want);
            assert!(diff < 1e-4, "{variant} {quant}: {diff}");
        }
    }
}
