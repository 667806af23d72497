//! Where the decoder's tensors come from: a GGUF file (kept quantized, multiplied with candle's
//! quantized kernels) or HF safetensors (dense, in the compute dtype). Tensors are asked for by
//! their GGUF names; [`hf_name`] maps them to HF names. Every tensor's shape is checked against
//! the config, and a missing or misshapen tensor is an error naming the file and the tensor.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::config::Architecture;
use crate::error::CandleError;

/// A weight matrix `(out, in)` and its optional bias, applied as `x·Wᵀ + b`.
#[derive(Debug, Clone)]
pub enum Linear {
    /// Dense weights in the compute dtype.
    Dense {
        /// `(out, in)`.
        weight: Tensor,
        /// `(out,)`, f32.
        bias: Option<Tensor>,
    },
    /// ggml-quantized weights.
    Quantized {
        /// The quantized matrix.
        weight: QMatMul,
        /// `(out,)`, f32.
        bias: Option<Tensor>,
    },
}

impl Linear {
    /// `x·Wᵀ + b` for `x` of shape `(rows, in)`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } if weight.dtype() == x.dtype() => {
                (x.matmul(&weight.t()?)?, bias)
            }
            // bf16/f16 weights: multiply in their dtype, keep the residual stream in f32.
            Linear::Dense { weight, bias } => (
                x.to_dtype(weight.dtype())?
                    .matmul(&weight.t()?)?
                    .to_dtype(x.dtype())?,
                bias,
            ),
            Linear::Quantized { weight, bias } => (weight.forward(x)?, bias),
        };
        match bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// Rows of the table for `ids` (embedding lookup), as f32 `(ids, in)`.
    pub fn rows(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Dense { weight, .. } => weight.index_select(ids, 0)?.to_dtype(DType::F32),
            Linear::Quantized { weight, .. } => weight.embedding(ids)?.to_dtype(DType::F32),
        }
    }

    /// Bytes the weights occupy.
    pub fn bytes(&self) -> usize {
        match self {
            Linear::Dense { weight, bias } => {
                weight.elem_count() * weight.dtype().size_in_bytes()
                    + bias.as_ref().map_or(0, Tensor::elem_count) * 4
            }
            Linear::Quantized { weight, .. } => match weight {
                QMatMul::QTensor(q) => q.storage_size_in_bytes(),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                    t.elem_count() * t.dtype().size_in_bytes()
                }
            },
        }
    }
}

