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
//! Not here: reading the captions ([`super::load_coco`]) and the command line.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::DeflateDecoder;
use flate2::CrcReader;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use zip::{CompressionMethod, ZipArchive};

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

/// The `Range` header that continues a download already holding `have` bytes; none for a
/// fresh one.
pub fn range_header(have: u64) -> Option<String> {
    (have > 0).then(|| format!("bytes={have}-"))
}

/// How a download goes on after the server's answer, see [`plan_resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// 206: the body continues the `.part`, which then holds `total` bytes.
    Append {
        /// The file's full size.
        total: u64,
    },
    /// 200: the body is the whole file (also what a server that ignores `Range` sends): the
    /// `.part` starts over.
    Whole {
        /// The file's full size.
        total: u64,
    },
    /// 416 and the `.part` is as long as the file: it is complete.
    Complete,
    /// 416 for a `.part` of another length: it cannot be this file; delete it and ask again.
    Discard,
}

/// Decides how a download holding `have` bytes (asked with [`range_header`]) goes on, from the
/// answer's status and its `Content-Length` and `Content-Range` headers. The error says what is
/// wrong with the answer.
pub fn plan_resume(
    status: u16,
    have: u64,
    content_length: Option<u64>,
    content_range: Option<&str>,
) -> std::result::Result<Resume, String> {
    let range = content_range.and_then(parse_content_range);
    match status {
        200 => content_length
            .map(|total| Resume::Whole { total })
            .ok_or_else(|| {
                "the server did not say how large the file is (no Content-Length), so a cut download \
             could not be told from a complete one"
                    .to_string()
            }),
        206 if have > 0 => match range {
            Some(ContentRange {
                span: Some((start, _)),
                total: Some(total),
            }) if start == have => Ok(Resume::Append { total }),
            Some(ContentRange {
                span: Some((start, _)),
                total: Some(_),
            }) => Err(format!("the server resumed at byte {start} instead of {have}")),
            _ => Err(format!(
                "the server's Content-Range `{}` does not give the file's size",
                content_range.unwrap_or_default()
            )),
        },
        416 if have > 0 => Ok(match range.and_then(|r| r.total) {
            Some(total) if total == have => Resume::Complete,
            _ => Resume::Discard,
        }),
        _ => Err(format!("the server answered HTTP {status}")),
    }
}

/// `Content-Range: bytes <first>-<last>/<total>`, where `<total>` may be `*` and the span is `*`
/// in a 416 answer.
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    span: Option<(u64, u64)>,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (unit, rest) = value.trim().split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, total) = rest.trim().split_once('/')?;
    let span = match span.trim() {
        "*" => None,
        s => {
            let (first, last) = s.split_once('-')?;
            Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
        }
    };
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some(ContentRange { span, total })
}

/// Makes `zip` in `downloads/` complete: reused when there, else fetched from `url` through
/// `<zip>.part`, resuming what an earlier run left.
fn fetch_zip(agent: &ureq::Agent, url: &str, zip: &Path, progress: bool) -> Result<ZipReport> {
    let name = zip
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut report = ZipReport {
        name,
        fetched: 0,
        resumed: 0,
        reused: zip.is_file(),
        kept: Some(zip.to_path_buf()),
    };
    if !report.reused {
        let mut part = zip.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        (report.fetched, report.resumed) = download(agent, url, &part, &report.name, progress)?;
        fs::rename(&part, zip)
            .with_context(|| format!("renaming {} to {}", part.display(), zip.display()))?;
    }
    Ok(report)
}

