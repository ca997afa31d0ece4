//! The versioned serde types of a run directory: what the study runner writes, the server
//! serves and the dashboard reads. Bump [`SCHEMA_VERSION`] on any incompatible change; readers
//! reject records of another version with [`check_version`] instead of misreading them.
//!
//! A run directory holds `manifest.json` ([`RunManifest`]), `records.jsonl` (one
//! [`CaseRecord`] per line, per sample and model), the attention tensors the records point to
//! ([`TensorRef`]), and `analysis.json` ([`Analysis`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::AttentionMap;
use crate::MetricError;
use crate::answer::Answer;
use crate::fusion::{HeadFusion, LayerRange, MapProvenance, QueryMode};
use crate::geometry::PixelBox;
use crate::grounding::ImageCondition;
use crate::metrics::MapMetrics;
use crate::roi::RoiMetrics;
use crate::stats::bootstrap::Interval;
use crate::stats::mcnemar::McNemar;

mod grounding;
mod images;
pub use grounding::{
    ConditionAnalysis, ConditionStats, DecisionSummary, GroundingSummary, NullEditSummary, RandomizationSummary, ReliabilityBin,
};
pub use images::{ImageMapRecord, ImageMethodMap, ImageRoleSummary};

pub const SCHEMA_VERSION: u32 = 1;

/// Refuses a record written under another schema version.
pub fn check_version(found: u32) -> Result<(), MetricError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(MetricError::Invalid(format!("schema version {found} is not supported by this radlens (which reads version {SCHEMA_VERSION})")))
    }
}

/// What a run was asked to do, fixed when it starts; a resumed run must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub schema_version: u32,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    pub radlens_version: String,
    /// The command line that started (or last resumed) the run, as given.
    #[serde(default)]
    pub arguments: Vec<String>,
    pub study: StudySource,
    pub models: Vec<ModelInfo>,
    pub capture: CaptureSettings,
    pub bootstrap: BootstrapSettings,
    /// This run's share of the studies, `(index, count)`, when sharded.
    pub shard: Option<(u32, u32)>,
    /// `--n-studies`: only the CSV's first N studies, when given.
    #[serde(default)]
    pub n_studies: Option<usize>,
    /// The settings that decide the records' content; a resume must present the same.
    pub fingerprint: String,
    /// `--randomization N`: the weight-randomisation check, run after each model's records
    /// (not part of the fingerprint: adding it to a finished run only adds the check; a resume
    /// keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomization: Option<crate::grounding::RandomizationSettings>,
    /// `--near-tie-eps`: G7's near-tie threshold on `|m|` (absent: the spec's 1.0). An analysis
    /// setting, not part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_tie_eps: Option<f64>,
}

impl RunManifest {
    /// The near-tie threshold the analysis uses.
    pub fn near_tie_eps(&self) -> f64 {
        self.near_tie_eps.unwrap_or(crate::grounding::DEFAULT_NEAR_TIE_EPS)
    }
}

/// The study CSV as read: its name (never a server path), digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySource {
    pub csv_name: String,
    pub csv_sha256: String,
    pub rows: usize,
    pub studies: usize,
    /// Rows of this run (all, or the shard's).
    pub planned_rows: usize,
}

fn no_quantization() -> String {
    "none".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name records refer to, e.g. `llava-1.5-7b`.
    pub name: String,
    /// `llava`, `llava_rad` or `gemma3`.
    pub architecture: String,
    pub dtype: String,
    /// How the language model's projection weights were held: `none` or `q8`.
    #[serde(default = "no_quantization")]
    pub quantization: String,
    pub device: String,
    pub num_layers: usize,
    pub num_heads: usize,
    /// The image-token grid of its maps.
    pub grid_h: usize,
    pub grid_w: usize,
    /// sha256 of the model's config file.
    pub config_sha256: String,
    /// sha256 over each weight file's name, size, and first and last MiB: a fast identity
    /// check for multi-GB checkpoints, not a full-content digest.
    pub weights_fingerprint: String,
    /// Random weights (the demo's tiny models): answers exercise the pipeline, not medicine.
    pub random_weights: bool,
    /// What the model was built to do, from a `PURPOSE` file in its directory (the planted-truth
    /// models say which cause they answer from); absent for ordinary checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureSettings {
    pub layer_range: LayerRange,
    pub head_fusion: HeadFusion,
    pub query_mode: QueryMode,
    pub max_new_tokens: u32,
    /// Side of the common grid that cross-model comparisons resample onto.
    pub common_grid: usize,
    /// Whether a text-only pass with a blank image is run for image reliance (the condition
    /// `blank`).
    pub text_only_pass: bool,
    /// The other image conditions run (G6), in the spec's order; absent when none (and in older
    /// runs), so their fingerprints are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ImageCondition>,
    /// The opt-in trust checks; absent when none was asked for (and in older runs), so their
    /// fingerprints, and resumes, are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSettings>,
    /// The grounding figures (`--grounding`); absent when not asked for, as `trust`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounding: Option<GroundingSettings>,
}

