//! The results store: one directory per run under a root (default `results/`).
//!
//! ```text
//! results/<run-id>/manifest.json   what was run, where, how (written first, atomically)
//! results/<run-id>/samples.jsonl   one line per finished unit of work, appended and flushed
//! results/<run-id>/metrics.json    the numbers (written atomically, `status` partial or complete)
//! ```
//! A run killed at any point leaves a valid prefix of `samples.jsonl`; resuming reads it back,
//! drops a torn last line, and continues after the last finished unit.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::schema::{AnalysisRecord, RunManifest, RunMetrics, RunStatus, Sample, SCHEMA_VERSION};

/// Errors of the results store; each names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file exists but does not parse.
    #[error("{path}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line number where it applies.
        what: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Hex sha256 of the canonical JSON of `value`: the key under which runs may resume each other.
pub fn resume_key(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// A run found in the store.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: RunManifest,
    /// Its metrics, if it got as far as writing any.
    pub metrics: Option<RunMetrics>,
}

/// A directory of runs.
#[derive(Debug, Clone)]
pub struct ResultsStore {
    root: PathBuf,
}

impl ResultsStore {
    /// The store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ResultsStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a new run: creates its directory and writes its manifest. Two runs given the same
    /// id (the same settings started within one second) get distinct directories: the second
    /// id gains `-2`, `-3`…, so a new run never lands among another run's samples.
    pub fn create_run(&self, mut manifest: RunManifest) -> Result<RunHandle, StoreError> {
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let base_id = manifest.run_id.clone();
        let mut n = 1;
        let dir = loop {
            let dir = self.root.join(&manifest.run_id);
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n += 1;
                    manifest.run_id = format!("{base_id}-{n}");
                }
                Err(e) => return Err(io_err(&dir)(e)),
            }
        };
        let path = dir.join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
        RunHandle::open(dir, manifest)
    }

    /// Writes an analysis (fit, density, trend) to `analyses/<id>.json` atomically; returns the path.
    pub fn write_analysis(&self, record: &AnalysisRecord) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("analyses");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(format!("{}.json", record.id));
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Every analysis under `analyses/`, oldest first.
    pub fn analyses(&self) -> Result<Vec<AnalysisRecord>, StoreError> {
        let dir = self.root.join("analyses");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut records = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                records.push(read_json::<AnalysisRecord>(&path)?);
            }
        }
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(records)
    }

    /// The newest unfinished run with this resume key, reopened for appending.
    pub fn find_resumable(&self, key: &str) -> Result<Option<RunHandle>, StoreError> {
        let mut candidates: Vec<StoredRun> = self
            .runs()?
            .into_iter()
            .filter(|r| r.manifest.resume_key == key)
            .filter(|r| r.metrics.as_ref().map(|m| m.status) != Some(RunStatus::Complete))
            .collect();
        candidates.sort_by(|a, b| a.manifest.started_at.cmp(&b.manifest.started_at));
        match candidates.pop() {
            Some(run) => Ok(Some(RunHandle::open(run.dir, run.manifest)?)),
            None => Ok(None),
        }
    }

    /// The newest complete run with this resume key (a finished task need not be scored again).
    pub fn find_complete(&self, key: &str) -> Result<Option<StoredRun>, StoreError> {
        let mut complete: Vec<StoredRun> = self
            .runs()?
            .into_iter()
            .filter(|r| r.manifest.resume_key == key)
            .filter(|r| r.metrics.as_ref().map(|m| m.status) == Some(RunStatus::Complete))
            .collect();
        complete.sort_by(|a, b| a.manifest.started_at.cmp(&b.manifest.started_at));
        Ok(complete.pop())
    }

    /// Every run under the root, oldest first. A missing root is an empty store; directories
    /// without a manifest are skipped; a manifest that does not parse is an error naming it.
    pub fn runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        let mut runs = Vec::new();
        for entry in entries {
            let dir = entry.map_err(io_err(&self.root))?.path();
            if !dir.join("manifest.json").is_file() {
                continue;
            }
            runs.push(StoredRun::read(&dir)?);
        }
        runs.sort_by(|a, b| {
            (&a.manifest.started_at, &a.manifest.run_id)
                .cmp(&(&b.manifest.started_at, &b.manifest.run_id))
        });
        Ok(runs)
    }
}

