//! `lmdensity report --html FILE --md DIR`: the results store as a report people read.

use std::fs;

use anyhow::{Context, Result};
use lmdensity_report::collect::Collected;
use lmdensity_report::{document, html, markdown};

use crate::cli::{Cli, ReportArgs};

/// Writes the HTML and/or Markdown report of `--results-dir` plus every `--include` store.
pub fn write_reports(cli: &Cli, args: &ReportArgs) -> Result<()> {
    let mut stores = vec![cli.results_dir.clone()];
    stores.extend(args.include.iter().cloned());
    let data = Collected::read(&stores);
    let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let doc = document::document(&data, &generated);
    if let Some(path) = &args.html {
        let text = html::render(&doc)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create the directory", parent.display()))?;
        }
        fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        if !cli.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(dir) = &args.md {
        let path = markdown::write(&doc, dir)?;
        if !cli.quiet {
            eprintln!("wrote {} and its figures", path.display());
        }
    }
    if !cli.quiet {
        for problem in &data.problems {
            eprintln!("warning: not read: {problem}");
        }
    }
    Ok(())
}
