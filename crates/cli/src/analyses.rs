//! `fit`, `density` and `trend`: the laws applied to reference data, tables and the results
//! store. Every result is printed as a table (or JSON) and written to `analyses/` in the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lmdensity_core::progress;
use lmdensity_core::{AnalysisRecord, ResultsStore, SoftwareRecord, SCHEMA_VERSION};
use lmdensity_laws::chinchilla::ChinchillaLaw;
use lmdensity_laws::densing::{DensityEstimate, LossLaw, PerformanceLaw};
use lmdensity_laws::effective::{ReferenceFamily, TableDensities, PYTHIA_TOKENS};
use lmdensity_laws::fit::{fit, fit_with, FitOptions, FitReport, Law, Point};
use lmdensity_laws::gadre::{ErrorLaw, OverTrainingLaw};
use lmdensity_laws::reference::{
    find_gadre_run, load_gadre_runs, parse_open_models, OpenModel, COMMONSENSE_TASKS,
    OPEN_MODELS_CSV,
};
use lmdensity_laws::robust::HuberLse;
use lmdensity_laws::trend::{density_trend, DatedDensity, TrendFit};
use serde::Serialize;
use serde_json::json;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::cli::{
    Cli, DensityArgs, FitArgs, FitSettings, FitTarget, LawName, ReferenceArgs, TrendArgs,
};

fn options(settings: &FitSettings) -> Result<FitOptions> {
    if !(settings.confidence > 0.0 && settings.confidence < 1.0) {
        bail!(
            "--confidence {} must be between 0 and 1 (e.g. 0.95)",
            settings.confidence
        );
    }
    Ok(FitOptions {
        bootstrap: settings.bootstrap,
        seed: settings.seed,
        confidence: settings.confidence,
        ..FitOptions::default()
    })
}

fn software() -> SoftwareRecord {
    SoftwareRecord {
        lmdensity_version: env!("CARGO_PKG_VERSION").into(),
        git_revision: env!("LMDENSITY_GIT_REVISION").into(),
        target_features: env!("LMDENSITY_TARGET_FEATURES").into(),
        crate_versions: BTreeMap::new(),
    }
}

/// Writes the analysis to the results store and says where.
fn save(
    cli: &Cli,
    kind: &str,
    name: &str,
    settings: BTreeMap<String, serde_json::Value>,
    result: &impl Serialize,
) -> Result<()> {
    let now = chrono::Utc::now();
    let record = AnalysisRecord {
        schema_version: SCHEMA_VERSION,
        id: format!("{}-{kind}-{name}", now.format("%Y%m%dT%H%M%S")),
        kind: kind.into(),
        created_at: now.to_rfc3339(),
        software: software(),
        settings,
        result: serde_json::to_value(result)?,
    };
    let path = ResultsStore::new(&cli.results_dir).write_analysis(&record)?;
    if !cli.quiet {
        eprintln!("saved {}", path.display());
    }
    Ok(())
}

fn settings_json(settings: &FitSettings) -> BTreeMap<String, serde_json::Value> {
    [
        ("bootstrap".to_string(), json!(settings.bootstrap)),
        ("seed".to_string(), json!(settings.seed)),
        ("confidence".to_string(), json!(settings.confidence)),
    ]
    .into_iter()
    .collect()
}

/// A count with an SI suffix: 1.23B, 456M.
fn si(value: f64) -> String {
    let (scale, suffix) = match value.abs() {
        v if v >= 1e12 => (1e12, "T"),
        v if v >= 1e9 => (1e9, "B"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "K"),
        _ => (1.0, ""),
    };
    format!("{:.3}{suffix}", value / scale)
}

fn interval(ci: Option<(f64, f64)>, format: impl Fn(f64) -> String) -> String {
    ci.map_or("—".into(), |(lo, hi)| {
        format!("{} … {}", format(lo), format(hi))
    })
}

#[derive(Tabled)]
struct ParameterRow {
    parameter: String,
    value: String,
    #[tabled(rename = "CI")]
    ci: String,
}

