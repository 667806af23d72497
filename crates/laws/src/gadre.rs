//! Gadre et al. 2024, "Language models scale reliably with over-training and on downstream
//! tasks" (arXiv 2403.08540): the loss→error law and the over-training loss law.

use crate::fit::{Bound, Law, Parameter};

/// Top-1 error from loss: `Err(L) = ε − k·exp(−γ·L)`. Parameters in the order (k, γ, ε).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorLaw;

const ERROR_PARAMETERS: [Parameter; 3] = [
    Parameter::new("k", Bound::Free),
    Parameter::new("gamma", Bound::Free),
    Parameter::new("epsilon", Bound::Free),
];

impl Law for ErrorLaw {
    fn name(&self) -> &str {
        "gadre-error"
    }
    fn formula(&self) -> &str {
        "Err(L) = epsilon - k * exp(-gamma * L)"
    }
    fn inputs(&self) -> &[&'static str] {
        &["L"]
    }
    fn parameters(&self) -> &[Parameter] {
        &ERROR_PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        t[2] - t[0] * (-t[1] * x[0]).exp()
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        // (1, 1, 1) is scipy's default initial guess, which the paper's code uses; the others
        // cover steeper and flatter decays and error ceilings below one.
        let mut starts = vec![vec![1.0, 1.0, 1.0]];
        for k in [0.5, 2.0, 10.0] {
            for gamma in [0.3, 1.0, 3.0] {
                for epsilon in [0.7, 0.9, 1.0] {
                    starts.push(vec![k, gamma, epsilon]);
                }
            }
        }
        starts
    }
}

/// The over-training law in the form the paper's code fits it, with inputs (N, M), M = D/N:
/// `L = α·N^b + β·6^(b/2)·(M·N)^b + E`. Parameters in the order (α, β, b, E).
///
/// It is the paper's `L(C, M) = E + (a·M^η + b·M^(−η))·C^(−η)` with C = 6·N·D rewritten per
/// model size; [`OverTrainingLaw::paper_form`] converts.
#[derive(Clone, Copy, Debug, Default)]
pub struct OverTrainingLaw;

const OVERTRAINING_PARAMETERS: [Parameter; 4] = [
    Parameter::new("alpha", Bound::Free),
    Parameter::new("beta", Bound::Free),
    Parameter::new("b", Bound::Free),
    Parameter::new("E", Bound::Free),
];

impl Law for OverTrainingLaw {
    fn name(&self) -> &str {
        "gadre-overtraining"
    }
    fn formula(&self) -> &str {
        "L(N, M) = alpha * N^b + beta * 6^(b/2) * (M*N)^b + E  (= E + (a*M^eta + b'*M^-eta) * C^-eta, C = 6ND, M = D/N)"
    }
    fn inputs(&self) -> &[&'static str] {
        &["N", "M"]
    }
    fn parameters(&self) -> &[Parameter] {
        &OVERTRAINING_PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        let (n, m) = (x[0], x[1]);
        t[0] * n.powf(t[2]) + t[1] * 6f64.powf(t[2] / 2.0) * (m * n).powf(t[2]) + t[3]
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        // The grid of the paper's code (as in Chinchilla: many starts, keep the best).
        let mut starts = Vec::new();
        for alpha in [1e2, 3e2, 1e3, 3e3] {
            for beta in [1e2, 3e2, 1e3, 3e3] {
                for b in [-0.1, -0.3] {
                    for e in [0.0, 1.0, 2.0, 10.0] {
                        starts.push(vec![alpha, beta, b, e]);
                    }
                }
            }
        }
        starts
    }
}

/// The over-training law's parameters in the paper's notation.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaperForm {
    /// Coefficient of M^η.
    pub a: f64,
    /// Coefficient of M^(−η).
    pub b: f64,
    /// Compute exponent η > 0.
    pub eta: f64,
    /// Irreducible loss.
    pub e: f64,
}

impl OverTrainingLaw {
    /// Converts fitted (α, β, b, E) to the paper's (a, b, η, E): η = −b/2, a = α·6^η, b = β.
    pub fn paper_form(theta: &[f64]) -> PaperForm {
        let eta = -theta[2] / 2.0;
        PaperForm {
            a: theta[0] * 6f64.powf(eta),
            b: theta[1],
            eta,
            e: theta[3],
        }
    }

    /// Loss in the paper's form at compute C = 6ND and token multiplier M.
    pub fn paper_loss(form: &PaperForm, compute: f64, multiplier: f64) -> f64 {
        form.e
            + (form.a * multiplier.powf(form.eta) + form.b * multiplier.powf(-form.eta))
                * compute.powf(-form.eta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_form_is_the_same_function() {
        let theta = [166.0, 367.0, -0.2729, 1.837];
        let form = OverTrainingLaw::paper_form(&theta);
        for (n, m) in [(1.1e7, 20.0), (4.1e8, 320.0), (1.4e9, 640.0)] {
            let d = m * n;
            let ours = OverTrainingLaw.predict(&[n, m], &theta);
            let paper = OverTrainingLaw::paper_loss(&form, 6.0 * n * d, m);
            assert!((ours - paper).abs() < 1e-9 * ours, "{ours} vs {paper}");
        }
    }
}
