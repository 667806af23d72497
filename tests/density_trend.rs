//! `trend` and `density` on the leaderboard protocol (issue #18): the shipped ObsScaling table
//! end to end, and a table with bad rows (no date, a bare year, a month-only date, an
//! unparsable date, a score the reference cannot reach, a missing score), each reported in
//! place and none dropped silently.

use std::fs;
use std::path::Path;

use crate::util::*;

fn shipped(name: &str) -> String {
    fs::read_to_string(repo_root().join("crates/laws/data/obsscaling").join(name)).expect("csv")
}

/// Data rows of a CSV (the header excluded; quoted fields may hold commas).
fn csv_rows(text: &str) -> usize {
    let mut rows = 0;
    let mut quoted = false;
    for line in text.lines().skip(1) {
        for c in line.chars() {
            if c == '"' {
                quoted = !quoted;
            }
        }
        if !quoted && !line.is_empty() {
            rows += 1;
        }
    }
    rows
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(&stdout(out)).expect("json")
}

#[test]
fn trend_on_the_leaderboard_table_places_or_reports_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = json_of(&lmdensity(
        dir.path(),
        &["trend", "--bootstrap", "60", "--json", "--quiet"],
    ));
    assert_eq!(json["protocol"], "leaderboard");
    let rows = json["rows"].as_array().expect("rows");
    let table_rows = csv_rows(&shipped("base_llm_benchmark_eval.csv"));
    assert_eq!(rows.len(), table_rows, "every row of the table comes out");
    let models = json["models"].as_array().expect("models").len();
    let excluded = json["excluded"].as_array().expect("excluded").len();
    assert_eq!(
        models + excluded,
        table_rows,
        "each row is a point or listed"
    );
    let fitted = json["trend"]["all_models"]["fit"]["n_points"]
        .as_u64()
        .expect("n");
    assert_eq!(fitted as usize, models);
    assert!(models >= 100, "{models} models");
    assert!(json["trend"]["robust"]["doubling_days"].is_number());
    assert!(json["trend"]["split"]["cutoff"] == "2022-11-30");
    let variants: Vec<&str> = json["sensitivity"]
        .as_array()
        .expect("sensitivity")
        .iter()
        .filter_map(|r| r["variant"]["name"].as_str())
        .collect();
    for family in ["opt", "bloom", "xglm", "cerebras-gpt"] {
        assert!(
            variants.contains(&format!("reference {family}").as_str()),
            "{variants:?}"
        );
    }
    // The two undated rows of release_dates.csv are listed as undated, with their score.
    let undated = json["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("undated"))
        })
        .count();
    let blank = shipped("release_dates.csv")
        .lines()
        .filter(|l| l.contains(",,"))
        .count();
    assert_eq!(undated, blank);
}

/// A table of the Pythia rows (the reference) plus one bad row of each kind.
fn bad_table(dir: &Path) {
    let bench = shipped("base_llm_benchmark_eval.csv");
    let mut lines = bench.lines();
    let header = lines.next().expect("header");
    let pythia: Vec<&str> = lines.filter(|l| l.contains(",Pythia,")).collect();
    let row =
        |name: &str, arc: &str| format!("{name},Other,1.0,1.0,,0.30,{arc},0.60,0.62,0.40,0.05,,");
    let mut out = vec![header.to_string()];
    out.extend(pythia.iter().map(|l| l.to_string()));
    out.push(row("x/no-date", "0.40"));
    out.push(row("x/year-only", "0.40"));
    out.push(row("x/month-only", "0.40"));
    out.push(row("x/unparsable", "0.40"));
    out.push(row("x/good", "0.45"));
    out.push(row("x/no-arc", ""));
    out.push("x/at-chance,Other,1.0,1.0,,0.25,0.20,0.25,0.50,0.40,0.0,,".into());
    fs::write(
        dir.join("base_llm_benchmark_eval.csv"),
        out.join("\n") + "\n",
    )
    .expect("write");
    let mut dates = vec!["model,release_date,source,confidence".to_string()];
    for l in &pythia {
        let name = l.split(',').next().expect("name");
        dates.push(format!("{name},2023-02-13,paper,high"));
    }
    for (name, date) in [
        ("x/no-date", ""),
        ("x/year-only", "2024"),
        ("x/month-only", "2024-11"),
        ("x/unparsable", "Nov 2024"),
        ("x/good", "2024-06-01"),
        ("x/no-arc", "2024-01-01"),
        ("x/at-chance", "2024-02-01"),
    ] {
        dates.push(format!("{name},{date},test,medium"));
    }
    fs::write(dir.join("release_dates.csv"), dates.join("\n") + "\n").expect("write");
}

