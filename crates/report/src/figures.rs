//! The report's figures, built from collected runs and analyses. Each figure either has a chart
//! or says in place why it has none (no such runs yet, a refused fit), and every caption says
//! how its numbers were computed.

use std::collections::BTreeMap;

use lmdensity_core::StoredRun;
use lmdensity_laws::fit::{fit, FitOptions, FitReport, Point};
use lmdensity_laws::gadre::ErrorLaw;
use lmdensity_laws::trend::TrendReport;
use serde_json::Value;

use crate::chart::{Axis, BarChart, BarSeries, Chart, Layer, LegendAt, Marker, Series, XyChart};
use crate::collect::{metric, setting, Collected};

/// One figure of the report.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable identifier, used for file names and HTML ids (`loss-error`).
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// How the plotted numbers were computed, and what to read from them.
    pub caption: String,
    /// The chart, or why there is none.
    pub chart: Result<Chart, String>,
}

/// Every figure of a report, in reading order.
pub fn figures(data: &Collected) -> Vec<Figure> {
    vec![
        task_accuracy(data),
        store_loss_error(data),
        gadre_loss_error(data),
        scaling(data),
        density_trend(data),
        throughput(data),
        quality_frontier(data),
        effective_params_frontier(data),
    ]
}

/// A model's name from its files' ids: their longest common prefix (ASCII case ignored)
/// without a trailing `-`, `_` or `.` (`gemma-3-270m-Q8_0`, `gemma-3-270m-F32` →
/// `gemma-3-270m`), else the first id.
fn model_name(markers: &[Marker]) -> String {
    let ids: Vec<&str> = markers
        .iter()
        .filter_map(|m| m.label.as_deref())
        .map(|l| l.split(' ').next().unwrap_or(l))
        .collect();
    let Some(first) = ids.first() else {
        return String::new();
    };
    let mut common = ids.iter().fold(first.len(), |n, id| {
        first
            .bytes()
            .zip(id.bytes())
            .take(n)
            .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
            .count()
    });
    while !first.is_char_boundary(common) {
        common -= 1;
    }
    let name = first[..common].trim_end_matches(['-', '_', '.']);
    if name.is_empty() {
        first.to_string()
    } else {
        name.to_string()
    }
}

/// The latest complete run per (model, key), keeping store order.
fn latest_by<'a>(
    runs: impl Iterator<Item = &'a StoredRun>,
    key: impl Fn(&StoredRun) -> String,
) -> BTreeMap<(String, String), &'a StoredRun> {
    let mut out = BTreeMap::new();
    for run in runs {
        out.insert((run.manifest.model.id.clone(), key(run)), run);
    }
    out
}

/// Task name of a task run (its `corpus` setting).
fn task_name(run: &StoredRun) -> String {
    setting(run, "corpus")
}

/// `<task>/acc` per (model, task) from the latest complete task run of each.
fn task_scores(data: &Collected) -> BTreeMap<(String, String), (f64, Option<f64>)> {
    latest_by(data.complete("task"), task_name)
        .into_iter()
        .filter_map(|((model, task), run)| {
            let acc = metric(run, &format!("{task}/acc"))?;
            Some(((model, task), acc))
        })
        .collect()
}

/// As [`task_scores`], from 0-shot runs only (`num_fewshot` 0 or absent): a store holding
/// few-shot runs of the same tasks (the leaderboard protocol) does not mix them in.
fn zero_shot_task_scores(data: &Collected) -> BTreeMap<(String, String), (f64, Option<f64>)> {
    let zero_shot = data.complete("task").filter(|r| {
        r.manifest
            .settings
            .get("num_fewshot")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            == 0
    });
    latest_by(zero_shot, task_name)
        .into_iter()
        .filter_map(|((model, task), run)| {
            let acc = metric(run, &format!("{task}/acc"))?;
            Some(((model, task), acc))
        })
        .collect()
}

