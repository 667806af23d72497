//! The report as a renderer-neutral document: sections of paragraphs, tables and figures, built
//! once from the collected results and written as HTML ([`crate::html`]) or Markdown
//! ([`crate::markdown`]).

use std::collections::BTreeMap;

use lmdensity_core::{RunStatus, StoredRun};
use lmdensity_laws::fit::FitReport;
use serde_json::Value;

use crate::collect::{metric, setting, Collected};
use crate::figures::{figures, Figure};

/// A table: header cells and rows of cells (plain text).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column titles.
    pub header: Vec<String>,
    /// Rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

/// One block of a section.
#[derive(Debug, Clone)]
pub enum Block {
    /// A paragraph of plain text.
    Text(String),
    /// A notice that something is missing or refused, shown where the content would be.
    Notice(String),
    /// A table.
    Table(Table),
    /// A figure (chart or the reason it has none).
    Figure(Figure),
    /// A subsection heading.
    Heading(String),
}

/// A titled part of the report.
#[derive(Debug, Clone)]
pub struct Section {
    /// Anchor id.
    pub id: String,
    /// Heading.
    pub title: String,
    /// Content in order.
    pub blocks: Vec<Block>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Document {
    /// Title.
    pub title: String,
    /// One line under the title: when, from which stores.
    pub subtitle: String,
    /// Sections in reading order.
    pub sections: Vec<Section>,
}

/// Builds the report of `data`; `generated_at` is written under the title.
pub fn document(data: &Collected, generated_at: &str) -> Document {
    let stores: Vec<String> = data
        .stores
        .iter()
        .map(|s| s.display().to_string())
        .collect();
    let mut sections = vec![overview(data)];
    sections.push(Section {
        id: "figures".into(),
        title: "Figures".into(),
        blocks: figures(data).into_iter().map(Block::Figure).collect(),
    });
    sections.push(fits(data));
    sections.push(calibration(data));
    sections.push(models(data));
    Document {
        title: "lmdensity report".into(),
        subtitle: format!(
            "Generated {generated_at} from {} run(s) and {} analysis file(s) in {}.",
            data.runs.len(),
            data.analyses.len(),
            if stores.is_empty() {
                "no store".to_string()
            } else {
                stores.join(", ")
            }
        ),
        sections,
    }
}

/// `v ± se` with `digits` decimals.
fn with_se(v: f64, se: Option<f64>, digits: usize) -> String {
    match se {
        Some(se) => format!("{v:.digits$} ± {se:.digits$}"),
        None => format!("{v:.digits$}"),
    }
}

/// The run's headline number, or why it has none.
fn headline(run: &StoredRun) -> String {
    let Some(metrics) = &run.metrics else {
        return "no metrics written (stopped before its first unit finished)".into();
    };
    let found = match run.manifest.kind.as_str() {
        "perplexity" => metric(run, "bits_per_byte")
            .map(|(v, se)| format!("{} bits/byte", with_se(v, se, 4)))
            .or_else(|| {
                metric(run, "perplexity").map(|(v, se)| format!("PPL {}", with_se(v, se, 3)))
            }),
        "task" => {
            let task = setting(run, "corpus");
            metric(run, &format!("{task}/acc")).map(|(v, se)| format!("acc {}", with_se(v, se, 4)))
        }
        "bench" => {
            let parts: Vec<String> = metrics
                .metrics
                .iter()
                .filter(|m| m.name.ends_with("/avg_ts"))
                .map(|m| {
                    format!(
                        "{} {} t/s",
                        m.name.trim_end_matches("/avg_ts"),
                        with_se(m.value, m.stderr, 1)
                    )
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        _ => metrics
            .metrics
            .first()
            .map(|m| format!("{} {}", m.name, with_se(m.value, m.stderr, 4))),
    };
    found.unwrap_or_else(|| "headline metric missing from metrics.json".into())
}

fn status(run: &StoredRun) -> String {
    match run.metrics.as_ref().map(|m| m.status) {
        Some(RunStatus::Complete) => "complete".into(),
        Some(RunStatus::Partial) => "partial (resumable)".into(),
        None => "no metrics".into(),
    }
}

fn overview(data: &Collected) -> Section {
    let mut blocks = Vec::new();
    for problem in &data.problems {
        blocks.push(Block::Notice(format!("Not read: {problem}")));
    }
    if data.runs.is_empty() {
        blocks.push(Block::Notice(
            "This results store has no runs yet. `lmdensity run` (perplexity), `lmdensity eval` \
             (tasks) and `lmdensity bench` (throughput) write them."
                .into(),
        ));
    } else {
        let rows = data
            .runs
            .iter()
            .map(|run| {
                let m = &run.manifest;
                let what = match m.kind.as_str() {
                    "perplexity" => {
                        format!("{} ({})", setting(run, "corpus"), setting(run, "mode"))
                    }
                    "task" => setting(run, "corpus"),
                    _ => String::new(),
                };
                vec![
                    m.run_id.clone(),
                    m.kind.clone(),
                    what,
                    m.model.id.clone(),
                    m.model.quantization.clone(),
                    format!("{} ({} threads)", m.backend.name, m.backend.threads),
                    status(run),
                    headline(run),
                    run.metrics
                        .as_ref()
                        .map(|x| format!("{:.0}", x.elapsed_s))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        blocks.push(Block::Table(Table {
            header: [
                "run",
                "kind",
                "corpus / task",
                "model",
                "weights",
                "backend",
                "status",
                "headline",
                "time (s)",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }));
    }
    Section {
        id: "runs".into(),
        title: "Runs".into(),
        blocks,
    }
}

/// Every fit inside an analysis result, with a name saying where it sits.
fn fits_in(result: &Value) -> Vec<(String, FitReport)> {
    let mut out = Vec::new();
    let mut visit = |name: &str, value: Option<&Value>| {
        if let Some(v) = value {
            if let Ok(report) = serde_json::from_value::<FitReport>(v.clone()) {
                out.push((name.to_string(), report));
            }
        }
    };
    visit("fit", Some(result));
    for key in ["error_law", "loss_law", "chinchilla"] {
        visit(key, result.get(key));
    }
    visit(
        "reference family",
        result.get("reference").and_then(|r| r.get("fit")),
    );
    let trend = result.get("trend");
    visit(
        "trend, all models",
        trend
            .and_then(|t| t.get("all_models"))
            .and_then(|t| t.get("fit")),
    );
    visit(
        "trend, envelope",
        trend
            .and_then(|t| t.get("envelope"))
            .and_then(|t| t.get("fit")),
    );
    out
}

fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

fn fit_table(report: &FitReport) -> Table {
    Table {
        header: ["parameter", "value", "95% interval"]
            .map(String::from)
            .to_vec(),
        rows: report
            .parameters
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    number(p.value),
                    match (p.ci_low, p.ci_high) {
                        (Some(l), Some(h)) => format!("[{}, {}]", number(l), number(h)),
                        _ => "no bootstrap".into(),
                    },
                ]
            })
            .collect(),
    }
}

fn fit_summary(report: &FitReport) -> String {
    let loo = report
        .leave_one_out
        .as_ref()
        .map(|l| {
            format!(
                "; leave-one-out mean |relative error| {:.2}%",
                l.mean_abs_relative_error * 100.0
            )
        })
        .unwrap_or_default();
    let usable = report
        .bootstrap
        .as_ref()
        .map(|b| {
            format!(
                "; {} of {} bootstrap resamples usable",
                b.usable, b.resamples
            )
        })
        .unwrap_or_default();
    format!(
        "{} — {} on {} points, {}: R² = {:.4}, RMSE = {:.4} ({:?} residuals){loo}{usable}.",
        report.law,
        report.formula,
        report.n_points,
        report.method,
        report.r2,
        report.rmse,
        report.residual_scale
    )
}

fn density_rows(result: &Value) -> Vec<Vec<String>> {
    let mut entries: Vec<&Value> = Vec::new();
    for key in ["estimates", "models"] {
        if let Some(list) = result.get(key).and_then(Value::as_array) {
            entries.extend(list.iter());
        }
    }
    entries
        .iter()
        .filter_map(|e| {
            let est = e.get("estimate").unwrap_or(e);
            let get = |k: &str| est.get(k).and_then(Value::as_f64);
            let ci = |k: &str| {
                let c = est.get(k)?;
                Some(format!(
                    "[{}, {}]",
                    crate::chart::si(c.get(0)?.as_f64()?),
                    crate::chart::si(c.get(1)?.as_f64()?)
                ))
            };
            let rho_ci = || {
                let c = est.get("density_ci")?;
                Some(format!(
                    "[{:.3}, {:.3}]",
                    c.get(0)?.as_f64()?,
                    c.get(1)?.as_f64()?
                ))
            };
            Some(vec![
                est.get("label")?.as_str()?.to_string(),
                e.get("released")
                    .and_then(Value::as_str)
                    .unwrap_or("—")
                    .to_string(),
                format!("{:.4}", get("score")?),
                crate::chart::si(get("params")?),
                format!(
                    "{} {}",
                    crate::chart::si(get("effective_params")?),
                    ci("effective_params_ci").unwrap_or_default()
                ),
                format!("{:.3} {}", get("density")?, rho_ci().unwrap_or_default()),
            ])
        })
        .collect()
}

fn fits(data: &Collected) -> Section {
    let mut blocks = Vec::new();
    if data.analyses.is_empty() {
        blocks.push(Block::Notice(
            "No analyses in this store: `lmdensity fit`, `lmdensity density` and `lmdensity \
             trend` write them under analyses/."
                .into(),
        ));
    }
    for analysis in &data.analyses {
        blocks.push(Block::Heading(format!(
            "{} ({}, {}, lmdensity {} {})",
            analysis.id,
            analysis.kind,
            analysis
                .created_at
                .get(..19)
                .unwrap_or(&analysis.created_at),
            analysis.software.lmdensity_version,
            analysis.software.git_revision
        )));
        let found = fits_in(&analysis.result);
        let densities = density_rows(&analysis.result);
        if found.is_empty() && densities.is_empty() {
            blocks.push(Block::Notice(
                "This analysis holds no fit or density estimate this report can read.".into(),
            ));
        }
        for (name, report) in found {
            blocks.push(Block::Text(format!("{name}: {}", fit_summary(&report))));
            blocks.push(Block::Table(fit_table(&report)));
        }
        if !densities.is_empty() {
            blocks.push(Block::Table(Table {
                header: [
                    "model",
                    "released",
                    "score",
                    "N",
                    "N̂ [95% CI]",
                    "ρ = N̂/N [95% CI]",
                ]
                .map(String::from)
                .to_vec(),
                rows: densities,
            }));
        }
        if let Some(excluded) = analysis.result.get("excluded").and_then(Value::as_array) {
            if !excluded.is_empty() {
                blocks.push(Block::Text(format!(
                    "{} model(s) excluded from this analysis (score outside what the reference \
                     law can invert, or no parameter count); see the analysis file for each reason.",
                    excluded.len()
                )));
            }
        }
    }
    Section {
        id: "fits".into(),
        title: "Fits and density estimates".into(),
        blocks,
    }
}

/// The calibration section: the table and the reliability diagram of `reliability`.
fn calibration(data: &Collected) -> Section {
    let (table, figure) = crate::reliability::table_and_figure(data);
    let mut blocks = vec![Block::Text(crate::reliability::INTRODUCTION.into())];
    match table {
        Some((header, rows)) => blocks.push(Block::Table(Table { header, rows })),
        None => blocks.push(Block::Notice(
            "No complete multiple-choice task run with its samples in the store: `lmdensity \
             eval` makes them."
                .into(),
        )),
    }
    blocks.push(Block::Figure(figure));
    Section {
        id: "calibration".into(),
        title: "Calibration".into(),
        blocks,
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn models(data: &Collected) -> Section {
    let mut by_model: BTreeMap<String, Vec<&StoredRun>> = BTreeMap::new();
    for run in &data.runs {
        by_model
            .entry(run.manifest.model.id.clone())
            .or_default()
            .push(run);
    }
    let mut blocks = Vec::new();
    if by_model.is_empty() {
        blocks.push(Block::Notice("No runs, so no models to describe.".into()));
    }
    for (id, runs) in by_model {
        let latest = runs[runs.len() - 1];
        let m = &latest.manifest;
        blocks.push(Block::Heading(id.clone()));
        let mut rows = vec![
            vec!["architecture".into(), m.model.architecture.clone()],
            vec![
                "parameters".into(),
                format!(
                    "{} ({})",
                    m.model.n_params,
                    crate::chart::si(m.model.n_params as f64)
                ),
            ],
            vec![
                "weights".into(),
                format!(
                    "{} {} ({} bytes), sha256 {}",
                    m.model.format, m.model.quantization, m.model.file_bytes, m.model.sha256
                ),
            ],
            vec![
                "vocabulary / training context".into(),
                format!("{} / {}", m.model.n_vocab, m.model.n_ctx_train),
            ],
            vec![
                "backend".into(),
                format!(
                    "{} {} on {}, {} threads; built with {}",
                    m.backend.name,
                    m.backend.version,
                    m.backend.device,
                    m.backend.threads,
                    m.backend.build_features
                ),
            ],
            vec![
                "hardware".into(),
                format!(
                    "{} ({} threads), {} RAM, {} {}, {}{}",
                    m.hardware.cpu_model,
                    m.hardware.cpu_threads,
                    gib(m.hardware.ram_total_bytes),
                    m.hardware.os,
                    m.hardware.kernel,
                    m.hardware.arch,
                    m.hardware
                        .gpu
                        .as_ref()
                        .map(|g| format!(", GPU {g}"))
                        .unwrap_or_default()
                ),
            ],
            vec![
                "software".into(),
                format!(
                    "lmdensity {} ({}), target features {}",
                    m.software.lmdensity_version,
                    m.software.git_revision,
                    m.software.target_features
                ),
            ],
        ];
        rows.push(vec!["runs".into(), runs.len().to_string()]);
        blocks.push(Block::Text(format!(
            "As recorded in the manifest of its latest run, {}.",
            m.run_id
        )));
        blocks.push(Block::Table(Table {
            header: vec!["".into(), "".into()],
            rows,
        }));
        let settings_rows = runs
            .iter()
            .map(|run| {
                let s: Vec<String> = run
                    .manifest
                    .settings
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "prompt" | "started" | "test_plan"))
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        v => format!("{k}={v}"),
                    })
                    .collect();
                vec![run.manifest.run_id.clone(), s.join(", ")]
            })
            .collect();
        blocks.push(Block::Table(Table {
            header: vec!["run".into(), "settings".into()],
            rows: settings_rows,
        }));
    }
    Section {
        id: "models".into(),
        title: "Models, hardware and settings".into(),
        blocks,
    }
}
