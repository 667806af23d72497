//! Bad input gets a one-line error naming the file or key, and exit code 2.

use std::path::Path;

use crate::util::*;

fn fails_with(cwd: &Path, args: &[&str], needles: &[&str]) {
    let out = lmdensity(cwd, args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected failure, got {:?}: {err}",
        out.status
    );
    for n in needles {
        assert!(err.contains(n), "stderr should mention `{n}`: {err}");
    }
    assert!(!err.contains("panicked"), "no panic: {err}");
}

#[test]
fn truncated_gguf() {
    let (dir, model, text) = tiny_setup();
    let bad = dir.path().join("cut.gguf");
    let len = std::fs::metadata(&model).expect("stat").len();
    lmdensity_hub::gguf::corrupt_copy(&model, &bad, Some(len / 2), None).expect("copy");
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            bad.to_str().expect("utf8"),
            "--corpus",
            text.to_str().expect("utf8"),
        ],
        &["cut.gguf", "truncated"],
    );
}

#[test]
fn flipped_header_gguf() {
    let (dir, model, text) = tiny_setup();
    let bad = dir.path().join("flip.gguf");
    lmdensity_hub::gguf::corrupt_copy(&model, &bad, None, Some(1)).expect("copy");
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            bad.to_str().expect("utf8"),
            "--corpus",
            text.to_str().expect("utf8"),
        ],
        &["flip.gguf", "not a GGUF file"],
    );
}

#[test]
fn missing_model_file() {
    let (dir, _, text) = tiny_setup();
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            "absent.gguf",
            "--corpus",
            text.to_str().expect("utf8"),
        ],
        &["absent.gguf", "no such file"],
    );
}

#[test]
fn missing_corpus_file() {
    let (dir, model, _) = tiny_setup();
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            model.to_str().expect("utf8"),
            "--corpus",
            "nothere.txt",
        ],
        &["nothere.txt", "cannot read"],
    );
}

fn registry_with(dir: &Path, model_line: &str, sha: &str) -> std::path::PathBuf {
    let reg = dir.join("models.toml");
    std::fs::write(
        &reg,
        format!(
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
type = "path"
path = "tiny.gguf"
"#
        ),
    )
    .expect("write registry");
    reg
}

#[test]
fn sha256_mismatch() {
    let (dir, _, text) = tiny_setup();
    let cache = tempfile::tempdir().expect("tempdir");
    registry_with(dir.path(), "", &"0".repeat(64));
    let out = std::process::Command::new(bin())
        .current_dir(dir.path())
        .env("LMDENSITY_CACHE", cache.path())
        .args([
            "ppl",
            "--model",
            "tiny",
            "--corpus",
            text.to_str().expect("utf8"),
        ])
        .output()
        .expect("run");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tiny.gguf")
            && err.contains("sha256 mismatch")
            && err.contains(&"0".repeat(64)),
        "{err}"
    );
}

#[test]
fn malformed_registry_unknown_key() {
    let (dir, _, _) = tiny_setup();
    registry_with(dir.path(), "paramz = 3", &"0".repeat(64));
    fails_with(dir.path(), &["models"], &["models.toml", "paramz"]);
}

#[test]
fn malformed_registry_missing_source() {
    let (dir, _, _) = tiny_setup();
    let reg = registry_with(dir.path(), "", &"0".repeat(64));
    let text = std::fs::read_to_string(&reg).expect("read");
    let cut = text
        .split("[[model.source]]")
        .next()
        .expect("head")
        .to_string();
    std::fs::write(&reg, cut).expect("write");
    fails_with(
        dir.path(),
        &["models"],
        &["models.toml", "`tiny`", "source"],
    );
}

#[test]
fn unknown_model_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    fails_with(
        &repo_root(),
        &[
            "ppl",
            "--model",
            "gpt-7",
            "--results-dir",
            dir.path().to_str().expect("utf8"),
        ],
        &["models.toml", "gpt-7", "known ids"],
    );
}

#[test]
fn bad_sizes_and_threads() {
    let (dir, model, text) = tiny_setup();
    let m = model.to_str().expect("utf8");
    let t = text.to_str().expect("utf8");
    fails_with(
        dir.path(),
        &["ppl", "--model-path", m, "--corpus", t, "--threads", "0"],
        &["--threads"],
    );
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            m,
            "--corpus",
            t,
            "--threads",
            "100000",
        ],
        &["--threads", "logical CPUs"],
    );
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            m,
            "--corpus",
            t,
            "--max-length",
            "100000",
        ],
        &["--max-length", "context"],
    );
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "hello world").expect("write");
    let s = short.to_str().expect("utf8");
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            m,
            "--corpus",
            s,
            "--mode",
            "llama.cpp",
            "--n-ctx",
            "32",
        ],
        &["needs at least 2 × n_ctx"],
    );
}
