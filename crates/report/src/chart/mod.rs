//! Chart specifications (data only) and their rendering with plotters to SVG text or PNG files.
//!
//! A [`Chart`] says what to draw: layers of points with error bars, lines, bands, or grouped
//! bars, with axis labels, units and scales. Rendering is the same code for SVG and PNG; text is
//! set in DejaVu Sans (embedded, so PNGs look the same on every machine), colours come from the
//! Okabe–Ito palette, which stays distinguishable with the common colour-vision deficiencies.
//!
//! `spec` holds the description types, `axes` turns data into axis ranges and ticks, and
//! `render` draws with plotters.

mod axes;
mod render;
mod spec;

pub use spec::{
    colour, si, Axis, BarChart, BarSeries, Chart, ChartError, Layer, LegendAt, Marker, Scale,
    Series, TickFormat, XyChart, HEIGHT, PALETTE, WIDTH,
};
