//! The sweep spec (`sweep.toml`): models × engines × quantizations × (perplexity runs, task
//! groups, bench plans), expanded into a [`Plan`] of cells.
//!
//! ```toml
//! name = "density-2025"
//! models = ["smollm2-135m", "gemma-3-270m", "./my-checkpoint.gguf"]
//! backends = ["llama.cpp"]            # default: each model's own engine
//! quantizations = ["Q4_K_M", "Q8_0"]  # registry models, re-quantized on the node
//!
//! [[perplexity]]
//! corpus = "ptb-test"
//! corpus_bytes = 50000
//! mode = "harness"                    # harness, llama.cpp or both
//!
//! [[tasks]]
//! tasks = "commonsense"               # groups expand to one cell per task
//! num_fewshot = 0
//! limit = 100
//!
//! [[bench]]
//! n_prompt = "512"
//! n_gen = "128"
//! repetitions = 3
//! ```

use std::path::{Path, PathBuf};

use lmdensity_bench::plan::SweepFlags;
use lmdensity_jobs::{BenchJob, Modes, PerplexityJob, TaskJob, Workspace};
use lmdensity_tasks::TaskSet;
use serde::Deserialize;

use crate::error::{io_err, ClusterError, Result};
use crate::plan::{Cell, CellModel, Plan, Work};

/// A sweep spec as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Names the plan and the Slurm job (default: the spec file's stem).
    pub name: Option<String>,
    /// Registry ids, or paths (relative to the spec) of GGUF files or HF directories.
    pub models: Vec<String>,
    /// Engines to run each model on (default: the model's own).
    #[serde(default)]
    pub backends: Vec<String>,
    /// Quantizations each registry model is also measured at (the registry file always is).
    #[serde(default)]
    pub quantizations: Vec<String>,
    /// Perplexity runs.
    #[serde(default)]
    pub perplexity: Vec<PerplexitySpec>,
    /// Task groups.
    #[serde(default)]
    pub tasks: Vec<TasksSpec>,
    /// Bench plans.
    #[serde(default)]
    pub bench: Vec<BenchSpec>,
}

/// `[[perplexity]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerplexitySpec {
    /// Corpus name (ptb-test, …) or a text file relative to the spec.
    #[serde(default = "default_corpus")]
    pub corpus: String,
    /// Only the first N bytes (whole lines).
    pub corpus_bytes: Option<usize>,
    /// `harness`, `llama.cpp` or `both` (two cells).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Harness window.
    pub max_length: Option<usize>,
    /// llama.cpp chunk length.
    pub n_ctx: Option<usize>,
}

/// `[[tasks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSpec {
    /// Tasks and groups, comma-separated, as `eval --tasks`.
    pub tasks: String,
    /// Few-shot examples.
    #[serde(default)]
    pub num_fewshot: usize,
    /// First N items of each task.
    pub limit: Option<usize>,
    /// Few-shot sampler seed.
    pub seed: Option<u64>,
}

/// `[[bench]]`: llama-bench's sizes plus repetitions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSpec {
    /// Sizes (`n_prompt`, `n_gen`, `prompt_gen`, `n_depth`, `batch_size`, `ubatch_size`,
    /// `threads`, `parallel`; llama-bench's defaults where absent).
    #[serde(flatten)]
    pub sizes: SweepFlags,
    /// Timed repetitions.
    pub repetitions: Option<usize>,
    /// Warm-up runs.
    pub warmup: Option<usize>,
}

fn default_corpus() -> String {
    PerplexityJob::DEFAULT_CORPUS.into()
}

fn default_mode() -> String {
    "harness".into()
}

