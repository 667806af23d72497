//! Readers for the reference data the laws are fitted to: Gadre et al.'s released runs
//! (`exp_data/models/*.json` + `exp_data/evals/*_heavy.json`), EleutherAI's Pythia evaluations
//! (tidy CSV) and the curated table of open models. Every error names the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LawError;

/// The 17 tasks whose mean top-1 error Gadre et al. fit the error law to (their `SUBSET`).
pub const GADRE_17_TASKS: [&str; 17] = [
    "bigbench_operators",
    "pubmed_qa_labeled",
    "hellaswag_zeroshot",
    "boolq",
    "arc_easy",
    "coqa",
    "bigbench_dyck_languages",
    "lambada_openai",
    "bigbench_novel_concepts",
    "winograd",
    "bigbench_cs_algorithms",
    "commonsense_qa",
    "bigbench_qa_wikidata",
    "hellaswag",
    "copa",
    "squad",
    "piqa",
];

/// One trained model of Gadre et al.'s sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GadreRun {
    /// Run name, e.g. `rpj-d=96_l=8_h=4-16.0`.
    pub name: String,
    /// Training set: `rpj`, `c4_original`, `rw_original`.
    pub dataset: String,
    /// Architecture name, e.g. `d=96_l=8_h=4` or `open_lm_1b`.
    pub model: String,
    /// Parameters N.
    pub params: f64,
    /// Training tokens D.
    pub tokens: f64,
    /// Token multiplier M = D/N (20 × the Chinchilla multiplier).
    pub multiplier: f64,
    /// Validation loss per evaluation set (e.g. `c4_val`).
    pub losses: BTreeMap<String, f64>,
    /// Top-1 error per downstream task (1 − accuracy), when the run has evaluations.
    pub errors: BTreeMap<String, f64>,
}

impl GadreRun {
    /// Mean top-1 error over the 17-task subset, when every task was evaluated.
    pub fn error_17(&self) -> Option<f64> {
        let values: Option<Vec<f64>> = GADRE_17_TASKS
            .iter()
            .map(|t| self.errors.get(*t).copied())
            .collect();
        values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
    }
}

#[derive(Deserialize)]
struct RunJson {
    name: String,
    dataset_name: String,
    hyperparameters: Hyperparameters,
    results: Vec<ResultJson>,
}

#[derive(Deserialize)]
struct Hyperparameters {
    model: String,
    params: f64,
    tokens: f64,
    chinchilla_multiplier: f64,
}

#[derive(Deserialize)]
struct ResultJson {
    loss: f64,
    val_data: Vec<String>,
}

#[derive(Deserialize)]
struct EvalJson {
    eval_metrics: EvalMetrics,
}

#[derive(Deserialize)]
struct EvalMetrics {
    icl: BTreeMap<String, f64>,
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, path: &str) -> Result<T, LawError> {
    serde_json::from_str(text).map_err(|e| LawError::Data {
        path: path.into(),
        detail: format!("not a run file of Gadre et al.'s exp_data: {e}"),
    })
}

