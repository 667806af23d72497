//! Shared types of lmdensity: the one results schema every command writes and reads, the results
//! store that keeps runs on disk (atomically, resumable), the statistics every metric reports with,
//! and the hardware fingerprint recorded in each manifest.
//!
//! This crate has no model or backend dependency, so the law-fitting and report code can read runs
//! without linking an inference engine.

pub mod driver;
pub mod hardware;
pub mod progress;
pub mod schema;
pub mod stats;
pub mod store;

pub use schema::{
    AnalysisRecord, BackendRecord, BenchSample, ChoiceScore, ExecutionOutcome, GenerationSample,
    ItemSample, Metric, ModelRecord, RunManifest, RunMetrics, RunStatus, Sample, SoftwareRecord,
    StopReason, SweepRow, SweepTable, WindowSample, SCHEMA_VERSION,
};
pub use store::{ResultsStore, RunHandle, StoreError, StoredRun};
