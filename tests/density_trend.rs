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
    assert!(
        stderr(&out).contains("--protocol zero-shot"),
        "{}",
        stderr(&out)
    );
}
