//! The report as Markdown with its figures as image files (`figures/<id>.png` and `.svg`).

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use crate::chart::ChartError;
use crate::document::{Block, Document, Table};

/// Why a Markdown report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MarkdownError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A chart failed to render.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// A table cell: pipes escaped, line breaks flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, t: &Table) {
    let header: Vec<String> = t.header.iter().map(|h| cell(h)).collect();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(t.header.len()));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MarkdownError + '_ {
    move |source| MarkdownError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `dir/report.md` and `dir/figures/<id>.{svg,png}`; returns the Markdown file's path.
pub fn write(doc: &Document, dir: &Path) -> Result<PathBuf, MarkdownError> {
    let figures_dir = dir.join("figures");
    fs::create_dir_all(&figures_dir).map_err(io(&figures_dir))?;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n\n{}\n", doc.title, doc.subtitle);
    for s in &doc.sections {
        let _ = writeln!(out, "## {}\n", s.title);
        for block in &s.blocks {
            match block {
                Block::Text(t) => {
                    let _ = writeln!(out, "{t}\n");
                }
                Block::Notice(t) => {
                    let _ = writeln!(out, "> **Note:** {t}\n");
                }
                Block::Heading(t) => {
                    let _ = writeln!(out, "### {t}\n");
                }
                Block::Table(t) => table(&mut out, t),
                Block::Figure(f) => {
                    let _ = writeln!(out, "### {}\n", f.title);
                    match &f.chart {
                        Ok(chart) => match chart.to_svg() {
                            Ok(svg) => {
                                let svg_path = figures_dir.join(format!("{}.svg", f.id));
                                fs::write(&svg_path, svg).map_err(io(&svg_path))?;
                                chart.to_png(&figures_dir.join(format!("{}.png", f.id)))?;
                                let _ = writeln!(
                                    out,
                                    "![{title}](figures/{id}.png)\n\n*{caption}* ([SVG](figures/{id}.svg))\n",
                                    title = f.title,
                                    id = f.id,
                                    caption = f.caption
                                );
                            }
                            Err(ChartError::Empty(_)) => {
                                let _ = writeln!(
                                    out,
                                    "> **Not drawn:** no finite values to plot.\n\n*{}*\n",
                                    f.caption
                                );
                            }
                            Err(e) => return Err(e.into()),
                        },
                        Err(reason) => {
                            let _ = writeln!(out, "> **Not drawn:** {reason}\n\n*{}*\n", f.caption);
                        }
                    }
                }
            }
        }
    }
    let path = dir.join("report.md");
    fs::write(&path, out).map_err(io(&path))?;
    Ok(path)
}
