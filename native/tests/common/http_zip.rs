//! A local HTTP server and a zip writer for tests of downloads: nothing leaves 127.0.0.1.
//!
//! The zips are built by a small writer here (stored and deflated entries), independent of the
//! zip crate that the code under test reads them with.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// A zip archive and where each entry's (compressed) data lies in it.
pub struct Zip {
    /// The archive.
    pub bytes: Vec<u8>,
    /// Where each entry's stored data lies.
    pub data_at: Vec<Range<usize>>,
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes a zip (APPNOTE 4.3: local headers, central directory, end record) of `(name, content,
/// deflate)` entries.
pub fn build_zip(entries: &[(String, Vec<u8>, bool)]) -> Zip {
    let (mut bytes, mut central, mut data_at) = (Vec::new(), Vec::new(), Vec::new());
    for (name, content, deflate) in entries {
        let mut crc = Crc::new();
        crc.update(content);
        let data = if *deflate {
            let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
            enc.write_all(content).unwrap();
            enc.finish().unwrap()
        } else {
            content.clone()
        };
        let offset = bytes.len() as u32;
        // Method, time, date (1980-01-01), CRC, sizes and name length: shared by both headers.
        let mut common = Vec::new();
        put16(&mut common, if *deflate { 8 } else { 0 });
        put16(&mut common, 0);
        put16(&mut common, 0x21);
        put32(&mut common, crc.sum());
        put32(&mut common, data.len() as u32);
        put32(&mut common, content.len() as u32);
        put16(&mut common, name.len() as u16);
        put16(&mut common, 0);

        put32(&mut bytes, 0x0403_4b50);
        put16(&mut bytes, 20);
        put16(&mut bytes, 0);
        bytes.extend_from_slice(&common);
        bytes.extend_from_slice(name.as_bytes());
        data_at.push(bytes.len()..bytes.len() + data.len());
        bytes.extend_from_slice(&data);

        put32(&mut central, 0x0201_4b50);
        put16(&mut central, 20);
        put16(&mut central, 20);
        put16(&mut central, 0);
        central.extend_from_slice(&common);
        // Comment length, disk, internal and external attributes, local header offset.
        put16(&mut central, 0);
        put16(&mut central, 0);
        put16(&mut central, 0);
        put32(&mut central, 0);
        put32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let central_at = bytes.len() as u32;
    bytes.extend_from_slice(&central);
    put32(&mut bytes, 0x0605_4b50);
    put16(&mut bytes, 0);
    put16(&mut bytes, 0);
    put16(&mut bytes, entries.len() as u16);
    put16(&mut bytes, entries.len() as u16);
    put32(&mut bytes, central.len() as u32);
    put32(&mut bytes, central_at);
    put16(&mut bytes, 0);
    Zip { bytes, data_at }
}

/// What the server serves and what it saw.
#[derive(Default)]
pub struct State {
    pub files: HashMap<String, Vec<u8>>,
    /// Requests seen: path and `Range` header.
    pub seen: Vec<(String, Option<String>)>,
    /// Paths whose next answer is cut after this many body bytes.
    pub cut_next: HashMap<String, usize>,
    /// Answer 200 with the whole file even to a `Range` request.
    pub ignore_range: bool,
}

/// An HTTP/1.1 server on 127.0.0.1 answering GET from `files`, with `Range: bytes=N-` support
/// (206 with Content-Range, 416 past the end), 404 for unknown paths and one connection per
/// request.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Starts serving `files` (path → body) on a free port.
    pub fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &shared);
            }
        });
        Server { url, state }
    }

    /// Runs `f` on the server's state.
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// The requests seen so far, forgetting them.
    pub fn take_seen(&self) -> Vec<(String, Option<String>)> {
        self.with(|s| std::mem::take(&mut s.seen))
    }
}

fn answer(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let (body, cut, ignore_range) = {
        let mut s = state.lock().unwrap();
        s.seen.push((path.clone(), range.clone()));
        (
            s.files.get(&path).cloned(),
            s.cut_next.remove(&path),
            s.ignore_range,
        )
    };
    let mut out = stream;
    let Some(body) = body else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let len = body.len();
    let start = range
        .filter(|_| !ignore_range)
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok());
    let head = match start {
        Some(s) if s >= len => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return out.write_all(head.as_bytes());
        }
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\n",
            len - 1,
            len - s
        ),
        None => format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n"),
    };
    let rest = &body[start.unwrap_or(0)..];
    let sent = &rest[..cut.map_or(rest.len(), |k| k.min(rest.len()))];
    out.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())?;
    out.write_all(sent)?;
    out.flush()
}
