//! Tokenizers for engines that do not bring their own (candle): HF `tokenizer.json`, or a
//! byte-level BPE rebuilt from a GGUF's `tokenizer.ggml.*` metadata (GPT-2-style vocabularies:
//! SmolLM2, Qwen2.5, Llama 3). Either way the ids must equal llama.cpp's for the same model;
//! the integration tests check that on all four registry models.

use std::path::{Path, PathBuf};

use lmdensity_hub::gguf::{GgufFile, GgufValue};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

/// Why a tokenizer could not be built or used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file could not be read or parsed.
    #[error("{path}: not a usable tokenizer.json: {detail}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The GGUF's vocabulary metadata is missing, malformed, or of a kind not rebuilt here.
    #[error("{path}: {detail}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What is missing or unsupported.
        detail: String,
    },
    /// The tokenizer and the model disagree on the vocabulary size.
    #[error("{path}: the tokenizer has {tokenizer} tokens ({with_added} with added tokens) but the model's vocabulary has {model}: wrong tokenizer for this model?")]
    VocabMismatch {
        /// The tokenizer's file.
        path: PathBuf,
        /// Tokens of the tokenizer's model, added tokens not counted.
        tokenizer: usize,
        /// Tokens including added (special) tokens.
        with_added: usize,
        /// The model's vocabulary size.
        model: usize,
    },
    /// Encoding failed.
    #[error("{path}: encoding failed: {detail}")]
    Encode {
        /// The tokenizer's file.
        path: PathBuf,
        /// The library's message.
        detail: String,
    },
}

/// Rows an embedding table may have past the tokenizer's tokens (padding to a round size).
pub const MAX_VOCAB_PADDING: usize = 1024;

/// A text tokenizer and where it came from.
pub struct TextTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    how: String,
    pieces: Pieces,
    /// A copy that parses special tokens written in the text (for chat prompts), made on first
    /// use.
    with_specials: std::sync::OnceLock<Tokenizer>,
}

/// What generation needs to turn one token back into bytes, read once from the tokenizer:
/// `tokenizers` decodes whole sequences into `String`s, which cannot represent a token that
/// holds part of a UTF-8 character, so single tokens are mapped here from their vocabulary
/// strings the way the tokenizer's decoder would.
#[derive(Debug, Default)]
struct Pieces {
    /// Vocabulary strings are GPT-2 byte-level (each byte one printable character); otherwise
    /// SentencePiece style: `▁` for a space, `<0xHH>` for a raw byte.
    byte_level: bool,
    /// Added tokens: special ones (control tokens) give no text, the others their content.
    added: std::collections::HashMap<u32, Option<String>>,
}

impl Pieces {
    fn of(inner: &Tokenizer) -> Self {
        Pieces {
            byte_level: matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_))),
            added: inner
                .get_added_tokens_decoder()
                .into_iter()
                .map(|(id, t)| (id, (!t.special).then_some(t.content)))
                .collect(),
        }
    }
}

/// GPT-2's byte-level alphabet backwards: the byte a vocabulary character stands for.
/// Printable bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other 68 bytes
/// were moved, in order, to U+0100 onwards.
fn byte_level_byte(c: char) -> Option<u8> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let code = u32::from(c);
    if code < 256 {
        return printable(code).then_some(code as u8);
    }
    let moved = usize::try_from(code - 256).ok()?;
    (0u32..256)
        .filter(|&b| !printable(b))
        .nth(moved)
        .map(|b| b as u8)
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("how", &self.how)
            .finish()
    }
}

/// The pre-tokenizer regex llama.cpp uses for `tokenizer.ggml.pre = qwen2` (and HF's Qwen2).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Llama 3 pre-tokenizer regex (`tokenizer.ggml.pre = llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn gguf_strings<'a>(
    header: &'a GgufFile,
    key: &str,
    path: &Path,
) -> Result<Vec<&'a str>, TokenizerError> {
    let bad = |detail: String| TokenizerError::Gguf {
        path: path.to_path_buf(),
        detail,
    };
    match header.metadata.get(key) {
        Some(GgufValue::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| bad(format!("{key}[{i}] is not a string")))
            })
            .collect(),
        Some(_) => Err(bad(format!("{key} is not an array"))),
        None => Err(bad(format!("no {key} in the metadata"))),
    }
}

