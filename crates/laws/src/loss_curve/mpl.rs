//! The Multi-Power Law of Luo et al. 2025 ("A Multi-Power Law for Loss Curve Prediction Across
//! Learning Rate Schedules", arXiv:2503.12811), as their code computes it:
//!
//! L(t) = L0 + A·(S1(t) + S_W)^(−α) − LD(t), S1(t) = Σ_{τ≤t} η_τ from step 0 (so the warmup
//! area S_W is inside it), LD(t) = B Σ_{k=1..t} (η_{k−1} − η_k)·G(η_k^(−γ)·S_k(t)),
//! S_k(t) = Σ_{τ=k..t} η_τ, G(x) = 1 − (C·x + 1)^(−β).
//!
//! Only steps where η changes contribute to LD, and S_k(t) = P_t − P_{k−1} from the prefix
//! sums P, so a point costs one term per change before it (for the nine schedules here: the
//! 2159 warmup steps, plus every step of a cosine or a decay); η_k^(−γ) is computed once per
//! change and evaluation.

use super::fastmath;
use super::schedule::Schedule;
use super::solver::{parallel_ranges, Model};
use super::{Curve, CurveLawName};

/// Parameter names, in the order of θ.
pub const PARAMETERS: [&str; 7] = ["L0", "A", "alpha", "B", "C", "beta", "gamma"];

/// The authors' AdamW learning rates: 5e-2 for L0, A, B, C and 5e-3 for α, β, γ.
pub const ADAM_LEARNING_RATES: [f64; 7] = [5e-2, 5e-2, 5e-3, 5e-2, 5e-2, 5e-3, 5e-3];

/// The Multi-Power Law.
#[derive(Clone, Copy, Debug, Default)]
pub struct MultiPowerLaw;

/// Where η changes: η_{k−1} − η_k, ln η_k and P_{k−1}, for every such step k (in order).
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes {
    drop: Vec<f64>,
    ln_eta: Vec<f64>,
    p_before: Vec<f64>,
}

impl Changes {
    /// The changes of a schedule with prefix sums `p`.
    fn of(schedule: &Schedule, p: &[f64]) -> (Changes, Vec<usize>) {
        let mut changes = Changes::default();
        let mut steps = Vec::new();
        for k in 1..schedule.rates.len() {
            let (before, now) = (schedule.rates[k - 1], schedule.rates[k]);
            if before != now {
                changes.drop.push(before - now);
                // A zero rate would make η^(−γ) infinite; it is floored far below any real one.
                changes.ln_eta.push(now.max(1e-30).ln());
                changes.p_before.push(p[k - 1]);
                steps.push(k);
            }
        }
        (changes, steps)
    }
}

/// A curve prepared for the Multi-Power Law: its changes and, per point, S1 and how many
/// changes lie at or before it.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    changes: Changes,
    s1: Vec<f64>,
    n_changes: Vec<usize>,
}

/// Σ over changes of ΔηG and the sums the gradient needs, at one point.
#[derive(Clone, Copy, Default)]
struct Sums {
    g: f64,
    lu: f64,
    q1: f64,
    q2: f64,
}

/// x, ln(1 + x) and (1 + x)^(−β).
#[inline(always)]
fn term(x: f64, beta: f64) -> (f64, f64, f64) {
    let lu = fastmath::ln_1p(x);
    (x, lu, fastmath::exp_neg(-beta * lu))
}

/// Lanes of the inner loop (four f64 fill an AVX2 register).
const LANES: usize = 4;

