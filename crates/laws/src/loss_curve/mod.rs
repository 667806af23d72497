//! Loss-curve laws: the training loss of one run as a function of its learning-rate schedule,
//! fitted to the curve (or curves) seen so far and used to predict the rest.
//!
//! Two laws ([`CurveLawName`]): the Multi-Power Law of Luo et al. 2025 ([`mpl`]) and the
//! earlier law of Tissue et al. 2024 ([`tissue`]). Both need the learning rate of every step,
//! which [`schedule`] rebuilds from a schedule's name or from the CSV's logged `lr` column.
//! Both are fitted on the authors' objective (Huber loss, δ = 10⁻³, on ln L − ln L̂), by L-BFGS
//! from a grid of starts or, for the Multi-Power Law, by Luo et al.'s own early-stopped AdamW
//! ([`FitMethod`]; the engine is the private module `solver`). [`protocol`] runs Luo et al.'s
//! reproduction (fit on three curves, predict six) and the single-run question "where will
//! this run end?".
//!
//! Curves are read from CSV files with the columns `step,lr,loss` ([`read_curve`]); every
//! error names the file, row and column.

mod data;
mod fastmath;
pub mod mpl;
pub mod protocol;
pub mod schedule;
pub(crate) mod solver;
mod surrogate;
pub mod tissue;

use serde::{Deserialize, Serialize};

use crate::LawError;
pub use data::{parse_curve, read_curve, resolve_schedule, Curve, LoggedCurve};
use mpl::MultiPowerLaw;
use schedule::Schedule;
use solver::{Data, Model, Solution};
use tissue::TissueLaw;

/// The loss-curve laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveLawName {
    /// The Multi-Power Law (Luo et al. 2025), 7 parameters.
    Mpl,
    /// Tissue et al. 2024's law with learning-rate annealing, 4 parameters.
    Tissue,
}

impl CurveLawName {
    /// Every name [`CurveLawName::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["mpl", "tissue"];

    /// The law named `name` (`mpl`, `tissue`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mpl" => Some(CurveLawName::Mpl),
            "tissue" => Some(CurveLawName::Tissue),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            CurveLawName::Mpl => "mpl",
            CurveLawName::Tissue => "tissue",
        }
    }

    /// The paper it comes from.
    pub fn citation(self) -> &'static str {
        match self {
            CurveLawName::Mpl => "Multi-Power Law (Luo et al. 2025)",
            CurveLawName::Tissue => "Tissue et al. 2024",
        }
    }

    /// Parameter names in the order of θ.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            CurveLawName::Mpl => &mpl::PARAMETERS,
            CurveLawName::Tissue => &tissue::PARAMETERS,
        }
    }

    /// The formula.
    pub fn formula(self) -> &'static str {
        match self {
            CurveLawName::Mpl => MultiPowerLaw::FORMULA,
            CurveLawName::Tissue => TissueLaw::FORMULA,
        }
    }
}

/// How a law is fitted. Both minimise the authors' objective; they differ in where they stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMethod {
    /// Luo et al.'s own procedure, for the Multi-Power Law: their initialisation, then AdamW
    /// from (C, β, γ) = (1, 0.5, 0.5), early-stopped after at most 200 steps. Their published
    /// parameters come from it; it stops far from the optimum of the objective, near its start.
    AuthorsAdam,
    /// L-BFGS to convergence from a grid of starts: the optimum of the objective.
    Lbfgs,
}

impl FitMethod {
    /// What the method is, in a line.
    pub fn describe(self) -> &'static str {
        match self {
            FitMethod::AuthorsAdam => "the authors' protocol: surrogate grid initialisation, then AdamW (their learning rates and early stopping) on Huber(δ = 1e-3) of ln L − ln L̂",
            FitMethod::Lbfgs => "Huber(δ = 1e-3) of ln L − ln L̂ minimised by L-BFGS on ln θ from a grid of starts",
        }
    }
}

/// A fitted parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveParameter {
    /// Its name.
    pub name: String,
    /// Best-fit value.
    pub value: f64,
    /// Lower end of the bootstrap percentile interval, when one was drawn.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
}

