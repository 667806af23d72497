//! Reproduces Gadre et al.'s own fits on their released data (RedPajama, C4-eval loss,
//! 17-task mean top-1 error) from the raw JSON files shipped in `data/gadre-scaling/`.
//!
//! Targets, from re-running the paper's code on the same points (data/gadre-scaling/README.md):
//! loss law (α, β, b, E) = (166, 367, −0.2729, 1.837); error law (k, γ, ε) = (2.206, 0.715,
//! 0.857); 1.4B at M = 640: predicted loss 2.520 (measured 2.502), predicted error 0.4925
//! (measured 0.4752).

use std::path::PathBuf;

use lmdensity_laws::fit::{fit, FitOptions, Point};
use lmdensity_laws::gadre::{ErrorLaw, OverTrainingLaw};
use lmdensity_laws::reference::{find_gadre_run, load_gadre_runs, GadreRun};
use lmdensity_laws::Law;

fn exp_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/gadre-scaling/exp_data")
}

fn c4_loss(run: &GadreRun) -> f64 {
    run.losses["c4_val"]
}

fn close(actual: f64, expected: f64, relative: f64) -> bool {
    ((actual - expected) / expected).abs() <= relative
}

#[test]
fn reproduces_the_papers_fits_and_predictions() {
    let runs = load_gadre_runs(&exp_data()).expect("reference data");
    assert_eq!(runs.len(), 104);
    let pick = |model: &str, m: f64| find_gadre_run(&runs, "rpj", model, m).expect("run");
    // The paper's fit set: four sizes at M = 20 plus the smallest at M = 320.
    let loss_set = [
        pick("d=96_l=8_h=4", 20.0),
        pick("d=512_l=8_h=4", 20.0),
        pick("d=576_l=24_h=8", 20.0),
        pick("d=1024_l=24_h=8", 20.0),
        pick("d=96_l=8_h=4", 320.0),
    ];
    let loss_points: Vec<Point> = loss_set
        .iter()
        .map(|r| Point::new(&r.name, vec![r.params, r.multiplier], c4_loss(r)))
        .collect();
    let options = FitOptions {
        bootstrap: 200,
        ..FitOptions::default()
    };
    let loss_fit = fit(&OverTrainingLaw, &loss_points, &options).expect("loss law");
    let l = loss_fit.values();
    assert!(close(l[0], 166.0, 0.01), "alpha {l:?}");
    assert!(close(l[1], 367.0, 0.01), "beta {l:?}");
    assert!(close(l[2], -0.2729, 0.005), "b {l:?}");
    assert!(close(l[3], 1.837, 0.005), "E {l:?}");

    // The error law adds the 1.4B model at M = 20.
    let mut error_set = loss_set.to_vec();
    error_set.push(pick("open_lm_1b", 20.0));
    let error_points: Vec<Point> = error_set
        .iter()
        .map(|r| Point::new(&r.name, vec![c4_loss(r)], r.error_17().expect("17 tasks")))
        .collect();
    let error_fit = fit(&ErrorLaw, &error_points, &options).expect("error law");
    let e = error_fit.values();
    assert!(close(e[0], 2.206, 0.005), "k {e:?}");
    assert!(close(e[1], 0.715, 0.005), "gamma {e:?}");
    assert!(close(e[2], 0.857, 0.005), "epsilon {e:?}");
    assert!(error_fit.r2 > 0.99, "R² {}", error_fit.r2);
    let k = &error_fit.parameters[0];
    assert!(k.ci_low.expect("ci") <= k.value && k.value <= k.ci_high.expect("ci"));

    // Held-out prediction: the 1.4B model over-trained to M = 640.
    let target = pick("open_lm_1b", 640.0);
    let predicted_loss = OverTrainingLaw.predict(&[target.params, target.multiplier], &l);
    assert!(close(predicted_loss, 2.520, 0.01), "{predicted_loss}");
    assert!(close(predicted_loss, c4_loss(target), 0.01));
    let predicted_error = ErrorLaw.predict(&[predicted_loss], &e);
    let measured_error = target.error_17().expect("17 tasks");
    let relative = ((predicted_error - measured_error) / measured_error).abs();
    assert!(
        relative < 0.04,
        "error {predicted_error} vs {measured_error}: {relative}"
    );
}
