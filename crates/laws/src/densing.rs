//! Effective parameter size and capacity density (Xiao et al. 2024, "Densing Law of LLMs").
//!
//! Two routes lead from a model's measured score S to its effective parameter size N̂, the size
//! a reference family would need (at a reference token budget D₀) to score S; density is
//! ρ = N̂ / N.
//! - The paper's two steps: loss estimation `L = a·N^(−α) + b·D^(−β)` on the conditional loss of
//!   benchmark answers, performance estimation `S(L) = c / (1 + e^(−γ(L − l))) + d`, then
//!   inversion S → L → N̂ ([`LossLaw`], [`PerformanceLaw`], [`two_step_effective_params`]).
//! - Directly against a reference family whose scores are published at many (N, D): the same
//!   two laws composed, `S(N, D) = d + c·(1 − d) / (1 + e^(a·N^(−α) + b·D^(−β) − l))` with the
//!   sigmoid's scale absorbed into a and b and its ceiling d + c·(1 − d) kept at most 1, fitted to the family's scores and inverted at D₀
//!   ([`ReferenceFamilyLaw`]).
//!
//! [`estimate_density`] propagates the uncertainty of the reference fit (its bootstrap
//! replicates) and of the measured score (its standard error) into intervals for N̂ and ρ.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::fit::{percentile, Bound, FitReport, Law, Parameter};
use crate::LawError;

/// Loss estimation: `L(N, D) = a·N^(−α) + b·D^(−β)`, parameters (a, α, b, β).
#[derive(Clone, Copy, Debug, Default)]
pub struct LossLaw;

const LOSS_PARAMETERS: [Parameter; 4] = [
    Parameter::new("a", Bound::Positive),
    Parameter::new("alpha", Bound::Between(0.0, 3.0)),
    Parameter::new("b", Bound::Positive),
    Parameter::new("beta", Bound::Between(0.0, 3.0)),
];

impl Law for LossLaw {
    fn name(&self) -> &str {
        "densing-loss"
    }
    fn formula(&self) -> &str {
        "L(N, D) = a * N^-alpha + b * D^-beta"
    }
    fn inputs(&self) -> &[&'static str] {
        &["N", "D"]
    }
    fn parameters(&self) -> &[Parameter] {
        &LOSS_PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        t[0] * x[0].powf(-t[1]) + t[2] * x[1].powf(-t[3])
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        let mut starts = Vec::new();
        for a in [1e1, 1e2, 1e3] {
            for alpha in [0.1, 0.3, 0.6] {
                for b in [1e1, 1e2, 1e3] {
                    for beta in [0.1, 0.3, 0.6] {
                        starts.push(vec![a, alpha, b, beta]);
                    }
                }
            }
        }
        starts
    }
}

/// Performance estimation: `S(L) = c / (1 + e^(−γ(L − l))) + d`, parameters (c, γ, l, d).
#[derive(Clone, Copy, Debug, Default)]
pub struct PerformanceLaw;

const PERFORMANCE_PARAMETERS: [Parameter; 4] = [
    Parameter::new("c", Bound::Free),
    Parameter::new("gamma", Bound::Free),
    Parameter::new("l", Bound::Free),
    Parameter::new("d", Bound::Free),
];

impl Law for PerformanceLaw {
    fn name(&self) -> &str {
        "densing-performance"
    }
    fn formula(&self) -> &str {
        "S(L) = c / (1 + exp(-gamma * (L - l))) + d"
    }
    fn inputs(&self) -> &[&'static str] {
        &["L"]
    }
    fn parameters(&self) -> &[Parameter] {
        &PERFORMANCE_PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        t[0] / (1.0 + (-t[1] * (x[0] - t[2])).exp()) + t[3]
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        let mut starts = Vec::new();
        for c in [0.5, 0.8, 1.0] {
            for gamma in [-1.0, -3.0, -10.0] {
                for l in [0.5, 1.0, 2.0, 3.0] {
                    for d in [0.0, 0.25] {
                        starts.push(vec![c, gamma, l, d]);
                    }
                }
            }
        }
        starts
    }
}