fn task_accuracy(data: &Collected) -> Figure {
    let scores = task_scores(data);
    // How each model's runs were done (`0-shot validation`, `0-shot test, first 500`).
    let mut protocols: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for ((model, _), run) in latest_by(data.complete("task"), task_name) {
        protocols
            .entry(model)
            .or_default()
            .insert(setting(run, "mode"));
    }
    let protocol_text: Vec<String> = protocols
        .iter()
        .map(|(model, modes)| {
            format!(
                "{model}: {}",
                modes.iter().cloned().collect::<Vec<_>>().join("; ")
            )
        })
        .collect();
    let mut models: Vec<String> = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    for (model, task) in scores.keys() {
        if !models.contains(model) {
            models.push(model.clone());
        }
        if !tasks.contains(task) {
            tasks.push(task.clone());
        }
    }
    let chart = if scores.is_empty() {
        Err("No complete task runs in the store: `lmdensity eval --tasks core` makes them.".into())
    } else {
        Ok(Chart::Bars(BarChart {
            title: "Downstream accuracy per task (0-shot)".into(),
            y_label: "accuracy (acc, ± 1 stderr)".into(),
            series: models
                .iter()
                .map(|m| BarSeries {
                    name: m.clone(),
                    values: tasks
                        .iter()
                        .map(|t| scores.get(&(m.clone(), t.clone())).copied())
                        .collect(),
                })
                .collect(),
            groups: tasks,
            percent: true,
        }))
    };
    Figure {
        id: "task-accuracy",
        title: "Accuracy per task".into(),
        caption: format!(
            "Fraction of items whose gold choice has the highest summed log-likelihood \
             (lm-evaluation-harness `acc`), from each model's latest complete `eval` run per \
             task; whiskers are ± one binomial standard error. A missing bar means that task was \
             not run for that model. Protocols: {}.",
            if protocol_text.is_empty() {
                "—".to_string()
            } else {
                protocol_text.join(" · ")
            }
        ),
        chart,
    }
}

/// Bits per byte of each model's latest complete harness-mode perplexity run on `corpus`.
fn bits_per_byte(data: &Collected, corpus: &str) -> BTreeMap<String, (f64, Option<f64>, f64)> {
    latest_by(
        data.complete("perplexity")
            .filter(|r| setting(r, "mode") == "harness" && setting(r, "corpus") == corpus),
        |_| String::new(),
    )
    .into_iter()
    .filter_map(|((model, _), run)| {
        let (bpb, se) = metric(run, "bits_per_byte")?;
        let m = &run.manifest.model;
        let bpw = if m.n_params > 0 {
            m.file_bytes as f64 * 8.0 / m.n_params as f64
        } else {
            f64::NAN
        };
        Some((model, (bpb, se, bpw)))
    })
    .collect()
}

/// The loss→error law fitted to this store's own models: x = PTB bits per byte, y = mean top-1
/// error over the tasks every such model has.
fn store_loss_error(data: &Collected) -> Figure {
    let bpb = bits_per_byte(data, "ptb-test");
    let scores = zero_shot_task_scores(data);
    let models: Vec<&String> = bpb
        .keys()
        .filter(|m| scores.keys().any(|(sm, _)| sm == *m))
        .collect();
    let mut common: Vec<String> = scores.keys().map(|(_, t)| t.clone()).collect();
    common.sort();
    common.dedup();
    common.retain(|t| {
        models
            .iter()
            .all(|m| scores.contains_key(&((*m).clone(), t.clone())))
    });
    let points: Vec<Point> = if common.is_empty() {
        Vec::new()
    } else {
        models
            .iter()
            .map(|m| {
                let err = common
                    .iter()
                    .map(|t| 1.0 - scores[&((*m).clone(), t.clone())].0)
                    .sum::<f64>()
                    / common.len() as f64;
                Point::new((*m).clone(), vec![bpb[*m].0], err)
            })
            .collect()
    };
    let caption = format!(
        "Gadre et al.'s law Err(L) = ε − k·exp(−γ·L) fitted (Levenberg–Marquardt, 200 bootstrap \
         resamples, seed 0) to this store's models: L = bits per byte on PTB test (harness mode), \
         Err = mean 0-shot top-1 error over the tasks every such model has ({}). Shaded: 95% pointwise \
         bootstrap band.",
        if common.is_empty() {
            "none".to_string()
        } else {
            common.join(", ")
        }
    );
    let chart = if points.is_empty() {
        Err(
            "Not fitted: the store has no model with both a harness-mode PTB test perplexity run \
             and task runs."
                .into(),
        )
    } else {
        let options = FitOptions {
            bootstrap: 200,
            seed: 0,
            ..FitOptions::default()
        };
        match fit(&ErrorLaw, &points, &options) {
            Ok(report) => Ok(fit_chart(
                "Loss → error on this store's models",
                &report,
                Axis::linear("L: bits per byte, PTB test"),
                Axis::linear("mean top-1 error"),
                false,
                LegendAt::LowerRight,
            )),
            Err(e) => Err(format!("Fit refused: {e}.")),
        }
    };
    Figure {
        id: "store-loss-error",
        title: "Loss → error law on this store's models".into(),
        caption,
        chart,
    }
}

