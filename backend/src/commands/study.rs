//! `radlens study`: the robustness study from the command line, with progress on a terminal,
//! plain log lines otherwise, or JSON lines (`--progress-json`) for the server.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use radlens_shared::record::CaseRecord;

use radlens_shared::grounding::ImageCondition;

use crate::cli::{ModelSpec, StudyCmd};
use crate::error::InputError;
use crate::study::run::{StudyArgs, run_study};
use crate::study::runner::{Progress, StudySettings};
use crate::study::shard::Shard;

/// How progress is shown.
enum Reporter {
    Bar(ProgressBar),
    Lines { done: usize, total: usize },
    Json,
}

impl Progress for Reporter {
    fn start(&mut self, n: usize) {
        match self {
            Reporter::Bar(bar) => bar.set_length(n as u64),
            Reporter::Lines { total, .. } => *total = n,
            Reporter::Json => println!("{}", serde_json::json!({"event": "start", "total": n})),
        }
    }

    fn record(&mut self, r: &CaseRecord) {
        match self {
            Reporter::Bar(bar) => {
                bar.inc(1);
                bar.set_message(format!("{} {}", r.model, r.sample_id));
            }
            Reporter::Lines { done, total } => {
                *done += 1;
                let what = match (&r.error, &r.parsed_answer) {
                    (Some(e), _) => format!("error ({:?}): {}", e.stage, e.message),
                    (None, Some(a)) => format!("{a}"),
                    (None, None) => "-".into(),
                };
                eprintln!("[{done}/{total}] {} {} {:?}: {what}", r.model, r.sample_id, r.pass);
            }
            Reporter::Json => {
                let event = serde_json::json!({"event": "record", "sample_id": r.sample_id, "model": r.model, "pass": r.pass,
                    "parsed_answer": r.parsed_answer, "correct": r.correct, "error": r.error.as_ref().map(|e| &e.message)});
                println!("{event}");
            }
        }
    }

    fn message(&mut self, text: &str) {
        match self {
            Reporter::Bar(bar) => bar.println(text),
            Reporter::Lines { .. } => eprintln!("{text}"),
            Reporter::Json => println!("{}", serde_json::json!({"event": "message", "text": text})),
        }
    }
}

fn flag<T>(flag: &'static str, r: Result<T, String>) -> Result<T, InputError> {
    r.map_err(|message| InputError::Flag { flag, message })
}

pub fn run(cmd: &StudyCmd) -> anyhow::Result<()> {
    let shard = match &cmd.shard {
        Some(s) => Some(flag("--shard", Shard::parse(s))?),
        None => flag("--shard", Shard::from_env(|k| std::env::var(k).ok()))?,
    };
    let settings = StudySettings {
        case: cmd.capture.spec(
            cmd.max_new_tokens as usize,
            cmd.trust.settings(),
            cmd.grounding_args.settings(cmd.grounding, cmd.grounding),
        ),
        text_only_pass: cmd.text_only_pass || cmd.conditions.contains(&ImageCondition::Blank),
        share_prefix: !cmd.no_prefix_sharing,
        conditions: other_conditions(&cmd.conditions)?,
    };
    let runtime = cmd.runtime.resolve()?;
    let args = StudyArgs {
        csv: cmd.csv.clone(),
        images: cmd.images.clone(),
        models: ModelSpec::pairs(&cmd.model),
        out: cmd.out.clone(),
        settings,
        dtype: runtime.dtype,
        device: runtime.device,
        weights: runtime.weights,
        n_studies: cmd.n_studies,
        seed: cmd.seed,
        resamples: cmd.resamples,
        common_grid: cmd.common_grid,
        shard,
        force: cmd.force,
        strict: cmd.strict,
        command_line: std::env::args().collect(),
        randomization: cmd.randomization.map(|n| n as usize),
        near_tie_eps: cmd.near_tie_eps,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // The first Ctrl-C stops between records, keeping everything written; a second one exits.
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nradlens: stopping after the current study; rerun the same command to resume");
        });
    }
    let mut reporter = if cmd.progress_json {
        Reporter::Json
    } else if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}").expect("valid template").progress_chars("=> "),
        );
        Reporter::Bar(bar)
    } else {
        Reporter::Lines { done: 0, total: 0 }
    };
    let outcome = run_study(&args, &mut reporter, &stop).with_context(|| format!("study {}", args.csv.display()))?;
    if let Reporter::Bar(bar) = &reporter {
        bar.finish_and_clear();
    }
    let summary = format!(
        "{} records written ({} errors), {} already done, in {}",
        outcome.written,
        outcome.errors,
        outcome.skipped,
        outcome.run_dir.display()
    );
    if cmd.progress_json {
        println!(
            "{}",
            serde_json::json!({"event": "done", "written": outcome.written, "errors": outcome.errors, "skipped": outcome.skipped, "stopped": outcome.stopped})
        );
    } else {
        eprintln!("{summary}");
    }
    if outcome.stopped {
        anyhow::bail!("stopped before the end: rerun the same command to resume");
    }
    crate::commands::report::run(&outcome.run_dir, Some(&args.images))?;
    Ok(())
}

/// `--conditions` less `blank` (the text-only pass has its own switch), in the spec's order;
/// `real` is every row's own pass, not a condition to ask for.
fn other_conditions(asked: &[ImageCondition]) -> Result<Vec<ImageCondition>, InputError> {
    if asked.contains(&ImageCondition::Real) {
        return Err(InputError::Flag {
            flag: "--conditions",
            message: "real is every row's own image, always run; name the other conditions".into(),
        });
    }
    Ok(ImageCondition::ALL.into_iter().filter(|c| *c != ImageCondition::Blank && asked.contains(c)).collect())
}
