//! The leaderboard-protocol route of `density` and `trend`: the ObsScaling table (shipped, or
//! a directory of the same CSVs), a one-recipe family of it as the reference, every row placed
//! on it and reported in place, the trend's fits and its sensitivity table.

use std::collections::BTreeMap;

use lmdensity_core::progress;
use lmdensity_core::StoredRun;
use lmdensity_hub::registry::ModelEntry;
use lmdensity_laws::effective::{Excluded, ReferenceFamily, TableEstimate};
use lmdensity_laws::obsscaling::{parse_table, LeaderboardModel, TableTexts, Task};
use lmdensity_laws::placement::{place_rows, sensitivity, PlacedRow, Variant};
use lmdensity_laws::trend::{
    all_models_trend, density_trend, DatePrecision, DatedDensity, ReleaseDate,
};
use serde::Serialize;
use serde_json::json;

use super::measured::{leaderboard_settings, measured_score, MeasuredScore};
use super::{
    Analysis, DensityJob, DensityOutcome, ReferenceSpec, SavedAnalysis, TrendJob, TrendOutcome,
};
use crate::error::{Context, Result};
use crate::workspace::Workspace;
use crate::{bail, JobError};

/// The table and how to name it: the shipped copy, or `spec.table` as a directory of CSVs.
fn load_table(spec: &ReferenceSpec) -> Result<(Vec<LeaderboardModel>, String)> {
    let Some(dir) = &spec.table else {
        return Ok((
            lmdensity_laws::obsscaling::shipped_table()?,
            lmdensity_laws::obsscaling::SHIPPED.into(),
        ));
    };
    let read = |name: &str, default: Option<&str>| -> Result<(String, String)> {
        let path = dir.join(name);
        let label = path.display().to_string();
        match (std::fs::read_to_string(&path), default) {
            (Ok(text), _) => Ok((text, label)),
            (Err(_), Some(empty)) if !path.exists() => Ok((empty.to_string(), label)),
            (Err(e), _) => Err(JobError::Invalid(format!(
                "{label}: {e} (on the leaderboard protocol --table is a directory with \
                 base_llm_benchmark_eval.csv and release_dates.csv)"
            ))),
        }
    };
    let benchmarks = read("base_llm_benchmark_eval.csv", None)?;
    let dates = read("release_dates.csv", None)?;
    let corrections = read(
        "corrections.csv",
        Some("model,field,upstream,corrected,reason\n"),
    )?;
    let flags = read("row_flags.csv", Some("model,flag,reason\n"))?;
    let texts = TableTexts {
        benchmarks: (&benchmarks.0, &benchmarks.1),
        dates: (&dates.0, &dates.1),
        corrections: (&corrections.0, &corrections.1),
        flags: (&flags.0, &flags.1),
    };
    Ok((parse_table(texts)?, dir.display().to_string()))
}

fn settings_json(
    spec: &ReferenceSpec,
    job: &super::FitSettings,
    table: &str,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = job.json();
    out.insert("protocol".into(), json!("leaderboard"));
    out.insert("reference".into(), json!(spec.family.name()));
    out.insert("score".into(), json!(spec.score.name()));
    out.insert(
        "tasks".into(),
        json!(spec
            .score
            .tasks()
            .iter()
            .map(|t| t.column())
            .collect::<Vec<_>>()),
    );
    out.insert("max_extrapolation".into(), json!(spec.max_extrapolation));
    out.insert("table".into(), json!(table));
    out
}

fn family(
    spec: &ReferenceSpec,
    table: &[LeaderboardModel],
    options: &lmdensity_laws::fit::FitOptions,
) -> Result<ReferenceFamily> {
    let spinner = progress::spinner(&format!(
        "fitting the {} reference (leaderboard score vs N)",
        spec.family.name()
    ));
    let family = ReferenceFamily::leaderboard(spec.family, spec.score, table, options)?;
    spinner.finish_and_clear();
    Ok(family)
}

/// Rows as the density/trend tables show them: placed and dated ones as estimates, every
/// other row with why it is not a point of the trend (its score included).
fn split_rows(rows: &[PlacedRow]) -> (Vec<TableEstimate>, Vec<Excluded>) {
    let mut used = Vec::new();
    let mut excluded = Vec::new();
    for row in rows {
        match (row.estimate(), row.left_out_because()) {
            (Some(estimate), None) => used.push(TableEstimate {
                released: row.released,
                date_precision: row.date_precision.filter(|p| *p == DatePrecision::Month),
                estimate: estimate.clone(),
            }),
            (_, reason) => excluded.push(Excluded {
                name: row.model.clone(),
                reason: reason.unwrap_or_default(),
            }),
        }
    }
    (used, excluded)
}

