//! Tokenizing a corpus: the PTB test set (449,945 bytes) through llama.cpp's tokenizer of a
//! real model, as `lmdensity ppl` does before scoring. Needs the model and the corpus in
//! lmdensity's cache (`lmdensity fetch smollm2-135m-instruct`, `lmdensity corpus ptb-test`);
//! set `LMDENSITY_BENCH_GGUF` to use another GGUF. Without them the benchmark says so and
//! measures nothing.
#![allow(missing_docs)]

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lmdensity_eval::corpus;
use lmdensity_hub::Fetcher;
use lmdensity_llamacpp::{LlamaCppConfig, LlamaCppModel};

fn model_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LMDENSITY_BENCH_GGUF") {
        return Some(PathBuf::from(path));
    }
    let cache = std::env::var_os("LMDENSITY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lmdensity")))?;
    let path = cache.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.is_file().then_some(path)
}

fn bench_tokenize(c: &mut Criterion) {
    let Some(path) = model_path() else {
        eprintln!("tokenize: no cached SmolLM2 GGUF (run `lmdensity fetch smollm2-135m-instruct`); skipped");
        return;
    };
    let corpus = match corpus::load("ptb-test", &Fetcher::from_env(true)) {
        Ok(corpus) => corpus,
        Err(e) => {
            eprintln!("tokenize: PTB test set unavailable ({e}); skipped");
            return;
        }
    };
    let model = match LlamaCppModel::load(&path, LlamaCppConfig::default()) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("tokenize: {e}; skipped");
            return;
        }
    };
    let mut group = c.benchmark_group("tokenize");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(corpus.n_bytes() as u64));
    group.bench_function("ptb-test/smollm2", |b| {
        b.iter(|| {
            corpus
                .documents
                .iter()
                .map(|d| model.tokenize(d, false).len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_tokenize);
criterion_main!(benches);
