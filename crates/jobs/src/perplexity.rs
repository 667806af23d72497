//! Perplexity jobs: one resumable run per mode of one model on one corpus, optionally saving or
//! comparing whole distributions (KL divergence against a base run).

use std::path::{Path, PathBuf};

use lmdensity_core::progress;
use lmdensity_core::store::StoredRun;
use lmdensity_eval::perplexity::{self, Distributions};
use lmdensity_eval::{corpus, BaseHeader, BaseReader, BaseWriter, PerplexityMode};
use serde_json::json;

use crate::error::{Context, Result};
use crate::model::{self, Engine, ModelSpec};
use crate::run::{self, sanitize, settings, Opened, RunSpec};
use crate::workspace::Workspace;
use crate::{bail, JobError};

/// Which perplexity semantics to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes {
    /// lm-evaluation-harness loglikelihood_rolling.
    Harness,
    /// llama-perplexity chunks.
    LlamaCpp,
    /// Both, one run each.
    Both,
}

impl Modes {
    /// The names `--mode` accepts: harness (lm-eval's loglikelihood_rolling: bits per byte,
    /// word/byte/token perplexity), llama.cpp (llama-perplexity chunks: PPL ± stderr), both.
    pub const NAMES: &'static [&'static str] = &["harness", "llama.cpp", "llamacpp", "both"];

    /// The modes named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "harness" => Some(Modes::Harness),
            "llama.cpp" | "llamacpp" => Some(Modes::LlamaCpp),
            "both" => Some(Modes::Both),
            _ => None,
        }
    }
}

/// KL divergence against a base run (llama-perplexity's `--kl-divergence-base` and
/// `--kl-divergence`).
#[derive(Debug, Clone, PartialEq)]
pub struct KldSpec {
    /// Store every scored token's distribution here (a fresh, single-mode run).
    pub save_base: Option<PathBuf>,
    /// Compare every scored token's distribution with the base stored here.
    pub compare_with: Option<PathBuf>,
    /// Tokens per row a saved base stores.
    pub top_k: usize,
}

impl Default for KldSpec {
    /// No KL divergence; a base would store the default top-k.
    fn default() -> Self {
        KldSpec {
            save_base: None,
            compare_with: None,
            top_k: lmdensity_eval::kld::DEFAULT_TOP_K,
        }
    }
}

/// Perplexity of one model on one corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct PerplexityJob {
    /// The model.
    pub model: ModelSpec,
    /// Corpus: ptb-test, ptb-valid, brown, lambada, or a path to a UTF-8 text file.
    pub corpus: String,
    /// Only the first N bytes of the corpus (whole lines).
    pub corpus_bytes: Option<usize>,
    /// Which semantics.
    pub modes: Modes,
    /// Harness mode: tokens per window (default: min(model context, 2048)).
    pub max_length: Option<usize>,
    /// llama.cpp mode: chunk length.
    pub n_ctx: usize,
    /// Reuse a complete run with the same key, continue an unfinished one.
    pub resume: bool,
    /// KL divergence.
    pub kld: KldSpec,
}

impl PerplexityJob {
    /// llama.cpp mode's chunk length unless told otherwise (llama-perplexity's default).
    pub const DEFAULT_N_CTX: usize = 512;
    /// The corpus unless told otherwise.
    pub const DEFAULT_CORPUS: &'static str = "ptb-test";

    /// Harness mode on PTB test, every setting at its default.
    pub fn new(model: ModelSpec) -> Self {
        PerplexityJob {
            model,
            corpus: Self::DEFAULT_CORPUS.into(),
            corpus_bytes: None,
            modes: Modes::Harness,
            max_length: None,
            n_ctx: Self::DEFAULT_N_CTX,
            resume: false,
            kld: KldSpec::default(),
        }
    }

    /// Loads the model and measures; returns one finished run per mode.
    pub fn run(&self, ws: &Workspace) -> Result<Vec<StoredRun>> {
        let engine = model::load(ws, &self.model)?;
        self.run_on(ws, &engine)
    }

    /// Measures on an engine already loaded.
    pub fn run_on(&self, ws: &Workspace, engine: &Engine) -> Result<Vec<StoredRun>> {
        let mut corpus = corpus::load(&self.corpus, &ws.fetcher())?;
        if let Some(bytes) = self.corpus_bytes {
            corpus = corpus.truncated(bytes);
            if corpus.n_bytes() == 0 {
                bail!(
                    "--corpus-bytes {bytes} keeps no whole line of {}",
                    self.corpus
                );
            }
        }
        let modes = self.modes(engine.model.info().n_ctx_train)?;
        self.check_kld(modes.len())?;
        let store = ws.store();
        let mut finished = Vec::new();
        for mode in modes {
            finished.push(self.run_mode(&store, engine, &corpus, mode)?);
        }
        Ok(finished)
    }

    fn modes(&self, n_ctx_train: usize) -> Result<Vec<PerplexityMode>> {
        let harness = || -> Result<PerplexityMode> {
            let max_length = self.max_length.unwrap_or(n_ctx_train.min(2048));
            if max_length == 0 || max_length > n_ctx_train {
                bail!("--max-length {max_length} must be between 1 and the model's context {n_ctx_train}");
            }
            Ok(PerplexityMode::Harness { max_length })
        };
        let llama = || -> Result<PerplexityMode> {
            if self.n_ctx < 4 || self.n_ctx > n_ctx_train {
                bail!(
                    "--n-ctx {} must be between 4 and the model's context {n_ctx_train}",
                    self.n_ctx
                );
            }
            Ok(PerplexityMode::LlamaCpp { n_ctx: self.n_ctx })
        };
        Ok(match self.modes {
            Modes::Harness => vec![harness()?],
            Modes::LlamaCpp => vec![llama()?],
            Modes::Both => vec![harness()?, llama()?],
        })
    }

