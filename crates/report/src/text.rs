//! The results as terminal tables (what the command line prints): runs and their metrics, a
//! fit with its intervals, density estimates and the trend, two runs compared.

use std::fmt::Write;
use std::path::Path;

use lmdensity_core::stats::si_count as si;
use lmdensity_core::{RunMetrics, StoredRun};
use lmdensity_laws::densing::DensityEstimate;
use lmdensity_laws::effective::{Excluded, ReferenceFamily, ReferenceForm};
use lmdensity_laws::fit::FitReport;
use lmdensity_laws::gadre::OverTrainingLaw;
use lmdensity_laws::placement::SensitivityRow;
use lmdensity_laws::reproduction::GadreReproduction;
use lmdensity_laws::trend::{DatePrecision, RobustTrend, TrendFit, TrendReport};
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::compare::{Comparison, Verdict};
use crate::paired::{Paired, Pairing};

/// Which metrics a runs table shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricFilter {
    /// bits per byte, the perplexities, KLD, task accuracies and conditional loss.
    Headline,
    /// Everything.
    All,
    /// These names.
    Only(Vec<String>),
}

const HEADLINE: &[&str] = &[
    "kld_mean",
    "kld_p99",
    "delta_p_rms",
    "same_top_rate",
    "ln_ppl_ratio",
    "bits_per_byte",
    "byte_perplexity",
    "word_perplexity",
    "token_perplexity",
    "perplexity",
];

impl MetricFilter {
    /// Whether the table shows metric `name`.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            MetricFilter::Headline => {
                HEADLINE.contains(&name)
                    || ["/acc", "/acc_norm", "/perplexity", "/gold_bits_per_byte"]
                        .iter()
                        .any(|suffix| name.ends_with(suffix))
                    || name.contains("/exact_match,")
                    || name.ends_with("/stopped_by_budget")
            }
            MetricFilter::All => true,
            MetricFilter::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Tabled)]
struct RunRow {
    model: String,
    backend: String,
    quant: String,
    corpus: String,
    mode: String,
    metric: String,
    value: String,
    status: String,
}

fn value_pm(value: f64, stderr: Option<f64>) -> String {
    match stderr {
        Some(se) => format!("{value:.4} ± {se:.4}"),
        None => format!("{value:.4}"),
    }
}

/// The mode column: `harness/2048`, `llama.cpp/512`, or the run's own mode text.
fn mode_of(run: &StoredRun) -> String {
    let m = &run.manifest;
    match (
        crate::collect::setting(run, "mode").as_str(),
        m.settings.get("max_length"),
        m.settings.get("n_ctx"),
    ) {
        ("harness", Some(l), _) => format!("harness/{l}"),
        ("llama.cpp", _, Some(n)) => format!("llama.cpp/{n}"),
        (other, _, _) => other.to_string(),
    }
}

