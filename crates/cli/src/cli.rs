//! Command-line arguments (clap derive) and their conversion into jobs. Values here are parsed
//! but not yet checked against files or hardware; the jobs do that. Defaults come from the
//! jobs' own constants, so the command line and the library cannot disagree.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use lmdensity_jobs as jobs;
use lmdensity_jobs::{ModelSpec, PerplexityJob, TaskJob};

/// Measure open language models — perplexity (lm-eval and llama.cpp semantics) and downstream
/// tasks through llama.cpp, with a model registry, verified fetching and a resumable results
/// store — and fit the laws: loss→error, scaling, effective parameter size, density trend.
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
    /// No progress bars or chatter (bars are also off when stderr is not a terminal).
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
    /// Score downstream tasks (lm-evaluation-harness prompts and metrics, 0-shot).
    Eval(EvalArgs),
    /// Throughput and memory, as llama-bench measures them: prompt processing (pp), generation
    /// (tg), both (pg), at a cache depth, with parallel sequences; plus peak memory and the
    /// memory-bandwidth roofline.
    Bench(BenchArgs),
    /// Two runs side by side: every metric with the ratio B/A and whether the difference
    /// exceeds their standard errors, and the settings that differ (before/after a checkpoint,
    /// a quantization, a build).
    Compare {
        /// Run A: a run directory, or a run id (or unique prefix) in the results store.
        run_a: String,
        /// Run B, the same way.
        run_b: String,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
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
    /// Fit a law: `gadre` reproduces Gadre et al.'s loss and error laws on their released runs;
    /// `runs` fits any law to the results store, `csv` to columns of a CSV file.
    Fit(FitArgs),
    /// Effective parameter size N̂ and density ρ = N̂/N against the Pythia reference family.
    Density(DensityArgs),
    /// Density trend ln ρ = A·t + B over release dates, with the doubling time.
    Trend(TrendArgs),
    /// Print the runs in the results store as a table; with `--html`/`--md`, write a report
    /// with plots (loss→error, scaling, density trend, throughput, quality frontier, tasks).
    Report(ReportArgs),
    /// Dequantize a GGUF into an HF-format directory (config.json, model.safetensors,
    /// tokenizer.json) that candle runs at full precision; the directory records what it was
    /// dequantized from, and every run on it says so.
    Convert(ConvertArgs),
    /// Quantize an F32/F16 GGUF with llama.cpp's quantizer (Q8_0 … Q2_K).
    Quantize(QuantizeArgs),
    /// Quantization sweep: dequantize a model to F32 (the base), make each quantized variant,
    /// and measure bits/byte, KL divergence against the base, tasks, speed and memory per
    /// variant; one table, the quality/speed/size frontier per bit.
    SweepQuant(SweepArgs),
    /// Expand a sweep spec (TOML: models × engines × quantizations × perplexity runs, task
    /// groups, bench plans) into a plan of cells with content-addressed ids.
    Plan {
        /// The sweep spec.
        spec: PathBuf,
        /// Where the plan goes.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Run cells of a plan into the results store, resuming what it holds: one by index
    /// (`--index`, else SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX) or a shard.
    RunCell(RunCellArgs),
    /// Run a plan on Slurm: `submit` its unfinished cells as one job array, `status` of each.
    Slurm {
        /// What to do.
        #[command(subcommand)]
        action: SlurmAction,
    },
}

/// Arguments of `run-cell`.
#[derive(Debug, Args, Clone)]
pub struct RunCellArgs {
    /// The plan (from `lmdensity plan`).
    #[arg(long)]
    pub plan: PathBuf,
    /// The cell's index.
    #[arg(long, conflicts_with = "shard")]
    pub index: Option<usize>,
    /// Every N-th cell from k (k/N, k from 0), one after another, for plain machines.
    #[arg(long, value_name = "k/N")]
    pub shard: Option<String>,
    /// CPU threads (default: SLURM_CPUS_PER_TASK, else all logical CPUs).
    #[arg(long, short)]
    pub threads: Option<u32>,
    /// Run cells whose record says complete again.
    #[arg(long)]
    pub fresh: bool,
}

/// `slurm` actions.
#[derive(Debug, Subcommand, Clone)]
pub enum SlurmAction {
    /// Write the sbatch array script for the plan's unfinished cells and submit it.
    Submit(SubmitArgs),
    /// Each cell: complete, running, pending, failed (why), interrupted or not started.
    Status {
        /// The plan.
        #[arg(long)]
        plan: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `slurm submit`; resources are passed to sbatch as given.
#[derive(Debug, Args, Clone)]
pub struct SubmitArgs {
    /// The plan; it and `--results-dir` must be on storage every node sees.
    #[arg(long)]
    pub plan: PathBuf,
    /// `#SBATCH --partition`.
    #[arg(long)]
    pub partition: Option<String>,
    /// `#SBATCH --time`.
    #[arg(long)]
    pub time: Option<String>,
    /// `#SBATCH --cpus-per-task` (also each cell's threads).
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// `#SBATCH --mem`.
    #[arg(long)]
    pub mem: Option<String>,
    /// `#SBATCH --gres`, e.g. gpu:1.
    #[arg(long)]
    pub gres: Option<String>,
    /// At most K array tasks at once.
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<usize>,
    /// Print the script instead of submitting it.
    #[arg(long)]
    pub dry_run: bool,
}

/// `lmdensity report` options.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// Show every metric, not only the headline ones.
    #[arg(long)]
    pub all: bool,
    /// Show only these metrics (repeatable), e.g. `--metric bits_per_byte`.
    #[arg(long, conflicts_with = "all")]
    pub metric: Vec<String>,
    /// Write a self-contained HTML report (inline SVG plots, no network fetches) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the report as Markdown (`DIR/report.md`) with PNG and SVG plots in `DIR/figures/`.
    #[arg(long, value_name = "DIR")]
    pub md: Option<PathBuf>,
    /// Also read runs and analyses from this results store (repeatable); the report covers
    /// `--results-dir` and every `--include`.
    #[arg(long, value_name = "DIR")]
    pub include: Vec<PathBuf>,
}

/// Which model to load.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Registry model id (see `lmdensity models`).
    #[arg(long, short, conflicts_with = "model_path")]
    pub model: Option<String>,
    /// A local GGUF file, or an HF-format directory (config.json, *.safetensors,
    /// tokenizer.json; runs on candle), to measure instead of a registry model.
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Engine: llama.cpp (GGUF; the default for GGUF files) or candle (GGUF with candle's
    /// quantized kernels; HF directories always run on candle).
    #[arg(long, value_parser = names(jobs::EngineChoice::NAMES, jobs::EngineChoice::parse))]
    pub backend: Option<jobs::EngineChoice>,
    /// Dtype candle holds an HF directory's matrices in (activations stay f32).
    #[arg(long, default_value = "f32", value_parser = names(jobs::Dtype::NAMES, jobs::Dtype::parse))]
    pub dtype: jobs::Dtype,
    /// tokenizer.json for candle on a GGUF (default: the registry's, else rebuilt from the
    /// GGUF's vocabulary, which works for byte-level BPE vocabularies only).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// CPU threads (default: all logical CPUs).
    #[arg(long, short)]
    pub threads: Option<u32>,
    /// Tokens per llama_decode call.
    #[arg(long, default_value_t = ModelSpec::DEFAULT_BATCH_SIZE)]
    pub batch_size: u32,
    /// Layers to offload to the GPU (builds with `--features cuda`).
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// Read the weights into memory instead of memory-mapping the file.
    #[arg(long)]
    pub no_mmap: bool,
}

/// Arguments of `convert`.
#[derive(Debug, Args, Clone)]
pub struct ConvertArgs {
    /// The GGUF (`--model`/`--model-path`); `--dtype` is the stored dtype, `--tokenizer` the
    /// tokenizer.json to ship (default: the registry's, else rebuilt from the GGUF).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (created; must not hold a model); with `--format gguf-f32`, the file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// What to write: hf, an HF-format directory for candle (config.json, model.safetensors,
    /// tokenizer.json); gguf-f32, one GGUF with every tensor dequantized to f32 and all
    /// metadata kept (the input of `lmdensity quantize`, the base of a quantization sweep).
    #[arg(long, default_value = "hf", value_parser = names(jobs::ConvertFormat::NAMES, jobs::ConvertFormat::parse))]
    pub format: jobs::ConvertFormat,
}

/// Arguments of `quantize`.
#[derive(Debug, Args, Clone)]
pub struct QuantizeArgs {
    /// An F32/F16/BF16 GGUF (e.g. from `convert --format gguf-f32`).
    #[arg(long)]
    pub input: PathBuf,
    /// Target type: Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K.
    #[arg(long = "type", short = 't')]
    pub kind: String,
    /// Output GGUF.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Threads (default: all logical CPUs).
    #[arg(long)]
    pub threads: Option<u32>,
}

/// Arguments of `sweep-quant`.
#[derive(Debug, Args, Clone)]
pub struct SweepArgs {
    /// Registry model id: its GGUF is dequantized to F32 (the base) and re-quantized.
    pub model: String,
    /// Types to make and measure, comma-separated.
    #[arg(long, default_value = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K")]
    pub types: String,
    /// Perplexity and KL-divergence corpus.
    #[arg(long, short, default_value = "ptb-test")]
    pub corpus: String,
    /// Only the first N bytes of the corpus (whole lines).
    #[arg(long, value_name = "N")]
    pub corpus_bytes: Option<usize>,
    /// Harness-mode window (default: min(model context, 2048)).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Tasks to score each variant on (`none`: no tasks).
    #[arg(long, default_value = "arc_easy")]
    pub tasks: String,
    /// Items per task (first N; default: all).
    #[arg(long)]
    pub task_limit: Option<usize>,
    /// Timed repetitions of the pp512 and tg128 speed tests.
    #[arg(long, default_value_t = 3)]
    pub bench_repetitions: usize,
    /// Where the variants are made (default: the model cache's `quantized/<model>/`).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Where the table goes: `sweep.json` and `sweep.md` (default: `<results-dir>/sweep-quant/<model>`).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Measure every variant again instead of keeping the rows already in `sweep.json`.
    #[arg(long)]
    pub fresh: bool,
}

/// Arguments of `ppl`.
#[derive(Debug, Args, Clone)]
pub struct PplArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Corpus: ptb-test, ptb-valid, brown, lambada, or a path to a UTF-8 text file.
    #[arg(long, short, default_value = PerplexityJob::DEFAULT_CORPUS)]
    pub corpus: String,
    /// Measure only the first N bytes of the corpus (whole lines; the run records the slice).
    #[arg(long, value_name = "N")]
    pub corpus_bytes: Option<usize>,
    /// Perplexity semantics: harness (lm-eval's loglikelihood_rolling: bits per byte, word,
    /// byte and token perplexity), llama.cpp (llama-perplexity chunks, PPL ± stderr), both.
    #[arg(long, default_value = "harness", value_parser = names(jobs::Modes::NAMES, jobs::Modes::parse))]
    pub mode: jobs::Modes,
    /// Harness mode: tokens per window (default: min(model context, 2048)).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// llama.cpp mode: chunk length.
    #[arg(long, default_value_t = PerplexityJob::DEFAULT_N_CTX)]
    pub n_ctx: usize,
    /// Continue the newest unfinished run with the same model and settings (a complete one
    /// is reused as it is).
    #[arg(long)]
    pub resume: bool,
    /// KL divergence against a base run.
    #[command(flatten)]
    pub kld: KldArgs,
}

/// KL-divergence options of `ppl` (llama-perplexity's `--kl-divergence-base` and
/// `--kl-divergence`).
#[derive(Debug, Args, Clone)]
pub struct KldArgs {
    /// Store every scored token's distribution (top-k plus residual mass) in FILE as the base
    /// of later KL-divergence runs; one pass, not resumable.
    #[arg(long, value_name = "FILE", conflicts_with = "kld_base")]
    pub save_kld_base: Option<PathBuf>,
    /// Compare every scored token's distribution with the base stored in FILE: KLD, Δp,
    /// same-top-token rate and ln(PPL/PPL_base).
    #[arg(long, value_name = "FILE")]
    pub kld_base: Option<PathBuf>,
    /// Tokens per row the base stores (with --save-kld-base).
    #[arg(long, default_value_t = jobs::KldSpec::default().top_k)]
    pub kld_top_k: usize,
}

/// Arguments of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The model (default: the registry's default model).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Corpus.
    #[arg(long, short, default_value = PerplexityJob::DEFAULT_CORPUS)]
    pub corpus: String,
    /// Continue unfinished runs.
    #[arg(long)]
    pub resume: bool,
}

