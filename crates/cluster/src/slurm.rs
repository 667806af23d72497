//! Slurm: the sbatch array script for a plan's unfinished cells, its submission, and the queue's
//! view of the array tasks (`squeue`, with `sacct` where accounting is on).
//!
//! lmdensity writes no scheduler of its own: each array task is `lmdensity run-cell`, which
//! takes its index from `SLURM_ARRAY_TASK_ID`; `--requeue` lets a preempted task start again,
//! and the run it was computing resumes from its samples.

use std::path::{Path, PathBuf};
use std::process::Command;

use lmdensity_core::store::write_atomic;
use lmdensity_jobs::Workspace;
use serde::{Deserialize, Serialize};

use crate::cell::{is_complete, read_record};
use crate::error::{io_err, ClusterError, Result};
use crate::plan::Plan;

/// `#SBATCH` resources of the array.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SbatchOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's formats: `30`, `2:00:00`, `1-00:00:00`).
    pub time: Option<String>,
    /// `--cpus-per-task` (also the threads each cell uses).
    pub cpus_per_task: Option<u32>,
    /// `--mem` (`8G`).
    pub mem: Option<String>,
    /// `--gres` (`gpu:1`).
    pub gres: Option<String>,
    /// At most this many array tasks at once (`--array=…%K`).
    pub max_parallel: Option<usize>,
}

/// What a submission needs besides the plan.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The plan file (absolute; every node must read it at this path).
    pub plan_path: PathBuf,
    /// The lmdensity binary the tasks run (absolute).
    pub binary: PathBuf,
    /// The shared results store (absolute).
    pub results_dir: PathBuf,
    /// The registry file, if one was given.
    pub registry: Option<PathBuf>,
    /// Resources.
    pub options: SbatchOptions,
}

impl Submission {
    /// A submission of the plan at `plan_path` into `ws`'s store, run by this very binary;
    /// every path is made absolute (array tasks start in another directory, on other nodes).
    pub fn new(ws: &Workspace, plan_path: &Path, options: SbatchOptions) -> Result<Submission> {
        let absolute = |p: &Path| std::path::absolute(p).map_err(io_err(p));
        let binary = std::env::current_exe()
            .map_err(|e| ClusterError::Invalid(format!("cannot tell where lmdensity is: {e}")))?;
        Ok(Submission {
            plan_path: absolute(plan_path)?,
            binary,
            results_dir: absolute(&ws.results_dir)?,
            registry: ws.registry.as_deref().map(absolute).transpose()?,
            options,
        })
    }
}

/// One submitted array, as recorded in `<results>/slurm/submissions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedArray {
    /// Slurm's job id of the array.
    pub job_id: String,
    /// The plan's id.
    pub plan_id: String,
    /// The cell indices submitted.
    pub indices: Vec<usize>,
    /// The script.
    pub script: PathBuf,
    /// When (RFC 3339).
    pub submitted_at: String,
}

/// The indices of `plan`'s cells that are not complete in `ws`'s store.
pub fn unfinished(ws: &Workspace, plan: &Plan) -> Result<Vec<usize>> {
    let store = ws.store();
    let mut out = Vec::new();
    for cell in &plan.cells {
        let done = match read_record(&store, &cell.id)? {
            Some(record) => is_complete(&store, &record)?,
            None => false,
        };
        if !done {
            out.push(cell.index);
        }
    }
    Ok(out)
}

/// Slurm's `--array` value for `indices` (`0-3,7,9-10`), with `%K` when limited.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(k) = max_parallel {
        spec.push_str(&format!("%{k}"));
    }
    spec
}