/// Downloads `url` into `part`, continuing what it holds; returns (bytes fetched now, bytes
/// kept from before). Returns `Ok` only when `part` holds the size the server declared.
fn download(agent: &ureq::Agent, url: &str, part: &Path, name: &str, progress: bool) -> Result<(u64, u64)> {
    // A second round only after deleting a `.part` that cannot belong to the file.
    for _ in 0..2 {
        let have = match fs::metadata(part) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(anyhow!(e).context(format!("reading {}", part.display()))),
        };
        let mut request = agent.get(url).set("Accept-Encoding", "identity");
        if let Some(range) = range_header(have) {
            request = request.set("Range", &range);
        }
        let response = match request.call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(t)) => {
                // ureq starts its message with the URL; keep it only when a redirect changed it.
                let text = t.to_string();
                let why = text.strip_prefix(&format!("{url}: ")).unwrap_or(&text);
                bail!("cannot download {url}: {why}");
            }
        };
        let length = response
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok());
        let plan = plan_resume(response.status(), have, length, response.header("Content-Range"))
            .map_err(|why| anyhow!("downloading {url}: {why} ({})", response.status_text()))?;
        let (start, total) = match plan {
            Resume::Complete => return Ok((0, have)),
            Resume::Discard => {
                fs::remove_file(part).with_context(|| format!("deleting {}", part.display()))?;
                continue;
            }
            Resume::Append { total } => (have, total),
            Resume::Whole { total } => (0, total),
        };
        let opened = if start > 0 {
            OpenOptions::new().append(true).open(part)
        } else {
            File::create(part)
        };
        let mut file = opened.with_context(|| format!("opening {}", part.display()))?;
        let bar = progress_bar(
            progress,
            total,
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .with_message(name.to_string())
        .with_position(start);
        let mut got = start;
        let copied = pump(&mut response.into_reader(), &mut file, &mut got, &bar);
        bar.finish_and_clear();
        match copied {
            Err(Pump::Write(e)) => return Err(anyhow!(e).context(format!("writing {}", part.display()))),
            Err(Pump::Read(e)) => bail!(
                "the download of {url} was cut at byte {got} of {total} ({e}); {} keeps what \
                 arrived: rerun to resume",
                part.display()
            ),
            Ok(()) if got != total => bail!(
                "the download of {url} ended at byte {got} of the {total} the server announced; {} \
                 keeps what arrived: rerun to resume",
                part.display()
            ),
            Ok(()) => {}
        }
        file.sync_all()
            .with_context(|| format!("writing {}", part.display()))?;
        return Ok((total - start, start));
    }
    bail!("downloading {url}: the server refuses the range asked for, even after starting over")
}

