//! The Web Worker's message loop (wasm32 only): it reads [`ToWorker`] requests and answers with
//! [`FromWorker`] messages (`protocol.rs`, shared with the page):
//!
//! - `Load` → `Loaded` (the engine, its notice, the model's size and most frames per clip);
//! - `Caption` (an image file's bytes, or RGBA video frames) → `Partial`… then `Done`;
//! - `Scene` → `Scene` (a PNG and its description);
//! - `WordMaps` → `WordMaps` (each token's attention map over the latest caption's frames);
//! - `ExhaustMemory` runs the engine out of memory, for the browser test of the page's restart
//!   (no answer: the worker dies as it would on a model too large for wasm32).
//!
//! Any failure, an unreadable request included, answers `Error` in plain words; a panic posts
//! `Fatal` before the worker dies (the page then restarts it).

use std::cell::RefCell;
use std::rc::Rc;

use caption_model::attention_maps::{grid_shape, token_texts};
use caption_model::frame_sampling;
use caption_model::weights::FolderBytes;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::engine::{create_engine, even_indices, Backend, Engine, Frames};
use crate::protocol::{
    js, Caption, FolderFiles, FromWorker, Input, LoadedModel, RequestId, ToWorker, TokenMap, WordMaps,
};
use crate::scene::{random_scene_image, SCENE_SIZE};
use crate::settings::Settings;

thread_local! {
    static ENGINE: RefCell<Option<Rc<Engine>>> = const { RefCell::new(None) };
    /// The latest caption's request, preprocessed frames and tokens, for a later `WordMaps`
    /// (kept, not computed: a caption costs no more for it).
    static LAST_CAPTION: RefCell<Option<Rc<LastCaption>>> = const { RefCell::new(None) };
}

/// A caption request's id, its preprocessed frames and its tokens.
struct LastCaption {
    id: RequestId,
    frames: Frames,
    tokens: Vec<u32>,
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

/// Posts `message` to the page, its byte buffers transferred.
fn post(message: &FromWorker) {
    if let Ok((value, transfer)) = js::encode(message) {
        let _ = scope().post_message_with_transfer(&value, &transfer);
    }
}

/// Starts the message loop and tells the page the worker is ready.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        post(&FromWorker::Fatal {
            message: format!("the captioning engine crashed: {info}"),
        });
    }));
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|e: MessageEvent| handle(e.data()));
    scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    onmessage.forget();
    post(&FromWorker::Ready);
}

fn handle(data: JsValue) {
    let request: ToWorker = match js::decode(data.clone()) {
        Ok(request) => request,
        Err(why) => {
            return post(&FromWorker::Error {
                id: js::request_id(&data),
                message: format!("The captioning engine could not read the page's request ({why})."),
            })
        }
    };
    let answer = |id: RequestId, result: Result<FromWorker, String>| {
        post(&result.unwrap_or_else(|message| FromWorker::Error {
            id: Some(id),
            message,
        }))
    };
    match request {
        // Loading and captioning wait for the GPU (the CPU engine never waits).
        ToWorker::Load { id, backend, files } => {
            wasm_bindgen_futures::spawn_local(async move { answer(id, load(id, backend, files).await) })
        }
        ToWorker::Caption { id, settings, input } => {
            wasm_bindgen_futures::spawn_local(async move { answer(id, caption(id, &settings, input).await) })
        }
        ToWorker::WordMaps { id, caption } => {
            wasm_bindgen_futures::spawn_local(async move { answer(id, word_maps(id, caption).await) })
        }
        ToWorker::Scene { id, seed } => {
            let scene = random_scene_image(seed, SCENE_SIZE);
            answer(
                id,
                Ok(FromWorker::Scene {
                    id,
                    png: scene.png,
                    description: scene.description,
                }),
            )
        }
        ToWorker::FramePlan {
            id,
            duration,
            width,
            height,
            requested,
        } => answer(id, frame_plan(id, duration, width, height, requested)),
        ToWorker::ExhaustMemory { id } => answer(id, exhaust_memory()),
    }
}

/// The frames `native caption --frames N` would take from the same video: the shared rule
/// (`caption_model::frame_sampling`), clamped to the loaded model's frames.
fn frame_plan(
    id: RequestId,
    duration: f64,
    width: u32,
    height: u32,
    requested: u32,
) -> Result<FromWorker, String> {
    let max_frames = ENGINE
        .with(|e| e.borrow().as_ref().map(|engine| engine.max_frames()))
        .ok_or_else(|| "No model is loaded yet.".to_string())?;
    let count = frame_sampling::frame_count(Some(requested as usize), max_frames);
    let times = frame_sampling::sample_times(duration, count);
    if times.is_empty() || width == 0 || height == 0 {
        return Err("This browser reports no duration or size for the video.".into());
    }
    let (width, height) = frame_sampling::canvas_size(width, height);
    Ok(FromWorker::FramePlan {
        id,
        times,
        width,
        height,
    })
}

