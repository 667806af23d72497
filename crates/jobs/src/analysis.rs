//! Analysis jobs: a law fitted to reference data, a CSV file or the results store (`FitJob`),
//! effective parameter size and density against the reference family (`DensityJob`), and the
//! density trend over release dates (`TrendJob`). Each returns its typed outcome and its JSON,
//! and saves the JSON to `analyses/` in the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use lmdensity_core::{progress, AnalysisRecord, SCHEMA_VERSION};
use lmdensity_laws::chinchilla::ChinchillaLaw;
use lmdensity_laws::densing::{DensityEstimate, LossLaw, PerformanceLaw};
use lmdensity_laws::effective::{
    mean_task_score, Excluded, ReferenceFamily, TableDensities, TableEstimate, PYTHIA_TOKENS,
};
use lmdensity_laws::fit::{fit, fit_with, FitOptions, FitReport, Law, Point};
use lmdensity_laws::gadre::{ErrorLaw, OverTrainingLaw};
use lmdensity_laws::loss_curve::protocol::{CurvePrediction, LossCurveReproduction};
use lmdensity_laws::loss_curve::CurveLawName;
pub use lmdensity_laws::obsscaling::{FamilyName, LeaderboardScore};
use lmdensity_laws::placement::{PlacedRow, SensitivityRow};
use lmdensity_laws::reference::{
    load_gadre_runs, parse_open_models, shipped_gadre_runs, OpenModel, COMMONSENSE_TASKS,
    OPEN_MODELS_CSV, SHIPPED_GADRE_DATA,
};
use lmdensity_laws::reproduction::{reproduce_gadre, GadreReproduction};
use lmdensity_laws::robust::HuberLse;
use lmdensity_laws::trend::{density_trend, parse_release_date, DatedDensity, TrendReport};
use serde::Serialize;
use serde_json::json;

use crate::error::{Context, Result};
use crate::workspace::Workspace;
use crate::{bail, JobError};
use lmdensity_laws::loss_curve::protocol::CurveQuestion;

mod leaderboard;
pub mod measured;
pub mod quant;
pub use leaderboard::MeasuredEstimate;
use lmdensity_laws::loss_curve::FitMethod;

/// Settings shared by every fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSettings {
    /// Bootstrap resamples for the confidence intervals.
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Confidence level of the intervals.
    pub confidence: f64,
}

impl Default for FitSettings {
    /// 1000 resamples, seed 0, 95% intervals.
    fn default() -> Self {
        FitSettings {
            bootstrap: FitSettings::BOOTSTRAP,
            seed: 0,
            confidence: 0.95,
        }
    }
}

impl FitSettings {
    /// Default bootstrap resamples of a point fit.
    pub const BOOTSTRAP: usize = 1000;

    /// Default resamples of a loss-curve fit ([`FitTarget::Curve`]): each refits the law to
    /// the whole curve, so fewer than the 1000 of point fits.
    pub const CURVE_BOOTSTRAP: usize = 50;

    fn options(&self) -> Result<FitOptions> {
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            bail!(
                "--confidence {} must be between 0 and 1 (e.g. 0.95)",
                self.confidence
            );
        }
        Ok(FitOptions {
            bootstrap: self.bootstrap,
            seed: self.seed,
            confidence: self.confidence,
            ..FitOptions::default()
        })
    }

    fn json(&self) -> BTreeMap<String, serde_json::Value> {
        crate::run::settings([
            ("bootstrap", json!(self.bootstrap)),
            ("seed", json!(self.seed)),
            ("confidence", json!(self.confidence)),
        ])
    }
}

/// Laws a fit can fit, each with its solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LawName {
    /// Err(L) = ε − k·exp(−γ·L); x = L.
    GadreError,
    /// L(N, M) = α·N^b + β·6^(b/2)·(M·N)^b + E; x = N, M.
    GadreOvertraining,
    /// L(N, D) = E + A/N^α + B/D^β by least squares; x = N, D.
    Chinchilla,
    /// The same law by Hoffmann et al.'s Huber loss on log-loss (L-BFGS); x = N, D.
    ChinchillaHuber,
    /// The same law by variable projection; x = N, D.
    ChinchillaVarpro,
    /// L(N, D) = a·N^(−α) + b·D^(−β); x = N, D.
    DensingLoss,
    /// S(L) = c / (1 + e^(−γ(L − l))) + d; x = L.
    DensingPerformance,
}

