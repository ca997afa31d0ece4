//! The versioned serde types of a run directory: what the study runner writes, the server
//! serves and the dashboard reads. Bump [`SCHEMA_VERSION`] on any incompatible change; readers
//! reject records of another version with [`check_version`] instead of misreading them.
//!
//! A run directory holds `manifest.json` ([`RunManifest`]), `records.jsonl` (one
//! [`CaseRecord`] per line, per sample and model), the attention tensors the records point to
//! ([`TensorRef`]), and `analysis.json` ([`Analysis`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::fusion::{HeadFusion, LayerRange, MapProvenance, QueryMode};
use crate::metrics::MapMetrics;
use crate::roi::RoiMetrics;
use crate::stats::bootstrap::Interval;
use crate::stats::mcnemar::McNemar;
use crate::AttentionMap;
use crate::MetricError;

pub const SCHEMA_VERSION: u32 = 1;

/// Refuses a record written under another schema version.
pub fn check_version(found: u32) -> Result<(), MetricError> {
    if found == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(MetricError::Invalid(format!(
            "schema version {found} is not supported by this radlens (which reads version {SCHEMA_VERSION})"
        )))
    }
}

/// What a run was asked to do, fixed when it starts; a resumed run must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    pub schema_version: u32,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub radlens_version: String,
    pub study: StudySource,
    pub models: Vec<ModelInfo>,
    pub capture: CaptureSettings,
    pub bootstrap: BootstrapSettings,
}

/// The study CSV as read: its name (never a server path), digest and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySource {
    pub csv_name: String,
    pub csv_sha256: String,
    pub rows: usize,
    pub studies: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name records refer to, e.g. `llava-1.5-7b`.
    pub name: String,
    /// `llava`, `llava_rad` or `gemma3`.
    pub architecture: String,
    pub dtype: String,
    pub device: String,
    pub num_layers: usize,
    pub num_heads: usize,
    /// The image-token grid of its maps.
    pub grid_h: usize,
    pub grid_w: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureSettings {
    pub layer_range: LayerRange,
    pub head_fusion: HeadFusion,
    pub query_mode: QueryMode,
    pub max_new_tokens: u32,
    /// Side of the common grid that cross-model comparisons resample onto.
    pub common_grid: usize,
    /// Whether a text-only pass with a blank image is run for image reliance.
    pub blank_image_pass: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSettings {
    pub resamples: u32,
    pub seed: u64,
    /// The resampling unit: `study` (or `subject` when the data has one).
    pub unit: String,
}

/// One (sample, model): the question, what the model said, and the map of where it looked.
/// A failed case is a record too, with `error` set: nothing is lost, and the run goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub schema_version: u32,
    /// `<study_id>#<variant_index>`: unique within a study CSV.
    pub sample_id: String,
    pub study_id: String,
    /// 1-based line of the study CSV this sample came from.
    pub csv_line: usize,
    pub variant_index: u32,
    pub strategy: String,
    /// `+1` same meaning as the base question, `-1` negated.
    pub polarity: i8,
    pub model: String,
    /// The image file name, relative to the run's image folder.
    pub image: String,
    pub question: String,
    pub ground_truth: Option<Answer>,
    pub answer_text: Option<String>,
    pub parsed_answer: Option<Answer>,
    pub correct: Option<bool>,
    /// `logit(yes) - logit(no)` at the first answer position.
    pub yes_no_margin: Option<f64>,
    /// The answer with the image replaced by a blank one (text-only pass), when run.
    pub blank_image_answer: Option<Answer>,
    pub latency: Latency,
    pub map: Option<MapRecord>,
    pub error: Option<CaseError>,
}

/// Milliseconds spent in each stage of one case.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub preprocess_ms: f64,
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
    pub tensor: TensorRef,
}

/// A tensor inside the run directory: a file relative to the run and a tensor name in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorRef {
    pub file: String,
    pub key: String,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseError {
    pub stage: ErrorStage,
    pub message: String,
}

/// One study (an image with its question variants) for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySummary {
    pub study_id: String,
    pub model: String,
    pub variants: usize,
    pub correct: usize,
    pub errors: usize,
    /// Polarity-adjusted answers all equal (studies with >= 2 answered variants).
    pub fully_consistent: Option<bool>,
    /// Rephrasings whose polarity-adjusted answer differs from the base's.
    pub flips: usize,
    /// Mean pairwise `1 - js_distance` of the variants' maps.
    pub map_consistency: Option<f64>,
}

/// The study's statistics with their cluster-bootstrap intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub schema_version: u32,
    pub run_id: String,
    pub bootstrap: BootstrapSettings,
    pub models: Vec<ModelAnalysis>,
    pub studies: Vec<StudySummary>,
    /// Paired comparisons of every two models on the rows both answered.
    pub comparisons: Vec<ModelComparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelComparison {
    pub model_a: String,
    pub model_b: String,
    /// Accuracy of A minus accuracy of B on the paired rows.
    pub accuracy_difference: f64,
    pub mcnemar: McNemar,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAnalysis {
    pub model: String,
    pub rows: usize,
    pub errors: usize,
    pub accuracy: Option<Interval>,
    pub flip_rate: Option<Interval>,
    pub flip_rate_by_strategy: BTreeMap<String, Interval>,
    pub full_consistency: Option<Interval>,
    /// `cs_k` for k = 1, 2, ...
    pub cs_k: BTreeMap<u32, Interval>,
    pub image_reliance: Option<Interval>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_another_schema_version_are_refused() {
        assert!(check_version(SCHEMA_VERSION).is_ok());
        assert!(check_version(SCHEMA_VERSION + 1).unwrap_err().to_string().contains("schema version"));
    }
}
