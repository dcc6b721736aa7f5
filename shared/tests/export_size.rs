//! Folder sizes of the full-size default model (250.9 M parameters, random weights): the
//! export targets are q4 ≤ 145 MB and q8 ≤ 270 MB for the whole folder.

use candle_core::Device;
use caption_model::tokenizer::GPT2_TOKENIZER_JSON;
use caption_model::weights::{export_folder, random_tensors, Quant};
use caption_model::ModelConfig;

#[test]
fn full_size_q4_and_q8_folders_fit_their_budgets() {
    let cfg = ModelConfig::default();
    let start = std::time::Instant::now();
    let tensors = random_tensors(&cfg, 0, &Device::Cpu).unwrap();
    let params: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(params, 250_922_264);
    for (quant, budget) in [(Quant::Q4, 145_000_000), (Quant::Q8, 270_000_000)] {
        let folder = export_folder(&cfg, tensors.clone(), quant, GPT2_TOKENIZER_JSON).unwrap();
        let total = folder.manifest.len() + folder.model.len() + folder.tokenizer.len();
        println!(
            "{quant}: model.safetensors {} B, tokenizer.json {} B, manifest.json {} B, total {total} B ({:.1} s)",
            folder.model.len(),
            folder.tokenizer.len(),
            folder.manifest.len(),
            start.elapsed().as_secs_f64()
        );
        assert!(total <= budget, "{quant}: {total} B > {budget} B");
    }
}
