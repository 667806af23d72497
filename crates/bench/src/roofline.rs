//! The roofline: this machine's sustainable memory bandwidth (a multi-threaded STREAM-triad
//! kernel), the bytes of weights a decode step must read (from the GGUF tensor table), and
//! from them how close a measured decode speed comes to the bandwidth limit.
//!
//! Decoding one token reads every weight matrix once (a matrix-vector product per matrix), so a
//! model of W bytes cannot decode faster than bandwidth ÷ W tokens per second.
//! `decode efficiency = W_read × tokens/s ÷ bandwidth`; 1.0 would be the hardware limit.

use std::time::Instant;

use lmdensity_hub::gguf::{type_traits, GgufFile, GgufValue, TensorInfo};
use serde::{Deserialize, Serialize};

/// Measured memory bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// Best repetition, bytes/s (STREAM reports the best).
    pub best_bytes_per_s: f64,
    /// Mean over repetitions, bytes/s.
    pub mean_bytes_per_s: f64,
    /// Threads used.
    pub threads: usize,
    /// Bytes of the three arrays together.
    pub working_set_bytes: u64,
}

/// STREAM's triad `a[i] = b[i] + q·c[i]` over three `f64` arrays of `elements` each, split into
/// contiguous chunks over `threads` threads, `repetitions` times after one untimed pass. Bytes
/// per repetition counted as STREAM does: 24 per element (two reads, one write; no
/// write-allocate traffic). Arrays should be far larger than the last-level cache.
pub fn stream_triad(threads: usize, elements: usize, repetitions: usize) -> Bandwidth {
    let threads = threads.max(1);
    let chunk = elements.div_ceil(threads).max(1);
    let mut a = vec![0f64; elements];
    let mut b = vec![0f64; elements];
    let mut c = vec![0f64; elements];
    // First touch by the thread that will use each chunk.
    std::thread::scope(|s| {
        for ((a, b), c) in a
            .chunks_mut(chunk)
            .zip(b.chunks_mut(chunk))
            .zip(c.chunks_mut(chunk))
        {
            s.spawn(move || {
                a.fill(1.0);
                b.fill(2.0);
                c.fill(0.5);
            });
        }
    });
    let q = std::hint::black_box(3.0f64);
    let triad = |a: &mut [f64]| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for ((a, b), c) in a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk))
            {
                s.spawn(move || {
                    for ((x, &y), &z) in a.iter_mut().zip(b).zip(c) {
                        *x = y + q * z;
                    }
                });
            }
        });
        start.elapsed().as_secs_f64()
    };
    triad(&mut a);
    let times: Vec<f64> = (0..repetitions.max(1)).map(|_| triad(&mut a)).collect();
    std::hint::black_box(&a);
    let bytes = 24.0 * elements as f64;
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    Bandwidth {
        best_bytes_per_s: bytes / best,
        mean_bytes_per_s: bytes / mean,
        threads,
        working_set_bytes: 3 * 8 * elements as u64,
    }
}

/// What a model's weights cost per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightTraffic {
    /// Bytes of all tensors.
    pub weight_bytes: u64,
    /// Bytes a decode step reads: every tensor once, except that a token-embedding table with
    /// a separate output matrix is only gathered (one row per token). KV-cache reads are not
    /// included (at depth 0 they are below 2% of the weights for the registry models).
    pub bytes_per_token: u64,
    /// Parameters of the matrices multiplied per token (embedding lookup excluded, the output
    /// projection included): prefill FLOPs per token ≈ 2 × this.
    pub matmul_params: u64,
}

fn tensor_bytes(t: &TensorInfo) -> u64 {
    match type_traits(t.ggml_type) {
        Some((_, block, bytes)) => t.n_elements().div_ceil(block) * bytes,
        None => 0,
    }
}

/// The weight traffic of a GGUF model, from its tensor table.
pub fn weight_traffic(gguf: &GgufFile) -> WeightTraffic {
    let has_output = gguf.tensors.iter().any(|t| t.name == "output.weight");
    let mut traffic = WeightTraffic {
        weight_bytes: 0,
        bytes_per_token: 0,
        matmul_params: 0,
    };
    for t in &gguf.tensors {
        let bytes = tensor_bytes(t);
        traffic.weight_bytes += bytes;
        let is_embedding = t.name == "token_embd.weight";
        if is_embedding && has_output {
            let rows = t.dims.get(1).copied().unwrap_or(1).max(1);
            traffic.bytes_per_token += bytes / rows;
        } else {
            traffic.bytes_per_token += bytes;
            if t.dims.len() >= 2 {
                traffic.matmul_params += t.n_elements();
            }
        }
    }
    traffic
}