/// Which side of [`pump`] failed.
enum Pump {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` until `from` ends, adding each chunk to `copied` and `bar`.
fn pump(from: &mut dyn Read, to: &mut dyn Write, copied: &mut u64, bar: &ProgressBar) -> Result<(), Pump> {
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
fn progress_bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()))
}

/// A downloaded zip that fails its checks; [`delete_if_damaged`] deletes it.
#[derive(Debug)]
struct Damaged {
    zip: PathBuf,
    problem: String,
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.zip.display(), self.problem)
    }
}

impl std::error::Error for Damaged {}

fn damaged(zip: &Path, problem: String) -> anyhow::Error {
    anyhow::Error::new(Damaged {
        zip: zip.to_path_buf(),
        problem,
    })
}

/// Runs `extract`; when it finds `zip` damaged, deletes the zip so the next run downloads it
/// again. Other errors (a full disk) keep it.
fn delete_if_damaged<T>(zip: &Path, extract: impl FnOnce() -> Result<T>) -> Result<T> {
    extract().map_err(|e| {
        if !e.chain().any(|c| c.is::<Damaged>()) {
            return e;
        }
        match fs::remove_file(zip) {
            Ok(()) => anyhow!("{e:#}; the zip was deleted so that a rerun downloads it again"),
            Err(rm) => anyhow!("{e:#}; delete the zip before rerunning (deleting it failed: {rm})"),
        }
    })
}

/// The relative path a zip entry name stands for. Refuses names that could land outside the
/// folder they are extracted into (zip slip): absolute paths, drive letters, `..`, NUL.
pub fn entry_path(name: &str) -> std::result::Result<PathBuf, String> {
    if name.is_empty() || name.contains('\0') {
        return Err("an empty name or one with a NUL byte".into());
    }
    if name.starts_with(['/', '\\']) || name.split(['/', '\\']).next().is_some_and(|c| c.contains(':')) {
        return Err("an absolute path".into());
    }
    let mut path = PathBuf::new();
    for part in name.split(['/', '\\']).filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err("a path with `..`".into());
        }
        path.push(part);
    }
    Ok(path)
}

/// An opened zip and each entry's name with its checked path (see [`entry_path`]).
struct Opened {
    archive: ZipArchive<BufReader<File>>,
    entries: Vec<(String, PathBuf)>,
}

fn open_zip(zip: &Path) -> Result<Opened> {
    let file = File::open(zip).with_context(|| format!("opening {}", zip.display()))?;
    let archive = ZipArchive::new(BufReader::new(file))
        .map_err(|e| damaged(zip, format!("not a zip archive ({e})")))?;
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let name = match archive.name_for_index(index) {
            Some(Ok(name)) => name.into_owned(),
            _ => return Err(damaged(zip, format!("the name of entry {index} cannot be read"))),
        };
        let path = entry_path(&name).map_err(|why| damaged(zip, format!("entry `{name}` is {why}")))?;
        entries.push((name, path));
    }
    Ok(Opened { archive, entries })
}

/// Copies entry `index` into `out`, inflating it here and checking its size and CRC-32 against
/// the archive's central directory. Failures of the entry are [`Damaged`]; failures to write
/// name `out_path`.
fn copy_entry<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    name: &str,
    zip: &Path,
    out: &mut dyn Write,
    out_path: &Path,
) -> Result<()> {
    let entry = archive
        .by_index_raw(index)
        .map_err(|e| damaged(zip, format!("entry {name} cannot be read ({e})")))?;
    if entry.encrypted() {
        return Err(damaged(zip, format!("entry {name} is encrypted")));
    }
    let (size, crc, method) = (entry.size(), entry.crc32(), entry.compression());
    // One byte past the declared size is enough to catch a lying header without filling the disk.
    let body: Box<dyn Read + '_> = if method == CompressionMethod::STORE {
        Box::new(entry.take(size + 1))
    } else if method == CompressionMethod::DEFLATE {
        Box::new(DeflateDecoder::new(entry).take(size + 1))
    } else {
        return Err(damaged(
            zip,
            format!("entry {name} is compressed with {method:?}, not Deflate as COCO's zips are"),
        ));
    };
    let mut body = CrcReader::new(body);
    let mut written = 0;
    match pump(&mut body, out, &mut written, &ProgressBar::hidden()) {
        Err(Pump::Read(e)) => return Err(damaged(zip, format!("entry {name} cannot be inflated ({e})"))),
        Err(Pump::Write(e)) => return Err(anyhow!(e).context(format!("writing {}", out_path.display()))),
        Ok(()) => {}
    }
    if written != size {
        return Err(damaged(
            zip,
            format!("entry {name} inflates to {written} bytes, the archive says {size}"),
        ));
    }
    let got = body.crc().sum();
    if got != crc {
        return Err(damaged(
            zip,
            format!("entry {name} fails its CRC-32 check ({got:08x}, the archive says {crc:08x})"),
        ));
    }
    Ok(())
}

/// A file or folder written under a temporary name beside its destination: removed on drop
/// unless [`Staged::commit`] renamed it into place, so an error never leaves a half-written one
/// under the final name.
struct Staged {
    path: PathBuf,
    committed: bool,
}

impl Staged {
    /// Claims `path`, removing what a killed earlier run left there.
    fn new(path: PathBuf) -> Result<Self> {
        remove_any(&path).with_context(|| format!("removing the leftover {}", path.display()))?;
        Ok(Staged {
            path,
            committed: false,
        })
    }

    /// Renames the staged file or folder to `dest`.
    fn commit(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest)
            .with_context(|| format!("renaming {} to {}", self.path.display(), dest.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.path);
        }
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Extracts `annotations/captions_<split>.json` of the annotations zip for each split, staged
/// beside `mscoco/<split>.json` until its images are in place.
fn stage_captions(zip: &Path, splits: &[CocoSplit], mscoco: &Path) -> Result<Vec<(CocoSplit, Staged)>> {
    let Opened { mut archive, entries } = open_zip(zip)?;
    let mut staged = Vec::new();
    for &split in splits {
        let wanted = format!("annotations/captions_{}.json", split.name());
        let index = entries
            .iter()
            .position(|(name, _)| *name == wanted)
            .ok_or_else(|| damaged(zip, format!("it holds no {wanted}")))?;
        let dest = mscoco.join(format!(".{}.json.partial", split.name()));
        let stage = Staged::new(dest.clone())?;
        let file = File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        copy_entry(
            &mut archive,
            index,
            &wanted,
            zip,
            &mut BufWriter::new(file),
            &dest,
        )?;
        staged.push((split, stage));
    }
    Ok(staged)
}

/// Extracts the `<split>/` files of `zip` into `mscoco/<split>/`, through a staged folder that
/// is renamed into place once every entry passed its checks; returns the number of files.
fn extract_images(zip: &Path, split: CocoSplit, mscoco: &Path, progress: bool) -> Result<usize> {
    let Opened { mut archive, entries } = open_zip(zip)?;
    let folder = split.name();
    let partial = mscoco.join(format!(".{folder}.partial"));
    let stage = Staged::new(partial.clone())?;
    create_dir(&partial)?;
    let bar = progress_bar(
        progress,
        entries.len() as u64,
        "{msg} {bar:30} {pos}/{len} entries, eta {eta}",
    )
    .with_message(format!("extracting {folder}"));
    let mut count = 0;
    for (index, (name, path)) in entries.iter().enumerate() {
        bar.inc(1);
        let Ok(inside) = path.strip_prefix(folder) else {
            continue;
        };
        if inside.as_os_str().is_empty() || name.ends_with('/') {
            continue;
        }
        let dest = partial.join(inside);
        if let Some(dir) = dest.parent().filter(|d| *d != partial) {
            create_dir(dir)?;
        }
        let file = File::create(&dest).with_context(|| format!("creating {}", dest.display()))?;
        copy_entry(&mut archive, index, name, zip, &mut BufWriter::new(file), &dest)?;
        count += 1;
    }
    bar.finish_and_clear();
    if count == 0 {
        return Err(damaged(zip, format!("it holds no files under {folder}/")));
    }
    stage.commit(&mscoco.join(folder))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_continue_after_what_is_there() {
        assert_eq!(range_header(0), None);
        assert_eq!(range_header(1234).as_deref(), Some("bytes=1234-"));
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 100-999/1000"),
            Some(ContentRange {
                span: Some((100, 999)),
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes */1000"),
            Some(ContentRange {
                span: None,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("Bytes 0-9/*"),
            Some(ContentRange {
                span: Some((0, 9)),
                total: None
            })
        );
        assert_eq!(parse_content_range("items 0-9/10"), None);
        assert_eq!(parse_content_range("bytes 0-x/10"), None);
        assert_eq!(parse_content_range("bytes 0-9"), None);
    }

    #[test]
    fn resume_decisions() {
        // Fresh download and a server that ignored the range: the body is the whole file.
        assert_eq!(
            plan_resume(200, 0, Some(50), None),
            Ok(Resume::Whole { total: 50 })
        );
        assert_eq!(
            plan_resume(200, 10, Some(50), None),
            Ok(Resume::Whole { total: 50 })
        );
        assert!(plan_resume(200, 0, None, None)
            .unwrap_err()
            .contains("Content-Length"));
        // Resumed where asked.
        assert_eq!(
            plan_resume(206, 10, Some(40), Some("bytes 10-49/50")),
            Ok(Resume::Append { total: 50 })
        );
        assert_eq!(
            plan_resume(206, 10, Some(40), Some("bytes 20-49/50")),
            Err("the server resumed at byte 20 instead of 10".into())
        );
        assert!(plan_resume(206, 10, Some(40), Some("bytes 10-49/*"))
            .unwrap_err()
            .contains("size"));
        assert!(plan_resume(206, 10, Some(40), None).is_err());
        // A 206 nobody asked for.
        assert!(plan_resume(206, 0, Some(40), Some("bytes 0-39/50")).is_err());
        // Range past the end: complete when the lengths agree, else the `.part` is not this file.
        assert_eq!(
            plan_resume(416, 50, None, Some("bytes */50")),
            Ok(Resume::Complete)
        );
        assert_eq!(
            plan_resume(416, 60, None, Some("bytes */50")),
            Ok(Resume::Discard)
        );
        assert_eq!(plan_resume(416, 50, None, None), Ok(Resume::Discard));
        assert_eq!(
            plan_resume(404, 0, Some(9), None),
            Err("the server answered HTTP 404".into())
        );
        assert_eq!(
            plan_resume(416, 0, None, None),
            Err("the server answered HTTP 416".into())
        );
    }

    #[test]
    fn entry_paths_stay_inside() {
        assert_eq!(
            entry_path("train2017/000000000009.jpg"),
            Ok(PathBuf::from("train2017/000000000009.jpg"))
        );
        assert_eq!(entry_path("./val2017//a.jpg"), Ok(PathBuf::from("val2017/a.jpg")));
        assert_eq!(entry_path("train2017/"), Ok(PathBuf::from("train2017")));
        assert_eq!(
            entry_path("train2017\\b.jpg"),
            Ok(PathBuf::from("train2017/b.jpg"))
        );
        for bad in [
            "../evil.jpg",
            "train2017/../../evil.jpg",
            "train2017\\..\\evil",
            "/etc/passwd",
            "\\windows\\evil",
            "C:\\evil",
            "c:/evil",
            "",
            "a\0b",
        ] {
            assert!(entry_path(bad).is_err(), "{bad:?} was accepted");
        }
    }

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
