//! What the loss-curve laws are used for: Luo et al.'s reproduction protocol on one model
//! size's folder of curves ([`reproduce`]), and the single-run question "where will this run
//! end?" ([`predict_run`]).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::schedule::ScheduleSource;
use super::{
    fit_curves, fit_with_bootstrap, predict, read_curve, resolve_schedule, Curve, CurveFit,
    CurveLawName, CurveMetrics, FitMethod, LoggedCurve,
};
use crate::fit::percentile;
use crate::LawError;

/// The authors' training set.
pub const TRAIN_SET: [&str; 3] = ["cosine_24000", "constant_24000", "wsdcon_9"];
/// The authors' held-out test set.
pub const TEST_SET: [&str; 6] = [
    "constant_72000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_18",
];

/// The authors' fitted Multi-Power Law and its test metrics for one model size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Published {
    /// Model size, e.g. `25M`.
    pub model: &'static str,
    /// Their data folder, e.g. `csv_25`.
    pub folder: &'static str,
    /// (L0, A, α, B, C, β, γ), from their `src/config.py`.
    pub theta: [f64; 7],
    /// Their test metrics (mean over the six test curves; their `logs/*.log`).
    pub test: CurveMetrics,
}

/// The three sizes of Luo et al.'s runs.
pub const PUBLISHED: [Published; 3] = [
    Published {
        model: "25M",
        folder: "csv_25",
        theta: [
            3.04045406,
            0.52468604,
            0.50786857,
            363.78751622,
            2.06560812,
            0.58279013,
            0.64142257,
        ],
        test: CurveMetrics {
            r2: 0.9988,
            mae: 0.00376,
            rmse: 0.00465,
            prede: 0.00110,
            worste: 0.00409,
        },
    },
    Published {
        model: "100M",
        folder: "csv_100",
        theta: [
            2.6514477,
            0.60115152,
            0.45295811,
            437.9464276,
            2.13245612,
            0.59785199,
            0.65523644,
        ],
        test: CurveMetrics {
            r2: 0.9983,
            mae: 0.00435,
            rmse: 0.00592,
            prede: 0.00142,
            worste: 0.00583,
        },
    },
    Published {
        model: "400M",
        folder: "csv_400",
        theta: [
            2.37474466,
            0.65421216,
            0.42878731,
            523.42464371,
            2.02462735,
            0.59350493,
            0.63472457,
        ],
        test: CurveMetrics {
            r2: 0.9978,
            mae: 0.00484,
            rmse: 0.00730,
            prede: 0.00168,
            worste: 0.00995,
        },
    },
];

/// Which set a curve belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Fitted.
    Train,
    /// Held out.
    Test,
}

/// One curve's metrics under a fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurveResult {
    /// The curve (file stem).
    pub curve: String,
    /// Train or test.
    pub split: Split,
    /// Points compared.
    pub points: usize,
    /// The metrics.
    pub metrics: CurveMetrics,
}

/// One law under the protocol.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LawResult {
    /// The fit on the training set.
    pub fit: CurveFit,
    /// Every curve's metrics.
    pub curves: Vec<CurveResult>,
    /// Mean over the training curves.
    pub train: CurveMetrics,
    /// Mean over the test curves.
    pub test: CurveMetrics,
    /// Wall time of the fit, in seconds.
    pub fit_seconds: f64,
}

/// The authors' parameters, evaluated by this code on the same curves.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishedCheck {
    /// What they published.
    pub published: Published,
    /// Their parameters' test metrics as computed here (should equal `published.test`).
    pub recomputed_test: CurveMetrics,
}

/// Luo et al.'s protocol on one folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LossCurveReproduction {
    /// The folder.
    pub data: String,
    /// The model size, when the folder is one of theirs (`csv_25` → 25M).
    pub model: Option<String>,
    /// Each law's fit and metrics.
    pub laws: Vec<LawResult>,
    /// Their published figures for this size, with their parameters re-evaluated here.
    pub published: Option<PublishedCheck>,
}

