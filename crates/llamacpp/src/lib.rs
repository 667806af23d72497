//! llama.cpp backend (through `llama-cpp-2`) implementing the lmdensity scoring primitive.
//!
//! [`LlamaCppModel`] owns the weights; [`LlamaCppModel::session`] creates a context that borrows
//! them (as llama-cpp-2's own `LlamaContext<'model>` does) and implements
//! [`LanguageModel`]. A session keeps the tokens of its KV cache and reuses the longest prefix a
//! new request shares with them, so contexts shared by several requests are evaluated once.
//! A [`LlamaCppModel::shared_context_session`] goes further for multiple-choice items: the
//! shared context is decoded once into sequence 0, copied (cell sharing in a unified KV cache)
//! to one sequence per choice, and all choices' tails are decoded together in one batch.

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
    generate_sequentially, score_row_set, score_rows, validate_request, BackendError,
    GenerateRequest, LanguageModel, LogitsVisitor, ModelInfo, ScoreRequest, ScoredRow, TokenId,
    TokenScore, TokenWatcher,
};

mod bench;
mod generate;
mod pack;
mod sys;

pub use bench::{BenchContextConfig, LlamaCppBench};

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
    /// Memory-map the weights file (llama.cpp's default); without, weights are read into
    /// anonymous memory.
    pub use_mmap: bool,
}

impl Default for LlamaCppConfig {
    fn default() -> Self {
        LlamaCppConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            batch_size: 512,
            gpu_layers: 0,
            verbose: false,
            use_mmap: true,
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

/// Quantization types of the quantization sweep (llama.cpp's `llama_ftype`s of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// 8-bit, one scale per 32 weights.
    Q8_0,
    /// 6-bit k-quant.
    Q6K,
    /// 5-bit k-quant mix (medium).
    Q5KM,
    /// 4-bit k-quant mix (medium).
    Q4KM,
    /// 4-bit, one scale per 32 weights.
    Q4_0,
    /// 3-bit k-quant mix (medium).
    Q3KM,
    /// 2-bit k-quant.
    Q2K,
}

impl QuantType {
    /// The sweep's types, most bits first.
    pub const ALL: [QuantType; 7] = [
        QuantType::Q8_0,
        QuantType::Q6K,
        QuantType::Q5KM,
        QuantType::Q4KM,
        QuantType::Q4_0,
        QuantType::Q3KM,
        QuantType::Q2K,
    ];

    /// llama.cpp's name (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        match self {
            QuantType::Q8_0 => "Q8_0",
            QuantType::Q6K => "Q6_K",
            QuantType::Q5KM => "Q5_K_M",
            QuantType::Q4KM => "Q4_K_M",
            QuantType::Q4_0 => "Q4_0",
            QuantType::Q3KM => "Q3_K_M",
            QuantType::Q2K => "Q2_K",
        }
    }

    /// The type called `name` (case-insensitive), if it is one of the sweep's.
    pub fn parse(name: &str) -> Option<QuantType> {
        QuantType::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(name))
    }

    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        use llama_cpp_sys_2 as s;
        match self {
            QuantType::Q8_0 => s::LLAMA_FTYPE_MOSTLY_Q8_0,
            QuantType::Q6K => s::LLAMA_FTYPE_MOSTLY_Q6_K,
            QuantType::Q5KM => s::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            QuantType::Q4KM => s::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            QuantType::Q4_0 => s::LLAMA_FTYPE_MOSTLY_Q4_0,
            QuantType::Q3KM => s::LLAMA_FTYPE_MOSTLY_Q3_K_M,
            QuantType::Q2K => s::LLAMA_FTYPE_MOSTLY_Q2_K,
        }
    }
}