/// A law fitted to one or more curves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveFit {
    /// The law.
    pub law: CurveLawName,
    /// Its formula.
    pub formula: String,
    /// How it was fitted.
    pub method: FitMethod,
    /// Fitted parameters.
    pub parameters: Vec<CurveParameter>,
    /// The authors' objective at the fit: Σ Huber_δ(ln L − ln L̂) over every point.
    pub objective: f64,
    /// Curves fitted.
    pub curves: Vec<String>,
    /// Points fitted.
    pub n_points: usize,
    /// Starts whose objective was evaluated.
    pub starts_tried: usize,
    /// Optimiser runs that ended finite.
    pub starts_converged: usize,
    /// Iterations (L-BFGS) or steps (AdamW) of the best run.
    pub iterations: u64,
}

impl CurveFit {
    /// Best-fit values in the law's order.
    pub fn values(&self) -> Vec<f64> {
        self.parameters.iter().map(|p| p.value).collect()
    }
}

/// L-BFGS iteration budget per start.
const MAX_ITERATIONS: u64 = 1000;

/// Refuses a fit with fewer points than parameters.
fn check_points(law: CurveLawName, curves: &[Curve]) -> Result<(), LawError> {
    let got: usize = curves.iter().map(|c| c.steps.len()).sum();
    let needed = law.parameters().len();
    if got < needed {
        return Err(LawError::TooFewPoints {
            law: law.name().into(),
            needed,
            got,
        });
    }
    Ok(())
}

/// A fit and how to refit a bootstrap resample the same way.
struct Fitted<'a, M: Model> {
    data: Data<'a, M>,
    best: Solution,
    fit: CurveFit,
    /// The start the authors' AdamW ran from (its resamples run from it too).
    start: Option<Vec<f64>>,
}

fn fit_model<'a, M: Model>(
    model: &'a M,
    law: CurveLawName,
    method: FitMethod,
    curves: &[Curve],
) -> Result<Fitted<'a, M>, LawError> {
    check_points(law, curves)?;
    let data = Data::new(model, curves);
    let failed = |tried: usize| LawError::NotConverged {
        law: law.name().into(),
        detail: format!("no optimiser run from {tried} start(s) ended finite"),
    };
    let (best, tried, ok, start) = match (method, law) {
        (FitMethod::AuthorsAdam, CurveLawName::Mpl) => {
            let start = MultiPowerLaw::authors_start(curves).ok_or_else(|| failed(0))?;
            let best = data
                .authors_adam(&start, &mpl::ADAM_LEARNING_RATES)
                .ok_or_else(|| failed(1))?;
            (best, 1, 1, Some(start))
        }
        (FitMethod::AuthorsAdam, CurveLawName::Tissue) => {
            return Err(LawError::BadInput(
                "the authors' AdamW protocol is defined for the Multi-Power Law only; fit tissue by L-BFGS".into(),
            ))
        }
        (FitMethod::Lbfgs, _) => {
            let (starts, keep) = match law {
                CurveLawName::Mpl => (MultiPowerLaw::starts(curves), 3),
                CurveLawName::Tissue => (TissueLaw::starts(curves), 12),
            };
            let (best, ok) = data
                .fit_from_starts(&starts, keep, MAX_ITERATIONS)
                .ok_or_else(|| failed(starts.len()))?;
            (best, starts.len(), ok, None)
        }
    };
    let fit = CurveFit {
        law,
        formula: law.formula().into(),
        method,
        parameters: law
            .parameters()
            .iter()
            .zip(&best.theta)
            .map(|(name, &value)| CurveParameter {
                name: (*name).into(),
                value,
                ci_low: None,
                ci_high: None,
            })
            .collect(),
        objective: best.objective,
        curves: curves.iter().map(|c| c.name.clone()).collect(),
        n_points: data.n_points(),
        starts_tried: tried,
        starts_converged: ok,
        iterations: best.iterations,
    };
    Ok(Fitted {
        data,
        best,
        fit,
        start,
    })
}

/// Fits `law` to `curves` together (one parameter set for all) by `method`.
pub fn fit_curves(
    law: CurveLawName,
    method: FitMethod,
    curves: &[Curve],
) -> Result<CurveFit, LawError> {
    Ok(match law {
        CurveLawName::Mpl => fit_model(&MultiPowerLaw, law, method, curves)?.fit,
        CurveLawName::Tissue => fit_model(&TissueLaw, law, method, curves)?.fit,
    })
}

