//! What the fuzz targets share: the tiny model their seed files are made from.

/// A tiny model: every width a multiple of 32, so that every matrix is quantized.
pub const CONFIG: &str = r#"{
  "vision": {"pretrained_name": "scratch", "config": {"hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 16}},
  "mapper": {"mlp_dim": 32},
  "resampler": {"depth": 1, "dim_head": 16, "heads": 2, "num_latents": 2, "num_time_embeds": 2},
  "text": {"pretrained_name": "scratch", "xattn": {"dim_head": 16, "heads": 2, "freq": 1},
    "config": {"vocab_size": 32, "n_positions": 16, "n_embd": 32, "n_layer": 1, "n_head": 2,
      "bos_token_id": 1, "eos_token_id": 1}}
}"#;