/// A one-input fit: its points, the best-fit curve and the stored bootstrap band (`exp_y`
/// plots exp of a log-scale fit, e.g. ln ρ).
fn fit_chart(
    title: &str,
    report: &FitReport,
    x: Axis,
    y: Axis,
    exp_y: bool,
    legend: LegendAt,
) -> Chart {
    let f = |v: f64| if exp_y { v.exp() } else { v };
    let mut series = Vec::new();
    if let Some(band) = &report.band {
        let confidence = report
            .bootstrap
            .as_ref()
            .map(|b| b.confidence)
            .unwrap_or(0.95);
        series.push(Series {
            name: format!("{:.0}% bootstrap band", confidence * 100.0),
            colour: 0,
            layer: Layer::Band(band.iter().map(|p| (p.x, f(p.low), f(p.high))).collect()),
        });
        series.push(Series {
            name: format!("fit (R² = {:.3})", report.r2),
            colour: 0,
            layer: Layer::Line(band.iter().map(|p| (p.x, f(p.y))).collect()),
        });
    }
    series.push(Series {
        name: "measured".into(),
        colour: 1,
        layer: Layer::Points(
            report
                .points
                .iter()
                .map(|p| Marker {
                    x: p.x[0],
                    y: f(p.y),
                    interval: None,
                    label: Some(p.label.clone()),
                })
                .collect(),
        ),
    });
    Chart::Xy(XyChart {
        title: title.into(),
        x,
        y,
        series,
        legend,
    })
}

/// The analyses of `kind` whose result has `field`, newest last.
fn analyses_with<'a>(data: &'a Collected, kind: &str, field: &str) -> Vec<&'a Value> {
    data.analyses
        .iter()
        .filter(|a| a.kind == kind)
        .filter_map(|a| a.result.get(field))
        .collect()
}

fn parse_fit(value: &Value) -> Result<FitReport, String> {
    serde_json::from_value(value.clone())
        .map_err(|e| format!("unreadable fit in the analysis: {e}"))
}

fn gadre_loss_error(data: &Collected) -> Figure {
    let chart = match analyses_with(data, "fit", "error_law").last() {
        None => {
            Err("No `fit gadre` analysis in the store: `lmdensity fit gadre` makes one.".into())
        }
        Some(value) => parse_fit(value).map(|report| {
            fit_chart(
                "Loss → error (Gadre et al. 2024 runs)",
                &report,
                Axis::linear("L: C4 validation loss (nats/token)"),
                Axis::linear("mean top-1 error, 17 tasks"),
                false,
                LegendAt::LowerRight,
            )
        }),
    };
    Figure {
        id: "loss-error",
        title: "Loss → error law (Gadre et al. 2024)".into(),
        caption:
            "Err(L) = ε − k·exp(−γ·L) fitted by `lmdensity fit gadre` to the paper's released \
                  runs (Levenberg–Marquardt, multi-start; band = 95% pointwise percentile band \
                  over the fit's bootstrap resamples). Analyses written before bands were stored \
                  show the points only."
                .into(),
        chart,
    }
}

