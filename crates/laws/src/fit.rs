//! The fitting engine: nonlinear least squares by Levenberg–Marquardt (the MINPACK algorithm
//! that scipy's `curve_fit` also runs, from the `levenberg-marquardt` crate), started from a
//! grid of initial guesses, with parameter bounds, R², leave-one-out prediction error and
//! seeded bootstrap confidence intervals.
//!
//! Every law implements [`Law`]; [`fit`] refuses data it cannot determine the law from
//! (fewer points than parameters, no spread in an input, non-finite values) with a
//! [`LawError`] that says what is missing.

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::LawError;

/// Where a parameter may lie. Bounds are enforced by reparametrisation (the optimiser works on
/// an unconstrained variable), so a fitted value can approach a bound but never cross it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Bound {
    /// Any real value.
    Free,
    /// Strictly positive (fitted as `exp(u)`).
    Positive,
    /// Strictly negative (fitted as `-exp(u)`).
    Negative,
    /// Strictly between the two values (fitted through a logistic map); a start on a bound is
    /// moved just inside.
    Between(f64, f64),
}

impl Bound {
    /// The unconstrained variable for an external value, or `None` outside the bound.
    pub fn to_internal(self, value: f64) -> Option<f64> {
        let internal = match self {
            Bound::Free => value,
            Bound::Positive if value > 0.0 => value.ln(),
            Bound::Negative if value < 0.0 => (-value).ln(),
            Bound::Between(low, high) if value >= low && value <= high => {
                // A value on the bound (a previous fit that converged onto it) starts just inside.
                let t = ((value - low) / (high - low)).clamp(1e-12, 1.0 - 1e-12);
                (t / (1.0 - t)).ln()
            }
            _ => return None,
        };
        internal.is_finite().then_some(internal)
    }

    /// The external value of an unconstrained variable.
    pub fn to_external(self, internal: f64) -> f64 {
        match self {
            Bound::Free => internal,
            Bound::Positive => internal.exp(),
            Bound::Negative => -internal.exp(),
            Bound::Between(low, high) => low + (high - low) / (1.0 + (-internal).exp()),
        }
    }
}

/// One parameter of a law: its name as the paper writes it and its bound.
#[derive(Clone, Copy, Debug)]
pub struct Parameter {
    /// Name, e.g. `"alpha"`.
    pub name: &'static str,
    /// Admissible range.
    pub bound: Bound,
}

impl Parameter {
    /// A parameter named `name` within `bound`.
    pub const fn new(name: &'static str, bound: Bound) -> Self {
        Parameter { name, bound }
    }
}

/// A parametric law `y = f(x; θ)` the engine can fit.
pub trait Law: Sync {
    /// Short name, e.g. `"gadre-error"`.
    fn name(&self) -> &str;
    /// The formula in the paper's notation.
    fn formula(&self) -> &str;
    /// Names of the input columns of `x`, e.g. `["N", "D"]`.
    fn inputs(&self) -> &[&'static str];
    /// Parameters in the order `predict` takes them.
    fn parameters(&self) -> &[Parameter];
    /// The law's value at `x` for parameters `theta`.
    fn predict(&self, x: &[f64], theta: &[f64]) -> f64;
    /// Initial guesses (external values) for the multi-start search.
    fn starts(&self) -> Vec<Vec<f64>>;
}

/// A law with other initial guesses (e.g. from a grid search that ran first).
pub struct WithStarts<'a> {
    /// The law.
    pub law: &'a dyn Law,
    /// Its initial guesses.
    pub starts: Vec<Vec<f64>>,
}

impl Law for WithStarts<'_> {
    fn name(&self) -> &str {
        self.law.name()
    }
    fn formula(&self) -> &str {
        self.law.formula()
    }
    fn inputs(&self) -> &[&'static str] {
        self.law.inputs()
    }
    fn parameters(&self) -> &[Parameter] {
        self.law.parameters()
    }
    fn predict(&self, x: &[f64], theta: &[f64]) -> f64 {
        self.law.predict(x, theta)
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        self.starts.clone()
    }
}

/// One observation: inputs `x` (in the law's input order), the measured `y`, and a label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// What was measured, e.g. a model name.
    pub label: String,
    /// Inputs, in the order of [`Law::inputs`].
    pub x: Vec<f64>,
    /// Measured value.
    pub y: f64,
}

