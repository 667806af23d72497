//! Effective parameter size against a reference family: fit the family's mean task score as a
//! function of (N, D) ([`ReferenceFamilyLaw`]) and invert it at a reference token budget D₀.
//! The default family is Pythia (EleutherAI's published zero-shot lm-eval results), so
//! "N̂ = 1.2B" reads "scores like a Pythia of 1.2B parameters trained on D₀ tokens".

use serde::{Deserialize, Serialize};

use crate::densing::{estimate_density, DensityEstimate, LogisticLogSizeLaw, ReferenceFamilyLaw};
use crate::fit::{fit, FitOptions, FitReport, Point};
use crate::obsscaling::{FamilyName, LeaderboardModel, LeaderboardScore};
use crate::reference::{parse_pythia_csv, pythia_family_scores, OpenModel, PYTHIA_ZERO_SHOT_CSV};
use crate::LawError;

/// Tokens every final Pythia checkpoint saw (143,000 steps × 2,097,152 tokens).
pub const PYTHIA_TOKENS: f64 = 299_892_736_000.0;

/// Which law a reference family is fitted with, and so how a score is inverted to N̂.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceForm {
    /// [`ReferenceFamilyLaw`], score(N, D) over many checkpoints, read at D₀.
    #[default]
    SizeAndData,
    /// [`LogisticLogSizeLaw`], score(N) of one recipe (final checkpoints only), with the
    /// score's chance level as its floor; N̂ is read on the family's own token budget.
    LogisticLogSize {
        /// Chance-level score.
        floor: f64,
    },
}

/// The protocol of Pythia's published evaluations and of `lmdensity eval` (issue #6's route).
pub const ZERO_SHOT_PROTOCOL: &str = "lm-eval 0-shot acc (ARC-e, ARC-c, PIQA, WinoGrande)";

/// The protocol of the ObsScaling table.
pub const LEADERBOARD_PROTOCOL: &str =
    "Open LLM Leaderboard v1 (ARC-c 25-shot acc_norm, HellaSwag 10-shot acc_norm, WinoGrande 5-shot acc, MMLU 5-shot acc)";

/// A reference family fitted as score(N, D), or score(N) for a single-budget family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceFamily {
    /// Family name, e.g. `pythia`.
    pub name: String,
    /// Tasks whose mean score is the score.
    pub tasks: Vec<String>,
    /// Token budget D₀ at which N̂ is read off (for [`ReferenceForm::LogisticLogSize`]: the
    /// median budget of the family's models, for information; N̂ follows the family's recipe).
    pub d0: f64,
    /// The fit of the law to the family's models.
    pub fit: FitReport,
    /// The law (absent in analyses saved before it existed: score(N, D)).
    #[serde(default)]
    pub form: ReferenceForm,
    /// The evaluation protocol of the scores (absent in older analyses: 0-shot lm-eval).
    #[serde(default)]
    pub protocol: String,
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
            form: ReferenceForm::SizeAndData,
            protocol: ZERO_SHOT_PROTOCOL.into(),
        })
    }

    /// Fits a one-recipe family of the ObsScaling table on the leaderboard protocol: its
    /// rows' mean `score` against parameters, by [`LogisticLogSizeLaw`] with the score's chance
    /// level as the floor. Every row of the family must have the score and a parameter count.
    pub fn leaderboard(
        family: FamilyName,
        score: LeaderboardScore,
        rows: &[LeaderboardModel],
        options: &FitOptions,
    ) -> Result<Self, LawError> {
        let members: Vec<&LeaderboardModel> = rows
            .iter()
            .filter(|m| m.family == family.column_value())
            .collect();
        let mut points = Vec::with_capacity(members.len());
        for m in &members {
            let value = m.score(score).map_err(|missing| {
                LawError::BadInput(format!(
                    "reference {}: {} has no {} score",
                    family.name(),
                    m.name,
                    missing
                        .iter()
                        .map(|t| t.column())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let params = m.params.ok_or_else(|| {
                LawError::BadInput(format!(
                    "reference {}: {} has no parameter count",
                    family.name(),
                    m.name
                ))
            })?;
            points.push(Point::new(&m.name, vec![params], value));
        }
        let mut budgets: Vec<f64> = members.iter().filter_map(|m| m.tokens).collect();
        budgets.sort_by(f64::total_cmp);
        let law = LogisticLogSizeLaw {
            floor: score.chance(),
        };
        Ok(ReferenceFamily {
            name: family.name().into(),
            tasks: score.tasks().iter().map(|t| t.name().to_string()).collect(),
            d0: budgets.get(budgets.len() / 2).copied().unwrap_or(f64::NAN),
            fit: fit(&law, &points, options)?,
            form: law.form(),
            protocol: LEADERBOARD_PROTOCOL.into(),
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
        let invert = |theta: &[f64], s: f64| match self.form {
            ReferenceForm::SizeAndData => ReferenceFamilyLaw::effective_params(theta, s, d0),
            ReferenceForm::LogisticLogSize { floor } => {
                LogisticLogSizeLaw { floor }.effective_params(theta, s)
            }
        };
        estimate_density(
            label, &self.fit, &invert, score, stderr, params, seed, confidence,
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
    /// `month` when the table gives only the month (placed on the 15th); absent for a day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_precision: Option<crate::trend::DatePrecision>,
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
                    date_precision: None,
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
