//! One record per test with llama-bench's field names and meanings (so scripts that read
//! llama-bench's csv/json/jsonl read ours), plus lmdensity's own fields; and the printers.

use serde::{Deserialize, Serialize};
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::memory::human_bytes;

/// One measured test. The fields up to `samples_ts` are llama-bench's (same names, units and
/// types); the rest are lmdensity's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRecord {
    /// lmdensity's git revision (llama-bench: llama.cpp's commit).
    pub build_commit: String,
    /// Always 0 (llama-bench: llama.cpp's build number).
    pub build_number: u64,
    /// CPU model.
    pub cpu_info: String,
    /// GPU model, or empty.
    pub gpu_info: String,
    /// Compute backends (`CPU`, `CUDA`).
    pub backends: String,
    /// Weights file.
    pub model_filename: String,
    /// `architecture params quantization`.
    pub model_type: String,
    /// Weight bytes.
    pub model_size: u64,
    /// Parameters.
    pub model_n_params: u64,
    /// Tokens per decode call in prompt processing.
    pub n_batch: u32,
    /// Tokens per physical batch.
    pub n_ubatch: u32,
    /// Threads.
    pub n_threads: u32,
    /// KV-cache key type.
    pub type_k: String,
    /// KV-cache value type.
    pub type_v: String,
    /// Layers offloaded to the GPU.
    pub n_gpu_layers: u32,
    /// Flash attention: −1 auto, 0 off, 1 on (llama.cpp's enum).
    pub flash_attn: i32,
    /// Whether the weights file is memory-mapped (llama-bench's `use_mmap`).
    pub use_mmap: bool,
    /// Prompt tokens per sequence.
    pub n_prompt: u32,
    /// Generated tokens per sequence.
    pub n_gen: u32,
    /// Cache depth before the timed part.
    pub n_depth: u32,
    /// When the test finished (RFC 3339).
    pub test_time: String,
    /// Mean repetition time, ns.
    pub avg_ns: u64,
    /// Sample standard deviation of the repetition times, ns.
    pub stddev_ns: u64,
    /// Mean of the per-repetition tokens/s.
    pub avg_ts: f64,
    /// Sample standard deviation of the per-repetition tokens/s.
    pub stddev_ts: f64,
    /// Every repetition's time, ns.
    pub samples_ns: Vec<u64>,
    /// Every repetition's tokens/s.
    pub samples_ts: Vec<f64>,
    /// Engine (`llama.cpp`).
    pub engine: String,
    /// Test name (`pp512`, `tg128 @ d1024`, `pp512+tg128 ×4`).
    pub test: String,
    /// Sequences processed together.
    pub n_seq: u32,
    /// Slowest repetition, tokens/s.
    pub min_ts: f64,
    /// Fastest repetition, tokens/s.
    pub max_ts: f64,
    /// Mean time to first token (the prompt part of a repetition), ms; tests with a prompt only.
    pub ttft_ms: Option<f64>,
    /// Model load time, ms.
    pub load_ms: f64,
    /// KV-cache bytes sequence 0 held at the end of the test (the whole tested context).
    pub kv_bytes: u64,
    /// Peak resident memory of the process during the test (the kernel's high-water mark reset at
    /// the test start, where Linux keeps one, and 100 ms sampling), bytes.
    pub peak_rss_bytes: u64,
    /// GPU memory in use at the end of the test (NVML), bytes.
    pub gpu_mem_bytes: Option<u64>,
    /// Measured memory bandwidth (STREAM triad, best of 10, same threads), GB/s.
    pub bandwidth_gbs: Option<f64>,
    /// Weight bytes a decode step reads.
    pub weight_bytes_per_token: u64,
    /// Generation tests: weight bytes per step × steps/s ÷ bandwidth.
    pub decode_efficiency: Option<f64>,
    /// Prompt tests: 2 × matmul parameters × prompt tokens/s, GFLOP/s.
    pub prefill_gflops: Option<f64>,
}

