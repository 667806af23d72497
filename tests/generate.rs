//! Generative tasks end to end: `eval` on a `generate_until` task writes one generation per
//! item (text, token count, stop reason), resumes, and refuses chat settings it cannot honour;
//! on real models, batched greedy generation agrees with one sequence at a time and chat
//! templates render into the models' special tokens.

use lmdensity_backend::{GenerateRequest, GeneratedToken, LanguageModel, ScoreRequest};
use lmdensity_core::{Sample, StopReason};

use crate::real_models::weights;
use crate::util::*;

/// A generative task over a local JSONL file: arithmetic questions whose reference is a number.
fn arithmetic_task(dir: &std::path::Path, budget: usize) -> std::path::PathBuf {
    let docs: String = (1..=5)
        .map(|i| {
            format!(
                "{{\"question\": \"What is {i} plus {i}?\", \"answer\": \"{}\"}}\n",
                2 * i
            )
        })
        .collect();
    std::fs::write(dir.join("sums.jsonl"), docs).expect("docs");
    let toml = format!(
        r#"[[task]]
name = "sums"
description = "toy arithmetic, generated"
path = "sums.jsonl"
format = "jsonl"
split = "test"
kind = "generate_until"
text = "Question: {{{{question}}}}\nAnswer:"
choices = ["{{{{answer}}}}"]
gold = "0"
until = ["\n\n", "Question:"]
max_gen_toks = {budget}
filters = [{{ name = "last-number", regex = '(-?[0-9]+)', group_select = -1 }}]
metrics = ["exact_match"]
"#
    );
    let path = dir.join("tasks.toml");
    std::fs::write(&path, toml).expect("tasks file");
    path
}

fn generations(run: &std::path::Path) -> Vec<lmdensity_core::GenerationSample> {
    std::fs::read_to_string(run.join("samples.jsonl"))
        .expect("samples")
        .lines()
        .map(
            |l| match serde_json::from_str::<Sample>(l).expect("sample") {
                Sample::Generation(g) => g,
                other => panic!("not a generation: {other:?}"),
            },
        )
        .collect()
}