#[test]
fn bad_rows_are_reported_in_place_and_none_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("table");
    fs::create_dir_all(&table).expect("mkdir");
    bad_table(&table);
    let table_arg = table.to_str().expect("utf8");
    let args = [
        "trend",
        "--table",
        table_arg,
        "--bootstrap",
        "40",
        "--quiet",
    ];
    let out = lmdensity(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "x/no-date: undated: no release date; placed (score",
        "x/year-only: undated: release date \"2024\" gives only the year",
        "x/unparsable: undated: release date \"Nov 2024\" is not YYYY-MM-DD or YYYY-MM",
        "x/no-arc: no ARC-C score",
        "x/at-chance: reference cannot reach it: score 0.3167",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json = json_of(&lmdensity(dir.path(), &json_args));
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(
        rows.len(),
        csv_rows(&fs::read_to_string(table.join("base_llm_benchmark_eval.csv")).expect("csv"))
    );
    let month = rows
        .iter()
        .find(|r| r["model"] == "x/month-only")
        .expect("month row");
    assert_eq!(month["date_precision"], "month");
    assert_eq!(month["released"], "2024-11-15");
    assert_eq!(month["placement"]["status"], "placed");

    // A missing release-date table is an error naming the file, not an empty trend.
    fs::remove_file(table.join("release_dates.csv")).expect("rm");
    let out = lmdensity(dir.path(), &args);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("release_dates.csv"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn density_on_the_leaderboard_protocol_names_what_it_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        "density",
        "--protocol",
        "leaderboard",
        "--bootstrap",
        "40",
        "--quiet",
    ];
    let mut args = base.to_vec();
    args.extend(["pythia-1b-deduped", "--json"]);
    let json = json_of(&lmdensity(dir.path(), &args));
    let rho = json["estimates"][0]["estimate"]["density"]
        .as_f64()
        .expect("ρ");
    // Pythia-1B on its own family's fit: within a factor of two of ρ = 1.
    assert!((0.5..2.0).contains(&rho), "{rho}");
    let mut args = base.to_vec();
    args.extend(["--score", "arc_challenge=0.4", "--params", "1e9"]);
    let out = lmdensity(dir.path(), &args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("lacks hellaswag"), "{}", stderr(&out));
    let mut args = base.to_vec();
    args.push("gemma-3-270m");
    let out = lmdensity(dir.path(), &args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("gemma-3-270m: the leaderboard score"), "{err}");
    assert!(err.contains("hellaswag: no run in"), "{err}");
}

