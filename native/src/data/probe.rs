//! `ffprobe` and the shared plumbing of the ffmpeg tools: size and frame count of a video,
//! a clear error when the tools are missing, short error messages.

use std::fmt;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::Context;
use caption_model::frame_sampling::pts_micros;
use serde::Deserialize;

/// Lines and bytes of ffmpeg's error output kept for messages (its tail: the last errors
/// usually say why decoding stopped).
const STDERR_LINES: usize = 4;
const STDERR_KEEP: usize = 1000;

/// The `ffmpeg` or `ffprobe` program is not installed: an error of the machine, not of a
/// video, so batch building stops on it instead of skipping every video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegMissing {
    /// The program that could not be started.
    pub program: String,
}

impl fmt::Display for FfmpegMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` was not found on PATH: decoding videos needs the ffmpeg command-line tools \
             (Debian/Ubuntu: apt-get install -y ffmpeg)",
            self.program
        )
    }
}

impl std::error::Error for FfmpegMissing {}

/// What `ffprobe` says about a file's first video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoInfo {
    /// Width of the decoded frames (after the rotation ffmpeg applies).
    pub width: u32,
    /// Height of the decoded frames (after the rotation ffmpeg applies).
    pub height: u32,
    /// Frame count declared by the container, when it declares one.
    pub frames: Option<usize>,
    /// Whether ffmpeg turns the frames a quarter turn (width and height are already swapped).
    pub quarter_turn: bool,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

#[derive(Deserialize)]
struct ProbeStream {
    width: Option<u32>,
    height: Option<u32>,
    nb_frames: Option<String>,
    nb_read_frames: Option<String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

/// Runs `ffprobe` on `path`: size and declared frame count of its first video stream. An
/// error when ffprobe cannot open the file, finds no video stream, or is not installed
/// ([`FfmpegMissing`]).
pub fn probe_video(path: &Path) -> anyhow::Result<VideoInfo> {
    let stream = ffprobe(
        path,
        &[
            "-show_entries",
            "stream=width,height,nb_frames:stream_side_data=rotation",
        ],
    )?;
    let (Some(mut width), Some(mut height)) = (stream.width, stream.height) else {
        anyhow::bail!("{}: ffprobe reports no frame size", path.display());
    };
    // ffmpeg auto-rotates by the display matrix, so a quarter turn swaps the sides.
    let rotation = stream
        .side_data_list
        .iter()
        .find_map(|s| s.rotation)
        .unwrap_or(0.0);
    let quarter_turn = (rotation.round() as i64).rem_euclid(180) == 90;
    if quarter_turn {
        std::mem::swap(&mut width, &mut height);
    }
    Ok(VideoInfo {
        width,
        height,
        frames: stream.nb_frames.and_then(|n| n.trim().parse().ok()),
        quarter_turn,
    })
}

/// A video's frames on its presentation timeline, as ffprobe decodes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Width of the decoded frames (after rotation).
    pub width: u32,
    /// Height of the decoded frames (after rotation).
    pub height: u32,
    /// Pixel aspect ratio `(num, den)`; `(1, 1)` when the stream declares none.
    pub sar: (u32, u32),
    /// The container's duration in seconds, as a browser reports it (whole microseconds).
    pub duration: f64,
    /// Presentation timestamp of every decoded frame, in microseconds, in decoding-output order.
    pub pts_us: Vec<i64>,
    /// The frame count the container declares, if any.
    pub declared: Option<usize>,
    /// ffprobe's error output (empty for a clean file).
    pub messages: String,
}

#[derive(Deserialize)]
struct TimelineProbe {
    #[serde(default)]
    frames: Vec<ProbeFrame>,
    #[serde(default)]
    streams: Vec<TimelineStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeFrame {
    pts: Option<i64>,
    best_effort_timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct TimelineStream {
    sample_aspect_ratio: Option<String>,
    time_base: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// Decodes `path`'s first video stream with ffprobe for the timestamp of every frame, with the
/// frame size, pixel aspect ratio and duration. Errors: as [`probe_video`], or no usable time
/// base or duration.
pub fn probe_timeline(path: &Path) -> anyhow::Result<Timeline> {
    let info = probe_video(path)?;
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=sample_aspect_ratio,time_base,duration:format=duration:frame=pts,best_effort_timestamp")
        .args(["-of", "json"])
        .arg(file_url(path))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error("ffprobe", e))?;
    let messages = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        anyhow::bail!("{}: ffprobe cannot open it: {}", path.display(), tail(&messages));
    }
    let probe: TimelineProbe = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: unreadable ffprobe output", path.display()))?;
    let stream = probe
        .streams
        .into_iter()
        .next()
        .with_context(|| format!("{}: no video stream", path.display()))?;
    let (num, den) = stream
        .time_base
        .as_deref()
        .and_then(|r| ratio(r, '/'))
        .with_context(|| format!("{}: the video stream has no time base", path.display()))?;
    let pts_us = probe
        .frames
        .iter()
        .map(|f| {
            f.pts
                .or(f.best_effort_timestamp)
                .and_then(|p| pts_micros(p, i64::from(num), i64::from(den)))
        })
        .collect::<Option<Vec<i64>>>()
        .with_context(|| format!("{}: a decoded frame has no timestamp", path.display()))?;
    let duration = probe
        .format
        .and_then(|f| f.duration)
        .or(stream.duration)
        .as_deref()
        .and_then(micros_of_decimal)
        .filter(|&us| us > 0)
        .with_context(|| format!("{}: the video declares no duration", path.display()))?;
    let sar = stream
        .sample_aspect_ratio
        .as_deref()
        .and_then(|r| ratio(r, ':'))
        .filter(|&(n, d)| n > 0 && d > 0)
        .unwrap_or((1, 1));
    // A quarter turn (already applied to the size) turns the pixels too.
    let sar = if info.quarter_turn { (sar.1, sar.0) } else { sar };
    Ok(Timeline {
        width: info.width,
        height: info.height,
        sar,
        // Microseconds over 1e6, as Chromium's `TimeDelta::InSecondsF` gives `video.duration`.
        duration: duration as f64 / 1e6,
        pts_us,
        declared: info.frames,
        messages,
    })
}

/// `a<sep>b` as two positive numbers.
fn ratio(text: &str, sep: char) -> Option<(u32, u32)> {
    let (a, b) = text.split_once(sep)?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (b > 0).then_some((a, b))
}

/// Seconds written in decimal (`"4.004000"`, ffprobe's microsecond precision) as whole
/// microseconds, exactly (digits past the sixth are dropped).
fn micros_of_decimal(text: &str) -> Option<i64> {
    let text = text.trim();
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    int.parse::<i64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(frac.parse::<i64>().ok()?)
}

/// Counts frames by decoding (`ffprobe -count_frames`), for containers that declare none.
pub(super) fn count_frames(path: &Path) -> anyhow::Result<usize> {
    let stream = ffprobe(path, &["-count_frames", "-show_entries", "stream=nb_read_frames"])?;
    stream
        .nb_read_frames
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("{}: ffprobe could not count the frames", path.display()))
}

/// Runs ffprobe on the first video stream of `path` with `extra` arguments, as JSON.
fn ffprobe(path: &Path, extra: &[&str]) -> anyhow::Result<ProbeStream> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-select_streams", "v:0"])
        .args(extra)
        .args(["-of", "json"])
        .arg(file_url(path));
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error("ffprobe", e))?;
    if !out.status.success() {
        anyhow::bail!(
            "{}: ffprobe cannot open it: {}",
            path.display(),
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let probe: Probe = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: unreadable ffprobe output", path.display()))?;
    probe
        .streams
        .into_iter()
        .next()
        .with_context(|| format!("{}: no video stream", path.display()))
}

/// ffmpeg's `file:` protocol, so that a path containing `:` is never read as a protocol.
pub(super) fn file_url(path: &Path) -> std::ffi::OsString {
    let mut url = std::ffi::OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// A spawn failure, as [`FfmpegMissing`] when the program is not installed.
pub(super) fn spawn_error(program: &str, err: std::io::Error) -> anyhow::Error {
    if err.kind() == ErrorKind::NotFound {
        anyhow::Error::new(FfmpegMissing {
            program: program.to_string(),
        })
    } else {
        anyhow::Error::new(err).context(format!("starting {program}"))
    }
}

/// The last few non-empty lines of a tool's error output, joined on one line.
pub(super) fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "no message".to_string();
    }
    let joined = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
    let mut start = joined.len().saturating_sub(STDERR_KEEP);
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    joined[start..].to_string()
}
