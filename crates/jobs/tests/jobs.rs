//! The jobs called directly, as a library user would: no command line in between.

use lmdensity_jobs::analysis::FitOutcome;
use lmdensity_jobs::{
    FitJob, FitSettings, FitTarget, JobError, ModelSpec, Modes, PerplexityJob, TaskJob, Workspace,
};

fn tiny(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = dir.join("tiny.gguf");
    lmdensity_hub::gguf::write_tiny_llama(&model, 7).expect("tiny model");
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. Pack my box with five dozen jugs.\n"
            .repeat(8),
    )
    .expect("corpus");
    (model, text)
}

#[test]
fn a_perplexity_job_runs_both_modes_and_reuses_complete_runs_on_resume() {
    lmdensity_core::progress::set_quiet(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, text) = tiny(dir.path());
    let ws = Workspace::new(dir.path().join("results"));
    let job = PerplexityJob {
        corpus: text.display().to_string(),
        modes: Modes::Both,
        max_length: Some(64),
        n_ctx: 32,
        resume: true,
        ..PerplexityJob::new(ModelSpec {
            threads: Some(1),
            ..ModelSpec::file(&model)
        })
    };
    let first = job.run(&ws).expect("first run");
    assert_eq!(first.len(), 2, "one run per mode");
    let again = job.run(&ws).expect("second run");
    let dirs =
        |runs: &[lmdensity_core::StoredRun]| runs.iter().map(|r| r.dir.clone()).collect::<Vec<_>>();
    assert_eq!(
        dirs(&first),
        dirs(&again),
        "complete runs are reused, not recomputed"
    );
    assert_eq!(ws.store().runs().expect("store").len(), 2);
    for run in &first {
        let m = run.metrics.as_ref().expect("metrics");
        assert_eq!(m.status, lmdensity_core::RunStatus::Complete);
        assert!(run.manifest.settings.contains_key("corpus_sha256"));
    }
}

#[test]
fn bad_job_settings_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (model, text) = tiny(dir.path());
    let ws = Workspace::new(dir.path().join("results"));
    let kld = PerplexityJob {
        corpus: text.display().to_string(),
        modes: Modes::Both,
        max_length: Some(64),
        n_ctx: 32,
        kld: lmdensity_jobs::KldSpec {
            save_base: Some(dir.path().join("base.kld")),
            ..Default::default()
        },
        ..PerplexityJob::new(ModelSpec::file(&model))
    };
    let err = kld.run(&ws).expect_err("two modes with a KLD base");
    assert!(matches!(err, JobError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("need one --mode"), "{err}");
    let tasks = TaskJob {
        limit: Some(0),
        ..TaskJob::new(ModelSpec::file(&model), "copa")
    };
    assert!(tasks
        .run(&ws)
        .expect_err("limit 0")
        .to_string()
        .contains("--limit"));
    assert!(
        ws.store().runs().expect("store").is_empty(),
        "nothing was written"
    );
}

#[test]
fn a_fit_job_reproduces_gadre_from_the_built_in_data_and_saves_it() {
    lmdensity_core::progress::set_quiet(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::new(dir.path().join("results"));
    let job = FitJob {
        target: FitTarget::Gadre {
            data: None,
            dataset: "rpj".into(),
            eval_set: "c4_val".into(),
        },
        settings: FitSettings {
            bootstrap: 50,
            ..FitSettings::default()
        },
    };
    let done = job.run(&ws).expect("fit");
    let FitOutcome::Gadre(fits, data) = &done.outcome else {
        panic!("not a Gadre outcome");
    };
    assert!(data.contains("shipped with lmdensity"), "{data}");
    assert_eq!(fits.loss_law.n_points, 5);
    assert!(done.saved.is_file());
    assert_eq!(done.json["error_law"]["n_points"], 6);
}