impl PerformanceLaw {
    /// The loss at which the fitted sigmoid reaches `score`.
    pub fn invert(theta: &[f64], score: f64) -> Result<f64, LawError> {
        let (c, gamma, l, d) = (theta[0], theta[1], theta[2], theta[3]);
        let ratio = c / (score - d) - 1.0;
        if ratio.is_nan() || ratio <= 0.0 || gamma == 0.0 {
            return Err(LawError::OutOfRange(format!(
                "score {score:.4} is outside the range the fitted performance law can produce \
                 (between {:.4} and {:.4})",
                d.min(d + c),
                d.max(d + c)
            )));
        }
        Ok(l - ratio.ln() / gamma)
    }
}

/// N̂ at token budget `d0` for a loss, from a fitted [`LossLaw`].
pub fn effective_params_from_loss(theta: &[f64], loss: f64, d0: f64) -> Result<f64, LawError> {
    let (a, alpha, b, beta) = (theta[0], theta[1], theta[2], theta[3]);
    let data_term = b * d0.powf(-beta);
    let size_term = loss - data_term;
    if size_term.is_nan() || size_term <= 0.0 {
        return Err(LawError::OutOfRange(format!(
            "loss {loss:.4} is below what any model size reaches at D0 = {d0:.3e} tokens \
             (the data term alone is {data_term:.4})"
        )));
    }
    Ok((a / size_term).powf(1.0 / alpha))
}

/// The paper's two-step inversion: score → loss (fitted [`PerformanceLaw`]) → N̂ (fitted
/// [`LossLaw`] at token budget `d0`).
pub fn two_step_effective_params(
    loss_theta: &[f64],
    performance_theta: &[f64],
    score: f64,
    d0: f64,
) -> Result<f64, LawError> {
    let loss = PerformanceLaw::invert(performance_theta, score)?;
    effective_params_from_loss(loss_theta, loss, d0)
}

/// A reference family's score as a function of size and data:
/// `S(N, D) = d + c·(1 − d) / (1 + e^(a·N^(−α) + b·D^(−β) − l))`, parameters (a, α, b, β, l,
/// c, d): d is the chance-level floor and d + c·(1 − d) ≤ 1 the ceiling.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReferenceFamilyLaw;

const FAMILY_PARAMETERS: [Parameter; 7] = [
    Parameter::new("a", Bound::Positive),
    Parameter::new("alpha", Bound::Between(0.0, 2.0)),
    Parameter::new("b", Bound::Positive),
    Parameter::new("beta", Bound::Between(0.0, 2.0)),
    Parameter::new("l", Bound::Free),
    Parameter::new("c", Bound::Between(0.0, 1.0)),
    Parameter::new("d", Bound::Between(0.0, 1.0)),
];

impl Law for ReferenceFamilyLaw {
    fn name(&self) -> &str {
        "reference-family"
    }
    fn formula(&self) -> &str {
        "S(N, D) = d + c * (1 - d) / (1 + exp(a * N^-alpha + b * D^-beta - l))"
    }
    fn inputs(&self) -> &[&'static str] {
        &["N", "D"]
    }
    fn parameters(&self) -> &[Parameter] {
        &FAMILY_PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        let latent = t[0] * x[0].powf(-t[1]) + t[2] * x[1].powf(-t[3]);
        t[6] + t[5] * (1.0 - t[6]) / (1.0 + (latent - t[4]).exp())
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        let mut starts = Vec::new();
        for a in [1e1, 1e2, 1e3] {
            for alpha in [0.1, 0.3] {
                for b in [1e1, 1e3] {
                    for beta in [0.1, 0.3] {
                        for l in [-1.0, 0.0, 1.0] {
                            for (c, d) in [(0.6, 0.3), (0.9, 0.25)] {
                                starts.push(vec![a, alpha, b, beta, l, c, d]);
                            }
                        }
                    }
                }
            }
        }
        starts
    }
}

