//! `lmdensity quantize` and `lmdensity sweep-quant`: llama.cpp's quantizer, and the
//! quantization sweep that measures what each variant costs against an F32 base.
//!
//! No original full-precision weights exist on these machines: the base is the registry GGUF
//! dequantized to F32 (`F32, dequantized from Q4_1`), the variants are re-quantized from it,
//! and every label says so. A variant's KL divergence measures what re-quantization loses
//! relative to that base, not to the model as trained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lmdensity_bench::plan::logical_cpus;
use lmdensity_core::store::write_atomic;
use lmdensity_core::{RunMetrics, SCHEMA_VERSION};
use lmdensity_eval::BaseReader;
use lmdensity_hub::{gguf, Fetcher};
use lmdensity_llamacpp::QuantType;
use serde::{Deserialize, Serialize};

use crate::cli::{
    BenchArgs, BenchFormat, Cli, DtypeChoice, EvalArgs, KldArgs, Mode, ModelArgs, PplArgs,
    QuantizeArgs, SweepArgs,
};
use crate::commands::sanitize;
use crate::engine::{dequantize_gguf, resolve_gguf};

/// Parses a quantization type name.
fn parse_type(name: &str) -> Result<QuantType> {
    QuantType::parse(name.trim()).with_context(|| {
        let known: Vec<&str> = QuantType::ALL.iter().map(|q| q.name()).collect();
        format!(
            "unknown quantization type `{name}`; known: {}",
            known.join(", ")
        )
    })
}

/// Bits per parameter of a GGUF's tensors (data bytes × 8 ÷ elements, every tensor counted).
fn bits_per_weight(path: &Path) -> Result<f64> {
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

/// `lmdensity quantize`.
pub fn quantize_command(cli: &Cli, args: &QuantizeArgs) -> Result<()> {
    let kind = parse_type(&args.kind)?;
    if args.out.exists() {
        bail!(
            "{}: already exists; choose a new file name",
            args.out.display()
        );
    }
    let threads = args.threads.unwrap_or(logical_cpus() as u32);
    let started = std::time::Instant::now();
    lmdensity_llamacpp::quantize(&args.input, &args.out, kind, threads, cli.verbose)?;
    let bytes = std::fs::metadata(&args.out)?.len();
    println!(
        "{}: {}, {:.1} MB, {:.2} bits/weight, in {:.1} s",
        args.out.display(),
        gguf::read(&args.out)?.quantization(),
        bytes as f64 / 1e6,
        bits_per_weight(&args.out)?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A value with its standard error.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Its standard error (tokens or items treated as independent), if it has one.
    pub stderr: Option<f64>,
}

/// Speed of one test: mean and standard deviation over the repetitions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    /// Mean tokens/s.
    pub mean_ts: f64,
    /// Standard deviation of tokens/s.
    pub sd_ts: f64,
}

/// One measured weights file of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepRow {
    /// `F32`, `Q4_1 (source)`, `Q8_0`…
    pub variant: String,
    /// `base` (the F32 reference), `source` (the registry file) or `variant` (re-quantized).
    pub role: String,
    /// The file's own label (`Q6_K, requantized from F32 dequantized from Q4_1`).
    pub quantization: String,
    /// The GGUF measured.
    pub file: String,
    /// Its size.
    pub file_bytes: u64,
    /// Tensor data bits per parameter.
    pub bits_per_weight: f64,
    /// Harness-mode bits per byte on the sweep's corpus.
    pub bits_per_byte: Estimate,
    /// Mean KL(base ‖ variant) per token (nats; top-k + residual bound); none for the base.
    pub kld_mean: Option<Estimate>,
    /// 99th percentile of the per-token KLD.
    pub kld_p99: Option<f64>,
    /// Largest per-token KLD.
    pub kld_max: Option<f64>,
    /// Tokens whose most probable token is the base's.
    pub same_top_rate: Option<Estimate>,
    /// Root mean square of p(target) − p_base(target).
    pub delta_p_rms: Option<f64>,
    /// ln(PPL(variant)/PPL(base)).
    pub ln_ppl_ratio: Option<Estimate>,
    /// Task accuracy by task name.
    pub tasks: BTreeMap<String, Estimate>,
    /// pp512 speed.
    pub pp512: Option<Speed>,
    /// tg128 speed.
    pub tg128: Option<Speed>,
    /// Peak resident memory over the speed tests.
    pub peak_rss_bytes: Option<u64>,
    /// Run directories the numbers come from.
    pub runs: Vec<String>,
}

