//! The density trend of the Densing Law: `ln ρ_max(t) = A·t + B` over release dates, with the
//! doubling time ln 2 / A. Fitted twice: on the per-date envelope (the densest model of each
//! release date, as the paper fits the maximum density) and on every model (plain OLS); on every
//! model robustly (Theil–Sen); and on every model before and after ChatGPT's release
//! (2022-11-30), the paper's split.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::fit::{fit, percentile, resample, Bound, FitOptions, FitReport, Law, Parameter, Point};
use crate::LawError;

/// Day zero of the time axis: t = days since 2023-01-01.
pub fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default()
}

/// How precisely a release date is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatePrecision {
    /// The day is known (`YYYY-MM-DD`).
    Day,
    /// Only the month is known (`YYYY-MM`): placed on the 15th, at most ±16 days off.
    Month,
}

/// A release date and how precisely it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseDate {
    /// The day the trend places the model on.
    pub day: NaiveDate,
    /// Whether that day was given or is the middle of the given month.
    pub precision: DatePrecision,
}

impl ReleaseDate {
    /// Parses `YYYY-MM-DD` (precision day) or `YYYY-MM` (placed mid-month, on the 15th:
    /// the expected position of a day drawn uniformly from the month, so month-only dates add
    /// no bias to the time axis). A year alone is refused: ±6 months is too coarse for a trend
    /// whose doubling time is months. Anything else is refused with the reason, so the caller
    /// can report the row instead of guessing a date.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(ReleaseDate {
                day,
                precision: DatePrecision::Day,
            });
        }
        if text.len() == 7 {
            if let Ok(day) = NaiveDate::parse_from_str(&format!("{text}-15"), "%Y-%m-%d") {
                return Ok(ReleaseDate {
                    day,
                    precision: DatePrecision::Month,
                });
            }
        }
        if text.is_empty() {
            return Err("no release date".into());
        }
        if text.len() == 4 && text.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "release date {text:?} gives only the year; write YYYY-MM or YYYY-MM-DD"
            ));
        }
        Err(format!(
            "release date {text:?} is not YYYY-MM-DD or YYYY-MM"
        ))
    }
}

/// A release date as registries and tables write it: `YYYY-MM-DD`, or `YYYY-MM` (placed on
/// the 15th, see [`ReleaseDate::parse`]). A year alone, or anything else, is refused with the
/// reason, so the caller can report the row instead of guessing a date.
pub fn parse_release_date(text: &str) -> Result<NaiveDate, String> {
    ReleaseDate::parse(text).map(|d| d.day)
}

/// `ln ρ = A·t + B`, t in days since [`epoch`]; parameters (A, B).
#[derive(Clone, Copy, Debug, Default)]
pub struct DensityTrendLaw;

const PARAMETERS: [Parameter; 2] = [
    Parameter::new("A", Bound::Free),
    Parameter::new("B", Bound::Free),
];

impl Law for DensityTrendLaw {
    fn name(&self) -> &str {
        "density-trend"
    }
    fn formula(&self) -> &str {
        "ln rho(t) = A * t + B  (t in days since 2023-01-01)"
    }
    fn inputs(&self) -> &[&'static str] {
        &["t"]
    }
    fn parameters(&self) -> &[Parameter] {
        &PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        t[0] * x[0] + t[1]
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        vec![vec![0.0, 0.0], vec![0.01, -1.0]]
    }
}

/// One model on the time axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatedDensity {
    /// Model name.
    pub label: String,
    /// Release date.
    pub released: NaiveDate,
    /// Density ρ.
    pub density: f64,
}

/// One trend fit and its doubling time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendFit {
    /// Slope A of ln ρ per day.
    pub slope_per_day: f64,
    /// Doubling time ln 2 / A in days (negative when density falls).
    pub doubling_days: f64,
    /// Interval for the doubling time from the bootstrap interval of A (when A's interval
    /// excludes zero).
    pub doubling_days_ci: Option<(f64, f64)>,
    /// The underlying fit (A, B with intervals, R², points).
    pub fit: FitReport,
}

