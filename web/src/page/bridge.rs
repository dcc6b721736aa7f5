//! The page's side of the Web Worker that runs the model: typed requests ([`ToWorker`]) with
//! ids, answers and streamed words ([`FromWorker`]), and a restart with the same model when the
//! worker dies (out of memory, a panic). Requests posted before the worker is ready wait in a
//! queue: a worker drops messages that arrive before its wasm has started.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use gloo_events::EventListener;
use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{ErrorEvent, MessageEvent, Worker};

use super::dom;
use crate::protocol::Backend;
use crate::protocol::{js, FolderFiles, FromWorker, LoadedModel, RequestId, ToWorker};

/// A request's answer, or why there is none, in words.
pub type Answer = Result<FromWorker, String>;

/// Called with each partial caption of a request.
pub type OnPartial = Box<dyn Fn(&str)>;

struct Pending {
    answer: oneshot::Sender<Answer>,
    on_partial: Option<OnPartial>,
}

/// The worker and the requests it has not answered yet.
pub struct Bridge {
    backend: Backend,
    worker: RefCell<Option<Worker>>,
    /// The current worker's `message` and `error` listeners.
    listeners: RefCell<Vec<EventListener>>,
    ready: Cell<bool>,
    queue: RefCell<Vec<(RequestId, JsValue, Array)>>,
    next_id: Cell<RequestId>,
    pending: RefCell<HashMap<RequestId, Pending>>,
    /// The loaded model's files, to load them again into a restarted worker.
    loaded: RefCell<Option<Rc<FolderFiles>>>,
}