/// Settings shared by every fit.
#[derive(Debug, Args, Clone)]
pub struct FitSettings {
    /// Bootstrap resamples for the confidence intervals (default 1000; `fit curve`: 50).
    #[arg(long, global = true)]
    pub bootstrap: Option<usize>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0, global = true)]
    pub seed: u64,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = jobs::FitSettings::default().confidence, global = true)]
    pub confidence: f64,
    /// Print the full result as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Arguments of `fit`.
#[derive(Debug, Args, Clone)]
pub struct FitArgs {
    /// What to fit.
    #[command(subcommand)]
    pub target: FitTarget,
    /// Fit settings.
    #[command(flatten)]
    pub settings: FitSettings,
}

/// What `fit` fits.
#[derive(Debug, Subcommand, Clone)]
pub enum FitTarget {
    /// Gadre et al. 2024 on their released runs: the over-training loss law on the paper's fit
    /// set, the loss→error law, and predictions for the held-out 1.4B (M = 640) and 6.9B models.
    Gadre {
        /// Their `exp_data` directory (default: the copy shipped with lmdensity).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Training set: rpj, c4_original, rw_original.
        #[arg(long, default_value = "rpj")]
        dataset: String,
        /// Validation loss: c4_val, paloma_ptb, …
        #[arg(long, default_value = "c4_val")]
        eval_set: String,
    },
    /// Any law on values from the results store, joined per model: metric names of complete
    /// runs (e.g. `bits_per_byte`), `params` (from the run), `tokens` and `release_days`
    /// (days since 2023-01-01, from the registry).
    Runs {
        /// Law to fit.
        #[arg(long, value_parser = names(jobs::LawName::NAMES, jobs::LawName::parse))]
        law: jobs::LawName,
        /// Input fields, in the law's order (`--x N --x D`, or `--x N,D`).
        #[arg(long, required = true)]
        x: Vec<String>,
        /// Output field.
        #[arg(long)]
        y: String,
    },
    /// Any law on columns of a CSV file.
    Csv {
        /// The CSV file (with a header row).
        file: PathBuf,
        /// Law to fit.
        #[arg(long, value_parser = names(jobs::LawName::NAMES, jobs::LawName::parse))]
        law: jobs::LawName,
        /// Input columns, in the law's order (`--x N --x D`, or `--x N,D`).
        #[arg(long, required = true)]
        x: Vec<String>,
        /// Output column.
        #[arg(long)]
        y: String,
        /// Column naming each row (default: row numbers).
        #[arg(long)]
        label: Option<String>,
    },
    /// A run's loss curve (CSV step,lr,loss): fit to the steps so far, predict the final loss
    /// with a moving-block residual-bootstrap interval — is the run worth continuing?
    Curve {
        /// The CSV file.
        file: PathBuf,
        /// mpl: Multi-Power Law (Luo et al. 2025); tissue: Tissue et al. 2024.
        #[arg(long, default_value = "mpl", value_parser = names(jobs::CurveLawName::NAMES, jobs::CurveLawName::parse))]
        law: jobs::CurveLawName,
        /// cosine_T, constant_T, wsd_D_T, wsdld_D_T, wsdcon_K (Luo et al.'s), or logged (the
        /// lr column, linear between logged steps); default: the file's stem if it names one.
        #[arg(long, value_name = "NAME")]
        lr_schedule: Option<String>,
        /// Fit only the steps ≤ STEP (default: all).
        #[arg(long, value_name = "STEP")]
        fit_until: Option<usize>,
        /// Predict the loss at STEP (default: the schedule's last step, else the file's).
        #[arg(long, value_name = "STEP")]
        predict_to: Option<usize>,
    },
    /// Luo et al. 2025's protocol on one size of their loss curves: fit on cosine_24000,
    /// constant_24000, wsdcon_9, predict six others; their published figures beside.
    LossCurves {
        /// The folder (csv_25, csv_100, csv_400; shipped in crates/laws/data/multipower-law).
        #[arg(long)]
        data: PathBuf,
    },
}

