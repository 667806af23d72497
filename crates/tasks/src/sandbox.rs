//! Runs model-written Python (HumanEval and MBPP completions with their tests) where it can do
//! no harm: a bubblewrap sandbox with no network and every other namespace unshared, an
//! unprivileged user, a read-only `/usr` and nothing else of the host's file system, a fresh
//! tmpfs as its only writable directory, resource limits (address space, CPU seconds, file
//! size, open files) and a wall-clock limit after which the whole process tree is killed.
//!
//! lm-eval runs these programs in a subprocess of the evaluating Python with a few builtins
//! disabled; that is no isolation from the host, so the sandbox here is stricter by design.
//! There is no Rust sandboxing crate for running an interpreter this way; bubblewrap (Debian
//! `bubblewrap`) is the tool Flatpak uses for it, and `prlimit` (util-linux) sets the limits.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lmdensity_core::ExecutionOutcome;

/// Limits one program runs under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SandboxLimits {
    /// Wall-clock time before the sandbox is killed.
    pub wall: Duration,
    /// CPU seconds (RLIMIT_CPU).
    pub cpu_s: u64,
    /// Address space, bytes (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Largest file it may write, bytes (RLIMIT_FSIZE).
    pub file_bytes: u64,
}

impl Default for SandboxLimits {
    /// 10 s of wall time (lm-eval's code_eval allows 3 s on a GPU host's CPU; this VM class is
    /// slower), 10 CPU seconds, 2 GiB of address space, 16 MiB files.
    fn default() -> Self {
        SandboxLimits {
            wall: Duration::from_secs(10),
            cpu_s: 10,
            memory_bytes: 2 << 30,
            file_bytes: 16 << 20,
        }
    }
}

/// A Python interpreter inside bubblewrap.
#[derive(Debug, Clone)]
pub struct PythonSandbox {
    bwrap: PathBuf,
    prlimit: PathBuf,
    python: PathBuf,
    limits: SandboxLimits,
}

/// The last bytes of a failing program's error output kept in its sample.
const KEPT_STDERR: usize = 400;

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

impl PythonSandbox {
    /// Finds bubblewrap, prlimit and the system Python (`/usr/bin/python3`: inside the sandbox
    /// only `/usr` exists), and checks that a program runs and cannot reach the network;
    /// otherwise says what is missing and how to install it.
    pub fn find(limits: SandboxLimits) -> Result<Self, String> {
        let bwrap = on_path("bwrap").ok_or(
            "running generated code needs bubblewrap (`bwrap`; Debian/Ubuntu: apt install bubblewrap)",
        )?;
        let prlimit =
            on_path("prlimit").ok_or("running generated code needs `prlimit` (util-linux)")?;
        let python = PathBuf::from("/usr/bin/python3");
        if !python.is_file() {
            return Err(
                "running generated code needs the system Python at /usr/bin/python3 (apt install python3)"
                    .into(),
            );
        }
        let sandbox = PythonSandbox {
            bwrap,
            prlimit,
            python,
            limits,
        };
        let probe = "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    raise SystemExit('network reachable')\nexcept OSError:\n    pass\n";
        match sandbox.run(probe) {
            ExecutionOutcome::Passed => Ok(sandbox),
            other => Err(format!(
                "the bubblewrap sandbox does not work here ({other:?}); bubblewrap needs user namespaces or root"
            )),
        }
    }