/// `--grounding`: the occlusion reference map (G1) of every image-pass record on a `g x g` grid,
/// the box controls and box score (G2, G3) of every map of a record with a box, and the null
/// edits (G4) of every image-pass record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundingSettings {
    /// Whether the occlusion reference map is computed (`probe --null-edits` alone skips it).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub occlusion: bool,
    pub occlusion_grid: usize,
    /// Occluded images per vision forward (speed only; not part of what a resume must match).
    #[serde(skip)]
    pub occlusion_batch: usize,
    /// G4: each record re-run on its image under `contrast90` and `jpeg90` (absent in runs made
    /// before null edits existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub null_edits: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for GroundingSettings {
    fn default() -> Self {
        Self { occlusion: true, occlusion_grid: crate::grounding::DEFAULT_OCCLUSION_GRID, occlusion_batch: 16, null_edits: true }
    }
}

/// Which trust checks a run makes (`--gradcam`, `--faithfulness`, `--sinks`); each costs extra
/// forward passes per record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustSettings {
    /// A Grad-CAM map beside the attention map: one tracked prompt forward and its backward.
    pub gradcam: bool,
    /// Deletion tests: per size, one forward per method plus `random_draws` shared ones.
    pub faithfulness: bool,
    /// The generic prompt's map (one prefill per image): sinks and the relative map.
    pub sinks: bool,
    pub k_percents: Vec<u32>,
    pub random_draws: usize,
}

impl TrustSettings {
    /// `None` when no check is asked for.
    pub fn if_any(self) -> Option<Self> {
        (self.gradcam || self.faithfulness || self.sinks).then_some(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSettings {
    pub resamples: u32,
    pub seed: u64,
    /// The resampling unit: `study` (or `subject` when the data has one).
    pub unit: String,
}

/// Which pass over a row a record is: the row's own image, or one of the image conditions of
/// grounding.md G6 (`blank_image` is the condition `blank`, the text-only pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    Image,
    BlankImage,
    SwapOpposite,
    SwapSame,
    RoiOccluded,
    ControlOccluded,
    Jpeg90,
    Contrast90,
    ConfoundOccluded,
    PriorBlank,
    PriorSwap,
}

impl Pass {
    /// Every pass, the real image first, then the conditions in the spec's order, then radlens'
    /// own.
    pub const ALL: [Pass; 11] = [
        Pass::Image,
        Pass::BlankImage,
        Pass::SwapOpposite,
        Pass::SwapSame,
        Pass::RoiOccluded,
        Pass::ControlOccluded,
        Pass::Jpeg90,
        Pass::Contrast90,
        Pass::ConfoundOccluded,
        Pass::PriorBlank,
        Pass::PriorSwap,
    ];

    /// The image condition the pass runs.
    pub fn condition(self) -> ImageCondition {
        match self {
            Pass::Image => ImageCondition::Real,
            Pass::BlankImage => ImageCondition::Blank,
            Pass::SwapOpposite => ImageCondition::SwapOpposite,
            Pass::SwapSame => ImageCondition::SwapSame,
            Pass::RoiOccluded => ImageCondition::RoiOccluded,
            Pass::ControlOccluded => ImageCondition::ControlOccluded,
            Pass::Jpeg90 => ImageCondition::Jpeg90,
            Pass::Contrast90 => ImageCondition::Contrast90,
            Pass::ConfoundOccluded => ImageCondition::ConfoundOccluded,
            Pass::PriorBlank => ImageCondition::PriorBlank,
            Pass::PriorSwap => ImageCondition::PriorSwap,
        }
    }

    /// The pass that runs `condition`.
    pub fn of(condition: ImageCondition) -> Pass {
        Pass::ALL.into_iter().find(|p| p.condition() == condition).expect("every condition has a pass")
    }

    /// As `records.jsonl` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Image => "image",
            Pass::BlankImage => "blank_image",
            Pass::SwapOpposite => "swap_opposite",
            Pass::SwapSame => "swap_same",
            Pass::RoiOccluded => "roi_occluded",
            Pass::ControlOccluded => "control_occluded",
            Pass::Jpeg90 => "jpeg90",
            Pass::Contrast90 => "contrast90",
            Pass::ConfoundOccluded => "confound_occluded",
            Pass::PriorBlank => "prior_blank",
            Pass::PriorSwap => "prior_swap",
        }
    }

