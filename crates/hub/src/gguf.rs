//! A bounded GGUF reader that checks a file before an engine loads it, and a small writer for
//! test fixtures.
//!
//! GGUF metadata is untrusted input: every length is checked against the bytes left in the file
//! before anything is allocated, so a flipped byte gives an error naming the file and the field,
//! never an allocation failure or a crash inside the engine. Layout per the GGUF spec
//! (ggml/docs/gguf.md): magic `GGUF`, version, tensor count, metadata count, metadata key/values,
//! tensor infos, padding to `general.alignment`, tensor data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A problem with a GGUF file, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct GgufError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub what: String,
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Unsigned integer (u8/u16/u32/u64 on disk).
    Uint(u64),
    /// Signed integer (i8/i16/i32/i64 on disk).
    Int(i64),
    /// Float (f32/f64 on disk).
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::Uint(v) => Some(v),
            GgufValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (ggml order).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Offset of its data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// What a checked GGUF file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufFile {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata key/values.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor header entries.
    pub tensors: Vec<TensorInfo>,
    /// Start of the tensor data section.
    pub data_offset: u64,
    /// Size of the file.
    pub file_bytes: u64,
}

impl GgufFile {
    /// `general.architecture`.
    pub fn architecture(&self) -> &str {
        self.metadata
            .get("general.architecture")
            .and_then(GgufValue::as_str)
            .unwrap_or("unknown")
    }

    /// The quantization label: `general.file_type` as llama.cpp names it (`Q4_K_M`…), else the
    /// most common tensor type; for files lmdensity made from a quantized GGUF
    /// ([`DEQUANTIZED_FROM_KEY`]), where the weights came from: `F32, dequantized from Q4_1`,
    /// `Q6_K, requantized from F32 dequantized from Q4_1`.
    pub fn quantization(&self) -> String {
        let own = self.own_quantization();
        match self
            .metadata
            .get(DEQUANTIZED_FROM_KEY)
            .and_then(GgufValue::as_str)
        {
            Some(source) if own == "F32" => format!("F32, dequantized from {source}"),
            Some(source) => format!("{own}, requantized from F32 dequantized from {source}"),
            None => own,
        }
    }

    fn own_quantization(&self) -> String {
        if let Some(ft) = self
            .metadata
            .get("general.file_type")
            .and_then(GgufValue::as_u64)
        {
            if let Some(name) = file_type_name(ft) {
                return name.to_string();
            }
        }
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        for t in &self.tensors {
            *counts.entry(t.ggml_type).or_default() += t.n_elements();
        }
        counts
            .into_iter()
            .max_by_key(|&(_, n)| n)
            .and_then(|(t, _)| type_traits(t).map(|(name, _, _)| name.to_string()))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Total number of tensor elements (parameters).
    pub fn n_params(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::n_elements).sum()
    }
}

/// (name, block size, bytes per block) of a ggml type, per ggml.c's `type_traits`.
pub fn type_traits(ggml_type: u32) -> Option<(&'static str, u64, u64)> {
    Some(match ggml_type {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        42 => ("Q2_0", 64, 18),
        _ => return None,
    })
}