/// A value parser accepting `names` (listed in `--help`), parsed by `parse`.
fn names<T: Clone + Send + Sync + 'static>(
    names: &'static [&'static str],
    parse: fn(&str) -> Option<T>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names).try_map(move |name| parse(&name).ok_or("unknown name"))
}

/// Arguments of `density`.
#[derive(Debug, Args, Clone)]
pub struct DensityArgs {
    /// Models: registry ids (their task results in the results store), or rows of the
    /// open-models table by name. With none, every comparable row of the table.
    pub models: Vec<String>,
    /// Scores of a model not in the table, as TASK=ACCURACY (repeatable; 0–1), with --params.
    #[arg(long, value_name = "TASK=ACC")]
    pub score: Vec<String>,
    /// Parameter count of the model given by --score.
    #[arg(long)]
    pub params: Option<f64>,
    /// Name of the model given by --score.
    #[arg(long, default_value = "model")]
    pub name: String,
    /// A sweep-quant table (sweep.json): N̂, ρ, N̂ per GB and × tg128 t/s of each variant.
    #[arg(long)]
    pub sweep: Option<PathBuf>,
    /// Reference settings.
    #[command(flatten)]
    pub reference: ReferenceArgs,
    /// Fit settings.
    #[command(flatten)]
    pub settings: FitSettings,
}

