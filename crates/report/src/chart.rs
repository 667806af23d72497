//! Chart specifications (data only) and their rendering with plotters to SVG text or PNG files.
//!
//! A [`Chart`] says what to draw: layers of points with error bars, lines, bands, or grouped
//! bars, with axis labels, units and scales. Rendering is the same code for SVG and PNG; text is
//! set in DejaVu Sans (embedded, so PNGs look the same on every machine), colours come from the
//! Okabe–Ito palette, which stays distinguishable with the common colour-vision deficiencies.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use chrono::{Datelike, Days, NaiveDate};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::Shift;
use plotters::element::{DashedPathElement, ErrorBar};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Width of every chart, pixels.
pub const WIDTH: u32 = 880;
/// Height of every chart, pixels.
pub const HEIGHT: u32 = 540;

/// Okabe & Ito (2008) colour-blind-safe palette, without its yellow (too light on white), and
/// a mid grey as an eighth colour.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(136, 136, 136), // grey
];

/// Colour number `i` of the palette (cycling).
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The plotting library failed (it reports backend errors as text).
    #[error("drawing {chart}: {detail}")]
    Draw {
        /// Chart title.
        chart: String,
        /// The library's message.
        detail: String,
    },
    /// Nothing drawable: no finite values (or none positive on a log axis).
    #[error("{0}: no finite values to draw")]
    Empty(String),
}

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic (values ≤ 0 are not drawn).
    Log,
}

/// How an axis writes its tick labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickFormat {
    /// Plain numbers with as many decimals as the tick spacing needs.
    Number,
    /// SI prefixes for counts: 135M, 1.5B.
    Si,
    /// Values are days since [`Axis::date_epoch`]; labels are `YYYY-MM`.
    Date,
    /// Fractions written as percentages.
    Percent,
}

/// One axis: its title (with unit), scale and label format.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Title, unit included, e.g. `"bits per byte (PTB test)"`.
    pub label: String,
    /// Linear or log.
    pub scale: Scale,
    /// Tick labels.
    pub ticks: TickFormat,
}

impl Axis {
    /// A linear axis with plain numbers.
    pub fn linear(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            ticks: TickFormat::Number,
        }
    }

    /// A log axis with SI-prefixed labels (parameter and token counts).
    pub fn log_si(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            ticks: TickFormat::Si,
        }
    }

    /// A log axis with plain numbers.
    pub fn log(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            ticks: TickFormat::Number,
        }
    }

    /// A date axis: values are days since [`Axis::date_epoch`].
    pub fn date(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            ticks: TickFormat::Date,
        }
    }

    /// Day 0 of date axes (the density trend's epoch, 2023-01-01).
    pub fn date_epoch() -> NaiveDate {
        NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default()
    }
}

/// A measured point with an optional vertical interval and an optional text label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Input value.
    pub x: f64,
    /// Measured value.
    pub y: f64,
    /// Lower and upper ends of its interval (stderr or CI), if any.
    pub interval: Option<(f64, f64)>,
    /// Text written next to the point (a model name).
    pub label: Option<String>,
}

/// What one legend entry draws.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Points, each with its interval as an error bar.
    Points(Vec<Marker>),
    /// A solid line through `(x, y)` pairs.
    Line(Vec<(f64, f64)>),
    /// A dashed line.
    Dashed(Vec<(f64, f64)>),
    /// A shaded band between `low` and `high` over `x`: `(x, low, high)`.
    Band(Vec<(f64, f64, f64)>),
}

/// One legend entry: its name, colour number and what it draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text; empty for no legend entry.
    pub name: String,
    /// Palette index.
    pub colour: usize,
    /// What it draws.
    pub layer: Layer,
}

/// A scatter/line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct XyChart {
    /// Title drawn above the plot.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// Everything drawn, in drawing order (bands first look best).
    pub series: Vec<Series>,
    /// Corner of the legend (pick the emptiest).
    pub legend: LegendAt,
}

/// Where a chart's legend sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegendAt {
    /// Top right.
    #[default]
    UpperRight,
    /// Top left.
    UpperLeft,
    /// Bottom right.
    LowerRight,
    /// Bottom left.
    LowerLeft,
}

/// One bar series (one model) over every group (task).
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Legend text.
    pub name: String,
    /// Per group: value and its standard error; `None` where this series has no value.
    pub values: Vec<Option<(f64, Option<f64>)>>,
}

/// Grouped bars with error bars.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title drawn above the plot.
    pub title: String,
    /// Vertical axis title.
    pub y_label: String,
    /// Group names along the horizontal axis.
    pub groups: Vec<String>,
    /// Bar series, one colour each.
    pub series: Vec<BarSeries>,
    /// Write y tick labels as percentages.
    pub percent: bool,
}

