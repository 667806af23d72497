//! Bench jobs: llama-bench's throughput tests on either engine, with memory accounting and the
//! bandwidth roofline; one run per invocation, one unit per test, through the run driver.
//! Speed is measured fresh every time: a bench run is never resumed.

use std::collections::BTreeMap;
use std::time::Duration;

use lmdensity_backend::DecodeBench;
use lmdensity_bench::memory::{self, MemoryEstimate, RssSampler};
use lmdensity_bench::plan::{logical_cpus, Sweep};
use lmdensity_bench::roofline::{self, Bandwidth};
use lmdensity_bench::{
    render, run_test, summarize, BenchRecord, BenchTest, Format, RecordContext, TokenSource,
};
use lmdensity_candle::bench::CandleBenchConfig;
use lmdensity_core::driver::{drive, Resumable};
use lmdensity_core::schema::{BenchSample, Metric, RunMetrics, RunStatus, Sample};
use lmdensity_core::store::write_atomic;
use lmdensity_core::store::StoredRun;
use lmdensity_core::{progress, SCHEMA_VERSION};
use lmdensity_llamacpp::BenchContextConfig;
use serde_json::json;

use crate::error::{Context, Result};
use crate::model::{self, Engine, LoadedModel, ModelSpec};
use crate::run::{self, settings, Opened, RunSpec};
use crate::workspace::Workspace;
use crate::{bail, JobError};

/// f64 elements per STREAM array: 3 × 256 MiB, far beyond any last-level cache here.
const STREAM_ELEMENTS: usize = 32 << 20;

/// Throughput tests of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchJob {
    /// The model (its `threads` is ignored: the sweep's thread counts are used).
    pub model: ModelSpec,
    /// The tests, as lists of sizes.
    pub sweep: Sweep,
    /// Timed repetitions per test.
    pub repetitions: usize,
    /// Untimed warm-up runs per test.
    pub warmup: usize,
    /// Seed of the random token ids.
    pub seed: u64,
    /// Measure the memory bandwidth (decode efficiency against the roofline).
    pub roofline: bool,
    /// Memory the run may use (default: what the system reports available).
    pub memory_budget: Option<u64>,
}

impl BenchJob {
    /// Timed repetitions per test unless told otherwise (llama-bench's).
    pub const DEFAULT_REPETITIONS: usize = 5;
    /// Seed of the random token ids unless told otherwise.
    pub const DEFAULT_SEED: u64 = 1234;

    /// llama-bench's defaults (pp512, tg128, 5 repetitions, 1 warm-up) with the roofline.
    pub fn new(model: ModelSpec) -> Self {
        BenchJob {
            model,
            sweep: Sweep::default(),
            repetitions: Self::DEFAULT_REPETITIONS,
            warmup: 1,
            seed: Self::DEFAULT_SEED,
            roofline: true,
            memory_budget: None,
        }
    }

    /// Runs every test; the records are also stored as one run (`records.json` beside it).
    pub fn run(&self, ws: &Workspace) -> Result<Vec<BenchRecord>> {
        Ok(self.run_stored(ws)?.0)
    }

    /// [`BenchJob::run`], with the stored run.
    pub fn run_stored(&self, ws: &Workspace) -> Result<(Vec<BenchRecord>, StoredRun)> {
        if self.repetitions == 0 {
            bail!("--repetitions must be at least 1");
        }
        let cpus = logical_cpus();
        // Sizes and threads are checked before anything is fetched or loaded.
        self.sweep.validate(cpus, u64::MAX)?;
        // The process's RSS is sampled from before loading to the end, every 100 ms: a sampler
        // thread waking every 5 ms cost SmolLM2's tg128 10-20% on 2 cores. The kernel's own
        // high-water mark (reset per test) catches what falls between samples.
        let sampler = RssSampler::start(Duration::from_millis(100));
        let spec = ModelSpec {
            threads: Some(self.sweep.threads.iter().copied().max().unwrap_or(1)),
            ..self.model.clone()
        };
        let engine =
            model::load_with(ws, &spec, |path, header, _| self.check_memory(path, header))?;
        let info = engine.model.info().clone();
        let tests = self
            .sweep
            .validate(cpus, info.n_ctx_train as u64)
            .with_context(|| engine.resolved.weights().display().to_string())?;
        let bandwidths = self.bandwidths();
        let run_spec = RunSpec {
            kind: "bench",
            label: "bench".into(),
            settings: settings([
                ("backend", json!(engine.backend_label())),
                (
                    "tests",
                    json!(tests.iter().map(BenchTest::name).collect::<Vec<_>>()),
                ),
                // Every size of every test (threads, batch sizes, sequences): what defines
                // the measurement, so runs of other sizes never share a key.
                ("test_plan", json!(tests)),
                ("repetitions", json!(self.repetitions)),
                ("warmup", json!(self.warmup)),
                ("seed", json!(self.seed)),
                ("mode", json!("bench")),
                ("corpus", json!("random tokens")),
            ]),
            unit: "tests",
        };
        let started = settings([("started", json!(chrono::Utc::now().to_rfc3339()))]);
        let Opened::Open(mut handle) = run::open(&ws.store(), &engine, &run_spec, false, started)?
        else {
            bail!("a bench run is always measured anew");
        };
        let mut work = TestWork {
            job: self,
            engine: &engine,
            tests: &tests,
            tokens: TokenSource {
                n_vocab: info.n_vocab,
                bos: if info.add_bos { info.bos } else { None },
                seed: self.seed,
            },
            bandwidths,
            sampler: &sampler,
            records: Vec::new(),
        };
        let result = drive(&mut work, &mut handle, &mut |_, _| {});
        write_atomic(
            &handle.dir().join("records.json"),
            render(&work.records, Format::Json).as_bytes(),
        )?;
        let stored = run::finish(&handle, result, &run_spec)?;
        Ok((work.records, stored))
    }

