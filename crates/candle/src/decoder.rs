//! One decoder-only transformer covering the three families this backend runs (Llama, Qwen2,
//! Gemma 3; they differ in a few switches, see [`crate::config::Architecture`]), written for
//! scoring: a forward pass returns the hidden state of every position, not just the last, so
//! every target of a window is scored from one pass. RoPE tables are sized to the positions
//! actually used, and Gemma 3's MLP uses GELU (tanh), its sliding layers mask keys at distance
//! ≥ window as llama.cpp and transformers do.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::ops::{rms_norm, softmax_last_dim};
use candle_nn::rotary_emb::{rope, rope_i};

use crate::config::{Architecture, DecoderConfig, RopeStyle};
use crate::error::CandleError;
use crate::weights::{Linear, WeightSource};

struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    post_ffn_norm: Option<Tensor>,
    gate: Linear,
    up: Linear,
    down: Linear,
    sliding: bool,
}

/// cos/sin of one RoPE base, rows 0..len.
struct RopeTable {
    cos: Tensor,
    sin: Tensor,
}

impl RopeTable {
    fn new(theta: f64, factor: f64, head_dim: usize, len: usize) -> Result<Self> {
        let half = head_dim / 2;
        let inv: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in 0..len {
            for &f in &inv {
                let angle = p as f64 / factor * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(RopeTable {
            cos: Tensor::from_vec(cos, (len, half), &Device::Cpu)?,
            sin: Tensor::from_vec(sin, (len, half), &Device::Cpu)?,
        })
    }

    fn len(&self) -> usize {
        self.cos.dims()[0]
    }
}

/// Weights of a decoder; immutable once loaded, shared by every [`DecoderState`].
pub struct Decoder {
    config: DecoderConfig,
    embed: Linear,
    output: Option<Linear>,
    norm: Tensor,
    layers: Vec<Layer>,
    weight_bytes: usize,
}

/// The per-sequence state of a decoder: KV cache and RoPE tables sized to the positions the
/// sequence may use (as a llama.cpp context is to its model).
pub struct DecoderState {
    global_rope: RopeTable,
    local_rope: Option<RopeTable>,
    cache: Vec<Option<(Tensor, Tensor)>>,
    cached: usize,
}

impl DecoderState {
    /// Positions held in the KV cache.
    pub fn cached(&self) -> usize {
        self.cached
    }

    /// Positions the RoPE tables cover.
    pub fn capacity(&self) -> usize {
        self.global_rope.len()
    }

    /// Bytes of keys and values the cache holds.
    pub fn kv_cache_bytes(&self) -> usize {
        self.cache
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }

    /// Keeps the first `len` cached positions and forgets the rest.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.cached {
            return Ok(());
        }
        for entry in &mut self.cache {
            if len == 0 {
                *entry = None;
            } else if let Some((k, v)) = entry.take() {
                *entry = Some((k.narrow(1, 0, len)?, v.narrow(1, 0, len)?));
            }
        }
        self.cached = len;
        Ok(())
    }
}