/// Single-quotes `s` for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch script running `indices` of `plan` as one array.
pub fn script(plan: &Plan, indices: &[usize], sub: &Submission) -> String {
    let o = &sub.options;
    let log_dir = sub.results_dir.join("slurm");
    let mut lines = vec![
        "#!/bin/bash".to_string(),
        format!("#SBATCH --job-name=lmdensity-{}", plan.name),
        format!("#SBATCH --array={}", array_spec(indices, o.max_parallel)),
        format!("#SBATCH --output={}/%A_%a.out", log_dir.display()),
        "#SBATCH --open-mode=append".into(),
        // A preempted or failed node puts the task back in the queue; it resumes its run.
        "#SBATCH --requeue".into(),
    ];
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            lines.push(format!("#SBATCH --{name}={v}"));
        }
    };
    flag("partition", o.partition.clone());
    flag("time", o.time.clone());
    flag("cpus-per-task", o.cpus_per_task.map(|c| c.to_string()));
    flag("mem", o.mem.clone());
    flag("gres", o.gres.clone());
    lines.push(format!(
        "# plan {} ({} cells; {} submitted), made by lmdensity {}",
        plan.plan_id,
        plan.cells.len(),
        indices.len(),
        env!("CARGO_PKG_VERSION")
    ));
    lines.push("set -euo pipefail".into());
    let mut command = vec![
        "exec".to_string(),
        quote(&sub.binary.display().to_string()),
        "--quiet".into(),
        "--results-dir".into(),
        quote(&sub.results_dir.display().to_string()),
    ];
    if let Some(r) = &sub.registry {
        command.push("--registry".into());
        command.push(quote(&r.display().to_string()));
    }
    command.extend([
        "run-cell".into(),
        "--plan".into(),
        quote(&sub.plan_path.display().to_string()),
    ]);
    lines.push(command.join(" "));
    lines.join("\n") + "\n"
}

/// Checks what a submission needs before anything is submitted: the store can be written,
/// the binary and plan exist, `sbatch` is on PATH.
pub fn preflight(sub: &Submission) -> Result<()> {
    std::fs::create_dir_all(sub.results_dir.join("slurm"))
        .map_err(|e| not_writable(&sub.results_dir, e))?;
    let probe = sub
        .results_dir
        .join("slurm")
        .join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| not_writable(&sub.results_dir, e))?;
    let _ = std::fs::remove_file(&probe);
    for (what, path) in [("binary", &sub.binary), ("plan", &sub.plan_path)] {
        if !path.is_file() {
            return Err(ClusterError::Invalid(format!(
                "{what} {} does not exist",
                path.display()
            )));
        }
    }
    which("sbatch")?;
    Ok(())
}

fn not_writable(dir: &Path, source: std::io::Error) -> ClusterError {
    ClusterError::Invalid(format!(
        "results directory {} is not writable ({source}); every node must be able to write it",
        dir.display()
    ))
}

/// `program` on PATH, or an error saying Slurm's client commands are needed.
fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| ClusterError::Scheduler {
            program: program.into(),
            what: "not found on PATH: run this on a Slurm login node (Slurm's client commands; Debian: slurm-client)".into(),
        })
}

/// Writes the script to `<results>/slurm/<plan>-<time>.sbatch`, submits it with
/// `sbatch --parsable` and records the array in `submissions.jsonl`.
pub fn submit(plan: &Plan, indices: &[usize], sub: &Submission) -> Result<SubmittedArray> {
    preflight(sub)?;
    let dir = sub.results_dir.join("slurm");
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
    let path = dir.join(format!("{}-{stamp}.sbatch", plan.plan_id));
    write_atomic(&path, script(plan, indices, sub).as_bytes())?;
    let out = run(
        "sbatch",
        Command::new(which("sbatch")?).arg("--parsable").arg(&path),
    )?;
    // --parsable prints `jobid[;cluster]`.
    let job_id = out.trim().split(';').next().unwrap_or_default().to_string();
    if job_id.is_empty() {
        return Err(ClusterError::Scheduler {
            program: "sbatch".into(),
            what: format!("printed no job id for {}", path.display()),
        });
    }
    let array = SubmittedArray {
        job_id,
        plan_id: plan.plan_id.clone(),
        indices: indices.to_vec(),
        script: path,
        submitted_at: chrono::Utc::now().to_rfc3339(),
    };
    let log = dir.join("submissions.jsonl");
    let mut line =
        serde_json::to_string(&array).map_err(|e| ClusterError::Invalid(e.to_string()))?;
    line.push('\n');
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(io_err(&log))?;
    Ok(array)
}