/// A code task on the tiny model: every completion runs with its tests in the sandbox and its
/// outcome is in the sample; pass@1 counts them, and lm-eval's JSON names it as lm-eval does.
#[test]
fn code_tasks_run_each_completion_in_the_sandbox_and_report_pass_at_1() {
    let (dir, model, _) = tiny_setup();
    let docs: String = (1..=3)
        .map(|i| format!("{{\"k\": {i}, \"solution\": \"    return x * {i}\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("code.jsonl"), docs).expect("docs");
    let toml = r#"[[task]]
name = "times"
description = "toy code task, generated"
path = "code.jsonl"
format = "jsonl"
split = "test"
kind = "generate_until"
text = "def times(x):\n"
choices = ["{{solution}}"]
gold = "0"
target_delimiter = ""
until = ["\ndef"]
max_gen_toks = 6
program = "def times(x):\n{{completion}}\nassert times(2) == 2 * {{k}}"
metrics = ["pass@1"]
"#;
    let tasks = dir.path().join("tasks.toml");
    std::fs::write(&tasks, toml).expect("tasks file");
    let out = lmdensity(
        dir.path(),
        &[
            "eval",
            "--model-path",
            model.to_str().expect("utf8"),
            "--tasks-file",
            tasks.to_str().expect("utf8"),
            "--tasks",
            "times",
            "--threads",
            "1",
            "--quiet",
            "--lm-eval-json",
            "lm-eval.json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = run_dirs(&dir.path().join("results"));
    let samples = generations(&runs[0]);
    assert_eq!(samples.len(), 3);
    // Random weights write no valid body: each program fails, and says why.
    for g in &samples {
        match &g.execution {
            Some(lmdensity_core::ExecutionOutcome::Failed { error }) => {
                assert!(error.contains("Error"), "{g:?}")
            }
            other => panic!("expected a failed program, got {other:?} for {g:?}"),
        }
    }
    let metrics = metrics_of(&runs[0]);
    assert_eq!(metric(&metrics, "times/pass@1"), 0.0);
    assert_eq!(metric(&metrics, "times/timed_out"), 0.0);
    assert!(
        !metrics.to_string().contains("exact_match"),
        "a pass@1 task reports no exact match"
    );
    let lm_eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("lm-eval.json")).expect("json"))
            .expect("json");
    assert_eq!(
        lm_eval["results"]["times"]["pass@1,create_test"].as_f64(),
        Some(0.0)
    );
}

#[test]
fn generative_eval_records_each_generation_and_resumes() {
    let (dir, model, _) = tiny_setup();
    let tasks = arithmetic_task(dir.path(), 12);
    let args = [
        "eval",
        "--model-path",
        model.to_str().expect("utf8"),
        "--tasks-file",
        tasks.to_str().expect("utf8"),
        "--tasks",
        "sums",
        "--parallel",
        "3",
        "--threads",
        "1",
        "--quiet",
        "--lm-eval-json",
        "lm-eval.json",
    ];
    let out = lmdensity(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("sums/exact_match,last-number"),
        "{}",
        stdout(&out)
    );
    let runs = run_dirs(&dir.path().join("results"));
    assert_eq!(runs.len(), 1);
    let first = generations(&runs[0]);
    assert_eq!(first.len(), 5);
    for (i, g) in first.iter().enumerate() {
        assert_eq!(g.index, i);
        assert_eq!(g.reference, format!("{}", 2 * (i + 1)));
        assert!(g.n_tokens >= 1 && g.n_tokens <= 12, "{g:?}");
        // A random-weight model rambles: the budget is a stop reason like any other.
        match &g.stop {
            StopReason::TokenBudget => assert_eq!(g.n_tokens, 12, "{g:?}"),
            StopReason::StopSequence { sequence } => {
                assert!(!g.text.contains(sequence.as_str()), "{g:?}")
            }
            StopReason::EndOfGeneration => {}
        }
    }
    let metrics = metrics_of(&runs[0]);
    let em = metric(&metrics, "sums/exact_match,last-number");
    let invalid = metric(&metrics, "sums/invalid,last-number");
    let budget = metric(&metrics, "sums/stopped_by_budget");
    assert!((0.0..=1.0).contains(&em) && (0.0..=1.0).contains(&budget));
    let digits = first
        .iter()
        .filter(|g| g.text.chars().any(|c| c.is_ascii_digit()))
        .count();
    assert_eq!(
        invalid as usize,
        5 - digits,
        "answers without a number are counted"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(
        manifest["settings"]["prompt_item_0"],
        "Question: What is 1 plus 1?\nAnswer:"
    );
    assert_eq!(manifest["settings"]["chat_template"], "none");
    let lm_eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("lm-eval.json")).expect("json"))
            .expect("json");
    assert_eq!(
        lm_eval["results"]["sums"]["exact_match,last-number"].as_f64(),
        Some(em)
    );

    // Interrupted after two items: --resume generates the other three in the same run.
    let kept: String = std::fs::read_to_string(runs[0].join("samples.jsonl"))
        .expect("samples")
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(runs[0].join("samples.jsonl"), kept).expect("truncate");
    std::fs::remove_file(runs[0].join("metrics.json")).expect("metrics");
    let mut resume = args[..args.len() - 2].to_vec();
    resume.push("--resume");
    let out = lmdensity(dir.path(), &resume);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_dirs(&dir.path().join("results")).len(), 1);
    let again = generations(&runs[0]);
    assert_eq!(again.len(), 5);
    assert_eq!(again[..2], first[..2], "kept items are untouched");
    assert_eq!(metrics_of(&runs[0])["status"], "complete");
}

#[test]
fn chat_settings_that_cannot_apply_are_refused_naming_why() {
    let (dir, model, _) = tiny_setup();
    let tasks = arithmetic_task(dir.path(), 4);
    let model = model.to_str().expect("utf8");
    let tasks = tasks.to_str().expect("utf8");
    let base = [
        "eval",
        "--model-path",
        model,
        "--tasks-file",
        tasks,
        "--quiet",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = lmdensity(dir.path(), &args);
        assert!(!out.status.success(), "{extra:?} should fail");
        stderr(&out)
    };
    // The tiny GGUF has no tokenizer.chat_template.
    let err = run(&["--tasks", "sums", "--apply-chat-template"]);
    assert!(
        err.contains("tiny") && err.contains("no chat template"),
        "{err}"
    );
    let err = run(&["--tasks", "sums", "--fewshot-as-multiturn"]);
    assert!(err.contains("need --apply-chat-template"), "{err}");
    let err = run(&["--tasks", "sums", "--parallel", "0"]);
    assert!(err.contains("--parallel"), "{err}");
    // Nothing was written by refused invocations.
    assert!(run_dirs(&dir.path().join("results")).is_empty());
}

