//! Resumable downloads: a `.part` file continued with HTTP `Range` requests, renamed to its
//! final name only once it holds the size the server declared.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::{progress_bar, pump, Pump, ZipReport};

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
pub(super) fn fetch_zip(agent: &ureq::Agent, url: &str, zip: &Path, progress: bool) -> Result<ZipReport> {
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
}
