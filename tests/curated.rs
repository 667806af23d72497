//! The curated results the README quotes are complete, consistent with the registry, and their
//! metrics agree with their own samples.

use lmdensity_core::schema::{Sample, SweepTable};
use lmdensity_core::ResultsStore;
use lmdensity_hub::Registry;

use crate::util::*;

#[test]
fn curated_ptb_bits_per_byte_runs_are_complete_and_consistent() {
    let registry = Registry::load(&repo_root().join("models.toml")).expect("registry");
    let runs = ResultsStore::new(repo_root().join("results/curated/ptb-test-harness"))
        .runs()
        .expect("runs");
    let mut ids: Vec<&str> = runs.iter().map(|r| r.manifest.model.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "gemma-3-270m",
            "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-1.5b-instruct",
            "smollm2-135m-instruct"
        ]
    );
    for run in &runs {
        let m = &run.manifest;
        let pinned = registry.get(&m.model.id).expect("registry entry").files[0]
            .sha256
            .clone();
        assert_eq!(
            Some(m.model.sha256.clone()),
            pinned,
            "{}: measured the pinned file",
            m.model.id
        );
        assert_eq!(
            m.settings["corpus_sha256"],
            lmdensity_eval::corpus::PTB_TEST_SHA256
        );
        assert_eq!(m.settings["max_length"], 2048);
        let metrics = run.metrics.as_ref().expect("metrics");
        assert_eq!(
            metrics.status,
            lmdensity_core::RunStatus::Complete,
            "{}",
            m.model.id
        );
        // Recompute bits per byte from the stored per-window sums.
        let text = std::fs::read_to_string(run.dir.join("samples.jsonl")).expect("samples");
        let nll: f64 = text
            .lines()
            .map(
                |l| match serde_json::from_str::<Sample>(l).expect("sample") {
                    Sample::PerplexityWindow(w) => w.nll_sum,
                    other => panic!("a perplexity run holds {other:?}"),
                },
            )
            .sum();
        let bytes = m.settings["corpus_bytes"].as_f64().expect("bytes");
        let bpb = nll / bytes / std::f64::consts::LN_2;
        let stored = metrics.get("bits_per_byte").expect("bpb").value;
        assert!(
            (bpb - stored).abs() < 1e-9,
            "{}: {bpb} vs {stored}",
            m.model.id
        );
        assert!(
            bpb > 0.3 && bpb < 3.0,
            "{}: {bpb} bits/byte is not plausible for English",
            m.model.id
        );
    }
}

/// The quantization sweeps the README tables: every row comes from a perplexity run kept next
/// to it (manifest and metrics), the labels say where the weights came from, and the recorded
/// KLD order is the one the rows imply.
#[test]
fn curated_quantization_sweeps_match_their_runs_and_state_their_kld_order() {
    let registry = Registry::load(&repo_root().join("models.toml")).expect("registry");
    for (id, source) in [
        ("smollm2-135m-instruct", "Q4_1"),
        ("gemma-3-270m", "Q4_K_M"),
    ] {
        let dir = repo_root().join("results/curated/sweep-quant").join(id);
        // Read typed, with the schema's own type: a field renamed or retyped fails here.
        let table: SweepTable =
            serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).expect("sweep.json"))
                .expect("a sweep table");
        let runs = ResultsStore::new(dir.join("runs")).runs().expect("runs");
        let rows = &table.rows;
        let names: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
        assert_eq!(
            names,
            [
                "F32",
                &format!("{source} (source)"),
                "Q8_0",
                "Q6_K",
                "Q5_K_M",
                "Q4_K_M",
                "Q4_0",
                "Q3_K_M",
                "Q2_K"
            ],
            "{id}"
        );
        assert_eq!(runs.len(), rows.len(), "{id}: one perplexity run per row");
        let pinned = &registry.get(id).expect("entry").files[0].sha256;
        let mut variants: Vec<(f64, f64, &str)> = Vec::new();
        for row in rows {
            let (variant, label) = (row.variant.as_str(), row.quantization.as_str());
            match row.role.as_str() {
                "base" => assert_eq!(label, format!("F32, dequantized from {source}")),
                "source" => assert_eq!(label, source),
                _ => assert_eq!(
                    label,
                    format!("{variant}, requantized from F32 dequantized from {source}")
                ),
            }
            let run = runs
                .iter()
                .find(|r| r.manifest.model.quantization == label)
                .unwrap_or_else(|| panic!("{id} {variant}: no run"));
            if row.role == "source" {
                assert_eq!(
                    Some(&run.manifest.model.sha256),
                    pinned.as_ref(),
                    "{id}: the registry file"
                );
            }
            let metrics = run.metrics.as_ref().expect("metrics");
            let stored = |name: &str| metrics.get(name).map(|m| m.value);
            assert_eq!(
                Some(row.bits_per_byte.value),
                stored("bits_per_byte"),
                "{id} {variant}"
            );
            assert_eq!(
                row.kld_mean.map(|k| k.value),
                stored("kld_mean"),
                "{id} {variant}"
            );
            if row.role == "variant" {
                let kld = stored("kld_mean").expect("kld");
                assert!(kld > 0.0 && kld < 5.0, "{id} {variant}: {kld}");
                variants.push((row.bits_per_weight, kld, variant));
            }
        }
        variants.sort_by(|a, b| b.0.total_cmp(&a.0));
        let monotonic = variants.windows(2).all(|w| w[1].1 > w[0].1);
        assert_eq!(
            table.kld_order.as_ref().map(|o| o.monotonic),
            Some(monotonic),
            "{id}: {variants:?}"
        );
        // The schema's own order check agrees with the rows.
        assert_eq!(
            lmdensity_core::schema::kld_order(rows),
            table.kld_order,
            "{id}"
        );
    }
}
