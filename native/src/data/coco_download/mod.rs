//! Downloading COCO 2017 into the layout the original's setup script makes:
//! `mscoco/train2017/*.jpg`, `mscoco/train2017.json` (`annotations/captions_train2017.json` of
//! `annotations_trainval2017.zip`), and the same for `val2017`.
//!
//! - Downloads resume: a zip is fetched into `downloads/<name>.zip.part`, continued with a
//!   `Range` request by the next run ([`plan_resume`] reads the server's answer), and renamed to
//!   `<name>.zip` only once it holds the size the server declared.
//! - Extraction is checked: each entry is inflated here with flate2 (candle builds the zip crate
//!   without codecs, so it only reads the archive's structure) and its size and CRC-32 compared
//!   with the archive's. A damaged zip is deleted, so a rerun fetches it again.
//! - Nothing half-done looks done: images are extracted into `mscoco/.train2017.partial/` and
//!   renamed into place once all passed; a caption file is staged as
//!   `mscoco/.train2017.json.partial` and renamed once its split's images are in place. A split
//!   whose folder and caption file exist is skipped, so a rerun is cheap.
//!
//! Rooms: `resume.rs` (the resumable HTTP download), `extract.rs` (checked, staged extraction);
//! this file chooses what to fetch and reports. Not here: reading the captions
//! ([`super::load_coco`]) and the command line.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

mod extract;
mod resume;

pub use extract::entry_path;
use extract::{delete_if_damaged, extract_images, stage_captions};
use resume::fetch_zip;
pub use resume::{plan_resume, range_header, Resume};

/// Where COCO's zips are served.
pub const COCO_BASE_URL: &str = "http://images.cocodataset.org";

/// The zip with both splits' caption files, under `<base_url>/annotations/`.
const ANNOTATIONS_ZIP: &str = "annotations_trainval2017.zip";

/// A COCO 2017 split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CocoSplit {
    /// `train2017`: 118k images.
    Train,
    /// `val2017`: 5k images.
    Val,
}

impl CocoSplit {
    /// Both splits.
    pub const ALL: [CocoSplit; 2] = [CocoSplit::Train, CocoSplit::Val];

    /// The split's folder and zip name, as COCO spells them: `train2017`, `val2017`.
    pub fn name(self) -> &'static str {
        match self {
            CocoSplit::Train => "train2017",
            CocoSplit::Val => "val2017",
        }
    }
}

impl fmt::Display for CocoSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CocoSplit {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "train2017" => Ok(CocoSplit::Train),
            "val" | "val2017" => Ok(CocoSplit::Val),
            _ => bail!("unknown COCO split `{s}` (expected train or val)"),
        }
    }
}

/// What [`download_coco`] fetches and where it puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoDownload {
    /// The folder that receives `mscoco/`, and `downloads/` for the zips.
    pub out: PathBuf,
    /// Where the zips are served: `<base_url>/zips/train2017.zip`,
    /// `<base_url>/annotations/annotations_trainval2017.zip`.
    pub base_url: String,
    /// The splits to fetch; repeats are ignored.
    pub splits: Vec<CocoSplit>,
    /// Keeps the zips in `downloads/` instead of deleting them once extracted.
    pub keep_zips: bool,
    /// Shows progress bars (bytes, rate, eta) on stderr.
    pub progress: bool,
}

impl CocoDownload {
    /// Both splits from [`COCO_BASE_URL`] into `out`, zips deleted after extraction, progress
    /// shown.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        CocoDownload {
            out: out.into(),
            base_url: COCO_BASE_URL.to_string(),
            splits: CocoSplit::ALL.to_vec(),
            keep_zips: false,
            progress: true,
        }
    }
}

/// What [`download_coco`] did, per split and per zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoSummary {
    /// The `mscoco/` folder.
    pub mscoco: PathBuf,
    /// One per requested split, in request order.
    pub splits: Vec<SplitReport>,
    /// One per zip used, in the order they were fetched.
    pub zips: Vec<ZipReport>,
}

/// One split after [`download_coco`]: `mscoco/<split>/` and `mscoco/<split>.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitReport {
    /// The split.
    pub split: CocoSplit,
    /// Files in its image folder.
    pub images: usize,
    /// Whether its folder and caption file were already there, so nothing was done.
    pub skipped: bool,
}

/// One zip used by [`download_coco`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipReport {
    /// File name, e.g. `train2017.zip`.
    pub name: String,
    /// Bytes transferred by this run.
    pub fetched: u64,
    /// Bytes an earlier run had left in its `.part`, kept rather than fetched again.
    pub resumed: u64,
    /// Whether the complete zip was already in `downloads/`, so nothing was transferred.
    pub reused: bool,
    /// Where the zip stays (`keep_zips`, or a run that stopped early); `None` once deleted.
    pub kept: Option<PathBuf>,
}

impl CocoSummary {
    /// Bytes transferred by this run, all zips together.
    pub fn fetched(&self) -> u64 {
        self.zips.iter().map(|z| z.fetched).sum()
    }

    /// Bytes taken over from earlier runs' `.part` files, all zips together.
    pub fn resumed(&self) -> u64 {
        self.zips.iter().map(|z| z.resumed).sum()
    }
}

