//! ObsScaling's 148 base models (Ruan, Maddison & Hashimoto 2024, arXiv:2405.10938) scored with
//! one protocol, the Open LLM Leaderboard v1, joined with their release dates
//! (`release_dates.csv`), the corrections of known upstream metadata errors
//! (`corrections.csv`, each with its reason) and the rows that are not plain dense base models
//! (`row_flags.csv`: instruction-tuned, mixture of experts). See `data/obsscaling/README.md`.
//!
//! Nothing is dropped while reading: a row without a date, with a date that is not a day or a
//! month, or without some score is kept with what is missing, for the caller to report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::trend::ReleaseDate;
use crate::LawError;

/// The benchmark table, as published upstream (byte-identical).
pub const BENCHMARK_CSV: &str = include_str!("../data/obsscaling/base_llm_benchmark_eval.csv");
/// One release date per model, with its source and confidence.
pub const RELEASE_DATES_CSV: &str = include_str!("../data/obsscaling/release_dates.csv");
/// Corrections of upstream metadata, each with its reason.
pub const CORRECTIONS_CSV: &str = include_str!("../data/obsscaling/corrections.csv");
/// Rows that are not plain dense base models.
pub const ROW_FLAGS_CSV: &str = include_str!("../data/obsscaling/row_flags.csv");
/// How the shipped copy is named in messages.
pub const SHIPPED: &str = "obsscaling (shipped with lmdensity)";

/// One Open LLM Leaderboard v1 task of the table: its column, setting and chance level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// ARC-Challenge, 25-shot acc_norm.
    ArcChallenge,
    /// HellaSwag, 10-shot acc_norm.
    Hellaswag,
    /// WinoGrande, 5-shot acc (column `Winograd`).
    Winogrande,
    /// MMLU, 5-shot acc (57-subject mean).
    Mmlu,
    /// TruthfulQA-MC, 0-shot mc2.
    TruthfulQa,
    /// GSM8K, 5-shot exact match.
    Gsm8k,
}

impl Task {
    /// Every task, in the table's column order of interest.
    pub const ALL: [Task; 6] = [
        Task::ArcChallenge,
        Task::Hellaswag,
        Task::Winogrande,
        Task::Mmlu,
        Task::TruthfulQa,
        Task::Gsm8k,
    ];

    /// Its column in `base_llm_benchmark_eval.csv`.
    pub fn column(self) -> &'static str {
        match self {
            Task::ArcChallenge => "ARC-C",
            Task::Hellaswag => "HellaSwag",
            Task::Winogrande => "Winograd",
            Task::Mmlu => "MMLU",
            Task::TruthfulQa => "TruthfulQA",
            Task::Gsm8k => "GSM8K",
        }
    }

    /// The name `--score TASK=ACC` uses (lm-eval's task name).
    pub fn name(self) -> &'static str {
        match self {
            Task::ArcChallenge => "arc_challenge",
            Task::Hellaswag => "hellaswag",
            Task::Winogrande => "winogrande",
            Task::Mmlu => "mmlu",
            Task::TruthfulQa => "truthfulqa_mc2",
            Task::Gsm8k => "gsm8k",
        }
    }

    /// Expected score of uniform guessing: 1 / choices (ARC-Challenge is almost all
    /// 4-choice, WinoGrande 2; GSM8K is generative, 0).
    pub fn chance(self) -> f64 {
        match self {
            Task::ArcChallenge | Task::Hellaswag | Task::Mmlu => 0.25,
            Task::Winogrande => 0.5,
            Task::TruthfulQa => 0.0,
            Task::Gsm8k => 0.0,
        }
    }
}

/// The reference score on the leaderboard protocol: the mean of some tasks' scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderboardScore {
    /// ARC-Challenge, HellaSwag, WinoGrande: the three tasks above chance from ~100M
    /// parameters on (the default).
    ArcHellaswagWinogrande,
    /// ARC-Challenge and HellaSwag.
    ArcHellaswag,
    /// HellaSwag alone.
    Hellaswag,
    /// The default three plus MMLU (which sits at chance below ~7B in the reference families).
    WithMmlu,
}

impl LeaderboardScore {
    const ALL: [LeaderboardScore; 4] = [
        LeaderboardScore::ArcHellaswagWinogrande,
        LeaderboardScore::ArcHellaswag,
        LeaderboardScore::Hellaswag,
        LeaderboardScore::WithMmlu,
    ];

