//! "Show where each word looked": with the switch on, a finished caption's tokens become
//! buttons, and hovering, focusing or tapping one lays its attention map over the picture (for
//! a video, over the frame the map weighs most, which the video seeks to). The maps are asked
//! for only while the switch is on (`ToWorker::WordMaps`, after the caption); with it off a
//! caption sends nothing more than before.
//!
//! The overlay covers the centre square of the picture, which is what the model sees (shortest
//! edge resized, centre crop): one translucent cell per patch, stronger where the word looked
//! more. It carries its grid as `data-grid` (the values, comma-separated), for the browser test.

use wasm_bindgen::JsCast;
use web_sys::{Element, Event, HtmlElement, HtmlImageElement, HtmlInputElement, HtmlVideoElement};

use super::bridge::UNEXPECTED;
use super::{dom, Page};
use crate::protocol::{FromWorker, RequestId, ToWorker, WordMaps};

/// Opacity of a cell at the map's peak (the CLI's sheet uses the same).
const PEAK_ALPHA: f32 = 0.65;

/// The caption on show: its request and text, and a video's seek times (none for a picture).
#[derive(Debug, Clone)]
pub struct ShownCaption {
    /// The caption request's id (the worker keeps that caption's frames).
    pub request: RequestId,
    /// The caption's text.
    pub text: String,
    /// Seek time of each frame, for a video.
    pub frame_times: Option<Vec<f64>>,
}

/// Whether the switch is on.
fn switched_on() -> bool {
    dom::el::<HtmlInputElement>("maps-toggle").checked()
}

/// Sets the maps' status line (read out politely by screen readers).
fn say(text: &str) {
    dom::set_text("maps-status", text);
}

/// A new caption is on its way: the old one's maps, words and overlay go.
pub fn forget(page: &Page) {
    page.shown.replace(None);
    page.maps.replace(None);
    dom::el::<HtmlElement>("caption").dataset().delete("maps");
    hide_overlay();
    say("");
}

/// A caption is done: remember it, and with the switch on, ask for its maps and show its words.
pub async fn caption_done(page: &'static Page, shown: ShownCaption) {
    page.shown.replace(Some(shown));
    if switched_on() {
        fetch_and_show(page).await;
    }
}

/// The switch moved: on, the shown caption's maps are fetched (once) and its words become
/// buttons; off, the caption is plain text again.
pub async fn toggled(page: &'static Page) {
    if !switched_on() {
        plain_caption(page);
        hide_overlay();
        say("");
        return;
    }
    // A caption still running asks for its maps when it is done.
    if page.busy.get() || page.shown.borrow().is_none() {
        return say("Captions will show where each word looked.");
    }
    page.set_busy(true);
    fetch_and_show(page).await;
    page.set_busy(false);
}

async fn fetch_and_show(page: &'static Page) {
    let Some(request) = page.shown.borrow().as_ref().map(|s| s.request) else {
        return;
    };
    let held = page.maps.borrow().as_ref().is_some_and(|m| m.caption == request);
    if !held {
        say("Computing where each word looked…");
        match ask_maps(page, request).await {
            Ok(maps) => {
                page.maps.replace(Some(maps));
            }
            Err(why) => return say(&why),
        }
    }
    // The switch may have gone off, or another caption started, while the maps were computed.
    let current = page.shown.borrow().as_ref().map(|s| s.request) == Some(request);
    if switched_on() && current {
        word_buttons(page);
    }
}

async fn ask_maps(page: &'static Page, caption: RequestId) -> Result<WordMaps, String> {
    match page
        .bridge
        .ask(|id| ToWorker::WordMaps { id, caption }, None)
        .await?
    {
        FromWorker::WordMaps { maps, .. } => Ok(maps),
        _ => Err(UNEXPECTED.into()),
    }
}

/// The caption as one button per token (a space before each token that starts a word, so the
/// text reads as before).
fn word_buttons(page: &Page) {
    let maps = page.maps.borrow();
    let Some(maps) = maps.as_ref() else { return };
    let caption: HtmlElement = dom::el("caption");
    caption.set_text_content(Some(""));
    for (i, token) in maps.tokens.iter().enumerate() {
        if token.starts_word {
            let _ = caption.append_with_str_1(" ");
        }
        let button: HtmlElement = dom::create("button");
        let _ = button.class_list().add_1("word");
        button.set_text_content(Some(&token.text));
        dom::set_data(&button, "index", &i.to_string());
        let _ = button.set_attribute("type", "button");
        let _ = button.set_attribute("aria-label", &format!("{}: show where it looked", token.text));
        let _ = caption.append_child(&button);
    }
    dom::set_data(&caption, "maps", &maps.tokens.len().to_string());
    dom::set_data(&dom::el("maps-status"), "ms", &maps.ms.to_string());
    say(&hint(maps));
}

/// What the status line says while no word is shown.
fn hint(maps: &WordMaps) -> String {
    format!(
        "Hover, focus or tap a word to see where it looked ({}, {} ms on {}).",
        maps.method,
        maps.ms.round() as i64,
        maps.backend
    )
}

/// The caption as plain text again.
fn plain_caption(page: &Page) {
    let caption: HtmlElement = dom::el("caption");
    if let Some(shown) = page.shown.borrow().as_ref() {
        caption.set_text_content(Some(&shown.text));
    }
    caption.dataset().delete("maps");
}

