//! `lmdensity compare RUN_A RUN_B`: two stored runs side by side.

use std::path::Path;

use anyhow::{bail, Result};
use lmdensity_core::{ResultsStore, StoredRun};
use lmdensity_report::{compare, Verdict};
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::cli::Cli;

/// A run directory, or a run id / unique prefix of one in the results store.
fn find_run(cli: &Cli, arg: &str) -> Result<StoredRun> {
    let path = Path::new(arg);
    if path.is_dir() {
        return Ok(StoredRun::read(path)?);
    }
    let runs = ResultsStore::new(&cli.results_dir).runs()?;
    let matches: Vec<StoredRun> = runs
        .into_iter()
        .filter(|r| r.manifest.run_id.starts_with(arg))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one match")),
        0 => bail!(
            "{arg}: neither a run directory nor a run id in {}",
            cli.results_dir.display()
        ),
        n => bail!(
            "{arg}: {n} runs in {} start with this; give more of the id",
            cli.results_dir.display()
        ),
    }
}

/// Four decimals for small values, whole numbers for large ones (bytes, milliseconds).
fn value(v: f64, se: Option<f64>) -> String {
    let digits = if v.abs() >= 1e4 { 0 } else { 4 };
    match se {
        Some(se) => format!("{v:.digits$} ± {se:.digits$}"),
        None => format!("{v:.digits$}"),
    }
}

#[derive(Tabled)]
struct Row {
    metric: String,
    #[tabled(rename = "A")]
    a: String,
    #[tabled(rename = "B")]
    b: String,
    #[tabled(rename = "B/A")]
    ratio: String,
    #[tabled(rename = "Δ/σ")]
    z: String,
    verdict: String,
}

#[derive(Tabled)]
struct SettingRow {
    setting: String,
    #[tabled(rename = "A")]
    a: String,
    #[tabled(rename = "B")]
    b: String,
}

/// Prints the comparison of two runs.
pub fn compare_command(cli: &Cli, run_a: &str, run_b: &str, json: bool) -> Result<()> {
    let (a, b) = (find_run(cli, run_a)?, find_run(cli, run_b)?);
    let c = compare(&a, &b);
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    for (label, run) in [("A", &a), ("B", &b)] {
        println!(
            "{label}: {} ({}, {} {}, {} {} threads)",
            run.dir.display(),
            run.manifest.kind,
            run.manifest.model.id,
            run.manifest.model.quantization,
            run.manifest.backend.name,
            run.manifest.backend.threads
        );
    }
    println!();
    if c.metrics.is_empty() {
        println!("no metric is in both runs");
    } else {
        let rows = c.metrics.iter().map(|m| Row {
            metric: m.name.clone(),
            a: value(m.a.0, m.a.1),
            b: value(m.b.0, m.b.1),
            ratio: format!("{:.3}", m.ratio),
            z: m.z.map_or("—".into(), |z| format!("{z:+.1}")),
            verdict: match m.verdict {
                Verdict::WithinNoise => "within noise".into(),
                Verdict::Differs => "differs".into(),
                Verdict::NoStderr => "no stderr".into(),
            },
        });
        println!("{}", Table::new(rows).with(Style::markdown()));
    }
    if !c.settings.is_empty() {
        println!("\nwhat differs between the runs:\n");
        let rows = c.settings.iter().map(|s| SettingRow {
            setting: s.key.clone(),
            a: s.a.clone(),
            b: s.b.clone(),
        });
        println!("{}", Table::new(rows).with(Style::markdown()));
    }
    for (label, names) in [("A", &c.only_in_a), ("B", &c.only_in_b)] {
        if !names.is_empty() {
            println!("\nonly in {label}: {}", names.join(", "));
        }
    }
    for note in &c.notes {
        println!("\nnote: {note}");
    }
    println!(
        "\nverdict: |B − A| within 2 combined standard errors = within noise (≈95%, normal errors)"
    );
    Ok(())
}