/// Allocates until wasm32's memory cannot grow: the allocator then aborts with a trap, the same
/// death as a real out-of-memory. Zeroed blocks are asked for, so no memory is written.
fn exhaust_memory() -> Result<FromWorker, String> {
    let mut held = Vec::new();
    loop {
        held.push(std::hint::black_box(vec![0u8; 1 << 30]));
    }
}

async fn load(id: RequestId, backend: Backend, files: FolderFiles) -> Result<FromWorker, String> {
    let files = FolderBytes {
        manifest: &files.manifest,
        model: &files.model,
        tokenizer: &files.tokenizer,
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
    let model = LoadedModel {
        backend: engine.backend_name().into(),
        notice,
        max_frames: engine.max_frames() as u32,
        image_size: vision.image_size as u32,
        summary,
        description: engine.description().map(str::to_string),
    };
    ENGINE.with(|e| *e.borrow_mut() = Some(Rc::new(engine)));
    LAST_CAPTION.with(|last| *last.borrow_mut() = None);
    Ok(FromWorker::Loaded { id, model })
}

async fn caption(id: RequestId, settings: &Settings, input: Input) -> Result<FromWorker, String> {
    // A handle, not a borrow: the engine stays usable while this caption waits for the GPU.
    let engine = ENGINE
        .with(|cell| cell.borrow().clone())
        .ok_or("No model is loaded yet.")?;
    let opts = settings.options(engine.config()).map_err(|e| e.to_string())?;
    let pre = engine.preprocess_config().map_err(|e| e.to_string())?;
    let started = now_ms();
    let input = match input {
        Input::Image { bytes } => Frames::from_image_bytes(&bytes, &pre)
            .map_err(|e| format!("This file could not be read as an image ({e})."))?,
        Input::Clip {
            frames,
            width,
            height,
        } => {
            let mut frames: Vec<Vec<u8>> = frames.into_iter().map(|f| f.into_vec()).collect();
            if frames.len() > engine.max_frames() {
                let keep = even_indices(frames.len(), engine.max_frames());
                frames = keep.into_iter().map(|i| std::mem::take(&mut frames[i])).collect();
            }
            Frames::from_rgba_frames(&frames, width, height, &pre)
                .map_err(|e| format!("The video frames could not be used ({e})."))?
        }
    };
    let tokenizer = engine.tokenizer();
    let mut on_tokens = |tokens: &[u32]| {
        if let Ok(text) = tokenizer.decode_caption(tokens) {
            post(&FromWorker::Partial { id, text });
        }
    };
    let generated = engine
        .caption(&input, &opts, &mut on_tokens)
        .await
        .map_err(|e| format!("Captioning failed: {e}"))?;
    let text = tokenizer
        .decode_caption(&generated.tokens)
        .map_err(|e| e.to_string())?;
    let caption = Caption {
        text,
        ms: now_ms() - started,
        backend: engine.backend_name().into(),
        frames: input.frames.len() as u32,
        tokens: generated.tokens,
    };
    LAST_CAPTION.with(|last| {
        *last.borrow_mut() = Some(Rc::new(LastCaption {
            id,
            frames: input,
            tokens: caption.tokens.clone(),
        }))
    });
    Ok(FromWorker::Done { id, caption })
}

/// Each token's rollout map over the frames of caption request `caption` (the latest one),
/// computed by the engine that captioned it.
async fn word_maps(id: RequestId, caption: RequestId) -> Result<FromWorker, String> {
    let engine = ENGINE
        .with(|cell| cell.borrow().clone())
        .ok_or("No model is loaded yet.")?;
    let last = LAST_CAPTION
        .with(|cell| cell.borrow().clone())
        .filter(|last| last.id == caption)
        .ok_or("That caption is no longer held by the captioning engine; caption the picture again.")?;
    let LastCaption { frames, tokens, .. } = &*last;
    // As `native caption --attention-maps`: eos left out.
    let eos = engine
        .config()
        .text_config()
        .map_err(|e| e.to_string())?
        .eos_token_id;
    let tokens: Vec<u32> = tokens.iter().copied().filter(|&t| t != eos).collect();
    if tokens.is_empty() {
        return Err("The caption has no words to map.".into());
    }
    let started = now_ms();
    let maps = engine
        .word_maps(frames, &tokens)
        .await
        .map_err(|e| format!("Where the words looked could not be computed: {e}"))?;
    let texts = token_texts(engine.tokenizer(), &tokens).map_err(|e| e.to_string())?;
    let (rows, cols) = grid_shape(engine.config()).map_err(|e| e.to_string())?;
    let tokens = maps
        .into_iter()
        .zip(&texts)
        .enumerate()
        .map(|(i, (map, text))| TokenMap {
            id: map.token,
            text: text.text.clone(),
            starts_word: i > 0 && !text.text.is_empty() && text.word_index != texts[i - 1].word_index,
            frame_weights: map.frame_weights,
            grids: map.frames.into_iter().map(|g| g.values).collect(),
        })
        .collect();
    Ok(FromWorker::WordMaps {
        id,
        maps: WordMaps {
            caption,
            method: "rollout".into(),
            rows: rows as u32,
            cols: cols as u32,
            tokens,
            ms: now_ms() - started,
            backend: engine.backend_name().into(),
        },
    })
}
