//! The Web Worker's message loop (wasm32 only). The page posts plain objects:
//!
//! - `{type: "load", id, manifest, model, tokenizer, backend}` (the three files as `Uint8Array`s)
//!   → `{type: "loaded", id, backend, notice, quant, maxFrames, imageSize, params}`;
//! - `{type: "caption", id, settings, image}` (file bytes) or
//!   `{type: "caption", id, settings, frames: [Uint8Array RGBA], width, height}` (a clip)
//!   → `{type: "partial", id, text}`… then `{type: "done", id, caption, ms, backend, tokens, ids, frames}`;
//! - `{type: "scene", id, seed}` → `{type: "scene", id, png, description}`;
//! - `{type: "exhaust-memory"}` runs the engine out of memory, for the browser test of the
//!   page's restart (no answer: the worker dies as it would on a model too large for wasm32).
//!
//! Any failure answers `{type: "error", id, message}` in plain words; a panic posts
//! `{type: "fatal", message}` before the worker dies (the page then restarts it).

use std::cell::RefCell;
use std::rc::Rc;

use caption_model::weights::FolderBytes;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::engine::{create_engine, Backend, Engine, Frames};
use crate::scene::{random_scene_image, SCENE_SIZE};
use crate::settings::Settings;

thread_local! {
    static ENGINE: RefCell<Option<Rc<Engine>>> = const { RefCell::new(None) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn now_ms() -> f64 {
    scope()
        .performance()
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

fn post(fields: &[(&str, JsValue)]) {
    let obj = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), v);
    }
    let _ = scope().post_message(&obj);
}

fn get(data: &JsValue, key: &str) -> JsValue {
    Reflect::get(data, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn bytes(data: &JsValue, key: &str) -> Result<Vec<u8>, String> {
    let v = get(data, key);
    if v.is_instance_of::<Uint8Array>() {
        Ok(v.unchecked_into::<Uint8Array>().to_vec())
    } else if v.is_instance_of::<js_sys::ArrayBuffer>() {
        Ok(Uint8Array::new(&v).to_vec())
    } else {
        Err(format!("the page sent no `{key}` bytes"))
    }
}

/// Starts the message loop and tells the page the worker is ready.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        post(&[
            ("type", "fatal".into()),
            ("message", format!("the captioning engine crashed: {info}").into()),
        ]);
    }));
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|e: MessageEvent| handle(e.data()));
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(&[("type", "ready".into())]);
}

fn handle(data: JsValue) {
    let id = get(&data, "id");
    let kind = get(&data, "type").as_string().unwrap_or_default();
    let answer_error = |id: JsValue, result: Result<(), String>| {
        if let Err(message) = result {
            post(&[("type", "error".into()), ("id", id), ("message", message.into())]);
        }
    };
    match kind.as_str() {
        // Loading and captioning wait for the GPU (the CPU engine never waits).
        "load" => wasm_bindgen_futures::spawn_local(async move {
            let result = load(&data, &id).await;
            answer_error(id, result);
        }),
        "caption" => wasm_bindgen_futures::spawn_local(async move {
            let result = caption(&data, &id).await;
            answer_error(id, result);
        }),
        "scene" => answer_error(id.clone(), scene(&data, &id)),
        "exhaust-memory" => answer_error(id, exhaust_memory()),
        other => answer_error(id, Err(format!("unknown request `{other}`"))),
    }
}

/// Allocates until wasm32's memory cannot grow: the allocator then aborts with a trap, the same
/// death as a real out-of-memory. Zeroed blocks are asked for, so no memory is written.
fn exhaust_memory() -> Result<(), String> {
    let mut held = Vec::new();
    loop {
        held.push(std::hint::black_box(vec![0u8; 1 << 30]));
    }
}

