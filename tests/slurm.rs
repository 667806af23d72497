//! A plan on a real Slurm (Debian's slurm-wlm and munge, installed by scripts/ensure-deps):
//! the test writes a slurm.conf for one node on 127.0.0.1, starts munged, slurmctld and slurmd
//! in a temp directory on free ports, and stops every daemon it started when it ends (also on
//! failure). Then: a plan of 4 cells on the tiny model (perplexity, two tasks, bench) as one
//! array, all complete and listed by `report`; then `scancel` of the ARC-Easy task while it
//! runs, a resubmission of only that cell, and the check that complete cells were not
//! recomputed (samples unchanged) and the cancelled one resumed from its samples.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::*;

/// The daemons of a one-node cluster, stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// Where the array tasks write their output (`<results>/slurm`), shown when a wait fails.
    task_log_dir: std::cell::RefCell<Option<PathBuf>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn checked(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    fn start() -> Cluster {
        for program in [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
        ] {
            assert!(
                have(program),
                "{program} not found: scripts/ensure-deps installs slurm-wlm and munge"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).expect("dirs");
        }
        let key: Vec<u8> = (0..1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let key_path = d.join("munge/munge.key");
        std::fs::write(&key_path, key).expect("key");
        chmod(&key_path, 0o600);
        let socket = d.join("munge/munge.sock");
        checked(
            "munged",
            Command::new("munged")
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", key_path.display()))
                .arg(format!(
                    "--pid-file={}",
                    d.join("munge/munged.pid").display()
                ))
                .arg(format!(
                    "--log-file={}",
                    d.join("munge/munged.log").display()
                ))
                .arg(format!("--seed-file={}", d.join("munge/seed").display()))
                .arg("--force")
                .output(),
        );
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("hostname")
            .trim()
            .to_string();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let conf = d.join("slurm.conf");
        let p = |name: &str| d.join(name).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=lmdtest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\nSlurmdPort={}\n\
                 SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nCredType=cred/munge\n\
                 AuthInfo=socket={}\nStateSaveLocation={}\nSlurmdSpoolDir={}\n\
                 SlurmctldPidFile={}\nSlurmdPidFile={}\nSlurmctldLogFile={}\nSlurmdLogFile={}\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n\
                 SwitchType=switch/none\nReturnToService=2\nSchedulerType=sched/backfill\n\
                 SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
                 MinJobAge=3600\nKillWait=5\n\
                 NodeName=lmdnode NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} RealMemory=2000 State=UNKNOWN\n\
                 PartitionName=debug Nodes=lmdnode Default=YES MaxTime=INFINITE State=UP\n",
                free_port(),
                free_port(),
                socket.display(),
                p("state"),
                p("spool"),
                p("slurmctld.pid"),
                p("slurmd.pid"),
                p("log/slurmctld.log"),
                p("log/slurmd.log"),
            ),
        )
        .expect("slurm.conf");
        let cluster = Cluster {
            dir,
            conf,
            task_log_dir: Default::default(),
        };
        checked("slurmctld", cluster.command("slurmctld").arg("-i").output());
        checked(
            "slurmd",
            cluster.command("slurmd").args(["-N", "lmdnode"]).output(),
        );
        cluster.wait_for("the node to be idle", Duration::from_secs(60), || {
            let out = cluster
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("idle")
                .then_some(())
        });
        cluster
    }

    /// A command with this cluster's SLURM_CONF.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// lmdensity against this cluster, with a results dir and the shared cache.
    fn lmdensity(&self, cwd: &Path, results: &Path, args: &[&str]) -> Output {
        let mut c = self.command(bin().to_str().expect("utf8"));
        c.current_dir(cwd)
            .env("LMDENSITY_CACHE", shared_cache())
            .env_remove("LMDENSITY_REGISTRY")
            .arg("--results-dir")
            .arg(results)
            .args(args);
        c.output().expect("run lmdensity")
    }

    /// The tail of every array task's output file.
    fn task_outputs(&self) -> String {
        let Some(dir) = self.task_log_dir.borrow().clone() else {
            return String::new();
        };
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "out") {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                text.push_str(&format!("{}:\n{}\n", entry.path().display(), tail(&body)));
            }
        }
        text
    }

    fn wait_for<T>(&self, what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if start.elapsed() > limit {
                let log =
                    |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                panic!(
                    "timed out after {limit:?} waiting for {what}\nslurmctld.log tail:\n{}\nslurmd.log tail:\n{}\n{}",
                    tail(&log("log/slurmctld.log")),
                    tail(&log("log/slurmd.log")),
                    self.task_outputs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Drop for Cluster {
    /// Cancels every job, then stops slurmd, slurmctld and munged (SIGTERM, then SIGKILL after
    /// 10 s), so no daemon outlives the test.
    fn drop(&mut self) {
        let _ = self.command("scancel").args(["--user", "root"]).output();
        std::thread::sleep(Duration::from_secs(1));
        for pid_file in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            let Ok(pid) = std::fs::read_to_string(self.dir.path().join(pid_file)) else {
                continue;
            };
            let pid = pid.trim().to_string();
            let _ = Command::new("kill").arg(&pid).output();
            let alive = || Path::new(&format!("/proc/{pid}/status")).exists() && !zombie(&pid);
            let start = Instant::now();
            while alive() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(200));
            }
            if alive() {
                let _ = Command::new("kill").args(["-9", &pid]).output();
            }
        }
        // Job steps of this cluster's slurmd (it does not take them down with it).
        let _ = Command::new("pkill")
            .args([
                "-9",
                "-f",
                &format!("slurmstepd.*{}", self.dir.path().display()),
            ])
            .output();
    }
}

