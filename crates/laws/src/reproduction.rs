//! Gadre et al. 2024 reproduced on their released runs: the over-training loss law on the
//! paper's fit set, the loss→error law, Chinchilla's L(N, D) by Hoffmann et al.'s robust
//! objective, and predictions for the held-out models. The command line and the tests call
//! this one function, so the tests check what users run.

use serde::Serialize;

use crate::chinchilla::ChinchillaLaw;
use crate::fit::{fit, fit_with, FitOptions, FitReport, Law, Point};
use crate::gadre::{ErrorLaw, OverTrainingLaw};
use crate::reference::{find_gadre_run, GadreRun};
use crate::robust::HuberLse;
use crate::LawError;

/// Models held out of every fit set: the 1.4B (`open_lm_1b`) and 6.9B (`open_lm_7b`).
pub const HELD_OUT: [&str; 2] = ["open_lm_1b", "open_lm_7b"];

/// A held-out prediction beside the measured value.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prediction {
    /// The run (`rpj-open_lm_1b-32.0`).
    pub model: String,
    /// Its parameter count N.
    pub params: f64,
    /// Its token multiplier M (tokens per parameter).
    pub multiplier: f64,
    /// What is predicted (`c4_val loss`, `17-task top-1 error (from predicted loss)`).
    pub quantity: String,
    /// The law's prediction.
    pub predicted: f64,
    /// The released measurement.
    pub measured: f64,
    /// |predicted − measured| / measured.
    pub relative_error: f64,
}

/// The three fits and the held-out predictions.
#[derive(Debug, Clone, Serialize)]
pub struct GadreReproduction {
    /// Training set (`rpj`, `c4_original`, `rw_original`).
    pub dataset: String,
    /// Validation loss (`c4_val`, `paloma_ptb`…).
    pub eval_set: String,
    /// L(N, M) on the paper's fit set.
    pub loss_law: FitReport,
    /// Err(L) on the fit set plus the 1.4B at M = 20.
    pub error_law: FitReport,
    /// L(N, D) on every run of the dataset but the held-out models.
    pub chinchilla: FitReport,
    /// Held-out predictions.
    pub predictions: Vec<Prediction>,
}

/// The paper's loss-law fit set: four sizes at M = 20 plus the smallest at M = 320.
pub fn loss_fit_set<'a>(
    runs: &'a [GadreRun],
    dataset: &str,
) -> Result<Vec<&'a GadreRun>, LawError> {
    [
        ("d=96_l=8_h=4", 20.0),
        ("d=512_l=8_h=4", 20.0),
        ("d=576_l=24_h=8", 20.0),
        ("d=1024_l=24_h=8", 20.0),
        ("d=96_l=8_h=4", 320.0),
    ]
    .into_iter()
    .map(|(model, m)| find_gadre_run(runs, dataset, model, m))
    .collect()
}

/// The `eval_set` loss of a run.
pub fn loss_of(run: &GadreRun, eval_set: &str) -> Result<f64, LawError> {
    run.losses.get(eval_set).copied().ok_or_else(|| {
        LawError::BadInput(format!(
            "run {} has no {eval_set} loss (it has: {})",
            run.name,
            run.losses.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

fn error_of(run: &GadreRun) -> Result<f64, LawError> {
    run.error_17()
        .ok_or_else(|| LawError::BadInput(format!("run {} lacks some of the 17 tasks", run.name)))
}

/// Fits the three laws on `dataset`'s runs with `eval_set` as the loss and predicts the
/// held-out models.
pub fn reproduce_gadre(
    runs: &[GadreRun],
    dataset: &str,
    eval_set: &str,
    options: &FitOptions,
) -> Result<GadreReproduction, LawError> {
    let loss_set = loss_fit_set(runs, dataset)?;
    let loss_points = loss_set
        .iter()
        .map(|r| {
            Ok(Point::new(
                &r.name,
                vec![r.params, r.multiplier],
                loss_of(r, eval_set)?,
            ))
        })
        .collect::<Result<Vec<_>, LawError>>()?;
    let loss_law = fit(&OverTrainingLaw, &loss_points, options)?;
    let mut error_set = loss_set.clone();
    error_set.push(find_gadre_run(runs, dataset, "open_lm_1b", 20.0)?);
    let error_points = error_set
        .iter()
        .map(|r| {
            Ok(Point::new(
                &r.name,
                vec![loss_of(r, eval_set)?],
                error_of(r)?,
            ))
        })
        .collect::<Result<Vec<_>, LawError>>()?;
    let error_law = fit(&ErrorLaw, &error_points, options)?;
    let chinchilla_points = runs
        .iter()
        .filter(|r| r.dataset == dataset && !HELD_OUT.contains(&r.model.as_str()))
        .map(|r| {
            Ok(Point::new(
                &r.name,
                vec![r.params, r.tokens],
                loss_of(r, eval_set)?,
            ))
        })
        .collect::<Result<Vec<_>, LawError>>()?;
    let chinchilla = fit_with(
        &ChinchillaLaw,
        &chinchilla_points,
        options,
        &HuberLse::default(),
    )?;
    let mut out = GadreReproduction {
        dataset: dataset.into(),
        eval_set: eval_set.into(),
        loss_law,
        error_law,
        chinchilla,
        predictions: Vec::new(),
    };
    out.predictions = predictions(runs, &out);
    Ok(out)
}

/// Loss (both laws) and error predictions for the 1.4B at M = 640 and the 6.9B at M = 20.
fn predictions(runs: &[GadreRun], fits: &GadreReproduction) -> Vec<Prediction> {
    let mut out = Vec::new();
    for (model, m) in [("open_lm_1b", 640.0), ("open_lm_7b", 20.0)] {
        let Ok(run) = find_gadre_run(runs, &fits.dataset, model, m) else {
            continue;
        };
        let loss = OverTrainingLaw.predict(&[run.params, run.multiplier], &fits.loss_law.values());
        let error = ErrorLaw.predict(&[loss], &fits.error_law.values());
        let chinchilla_loss =
            ChinchillaLaw.predict(&[run.params, run.tokens], &fits.chinchilla.values());
        let mut push = |quantity: String, predicted: f64, measured: f64| {
            out.push(Prediction {
                model: run.name.clone(),
                params: run.params,
                multiplier: m,
                quantity,
                predicted,
                measured,
                relative_error: ((predicted - measured) / measured).abs(),
            })
        };
        if let Ok(actual) = loss_of(run, &fits.eval_set) {
            push(format!("{} loss", fits.eval_set), loss, actual);
            push(
                format!("{} loss, Chinchilla fit", fits.eval_set),
                chinchilla_loss,
                actual,
            );
        }
        if let Ok(actual) = error_of(run) {
            push(
                "17-task top-1 error (from predicted loss)".into(),
                error,
                actual,
            );
        }
    }
    out
}
