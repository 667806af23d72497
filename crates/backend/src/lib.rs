//! The backend-agnostic language-model trait and the scoring primitive every metric builds on.
//!
//! Every metric in lmdensity (perplexity in both modes, task log-likelihoods, greedy matches)
//! is computed from one operation, [`LanguageModel::score`]: for each token sequence, the
//! log-probability the model gives each target token given everything before it, and whether it
//! was the model's argmax. Engines (llama.cpp, candle) implement only that and tokenization.
//! [`score_logits`] is the one place logits become scores, so all engines agree on the maths.

pub mod toy;

use serde::{Deserialize, Serialize};

/// A token id in the model's vocabulary.
pub type TokenId = i32;

/// Static facts about a loaded model that metrics need.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// Architecture as declared by the weights (e.g. `llama`, `gemma3`).
    pub architecture: String,
    /// Vocabulary size (width of a logits row).
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// Parameter count.
    pub n_params: u64,
    /// Beginning-of-sequence token, if the vocabulary has one.
    pub bos: Option<TokenId>,
    /// End-of-sequence / end-of-text token, if the vocabulary has one.
    pub eos: Option<TokenId>,
    /// Whether the tokenizer adds BOS by default (GGUF `tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

/// Score `tokens[score_from..]`, each conditioned on all tokens before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    /// The whole sequence: conditioning context followed by the targets.
    pub tokens: Vec<TokenId>,
    /// Index of the first target; at least 1 (the first token has nothing to condition on).
    pub score_from: usize,
}

impl ScoreRequest {
    /// Number of target tokens.
    pub fn n_targets(&self) -> usize {
        self.tokens.len().saturating_sub(self.score_from)
    }
}

/// The model's verdict on one target token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenScore {
    /// ln p(target | prefix), natural log.
    pub logprob: f64,
    /// Whether the target was the argmax of the distribution (first index wins ties).
    pub is_greedy: bool,
}

/// Errors shared by all backends; each says which file or request it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The weights could not be loaded.
    #[error("{path}: cannot load model: {reason}")]
    Load {
        /// The weights file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A request is malformed (empty, nothing to score, longer than the context).
    #[error("request {index}: {reason}")]
    BadRequest {
        /// Position of the request in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The model produced NaN or infinite logits.
    #[error("request {index}, position {position}: model produced non-finite logits ({value}); the weights may be corrupt or the computation overflowed")]
    NonFiniteLogits {
        /// Request index.
        index: usize,
        /// Token position whose logits were bad.
        position: usize,
        /// The offending value.
        value: f32,
    },
    /// A token id is outside the vocabulary.
    #[error("request {index}: token id {token} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange {
        /// Request index.
        index: usize,
        /// The token.
        token: TokenId,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// The engine failed while computing.
    #[error("{op}: {reason}")]
    Engine {
        /// What the engine was doing.
        op: &'static str,
        /// Its message.
        reason: String,
    },
}

/// A language model that can tokenize text and score token sequences.
pub trait LanguageModel {
    /// Facts about the model.
    fn info(&self) -> &ModelInfo;

    /// Largest sequence length one request may have (the context the engine was created with).
    fn max_sequence_len(&self) -> usize;

    /// Tokenizes `text` as the model's tokenizer does; with `add_special`, BOS (and other
    /// special tokens the tokenizer adds by default) are added.
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, BackendError>;

    /// Scores each request: one [`TokenScore`] per target token, in order. Engines may batch
    /// requests and reuse the KV cache of a prefix shared with the previous request.
    fn score(&mut self, requests: &[ScoreRequest]) -> Result<Vec<Vec<TokenScore>>, BackendError> {
        self.score_visiting(requests, None)
    }

    /// [`LanguageModel::score`], also handing `visit(request, logits, normalizer)` the whole
    /// logits row that predicts each target, request by request and target by target in order
    /// (KL divergence needs whole distributions, not only the target's score). The normalizer
    /// is the one the target's score was computed from, so no row is normalized twice. `None`:
    /// plain scoring (rows may then be scored in parallel).
    fn score_visiting(
        &mut self,
        requests: &[ScoreRequest],
        visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Vec<Vec<TokenScore>>, BackendError>;

    /// Whether [`LanguageModel::score`] packs independent requests (other items) into shared
    /// decode calls, so callers gain by handing many items' requests over at once. Engines
    /// that score one item at a time say `false` (the default), and callers then hand over
    /// one item's requests per call (its choices still share their context).
    fn packs_independent_requests(&self) -> bool {
        false
    }

    /// Tokens this session has run through the model so far (its decode calls' sizes), for
    /// throughput figures; 0 where the engine does not count.
    fn tokens_decoded(&self) -> u64 {
        0
    }

    /// The bytes `token` stands for when text is generated (its piece; special tokens give
    /// nothing). Generation needs it; engines that cannot say refuse.
    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Engine {
            op: "detokenize",
            reason: format!(
                "this engine cannot turn token {token} back into text, so it cannot generate"
            ),
        })
    }

    /// Whether `token` ends generation (EOS, or another end-of-generation token such as a
    /// chat model's end of turn).
    fn is_end_of_generation(&self, token: TokenId) -> bool {
        self.info().eos == Some(token)
    }

    /// Sequences [`LanguageModel::generate_greedy`] decodes at once (1: one after another).
    fn parallel_sequences(&self) -> usize {
        1
    }

    /// Greedy decoding: for each request, the argmax token after its prompt, then after the
    /// prompt and that token, and so on; `on_token` sees every token as it is chosen (with its
    /// text and whether it ends generation) and returns whether that sequence goes on. A sequence also ends after
    /// `max_new_tokens`. Returns each request's generated tokens (the last one that
    /// `on_token` refused included).
    ///
    /// The default decodes one request after another through [`LanguageModel::score_visiting`]
    /// (each step a request whose one target is a placeholder, the argmax read off the row
    /// its visitor gets), so every engine can generate; engines whose sessions reuse the
    /// cached prefix pay one token per step. Engines that batch sequences override it.
    fn generate_greedy(
        &mut self,
        requests: &[GenerateRequest],
        on_token: &mut TokenWatcher<'_>,
    ) -> Result<Vec<Vec<TokenId>>, BackendError> {
        generate_sequentially(self, requests, on_token)
    }
}