/// The HF (transformers) name of the tensor llama.cpp calls `gguf_name`.
pub fn hf_name(architecture: Architecture, gguf_name: &str) -> Option<String> {
    let gemma = architecture == Architecture::Gemma3;
    match gguf_name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (part, kind) = tail.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// A source of named tensors.
pub enum WeightSource {
    /// A GGUF file: matrices stay quantized.
    Gguf {
        /// The file.
        path: PathBuf,
        /// Its parsed header.
        content: gguf_file::Content,
        /// Reader positioned anywhere.
        reader: BufReader<File>,
    },
    /// HF safetensors (one or more shards), every tensor read into memory.
    Safetensors {
        /// The directory.
        dir: PathBuf,
        /// Tensors by HF name, with the shard each came from.
        tensors: HashMap<String, (Tensor, PathBuf)>,
        /// Family, for name mapping.
        architecture: Architecture,
        /// Dtype matrices are converted to.
        dtype: DType,
    },
}

fn shape_error(file: &Path, name: &str, got: &[usize], want: &[usize]) -> CandleError {
    CandleError::Shape {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        got: got.to_vec(),
        want: want.to_vec(),
    }
}

impl WeightSource {
    /// Opens a GGUF file.
    pub fn gguf(path: &Path) -> Result<Self, CandleError> {
        let file = File::open(path).map_err(CandleError::io(path))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|source| {
            CandleError::UnreadableGguf {
                path: path.to_path_buf(),
                source: source.into(),
            }
        })?;
        Ok(WeightSource::Gguf {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// Reads every `*.safetensors` file of `dir`; matrices will be converted to `dtype`.
    pub fn safetensors(
        dir: &Path,
        architecture: Architecture,
        dtype: DType,
    ) -> Result<Self, CandleError> {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(CandleError::io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(CandleError::NoSafetensors {
                dir: dir.to_path_buf(),
            });
        }
        let mut tensors = HashMap::new();
        for shard in shards {
            let bytes = std::fs::read(&shard).map_err(CandleError::io(&shard))?;
            // The safetensors crate names what is wrong with a header (length, JSON, offsets).
            safetensors::SafeTensors::deserialize(&bytes).map_err(|source| {
                CandleError::CorruptSafetensors {
                    path: shard.clone(),
                    source,
                }
            })?;
            let loaded =
                candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|source| {
                    CandleError::File {
                        path: shard.clone(),
                        source: source.into(),
                    }
                })?;
            for (name, t) in loaded {
                // Multimodal Gemma 3 checkpoints prefix the text decoder.
                let name = name
                    .strip_prefix("language_model.")
                    .map(str::to_string)
                    .unwrap_or(name);
                tensors.insert(name, (t, shard.clone()));
            }
        }
        Ok(WeightSource::Safetensors {
            dir: dir.to_path_buf(),
            tensors,
            architecture,
            dtype,
        })
    }

    /// Whether the source has tensor `gguf_name`.
    pub fn has(&self, gguf_name: &str) -> bool {
        match self {
            WeightSource::Gguf { content, .. } => content.tensor_infos.contains_key(gguf_name),
            WeightSource::Safetensors {
                tensors,
                architecture,
                ..
            } => hf_name(*architecture, gguf_name).is_some_and(|n| tensors.contains_key(&n)),
        }
    }

    fn where_(&self) -> &Path {
        match self {
            WeightSource::Gguf { path, .. } => path,
            WeightSource::Safetensors { dir, .. } => dir,
        }
    }

    fn missing(&self, gguf_name: &str) -> CandleError {
        match self {
            WeightSource::Gguf { path, .. } => CandleError::MissingGgufTensor {
                file: path.clone(),
                tensor: gguf_name.into(),
            },
            WeightSource::Safetensors {
                dir, architecture, ..
            } => CandleError::MissingCheckpointTensor {
                dir: dir.clone(),
                tensor: hf_name(*architecture, gguf_name).unwrap_or_else(|| gguf_name.into()),
            },
        }
    }

    /// A quantized tensor from a GGUF, its shape checked.
    fn qtensor(&mut self, gguf_name: &str, want: &[usize]) -> Result<QTensor, CandleError> {
        let WeightSource::Gguf {
            path,
            content,
            reader,
        } = self
        else {
            return Err(CandleError::Internal("qtensor on safetensors".into()));
        };
        let info =
            content
                .tensor_infos
                .get(gguf_name)
                .ok_or_else(|| CandleError::MissingGgufTensor {
                    file: path.clone(),
                    tensor: gguf_name.into(),
                })?;
        if info.shape.dims() != want {
            return Err(shape_error(path, gguf_name, info.shape.dims(), want));
        }
        content
            .tensor(reader, gguf_name, &Device::Cpu)
            .map_err(|source| CandleError::ReadTensor {
                file: path.clone(),
                tensor: gguf_name.into(),
                source: source.into(),
            })
    }

    /// A dense tensor (HF names mapped), shape checked, as stored.
    fn dense(&mut self, gguf_name: &str, want: &[usize]) -> Result<Tensor, CandleError> {
        match self {
            WeightSource::Gguf { path, .. } => {
                let path = path.clone();
                let q = self.qtensor(gguf_name, want)?;
                q.dequantize(&Device::Cpu)
                    .map_err(|source| CandleError::ReadTensor {
                        file: path,
                        tensor: gguf_name.into(),
                        source: source.into(),
                    })
            }
            WeightSource::Safetensors {
                tensors,
                architecture,
                dir,
                ..
            } => {
                let name = hf_name(*architecture, gguf_name)
                    .ok_or_else(|| CandleError::Internal(format!("no HF name for {gguf_name}")))?;
                let (t, shard) =
                    tensors
                        .get(&name)
                        .ok_or_else(|| CandleError::MissingCheckpointTensor {
                            dir: dir.clone(),
                            tensor: name.clone(),
                        })?;
                if t.dims() != want {
                    return Err(shape_error(shard, &name, t.dims(), want));
                }
                Ok(t.clone())
            }
        }
    }

    /// A vector (norm weight, bias) as f32.
    pub fn vector(&mut self, gguf_name: &str, len: usize) -> Result<Tensor, CandleError> {
        if !self.has(gguf_name) {
            return Err(self.missing(gguf_name));
        }
        let place = self.where_().to_path_buf();
        self.dense(gguf_name, &[len])?
            .to_dtype(DType::F32)
            .map_err(|source| CandleError::TensorOp {
                file: place,
                tensor: gguf_name.into(),
                source: source.into(),
            })
    }

    /// A matrix `(out, in)` with an optional bias `gguf_name` with `.weight` replaced by `.bias`.
    pub fn linear(
        &mut self,
        gguf_name: &str,
        out: usize,
        inp: usize,
        with_bias: bool,
    ) -> Result<Linear, CandleError> {
        if !self.has(gguf_name) {
            return Err(self.missing(gguf_name));
        }
        let bias_name = gguf_name.replace(".weight", ".bias");
        let bias = if with_bias {
            Some(self.vector(&bias_name, out)?)
        } else {
            None
        };
        let place = self.where_().to_path_buf();
        let fail = |source: candle_core::Error| CandleError::TensorOp {
            file: place.clone(),
            tensor: gguf_name.into(),
            source: source.into(),
        };
        match self {
            WeightSource::Gguf { .. } => {
                let q = self.qtensor(gguf_name, &[out, inp])?;
                let weight = QMatMul::from_arc(Arc::new(q)).map_err(fail)?;
                Ok(Linear::Quantized { weight, bias })
            }
            WeightSource::Safetensors { dtype, .. } => {
                let dtype = *dtype;
                let t = self.dense(gguf_name, &[out, inp])?;
                let weight = t.to_dtype(dtype).map_err(fail)?;
                Ok(Linear::Dense { weight, bias })
            }
        }
    }

    /// Whether tensors follow HF conventions (Gemma norms stored as w, applied as 1 + w).
    pub fn is_hf(&self) -> bool {
        matches!(self, WeightSource::Safetensors { .. })
    }

    /// Names of every tensor the source holds (HF names for safetensors).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match self {
            WeightSource::Gguf { content, .. } => content.tensor_infos.keys().cloned().collect(),
            WeightSource::Safetensors { tensors, .. } => tensors.keys().cloned().collect(),
        };
        names.sort();
        names
    }
}