/// Prints a fit: parameters with intervals, then goodness of fit.
fn print_fit(report: &FitReport) {
    println!("{}: {}  [{}]", report.law, report.formula, report.method);
    let rows: Vec<ParameterRow> = report
        .parameters
        .iter()
        .map(|p| ParameterRow {
            parameter: p.name.clone(),
            value: format!("{:.6}", p.value),
            ci: match (p.ci_low, p.ci_high) {
                (Some(lo), Some(hi)) => format!("{lo:.6} … {hi:.6}"),
                _ => "—".into(),
            },
        })
        .collect();
    println!("{}", Table::new(rows).with(Style::sharp()));
    let mut summary = format!(
        "{} points · R² {:.4} · RMSE {:.5} ({:?} residuals) · {}/{} starts converged",
        report.n_points,
        report.r2,
        report.rmse,
        report.residual_scale,
        report.starts_converged,
        report.starts_tried
    );
    if let Some(b) = &report.bootstrap {
        summary += &format!(
            " · {:.0}% CIs: percentile bootstrap, {}/{} resamples usable, seed {}",
            100.0 * b.confidence,
            b.usable,
            b.resamples,
            b.seed
        );
    }
    if let Some(loo) = &report.leave_one_out {
        summary += &format!(
            " · leave-one-out RMSE {:.5}, mean |relative error| {:.2}%",
            loo.rmse,
            100.0 * loo.mean_abs_relative_error
        );
    }
    println!("{summary}\n");
}

/// `lmdensity fit`.
pub fn fit_command(cli: &Cli, args: &FitArgs) -> Result<()> {
    let options = options(&args.settings)?;
    match &args.target {
        FitTarget::Gadre {
            data,
            dataset,
            eval_set,
        } => fit_gadre(cli, args, &options, data.as_deref(), dataset, eval_set),
        FitTarget::Runs { law, x, y } => fit_runs(cli, args, &options, *law, x, y),
        FitTarget::Csv {
            file,
            law,
            x,
            y,
            label,
        } => fit_csv(cli, args, &options, file, *law, x, y, label.as_deref()),
    }
}

/// The copy of Gadre et al.'s `exp_data` in the source tree.
fn shipped_gadre_data() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../laws/data/gadre-scaling/exp_data");
    path.canonicalize().unwrap_or(path)
}

#[derive(Tabled, Serialize)]
struct PredictionRow {
    model: String,
    quantity: String,
    predicted: String,
    measured: String,
    #[tabled(rename = "relative error")]
    relative_error: String,
}