    /// The names [`LeaderboardScore::parse`] accepts.
    pub const NAMES: &'static [&'static str] =
        &["arc-hs-wg", "arc-hs", "hellaswag", "arc-hs-wg-mmlu"];

    /// The score named `name` (one of [`LeaderboardScore::NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[i])
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|s| *s == self).unwrap_or(0)]
    }

    /// The tasks averaged.
    pub fn tasks(self) -> &'static [Task] {
        match self {
            LeaderboardScore::ArcHellaswagWinogrande => {
                &[Task::ArcChallenge, Task::Hellaswag, Task::Winogrande]
            }
            LeaderboardScore::ArcHellaswag => &[Task::ArcChallenge, Task::Hellaswag],
            LeaderboardScore::Hellaswag => &[Task::Hellaswag],
            LeaderboardScore::WithMmlu => &[
                Task::ArcChallenge,
                Task::Hellaswag,
                Task::Winogrande,
                Task::Mmlu,
            ],
        }
    }

    /// Chance level of the mean: the mean of the tasks' chance levels.
    pub fn chance(self) -> f64 {
        let tasks = self.tasks();
        tasks.iter().map(|t| t.chance()).sum::<f64>() / tasks.len() as f64
    }
}

/// A one-recipe family of the table that can serve as the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FamilyName {
    /// Pythia (deduped), 70M–12B, 0.3T tokens each (the default).
    Pythia,
    /// OPT, 125M–66B, 0.18T tokens each.
    Opt,
    /// BLOOM, 560M–176B, 0.34–0.37T tokens.
    Bloom,
    /// XGLM, 564M–7.5B, 0.5T tokens each.
    Xglm,
    /// Cerebras-GPT, 111M–6.7B, 20 tokens per parameter.
    CerebrasGpt,
}

impl FamilyName {
    /// Every family, in the order of [`FamilyName::NAMES`].
    pub const ALL: [FamilyName; 5] = [
        FamilyName::Pythia,
        FamilyName::Opt,
        FamilyName::Bloom,
        FamilyName::Xglm,
        FamilyName::CerebrasGpt,
    ];

    /// The names [`FamilyName::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["pythia", "opt", "bloom", "xglm", "cerebras-gpt"];

    /// The family named `name` (one of [`FamilyName::NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[i])
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|s| *s == self).unwrap_or(0)]
    }

    /// Its `Model Family` value in the table.
    pub fn column_value(self) -> &'static str {
        match self {
            FamilyName::Pythia => "Pythia",
            FamilyName::Opt => "OPT",
            FamilyName::Bloom => "BLOOM",
            FamilyName::Xglm => "XGLM",
            FamilyName::CerebrasGpt => "Cerebras-GPT",
        }
    }
}

/// A correction of the upstream table, applied while reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// Model id.
    pub model: String,
    /// `params_b` (parameters, 1e9) or `tokens_t` (pretraining tokens, 1e12).
    pub field: String,
    /// The upstream value (checked: a correction of a value the table does not hold is an
    /// error, not a silent no-op).
    pub upstream: f64,
    /// The value used.
    pub corrected: f64,
    /// Why.
    pub reason: String,
}

/// One model of the table with everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardModel {
    /// Model id (`EleutherAI/pythia-1b-deduped`).
    pub name: String,
    /// `Model Family` column.
    pub family: String,
    /// Parameters (corrected where `corrections` says).
    pub params: Option<f64>,
    /// Pretraining tokens (corrected where `corrections` says).
    pub tokens: Option<f64>,
    /// Scores as fractions, per task present in the row.
    pub scores: BTreeMap<Task, f64>,
    /// The release date as written (may be empty).
    pub date_text: String,
    /// The parsed date, or why there is none.
    pub released: Result<ReleaseDate, String>,
    /// `high`, `medium`, `low`, or empty.
    pub date_confidence: String,
    /// Where the date comes from.
    pub date_source: String,
    /// `instruction-tuned`, `moe`.
    pub flags: Vec<String>,
    /// Corrections applied to this row.
    pub corrections: Vec<Correction>,
}

impl LeaderboardModel {
    /// Mean of `score`'s tasks, or the tasks the row lacks.
    pub fn score(&self, score: LeaderboardScore) -> Result<f64, Vec<Task>> {
        let tasks = score.tasks();
        let missing: Vec<Task> = tasks
            .iter()
            .copied()
            .filter(|t| !self.scores.contains_key(t))
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(tasks.iter().map(|t| self.scores[t]).sum::<f64>() / tasks.len() as f64)
    }

