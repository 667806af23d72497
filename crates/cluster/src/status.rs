//! Where each cell of a plan stands, from the results store (cell records and runs) and the
//! scheduler's queue: complete, running, pending, failed (with the reason), interrupted
//! (started, no longer queued: resubmitting resumes it) or not started.

use lmdensity_jobs::Workspace;
use serde::Serialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::cell::{is_complete, read_record, CellState};
use crate::error::Result;
use crate::plan::Plan;
use crate::slurm::{self, QueuedTask};

/// A cell's state, as status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Its runs are complete in the store.
    Complete,
    /// A task runs it now.
    Running,
    /// Queued.
    Pending,
    /// Its last attempt failed.
    Failed,
    /// Started, and neither running nor queued (killed, cancelled, preempted): resubmit.
    Interrupted,
    /// No attempt yet.
    NotStarted,
}

impl Standing {
    fn name(&self) -> &'static str {
        match self {
            Standing::Complete => "complete",
            Standing::Running => "running",
            Standing::Pending => "pending",
            Standing::Failed => "failed",
            Standing::Interrupted => "interrupted",
            Standing::NotStarted => "not started",
        }
    }
}

/// One cell's status.
#[derive(Debug, Clone, Serialize, Tabled)]
pub struct CellStatus {
    /// Index.
    #[tabled(rename = "#")]
    pub index: usize,
    /// Label.
    #[tabled(rename = "cell")]
    pub label: String,
    /// Where it stands.
    #[tabled(rename = "state", display = "Standing::name")]
    pub standing: Standing,
    /// Attempts so far.
    pub attempts: u32,
    /// Reason, error or where it ran.
    pub detail: String,
}

/// The status of every cell of `plan`: the store first (complete, failed), then the latest
/// scheduler state of each cell's array task.
pub fn status(ws: &Workspace, plan: &Plan) -> Result<Vec<CellStatus>> {
    let store = ws.store();
    let arrays = slurm::submissions(&ws.results_dir, &plan.plan_id)?;
    let ids: Vec<String> = arrays.iter().map(|a| a.job_id.clone()).collect();
    let queued = if ids.is_empty() {
        Vec::new()
    } else {
        slurm::queue(&ids)?
    };
    let mut out = Vec::new();
    for cell in &plan.cells {
        let record = read_record(&store, &cell.id)?;
        // The newest array that holds this cell decides its scheduler state.
        let task: Option<&QueuedTask> = arrays
            .iter()
            .rev()
            .filter(|a| a.indices.contains(&cell.index))
            .find_map(|a| {
                queued
                    .iter()
                    .find(|t| t.job_id == a.job_id && t.index == cell.index)
            });
        let (standing, detail) = match (&record, task) {
            (Some(r), _) if is_complete(&store, r)? => (
                Standing::Complete,
                format!("{} run(s) on {}", r.runs.len(), r.host),
            ),
            (_, Some(t)) if t.state == "RUNNING" => {
                (Standing::Running, format!("job {}_{}", t.job_id, t.index))
            }
            (_, Some(t)) if t.state == "PENDING" || t.state == "REQUEUED" => {
                (Standing::Pending, t.reason.clone())
            }
            (Some(r), _) if r.state == CellState::Failed => {
                (Standing::Failed, r.error.clone().unwrap_or_default())
            }
            (Some(r), t) => (
                Standing::Interrupted,
                format!(
                    "started on {} at {}{}; resubmit to resume",
                    r.host,
                    r.started_at,
                    t.map(|t| format!(", Slurm: {} {}", t.state, t.reason))
                        .unwrap_or_default()
                ),
            ),
            (None, Some(t)) => (Standing::Failed, format!("Slurm: {} {}", t.state, t.reason)),
            (None, None) => (Standing::NotStarted, String::new()),
        };
        out.push(CellStatus {
            index: cell.index,
            label: cell.label.clone(),
            standing,
            attempts: record.map_or(0, |r| r.attempts),
            detail,
        });
    }
    Ok(out)
}

/// The status table and a last line `cells=<n> complete=<n> running=<n> …`.
pub fn status_text(cells: &[CellStatus]) -> String {
    let mut table = Table::new(cells);
    table.with(Style::markdown());
    format!("{table}\n{}\n", summary_line(cells))
}

/// `cells=<n> complete=<n> running=<n> pending=<n> failed=<n> interrupted=<n> not_started=<n>`.
pub fn summary_line(cells: &[CellStatus]) -> String {
    let count = |s: Standing| cells.iter().filter(|c| c.standing == s).count();
    format!(
        "cells={} complete={} running={} pending={} failed={} interrupted={} not_started={}",
        cells.len(),
        count(Standing::Complete),
        count(Standing::Running),
        count(Standing::Pending),
        count(Standing::Failed),
        count(Standing::Interrupted),
        count(Standing::NotStarted)
    )
}
