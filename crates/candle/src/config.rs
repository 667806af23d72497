//! The shape of a decoder, read from a GGUF's metadata or an HF `config.json`.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde_json::Value;

use crate::error::CandleError;

/// Decoder families this backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama (SmolLM2, Llama 2/3 without rope scaling): RMSNorm, SiLU-gated MLP, RoPE.
    Llama,
    /// Qwen2 (Qwen2.5): Llama with biases on the q/k/v projections.
    Qwen2,
    /// Gemma 3 text decoder: q/k norms, sandwich norms, GELU-tanh MLP, scaled embeddings,
    /// sliding-window attention on five layers of six.
    Gemma3,
}

/// Architecture names accepted, for error messages.
pub use crate::error::SUPPORTED;

impl Architecture {
    /// The GGUF `general.architecture` name.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Gemma3 => "gemma3",
        }
    }

    fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "gemma3" => Some(Architecture::Gemma3),
            _ => None,
        }
    }
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension i with i + d/2 (HF checkpoints; llama.cpp's NEOX type: Qwen2, Gemma 3).
    Halves,
    /// Dimensions 2i with 2i + 1 (llama.cpp's llama-type GGUFs, whose q/k rows the converter
    /// permuted).
    Interleaved,
}

/// Everything the decoder needs to know about its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Family.
    pub architecture: Architecture,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency (global layers).
    pub rope_theta: f64,
    /// RoPE base of sliding-window layers (Gemma 3: 10,000).
    pub rope_local_theta: Option<f64>,
    /// Linear RoPE scaling factor of global layers (positions divided by it), if any.
    pub rope_linear_factor: Option<f64>,
    /// How rotary embeddings pair dimensions.
    pub rope_style: RopeStyle,
    /// Keys a sliding-window layer sees: positions i − window < j ≤ i.
    pub sliding_window: Option<usize>,
    /// Every `sliding_pattern`-th layer is global, the others slide (Gemma 3: 6).
    pub sliding_pattern: usize,
    /// Multiplier of q·k.
    pub attention_scale: f64,
    /// Context the model was trained with.
    pub max_position: usize,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// Whether the tokenizer prefixes BOS by default.
    pub add_bos: bool,
}