/// Quantizes the GGUF `input` (F32/F16/BF16 weights) to `output` with llama.cpp's quantizer
/// (`llama-quantize`'s defaults: no importance matrix, output and embedding types as llama.cpp
/// chooses for the mix). Writes `output.partial` and renames it when llama.cpp succeeds, so an
/// interrupted run never leaves a file that looks finished.
pub fn quantize(
    input: &Path,
    output: &Path,
    kind: QuantType,
    threads: u32,
    verbose: bool,
) -> Result<(), BackendError> {
    let fail = |reason: String| BackendError::Engine {
        op: "llama_model_quantize",
        reason,
    };
    if !input.is_file() {
        return Err(fail(format!("{}: no such file", input.display())));
    }
    backend(verbose)?;
    let partial = output.with_extension("gguf.partial");
    let c_path = |p: &Path| {
        std::ffi::CString::new(p.to_string_lossy().as_bytes())
            .map_err(|_| fail(format!("{}: path holds a NUL byte", p.display())))
    };
    let status = sys::model_quantize(
        &c_path(input)?,
        &c_path(&partial)?,
        kind.ftype(),
        threads as i32,
    );
    if status != 0 {
        let _ = std::fs::remove_file(&partial);
        return Err(fail(format!(
            "{} → {}: llama.cpp failed (status {status}); is the input a valid F32/F16 GGUF?",
            input.display(),
            kind.name()
        )));
    }
    std::fs::rename(&partial, output).map_err(|e| fail(format!("{}: {e}", output.display())))
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
        let params = LlamaModelParams::default()
            .with_n_gpu_layers(config.gpu_layers)
            .with_use_mmap(config.use_mmap);
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

    /// Tokenizes `text` (plain text: control-token syntax is not parsed); with `add_special`,
    /// the tokens the tokenizer adds by default (BOS) are added.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), add_special, false)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Tokenizes `text` whose control-token syntax (`<|im_start|>`, `<bos>`) stands for the
    /// special tokens themselves, as a rendered chat template's does; nothing is added.
    pub fn tokenize_with_special_tokens(&self, text: &str) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Bytes of the weights as llama.cpp holds them.
    pub fn weight_bytes(&self) -> u64 {
        self.model.size()
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &LlamaCppConfig {
        &self.config
    }

    /// A scoring session whose requests may hold up to `max_len` input tokens; consecutive
    /// requests reuse the KV cache of the prefix they share.
    pub fn session(&self, max_len: usize) -> Result<LlamaCppSession<'_>, BackendError> {
        self.new_session(max_len, CacheUse::ReusePrefix, 1, None)
    }

    /// A session for multiple-choice items: a batch of requests sharing a context is scored by
    /// decoding the context once and every choice's tail together (up to `max_choices`
    /// sequences at once).
    pub fn shared_context_session(
        &self,
        max_len: usize,
        max_choices: usize,
    ) -> Result<LlamaCppSession<'_>, BackendError> {
        self.new_session(
            max_len,
            CacheUse::ReusePrefix,
            max_choices.max(1),
            Some(BATCH_INVARIANT_UBATCH),
        )
    }

    /// A session that packs many requests — many items, each with its choices — into each
    /// decode call: a unified cache of `max(max_len, batch size)` cells, ubatches of the full
    /// batch size, tokens shared at the same position decoded once for every sequence that
    /// reads them, logits only at scored positions, and all of a call's rows log-softmaxed in
    /// parallel. Scores differ from one-at-a-time scoring by the rounding of llama.cpp's
    /// larger-ubatch kernels (README, "Numerics"); [`Self::shared_context_session`] is the
    /// bit-reproducible path.
    pub fn packed_session(&self, max_len: usize) -> Result<LlamaCppSession<'_>, BackendError> {
        let cells = max_len.max(self.config.batch_size as usize);
        let mut session = self.new_session(cells, CacheUse::Packed, PACKED_SEQUENCES, None)?;
        session.max_len = max_len;
        Ok(session)
    }

    /// A session that generates greedily `parallel` sequences at a time (continuous batching
    /// in one unified cache of `cells` cells, full-size ubatches), each request holding at most
    /// `max_len` tokens, prompt and generated together. It scores like
    /// [`Self::packed_session`].
    pub fn generation_session(
        &self,
        max_len: usize,
        cells: usize,
        parallel: usize,
    ) -> Result<LlamaCppSession<'_>, BackendError> {
        let cells = cells.max(max_len).max(self.config.batch_size as usize);
        let mut session = self.new_session(cells, CacheUse::Packed, parallel.max(1) + 1, None)?;
        session.max_len = max_len;
        Ok(session)
    }

    /// The chat template stored in the GGUF (`tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<String> {
        self.model
            .meta_val_str("tokenizer.chat_template")
            .ok()
            .filter(|t| !t.trim().is_empty())
    }

    /// The text of a special token (`<|im_start|>`), as chat templates write it.
    pub fn token_text(&self, token: TokenId) -> Option<String> {
        let bytes = self
            .model
            .vocab()
            .token_to_piece(LlamaToken(token), true, None);
        String::from_utf8(bytes).ok()
    }

    /// A session that scores every request from an empty cache (the naive way, for comparison).
    pub fn independent_session(&self, max_len: usize) -> Result<LlamaCppSession<'_>, BackendError> {
        self.new_session(
            max_len,
            CacheUse::Independent,
            1,
            Some(BATCH_INVARIANT_UBATCH),
        )
    }

    fn new_session(
        &self,
        max_len: usize,
        cache_use: CacheUse,
        n_seq: usize,
        max_ubatch: Option<u32>,
    ) -> Result<LlamaCppSession<'_>, BackendError> {
        if max_len == 0 {
            return Err(BackendError::Engine {
                op: "create llama.cpp context",
                reason: "context length must be at least 1".into(),
            });
        }
        let too_large = || BackendError::Engine {
            op: "create llama.cpp context",
            reason: format!("context length {max_len} is too large"),
        };
        let n_ctx = u32::try_from(max_len).map_err(|_| too_large())?;
        let batch = self.config.batch_size.min(n_ctx);
        // One stream of `max_len` cells per sequence, or one unified cache for packed sessions.
        let cells = if cache_use == CacheUse::Packed {
            n_ctx
        } else {
            n_ctx.checked_mul(n_seq as u32).ok_or_else(too_large)?
        };
        let n_seq_max = u32::try_from(n_seq).map_err(|_| too_large())?;
        let threads = self.config.threads as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(batch)
            .with_n_ubatch(max_ubatch.map_or(batch, |u| u.min(batch)))
            .with_n_seq_max(n_seq_max)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        // Task sessions: separate streams per sequence (copying the context to a choice's
        // stream is a buffer copy of the whole stream, so callers size `max_len` to their
        // longest request; a unified cache put all tails in one large ubatch, see README,
        // "Numerics"), and full-size sliding-window caches, so a stream can be copied and its
        // suffix dropped (Gemma 3). Perplexity sessions keep llama.cpp's defaults.
        // Packed sessions: one unified cache whose cells may belong to many sequences, and
        // full-size sliding-window caches (a pack's sequences each see their own window).
        let params = if cache_use == CacheUse::Packed {
            params.with_kv_unified(true).with_swa_full(true)
        } else if n_seq > 1 || max_ubatch.is_some() {
            params.with_kv_unified(false).with_swa_full(true)
        } else {
            params
        };
        let backend = backend(self.config.verbose)?;
        let ctx = self
            .model
            .new_context(backend, params)
            .map_err(|e| BackendError::Engine {
                op: "create llama.cpp context",
                reason: format!("{e} (context {cells}, batch {batch}, {n_seq} sequences); is there enough memory?"),
            })?;
        Ok(LlamaCppSession {
            model: self,
            ctx,
            batch: LlamaBatch::new(batch as usize, n_seq_max as i32),
            batch_size: batch as usize,
            max_len,
            cached: Vec::new(),
            cache_use,
            n_seq,
            decoded: 0,
        })
    }
}

