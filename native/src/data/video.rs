//! Video frames through the `ffmpeg` command-line tool (5.1 or later, for `-fps_mode`):
//! `ffmpeg ... -f rawvideo -pix_fmt rgb24 -` read frame by frame, so that only the kept frames
//! are held in memory.

use std::io::{ErrorKind, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

use anyhow::Context;
use image::RgbImage;

use super::probe::{count_frames, file_url, probe_video, spawn_error, tail};

/// Largest frame accepted (Pillow's image limit), so a hostile header cannot make us
/// allocate an absurd frame buffer.
pub(super) const MAX_FRAME_PIXELS: u64 = 89_478_485;

/// Frames decoded from a video, with how they were chosen.
#[derive(Debug, Clone)]
pub struct DecodedVideo {
    /// The kept frames, in order, each `width x height` RGB.
    pub frames: Vec<RgbImage>,
    /// Index in the stream of each kept frame.
    pub indices: Vec<usize>,
    /// The frame count the container declares (or ffprobe counted), if known.
    pub declared_frames: Option<usize>,
    /// Set when the file decoded only partly or ffmpeg reported errors; the frames are usable.
    pub warning: Option<String>,
}

/// The stream indices kept when at most `max_frames` of `n` frames are wanted: all of them
/// when `n <= max_frames`, otherwise `round(i * (n - 1) / (k - 1))` for `i in 0..k` (first
/// and last frame included, evenly spaced, halves rounded up), and the middle frame
/// `(n - 1) / 2` for `k = 1`. `k = 0` keeps nothing.
pub fn sample_indices(n: usize, max_frames: Option<usize>) -> Vec<usize> {
    match max_frames {
        Some(k) if k < n => match k {
            0 => Vec::new(),
            1 => vec![(n - 1) / 2],
            // Integer form of round-half-up of i*(n-1)/(k-1); exact, and distinct since n > k.
            _ => (0..k)
                .map(|i| (2 * i * (n - 1) + (k - 1)) / (2 * (k - 1)))
                .collect(),
        },
        _ => (0..n).collect(),
    }
}

/// Decodes the frames of `path` (all, or at most `max_frames` evenly spaced as in
/// [`sample_indices`]) to RGB. See [`decode_video_frames`] for the rules on damaged files.
pub fn decode_video(path: &Path, max_frames: Option<usize>) -> anyhow::Result<Vec<RgbImage>> {
    Ok(decode_video_frames(path, max_frames)?.frames)
}

/// Decodes the frames of `path` like [`decode_video`], saying which were kept and whether the
/// file was damaged.
///
/// The frame count comes from the container (`nb_frames`), or from a counting pass of
/// ffprobe when it declares none and `max_frames` is set. A file that fails part-way (ffmpeg
/// stops early or reports errors) is accepted with [`DecodedVideo::warning`] set when at least
/// one frame came out: the wanted frames that were decoded are kept (for a sampled video,
/// those before the damage). Errors: ffprobe cannot open the file, zero frames decode,
/// `max_frames` is 0, a frame would exceed 89,478,485 pixels, or
/// [`FfmpegMissing`](super::FfmpegMissing).
pub fn decode_video_frames(path: &Path, max_frames: Option<usize>) -> anyhow::Result<DecodedVideo> {
    if max_frames == Some(0) {
        anyhow::bail!("max_frames must be at least 1");
    }
    let info = probe_video(path)?;
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels == 0 || pixels > MAX_FRAME_PIXELS {
        anyhow::bail!(
            "{}: frames are {}x{}, outside 1..={MAX_FRAME_PIXELS} pixels",
            path.display(),
            info.width,
            info.height
        );
    }
    let declared = match (info.frames, max_frames) {
        (None, Some(_)) => Some(count_frames(path)?),
        (n, _) => n,
    };
    // None: keep every frame ffmpeg produces.
    let wanted = declared
        .filter(|_| max_frames.is_some())
        .map(|n| sample_indices(n, max_frames));
    if wanted.as_ref().is_some_and(Vec::is_empty) {
        anyhow::bail!("{}: the video declares no frame", path.display());
    }

    let (mut child, stderr) = spawn_rgb(path, None)?;
    let read = read_frames(&mut child, (info.width, info.height), wanted.as_deref());
    let stopped_early = read.as_ref().is_ok_and(|r| r.stopped_early);
    if stopped_early {
        // Every wanted frame is in; the rest of the stream is not needed.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .with_context(|| format!("{}: waiting for ffmpeg", path.display()))?;
    let messages = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let read = read.with_context(|| format!("{}: reading ffmpeg's output", path.display()))?;

    if read.frames.is_empty() {
        anyhow::bail!(
            "{}: no frame could be decoded (ffmpeg: {})",
            path.display(),
            tail(&messages)
        );
    }
    let short = match &wanted {
        Some(w) => read.frames.len() < w.len(),
        None => declared.is_some_and(|n| read.seen < n),
    };
    let failed = !stopped_early && !status.success();
    let what = if short || failed {
        "partly decoded"
    } else {
        "decoded with errors"
    };
    let warning = (short || failed || !messages.trim().is_empty()).then(|| {
        format!(
            "{}: {what}, kept {} frame(s) of {} decoded, {} declared (ffmpeg: {})",
            path.display(),
            read.frames.len(),
            read.seen,
            declared.map_or("none".to_string(), |n| n.to_string()),
            tail(&messages)
        )
    });
    Ok(DecodedVideo {
        frames: read.frames,
        indices: read.indices,
        declared_frames: declared,
        warning,
    })
}

/// Starts ffmpeg decoding the first video stream of `path` to raw RGB on its stdout, every
/// decoded frame in presentation order (passthrough: no duplicates or drops for a frame rate),
/// scaled (bilinear) to `size` when given; its error output is drained on a thread whose
/// handle is returned.
pub(super) fn spawn_rgb(
    path: &Path,
    size: Option<(u32, u32)>,
) -> anyhow::Result<(Child, Option<JoinHandle<String>>)> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-i"])
        .arg(file_url(path))
        .args(["-map", "0:v:0", "-fps_mode", "passthrough"]);
    if let Some((w, h)) = size {
        cmd.args(["-vf", &format!("scale={w}:{h}:flags=bilinear")]);
    }
    let mut child = cmd
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("ffmpeg", e))?;
    let stderr = child.stderr.take().map(|mut err| {
        // Drained on its own thread so a chatty ffmpeg never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = err.read_to_end(&mut all);
            String::from_utf8_lossy(&all).into_owned()
        })
    });
    Ok((child, stderr))
}

