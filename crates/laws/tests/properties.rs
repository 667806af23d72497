//! Property tests: data generated from each law with known parameters plus noise is fitted back
//! within tolerance, and degenerate inputs are refused with the matching error. The case
//! generator is seeded, so CI runs the same cases every time.

use lmdensity_laws::chinchilla::{fit_variable_projection, ChinchillaLaw};
use lmdensity_laws::densing::{LossLaw, PerformanceLaw, ReferenceFamilyLaw};
use lmdensity_laws::fit::{fit, fit_with, FitOptions, Law, Point};
use lmdensity_laws::gadre::{ErrorLaw, OverTrainingLaw};
use lmdensity_laws::robust::HuberLse;
use lmdensity_laws::LawError;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn no_bootstrap() -> FitOptions {
    FitOptions {
        bootstrap: 0,
        leave_one_out: false,
        ..FitOptions::default()
    }
}

/// Points of `law` at `inputs`, with Gaussian noise of relative size `noise`.
fn generate(
    law: &dyn Law,
    theta: &[f64],
    inputs: &[Vec<f64>],
    noise: f64,
    seed: u64,
) -> Vec<Point> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random_range(0.0..1.0);
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let y = law.predict(x, theta);
            Point::new(format!("p{i}"), x.clone(), y * (1.0 + noise * z))
        })
        .collect()
}

