//! KL divergence of a model against a base run, with llama-perplexity's `--kl-divergence`
//! semantics: a base run (full precision, or any chosen reference) stores its distribution for
//! every scored token; a later run of another model on the same windows (a quantized variant)
//! compares its own distributions with them token by token.
//!
//! **Storage.** llama.cpp stores the whole vocabulary as 16-bit log-probabilities (512 KiB per
//! token for Gemma 3's 262k vocabulary). lmdensity stores each row's `top_k` most probable
//! tokens with f32 log-probabilities plus the target's log-probability, `8 + 8·top_k` bytes per
//! token (520 bytes at the default 64), and the rest of the vocabulary as one bucket holding
//! the remaining mass. KL over those `top_k + 1` outcomes is a lower bound on the
//! full-vocabulary KL (the log-sum inequality); the mass the bucket held is reported
//! (`kld_base_residual_mass`) so the bound's slack is visible.
//!
//! **File.** `LMDKLD01`, a little-endian u32 header length, the JSON [`BaseHeader`], then one
//! fixed-size row per scored token in window order: target id (i32), ln p(target) (f32), then
//! `top_k` × (token id i32, ln p f32) by descending probability. A file whose size is not a
//! whole number of rows is reported as truncated.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use lmdensity_backend::{log_softmax, LogSoftmax, TokenId};
use lmdensity_core::schema::{Metric, WindowComparison, WindowSample};
use lmdensity_core::stats::mean_and_stderr;
use serde::{Deserialize, Serialize};

/// Tokens per row stored by default.
pub const DEFAULT_TOP_K: usize = 64;

const MAGIC: &[u8; 8] = b"LMDKLD01";

/// What a base file was computed from; a comparison run must match it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaseHeader {
    /// Model id of the base run.
    pub model: String,
    /// sha256 of the base weights.
    pub model_sha256: String,
    /// Weight type of the base (e.g. `F32`, `dequantized from Q4_K_M`).
    pub quantization: String,
    /// Engine of the base run (`llama.cpp`, `candle-f32`…).
    pub backend: String,
    /// Corpus name.
    pub corpus: String,
    /// sha256 of the corpus text.
    pub corpus_sha256: String,
    /// Perplexity mode (`harness`, `llama.cpp`).
    pub mode: String,
    /// Window length (`max_length` or `n_ctx`).
    pub context: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Tokens stored per row.
    pub top_k: usize,
}

impl BaseHeader {
    /// Bytes of one stored row.
    pub fn row_bytes(&self) -> u64 {
        8 + 8 * self.top_k as u64
    }

    /// Whether a run with header `other` scores the same windows of the same text.
    pub fn check_same_windows(&self, other: &BaseHeader) -> Result<(), String> {
        let pairs = [
            ("corpus", &self.corpus, &other.corpus),
            ("corpus sha256", &self.corpus_sha256, &other.corpus_sha256),
            ("mode", &self.mode, &other.mode),
        ];
        for (what, a, b) in pairs {
            if a != b {
                return Err(format!(
                    "the base was computed with {what} `{a}`, this run uses `{b}`"
                ));
            }
        }
        if self.context != other.context {
            return Err(format!(
                "the base used windows of {} tokens, this run {}",
                self.context, other.context
            ));
        }
        if self.n_vocab != other.n_vocab {
            return Err(format!(
                "the base model has a vocabulary of {}, this one {}: not the same tokenizer",
                self.n_vocab, other.n_vocab
            ));
        }
        Ok(())
    }
}

/// Errors reading or writing a base file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KldError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The base file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a base file, is truncated, or does not match the run.
    #[error("{path}: {reason}")]
    Invalid {
        /// The base file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One scored token of the base: the target's log-probability and the `top_k` most probable
/// tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseRow {
    /// The scored token.
    pub target: TokenId,
    /// ln p_base(target).
    pub target_logprob: f32,
    /// `(token, ln p)` by descending probability (the first is the base's argmax).
    pub top: Vec<(TokenId, f32)>,
}

impl BaseRow {
    /// The row of one logits vector; `Err` carries a non-finite logit.
    pub fn from_logits(logits: &[f32], target: TokenId, top_k: usize) -> Result<BaseRow, f32> {
        Ok(Self::from_normalized(
            logits,
            &log_softmax(logits)?,
            target,
            top_k,
        ))
    }