fn zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

fn status_line(cluster: &Cluster, cwd: &Path, results: &Path, plan: &str) -> String {
    let out = cluster.lmdensity(cwd, results, &["slurm", "status", "--plan", plan]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().last().unwrap_or_default().to_string()
}

/// Run id → samples bytes of every run in `results`.
fn samples_by_run(results: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    run_dirs(results)
        .into_iter()
        .filter(|d| d.join("manifest.json").is_file())
        .map(|d| {
            let name = d.file_name().expect("name").to_string_lossy().into_owned();
            (
                name,
                std::fs::read(d.join("samples.jsonl")).unwrap_or_default(),
            )
        })
        .collect()
}

fn submitted_job(out: &Output) -> String {
    let text = stdout(out);
    assert!(out.status.success(), "{text}{}", stderr(out));
    text.split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {text}"))
        .trim_end_matches(':')
        .to_string()
}

#[test]
fn a_plan_runs_as_a_slurm_array_and_a_cancelled_task_resumes_from_its_samples() {
    let cluster = Cluster::start();
    let (dir, model, corpus) = tiny_setup();
    // Cell 2, 600 ARC-Easy items (≈ 25 s on one core), runs long enough to be cancelled mid-way.
    let spec = crate::cluster::tiny_spec(dir.path(), &model, &corpus);
    let text = std::fs::read_to_string(&spec).expect("spec");
    let text = text.replace(
        "tasks = \"copa,piqa\"\nlimit = 6",
        "tasks = \"copa\"\nlimit = 6\n\n[[tasks]]\ntasks = \"arc_easy\"\nlimit = 600",
    );
    assert!(text.contains("arc_easy"), "{text}");
    std::fs::write(&spec, text).expect("spec");
    let results = dir.path().join("shared-results");
    let plan = dir.path().join("plan.json");
    let plan_arg = plan.to_str().expect("utf8");
    let out = cluster.lmdensity(
        dir.path(),
        &results,
        &["plan", spec.to_str().expect("utf8"), "-o", plan_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    *cluster.task_log_dir.borrow_mut() = Some(results.join("slurm"));
    let submit = [
        "slurm",
        "submit",
        "--plan",
        plan_arg,
        "--cpus-per-task",
        "1",
        "--max-parallel",
        "2",
    ];

    // 1. The whole plan as one array: four cells complete, report lists their runs.
    let job = submitted_job(&cluster.lmdensity(dir.path(), &results, &submit));
    // Submitting again while the array is queued or running submits nothing twice.
    let again = cluster.lmdensity(dir.path(), &results, &submit);
    assert!(
        stdout(&again).contains("complete or queued")
            && stdout(&again).contains("nothing submitted"),
        "{}{}",
        stdout(&again),
        stderr(&again)
    );
    let arc_samples = || -> Option<(PathBuf, usize)> {
        run_dirs(&results).into_iter().find_map(|d| {
            let manifest = std::fs::read_to_string(d.join("manifest.json")).ok()?;
            manifest.contains("\"arc_easy\"").then(|| {
                let n = std::fs::read_to_string(d.join("samples.jsonl"))
                    .map_or(0, |s| s.lines().count());
                (d.clone(), n)
            })
        })
    };
    // 2. The fault: cancel the ARC-Easy task once it has kept some items.
    let (arc_dir, kept) = cluster.wait_for("ARC-Easy items", Duration::from_secs(240), || {
        arc_samples().filter(|(_, n)| *n >= 50)
    });
    checked(
        "scancel",
        cluster.command("scancel").arg(format!("{job}_2")).output(),
    );
    cluster.wait_for("the other cells", Duration::from_secs(300), || {
        let line = status_line(&cluster, dir.path(), &results, plan_arg);
        (line.contains("complete=3") && line.contains("running=0") && line.contains("pending=0"))
            .then_some(())
    });
    let line = status_line(&cluster, dir.path(), &results, plan_arg);
    assert!(line.contains("interrupted=1"), "{line}");
    let (_, after_cancel) = arc_samples().expect("the ARC-Easy run");
    assert!(after_cancel >= kept, "samples kept through the cancel");
    let arc_prefix = std::fs::read(arc_dir.join("samples.jsonl")).expect("samples");
    let arc_name = arc_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut before = samples_by_run(&results);
    before.remove(&arc_name);
    assert_eq!(
        before.len(),
        3,
        "three complete runs besides the ARC-Easy one: {before:?}"
    );

    // 3. Resubmit: only the cancelled cell goes in the array; it continues its own run.
    let out = cluster.lmdensity(dir.path(), &results, &submit);
    assert!(stdout(&out).contains("1 of 4 cells"), "{}", stdout(&out));
    submitted_job(&out);
    cluster.wait_for("the resumed cell", Duration::from_secs(300), || {
        status_line(&cluster, dir.path(), &results, plan_arg)
            .contains("complete=4")
            .then_some(())
    });
    let after = samples_by_run(&results);
    assert_eq!(after.len(), 4, "no run was made anew: {:?}", after.keys());
    for (run, samples) in &before {
        assert_eq!(after.get(run), Some(samples), "{run} was recomputed");
    }
    let resumed = &after[&arc_name];
    assert!(resumed.starts_with(&arc_prefix) && resumed.len() > arc_prefix.len());
    assert_eq!(metrics_of(&arc_dir)["status"], "complete");
    let records = results.join("cells");
    let attempts: Vec<u64> = std::fs::read_dir(&records)
        .expect("records")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json");
            r["attempts"].as_u64().expect("attempts")
        })
        .collect();
    assert_eq!(
        attempts.iter().filter(|a| **a == 2).count(),
        1,
        "{attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|a| **a == 1).count(),
        3,
        "{attempts:?}"
    );

    // The store reads as any other: report lists the four runs; a new submission is empty.
    let out = cluster.lmdensity(dir.path(), &results, &["report", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for corpus in ["text.txt", "copa", "arc_easy", "pp32"] {
        assert!(
            table.contains(corpus),
            "no {corpus} run in the report:\n{table}"
        );
    }
    let out = cluster.lmdensity(dir.path(), &results, &submit);
    assert!(
        stdout(&out).contains("nothing submitted"),
        "{}",
        stdout(&out)
    );
}
