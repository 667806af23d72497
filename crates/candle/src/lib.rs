//! candle backend: the lmdensity scoring primitive on candle, for full-precision HF checkpoints
//! (`config.json` + `*.safetensors` + `tokenizer.json`, f32/bf16/f16) and for GGUF files run
//! with candle's own quantized kernels. Llama, Qwen2 and Gemma 3 decoders are supported
//! ([`config::SUPPORTED`]).
//!
//! The decoder is our own ([`decoder`]): candle-transformers' models return the logits of the
//! last position only, and its `quantized_gemma3` uses SiLU where Gemma 3 uses GELU and sizes
//! RoPE tables for 131,072 positions. Tokenization is `lmdensity-tokenizer`'s, whose ids equal
//! llama.cpp's on the registry models.

pub mod bench;
pub mod config;
pub mod convert;
pub mod decoder;
pub mod error;
pub mod weights;

use std::path::{Path, PathBuf};

pub use candle_core::DType;
use lmdensity_backend::{
    score_rows, validate_request, BackendError, LanguageModel, LogitsVisitor, ModelInfo,
    ScoreRequest, TokenId, TokenScore,
};
use lmdensity_tokenizer::TextTokenizer;

use crate::config::DecoderConfig;
use crate::decoder::{Decoder, DecoderState};
use crate::weights::WeightSource;

pub use crate::error::CandleError;

/// Version of candle this backend is built on, recorded in manifests.
pub const CANDLE_VERSION: &str = "0.11.1";

/// File written by `lmdensity convert` next to the weights: where they came from.
pub const PROVENANCE_FILE: &str = "lmdensity-provenance.json";

/// Rows of logits computed at once (bounds memory at 262k-token vocabularies).
const LOGIT_ROWS: usize = 64;

/// How the weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// GGUF matrices kept in their ggml quantization, multiplied with candle's quantized kernels.
    Quantized,
    /// Dense matrices in this dtype (f32, bf16 or f16); activations stay f32.
    Dense(DType),
}

impl Precision {
    /// `quantized`, `f32`, `bf16`, `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Quantized => "quantized",
            Precision::Dense(DType::BF16) => "bf16",
            Precision::Dense(DType::F16) => "f16",
            Precision::Dense(_) => "f32",
        }
    }
}

/// How to run a model with candle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandleConfig {
    /// CPU threads (a rayon pool of this size runs every forward pass).
    pub threads: usize,
    /// Tokens per forward pass.
    pub batch_size: usize,
}

impl Default for CandleConfig {
    fn default() -> Self {
        CandleConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: 512,
        }
    }
}

/// A model loaded by candle, with its tokenizer. Scoring happens in a [`CandleSession`].
pub struct CandleModel {
    decoder: Decoder,
    tokenizer: TextTokenizer,
    info: ModelInfo,
    precision: Precision,
    path: PathBuf,
    pool: rayon::ThreadPool,
    config: CandleConfig,
}

impl std::fmt::Debug for CandleModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleModel")
            .field("path", &self.path)
            .field("precision", &self.precision)
            .field("info", &self.info)
            .finish()
    }
}

/// The rayon pool candle's kernels run in.
fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, BackendError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| BackendError::Engine {
            op: "candle thread pool",
            reason: e.to_string(),
        })
}

