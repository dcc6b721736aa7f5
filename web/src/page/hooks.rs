//! `window.captioner`: hooks for the browser tests and benchmarks (`web/tests/browser.mjs`),
//! not used by the page itself.

use js_sys::{Array, Object, Promise, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::future_to_promise;

use super::bridge::UNEXPECTED;
use super::captioning::caption_image_bytes;
use super::{dom, Page};
use crate::protocol::{FromWorker, Input, ToWorker};
use crate::settings::Settings;

fn set(hooks: &Object, name: &str, function: JsValue) {
    let _ = js_sys::Reflect::set(hooks, &JsValue::from_str(name), &function);
}

/// Installs `window.captioner`.
pub fn install(page: &'static Page) {
    let hooks = Object::new();
    // `{kind, bytes, frameSize}` of the latest captioned input (`bytes`: the picture, or a video's
    // RGBA frames one after another).
    let last_input = Closure::<dyn Fn() -> JsValue>::new(move || {
        serde_wasm_bindgen::to_value(&*page.last_input.borrow()).unwrap_or(JsValue::NULL)
    });
    set(&hooks, "lastInput", last_input.into_js_value());
    // Seek times of the video in the preview's frames (null for a picture).
    let frame_times = Closure::<dyn Fn() -> JsValue>::new(move || {
        serde_wasm_bindgen::to_value(&*page.frame_times.borrow()).unwrap_or(JsValue::NULL)
    });
    set(&hooks, "frameTimes", frame_times.into_js_value());
    // Captions a picture's bytes as if chosen.
    let caption_bytes = Closure::<dyn Fn(JsValue) -> Promise>::new(move |bytes: JsValue| {
        let bytes = Uint8Array::new(&bytes).to_vec();
        future_to_promise(async move {
            caption_image_bytes(page, bytes, "").await;
            Ok(JsValue::UNDEFINED)
        })
    });
    set(&hooks, "captionBytes", caption_bytes.into_js_value());
    // Runs the engine out of memory: the page shows why and restarts it with the same model.
    let exhaust = Closure::<dyn Fn() -> Promise>::new(move || {
        future_to_promise(async move {
            match page.bridge.ask(|id| ToWorker::ExhaustMemory { id }, None).await {
                Ok(_) => Ok(JsValue::NULL),
                Err(words) => {
                    dom::show_error(&words);
                    Ok(JsValue::from_str(&words))
                }
            }
        })
    });
    set(&hooks, "exhaustMemory", exhaust.into_js_value());
    // ms of `runs` greedy captions of `tokens` tokens each (eos never taken) of a picture.
    let bench =
        Closure::<dyn Fn(JsValue, u32, usize) -> Promise>::new(move |bytes: JsValue, runs, tokens| {
            let bytes = Uint8Array::new(&bytes).to_vec();
            future_to_promise(async move {
                let times = Array::new();
                for _ in 0..runs {
                    let settings = Settings {
                        max_length: tokens,
                        ignore_eos: true,
                        ..Settings::default()
                    };
                    let input = Input::Image { bytes: bytes.clone() };
                    match page
                        .bridge
                        .ask(|id| ToWorker::Caption { id, settings, input }, None)
                        .await
                    {
                        Ok(FromWorker::Done { caption, .. }) => times.push(&JsValue::from_f64(caption.ms)),
                        Ok(_) => return Err(JsValue::from_str(UNEXPECTED)),
                        Err(why) => return Err(JsValue::from_str(&why)),
                    };
                }
                Ok(times.into())
            })
        });
    set(&hooks, "bench", bench.into_js_value());
    // The current Worker (the test of malformed messages dispatches a message event on it).
    let worker = Closure::<dyn Fn() -> JsValue>::new(move || {
        page.bridge.worker().map(JsValue::from).unwrap_or(JsValue::NULL)
    });
    set(&hooks, "worker", worker.into_js_value());
    set(&dom::window(), "captioner", hooks.into());
}
