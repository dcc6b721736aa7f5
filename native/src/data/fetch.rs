//! Loading the samples of a batch: files read, decoded and CLIP-preprocessed on a few
//! scoped threads, captions tokenised; bad content becomes a reason, not an error.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use caption_model::preprocess::{preprocess_bytes, preprocess_rgb};

use super::batch::BatchBuilder;
use super::video::decode_video_frames;
use super::{FfmpegMissing, Sample, Visual};

/// One sample's decoded content, or why it is left out.
pub(super) enum Loaded {
    /// Preprocessed frames (CHW each), caption ids, and a warning for a damaged video.
    Ok {
        frames: Vec<Vec<f32>>,
        tokens: Vec<u32>,
        warning: Option<String>,
    },
    /// Why the sample is skipped.
    Bad(String),
}

/// Preprocessed frames (CHW each) and a warning for a damaged video.
type Frames = (Vec<Vec<f32>>, Option<String>);

impl BatchBuilder {
    /// Loads every sample on up to `threads` scoped threads, each taking the next unclaimed
    /// sample, so one slow video does not hold back a fixed share of the batch.
    pub(super) fn load_all(&self, samples: &[&Sample], picks: &[usize]) -> anyhow::Result<Vec<Loaded>> {
        let next = AtomicUsize::new(0);
        let workers = self.threads.min(samples.len()).max(1);
        let per_thread: Vec<anyhow::Result<Vec<(usize, Loaded)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= samples.len() {
                                return Ok(done);
                            }
                            done.push((i, self.load_one(samples[i], picks[i])?));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a loading thread panicked")))
                })
                .collect()
        });
        let mut slots: Vec<Option<Loaded>> = (0..samples.len()).map(|_| None).collect();
        for part in per_thread {
            for (i, loaded) in part? {
                slots[i] = Some(loaded);
            }
        }
        Ok(slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Loaded::Bad("not loaded".into())))
            .collect())
    }

    /// Decodes and tokenises one sample; a decoder panic counts as a bad file, not a crash.
    fn load_one(&self, sample: &Sample, pick: usize) -> anyhow::Result<Loaded> {
        match catch_unwind(AssertUnwindSafe(|| self.load_frames(sample))) {
            Ok(Ok(Ok((frames, warning)))) => match self.caption_tokens(&sample.captions[pick]) {
                Ok(tokens) => Ok(Loaded::Ok {
                    frames,
                    tokens,
                    warning,
                }),
                Err(e) => Ok(Loaded::Bad(format!("caption {pick} cannot be tokenised: {e:#}"))),
            },
            Ok(Ok(Err(reason))) => Ok(Loaded::Bad(reason)),
            Ok(Err(fatal)) => Err(fatal),
            Err(_) => Ok(Loaded::Bad(format!(
                "{}: the decoder panicked",
                sample.visual.path().display()
            ))),
        }
    }

    /// Preprocessed frames and an optional warning; the inner `Err` is a bad file (skipped),
    /// the outer one a problem of the setup (fatal).
    fn load_frames(&self, sample: &Sample) -> anyhow::Result<Result<Frames, String>> {
        match &sample.visual {
            Visual::Image(path) => {
                let bytes = match std::fs::read(path) {
                    Ok(b) => b,
                    Err(e) => return Ok(Err(format!("{}: {e}", path.display()))),
                };
                match preprocess_bytes(&bytes, &self.pre) {
                    Ok(frame) => Ok(Ok((vec![frame], None))),
                    Err(caption_model::Error::Config(m)) => anyhow::bail!("preprocess config: {m}"),
                    Err(e) => Ok(Err(format!("{}: {e}", path.display()))),
                }
            }
            Visual::Video { path } => {
                let decoded = match decode_video_frames(path, self.max_frames) {
                    Ok(d) => d,
                    Err(e) if e.downcast_ref::<FfmpegMissing>().is_some() => return Err(e),
                    Err(e) => return Ok(Err(format!("{e:#}"))),
                };
                let mut frames = Vec::with_capacity(decoded.frames.len());
                for (img, index) in decoded.frames.iter().zip(&decoded.indices) {
                    match preprocess_rgb(img, &self.pre) {
                        Ok(frame) => frames.push(frame),
                        Err(caption_model::Error::Config(m)) => anyhow::bail!("preprocess config: {m}"),
                        Err(e) => return Ok(Err(format!("{}: frame {index}: {e}", path.display()))),
                    }
                }
                Ok(Ok((frames, decoded.warning)))
            }
        }
    }
}
