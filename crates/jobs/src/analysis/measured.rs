//! Scores of registry models measured by `lmdensity eval`, read from the results store's task
//! runs on one protocol: for each of the score's tasks, the newest complete run with exactly
//! the protocol's number of shots, and the protocol's metric (`acc_norm` for ARC and HellaSwag
//! on the leaderboard, `acc` otherwise). The score is the mean over the tasks; its standard
//! error combines the runs' standard errors as independent samples, √(Σ seᵢ²) / k.
//! A task without a run, with runs on other shots only, or with no complete run is refused with
//! the model, the task and what is missing or different.

use lmdensity_core::{RunStatus, StoredRun};
use lmdensity_laws::obsscaling::{LeaderboardScore, Task};
use serde::Serialize;

use crate::error::Result;
use crate::JobError;

/// One task of a protocol's score: the task, its shots and the metric read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSetting {
    /// lm-eval task name (`arc_challenge`).
    pub task: &'static str,
    /// Few-shot examples per item.
    pub num_fewshot: u64,
    /// Metric suffix (`acc`, `acc_norm`).
    pub metric: &'static str,
}

/// The leaderboard v1 settings of a score's tasks (ARC-Challenge 25-shot acc_norm, HellaSwag
/// 10-shot acc_norm, WinoGrande 5-shot acc, MMLU 5-shot acc, TruthfulQA 0-shot mc2, GSM8K
/// 5-shot exact match), as the ObsScaling table reports them.
pub fn leaderboard_settings(score: LeaderboardScore) -> Vec<TaskSetting> {
    score
        .tasks()
        .iter()
        .map(|t| {
            let (num_fewshot, metric) = match t {
                Task::ArcChallenge => (25, "acc_norm"),
                Task::Hellaswag => (10, "acc_norm"),
                Task::Winogrande | Task::Mmlu => (5, "acc"),
                Task::TruthfulQa => (0, "mc2"),
                Task::Gsm8k => (5, "exact_match"),
            };
            TaskSetting {
                task: t.name(),
                num_fewshot,
                metric,
            }
        })
        .collect()
}

/// The 0-shot settings of issue #6's route: `acc` on each of `tasks`.
pub fn zero_shot_settings(tasks: &[&'static str]) -> Vec<TaskSetting> {
    tasks
        .iter()
        .map(|task| TaskSetting {
            task,
            num_fewshot: 0,
            metric: "acc",
        })
        .collect()
}

/// One task's value as read from its run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredTask {
    /// Task name.
    pub task: String,
    /// Few-shot examples per item.
    pub num_fewshot: u64,
    /// Metric read (`arc_challenge/acc_norm`).
    pub metric: String,
    /// Its value.
    pub value: f64,
    /// Its standard error, as the run stored it.
    pub stderr: Option<f64>,
    /// Items scored (the run's `<task>/items`, else its `items` setting).
    pub items: Option<u64>,
    /// The run's id.
    pub run: String,
}

/// A model's protocol score from its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredScore {
    /// Registry id.
    pub model: String,
    /// Mean of the tasks' values.
    pub score: f64,
    /// √(Σ seᵢ²) / k when every task has a standard error.
    pub stderr: Option<f64>,
    /// Every task read, in the score's order.
    pub tasks: Vec<MeasuredTask>,
}

