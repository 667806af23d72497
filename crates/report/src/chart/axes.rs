//! Axes in plotting space: the range a chart's values need (with margins, bands capped), and
//! round-number ticks and their labels for linear, log and date axes.

use std::ops::Range;

use chrono::{Datelike, Days, NaiveDate};
use plotters::coord::ranged1d::Ranged;

use super::spec::{si, tick_label, Axis, Layer, Scale, Series, TickFormat};

/// Every value a series puts on the axes: x, y of points (intervals included) and lines, and
/// y of bands separately (see [`cap_band`]).
pub(super) fn extent(series: &[Series]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut xs, mut ys, mut band) = (Vec::new(), Vec::new(), Vec::new());
    for s in series {
        match &s.layer {
            Layer::Points(points) => {
                for p in points {
                    xs.push(p.x);
                    ys.push(p.y);
                    if let Some((lo, hi)) = p.interval {
                        ys.extend([lo, hi]);
                    }
                }
            }
            Layer::Line(points) | Layer::Dashed(points) => {
                for &(x, y) in points {
                    xs.push(x);
                    ys.push(y);
                }
            }
            Layer::Band(points) => {
                for &(x, lo, hi) in points {
                    xs.push(x);
                    band.extend([lo, hi]);
                }
            }
        }
    }
    (xs, ys, band)
}

/// Band values limited to half the data's span beyond the data (in plotting space, so decades
/// on log axes): a wide bootstrap band (a weakly determined trend) then runs off the plot
/// instead of squashing the data into a corner.
pub(super) fn cap_band(data: &[f64], band: &[f64], scale: Scale) -> Vec<f64> {
    let t = |v: f64| if scale == Scale::Log { v.log10() } else { v };
    let inv = |v: f64| {
        if scale == Scale::Log {
            10f64.powf(v)
        } else {
            v
        }
    };
    let usable: Vec<f64> = data
        .iter()
        .map(|v| t(*v))
        .filter(|v| v.is_finite())
        .collect();
    if usable.is_empty() {
        return band.to_vec();
    }
    let lo = usable.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = usable.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let reach = 0.5 * (hi - lo).max(if scale == Scale::Log { 0.3 } else { 1e-9 });
    band.iter()
        .map(|v| t(*v))
        .filter(|v| v.is_finite())
        .map(|v| inv(v.clamp(lo - reach, hi + reach)))
        .collect()
}

/// The axis range covering `values` with a margin: 6% of the span on linear axes, a fraction
/// of a decade on log axes.
pub(super) fn padded_range(values: &[f64], scale: Scale) -> Option<Range<f64>> {
    let usable = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0));
    let (lo, hi) = usable.fold(None, |acc: Option<(f64, f64)>, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })?;
    Some(match scale {
        Scale::Linear => {
            let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
            (lo - 0.06 * span)..(hi + 0.06 * span)
        }
        Scale::Log => {
            let (l, h) = (lo.log10(), hi.log10());
            let span = (h - l).max(0.3);
            let pad = 0.08 * span;
            10f64.powf(l - pad)..10f64.powf(h + pad)
        }
    })
}