impl ReferenceFamilyLaw {
    /// N̂ at token budget `d0` for `score`, from fitted parameters.
    pub fn effective_params(theta: &[f64], score: f64, d0: f64) -> Result<f64, LawError> {
        let (a, alpha, b, beta, l, c, d) = (
            theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6],
        );
        let ceiling = c * (1.0 - d);
        let ratio = ceiling / (score - d) - 1.0;
        if ratio.is_nan() || ratio <= 0.0 {
            return Err(LawError::OutOfRange(format!(
                "score {score:.4} is outside what the reference family's fit can reach \
                 (between {d:.4} at chance and {:.4} at infinite size and data)",
                d + ceiling
            )));
        }
        let latent = l + ratio.ln();
        let size_term = latent - b * d0.powf(-beta);
        if size_term.is_nan() || size_term <= 0.0 {
            return Err(LawError::OutOfRange(format!(
                "score {score:.4} is beyond what any size reaches at D0 = {d0:.3e} tokens \
                 under the reference family's fit"
            )));
        }
        Ok((a / size_term).powf(1.0 / alpha))
    }
}

/// A single-budget reference family's score as a function of size alone (each family model
/// trained with the family's one recipe, so its token budget is fixed or a function of N):
/// `S(N) = floor + (1 − floor) / (1 + e^(−k·(ln N − m)))`, parameters (k, m): a logistic in
/// ln N between the score's chance level and a perfect score, the form observational scaling
/// fits to benchmark scores (Ruan et al. 2024: a sigmoid of a log-compute measure). Both ends
/// are known, not fitted: with a free ceiling the fit settles just above the family's best
/// model (Pythia on ARC-c/HellaSwag/WinoGrande: 0.61 against 12B's 0.59), and every stronger
/// model would be unreachable.
#[derive(Clone, Copy, Debug)]
pub struct LogisticLogSizeLaw {
    /// Chance-level score.
    pub floor: f64,
}

const LOGISTIC_PARAMETERS: [Parameter; 2] = [
    Parameter::new("k", Bound::Positive),
    Parameter::new("m", Bound::Free),
];

impl Law for LogisticLogSizeLaw {
    fn name(&self) -> &str {
        "reference-logistic-ln-n"
    }
    fn formula(&self) -> &str {
        "S(N) = floor + (1 - floor) / (1 + exp(-k * (ln N - m)))"
    }
    fn inputs(&self) -> &[&'static str] {
        &["N"]
    }
    fn parameters(&self) -> &[Parameter] {
        &LOGISTIC_PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        self.floor + (1.0 - self.floor) / (1.0 + (-t[0] * (x[0].ln() - t[1])).exp())
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        let mut starts = Vec::new();
        for k in [0.1, 0.3, 1.0, 3.0] {
            for m in [18.0, 21.0, 24.0, 27.0, 30.0] {
                starts.push(vec![k, m]);
            }
        }
        starts
    }
}

impl LogisticLogSizeLaw {
    /// The reference form this law fits.
    pub fn form(self) -> crate::effective::ReferenceForm {
        crate::effective::ReferenceForm::LogisticLogSize { floor: self.floor }
    }

    /// N̂ for `score`, from fitted parameters (k, m); refused at or below chance and at 1.
    pub fn effective_params(&self, theta: &[f64], score: f64) -> Result<f64, LawError> {
        let (k, m) = (theta[0], theta[1]);
        let ratio = (1.0 - self.floor) / (score - self.floor) - 1.0;
        if ratio.is_nan() || ratio <= 0.0 || score <= self.floor || k <= 0.0 {
            return Err(LawError::OutOfRange(format!(
                "score {score:.4} is outside what the reference family's fit can reach \
                 (above {:.4}, chance, and below 1)",
                self.floor
            )));
        }
        Ok((m - ratio.ln() / k).exp())
    }
}

/// Effective parameter size and density of one model, with intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityEstimate {
    /// The model.
    pub label: String,
    /// Its measured score.
    pub score: f64,
    /// Standard error of the score, if known.
    pub score_stderr: Option<f64>,
    /// Its actual parameter count N.
    pub params: f64,
    /// Effective parameter size N̂ (best fit).
    pub effective_params: f64,
    /// Interval for N̂.
    pub effective_params_ci: Option<(f64, f64)>,
    /// Density ρ = N̂ / N.
    pub density: f64,
    /// Interval for ρ.
    pub density_ci: Option<(f64, f64)>,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Replicates that gave a finite N̂ (of those drawn).
    pub replicates_used: usize,
    /// True when N̂ lies outside the parameter range of the reference points (extrapolation).
    pub extrapolated: bool,
}

