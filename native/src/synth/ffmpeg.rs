//! Encoding frames to H.264 mp4 through the `ffmpeg` command-line tool.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;

/// The program run; a name looked up on PATH.
const FFMPEG: &str = "ffmpeg";

/// The error for a missing ffmpeg, with the install hint.
fn missing() -> anyhow::Error {
    anyhow!("`{FFMPEG}` was not found on PATH; install it (Debian: `apt-get install -y ffmpeg`) or pass `--videos-train 0 --videos-val 0 --videos-test 0`")
}

/// Fails with an install hint when ffmpeg cannot be run, so a long run fails before it starts.
pub fn check_ffmpeg() -> Result<()> {
    match Command::new(FFMPEG)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("`{FFMPEG} -version` failed ({s})"),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(missing()),
        Err(e) => Err(e).context(format!("running `{FFMPEG}`")),
    }
}

/// Encodes equally sized frames as a near-lossless H.264 mp4 at `fps` frames per second, written
/// to a temporary name and renamed so a killed run never leaves a truncated clip.
pub fn encode_mp4(frames: &[RgbImage], fps: u32, out: &Path) -> Result<()> {
    let first = frames.first().context("a clip needs at least one frame")?;
    let (w, h) = first.dimensions();
    // yuv420p halves the chroma resolution, so x264 refuses odd sizes.
    if !w.is_multiple_of(2) || !h.is_multiple_of(2) {
        bail!("video frames must have even width and height, got {w}x{h}");
    }
    let tmp = out.with_extension("mp4.part");
    let mut child = Command::new(FFMPEG)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", &format!("{w}x{h}")])
        .args(["-r", &fps.to_string(), "-i", "-"])
        .args([
            "-c:v", "libx264", "-preset", "medium", "-crf", "10", "-pix_fmt", "yuv420p",
        ])
        // One thread and bit-exact muxing so the same frames always give the same bytes.
        .args([
            "-threads",
            "1",
            "-fflags",
            "+bitexact",
            "-flags:v",
            "+bitexact",
            "-map_metadata",
            "-1",
        ])
        .args(["-f", "mp4"])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                missing()
            } else {
                e.into()
            }
        })?;
    let mut stdin = child.stdin.take().context("ffmpeg's stdin was not captured")?;
    // Feed the frames from another thread while this one drains stderr, so neither pipe can fill up
    // and deadlock the two processes.
    let (output, written) = std::thread::scope(|s| {
        let writer = s.spawn(move || -> std::io::Result<()> {
            for f in frames {
                if f.dimensions() != (w, h) {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidInput,
                        "frames differ in size",
                    ));
                }
                stdin.write_all(f.as_raw())?;
            }
            Ok(())
        });
        (child.wait_with_output(), writer.join())
    });
    let output = output.context("waiting for ffmpeg")?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "ffmpeg failed ({}) encoding {}: {}",
            output.status,
            out.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).context(format!("writing frames to ffmpeg for {}", out.display()));
        }
        Err(_) => bail!("the thread feeding ffmpeg panicked"),
    }
    std::fs::rename(&tmp, out).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}
