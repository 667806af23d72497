//! The candle engine against llama.cpp on the four registry models: the same GGUF through
//! candle's quantized kernels, and the GGUF dequantized to f32 safetensors (`lmdensity
//! convert`) on candle, score a PTB passage long enough to cross Gemma 3's 512-token sliding
//! window within 1% of llama.cpp's total log-likelihood, with the per-token differences
//! reported; and both engines tokenize identically.

use lmdensity_backend::{LanguageModel, ScoreRequest, TokenScore};
use lmdensity_candle::{CandleConfig, CandleModel, DType};
use lmdensity_eval::corpus;
use lmdensity_hub::{gguf, Fetcher, Registry};
use lmdensity_llamacpp::{LlamaCppConfig, LlamaCppModel};
use lmdensity_tokenizer::TextTokenizer;

use crate::real_models::weights;
use crate::util::*;

/// The first `bytes` of PTB's test split (ASCII, with its `<unk>` markers).
fn ptb_passage(bytes: usize) -> String {
    let fetcher = Fetcher::from_env(true).with_cache_dir(shared_cache());
    let ptb = corpus::load("ptb-test", &fetcher).expect("ptb-test");
    ptb.documents[0][..bytes].to_string()
}

/// The tokenizer candle uses for a registry model: the registry's tokenizer.json, else the
/// GGUF's vocabulary.
fn candle_tokenizer(id: &str) -> TextTokenizer {
    let registry = Registry::load(&repo_root().join("models.toml")).expect("registry");
    let entry = registry.get(id).expect("entry");
    let path = weights(id);
    match &entry.tokenizer_json {
        Some(t) => {
            let json = Fetcher::from_env(true)
                .with_cache_dir(shared_cache())
                .npm_file(&t.npm, &t.path)
                .expect("tokenizer.json");
            TextTokenizer::from_json(&json).expect("tokenizer.json")
        }
        None => {
            TextTokenizer::from_gguf(&path, &gguf::read(&path).expect("header")).expect("tokenizer")
        }
    }
}

fn config() -> CandleConfig {
    CandleConfig {
        threads: 2,
        batch_size: 512,
    }
}

/// What one engine's scores look like next to llama.cpp's.
struct Agreement {
    nll_llama: f64,
    nll_other: f64,
    mean_abs_diff: f64,
    max_abs_diff: f64,
    same_argmax: f64,
}

impl Agreement {
    fn of(llama: &[TokenScore], other: &[TokenScore]) -> Self {
        assert_eq!(llama.len(), other.len());
        let n = llama.len() as f64;
        let diffs: Vec<f64> = llama
            .iter()
            .zip(other)
            .map(|(a, b)| (a.logprob - b.logprob).abs())
            .collect();
        Agreement {
            nll_llama: -llama.iter().map(|s| s.logprob).sum::<f64>(),
            nll_other: -other.iter().map(|s| s.logprob).sum::<f64>(),
            mean_abs_diff: diffs.iter().sum::<f64>() / n,
            max_abs_diff: diffs.iter().copied().fold(0.0, f64::max),
            same_argmax: llama
                .iter()
                .zip(other)
                .filter(|(a, b)| a.is_greedy == b.is_greedy)
                .count() as f64
                / n,
        }
    }

    /// Prints the comparison and asserts: totals within 1%, mean per-token difference under
    /// 0.1 nat, and (with `argmax`) the same is-argmax verdict on over 95% of tokens.
    fn check(&self, what: &str, tokens: usize, argmax: bool) {
        let line = self.line(what, tokens);
        eprintln!("{line}");
        assert!(self.rel_diff() < 0.01, "{line}");
        assert!(self.mean_abs_diff < 0.1, "{line}");
        assert!(!argmax || self.same_argmax > 0.95, "{line}");
    }

    fn rel_diff(&self) -> f64 {
        (self.nll_other - self.nll_llama).abs() / self.nll_llama
    }

    fn line(&self, what: &str, tokens: usize) -> String {
        self.line_against("llama.cpp", what, tokens)
    }