/// Binds the caption's word buttons (delegated: the buttons are remade with every caption).
pub fn wire(page: &'static Page) {
    let caption: Element = dom::el("caption");
    let word_of = |e: &Event| -> Option<usize> {
        let target = e.target()?.dyn_into::<Element>().ok()?;
        let word = target.closest("button.word").ok()??;
        word.unchecked_ref::<HtmlElement>()
            .dataset()
            .get("index")?
            .parse()
            .ok()
    };
    for kind in ["mouseover", "focusin", "click"] {
        dom::on(&caption, kind, move |e| {
            if let Some(i) = word_of(e) {
                show(page, i);
            }
        });
    }
    for kind in ["mouseout", "focusout"] {
        dom::on(&caption, kind, move |e| {
            if word_of(e).is_some() {
                hide_overlay();
                if let Some(maps) = page.maps.borrow().as_ref() {
                    say(&hint(maps));
                }
            }
        });
    }
}

/// Lays token `i`'s map over the picture (a video: over the frame it weighs most).
fn show(page: &Page, i: usize) {
    let held = page.maps.borrow();
    let Some((maps, token)) = held.as_ref().and_then(|m| Some((m, m.tokens.get(i)?))) else {
        return;
    };
    let frame = heaviest(&token.frame_weights);
    let Some(grid) = token.grids.get(frame) else {
        return;
    };
    let preview: HtmlElement = dom::el("preview");
    let media = match preview.query_selector("img, video").ok().flatten() {
        Some(media) => media.unchecked_into::<HtmlElement>(),
        None => return,
    };
    let frames = token.grids.len();
    if let Some(video) = media.dyn_ref::<HtmlVideoElement>() {
        let times = page.shown.borrow().as_ref().and_then(|s| s.frame_times.clone());
        if let Some(t) = times.and_then(|t| t.get(frame).copied()) {
            let _ = video.pause();
            video.set_current_time(t);
        }
    }
    let (rows, cols) = (maps.rows as usize, maps.cols as usize);
    let overlay = overlay_over(&preview, &media, rows, cols);
    fill_cells(&overlay, grid);
    let values: Vec<String> = grid.iter().map(f32::to_string).collect();
    dom::set_data(&overlay, "grid", &values.join(","));
    dom::set_data(&overlay, "rows", &rows.to_string());
    dom::set_data(&overlay, "cols", &cols.to_string());
    dom::set_data(&overlay, "token", &i.to_string());
    dom::set_data(&overlay, "frame", &frame.to_string());
    let peak = heaviest(grid);
    let mut words = format!(
        "“{}” looked most at row {} of {}, column {} of {}",
        token.text,
        peak / cols.max(1) + 1,
        rows,
        peak % cols.max(1) + 1,
        cols
    );
    if frames > 1 {
        words += &format!(
            ", in frame {} of {frames} ({:.0} % of its attention)",
            frame + 1,
            100.0 * token.frame_weights[frame]
        );
    }
    words.push('.');
    let _ = overlay.set_attribute("aria-label", &words);
    say(&words);
}

/// Index of the largest value (the first on ties; 0 when empty).
fn heaviest(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// `#map-overlay`, placed over the centre square of `media`'s picture (made when missing), its
/// cells laid out `rows × cols`.
fn overlay_over(preview: &HtmlElement, media: &HtmlElement, rows: usize, cols: usize) -> HtmlElement {
    let overlay = dom::document()
        .get_element_by_id("map-overlay")
        .and_then(|e| e.dyn_into::<HtmlElement>().ok())
        .unwrap_or_else(|| {
            let overlay: HtmlElement = dom::create("div");
            overlay.set_id("map-overlay");
            let _ = overlay.set_attribute("role", "img");
            overlay
        });
    if overlay.parent_node().is_none() {
        let _ = preview.append_child(&overlay);
    }
    // The picture inside the element's box (object-fit: contain), then its centre square.
    let (bw, bh) = (f64::from(media.offset_width()), f64::from(media.offset_height()));
    let (nw, nh) = natural_size(media).unwrap_or((bw, bh));
    let scale = (bw / nw.max(1.0)).min(bh / nh.max(1.0));
    let (cw, ch) = (nw * scale, nh * scale);
    let side = cw.min(ch);
    let left = f64::from(media.offset_left()) + (bw - cw) / 2.0 + (cw - side) / 2.0;
    let top = f64::from(media.offset_top()) + (bh - ch) / 2.0 + (ch - side) / 2.0;
    let _ = overlay.set_attribute(
        "style",
        &format!(
            "left: {left}px; top: {top}px; width: {side}px; height: {side}px; \
             grid-template-rows: repeat({rows}, 1fr); grid-template-columns: repeat({cols}, 1fr)"
        ),
    );
    overlay
}

/// The picture's own size in pixels (an image's natural size, a video's frame size).
fn natural_size(media: &HtmlElement) -> Option<(f64, f64)> {
    let (w, h) = if let Some(img) = media.dyn_ref::<HtmlImageElement>() {
        (img.natural_width(), img.natural_height())
    } else {
        let video = media.dyn_ref::<HtmlVideoElement>()?;
        (video.video_width(), video.video_height())
    };
    (w > 0 && h > 0).then_some((f64::from(w), f64::from(h)))
}

/// One cell per patch, its opacity the value relative to the grid's largest.
fn fill_cells(overlay: &HtmlElement, grid: &[f32]) {
    let max = grid.iter().copied().fold(0f32, f32::max).max(f32::MIN_POSITIVE);
    overlay.set_text_content(Some(""));
    let peak = heaviest(grid);
    for (i, v) in grid.iter().enumerate() {
        let cell: HtmlElement = dom::create("div");
        let alpha = PEAK_ALPHA * v / max;
        let _ = cell.set_attribute("style", &format!("background: rgba(255, 40, 0, {alpha:.3})"));
        if i == peak {
            let _ = cell.class_list().add_1("peak");
        }
        let _ = overlay.append_child(&cell);
    }
}

/// Takes the overlay away.
fn hide_overlay() {
    if let Some(overlay) = dom::document().get_element_by_id("map-overlay") {
        overlay.remove();
    }
}