    fn check_kld(&self, n_modes: usize) -> Result<()> {
        let kld = &self.kld;
        if (kld.save_base.is_some() || kld.compare_with.is_some()) && n_modes > 1 {
            bail!(
                "--save-kld-base and --kld-base need one --mode (harness or llama.cpp), not both"
            );
        }
        if kld.top_k == 0 {
            bail!("--kld-top-k must be at least 1");
        }
        if kld.save_base.is_some() && self.resume {
            bail!("--save-kld-base writes the base in one pass over the corpus; it cannot resume");
        }
        Ok(())
    }

    fn run_mode(
        &self,
        store: &lmdensity_core::ResultsStore,
        engine: &Engine,
        corpus: &corpus::Corpus,
        mode: PerplexityMode,
    ) -> Result<StoredRun> {
        let kld = &self.kld;
        let header = base_header(engine, corpus, mode, kld.top_k);
        let mut reader = match &kld.compare_with {
            Some(path) => Some(open_base(path, &header)?),
            None => None,
        };
        let mut spec = RunSpec {
            kind: "perplexity",
            label: label_of(corpus, mode),
            settings: settings([
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
            ]),
            unit: "windows",
        };
        if let (Some(path), Some(reader)) = (&kld.compare_with, &reader) {
            spec.settings
                .insert("kld_base".into(), base_record(path, reader)?);
        }
        // Saving the distributions does not change the scores: not part of the key.
        let extra = match &kld.save_base {
            Some(path) => settings([(
                "kld_base_saved",
                json!({"path": path.display().to_string(), "top_k": kld.top_k}),
            )]),
            None => Default::default(),
        };
        let resume = self.resume && kld.save_base.is_none();
        let mut handle = match run::open(store, engine, &spec, resume, extra)? {
            Opened::Complete(done) => return Ok(done),
            Opened::Open(handle) => handle,
        };
        // The engine context and the base file are made only for a run that will compute.
        let mut session = engine.model.session(mode.context_needed())?;
        let mut writer = match &kld.save_base {
            Some(path) => Some(BaseWriter::create(path, &header)?),
            None => None,
        };
        let distributions = match (&mut writer, &mut reader) {
            (Some(w), _) => Distributions::SaveBase(w),
            (None, Some(r)) => Distributions::CompareWith(r),
            (None, None) => Distributions::Ignore,
        };
        let result = progress::with_bar(
            &format!("{} {} ({})", engine.resolved.id, corpus.name, mode.name()),
            "tokens",
            |on_progress| {
                perplexity::run_with(
                    session.as_mut(),
                    corpus,
                    mode,
                    &mut handle,
                    distributions,
                    on_progress,
                )
            },
        );
        let done = run::finish(&handle, result, &spec)?;
        if let (Some(writer), Some(path)) = (writer, &kld.save_base) {
            let rows = writer.rows();
            let bytes = writer.finish()?;
            progress::say(format!(
                "KL-divergence base written to {} ({rows} scored tokens × top-{} = {:.1} MB, {} bytes per token)",
                path.display(),
                kld.top_k,
                bytes as f64 / 1e6,
                header.row_bytes()
            ));
        }
        Ok(done)
    }
}

/// What a base file made by this run would record, and what a compared base must match.
fn base_header(
    engine: &Engine,
    corpus: &corpus::Corpus,
    mode: PerplexityMode,
    top_k: usize,
) -> BaseHeader {
    BaseHeader {
        model: engine.record.id.clone(),
        model_sha256: engine.record.sha256.clone(),
        quantization: engine.record.quantization.clone(),
        backend: engine.backend_label(),
        corpus: corpus.name.clone(),
        corpus_sha256: corpus.sha256.clone(),
        mode: mode.name().into(),
        context: mode.context_needed(),
        n_vocab: engine.model.info().n_vocab,
        top_k,
    }
}

/// Opens a base file and checks that it scored the same windows as this run will.
fn open_base(path: &Path, header: &BaseHeader) -> Result<BaseReader> {
    let reader = BaseReader::open(path)?;
    reader
        .header()
        .check_same_windows(header)
        .map_err(|reason| JobError::Invalid(format!("{}: {reason}", path.display())))?;
    Ok(reader)
}

/// The manifest's record of the base a run is compared with.
fn base_record(path: &Path, reader: &BaseReader) -> Result<serde_json::Value> {
    let base = reader.header();
    Ok(json!({
        "path": path.display().to_string(),
        "sha256": lmdensity_hub::fetch::hash_file(path, false)?,
        "bytes": std::fs::metadata(path).with_context(|| path.display().to_string())?.len(),
        "model": base.model,
        "model_sha256": base.model_sha256,
        "quantization": base.quantization,
        "backend": base.backend,
        "top_k": base.top_k,
        "scored_tokens": reader.n_rows(),
    }))
}

/// The run-directory label of a perplexity run: `ppl-<corpus file name>-<mode>`.
fn label_of(corpus: &corpus::Corpus, mode: PerplexityMode) -> String {
    let corpus_label = Path::new(&corpus.name)
        .file_name()
        .map_or(corpus.name.clone(), |n| n.to_string_lossy().into_owned());
    format!("ppl-{}-{}", sanitize(&corpus_label), sanitize(mode.name()))
}
