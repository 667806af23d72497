//! Greedy generation of many sequences at once, with continuous batching in one unified KV
//! cache (the scheme of llama.cpp's `llama-batched` and server slots, over llama-cpp-2's safe
//! batch API).
//!
//! Sequence 0 holds the prefix every prompt of the call shares (a task's fixed few-shot
//! examples); it is decoded once, kept across calls, and each generating sequence (1…) starts
//! as a copy of it (cells shared, not duplicated). Each decode call carries one token for every
//! sequence that is generating and, in the room left, the prompt tails of sequences just
//! started; a sequence that stops frees its cells and its slot for the next request at once.

use llama_cpp_2::token::LlamaToken;
use lmdensity_backend::{
    common_prefix_len, greedy_token, BackendError, GenerateRequest, GeneratedToken, TokenId,
    TokenWatcher,
};

use crate::LlamaCppSession;

/// One generating sequence.
struct Slot {
    /// The request it serves.
    request: usize,
    /// Tokens to decode next (the prompt's tail, then the last generated token).
    pending: Vec<TokenId>,
    /// Position of `pending[0]`.
    next_pos: usize,
    /// Tokens generated so far.
    generated: Vec<TokenId>,
    /// Cells it may come to hold beyond the shared prefix.
    reserved: usize,
}

fn engine(op: &'static str, reason: impl ToString) -> BackendError {
    BackendError::Engine {
        op,
        reason: reason.to_string(),
    }
}

