//! The messages between the page (`page/`) and the Web Worker (`worker.rs`), defined once for
//! both sides: [`ToWorker`] and [`FromWorker`]. Every request carries an id; the worker answers
//! it once ([`FromWorker::Loaded`], [`FromWorker::Done`], [`FromWorker::Scene`],
//! [`FromWorker::WordMaps`] or [`FromWorker::Error`]), after any number of
//! [`FromWorker::Partial`] captions.
//!
//! On wasm32 they cross `postMessage` as plain JS objects ([`js`]: serde-wasm-bindgen), with
//! every byte field (`serde_bytes`) a `Uint8Array` whose buffer is transferred, not copied. A
//! message that does not decode (a field missing, a wrong type) is an error in words on the
//! receiving side, never an exception.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::settings::Settings;

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The candle model on the CPU (wasm32 + SIMD128 in the browser).
    Cpu,
    /// The WebGPU engine (falls back to [`Backend::Cpu`], with a notice, without an adapter).
    WebGpu,
}

impl Backend {
    /// The `?backend=` query value: `cpu` forces the CPU engine; anything else (none, `auto`,
    /// `webgpu`) asks for WebGPU, which falls back to the CPU with a notice without an adapter.
    pub fn from_query(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "cpu" => Backend::Cpu,
            _ => Backend::WebGpu,
        }
    }
}

/// Pairs a request with its answer.
pub type RequestId = u32;

/// What the page asks the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToWorker {
    /// Load a model folder (answered by [`FromWorker::Loaded`]).
    Load {
        /// The request's id.
        id: RequestId,
        /// The engine asked for (WebGPU falls back to the CPU, with a notice).
        backend: Backend,
        /// The folder's three files.
        files: FolderFiles,
    },
    /// Caption a picture or a clip (answered by [`FromWorker::Partial`]s, then [`FromWorker::Done`]).
    Caption {
        /// The request's id.
        id: RequestId,
        /// Decoding settings.
        settings: Settings,
        /// What to caption.
        input: Input,
    },
    /// Render a synthetic scene (answered by [`FromWorker::Scene`]).
    Scene {
        /// The request's id.
        id: RequestId,
        /// The scene's seed.
        seed: u64,
    },
    /// Which frames of a video to caption and how large to draw them, by the rule `native
    /// caption` follows (`caption_model::frame_sampling`; answered by [`FromWorker::FramePlan`]).
    FramePlan {
        /// The request's id.
        id: RequestId,
        /// The video's duration in seconds, as the browser reports it.
        duration: f64,
        /// Its display width in pixels.
        width: u32,
        /// Its display height in pixels.
        height: u32,
        /// Frames asked for in the settings (clamped to what the model takes).
        requested: u32,
    },
    /// Where each word of a caption looked (answered by [`FromWorker::WordMaps`]): attention
    /// rollout over the picture or clip of the caption request `caption`, which must be the
    /// worker's latest caption (it keeps only that one's frames).
    WordMaps {
        /// The request's id.
        id: RequestId,
        /// The id of the caption request whose words are mapped.
        caption: RequestId,
    },
    /// Run the engine out of memory, for the browser test of the page's restart: no answer, the
    /// worker dies as it would on a model too large for wasm32.
    ExhaustMemory {
        /// The request's id.
        id: RequestId,
    },
}

/// A model folder's files, as `native export` writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderFiles {
    /// `manifest.json`.
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
    /// `model.safetensors`.
    #[serde(with = "serde_bytes")]
    pub model: Vec<u8>,
    /// The tokenizer file the manifest names.
    #[serde(with = "serde_bytes")]
    pub tokenizer: Vec<u8>,
}

/// One picture or one clip to caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Input {
    /// An image file's bytes (the worker decodes them as `native caption` does).
    Image {
        /// The file's bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Video frames as RGBA pixels, `width × height × 4` bytes each, in time order.
    Clip {
        /// The frames.
        frames: Vec<ByteBuf>,
        /// Width of every frame in pixels.
        width: u32,
        /// Height of every frame in pixels.
        height: u32,
    },
}