    /// Whether the row carries `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// The four CSV texts of the table, each with the name errors give it.
#[derive(Clone, Copy, Debug)]
pub struct TableTexts<'a> {
    /// `base_llm_benchmark_eval.csv` and its name.
    pub benchmarks: (&'a str, &'a str),
    /// `release_dates.csv` and its name.
    pub dates: (&'a str, &'a str),
    /// `corrections.csv` and its name.
    pub corrections: (&'a str, &'a str),
    /// `row_flags.csv` and its name.
    pub flags: (&'a str, &'a str),
}

impl TableTexts<'static> {
    /// The copy shipped with the crate.
    pub fn shipped() -> Self {
        TableTexts {
            benchmarks: (
                BENCHMARK_CSV,
                "obsscaling/base_llm_benchmark_eval.csv (shipped)",
            ),
            dates: (RELEASE_DATES_CSV, "obsscaling/release_dates.csv (shipped)"),
            corrections: (CORRECTIONS_CSV, "obsscaling/corrections.csv (shipped)"),
            flags: (ROW_FLAGS_CSV, "obsscaling/row_flags.csv (shipped)"),
        }
    }
}

fn data_error(origin: &str, detail: impl std::fmt::Display) -> LawError {
    LawError::Data {
        path: origin.to_string(),
        detail: detail.to_string(),
    }
}

/// A CSV row: its line number and its cells by header.
type Record = (usize, BTreeMap<String, String>);

/// Rows of a CSV as maps from header to cell, with their line numbers.
fn records((text, origin): (&str, &str), required: &[&str]) -> Result<Vec<Record>, LawError> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| data_error(origin, e))?.clone();
    for column in required {
        if !headers.iter().any(|h| h == *column) {
            return Err(data_error(origin, format!("missing column {column:?}")));
        }
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| data_error(origin, format!("row {line}: {e}")))?;
        let row = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_string(), v.trim().to_string()))
            .collect();
        rows.push((line, row));
    }
    Ok(rows)
}

fn number(origin: &str, line: usize, column: &str, cell: &str) -> Result<Option<f64>, LawError> {
    if cell.is_empty() {
        return Ok(None);
    }
    cell.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Some)
        .ok_or_else(|| {
            data_error(
                origin,
                format!("row {line}: {column} = {cell:?} is not a number"),
            )
        })
}

/// Parses the corrections table.
pub fn parse_corrections(text: (&str, &str)) -> Result<Vec<Correction>, LawError> {
    let origin = text.1;
    let mut out = Vec::new();
    for (line, row) in records(text, &["model", "field", "upstream", "corrected", "reason"])? {
        let field = row["field"].clone();
        if field != "params_b" && field != "tokens_t" {
            return Err(data_error(
                origin,
                format!("row {line}: field {field:?} is not params_b or tokens_t"),
            ));
        }
        let value = |c: &str| {
            number(origin, line, c, &row[c])?
                .ok_or_else(|| data_error(origin, format!("row {line}: {c} is empty")))
        };
        if row["reason"].is_empty() {
            return Err(data_error(
                origin,
                format!("row {line}: a correction needs a reason"),
            ));
        }
        out.push(Correction {
            model: row["model"].clone(),
            field,
            upstream: value("upstream")?,
            corrected: value("corrected")?,
            reason: row["reason"].clone(),
        });
    }
    Ok(out)
}

/// Parses the four tables and joins them by model id. Errors name the file and row: a score
/// outside 0–1, a number that is not one, a date or flag row naming a model the benchmark
/// table lacks, a correction whose upstream value is not the table's. Missing dates, dates
/// that are not a day or a month, and missing scores are kept in the row for the caller to
/// report.
pub fn parse_table(texts: TableTexts<'_>) -> Result<Vec<LeaderboardModel>, LawError> {
    let origin = texts.benchmarks.1;
    let mut models: Vec<LeaderboardModel> = Vec::new();
    let mut required = vec![
        "Model",
        "Model Family",
        "Model Size (B)",
        "Pretraining Data Size (T)",
    ];
    required.extend(Task::ALL.iter().map(|t| t.column()));
    for (line, row) in records(texts.benchmarks, &required)? {
        let mut scores = BTreeMap::new();
        for task in Task::ALL {
            if let Some(v) = number(origin, line, task.column(), &row[task.column()])? {
                if !(0.0..=1.0).contains(&v) {
                    return Err(data_error(
                        origin,
                        format!(
                            "row {line}: {} = {v} is not a fraction between 0 and 1",
                            task.column()
                        ),
                    ));
                }
                scores.insert(task, v);
            }
        }
        let name = row["Model"].clone();
        if name.is_empty() || models.iter().any(|m| m.name == name) {
            return Err(data_error(
                origin,
                format!("row {line}: model id {name:?} is empty or repeated"),
            ));
        }
        models.push(LeaderboardModel {
            name,
            family: row["Model Family"].clone(),
            params: number(origin, line, "Model Size (B)", &row["Model Size (B)"])?
                .map(|v| v * 1e9),
            tokens: number(
                origin,
                line,
                "Pretraining Data Size (T)",
                &row["Pretraining Data Size (T)"],
            )?
            .map(|v| v * 1e12),
            scores,
            date_text: String::new(),
            released: Err("no row in the release-date table".into()),
            date_confidence: String::new(),
            date_source: String::new(),
            flags: Vec::new(),
            corrections: Vec::new(),
        });
    }
    join_dates(&mut models, texts.dates)?;
    join_flags(&mut models, texts.flags)?;
    apply_corrections(
        &mut models,
        &parse_corrections(texts.corrections)?,
        texts.corrections.1,
    )?;
    Ok(models)
}