impl Point {
    /// A point from a label, inputs and value.
    pub fn new(label: impl Into<String>, x: Vec<f64>, y: f64) -> Self {
        Point {
            label: label.into(),
            x,
            y,
        }
    }
}

/// On which scale residuals are measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualScale {
    /// `y − f(x)`: what scipy's `curve_fit` minimises.
    #[default]
    Absolute,
    /// `ln y − ln f(x)`: for losses spanning a wide range.
    Log,
}

/// Settings of a fit.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Bootstrap resamples for confidence intervals (0 = none).
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
    /// Two-sided confidence level of the intervals, e.g. 0.95.
    pub confidence: f64,
    /// Residual scale.
    pub residual: ResidualScale,
    /// Whether to compute leave-one-out prediction errors.
    pub leave_one_out: bool,
    /// Function-evaluation budget per Levenberg–Marquardt run.
    pub max_evaluations: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            bootstrap: 1000,
            seed: 0,
            confidence: 0.95,
            residual: ResidualScale::Absolute,
            leave_one_out: true,
            max_evaluations: 10_000,
        }
    }
}

/// A fitted parameter with its bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParameterEstimate {
    /// Parameter name.
    pub name: String,
    /// Best-fit value.
    pub value: f64,
    /// Lower end of the bootstrap percentile interval.
    pub ci_low: Option<f64>,
    /// Upper end of the bootstrap percentile interval.
    pub ci_high: Option<f64>,
}

/// How the bootstrap went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSummary {
    /// Resamples drawn.
    pub resamples: usize,
    /// Resamples that were non-degenerate and converged (the intervals use these).
    pub usable: usize,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Seed.
    pub seed: u64,
}

/// One leave-one-out prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutPrediction {
    /// Label of the held-out point.
    pub label: String,
    /// Its measured value.
    pub actual: f64,
    /// The value predicted by a fit without it.
    pub predicted: f64,
}

/// Leave-one-out prediction error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaveOneOut {
    /// Root mean squared prediction error.
    pub rmse: f64,
    /// Mean of |predicted − actual| / |actual|.
    pub mean_abs_relative_error: f64,
    /// Every prediction (points whose removal left a degenerate fit are absent).
    pub predictions: Vec<HeldOutPrediction>,
}

/// One point of a fitted curve with its pointwise bootstrap percentile interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandPoint {
    /// The input.
    pub x: f64,
    /// The law at `x` with the best-fit parameters.
    pub y: f64,
    /// Lower percentile of the law at `x` over the bootstrap parameter vectors.
    pub low: f64,
    /// Upper percentile.
    pub high: f64,
}

/// Points of the band [`fit_with`] stores for one-input laws.
pub const BAND_POINTS: usize = 81;

/// The curve of a one-input `law` at `theta` over the points' range (5% margin each side),
/// with the `confidence` percentile band of the `replicates`; `None` for several inputs or
/// no usable replicates.
pub fn prediction_band(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    replicates: &[Vec<f64>],
    confidence: f64,
) -> Option<Vec<BandPoint>> {
    if law.inputs().len() != 1 || replicates.is_empty() || points.is_empty() {
        return None;
    }
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.x[0]), b.max(p.x[0]))
        });
    let margin = 0.05 * (hi - lo);
    let (lo, hi) = (lo - margin, hi + margin);
    let alpha = (1.0 - confidence) / 2.0;
    let band = (0..BAND_POINTS)
        .filter_map(|i| {
            let x = lo + (hi - lo) * i as f64 / (BAND_POINTS - 1) as f64;
            let values: Vec<f64> = replicates.iter().map(|t| law.predict(&[x], t)).collect();
            Some(BandPoint {
                x,
                y: law.predict(&[x], theta),
                low: percentile(&values, alpha)?,
                high: percentile(&values, 1.0 - alpha)?,
            })
        })
        .collect();
    Some(band)
}