/// llama.cpp's name for a `general.file_type` (`llama_ftype`).
pub fn file_type_name(file_type: u64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Reader<R> {
    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, String> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(format!(
                "truncated or corrupt header: {what} needs {n} bytes at offset {} but the file has {} bytes",
                self.pos, self.len
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| format!("reading {what} at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let v = self.bytes(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.u64(what)?;
        let bytes = self.bytes(n, what)?;
        String::from_utf8(bytes).map_err(|_| format!("{what} at offset {} is not UTF-8", self.pos))
    }

    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<GgufValue, String> {
        Ok(match ty {
            0 => GgufValue::Uint(u64::from(self.array::<1>(what)?[0])),
            1 => GgufValue::Int(i64::from(self.array::<1>(what)?[0] as i8)),
            2 => GgufValue::Uint(u64::from(u16::from_le_bytes(self.array(what)?))),
            3 => GgufValue::Int(i64::from(i16::from_le_bytes(self.array(what)?))),
            4 => GgufValue::Uint(u64::from(self.u32(what)?)),
            5 => GgufValue::Int(i64::from(i32::from_le_bytes(self.array(what)?))),
            6 => GgufValue::Float(f64::from(f32::from_le_bytes(self.array(what)?))),
            7 => match self.array::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(format!("{what}: invalid bool byte {b}")),
            },
            8 => GgufValue::Str(self.string(what)?),
            9 => {
                if depth > 0 {
                    return Err(format!("{what}: nested arrays are not supported"));
                }
                let elem_ty = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte: bound the allocation by the file.
                if n > self.len.saturating_sub(self.pos) {
                    return Err(format!(
                        "truncated or corrupt header: {what} claims {n} elements at offset {} but the file has {} bytes",
                        self.pos, self.len
                    ));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem_ty, what, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::Uint(self.u64(what)?),
            11 => GgufValue::Int(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::Float(f64::from_le_bytes(self.array(what)?)),
            t => {
                return Err(format!(
                    "{what}: unknown metadata type {t} (corrupt header?)"
                ))
            }
        })
    }
}

/// Reads and checks a GGUF file's header and that every tensor's data lies inside the file.
pub fn read(path: &Path) -> Result<GgufFile, GgufError> {
    let err = |what: String| GgufError {
        path: path.to_path_buf(),
        what,
    };
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| err(format!("cannot stat: {e}")))?
        .len();
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 20, file),
        pos: 0,
        len,
    };
    let parsed = parse(&mut r, len).map_err(err)?;
    Ok(parsed)
}

fn parse<R: Read>(r: &mut Reader<R>, len: u64) -> Result<GgufFile, String> {
    if len < 24 {
        return Err(format!("not a GGUF file: only {len} bytes"));
    }
    let magic = r.array::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(format!(
            "not a GGUF file: magic bytes are {:02x?}, expected \"GGUF\" (47 47 55 46)",
            magic
        ));
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "unsupported GGUF version {version} (supported: 2, 3); corrupt header?"
        ));
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    if n_tensors > len / 8 || n_kv > len / 8 {
        return Err(format!(
            "corrupt header: {n_tensors} tensors / {n_kv} metadata entries cannot fit in {len} bytes"
        ));
    }
    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string(&format!("metadata key #{i}"))?;
        let ty = r.u32(&format!("type of `{key}`"))?;
        let value = r.value(ty, &format!("value of `{key}`"), 0)?;
        metadata.insert(key, value);
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = r.string(&format!("name of tensor #{i}"))?;
        let n_dims = r.u32(&format!("dimension count of `{name}`"))?;
        if n_dims == 0 || n_dims > 4 {
            return Err(format!(
                "tensor `{name}`: {n_dims} dimensions (corrupt header?)"
            ));
        }
        let dims = (0..n_dims)
            .map(|_| r.u64(&format!("dimensions of `{name}`")))
            .collect::<Result<Vec<_>, _>>()?;
        let ggml_type = r.u32(&format!("type of `{name}`"))?;
        let offset = r.u64(&format!("offset of `{name}`"))?;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    let alignment = match metadata.get("general.alignment") {
        None => 32,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(format!("general.alignment {v:?} is not a power of two")),
        },
    };
    let data_offset = r.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        let (type_name, block, block_bytes) = type_traits(t.ggml_type).ok_or_else(|| {
            format!(
                "tensor `{}` has unknown ggml type {} (corrupt header, or a type newer than this lmdensity)",
                t.name, t.ggml_type
            )
        })?;
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor `{}`: dimensions {:?} overflow", t.name, t.dims))?;
        if t.dims[0] % block != 0 {
            return Err(format!(
                "tensor `{}`: first dimension {} is not a multiple of the {type_name} block size {block}",
                t.name, t.dims[0]
            ));
        }
        if t.offset % alignment != 0 {
            return Err(format!(
                "tensor `{}`: data offset {} is not aligned to {alignment}",
                t.name, t.offset
            ));
        }
        let bytes = n / block * block_bytes;
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|e| e.checked_add(bytes))
            .ok_or_else(|| format!("tensor `{}`: offset {} overflows", t.name, t.offset))?;
        if end > len {
            return Err(format!(
                "truncated: tensor `{}` ends at byte {end} but the file has only {len} bytes ({} missing); re-download it",
                t.name,
                end - len
            ));
        }
    }
    if !metadata.contains_key("general.architecture") {
        return Err("metadata has no `general.architecture`".into());
    }
    Ok(GgufFile {
        version,
        metadata,
        tensors,
        data_offset,
        file_bytes: len,
    })
}