impl TextTokenizer {
    /// Reads an HF `tokenizer.json`.
    pub fn from_json(path: &Path) -> Result<Self, TokenizerError> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| TokenizerError::Json {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        // Special tokens written in the text (`<unk>` in PTB, `<bos>`) are text, as llama.cpp
        // tokenizes without parse_special: they must not become control ids.
        inner.set_encode_special_tokens(true);
        Ok(TextTokenizer {
            with_specials: std::sync::OnceLock::new(),
            pieces: Pieces::of(&inner),
            inner,
            source: path.to_path_buf(),
            how: "tokenizer.json".into(),
        })
    }

    /// Rebuilds the tokenizer of the GGUF at `path` (header already read) from its
    /// `tokenizer.ggml.tokens` / `merges` / `token_type` / `pre`. Only byte-level BPE
    /// (`tokenizer.ggml.model = gpt2`) is rebuilt; SentencePiece vocabularies (`llama`, Gemma)
    /// need their `tokenizer.json`.
    pub fn from_gguf(path: &Path, header: &GgufFile) -> Result<Self, TokenizerError> {
        let bad = |detail: String| TokenizerError::Gguf {
            path: path.to_path_buf(),
            detail,
        };
        let model = header
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(GgufValue::as_str)
            .unwrap_or("");
        if model != "gpt2" {
            return Err(bad(format!(
                "tokenizer.ggml.model = `{model}`: only byte-level BPE (`gpt2`) vocabularies are rebuilt from GGUF metadata; give this model's tokenizer.json"
            )));
        }
        let pre = header
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(GgufValue::as_str)
            .unwrap_or("default")
            .to_string();
        let tokens = gguf_strings(header, "tokenizer.ggml.tokens", path)?;
        let merges_text = gguf_strings(header, "tokenizer.ggml.merges", path)?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let merges: Merges = merges_text
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| bad(format!("tokenizer.ggml.merges[{i}] `{m}` is not `a b`")))
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre == "llama-bpe")
            .build()
            .map_err(|e| bad(format!("building the BPE model: {e}")))?;
        let split = |regex: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
            let pattern = SplitPattern::Regex(regex.to_string());
            Ok(Split::new(pattern, SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| bad(format!("pre-tokenizer regex: {e}")))?
                .into())
        };
        let bytes_only: PreTokenizerWrapper = ByteLevel::new(false, false, false).into();
        let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
            "qwen2" => Sequence::new(vec![split(QWEN2_SPLIT)?, bytes_only]).into(),
            "llama-bpe" => Sequence::new(vec![split(LLAMA3_SPLIT)?, bytes_only]).into(),
            // SmolLM: every digit alone, then GPT-2's split and byte mapping.
            "smollm" => Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into(),
            "gpt-2" | "default" => ByteLevel::new(false, true, true).into(),
            other => {
                return Err(bad(format!(
                    "tokenizer.ggml.pre = `{other}` is not rebuilt here (supported: qwen2, llama-bpe, smollm, gpt-2); give this model's tokenizer.json"
                )))
            }
        };
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // User-defined tokens (type 4) match whole in plain text, as in llama.cpp; control
        // tokens (type 3) are added as special, so `encode` leaves them to the BPE.
        if let Some(GgufValue::Array(types)) = header.metadata.get("tokenizer.ggml.token_type") {
            let added: Vec<AddedToken> = types
                .iter()
                .enumerate()
                .filter_map(|(i, t)| match (t.as_u64(), tokens.get(i)) {
                    (Some(3), Some(tok)) => Some(AddedToken::from(tok.to_string(), true)),
                    (Some(4), Some(tok)) => Some(AddedToken::from(tok.to_string(), false)),
                    _ => None,
                })
                .collect();
            inner.add_tokens(&added);
        }
        inner.set_encode_special_tokens(true);
        Ok(TextTokenizer {
            with_specials: std::sync::OnceLock::new(),
            pieces: Pieces::of(&inner),
            inner,
            source: path.to_path_buf(),
            how: format!("byte-level BPE rebuilt from GGUF metadata (pre-tokenizer `{pre}`)"),
        })
    }

    /// Token ids of `text`, without BOS or other added tokens; special tokens spelled out in
    /// the text are tokenized as text (llama.cpp's `parse_special = false`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_by(&self.inner, text)
    }

    fn encode_by(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = tokenizer
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode {
                path: self.source.clone(),
                detail: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a rendered chat prompt: special tokens written in it (`<|im_start|>`) are
    /// those tokens, as llama.cpp tokenizes with `parse_special`; no BOS is added (templates
    /// write it).
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let tokenizer = self.with_specials.get_or_init(|| {
            let mut copy = self.inner.clone();
            copy.set_encode_special_tokens(false);
            copy
        });
        self.encode_by(tokenizer, text)
    }

    /// A token as the vocabulary spells it (`<|im_end|>`, `Ġthe`).
    pub fn token_content(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Encode {
                path: self.source.clone(),
                detail: e.to_string(),
            })
    }

    /// The bytes `id` stands for in generated text: nothing for a special token, the raw byte
    /// of a byte-fallback token (`<0x0A>`), else its vocabulary string decoded as the
    /// tokenizer's decoder would (byte-level characters to bytes, or `▁` to a space). `None`
    /// for an id outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        if let Some(added) = self.pieces.added.get(&id) {
            // Added tokens are stored as text, not in the byte-level alphabet; SentencePiece
            // vocabularies still spell their spaces `▁` (Gemma's whitespace-run tokens).
            let text = added.as_deref().unwrap_or_default();
            return Some(if self.pieces.byte_level {
                text.as_bytes().to_vec()
            } else {
                text.replace('\u{2581}', " ").into_bytes()
            });
        }
        let piece = self.inner.id_to_token(id)?;
        if self.pieces.byte_level {
            return piece.chars().map(byte_level_byte).collect();
        }
        let fallback = piece
            .strip_prefix("<0x")
            .and_then(|h| h.strip_suffix('>'))
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        Some(match fallback {
            Some(byte) => vec![byte],
            None => piece.replace('\u{2581}', " ").into_bytes(),
        })
    }

    /// Tokens the tokenizer knows, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Refuses a tokenizer whose vocabulary is not the model's (`model_vocab` from the
    /// weights): the wrong tokenizer.json scores text as garbage without any other symptom.
    /// Allowed: embedding tables padded past the tokenizer (Qwen2.5: 151,936 rows for 151,665
    /// tokens) by at most [`MAX_VOCAB_PADDING`], and added tokens past the model's rows (Gemma 3's
    /// tokenizer.json has 262,145 with its image token, the text model 262,144); ids of those
    /// are refused when scored.
    pub fn check_vocab(&self, model_vocab: usize) -> Result<(), TokenizerError> {
        let base = self.inner.get_vocab_size(false);
        let with_added = self.vocab_size();
        if base > model_vocab || model_vocab > with_added + MAX_VOCAB_PADDING {
            return Err(TokenizerError::VocabMismatch {
                path: self.source.clone(),
                tokenizer: base,
                with_added,
                model: model_vocab,
            });
        }
        Ok(())
    }

    /// Writes the tokenizer as an HF `tokenizer.json` at `path`.
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        self.inner
            .save(path, false)
            .map_err(|e| TokenizerError::Json {
                path: path.to_path_buf(),
                detail: format!("cannot write: {e}"),
            })
    }

    /// Where it was read from, and how it was built.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.source.display(), self.how)
    }
}

#[cfg(test)]
mod tests {
    use super::byte_level_byte;

    #[test]
    fn byte_level_characters_map_back_to_their_bytes() {
        assert_eq!(byte_level_byte('a'), Some(b'a'));
        assert_eq!(byte_level_byte('Ġ'), Some(b' '));
        assert_eq!(byte_level_byte('Ċ'), Some(b'\n'));
        assert_eq!(byte_level_byte('ÿ'), Some(0xff));
        assert_eq!(byte_level_byte('\u{100}'), Some(0));
        // 68 bytes were moved: U+0100..U+0143; nothing past them, nor a raw control character.
        assert_eq!(byte_level_byte('\u{143}'), Some(0xad));
        assert_eq!(byte_level_byte('\u{144}'), None);
        assert_eq!(byte_level_byte(' '), None);
        let all: std::collections::BTreeSet<u8> =
            ('\u{21}'..='\u{143}').filter_map(byte_level_byte).collect();
        assert_eq!(all.len(), 256);
    }
}