/// The result of a fit: parameters with intervals, goodness of fit, and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Law name.
    pub law: String,
    /// Law formula.
    pub formula: String,
    /// How it was fitted (optimiser and objective).
    pub method: String,
    /// Input names.
    pub inputs: Vec<String>,
    /// Fitted parameters.
    pub parameters: Vec<ParameterEstimate>,
    /// Number of points fitted.
    pub n_points: usize,
    /// Residual sum of squares (on the residual scale).
    pub rss: f64,
    /// Root mean squared residual.
    pub rmse: f64,
    /// Coefficient of determination on the absolute scale.
    pub r2: f64,
    /// Residual scale minimised.
    pub residual_scale: ResidualScale,
    /// Initial guesses tried.
    pub starts_tried: usize,
    /// Initial guesses whose run converged.
    pub starts_converged: usize,
    /// Bootstrap summary, when requested.
    pub bootstrap: Option<BootstrapSummary>,
    /// Leave-one-out errors, when requested and possible.
    pub leave_one_out: Option<LeaveOneOut>,
    /// The points fitted.
    pub points: Vec<Point>,
    /// For one-input laws with a bootstrap: the fitted curve and its pointwise bootstrap
    /// percentile band over the range of the points (what a plot draws as the CI band).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<Vec<BandPoint>>,
    /// Parameter vectors of the usable bootstrap resamples (for propagating uncertainty; not
    /// serialised: the intervals above summarise them).
    #[serde(skip)]
    pub bootstrap_parameters: Vec<Vec<f64>>,
}

impl FitReport {
    /// Best-fit parameter values in the law's order.
    pub fn values(&self) -> Vec<f64> {
        self.parameters.iter().map(|p| p.value).collect()
    }

    /// The best-fit value of the named parameter.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.parameters
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value)
    }
}

/// The least-squares problem handed to the optimiser, in unconstrained variables.
struct Problem<'a> {
    law: &'a dyn Law,
    points: &'a [Point],
    internal: DVector<f64>,
    scale: ResidualScale,
}

impl Problem<'_> {
    fn external(&self, internal: &DVector<f64>) -> Vec<f64> {
        self.law
            .parameters()
            .iter()
            .zip(internal.iter())
            .map(|(p, &u)| p.bound.to_external(u))
            .collect()
    }

    fn residuals_at(&self, internal: &DVector<f64>) -> Option<DVector<f64>> {
        let theta = self.external(internal);
        residuals(self.law, self.points, &theta, self.scale).map(DVector::from_vec)
    }
}

/// Residuals of `points` under `theta`; `None` when the law is not finite there.
fn residuals(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    scale: ResidualScale,
) -> Option<Vec<f64>> {
    points
        .iter()
        .map(|p| {
            let f = law.predict(&p.x, theta);
            let r = match scale {
                ResidualScale::Absolute => p.y - f,
                ResidualScale::Log => p.y.ln() - f.ln(),
            };
            r.is_finite().then_some(r)
        })
        .collect()
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.internal.copy_from(x);
    }

    fn params(&self) -> DVector<f64> {
        self.internal.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        self.residuals_at(&self.internal)
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        // Central differences in the unconstrained variables.
        let m = self.points.len();
        let n = self.internal.len();
        let mut jacobian = DMatrix::zeros(m, n);
        for j in 0..n {
            let h = 1e-6 * self.internal[j].abs().max(1.0);
            let mut plus = self.internal.clone();
            plus[j] += h;
            let mut minus = self.internal.clone();
            minus[j] -= h;
            let rp = self.residuals_at(&plus)?;
            let rm = self.residuals_at(&minus)?;
            for i in 0..m {
                jacobian[(i, j)] = (rp[i] - rm[i]) / (2.0 * h);
            }
        }
        Some(jacobian)
    }
}

/// Finds the parameters of a law that best explain some points, from one initial guess.
pub trait Solver: Sync {
    /// The best parameters reachable from `start` (external values) and the objective there;
    /// `None` when the run fails or does not converge.
    fn solve(&self, law: &dyn Law, points: &[Point], start: &[f64]) -> Option<(Vec<f64>, f64)>;
    /// The residual scale the objective is measured on.
    fn residual_scale(&self) -> ResidualScale;
    /// How it fits, for reports (e.g. `levenberg-marquardt`).
    fn method(&self) -> &str;
}

/// Levenberg–Marquardt least squares (MINPACK's algorithm, as scipy's `curve_fit`).
#[derive(Clone, Copy, Debug)]
pub struct LeastSquares {
    /// Residual scale.
    pub residual: ResidualScale,
    /// Function-evaluation budget per run.
    pub max_evaluations: usize,
}