/// A task run written by hand: the curated SmolLM2 arc_challenge manifest with `model`, `task`,
/// `shots` and `items` put in, and metrics `<task>/acc`, `<task>/acc_norm` (= `value`, with
/// `stderr`) and `<task>/items`; `complete` false writes a partial run.
fn task_run(store: &Path, model: &str, task: &str, shots: u64, value: f64, complete: bool) {
    let template = repo_root().join(
        "results/curated/tasks-core/20261122T190101-smollm2-135m-instruct-task-arc_challenge-eb7f7c44",
    );
    let mut manifest: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(template.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let id = format!("20260101T0000{shots:02}-{model}-task-{task}");
    manifest["run_id"] = id.clone().into();
    manifest["model"]["id"] = model.into();
    manifest["settings"]["task"] = task.into();
    manifest["settings"]["corpus"] = task.into();
    manifest["settings"]["num_fewshot"] = shots.into();
    manifest["settings"]["items"] = 100.into();
    let dir = store.join(&id);
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write");
    let stderr = (value * (1.0 - value) / 99.0).sqrt();
    let metric = |name: &str, v: f64, se: Option<f64>| {
        serde_json::json!({"name": format!("{task}/{name}"), "value": v, "stderr": se,
                           "unit": "fraction", "how": "test"})
    };
    let metrics = serde_json::json!({
        "schema_version": 1, "status": if complete { "complete" } else { "partial" },
        "elapsed_s": 1.0,
        "metrics": [metric("items", 100.0, None), metric("acc", value - 0.05, Some(stderr)),
                    metric("acc_norm", value, Some(stderr))],
    });
    fs::write(dir.join("metrics.json"), metrics.to_string()).expect("write");
}

/// The leaderboard score of a registry model from hand-written runs: the mean of the right
/// metrics, its stderr √(Σ seᵢ²)/3, an interval wider than the same score without stderr, and
/// the trend showing it as measured without refitting on it.
#[test]
fn a_registry_model_is_placed_from_its_leaderboard_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let values = [
        ("arc_challenge", 25, 0.31),
        ("hellaswag", 10, 0.42),
        ("winogrande", 5, 0.55),
    ];
    for (task, shots, value) in values {
        task_run(
            &store,
            "qwen2.5-coder-0.5b-instruct",
            task,
            shots,
            value,
            true,
        );
        // A 0-shot run of the same task does not enter the leaderboard score.
        task_run(&store, "qwen2.5-coder-0.5b-instruct", task, 0, 0.9, true);
    }
    let store_arg = store.to_str().expect("utf8");
    let common = ["--quiet", "--results-dir", store_arg];
    let density = |extra: &[&str]| {
        let mut args = common.to_vec();
        args.extend([
            "density",
            "--protocol",
            "leaderboard",
            "--bootstrap",
            "200",
            "--json",
        ]);
        args.extend(extra);
        json_of(&lmdensity(dir.path(), &args))
    };
    let json = density(&["qwen2.5-coder-0.5b-instruct"]);
    let est = &json["estimates"][0]["estimate"];
    // acc_norm for ARC and HellaSwag, acc (value − 0.05) for WinoGrande.
    let expected = (0.31 + 0.42 + 0.50) / 3.0;
    let score = est["score"].as_f64().expect("score");
    assert!((score - expected).abs() < 1e-12, "{score} vs {expected}");
    let se2: f64 = values.iter().map(|(_, _, v)| v * (1.0 - v) / 99.0).sum();
    let se = est["score_stderr"].as_f64().expect("stderr");
    assert!((se - se2.sqrt() / 3.0).abs() < 1e-12, "{se}");
    assert!(est["label"]
        .as_str()
        .expect("label")
        .contains("measured here"));
    let tasks = json["measured"][0]["tasks"].as_array().expect("tasks");
    assert!(tasks.iter().all(|t| t["items"] == 100), "{tasks:?}");
    assert_eq!(json["estimates"][0]["released"], "2024-11-15");
    // The same score without a stderr (given by --score): a narrower interval.
    let given = density(&[
        "--score",
        &format!("arc_challenge={}", 0.31),
        "--score",
        "hellaswag=0.42",
        "--score",
        "winogrande=0.50",
        "--params",
        &est["params"].to_string(),
    ]);
    let width = |e: &serde_json::Value| {
        let ci = &e["density_ci"];
        ci[1].as_f64().expect("hi") / ci[0].as_f64().expect("lo")
    };
    let plain = &given["estimates"][0]["estimate"];
    assert!(
        (plain["density"].as_f64().expect("ρ") - est["density"].as_f64().expect("ρ")).abs() < 1e-9
    );
    assert!(
        width(est) > width(plain),
        "{} vs {}",
        width(est),
        width(plain)
    );

    // The trend: the model is listed as measured, and the published rows' fit is unchanged.
    let trend = |store: &str| {
        let args = [
            "--quiet",
            "--results-dir",
            store,
            "trend",
            "--bootstrap",
            "30",
            "--json",
        ];
        json_of(&lmdensity(dir.path(), &args))
    };
    let with = trend(store_arg);
    let empty = dir.path().join("empty");
    let without = trend(empty.to_str().expect("utf8"));
    assert_eq!(with["measured"].as_array().expect("measured").len(), 1);
    assert_eq!(with["trend"]["all_models"], without["trend"]["all_models"]);
    let n = without["trend"]["all_models"]["fit"]["n_points"]
        .as_u64()
        .expect("n");
    assert_eq!(with["with_measured"]["models"].as_u64(), Some(n + 1));
}