/// The trend on the leaderboard protocol.
pub(super) fn trend(job: &TrendJob, ws: &Workspace) -> Result<Analysis<TrendOutcome>> {
    let options = job.settings.options()?;
    let spec = &job.reference;
    let (table, label) = load_table(spec)?;
    let family = family(spec, &table, &options)?;
    let (seed, confidence) = (job.settings.seed, job.settings.confidence);
    let rows = place_rows(
        &family,
        spec.score,
        &table,
        spec.max_extrapolation,
        seed,
        confidence,
    );
    let dated: Vec<DatedDensity> = rows.iter().filter_map(PlacedRow::dated).collect();
    let trend = density_trend(&dated, &options)
        .with_context(|| format!("the trend of {} dated models", dated.len()))?;
    let spinner = progress::spinner("sensitivity: refitting the trend for each variant");
    let variants = Variant::around(spec.family, spec.score);
    let sensitivity = sensitivity(&table, &variants, spec.max_extrapolation, &options);
    spinner.finish_and_clear();
    let (used, mut excluded) = split_rows(&rows);
    let (measured, unmeasured) = measured_in_store(ws, &family, spec.score, seed, confidence)?;
    excluded.extend(unmeasured);
    let with_measured = with_measured(&dated, &measured, &options);
    let models: Vec<serde_json::Value> = rows
        .iter()
        .filter(|r| r.dated().is_some())
        .map(|r| {
            json!({
                "released": r.released, "estimate": r.estimate(), "family": r.family,
                "date_precision": r.date_precision, "date_confidence": r.date_confidence,
                "flags": r.flags,
            })
        })
        .collect();
    let json = json!({
        "protocol": "leaderboard", "reference": family, "models": models, "rows": rows,
        "excluded": excluded, "trend": trend, "sensitivity": sensitivity,
        "measured": measured.iter().map(|m| json!({
            "released": m.estimate.released, "date_precision": m.estimate.date_precision,
            "estimate": m.estimate.estimate, "measured": m.score,
        })).collect::<Vec<_>>(),
        "with_measured": with_measured,
    });
    let name = format!("leaderboard-{}", spec.family.name());
    TrendOutcome {
        family,
        used,
        excluded,
        trend,
        rows,
        sensitivity,
        measured,
        with_measured,
    }
    .saved(ws, &name, settings_json(spec, &job.settings, &label), json)
}

/// The mean of `TASK=ACC` scores over the leaderboard score's tasks (lm-eval task names).
fn given_score(job: &DensityJob) -> Result<(f64, f64)> {
    let params = job
        .params
        .context("--score needs --params (the model's parameter count, e.g. 1.7e9)")?;
    let tasks = job.reference.score.tasks();
    let mut total = 0.0;
    for task in tasks {
        let pair = job
            .scores
            .iter()
            .find(|p| p.split_once('=').is_some_and(|(t, _)| t == task.name()))
            .with_context(|| {
                format!(
                    "the leaderboard score {} is the mean of {}; --score lacks {}",
                    job.reference.score.name(),
                    names(tasks),
                    task.name()
                )
            })?;
        let value: f64 = pair
            .split_once('=')
            .and_then(|(_, v)| v.parse().ok())
            .filter(|v: &f64| (0.0..=1.0).contains(v))
            .with_context(|| format!("--score {pair:?}: the score must be between 0 and 1"))?;
        total += value;
    }
    Ok((total / tasks.len() as f64, params))
}

