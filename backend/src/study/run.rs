//! `radlens study` end to end: plan the rows, pick this shard's studies, open (or resume) the
//! run directory, run every model, then analyse and report.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use radlens_shared::grounding::RandomizationSettings;
use radlens_shared::record::{BootstrapSettings, CaptureSettings, ModelInfo, Pass, RunManifest, SCHEMA_VERSION, StudySource};
use sha2::{Digest, Sha256};

use super::conditions::{condition_passes, swap_partners};
use super::plan::{PlanError, read_plan};
use super::randomization::{ModelSource, check_model};
use super::run_dir::{ANALYSIS, ATTENTION, AttentionFile, RECORDS, RECORDS_CSV, REPORT, RunDir, RunWriter};
use super::runner::{ModelRun, Progress, StudySettings};
use super::shard::Shard;
use crate::models::checkpoint::llava_rad::{LlavaRadParts, PartOverrides};
use crate::models::dtype_name;
use crate::models::linear::WeightFormat;
use crate::models::loader::load_engine;

/// A file in a model directory that marks its weights as random (the demo's tiny models).
pub const RANDOM_WEIGHTS_MARKER: &str = "RANDOM_WEIGHTS";
/// A file in a model directory that says what the model was built to do (the planted models).
pub const PURPOSE_FILE: &str = "PURPOSE";

#[derive(Debug, Clone)]
pub struct StudyArgs {
    pub csv: PathBuf,
    pub images: PathBuf,
    /// `(name, directory)` per model, in run order.
    pub models: Vec<(String, PathBuf)>,
    pub out: PathBuf,
    pub settings: StudySettings,
    pub dtype: DType,
    pub device: Device,
    /// How the decoder's projections are held (`--quantize`).
    pub weights: WeightFormat,
    pub n_studies: Option<usize>,
    pub seed: u64,
    pub resamples: u32,
    pub common_grid: usize,
    pub shard: Option<Shard>,
    /// Start over in a run directory that holds a different configuration.
    pub force: bool,
    /// Refuse a CSV with any row problem instead of recording those rows as errors.
    pub strict: bool,
    /// The command line, recorded in the manifest.
    pub command_line: Vec<String>,
    /// `--randomization N`: the weight-randomisation check on N rows per model (a resumed run
    /// keeps the manifest's when this is `None`).
    pub randomization: Option<usize>,
    /// `--near-tie-eps`: G7's near-tie threshold (the analysis'; `None`: the spec's 1.0).
    pub near_tie_eps: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct StudyOutcome {
    pub written: usize,
    pub skipped: usize,
    pub errors: usize,
    pub stopped: bool,
    pub run_dir: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The files that identify a model: its config and its weight files.
fn model_files(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let repo = if LlavaRadParts::looks_like(dir) && dir.join("llava-rad").is_dir() { dir.join("llava-rad") } else { dir.to_path_buf() };
    let mut weights = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| ["safetensors", "bin", "pt", "pth"].contains(&x.to_str().unwrap_or(""))) {
                weights.push(p);
            }
        }
    }
    weights.sort();
    (repo.join("config.json"), weights)
}

