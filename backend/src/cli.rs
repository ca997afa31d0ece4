//! The command-line definition: every subcommand and flag, nothing else.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use radlens_shared::fusion::{HeadFusion, LayerRange, QueryMode};
use radlens_shared::grounding::ImageCondition;
use radlens_shared::record::{GroundingSettings, TrustSettings};

use crate::case::CaseSpec;
use crate::models::linear::WeightFormat;
use crate::models::presets::Preset;

#[derive(Debug, Parser)]
#[command(name = "radlens", version, about = "Attention maps and robustness studies for medical vision-language models", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attention-map metrics of one map (and the Jensen-Shannon divergence to a second one).
    ///
    /// A map file is JSON: {"h": H, "w": W, "values": [..row-major..]}. Prints JSON with
    /// entropy_nats, focus, gini and top10_mass (and js_divergence, js_distance in bits with
    /// --other). Definitions: fixtures/spec/metrics.md.
    Metrics {
        /// The map to measure.
        #[arg(long, value_name = "A.json")]
        map: PathBuf,
        /// A second map on the same grid to compare against.
        #[arg(long, value_name = "B.json")]
        other: Option<PathBuf>,
    },
    /// Ask a model one question about one image and show where it looked.
    ///
    /// Loads a local model directory (llava-hf, Gemma3 or Qwen2.5-VL layout: config.json, *.safetensors,
    /// tokenizer.json, preprocessor_config.json or processor_config.json; or a LLaVA-Rad release:
    /// base/ + llava-rad/), answers greedily and fuses the captured attention of the chosen query
    /// rows over the image tokens into one map.
    Probe(ProbeArgs),
    /// Benchmark attention capture (none vs last quarter vs all layers) on a mid-size random
    /// LLaVA built in memory: time and peak heap, as ratios against no capture.
    Bench(BenchArgs),
    /// Recompute a run directory's analysis.json, plots/, report.md and records.csv from its
    /// manifest and records alone (safe to repeat; nothing else is changed).
    Report {
        /// The run directory: it holds manifest.json and records.jsonl.
        #[arg(value_name = "RUN_DIR")]
        run_dir: PathBuf,
        /// The folder the study CSV's image paths are relative to, for the attention overlay
        /// figures; without it they are skipped.
        #[arg(long, value_name = "DIR")]
        images: Option<PathBuf>,
    },
    /// Run the robustness study: every question variant of every study through every model.
    ///
    /// Writes a run directory (manifest.json, records.jsonl, the attention store, analysis.json,
    /// plots/, report.md, records.csv). Rerunning on the same directory resumes.
    Study(StudyCmd),
    /// The demo: the three planted-truth models on their held-out chest X-rays (with
    /// --random-weights, tiny random-weight LLaVA and Gemma3 models on the bundled CSV): the full
    /// study, analysis, plots and report.
    Demo(DemoCmd),
    /// Combine the run directories of one study's shards (`study --shard I/N`, Slurm array
    /// tasks, Kubernetes Indexed Job pods) into one run directory, then analyse and report it.
    ///
    /// The shards must share the study CSV, models, capture and bootstrap settings and shard
    /// count; anything else is refused. Missing shards are a warning.
    Merge(MergeCmd),
    /// Serve the run directories under --runs: the JSON API and the dashboard, on loopback,
    /// behind a start-up token printed once as a sign-in URL.
    Serve(ServeCmd),
    /// Write one run as a self-contained, read-only static site (the dashboard plus the run's
    /// data) that any static file host serves, with no radlens server.
    ///
    /// Serve SITE_DIR with anything that serves files (`python3 -m http.server -d SITE_DIR`, a
    /// bucket, GitHub Pages), at the host root or under a sub-path. Deep links work on such a
    /// host: index.html is written into every route folder (runs/RUN/, runs/RUN/records/,
    /// runs/RUN/studies/STUDY/ for ids made of letters, digits and -_.~, playground/), and
    /// every page finds the site root by a relative path. View state stays in the query string,
    /// so "Copy link" works as on the server; share links and compare need a server and are
    /// hidden. SITE_DIR must be new, empty, or a previous export (which is replaced).
    Export(ExportCmd),
    /// Import a public question or box set as a study CSV (closed yes/no questions; boxes as
    /// `roi_*`), printing rows kept and rows dropped by reason.
    ///
    /// Question sets: vqa-rad, slake, psf-med, mimic-cxr-vqa. Box sets (a template question per
    /// boxed finding): nih-bbox, vindr-cxr, ms-cxr, boxes (radlens' own box CSV; with --onto it
    /// attaches boxes to an existing study CSV instead). The output is written to OUT.tmp and
    /// renamed, so a refused source never leaves a half file.
    Import(ImportCmd),
    /// Write rule-based paraphrases of a study CSV's base questions (synonym, reorder, hedge,
    /// register, negation; negations get polarity -1 and the inverted answer), or validate and
    /// add variants written elsewhere (--from).
    Variants(VariantsCmd),
    /// Developer tools: the planted-truth data and models (issue 18).
    #[command(hide = true)]
    Dev(DevCmd),
}

