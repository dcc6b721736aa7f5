//! Small page helpers: element lookup, text and data attributes, the error line, events.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use futures_channel::oneshot;
use gloo_events::{EventListener, EventListenerOptions};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Document, Event, EventTarget, HtmlElement, Window};

/// The page's window.
pub fn window() -> Window {
    web_sys::window().expect("the page runs in a window")
}

/// The page's document.
pub fn document() -> Document {
    window().document().expect("a window has a document")
}

/// `<body>`.
pub fn body() -> HtmlElement {
    document().body().expect("index.html has a body")
}

/// The element `#id` as a `T` (index.html has every id the page uses).
pub fn el<T: JsCast>(id: &str) -> T {
    document()
        .get_element_by_id(id)
        .and_then(|e| e.dyn_into::<T>().ok())
        .unwrap_or_else(|| panic!("index.html has no #{id} of the kind the page expects"))
}

/// A new element of `tag` as a `T`.
pub fn create<T: JsCast>(tag: &str) -> T {
    document()
        .create_element(tag)
        .ok()
        .and_then(|e| e.dyn_into::<T>().ok())
        .unwrap_or_else(|| panic!("the browser made no <{tag}>"))
}

/// Sets `#id`'s text.
pub fn set_text(id: &str, text: &str) {
    el::<HtmlElement>(id).set_text_content(Some(text));
}

/// Sets `data-<key>` of `element`.
pub fn set_data(element: &HtmlElement, key: &str, value: &str) {
    let _ = element.dataset().set(key, value);
}

/// Sets `<body data-state>` (the browser tests wait on it).
pub fn set_state(state: &str) {
    set_data(&body(), "state", state);
}

/// Shows `message` in the error line.
pub fn show_error(message: &str) {
    let error = el::<HtmlElement>("error");
    error.set_hidden(false);
    error.set_text_content(Some(message));
}

/// Clears the error line.
pub fn hide_error() {
    let error = el::<HtmlElement>("error");
    error.set_hidden(true);
    error.set_text_content(Some(""));
}

/// Calls `handler` on every `kind` event of `target`, for the page's whole life (the handler
/// may call `preventDefault`).
pub fn on(target: &EventTarget, kind: &'static str, handler: impl FnMut(&Event) + 'static) {
    EventListener::new_with_options(
        target,
        kind,
        EventListenerOptions::enable_prevent_default(),
        handler,
    )
    .forget();
}

/// Waits for the next `ok` event (true) or `fail` event (false) of `target`. The listeners are
/// added now, before the caller starts what fires them.
pub fn next_event(target: &EventTarget, ok: &'static str, fail: &'static str) -> impl Future<Output = bool> {
    let (tx, rx) = oneshot::channel();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let listen = |kind: &'static str, outcome: bool| {
        let tx = tx.clone();
        EventListener::once(target, kind, move |_| {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(outcome);
            }
        })
    };
    let listeners = (listen(ok, true), listen(fail, false));
    async move {
        let outcome = rx.await.unwrap_or(false);
        drop(listeners);
        outcome
    }
}

/// A thrown JS value in words: an `Error`'s message, else the value as text.
pub fn error_text(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}