impl Prepared {
    /// The loss-drop sums at point `i` with w_k = C·η_k^(−γ): per change,
    /// x = w_k·S_k(t), ln u = ln(1 + x), e = u^(−β) and G = 1 − e.
    fn sums(&self, i: usize, w: &[f64], beta: f64, grad: bool) -> Sums {
        let n = self.n_changes[i];
        let s1 = self.s1[i];
        let c = &self.changes;
        let (w, before, drop, ln_eta) = (&w[..n], &c.p_before[..n], &c.drop[..n], &c.ln_eta[..n]);
        // Per-lane accumulators over chunks of four, so that four terms are computed side by
        // side; one loop without and one with the gradient's sums, each free of branches.
        let mut acc = [[0.0f64; LANES]; 4];
        let chunks = w
            .chunks_exact(LANES)
            .zip(before.chunks_exact(LANES))
            .zip(drop.chunks_exact(LANES).zip(ln_eta.chunks_exact(LANES)));
        if grad {
            for ((w4, b4), (d4, l4)) in chunks {
                for lane in 0..LANES {
                    let (x, lu, e) = term(w4[lane] * (s1 - b4[lane]), beta);
                    let d = d4[lane];
                    // e = 0 where x overflows: the gradient terms vanish there (not ∞·0).
                    let de = if e > 0.0 { d * e } else { 0.0 };
                    let h = de * (x / (1.0 + x));
                    acc[0][lane] += d * (1.0 - e);
                    acc[1][lane] += de * lu;
                    acc[2][lane] += h;
                    acc[3][lane] += h * l4[lane];
                }
            }
        } else {
            for ((w4, b4), (d4, _)) in chunks {
                for lane in 0..LANES {
                    let (_, _, e) = term(w4[lane] * (s1 - b4[lane]), beta);
                    acc[0][lane] += d4[lane] * (1.0 - e);
                }
            }
        }
        let full = n - n % LANES;
        let mut out = Sums {
            g: acc[0].iter().sum(),
            lu: acc[1].iter().sum(),
            q1: acc[2].iter().sum(),
            q2: acc[3].iter().sum(),
        };
        for k in full..n {
            let (x, lu, e) = term(w[k] * (s1 - before[k]), beta);
            let d = drop[k];
            out.g += d * (1.0 - e);
            if grad && e > 0.0 {
                let h = d * e * (x / (1.0 + x));
                out.lu += d * lu * e;
                out.q1 += h;
                out.q2 += h * ln_eta[k];
            }
        }
        out
    }
}

impl Model for MultiPowerLaw {
    type Prepared = Prepared;

    fn n_params(&self) -> usize {
        PARAMETERS.len()
    }

    fn prepare(&self, curve: &Curve) -> Prepared {
        let p = curve.schedule.prefix_sums();
        let (changes, change_steps) = Changes::of(&curve.schedule, &p);
        Prepared {
            changes,
            s1: curve.steps.iter().map(|&t| p[t]).collect(),
            n_changes: curve
                .steps
                .iter()
                .map(|&t| change_steps.partition_point(|&k| k <= t))
                .collect(),
        }
    }

    fn evaluate(&self, prep: &Prepared, theta: &[f64], grad: bool) -> (Vec<f64>, Vec<f64>) {
        let [l0, a, alpha, b, c, beta, gamma] = [0, 1, 2, 3, 4, 5, 6].map(|j| theta[j]);
        let w: Vec<f64> = prep
            .changes
            .ln_eta
            .iter()
            .map(|l| c * (-gamma * l).exp())
            .collect();
        let chunks = parallel_ranges(&prep.n_changes, |range| {
            let mut pred = Vec::with_capacity(range.len());
            let mut dpred = Vec::with_capacity(if grad { range.len() * 7 } else { 0 });
            for i in range {
                let s = prep.sums(i, &w, beta, grad);
                let s1 = prep.s1[i];
                let power = a * s1.powf(-alpha);
                pred.push(l0 + power - b * s.g);
                if grad {
                    dpred.extend_from_slice(&[
                        l0,
                        power,
                        -alpha * s1.ln() * power,
                        -b * s.g,
                        -b * beta * s.q1,
                        -b * beta * s.lu,
                        b * beta * gamma * s.q2,
                    ]);
                }
            }
            (pred, dpred)
        });
        let mut pred = Vec::with_capacity(prep.s1.len());
        let mut dpred = Vec::new();
        for (p, d) in chunks {
            pred.extend(p);
            dpred.extend(d);
        }
        (pred, dpred)
    }
}

impl MultiPowerLaw {
    /// The law's name.
    pub const NAME: CurveLawName = CurveLawName::Mpl;

    /// The formula as the authors' code computes it.
    pub const FORMULA: &'static str = "L(t) = L0 + A·S1(t)^(−alpha) − B·Σ_{k≤t} (η_{k−1} − η_k)·(1 − (C·η_k^(−gamma)·S_k(t) + 1)^(−beta)), S1 = Σ_{τ≤t} η_τ from step 0, S_k(t) = Σ_{τ=k..t} η_τ";

    /// Predictions of the law with parameters `theta` (in [`PARAMETERS`] order) at `steps` of
    /// `schedule` (each below its length and at least 1).
    pub fn predict(schedule: &Schedule, steps: &[usize], theta: &[f64]) -> Vec<f64> {
        let curve = Curve {
            name: String::new(),
            schedule: schedule.clone(),
            steps: steps.to_vec(),
            losses: vec![1.0; steps.len()],
        };
        let law = MultiPowerLaw;
        law.evaluate(&law.prepare(&curve), theta, false).0
    }

    /// The authors' start: their initialisation of (L0, A, α, B) (see `starts`) with
    /// (C, β, γ) = (1, 0.5, 0.5).
    pub(crate) fn authors_start(curves: &[Curve]) -> Option<Vec<f64>> {
        let [l0, a, alpha, b] = super::surrogate::initial_guess(curves)?;
        Some(vec![l0, a, alpha, b, 1.0, 0.5, 0.5])
    }

