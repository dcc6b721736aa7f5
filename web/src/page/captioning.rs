//! Captioning: the decoding settings, pictures (chosen, dropped, pasted, from the camera),
//! video frames, synthetic scenes; words are shown as the worker streams them.

use js_sys::{Array, Uint8Array};
use serde_bytes::ByteBuf;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, CanvasRenderingContext2d, ContextAttributes2d, File, HtmlButtonElement,
    HtmlCanvasElement, HtmlElement, HtmlImageElement, HtmlInputElement, HtmlSelectElement, HtmlVideoElement,
    MediaStream, MediaStreamConstraints, MediaStreamTrack, Url,
};

use super::bridge::UNEXPECTED;
use super::word_maps::{self, ShownCaption};
use super::{dom, LastInput, Page};
use crate::protocol::{Caption, FromWorker, Input, RequestId, ToWorker};
use crate::settings::Settings;

/// The decoding settings of the settings box; a field that is not a number is an error in words.
fn read_settings() -> Result<Settings, String> {
    let number = |id: &str, what: &str| {
        let value = dom::el::<HtmlInputElement>(id).value();
        value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{what} must be a number, not “{value}”."))
    };
    let count = |id: &str, what: &str| {
        number(id, what).and_then(|v| {
            (v >= 0.0 && v.fract() == 0.0)
                .then_some(v as usize)
                .ok_or_else(|| format!("{what} must be a whole number, not {v}."))
        })
    };
    Ok(Settings {
        strategy: dom::el::<HtmlSelectElement>("strategy").value(),
        beam_width: count("beam-width", "Beam width")?,
        temperature: number("temperature", "Temperature")? as f32,
        top_p: number("top-p", "Top-p")? as f32,
        max_length: count("max-length", "Max tokens")?,
        seed: (js_sys::Math::random() * 1e9).floor() as u64,
        ignore_eos: false,
    })
}

/// Shows only the settings of the chosen strategy.
pub fn update_settings_visibility() {
    let strategy = dom::el::<HtmlSelectElement>("strategy").value();
    let Ok(labels) = dom::document().query_selector_all("#settings [data-for]") else {
        return;
    };
    for i in 0..labels.length() {
        if let Some(label) = labels.item(i).and_then(|n| n.dyn_into::<HtmlElement>().ok()) {
            label.set_hidden(label.dataset().get("for").as_deref() != Some(strategy.as_str()));
        }
    }
}

/// Captions `input` with the current settings, showing the words as they come, then the
/// caption, its timing and engine (or the error, in words).
async fn run_caption(page: &'static Page, input: Input) {
    if !page.bridge.loaded() {
        return dom::show_error("No model is loaded yet.");
    }
    if page.busy.get() {
        return dom::show_error("Still working on the previous caption; try again in a moment.");
    }
    page.set_busy(true);
    dom::hide_error();
    word_maps::forget(page);
    let caption: HtmlElement = dom::el("caption");
    dom::set_data(&caption, "state", "running");
    caption.set_text_content(Some("…"));
    dom::set_text("timing", "");
    let copy: HtmlButtonElement = dom::el("copy");
    copy.set_disabled(true);
    match ask_caption(page, input).await {
        Ok((request, done)) => {
            caption.set_text_content(Some(&done.text));
            let tokens: Vec<String> = done.tokens.iter().map(u32::to_string).collect();
            dom::set_data(&caption, "tokens", &tokens.join(","));
            dom::set_data(&caption, "state", "done");
            let what = if done.frames > 1 {
                format!("{} video frames", done.frames)
            } else {
                "one picture".into()
            };
            let timing: HtmlElement = dom::el("timing");
            timing.set_text_content(Some(&format!(
                "{} ms for {what}, {} tokens, on {}",
                done.ms.round() as i64,
                done.tokens.len(),
                done.backend
            )));
            dom::set_data(&timing, "ms", &done.ms.to_string());
            copy.set_disabled(false);
            let shown = ShownCaption {
                request,
                text: done.text,
                frame_times: page.frame_times.borrow().clone(),
            };
            word_maps::caption_done(page, shown).await;
        }
        Err(why) => {
            dom::set_data(&caption, "state", "error");
            caption.set_text_content(Some(""));
            dom::show_error(&why);
        }
    }
    page.set_busy(false);
}

/// The caption of `input`, and its request's id.
async fn ask_caption(page: &'static Page, input: Input) -> Result<(RequestId, Caption), String> {
    let settings = read_settings()?;
    let caption: HtmlElement = dom::el("caption");
    let on_partial = Box::new(move |text: &str| {
        caption.set_text_content(Some(if text.is_empty() { "…" } else { text }));
    });
    match page
        .bridge
        .ask(|id| ToWorker::Caption { id, settings, input }, Some(on_partial))
        .await?
    {
        FromWorker::Done { id, caption } => Ok((id, caption)),
        _ => Err(UNEXPECTED.into()),
    }
}

