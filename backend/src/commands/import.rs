//! `radlens import FORMAT`: a public set -> the study CSV, and the summary of what was kept.

use crate::cli::ImportCmd;
use crate::import::{Format, ImportError, ImportOptions};

pub fn run(cmd: &ImportCmd) -> anyhow::Result<()> {
    let opts = ImportOptions {
        src: cmd.src.clone(),
        images: cmd.images.clone(),
        split: cmd.split.clone(),
        limit: cmd.limit,
        labels: cmd.labels.clone(),
    };
    if cmd.labels.is_some() && cmd.format != Format::NihBbox {
        return Err(ImportError::Usage("--labels is for nih-bbox (VinDr-CXR's negatives come from its own No finding rows)".into()).into());
    }
    let summary = match (&cmd.onto, cmd.format) {
        (Some(_), Format::Boxes) if cmd.split.is_some() || cmd.limit.is_some() => {
            return Err(ImportError::Usage("--onto keeps every row of the study CSV: --split and --limit do not apply".into()).into());
        }
        (Some(onto), Format::Boxes) => crate::import::boxes::attach(&opts, onto, &cmd.out)?,
        (Some(_), _) => return Err(ImportError::Usage("--onto attaches boxes: use it with `radlens import boxes`".into()).into()),
        (None, format) => crate::import::run(format, &opts, &cmd.out)?,
    };
    print!("{}", summary.render(&cmd.out));
    Ok(())
}