/// The nine curves of a folder on their rebuilt schedules.
fn load(dir: &Path, names: &[&str]) -> Result<Vec<Curve>, LawError> {
    names
        .iter()
        .map(|name| {
            let logged = read_curve(&dir.join(format!("{name}.csv")))?;
            let schedule = resolve_schedule(&logged, Some(name), 0)?;
            Ok(Curve::on_schedule(&logged, schedule))
        })
        .collect()
}

/// Each curve's metrics under `theta`.
fn evaluate(law: CurveLawName, theta: &[f64], curves: &[(Split, &Curve)]) -> Vec<CurveResult> {
    curves
        .iter()
        .map(|(split, c)| {
            let predicted = predict(law, theta, &c.schedule, &c.steps);
            CurveResult {
                curve: c.name.clone(),
                split: *split,
                points: c.steps.len(),
                metrics: CurveMetrics::of(&c.losses, &predicted),
            }
        })
        .collect()
}

fn mean_of(results: &[CurveResult], split: Split) -> CurveMetrics {
    let metrics: Vec<CurveMetrics> = results
        .iter()
        .filter(|r| r.split == split)
        .map(|r| r.metrics)
        .collect();
    CurveMetrics::mean(&metrics)
}

/// The fits [`reproduce`] makes by default: the Multi-Power Law by the authors' procedure and
/// to the optimum of the same objective, and Tissue et al.'s law.
pub const DEFAULT_FITS: [(CurveLawName, FitMethod); 3] = [
    (CurveLawName::Mpl, FitMethod::AuthorsAdam),
    (CurveLawName::Mpl, FitMethod::Lbfgs),
    (CurveLawName::Tissue, FitMethod::Lbfgs),
];

/// Luo et al.'s protocol on `dir` (one model size's folder of their curves): each law fitted
/// on [`TRAIN_SET`] by its method, every curve predicted, metrics averaged over [`TEST_SET`].
pub fn reproduce(
    dir: &Path,
    fits: &[(CurveLawName, FitMethod)],
) -> Result<LossCurveReproduction, LawError> {
    let train = load(dir, &TRAIN_SET)?;
    let test = load(dir, &TEST_SET)?;
    let all: Vec<(Split, &Curve)> = train
        .iter()
        .map(|c| (Split::Train, c))
        .chain(test.iter().map(|c| (Split::Test, c)))
        .collect();
    let mut results = Vec::new();
    for &(law, method) in fits {
        let clock = Instant::now();
        let fit = fit_curves(law, method, &train)?;
        let fit_seconds = clock.elapsed().as_secs_f64();
        let curves = evaluate(law, &fit.values(), &all);
        results.push(LawResult {
            train: mean_of(&curves, Split::Train),
            test: mean_of(&curves, Split::Test),
            fit,
            curves,
            fit_seconds,
        });
    }
    let folder = dir.file_name().map(|f| f.to_string_lossy().into_owned());
    let published = PUBLISHED
        .iter()
        .find(|p| folder.as_deref() == Some(p.folder))
        .map(|p| PublishedCheck {
            published: *p,
            recomputed_test: mean_of(&evaluate(CurveLawName::Mpl, &p.theta, &all), Split::Test),
        });
    Ok(LossCurveReproduction {
        data: dir.display().to_string(),
        model: published.as_ref().map(|p| p.published.model.to_string()),
        laws: results,
        published,
    })
}

/// What to ask of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveQuestion {
    /// The law.
    pub law: CurveLawName,
    /// How it is fitted.
    pub method: FitMethod,
    /// Schedule name (see [`resolve_schedule`]); `None`: the file's stem, else its lr column.
    pub schedule: Option<String>,
    /// Fit only points at steps ≤ this (default: all).
    pub fit_until: Option<usize>,
    /// Predict the loss at this step (default: the schedule's last step; for the lr column,
    /// the last logged step).
    pub predict_to: Option<usize>,
    /// Bootstrap resamples for the interval.
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Two-sided level of the interval.
    pub confidence: f64,
}

/// Logged points after the fitted part, predicted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldOut {
    /// Points after the last fitted step, up to the predicted step.
    pub points: usize,
    /// Their metrics.
    pub metrics: CurveMetrics,
}

