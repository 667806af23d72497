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
    /// One generated answer of a generative (`generate_until`) task.
    Generation(GenerationSample),
}

/// Why a generation ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StopReason {
    /// One of the task's stop sequences appeared (the text is cut before it).
    StopSequence {
        /// The sequence.
        sequence: String,
    },
    /// The model produced an end-of-generation token (EOS, end of turn).
    EndOfGeneration,
    /// The token budget (`max_gen_toks`) was used up.
    TokenBudget,
}

/// One item of a generative task: the answer generated and the reference it is held against;
/// enough to recompute every extraction and match without the model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerationSample {
    /// Item number in the task's document order, from 0.
    pub index: usize,
    /// The generated text, cut before the first stop sequence.
    pub text: String,
    /// Tokens generated (the stopping token included).
    pub n_tokens: usize,
    /// Prompt tokens.
    pub n_prompt_tokens: usize,
    /// Why generation ended.
    pub stop: StopReason,
    /// The reference answer.
    pub reference: String,
    /// Other answers that count as right too (lm-eval's multiple targets: TriviaQA's aliases,
    /// NQ-open's answers); absent when there is one reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_accepted: Vec<String>,
    /// For code tasks: how the generated program fared against the item's tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionOutcome>,
}

/// How a generated program fared when run with its tests (in a sandbox).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ExecutionOutcome {
    /// It exited normally: every test passed.
    Passed,
    /// It raised or exited with an error (the end of its error output).
    Failed {
        /// The last lines it wrote to stderr, or its exit status.
        error: String,
    },
    /// It was still running at the wall-clock limit and was killed.
    TimedOut {
        /// The limit, seconds.
        seconds: f64,
    },
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

// ── The quantization sweep's table (`sweep.json`) ────────────────────────────────────────────

/// A value with its standard error.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Its standard error (tokens or items treated as independent), if it has one.
    pub stderr: Option<f64>,
}

/// Speed of one test: mean and standard deviation over the repetitions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    /// Mean tokens/s.
    pub mean_ts: f64,
    /// Standard deviation of tokens/s.
    pub sd_ts: f64,
}

/// One measured weights file of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepRow {
    /// `F32`, `Q4_1 (source)`, `Q8_0`…
    pub variant: String,
    /// `base` (the F32 reference), `source` (the registry file) or `variant` (re-quantized).
    pub role: String,
    /// The file's own label (`Q6_K, requantized from F32 dequantized from Q4_1`).
    pub quantization: String,
    /// The GGUF measured.
    pub file: String,
    /// Its size.
    pub file_bytes: u64,
    /// Tensor data bits per parameter.
    pub bits_per_weight: f64,
    /// Harness-mode bits per byte on the sweep's corpus.
    pub bits_per_byte: Estimate,
    /// Mean KL(base ‖ variant) per token (nats; top-k + residual bound); none for the base.
    pub kld_mean: Option<Estimate>,
    /// 99th percentile of the per-token KLD.
    pub kld_p99: Option<f64>,
    /// Largest per-token KLD.
    pub kld_max: Option<f64>,
    /// Tokens whose most probable token is the base's.
    pub same_top_rate: Option<Estimate>,
    /// Root mean square of p(target) − p_base(target).
    pub delta_p_rms: Option<f64>,
    /// ln(PPL(variant)/PPL(base)).
    pub ln_ppl_ratio: Option<Estimate>,
    /// Task accuracy by task name.
    pub tasks: BTreeMap<String, Estimate>,
    /// pp512 speed.
    pub pp512: Option<Speed>,
    /// tg128 speed.
    pub tg128: Option<Speed>,
    /// Peak resident memory over the speed tests.
    pub peak_rss_bytes: Option<u64>,
    /// Run directories the numbers come from.
    pub runs: Vec<String>,
}

/// Whether KLD grows as bits per weight drop, and where it does not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KldOrder {
    /// KLD rises at every step down in bits per weight.
    pub monotonic: bool,
    /// Each step where it does not: `Q4_0 (4.55 bpw) 0.0412 < Q4_K_M (4.91 bpw) 0.0498`.
    pub violations: Vec<String>,
}