/// A [`BackendError::Load`] for `path`, saying why (a [`CandleError`] or a message).
fn load_error(path: &Path, reason: impl std::fmt::Display) -> BackendError {
    BackendError::Load {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl CandleModel {
    /// Loads a GGUF with candle's quantized kernels. `tokenizer` is the tokenizer to use
    /// (rebuilt from the GGUF's metadata, or a tokenizer.json for SentencePiece vocabularies).
    pub fn load_gguf(
        path: &Path,
        tokenizer: TextTokenizer,
        config: CandleConfig,
    ) -> Result<Self, BackendError> {
        let mut source = WeightSource::gguf(path).map_err(|e| load_error(path, e))?;
        let WeightSource::Gguf { content, .. } = &source else {
            return Err(load_error(path, "internal: not a GGUF source"));
        };
        let decoder_config =
            DecoderConfig::from_gguf(content, path).map_err(|e| load_error(path, e))?;
        let n_params = content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count() as u64)
            .sum();
        let decoder =
            Decoder::load(decoder_config, &mut source).map_err(|e| load_error(path, e))?;
        Self::finish(
            decoder,
            tokenizer,
            n_params,
            Precision::Quantized,
            path,
            config,
        )
    }

    /// Loads an HF-format directory: `config.json`, `*.safetensors`, `tokenizer.json`
    /// (and `tokenizer_config.json` for `add_bos_token`, when present). Matrices are held in
    /// `dtype`.
    pub fn load_dir(dir: &Path, dtype: DType, config: CandleConfig) -> Result<Self, BackendError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(&config_path, e.to_string()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| load_error(&config_path, format!("not valid JSON: {e}")))?;
        let add_bos = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("add_bos_token").and_then(serde_json::Value::as_bool));
        let decoder_config =
            DecoderConfig::from_hf(&json, add_bos).map_err(|e| load_error(&config_path, e))?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = TextTokenizer::from_json(&tokenizer_path)
            .map_err(|e| load_error(&tokenizer_path, e.to_string()))?;
        let mut source = WeightSource::safetensors(dir, decoder_config.architecture, dtype)
            .map_err(|e| load_error(dir, e))?;
        let n_params = match &source {
            WeightSource::Safetensors { tensors, .. } => {
                tensors.values().map(|(t, _)| t.elem_count() as u64).sum()
            }
            WeightSource::Gguf { .. } => 0,
        };
        let decoder = Decoder::load(decoder_config, &mut source).map_err(|e| load_error(dir, e))?;
        Self::finish(
            decoder,
            tokenizer,
            n_params,
            Precision::Dense(dtype),
            dir,
            config,
        )
    }

    fn finish(
        decoder: Decoder,
        tokenizer: TextTokenizer,
        n_params: u64,
        precision: Precision,
        path: &Path,
        config: CandleConfig,
    ) -> Result<Self, BackendError> {
        let c = decoder.config();
        tokenizer
            .check_vocab(c.vocab_size)
            .map_err(|e| load_error(path, e.to_string()))?;
        if config.threads == 0 || config.batch_size == 0 {
            return Err(BackendError::Engine {
                op: "configure candle",
                reason: "threads and batch size must be at least 1".into(),
            });
        }
        let pool = thread_pool(config.threads)?;
        let info = ModelInfo {
            architecture: c.architecture.gguf_name().into(),
            n_vocab: c.vocab_size,
            n_ctx_train: c.max_position,
            n_params,
            bos: c.bos.map(|b| b as TokenId),
            eos: c.eos.map(|b| b as TokenId),
            add_bos: c.add_bos,
        };
        Ok(CandleModel {
            decoder,
            tokenizer,
            info,
            precision,
            path: path.to_path_buf(),
            pool,
            config,
        })
    }

    /// A scoring session whose requests may hold up to `max_len` input tokens; consecutive
    /// requests reuse the KV cache of the prefix they share.
    pub fn session(&self, max_len: usize) -> Result<CandleSession<'_>, BackendError> {
        if max_len == 0 || max_len > self.info.n_ctx_train {
            return Err(BackendError::Engine {
                op: "candle session",
                reason: format!(
                    "context {max_len} must be between 1 and the model's {}",
                    self.info.n_ctx_train
                ),
            });
        }
        let state = self
            .decoder
            .new_state(max_len)
            .map_err(|e| BackendError::Engine {
                op: "candle session",
                reason: e.to_string(),
            })?;
        Ok(CandleSession {
            model: self,
            state,
            max_len,
            cached_tokens: Vec::new(),
        })
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Tokenizes `text`; with `add_special`, BOS when the model's tokenizer adds it.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, BackendError> {
        let ids = self
            .tokenizer
            .encode(text)
            .map_err(|e| BackendError::Engine {
                op: "tokenize",
                reason: e.to_string(),
            })?;
        let mut out = Vec::with_capacity(ids.len() + 1);
        if add_special && self.info.add_bos {
            if let Some(bos) = self.info.bos {
                out.push(bos);
            }
        }
        out.extend(ids.into_iter().map(|t| t as TokenId));
        Ok(out)
    }

    /// How the weights are held.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The decoder's shape.
    pub fn decoder_config(&self) -> &DecoderConfig {
        self.decoder.config()
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> u64 {
        self.decoder.weight_bytes() as u64
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The configuration the model runs with.
    pub fn config(&self) -> &CandleConfig {
        &self.config
    }
}

/// A sequence on a [`CandleModel`]: its KV cache and the tokens it holds.
pub struct CandleSession<'m> {
    model: &'m CandleModel,
    state: DecoderState,
    max_len: usize,
    /// Tokens whose keys and values the cache holds.
    cached_tokens: Vec<u32>,
}

