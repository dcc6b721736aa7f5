//! The page's decoding settings, as sent to the worker (a field of
//! [`crate::protocol::ToWorker::Caption`]), turned into decoder options.

#[cfg(feature = "engine")]
use caption_model::decode::{DecodeOptions, Strategy};
#[cfg(feature = "engine")]
use caption_model::{Error, ModelConfig, Result};
use serde::{Deserialize, Serialize};

/// Decoding settings as the page sends them (camelCase; every field optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// `greedy`, `beam` or `nucleus`.
    pub strategy: String,
    /// Beams kept by beam search.
    pub beam_width: usize,
    /// Sampling temperature (nucleus).
    pub temperature: f32,
    /// Probability mass kept (nucleus).
    pub top_p: f32,
    /// Random seed (nucleus).
    pub seed: u64,
    /// Most tokens per caption.
    pub max_length: usize,
    /// Never stop at eos (benchmarks: every caption gets `max_length` tokens).
    pub ignore_eos: bool,
}

impl Default for Settings {
    /// Greedy, 24 tokens; beam width 3, temperature 0.9, top-p 0.8 when switched to those.
    fn default() -> Self {
        Self {
            strategy: "greedy".into(),
            beam_width: 3,
            temperature: 0.9,
            top_p: 0.8,
            seed: 0,
            max_length: 24,
            ignore_eos: false,
        }
    }
}

#[cfg(feature = "engine")]
impl Settings {
    /// Parses settings written as JSON with the page's (camelCase) field names.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Decode(format!("decoding settings: {e}")))
    }

    /// Decoder options for a model of `cfg` (bos/eos from its text config, as `native caption`).
    pub fn options(&self, cfg: &ModelConfig) -> Result<DecodeOptions> {
        let strategy = match self.strategy.as_str() {
            "greedy" => Strategy::Greedy,
            "beam" => Strategy::Beam {
                width: self.beam_width,
            },
            "nucleus" => Strategy::Nucleus {
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: None,
                seed: self.seed,
            },
            other => {
                return Err(Error::Decode(format!(
                    "unknown decoding strategy `{other}` (greedy, beam or nucleus)"
                )))
            }
        };
        let t = cfg.text_config()?;
        let opts = DecodeOptions {
            strategy,
            max_length: self.max_length,
            bos: t.bos_token_id,
            eos: if self.ignore_eos { u32::MAX } else { t.eos_token_id },
        };
        opts.validate()?;
        Ok(opts)
    }
}

#[cfg(all(test, feature = "engine"))]
mod tests {
    use super::*;

    #[test]
    fn page_json_becomes_options() {
        let cfg = ModelConfig::default();
        let s = Settings::from_json(r#"{"strategy":"beam","beamWidth":4,"maxLength":12}"#).unwrap();
        let o = s.options(&cfg).unwrap();
        assert_eq!(o.strategy, Strategy::Beam { width: 4 });
        assert_eq!(o.max_length, 12);
        assert_eq!(o.eos, cfg.text_config().unwrap().eos_token_id);
        let s =
            Settings::from_json(r#"{"strategy":"nucleus","temperature":0.5,"topP":0.7,"seed":9}"#).unwrap();
        assert!(matches!(
            s.options(&cfg).unwrap().strategy,
            Strategy::Nucleus { top_p, seed: 9, .. } if top_p == 0.7
        ));
        assert_eq!(Settings::from_json("{}").unwrap(), Settings::default());
        assert!(Settings::from_json(r#"{"strategy":"best"}"#)
            .unwrap()
            .options(&cfg)
            .is_err());
        assert!(Settings::from_json(r#"{"beamWidth":0,"strategy":"beam"}"#)
            .unwrap()
            .options(&cfg)
            .is_err());
        assert!(Settings::from_json(r#"{"colour":1}"#).is_err());
        let s = Settings::from_json(r#"{"ignoreEos":true}"#).unwrap();
        assert_eq!(s.options(&cfg).unwrap().eos, u32::MAX);
    }
}
