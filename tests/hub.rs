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

/// Array tasks on one node share the model cache: four processes fetching the same model at
/// once download it as often as one process alone does (the others wait on the cache's lock,
/// then find it there), and all four verify it.
#[test]
fn concurrent_fetches_of_one_model_download_it_once() {
    let (dir, model, _) = tiny_setup();
    let bytes = std::fs::read(&model).expect("read");
    let sha = lmdensity_hub::fetch::hash_file(&model, false).expect("hash");
    registry(dir.path(), &sha);
    let files: HashMap<String, Vec<u8>> =
        [("/test-org/tiny/resolve/main/tiny.gguf".to_string(), bytes)].into();
    let served = |fetches: usize, home: &str| {
        let server = HubServer::start(files.clone(), false);
        let (cwd, endpoint) = (dir.path().to_path_buf(), server.endpoint.clone());
        let hf_home = dir.path().join(home);
        // Each round gets its own lmdensity cache, so the first round leaves nothing behind.
        let handles: Vec<_> = (0..fetches)
            .map(|_| {
                let (cwd, hf_home, endpoint) = (cwd.clone(), hf_home.clone(), endpoint.clone());
                std::thread::spawn(move || {
                    let mut cmd = Command::new(bin());
                    cmd.current_dir(&cwd)
                        .env("HF_ENDPOINT", &endpoint)
                        .env("HF_HOME", &hf_home)
                        .env_remove("HF_HUB_CACHE")
                        .env_remove("HF_HUB_OFFLINE")
                        .env("LMDENSITY_CACHE", hf_home.join("lmd-cache"))
                        .args(["fetch", "tiny", "--quiet"]);
                    cmd.output().expect("run")
                })
            })
            .collect();
        for handle in handles {
            let out = handle.join().expect("thread");
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(stdout(&out).contains(&sha), "{}", stdout(&out));
        }
        server.served.load(std::sync::atomic::Ordering::Relaxed)
    };
    let alone = served(1, "home-1");
    assert!(alone >= 1, "the model must come from the server");
    assert_eq!(
        served(4, "home-4"),
        alone,
        "four concurrent fetches, one download"
    );
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

/// A task whose data is a Parquet file in a Hugging Face dataset repository (as the hub stores
/// datasets): fetched through hf-hub from a local stand-in for the hub, scored, recorded as
/// `hf:<repo>@<revision> <file>`, then served offline from the HF cache.
#[test]
fn hf_dataset_parquet_task_downloads_scores_and_works_offline() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    let (dir, model, _) = tiny_setup();
    let goal: ArrayRef = Arc::new(StringArray::from(vec![
        "open a jar",
        "boil water",
        "dry a cup",
    ]));
    let sol1: ArrayRef = Arc::new(StringArray::from(vec![
        "twist the lid",
        "heat it",
        "wipe it",
    ]));
    let sol2: ArrayRef = Arc::new(StringArray::from(vec![
        "eat the lid",
        "freeze it",
        "wet it",
    ]));
    let label: ArrayRef = Arc::new(Int64Array::from(vec![0, 0, 0]));
    let batch = RecordBatch::try_from_iter([
        ("goal", goal),
        ("sol1", sol1),
        ("sol2", sol2),
        ("label", label),
    ])
    .expect("batch");
    let mut parquet = Vec::new();
    {
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut parquet, batch.schema(), None).expect("w");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }
    let files: HashMap<String, Vec<u8>> = [(
        "/datasets/test-org/tiny-piqa/resolve/main/data/validation.parquet".to_string(),
        parquet,
    )]
    .into();
    std::fs::write(
        dir.path().join("tasks.toml"),
        "[[task]]\nname = \"hub_piqa\"\ndescription = \"PIQA-shaped rows from a dataset repo\"\n\
         dataset = \"test-org/tiny-piqa\"\npath = \"data/validation.parquet\"\nformat = \"parquet\"\n\
         split = \"validation\"\ntext = \"Question: {{goal}}\\nAnswer:\"\n\
         choices = [\"{{sol1}}\", \"{{sol2}}\"]\ngold = \"{{label}}\"\nmetrics = [\"acc\"]\n",
    )
    .expect("write");
    let hf_home = dir.path().join("hf-home");
    let eval = |endpoint: &str, offline: bool, results: &str| {
        let mut cmd = Command::new(bin());
        cmd.current_dir(dir.path())
            .env("HF_ENDPOINT", endpoint)
            .env("HF_HOME", &hf_home)
            .env_remove("HF_HUB_CACHE")
            .args([
                "--results-dir",
                results,
                "eval",
                "--model-path",
                model.to_str().expect("utf8"),
                "--tasks-file",
                "tasks.toml",
                "--tasks",
                "hub_piqa",
                "--threads",
                "1",
                "--quiet",
            ]);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        } else {
            cmd.env_remove("HF_HUB_OFFLINE");
        }
        cmd.output().expect("run")
    };
    let server = HubServer::start(files, false);
    let out = eval(&server.endpoint, false, "online");
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = run_dirs(&dir.path().join("online"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(
        manifest["settings"]["data"],
        "hf:test-org/tiny-piqa@main data/validation.parquet"
    );
    assert_eq!(manifest["settings"]["items"], 3);
    drop(server);
    let out = eval("http://127.0.0.1:9", true, "offline");
    assert!(
        out.status.success(),
        "offline from the HF cache: {}",
        stderr(&out)
    );
    let out = eval("http://127.0.0.1:9", false, "unreachable");
    assert!(
        out.status.success(),
        "cached files need no server: {}",
        stderr(&out)
    );
}
