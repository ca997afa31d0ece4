//! What to capture for a case, decided once before any forward.
//!
//! A [`CaseSpec`] is the user's choice as typed values (from the CLI's flags, a server job or
//! compare's fixed settings). [`CasePlan::resolve`] settles it against one model: it is the only
//! place where a layer range becomes capture sites, where query rows become sequence positions,
//! where a [`CapturePolicy`] is built and where a map's provenance is written.

use radlens_shared::fusion::{HeadFusion, LayerRange, MapMethod, MapProvenance, QueryMode, term_positions};
use radlens_shared::geometry::MapGeometry;
use radlens_shared::record::{GroundingSettings, TrustSettings};
use radlens_shared::site::SiteName;

use super::CaseError;
use crate::models::ModelSummary;
use crate::models::probe::{CapturePolicy, RowSelection};
use crate::models::processor::EncodedPrompt;
use crate::models::processor::tokenizer::TextTokenizer;

/// How a case is run and what its map is made of, as the user asked.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseSpec {
    pub layers: LayerRange,
    pub head_fusion: HeadFusion,
    pub query: QueryMode,
    pub max_new_tokens: usize,
    /// Grad-CAM, deletion tests, sinks and the relative map (opt-in: each costs passes).
    pub trust: Option<TrustSettings>,
    /// The occlusion reference map, box controls and box score (opt-in: `g^2` forwards).
    pub grounding: Option<GroundingSettings>,
}

impl CaseSpec {
    /// The map every command makes unless told otherwise: the last quarter of the layers, the
    /// mean over heads, the last prompt row.
    pub fn standard(max_new_tokens: usize) -> Self {
        Self {
            layers: LayerRange::LastQuarter,
            head_fusion: HeadFusion::Mean,
            query: QueryMode::Query,
            max_new_tokens,
            trust: None,
            grounding: None,
        }
    }
}

/// What the forward keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Nothing (a pass that only needs the answer, e.g. the blank image).
    Nothing,
    /// The plan's layers at its query rows: what the map is fused from.
    Map,
    /// Every layer, every prompt query row the map needs and every decode step (`probe --dump`,
    /// which writes the reference tensors).
    EveryLayer,
}

/// The query rows of one prompt: the rows a `term:` query names (empty otherwise), and the last
/// prompt position, which predicts the first answer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRows {
    pub term: Vec<usize>,
    pub last: usize,
}

impl QueryRows {
    /// A prompt of `prompt_len` tokens read at its last row only (no term).
    pub fn last_row(prompt_len: usize) -> Self {
        Self { term: Vec::new(), last: last_prompt_row(prompt_len) }
    }
}

/// A [`CaseSpec`] resolved against one model.
#[derive(Debug, Clone, PartialEq)]
pub struct CasePlan {
    pub spec: CaseSpec,
    /// The model's name as provenance and records carry it.
    pub model: String,
    /// The layer range resolved: ascending, distinct, in range.
    pub layers: Vec<usize>,
    pub num_layers: usize,
    pub num_heads: usize,
}

impl CasePlan {
    pub fn resolve(spec: CaseSpec, model: &str, summary: &ModelSummary) -> Result<Self, CaseError> {
        let layers = spec.layers.resolve(summary.num_layers).map_err(|e| CaseError::Plan(e.to_string()))?;
        Ok(Self { spec, model: model.to_string(), layers, num_layers: summary.num_layers, num_heads: summary.num_heads })
    }

    /// The capture sites the map reads: one attention pattern per planned layer.
    pub fn sites(&self) -> Vec<SiteName> {
        self.layers.iter().map(|&l| SiteName::text_attn(l)).collect()
    }

    /// The query rows of `prompt`. A `term:` query whose word the prompt does not spell is an
    /// error naming the word.
    pub fn query_rows(&self, prompt: &EncodedPrompt, tokenizer: &TextTokenizer) -> Result<QueryRows, CaseError> {
        let last = last_prompt_row(prompt.input_ids.len());
        let term = match &self.spec.query {
            QueryMode::Term(word) => {
                let pieces = tokenizer.pieces(&prompt.input_ids);
                let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
                let rows = term_positions(&refs, word);
                if rows.is_empty() {
                    return Err(CaseError::TermNotFound(word.clone()));
                }
                rows
            }
            _ => Vec::new(),
        };
        Ok(QueryRows { term, last })
    }

    /// The probe's policy for a prompt of `rows.last + 1` tokens.
    pub fn policy(&self, rows: &QueryRows, capture: Capture) -> CapturePolicy {
        let layers = match capture {
            Capture::Nothing => Vec::new(),
            Capture::Map => self.layers.clone(),
            Capture::EveryLayer => (0..self.num_layers).collect(),
        };
        CapturePolicy {
            layers,
            rows: RowSelection {
                prompt_positions: [rows.term.clone(), vec![rows.last]].concat(),
                decode_steps: capture == Capture::EveryLayer || self.spec.query == QueryMode::Answer,
            },
            prompt_len: rows.last + 1,
        }
    }

