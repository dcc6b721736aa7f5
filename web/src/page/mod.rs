//! The page (wasm32 only): everything the user sees and touches, in the page's thread. The model
//! never runs here; it runs in the Web Worker (`../worker.rs`), which the page talks to through
//! the typed messages of `../protocol.rs`. Rooms:
//!
//! - [`dom`]: element lookup, text and data attributes, the error line, events;
//! - [`bridge`]: the worker: requests with ids, streamed words, a restart after a crash;
//! - [`model_files`]: model folders: the manifest first, downloads with byte progress, sha256
//!   checks, the Cache API; or a folder on this computer;
//! - [`model_box`]: loading a model and saying what was loaded (status, progress, notice);
//! - [`captioning`]: decoding settings, pictures, video frames, scenes, the camera;
//! - [`word_maps`]: "show where each word looked": word buttons and the map overlay;
//! - [`wiring`]: the page's controls bound to the above;
//! - [`hooks`]: `window.captioner`, for the browser tests and benchmarks only.
//!
//! What must not live here: model code (the page's wasm stays small: it never calls the model
//! crate) and anything that only the worker needs.

mod bridge;
mod captioning;
mod dom;
mod hooks;
mod model_box;
mod model_files;
mod wiring;
mod word_maps;

use std::cell::{Cell, RefCell};

use gloo_events::EventListener;
use serde::Serialize;
use serde_bytes::ByteBuf;
use web_sys::{MediaStream, Url, UrlSearchParams};

use crate::protocol::Backend;
use bridge::Bridge;

/// The folder of the model the page loads unless `?model=` names another (relative to the page).
const DEFAULT_MODEL: &str = "model/";

/// The page's state. There is one for the page's whole life (leaked by [`start`]), so every
/// event handler holds a plain `&'static Page`.
pub struct Page {
    bridge: Bridge,
    busy: Cell<bool>,
    /// The loaded model's most frames per clip.
    max_frames: Cell<u32>,
    /// The latest captioned input (test hook).
    last_input: RefCell<Option<LastInput>>,
    /// The open camera, if any.
    camera: RefCell<Option<MediaStream>>,
    /// The preview picture's error handler (replaced with the picture).
    preview_listener: RefCell<Option<EventListener>>,
    /// Seek times of the frames of the video in the preview (none for a picture).
    frame_times: RefCell<Option<Vec<f64>>>,
    /// The finished caption on show.
    shown: RefCell<Option<word_maps::ShownCaption>>,
    /// Its word maps, once asked for.
    maps: RefCell<Option<crate::protocol::WordMaps>>,
}

/// The latest captioned input, as the browser tests read it (`captioner.lastInput()`).
#[derive(Debug, Clone, Serialize)]
struct LastInput {
    /// `image`, `scene` or `video`.
    kind: &'static str,
    /// The picture's bytes, or a video's frames as sent to the worker (RGBA, one after another).
    bytes: Option<ByteBuf>,
    /// A video's frame width and height in pixels (none for a picture).
    frame_size: Option<(u32, u32)>,
}

impl Page {
    /// Marks the page busy (the buttons that start work are disabled meanwhile).
    fn set_busy(&self, busy: bool) {
        self.busy.set(busy);
        for id in ["scene", "snap", "camera"] {
            dom::el::<web_sys::HtmlButtonElement>(id).set_disabled(busy);
        }
        dom::set_data(&dom::body(), "busy", if busy { "1" } else { "" });
    }
}

/// Starts the page: the worker, the controls, the test hooks, the service worker, then the
/// default model (or `?model=`'s, on this site only).
pub fn start() {
    let query = dom::window().location().search().unwrap_or_default();
    let params = UrlSearchParams::new_with_str(&query).ok();
    let param = |name: &str| params.as_ref().and_then(|p| p.get(name));
    let page: &'static Page = Box::leak(Box::new(Page {
        // No `?backend=`: the WebGPU engine where the browser has an adapter, else the CPU engine.
        bridge: Bridge::new(Backend::from_query(param("backend").as_deref())),
        busy: Cell::new(false),
        max_frames: Cell::new(8),
        last_input: RefCell::new(None),
        camera: RefCell::new(None),
        preview_listener: RefCell::new(None),
        frame_times: RefCell::new(None),
        shown: RefCell::new(None),
        maps: RefCell::new(None),
    }));
    page.bridge.start();
    wiring::wire(page);
    hooks::install(page);
    register_service_worker();

    let here = dom::window().location().href().unwrap_or_default();
    let resolve = |path: &str| Url::new_with_base(path, &here).ok();
    let (Some(default), Some(mut base)) = (resolve(DEFAULT_MODEL), resolve(DEFAULT_MODEL)) else {
        return dom::show_error("This page's address could not be read.");
    };
    if let Some(url) = param("model").as_deref().and_then(resolve) {
        if url.origin() == default.origin() {
            base = url;
        }
        if !base.pathname().ends_with('/') {
            base.set_pathname(&format!("{}/", base.pathname()));
        }
    }
    let label = if base.pathname() == default.pathname() {
        "(default)".to_string()
    } else {
        base.pathname()
    };
    let href = base.href();
    wasm_bindgen_futures::spawn_local(model_box::load_model(
        page,
        async move { model_files::fetch_model(&href).await },
        label,
    ));
}

/// The page itself opens offline after the first visit (the model comes from the Cache API).
/// Service workers exist only in secure contexts (https, localhost).
fn register_service_worker() {
    let window = dom::window();
    if window.is_secure_context() {
        let _ = window.navigator().service_worker().register("./sw.js");
    }
}
