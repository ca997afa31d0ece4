//! One module per subcommand; `run` dispatches.

pub mod bench;
pub mod demo;
pub mod export;
pub mod metrics;
pub mod probe;
pub mod study;
pub mod report;
pub mod merge;
pub mod serve;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Metrics { map, other } => metrics::run(&map, other.as_deref()),
        Command::Probe(args) => probe::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Study(cmd) => study::run(&cmd),
        Command::Demo(cmd) => demo::run(&cmd),
        Command::Report { run_dir, images } => report::run(&run_dir, images.as_deref()),
        Command::Merge(cmd) => merge::run(&cmd),
        Command::Serve(cmd) => serve::run(&cmd),
        Command::Export(cmd) => export::run(&cmd),
    }
}
