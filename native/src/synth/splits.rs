//! Writing one split: items generated in parallel from per-item seeds, then the index files.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::output::{
    write_json, write_jsonl, write_png, ClipRecord, Coco, CocoAnnotation, CocoImage, ImageLine, MlsltEntry,
    MlsltSign, SceneRecord, VideoLine,
};
use super::{
    captions, clip_captions, encode_mp4, random_clip, random_scene, render_clip, render_scene, SynthOptions,
    CAPTIONS_PER_IMAGE, ID_STRIDE, VIDEO_FPS,
};

/// Clip generators use streams from here on, apart from the image ones (0, 1, 2).
const CLIP_STREAM: u64 = 16;

/// SplitMix64's finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for one item; `stream` tells images from clips and the splits apart.
pub(crate) fn item_rng(seed: u64, stream: u64, index: usize) -> StdRng {
    StdRng::seed_from_u64(mix(mix(seed ^ mix(stream)) ^ index as u64))
}

/// `fs::create_dir_all` with the path in the error.
pub(crate) fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

/// Runs `f` on 0..n across the machine's cores and returns the results in index order, so the output
/// does not depend on scheduling; stops early after the first error.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .clamp(1, n.max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let joined: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<Vec<(usize, T)>> {
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        match f(i) {
                            Ok(v) => done.push((i, v)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut all = Vec::with_capacity(n);
    for r in joined {
        all.extend(r.map_err(|_| anyhow!("a generator thread panicked"))??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

/// Writes split `k`'s images, COCO file, JSONL and scenes; returns the number of captions.
pub(crate) fn write_images(
    opts: &SynthOptions,
    k: usize,
    split: &str,
    n: usize,
    bar: &ProgressBar,
) -> Result<usize> {
    let dir = opts.out.join("images").join(split);
    create_dir(&dir)?;
    create_dir(&opts.out.join("scenes"))?;
    let items = par_map(n, |i| {
        let mut rng = item_rng(opts.seed, k as u64, i);
        let scene = random_scene(&mut rng);
        let caps = captions(&scene, &mut rng);
        let id = k as u64 * ID_STRIDE + i as u64 + 1;
        let file_name = format!("{id:07}.png");
        write_png(&dir.join(&file_name), &render_scene(&scene, opts.size))?;
        bar.inc(1);
        Ok((id, file_name, scene, caps))
    })?;
    let mut coco = Coco::default();
    let mut lines = Vec::with_capacity(n * CAPTIONS_PER_IMAGE);
    let mut records = Vec::with_capacity(n);
    for (id, file_name, scene, caps) in &items {
        let path = format!("images/{split}/{file_name}");
        for (j, caption) in caps.iter().enumerate() {
            lines.push(ImageLine {
                image: path.clone(),
                caption: caption.clone(),
            });
            // Fewer than ten captions per image, so this is unique.
            coco.annotations.push(CocoAnnotation {
                id: id * 10 + j as u64,
                image_id: *id,
                caption: caption.clone(),
            });
        }
        coco.images.push(CocoImage {
            id: *id,
            file_name: file_name.clone(),
            width: opts.size,
            height: opts.size,
        });
        records.push(SceneRecord {
            id: *id,
            file_name,
            scene,
        });
    }
    write_jsonl(&opts.out.join(format!("{split}.jsonl")), &lines)?;
    write_json(&opts.out.join("scenes").join(format!("{split}.json")), &records)?;
    write_json(&opts.out.join(format!("{split}.json")), &coco)?;
    Ok(coco.annotations.len())
}

/// Writes split `k`'s clips, MLSLT list, JSONL and clip descriptions; returns the number of captions.
pub(crate) fn write_videos(
    opts: &SynthOptions,
    k: usize,
    split: &str,
    n: usize,
    bar: &ProgressBar,
) -> Result<usize> {
    let root = opts.out.join("videos");
    create_dir(&root.join(split))?;
    create_dir(&root.join("clips"))?;
    let items = par_map(n, |i| {
        let mut rng = item_rng(opts.seed, CLIP_STREAM + k as u64, i);
        let clip = random_clip(&mut rng);
        let caps = clip_captions(&clip, &mut rng);
        let id = format!("{:06}", i + 1);
        let dir = root.join(split).join(&id);
        create_dir(&dir)?;
        encode_mp4(
            &render_clip(&clip, opts.size, opts.frames),
            VIDEO_FPS,
            &dir.join("en.mp4"),
        )?;
        bar.inc(1);
        Ok((id, clip, caps))
    })?;
    let mut entries = Vec::with_capacity(n);
    let mut lines = Vec::with_capacity(n * CAPTIONS_PER_IMAGE);
    let mut records = Vec::with_capacity(n);
    for (id, clip, caps) in &items {
        let path = format!("{split}/{id}/en.mp4");
        for caption in caps {
            lines.push(VideoLine {
                video: path.clone(),
                caption: caption.clone(),
            });
        }
        let sign_list = caps
            .iter()
            .map(|text| MlsltSign {
                lang: "en",
                text: text.clone(),
            })
            .collect();
        entries.push(MlsltEntry {
            id: id.clone(),
            sign_list,
        });
        records.push(ClipRecord { id, clip });
    }
    write_jsonl(&root.join(format!("{split}.jsonl")), &lines)?;
    write_json(&root.join("clips").join(format!("{split}.json")), &records)?;
    write_json(&root.join(format!("{split}.json")), &entries)?;
    Ok(lines.len())
}