/// A model whose GGUF carries a chat template: a working one renders the prompt (shown in the
/// manifest) and generation runs; one that raises stops the task naming the model, the item
/// and the template's own message, and leaves no finished run behind.
#[test]
fn chat_templates_from_the_gguf_render_or_fail_naming_the_model_and_item() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tasks = arithmetic_task(dir.path(), 4);
    let tasks = tasks.to_str().expect("utf8");
    let good = dir.path().join("chatty.gguf");
    lmdensity_hub::gguf::write_tiny_llama_with(
        &good,
        7,
        Some("{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] | trim }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"),
    )
    .expect("write");
    let bad = dir.path().join("strict.gguf");
    lmdensity_hub::gguf::write_tiny_llama_with(
        &bad,
        7,
        Some("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ messages[0]['content'] }}"),
    )
    .expect("write");
    let run = |model: &std::path::Path| {
        lmdensity(
            dir.path(),
            &[
                "eval",
                "--model-path",
                model.to_str().expect("utf8"),
                "--tasks-file",
                tasks,
                "--tasks",
                "sums",
                "--apply-chat-template",
                "--system-prompt",
                "Add.",
                "--threads",
                "1",
                "--quiet",
            ],
        )
    };
    let out = run(&good);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = run_dirs(&dir.path().join("results"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(
        manifest["settings"]["prompt_item_0"],
        "<s>[system] Add.\n[user] Question: What is 1 plus 1?\nAnswer:\n[assistant]"
    );
    assert_eq!(generations(&runs[0]).len(), 5);
    let out = run(&bad);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("strict")
            && err.contains("item 0")
            && err.contains("System role not supported"),
        "{err}"
    );
    assert_eq!(
        run_dirs(&dir.path().join("results")).len(),
        1,
        "nothing written"
    );
}

#[test]
fn chat_templates_on_log_likelihood_tasks_and_extra_shots_on_fixed_shot_tasks_are_refused() {
    let (dir, model, _) = tiny_setup();
    let model = model.to_str().expect("utf8");
    for (extra, expected) in [
        (
            ["piqa", "--apply-chat-template"],
            "piqa is a log-likelihood task",
        ),
        (["gsm8k", "--num-fewshot=5"], "8 fixed shots"),
    ] {
        let mut args = vec!["eval", "--model-path", model, "--tasks"];
        args.extend(extra);
        let out = lmdensity(dir.path(), &args);
        assert!(!out.status.success(), "{extra:?} should fail");
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
    }
}