/// Bytes of F16 keys and values one sequence of `n_ctx` tokens needs in every layer, from the
/// GGUF's attention metadata (an upper bound for sliding-window layers); `None` when the
/// metadata lacks the head counts.
pub fn kv_cache_bytes_estimate(gguf: &GgufFile, n_ctx: u64) -> Option<u64> {
    let arch = gguf.architecture();
    let get = |key: &str| {
        gguf.metadata
            .get(&format!("{arch}.{key}"))
            .and_then(GgufValue::as_u64)
    };
    let layers = get("block_count")?;
    let heads = get("attention.head_count")?;
    let heads_kv = get("attention.head_count_kv").unwrap_or(heads);
    let head_dim = get("embedding_length")? / heads.max(1);
    let key = get("attention.key_length").unwrap_or(head_dim);
    let value = get("attention.value_length").unwrap_or(head_dim);
    Some(layers * n_ctx * heads_kv * (key + value) * 2)
}

/// Decode efficiency: weight bytes read per decode step × steps/s ÷ bandwidth.
pub fn decode_efficiency(bytes_per_token: u64, steps_per_s: f64, bandwidth: &Bandwidth) -> f64 {
    bytes_per_token as f64 * steps_per_s / bandwidth.best_bytes_per_s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tensor(name: &str, dims: &[u64], ggml_type: u32) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ggml_type,
            offset: 0,
        }
    }

    fn file(tensors: Vec<TensorInfo>) -> GgufFile {
        let mut metadata = BTreeMap::new();
        metadata.insert(
            "general.architecture".into(),
            GgufValue::Str("llama".into()),
        );
        for (k, v) in [
            ("llama.block_count", 30),
            ("llama.attention.head_count", 9),
            ("llama.attention.head_count_kv", 3),
            ("llama.embedding_length", 576),
        ] {
            metadata.insert(k.into(), GgufValue::Uint(v));
        }
        GgufFile {
            version: 3,
            metadata,
            tensors,
            data_offset: 0,
            file_bytes: 0,
        }
    }

    #[test]
    fn tied_embeddings_are_read_whole_separate_ones_one_row() {
        // 64 × 1000 embedding in F16 (128,000 bytes), a 64 × 64 Q8_0 matrix (4,352), a norm.
        let tied = file(vec![
            tensor("token_embd.weight", &[64, 1000], 1),
            tensor("blk.0.attn_q.weight", &[64, 64], 8),
            tensor("blk.0.attn_norm.weight", &[64], 0),
        ]);
        let t = weight_traffic(&tied);
        assert_eq!(t.weight_bytes, 128_000 + 4_352 + 256);
        assert_eq!(t.bytes_per_token, t.weight_bytes);
        assert_eq!(t.matmul_params, 64_000 + 4_096);
        let mut separate = tied.clone();
        separate
            .tensors
            .push(tensor("output.weight", &[64, 1000], 1));
        let s = weight_traffic(&separate);
        assert_eq!(s.weight_bytes, 2 * 128_000 + 4_352 + 256);
        assert_eq!(s.bytes_per_token, 128 + 4_352 + 256 + 128_000);
        assert_eq!(s.matmul_params, 4_096 + 64_000);
    }

    #[test]
    fn kv_estimate_follows_the_head_counts() {
        // SmolLM2-135M: 30 layers, 3 KV heads of 64: 23,040 bytes per token.
        let f = file(vec![]);
        assert_eq!(kv_cache_bytes_estimate(&f, 1), Some(30 * 3 * 128 * 2));
        assert_eq!(kv_cache_bytes_estimate(&f, 2048), Some(2048 * 23_040));
    }

    #[test]
    fn triad_measures_a_plausible_bandwidth_and_efficiency_is_a_ratio() {
        let bw = stream_triad(2, 1 << 20, 3);
        // 24 MiB of traffic per pass: anything between 100 MB/s and 10 TB/s is a real machine.
        assert!(
            bw.best_bytes_per_s > 1e8 && bw.best_bytes_per_s < 1e13,
            "{bw:?}"
        );
        assert!(bw.best_bytes_per_s >= bw.mean_bytes_per_s);
        assert_eq!(bw.working_set_bytes, 24 << 20);
        let half = decode_efficiency(1_000_000, bw.best_bytes_per_s / 2e6, &bw);
        assert!((half - 0.5).abs() < 1e-12);
    }
}