/// GGUF metadata key lmdensity writes into a GGUF dequantized from a quantized one (`lmdensity
/// convert --gguf-f32`): the source's quantization.
pub const DEQUANTIZED_FROM_KEY: &str = "lmdensity.dequantized_from";

/// Writes a GGUF v3 file with the given metadata and f32 tensors (for test fixtures and small
/// conversions). Tensor data is `(name, dims innermost-first, values)`.
pub fn write_f32(
    path: &Path,
    metadata: &[(&str, GgufValue)],
    tensors: &[(String, Vec<u64>, Vec<f32>)],
) -> std::io::Result<()> {
    const ALIGN: u64 = 32;
    let mut out = std::io::BufWriter::new(File::create(path)?);
    out.write_all(b"GGUF")?;
    out.write_all(&3u32.to_le_bytes())?;
    out.write_all(&(tensors.len() as u64).to_le_bytes())?;
    out.write_all(&(metadata.len() as u64).to_le_bytes())?;
    fn put_str(out: &mut impl Write, s: &str) -> std::io::Result<()> {
        out.write_all(&(s.len() as u64).to_le_bytes())?;
        out.write_all(s.as_bytes())
    }
    fn type_id(v: &GgufValue) -> u32 {
        match v {
            GgufValue::Uint(_) => 4,
            GgufValue::Int(_) => 5,
            GgufValue::Float(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::Str(_) => 8,
            GgufValue::Array(_) => 9,
        }
    }
    fn put_value(out: &mut impl Write, v: &GgufValue) -> std::io::Result<()> {
        match v {
            GgufValue::Uint(x) => out.write_all(&(*x as u32).to_le_bytes()),
            GgufValue::Int(x) => out.write_all(&(*x as i32).to_le_bytes()),
            GgufValue::Float(x) => out.write_all(&(*x as f32).to_le_bytes()),
            GgufValue::Bool(b) => out.write_all(&[u8::from(*b)]),
            GgufValue::Str(s) => put_str(out, s),
            GgufValue::Array(items) => {
                let elem = items.first().map_or(4, type_id);
                out.write_all(&elem.to_le_bytes())?;
                out.write_all(&(items.len() as u64).to_le_bytes())?;
                items.iter().try_for_each(|i| put_value(out, i))
            }
        }
    }
    let mut pos = 24u64;
    let mut count = CountingWriter(&mut out, &mut pos);
    for (key, value) in metadata {
        put_str(&mut count, key)?;
        count.write_all(&type_id(value).to_le_bytes())?;
        put_value(&mut count, value)?;
    }
    let mut offset = 0u64;
    for (name, dims, data) in tensors {
        put_str(&mut count, name)?;
        count.write_all(&(dims.len() as u32).to_le_bytes())?;
        dims.iter()
            .try_for_each(|d| count.write_all(&d.to_le_bytes()))?;
        count.write_all(&0u32.to_le_bytes())?;
        count.write_all(&offset.to_le_bytes())?;
        offset += (data.len() as u64 * 4).div_ceil(ALIGN) * ALIGN;
    }
    let pad = pos.div_ceil(ALIGN) * ALIGN - pos;
    out.write_all(&vec![0u8; pad as usize])?;
    for (_, _, data) in tensors {
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        out.write_all(&bytes)?;
        let pad = (bytes.len() as u64).div_ceil(ALIGN) * ALIGN - bytes.len() as u64;
        out.write_all(&vec![0u8; pad as usize])?;
    }
    out.flush()
}

struct CountingWriter<'a, W: Write>(&'a mut W, &'a mut u64);

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        *self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Writes a tiny random-weight llama-architecture GGUF (byte-level SentencePiece vocabulary of
/// 259 tokens, 2 layers, width 32) that llama.cpp loads and runs. For fast tests of the
/// plumbing only: its numbers say nothing about real models.
pub fn write_tiny_llama(path: &Path, seed: u64) -> std::io::Result<()> {
    write_tiny_llama_with(path, seed, None)
}

/// [`write_tiny_llama`] with a chat template in its metadata (`tokenizer.chat_template`).
pub fn write_tiny_llama_with(
    path: &Path,
    seed: u64,
    chat_template: Option<&str>,
) -> std::io::Result<()> {
    let (n_embd, n_ff, n_layer, n_head, n_vocab) = (32u64, 64u64, 2u64, 4u64, 259u64);
    let mut tokens = vec![
        GgufValue::Str("<unk>".into()),
        GgufValue::Str("<s>".into()),
        GgufValue::Str("</s>".into()),
    ];
    tokens.extend((0..=255u8).map(|b| GgufValue::Str(format!("<0x{b:02X}>"))));
    // token types: 2 = unknown, 3 = control, 6 = byte
    let mut types = vec![GgufValue::Int(2), GgufValue::Int(3), GgufValue::Int(3)];
    types.extend((0..256).map(|_| GgufValue::Int(6)));
    let scores = (0..n_vocab).map(|_| GgufValue::Float(0.0)).collect();
    let metadata = vec![
        ("general.architecture", GgufValue::Str("llama".into())),
        ("general.name", GgufValue::Str("lmdensity-tiny-test".into())),
        ("general.file_type", GgufValue::Uint(0)),
        ("llama.context_length", GgufValue::Uint(256)),
        ("llama.embedding_length", GgufValue::Uint(n_embd)),
        ("llama.block_count", GgufValue::Uint(n_layer)),
        ("llama.feed_forward_length", GgufValue::Uint(n_ff)),
        ("llama.attention.head_count", GgufValue::Uint(n_head)),
        ("llama.attention.head_count_kv", GgufValue::Uint(n_head)),
        (
            "llama.rope.dimension_count",
            GgufValue::Uint(n_embd / n_head),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::Float(1e-5),
        ),
        ("tokenizer.ggml.model", GgufValue::Str("llama".into())),
        ("tokenizer.ggml.tokens", GgufValue::Array(tokens)),
        ("tokenizer.ggml.scores", GgufValue::Array(scores)),
        ("tokenizer.ggml.token_type", GgufValue::Array(types)),
        ("tokenizer.ggml.unknown_token_id", GgufValue::Uint(0)),
        ("tokenizer.ggml.bos_token_id", GgufValue::Uint(1)),
        ("tokenizer.ggml.eos_token_id", GgufValue::Uint(2)),
        ("tokenizer.ggml.add_bos_token", GgufValue::Bool(true)),
    ];
    let mut metadata = metadata;
    if let Some(template) = chat_template {
        metadata.push(("tokenizer.chat_template", GgufValue::Str(template.into())));
    }
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rand = |n: u64, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let mut tensors: Vec<(String, Vec<u64>, Vec<f32>)> = vec![
        (
            "token_embd.weight".into(),
            vec![n_embd, n_vocab],
            rand(n_embd * n_vocab, 1.0),
        ),
        (
            "output_norm.weight".into(),
            vec![n_embd],
            vec![1.0; n_embd as usize],
        ),
        (
            "output.weight".into(),
            vec![n_embd, n_vocab],
            rand(n_embd * n_vocab, 0.5),
        ),
    ];
    for l in 0..n_layer {
        let b = |s: &str| format!("blk.{l}.{s}.weight");
        tensors.push((b("attn_norm"), vec![n_embd], vec![1.0; n_embd as usize]));
        for w in ["attn_q", "attn_k", "attn_v", "attn_output"] {
            tensors.push((b(w), vec![n_embd, n_embd], rand(n_embd * n_embd, 0.2)));
        }
        tensors.push((b("ffn_norm"), vec![n_embd], vec![1.0; n_embd as usize]));
        tensors.push((b("ffn_gate"), vec![n_embd, n_ff], rand(n_embd * n_ff, 0.2)));
        tensors.push((b("ffn_up"), vec![n_embd, n_ff], rand(n_embd * n_ff, 0.2)));
        tensors.push((b("ffn_down"), vec![n_ff, n_embd], rand(n_embd * n_ff, 0.2)));
    }
    write_f32(path, &metadata, &tensors)
}

/// Flips bytes / truncates a copy of a file: helpers for corruption tests.
pub fn corrupt_copy(
    src: &Path,
    dst: &Path,
    truncate_to: Option<u64>,
    flip_at: Option<u64>,
) -> std::io::Result<()> {
    std::fs::copy(src, dst)?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dst)?;
    if let Some(at) = flip_at {
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&[b[0] ^ 0xff])?;
    }
    if let Some(len) = truncate_to {
        f.set_len(len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_model_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tiny.gguf");
        write_tiny_llama(&p, 1).expect("write");
        let g = read(&p).expect("valid");
        assert_eq!(g.architecture(), "llama");
        assert_eq!(g.quantization(), "F32");
        assert_eq!(g.tensors.len(), 3 + 2 * 9);
        assert_eq!(g.metadata["tokenizer.ggml.tokens"], {
            match &g.metadata["tokenizer.ggml.tokens"] {
                GgufValue::Array(a) if a.len() == 259 => {
                    g.metadata["tokenizer.ggml.tokens"].clone()
                }
                other => panic!("bad tokens {other:?}"),
            }
        });
    }

    #[test]
    fn truncated_file_names_tensor_and_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("tiny.gguf");
        write_tiny_llama(&good, 1).expect("write");
        let len = std::fs::metadata(&good).expect("stat").len();
        let bad = dir.path().join("cut.gguf");
        corrupt_copy(&good, &bad, Some(len - 100), None).expect("copy");
        let msg = read(&bad).expect_err("truncated").to_string();
        assert!(
            msg.contains("cut.gguf") && msg.contains("truncated") && msg.contains("100 missing"),
            "{msg}"
        );
    }

    #[test]
    fn flipped_magic_and_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("tiny.gguf");
        write_tiny_llama(&good, 1).expect("write");
        let bad = dir.path().join("flip.gguf");
        corrupt_copy(&good, &bad, None, Some(0)).expect("copy");
        let msg = read(&bad).expect_err("magic").to_string();
        assert!(msg.contains("not a GGUF file"), "{msg}");
        // High byte of the metadata count: an absurd count is refused without allocating.
        corrupt_copy(&good, &bad, None, Some(23)).expect("copy");
        let msg = read(&bad).expect_err("count").to_string();
        assert!(msg.contains("corrupt header"), "{msg}");
        // High byte of the first key's length.
        corrupt_copy(&good, &bad, None, Some(31)).expect("copy");
        let msg = read(&bad).expect_err("key length").to_string();
        assert!(msg.contains("metadata key #0"), "{msg}");
    }

    #[test]
    fn missing_file() {
        let msg = read(Path::new("/nonexistent/x.gguf"))
            .expect_err("missing")
            .to_string();
        assert!(
            msg.contains("/nonexistent/x.gguf") && msg.contains("cannot open"),
            "{msg}"
        );
    }
}
