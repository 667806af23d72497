//! Throughput and memory of lmdensity's backends, measured as llama-bench measures them.
//!
//! - [`plan`]: the tests (`pp512`, `tg128`, `pp512+tg128 @ d1024`, parallel sequences) and the
//!   checks that refuse bad sizes, too many threads or too long a context before loading.
//! - [`runner`]: warm-up and timed repetitions on any [`lmdensity_backend::DecodeBench`].
//! - [`memory`]: sampled peak RSS, the pre-load memory check, GPU memory (NVML).
//! - [`roofline`]: STREAM-triad bandwidth, weight bytes per token, decode efficiency.
//! - [`output`]: records with llama-bench's field names, and the table/markdown/csv/json(l)
//!   printers.

pub mod memory;
pub mod output;
pub mod plan;
pub mod roofline;
pub mod runner;

use lmdensity_core::stats::mean_sd;

pub use output::{render, BenchRecord, Format};
pub use plan::{BenchTest, PlanError, Sweep};
pub use roofline::{Bandwidth, WeightTraffic};
pub use runner::{run_test, TestTimings, TokenSource};

/// What every record of one model shares.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordContext {
    /// lmdensity's git revision.
    pub build_commit: String,
    /// CPU model and thread count.
    pub cpu_info: String,
    /// GPU model, or empty.
    pub gpu_info: String,
    /// Compute backends (`CPU`, `CUDA`).
    pub backends: String,
    /// Engine name.
    pub engine: String,
    /// Weights file.
    pub model_filename: String,
    /// `architecture params quantization`.
    pub model_type: String,
    /// Parameters.
    pub model_n_params: u64,
    /// Layers offloaded to the GPU.
    pub n_gpu_layers: u32,
    /// Whether the weights file is memory-mapped.
    pub use_mmap: bool,
    /// Model load time, ms.
    pub load_ms: f64,
    /// Weight bytes and traffic per token.
    pub traffic: WeightTraffic,
    /// Measured memory bandwidth, if measured.
    pub bandwidth: Option<Bandwidth>,
}

/// Mean and sample standard deviation, 0 for a single value (as llama-bench prints it).
fn mean_and_sd(xs: &[f64]) -> (f64, f64) {
    let (mean, sd) = mean_sd(xs);
    (mean, sd.unwrap_or(0.0))
}