/// The law with parameters `theta` at `steps` (≥ 1, below its length) of `schedule`.
pub fn predict(law: CurveLawName, theta: &[f64], schedule: &Schedule, steps: &[usize]) -> Vec<f64> {
    let curve = Curve {
        name: String::new(),
        schedule: schedule.clone(),
        steps: steps.to_vec(),
        losses: vec![1.0; steps.len()],
    };
    match law {
        CurveLawName::Mpl => {
            MultiPowerLaw
                .evaluate(&MultiPowerLaw.prepare(&curve), theta, false)
                .0
        }
        CurveLawName::Tissue => {
            TissueLaw
                .evaluate(&TissueLaw.prepare(&curve), theta, false)
                .0
        }
    }
}

/// Fits `law` to `curves` by `method`, then draws `resamples` moving-block bootstrap
/// resamples of the log residuals (blocks of ⌈√n⌉ points per curve) and refits each the same
/// way — AdamW from the same start, or L-BFGS warm-started from the fit — returning the fit
/// and the parameters of every usable refit.
pub fn fit_with_bootstrap(
    law: CurveLawName,
    method: FitMethod,
    curves: &[Curve],
    resamples: usize,
    seed: u64,
) -> Result<(CurveFit, Vec<Vec<f64>>), LawError> {
    fn run<M: Model>(
        model: &M,
        law: CurveLawName,
        method: FitMethod,
        curves: &[Curve],
        resamples: usize,
        seed: u64,
    ) -> Result<(CurveFit, Vec<Vec<f64>>), LawError> {
        let fitted = fit_model(model, law, method, curves)?;
        let theta = &fitted.best.theta;
        let replicates =
            fitted
                .data
                .bootstrap(theta, resamples, seed, |data| match &fitted.start {
                    Some(start) => data.authors_adam(start, &mpl::ADAM_LEARNING_RATES),
                    None => data.lbfgs(theta, 200),
                });
        Ok((fitted.fit, replicates))
    }
    match law {
        CurveLawName::Mpl => run(&MultiPowerLaw, law, method, curves, resamples, seed),
        CurveLawName::Tissue => run(&TissueLaw, law, method, curves, resamples, seed),
    }
}

/// How well predictions match a curve: the authors' five metrics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveMetrics {
    /// 1 − SS_res / SS_tot (scikit-learn's `r2_score`).
    pub r2: f64,
    /// Mean |L − L̂|.
    pub mae: f64,
    /// √(mean (L − L̂)²).
    pub rmse: f64,
    /// Mean |L − L̂| / L.
    pub prede: f64,
    /// Max |L − L̂| / L.
    pub worste: f64,
}

impl CurveMetrics {
    /// The metrics of `predicted` against `actual` (same length, not empty).
    pub fn of(actual: &[f64], predicted: &[f64]) -> CurveMetrics {
        let n = actual.len().max(1) as f64;
        let mean = actual.iter().sum::<f64>() / n;
        let ss_tot: f64 = actual.iter().map(|y| (y - mean).powi(2)).sum();
        let errors: Vec<f64> = actual.iter().zip(predicted).map(|(y, p)| y - p).collect();
        let ss_res: f64 = errors.iter().map(|e| e * e).sum();
        let relative = actual.iter().zip(&errors).map(|(y, e)| e.abs() / y);
        CurveMetrics {
            // scikit-learn's convention for a constant curve.
            r2: match ss_tot > 0.0 {
                true => 1.0 - ss_res / ss_tot,
                false => f64::from(u8::from(ss_res == 0.0)),
            },
            mae: errors.iter().map(|e| e.abs()).sum::<f64>() / n,
            rmse: (ss_res / n).sqrt(),
            prede: relative.clone().sum::<f64>() / n,
            worste: relative.fold(0.0, f64::max),
        }
    }

