//! CLIP feature cache: with the vision tower frozen, each image's (or video's) CLIP tokens are
//! computed once, stored as f16 safetensors shards and memory-mapped, and training reads them
//! instead of decoding and re-encoding the pixels every epoch.
//!
//! Layout: `<root>/<fingerprint>/index.json` and `shard-NNNNN.safetensors`. The fingerprint
//! hashes the vision weights, the preprocessing settings and the frame cap, so a different
//! backbone or preprocessing lands in another folder and never reads stale features. Entries
//! are keyed by file path, size and modification time, so an edited file is encoded again.
//! Shards and the index are written through a temporary file and a rename: a run killed while
//! filling the cache leaves a valid index (missing entries are filled by the next run).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use caption_model::CaptionModel;
use serde::{Deserialize, Serialize};

use crate::data::{BatchBuilder, Sample, Skipped};
use crate::files::write_atomic;

/// Version of the cache layout; part of the fingerprint.
const CACHE_VERSION: u32 = 1;

/// Bytes of features gathered before a shard is written.
const SHARD_BYTES: usize = 256 << 20;

/// What the cache knows about one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Entry {
    /// Features `[frames, n, D]` f16 stored as `tensor` in shard `shard`.
    Features {
        shard: usize,
        tensor: String,
        frames: usize,
    },
    /// The file could not be decoded; training skips it without trying again.
    Bad { reason: String },
}

/// `index.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    shards: Vec<String>,
    entries: BTreeMap<String, Entry>,
}

/// Features of a batch read from the cache.
pub struct CachedBatch {
    /// CLIP tokens `[B, T, n, D]` f32, zero for padded frames.
    pub features: Tensor,
    /// Real frame count of each row.
    pub lengths: Vec<usize>,
    /// Position of each row in the samples asked for.
    pub kept: Vec<usize>,
}

/// An open cache: its index and memory-mapped shards.
pub struct FeatureCache {
    dir: PathBuf,
    index: Index,
    shards: Option<MmapedSafetensors>,
}

/// Whether to train from cached features, from `trainer.feature_cache` (`auto` caches when the
/// vision tower is frozen, unless quantization-aware training must see it rounded; `true`
/// insists and needs it frozen; `false`).
pub fn enabled(setting: &str, vision_trainable: bool, quant_aware: bool) -> Result<bool> {
    match (setting, vision_trainable) {
        ("auto", trainable) => Ok(!trainable && !quant_aware),
        ("false", _) => Ok(false),
        ("true", false) => Ok(true),
        ("true", true) => anyhow::bail!(
            "trainer.feature_cache=true needs a frozen vision tower (model.vision.trainable=false)"
        ),
        (other, _) => anyhow::bail!("trainer.feature_cache is `{other}`: use auto, true or false"),
    }
}

/// Fingerprint of what the features depend on: the vision weights among `tensors` (names,
/// shapes, values, in name order), the preprocessing settings and the frame cap (`settings`).
pub fn fingerprint(tensors: &HashMap<String, Tensor>, settings: &str) -> Result<String> {
    let vision: BTreeMap<&String, &Tensor> = tensors
        .iter()
        .filter(|(n, _)| n.starts_with("vision_encoder."))
        .collect();
    let mut h = Fnv::default();
    h.write(&CACHE_VERSION.to_le_bytes());
    h.write(settings.as_bytes());
    for (name, t) in vision {
        h.write(name.as_bytes());
        h.write(format!("{:?}", t.dims()).as_bytes());
        for v in t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()? {
            h.write(&v.to_bits().to_le_bytes());
        }
    }
    Ok(format!("{:016x}", h.0))
}

/// 64-bit FNV-1a: enough to tell configurations apart (not a security boundary).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// The cache key of a sample's file: path, size and modification time.
fn file_key(sample: &Sample) -> String {
    let path = sample.visual.path();
    let stamp = std::fs::metadata(path)
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{mtime}", m.len())
        })
        .unwrap_or_else(|_| "missing".into());
    format!("{}|{stamp}", path.display())
}

