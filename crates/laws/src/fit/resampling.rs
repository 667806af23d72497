//! Resampling the data: leave-one-out prediction errors, the seeded bootstrap of the
//! parameters, percentiles, and the pointwise prediction band of one-input laws.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::law::{BandPoint, FitOptions, HeldOutPrediction, Law, LeaveOneOut, Point};
use super::solver::{check_determined, Solver};

/// Points of the band [`fit_with`](super::fit_with) stores for one-input laws.
pub const BAND_POINTS: usize = 81;

/// The curve of a one-input `law` at `theta` over the points' range (5% margin each side),
/// with the `confidence` percentile band of the `replicates`; `None` for several inputs or
/// no usable replicates.
pub fn prediction_band(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    replicates: &[Vec<f64>],
    confidence: f64,
) -> Option<Vec<BandPoint>> {
    if law.inputs().len() != 1 || replicates.is_empty() || points.is_empty() {
        return None;
    }
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.x[0]), b.max(p.x[0]))
        });
    let margin = 0.05 * (hi - lo);
    let (lo, hi) = (lo - margin, hi + margin);
    let alpha = (1.0 - confidence) / 2.0;
    let band = (0..BAND_POINTS)
        .filter_map(|i| {
            let x = lo + (hi - lo) * i as f64 / (BAND_POINTS - 1) as f64;
            let values: Vec<f64> = replicates.iter().map(|t| law.predict(&[x], t)).collect();
            Some(BandPoint {
                x,
                y: law.predict(&[x], theta),
                low: percentile(&values, alpha)?,
                high: percentile(&values, 1.0 - alpha)?,
            })
        })
        .collect();
    Some(band)
}

pub(super) fn leave_one_out(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    solver: &dyn Solver,
) -> Option<LeaveOneOut> {
    let mut predictions = Vec::new();
    for i in 0..points.len() {
        let rest: Vec<Point> = points
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p.clone())
            .collect();
        if check_determined(law, &rest, solver.residual_scale()).is_err() {
            continue;
        }
        if let Some((fitted, _)) = solver.solve(law, &rest, theta) {
            predictions.push(HeldOutPrediction {
                label: points[i].label.clone(),
                actual: points[i].y,
                predicted: law.predict(&points[i].x, &fitted),
            });
        }
    }
    if predictions.is_empty() {
        return None;
    }
    let k = predictions.len() as f64;
    let rmse = (predictions
        .iter()
        .map(|p| (p.predicted - p.actual).powi(2))
        .sum::<f64>()
        / k)
        .sqrt();
    let mean_abs_relative_error = predictions
        .iter()
        .map(|p| ((p.predicted - p.actual) / p.actual).abs())
        .sum::<f64>()
        / k;
    Some(LeaveOneOut {
        rmse,
        mean_abs_relative_error,
        predictions,
    })
}

/// Parameter vectors of the usable bootstrap resamples. Resample `b` draws from its own
/// ChaCha stream, so results do not depend on the thread count.
pub(super) fn bootstrap(
    law: &dyn Law,
    points: &[Point],
    theta: &[f64],
    options: &FitOptions,
    solver: &dyn Solver,
) -> Vec<Vec<f64>> {
    if options.bootstrap == 0 {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(options.bootstrap);
    let chunks: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..options.bootstrap).step_by(threads).collect())
        .collect();
    let mut by_index: Vec<(usize, Vec<f64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|&b| {
                            let sample = resample(points, options.seed, b as u64);
                            check_determined(law, &sample, solver.residual_scale()).ok()?;
                            solver.solve(law, &sample, theta).map(|(t, _)| (b, t))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    by_index.sort_by_key(|(b, _)| *b);
    by_index.into_iter().map(|(_, t)| t).collect()
}

/// Resample `b` of `points` (with replacement), from stream `b` of the seeded generator.
pub fn resample<T: Clone>(items: &[T], seed: u64, b: u64) -> Vec<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(b);
    (0..items.len())
        .map(|_| items[rng.random_range(0..items.len())].clone())
        .collect()
}

/// The `q`-quantile (linear interpolation) of `values`; `None` when empty.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::fit;
    use crate::fit::testing::Line;

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_estimate() {
        let points: Vec<Point> = (0..12)
            .map(|i| {
                let noise = if i % 2 == 0 { 0.05 } else { -0.05 };
                Point::new(
                    format!("p{i}"),
                    vec![i as f64],
                    1.0 + 0.3 * i as f64 + noise,
                )
            })
            .collect();
        let options = FitOptions {
            bootstrap: 200,
            seed: 7,
            ..FitOptions::default()
        };
        let a = fit(&Line, &points, &options).expect("fits");
        let b = fit(&Line, &points, &options).expect("fits");
        assert_eq!(a, b);
        let slope = &a.parameters[1];
        let (lo, hi) = (slope.ci_low.expect("ci"), slope.ci_high.expect("ci"));
        assert!(
            lo < slope.value && slope.value < hi,
            "{lo} {} {hi}",
            slope.value
        );
        assert!(hi - lo < 0.05);
    }

    #[test]
    fn band_spans_the_points_and_brackets_the_curve() {
        let points: Vec<Point> = (0..12)
            .map(|i| {
                let noise = if i % 3 == 0 { 0.1 } else { -0.05 };
                Point::new(
                    format!("p{i}"),
                    vec![i as f64],
                    1.0 + 0.1 * i as f64 + noise,
                )
            })
            .collect();
        let options = FitOptions {
            bootstrap: 200,
            ..FitOptions::default()
        };
        let report = fit(&Line, &points, &options).expect("fits");
        let band = report.band.expect("one input with a bootstrap has a band");
        assert_eq!(band.len(), BAND_POINTS);
        assert!(
            (band[0].x - (-0.55)).abs() < 1e-12 && (band[BAND_POINTS - 1].x - 11.55).abs() < 1e-12
        );
        for p in &band {
            assert!(p.low <= p.y && p.y <= p.high, "{p:?}");
        }
        // Wider at the ends than in the middle, as a regression band is.
        let width = |p: &BandPoint| p.high - p.low;
        assert!(width(&band[0]) > width(&band[BAND_POINTS / 2]));
        let none = fit(
            &Line,
            &points,
            &FitOptions {
                bootstrap: 0,
                ..FitOptions::default()
            },
        )
        .expect("fits");
        assert!(none.band.is_none());
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.25), Some(1.25));
    }
}