impl CandleSession<'_> {
    /// Scores one validated request, reusing the cached prefix it shares.
    fn score_one(
        &mut self,
        index: usize,
        request: &ScoreRequest,
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Vec<TokenScore>, BackendError> {
        let engine = |e: candle_core::Error| BackendError::Engine {
            op: "candle forward",
            reason: e.to_string(),
        };
        let tokens: Vec<u32> = request.tokens.iter().map(|&t| t as u32).collect();
        let inputs = &tokens[..tokens.len() - 1];
        let shared = self
            .cached_tokens
            .iter()
            .zip(inputs)
            .take_while(|(a, b)| a == b)
            .count();
        // Logits are not cached: positions from score_from − 1 on are recomputed.
        let keep = shared.min(request.score_from - 1);
        self.state.truncate(keep).map_err(engine)?;
        self.cached_tokens.truncate(keep);
        let mut scores = Vec::with_capacity(request.n_targets());
        let mut start = keep;
        while start < inputs.len() {
            let model = self.model;
            let end = (start + model.config.batch_size).min(inputs.len());
            let hidden = {
                let state = &mut self.state;
                let chunk = &inputs[start..end];
                model
                    .pool
                    .install(|| model.decoder.forward(state, chunk))
                    .map_err(engine)?
            };
            self.cached_tokens.extend_from_slice(&inputs[start..end]);
            // Positions p in this chunk whose next token is a target.
            let first = start.max(request.score_from - 1);
            let mut p = first;
            while p < end {
                let rows_end = (p + LOGIT_ROWS).min(end);
                let rows = hidden.narrow(0, p - start, rows_end - p).map_err(engine)?;
                let logits = model
                    .pool
                    .install(|| model.decoder.logits(&rows)?.to_vec2::<f32>())
                    .map_err(engine)?;
                let gathered: Vec<(usize, &[f32], TokenId)> = logits
                    .iter()
                    .enumerate()
                    .map(|(r, row)| (p + r, row.as_slice(), request.tokens[p + r + 1]))
                    .collect();
                scores.extend(score_rows(
                    index,
                    &gathered,
                    model.config.threads,
                    visit.as_deref_mut(),
                )?);
                p = rows_end;
            }
            start = end;
        }
        Ok(scores)
    }
}