    fn line_against(&self, reference: &str, what: &str, tokens: usize) -> String {
        format!(
            "{what}: {tokens} tokens, NLL {reference} {:.2} vs {:.2} (rel. diff {:.4}%), mean |Δ ln p| {:.4}, max {:.3}, same is-argmax verdict {:.1}%",
            self.nll_llama,
            self.nll_other,
            100.0 * self.rel_diff(),
            self.mean_abs_diff,
            self.max_abs_diff,
            100.0 * self.same_argmax
        )
    }
}

/// llama.cpp's tokens of `text` behind the harness's prefix token, and its scores.
fn llama_reference(id: &str, text: &str) -> (Vec<i32>, Vec<TokenScore>) {
    let model = LlamaCppModel::load(
        &weights(id),
        LlamaCppConfig {
            threads: 2,
            ..Default::default()
        },
    )
    .expect("load");
    let info = model.info().clone();
    let mut tokens = vec![info.bos.or(info.eos).expect("a prefix token")];
    tokens.extend(model.tokenize(text, false));
    let request = ScoreRequest {
        tokens: tokens.clone(),
        score_from: 1,
    };
    let mut session = model.session(tokens.len()).expect("session");
    let scores = session.score(&[request]).expect("score").remove(0);
    (tokens, scores)
}

fn candle_scores(model: &CandleModel, tokens: &[i32]) -> Vec<TokenScore> {
    let mut session = model.session(tokens.len()).expect("session");
    let request = ScoreRequest {
        tokens: tokens.to_vec(),
        score_from: 1,
    };
    session.score(&[request]).expect("score").remove(0)
}

#[test]
fn real_candle_quantized_scores_equal_llama_cpp_for_all_four_registry_models() {
    // ~1,100 tokens: past Gemma 3's 512-token sliding window.
    let text = ptb_passage(5_000);
    for id in [
        "smollm2-135m-instruct",
        "gemma-3-270m",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
    ] {
        let (tokens, reference) = llama_reference(id, &text);
        let model = CandleModel::load_gguf(&weights(id), candle_tokenizer(id), config())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        // Tokenizer identity across the two engines, PTB's `<unk>` markers included.
        let ours = model.tokenize(&text, false).expect("tokenize");
        assert_eq!(
            ours,
            tokens[1..],
            "{id}: candle and llama.cpp tokenize differently"
        );
        // Both engines multiply Q8-quantized activations; llama.cpp also keeps its KV cache in
        // f16. Per-token differences of a few hundredths of a nat remain; totals agree.
        let agreement = Agreement::of(&reference, &candle_scores(&model, &tokens));
        agreement.check(&format!("{id} candle-quantized"), tokens.len() - 1, true);
    }
}

#[test]
fn real_dequantized_f32_checkpoints_on_candle_match_llama_cpp_and_say_where_they_came_from() {
    let text = ptb_passage(5_000);
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("passage.txt"), &text).expect("write");
    for (id, quant) in [
        ("smollm2-135m-instruct", "Q4_1"),
        ("gemma-3-270m", "Q4_K_M"),
    ] {
        let dir = tmp.path().join(id);
        let out = lmdensity(
            tmp.path(),
            &[
                "--quiet",
                "convert",
                "--model",
                id,
                "--out",
                dir.to_str().expect("utf-8"),
            ],
        );
        assert!(out.status.success(), "{id}: {}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("dequantized from {quant} (stored f32)")),
            "{}",
            stdout(&out)
        );
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "lmdensity-provenance.json",
        ] {
            assert!(dir.join(file).is_file(), "{id}: {file}");
        }
        let (tokens, reference) = llama_reference(id, &text);
        let model = CandleModel::load_dir(&dir, DType::F32, config())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            model.tokenize(&text, false).expect("tokenize"),
            tokens[1..],
            "{id}"
        );
        let agreement = Agreement::of(&reference, &candle_scores(&model, &tokens));
        agreement.check(
            &format!("{id} dequantized f32 on candle"),
            tokens.len() - 1,
            false,
        );
        // For scale: candle's own quantized kernels against the dequantized weights.
        let quantized =
            CandleModel::load_gguf(&weights(id), candle_tokenizer(id), config()).expect("load");
        let within_candle = Agreement::of(
            &candle_scores(&quantized, &tokens),
            &candle_scores(&model, &tokens),
        );
        eprintln!(
            "{}",
            within_candle.line_against(
                "candle-quantized",
                &format!("{id} candle f32"),
                tokens.len() - 1
            )
        );
        drop((model, quantized));
        // A run on the directory records the provenance in its manifest.
        let results = tmp.path().join("results");
        let out = lmdensity(
            tmp.path(),
            &[
                "--quiet",
                "--results-dir",
                results.to_str().expect("utf-8"),
                "ppl",
                "--model-path",
                dir.to_str().expect("utf-8"),
                "--corpus",
                "passage.txt",
                "--mode",
                "harness",
                "--threads",
                "2",
            ],
        );
        assert!(out.status.success(), "{id}: {}", stderr(&out));
        let manifests: Vec<String> = std::fs::read_dir(&results)
            .expect("results")
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("manifest.json")).ok())
            .filter(|m| m.contains(&format!("\"id\": \"{id}\"")))
            .collect();
        assert_eq!(manifests.len(), 1, "{id}");
        assert!(
            manifests[0].contains(&format!(
                "dequantized from {quant} (stored f32), run as f32"
            )),
            "{}",
            manifests[0]
        );
        assert!(
            manifests[0].contains("\"name\": \"candle\""),
            "{}",
            manifests[0]
        );
        // Converting into a directory that holds a model is refused.
        let again = lmdensity(
            tmp.path(),
            &[
                "--quiet",
                "convert",
                "--model",
                id,
                "--out",
                dir.to_str().expect("utf-8"),
            ],
        );
        assert!(
            !again.status.success() && stderr(&again).contains("already holds a model"),
            "{}",
            stderr(&again)
        );
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}