impl Solver for LeastSquares {
    fn solve(&self, law: &dyn Law, points: &[Point], start: &[f64]) -> Option<(Vec<f64>, f64)> {
        let internal: Option<Vec<f64>> = law
            .parameters()
            .iter()
            .zip(start)
            .map(|(p, &v)| p.bound.to_internal(v))
            .collect();
        let problem = Problem {
            law,
            points,
            internal: DVector::from_vec(internal?),
            scale: self.residual,
        };
        let solver = LevenbergMarquardt::new()
            .with_patience(self.max_evaluations.div_ceil(law.parameters().len() + 1));
        let (solved, report) = solver.minimize(problem);
        if !report.termination.was_successful() {
            return None;
        }
        let theta = solved.external(&solved.internal);
        let r = residuals(law, points, &theta, self.residual)?;
        let rss = r.iter().map(|v| v * v).sum::<f64>();
        (rss.is_finite() && theta.iter().all(|v| v.is_finite())).then_some((theta, rss))
    }

    fn residual_scale(&self) -> ResidualScale {
        self.residual
    }

    fn method(&self) -> &str {
        "levenberg-marquardt"
    }
}

/// Checks that `points` can determine `law`: enough points, finite values, spread in every input.
pub fn check_determined(
    law: &dyn Law,
    points: &[Point],
    scale: ResidualScale,
) -> Result<(), LawError> {
    let needed = law.parameters().len();
    if points.len() < needed {
        return Err(LawError::TooFewPoints {
            law: law.name().to_string(),
            needed,
            got: points.len(),
        });
    }
    for p in points {
        if p.x.len() != law.inputs().len() {
            return Err(LawError::BadInput(format!(
                "point {:?} has {} inputs; {} takes {} ({})",
                p.label,
                p.x.len(),
                law.name(),
                law.inputs().len(),
                law.inputs().join(", ")
            )));
        }
        if !p.y.is_finite() || p.x.iter().any(|v| !v.is_finite()) {
            return Err(LawError::BadInput(format!(
                "point {:?} has a non-finite value (x = {:?}, y = {})",
                p.label, p.x, p.y
            )));
        }
        if scale == ResidualScale::Log && p.y <= 0.0 {
            return Err(LawError::BadInput(format!(
                "point {:?} has y = {} but log residuals need y > 0",
                p.label, p.y
            )));
        }
    }
    for (column, name) in law.inputs().iter().enumerate() {
        if distinct(points.iter().map(|p| p.x[column])) < 2 {
            return Err(LawError::NoSpread {
                law: law.name().to_string(),
                input: name.to_string(),
            });
        }
    }
    Ok(())
}

fn distinct(values: impl Iterator<Item = f64>) -> usize {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len()
}

/// Best of several runs: every start of the law plus `extra_starts`. Returns
/// (parameters, rss, starts tried, starts converged).
fn multi_start(
    law: &dyn Law,
    points: &[Point],
    starts: &[Vec<f64>],
    solver: &dyn Solver,
) -> (Option<(Vec<f64>, f64)>, usize, usize) {
    let mut best: Option<(Vec<f64>, f64)> = None;
    let mut converged = 0;
    for start in starts {
        if let Some((theta, rss)) = solver.solve(law, points, start) {
            converged += 1;
            if best.as_ref().is_none_or(|(_, b)| rss < *b) {
                best = Some((theta, rss));
            }
        }
    }
    (best, starts.len(), converged)
}

/// Fits `law` to `points`: multi-start Levenberg–Marquardt, then leave-one-out and bootstrap
/// as `options` ask.
pub fn fit(law: &dyn Law, points: &[Point], options: &FitOptions) -> Result<FitReport, LawError> {
    let solver = LeastSquares {
        residual: options.residual,
        max_evaluations: options.max_evaluations,
    };
    fit_with(law, points, options, &solver)
}

