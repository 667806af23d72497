//! The fitting engine of the loss-curve laws: the authors' objective (Huber loss, δ = 10⁻³, on
//! ln L − ln L̂, summed over every point of every curve) minimised by L-BFGS (argmin) with
//! analytic gradients, every parameter kept positive by fitting its logarithm.
//!
//! Why not [`crate::fit::fit_with`]: its [`crate::fit::Law`] predicts one point from that
//! point's inputs, but these laws predict a point from the whole learning-rate history before
//! it (the Multi-Power Law's loss drop sums over every earlier step where η changed), so the
//! work per evaluation is shared across the points of a curve and the gradient is accumulated
//! alongside; and its leave-one-out and point bootstrap would refit hundreds of times on
//! curves whose points are not independent. Here the interval comes from a moving-block
//! bootstrap of the residuals instead ([`bootstrap_predictions`]).

use std::sync::{Arc, Mutex};

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Curve;

/// Huber threshold of the authors' objective.
pub const HUBER_DELTA: f64 = 1e-3;

/// A law over whole curves, as the engine sees it: a parameter-free preparation of each curve
/// and, for parameters θ (all positive), the prediction at every point with its gradient with
/// respect to ln θ.
pub(crate) trait Model: Sync {
    /// What is computed once per curve.
    type Prepared: Sync;
    /// Number of parameters.
    fn n_params(&self) -> usize;
    /// The curve's parameter-free sums.
    fn prepare(&self, curve: &Curve) -> Self::Prepared;
    /// Predictions at the prepared points; with `grad`, also ∂L̂/∂ln θ_j row by row (n × P).
    fn evaluate(
        &self,
        prepared: &Self::Prepared,
        theta: &[f64],
        grad: bool,
    ) -> (Vec<f64>, Vec<f64>);
}

/// Huber loss and its derivative.
fn huber(r: f64) -> (f64, f64) {
    if r.abs() <= HUBER_DELTA {
        (0.5 * r * r, r)
    } else {
        (
            HUBER_DELTA * (r.abs() - 0.5 * HUBER_DELTA),
            HUBER_DELTA * r.signum(),
        )
    }
}

/// Curves prepared for a model, with their log-losses: what the objective is evaluated on.
pub(crate) struct Data<'a, M: Model> {
    /// The law.
    pub model: &'a M,
    /// Each curve's parameter-free sums (shared by bootstrap resamples).
    pub prepared: Arc<[M::Prepared]>,
    /// ln L at each curve's points.
    pub ln_targets: Vec<Vec<f64>>,
}

impl<'a, M: Model> Data<'a, M> {
    /// The curves prepared for `model`.
    pub fn new(model: &'a M, curves: &[Curve]) -> Self {
        Data {
            model,
            prepared: curves.iter().map(|c| model.prepare(c)).collect(),
            ln_targets: curves
                .iter()
                .map(|c| c.losses.iter().map(|l| l.ln()).collect())
                .collect(),
        }
    }