#[derive(Debug, clap::Args)]
pub struct ImportCmd {
    /// The source format.
    #[arg(value_enum, value_name = "FORMAT")]
    pub format: crate::import::Format,
    /// The source file (the JSON release, or the box CSV).
    #[arg(long, value_name = "PATH")]
    pub src: PathBuf,
    /// The image folder: written image paths are relative to it; images that are not there
    /// drop their rows (counted), and boxes are scaled to and checked against the images' sizes.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// The study CSV to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Keep only this split (vqa-rad: train or test; mimic-cxr-vqa, psf-med, ms-cxr 1.1: the
    /// source's split field).
    #[arg(long, value_name = "S")]
    pub split: Option<String>,
    /// Stop after N studies.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// nih-bbox: a labels CSV (NIH Data_Entry_2017_v2020.csv, or file,finding) whose "No
    /// Finding" images become negatives.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// boxes: attach the boxes to this study CSV's rows (by image and finding) instead of
    /// writing template questions.
    #[arg(long, value_name = "FILE")]
    pub onto: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VariantsCmd {
    /// The base study CSV (each study's variant 0 is its base question).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// The study CSV to write: every input row, then the new variants of each study.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Rules to apply, comma-separated: synonym, reorder, hedge, register, negation (default:
    /// all of them, or none when --from is given).
    #[arg(long, value_name = "S,...", value_delimiter = ',', value_parser = parse_strategy)]
    pub strategies: Option<Vec<radlens_shared::variants::Strategy>>,
    /// At most K new rule-based variants per base question (chosen by --seed).
    #[arg(long, value_name = "K")]
    pub per_question: Option<usize>,
    /// Seed of every choice between alternatives (synonyms, templates, the K kept).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Variants written elsewhere (JSON Lines: study_id, question, strategy, polarity, and
    /// optionally image_path and base_question, which must match the base).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
}

fn parse_strategy(s: &str) -> Result<radlens_shared::variants::Strategy, String> {
    radlens_shared::variants::Strategy::parse(s)
        .ok_or_else(|| format!("unknown strategy {s:?} (synonym, reorder, hedge, register, negation)"))
}

#[derive(Debug, clap::Args)]
pub struct DevCmd {
    #[command(subcommand)]
    pub command: DevCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write planted-truth sets: images with a drawn nodule (known box) and a corner marker,
    /// and their study CSVs (OUT/SET.csv, image paths relative to OUT).
    PlantedData(PlantedDataArgs),
    /// Train the planted models (planted-lesion, planted-marker, planted-shortcut) in candle and
    /// write them with MANIFEST.json under --out.
    TrainPlanted(TrainPlantedArgs),
    /// Write planted longitudinal pairs: a prior and a current image of one source with the
    /// nodule in either, both or neither, and their study CSVs (OUT/SET.csv with
    /// prior_image_path).
    PlantedPairs(PlantedPairsArgs),
    /// Train the planted multi-image models (planted-change, planted-current), tiny Gemma3
    /// models, and write them with MANIFEST.json under --out.
    TrainPlantedMulti(TrainPlantedMultiArgs),
}

#[derive(Debug, clap::Args)]
pub struct PlantedPairsArgs {
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The source X-rays (default: the bundled static/demo/cxr).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Pairs per source.
    #[arg(long, default_value_t = 8)]
    pub per_source: usize,
    /// Comma-separated: pairs-train, pairs-heldout.
    #[arg(long, default_value = "pairs-heldout")]
    pub sets: String,
}

#[derive(Debug, clap::Args)]
pub struct TrainPlantedMultiArgs {
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The source X-rays (default: the bundled static/demo/cxr).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Comma-separated: change, current.
    #[arg(long, default_value = "change,current")]
    pub models: String,
    #[arg(long, default_value_t = 2400)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Training pairs per training source.
    #[arg(long, default_value_t = 16)]
    pub per_source: usize,
    /// Held-out pairs per held-out source for the manifest's accuracies.
    #[arg(long, default_value_t = 8)]
    pub heldout_per_source: usize,
    /// Skip the evaluation (and MANIFEST.json): only the weights.
    #[arg(long)]
    pub no_eval: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlantedDataArgs {
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The source X-rays (default: the bundled static/demo/cxr).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Images per source.
    #[arg(long, default_value_t = 4)]
    pub per_source: usize,
    /// Comma-separated: train, train-correlated, heldout, heldout-correlated.
    #[arg(long, default_value = "heldout,heldout-correlated")]
    pub sets: String,
}

#[derive(Debug, clap::Args)]
pub struct TrainPlantedArgs {
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The source X-rays (default: the bundled static/demo/cxr).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Comma-separated: lesion, marker, shortcut.
    #[arg(long, default_value = "lesion,marker,shortcut")]
    pub models: String,
    #[arg(long, default_value_t = 1600)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Training images per training source.
    #[arg(long, default_value_t = 24)]
    pub per_source: usize,
    /// Held-out images per held-out source for the manifest's accuracies.
    #[arg(long, default_value_t = 4)]
    pub heldout_per_source: usize,
    /// Skip the evaluation (and MANIFEST.json): only the weights.
    #[arg(long)]
    pub no_eval: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportCmd {
    /// The run directory: it holds manifest.json, records.jsonl and (after `radlens report`)
    /// analysis.json.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// The site folder to write.
    #[arg(long, value_name = "SITE_DIR")]
    pub out: PathBuf,
    /// The folder the records' image names are relative to (default: the study's --images, or
    /// the demo's images, when that folder still exists); images are re-encoded as PNG, at most
    /// 512 px a side.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Use this dashboard bundle instead of the one embedded at build time.
    #[arg(long, value_name = "DIR")]
    pub dist: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DemoCmd {
    /// Where the demo's models and run directory go.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// The demo data folder (demo-study.csv and cxr/: the planted images are drawn on cxr/);
    /// default: the bundled static/demo.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Only the first N studies.
    #[arg(long)]
    pub n_studies: Option<usize>,
    /// Then serve the dashboard on 127.0.0.1 (prints the one-time sign-in URL).
    #[arg(long)]
    pub serve: bool,
    /// The dashboard's port with --serve (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Run the two tiny random-weight models (a LLaVA and a Gemma3) on the bundled demo CSV
    /// instead of the three planted-truth models on their held-out images.
    #[arg(long)]
    pub random_weights: bool,
}

#[derive(Debug, clap::Args)]
pub struct StudyCmd {
    /// The study CSV: study_id, image_path, question, answer (+ optional variant columns).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// The folder the CSV's image_path values are relative to.
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// A model as NAME=DIR (repeatable; run one after the other).
    #[arg(long, value_name = "NAME=DIR", required = true)]
    pub model: Vec<ModelSpec>,
    /// The run directory (created, or resumed when it exists).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub max_new_tokens: u32,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Grounding figures on every image-pass record: the occlusion reference map and each map's
    /// agreement with it; on rows with a box, each map's lift over control boxes and box score;
    /// the null edits (contrast90 and jpeg90 re-runs: answer, margin and map stability).
    #[arg(long)]
    pub grounding: bool,
    /// The weight-randomisation sanity check on N sampled records per model: the top LM layers
    /// re-drawn in cascade (then the vision tower), each step's map against the original.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub randomization: Option<u32>,
    #[command(flatten)]
    pub grounding_args: GroundingArgs,
    /// Only the first N studies of the CSV.
    #[arg(long)]
    pub n_studies: Option<usize>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap resamples per interval.
    #[arg(long, default_value_t = 2000)]
    pub resamples: u32,
    /// Side of the common grid for cross-model comparisons.
    #[arg(long, default_value_t = 32)]
    pub common_grid: usize,
    /// Also answer every question with a blank image (image reliance); the same as
    /// `--conditions blank`.
    #[arg(long)]
    pub text_only_pass: bool,
    /// Image conditions to run each row under besides its own image, comma-separated: blank,
    /// swap_opposite, swap_same, roi_occluded, control_occluded, jpeg90, contrast90 (each a
    /// pass with its own records; see the grounding spec G6).
    #[arg(long, value_name = "C,...", value_delimiter = ',')]
    pub conditions: Vec<ImageCondition>,
    /// Decision quality's near-tie threshold on |logit(yes) - logit(no)| (default 1.0).
    #[arg(long, value_name = "EPS", value_parser = non_negative)]
    pub near_tie_eps: Option<f64>,
    /// This process's share of the studies, I/N (default: from SLURM_ARRAY_TASK_* or
    /// JOB_COMPLETION_INDEX + RADLENS_SHARD_COUNT when set).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Run every prompt from scratch instead of reusing the shared prefix's KV cache.
    #[arg(long)]
    pub no_prefix_sharing: bool,
    /// Discard a run directory that holds another configuration and start over.
    #[arg(long)]
    pub force: bool,
    /// Refuse a CSV with any row problem (by default such rows become error records).
    #[arg(long)]
    pub strict: bool,
    /// Progress as JSON lines on stdout (for the server).
    #[arg(long)]
    pub progress_json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Measure study throughput with and without the shared-prompt-prefix KV cache instead
    /// (--reps is then the number of studies of 6 variants).
    #[arg(long)]
    pub study: bool,
    /// Time the grounding checks instead: a plain study, + occlusion (G1-G3), + null edits
    /// (--grounding), + --randomization, on the bundled demo data with the demo's tiny models
    /// (--reps studies of 6 variants), each per record and against the plain study.
    #[arg(long, conflicts_with_all = ["study", "dry_run", "agreement_with"])]
    pub grounding: bool,
    /// Time the image conditions instead (or as well, with --grounding): each condition as one
    /// more pass over a plain study's rows, then all of them, on the same demo data.
    #[arg(long, conflicts_with_all = ["study", "dry_run", "agreement_with"])]
    pub conditions: bool,
    #[command(flatten)]
    pub grounding_args: GroundingArgs,
    /// The model: llava or gemma3 (mid-size random models built in memory), or a full-size
    /// architecture with random weights, timed on the study protocol: llava-1.5-7b,
    /// medgemma-4b, llava-rad, qwen2.5-vl-7b, maira-2 (mid-size: llava, gemma3, qwen2.5-vl,
    /// maira2).
    #[arg(long, visible_alias = "preset", default_value = "llava")]
    pub arch: Preset,
    /// Full-size architectures only: instantiate them with random weights (speed does not
    /// depend on the values). Required for those, as radlens never downloads weights.
    #[arg(long)]
    pub random_weights: bool,
    /// Timed repetitions (after one warm-up run); studies, for --study and the full-size
    /// architectures; compared studies, for --agreement-with.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub reps: u32,
    /// Tokens generated after the prompt.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub new_tokens: u32,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Compare this run's precision (--dtype, --quantize) with dense weights in this dtype on
    /// the same random model: answer agreement and map JS distance.
    #[arg(long, value_name = "DTYPE")]
    pub agreement_with: Option<String>,
    /// Cut the language model to its first N layers (a smoke run on small machines; the
    /// output says so).
    #[arg(long, value_name = "N")]
    pub text_layers: Option<usize>,
    /// Cut the vision tower to its first N blocks (as --text-layers).
    #[arg(long, value_name = "N")]
    pub vision_layers: Option<usize>,
    /// Build the architecture without weights and print its parameter count.
    #[arg(long)]
    pub dry_run: bool,
    /// Prompts with N images (1 to 3) on an architecture that takes several (medgemma-4b,
    /// gemma3: current, prior, lateral; maira-2, maira2: current, lateral, prior): encode,
    /// prefill, decode, capture and peak memory for N images against one image, in the same run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3),
          conflicts_with_all = ["study", "grounding", "conditions", "agreement_with", "dry_run"])]
    pub images: Option<u8>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The model directory.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// LLaVA-Rad: the Vicuna base directory, when it is not `base/` beside `llava-rad/`.
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// LLaVA-Rad: the open_clip vision checkpoint, when not the one config.json names.
    #[arg(long, value_name = "FILE.pt")]
    pub vision_checkpoint: Option<PathBuf>,
    /// The image (PNG or JPEG). Optional with --pixel-values, where it only sets the geometry.
    #[arg(long, value_name = "IMG", required_unless_present = "pixel_values")]
    pub image: Option<PathBuf>,
    /// A prior image of the same patient, shown with --image (the current one) in one prompt:
    /// the report adds each image's map on its own grid and share of the attention mass
    /// (multi-image models: Gemma3, MAIRA-2).
    #[arg(long, value_name = "IMG", conflicts_with_all = ["pixel_values", "dump", "null_edits", "roi"])]
    pub prior: Option<PathBuf>,
    /// A lateral view, shown with --image (and --prior) in one prompt, as --prior.
    #[arg(long, value_name = "IMG", conflicts_with_all = ["pixel_values", "dump", "null_edits", "roi"])]
    pub lateral: Option<PathBuf>,
    /// The question, e.g. "Is there a pleural effusion?".
    #[arg(long)]
    pub question: String,
    /// System text, placed where the model's chat template puts it.
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_new_tokens: u32,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The occlusion reference map and each map's agreement with it (g x g extra forwards).
    #[arg(long)]
    pub occlusion: bool,
    /// A radiologist box x,y,w,h in the image's pixels: each map's lift over control boxes and
    /// box score (with --occlusion).
    #[arg(long = "box", value_name = "X,Y,W,H", requires = "occlusion")]
    pub roi: Option<BoxArg>,
    /// The null edits: the case re-run on the image re-encoded as JPEG quality 90 and with 10%
    /// less contrast; answer equality, margin change and the map's JS distance for each.
    #[arg(long, conflicts_with = "pixel_values")]
    pub null_edits: bool,
    #[command(flatten)]
    pub grounding_args: GroundingArgs,
    /// Write every layer's captured rows and the inputs to a safetensors file.
    #[arg(long, value_name = "OUT.safetensors")]
    pub dump: Option<PathBuf>,
    /// Feed stored pixel values (a tensor named `pixel_values`, [1,3,S,S]) instead of
    /// preprocessing the image.
    #[arg(long, value_name = "FILE.safetensors")]
    pub pixel_values: Option<PathBuf>,
    /// Print everything as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct MergeCmd {
    /// The shards' run directories (each holds manifest.json and records.jsonl).
    #[arg(value_name = "RUN_DIR", required = true)]
    pub run_dirs: Vec<PathBuf>,
    /// The merged run directory (created; must not already hold a run, unless --force).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// The folder the study CSV's image paths are relative to, for the report's overlay
    /// figures; without it they are skipped.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Replace a run that --out already holds.
    #[arg(long)]
    pub force: bool,
}

/// Where and in what precision the models run (shared by `probe`, `study` and `bench`).
#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// cpu, or cuda / cuda:N (builds with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weights' dtype: auto (f32 on the CPU, bf16 on a GPU), f32 (exact), bf16 or f16.
    /// Captured attention rows are exact f32 whatever this is.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Hold the language model's projection weights as 8-bit blocks (q8: GGML Q8_0), so a 7B
    /// model fits a 16 GB GPU; none keeps them in --dtype.
    #[arg(long, default_value = "none", value_name = "none|q8")]
    pub quantize: WeightFormat,
}

/// The trust checks (shared by `probe` and `study`): each is opt-in, as each costs extra passes.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// Also a Grad-CAM map of the yes-minus-no margin (one backward pass per question).
    #[arg(long)]
    pub gradcam: bool,
    /// Deletion tests: the top k% cells of each map against as many random cells.
    #[arg(long)]
    pub faithfulness: bool,
    /// Attention sinks and the relative map, against the map of a generic prompt.
    #[arg(long, alias = "relative-map")]
    pub sinks: bool,
    /// Deletion sizes for --faithfulness, in percent of the cells.
    #[arg(long, value_name = "K,..", value_delimiter = ',', default_values_t = [10u32, 25], value_parser = clap::value_parser!(u32).range(1..=100))]
    pub deletion_percent: Vec<u32>,
    /// Random deletions averaged per size for --faithfulness.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub random_draws: u32,
}

