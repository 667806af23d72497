//! `lmdensity bench`: llama-bench's throughput tests on the llama.cpp backend, with memory
//! accounting and the bandwidth roofline; records printed and stored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lmdensity_backend::DecodeBench;
use lmdensity_bench::memory::{self, MemoryEstimate, RssSampler};
use lmdensity_bench::plan::{logical_cpus, parse_pairs, parse_sizes};
use lmdensity_bench::roofline::{self, Bandwidth};
use lmdensity_bench::{
    render, run_test, summarize, BenchRecord, BenchTest, Format, RecordContext, Sweep, TokenSource,
};
use lmdensity_candle::bench::CandleBenchConfig;
use lmdensity_core::schema::{BenchSample, Metric, RunMetrics, RunStatus, Sample};
use lmdensity_core::store::{resume_key, write_atomic};
use lmdensity_core::{ResultsStore, SCHEMA_VERSION};
use lmdensity_llamacpp::BenchContextConfig;
use serde_json::json;

use crate::cli::{BenchArgs, BenchFormat, Cli, ModelArgs};
use crate::commands::{load_engine_with, run_manifest, with_progress};
use crate::engine::LoadedModel;

/// f64 elements per STREAM array: 3 × 256 MiB, far beyond any last-level cache here.
const STREAM_ELEMENTS: usize = 32 << 20;

fn sweep(args: &BenchArgs) -> Result<Sweep, String> {
    let threads = match &args.threads {
        Some(list) => parse_sizes("--threads", list)?,
        None => vec![logical_cpus() as u32],
    };
    Ok(Sweep {
        n_prompt: parse_sizes("--n-prompt", &args.n_prompt)?,
        n_gen: parse_sizes("--n-gen", &args.n_gen)?,
        prompt_gen: parse_pairs(args.prompt_gen.as_deref().unwrap_or(""))?,
        n_depth: parse_sizes("--n-depth", &args.n_depth)?,
        n_batch: parse_sizes("--batch-size", &args.batch_size)?,
        n_ubatch: parse_sizes("--ubatch-size", &args.ubatch_size)?,
        threads,
        n_seq: parse_sizes("--parallel", &args.parallel)?,
    })
}

/// `8G`, `512M`, `100k`, `12345` → bytes (binary units).
fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => bail!("--memory-budget {text:?}: unknown unit (use K, M, G or T)"),
    };
    let value: f64 = digits
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .with_context(|| format!("--memory-budget {text:?}: not a positive size such as 8G"))?;
    Ok((value * (1u64 << shift) as f64) as u64)
}

fn format(f: BenchFormat) -> Format {
    match f {
        BenchFormat::Table => Format::Table,
        BenchFormat::Md => Format::Markdown,
        BenchFormat::Csv => Format::Csv,
        BenchFormat::Json => Format::Json,
        BenchFormat::Jsonl => Format::Jsonl,
    }
}

fn params_label(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}