fn scaling(data: &Collected) -> Figure {
    let chart = match analyses_with(data, "fit", "chinchilla").last() {
        None => {
            Err("No `fit gadre` analysis in the store: `lmdensity fit gadre` makes one.".into())
        }
        Some(value) => parse_fit(value).and_then(|report| scaling_chart(&report)),
    };
    Figure {
        id: "scaling",
        title: "Scaling law L(N, D)".into(),
        caption: "L(N, D) = E + A/N^α + B/D^β (Hoffmann et al.'s Huber objective on log-loss, \
                  L-BFGS) fitted by `lmdensity fit gadre` to Gadre et al.'s runs; one colour per \
                  tokens-per-parameter ratio D/N, points measured, lines the fit at that ratio."
            .into(),
        chart,
    }
}

fn scaling_chart(report: &FitReport) -> Result<Chart, String> {
    let p = |name: &str| {
        report
            .value(name)
            .ok_or_else(|| format!("the fit has no parameter {name}"))
    };
    let (e, a, alpha, b, beta) = (p("E")?, p("A")?, p("alpha")?, p("B")?, p("beta")?);
    let mut by_ratio: BTreeMap<i64, Vec<&Point>> = BTreeMap::new();
    for point in &report.points {
        let ratio = point.x[1] / point.x[0];
        by_ratio
            .entry((ratio.log2() * 2.0).round() as i64)
            .or_default()
            .push(point);
    }
    let (n_lo, n_hi) = report
        .points
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), q| {
            (l.min(q.x[0]), h.max(q.x[0]))
        });
    // Lines first (under the points); one legend entry explains them all.
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    for (i, points) in by_ratio.values().enumerate() {
        let ratio = points.iter().map(|q| q.x[1] / q.x[0]).sum::<f64>() / points.len() as f64;
        let curve: Vec<(f64, f64)> = (0..=60)
            .map(|k| {
                let n = n_lo * (n_hi / n_lo).powf(k as f64 / 60.0);
                (n, e + a / n.powf(alpha) + b / (ratio * n).powf(beta))
            })
            .collect();
        lines.push(Series {
            name: if i == 0 {
                "lines: the fit at each D/N".into()
            } else {
                String::new()
            },
            colour: i,
            layer: Layer::Line(curve),
        });
        dots.push(Series {
            name: format!("D/N ≈ {ratio:.0}"),
            colour: i,
            layer: Layer::Points(
                points
                    .iter()
                    .map(|q| Marker {
                        x: q.x[0],
                        y: q.y,
                        interval: None,
                        label: None,
                    })
                    .collect(),
            ),
        });
    }
    let mut series = lines;
    series.extend(dots);
    Ok(Chart::Xy(XyChart {
        title: format!("L(N, D): R² = {:.3} on {} runs", report.r2, report.n_points),
        x: Axis::log_si("N: parameters"),
        y: Axis::linear("L: validation loss (nats/token)"),
        series,
        legend: LegendAt::UpperRight,
    }))
}

fn density_trend(data: &Collected) -> Figure {
    let analysis = data.analyses.iter().rev().find(|a| a.kind == "trend");
    let chart = match analysis {
        None => Err("No `trend` analysis in the store: `lmdensity trend` makes one.".into()),
        Some(a) => {
            let measured = data.analyses.iter().rev().find(|d| {
                d.kind == "density"
                    && d.result.get("sweep").is_none()
                    && same_protocol(&d.result, &a.result)
            });
            trend_chart(&a.result, measured.map(|d| &d.result))
        }
    };
    Figure {
        id: "density-trend",
        title: "Capacity density over release dates (Densing Law)".into(),
        caption: "Density ρ = N̂/N per model (N̂ from the reference family's score-to-size fit) \
                  against release date, log scale; published rows coloured by family (the \
                  largest families by name, the rest grey; whiskers = 95% bootstrap interval \
                  where the rows are few enough to read), models measured here by `lmdensity eval` on \
                  the same protocol (the trend's own measured entries, else the store's latest \
                  `density` analysis on it) in black with their names and intervals, not part \
                  of the fits; lines: ln ρ = A·t + B fitted to every model (least squares) and to the \
                  densest model per date (envelope), with the doubling time ln 2 / A in the \
                  legend; shaded: each fit's 95% pointwise bootstrap band."
            .into(),
        chart,
    }
}