impl LawName {
    /// Every law, in the order of [`LawName::NAMES`].
    const ALL: [LawName; 7] = [
        LawName::GadreError,
        LawName::GadreOvertraining,
        LawName::Chinchilla,
        LawName::ChinchillaHuber,
        LawName::ChinchillaVarpro,
        LawName::DensingLoss,
        LawName::DensingPerformance,
    ];

    /// The names [`LawName::parse`] accepts (the command line's spellings).
    pub const NAMES: &'static [&'static str] = &[
        "gadre-error",
        "gadre-overtraining",
        "chinchilla",
        "chinchilla-huber",
        "chinchilla-varpro",
        "densing-loss",
        "densing-performance",
    ];

    /// The law named `name` (one of [`LawName::NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[i])
    }

    /// The law object.
    pub fn law(self) -> &'static dyn Law {
        match self {
            LawName::GadreError => &ErrorLaw,
            LawName::GadreOvertraining => &OverTrainingLaw,
            LawName::Chinchilla | LawName::ChinchillaHuber | LawName::ChinchillaVarpro => {
                &ChinchillaLaw
            }
            LawName::DensingLoss => &LossLaw,
            LawName::DensingPerformance => &PerformanceLaw,
        }
    }

    /// Fits the law with the solver this name says.
    pub fn fit(self, points: &[Point], options: &FitOptions) -> Result<FitReport> {
        let law = self.law();
        Ok(match self {
            LawName::ChinchillaHuber => fit_with(law, points, options, &HuberLse::default())?,
            LawName::ChinchillaVarpro => {
                lmdensity_laws::chinchilla::fit_variable_projection(points, options)?
            }
            _ => fit(law, points, options)?,
        })
    }

    /// Refuses inputs that are not the law's number of fields.
    fn check_inputs(self, x: &[String]) -> Result<()> {
        let law = self.law();
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
}