/// Something to draw.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Scatter/line chart.
    Xy(XyChart),
    /// Grouped bars.
    Bars(BarChart),
}

static FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as the `sans-serif` family plotters measures and
/// rasterises text with.
fn register_font() {
    FONT.call_once(|| {
        // DejaVu Sans is a valid TrueType font; a failure would only leave text unmeasured.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

impl Chart {
    /// The title.
    pub fn title(&self) -> &str {
        match self {
            Chart::Xy(c) => &c.title,
            Chart::Bars(c) => &c.title,
        }
    }

    /// The chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, ChartError> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| self.error(e))?;
        }
        Ok(svg)
    }

    /// Writes the chart as a PNG file.
    pub fn to_png(&self, path: &Path) -> Result<(), ChartError> {
        register_font();
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::fmt::Display) -> ChartError {
        ChartError::Draw {
            chart: self.title().to_string(),
            detail: e.to_string(),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        root.fill(&WHITE).map_err(|e| self.error(e))?;
        match self {
            Chart::Xy(c) => draw_xy(c, root).map_err(|e| match e {
                DrawFailure::Empty => ChartError::Empty(c.title.clone()),
                DrawFailure::Backend(detail) => ChartError::Draw {
                    chart: c.title.clone(),
                    detail,
                },
            }),
            Chart::Bars(c) => draw_bars(c, root).map_err(|detail| ChartError::Draw {
                chart: c.title.clone(),
                detail,
            }),
        }
    }
}

enum DrawFailure {
    Empty,
    Backend(String),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawFailure {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawFailure::Backend(e.to_string())
    }
}

/// Every value a series puts on the axes: x, y of points (intervals included) and lines, and
/// y of bands separately (see [`cap_band`]).
fn extent(series: &[Series]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
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
fn cap_band(data: &[f64], band: &[f64], scale: Scale) -> Vec<f64> {
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
fn padded_range(values: &[f64], scale: Scale) -> Option<Range<f64>> {
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

/// `v` with SI prefixes: 135M, 1.5B, 300k.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e12 {
        (v / 1e12, "T")
    } else if a >= 1e9 {
        (v / 1e9, "B")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{scaled:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

/// A tick label for `v` in `format`; `step` is the rough spacing of ticks (for decimals).
fn tick_label(v: f64, format: TickFormat, step: f64) -> String {
    match format {
        TickFormat::Si => si(v),
        TickFormat::Percent => format!("{:.0}%", v * 100.0),
        TickFormat::Date => {
            let day = v.round();
            if day < 0.0 {
                return format!("{day:.0} d");
            }
            Axis::date_epoch()
                .checked_add_days(Days::new(day as u64))
                .map(|d| d.format("%Y-%m").to_string())
                .unwrap_or_default()
        }
        TickFormat::Number => {
            let decimals = if step >= 1.0 || step <= 0.0 || !step.is_finite() {
                0
            } else {
                (-step.log10()).ceil().clamp(0.0, 6.0) as usize
            };
            if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) {
                format!("{v:.1e}")
            } else {
                format!("{v:.decimals$}")
            }
        }
    }
}

/// An axis in plotting space (log axes are log10 of the values) with its own ticks: plotters'
/// log-scale ticks crowd or vanish on spans under a decade, so ticks are chosen here.
#[derive(Clone)]
struct TickedAxis {
    range: Range<f64>,
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
fn ticked_axis(values: &[f64], axis: &Axis) -> Option<(TickedAxis, f64)> {
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
            let start = epoch
                .checked_add_days(Days::new(range.start.max(0.0) as u64))
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
fn axis_label(v: f64, axis: &Axis, step: f64) -> String {
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

fn draw_xy<DB: DrawingBackend>(
    chart: &XyChart,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawFailure> {
    let (xs, mut ys, band) = extent(&chart.series);
    ys.extend(cap_band(&ys, &band, chart.y.scale));
    let (x_axis, x_step) = ticked_axis(&xs, &chart.x).ok_or(DrawFailure::Empty)?;
    let (y_axis, y_step) = ticked_axis(&ys, &chart.y).ok_or(DrawFailure::Empty)?;
    let y_range = y_axis.range.clone();
    let tx = |v: f64| match chart.x.scale {
        Scale::Linear => v,
        Scale::Log => v.log10(),
    };
    let ty = |v: f64| match chart.y.scale {
        Scale::Linear => v,
        Scale::Log => v.log10(),
    };
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(76)
        .build_cartesian_2d(x_axis, y_axis)?;
    let x_format = |v: &f64| axis_label(*v, &chart.x, x_step);
    let y_format = |v: &f64| axis_label(*v, &chart.y, y_step);
    ctx.configure_mesh()
        .x_desc(chart.x.label.as_str())
        .y_desc(chart.y.label.as_str())
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(208, 208, 208))
        .draw()?;

    let visible = |x: f64, y: f64| tx(x).is_finite() && ty(y).is_finite();
    let mut labels: Vec<(f64, f64, String)> = Vec::new();
    for s in &chart.series {
        let c = colour(s.colour);
        let named = !s.name.is_empty();
        match &s.layer {
            Layer::Band(points) if points.is_empty() => {}
            Layer::Band(points) => {
                // Clamped to the axis: the band's part inside the plot, nothing over the labels.
                let clamp = |v: f64| v.clamp(y_range.start, y_range.end);
                let mut outline: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| visible(p.0, p.1))
                    .map(|p| (tx(p.0), clamp(ty(p.1))))
                    .collect();
                outline.extend(
                    points
                        .iter()
                        .rev()
                        .filter(|p| visible(p.0, p.2))
                        .map(|p| (tx(p.0), clamp(ty(p.2)))),
                );
                let drawn = ctx.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.18))))?;
                if named {
                    drawn.label(&s.name).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 22, y + 6)], c.mix(0.18).filled())
                    });
                }
            }
            Layer::Line(points) => {
                let pts: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| visible(p.0, p.1))
                    .map(|p| (tx(p.0), ty(p.1)))
                    .collect();
                let drawn = ctx.draw_series(LineSeries::new(pts, c.stroke_width(2)))?;
                if named {
                    drawn.label(&s.name).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(2))
                    });
                }
            }
            Layer::Dashed(points) => {
                let pts: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| visible(p.0, p.1))
                    .map(|p| (tx(p.0), ty(p.1)))
                    .collect();
                let drawn = ctx.draw_series(DashedLineSeries::new(pts, 8, 5, c.stroke_width(2)))?;
                if named {
                    drawn.label(&s.name).legend(move |(x, y)| {
                        DashedPathElement::new(vec![(x, y), (x + 22, y)], 6, 3, c.stroke_width(2))
                    });
                }
            }
            Layer::Points(points) => {
                let shown: Vec<&Marker> = points.iter().filter(|p| visible(p.x, p.y)).collect();
                ctx.draw_series(shown.iter().filter_map(|p| {
                    let (lo, hi) = p.interval?;
                    let lo = if chart.y.scale == Scale::Log && lo <= 0.0 {
                        p.y / 1e3
                    } else {
                        lo
                    };
                    Some(ErrorBar::new_vertical(
                        tx(p.x),
                        ty(lo),
                        ty(p.y),
                        ty(hi),
                        c.stroke_width(1),
                        8,
                    ))
                }))?;
                let drawn = ctx.draw_series(
                    shown
                        .iter()
                        .map(|p| Circle::new((tx(p.x), ty(p.y)), 5, c.filled())),
                )?;
                if named {
                    drawn
                        .label(&s.name)
                        .legend(move |(x, y)| Circle::new((x + 11, y), 5, c.filled()));
                }
                labels.extend(
                    shown
                        .iter()
                        .filter_map(|p| Some((tx(p.x), ty(p.y), p.label.clone()?))),
                );
            }
        }
    }
    // Point labels last, each where it overlaps neither the area's edge nor an earlier label;
    // a label with no free place is left out (the point stays).
    let (px, py) = ctx.plotting_area().get_pixel_range();
    let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
    let mut texts = Vec::new();
    for (x, y, text) in labels {
        let (cx, cy) = ctx.backend_coord(&(x, y));
        let w = (text.chars().count() as f64 * 6.8) as i32;
        let h = 14;
        let candidates = [
            (8, -18),
            (8, 5),
            (-8 - w, -18),
            (-8 - w, 5),
            (-w / 2, -24),
            (-w / 2, 10),
        ];
        let free = candidates.into_iter().find(|&(dx, dy)| {
            let (x0, y0) = (cx + dx, cy + dy);
            let inside = x0 >= px.start && x0 + w <= px.end && y0 >= py.start && y0 + h <= py.end;
            inside
                && placed
                    .iter()
                    .all(|&(a, b, c, d)| x0 + w <= a || c <= x0 || y0 + h <= b || d <= y0)
        });
        if let Some((dx, dy)) = free {
            placed.push((cx + dx, cy + dy, cx + dx + w, cy + dy + h));
            texts.push(
                EmptyElement::at((x, y))
                    + Text::new(
                        text,
                        (dx, dy),
                        ("sans-serif", 12).into_font().color(&RGBColor(60, 60, 60)),
                    ),
            );
        }
    }
    ctx.draw_series(texts)?;
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .position(match chart.legend {
            LegendAt::UpperRight => SeriesLabelPosition::UpperRight,
            LegendAt::UpperLeft => SeriesLabelPosition::UpperLeft,
            LegendAt::LowerRight => SeriesLabelPosition::LowerRight,
            LegendAt::LowerLeft => SeriesLabelPosition::LowerLeft,
        })
        .draw()?;
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    chart: &BarChart,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let groups = chart.groups.len().max(1);
    let n_series = chart.series.len().max(1);
    let top = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .map(|(v, se)| v + se.unwrap_or(0.0))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let y_max = if chart.percent {
        (top * 1.15).clamp(0.05, 1.0)
    } else {
        top * 1.15
    };
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(64)
        .y_label_area_size(76)
        .build_cartesian_2d(
            -0.6f64..(groups as f64 - 0.4),
            0.0f64..y_max.max(f64::MIN_POSITIVE),
        )
        .map_err(|e| e.to_string())?;
    let percent = chart.percent;
    let y_format = |v: &f64| {
        if percent {
            format!("{:.0}%", v * 100.0)
        } else {
            tick_label(*v, TickFormat::Number, y_max / 10.0)
        }
    };
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(chart.y_label.as_str())
        .y_label_formatter(&y_format)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(236, 236, 236))
        .bold_line_style(RGBColor(214, 214, 214))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / n_series as f64;
    for (k, s) in chart.series.iter().enumerate() {
        let c = colour(k);
        let offset = -0.4 + width * (k as f64 + 0.5);
        let bars: Vec<(f64, f64, Option<f64>)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(g, v)| v.map(|(v, se)| (g as f64 + offset, v, se)))
            .filter(|(_, v, _)| v.is_finite())
            .collect();
        ctx.draw_series(bars.iter().map(|&(x, v, _)| {
            Rectangle::new([(x - width * 0.45, 0.0), (x + width * 0.45, v)], c.filled())
        }))
        .map_err(|e| e.to_string())?
        .label(&s.name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
        ctx.draw_series(bars.iter().filter_map(|&(x, v, se)| {
            let se = se?;
            Some(ErrorBar::new_vertical(
                x,
                (v - se).max(0.0),
                v,
                v + se,
                BLACK.stroke_width(1),
                6,
            ))
        }))
        .map_err(|e| e.to_string())?;
    }
    let label_style =
        ("sans-serif", 13)
            .into_font()
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ));
    ctx.draw_series(chart.groups.iter().enumerate().map(|(g, name)| {
        EmptyElement::at((g as f64, 0.0)) + Text::new(name.clone(), (0, 8), label_style.clone())
    }))
    .map_err(|e| e.to_string())?;
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Chart {
        Chart::Xy(XyChart {
            title: "loss vs error".into(),
            x: Axis::linear("loss (nats/token)"),
            y: Axis::linear("top-1 error"),
            series: vec![
                Series {
                    name: "95% band".into(),
                    colour: 0,
                    layer: Layer::Band(vec![(1.0, 0.4, 0.6), (2.0, 0.6, 0.8)]),
                },
                Series {
                    name: "measured".into(),
                    colour: 1,
                    layer: Layer::Points(vec![Marker {
                        x: 1.5,
                        y: 0.6,
                        interval: Some((0.55, 0.65)),
                        label: Some("model-a".into()),
                    }]),
                },
            ],
            legend: LegendAt::UpperRight,
        })
    }

    #[test]
    fn svg_has_title_axes_and_labels() {
        let svg = example().to_svg().expect("draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for text in [
            "loss vs error",
            "loss (nats/token)",
            "top-1 error",
            "model-a",
            "95% band",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn nothing_finite_is_an_error_not_a_blank_chart() {
        let chart = Chart::Xy(XyChart {
            title: "empty".into(),
            x: Axis::log("x"),
            y: Axis::linear("y"),
            series: vec![Series {
                name: "s".into(),
                colour: 0,
                layer: Layer::Line(vec![(-1.0, 1.0), (0.0, f64::NAN)]),
            }],
            legend: LegendAt::UpperRight,
        });
        assert!(matches!(chart.to_svg(), Err(ChartError::Empty(_))));
    }

    #[test]
    fn tick_labels_read_as_people_write_them() {
        assert_eq!(si(134_515_008.0), "134.52M");
        assert_eq!(si(1.5e9), "1.5B");
        assert_eq!(tick_label(181.0, TickFormat::Date, 0.0), "2023-07");
        assert_eq!(tick_label(0.25, TickFormat::Percent, 0.0), "25%");
        assert_eq!(tick_label(0.55, TickFormat::Number, 0.05), "0.55");
    }

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