fn read_text(path: &Path) -> Result<String, LawError> {
    std::fs::read_to_string(path).map_err(|e| LawError::Data {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

include!(concat!(env!("OUT_DIR"), "/gadre_files.rs"));

/// Where the shipped copy of Gadre et al.'s `exp_data` is said to come from in messages.
pub const SHIPPED_GADRE_DATA: &str = "gadre-scaling/exp_data (shipped with lmdensity)";

/// Every run of the copy of Gadre et al.'s `exp_data` built into the library (the same files
/// as `data/gadre-scaling/exp_data`), sorted by name: no source tree needed at run time.
pub fn shipped_gadre_runs() -> Result<Vec<GadreRun>, LawError> {
    let mut runs = Vec::with_capacity(SHIPPED_GADRE_FILES.len());
    for (stem, run, eval) in SHIPPED_GADRE_FILES {
        let path = format!("{SHIPPED_GADRE_DATA}/models/{stem}.json");
        let eval_path = format!("{SHIPPED_GADRE_DATA}/evals/evaluation_{stem}_heavy.json");
        let eval = eval.map(|text| (text, eval_path.as_str()));
        runs.push(parse_gadre_run(run, eval, &path)?);
    }
    Ok(runs)
}

/// One run from its run file's text and, where present, its evaluation file's text.
fn parse_gadre_run(
    run_text: &str,
    eval: Option<(&str, &str)>,
    path: &str,
) -> Result<GadreRun, LawError> {
    let run: RunJson = parse_json(run_text, path)?;
    let mut losses = BTreeMap::new();
    for result in &run.results {
        if let Some(set) = eval_set_name(&result.val_data) {
            losses.insert(set, result.loss);
        }
    }
    let errors = match eval {
        Some((text, eval_path)) => {
            let eval: EvalJson = parse_json(text, eval_path)?;
            eval.eval_metrics
                .icl
                .into_iter()
                .map(|(task, acc)| (task, 1.0 - acc))
                .collect()
        }
        None => BTreeMap::new(),
    };
    Ok(GadreRun {
        name: run.name,
        dataset: run.dataset_name,
        model: run
            .hyperparameters
            .model
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string(),
        params: run.hyperparameters.params,
        tokens: run.hyperparameters.tokens,
        multiplier: 20.0 * run.hyperparameters.chinchilla_multiplier,
        losses,
        errors,
    })
}

/// Name of the evaluation set a result was computed on: the directory holding its shard
/// (`…/c4_val/shard-0000000.tar` → `c4_val`), as the paper's code names them.
fn eval_set_name(val_data: &[String]) -> Option<String> {
    let first = val_data.first()?;
    let parts: Vec<&str> = first.split('/').collect();
    let name = if parts.len() >= 2 {
        parts[parts.len() - 2]
    } else {
        parts[0]
    };
    if name.contains("de-en") {
        let file = parts.last()?;
        return Some(file.split('.').next().unwrap_or(file).to_string());
    }
    Some(name.to_string())
}

/// Reads every run of Gadre et al.'s `exp_data` directory (`models/*.json`, with
/// `evals/evaluation_<name>_heavy.json` where present), sorted by name.
pub fn load_gadre_runs(exp_data: &Path) -> Result<Vec<GadreRun>, LawError> {
    let models_dir = exp_data.join("models");
    let entries = std::fs::read_dir(&models_dir).map_err(|e| LawError::Data {
        path: models_dir.display().to_string(),
        detail: format!("cannot list the run files: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut runs = Vec::with_capacity(files.len());
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let eval_file = exp_data
            .join("evals")
            .join(format!("evaluation_{stem}_heavy.json"));
        let eval_text = if eval_file.exists() {
            Some(read_text(&eval_file)?)
        } else {
            None
        };
        let path = file.display().to_string();
        let eval_path = eval_file.display().to_string();
        let eval = eval_text.as_deref().map(|text| (text, eval_path.as_str()));
        runs.push(parse_gadre_run(&read_text(&file)?, eval, &path)?);
    }
    if runs.is_empty() {
        return Err(LawError::Data {
            path: models_dir.display().to_string(),
            detail: "no run files (*.json) found".into(),
        });
    }
    Ok(runs)
}

/// Finds the run of `dataset` with architecture `model` and token multiplier `multiplier`.
pub fn find_gadre_run<'a>(
    runs: &'a [GadreRun],
    dataset: &str,
    model: &str,
    multiplier: f64,
) -> Result<&'a GadreRun, LawError> {
    runs.iter()
        .find(|r| {
            r.dataset == dataset && r.model == model && (r.multiplier - multiplier).abs() < 1e-9
        })
        .ok_or_else(|| {
            LawError::BadInput(format!(
                "no run of {model} on {dataset} at M = {multiplier} in the reference data"
            ))
        })
}

/// The zero-shot Pythia extract shipped with the crate (see `data/README.md`).
pub const PYTHIA_ZERO_SHOT_CSV: &str = include_str!("../data/pythia/pythia_zero_shot.csv");

/// The open-models table shipped with the crate (see `data/open-models/`).
pub const OPEN_MODELS_CSV: &str = include_str!("../data/open-models/open_models.csv");

/// The tasks whose zero-shot accuracy the default reference score averages: the ones both
/// Pythia's published evaluations and most open-model reports give 0-shot.
pub const COMMONSENSE_TASKS: [&str; 4] = ["arc_easy", "arc_challenge", "piqa", "winogrande"];

/// One published Pythia evaluation value.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct PythiaRow {
    /// `pythia-70m` … `pythia-12b`.
    pub model: String,
    /// `standard` or `deduped`.
    pub variant: String,
    /// All parameters.
    pub params_total: f64,
    /// Parameters minus embeddings.
    pub params_nonembedding: f64,
    /// Training step of the checkpoint.
    pub step: u64,
    /// Tokens seen at that step.
    pub tokens_seen: f64,
    /// Few-shot count.
    pub shots: u32,
    /// lm-eval task name.
    pub task: String,
    /// Metric name (`acc`, `acc_norm`, `ppl`).
    pub metric: String,
    /// Value.
    pub value: f64,
    /// Its standard error.
    pub stderr: Option<f64>,
    /// The JSON it was copied from.
    pub source_path: String,
}

fn csv_error(origin: &str, e: impl std::fmt::Display) -> LawError {
    LawError::Data {
        path: origin.to_string(),
        detail: e.to_string(),
    }
}

/// Parses the tidy Pythia CSV (`origin` names it in errors).
pub fn parse_pythia_csv(text: &str, origin: &str) -> Result<Vec<PythiaRow>, LawError> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| csv_error(origin, format!("row {}: {e}", i + 2))))
        .collect()
}