impl LanguageModel for CandleSession<'_> {
    fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    fn max_sequence_len(&self) -> usize {
        self.max_len
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, BackendError> {
        self.model.tokenize(text, add_special)
    }

    /// From the tokenizer's vocabulary (candle has no detokenizer of its own); generation then
    /// runs through the default one-token-per-step loop over [`Self::score_visiting`], whose
    /// cached prefix makes each step one token of work.
    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, BackendError> {
        u32::try_from(token)
            .ok()
            .and_then(|id| self.model.tokenizer.token_bytes(id))
            .ok_or_else(|| BackendError::Engine {
                op: "detokenize",
                reason: format!(
                    "token {token} is not in the tokenizer's vocabulary ({})",
                    self.model.tokenizer.describe()
                ),
            })
    }

    fn score_visiting(
        &mut self,
        requests: &[ScoreRequest],
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Vec<Vec<TokenScore>>, BackendError> {
        for (i, r) in requests.iter().enumerate() {
            validate_request(i, r, self.model.info.n_vocab, self.max_len)?;
        }
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| self.score_one(i, r, visit.as_deref_mut()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Tiny generated checkpoints (random weights): they test loading, error reporting and the
    //! cache logic, never numbers about real models (tests/candle.rs does that).

    use std::collections::HashMap;
    use std::path::Path;

    use candle_core::{Device, Tensor};
    use lmdensity_backend::{LanguageModel, ScoreRequest};

    use super::*;

    const WORDS: [&str; 8] = ["<unk>", "a", "b", "c", "d", "e", "f", "g"];

    fn tokenizer_json(words: &[&str]) -> String {
        let vocab: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| format!("\"{w}\": {i}"))
            .collect();
        format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
                "post_processor": null, "decoder": null,
                "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "<unk>"}}}}"#,
            vocab.join(", ")
        )
    }

    /// Writes a tiny `model_type` checkpoint into `dir`; `edit` may change tensors first.
    fn tiny(dir: &Path, model_type: &str, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
        let gemma = model_type == "gemma3_text";
        let (h, nh, nkv, hd, inter, v) = (8usize, 2usize, 1usize, 4usize, 16usize, 8usize);
        let mut config = serde_json::json!({
            "model_type": model_type, "hidden_size": h, "num_attention_heads": nh,
            "num_key_value_heads": nkv, "head_dim": hd, "intermediate_size": inter,
            "num_hidden_layers": 2, "vocab_size": v, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "bos_token_id": 1,
        });
        if gemma {
            config["sliding_window"] = 2.into();
            config["sliding_window_pattern"] = 2.into();
            config["query_pre_attn_scalar"] = hd.into();
        }
        let mut seed = 7u64;
        let mut random = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
                })
                .collect();
            Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor")
        };
        let mut tensors = HashMap::new();
        tensors.insert("model.embed_tokens.weight".to_string(), random(&[v, h]));
        tensors.insert("model.norm.weight".to_string(), random(&[h]));
        for l in 0..2 {
            let p = |s: &str| format!("model.layers.{l}.{s}.weight");
            for (name, shape) in [
                ("input_layernorm", vec![h]),
                ("post_attention_layernorm", vec![h]),
                ("self_attn.q_proj", vec![nh * hd, h]),
                ("self_attn.k_proj", vec![nkv * hd, h]),
                ("self_attn.v_proj", vec![nkv * hd, h]),
                ("self_attn.o_proj", vec![h, nh * hd]),
                ("mlp.gate_proj", vec![inter, h]),
                ("mlp.up_proj", vec![inter, h]),
                ("mlp.down_proj", vec![h, inter]),
            ] {
                tensors.insert(p(name), random(&shape));
            }
            if gemma {
                for (name, len) in [
                    ("self_attn.q_norm", hd),
                    ("self_attn.k_norm", hd),
                    ("pre_feedforward_layernorm", h),
                    ("post_feedforward_layernorm", h),
                ] {
                    tensors.insert(p(name), random(&[len]));
                }
            }
            if model_type == "qwen2" {
                for (name, len) in [
                    ("q_proj", nh * hd),
                    ("k_proj", nkv * hd),
                    ("v_proj", nkv * hd),
                ] {
                    tensors.insert(
                        format!("model.layers.{l}.self_attn.{name}.bias"),
                        random(&[len]),
                    );
                }
            }
        }
        edit(&mut tensors);
        std::fs::create_dir_all(dir).expect("dir");
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("save");
        std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
        std::fs::write(dir.join("tokenizer.json"), tokenizer_json(&WORDS)).expect("tokenizer");
    }

    fn load(dir: &Path, batch_size: usize) -> Result<CandleModel, BackendError> {
        CandleModel::load_dir(
            dir,
            DType::F32,
            CandleConfig {
                threads: 1,
                batch_size,
            },
        )
    }

    fn error_text(dir: &Path) -> String {
        match load(dir, 4) {
            Ok(_) => panic!("{} loaded", dir.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn distributions_sum_to_one_and_cache_reuse_equals_fresh_sessions() {
        for model_type in ["llama", "qwen2", "gemma3_text"] {
            let tmp = tempfile::tempdir().expect("tmp");
            tiny(tmp.path(), model_type, |_| {});
            let model = load(tmp.path(), 16).expect("load");
            let tokens = model
                .tokenize("a b c d e f g a b", false)
                .expect("tokenize");
            assert_eq!(tokens, [1, 2, 3, 4, 5, 6, 7, 1, 2]);
            // Every continuation of one prefix: probabilities sum to 1.
            let mut session = model.session(32).expect("session");
            let requests: Vec<ScoreRequest> = (0..8)
                .map(|next| {
                    let mut t = tokens[..6].to_vec();
                    t.push(next);
                    ScoreRequest {
                        tokens: t,
                        score_from: 6,
                    }
                })
                .collect();
            let total: f64 = session
                .score(&requests)
                .expect("score")
                .iter()
                .map(|s| s[0].logprob.exp())
                .sum();
            assert!((total - 1.0).abs() < 1e-5, "{model_type}: {total}");
            // Reusing a cached prefix, or running in chunks of 2 (Gemma's window is 2), gives
            // what a fresh session running everything at once gives.
            let whole = ScoreRequest {
                tokens: tokens.clone(),
                score_from: 1,
            };
            let tail = ScoreRequest {
                tokens: tokens.clone(),
                score_from: 5,
            };
            let fresh = |batch: usize| {
                let m = load(tmp.path(), batch).expect("load");
                let mut s = m.session(32).expect("session");
                s.score(std::slice::from_ref(&whole)).expect("score")[0].clone()
            };
            let reference = fresh(16);
            assert_eq!(reference.len(), 8);
            let chunked = fresh(2);
            let reused = session.score(&[whole.clone(), tail]).expect("score");
            for (i, r) in reference.iter().enumerate() {
                assert!(
                    (r.logprob - chunked[i].logprob).abs() < 1e-5,
                    "{model_type} chunked {i}"
                );
                assert!(
                    (r.logprob - reused[0][i].logprob).abs() < 1e-5,
                    "{model_type} reused {i}"
                );
            }
            for (i, r) in reused[1].iter().enumerate() {
                assert!(
                    (r.logprob - reference[4 + i].logprob).abs() < 1e-5,
                    "{model_type} tail {i}"
                );
            }
        }
    }

    #[test]
    fn bad_checkpoints_are_refused_naming_the_file_and_what_is_wrong() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("mamba");
        tiny(&dir, "llama", |_| {});
        let config = std::fs::read_to_string(dir.join("config.json")).expect("read");
        std::fs::write(
            dir.join("config.json"),
            config.replace("\"llama\"", "\"mamba\""),
        )
        .expect("write");
        let e = error_text(&dir);
        assert!(
            e.contains("config.json")
                && e.contains("`mamba`")
                && e.contains("supported: llama, qwen2, gemma3"),
            "{e}"
        );

        let dir = tmp.path().join("missing");
        tiny(&dir, "llama", |t| {
            t.remove("model.layers.1.mlp.up_proj.weight");
        });
        let e = error_text(&dir);
        assert!(
            e.contains("missing tensor model.layers.1.mlp.up_proj.weight") && e.contains("missing"),
            "{e}"
        );

        let dir = tmp.path().join("shape");
        tiny(&dir, "llama", |t| {
            let bad = Tensor::zeros((15, 8), DType::F32, &Device::Cpu).expect("zeros");
            t.insert("model.layers.0.mlp.gate_proj.weight".into(), bad);
        });
        let e = error_text(&dir);
        assert!(
            e.contains("model.layers.0.mlp.gate_proj.weight has shape [15, 8]")
                && e.contains("[16, 8]")
                && e.contains("model.safetensors"),
            "{e}"
        );

        let dir = tmp.path().join("vocab");
        tiny(&dir, "llama", |_| {});
        let many: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
        let words: Vec<&str> = std::iter::once("<unk>")
            .chain(many.iter().map(String::as_str))
            .collect();
        std::fs::write(dir.join("tokenizer.json"), tokenizer_json(&words)).expect("write");
        let e = error_text(&dir);
        assert!(
            e.contains("tokenizer has 21 tokens") && e.contains("wrong tokenizer"),
            "{e}"
        );

        let dir = tmp.path().join("header");
        tiny(&dir, "llama", |_| {});
        let path = dir.join("model.safetensors");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[8..16].copy_from_slice(b"garbage!");
        std::fs::write(&path, &bytes).expect("write");
        let e = error_text(&dir);
        assert!(
            e.contains("model.safetensors: corrupt safetensors file"),
            "{e}"
        );

        let dir = tmp.path().join("truncated");
        tiny(&dir, "llama", |_| {});
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("write");
        let e = error_text(&dir);
        assert!(
            e.contains("model.safetensors: corrupt safetensors file"),
            "{e}"
        );
    }
}
