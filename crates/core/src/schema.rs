//! The results schema: `manifest.json`, `metrics.json` and `samples.jsonl` of every run.
//!
//! Units live in field names (`_bytes`, `_s`), every metric says how it was computed, and the
//! schema carries a version so older runs can be read or refused knowingly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hardware::Hardware;

/// Version of the on-disk schema; bump when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything needed to know what a run measured and to reproduce it (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunManifest {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Directory name of the run under the results store.
    pub run_id: String,
    /// What was run, e.g. `perplexity`.
    pub kind: String,
    /// RFC 3339 time the run started.
    pub started_at: String,
    /// The model measured.
    pub model: ModelRecord,
    /// The engine that computed the numbers.
    pub backend: BackendRecord,
    /// The machine it ran on.
    pub hardware: Hardware,
    /// lmdensity's own version and build.
    pub software: SoftwareRecord,
    /// Every setting of the run (corpus, mode, context length…), as given after defaults.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Hash of `model.sha256`, `backend` settings and `settings`; runs with equal keys may resume
    /// each other.
    pub resume_key: String,
}

/// The model a run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ModelRecord {
    /// Registry id (`models.toml`) or the file name for `--model-path` runs.
    pub id: String,
    /// Path of the weights file that was loaded.
    pub path: String,
    /// sha256 of the weights file (hex).
    pub sha256: String,
    /// Size of the weights file.
    pub file_bytes: u64,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// Weight type, e.g. `Q4_K_M`, `F32`; for converted weights, where they came from.
    pub quantization: String,
    /// Architecture as the file declares it (`general.architecture`).
    pub architecture: String,
    /// Parameter count reported by the engine.
    pub n_params: u64,
    /// Vocabulary size.
    pub n_vocab: u64,
    /// Context length the model was trained with.
    pub n_ctx_train: u64,
}

/// The engine of a run and how it was built and configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct BackendRecord {
    /// `llama.cpp` or `candle`.
    pub name: String,
    /// Version of the binding crate (e.g. `llama-cpp-2 0.1.160`).
    pub version: String,
    /// `cpu` or `cuda:0`…
    pub device: String,
    /// Threads used for prompt processing.
    pub threads: u32,
    /// CPU features the engine was compiled with, as it reports them (llama.cpp's system info).
    pub build_features: String,
    /// Engine-specific settings (batch size, sequences in parallel…).
    pub settings: BTreeMap<String, serde_json::Value>,
}

/// lmdensity's own version and build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SoftwareRecord {
    /// Crate version of lmdensity.
    pub lmdensity_version: String,
    /// `git describe --always --dirty` of the source tree at build time, if known.
    pub git_revision: String,
    /// Rust target CPU flags the binary was built with (`RUSTFLAGS` / `.cargo/config.toml`).
    pub target_features: String,
    /// Versions of the crates that compute numbers.
    pub crate_versions: BTreeMap<String, String>,
}

/// What the laws computed from measurements (`analyses/<id>.json`): a fitted law, effective
/// parameter sizes, or a density trend, with the inputs and the software that computed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnalysisRecord {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// File stem under `analyses/`.
    pub id: String,
    /// `fit`, `density` or `trend`.
    pub kind: String,
    /// RFC 3339 time it was computed.
    pub created_at: String,
    /// lmdensity's own version and build.
    pub software: SoftwareRecord,
    /// Every input setting (data files, law, bootstrap resamples, seed…).
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The result (the laws crate's serialised report).
    pub result: serde_json::Value,
}

/// Whether a run finished.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// All work was done and the metrics are final.
    Complete,
    /// Interrupted or failed; samples written so far are valid and `--resume` continues.
    Partial,
}

/// One reported number (`metrics.json` holds a list of these).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    /// Machine name, e.g. `bits_per_byte`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Standard error of the value, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<f64>,
    /// Unit, e.g. `bits/byte`, `tokens`.
    pub unit: String,
    /// How the number was computed, in one sentence.
    pub how: String,
}

