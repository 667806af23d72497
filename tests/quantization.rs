//! Quantization and KL divergence: `convert --format gguf-f32`, `quantize`, `ppl
//! --save-kld-base/--kld-base` and `sweep-quant`, on a real model (SmolLM2-135M, a PTB slice)
//! and, for the error paths, on a tiny generated GGUF.

use std::path::Path;

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The command failed, and its message holds every needle.
fn refused(out: &std::process::Output, needles: &[&str]) {
    let message = stderr(out);
    assert!(
        !out.status.success() && needles.iter().all(|n| message.contains(n)),
        "expected a refusal naming {needles:?}: {message}"
    );
}

fn ppl_metrics(cwd: &Path, results: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "--quiet",
        "--results-dir",
        s(results),
        "ppl",
        "--threads",
        "2",
    ];
    all.extend_from_slice(args);
    let out = lmdensity(cwd, &all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let newest = run_dirs(results)
        .into_iter()
        .max_by_key(|d| {
            std::fs::metadata(d.join("metrics.json"))
                .and_then(|m| m.modified())
                .ok()
        })
        .expect("a run");
    metrics_of(&newest)
}

#[test]
fn real_sweep_of_smollm2_measures_requantized_variants_against_the_f32_base() {
    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path().join("work");
    let out_dir = tmp.path().join("sweep");
    let results = tmp.path().join("results");
    let sweep = |types: &str| {
        let args = vec![
            "--quiet",
            "--results-dir",
            s(&results),
            "sweep-quant",
            "smollm2-135m-instruct",
            "--types",
            types,
            "--corpus-bytes",
            "6000",
            "--tasks",
            "none",
            "--bench-repetitions",
            "1",
            "--work-dir",
            s(&work),
            "--out",
            s(&out_dir),
        ];
        lmdensity(tmp.path(), &args)
    };
    let out = sweep("Q8_0,Q4_0");
    assert!(out.status.success(), "{}", stderr(&out));
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("sweep.json")).expect("sweep.json"))
            .expect("json");
    let rows = table["rows"].as_array().expect("rows");
    let variants: Vec<&str> = rows
        .iter()
        .map(|r| r["variant"].as_str().expect("name"))
        .collect();
    assert_eq!(variants, ["F32", "Q4_1 (source)", "Q8_0", "Q4_0"]);
    let row = |i: usize| &rows[i];
    let bpb = |i: usize| row(i)["bits_per_byte"]["value"].as_f64().expect("bpb");
    let kld = |i: usize| row(i)["kld_mean"]["value"].as_f64().expect("kld");
    assert!(
        row(0)["kld_mean"].is_null(),
        "the base has no KLD against itself"
    );
    assert_eq!(
        row(0)["quantization"].as_str(),
        Some("F32, dequantized from Q4_1")
    );
    assert_eq!(
        row(2)["quantization"].as_str(),
        Some("Q8_0, requantized from F32 dequantized from Q4_1")
    );
    // The F32 base holds the source's weights exactly: only the kernels differ.
    assert!(
        (bpb(0) - bpb(1)).abs() / bpb(0) < 0.005,
        "F32 {} vs source {}",
        bpb(0),
        bpb(1)
    );
    eprintln!(
        "SmolLM2 sweep, first 6,000 bytes of PTB test: KLD source {:.5}, Q8_0 {:.5}, Q4_0 {:.5}; bits/byte F32 {:.4}, Q8_0 {:.4}, Q4_0 {:.4}",
        kld(1), kld(2), kld(3), bpb(0), bpb(2), bpb(3)
    );
    assert!(kld(2) < kld(3), "Q8_0 must lose less than Q4_0");
    assert!(
        kld(1) < kld(3),
        "the source's kernels lose less than re-quantizing to Q4_0"
    );
    for i in 1..4 {
        let same = row(i)["same_top_rate"]["value"].as_f64().expect("same top");
        assert!(same > 0.5 && same <= 1.0, "{i}: {same}");
        assert!(row(i)["tg128"]["mean_ts"].as_f64().expect("tg") > 0.0);
    }
    let md = std::fs::read_to_string(out_dir.join("sweep.md")).expect("sweep.md");
    assert!(md.contains("| Q4_0 |") && md.contains("KLD"), "{md}");
    // A second sweep keeps the measured rows instead of measuring again.
    let again = sweep("Q8_0");
    assert!(again.status.success(), "{}", stderr(&again));
    let table2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("sweep.json")).expect("sweep.json"))
            .expect("json");
    assert_eq!(table2["rows"].as_array().expect("rows").len(), 3);
    assert_eq!(
        table2["rows"][2], rows[2],
        "the Q8_0 row is kept as measured"
    );

    // The base against itself: nothing but the f32 rounding of the stored log-probabilities.
    let base_file = std::fs::read_dir(&work)
        .expect("work")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "kld"))
        .expect("base file");
    let own = ppl_metrics(
        tmp.path(),
        &results,
        &[
            "--model-path",
            s(&work.join("smollm2-135m-instruct-F32.gguf")),
            "--corpus-bytes",
            "6000",
            "--kld-base",
            s(&base_file),
        ],
    );
    assert!(metric(&own, "kld_mean") < 1e-5, "{own}");
    assert_eq!(metric(&own, "same_top_rate"), 1.0);
}