/// Input fields as given: each `--x` may itself be a comma list (`--x N,D` = `--x N --x D`).
pub fn split_fields(x: &[String]) -> Vec<String> {
    x.iter()
        .flat_map(|f| f.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// What to fit.
#[derive(Debug, Clone, PartialEq)]
pub enum FitTarget {
    /// Gadre et al. 2024 on their released runs.
    Gadre {
        /// Their `exp_data` directory (default: the copy built into lmdensity).
        data: Option<PathBuf>,
        /// Training set: rpj, c4_original, rw_original.
        dataset: String,
        /// Validation loss: c4_val, paloma_ptb, …
        eval_set: String,
    },
    /// A law on values from the results store, joined per model.
    Runs {
        /// The law.
        law: LawName,
        /// Input fields, in the law's order.
        x: Vec<String>,
        /// Output field.
        y: String,
    },
    /// A law on columns of a CSV file.
    Csv {
        /// The file (with a header row).
        file: PathBuf,
        /// The law.
        law: LawName,
        /// Input columns, in the law's order.
        x: Vec<String>,
        /// Output column.
        y: String,
        /// Column naming each row (default: row numbers).
        label: Option<String>,
    },
    /// A loss-curve law on one training run's `step,lr,loss` CSV: fitted to its start, the
    /// loss at a later step predicted with a bootstrap interval (`settings.bootstrap`
    /// resamples).
    Curve {
        /// The CSV file.
        file: PathBuf,
        /// The law.
        law: CurveLawName,
        /// Schedule name (`cosine_24000`, …, or `logged`); default: the file's stem if it is
        /// one, else its lr column.
        lr_schedule: Option<String>,
        /// Fit the points at steps ≤ this (default: all).
        fit_until: Option<usize>,
        /// Predict the loss at this step (default: the schedule's last step, else the file's).
        predict_to: Option<usize>,
    },
    /// Luo et al.'s loss-curve protocol on one model size's folder of their curves.
    LossCurves {
        /// The folder (`csv_25`, `csv_100`, `csv_400` of their data).
        data: PathBuf,
    },
}

/// A fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitJob {
    /// What to fit.
    pub target: FitTarget,
    /// Bootstrap and confidence.
    pub settings: FitSettings,
}

/// What a fit produced.
#[derive(Debug, Clone)]
pub enum FitOutcome {
    /// Gadre et al.'s reproduction, and where its data came from.
    Gadre(Box<GadreReproduction>, String),
    /// One law's fit.
    Law(Box<FitReport>),
    /// A run's loss predicted from its start.
    Curve(Box<CurvePrediction>),
    /// Luo et al.'s loss-curve protocol.
    LossCurves(Box<LossCurveReproduction>),
}

/// An analysis's outcome, its JSON (as printed by `--json` and saved) and where it was saved.
#[derive(Debug, Clone)]
pub struct Analysis<T> {
    /// The typed outcome.
    pub outcome: T,
    /// The saved JSON.
    pub json: serde_json::Value,
    /// The file under `analyses/`.
    pub saved: PathBuf,
}

impl FitJob {
    /// Fits, saves and returns the outcome.
    pub fn run(&self, ws: &Workspace) -> Result<Analysis<FitOutcome>> {
        let options = self.settings.options()?;
        let mut settings = self.settings.json();
        let (name, outcome, json) = match &self.target {
            FitTarget::Gadre {
                data,
                dataset,
                eval_set,
            } => {
                let (runs, label) = match data {
                    Some(dir) => (load_gadre_runs(dir)?, dir.display().to_string()),
                    None => (shipped_gadre_runs()?, SHIPPED_GADRE_DATA.to_string()),
                };
                let spinner = progress::spinner("fitting Gadre et al.'s laws");
                let fits = reproduce_gadre(&runs, dataset, eval_set, &options)
                    .with_context(|| format!("Gadre et al.'s runs in {label}"))?;
                spinner.finish_and_clear();
                settings.insert("data".into(), json!(label));
                settings.insert("dataset".into(), json!(dataset));
                settings.insert("eval_set".into(), json!(eval_set));
                let json = json!({
                    "loss_law": fits.loss_law,
                    "loss_law_paper_form": OverTrainingLaw::paper_form(&fits.loss_law.values()),
                    "error_law": fits.error_law,
                    "chinchilla": fits.chinchilla,
                    "predictions": fits.predictions,
                });
                (
                    "gadre".to_string(),
                    FitOutcome::Gadre(Box::new(fits), label),
                    json,
                )
            }
            FitTarget::Runs { law, x, y } => {
                let x = split_fields(x);
                law.check_inputs(&x)?;
                let points = store_points(ws, &x, y)?;
                let report = law.fit(&points, &options).with_context(|| {
                    format!(
                        "fitting {} to the runs in {}",
                        law.law().name(),
                        ws.results_dir.display()
                    )
                })?;
                settings.insert(
                    "results_dir".into(),
                    json!(ws.results_dir.display().to_string()),
                );
                law_outcome(*law, report, &x, y, &mut settings)?
            }
            FitTarget::Csv {
                file,
                law,
                x,
                y,
                label,
            } => {
                let x = split_fields(x);
                law.check_inputs(&x)?;
                let points = read_points(file, &x, y, label.as_deref())?;
                let report = law.fit(&points, &options)?;
                settings.insert("file".into(), json!(file.display().to_string()));
                law_outcome(*law, report, &x, y, &mut settings)?
            }
            FitTarget::Curve {
                file,
                law,
                lr_schedule,
                fit_until,
                predict_to,
            } => {
                let question = CurveQuestion {
                    law: *law,
                    method: FitMethod::Lbfgs,
                    schedule: lr_schedule.clone(),
                    fit_until: *fit_until,
                    predict_to: *predict_to,
                    resamples: self.settings.bootstrap,
                    seed: self.settings.seed,
                    confidence: self.settings.confidence,
                };
                let prediction = crate::curves::predict(file, &question, &mut settings)?;
                let json = serde_json::to_value(&prediction)?;
                let name = format!("curve-{}", law.name());
                (name, FitOutcome::Curve(Box::new(prediction)), json)
            }
            FitTarget::LossCurves { data } => {
                let reproduction = crate::curves::reproduce(data, &mut settings)?;
                let json = serde_json::to_value(&reproduction)?;
                let name = "loss-curves".to_string();
                (name, FitOutcome::LossCurves(Box::new(reproduction)), json)
            }
        };
        let saved = save(ws, "fit", &name, settings, &json)?;
        Ok(Analysis {
            outcome,
            json,
            saved,
        })
    }
}

/// A law's fit as an outcome: its name, the outcome and its JSON, with `x` and `y` recorded.
fn law_outcome(
    law: LawName,
    report: FitReport,
    x: &[String],
    y: &str,
    settings: &mut BTreeMap<String, serde_json::Value>,
) -> Result<(String, FitOutcome, serde_json::Value)> {
    settings.insert("x".into(), json!(x));
    settings.insert("y".into(), json!(y));
    let json = serde_json::to_value(&report)?;
    Ok((
        law.law().name().to_string(),
        FitOutcome::Law(Box::new(report)),
        json,
    ))
}

/// An outcome that is saved under `analyses/` as an analysis of kind `KIND`.
trait SavedAnalysis: Sized {
    /// The analysis kind (`trend`, `density`).
    const KIND: &'static str;

    /// Saves `json` as an analysis named `name` and returns it with this outcome.
    fn saved(
        self,
        ws: &Workspace,
        name: &str,
        settings: BTreeMap<String, serde_json::Value>,
        json: serde_json::Value,
    ) -> Result<Analysis<Self>> {
        let saved = save(ws, Self::KIND, name, settings, &json)?;
        Ok(Analysis {
            outcome: self,
            json,
            saved,
        })
    }
}

impl SavedAnalysis for TrendOutcome {
    const KIND: &'static str = "trend";
}

impl SavedAnalysis for DensityOutcome {
    const KIND: &'static str = "density";
}

fn save(
    ws: &Workspace,
    kind: &str,
    name: &str,
    settings: BTreeMap<String, serde_json::Value>,
    result: &impl Serialize,
) -> Result<PathBuf> {
    let now = chrono::Utc::now();
    let mut software = crate::run::software();
    software.crate_versions.clear();
    let record = AnalysisRecord {
        schema_version: SCHEMA_VERSION,
        id: format!("{}-{kind}-{name}", now.format("%Y%m%dT%H%M%S")),
        kind: kind.into(),
        created_at: now.to_rfc3339(),
        software,
        settings,
        result: serde_json::to_value(result)?,
    };
    let path = ws.store().write_analysis(&record)?;
    progress::say(format!("saved {}", path.display()));
    Ok(path)
}

/// Per model id: every value of its complete runs (see
/// [`lmdensity_report::collect::model_values`]), plus from the registry `tokens` and
/// `release_days` (days since 2023-01-01; a date the registry cannot give to the day or month
/// is left out, with a warning).
pub fn model_values(ws: &Workspace) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let runs = ws.store().runs()?;
    let mut values = lmdensity_report::collect::model_values(&runs);
    let registry = ws.registry().ok();
    for (id, entry) in values.iter_mut() {
        let Some(model) = registry.as_ref().and_then(|r| r.get(id).ok()) else {
            continue;
        };
        if let Some(tokens) = model.training_tokens {
            entry.insert("tokens".into(), tokens);
        }
        match parse_release_date(&model.release_date) {
            Ok(day) => {
                let days = (day - lmdensity_laws::trend::epoch()).num_days();
                entry.insert("release_days".into(), days as f64);
            }
            Err(reason) => progress::say(format!("warning: {id}: {reason}; no release_days")),
        }
    }
    Ok(values)
}