impl TrustArgs {
    pub fn settings(&self) -> Option<TrustSettings> {
        TrustSettings {
            gradcam: self.gradcam,
            faithfulness: self.faithfulness,
            sinks: self.sinks,
            k_percents: self.deletion_percent.clone(),
            random_draws: self.random_draws as usize,
        }
        .if_any()
    }
}

/// How a map is made from the captured attention (shared by `probe` and `study`).
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Layers to aggregate: all, last-quarter, or a list such as 0,4,8-11.
    #[arg(long, default_value = "last-quarter")]
    pub layers: LayerRange,
    /// Head fusion: mean, max or entropy (entropy-weighted).
    #[arg(long, default_value = "mean")]
    pub fusion: HeadFusion,
    /// Query rows: query (the last prompt token), answer (the rows that produced the answer
    /// tokens) or term:<word> (the prompt tokens of a word).
    #[arg(long, default_value = "query")]
    pub query: QueryMode,
}

impl CaptureArgs {
    /// The case spec these flags ask for.
    pub fn spec(&self, max_new_tokens: usize, trust: Option<TrustSettings>, grounding: Option<GroundingSettings>) -> CaseSpec {
        CaseSpec { layers: self.layers.clone(), head_fusion: self.fusion, query: self.query.clone(), max_new_tokens, trust, grounding }
    }
}