fn relative(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn grid(first: &[f64], second: &[f64]) -> Vec<Vec<f64>> {
    first
        .iter()
        .flat_map(|&a| second.iter().map(move |&b| vec![a, b]))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, rng_seed: RngSeed::Fixed(2024), ..ProptestConfig::default() })]

    #[test]
    fn error_law_is_recovered(k in 1.0f64..4.0, gamma in 0.4f64..1.2, epsilon in 0.8f64..0.95, seed in any::<u64>()) {
        let theta = [k, gamma, epsilon];
        let inputs: Vec<Vec<f64>> = (0..14).map(|i| vec![2.0 + 0.25 * i as f64]).collect();
        let points = generate(&ErrorLaw, &theta, &inputs, 0.002, seed);
        let report = fit(&ErrorLaw, &points, &no_bootstrap()).expect("fits");
        for x in &inputs {
            let error = (ErrorLaw.predict(x, &report.values()) - ErrorLaw.predict(x, &theta)).abs();
            prop_assert!(error < 0.01, "at L = {}: {error}", x[0]);
        }
        prop_assert!(relative(report.values()[2], epsilon) < 0.05);
    }

    #[test]
    fn overtraining_law_is_recovered(alpha in 100.0f64..300.0, beta in 200.0f64..500.0, b in -0.35f64..-0.2, e in 1.5f64..2.2, seed in any::<u64>()) {
        let theta = [alpha, beta, b, e];
        let inputs = grid(&[1e7, 8e7, 4e8, 1.4e9, 7e9], &[20.0, 80.0, 320.0, 640.0]);
        let points = generate(&OverTrainingLaw, &theta, &inputs, 0.001, seed);
        let report = fit(&OverTrainingLaw, &points, &no_bootstrap()).expect("fits");
        let v = report.values();
        prop_assert!(relative(v[3], e) < 0.05, "E {v:?} vs {theta:?}");
        prop_assert!(relative(v[2], b) < 0.1, "b {v:?} vs {theta:?}");
        let far = [3e10, 20.0];
        prop_assert!(relative(OverTrainingLaw.predict(&far, &v), OverTrainingLaw.predict(&far, &theta)) < 0.01);
    }

    #[test]
    fn densing_performance_law_is_recovered(c in 0.5f64..0.7, gamma in -5.0f64..-2.0, l in 2.5f64..3.5, d in 0.2f64..0.3, seed in any::<u64>()) {
        let theta = [c, gamma, l, d];
        let inputs: Vec<Vec<f64>> = (0..16).map(|i| vec![1.5 + 0.2 * i as f64]).collect();
        let points = generate(&PerformanceLaw, &theta, &inputs, 0.003, seed);
        let report = fit(&PerformanceLaw, &points, &no_bootstrap()).expect("fits");
        prop_assert!(relative(report.values()[2], l) < 0.05, "{:?} vs {theta:?}", report.values());
        for x in &inputs {
            prop_assert!((PerformanceLaw.predict(x, &report.values()) - PerformanceLaw.predict(x, &theta)).abs() < 0.015);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, rng_seed: RngSeed::Fixed(2024), ..ProptestConfig::default() })]

    #[test]
    fn chinchilla_is_recovered_by_both_objectives(e in 1.5f64..2.0, a in 200.0f64..600.0, alpha in 0.25f64..0.4, b in 300.0f64..600.0, beta in 0.25f64..0.35, seed in any::<u64>()) {
        let theta = [e, a, alpha, b, beta];
        let inputs = grid(&[1e7, 6e7, 3e8, 1.5e9, 7e9], &[2e9, 1e10, 5e10, 2.5e11, 1e12]);
        let points = generate(&ChinchillaLaw, &theta, &inputs, 0.002, seed);
        let least_squares = fit(&ChinchillaLaw, &points, &no_bootstrap()).expect("LM fits");
        let huber = fit_with(&ChinchillaLaw, &points, &no_bootstrap(), &HuberLse::default()).expect("Huber fits");
        let projected = fit_variable_projection(&points, &no_bootstrap()).expect("VarPro fits");
        for report in [&least_squares, &huber, &projected] {
            let v = report.values();
            prop_assert!(relative(v[0], e) < 0.05, "{} E {v:?} vs {theta:?}", report.law);
            prop_assert!(relative(v[2], alpha) < 0.15, "{} alpha {v:?} vs {theta:?}", report.law);
            prop_assert!(relative(v[4], beta) < 0.15, "{} beta {v:?} vs {theta:?}", report.law);
            prop_assert!(report.r2 > 0.99);
        }
    }

    #[test]
    fn densing_loss_law_is_recovered(a in 200.0f64..600.0, alpha in 0.25f64..0.4, b in 300.0f64..600.0, beta in 0.25f64..0.35, seed in any::<u64>()) {
        let theta = [a, alpha, b, beta];
        let inputs = grid(&[1e7, 6e7, 3e8, 1.5e9, 7e9], &[2e9, 1e10, 5e10, 2.5e11, 1e12]);
        let points = generate(&LossLaw, &theta, &inputs, 0.002, seed);
        let v = fit(&LossLaw, &points, &no_bootstrap()).expect("fits").values();
        prop_assert!(relative(v[1], alpha) < 0.1, "{v:?} vs {theta:?}");
        prop_assert!(relative(v[3], beta) < 0.1, "{v:?} vs {theta:?}");
    }

    #[test]
    fn reference_family_law_inverts_to_the_true_size(alpha in 0.2f64..0.4, beta in 0.2f64..0.4, l in -0.5f64..0.5, seed in any::<u64>()) {
        // Coefficients put both terms of the latent loss at 2 in the middle of the grid, so
        // that size and data both move the score.
        let theta = [2.0 * 1e9f64.powf(alpha), alpha, 2.0 * 3e10f64.powf(beta), beta, l + 4.0, 0.8, 0.3];
        let inputs = grid(&[7e7, 1.6e8, 4e8, 1e9, 1.4e9, 2.8e9, 6.9e9, 1.2e10], &[2e9, 8e9, 3e10, 1e11, 3e11]);
        let points = generate(&ReferenceFamilyLaw, &theta, &inputs, 0.002, seed);
        let report = fit(&ReferenceFamilyLaw, &points, &no_bootstrap()).expect("fits");
        for n in [2e8, 2e9] {
            let score = ReferenceFamilyLaw.predict(&[n, 3e11], &theta);
            let n_hat = ReferenceFamilyLaw::effective_params(&report.values(), score, 3e11).expect("invertible");
            prop_assert!(relative(n_hat, n) < 0.25, "N̂ {n_hat:.3e} vs {n:.3e}");
        }
    }

    #[test]
    fn degenerate_inputs_are_refused(n in 1usize..5, value in 1e7f64..1e10) {
        // Fewer points than the five Chinchilla parameters.
        let few: Vec<Point> = (0..n).map(|i| Point::new(format!("p{i}"), vec![value * (i + 1) as f64, 1e10 * (i + 1) as f64], 3.0)).collect();
        let refused = matches!(fit(&ChinchillaLaw, &few, &no_bootstrap()), Err(LawError::TooFewPoints { needed: 5, .. }));
        prop_assert!(refused);
        // Enough points, but every model has the same N.
        let same_n: Vec<Point> = (0..8).map(|i| Point::new(format!("p{i}"), vec![value, 1e9 * (i + 1) as f64], 3.0 - 0.1 * i as f64)).collect();
        let err = fit(&ChinchillaLaw, &same_n, &no_bootstrap()).expect_err("no spread in N");
        prop_assert!(err.to_string().contains("same N"), "{err}");
    }
}
