//! The binary end to end on the tiny generated model: runs, the store, report, resume.

use crate::util::*;

#[test]
fn ppl_both_modes_write_runs_and_report_reads_them() {
    let (dir, model, text) = tiny_setup();
    let out = lmdensity(
        dir.path(),
        &[
            "ppl",
            "--model-path",
            model.to_str().expect("utf8"),
            "--corpus",
            text.to_str().expect("utf8"),
            "--mode",
            "both",
            "--max-length",
            "64",
            "--n-ctx",
            "32",
            "--threads",
            "1",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = run_dirs(&dir.path().join("results"));
    assert_eq!(runs.len(), 2, "one run per mode");
    for run in &runs {
        let m = metrics_of(run);
        assert_eq!(m["status"], "complete");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("manifest.json")).expect("manifest"))
                .expect("json");
        assert_eq!(manifest["model"]["architecture"], "llama");
        assert_eq!(manifest["model"]["quantization"], "F32");
        assert_eq!(manifest["model"]["sha256"].as_str().map(str::len), Some(64));
        assert!(
            manifest["backend"]["build_features"]
                .as_str()
                .expect("features")
                .contains("AVX2"),
            "{manifest}"
        );
        assert!(
            manifest["hardware"]["cpu_threads"]
                .as_u64()
                .expect("threads")
                >= 1
        );
    }
    let harness = runs
        .iter()
        .find(|r| r.to_string_lossy().contains("harness"))
        .expect("harness run");
    let m = metrics_of(harness);
    let bpb = metric(&m, "bits_per_byte");
    assert!(bpb.is_finite() && bpb > 0.0, "bpb {bpb}");
    let n_bytes = std::fs::metadata(&text).expect("stat").len() as f64;
    // Byte-fallback vocabulary: at least one token per byte (spaces become 3-byte `▁`).
    let n_tokens = metric(&m, "tokens_scored");
    assert!(n_tokens >= n_bytes, "{n_tokens} tokens for {n_bytes} bytes");
    // The units agree with each other.
    let nll = metric(&m, "nll_per_token");
    assert!((bpb - nll * n_tokens / n_bytes / std::f64::consts::LN_2).abs() < 1e-9);
    assert!((metric(&m, "byte_perplexity") - bpb.exp2()).abs() / bpb.exp2() < 1e-9);
    assert!((metric(&m, "token_perplexity") - nll.exp()).abs() / nll.exp() < 1e-9);

    let report = lmdensity(dir.path(), &["report"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let table = stdout(&report);
    assert!(
        table.contains("bits_per_byte")
            && table.contains("perplexity")
            && table.contains("harness/64"),
        "{table}"
    );
}

#[test]
fn resume_after_kill_keeps_samples_and_scores_only_the_rest() {
    let (dir, model, _) = tiny_setup();
    // Big enough that the run is still going when we kill it.
    let text = dir.path().join("big.txt");
    std::fs::write(&text, "Sphinx of black quartz, judge my vow. ".repeat(6000)).expect("write");
    let args = [
        "ppl",
        "--model-path",
        model.to_str().expect("utf8"),
        "--corpus",
        text.to_str().expect("utf8"),
        "--max-length",
        "32",
        "--threads",
        "1",
        "--batch-size",
        "16",
        "--quiet",
    ];
    let mut child = std::process::Command::new(bin())
        .current_dir(dir.path())
        .env("LMDENSITY_CACHE", shared_cache())
        .args(args)
        .spawn()
        .expect("spawn");
    let results = dir.path().join("results");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let samples = loop {
        if let Some(run) = run_dirs(&results).first() {
            let s = run.join("samples.jsonl");
            if std::fs::read_to_string(&s)
                .map(|t| t.lines().count())
                .unwrap_or(0)
                >= 5
            {
                break s;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run produced no samples"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().expect("kill");
    child.wait().expect("wait");
    let run = samples.parent().expect("run dir").to_path_buf();
    assert!(
        !run.join("metrics.json").exists(),
        "the run must be killed before it finished"
    );
    let before = std::fs::read(&samples).expect("read");
    let complete_lines = before.iter().filter(|&&b| b == b'\n').count();

    let mut resume_args = args.to_vec();
    resume_args.retain(|a| *a != "--quiet");
    resume_args.push("--resume");
    let out = lmdensity(dir.path(), &resume_args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("({complete_lines} windows already scored)")),
        "{}",
        stderr(&out)
    );
    assert_eq!(run_dirs(&results).len(), 1, "resumed in place, no new run");
    let after = std::fs::read(&samples).expect("read");
    let kept = &before[..before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)];
    assert_eq!(
        &after[..kept.len()],
        kept,
        "finished samples are kept byte for byte"
    );
    let indices: Vec<u64> = String::from_utf8_lossy(&after)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["index"]
                .as_u64()
                .expect("index")
        })
        .collect();
    let expected: Vec<u64> = (0..indices.len() as u64).collect();
    assert_eq!(
        indices, expected,
        "every window exactly once, none recomputed"
    );
    assert_eq!(metrics_of(&run)["status"], "complete");
}

#[test]
fn models_lists_the_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lmdensity(
        &repo_root(),
        &[
            "models",
            "--results-dir",
            dir.path().to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let t = stdout(&out);
    assert!(
        t.contains("smollm2-135m-instruct (default)")
            && t.contains("gemma-3-270m")
            && t.contains("pythia-160m"),
        "{t}"
    );
    // Regression: the sources column listed every PyPI chunk package (≈ 700 characters).
    let widest = t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest < 260, "a {widest}-character line:\n{t}");
    assert!(
        t.contains("more)"),
        "chunk packages are counted, not listed: {t}"
    );
}

/// Regression: bars draw on stderr but were switched by whether *stdout* is a terminal, so
/// `lmdensity … > out.txt` lost them and `lmdensity … 2> log` wrote them into the log. Runs
/// `fit gadre` (a spinner) under `script`, which gives it a terminal, with stdout sent to a
/// file: the spinner must reach the terminal; with `--quiet` it must not.
#[test]
fn progress_follows_stderr_and_quiet_silences_it() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux `script` not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |quiet: &str| {
        let command = format!(
            "{} fit gadre --bootstrap 300 {quiet} > out.txt",
            bin().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(dir.path())
            .env("LMDENSITY_CACHE", shared_cache())
            .output()
            .expect("script");
        assert!(out.status.success(), "{}", stderr(&out));
        let table = std::fs::read_to_string(dir.path().join("out.txt")).expect("stdout file");
        assert!(table.contains("held-out predictions"), "{table}");
        stdout(&out)
    };
    let terminal = run("");
    assert!(
        terminal.contains("fitting Gadre"),
        "no spinner on the terminal: {terminal:?}"
    );
    let quiet = run("--quiet");
    assert!(!quiet.contains("fitting Gadre"), "--quiet drew: {quiet:?}");
}

/// Regression: main.rs documented an exit code 1 ("a measurement ran but failed") that never
/// happened. What it documents now is what the binary does: 0 on success, 2 on bad input and on
/// a failed measurement.
#[test]
fn exit_codes_are_the_documented_ones() {
    let main_rs =
        std::fs::read_to_string(repo_root().join("crates/cli/src/main.rs")).expect("main.rs");
    assert!(main_rs.contains("Exit codes: 0 success; 2 bad input or a failed measurement"));
    assert!(
        !main_rs.contains(" 1 "),
        "main.rs mentions another exit code"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lmdensity(dir.path(), &["models"]);
    assert_eq!(out.status.code(), Some(0));
    let out = lmdensity(dir.path(), &["ppl", "--model-path", "missing.gguf"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A measurement that fails part-way (corrupt samples of another run kind) also exits 2.
    let (tiny, model, text) = tiny_setup();
    let args = [
        "ppl",
        "--model-path",
        model.to_str().expect("utf8"),
        "--corpus",
        text.to_str().expect("utf8"),
        "--max-length",
        "64",
        "--threads",
        "1",
        "--quiet",
    ];
    assert!(lmdensity(tiny.path(), &args).status.success());
    let run = run_dirs(&tiny.path().join("results")).remove(0);
    std::fs::write(
        run.join("samples.jsonl"),
        "{\"type\":\"task_item\",\"index\":0,\"gold\":0,\"choices\":[]}\n",
    )
    .expect("samples");
    std::fs::write(
        run.join("metrics.json"),
        std::fs::read_to_string(run.join("metrics.json"))
            .expect("metrics")
            .replace("\"complete\"", "\"partial\""),
    )
    .expect("metrics");
    let mut resume = args.to_vec();
    resume.push("--resume");
    let out = lmdensity(tiny.path(), &resume);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("samples of another kind"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn report_on_empty_store_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lmdensity(dir.path(), &["report"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("no runs"), "{}", stdout(&out));
}

/// The README's main job (`run`) on the default model, on a PTB slice instead of the whole test
/// set: both modes, one complete run each, the table printed.
#[test]
fn real_main_job_runs_both_modes_on_the_default_model() {
    let tmp = tempfile::tempdir().expect("tmp");
    let results = tmp.path().join("results");
    let full = tmp.path().join("ptb.txt");
    let out = lmdensity(
        tmp.path(),
        &[
            "--quiet",
            "corpus",
            "ptb-test",
            "--output",
            full.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&full).expect("ptb");
    let cut = text[..8_000].rfind('\n').expect("a line");
    std::fs::write(tmp.path().join("slice.txt"), &text[..=cut]).expect("write");
    let out = lmdensity(
        tmp.path(),
        &[
            "--quiet",
            "--results-dir",
            results.to_str().expect("utf-8"),
            "run",
            "--corpus",
            "slice.txt",
            "--threads",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for expected in [
        "smollm2-135m-instruct",
        "bits_per_byte",
        "llama.cpp/512",
        "complete",
    ] {
        assert!(table.contains(expected), "{expected}: {table}");
    }
    assert_eq!(run_dirs(&results).len(), 2, "one run per mode");
}
