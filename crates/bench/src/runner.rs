//! Running one test the way llama-bench does: warm-up, then repetitions that each start from
//! an empty cache, fill the untimed depth, and time prompt processing and/or generation on
//! random token ids (no tokenization, no sampling inside the timed part).

use std::time::Instant;

use lmdensity_backend::{BackendError, DecodeBench, TokenId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::plan::BenchTest;

/// Where the random token ids come from: the vocabulary size and whether prompts start with
/// BOS (llama-bench puts BOS first when the vocabulary adds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSource {
    /// Vocabulary size.
    pub n_vocab: usize,
    /// BOS, when the tokenizer adds it.
    pub bos: Option<TokenId>,
    /// Seed of the token stream.
    pub seed: u64,
}

/// What one test measured.
#[derive(Debug, Clone, PartialEq)]
pub struct TestTimings {
    /// Wall time of each timed repetition, nanoseconds.
    pub samples_ns: Vec<u64>,
    /// Time of the prompt part of each repetition (time to first token), nanoseconds; empty
    /// for generation-only tests.
    pub prompt_ns: Vec<u64>,
    /// KV-cache bytes sequence 0 held at the end (the whole tested context filled).
    pub kv_bytes: u64,
}

impl TokenSource {
    fn stream(&self, salt: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// A prompt of `n` ids: BOS first (when the vocabulary adds it), then uniform ids.
    fn prompt(&self, rng: &mut ChaCha8Rng, n: u32) -> Vec<TokenId> {
        (0..n)
            .map(|i| match (i, self.bos) {
                (0, Some(bos)) => bos,
                _ => self.random(rng),
            })
            .collect()
    }

    fn random(&self, rng: &mut ChaCha8Rng) -> TokenId {
        rng.random_range(0..self.n_vocab.max(1)) as TokenId
    }
}

/// The timed inputs of one repetition, drawn before the clock starts.
struct RepInputs {
    depth: Vec<Vec<TokenId>>,
    prompts: Vec<Vec<TokenId>>,
    /// One step per generated token: one id per sequence.
    steps: Vec<Vec<TokenId>>,
}

fn inputs(test: &BenchTest, tokens: &TokenSource, rng: &mut ChaCha8Rng) -> RepInputs {
    let n_seq = test.n_seq as usize;
    let depth = if test.n_depth > 0 {
        (0..n_seq)
            .map(|_| tokens.prompt(rng, test.n_depth))
            .collect()
    } else {
        Vec::new()
    };
    let prompts = if test.n_prompt > 0 {
        (0..n_seq)
            .map(|_| tokens.prompt(rng, test.n_prompt))
            .collect()
    } else {
        Vec::new()
    };
    let steps = (0..test.n_gen)
        .map(|step| {
            (0..n_seq)
                .map(|_| match (step, tokens.bos) {
                    (0, Some(bos)) => bos,
                    _ => tokens.random(rng),
                })
                .collect()
        })
        .collect();
    RepInputs {
        depth,
        prompts,
        steps,
    }
}

/// Runs `test`: `warmup` untimed runs (a full prompt and one generated token, as llama-bench),
/// then `repetitions` timed ones; `progress` is called after each repetition.
pub fn run_test(
    engine: &mut dyn DecodeBench,
    test: &BenchTest,
    tokens: &TokenSource,
    warmup: usize,
    repetitions: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<TestTimings, BackendError> {
    let mut rng = tokens.stream(u64::from(test.n_prompt) << 32 | u64::from(test.n_gen));
    for _ in 0..warmup {
        let warm = inputs(test, tokens, &mut rng);
        engine.clear()?;
        if !warm.prompts.is_empty() {
            engine.prefill(&warm.prompts)?;
        }
        if let Some(step) = warm.steps.first() {
            engine.generate_step(step)?;
        }
    }
    let mut timings = TestTimings {
        samples_ns: Vec::with_capacity(repetitions),
        prompt_ns: Vec::new(),
        kv_bytes: 0,
    };
    for rep in 0..repetitions {
        let rep_inputs = inputs(test, tokens, &mut rng);
        engine.clear()?;
        if !rep_inputs.depth.is_empty() {
            engine.prefill(&rep_inputs.depth)?;
        }
        let start = Instant::now();
        if !rep_inputs.prompts.is_empty() {
            engine.prefill(&rep_inputs.prompts)?;
            timings.prompt_ns.push(start.elapsed().as_nanos() as u64);
        }
        for step in &rep_inputs.steps {
            engine.generate_step(step)?;
        }
        timings.samples_ns.push(start.elapsed().as_nanos() as u64);
        progress(rep + 1);
    }
    timings.kv_bytes = engine.kv_cache_bytes();
    Ok(timings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is asked to do; "computes" nothing.
    #[derive(Default)]
    struct Recorder {
        clears: usize,
        prefilled: Vec<Vec<Vec<TokenId>>>,
        steps: Vec<Vec<TokenId>>,
        cached: u64,
    }

    impl DecodeBench for Recorder {
        fn clear(&mut self) -> Result<(), BackendError> {
            self.clears += 1;
            self.cached = 0;
            Ok(())
        }
        fn prefill(&mut self, prompts: &[Vec<TokenId>]) -> Result<(), BackendError> {
            self.cached += prompts[0].len() as u64;
            self.prefilled.push(prompts.to_vec());
            Ok(())
        }
        fn generate_step(&mut self, tokens: &[TokenId]) -> Result<(), BackendError> {
            self.cached += 1;
            self.steps.push(tokens.to_vec());
            Ok(())
        }
        fn kv_cache_bytes(&self) -> u64 {
            self.cached * 10
        }
    }

    fn test(n_prompt: u32, n_gen: u32, n_depth: u32, n_seq: u32) -> BenchTest {
        BenchTest {
            n_prompt,
            n_gen,
            n_depth,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 1,
            n_seq,
        }
    }

    const TOKENS: TokenSource = TokenSource {
        n_vocab: 100,
        bos: Some(1),
        seed: 7,
    };

    #[test]
    fn combined_test_at_depth_does_what_llama_bench_does() {
        let mut engine = Recorder::default();
        let mut reps = Vec::new();
        let t = run_test(&mut engine, &test(16, 4, 32, 1), &TOKENS, 1, 3, &mut |r| {
            reps.push(r)
        })
        .expect("runs");
        assert_eq!(reps, [1, 2, 3]);
        assert_eq!(t.samples_ns.len(), 3);
        assert_eq!(t.prompt_ns.len(), 3);
        assert!(t.prompt_ns.iter().zip(&t.samples_ns).all(|(p, s)| p <= s));
        // Warm-up: one clear, a prompt and one step; each repetition: clear, depth, prompt, 4 steps.
        assert_eq!(engine.clears, 1 + 3);
        assert_eq!(engine.prefilled.len(), 1 + 3 * 2);
        assert_eq!(engine.steps.len(), 1 + 3 * 4);
        // Every prompt (depth included) starts with BOS; ids stay in the vocabulary.
        for call in &engine.prefilled {
            assert_eq!(call[0][0], 1);
            assert!(call[0].iter().all(|&id| (0..100).contains(&id)));
        }
        assert_eq!(engine.prefilled[1][0].len(), 32);
        assert_eq!(engine.prefilled[2][0].len(), 16);
        // The last repetition filled depth + prompt + generated cells.
        assert_eq!(t.kv_bytes, (32 + 16 + 4) * 10);
    }

    #[test]
    fn generation_only_has_no_prompt_time_and_parallel_sequences_get_one_id_each() {
        let mut engine = Recorder::default();
        let t = run_test(&mut engine, &test(0, 5, 0, 3), &TOKENS, 0, 2, &mut |_| {}).expect("runs");
        assert!(t.prompt_ns.is_empty());
        assert!(engine.prefilled.is_empty());
        assert_eq!(engine.steps.len(), 10);
        assert!(engine.steps.iter().all(|s| s.len() == 3));
        assert_eq!(engine.steps[0], [1, 1, 1]);
    }

    #[test]
    fn the_token_stream_is_seeded() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        run_test(&mut a, &test(8, 2, 0, 1), &TOKENS, 0, 2, &mut |_| {}).expect("runs");
        run_test(&mut b, &test(8, 2, 0, 1), &TOKENS, 0, 2, &mut |_| {}).expect("runs");
        assert_eq!(a.prefilled, b.prefilled);
        assert_ne!(a.prefilled[0], a.prefilled[1]);
    }
}
