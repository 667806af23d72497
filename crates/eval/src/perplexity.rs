//! Perplexity in two semantics, both computed from the scoring primitive.
//!
//! **Harness mode** follows lm-evaluation-harness `loglikelihood_rolling`: each document is
//! tokenized without special tokens and cut into disjoint windows of `max_length` predicted
//! tokens; the first window is conditioned on a prefix token (BOS, else EOS), later windows on the
//! tokens before them (up to `max_length` inputs), so every token is scored exactly once. Reported:
//! token, word and byte perplexity and bits per byte (word = `re.split(r"\s+", doc)` pieces, byte =
//! UTF-8 bytes, as lm-eval's wikitext task counts them). Bits per byte is the only figure
//! comparable across tokenizers.
//!
//! **llama.cpp mode** follows `llama-perplexity`: the whole text is tokenized with special tokens,
//! cut into `n_ctx` chunks (a remainder shorter than `n_ctx` is dropped), each chunk's first token
//! replaced by BOS when the vocabulary adds BOS, and only the second half of each chunk scored.
//! Reported: PPL ± stderr exactly as llama-perplexity prints its final estimate.

use lmdensity_backend::{BackendError, LanguageModel, ScoreRequest, TokenId, TokenScore};
use lmdensity_core::driver::{drive, Resumable};
use lmdensity_core::schema::{Metric, RunMetrics, RunStatus, Sample, WindowSample};
use lmdensity_core::stats::Accumulator;
use lmdensity_core::{RunHandle, StoreError, SCHEMA_VERSION};

use crate::corpus::Corpus;
use crate::kld::{compare_normalized, BaseReader, BaseWriter, KldError, WindowComparer};

/// What a perplexity run does with the whole distributions besides scoring: nothing, store
/// them as a KL-divergence base, or compare them with a stored base.
pub enum Distributions<'a> {
    /// Score only.
    Ignore,
    /// Write every scored token's distribution to a base file (a fresh run only).
    SaveBase(&'a mut BaseWriter),
    /// Compare every scored token's distribution with the base file's row for it.
    CompareWith(&'a mut BaseReader),
}

/// Which perplexity to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerplexityMode {
    /// lm-evaluation-harness rolling log-likelihood with windows of `max_length` tokens.
    Harness {
        /// Predicted tokens per window (and the most input tokens a window has).
        max_length: usize,
    },
    /// llama-perplexity chunks of `n_ctx` tokens, second half scored.
    LlamaCpp {
        /// Chunk length.
        n_ctx: usize,
    },
}

impl PerplexityMode {
    /// `harness` or `llama.cpp`.
    pub fn name(&self) -> &'static str {
        match self {
            PerplexityMode::Harness { .. } => "harness",
            PerplexityMode::LlamaCpp { .. } => "llama.cpp",
        }
    }

    /// Longest sequence a request of this mode holds (context the engine needs).
    pub fn context_needed(&self) -> usize {
        match *self {
            PerplexityMode::Harness { max_length } => max_length,
            PerplexityMode::LlamaCpp { n_ctx } => n_ctx,
        }
    }
}

/// Why a perplexity run failed. Work finished before the failure stays in the run's samples.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    /// The model failed.
    #[error("window {window}: {source}")]
    Backend {
        /// Window being scored.
        window: usize,
        /// The cause.
        source: BackendError,
    },
    /// Tokenizing failed.
    #[error("tokenizing: {0}")]
    Tokenize(BackendError),
    /// Settings or corpus do not fit.
    #[error("{0}")]
    Config(String),
    /// The results store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Samples on disk belong to another corpus or setting.
    #[error("{0}")]
    Resume(String),
    /// The KL-divergence base file failed or does not match this run.
    #[error(transparent)]
    Kld(#[from] KldError),
}

/// One unit of work: a scoring request and where its targets sit in the token stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Window number in corpus order.
    pub index: usize,
    /// The request.
    pub request: ScoreRequest,
    /// Global index (over all documents' tokens) of the first target.
    pub first_scored_token: usize,
}