#[test]
fn candle_refuses_a_gguf_of_an_unsupported_architecture_naming_the_supported_ones() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("tiny.gguf");
    gguf::write_tiny_llama(&path, 3).expect("write");
    // The tiny generated GGUF declares `llama`; rename its architecture.
    let bytes = std::fs::read(&path).expect("read");
    let needle = b"\x05\x00\x00\x00\x00\x00\x00\x00llama";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("architecture string");
    let mut renamed = bytes.clone();
    renamed[at + 8..at + 13].copy_from_slice(b"mamba");
    std::fs::write(&path, &renamed).expect("write");
    std::fs::write(tmp.path().join("x.txt"), "a b c").expect("write");
    std::fs::write(
        tmp.path().join("tokenizer.json"),
        r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null, "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1},
            "unk_token": "<unk>"}}"#,
    )
    .expect("write");
    let out = lmdensity(
        tmp.path(),
        &[
            "--quiet",
            "ppl",
            "--model-path",
            "tiny.gguf",
            "--backend",
            "candle",
            "--tokenizer",
            "tokenizer.json",
            "--corpus",
            "x.txt",
        ],
    );
    let e = stderr(&out);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("tiny.gguf")
            && e.contains("architecture `mamba` is not supported by the candle backend")
            && e.contains("supported: llama, qwen2, gemma3"),
        "{e}"
    );
}

/// Regression: the lm-eval-shaped results named the engine `lmdensity/llama.cpp` even for runs
/// candle computed. SmolLM2 (the registry's default; its byte-level vocabulary is rebuilt for
/// candle from the GGUF) scores two COPA items on each engine.
#[test]
fn lm_eval_json_names_the_engine_that_ran() {
    // Fetched through the tests' own lock first, so the binary never races another test's fetch.
    weights("smollm2-135m-instruct");
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().join("results");
    for (backend, expected) in [
        ("llama.cpp", "lmdensity/llama.cpp"),
        ("candle", "lmdensity/candle-quantized"),
    ] {
        let json_path = dir.path().join(format!("{backend}.json"));
        let out = lmdensity(
            &repo_root(),
            &[
                "--quiet",
                "--results-dir",
                results.to_str().expect("utf8"),
                "eval",
                "--model",
                "smollm2-135m-instruct",
                "--backend",
                backend,
                "--tasks",
                "copa",
                "--limit",
                "2",
                "--lm-eval-json",
                json_path.to_str().expect("utf8"),
            ],
        );
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json_path).expect("written")).expect("json");
        assert_eq!(json["config"]["model"], expected, "{backend}");
    }
}

