//! G6: image conditions. Each row can be re-run with its image replaced (blank, another study's
//! image, its box or a control box filled, a null edit); these are the per-model shares over
//! those runs, each from per-study parts for [`crate::stats::cluster_bootstrap`]. No golden
//! values: they are plain shares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::answer::Answer;
use crate::stats::robustness::{ClusterRatio, merge_clusters, ratio};

/// The image a row was run with (grounding.md G6's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageCondition {
    Real,
    /// metrics.md's blank image (the text-only pass); no truth.
    Blank,
    /// Another study's image with the same finding and the opposite truth; truth: the swapped
    /// study's.
    SwapOpposite,
    /// Likewise with the same truth; truth: this row's.
    SwapSame,
    /// The radiologist box filled with the per-channel mean of the original.
    RoiOccluded,
    /// The first G2 control box filled the same way.
    ControlOccluded,
    Jpeg90,
    Contrast90,
    /// radlens' own, beyond the spec: the row's confound box (a known shortcut region, e.g. a
    /// burned-in marker) filled the same way; truth: the row's.
    ConfoundOccluded,
    /// radlens' own (issue 21): a multi-image row with its prior image replaced by the blank
    /// image, the current image kept; truth: the row's. Rows without a prior are not run.
    PriorBlank,
    /// radlens' own (issue 21): a multi-image row with its prior image replaced by another
    /// study's prior (the swap partner rule: same finding, another subject, the opposite truth
    /// where one exists, else the same), the current image kept; no truth (the change asked
    /// about is between two patients' images). Does the answer about change follow the prior?
    PriorSwap,
}

impl ImageCondition {
    /// The spec's name (`blank`, `swap_opposite`, ...), as `--conditions` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ImageCondition::Real => "real",
            ImageCondition::Blank => "blank",
            ImageCondition::SwapOpposite => "swap_opposite",
            ImageCondition::SwapSame => "swap_same",
            ImageCondition::RoiOccluded => "roi_occluded",
            ImageCondition::ControlOccluded => "control_occluded",
            ImageCondition::Jpeg90 => "jpeg90",
            ImageCondition::Contrast90 => "contrast90",
            ImageCondition::ConfoundOccluded => "confound_occluded",
            ImageCondition::PriorBlank => "prior_blank",
            ImageCondition::PriorSwap => "prior_swap",
        }
    }

    /// Whether the condition needs a row with several images (only such rows run it).
    pub fn needs_prior(self) -> bool {
        matches!(self, ImageCondition::PriorBlank | ImageCondition::PriorSwap)
    }

    pub const ALL: [ImageCondition; 11] = [
        ImageCondition::Real,
        ImageCondition::Blank,
        ImageCondition::SwapOpposite,
        ImageCondition::SwapSame,
        ImageCondition::RoiOccluded,
        ImageCondition::ControlOccluded,
        ImageCondition::Jpeg90,
        ImageCondition::Contrast90,
        ImageCondition::ConfoundOccluded,
        ImageCondition::PriorBlank,
        ImageCondition::PriorSwap,
    ];
}

/// One row's answer under one condition, next to what G6 compares it with.
/// `roi_occluded` and `control_occluded`: the pixels whose centres lie in `fill` (original
/// pixels, `[x0, x1) x [y0, y1)`) set to the image's per-channel mean (over the whole image,
/// rounded half to even), the rest unchanged. `pixels` are 8-bit, interleaved, `width * height *
/// channels` of them.
pub fn fill_box(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    fill: &crate::geometry::PixelBox,
) -> Result<Vec<u8>, MetricError> {
    let n = width.checked_mul(height).and_then(|n| n.checked_mul(channels));
    if n != Some(pixels.len()) || pixels.is_empty() {
        return Err(MetricError::Invalid(format!(
            "an image of {width} x {height} x {channels} channels cannot hold {} bytes",
            pixels.len()
        )));
    }
    let mut sums = vec![0u64; channels];
    for px in pixels.chunks_exact(channels) {
        for (s, &v) in sums.iter_mut().zip(px) {
            *s += u64::from(v);
        }
    }
    let count = (width * height) as f64;
    let mean: Vec<u8> = sums.iter().map(|&s| (s as f64 / count).round_ties_even().clamp(0.0, 255.0) as u8).collect();
    let mut out = pixels.to_vec();
    for y in 0..height {
        let cy = y as f64 + 0.5;
        if cy < fill.y0 || cy >= fill.y1 {
            continue;
        }
        for x in 0..width {
            let cx = x as f64 + 0.5;
            if cx >= fill.x0 && cx < fill.x1 {
                let i = (y * width + x) * channels;
                out[i..i + channels].copy_from_slice(&mean);
            }
        }
    }
    Ok(out)
}

