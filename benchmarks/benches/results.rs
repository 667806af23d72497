//! Results serialization: writing and reading `samples.jsonl` lines (10,042 HellaSwag-sized
//! task items of four choices, the largest task file) and `metrics.json`-sized metric lists,
//! through the one results schema.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmdensity_core::{ChoiceScore, ItemSample, Metric, Sample};

fn items(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|index| {
            Sample::TaskItem(ItemSample {
                index,
                gold: index % 4,
                choices: (0..4)
                    .map(|c| ChoiceScore {
                        loglikelihood: -(index as f64 * 0.37 + c as f64 * 1.3) % 60.0,
                        is_greedy: c == 0,
                        n_tokens: 12 + c,
                        n_chars: 55 + 3 * c,
                        n_bytes: 56 + 3 * c,
                    })
                    .collect(),
            })
        })
        .collect()
}

fn bench_samples(c: &mut Criterion) {
    let samples = items(10_042);
    let jsonl: String = samples
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default() + "\n")
        .collect();
    let mut group = c.benchmark_group("samples_jsonl");
    group.sample_size(20);
    group.throughput(Throughput::Elements(samples.len() as u64));
    group.bench_function("write_10042_items", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(jsonl.len());
            for s in &samples {
                serde_json::to_writer(&mut out, s).unwrap_or_default();
                out.push(b'\n');
            }
            out.len()
        })
    });
    group.bench_function("read_10042_items", |b| {
        b.iter(|| {
            jsonl
                .lines()
                .filter_map(|l| serde_json::from_str::<Sample>(l).ok())
                .count()
        })
    });
    group.finish();

    let metrics: Vec<Metric> = (0..200)
        .map(|i| Metric {
            name: format!("task{i}/acc"),
            value: 0.5,
            stderr: Some(0.01),
            unit: "fraction".into(),
            how: "mean over items of [argmax of log-likelihood = gold]".into(),
        })
        .collect();
    c.bench_function("metrics_json_200", |b| {
        b.iter(|| serde_json::to_vec_pretty(&metrics).map(|v| v.len()))
    });
}

criterion_group!(benches, bench_samples);
criterion_main!(benches);
