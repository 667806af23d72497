//! `lmdensity eval`: downstream tasks on a model, one resumable run per task.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use lmdensity_core::store::{resume_key, StoredRun};
use lmdensity_core::ResultsStore;
use lmdensity_hub::Fetcher;
use lmdensity_tasks::items::build_items;
use lmdensity_tasks::score::{run_task, Encoding};
use lmdensity_tasks::{data, TaskSet};
use serde_json::json;

use crate::cli::{Cli, EvalArgs};
use crate::commands::{finish_run, load_engine, open_run, run_manifest, with_progress};

/// Longest context a task request may use: lm-eval's default max_length.
const MAX_TASK_TOKENS: usize = 2048;

/// Whether lm-evaluation-harness prefixes BOS for this architecture (it does for Gemma only).
fn lm_eval_adds_bos(architecture: &str) -> bool {
    architecture.starts_with("gemma")
}

/// Scores every selected task; returns the finished runs.
pub fn evaluate(cli: &Cli, args: &EvalArgs) -> Result<Vec<StoredRun>> {
    let set = match &args.tasks_file {
        Some(path) => TaskSet::load(path)?,
        None => TaskSet::builtin(),
    };
    let tasks = set.select(&args.tasks)?;
    if args.limit == Some(0) {
        bail!("--limit must be at least 1");
    }
    let engine = load_engine(cli, &args.model)?;
    let info = engine.model.info().clone();
    let max_len = info.n_ctx_train.min(MAX_TASK_TOKENS);
    let encoding = Encoding {
        prefix_bos: if lm_eval_adds_bos(&info.architecture) {
            info.bos
        } else {
            None
        },
        max_len,
    };
    let fetcher = Fetcher::from_env(cli.quiet);
    let store = ResultsStore::new(&cli.results_dir);
    let mut finished = Vec::new();
    for spec in tasks {
        let documents = data::load_documents(spec, &fetcher)?;
        let n_documents = documents.len();
        let documents = &documents[..args.limit.unwrap_or(n_documents).min(n_documents)];
        let items = build_items(spec, documents)?;
        let mut session = engine.model.session(max_len)?;
        let settings: BTreeMap<String, serde_json::Value> = [
            ("task", json!(spec.name)),
            ("corpus", json!(spec.name)),
            (
                "mode",
                json!(match args.limit {
                    Some(n) => format!("0-shot {}, first {n}", spec.split),
                    None => format!("0-shot {}", spec.split),
                }),
            ),
            ("split", json!(spec.split)),
            ("data", json!(format!("pip:{} {}", spec.package, spec.path))),
            ("items", json!(items.len())),
            ("num_fewshot", json!(0)),
            ("prefix_bos", json!(encoding.prefix_bos.is_some())),
            ("max_length", json!(max_len)),
            ("prompt", json!({"text": spec.text, "choices": format!("{:?}", spec.choices), "gold": spec.gold, "target_delimiter": spec.target_delimiter, "kind": format!("{:?}", spec.kind)})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let key = resume_key(&json!({
            "model_sha256": engine.record.sha256,
            "backend": "llama.cpp",
            "kind": "task",
            "settings": settings,
        }));
        let label = format!("task-{}", spec.name);
        let mut handle = open_run(&store, args.resume, &key, "items", || {
            run_manifest(&engine, "task", &label, settings, key.clone())
        })?;
        let result = with_progress(
            &format!("{} {}", engine.record.id, spec.name),
            "items",
            |on_progress| {
                run_task(
                    &mut session,
                    spec,
                    &items,
                    encoding,
                    &mut handle,
                    on_progress,
                )
            },
        );
        finished.push(finish_run(&handle, result, "task run", "items")?);
    }
    if let Some(path) = &args.lm_eval_json {
        let json = lm_eval_results(&finished, &engine.record.id, args.limit);
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(finished)
}

/// The runs in lm-evaluation-harness's results layout: `results` → task → `<metric>,none` and
/// `<metric>_stderr,none`, plus `n-samples` and the configuration that matters.
fn lm_eval_results(runs: &[StoredRun], model: &str, limit: Option<usize>) -> serde_json::Value {
    let mut results = serde_json::Map::new();
    let mut samples = serde_json::Map::new();
    for run in runs {
        let Some(task) = run.manifest.settings.get("task").and_then(|t| t.as_str()) else {
            continue;
        };
        let mut entry = serde_json::Map::new();
        entry.insert("alias".into(), json!(task));
        let Some(metrics) = &run.metrics else {
            continue;
        };
        for metric in &metrics.metrics {
            let Some(name) = metric.name.strip_prefix(&format!("{task}/")) else {
                continue;
            };
            if !["acc", "acc_norm", "acc_bytes"].contains(&name) {
                continue;
            }
            entry.insert(format!("{name},none"), json!(metric.value));
            entry.insert(
                format!("{name}_stderr,none"),
                metric.stderr.map_or(json!("N/A"), |s| json!(s)),
            );
        }
        let n = run
            .manifest
            .settings
            .get("items")
            .cloned()
            .unwrap_or(json!(null));
        samples.insert(task.into(), json!({"original": n, "effective": n}));
        results.insert(task.into(), serde_json::Value::Object(entry));
    }
    json!({
        "results": results,
        "n-samples": samples,
        "config": {"model": "lmdensity/llama.cpp", "model_args": model, "limit": limit, "num_fewshot": 0},
        "lmdensity_version": env!("CARGO_PKG_VERSION"),
    })
}