fn fit_gadre(
    cli: &Cli,
    args: &FitArgs,
    options: &FitOptions,
    data: Option<&Path>,
    dataset: &str,
    eval_set: &str,
) -> Result<()> {
    let data = data.map_or_else(shipped_gadre_data, Path::to_path_buf);
    let runs = load_gadre_runs(&data)?;
    let pick = |model: &str, m: f64| find_gadre_run(&runs, dataset, model, m);
    let loss_of = |run: &lmdensity_laws::reference::GadreRun| {
        run.losses.get(eval_set).copied().with_context(|| {
            format!(
                "{}: run {} has no {eval_set} loss (it has: {})",
                data.display(),
                run.name,
                run.losses.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let error_of = |run: &lmdensity_laws::reference::GadreRun| {
        run.error_17().with_context(|| {
            format!(
                "{}: run {} lacks some of the 17 tasks",
                data.display(),
                run.name
            )
        })
    };
    let loss_set = [
        pick("d=96_l=8_h=4", 20.0)?,
        pick("d=512_l=8_h=4", 20.0)?,
        pick("d=576_l=24_h=8", 20.0)?,
        pick("d=1024_l=24_h=8", 20.0)?,
        pick("d=96_l=8_h=4", 320.0)?,
    ];
    let mut loss_points = Vec::new();
    for run in &loss_set {
        loss_points.push(Point::new(
            &run.name,
            vec![run.params, run.multiplier],
            loss_of(run)?,
        ));
    }
    let spinner = progress::spinner("fitting Gadre et al.'s laws");
    let loss_fit = fit(&OverTrainingLaw, &loss_points, options)?;
    let mut error_points = Vec::new();
    for run in loss_set.iter().copied().chain([pick("open_lm_1b", 20.0)?]) {
        error_points.push(Point::new(&run.name, vec![loss_of(run)?], error_of(run)?));
    }
    let error_fit = fit(&ErrorLaw, &error_points, options)?;
    // Chinchilla's L(N, D) on every run of the dataset except the held-out targets, by
    // Hoffmann et al.'s robust objective.
    let held_out = ["open_lm_1b", "open_lm_7b"];
    let mut chinchilla_points = Vec::new();
    for run in runs
        .iter()
        .filter(|r| r.dataset == dataset && !held_out.contains(&r.model.as_str()))
    {
        chinchilla_points.push(Point::new(
            &run.name,
            vec![run.params, run.tokens],
            loss_of(run)?,
        ));
    }
    let chinchilla_fit = fit_with(
        &ChinchillaLaw,
        &chinchilla_points,
        options,
        &HuberLse::default(),
    )?;
    spinner.finish_and_clear();

    let mut predictions = Vec::new();
    for (model, m) in [("open_lm_1b", 640.0), ("open_lm_7b", 20.0)] {
        let Ok(run) = pick(model, m) else { continue };
        let loss = OverTrainingLaw.predict(&[run.params, run.multiplier], &loss_fit.values());
        let error = ErrorLaw.predict(&[loss], &error_fit.values());
        let chinchilla_loss =
            ChinchillaLaw.predict(&[run.params, run.tokens], &chinchilla_fit.values());
        let label = format!("{} (N = {}, M = {m})", run.name, si(run.params));
        let relative = |p: f64, a: f64| format!("{:.2}%", 100.0 * ((p - a) / a).abs());
        if let Ok(actual) = loss_of(run) {
            predictions.push(PredictionRow {
                model: label.clone(),
                quantity: format!("{eval_set} loss"),
                predicted: format!("{loss:.4}"),
                measured: format!("{actual:.4}"),
                relative_error: relative(loss, actual),
            });
            predictions.push(PredictionRow {
                model: label.clone(),
                quantity: format!("{eval_set} loss, Chinchilla fit"),
                predicted: format!("{chinchilla_loss:.4}"),
                measured: format!("{actual:.4}"),
                relative_error: relative(chinchilla_loss, actual),
            });
        }
        if let Ok(actual) = error_of(run) {
            predictions.push(PredictionRow {
                model: label,
                quantity: "17-task top-1 error (from predicted loss)".into(),
                predicted: format!("{error:.4}"),
                measured: format!("{actual:.4}"),
                relative_error: relative(error, actual),
            });
        }
    }
    let result = json!({
        "loss_law": loss_fit,
        "loss_law_paper_form": OverTrainingLaw::paper_form(&loss_fit.values()),
        "error_law": error_fit,
        "chinchilla": chinchilla_fit,
        "predictions": predictions,
    });
    if args.settings.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("Gadre et al. 2024 on {dataset} ({}), loss = {eval_set}, error = mean top-1 error of the 17-task subset\n", data.display());
        print_fit(&loss_fit);
        let form = OverTrainingLaw::paper_form(&loss_fit.values());
        println!(
            "paper form L(C, M) = E + (a·M^η + b·M^(−η))·C^(−η): a = {:.4}, b = {:.4}, η = {:.5}, E = {:.4}\n",
            form.a, form.b, form.eta, form.e
        );
        print_fit(&error_fit);
        println!(
            "Chinchilla on every {dataset} run but the 1.4B and 6.9B models (Huber loss on log-loss, δ = 1e-3, L-BFGS from Hoffmann et al.'s grid):"
        );
        print_fit(&chinchilla_fit);
        println!("held-out predictions (models in none of the fit sets):");
        println!("{}", Table::new(&predictions).with(Style::sharp()));
    }
    let mut settings = settings_json(&args.settings);
    settings.insert("data".into(), json!(data.display().to_string()));
    settings.insert("dataset".into(), json!(dataset));
    settings.insert("eval_set".into(), json!(eval_set));
    save(cli, "fit", "gadre", settings, &result)
}

#[allow(clippy::too_many_arguments)]
fn fit_csv(
    cli: &Cli,
    args: &FitArgs,
    options: &FitOptions,
    file: &Path,
    law_name: LawName,
    x: &[String],
    y: &str,
    label: Option<&str>,
) -> Result<()> {
    check_inputs(law_name, x)?;
    let points = read_points(file, x, y, label)?;
    let report = fit_law(law_name, &points, options)?;
    if args.settings.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_fit(&report);
    }
    let mut settings = settings_json(&args.settings);
    settings.insert("file".into(), json!(file.display().to_string()));
    settings.insert("x".into(), json!(x));
    settings.insert("y".into(), json!(y));
    save(cli, "fit", law(law_name).name(), settings, &report)
}

/// The law object of a `--law` value.
fn law(name: LawName) -> &'static dyn Law {
    match name {
        LawName::GadreError => &ErrorLaw,
        LawName::GadreOvertraining => &OverTrainingLaw,
        LawName::Chinchilla | LawName::ChinchillaHuber | LawName::ChinchillaVarpro => {
            &ChinchillaLaw
        }
        LawName::DensingLoss => &LossLaw,
        LawName::DensingPerformance => &PerformanceLaw,
    }
}

fn check_inputs(law_name: LawName, x: &[String]) -> Result<()> {
    let law = law(law_name);
    if x.len() != law.inputs().len() {
        bail!(
            "{} takes {} input(s) ({}), got {} (--x {})",
            law.name(),
            law.inputs().len(),
            law.inputs().join(", "),
            x.len(),
            x.join(" --x ")
        );
    }
    Ok(())
}

/// Fits the law a `--law` value names, with the solver it names.
fn fit_law(law_name: LawName, points: &[Point], options: &FitOptions) -> Result<FitReport> {
    let law = law(law_name);
    Ok(match law_name {
        LawName::ChinchillaHuber => fit_with(law, points, options, &HuberLse::default())?,
        LawName::ChinchillaVarpro => {
            lmdensity_laws::chinchilla::fit_variable_projection(points, options)?
        }
        _ => fit(law, points, options)?,
    })
}

/// Per model id: every headline value of its newest complete runs, plus `params`, and from the
/// registry `tokens` and `release_days`.
pub(crate) fn model_values(cli: &Cli) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let mut runs = ResultsStore::new(&cli.results_dir).runs()?;
    runs.sort_by(|a, b| a.manifest.started_at.cmp(&b.manifest.started_at));
    let registry = crate::commands::load_registry(cli).ok();
    let mut values: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for run in &runs {
        let Some(metrics) = &run.metrics else {
            continue;
        };
        if metrics.status != lmdensity_core::RunStatus::Complete {
            continue;
        }
        let id = &run.manifest.model.id;
        let entry = values.entry(id.clone()).or_default();
        entry.insert("params".into(), run.manifest.model.n_params as f64);
        for metric in &metrics.metrics {
            entry.insert(metric.name.clone(), metric.value);
            if let Some(stderr) = metric.stderr {
                entry.insert(format!("{}_stderr", metric.name), stderr);
            }
        }
        if let Some(model) = registry.as_ref().and_then(|r| r.get(id).ok()) {
            if let Some(tokens) = model.training_tokens {
                entry.insert("tokens".into(), tokens);
            }
            let date = format!("{}-01", model.release_date);
            if let Ok(day) = chrono::NaiveDate::parse_from_str(&date[..10], "%Y-%m-%d") {
                let days = (day - lmdensity_laws::trend::epoch()).num_days();
                entry.insert("release_days".into(), days as f64);
            }
        }
    }
    Ok(values)
}

