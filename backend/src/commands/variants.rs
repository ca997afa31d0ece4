//! `radlens variants`: rule-based (and external) question variants for a study CSV.

use crate::cli::VariantsCmd;
use crate::variants::{VariantsError, VariantsOptions};

pub fn run(cmd: &VariantsCmd) -> anyhow::Result<()> {
    let opts = VariantsOptions {
        csv: cmd.csv.clone(),
        out: cmd.out.clone(),
        strategies: cmd.strategies.clone(),
        per_question: cmd.per_question,
        seed: cmd.seed,
        from: cmd.from.clone(),
    };
    // Unwrapped so that the exit code sees the input error itself (2, not 1).
    let summary = crate::variants::run(&opts).map_err(|e| match e {
        VariantsError::Plan(e) => anyhow::Error::from(e),
        VariantsError::Import(e) => anyhow::Error::from(e),
    })?;
    print!("{}", summary.render(&cmd.out));
    Ok(())
}