/// What the worker tells the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FromWorker {
    /// The worker's message loop runs; requests may be posted.
    Ready,
    /// A model is loaded.
    Loaded {
        /// The request answered.
        id: RequestId,
        /// What was loaded.
        model: LoadedModel,
    },
    /// The caption so far (the leading hypothesis), while it is generated.
    Partial {
        /// The request this belongs to.
        id: RequestId,
        /// The words so far.
        text: String,
    },
    /// A finished caption.
    Done {
        /// The request answered.
        id: RequestId,
        /// The caption.
        caption: Caption,
    },
    /// A rendered synthetic scene.
    Scene {
        /// The request answered.
        id: RequestId,
        /// The scene, PNG-encoded.
        #[serde(with = "serde_bytes")]
        png: Vec<u8>,
        /// What the training data says about it.
        description: String,
    },
    /// Where to seek and how large to draw the frames of a video.
    FramePlan {
        /// The request answered.
        id: RequestId,
        /// Seek times in seconds, in time order.
        times: Vec<f64>,
        /// Width of the drawn frames in pixels.
        width: u32,
        /// Height of the drawn frames in pixels.
        height: u32,
    },
    /// Each caption token's map over the frames (answer to [`ToWorker::WordMaps`]).
    WordMaps {
        /// The request answered.
        id: RequestId,
        /// The maps.
        maps: WordMaps,
    },
    /// A request failed; `message` says why in plain words.
    Error {
        /// The request answered (none when the request itself could not be read).
        id: Option<RequestId>,
        /// Why, in plain words.
        message: String,
    },
    /// The worker is about to die (a panic); the page restarts it.
    Fatal {
        /// What happened.
        message: String,
    },
}

impl FromWorker {
    /// The request this message belongs to, if any.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Self::Loaded { id, .. }
            | Self::Partial { id, .. }
            | Self::Done { id, .. }
            | Self::Scene { id, .. }
            | Self::FramePlan { id, .. }
            | Self::WordMaps { id, .. } => Some(*id),
            Self::Error { id, .. } => *id,
            Self::Ready | Self::Fatal { .. } => None,
        }
    }
}

/// A loaded model, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadedModel {
    /// The engine that runs it (e.g. "cpu (wasm32 simd128, 1 thread)").
    pub backend: String,
    /// Why another engine than the one asked for runs it, if one does.
    pub notice: Option<String>,
    /// Most frames a clip may have.
    pub max_frames: u32,
    /// Side of the model's input images in pixels.
    pub image_size: u32,
    /// The model's size in a few words.
    pub summary: String,
    /// What the model was trained on, from its manifest (plain text), if it says.
    pub description: Option<String>,
}

/// A finished caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caption {
    /// The caption's text.
    pub text: String,
    /// Token ids of the caption (eos excluded).
    pub tokens: Vec<u32>,
    /// Milliseconds from the request to the caption, in the worker.
    pub ms: f64,
    /// The engine that ran it.
    pub backend: String,
    /// Frames the caption was made from (1 for a picture).
    pub frames: u32,
}

/// Where each token of a caption looked, as `native caption --attention-maps` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WordMaps {
    /// The caption request these maps belong to.
    pub caption: RequestId,
    /// How they were computed (`rollout`).
    pub method: String,
    /// Patch rows of every grid.
    pub rows: u32,
    /// Patch columns of every grid.
    pub cols: u32,
    /// Per caption token (eos left out), in order.
    pub tokens: Vec<TokenMap>,
    /// Milliseconds the worker spent on them.
    pub ms: f64,
    /// The engine that computed them (the caption's: rollout runs on both engines).
    pub backend: String,
}

/// One caption token's map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenMap {
    /// The token id.
    pub id: u32,
    /// Its text, whitespace trimmed.
    pub text: String,
    /// Whether it starts a new word (a space goes before it, except first).
    pub starts_word: bool,
    /// Each frame's share of the token's map (sums to 1; `[1]` for a picture).
    pub frame_weights: Vec<f32>,
    /// One grid per frame, `rows × cols` values row-major, each summing to 1.
    pub grids: Vec<Vec<f32>>,
}

/// What [`request_id`] reads of a message: `{"<kind>": {"id": n, ..}}`.
#[derive(Debug, Deserialize)]
struct IdOnly {
    id: Option<RequestId>,
}

/// The request id of a message that does not decode as a whole, when it names one (so the
/// error can still go to the request that waits for its answer).
pub fn request_id<'de, D: serde::Deserializer<'de>>(message: D) -> Option<RequestId> {
    let kinds = std::collections::HashMap::<String, IdOnly>::deserialize(message).ok()?;
    kinds.into_values().next()?.id
}