/// A watcher that collects each sequence's text and stops it at a blank line.
fn stop_at_blank_line(texts: &mut [String]) -> impl FnMut(&GeneratedToken<'_>) -> bool + '_ {
    move |t| {
        texts[t.request].push_str(&String::from_utf8_lossy(t.bytes));
        !t.end_of_generation && !texts[t.request].contains("\n\n")
    }
}

/// Greedy generation of four GSM8K prompts (the same 8 shots, different questions), four
/// sequences at once, against the same prompts one at a time in a plain session.
#[test]
fn real_batched_generation_agrees_with_one_sequence_at_a_time() {
    use lmdensity_llamacpp::{LlamaCppConfig, LlamaCppModel};
    let model = LlamaCppModel::load(
        &weights("smollm2-135m-instruct"),
        LlamaCppConfig {
            threads: 2,
            ..Default::default()
        },
    )
    .expect("load");
    let shots = "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\nAnswer: Tom starts with 3 apples. He buys 2 more, so 3 + 2 = 5. So the answer is 5.\n\nQuestion: A box holds 4 pens. How many pens are in 3 boxes?\nAnswer: Each box holds 4 pens, so 3 boxes hold 3 * 4 = 12. So the answer is 12.\n\n";
    let questions = [
        "Sara has 10 sweets and eats 4. How many are left?",
        "A bus carries 20 people and 5 get off. How many remain?",
        "There are 6 birds on a tree and 6 more land. How many birds are there?",
        "Jim reads 7 pages a day for 2 days. How many pages does he read?",
    ];
    let requests: Vec<GenerateRequest> = questions
        .iter()
        .map(|q| GenerateRequest {
            prompt: model.tokenize(&format!("{shots}Question: {q}\nAnswer:"), false),
            max_new_tokens: 40,
        })
        .collect();
    let mut batched_texts = vec![String::new(); 4];
    let mut session = model.generation_session(512, 4096, 4).expect("session");
    assert_eq!(session.parallel_sequences(), 4);
    let batched = session
        .generate_greedy(&requests, &mut stop_at_blank_line(&mut batched_texts))
        .expect("batched");
    let decoded = session.tokens_decoded() as usize;
    let mut single_texts = vec![String::new(); 4];
    let mut plain = model.session(512).expect("session");
    let single = plain
        .generate_greedy(&requests, &mut stop_at_blank_line(&mut single_texts))
        .expect("one at a time");
    // The shared shots went through the model once, not four times.
    let prompt_tokens: usize = requests.iter().map(|r| r.prompt.len()).sum();
    let generated: usize = batched.iter().map(Vec::len).sum();
    assert!(
        decoded < prompt_tokens / 2 + generated,
        "{decoded} tokens decoded for {prompt_tokens} prompt tokens and {generated} generated"
    );
    // Batch shapes round differently (llama.cpp's kernels for ubatches over 32 tokens), so
    // greedy paths may part at a near-tie; they start the same.
    for (i, (a, b)) in batched.iter().zip(&single).enumerate() {
        let agree = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        assert!(
            agree >= 3.min(a.len()).min(b.len()),
            "sequence {i}: batched {:?} vs single {:?}",
            batched_texts[i],
            single_texts[i]
        );
    }
    // Every token the batched path chose is, when its own path is scored one request at a
    // time, the argmax or a near-tie with it: a wrong position or a cell of another sequence
    // would cost whole nats on many tokens at once.
    let mut scorer = model.independent_session(512).expect("session");
    let mut gaps = Vec::new();
    for (request, generated) in requests.iter().zip(&batched) {
        let mut tokens = request.prompt.clone();
        tokens.extend(generated);
        let path = ScoreRequest {
            tokens,
            score_from: request.prompt.len(),
        };
        let mut k = 0;
        let mut measure = |_: usize, logits: &[f32], norm: &lmdensity_backend::LogSoftmax| {
            gaps.push(norm.max - logits[generated[k] as usize]);
            k += 1;
            Ok(())
        };
        scorer
            .score_visiting(std::slice::from_ref(&path), Some(&mut measure))
            .expect("scores");
    }
    let exact = gaps.iter().filter(|&&g| g == 0.0).count();
    let worst = gaps.iter().copied().fold(0f32, f32::max);
    assert!(
        exact * 10 >= gaps.len() * 9 && worst <= 0.5,
        "{exact} of {} batched tokens are the one-at-a-time argmax, the worst {worst} nats below it: {batched_texts:?}",
        gaps.len()
    );
    assert!(
        batched_texts.iter().any(|t| t.contains("So the answer is")),
        "the model follows the shots: {batched_texts:?}"
    );
}

/// `eval --apply-chat-template` on SmolLM2-Instruct: its ChatML template renders the item
/// (shown in the manifest), is tokenized into its special tokens, and generation stops at the
/// end of the assistant's turn.
#[test]
fn real_chat_template_renders_into_special_tokens_and_ends_the_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lmdensity(
        dir.path(),
        &[
            "eval",
            "--model",
            "smollm2-135m-instruct",
            "--tasks",
            "gsm8k",
            "--limit",
            "2",
            "--apply-chat-template",
            "--fewshot-as-multiturn",
            "--system-prompt",
            "Solve the problem.",
            "--threads",
            "2",
            "--quiet",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = run_dirs(&dir.path().join("results"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("manifest.json")).expect("manifest"))
            .expect("json");
    let prompt = manifest["settings"]["prompt_item_0"]
        .as_str()
        .expect("prompt");
    assert!(
        prompt.starts_with("<|im_start|>system\nSolve the problem.<|im_end|>\n<|im_start|>user\nQuestion: There are 15 trees"),
        "{prompt}"
    );
    assert_eq!(
        prompt.matches("<|im_start|>assistant\n").count(),
        9,
        "8 shots and the answer"
    );
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    assert!(manifest["settings"]["chat_template"]["template_sha256"].is_string());
    for g in generations(&runs[0]) {
        assert!(g.n_prompt_tokens > 500, "{g:?}");
        assert!(!g.text.contains("<|im_end|>"), "{g:?}");
    }
}

/// The candle engine applies the same chat template: read from the GGUF, rendered to the same
/// prompt and tokenized into the same tokens (control tokens as themselves) as on llama.cpp,
/// and its generation ends at the end of the assistant's turn too.
#[test]
fn real_chat_template_on_candle_gives_llama_cpps_prompt_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A short budget: candle's Q4_1 kernels are scalar (see the README), so it generates slowly.
    let tasks = arithmetic_task(dir.path(), 24);
    let mut prompts = Vec::new();
    for backend in ["llama.cpp", "candle"] {
        let out = lmdensity(
            dir.path(),
            &[
                "eval",
                "--model",
                "smollm2-135m-instruct",
                "--backend",
                backend,
                "--tasks-file",
                tasks.to_str().expect("utf8"),
                "--tasks",
                "sums",
                "--limit",
                "1",
                "--apply-chat-template",
                "--system-prompt",
                "Answer with a number.",
                "--threads",
                "2",
                "--quiet",
            ],
        );
        assert!(out.status.success(), "{backend}: {}", stderr(&out));
        let run = run_dirs(&dir.path().join("results"))
            .into_iter()
            .find(|r| {
                let m = std::fs::read_to_string(r.join("manifest.json")).expect("manifest");
                !prompts.iter().any(|(_, d, _, _)| d == r) && m.contains("sums")
            })
            .expect("the new run");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("manifest.json")).expect("manifest"))
                .expect("json");
        let g = generations(&run).remove(0);
        prompts.push((
            manifest["settings"]["prompt_item_0"].clone(),
            run,
            g.n_prompt_tokens,
            g,
        ));
    }
    let (llama, candle) = (&prompts[0], &prompts[1]);
    assert_eq!(llama.0, candle.0, "the same rendered prompt");
    assert!(
        llama.0.as_str().is_some_and(|p| p
            .starts_with("<|im_start|>system\nAnswer with a number.<|im_end|>\n<|im_start|>user\nQuestion: What is 1 plus 1?")),
        "{}",
        llama.0
    );
    assert_eq!(llama.2, candle.2, "the same prompt tokens");
    assert!(!candle.3.text.contains("<|im_end|>"), "{:?}", candle.3);
}