/// The occlusion reference map's settings (shared by `probe --occlusion` and `study --grounding`).
#[derive(Debug, Clone, clap::Args)]
pub struct GroundingArgs {
    /// Cells per side of the occlusion grid: g x g extra forwards per question.
    #[arg(long, value_name = "G", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub occlusion_grid: u32,
    /// Occluded images encoded per vision forward (speed and memory only; not part of a run's
    /// configuration).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub occlusion_batch: u32,
}

impl GroundingArgs {
    /// The grounding a command asks for: the occlusion reference (with the box figures), the
    /// null edits, both, or neither (`None`).
    pub fn settings(&self, occlusion: bool, null_edits: bool) -> Option<GroundingSettings> {
        (occlusion || null_edits).then_some(GroundingSettings {
            occlusion,
            occlusion_grid: self.occlusion_grid as usize,
            occlusion_batch: self.occlusion_batch as usize,
            null_edits,
        })
    }
}

/// `--box x,y,w,h`: a radiologist box in the original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxArg(pub radlens_shared::geometry::PixelBox);

impl std::str::FromStr for BoxArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let nums: Vec<f64> =
            s.split(',').map(|v| v.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| format!("{s:?}: expected x,y,w,h"))?;
        match nums.as_slice() {
            &[x, y, w, h] => radlens_shared::geometry::PixelBox::from_xywh(x, y, w, h)
                .map(BoxArg)
                .map_err(|e| format!("{s:?}: {e} (a box needs a positive width and height)")),
            _ => Err(format!("{s:?}: expected four numbers x,y,w,h")),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeCmd {
    /// The folder whose subfolders holding a manifest.json are the runs (their names are the
    /// run ids); share-link keys are kept here too.
    #[arg(long, value_name = "DIR")]
    pub runs: PathBuf,
    /// The address to listen on; anything but loopback is warned about.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The folder the runs' image names are relative to (record images, jobs).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// A model as NAME=DIR (repeatable): what study jobs and /api/compare may use, by name.
    #[arg(long, value_name = "NAME=DIR")]
    pub model: Vec<ModelSpec>,
    /// Add a new current share-link key (older keys are kept, so their links stay valid until
    /// they expire), then serve.
    #[arg(long)]
    pub rotate_share_key: bool,
    /// Serve this dashboard folder instead of the bundle embedded at build time.
    #[arg(long, value_name = "DIR")]
    pub dist: Option<PathBuf>,
}

/// `--model NAME=DIR`: a model's name in records and the dashboard, and its local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: String,
    pub dir: PathBuf,
}

impl std::str::FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, dir)) if !name.trim().is_empty() && !dir.trim().is_empty() => {
                Ok(Self { name: name.trim().to_string(), dir: dir.trim().into() })
            }
            _ => Err(format!("{s:?}: expected NAME=DIR")),
        }
    }
}

impl ModelSpec {
    /// As the study and the server keep them.
    pub fn pairs(specs: &[ModelSpec]) -> Vec<(String, PathBuf)> {
        specs.iter().map(|m| (m.name.clone(), m.dir.clone())).collect()
    }
}

/// A finite number >= 0.
fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a finite number >= 0")),
    }
}
