//! Metrics built on the scoring primitive ([`lmdensity_backend::LanguageModel::score`]):
//! evaluation corpora and perplexity in lm-evaluation-harness and llama-perplexity semantics.

pub mod corpus;
pub mod kld;
pub mod perplexity;

pub use corpus::{Corpus, CorpusError};
pub use kld::{BaseHeader, BaseReader, BaseWriter, KldError};
pub use perplexity::{PerplexityError, PerplexityMode};
