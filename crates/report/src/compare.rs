//! Two runs side by side: metric by metric, ratio, difference in standard errors, and which
//! settings differ between the runs (model file, quantization, engine build, options).

use std::collections::BTreeMap;

use lmdensity_core::StoredRun;
use serde::Serialize;

/// Whether a difference is more than noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// |B − A| ≤ 2 combined standard errors.
    WithinNoise,
    /// |B − A| > 2 combined standard errors (≈ 95% two-sided for normal errors).
    Differs,
    /// Neither run reports a standard error for this metric: no test possible.
    NoStderr,
}

/// One metric in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricComparison {
    /// Metric name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Value in run A, and its standard error.
    pub a: (f64, Option<f64>),
    /// Value in run B, and its standard error.
    pub b: (f64, Option<f64>),
    /// B / A (infinite or NaN when A is 0).
    pub ratio: f64,
    /// (B − A) / √(seA² + seB²), when at least one run has a standard error.
    pub z: Option<f64>,
    /// What the difference amounts to.
    pub verdict: Verdict,
}

/// A manifest field whose value differs between the runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingDifference {
    /// Dotted path in the manifest (`model.sha256`, `settings.n_ctx`).
    pub key: String,
    /// Value in run A (`—` when absent).
    pub a: String,
    /// Value in run B.
    pub b: String,
}

/// Everything `lmdensity compare` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Run A's directory.
    pub run_a: String,
    /// Run B's directory.
    pub run_b: String,
    /// Metrics both runs have, in A's order.
    pub metrics: Vec<MetricComparison>,
    /// Metrics only one run has.
    pub only_in_a: Vec<String>,
    /// Metrics only in run B.
    pub only_in_b: Vec<String>,
    /// Manifest fields that differ (run ids, times and hardware free memory left out).
    pub settings: Vec<SettingDifference>,
    /// Notes about runs without metrics or with status other than complete.
    pub notes: Vec<String>,
    /// The runs compared unit by unit, when they scored the same items or windows (none for
    /// runs without units to pair, such as bench runs).
    pub paired: Option<crate::paired::Pairing>,
}

/// Paired-bootstrap resamples of a comparison.
pub const PAIRED_RESAMPLES: usize = 2000;
/// Seed of the paired bootstrap (fixed: the same runs give the same interval).
pub const PAIRED_SEED: u64 = 0;

/// Manifest fields that differ between any two runs and say nothing about what was measured.
const IGNORED: &[&str] = &[
    "run_id",
    "started_at",
    "resume_key",
    "hardware.ram_available_bytes",
    "settings.started",
];

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn setting_differences(a: &StoredRun, b: &StoredRun) -> Vec<SettingDifference> {
    let flat = |run: &StoredRun| {
        let mut out = BTreeMap::new();
        if let Ok(value) = serde_json::to_value(&run.manifest) {
            flatten("", &value, &mut out);
        }
        out
    };
    let (fa, fb) = (flat(a), flat(b));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !IGNORED.contains(&k.as_str()))
        .filter_map(|k| {
            let (va, vb) = (fa.get(k), fb.get(k));
            (va != vb).then(|| SettingDifference {
                key: k.clone(),
                a: va.cloned().unwrap_or_else(|| "—".into()),
                b: vb.cloned().unwrap_or_else(|| "—".into()),
            })
        })
        .collect()
}

/// Compares run B against run A.
pub fn compare(a: &StoredRun, b: &StoredRun) -> Comparison {
    let mut notes = Vec::new();
    for (label, run) in [("A", a), ("B", b)] {
        match &run.metrics {
            None => notes.push(format!(
                "run {label} ({}) has no metrics yet: running, or interrupted (resume it)",
                run.dir.display()
            )),
            Some(m) if m.status != lmdensity_core::RunStatus::Complete => notes.push(format!(
                "run {label} ({}) is {:?}: its metrics cover part of the work",
                run.dir.display(),
                m.status
            )),
            Some(_) => {}
        }
    }
    let empty = Vec::new();
    let metrics_a = a.metrics.as_ref().map_or(&empty, |m| &m.metrics);
    let metrics_b = b.metrics.as_ref().map_or(&empty, |m| &m.metrics);
    let mut metrics = Vec::new();
    let mut only_in_a = Vec::new();
    for ma in metrics_a {
        let Some(mb) = metrics_b.iter().find(|m| m.name == ma.name) else {
            only_in_a.push(ma.name.clone());
            continue;
        };
        let se = (ma.stderr.unwrap_or(0.0).powi(2) + mb.stderr.unwrap_or(0.0).powi(2)).sqrt();
        let has_se = ma.stderr.is_some() || mb.stderr.is_some();
        let z = (has_se && se > 0.0).then(|| (mb.value - ma.value) / se);
        let verdict = match z {
            None if has_se && mb.value == ma.value => Verdict::WithinNoise,
            None if has_se => Verdict::Differs,
            None => Verdict::NoStderr,
            Some(z) if z.abs() <= 2.0 => Verdict::WithinNoise,
            Some(_) => Verdict::Differs,
        };
        metrics.push(MetricComparison {
            name: ma.name.clone(),
            unit: ma.unit.clone(),
            a: (ma.value, ma.stderr),
            b: (mb.value, mb.stderr),
            ratio: mb.value / ma.value,
            z,
            verdict,
        });
    }
    let only_in_b = metrics_b
        .iter()
        .filter(|mb| !metrics_a.iter().any(|ma| ma.name == mb.name))
        .map(|m| m.name.clone())
        .collect();
    Comparison {
        run_a: a.dir.display().to_string(),
        run_b: b.dir.display().to_string(),
        metrics,
        only_in_a,
        only_in_b,
        settings: setting_differences(a, b),
        notes,
        paired: paired(a, b),
    }
}