/// Where a run will end, by a law fitted to its start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurvePrediction {
    /// The file.
    pub file: String,
    /// Where the per-step learning rates came from.
    pub schedule: String,
    /// The fit (parameters with bootstrap intervals).
    pub fit: CurveFit,
    /// Last fitted step.
    pub fit_until: usize,
    /// Metrics on the fitted points.
    pub fit_metrics: CurveMetrics,
    /// The step predicted.
    pub predict_to: usize,
    /// The predicted loss there.
    pub predicted: f64,
    /// Its bootstrap percentile interval.
    pub interval: Option<[f64; 2]>,
    /// Level of the interval.
    pub confidence: f64,
    /// Resamples drawn and usable.
    pub resamples: [usize; 2],
    /// How the interval was made.
    pub interval_method: String,
    /// The logged loss at the predicted step, when there is one.
    pub measured: Option<f64>,
    /// Logged points after the fitted part (up to the predicted step).
    pub held_out: Option<HeldOut>,
    /// A caveat, e.g. when the fitted part shows no decay of the learning rate.
    pub note: Option<String>,
}

/// Fits `question.law` to the start of `logged` and predicts its loss at a later step.
pub fn predict_run(
    logged: &LoggedCurve,
    question: &CurveQuestion,
) -> Result<CurvePrediction, LawError> {
    let last_logged = logged.steps.last().copied().unwrap_or(0);
    let schedule = resolve_schedule(
        logged,
        question.schedule.as_deref(),
        question.predict_to.unwrap_or(last_logged),
    )?;
    let predict_to = question.predict_to.unwrap_or(match schedule.source {
        ScheduleSource::Known(_) => schedule.len() - 1,
        ScheduleSource::Logged => last_logged,
    });
    if predict_to == 0 || predict_to >= schedule.len() {
        return Err(LawError::BadInput(format!(
            "{}: step {predict_to} cannot be predicted: the schedule {} covers steps 1…{}",
            logged.path,
            schedule.source,
            schedule.len() - 1
        )));
    }
    let schedule_text = schedule.source.to_string();
    let curve = Curve::on_schedule(logged, schedule);
    let fitted = curve.until(question.fit_until.unwrap_or(usize::MAX));
    let fit_until = fitted.steps.last().copied().unwrap_or(0);
    let (mut fit, replicates) = fit_with_bootstrap(
        question.law,
        question.method,
        std::slice::from_ref(&fitted),
        question.resamples,
        question.seed,
    )?;
    let law = question.law;
    let theta = fit.values();
    let at = |t: &[f64]| predict(law, t, &curve.schedule, &[predict_to])[0];
    let tail = (1.0 - question.confidence) / 2.0;
    let interval =
        |values: &[f64]| Some([percentile(values, tail)?, percentile(values, 1.0 - tail)?]);
    let predictions: Vec<f64> = replicates.iter().map(|t| at(t)).collect();
    for (j, p) in fit.parameters.iter_mut().enumerate() {
        let values: Vec<f64> = replicates.iter().map(|t| t[j]).collect();
        if let Some([lo, hi]) = interval(&values) {
            (p.ci_low, p.ci_high) = (Some(lo), Some(hi));
        }
    }
    let in_sample = predict(law, &theta, &fitted.schedule, &fitted.steps);
    let later: Vec<usize> = (0..curve.steps.len())
        .filter(|&i| curve.steps[i] > fit_until && curve.steps[i] <= predict_to)
        .collect();
    let held_out = (!later.is_empty()).then(|| {
        let steps: Vec<usize> = later.iter().map(|&i| curve.steps[i]).collect();
        let actual: Vec<f64> = later.iter().map(|&i| curve.losses[i]).collect();
        HeldOut {
            points: later.len(),
            metrics: CurveMetrics::of(&actual, &predict(law, &theta, &curve.schedule, &steps)),
        }
    });
    Ok(CurvePrediction {
        file: logged.path.clone(),
        schedule: schedule_text,
        fit_metrics: CurveMetrics::of(&fitted.losses, &in_sample),
        predicted: at(&theta),
        interval: interval(&predictions),
        confidence: question.confidence,
        resamples: [question.resamples, replicates.len()],
        interval_method: "moving-block bootstrap of the log residuals (blocks of ⌈√n⌉ points), each resample refitted the same way; percentile interval".into(),
        measured: logged
            .steps
            .iter()
            .position(|&s| s == predict_to)
            .map(|i| logged.losses[i]),
        held_out,
        note: no_decay_note(law, &curve.schedule.rates, fit_until),
        fit,
        fit_until,
        predict_to,
    })
}

