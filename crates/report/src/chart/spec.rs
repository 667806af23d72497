//! What a chart says, as data: its kind, series, axes (scale and tick format), colours, and
//! how numbers are written on ticks and in tables.

use chrono::{Days, NaiveDate};
use plotters::style::RGBColor;

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

impl Chart {
    /// The title.
    pub fn title(&self) -> &str {
        match self {
            Chart::Xy(c) => &c.title,
            Chart::Bars(c) => &c.title,
        }
    }
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
pub(super) fn tick_label(v: f64, format: TickFormat, step: f64) -> String {
    match format {
        TickFormat::Si => si(v),
        TickFormat::Percent => format!("{:.0}%", v * 100.0),
        TickFormat::Date => {
            // Days before the epoch are dates too (models released before 2023).
            let day = v.round();
            let date = match day < 0.0 {
                true => Axis::date_epoch().checked_sub_days(Days::new((-day) as u64)),
                false => Axis::date_epoch().checked_add_days(Days::new(day as u64)),
            };
            date.map(|d| d.format("%Y-%m").to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_read_as_people_write_them() {
        assert_eq!(si(134_515_008.0), "134.52M");
        assert_eq!(si(1.5e9), "1.5B");
        assert_eq!(tick_label(181.0, TickFormat::Date, 0.0), "2023-07");
        assert_eq!(tick_label(0.25, TickFormat::Percent, 0.0), "25%");
        assert_eq!(tick_label(0.55, TickFormat::Number, 0.05), "0.55");
    }
}
