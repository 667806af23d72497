//! The fitting engine: nonlinear least squares by Levenberg–Marquardt (the MINPACK algorithm
//! that scipy's `curve_fit` also runs, from the `levenberg-marquardt` crate), started from a
//! grid of initial guesses, with parameter bounds, R², leave-one-out prediction error and
//! seeded bootstrap confidence intervals.
//!
//! Every law implements [`Law`]; [`fit`] refuses data it cannot determine the law from
//! (fewer points than parameters, no spread in an input, non-finite values) with a
//! [`LawError`](crate::LawError) that says what is missing.
//!
//! The module is in three parts: `law` (what is fitted and what a fit reports), `solver` (the
//! optimiser, the multi-start search and [`fit`] itself) and `resampling` (leave-one-out,
//! bootstrap, percentiles and prediction bands).

mod law;
mod resampling;
mod solver;

pub use law::{
    BandPoint, BootstrapSummary, Bound, FitOptions, FitReport, HeldOutPrediction, Law, LeaveOneOut,
    Parameter, ParameterEstimate, Point, ResidualScale, WithStarts,
};
pub use resampling::{percentile, prediction_band, resample, BAND_POINTS};
pub use solver::{check_determined, fit, fit_with, LeastSquares, Solver};

/// A law for the tests: a straight line with a positive slope.
#[cfg(test)]
mod testing {
    use super::{Bound, Law, Parameter};

    pub(super) struct Line;
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
}