/// A token just generated, as a [`TokenWatcher`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedToken<'a> {
    /// The request it continues.
    pub request: usize,
    /// The token.
    pub token: TokenId,
    /// The text it stands for ([`LanguageModel::token_bytes`]).
    pub bytes: &'a [u8],
    /// Whether it ends generation ([`LanguageModel::is_end_of_generation`]).
    pub end_of_generation: bool,
}

/// Sees each generated token and says whether its sequence goes on.
pub type TokenWatcher<'a> = dyn FnMut(&GeneratedToken<'_>) -> bool + 'a;

/// One greedy generation: the prompt's tokens and the most tokens to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateRequest {
    /// The prompt, BOS included where wanted.
    pub prompt: Vec<TokenId>,
    /// Largest number of tokens to generate.
    pub max_new_tokens: usize,
}

/// [`LanguageModel::generate_greedy`] one request after another, through
/// [`LanguageModel::score_visiting`]: each step scores a placeholder target after the tokens so
/// far and takes the argmax of the row the visitor sees (engines that override
/// `generate_greedy` can fall back on it).
pub fn generate_sequentially<M: LanguageModel + ?Sized>(
    model: &mut M,
    requests: &[GenerateRequest],
    on_token: &mut TokenWatcher<'_>,
) -> Result<Vec<Vec<TokenId>>, BackendError> {
    let mut out = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        if request.prompt.is_empty() {
            return Err(BackendError::BadRequest {
                index,
                reason: "empty prompt: nothing to condition the first token on".into(),
            });
        }
        let mut tokens = request.prompt.clone();
        let mut generated = Vec::new();
        while generated.len() < request.max_new_tokens {
            let score_from = tokens.len();
            tokens.push(0);
            let step = ScoreRequest {
                tokens: std::mem::take(&mut tokens),
                score_from,
            };
            let mut next = None;
            let mut pick = |_: usize, _: &[f32], norm: &LogSoftmax| {
                next = Some(norm.argmax as TokenId);
                Ok(())
            };
            model
                .score_visiting(std::slice::from_ref(&step), Some(&mut pick))
                .map_err(|e| match e {
                    BackendError::BadRequest { reason, .. } => {
                        BackendError::BadRequest { index, reason }
                    }
                    other => other,
                })?;
            tokens = step.tokens;
            tokens.pop();
            let Some(token) = next else {
                return Err(BackendError::Engine {
                    op: "generate",
                    reason: "the engine scored the step without showing its logits".into(),
                });
            };
            tokens.push(token);
            generated.push(token);
            let seen = GeneratedToken {
                request: index,
                token,
                bytes: &model.token_bytes(token)?,
                end_of_generation: model.is_end_of_generation(token),
            };
            if !on_token(&seen) {
                break;
            }
        }
        out.push(generated);
    }
    Ok(out)
}