/// For the Multi-Power Law: a caveat when η never decreases after its peak up to `until`
/// (then nothing in the fitted part determines the loss-drop parameters B, C, β, γ).
fn no_decay_note(law: CurveLawName, rates: &[f64], until: usize) -> Option<String> {
    let seen = &rates[..(until + 1).min(rates.len())];
    let peak = seen
        .iter()
        .enumerate()
        .fold(0, |best, (i, &r)| if r > seen[best] { i } else { best });
    let decays = seen[peak..].windows(2).any(|w| w[1] < w[0]);
    (law == CurveLawName::Mpl && !decays).then(|| {
        "the fitted steps show no decay of the learning rate after its peak, so they do not determine the loss-drop parameters (B, C, beta, gamma): the prediction past a decay rests on the starting values".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(size: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("data/multipower-law/csv_{size}"))
    }

    fn close(got: f64, published: f64, unit: f64) -> bool {
        // The published figures are rounded to `unit`.
        (got - published).abs() <= 0.5 * unit + 1e-12
    }

    #[test]
    fn the_authors_parameters_give_their_published_test_metrics() {
        for p in &PUBLISHED {
            let dir = folder(p.folder.trim_start_matches("csv_"));
            let test = load(&dir, &TEST_SET).expect("their curves");
            let pairs: Vec<(Split, &Curve)> = test.iter().map(|c| (Split::Test, c)).collect();
            let m = mean_of(&evaluate(CurveLawName::Mpl, &p.theta, &pairs), Split::Test);
            let want = p.test;
            assert!(close(m.r2, want.r2, 1e-4), "{}: {m:?}", p.model);
            assert!(close(m.mae, want.mae, 1e-5), "{}: {m:?}", p.model);
            assert!(close(m.rmse, want.rmse, 1e-5), "{}: {m:?}", p.model);
            assert!(close(m.prede, want.prede, 1e-5), "{}: {m:?}", p.model);
            assert!(close(m.worste, want.worste, 1e-5), "{}: {m:?}", p.model);
        }
    }

    #[test]
    fn the_authors_adamw_protocol_reproduces_their_25m_parameters() {
        let train = load(&folder("25"), &TRAIN_SET).expect("their curves");
        let fit = fit_curves(CurveLawName::Mpl, FitMethod::AuthorsAdam, &train).expect("fit");
        for (got, want) in fit.values().iter().zip(PUBLISHED[0].theta) {
            assert!((got - want).abs() < 1e-5 * want, "{:?}", fit.values());
        }
        // Early stopping at step 100, as in their log (no improvement for 20 steps).
        assert_eq!(fit.iterations, 101);
    }

    fn question(fit_until: Option<usize>, predict_to: Option<usize>) -> CurveQuestion {
        CurveQuestion {
            law: CurveLawName::Mpl,
            method: FitMethod::Lbfgs,
            schedule: None,
            fit_until,
            predict_to,
            resamples: 0,
            seed: 0,
            confidence: 0.95,
        }
    }

    #[test]
    fn a_run_cannot_be_predicted_beyond_its_schedule_or_from_too_few_points() {
        let logged = read_curve(&folder("25").join("wsdcon_9.csv")).expect("curve");
        let beyond = predict_run(&logged, &question(None, Some(16000))).expect_err("beyond");
        assert!(
            beyond.to_string().contains("covers steps 1…15999"),
            "{beyond}"
        );
        let short = predict_run(&logged, &question(Some(2700), None)).expect_err("5 points");
        assert!(
            matches!(
                short,
                LawError::TooFewPoints {
                    needed: 7,
                    got: 5,
                    ..
                }
            ),
            "{short}"
        );
    }
}
