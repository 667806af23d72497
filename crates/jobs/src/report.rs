//! Reading the store back: two runs compared, and the report with plots.

use std::fs;
use std::path::{Path, PathBuf};

use lmdensity_core::{progress, StoredRun};
use lmdensity_report::collect::Collected;
use lmdensity_report::{compare, document, html, markdown, Comparison};

use crate::bail;
use crate::error::{Context, Result};
use crate::workspace::Workspace;

/// A run directory, or a run id / unique prefix of one in the results store.
pub fn find_run(ws: &Workspace, arg: &str) -> Result<StoredRun> {
    let path = Path::new(arg);
    if path.is_dir() {
        return Ok(StoredRun::read(path)?);
    }
    let mut matches: Vec<StoredRun> = ws
        .store()
        .runs()?
        .into_iter()
        .filter(|r| r.manifest.run_id.starts_with(arg))
        .collect();
    // An exact id wins over the longer ids it is a prefix of (`X` and `X-2`).
    if let Some(exact) = matches.iter().position(|r| r.manifest.run_id == arg) {
        return Ok(matches.swap_remove(exact));
    }
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => bail!(
            "{arg}: neither a run directory nor a run id in {}",
            ws.results_dir.display()
        ),
        n => bail!(
            "{arg}: {n} runs in {} start with this; give more of the id",
            ws.results_dir.display()
        ),
    }
}

/// Two runs, found by directory or id, and their comparison.
pub fn compare_runs(
    ws: &Workspace,
    a: &str,
    b: &str,
) -> Result<(StoredRun, StoredRun, Comparison)> {
    let (a, b) = (find_run(ws, a)?, find_run(ws, b)?);
    let c = compare(&a, &b);
    Ok((a, b, c))
}

/// The report of the workspace's store plus more stores, as HTML and/or Markdown.
#[derive(Debug, Clone, Default)]
pub struct ReportJob {
    /// Write a self-contained HTML report here.
    pub html: Option<PathBuf>,
    /// Write `DIR/report.md` with figures in `DIR/figures/`.
    pub md: Option<PathBuf>,
    /// More results stores to read.
    pub include: Vec<PathBuf>,
}

impl ReportJob {
    /// Writes the reports; returns what could not be read (also said on stderr).
    pub fn run(&self, ws: &Workspace) -> Result<Vec<String>> {
        let mut stores = vec![ws.results_dir.clone()];
        stores.extend(self.include.iter().cloned());
        let data = Collected::read(&stores);
        let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        let doc = document::document(&data, &generated);
        if let Some(path) = &self.html {
            let text = html::render(&doc)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).with_context(|| {
                    format!("{}: cannot create the directory", parent.display())
                })?;
            }
            fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
            progress::say(format!("wrote {}", path.display()));
        }
        if let Some(dir) = &self.md {
            let path = markdown::write(&doc, dir)?;
            progress::say(format!("wrote {} and its figures", path.display()));
        }
        for problem in &data.problems {
            progress::say(format!("warning: not read: {problem}"));
        }
        Ok(data.problems.iter().map(|p| p.to_string()).collect())
    }
}
