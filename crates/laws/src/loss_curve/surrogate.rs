//! The authors' initialisation of the Multi-Power Law (`initialize_params` in their
//! `src/fitting.py`): a log-log regression of L − min L + 0.01 on S1 centres a 5×3×3×3 grid
//! of (L0, A, α, B), and the surrogate L0 + A·S1^(−α) − B·(η_max − η_t) (the loss drop
//! taken linear in the drop of η) is fitted from every grid point; the best seeds the full law.
//! They use L-BFGS-B with bounds at 0; here every parameter is fitted through its logarithm.

use super::solver::{Data, Model};
use super::Curve;

/// The surrogate law, parameters (L0, A, α, B).
struct Surrogate;

/// Per point: S1 and η_max − η_t.
#[derive(Clone, Debug)]
struct Prepared {
    s1: Vec<f64>,
    drop: Vec<f64>,
}

impl Model for Surrogate {
    type Prepared = Prepared;

    fn n_params(&self) -> usize {
        4
    }

    fn prepare(&self, curve: &Curve) -> Prepared {
        let p = curve.schedule.prefix_sums();
        let peak = curve.schedule.rates.iter().copied().fold(0.0, f64::max);
        Prepared {
            s1: curve.steps.iter().map(|&t| p[t]).collect(),
            drop: curve
                .steps
                .iter()
                .map(|&t| peak - curve.schedule.rates[t])
                .collect(),
        }
    }

    fn evaluate(&self, prep: &Prepared, theta: &[f64], grad: bool) -> (Vec<f64>, Vec<f64>) {
        let (l0, a, alpha, b) = (theta[0], theta[1], theta[2], theta[3]);
        let mut pred = Vec::with_capacity(prep.s1.len());
        let mut dpred = Vec::new();
        for (&s1, &drop) in prep.s1.iter().zip(&prep.drop) {
            let power = a * s1.powf(-alpha);
            pred.push(l0 + power - b * drop);
            if grad {
                dpred.extend_from_slice(&[l0, power, -alpha * s1.ln() * power, -b * drop]);
            }
        }
        (pred, dpred)
    }
}

/// Slope and intercept of the least-squares line through `(x, y)`.
fn line(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    (sxx > 0.0).then(|| (sxy / sxx, my - sxy / sxx * mx))
}

/// `n` evenly spaced values from `lo` to `hi` (numpy's `linspace`).
fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
        .collect()
}

/// The authors' initial (L0, A, α, B) for the Multi-Power Law on `curves`.
pub(crate) fn initial_guess(curves: &[Curve]) -> Option<[f64; 4]> {
    let min_loss = curves
        .iter()
        .flat_map(|c| c.losses.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for curve in curves {
        let p = curve.schedule.prefix_sums();
        for (&t, &loss) in curve.steps.iter().zip(&curve.losses) {
            xs.push(p[t].ln());
            ys.push((loss - min_loss + 0.01).ln());
        }
    }
    let (slope, intercept) = line(&xs, &ys)?;
    // Non-positive grid values lie outside the bounds: they start just inside.
    let positive = |v: f64| v.max(1e-3);
    let mut starts = Vec::new();
    for l0 in linspace(min_loss - 0.2, min_loss + 0.2, 5) {
        for a in linspace(intercept.exp() - 0.1, intercept.exp() + 0.1, 3) {
            for alpha in linspace(-slope - 0.1, -slope + 0.1, 3) {
                for b in linspace(100.0, 1000.0, 3) {
                    starts.push(vec![positive(l0), positive(a), positive(alpha), b]);
                }
            }
        }
    }
    let data = Data::new(&Surrogate, curves);
    let (best, _) = data.fit_from_starts(&starts, starts.len(), 500)?;
    Some([best.theta[0], best.theta[1], best.theta[2], best.theta[3]])
}
