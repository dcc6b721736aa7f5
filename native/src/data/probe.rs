//! `ffprobe` and the shared plumbing of the ffmpeg tools: size and frame count of a video,
//! a clear error when the tools are missing, short error messages.

use std::fmt;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::Context;
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
    if (rotation.round() as i64).rem_euclid(180) == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    Ok(VideoInfo {
        width,
        height,
        frames: stream.nb_frames.and_then(|n| n.trim().parse().ok()),
    })
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