/// What `slurm submit` did.
#[derive(Debug, Clone)]
pub enum SubmitOutcome {
    /// `--dry-run`: the script that would be submitted.
    Script(String),
    /// Every cell is complete or still queued: nothing was submitted.
    NothingToDo {
        /// The plan's id.
        plan_id: String,
        /// Its cells.
        cells: usize,
        /// Of those, queued or running from an earlier submission.
        queued: usize,
    },
    /// An array was submitted.
    Submitted {
        /// The array.
        array: SubmittedArray,
        /// The plan's cells.
        cells: usize,
    },
}

impl std::fmt::Display for SubmitOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitOutcome::Script(text) => write!(f, "{text}"),
            SubmitOutcome::NothingToDo {
                plan_id,
                cells,
                queued: 0,
            } => writeln!(
                f,
                "all {cells} cells of plan {plan_id} are complete: nothing submitted"
            ),
            SubmitOutcome::NothingToDo {
                plan_id,
                cells,
                queued,
            } => writeln!(
                f,
                "the {cells} cells of plan {plan_id} are complete or queued ({queued} queued or running): nothing submitted"
            ),
            SubmitOutcome::Submitted { array, cells } => writeln!(
                f,
                "submitted array job {}: {} of {cells} cells, script {}",
                array.job_id,
                array.indices.len(),
                array.script.display()
            ),
        }
    }
}

/// Loads and checks the plan at `plan_path`, then submits its unfinished cells (or, with
/// `dry_run`, returns the script). Bad cells, an unwritable store or a missing `sbatch` are
/// refused before anything is submitted.
pub fn submit_plan(
    ws: &Workspace,
    plan_path: &Path,
    options: SbatchOptions,
    dry_run: bool,
) -> Result<SubmitOutcome> {
    let plan = Plan::load(plan_path)?;
    plan.check(ws, plan_path)?;
    let submission = Submission::new(ws, plan_path, options)?;
    if !dry_run {
        preflight(&submission)?;
    }
    // Cells still queued or running from an earlier submission are not submitted twice.
    let busy = queued_cells(&ws.results_dir, &plan.plan_id).unwrap_or_default();
    let todo: Vec<usize> = unfinished(ws, &plan)?
        .into_iter()
        .filter(|i| !busy.contains(i))
        .collect();
    if dry_run {
        return Ok(SubmitOutcome::Script(script(&plan, &todo, &submission)));
    }
    if todo.is_empty() {
        return Ok(SubmitOutcome::NothingToDo {
            plan_id: plan.plan_id,
            cells: plan.cells.len(),
            queued: busy.len(),
        });
    }
    Ok(SubmitOutcome::Submitted {
        array: submit(&plan, &todo, &submission)?,
        cells: plan.cells.len(),
    })
}

/// Indices of `plan_id`'s cells that Slurm has pending or running in an earlier array.
fn queued_cells(results_dir: &Path, plan_id: &str) -> Result<Vec<usize>> {
    let ids: Vec<String> = submissions(results_dir, plan_id)?
        .into_iter()
        .map(|a| a.job_id)
        .collect();
    Ok(queue(&ids)?
        .into_iter()
        .filter(|t| {
            matches!(
                t.state.as_str(),
                "PENDING" | "RUNNING" | "REQUEUED" | "CONFIGURING" | "RESIZING" | "SUSPENDED"
            )
        })
        .map(|t| t.index)
        .collect())
}