    /// The pass [`Pass::name`] spells.
    pub fn from_name(name: &str) -> Option<Pass> {
        Pass::ALL.into_iter().find(|p| p.name() == name)
    }

    /// For people: what the model was shown.
    pub fn label(self) -> &'static str {
        match self {
            Pass::Image => "image",
            Pass::BlankImage => "blank image",
            Pass::SwapOpposite => "swapped image, opposite truth",
            Pass::SwapSame => "swapped image, same truth",
            Pass::RoiOccluded => "box occluded",
            Pass::ControlOccluded => "control box occluded",
            Pass::Jpeg90 => "JPEG q90",
            Pass::Contrast90 => "contrast 90%",
            Pass::ConfoundOccluded => "confound box occluded",
            Pass::PriorBlank => "prior image blank",
            Pass::PriorSwap => "another study's prior",
        }
    }
}

/// What an image condition did to a row's image (absent on the row's own image).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConditionRecord {
    /// `swap_*`: the study whose image the model was shown (its image is the record's `image`);
    /// `prior_swap`: the study whose prior image stood in for the row's prior.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_study: Option<String>,
    /// `roi_occluded`, `control_occluded`, `confound_occluded`: the box filled with the image's per-channel mean, in
    /// original pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occluded_box: Option<PixelBox>,
    /// Why the condition has no image for this row (no swap partner, no box, no control box):
    /// the record then has no answer and counts in no figure. Not an error of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
    /// `prior_swap`: the prior image shown (the partner study's `prior_image_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_image: Option<String>,
}

/// One (row, model, pass): the question, what the model said, and the map of where it looked.
/// A failed case is a record too, with `error` set: nothing is lost, and the run goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub schema_version: u32,
    /// `<study_id>#<variant_index>`: unique within a study CSV.
    pub sample_id: String,
    pub study_id: String,
    pub subject_id: Option<String>,
    /// 1-based line of the study CSV this sample came from.
    pub csv_line: usize,
    pub variant_index: u32,
    pub strategy: String,
    /// `+1` same meaning as the base question, `-1` negated.
    pub polarity: i8,
    pub finding: Option<String>,
    pub model: String,
    pub pass: Pass,
    /// The image as the CSV names it, relative to the run's image folder.
    pub image: String,
    pub question: String,
    /// The correct answer to this exact question.
    pub ground_truth: Option<Answer>,
    /// The radiologist's box in original-image pixels, when known.
    pub roi: Option<PixelBox>,
    /// A known shortcut region of the image (the CSV's `confound_*` box), in original pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound: Option<PixelBox>,
    pub answer_text: Option<String>,
    pub parsed_answer: Option<Answer>,
    pub correct: Option<bool>,
    /// `logit(yes) - logit(no)` at the first answer position.
    pub yes_no_margin: Option<f64>,
    pub latency: Latency,
    pub map: Option<MapRecord>,
    pub error: Option<CaseError>,
    /// Grad-CAM, faithfulness and sink checks, when the run asked for them (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustRecord>,
    /// Grounding figures (spec G1-G3), when the run asked for them (absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounding: Option<crate::grounding::CaseGrounding>,
    /// What the pass's image condition did (G6); absent for the row's own image and the blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionRecord>,
    /// CSV columns radlens does not interpret, kept as they were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// A multi-image row's maps, one per image in prompt order (issue 21): each on its own
    /// grid, with its share of the attention mass on all image tokens. `map` stays the current
    /// image's. Empty (and absent from the JSON) for single-image rows and older runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageMapRecord>,
}

