//! The page's own wasm module. The page's logic is `web/app.js` with `web/js/` (it only moves
//! bytes between inputs, the Cache API and the worker); trunk needs one main Rust app per page,
//! and this small one keeps the model's code out of the page's thread. It marks the page as
//! started.

fn main() {
    #[cfg(target_arch = "wasm32")]
    {
        let _ = js_sys::Reflect::set(
            &js_sys::global(),
            &wasm_bindgen::JsValue::from_str("captionPageModule"),
            &wasm_bindgen::JsValue::TRUE,
        );
    }
}
