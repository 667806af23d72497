//! The jobs' error type: bad input said in one line (naming the file, key or flag), or a
//! library's typed error, optionally with what the job was doing when it happened.

use std::fmt::Display;

/// Why a job failed. Work finished before the failure stays in the results store.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input is wrong: the message names the file, key or flag and what is wrong.
    #[error("{0}")]
    Invalid(String),
    /// What the job was doing when `source` failed.
    #[error("{what}")]
    Context {
        /// What was being done (a file, a run directory and how to continue).
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The results store.
    #[error(transparent)]
    Store(#[from] lmdensity_core::StoreError),
    /// An engine (llama.cpp or candle).
    #[error(transparent)]
    Engine(#[from] lmdensity_backend::BackendError),
    /// candle's loaders and converters.
    #[error(transparent)]
    Candle(#[from] lmdensity_candle::CandleError),
    /// Fetching a model or a data file.
    #[error(transparent)]
    Fetch(#[from] lmdensity_hub::FetchError),
    /// The model registry.
    #[error(transparent)]
    Registry(#[from] lmdensity_hub::RegistryError),
    /// A GGUF header.
    #[error(transparent)]
    Gguf(#[from] lmdensity_hub::gguf::GgufError),
    /// A tokenizer.
    #[error(transparent)]
    Tokenizer(#[from] lmdensity_tokenizer::TokenizerError),
    /// A corpus.
    #[error(transparent)]
    Corpus(#[from] lmdensity_eval::corpus::CorpusError),
    /// A perplexity run.
    #[error(transparent)]
    Perplexity(#[from] lmdensity_eval::perplexity::PerplexityError),
    /// A KL-divergence base file.
    #[error(transparent)]
    Kld(#[from] lmdensity_eval::KldError),
    /// A task declaration or run.
    #[error(transparent)]
    Task(#[from] lmdensity_tasks::TaskError),
    /// A bench plan.
    #[error(transparent)]
    BenchPlan(#[from] lmdensity_bench::plan::PlanError),
    /// A law fit.
    #[error(transparent)]
    Law(#[from] lmdensity_laws::LawError),
    /// A report's chart.
    #[error(transparent)]
    Chart(#[from] lmdensity_report::chart::ChartError),
    /// A Markdown report.
    #[error(transparent)]
    Markdown(#[from] lmdensity_report::markdown::MarkdownError),
    /// Reading or writing a file (callers add which one with [`Context`]).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// CSV.
    #[error(transparent)]
    Csv(#[from] csv::Error),
    /// A crate built on the jobs (the cluster's plans and schedulers).
    #[error(transparent)]
    Above(Box<dyn std::error::Error + Send + Sync>),
}

/// Results of jobs.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// `return Err(JobError::Invalid(format!(…)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::JobError::Invalid(format!($($arg)*)))
    };
}

/// Adds what a job was doing to an error, or turns a missing value into [`JobError::Invalid`].
pub trait Context<T> {
    /// With `what` as the context.
    fn context(self, what: impl Display) -> Result<T>;
    /// With the context `what()` makes, only on failure.
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| JobError::Context {
            what: what.to_string(),
            source: Box::new(e),
        })
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| JobError::Context {
            what: what().to_string(),
            source: Box::new(e),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| JobError::Invalid(what.to_string()))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| JobError::Invalid(what().to_string()))
    }
}

impl JobError {
    /// The message and every cause, joined by ": " (what the command line prints).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !out.ends_with(&text) {
                out = format!("{out}: {text}");
            }
            source = cause.source();
        }
        out
    }
}
