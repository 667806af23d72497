//! The report's calibration section: ECE, Brier and AUROC of every latest complete
//! multiple-choice task run, and a reliability diagram, all recomputed from `samples.jsonl`.

use std::collections::BTreeMap;

use lmdensity_core::StoredRun;

use crate::calibration::{of_samples, Calibration};
use crate::chart::{Axis, Chart, Layer, LegendAt, Marker, Series, XyChart};
use crate::collect::{setting, Collected};
use crate::figures::Figure;

/// Calibration of the latest complete task run per (model, task) whose samples are present.
fn calibrations(data: &Collected) -> BTreeMap<(String, String), Vec<Calibration>> {
    let mut latest: BTreeMap<(String, String), &StoredRun> = BTreeMap::new();
    for run in data.complete("task") {
        latest.insert((run.manifest.model.id.clone(), setting(run, "task")), run);
    }
    latest
        .into_iter()
        .filter_map(|(key, run)| {
            let samples = run.samples().ok()?;
            let c = of_samples(&samples);
            (!c.is_empty()).then_some((key, c))
        })
        .collect()
}

fn auroc(c: &Calibration) -> String {
    c.auroc.map_or("—".into(), |a| format!("{a:.3}"))
}

/// What the calibration section says first.
pub const INTRODUCTION: &str =
    "Each item's choice distribution is the softmax of its choices' log-likelihoods \
         (`raw`), or of the log-likelihoods per character (`per_char`, the ranking acc_norm \
         uses); confidence is the top choice's probability. ECE: Σ (n_b/N)·|accuracy_b − \
         confidence_b| over 10 or 15 equal-mass bins; Brier: mean Σ_j (p_j − [j = gold])²; \
         AUROC: how well confidence separates right from wrong items (0.5 = not at all). \
         Recomputed from each run's samples.jsonl.";

/// A table as header cells and rows of cells.
pub type Cells = (Vec<String>, Vec<Vec<String>>);

/// The calibration table (header, one row per model, task and scoring; none without calibrated
/// runs) and the reliability diagram.
pub fn table_and_figure(data: &Collected) -> (Option<Cells>, Figure) {
    let all = calibrations(data);
    let table = (!all.is_empty()).then(|| {
        let mut rows = Vec::new();
        for ((model, task), cs) in &all {
            for c in cs {
                rows.push(vec![
                    model.clone(),
                    task.clone(),
                    c.scoring.clone(),
                    c.items.to_string(),
                    format!("{:.4}", c.accuracy),
                    format!("{:.4}", c.mean_confidence),
                    format!("{:.4}", c.ece_10),
                    format!("{:.4}", c.ece_15),
                    format!("{:.4}", c.brier),
                    auroc(c),
                ]);
            }
        }
        let header = [
            "model",
            "task",
            "scoring",
            "items",
            "accuracy",
            "confidence",
            "ECE (10)",
            "ECE (15)",
            "Brier",
            "AUROC",
        ]
        .map(String::from)
        .to_vec();
        (header, rows)
    });
    (table, figure(&all))
}

/// Tasks a reliability diagram can tell apart: the palette's seven colours (grey is the
/// diagonal).
const MAX_TASKS: usize = 7;

/// Reliability diagram of the first model with calibrated runs: accuracy against confidence
/// per equal-mass bin (raw scoring), one line per task (its seven largest), and the diagonal
/// of perfect calibration.
fn figure(all: &BTreeMap<(String, String), Vec<Calibration>>) -> Figure {
    let model = all.keys().next().map(|(m, _)| m.clone());
    let mut tasks: Vec<(&String, &Calibration)> = all
        .iter()
        .filter(|((m, _), _)| Some(m) == model.as_ref())
        .map(|((_, t), cs)| (t, &cs[0]))
        .collect();
    tasks.sort_by(|a, b| b.1.items.cmp(&a.1.items).then(a.0.cmp(b.0)));
    let left_out: Vec<String> = tasks
        .iter()
        .skip(MAX_TASKS)
        .map(|(t, _)| (*t).clone())
        .collect();
    tasks.truncate(MAX_TASKS);
    tasks.sort_by(|a, b| a.0.cmp(b.0));
    let chart = match &model {
        None => Err("No calibrated task runs in the store.".into()),
        Some(model) => {
            let mut series = vec![Series {
                name: "perfect calibration".into(),
                colour: 7,
                layer: Layer::Dashed(vec![(0.0, 0.0), (1.0, 1.0)]),
            }];
            for (i, (task, raw)) in tasks.iter().enumerate() {
                let points: Vec<(f64, f64)> = raw
                    .bins
                    .iter()
                    .map(|b| (b.confidence, b.accuracy))
                    .collect();
                series.push(Series {
                    name: format!("{task} (ECE {:.3})", raw.ece_10),
                    colour: i,
                    layer: Layer::Line(points.clone()),
                });
                series.push(Series {
                    name: String::new(),
                    colour: i,
                    layer: Layer::Points(
                        points
                            .iter()
                            .map(|&(x, y)| Marker {
                                x,
                                y,
                                interval: None,
                                label: None,
                            })
                            .collect(),
                    ),
                });
            }
            Ok(Chart::Xy(XyChart {
                title: format!("Reliability of {model} (raw choice probabilities)"),
                x: Axis::linear("confidence (top choice's probability), bin mean"),
                y: Axis::linear("accuracy in the bin"),
                series,
                legend: LegendAt::UpperLeft,
            }))
        }
    };
    Figure {
        id: "reliability",
        title: "Reliability diagram".into(),
        caption: format!(
            "{}: for each task, items sorted by confidence into 10 equal-mass bins; each point \
             is a bin's mean confidence against its fraction correct. Points below the dashed \
             diagonal are over-confident. Recomputed from samples.jsonl. {}",
            model.unwrap_or_else(|| "—".into()),
            if left_out.is_empty() {
                String::new()
            } else {
                format!(
                    "The seven largest tasks are drawn; left out (see the table): {}.",
                    left_out.join(", ")
                )
            }
        ),
        chart,
    }
}