    /// Refuses a model whose weights and KV cache exceed the memory budget, before loading.
    fn check_memory(
        &self,
        path: &std::path::Path,
        header: &lmdensity_hub::gguf::GgufFile,
    ) -> Result<()> {
        let traffic = roofline::weight_traffic(header);
        let cells = self
            .sweep
            .tests()
            .iter()
            .map(|t| t.n_ctx() * u64::from(t.n_seq))
            .max()
            .unwrap_or(0);
        let estimate = MemoryEstimate {
            weights: traffic.weight_bytes,
            kv_cache: roofline::kv_cache_bytes_estimate(header, cells).unwrap_or(0),
        };
        if let Some(available) = self.memory_budget.or_else(memory::available_memory) {
            estimate
                .check_fits(available, &path.display().to_string())
                .map_err(JobError::Invalid)?;
        }
        Ok(())
    }

    /// STREAM-triad bandwidth per thread count (none without the roofline).
    fn bandwidths(&self) -> BTreeMap<u32, Bandwidth> {
        let mut out = BTreeMap::new();
        if !self.roofline {
            return out;
        }
        let elements = match memory::available_memory() {
            Some(avail) => STREAM_ELEMENTS.min((avail / 8 / 3 / 4) as usize),
            None => STREAM_ELEMENTS,
        };
        for &threads in &self.sweep.threads {
            let bw = progress::with_bar("memory bandwidth (STREAM triad)", "", |_| {
                roofline::stream_triad(threads as usize, elements, 10)
            });
            out.insert(threads, bw);
        }
        out
    }
}

fn params_label(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}

/// A bench run as units of the run driver: one test per unit, its repetitions as samples.
struct TestWork<'a> {
    job: &'a BenchJob,
    engine: &'a Engine,
    tests: &'a [BenchTest],
    tokens: TokenSource,
    bandwidths: BTreeMap<u32, Bandwidth>,
    sampler: &'a RssSampler,
    records: Vec<BenchRecord>,
}

impl<'a> TestWork<'a> {
    fn context_for(&self, threads: u32) -> Result<RecordContext> {
        let engine = self.engine;
        let Some(header) = engine.header.as_ref() else {
            bail!("bench measures GGUF files; convert an HF directory first");
        };
        let info = engine.model.info();
        let gpu = self.job.model.gpu_layers > 0 && lmdensity_llamacpp::supports_gpu_offload();
        Ok(RecordContext {
            build_commit: run::GIT_REVISION.into(),
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
            n_gpu_layers: self.job.model.gpu_layers,
            use_mmap: !self.job.model.no_mmap,
            load_ms: engine.load_s * 1e3,
            traffic: roofline::weight_traffic(header),
            bandwidth: self.bandwidths.get(&threads).copied(),
        })
    }

    fn bench_context(&self, test: &BenchTest) -> Result<Box<dyn DecodeBench + 'a>> {
        let engine: &'a Engine = self.engine;
        Ok(match &engine.model {
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
        })
    }
}

impl Resumable for TestWork<'_> {
    type Error = JobError;

    fn n_units(&self) -> usize {
        self.tests.len()
    }

    fn unit_of(&self, _: &Sample, run: &lmdensity_core::RunHandle) -> Result<usize> {
        bail!("{}: a bench run is never resumed", run.dir().display())
    }

    fn compute(&mut self, unit: usize) -> Result<Vec<Sample>> {
        let test = &self.tests[unit];
        let context = self.context_for(test.threads)?;
        let mut bench = self.bench_context(test)?;
        self.sampler.restart();
        let kernel_peak = memory::reset_kernel_peak_rss();
        let (warmup, repetitions) = (self.job.warmup, self.job.repetitions);
        let timings = progress::with_bar(&test.name(), "reps", |progress| {
            run_test(
                bench.as_mut(),
                test,
                &self.tokens,
                warmup,
                repetitions,
                &mut |rep| progress(rep, repetitions),
            )
        })
        .with_context(|| format!("{} on {}", test.name(), self.engine.resolved.id))?;
        let peak = kernel_peak
            .then(memory::kernel_peak_rss)
            .flatten()
            .unwrap_or(0);
        let record = summarize(
            &context,
            test,
            &timings,
            self.sampler.peak().max(peak),
            memory::gpu_memory_used(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        drop(bench);
        let samples = timings
            .samples_ns
            .iter()
            .enumerate()
            .map(|(repetition, &ns)| {
                Sample::BenchRepetition(BenchSample {
                    test: record.test.clone(),
                    repetition,
                    n_tokens: test.timed_tokens(),
                    ns,
                    prompt_ns: timings.prompt_ns.get(repetition).copied(),
                })
            })
            .collect();
        self.records.push(record);
        Ok(samples)
    }

    fn metrics(&self, _: &[Sample], status: RunStatus, elapsed_s: f64) -> RunMetrics {
        RunMetrics {
            schema_version: SCHEMA_VERSION,
            status,
            elapsed_s,
            metrics: metrics(&self.records),
        }
    }
}

/// The store's metrics of a bench run: per test, tokens/s (stderr = sd/√n) and the rest.
fn metrics(records: &[BenchRecord]) -> Vec<Metric> {
    let mut out = Vec::new();
    for r in records {
        let n = r.samples_ts.len() as f64;
        let mut push = |name: &str, value: f64, stderr: Option<f64>, unit: &str, how: &str| {
            out.push(Metric::new(
                &format!("{}/{name}", r.test),
                value,
                stderr,
                unit,
                how.into(),
            ))
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
