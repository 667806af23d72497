//! Density of a quantization sweep's variants (issue #18 part 4): each weights file of a
//! `sweep-quant` table (`sweep.json`) placed on the 0-shot Pythia reference fitted on the
//! sweep's own tasks (the curated sweeps: arc_easy alone, first 400 items), with N̂, ρ and
//! their intervals (reference bootstrap × the accuracy's stderr), and what a user picks a
//! quantization by: N̂ per GB of weights file and N̂ × generated tokens/s (tg128), each with
//! whether the variant is on the frontier (no other variant is at least as small, or as fast,
//! with a larger N̂).

use std::path::Path;

use lmdensity_core::{SweepRow, SweepTable};
use lmdensity_laws::densing::DensityEstimate;
use lmdensity_laws::effective::{ReferenceFamily, PYTHIA_TOKENS};
use lmdensity_laws::fit::FitOptions;
use serde::Serialize;

use super::ReferenceSpec;
use crate::error::{Context, Result};
use crate::workspace::Workspace;
use crate::{bail, JobError};

/// One variant of the sweep on the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantDensity {
    /// `Q4_K_M`, `F32`, `Q4_1 (source)`.
    pub variant: String,
    /// Weights file size.
    pub file_bytes: u64,
    /// Tensor data bits per parameter.
    pub bits_per_weight: f64,
    /// tg128 mean tokens/s, when the sweep benched it.
    pub tg128_ts: Option<f64>,
    /// N̂ and ρ from the mean accuracy of the sweep's tasks (± its stderr).
    pub estimate: DensityEstimate,
    /// N̂ per 10⁹ bytes of weights file.
    pub effective_per_gb: f64,
    /// N̂ × tg128 tokens/s: effective parameters applied per second of generation.
    pub effective_times_ts: Option<f64>,
    /// No other variant has a file at most as large and a larger N̂ (or a smaller file and
    /// the same N̂).
    pub size_frontier: bool,
    /// No other variant generates at least as fast with a larger N̂ (or faster with the same).
    pub speed_frontier: bool,
}

/// A sweep's variants on the reference, and what the reference rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepDensity {
    /// Registry id of the swept model.
    pub model: String,
    /// The sweep file.
    pub sweep: String,
    /// Tasks the reference and the variants' score use.
    pub tasks: Vec<String>,
    /// Items per task in the sweep (its `task_limit`).
    pub task_limit: Option<usize>,
    /// Every variant, in the sweep's order.
    pub variants: Vec<VariantDensity>,
}

fn read_sweep(path: &Path) -> Result<SweepTable> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        JobError::Invalid(format!(
            "{}: not a sweep-quant table (sweep.json): {e}",
            path.display()
        ))
    })
}

/// The tasks every row of the sweep scored.
fn common_tasks(table: &SweepTable, path: &Path) -> Result<Vec<String>> {
    let Some(first) = table.rows.first() else {
        bail!("{}: the sweep has no rows", path.display());
    };
    let tasks: Vec<String> = first
        .tasks
        .keys()
        .filter(|t| table.rows.iter().all(|r| r.tasks.contains_key(*t)))
        .cloned()
        .collect();
    if tasks.is_empty() {
        bail!(
            "{}: no task was scored on every variant (sweep-quant --tasks); N̂ needs one",
            path.display()
        );
    }
    Ok(tasks)
}

/// Mean accuracy over `tasks` and √(Σ seᵢ²)/k when every task has a stderr.
fn row_score(row: &SweepRow, tasks: &[String]) -> (f64, Option<f64>) {
    let k = tasks.len() as f64;
    let values: Vec<_> = tasks.iter().filter_map(|t| row.tasks.get(t)).collect();
    let score = values.iter().map(|e| e.value).sum::<f64>() / k;
    let stderr = values
        .iter()
        .map(|e| e.stderr.map(|s| s * s))
        .sum::<Option<f64>>()
        .map(|v| v.sqrt() / k);
    (score, stderr)
}

/// Marks, for each variant, whether no other dominates it: at most its cost with a larger N̂,
/// or a lower cost with at least its N̂.
fn frontier(
    variants: &[VariantDensity],
    cost: impl Fn(&VariantDensity) -> Option<f64>,
) -> Vec<bool> {
    variants
        .iter()
        .map(|v| {
            let Some(c) = cost(v) else { return false };
            let n = v.estimate.effective_params;
            !variants.iter().any(|o| {
                let on = o.estimate.effective_params;
                cost(o).is_some_and(|oc| (oc <= c && on > n) || (oc < c && on >= n))
            })
        })
        .collect()
}

