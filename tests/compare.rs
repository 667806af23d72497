//! `lmdensity compare`: two stored runs side by side, by directory or run id.

use crate::util::*;

#[test]
fn compare_two_bench_runs_by_dir_and_by_id_and_name_bad_arguments() {
    let (dir, model, _) = tiny_setup();
    let model = model.to_str().expect("utf8");
    for threads in ["1", "2"] {
        let out = lmdensity(
            dir.path(),
            &[
                "--quiet",
                "bench",
                "--model-path",
                model,
                "-p",
                "16",
                "-n",
                "4",
                "-r",
                "3",
                "-t",
                threads,
                "--no-roofline",
            ],
        );
        if !out.status.success() && stderr(&out).contains("logical CPUs") {
            return; // a 1-CPU machine cannot run the 2-thread side
        }
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let runs = run_dirs(&dir.path().join("results"));
    assert_eq!(runs.len(), 2);
    let (a, b) = (
        runs[0].to_str().expect("utf8"),
        runs[1].to_str().expect("utf8"),
    );
    let out = lmdensity(dir.path(), &["compare", a, b]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "pp16/avg_ts",
        "tg4/avg_ts",
        "B/A",
        "Δ/σ",
        "backend.threads",
        "| 1 ",
        "| 2 ",
    ] {
        assert!(text.contains(needle), "`{needle}` in:\n{text}");
    }
    // JSON: ratio = B/A of the stored values; verdict from the standard errors.
    let out = lmdensity(dir.path(), &["compare", a, b, "--json"]);
    let c: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let pp = c["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["name"] == "pp16/avg_ts")
        .expect("pp16");
    let ratio = pp["b"][0].as_f64().expect("b") / pp["a"][0].as_f64().expect("a");
    assert!((pp["ratio"].as_f64().expect("ratio") - ratio).abs() < 1e-12);
    assert!(["within_noise", "differs"].contains(&pp["verdict"].as_str().expect("verdict")));

    // By run id (unique prefix) from the results store; an ambiguous or unknown one is named.
    let id_a = runs[0].file_name().expect("name").to_str().expect("utf8");
    let out = lmdensity(dir.path(), &["compare", id_a, b]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lmdensity(dir.path(), &["compare", "2", b]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("2: 2 runs"), "{}", stderr(&out));
    let out = lmdensity(dir.path(), &["compare", "nope", b]);
    assert!(
        stderr(&out).contains("nope: neither a run directory"),
        "{}",
        stderr(&out)
    );

    // A run whose metrics are missing is reported in place, not an error.
    std::fs::remove_file(runs[1].join("metrics.json")).expect("rm");
    let out = lmdensity(dir.path(), &["compare", a, b]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no metrics yet"), "{}", stdout(&out));
}

/// The curated Gemma-3-270M arc_easy runs (first 400 items) of the sweep's Q4_K_M and Q2_K
/// variants, compared item by item: McNemar's exact test on the discordant items and the
/// paired-bootstrap interval of the accuracy difference, consistent with the runs' own
/// accuracies; then the same runs with no items in common, and runs of different tasks.
#[test]
fn curated_quantized_variants_are_compared_item_by_item() {
    let store = repo_root().join("results/curated/paired-gemma-arc-easy");
    let mut runs = run_dirs(&store);
    runs.sort();
    assert_eq!(runs.len(), 2, "Q4_K_M and Q2_K");
    let (a, b) = (
        runs[0].to_str().expect("utf8"),
        runs[1].to_str().expect("utf8"),
    );
    let out = lmdensity(&repo_root(), &["compare", a, b, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let paired = &c["paired"]["paired"];
    assert_eq!(paired["paired"], 400);
    let acc = paired["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["metric"] == "acc")
        .expect("acc test");
    let (a_only, b_only) = (
        acc["discordant"][0].as_u64().expect("a only"),
        acc["discordant"][1].as_u64().expect("b only"),
    );
    // The discordant counts are the accuracy difference: (b_only − a_only)/n = B − A.
    let (acc_a, acc_b) = (
        metric(&metrics_of(&runs[0]), "arc_easy/acc"),
        metric(&metrics_of(&runs[1]), "arc_easy/acc"),
    );
    assert!(((b_only as f64 - a_only as f64) / 400.0 - (acc_b - acc_a)).abs() < 1e-12);
    let p = acc["p_value"].as_f64().expect("p");
    assert!(p > 0.0 && p <= 1.0);
    let (lo, hi) = (
        acc["ci"][0].as_f64().expect("lo"),
        acc["ci"][1].as_f64().expect("hi"),
    );
    let d = acc["difference"].as_f64().expect("d");
    assert!(lo <= d && d <= hi, "{lo} {d} {hi}");
    let text = stdout(&lmdensity(&repo_root(), &["compare", a, b]));
    assert!(
        text.contains("McNemar exact") && text.contains("paired on 400 items"),
        "{text}"
    );

    // No items in common: every index of B shifted past A's.
    let tmp = tempfile::tempdir().expect("tempdir");
    let shifted = tmp.path().join("shifted");
    std::fs::create_dir_all(&shifted).expect("mkdir");
    for file in ["manifest.json", "metrics.json"] {
        std::fs::copy(runs[1].join(file), shifted.join(file)).expect("copy");
    }
    let samples = std::fs::read_to_string(runs[1].join("samples.jsonl")).expect("samples");
    let moved: String = samples
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("line");
            v["index"] = serde_json::json!(v["index"].as_u64().expect("index") + 1000);
            format!("{v}\n")
        })
        .collect();
    std::fs::write(shifted.join("samples.jsonl"), moved).expect("write");
    let out = lmdensity(
        &repo_root(),
        &["compare", a, shifted.to_str().expect("utf8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("unpaired: the runs have no items in common"),
        "{}",
        stdout(&out)
    );
    // Different tasks.
    let other = repo_root().join("results/curated/tasks-gemma-core");
    let copa = run_dirs(&other)
        .into_iter()
        .find(|r| r.to_string_lossy().contains("task-copa"))
        .expect("copa run");
    let out = lmdensity(&repo_root(), &["compare", a, copa.to_str().expect("utf8")]);
    assert!(
        stdout(&out).contains("unpaired: the runs scored different tasks"),
        "{}",
        stdout(&out)
    );
}