/// The record of one test: llama-bench's statistics (tokens/s per repetition, their mean and
/// sample sd) plus time to first token, memory and the roofline figures.
pub fn summarize(
    context: &RecordContext,
    test: &BenchTest,
    timings: &TestTimings,
    peak_rss_bytes: u64,
    gpu_mem_bytes: Option<u64>,
    test_time: String,
) -> BenchRecord {
    let tokens = test.timed_tokens() as f64;
    let samples_ts: Vec<f64> = timings
        .samples_ns
        .iter()
        .map(|&ns| 1e9 * tokens / ns.max(1) as f64)
        .collect();
    let ns: Vec<f64> = timings.samples_ns.iter().map(|&n| n as f64).collect();
    let (avg_ns, sd_ns) = mean_and_sd(&ns);
    let (avg_ts, sd_ts) = mean_and_sd(&samples_ts);
    let prompt_ms: Vec<f64> = timings.prompt_ns.iter().map(|&n| n as f64 / 1e6).collect();
    let ttft_ms = (!prompt_ms.is_empty()).then(|| mean_and_sd(&prompt_ms).0);
    // Roofline figures for the pure tests: decode steps/s for tg, prompt tokens/s for pp.
    let decode_efficiency = match (test.n_prompt, context.bandwidth.as_ref()) {
        (0, Some(bw)) => Some(roofline::decode_efficiency(
            context.traffic.bytes_per_token,
            avg_ts / f64::from(test.n_seq),
            bw,
        )),
        _ => None,
    };
    let prefill_gflops =
        (test.n_gen == 0).then(|| 2.0 * context.traffic.matmul_params as f64 * avg_ts / 1e9);
    BenchRecord {
        build_commit: context.build_commit.clone(),
        build_number: 0,
        cpu_info: context.cpu_info.clone(),
        gpu_info: context.gpu_info.clone(),
        backends: context.backends.clone(),
        model_filename: context.model_filename.clone(),
        model_type: context.model_type.clone(),
        model_size: context.traffic.weight_bytes,
        model_n_params: context.model_n_params,
        n_batch: test.n_batch,
        n_ubatch: test.n_ubatch,
        n_threads: test.threads,
        type_k: "f16".into(),
        type_v: "f16".into(),
        n_gpu_layers: context.n_gpu_layers,
        flash_attn: -1,
        use_mmap: context.use_mmap,
        n_prompt: test.n_prompt,
        n_gen: test.n_gen,
        n_depth: test.n_depth,
        test_time,
        avg_ns: avg_ns.round() as u64,
        stddev_ns: sd_ns.round() as u64,
        avg_ts,
        stddev_ts: sd_ts,
        samples_ns: timings.samples_ns.clone(),
        min_ts: samples_ts.iter().copied().fold(f64::INFINITY, f64::min),
        max_ts: samples_ts.iter().copied().fold(0.0, f64::max),
        samples_ts,
        engine: context.engine.clone(),
        test: test.name(),
        n_seq: test.n_seq,
        ttft_ms,
        load_ms: context.load_ms,
        kv_bytes: timings.kv_bytes,
        peak_rss_bytes,
        gpu_mem_bytes,
        bandwidth_gbs: context.bandwidth.map(|b| b.best_bytes_per_s / 1e9),
        weight_bytes_per_token: context.traffic.bytes_per_token,
        decode_efficiency,
        prefill_gflops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> RecordContext {
        RecordContext {
            build_commit: "abc".into(),
            cpu_info: "cpu".into(),
            gpu_info: String::new(),
            backends: "CPU".into(),
            engine: "llama.cpp".into(),
            model_filename: "m.gguf".into(),
            model_type: "llama 1M F16".into(),
            model_n_params: 1_000_000,
            n_gpu_layers: 0,
            use_mmap: true,
            load_ms: 10.0,
            traffic: WeightTraffic {
                weight_bytes: 2_000_000,
                bytes_per_token: 2_000_000,
                matmul_params: 1_000_000,
            },
            bandwidth: Some(Bandwidth {
                best_bytes_per_s: 1e10,
                mean_bytes_per_s: 9e9,
                threads: 2,
                working_set_bytes: 1 << 30,
            }),
        }
    }

    fn test(n_prompt: u32, n_gen: u32, n_seq: u32) -> BenchTest {
        BenchTest {
            n_prompt,
            n_gen,
            n_depth: 0,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 2,
            n_seq,
        }
    }

    #[test]
    fn statistics_of_known_samples_match_llama_bench_formulas() {
        // 128 tokens in 0.5 s, 1 s and 2 s: 256, 128 and 64 tokens/s.
        let timings = TestTimings {
            samples_ns: vec![500_000_000, 1_000_000_000, 2_000_000_000],
            prompt_ns: vec![],
            kv_bytes: 42,
        };
        let r = summarize(&context(), &test(0, 128, 1), &timings, 7, None, "t".into());
        assert_eq!(r.samples_ts, [256.0, 128.0, 64.0]);
        assert!((r.avg_ts - 448.0 / 3.0).abs() < 1e-9);
        // Sample sd of (256, 128, 64): mean 149.33, deviations² sum 19114.67, / 2 → sqrt.
        let sd = ((256.0f64 - 448.0 / 3.0).powi(2)
            + (128.0f64 - 448.0 / 3.0).powi(2)
            + (64.0f64 - 448.0 / 3.0).powi(2))
            / 2.0;
        assert!((r.stddev_ts - sd.sqrt()).abs() < 1e-9);
        assert_eq!(r.avg_ns, 1_166_666_667);
        assert_eq!((r.min_ts, r.max_ts), (64.0, 256.0));
        assert_eq!(r.ttft_ms, None);
        // 2 MB per token at 149.33 tokens/s over 10 GB/s.
        let eff = r.decode_efficiency.expect("tg has an efficiency");
        assert!((eff - 2e6 * (448.0 / 3.0) / 1e10).abs() < 1e-12);
        assert_eq!(r.prefill_gflops, None);
        assert_eq!(
            (r.kv_bytes, r.peak_rss_bytes, r.bandwidth_gbs),
            (42, 7, Some(10.0))
        );
    }

    #[test]
    fn prompt_tests_report_ttft_and_flops_and_parallel_sequences_count_every_token() {
        let timings = TestTimings {
            samples_ns: vec![1_000_000_000],
            prompt_ns: vec![1_000_000_000],
            kv_bytes: 0,
        };
        let r = summarize(&context(), &test(512, 0, 2), &timings, 0, None, "t".into());
        assert_eq!(r.avg_ts, 1024.0);
        assert_eq!(r.stddev_ts, 0.0);
        assert_eq!(r.ttft_ms, Some(1000.0));
        assert!((r.prefill_gflops.expect("pp") - 2.0 * 1e6 * 1024.0 / 1e9).abs() < 1e-12);
        assert_eq!(r.decode_efficiency, None);
        assert_eq!(r.test, "pp512 ×2");
        // Parallel generation: efficiency counts decode steps, not tokens.
        let tg = summarize(&context(), &test(0, 100, 4), &timings, 0, None, "t".into());
        assert_eq!(tg.avg_ts, 400.0);
        let eff = tg.decode_efficiency.expect("tg");
        assert!((eff - 2e6 * 100.0 / 1e10).abs() < 1e-12);
    }
}