/// The sweep at `path` on the Pythia 0-shot reference fitted on its tasks.
pub fn sweep_density(
    path: &Path,
    spec: &ReferenceSpec,
    options: &FitOptions,
    ws: &Workspace,
) -> Result<(SweepDensity, ReferenceFamily)> {
    let table = read_sweep(path)?;
    let tasks = common_tasks(&table, path)?;
    let names: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let family = ReferenceFamily::pythia(
        &names,
        spec.d0.unwrap_or(PYTHIA_TOKENS),
        spec.min_tokens,
        options,
    )
    .with_context(|| format!("the Pythia reference on {}", tasks.join(", ")))?;
    let registry = ws.registry()?;
    let entry = registry
        .get(&table.model)
        .map_err(|e| JobError::Invalid(format!("{}: {e}", path.display())))?;
    let params = entry.params as f64;
    let mut variants = Vec::new();
    for row in &table.rows {
        let (score, stderr) = row_score(row, &tasks);
        let label = format!("{} {}", table.model, row.variant);
        let estimate = family
            .density(
                &label,
                score,
                stderr,
                params,
                options.seed,
                options.confidence,
            )
            .with_context(|| format!("{}: variant {}", path.display(), row.variant))?;
        let tg = row.tg128.map(|s| s.mean_ts);
        variants.push(VariantDensity {
            variant: row.variant.clone(),
            file_bytes: row.file_bytes,
            bits_per_weight: row.bits_per_weight,
            tg128_ts: tg,
            effective_per_gb: estimate.effective_params / (row.file_bytes as f64 / 1e9),
            effective_times_ts: tg.map(|t| estimate.effective_params * t),
            estimate,
            size_frontier: false,
            speed_frontier: false,
        });
    }
    let by_size = frontier(&variants, |v| Some(v.file_bytes as f64));
    let by_speed = frontier(&variants, |v| v.tg128_ts.map(|t| -t));
    for (v, (s, t)) in variants.iter_mut().zip(by_size.into_iter().zip(by_speed)) {
        v.size_frontier = s;
        v.speed_frontier = t;
    }
    Ok((
        SweepDensity {
            model: table.model.clone(),
            sweep: path.display().to_string(),
            tasks,
            task_limit: table.task_limit,
            variants,
        },
        family,
    ))
}

fn si(v: f64) -> String {
    lmdensity_core::stats::si_count(v)
}

impl SweepDensity {
    /// The variants as a Markdown table, with how each column was computed.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| variant | bits/weight | size (MB) | score ± stderr | N̂ | N̂ 95% CI | ρ = N̂/N | ρ CI | N̂ per GB | N̂ × tg128 t/s | frontier (size / speed) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for v in &self.variants {
            let e = &v.estimate;
            let ci = |c: Option<(f64, f64)>, f: &dyn Fn(f64) -> String| {
                c.map_or("—".into(), |(lo, hi)| format!("{} … {}", f(lo), f(hi)))
            };
            let mark = |b: bool| if b { "yes" } else { "—" };
            out.push_str(&format!(
                "| {} | {:.2} | {:.1} | {:.4}{} | {} | {} | {:.2} | {} | {} | {} | {} / {} |\n",
                v.variant,
                v.bits_per_weight,
                v.file_bytes as f64 / 1e6,
                e.score,
                e.score_stderr
                    .map_or(String::new(), |s| format!(" ± {s:.4}")),
                si(e.effective_params),
                ci(e.effective_params_ci, &si),
                e.density,
                ci(e.density_ci, &|x| format!("{x:.2}")),
                si(v.effective_per_gb),
                v.effective_times_ts.map_or("—".into(), si),
                mark(v.size_frontier),
                mark(v.speed_frontier),
            ));
        }
        out.push_str(&format!(
            "\n{}: score = mean 0-shot accuracy on {} ({} items per task{}); N̂ from the Pythia \
             reference fitted on the same task(s) at D0 = 300B tokens, N = the registry's parameter \
             count; 95% CIs: each reference bootstrap replicate inverted at a score drawn from \
             N(score, stderr²). N̂ per GB: N̂ ÷ (file bytes / 10⁹). N̂ × tg128: N̂ times the mean \
             generation speed (tokens/s, 2 threads). Frontier: no other variant is as small (as \
             fast) with a larger N̂ (best fits; the intervals overlap).\n",
            self.sweep,
            self.tasks.join(", "),
            self.task_limit.map_or("all".into(), |n| n.to_string()),
            if self.tasks.len() == 1 { "; one task: N̂ rests on it alone" } else { "" },
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str, bytes: u64, ts: f64, n_hat: f64) -> VariantDensity {
        VariantDensity {
            variant: name.into(),
            file_bytes: bytes,
            bits_per_weight: 0.0,
            tg128_ts: Some(ts),
            estimate: DensityEstimate {
                label: name.into(),
                score: 0.5,
                score_stderr: None,
                params: 1.0,
                effective_params: n_hat,
                effective_params_ci: None,
                density: n_hat,
                density_ci: None,
                confidence: 0.95,
                replicates_used: 0,
                extrapolated: false,
            },
            effective_per_gb: 0.0,
            effective_times_ts: None,
            size_frontier: false,
            speed_frontier: false,
        }
    }

    #[test]
    fn the_frontier_keeps_variants_nothing_smaller_beats() {
        let v = vec![
            variant("big", 100, 10.0, 5.0),
            variant("mid", 50, 20.0, 4.0),
            variant("bad", 60, 15.0, 3.0),
            variant("small", 20, 30.0, 1.0),
            variant("tied-but-bigger", 120, 5.0, 5.0),
        ];
        assert_eq!(
            frontier(&v, |x| Some(x.file_bytes as f64)),
            vec![true, true, false, true, false]
        );
        assert_eq!(
            frontier(&v, |x| x.tg128_ts.map(|t| -t)),
            vec![true, true, false, true, false]
        );
    }
}
