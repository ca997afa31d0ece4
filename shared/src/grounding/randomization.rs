//! G5: the model-randomisation sanity check (Adebayo et al., NeurIPS 2018). Cascading from the
//! top, step `k` re-draws the top `k` language-model layers, and the `vision` step also the
//! vision tower; a map that barely changes is not explaining the weights. The re-drawing is the
//! backend's; here are the comparison and the flag.

use serde::{Deserialize, Serialize};

use super::rank::spearman;
use crate::MetricError;
use crate::map::AttentionMap;

/// A map still above this Spearman after all LM layers are re-drawn is insensitive.
pub const INSENSITIVE_SPEARMAN: f64 = 0.5;

/// Spearman's rho of two maps on the same grid (normalised first; ranks are scale-free anyway).
/// `None` when either map is constant.
pub fn map_spearman(original: &AttentionMap, randomised: &AttentionMap) -> Result<Option<f64>, MetricError> {
    if (original.h, original.w) != (randomised.h, randomised.w) {
        return Err(MetricError::GridsDiffer { a_h: original.h, a_w: original.w, b_h: randomised.h, b_w: randomised.w });
    }
    spearman(&original.normalized()?, &randomised.normalized()?)
}

/// One step of the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CascadeStep {
    /// The top `k` language-model layers re-drawn.
    Layers(u32),
    /// All language-model layers and the vision tower re-drawn.
    Vision,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CascadePoint {
    pub step: CascadeStep,
    /// Mean over the check's inputs of [`map_spearman`], `None` where no input had a value.
    pub spearman: Option<f64>,
}

/// One model's cascade curve, in step order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomizationCurve {
    /// The model's number of language-model layers.
    pub lm_layers: u32,
    pub points: Vec<CascadePoint>,
}

/// One step's Spearman per sampled input (`None` where an input had no value: a constant map,
/// or a map that could not be made, see the run's notes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeStepValues {
    pub step: CascadeStep,
    pub spearman: Vec<Option<f64>>,
}

/// How a run asked for the check (`radlens study --randomization N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomizationSettings {
    /// Records sampled per model.
    pub samples: usize,
    /// Seeds the sample and the re-draws.
    pub seed: u64,
}

/// One model's randomisation check as a run directory keeps it (`randomization.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRandomization {
    pub model: String,
    pub settings: RandomizationSettings,
    /// The sampled records, in the order of each step's values.
    pub sample_ids: Vec<String>,
    pub steps: Vec<CascadeStepValues>,
    pub curve: RandomizationCurve,
    /// [`RandomizationCurve::insensitive`].
    pub insensitive: Option<bool>,
    /// What could not be computed, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ModelRandomization {
    /// The record of a finished cascade: the curve is the per-step mean over the inputs.
    pub fn new(
        model: String,
        settings: RandomizationSettings,
        lm_layers: u32,
        sample_ids: Vec<String>,
        steps: Vec<CascadeStepValues>,
        notes: Vec<String>,
    ) -> Self {
        let curve = RandomizationCurve {
            lm_layers,
            points: steps.iter().map(|s| CascadePoint { step: s.step, spearman: mean_of_present(&s.spearman) }).collect(),
        };
        let insensitive = curve.insensitive();
        Self { model, settings, sample_ids, steps, curve, insensitive, notes }
    }
}

