//! Which frames of a video the page captions, and at what size: one function, so that another
//! rule can replace it without touching the page's video code (`page/captioning.rs`).

/// Where to seek and how large to draw each sampled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FramePlan {
    /// Seek positions in seconds, in time order.
    pub times: Vec<f64>,
    /// Width of the drawn frames in pixels.
    pub width: u32,
    /// Height of the drawn frames in pixels.
    pub height: u32,
}

/// Widest frame drawn, in pixels (the model resizes far below it).
const MAX_WIDTH: f64 = 640.0;

/// `count` frames sampled evenly over a clip (the middle of each of `count` equal spans), drawn
/// at most 640 px wide with the clip's aspect; `None` when the clip has no usable duration or
/// size (the browser could not decode it).
pub fn video_frame_plan(duration: f64, width: u32, height: u32, count: usize) -> Option<FramePlan> {
    if !duration.is_finite() || duration <= 0.0 || width == 0 {
        return None;
    }
    let scale = (MAX_WIDTH / f64::from(width)).min(1.0);
    let side = |px: u32| ((f64::from(px) * scale).round() as u32).max(1);
    Some(FramePlan {
        times: (0..count)
            .map(|i| (i as f64 + 0.5) * duration / count as f64)
            .collect(),
        width: side(width),
        height: side(height),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn middles_of_equal_spans_at_most_640_wide() {
        let plan = video_frame_plan(8.0, 1280, 720, 4).unwrap();
        assert_eq!(plan.times, vec![1.0, 3.0, 5.0, 7.0]);
        assert_eq!((plan.width, plan.height), (640, 360));
        let small = video_frame_plan(1.0, 320, 241, 1).unwrap();
        assert_eq!(small.times, vec![0.5]);
        assert_eq!((small.width, small.height), (320, 241));
        assert_eq!(video_frame_plan(3.0, 1000, 1, 2).unwrap().height, 1);
        assert!(video_frame_plan(f64::NAN, 640, 480, 8).is_none());
        assert!(video_frame_plan(f64::INFINITY, 640, 480, 8).is_none());
        assert!(video_frame_plan(0.0, 640, 480, 8).is_none());
        assert!(video_frame_plan(2.0, 0, 480, 8).is_none());
    }
}