impl LlamaCppSession<'_> {
    /// Greedy generation of every request, `self.n_seq − 1` sequences at a time (see the module
    /// documentation).
    pub(crate) fn generate_batched(
        &mut self,
        requests: &[GenerateRequest],
        on_token: &mut TokenWatcher<'_>,
    ) -> Result<Vec<Vec<TokenId>>, BackendError> {
        let result = self.generate_batched_inner(requests, on_token);
        if result.is_err() {
            self.ctx.clear_kv_cache();
            self.cached.clear();
        }
        result
    }

    fn generate_batched_inner(
        &mut self,
        requests: &[GenerateRequest],
        on_token: &mut TokenWatcher<'_>,
    ) -> Result<Vec<Vec<TokenId>>, BackendError> {
        let n_vocab = self.model.info.n_vocab;
        for (index, r) in requests.iter().enumerate() {
            let bad = |reason: String| BackendError::BadRequest { index, reason };
            if r.prompt.is_empty() {
                return Err(bad(
                    "empty prompt: nothing to condition the first token on".into()
                ));
            }
            if let Some(&token) = r.prompt.iter().find(|&&t| t < 0 || t as usize >= n_vocab) {
                return Err(BackendError::TokenOutOfRange {
                    index,
                    token,
                    n_vocab,
                });
            }
            if r.prompt.len() + r.max_new_tokens > self.max_len {
                return Err(bad(format!(
                    "{} prompt tokens and {} to generate exceed the context of {}",
                    r.prompt.len(),
                    r.max_new_tokens,
                    self.max_len
                )));
            }
        }
        let mut out: Vec<Vec<TokenId>> = vec![Vec::new(); requests.len()];
        let mut queue: Vec<usize> = (0..requests.len())
            .filter(|&r| requests[r].max_new_tokens > 0)
            .collect();
        queue.reverse();
        if queue.is_empty() {
            return Ok(out);
        }
        let prefix = self.shared_prompt_prefix(requests, &queue);
        let cells = self.ctx.n_ctx() as usize;
        // Cells a sequence may hold beyond the prefix; room for a batch's worth of slack.
        let need = |r: &GenerateRequest| r.prompt.len() - prefix.len() + r.max_new_tokens;
        let largest = queue.iter().map(|&r| need(&requests[r])).max().unwrap_or(0);
        if prefix.len() + largest > cells {
            return Err(engine(
                "generate",
                format!(
                    "a request needs {} cells (shared prefix {} + its own), the session has {cells}",
                    prefix.len() + largest,
                    prefix.len()
                ),
            ));
        }
        self.hold_prefix(&prefix)?;
        let mut slots: Vec<Option<Slot>> = (1..self.n_seq).map(|_| None).collect();
        let mut in_use = prefix.len();
        loop {
            // Start waiting requests on free slots while their cells fit.
            for (s, slot) in slots.iter_mut().enumerate() {
                let Some(&r) = queue.last() else { break };
                if slot.is_some() || in_use + need(&requests[r]) > cells {
                    continue;
                }
                queue.pop();
                if !prefix.is_empty() {
                    self.ctx
                        .kv_cache_seq_cp(0, s as i32 + 1, None, None)
                        .map_err(|e| engine("copy KV cache", e))?;
                }
                in_use += need(&requests[r]);
                *slot = Some(Slot {
                    request: r,
                    pending: requests[r].prompt[prefix.len()..].to_vec(),
                    next_pos: prefix.len(),
                    generated: Vec::new(),
                    reserved: need(&requests[r]),
                });
            }
            if slots.iter().all(Option::is_none) {
                break;
            }
            // One token of each generating sequence first, then prompt tails as room allows.
            let mut order: Vec<usize> = (0..slots.len()).filter(|&s| slots[s].is_some()).collect();
            order.sort_by_key(|&s| slots[s].as_ref().map_or(0, |x| x.pending.len()));
            self.batch.clear();
            let mut rows = Vec::new();
            let mut room = self.batch_size;
            for s in order {
                let Some(slot) = slots[s].as_mut() else {
                    continue;
                };
                let n = slot.pending.len().min(room);
                if n == 0 {
                    break;
                }
                let last = n == slot.pending.len();
                for (i, &t) in slot.pending[..n].iter().enumerate() {
                    let logits = last && i + 1 == n;
                    if logits {
                        rows.push((s, self.batch.n_tokens()));
                    }
                    self.batch
                        .add(
                            LlamaToken(t),
                            (slot.next_pos + i) as i32,
                            &[s as i32 + 1],
                            logits,
                        )
                        .map_err(|e| engine("fill batch", e))?;
                }
                slot.pending.drain(..n);
                slot.next_pos += n;
                room -= n;
            }
            self.decode()?;
            for (s, row) in rows {
                let Some(slot) = slots[s].as_mut() else {
                    continue;
                };
                let token = greedy_token(self.ctx.get_logits_ith(row)).map_err(|value| {
                    BackendError::NonFiniteLogits {
                        index: slot.request,
                        position: slot.next_pos - 1,
                        value,
                    }
                })?;
                slot.generated.push(token);
                let vocab = self.model.model.vocab();
                let bytes = vocab.token_to_piece(LlamaToken(token), false, None);
                let seen = GeneratedToken {
                    request: slot.request,
                    token,
                    bytes: &bytes,
                    end_of_generation: vocab.is_eog(LlamaToken(token)),
                };
                let goes_on =
                    on_token(&seen) && slot.generated.len() < requests[slot.request].max_new_tokens;
                if goes_on {
                    slot.pending.push(token);
                    continue;
                }
                self.ctx
                    .kv_cache_seq_rm(s as i32 + 1, None, None)
                    .map_err(|e| engine("free KV cells", e))?;
                in_use -= slot.reserved;
                let done = std::mem::take(&mut slot.generated);
                out[slot.request] = done;
                slots[s] = None;
            }
        }
        Ok(out)
    }

    /// The tokens every queued prompt begins with, less at least each prompt's last token
    /// (whose logits every sequence needs for itself).
    fn shared_prompt_prefix(&self, requests: &[GenerateRequest], queue: &[usize]) -> Vec<TokenId> {
        let prompts = queue.iter().map(|&r| requests[r].prompt.as_slice());
        let shortest = queue.iter().map(|&r| requests[r].prompt.len()).min();
        let len = common_prefix_len(prompts).min(shortest.unwrap_or(1) - 1);
        requests[queue[0]].prompt[..len].to_vec()
    }

    /// Makes sequence 0 hold exactly `prefix` and nothing else be in the cache, reusing what
    /// sequence 0 already holds of it.
    fn hold_prefix(&mut self, prefix: &[TokenId]) -> Result<(), BackendError> {
        let kept = self
            .cached
            .iter()
            .zip(prefix)
            .take_while(|(a, b)| a == b)
            .count();
        let trimmed = kept > 0 && {
            self.ctx.llama_kv_cache_seq_keep(0);
            self.ctx.kv_cache_seq_rm(0, Some(kept as u32), None).is_ok()
        };
        if trimmed {
            self.cached.truncate(kept);
        } else {
            self.ctx.clear_kv_cache();
            self.cached.clear();
        }
        self.extend_cache(prefix)
    }
}