/// Shows a picture's bytes in the preview (or says the browser cannot show them).
fn show_picture(page: &'static Page, bytes: &[u8], mime: &str) {
    let parts = Array::of1(&Uint8Array::from(bytes));
    let options = BlobPropertyBag::new();
    options.set_type(mime);
    let Ok(url) = Blob::new_with_u8_array_sequence_and_options(&parts, &options)
        .and_then(|blob| Url::create_object_url_with_blob(&blob))
    else {
        return;
    };
    let img: HtmlImageElement = dom::create("img");
    img.set_alt("The picture being captioned");
    let shown = img.clone();
    let on_error = gloo_events::EventListener::once(&img, "error", move |_| {
        let _ = shown.replace_with_with_str_1("(this browser cannot show the file)");
    });
    *page.preview_listener.borrow_mut() = Some(on_error);
    img.set_src(&url);
    dom::el::<HtmlElement>("preview").replace_children_with_node_1(&img);
    page.frame_times.replace(None);
}

/// Captions a picture's file bytes (`mime` is its type, possibly empty).
pub async fn caption_image_bytes(page: &'static Page, bytes: Vec<u8>, mime: &str) {
    dom::el::<HtmlElement>("scene-description").set_hidden(true);
    *page.last_input.borrow_mut() = Some(LastInput {
        kind: "image",
        bytes: Some(ByteBuf::from(bytes.clone())),
        frame_size: None,
    });
    show_picture(page, &bytes, mime);
    run_caption(page, Input::Image { bytes }).await;
}

/// Captions a chosen, dropped or pasted file: a picture or a video.
pub async fn caption_file(page: &'static Page, file: File) {
    let mime = file.type_();
    if mime.starts_with("video/") {
        return caption_video(page, file).await;
    }
    if !mime.is_empty() && !mime.starts_with("image/") {
        return dom::show_error(&format!(
            "“{}” is not a picture or a video ({mime}).",
            file.name()
        ));
    }
    let name = file.name();
    match gloo_file::futures::read_as_bytes(&gloo_file::File::from(file)).await {
        Ok(bytes) => caption_image_bytes(page, bytes, &mime).await,
        Err(e) => dom::show_error(&format!("“{name}” could not be read ({e}).")),
    }
}

/// A 2D context that is read back often (video frames, camera pictures).
fn context_2d(canvas: &HtmlCanvasElement) -> Result<CanvasRenderingContext2d, String> {
    let options = ContextAttributes2d::new();
    options.set_will_read_frequently(true);
    canvas
        .get_context_with_context_options("2d", &options)
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into().ok())
        .ok_or_else(|| "This browser gave no 2D canvas.".to_string())
}

/// The frames of `file` that the worker's frame plan picks (the rule `native caption` follows),
/// as RGBA pixels, with their size; the video stays in the preview.
async fn video_frames(
    page: &'static Page,
    file: &File,
    count: usize,
) -> Result<(Vec<ByteBuf>, u32, u32), String> {
    let failed = || {
        format!(
            "“{}” could not be decoded as a video by this browser.",
            file.name()
        )
    };
    let url = Url::create_object_url_with_blob(file).map_err(|_| failed())?;
    let video: HtmlVideoElement = dom::create("video");
    video.set_muted(true);
    video.set_preload("auto");
    video.set_controls(true);
    let loaded = dom::next_event(&video, "loadeddata", "error");
    video.set_src(&url);
    dom::el::<HtmlElement>("preview").replace_children_with_node_1(&video);
    page.frame_times.replace(None);
    if !loaded.await {
        return Err(failed());
    }
    let (duration, width, height) = (video.duration(), video.video_width(), video.video_height());
    if !duration.is_finite() || duration <= 0.0 || width == 0 || height == 0 {
        return Err(failed());
    }
    let ask = |id| ToWorker::FramePlan {
        id,
        duration,
        width,
        height,
        requested: count as u32,
    };
    let FromWorker::FramePlan {
        times, width, height, ..
    } = page.bridge.ask(ask, None).await?
    else {
        return Err(UNEXPECTED.into());
    };
    let canvas: HtmlCanvasElement = dom::create("canvas");
    canvas.set_width(width);
    canvas.set_height(height);
    let ctx = context_2d(&canvas)?;
    let (w, h) = (f64::from(width), f64::from(height));
    let mut frames = Vec::with_capacity(times.len());
    for &t in &times {
        let seeked = dom::next_event(&video, "seeked", "error");
        video.set_current_time(t);
        if !seeked.await {
            return Err(failed());
        }
        let pixels = ctx
            .draw_image_with_html_video_element_and_dw_and_dh(&video, 0.0, 0.0, w, h)
            .and_then(|()| ctx.get_image_data(0.0, 0.0, w, h))
            .map_err(|e| format!("A video frame could not be read ({}).", dom::error_text(&e)))?;
        frames.push(ByteBuf::from(pixels.data().0));
    }
    page.frame_times.replace(Some(times));
    Ok((frames, width, height))
}