    /// The same curves with other log-losses (a bootstrap resample).
    fn with_targets(&self, ln_targets: Vec<Vec<f64>>) -> Data<'a, M> {
        Data {
            model: self.model,
            prepared: Arc::clone(&self.prepared),
            ln_targets,
        }
    }

    /// Number of points.
    pub fn n_points(&self) -> usize {
        self.ln_targets.iter().map(Vec::len).sum()
    }

    /// The authors' objective Σ huber(ln L − ln L̂) over every curve, with its gradient in ln θ.
    pub fn objective(&self, theta: &[f64], grad: bool) -> (f64, Vec<f64>) {
        let p = self.model.n_params();
        let mut total = 0.0;
        let mut gradient = vec![0.0; p];
        for (prep, targets) in self.prepared.iter().zip(&self.ln_targets) {
            let (pred, dpred) = self.model.evaluate(prep, theta, grad);
            for (i, (&yhat, &ln_y)) in pred.iter().zip(targets).enumerate() {
                // The authors clamp predictions at 1e-10 before the logarithm.
                let (h, slope) = huber(ln_y - yhat.max(1e-10).ln());
                total += h;
                if grad && yhat > 1e-10 {
                    let row = &dpred[i * p..(i + 1) * p];
                    for (g, d) in gradient.iter_mut().zip(row) {
                        *g -= slope * d / yhat;
                    }
                }
            }
        }
        if !total.is_finite() || gradient.iter().any(|g| !g.is_finite()) {
            // Far outside the region of finite predictions: a large finite cost, so the line
            // search steps back.
            return (1e30, vec![0.0; p]);
        }
        (total, gradient)
    }

    /// L-BFGS from `start` (positive parameters); `None` when argmin fails outright.
    pub fn lbfgs(&self, start: &[f64], max_iterations: u64) -> Option<Solution> {
        // Per point and in units of δ², and then so that the first step (along the negative
        // gradient, argmin's L-BFGS has no curvature yet) is at most one unit of ln θ: a
        // larger one leaves the region where the laws are finite.
        let base = 1.0 / (self.n_points().max(1) as f64 * HUBER_DELTA * HUBER_DELTA);
        let (_, g0) = self.objective(start, true);
        let norm = g0.iter().map(|g| (g * base).powi(2)).sum::<f64>().sqrt();
        let scale = base / norm.max(1.0);
        let problem = Problem {
            data: self,
            scale,
            cache: Mutex::new(None),
        };
        let init: Vec<f64> = start.iter().map(|v| v.max(1e-300).ln()).collect();
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(1e-9)
            .ok()?
            .with_tolerance_cost(1e-13)
            .ok()?;
        let result = Executor::new(problem, solver)
            .configure(|s| s.param(init).max_iters(max_iterations))
            .run()
            .ok()?;
        let state = result.state();
        let w = state.get_best_param()?;
        let theta: Vec<f64> = w.iter().map(|v| v.clamp(-40.0, 40.0).exp()).collect();
        let cost = state.get_best_cost() / scale;
        (cost.is_finite() && theta.iter().all(|t| t.is_finite())).then_some(Solution {
            theta,
            objective: cost,
            iterations: state.get_iter(),
        })
    }

    /// The authors' optimiser (`mpl_adam_fit` in their `src/fitting.py`), step for step:
    /// AdamW (PyTorch's, weight decay 0.01) on the raw parameters from `start`, at most 200
    /// steps, stopping after 20 steps without a lower objective or at a gradient norm below
    /// 1e-5, keeping the parameters after the step whose objective was lowest (their
    /// bookkeeping). Parameters are kept ≥ 1e-12, where their code would produce NaN.
    pub fn authors_adam(&self, start: &[f64], learning_rates: &[f64]) -> Option<Solution> {
        const MAX_STEPS: usize = 200;
        const PATIENCE: usize = 20;
        const GRAD_NORM: f64 = 1e-5;
        const WEIGHT_DECAY: f64 = 0.01;
        let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8);
        let p = start.len();
        let mut theta = start.to_vec();
        let (mut m, mut v) = (vec![0.0; p], vec![0.0; p]);
        let (mut min_loss, mut stale) = (f64::INFINITY, 0);
        let mut best: Option<(f64, Vec<f64>)> = None;
        let mut steps = 0;
        for step in 0..MAX_STEPS {
            let (loss, grad_log) = self.objective(&theta, true);
            let grad: Vec<f64> = grad_log.iter().zip(&theta).map(|(g, t)| g / t).collect();
            let t = (step + 1) as i32;
            let (bc1, bc2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
            for j in 0..p {
                theta[j] *= 1.0 - learning_rates[j] * WEIGHT_DECAY;
                m[j] = beta1 * m[j] + (1.0 - beta1) * grad[j];
                v[j] = beta2 * v[j] + (1.0 - beta2) * grad[j] * grad[j];
                let denom = v[j].sqrt() / bc2.sqrt() + eps;
                theta[j] = (theta[j] - learning_rates[j] / bc1 * m[j] / denom).max(1e-12);
            }
            steps = step + 1;
            if loss < min_loss {
                (min_loss, stale) = (loss, 0);
            } else {
                stale += 1;
            }
            if step > PATIENCE && stale >= PATIENCE {
                break;
            }
            if grad.iter().map(|g| g * g).sum::<f64>().sqrt() < GRAD_NORM {
                break;
            }
            if best.as_ref().is_none_or(|(b, _)| loss < *b) {
                best = Some((loss, theta.clone()));
            }
        }
        let (_, theta) = best?;
        let objective = self.objective(&theta, false).0;
        (objective.is_finite() && objective < 1e30).then_some(Solution {
            theta,
            objective,
            iterations: steps as u64,
        })
    }

    /// Multi-start: the objective at every start, then L-BFGS from the `keep` best; the best
    /// end and how many runs converged.
    pub fn fit_from_starts(
        &self,
        starts: &[Vec<f64>],
        keep: usize,
        max_iterations: u64,
    ) -> Option<(Solution, usize)> {
        let mut ranked: Vec<(f64, &Vec<f64>)> = starts
            .iter()
            .map(|s| (self.objective(s, false).0, s))
            .filter(|(c, _)| c.is_finite())
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        let runs: Vec<Solution> = ranked
            .iter()
            .take(keep)
            .filter_map(|(_, s)| self.lbfgs(s, max_iterations))
            .collect();
        let converged = runs.len();
        let best = runs
            .into_iter()
            .min_by(|a, b| a.objective.total_cmp(&b.objective))?;
        Some((best, converged))
    }

    /// Moving-block residual bootstrap: per resample, each curve's log residuals are redrawn
    /// in blocks of ⌈√n⌉ consecutive points (loss-curve residuals are autocorrelated), added
    /// to the fitted log-curve (at `theta`), and `refit` run on the resample; the parameters
    /// of each refit are collected. Failed refits are dropped.
    pub fn bootstrap(
        &self,
        theta: &[f64],
        resamples: usize,
        seed: u64,
        refit: impl Fn(&Data<'a, M>) -> Option<Solution>,
    ) -> Vec<Vec<f64>> {
        let fitted: Vec<Vec<f64>> = self
            .prepared
            .iter()
            .map(|p| {
                let (pred, _) = self.model.evaluate(p, theta, false);
                pred.iter().map(|v| v.max(1e-10).ln()).collect()
            })
            .collect();
        let residuals: Vec<Vec<f64>> = fitted
            .iter()
            .zip(&self.ln_targets)
            .map(|(f, y)| y.iter().zip(f).map(|(a, b)| a - b).collect())
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(resamples);
        for _ in 0..resamples {
            let targets: Vec<Vec<f64>> = fitted
                .iter()
                .zip(&residuals)
                .map(|(f, r)| {
                    let drawn = block_resample(r, &mut rng);
                    f.iter().zip(drawn).map(|(a, b)| a + b).collect()
                })
                .collect();
            if let Some(fit) = refit(&self.with_targets(targets)) {
                out.push(fit.theta);
            }
        }
        out
    }
}

