//! `lmdensity convert`: a GGUF → an HF-format directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`) with every tensor dequantized to f32/bf16/f16,
//! and a provenance file saying so: runs on these weights must not pass for runs on originals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::{Architecture, DecoderConfig};
use crate::error::CandleError;
use crate::weights::{hf_name, WeightSource};
use crate::PROVENANCE_FILE;

/// Where converted weights came from (written as [`PROVENANCE_FILE`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// The GGUF converted.
    pub source: String,
    /// Its SHA-256.
    pub source_sha256: String,
    /// Its quantization (`Q4_K_M`…).
    pub quantization: String,
    /// Dtype the dequantized tensors were stored in.
    pub stored_as: String,
    /// The tokenizer.json's origin.
    pub tokenizer: String,
    /// lmdensity version that converted.
    pub converter: String,
}

impl Provenance {
    /// The label manifests use: `dequantized from Q4_K_M (stored f32)`.
    pub fn label(&self) -> String {
        format!(
            "dequantized from {} (stored {})",
            self.quantization, self.stored_as
        )
    }

    /// Reads `dir`'s provenance file, if it has one.
    pub fn read(dir: &Path) -> Result<Option<Self>, CandleError> {
        let path = dir.join(PROVENANCE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| CandleError::BadJson { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CandleError::Io { path, source }),
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The output directory.
    pub dir: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of `model.safetensors`.
    pub bytes: u64,
    /// GGUF tensors with no HF counterpart, left out (e.g. `rope_freqs.weight`).
    pub skipped: Vec<String>,
}

/// Inverse of llama.cpp's q/k row permutation for llama-type GGUFs (HF → GGUF interleaves the
/// two halves of each head's rotary pairs).
fn unpermute(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let dims = t.dims().to_vec();
    let out = dims[0];
    let half = out / heads / 2;
    let rest: usize = dims[1..].iter().product();
    t.reshape((heads, half, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)
}

/// An error on tensor `name` of `gguf`.
fn tensor_error(gguf: &Path) -> impl Fn(&str, candle_core::Error) -> CandleError + '_ {
    move |name, source| CandleError::TensorOp {
        file: gguf.to_path_buf(),
        tensor: name.into(),
        source: source.into(),
    }
}

/// Converts `gguf` into an HF directory `out` (created; must not hold a model already).
/// `tokenizer_json` is written as the directory's tokenizer.json; `provenance` is recorded.
pub fn gguf_to_hf(
    gguf: &Path,
    out: &Path,
    dtype: DType,
    tokenizer: &lmdensity_tokenizer::TextTokenizer,
    provenance: &Provenance,
) -> Result<Converted, CandleError> {
    if out.join("config.json").exists() || out.join("model.safetensors").exists() {
        return Err(CandleError::OutputNotEmpty {
            dir: out.to_path_buf(),
        });
    }
    let mut source = WeightSource::gguf(gguf)?;
    let names = source.names();
    let WeightSource::Gguf {
        content, reader, ..
    } = &mut source
    else {
        return Err(CandleError::Internal("not a GGUF".into()));
    };
    let config = DecoderConfig::from_gguf(content, gguf)?;
    let fail = tensor_error(gguf);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut skipped = Vec::new();
    for name in &names {
        let Some(hf) = hf_name(config.architecture, name) else {
            skipped.push(name.clone());
            continue;
        };
        let q = content
            .tensor(reader, name, &candle_core::Device::Cpu)
            .map_err(|e| fail(name, e))?;
        let mut t = q
            .dequantize(&candle_core::Device::Cpu)
            .map_err(|e| fail(name, e))?;
        if config.architecture == Architecture::Llama {
            if name.ends_with("attn_q.weight") || name.ends_with("attn_q.bias") {
                t = unpermute(&t, config.n_heads).map_err(|e| fail(name, e))?;
            } else if name.ends_with("attn_k.weight") || name.ends_with("attn_k.bias") {
                t = unpermute(&t, config.n_kv_heads).map_err(|e| fail(name, e))?;
            }
        }
        if config.architecture == Architecture::Gemma3 && name.ends_with("norm.weight") {
            // GGUF holds 1 + w; transformers applies (1 + w) to the stored w.
            t = (t - 1.0).map_err(|e| fail(name, e))?;
        }
        let t = t.to_dtype(dtype).map_err(|e| fail(name, e))?;
        tensors.insert(hf, t);
    }
    let tied = !content.tensor_infos.contains_key("output.weight");
    std::fs::create_dir_all(out).map_err(CandleError::io(out))?;
    let weights = out.join("model.safetensors");
    let partial = out.join("model.safetensors.partial");
    candle_core::safetensors::save(&tensors, &partial).map_err(|source| CandleError::File {
        path: partial.clone(),
        source: source.into(),
    })?;
    std::fs::rename(&partial, &weights).map_err(CandleError::io(&weights))?;
    let dtype_name = match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    };
    let write_json = |file: &str, value: &serde_json::Value| -> Result<(), CandleError> {
        let path = out.join(file);
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(&path, text).map_err(CandleError::io(path))
    };
    write_json("config.json", &config.to_hf(dtype_name, tied))?;
    write_json(
        "tokenizer_config.json",
        &serde_json::json!({ "add_bos_token": config.add_bos, "add_eos_token": false }),
    )?;
    tokenizer.save(&out.join("tokenizer.json"))?;
    write_json(PROVENANCE_FILE, &serde_json::to_value(provenance)?)?;
    let bytes = std::fs::metadata(&weights).map(|m| m.len()).unwrap_or(0);
    Ok(Converted {
        dir: out.to_path_buf(),
        tensors: tensors.len(),
        bytes,
        skipped,
    })
}

/// What [`gguf_to_f32_gguf`] wrote.
#[derive(Debug, Clone)]
pub struct DequantizedGguf {
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of the output file.
    pub bytes: u64,
}

/// Dequantizes every tensor of `gguf` to f32 into a new GGUF at `out`, keeping all metadata
/// but `general.file_type` (set to ALL_F32) and adding the string entry `provenance` (key,
/// value: what the weights were dequantized from), so llama.cpp's quantizer can make other
/// variants from it and their manifests say where the weights came from. Written to
/// `out.partial` first, then renamed.
pub fn gguf_to_f32_gguf(
    gguf: &Path,
    out: &Path,
    provenance: (&str, &str),
) -> Result<DequantizedGguf, CandleError> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let fail = tensor_error(gguf);
    let mut source = WeightSource::gguf(gguf)?;
    let WeightSource::Gguf {
        content, reader, ..
    } = &mut source
    else {
        return Err(CandleError::Internal("not a GGUF".into()));
    };
    let mut names: Vec<(u64, String)> = content
        .tensor_infos
        .iter()
        .map(|(name, info)| (info.offset, name.clone()))
        .collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for (_, name) in &names {
        let q = content
            .tensor(reader, name, &candle_core::Device::Cpu)
            .map_err(|e| fail(name, e))?;
        let t = q
            .dequantize(&candle_core::Device::Cpu)
            .map_err(|e| fail(name, e))?;
        let f = QTensor::quantize(&t, GgmlDType::F32).map_err(|e| fail(name, e))?;
        tensors.push((name.clone(), f));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "general.alignment" | "general.file_type"))
        .filter(|(k, _)| k.as_str() != provenance.0)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.push(("general.file_type".into(), gguf_file::Value::U32(0)));
    metadata.push((
        provenance.0.into(),
        gguf_file::Value::String(provenance.1.into()),
    ));
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let partial = out.with_extension("gguf.partial");
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(CandleError::io(parent))?;
    }
    let io = |source: std::io::Error| CandleError::Io {
        path: partial.clone(),
        source,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(io)?);
    let meta_refs: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).map_err(|source| CandleError::File {
        path: partial.clone(),
        source: source.into(),
    })?;
    std::io::Write::flush(&mut file).map_err(io)?;
    drop(file);
    std::fs::rename(&partial, out).map_err(CandleError::io(out))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(DequantizedGguf {
        tensors: tensors.len(),
        bytes,
    })
}