async fn load(data: &JsValue, id: &JsValue) -> Result<(), String> {
    let manifest = bytes(data, "manifest")?;
    let model = bytes(data, "model")?;
    let tokenizer = bytes(data, "tokenizer")?;
    let backend = Backend::from_query(get(data, "backend").as_string().as_deref());
    let files = FolderBytes {
        manifest: &manifest,
        model: &model,
        tokenizer: &tokenizer,
    };
    let (engine, notice) = create_engine(backend, files)
        .await
        .map_err(|e| format!("The model could not be loaded: {e}"))?;
    let vision = engine.config().vision_config().map_err(|e| e.to_string())?;
    let text = engine.config().text_config().map_err(|e| e.to_string())?;
    let summary = format!(
        "CLIP {}×{} px, {} layers; GPT-2 {} wide, {} layers; {} tokens",
        vision.image_size,
        vision.image_size,
        vision.num_hidden_layers,
        text.n_embd,
        text.n_layer,
        engine.tokenizer().vocab_size()
    );
    post(&[
        ("type", "loaded".into()),
        ("id", id.clone()),
        ("backend", engine.backend_name().into()),
        ("notice", notice.map(JsValue::from).unwrap_or(JsValue::NULL)),
        ("maxFrames", (engine.max_frames() as u32).into()),
        ("imageSize", (vision.image_size as u32).into()),
        ("summary", summary.into()),
    ]);
    ENGINE.with(|e| *e.borrow_mut() = Some(Rc::new(engine)));
    Ok(())
}

async fn caption(data: &JsValue, id: &JsValue) -> Result<(), String> {
    let settings_json = get(data, "settings").as_string().unwrap_or_else(|| "{}".into());
    // A handle, not a borrow: the engine stays usable while this caption waits for the GPU.
    let engine = ENGINE
        .with(|cell| cell.borrow().clone())
        .ok_or("No model is loaded yet.")?;
    {
        let settings = Settings::from_json(&settings_json).map_err(|e| e.to_string())?;
        let opts = settings.options(engine.config()).map_err(|e| e.to_string())?;
        let pre = engine.preprocess_config().map_err(|e| e.to_string())?;
        let started = now_ms();
        let input = if get(data, "frames").is_undefined() {
            let image = bytes(data, "image")?;
            Frames::from_image_bytes(&image, &pre)
                .map_err(|e| format!("This file could not be read as an image ({e})."))?
        } else {
            let list: Array = get(data, "frames")
                .dyn_into()
                .map_err(|_| "frames must be a list")?;
            let width = get(data, "width").as_f64().unwrap_or(0.0) as u32;
            let height = get(data, "height").as_f64().unwrap_or(0.0) as u32;
            let mut frames: Vec<Vec<u8>> = list.iter().map(|f| Uint8Array::new(&f).to_vec()).collect();
            if frames.len() > engine.max_frames() {
                let keep = crate::engine::even_indices(frames.len(), engine.max_frames());
                frames = keep.into_iter().map(|i| std::mem::take(&mut frames[i])).collect();
            }
            Frames::from_rgba_frames(&frames, width, height, &pre)
                .map_err(|e| format!("The video frames could not be used ({e})."))?
        };
        let tokenizer = engine.tokenizer();
        let mut on_tokens = |tokens: &[u32]| {
            if let Ok(text) = tokenizer.decode_caption(tokens) {
                post(&[
                    ("type", "partial".into()),
                    ("id", id.clone()),
                    ("text", text.into()),
                ]);
            }
        };
        let generated = engine
            .caption(&input, &opts, &mut on_tokens)
            .await
            .map_err(|e| format!("Captioning failed: {e}"))?;
        let text = tokenizer
            .decode_caption(&generated.tokens)
            .map_err(|e| e.to_string())?;
        let ms = now_ms() - started;
        post(&[
            ("type", "done".into()),
            ("id", id.clone()),
            ("caption", text.into()),
            ("ms", ms.into()),
            ("backend", engine.backend_name().into()),
            ("tokens", (generated.tokens.len() as u32).into()),
            (
                "ids",
                js_sys::Uint32Array::from(generated.tokens.as_slice()).into(),
            ),
            ("frames", (input.frames.len() as u32).into()),
        ]);
        Ok(())
    }
}

fn scene(data: &JsValue, id: &JsValue) -> Result<(), String> {
    let seed = get(data, "seed").as_f64().unwrap_or(0.0) as u64;
    let scene = random_scene_image(seed, SCENE_SIZE);
    post(&[
        ("type", "scene".into()),
        ("id", id.clone()),
        ("png", Uint8Array::from(scene.png.as_slice()).into()),
        ("description", scene.description.into()),
    ]);
    Ok(())
}
