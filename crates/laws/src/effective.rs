//! Effective parameter size against a reference family: fit the family's mean task score as a
//! function of (N, D) ([`ReferenceFamilyLaw`]) and invert it at a reference token budget D₀.
//! The default family is Pythia (EleutherAI's published zero-shot lm-eval results), so
//! "N̂ = 1.2B" reads "scores like a Pythia of 1.2B parameters trained on D₀ tokens".

use serde::{Deserialize, Serialize};

use crate::densing::{estimate_density, DensityEstimate, ReferenceFamilyLaw};
use crate::fit::{fit, FitOptions, FitReport, Point};
use crate::reference::{parse_pythia_csv, pythia_family_scores, OpenModel, PYTHIA_ZERO_SHOT_CSV};
use crate::LawError;

/// Tokens every final Pythia checkpoint saw (143,000 steps × 2,097,152 tokens).
pub const PYTHIA_TOKENS: f64 = 299_892_736_000.0;

/// A reference family fitted as score(N, D).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceFamily {
    /// Family name, e.g. `pythia`.
    pub name: String,
    /// Tasks whose mean zero-shot accuracy is the score.
    pub tasks: Vec<String>,
    /// Token budget D₀ at which N̂ is read off.
    pub d0: f64,
    /// The fit of [`ReferenceFamilyLaw`] to the family's checkpoints.
    pub fit: FitReport,
}

impl ReferenceFamily {
    /// Fits the Pythia family (standard Pile models, every evaluated checkpoint from
    /// `min_tokens` tokens on) on the mean zero-shot accuracy of `tasks`.
    pub fn pythia(
        tasks: &[&str],
        d0: f64,
        min_tokens: f64,
        options: &FitOptions,
    ) -> Result<Self, LawError> {
        let rows = parse_pythia_csv(PYTHIA_ZERO_SHOT_CSV, "pythia_zero_shot.csv")?;
        let scores = pythia_family_scores(&rows, tasks, "standard", min_tokens, false);
        if scores.is_empty() {
            return Err(LawError::BadInput(format!(
                "the Pythia reference has no zero-shot results for all of {}; available: \
                 lambada_openai, piqa, winogrande, arc_easy, arc_challenge, sciq",
                tasks.join(", ")
            )));
        }
        let points: Vec<Point> = scores
            .iter()
            .map(|s| Point::new(&s.label, vec![s.params, s.tokens], s.score))
            .collect();
        Ok(ReferenceFamily {
            name: "pythia".into(),
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            d0,
            fit: fit(&ReferenceFamilyLaw, &points, options)?,
        })
    }

    /// N̂ and ρ of a model scoring `score` (± `stderr`) with `params` parameters.
    pub fn density(
        &self,
        label: &str,
        score: f64,
        stderr: Option<f64>,
        params: f64,
        seed: u64,
        confidence: f64,
    ) -> Result<DensityEstimate, LawError> {
        let d0 = self.d0;
        estimate_density(
            label,
            &self.fit,
            &|theta, s| ReferenceFamilyLaw::effective_params(theta, s, d0),
            score,
            stderr,
            params,
            seed,
            confidence,
        )
    }

    /// N̂ and ρ of an open-models table row, from its published scores of this family's tasks.
    pub fn density_of(
        &self,
        model: &OpenModel,
        seed: u64,
        confidence: f64,
    ) -> Result<DensityEstimate, LawError> {
        let tasks: Vec<&str> = self.tasks.iter().map(String::as_str).collect();
        let score = model.mean_score(&tasks).ok_or_else(|| {
            LawError::BadInput(format!(
                "{}: the table has no score for some of {}",
                model.name,
                tasks.join(", ")
            ))
        })?;
        let params = model.params.ok_or_else(|| {
            LawError::BadInput(format!(
                "{}: the table gives no parameter count",
                model.name
            ))
        })?;
        self.density(&model.name, score, None, params, seed, confidence)
    }
}

/// The reference score of a model from its values (`<task>/acc` and `<task>/acc_stderr`, as
/// the results store aggregates them): the mean accuracy on `tasks`, and its standard error
/// combining the tasks' (independent samples) when every task has one. Missing accuracies are
/// named in the error.
pub fn mean_task_score(
    values: &std::collections::BTreeMap<String, f64>,
    tasks: &[&str],
) -> Result<(f64, Option<f64>), Vec<String>> {
    let missing: Vec<String> = tasks
        .iter()
        .map(|t| format!("{t}/acc"))
        .filter(|name| !values.contains_key(name))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let k = tasks.len() as f64;
    let score = tasks
        .iter()
        .map(|t| values[&format!("{t}/acc")])
        .sum::<f64>()
        / k;
    let stderr = tasks
        .iter()
        .map(|t| values.get(&format!("{t}/acc_stderr")).map(|se| se * se))
        .sum::<Option<f64>>()
        .map(|v| v.sqrt() / k);
    Ok((score, stderr))
}

/// An open-models row with its estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableEstimate {
    /// Release date, when the table gives one.
    pub released: Option<chrono::NaiveDate>,
    /// The estimate.
    pub estimate: DensityEstimate,
}

/// A row left out, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    /// Model name.
    pub name: String,
    /// Why it was left out.
    pub reason: String,
}

/// Estimates for the rows of an open-models table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDensities {
    /// Rows with an estimate.
    pub estimates: Vec<TableEstimate>,
    /// Rows without one.
    pub excluded: Vec<Excluded>,
}

impl ReferenceFamily {
    /// Largest parameter count among the reference points.
    pub fn largest_params(&self) -> f64 {
        self.fit.points.iter().map(|p| p.x[0]).fold(0.0, f64::max)
    }

    /// N̂ and ρ for every row of `models` whose protocol matches the reference's (0-shot
    /// accuracy on this family's tasks) and whose N̂ stays within `max_extrapolation` × the
    /// largest reference model. Every other row is listed in `excluded` with the reason.
    pub fn table_densities(
        &self,
        models: &[OpenModel],
        max_extrapolation: f64,
        seed: u64,
        confidence: f64,
    ) -> TableDensities {
        let limit = max_extrapolation * self.largest_params();
        let mut estimates = Vec::new();
        let mut excluded = Vec::new();
        for model in models {
            let exclude = |reason: String| Excluded {
                name: model.name.clone(),
                reason,
            };
            let tasks: Vec<&str> = self.tasks.iter().map(String::as_str).collect();
            if model.mean_score(&tasks).is_none() {
                excluded.push(exclude(format!(
                    "no score for some of {}",
                    self.tasks.join(", ")
                )));
                continue;
            }
            if !model.commonsense_zero_shot() {
                excluded.push(exclude(format!(
                    "protocol is not 0-shot accuracy on {}: {}",
                    self.tasks.join("/"),
                    model.eval_protocol.chars().take(90).collect::<String>()
                )));
                continue;
            }
            match self.density_of(model, seed, confidence) {
                Ok(estimate) if estimate.effective_params > limit => excluded.push(exclude(format!(
                    "N̂ = {:.3e} extrapolates beyond {max_extrapolation} × the largest reference model ({:.3e})",
                    estimate.effective_params,
                    self.largest_params()
                ))),
                Ok(estimate) => estimates.push(TableEstimate {
                    released: model.released,
                    estimate,
                }),
                Err(e) => excluded.push(exclude(e.to_string())),
            }
        }
        TableDensities {
            estimates,
            excluded,
        }
    }
}