/// Receives `(request index, logits row, its log-softmax normalizer)` for every scored target,
/// in order.
pub type LogitsVisitor<'a> = dyn FnMut(usize, &[f32], &LogSoftmax) -> Result<(), BackendError> + 'a;

/// A context of an engine whose raw speed can be measured (`lmdensity bench`): the operations
/// llama-bench times, on token ids the caller chooses, so timings exclude tokenization and
/// sampling. Sequences are numbered from 0 up to the number the context was created for.
pub trait DecodeBench {
    /// Empties the KV cache of every sequence.
    fn clear(&mut self) -> Result<(), BackendError>;

    /// Prompt processing: appends `prompts[i]` to sequence `i` (after what it already holds),
    /// in decode calls of at most the context's batch size, with logits for the last token of
    /// each call, as llama-bench's prompt test. Returns when the computation has finished.
    fn prefill(&mut self, prompts: &[Vec<TokenId>]) -> Result<(), BackendError>;

    /// One generation step: appends `tokens[i]` to sequence `i` in one decode call, with
    /// logits for every token. Returns when the computation has finished.
    fn generate_step(&mut self, tokens: &[TokenId]) -> Result<(), BackendError>;

    /// Bytes of KV-cache state that sequence 0 holds now (keys and values of its cells).
    fn kv_cache_bytes(&self) -> u64;
}

/// Checks a request against a model before it reaches an engine.
pub fn validate_request(
    index: usize,
    request: &ScoreRequest,
    n_vocab: usize,
    max_len: usize,
) -> Result<(), BackendError> {
    let bad = |reason: String| BackendError::BadRequest { index, reason };
    if request.score_from == 0 {
        return Err(bad(
            "score_from must be at least 1: the first token has no context".into(),
        ));
    }
    if request.score_from >= request.tokens.len() {
        return Err(bad(format!(
            "nothing to score: score_from {} with {} tokens",
            request.score_from,
            request.tokens.len()
        )));
    }
    // The last token is only a target, never an input.
    if request.tokens.len() - 1 > max_len {
        return Err(bad(format!(
            "{} input tokens exceed the context of {max_len}",
            request.tokens.len() - 1
        )));
    }
    if let Some(&token) = request
        .tokens
        .iter()
        .find(|&&t| t < 0 || t as usize >= n_vocab)
    {
        return Err(BackendError::TokenOutOfRange {
            index,
            token,
            n_vocab,
        });
    }
    Ok(())
}

/// The normalizer of one logits row: ln p(i) = `logits[i] − max − ln_z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSoftmax {
    /// Largest logit.
    pub max: f32,
    /// ln Σ exp(logit − max).
    pub ln_z: f64,
    /// Index of the largest logit (the first one on ties).
    pub argmax: usize,
}

impl LogSoftmax {
    /// ln p(`index`) under the row this normalizer came from.
    pub fn logprob(&self, logits: &[f32], index: usize) -> f64 {
        f64::from(logits[index] - self.max) - self.ln_z
    }
}

/// Length of the prefix every sequence shares (0 for none).
pub fn common_prefix_len<'a>(sequences: impl IntoIterator<Item = &'a [TokenId]>) -> usize {
    let mut sequences = sequences.into_iter();
    let Some(first) = sequences.next() else {
        return 0;
    };
    sequences.fold(first.len(), |n, other| {
        n.min(first.iter().zip(other).take_while(|(a, b)| a == b).count())
    })
}

/// The argmax of one logits row (the first index on ties), the greedy choice; non-finite
/// logits are an error carrying the first bad value.
pub fn greedy_token(logits: &[f32]) -> Result<TokenId, f32> {
    let mut best = 0usize;
    let mut max = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_finite() {
            return Err(l);
        }
        if l > max {
            max = l;
            best = i;
        }
    }
    Ok(best as TokenId)
}

/// Turns one row of logits into the score of `target` (see [`log_softmax`]).
pub fn score_logits(logits: &[f32], target: TokenId) -> Result<TokenScore, f32> {
    let norm = log_softmax(logits)?;
    let t = target as usize;
    Ok(TokenScore {
        logprob: norm.logprob(logits, t),
        is_greedy: norm.argmax == t,
    })
}

