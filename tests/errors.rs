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

/// Runs `ppl` on a corrupted copy of the tiny model and expects an error naming it.
fn corrupted_model_fails(name: &str, truncate_to_half: bool, flip_at: Option<u64>, needle: &str) {
    let (dir, model, text) = tiny_setup();
    let bad = dir.path().join(name);
    let len = std::fs::metadata(&model).expect("stat").len();
    let truncate = truncate_to_half.then_some(len / 2);
    lmdensity_hub::gguf::corrupt_copy(&model, &bad, truncate, flip_at).expect("copy");
    let (bad, text) = (bad.to_str().expect("utf8"), text.to_str().expect("utf8"));
    fails_with(
        dir.path(),
        &["ppl", "--model-path", bad, "--corpus", text],
        &[name, needle],
    );
}

#[test]
fn truncated_gguf() {
    corrupted_model_fails("cut.gguf", true, None, "truncated");
}

#[test]
fn flipped_header_gguf() {
    corrupted_model_fails("flip.gguf", false, Some(1), "not a GGUF file");
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
    write_tiny_registry(
        dir,
        model_line,
        sha,
        "type = \"path\"\npath = \"tiny.gguf\"",
    )
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

#[test]
fn nan_logits_stop_the_run_and_keep_partial_results() {
    let (dir, model, text) = tiny_setup();
    // Poison the final norm's weights: every logit becomes NaN.
    let header = lmdensity_hub::gguf::read(&model).expect("read");
    let norm = header
        .tensors
        .iter()
        .find(|t| t.name == "output_norm.weight")
        .expect("tensor");
    let at = (header.data_offset + norm.offset) as usize;
    let mut bytes = std::fs::read(&model).expect("read");
    for i in 0..norm.n_elements() as usize {
        bytes[at + 4 * i..at + 4 * i + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let bad = dir.path().join("nan.gguf");
    std::fs::write(&bad, bytes).expect("write");
    fails_with(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            bad.to_str().expect("utf8"),
            "--corpus",
            text.to_str().expect("utf8"),
            "--quiet",
        ],
        &["non-finite logits", "--resume"],
    );
    let runs = run_dirs(&dir.path().join("results"));
    assert_eq!(runs.len(), 1);
    assert_eq!(
        metrics_of(&runs[0])["status"],
        "partial",
        "what was computed is kept, marked partial"
    );
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A task declared in a local file: JSON-lines rows, the PIQA prompt.
fn local_task(name: &str, data: &str) -> String {
    format!(
        "[[task]]\nname = \"{name}\"\ndescription = \"local\"\npath = \"{data}\"\nformat = \"jsonl\"\nsplit = \"validation\"\ntext = \"Question: {{{{goal}}}}\\nAnswer:\"\nchoices = \"{{{{choices}}}}\"\ngold = \"{{{{label}}}}\"\nmetrics = [\"acc\"]\n"
    )
}

/// Bad task data: a gold index out of range, an empty choice list, a missing file, a corrupt
/// Arrow file, a malformed declarations file. Each error names the task and the row or file;
/// the task scored before the failure stays in the store and `--resume` does not score it again.
#[test]
fn bad_task_rows_and_files_name_task_and_row_and_keep_finished_tasks() {
    let (dir, model, _) = tiny_setup();
    let root = dir.path();
    let row = |goal: &str, choices: &str, label: usize| {
        format!("{{\"goal\": \"{goal}\", \"choices\": {choices}, \"label\": {label}}}\n")
    };
    let good: String = (0..3)
        .map(|i| row(&format!("open jar {i}"), "[\"twist\", \"smash\"]", 0))
        .collect();
    std::fs::write(root.join("good.jsonl"), &good).expect("write");
    let bad_gold = format!(
        "{}{}",
        row("a", "[\"x\", \"y\"]", 0),
        row("b", "[\"x\", \"y\"]", 7)
    );
    std::fs::write(root.join("bad.jsonl"), &bad_gold).expect("write");
    std::fs::write(
        root.join("tasks.toml"),
        format!(
            "{}\n{}",
            local_task("good", "good.jsonl"),
            local_task("bad", "bad.jsonl")
        ),
    )
    .expect("write");
    let model = model.to_str().expect("utf8");
    let eval = |tasks: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model-path",
            model,
            "--tasks-file",
            "tasks.toml",
            "--tasks",
            tasks,
            "--threads",
            "1",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    fails_with(
        root,
        &as_refs(&eval("good,bad", &[])),
        &["bad", "document 1", "gold 7 but only 2 choice(s)"],
    );
    let results = root.join("results");
    let runs = run_dirs(&results);
    assert_eq!(runs.len(), 1, "the good task's run is kept");
    assert_eq!(metrics_of(&runs[0])["status"], "complete");

    // Fixed data: --resume reuses the finished task and scores only the other.
    std::fs::write(root.join("bad.jsonl"), &good).expect("write");
    let out = lmdensity(root, &as_refs(&eval("good,bad", &["--resume"])));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_dirs(&results).len(), 2, "good not scored twice");

    std::fs::write(root.join("bad.jsonl"), row("a", "[]", 0)).expect("write");
    fails_with(
        root,
        &as_refs(&eval("bad", &[])),
        &["bad", "document 0", "0 choice(s)"],
    );
    std::fs::write(root.join("bad.jsonl"), "{\"goal\": \"a\"\n").expect("write");
    fails_with(
        root,
        &as_refs(&eval("bad", &[])),
        &["bad", "bad.jsonl", "line 1"],
    );
    std::fs::remove_file(root.join("bad.jsonl")).expect("remove");
    fails_with(
        root,
        &as_refs(&eval("bad", &[])),
        &["bad", "bad.jsonl", "cannot read"],
    );

    std::fs::write(root.join("data.arrow"), b"ARROW1 but not really").expect("write");
    std::fs::write(
        root.join("tasks.toml"),
        local_task("arrowed", "data.arrow").replace("jsonl\"", "arrow\""),
    )
    .expect("write");
    fails_with(
        root,
        &as_refs(&eval("arrowed", &[])),
        &["arrowed", "data.arrow", "not an Arrow IPC stream"],
    );
    std::fs::write(root.join("tasks.toml"), "[[task]]\nname = 3\n").expect("write");
    fails_with(root, &as_refs(&eval("arrowed", &[])), &["tasks.toml"]);
}