/// Fits `law` to `points` with `solver` from every start of the law, keeping the best; then
/// leave-one-out (warm-started from the best fit) and bootstrap as `options` ask.
pub fn fit_with(
    law: &dyn Law,
    points: &[Point],
    options: &FitOptions,
    solver: &dyn Solver,
) -> Result<FitReport, LawError> {
    let scale = solver.residual_scale();
    check_determined(law, points, scale)?;
    let (best, starts_tried, starts_converged) = multi_start(law, points, &law.starts(), solver);
    let Some((theta, rss)) = best else {
        return Err(LawError::NotConverged {
            law: law.name().to_string(),
            detail: format!("none of {starts_tried} starting points converged"),
        });
    };
    let n = points.len();
    let mean = points.iter().map(|p| p.y).sum::<f64>() / n as f64;
    let tss = points.iter().map(|p| (p.y - mean).powi(2)).sum::<f64>();
    let rss_absolute = points
        .iter()
        .map(|p| (p.y - law.predict(&p.x, &theta)).powi(2))
        .sum::<f64>();
    let r2 = if tss > 0.0 {
        1.0 - rss_absolute / tss
    } else {
        f64::NAN
    };

    let leave_one_out = options
        .leave_one_out
        .then(|| leave_one_out(law, points, &theta, solver))
        .flatten();
    let replicates = bootstrap(law, points, &theta, options, solver);
    let alpha = (1.0 - options.confidence) / 2.0;
    let parameters = law
        .parameters()
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let column: Vec<f64> = replicates.iter().map(|r| r[j]).collect();
            ParameterEstimate {
                name: p.name.to_string(),
                value: theta[j],
                ci_low: percentile(&column, alpha),
                ci_high: percentile(&column, 1.0 - alpha),
            }
        })
        .collect();
    Ok(FitReport {
        law: law.name().to_string(),
        formula: law.formula().to_string(),
        method: solver.method().to_string(),
        inputs: law.inputs().iter().map(|s| s.to_string()).collect(),
        parameters,
        n_points: n,
        rss,
        rmse: (rss / n as f64).sqrt(),
        r2,
        residual_scale: scale,
        starts_tried,
        starts_converged,
        bootstrap: (options.bootstrap > 0).then_some(BootstrapSummary {
            resamples: options.bootstrap,
            usable: replicates.len(),
            confidence: options.confidence,
            seed: options.seed,
        }),
        leave_one_out,
        band: prediction_band(law, points, &theta, &replicates, options.confidence),
        points: points.to_vec(),
        bootstrap_parameters: replicates,
    })
}

fn leave_one_out(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    solver: &dyn Solver,
) -> Option<LeaveOneOut> {
    let mut predictions = Vec::new();
    for i in 0..points.len() {
        let rest: Vec<Point> = points
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.clone())
            .collect();
        if check_determined(law, &rest, solver.residual_scale()).is_err() {
            continue;
        }
        if let Some((fitted, _)) = solver.solve(law, &rest, theta) {
            predictions.push(HeldOutPrediction {
                label: points[i].label.clone(),
                actual: points[i].y,
                predicted: law.predict(&points[i].x, &fitted),
            });
        }
    }
    if predictions.is_empty() {
        return None;
    }
    let k = predictions.len() as f64;
    let rmse = (predictions
        .iter()
        .map(|p| (p.predicted - p.actual).powi(2))
        .sum::<f64>()
        / k)
        .sqrt();
    let mean_abs_relative_error = predictions
        .iter()
        .map(|p| ((p.predicted - p.actual) / p.actual).abs())
        .sum::<f64>()
        / k;
    Some(LeaveOneOut {
        rmse,
        mean_abs_relative_error,
        predictions,
    })
}