    /// Starting points: the authors' initialisation (their `initialize_params`: the surrogate
    /// L0 + A·S1^(−α) − B·(η_max − η_t) fitted from a 5×3×3×3 grid around a log-log
    /// regression, here by L-BFGS on the same Huber objective), extended over a grid of
    /// (C, β, γ) around their single start (1, 0.5, 0.5).
    pub(crate) fn starts(curves: &[Curve]) -> Vec<Vec<f64>> {
        let Some([l0, a, alpha, b]) = super::surrogate::initial_guess(curves) else {
            return Vec::new();
        };
        let mut starts = Vec::new();
        for c in [0.5, 1.0, 2.0, 4.0] {
            for beta in [0.3, 0.5, 0.7] {
                for gamma in [0.3, 0.5, 0.7] {
                    starts.push(vec![l0, a, alpha, b, c, beta, gamma]);
                }
            }
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::super::schedule::KnownSchedule;
    use super::*;

    /// LD(t) = Σ_{k=1..t} (η_{k−1} − η_k)·G(η_k^(−γ)·Σ_{τ=k..t} η_τ), term by term.
    fn naive(rates: &[f64], t: usize, theta: &[f64]) -> f64 {
        let [l0, a, alpha, b, c, beta, gamma] = [0, 1, 2, 3, 4, 5, 6].map(|j| theta[j]);
        let s1: f64 = rates[..=t].iter().sum();
        let mut ld = 0.0;
        for k in 1..=t {
            let sk: f64 = rates[k..=t].iter().sum();
            let x = rates[k].powf(-gamma) * sk;
            ld += (rates[k - 1] - rates[k]) * (1.0 - (c * x + 1.0).powf(-beta));
        }
        l0 + a * s1.powf(-alpha) - b * ld
    }

    fn small_schedule() -> Schedule {
        // Warmup, hold, a drop, a linear decay, a rise and a hold: every kind of change.
        let mut rates = vec![0.0];
        rates.extend((1..20).map(|s| 3e-4 * s as f64 / 19.0));
        rates.extend(std::iter::repeat_n(3e-4, 30));
        rates.extend(std::iter::repeat_n(1e-4, 20));
        rates.extend((0..40).map(|s| 1e-4 - 2e-6 * s as f64));
        rates.extend(std::iter::repeat_n(2e-4, 30));
        Schedule {
            source: super::super::schedule::ScheduleSource::Logged,
            rates,
        }
    }

    #[test]
    fn loss_drop_matches_the_naive_double_sum() {
        let schedule = small_schedule();
        let theta = [3.0, 0.5, 0.5, 400.0, 2.0, 0.6, 0.65];
        let steps: Vec<usize> = (1..schedule.len()).step_by(7).collect();
        let fast = MultiPowerLaw::predict(&schedule, &steps, &theta);
        for (&t, f) in steps.iter().zip(&fast) {
            let slow = naive(&schedule.rates, t, &theta);
            assert!(
                (f - slow).abs() < 1e-12 * slow.abs(),
                "t={t}: {f} vs {slow}"
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let schedule = small_schedule();
        let curve = Curve {
            name: "small".into(),
            schedule,
            steps: vec![5, 40, 60, 90, 120, 138],
            losses: vec![1.0; 6],
        };
        let law = MultiPowerLaw;
        let prep = law.prepare(&curve);
        let theta = [3.0, 0.5, 0.5, 400.0, 2.0, 0.6, 0.65];
        let (_, d) = law.evaluate(&prep, &theta, true);
        for j in 0..7 {
            let h: f64 = 1e-6;
            let mut up = theta;
            up[j] *= h.exp();
            let mut down = theta;
            down[j] *= (-h).exp();
            let (pu, _) = law.evaluate(&prep, &up, false);
            let (pd, _) = law.evaluate(&prep, &down, false);
            for i in 0..6 {
                let numeric = (pu[i] - pd[i]) / (2.0 * h);
                let analytic = d[i * 7 + j];
                assert!(
                    (numeric - analytic).abs() < 1e-6 * (1.0 + analytic.abs()),
                    "param {j}, point {i}: {analytic} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn constant_schedule_has_only_the_warmup_changes() {
        let schedule = Schedule::known(KnownSchedule::Constant { total: 24000 });
        let p = schedule.prefix_sums();
        let (changes, steps) = Changes::of(&schedule, &p);
        assert_eq!(steps.len(), 2159);
        assert_eq!(*steps.last().expect("changes"), 2159);
        let total_drop: f64 = changes.drop.iter().sum();
        assert!((total_drop + 3e-4).abs() < 1e-15);
    }
}
