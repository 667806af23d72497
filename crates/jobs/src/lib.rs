//! The work behind every lmdensity command, as plain job types that run and return typed
//! results: no argument parsing here (that is the binary's), no printing beyond progress.
//!
//! | job | what it does |
//! |---|---|
//! | [`PerplexityJob`] | perplexity of a model on a corpus, optionally KL divergence against a base |
//! | [`TaskJob`] | downstream tasks with lm-eval's prompts and metrics |
//! | [`BenchJob`] | llama-bench's throughput tests, memory and the roofline |
//! | [`QuantizeJob`], [`SweepJob`] | llama.cpp's quantizer; the quantization sweep (composes the three above) |
//! | [`ConvertJob`] | GGUF → HF directory or F32 GGUF |
//! | [`FitJob`], [`DensityJob`], [`TrendJob`] | laws (also loss curves of training runs), effective parameter size, density trend |
//! | [`ReportJob`], [`report::compare_runs`] | the report with plots; two runs compared |
//!
//! Every measured run goes through [`run`] (one run key, open/resume/finish) and
//! [`lmdensity_core::driver`] (the one resumable loop); the engine is chosen in [`model`].

pub mod analysis;
pub mod bench;
pub mod convert;
pub mod curve_text;
mod curves;
pub mod error;
pub mod listing;
pub mod model;
pub mod perplexity;
pub mod report;
pub mod run;
pub mod sweep;
pub mod tasks;
pub mod workspace;

pub use analysis::{
    Analysis, DensityJob, FitJob, FitSettings, FitTarget, LawName, ReferenceSpec, TrendJob,
};
pub use bench::BenchJob;
pub use convert::{ConvertFormat, ConvertJob};
pub use error::{Context, JobError, Result};
pub use lmdensity_laws::loss_curve::CurveLawName;
pub use model::{Dtype, Engine, EngineChoice, ModelSpec};
pub use perplexity::{KldSpec, Modes, PerplexityJob};
pub use report::ReportJob;
pub use sweep::{QuantizeJob, SweepJob};
pub use tasks::{ChatOptions, Scoring, TaskJob, TaskOutcome};
pub use workspace::Workspace;