impl StoredRun {
    /// Reads one run directory: its manifest (required) and metrics (absent while running).
    pub fn read(dir: &Path) -> Result<StoredRun, StoreError> {
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.is_file() {
            return Err(StoreError::Corrupt {
                path: dir.to_path_buf(),
                what: "not a run directory (no manifest.json)".into(),
            });
        }
        let manifest: RunManifest = read_json(&manifest_path)?;
        let metrics_path = dir.join("metrics.json");
        let metrics = if metrics_path.is_file() {
            Some(read_json::<RunMetrics>(&metrics_path)?)
        } else {
            None
        };
        Ok(StoredRun {
            dir: dir.to_path_buf(),
            manifest,
            metrics,
        })
    }

    /// The run's finished samples (`samples.jsonl`, a torn last line dropped), in file order;
    /// none when the file is absent (curated copies may keep only manifest and metrics).
    pub fn samples(&self) -> Result<Vec<Sample>, StoreError> {
        Ok(read_samples(&self.dir.join("samples.jsonl"))?.0)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        what: format!("not a valid lmdensity {} file: {e}", file_label(path)),
    })
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An open run: its finished samples and an append handle for more.
#[derive(Debug)]
pub struct RunHandle {
    dir: PathBuf,
    manifest: RunManifest,
    samples: Vec<Sample>,
    writer: File,
}

impl RunHandle {
    fn open(dir: PathBuf, manifest: RunManifest) -> Result<Self, StoreError> {
        let path = dir.join("samples.jsonl");
        let (samples, valid_len) = read_samples(&path)?;
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // Drop a torn last line left by a kill mid-write, so appends start on a fresh line.
        writer.set_len(valid_len).map_err(io_err(&path))?;
        Ok(RunHandle {
            dir,
            manifest,
            samples,
            writer,
        })
    }