/// How the reference family is fitted and read, and which open-models table is placed on it.
#[derive(Debug, Args, Clone)]
pub struct ReferenceArgs {
    /// Open-models table (default: the one shipped with lmdensity).
    #[arg(long)]
    pub table: Option<PathBuf>,
    /// Token budget D₀ at which N̂ is read off (default: Pythia's own 299,892,736,000).
    #[arg(long)]
    pub d0: Option<f64>,
    /// Pythia checkpoints with fewer tokens seen are left out of the reference fit.
    #[arg(long, default_value_t = jobs::ReferenceSpec::default().min_tokens)]
    pub min_tokens: f64,
    /// Leave out estimates of N̂ beyond this multiple of the largest Pythia (12B).
    #[arg(long, default_value_t = jobs::ReferenceSpec::default().max_extrapolation)]
    pub max_extrapolation: f64,
    /// leaderboard: ObsScaling's 148 models, one protocol (trend's default); zero-shot: Pythia's 0-shot route (density's default).
    #[arg(long, value_parser = names(jobs::analysis::Protocol::NAMES, jobs::analysis::Protocol::parse))]
    pub protocol: Option<jobs::analysis::Protocol>,
    /// Reference family on the leaderboard protocol (a one-recipe family of the same table).
    #[arg(long = "reference", default_value = "pythia", value_parser = names(jobs::analysis::FamilyName::NAMES, jobs::analysis::FamilyName::parse))]
    pub family: jobs::analysis::FamilyName,
    /// Reference score on the leaderboard protocol (arc-hs-wg: mean of ARC-c, HellaSwag, WinoGrande).
    #[arg(long, default_value = "arc-hs-wg", value_parser = names(jobs::analysis::LeaderboardScore::NAMES, jobs::analysis::LeaderboardScore::parse))]
    pub reference_score: jobs::analysis::LeaderboardScore,
}