fn fit_runs(
    cli: &Cli,
    args: &FitArgs,
    options: &FitOptions,
    law_name: LawName,
    x: &[String],
    y: &str,
) -> Result<()> {
    check_inputs(law_name, x)?;
    let values = model_values(cli)?;
    if values.is_empty() {
        bail!("no complete runs in {}", cli.results_dir.display());
    }
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    for (model, fields) in &values {
        let get = |name: &str| fields.get(name).copied();
        match (
            x.iter().map(|f| get(f)).collect::<Option<Vec<f64>>>(),
            get(y),
        ) {
            (Some(xs), Some(value)) => points.push(Point::new(model, xs, value)),
            _ => skipped.push(model.clone()),
        }
    }
    if !skipped.is_empty() && !cli.quiet {
        eprintln!(
            "models without all of {}, {y}: {}",
            x.join(", "),
            skipped.join(", ")
        );
    }
    let report = fit_law(law_name, &points, options).with_context(|| {
        format!(
            "fitting {} to the runs in {}",
            law(law_name).name(),
            cli.results_dir.display()
        )
    })?;
    if args.settings.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_fit(&report);
    }
    let mut settings = settings_json(&args.settings);
    settings.insert(
        "results_dir".into(),
        json!(cli.results_dir.display().to_string()),
    );
    settings.insert("x".into(), json!(x));
    settings.insert("y".into(), json!(y));
    save(cli, "fit", law(law_name).name(), settings, &report)
}

