//! `lmdensity`: a thin binary over the library crates.
//!
//! Exit codes: 0 success, 1 a measurement ran but failed, 2 usage or input error.

mod analyses;
mod bench;
mod cli;
mod commands;
mod compare;
mod engine;
mod evaluate;
mod report;
mod sweep;

use std::process::ExitCode;

fn main() -> ExitCode {
    match commands::run() {
        Ok(code) => code,
        Err(err) => {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
