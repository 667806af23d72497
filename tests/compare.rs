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
