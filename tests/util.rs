//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lmdensity"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Model cache shared by test runs (real models are fetched once).
pub fn shared_cache() -> PathBuf {
    let dir = repo_root().join("target/lmdensity-test-cache");
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

/// `lmdensity` with a private results dir and the shared cache, run in `cwd`.
pub fn lmdensity(cwd: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(cwd)
        .env("LMDENSITY_CACHE", shared_cache())
        .env_remove("LMDENSITY_REGISTRY")
        .env_remove("LMDENSITY_RESULTS")
        .args(args)
        .output()
        .expect("run lmdensity")
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tiny llama GGUF and a text corpus in a fresh temp dir.
pub fn tiny_setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny.gguf");
    lmdensity_hub::gguf::write_tiny_llama(&model, 7).expect("write tiny model");
    let text = dir.path().join("text.txt");
    let body =
        "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.\n"
            .repeat(12);
    std::fs::write(&text, body).expect("write corpus");
    (dir, model, text)
}

/// Reads a run's metrics.json as JSON.
pub fn metrics_of(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("metrics.json")).expect("metrics.json"))
        .expect("json")
}

/// The run directories under a results dir, sorted.
pub fn run_dirs(results: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Value of metric `name` in a metrics.json.
pub fn metric(metrics: &serde_json::Value, name: &str) -> f64 {
    metrics["metrics"]
        .as_array()
        .expect("metrics array")
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["value"].as_f64())
        .unwrap_or_else(|| panic!("no metric {name} in {metrics}"))
}