/// Whether two analyses' results were computed on the same protocol (absent = zero-shot).
fn same_protocol(a: &Value, b: &Value) -> bool {
    let protocol = |v: &Value| {
        v.get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("zero-shot")
            .to_string()
    };
    protocol(a) == protocol(b)
}

/// A model entry (`{released, estimate}`) as a marker on the time axis.
fn trend_marker(m: &Value, with_interval: bool) -> Option<Marker> {
    let released = m.get("released")?.as_str()?;
    let day = chrono::NaiveDate::parse_from_str(released, "%Y-%m-%d").ok()?;
    let est = m.get("estimate")?;
    let density = est.get("density")?.as_f64()?;
    let interval = est
        .get("density_ci")
        .and_then(|ci| Some((ci.get(0)?.as_f64()?, ci.get(1)?.as_f64()?)))
        .filter(|_| with_interval);
    Some(Marker {
        x: (day - Axis::date_epoch()).num_days() as f64,
        y: density,
        interval,
        label: est.get("label").and_then(Value::as_str).map(str::to_string),
    })
}

/// The trend's models as point series: one per large family (colours 2–5), the rest grey;
/// without families (older analyses), one series.
fn family_series(models: &[Value]) -> Vec<Series> {
    let with_interval = models.len() <= 40;
    let mut groups: BTreeMap<String, Vec<Marker>> = BTreeMap::new();
    for m in models {
        let family = m
            .get("family")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(mut marker) = trend_marker(m, with_interval) {
            if !family.is_empty() {
                marker.label = None;
            }
            groups.entry(family).or_default().push(marker);
        }
    }
    let mut families: Vec<(String, Vec<Marker>)> = groups.into_iter().collect();
    families.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut series = Vec::new();
    let mut rest = Vec::new();
    let mut rest_families = 0;
    for (i, (family, markers)) in families.into_iter().enumerate() {
        if family.is_empty() {
            series.push(Series {
                name: "models (95% CI)".into(),
                colour: 2,
                layer: Layer::Points(markers),
            });
        } else if i < 4 {
            let name = format!("{family} ({})", markers.len());
            series.push(Series {
                name,
                colour: 2 + i,
                layer: Layer::Points(markers),
            });
        } else {
            rest_families += 1;
            rest.extend(markers);
        }
    }
    if !rest.is_empty() {
        let name = format!("{rest_families} other families ({})", rest.len());
        series.push(Series {
            name,
            colour: 7,
            layer: Layer::Points(rest),
        });
    }
    series
}

fn band(fit: &FitReport) -> Layer {
    Layer::Band(
        fit.band
            .iter()
            .flatten()
            .map(|p| (p.x, p.low.exp(), p.high.exp()))
            .collect(),
    )
}

