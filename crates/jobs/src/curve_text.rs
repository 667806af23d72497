//! Terminal text for fits ([`fit_outcome_text`]) and the loss-curve fits in particular: a run's predicted loss ([`curve_text`]) and Luo et
//! al.'s protocol beside their published figures ([`loss_curves_text`]).

use std::fmt::Write;

use crate::analysis::FitOutcome;
use lmdensity_laws::loss_curve::protocol::{
    CurvePrediction, LawResult, LossCurveReproduction, Split,
};
use lmdensity_laws::loss_curve::{CurveFit, CurveLawName, CurveMetrics, FitMethod};

/// Any fit's terminal text: Gadre et al.'s reproduction and point fits as the report crate
/// renders them, the loss-curve outcomes as this module does.
pub fn fit_outcome_text(outcome: &FitOutcome) -> String {
    match outcome {
        FitOutcome::Gadre(fits, data) => lmdensity_report::text::gadre_text(fits, data),
        FitOutcome::Law(report) => lmdensity_report::text::fit_text(report),
        FitOutcome::Curve(p) => curve_text(p),
        FitOutcome::LossCurves(r) => loss_curves_text(r),
    }
}

/// A short name for a fit: the law and, for the Multi-Power Law, how it was fitted.
pub fn fit_label(fit: &CurveFit) -> String {
    match (fit.law, fit.method) {
        (CurveLawName::Mpl, FitMethod::AuthorsAdam) => "MPL, authors' AdamW protocol".into(),
        (CurveLawName::Mpl, FitMethod::Lbfgs) => "MPL, L-BFGS to the optimum".into(),
        (CurveLawName::Tissue, _) => "Tissue et al., L-BFGS".into(),
    }
}