impl ModelRandomization {
    /// The checks of one model run by several shards of a study, as one: each shard sampled its
    /// own rows, so the inputs are all the shards' samples together and the curve their per-step
    /// mean. The settings stay the shards' (the per-shard request). Errors: no part, parts of
    /// other models, seeds or cascades.
    pub fn merged(parts: &[ModelRandomization]) -> Result<ModelRandomization, MetricError> {
        let first = parts.first().ok_or_else(|| MetricError::Invalid("no randomisation check to merge".into()))?;
        let steps_of = |m: &ModelRandomization| m.steps.iter().map(|s| s.step).collect::<Vec<_>>();
        for p in &parts[1..] {
            if p.model != first.model || p.settings.seed != first.settings.seed || steps_of(p) != steps_of(first) {
                return Err(MetricError::Invalid(format!(
                    "cannot merge the randomisation checks of {} (seed {}, {} steps) and {} (seed {}, {} steps)",
                    first.model,
                    first.settings.seed,
                    first.steps.len(),
                    p.model,
                    p.settings.seed,
                    p.steps.len()
                )));
            }
        }
        let sample_ids: Vec<String> = parts.iter().flat_map(|p| p.sample_ids.iter().cloned()).collect();
        let steps = first
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| CascadeStepValues {
                step: s.step,
                spearman: parts.iter().flat_map(|p| p.steps[i].spearman.iter().copied()).collect(),
            })
            .collect();
        let mut notes: Vec<String> = parts.iter().flat_map(|p| p.notes.iter().cloned()).collect();
        if parts.len() > 1 {
            notes.push(format!(
                "merged from {} shards, each sampling up to {} of its own rows: {} inputs in all",
                parts.len(),
                first.settings.samples,
                sample_ids.len()
            ));
        }
        Ok(ModelRandomization::new(first.model.clone(), first.settings, first.curve.lm_layers, sample_ids, steps, notes))
    }
}

/// The mean of the present values; `None` when there is none.
fn mean_of_present(values: &[Option<f64>]) -> Option<f64> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
}

/// The cascade's steps for a model of `lm_layers` language-model layers: the top 1, 2, 4, ...
/// layers (doubling, always ending with all of them), then the vision tower.
pub fn cascade_steps(lm_layers: u32) -> Vec<CascadeStep> {
    let mut steps = Vec::new();
    let mut k = 1;
    while k < lm_layers {
        steps.push(CascadeStep::Layers(k));
        k *= 2;
    }
    steps.push(CascadeStep::Layers(lm_layers));
    steps.push(CascadeStep::Vision);
    steps
}

impl std::fmt::Display for CascadeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CascadeStep::Layers(k) => write!(f, "top {k}"),
            CascadeStep::Vision => f.write_str("+ vision"),
        }
    }
}

impl RandomizationCurve {
    /// The steps taken after all LM layers are re-drawn: `Layers(k >= lm_layers)` and `Vision`.
    pub fn after_all_lm_layers(&self) -> impl Iterator<Item = &CascadePoint> {
        self.points.iter().filter(move |p| match p.step {
            CascadeStep::Layers(k) => k >= self.lm_layers,
            CascadeStep::Vision => true,
        })
    }