/// Largest physical batch (ubatch) of the batch-invariant and independent task sessions
/// (packed sessions use the full batch size). llama.cpp's CPU kernels for
/// ubatches of more than 32 tokens compute attention differently from token-by-token
/// decoding, and a continuation's log-likelihood moves by up to ~1.7 nats on some items
/// (measured on SmolLM2-135M HellaSwag: batch sizes 1, 8 and 32 agree bit for bit, 64 and 512
/// do not). At ≤ 32, shared-context and naive scoring agree bit for bit on HellaSwag's short
/// contexts; on long ones, where the ubatch boundaries fall differently, nearly so.
pub const BATCH_INVARIANT_UBATCH: u32 = 32;

/// Sequences a packed session decodes at once (llama.cpp allows 256; its logits buffer is
/// first sized to this many rows).
const PACKED_SEQUENCES: usize = 64;

/// How a session uses its KV cache between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheUse {
    /// Keep the cache and reuse the prefix a request shares with it.
    ReusePrefix,
    /// Pack requests into shared decode calls from an empty cache (`pack`).
    Packed,
    /// Clear the cache before every request.
    Independent,
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
    cache_use: CacheUse,
    /// Sequences the cache holds at once (choices decoded together).
    n_seq: usize,
    /// Tokens decoded so far.
    decoded: u64,
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

    /// Decodes `tokens[cached.len()..end]` into sequence 0 as one batch, with logits for the
    /// positions from `logits_from` on, and records them as cached.
    fn decode_chunk(
        &mut self,
        tokens: &[TokenId],
        end: usize,
        logits_from: usize,
    ) -> Result<(), BackendError> {
        let pos = self.cached.len();
        self.batch.clear();
        for (p, &t) in (pos..end).zip(&tokens[pos..end]) {
            self.batch
                .add(LlamaToken(t), p as i32, &[0], p >= logits_from)
                .map_err(|e| BackendError::Engine {
                    op: "fill batch",
                    reason: e.to_string(),
                })?;
        }
        self.decode()?;
        self.cached.extend_from_slice(&tokens[pos..end]);
        Ok(())
    }

    /// Decodes `tokens` from the cached positions on into sequence 0, without logits.
    fn extend_cache(&mut self, tokens: &[TokenId]) -> Result<(), BackendError> {
        while self.cached.len() < tokens.len() {
            let end = (self.cached.len() + self.batch_size).min(tokens.len());
            self.decode_chunk(tokens, end, usize::MAX)?;
        }
        Ok(())
    }

    fn decode(&mut self) -> Result<(), BackendError> {
        self.decoded += self.batch.n_tokens().max(0) as u64;
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| BackendError::Engine {
                op: "llama_decode",
                reason: e.to_string(),
            })
    }

    /// Scores requests that share a context: the shared part is decoded once into sequence 0,
    /// copied whole (it holds exactly the shared part then) to sequences 1…n−1, and every
    /// request's tail goes into one batch. Returns `None`
    /// (nothing done) when the tails do not fit one batch.
    fn score_shared(
        &mut self,
        requests: &[ScoreRequest],
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Option<Vec<Vec<TokenScore>>>, BackendError> {
        let inputs: Vec<&[TokenId]> = requests
            .iter()
            .map(|r| &r.tokens[..r.tokens.len() - 1])
            .collect();
        let first = inputs[0];
        let common = inputs[1..].iter().fold(first.len(), |n, other| {
            n.min(first.iter().zip(*other).take_while(|(a, b)| a == b).count())
        });
        // Positions before every request's first scored logit are shared.
        let shared = requests
            .iter()
            .map(|r| r.score_from - 1)
            .fold(common, usize::min);
        let tails: usize = inputs.iter().map(|i| i.len() - shared).sum();
        if tails > self.batch_size {
            return Ok(None);
        }
        let reusable = self
            .cached
            .iter()
            .zip(&first[..shared])
            .take_while(|(a, b)| a == b)
            .count();
        self.truncate_cache(reusable)?;
        self.extend_cache(&first[..shared])?;
        // When every request's first scored logit sits on a token they all share (the last
        // context token), it is decoded once too, and its logits row serves every request.
        let head_row: Option<Vec<f32>> =
            if common > shared && requests.iter().all(|r| r.score_from - 1 == shared) {
                self.batch.clear();
                self.batch
                    .add(LlamaToken(first[shared]), shared as i32, &[0], true)
                    .map_err(|e| BackendError::Engine {
                        op: "fill batch",
                        reason: e.to_string(),
                    })?;
                self.decode()?;
                self.cached.push(first[shared]);
                Some(self.ctx.get_logits_ith(0).to_vec())
            } else {
                None
            };
        let start = self.cached.len();
        for seq in 1..requests.len() {
            self.ctx
                .kv_cache_seq_cp(0, seq as i32, None, None)
                .map_err(|e| BackendError::Engine {
                    op: "copy KV cache",
                    reason: e.to_string(),
                })?;
        }
        self.batch.clear();
        // (request, position, batch index) of every row with logits.
        let mut rows_at = Vec::new();
        let mut index = 0i32;
        for (seq, (request, input)) in requests.iter().zip(&inputs).enumerate() {
            let first_logit = request.score_from - 1;
            for (p, &t) in input.iter().enumerate().skip(start) {
                let logits = p >= first_logit;
                self.batch
                    .add(LlamaToken(t), p as i32, &[seq as i32], logits)
                    .map_err(|e| BackendError::Engine {
                        op: "fill batch",
                        reason: e.to_string(),
                    })?;
                if logits {
                    rows_at.push((seq, p, index));
                }
                index += 1;
            }
        }
        // Single-token continuations (MMLU's letters) leave nothing to decode.
        let decoded = if index > 0 { self.decode() } else { Ok(()) };
        // Sequence 0 now holds the first request's inputs; the others are dropped.
        self.cached.truncate(start);
        for seq in 1..requests.len() {
            self.ctx
                .clear_kv_cache_seq(Some(seq as u32), None, None)
                .map_err(|e| BackendError::Engine {
                    op: "clear KV cache",
                    reason: e.to_string(),
                })?;
        }
        if let Err(e) = decoded {
            self.ctx.clear_kv_cache();
            self.cached.clear();
            return Err(e);
        }
        self.cached.extend_from_slice(&first[start..]);
        let threads = self.model.config.threads.max(1) as usize;
        let mut out = Vec::with_capacity(requests.len());
        for (seq, request) in requests.iter().enumerate() {
            let mut rows: Vec<(usize, &[f32], TokenId)> = Vec::new();
            if let Some(row) = &head_row {
                rows.push((shared, row.as_slice(), request.tokens[shared + 1]));
            }
            rows.extend(
                rows_at
                    .iter()
                    .filter(|(s, _, _)| *s == seq)
                    .map(|&(_, p, i)| (p, self.ctx.get_logits_ith(i), request.tokens[p + 1])),
            );
            out.push(score_rows(seq, &rows, threads, visit.as_deref_mut())?);
        }
        Ok(Some(out))
    }

    /// Scores `requests` in packs (see `pack`). With a visitor, every request is a pack of its
    /// own, so rows reach it request by request and in order. The tokens every sequence of a
    /// pack shares before its first scored position (MMLU's fixed shots) stay in sequence 0
    /// for the next pack, within and across calls, and are not decoded again.
    fn score_packed(
        &mut self,
        requests: &[ScoreRequest],
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Vec<Vec<TokenScore>>, BackendError> {
        let cells = self.ctx.n_ctx() as usize;
        let max_seqs = if visit.is_some() { 1 } else { self.n_seq };
        let threads = self.model.config.threads.max(1) as usize;
        let mut out: Vec<Vec<Option<TokenScore>>> =
            requests.iter().map(|r| vec![None; r.n_targets()]).collect();
        for pack in pack::plan(requests, cells, max_seqs) {
            let decoded = self.keep_shared_prefix(&pack, requests).and_then(|kept| {
                self.decode_pack(
                    &pack,
                    kept,
                    requests,
                    threads,
                    &mut out,
                    visit.as_deref_mut(),
                )
            });
            if let Err(e) = decoded {
                self.ctx.clear_kv_cache();
                self.cached.clear();
                return Err(e);
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(index, scores)| {
                scores
                    .into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| BackendError::Engine {
                        op: "packed scoring",
                        reason: format!("request {index}: a target was left unscored"),
                    })
            })
            .collect()
    }

    /// Prepares the cache for `pack`: keeps the part of sequence 0 that begins the pack's
    /// shared prefix (the tokens all its sequences hold before any scored position), drops
    /// every other cell, and hands the kept cells to every sequence. Returns how many leading
    /// nodes of the pack are already in the cache; records the pack's shared prefix as what
    /// sequence 0 will hold.
    fn keep_shared_prefix(
        &mut self,
        pack: &pack::Pack,
        requests: &[ScoreRequest],
    ) -> Result<usize, BackendError> {
        let first_scored = pack
            .requests
            .iter()
            .map(|&r| requests[r].score_from - 1)
            .min()
            .unwrap_or(0);
        let shared: Vec<TokenId> = pack.paths[0]
            .iter()
            .take(first_scored)
            .map(|&node| &pack.nodes[node])
            .take_while(|node| node.seqs.len() == pack.requests.len())
            .map(|node| node.token)
            .collect();
        let mut kept = self
            .cached
            .iter()
            .zip(&shared)
            .take_while(|(a, b)| a == b)
            .count();
        let kv = |op: &'static str, e: String| BackendError::Engine { op, reason: e };
        if kept == 0 {
            self.ctx.clear_kv_cache();
        } else {
            self.ctx.llama_kv_cache_seq_keep(0);
            if self
                .ctx
                .kv_cache_seq_rm(0, Some(kept as u32), None)
                .is_err()
            {
                // A cache that cannot drop a suffix: start over.
                self.ctx.clear_kv_cache();
                kept = 0;
            }
            for seq in (1..pack.requests.len()).filter(|_| kept > 0) {
                self.ctx
                    .kv_cache_seq_cp(0, seq as i32, None, None)
                    .map_err(|e| kv("copy KV cache", e.to_string()))?;
            }
        }
        self.cached = shared;
        // Request 0 made the pack's first nodes, its path in order: the kept prefix.
        Ok(kept)
    }

    /// Decodes one pack, less its first `kept` nodes (already in the cache), in batches of the
    /// session's batch size, and scores each batch's rows into `out[request][target]`.
    fn decode_pack(
        &mut self,
        pack: &pack::Pack,
        kept: usize,
        requests: &[ScoreRequest],
        threads: usize,
        out: &mut [Vec<Option<TokenScore>>],
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<(), BackendError> {
        let fill = |e: llama_cpp_2::llama_batch::BatchAddError| BackendError::Engine {
            op: "fill batch",
            reason: e.to_string(),
        };
        // Batch index of each node's logits row in the decode call that holds it.
        let mut row_of = vec![-1i32; pack.nodes.len()];
        let mut start = kept;
        while start < pack.nodes.len() {
            let end = (start + self.batch_size).min(pack.nodes.len());
            self.batch.clear();
            for (index, (node, row)) in pack.nodes[start..end]
                .iter()
                .zip(&mut row_of[start..end])
                .enumerate()
            {
                // The batch holds room for `n_seq` sequence ids per token.
                if node.seqs.len() > self.n_seq {
                    return Err(BackendError::Engine {
                        op: "fill batch",
                        reason: format!(
                            "a token of {} sequences, more than {}",
                            node.seqs.len(),
                            self.n_seq
                        ),
                    });
                }
                let seqs: Vec<i32> = node.seqs.iter().map(|&s| s as i32).collect();
                self.batch
                    .add(LlamaToken(node.token), node.pos as i32, &seqs, node.logits)
                    .map_err(fill)?;
                // llama.cpp addresses logits rows by their token's index in the batch.
                *row = index as i32;
            }
            self.decode()?;
            // (request, position) of every row this call scores, then the rows themselves.
            let mut at = Vec::new();
            let mut rows = Vec::new();
            for (path, &r) in pack.paths.iter().zip(&pack.requests) {
                let request = &requests[r];
                for (p, &node) in path.iter().enumerate().skip(request.score_from - 1) {
                    if (start..end).contains(&node) {
                        at.push((r, p));
                        rows.push(ScoredRow {
                            request: r,
                            position: p,
                            logits: self.ctx.get_logits_ith(row_of[node]),
                            target: request.tokens[p + 1],
                        });
                    }
                }
            }
            let scores = match visit.as_deref_mut() {
                Some(visit) => {
                    let mut scores = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let one = [(row.position, row.logits, row.target)];
                        scores.extend(score_rows(row.request, &one, 1, Some(&mut *visit))?);
                    }
                    scores
                }
                None => score_row_set(&rows, threads)?,
            };
            for ((r, p), score) in at.into_iter().zip(scores) {
                out[r][p + 1 - requests[r].score_from] = Some(score);
            }
            start = end;
        }
        Ok(())
    }

    fn score_one(
        &mut self,
        index: usize,
        request: &ScoreRequest,
        mut visit: Option<&mut LogitsVisitor<'_>>,
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
        while self.cached.len() < inputs.len() {
            let pos = self.cached.len();
            let end = (pos + self.batch_size).min(inputs.len());
            self.decode_chunk(inputs, end, first_logit)?;
            // Rows with logits, in batch order: batch index i holds position pos + i.
            let rows: Vec<(usize, &[f32], TokenId)> = (pos.max(first_logit)..end)
                .map(|p| (p, self.ctx.get_logits_ith((p - pos) as i32), tokens[p + 1]))
                .collect();
            scores.extend(score_rows(index, &rows, threads, visit.as_deref_mut())?);
        }
        Ok(scores)
    }
}

impl LanguageModel for LlamaCppSession<'_> {
    fn info(&self) -> &ModelInfo {
        &self.model.info
    }

    fn max_sequence_len(&self) -> usize {
        self.max_len
    }

    fn packs_independent_requests(&self) -> bool {
        self.cache_use == CacheUse::Packed
    }

    fn tokens_decoded(&self) -> u64 {
        self.decoded
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, BackendError> {
        Ok(self.model.tokenize(text, add_special))
    }

    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, BackendError> {
        if token < 0 || token as usize >= self.model.info.n_vocab {
            return Err(BackendError::TokenOutOfRange {
                index: 0,
                token,
                n_vocab: self.model.info.n_vocab,
            });
        }
        // Plain text: control tokens (end of turn) stand for no text.
        Ok(self
            .model
            .model
            .vocab()
            .token_to_piece(LlamaToken(token), false, None))
    }

    fn is_end_of_generation(&self, token: TokenId) -> bool {
        self.model.model.vocab().is_eog(LlamaToken(token))
    }

    fn parallel_sequences(&self) -> usize {
        if self.cache_use == CacheUse::Packed {
            self.n_seq.saturating_sub(1).max(1)
        } else {
            1
        }
    }

    fn generate_greedy(
        &mut self,
        requests: &[GenerateRequest],
        on_token: &mut TokenWatcher<'_>,
    ) -> Result<Vec<Vec<TokenId>>, BackendError> {
        if self.cache_use == CacheUse::Packed && self.n_seq > 1 {
            self.generate_batched(requests, on_token)
        } else {
            generate_sequentially(self, requests, on_token)
        }
    }

    fn score_visiting(
        &mut self,
        requests: &[ScoreRequest],
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Vec<Vec<TokenScore>>, BackendError> {
        let n_vocab = self.model.info.n_vocab;
        for (i, r) in requests.iter().enumerate() {
            validate_request(i, r, n_vocab, self.max_len)?;
        }
        if self.cache_use == CacheUse::Packed {
            return self.score_packed(requests, visit);
        }
        if self.cache_use == CacheUse::Independent {
            let mut out = Vec::with_capacity(requests.len());
            for (i, r) in requests.iter().enumerate() {
                self.ctx.clear_kv_cache();
                self.cached.clear();
                out.push(self.score_one(i, r, visit.as_deref_mut())?);
            }
            return Ok(out);
        }
        if requests.len() > 1 && requests.len() <= self.n_seq {
            if let Some(out) = self.score_shared(requests, visit.as_deref_mut())? {
                return Ok(out);
            }
        }
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| self.score_one(i, r, visit.as_deref_mut()))
            .collect()
    }
}