/// `value` with four significant digits after the point where it matters.
fn num(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

/// "is this run worth continuing?": the fit, the predicted loss with its interval, and how the
/// fit did on the logged points it did not see.
pub fn curve_text(p: &CurvePrediction) -> String {
    let fit = &p.fit;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} fitted to {}, steps ≤ {} ({} points)",
        fit.law.citation(),
        p.file,
        p.fit_until,
        fit.n_points
    );
    let _ = writeln!(out, "  {}", fit.formula);
    let _ = writeln!(out, "  schedule: {}", p.schedule);
    let _ = writeln!(
        out,
        "  fit: {}; objective {:.4e} after {} iterations",
        fit.method.describe(),
        fit.objective,
        fit.iterations
    );
    let level = format!("{:.0}% CI", 100.0 * p.confidence);
    let _ = writeln!(out, "\n  {:<8} {:>12}   {level}", "param", "value");
    for param in &fit.parameters {
        let ci = match (param.ci_low, param.ci_high) {
            (Some(lo), Some(hi)) => format!("{} … {}", num(lo), num(hi)),
            _ => "—".into(),
        };
        let _ = writeln!(out, "  {:<8} {:>12}   {ci}", param.name, num(param.value));
    }
    let m = &p.fit_metrics;
    let _ = writeln!(
        out,
        "\n  fitted points: R² {:.4}, RMSE {:.5}, PredE {:.3}%",
        m.r2,
        m.rmse,
        100.0 * m.prede
    );
    if let Some(h) = &p.held_out {
        let _ = writeln!(
            out,
            "  logged points after step {} (not fitted, {}): R² {:.4}, PredE {:.3}%, WorstE {:.3}%",
            p.fit_until,
            h.points,
            h.metrics.r2,
            100.0 * h.metrics.prede,
            100.0 * h.metrics.worste
        );
    }
    let interval = match p.interval {
        Some([lo, hi]) => format!(
            "{level} {lo:.4} … {hi:.4}; {} of {} resamples",
            p.resamples[1], p.resamples[0]
        ),
        None if p.resamples[0] == 0 => "no interval: no bootstrap resamples asked for".into(),
        None => format!(
            "no interval: none of {} bootstrap resamples refitted",
            p.resamples[0]
        ),
    };
    let _ = writeln!(
        out,
        "\n  predicted loss at step {}: {:.4} ({interval})",
        p.predict_to, p.predicted
    );
    let _ = writeln!(out, "  interval: {}", p.interval_method);
    if let Some(measured) = p.measured {
        let _ = writeln!(
            out,
            "  measured at step {}: {measured:.4} (prediction {:+.3}%)",
            p.predict_to,
            100.0 * (p.predicted - measured) / measured
        );
    }
    if let Some(note) = &p.note {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

fn metrics_row(out: &mut String, label: &str, m: &CurveMetrics, extra: &str) {
    let _ = writeln!(
        out,
        "  {label:<36} {:>7.4} {:>8.5} {:>8.5} {:>8.5} {:>8.5}  {extra}",
        m.r2, m.mae, m.rmse, m.prede, m.worste
    );
}

fn parameters_line(fit: &CurveFit) -> String {
    fit.parameters
        .iter()
        .map(|p| format!("{} {}", p.name, num(p.value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Luo et al.'s protocol on one folder: each fit's test metrics beside the published ones,
/// PredE per curve, the parameters; the last line names each fit's test PredE.
pub fn loss_curves_text(r: &LossCurveReproduction) -> String {
    let mut out = String::new();
    let size = r
        .model
        .as_deref()
        .map_or(String::new(), |m| format!(" ({m})"));
    let _ = writeln!(
        out,
        "Luo et al.'s loss-curve protocol on {}{size}: fit on cosine_24000, constant_24000, wsdcon_9; predict constant_72000, cosine_72000, wsd_20000_24000, wsdld_20000_24000, wsdcon_3, wsdcon_18\n",
        r.data
    );
    let _ = writeln!(
        out,
        "  {:<36} {:>7} {:>8} {:>8} {:>8} {:>8}  fit",
        "test curves (mean of 6)", "R²", "MAE", "RMSE", "PredE", "WorstE"
    );
    if let Some(p) = &r.published {
        metrics_row(&mut out, "Luo et al. (published)", &p.published.test, "");
        metrics_row(
            &mut out,
            "  their parameters, computed here",
            &p.recomputed_test,
            "",
        );
    }
    for law in &r.laws {
        let extra = format!(
            "{:.1} s, {} iterations, objective {:.3e}",
            law.fit_seconds, law.fit.iterations, law.fit.objective
        );
        metrics_row(&mut out, &fit_label(&law.fit), &law.test, &extra);
    }
    per_curve(&mut out, &r.laws);
    let _ = writeln!(out, "\n  parameters:");
    if let Some(p) = &r.published {
        let names = CurveLawName::Mpl.parameters();
        let values: Vec<String> = names
            .iter()
            .zip(p.published.theta)
            .map(|(n, v)| format!("{n} {}", num(v)))
            .collect();
        let _ = writeln!(
            out,
            "  {:<36} {}",
            "Luo et al. (published)",
            values.join(", ")
        );
    }
    for law in &r.laws {
        let _ = writeln!(
            out,
            "  {:<36} {}",
            fit_label(&law.fit),
            parameters_line(&law.fit)
        );
    }
    let _ = writeln!(out, "\n{}", summary_line(r));
    out
}

/// PredE of every curve under every fit.
fn per_curve(out: &mut String, laws: &[LawResult]) {
    let Some(first) = laws.first() else {
        return;
    };
    let _ = write!(out, "\n  {:<24} {:<6}", "PredE per curve", "set");
    for law in laws {
        let _ = write!(out, " {:>30}", fit_label(&law.fit));
    }
    let _ = writeln!(out);
    for (i, curve) in first.curves.iter().enumerate() {
        let split = match curve.split {
            Split::Train => "train",
            Split::Test => "test",
        };
        let _ = write!(out, "  {:<24} {split:<6}", curve.curve);
        for law in laws {
            let prede = law.curves.get(i).map_or(f64::NAN, |c| c.metrics.prede);
            let _ = write!(out, " {prede:>30.5}");
        }
        let _ = writeln!(out);
    }
}

/// `test PredE: mpl <x> (published <y>, <x/y>×), mpl-lbfgs <…>, tissue <…>`.
fn summary_line(r: &LossCurveReproduction) -> String {
    let mut parts = Vec::new();
    for law in &r.laws {
        let key = match (law.fit.law, law.fit.method) {
            (CurveLawName::Mpl, FitMethod::AuthorsAdam) => "mpl",
            (CurveLawName::Mpl, FitMethod::Lbfgs) => "mpl-lbfgs",
            (CurveLawName::Tissue, _) => "tissue",
        };
        let mut part = format!("{key} {:.6}", law.test.prede);
        if let (Some(p), "mpl") = (&r.published, key) {
            let published = p.published.test.prede;
            let _ = write!(
                part,
                " (published {published:.5}, {:.2}×)",
                law.test.prede / published
            );
        }
        parts.push(part);
    }
    format!("test PredE: {}", parts.join(", "))
}