/// Lets code over a run's records (`crate::views`) take bare records and the dashboard's
/// records-with-index alike.
impl AsRef<CaseRecord> for CaseRecord {
    fn as_ref(&self) -> &CaseRecord {
        self
    }
}

impl CaseRecord {
    /// What identifies a record within a run (resume skips keys already written).
    pub fn key(&self) -> (String, String, Pass) {
        (self.sample_id.clone(), self.model.clone(), self.pass)
    }
}

/// Milliseconds spent in each stage of one case. Work shared by a study's variants (decoding
/// and encoding the image, the shared prompt prefix) is counted once, on the first variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub preprocess_ms: f64,
    pub image_encode_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub capture_ms: f64,
    pub total_ms: f64,
}

/// A record's map: how it was made, its metrics, and where its values are stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapRecord {
    pub provenance: MapProvenance,
    pub image_share: f64,
    pub metrics: MapMetrics,
    /// Against the radiologist's box, when the sample has one.
    pub roi: Option<RoiMetrics>,
    /// The fused map, `[h, w]` f32.
    pub values: TensorRef,
    /// The captured rows restricted to the image tokens before fusion, `[rows, layers, heads,
    /// image_tokens]` f32 (raw probabilities, not renormalised), so the dashboard can re-fuse
    /// with another head fusion or layer range.
    pub head_rows: TensorRef,
}

/// The opt-in checks of one record (`--gradcam`, `--faithfulness`, `--sinks`): other methods'
/// maps of the same question, deletion tests, and attention sinks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// Maps by other methods (`gradcam`, `relative`), on the attention map's grid and geometry.
    #[serde(default)]
    pub maps: Vec<MethodMap>,
    /// Per method and deletion size.
    #[serde(default)]
    pub faithfulness: Vec<Faithfulness>,
    #[serde(default)]
    pub sinks: Option<SinkCheck>,
    /// Jensen-Shannon between every two of this record's maps (attention, Grad-CAM, relative).
    #[serde(default)]
    pub agreement: Vec<crate::trust::MethodPair>,
    /// A check that could not be made, and why (the others are kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl TrustRecord {
    pub fn map(&self, method: crate::fusion::MapMethod) -> Option<&MethodMap> {
        self.maps.iter().find(|m| m.provenance.method == method)
    }
}

/// A map made by a method other than the record's attention map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodMap {
    pub provenance: MapProvenance,
    pub metrics: MapMetrics,
    pub roi: Option<RoiMetrics>,
    /// The map, `[h, w]` f32 (normalised).
    pub values: TensorRef,
}

/// Deleting a map's top `k_percent`% cells (each cell's pixels replaced by the per-channel image
/// mean) against deleting as many random cells: does the map point at what the decision uses?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Faithfulness {
    pub method: crate::fusion::MapMethod,
    pub k_percent: u32,
    /// Cells deleted.
    pub cells: usize,
    /// The margin `logit(yes) - logit(no)` before deletion.
    pub margin: f64,
    /// Margin after deleting the top cells, minus `margin`.
    pub delta_top: f64,
    /// Mean over `random_draws` seeded draws of the same number of random cells.
    pub delta_random: f64,
    pub random_draws: usize,
    /// `|delta_top| <= |delta_random|`: the map's top cells move the decision no more than
    /// random ones.
    pub flagged: bool,
}

/// Attention sinks: cells above `factor / n` in every variant's map of the study and in the map
/// of the generic prompt, and this record's map metrics without them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkCheck {
    pub factor: f64,
    pub generic_prompt: String,
    /// Row-major cell indices.
    pub cells: Vec<usize>,
    /// The mass this record's map puts on them.
    pub mass: f64,
    /// The metrics with the sinks zeroed and the map renormalised (equal to the map's own when
    /// there are none; absent when the sinks held all the mass).
    pub metrics_without: Option<MapMetrics>,
}