/// Points from CSV columns; every error names the file, row and column.
fn read_points(file: &Path, x: &[String], y: &str, label: Option<&str>) -> Result<Vec<Point>> {
    let mut reader =
        csv::Reader::from_path(file).with_context(|| format!("reading {}", file.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: no header row", file.display()))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column {name:?} (columns: {})",
                file.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let x_cols: Vec<usize> = x.iter().map(|c| column(c)).collect::<Result<_>>()?;
    let y_col = column(y)?;
    let label_col = label.map(column).transpose()?;
    let mut points = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        let record = record.with_context(|| format!("{}: row {row}", file.display()))?;
        let number = |c: usize| -> Result<f64> {
            let cell = record.get(c).unwrap_or("").trim();
            cell.parse::<f64>().with_context(|| {
                format!(
                    "{}: row {row}, column {:?}: {cell:?} is not a number",
                    file.display(),
                    &headers[c]
                )
            })
        };
        let xs = x_cols
            .iter()
            .map(|&c| number(c))
            .collect::<Result<Vec<_>>>()?;
        let name = label_col
            .and_then(|c| record.get(c))
            .map_or(format!("row {row}"), str::to_string);
        points.push(Point::new(name, xs, number(y_col)?));
    }
    Ok(points)
}

fn load_table(table: Option<&Path>) -> Result<Vec<OpenModel>> {
    Ok(match table {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse_open_models(&text, &path.display().to_string())?
        }
        None => parse_open_models(OPEN_MODELS_CSV, "open_models.csv (shipped)")?,
    })
}

fn reference_family(args: &ReferenceArgs, options: &FitOptions) -> Result<ReferenceFamily> {
    let spinner = progress::spinner("fitting the Pythia reference family (score vs N, D)");
    let family = ReferenceFamily::pythia(
        &COMMONSENSE_TASKS,
        args.d0.unwrap_or(PYTHIA_TOKENS),
        args.min_tokens,
        options,
    )?;
    spinner.finish_and_clear();
    Ok(family)
}

fn reference_settings(
    args: &ReferenceArgs,
    settings: &FitSettings,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = settings_json(settings);
    out.insert("reference".into(), json!("pythia (standard Pile)"));
    out.insert("tasks".into(), json!(COMMONSENSE_TASKS));
    out.insert("d0".into(), json!(args.d0.unwrap_or(PYTHIA_TOKENS)));
    out.insert("min_tokens".into(), json!(args.min_tokens));
    out.insert("max_extrapolation".into(), json!(args.max_extrapolation));
    out.insert(
        "table".into(),
        json!(args
            .table
            .as_deref()
            .map_or("open_models.csv (shipped)".into(), |p| p
                .display()
                .to_string())),
    );
    out
}

fn print_reference(family: &ReferenceFamily) {
    println!(
        "Reference: Pythia (standard Pile), {} checkpoints, score = mean zero-shot accuracy on {}; N̂ read at D0 = {} tokens",
        family.fit.n_points,
        family.tasks.join(", "),
        si(family.d0)
    );
    print_fit(&family.fit);
}

#[derive(Tabled)]
struct DensityRow {
    model: String,
    released: String,
    score: String,
    #[tabled(rename = "N")]
    params: String,
    #[tabled(rename = "N̂")]
    effective: String,
    #[tabled(rename = "N̂ CI")]
    effective_ci: String,
    #[tabled(rename = "ρ = N̂/N")]
    density: String,
    #[tabled(rename = "ρ CI")]
    density_ci: String,
    note: String,
}

fn density_row(estimate: &DensityEstimate, released: Option<chrono::NaiveDate>) -> DensityRow {
    DensityRow {
        model: estimate.label.clone(),
        released: released.map_or("—".into(), |d| d.to_string()),
        score: format!("{:.4}", estimate.score),
        params: si(estimate.params),
        effective: si(estimate.effective_params),
        effective_ci: interval(estimate.effective_params_ci, si),
        density: format!("{:.3}", estimate.density),
        density_ci: interval(estimate.density_ci, |v| format!("{v:.3}")),
        note: if estimate.extrapolated {
            "outside the reference's size range".into()
        } else {
            String::new()
        },
    }
}