    /// The mean of each metric over `all` (the authors average per-curve metrics).
    pub fn mean(all: &[CurveMetrics]) -> CurveMetrics {
        let n = all.len().max(1) as f64;
        let avg = |f: fn(&CurveMetrics) -> f64| all.iter().map(f).sum::<f64>() / n;
        CurveMetrics {
            r2: avg(|m| m.r2),
            mae: avg(|m| m.mae),
            rmse: avg(|m| m.rmse),
            prede: avg(|m| m.prede),
            worste: avg(|m| m.worste),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::schedule::KnownSchedule;
    use super::*;

    /// A noise-free curve of `law` at `theta` on a known schedule, every `every` steps.
    fn synthetic(law: CurveLawName, theta: &[f64], name: &str, every: usize) -> Curve {
        let known = KnownSchedule::parse(name).expect("known");
        let schedule = Schedule::known(known);
        let steps: Vec<usize> = (1..known.total()).step_by(every).skip(3).collect();
        let losses = predict(law, theta, &schedule, &steps);
        Curve {
            name: name.into(),
            schedule,
            steps,
            losses,
        }
    }

    fn recovers(law: CurveLawName, theta: &[f64], tolerance: &[f64]) {
        // The authors' training set, thinned: two decays and a constant run.
        let curves: Vec<Curve> = ["cosine_24000", "constant_24000", "wsdcon_9"]
            .iter()
            .map(|n| synthetic(law, theta, n, 600))
            .collect();
        let fit = fit_curves(law, FitMethod::Lbfgs, &curves).expect("fit");
        for ((name, got), (want, tol)) in law
            .parameters()
            .iter()
            .zip(fit.values())
            .zip(theta.iter().zip(tolerance))
        {
            assert!(
                (got - want).abs() <= tol * want,
                "{name}: fitted {got}, true {want} ({:?})",
                fit.values()
            );
        }
        // A held-out schedule is predicted as the true law predicts it.
        let test = synthetic(law, theta, "wsd_20000_24000", 400);
        let predicted = predict(law, &fit.values(), &test.schedule, &test.steps);
        let metrics = CurveMetrics::of(&test.losses, &predicted);
        assert!(metrics.worste < 2e-4, "{metrics:?}");
    }

    #[test]
    fn a_fit_recovers_the_multi_power_law_from_its_own_curves() {
        // The authors' 25M parameters.
        let theta = [3.0405, 0.5247, 0.5079, 363.79, 2.0656, 0.5828, 0.6414];
        recovers(
            CurveLawName::Mpl,
            &theta,
            &[0.01, 0.02, 0.02, 0.2, 0.3, 0.2, 0.1],
        );
    }

    #[test]
    fn a_fit_recovers_tissues_law_from_its_own_curves() {
        let theta = [3.1, 0.5, 0.5, 0.4];
        recovers(CurveLawName::Tissue, &theta, &[1e-4, 1e-3, 1e-3, 1e-3]);
    }

    #[test]
    fn too_few_points_for_the_parameters_are_refused() {
        let theta = [3.0405, 0.5247, 0.5079, 363.79, 2.0656, 0.5828, 0.6414];
        let mut curve = synthetic(CurveLawName::Mpl, &theta, "wsdcon_9", 1000);
        curve = curve.until(7500);
        assert_eq!(curve.steps.len(), 5);
        let err = fit_curves(CurveLawName::Mpl, FitMethod::Lbfgs, &[curve.clone()])
            .expect_err("five points, seven parameters");
        assert!(
            matches!(
                err,
                LawError::TooFewPoints {
                    needed: 7,
                    got: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(fit_curves(CurveLawName::Tissue, FitMethod::Lbfgs, &[curve.clone()]).is_ok());
        let err = fit_curves(CurveLawName::Tissue, FitMethod::AuthorsAdam, &[curve])
            .expect_err("AdamW protocol is the MPL's");
        assert!(err.to_string().contains("Multi-Power Law only"), "{err}");
    }

    #[test]
    fn metrics_are_the_authors_definitions() {
        let m = CurveMetrics::of(&[2.0, 4.0], &[2.2, 3.6]);
        assert!((m.mae - 0.3).abs() < 1e-12);
        assert!((m.rmse - (0.1f64).sqrt()).abs() < 1e-12);
        assert!((m.prede - 0.5 * (0.1 + 0.1)).abs() < 1e-12);
        assert!((m.worste - 0.1).abs() < 1e-12);
        assert!((m.r2 - (1.0 - 0.2 / 2.0)).abs() < 1e-12);
        assert_eq!(CurveMetrics::of(&[3.0, 3.0], &[3.0, 3.0]).r2, 1.0);
    }
}