impl DecoderConfig {
    /// Whether layer `layer` uses sliding-window attention.
    pub fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some()
            && self.sliding_pattern > 0
            && !(layer + 1).is_multiple_of(self.sliding_pattern)
    }

    /// Reads the metadata of a GGUF (`path` for error messages).
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self, CandleError> {
        let md = &content.metadata;
        let arch_name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| CandleError::MissingMetadata {
                key: "general.architecture".into(),
            })?;
        let architecture = Architecture::from_gguf(arch_name).ok_or_else(|| {
            CandleError::UnsupportedArchitecture {
                name: arch_name.clone(),
            }
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let uint = |k: &str| -> Result<usize, CandleError> {
            let full = key(k);
            let Some(v) = md.get(&full) else {
                return Err(CandleError::MissingMetadata { key: full });
            };
            v.to_u32()
                .map(|x| x as usize)
                .or_else(|_| v.to_u64().map(|x| x as usize))
                .map_err(|source| CandleError::MetadataType {
                    key: full,
                    source: source.into(),
                })
        };
        let float = |k: &str| -> Option<f64> {
            md.get(&key(k))
                .and_then(|v| v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok())
        };
        let token = |k: &str| -> Option<u32> { md.get(k).and_then(|v| v.to_u32().ok()) };
        let hidden_size = uint("embedding_length")?;
        let n_heads = uint("attention.head_count")?;
        let head_dim = uint("attention.key_length").unwrap_or(hidden_size / n_heads.max(1));
        let vocab_size = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims().first().copied().unwrap_or(0))
            .ok_or(CandleError::NoEmbedding)?;
        let sliding_window = match architecture {
            Architecture::Gemma3 => Some(uint("attention.sliding_window")?),
            _ => None,
        };
        if let Some(kind) = md
            .get(&key("rope.scaling.type"))
            .and_then(|v| v.to_string().ok())
        {
            if kind != "none" && kind != "linear" {
                return Err(CandleError::UnsupportedGgufRopeScaling {
                    file: path.to_path_buf(),
                    kind: kind.clone(),
                });
            }
        }
        let config = DecoderConfig {
            architecture,
            hidden_size,
            n_layers: uint("block_count")?,
            n_heads,
            n_kv_heads: uint("attention.head_count_kv").unwrap_or(n_heads),
            head_dim,
            intermediate_size: uint("feed_forward_length")?,
            vocab_size,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            rope_theta: float("rope.freq_base").unwrap_or(match architecture {
                Architecture::Gemma3 => 1_000_000.0,
                _ => 10_000.0,
            }),
            rope_local_theta: match architecture {
                // llama.cpp fixes the sliding layers' base at 10,000 for Gemma 3.
                Architecture::Gemma3 => Some(float("rope.local_freq_base").unwrap_or(10_000.0)),
                _ => None,
            },
            rope_linear_factor: float("rope.scaling.factor").filter(|f| *f > 0.0 && *f != 1.0),
            rope_style: match architecture {
                Architecture::Llama => RopeStyle::Interleaved,
                _ => RopeStyle::Halves,
            },
            sliding_window,
            sliding_pattern: match architecture {
                Architecture::Gemma3 => 6,
                _ => 0,
            },
            attention_scale: 1.0 / (head_dim as f64).sqrt(),
            max_position: uint("context_length")?,
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
            add_bos: md
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(architecture == Architecture::Gemma3),
        };
        config.check()?;
        Ok(config)
    }

    /// Reads an HF `config.json` (already parsed); `add_bos` comes from
    /// `tokenizer_config.json` when the directory has one.
    pub fn from_hf(json: &Value, add_bos: Option<bool>) -> Result<Self, CandleError> {
        // Multimodal Gemma 3 checkpoints nest the decoder under text_config.
        let root = json;
        let cfg = json.get("text_config").unwrap_or(json);
        let model_type = cfg
            .get("model_type")
            .or_else(|| root.get("model_type"))
            .and_then(Value::as_str)
            .ok_or(CandleError::NoModelType)?;
        let architecture = match model_type {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "gemma3_text" | "gemma3" => Architecture::Gemma3,
            other => return Err(CandleError::UnsupportedModelType { name: other.into() }),
        };
        let uint = |k: &str| -> Result<usize, CandleError> {
            cfg.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| CandleError::MissingField { key: k.into() })
        };
        let float = |k: &str| cfg.get(k).and_then(Value::as_f64);
        let token = |k: &str| {
            cfg.get(k)
                .or_else(|| root.get(k))
                .and_then(|v| match v {
                    Value::Array(a) => a.first().and_then(Value::as_u64),
                    v => v.as_u64(),
                })
                .map(|v| v as u32)
        };
        let hidden_size = uint("hidden_size")?;
        let n_heads = uint("num_attention_heads")?;
        let head_dim = uint("head_dim").unwrap_or(hidden_size / n_heads.max(1));
        let mut rope_linear_factor = None;
        if let Some(scaling) = cfg.get("rope_scaling").filter(|s| !s.is_null()) {
            let kind = scaling
                .get("rope_type")
                .or_else(|| scaling.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            if kind != "linear" && kind != "default" {
                return Err(CandleError::UnsupportedHfRopeScaling { kind: kind.into() });
            }
            rope_linear_factor = scaling
                .get("factor")
                .and_then(Value::as_f64)
                .filter(|f| *f != 1.0);
        }
        let gemma = architecture == Architecture::Gemma3;
        let config = DecoderConfig {
            architecture,
            hidden_size,
            n_layers: uint("num_hidden_layers")?,
            n_heads,
            n_kv_heads: uint("num_key_value_heads").unwrap_or(n_heads),
            head_dim,
            intermediate_size: uint("intermediate_size")?,
            vocab_size: uint("vocab_size")?,
            rms_norm_eps: float("rms_norm_eps").unwrap_or(1e-6),
            rope_theta: float("rope_theta").unwrap_or(if gemma { 1_000_000.0 } else { 10_000.0 }),
            rope_local_theta: gemma.then(|| float("rope_local_base_freq").unwrap_or(10_000.0)),
            rope_linear_factor,
            rope_style: RopeStyle::Halves,
            sliding_window: if gemma {
                Some(uint("sliding_window")?)
            } else {
                None
            },
            sliding_pattern: if gemma {
                uint("sliding_window_pattern").unwrap_or(6)
            } else {
                0
            },
            attention_scale: 1.0
                / float("query_pre_attn_scalar")
                    .filter(|_| gemma)
                    .unwrap_or(head_dim as f64)
                    .sqrt(),
            max_position: uint("max_position_embeddings")?,
            bos: token("bos_token_id"),
            eos: token("eos_token_id"),
            add_bos: add_bos.unwrap_or(gemma),
        };
        config.check()?;
        Ok(config)
    }

    /// The HF `config.json` of this decoder (what `lmdensity convert` writes).
    pub fn to_hf(&self, torch_dtype: &str, tie_word_embeddings: bool) -> Value {
        let mut v = serde_json::json!({
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position,
            "tie_word_embeddings": tie_word_embeddings,
            "bos_token_id": self.bos,
            "eos_token_id": self.eos,
            "torch_dtype": torch_dtype,
            "rope_scaling": self.rope_linear_factor.map(|f| serde_json::json!({"rope_type": "linear", "factor": f})),
        });
        let extra = match self.architecture {
            Architecture::Llama => serde_json::json!({
                "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            }),
            Architecture::Qwen2 => serde_json::json!({
                "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
            }),
            Architecture::Gemma3 => serde_json::json!({
                "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                "hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": (1.0 / (self.attention_scale * self.attention_scale)).round(),
                "sliding_window": self.sliding_window,
                "sliding_window_pattern": self.sliding_pattern,
                "rope_local_base_freq": self.rope_local_theta,
            }),
        };
        if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
            base.extend(more);
        }
        v
    }

    fn check(&self) -> Result<(), CandleError> {
        if self.hidden_size == 0
            || self.n_layers == 0
            || self.n_heads == 0
            || self.n_kv_heads == 0
            || self.head_dim == 0
            || self.vocab_size == 0
        {
            return Err(CandleError::DegenerateShape(format!("{self:?}")));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(CandleError::HeadsNotMultiple {
                heads: self.n_heads,
                kv_heads: self.n_kv_heads,
            });
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(CandleError::OddHeadDim {
                head_dim: self.head_dim,
            });
        }
        Ok(())
    }
}
