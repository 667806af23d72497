//! Metrics built on the scoring primitive ([`lmdensity_backend::LanguageModel::score`]):
//! evaluation corpora and perplexity in lm-evaluation-harness and llama-perplexity semantics.

pub mod corpus;
pub mod perplexity;

pub use corpus::{Corpus, CorpusError};
pub use perplexity::{PerplexityError, PerplexityMode};