/// `lmdensity density`.
pub fn density_command(cli: &Cli, args: &DensityArgs) -> Result<()> {
    let options = options(&args.settings)?;
    let confidence = args.settings.confidence;
    let table = load_table(args.reference.table.as_deref())?;
    let registry = crate::commands::load_registry(cli).ok();
    let family = reference_family(&args.reference, &options)?;
    let mut estimates: Vec<(DensityEstimate, Option<chrono::NaiveDate>)> = Vec::new();
    let mut excluded = Vec::new();
    if !args.score.is_empty() {
        let params = args
            .params
            .context("--score needs --params (the model's parameter count, e.g. 1.7e9)")?;
        let mut scores = BTreeMap::new();
        for pair in &args.score {
            let (task, value) = pair
                .split_once('=')
                .with_context(|| format!("--score {pair:?}: expected TASK=ACCURACY"))?;
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| (0.0..=1.0).contains(v))
                .with_context(|| format!("--score {pair:?}: accuracy must be between 0 and 1"))?;
            scores.insert(task.to_string(), value);
        }
        let missing: Vec<&str> = COMMONSENSE_TASKS
            .iter()
            .copied()
            .filter(|t| !scores.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the reference score is the mean of {}; --score lacks {}",
                COMMONSENSE_TASKS.join(", "),
                missing.join(", ")
            );
        }
        let score = COMMONSENSE_TASKS.iter().map(|t| scores[*t]).sum::<f64>()
            / COMMONSENSE_TASKS.len() as f64;
        estimates.push((
            family.density(
                &args.name,
                score,
                None,
                params,
                args.settings.seed,
                confidence,
            )?,
            None,
        ));
    }
    for name in &args.models {
        if let Some(row) = table.iter().find(|m| m.name.eq_ignore_ascii_case(name)) {
            if !row.commonsense_zero_shot() {
                eprintln!(
                    "warning: {}: the table's protocol is not 0-shot accuracy on these tasks ({}); its N̂ is not comparable",
                    row.name, row.eval_protocol
                );
            }
            estimates.push((
                family.density_of(row, args.settings.seed, confidence)?,
                row.released,
            ));
        } else if registry.as_ref().is_some_and(|r| r.get(name).is_ok()) {
            let values = model_values(cli)?;
            let fields = values.get(name.as_str());
            let accuracy = |task: &str| fields.and_then(|f| f.get(&format!("{task}/acc")).copied());
            let missing: Vec<String> = COMMONSENSE_TASKS
                .iter()
                .filter(|t| accuracy(t).is_none())
                .map(|t| format!("{t}/acc"))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "{name}: no downstream-task results for {} in {} — N̂ needs its zero-shot accuracy on {} \
                     (measure them with `lmdensity eval --model {name} --tasks commonsense`, or pass --score TASK=ACC --params N)",
                    missing.join(", "),
                    cli.results_dir.display(),
                    COMMONSENSE_TASKS.join(", ")
                );
            }
            let k = COMMONSENSE_TASKS.len() as f64;
            let score = COMMONSENSE_TASKS
                .iter()
                .filter_map(|t| accuracy(t))
                .sum::<f64>()
                / k;
            // The mean of independent task accuracies: its stderr combines theirs.
            let stderr = COMMONSENSE_TASKS
                .iter()
                .map(|t| {
                    fields
                        .and_then(|f| f.get(&format!("{t}/acc_stderr")).copied())
                        .map(|se| se * se)
                })
                .sum::<Option<f64>>()
                .map(|v| v.sqrt() / k);
            let params = fields
                .and_then(|f| f.get("params").copied())
                .context("no parameter count in its runs")?;
            estimates.push((
                family.density(name, score, stderr, params, args.settings.seed, confidence)?,
                None,
            ));
        } else {
            bail!("{name}: neither a registry model nor a row of the open-models table");
        }
    }
    if args.models.is_empty() && args.score.is_empty() {
        let TableDensities {
            estimates: rows,
            excluded: left_out,
        } = family.table_densities(
            &table,
            args.reference.max_extrapolation,
            args.settings.seed,
            confidence,
        );
        estimates.extend(rows.into_iter().map(|r| (r.estimate, r.released)));
        excluded = left_out;
    }
    let result = json!({
        "reference": family,
        "estimates": estimates.iter().map(|(e, d)| json!({"released": d, "estimate": e})).collect::<Vec<_>>(),
        "excluded": excluded,
    });
    if args.settings.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_reference(&family);
        let rows: Vec<DensityRow> = estimates.iter().map(|(e, d)| density_row(e, *d)).collect();
        println!("{}", Table::new(rows).with(Style::sharp()));
        println!(
            "N̂: parameters a Pythia would need (at D0) to reach the score; ρ = N̂/N. {:.0}% CIs from the reference fit's bootstrap replicates, each with a score drawn from the measurement's standard error where it is known.",
            100.0 * confidence
        );
        print_excluded(&excluded);
    }
    save(
        cli,
        "density",
        "pythia",
        reference_settings(&args.reference, &args.settings),
        &result,
    )
}

