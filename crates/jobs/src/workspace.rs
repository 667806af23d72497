//! Where jobs read and write: the results store, the model registry, the caches, and whether
//! engines may print their own logs. Every job takes one [`Workspace`].

use std::path::{Path, PathBuf};

use lmdensity_core::{progress, ResultsStore};
use lmdensity_hub::{Fetcher, Registry};

use crate::error::Result;

/// The registry compiled into the binary, used when no models.toml is found.
pub const BUILTIN_REGISTRY: &str = include_str!("../../../models.toml");

/// The settings every job shares.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The results store's directory.
    pub results_dir: PathBuf,
    /// The model registry (default: ./models.toml if present, else [`BUILTIN_REGISTRY`]).
    pub registry: Option<PathBuf>,
    /// Let llama.cpp print its own logs to stderr.
    pub verbose: bool,
}

impl Workspace {
    /// A workspace on `results_dir` with the default registry.
    pub fn new(results_dir: impl Into<PathBuf>) -> Self {
        Workspace {
            results_dir: results_dir.into(),
            registry: None,
            verbose: false,
        }
    }

    /// The results store.
    pub fn store(&self) -> ResultsStore {
        ResultsStore::new(&self.results_dir)
    }

    /// The fetcher for models and data (cache from `LMDENSITY_CACHE` or the default; quiet as
    /// the process is).
    pub fn fetcher(&self) -> Fetcher {
        Fetcher::from_env(progress::is_quiet())
    }

    /// The model registry: the one given, else ./models.toml, else the built-in copy.
    pub fn registry(&self) -> Result<Registry> {
        let local = PathBuf::from("models.toml");
        Ok(match &self.registry {
            Some(path) => Registry::load(path)?,
            None if local.is_file() => Registry::load(&local)?,
            None => Registry::parse(BUILTIN_REGISTRY, Path::new("<built-in models.toml>"))?,
        })
    }
}