impl SinkCheck {
    /// The sink check of one map (`values`, normalised) with its sink `cells` (found over the
    /// study's maps by `trust::sink_cells` at `factor`; `generic_prompt` is the prompt of the
    /// generic map they were checked against): the mass the map puts on them and its metrics
    /// with them zeroed and renormalised (`None` when they hold all the mass). A cell beyond the
    /// map adds nothing.
    pub fn new(factor: f64, generic_prompt: impl Into<String>, values: &[f64], cells: Vec<usize>) -> Self {
        let mass = cells.iter().fold(0.0, |acc, &c| acc + values.get(c).copied().unwrap_or(0.0));
        let metrics_without = crate::trust::without_cells(values, &cells).ok().map(|q| MapMetrics::of_probs(&q));
        Self { factor, generic_prompt: generic_prompt.into(), cells, mass, metrics_without }
    }
}

/// A little-endian f32 array inside the run directory's attention store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRef {
    /// File relative to the run directory.
    pub file: String,
    /// Byte offset of the first value.
    pub offset: u64,
    pub shape: Vec<usize>,
}

impl TensorRef {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn byte_len(&self) -> u64 {
        self.len() as u64 * 4
    }
}

/// A map with everything needed to draw and measure it, as the server sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMap {
    pub provenance: MapProvenance,
    pub image_share: f64,
    pub map: AttentionMap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStage {
    Csv,
    Image,
    Preprocess,
    Inference,
    Capture,
    Metrics,
}

impl ErrorStage {
    /// The stored (serde) name, e.g. `inference`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Image => "image",
            Self::Preprocess => "preprocess",
            Self::Inference => "inference",
            Self::Capture => "capture",
            Self::Metrics => "metrics",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseError {
    pub stage: ErrorStage,
    pub message: String,
}

/// One study (an image with its question variants) for one model.
///
/// Counts are over the study's image-pass records of that model; error records are counted in
/// `errors` and left out of everything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySummary {
    pub study_id: String,
    pub model: String,
    /// The finding the base question asks about, when the CSV names one.
    pub finding: Option<String>,
    /// The image as the CSV names it (relative to the run's image folder).
    pub image: String,
    /// Image-pass records of this study, error records included.
    pub variants: usize,
    /// Records with an answer and a yes/no ground truth: the rows the statistics use.
    pub answered: usize,
    pub correct: usize,
    pub errors: usize,
    /// Polarity-adjusted answers all equal (studies with >= 2 answered variants, base included).
    pub fully_consistent: Option<bool>,
    /// Rephrasings whose polarity-adjusted answer differs from the base's.
    pub flips: usize,
    /// At least one answered row changed its answer when the image was blanked (only when the
    /// study has text-only answers).
    pub image_reliant: Option<bool>,
    /// Mean pairwise `1 - js_distance` of the variants' maps.
    pub map_consistency: Option<f64>,
    /// G4 per null edit the run made: the paraphrase-to-null ratio and its flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub null_edits: Vec<crate::grounding::NullEditStudy>,
}

/// The study's statistics with their cluster-bootstrap intervals, recomputed from the records
/// alone (`radlens report`). Every collection is sorted, so two runs over the same records give
/// byte-identical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub schema_version: u32,
    pub run_id: String,
    /// `B`, the seed and the unit behind every interval below (each interval repeats them).
    pub bootstrap: BootstrapSettings,
    /// Any model has random weights: the numbers exercise the pipeline and say nothing medical.
    pub random_weights: bool,
    pub records: RecordCounts,
    /// In the manifest's model order (models found only in the records follow, sorted).
    pub models: Vec<ModelAnalysis>,
    /// Sorted by study id, then model.
    pub studies: Vec<StudySummary>,
    /// Paired comparisons of every two models on the rows both answered.
    pub comparisons: Vec<ModelComparison>,
    /// Cross-model attention divergence of every two models on the common grid.
    pub cross_model: Vec<CrossModelMaps>,
    /// Every study, most disagreeing first (see [`StudyDisagreement`]).
    pub disagreements: Vec<StudyDisagreement>,
    /// What was left out and why (error records, duplicates, unreadable maps, ...), in plain
    /// words, so the report can say so.
    pub notes: Vec<String>,
}

