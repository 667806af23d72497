//! `lmdensity bench` on candle: the operations llama-bench times ([`DecodeBench`]), on one
//! [`DecoderState`] per sequence. candle has no multi-sequence batching here: sequences are
//! decoded one after another within a step, which the throughput figures then show.

use candle_core::Tensor;
use lmdensity_backend::{BackendError, DecodeBench, TokenId};

use crate::decoder::DecoderState;
use crate::CandleModel;

/// Shape of a bench context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandleBenchConfig {
    /// Positions each sequence may hold.
    pub n_ctx: usize,
    /// Tokens per prefill call (logits for the last one).
    pub n_batch: usize,
    /// Tokens per forward pass within a call.
    pub n_ubatch: usize,
    /// Sequences.
    pub n_seq: usize,
    /// Threads.
    pub threads: usize,
}

/// A bench context on a [`CandleModel`].
pub struct CandleBench<'m> {
    model: &'m CandleModel,
    states: Vec<DecoderState>,
    pool: rayon::ThreadPool,
    config: CandleBenchConfig,
}

fn engine(op: &'static str) -> impl Fn(candle_core::Error) -> BackendError {
    move |e| BackendError::Engine {
        op,
        reason: e.to_string(),
    }
}

impl CandleModel {
    /// A bench context with `config.n_seq` sequences of `config.n_ctx` positions.
    pub fn bench_context(
        &self,
        config: CandleBenchConfig,
    ) -> Result<CandleBench<'_>, BackendError> {
        if config.n_seq == 0 || config.n_batch == 0 || config.n_ubatch == 0 || config.threads == 0 {
            return Err(BackendError::Engine {
                op: "candle bench context",
                reason: "sequences, batch sizes and threads must be at least 1".into(),
            });
        }
        let pool = crate::thread_pool(config.threads)?;
        let states = (0..config.n_seq)
            .map(|_| self.decoder.new_state(config.n_ctx))
            .collect::<Result<Vec<_>, _>>()
            .map_err(engine("candle bench context"))?;
        Ok(CandleBench {
            model: self,
            states,
            pool,
            config,
        })
    }
}

impl CandleBench<'_> {
    /// Runs `tokens` on sequence `seq` in forward passes of `n_ubatch`, and the logits of the
    /// last token.
    fn run(&mut self, seq: usize, tokens: &[TokenId]) -> Result<(), BackendError> {
        let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
        let model = self.model;
        let state = &mut self.states[seq];
        let ubatch = self.config.n_ubatch;
        self.pool.install(|| -> Result<(), BackendError> {
            let mut last: Option<Tensor> = None;
            for chunk in ids.chunks(ubatch) {
                let hidden = model
                    .decoder
                    .forward(state, chunk)
                    .map_err(engine("candle forward"))?;
                last = Some(hidden);
            }
            if let Some(hidden) = last {
                let rows = hidden.dim(0).map_err(engine("candle logits"))?;
                let row = hidden
                    .narrow(0, rows - 1, 1)
                    .map_err(engine("candle logits"))?;
                // Materialise the logits so the computation has really happened.
                model
                    .decoder
                    .logits(&row)
                    .and_then(|l| l.to_vec2::<f32>())
                    .map_err(engine("candle logits"))?;
            }
            Ok(())
        })
    }
}

impl DecodeBench for CandleBench<'_> {
    fn clear(&mut self) -> Result<(), BackendError> {
        for state in &mut self.states {
            state.truncate(0).map_err(engine("candle clear"))?;
        }
        Ok(())
    }

    fn prefill(&mut self, prompts: &[Vec<TokenId>]) -> Result<(), BackendError> {
        for (seq, prompt) in prompts.iter().enumerate().take(self.states.len()) {
            for call in prompt.chunks(self.config.n_batch) {
                self.run(seq, call)?;
            }
        }
        Ok(())
    }

    fn generate_step(&mut self, tokens: &[TokenId]) -> Result<(), BackendError> {
        for (seq, &token) in tokens.iter().enumerate().take(self.states.len()) {
            self.run(seq, &[token])?;
        }
        Ok(())
    }

    fn kv_cache_bytes(&self) -> u64 {
        self.states.first().map_or(0, |s| s.kv_cache_bytes() as u64)
    }
}
