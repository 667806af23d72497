//! The ObsScaling table's rows placed on a reference family: each row's score, its N̂ and ρ
//! where the reference reaches it, and otherwise what stops it (no score, a score outside the
//! reference's reach, an N̂ beyond the extrapolation limit), with its release date and how
//! precisely it is known. Every row of the table comes out, placed or not. [`sensitivity`]
//! refits the all-models trend with another reference family, score, or rows left out.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::densing::DensityEstimate;
use crate::effective::ReferenceFamily;
use crate::fit::FitOptions;
use crate::obsscaling::{FamilyName, LeaderboardModel, LeaderboardScore};
use crate::trend::{all_models_trend, DatePrecision, DatedDensity};

/// Where a row landed on the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Placement {
    /// N̂ and ρ.
    Placed {
        /// The estimate.
        estimate: DensityEstimate,
    },
    /// The row lacks some of the score's tasks.
    NoScore {
        /// The missing tasks' columns.
        missing: Vec<String>,
    },
    /// The row has no parameter count.
    NoParams,
    /// The score is outside what the reference's fit can produce (at or below chance, or
    /// above its ceiling).
    Unreachable {
        /// Why.
        reason: String,
    },
    /// N̂ lies beyond the extrapolation limit.
    BeyondLimit {
        /// N̂ at the best fit.
        effective_params: f64,
        /// Why.
        reason: String,
    },
}

/// One row of the table on the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlacedRow {
    /// Model id.
    pub model: String,
    /// Family (`Model Family`).
    pub family: String,
    /// Parameters.
    pub params: Option<f64>,
    /// Its reference score, when it has every task.
    pub score: Option<f64>,
    /// Release date as written.
    pub date_text: String,
    /// The day it is placed on, when the date parses.
    pub released: Option<NaiveDate>,
    /// `day` or `month` (placed on the 15th), when the date parses.
    pub date_precision: Option<DatePrecision>,
    /// Why there is no usable date (blank, a year only, unparsable), when there is none.
    pub date_problem: Option<String>,
    /// Confidence of the date (`high`, `medium`, `low`, or empty).
    pub date_confidence: String,
    /// `instruction-tuned`, `moe`.
    pub flags: Vec<String>,
    /// What the reference made of it.
    pub placement: Placement,
}

impl PlacedRow {
    /// The estimate, when placed.
    pub fn estimate(&self) -> Option<&DensityEstimate> {
        match &self.placement {
            Placement::Placed { estimate } => Some(estimate),
            _ => None,
        }
    }

    /// Placed and dated: a point of the trend.
    pub fn dated(&self) -> Option<DatedDensity> {
        Some(DatedDensity {
            label: self.model.clone(),
            released: self.released?,
            density: self.estimate()?.density,
        })
    }

    /// Why the row is not a point of the trend, or `None` when it is one.
    pub fn left_out_because(&self) -> Option<String> {
        let score = self
            .score
            .map_or(String::new(), |s| format!(" (score {s:.4})"));
        match &self.placement {
            Placement::Placed { .. } => self
                .date_problem
                .as_ref()
                .map(|p| format!("undated: {p}; placed{score} but not on the time axis")),
            Placement::NoScore { missing } => Some(format!("no {} score", missing.join(", "))),
            Placement::NoParams => Some("no parameter count".into()),
            Placement::Unreachable { reason } => {
                Some(format!("reference cannot reach it: {reason}"))
            }
            Placement::BeyondLimit { reason, .. } => {
                Some(format!("reference cannot reach it{score}: {reason}"))
            }
        }
    }
}