/// What was read from `records.jsonl` and what of it the statistics use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCounts {
    /// Lines read.
    pub read: usize,
    /// Records whose key (sample, model, pass) repeats an earlier one; the first is kept.
    pub duplicates: usize,
    pub image_pass: usize,
    pub blank_image_pass: usize,
    /// Records with `error` set (both passes): counted, never used in a statistic.
    pub errors: usize,
    /// Image-pass records without an error but without a yes/no ground truth, an answer or a
    /// closed yes/no question: left out of the answer statistics.
    pub unscorable: usize,
    /// Of the image-pass records without an error, those whose question is not a closed yes/no
    /// question ([`crate::answer::is_yes_no_question`]).
    #[serde(default)]
    pub not_yes_no_questions: usize,
}

/// A distribution in a few numbers. Quantiles use numpy's default (linear) interpolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// Rates of a subset of one model's rows (one strategy, or one finding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    /// Answered rows in the subset.
    pub rows: usize,
    /// Studies contributing at least one row.
    pub studies: usize,
    pub accuracy: Option<Interval>,
    /// Per strategy: the (base, variant) pairs whose variant used it; the base question's own
    /// strategy has none. Per finding: all pairs of the finding's studies.
    pub flip_rate: Option<Interval>,
    /// Per finding only: the share of its studies that are fully consistent.
    pub full_consistency: Option<Interval>,
}

/// One of the four (consistent?, image-reliant?) quadrants of the studies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuadrantShare {
    pub studies: usize,
    /// Share of the classified studies, with its cluster-bootstrap interval.
    pub share: Option<Interval>,
}

/// Image reliance from the text-only (blank image) pass.
///
/// Row level (the spec's `image_reliance`): the share of answered rows whose parsed answer
/// changes when the image is replaced by a blank one.
///
/// Study level (the quadrants): a study is *consistent* when it is fully consistent (all
/// polarity-adjusted answers equal, >= 2 answered variants), and *image-reliant* when at least
/// one of its rows changes its answer without the image. So *not image-reliant* means the model
/// gave exactly the same answers with no image at all. Consistent and not image-reliant is the
/// "dangerous" quadrant: answers that look robust but ignore the image. Only studies with a base,
/// >= 2 answered variants and at least one text-only answer are classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageReliance {
    /// Rows answered in both passes.
    pub rows: usize,
    pub rate: Option<Interval>,
    /// Studies classified into the quadrants.
    pub studies: usize,
    pub consistent_reliant: QuadrantShare,
    /// The "dangerous" quadrant.
    pub consistent_not_reliant: QuadrantShare,
    pub inconsistent_reliant: QuadrantShare,
    pub inconsistent_not_reliant: QuadrantShare,
}

/// `logit(yes) - logit(no)` over the answered rows that have one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginSummary {
    pub all: Summary,
    pub correct: Option<Summary>,
    pub wrong: Option<Summary>,
}

/// Milliseconds per stage over the records without an error. Work shared by a study's
/// variants is recorded on its first variant only, so means are per row, amortised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub preprocess_ms: Option<Summary>,
    pub image_encode_ms: Option<Summary>,
    pub prefill_ms: Option<Summary>,
    pub decode_ms: Option<Summary>,
    pub capture_ms: Option<Summary>,
    pub total_ms: Option<Summary>,
}

/// Single-map metrics of one model's image-pass maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapSummary {
    /// Maps summarised (attention maps; `uniform_fallback` maps are counted in `methods` but
    /// left out, since a uniform map would read as "looked everywhere").
    pub maps: usize,
    /// Maps per method (`query_to_visual`, `uniform_fallback`, ...), all of them.
    pub methods: BTreeMap<String, usize>,
    pub focus: Summary,
    pub gini: Summary,
    pub top10_mass: Summary,
    pub entropy_nats: Summary,
    pub image_share: Summary,
    /// Against the radiologist's boxes, when any row has one.
    pub roi: Option<RoiSummary>,
}

/// ROI metrics as means over rows with a box, each with its cluster-bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoiSummary {
    pub rows: usize,
    pub relevance_mass: Option<Interval>,
    pub rank_accuracy: Option<Interval>,
    /// The pointing-game hit rate.
    pub pointing_game: Option<Interval>,
}

/// Map metrics of one group of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapGroup {
    pub rows: usize,
    pub focus: Option<Summary>,
    pub gini: Option<Summary>,
    pub top10_mass: Option<Summary>,
}

