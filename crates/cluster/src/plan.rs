//! A plan: the cells of a sweep, each one model (file, quantization, engine) and one unit of
//! work (a perplexity run, one task, one bench plan), with a content-addressed id. `plan.json`
//! is written once and read by every array task.

use std::path::{Path, PathBuf};

use lmdensity_bench::plan::SweepFlags;
use lmdensity_core::store::write_atomic;
use lmdensity_jobs::Workspace;
use lmdensity_tasks::TaskSet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_err, ClusterError, Result};

/// The plan file's format version.
pub const PLAN_VERSION: u32 = 1;

/// A sweep expanded into cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Format version ([`PLAN_VERSION`]).
    pub plan_version: u32,
    /// The sweep's name (names the Slurm job).
    pub name: String,
    /// sha256 over the cells' ids, first 12 hex digits: the same cells give the same id.
    pub plan_id: String,
    /// The spec it was made from.
    pub spec: PathBuf,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The cells, in index order (array task `i` runs `cells[i]`).
    pub cells: Vec<Cell>,
}

/// One unit a machine runs: a model and one piece of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Position in the plan (the array index).
    pub index: usize,
    /// sha256 of the cell's definition (model identity, quantization, engine, work), first 16
    /// hex digits: the name of its record in the results store.
    pub id: String,
    /// Readable label: `model[/quantization][@engine] work`.
    pub label: String,
    /// The model.
    pub model: CellModel,
    /// The work.
    pub work: Work,
}

/// Which model a cell measures, and on which engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellModel {
    /// Registry id (absent for a local file).
    pub registry_id: Option<String>,
    /// A local GGUF file or HF directory (absolute).
    pub path: Option<PathBuf>,
    /// What identifies the weights: the registry files' pinned sha256s, a local file's sha256,
    /// or a local directory's file names and sizes.
    pub identity: Vec<String>,
    /// A quantization the registry model is re-quantized to on the node (`Q4_K_M`, …).
    pub quantization: Option<String>,
    /// `llama.cpp` or `candle` (absent: the model's default engine).
    pub backend: Option<String>,
}

/// What a cell computes. Every field that changes the numbers is here, so it is in the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Work {
    /// A perplexity run.
    Perplexity {
        /// Corpus name or absolute path.
        corpus: String,
        /// Only the first N bytes.
        corpus_bytes: Option<usize>,
        /// `harness` or `llama.cpp`.
        mode: String,
        /// Harness window (absent: the job's default).
        max_length: Option<usize>,
        /// llama.cpp chunk length.
        n_ctx: usize,
    },
    /// One downstream task.
    Task {
        /// Task name.
        task: String,
        /// Few-shot examples.
        num_fewshot: usize,
        /// First N items.
        limit: Option<usize>,
        /// Few-shot sampler seed.
        seed: u64,
    },
    /// One bench plan (llama-bench's flags).
    Bench {
        /// Sizes.
        sizes: SweepFlags,
        /// Timed repetitions.
        repetitions: usize,
        /// Warm-up runs.
        warmup: usize,
    },
}

impl Work {
    /// A short label (`ppl ptb-test harness`, `task piqa 5-shot`, `bench pp512 tg128`).
    pub fn label(&self) -> String {
        match self {
            Work::Perplexity {
                corpus,
                mode,
                corpus_bytes,
                ..
            } => {
                let name = Path::new(corpus)
                    .file_name()
                    .map_or(corpus.clone(), |n| n.to_string_lossy().into_owned());
                match corpus_bytes {
                    Some(n) => format!("ppl {name}[..{n}] {mode}"),
                    None => format!("ppl {name} {mode}"),
                }
            }
            Work::Task {
                task,
                num_fewshot,
                limit,
                ..
            } => {
                let mut label = format!("task {task} {num_fewshot}-shot");
                if let Some(n) = limit {
                    label.push_str(&format!(" limit {n}"));
                }
                label
            }
            Work::Bench { sizes, .. } => format!("bench pp{} tg{}", sizes.n_prompt, sizes.n_gen),
        }
    }
}