/// Points of `y` against `x` from the store's per-model values.
fn store_points(ws: &Workspace, x: &[String], y: &str) -> Result<Vec<Point>> {
    let values = model_values(ws)?;
    if values.is_empty() {
        bail!("no complete runs in {}", ws.results_dir.display());
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
    if !skipped.is_empty() {
        progress::say(format!(
            "models without all of {}, {y}: {}",
            x.join(", "),
            skipped.join(", ")
        ));
    }
    Ok(points)
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
            cell.parse::<f64>().map_err(|_| {
                JobError::Invalid(format!(
                    "{}: row {row}, column {:?}: {cell:?} is not a number",
                    file.display(),
                    &headers[c]
                ))
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

/// The evaluation protocol the reference and the placed models share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Open LLM Leaderboard v1 on the ObsScaling table (148 models, one protocol); the
    /// reference is a one-recipe family of the same table.
    Leaderboard,
    /// lm-eval 0-shot accuracy (ARC-e, ARC-c, PIQA, WinoGrande): Pythia's published
    /// checkpoints, the open-models table's 0-shot rows, and `lmdensity eval`'s results.
    ZeroShot,
}

impl Protocol {
    /// The names [`Protocol::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["leaderboard", "zero-shot"];

    /// The protocol named `name` (one of [`Protocol::NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "leaderboard" => Some(Protocol::Leaderboard),
            "zero-shot" => Some(Protocol::ZeroShot),
            _ => None,
        }
    }
}

/// How the reference family is fitted and read, and which open-models table is placed on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSpec {
    /// The protocol (default: `leaderboard` for the trend, `zero-shot` for densities, which
    /// places models measured by `lmdensity eval`).
    pub protocol: Option<Protocol>,
    /// Reference family on the leaderboard protocol (the zero-shot route is Pythia's).
    pub family: FamilyName,
    /// Score definition on the leaderboard protocol.
    pub score: LeaderboardScore,
    /// Open-models table (default: the one shipped with lmdensity); on the leaderboard
    /// protocol a directory with `base_llm_benchmark_eval.csv` and `release_dates.csv` (and
    /// optionally `corrections.csv`, `row_flags.csv`; default: the shipped ObsScaling copy).
    pub table: Option<PathBuf>,
    /// Token budget D₀ at which N̂ is read off (default: Pythia's own).
    pub d0: Option<f64>,
    /// Pythia checkpoints with fewer tokens seen are left out of the reference fit.
    pub min_tokens: f64,
    /// Leave out estimates of N̂ beyond this multiple of the largest Pythia.
    pub max_extrapolation: f64,
}

