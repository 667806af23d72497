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

/// A stand-in for the Hugging Face hub on 127.0.0.1: answers `GET /{repo}/resolve/{rev}/{file}`
/// (with `Range`) with ETag, X-Repo-Commit, Content-Range and Content-Length, as hf-hub expects.
/// With `cut_first_download`, the first full-body response stops half way and closes.
pub struct HubServer {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// File bodies served (full or ranged), counted as they start.
    pub served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HubServer {
    /// Serves `files` (URL path → bytes) until dropped.
    pub fn start(
        files: std::collections::HashMap<String, Vec<u8>>,
        cut_first_download: bool,
    ) -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let served_count = served.clone();
        std::thread::spawn(move || {
            let mut cut_pending = cut_first_download;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
            while !stop_flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).ok();
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut range: Option<(usize, Option<usize>)> = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        let (a, b) = v.trim().split_once('-').unwrap_or(("0", ""));
                        range = Some((a.parse().unwrap_or(0), b.parse().ok()));
                    }
                }
                let mut out = stream;
                let Some(body) = files.get(&path) else {
                    let _ = out.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                };
                let (start, end) = match range {
                    Some((a, b)) => (a, b.map_or(body.len() - 1, |b| b.min(body.len() - 1))),
                    None => (0, body.len() - 1),
                };
                let slice = &body[start..=end];
                served_count.fetch_add(1, Ordering::Relaxed);
                let head = format!(
                    "HTTP/1.1 {} \r\nETag: \"e{}\"\r\nX-Repo-Commit: {}\r\nContent-Range: bytes {start}-{end}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    if range.is_some() { "206 Partial Content" } else { "200 OK" },
                    body.len(),
                    "a".repeat(40),
                    body.len(),
                    slice.len()
                );
                let _ = out.write_all(head.as_bytes());
                if cut_pending && slice.len() > 1 {
                    cut_pending = false;
                    let _ = out.write_all(&slice[..slice.len() / 2]);
                    let _ = out.flush();
                    let _ = out.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let _ = out.write_all(slice);
            }
        });
        HubServer {
            endpoint,
            served,
            stop,
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Writes `models.toml` in `dir` with one model `tiny` (file `tiny.gguf`, pinned `sha`), an
/// extra line in its entry, and one source given as TOML lines.
pub fn write_tiny_registry(dir: &Path, model_line: &str, sha: &str, source: &str) -> PathBuf {
    let reg = dir.join("models.toml");
    let text = format!(
        r#"
default_model = "tiny"
[[model]]
id = "tiny"
name = "Tiny"
family = "test"
params = 100
release_date = "2026-01"
license = "none"
variant = "base"
format = "gguf"
quantization = "F32"
tokenizer = "gguf"
{model_line}
files = [{{ name = "tiny.gguf", sha256 = "{sha}" }}]
[[model.source]]
{source}
"#
    );
    std::fs::write(&reg, text).expect("write registry");
    reg
}