impl std::fmt::Display for ImageCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ImageCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageCondition::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ImageCondition::ALL.iter().map(|c| c.name()).collect();
            format!("{s:?} is not an image condition (one of: {})", names.join(", "))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionRow {
    /// The row (sample) this is a run of; joins a row's conditions.
    pub row_id: String,
    pub study_id: String,
    pub condition: ImageCondition,
    /// The parsed answer under `condition` (unknown is a value of its own).
    pub answer: Answer,
    /// The same row's parsed answer under `real`.
    pub real_answer: Answer,
    /// The truth under `condition` (the table's "truth" column); `None` for `blank`.
    pub truth: Option<Answer>,
    /// This row's own truth (its `real` truth), for `visual_reliance`.
    pub real_truth: Option<Answer>,
}

fn parts_by_study<'a>(rows: impl Iterator<Item = &'a ConditionRow>, hit: impl Fn(&ConditionRow) -> Option<bool>) -> Vec<ClusterRatio> {
    let parts: Vec<ClusterRatio> = rows
        .map(|r| match hit(r) {
            Some(h) => ClusterRatio::new(&r.study_id, f64::from(u8::from(h)), 1.0),
            None => ClusterRatio::new(&r.study_id, 0.0, 0.0),
        })
        .collect();
    merge_clusters(&parts)
}

fn of(rows: &[ConditionRow], condition: ImageCondition) -> impl Iterator<Item = &ConditionRow> {
    rows.iter().filter(move |r| r.condition == condition)
}

/// `answer_agreement` parts: rows of `condition` whose answer equals their `real` answer.
pub fn answer_agreement_parts(rows: &[ConditionRow], condition: ImageCondition) -> Vec<ClusterRatio> {
    parts_by_study(of(rows, condition), |r| Some(r.answer == r.real_answer))
}

/// `accuracy` parts: rows of `condition` with a yes/no truth whose answer equals it.
pub fn accuracy_parts(rows: &[ConditionRow], condition: ImageCondition) -> Vec<ClusterRatio> {
    parts_by_study(of(rows, condition), |r| match r.truth {
        Some(t @ (Answer::Yes | Answer::No)) => Some(r.answer == t),
        _ => None,
    })
}

/// `image_sensitivity` parts: `blank` rows whose answer differs from the `real` one (so the
/// share is `1 - answer_agreement(blank)`).
pub fn image_sensitivity_parts(rows: &[ConditionRow]) -> Vec<ClusterRatio> {
    parts_by_study(of(rows, ImageCondition::Blank), |r| Some(r.answer != r.real_answer))
}

/// Parts of the second term of `visual_reliance`: `blank` rows (with a yes/no real truth)
/// whose answer equals the real truth.
pub fn blank_accuracy_parts(rows: &[ConditionRow]) -> Vec<ClusterRatio> {
    parts_by_study(of(rows, ImageCondition::Blank), |r| match r.real_truth {
        Some(t @ (Answer::Yes | Answer::No)) => Some(r.answer == t),
        _ => None,
    })
}

/// Boxed rows (rows with a `roi_occluded` run) that also have a `control_occluded` run: each
/// row's (study, changed under roi_occluded, changed under control_occluded).
fn boxed(rows: &[ConditionRow]) -> Result<Vec<(&str, bool, bool)>, MetricError> {
    let mut by_row: BTreeMap<&str, (Option<&ConditionRow>, Option<&ConditionRow>)> = BTreeMap::new();
    for r in rows {
        let slot = by_row.entry(r.row_id.as_str()).or_default();
        let place = match r.condition {
            ImageCondition::RoiOccluded => &mut slot.0,
            ImageCondition::ControlOccluded => &mut slot.1,
            _ => continue,
        };
        if place.replace(r).is_some() {
            return Err(MetricError::Invalid(format!("row {} has two {:?} runs", r.row_id, r.condition)));
        }
    }
    Ok(by_row
        .into_values()
        .filter_map(|(roi, control)| {
            let (roi, control) = (roi?, control?);
            Some((roi.study_id.as_str(), roi.answer != roi.real_answer, control.answer != control.real_answer))
        })
        .collect())
}

