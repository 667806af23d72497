//! What is fitted and what a fit reports: laws and their bounded parameters, observations,
//! fit options, and the report with its intervals, leave-one-out errors and band.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