/// The metrics of a run (`metrics.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMetrics {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Whether these are final.
    pub status: RunStatus,
    /// Wall-clock seconds spent computing (this invocation plus resumed ones).
    pub elapsed_s: f64,
    /// The numbers.
    pub metrics: Vec<Metric>,
}

impl Metric {
    /// A metric: `name`, `value` ± `stderr` in `unit`, computed as `how` says.
    pub fn new(name: &str, value: f64, stderr: Option<f64>, unit: &str, how: String) -> Metric {
        Metric {
            name: name.into(),
            value,
            stderr,
            unit: unit.into(),
            how,
        }
    }
}

impl RunMetrics {
    /// The metric called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// One line of `samples.jsonl`: the unit of work a run can resume from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Sample {
    /// One scored window of a perplexity run.
    PerplexityWindow(WindowSample),
    /// One scored item of a downstream task.
    TaskItem(ItemSample),
    /// One timed repetition of a speed test.
    BenchRepetition(BenchSample),
}

/// One timed repetition of a `bench` test: enough to recompute tokens/s and its statistics.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchSample {
    /// Test name (`pp512`, `tg128 @ d1024`).
    pub test: String,
    /// Repetition number, from 0.
    pub repetition: usize,
    /// Tokens processed in the timed part, all sequences.
    pub n_tokens: u64,
    /// Wall time of the timed part, ns.
    pub ns: u64,
    /// Time of the prompt part (time to first token), ns; tests with a prompt only.
    pub prompt_ns: Option<u64>,
}

/// Every choice of one task item scored: enough to recompute acc, acc_norm, acc_bytes and the
/// conditional loss without the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemSample {
    /// Item number in the task's document order, from 0.
    pub index: usize,
    /// Index of the correct choice.
    pub gold: usize,
    /// One score per choice, in the task's choice order.
    pub choices: Vec<ChoiceScore>,
}

/// The log-likelihood of one choice's continuation given its context.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChoiceScore {
    /// Σ ln p over the continuation's tokens (nats).
    pub loglikelihood: f64,
    /// Every continuation token was the model's argmax.
    pub is_greedy: bool,
    /// Continuation tokens.
    pub n_tokens: usize,
    /// Characters of the choice text (lm-eval's acc_norm length).
    pub n_chars: usize,
    /// UTF-8 bytes of the continuation (delimiter included).
    pub n_bytes: usize,
}

/// Log-likelihood totals of one perplexity window; enough to recompute every perplexity metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowSample {
    /// Window number, from 0, in corpus order.
    pub index: usize,
    /// Position in the corpus token stream of the first scored token.
    pub first_scored_token: usize,
    /// Tokens scored in this window.
    pub n_scored: usize,
    /// Σ −ln p(token) over the scored tokens (nats).
    pub nll_sum: f64,
    /// Σ (ln p(token))² over the scored tokens, for the standard error.
    pub nll_sq_sum: f64,
    /// Scored tokens that were the model's argmax.
    pub n_greedy: usize,
    /// Token-by-token comparison with a base model's distributions (KL-divergence runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<WindowComparison>,
}

/// How one window's distributions differ from a stored base run's (`ppl --kld-base`):
/// enough to recompute every KL-divergence statistic, percentiles included.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WindowComparison {
    /// KL(base ‖ this model) per scored token (nats), over the base's stored top-k tokens
    /// plus one bucket for the rest of the vocabulary.
    pub kld: Vec<f32>,
    /// p(target) under this model minus p(target) under the base, per scored token.
    pub delta_p: Vec<f32>,
    /// Scored tokens where both models' most probable token is the same.
    pub n_same_top: usize,
    /// Σ −ln p_base(target) over the scored tokens (nats).
    pub base_nll_sum: f64,
    /// Σ (ln p_base(target) − ln p(target))², for the stderr of ln(PPL/PPL_base).
    pub ln_ratio_sq_sum: f64,
    /// Σ over scored tokens of the base's probability mass outside its stored top-k.
    pub base_residual_sum: f64,
}