/// Do flipped answers come with different attention? Rephrasings (variants >= 1) whose
/// polarity-adjusted answer differs from their study's base against those that agree; the base
/// rows themselves are in neither group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlipMaps {
    pub flipped: MapGroup,
    pub stable: MapGroup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAnalysis {
    pub model: String,
    pub random_weights: bool,
    /// [`ModelInfo::purpose`], so the report and the dashboard can say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Image-pass records, error records included.
    pub rows: usize,
    /// Image-pass rows the statistics use (no error, a parsed answer, a yes/no truth).
    pub answered: usize,
    /// Image-pass error records.
    pub errors: usize,
    pub blank_image_rows: usize,
    pub blank_image_errors: usize,
    /// Studies with at least one answered row.
    pub studies: usize,
    pub accuracy: Option<Interval>,
    pub flip_rate: Option<Interval>,
    pub full_consistency: Option<Interval>,
    /// `cs_k` for k = 1 ..= the most answered variants of a study.
    pub cs_k: BTreeMap<u32, Interval>,
    /// By the variant's rephrasing strategy (the base's included, for accuracy).
    pub by_strategy: BTreeMap<String, GroupStats>,
    /// By the base question's finding; studies without one are under `(none)`.
    pub by_finding: BTreeMap<String, GroupStats>,
    /// Accuracy of the text-only pass: how far the question alone gets.
    pub blank_image_accuracy: Option<Interval>,
    /// Only when the run has text-only (blank image) records for this model.
    pub image_reliance: Option<ImageReliance>,
    pub yes_no_margin: Option<MarginSummary>,
    pub latency: LatencySummary,
    pub maps: Option<MapSummary>,
    /// Per-study attention consistency across its variants (mean pairwise `1 - js_distance`).
    pub map_consistency: Option<Summary>,
    pub flipped_vs_stable: Option<FlipMaps>,
    /// Only when the run made trust checks (`--gradcam`, `--faithfulness`, `--sinks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSummary>,
    /// Only when the run computed grounding figures (`--grounding`), one row per map method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grounding: Vec<GroundingSummary>,
    /// G4, one row per null edit, when the run made them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub null_edits: Vec<NullEditSummary>,
    /// G5, when the run made the randomisation check (`--randomization N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomization: Option<RandomizationSummary>,
    /// G6, when the run has image-condition passes (`--conditions`, `--text-only-pass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<ConditionAnalysis>,
    /// G7 over the image-pass rows with a margin, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionSummary>,
    /// G7 per rephrasing strategy: the base rows and the variants of that strategy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decision_by_strategy: BTreeMap<String, DecisionSummary>,
    /// Multi-image rows (issue 21), per image role (`current`, `prior`, `lateral`): over the
    /// image-pass records that split their map per image. Absent for single-image runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, ImageRoleSummary>,
}

/// One model's trust checks over its image-pass records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustSummary {
    /// Image-pass records with checks.
    pub records: usize,
    /// Maps per method: the records' own maps (fallbacks included) and the checks' maps.
    pub methods: BTreeMap<String, usize>,
    /// Records whose own map stands in for attention (Grad-CAM or uniform, labelled).
    pub fallbacks: usize,
    /// Records with a check that could not be made (see their notes).
    pub records_with_notes: usize,
    /// Per pair of methods, in a fixed order.
    pub agreement: Vec<AgreementSummary>,
    /// Per method and deletion size.
    pub faithfulness: Vec<FaithfulnessSummary>,
    pub sinks: Option<SinkSummary>,
}

/// How far two methods' maps of the same records are apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementSummary {
    pub a: crate::fusion::MapMethod,
    pub b: crate::fusion::MapMethod,
    pub rows: usize,
    pub js_distance: Summary,
    /// The mean JS distance with its cluster-bootstrap interval.
    pub mean_js_distance: Option<Interval>,
}

/// Deletion tests of one method at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaithfulnessSummary {
    pub method: crate::fusion::MapMethod,
    pub k_percent: u32,
    pub rows: usize,
    /// Rows whose top cells moved the margin no more than random cells.
    pub flagged: usize,
    pub flag_rate: Option<Interval>,
    pub delta_top: Summary,
    pub delta_random: Summary,
}