/// The log-softmax normalizer of one row, computed after subtracting the max (exponentials in
/// f32, eight lanes at a time with `wide`'s polynomial `exp`, about 1 ulp; sums folded into
/// f64 every 1024 values), and argmax with the first index winning ties. Non-finite logits
/// are an error carrying the first bad value.
pub fn log_softmax(logits: &[f32]) -> Result<LogSoftmax, f32> {
    use wide::f32x8;
    let lanes = logits.chunks_exact(8);
    let tail = lanes.remainder();
    let mut max8 = f32x8::splat(f32::NEG_INFINITY);
    let mut finite = true;
    for lane in lanes {
        let v = f32x8::from(<[f32; 8]>::try_from(lane).unwrap_or_default());
        finite &= v.is_finite().all();
        max8 = max8.max(v);
    }
    let mut max = max8
        .to_array()
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    for &l in tail {
        finite &= l.is_finite();
        max = max.max(l);
    }
    if !finite {
        let bad = logits.iter().copied().find(|l| !l.is_finite());
        return Err(bad.unwrap_or(f32::NAN));
    }
    let argmax = logits.iter().position(|&l| l == max).unwrap_or(0);
    let shift = f32x8::splat(max);
    let mut sum = 0f64;
    for chunk in logits.chunks(1024) {
        let lanes = chunk.chunks_exact(8);
        let rest: f32 = lanes.remainder().iter().map(|&l| (l - max).exp()).sum();
        let mut acc = f32x8::ZERO;
        for lane in lanes {
            let v = f32x8::from(<[f32; 8]>::try_from(lane).unwrap_or_default());
            acc += (v - shift).exp();
        }
        sum += f64::from(acc.reduce_add()) + f64::from(rest);
    }
    Ok(LogSoftmax {
        max,
        ln_z: sum.ln(),
        argmax,
    })
}

/// Scores many logits rows — `(position, logits, target)` — with [`score_logits`], split over
/// `threads` threads when there are enough rows (the vocabulary can be 262k wide). `index` names
/// the request in a non-finite-logits error. With a visitor, rows are scored in order and each
/// row's normalizer is handed to `visit` with it (computed once, used for both).
pub fn score_rows(
    index: usize,
    rows: &[(usize, &[f32], TokenId)],
    threads: usize,
    visit: Option<&mut LogitsVisitor<'_>>,
) -> Result<Vec<TokenScore>, BackendError> {
    if let Some(visit) = visit {
        return rows
            .iter()
            .map(|&(p, logits, t)| {
                let norm = log_softmax(logits).map_err(|value| BackendError::NonFiniteLogits {
                    index,
                    position: p,
                    value,
                })?;
                visit(index, logits, &norm)?;
                Ok(TokenScore {
                    logprob: norm.logprob(logits, t as usize),
                    is_greedy: norm.argmax == t as usize,
                })
            })
            .collect();
    }
    let rows: Vec<ScoredRow<'_>> = rows
        .iter()
        .map(|&(position, logits, target)| ScoredRow {
            request: index,
            position,
            logits,
            target,
        })
        .collect();
    score_row_set(&rows, threads)
}

/// One logits row to score: which request and position it belongs to (for errors), the row,
/// and the target token it predicts.
#[derive(Debug, Clone, Copy)]
pub struct ScoredRow<'a> {
    /// Request index, named in a non-finite-logits error.
    pub request: usize,
    /// Position of the row in its request.
    pub position: usize,
    /// The logits row.
    pub logits: &'a [f32],
    /// The token whose score is wanted.
    pub target: TokenId,
}