/// Arguments of `trend`.
#[derive(Debug, Args, Clone)]
pub struct TrendArgs {
    /// Reference settings.
    #[command(flatten)]
    pub reference: ReferenceArgs,
    /// Fit settings.
    #[command(flatten)]
    pub settings: FitSettings,
}

/// Arguments of `eval`.
#[derive(Debug, Args, Clone)]
pub struct EvalArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tasks and groups, comma-separated (`core` = arc_easy, arc_challenge, hellaswag, piqa,
    /// winogrande, boolq, openbookqa, sciq, copa; `commonsense` = arc_easy, arc_challenge,
    /// piqa, winogrande; `mmlu` = its 57 subjects; `lambada` = lambada_openai).
    #[arg(long, default_value = "core")]
    pub tasks: String,
    /// Score only the first N items of each task (as lm-eval's --limit).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Few-shot examples before each item (MMLU draws them from its dev split in order; other
    /// tasks draw them at random from the evaluated split, never the item itself).
    #[arg(long, default_value_t = 0)]
    pub num_fewshot: usize,
    /// Seed of the few-shot sampler.
    #[arg(long, default_value_t = TaskJob::DEFAULT_SEED)]
    pub seed: u64,
    /// packed: many items per decode call; batch-invariant: one item per call, ubatches ≤ 32
    /// (bit-reproducible); independent: every choice from an empty cache (README "Numerics")
    #[arg(long, default_value = "packed", value_parser = names(jobs::Scoring::NAMES, jobs::Scoring::parse))]
    pub scoring: jobs::Scoring,
    /// Task declarations (default: the tasks.toml built into the binary).
    #[arg(long)]
    pub tasks_file: Option<PathBuf>,
    /// Continue the newest unfinished run of each task with the same model and settings.
    #[arg(long)]
    pub resume: bool,
    /// Also write the results as lm-evaluation-harness does (`results` → task → `acc,none`,
    /// `acc_stderr,none`, …), for tools that read its output.
    #[arg(long, value_name = "FILE")]
    pub lm_eval_json: Option<PathBuf>,
    /// Generative tasks: render prompts with the model's own chat template (lm-eval's
    /// --apply_chat_template).
    #[arg(long)]
    pub apply_chat_template: bool,
    /// With --apply-chat-template: few-shot examples as user/assistant turns of their own.
    #[arg(long)]
    pub fewshot_as_multiturn: bool,
    /// With --apply-chat-template: a system message before the prompt.
    #[arg(long, value_name = "TEXT")]
    pub system_prompt: Option<String>,
    /// Generative tasks: sequences decoded at once (llama.cpp).
    #[arg(long, default_value_t = TaskJob::DEFAULT_PARALLEL)]
    pub parallel: usize,
}

