//! `quantize` and the quantization sweep: llama.cpp's quantizer, and the sweep that measures
//! what each variant costs against an F32 base, composed of perplexity, task and bench jobs.
//!
//! No original full-precision weights exist on these machines: the base is the registry GGUF
//! dequantized to F32 (`F32, dequantized from Q4_1`), the variants are re-quantized from it,
//! and every label says so. A variant's KL divergence measures what re-quantization loses
//! relative to that base, not to the model as trained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lmdensity_bench::plan::logical_cpus;
use lmdensity_bench::BenchRecord;
use lmdensity_core::schema::{kld_order, Estimate, Speed, SweepRow, SweepTable};
use lmdensity_core::store::write_atomic;
use lmdensity_core::{progress, RunMetrics, SCHEMA_VERSION};
use lmdensity_eval::BaseReader;
use lmdensity_hub::gguf;
use lmdensity_llamacpp::QuantType;

use crate::bail;
use crate::bench::BenchJob;
use crate::convert::dequantize_gguf;
use crate::error::{Context, Result};
use crate::model::{resolve_gguf, ModelSpec};
use crate::perplexity::{KldSpec, Modes, PerplexityJob};
use crate::run::sanitize;
use crate::tasks::TaskJob;
use crate::workspace::Workspace;

/// Where variants of the registry model `model` are made: the cache's `quantized/<model>/`.
pub fn variants_dir(ws: &Workspace, model: &str) -> PathBuf {
    ws.fetcher().cache_dir().join("quantized").join(model)
}

/// The registry model `model` quantized to `kind` (dequantized to F32 first), made once in
/// [`variants_dir`]: what a plan's quantization cell measures.
pub fn quantized_variant(ws: &Workspace, model: &str, kind: QuantType) -> Result<PathBuf> {
    let (resolved, _) = resolve_gguf(ws, &ModelSpec::registry(model), false)?;
    let work = variants_dir(ws, model);
    std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
    ensure_variant(ws, &work, model, resolved.weights(), kind)
}

/// `work/<model>-F32.gguf`, dequantized from `source` unless there.
fn ensure_f32(work: &Path, model: &str, source: &Path) -> Result<PathBuf> {
    let f32_path = work.join(format!("{model}-F32.gguf"));
    // Array tasks on one machine share the cache: one makes the file, the others wait for it.
    let _lock = lock_dir(work)?;
    if !f32_path.exists() {
        progress::say(format!(
            "dequantizing {} → {}",
            source.display(),
            f32_path.display()
        ));
        dequantize_gguf(source, &f32_path)?;
    }
    Ok(f32_path)
}

/// `work/<model>-<kind>.gguf`, quantized from the F32 base unless there.
fn ensure_variant(
    ws: &Workspace,
    work: &Path,
    model: &str,
    source: &Path,
    kind: QuantType,
) -> Result<PathBuf> {
    let f32_path = ensure_f32(work, model, source)?;
    let path = work.join(format!("{model}-{}.gguf", kind.name()));
    let _lock = lock_dir(work)?;
    if !path.exists() {
        progress::say(format!("quantizing → {}", path.display()));
        let threads = logical_cpus() as u32;
        lmdensity_llamacpp::quantize(&f32_path, &path, kind, threads, ws.verbose)?;
    }
    Ok(path)
}

/// An exclusive lock on `dir/.lock`, held until the file is dropped (waits for other holders).
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let file = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
    file.lock()
        .with_context(|| format!("{}: lock", path.display()))?;
    Ok(file)
}

/// Parses a quantization type name (`Q4_K_M`, case-insensitive), listing the known ones when
/// it is not one.
pub fn parse_type(name: &str) -> Result<QuantType> {
    QuantType::parse(name.trim()).with_context(|| {
        let known: Vec<&str> = QuantType::ALL.iter().map(|q| q.name()).collect();
        format!(
            "unknown quantization type `{name}`; known: {}",
            known.join(", ")
        )
    })
}

/// Bits per parameter of a GGUF's tensors (data bytes × 8 ÷ elements, every tensor counted).
pub fn bits_per_weight(path: &Path) -> Result<f64> {
    let header = gguf::read(path)?;
    let mut bytes = 0u64;
    for t in &header.tensors {
        let (_, block, block_bytes) = gguf::type_traits(t.ggml_type).with_context(|| {
            format!("{}: tensor {} has an unknown type", path.display(), t.name)
        })?;
        bytes += t.n_elements().div_ceil(block) * block_bytes;
    }
    Ok(bytes as f64 * 8.0 / header.n_params().max(1) as f64)
}

/// Quantizes an F32/F16/BF16 GGUF with llama.cpp's quantizer.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    /// The input GGUF.
    pub input: PathBuf,
    /// The output GGUF (must not exist).
    pub out: PathBuf,
    /// Target type.
    pub kind: QuantType,
    /// Threads (default: all logical CPUs).
    pub threads: Option<u32>,
}