/// A robust trend: the Theil–Sen slope (median of the slopes between every pair of models
/// released on different days), intercept median(ln ρ − A·t), with a bootstrap interval
/// (models resampled with replacement, the estimator recomputed on each resample).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustTrend {
    /// Estimator name (`theil-sen`).
    pub method: String,
    /// Models fitted.
    pub n_points: usize,
    /// Slope A of ln ρ per day.
    pub slope_per_day: f64,
    /// Bootstrap percentile interval of A.
    pub slope_ci: Option<(f64, f64)>,
    /// Intercept B (ln ρ at t = 0).
    pub intercept: f64,
    /// Doubling time ln 2 / A in days.
    pub doubling_days: f64,
    /// Interval of the doubling time from A's interval (when it excludes zero).
    pub doubling_days_ci: Option<(f64, f64)>,
    /// Resamples that gave a slope (of those drawn).
    pub resamples_used: usize,
}

/// The all-models fit on each side of a cutoff date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitTrend {
    /// Models released on or before this day are "before".
    pub cutoff: NaiveDate,
    /// Fit on the models released up to the cutoff, or why there is none.
    pub before: Result<TrendFit, String>,
    /// Fit on the models released after the cutoff, or why there is none.
    pub after: Result<TrendFit, String>,
}

/// The cutoff of the Densing Law's split: ChatGPT's release, 2022-11-30.
pub fn chatgpt_release() -> NaiveDate {
    NaiveDate::from_ymd_opt(2022, 11, 30).unwrap_or_default()
}

/// The trend on the per-date envelope and on all models (least squares), robustly on all
/// models, and on all models before and after [`chatgpt_release`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendReport {
    /// Fit on the densest model of each release date.
    pub envelope: TrendFit,
    /// Fit on every model.
    pub all_models: TrendFit,
    /// Theil–Sen on every model (absent in analyses saved before it existed).
    #[serde(default)]
    pub robust: Option<RobustTrend>,
    /// All-models fits before and after ChatGPT's release (absent in older analyses).
    #[serde(default)]
    pub split: Option<SplitTrend>,
}

/// The doubling-time interval ln 2 / A from an interval of A, when it excludes zero.
fn doubling_interval(ci: Option<(f64, f64)>) -> Option<(f64, f64)> {
    match ci {
        Some((lo, hi)) if lo > 0.0 || hi < 0.0 => {
            let (x, y) = (std::f64::consts::LN_2 / hi, std::f64::consts::LN_2 / lo);
            Some((x.min(y), x.max(y)))
        }
        _ => None,
    }
}

fn trend_fit(points: &[Point], options: &FitOptions) -> Result<TrendFit, LawError> {
    let fit = fit(&DensityTrendLaw, points, options)?;
    let a = &fit.parameters[0];
    Ok(TrendFit {
        slope_per_day: a.value,
        doubling_days: std::f64::consts::LN_2 / a.value,
        doubling_days_ci: doubling_interval(a.ci_low.zip(a.ci_high)),
        fit,
    })
}

/// Theil–Sen slope and intercept of `(t, y)` pairs; `None` when no two share no t.
fn theil_sen(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, &(t1, y1)) in points.iter().enumerate() {
        for &(t2, y2) in &points[i + 1..] {
            if t1 != t2 {
                slopes.push((y2 - y1) / (t2 - t1));
            }
        }
    }
    let slope = percentile(&slopes, 0.5)?;
    let offsets: Vec<f64> = points.iter().map(|&(t, y)| y - slope * t).collect();
    Some((slope, percentile(&offsets, 0.5)?))
}