/// `causal_grounding_rate` parts: boxed rows whose answer changes under `roi_occluded` but not
/// under `control_occluded`, over boxed rows with both runs (a row without a control box has no
/// `control_occluded` run and is not counted).
pub fn causal_grounding_parts(rows: &[ConditionRow]) -> Result<Vec<ClusterRatio>, MetricError> {
    let parts: Vec<ClusterRatio> =
        boxed(rows)?.into_iter().map(|(s, roi, control)| ClusterRatio::new(s, f64::from(u8::from(roi && !control)), 1.0)).collect();
    Ok(merge_clusters(&parts))
}

/// `control_change_rate` parts: the same rows, those whose answer changes under `control_occluded`.
pub fn control_change_parts(rows: &[ConditionRow]) -> Result<Vec<ClusterRatio>, MetricError> {
    let parts: Vec<ClusterRatio> =
        boxed(rows)?.into_iter().map(|(s, _, control)| ClusterRatio::new(s, f64::from(u8::from(control)), 1.0)).collect();
    Ok(merge_clusters(&parts))
}

/// `confound_change_rate` parts: rows with a `confound_occluded` run whose answer differs from
/// the real one (so the share is `1 - answer_agreement(confound_occluded)`).
pub fn confound_change_parts(rows: &[ConditionRow]) -> Vec<ClusterRatio> {
    parts_by_study(of(rows, ImageCondition::ConfoundOccluded), |r| Some(r.answer != r.real_answer))
}

/// Change-rate parts of one condition: its rows whose answer differs from the real one (so the
/// share is `1 - answer_agreement(condition)`): `prior_blank_change_rate`,
/// `prior_swap_change_rate`.
pub fn change_parts(rows: &[ConditionRow], condition: ImageCondition) -> Vec<ClusterRatio> {
    parts_by_study(of(rows, condition), |r| Some(r.answer != r.real_answer))
}

/// `answer_agreement` and `accuracy` of one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionFigures {
    pub condition: ImageCondition,
    pub rows: usize,
    pub answer_agreement: Option<f64>,
    /// `None` where the condition has no truth (`blank`).
    pub accuracy: Option<f64>,
}

/// One model's G6 figures (point estimates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConditionSummary {
    /// The conditions present, in [`ImageCondition::ALL`] order.
    pub conditions: Vec<ConditionFigures>,
    /// `1 - answer_agreement(blank)`.
    pub image_sensitivity: Option<f64>,
    /// `accuracy(real) - share of blank rows whose answer equals the real truth`.
    pub visual_reliance: Option<f64>,
    /// `accuracy(swap_opposite)`: how often the answer follows the swapped image's truth.
    pub swap_following: Option<f64>,
    pub causal_grounding_rate: Option<f64>,
    pub control_change_rate: Option<f64>,
    /// Rows whose answer changes when their confound box is hidden.
    pub confound_change_rate: Option<f64>,
    /// Rows whose answer changes when their prior is blank, or another study's.
    pub prior_blank_change_rate: Option<f64>,
    pub prior_swap_change_rate: Option<f64>,
}