fn trend_chart(result: &Value, measured: Option<&Value>) -> Result<Chart, String> {
    let trend: TrendReport =
        serde_json::from_value(result.get("trend").cloned().unwrap_or_default())
            .map_err(|e| format!("unreadable trend in the analysis: {e}"))?;
    let models = result
        .get("models")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let line = |fit: &FitReport| -> Vec<(f64, f64)> {
        let (a, b) = (
            fit.value("A").unwrap_or(f64::NAN),
            fit.value("B").unwrap_or(f64::NAN),
        );
        let (lo, hi) = fit
            .points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                (l.min(p.x[0]), h.max(p.x[0]))
            });
        (0..=40)
            .map(|k| {
                let t = lo + (hi - lo) * k as f64 / 40.0;
                (t, (a * t + b).exp())
            })
            .collect()
    };
    let doubling = |d: f64, ci: Option<(f64, f64)>| match ci {
        Some((l, h)) => format!("doubling {d:.0} d [{l:.0}, {h:.0}]"),
        None if d > 0.0 => format!("doubling {d:.0} d (interval includes no growth)"),
        None => "density not growing".to_string(),
    };
    let (all, envelope) = (&trend.all_models, &trend.envelope);
    let mut series = vec![
        Series {
            name: String::new(),
            colour: 1,
            layer: band(&envelope.fit),
        },
        Series {
            name: "95% bootstrap bands".into(),
            colour: 0,
            layer: band(&all.fit),
        },
        Series {
            name: format!(
                "all {} models: {}",
                all.fit.n_points,
                doubling(all.doubling_days, all.doubling_days_ci)
            ),
            colour: 0,
            layer: Layer::Line(line(&all.fit)),
        },
        Series {
            name: format!(
                "envelope: {}",
                doubling(envelope.doubling_days, envelope.doubling_days_ci)
            ),
            colour: 1,
            layer: Layer::Dashed(line(&envelope.fit)),
        },
    ];
    series.extend(family_series(&models));
    // Models measured here: the trend's own `measured` entries (registry models placed from
    // the store's runs), else the latest `density` analysis on the same protocol.
    let own = result
        .get("measured")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty());
    let measured: Vec<Marker> = own
        .cloned()
        .or_else(|| measured.and_then(|d| d.get("estimates")?.as_array().cloned()))
        .unwrap_or_default()
        .iter()
        .filter_map(|m| trend_marker(m, true))
        .collect();
    if !measured.is_empty() {
        series.push(Series {
            name: format!(
                "measured here ({}, 95% CI; not in the fits)",
                measured.len()
            ),
            colour: 6,
            layer: Layer::Points(measured),
        });
    }
    Ok(Chart::Xy(XyChart {
        title: "Density ρ = N_eff / N by release date".into(),
        x: Axis::date("release date"),
        y: Axis {
            label: "density ρ (log scale)".into(),
            ..Axis::log("")
        },
        series,
        legend: LegendAt::UpperLeft,
    }))
}