/// A missing task, a run on other shots and an incomplete run are each named.
#[test]
fn leaderboard_runs_that_do_not_make_the_score_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    task_run(
        &store,
        "smollm2-135m-instruct",
        "arc_challenge",
        0,
        0.3,
        true,
    );
    task_run(&store, "smollm2-135m-instruct", "hellaswag", 10, 0.3, false);
    let args = [
        "--quiet",
        "--results-dir",
        store.to_str().expect("utf8"),
        "density",
        "--protocol",
        "leaderboard",
        "--bootstrap",
        "20",
        "smollm2-135m-instruct",
    ];
    let out = lmdensity(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "smollm2-135m-instruct: the leaderboard score is the mean of arc_challenge 25-shot acc_norm",
        "arc_challenge: measured with 0 shots only, the protocol needs 25",
        "hellaswag: 10-shot run 20260101T000010-smollm2-135m-instruct-task-hellaswag is not complete (status partial)",
        "winogrande: no run in",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
}

/// `density --sweep`: every variant of a curated sweep placed on the arc_easy reference, N̂ per
/// GB and × tg128 from the sweep's own sizes and speeds, a higher score never a lower N̂, and a
/// sweep without tasks refused naming the file.
#[test]
fn a_quantization_sweep_gets_an_effective_size_per_variant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = repo_root().join("results/curated/sweep-quant/gemma-3-270m/sweep.json");
    let table: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&sweep).expect("sweep")).expect("json");
    let store = dir.path().join("store");
    let registry = repo_root().join("models.toml");
    let registry = registry.to_str().expect("utf8");
    let run = |file: &Path| {
        let args = [
            "--quiet",
            "--results-dir",
            store.to_str().expect("utf8"),
            "--registry",
            registry,
            "density",
            "--sweep",
            file.to_str().expect("utf8"),
            "--bootstrap",
            "100",
            "--json",
        ];
        lmdensity(dir.path(), &args)
    };
    let json = json_of(&run(&sweep));
    let variants = json["sweep"]["variants"].as_array().expect("variants");
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(variants.len(), rows.len());
    assert_eq!(json["sweep"]["tasks"], serde_json::json!(["arc_easy"]));
    for (v, row) in variants.iter().zip(rows) {
        let n_hat = v["estimate"]["effective_params"].as_f64().expect("N̂");
        let bytes = row["file_bytes"].as_f64().expect("bytes");
        let per_gb = v["effective_per_gb"].as_f64().expect("per GB");
        assert!((per_gb - n_hat / (bytes / 1e9)).abs() < 1e-6 * per_gb);
        let tg = row["tg128"]["mean_ts"].as_f64().expect("tg");
        assert!((v["effective_times_ts"].as_f64().expect("×ts") - n_hat * tg).abs() < 1e-3);
        assert_eq!(v["estimate"]["score"], row["tasks"]["arc_easy"]["value"]);
        let (lo, hi) = (
            v["estimate"]["effective_params_ci"][0]
                .as_f64()
                .expect("lo"),
            v["estimate"]["effective_params_ci"][1]
                .as_f64()
                .expect("hi"),
        );
        assert!(lo < n_hat && n_hat < hi, "{lo} {n_hat} {hi}");
    }
    for a in variants {
        for b in variants {
            let (sa, sb) = (
                a["estimate"]["score"].as_f64(),
                b["estimate"]["score"].as_f64(),
            );
            let (na, nb) = (
                a["estimate"]["effective_params"].as_f64(),
                b["estimate"]["effective_params"].as_f64(),
            );
            if sa > sb {
                assert!(na > nb, "{} vs {}", a["variant"], b["variant"]);
            }
        }
    }
    let mut no_tasks = table.clone();
    for row in no_tasks["rows"].as_array_mut().expect("rows") {
        row["tasks"] = serde_json::json!({});
    }
    let bad = dir.path().join("sweep.json");
    fs::write(&bad, no_tasks.to_string()).expect("write");
    let out = run(&bad);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no task was scored on every variant"), "{err}");
    assert!(err.contains(bad.to_str().expect("utf8")), "{err}");
}
