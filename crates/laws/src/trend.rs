//! The density trend of the Densing Law: `ln ρ_max(t) = A·t + B` over release dates, with the
//! doubling time ln 2 / A. Fitted twice: on the per-date envelope (the densest model of each
//! release date, as the paper fits the maximum density) and on every model (plain OLS).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::fit::{fit, Bound, FitOptions, FitReport, Law, Parameter, Point};
use crate::LawError;

/// Day zero of the time axis: t = days since 2023-01-01.
pub fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default()
}

/// A release date as registries and tables write it: `YYYY-MM-DD`, or `YYYY-MM` (read as the
/// first of the month). A year alone, or anything else, is refused with the reason, so the
/// caller can report the row instead of guessing a date.
pub fn parse_release_date(text: &str) -> Result<NaiveDate, String> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day);
    }
    if let Ok(day) = NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d") {
        if text.len() == 7 {
            return Ok(day);
        }
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

/// The trend on the per-date envelope and on all models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendReport {
    /// Fit on the densest model of each release date.
    pub envelope: TrendFit,
    /// Fit on every model.
    pub all_models: TrendFit,
}

fn trend_fit(points: &[Point], options: &FitOptions) -> Result<TrendFit, LawError> {
    let fit = fit(&DensityTrendLaw, points, options)?;
    let a = &fit.parameters[0];
    let doubling_days_ci = match (a.ci_low, a.ci_high) {
        (Some(lo), Some(hi)) if lo > 0.0 || hi < 0.0 => {
            let (x, y) = (std::f64::consts::LN_2 / hi, std::f64::consts::LN_2 / lo);
            Some((x.min(y), x.max(y)))
        }
        _ => None,
    };
    Ok(TrendFit {
        slope_per_day: a.value,
        doubling_days: std::f64::consts::LN_2 / a.value,
        doubling_days_ci,
        fit,
    })
}

/// Fits the density trend. Needs at least two release dates; models with ρ ≤ 0 are refused.
pub fn density_trend(
    models: &[DatedDensity],
    options: &FitOptions,
) -> Result<TrendReport, LawError> {
    for m in models {
        if m.density.is_nan() || m.density <= 0.0 || !m.density.is_finite() {
            return Err(LawError::BadInput(format!(
                "{}: density {} is not positive; ln ρ is undefined",
                m.label, m.density
            )));
        }
    }
    let point = |m: &DatedDensity| {
        Point::new(
            &m.label,
            vec![(m.released - epoch()).num_days() as f64],
            m.density.ln(),
        )
    };
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
    Ok(TrendReport {
        envelope: trend_fit(&envelope, options)?,
        all_models: trend_fit(&all, options)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_parse_whole_and_month_dates_and_refuse_a_bare_year() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(parse_release_date("2024-11-26"), Ok(day(2024, 11, 26)));
        assert_eq!(parse_release_date("2024-11"), Ok(day(2024, 11, 1)));
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
}