/// Runs the sweep; prints the records and stores them as one run.
pub fn bench(cli: &Cli, args: &BenchArgs) -> Result<Vec<BenchRecord>> {
    let sweep = sweep(args).map_err(anyhow::Error::msg)?;
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let cpus = logical_cpus();
    // Sizes and threads are checked before anything is fetched or loaded.
    sweep.validate(cpus, u64::MAX)?;
    let budget = args.memory_budget.as_deref().map(parse_bytes).transpose()?;
    let max_threads = sweep.threads.iter().copied().max().unwrap_or(1);
    let model_args = ModelArgs {
        model: args.model.clone(),
        model_path: args.model_path.clone(),
        threads: Some(max_threads),
        batch_size: 512,
        gpu_layers: args.gpu_layers,
        no_mmap: args.no_mmap,
        backend: args.backend,
        dtype: crate::cli::DtypeChoice::F32,
        tokenizer: args.tokenizer.clone(),
    };
    // The process's RSS is sampled from before loading to the end.
    // Every 100 ms: a sampler thread waking every 5 ms cost SmolLM2's tg128 10-20% on 2 cores.
    // The kernel's own high-water mark (reset per test) catches what falls between samples.
    let sampler = RssSampler::start(Duration::from_millis(100));
    let engine = load_engine_with(cli, &model_args, |path, header, _| {
        let traffic = roofline::weight_traffic(header);
        let cells = sweep
            .tests()
            .iter()
            .map(|t| t.n_ctx() * u64::from(t.n_seq))
            .max()
            .unwrap_or(0);
        let estimate = MemoryEstimate {
            weights: traffic.weight_bytes,
            kv_cache: roofline::kv_cache_bytes_estimate(header, cells).unwrap_or(0),
        };
        let available = budget.or_else(memory::available_memory);
        if let Some(available) = available {
            estimate
                .check_fits(available, &path.display().to_string())
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    })?;
    let info = engine.model.info().clone();
    let tests = sweep
        .validate(cpus, info.n_ctx_train as u64)
        .with_context(|| engine.resolved.weights().display().to_string())?;
    let Some(header) = engine.header.as_ref() else {
        bail!("bench measures GGUF files; convert an HF directory first");
    };
    let traffic = roofline::weight_traffic(header);

    let mut bandwidths: BTreeMap<u32, Bandwidth> = BTreeMap::new();
    if !args.no_roofline {
        let elements = match memory::available_memory() {
            Some(avail) => STREAM_ELEMENTS.min((avail / 8 / 3 / 4) as usize),
            None => STREAM_ELEMENTS,
        };
        for &threads in &sweep.threads {
            let bw = with_progress("memory bandwidth (STREAM triad)", "", |_| {
                roofline::stream_triad(threads as usize, elements, 10)
            });
            bandwidths.insert(threads, bw);
        }
    }

    let gpu = args.gpu_layers > 0 && lmdensity_llamacpp::supports_gpu_offload();
    let context_for = |threads: u32| RecordContext {
        build_commit: env!("LMDENSITY_GIT_REVISION").into(),
        cpu_info: engine.hardware.cpu_model.clone(),
        gpu_info: engine.hardware.gpu.clone().unwrap_or_default(),
        backends: match (gpu, engine.backend_label().as_str()) {
            (true, _) => "CUDA".into(),
            (false, "llama.cpp") => "CPU".into(),
            (false, other) => format!("CPU ({other})"),
        },
        engine: engine.backend_label(),
        model_filename: engine.resolved.weights().display().to_string(),
        model_type: format!(
            "{} {} {}",
            engine.record.architecture,
            params_label(info.n_params),
            engine.record.quantization
        ),
        model_n_params: info.n_params,
        n_gpu_layers: args.gpu_layers,
        use_mmap: !args.no_mmap,
        load_ms: engine.load_s * 1e3,
        traffic,
        bandwidth: bandwidths.get(&threads).copied(),
    };
    let tokens = TokenSource {
        n_vocab: info.n_vocab,
        bos: if info.add_bos { info.bos } else { None },
        seed: args.seed,
    };

    let settings: BTreeMap<String, serde_json::Value> = [
        ("backend", json!(engine.backend_label())),
        (
            "tests",
            json!(tests.iter().map(BenchTest::name).collect::<Vec<_>>()),
        ),
        ("repetitions", json!(args.repetitions)),
        ("warmup", json!(args.warmup)),
        ("seed", json!(args.seed)),
        ("started", json!(chrono::Utc::now().to_rfc3339())),
        ("mode", json!("bench")),
        ("corpus", json!("random tokens")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let key = resume_key(&json!(settings));
    let store = ResultsStore::new(&cli.results_dir);
    let mut run = store.create_run(run_manifest(&engine, "bench", "bench", settings, key))?;

    let started = Instant::now();
    let mut records = Vec::new();
    for test in &tests {
        let mut bench_ctx: Box<dyn DecodeBench + '_> = match &engine.model {
            LoadedModel::LlamaCpp(m) => Box::new(m.bench_context(&BenchContextConfig {
                n_ctx: u32::try_from(test.n_ctx()).context("context too large")?,
                n_batch: test.n_batch,
                n_ubatch: test.n_ubatch,
                n_seq: test.n_seq,
                threads: test.threads,
            })?),
            LoadedModel::Candle(m) => Box::new(m.bench_context(CandleBenchConfig {
                n_ctx: test.n_ctx() as usize,
                n_batch: test.n_batch as usize,
                n_ubatch: test.n_ubatch as usize,
                n_seq: test.n_seq as usize,
                threads: test.threads as usize,
            })?),
        };
        sampler.restart();
        let kernel_peak = memory::reset_kernel_peak_rss();
        let timings = with_progress(&test.name(), "reps", |progress| {
            run_test(
                bench_ctx.as_mut(),
                test,
                &tokens,
                args.warmup,
                args.repetitions,
                &mut |rep| progress(rep, args.repetitions),
            )
        })
        .with_context(|| format!("{} on {}", test.name(), engine.resolved.id))?;
        let record = summarize(
            &context_for(test.threads),
            test,
            &timings,
            sampler.peak().max(
                kernel_peak
                    .then(memory::kernel_peak_rss)
                    .flatten()
                    .unwrap_or(0),
            ),
            memory::gpu_memory_used(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        drop(bench_ctx);
        for (repetition, &ns) in timings.samples_ns.iter().enumerate() {
            run.append_sample(&Sample::BenchRepetition(BenchSample {
                test: record.test.clone(),
                repetition,
                n_tokens: test.timed_tokens(),
                ns,
                prompt_ns: timings.prompt_ns.get(repetition).copied(),
            }))?;
        }
        records.push(record);
    }
    write_atomic(
        &run.dir().join("records.json"),
        render(&records, Format::Json).as_bytes(),
    )?;
    run.write_metrics(&RunMetrics {
        schema_version: SCHEMA_VERSION,
        status: RunStatus::Complete,
        elapsed_s: started.elapsed().as_secs_f64(),
        metrics: metrics(&records),
    })?;
    print!("{}", render(&records, format(args.output)));
    Ok(records)
}

/// The store's metrics of a bench run: per test, tokens/s (stderr = sd/√n) and the rest.
fn metrics(records: &[BenchRecord]) -> Vec<Metric> {
    let mut out = Vec::new();
    for r in records {
        let n = r.samples_ts.len() as f64;
        let mut push = |name: &str, value: f64, stderr: Option<f64>, unit: &str, how: &str| {
            out.push(Metric {
                name: format!("{}/{name}", r.test),
                value,
                stderr,
                unit: unit.into(),
                how: how.into(),
            })
        };
        push(
            "avg_ts",
            r.avg_ts,
            (n > 1.0).then(|| r.stddev_ts / n.sqrt()),
            "tokens/s",
            "mean over repetitions of timed tokens / wall time (llama-bench avg_ts); stderr = sd/√n",
        );
        push(
            "stddev_ts",
            r.stddev_ts,
            None,
            "tokens/s",
            "sample sd of per-repetition tokens/s",
        );
        push("min_ts", r.min_ts, None, "tokens/s", "slowest repetition");
        push("max_ts", r.max_ts, None, "tokens/s", "fastest repetition");
        if let Some(ttft) = r.ttft_ms {
            push(
                "ttft_ms",
                ttft,
                None,
                "ms",
                "mean wall time of the prompt part (time to first token)",
            );
        }
        push(
            "kv_bytes",
            r.kv_bytes as f64,
            None,
            "bytes",
            "llama.cpp state size of sequence 0 after the test",
        );
        push("peak_rss_bytes", r.peak_rss_bytes as f64, None, "bytes", "peak process RSS during the test: kernel high-water mark (VmHWM, reset at the test start) or 100 ms sampling");
        push(
            "load_ms",
            r.load_ms,
            None,
            "ms",
            "llama.cpp model load time",
        );
        if let Some(e) = r.decode_efficiency {
            push(
                "decode_efficiency",
                e,
                None,
                "fraction",
                "weight bytes per decode step × steps/s ÷ STREAM-triad bandwidth",
            );
        }
        if let Some(f) = r.prefill_gflops {
            push(
                "prefill_gflops",
                f,
                None,
                "GFLOP/s",
                "2 × matmul parameters × prompt tokens/s",
            );
        }
        if let Some(bw) = r.bandwidth_gbs {
            push(
                "bandwidth_gbs",
                bw,
                None,
                "GB/s",
                "STREAM triad, best of 10, same threads",
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_binary_units() {
        assert_eq!(parse_bytes("8G").expect("8G"), 8 << 30);
        assert_eq!(parse_bytes("512MiB").expect("MiB"), 512 << 20);
        assert_eq!(parse_bytes("1.5k").expect("k"), 1536);
        assert_eq!(parse_bytes("100").expect("bytes"), 100);
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("8X").is_err());
    }
}
