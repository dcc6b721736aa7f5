//! `data::coco_download` against a local HTTP server that serves tiny zips in COCO's layout: a
//! full download, resuming after a cut connection, damaged zips, HTTP and connection errors, an
//! output that cannot be written, and reruns that skip what is done.
//! The server and the zip writer are `common::http_zip`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::http_zip::{build_zip, Server, Zip};
use native::data::coco_download::{download_coco, CocoDownload, CocoSplit, SplitReport};
use native::data::load_coco;
use serde_json::json;

const ANNOTATIONS: &str = "/annotations/annotations_trainval2017.zip";
const TRAIN: &str = "/zips/train2017.zip";
const VAL: &str = "/zips/val2017.zip";

// ---------------------------------------------------------------------------------------------
// Tiny COCO

/// JPEG-looking bytes (SOI, filler, EOI) that deflate barely shrinks; they need not decode.
fn fake_jpeg(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0];
    bytes.extend((0..len).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
    }));
    bytes.extend_from_slice(&[0xff, 0xd9]);
    bytes
}

/// One split as served: its images (name, bytes, deflated in the zip) and caption file.
struct Split {
    folder: &'static str,
    images: Vec<(String, Vec<u8>, bool)>,
    captions: Vec<u8>,
}

impl Split {
    fn new(folder: &'static str, images: &[(u64, usize, bool)]) -> Split {
        let ids: Vec<u64> = images.iter().map(|&(id, _, _)| id).collect();
        let images: Vec<_> = images
            .iter()
            .map(|&(id, len, deflate)| (format!("{id:012}.jpg"), fake_jpeg(id, len), deflate))
            .collect();
        let captions = serde_json::to_vec(&json!({
            "info": {"description": "COCO 2017 Dataset", "year": 2017},
            "images": ids.iter().map(|id| json!({
                "id": id, "file_name": format!("{id:012}.jpg"), "height": 480, "width": 640
            })).collect::<Vec<_>>(),
            "annotations": ids.iter().enumerate().map(|(i, id)| json!({
                "image_id": id, "id": 1000 + i, "caption": format!("A photo number {id}.")
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Split {
            folder,
            images,
            captions,
        }
    }

    /// The split's zip: a folder entry, then `<folder>/<image>` entries.
    fn zip(&self) -> Zip {
        let mut entries = vec![(format!("{}/", self.folder), Vec::new(), false)];
        for (name, bytes, deflate) in &self.images {
            entries.push((format!("{}/{name}", self.folder), bytes.clone(), *deflate));
        }
        build_zip(&entries)
    }
}

/// Tiny COCO: three train images, two val images, and an annotations zip that also holds files
/// the download must leave alone.
struct Coco {
    train: Split,
    val: Split,
}

impl Coco {
    fn new() -> Coco {
        Coco {
            // 20 kB so a cut at 5000 bytes lands inside the first image's data.
            train: Split::new(
                "train2017",
                &[(9, 20_000, true), (25, 3_000, false), (30, 500, true)],
            ),
            val: Split::new("val2017", &[(139, 800, true), (285, 1_200, false)]),
        }
    }

    fn annotations(&self) -> Zip {
        build_zip(&[
            (
                "annotations/instances_train2017.json".into(),
                b"{\"instances\": []}".to_vec(),
                true,
            ),
            (
                "annotations/captions_train2017.json".into(),
                self.train.captions.clone(),
                true,
            ),
            (
                "annotations/person_keypoints_val2017.json".into(),
                b"{}".to_vec(),
                false,
            ),
            (
                "annotations/captions_val2017.json".into(),
                self.val.captions.clone(),
                true,
            ),
        ])
    }

    fn files(&self) -> HashMap<String, Vec<u8>> {
        HashMap::from([
            (ANNOTATIONS.to_string(), self.annotations().bytes),
            (TRAIN.to_string(), self.train.zip().bytes),
            (VAL.to_string(), self.val.zip().bytes),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn opts(out: &Path, url: &str, splits: &[CocoSplit]) -> CocoDownload {
    CocoDownload {
        out: out.to_path_buf(),
        base_url: url.to_string(),
        splits: splits.to_vec(),
        keep_zips: false,
        progress: false,
    }
}

/// Every path under `root`, relative and sorted, folders included.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The layout of `splits` under `mscoco/`, as `tree` lists it.
fn layout(splits: &[&Split]) -> Vec<String> {
    let mut paths = vec!["mscoco".to_string()];
    for split in splits {
        paths.push(format!("mscoco/{}", split.folder));
        paths.push(format!("mscoco/{}.json", split.folder));
        for (name, _, _) in &split.images {
            paths.push(format!("mscoco/{}/{name}", split.folder));
        }
    }
    paths.sort();
    paths
}

/// Asserts that `mscoco/` holds `split` byte for byte, and that our COCO loader finds every
/// image of its caption file.
fn assert_split(out: &Path, split: &Split) {
    let mscoco = out.join("mscoco");
    let json = mscoco.join(format!("{}.json", split.folder));
    assert_eq!(
        std::fs::read(&json).unwrap(),
        split.captions,
        "{}",
        json.display()
    );
    for (name, bytes, _) in &split.images {
        let path = mscoco.join(split.folder).join(name);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
    let ds = load_coco(&json, &mscoco.join(split.folder)).unwrap();
    assert_eq!(ds.samples.len(), split.images.len());
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
}

fn err_text(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("the download should fail"))
}

fn fetched(path: &str) -> (String, Option<String>) {
    (path.to_string(), None)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn full_download_gives_the_original_layout() {
    let coco = Coco::new();
    let server = Server::start(coco.files());
    let tmp = tempfile::tempdir().unwrap();

    let summary = download_coco(&opts(tmp.path(), &server.url, &CocoSplit::ALL)).unwrap();

    // Only the original layout: no zips, no staging leftovers, no `downloads/`.
    assert_eq!(tree(tmp.path()), layout(&[&coco.train, &coco.val]));
    assert_split(tmp.path(), &coco.train);
    assert_split(tmp.path(), &coco.val);
    assert_eq!(
        server.take_seen(),
        vec![fetched(ANNOTATIONS), fetched(TRAIN), fetched(VAL)]
    );
    assert_eq!(
        summary.splits,
        vec![
            SplitReport {
                split: CocoSplit::Train,
                images: 3,
                skipped: false
            },
            SplitReport {
                split: CocoSplit::Val,
                images: 2,
                skipped: false
            },
        ]
    );
    let served: u64 = coco.files().values().map(|b| b.len() as u64).sum();
    assert_eq!((summary.fetched(), summary.resumed()), (served, 0));
    let names: Vec<&str> = summary.zips.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(
        names,
        ["annotations_trainval2017.zip", "train2017.zip", "val2017.zip"]
    );
    assert!(summary.zips.iter().all(|z| z.kept.is_none() && !z.reused));
    let text = summary.to_string();
    assert!(
        text.contains("train2017/: 3 images, captions in train2017.json\n"),
        "{text}"
    );
    assert!(text.contains("val2017.zip: "), "{text}");
    assert!(text.contains("deleted after extraction"), "{text}");
}

#[test]
fn keep_zips_keeps_the_served_bytes() {
    let coco = Coco::new();
    let files = coco.files();
    let server = Server::start(files.clone());
    let tmp = tempfile::tempdir().unwrap();
    let opts = CocoDownload {
        keep_zips: true,
        ..opts(tmp.path(), &server.url, &[CocoSplit::Val])
    };

    let summary = download_coco(&opts).unwrap();

    let downloads = tmp.path().join("downloads");
    let mut expected = layout(&[&coco.val]);
    expected.extend(
        [
            "downloads",
            "downloads/annotations_trainval2017.zip",
            "downloads/val2017.zip",
        ]
        .map(String::from),
    );
    expected.sort();
    assert_eq!(tree(tmp.path()), expected);
    assert_eq!(std::fs::read(downloads.join("val2017.zip")).unwrap(), files[VAL]);
    assert_eq!(
        std::fs::read(downloads.join("annotations_trainval2017.zip")).unwrap(),
        files[ANNOTATIONS]
    );
    assert_eq!(
        summary.zips[1].kept.as_deref(),
        Some(downloads.join("val2017.zip").as_path())
    );
    assert_split(tmp.path(), &coco.val);
}

#[test]
fn a_cut_download_resumes_from_where_it_stopped() {
    const K: usize = 5000;
    let coco = Coco::new();
    let files = coco.files();
    let server = Server::start(files.clone());
    server.with(|s| s.cut_next.insert(TRAIN.to_string(), K));
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts(tmp.path(), &server.url, &[CocoSplit::Train]);
    let part = tmp.path().join("downloads/train2017.zip.part");

    let err = err_text(download_coco(&opts));
    assert!(err.contains(&format!("{}{TRAIN}", server.url)), "{err}");
    assert!(
        err.contains(&format!("cut at byte {K} of {}", files[TRAIN].len())),
        "{err}"
    );
    assert!(err.contains("rerun to resume"), "{err}");
    // What arrived is kept; nothing of the split looks done.
    assert_eq!(std::fs::read(&part).unwrap(), files[TRAIN][..K]);
    assert_eq!(
        tree(tmp.path()),
        [
            "downloads",
            "downloads/annotations_trainval2017.zip",
            "downloads/train2017.zip.part",
            "mscoco"
        ]
    );

    server.take_seen();
    let summary = download_coco(&opts).unwrap();

    // The annotations zip is reused; the images zip asked from byte K.
    assert_eq!(
        server.take_seen(),
        vec![(TRAIN.to_string(), Some(format!("bytes={K}-")))]
    );
    let train = &summary.zips[1];
    assert_eq!(
        (train.fetched, train.resumed),
        ((files[TRAIN].len() - K) as u64, K as u64)
    );
    assert!(summary.zips[0].reused);
    assert_eq!(tree(tmp.path()), layout(&[&coco.train]));
    assert_split(tmp.path(), &coco.train);
}

#[test]
fn a_server_that_ignores_the_range_starts_over() {
    let coco = Coco::new();
    let files = coco.files();
    let server = Server::start(files.clone());
    server.with(|s| s.cut_next.insert(VAL.to_string(), 100));
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts(tmp.path(), &server.url, &[CocoSplit::Val]);
    download_coco(&opts).unwrap_err();
    server.with(|s| s.ignore_range = true);
    server.take_seen();

    let summary = download_coco(&opts).unwrap();

    assert_eq!(
        server.take_seen(),
        vec![(VAL.to_string(), Some("bytes=100-".to_string()))]
    );
    assert_eq!(
        (summary.zips[1].fetched, summary.zips[1].resumed),
        (files[VAL].len() as u64, 0)
    );
    assert_eq!(tree(tmp.path()), layout(&[&coco.val]));
    assert_split(tmp.path(), &coco.val);
}

#[test]
fn a_complete_part_is_finished_without_fetching() {
    let coco = Coco::new();
    let files = coco.files();
    let server = Server::start(files.clone());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("downloads")).unwrap();
    std::fs::write(tmp.path().join("downloads/val2017.zip.part"), &files[VAL]).unwrap();

    let summary = download_coco(&opts(tmp.path(), &server.url, &[CocoSplit::Val])).unwrap();

    // The server answers 416 with the size the `.part` already has.
    let len = files[VAL].len();
    assert_eq!(
        server.take_seen(),
        vec![
            fetched(ANNOTATIONS),
            (VAL.to_string(), Some(format!("bytes={len}-")))
        ]
    );
    assert_eq!(
        (summary.zips[1].fetched, summary.zips[1].resumed),
        (0, len as u64)
    );
    assert_split(tmp.path(), &coco.val);
}

/// Runs a train download whose `path` is served as `bytes`; returns the error and checks that
/// nothing of the split is left looking done and that the damaged zip is gone.
fn damaged_download(coco: &Coco, path: &str, bytes: Vec<u8>) -> String {
    let mut files = coco.files();
    files.insert(path.to_string(), bytes);
    let server = Server::start(files);
    let tmp = tempfile::tempdir().unwrap();
    let err = err_text(download_coco(&opts(tmp.path(), &server.url, &[CocoSplit::Train])));
    let zip_name = path.rsplit('/').next().unwrap();
    assert!(err.contains(&format!("downloads/{zip_name}")), "{err}");
    assert!(
        err.contains("the zip was deleted so that a rerun downloads it again"),
        "{err}"
    );
    let left = tree(tmp.path());
    assert!(
        left.iter()
            .all(|p| !p.starts_with("mscoco/") && !p.contains(zip_name)),
        "{left:?}"
    );

    // Served intact, the rerun downloads the zip again and completes.
    server.with(|s| s.files = coco.files());
    server.take_seen();
    download_coco(&opts(tmp.path(), &server.url, &[CocoSplit::Train])).unwrap();
    assert!(server.take_seen().contains(&fetched(path)));
    assert_split(tmp.path(), &coco.train);
    err
}

#[test]
fn a_damaged_zip_is_named_deleted_and_leaves_nothing_done() {
    let coco = Coco::new();
    let zip = coco.train.zip();

    // A stored image with a flipped byte fails its CRC-32 check.
    let mut stored = zip.bytes.clone();
    stored[zip.data_at[2].start + 100] ^= 0x55;
    let err = damaged_download(&coco, TRAIN, stored);
    assert!(
        err.contains("entry train2017/000000000025.jpg fails its CRC-32 check"),
        "{err}"
    );

    // A deflated image with flipped bytes fails to inflate or fails its CRC-32 check.
    let mut deflated = zip.bytes.clone();
    let at = zip.data_at[1].start + zip.data_at[1].len() / 2;
    for b in &mut deflated[at..at + 4] {
        *b ^= 0xff;
    }
    let err = damaged_download(&coco, TRAIN, deflated);
    assert!(err.contains("entry train2017/000000000009.jpg "), "{err}");
    assert!(err.contains("CRC-32") || err.contains("inflate"), "{err}");

    // A damaged caption file.
    let ann = coco.annotations();
    let mut bytes = ann.bytes.clone();
    bytes[ann.data_at[1].start + 10] ^= 0x55;
    let err = damaged_download(&coco, ANNOTATIONS, bytes);
    assert!(
        err.contains("entry annotations/captions_train2017.json "),
        "{err}"
    );
}

#[test]
fn a_body_that_is_not_a_zip_is_named_and_deleted() {
    let coco = Coco::new();
    let page = b"<html><body>503 Service Unavailable</body></html>".to_vec();
    let err = damaged_download(&coco, TRAIN, page);
    assert!(err.contains("train2017.zip: not a zip archive"), "{err}");
}

#[test]
fn entries_that_escape_their_folder_are_refused() {
    let coco = Coco::new();
    let evil = build_zip(&[
        ("train2017/000000000009.jpg".into(), fake_jpeg(9, 100), true),
        ("train2017/../../evil.jpg".into(), b"gotcha".to_vec(), false),
    ]);
    let err = damaged_download(&coco, TRAIN, evil.bytes);
    assert!(
        err.contains("entry `train2017/../../evil.jpg` is a path with `..`"),
        "{err}"
    );
}

#[test]
fn http_and_connection_errors_name_the_url() {
    let coco = Coco::new();
    let mut files = coco.files();
    files.remove(VAL);
    let server = Server::start(files);
    let tmp = tempfile::tempdir().unwrap();
    let err = err_text(download_coco(&opts(tmp.path(), &server.url, &[CocoSplit::Val])));
    assert!(
        err.contains(&format!(
            "downloading {}{VAL}: the server answered HTTP 404",
            server.url
        )),
        "{err}"
    );

    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let fresh = tempfile::tempdir().unwrap();
    let err = err_text(download_coco(&opts(fresh.path(), &url, &[CocoSplit::Val])));
    assert!(
        err.contains(&format!("cannot download {url}{ANNOTATIONS}: ")),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
}

#[test]
fn an_output_that_cannot_be_written_is_named() {
    let coco = Coco::new();
    let server = Server::start(coco.files());
    let tmp = tempfile::tempdir().unwrap();

    // Under a regular file, creating a folder fails for root too.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let out = file.join("coco");
    let err = err_text(download_coco(&opts(&out, &server.url, &CocoSplit::ALL)));
    assert!(
        err.contains(&format!("creating {}", out.join("mscoco").display())),
        "{err}"
    );
    assert!(err.contains("Not a directory"), "{err}");
    assert!(server.take_seen().is_empty());
}

/// A full disk, as /dev/full is: every write fails with ENOSPC.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_named_and_nothing_counts_as_downloaded() {
    let coco = Coco::new();
    let server = Server::start(coco.files());
    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let part = downloads.join("annotations_trainval2017.zip.part");
    std::os::unix::fs::symlink("/dev/full", &part).unwrap();
    let err = err_text(download_coco(&opts(tmp.path(), &server.url, &CocoSplit::ALL)));
    assert!(err.contains(&format!("writing {}", part.display())), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!downloads.join("annotations_trainval2017.zip").exists());
    assert!(!tmp.path().join("mscoco/train2017.json").exists());
    assert!(!tmp.path().join("mscoco/val2017.json").exists());
}

#[cfg(unix)]
#[test]
fn a_read_only_output_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let coco = Coco::new();
    let server = Server::start(coco.files());
    let tmp = tempfile::tempdir().unwrap();
    // Permissions do not stop root, so this case is skipped there.
    let ro = tmp.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_ok() {
        caption_model::test_skip::skip(
            "this user (root?) can write into read-only folders: the permission error is untested",
        );
        return;
    }
    let err = err_text(download_coco(&opts(&ro, &server.url, &CocoSplit::ALL)));
    assert!(
        err.contains(&format!("creating {}", ro.join("mscoco").display())),
        "{err}"
    );
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn a_rerun_skips_what_is_done() {
    let coco = Coco::new();
    let server = Server::start(coco.files());
    let tmp = tempfile::tempdir().unwrap();
    let opts = opts(tmp.path(), &server.url, &CocoSplit::ALL);
    download_coco(&opts).unwrap();
    server.take_seen();

    let summary = download_coco(&opts).unwrap();

    assert!(server.take_seen().is_empty());
    assert!(summary.zips.is_empty());
    assert_eq!(
        summary
            .splits
            .iter()
            .map(|s| (s.images, s.skipped))
            .collect::<Vec<_>>(),
        [(3, true), (2, true)]
    );
    let text = summary.to_string();
    assert!(
        text.contains("val2017/: 2 images, captions in val2017.json (already there, skipped)"),
        "{text}"
    );
    assert!(text.ends_with("nothing downloaded"), "{text}");

    // A missing caption file costs only the annotations zip; the images stay as they are.
    let json = tmp.path().join("mscoco/val2017.json");
    std::fs::remove_file(&json).unwrap();
    download_coco(&opts).unwrap();
    assert_eq!(server.take_seen(), vec![fetched(ANNOTATIONS)]);
    assert_eq!(tree(tmp.path()), layout(&[&coco.train, &coco.val]));
    assert_split(tmp.path(), &coco.val);
}