/// Every row of `rows` on `family` (fitted on `score`), with N̂ accepted within
/// [N_min / `max_extrapolation`, `max_extrapolation` × N_max] of the reference models.
pub fn place_rows(
    family: &ReferenceFamily,
    score: LeaderboardScore,
    rows: &[LeaderboardModel],
    max_extrapolation: f64,
    seed: u64,
    confidence: f64,
) -> Vec<PlacedRow> {
    let sizes = family.fit.points.iter().map(|p| p.x[0]);
    let (n_min, n_max) = sizes.fold((f64::INFINITY, 0.0f64), |(lo, hi), n| {
        (lo.min(n), hi.max(n))
    });
    let (low, high) = (n_min / max_extrapolation, n_max * max_extrapolation);
    rows.iter()
        .map(|m| {
            let value = m.score(score);
            let placement = match (&value, m.params) {
                (Err(missing), _) => Placement::NoScore {
                    missing: missing.iter().map(|t| t.column().to_string()).collect(),
                },
                (Ok(_), None) => Placement::NoParams,
                (Ok(s), Some(params)) => match family.density(&m.name, *s, None, params, seed, confidence) {
                    Err(e) => Placement::Unreachable {
                        reason: e.to_string(),
                    },
                    Ok(e) if e.effective_params < low || e.effective_params > high => Placement::BeyondLimit {
                        effective_params: e.effective_params,
                        reason: format!(
                            "N̂ = {:.3e} is outside {max_extrapolation}× the reference's sizes ({:.3e} … {:.3e})",
                            e.effective_params, low, high
                        ),
                    },
                    Ok(estimate) => Placement::Placed { estimate },
                },
            };
            PlacedRow {
                model: m.name.clone(),
                family: m.family.clone(),
                params: m.params,
                score: value.ok(),
                date_text: m.date_text.clone(),
                released: m.released.as_ref().ok().map(|d| d.day),
                date_precision: m.released.as_ref().ok().map(|d| d.precision),
                date_problem: m.released.as_ref().err().cloned(),
                date_confidence: m.date_confidence.clone(),
                flags: m.flags.clone(),
                placement,
            }
        })
        .collect()
}

/// One variant of the trend's inputs, for the sensitivity table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// What differs from the default, in words.
    pub name: String,
    /// Reference family.
    pub family: FamilyName,
    /// Score definition.
    pub score: LeaderboardScore,
    /// Leave out rows whose date has confidence `low` (or none).
    pub drop_low_confidence: bool,
    /// Leave out rows whose date gives only the month.
    pub drop_month_dates: bool,
    /// Leave out rows flagged `instruction-tuned`.
    pub drop_instruction_tuned: bool,
    /// Leave out rows flagged `moe`.
    pub drop_moe: bool,
}

impl Variant {
    /// The default: `family` and `score` as given, every row kept.
    pub fn base(name: &str, family: FamilyName, score: LeaderboardScore) -> Self {
        Variant {
            name: name.into(),
            family,
            score,
            drop_low_confidence: false,
            drop_month_dates: false,
            drop_instruction_tuned: false,
            drop_moe: false,
        }
    }

    /// Whether a placed, dated row stays in this variant.
    fn keeps(&self, row: &PlacedRow) -> bool {
        !(self.drop_low_confidence && !matches!(row.date_confidence.as_str(), "high" | "medium")
            || self.drop_month_dates && row.date_precision == Some(DatePrecision::Month)
            || self.drop_instruction_tuned && row.flags.iter().any(|f| f == "instruction-tuned")
            || self.drop_moe && row.flags.iter().any(|f| f == "moe"))
    }

    /// The sensitivity table's variants around `family` and `score`: every other reference
    /// family, every other score, and each way of dropping rows.
    pub fn around(family: FamilyName, score: LeaderboardScore) -> Vec<Variant> {
        let mut out = vec![Variant::base("default", family, score)];
        for other in FamilyName::ALL.into_iter().filter(|f| *f != family) {
            out.push(Variant::base(
                &format!("reference {}", other.name()),
                other,
                score,
            ));
        }
        for other in LeaderboardScore::NAMES
            .iter()
            .filter_map(|n| LeaderboardScore::parse(n))
            .filter(|s| *s != score)
        {
            out.push(Variant::base(
                &format!("score {}", other.name()),
                family,
                other,
            ));
        }
        let drop = |name: &str, set: &dyn Fn(&mut Variant)| {
            let mut v = Variant::base(name, family, score);
            set(&mut v);
            v
        };
        out.push(drop("without low-confidence dates", &|v| {
            v.drop_low_confidence = true
        }));
        out.push(drop("without month-only dates", &|v| {
            v.drop_month_dates = true
        }));
        out.push(drop("without instruction-tuned rows", &|v| {
            v.drop_instruction_tuned = true
        }));
        out.push(drop("without MoE rows", &|v| v.drop_moe = true));
        out.push(drop(
            "without instruction-tuned, MoE or low-confidence rows",
            &|v| {
                v.drop_low_confidence = true;
                v.drop_instruction_tuned = true;
                v.drop_moe = true;
            },
        ));
        out
    }
}

