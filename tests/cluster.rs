//! Plans and cells without a scheduler: `plan` from a sweep spec, `run-cell` by index, by
//! Kubernetes' JOB_COMPLETION_INDEX and by shard, `slurm submit --dry-run`, and bad input
//! refused before anything runs or is submitted (the real Slurm is in `slurm.rs`).

use std::path::{Path, PathBuf};

use crate::util::*;

/// A spec on the tiny model: one perplexity cell, two task cells, one bench cell.
pub fn tiny_spec(dir: &Path, model: &Path, corpus: &Path) -> PathBuf {
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "tiny"
models = ["{}"]

[[perplexity]]
corpus = "{}"
max_length = 64

[[tasks]]
tasks = "copa,piqa"
limit = 6

[[bench]]
n_prompt = "32"
n_gen = "4"
threads = "1"
repetitions = 1
warmup = 0
"#,
            model.display(),
            corpus.display()
        ),
    )
    .expect("write spec");
    spec
}

fn make_plan(dir: &Path, spec: &Path) -> PathBuf {
    let plan = dir.join("plan.json");
    let out = lmdensity(
        dir,
        &[
            "plan",
            spec.to_str().expect("utf8"),
            "-o",
            plan.to_str().expect("utf8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("4 cells"), "{}", stdout(&out));
    plan
}

fn plan_json(plan: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(plan).expect("plan")).expect("json")
}

#[test]
fn a_spec_expands_into_content_addressed_cells_and_ids_are_stable() {
    let (dir, model, text) = tiny_setup();
    let spec = tiny_spec(dir.path(), &model, &text);
    let plan = make_plan(dir.path(), &spec);
    let first = plan_json(&plan);
    let cells = first["cells"].as_array().expect("cells");
    let kinds: Vec<&str> = cells
        .iter()
        .map(|c| c["work"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["perplexity", "task", "task", "bench"]);
    assert_eq!(cells[1]["work"]["task"], "copa");
    assert_eq!(cells[2]["work"]["task"], "piqa");
    // The same spec gives the same ids; a changed setting gives a new id for that cell only.
    let again = make_plan(dir.path(), &spec);
    let second = plan_json(&again);
    for (a, b) in cells.iter().zip(second["cells"].as_array().expect("cells")) {
        assert_eq!(a["id"], b["id"]);
    }
    let text_spec = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(&spec, text_spec.replace("limit = 6", "limit = 7")).expect("write");
    let changed = plan_json(&make_plan(dir.path(), &spec));
    let changed = changed["cells"].as_array().expect("cells");
    assert_eq!(changed[0]["id"], cells[0]["id"]);
    assert_ne!(changed[1]["id"], cells[1]["id"]);
    assert_eq!(changed[3]["id"], cells[3]["id"]);
}

#[test]
fn run_cell_takes_its_index_from_kubernetes_and_skips_a_complete_cell() {
    let (dir, model, text) = tiny_setup();
    let spec = tiny_spec(dir.path(), &model, &text);
    let plan = make_plan(dir.path(), &spec);
    let plan_arg = plan.to_str().expect("utf8");
    let run = |index: &str| {
        std::process::Command::new(bin())
            .current_dir(dir.path())
            .env("LMDENSITY_CACHE", shared_cache())
            .env("JOB_COMPLETION_INDEX", index)
            .env_remove("SLURM_ARRAY_TASK_ID")
            .args(["--quiet", "run-cell", "--plan", plan_arg, "--threads", "1"])
            .output()
            .expect("run")
    };
    let out = run("0");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cell 0 ("), "{}", stdout(&out));
    assert!(stdout(&out).contains(": complete"), "{}", stdout(&out));
    let record_dir = dir.path().join("results/cells");
    let id = plan_json(&plan)["cells"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(record_dir.join(format!("{id}.json"))).expect("record"),
    )
    .expect("json");
    assert_eq!(record["state"], "complete");
    assert_eq!(record["attempts"], 1);
    let run_id = record["runs"][0].as_str().expect("run id");
    let samples = dir
        .path()
        .join("results")
        .join(run_id)
        .join("samples.jsonl");
    let before = std::fs::read(&samples).expect("samples");
    // Again: the record says complete, nothing runs, the samples are untouched.
    let out = run("0");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("skipped"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&samples).expect("samples"), before);
    let out = run("9");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no cell 9: the plan has 4"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shards_split_the_cells_between_machines() {
    let (dir, model, text) = tiny_setup();
    let spec = tiny_spec(dir.path(), &model, &text);
    let plan = make_plan(dir.path(), &spec);
    let plan_arg = plan.to_str().expect("utf8");
    // Shard 1/2 is cells 1 and 3 (a task and the bench).
    let out = lmdensity(
        dir.path(),
        &[
            "--quiet", "run-cell", "--plan", plan_arg, "--shard", "1/2", "-t", "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout(&out);
    assert!(
        lines.contains("cell 1 (") && lines.contains("cell 3 ("),
        "{lines}"
    );
    assert!(
        !lines.contains("cell 0 (") && !lines.contains("cell 2 ("),
        "{lines}"
    );
    let out = lmdensity(
        dir.path(),
        &["run-cell", "--plan", plan_arg, "--shard", "2/2"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("0 ≤ k < N"), "{}", stderr(&out));
}

#[test]
fn dry_run_prints_the_array_of_unfinished_cells_with_the_resources() {
    let (dir, model, text) = tiny_setup();
    let spec = tiny_spec(dir.path(), &model, &text);
    let plan = make_plan(dir.path(), &spec);
    let plan_arg = plan.to_str().expect("utf8");
    let args = [
        "slurm",
        "submit",
        "--plan",
        plan_arg,
        "--partition",
        "batch",
        "--time",
        "1:00:00",
        "--cpus-per-task",
        "4",
        "--mem",
        "8G",
        "--gres",
        "gpu:1",
        "--max-parallel",
        "2",
        "--dry-run",
    ];
    let out = lmdensity(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    for line in [
        "#!/bin/bash",
        "#SBATCH --array=0-3%2",
        "#SBATCH --partition=batch",
        "#SBATCH --time=1:00:00",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --requeue",
        "run-cell --plan",
    ] {
        assert!(script.contains(line), "{line} missing from\n{script}");
    }
    // After cell 1 is complete, the array holds the other three.
    let out = lmdensity(
        dir.path(),
        &[
            "--quiet", "run-cell", "--plan", plan_arg, "--index", "1", "-t", "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lmdensity(dir.path(), &args);
    assert!(
        stdout(&out).contains("#SBATCH --array=0,2-3%2"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_plans_and_submissions_are_refused_before_anything_runs() {
    let (dir, model, text) = tiny_setup();
    let spec = tiny_spec(dir.path(), &model, &text);
    let body = std::fs::read_to_string(&spec).expect("spec");
    let plan_out = dir.path().join("p.json");
    let plan_arg = plan_out.to_str().expect("utf8");
    let try_spec = |text: String| {
        std::fs::write(&spec, text).expect("write");
        lmdensity(
            dir.path(),
            &["plan", spec.to_str().expect("utf8"), "-o", plan_arg],
        )
    };
    // An unknown model.
    let out = try_spec(body.replace(
        &format!("models = [\"{}\"]", model.display()),
        "models = [\"no-such-model\"]",
    ));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sweep.toml") && err.contains("`no-such-model`"),
        "{err}"
    );
    // An unknown task.
    let out = try_spec(body.replace("copa,piqa", "copa,nope"));
    assert!(
        stderr(&out).contains("unknown task or group `nope`"),
        "{}",
        stderr(&out)
    );
    // A key that is not in the spec.
    let out = try_spec(body.replace("limit = 6", "limt = 6"));
    assert!(stderr(&out).contains("limt"), "{}", stderr(&out));
    assert!(!plan_out.exists(), "no plan is written from a bad spec");
    // A plan edited by hand.
    let out = try_spec(body.clone());
    assert!(out.status.success(), "{}", stderr(&out));
    let plan_text = std::fs::read_to_string(&plan_out).expect("plan");
    std::fs::write(&plan_out, plan_text.replace("\"copa\"", "\"boolq\"")).expect("write");
    let out = lmdensity(
        dir.path(),
        &["run-cell", "--plan", plan_arg, "--index", "1"],
    );
    assert!(
        stderr(&out).contains("does not match its definition"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&plan_out, &plan_text[..plan_text.len() / 2]).expect("truncate");
    let out = lmdensity(
        dir.path(),
        &["run-cell", "--plan", plan_arg, "--index", "1"],
    );
    assert!(
        stderr(&out).contains("p.json: not an lmdensity plan"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&plan_out, &plan_text).expect("restore");
    // A results directory that cannot be written (under a file), and no sbatch on PATH.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "x").expect("write");
    let results = blocker.join("results");
    let out = lmdensity(
        dir.path(),
        &[
            "--results-dir",
            results.to_str().expect("utf8"),
            "slurm",
            "submit",
            "--plan",
            plan_arg,
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is not writable"), "{}", stderr(&out));
    let out = std::process::Command::new(bin())
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .args(["slurm", "submit", "--plan", plan_arg])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sbatch: not found on PATH"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("results/slurm/submissions.jsonl").exists());
}

/// A plan made against one registry and submitted with another that lacks its model: refused
/// naming the plan, the cell and the id, before anything is submitted.
#[test]
fn a_plan_whose_model_the_registry_lacks_is_refused_before_submitting() {
    let (dir, model, _) = tiny_setup();
    let sha = lmdensity_hub::fetch::hash_file(&model, false).expect("hash");
    let registry = write_tiny_registry(
        dir.path(),
        "",
        &sha,
        &format!("type = \"path\"\npath = \"{}\"", model.display()),
    );
    let spec = dir.path().join("sweep.toml");
    std::fs::write(
        &spec,
        "models = [\"tiny\"]\n[[tasks]]\ntasks = \"copa\"\nlimit = 2\n",
    )
    .expect("spec");
    let plan = dir.path().join("plan.json");
    let (spec_arg, plan_arg) = (spec.to_str().expect("utf8"), plan.to_str().expect("utf8"));
    let reg_arg = registry.to_str().expect("utf8");
    let out = lmdensity(
        dir.path(),
        &["--registry", reg_arg, "plan", spec_arg, "-o", plan_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Without models.toml in the working directory, the built-in registry is used.
    std::fs::remove_file(&registry).expect("remove");
    let out = lmdensity(dir.path(), &["slurm", "submit", "--plan", plan_arg]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("plan.json: cell 0 (tiny task copa 0-shot limit 2)")
            && err.contains("no model with id `tiny`"),
        "{err}"
    );
    assert!(
        !dir.path().join("results/slurm").exists(),
        "nothing submitted"
    );
}
