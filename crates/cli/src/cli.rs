//! Command-line arguments (clap derive). Values here are parsed but not yet checked against
//! files or hardware; `commands` does that.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Measure open language models: perplexity (lm-eval and llama.cpp semantics) through llama.cpp,
/// with a model registry, verified fetching and a resumable results store.
#[derive(Debug, Parser)]
#[command(name = "lmdensity", version)]
pub struct Cli {
    /// Model registry (default: ./models.toml if present, else the registry built into the binary).
    #[arg(long, global = true, env = "LMDENSITY_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// Results store directory.
    #[arg(
        long,
        global = true,
        default_value = "results",
        env = "LMDENSITY_RESULTS"
    )]
    pub results_dir: PathBuf,
    /// No progress bars or chatter (bars are also off when stdout is not a terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Let llama.cpp print its own logs to stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: fetch a model (default: the registry's default), measure PTB test
    /// perplexity in both modes, print the table.
    Run(RunArgs),
    /// Measure perplexity of a model on a corpus.
    Ppl(PplArgs),
    /// Download and verify models into the cache.
    Fetch {
        /// Model ids from the registry.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the models in the registry.
    Models,
    /// Fetch a corpus and write its text (documents joined by blank lines), e.g. to feed
    /// llama.cpp's own tools the exact text lmdensity measures.
    Corpus {
        /// ptb-test, ptb-valid, brown, lambada.
        name: String,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the runs in the results store as a table.
    Report {
        /// Show every metric, not only the headline ones.
        #[arg(long)]
        all: bool,
        /// Show only these metrics (repeatable), e.g. `--metric bits_per_byte`.
        #[arg(long, conflicts_with = "all")]
        metric: Vec<String>,
    },
}

/// Which model to load.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Registry model id (see `lmdensity models`).
    #[arg(long, short, conflicts_with = "model_path")]
    pub model: Option<String>,
    /// A local GGUF file to measure instead of a registry model.
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// CPU threads (default: all logical CPUs).
    #[arg(long, short)]
    pub threads: Option<u32>,
    /// Tokens per llama_decode call.
    #[arg(long, default_value_t = 512)]
    pub batch_size: u32,
    /// Layers to offload to the GPU (builds with `--features cuda`).
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
}

/// Perplexity semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// lm-evaluation-harness loglikelihood_rolling (bits per byte, word/byte/token perplexity).
    Harness,
    /// llama-perplexity chunks (PPL ± stderr).
    #[value(name = "llama.cpp", alias = "llamacpp")]
    LlamaCpp,
    /// Both, one run each.
    Both,
}

/// Arguments of `ppl`.
#[derive(Debug, Args, Clone)]
pub struct PplArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Corpus: ptb-test, ptb-valid, brown, lambada, or a path to a UTF-8 text file.
    #[arg(long, short, default_value = "ptb-test")]
    pub corpus: String,
    /// Perplexity semantics.
    #[arg(long, value_enum, default_value = "harness")]
    pub mode: Mode,
    /// Harness mode: tokens per window (default: min(model context, 2048)).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// llama.cpp mode: chunk length.
    #[arg(long, default_value_t = 512)]
    pub n_ctx: usize,
    /// Continue the newest unfinished run with the same model and settings.
    #[arg(long)]
    pub resume: bool,
}

/// Arguments of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The model (default: the registry's default model).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Corpus.
    #[arg(long, short, default_value = "ptb-test")]
    pub corpus: String,
    /// Continue unfinished runs.
    #[arg(long)]
    pub resume: bool,
}