/// Whether KLD grows as bits per weight drop, and where it does not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KldOrder {
    /// KLD rises at every step down in bits per weight.
    pub monotonic: bool,
    /// Each step where it does not: `Q4_0 (4.55 bpw) 0.0412 < Q4_K_M (4.91 bpw) 0.0498`.
    pub violations: Vec<String>,
}

/// The sweep's result (`sweep.json`): the settings and one row per weights file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepTable {
    /// Results-schema version of the writer.
    pub schema_version: u32,
    /// Registry model id.
    pub model: String,
    /// The registry GGUF's quantization (what the F32 base was dequantized from).
    pub source_quantization: String,
    /// Corpus name (a slice says so: `ptb-test[..40000]`).
    pub corpus: String,
    /// Harness-mode window.
    pub max_length: Option<usize>,
    /// Tasks scored.
    pub tasks: String,
    /// Items per task.
    pub task_limit: Option<usize>,
    /// Repetitions of the speed tests.
    pub bench_repetitions: usize,
    /// CPU model of the machine.
    pub machine: String,
    /// lmdensity's git revision.
    pub git_revision: String,
    /// The rows, base first.
    pub rows: Vec<SweepRow>,
    /// KLD against bits per weight over the re-quantized variants.
    pub kld_order: Option<KldOrder>,
}

impl SweepTable {
    /// Whether a stored table was made with the same settings (its rows can be kept).
    fn same_settings(&self, other: &SweepTable) -> bool {
        (
            &self.model,
            &self.corpus,
            self.max_length,
            &self.tasks,
            self.task_limit,
            self.bench_repetitions,
        ) == (
            &other.model,
            &other.corpus,
            other.max_length,
            &other.tasks,
            other.task_limit,
            other.bench_repetitions,
        )
    }
}

/// KLD order over the `variant` rows, by descending bits per weight.
fn kld_order(rows: &[SweepRow]) -> Option<KldOrder> {
    let mut variants: Vec<(&SweepRow, f64)> = rows
        .iter()
        .filter(|r| r.role == "variant")
        .filter_map(|r| r.kld_mean.map(|k| (r, k.value)))
        .collect();
    if variants.len() < 2 {
        return None;
    }
    variants.sort_by(|a, b| b.0.bits_per_weight.total_cmp(&a.0.bits_per_weight));
    let violations: Vec<String> = variants
        .windows(2)
        .filter(|w| w[1].1 <= w[0].1)
        .map(|w| {
            format!(
                "{} ({:.2} bpw) KLD {:.5} ≤ {} ({:.2} bpw) KLD {:.5}",
                w[1].0.variant,
                w[1].0.bits_per_weight,
                w[1].1,
                w[0].0.variant,
                w[0].0.bits_per_weight,
                w[0].1
            )
        })
        .collect();
    Some(KldOrder {
        monotonic: violations.is_empty(),
        violations,
    })
}

fn estimate(metrics: &RunMetrics, name: &str) -> Option<Estimate> {
    metrics.get(name).map(|m| Estimate {
        value: m.value,
        stderr: m.stderr,
    })
}

