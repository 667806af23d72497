//! Conversion jobs: a GGUF to an HF-format directory of dequantized weights (for candle at full
//! precision), or to one GGUF dequantized to F32 (the base of a quantization sweep).

use std::path::{Path, PathBuf};

use lmdensity_candle::convert::{DequantizedGguf, Provenance};
use lmdensity_hub::gguf;

use crate::bail;
use crate::error::Result;
use crate::model::{candle_tokenizer, dtype_of, resolve_gguf, ModelSpec};
use crate::workspace::Workspace;

/// What `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertFormat {
    /// An HF-format directory for candle (config.json, model.safetensors, tokenizer.json).
    Hf,
    /// One GGUF with every tensor dequantized to f32 and all metadata kept.
    GgufF32,
}

impl ConvertFormat {
    /// The names [`ConvertFormat::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["hf", "gguf-f32"];

    /// The format named `name` (`hf`, `gguf-f32`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hf" => Some(ConvertFormat::Hf),
            "gguf-f32" => Some(ConvertFormat::GgufF32),
            _ => None,
        }
    }
}

/// Converts the GGUF `model` names into `out`.
#[derive(Debug, Clone)]
pub struct ConvertJob {
    /// The GGUF; `dtype` is the stored dtype, `tokenizer` the tokenizer.json to ship.
    pub model: ModelSpec,
    /// Output directory, or with [`ConvertFormat::GgufF32`] the file.
    pub out: PathBuf,
    /// What to write.
    pub format: ConvertFormat,
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The directory or file written.
    pub path: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
    /// Where the weights came from and how they are stored.
    pub label: String,
    /// Tensors without an HF counterpart, left out.
    pub skipped: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
}

impl ConvertJob {
    /// Runs the conversion.
    pub fn run(&self, ws: &Workspace) -> Result<Converted> {
        let started = std::time::Instant::now();
        if self.format == ConvertFormat::GgufF32 {
            let (resolved, _) = resolve_gguf(ws, &self.model, false)?;
            let (label, done) = dequantize_gguf(resolved.weights(), &self.out)?;
            return Ok(Converted {
                path: self.out.clone(),
                tensors: done.tensors,
                bytes: done.bytes,
                label,
                skipped: Vec::new(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let (resolved, registry_json) = resolve_gguf(ws, &self.model, true)?;
        let weights = resolved.weights().to_path_buf();
        let header = gguf::read(&weights)?;
        let tokenizer = candle_tokenizer(&self.model, registry_json.as_deref(), &weights, &header)?;
        let dtype = dtype_of(self.model.dtype);
        let provenance = Provenance {
            source: weights.display().to_string(),
            source_sha256: resolved.sha256[0].clone(),
            quantization: header.quantization(),
            stored_as: format!("{dtype:?}").to_lowercase(),
            tokenizer: tokenizer.describe(),
            converter: format!("lmdensity {}", env!("CARGO_PKG_VERSION")),
        };
        let done = lmdensity_candle::convert::gguf_to_hf(
            &weights,
            &self.out,
            dtype,
            &tokenizer,
            &provenance,
        )?;
        Ok(Converted {
            path: done.dir,
            tensors: done.tensors,
            bytes: done.bytes,
            label: provenance.label(),
            skipped: done.skipped,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Writes `gguf` dequantized to an F32 GGUF at `out` (refusing to overwrite a file); returns
/// the new file's quantization label (`F32, dequantized from Q4_1`) and what was written.
pub fn dequantize_gguf(gguf: &Path, out: &Path) -> Result<(String, DequantizedGguf)> {
    if out.exists() {
        bail!("{}: already exists; choose a new file name", out.display());
    }
    let source = gguf::read(gguf)?.quantization();
    let done = lmdensity_candle::convert::gguf_to_f32_gguf(
        gguf,
        out,
        (gguf::DEQUANTIZED_FROM_KEY, &source),
    )?;
    Ok((gguf::read(out)?.quantization(), done))
}
