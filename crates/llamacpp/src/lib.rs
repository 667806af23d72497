//! llama.cpp backend (through `llama-cpp-2`) implementing the lmdensity scoring primitive.
//!
//! [`LlamaCppModel`] owns the weights; [`LlamaCppModel::session`] creates a context that borrows
//! them (as llama-cpp-2's own `LlamaContext<'model>` does) and implements
//! [`LanguageModel`]. A session keeps the tokens of its KV cache and reuses the longest prefix a
//! new request shares with them, so contexts shared by several requests are evaluated once.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use lmdensity_backend::{
    score_logits, validate_request, BackendError, LanguageModel, ModelInfo, ScoreRequest, TokenId,
    TokenScore,
};

mod sys;

/// Version of the `llama-cpp-2` binding (pinned with `=` in the workspace), recorded in manifests.
pub const LLAMA_CPP_2_VERSION: &str = "0.1.160";

/// How to load and run a model with llama.cpp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaCppConfig {
    /// CPU threads for prompt processing and decoding.
    pub threads: u32,
    /// Tokens per `llama_decode` call (logical and physical batch).
    pub batch_size: u32,
    /// Layers offloaded to the GPU (needs the `cuda` feature; 0 on CPU builds).
    pub gpu_layers: u32,
    /// Let llama.cpp print its logs to stderr.
    pub verbose: bool,
}

impl Default for LlamaCppConfig {
    fn default() -> Self {
        LlamaCppConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            batch_size: 512,
            gpu_layers: 0,
            verbose: false,
        }
    }
}

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
static BACKEND_INIT: Mutex<()> = Mutex::new(());

/// The process-wide llama.cpp backend (llama.cpp allows one initialisation per process).
fn backend(verbose: bool) -> Result<&'static LlamaBackend, BackendError> {
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let _guard = BACKEND_INIT.lock().map_err(|_| BackendError::Engine {
        op: "llama backend init",
        reason: "a previous initialisation panicked".into(),
    })?;
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let mut b = LlamaBackend::init().map_err(|e| BackendError::Engine {
        op: "llama backend init",
        reason: e.to_string(),
    })?;
    if !verbose {
        b.void_logs();
    }
    Ok(BACKEND.get_or_init(|| b))
}

/// CPU/GPU features llama.cpp was compiled with, as `llama_print_system_info` reports them
/// (e.g. `CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | …`).
pub fn build_features() -> String {
    sys::system_info()
}

/// Whether this build can offload to a GPU.
pub fn supports_gpu_offload() -> bool {
    cfg!(feature = "cuda")
}

/// Weights loaded by llama.cpp.
pub struct LlamaCppModel {
    model: LlamaModel,
    info: ModelInfo,
    config: LlamaCppConfig,
    path: PathBuf,
}

impl std::fmt::Debug for LlamaCppModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppModel")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

impl LlamaCppModel {
    /// Loads a GGUF file. The file should have been checked (`lmdensity_hub::gguf`) first:
    /// llama.cpp itself reports only that loading failed.
    pub fn load(path: &Path, config: LlamaCppConfig) -> Result<Self, BackendError> {
        let backend = backend(config.verbose)?;
        if config.threads == 0 || config.batch_size == 0 {
            return Err(BackendError::Engine {
                op: "configure llama.cpp",
                reason: "threads and batch size must be at least 1".into(),
            });
        }
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| BackendError::Load {
                path: path.display().to_string(),
                reason: format!("llama.cpp refused the file ({e}); run with --verbose for its log"),
            })?;
        let vocab = model.vocab();
        let bos = vocab.bos().0;
        let eos = vocab.eos().0;
        let info = ModelInfo {
            architecture: model
                .meta_val_str("general.architecture")
                .unwrap_or_else(|_| "unknown".into()),
            n_vocab: model.n_vocab().max(0) as usize,
            n_ctx_train: model.n_ctx_train() as usize,
            n_params: model.n_params(),
            bos: (bos >= 0).then_some(bos),
            eos: (eos >= 0).then_some(eos),
            add_bos: vocab.should_add_bos(),
        };
        Ok(LlamaCppModel {
            model,
            info,
            config,
            path: path.to_path_buf(),
        })
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Bytes of the weights as llama.cpp holds them.
    pub fn weight_bytes(&self) -> u64 {
        self.model.size()
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &LlamaCppConfig {
        &self.config
    }

    /// A scoring session whose requests may hold up to `max_len` input tokens.
    pub fn session(&self, max_len: usize) -> Result<LlamaCppSession<'_>, BackendError> {
        if max_len == 0 {
            return Err(BackendError::Engine {
                op: "create llama.cpp context",
                reason: "context length must be at least 1".into(),
            });
        }
        let n_ctx = u32::try_from(max_len).map_err(|_| BackendError::Engine {
            op: "create llama.cpp context",
            reason: format!("context length {max_len} is too large"),
        })?;
        let batch = self.config.batch_size.min(n_ctx);
        let threads = self.config.threads as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(batch)
            .with_n_ubatch(batch)
            .with_n_seq_max(1)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let backend = backend(self.config.verbose)?;
        let ctx = self
            .model
            .new_context(backend, params)
            .map_err(|e| BackendError::Engine {
                op: "create llama.cpp context",
                reason: format!("{e} (context {n_ctx}, batch {batch}); is there enough memory?"),
            })?;
        Ok(LlamaCppSession {
            model: self,
            ctx,
            batch: LlamaBatch::new(batch as usize, 1),
            batch_size: batch as usize,
            max_len,
            cached: Vec::new(),
        })
    }
}