impl Bridge {
    /// A bridge whose worker will run the model on `backend` (nothing starts yet).
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            worker: RefCell::new(None),
            listeners: RefCell::new(Vec::new()),
            ready: Cell::new(false),
            queue: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            pending: RefCell::new(HashMap::new()),
            loaded: RefCell::new(None),
        }
    }

    /// Starts a worker (trunk's loader for the `worker` binary, beside the page).
    pub fn start(&'static self) {
        let worker = match Worker::new("./worker_loader.js") {
            Ok(worker) => worker,
            Err(e) => {
                return dom::show_error(&format!(
                    "The captioning engine could not be started ({}).",
                    dom::error_text(&e)
                ))
            }
        };
        let on_message = EventListener::new(&worker, "message", move |e| {
            if let Some(e) = e.dyn_ref::<MessageEvent>() {
                self.on_message(e.data());
            }
        });
        let on_error = EventListener::new_with_options(
            &worker,
            "error",
            gloo_events::EventListenerOptions::enable_prevent_default(),
            move |e| {
                e.prevent_default();
                let message = e
                    .dyn_ref::<ErrorEvent>()
                    .map(|e| e.message())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "unknown error".into());
                // Not from inside this listener: the restart drops it.
                wasm_bindgen_futures::spawn_local(async move { self.crashed(&message) });
            },
        );
        self.ready.set(false);
        *self.listeners.borrow_mut() = vec![on_message, on_error];
        *self.worker.borrow_mut() = Some(worker);
    }

    /// The current worker (the browser test of malformed messages dispatches on it).
    pub fn worker(&self) -> Option<Worker> {
        self.worker.borrow().clone()
    }

    /// Whether a model is loaded.
    pub fn loaded(&self) -> bool {
        self.loaded.borrow().is_some()
    }

    /// Sends the request `make(id)` and waits for its answer; `on_partial` sees the caption
    /// while it is generated. An `Error` answer, a crash or an unreadable answer is `Err(words)`.
    pub async fn ask(
        &'static self,
        make: impl FnOnce(RequestId) -> ToWorker,
        on_partial: Option<OnPartial>,
    ) -> Answer {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (value, transfer) = js::encode(&make(id))?;
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(
            id,
            Pending {
                answer: tx,
                on_partial,
            },
        );
        if self.ready.get() {
            self.post(id, &value, &transfer);
        } else {
            self.queue.borrow_mut().push((id, value, transfer));
        }
        rx.await
            .unwrap_or_else(|_| Err("The captioning engine stopped before it answered.".into()))
    }

    /// Loads a model folder into the worker; on success the page keeps the files, to load them
    /// again after a restart.
    pub async fn load(&'static self, files: Rc<FolderFiles>) -> Result<LoadedModel, String> {
        let backend = self.backend;
        // The page keeps its own copy; the one sent is transferred.
        let copy = FolderFiles::clone(&files);
        match self
            .ask(
                |id| ToWorker::Load {
                    id,
                    backend,
                    files: copy,
                },
                None,
            )
            .await?
        {
            FromWorker::Loaded { model, .. } => {
                *self.loaded.borrow_mut() = Some(files);
                Ok(model)
            }
            _ => Err(UNEXPECTED.into()),
        }
    }

    fn post(&self, id: RequestId, value: &JsValue, transfer: &Array) {
        let sent = match &*self.worker.borrow() {
            Some(worker) => worker
                .post_message_with_transfer(value, transfer)
                .map_err(|e| dom::error_text(&e)),
            None => Err("no worker".into()),
        };
        if let Err(why) = sent {
            self.answer(
                id,
                Err(format!(
                    "The request could not be sent to the captioning engine ({why})."
                )),
            );
        }
    }

    fn answer(&self, id: RequestId, answer: Answer) {
        if let Some(pending) = self.pending.borrow_mut().remove(&id) {
            let _ = pending.answer.send(answer);
        }
    }

    fn on_message(&'static self, data: JsValue) {
        let message: FromWorker = match js::decode(data.clone()) {
            Ok(message) => message,
            Err(why) => {
                let words = format!("The captioning engine sent a message this page cannot read ({why}).");
                let waiting = js::request_id(&data).filter(|id| self.pending.borrow().contains_key(id));
                return match waiting {
                    Some(id) => self.answer(id, Err(words)),
                    None => dom::show_error(&words),
                };
            }
        };
        match message {
            FromWorker::Ready => {
                self.ready.set(true);
                let queued = std::mem::take(&mut *self.queue.borrow_mut());
                for (id, value, transfer) in queued {
                    self.post(id, &value, &transfer);
                }
            }
            FromWorker::Fatal { message } => {
                wasm_bindgen_futures::spawn_local(async move { self.crashed(&message) })
            }
            FromWorker::Partial { id, text } => {
                if let Some(Pending {
                    on_partial: Some(on_partial),
                    ..
                }) = self.pending.borrow().get(&id)
                {
                    on_partial(&text);
                }
            }
            FromWorker::Error { id: None, message } => dom::show_error(&message),
            FromWorker::Error {
                id: Some(id),
                message,
            } => self.answer(id, Err(message)),
            answer => {
                if let Some(id) = answer.id() {
                    self.answer(id, Ok(answer));
                }
            }
        }
    }

    /// The worker died: every waiting request fails with why, in words, and a new worker
    /// starts with the loaded model.
    fn crashed(&'static self, message: &str) {
        let lower = message.to_lowercase();
        let words = if ["memory", "unreachable", "allocation"]
            .iter()
            .any(|w| lower.contains(w))
        {
            "The captioning engine ran out of memory. It is being restarted; try a smaller picture or model."
                .to_string()
        } else {
            format!("The captioning engine stopped ({message}). It is being restarted.")
        };
        for (_, pending) in self.pending.borrow_mut().drain() {
            let _ = pending.answer.send(Err(words.clone()));
        }
        self.queue.borrow_mut().clear();
        if let Some(worker) = self.worker.borrow_mut().take() {
            worker.terminate();
        }
        self.listeners.borrow_mut().clear();
        self.start();
        let files = self.loaded.borrow().clone();
        if let Some(files) = files {
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(why) = self.load(files).await {
                    dom::show_error(&why);
                }
            });
        }
    }
}

/// An answer of the wrong kind (a worker of another version).
pub const UNEXPECTED: &str = "The captioning engine gave an answer of the wrong kind to a request.";