/// The all-models trend of one variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensitivityRow {
    /// The variant.
    pub variant: Variant,
    /// Rows placed on the reference and dated, before the variant's drops.
    pub placed: usize,
    /// Models fitted.
    pub models: usize,
    /// All-models least squares: doubling time, its interval and R².
    pub doubling_days: Option<f64>,
    /// Its bootstrap interval.
    pub doubling_days_ci: Option<(f64, f64)>,
    /// R² of the fit.
    pub r2: Option<f64>,
    /// Theil–Sen's doubling time on the same models.
    pub robust_doubling_days: Option<f64>,
    /// Why there is no fit (the reference or the trend refused).
    pub refused: Option<String>,
}

/// The all-models trend for each variant: the variant's reference fitted, every row placed,
/// the variant's drops applied, least squares and Theil–Sen fitted.
pub fn sensitivity(
    rows: &[LeaderboardModel],
    variants: &[Variant],
    max_extrapolation: f64,
    options: &FitOptions,
) -> Vec<SensitivityRow> {
    variants
        .iter()
        .map(|variant| {
            let mut out = SensitivityRow {
                variant: variant.clone(),
                placed: 0,
                models: 0,
                doubling_days: None,
                doubling_days_ci: None,
                r2: None,
                robust_doubling_days: None,
                refused: None,
            };
            let family =
                match ReferenceFamily::leaderboard(variant.family, variant.score, rows, options) {
                    Ok(f) => f,
                    Err(e) => {
                        out.refused = Some(format!("reference: {e}"));
                        return out;
                    }
                };
            let placed = place_rows(
                &family,
                variant.score,
                rows,
                max_extrapolation,
                options.seed,
                options.confidence,
            );
            let dated: Vec<&PlacedRow> = placed.iter().filter(|r| r.dated().is_some()).collect();
            out.placed = dated.len();
            let kept: Vec<DatedDensity> = dated
                .into_iter()
                .filter(|r| variant.keeps(r))
                .filter_map(PlacedRow::dated)
                .collect();
            out.models = kept.len();
            match all_models_trend(&kept, options) {
                Ok((fit, robust)) => {
                    out.doubling_days = Some(fit.doubling_days);
                    out.doubling_days_ci = fit.doubling_days_ci;
                    out.r2 = Some(fit.fit.r2);
                    out.robust_doubling_days = Some(robust.doubling_days);
                }
                Err(e) => out.refused = Some(format!("trend: {e}")),
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::densing::LogisticLogSizeLaw;
    use crate::fit::Law;
    use crate::obsscaling::{shipped_table, Task};
    use crate::trend::{density_trend, epoch, ReleaseDate};

    fn options() -> FitOptions {
        FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        }
    }

    /// A row scoring `score` on each of the default tasks' chance-adjusted mean.
    fn row(name: &str, family: &str, params: f64, score: f64, day: i64) -> LeaderboardModel {
        // Equal offsets above each task's chance keep the mean at `score`.
        let tasks = LeaderboardScore::ArcHellaswagWinogrande.tasks();
        let offset = score - LeaderboardScore::ArcHellaswagWinogrande.chance();
        let scores: BTreeMap<Task, f64> = tasks.iter().map(|t| (*t, t.chance() + offset)).collect();
        LeaderboardModel {
            name: name.into(),
            family: family.into(),
            params: Some(params),
            tokens: Some(3e11),
            scores,
            date_text: String::new(),
            released: Ok(ReleaseDate {
                day: epoch() + chrono::Duration::days(day),
                precision: DatePrecision::Day,
            }),
            date_confidence: "high".into(),
            date_source: String::new(),
            flags: Vec::new(),
            corrections: Vec::new(),
        }
    }

    #[test]
    fn a_known_doubling_time_comes_back_through_the_reference() {
        let law = LogisticLogSizeLaw {
            floor: LeaderboardScore::ArcHellaswagWinogrande.chance(),
        };
        let theta = [0.9, 22.0];
        let mut rows: Vec<LeaderboardModel> = [7e7, 1.6e8, 4e8, 1e9, 1.4e9, 2.8e9, 6.9e9, 1.2e10]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                row(
                    &format!("ref-{i}"),
                    "Pythia",
                    n,
                    law.predict(&[n], &theta),
                    0,
                )
            })
            .collect();
        // Models whose effective size N̂ = ρ(t)·N with ρ doubling every 200 days.
        let doubling = 200.0;
        for i in 0..40i64 {
            let day = -400 + 25 * i;
            let n = [1e9, 2e9, 3e9][(i % 3) as usize];
            let rho = 0.5 * (std::f64::consts::LN_2 / doubling * day as f64).exp();
            let score = law.predict(&[rho * n], &theta);
            rows.push(row(&format!("m{i}"), "other", n, score, day));
        }
        let family = ReferenceFamily::leaderboard(
            FamilyName::Pythia,
            LeaderboardScore::ArcHellaswagWinogrande,
            &rows,
            &options(),
        )
        .expect("fits");
        let placed = place_rows(
            &family,
            LeaderboardScore::ArcHellaswagWinogrande,
            &rows,
            10.0,
            0,
            0.95,
        );
        assert_eq!(placed.len(), rows.len(), "every row comes out");
        let dated: Vec<DatedDensity> = placed
            .iter()
            .filter(|r| r.family == "other")
            .filter_map(PlacedRow::dated)
            .collect();
        assert_eq!(dated.len(), 40);
        let trend = density_trend(&dated, &options()).expect("trend");
        assert!(
            (trend.all_models.doubling_days / doubling - 1.0).abs() < 0.02,
            "{}",
            trend.all_models.doubling_days
        );
        let robust = trend.robust.expect("robust");
        assert!(
            (robust.doubling_days / doubling - 1.0).abs() < 0.02,
            "{}",
            robust.doubling_days
        );
    }

    #[test]
    fn unreachable_and_undated_rows_are_kept_with_their_score() {
        let table = shipped_table().expect("table");
        let score = LeaderboardScore::ArcHellaswagWinogrande;
        let family = ReferenceFamily::leaderboard(FamilyName::Pythia, score, &table, &options())
            .expect("fits");
        let placed = place_rows(&family, score, &table, 10.0, 0, 0.95);
        assert_eq!(placed.len(), table.len());
        for row in &placed {
            let why = row.left_out_because();
            match (&row.placement, row.released) {
                (Placement::Placed { .. }, Some(_)) => assert!(why.is_none()),
                (Placement::NoScore { .. }, _) => assert!(row.score.is_none() && why.is_some()),
                (Placement::Unreachable { .. } | Placement::BeyondLimit { .. }, _) => {
                    let why = why.expect("reason");
                    assert!(row.score.is_some() && why.contains("cannot reach"), "{why}");
                }
                _ => assert!(why.is_some(), "{}", row.model),
            }
        }
        // The reference's own models sit near ρ = 1: within a factor of two in the middle.
        for row in placed.iter().filter(|r| r.family == "Pythia") {
            let params = row.params.expect("params");
            if (3e8..5e9).contains(&params) {
                let rho = row.estimate().expect("placed").density;
                assert!((0.5..2.0).contains(&rho), "{}: {rho}", row.model);
            }
        }
        let variants = Variant::around(FamilyName::Pythia, score);
        let table_rows = sensitivity(&table, &variants[..1], 10.0, &options());
        let dated = placed.iter().filter(|r| r.dated().is_some()).count();
        assert_eq!(table_rows[0].models, dated);
        eprintln!("placed and dated: {dated} of {}", table.len());
    }
}
