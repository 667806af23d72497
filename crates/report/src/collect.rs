//! Gathering what a report shows: the runs and analyses of one or more results stores, keeping
//! going past unreadable files (they are listed as problems, in place, not fatal).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use lmdensity_core::{AnalysisRecord, RunStatus, StoredRun};

/// Everything found in the stores, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// The stores read, in the order given.
    pub stores: Vec<PathBuf>,
    /// Every readable run, oldest first.
    pub runs: Vec<StoredRun>,
    /// Every readable analysis, oldest first.
    pub analyses: Vec<AnalysisRecord>,
    /// Files or directories that could not be read, with why (`path: what is wrong`).
    pub problems: Vec<String>,
}

impl Collected {
    /// Reads every run (`<store>/<run>/manifest.json`) and analysis
    /// (`<store>/analyses/*.json`) under `stores`; a store that does not exist is a problem,
    /// not an error.
    pub fn read(stores: &[PathBuf]) -> Collected {
        let mut out = Collected {
            stores: stores.to_vec(),
            ..Collected::default()
        };
        for store in stores {
            out.read_store(store);
        }
        out.runs.sort_by(|a, b| {
            (&a.manifest.started_at, &a.manifest.run_id)
                .cmp(&(&b.manifest.started_at, &b.manifest.run_id))
        });
        out.analyses
            .sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        out
    }

    fn read_store(&mut self, store: &Path) {
        let entries = match fs::read_dir(store) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems.push(format!("{}: {e}", store.display()));
                return;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            if dir.file_name().is_some_and(|n| n == "analyses") {
                self.read_analyses(&dir);
            } else if dir.join("manifest.json").is_file() {
                match StoredRun::read(&dir) {
                    Ok(run) => self.runs.push(run),
                    Err(e) => self.problems.push(e.to_string()),
                }
            } else if dir.join("metrics.json").is_file() || dir.join("samples.jsonl").is_file() {
                self.problems.push(format!(
                    "{}: has results but no manifest.json, so what was measured is unknown",
                    dir.display()
                ));
            }
        }
    }

    fn read_analyses(&mut self, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            self.problems
                .push(format!("{}: cannot list the directory", dir.display()));
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<AnalysisRecord>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(record) => self.analyses.push(record),
                Err(e) => self.problems.push(format!("{}: {e}", path.display())),
            }
        }
    }

    /// The runs of `kind` (`perplexity`, `task`, `bench`) that finished with metrics.
    pub fn complete(&self, kind: &str) -> impl Iterator<Item = &StoredRun> + '_ {
        let kind = kind.to_string();
        self.runs.iter().filter(move |r| {
            r.manifest.kind == kind
                && r.metrics
                    .as_ref()
                    .is_some_and(|m| m.status == RunStatus::Complete)
        })
    }

    /// Model ids in order of first appearance.
    pub fn models(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for run in &self.runs {
            if !ids.contains(&run.manifest.model.id) {
                ids.push(run.manifest.model.id.clone());
            }
        }
        ids
    }
}

/// Per model id, every value of its complete runs (newest run last, so it wins): each metric
/// (`bits_per_byte`, `piqa/acc`) and its `<name>_stderr`, plus `params` from the manifest.
/// What `fit runs` and `density` read from a store, aggregated once.
pub fn model_values(runs: &[StoredRun]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut sorted: Vec<&StoredRun> = runs.iter().collect();
    sorted.sort_by(|a, b| a.manifest.started_at.cmp(&b.manifest.started_at));
    let mut values: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for run in sorted {
        let Some(metrics) = run
            .metrics
            .as_ref()
            .filter(|m| m.status == RunStatus::Complete)
        else {
            continue;
        };
        let entry = values.entry(run.manifest.model.id.clone()).or_default();
        entry.insert("params".into(), run.manifest.model.n_params as f64);
        for metric in &metrics.metrics {
            entry.insert(metric.name.clone(), metric.value);
            if let Some(stderr) = metric.stderr {
                entry.insert(format!("{}_stderr", metric.name), stderr);
            }
        }
    }
    values
}

/// A run's setting as text (`corpus`, `mode`), or empty.
pub fn setting(run: &StoredRun, key: &str) -> String {
    match run.manifest.settings.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// The value and standard error of metric `name` of `run`, if it has it and it is finite.
pub fn metric(run: &StoredRun, name: &str) -> Option<(f64, Option<f64>)> {
    let m = run.metrics.as_ref()?.get(name)?;
    m.value.is_finite().then_some((m.value, m.stderr))
}
