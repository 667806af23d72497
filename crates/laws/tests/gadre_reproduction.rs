//! Reproduces Gadre et al.'s own fits on their released data (RedPajama, C4-eval loss,
//! 17-task mean top-1 error), through the same function `lmdensity fit gadre` calls, on the
//! copy built into the library (checked equal to the raw JSON files in `data/gadre-scaling/`).
//!
//! Targets, from re-running the paper's code on the same points (data/gadre-scaling/README.md):
//! loss law (α, β, b, E) = (166, 367, −0.2729, 1.837); error law (k, γ, ε) = (2.206, 0.715,
//! 0.857); 1.4B at M = 640: predicted loss 2.520 (measured 2.502), predicted error 0.4925
//! (measured 0.4752).

use std::path::PathBuf;

use lmdensity_laws::fit::FitOptions;
use lmdensity_laws::gadre::{ErrorLaw, OverTrainingLaw};
use lmdensity_laws::reference::{find_gadre_run, load_gadre_runs, shipped_gadre_runs};
use lmdensity_laws::reproduction::{loss_fit_set, loss_of, reproduce_gadre};
use lmdensity_laws::Law;

fn exp_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/gadre-scaling/exp_data")
}

fn close(actual: f64, expected: f64, relative: f64) -> bool {
    ((actual - expected) / expected).abs() <= relative
}

#[test]
fn the_built_in_copy_is_the_released_files() {
    let from_files = load_gadre_runs(&exp_data()).expect("reference data");
    assert_eq!(from_files.len(), 104);
    let built_in = shipped_gadre_runs().expect("built-in data");
    assert_eq!(built_in.len(), from_files.len());
    for (a, b) in built_in.iter().zip(&from_files) {
        assert_eq!(
            (&a.name, &a.losses, &a.errors),
            (&b.name, &b.losses, &b.errors)
        );
    }
}

#[test]
fn reproduces_the_papers_fits_and_predictions() {
    let runs = shipped_gadre_runs().expect("reference data");
    let options = FitOptions {
        bootstrap: 200,
        ..FitOptions::default()
    };
    // The paper's fit set: four sizes at M = 20 plus the smallest at M = 320.
    let names: Vec<&str> = loss_fit_set(&runs, "rpj")
        .expect("fit set")
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names.len(), 5);
    assert!(
        names[4].contains("d=96_l=8_h=4") && names[4].ends_with("16.0"),
        "{names:?}"
    );
    let fits = reproduce_gadre(&runs, "rpj", "c4_val", &options).expect("fits");
    let l = fits.loss_law.values();
    assert!(close(l[0], 166.0, 0.01), "alpha {l:?}");
    assert!(close(l[1], 367.0, 0.01), "beta {l:?}");
    assert!(close(l[2], -0.2729, 0.005), "b {l:?}");
    assert!(close(l[3], 1.837, 0.005), "E {l:?}");

    // The error law adds the 1.4B model at M = 20.
    let error_fit = &fits.error_law;
    assert_eq!(error_fit.n_points, 6);
    let e = error_fit.values();
    assert!(close(e[0], 2.206, 0.005), "k {e:?}");
    assert!(close(e[1], 0.715, 0.005), "gamma {e:?}");
    assert!(close(e[2], 0.857, 0.005), "epsilon {e:?}");
    assert!(error_fit.r2 > 0.99, "R² {}", error_fit.r2);
    let k = &error_fit.parameters[0];
    assert!(k.ci_low.expect("ci") <= k.value && k.value <= k.ci_high.expect("ci"));

    // Held-out prediction: the 1.4B model over-trained to M = 640.
    let target = find_gadre_run(&runs, "rpj", "open_lm_1b", 640.0).expect("run");
    let predicted_loss = OverTrainingLaw.predict(&[target.params, target.multiplier], &l);
    assert!(close(predicted_loss, 2.520, 0.01), "{predicted_loss}");
    let measured_loss = loss_of(target, "c4_val").expect("loss");
    assert!(close(predicted_loss, measured_loss, 0.01));
    let predicted_error = ErrorLaw.predict(&[predicted_loss], &e);
    let measured_error = target.error_17().expect("17 tasks");
    let relative = ((predicted_error - measured_error) / measured_error).abs();
    assert!(
        relative < 0.04,
        "error {predicted_error} vs {measured_error}: {relative}"
    );
    // The function's own prediction rows say the same.
    let row = fits
        .predictions
        .iter()
        .find(|p| p.model.starts_with(&target.name) && p.quantity.starts_with("17-task"))
        .expect("error prediction row");
    assert!((row.predicted - predicted_error).abs() < 1e-12);
    assert!((row.measured - measured_error).abs() < 1e-12);
}
