//! Model folders for the worker: fetched manifest first, then the files with byte-level
//! progress, each checked against the manifest's size and sha256 and kept in the Cache API
//! under its checksum (`<url>?sha256=<hex>`), so a later visit downloads only the manifest, and
//! nothing at all offline; or read from a folder on this computer. The worker's loader checks
//! sizes and checksums a second time.

use js_sys::{Array, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Cache, File, ReadableStreamDefaultReader, ReadableStreamReadResult, Request, RequestCache, RequestInit,
    Response, Url,
};

use super::{dom, model_box};
use crate::protocol::FolderFiles;

const CACHE_NAME: &str = "caption-models-v1";

/// Where a model's files came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Cache API (every file).
    Cache,
    /// This site (at least one file).
    Network,
    /// A folder the user picked.
    LocalFolder,
}

impl Source {
    /// As the page says it (and as `data-source` holds it).
    pub fn name(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Network => "network",
            Source::LocalFolder => "local folder",
        }
    }
}

/// A model folder's files, read.
pub struct Fetched {
    /// The three files.
    pub files: FolderFiles,
    /// Where they came from.
    pub source: Source,
    /// Whether the manifest came from the cache because the site was unreachable.
    pub offline: bool,
}

/// What the page reads of `manifest.json` (the worker reads all of it).
#[derive(Debug, Deserialize)]
struct Listing {
    format: String,
    tokenizer: Option<String>,
    files: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
struct Entry {
    name: String,
    bytes: f64,
    sha256: String,
}

/// The folder format `native export` writes.
const FOLDER_FORMAT: &str = "caption-model-folder";

fn read_listing(bytes: &[u8]) -> Result<Listing, String> {
    let text = String::from_utf8_lossy(bytes);
    let json = js_sys::JSON::parse(&text)
        .map_err(|_| "This is not a model folder: its manifest.json is not valid JSON.".to_string())?;
    serde_wasm_bindgen::from_value::<Listing>(json)
        .ok()
        .filter(|l| l.format == FOLDER_FORMAT)
        .ok_or_else(|| {
            "This is not a model folder: manifest.json is not a caption-model-folder manifest.".to_string()
        })
}

/// The two files the worker needs besides the manifest: the weights and the tokenizer.
fn needed(listing: &Listing) -> [String; 2] {
    let tokenizer = listing
        .tokenizer
        .clone()
        .unwrap_or_else(|| "tokenizer.json".into());
    ["model.safetensors".into(), tokenizer]
}

fn mb(bytes: f64) -> String {
    format!("{:.1}", bytes / 1e6)
}

fn show_progress(done: f64, total: f64, what: &str) {
    model_box::progress(done, total, &format!("{what}: {} of {} MB", mb(done), mb(total)));
}

/// The Cache API's store for model files (none where the browser has no Cache API here).
async fn open_cache() -> Option<Cache> {
    let caches = dom::window().caches().ok()?;
    let cache = JsFuture::from(caches.open(CACHE_NAME)).await.ok()?;
    cache.dyn_into().ok()
}

async fn cached(cache: Option<&Cache>, key: &str) -> Option<Vec<u8>> {
    let hit = JsFuture::from(cache?.match_with_str(key)).await.ok()?;
    let response: Response = hit.dyn_into().ok()?;
    let body = JsFuture::from(response.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&body).to_vec())
}

async fn store(cache: &Cache, key: &str, bytes: &[u8]) {
    // The Response copies the bytes out of wasm memory at once.
    if let Ok(response) = Response::new_with_opt_u8_array(Some(&mut bytes.to_vec())) {
        let _ = JsFuture::from(cache.put_with_str(key, &response)).await;
    }
}

