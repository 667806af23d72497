//! The scoring primitive's hot paths: turning one logits row into a target log-probability
//! (`score_logits`: max, log-sum-exp, argmax) at the vocabulary widths of the registry models,
//! and gathering the target log-probabilities of a whole 512-token window (`score_rows`, as the
//! llama.cpp backend does after each decode), serially and on two threads.
//! Run: `cargo bench -p lmdensity-benchmarks --bench scoring`.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lmdensity_backend::{score_logits, score_rows, TokenId};

fn logits(n: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0
        })
        .collect()
}

fn bench_score_logits(c: &mut Criterion) {
    let mut group = c.benchmark_group("score_logits");
    // SmolLM2 (49,152), Qwen2.5 (151,936), Gemma 3 (262,144).
    for n_vocab in [49_152usize, 151_936, 262_144] {
        let row = logits(n_vocab);
        group.throughput(Throughput::Elements(n_vocab as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n_vocab), &row, |b, row| {
            b.iter(|| score_logits(std::hint::black_box(row), 17))
        });
    }
    group.finish();
}

fn bench_score_rows(c: &mut Criterion) {
    let mut group = c.benchmark_group("score_rows_512");
    group.sample_size(20);
    for n_vocab in [49_152usize, 262_144] {
        let window: Vec<f32> = logits(512 * n_vocab);
        let rows: Vec<(usize, &[f32], TokenId)> = window
            .chunks(n_vocab)
            .enumerate()
            .map(|(p, row)| (p, row, (p * 31 % n_vocab) as TokenId))
            .collect();
        group.throughput(Throughput::Elements(512));
        for threads in [1usize, 2] {
            group.bench_with_input(
                BenchmarkId::new(format!("vocab{n_vocab}"), format!("{threads}t")),
                &rows,
                |b, rows| b.iter(|| score_rows(0, std::hint::black_box(rows), threads, None)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_score_logits, bench_score_rows);
criterion_main!(benches);