/// One markdown table of every shown metric of every run.
pub fn runs_table(runs: &[StoredRun], filter: &MetricFilter) -> String {
    let mut out = Vec::new();
    for run in runs {
        let m = &run.manifest;
        let corpus = crate::collect::setting(run, "corpus");
        let corpus = Path::new(&corpus)
            .file_name()
            .map_or(corpus.clone(), |n| n.to_string_lossy().into_owned());
        let mode = mode_of(run);
        let row = |metric: String, value: String, status: String| RunRow {
            model: m.model.id.clone(),
            backend: format!("{} ({}t)", m.backend.name, m.backend.threads),
            quant: m.model.quantization.clone(),
            corpus: corpus.clone(),
            mode: mode.clone(),
            metric,
            value,
            status,
        };
        match &run.metrics {
            None => out.push(row(
                "—".into(),
                "no metrics yet (running, or interrupted: --resume)".into(),
                "partial".into(),
            )),
            Some(RunMetrics {
                metrics, status, ..
            }) => {
                let status = format!("{status:?}").to_lowercase();
                for metric in metrics.iter().filter(|x| filter.keeps(&x.name)) {
                    out.push(row(
                        metric.name.clone(),
                        value_pm(metric.value, metric.stderr),
                        status.clone(),
                    ));
                }
            }
        }
    }
    Table::new(out).with(Style::markdown()).to_string()
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

/// A fit: the law, parameters with intervals, then goodness of fit.
pub fn fit_text(report: &FitReport) -> String {
    let mut out = format!("{}: {}  [{}]\n", report.law, report.formula, report.method);
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
    let _ = writeln!(out, "{}", Table::new(rows).with(Style::sharp()));
    let _ = write!(
        out,
        "{} points · R² {:.4} · RMSE {:.5} ({:?} residuals) · {}/{} starts converged",
        report.n_points,
        report.r2,
        report.rmse,
        report.residual_scale,
        report.starts_converged,
        report.starts_tried
    );
    if let Some(b) = &report.bootstrap {
        let _ = write!(
            out,
            " · {:.0}% CIs: percentile bootstrap, {}/{} resamples usable, seed {}",
            100.0 * b.confidence,
            b.usable,
            b.resamples,
            b.seed
        );
    }
    if let Some(loo) = &report.leave_one_out {
        let _ = write!(
            out,
            " · leave-one-out RMSE {:.5}, mean |relative error| {:.2}%",
            loo.rmse,
            100.0 * loo.mean_abs_relative_error
        );
    }
    out.push_str("\n\n");
    out
}

#[derive(Tabled)]
struct PredictionRow {
    model: String,
    quantity: String,
    predicted: String,
    measured: String,
    #[tabled(rename = "relative error")]
    relative_error: String,
}

/// Gadre et al.'s reproduction: the three fits and the held-out predictions.
pub fn gadre_text(fits: &GadreReproduction, data: &str) -> String {
    let (dataset, eval_set) = (&fits.dataset, &fits.eval_set);
    let mut out = format!("Gadre et al. 2024 on {dataset} ({data}), loss = {eval_set}, error = mean top-1 error of the 17-task subset\n\n");
    out += &fit_text(&fits.loss_law);
    let form = OverTrainingLaw::paper_form(&fits.loss_law.values());
    let _ = writeln!(
        out,
        "paper form L(C, M) = E + (a·M^η + b·M^(−η))·C^(−η): a = {:.4}, b = {:.4}, η = {:.5}, E = {:.4}\n",
        form.a, form.b, form.eta, form.e
    );
    out += &fit_text(&fits.error_law);
    let _ = writeln!(out, "Chinchilla on every {dataset} run but the 1.4B and 6.9B models (Huber loss on log-loss, δ = 1e-3, L-BFGS from Hoffmann et al.'s grid):");
    out += &fit_text(&fits.chinchilla);
    out += "held-out predictions (models in none of the fit sets):\n";
    let rows: Vec<PredictionRow> = fits
        .predictions
        .iter()
        .map(|p| PredictionRow {
            model: format!("{} (N = {}, M = {})", p.model, si(p.params), p.multiplier),
            quantity: p.quantity.clone(),
            predicted: format!("{:.4}", p.predicted),
            measured: format!("{:.4}", p.measured),
            relative_error: format!("{:.2}%", 100.0 * p.relative_error),
        })
        .collect();
    let _ = writeln!(out, "{}", Table::new(rows).with(Style::sharp()));
    out
}

fn reference_text(family: &ReferenceFamily) -> String {
    if let ReferenceForm::LogisticLogSize { floor } = family.form {
        return format!(
            "Reference: {} ({} final models, one recipe), {}; score = mean of {} (chance {floor:.4}); N̂ = size a {} model would need for the score (median budget {} tokens)\n{}",
            family.name,
            family.fit.n_points,
            family.protocol,
            family.tasks.join(", "),
            family.name,
            si(family.d0),
            fit_text(&family.fit)
        );
    }
    format!(
        "Reference: Pythia (standard Pile), {} checkpoints, score = mean zero-shot accuracy on {}; N̂ read at D0 = {} tokens\n{}",
        family.fit.n_points,
        family.tasks.join(", "),
        si(family.d0),
        fit_text(&family.fit)
    )
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
        score: match estimate.score_stderr {
            Some(se) => format!("{:.4} ± {se:.4}", estimate.score),
            None => format!("{:.4}", estimate.score),
        },
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

/// Table rows of dated estimates; a month-only date reads `YYYY-MM (month)`.
fn dated_rows(rows: &[lmdensity_laws::effective::TableEstimate]) -> Vec<DensityRow> {
    rows.iter()
        .map(|r| {
            let mut row = density_row(&r.estimate, r.released);
            if r.date_precision == Some(DatePrecision::Month) {
                row.released = r
                    .released
                    .map_or("—".into(), |d| format!("{} (month)", d.format("%Y-%m")));
            }
            row
        })
        .collect()
}

fn excluded_text(excluded: &[Excluded]) -> String {
    let mut out = String::new();
    if !excluded.is_empty() {
        let _ = writeln!(out, "\nleft out ({}):", excluded.len());
        for e in excluded {
            let _ = writeln!(out, "  {}: {}", e.name, e.reason);
        }
    }
    out
}

/// Models measured here on the trend's protocol: their estimates (placed on the reference,
/// not part of the fits), each model's runs as `notes` (model, items per task), and
/// `with_measured`, a line on the all-models fit with them added.
pub fn measured_text(
    rows: &[lmdensity_laws::effective::TableEstimate],
    notes: &[(String, String)],
    with_measured: &str,
    confidence: f64,
) -> String {
    let table = dated_rows(rows);
    let mut out = format!(
        "Measured here (lmdensity eval on the same protocol; placed on the reference, not in the fits above): score ± its stderr (√(Σ seᵢ²)/k over the tasks' runs); {:.0}% CIs: each bootstrap replicate of the reference inverted at a score drawn from N(score, stderr²).\n{}\n",
        100.0 * confidence,
        Table::new(table).with(Style::sharp())
    );
    for (model, note) in notes {
        let _ = writeln!(out, "  {model}: {note}");
    }
    if !with_measured.is_empty() {
        let _ = writeln!(out, "{with_measured}");
    }
    out
}

/// Density estimates against the reference, and what was left out.
pub fn density_text(
    family: &ReferenceFamily,
    estimates: &[(DensityEstimate, Option<chrono::NaiveDate>)],
    excluded: &[Excluded],
    confidence: f64,
) -> String {
    let rows: Vec<DensityRow> = estimates.iter().map(|(e, d)| density_row(e, *d)).collect();
    format!(
        "{}{}\nN̂: parameters a Pythia would need (at D0) to reach the score; ρ = N̂/N. {:.0}% CIs from the reference fit's bootstrap replicates, each with a score drawn from the measurement's standard error where it is known.\n{}",
        reference_text(family),
        Table::new(rows).with(Style::sharp()),
        100.0 * confidence,
        excluded_text(excluded)
    )
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

fn robust_row(fit: &RobustTrend) -> TrendRow {
    let year = |v: f64| format!("{:.3}", 365.25 * v);
    TrendRow {
        fit: "all models, robust (Theil–Sen)".into(),
        models: fit.n_points,
        slope: format!(
            "{} ({})",
            year(fit.slope_per_day),
            interval(fit.slope_ci, year)
        ),
        doubling: format!("{:.0}", fit.doubling_days),
        doubling_ci: interval(fit.doubling_days_ci, |v| format!("{v:.0}")),
        r2: "—".into(),
    }
}

/// Every fit of the trend as table rows: envelope, all models, robust, and the split.
fn trend_rows(trend: &TrendReport) -> Vec<TrendRow> {
    let mut fits = vec![
        trend_row("envelope (densest model per release date)", &trend.envelope),
        trend_row("all models (OLS)", &trend.all_models),
    ];
    fits.extend(trend.robust.as_ref().map(robust_row));
    if let Some(split) = &trend.split {
        for (side, fit) in [("up to", &split.before), ("after", &split.after)] {
            let name = format!("all models released {side} {} (OLS)", split.cutoff);
            match fit {
                Ok(fit) => fits.push(trend_row(&name, fit)),
                Err(why) => fits.push(TrendRow {
                    fit: name,
                    models: 0,
                    slope: format!("refused: {why}"),
                    doubling: "—".into(),
                    doubling_ci: "—".into(),
                    r2: "—".into(),
                }),
            }
        }
    }
    fits
}

#[derive(Tabled)]
struct SensitivityLine {
    variant: String,
    #[tabled(rename = "reference")]
    family: String,
    score: String,
    models: usize,
    #[tabled(rename = "doubling (days, OLS)")]
    doubling: String,
    #[tabled(rename = "CI (days)")]
    doubling_ci: String,
    #[tabled(rename = "R²")]
    r2: String,
    #[tabled(rename = "Theil–Sen (days)")]
    robust: String,
}

/// The sensitivity table: the all-models doubling time under each variant.
pub fn sensitivity_table(rows: &[SensitivityRow]) -> String {
    let lines: Vec<SensitivityLine> = rows
        .iter()
        .map(|r| SensitivityLine {
            variant: r.variant.name.clone(),
            family: r.variant.family.name().into(),
            score: r.variant.score.name().into(),
            models: r.models,
            doubling: match (&r.refused, r.doubling_days) {
                (Some(why), _) => format!("refused: {why}"),
                (None, Some(d)) => format!("{d:.0}"),
                (None, None) => "—".into(),
            },
            doubling_ci: interval(r.doubling_days_ci, |v| format!("{v:.0}")),
            r2: r.r2.map_or("—".into(), |v| format!("{v:.3}")),
            robust: r
                .robust_doubling_days
                .map_or("—".into(), |v| format!("{v:.0}")),
        })
        .collect();
    Table::new(lines).with(Style::markdown()).to_string()
}

/// The density trend: the dated rows, every fit, the sensitivity table (leaderboard protocol)
/// and what was left out.
pub fn trend_text(
    family: &ReferenceFamily,
    used: &[lmdensity_laws::effective::TableEstimate],
    trend: &TrendReport,
    excluded: &[Excluded],
    sensitivity: &[SensitivityRow],
    confidence: f64,
) -> String {
    let rows = dated_rows(used);
    let sensitivity = match sensitivity.is_empty() {
        true => String::new(),
        false => format!(
            "\nSensitivity: the all-models doubling time with another reference, score, or rows left out ({:.0}% CIs, bootstrap over the models):\n{}\n",
            100.0 * confidence,
            sensitivity_table(sensitivity)
        ),
    };
    format!(
        "{}{}\n{}\nln ρ = A·t + B, t = days since 2023-01-01 (dates given to the month, marked (month), placed on the 15th); doubling time = ln 2 / A. {:.0}% CIs: bootstrap over the fitted points (Theil–Sen: recomputed on each resample). The Densing Law paper reports ≈ 95 days (MMLU-era benchmarks, its own reference models).\n{}{}",
        reference_text(family),
        Table::new(rows).with(Style::sharp()),
        Table::new(trend_rows(trend)).with(Style::sharp()),
        100.0 * confidence,
        sensitivity,
        excluded_text(excluded)
    )
}

/// Four decimals for small values, whole numbers for large ones (bytes, milliseconds).
fn compared_value(v: f64, se: Option<f64>) -> String {
    let digits = if v.abs() >= 1e4 { 0 } else { 4 };
    match se {
        Some(se) => format!("{v:.digits$} ± {se:.digits$}"),
        None => format!("{v:.digits$}"),
    }
}

#[derive(Tabled)]
struct ComparedRow {
    metric: String,
    #[tabled(rename = "A")]
    a: String,
    #[tabled(rename = "B")]
    b: String,
    #[tabled(rename = "B/A")]
    ratio: String,
    #[tabled(rename = "Δ/σ")]
    z: String,
    verdict: String,
}

#[derive(Tabled)]
struct SettingRow {
    setting: String,
    #[tabled(rename = "A")]
    a: String,
    #[tabled(rename = "B")]
    b: String,
}

/// Two runs compared: both runs, every common metric, the settings that differ, notes.
pub fn comparison_text(a: &StoredRun, b: &StoredRun, c: &Comparison) -> String {
    let mut out = String::new();
    for (label, run) in [("A", a), ("B", b)] {
        let m = &run.manifest;
        let _ = writeln!(
            out,
            "{label}: {} ({}, {} {}, {} {} threads)",
            run.dir.display(),
            m.kind,
            m.model.id,
            m.model.quantization,
            m.backend.name,
            m.backend.threads
        );
    }
    out.push('\n');
    if c.metrics.is_empty() {
        out.push_str("no metric is in both runs\n");
    } else {
        let rows = c.metrics.iter().map(|m| ComparedRow {
            metric: m.name.clone(),
            a: compared_value(m.a.0, m.a.1),
            b: compared_value(m.b.0, m.b.1),
            ratio: format!("{:.3}", m.ratio),
            z: m.z.map_or("—".into(), |z| format!("{z:+.1}")),
            verdict: match m.verdict {
                Verdict::WithinNoise => "within noise".into(),
                Verdict::Differs => "differs".into(),
                Verdict::NoStderr => "no stderr".into(),
            },
        });
        let _ = writeln!(out, "{}", Table::new(rows).with(Style::markdown()));
    }
    if !c.settings.is_empty() {
        out.push_str("\nwhat differs between the runs:\n\n");
        let rows = c.settings.iter().map(|s| SettingRow {
            setting: s.key.clone(),
            a: s.a.clone(),
            b: s.b.clone(),
        });
        let _ = writeln!(out, "{}", Table::new(rows).with(Style::markdown()));
    }
    for (label, names) in [("A", &c.only_in_a), ("B", &c.only_in_b)] {
        if !names.is_empty() {
            let _ = writeln!(out, "\nonly in {label}: {}", names.join(", "));
        }
    }
    for note in &c.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out.push_str(
        "\nverdict: |B − A| within 2 combined standard errors = within noise (≈95%, normal errors)\n",
    );
    match &c.paired {
        Some(Pairing::Paired(p)) => out += &paired_text(p),
        Some(Pairing::Unpaired(why)) => {
            let _ = writeln!(
                out,
                "\nunpaired: {why}; only the comparison of standard errors above applies"
            );
        }
        None => {}
    }
    out
}

#[derive(Tabled)]
struct PairedRow {
    metric: String,
    #[tabled(rename = "A")]
    a: String,
    #[tabled(rename = "B")]
    b: String,
    #[tabled(rename = "B − A [95% paired bootstrap]")]
    difference: String,
    test: String,
    p: String,
    #[tabled(rename = "q (BH)")]
    q: String,
    #[tabled(rename = "MDE")]
    mde: String,
}

fn interval_text(ci: Option<(f64, f64)>) -> String {
    ci.map_or(String::new(), |(lo, hi)| format!(" [{lo:.4}, {hi:.4}]"))
}

/// The paired tests of a comparison.
fn paired_text(p: &Paired) -> String {
    let rows = p.tests.iter().map(|t| PairedRow {
        metric: t.metric.clone(),
        a: format!("{:.4}{}", t.a, interval_text(t.a_wilson)),
        b: format!("{:.4}{}", t.b, interval_text(t.b_wilson)),
        difference: format!("{:+.4} [{:+.4}, {:+.4}]", t.difference, t.ci.0, t.ci.1),
        test: match t.discordant {
            Some((a_only, b_only)) => {
                format!("{} (A only right {a_only}, B only right {b_only})", t.test)
            }
            None => t.test.clone(),
        },
        p: format!("{:.3e}", t.p_value),
        q: format!("{:.3e}", t.q_value),
        mde: format!("{:.4}", t.minimum_detectable_effect),
    });
    format!(
        "\npaired on {} {} both runs scored ({} unpaired left out); accuracies with Wilson 95% intervals; {} bootstrap resamples, seed {}; MDE = smallest |B − A| detectable at α 0.05 with power 0.8 at this size:\n\n{}\n",
        p.paired,
        p.unit,
        p.unpaired,
        p.resamples,
        p.seed,
        Table::new(rows).with(Style::markdown())
    )
}
