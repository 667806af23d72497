//! Running one cell, and its record in the results store (`cells/<id>.json`): started, complete
//! (with the runs it made or reused) or failed (with the error). The runs themselves resume by
//! their own keys, so a cell interrupted anywhere continues from its samples.

use std::path::{Path, PathBuf};

use lmdensity_core::store::{write_atomic, StoredRun};
use lmdensity_core::{progress, ResultsStore};
use lmdensity_jobs::{
    BenchJob, EngineChoice, KldSpec, ModelSpec, Modes, PerplexityJob, TaskJob, Workspace,
};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, ClusterError, Result};
use crate::plan::{Cell, Plan, Work};

/// Where a cell stands, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// A process started it (and may still run it, or was killed).
    Started,
    /// Every run of the cell is complete.
    Complete,
    /// The cell's job failed; `error` says why.
    Failed,
}

/// A cell's record in the results store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// The cell's id.
    pub cell_id: String,
    /// Its index in the plan.
    pub index: usize,
    /// Its label.
    pub label: String,
    /// Where it stands.
    pub state: CellState,
    /// Run ids it made or reused (with `Complete`).
    pub runs: Vec<String>,
    /// How many times a process started it.
    pub attempts: u32,
    /// Host and process of the latest attempt.
    pub host: String,
    /// Process id of the latest attempt.
    pub pid: u32,
    /// `SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID` or the Kubernetes pod, if any.
    pub scheduler_task: Option<String>,
    /// When the latest attempt started (RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The error chain of a failed attempt.
    pub error: Option<String>,
}

/// How to run cells.
#[derive(Debug, Clone, Default)]
pub struct CellOptions {
    /// CPU threads (default: `SLURM_CPUS_PER_TASK`, else every logical CPU).
    pub threads: Option<u32>,
    /// Run a complete cell again (its runs are still reused by key; bench is measured anew).
    pub fresh: bool,
}

/// What running a cell did.
#[derive(Debug, Clone, PartialEq)]
pub enum CellOutcome {
    /// It was complete already: nothing was run.
    AlreadyComplete(CellRecord),
    /// It ran to completion now.
    Completed(CellRecord),
}

impl CellOutcome {
    /// One line: `cell 3 (label): complete (already) — runs a, b`.
    pub fn line(&self) -> String {
        let (record, how) = match self {
            CellOutcome::AlreadyComplete(r) => (r, "complete already, skipped"),
            CellOutcome::Completed(r) => (r, "complete"),
        };
        format!(
            "cell {} ({}): {how} — runs {}",
            record.index,
            record.label,
            record.runs.join(", ")
        )
    }
}

/// The directory of cell records in `store`.
pub fn records_dir(store: &ResultsStore) -> PathBuf {
    store.root().join("cells")
}

