//! The optimiser: Levenberg–Marquardt on the law's unconstrained variables (the [`Solver`]
//! behind [`fit`]), the multi-start search, the checks that data determine a law, and [`fit`]
//! and [`fit_with`] themselves.

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};

use super::law::{
    BootstrapSummary, FitOptions, FitReport, Law, ParameterEstimate, Point, ResidualScale,
};
use super::resampling::{bootstrap, leave_one_out, percentile, prediction_band};
use crate::LawError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::testing::Line;

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
}