/// Model arguments for one GGUF file on llama.cpp.
fn file_model(path: &Path) -> ModelArgs {
    ModelArgs {
        model: None,
        model_path: Some(path.to_path_buf()),
        backend: None,
        dtype: DtypeChoice::F32,
        tokenizer: None,
        threads: None,
        batch_size: 512,
        gpu_layers: 0,
        no_mmap: false,
    }
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

/// `lmdensity sweep-quant`.
pub fn sweep_quant(cli: &Cli, args: &SweepArgs) -> Result<()> {
    let types: Vec<QuantType> = args
        .types
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(parse_type)
        .collect::<Result<_>>()?;
    if args.bench_repetitions == 0 {
        bail!("--bench-repetitions must be at least 1");
    }
    let registry_model = ModelArgs {
        model: Some(args.model.clone()),
        model_path: None,
        ..file_model(Path::new(""))
    };
    let (resolved, _) = resolve_gguf(cli, &registry_model, false)?;
    let source = resolved.weights().to_path_buf();
    let source_quant = gguf::read(&source)?.quantization();
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => Fetcher::from_env(cli.quiet)
            .cache_dir()
            .join("quantized")
            .join(&args.model),
    };
    std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
    let say = |text: String| {
        if !cli.quiet {
            eprintln!("{text}");
        }
    };
    let f32_path = work.join(format!("{}-F32.gguf", args.model));
    if !f32_path.exists() {
        say(format!(
            "dequantizing {} → {}",
            source.display(),
            f32_path.display()
        ));
        dequantize_gguf(&source, &f32_path)?;
    }
    let threads = logical_cpus() as u32;
    let mut files: Vec<(String, &'static str, PathBuf)> = vec![
        ("F32".into(), "base", f32_path.clone()),
        (format!("{source_quant} (source)"), "source", source.clone()),
    ];
    for t in &types {
        let path = work.join(format!("{}-{}.gguf", args.model, t.name()));
        if !path.exists() {
            say(format!("quantizing → {}", path.display()));
            lmdensity_llamacpp::quantize(&f32_path, &path, *t, threads, cli.verbose)?;
        }
        files.push((t.name().into(), "variant", path));
    }

    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| cli.results_dir.join("sweep-quant").join(&args.model));
    std::fs::create_dir_all(&out_dir).with_context(|| out_dir.display().to_string())?;
    let json_path = out_dir.join("sweep.json");
    let hardware = lmdensity_core::hardware::Hardware::detect();
    let corpus_name = match args.corpus_bytes {
        Some(n) => format!("{} (first {n} bytes, whole lines)", args.corpus),
        None => args.corpus.clone(),
    };
    let mut table = SweepTable {
        schema_version: SCHEMA_VERSION,
        model: args.model.clone(),
        source_quantization: source_quant.clone(),
        corpus: corpus_name,
        max_length: args.max_length,
        tasks: args.tasks.clone(),
        task_limit: args.task_limit,
        bench_repetitions: args.bench_repetitions,
        machine: hardware.cpu_model.clone(),
        git_revision: env!("LMDENSITY_GIT_REVISION").into(),
        rows: Vec::new(),
        kld_order: None,
    };
    let kept: Vec<SweepRow> = match std::fs::read_to_string(&json_path) {
        Ok(text) if !args.fresh => {
            let old: SweepTable = serde_json::from_str(&text).with_context(|| {
                format!("{}: not a sweep table; use --fresh", json_path.display())
            })?;
            if old.same_settings(&table) {
                old.rows
            } else {
                say(format!(
                    "{}: made with other settings; measuring again",
                    json_path.display()
                ));
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    let base_file = work.join(format!(
        "{}-F32-{}-{}.kld",
        args.model,
        sanitize(&table.corpus),
        args.max_length.map_or("default".into(), |l| l.to_string())
    ));
    let base_partial = base_file.with_extension("kld.partial");
    for (variant, role, path) in &files {
        if let Some(row) = kept
            .iter()
            .find(|r| &r.variant == variant && r.file == path.display().to_string())
        {
            say(format!("{variant}: kept from {}", json_path.display()));
            table.rows.push(row.clone());
            continue;
        }
        say(format!("── {variant}: {}", path.display()));
        let base_ready = BaseReader::open(&base_file).is_ok();
        // The base run stores its distributions once; every other file is compared with them.
        let kld = KldArgs {
            save_kld_base: (*role == "base" && !base_ready).then(|| base_partial.clone()),
            kld_base: (*role != "base").then(|| base_file.clone()),
            kld_top_k: lmdensity_eval::kld::DEFAULT_TOP_K,
        };
        let saving = kld.save_kld_base.is_some();
        let ppl = crate::commands::measure_perplexity(
            cli,
            &PplArgs {
                model: file_model(path),
                corpus: args.corpus.clone(),
                corpus_bytes: args.corpus_bytes,
                mode: Mode::Harness,
                max_length: args.max_length,
                n_ctx: 512,
                resume: !saving,
                kld,
            },
        )?;
        if saving {
            std::fs::rename(&base_partial, &base_file)
                .with_context(|| base_file.display().to_string())?;
            say(format!(
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
        let mut tasks = BTreeMap::new();
        if args.tasks != "none" {
            let finished = crate::evaluate::evaluate(
                cli,
                &EvalArgs {
                    model: file_model(path),
                    tasks: args.tasks.clone(),
                    limit: args.task_limit,
                    num_fewshot: 0,
                    seed: 1234,
                    no_shared_context: false,
                    tasks_file: None,
                    resume: true,
                    lm_eval_json: None,
                },
            )?;
            for run in finished {
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
        }
        let records = crate::bench::bench(
            cli,
            &BenchArgs {
                model: None,
                model_path: Some(path.clone()),
                backend: None,
                tokenizer: None,
                n_prompt: "512".into(),
                n_gen: "128".into(),
                prompt_gen: None,
                n_depth: "0".into(),
                batch_size: "2048".into(),
                ubatch_size: "512".into(),
                threads: None,
                parallel: "1".into(),
                repetitions: args.bench_repetitions,
                warmup: 1,
                output: BenchFormat::Table,
                no_roofline: true,
                seed: 1234,
                gpu_layers: 0,
                no_mmap: false,
                memory_budget: None,
            },
        )?;
        let speed = |test: &str| {
            records.iter().find(|r| r.test == test).map(|r| Speed {
                mean_ts: r.avg_ts,
                sd_ts: r.stddev_ts,
            })
        };
        table.rows.push(SweepRow {
            variant: variant.clone(),
            role: (*role).into(),
            quantization: gguf::read(path)?.quantization(),
            file: path.display().to_string(),
            file_bytes: std::fs::metadata(path)?.len(),
            bits_per_weight: bits_per_weight(path)?,
            bits_per_byte: estimate(&metrics, "bits_per_byte").context("no bits_per_byte")?,
            kld_mean: estimate(&metrics, "kld_mean"),
            kld_p99: metrics.get("kld_p99").map(|m| m.value),
            kld_max: metrics.get("kld_max").map(|m| m.value),
            same_top_rate: estimate(&metrics, "same_top_rate"),
            delta_p_rms: metrics.get("delta_p_rms").map(|m| m.value),
            ln_ppl_ratio: estimate(&metrics, "ln_ppl_ratio"),
            tasks,
            pp512: speed("pp512"),
            tg128: speed("tg128"),
            peak_rss_bytes: records.iter().map(|r| r.peak_rss_bytes).max(),
            runs,
        });
        save(&table, &out_dir)?;
    }
    table.kld_order = kld_order(&table.rows);
    save(&table, &out_dir)?;
    println!("{}", markdown(&table));
    Ok(())
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

    fn row(variant: &str, bpw: f64, kld: f64) -> SweepRow {
        SweepRow {
            variant: variant.into(),
            role: "variant".into(),
            quantization: variant.into(),
            file: String::new(),
            file_bytes: 0,
            bits_per_weight: bpw,
            bits_per_byte: Estimate {
                value: 1.0,
                stderr: None,
            },
            kld_mean: Some(Estimate {
                value: kld,
                stderr: None,
            }),
            kld_p99: None,
            kld_max: None,
            same_top_rate: None,
            delta_p_rms: None,
            ln_ppl_ratio: None,
            tasks: BTreeMap::new(),
            pp512: None,
            tg128: None,
            peak_rss_bytes: None,
            runs: Vec::new(),
        }
    }

    #[test]
    fn kld_order_reports_each_step_that_does_not_rise() {
        let rows = vec![
            row("Q8_0", 8.5, 0.001),
            row("Q4_K_M", 4.9, 0.05),
            row("Q4_0", 4.5, 0.04),
        ];
        let order = kld_order(&rows).expect("two variants");
        assert!(!order.monotonic);
        assert_eq!(order.violations.len(), 1);
        assert!(
            order.violations[0].starts_with("Q4_0"),
            "{:?}",
            order.violations
        );
        let rows = vec![row("Q2_K", 3.0, 0.3), row("Q8_0", 8.5, 0.001)];
        assert!(kld_order(&rows).expect("two").monotonic);
    }

    #[test]
    fn unknown_types_name_the_known_ones() {
        let err = parse_type("Q7_Z").expect_err("unknown").to_string();
        assert!(err.contains("Q7_Z") && err.contains("Q4_K_M"), "{err}");
        assert_eq!(parse_type("q4_k_m").expect("known"), QuantType::Q4KM);
    }
}
