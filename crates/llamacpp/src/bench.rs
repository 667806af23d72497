//! Speed-measurement contexts: the operations llama-bench times, through the safe API.

use std::num::NonZeroU32;

use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use lmdensity_backend::{BackendError, DecodeBench, TokenId};

use crate::{backend, LlamaCppModel};

/// Context settings of a speed measurement; the defaults of the other fields are llama-bench's
/// (F16 KV cache, flash attention `auto`, sliding-window caches at their window size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchContextConfig {
    /// KV cells per sequence: depth + prompt + generated tokens, as llama-bench sizes it.
    pub n_ctx: u32,
    /// Tokens per decode call in prompt processing (llama-bench `-b`).
    pub n_batch: u32,
    /// Tokens per physical batch (llama-bench `-ub`).
    pub n_ubatch: u32,
    /// Sequences decoded together (1 = llama-bench; more = llama-batched-bench's parallel).
    pub n_seq: u32,
    /// CPU threads.
    pub threads: u32,
}

/// A llama.cpp context for `lmdensity bench`.
pub struct LlamaCppBench<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Next position of each sequence.
    next_pos: Vec<i32>,
}

impl std::fmt::Debug for LlamaCppBench<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaCppBench")
            .field("n_batch", &self.n_batch)
            .field("next_pos", &self.next_pos)
            .finish()
    }
}

impl LlamaCppModel {
    /// A context for speed measurements with llama-bench's settings.
    pub fn bench_context(
        &self,
        config: &BenchContextConfig,
    ) -> Result<LlamaCppBench<'_>, BackendError> {
        let bad = |reason: String| BackendError::Engine {
            op: "create llama.cpp bench context",
            reason,
        };
        let BenchContextConfig {
            n_ctx,
            n_batch,
            n_ubatch,
            n_seq,
            threads,
        } = *config;
        if n_ctx == 0 || n_batch == 0 || n_ubatch == 0 || n_seq == 0 || threads == 0 {
            return Err(bad(format!(
                "every size must be at least 1 (context {n_ctx}, batch {n_batch}, ubatch {n_ubatch}, sequences {n_seq}, threads {threads})"
            )));
        }
        let cells = n_ctx
            .checked_mul(n_seq)
            .ok_or_else(|| bad(format!("{n_seq} sequences of {n_ctx} cells overflow")))?;
        let threads = i32::try_from(threads).map_err(|_| bad("too many threads".into()))?;
        let params = llama_cpp_2::context::params::LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_ubatch.min(n_batch))
            .with_n_seq_max(n_seq)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_swa_full(false);
        let ctx = self
            .model
            .new_context(backend(self.config.verbose)?, params)
            .map_err(|e| {
                bad(format!(
                    "{e} (context {cells}, batch {n_batch}, {n_seq} sequences); is there enough memory?"
                ))
            })?;
        let batch_tokens = (n_batch as usize).max(n_seq as usize);
        Ok(LlamaCppBench {
            ctx,
            batch: LlamaBatch::new(batch_tokens, n_seq as i32),
            n_batch: n_batch as usize,
            next_pos: vec![0; n_seq as usize],
        })
    }
}

impl LlamaCppBench<'_> {
    fn add(&mut self, token: TokenId, seq: usize, logits: bool) -> Result<(), BackendError> {
        let pos = self.next_pos[seq];
        self.batch
            .add(LlamaToken(token), pos, &[seq as i32], logits)
            .map_err(|e| BackendError::Engine {
                op: "fill batch",
                reason: e.to_string(),
            })?;
        self.next_pos[seq] += 1;
        Ok(())
    }

    fn decode(&mut self) -> Result<(), BackendError> {
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| BackendError::Engine {
                op: "llama_decode",
                reason: e.to_string(),
            })?;
        self.ctx.synchronize();
        self.batch.clear();
        Ok(())
    }

    fn check_sequences(&self, n: usize) -> Result<(), BackendError> {
        if n > self.next_pos.len() {
            return Err(BackendError::Engine {
                op: "bench",
                reason: format!(
                    "{n} sequences requested, the context holds {}",
                    self.next_pos.len()
                ),
            });
        }
        Ok(())
    }
}

impl DecodeBench for LlamaCppBench<'_> {
    fn clear(&mut self) -> Result<(), BackendError> {
        self.ctx.clear_kv_cache();
        self.next_pos.iter_mut().for_each(|p| *p = 0);
        Ok(())
    }

    fn prefill(&mut self, prompts: &[Vec<TokenId>]) -> Result<(), BackendError> {
        self.check_sequences(prompts.len())?;
        self.batch.clear();
        let mut in_batch = 0;
        for (seq, prompt) in prompts.iter().enumerate() {
            for (i, &token) in prompt.iter().enumerate() {
                let last_of_prompt = i + 1 == prompt.len();
                let last_of_call = in_batch + 1 == self.n_batch;
                self.add(token, seq, last_of_prompt || last_of_call)?;
                in_batch += 1;
                if last_of_call {
                    self.decode()?;
                    in_batch = 0;
                }
            }
        }
        if in_batch > 0 {
            self.decode()?;
        }
        Ok(())
    }

    fn generate_step(&mut self, tokens: &[TokenId]) -> Result<(), BackendError> {
        self.check_sequences(tokens.len())?;
        self.batch.clear();
        for (seq, &token) in tokens.iter().enumerate() {
            self.add(token, seq, true)?;
        }
        self.decode()
    }

    fn kv_cache_bytes(&self) -> u64 {
        self.ctx
            .state_seq_get_size_ext(0, LlamaStateSeqFlags::empty()) as u64
    }
}
