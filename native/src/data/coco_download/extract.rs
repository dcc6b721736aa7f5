//! Checked extraction: each zip entry inflated here and compared with the archive's size and
//! CRC-32, staged under a hidden name and renamed into place only when all of it is good.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use flate2::read::DeflateDecoder;
use flate2::CrcReader;
use zip::{CompressionMethod, ZipArchive};

use indicatif::ProgressBar;

use super::{create_dir, progress_bar, pump, CocoSplit, Pump};

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
pub(super) fn delete_if_damaged<T>(zip: &Path, extract: impl FnOnce() -> Result<T>) -> Result<T> {
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
pub(super) struct Staged {
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
    pub(super) fn commit(mut self, dest: &Path) -> Result<()> {
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
pub(super) fn stage_captions(
    zip: &Path,
    splits: &[CocoSplit],
    mscoco: &Path,
) -> Result<Vec<(CocoSplit, Staged)>> {
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
pub(super) fn extract_images(zip: &Path, split: CocoSplit, mscoco: &Path, progress: bool) -> Result<usize> {
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
}