fn find<'a>(
    models: &'a mut [LeaderboardModel],
    name: &str,
    origin: &str,
    line: usize,
) -> Result<&'a mut LeaderboardModel, LawError> {
    models.iter_mut().find(|m| m.name == name).ok_or_else(|| {
        data_error(
            origin,
            format!("row {line}: model {name:?} is not in the benchmark table"),
        )
    })
}

fn join_dates(models: &mut [LeaderboardModel], text: (&str, &str)) -> Result<(), LawError> {
    let origin = text.1;
    for (line, row) in records(text, &["model", "release_date", "source", "confidence"])? {
        let model = find(models, &row["model"], origin, line)?;
        model.date_text = row["release_date"].clone();
        model.released = ReleaseDate::parse(&model.date_text);
        model.date_confidence = row["confidence"].clone();
        model.date_source = row["source"].clone();
    }
    Ok(())
}

fn join_flags(models: &mut [LeaderboardModel], text: (&str, &str)) -> Result<(), LawError> {
    let origin = text.1;
    for (line, row) in records(text, &["model", "flag", "reason"])? {
        let flag = row["flag"].clone();
        if flag != "instruction-tuned" && flag != "moe" {
            return Err(data_error(
                origin,
                format!("row {line}: flag {flag:?} is not instruction-tuned or moe"),
            ));
        }
        find(models, &row["model"], origin, line)?.flags.push(flag);
    }
    Ok(())
}

fn apply_corrections(
    models: &mut [LeaderboardModel],
    corrections: &[Correction],
    origin: &str,
) -> Result<(), LawError> {
    for (i, c) in corrections.iter().enumerate() {
        let line = i + 2;
        let model = find(models, &c.model, origin, line)?;
        let (slot, scale) = match c.field.as_str() {
            "params_b" => (&mut model.params, 1e9),
            _ => (&mut model.tokens, 1e12),
        };
        match *slot {
            Some(v) if (v / scale - c.upstream).abs() <= 1e-9 * c.upstream.abs().max(1.0) => {
                *slot = Some(c.corrected * scale);
            }
            other => {
                return Err(data_error(
                    origin,
                    format!(
                        "row {line}: {} {} is {:?} in the benchmark table, not the {} this correction expects",
                        c.model,
                        c.field,
                        other.map(|v| v / scale),
                        c.upstream
                    ),
                ))
            }
        }
        model.corrections.push(c.clone());
    }
    Ok(())
}