fn print_excluded(excluded: &[lmdensity_laws::effective::Excluded]) {
    if excluded.is_empty() {
        return;
    }
    println!("\nleft out ({}):", excluded.len());
    for e in excluded {
        println!("  {}: {}", e.name, e.reason);
    }
}

#[derive(Tabled)]
struct TrendRow {
    fit: String,
    models: usize,
    #[tabled(rename = "A (ln ρ per year)")]
    slope: String,
    #[tabled(rename = "doubling time (days)")]
    doubling: String,
    #[tabled(rename = "CI (days)")]
    doubling_ci: String,
    #[tabled(rename = "R²")]
    r2: String,
}

fn trend_row(name: &str, fit: &TrendFit) -> TrendRow {
    let a = &fit.fit.parameters[0];
    TrendRow {
        fit: name.into(),
        models: fit.fit.n_points,
        slope: format!(
            "{:.3} ({})",
            365.25 * a.value,
            match (a.ci_low, a.ci_high) {
                (Some(lo), Some(hi)) => format!("{:.3} … {:.3}", 365.25 * lo, 365.25 * hi),
                _ => "—".into(),
            }
        ),
        doubling: format!("{:.0}", fit.doubling_days),
        doubling_ci: interval(fit.doubling_days_ci, |v| format!("{v:.0}")),
        r2: format!("{:.3}", fit.fit.r2),
    }
}

/// `lmdensity trend`.
pub fn trend_command(cli: &Cli, args: &TrendArgs) -> Result<()> {
    let options = options(&args.settings)?;
    let table = load_table(args.reference.table.as_deref())?;
    let family = reference_family(&args.reference, &options)?;
    let TableDensities {
        estimates,
        mut excluded,
    } = family.table_densities(
        &table,
        args.reference.max_extrapolation,
        args.settings.seed,
        args.settings.confidence,
    );
    let mut dated = Vec::new();
    let mut used = Vec::new();
    for row in &estimates {
        match row.released {
            Some(released) => {
                dated.push(DatedDensity {
                    label: row.estimate.label.clone(),
                    released,
                    density: row.estimate.density,
                });
                used.push(row);
            }
            None => excluded.push(lmdensity_laws::effective::Excluded {
                name: row.estimate.label.clone(),
                reason: "no release date in the table".into(),
            }),
        }
    }
    let trend = density_trend(&dated, &options)?;
    let result =
        json!({ "reference": family, "models": used, "excluded": excluded, "trend": trend });
    if args.settings.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_reference(&family);
        let rows: Vec<DensityRow> = used
            .iter()
            .map(|r| density_row(&r.estimate, r.released))
            .collect();
        println!("{}", Table::new(rows).with(Style::sharp()));
        let fits = vec![
            trend_row("envelope (densest model per release date)", &trend.envelope),
            trend_row("all models (OLS)", &trend.all_models),
        ];
        println!("{}", Table::new(fits).with(Style::sharp()));
        println!(
            "ln ρ = A·t + B, t = days since 2023-01-01; doubling time = ln 2 / A. {:.0}% CIs: bootstrap over the fitted points. The Densing Law paper reports ≈ 95 days (MMLU-era benchmarks, its own reference models).",
            100.0 * args.settings.confidence
        );
        print_excluded(&excluded);
    }
    save(
        cli,
        "trend",
        "pythia",
        reference_settings(&args.reference, &args.settings),
        &result,
    )
}
