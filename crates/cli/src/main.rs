//! `lmdensity`: a thin binary over the library crates. It parses arguments (`cli`), turns them
//! into jobs (`to_jobs`), runs them and prints the results (`commands`); the work itself is in
//! `lmdensity_jobs` and the crates under it.
//!
//! Exit codes: 0 success; 2 bad input or a failed measurement, with a one-line message naming
//! the file, key or flag (work finished before a failure stays in the results store).

mod cli;
mod commands;
mod to_jobs;

use std::process::ExitCode;

fn main() -> ExitCode {
    match commands::run() {
        Ok(code) => code,
        Err(lmdensity_jobs::JobError::Io(io)) if io.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", err.chain());
            ExitCode::from(2)
        }
    }
}