/// Maps reference-fit parameters and a score to N̂.
pub type Inversion<'a> = dyn Fn(&[f64], f64) -> Result<f64, LawError> + 'a;

/// Estimates N̂ and ρ for a model scoring `score` (± `score_stderr`) with `params` parameters.
/// `invert(θ, S)` maps reference-fit parameters and a score to N̂; the interval comes from the
/// fit's bootstrap replicates, each paired with a score drawn from N(score, stderr²).
#[allow(clippy::too_many_arguments)]
pub fn estimate_density(
    label: &str,
    reference: &FitReport,
    invert: &Inversion<'_>,
    score: f64,
    score_stderr: Option<f64>,
    params: f64,
    seed: u64,
    confidence: f64,
) -> Result<DensityEstimate, LawError> {
    if params.is_nan() || params <= 0.0 {
        return Err(LawError::BadInput(format!(
            "{label}: parameter count {params} must be positive"
        )));
    }
    let n_hat = invert(&reference.values(), score)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(reference.bootstrap_parameters.len());
    for theta in &reference.bootstrap_parameters {
        let s = match score_stderr {
            Some(se) if se > 0.0 => score + se * standard_normal(&mut rng),
            _ => score,
        };
        if let Ok(v) = invert(theta, s) {
            if v.is_finite() && v > 0.0 {
                samples.push(v);
            }
        }
    }
    let alpha = (1.0 - confidence) / 2.0;
    let interval =
        |values: &[f64]| Some((percentile(values, alpha)?, percentile(values, 1.0 - alpha)?));
    let n_ci = interval(&samples);
    let (n_min, n_max) = reference
        .points
        .iter()
        .map(|p| p.x[0])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), n| {
            (lo.min(n), hi.max(n))
        });
    Ok(DensityEstimate {
        label: label.to_string(),
        score,
        score_stderr,
        params,
        effective_params: n_hat,
        effective_params_ci: n_ci,
        density: n_hat / params,
        density_ci: n_ci.map(|(lo, hi)| (lo / params, hi / params)),
        confidence,
        replicates_used: samples.len(),
        extrapolated: n_hat < n_min || n_hat > n_max,
    })
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversions_undo_the_laws() {
        let loss_theta = [400.0, 0.34, 410.0, 0.28];
        let loss = LossLaw.predict(&[1e9, 1e12], &loss_theta);
        let n = effective_params_from_loss(&loss_theta, loss, 1e12).expect("invertible");
        assert!((n / 1e9 - 1.0).abs() < 1e-9);

        let perf_theta = [0.7, -4.0, 2.5, 0.25];
        let s = PerformanceLaw.predict(&[2.3], &perf_theta);
        let l = PerformanceLaw::invert(&perf_theta, s).expect("invertible");
        assert!((l - 2.3).abs() < 1e-9);
        assert!(PerformanceLaw::invert(&perf_theta, 0.99).is_err());

        // Both steps: the score of a 1B model trained on 1T tokens maps back to 1B.
        let score = PerformanceLaw.predict(&[loss], &perf_theta);
        let n =
            two_step_effective_params(&loss_theta, &perf_theta, score, 1e12).expect("invertible");
        assert!((n / 1e9 - 1.0).abs() < 1e-6, "{n:e}");

        let family = [50.0, 0.3, 300.0, 0.3, 0.5, 0.8, 0.3];
        let s = ReferenceFamilyLaw.predict(&[2e9, 3e11], &family);
        let n = ReferenceFamilyLaw::effective_params(&family, s, 3e11).expect("invertible");
        assert!((n / 2e9 - 1.0).abs() < 1e-9);
        assert!(ReferenceFamilyLaw::effective_params(&family, 0.95, 3e11).is_err());
        assert!(ReferenceFamilyLaw::effective_params(&family, 0.2, 3e11).is_err());

        let law = LogisticLogSizeLaw { floor: 1.0 / 3.0 };
        let theta = [0.8, 22.0];
        let s = law.predict(&[3e9], &theta);
        let n = law.effective_params(&theta, s).expect("invertible");
        assert!((n / 3e9 - 1.0).abs() < 1e-9, "{n:e}");
        assert!(law.effective_params(&theta, 1.0).is_err());
        assert!(law.effective_params(&theta, law.floor).is_err());
    }
}