impl Cell {
    /// A cell with its id and label computed from its definition.
    pub fn new(index: usize, model: CellModel, work: Work) -> Cell {
        let definition = serde_json::json!({ "model": model, "work": work });
        let id = hex::encode(Sha256::digest(definition.to_string().as_bytes()))[..16].to_string();
        let name = model
            .registry_id
            .clone()
            .or_else(|| {
                model
                    .path
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let mut label = name;
        if let Some(q) = &model.quantization {
            label.push_str(&format!("/{q}"));
        }
        if let Some(b) = &model.backend {
            label.push_str(&format!("@{b}"));
        }
        label.push(' ');
        label.push_str(&work.label());
        Cell {
            index,
            id,
            label,
            model,
            work,
        }
    }
}

impl Plan {
    /// A plan of `cells` (indices renumbered in order).
    pub fn new(name: String, spec: PathBuf, cells: Vec<Cell>) -> Plan {
        let mut hasher = Sha256::new();
        for cell in &cells {
            hasher.update(cell.id.as_bytes());
        }
        Plan {
            plan_version: PLAN_VERSION,
            name,
            plan_id: hex::encode(hasher.finalize())[..12].to_string(),
            spec,
            created_at: chrono::Utc::now().to_rfc3339(),
            cells,
        }
    }

    /// The cells as a table, and a line naming the plan and where it was written.
    pub fn summary(&self, written_to: &Path) -> String {
        let mut text = String::from("| # | id | cell |\n|---|---|---|\n");
        for c in &self.cells {
            text.push_str(&format!("| {} | {} | {} |\n", c.index, c.id, c.label));
        }
        text.push_str(&format!(
            "plan {} ({}): {} cells → {}\n",
            self.plan_id,
            self.name,
            self.cells.len(),
            written_to.display()
        ));
        text
    }

    /// Reads and checks `plan.json`: format, version, indices and ids.
    pub fn load(path: &Path) -> Result<Plan> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let bad = |what: String| ClusterError::File {
            path: path.to_path_buf(),
            what,
        };
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not an lmdensity plan: {e}")))?;
        if plan.plan_version != PLAN_VERSION {
            return Err(bad(format!(
                "plan_version {} is not {PLAN_VERSION}; make the plan again with `lmdensity plan`",
                plan.plan_version
            )));
        }
        for (i, cell) in plan.cells.iter().enumerate() {
            let expected = Cell::new(i, cell.model.clone(), cell.work.clone());
            if cell.index != i || cell.id != expected.id {
                return Err(bad(format!(
                    "cell {i} ({}): its index or id does not match its definition (edited by hand?); make the plan again",
                    cell.label
                )));
            }
        }
        Ok(plan)
    }

    /// Writes the plan atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| ClusterError::File {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
        Ok(write_atomic(path, &json)?)
    }

    /// The cell at `index`, or an error saying how many there are.
    pub fn cell(&self, index: usize, path: &Path) -> Result<&Cell> {
        self.cells.get(index).ok_or_else(|| ClusterError::File {
            path: path.to_path_buf(),
            what: format!(
                "no cell {index}: the plan has {} (indices 0–{})",
                self.cells.len(),
                self.cells.len().saturating_sub(1)
            ),
        })
    }

    /// Checks every cell against the registry and the task declarations of `ws`: an unknown
    /// model, task or missing file is refused naming the cell, before anything runs.
    pub fn check(&self, ws: &Workspace, path: &Path) -> Result<()> {
        let registry = ws.registry()?;
        let tasks = TaskSet::builtin();
        let bad = |cell: &Cell, what: String| ClusterError::File {
            path: path.to_path_buf(),
            what: format!("cell {} ({}): {what}", cell.index, cell.label),
        };
        for cell in &self.cells {
            if let Some(id) = &cell.model.registry_id {
                registry.get(id).map_err(|e| bad(cell, e.to_string()))?;
            }
            if let Some(p) = &cell.model.path {
                if !p.exists() {
                    return Err(bad(cell, format!("model {} does not exist", p.display())));
                }
            }
            if let Work::Task { task, .. } = &cell.work {
                tasks.select(task).map_err(|e| bad(cell, e.to_string()))?;
            }
        }
        Ok(())
    }
}
