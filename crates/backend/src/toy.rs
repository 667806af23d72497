//! A tiny deterministic byte-level bigram model for fast unit tests of metric code.
//!
//! It is not a claim about any real model: it exists so windowing, resume and aggregation logic
//! can be checked against exact, hand-computable log-probabilities.

use crate::{
    score_rows, validate_request, BackendError, LanguageModel, LogitsVisitor, ModelInfo,
    ScoreRequest, TokenId, TokenScore,
};

/// Byte-level bigram model: token = byte + 1, id 0 is BOS; logits depend only on the previous
/// token, so any windowing of the same text gives the same per-token scores after the first.
#[derive(Debug, Clone)]
pub struct ToyBigram {
    info: ModelInfo,
    max_len: usize,
    /// Requests seen, for tests that check batching and call counts.
    pub calls: Vec<ScoreRequest>,
    /// Size of a fixed pseudo-random offset added to every logit (0 = the plain model); a
    /// stand-in for a quantized copy in KL-divergence tests.
    noise: f32,
}

impl ToyBigram {
    /// A model over 257 tokens accepting sequences of up to `max_len` input tokens.
    pub fn new(max_len: usize) -> Self {
        ToyBigram {
            info: ModelInfo {
                architecture: "toy-bigram".into(),
                n_vocab: 257,
                n_ctx_train: max_len,
                n_params: 257 * 257,
                bos: Some(0),
                eos: None,
                add_bos: true,
            },
            max_len,
            calls: Vec::new(),
            noise: 0.0,
        }
    }

    /// The same model with every logit moved by up to ±`noise` (a fixed pseudo-random pattern).
    pub fn perturbed(max_len: usize, noise: f32) -> Self {
        ToyBigram {
            noise,
            ..ToyBigram::new(max_len)
        }
    }

    /// The logits row after `prev`: a fixed pseudo-random function of (prev, next).
    pub fn logits_after(&self, prev: TokenId) -> Vec<f32> {
        (0..self.info.n_vocab as u32)
            .map(|next| {
                let h = (prev as u32).wrapping_mul(2_654_435_761) ^ next.wrapping_mul(40503);
                let offset = (h.rotate_left(13).wrapping_mul(2_246_822_519) % 2001) as f32 / 1000.0;
                (h % 1000) as f32 / 250.0 + self.noise * (offset - 1.0)
            })
            .collect()
    }
}

impl LanguageModel for ToyBigram {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn max_sequence_len(&self) -> usize {
        self.max_len
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>, BackendError> {
        let bos = add_special.then_some(0);
        Ok(bos
            .into_iter()
            .chain(text.bytes().map(|b| TokenId::from(b) + 1))
            .collect())
    }

    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, BackendError> {
        // Token = byte + 1; BOS (0) stands for no text.
        Ok(u8::try_from(token - 1).map(|b| vec![b]).unwrap_or_default())
    }

    fn score_visiting(
        &mut self,
        requests: &[ScoreRequest],
        mut visit: Option<&mut LogitsVisitor<'_>>,
    ) -> Result<Vec<Vec<TokenScore>>, BackendError> {
        let mut out = Vec::with_capacity(requests.len());
        for (index, r) in requests.iter().enumerate() {
            validate_request(index, r, self.info.n_vocab, self.max_len)?;
            self.calls.push(r.clone());
            let scores = (r.score_from..r.tokens.len())
                .map(|i| {
                    let logits = self.logits_after(r.tokens[i - 1]);
                    let row = [(i - 1, logits.as_slice(), r.tokens[i])];
                    let mut scored = score_rows(index, &row, 1, visit.as_deref_mut())?;
                    Ok(scored.remove(0))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.push(scores);
        }
        Ok(out)
    }
}