/// A llama.cpp context scoring requests, with KV-cache prefix reuse between them.
pub struct LlamaCppSession<'m> {
    model: &'m LlamaCppModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    max_len: usize,
    /// Tokens whose keys and values are in sequence 0 of the cache, positions 0….
    cached: Vec<TokenId>,
}

impl LlamaCppSession<'_> {
    /// Keeps the first `keep` cached positions and drops the rest.
    fn truncate_cache(&mut self, keep: usize) -> Result<(), BackendError> {
        if keep >= self.cached.len() {
            return Ok(());
        }
        let partial_ok = keep > 0 && self.ctx.kv_cache_seq_rm(0, Some(keep as u32), None).is_ok();
        if !partial_ok {
            // Some caches (sliding-window layers) cannot drop a suffix: start over.
            self.ctx.clear_kv_cache();
            self.cached.clear();
            return Ok(());
        }
        self.cached.truncate(keep);
        Ok(())
    }

    fn score_one(
        &mut self,
        index: usize,
        request: &ScoreRequest,
    ) -> Result<Vec<TokenScore>, BackendError> {
        let tokens = &request.tokens;
        let inputs = &tokens[..tokens.len() - 1];
        // Position whose logits predict the first target.
        let first_logit = request.score_from - 1;
        let common = self
            .cached
            .iter()
            .zip(inputs)
            .take_while(|(a, b)| a == b)
            .count();
        self.truncate_cache(common.min(first_logit))?;
        let mut scores = Vec::with_capacity(request.n_targets());
        let threads = self.model.config.threads.max(1) as usize;
        let mut pos = self.cached.len();
        while pos < inputs.len() {
            let end = (pos + self.batch_size).min(inputs.len());
            self.batch.clear();
            for (p, &t) in (pos..end).zip(&inputs[pos..end]) {
                self.batch
                    .add(LlamaToken(t), p as i32, &[0], p >= first_logit)
                    .map_err(|e| BackendError::Engine {
                        op: "fill batch",
                        reason: e.to_string(),
                    })?;
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| BackendError::Engine {
                    op: "llama_decode",
                    reason: e.to_string(),
                })?;
            self.cached.extend_from_slice(&inputs[pos..end]);
            // Rows with logits, in batch order: batch index i holds position pos + i.
            let rows: Vec<(usize, &[f32], TokenId)> = (pos.max(first_logit)..end)
                .map(|p| (p, self.ctx.get_logits_ith((p - pos) as i32), tokens[p + 1]))
                .collect();
            scores.extend(score_rows(index, &rows, threads)?);
            pos = end;
        }
        Ok(scores)
    }
}

/// Log-softmax of many logits rows in parallel (the vocabulary can be 262k wide).
fn score_rows(
    index: usize,
    rows: &[(usize, &[f32], TokenId)],
    threads: usize,
) -> Result<Vec<TokenScore>, BackendError> {
    let one = |&(p, logits, t): &(usize, &[f32], TokenId)| {
        score_logits(logits, t).map_err(|value| BackendError::NonFiniteLogits {
            index,
            position: p,
            value,
        })
    };
    if rows.len() < 2 * threads || threads == 1 {
        return rows.iter().map(one).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(one).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for h in handles {
            let part = h.join().map_err(|_| BackendError::Engine {
                op: "log-softmax",
                reason: "a scoring thread panicked".into(),
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

impl LanguageModel for LlamaCppSession<'_> {
    fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    fn max_sequence_len(&self) -> usize {
        self.max_len
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, BackendError> {
        // parse_special = false: corpus text is plain text, never control tokens.
        let tokens = self
            .model
            .model
            .vocab()
            .tokenize(text.as_bytes(), add_special, false);
        Ok(tokens.into_iter().map(|t| t.0).collect())
    }

    fn score(&mut self, requests: &[ScoreRequest]) -> Result<Vec<Vec<TokenScore>>, BackendError> {
        let n_vocab = self.model.info.n_vocab;
        for (i, r) in requests.iter().enumerate() {
            validate_request(i, r, n_vocab, self.max_len)?;
        }
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| self.score_one(i, r))
            .collect()
    }
}