/// lm-eval's rolling windows over one document's tokens (`get_rolling_token_windows` with
/// `context_len = 1`, made disjoint): returns `(request, offset of first target in tokens)`.
pub fn rolling_windows(
    tokens: &[TokenId],
    prefix: TokenId,
    max_length: usize,
) -> Vec<(ScoreRequest, usize)> {
    let mut out = Vec::new();
    if tokens.is_empty() || max_length == 0 {
        return out;
    }
    let first = max_length.min(tokens.len());
    let mut seq = Vec::with_capacity(first + 1);
    seq.push(prefix);
    seq.extend_from_slice(&tokens[..first]);
    out.push((
        ScoreRequest {
            tokens: seq,
            score_from: 1,
        },
        0,
    ));
    let mut predicted = first;
    while predicted < tokens.len() {
        let n_pred = (tokens.len() - predicted).min(max_length);
        let end = predicted + n_pred;
        // Inputs are tokens[end - max_length - 1 .. end - 1]; the last target is tokens[end - 1].
        let start = end.saturating_sub(max_length + 1);
        let seq = tokens[start..end].to_vec();
        let score_from = seq.len() - n_pred;
        out.push((
            ScoreRequest {
                tokens: seq,
                score_from,
            },
            predicted,
        ));
        predicted = end;
    }
    out
}

/// llama-perplexity's chunks over the whole token stream.
pub fn llamacpp_chunks(
    tokens: &[TokenId],
    n_ctx: usize,
    bos: Option<TokenId>,
) -> Vec<(ScoreRequest, usize)> {
    let first = n_ctx / 2;
    (0..tokens.len() / n_ctx)
        .map(|i| {
            let start = i * n_ctx;
            let mut seq = tokens[start..start + n_ctx].to_vec();
            if let Some(b) = bos {
                seq[0] = b;
            }
            (
                ScoreRequest {
                    tokens: seq,
                    score_from: first + 1,
                },
                start + first + 1,
            )
        })
        .collect()
}

/// Number of pieces Python's `re.split(r"\s+", doc)` returns (lm-eval's word count).
pub fn count_words(doc: &str) -> usize {
    let mut runs = 0;
    let mut in_ws = false;
    for c in doc.chars() {
        let ws = c.is_whitespace();
        if ws && !in_ws {
            runs += 1;
        }
        in_ws = ws;
    }
    runs + 1
}

/// Builds all windows of a corpus for `mode`; also returns the prefix/BOS token used.
pub fn plan(
    model: &dyn LanguageModel,
    corpus: &Corpus,
    mode: PerplexityMode,
) -> Result<(Vec<Window>, Option<TokenId>), PerplexityError> {
    let info = model.info();
    match mode {
        PerplexityMode::Harness { max_length } => {
            if max_length < 1 {
                return Err(PerplexityError::Config(
                    "max_length must be at least 1".into(),
                ));
            }
            let prefix = info.bos.or(info.eos).ok_or_else(|| {
                PerplexityError::Config(
                    "the vocabulary has neither BOS nor EOS to prefix the first window with".into(),
                )
            })?;
            let mut windows = Vec::new();
            let mut offset = 0;
            for doc in &corpus.documents {
                let tokens = model
                    .tokenize(doc, false)
                    .map_err(PerplexityError::Tokenize)?;
                for (request, first) in rolling_windows(&tokens, prefix, max_length) {
                    windows.push(Window {
                        index: windows.len(),
                        request,
                        first_scored_token: offset + first,
                    });
                }
                offset += tokens.len();
            }
            Ok((windows, Some(prefix)))
        }
        PerplexityMode::LlamaCpp { n_ctx } => {
            if n_ctx < 4 {
                return Err(PerplexityError::Config(format!(
                    "n_ctx {n_ctx} is too small (at least 4)"
                )));
            }
            let tokens = model
                .tokenize(&corpus.joined(), true)
                .map_err(PerplexityError::Tokenize)?;
            if tokens.len() < 2 * n_ctx {
                return Err(PerplexityError::Config(format!(
                    "corpus `{}` has {} tokens; llama.cpp mode needs at least 2 × n_ctx = {}",
                    corpus.name,
                    tokens.len(),
                    2 * n_ctx
                )));
            }
            let bos = if info.add_bos { info.bos } else { None };
            let windows = llamacpp_chunks(&tokens, n_ctx, bos)
                .into_iter()
                .enumerate()
                .map(|(index, (request, first))| Window {
                    index,
                    request,
                    first_scored_token: first,
                })
                .collect();
            Ok((windows, bos))
        }
    }
}