    /// The run's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's manifest.
    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }

    /// Samples finished before this handle was opened, in file order.
    pub fn finished_samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Appends one finished sample and flushes it to the OS, so a kill after this call keeps it.
    pub fn append_sample(&mut self, sample: &Sample) -> Result<(), StoreError> {
        let path = self.dir.join("samples.jsonl");
        let mut line = serde_json::to_vec(sample).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(io_err(&path))?;
        self.writer.flush().map_err(io_err(&path))
    }

    /// Writes `metrics.json` atomically.
    pub fn write_metrics(&self, metrics: &RunMetrics) -> Result<(), StoreError> {
        let path = self.dir.join("metrics.json");
        let json = serde_json::to_vec_pretty(metrics).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
        self.writer.sync_data().map_err(io_err(&path))
    }

    /// Reads `metrics.json` if the run has one (e.g. a partial one from an interrupted run).
    pub fn read_metrics(&self) -> Result<Option<RunMetrics>, StoreError> {
        let path = self.dir.join("metrics.json");
        if path.is_file() {
            read_json(&path).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Reads samples; returns them and the byte length of the valid prefix. A last line without its
/// newline is a torn write and is dropped; any other bad line is corruption.
fn read_samples(path: &Path) -> Result<(Vec<Sample>, u64), StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut samples = Vec::new();
    let mut valid_len = 0u64;
    let mut line = String::new();
    let mut line_no = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if !line.ends_with('\n') {
            break; // torn final write
        }
        let sample = serde_json::from_str(line.trim_end()).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("line {line_no}: not a sample of schema v{SCHEMA_VERSION}: {e}"),
        })?;
        samples.push(sample);
        valid_len += n as u64;
    }
    Ok((samples, valid_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Metric, WindowSample};

    fn manifest(run_id: &str, key: &str) -> RunManifest {
        RunManifest {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.into(),
            kind: "perplexity".into(),
            started_at: format!("2026-01-01T00:00:0{}Z", run_id.len() % 10),
            model: Default::default(),
            backend: Default::default(),
            hardware: Default::default(),
            software: Default::default(),
            settings: Default::default(),
            resume_key: key.into(),
        }
    }

    fn window(index: usize) -> Sample {
        Sample::PerplexityWindow(WindowSample {
            index,
            first_scored_token: index * 10,
            n_scored: 10,
            nll_sum: 12.5,
            nll_sq_sum: 20.0,
            n_greedy: 3,
            comparison: None,
        })
    }

    #[test]
    fn resume_reads_back_samples_and_drops_torn_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(tmp.path());
        let mut run = store.create_run(manifest("a", "k1")).expect("create");
        run.append_sample(&window(0)).expect("append");
        run.append_sample(&window(1)).expect("append");
        drop(run);
        // Simulate a kill in the middle of writing the third line.
        let samples = tmp.path().join("a/samples.jsonl");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&samples)
            .expect("open");
        f.write_all(b"{\"type\":\"perplexity_window\",\"ind")
            .expect("write");
        drop(f);

        let mut run = store.find_resumable("k1").expect("find").expect("found");
        assert_eq!(run.finished_samples(), &[window(0), window(1)]);
        run.append_sample(&window(2)).expect("append");
        drop(run);
        let run = store.find_resumable("k1").expect("find").expect("found");
        assert_eq!(run.finished_samples().len(), 3);
        assert!(store.find_resumable("other").expect("find").is_none());
    }

    #[test]
    fn a_second_run_with_the_same_id_gets_its_own_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(tmp.path());
        let mut first = store.create_run(manifest("same", "k")).expect("create");
        first.append_sample(&window(0)).expect("append");
        let second = store.create_run(manifest("same", "k")).expect("create");
        assert_eq!(second.dir(), tmp.path().join("same-2"));
        assert_eq!(second.manifest().run_id, "same-2");
        assert!(second.finished_samples().is_empty());
        assert_eq!(first.finished_samples().len(), 0);
        let third = store.create_run(manifest("same", "k")).expect("create");
        assert_eq!(third.dir(), tmp.path().join("same-3"));
    }

    #[test]
    fn complete_runs_are_not_resumed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(tmp.path());
        let run = store.create_run(manifest("b", "k")).expect("create");
        run.write_metrics(&RunMetrics {
            schema_version: SCHEMA_VERSION,
            status: RunStatus::Complete,
            elapsed_s: 1.0,
            metrics: vec![Metric {
                name: "x".into(),
                value: 1.0,
                stderr: None,
                unit: "u".into(),
                how: "test".into(),
            }],
        })
        .expect("metrics");
        assert!(store.find_resumable("k").expect("find").is_none());
        let runs = store.runs().expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].metrics.as_ref().map(|m| m.metrics.len()), Some(1));
    }

    #[test]
    fn corrupt_middle_line_names_file_and_line() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ResultsStore::new(tmp.path());
        let mut run = store.create_run(manifest("c", "k")).expect("create");
        run.append_sample(&window(0)).expect("append");
        drop(run);
        let samples = tmp.path().join("c/samples.jsonl");
        let mut f = OpenOptions::new()
            .append(true)
            .open(&samples)
            .expect("open");
        f.write_all(b"garbage\n").expect("write");
        drop(f);
        let err = store.find_resumable("k").expect_err("corrupt");
        let msg = err.to_string();
        assert!(
            msg.contains("samples.jsonl") && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[test]
    fn missing_root_is_empty() {
        let store = ResultsStore::new("/nonexistent/lmdensity-results");
        assert!(store.runs().expect("runs").is_empty());
    }
}