fn names(tasks: &[Task]) -> String {
    tasks
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Densities on the leaderboard protocol: rows of the table by id (or the part after `/`),
/// a model given by `--score`, or with neither every row, each reported in place.
pub(super) fn density(job: &DensityJob, ws: &Workspace) -> Result<Analysis<DensityOutcome>> {
    let options = job.settings.options()?;
    let spec = &job.reference;
    let (table, label) = load_table(spec)?;
    let family = family(spec, &table, &options)?;
    let (seed, confidence) = (job.settings.seed, job.settings.confidence);
    let mut estimates = Vec::new();
    if !job.scores.is_empty() {
        let (score, params) = given_score(job)?;
        estimates.push((
            family.density(&job.name, score, None, params, seed, confidence)?,
            None,
        ));
    }
    let mut picked = Vec::new();
    let (mut store_runs, mut measured) = (None, Vec::new());
    for name in &job.models {
        let row = table.iter().find(|m| {
            m.name.eq_ignore_ascii_case(name)
                || m.name
                    .rsplit('/')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        match row {
            Some(row) => picked.push(row.clone()),
            None => {
                if store_runs.is_none() {
                    store_runs = Some(ws.store().runs()?);
                }
                let runs = store_runs.as_deref().unwrap_or_default();
                let registry = ws.registry().ok();
                let Some(entry) = registry.as_ref().and_then(|r| r.get(name).ok()) else {
                    bail!(
                        "{name}: neither a model of the leaderboard table ({label}) nor a \
                         registry model"
                    );
                };
                let one = measured_density(ws, runs, entry, &family, spec.score, seed, confidence)?;
                estimates.push((one.estimate.estimate, one.estimate.released));
                measured.push(one.score);
            }
        }
    }
    let all = job.models.is_empty() && job.scores.is_empty();
    let rows = place_rows(
        &family,
        spec.score,
        if all { &table } else { &picked },
        spec.max_extrapolation,
        seed,
        confidence,
    );
    let mut excluded = Vec::new();
    for row in &rows {
        match row.estimate() {
            Some(e) => estimates.push((e.clone(), row.released)),
            None => excluded.push(Excluded {
                name: row.model.clone(),
                reason: row.left_out_because().unwrap_or_default(),
            }),
        }
    }
    let json = json!({
        "protocol": "leaderboard", "reference": family, "rows": rows, "excluded": excluded,
        "estimates": estimates.iter().map(|(e, d)| json!({"released": d, "estimate": e})).collect::<Vec<_>>(),
        "measured": measured,
    });
    let name = format!("leaderboard-{}", spec.family.name());
    DensityOutcome {
        family,
        estimates,
        excluded,
        measured,
        sweep: None,
    }
    .saved(ws, &name, settings_json(spec, &job.settings, &label), json)
}

/// A registry model measured here on the leaderboard protocol: its estimate (dated from the
/// registry) and the score it was read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredEstimate {
    /// N̂ and ρ, labelled `<id> (measured here)`, with its release date.
    pub estimate: TableEstimate,
    /// The runs' score.
    pub score: MeasuredScore,
}

/// N̂ and ρ of registry model `entry` from its leaderboard-protocol task runs in `runs`. The
/// score's standard error enters the interval: each bootstrap replicate of the reference is
/// inverted at a score drawn from N(score, stderr²).
fn measured_density(
    ws: &Workspace,
    runs: &[StoredRun],
    entry: &ModelEntry,
    family: &ReferenceFamily,
    score: lmdensity_laws::obsscaling::LeaderboardScore,
    seed: u64,
    confidence: f64,
) -> Result<MeasuredEstimate> {
    let store = ws.results_dir.display().to_string();
    let settings = leaderboard_settings(score);
    let measured = measured_score(runs, &entry.id, &settings, &store, "leaderboard")?;
    let label = format!("{} (measured here)", entry.id);
    let estimate = family
        .density(
            &label,
            measured.score,
            measured.stderr,
            entry.params as f64,
            seed,
            confidence,
        )
        .with_context(|| format!("{}: placing its leaderboard score", entry.id))?;
    let date = ReleaseDate::parse(&entry.release_date).ok();
    Ok(MeasuredEstimate {
        estimate: TableEstimate {
            released: date.as_ref().map(|d| d.day),
            date_precision: date
                .map(|d| d.precision)
                .filter(|p| *p == DatePrecision::Month),
            estimate,
        },
        score: measured,
    })
}

/// Every registry model in the store with a task run on one of the score's tasks at the
/// leaderboard's shots, placed from its runs; a model whose runs do not make the score is
/// reported with why.
fn measured_in_store(
    ws: &Workspace,
    family: &ReferenceFamily,
    score: lmdensity_laws::obsscaling::LeaderboardScore,
    seed: u64,
    confidence: f64,
) -> Result<(Vec<MeasuredEstimate>, Vec<Excluded>)> {
    let runs = ws.store().runs()?;
    let settings = leaderboard_settings(score);
    let mut ids: Vec<String> = runs
        .iter()
        .filter(|r| r.manifest.kind == "task")
        .filter(|r| {
            let task = r.manifest.settings.get("task").and_then(|v| v.as_str());
            let shots = r
                .manifest
                .settings
                .get("num_fewshot")
                .and_then(|v| v.as_u64());
            settings
                .iter()
                .any(|s| Some(s.task) == task && Some(s.num_fewshot) == shots && s.num_fewshot > 0)
        })
        .map(|r| r.manifest.model.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    let registry = match ws.registry() {
        Ok(r) => r,
        Err(_) if ids.is_empty() => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let (mut placed, mut left_out) = (Vec::new(), Vec::new());
    for id in ids {
        let outcome = registry
            .get(&id)
            .map_err(|e| JobError::Invalid(format!("{id}: {e}")))
            .and_then(|entry| measured_density(ws, &runs, entry, family, score, seed, confidence));
        match outcome {
            Ok(one) => placed.push(one),
            Err(e) => left_out.push(Excluded {
                name: format!("{id} (measured here)"),
                reason: e.to_string(),
            }),
        }
    }
    Ok((placed, left_out))
}

/// The all-models least-squares doubling time with the measured models added to the
/// published rows (a sensitivity line; the trend itself is the published rows' alone).
fn with_measured(
    dated: &[DatedDensity],
    measured: &[MeasuredEstimate],
    options: &lmdensity_laws::fit::FitOptions,
) -> serde_json::Value {
    let extra: Vec<DatedDensity> = measured
        .iter()
        .filter_map(|m| {
            Some(DatedDensity {
                label: m.estimate.estimate.label.clone(),
                released: m.estimate.released?,
                density: m.estimate.estimate.density,
            })
        })
        .collect();
    if extra.is_empty() {
        return serde_json::Value::Null;
    }
    let all: Vec<DatedDensity> = dated.iter().cloned().chain(extra).collect();
    match all_models_trend(&all, options) {
        Ok((fit, robust)) => json!({
            "models": all.len(), "doubling_days": fit.doubling_days,
            "doubling_days_ci": fit.doubling_days_ci, "r2": fit.fit.r2,
            "robust_doubling_days": robust.doubling_days,
        }),
        Err(e) => json!({ "models": all.len(), "refused": e.to_string() }),
    }
}