/// Scores rows of any requests with [`score_logits`], in order, split over `threads` threads
/// when there are enough rows (the vocabulary can be 262k wide: log-softmax is a real part of
/// scoring time, so engines hand over every row of a decode call at once).
pub fn score_row_set(
    rows: &[ScoredRow<'_>],
    threads: usize,
) -> Result<Vec<TokenScore>, BackendError> {
    let one = |row: &ScoredRow<'_>| {
        score_logits(row.logits, row.target).map_err(|value| BackendError::NonFiniteLogits {
            index: row.request,
            position: row.position,
            value,
        })
    };
    if rows.len() < 2 * threads || threads <= 1 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_definition() {
        let logits = [1.0f32, 2.0, 3.0, 0.5];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for (t, &l) in logits.iter().enumerate() {
            let s = score_logits(&logits, t as TokenId).expect("finite");
            assert!((s.logprob - (f64::from(l) - z.ln())).abs() < 1e-6);
            assert_eq!(s.is_greedy, t == 2);
        }
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let logits = [1000.0f32, 999.0];
        let s = score_logits(&logits, 1).expect("finite");
        assert!((s.logprob - (-1.0 - (1.0 + (-1.0f64).exp()).ln())).abs() < 1e-6);
    }

    #[test]
    fn vectorised_log_softmax_matches_f64_reference_at_vocabulary_width() {
        // 262,147 logits (not a multiple of 8), spread over ±30 like real logits.
        let logits: Vec<f32> = (0..262_147u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) % 60_000) as f32 / 1000.0 - 30.0)
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = logits
            .iter()
            .map(|&l| (f64::from(l) - f64::from(max)).exp())
            .sum();
        for t in [0usize, 7, 123_456, 262_146] {
            let s = score_logits(&logits, t as TokenId).expect("finite");
            let reference = f64::from(logits[t]) - f64::from(max) - z.ln();
            assert!(
                (s.logprob - reference).abs() < 1e-5,
                "{t}: {} vs {reference}",
                s.logprob
            );
        }
        let mut bad = logits.clone();
        bad[100_001] = f32::NEG_INFINITY;
        assert_eq!(score_logits(&bad, 0), Err(f32::NEG_INFINITY));
    }

    #[test]
    fn nan_is_refused() {
        assert!(score_logits(&[0.0, f32::NAN], 0).is_err());
    }

    #[test]
    fn parallel_rows_equal_serial_rows_and_name_the_bad_position() {
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|r| {
                (0..50)
                    .map(|v| ((r * 7 + v * 13) % 17) as f32 * 0.3)
                    .collect()
            })
            .collect();
        let gathered: Vec<(usize, &[f32], TokenId)> = rows
            .iter()
            .enumerate()
            .map(|(p, r)| (p, r.as_slice(), (p % 50) as TokenId))
            .collect();
        let serial = score_rows(0, &gathered, 1, None).expect("finite");
        assert_eq!(score_rows(0, &gathered, 4, None).expect("finite"), serial);
        // With a visitor: the same scores, and each row's normalizer is the one it was scored
        // with (regression: the KL-divergence visitor normalized every row a second time).
        let mut seen = Vec::new();
        let mut visit = |_: usize, logits: &[f32], norm: &LogSoftmax| {
            seen.push((logits.len(), *norm));
            Ok(())
        };
        let visited = score_rows(0, &gathered, 4, Some(&mut visit)).expect("finite");
        assert_eq!(visited, serial);
        assert_eq!(seen.len(), gathered.len());
        for ((_, logits, target), (_, norm)) in gathered.iter().zip(&seen) {
            assert_eq!(*norm, log_softmax(logits).expect("finite"));
            let score = score_logits(logits, *target).expect("finite");
            assert_eq!(score.logprob, norm.logprob(logits, *target as usize));
        }
        assert_eq!(serial.len(), 40);
        let mut bad = rows[33].clone();
        bad[3] = f32::INFINITY;
        let mut with_bad = gathered.clone();
        with_bad[33].1 = &bad;
        assert!(matches!(
            score_rows(5, &with_bad, 4, None),
            Err(BackendError::NonFiniteLogits {
                index: 5,
                position: 33,
                ..
            })
        ));
    }

    #[test]
    fn ties_go_to_first_index() {
        let s = score_logits(&[2.0, 2.0], 1).expect("finite");
        assert!(!s.is_greedy);
    }

    #[test]
    fn validation_catches_bad_requests() {
        let ok = ScoreRequest {
            tokens: vec![1, 2, 3],
            score_from: 1,
        };
        assert!(validate_request(0, &ok, 10, 8).is_ok());
        let nothing = ScoreRequest {
            tokens: vec![1, 2],
            score_from: 2,
        };
        assert!(validate_request(0, &nothing, 10, 8).is_err());
        let zero = ScoreRequest {
            tokens: vec![1, 2],
            score_from: 0,
        };
        assert!(validate_request(0, &zero, 10, 8).is_err());
        let oov = ScoreRequest {
            tokens: vec![1, 20],
            score_from: 1,
        };
        assert!(matches!(
            validate_request(3, &oov, 10, 8),
            Err(BackendError::TokenOutOfRange {
                index: 3,
                token: 20,
                ..
            })
        ));
        let long = ScoreRequest {
            tokens: vec![1; 10],
            score_from: 1,
        };
        assert!(validate_request(0, &long, 10, 8).is_err());
    }
}
