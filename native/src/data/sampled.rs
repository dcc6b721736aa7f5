//! Video frames for captioning, chosen by the rule the page follows
//! ([`caption_model::frame_sampling`]): by time, from ffprobe's frame timestamps, at the size
//! the page draws them. Training datasets keep [`super::sample_indices`].

use std::path::Path;

use anyhow::Context;
use caption_model::frame_sampling::{canvas_size, display_size, pick_frames, sample_times};
use image::RgbImage;

use super::probe::{probe_timeline, tail};
use super::video::{read_frames, spawn_rgb, MAX_FRAME_PIXELS};

/// The frames of a video the captioning rule picks.
#[derive(Debug, Clone)]
pub struct SampledVideo {
    /// One frame per sample time, in order (a frame repeats when the video has fewer frames
    /// than samples), at the page's canvas size.
    pub frames: Vec<RgbImage>,
    /// The stream index (presentation order) of each frame.
    pub indices: Vec<usize>,
    /// The seek time of each frame, in seconds.
    pub times: Vec<f64>,
    /// The video's duration in seconds, as the page sees it.
    pub duration: f64,
}

/// Decodes the `count` frames of `path` that [`pick_frames`] chooses, scaled as the page draws
/// them (display aspect, at most 640 wide). A damaged file is an error: ffprobe cannot open
/// it, it has no duration, fewer frames decode than the container declares, or a chosen frame
/// does not come out of ffmpeg; so is a missing ffmpeg ([`super::FfmpegMissing`]).
pub fn decode_sampled(path: &Path, count: usize) -> anyhow::Result<SampledVideo> {
    anyhow::ensure!(count > 0, "the frame count must be at least 1");
    let timeline = probe_timeline(path)?;
    let decodable = timeline.pts_us.len();
    if decodable == 0 || timeline.declared.is_some_and(|n| decodable < n) {
        anyhow::bail!(
            "{}: the video is damaged: {decodable} of its {} frames decode (ffmpeg: {})",
            path.display(),
            timeline.declared.map_or("?".to_string(), |n| n.to_string()),
            tail(&timeline.messages)
        );
    }
    let (dw, dh) = display_size(timeline.width, timeline.height, timeline.sar.0, timeline.sar.1);
    let size = canvas_size(dw, dh);
    let pixels = u64::from(size.0) * u64::from(size.1);
    anyhow::ensure!(
        pixels > 0 && pixels <= MAX_FRAME_PIXELS,
        "{}: frames are {}x{}, outside 1..={MAX_FRAME_PIXELS} pixels",
        path.display(),
        size.0,
        size.1
    );
    let indices = pick_frames(&timeline.pts_us, timeline.duration, count);
    let times = sample_times(timeline.duration, count);
    let mut wanted = indices.clone();
    wanted.sort_unstable();
    wanted.dedup();

    let scale = (size != (timeline.width, timeline.height)).then_some(size);
    let (mut child, stderr) = spawn_rgb(path, scale)?;
    let read = read_frames(&mut child, size, Some(&wanted));
    // Every wanted frame is in (or reading failed): the rest of the stream is not needed.
    let _ = child.kill();
    let _ = child.wait();
    let messages = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let read = read.with_context(|| format!("{}: reading ffmpeg's output", path.display()))?;
    if read.indices != wanted {
        anyhow::bail!(
            "{}: the video is damaged: ffmpeg gave {} of the {} chosen frames (ffmpeg: {})",
            path.display(),
            read.indices.len(),
            wanted.len(),
            tail(&messages)
        );
    }
    let frames = indices
        .iter()
        .map(|i| read.frames[wanted.partition_point(|w| w < i)].clone())
        .collect();
    Ok(SampledVideo {
        frames,
        indices,
        times,
        duration: timeline.duration,
    })
}
