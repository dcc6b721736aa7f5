//! Which frames of a video are captioned: one rule for the page and `native caption`.
//!
//! The page knows a video's duration and can seek, but not its frame rate or frame count; so
//! the rule is stated in time. Frame `i` of `count` is the frame on screen at the middle of the
//! `i`-th of `count` equal spans of the duration, `t_i = (i + 0.5) * duration / count`
//! ([`sample_times`]). Chromium holds media time in whole microseconds (`base::TimeDelta`;
//! a seek truncates the seconds) and shows, after a seek to `t`, the frame whose presentation
//! interval `[pts_j, pts_{j+1})` contains `t` — a time on a boundary shows the later frame.
//! [`frame_shown_at`] picks that frame from the frames' timestamps, which native code reads
//! from ffprobe, so both sides take the same frames without the page knowing any timestamp.
//! Checked frame for frame against Chromium 156 on the clips in `../shared/videos`
//! (ARCHITECTURE.md, "Video frames").
//!
//! Training datasets keep their own rule (`native::data::sample_indices`, by frame index,
//! every frame when uncapped, as the original's dataset reads them).

use crate::config::ModelConfig;

/// Frames captioned per video when the user asks for no count (the page's default too).
pub const DEFAULT_VIDEO_FRAMES: usize = 8;

/// Widest frame the page draws (its canvas is scaled down to this width); native decoding
/// scales the same way so that both preprocess the same geometry.
pub const MAX_FRAME_WIDTH: u32 = 640;

/// Most frames `cfg`'s model takes in one sample: the rows of the resampler's time embedding.
pub fn model_max_frames(cfg: &ModelConfig) -> usize {
    cfg.resampler.num_time_embeds.max(1)
}

/// The number of frames to caption: `requested` (or [`DEFAULT_VIDEO_FRAMES`]) clamped to
/// `1..=max_frames`.
pub fn frame_count(requested: Option<usize>, max_frames: usize) -> usize {
    requested
        .unwrap_or(DEFAULT_VIDEO_FRAMES)
        .clamp(1, max_frames.max(1))
}

/// The seek times in seconds of `count` frames of a video `duration` seconds long:
/// `(i + 0.5) * duration / count`, computed in this order so that JavaScript's doubles give
/// the same bits. Empty when `count` is 0 or the duration is not a positive finite number.
pub fn sample_times(duration: f64, count: usize) -> Vec<f64> {
    if !(duration.is_finite() && duration > 0.0) {
        return Vec::new();
    }
    (0..count)
        .map(|i| ((i as f64 + 0.5) * duration) / count as f64)
        .collect()
}

/// `seconds` as the browser's media clock holds a seek target: whole microseconds, truncated
/// (Chromium's `base::Seconds(double)`), saturating.
pub fn media_micros(seconds: f64) -> i64 {
    // `as` truncates toward zero and saturates, as Chromium's saturated_cast does.
    (seconds * 1_000_000.0) as i64
}

/// A timestamp `pts` in a stream time base `num/den` seconds, in whole microseconds rounded to
/// the nearest (halves away from zero), as ffmpeg's `av_rescale_q` and Chromium convert it.
/// `None` for a zero denominator or an overflow.
pub fn pts_micros(pts: i64, num: i64, den: i64) -> Option<i64> {
    if den == 0 {
        return None;
    }
    let (n, d) = if den < 0 {
        (-(pts as i128) * num as i128 * 1_000_000, -(den as i128))
    } else {
        (pts as i128 * num as i128 * 1_000_000, den as i128)
    };
    let half = d / 2;
    let rounded = if n >= 0 { (n + half) / d } else { (n - half) / d };
    i64::try_from(rounded).ok()
}

/// Index of the frame on screen at `time` seconds, given each frame's presentation timestamp
/// in microseconds (in decoding-output order, not necessarily sorted): the frame with the
/// latest timestamp not after the time, ties to the first listed; the earliest frame when the
/// time precedes them all. `None` when there is no frame.
pub fn frame_shown_at(pts_us: &[i64], time: f64) -> Option<usize> {
    let t = media_micros(time);
    let shown = pts_us
        .iter()
        .enumerate()
        .filter(|&(_, &p)| p <= t)
        // max_by_key keeps the last maximum; reversing keeps the first listed on a tie.
        .rev()
        .max_by_key(|&(_, &p)| p)
        .map(|(i, _)| i);
    shown.or_else(|| {
        pts_us
            .iter()
            .enumerate()
            .rev()
            .min_by_key(|&(_, &p)| p)
            .map(|(i, _)| i)
    })
}

