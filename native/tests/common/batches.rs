//! Dataset and batching helpers for the data tests.

use std::path::{Path, PathBuf};

use candle_core::{Device, IndexOp};
use caption_model::preprocess::PreprocessConfig;
use caption_model::tokenizer::Tokenizer;
use native::data::{Batch, BatchBuilder, Dataset, Sample};

/// Small frames keep the tests quick; the preprocessing itself is tested in the model crate.
pub const SIZE: usize = 32;

/// A file of `../shared`.
pub fn fixture(rel: &str) -> PathBuf {
    super::shared(rel)
}

pub fn copy(rel: &str, to: &Path) {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::copy(fixture(rel), to).unwrap();
}

pub fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

pub fn builder() -> BatchBuilder {
    let pre = PreprocessConfig::for_image_size(SIZE);
    BatchBuilder::new(pre, Tokenizer::gpt2().unwrap(), Device::Cpu).with_threads(2)
}

pub fn ids(ds: &Dataset) -> Vec<&str> {
    ds.samples.iter().map(|s| s.id.as_str()).collect()
}

pub fn skipped_entries(skipped: &[native::data::Skipped]) -> Vec<&str> {
    skipped.iter().map(|s| s.entry.as_str()).collect()
}

pub fn build_all(
    b: &BatchBuilder,
    ds: &Dataset,
    picks: &[usize],
) -> (Option<Batch>, Vec<native::data::Skipped>) {
    let refs: Vec<&Sample> = ds.samples.iter().collect();
    b.build(&refs, picks).unwrap()
}

/// Checks tokens/mask rows against the tokenizer, and the frame mask against `lengths`.
pub fn check_text_and_masks(batch: &Batch, tok: &Tokenizer) {
    let tokens = batch.tokens.to_vec2::<u32>().unwrap();
    let mask = batch.tokens_mask.to_vec2::<f32>().unwrap();
    let longest = batch
        .captions
        .iter()
        .map(|c| tok.encode_caption(c).unwrap().len())
        .max()
        .unwrap();
    assert_eq!(batch.tokens.dims(), &[batch.ids.len(), longest]);
    let rows = batch.ids.len();
    assert_eq!((batch.captions.len(), batch.lengths.len()), (rows, rows));
    for (row, caption) in batch.captions.iter().enumerate() {
        let want = tok.encode_caption(caption).unwrap();
        assert_eq!(&tokens[row][..want.len()], &want[..], "row {row}");
        assert!(
            tokens[row][want.len()..].iter().all(|&t| t == 0),
            "row {row} padding"
        );
        let ones = mask[row].iter().take_while(|&&m| m == 1.0).count();
        assert_eq!(ones, want.len(), "row {row} mask");
        assert!(mask[row][ones..].iter().all(|&m| m == 0.0));
    }
    let t = batch.video.dim(1).unwrap();
    assert_eq!(t, *batch.lengths.iter().max().unwrap());
    let fm = batch.frame_mask.to_vec2::<f32>().unwrap();
    for (row, &len) in batch.lengths.iter().enumerate() {
        let want: Vec<f32> = (0..t).map(|i| if i < len { 1.0 } else { 0.0 }).collect();
        assert_eq!(fm[row], want);
        for f in len..t {
            let pad = batch
                .video
                .i((row, f))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(pad.iter().all(|&v| v == 0.0), "row {row} frame {f} is padding");
        }
    }
}