/// Output formats of `lmdensity bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable table: speed as mean ± sd with min…max, time to first token, memory, roofline.
    Table,
    /// llama-bench's markdown table (model, size, params, backend, threads, test, t/s).
    Markdown,
    /// Comma-separated llama-bench fields and lmdensity's scalar fields, one row per test.
    Csv,
    /// A JSON array of records.
    Json,
    /// One JSON record per line.
    Jsonl,
}

impl Format {
    /// The names `--output` accepts (`md` is the markdown table).
    pub const NAMES: &'static [&'static str] = &["table", "md", "csv", "json", "jsonl"];

    /// The format named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "table" => Some(Format::Table),
            "md" => Some(Format::Markdown),
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

fn size_label(bytes: u64) -> String {
    if bytes < 1 << 30 {
        format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

fn params_label(n: u64) -> String {
    if n < 1_000_000_000 {
        format!("{:.2} M", n as f64 / 1e6)
    } else {
        format!("{:.2} B", n as f64 / 1e9)
    }
}

#[derive(Tabled)]
struct MarkdownRow {
    model: String,
    size: String,
    params: String,
    backend: String,
    threads: u32,
    test: String,
    #[tabled(rename = "t/s")]
    ts: String,
}

#[derive(Tabled)]
struct WideRow {
    model: String,
    backend: String,
    threads: u32,
    test: String,
    #[tabled(rename = "t/s (mean ± σ)")]
    ts: String,
    #[tabled(rename = "min … max")]
    range: String,
    #[tabled(rename = "TTFT ms")]
    ttft: String,
    #[tabled(rename = "KV")]
    kv: String,
    #[tabled(rename = "peak RSS")]
    rss: String,
    #[tabled(rename = "roofline")]
    roofline: String,
}

/// The roofline column: decode efficiency for generation, GFLOP/s for prompt processing.
fn roofline_cell(r: &BenchRecord) -> String {
    match (r.decode_efficiency, r.prefill_gflops) {
        (Some(e), _) => format!(
            "{:.0}% of {:.1} GB/s",
            e * 100.0,
            r.bandwidth_gbs.unwrap_or(0.0)
        ),
        (None, Some(f)) => format!("{f:.1} GFLOP/s"),
        _ => "—".into(),
    }
}

/// CSV columns: llama-bench's scalar fields in its order, then lmdensity's.
const CSV_FIELDS: &[&str] = &[
    "build_commit",
    "build_number",
    "cpu_info",
    "gpu_info",
    "backends",
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "type_k",
    "type_v",
    "n_gpu_layers",
    "flash_attn",
    "use_mmap",
    "n_prompt",
    "n_gen",
    "n_depth",
    "test_time",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
    "engine",
    "test",
    "n_seq",
    "min_ts",
    "max_ts",
    "ttft_ms",
    "load_ms",
    "kv_bytes",
    "peak_rss_bytes",
    "gpu_mem_bytes",
    "bandwidth_gbs",
    "weight_bytes_per_token",
    "decode_efficiency",
    "prefill_gflops",
];

fn csv_cell(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Renders `records` in `format`.
pub fn render(records: &[BenchRecord], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(records).unwrap_or_default() + "\n",
        Format::Jsonl => records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
            .collect(),
        Format::Csv => {
            let mut out = CSV_FIELDS.join(",") + "\n";
            for r in records {
                let value = serde_json::to_value(r).unwrap_or_default();
                let cells: Vec<String> = CSV_FIELDS
                    .iter()
                    .map(|f| csv_cell(value.get(*f).unwrap_or(&serde_json::Value::Null)))
                    .collect();
                out += &(cells.join(",") + "\n");
            }
            out
        }
        Format::Markdown => {
            let rows = records.iter().map(|r| MarkdownRow {
                model: r.model_type.clone(),
                size: size_label(r.model_size),
                params: params_label(r.model_n_params),
                backend: r.backends.clone(),
                threads: r.n_threads,
                test: r.test.clone(),
                ts: format!("{:.2} ± {:.2}", r.avg_ts, r.stddev_ts),
            });
            let mut table = Table::new(rows);
            table.with(Style::markdown());
            format!("{table}\n")
        }
        Format::Table => {
            let rows = records.iter().map(|r| WideRow {
                model: r.model_type.clone(),
                backend: format!("{} {}", r.engine, r.backends),
                threads: r.n_threads,
                test: r.test.clone(),
                ts: format!("{:.2} ± {:.2}", r.avg_ts, r.stddev_ts),
                range: format!("{:.2} … {:.2}", r.min_ts, r.max_ts),
                ttft: r.ttft_ms.map_or("—".into(), |t| format!("{t:.1}")),
                kv: human_bytes(r.kv_bytes),
                rss: human_bytes(r.peak_rss_bytes),
                roofline: roofline_cell(r),
            });
            let mut table = Table::new(rows);
            table.with(Style::rounded());
            format!("{table}\n")
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record() -> BenchRecord {
        BenchRecord {
            build_commit: "abc".into(),
            build_number: 0,
            cpu_info: "AMD EPYC, 2 threads".into(),
            gpu_info: String::new(),
            backends: "CPU".into(),
            model_filename: "m.gguf".into(),
            model_type: "llama 134.5M Q4_1".into(),
            model_size: 100 << 20,
            model_n_params: 134_515_008,
            n_batch: 2048,
            n_ubatch: 512,
            n_threads: 2,
            type_k: "f16".into(),
            type_v: "f16".into(),
            n_gpu_layers: 0,
            flash_attn: -1,
            use_mmap: true,
            n_prompt: 0,
            n_gen: 128,
            n_depth: 0,
            test_time: "2026-11-23T00:00:00Z".into(),
            avg_ns: 1_000_000_000,
            stddev_ns: 0,
            avg_ts: 128.0,
            stddev_ts: 0.0,
            samples_ns: vec![1_000_000_000; 2],
            samples_ts: vec![128.0; 2],
            engine: "llama.cpp".into(),
            test: "tg128".into(),
            n_seq: 1,
            min_ts: 128.0,
            max_ts: 128.0,
            ttft_ms: None,
            load_ms: 50.0,
            kv_bytes: 3 << 20,
            peak_rss_bytes: 200 << 20,
            gpu_mem_bytes: None,
            bandwidth_gbs: Some(20.0),
            weight_bytes_per_token: 100 << 20,
            decode_efficiency: Some(0.67),
            prefill_gflops: None,
        }
    }

    #[test]
    fn csv_has_llama_bench_columns_and_one_row_per_test() {
        let csv = render(&[record(), record()], Format::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        let header: Vec<&str> = lines[0].split(',').collect();
        for field in [
            "model_type",
            "avg_ts",
            "stddev_ts",
            "n_prompt",
            "n_gen",
            "n_depth",
        ] {
            assert!(header.contains(&field), "{field}");
        }
        // The comma inside cpu_info is quoted, so every row has as many cells as the header.
        assert!(lines[1].contains("\"AMD EPYC, 2 threads\""));
        assert_eq!(lines[1].matches(',').count(), header.len());
    }

    #[test]
    fn json_and_jsonl_round_trip() {
        let json = render(&[record()], Format::Json);
        let back: Vec<BenchRecord> = serde_json::from_str(&json).expect("json");
        assert_eq!(back, [record()]);
        let jsonl = render(&[record(), record()], Format::Jsonl);
        assert_eq!(jsonl.lines().count(), 2);
        let first: serde_json::Value =
            serde_json::from_str(jsonl.lines().next().expect("line")).expect("jsonl");
        assert_eq!(first["samples_ts"][1], 128.0);
        assert_eq!(first["flash_attn"], -1);
    }

    #[test]
    fn tables_show_speed_memory_and_roofline() {
        let md = render(&[record()], Format::Markdown);
        assert!(md.contains("| llama 134.5M Q4_1 | 100.00 MiB | 134.52 M | CPU"));
        assert!(md.contains("128.00 ± 0.00"));
        let table = render(&[record()], Format::Table);
        assert!(table.contains("128.00 … 128.00"));
        assert!(table.contains("67% of 20.0 GB/s"));
        assert!(table.contains("200.0 MiB"));
    }
}
