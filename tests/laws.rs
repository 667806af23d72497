//! `fit`, `density` and `trend` end to end on the shipped reference data.

use crate::util::*;

#[test]
fn fit_gadre_reproduces_the_papers_predictions_and_saves_the_analysis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lmdensity(
        dir.path(),
        &["fit", "gadre", "--bootstrap", "100", "--quiet"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Held-out 1.4B model at M = 640: loss within 1% (paper's code: 0.71%), error within 4%.
    assert!(text.contains("rpj-open_lm_1b-32.0"), "{text}");
    assert!(text.contains("│ 2.5198    │ 2.5021   │ 0.71%"), "{text}");
    assert!(text.contains("│ 0.4925    │ 0.4752   │ 3.64%"), "{text}");
    // Regression: the data was found through the source tree's path at run time; it is now
    // built into the binary, and the output says so.
    assert!(
        text.contains("gadre-scaling/exp_data (shipped with lmdensity)"),
        "{text}"
    );
    let analyses: Vec<_> = std::fs::read_dir(dir.path().join("results/analyses"))
        .expect("analyses dir")
        .collect();
    assert_eq!(analyses.len(), 1);
}

#[test]
fn density_of_given_scores_has_an_interval_and_registry_models_need_task_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lmdensity(
        dir.path(),
        &[
            "density",
            "--score",
            "arc_easy=0.6",
            "--score",
            "arc_challenge=0.3",
            "--score",
            "piqa=0.7",
            "--score",
            "winogrande=0.6",
            "--params",
            "1e9",
            "--name",
            "mine",
            "--bootstrap",
            "100",
            "--json",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let estimate = &json["estimates"][0]["estimate"];
    let n_hat = estimate["effective_params"].as_f64().expect("N̂");
    let (lo, hi) = (
        estimate["effective_params_ci"][0].as_f64().expect("ci"),
        estimate["effective_params_ci"][1].as_f64().expect("ci"),
    );
    // Mean accuracy 0.55 sits between Pythia-1.4B (0.537) and Pythia-2.8B (0.568).
    assert!(1.4e9 < n_hat && n_hat < 2.8e9, "{n_hat:e}");
    assert!(lo < n_hat && n_hat < hi, "{lo:e} {n_hat:e} {hi:e}");

    let out = lmdensity(
        dir.path(),
        &["density", "gemma-3-270m", "--bootstrap", "10"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no downstream-task results"),
        "{}",
        stderr(&out)
    );

    let out = lmdensity(
        dir.path(),
        &["density", "--score", "arc_easy=0.6", "--params", "1e9"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("lacks arc_challenge"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn trend_reports_a_doubling_time_and_lists_what_it_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "trend",
        "--protocol",
        "zero-shot",
        "--bootstrap",
        "100",
        "--quiet",
    ];
    let out = lmdensity(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("all models (OLS)"), "{text}");
    assert!(text.contains("doubling time (days)"), "{text}");
    assert!(
        text.contains("Gemma-3-1B-PT: protocol is not 0-shot"),
        "{text}"
    );
    assert!(text.contains("OPT-1.3B: no release date"), "{text}");
}

#[test]
fn fit_csv_refuses_degenerate_data_naming_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("runs.csv");
    std::fs::write(&csv, "name,N,D,loss\na,1e8,2e9,3.1\nb,1e8,4e9,3.0\nc,1e8,8e9,2.95\nd,1e8,1.6e10,2.9\ne,1e8,3.2e10,2.88\nf,1e8,6.4e10,2.87\n").expect("csv");
    let args = [
        "fit",
        "csv",
        csv.to_str().expect("utf8"),
        "--law",
        "chinchilla",
        "--x",
        "N",
        "--x",
        "D",
        "--y",
        "loss",
        "--label",
        "name",
    ];
    let out = lmdensity(dir.path(), &args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("every point has the same N"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&csv, "name,N,D,loss\na,1e8,2e9,3.1\nb,oops,4e9,3.0\n").expect("csv");
    let out = lmdensity(dir.path(), &args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("runs.csv") && err.contains("row 3") && err.contains("\"oops\""),
        "{err}"
    );
}

#[test]
fn fit_runs_joins_the_stores_runs_per_model_and_refuses_too_few() {
    // The curated PTB runs: one point per registry model (params, tokens from the registry,
    // bits per byte) — fewer models than Chinchilla's five parameters.
    let store = repo_root().join("results/curated/ptb-test-harness");
    let out = lmdensity(
        &repo_root(),
        &[
            "--results-dir",
            store.to_str().expect("utf8"),
            "fit",
            "runs",
            "--law",
            "chinchilla",
            "--x",
            "params",
            "--x",
            "tokens",
            "--y",
            "bits_per_byte",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot determine 5 parameters"), "{err}");
    assert!(
        !store.join("analyses").exists(),
        "a refused fit writes nothing"
    );
}

/// Regression: `&date[..10]` panicked on a registry release date of "2024", and `--x N,D`
/// was refused ("takes 2 input(s) … got 1"). A bare year is now reported in place and the
/// model gets no `release_days`; a comma list is two fields.
#[test]
fn fit_runs_takes_comma_lists_and_reports_a_bare_year_date() {
    let store = tempfile::tempdir().expect("tempdir");
    let curated = repo_root().join("results/curated/ptb-test-harness");
    for entry in std::fs::read_dir(&curated).expect("curated store") {
        let run = entry.expect("entry").path();
        if !run.join("manifest.json").is_file() {
            continue;
        }
        let dest = store.path().join(run.file_name().expect("name"));
        std::fs::create_dir_all(&dest).expect("mkdir");
        for file in ["manifest.json", "metrics.json"] {
            std::fs::copy(run.join(file), dest.join(file)).expect("copy");
        }
    }
    let registry = std::fs::read_to_string(repo_root().join("models.toml"))
        .expect("models.toml")
        .replacen("release_date = \"2024-11\"", "release_date = \"2024\"", 1);
    let registry_path = store.path().join("models.toml");
    std::fs::write(&registry_path, registry).expect("registry");
    let out = lmdensity(
        store.path(),
        &[
            "--results-dir",
            store.path().to_str().expect("utf8"),
            "--registry",
            registry_path.to_str().expect("utf8"),
            "fit",
            "runs",
            "--law",
            "chinchilla",
            "--x",
            "params,tokens",
            "--y",
            "bits_per_byte",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "not a panic: {err}");
    assert!(err.contains("gives only the year"), "{err}");
    assert!(err.contains("cannot determine 5 parameters"), "{err}");
    assert!(!err.contains("takes 2 input"), "{err}");
}
