//! `lmdensity bench`: llama-bench's records and statistics, the results store, memory figures,
//! and refusals of bad plans. Timings themselves are never asserted.

use std::path::Path;

use crate::util::*;

fn bench_json(cwd: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--quiet", "bench", "-o", "json"];
    all.extend_from_slice(args);
    let out = lmdensity(cwd, &all);
    assert!(out.status.success(), "bench failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("a JSON array of records")
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[test]
fn bench_records_carry_llama_bench_fields_and_land_in_the_store() {
    let (dir, model, _) = tiny_setup();
    let model = model.to_str().expect("utf8");
    let records = bench_json(
        dir.path(),
        &[
            "--model-path",
            model,
            "-p",
            "16,32",
            "-n",
            "4",
            "--pg",
            "8,2",
            "-d",
            "0,8",
            "-r",
            "3",
            "-t",
            "1",
            "--no-roofline",
        ],
    );
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["test"].as_str().expect("test"))
        .collect();
    assert_eq!(
        names,
        [
            "pp16",
            "pp32",
            "tg4",
            "pp8+tg2",
            "pp16 @ d8",
            "pp32 @ d8",
            "tg4 @ d8",
            "pp8+tg2 @ d8"
        ]
    );
    for r in &records {
        for field in [
            "model_size",
            "model_n_params",
            "n_batch",
            "n_ubatch",
            "n_threads",
            "avg_ns",
        ] {
            assert!(r[field].as_u64().is_some(), "{field} in {r}");
        }
        let ts: Vec<f64> = r["samples_ts"]
            .as_array()
            .expect("samples_ts")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        let ns: Vec<f64> = r["samples_ns"]
            .as_array()
            .expect("samples_ns")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        assert_eq!((ts.len(), ns.len()), (3, 3));
        // tokens/s of each repetition = timed tokens / its time; avg and sd as llama-bench.
        let tokens = r["n_prompt"].as_f64().expect("n") + r["n_gen"].as_f64().expect("n");
        for (t, n) in ts.iter().zip(&ns) {
            assert!((t - 1e9 * tokens / n).abs() <= 1e-6 * t, "{t} vs {n}");
        }
        let (mean, sd) = mean_sd(&ts);
        assert!((r["avg_ts"].as_f64().expect("avg") - mean).abs() <= 1e-9 * mean);
        assert!((r["stddev_ts"].as_f64().expect("sd") - sd).abs() <= 1e-6 * mean.max(1.0));
        assert!(r["min_ts"].as_f64() <= r["max_ts"].as_f64());
        assert_eq!(r["ttft_ms"].is_null(), r["n_prompt"] == 0);
        assert!(r["peak_rss_bytes"].as_u64().expect("rss") > 0);
        assert!(r["decode_efficiency"].is_null(), "--no-roofline");
    }
    // The KV cache grows with the context the test filled: depth + prompt + generated.
    let kv = |name: &str| {
        records.iter().find(|r| r["test"] == name).expect("test")["kv_bytes"]
            .as_u64()
            .expect("kv")
    };
    assert!(
        kv("pp16") < kv("pp32") && kv("pp16") < kv("pp16 @ d8"),
        "{records:?}"
    );

    // One run in the store: every repetition as a sample, the records, metrics per test.
    let runs = run_dirs(&dir.path().join("results"));
    assert_eq!(runs.len(), 1);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["kind"], "bench");
    let samples = std::fs::read_to_string(runs[0].join("samples.jsonl")).expect("samples");
    assert_eq!(samples.lines().count(), 8 * 3);
    assert!(samples
        .lines()
        .all(|l| l.contains("\"type\":\"bench_repetition\"")));
    let stored: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(runs[0].join("records.json")).expect("records"))
            .expect("json");
    assert_eq!(stored.len(), 8);
    let metrics = metrics_of(&runs[0]);
    assert!(
        (metric(&metrics, "tg4/avg_ts") - records[2]["avg_ts"].as_f64().expect("avg")).abs() < 1e-9
    );
}