/// The sweep's result (`sweep.json`): the settings and one row per weights file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepTable {
    /// Results-schema version of the writer.
    pub schema_version: u32,
    /// Registry model id.
    pub model: String,
    /// The registry GGUF's quantization (what the F32 base was dequantized from).
    pub source_quantization: String,
    /// Corpus name (a slice says so: `ptb-test[..40000]`).
    pub corpus: String,
    /// Harness-mode window.
    pub max_length: Option<usize>,
    /// Tasks scored.
    pub tasks: String,
    /// Items per task.
    pub task_limit: Option<usize>,
    /// Repetitions of the speed tests.
    pub bench_repetitions: usize,
    /// CPU model of the machine.
    pub machine: String,
    /// lmdensity's git revision.
    pub git_revision: String,
    /// The rows, base first.
    pub rows: Vec<SweepRow>,
    /// KLD against bits per weight over the re-quantized variants.
    pub kld_order: Option<KldOrder>,
}

impl SweepTable {
    /// Whether a stored table was made with the same settings (its rows can be kept).
    pub fn same_settings(&self, other: &SweepTable) -> bool {
        (
            &self.model,
            &self.corpus,
            self.max_length,
            &self.tasks,
            self.task_limit,
            self.bench_repetitions,
        ) == (
            &other.model,
            &other.corpus,
            other.max_length,
            &other.tasks,
            other.task_limit,
            other.bench_repetitions,
        )
    }
}

/// KLD order over the `variant` rows, by descending bits per weight.
pub fn kld_order(rows: &[SweepRow]) -> Option<KldOrder> {
    let mut variants: Vec<(&SweepRow, f64)> = rows
        .iter()
        .filter(|r| r.role == "variant")
        .filter_map(|r| r.kld_mean.map(|k| (r, k.value)))
        .collect();
    if variants.len() < 2 {
        return None;
    }
    variants.sort_by(|a, b| b.0.bits_per_weight.total_cmp(&a.0.bits_per_weight));
    let violations: Vec<String> = variants
        .windows(2)
        .filter(|w| w[1].1 <= w[0].1)
        .map(|w| {
            format!(
                "{} ({:.2} bpw) KLD {:.5} ≤ {} ({:.2} bpw) KLD {:.5}",
                w[1].0.variant,
                w[1].0.bits_per_weight,
                w[1].1,
                w[0].0.variant,
                w[0].0.bits_per_weight,
                w[0].1
            )
        })
        .collect();
    Some(KldOrder {
        monotonic: violations.is_empty(),
        violations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, bpw: f64, kld: f64) -> SweepRow {
        SweepRow {
            variant: variant.into(),
            role: "variant".into(),
            quantization: variant.into(),
            file: String::new(),
            file_bytes: 0,
            bits_per_weight: bpw,
            bits_per_byte: Estimate {
                value: 1.0,
                stderr: None,
            },
            kld_mean: Some(Estimate {
                value: kld,
                stderr: None,
            }),
            kld_p99: None,
            kld_max: None,
            same_top_rate: None,
            delta_p_rms: None,
            ln_ppl_ratio: None,
            tasks: BTreeMap::new(),
            pp512: None,
            tg128: None,
            peak_rss_bytes: None,
            runs: Vec::new(),
        }
    }

    #[test]
    fn kld_order_reports_each_step_that_does_not_rise() {
        let rows = vec![
            row("Q8_0", 8.5, 0.001),
            row("Q4_K_M", 4.9, 0.05),
            row("Q4_0", 4.5, 0.04),
        ];
        let order = kld_order(&rows).expect("two variants");
        assert!(!order.monotonic);
        assert_eq!(order.violations.len(), 1);
        assert!(
            order.violations[0].starts_with("Q4_0"),
            "{:?}",
            order.violations
        );
        let rows = vec![row("Q2_K", 3.0, 0.3), row("Q8_0", 8.5, 0.001)];
        assert!(kld_order(&rows).expect("two").monotonic);
    }
}