/// [`RobustTrend`] of `points` (x = [t], y = ln ρ) with `options.bootstrap` resamples.
pub fn robust_trend(points: &[Point], options: &FitOptions) -> Result<RobustTrend, LawError> {
    let pairs: Vec<(f64, f64)> = points.iter().map(|p| (p.x[0], p.y)).collect();
    let (slope, intercept) = theil_sen(&pairs).ok_or_else(|| LawError::NoSpread {
        law: "theil-sen".into(),
        input: "release date".into(),
    })?;
    let samples: Vec<f64> = (0..options.bootstrap as u64)
        .filter_map(|b| theil_sen(&resample(&pairs, options.seed, b)).map(|(s, _)| s))
        .collect();
    let alpha = (1.0 - options.confidence) / 2.0;
    let slope_ci = percentile(&samples, alpha).zip(percentile(&samples, 1.0 - alpha));
    Ok(RobustTrend {
        method: "theil-sen".into(),
        n_points: points.len(),
        slope_per_day: slope,
        slope_ci,
        intercept,
        doubling_days: std::f64::consts::LN_2 / slope,
        doubling_days_ci: doubling_interval(slope_ci),
        resamples_used: samples.len(),
    })
}

fn point(m: &DatedDensity) -> Point {
    Point::new(
        &m.label,
        vec![(m.released - epoch()).num_days() as f64],
        m.density.ln(),
    )
}

/// The all-models least-squares and Theil–Sen fits only (for sensitivity tables).
pub fn all_models_trend(
    models: &[DatedDensity],
    options: &FitOptions,
) -> Result<(TrendFit, RobustTrend), LawError> {
    check_positive(models)?;
    let all: Vec<Point> = models.iter().map(point).collect();
    Ok((trend_fit(&all, options)?, robust_trend(&all, options)?))
}

fn check_positive(models: &[DatedDensity]) -> Result<(), LawError> {
    for m in models {
        if m.density.is_nan() || m.density <= 0.0 || !m.density.is_finite() {
            return Err(LawError::BadInput(format!(
                "{}: density {} is not positive; ln ρ is undefined",
                m.label, m.density
            )));
        }
    }
    Ok(())
}