impl Default for ReferenceSpec {
    /// Protocol by job, Pythia, ARC-c + HellaSwag + WinoGrande, the shipped tables, D₀ =
    /// Pythia's budget, checkpoints from 2B tokens, N̂ within 10× the reference's sizes.
    fn default() -> Self {
        ReferenceSpec {
            protocol: None,
            family: FamilyName::Pythia,
            score: LeaderboardScore::ArcHellaswagWinogrande,
            table: None,
            d0: None,
            min_tokens: 2e9,
            max_extrapolation: 10.0,
        }
    }
}

impl ReferenceSpec {
    fn table(&self) -> Result<Vec<OpenModel>> {
        Ok(match &self.table {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                parse_open_models(&text, &path.display().to_string())?
            }
            None => parse_open_models(OPEN_MODELS_CSV, "open_models.csv (shipped)")?,
        })
    }

    fn family(&self, options: &FitOptions) -> Result<ReferenceFamily> {
        let defaults = ReferenceSpec::default();
        if self.family != defaults.family || self.score != defaults.score {
            progress::say(
                "warning: --reference and --reference-score apply to --protocol leaderboard; \
                 the zero-shot reference is Pythia's checkpoints on ARC-e, ARC-c, PIQA, WinoGrande",
            );
        }
        let spinner = progress::spinner("fitting the Pythia reference family (score vs N, D)");
        let family = ReferenceFamily::pythia(
            &COMMONSENSE_TASKS,
            self.d0.unwrap_or(PYTHIA_TOKENS),
            self.min_tokens,
            options,
        )?;
        spinner.finish_and_clear();
        Ok(family)
    }

    fn json(&self, settings: &FitSettings) -> BTreeMap<String, serde_json::Value> {
        let mut out = settings.json();
        out.insert("reference".into(), json!("pythia (standard Pile)"));
        out.insert("tasks".into(), json!(COMMONSENSE_TASKS));
        out.insert("d0".into(), json!(self.d0.unwrap_or(PYTHIA_TOKENS)));
        out.insert("min_tokens".into(), json!(self.min_tokens));
        out.insert("max_extrapolation".into(), json!(self.max_extrapolation));
        out.insert(
            "table".into(),
            json!(self
                .table
                .as_deref()
                .map_or("open_models.csv (shipped)".into(), |p| p
                    .display()
                    .to_string())),
        );
        out
    }
}

/// Effective parameter size N̂ and density ρ of models against the Pythia reference.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DensityJob {
    /// Registry ids (their task results in the store) or rows of the open-models table; with
    /// none and no `scores`, every comparable row of the table.
    pub models: Vec<String>,
    /// Scores of a model not in the table, as `TASK=ACCURACY` (0–1), with `params`.
    pub scores: Vec<String>,
    /// Parameter count of the model given by `scores`.
    pub params: Option<f64>,
    /// Name of the model given by `scores`.
    pub name: String,
    /// The reference.
    pub reference: ReferenceSpec,
    /// Bootstrap and confidence.
    pub settings: FitSettings,
    /// A `sweep-quant` table (`sweep.json`): its variants on the Pythia 0-shot reference
    /// fitted on the sweep's tasks (see [`quant::sweep_density`]), instead of `models`.
    pub sweep: Option<PathBuf>,
}