async fn caption_video(page: &'static Page, file: File) {
    if !page.bridge.loaded() {
        return dom::show_error("No model is loaded yet.");
    }
    dom::el::<HtmlElement>("scene-description").set_hidden(true);
    dom::hide_error();
    let wanted = dom::el::<HtmlInputElement>("frames")
        .value()
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n != 0.0)
        .unwrap_or(8.0);
    let count = wanted.min(f64::from(page.max_frames.get())).max(1.0).ceil() as usize;
    match video_frames(page, &file, count).await {
        Ok((frames, width, height)) => {
            *page.last_input.borrow_mut() = Some(LastInput {
                kind: "video",
                bytes: Some(ByteBuf::from(
                    frames.iter().flat_map(|f| f.iter().copied()).collect::<Vec<u8>>(),
                )),
                frame_size: Some((width, height)),
            });
            run_caption(
                page,
                Input::Clip {
                    frames,
                    width,
                    height,
                },
            )
            .await;
        }
        Err(why) => {
            dom::set_data(&dom::el("caption"), "state", "error");
            dom::show_error(&why);
        }
    }
}

/// Asks the worker for a random synthetic scene, shows it with its description, captions it.
pub async fn random_scene(page: &'static Page) -> Result<(), String> {
    let seed = (js_sys::Math::random() * 4_294_967_296.0).floor() as u64;
    let FromWorker::Scene { png, description, .. } =
        page.bridge.ask(|id| ToWorker::Scene { id, seed }, None).await?
    else {
        return Err(UNEXPECTED.into());
    };
    let about: HtmlElement = dom::el("scene-description");
    about.set_hidden(false);
    about.set_text_content(Some(&format!(
        "Scene #{seed}, drawn as the training data describes: “{description}”."
    )));
    *page.last_input.borrow_mut() = Some(LastInput {
        kind: "scene",
        bytes: Some(ByteBuf::from(png.clone())),
        frame_size: None,
    });
    show_picture(page, &png, "image/png");
    if let Ok(Some(img)) = dom::el::<HtmlElement>("preview").query_selector("img") {
        let _ = img.class_list().add_1("pixelated");
    }
    run_caption(page, Input::Image { bytes: png }).await;
    Ok(())
}

/// Opens the camera into the camera box.
pub async fn open_camera(page: &'static Page) {
    dom::hide_error();
    let constraints = MediaStreamConstraints::new();
    constraints.set_video_bool(true);
    constraints.set_audio_bool(false);
    let window = dom::window();
    let opened = async {
        if !window.is_secure_context() {
            return Err(JsValue::from_str("the page is not served over https"));
        }
        let devices = window.navigator().media_devices()?;
        JsFuture::from(devices.get_user_media_with_constraints(&constraints)?).await
    };
    match opened.await {
        Ok(stream) => {
            let stream: MediaStream = stream.unchecked_into();
            dom::el::<HtmlVideoElement>("camera-video").set_src_object(Some(&stream));
            *page.camera.borrow_mut() = Some(stream);
            dom::el::<HtmlElement>("camera-box").set_hidden(false);
        }
        Err(e) => {
            let refused = e
                .dyn_ref::<web_sys::DomException>()
                .is_some_and(|d| d.name() == "NotAllowedError");
            let why = if refused {
                "permission was refused".to_string()
            } else {
                dom::error_text(&e)
            };
            dom::show_error(&format!("The camera could not be opened ({why})."));
        }
    }
}

/// Stops the camera and hides its box.
pub fn close_camera(page: &'static Page) {
    if let Some(stream) = page.camera.borrow_mut().take() {
        for track in stream.get_tracks().iter() {
            track.unchecked_into::<MediaStreamTrack>().stop();
        }
    }
    dom::el::<HtmlElement>("camera-box").set_hidden(true);
}

/// Takes a picture from the camera (PNG) and captions it.
pub async fn snap(page: &'static Page) -> Result<(), String> {
    let video: HtmlVideoElement = dom::el("camera-video");
    let canvas: HtmlCanvasElement = dom::create("canvas");
    canvas.set_width(video.video_width());
    canvas.set_height(video.video_height());
    context_2d(&canvas)?
        .draw_image_with_html_video_element(&video, 0.0, 0.0)
        .map_err(|e| format!("The camera picture could not be drawn ({}).", dom::error_text(&e)))?;
    let (tx, rx) = futures_channel::oneshot::channel();
    let on_blob = Closure::once(move |blob: JsValue| {
        let _ = tx.send(blob.dyn_into::<Blob>().ok());
    });
    canvas
        .to_blob_with_type(on_blob.as_ref().unchecked_ref(), "image/png")
        .map_err(|e| {
            format!(
                "The camera picture could not be encoded ({}).",
                dom::error_text(&e)
            )
        })?;
    let blob = rx.await.ok().flatten().ok_or("The camera gave no picture.")?;
    let bytes = gloo_file::futures::read_as_bytes(&gloo_file::Blob::from(blob))
        .await
        .map_err(|e| format!("The camera picture could not be read ({e})."))?;
    caption_image_bytes(page, bytes, "image/png").await;
    Ok(())
}