fn throughput(data: &Collected) -> Figure {
    let runs = latest_by(data.complete("bench"), |r| {
        format!(
            "{}|{}",
            r.manifest.backend.name, r.manifest.model.quantization
        )
    });
    let mut groups: BTreeMap<String, Vec<Marker>> = BTreeMap::new();
    for run in runs.values() {
        let Some(metrics) = &run.metrics else {
            continue;
        };
        let m = &run.manifest.model;
        for metric in metrics
            .metrics
            .iter()
            .filter(|x| x.name.ends_with("/avg_ts"))
        {
            let test = metric.name.trim_end_matches("/avg_ts");
            let key = format!("{} {test}", run.manifest.backend.name);
            let se = metric.stderr.unwrap_or(0.0);
            groups.entry(key).or_default().push(Marker {
                x: m.n_params as f64,
                y: metric.value,
                interval: Some((metric.value - se, metric.value + se)),
                label: Some(format!("{} {}", m.id, m.quantization)),
            });
        }
    }
    let chart = if groups.is_empty() {
        Err("No complete bench runs in the store: `lmdensity bench` makes them.".into())
    } else {
        Ok(Chart::Xy(XyChart {
            title: "Throughput by model size".into(),
            x: Axis::log_si("N: parameters"),
            y: Axis::log("tokens per second (log scale)"),
            series: groups
                .into_iter()
                .enumerate()
                .map(|(i, (name, mut markers))| {
                    markers.sort_by(|a, b| a.x.total_cmp(&b.x));
                    Series {
                        name,
                        colour: i,
                        layer: Layer::Points(markers),
                    }
                })
                .collect(),
            legend: LegendAt::UpperRight,
        }))
    };
    let threads: Vec<String> = runs
        .values()
        .map(|r| r.manifest.backend.threads.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Figure {
        id: "throughput",
        title: "Throughput vs model size".into(),
        caption: format!(
            "Mean tokens/s over the repetitions of each `lmdensity bench` test (pp = prompt \
             processing of random tokens, tg = generation one token at a time; whiskers ± one \
             standard error of the mean) per backend, latest run per model and quantization; \
             threads: {}.",
            if threads.is_empty() {
                "—".into()
            } else {
                threads.join(", ")
            }
        ),
        chart,
    }
}

fn quality_frontier(data: &Collected) -> Figure {
    // Variants of one model (a quantization sweep) share architecture and parameter count:
    // (corpus, architecture, parameters) → its files' (bits per weight, bits per byte) points.
    let mut by_model: BTreeMap<(String, String, u64), Vec<Marker>> = BTreeMap::new();
    let runs = latest_by(
        data.complete("perplexity")
            .filter(|r| setting(r, "mode") == "harness"),
        |r| format!("{}|{}", setting(r, "corpus"), r.manifest.model.sha256),
    );
    for run in runs.values() {
        let Some((bpb, se)) = metric(run, "bits_per_byte") else {
            continue;
        };
        let m = &run.manifest.model;
        if m.n_params == 0 {
            continue;
        }
        by_model
            .entry((setting(run, "corpus"), m.architecture.clone(), m.n_params))
            .or_default()
            .push(Marker {
                x: m.file_bytes as f64 * 8.0 / m.n_params as f64,
                y: bpb,
                interval: se.map(|se| (bpb - se, bpb + se)),
                // The id, then the type alone (`Q2_K`, not how the variant was made).
                label: Some(format!(
                    "{} {}",
                    m.id,
                    m.quantization.split(',').next().unwrap_or_default()
                )),
            });
    }
    let corpora: std::collections::BTreeSet<&String> = by_model.keys().map(|k| &k.0).collect();
    let several_corpora = corpora.len() > 1;
    let kld = data
        .complete("perplexity")
        .filter(|r| metric(r, "kld_mean").is_some())
        .count();
    let chart = if by_model.is_empty() {
        Err(
            "No complete harness-mode perplexity runs in the store: `lmdensity ppl` makes them."
                .into(),
        )
    } else {
        let mut series = Vec::new();
        for (colour, ((corpus, _, _), mut markers)) in by_model.into_iter().enumerate() {
            markers.sort_by(|a, b| a.x.total_cmp(&b.x));
            let name = model_name(&markers);
            let name = if several_corpora {
                format!("{name} · {corpus}")
            } else {
                name
            };
            if markers.len() > 1 {
                // Along a model's line the type says which file a point is.
                for m in &mut markers {
                    m.label = m
                        .label
                        .as_deref()
                        .and_then(|l| l.rsplit(' ').next())
                        .map(str::to_string);
                }
                series.push(Series {
                    name: String::new(),
                    colour,
                    layer: Layer::Line(markers.iter().map(|m| (m.x, m.y)).collect()),
                });
            }
            series.push(Series {
                name,
                colour,
                layer: Layer::Points(markers),
            });
        }
        Ok(Chart::Xy(XyChart {
            title: "Quality vs bits per weight".into(),
            x: Axis::linear("bits per weight (file size × 8 / parameters)"),
            y: Axis::linear("bits per byte (lower is better)"),
            series,
            legend: LegendAt::UpperRight,
        }))
    };
    Figure {
        id: "quality-frontier",
        title: "Quality vs bits per weight".into(),
        caption: format!(
            "Bits per byte (lm-evaluation-harness rolling log-likelihood, ± 1 stderr) of every \
             model file against its size in bits per parameter (GGUF file bytes × 8 / parameter \
             count, so metadata and embeddings count). Files of one model (same architecture \
             and parameter count: a quantization sweep) share a colour and a line, its \
             quality/size frontier{}. {}",
            if several_corpora {
                ", one per corpus"
            } else {
                ""
            },
            if kld == 0 {
                "No run in the store reports KL divergence against a full-precision base, so no KLD panel."
                    .to_string()
            } else {
                format!("{kld} run(s) report KL divergence.")
            }
        ),
        chart,
    }
}

/// N̂ of each quantized variant of a sweep against its bits per weight, one line per model,
/// from the latest `density --sweep` analysis per model.
fn effective_params_frontier(data: &Collected) -> Figure {
    let mut by_model: BTreeMap<String, &Value> = BTreeMap::new();
    for a in data.analyses.iter().filter(|a| a.kind == "density") {
        if let Some(sweep) = a.result.get("sweep") {
            let model = sweep["model"].as_str().unwrap_or_default().to_string();
            by_model.insert(model, sweep);
        }
    }
    let mut series = Vec::new();
    let mut tasks = std::collections::BTreeSet::new();
    for (colour, (model, sweep)) in by_model.iter().enumerate() {
        let mut markers: Vec<Marker> = sweep["variants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let estimate = &v["estimate"];
                let n_hat = estimate["effective_params"].as_f64()? / 1e6;
                let ci = estimate["effective_params_ci"].as_array();
                let interval =
                    ci.and_then(|c| Some((c.first()?.as_f64()? / 1e6, c.get(1)?.as_f64()? / 1e6)));
                Some(Marker {
                    x: v["bits_per_weight"].as_f64()?,
                    y: n_hat,
                    interval,
                    label: v["variant"]
                        .as_str()
                        .map(|l| l.split(' ').next().unwrap_or(l).to_string()),
                })
            })
            .collect();
        if markers.is_empty() {
            continue;
        }
        for t in sweep["tasks"].as_array().into_iter().flatten() {
            tasks.insert(t.as_str().unwrap_or_default().to_string());
        }
        markers.sort_by(|a, b| a.x.total_cmp(&b.x));
        series.push(Series {
            name: String::new(),
            colour,
            layer: Layer::Line(markers.iter().map(|m| (m.x, m.y)).collect()),
        });
        series.push(Series {
            name: model.clone(),
            colour,
            layer: Layer::Points(markers),
        });
    }
    let chart = if series.is_empty() {
        Err("No `density --sweep` analysis in the store: `lmdensity density --sweep sweep.json` makes one per quantization sweep.".into())
    } else {
        Ok(Chart::Xy(XyChart {
            title: "Effective parameters vs bits per weight".into(),
            x: Axis::log("bits per weight (file size × 8 / parameters)"),
            y: Axis::log("effective parameters (millions)"),
            series,
            legend: LegendAt::UpperRight,
        }))
    };
    Figure {
        id: "effective-params-frontier",
        title: "Effective parameters vs bits per weight".into(),
        caption: format!(
            "Effective parameter size N̂ of each file of a quantization sweep (the Pythia reference \
             fit's size for the file's accuracy on {}; whiskers: 95% bootstrap interval, which \
             includes the accuracy's own stderr) against its bits per weight (both axes logarithmic), one line per model: \
             the frontier a quantization is picked from. Accuracies on a few hundred items put \
             most variants within each other's intervals; the curated sweeps' tables say which \
             differ by more than 2 stderr.",
            if tasks.is_empty() {
                "the sweep's tasks".to_string()
            } else {
                tasks.into_iter().collect::<Vec<_>>().join(", ")
            }
        ),
        chart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::TickFormat;

    #[test]
    fn an_empty_store_gives_every_figure_with_a_reason() {
        let figs = figures(&Collected::default());
        assert_eq!(figs.len(), 8);
        for f in &figs {
            let reason = f.chart.as_ref().expect_err("nothing to draw");
            assert!(
                reason.contains('`') || reason.contains("Not fitted"),
                "{}: {reason}",
                f.id
            );
        }
    }

    #[test]
    fn a_sweeps_files_are_named_after_their_model() {
        let marker = |label: &str| Marker {
            x: 0.0,
            y: 0.0,
            interval: None,
            label: Some(label.into()),
        };
        let sweep = [
            marker("gemma-3-270m-F32 F32, dequantized from Q4_K_M"),
            marker("gemma-3-270m-Q8_0 Q8_0"),
            marker("gemma-3-270m Q4_K_M"),
        ];
        assert_eq!(model_name(&sweep), "gemma-3-270m");
        assert_eq!(model_name(&sweep[1..2]), "gemma-3-270m-Q8_0");
        assert_eq!(model_name(&[marker("a-x q"), marker("b-y q")]), "a-x");
        assert_eq!(model_name(&[marker("ü-1 q"), marker("ü-2 q")]), "ü");
        let registry_file = [
            marker("smollm2-135m-instruct-Q8_0 Q8_0"),
            marker("SmolLM2-135M-Instruct.Q4_1 Q4_1"),
        ];
        assert_eq!(model_name(&registry_file), "smollm2-135m-instruct");
    }

    #[test]
    fn tick_format_is_used_for_dates() {
        let axis = Axis::date("release date");
        assert_eq!(axis.ticks, TickFormat::Date);
    }
}
