//! The report as one self-contained HTML file: inline CSS and inline SVG figures, no scripts,
//! and a Content-Security-Policy that forbids every network fetch.

use std::fmt::Write;

use crate::chart::ChartError;
use crate::document::{Block, Document, Table};
use crate::figures::Figure;

/// `text` with HTML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` escaped, with `backticked` spans set as code.
pub fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d1d1d; line-height: 1.45; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #0072b2; padding-bottom: 4px; margin-top: 40px; }
nav a { margin-right: 16px; color: #0072b2; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef4f9; }
td { overflow-wrap: break-word; }
code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; font-size: 90%; }
.notice { background: #fff4e0; border-left: 4px solid #d55e00; padding: 8px 12px; margin: 10px 0; }
figure { margin: 24px 0; padding: 12px; border: 1px solid #e2e2e2; border-radius: 6px; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #444; margin-top: 8px; }
.subtitle { color: #555; margin-top: 0; }
";

fn table(out: &mut String, t: &Table) {
    out.push_str("<table>\n");
    if t.header.iter().any(|h| !h.is_empty()) {
        out.push_str("<thead><tr>");
        for h in &t.header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn figure(out: &mut String, f: &Figure) -> Result<(), ChartError> {
    let _ = write!(
        out,
        "<figure id=\"fig-{id}\" data-figure=\"{id}\" class=\"{class}\">\n<h3>{title}</h3>\n",
        id = f.id,
        class = if f.chart.is_ok() { "plot" } else { "missing" },
        title = escape(&f.title)
    );
    match &f.chart {
        Ok(chart) => match chart.to_svg() {
            Ok(svg) => out.push_str(&svg),
            Err(ChartError::Empty(_)) => {
                let _ = write!(
                    out,
                    "<p class=\"notice\">Not drawn: no finite values to plot.</p>"
                );
            }
            Err(e) => return Err(e),
        },
        Err(reason) => {
            let _ = write!(out, "<p class=\"notice\">{}</p>", inline(reason));
        }
    }
    let _ = write!(
        out,
        "\n<figcaption>{}</figcaption>\n</figure>\n",
        escape(&f.caption)
    );
    Ok(())
}

/// The HTML text of `doc`.
pub fn render(doc: &Document) -> Result<String, ChartError> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{title}</h1>\n\
         <p class=\"subtitle\">{subtitle}</p>\n<nav>",
        title = escape(&doc.title),
        subtitle = escape(&doc.subtitle)
    );
    for s in &doc.sections {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", s.id, escape(&s.title));
    }
    out.push_str("</nav>\n</header>\n<main>\n");
    for s in &doc.sections {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            s.id,
            escape(&s.title)
        );
        for block in &s.blocks {
            match block {
                Block::Text(t) => {
                    let _ = writeln!(out, "<p>{}</p>", inline(t));
                }
                Block::Notice(t) => {
                    let _ = writeln!(out, "<p class=\"notice\">{}</p>", inline(t));
                }
                Block::Heading(t) => {
                    let _ = writeln!(out, "<h3>{}</h3>", escape(t));
                }
                Block::Table(t) => table(&mut out, t),
                Block::Figure(f) => figure(&mut out, f)?,
            }
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