/// The cell's record, if it has one.
pub fn read_record(store: &ResultsStore, cell_id: &str) -> Result<Option<CellRecord>> {
    let path = records_dir(store).join(format!("{cell_id}.json"));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClusterError::File {
                path,
                what: format!("not a cell record: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn write_record(store: &ResultsStore, record: &CellRecord) -> Result<()> {
    let dir = records_dir(store);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{}.json", record.cell_id));
    let json = serde_json::to_vec_pretty(record).map_err(|e| ClusterError::File {
        path: path.clone(),
        what: e.to_string(),
    })?;
    Ok(write_atomic(&path, &json)?)
}

/// Whether the record says complete and every run it names is complete in the store.
pub fn is_complete(store: &ResultsStore, record: &CellRecord) -> Result<bool> {
    if record.state != CellState::Complete {
        return Ok(false);
    }
    for id in &record.runs {
        match StoredRun::read(&store.root().join(id)) {
            Ok(run)
                if run.metrics.as_ref().map(|m| m.status)
                    == Some(lmdensity_core::schema::RunStatus::Complete) => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// The array index this process should run: `SLURM_ARRAY_TASK_ID`, else Kubernetes'
/// `JOB_COMPLETION_INDEX`.
pub fn index_from_env() -> Result<usize> {
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(text) = std::env::var(var) {
            return text
                .trim()
                .parse()
                .map_err(|_| ClusterError::Invalid(format!("{var}={text:?} is not a cell index")));
        }
    }
    Err(ClusterError::Invalid(
        "no cell index: give --index, --shard k/N, or run under a Slurm array (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX)".into(),
    ))
}

/// The cells to run: `index`, else the shard `k/N`, else the index from the environment.
pub fn selection(
    plan: &Plan,
    index: Option<usize>,
    shard_text: Option<&str>,
) -> Result<Vec<usize>> {
    match (index, shard_text) {
        (Some(i), _) => Ok(vec![i]),
        (None, Some(text)) => shard(text, plan.cells.len()),
        (None, None) => Ok(vec![index_from_env()?]),
    }
}

/// The cells of shard `k/N` (`k` from 0): every N-th cell starting at `k`.
pub fn shard(text: &str, cells: usize) -> Result<Vec<usize>> {
    let parsed = text.split_once('/').and_then(|(k, n)| {
        Some((
            k.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((k, n)) if n > 0 && k < n => Ok((k..cells).step_by(n).collect()),
        _ => Err(ClusterError::Invalid(format!(
            "--shard {text:?}: expected k/N with 0 ≤ k < N (e.g. 0/4)"
        ))),
    }
}

/// Runs cell `index` of `plan` into `ws`'s store: skipped when its record is complete,
/// otherwise its job runs with resume on (complete runs reused, unfinished ones continued).
/// A lock on the record keeps two processes from running one cell at once.
pub fn run_cell(
    ws: &Workspace,
    plan: &Plan,
    plan_path: &Path,
    index: usize,
    options: &CellOptions,
) -> Result<CellOutcome> {
    let cell = plan.cell(index, plan_path)?;
    let store = ws.store();
    let dir = records_dir(&store);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let lock_path = dir.join(format!("{}.lock", cell.id));
    let lock = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(ClusterError::Invalid(format!(
            "cell {index} ({}) is being run by another process ({} is locked)",
            cell.label,
            lock_path.display()
        )));
    }
    let previous = read_record(&store, &cell.id)?;
    if let Some(done) = &previous {
        if !options.fresh && is_complete(&store, done)? {
            progress::say(format!("cell {index} ({}): complete, skipped", cell.label));
            return Ok(CellOutcome::AlreadyComplete(done.clone()));
        }
    }
    let mut record = CellRecord {
        cell_id: cell.id.clone(),
        index,
        label: cell.label.clone(),
        state: CellState::Started,
        runs: Vec::new(),
        attempts: previous.map_or(0, |p| p.attempts) + 1,
        host: hostname(),
        pid: std::process::id(),
        scheduler_task: scheduler_task(),
        started_at: chrono::Utc::now().to_rfc3339(),
        finished_at: None,
        error: None,
    };
    write_record(&store, &record)?;
    progress::say(format!(
        "cell {index} ({}), attempt {}",
        cell.label, record.attempts
    ));
    let result = run_work(ws, cell, options);
    record.finished_at = Some(chrono::Utc::now().to_rfc3339());
    match result {
        Ok(runs) => {
            record.state = CellState::Complete;
            record.runs = runs.iter().map(|r| r.manifest.run_id.clone()).collect();
            write_record(&store, &record)?;
            Ok(CellOutcome::Completed(record))
        }
        Err(err) => {
            record.state = CellState::Failed;
            record.error = Some(lmdensity_jobs::JobError::from(err).chain());
            write_record(&store, &record)?;
            Err(ClusterError::Invalid(format!(
                "cell {index} ({}) failed: {}",
                cell.label,
                record.error.as_deref().unwrap_or_default()
            )))
        }
    }
}

/// The cell's job, run with resume on; the runs it made or reused.
fn run_work(ws: &Workspace, cell: &Cell, options: &CellOptions) -> Result<Vec<StoredRun>> {
    let model = model_spec(ws, cell, options)?;
    Ok(match &cell.work {
        Work::Perplexity {
            corpus,
            corpus_bytes,
            mode,
            max_length,
            n_ctx,
        } => PerplexityJob {
            model,
            corpus: corpus.clone(),
            corpus_bytes: *corpus_bytes,
            modes: Modes::parse(mode).ok_or_else(|| {
                ClusterError::Invalid(format!("cell {}: unknown mode `{mode}`", cell.index))
            })?,
            max_length: *max_length,
            n_ctx: *n_ctx,
            resume: true,
            kld: KldSpec::default(),
        }
        .run(ws)?,
        Work::Task {
            task,
            num_fewshot,
            limit,
            seed,
        } => {
            let mut job = TaskJob::new(model, task.clone());
            job.num_fewshot = *num_fewshot;
            job.limit = *limit;
            job.seed = *seed;
            job.resume = true;
            job.run(ws)?.runs
        }
        Work::Bench {
            sizes,
            repetitions,
            warmup,
        } => {
            let mut sizes = sizes.clone();
            if sizes.threads.trim().is_empty() {
                if let Some(t) = threads(options) {
                    sizes.threads = t.to_string();
                }
            }
            let job = BenchJob {
                sweep: sizes.sweep().map_err(ClusterError::Invalid)?,
                repetitions: *repetitions,
                warmup: *warmup,
                ..BenchJob::new(model)
            };
            vec![job.run_stored(ws)?.1]
        }
    })
}

/// The model spec of a cell: the registry model, its quantized variant (made on this node
/// once), or the local path.
fn model_spec(ws: &Workspace, cell: &Cell, options: &CellOptions) -> Result<ModelSpec> {
    let m = &cell.model;
    let mut spec = match (&m.registry_id, &m.quantization, &m.path) {
        (Some(id), Some(q), _) => {
            let kind = lmdensity_jobs::sweep::parse_type(q)?;
            ModelSpec::file(lmdensity_jobs::sweep::quantized_variant(ws, id, kind)?)
        }
        (Some(id), None, _) => ModelSpec::registry(id.clone()),
        (None, _, Some(path)) => ModelSpec::file(path.clone()),
        (None, _, None) => {
            return Err(ClusterError::Invalid(format!(
                "cell {} names no model",
                cell.index
            )))
        }
    };
    spec.engine = m.backend.as_deref().and_then(EngineChoice::parse);
    spec.threads = threads(options);
    Ok(spec)
}

fn threads(options: &CellOptions) -> Option<u32> {
    options.threads.or_else(|| {
        std::env::var("SLURM_CPUS_PER_TASK")
            .ok()
            .and_then(|t| t.parse().ok())
    })
}

/// This machine's name (for records; `unknown` where the kernel does not say).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn scheduler_task() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok();
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(job), Some(task)) => Some(format!("{job}_{task}")),
        _ => var("JOB_COMPLETION_INDEX").map(|i| format!("{} index {i}", hostname())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_take_every_nth_cell_and_refuse_bad_specs() {
        assert_eq!(shard("0/2", 5).expect("shard"), [0, 2, 4]);
        assert_eq!(shard("1/2", 5).expect("shard"), [1, 3]);
        assert_eq!(shard("3/4", 2).expect("shard"), Vec::<usize>::new());
        for bad in ["2/2", "1/0", "x/3", "1"] {
            assert!(shard(bad, 5).is_err(), "{bad}");
        }
    }
}