/// What `quantize` wrote.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The file's quantization label.
    pub label: String,
    /// Its size.
    pub bytes: u64,
    /// Tensor data bits per parameter.
    pub bits_per_weight: f64,
    /// Seconds it took.
    pub seconds: f64,
}

impl QuantizeJob {
    /// Runs the quantizer.
    pub fn run(&self, ws: &Workspace) -> Result<Quantized> {
        if self.out.exists() {
            bail!(
                "{}: already exists; choose a new file name",
                self.out.display()
            );
        }
        let threads = self.threads.unwrap_or(logical_cpus() as u32);
        let started = std::time::Instant::now();
        lmdensity_llamacpp::quantize(&self.input, &self.out, self.kind, threads, ws.verbose)?;
        Ok(Quantized {
            label: gguf::read(&self.out)?.quantization(),
            bytes: std::fs::metadata(&self.out)
                .with_context(|| self.out.display().to_string())?
                .len(),
            bits_per_weight: bits_per_weight(&self.out)?,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The quantization sweep of one registry model.
#[derive(Debug, Clone)]
pub struct SweepJob {
    /// Registry model id: its GGUF is dequantized to F32 (the base) and re-quantized.
    pub model: String,
    /// Types to make and measure.
    pub types: Vec<QuantType>,
    /// Perplexity and KL-divergence corpus.
    pub corpus: String,
    /// Only the first N bytes of the corpus (whole lines).
    pub corpus_bytes: Option<usize>,
    /// Harness-mode window (default: min(model context, 2048)).
    pub max_length: Option<usize>,
    /// Tasks to score each variant on (`none`: no tasks).
    pub tasks: String,
    /// Items per task.
    pub task_limit: Option<usize>,
    /// Timed repetitions of the pp512 and tg128 speed tests.
    pub bench_repetitions: usize,
    /// Where the variants are made (default: the model cache's `quantized/<model>/`).
    pub work_dir: Option<PathBuf>,
    /// Where `sweep.json` and `sweep.md` go (default: `<results-dir>/sweep-quant/<model>`).
    pub out: Option<PathBuf>,
    /// Measure every variant again instead of keeping the rows already in `sweep.json`.
    pub fresh: bool,
}

/// One weights file of the sweep: its name, role and path.
struct SweepFile {
    variant: String,
    role: &'static str,
    path: PathBuf,
}

impl SweepJob {
    /// Makes the base and the variants (once), measures each file not already in the stored
    /// table, and writes `sweep.json` + `sweep.md` after each.
    pub fn run(&self, ws: &Workspace) -> Result<SweepTable> {
        if self.bench_repetitions == 0 {
            bail!("--bench-repetitions must be at least 1");
        }
        let (resolved, _) = resolve_gguf(ws, &ModelSpec::registry(&self.model), false)?;
        let source = resolved.weights().to_path_buf();
        let source_quant = gguf::read(&source)?.quantization();
        let work = match &self.work_dir {
            Some(dir) => dir.clone(),
            None => variants_dir(ws, &self.model),
        };
        std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
        let files = self.make_files(ws, &work, &source, &source_quant)?;
        let out_dir = self
            .out
            .clone()
            .unwrap_or_else(|| ws.results_dir.join("sweep-quant").join(&self.model));
        std::fs::create_dir_all(&out_dir).with_context(|| out_dir.display().to_string())?;
        let mut table = self.empty_table(&source_quant);
        let kept = self.kept_rows(&out_dir.join("sweep.json"), &table)?;
        let base_file = work.join(format!(
            "{}-F32-{}-{}.kld",
            self.model,
            sanitize(&table.corpus),
            self.max_length.map_or("default".into(), |l| l.to_string())
        ));
        for file in &files {
            let path = file.path.display().to_string();
            if let Some(row) = kept
                .iter()
                .find(|r| r.variant == file.variant && r.file == path)
            {
                progress::say(format!(
                    "{}: kept from {}",
                    file.variant,
                    out_dir.join("sweep.json").display()
                ));
                table.rows.push(row.clone());
                continue;
            }
            progress::say(format!("── {}: {path}", file.variant));
            table.rows.push(self.measure(ws, file, &base_file)?);
            save(&table, &out_dir)?;
        }
        table.kld_order = kld_order(&table.rows);
        save(&table, &out_dir)?;
        Ok(table)
    }

    /// The F32 base, the registry file, and each variant, made where missing.
    fn make_files(
        &self,
        ws: &Workspace,
        work: &Path,
        source: &Path,
        source_quant: &str,
    ) -> Result<Vec<SweepFile>> {
        let mut files = vec![
            SweepFile {
                variant: "F32".into(),
                role: "base",
                path: ensure_f32(work, &self.model, source)?,
            },
            SweepFile {
                variant: format!("{source_quant} (source)"),
                role: "source",
                path: source.to_path_buf(),
            },
        ];
        for t in &self.types {
            files.push(SweepFile {
                variant: t.name().into(),
                role: "variant",
                path: ensure_variant(ws, work, &self.model, source, *t)?,
            });
        }
        Ok(files)
    }

    fn empty_table(&self, source_quant: &str) -> SweepTable {
        SweepTable {
            schema_version: SCHEMA_VERSION,
            model: self.model.clone(),
            source_quantization: source_quant.into(),
            corpus: match self.corpus_bytes {
                Some(n) => format!("{} (first {n} bytes, whole lines)", self.corpus),
                None => self.corpus.clone(),
            },
            max_length: self.max_length,
            tasks: self.tasks.clone(),
            task_limit: self.task_limit,
            bench_repetitions: self.bench_repetitions,
            machine: lmdensity_core::hardware::Hardware::detect().cpu_model,
            git_revision: crate::run::GIT_REVISION.into(),
            rows: Vec::new(),
            kld_order: None,
        }
    }

    /// The rows of a stored table made with the same settings (none with `fresh`).
    fn kept_rows(&self, json_path: &Path, table: &SweepTable) -> Result<Vec<SweepRow>> {
        let Ok(text) = std::fs::read_to_string(json_path) else {
            return Ok(Vec::new());
        };
        if self.fresh {
            return Ok(Vec::new());
        }
        let old: SweepTable = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a sweep table; use --fresh", json_path.display()))?;
        if old.same_settings(table) {
            return Ok(old.rows);
        }
        progress::say(format!(
            "{}: made with other settings; measuring again",
            json_path.display()
        ));
        Ok(Vec::new())
    }

    /// Measures one file: perplexity with KLD against the base (the base run stores the
    /// distributions once), the tasks, and the speed tests.
    fn measure(&self, ws: &Workspace, file: &SweepFile, base_file: &Path) -> Result<SweepRow> {
        let base_partial = base_file.with_extension("kld.partial");
        let base_ready = BaseReader::open(base_file).is_ok();
        let saving = file.role == "base" && !base_ready;
        let ppl = PerplexityJob {
            corpus: self.corpus.clone(),
            corpus_bytes: self.corpus_bytes,
            modes: Modes::Harness,
            max_length: self.max_length,
            resume: !saving,
            kld: KldSpec {
                save_base: saving.then(|| base_partial.clone()),
                compare_with: (file.role != "base").then(|| base_file.to_path_buf()),
                top_k: lmdensity_eval::kld::DEFAULT_TOP_K,
            },
            ..PerplexityJob::new(ModelSpec::file(&file.path))
        }
        .run(ws)?;
        if saving {
            std::fs::rename(&base_partial, base_file)
                .with_context(|| base_file.display().to_string())?;
            progress::say(format!(
                "base distributions stored in {}",
                base_file.display()
            ));
        }
        let ppl = ppl.into_iter().next().context("no perplexity run")?;
        let metrics = ppl
            .metrics
            .clone()
            .context("perplexity run without metrics")?;
        let mut runs = vec![ppl.dir.display().to_string()];
        let tasks = self.score_tasks(ws, &file.path, &mut runs)?;
        let records = BenchJob {
            repetitions: self.bench_repetitions,
            roofline: false,
            ..BenchJob::new(ModelSpec::file(&file.path))
        }
        .run(ws)?;
        row(file, &metrics, tasks, &records, runs)
    }

    /// Task accuracies of one file (none when `tasks` is `none`); their runs go into `runs`.
    fn score_tasks(
        &self,
        ws: &Workspace,
        path: &Path,
        runs: &mut Vec<String>,
    ) -> Result<BTreeMap<String, Estimate>> {
        let mut tasks = BTreeMap::new();
        if self.tasks == "none" {
            return Ok(tasks);
        }
        let outcome = TaskJob {
            limit: self.task_limit,
            resume: true,
            ..TaskJob::new(ModelSpec::file(path), self.tasks.clone())
        }
        .run(ws)?;
        for run in outcome.runs {
            let task = run
                .manifest
                .settings
                .get("task")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string();
            if let Some(acc) = run
                .metrics
                .as_ref()
                .and_then(|m| estimate(m, &format!("{task}/acc")))
            {
                tasks.insert(task, acc);
            }
            runs.push(run.dir.display().to_string());
        }
        Ok(tasks)
    }
}

fn estimate(metrics: &RunMetrics, name: &str) -> Option<Estimate> {
    metrics.get(name).map(|m| Estimate {
        value: m.value,
        stderr: m.stderr,
    })
}

/// One row of the table from a file's measurements.
fn row(
    file: &SweepFile,
    metrics: &RunMetrics,
    tasks: BTreeMap<String, Estimate>,
    records: &[BenchRecord],
    runs: Vec<String>,
) -> Result<SweepRow> {
    let speed = |test: &str| {
        records.iter().find(|r| r.test == test).map(|r| Speed {
            mean_ts: r.avg_ts,
            sd_ts: r.stddev_ts,
        })
    };
    let path = &file.path;
    Ok(SweepRow {
        variant: file.variant.clone(),
        role: file.role.into(),
        quantization: gguf::read(path)?.quantization(),
        file: path.display().to_string(),
        file_bytes: std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .len(),
        bits_per_weight: bits_per_weight(path)?,
        bits_per_byte: estimate(metrics, "bits_per_byte").context("no bits_per_byte")?,
        kld_mean: estimate(metrics, "kld_mean"),
        kld_p99: metrics.get("kld_p99").map(|m| m.value),
        kld_max: metrics.get("kld_max").map(|m| m.value),
        same_top_rate: estimate(metrics, "same_top_rate"),
        delta_p_rms: metrics.get("delta_p_rms").map(|m| m.value),
        ln_ppl_ratio: estimate(metrics, "ln_ppl_ratio"),
        tasks,
        pp512: speed("pp512"),
        tg128: speed("tg128"),
        peak_rss_bytes: records.iter().map(|r| r.peak_rss_bytes).max(),
        runs,
    })
}

/// The sweep's table as Markdown.
pub fn markdown(table: &SweepTable) -> String {
    let task_names: Vec<String> = table
        .rows
        .iter()
        .flat_map(|r| r.tasks.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let base_bpb = table
        .rows
        .iter()
        .find(|r| r.role == "base")
        .map(|r| r.bits_per_byte.value);
    let mut out = String::new();
    let mut header = vec![
        "variant",
        "bits/weight",
        "size (MB)",
        "bits/byte",
        "Δ bits/byte",
        "KLD mean (nats)",
        "KLD p99",
        "same top",
        "RMS Δp",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    header.extend(task_names.iter().map(|t| format!("{t} acc")));
    header.extend(["pp512 t/s", "tg128 t/s", "peak RSS (MB)"].map(String::from));
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    let pm = |e: &Estimate, digits: usize| match e.stderr {
        Some(se) => format!("{:.*} ± {:.*}", digits, e.value, digits, se),
        None => format!("{:.*}", digits, e.value),
    };
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "—".into());
    for r in &table.rows {
        let mut cells = vec![
            r.variant.clone(),
            format!("{:.2}", r.bits_per_weight),
            format!("{:.1}", r.file_bytes as f64 / 1e6),
            pm(&r.bits_per_byte, 4),
            or_dash(base_bpb.map(|b| format!("{:+.4}", r.bits_per_byte.value - b))),
            or_dash(r.kld_mean.as_ref().map(|k| pm(k, 5))),
            or_dash(r.kld_p99.map(|v| format!("{v:.4}"))),
            or_dash(r.same_top_rate.map(|s| format!("{:.2}%", s.value * 100.0))),
            or_dash(r.delta_p_rms.map(|v| format!("{:.2}%", v * 100.0))),
        ];
        for t in &task_names {
            cells.push(or_dash(r.tasks.get(t).map(|e| pm(e, 4))));
        }
        let speed =
            |s: &Option<Speed>| or_dash(s.map(|s| format!("{:.1} ± {:.1}", s.mean_ts, s.sd_ts)));
        cells.push(speed(&r.pp512));
        cells.push(speed(&r.tg128));
        cells.push(or_dash(
            r.peak_rss_bytes.map(|b| format!("{:.0}", b as f64 / 1e6)),
        ));
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    if let Some(order) = &table.kld_order {
        if order.monotonic {
            out.push_str("\nKLD grows at every step down in bits per weight.\n");
        } else {
            out.push_str("\nKLD does NOT grow monotonically as bits drop:\n");
            for v in &order.violations {
                out.push_str(&format!("- {v}\n"));
            }
        }
    }
    out
}

/// Writes `sweep.json` and `sweep.md` atomically.
fn save(table: &SweepTable, dir: &Path) -> Result<()> {
    write_atomic(
        &dir.join("sweep.json"),
        serde_json::to_string_pretty(table)?.as_bytes(),
    )?;
    write_atomic(&dir.join("sweep.md"), markdown(table).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_name_the_known_ones() {
        let err = parse_type("Q7_Z").expect_err("unknown").to_string();
        assert!(err.contains("Q7_Z") && err.contains("Q4_K_M"), "{err}");
        assert_eq!(parse_type("q4_k_m").expect("known"), QuantType::Q4KM);
    }
}
