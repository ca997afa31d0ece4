//! The radlens backend as a library: the command line, its commands and their errors. The
//! `radlens` binary is a thin `main` over [`run_main`]; the workspace's end-to-end tests use the
//! library directly where a process boundary adds nothing.

pub mod alloc_stats;
pub mod case;
pub mod cli;
pub mod commands;
pub mod device_memory;
pub mod error;
pub mod import;
pub mod models;
pub mod planted;
pub mod server;
pub mod study;
pub mod variants;

use std::process::ExitCode;

/// Parses the command line, runs the command, prints any error and returns the exit code:
/// 0 success, 1 failure, 2 bad input (an unreadable or invalid file, or a bad argument).
pub fn run_main() -> ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("radlens: error: {err:#}");
            ExitCode::from(error::exit_code(&err))
        }
    }
}
