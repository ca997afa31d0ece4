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
    fn maps_compare_by_rank_on_one_grid() {
        let a = AttentionMap::new(1, 3, vec![1.0, 2.0, 3.0]).unwrap();
        let b = AttentionMap::new(1, 3, vec![10.0, 20.0, 31.0]).unwrap();
        assert_eq!(map_spearman(&a, &b).unwrap(), Some(1.0));
        let flat = AttentionMap::new(1, 3, vec![1.0; 3]).unwrap();
        assert_eq!(map_spearman(&a, &flat).unwrap(), None);
        assert!(map_spearman(&a, &AttentionMap::new(3, 1, vec![1.0; 3]).unwrap()).is_err());
    }
}