pub fn image_condition_summary(rows: &[ConditionRow]) -> Result<ImageConditionSummary, MetricError> {
    let conditions = ImageCondition::ALL
        .iter()
        .filter_map(|&c| {
            let n = of(rows, c).count();
            (n > 0).then(|| ConditionFigures {
                condition: c,
                rows: n,
                answer_agreement: ratio(&answer_agreement_parts(rows, c)),
                accuracy: ratio(&accuracy_parts(rows, c)),
            })
        })
        .collect();
    let real_accuracy = ratio(&accuracy_parts(rows, ImageCondition::Real));
    let blank_accuracy = ratio(&blank_accuracy_parts(rows));
    Ok(ImageConditionSummary {
        conditions,
        image_sensitivity: ratio(&image_sensitivity_parts(rows)),
        visual_reliance: real_accuracy.zip(blank_accuracy).map(|(a, b)| a - b),
        swap_following: ratio(&accuracy_parts(rows, ImageCondition::SwapOpposite)),
        causal_grounding_rate: ratio(&causal_grounding_parts(rows)?),
        control_change_rate: ratio(&control_change_parts(rows)?),
        confound_change_rate: ratio(&confound_change_parts(rows)),
        prior_blank_change_rate: ratio(&change_parts(rows, ImageCondition::PriorBlank)),
        prior_swap_change_rate: ratio(&change_parts(rows, ImageCondition::PriorSwap)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Answer::{No, Unknown, Yes};
    use ImageCondition::*;

    fn row(id: &str, study: &str, condition: ImageCondition, answer: Answer, real: Answer, truth: Option<Answer>) -> ConditionRow {
        ConditionRow {
            row_id: id.to_owned(),
            study_id: study.to_owned(),
            condition,
            answer,
            real_answer: real,
            truth,
            real_truth: Some(Yes),
        }
    }

    #[test]
    fn a_filled_box_holds_the_channel_means_and_the_rest_is_unchanged() {
        use crate::geometry::PixelBox;
        // 4 x 2 gray + alpha: channel means 35 and 251.25 (stored as 251).
        let px: Vec<u8> = vec![0, 255, 10, 255, 20, 245, 30, 255, 40, 255, 50, 245, 60, 255, 70, 245];
        let fill = PixelBox { x0: 1.0, y0: 0.0, x1: 2.6, y1: 1.5 };
        let out = fill_box(&px, 4, 2, 2, &fill).unwrap();
        // Pixel centres 1.5 and 2.5 of row 0 (centre 0.5) are inside; row 1 (centre 1.5) is not.
        let mut want = px.clone();
        for x in [1, 2] {
            want[x * 2..x * 2 + 2].copy_from_slice(&[35, 251]);
        }
        assert_eq!(out, want);
        assert!(fill_box(&px, 3, 2, 2, &fill).is_err());
        // A box between pixel centres fills nothing.
        assert_eq!(fill_box(&px, 4, 2, 2, &PixelBox { x0: 1.6, y0: 0.0, x1: 2.4, y1: 2.0 }).unwrap(), px);
    }

    #[test]
    fn shares_over_conditions() {
        let rows = vec![
            row("a", "s1", Real, Yes, Yes, Some(Yes)),
            row("b", "s2", Real, No, No, Some(Yes)),
            // Unknown is its own value: it disagrees with the real "no".
            row("a", "s1", Blank, Yes, Yes, None),
            row("b", "s2", Blank, Unknown, No, None),
            row("a", "s1", SwapOpposite, No, Yes, Some(No)),
            row("b", "s2", SwapOpposite, No, No, Some(No)),
            row("a", "s1", RoiOccluded, No, Yes, Some(Yes)),
            row("a", "s1", ControlOccluded, Yes, Yes, Some(Yes)),
            row("b", "s2", RoiOccluded, Yes, No, Some(Yes)),
            row("b", "s2", ControlOccluded, Yes, No, Some(Yes)),
            // Hiding the confound changes a's answer, not b's.
            row("a", "s1", ConfoundOccluded, No, Yes, Some(Yes)),
            row("b", "s2", ConfoundOccluded, No, No, Some(Yes)),
            // Another study's prior changes b's answer; a blank prior changes nothing.
            row("a", "s1", PriorBlank, Yes, Yes, Some(Yes)),
            row("a", "s1", PriorSwap, Yes, Yes, None),
            row("b", "s2", PriorSwap, Yes, No, None),
        ];
        let s = image_condition_summary(&rows).unwrap();
        assert_eq!(s.conditions.len(), 8);
        assert_eq!(s.conditions[5].condition, ConfoundOccluded, "radlens' own conditions come last");
        assert_eq!(s.confound_change_rate, Some(0.5));
        assert_eq!((s.prior_blank_change_rate, s.prior_swap_change_rate), (Some(0.0), Some(0.5)));
        assert_eq!(s.conditions[7].accuracy, None, "prior_swap has no truth");
        assert_eq!(s.conditions[1].condition, Blank);
        assert_eq!((s.conditions[1].answer_agreement, s.conditions[1].accuracy), (Some(0.5), None));
        assert_eq!(s.image_sensitivity, Some(0.5));
        // accuracy(real) 1/2 minus blank answers equal to the real truth (yes) 1/2.
        assert_eq!(s.visual_reliance, Some(0.0));
        assert_eq!(s.swap_following, Some(1.0));
        assert_eq!(s.causal_grounding_rate, Some(0.5));
        assert_eq!(s.control_change_rate, Some(0.5));
    }

    #[test]
    fn no_runs_no_values_and_duplicates_are_errors() {
        let s = image_condition_summary(&[]).unwrap();
        assert!(s.conditions.is_empty());
        assert_eq!((s.image_sensitivity, s.visual_reliance, s.causal_grounding_rate), (None, None, None));
        assert_eq!(s.confound_change_rate, None);
        let dup = vec![row("a", "s1", RoiOccluded, No, Yes, None), row("a", "s1", RoiOccluded, No, Yes, None)];
        assert!(image_condition_summary(&dup).is_err());
        // A boxed row without a control run is not counted.
        let lone = vec![row("a", "s1", RoiOccluded, No, Yes, None)];
        assert_eq!(image_condition_summary(&lone).unwrap().causal_grounding_rate, None);
    }
}