impl SweepSpec {
    /// Reads `path`; a TOML error names the file, line and key.
    pub fn load(path: &Path) -> Result<SweepSpec> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        toml::from_str(&text).map_err(|e| ClusterError::File {
            path: path.to_path_buf(),
            what: format!("not a valid sweep spec: {e}"),
        })
    }

    /// Expands the spec into cells, checking every model, engine, quantization, mode, task and
    /// size list against `ws` (the registry) and the built-in task declarations.
    pub fn plan(&self, ws: &Workspace, spec_path: &Path) -> Result<Plan> {
        let bad = |what: String| ClusterError::File {
            path: spec_path.to_path_buf(),
            what,
        };
        let base = spec_path.parent().unwrap_or(Path::new("."));
        if self.models.is_empty() {
            return Err(bad(
                "`models` is empty: name registry ids or model paths".into()
            ));
        }
        let works = self.works(base, &bad)?;
        if works.is_empty() {
            return Err(bad(
                "nothing to run: add [[perplexity]], [[tasks]] or [[bench]]".into(),
            ));
        }
        let backends: Vec<Option<String>> = if self.backends.is_empty() {
            vec![None]
        } else {
            self.backends
                .iter()
                .map(|b| match lmdensity_jobs::EngineChoice::parse(b) {
                    Some(_) => Ok(Some(b.replace("llamacpp", "llama.cpp"))),
                    None => Err(bad(format!(
                        "backends: unknown engine `{b}` (llama.cpp or candle)"
                    ))),
                })
                .collect::<Result<_>>()?
        };
        for q in &self.quantizations {
            lmdensity_jobs::sweep::parse_type(q).map_err(|e| bad(format!("quantizations: {e}")))?;
        }
        let registry = ws.registry()?;
        let mut cells = Vec::new();
        for model in &self.models {
            for variant in self.variants(model, base, &registry, &bad)? {
                for backend in &backends {
                    let model = CellModel {
                        backend: backend.clone(),
                        ..variant.clone()
                    };
                    for work in &works {
                        cells.push(Cell::new(cells.len(), model.clone(), work.clone()));
                    }
                }
            }
        }
        let name = self.name.clone().unwrap_or_else(|| {
            spec_path
                .file_stem()
                .map_or("sweep".into(), |s| s.to_string_lossy().into_owned())
        });
        let spec = std::path::absolute(spec_path).map_err(io_err(spec_path))?;
        Ok(Plan::new(name, spec, cells))
    }

    /// The model itself, then one variant per quantization (registry GGUF models only).
    fn variants(
        &self,
        model: &str,
        base: &Path,
        registry: &lmdensity_hub::Registry,
        bad: &dyn Fn(String) -> ClusterError,
    ) -> Result<Vec<CellModel>> {
        let local = base.join(model);
        if local.exists() {
            let path = std::path::absolute(&local).map_err(io_err(&local))?;
            if !self.quantizations.is_empty() {
                return Err(bad(format!(
                    "quantizations apply to registry models; `{model}` is a local path (quantize it with `lmdensity quantize` and list the files)"
                )));
            }
            return Ok(vec![CellModel {
                registry_id: None,
                identity: local_identity(&path)?,
                path: Some(path),
                quantization: None,
                backend: None,
            }]);
        }
        let entry = registry.get(model).map_err(|e| {
            bad(format!(
                "models: `{model}` is neither a file under {} nor a registry model ({e})",
                base.display()
            ))
        })?;
        let plain = CellModel {
            registry_id: Some(entry.id.clone()),
            path: None,
            identity: entry
                .files
                .iter()
                .map(|f| format!("{}:{}", f.name, f.sha256.as_deref().unwrap_or("unpinned")))
                .collect(),
            quantization: None,
            backend: None,
        };
        let mut out = vec![plain.clone()];
        for q in &self.quantizations {
            if entry.format != "gguf" {
                return Err(bad(format!(
                    "quantizations: `{model}` is {} weights, not a GGUF",
                    entry.format
                )));
            }
            out.push(CellModel {
                quantization: Some(q.to_uppercase()),
                ..plain.clone()
            });
        }
        Ok(out)
    }

    /// The units of work, checked: modes, corpora, tasks and bench sizes.
    fn works(&self, base: &Path, bad: &dyn Fn(String) -> ClusterError) -> Result<Vec<Work>> {
        let mut works = Vec::new();
        for p in &self.perplexity {
            let modes = match Modes::parse(&p.mode) {
                Some(Modes::Both) => vec!["harness", "llama.cpp"],
                Some(Modes::Harness) => vec!["harness"],
                Some(Modes::LlamaCpp) => vec!["llama.cpp"],
                None => {
                    return Err(bad(format!(
                        "[[perplexity]] mode `{}`: harness, llama.cpp or both",
                        p.mode
                    )))
                }
            };
            let corpus = corpus_of(&p.corpus, base)?;
            for mode in modes {
                works.push(Work::Perplexity {
                    corpus: corpus.clone(),
                    corpus_bytes: p.corpus_bytes,
                    mode: mode.into(),
                    max_length: p.max_length,
                    n_ctx: p.n_ctx.unwrap_or(PerplexityJob::DEFAULT_N_CTX),
                });
            }
        }
        let declared = TaskSet::builtin();
        for t in &self.tasks {
            let tasks = declared
                .select(&t.tasks)
                .map_err(|e| bad(format!("[[tasks]] tasks = \"{}\": {e}", t.tasks)))?;
            for task in tasks {
                works.push(Work::Task {
                    task: task.name.clone(),
                    num_fewshot: t.num_fewshot,
                    limit: t.limit,
                    seed: t.seed.unwrap_or(TaskJob::DEFAULT_SEED),
                });
            }
        }
        for b in &self.bench {
            b.sizes
                .sweep()
                .map_err(|e| bad(format!("[[bench]]: {e}")))?;
            works.push(Work::Bench {
                sizes: b.sizes.clone(),
                repetitions: b.repetitions.unwrap_or(BenchJob::DEFAULT_REPETITIONS),
                warmup: b.warmup.unwrap_or(1),
            });
        }
        Ok(works)
    }
}

/// A corpus name as it is, or a file relative to the spec made absolute (every node must see
/// the same path).
fn corpus_of(corpus: &str, base: &Path) -> Result<String> {
    let local = base.join(corpus);
    if local.is_file() {
        let path = std::path::absolute(&local).map_err(io_err(&local))?;
        return Ok(path.display().to_string());
    }
    Ok(corpus.to_string())
}

/// A local file's sha256, or a directory's file names and sizes.
fn local_identity(path: &PathBuf) -> Result<Vec<String>> {
    if path.is_file() {
        let sha =
            lmdensity_hub::fetch::hash_file(path, false).map_err(lmdensity_jobs::JobError::from)?;
        return Ok(vec![format!("sha256:{sha}")]);
    }
    let mut entries: Vec<String> = std::fs::read_dir(path)
        .map_err(io_err(path))?
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| format!("{}:{}", e.file_name().to_string_lossy(), meta.len()))
        })
        .collect();
    entries.sort();
    Ok(entries)
}
