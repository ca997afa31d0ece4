//! One module per subcommand; `run` dispatches.

pub mod bench;
pub mod metrics;
pub mod probe;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Metrics { map, other } => metrics::run(&map, other.as_deref()),
        Command::Probe(args) => probe::run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}