    /// The row of one logits vector whose normalizer is already known.
    pub fn from_normalized(
        logits: &[f32],
        norm: &LogSoftmax,
        target: TokenId,
        top_k: usize,
    ) -> BaseRow {
        let top = top_indices(logits, top_k.min(logits.len()))
            .into_iter()
            .map(|i| (i as TokenId, norm.logprob(logits, i) as f32))
            .collect();
        BaseRow {
            target,
            target_logprob: norm.logprob(logits, target as usize) as f32,
            top,
        }
    }

    /// Probability mass outside the stored tokens.
    pub fn residual_mass(&self) -> f64 {
        (1.0 - self
            .top
            .iter()
            .map(|&(_, lp)| f64::from(lp).exp())
            .sum::<f64>())
        .max(0.0)
    }
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    if k.saturating_mul(16) > values.len() {
        // A large share of the vocabulary: sort it all (stable, so ties keep index order).
        let mut all: Vec<usize> = (0..values.len()).collect();
        all.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        all.truncate(k);
        return all;
    }
    // A sorted buffer of the best k so far; most values fail the threshold test at once.
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k && v <= best[k - 1].0 {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b >= v);
        best.insert(at, (v, i));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// How one token's distribution under the compared model differs from the base's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenComparison {
    /// KL(base ‖ model) over the base's top-k plus the rest-of-vocabulary bucket (nats).
    pub kld: f64,
    /// p_model(target) − p_base(target).
    pub delta_p: f64,
    /// Both models' most probable token is the same.
    pub same_top: bool,
    /// ln p_model(target).
    pub logprob: f64,
}

/// Compares the model's `logits` for one token with the base's stored row.
pub fn compare(base: &BaseRow, logits: &[f32]) -> Result<TokenComparison, f32> {
    Ok(compare_normalized(base, logits, &log_softmax(logits)?))
}

/// [`compare`] with the logits' normalizer already known.
pub fn compare_normalized(base: &BaseRow, logits: &[f32], norm: &LogSoftmax) -> TokenComparison {
    let mut kld = 0.0;
    let mut base_mass = 0.0;
    let mut model_mass = 0.0;
    for &(token, lp) in &base.top {
        let p = f64::from(lp).exp();
        let lq = norm.logprob(logits, token as usize);
        kld += p * (f64::from(lp) - lq);
        base_mass += p;
        model_mass += lq.exp();
    }
    let rest = 1.0 - base_mass;
    if rest > 1e-12 {
        // The model's remaining mass cannot be below what f32 rounding leaves.
        let rest_model = (1.0 - model_mass).max(1e-30);
        kld += rest * (rest.ln() - rest_model.ln());
    }
    let logprob = norm.logprob(logits, base.target as usize);
    TokenComparison {
        kld: kld.max(0.0),
        delta_p: logprob.exp() - f64::from(base.target_logprob).exp(),
        same_top: base
            .top
            .first()
            .is_some_and(|&(t, _)| t as usize == norm.argmax),
        logprob,
    }
}

/// Writes a base file row by row.
pub struct BaseWriter {
    path: PathBuf,
    file: BufWriter<File>,
    top_k: usize,
    rows: u64,
    bytes: u64,
}

impl BaseWriter {
    /// Creates (or replaces) the file at `path` and writes its header.
    pub fn create(path: &Path, header: &BaseHeader) -> Result<BaseWriter, KldError> {
        let io = |source| KldError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = BufWriter::new(File::create(path).map_err(io)?);
        let json = serde_json::to_vec(header).map_err(|e| io(std::io::Error::other(e)))?;
        file.write_all(MAGIC).map_err(io)?;
        file.write_all(&(json.len() as u32).to_le_bytes())
            .map_err(io)?;
        file.write_all(&json).map_err(io)?;
        Ok(BaseWriter {
            path: path.to_path_buf(),
            file,
            top_k: header.top_k,
            rows: 0,
            bytes: (MAGIC.len() + 4 + json.len()) as u64,
        })
    }

    /// Appends the row of one scored token. `Ok(Err(v))`: the logits held the non-finite `v`.
    pub fn push(&mut self, logits: &[f32], target: TokenId) -> Result<Result<(), f32>, KldError> {
        match log_softmax(logits) {
            Ok(norm) => self.push_normalized(logits, &norm, target).map(Ok),
            Err(v) => Ok(Err(v)),
        }
    }