/// Fits the density trend. Needs at least two release dates; models with ρ ≤ 0 are refused.
pub fn density_trend(
    models: &[DatedDensity],
    options: &FitOptions,
) -> Result<TrendReport, LawError> {
    check_positive(models)?;
    let all: Vec<Point> = models.iter().map(point).collect();
    let mut envelope: Vec<&DatedDensity> = Vec::new();
    for m in models {
        match envelope.iter_mut().find(|e| e.released == m.released) {
            Some(e) if e.density < m.density => *e = m,
            Some(_) => {}
            None => envelope.push(m),
        }
    }
    envelope.sort_by_key(|m| m.released);
    let envelope: Vec<Point> = envelope.into_iter().map(point).collect();
    let cutoff = (chatgpt_release() - epoch()).num_days() as f64;
    let side = |keep: &dyn Fn(f64) -> bool| {
        let points: Vec<Point> = all.iter().filter(|p| keep(p.x[0])).cloned().collect();
        trend_fit(&points, options).map_err(|e| format!("{} model(s): {e}", points.len()))
    };
    let split = SplitTrend {
        cutoff: chatgpt_release(),
        before: side(&|t| t <= cutoff),
        after: side(&|t| t > cutoff),
    };
    Ok(TrendReport {
        envelope: trend_fit(&envelope, options)?,
        robust: Some(robust_trend(&all, options)?),
        all_models: trend_fit(&all, options)?,
        split: Some(split),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_parse_whole_and_month_dates_and_refuse_a_bare_year() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(parse_release_date("2024-11-26"), Ok(day(2024, 11, 26)));
        assert_eq!(parse_release_date("2024-11"), Ok(day(2024, 11, 15)));
        assert_eq!(
            ReleaseDate::parse("2024-11").map(|d| d.precision),
            Ok(DatePrecision::Month)
        );
        assert_eq!(
            ReleaseDate::parse("2024-11-26").map(|d| d.precision),
            Ok(DatePrecision::Day)
        );
        assert!(ReleaseDate::parse("2024-13").is_err());
        let year = parse_release_date("2024").expect_err("a year alone");
        assert!(year.contains("only the year"), "{year}");
        assert!(parse_release_date("2024-1").is_err());
        assert!(parse_release_date("").is_err());
        assert!(parse_release_date("Nov 2024").is_err());
    }

    #[test]
    fn recovers_a_known_doubling_time_and_refuses_one_date() {
        let days = [0i64, 60, 150, 200, 320, 400, 510, 600];
        let models: Vec<DatedDensity> = days
            .iter()
            .enumerate()
            .map(|(i, &d)| DatedDensity {
                label: format!("m{i}"),
                released: epoch() + chrono::Duration::days(d),
                density: (std::f64::consts::LN_2 / 95.0 * d as f64 - 2.0
                    + if i % 2 == 0 { 0.05 } else { -0.05 })
                .exp(),
            })
            .collect();
        let options = FitOptions {
            bootstrap: 300,
            ..FitOptions::default()
        };
        let report = density_trend(&models, &options).expect("fits");
        assert!(
            (report.all_models.doubling_days - 95.0).abs() < 5.0,
            "{}",
            report.all_models.doubling_days
        );
        let (lo, hi) = report.all_models.doubling_days_ci.expect("ci");
        assert!(lo < 95.0 && 95.0 < hi);

        let same_day: Vec<DatedDensity> = models
            .iter()
            .map(|m| DatedDensity {
                released: epoch(),
                ..m.clone()
            })
            .collect();
        assert!(matches!(
            density_trend(&same_day, &options),
            Err(LawError::TooFewPoints { .. } | LawError::NoSpread { .. })
        ));
    }

    fn dated(days: &[i64], ln_rho: impl Fn(usize, i64) -> f64) -> Vec<DatedDensity> {
        days.iter()
            .enumerate()
            .map(|(i, &d)| DatedDensity {
                label: format!("m{i}"),
                released: epoch() + chrono::Duration::days(d),
                density: ln_rho(i, d).exp(),
            })
            .collect()
    }

    #[test]
    fn theil_sen_holds_a_known_slope_against_outliers_that_pull_least_squares() {
        let days: Vec<i64> = (0..30).map(|i| 20 * i).collect();
        let slope = std::f64::consts::LN_2 / 150.0;
        // Every fifth model (the latest ones included) sits far below the line.
        let models = dated(&days, |i, d| {
            let outlier = if i % 5 == 4 {
                -3.0 * (i as f64 / 30.0)
            } else {
                0.0
            };
            slope * d as f64 + if i % 2 == 0 { 0.02 } else { -0.02 } + outlier
        });
        let options = FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        };
        let report = density_trend(&models, &options).expect("fits");
        let robust = report.robust.expect("robust");
        assert!(
            (robust.doubling_days / 150.0 - 1.0).abs() < 0.05,
            "{}",
            robust.doubling_days
        );
        let ols = report.all_models.doubling_days;
        assert!(
            (ols / 150.0 - 1.0).abs() > (robust.doubling_days / 150.0 - 1.0).abs(),
            "{ols}"
        );
        let (lo, hi) = robust.doubling_days_ci.expect("ci");
        assert!(lo < robust.doubling_days && robust.doubling_days < hi);
    }

    #[test]
    fn the_split_separates_a_flat_era_from_a_rising_one() {
        let cutoff = (chatgpt_release() - epoch()).num_days();
        let days: Vec<i64> = (0..40).map(|i| cutoff - 600 + 30 * i).collect();
        let slope = std::f64::consts::LN_2 / 120.0;
        let models = dated(&days, |i, d| {
            let noise = if i % 2 == 0 { 0.03 } else { -0.03 };
            noise
                + if d <= cutoff {
                    0.0
                } else {
                    slope * (d - cutoff) as f64
                }
        });
        let options = FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        };
        let split = density_trend(&models, &options)
            .expect("fits")
            .split
            .expect("split");
        let after = split.after.expect("after");
        assert!(
            (after.doubling_days / 120.0 - 1.0).abs() < 0.05,
            "{}",
            after.doubling_days
        );
        let before = split.before.expect("before");
        assert!(
            before.slope_per_day.abs() < slope / 10.0,
            "{}",
            before.slope_per_day
        );
        let few = dated(&days[..3], |_, d| d as f64 * slope);
        let split = density_trend(&few, &options)
            .expect("fits")
            .split
            .expect("split");
        assert!(
            split.after.is_err(),
            "no model after the cutoff is reported, not fitted"
        );
    }
}