/// The paired part: both runs' samples read and paired; unreadable samples are said in place.
fn paired(a: &StoredRun, b: &StoredRun) -> Option<crate::paired::Pairing> {
    use crate::paired::{pair, Pairing};
    match (a.samples(), b.samples()) {
        (Ok(sa), Ok(sb)) => pair(a, b, &sa, &sb, PAIRED_RESAMPLES, PAIRED_SEED),
        (Err(e), _) | (_, Err(e)) => Some(Pairing::Unpaired(format!("samples not read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmdensity_core::{Metric, RunManifest, RunMetrics, RunStatus};

    fn run(dir: &str, quant: &str, metrics: Option<Vec<Metric>>) -> StoredRun {
        let manifest: RunManifest = serde_json::from_value(serde_json::json!({
            "schema_version": 1, "run_id": dir, "kind": "bench", "started_at": dir,
            "model": {"id": "m", "path": "m.gguf", "sha256": "abc", "file_bytes": 1, "format": "gguf",
                      "quantization": quant, "architecture": "llama", "n_params": 1, "n_vocab": 1,
                      "n_ctx_train": 1},
            "backend": {"name": "llama.cpp", "version": "1", "device": "cpu", "threads": 2,
                        "build_features": "AVX2", "settings": {}},
            "hardware": {"cpu_model": "x", "cpu_cores_physical": 1, "cpu_threads": 2,
                         "cpu_features": [], "ram_total_bytes": 1, "ram_available_bytes": dir.len(),
                         "os": "linux", "kernel": "6", "arch": "x86_64", "gpu": null},
            "software": {"lmdensity_version": "0.1.0", "git_revision": "r", "target_features": "",
                         "crate_versions": {}},
            "settings": {}, "resume_key": dir
        }))
        .expect("manifest");
        StoredRun {
            dir: dir.into(),
            manifest,
            metrics: metrics.map(|metrics| RunMetrics {
                schema_version: 1,
                status: RunStatus::Complete,
                elapsed_s: 1.0,
                metrics,
            }),
        }
    }

    fn metric(name: &str, value: f64, stderr: Option<f64>) -> Metric {
        Metric {
            name: name.into(),
            value,
            stderr,
            unit: "tokens/s".into(),
            how: String::new(),
        }
    }

    #[test]
    fn ratios_and_verdicts_follow_the_standard_errors() {
        let a = run(
            "a",
            "Q4_K_M",
            Some(vec![
                metric("pp512/avg_ts", 100.0, Some(3.0)),
                metric("tg128/avg_ts", 50.0, Some(1.0)),
                metric("load_ms", 80.0, None),
                metric("only_a", 1.0, None),
            ]),
        );
        let b = run(
            "bb",
            "Q8_0",
            Some(vec![
                metric("pp512/avg_ts", 104.0, Some(4.0)),
                metric("tg128/avg_ts", 40.0, Some(1.0)),
                metric("load_ms", 120.0, None),
                metric("only_b", 1.0, None),
            ]),
        );
        let c = compare(&a, &b);
        assert_eq!(c.metrics.len(), 3);
        let pp = &c.metrics[0];
        assert!((pp.ratio - 1.04).abs() < 1e-12);
        // 4 / √(9 + 16) = 0.8 combined standard errors.
        assert!((pp.z.expect("z") - 0.8).abs() < 1e-12);
        assert_eq!(pp.verdict, Verdict::WithinNoise);
        let tg = &c.metrics[1];
        assert!((tg.z.expect("z") + 10.0 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(tg.verdict, Verdict::Differs);
        assert_eq!(c.metrics[2].verdict, Verdict::NoStderr);
        assert!((c.metrics[2].ratio - 1.5).abs() < 1e-12);
        assert_eq!(
            (c.only_in_a.as_slice(), c.only_in_b.as_slice()),
            (
                ["only_a".to_string()].as_slice(),
                ["only_b".to_string()].as_slice()
            )
        );
        // Only what was measured differently is listed: the quantization, not ids or times.
        let keys: Vec<&str> = c.settings.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["model.quantization"]);
        assert_eq!(
            (c.settings[0].a.as_str(), c.settings[0].b.as_str()),
            ("Q4_K_M", "Q8_0")
        );
        assert!(c.notes.is_empty());
    }

    #[test]
    fn a_run_without_metrics_is_reported_not_fatal() {
        let a = run("a", "Q4_K_M", Some(vec![metric("x", 1.0, None)]));
        let b = run("b", "Q4_K_M", None);
        let c = compare(&a, &b);
        assert!(c.metrics.is_empty());
        assert_eq!(c.only_in_a, ["x"]);
        assert_eq!(c.notes.len(), 1);
        assert!(c.notes[0].contains("run B") && c.notes[0].contains("no metrics"));
    }
}