    /// "Maps insensitive to the weights": every step after all LM layers are re-drawn keeps
    /// the Spearman above 0.5 (a step without a value does not). `None` when the curve has no
    /// such step (the cascade stopped early): not judged.
    pub fn insensitive(&self) -> Option<bool> {
        let mut steps = self.after_all_lm_layers().peekable();
        steps.peek()?;
        Some(steps.all(|p| p.spearman.is_some_and(|r| r > INSENSITIVE_SPEARMAN)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(CascadeStep, Option<f64>)]) -> RandomizationCurve {
        RandomizationCurve { lm_layers: 2, points: points.iter().map(|&(step, spearman)| CascadePoint { step, spearman }).collect() }
    }

    #[test]
    fn only_the_steps_after_all_lm_layers_decide() {
        use CascadeStep::{Layers, Vision};
        assert_eq!(curve(&[(Layers(1), Some(0.1)), (Layers(2), Some(0.8)), (Vision, Some(0.6))]).insensitive(), Some(true));
        assert_eq!(curve(&[(Layers(1), Some(0.9)), (Layers(2), Some(0.8)), (Vision, Some(0.4))]).insensitive(), Some(false));
        assert_eq!(curve(&[(Layers(2), None)]).insensitive(), Some(false));
        assert_eq!(curve(&[(Layers(1), Some(0.9))]).insensitive(), None);
    }

    #[test]
    fn the_cascade_doubles_up_to_every_layer_then_adds_the_tower() {
        use CascadeStep::{Layers, Vision};
        assert_eq!(cascade_steps(1), vec![Layers(1), Vision]);
        assert_eq!(cascade_steps(2), vec![Layers(1), Layers(2), Vision]);
        assert_eq!(cascade_steps(34), vec![Layers(1), Layers(2), Layers(4), Layers(8), Layers(16), Layers(32), Layers(34), Vision]);
    }

    #[test]
    fn shard_checks_merge_into_one_curve_over_every_input() {
        use CascadeStep::{Layers, Vision};
        let settings = RandomizationSettings { samples: 2, seed: 3 };
        let part = |ids: [&str; 2], l1: [Option<f64>; 2], v: [Option<f64>; 2]| {
            let steps = vec![
                CascadeStepValues { step: Layers(1), spearman: l1.to_vec() },
                CascadeStepValues { step: Vision, spearman: v.to_vec() },
            ];
            ModelRandomization::new("m".into(), settings, 1, ids.map(String::from).to_vec(), steps, vec![])
        };
        let a = part(["s1#0", "s2#0"], [Some(0.9), Some(0.7)], [Some(0.1), None]);
        let b = part(["s3#0", "s4#1"], [Some(0.2), Some(0.4)], [Some(0.3), Some(0.5)]);
        let m = ModelRandomization::merged(&[a.clone(), b]).unwrap();
        assert_eq!(m.sample_ids, ["s1#0", "s2#0", "s3#0", "s4#1"]);
        assert_eq!(m.settings, settings, "the per-shard request");
        let means: Vec<Option<f64>> = m.curve.points.iter().map(|p| p.spearman).collect();
        assert!((means[0].unwrap() - 0.55).abs() < 1e-12 && (means[1].unwrap() - 0.3).abs() < 1e-12, "{means:?}");
        assert_eq!(m.insensitive, Some(false));
        assert!(m.notes.last().unwrap().contains("merged from 2 shards"));
        // One part is itself; another seed or model is refused.
        assert_eq!(ModelRandomization::merged(std::slice::from_ref(&a)).unwrap(), a);
        let other = ModelRandomization { settings: RandomizationSettings { samples: 2, seed: 4 }, ..a.clone() };
        assert!(ModelRandomization::merged(&[a, other]).is_err());
        assert!(ModelRandomization::merged(&[]).is_err());
    }

    #[test]
    fn a_models_curve_is_the_mean_of_present_values_and_carries_the_flag() {
        use CascadeStep::{Layers, Vision};
        let settings = RandomizationSettings { samples: 2, seed: 0 };
        let steps = vec![
            CascadeStepValues { step: Layers(1), spearman: vec![Some(0.9), Some(0.7)] },
            CascadeStepValues { step: Layers(2), spearman: vec![Some(0.6), None] },
            CascadeStepValues { step: Vision, spearman: vec![None, None] },
        ];
        let m = ModelRandomization::new("m".into(), settings, 2, vec!["a".into(), "b".into()], steps, vec![]);
        let means: Vec<Option<f64>> = m.curve.points.iter().map(|p| p.spearman).collect();
        assert!((means[0].unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(means[1..], [Some(0.6), None]);
        assert_eq!(m.insensitive, Some(false), "a step without a value does not count as insensitive");
    }

    #[test]
    fn maps_compare_by_rank_on_one_grid() {
        let a = AttentionMap::new(1, 3, vec![1.0, 2.0, 3.0]).unwrap();
        let b = AttentionMap::new(1, 3, vec![10.0, 20.0, 31.0]).unwrap();
        assert_eq!(map_spearman(&a, &b).unwrap(), Some(1.0));
        let flat = AttentionMap::new(1, 3, vec![1.0; 3]).unwrap();
        assert_eq!(map_spearman(&a, &flat).unwrap(), None);
        assert!(map_spearman(&a, &AttentionMap::new(3, 1, vec![1.0; 3]).unwrap()).is_err());
    }
}