impl MeasuredScore {
    /// Items per task, e.g. `arc_challenge 25-shot acc_norm 100 items, …`.
    pub fn note(&self) -> String {
        self.tasks
            .iter()
            .map(|t| {
                let items = t.items.map_or("? items".into(), |n| format!("{n} items"));
                let metric = t.metric.rsplit('/').next().unwrap_or(&t.metric);
                format!("{} {}-shot {metric} {items}", t.task, t.num_fewshot)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A setting of a run as an unsigned number (`num_fewshot`, `items`); a missing `num_fewshot`
/// reads 0 (runs written before the setting existed were 0-shot).
fn number_setting(run: &StoredRun, key: &str) -> Option<u64> {
    run.manifest.settings.get(key).and_then(|v| v.as_u64())
}

fn shots(run: &StoredRun) -> u64 {
    number_setting(run, "num_fewshot").unwrap_or(0)
}

fn task_of(run: &StoredRun) -> Option<&str> {
    run.manifest.settings.get("task").and_then(|v| v.as_str())
}

/// Reads one task of `model` from `runs`, or says what is missing or different.
fn read_task(
    runs: &[&StoredRun],
    model: &str,
    want: &TaskSetting,
    store: &str,
) -> std::result::Result<MeasuredTask, String> {
    let of_task: Vec<&StoredRun> = runs
        .iter()
        .copied()
        .filter(|r| task_of(r) == Some(want.task))
        .collect();
    let command = format!(
        "`lmdensity eval --model {model} --tasks {} --num-fewshot {}`",
        want.task, want.num_fewshot
    );
    if of_task.is_empty() {
        return Err(format!(
            "{}: no run in {store} (measure it with {command})",
            want.task
        ));
    }
    let mut right: Vec<&StoredRun> = of_task
        .iter()
        .copied()
        .filter(|r| shots(r) == want.num_fewshot)
        .collect();
    if right.is_empty() {
        let mut found: Vec<String> = of_task.iter().map(|r| shots(r).to_string()).collect();
        found.sort();
        found.dedup();
        return Err(format!(
            "{}: measured with {} shots only, the protocol needs {} (run {command})",
            want.task,
            found.join(", "),
            want.num_fewshot
        ));
    }
    right.sort_by(|a, b| a.manifest.started_at.cmp(&b.manifest.started_at));
    let metric = format!("{}/{}", want.task, want.metric);
    let complete = right.iter().rev().find(|r| {
        r.metrics
            .as_ref()
            .is_some_and(|m| m.status == RunStatus::Complete)
    });
    let Some(run) = complete else {
        let last = right[right.len() - 1];
        return Err(format!(
            "{}: {}-shot run {} is not complete ({}); resume it with the same command",
            want.task,
            want.num_fewshot,
            last.manifest.run_id,
            if last.metrics.is_some() {
                "status partial"
            } else {
                "no metrics.json yet"
            }
        ));
    };
    let Some((value, stderr)) = lmdensity_report::collect::metric(run, &metric) else {
        return Err(format!(
            "{}: run {} has no {metric}",
            want.task, run.manifest.run_id
        ));
    };
    let items = lmdensity_report::collect::metric(run, &format!("{}/items", want.task))
        .map(|(n, _)| n as u64)
        .or_else(|| number_setting(run, "items"));
    Ok(MeasuredTask {
        task: want.task.to_string(),
        num_fewshot: want.num_fewshot,
        metric,
        value,
        stderr,
        items,
        run: run.manifest.run_id.clone(),
    })
}

/// `model`'s score on `settings` from the task runs in `runs` (`store` names the store and
/// `protocol` the protocol in errors). Every task that cannot be read is named in one error.
pub fn measured_score(
    runs: &[StoredRun],
    model: &str,
    settings: &[TaskSetting],
    store: &str,
    protocol: &str,
) -> Result<MeasuredScore> {
    let own: Vec<&StoredRun> = runs
        .iter()
        .filter(|r| r.manifest.kind == "task" && r.manifest.model.id == model)
        .collect();
    let mut tasks = Vec::new();
    let mut problems = Vec::new();
    for want in settings {
        match read_task(&own, model, want, store) {
            Ok(t) => tasks.push(t),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        let wanted: Vec<String> = settings
            .iter()
            .map(|s| format!("{} {}-shot {}", s.task, s.num_fewshot, s.metric))
            .collect();
        return Err(JobError::Invalid(format!(
            "{model}: the {protocol} score is the mean of {}; {}",
            wanted.join(", "),
            problems.join("; ")
        )));
    }
    let k = tasks.len() as f64;
    let score = tasks.iter().map(|t| t.value).sum::<f64>() / k;
    let stderr = tasks
        .iter()
        .map(|t| t.stderr.map(|s| s * s))
        .sum::<Option<f64>>()
        .map(|v| v.sqrt() / k);
    Ok(MeasuredScore {
        model: model.to_string(),
        score,
        stderr,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderboard_settings_are_the_leaderboard_v1_shots() {
        let s = leaderboard_settings(LeaderboardScore::ArcHellaswagWinogrande);
        let got: Vec<(&str, u64, &str)> = s
            .iter()
            .map(|t| (t.task, t.num_fewshot, t.metric))
            .collect();
        assert_eq!(
            got,
            vec![
                ("arc_challenge", 25, "acc_norm"),
                ("hellaswag", 10, "acc_norm"),
                ("winogrande", 5, "acc")
            ]
        );
        assert!(zero_shot_settings(&["piqa"])
            .iter()
            .all(|t| t.num_fewshot == 0 && t.metric == "acc"));
    }

    #[test]
    fn an_empty_store_names_every_missing_task() {
        let settings = leaderboard_settings(LeaderboardScore::ArcHellaswagWinogrande);
        let err = measured_score(&[], "m", &settings, "store", "leaderboard")
            .expect_err("refused")
            .to_string();
        for task in ["arc_challenge", "hellaswag", "winogrande"] {
            assert!(err.contains(&format!("{task}: no run in store")), "{err}");
        }
        assert!(err.starts_with("m: the leaderboard score"), "{err}");
    }
}