impl FeatureCache {
    /// Opens the cache at `root/<fingerprint>`, first encoding every sample of `samples` it
    /// does not hold yet with `model`'s vision tower (batches of `batch_size`, progress shown).
    pub fn open_or_fill(
        root: &Path,
        fingerprint: &str,
        model: &CaptionModel,
        builder: &BatchBuilder,
        samples: &[&Sample],
        batch_size: usize,
    ) -> Result<Self> {
        let dir = root.join(fingerprint);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let index_path = dir.join("index.json");
        let mut index: Index = match std::fs::read(&index_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a feature-cache index", index_path.display()))?,
            Err(_) => Index {
                version: CACHE_VERSION,
                ..Index::default()
            },
        };
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<(&Sample, String)> = samples
            .iter()
            .map(|s| (*s, file_key(s)))
            .filter(|(_, k)| !index.entries.contains_key(k) && seen.insert(k.clone()))
            .collect();
        if !todo.is_empty() {
            fill(&dir, &mut index, model, builder, &todo, batch_size.max(1))?;
        }
        let shards = open_shards(&dir, &index.shards)?;
        Ok(Self { dir, index, shards })
    }

    /// The folder holding this cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of files with cached features.
    pub fn len(&self) -> usize {
        let ok = |e: &&Entry| matches!(e, Entry::Features { .. });
        self.index.entries.values().filter(ok).count()
    }

    /// Whether no features are cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features of `samples`, padded to the longest; samples the cache marks bad (or lacks)
    /// are returned as skipped.
    pub fn batch(&self, samples: &[&Sample], device: &Device) -> Result<(Option<CachedBatch>, Vec<Skipped>)> {
        let mut rows = Vec::new();
        let mut skipped = Vec::new();
        for (pos, s) in samples.iter().enumerate() {
            match (self.index.entries.get(&file_key(s)), &self.shards) {
                (Some(Entry::Features { tensor, .. }), Some(shards)) => {
                    let t = shards.load(tensor, &Device::Cpu)?.to_dtype(DType::F32)?;
                    rows.push((pos, t));
                }
                (Some(Entry::Bad { reason }), _) => skipped.push(Skipped {
                    entry: s.id.clone(),
                    reason: reason.clone(),
                }),
                _ => skipped.push(Skipped {
                    entry: s.id.clone(),
                    reason: format!("{}: not in the feature cache", s.visual.path().display()),
                }),
            }
        }
        if rows.is_empty() {
            return Ok((None, skipped));
        }
        let t_max = rows
            .iter()
            .map(|(_, t)| t.dim(0))
            .collect::<Result<Vec<_>, _>>()?;
        let frames = t_max.iter().copied().max().unwrap_or(1);
        let mut padded = Vec::with_capacity(rows.len());
        for (_, t) in &rows {
            let (f, n, d) = t.dims3()?;
            padded.push(if f < frames {
                Tensor::cat(
                    &[t, &Tensor::zeros((frames - f, n, d), DType::F32, &Device::Cpu)?],
                    0,
                )?
            } else {
                t.clone()
            });
        }
        let batch = CachedBatch {
            features: Tensor::stack(&padded, 0)?.to_device(device)?,
            lengths: t_max,
            kept: rows.iter().map(|(p, _)| *p).collect(),
        };
        Ok((Some(batch), skipped))
    }
}

/// Memory-maps the shards named in the index.
fn open_shards(dir: &Path, names: &[String]) -> Result<Option<MmapedSafetensors>> {
    if names.is_empty() {
        return Ok(None);
    }
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    // SAFETY: the shards are written once (temporary file + rename) and never modified in
    // place; another process truncating them while mapped is outside what we defend against.
    let mapped = unsafe { MmapedSafetensors::multi(&paths) }
        .with_context(|| format!("opening the feature-cache shards in {}", dir.display()))?;
    Ok(Some(mapped))
}