#[test]
fn bench_formats_print_llama_bench_layouts() {
    let (dir, model, _) = tiny_setup();
    let model = model.to_str().expect("utf8");
    let run = |format: &str| {
        let out = lmdensity(
            dir.path(),
            &[
                "--quiet",
                "bench",
                "--model-path",
                model,
                "-p",
                "8",
                "-n",
                "2",
                "-r",
                "2",
                "-t",
                "1",
                "--no-roofline",
                "-o",
                format,
            ],
        );
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        stdout(&out)
    };
    let csv = run("csv");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    assert_eq!(&header[..3], ["build_commit", "build_number", "cpu_info"]);
    assert!(header.contains(&"avg_ts") && header.contains(&"stddev_ts"));
    assert_eq!(csv.lines().count(), 3);
    assert_eq!(run("jsonl").lines().count(), 2);
    let md = run("md");
    assert!(md.contains("| model") && md.contains("| t/s") && md.contains("| pp8"));
    let table = run("table");
    assert!(table.contains("min … max") && table.contains("tg2"));
}

#[test]
fn bench_refuses_bad_plans_before_loading() {
    let (dir, model, _) = tiny_setup();
    let model = model.to_str().expect("utf8");
    let fails = |args: &[&str], needles: &[&str]| {
        let mut all = vec!["bench", "--model-path", model, "--no-roofline"];
        all.extend_from_slice(args);
        let out = lmdensity(dir.path(), &all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?} should fail: {err}");
        for n in needles {
            assert!(
                err.contains(n),
                "{args:?}: stderr should mention `{n}`: {err}"
            );
        }
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(&["-p", "0"], &["--n-prompt", "0"]);
    fails(&["-n", "-5"], &["--n-gen", "-5"]);
    fails(&["--pg", "512"], &["--pg", "PROMPT,GEN"]);
    fails(&["-b", "0"], &["--batch-size"]);
    fails(&["-t", "4096"], &["--threads 4096", "logical CPUs"]);
    fails(&["-r", "0"], &["--repetitions"]);
    fails(&["-p", "none", "-n", "none"], &["nothing to measure"]);
    // The tiny model's context is 256 tokens.
    fails(
        &["-d", "1000"],
        &["tiny.gguf", "pp512 @ d1000", "needs a context of 1512"],
    );
    fails(
        &["--memory-budget", "1K"],
        &["tiny.gguf", "only 1.0 KiB is available"],
    );
    assert!(
        run_dirs(&dir.path().join("results")).is_empty(),
        "no run for refused plans"
    );
}

/// A tg128 run on the real SmolLM2-135M: the KV cache holds 128 tokens of 30 layers × 3 KV
/// heads × 64 × (K + V) × 2 bytes, and the process's peak RSS stays within
/// 1.15 × (weights + KV) + 150 MB.
#[test]
fn real_bench_memory_accounting_on_smollm2() {
    let weights = crate::real_models::weights("smollm2-135m-instruct");
    let dir = tempfile::tempdir().expect("tempdir");
    let records = bench_json(
        dir.path(),
        &[
            "--model-path",
            weights.to_str().expect("utf8"),
            "-p",
            "none",
            "-n",
            "128",
            "-r",
            "1",
            "-t",
            "2",
        ],
    );
    let r = &records[0];
    let kv = r["kv_bytes"].as_u64().expect("kv");
    let formula = 128 * 30 * 3 * 128 * 2;
    assert!(
        kv >= formula && kv < formula + (64 << 10),
        "kv {kv} vs {formula}"
    );
    let weights_bytes = r["model_size"].as_u64().expect("size");
    let rss = r["peak_rss_bytes"].as_u64().expect("rss") as f64;
    let bound = 1.15 * (weights_bytes + kv) as f64 + 150e6;
    assert!(rss <= bound, "peak RSS {rss} exceeds {bound}");
    assert!(
        rss >= 0.5 * weights_bytes as f64,
        "the weights are resident: {rss}"
    );
    // The roofline ran: bandwidth and an efficiency strictly between 0 and 1.
    let eff = r["decode_efficiency"].as_f64().expect("efficiency");
    assert!(eff > 0.0 && eff < 1.0, "{eff}");
    assert!(r["bandwidth_gbs"].as_f64().expect("bw") > 0.1);
}
