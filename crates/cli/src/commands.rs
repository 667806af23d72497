//! What each command does: resolve files and hardware, load the model, run the metric, store
//! and print results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use lmdensity_core::schema::{RunManifest, SoftwareRecord};
use lmdensity_core::store::{resume_key, StoredRun};
use lmdensity_core::{progress, ResultsStore, RunHandle, RunMetrics, SCHEMA_VERSION};
use lmdensity_eval::perplexity::Distributions;
use lmdensity_eval::{corpus, perplexity, BaseHeader, BaseReader, BaseWriter, PerplexityMode};
use lmdensity_hub::{Fetcher, Registry};
use serde_json::json;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::cli::{Cli, Command, Mode, PplArgs};
pub(crate) use crate::engine::{load_engine, load_engine_with, Engine};

/// The registry compiled into the binary, used when no models.toml is found.
const BUILTIN_REGISTRY: &str = include_str!("../../../models.toml");

/// Parses arguments and runs the command.
pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    progress::set_quiet(cli.quiet);
    match &cli.command {
        Command::Run(args) => {
            let ppl = |mode| PplArgs {
                model: args.model.clone(),
                corpus: args.corpus.clone(),
                corpus_bytes: None,
                mode,
                max_length: None,
                n_ctx: 512,
                resume: args.resume,
                kld: Default::default(),
            };
            let runs = measure_perplexity(&cli, &ppl(Mode::Both))?;
            print_table(&runs, &MetricFilter::Headline);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ppl(args) => {
            let runs = measure_perplexity(&cli, args)?;
            print_table(&runs, &MetricFilter::Headline);
            Ok(ExitCode::SUCCESS)
        }
        Command::Fetch { ids } => {
            let registry = load_registry(&cli)?;
            let fetcher = Fetcher::from_env(cli.quiet);
            for id in ids {
                let entry = registry.get(id)?;
                let resolved = fetcher.resolve(entry, &registry.base_dir())?;
                for (path, sha) in resolved.paths.iter().zip(&resolved.sha256) {
                    println!(
                        "{id}\t{}\tsha256:{sha}\t({})",
                        path.display(),
                        resolved.source
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Models => {
            let registry = load_registry(&cli)?;
            print_models(&registry);
            Ok(ExitCode::SUCCESS)
        }
        Command::Corpus { name, output } => {
            let corpus = corpus::load(name, &Fetcher::from_env(cli.quiet))?;
            let text = corpus.joined();
            match output {
                Some(path) => std::fs::write(path, &text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(text.as_bytes())?;
                }
            }
            eprintln!(
                "{}: {} documents, {} bytes, sha256 {} ({})",
                corpus.name,
                corpus.documents.len(),
                text.len(),
                corpus.sha256,
                corpus.origin
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let runs = crate::evaluate::evaluate(&cli, args)?;
            print_table(&runs, &MetricFilter::Headline);
            Ok(ExitCode::SUCCESS)
        }
        Command::Fit(args) => {
            crate::analyses::fit_command(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Density(args) => {
            crate::analyses::density_command(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trend(args) => {
            crate::analyses::trend_command(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { run_a, run_b, json } => {
            crate::compare::compare_command(&cli, run_a, run_b, *json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            crate::bench::bench(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert(args) => {
            crate::engine::convert(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Quantize(args) => {
            crate::sweep::quantize_command(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SweepQuant(args) => {
            crate::sweep::sweep_quant(&cli, args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            if args.html.is_some() || args.md.is_some() {
                crate::report::write_reports(&cli, args)?;
                return Ok(ExitCode::SUCCESS);
            }
            let runs = ResultsStore::new(&cli.results_dir).runs()?;
            if runs.is_empty() {
                println!("no runs in {}", cli.results_dir.display());
            } else {
                let filter = match (args.all, args.metric.is_empty()) {
                    (true, _) => MetricFilter::All,
                    (false, false) => MetricFilter::Only(args.metric.clone()),
                    (false, true) => MetricFilter::Headline,
                };
                print_table(&runs, &filter);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn load_registry(cli: &Cli) -> Result<Registry> {
    let explicit = cli.registry.clone();
    let local = PathBuf::from("models.toml");
    match explicit {
        Some(path) => Ok(Registry::load(&path)?),
        None if local.is_file() => Ok(Registry::load(&local)?),
        None => Ok(Registry::parse(
            BUILTIN_REGISTRY,
            Path::new("<built-in models.toml>"),
        )?),
    }
}

/// `ppl`: perplexity runs of one model on one corpus, one per mode.
pub(crate) fn measure_perplexity(cli: &Cli, args: &PplArgs) -> Result<Vec<StoredRun>> {
    let engine = load_engine(cli, &args.model)?;
    let (resolved, model, model_record) = (&engine.resolved, &engine.model, &engine.record);
    let fetcher = Fetcher::from_env(cli.quiet);
    let mut corpus = corpus::load(&args.corpus, &fetcher)?;
    if let Some(bytes) = args.corpus_bytes {
        corpus = corpus.truncated(bytes);
        if corpus.n_bytes() == 0 {
            bail!(
                "--corpus-bytes {bytes} keeps no whole line of {}",
                args.corpus
            );
        }
    }
    let n_ctx_train = model.info().n_ctx_train;
    let modes: Vec<PerplexityMode> = {
        let harness = || -> Result<PerplexityMode> {
            let max_length = args.max_length.unwrap_or(n_ctx_train.min(2048));
            if max_length == 0 || max_length > n_ctx_train {
                bail!("--max-length {max_length} must be between 1 and the model's context {n_ctx_train}");
            }
            Ok(PerplexityMode::Harness { max_length })
        };
        let llama = || -> Result<PerplexityMode> {
            if args.n_ctx < 4 || args.n_ctx > n_ctx_train {
                bail!(
                    "--n-ctx {} must be between 4 and the model's context {n_ctx_train}",
                    args.n_ctx
                );
            }
            Ok(PerplexityMode::LlamaCpp { n_ctx: args.n_ctx })
        };
        match args.mode {
            Mode::Harness => vec![harness()?],
            Mode::LlamaCpp => vec![llama()?],
            Mode::Both => vec![harness()?, llama()?],
        }
    };
    let kld = &args.kld;
    if (kld.save_kld_base.is_some() || kld.kld_base.is_some()) && modes.len() > 1 {
        bail!("--save-kld-base and --kld-base need one --mode (harness or llama.cpp), not both");
    }
    if kld.kld_top_k == 0 {
        bail!("--kld-top-k must be at least 1");
    }
    if kld.save_kld_base.is_some() && args.resume {
        bail!("--save-kld-base writes the base in one pass over the corpus; it cannot resume");
    }
    let store = ResultsStore::new(&cli.results_dir);
    let mut finished = Vec::new();
    for mode in modes {
        let header = BaseHeader {
            model: model_record.id.clone(),
            model_sha256: model_record.sha256.clone(),
            quantization: model_record.quantization.clone(),
            backend: engine.backend_label(),
            corpus: corpus.name.clone(),
            corpus_sha256: corpus.sha256.clone(),
            mode: mode.name().into(),
            context: mode.context_needed(),
            n_vocab: model.info().n_vocab,
            top_k: kld.kld_top_k,
        };
        let mut reader = match &kld.kld_base {
            Some(path) => {
                let reader = BaseReader::open(path)?;
                reader
                    .header()
                    .check_same_windows(&header)
                    .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
                Some(reader)
            }
            None => None,
        };
        let mut settings: BTreeMap<String, serde_json::Value> = [
            ("corpus", json!(corpus.name)),
            ("corpus_sha256", json!(corpus.sha256)),
            ("corpus_origin", json!(corpus.origin)),
            ("corpus_documents", json!(corpus.documents.len())),
            ("corpus_bytes", json!(corpus.n_bytes())),
            ("mode", json!(mode.name())),
            (
                match mode {
                    PerplexityMode::Harness { .. } => "max_length",
                    PerplexityMode::LlamaCpp { .. } => "n_ctx",
                },
                json!(mode.context_needed()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let (Some(path), Some(reader)) = (&kld.kld_base, &reader) {
            let base = reader.header();
            settings.insert(
                "kld_base".into(),
                json!({
                    "path": path.display().to_string(),
                    "sha256": lmdensity_hub::fetch::hash_file(path, false)?,
                    "bytes": std::fs::metadata(path)?.len(),
                    "model": base.model,
                    "model_sha256": base.model_sha256,
                    "quantization": base.quantization,
                    "backend": base.backend,
                    "top_k": base.top_k,
                    "scored_tokens": reader.n_rows(),
                }),
            );
        }
        let key = resume_key(&json!({
            "model_sha256": model_record.sha256,
            "backend": engine.backend_label(),
            "kind": "perplexity",
            "settings": settings,
        }));
        // Saving the distributions does not change the scores: not part of the key.
        if let Some(path) = &kld.save_kld_base {
            settings.insert(
                "kld_base_saved".into(),
                json!({"path": path.display().to_string(), "top_k": kld.kld_top_k}),
            );
        }
        if args.resume && kld.save_kld_base.is_none() {
            if let Some(done) = store.find_complete(&key)? {
                if !progress::is_quiet() {
                    eprintln!(
                        "{}: already complete in {}",
                        label_of(&corpus, mode),
                        done.dir.display()
                    );
                }
                finished.push(done);
                continue;
            }
        }
        // The engine context and the base file are made only for a run that will compute.
        let mut session = model.session(mode.context_needed())?;
        let mut writer = match &kld.save_kld_base {
            Some(path) => Some(BaseWriter::create(path, &header)?),
            None => None,
        };
        let label = label_of(&corpus, mode);
        let mut handle = open_run(&store, args.resume, &key, "windows", || {
            run_manifest(&engine, "perplexity", &label, settings, key.clone())
        })?;
        let distributions = match (&mut writer, &mut reader) {
            (Some(w), _) => Distributions::SaveBase(w),
            (None, Some(r)) => Distributions::CompareWith(r),
            (None, None) => Distributions::Ignore,
        };
        let result = with_progress(
            &format!("{} {} ({})", resolved.id, corpus.name, mode.name()),
            "tokens",
            |on_progress| {
                perplexity::run_with(
                    session.as_mut(),
                    &corpus,
                    mode,
                    &mut handle,
                    distributions,
                    on_progress,
                )
            },
        );
        finished.push(finish_run(&handle, result, "perplexity run", "windows")?);
        if let (Some(writer), Some(path)) = (writer, &kld.save_kld_base) {
            let rows = writer.rows();
            let bytes = writer.finish()?;
            if !progress::is_quiet() {
                eprintln!(
                    "KL-divergence base written to {} ({rows} scored tokens × top-{} = {:.1} MB, {} bytes per token)",
                    path.display(),
                    kld.kld_top_k,
                    bytes as f64 / 1e6,
                    header.row_bytes()
                );
            }
        }
    }
    Ok(finished)
}

/// The run-directory label of a perplexity run: `ppl-<corpus file name>-<mode>`.
fn label_of(corpus: &corpus::Corpus, mode: PerplexityMode) -> String {
    let corpus_label = Path::new(&corpus.name)
        .file_name()
        .map_or(corpus.name.clone(), |n| n.to_string_lossy().into_owned());
    format!("ppl-{}-{}", sanitize(&corpus_label), sanitize(mode.name()))
}

/// Reopens the newest unfinished run with `key` when resuming, else starts a new one from
/// `manifest`. `unit` names what a sample is (windows, items).
pub(crate) fn open_run(
    store: &ResultsStore,
    resume: bool,
    key: &str,
    unit: &str,
    manifest: impl FnOnce() -> RunManifest,
) -> Result<RunHandle> {
    if resume {
        if let Some(handle) = store.find_resumable(key)? {
            if !progress::is_quiet() {
                eprintln!(
                    "resuming {} ({} {unit} already scored)",
                    handle.dir().display(),
                    handle.finished_samples().len()
                );
            }
            return Ok(handle);
        }
    }
    Ok(store.create_run(manifest())?)
}

/// The finished run, or the error with where the kept samples are and how to continue.
pub(crate) fn finish_run<E>(
    handle: &RunHandle,
    result: std::result::Result<RunMetrics, E>,
    what: &str,
    unit: &str,
) -> Result<StoredRun>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let metrics = result.with_context(|| {
        format!(
            "{what} {} (finished {unit} are kept; rerun with --resume)",
            handle.dir().display()
        )
    })?;
    Ok(StoredRun {
        dir: handle.dir().to_path_buf(),
        manifest: handle.manifest().clone(),
        metrics: Some(metrics),
    })
}

/// Runs `work` with a progress bar that it advances through `(done, total)` calls.
pub(crate) fn with_progress<T>(
    message: &str,
    unit: &str,
    work: impl FnOnce(&mut dyn FnMut(usize, usize)) -> T,
) -> T {
    let bar = progress::bar(0, message, unit);
    let result = work(&mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    result
}

/// A file-name-safe version of `s`.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The manifest of a new run of `kind` (`perplexity`, `task`) on `engine`; `label` names the
/// run's directory after the model.
pub(crate) fn run_manifest(
    engine: &Engine,
    kind: &str,
    label: &str,
    mut settings: BTreeMap<String, serde_json::Value>,
    key: String,
) -> RunManifest {
    let now = chrono::Utc::now();
    let run_id = format!(
        "{}-{}-{}-{}",
        now.format("%Y%m%dT%H%M%S"),
        sanitize(&engine.record.id),
        label,
        &key[..8]
    );
    settings.insert("model_source".into(), json!(engine.resolved.source));
    RunManifest {
        schema_version: SCHEMA_VERSION,
        run_id,
        kind: kind.into(),
        started_at: now.to_rfc3339(),
        model: engine.record.clone(),
        backend: engine.backend_record(),
        hardware: engine.hardware.clone(),
        software: SoftwareRecord {
            lmdensity_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: env!("LMDENSITY_GIT_REVISION").into(),
            target_features: env!("LMDENSITY_TARGET_FEATURES").into(),
            crate_versions: [
                (
                    "llama-cpp-2".to_string(),
                    lmdensity_llamacpp::LLAMA_CPP_2_VERSION.to_string(),
                ),
                (
                    "candle-core".to_string(),
                    lmdensity_candle::CANDLE_VERSION.to_string(),
                ),
            ]
            .into_iter()
            .collect(),
        },
        settings,
        resume_key: key,
    }
}

#[derive(Tabled)]
struct Row {
    model: String,
    backend: String,
    quant: String,
    corpus: String,
    mode: String,
    metric: String,
    value: String,
    status: String,
}

const HEADLINE: &[&str] = &[
    "kld_mean",
    "kld_p99",
    "delta_p_rms",
    "same_top_rate",
    "ln_ppl_ratio",
    "bits_per_byte",
    "byte_perplexity",
    "word_perplexity",
    "token_perplexity",
    "perplexity",
];

fn fmt_value(value: f64, stderr: Option<f64>) -> String {
    match stderr {
        Some(se) => format!("{value:.4} ± {se:.4}"),
        None => format!("{value:.4}"),
    }
}

/// Which metrics a table shows.
enum MetricFilter {
    /// bits per byte, the perplexities, task accuracies and conditional loss.
    Headline,
    /// Everything.
    All,
    /// These names.
    Only(Vec<String>),
}

impl MetricFilter {
    fn keeps(&self, name: &str) -> bool {
        match self {
            MetricFilter::Headline => {
                HEADLINE.contains(&name)
                    || ["/acc", "/acc_norm", "/perplexity", "/gold_bits_per_byte"]
                        .iter()
                        .any(|suffix| name.ends_with(suffix))
            }
            MetricFilter::All => true,
            MetricFilter::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

fn rows(runs: &[StoredRun], filter: &MetricFilter) -> Vec<Row> {
    let mut out = Vec::new();
    for run in runs {
        let m = &run.manifest;
        let setting = |k: &str| {
            m.settings
                .get(k)
                .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                .unwrap_or_default()
        };
        let mode = match (
            setting("mode").as_str(),
            m.settings.get("max_length"),
            m.settings.get("n_ctx"),
        ) {
            ("harness", Some(l), _) => format!("harness/{l}"),
            ("llama.cpp", _, Some(n)) => format!("llama.cpp/{n}"),
            (other, _, _) => other.to_string(),
        };
        let corpus = Path::new(&setting("corpus"))
            .file_name()
            .map_or(setting("corpus"), |n| n.to_string_lossy().into_owned());
        let base = |metric: String, value: String, status: String| Row {
            model: m.model.id.clone(),
            backend: format!("{} ({}t)", m.backend.name, m.backend.threads),
            quant: m.model.quantization.clone(),
            corpus: corpus.clone(),
            mode: mode.clone(),
            metric,
            value,
            status,
        };
        match &run.metrics {
            None => out.push(base(
                "—".into(),
                "no metrics yet (running, or interrupted: --resume)".into(),
                "partial".into(),
            )),
            Some(RunMetrics {
                metrics, status, ..
            }) => {
                let status = format!("{status:?}").to_lowercase();
                for metric in metrics.iter().filter(|x| filter.keeps(&x.name)) {
                    out.push(base(
                        metric.name.clone(),
                        fmt_value(metric.value, metric.stderr),
                        status.clone(),
                    ));
                }
            }
        }
    }
    out
}

fn print_table(runs: &[StoredRun], filter: &MetricFilter) {
    let mut table = Table::new(rows(runs, filter));
    table.with(Style::markdown());
    println!("{table}");
}

fn print_models(registry: &Registry) {
    #[derive(Tabled)]
    struct M {
        id: String,
        family: String,
        params: String,
        released: String,
        variant: String,
        format: String,
        quant: String,
        sources: String,
    }
    let rows: Vec<M> = registry
        .models
        .iter()
        .map(|m| M {
            id: if m.id == registry.default_model {
                format!("{} (default)", m.id)
            } else {
                m.id.clone()
            },
            family: m.family.clone(),
            params: format!("{:.1}M", m.params as f64 / 1e6),
            released: m.release_date.clone(),
            variant: m.variant.clone(),
            format: m.format.clone(),
            quant: m.quantization.clone(),
            sources: m
                .sources
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(" → "),
        })
        .collect();
    let mut t = Table::new(rows);
    t.with(Style::markdown());
    println!("{t}");
}