/// The frames the rule captions: for each of [`sample_times`]`(duration, count)`, the index
/// (into `pts_us`) of [`frame_shown_at`] that time. A frame may repeat when `count` exceeds
/// the frames available; empty when there is no frame or no valid duration.
pub fn pick_frames(pts_us: &[i64], duration: f64, count: usize) -> Vec<usize> {
    sample_times(duration, count)
        .into_iter()
        .filter_map(|t| frame_shown_at(pts_us, t))
        .collect()
}

/// The size a browser shows a `width x height` frame whose pixels have the aspect ratio
/// `sar_num:sar_den` (Chromium's natural size: the wider side of a non-square pixel is
/// stretched, rounded to the nearest pixel). A missing or zero ratio means square pixels.
pub fn display_size(width: u32, height: u32, sar_num: u32, sar_den: u32) -> (u32, u32) {
    if sar_num == 0 || sar_den == 0 || sar_num == sar_den {
        return (width, height);
    }
    let ratio = f64::from(sar_num) / f64::from(sar_den);
    if ratio > 1.0 {
        (((f64::from(width) * ratio).round() as u32).max(1), height)
    } else {
        (width, ((f64::from(height) / ratio).round() as u32).max(1))
    }
}

/// The canvas size the page draws a `width x height` (display size) frame at: scaled down to
/// at most [`MAX_FRAME_WIDTH`] wide, each side rounded (halves up) and at least 1.
pub fn canvas_size(width: u32, height: u32) -> (u32, u32) {
    let scale = (f64::from(MAX_FRAME_WIDTH) / f64::from(width.max(1))).min(1.0);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    (side(width), side(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_span_middles() {
        assert_eq!(sample_times(2.0, 4), vec![0.25, 0.75, 1.25, 1.75]);
        assert_eq!(sample_times(10.0, 1), vec![5.0]);
        assert!(sample_times(0.0, 3).is_empty());
        assert!(sample_times(f64::NAN, 3).is_empty());
        assert!(sample_times(2.0, 0).is_empty());
    }

    #[test]
    fn a_boundary_shows_the_later_frame_and_truncation_can_keep_the_earlier() {
        // 10 fps: frames start at 0, 100000, 200000 ... µs.
        let pts: Vec<i64> = (0..20).map(|i| i * 100_000).collect();
        assert_eq!(frame_shown_at(&pts, 0.1), Some(1));
        assert_eq!(frame_shown_at(&pts, 0.099_999_9), Some(0));
        // 29.97 fps, frame 60 starts at 2.002 s; (0.5 * 4.004) / 1 is 2.0019999999999998,
        // 2001999 µs once truncated: Chromium shows frame 59 (measured).
        let ntsc: Vec<i64> = (0..120)
            .map(|i| pts_micros(i * 1001, 1, 30000).unwrap())
            .collect();
        assert_eq!(ntsc[60], 2_002_000);
        assert_eq!(pick_frames(&ntsc, 4.004, 1), vec![59]);
        assert_eq!(pick_frames(&ntsc, 4.004, 4), vec![14, 44, 74, 105]);
    }

    #[test]
    fn before_the_first_frame_and_unsorted_timestamps() {
        assert_eq!(frame_shown_at(&[40_000, 80_000], 0.01), Some(0));
        assert_eq!(frame_shown_at(&[80_000, 0, 40_000], 0.05), Some(2));
        assert_eq!(frame_shown_at(&[], 0.05), None);
        assert_eq!(pick_frames(&[0, 500_000], 1.0, 4), vec![0, 0, 1, 1]);
    }

    #[test]
    fn microseconds_round_like_av_rescale_q() {
        assert_eq!(pts_micros(1, 1, 3), Some(333_333));
        assert_eq!(pts_micros(2, 1, 3), Some(666_667));
        assert_eq!(pts_micros(1, 1, 2_000_000), Some(1)); // a half rounds away from zero
        assert_eq!(pts_micros(-1, 1, 2_000_000), Some(-1));
        assert_eq!(pts_micros(5, 1, 0), None);
    }

    #[test]
    fn counts_sizes_and_pixel_aspect() {
        assert_eq!(frame_count(None, 16), DEFAULT_VIDEO_FRAMES);
        assert_eq!(frame_count(Some(40), 16), 16);
        assert_eq!(frame_count(Some(0), 16), 1);
        assert_eq!(frame_count(None, 4), 4);
        // carphone: 176x144 with 128:117 pixels is shown 193 wide (measured in Chromium).
        assert_eq!(display_size(176, 144, 128, 117), (193, 144));
        assert_eq!(display_size(176, 144, 117, 128), (176, 158));
        assert_eq!(display_size(640, 272, 1, 1), (640, 272));
        assert_eq!(display_size(640, 272, 0, 1), (640, 272));
        assert_eq!(canvas_size(1920, 1080), (640, 360));
        assert_eq!(canvas_size(320, 240), (320, 240));
        assert_eq!(canvas_size(1281, 3), (640, 1));
    }
}