/// sha256 over each weight file's relative name, size, first and last MiB.
fn weights_fingerprint(dir: &Path, files: &[PathBuf]) -> anyhow::Result<String> {
    const MIB: u64 = 1 << 20;
    let mut h = Sha256::new();
    for f in files {
        let mut file = std::fs::File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
        let size = file.metadata()?.len();
        h.update(f.strip_prefix(dir).unwrap_or(f).to_string_lossy().as_bytes());
        h.update(size.to_le_bytes());
        let mut head = vec![0u8; size.min(MIB) as usize];
        file.read_exact(&mut head)?;
        h.update(&head);
        if size > MIB {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(size - MIB))?;
            let mut tail = vec![0u8; MIB as usize];
            file.read_exact(&mut tail)?;
            h.update(&tail);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn model_info(name: &str, dir: &Path, dtype: DType, device: &Device, format: WeightFormat) -> anyhow::Result<ModelInfo> {
    let (config, weights) = model_files(dir);
    let config_bytes = std::fs::read(&config).with_context(|| format!("cannot read {}", config.display()))?;
    Ok(ModelInfo {
        name: name.to_string(),
        architecture: String::new(),
        dtype: dtype_name(dtype).into(),
        quantization: format.name().into(),
        device: if device.is_cpu() { "cpu".into() } else { "cuda".into() },
        num_layers: 0,
        num_heads: 0,
        grid_h: 0,
        grid_w: 0,
        config_sha256: sha256_hex(&config_bytes),
        weights_fingerprint: weights_fingerprint(dir, &weights)?,
        random_weights: dir.join(RANDOM_WEIGHTS_MARKER).exists(),
        purpose: std::fs::read_to_string(dir.join(PURPOSE_FILE)).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
    })
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Everything that decides the records' content. A resume must match it exactly.
pub(crate) fn fingerprint(
    csv_sha256: &str,
    models: &[ModelInfo],
    capture: &CaptureSettings,
    shard: Option<(u32, u32)>,
    n_studies: Option<usize>,
) -> String {
    // The weight format joins the dtype only when quantised, so older runs keep their fingerprint.
    let precision = |m: &ModelInfo| if m.quantization == "none" { m.dtype.clone() } else { format!("{}+{}", m.dtype, m.quantization) };
    let models: Vec<_> = models.iter().map(|m| (&m.name, &m.config_sha256, &m.weights_fingerprint, precision(m))).collect();
    let v = serde_json::json!({"csv": csv_sha256, "models": models, "capture": capture, "shard": shard, "n_studies": n_studies});
    sha256_hex(v.to_string().as_bytes())
}

pub fn run_study(args: &StudyArgs, progress: &mut dyn Progress, stop: &AtomicBool) -> anyhow::Result<StudyOutcome> {
    if args.models.is_empty() {
        bail!("no --model given (NAME=DIR)");
    }
    let mut names = HashSet::new();
    for (name, _) in &args.models {
        if !names.insert(name) {
            bail!("model name {name:?} is given twice");
        }
    }
    if !args.images.is_dir() {
        bail!("{}: the image folder does not exist", args.images.display());
    }
    let mut plan = read_plan(&args.csv)?;
    if !plan.problems.is_empty() {
        if args.strict {
            return Err(PlanError::Problems { path: args.csv.clone(), problems: plan.problems.clone() }.into());
        }
        progress.message(&format!("{}: {} row problem(s); those rows become error records:", args.csv.display(), plan.problems.len()));
        for p in &plan.problems {
            progress.message(&format!("  line {}: {}", p.line, p.message));
        }
    }
    let total_rows = plan.rows.len();
    let total_studies = plan.study_ids().len();
    // Swap partners come from the whole CSV, whatever share of it this run takes.
    let (partners, partner_images) = {
        let all = plan.studies();
        let images = all
            .iter()
            .filter_map(|(id, rows)| {
                Some((id.clone(), rows.iter().find(|r| r.variant_index == 0 && r.problem.is_none())?.image_path.clone()))
            })
            .collect::<std::collections::BTreeMap<_, _>>();
        (swap_partners(&all), images)
    };
    if let Some(n) = args.n_studies {
        plan.truncate_studies(n);
    }
    if let Some(shard) = args.shard {
        plan.rows.retain(|r| shard.owns(&r.study_id));
    }
    let studies = plan.studies();

    // The manifest's form of the settings (what a resume must match).
    let case = &args.settings.case;
    let capture = CaptureSettings {
        layer_range: case.layers.clone(),
        head_fusion: case.head_fusion,
        query_mode: case.query.clone(),
        max_new_tokens: case.max_new_tokens as u32,
        common_grid: args.common_grid,
        text_only_pass: args.settings.text_only_pass,
        conditions: args.settings.conditions.clone(),
        trust: case.trust.clone(),
        grounding: case.grounding,
    };
    let mut infos =
        args.models.iter().map(|(n, d)| model_info(n, d, args.dtype, &args.device, args.weights)).collect::<anyhow::Result<Vec<_>>>()?;
    let shard = args.shard.map(|s| (s.index, s.count));
    let fp = fingerprint(&plan.csv_sha256, &infos, &capture, shard, args.n_studies);

    let dir = RunDir::create(&args.out)?;
    let fresh = !dir.has_manifest();
    let mut randomization = args.randomization.map(|samples| RandomizationSettings { samples, seed: args.seed });
    let mut created_at = now();
    let mut run_id = args.out.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    if dir.has_manifest() {
        let old = dir.read_manifest()?;
        if old.fingerprint != fp {
            if !args.force {
                bail!(
                    "{} holds a run with a different dataset or configuration (models, capture settings, shard); refusing to mix them. Use another --out, or --force to discard it and start over",
                    args.out.display()
                );
            }
            for name in [RECORDS, ANALYSIS, REPORT, RECORDS_CSV] {
                let _ = std::fs::remove_file(dir.path(name));
            }
            let _ = std::fs::remove_dir_all(dir.path(ATTENTION));
            std::fs::create_dir_all(dir.path(ATTENTION))?;
        } else {
            created_at = old.created_at;
            run_id = old.run_id;
            randomization = randomization.or(old.randomization);
            // Keep what loading the models already learned.
            for (info, old_info) in infos.iter_mut().zip(&old.models) {
                if info.name == old_info.name {
                    *info = old_info.clone();
                }
            }
        }
    }
    let mut manifest = RunManifest {
        schema_version: SCHEMA_VERSION,
        run_id,
        created_at,
        updated_at: now(),
        radlens_version: env!("CARGO_PKG_VERSION").into(),
        arguments: args.command_line.clone(),
        study: StudySource {
            csv_name: args.csv.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            csv_sha256: plan.csv_sha256.clone(),
            rows: total_rows,
            studies: total_studies,
            planned_rows: plan.rows.len(),
        },
        models: infos,
        capture,
        bootstrap: BootstrapSettings { resamples: args.resamples, seed: args.seed, unit: "study".into() },
        shard,
        n_studies: args.n_studies,
        fingerprint: fp,
        randomization,
        near_tie_eps: args.near_tie_eps,
    };
    dir.write_manifest(&manifest)?;

    let done: HashSet<(String, String, Pass)> = dir.read_records()?.iter().map(|r| r.key()).collect();
    let passes = condition_passes(args.settings.text_only_pass, &args.settings.conditions).len();
    let planned = plan.rows.len() * passes * args.models.len();
    progress.start(planned.saturating_sub(done.len()));
    let mut writer = RunWriter::open(&dir)?;
    let mut outcome = StudyOutcome { run_dir: args.out.clone(), ..Default::default() };
    for (i, (name, model_dir)) in args.models.iter().enumerate() {
        let planned = plan.rows.len() * passes;
        let already = done.iter().filter(|(_, m, _)| m == name).count();
        let records_done = already >= planned && planned > 0;
        let check = match randomization {
            Some(r) if !super::randomization::recorded(&dir, name, r)? => Some(r),
            _ => None,
        };
        if records_done {
            outcome.skipped += already;
            if check.is_none() {
                continue;
            }
        }
        progress.message(&format!("loading {name} from {}", model_dir.display()));
        let engine = load_engine(model_dir, &PartOverrides::default(), args.dtype, &args.device, args.weights)
            .with_context(|| format!("model {name}"))?;
        let s = engine.model.summary();
        // A grid finer than the model's input is the same mistake on every row: refuse it now.
        if let Some(g) = args.settings.case.grounding.filter(|g| g.occlusion) {
            let (w, h) = engine.image_processor.output_size(512, 512);
            let side = w.min(h) as usize;
            if g.occlusion_grid > side {
                if fresh && done.is_empty() {
                    // Nothing was run: leave no manifest that a corrected rerun would clash with.
                    let _ = std::fs::remove_file(dir.path(super::run_dir::MANIFEST));
                }
                return Err(crate::error::InputError::Flag {
                    flag: "--occlusion-grid",
                    message: format!("{} does not fit model {name}'s {side} x {side} input: choose 1 to {side}", g.occlusion_grid),
                }
                .into());
            }
        }
        let info = &mut manifest.models[i];
        info.architecture = s.architecture.into();
        info.num_layers = s.num_layers;
        info.num_heads = s.num_heads;
        info.grid_h = s.grid_h;
        info.grid_w = s.grid_w;
        manifest.updated_at = now();
        dir.write_manifest(&manifest)?;
        let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let mut attention = AttentionFile::open(&dir, &slug)?;
        let run = ModelRun {
            name,
            engine: &engine,
            device: &args.device,
            images: &args.images,
            settings: &args.settings,
            done: &done,
            stop,
            partners: &partners,
            partner_images: &partner_images,
        };
        if !records_done {
            let stats = run.run(&studies, &mut writer, &mut attention, progress)?;
            outcome.written += stats.written;
            outcome.skipped += stats.skipped;
            outcome.errors += stats.errors;
            if stats.stopped {
                outcome.stopped = true;
                break;
            }
        }
        if let Some(settings) = check {
            progress.message(&format!(
                "{name}: weight-randomisation check on {} sampled rows ({} steps)",
                settings.samples,
                radlens_shared::grounding::cascade_steps(s.num_layers as u32).len()
            ));
            let source = ModelSource { name, dir: model_dir, dtype: args.dtype, device: &args.device, weights: args.weights };
            if !check_model(&dir, &source, &engine, &args.settings.case, &plan.rows, &args.images, settings, stop)? {
                outcome.stopped = true;
                break;
            }
        }
    }
    manifest.updated_at = now();
    dir.write_manifest(&manifest)?;
    Ok(outcome)
}
