//! The work behind the loss-curve targets of `FitJob`: a run's final loss predicted from its start,
//! and Luo et al.'s protocol on one model size's folder of their curves. Every failure names
//! the file and what was being done.

use std::collections::BTreeMap;
use std::path::Path;

use lmdensity_core::progress;
use lmdensity_laws::loss_curve::protocol::{
    predict_run, reproduce as reproduce_protocol, CurvePrediction, CurveQuestion,
    LossCurveReproduction, DEFAULT_FITS,
};
use lmdensity_laws::loss_curve::read_curve;
use serde_json::json;

use crate::error::{Context, Result};

/// Fits `question.law` to the start of the curve in `file` and predicts its later loss;
/// records the question in `settings`.
pub(crate) fn predict(
    file: &Path,
    question: &CurveQuestion,
    settings: &mut BTreeMap<String, serde_json::Value>,
) -> Result<CurvePrediction> {
    let logged = read_curve(file)?;
    let spinner = progress::spinner(&format!(
        "fitting {} to {} ({} bootstrap resamples)",
        question.law.name(),
        file.display(),
        question.resamples
    ));
    let until = question
        .fit_until
        .map_or("the last step".to_string(), |s| format!("step {s}"));
    let prediction = predict_run(&logged, question).with_context(|| {
        format!(
            "fitting {} to {} up to {until}",
            question.law.name(),
            file.display()
        )
    })?;
    spinner.finish_and_clear();
    settings.insert("file".into(), json!(file.display().to_string()));
    settings.insert("law".into(), json!(question.law.name()));
    settings.insert("method".into(), json!(question.method));
    settings.insert("lr_schedule".into(), json!(prediction.schedule));
    settings.insert("fit_until".into(), json!(question.fit_until));
    settings.insert("predict_to".into(), json!(prediction.predict_to));
    Ok(prediction)
}

/// Luo et al.'s protocol on `data` (the Multi-Power Law by their procedure and to the optimum,
/// Tissue et al.'s law); records the folder in `settings`.
pub(crate) fn reproduce(
    data: &Path,
    settings: &mut BTreeMap<String, serde_json::Value>,
) -> Result<LossCurveReproduction> {
    if !data.is_dir() {
        crate::bail!(
            "{}: not a folder of loss curves (expected Luo et al.'s csv_25, csv_100 or csv_400)",
            data.display()
        );
    }
    let spinner = progress::spinner(&format!(
        "fitting the loss-curve laws to {}",
        data.display()
    ));
    let reproduction = reproduce_protocol(data, &DEFAULT_FITS)
        .with_context(|| format!("Luo et al.'s protocol on {}", data.display()))?;
    spinner.finish_and_clear();
    // Bootstrap settings do not apply: the protocol reports point fits, without randomness.
    settings.clear();
    settings.insert("data".into(), json!(data.display().to_string()));
    Ok(reproduction)
}