/// The hex sha256 of `bytes`, or `None` where the browser does not compute it (not a secure
/// context: then only the worker checks).
async fn sha256(bytes: &[u8]) -> Option<String> {
    let window = dom::window();
    if !window.is_secure_context() {
        return None;
    }
    let subtle = window.crypto().ok()?.subtle();
    let digest = JsFuture::from(subtle.digest_with_str_and_u8_array("SHA-256", bytes).ok()?)
        .await
        .ok()?;
    let digest = Uint8Array::new(&digest).to_vec();
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

async fn get(url: &str) -> Result<Response, String> {
    let init = RequestInit::new();
    init.set_cache(RequestCache::NoStore);
    let response = JsFuture::from(dom::window().fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| dom::error_text(&e))?;
    response.dyn_into().map_err(|_| "not a response".into())
}

/// Downloads `url`, which the manifest says has `expected` bytes, reporting each chunk.
async fn download(url: &str, expected: usize, mut on_bytes: impl FnMut(usize)) -> Result<Vec<u8>, String> {
    let response = get(url)
        .await
        .map_err(|why| format!("Could not download {url}: the network is unavailable ({why})."))?;
    if !response.ok() {
        return Err(format!(
            "Could not download {url}: the server answered {}.",
            response.status()
        ));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(expected)
        .map_err(|_| format!("{url} ({expected} bytes) does not fit in this browser's memory."))?;
    let body = response
        .body()
        .ok_or_else(|| format!("Could not download {url}: the answer has no body."))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    loop {
        let chunk: ReadableStreamReadResult = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("Could not download {url}: {}.", dom::error_text(&e)))?
            .unchecked_into();
        if chunk.get_done().unwrap_or(false) {
            break;
        }
        let value: Uint8Array = chunk.get_value().unchecked_into();
        let (at, len) = (out.len(), value.length() as usize);
        if at + len > expected {
            return Err(format!(
                "{url} is larger than its manifest says ({expected} bytes)."
            ));
        }
        out.resize(at + len, 0);
        value.copy_to(&mut out[at..]);
        on_bytes(len);
    }
    if out.len() != expected {
        return Err(format!(
            "{url} is incomplete: {} of {expected} bytes arrived.",
            out.len()
        ));
    }
    Ok(out)
}

/// The manifest of the folder at `base`: from the site, kept in the cache; from the cache when
/// the site is unreachable (then `offline`).
async fn fetch_manifest(cache: Option<&Cache>, base: &str) -> Result<(Vec<u8>, bool), String> {
    let url = resolve("manifest.json", base)?;
    let fetched = async {
        let response = get(&url).await?;
        if !response.ok() {
            return Err(format!("the server answered {}", response.status()));
        }
        let body = JsFuture::from(response.array_buffer().map_err(|e| dom::error_text(&e))?)
            .await
            .map_err(|e| dom::error_text(&e))?;
        Ok(Uint8Array::new(&body).to_vec())
    };
    match fetched.await {
        Ok(bytes) => {
            if let Some(cache) = cache {
                store(cache, &url, &bytes).await;
            }
            Ok((bytes, false))
        }
        Err(why) => match cached(cache, &url).await {
            Some(bytes) => Ok((bytes, true)),
            None => Err(format!(
                "Could not get the model's manifest.json from {url} ({why})."
            )),
        },
    }
}

fn resolve(name: &str, base: &str) -> Result<String, String> {
    Url::new_with_base(name, base)
        .map(|u| u.href())
        .map_err(|_| format!("{base} is not a web address."))
}

/// Drops the cached copies of `url` under other checksums (older exports).
async fn drop_old_copies(cache: &Cache, url: &str, key: &str) {
    let Ok(keys) = JsFuture::from(cache.keys()).await else {
        return;
    };
    let prefix = format!("{url}?sha256=");
    for request in Array::from(&keys).iter() {
        let Ok(request) = request.dyn_into::<Request>() else {
            continue;
        };
        let old = request.url();
        if old.starts_with(&prefix) && old != key {
            let _ = JsFuture::from(cache.delete_with_request(&request)).await;
        }
    }
}

/// One file of the folder: from the cache when a copy there has the manifest's size and
/// checksum (a damaged copy is dropped), else downloaded, checked and cached.
async fn fetch_file(
    cache: Option<&Cache>,
    base: &str,
    entry: &Entry,
    done: &mut f64,
    total: f64,
) -> Result<(Vec<u8>, Source), String> {
    let url = resolve(&entry.name, base)?;
    let key = format!("{url}?sha256={}", entry.sha256);
    if let Some(bytes) = cached(cache, &key).await {
        let sum = sha256(&bytes).await;
        if bytes.len() as f64 == entry.bytes && sum.is_none_or(|s| s == entry.sha256) {
            *done += entry.bytes;
            show_progress(*done, total, "Reading the model from this browser's cache");
            return Ok((bytes, Source::Cache));
        }
        if let Some(cache) = cache {
            let _ = JsFuture::from(cache.delete_with_str(&key)).await;
        }
    }
    if !(entry.bytes >= 0.0 && entry.bytes.fract() == 0.0) {
        return Err(format!(
            "The model's manifest.json gives {} a size of {} bytes.",
            entry.name, entry.bytes
        ));
    }
    let bytes = download(&url, entry.bytes as usize, |n| {
        *done += n as f64;
        show_progress(*done, total, "Downloading the model");
    })
    .await?;
    if sha256(&bytes).await.is_some_and(|s| s != entry.sha256) {
        return Err(format!(
            "The model file {} is damaged: its checksum does not match the manifest. Nothing was loaded.",
            entry.name
        ));
    }
    if let Some(cache) = cache {
        drop_old_copies(cache, &url, &key).await;
        store(cache, &key, &bytes).await;
    }
    Ok((bytes, Source::Network))
}

/// Fetches the manifest, the weights and the tokenizer of the folder at `base` (an absolute
/// URL ending in `/`).
pub async fn fetch_model(base: &str) -> Result<Fetched, String> {
    let cache = open_cache().await;
    let (manifest, offline) = fetch_manifest(cache.as_ref(), base).await?;
    let listing = read_listing(&manifest)?;
    let entries = needed(&listing)
        .map(|name| listing.files.iter().find(|f| f.name == name).cloned().ok_or(name))
        .into_iter()
        .map(|e| e.map_err(|name| format!("The model's manifest.json does not list {name}.")))
        .collect::<Result<Vec<_>, _>>()?;
    let total = entries.iter().map(|e| e.bytes).sum();
    let mut done = 0.0;
    let mut files = Vec::new();
    let mut source = Source::Cache;
    for entry in &entries {
        let (bytes, from) = fetch_file(cache.as_ref(), base, entry, &mut done, total).await?;
        if from == Source::Network {
            source = Source::Network;
        }
        files.push(bytes);
    }
    let tokenizer = files.pop().unwrap_or_default();
    let model = files.pop().unwrap_or_default();
    Ok(Fetched {
        files: FolderFiles {
            manifest,
            model,
            tokenizer,
        },
        source,
        offline,
    })
}

/// The folder the user picked (`<input webkitdirectory>`'s files).
pub async fn read_local_folder(files: Vec<File>) -> Result<Fetched, String> {
    let find = |name: &str| files.iter().find(|f| f.name() == name);
    let read = |file: &File| {
        let file = gloo_file::File::from(file.clone());
        async move {
            gloo_file::futures::read_as_bytes(&file)
                .await
                .map_err(|e| format!("“{}” could not be read ({e}).", file.name()))
        }
    };
    let manifest_file = find("manifest.json")
        .ok_or("That folder has no manifest.json: pick a folder made by `native export`.")?;
    let manifest = read(manifest_file).await?;
    let listing = read_listing(&manifest)?;
    let mut out = Vec::new();
    for name in needed(&listing) {
        let file = find(&name).ok_or_else(|| format!("That folder has no {name}."))?;
        out.push(read(file).await?);
    }
    let tokenizer = out.pop().unwrap_or_default();
    let model = out.pop().unwrap_or_default();
    Ok(Fetched {
        files: FolderFiles {
            manifest,
            model,
            tokenizer,
        },
        source: Source::LocalFolder,
        offline: false,
    })
}