/// The shipped table, parsed.
pub fn shipped_table() -> Result<Vec<LeaderboardModel>, LawError> {
    parse_table(TableTexts::shipped())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trend::DatePrecision;

    /// Data rows of a CSV text (its records, header excluded), counted by the csv reader.
    fn data_rows(text: &str) -> usize {
        csv::Reader::from_reader(text.as_bytes()).records().count()
    }

    #[test]
    fn shipped_table_joins_every_row_and_applies_every_correction() {
        let models = shipped_table().expect("parses");
        assert_eq!(models.len(), data_rows(BENCHMARK_CSV));
        assert_eq!(data_rows(RELEASE_DATES_CSV), models.len());
        let corrected: usize = models.iter().map(|m| m.corrections.len()).sum();
        assert_eq!(corrected, data_rows(CORRECTIONS_CSV));
        let flagged: usize = models.iter().map(|m| m.flags.len()).sum();
        assert_eq!(flagged, data_rows(ROW_FLAGS_CSV));
        // Every blank or month-only date in the CSV is kept, visible as such.
        let blank = RELEASE_DATES_CSV
            .lines()
            .filter(|l| l.contains(",,"))
            .count();
        assert_eq!(models.iter().filter(|m| m.released.is_err()).count(), blank);
        let months = models.iter().filter(|m| m.date_text.len() == 7).count();
        let month_precision = models
            .iter()
            .filter(|m| matches!(&m.released, Ok(d) if d.precision == DatePrecision::Month))
            .count();
        assert_eq!(months, month_precision);
        let btlm = models
            .iter()
            .find(|m| m.name == "cerebras/btlm-3b-8k-base")
            .expect("btlm");
        assert_eq!(btlm.tokens, Some(0.627e12));
        for family in FamilyName::ALL {
            let n = models
                .iter()
                .filter(|m| m.family == family.column_value())
                .count();
            assert!(n >= 4, "{}: {n} rows", family.name());
        }
    }

    const HEADER: &str = "Model,Model Family,Model Size (B),Pretraining Data Size (T),FLOPs (1E21),MMLU,ARC-C,HellaSwag,Winograd,TruthfulQA,GSM8K,XWinograd,HumanEval\n";
    const DATES: &str = "model,release_date,source,confidence\n";

    fn texts<'a>(bench: &'a str, dates: &'a str, corrections: &'a str) -> TableTexts<'a> {
        TableTexts {
            benchmarks: (bench, "b.csv"),
            dates: (dates, "d.csv"),
            corrections: (corrections, "c.csv"),
            flags: ("model,flag,reason\n", "f.csv"),
        }
    }

    #[test]
    fn bad_rows_are_kept_with_the_problem_or_refused_naming_file_and_row() {
        let bench = format!(
            "{HEADER}a,F,1.0,0.3,,0.25,0.3,0.5,0.55,0.4,0.01,,\nb,F,2.0,0.3,,0.25,,0.5,0.55,0.4,0.01,,\nc,F,3.0,0.3,,0.25,0.3,0.5,0.55,0.4,0.01,,\nd,F,3.0,0.3,,0.25,0.3,0.5,0.55,0.4,0.01,,\n"
        );
        let dates = format!("{DATES}a,,none found,\nb,2024-11,card,medium\nc,2024,memory,low\n");
        let models = parse_table(texts(
            &bench,
            &dates,
            "model,field,upstream,corrected,reason\n",
        ))
        .expect("kept");
        let get = |n: &str| models.iter().find(|m| m.name == n).expect("row");
        assert_eq!(get("a").released, Err("no release date".to_string()));
        let b = get("b");
        assert_eq!(
            b.released.clone().map(|d| d.precision),
            Ok(DatePrecision::Month)
        );
        assert_eq!(
            b.score(LeaderboardScore::ArcHellaswagWinogrande),
            Err(vec![Task::ArcChallenge])
        );
        assert!(get("c")
            .released
            .as_ref()
            .expect_err("year")
            .contains("only the year"));
        assert!(get("d")
            .released
            .as_ref()
            .expect_err("no row")
            .contains("no row"));

        let bad = format!("{HEADER}a,F,1.0,0.3,,25.0,0.3,0.5,0.55,0.4,0.01,,\n");
        let err = parse_table(texts(
            &bad,
            DATES,
            "model,field,upstream,corrected,reason\n",
        ))
        .expect_err("percent")
        .to_string();
        assert!(
            err.contains("b.csv") && err.contains("row 2") && err.contains("MMLU"),
            "{err}"
        );
        let wrong = "model,field,upstream,corrected,reason\na,params_b,7.0,1.0,why\n";
        let err = parse_table(texts(&bench, DATES, wrong))
            .expect_err("stale")
            .to_string();
        assert!(err.contains("c.csv") && err.contains("row 2"), "{err}");
        let stray = format!("{DATES}z,2024-01-01,x,high\n");
        let err = parse_table(texts(
            &bench,
            &stray,
            "model,field,upstream,corrected,reason\n",
        ))
        .expect_err("stray")
        .to_string();
        assert!(err.contains("d.csv") && err.contains("\"z\""), "{err}");
    }

    #[test]
    fn names_parse_to_their_values() {
        for name in FamilyName::NAMES {
            assert_eq!(FamilyName::parse(name).map(FamilyName::name), Some(*name));
        }
        for name in LeaderboardScore::NAMES {
            assert_eq!(
                LeaderboardScore::parse(name).map(LeaderboardScore::name),
                Some(*name)
            );
        }
        let chance = LeaderboardScore::ArcHellaswagWinogrande.chance();
        assert!((chance - (0.25 + 0.25 + 0.5) / 3.0).abs() < 1e-12);
    }
}