/// Density estimates, with the reference and what was left out.
#[derive(Debug, Clone)]
pub struct DensityOutcome {
    /// The reference family's fit.
    pub family: ReferenceFamily,
    /// One estimate per model, with its release date where known.
    pub estimates: Vec<(DensityEstimate, Option<NaiveDate>)>,
    /// Table rows left out, and why.
    pub excluded: Vec<Excluded>,
    /// Scores of the registry models read from the store's task runs (which runs, items per
    /// task), in the order of their estimates.
    pub measured: Vec<measured::MeasuredScore>,
    /// With `--sweep`: the sweep's variants, with N̂ per GB and × tokens/s.
    pub sweep: Option<quant::SweepDensity>,
}

impl DensityOutcome {
    /// The outcome as terminal text: the estimates, then for each model measured here the
    /// runs its score was read from.
    pub fn text(&self, confidence: f64) -> String {
        let mut text = lmdensity_report::text::density_text(
            &self.family,
            &self.estimates,
            &self.excluded,
            confidence,
        );
        if let Some(sweep) = &self.sweep {
            text.push_str(&sweep.markdown());
        }
        for m in &self.measured {
            text.push_str(&format!(
                "measured here: {}: score {:.4}{} = mean of {} (stderr √(Σ seᵢ²)/k)\n",
                m.model,
                m.score,
                m.stderr.map_or(String::new(), |s| format!(" ± {s:.4}")),
                m.note()
            ));
        }
        text
    }
}

impl DensityJob {
    /// Estimates, saves and returns the outcome.
    pub fn run(&self, ws: &Workspace) -> Result<Analysis<DensityOutcome>> {
        if self.reference.protocol == Some(Protocol::Leaderboard) {
            return leaderboard::density(self, ws);
        }
        if let Some(path) = &self.sweep {
            return self.sweep_run(path, ws);
        }
        let options = self.settings.options()?;
        let (seed, confidence) = (self.settings.seed, self.settings.confidence);
        let table = self.reference.table()?;
        let registry = ws.registry().ok();
        let family = self.reference.family(&options)?;
        let mut estimates = Vec::new();
        let mut excluded = Vec::new();
        if !self.scores.is_empty() {
            let (score, params) = self.given_score()?;
            let estimate = family.density(&self.name, score, None, params, seed, confidence)?;
            estimates.push((estimate, None));
        }
        // The store is read once for every registry model asked for.
        let (mut store_runs, mut measured) = (None, Vec::new());
        for name in &self.models {
            if let Some(row) = table.iter().find(|m| m.name.eq_ignore_ascii_case(name)) {
                if !row.commonsense_zero_shot() {
                    progress::say(format!(
                        "warning: {}: the table's protocol is not 0-shot accuracy on these tasks ({}); its N̂ is not comparable",
                        row.name, row.eval_protocol
                    ));
                }
                estimates.push((family.density_of(row, seed, confidence)?, row.released));
                continue;
            }
            let Some(entry) = registry.as_ref().and_then(|r| r.get(name).ok()) else {
                bail!("{name}: neither a registry model nor a row of the open-models table");
            };
            if store_runs.is_none() {
                store_runs = Some(ws.store().runs()?);
            }
            let score = measured::measured_score(
                store_runs.as_deref().unwrap_or_default(),
                name,
                &measured::zero_shot_settings(&COMMONSENSE_TASKS),
                &ws.results_dir.display().to_string(),
                "zero-shot",
            )
            .map_err(|e| {
                JobError::Invalid(format!(
                    "{e} — no downstream-task results on the zero-shot protocol (or pass \
                     --score TASK=ACC --params N)"
                ))
            })?;
            let released = parse_release_date(&entry.release_date).ok();
            let label = format!("{name} (measured here)");
            let estimate = family.density(
                &label,
                score.score,
                score.stderr,
                entry.params as f64,
                seed,
                confidence,
            )?;
            estimates.push((estimate, released));
            measured.push(score);
        }
        if self.models.is_empty() && self.scores.is_empty() {
            let TableDensities {
                estimates: rows,
                excluded: left_out,
            } = family.table_densities(&table, self.reference.max_extrapolation, seed, confidence);
            estimates.extend(rows.into_iter().map(|r| (r.estimate, r.released)));
            excluded = left_out;
        }
        let json = json!({
            "reference": family,
            "estimates": estimates.iter().map(|(e, d)| json!({"released": d, "estimate": e})).collect::<Vec<_>>(),
            "excluded": excluded,
            "measured": measured,
        });
        DensityOutcome {
            family,
            estimates,
            excluded,
            measured,
            sweep: None,
        }
        .saved(ws, "pythia", self.reference.json(&self.settings), json)
    }

