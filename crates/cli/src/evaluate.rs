//! `lmdensity eval`: downstream tasks on a model, one resumable run per task.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use lmdensity_core::store::{resume_key, StoredRun};
use lmdensity_core::ResultsStore;
use lmdensity_hub::Fetcher;
use lmdensity_tasks::items::{build_items, Fewshot};
use lmdensity_tasks::score::{aggregate_groups, run_task, Encoding, GroupScore};
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
        let all_documents = data::load_documents(spec, &fetcher)?;
        let n_documents = all_documents.len();
        let documents = &all_documents[..args.limit.unwrap_or(n_documents).min(n_documents)];
        let shot_pool = match spec.fewshot.as_ref().and_then(|f| f.path.as_ref()) {
            Some(path) if args.num_fewshot > 0 => {
                let mut shots = spec.clone();
                shots.path = path.clone();
                Some(data::load_documents(&shots, &fetcher)?)
            }
            _ => None,
        };
        let fewshot = Fewshot {
            k: args.num_fewshot,
            seed: args.seed,
            same_split: shot_pool.is_none(),
            pool: shot_pool.as_deref().unwrap_or(&all_documents),
        };
        let shots_from = match (&spec.fewshot, shot_pool.is_some()) {
            (Some(f), true) => format!("{} split, {:?}", f.split, f.sampler),
            _ => format!(
                "{} split, random (seed {}), item excluded",
                spec.split, args.seed
            ),
        };
        let items = build_items(spec, documents, Some(&fewshot))?;
        let settings: BTreeMap<String, serde_json::Value> = [
            ("task", json!(spec.name)),
            ("corpus", json!(spec.name)),
            (
                "mode",
                json!(match args.limit {
                    Some(n) => format!("{}-shot {}, first {n}", args.num_fewshot, spec.split),
                    None => format!("{}-shot {}", args.num_fewshot, spec.split),
                }),
            ),
            ("split", json!(spec.split)),
            ("data", json!(data::describe_source(spec))),
            ("items", json!(items.len())),
            ("num_fewshot", json!(args.num_fewshot)),
            (
                "fewshot",
                json!(if args.num_fewshot > 0 { shots_from } else { "none".into() }),
            ),
            ("prefix_bos", json!(encoding.prefix_bos.is_some())),
            ("max_length", json!(max_len)),
            ("prompt", json!({"preamble": spec.preamble, "text": spec.text, "choices": format!("{:?}", spec.choices), "gold": spec.gold, "target_delimiter": spec.target_delimiter, "fewshot_delimiter": spec.fewshot_delimiter, "kind": format!("{:?}", spec.kind)})),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // How the cache is used changes speed, not scores: runs with and without sharing resume
        // each other.
        let key = resume_key(&json!({
            "model_sha256": engine.record.sha256,
            "backend": engine.backend_label(),
            "kind": "task",
            "settings": settings,
        }));
        let label = format!("task-{}", spec.name);
        if args.resume {
            if let Some(done) = store.find_complete(&key)? {
                if !cli.quiet {
                    eprintln!("{}: already complete in {}", spec.name, done.dir.display());
                }
                finished.push(done);
                continue;
            }
        }
        let max_choices = items.iter().map(|i| i.requests.len()).max().unwrap_or(1);
        // The cache holds one stream per choice, copied whole per item: size it to the
        // longest request (plus BOS and a margin for the trailing-space move), not to 2048.
        let longest = items
            .iter()
            .flat_map(|i| &i.requests)
            .map(|(context, continuation)| {
                engine
                    .model
                    .tokenize(&format!("{context}{continuation}"), false)
                    .map(|t| t.len())
            })
            .collect::<std::result::Result<Vec<_>, _>>()?
            .into_iter()
            .max()
            .unwrap_or(1);
        let cache_len = max_len.min(longest + 8);
        let mut session = if args.no_shared_context {
            engine.model.independent_session(cache_len)?
        } else {
            engine
                .model
                .shared_context_session(cache_len, max_choices)?
        };
        let mut handle = open_run(&store, args.resume, &key, "items", || {
            run_manifest(&engine, "task", &label, settings, key.clone())
        })?;
        let result = with_progress(
            &format!("{} {}", engine.record.id, spec.name),
            "items",
            |on_progress| {
                run_task(
                    session.as_mut(),
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
    let groups = aggregate_groups(&set, &finished);
    if !groups.is_empty() {
        print_groups(&groups);
    }
    if let Some(path) = &args.lm_eval_json {
        let json = lm_eval_results(&finished, &groups, &engine.record.id, args);
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(finished)
}

/// Group averages, one line each.
fn print_groups(groups: &[GroupScore]) {
    for g in groups {
        println!(
            "{:<24} acc {:.4} ± {:.4} (items-weighted, {} items in {} tasks); macro {:.4}",
            g.name, g.acc, g.acc_stderr, g.items, g.tasks, g.acc_macro
        );
    }
}

/// The runs in lm-evaluation-harness's results layout: `results` → task → `<metric>,none` and
/// `<metric>_stderr,none`, `groups` → group → the same, plus `n-samples` and the configuration
/// that matters.
fn lm_eval_results(
    runs: &[StoredRun],
    groups: &[GroupScore],
    model: &str,
    args: &EvalArgs,
) -> serde_json::Value {
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
            if !["acc", "acc_norm", "acc_bytes", "perplexity"].contains(&name) {
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
    let mut group_results = serde_json::Map::new();
    for g in groups {
        group_results.insert(
            g.name.clone(),
            json!({"alias": g.name, "acc,none": g.acc, "acc_stderr,none": g.acc_stderr, "acc_macro,none": g.acc_macro}),
        );
    }
    json!({
        "results": results,
        "groups": group_results,
        "n-samples": samples,
        "config": {"model": "lmdensity/llama.cpp", "model_args": model, "limit": args.limit, "num_fewshot": args.num_fewshot, "fewshot_seed": args.seed},
        "lmdensity_version": env!("CARGO_PKG_VERSION"),
    })
}
