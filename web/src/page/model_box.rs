//! The model box: loading a model folder into the worker and saying what was loaded (status
//! line, download progress, the engine's notice).

use std::future::Future;
use std::rc::Rc;

use web_sys::{HtmlElement, HtmlInputElement, HtmlProgressElement};

use super::model_files::{Fetched, Source};
use super::{dom, Page};
use crate::protocol::LoadedModel;

/// Shows the progress bar at `done` of `total` bytes, with `status` as the status line.
pub fn progress(done: f64, total: f64, status: &str) {
    let bar: HtmlProgressElement = dom::el("progress");
    bar.set_hidden(false);
    bar.set_max(if total > 0.0 { total } else { 1.0 });
    bar.set_value(done);
    dom::set_text("model-status", status);
}

/// Reads a model folder with `files`, loads it into the worker and shows what was loaded (or
/// why not; a model loaded before stays loaded). `label` names the folder in the status line.
pub async fn load_model(
    page: &'static Page,
    files: impl Future<Output = Result<Fetched, String>>,
    label: String,
) {
    page.set_busy(true);
    dom::set_state("loading");
    dom::hide_error();
    match load(page, files, &label).await {
        Ok(()) => dom::set_state("ready"),
        Err(why) => {
            dom::el::<HtmlElement>("progress").set_hidden(true);
            let loaded = page.bridge.loaded();
            dom::set_text(
                "model-status",
                if loaded {
                    "The previous model is still loaded."
                } else {
                    "No model is loaded."
                },
            );
            dom::set_state(if loaded { "ready" } else { "no-model" });
            dom::show_error(&why);
        }
    }
    page.set_busy(false);
}

async fn load(
    page: &'static Page,
    files: impl Future<Output = Result<Fetched, String>>,
    label: &str,
) -> Result<(), String> {
    let fetched = files.await?;
    dom::set_text("model-status", "Preparing the model…");
    let model = page.bridge.load(Rc::new(fetched.files)).await?;
    page.max_frames.set(model.max_frames);
    let frames: HtmlInputElement = dom::el("frames");
    frames.set_max(&model.max_frames.to_string());
    if frames
        .value()
        .trim()
        .parse::<f64>()
        .is_ok_and(|n| n > f64::from(model.max_frames))
    {
        frames.set_value(&model.max_frames.to_string());
    }
    dom::el::<HtmlElement>("progress").set_hidden(true);
    show_loaded(&model, label, fetched.source, fetched.offline);
    Ok(())
}

/// The status line, its `data-source`, and the engine's notice when it has one.
fn show_loaded(model: &LoadedModel, label: &str, source: Source, offline: bool) {
    let from = match source {
        Source::Cache => "from this browser's cache".to_string(),
        other => format!("from the {}", other.name()),
    };
    let offline = if offline { " (offline)" } else { "" };
    let status: HtmlElement = dom::el("model-status");
    status.set_text_content(Some(&format!(
        "Model {label} loaded {from}{offline}: {}. Engine: {}.",
        model.summary, model.backend
    )));
    dom::set_data(&status, "source", source.name());
    if let Some(notice) = &model.notice {
        let box_: HtmlElement = dom::el("notice");
        box_.set_hidden(false);
        box_.set_text_content(Some(notice));
    }
    // What the model knows, beside its name: the default model says it knows only shapes.
    let about: HtmlElement = dom::el("model-description");
    about.set_text_content(model.description.as_deref());
    about.set_hidden(model.description.is_none());
}