fn summarize(index: usize, first: usize, scores: &[TokenScore]) -> WindowSample {
    let mut acc = Accumulator::default();
    scores.iter().for_each(|s| acc.push(-s.logprob));
    WindowSample {
        index,
        first_scored_token: first,
        n_scored: scores.len(),
        nll_sum: acc.sum,
        nll_sq_sum: acc.sum_sq,
        n_greedy: scores.iter().filter(|s| s.is_greedy).count(),
        comparison: None,
    }
}

/// Base-file rows read at once when comparing.
const BASE_ROWS_PER_READ: usize = 64;

/// Scores one window, handling its distributions as `distributions` says; `first_row` is the
/// window's first scored token's index over the whole run (its row in a base file).
fn score_window(
    model: &mut dyn LanguageModel,
    window: &Window,
    first_row: u64,
    distributions: &mut Distributions<'_>,
) -> Result<WindowSample, PerplexityError> {
    let request = &window.request;
    let targets = &request.tokens[request.score_from..];
    let backend = |source| PerplexityError::Backend {
        window: window.index,
        source,
    };
    let one = std::slice::from_ref(request);
    // Failures of the base file inside the engine's callback are kept here and returned as
    // themselves; the engine sees a generic error that stops it.
    let mut kld_failure: Option<KldError> = None;
    let stop = || BackendError::Engine {
        op: "kl-divergence",
        reason: "base file failed".into(),
    };
    let mut next = 0usize;
    let (scores, comparison) = match distributions {
        Distributions::Ignore => (model.score(one).map_err(backend)?, None),
        Distributions::SaveBase(writer) => {
            let scored = model.score_visiting(
                one,
                Some(&mut |_, logits, norm| {
                    let at = next;
                    next += 1;
                    writer
                        .push_normalized(logits, norm, targets[at])
                        .map_err(|e| {
                            kld_failure = Some(e);
                            stop()
                        })
                }),
            );
            if let Some(e) = kld_failure {
                return Err(e.into());
            }
            (scored.map_err(backend)?, None)
        }
        Distributions::CompareWith(reader) => {
            // Base rows are read a chunk at a time: a whole-vocabulary base row is megabytes.
            let mut chunk: Vec<crate::kld::BaseRow> = Vec::new();
            let mut comparer = WindowComparer::default();
            let scored = model.score_visiting(one, Some(&mut |_, logits, norm| {
                let at = next;
                next += 1;
                if at.is_multiple_of(BASE_ROWS_PER_READ) {
                    let n = BASE_ROWS_PER_READ.min(targets.len() - at);
                    match reader.rows(first_row + at as u64, n) {
                        Ok(rows) => chunk = rows,
                        Err(e) => {
                            kld_failure = Some(e);
                            return Err(stop());
                        }
                    }
                }
                let row = &chunk[at % BASE_ROWS_PER_READ];
                if row.target != targets[at] {
                    kld_failure = Some(KldError::Invalid {
                        path: reader.path().to_path_buf(),
                        reason: format!(
                            "window {}, token {at}: the base scored token {}, this run token {}; the base was made with another tokenizer or corpus",
                            window.index, row.target, targets[at]
                        ),
                    });
                    return Err(stop());
                }
                let token = compare_normalized(row, logits, norm);
                comparer.push(row, &token);
                Ok(())
            }));
            if let Some(e) = kld_failure {
                return Err(e.into());
            }
            (scored.map_err(backend)?, Some(comparer.finish()))
        }
    };
    let scores = scores.into_iter().next().unwrap_or_default();
    let mut sample = summarize(window.index, window.first_scored_token, &scores);
    sample.comparison = comparison;
    Ok(sample)
}

