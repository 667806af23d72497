//! Hoffmann et al. 2022 ("Chinchilla"): `L(N, D) = E + A/N^α + B/D^β`.

use crate::fit::{Bound, Law, Parameter};

/// `L(N, D) = E + A/N^α + B/D^β`, parameters in the order (E, A, α, B, β).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChinchillaLaw;

const PARAMETERS: [Parameter; 5] = [
    Parameter::new("E", Bound::Positive),
    Parameter::new("A", Bound::Positive),
    Parameter::new("alpha", Bound::Positive),
    Parameter::new("B", Bound::Positive),
    Parameter::new("beta", Bound::Positive),
];

impl Law for ChinchillaLaw {
    fn name(&self) -> &str {
        "chinchilla"
    }
    fn formula(&self) -> &str {
        "L(N, D) = E + A / N^alpha + B / D^beta"
    }
    fn inputs(&self) -> &[&'static str] {
        &["N", "D"]
    }
    fn parameters(&self) -> &[Parameter] {
        &PARAMETERS
    }
    fn predict(&self, x: &[f64], t: &[f64]) -> f64 {
        t[0] + t[1] / x[0].powf(t[2]) + t[3] / x[1].powf(t[4])
    }
    fn starts(&self) -> Vec<Vec<f64>> {
        // Hoffmann et al.'s grid (their Appendix D.2), written as E = e^e, A = e^a, B = e^b:
        // α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}. Starts with a
        // zero exponent lie on the bound and are skipped by bounded solvers.
        let exponents = [0.0, 0.5, 1.0, 1.5, 2.0];
        let mut starts = Vec::new();
        for e in [-1.0f64, -0.5, 0.0, 0.5, 1.0] {
            for a in [0.0f64, 5.0, 10.0, 15.0, 20.0, 25.0] {
                for b in [0.0f64, 5.0, 10.0, 15.0, 20.0, 25.0] {
                    for alpha in exponents {
                        for beta in exponents {
                            starts.push(vec![e.exp(), a.exp(), alpha, b.exp(), beta]);
                        }
                    }
                }
            }
        }
        starts
    }
}

/// Variable projection for [`ChinchillaLaw`]: for every (α, β) on a grid, the linear
/// coefficients (E, A, B) are the non-negative least-squares solution of
/// `L ≈ E + A·N^(−α) + B·D^(−β)`; the best grid point starts a bounded Levenberg–Marquardt fit
/// (through [`crate::fit::fit`], so intervals, R² and leave-one-out come with it).
pub fn fit_variable_projection(
    points: &[crate::fit::Point],
    options: &crate::fit::FitOptions,
) -> Result<crate::fit::FitReport, crate::LawError> {
    crate::fit::check_determined(&ChinchillaLaw, points, options.residual)?;
    let grid: Vec<f64> = (1..=100).map(|i| 0.01 * i as f64).collect();
    let mut best: Option<(f64, [f64; 5])> = None;
    for &alpha in &grid {
        for &beta in &grid {
            let columns: Vec<[f64; 3]> = points
                .iter()
                .map(|p| [1.0, p.x[0].powf(-alpha), p.x[1].powf(-beta)])
                .collect();
            let targets: Vec<f64> = points.iter().map(|p| p.y).collect();
            if let Some((coefficients, rss)) = nonnegative_least_squares(&columns, &targets) {
                if best.as_ref().is_none_or(|(b, _)| rss < *b) {
                    let [e, a, b] = coefficients;
                    best = Some((rss, [e, a, alpha, b, beta]));
                }
            }
        }
    }
    let Some((_, start)) = best else {
        return Err(crate::LawError::NotConverged {
            law: "chinchilla-varpro".into(),
            detail: "no grid point gave a finite least-squares solution".into(),
        });
    };
    // Zero coefficients sit on the positivity bound: start just inside it.
    let start: Vec<f64> = start.iter().map(|v| v.max(1e-9)).collect();
    let mut report = crate::fit::fit(
        &crate::fit::WithStarts {
            law: &ChinchillaLaw,
            starts: vec![start],
        },
        points,
        options,
    )?;
    report.method = format!("variable-projection grid + {}", report.method);
    Ok(report)
}

/// Minimises ‖X·c − y‖² subject to c ≥ 0 for three columns, by trying every active set.
fn nonnegative_least_squares(rows: &[[f64; 3]], y: &[f64]) -> Option<([f64; 3], f64)> {
    let mut best: Option<([f64; 3], f64)> = None;
    for mask in 1u8..8 {
        let active: Vec<usize> = (0..3).filter(|j| mask & (1 << j) != 0).collect();
        let k = active.len();
        let x = nalgebra::DMatrix::from_fn(rows.len(), k, |i, j| rows[i][active[j]]);
        let target = nalgebra::DVector::from_column_slice(y);
        let solution = (x.transpose() * &x)
            .cholesky()?
            .solve(&(x.transpose() * &target));
        if solution.iter().any(|c| *c < 0.0 || !c.is_finite()) {
            continue;
        }
        let residual = &x * &solution - &target;
        let rss = residual.norm_squared();
        let mut coefficients = [0.0; 3];
        for (j, &column) in active.iter().enumerate() {
            coefficients[column] = solution[j];
        }
        if best.as_ref().is_none_or(|(_, b)| rss < *b) {
            best = Some((coefficients, rss));
        }
    }
    best
}
