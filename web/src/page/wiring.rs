//! The page's controls, bound: file inputs, drop and paste, the camera, the scene button, the
//! decoding settings, "Copy as alt text", the word maps' switch, and "Load another model" (by URL or local folder).

use std::future::Future;

use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{ClipboardEvent, DragEvent, EventTarget, File, FileList, HtmlElement, HtmlInputElement, Url};

use super::captioning::{self, caption_file};
use super::{dom, model_box, model_files, word_maps, Page};

#[wasm_bindgen]
extern "C" {
    /// A file of a folder the user picked (`<input webkitdirectory>`).
    #[wasm_bindgen(extends = File)]
    type PickedFile;
    /// Its path inside that folder, the folder's name first.
    #[wasm_bindgen(method, getter, js_name = webkitRelativePath)]
    fn webkit_relative_path(this: &PickedFile) -> String;
}

/// Runs `task` when `#id` fires `kind`.
fn on_id<F: Future<Output = ()> + 'static>(id: &str, kind: &'static str, task: impl Fn() -> F + 'static) {
    dom::on(&dom::el::<EventTarget>(id), kind, move |_| spawn_local(task()));
}

fn files_of(list: Option<FileList>) -> Vec<File> {
    let Some(list) = list else { return Vec::new() };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// Binds every control of the page.
pub fn wire(page: &'static Page) {
    for id in ["file", "video-file"] {
        let input: HtmlInputElement = dom::el(id);
        on_id(id, "change", move || {
            let input = input.clone();
            async move {
                if let Some(file) = files_of(input.files()).into_iter().next() {
                    caption_file(page, file).await;
                }
                input.set_value("");
            }
        });
    }
    on_id("scene", "click", move || async move {
        if let Err(why) = captioning::random_scene(page).await {
            dom::show_error(&why);
        }
    });
    on_id("camera", "click", move || captioning::open_camera(page));
    on_id("camera-stop", "click", move || async move {
        captioning::close_camera(page)
    });
    on_id("snap", "click", move || async move {
        if let Err(why) = captioning::snap(page).await {
            dom::show_error(&why);
        }
    });
    on_id("strategy", "change", || async {
        captioning::update_settings_visibility()
    });
    captioning::update_settings_visibility();
    wire_drop_and_paste(page);
    on_id("copy", "click", copy_caption);
    on_id("maps-toggle", "change", move || word_maps::toggled(page));
    word_maps::wire(page);
    wire_other_model(page);
}

/// A file dropped on the drop zone or pasted anywhere is captioned.
fn wire_drop_and_paste(page: &'static Page) {
    let drop: HtmlElement = dom::el("drop");
    let zone = drop.clone();
    dom::on(&drop, "dragover", move |e| {
        e.prevent_default();
        let _ = zone.class_list().add_1("over");
    });
    let zone = drop.clone();
    dom::on(&drop, "dragleave", move |_| {
        let _ = zone.class_list().remove_1("over");
    });
    let zone = drop.clone();
    dom::on(&drop, "drop", move |e| {
        e.prevent_default();
        let _ = zone.class_list().remove_1("over");
        let files = e
            .dyn_ref::<DragEvent>()
            .and_then(|e| e.data_transfer())
            .and_then(|d| d.files());
        if let Some(file) = files_of(files).into_iter().next() {
            spawn_local(caption_file(page, file));
        }
    });
    dom::on(&dom::document(), "paste", move |e| {
        let files = e
            .dyn_ref::<ClipboardEvent>()
            .and_then(|e| e.clipboard_data())
            .and_then(|d| d.files());
        if let Some(file) = files_of(files).into_iter().next() {
            e.prevent_default();
            spawn_local(caption_file(page, file));
        }
    });
}

/// "Copy as alt text": the caption onto the clipboard; the button says "Copied" for 1.5 s.
async fn copy_caption() {
    let button: HtmlElement = dom::el("copy");
    let text = dom::el::<HtmlElement>("caption")
        .text_content()
        .unwrap_or_default();
    let window = dom::window();
    // The Clipboard API exists only in secure contexts (https, localhost).
    let copied = window.is_secure_context()
        && JsFuture::from(window.navigator().clipboard().write_text(&text))
            .await
            .is_ok();
    if copied {
        button.set_text_content(Some("Copied"));
    } else {
        dom::show_error("The browser did not allow copying; select the caption and copy it by hand.");
    }
    TimeoutFuture::new(1_500).await;
    button.set_text_content(Some("Copy as alt text"));
}

/// "Load another model": a folder URL on this site, or a folder on this computer.
fn wire_other_model(page: &'static Page) {
    dom::on(&dom::el::<EventTarget>("model-url-form"), "submit", move |e| {
        e.prevent_default();
        let here = dom::window().location();
        let typed = dom::el::<HtmlInputElement>("model-url").value();
        let typed = if typed.trim().is_empty() {
            "."
        } else {
            typed.trim()
        };
        let Ok(url) = Url::new_with_base(typed, &here.href().unwrap_or_default()) else {
            return dom::show_error("That is not a web address.");
        };
        if Some(url.origin()) != here.origin().ok() {
            return dom::show_error(
                "For your privacy this page only loads models from its own site. Download the folder and use “a folder on this computer” instead.",
            );
        }
        if !url.pathname().ends_with('/') {
            url.set_pathname(&format!("{}/", url.pathname()));
        }
        let href = url.href();
        spawn_local(model_box::load_model(
            page,
            async move { model_files::fetch_model(&href).await },
            url.pathname(),
        ));
    });
    let folder: HtmlInputElement = dom::el("model-folder");
    on_id("model-folder", "change", move || {
        let files = files_of(folder.files());
        let name = files
            .first()
            .map(|f| f.unchecked_ref::<PickedFile>().webkit_relative_path())
            .and_then(|p| p.split('/').next().map(str::to_string))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "folder".into());
        model_box::load_model(page, model_files::read_local_folder(files), format!("“{name}”"))
    });
}