/// Encodes the `todo` samples, writing shards as they fill and the index after each shard.
fn fill(
    dir: &Path,
    index: &mut Index,
    model: &CaptionModel,
    builder: &BatchBuilder,
    todo: &[(&Sample, String)],
    batch_size: usize,
) -> Result<()> {
    let bar = indicatif::ProgressBar::new(todo.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("caching CLIP features {bar:30} {pos}/{len}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut pending: HashMap<String, Tensor> = HashMap::new();
    let mut pending_entries: Vec<(String, Entry)> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut next_id = index.entries.len();
    for chunk in todo.chunks(batch_size) {
        let samples: Vec<&Sample> = chunk.iter().map(|(s, _)| *s).collect();
        let (batch, skipped) = builder.build(&samples, &vec![0; samples.len()])?;
        let reasons: HashMap<&str, &str> = skipped
            .iter()
            .map(|s| (s.entry.as_str(), s.reason.as_str()))
            .collect();
        let kept = batch.as_ref().map_or(&[][..], |b| &b.kept[..]);
        for (_, (s, key)) in chunk.iter().enumerate().filter(|(p, _)| !kept.contains(p)) {
            let reason = reasons.get(s.id.as_str()).map_or("could not be decoded", |r| r);
            pending_entries.push((
                key.clone(),
                Entry::Bad {
                    reason: reason.to_string(),
                },
            ));
        }
        if let Some(batch) = batch {
            let feats = model
                .encode_frames(&batch.video, &batch.frame_mask)?
                .to_dtype(DType::F16)?
                .to_device(&Device::Cpu)?;
            for (row, (&pos, &frames)) in batch.kept.iter().zip(&batch.lengths).enumerate() {
                let t = feats.get(row)?.narrow(0, 0, frames)?.contiguous()?;
                pending_bytes += t.elem_count() * 2;
                let name = format!("e{next_id}");
                next_id += 1;
                let shard = index.shards.len();
                pending.insert(name.clone(), t);
                let entry = Entry::Features {
                    shard,
                    tensor: name,
                    frames,
                };
                pending_entries.push((chunk[pos].1.clone(), entry));
            }
        }
        bar.inc(chunk.len() as u64);
        if pending_bytes >= SHARD_BYTES {
            flush(dir, index, &mut pending, &mut pending_entries)?;
            pending_bytes = 0;
        }
    }
    flush(dir, index, &mut pending, &mut pending_entries)?;
    bar.finish_and_clear();
    Ok(())
}

/// Writes the pending features as a new shard, then the index that names them.
fn flush(
    dir: &Path,
    index: &mut Index,
    pending: &mut HashMap<String, Tensor>,
    entries: &mut Vec<(String, Entry)>,
) -> Result<()> {
    if !pending.is_empty() {
        let name = format!("shard-{:05}.safetensors", index.shards.len());
        let tmp = dir.join(format!("{name}.partial"));
        candle_core::safetensors::save(pending, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(&name)).with_context(|| format!("renaming into {name}"))?;
        index.shards.push(name);
        pending.clear();
    }
    index.entries.extend(entries.drain(..));
    write_atomic(&dir.join("index.json"), &serde_json::to_vec(index)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_follows_the_vision_tower() {
        assert!(enabled("auto", false, false).is_ok_and(|on| on));
        assert!(enabled("auto", true, false).is_ok_and(|on| !on));
        // Quantization-aware training must see the frozen tower rounded: not from the cache.
        assert!(enabled("auto", false, true).is_ok_and(|on| !on));
        assert!(enabled("true", false, true).is_ok_and(|on| on));
        assert!(enabled("false", false, false).is_ok_and(|on| !on));
        assert!(enabled("true", false, false).is_ok_and(|on| on));
        let err = enabled("true", true, false).map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("frozen vision tower")));
        assert!(enabled("yes", false, false).is_err());
    }

    #[test]
    fn the_fingerprint_covers_vision_weights_and_settings_only() {
        let t = |v: f32| Tensor::new(&[v, 1.0], &Device::Cpu).unwrap();
        let weights = |v: f32, text: f32| {
            HashMap::from([
                ("vision_encoder.w".to_string(), t(v)),
                ("text_generator.w".to_string(), t(text)),
            ])
        };
        let base = fingerprint(&weights(0.5, 0.0), "a").unwrap();
        assert_eq!(
            base,
            fingerprint(&weights(0.5, 9.0), "a").unwrap(),
            "text weights do not count"
        );
        assert_ne!(base, fingerprint(&weights(0.25, 0.0), "a").unwrap());
        assert_ne!(base, fingerprint(&weights(0.5, 0.0), "b").unwrap());
    }
}