impl Decoder {
    /// Builds the decoder from `source`, checking every tensor against `config`.
    pub fn load(
        config: DecoderConfig,
        source: &mut WeightSource,
    ) -> std::result::Result<Self, CandleError> {
        let c = &config;
        let gemma = c.architecture == Architecture::Gemma3;
        let hf_gemma = gemma && source.is_hf();
        let q_out = c.n_heads * c.head_dim;
        let kv_out = c.n_kv_heads * c.head_dim;
        let bias = c.architecture == Architecture::Qwen2;
        // HF Gemma checkpoints store w and apply (1 + w); GGUFs store 1 + w.
        let norm = |source: &mut WeightSource, name: &str, len: usize| {
            let w = source.vector(name, len)?;
            if hf_gemma {
                (w + 1.0).map_err(|source| CandleError::NormWeight {
                    tensor: name.into(),
                    source: source.into(),
                })
            } else {
                Ok(w)
            }
        };
        let embed = source.linear("token_embd.weight", c.vocab_size, c.hidden_size, false)?;
        let output = if source.has("output.weight") {
            Some(source.linear("output.weight", c.vocab_size, c.hidden_size, false)?)
        } else {
            None
        };
        let final_norm = norm(source, "output_norm.weight", c.hidden_size)?;
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let n = |part: &str| format!("blk.{l}.{part}.weight");
            let optional_norm = |source: &mut WeightSource, part: &str, len: usize| {
                if gemma {
                    norm(source, &n(part), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            let layer = Layer {
                attn_norm: norm(source, &n("attn_norm"), c.hidden_size)?,
                q: source.linear(&n("attn_q"), q_out, c.hidden_size, bias)?,
                k: source.linear(&n("attn_k"), kv_out, c.hidden_size, bias)?,
                v: source.linear(&n("attn_v"), kv_out, c.hidden_size, bias)?,
                o: source.linear(&n("attn_output"), c.hidden_size, q_out, false)?,
                q_norm: optional_norm(source, "attn_q_norm", c.head_dim)?,
                k_norm: optional_norm(source, "attn_k_norm", c.head_dim)?,
                post_attn_norm: optional_norm(source, "post_attention_norm", c.hidden_size)?,
                ffn_norm: norm(source, &n("ffn_norm"), c.hidden_size)?,
                post_ffn_norm: optional_norm(source, "post_ffw_norm", c.hidden_size)?,
                gate: source.linear(&n("ffn_gate"), c.intermediate_size, c.hidden_size, false)?,
                up: source.linear(&n("ffn_up"), c.intermediate_size, c.hidden_size, false)?,
                down: source.linear(&n("ffn_down"), c.hidden_size, c.intermediate_size, false)?,
                sliding: c.is_sliding(l),
            };
            layers.push(layer);
        }
        let vec_bytes = |t: &Tensor| t.elem_count() * 4;
        let weight_bytes = embed.bytes()
            + output.as_ref().map_or(0, Linear::bytes)
            + vec_bytes(&final_norm)
            + layers
                .iter()
                .map(|l| {
                    [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                        .iter()
                        .map(|x| x.bytes())
                        .sum::<usize>()
                        + vec_bytes(&l.attn_norm)
                        + vec_bytes(&l.ffn_norm)
                        + [&l.q_norm, &l.k_norm, &l.post_attn_norm, &l.post_ffn_norm]
                            .iter()
                            .filter_map(|t| t.as_ref().map(vec_bytes))
                            .sum::<usize>()
                })
                .sum::<usize>();
        Ok(Decoder {
            config,
            embed,
            output,
            norm: final_norm,
            layers,
            weight_bytes,
        })
    }

    /// The decoder's shape.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Bytes of weights held (quantized matrices at their storage size).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// A fresh sequence state for up to `max_len` positions.
    pub fn new_state(&self, max_len: usize) -> Result<DecoderState> {
        let c = &self.config;
        let global_rope = RopeTable::new(
            c.rope_theta,
            c.rope_linear_factor.unwrap_or(1.0),
            c.head_dim,
            max_len,
        )?;
        let local_rope = match c.rope_local_theta {
            Some(theta) => Some(RopeTable::new(theta, 1.0, c.head_dim, max_len)?),
            None => None,
        };
        Ok(DecoderState {
            global_rope,
            local_rope,
            cache: vec![None; self.layers.len()],
            cached: 0,
        })
    }

    /// Runs `tokens` after the cached positions and returns the final-norm hidden state of
    /// each, `(tokens, hidden)` f32; the cache grows by `tokens.len()`.
    pub fn forward(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let t = tokens.len();
        let pos0 = state.cached;
        if pos0 + t > state.capacity() {
            candle_core::bail!(
                "{} positions exceed the {} this sequence was created for",
                pos0 + t,
                state.capacity()
            );
        }
        let c = &self.config;
        let eps = c.rms_norm_eps as f32;
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x = self.embed.rows(&ids)?;
        if c.architecture == Architecture::Gemma3 {
            x = (x * (c.hidden_size as f64).sqrt())?;
        }
        let s = pos0 + t;
        let causal = mask(t, pos0, None)?;
        let sliding = match c.sliding_window {
            Some(w) => Some(mask(t, pos0, Some(w))?),
            None => None,
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let residual = x.clone();
            let h = rms_norm(&x, &layer.attn_norm, eps)?;
            let (rope_table, m) = match (&state.local_rope, &sliding) {
                (Some(local), Some(sm)) if layer.sliding => (local, sm),
                _ => (&state.global_rope, &causal),
            };
            let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
            let heads = |y: Tensor, n: usize| -> Result<Tensor> {
                y.reshape((t, n, hd))?.transpose(0, 1)?.contiguous()
            };
            let mut q = heads(layer.q.forward(&h)?, nh)?;
            let mut k = heads(layer.k.forward(&h)?, nkv)?;
            let v = heads(layer.v.forward(&h)?, nkv)?;
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                q = rms_norm(&q, qn, eps)?;
                k = rms_norm(&k, kn, eps)?;
            }
            let cos = rope_table.cos.narrow(0, pos0, t)?;
            let sin = rope_table.sin.narrow(0, pos0, t)?;
            let rotate = |y: &Tensor| -> Result<Tensor> {
                let y = y.unsqueeze(0)?;
                match c.rope_style {
                    RopeStyle::Halves => rope(&y, &cos, &sin),
                    RopeStyle::Interleaved => rope_i(&y, &cos, &sin),
                }?
                .squeeze(0)
            };
            let q = rotate(&q)?;
            let k = rotate(&k)?;
            let (k, v) = match state.cache[l].take() {
                Some((kc, vc)) => (Tensor::cat(&[&kc, &k], 1)?, Tensor::cat(&[&vc, &v], 1)?),
                None => (k, v),
            };
            state.cache[l] = Some((k.clone(), v.clone()));
            // Grouped-query attention without copying keys: the query heads sharing one
            // key/value head are stacked along the rows.
            let rep = nh / nkv;
            let q = (q * c.attention_scale)?.reshape((nkv, rep * t, hd))?;
            let att = q.matmul(&k.t()?)?.reshape((nkv, rep, t, s))?;
            let att = softmax_last_dim(&att.broadcast_add(m)?)?;
            let out = att.reshape((nkv, rep * t, s))?.matmul(&v)?;
            let out = out
                .reshape((nh, t, hd))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, nh * hd))?;
            let mut attn = layer.o.forward(&out)?;
            if let Some(pn) = &layer.post_attn_norm {
                attn = rms_norm(&attn, pn, eps)?;
            }
            x = (residual + attn)?;
            let h = rms_norm(&x, &layer.ffn_norm, eps)?;
            let gate = layer.gate.forward(&h)?;
            let gate = match c.architecture {
                Architecture::Gemma3 => gate.gelu()?,
                _ => candle_nn::ops::silu(&gate)?,
            };
            let mut mlp = layer.down.forward(&(gate * layer.up.forward(&h)?)?)?;
            if let Some(pn) = &layer.post_ffn_norm {
                mlp = rms_norm(&mlp, pn, eps)?;
            }
            x = (x + mlp)?;
        }
        state.cached = s;
        rms_norm(&x, &self.norm, eps)
    }