/// The curated generative runs (`scripts/curate-generative`): complete, one generation per item,
/// and every stored exact match recomputed from the samples' texts and references.
#[test]
fn curated_generative_runs_recompute_from_their_samples() {
    use lmdensity_core::{ResultsStore, RunStatus};
    use lmdensity_tasks::generate::generation_metrics;
    let store = ResultsStore::new(repo_root().join("results/curated/generative"));
    let set = lmdensity_tasks::TaskSet::builtin();
    let mut checked = 0;
    for run in store.runs().expect("store") {
        let task = run.manifest.settings["task"].as_str().expect("task");
        let spec = set.tasks.iter().find(|t| t.name == task).expect("declared");
        if spec.kind != lmdensity_tasks::TaskKind::GenerateUntil {
            continue;
        }
        let metrics = run.metrics.as_ref().expect("metrics");
        assert_eq!(metrics.status, RunStatus::Complete, "{}", run.dir.display());
        let samples = generations(&run.dir);
        assert_eq!(
            run.manifest.settings["items"].as_u64(),
            Some(samples.len() as u64),
            "{}: every item",
            run.dir.display()
        );
        let again = generation_metrics(spec, &samples, RunStatus::Complete, 0.0);
        for m in again
            .metrics
            .iter()
            .filter(|m| m.name.contains("exact_match") || m.name.contains("pass@1"))
        {
            let stored = metrics.get(&m.name).expect("stored").value;
            assert!(
                (stored - m.value).abs() < 1e-12,
                "{}: {}",
                run.dir.display(),
                m.name
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "{checked} curated generative runs");
}
