//! One module per subcommand; `run` dispatches.

pub mod bench;
pub mod bench_arch;
pub mod bench_grounding;
pub mod bench_multi_image;
pub mod demo;
pub mod dev;
pub mod export;
pub mod import;
pub mod merge;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod serve;
pub mod study;
pub mod variants;

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
        Command::Import(cmd) => import::run(&cmd),
        Command::Variants(cmd) => variants::run(&cmd),
        Command::Dev(cmd) => dev::run(&cmd),
    }
}

/// The device, dtype and weight format that `--device`, `--dtype` and `--quantize` ask for.
pub struct Runtime {
    pub device: candle_core::Device,
    pub dtype: candle_core::DType,
    pub weights: crate::models::linear::WeightFormat,
}

impl crate::cli::RuntimeArgs {
    pub fn resolve(&self) -> Result<Runtime, crate::error::InputError> {
        use crate::error::InputError::Flag;
        let device = crate::models::parse_device(&self.device).map_err(|message| Flag { flag: "--device", message })?;
        let dtype = crate::models::resolve_dtype(&self.dtype, &device).map_err(|message| Flag { flag: "--dtype", message })?;
        Ok(Runtime { device, dtype, weights: self.quantize })
    }
}
