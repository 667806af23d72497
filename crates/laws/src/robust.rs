//! The robust objective of Hoffmann et al. 2022 and Besiroglu et al. 2024 for
//! `L = E + A/N^α + B/D^β`: the Huber loss (δ = 10⁻³) of `LSE(a − α·ln N, b − β·ln D, e) − ln L`
//! with E = e^e, A = e^a, B = e^b, minimised by L-BFGS (argmin) from every start of the grid.

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::fit::{Law, Point, ResidualScale, Solver};

/// Huber-on-log-loss solver for [`crate::chinchilla::ChinchillaLaw`] (points: x = [N, D], y = L).
#[derive(Clone, Copy, Debug)]
pub struct HuberLse {
    /// Huber threshold δ on log-loss residuals (Hoffmann et al.: 10⁻³).
    pub delta: f64,
    /// L-BFGS iteration budget per start.
    pub max_iterations: u64,
}

impl Default for HuberLse {
    fn default() -> Self {
        HuberLse {
            delta: 1e-3,
            max_iterations: 500,
        }
    }
}

struct Objective<'a> {
    /// (ln N, ln D, ln L) per point.
    logs: &'a [(f64, f64, f64)],
    delta: f64,
}

impl Objective<'_> {
    /// Objective and gradient at w = (e, a, α, b, β).
    fn value_and_gradient(&self, w: &[f64]) -> (f64, Vec<f64>) {
        let (e, a, alpha, b, beta) = (w[0], w[1], w[2], w[3], w[4]);
        let mut total = 0.0;
        let mut grad = vec![0.0; 5];
        for &(ln_n, ln_d, ln_l) in self.logs {
            let terms = [e, a - alpha * ln_n, b - beta * ln_d];
            let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps = terms.map(|t| (t - max).exp());
            let sum: f64 = exps.iter().sum();
            let lse = max + sum.ln();
            let r = lse - ln_l;
            let (huber, slope) = if r.abs() <= self.delta {
                (0.5 * r * r, r)
            } else {
                (
                    self.delta * (r.abs() - 0.5 * self.delta),
                    self.delta * r.signum(),
                )
            };
            total += huber;
            let weights = exps.map(|x| x / sum);
            grad[0] += slope * weights[0];
            grad[1] += slope * weights[1];
            grad[2] -= slope * weights[1] * ln_n;
            grad[3] += slope * weights[2];
            grad[4] -= slope * weights[2] * ln_d;
        }
        (total, grad)
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, w: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.value_and_gradient(w).0)
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, w: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.value_and_gradient(w).1)
    }
}

impl Solver for HuberLse {
    fn solve(&self, law: &dyn Law, points: &[Point], start: &[f64]) -> Option<(Vec<f64>, f64)> {
        // The objective is written for Chinchilla's (E, A, α, B, β) on inputs (N, D) only.
        if law.name() != crate::chinchilla::ChinchillaLaw.name() || start.len() != 5 {
            return None;
        }
        if start[0] <= 0.0 || start[1] <= 0.0 || start[3] <= 0.0 {
            return None;
        }
        let logs: Vec<(f64, f64, f64)> = points
            .iter()
            .map(|p| (p.x[0].ln(), p.x[1].ln(), p.y.ln()))
            .collect();
        let objective = Objective {
            logs: &logs,
            delta: self.delta,
        };
        let init = vec![
            start[0].ln(),
            start[1].ln(),
            start[2],
            start[3].ln(),
            start[4],
        ];
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(1e-12)
            .ok()?
            .with_tolerance_cost(1e-15)
            .ok()?;
        let result = Executor::new(objective, solver)
            .configure(|s| s.param(init).max_iters(self.max_iterations))
            .run()
            .ok()?;
        let state = result.state();
        let w = state.get_best_param()?.clone();
        let cost = state.get_best_cost();
        let theta = vec![w[0].exp(), w[1].exp(), w[2], w[3].exp(), w[4]];
        (cost.is_finite() && theta.iter().all(|v| v.is_finite())).then_some((theta, cost))
    }

    fn residual_scale(&self) -> ResidualScale {
        ResidualScale::Log
    }

    fn method(&self) -> &str {
        "huber-log-lse-lbfgs"
    }
}