/// A reference model's mean score over some tasks at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FamilyScore {
    /// e.g. `pythia-410m@step143000`.
    pub label: String,
    /// Parameters N.
    pub params: f64,
    /// Tokens D seen.
    pub tokens: f64,
    /// Mean accuracy over the tasks.
    pub score: f64,
    /// Standard error of the mean (independent tasks).
    pub stderr: f64,
}

/// Mean zero-shot `acc` over `tasks` for every checkpoint of `variant` with at least
/// `min_tokens` tokens seen, where every task was evaluated.
pub fn pythia_family_scores(
    rows: &[PythiaRow],
    tasks: &[&str],
    variant: &str,
    min_tokens: f64,
    non_embedding: bool,
) -> Vec<FamilyScore> {
    let mut by_checkpoint: BTreeMap<(String, u64), Vec<&PythiaRow>> = BTreeMap::new();
    for row in rows.iter().filter(|r| {
        r.variant == variant
            && r.shots == 0
            && r.metric == "acc"
            && r.tokens_seen >= min_tokens
            && tasks.contains(&r.task.as_str())
    }) {
        by_checkpoint
            .entry((row.model.clone(), row.step))
            .or_default()
            .push(row);
    }
    let mut scores: Vec<FamilyScore> = by_checkpoint
        .into_iter()
        .filter(|(_, rows)| rows.len() == tasks.len())
        .map(|((model, step), rows)| {
            let k = rows.len() as f64;
            FamilyScore {
                label: format!("{model}@step{step}"),
                params: if non_embedding {
                    rows[0].params_nonembedding
                } else {
                    rows[0].params_total
                },
                tokens: rows[0].tokens_seen,
                score: rows.iter().map(|r| r.value).sum::<f64>() / k,
                stderr: rows
                    .iter()
                    .map(|r| r.stderr.unwrap_or(0.0).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    / k,
            }
        })
        .collect();
    scores.sort_by(|a, b| {
        a.params
            .total_cmp(&b.params)
            .then(a.tokens.total_cmp(&b.tokens))
    });
    scores
}

/// One row of the open-models table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenModel {
    /// Model name.
    pub name: String,
    /// Developer.
    pub organization: String,
    /// Release date, when known.
    pub released: Option<chrono::NaiveDate>,
    /// Total parameters.
    pub params: Option<f64>,
    /// Training tokens.
    pub training_tokens: Option<f64>,
    /// Published scores as fractions (0–1), by column name (`arc_easy`, `mmlu_5shot`, …).
    pub scores: BTreeMap<String, f64>,
    /// The evaluation protocol the scores follow.
    pub eval_protocol: String,
    /// Where the numbers come from.
    pub source: String,
}

