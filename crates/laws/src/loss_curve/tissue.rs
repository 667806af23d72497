//! The law of Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing",
//! arXiv:2408.11029): L(s) = L0 + A·S1^(−α) − C·S2, with the forward area S1 = Σ_{τ≤s} η_τ
//! (from step 0, as for the Multi-Power Law, so both laws see the same area) and the annealing
//! area with momentum S2 = Σ_{i≤s} m_i, m_i = λ·m_{i−1} + (η_{i−1} − η_i), by that recurrence.
//!
//! λ is fixed at 0.999 (the paper's value), not fitted: S2 is then free of parameters and the
//! fit is over (L0, A, α, C) only. As the formula reads, m accumulates from step 1, so the
//! warmup's rise counts as negative annealing (as it does in the Multi-Power Law's LD). On
//! Luo et al.'s curves this predicts their test set better on average than starting at the
//! peak of η (test PredE 0.00152, 0.00140, 0.00182 for 25M, 100M, 400M against 0.00141,
//! 0.00153, 0.00228).

use super::solver::Model;
use super::{Curve, CurveLawName};

/// Parameter names, in the order of θ.
pub const PARAMETERS: [&str; 4] = ["L0", "A", "alpha", "C"];

/// The momentum decay factor λ.
pub const LAMBDA: f64 = 0.999;

/// Tissue et al.'s law.
#[derive(Clone, Copy, Debug, Default)]
pub struct TissueLaw;

/// Per point: S1 and S2.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    s1: Vec<f64>,
    s2: Vec<f64>,
}

/// S2 at every step of `rates`: the annealing area with momentum λ.
pub fn annealing_area(rates: &[f64]) -> Vec<f64> {
    let mut m = 0.0;
    let mut s2 = 0.0;
    let mut out = vec![0.0; rates.len()];
    for i in 1..rates.len() {
        m = LAMBDA * m + (rates[i - 1] - rates[i]);
        s2 += m;
        out[i] = s2;
    }
    out
}

impl Model for TissueLaw {
    type Prepared = Prepared;

    fn n_params(&self) -> usize {
        PARAMETERS.len()
    }

    fn prepare(&self, curve: &Curve) -> Prepared {
        let p = curve.schedule.prefix_sums();
        let s2 = annealing_area(&curve.schedule.rates);
        Prepared {
            s1: curve.steps.iter().map(|&t| p[t]).collect(),
            s2: curve.steps.iter().map(|&t| s2[t]).collect(),
        }
    }

    fn evaluate(&self, prep: &Prepared, theta: &[f64], grad: bool) -> (Vec<f64>, Vec<f64>) {
        let (l0, a, alpha, c) = (theta[0], theta[1], theta[2], theta[3]);
        let mut pred = Vec::with_capacity(prep.s1.len());
        let mut dpred = Vec::new();
        for (&s1, &s2) in prep.s1.iter().zip(&prep.s2) {
            let power = a * s1.powf(-alpha);
            pred.push(l0 + power - c * s2);
            if grad {
                dpred.extend_from_slice(&[l0, power, -alpha * s1.ln() * power, -c * s2]);
            }
        }
        (pred, dpred)
    }
}

impl TissueLaw {
    /// The law's name.
    pub const NAME: CurveLawName = CurveLawName::Tissue;

    /// The formula.
    pub const FORMULA: &'static str = "L(s) = L0 + A·S1^(−alpha) − C·S2, S1 = Σ_{τ≤s} η_τ, S2 = Σ_{i≤s} m_i, m_i = 0.999·m_{i−1} + η_{i−1} − η_i";

    /// Starts: L0 at fractions of the lowest loss, A, α and C on coarse grids.
    pub(crate) fn starts(curves: &[Curve]) -> Vec<Vec<f64>> {
        let min_loss = curves
            .iter()
            .flat_map(|c| c.losses.iter().copied())
            .fold(f64::INFINITY, f64::min);
        let mut starts = Vec::new();
        for f in [0.6, 0.8, 0.9, 0.97] {
            for a in [0.1, 0.3, 1.0, 3.0] {
                for alpha in [0.2, 0.4, 0.6, 0.9] {
                    for c in [0.1, 0.3, 1.0, 3.0, 10.0] {
                        starts.push(vec![f * min_loss, a, alpha, c]);
                    }
                }
            }
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annealing_area_follows_the_double_sum() {
        // Ramp to the peak at step 2, hold, drop by 1 at step 5, hold.
        let rates = [0.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0];
        let s2 = annealing_area(&rates);
        for (i, &fast) in s2.iter().enumerate() {
            // Σ_{j≤i} Σ_{1≤k≤j} (η_{k−1} − η_k)·λ^(j−k)
            let slow: f64 = (1..=i)
                .flat_map(|j| (1..=j).map(move |k| (j, k)))
                .map(|(j, k)| (rates[k - 1] - rates[k]) * LAMBDA.powi((j - k) as i32))
                .sum();
            assert!((fast - slow).abs() < 1e-12, "step {i}: {fast} vs {slow}");
        }
        // The warmup's rise counts negatively: m_1 = −1, m_2 = −λ − 1.
        assert!((s2[2] - (-1.0 - LAMBDA - 1.0)).abs() < 1e-15);
    }
}