/// Candle generates text: its token bytes, read from the tokenizer's vocabulary, equal
/// llama.cpp's pieces for every token of SmolLM2 (byte-level BPE) and Gemma 3 (SentencePiece
/// with byte fallback), and greedy generation on candle's quantized kernels picks at every
/// step llama.cpp's argmax on the same GGUF, or a near-tie with it.
#[test]
fn real_candle_generates_with_llama_cpp_pieces_and_argmax() {
    use lmdensity_backend::{GenerateRequest, GeneratedToken};
    // The one known difference: markup tokens (`<unused0>`, `<mask>`, `</s>`,
    // `<start_of_image>`) that Gemma's tokenizer.json and its GGUF classify differently
    // (ordinary added token vs control token), so one side renders them and the other gives
    // nothing.
    let markup = regex::Regex::new(r"^<[^<>]+>$").expect("regex");
    for id in ["smollm2-135m-instruct", "gemma-3-270m"] {
        let llama = LlamaCppModel::load(
            &weights(id),
            LlamaCppConfig {
                threads: 2,
                ..Default::default()
            },
        )
        .expect("load");
        let mut scorer = llama.independent_session(512).expect("session");
        let candle =
            CandleModel::load_gguf(&weights(id), candle_tokenizer(id), config()).expect("load");
        let mut session = candle.session(512).expect("session");
        let n_vocab = llama.info().n_vocab;
        let mut placeholders = 0;
        let differing: Vec<String> = (0..n_vocab as i32)
            .filter_map(|t| {
                let ours = session.token_bytes(t).expect("candle piece");
                let theirs = scorer.token_bytes(t).expect("llama.cpp piece");
                let rendered = if ours.is_empty() { &theirs } else { &ours };
                if ours != theirs
                    && (ours.is_empty() || theirs.is_empty())
                    && markup.is_match(&String::from_utf8_lossy(rendered))
                {
                    placeholders += 1;
                    return None;
                }
                (ours != theirs).then(|| {
                    format!(
                        "{t}: {:?} vs {:?}",
                        String::from_utf8_lossy(&ours),
                        String::from_utf8_lossy(&theirs)
                    )
                })
            })
            .collect();
        assert!(
            differing.is_empty(),
            "{id}: {} of {n_vocab} pieces differ, e.g. {:?}",
            differing.len(),
            &differing[..differing.len().min(10)]
        );
        eprintln!("{id}: all {n_vocab} pieces equal llama.cpp's but {placeholders} markup tokens");

        let prompts = [
            "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\nAnswer:",
            "The capital of France is",
        ];
        let requests: Vec<GenerateRequest> = prompts
            .iter()
            .map(|p| GenerateRequest {
                prompt: llama.tokenize(p, false),
                max_new_tokens: 16,
            })
            .collect();
        let mut texts = vec![Vec::new(); prompts.len()];
        let mut watch = |t: &GeneratedToken<'_>| {
            texts[t.request].extend_from_slice(t.bytes);
            true
        };
        let generated = session
            .generate_greedy(&requests, &mut watch)
            .expect("candle generates");
        let mut gaps = Vec::new();
        for (request, tokens) in requests.iter().zip(&generated) {
            assert_eq!(tokens.len(), 16, "{id}: no stop was asked for");
            let mut path = request.prompt.clone();
            path.extend(tokens);
            let path = ScoreRequest {
                tokens: path,
                score_from: request.prompt.len(),
            };
            let mut k = 0;
            let mut measure = |_: usize, logits: &[f32], norm: &lmdensity_backend::LogSoftmax| {
                gaps.push(norm.max - logits[tokens[k] as usize]);
                k += 1;
                Ok(())
            };
            scorer
                .score_visiting(std::slice::from_ref(&path), Some(&mut measure))
                .expect("scores");
        }
        let texts: Vec<String> = texts
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        let exact = gaps.iter().filter(|&&g| g == 0.0).count();
        let worst = gaps.iter().copied().fold(0f32, f32::max);
        eprintln!(
            "{id}: candle's greedy tokens: {exact} of {} are llama.cpp's argmax, worst {worst:.3} nats below it: {texts:?}",
            gaps.len()
        );
        assert!(
            exact * 10 >= gaps.len() * 9 && worst <= 0.5,
            "{id}: {exact} of {} candle tokens are llama.cpp's argmax, the worst {worst} nats below: {texts:?}",
            gaps.len()
        );
    }
}
