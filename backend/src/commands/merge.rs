//! `radlens merge SHARD_DIR... --out RUN_DIR [--images DIR]`: the run directories of one study's
//! shards combined into one run directory (see [`crate::study::merge`]), then analysed and
//! reported like any run.

use crate::cli::MergeCmd;
use crate::study::merge::merge_runs_as;

pub fn run(cmd: &MergeCmd) -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().collect();
    let outcome = merge_runs_as(&cmd.run_dirs, &cmd.out, cmd.force, &arguments)?;
    for w in &outcome.warnings {
        eprintln!("radlens: warning: {w}");
    }
    eprintln!(
        "merged {} run directories into {}: {} records ({} duplicates dropped), {} attention tensors",
        cmd.run_dirs.len(),
        cmd.out.display(),
        outcome.records,
        outcome.duplicates,
        outcome.tensors
    );
    crate::commands::report::run(&cmd.out, cmd.images.as_deref())
}