/// Frames read from ffmpeg's output.
pub(super) struct ReadFrames {
    /// The kept frames.
    pub(super) frames: Vec<RgbImage>,
    /// Output index of each kept frame.
    pub(super) indices: Vec<usize>,
    /// Complete frames that came out of ffmpeg.
    pub(super) seen: usize,
    /// Reading stopped because every wanted frame was in.
    pub(super) stopped_early: bool,
}

/// Reads raw RGB frames of `(width, height)` from the child's stdout, keeping those in
/// `wanted` (ascending, distinct; all if `None`).
pub(super) fn read_frames(
    child: &mut Child,
    (width, height): (u32, u32),
    wanted: Option<&[usize]>,
) -> std::io::Result<ReadFrames> {
    let mut out = ReadFrames {
        frames: Vec::new(),
        indices: Vec::new(),
        seen: 0,
        stopped_early: false,
    };
    let Some(mut stdout) = child.stdout.take() else {
        return Ok(out);
    };
    // Bounded by MAX_FRAME_PIXELS * 3, checked by the caller.
    let frame_bytes = width as usize * height as usize * 3;
    let mut buf = vec![0u8; frame_bytes];
    let mut next = 0; // position in `wanted`
    loop {
        if wanted.is_some_and(|w| next >= w.len()) {
            out.stopped_early = true;
            return Ok(out);
        }
        match stdout.read_exact(&mut buf) {
            Ok(()) => {}
            // The end of the stream (a cut-off last frame is dropped).
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(out),
            Err(e) => return Err(e),
        }
        let index = out.seen;
        out.seen += 1;
        if wanted.is_none_or(|w| w[next] == index) {
            next += 1;
            if let Some(img) = RgbImage::from_raw(width, height, buf.clone()) {
                out.frames.push(img);
                out.indices.push(index);
            }
        }
    }
}