    /// Logits `(rows, vocab)` f32 of final-norm hidden states `(rows, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.output
            .as_ref()
            .unwrap_or(&self.embed)
            .forward(hidden)?
            .to_dtype(DType::F32)
    }
}

/// Additive attention mask `(t, pos0 + t)`: 0 where query `pos0 + i` may see key `j`
/// (`j ≤ pos0 + i`, and with a window `w`, `pos0 + i − j < w`), −∞ elsewhere.
fn mask(t: usize, pos0: usize, window: Option<usize>) -> Result<Tensor> {
    let s = pos0 + t;
    let mut m = vec![0f32; t * s];
    for i in 0..t {
        let qi = pos0 + i;
        for j in 0..s {
            let visible = j <= qi && window.is_none_or(|w| qi - j < w);
            if !visible {
                m[i * s + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (t, s), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_causal_and_slide() {
        let m = mask(3, 2, None)
            .expect("mask")
            .to_vec2::<f32>()
            .expect("vec");
        assert_eq!(m[0][..3], [0.0, 0.0, 0.0]);
        assert!(m[0][3].is_infinite() && m[0][4].is_infinite());
        assert_eq!(m[2], [0.0; 5]);
        // Window 2: query 4 sees keys 3 and 4 only.
        let w = mask(3, 2, Some(2))
            .expect("mask")
            .to_vec2::<f32>()
            .expect("vec");
        assert_eq!(
            w[2].iter().map(|v| v.is_finite()).collect::<Vec<_>>(),
            [false, false, false, true, true]
        );
    }
}
