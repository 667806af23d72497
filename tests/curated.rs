//! The curated results the README quotes are complete, consistent with the registry, and their
//! metrics agree with their own samples.

use lmdensity_core::schema::Sample;
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
