//! Drawing a [`Chart`] with plotters, to SVG text or a PNG file; text is set in the embedded
//! DejaVu Sans.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::element::{DashedPathElement, ErrorBar};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::axes::{axis_label, cap_band, extent, ticked_axis, TickedAxis};
use super::spec::{
    colour, tick_label, BarChart, Chart, ChartError, Layer, LegendAt, Marker, Scale, Series,
    TickFormat, XyChart, HEIGHT, WIDTH,
};

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

/// The drawing context of an x–y chart, both axes in plotting space.
type XyContext<'a, DB> = ChartContext<'a, DB, Cartesian2d<TickedAxis, TickedAxis>>;

/// How an x–y chart's data values map to plotting space (log10 on log axes).
#[derive(Clone, Copy)]
struct Space {
    x: Scale,
    y: Scale,
}

impl Space {
    fn tx(self, v: f64) -> f64 {
        match self.x {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }

    fn ty(self, v: f64) -> f64 {
        match self.y {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }

    /// Whether `(x, y)` has a place on the plot (not ≤ 0 on a log axis, not NaN).
    fn visible(self, x: f64, y: f64) -> bool {
        self.tx(x).is_finite() && self.ty(y).is_finite()
    }

    /// The drawable `(x, y)` pairs, in plotting space.
    fn line(self, points: &[(f64, f64)]) -> Vec<(f64, f64)> {
        points
            .iter()
            .filter(|p| self.visible(p.0, p.1))
            .map(|p| (self.tx(p.0), self.ty(p.1)))
            .collect()
    }
}

/// Draws an x–y chart: axes and grid, every series in order, point labels, then the legend.
fn draw_xy<DB: DrawingBackend>(
    chart: &XyChart,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawFailure> {
    let (xs, mut ys, band) = extent(&chart.series);
    ys.extend(cap_band(&ys, &band, chart.y.scale));
    let (x_axis, x_step) = ticked_axis(&xs, &chart.x).ok_or(DrawFailure::Empty)?;
    let (y_axis, y_step) = ticked_axis(&ys, &chart.y).ok_or(DrawFailure::Empty)?;
    let y_range = y_axis.range.clone();
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(76)
        .build_cartesian_2d(x_axis, y_axis)?;
    draw_mesh(&mut ctx, chart, x_step, y_step)?;
    let space = Space {
        x: chart.x.scale,
        y: chart.y.scale,
    };
    let mut labels: Vec<(f64, f64, String)> = Vec::new();
    for s in &chart.series {
        match &s.layer {
            Layer::Band(points) if points.is_empty() => {}
            Layer::Band(points) => draw_band(&mut ctx, space, s, points, &y_range)?,
            Layer::Line(points) => draw_line(&mut ctx, space, s, points, false)?,
            Layer::Dashed(points) => draw_line(&mut ctx, space, s, points, true)?,
            Layer::Points(points) => {
                labels.extend(draw_points(&mut ctx, space, s, points)?);
            }
        }
    }
    draw_point_labels(&mut ctx, labels)?;
    draw_legend(&mut ctx, chart.legend)
}

/// Grid, ticks and axis titles.
fn draw_mesh<'a, DB: DrawingBackend + 'a>(
    ctx: &mut XyContext<'a, DB>,
    chart: &XyChart,
    x_step: f64,
    y_step: f64,
) -> Result<(), DrawFailure> {
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
    Ok(())
}

/// A shaded band, clamped to the axis: the band's part inside the plot, nothing over the
/// labels.
fn draw_band<'a, DB: DrawingBackend + 'a>(
    ctx: &mut XyContext<'a, DB>,
    space: Space,
    s: &Series,
    points: &[(f64, f64, f64)],
    y_range: &Range<f64>,
) -> Result<(), DrawFailure> {
    let c = colour(s.colour);
    let clamp = |v: f64| v.clamp(y_range.start, y_range.end);
    let mut outline: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| space.visible(p.0, p.1))
        .map(|p| (space.tx(p.0), clamp(space.ty(p.1))))
        .collect();
    outline.extend(
        points
            .iter()
            .rev()
            .filter(|p| space.visible(p.0, p.2))
            .map(|p| (space.tx(p.0), clamp(space.ty(p.2)))),
    );
    let drawn = ctx.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.18))))?;
    if !s.name.is_empty() {
        drawn.label(&s.name).legend(move |(x, y)| {
            Rectangle::new([(x, y - 6), (x + 22, y + 6)], c.mix(0.18).filled())
        });
    }
    Ok(())
}

/// A solid or dashed line.
fn draw_line<'a, DB: DrawingBackend + 'a>(
    ctx: &mut XyContext<'a, DB>,
    space: Space,
    s: &Series,
    points: &[(f64, f64)],
    dashed: bool,
) -> Result<(), DrawFailure> {
    let c = colour(s.colour);
    let pts = space.line(points);
    let named = !s.name.is_empty();
    if dashed {
        let drawn = ctx.draw_series(DashedLineSeries::new(pts, 8, 5, c.stroke_width(2)))?;
        if named {
            drawn.label(&s.name).legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 22, y)], 6, 3, c.stroke_width(2))
            });
        }
    } else {
        let drawn = ctx.draw_series(LineSeries::new(pts, c.stroke_width(2)))?;
        if named {
            drawn.label(&s.name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(2))
            });
        }
    }
    Ok(())
}

/// Points with their error bars; returns the labels to write, at their plotting-space places.
fn draw_points<'a, DB: DrawingBackend + 'a>(
    ctx: &mut XyContext<'a, DB>,
    space: Space,
    s: &Series,
    points: &[Marker],
) -> Result<Vec<(f64, f64, String)>, DrawFailure> {
    let c = colour(s.colour);
    let (tx, ty) = (|v: f64| space.tx(v), |v: f64| space.ty(v));
    let shown: Vec<&Marker> = points.iter().filter(|p| space.visible(p.x, p.y)).collect();
    ctx.draw_series(shown.iter().filter_map(|p| {
        let (lo, hi) = p.interval?;
        let lo = if space.y == Scale::Log && lo <= 0.0 {
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
    if !s.name.is_empty() {
        drawn
            .label(&s.name)
            .legend(move |(x, y)| Circle::new((x + 11, y), 5, c.filled()));
    }
    Ok(shown
        .iter()
        .filter_map(|p| Some((tx(p.x), ty(p.y), p.label.clone()?)))
        .collect())
}

/// Point labels, drawn last, each where it overlaps neither the area's edge nor an earlier
/// label; a label with no free place is left out (the point stays).
fn draw_point_labels<'a, DB: DrawingBackend + 'a>(
    ctx: &mut XyContext<'a, DB>,
    labels: Vec<(f64, f64, String)>,
) -> Result<(), DrawFailure> {
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
    Ok(())
}

/// The legend box, in the chart's chosen corner.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    ctx: &mut XyContext<'a, DB>,
    legend: LegendAt,
) -> Result<(), DrawFailure> {
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .position(match legend {
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
    use crate::chart::Axis;

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
}