    /// `density --sweep FILE`: the sweep's variants on the Pythia reference of its tasks.
    fn sweep_run(&self, path: &Path, ws: &Workspace) -> Result<Analysis<DensityOutcome>> {
        if !self.models.is_empty() || !self.scores.is_empty() {
            bail!("--sweep places a sweep's variants; give no models or --score with it");
        }
        let options = self.settings.options()?;
        let (sweep, family) = quant::sweep_density(path, &self.reference, &options, ws)?;
        let estimates = sweep
            .variants
            .iter()
            .map(|v| (v.estimate.clone(), None))
            .collect();
        let json = json!({ "reference": family, "sweep": sweep });
        let mut settings = self.reference.json(&self.settings);
        settings.insert("tasks".into(), json!(sweep.tasks));
        settings.insert("sweep".into(), json!(path.display().to_string()));
        let name = format!("sweep-{}", sweep.model);
        DensityOutcome {
            family,
            estimates,
            excluded: Vec::new(),
            measured: Vec::new(),
            sweep: Some(sweep),
        }
        .saved(ws, &name, settings, json)
    }

    /// The mean of the `TASK=ACC` scores over the reference's tasks, and `params`.
    fn given_score(&self) -> Result<(f64, f64)> {
        let params = self
            .params
            .context("--score needs --params (the model's parameter count, e.g. 1.7e9)")?;
        let mut scores = BTreeMap::new();
        for pair in &self.scores {
            let (task, value) = pair
                .split_once('=')
                .with_context(|| format!("--score {pair:?}: expected TASK=ACCURACY"))?;
            let value: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| (0.0..=1.0).contains(v))
                .with_context(|| format!("--score {pair:?}: accuracy must be between 0 and 1"))?;
            scores.insert(format!("{task}/acc"), value);
        }
        let (score, _) = mean_task_score(&scores, &COMMONSENSE_TASKS).map_err(|missing| {
            JobError::Invalid(format!(
                "the reference score is the mean of {}; --score lacks {}",
                COMMONSENSE_TASKS.join(", "),
                missing
                    .iter()
                    .map(|m| m.trim_end_matches("/acc"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok((score, params))
    }
}

/// The density trend ln ρ = A·t + B over the open-models table's release dates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrendJob {
    /// The reference.
    pub reference: ReferenceSpec,
    /// Bootstrap and confidence.
    pub settings: FitSettings,
}

/// The trend, the dated rows it was fitted to, and what was left out.
#[derive(Debug, Clone)]
pub struct TrendOutcome {
    /// The reference family's fit.
    pub family: ReferenceFamily,
    /// Rows with an estimate and a date.
    pub used: Vec<TableEstimate>,
    /// Rows left out, and why.
    pub excluded: Vec<Excluded>,
    /// Envelope, all-models, robust and split fits.
    pub trend: TrendReport,
    /// Leaderboard protocol: every row of the table with its placement (empty on zero-shot).
    pub rows: Vec<PlacedRow>,
    /// Leaderboard protocol: the all-models doubling time under each variant.
    pub sensitivity: Vec<SensitivityRow>,
    /// Leaderboard protocol: registry models measured here, placed but not fitted.
    pub measured: Vec<MeasuredEstimate>,
    /// Leaderboard protocol: the all-models fit with the measured models added (JSON; null
    /// without measured models).
    pub with_measured: serde_json::Value,
}

impl TrendOutcome {
    /// The outcome as terminal text ([`lmdensity_report::text::trend_text`]).
    pub fn text(&self, confidence: f64) -> String {
        let text = lmdensity_report::text::trend_text(
            &self.family,
            &self.used,
            &self.trend,
            &self.excluded,
            &self.sensitivity,
            confidence,
        );
        if self.measured.is_empty() {
            return text;
        }
        let rows: Vec<TableEstimate> = self.measured.iter().map(|m| m.estimate.clone()).collect();
        let notes: Vec<(String, String)> = self
            .measured
            .iter()
            .map(|m| (m.score.model.clone(), m.score.note()))
            .collect();
        let w = &self.with_measured;
        let line = match (w.get("doubling_days").and_then(|d| d.as_f64()), w.get("refused")) {
            (Some(d), _) => format!(
                "With the measured models added to the published rows (sensitivity only): {} models, all-models least squares doubling {d:.0} days{}, Theil–Sen {}.",
                w["models"],
                w["doubling_days_ci"]
                    .as_array()
                    .and_then(|ci| Some(format!(" (CI {:.0} … {:.0})", ci.first()?.as_f64()?, ci.get(1)?.as_f64()?)))
                    .unwrap_or_default(),
                w["robust_doubling_days"].as_f64().map_or("—".into(), |r| format!("{r:.0} days")),
            ),
            (None, Some(why)) => format!("With the measured models added: refused: {why}"),
            _ => String::new(),
        };
        format!(
            "{text}\n{}",
            lmdensity_report::text::measured_text(&rows, &notes, &line, confidence)
        )
    }
}

impl TrendJob {
    /// Fits, saves and returns the outcome.
    pub fn run(&self, ws: &Workspace) -> Result<Analysis<TrendOutcome>> {
        if self.reference.protocol.unwrap_or(Protocol::Leaderboard) == Protocol::Leaderboard {
            return leaderboard::trend(self, ws);
        }
        let options = self.settings.options()?;
        let table = self.reference.table()?;
        let family = self.reference.family(&options)?;
        let TableDensities {
            estimates,
            mut excluded,
        } = family.table_densities(
            &table,
            self.reference.max_extrapolation,
            self.settings.seed,
            self.settings.confidence,
        );
        let mut dated = Vec::new();
        let mut used = Vec::new();
        for row in estimates {
            match row.released {
                Some(released) => {
                    dated.push(DatedDensity {
                        label: row.estimate.label.clone(),
                        released,
                        density: row.estimate.density,
                    });
                    used.push(row);
                }
                None => excluded.push(Excluded {
                    name: row.estimate.label.clone(),
                    reason: "no release date in the table".into(),
                }),
            }
        }
        let trend = density_trend(&dated, &options)?;
        let json =
            json!({ "reference": family, "models": used, "excluded": excluded, "trend": trend });
        TrendOutcome {
            family,
            used,
            excluded,
            trend,
            rows: Vec::new(),
            sensitivity: Vec::new(),
            measured: Vec::new(),
            with_measured: serde_json::Value::Null,
        }
        .saved(ws, "pythia", self.reference.json(&self.settings), json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_fields_take_comma_lists() {
        let given = vec!["N,D".to_string()];
        assert_eq!(split_fields(&given), vec!["N", "D"]);
        let given = vec!["N".to_string(), " D ".to_string()];
        assert_eq!(split_fields(&given), vec!["N", "D"]);
        assert!(LawName::Chinchilla
            .check_inputs(&split_fields(&["N,D".into()]))
            .is_ok());
        assert!(LawName::Chinchilla
            .check_inputs(&split_fields(&["N".into()]))
            .is_err());
    }

    #[test]
    fn law_names_parse_to_their_laws() {
        for (name, law) in LawName::NAMES.iter().zip(LawName::ALL) {
            assert_eq!(LawName::parse(name), Some(law));
        }
        assert_eq!(
            LawName::parse("chinchilla-huber"),
            Some(LawName::ChinchillaHuber)
        );
        assert_eq!(LawName::parse("gadre"), None);
    }

    #[test]
    fn protocol_names_parse_and_unknown_ones_are_refused() {
        for name in Protocol::NAMES {
            assert!(Protocol::parse(name).is_some(), "{name}");
        }
        assert_eq!(Protocol::parse("zero-shot"), Some(Protocol::ZeroShot));
        assert_eq!(Protocol::parse("leaderboard-v2"), None);
    }

    #[test]
    fn a_confidence_outside_zero_and_one_is_refused() {
        let settings = FitSettings {
            confidence: 1.5,
            ..FitSettings::default()
        };
        let err = settings.options().expect_err("refused").to_string();
        assert!(err.contains("--confidence 1.5"), "{err}");
    }
}