/// Arguments of `bench`. Size flags take comma lists (`-p 128,512`); every combination runs.
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Registry model id (see `lmdensity models`; default: the registry's default).
    #[arg(long, short, conflicts_with = "model_path")]
    pub model: Option<String>,
    /// A local GGUF file instead of a registry model.
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Engine: llama.cpp (default) or candle (its quantized kernels on the same GGUF;
    /// sequences decoded one after another).
    #[arg(long, value_parser = names(jobs::EngineChoice::NAMES, jobs::EngineChoice::parse))]
    pub backend: Option<jobs::EngineChoice>,
    /// tokenizer.json for candle (only its vocabulary size matters here).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt-processing tests: prompt lengths (`none`: no pp tests).
    #[arg(
        long = "n-prompt",
        short = 'p',
        allow_hyphen_values = true,
        default_value = "512"
    )]
    pub n_prompt: String,
    /// Generation tests: tokens generated (`none`: no tg tests).
    #[arg(
        long = "n-gen",
        short = 'n',
        allow_hyphen_values = true,
        default_value = "128"
    )]
    pub n_gen: String,
    /// Combined tests: PROMPT,GEN pairs, several separated by `;` (`512,128;1024,256`).
    #[arg(long = "pg", allow_hyphen_values = true)]
    pub prompt_gen: Option<String>,
    /// Tokens already in the cache before the timed part (`pp512 @ d1024`).
    #[arg(
        long = "n-depth",
        short = 'd',
        allow_hyphen_values = true,
        default_value = "0"
    )]
    pub n_depth: String,
    /// Tokens per decode call in prompt processing (llama-bench -b).
    #[arg(long, short = 'b', default_value = "2048", allow_hyphen_values = true)]
    pub batch_size: String,
    /// Tokens per physical batch (llama-bench -ub).
    #[arg(long, default_value = "512", allow_hyphen_values = true)]
    pub ubatch_size: String,
    /// CPU threads (default: all logical CPUs).
    #[arg(long, short, allow_hyphen_values = true)]
    pub threads: Option<String>,
    /// Sequences processed together (llama-batched-bench's parallel).
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    pub parallel: String,
    /// Timed repetitions per test.
    #[arg(long, short, default_value_t = jobs::BenchJob::DEFAULT_REPETITIONS)]
    pub repetitions: usize,
    /// Untimed warm-up runs per test (a full prompt and one generated token each).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Output format, printed to stdout (every record also goes to the results store): table
    /// (mean ± σ, min … max, TTFT, memory, roofline), md (llama-bench's markdown), csv
    /// (llama-bench's fields and lmdensity's), json (an array), jsonl (a record per line).
    #[arg(long, short, default_value = "table", value_parser = names(lmdensity_bench::Format::NAMES, lmdensity_bench::Format::parse))]
    pub output: lmdensity_bench::Format,
    /// Skip the memory-bandwidth measurement (no decode efficiency).
    #[arg(long)]
    pub no_roofline: bool,
    /// Seed of the random token ids.
    #[arg(long, default_value_t = jobs::BenchJob::DEFAULT_SEED)]
    pub seed: u64,
    /// Layers to offload to the GPU (builds with `--features cuda`).
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// Read the weights into memory instead of memory-mapping the file (llama-bench -mmp 0).
    #[arg(long)]
    pub no_mmap: bool,
    /// Memory the run may use, e.g. `8G`, `512M` (default: what the system reports available);
    /// the model is refused before loading when weights + KV cache exceed it.
    #[arg(long)]
    pub memory_budget: Option<String>,
}