/// Parameter vectors of the usable bootstrap resamples. Resample `b` draws from its own
/// ChaCha stream, so results do not depend on the thread count.
fn bootstrap(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    options: &FitOptions,
    solver: &dyn Solver,
) -> Vec<Vec<f64>> {
    if options.bootstrap == 0 {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(options.bootstrap);
    let chunks: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..options.bootstrap).step_by(threads).collect())
        .collect();
    let mut by_index: Vec<(usize, Vec<f64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|&b| {
                            let sample = resample(points, options.seed, b as u64);
                            check_determined(law, &sample, solver.residual_scale()).ok()?;
                            solver.solve(law, &sample, theta).map(|(t, _)| (b, t))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    by_index.sort_by_key(|(b, _)| *b);
    by_index.into_iter().map(|(_, t)| t).collect()
}

/// Resample `b` of `points` (with replacement), from stream `b` of the seeded generator.
pub fn resample<T: Clone>(items: &[T], seed: u64, b: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(b);
    (0..items.len())
        .map(|_| items[rng.random_range(0..items.len())].clone())
        .collect()
}

/// The `q`-quantile (linear interpolation) of `values`; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Line;
    impl Law for Line {
        fn name(&self) -> &str {
            "line"
        }
        fn formula(&self) -> &str {
            "y = a + b·x"
        }
        fn inputs(&self) -> &[&'static str] {
            &["x"]
        }
        fn parameters(&self) -> &[Parameter] {
            const PARAMETERS: [Parameter; 2] = [
                Parameter::new("a", Bound::Free),
                Parameter::new("b", Bound::Positive),
            ];
            &PARAMETERS
        }
        fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
            t[0] + t[1] * x[0]
        }
        fn starts(&self) -> Vec<Vec<f64>> {
            vec![vec![0.0, 1.0]]
        }
    }

    #[test]
    fn bounds_round_trip() {
        for (bound, v) in [
            (Bound::Free, -3.0),
            (Bound::Positive, 0.25),
            (Bound::Negative, -7.0),
            (Bound::Between(0.0, 1.0), 0.3),
        ] {
            let u = bound.to_internal(v).expect("inside");
            assert!((bound.to_external(u) - v).abs() < 1e-12);
        }
        assert_eq!(Bound::Positive.to_internal(-1.0), None);
        assert_eq!(Bound::Between(0.0, 1.0).to_internal(1.5), None);
        assert!(Bound::Between(0.0, 1.0).to_internal(1.0).is_some());
    }

    #[test]
    fn fits_a_line_exactly_with_r2_one() {
        let points: Vec<Point> = (0..6)
            .map(|i| Point::new(format!("p{i}"), vec![i as f64], 2.0 + 0.5 * i as f64))
            .collect();
        let report = fit(&Line, &points, &FitOptions::default()).expect("fits");
        assert!((report.values()[0] - 2.0).abs() < 1e-8);
        assert!((report.values()[1] - 0.5).abs() < 1e-8);
        assert!((report.r2 - 1.0).abs() < 1e-12);
        let loo = report.leave_one_out.expect("loo");
        assert!(loo.rmse < 1e-6);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_estimate() {
        let points: Vec<Point> = (0..12)
            .map(|i| {
                let noise = if i % 2 == 0 { 0.05 } else { -0.05 };
                Point::new(
                    format!("p{i}"),
                    vec![i as f64],
                    1.0 + 0.3 * i as f64 + noise,
                )
            })
            .collect();
        let options = FitOptions {
            bootstrap: 200,
            seed: 7,
            ..FitOptions::default()
        };
        let a = fit(&Line, &points, &options).expect("fits");
        let b = fit(&Line, &points, &options).expect("fits");
        assert_eq!(a, b);
        let slope = &a.parameters[1];
        let (lo, hi) = (slope.ci_low.expect("ci"), slope.ci_high.expect("ci"));
        assert!(
            lo < slope.value && slope.value < hi,
            "{lo} {} {hi}",
            slope.value
        );
        assert!(hi - lo < 0.05);
    }

    #[test]
    fn band_spans_the_points_and_brackets_the_curve() {
        let points: Vec<Point> = (0..12)
            .map(|i| {
                let noise = if i % 3 == 0 { 0.1 } else { -0.05 };
                Point::new(
                    format!("p{i}"),
                    vec![i as f64],
                    1.0 + 0.1 * i as f64 + noise,
                )
            })
            .collect();
        let options = FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        };
        let report = fit(&Line, &points, &options).expect("fits");
        let band = report.band.expect("one input with a bootstrap has a band");
        assert_eq!(band.len(), BAND_POINTS);
        assert!(
            (band[0].x - (-0.55)).abs() < 1e-12 && (band[BAND_POINTS - 1].x - 11.55).abs() < 1e-12
        );
        for p in &band {
            assert!(p.low <= p.y && p.y <= p.high, "{p:?}");
        }
        // Wider at the ends than in the middle, as a regression band is.
        let width = |p: &BandPoint| p.high - p.low;
        assert!(width(&band[0]) > width(&band[BAND_POINTS / 2]));
        let none = fit(
            &Line,
            &points,
            &FitOptions {
                bootstrap: 0,
                ..FitOptions::default()
            },
        )
        .expect("fits");
        assert!(none.band.is_none());
    }

    #[test]
    fn refuses_too_few_points_and_no_spread() {
        let one = vec![Point::new("a", vec![1.0], 1.0)];
        assert!(matches!(
            fit(&Line, &one, &FitOptions::default()),
            Err(LawError::TooFewPoints {
                needed: 2,
                got: 1,
                ..
            })
        ));
        let same_x = vec![
            Point::new("a", vec![1.0], 1.0),
            Point::new("b", vec![1.0], 2.0),
        ];
        assert!(matches!(
            fit(&Line, &same_x, &FitOptions::default()),
            Err(LawError::NoSpread { .. })
        ));
        let nan = vec![
            Point::new("a", vec![1.0], f64::NAN),
            Point::new("b", vec![2.0], 2.0),
        ];
        assert!(matches!(
            fit(&Line, &nan, &FitOptions::default()),
            Err(LawError::BadInput(_))
        ));
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.25), Some(1.25));
    }
}
