//! What every measured run shares: its key (the one definition: which runs may resume or stand
//! in for each other), its manifest, opening it (reuse a complete run, resume an unfinished
//! one, or start anew) and finishing it.

use std::collections::BTreeMap;

use lmdensity_core::progress;
use lmdensity_core::schema::{RunManifest, SoftwareRecord};
use lmdensity_core::store::{resume_key, StoredRun};
use lmdensity_core::{ResultsStore, RunHandle, RunMetrics, SCHEMA_VERSION};
use serde_json::json;

use crate::error::{Context, Result};
use crate::model::Engine;

/// lmdensity's git revision at build time (`git describe --always --dirty`).
pub const GIT_REVISION: &str = env!("LMDENSITY_GIT_REVISION");

/// One run to make: its kind (`perplexity`, `task`, `bench`), directory label, settings (every
/// one that changes the numbers) and what its units are called.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// `perplexity`, `task` or `bench`.
    pub kind: &'static str,
    /// Names the run's directory after the model (`ppl-ptb-test-harness`, `task-piqa`).
    pub label: String,
    /// Settings that define the run.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// What a unit is (`windows`, `items`, `tests`), for messages.
    pub unit: &'static str,
}

/// The key under which runs may resume or stand in for each other: the model's sha256, the
/// engine, the kind and the settings. Every kind of run uses this one definition.
pub fn run_key(
    model_sha256: &str,
    backend: &str,
    kind: &str,
    settings: &BTreeMap<String, serde_json::Value>,
) -> String {
    resume_key(&json!({
        "model_sha256": model_sha256,
        "backend": backend,
        "kind": kind,
        "settings": settings,
    }))
}

impl RunSpec {
    /// This run's key on `engine`.
    pub fn key(&self, engine: &Engine) -> String {
        run_key(
            &engine.record.sha256,
            &engine.backend_label(),
            self.kind,
            &self.settings,
        )
    }
}

/// A run ready to compute, or one already complete.
pub enum Opened {
    /// A complete run with the same key (reused as it is).
    Complete(StoredRun),
    /// A run to compute into: new, or an unfinished one reopened.
    Open(RunHandle),
}

/// Opens the run `spec` describes: with `resume`, a complete run with the same key is reused
/// and an unfinished one reopened; otherwise a new run is created. `extra` settings are
/// recorded in the manifest but are not part of the key.
pub fn open(
    store: &ResultsStore,
    engine: &Engine,
    spec: &RunSpec,
    resume: bool,
    extra: BTreeMap<String, serde_json::Value>,
) -> Result<Opened> {
    let key = spec.key(engine);
    if resume {
        if let Some(done) = store.find_complete(&key)? {
            progress::say(format!(
                "{}: already complete in {}",
                spec.label,
                done.dir.display()
            ));
            return Ok(Opened::Complete(done));
        }
        if let Some(handle) = store.find_resumable(&key)? {
            progress::say(format!(
                "resuming {} ({} {} already scored)",
                handle.dir().display(),
                handle.finished_samples().len(),
                spec.unit
            ));
            return Ok(Opened::Open(handle));
        }
    }
    let mut settings = spec.settings.clone();
    settings.extend(extra);
    Ok(Opened::Open(store.create_run(manifest(
        engine,
        spec.kind,
        &spec.label,
        settings,
        key,
    ))?))
}

/// The finished run, or the error with where the kept samples are and how to continue.
pub fn finish<E>(
    handle: &RunHandle,
    result: std::result::Result<RunMetrics, E>,
    spec: &RunSpec,
) -> Result<StoredRun>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let metrics = result.with_context(|| match spec.kind {
        // Speed is measured anew each time: a bench run is never resumed.
        "bench" => format!(
            "bench run {} (its finished tests are kept)",
            handle.dir().display()
        ),
        kind => format!(
            "{kind} run {} (finished {} are kept; rerun with --resume)",
            handle.dir().display(),
            spec.unit
        ),
    })?;
    Ok(StoredRun {
        dir: handle.dir().to_path_buf(),
        manifest: handle.manifest().clone(),
        metrics: Some(metrics),
    })
}

/// A file-name-safe version of `s`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// lmdensity's version and build, with the engines' crate versions.
pub fn software() -> SoftwareRecord {
    SoftwareRecord {
        lmdensity_version: env!("CARGO_PKG_VERSION").into(),
        git_revision: GIT_REVISION.into(),
        target_features: env!("LMDENSITY_TARGET_FEATURES").into(),
        crate_versions: [
            (
                "llama-cpp-2".to_string(),
                lmdensity_llamacpp::LLAMA_CPP_2_VERSION.to_string(),
            ),
            (
                "candle-core".to_string(),
                lmdensity_candle::CANDLE_VERSION.to_string(),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

/// The manifest of a new run of `kind` on `engine`; `label` names the run's directory after
/// the model.
fn manifest(
    engine: &Engine,
    kind: &str,
    label: &str,
    mut settings: BTreeMap<String, serde_json::Value>,
    key: String,
) -> RunManifest {
    let now = chrono::Utc::now();
    let run_id = format!(
        "{}-{}-{}-{}",
        now.format("%Y%m%dT%H%M%S"),
        sanitize(&engine.record.id),
        label,
        &key[..8]
    );
    settings.insert("model_source".into(), json!(engine.resolved.source));
    RunManifest {
        schema_version: SCHEMA_VERSION,
        run_id,
        kind: kind.into(),
        started_at: now.to_rfc3339(),
        model: engine.record.clone(),
        backend: engine.backend_record(),
        hardware: engine.hardware.clone(),
        software: software(),
        settings,
        resume_key: key,
    }
}

/// Settings from (name, value) pairs.
pub fn settings<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> BTreeMap<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