impl OpenModel {
    /// Mean of `tasks`' scores when all are present.
    pub fn mean_score(&self, tasks: &[&str]) -> Option<f64> {
        let values: Option<Vec<f64>> = tasks.iter().map(|t| self.scores.get(*t).copied()).collect();
        values.map(|v| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Whether the row's protocol reports ARC-e/ARC-c/PIQA/WinoGrande as 0-shot accuracy, the
    /// protocol of Pythia's published results. Rows with 25-shot ARC, 5-shot or "partial score"
    /// WinoGrande, acc_norm, or unstated shot counts are excluded.
    pub fn commonsense_zero_shot(&self) -> bool {
        let p = self.eval_protocol.as_str();
        let zero_shot = p.contains("0-shot") || p.contains("num_fewshot=0");
        let excluded = [
            "25-shot",
            "10-shot",
            "WinoGrande 5-shot",
            "partial score",
            "not stated",
            "acc_norm (",
        ];
        zero_shot && !excluded.iter().any(|x| p.contains(x))
    }
}

/// Parses a count such as `13B`, `270M`, `1,000B`, `300B (299,892,736,000)`, `1.4T`.
pub fn parse_count(text: &str) -> Option<f64> {
    let head = text.split(['(', ' ']).next()?.replace(',', "");
    let head = head.trim();
    let (number, scale) = match head.chars().last()? {
        'K' | 'k' => (&head[..head.len() - 1], 1e3),
        'M' => (&head[..head.len() - 1], 1e6),
        'B' => (&head[..head.len() - 1], 1e9),
        'T' => (&head[..head.len() - 1], 1e12),
        _ => (head, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| v * scale)
        .filter(|v| *v > 0.0)
}

const SCORE_COLUMNS: [&str; 9] = [
    "mmlu_5shot",
    "arc_challenge",
    "hellaswag",
    "winogrande",
    "piqa",
    "arc_easy",
    "gsm8k",
    "humaneval",
    "bbh",
];

/// Parses the open-models table (`origin` names it in errors).
pub fn parse_open_models(text: &str, origin: &str) -> Result<Vec<OpenModel>, LawError> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(origin, e))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| csv_error(origin, format!("missing column {name:?}")))
    };
    let name_col = column("model")?;
    let org_col = column("organization")?;
    let date_col = column("release_date")?;
    let params_col = column("params_total")?;
    let tokens_col = column("training_tokens")?;
    let protocol_col = column("eval_protocol")?;
    let source_col = column("source")?;
    let score_cols: Vec<(&str, usize)> = SCORE_COLUMNS
        .iter()
        .map(|c| column(c).map(|i| (*c, i)))
        .collect::<Result<_, _>>()?;
    let mut models = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| csv_error(origin, format!("row {line}: {e}")))?;
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let released = match get(date_col) {
            "" => None,
            d => Some(
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|e| {
                    csv_error(origin, format!("row {line}: release_date {d:?}: {e}"))
                })?,
            ),
        };
        let mut scores = BTreeMap::new();
        for (name, c) in &score_cols {
            let cell = get(*c);
            if cell.is_empty() {
                continue;
            }
            let value: f64 = cell.parse().map_err(|_| {
                csv_error(
                    origin,
                    format!("row {line}: {name} = {cell:?} is not a number"),
                )
            })?;
            if !(0.0..=100.0).contains(&value) {
                return Err(csv_error(
                    origin,
                    format!("row {line}: {name} = {value} is not a percentage"),
                ));
            }
            scores.insert(name.to_string(), value / 100.0);
        }
        models.push(OpenModel {
            name: get(name_col).to_string(),
            organization: get(org_col).to_string(),
            released,
            params: parse_count(get(params_col)),
            training_tokens: parse_count(get(tokens_col)),
            scores,
            eval_protocol: get(protocol_col).to_string(),
            source: get(source_col).to_string(),
        });
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_as_written_in_the_table() {
        assert_eq!(parse_count("13B"), Some(13e9));
        assert_eq!(parse_count("270M"), Some(270e6));
        assert_eq!(parse_count("1,000B"), Some(1e12));
        assert_eq!(parse_count("300B (299,892,736,000)"), Some(300e9));
        assert_eq!(parse_count("3T (report; v1 of report said 2T)"), Some(3e12));
        assert_eq!(parse_count(""), None);
        assert_eq!(parse_count("unknown"), None);
    }

    #[test]
    fn shipped_tables_parse() {
        let pythia =
            parse_pythia_csv(PYTHIA_ZERO_SHOT_CSV, "pythia_zero_shot.csv").expect("pythia");
        assert_eq!(pythia.len(), 4752);
        let scores = pythia_family_scores(&pythia, &COMMONSENSE_TASKS, "standard", 1e9, false);
        // 8 sizes × checkpoints from step 1000 (2.1B tokens) on.
        assert!(scores.len() >= 8 * 15, "{}", scores.len());
        let open = parse_open_models(OPEN_MODELS_CSV, "open_models.csv").expect("open models");
        assert_eq!(open.len(), 99);
        let llama = open.iter().find(|m| m.name == "Llama-2-7B").expect("row");
        assert_eq!(llama.params, Some(7e9));
        assert!(llama.commonsense_zero_shot());
        let gemma3 = open
            .iter()
            .find(|m| m.name == "Gemma-3-1B-PT")
            .expect("row");
        assert!(!gemma3.commonsense_zero_shot());
    }

    #[test]
    fn malformed_tables_name_the_file_and_row() {
        let bad = "model,organization,release_date,params_total,params_nonembedding,training_tokens,architecture_notes,mmlu_5shot,arc_challenge,hellaswag,winogrande,piqa,arc_easy,gsm8k,humaneval,bbh,eval_protocol,source,notes\nX,Y,2024-13-01,1B,,,,,,,,,,,,,p,s,n\n";
        let err = parse_open_models(bad, "mine.csv")
            .expect_err("bad date")
            .to_string();
        assert!(err.contains("mine.csv") && err.contains("row 2"), "{err}");
        let err = parse_pythia_csv("model\nx\n", "p.csv")
            .expect_err("bad")
            .to_string();
        assert!(err.contains("p.csv"), "{err}");
    }
}