/// The arrays submitted for `plan_id`, oldest first.
pub fn submissions(results_dir: &Path, plan_id: &str) -> Result<Vec<SubmittedArray>> {
    let log = results_dir.join("slurm").join("submissions.jsonl");
    let text = match std::fs::read_to_string(&log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&log)(e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let array: SubmittedArray = serde_json::from_str(line).map_err(|e| ClusterError::File {
            path: log.clone(),
            what: format!("line {}: {e}", n + 1),
        })?;
        if array.plan_id == plan_id {
            out.push(array);
        }
    }
    Ok(out)
}

/// One array task as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    /// The array's job id.
    pub job_id: String,
    /// The cell index.
    pub index: usize,
    /// Slurm's state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, …).
    pub state: String,
    /// Slurm's reason or exit code.
    pub reason: String,
}

/// The tasks of `job_ids` Slurm knows: `squeue` (pending and running), then `sacct` (finished;
/// skipped where accounting is off). A task in both is taken from squeue.
pub fn queue(job_ids: &[String]) -> Result<Vec<QueuedTask>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = job_ids.join(",");
    let squeue = run(
        "squeue",
        Command::new(which("squeue")?).args(["-h", "-r", "-j", &ids, "-o", "%F|%K|%T|%r"]),
    )
    // squeue refuses ids that have left the queue; they are then only in sacct.
    .unwrap_or_default();
    let mut tasks = parse_rows(&squeue);
    if let Ok(sacct) = which("sacct") {
        if let Ok(text) = run(
            "sacct",
            Command::new(sacct).args(["-n", "-P", "-X", "-j", &ids, "-o", "JobID,State,ExitCode"]),
        ) {
            for row in parse_sacct(&text) {
                if !tasks
                    .iter()
                    .any(|t| t.job_id == row.job_id && t.index == row.index)
                {
                    tasks.push(row);
                }
            }
        }
    }
    Ok(tasks)
}

/// `squeue -o "%F|%K|%T|%r"` rows (array job id, task id, state, reason).
pub fn parse_rows(text: &str) -> Vec<QueuedTask> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            let [job, index, state, reason] = f.as_slice() else {
                return None;
            };
            Some(QueuedTask {
                job_id: job.to_string(),
                index: index.parse().ok()?,
                state: state.to_string(),
                reason: reason.to_string(),
            })
        })
        .collect()
}

/// `sacct -n -P -X -o JobID,State,ExitCode` rows (`123_4|FAILED|1:0`; ranges of pending
/// tasks `123_[5-7]` are skipped: squeue lists those).
pub fn parse_sacct(text: &str) -> Vec<QueuedTask> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            let [id, state, exit] = f.as_slice() else {
                return None;
            };
            let (job, index) = id.split_once('_')?;
            Some(QueuedTask {
                job_id: job.to_string(),
                index: index.parse().ok()?,
                state: state
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                reason: format!("exit {exit}"),
            })
        })
        .collect()
}

/// Runs a scheduler command; its stdout, or its stderr in the error.
fn run(program: &str, command: &mut Command) -> Result<String> {
    let out = command.output().map_err(|e| ClusterError::Scheduler {
        program: program.into(),
        what: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ClusterError::Scheduler {
            program: program.into(),
            what: format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs_of_indices() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[0, 2, 3, 4, 9], Some(2)), "0,2-4,9%2");
        assert_eq!(array_spec(&[5], None), "5");
    }

    #[test]
    fn queue_rows_parse_and_skip_pending_ranges() {
        let rows = parse_rows("12|0|RUNNING|None\n12|3|PENDING|JobArrayTaskLimit\ngarbage\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].index, 3);
        assert_eq!(rows[1].reason, "JobArrayTaskLimit");
        let done = parse_sacct("12_1|CANCELLED by 0|0:15\n12_[5-7]|PENDING|0:0\n");
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].state, "CANCELLED");
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
