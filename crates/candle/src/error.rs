//! What can go wrong reading, checking or converting a model: every error names the file and,
//! where there is one, the tensor or metadata key it concerns.

use std::path::PathBuf;

/// The architectures the candle backend runs, as error messages list them.
pub const SUPPORTED: &str = "llama, qwen2, gemma3 (HF model_type llama, qwen2, gemma3_text/gemma3)";

/// An error of the candle backend: a weights file, a config or a conversion that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CandleError {
    /// A file or directory could not be read, written, created or renamed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// candle failed on a whole file (loading or saving safetensors, writing a GGUF).
    #[error("{}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What candle said.
        source: Box<candle_core::Error>,
    },
    /// A file's GGUF header could not be parsed.
    #[error("{}: not a readable GGUF: {source}", .path.display())]
    UnreadableGguf {
        /// The file.
        path: PathBuf,
        /// What candle's GGUF reader said.
        source: Box<candle_core::Error>,
    },
    /// A safetensors file's header is malformed (length, JSON, offsets) or the file is
    /// truncated.
    #[error("{}: corrupt safetensors file: {source}", .path.display())]
    CorruptSafetensors {
        /// The shard.
        path: PathBuf,
        /// What the safetensors crate said.
        source: safetensors::SafeTensorError,
    },
    /// A checkpoint directory holds no `*.safetensors` file.
    #[error("{}: no *.safetensors files", .dir.display())]
    NoSafetensors {
        /// The directory.
        dir: PathBuf,
    },
    /// A JSON file (such as the provenance file) is not what it should be.
    #[error("{}: {source}", .path.display())]
    BadJson {
        /// The file.
        path: PathBuf,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A value could not be serialized to JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The tokenizer could not be written.
    #[error(transparent)]
    Tokenizer(#[from] lmdensity_tokenizer::TokenizerError),
    /// A GGUF lacks a tensor the decoder needs.
    #[error("{}: missing tensor {tensor}", .file.display())]
    MissingGgufTensor {
        /// The GGUF.
        file: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
    },
    /// An HF checkpoint lacks a tensor the decoder needs.
    #[error(
        "{}: missing tensor {tensor} (truncated checkpoint, or config.json for another model?)",
        .dir.display()
    )]
    MissingCheckpointTensor {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The tensor's HF name.
        tensor: String,
    },
    /// A tensor's shape is not the one the config implies.
    #[error(
        "{}: tensor {tensor} has shape {got:?} but the config implies {want:?} (weights and config.json disagree)",
        .file.display()
    )]
    Shape {
        /// The file holding the tensor.
        file: PathBuf,
        /// The tensor's name in that file.
        tensor: String,
        /// Its shape.
        got: Vec<usize>,
        /// The shape the config implies.
        want: Vec<usize>,
    },
    /// A tensor's data could not be read from a GGUF or dequantized.
    #[error("{}: tensor {tensor}: {source}", .file.display())]
    ReadTensor {
        /// The GGUF.
        file: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// What candle said.
        source: Box<candle_core::Error>,
    },
    /// An operation on a loaded tensor failed (dtype conversion, dequantization, reshaping).
    #[error("{}: {tensor}: {source}", .file.display())]
    TensorOp {
        /// The file the tensor came from.
        file: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// What candle said.
        source: Box<candle_core::Error>,
    },
    /// Turning a Gemma norm weight `w` into `1 + w` failed.
    #[error("{tensor}: {source}")]
    NormWeight {
        /// The tensor's GGUF name.
        tensor: String,
        /// What candle said.
        source: Box<candle_core::Error>,
    },
    /// A GGUF's metadata lacks a key the decoder needs.
    #[error("no {key} in the metadata")]
    MissingMetadata {
        /// The key, e.g. `llama.block_count`.
        key: String,
    },
    /// A GGUF metadata value has the wrong type.
    #[error("{key}: {source}")]
    MetadataType {
        /// The key.
        key: String,
        /// What candle said.
        source: Box<candle_core::Error>,
    },
    /// A GGUF has no `token_embd.weight`, so its vocabulary size is unknown.
    #[error("no token_embd.weight tensor")]
    NoEmbedding,
    /// A GGUF's `general.architecture` is not one the decoder implements.
    #[error(
        "architecture `{name}` is not supported by the candle backend; supported: {SUPPORTED}"
    )]
    UnsupportedArchitecture {
        /// The architecture named by the GGUF.
        name: String,
    },
    /// A GGUF asks for a RoPE scaling the decoder does not implement.
    #[error(
        "{}: RoPE scaling `{kind}` is not implemented by the candle backend",
        .file.display()
    )]
    UnsupportedGgufRopeScaling {
        /// The GGUF.
        file: PathBuf,
        /// Its `rope.scaling.type`.
        kind: String,
    },
    /// A `config.json` has no `model_type`.
    #[error("no model_type")]
    NoModelType,
    /// A `config.json`'s `model_type` is not one the decoder implements.
    #[error("model_type `{name}` is not supported by the candle backend; supported: {SUPPORTED}")]
    UnsupportedModelType {
        /// The `model_type`.
        name: String,
    },
    /// A `config.json` lacks an integer field the decoder needs.
    #[error("no integer `{key}`")]
    MissingField {
        /// The field, e.g. `hidden_size`.
        key: String,
    },
    /// A `config.json` asks for a `rope_scaling` the decoder does not implement.
    #[error("rope_scaling `{kind}` is not implemented by the candle backend")]
    UnsupportedHfRopeScaling {
        /// Its `rope_type` (or `type`), `?` when it has neither.
        kind: String,
    },
    /// A config with a zero dimension (the config, as Rust's debug output prints it).
    #[error("degenerate shape: {0}")]
    DegenerateShape(String),
    /// Query heads that cannot be grouped over the key/value heads.
    #[error("{heads} query heads are not a multiple of {kv_heads} key/value heads")]
    HeadsNotMultiple {
        /// Query heads.
        heads: usize,
        /// Key/value heads.
        kv_heads: usize,
    },
    /// An odd head width (RoPE rotates pairs of dimensions).
    #[error("head_dim {head_dim} is odd: RoPE needs pairs")]
    OddHeadDim {
        /// The head width.
        head_dim: usize,
    },
    /// A conversion's output directory already holds a model.
    #[error("{}: already holds a model; choose an empty directory", .dir.display())]
    OutputNotEmpty {
        /// The output directory.
        dir: PathBuf,
    },
    /// A broken invariant of this crate (a bug, not a bad file).
    #[error("internal: {0}")]
    Internal(String),
}

impl CandleError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| CandleError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_can_travel_between_threads_and_into_anyhow_style_wrappers() {
        fn assert_bounds<T: std::error::Error + Send + Sync + 'static>() {}
        assert_bounds::<CandleError>();
        let e = CandleError::UnsupportedArchitecture {
            name: "mamba".into(),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "architecture `mamba` is not supported by the candle backend; supported: {SUPPORTED}"
            )
        );
        let e = CandleError::MissingCheckpointTensor {
            dir: PathBuf::from("ckpt"),
            tensor: "lm_head.weight".into(),
        };
        assert_eq!(
            e.to_string(),
            "ckpt: missing tensor lm_head.weight (truncated checkpoint, or config.json for another model?)"
        );
    }
}
