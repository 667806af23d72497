//! The `hf` source against a local stand-in for the hub: download into Python's cache layout,
//! a cut connection that must not leave a complete-looking file, resume, offline reuse.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use crate::util::*;

fn registry(dir: &Path, sha: &str) {
    write_tiny_registry(dir, "", sha, "type = \"hf\"\nrepo = \"test-org/tiny\"");
}

fn fetch(dir: &Path, hf_home: &Path, endpoint: &str, offline: bool) -> std::process::Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", hf_home)
        .env_remove("HF_HUB_CACHE")
        .env("LMDENSITY_CACHE", dir.join("lmd-cache"))
        .args(["fetch", "tiny", "--quiet"]);
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    } else {
        cmd.env_remove("HF_HUB_OFFLINE");
    }
    cmd.output().expect("run")
}

#[test]
fn hf_source_downloads_resumes_and_works_offline() {
    let (dir, model, _) = tiny_setup();
    let bytes = std::fs::read(&model).expect("read");
    let sha = lmdensity_hub::fetch::hash_file(&model, false).expect("hash");
    registry(dir.path(), &sha);
    let hf_home = dir.path().join("hf-home");
    let files: HashMap<String, Vec<u8>> = [(
        "/test-org/tiny/resolve/main/tiny.gguf".to_string(),
        bytes.clone(),
    )]
    .into();

    // 1. The connection is cut half way: an error, and nothing in the cache looks complete.
    let server = HubServer::start(files.clone(), true);
    let out = fetch(dir.path(), &hf_home, &server.endpoint, false);
    assert_eq!(
        out.status.code(),
        Some(2),
        "cut download must fail: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("tiny.gguf"), "{}", stderr(&out));
    let snapshot = hf_home
        .join("hub/models--test-org--tiny/snapshots")
        .join("a".repeat(40))
        .join("tiny.gguf");
    assert!(
        !snapshot.exists(),
        "no complete-looking file after a cut download"
    );

    // 2. Rerun: completes (resuming hf-hub's .part if it kept one) and verifies the sha256.
    let out = fetch(dir.path(), &hf_home, &server.endpoint, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&sha) && stdout(&out).contains("hf:test-org/tiny@main"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(&snapshot).expect("snapshot"),
        bytes,
        "Python's cache layout"
    );
    drop(server);

    // 3. Offline, with no server: served from the HF cache.
    let out = fetch(dir.path(), &hf_home, "http://127.0.0.1:9", true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&sha));
}

#[test]
fn hf_source_offline_without_cache_says_so() {
    let (dir, model, _) = tiny_setup();
    let sha = lmdensity_hub::fetch::hash_file(&model, false).expect("hash");
    registry(dir.path(), &sha);
    let out = fetch(
        dir.path(),
        &dir.path().join("empty-hf"),
        "http://127.0.0.1:9",
        true,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("tiny.gguf"),
        "{err}"
    );
}