    fn command(&self) -> Command {
        let l = &self.limits;
        let mut c = Command::new(&self.prlimit);
        c.arg(format!("--as={}", l.memory_bytes))
            .arg(format!("--cpu={}", l.cpu_s))
            .arg(format!("--fsize={}", l.file_bytes))
            .arg("--nofile=256")
            .arg("--core=0")
            .arg("--")
            .arg(&self.bwrap)
            .args(["--unshare-all", "--die-with-parent", "--new-session"])
            .args(["--uid", "65534", "--gid", "65534", "--clearenv"])
            .args(["--ro-bind", "/usr", "/usr"])
            .args(["--symlink", "usr/lib", "/lib"])
            .args(["--symlink", "usr/lib64", "/lib64"])
            .args(["--symlink", "usr/bin", "/bin"])
            .args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
            .args(["--chdir", "/tmp", "--setenv", "HOME", "/tmp"])
            .args(["--setenv", "PATH", "/usr/bin"])
            .arg("--")
            .arg(&self.python)
            // Isolated mode: no user site, no PYTHON* variables; the program comes on stdin.
            .args(["-I", "-"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `program`; passed when it exits with status 0 within the limits.
    pub fn run(&self, program: &str) -> ExecutionOutcome {
        let mut child = match self.command().spawn() {
            Ok(c) => c,
            Err(e) => {
                return ExecutionOutcome::Failed {
                    error: format!("could not start the sandbox: {e}"),
                }
            }
        };
        // Feed and read on threads so a program that floods stderr or ignores stdin cannot
        // block the wait below.
        let stdin = child.stdin.take();
        let source = program.as_bytes().to_vec();
        let feeder = std::thread::spawn(move || {
            if let Some(mut s) = stdin {
                let _ = s.write_all(&source);
            }
        });
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut tail = Vec::new();
            if let Some(mut s) = stderr {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 4 * KEPT_STDERR {
                        tail.drain(..tail.len() - KEPT_STDERR);
                    }
                }
            }
            tail
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() < self.limits.wall => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    // bwrap's --die-with-parent takes the sandbox's processes with it.
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let _ = feeder.join();
        let tail = reader.join().unwrap_or_default();
        let error = String::from_utf8_lossy(&tail[tail.len().saturating_sub(KEPT_STDERR)..])
            .trim()
            .to_string();
        match status {
            None => ExecutionOutcome::TimedOut {
                seconds: self.limits.wall.as_secs_f64(),
            },
            Some(s) if s.success() => ExecutionOutcome::Passed,
            Some(s) => ExecutionOutcome::Failed {
                error: if error.is_empty() {
                    format!("exited with {s}")
                } else {
                    error
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> PythonSandbox {
        PythonSandbox::find(SandboxLimits {
            wall: Duration::from_secs(3),
            ..SandboxLimits::default()
        })
        .expect("bubblewrap, prlimit and /usr/bin/python3 (scripts/ensure-deps installs them)")
    }

    #[test]
    fn passing_and_failing_programs_are_told_apart() {
        let s = sandbox();
        assert_eq!(
            s.run("def f(x):\n    return x + 1\nassert f(1) == 2\n"),
            ExecutionOutcome::Passed
        );
        match s.run("assert 1 + 1 == 3, 'arithmetic'\n") {
            ExecutionOutcome::Failed { error } => {
                assert!(error.contains("AssertionError: arithmetic"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.run("def broken(:\n"),
            ExecutionOutcome::Failed { .. }
        ));
    }

    #[test]
    fn the_sandbox_has_no_network_no_host_files_and_limits() {
        let s = sandbox();
        // Only /usr (read-only) and a private /tmp are there.
        let host = format!(
            "import os\nassert not os.path.exists({:?})\nassert not os.path.exists('/etc/passwd')\nopen('/tmp/x', 'w').write('ok')\ntry:\n    open('/usr/x', 'w')\n    raise SystemExit('wrote to /usr')\nexcept OSError:\n    pass\nassert os.getuid() == 65534\n",
            env!("CARGO_MANIFEST_DIR")
        );
        assert_eq!(s.run(&host), ExecutionOutcome::Passed);
        let net = "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n";
        assert!(matches!(s.run(net), ExecutionOutcome::Failed { .. }));
        let start = Instant::now();
        assert!(matches!(
            s.run("while True:\n    pass\n"),
            ExecutionOutcome::TimedOut { .. }
        ));
        assert!(start.elapsed() < Duration::from_secs(6));
        match s.run("x = bytearray(4 << 30)\n") {
            ExecutionOutcome::Failed { error } => assert!(error.contains("MemoryError"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