impl fmt::Display for CocoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "COCO 2017 in {}:", self.mscoco.display())?;
        for s in &self.splits {
            let name = s.split.name();
            let skipped = if s.skipped {
                " (already there, skipped)"
            } else {
                ""
            };
            writeln!(
                f,
                "  {name}/: {} images, captions in {name}.json{skipped}",
                s.images
            )?;
        }
        if self.zips.is_empty() {
            return write!(f, "nothing downloaded");
        }
        write!(
            f,
            "downloaded {} ({} resumed from an earlier run):",
            HumanBytes(self.fetched()),
            HumanBytes(self.resumed())
        )?;
        for z in &self.zips {
            write!(f, "\n  {}: ", z.name)?;
            if z.reused {
                write!(f, "already downloaded")?;
            } else {
                write!(f, "{} fetched", HumanBytes(z.fetched))?;
                if z.resumed > 0 {
                    write!(f, " + {} resumed", HumanBytes(z.resumed))?;
                }
            }
            match &z.kept {
                Some(path) => write!(f, ", kept as {}", path.display())?,
                None => write!(f, ", deleted after extraction")?,
            }
        }
        Ok(())
    }
}

/// Downloads, checks and extracts the COCO 2017 `splits` into `<out>/mscoco/`.
///
/// Captions come first: the annotations zip is small, so a wrong URL or a dead server shows up
/// before hours of image downloads. Reruns are cheap: finished splits are skipped, complete zips
/// in `<out>/downloads/` reused and `.part` files resumed. Errors name the URL, file or zip entry
/// at fault.
pub fn download_coco(opts: &CocoDownload) -> Result<CocoSummary> {
    let mscoco = opts.out.join("mscoco");
    let downloads = opts.out.join("downloads");
    let mut splits: Vec<CocoSplit> = Vec::new();
    for &split in &opts.splits {
        if !splits.contains(&split) {
            splits.push(split);
        }
    }
    if splits.is_empty() {
        bail!("no COCO split to download (name train, val or both)");
    }
    let need_images: Vec<bool> = splits.iter().map(|s| !mscoco.join(s.name()).is_dir()).collect();
    let need_captions: Vec<CocoSplit> = splits
        .iter()
        .copied()
        .filter(|&s| !captions_path(&mscoco, s).is_file())
        .collect();
    if need_images.iter().any(|&n| n) || !need_captions.is_empty() {
        create_dir(&mscoco)?;
        create_dir(&downloads)?;
    }

    let base = opts.base_url.trim_end_matches('/');
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        // A stalled transfer fails instead of hanging; the next run resumes it.
        .timeout_read(Duration::from_secs(60))
        .build();
    let mut zips = Vec::new();
    let mut captions = Vec::new();
    let annotations = downloads.join(ANNOTATIONS_ZIP);
    if !need_captions.is_empty() {
        let url = format!("{base}/annotations/{ANNOTATIONS_ZIP}");
        zips.push(fetch_zip(&agent, &url, &annotations, opts.progress)?);
        captions = delete_if_damaged(&annotations, || {
            stage_captions(&annotations, &need_captions, &mscoco)
        })?;
    }

    let mut reports = Vec::new();
    for (&split, &images) in splits.iter().zip(&need_images) {
        if images {
            let zip = downloads.join(format!("{}.zip", split.name()));
            let url = format!("{base}/zips/{}.zip", split.name());
            zips.push(fetch_zip(&agent, &url, &zip, opts.progress)?);
            delete_if_damaged(&zip, || extract_images(&zip, split, &mscoco, opts.progress))?;
            release_zip(zips.last_mut(), opts.keep_zips)?;
        }
        if let Some(at) = captions.iter().position(|(s, _)| *s == split) {
            let (_, staged) = captions.swap_remove(at);
            staged.commit(&captions_path(&mscoco, split))?;
        }
        reports.push(SplitReport {
            split,
            images: count_files(&mscoco.join(split.name()))?,
            skipped: !images && !need_captions.contains(&split),
        });
    }
    if !need_captions.is_empty() {
        // Kept until every caption file is in place, so a run stopped by an image zip reuses it.
        release_zip(zips.first_mut(), opts.keep_zips)?;
    }
    if !opts.keep_zips {
        // Only succeeds when empty: the folder goes once nothing is left to resume.
        let _ = fs::remove_dir(&downloads);
    }
    Ok(CocoSummary {
        mscoco,
        splits: reports,
        zips,
    })
}

/// `mscoco/<split>.json`.
fn captions_path(mscoco: &Path, split: CocoSplit) -> PathBuf {
    mscoco.join(format!("{}.json", split.name()))
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn count_files(dir: &Path) -> Result<usize> {
    let mut count = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        count += usize::from(entry.file_type().is_ok_and(|t| t.is_file()));
    }
    Ok(count)
}

/// Deletes the zip of `report` unless `keep`.
fn release_zip(report: Option<&mut ZipReport>, keep: bool) -> Result<()> {
    let Some(report) = report else { return Ok(()) };
    if keep {
        return Ok(());
    }
    if let Some(path) = report.kept.take() {
        fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
    }
    Ok(())
}

/// Which side of [`pump`] failed.
pub(super) enum Pump {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` until `from` ends, adding each chunk to `copied` and `bar`.
pub(super) fn pump(
    from: &mut dyn Read,
    to: &mut dyn Write,
    copied: &mut u64,
    bar: &ProgressBar,
) -> Result<(), Pump> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return to.flush().map_err(Pump::Write),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Pump::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Pump::Write)?;
        *copied += n as u64;
        bar.inc(n as u64);
    }
}

/// A progress bar on stderr with `template`, or a hidden one when `show` is off.
pub(super) fn progress_bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!("train".parse::<CocoSplit>().unwrap(), CocoSplit::Train);
        assert_eq!("VAL2017".parse::<CocoSplit>().unwrap(), CocoSplit::Val);
        assert!("test"
            .parse::<CocoSplit>()
            .unwrap_err()
            .to_string()
            .contains("expected train or val"));
        assert_eq!(CocoSplit::Train.to_string(), "train2017");
    }
}