#[test]
fn quantize_and_kl_divergence_refuse_bad_input_naming_the_file() {
    let (dir, model, text) = tiny_setup();
    let results = dir.path().join("results");
    // quantize: an unknown type, an input that is not a GGUF, an existing output.
    let q = |args: &[&str]| {
        let mut all = vec!["--quiet", "quantize"];
        all.extend_from_slice(args);
        lmdensity(dir.path(), &all)
    };
    let out = q(&["--input", s(&model), "-t", "Q7_Z", "-o", "x.gguf"]);
    refused(&out, &["Q7_Z", "Q4_K_M"]);
    let out = q(&["--input", s(&text), "-t", "Q8_0", "-o", "x.gguf"]);
    refused(&out, &["text.txt"]);
    assert!(!dir.path().join("x.gguf").exists() && !dir.path().join("x.gguf.partial").exists());
    let out = q(&["--input", s(&model), "-t", "Q8_0", "-o", s(&text)]);
    refused(&out, &["already exists"]);
    // A tiny model quantizes (width 32: Q8_0 blocks fit).
    let q8 = dir.path().join("tiny-q8.gguf");
    let out = q(&["--input", s(&model), "-t", "Q8_0", "-o", s(&q8)]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A base, then comparisons that cannot be made.
    let base = dir.path().join("base.kld");
    ppl_metrics(
        dir.path(),
        &results,
        &[
            "--model-path",
            s(&model),
            "--corpus",
            s(&text),
            "--max-length",
            "64",
            "--save-kld-base",
            s(&base),
        ],
    );
    let compare = |args: &[&str]| {
        let mut all = vec![
            "--quiet",
            "--results-dir",
            s(&results),
            "ppl",
            "--model-path",
            s(&q8),
        ];
        all.extend_from_slice(args);
        lmdensity(dir.path(), &all)
    };
    // The base's text and window length, or others.
    let compare_on = |corpus: &Path, max_length: &str| {
        compare(&[
            "--corpus",
            s(corpus),
            "--max-length",
            max_length,
            "--kld-base",
            s(&base),
        ])
    };
    let ok = compare_on(&text, "64");
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Another window length.
    let out = compare_on(&text, "32");
    refused(&out, &["base.kld", "windows of 64"]);
    // Another text.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, "Something else entirely, and shorter.\n").expect("write");
    let out = compare_on(&other, "64");
    refused(&out, &["base.kld", "corpus"]);
    // A truncated base.
    let bytes = std::fs::read(&base).expect("read");
    std::fs::write(&base, &bytes[..bytes.len() - 7]).expect("write");
    let out = compare_on(&text, "64");
    refused(&out, &["base.kld", "truncated"]);
    // Both modes at once, and saving while resuming.
    let out = compare(&[
        "--corpus",
        s(&text),
        "--mode",
        "both",
        "--n-ctx",
        "64",
        "--kld-base",
        s(&base),
    ]);
    refused(&out, &["one --mode"]);
    let out = compare(&[
        "--corpus",
        s(&text),
        "--resume",
        "--save-kld-base",
        "b2.kld",
    ]);
    refused(&out, &["cannot resume"]);
}
