//! Hoffmann et al. 2022 ("Chinchilla"): `L(N, D) = E + A/N^α + B/D^β`.

use crate::fit::{Bound, Law, Parameter};

/// `L(N, D) = E + A/N^α + B/D^β`, parameters in the order (E, A, α, B, β).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChinchillaLaw;

const PARAMETERS: [Parameter; 5] = [
    Parameter {
        name: "E",
        bound: Bound::Positive,
    },
    Parameter {
        name: "A",
        bound: Bound::Positive,
    },
    Parameter {
        name: "alpha",
        bound: Bound::Positive,
    },
    Parameter {
        name: "B",
        bound: Bound::Positive,
    },
    Parameter {
        name: "beta",
        bound: Bound::Positive,
    },
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