/// Attention sinks over the studies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkSummary {
    pub studies: usize,
    pub studies_with_sinks: usize,
    /// Sink cells per study.
    pub cells: Summary,
    /// Mass of a record's map on its study's sinks.
    pub mass: Summary,
    /// Focus of the maps as they are, and with the sinks removed.
    pub focus: Option<Summary>,
    pub focus_without: Option<Summary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelComparison {
    pub model_a: String,
    pub model_b: String,
    /// Rows (study, variant) both models answered.
    pub rows: usize,
    pub studies: usize,
    pub accuracy_a: Option<f64>,
    pub accuracy_b: Option<f64>,
    /// Accuracy of A minus accuracy of B on the paired rows, with a cluster-bootstrap interval.
    pub accuracy_difference: Option<Interval>,
    pub mcnemar: McNemar,
}

/// Jensen-Shannon divergence (bits) between two models' maps of the same row, each resampled by
/// area onto the common `grid x grid` grid over the whole original image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossModelMaps {
    pub model_a: String,
    pub model_b: String,
    pub grid: usize,
    pub rows: usize,
    pub js_divergence: Option<Summary>,
    pub js_distance: Option<Summary>,
    /// Every compared row, sorted by sample id.
    pub per_row: Vec<CrossModelRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossModelRow {
    pub sample_id: String,
    pub study_id: String,
    pub js_divergence: f64,
    pub js_distance: f64,
}

/// How much one study unsettles the models: what the report and overlay figures pick from.
/// Ordered by `flips + answer_disagreements` (descending), then `mean_js_distance`
/// (descending), then study id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyDisagreement {
    pub study_id: String,
    pub finding: Option<String>,
    pub image: String,
    /// Flips summed over the models.
    pub flips: usize,
    /// Variants that two models answered differently.
    pub answer_disagreements: usize,
    /// Mean cross-model `js_distance` over the study's rows and model pairs.
    pub mean_js_distance: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_check_holds_the_sinks_mass_and_the_metrics_without_them() {
        let p = [0.5, 0.25, 0.125, 0.125];
        let s = SinkCheck::new(2.0, "generic", &p, vec![0]);
        assert_eq!((s.factor, s.generic_prompt.as_str(), s.cells.as_slice(), s.mass), (2.0, "generic", &[0usize][..], 0.5));
        assert_eq!(s.metrics_without, Some(MapMetrics::of_probs(&[0.0, 0.5, 0.25, 0.25])));
        let none = SinkCheck::new(2.0, "g", &p, Vec::new());
        assert_eq!((none.mass, none.metrics_without), (0.0, Some(MapMetrics::of_probs(&p))));
        // The sinks hold all the mass: nothing is left to measure.
        assert_eq!(SinkCheck::new(2.0, "g", &[1.0, 0.0], vec![0]).metrics_without, None);
    }

    #[test]
    fn a_record_without_images_loads_and_writes_none() {
        // A record as single-image runs (and runs before issue 21) write it.
        let json = serde_json::json!({
            "schema_version": SCHEMA_VERSION, "sample_id": "s#0", "study_id": "s", "subject_id": null,
            "csv_line": 2, "variant_index": 0, "strategy": "baseline", "polarity": 1, "finding": null,
            "model": "a", "pass": "image", "image": "x.png", "question": "q?", "ground_truth": "yes",
            "roi": null, "answer_text": null, "parsed_answer": null, "correct": null, "yes_no_margin": null,
            "latency": { "preprocess_ms": 0.0, "image_encode_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0, "capture_ms": 0.0, "total_ms": 0.0 },
            "map": null, "error": null,
        });
        let r: CaseRecord = serde_json::from_value(json).unwrap();
        assert!(r.images.is_empty());
        let written = serde_json::to_value(&r).unwrap();
        assert!(written.get("images").is_none(), "single-image records are written as before");
    }

    #[test]
    fn records_of_another_schema_version_are_refused() {
        assert!(check_version(SCHEMA_VERSION).is_ok());
        assert!(check_version(SCHEMA_VERSION + 1).unwrap_err().to_string().contains("schema version"));
    }

    #[test]
    fn error_stage_names_are_the_stored_ones() {
        use ErrorStage::*;
        for s in [Csv, Image, Preprocess, Inference, Capture, Metrics] {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::from(s.as_str()));
        }
    }
}