/// A point ln θ with the objective and gradient there.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// The objective for argmin, scaled by 1/(n·δ²) so that its tolerances mean the same for any
/// number of points, with the last value and gradient cached (argmin asks for both at a point).
struct Problem<'a, 'm, M: Model> {
    data: &'a Data<'m, M>,
    scale: f64,
    cache: Mutex<Option<Evaluation>>,
}

impl<M: Model> Problem<'_, '_, M> {
    fn at(&self, w: &[f64]) -> (f64, Vec<f64>) {
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, cost, grad)) = cache.as_ref() {
                if at.as_slice() == w {
                    return (*cost, grad.clone());
                }
            }
        }
        // Log-parameters are kept where exp() stays finite.
        let theta: Vec<f64> = w.iter().map(|v| v.clamp(-40.0, 40.0).exp()).collect();
        let (cost, grad) = self.data.objective(&theta, true);
        let cost = cost * self.scale;
        let grad: Vec<f64> = grad.iter().map(|g| g * self.scale).collect();
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((w.to_vec(), cost, grad.clone()));
        }
        (cost, grad)
    }
}

impl<M: Model> CostFunction for Problem<'_, '_, M> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, w: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.at(w).0)
    }
}

impl<M: Model> Gradient for Problem<'_, '_, M> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, w: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.at(w).1)
    }
}

/// A fit: parameters, the authors' (unscaled) objective, and the L-BFGS iterations it took.
#[derive(Clone, Debug)]
pub(crate) struct Solution {
    /// Fitted parameters.
    pub theta: Vec<f64>,
    /// Σ huber at them.
    pub objective: f64,
    /// L-BFGS iterations.
    pub iterations: u64,
}

/// `values` redrawn as consecutive blocks of ⌈√n⌉ starting at random positions.
fn block_resample(values: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let block = (n as f64).sqrt().ceil() as usize;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let start = rng.random_range(0..=n.saturating_sub(block));
        out.extend(values[start..(start + block).min(n)].iter().copied());
    }
    out.truncate(n);
    out
}

/// Splits `n` points whose work grows with the index into at most `threads` contiguous
/// ranges of about equal total work, and runs `run` on each in parallel (scoped threads).
pub(crate) fn parallel_ranges<T: Send>(
    work: &[usize],
    run: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let total: usize = work.iter().sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads <= 1 || total < 200_000 {
        return vec![run(0..work.len())];
    }
    let mut bounds = vec![0];
    let mut acc = 0;
    for (i, w) in work.iter().enumerate() {
        acc += w;
        if acc * threads >= total * bounds.len() && bounds.len() < threads {
            bounds.push(i + 1);
        }
    }
    bounds.push(work.len());
    bounds.dedup();
    std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                let run = &run;
                scope.spawn(move || run(a..b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huber_is_quadratic_then_linear() {
        assert_eq!(huber(5e-4), (0.5 * 25e-8, 5e-4));
        let (h, s) = huber(-3e-3);
        assert!((h - 1e-3 * (3e-3 - 0.5e-3)).abs() < 1e-18);
        assert_eq!(s, -1e-3);
    }

    #[test]
    fn blocks_keep_the_length_and_values() {
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let drawn = block_resample(&values, &mut rng);
        assert_eq!(drawn.len(), 10);
        assert!(drawn.iter().all(|v| values.contains(v)));
    }

    #[test]
    fn ranges_cover_every_point_once() {
        let work: Vec<usize> = (0..1000).map(|i| 1000 + i).collect();
        let ranges = parallel_ranges(&work, |r| r);
        let mut next = 0;
        for r in ranges {
            assert_eq!(r.start, next);
            next = r.end;
        }
        assert_eq!(next, 1000);
    }
}