    /// The policy of a prompt's last row alone over the planned layers (the generic prompt's
    /// map, which sinks and the relative map compare against).
    pub fn last_row_policy(&self, prompt_len: usize) -> CapturePolicy {
        self.policy(&QueryRows::last_row(prompt_len), Capture::Map)
    }

    /// The rows the map averages, once the answer is known: the last prompt row (`query`); the
    /// rows that produced each answer token, EOS excluded (`answer`: positions `L-1 .. L-2+n`);
    /// or the term's rows.
    pub fn query_positions(&self, rows: &QueryRows, answer_tokens: usize) -> Vec<usize> {
        match &self.spec.query {
            QueryMode::Query => vec![rows.last],
            QueryMode::Answer => (0..answer_tokens.max(1)).map(|k| rows.last + k).collect(),
            QueryMode::Term(_) => rows.term.clone(),
        }
    }

    /// Whether a shared prompt prefix of `len` tokens can stand in for the full prefill: the rows
    /// a map needs inside the prefix were never captured there.
    pub fn prefix_usable(&self, rows: &QueryRows, len: usize) -> bool {
        rows.term.iter().all(|&p| p >= len)
    }

    /// The attention map's provenance (and the base of every map derived from it).
    pub fn provenance(
        &self,
        geometry: MapGeometry,
        query_positions: &[usize],
        layers_used: Vec<usize>,
        layers_without_image: Vec<usize>,
    ) -> MapProvenance {
        MapProvenance {
            model: self.model.clone(),
            method: MapMethod::QueryToVisual,
            layer_range: self.spec.layers.clone(),
            layers: layers_used,
            head_fusion: self.spec.head_fusion,
            query_mode: self.spec.query.clone(),
            query_positions: query_positions.to_vec(),
            layers_without_image,
            geometry,
            site: None,
            fallback_reason: None,
        }
    }
}

/// The position of a prompt's last token: its row predicts the first answer token.
pub fn last_prompt_row(prompt_len: usize) -> usize {
    prompt_len.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;

    fn summary(num_layers: usize) -> ModelSummary {
        ModelSummary {
            architecture: "llava",
            num_layers,
            num_heads: 4,
            grid_h: 2,
            grid_w: 2,
            image_token_id: 7,
            image_tokens: 4,
            dtype: DType::F32,
        }
    }

    /// 34-layer MedGemma: the last quarter is layers 25..=33, nine layers, for every command
    /// (the bench once cut its own eight).
    #[test]
    fn the_last_quarter_of_medgemma_is_nine_layers() {
        let plan = CasePlan::resolve(CaseSpec::standard(8), "m", &summary(34)).unwrap();
        assert_eq!(plan.layers, (25..34).collect::<Vec<_>>());
        assert_eq!(plan.sites()[0].to_string(), "text.blocks.25.attn.pattern");
    }

    #[test]
    fn a_layer_out_of_range_is_a_plan_error_naming_it() {
        let spec = CaseSpec { layers: LayerRange::List(vec![1, 40]), ..CaseSpec::standard(8) };
        let err = CasePlan::resolve(spec, "m", &summary(32)).unwrap_err().to_string();
        assert!(err.contains("layer 40"), "{err}");
    }

    #[test]
    fn policies_keep_the_planned_layers_and_rows_only() {
        let plan = CasePlan::resolve(CaseSpec::standard(8), "m", &summary(8)).unwrap();
        let rows = QueryRows { term: Vec::new(), last: 9 };
        let p = plan.policy(&rows, Capture::Map);
        assert_eq!((p.layers, p.rows.prompt_positions, p.rows.decode_steps, p.prompt_len), (vec![6, 7], vec![9], false, 10));
        assert!(plan.policy(&rows, Capture::Nothing).layers.is_empty());
        let all = plan.policy(&rows, Capture::EveryLayer);
        assert_eq!((all.layers.len(), all.rows.decode_steps), (8, true));
        let answer = CasePlan::resolve(CaseSpec { query: QueryMode::Answer, ..CaseSpec::standard(8) }, "m", &summary(8)).unwrap();
        assert!(answer.policy(&rows, Capture::Map).rows.decode_steps);
        assert_eq!(answer.query_positions(&rows, 3), vec![9, 10, 11]);
        assert_eq!(answer.query_positions(&rows, 0), vec![9], "an empty answer still has the row that produced EOS");
    }

    #[test]
    fn a_prefix_that_hides_a_term_row_is_not_usable() {
        let plan = CasePlan::resolve(CaseSpec::standard(8), "m", &summary(8)).unwrap();
        let rows = QueryRows { term: vec![3, 4], last: 9 };
        assert!(plan.prefix_usable(&rows, 3));
        assert!(!plan.prefix_usable(&rows, 4));
    }
}