    /// [`BaseWriter::push`] with the logits' normalizer already known.
    pub fn push_normalized(
        &mut self,
        logits: &[f32],
        norm: &LogSoftmax,
        target: TokenId,
    ) -> Result<(), KldError> {
        let row = BaseRow::from_normalized(logits, norm, target, self.top_k);
        let mut buf = Vec::with_capacity(8 + 8 * self.top_k);
        buf.extend_from_slice(&row.target.to_le_bytes());
        buf.extend_from_slice(&row.target_logprob.to_le_bytes());
        for i in 0..self.top_k {
            // A vocabulary smaller than top_k pads with impossible entries.
            let (t, lp) = row.top.get(i).copied().unwrap_or((-1, f32::NEG_INFINITY));
            buf.extend_from_slice(&t.to_le_bytes());
            buf.extend_from_slice(&lp.to_le_bytes());
        }
        self.file.write_all(&buf).map_err(|source| KldError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.rows += 1;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes the file; returns its size in bytes.
    pub fn finish(mut self) -> Result<u64, KldError> {
        self.file.flush().map_err(|source| KldError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.bytes)
    }
}

/// Reads rows of a base file by their index.
pub struct BaseReader {
    path: PathBuf,
    file: File,
    header: BaseHeader,
    data_start: u64,
    n_rows: u64,
}

impl BaseReader {
    /// Opens `path`, checking its magic, header and that it holds whole rows.
    pub fn open(path: &Path) -> Result<BaseReader, KldError> {
        let invalid = |reason: String| KldError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let io = |source| KldError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut magic = [0u8; 12];
        if len < 12 || file.read_exact(&mut magic).is_err() || &magic[..8] != MAGIC {
            return Err(invalid(
                "not a KL-divergence base file (written by `lmdensity ppl --save-kld-base`)".into(),
            ));
        }
        let header_len = u64::from(u32::from_le_bytes([
            magic[8], magic[9], magic[10], magic[11],
        ]));
        if 12 + header_len > len {
            return Err(invalid("truncated inside its header".into()));
        }
        let mut json = vec![0u8; header_len as usize];
        file.read_exact(&mut json).map_err(io)?;
        let header: BaseHeader = serde_json::from_slice(&json)
            .map_err(|e| invalid(format!("unreadable header: {e}")))?;
        if header.top_k == 0 {
            return Err(invalid("header says top_k = 0".into()));
        }
        let data_start = 12 + header_len;
        let data = len - data_start;
        let row = header.row_bytes();
        if data % row != 0 {
            return Err(invalid(format!(
                "truncated: {} bytes after the last whole row of {row} bytes ({} rows); recreate it",
                data % row,
                data / row
            )));
        }
        Ok(BaseReader {
            path: path.to_path_buf(),
            file,
            header,
            data_start,
            n_rows: data / row,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header.
    pub fn header(&self) -> &BaseHeader {
        &self.header
    }

    /// Rows (scored tokens) in the file.
    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }

    /// `n` rows starting at row `first`.
    pub fn rows(&mut self, first: u64, n: usize) -> Result<Vec<BaseRow>, KldError> {
        if first + n as u64 > self.n_rows {
            return Err(KldError::Invalid {
                path: self.path.clone(),
                reason: format!(
                    "holds {} scored tokens, this run needs rows {first}..{}: not the same corpus or windows",
                    self.n_rows,
                    first + n as u64
                ),
            });
        }
        let row_bytes = self.header.row_bytes() as usize;
        let mut buf = vec![0u8; row_bytes * n];
        let io = |source| KldError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .seek(SeekFrom::Start(self.data_start + first * row_bytes as u64))
            .map_err(io)?;
        self.file.read_exact(&mut buf).map_err(io)?;
        let word = |b: &[u8], at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
        Ok(buf
            .chunks_exact(row_bytes)
            .map(|b| BaseRow {
                target: i32::from_le_bytes(word(b, 0)),
                target_logprob: f32::from_le_bytes(word(b, 4)),
                top: (0..self.header.top_k)
                    .map(|i| {
                        let at = 8 + 8 * i;
                        (
                            i32::from_le_bytes(word(b, at)),
                            f32::from_le_bytes(word(b, at + 4)),
                        )
                    })
                    .filter(|&(t, _)| t >= 0)
                    .collect(),
            })
            .collect())
    }
}

/// Accumulates one window's comparisons.
#[derive(Debug, Default)]
pub struct WindowComparer {
    comparison: WindowComparison,
}

impl WindowComparer {
    /// Adds one token.
    pub fn push(&mut self, base: &BaseRow, token: &TokenComparison) {
        let c = &mut self.comparison;
        c.kld.push(token.kld as f32);
        c.delta_p.push(token.delta_p as f32);
        c.n_same_top += usize::from(token.same_top);
        c.base_nll_sum -= f64::from(base.target_logprob);
        c.ln_ratio_sq_sum += (f64::from(base.target_logprob) - token.logprob).powi(2);
        c.base_residual_sum += base.residual_mass();
    }

    /// The window's comparison.
    pub fn finish(self) -> WindowComparison {
        self.comparison
    }
}

/// Linear-interpolation percentile (`q` in 0…100) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

/// What a compared run's windows add up to: every scored token's KLD and Δp, and the sums the
/// other metrics need.
struct ComparisonTotals {
    kld: Vec<f64>,
    delta_p: Vec<f64>,
    same: usize,
    nll: f64,
    base_nll: f64,
    ratio_sq: f64,
    residual: f64,
}

impl ComparisonTotals {
    /// The totals of `samples`, or `None` when a window lacks its comparison.
    fn of(samples: &[WindowSample]) -> Option<Self> {
        let comparisons = samples
            .iter()
            .map(|s| s.comparison.as_ref().map(|c| (s, c)))
            .collect::<Option<Vec<_>>>()?;
        let mut t = ComparisonTotals {
            kld: Vec::new(),
            delta_p: Vec::new(),
            same: 0,
            nll: 0.0,
            base_nll: 0.0,
            ratio_sq: 0.0,
            residual: 0.0,
        };
        for (s, c) in &comparisons {
            t.kld.extend(c.kld.iter().map(|&v| f64::from(v)));
            t.delta_p.extend(c.delta_p.iter().map(|&v| f64::from(v)));
            t.same += c.n_same_top;
            t.nll += s.nll_sum;
            t.base_nll += c.base_nll_sum;
            t.ratio_sq += c.ln_ratio_sq_sum;
            t.residual += c.base_residual_sum;
        }
        Some(t)
    }
}

/// The KL-divergence metrics of a compared run (llama-perplexity's `--kl-divergence` report),
/// or nothing when a window lacks its comparison. `top_k` is the base file's.
pub fn comparison_metrics(samples: &[WindowSample], top_k: usize) -> Vec<Metric> {
    let Some(mut totals) = ComparisonTotals::of(samples) else {
        return Vec::new();
    };
    let n = totals.kld.len();
    if n == 0 {
        return Vec::new();
    }
    let over = format!(
        "over {n} scored tokens, against the base's top-{top_k} tokens plus one bucket for the rest of the vocabulary"
    );
    let mut out = kld_metrics(&mut totals.kld, &over);
    out.extend(delta_p_metrics(&mut totals.delta_p, n));
    out.extend(agreement_metrics(&totals, n, top_k));
    out
}

/// The mean per-token KLD and its percentiles; sorts `kld`. `over` says over which tokens.
fn kld_metrics(kld: &mut [f64], over: &str) -> Vec<Metric> {
    let metric = Metric::new;
    let mut out = Vec::new();
    let (kld_mean, kld_se) = mean_and_stderr(kld);
    out.push(metric(
        "kld_mean",
        kld_mean,
        kld_se,
        "nats",
        format!("mean KL(base ‖ model) per token {over} (a lower bound on the full-vocabulary KL); stderr over tokens"),
    ));
    kld.sort_by(f64::total_cmp);
    for (name, q) in [
        ("kld_max", 100.0),
        ("kld_p99.9", 99.9),
        ("kld_p99", 99.0),
        ("kld_p95", 95.0),
        ("kld_p90", 90.0),
        ("kld_median", 50.0),
        ("kld_p10", 10.0),
        ("kld_p5", 5.0),
        ("kld_p1", 1.0),
        ("kld_min", 0.0),
    ] {
        out.push(metric(
            name,
            percentile(kld, q),
            None,
            "nats",
            format!("{q}th percentile of the per-token KLD (linear interpolation) {over}"),
        ));
    }
    out
}

/// The mean, RMS and percentiles of p_model(target) − p_base(target) over `n` scored tokens;
/// sorts `delta_p`.
fn delta_p_metrics(delta_p: &mut [f64], n: usize) -> Vec<Metric> {
    let metric = Metric::new;
    let mut out = Vec::new();
    let (dp_mean, dp_se) = mean_and_stderr(delta_p);
    out.push(metric(
        "delta_p_mean",
        dp_mean,
        dp_se,
        "probability",
        format!("mean of p_model(target) − p_base(target) over {n} scored tokens"),
    ));
    let squares: Vec<f64> = delta_p.iter().map(|d| d * d).collect();
    let (ms, ms_se) = mean_and_stderr(&squares);
    let rms = ms.sqrt();
    out.push(metric(
        "delta_p_rms",
        rms,
        ms_se.map(|s| s / (2.0 * rms.max(f64::MIN_POSITIVE))),
        "probability",
        format!("root mean square of p_model(target) − p_base(target) over {n} scored tokens; stderr by the delta method"),
    ));
    delta_p.sort_by(f64::total_cmp);
    for (name, q) in [
        ("delta_p_max", 100.0),
        ("delta_p_p99.9", 99.9),
        ("delta_p_p99", 99.0),
        ("delta_p_p95", 95.0),
        ("delta_p_p90", 90.0),
        ("delta_p_p75", 75.0),
        ("delta_p_median", 50.0),
        ("delta_p_p25", 25.0),
        ("delta_p_p10", 10.0),
        ("delta_p_p5", 5.0),
        ("delta_p_p1", 1.0),
        ("delta_p_min", 0.0),
    ] {
        out.push(metric(
            name,
            percentile(delta_p, q),
            None,
            "probability",
            format!("{q}th percentile of p_model(target) − p_base(target) (linear interpolation) over {n} tokens"),
        ));
    }
    out
}

/// How often the two models agree on the top token, the perplexity ratio, the base's
/// perplexity and its residual mass, over `n` scored tokens; `top_k` is the base file's.
fn agreement_metrics(totals: &ComparisonTotals, n: usize, top_k: usize) -> Vec<Metric> {
    let metric = Metric::new;
    let nf = n as f64;
    let ComparisonTotals {
        same,
        nll,
        base_nll,
        ratio_sq,
        residual,
        ..
    } = *totals;
    let mut out = Vec::new();
    let same_rate = same as f64 / nf;
    out.push(metric(
        "same_top_rate",
        same_rate,
        Some((same_rate * (1.0 - same_rate) / nf).sqrt()),
        "fraction",
        format!("tokens whose most probable token is the same under both models, of {n}; binomial stderr"),
    ));
    let ln_ratio = (nll - base_nll) / nf;
    let ratio_var = (ratio_sq / nf - ln_ratio * ln_ratio).max(0.0) * nf / (nf - 1.0).max(1.0);
    out.push(metric(
        "ln_ppl_ratio",
        ln_ratio,
        Some((ratio_var / nf).sqrt()),
        "nats",
        format!("ln(PPL(model)/PPL(base)) = mean of ln p_base(target) − ln p_model(target) over {n} tokens; stderr over tokens"),
    ));
    out.push(metric(
        "ppl_ratio",
        ln_ratio.exp(),
        None,
        "",
        "PPL(model)/PPL(base), token perplexities over the same tokens".into(),
    ));
    out.push(metric(
        "base_token_perplexity",
        (base_nll / nf).exp(),
        None,
        "",
        format!("token perplexity of the base run over the same {n} tokens, from the base file"),
    ));
    out.push(metric(
        "kld_base_residual_mass",
        residual / nf,
        None,
        "probability",
        format!("mean probability mass the base put outside its stored top-{top_k} (the KLD bound's bucket)"),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(logits: &[f32]) -> Vec<f64> {
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        logits.iter().map(|&l| f64::from(l).exp() / z).collect()
    }

    fn row(seed: u32, n: usize, noise: f32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40503);
                let o = (h.rotate_left(11).wrapping_mul(2_246_822_519) % 1001) as f32 / 1000.0;
                (h % 997) as f32 / 150.0 + noise * (o - 0.5)
            })
            .collect()
    }

    #[test]
    fn top_indices_are_the_largest_in_order() {
        let v = [0.5, 3.0, -1.0, 3.0, 2.0, 7.0];
        assert_eq!(top_indices(&v, 3), vec![5, 1, 3]);
        assert_eq!(top_indices(&v, 0), Vec::<usize>::new());
        assert_eq!(top_indices(&v, 10).len(), 6);
        let wide: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
        let mut sorted: Vec<usize> = (0..1000).collect();
        sorted.sort_by(|&a, &b| wide[b].total_cmp(&wide[a]));
        assert_eq!(top_indices(&wide, 20), sorted[..20]);
        assert_eq!(top_indices(&wide, 500), sorted[..500]);
    }

    #[test]
    fn full_vocabulary_top_k_gives_the_exact_kl() {
        let base = row(3, 300, 0.0);
        let model = row(3, 300, 1.5);
        let stored = BaseRow::from_logits(&base, 17, 300).expect("finite");
        let c = compare(&stored, &model).expect("finite");
        let (p, q) = (softmax(&base), softmax(&model));
        let exact: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        assert!((c.kld - exact).abs() < 1e-5, "{} vs {exact}", c.kld);
        assert!((c.delta_p - (q[17] - p[17])).abs() < 1e-6);
        assert!((c.logprob - q[17].ln()).abs() < 1e-5);
    }

    #[test]
    fn truncated_top_k_is_a_lower_bound_and_identical_rows_give_zero() {
        let base = row(9, 500, 0.0);
        let model = row(9, 500, 2.0);
        let exact = compare(
            &BaseRow::from_logits(&base, 0, 500).expect("finite"),
            &model,
        )
        .expect("finite")
        .kld;
        let mut previous = 0.0;
        for k in [1, 8, 64, 250] {
            let bound = compare(&BaseRow::from_logits(&base, 0, k).expect("finite"), &model)
                .expect("finite")
                .kld;
            assert!(bound <= exact + 1e-9, "k={k}: {bound} > {exact}");
            assert!(bound >= previous - 1e-9, "k={k}: bound fell");
            previous = bound;
        }
        let same =
            compare(&BaseRow::from_logits(&base, 4, 64).expect("finite"), &base).expect("finite");
        // Only the f32 rounding of the stored log-probabilities remains.
        assert!(same.kld < 1e-6 && same.delta_p.abs() < 1e-6 && same.same_top);
    }

    #[test]
    fn base_file_round_trips_and_truncation_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("base.kld");
        let header = BaseHeader {
            model: "toy".into(),
            model_sha256: "00".into(),
            quantization: "F32".into(),
            backend: "toy".into(),
            corpus: "c".into(),
            corpus_sha256: "ab".into(),
            mode: "harness".into(),
            context: 8,
            n_vocab: 40,
            top_k: 5,
        };
        let mut w = BaseWriter::create(&path, &header).expect("create");
        let rows: Vec<Vec<f32>> = (0..6).map(|s| row(s, 40, 0.0)).collect();
        for (i, r) in rows.iter().enumerate() {
            w.push(r, i as TokenId).expect("io").expect("finite");
        }
        assert!(w
            .push(&[0.0, f32::NAN], 0)
            .expect("io")
            .is_err_and(f32::is_nan));
        let bytes = w.finish().expect("flush");
        assert_eq!(bytes, std::fs::metadata(&path).expect("stat").len());
        let mut r = BaseReader::open(&path).expect("open");
        assert_eq!(r.header(), &header);
        assert_eq!(r.n_rows(), 6);
        let back = r.rows(2, 3).expect("rows");
        for (i, b) in back.iter().enumerate() {
            assert_eq!(
                b,
                &BaseRow::from_logits(&rows[2 + i], (2 + i) as TokenId, 5).expect("finite")
            );
        }
        assert!(r.rows(4, 3).is_err());
        // Cut the last row in half.
        let data = std::fs::read(&path).expect("read");
        std::fs::write(&path, &data[..data.len() - 20]).expect("write");
        let err = BaseReader::open(&path).err().expect("truncated");
        assert!(err.to_string().contains("truncated"), "{err}");
        std::fs::write(&path, b"not a base").expect("write");
        let err = BaseReader::open(&path).err().expect("not a base");
        assert!(
            err.to_string().contains("not a KL-divergence base"),
            "{err}"
        );
    }

    #[test]
    fn percentiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert!((percentile(&v, 90.0) - 4.6).abs() < 1e-12);
    }
}