/// An axis in plotting space (log axes are log10 of the values) with its own ticks: plotters'
/// log-scale ticks crowd or vanish on spans under a decade, so ticks are chosen here.
#[derive(Clone)]
pub(super) struct TickedAxis {
    pub(super) range: Range<f64>,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let t = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.5
        };
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The 1-2-5 step giving about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let scaled = raw / magnitude;
    let nice = if scaled < 1.5 {
        1.0
    } else if scaled < 3.5 {
        2.0
    } else if scaled < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn multiples(range: &Range<f64>, step: f64) -> Vec<f64> {
    let first = (range.start / step).ceil() as i64;
    let last = (range.end / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Plotting-space axis for `values` on `axis`, and the tick spacing (data units) for labels.
pub(super) fn ticked_axis(values: &[f64], axis: &Axis) -> Option<(TickedAxis, f64)> {
    let range = padded_range(values, axis.scale)?;
    Some(match (axis.scale, axis.ticks) {
        (Scale::Log, _) => {
            let (lo, hi) = (range.start.log10(), range.end.log10());
            let decades = (lo.floor() as i32)..=(hi.ceil() as i32);
            let within = |v: f64| v.log10() >= lo && v.log10() <= hi;
            let pick = |mantissas: &[f64]| -> Vec<f64> {
                decades
                    .clone()
                    .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
                    .filter(|v| within(*v))
                    .collect()
            };
            let mut bold = pick(&[1.0, 2.0, 5.0]);
            if bold.len() > 10 {
                bold = pick(&[1.0]);
            } else if bold.len() < 4 {
                bold = pick(&[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]);
            }
            let light = pick(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
            (
                TickedAxis {
                    range: lo..hi,
                    bold: bold.iter().map(|v| v.log10()).collect(),
                    light: light.iter().map(|v| v.log10()).collect(),
                },
                0.0,
            )
        }
        (Scale::Linear, TickFormat::Date) => {
            let epoch = Axis::date_epoch();
            let day = |d: NaiveDate| (d - epoch).num_days() as f64;
            let span_months = (range.end - range.start) / 30.4;
            let every = [1u32, 2, 3, 6, 12, 24]
                .into_iter()
                .find(|m| span_months / f64::from(*m) <= 9.0)
                .unwrap_or(48);
            let start = match range.start < 0.0 {
                true => epoch.checked_sub_days(Days::new((-range.start).ceil() as u64)),
                false => epoch.checked_add_days(Days::new(range.start as u64)),
            }
            .unwrap_or(epoch);
            let mut months = Vec::new();
            let (mut y, mut m) = (start.year_ce().1 as i32, start.month0());
            for _ in 0..400 {
                if let Some(d) = NaiveDate::from_ymd_opt(y, m + 1, 1) {
                    let v = day(d);
                    if v > range.end {
                        break;
                    }
                    if v >= range.start {
                        months.push((m, v));
                    }
                }
                m += 1;
                if m == 12 {
                    m = 0;
                    y += 1;
                }
            }
            let bold = months
                .iter()
                .filter(|(m, _)| m % every == 0)
                .map(|(_, v)| *v)
                .collect();
            let light = months.iter().map(|(_, v)| *v).collect();
            (TickedAxis { range, bold, light }, 30.0)
        }
        (Scale::Linear, _) => {
            let step = nice_step(range.end - range.start, 8.0);
            let bold = multiples(&range, step);
            let light = multiples(&range, step / 5.0);
            (TickedAxis { range, bold, light }, step)
        }
    })
}

/// The label of a tick at plotting-space value `v`.
pub(super) fn axis_label(v: f64, axis: &Axis, step: f64) -> String {
    match axis.scale {
        Scale::Linear => tick_label(v, axis.ticks, step),
        Scale::Log => {
            let value = 10f64.powf(v);
            let rounded = {
                let magnitude = 10f64.powf(v.floor());
                (value / magnitude * 10.0).round() / 10.0 * magnitude
            };
            match axis.ticks {
                TickFormat::Si => si(rounded),
                TickFormat::Percent => format!("{}%", rounded * 100.0),
                _ => {
                    if rounded >= 1.0 {
                        format!("{rounded}")
                    } else {
                        let decimals = (-rounded.log10()).ceil() as usize + 1;
                        format!("{rounded:.decimals$}")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_round_numbers_even_within_a_decade() {
        let axis = Axis::log_si("N");
        let (ticked, _) = ticked_axis(&[1.35e8, 2.7e8, 4.9e8], &axis).expect("axis");
        let labels: Vec<String> = ticked
            .bold
            .iter()
            .map(|v| axis_label(*v, &axis, 0.0))
            .collect();
        assert!(labels.len() >= 4, "{labels:?}");
        for l in &labels {
            assert!(
                ["100M", "150M", "200M", "300M", "400M", "500M", "600M"].contains(&l.as_str()),
                "{labels:?}"
            );
        }
        let (wide, _) = ticked_axis(&[1e7, 1e11], &axis).expect("axis");
        assert!(wide.bold.len() <= 10);
    }

    #[test]
    fn date_ticks_fall_on_month_starts() {
        let (ticked, _) = ticked_axis(&[80.0, 390.0], &Axis::date("d")).expect("axis");
        let labels: Vec<String> = ticked
            .bold
            .iter()
            .map(|v| tick_label(*v, TickFormat::Date, 30.0))
            .collect();
        assert!(
            labels.contains(&"2023-07".to_string()) && labels.len() <= 10,
            "{labels:?}"
        );
        let epoch = Axis::date_epoch();
        for v in &ticked.bold {
            let d = epoch.checked_add_days(Days::new(*v as u64)).expect("date");
            assert_eq!(d.day(), 1);
        }
    }

    #[test]
    fn date_ticks_before_the_epoch_are_dates() {
        let (ticked, _) = ticked_axis(&[-1200.0, 500.0], &Axis::date("d")).expect("axis");
        let labels: Vec<String> = ticked
            .bold
            .iter()
            .map(|v| tick_label(*v, TickFormat::Date, 30.0))
            .collect();
        assert!(ticked.bold.iter().any(|v| *v < -365.0), "{labels:?}");
        assert!(
            labels.iter().all(|l| l.len() == 7 && l.starts_with("20")),
            "{labels:?}"
        );
    }

    #[test]
    fn wide_bands_are_capped_at_half_the_data_span() {
        let capped = cap_band(&[1.0, 2.0], &[0.5, 1e6], Scale::Linear);
        assert_eq!(capped, vec![0.5, 2.5]);
        let capped = cap_band(&[1.0, 10.0], &[1e6], Scale::Log);
        assert!((capped[0] - 10f64.powf(1.5)).abs() < 1e-9, "{capped:?}");
    }

    #[test]
    fn log_range_pads_by_a_fraction_of_a_decade() {
        let r = padded_range(&[1e8, 1e9, -3.0], Scale::Log).expect("range");
        assert!(
            r.start < 1e8 && r.start > 5e7 && r.end > 1e9 && r.end < 2e9,
            "{r:?}"
        );
    }
}