/// Scores every window not already in `run`, appending each as it finishes, then writes and
/// returns the metrics. `on_progress(tokens_done)` is called after each window.
pub fn run(
    model: &mut dyn LanguageModel,
    corpus: &Corpus,
    mode: PerplexityMode,
    run: &mut RunHandle,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<RunMetrics, PerplexityError> {
    run_with(model, corpus, mode, run, Distributions::Ignore, on_progress)
}

/// [`run`], also saving or comparing whole distributions (KL divergence).
pub fn run_with(
    model: &mut dyn LanguageModel,
    corpus: &Corpus,
    mode: PerplexityMode,
    run: &mut RunHandle,
    distributions: Distributions<'_>,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<RunMetrics, PerplexityError> {
    let (windows, _) = plan(model, corpus, mode)?;
    let top_k = match &distributions {
        Distributions::CompareWith(reader) => {
            let planned: usize = windows.iter().map(|w| w.request.n_targets()).sum();
            if reader.n_rows() != planned as u64 {
                return Err(KldError::Invalid {
                    path: reader.path().to_path_buf(),
                    reason: format!(
                        "holds {} scored tokens, this run scores {planned}: not the same corpus, mode or tokenizer",
                        reader.n_rows()
                    ),
                }
                .into());
            }
            Some(reader.header().top_k)
        }
        _ => None,
    };
    // Each window's first scored token's row over the whole run (its row in a base file).
    let first_rows = windows
        .iter()
        .scan(0u64, |row, w| {
            let first = *row;
            *row += w.request.n_targets() as u64;
            Some(first)
        })
        .collect();
    let mut work = WindowWork {
        model,
        corpus,
        mode,
        windows,
        first_rows,
        distributions,
        top_k,
    };
    drive(&mut work, run, on_progress)
}

/// A perplexity run as units of the resumable-run driver: one window per unit.
struct WindowWork<'m, 'd> {
    model: &'m mut dyn LanguageModel,
    corpus: &'m Corpus,
    mode: PerplexityMode,
    windows: Vec<Window>,
    first_rows: Vec<u64>,
    distributions: Distributions<'d>,
    top_k: Option<usize>,
}

fn window_samples(samples: &[Sample]) -> Vec<WindowSample> {
    samples
        .iter()
        .filter_map(|s| match s {
            Sample::PerplexityWindow(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

impl Resumable for WindowWork<'_, '_> {
    type Error = PerplexityError;

    fn n_units(&self) -> usize {
        self.windows.len()
    }

    fn weight(&self, unit: usize) -> usize {
        self.windows[unit].request.n_targets()
    }

    fn unit_of(&self, sample: &Sample, run: &RunHandle) -> Result<usize, PerplexityError> {
        let Sample::PerplexityWindow(w) = sample else {
            return Err(PerplexityError::Resume(format!(
                "{}: holds samples of another kind of run",
                run.dir().display()
            )));
        };
        let planned = self.windows.get(w.index).ok_or_else(|| {
            PerplexityError::Resume(format!(
                "{}: sample for window {} but this corpus has {} windows; not the same run",
                run.dir().display(),
                w.index,
                self.windows.len()
            ))
        })?;
        if planned.first_scored_token != w.first_scored_token
            || planned.request.n_targets() != w.n_scored
        {
            return Err(PerplexityError::Resume(format!(
                "{}: window {} on disk does not match this corpus/tokenizer; start a new run",
                run.dir().display(),
                w.index
            )));
        }
        Ok(w.index)
    }

    fn resuming(&mut self, finished: &[Sample], run: &RunHandle) -> Result<(), PerplexityError> {
        if matches!(self.distributions, Distributions::SaveBase(_)) && !finished.is_empty() {
            return Err(PerplexityError::Config(
                "a KL-divergence base is written in one pass over every window; start a new run instead of resuming".into(),
            ));
        }
        if self.top_k.is_some()
            && window_samples(finished)
                .iter()
                .any(|s| s.comparison.is_none())
        {
            return Err(PerplexityError::Resume(format!(
                "{}: holds windows scored without the KL-divergence base; start a new run",
                run.dir().display()
            )));
        }
        Ok(())
    }

    fn compute(&mut self, unit: usize) -> Result<Vec<Sample>, PerplexityError> {
        let sample = score_window(
            self.model,
            &self.windows[unit],
            self.first_rows[unit],
            &mut self.distributions,
        )?;
        Ok(vec![Sample::PerplexityWindow(sample)])
    }

    fn metrics(&self, samples: &[Sample], status: RunStatus, elapsed_s: f64) -> RunMetrics {
        let windows = window_samples(samples);
        metrics_with(
            self.corpus,
            self.mode,
            &windows,
            status,
            elapsed_s,
            self.top_k,
        )
    }
}

/// [`metrics`], plus the KL-divergence metrics when the samples were compared with a base
/// file storing `top_k` tokens per row.
pub fn metrics_with(
    corpus: &Corpus,
    mode: PerplexityMode,
    samples: &[WindowSample],
    status: RunStatus,
    elapsed_s: f64,
    top_k: Option<usize>,
) -> RunMetrics {
    let mut m = metrics(corpus, mode, samples, status, elapsed_s);
    if let Some(k) = top_k {
        m.metrics.extend(crate::kld::comparison_metrics(samples, k));
    }
    m
}

/// Metrics from window samples (used for finished and partial runs, and to recompute offline).
pub fn metrics(
    corpus: &Corpus,
    mode: PerplexityMode,
    samples: &[WindowSample],
    status: RunStatus,
    elapsed_s: f64,
) -> RunMetrics {
    let mut acc = Accumulator::default();
    let mut greedy = 0;
    for s in samples {
        acc.merge(s.n_scored, s.nll_sum, s.nll_sq_sum);
        greedy += s.n_greedy;
    }
    let n = acc.n as f64;
    let mean = acc.mean();
    let se_mean = acc.stderr_of_mean();
    let metric = Metric::new;
    let mut out = vec![
        metric(
            "tokens_scored",
            n,
            None,
            "tokens",
            format!(
                "tokens whose log-probability was summed, over {} windows",
                samples.len()
            ),
        ),
        metric(
            "nll_per_token",
            mean,
            se_mean,
            "nats/token",
            "mean −ln p(token); stderr treats tokens as independent".into(),
        ),
        metric(
            "token_top1_acc",
            greedy as f64 / n,
            None,
            "fraction",
            "scored tokens that were the model's argmax".into(),
        ),
    ];
    match mode {
        PerplexityMode::Harness { max_length } => {
            let bytes = corpus.n_bytes() as f64;
            let words: usize = corpus.documents.iter().map(|d| count_words(d)).sum();
            let total = acc.sum;
            let se_total = se_mean.map(|s| s * n);
            let ln2 = std::f64::consts::LN_2;
            let how = |unit: &str| {
                format!(
                    "lm-eval loglikelihood_rolling, windows of {max_length}: exp(Σ −ln p / {unit}); stderr by the delta method from the per-token stderr"
                )
            };
            let ppl_over = |count: f64| (total / count).exp();
            out.push(metric(
                "token_perplexity",
                (mean).exp(),
                se_mean.map(|s| s * mean.exp()),
                "",
                how("tokens"),
            ));
            out.push(metric(
                "word_perplexity",
                ppl_over(words as f64),
                se_total.map(|s| s / words as f64 * ppl_over(words as f64)),
                "",
                how(&format!("{words} words (re.split(r\"\\s+\"))")),
            ));
            out.push(metric(
                "byte_perplexity",
                ppl_over(bytes),
                se_total.map(|s| s / bytes * ppl_over(bytes)),
                "",
                how(&format!("{bytes} UTF-8 bytes")),
            ));
            out.push(metric(
                "bits_per_byte",
                total / bytes / ln2,
                se_total.map(|s| s / bytes / ln2),
                "bits/byte",
                format!("lm-eval loglikelihood_rolling, windows of {max_length}: Σ −ln p / ({bytes} bytes · ln 2); comparable across tokenizers"),
            ));
        }
        PerplexityMode::LlamaCpp { n_ctx } => {
            // llama-perplexity: nll2/count − nll², sqrt(that / (count − 1)) × ppl.
            let ppl = mean.exp();
            let var = acc.sum_sq / n - mean * mean;
            let stderr = (var > 0.0 && n > 1.0).then(|| (var / (n - 1.0)).sqrt() * ppl);
            out.push(metric(
                "perplexity",
                ppl,
                stderr,
                "",
                format!("llama-perplexity semantics: {} chunks of n_ctx {n_ctx}, BOS per chunk, second half scored; stderr as llama-perplexity prints it", samples.len()),
            ));
        }
    }
    RunMetrics {
        schema_version: SCHEMA_VERSION,
        status,
        elapsed_s,
        metrics: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmdensity_backend::toy::ToyBigram;

    #[test]
    fn rolling_windows_score_every_token_once() {
        let tokens: Vec<TokenId> = (10..33).collect();
        for max_len in [1, 4, 5, 22, 23, 50] {
            let ws = rolling_windows(&tokens, 0, max_len);
            let mut covered = Vec::new();
            for (r, first) in &ws {
                assert!(r.tokens.len() - 1 <= max_len, "inputs fit in max_len");
                let targets = &r.tokens[r.score_from..];
                assert_eq!(targets, &tokens[*first..*first + targets.len()]);
                covered.extend_from_slice(targets);
            }
            assert_eq!(covered, tokens, "max_len {max_len}");
            assert_eq!(
                ws[0].0.tokens[0], 0,
                "first window starts with the prefix token"
            );
        }
    }

    #[test]
    fn rolling_last_window_gets_full_context() {
        // lm-eval: the last partial window re-reads earlier tokens as context.
        let tokens: Vec<TokenId> = (1..=10).collect();
        let ws = rolling_windows(&tokens, 0, 4);
        assert_eq!(ws.len(), 3);
        assert_eq!(
            ws[1].0,
            ScoreRequest {
                tokens: vec![4, 5, 6, 7, 8],
                score_from: 1
            }
        );
        assert_eq!(
            ws[2].0,
            ScoreRequest {
                // inputs tokens[end - max_len - 1 .. end - 1] = [6, 7, 8, 9], targets [9, 10]
                tokens: vec![6, 7, 8, 9, 10],
                score_from: 3
            }
        );
        assert_eq!(ws[2].1, 8);
    }

    #[test]
    fn llamacpp_chunks_score_second_half() {
        let tokens: Vec<TokenId> = (100..125).collect();
        let cs = llamacpp_chunks(&tokens, 8, Some(1));
        assert_eq!(cs.len(), 3, "remainder dropped");
        assert_eq!(cs[1].0.tokens[0], 1, "BOS replaces the first token");
        assert_eq!(cs[1].0.tokens[1..], tokens[9..16]);
        assert_eq!(cs[1].0.score_from, 5);
        assert_eq!(cs[1].0.n_targets(), 3, "n_ctx - 1 - n_ctx/2 tokens");
    }

    #[test]
    fn word_count_matches_python_re_split() {
        assert_eq!(count_words("a b"), 2);
        assert_eq!(count_words(" a  b \n"), 4); // ['', 'a', 'b', '']
        assert_eq!(count_words("one"), 1);
    }

    #[test]
    fn harness_totals_equal_direct_sum_on_toy_model() {
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(7);
        let corpus = Corpus::new("toy", vec![text.clone()], "test");
        let mut model = ToyBigram::new(16);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = lmdensity_core::ResultsStore::new(dir.path());
        let mut handle = store.create_run(test_manifest()).expect("run");
        let m = run(
            &mut model,
            &corpus,
            PerplexityMode::Harness { max_length: 16 },
            &mut handle,
            &mut |_, _| {},
        )
        .expect("run");
        // A bigram model's score depends only on the previous token, so the total is the sum of
        // ln p(t_i | t_{i-1}) with t_{-1} = BOS whatever the windowing.
        let toks = model.tokenize(&text, false).expect("tok");
        let mut prev = 0;
        let mut direct = 0.0;
        for &t in &toks {
            direct -= lmdensity_backend::score_logits(&model.logits_after(prev), t)
                .expect("finite")
                .logprob;
            prev = t;
        }
        let bpb = m.get("bits_per_byte").expect("bpb").value;
        assert!((bpb - direct / text.len() as f64 / std::f64::consts::LN_2).abs() < 1e-9);
        assert_eq!(m.get("tokens_scored").expect("n").value, toks.len() as f64);
    }

    #[test]
    fn resume_scores_only_missing_windows() {
        let text = "abcdefghij".repeat(10);
        let corpus = Corpus::new("toy", vec![text], "test");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = lmdensity_core::ResultsStore::new(dir.path());
        let mode = PerplexityMode::Harness { max_length: 8 };
        let mut full_model = ToyBigram::new(8);
        let mut handle = store.create_run(test_manifest()).expect("run");
        let full = run(&mut full_model, &corpus, mode, &mut handle, &mut |_, _| {}).expect("run");
        let n_windows = full_model.calls.len();
        // Keep only the first 5 samples, as a kill would.
        let samples_path = handle.dir().join("samples.jsonl");
        let kept: Vec<String> = std::fs::read_to_string(&samples_path)
            .expect("read")
            .lines()
            .take(5)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&samples_path, kept.concat()).expect("write");
        std::fs::remove_file(handle.dir().join("metrics.json")).expect("rm");
        drop(handle);
        let mut handle = store
            .find_resumable("key")
            .expect("find")
            .expect("resumable");
        let mut model = ToyBigram::new(8);
        let resumed = run(&mut model, &corpus, mode, &mut handle, &mut |_, _| {}).expect("resume");
        assert_eq!(
            model.calls.len(),
            n_windows - 5,
            "only missing windows are scored"
        );
        assert_eq!(full.get("bits_per_byte"), resumed.get("bits_per_byte"));
    }

    fn kld_header(model: &ToyBigram, corpus: &Corpus, context: usize) -> crate::BaseHeader {
        crate::BaseHeader {
            model: "toy".into(),
            model_sha256: "00".into(),
            quantization: "exact".into(),
            backend: "toy".into(),
            corpus: corpus.name.clone(),
            corpus_sha256: corpus.sha256.clone(),
            mode: "harness".into(),
            context,
            n_vocab: model.info().n_vocab,
            top_k: 16,
        }
    }

    #[test]
    fn kl_divergence_is_zero_against_itself_and_grows_with_the_perturbation() {
        let text = "the quick brown fox jumps over the lazy dog. ".repeat(5);
        let corpus = Corpus::new("toy", vec![text], "test");
        let mode = PerplexityMode::Harness { max_length: 16 };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = lmdensity_core::ResultsStore::new(dir.path());
        let base_path = dir.path().join("base.kld");
        let mut base_model = ToyBigram::new(16);
        let mut writer =
            BaseWriter::create(&base_path, &kld_header(&base_model, &corpus, 16)).expect("create");
        let mut handle = store.create_run(named_manifest("1")).expect("run");
        let base = run_with(
            &mut base_model,
            &corpus,
            mode,
            &mut handle,
            Distributions::SaveBase(&mut writer),
            &mut |_, _| {},
        )
        .expect("base run");
        let n = base.get("tokens_scored").expect("n").value as u64;
        assert_eq!(writer.rows(), n);
        writer.finish().expect("flush");
        let mut previous = -1.0;
        for noise in [0.0, 0.5, 2.0] {
            let mut model = ToyBigram::perturbed(16, noise);
            let mut reader = BaseReader::open(&base_path).expect("open");
            let mut handle = store
                .create_run(named_manifest(&format!("noise-{noise}")))
                .expect("run");
            let m = run_with(
                &mut model,
                &corpus,
                mode,
                &mut handle,
                Distributions::CompareWith(&mut reader),
                &mut |_, _| {},
            )
            .expect("compared run");
            let kld = m.get("kld_mean").expect("kld").value;
            let ratio = m.get("ln_ppl_ratio").expect("ratio").value;
            let base_ppl = m.get("base_token_perplexity").expect("base ppl").value;
            assert!(
                (base_ppl - base.get("token_perplexity").expect("ppl").value).abs() < 1e-4,
                "the base file reproduces the base run's perplexity"
            );
            if noise == 0.0 {
                assert!(kld < 1e-9 && ratio.abs() < 1e-6, "{kld} {ratio}");
                assert_eq!(m.get("same_top_rate").expect("same").value, 1.0);
            }
            assert!(kld > previous, "noise {noise}: KLD {kld} after {previous}");
            previous = kld;
            assert!(m.get("kld_max").expect("max").value >= m.get("kld_p99").expect("p99").value);
        }
        // A resumed base run is refused: the file would miss the earlier windows.
        let mut model = ToyBigram::new(16);
        let mut writer =
            BaseWriter::create(&dir.path().join("b2.kld"), &kld_header(&model, &corpus, 16))
                .expect("create");
        std::fs::remove_file(handle.dir().join("metrics.json")).expect("rm");
        let mut resumed = store
            .find_resumable("key")
            .expect("find")
            .expect("the base run, made unfinished");
        let err = run_with(
            &mut model,
            &corpus,
            mode,
            &mut resumed,
            Distributions::SaveBase(&mut writer),
            &mut |_, _| {},
        )
        .expect_err("refused");
        assert!(err.to_string().contains("one pass"), "{err}");
    }

    #[test]
    fn kl_divergence_against_another_text_is_refused() {
        let mode = PerplexityMode::Harness { max_length: 8 };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = lmdensity_core::ResultsStore::new(dir.path());
        let base_path = dir.path().join("base.kld");
        let a = Corpus::new("toy", vec!["abcdefghijklmnop".into()], "test");
        let b = Corpus::new("toy", vec!["abcdefghijklmnoX".into()], "test");
        let mut model = ToyBigram::new(8);
        let mut writer =
            BaseWriter::create(&base_path, &kld_header(&model, &a, 8)).expect("create");
        let mut handle = store.create_run(named_manifest("3")).expect("run");
        run_with(
            &mut model,
            &a,
            mode,
            &mut handle,
            Distributions::SaveBase(&mut writer),
            &mut |_, _| {},
        )
        .expect("base");
        writer.finish().expect("flush");
        let mut reader = BaseReader::open(&base_path).expect("open");
        let mut handle = store.create_run(named_manifest("4")).expect("run");
        let err = run_with(
            &mut model,
            &b,
            mode,
            &mut handle,
            Distributions::CompareWith(&mut reader),
            &mut |_, _| {},
        )
        .expect_err("different tokens");
        assert!(
            err.to_string().contains("base.kld") && err.to_string().contains("another tokenizer"),
            "{err}"
        );
    }

    fn named_manifest(run_id: &str) -> lmdensity_core::RunManifest {
        lmdensity_core::RunManifest {
            run_id: run_id.into(),
            ..test_manifest()
        }
    }

    fn test_manifest() -> lmdensity_core::RunManifest {
        lmdensity_core::RunManifest {
            schema_version: SCHEMA_VERSION,
            run_id: "r".into(),
            kind: "perplexity".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            model: Default::default(),
            backend: Default::default(),
            hardware: Default::default(),
            software: Default::default(),
            settings: Default::default(),
            resume_key: "key".into(),
        }
    }
}