/// Each side's messages cross `postMessage` through here (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub mod js {
    use js_sys::{Array, Object, Uint8Array};
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use wasm_bindgen::{JsCast, JsValue};

    use super::RequestId;

    /// `message` as a JS object, and the buffers of its byte fields to transfer with it (each is
    /// a fresh copy made by the serializer, so nothing else holds it).
    pub fn encode<T: Serialize>(message: &T) -> Result<(JsValue, Array), String> {
        let value = message
            .serialize(&serde_wasm_bindgen::Serializer::new())
            .map_err(|e| format!("a message could not be encoded ({e})"))?;
        let transfer = Array::new();
        collect_buffers(&value, &transfer);
        Ok((value, transfer))
    }

    /// Decodes a received message; a malformed one is an error naming what is wrong.
    pub fn decode<T: DeserializeOwned>(value: JsValue) -> Result<T, String> {
        serde_wasm_bindgen::from_value(value).map_err(|e| {
            // The error is a JS `Error`; its message alone reads best ("missing field `ms`").
            let error = JsValue::from(e);
            match error.dyn_ref::<js_sys::Error>() {
                Some(e) => String::from(e.message()),
                None => format!("{error:?}"),
            }
        })
    }

    /// The request id of a message that did not decode, when it has one.
    pub fn request_id(value: &JsValue) -> Option<RequestId> {
        super::request_id(serde_wasm_bindgen::Deserializer::from(value.clone()))
    }

    fn collect_buffers(value: &JsValue, out: &Array) {
        if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
            out.push(&bytes.buffer());
        } else if let Some(list) = value.dyn_ref::<Array>() {
            list.for_each(&mut |v, _, _| collect_buffers(&v, out));
        } else if value.is_object() {
            let values = Object::values(value.unchecked_ref());
            values.for_each(&mut |v, _, _| collect_buffers(&v, out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_query() {
        assert_eq!(Backend::from_query(None), Backend::WebGpu);
        assert_eq!(Backend::from_query(Some("auto")), Backend::WebGpu);
        assert_eq!(Backend::from_query(Some(" CPU ")), Backend::Cpu);
        assert_eq!(Backend::from_query(Some("WebGPU")), Backend::WebGpu);
        assert_eq!(Backend::from_query(Some("tpu")), Backend::WebGpu);
    }

    #[test]
    fn messages_round_trip_with_their_field_names() {
        let done = FromWorker::Done {
            id: 7,
            caption: Caption {
                text: "a red circle".into(),
                tokens: vec![64, 2266, 9197],
                ms: 12.5,
                backend: "cpu".into(),
                frames: 1,
            },
        };
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(
            json["done"]["caption"]["tokens"],
            serde_json::json!([64, 2266, 9197])
        );
        assert_eq!(serde_json::from_value::<FromWorker>(json).unwrap(), done);
        assert_eq!(done.id(), Some(7));

        let load = ToWorker::Load {
            id: 1,
            backend: Backend::Cpu,
            files: FolderFiles {
                manifest: b"{}".to_vec(),
                model: vec![0, 255],
                tokenizer: vec![],
            },
        };
        let json = serde_json::to_value(&load).unwrap();
        assert_eq!(json["load"]["backend"], "cpu");
        assert_eq!(serde_json::from_value::<ToWorker>(json).unwrap(), load);

        let caption = ToWorker::Caption {
            id: 2,
            settings: Settings::default(),
            input: Input::Clip {
                frames: vec![ByteBuf::from(vec![1, 2, 3, 4])],
                width: 1,
                height: 1,
            },
        };
        let json = serde_json::to_string(&caption).unwrap();
        assert_eq!(serde_json::from_str::<ToWorker>(&json).unwrap(), caption);

        let ask = ToWorker::WordMaps { id: 3, caption: 2 };
        let json = serde_json::to_value(&ask).unwrap();
        assert_eq!(json, serde_json::json!({"wordMaps": {"id": 3, "caption": 2}}));
        let maps = FromWorker::WordMaps {
            id: 3,
            maps: WordMaps {
                caption: 2,
                method: "rollout".into(),
                rows: 1,
                cols: 2,
                tokens: vec![TokenMap {
                    id: 64,
                    text: "a".into(),
                    starts_word: false,
                    frame_weights: vec![1.0],
                    grids: vec![vec![0.25, 0.75]],
                }],
                ms: 1.5,
                backend: "cpu".into(),
            },
        };
        let json = serde_json::to_value(&maps).unwrap();
        assert_eq!(json["wordMaps"]["maps"]["tokens"][0]["startsWord"], false);
        assert_eq!(
            json["wordMaps"]["maps"]["tokens"][0]["frameWeights"],
            serde_json::json!([1.0])
        );
        assert_eq!(serde_json::from_value::<FromWorker>(json).unwrap(), maps);
        assert_eq!(maps.id(), Some(3));
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = serde_json::from_str::<FromWorker>(r#"{"done":{"id":3,"caption":{"text":"x"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `tokens`"), "{err}");
        let err = serde_json::from_str::<FromWorker>(r#"{"loaded":{"model":{}}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
        let id_of = |json: &str| request_id(&mut serde_json::Deserializer::from_str(json));
        assert_eq!(id_of(r#"{"done":{"id":3,"caption":{}}}"#), Some(3));
        assert_eq!(id_of(r#"{"done":{"caption":{}}}"#), None);
        assert_eq!(id_of(r#""ready""#), None);
    }
}
