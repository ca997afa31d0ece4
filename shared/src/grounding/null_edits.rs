//! G4: null edits. How much does a map move when nothing meaningful changed (a JPEG re-encode,
//! a 10% contrast reduction), next to how much it moves when the question is reworded?
//!
//! [`contrast90`] is pure pixel math; `jpeg90` needs an encoder and lives in the backend.

use serde::{Deserialize, Serialize};

use crate::MetricError;
use crate::answer::Answer;
use crate::map::AttentionMap;
use crate::metrics::js_divergence_maps;

/// The contrast factor of `contrast90`.
pub const CONTRAST90_FACTOR: f64 = 0.9;

/// The null edits of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NullEdit {
    /// Re-encoded as baseline JPEG quality 90 and decoded.
    Jpeg90,
    /// [`contrast90`].
    Contrast90,
}

impl NullEdit {
    /// Every null edit, in the order runs make them.
    pub const ALL: [NullEdit; 2] = [NullEdit::Contrast90, NullEdit::Jpeg90];

    /// The spec's name (`contrast90`, `jpeg90`), as records spell it.
    pub fn name(self) -> &'static str {
        match self {
            NullEdit::Jpeg90 => "jpeg90",
            NullEdit::Contrast90 => "contrast90",
        }
    }
}

impl std::fmt::Display for NullEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Scales each channel's deviation from its mean by `factor`: `v' = clamp(round_half_even(mu +
/// factor (v - mu)), 0, 255)`, `mu` the channel's mean over the image in f64. `pixels` are 8-bit,
/// interleaved (`[row][column][channel]`), `width * height * channels` of them.
pub fn contrast(pixels: &[u8], width: usize, height: usize, channels: usize, factor: f64) -> Result<Vec<u8>, MetricError> {
    let n = width.checked_mul(height).and_then(|n| n.checked_mul(channels));
    if n != Some(pixels.len()) || pixels.is_empty() {
        return Err(MetricError::Invalid(format!(
            "an image of {width} x {height} x {channels} channels cannot hold {} bytes",
            pixels.len()
        )));
    }
    if !factor.is_finite() {
        return Err(MetricError::Invalid(format!("contrast factor {factor} is not finite")));
    }
    let mut sums = vec![0u64; channels];
    for px in pixels.chunks_exact(channels) {
        for (s, &v) in sums.iter_mut().zip(px) {
            *s += u64::from(v);
        }
    }
    // Integer sums are exact, so `mu` is the correctly rounded mean whatever the summation order.
    let count = (width * height) as f64;
    let mu: Vec<f64> = sums.iter().map(|&s| s as f64 / count).collect();
    Ok(pixels
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let m = mu[i % channels];
            (m + factor * (f64::from(v) - m)).round_ties_even().clamp(0.0, 255.0) as u8
        })
        .collect())
}

/// `contrast90` of grounding.md G4: [`contrast`] with factor 0.9.
pub fn contrast90(pixels: &[u8], width: usize, height: usize, channels: usize) -> Result<Vec<u8>, MetricError> {
    contrast(pixels, width, height, channels, CONTRAST90_FACTOR)
}

/// A record under one null edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullEditRecord {
    pub edit: NullEdit,
    pub answer_equal: bool,
    /// `m_edit - m`, when both margins are known.
    pub margin_delta: Option<f64>,
    /// JS distance (bits) between the record's map and the edited image's map (same grid).
    pub js_distance: f64,
}

/// The G4 figures of one record and edit.
pub fn null_edit_record(
    edit: NullEdit,
    (answer, margin, map): (Answer, Option<f64>, &AttentionMap),
    (edited_answer, edited_margin, edited_map): (Answer, Option<f64>, &AttentionMap),
) -> Result<NullEditRecord, MetricError> {
    Ok(NullEditRecord {
        edit,
        answer_equal: answer == edited_answer,
        margin_delta: margin.zip(edited_margin).map(|(m, e)| e - m),
        js_distance: js_divergence_maps(map, edited_map)?.sqrt(),
    })
}

/// One study's (and model's, and edit's) comparison of rewording with a null edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullEditStudy {
    pub edit: NullEdit,
    /// Mean JS distance between the base variant's map and each other variant's map; `None`
    /// with a single variant.
    pub paraphrase_js: Option<f64>,
    /// Mean JS distance between each variant's map and its edited map.
    pub null_js: f64,
    /// `paraphrase_js / null_js`; `None` when `null_js = 0` or there is no `paraphrase_js`.
    pub paraphrase_to_null: Option<f64>,
    /// `paraphrase_to_null < 1`: the maps move more under a null edit than under rewording.
    pub flagged: bool,
}

/// The G4 study figures from `maps[i]`, variant `i`'s map (`maps[0]` the base), and
/// `edited[i]`, its map under `edit`. All on one grid; at least one variant.
pub fn null_edit_study(edit: NullEdit, maps: &[AttentionMap], edited: &[AttentionMap]) -> Result<NullEditStudy, MetricError> {
    if maps.is_empty() {
        return Err(MetricError::TooFew { what: "null-edit study variants", needed: 1, got: 0 });
    }
    if maps.len() != edited.len() {
        return Err(MetricError::Invalid(format!("{} variant maps but {} edited maps", maps.len(), edited.len())));
    }
    let dist = |a: &AttentionMap, b: &AttentionMap| js_divergence_maps(a, b).map(f64::sqrt);
    let paraphrase: Vec<f64> = maps[1..].iter().map(|m| dist(&maps[0], m)).collect::<Result<_, _>>()?;
    let null: Vec<f64> = maps.iter().zip(edited).map(|(m, e)| dist(m, e)).collect::<Result<_, _>>()?;
    null_edit_study_from_distances(edit, &paraphrase, &null)
}

/// The G4 study figures from distances already measured: `paraphrase[i]`, the JS distance between
/// the base variant's map and variant `i + 1`'s; `null[j]`, the JS distance between variant `j`'s
/// map and its edited map (what each record keeps as [`NullEditRecord::js_distance`]). Run
/// directories keep the per-record distances, so the analysis and the dashboard start here.
pub fn null_edit_study_from_distances(edit: NullEdit, paraphrase: &[f64], null: &[f64]) -> Result<NullEditStudy, MetricError> {
    if null.is_empty() {
        return Err(MetricError::TooFew { what: "null-edit study variants", needed: 1, got: 0 });
    }
    if let Some(bad) = paraphrase.iter().chain(null).find(|d| !d.is_finite() || **d < 0.0) {
        return Err(MetricError::Invalid(format!("JS distance {bad} is not a finite non-negative number")));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let paraphrase_js = (!paraphrase.is_empty()).then(|| mean(paraphrase));
    let null_js = mean(null);
    let ratio = paraphrase_js.filter(|_| null_js != 0.0).map(|p| p / null_js);
    Ok(NullEditStudy { edit, paraphrase_js, null_js, paraphrase_to_null: ratio, flagged: ratio.is_some_and(|r| r < 1.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_pulls_towards_the_mean_and_rounds_half_to_even() {
        // mu = 127.5: 0 -> 12.75 -> 13; 255 -> 242.25 -> 242.
        assert_eq!(contrast90(&[0, 255], 2, 1, 1).unwrap(), vec![13, 242]);
        // mu = 5: 0 -> 0.5 -> 0 (half to even), 10 -> 9.5 -> 10.
        assert_eq!(contrast90(&[0, 10], 1, 2, 1).unwrap(), vec![0, 10]);
        // Channels are separate: a constant channel stays as it is.
        assert_eq!(contrast90(&[7, 0, 7, 255], 2, 1, 2).unwrap(), vec![7, 13, 7, 242]);
        // A factor above 1 clamps.
        assert_eq!(contrast(&[0, 255], 2, 1, 1, 2.0).unwrap(), vec![0, 255]);
        assert!(contrast90(&[1, 2, 3], 2, 1, 1).is_err());
        assert!(contrast90(&[], 0, 0, 1).is_err());
    }

    #[test]
    fn study_ratio_is_null_without_a_null_distance() {
        let a = AttentionMap::new(1, 2, vec![1.0, 0.0]).unwrap();
        let b = AttentionMap::new(1, 2, vec![0.0, 1.0]).unwrap();
        let s = null_edit_study(NullEdit::Contrast90, &[a.clone(), b.clone()], &[a.clone(), b.clone()]).unwrap();
        assert_eq!((s.paraphrase_js, s.null_js, s.paraphrase_to_null, s.flagged), (Some(1.0), 0.0, None, false));
        let s = null_edit_study(NullEdit::Jpeg90, &[a.clone(), a.clone()], &[b.clone(), a.clone()]).unwrap();
        assert_eq!((s.paraphrase_js, s.null_js, s.paraphrase_to_null, s.flagged), (Some(0.0), 0.5, Some(0.0), true));
        let s = null_edit_study(NullEdit::Jpeg90, std::slice::from_ref(&a), std::slice::from_ref(&b)).unwrap();
        assert_eq!((s.paraphrase_js, s.paraphrase_to_null), (None, None));
        assert!(null_edit_study(NullEdit::Jpeg90, std::slice::from_ref(&a), &[]).is_err());
    }

    #[test]
    fn study_figures_from_distances_match_those_from_maps() {
        let a = AttentionMap::new(1, 3, vec![1.0, 2.0, 3.0]).unwrap();
        let b = AttentionMap::new(1, 3, vec![3.0, 2.0, 1.0]).unwrap();
        let c = AttentionMap::new(1, 3, vec![1.0, 1.0, 5.0]).unwrap();
        let from_maps = null_edit_study(NullEdit::Contrast90, &[a.clone(), b.clone()], &[c.clone(), a.clone()]).unwrap();
        let d = |x: &AttentionMap, y: &AttentionMap| js_divergence_maps(x, y).unwrap().sqrt();
        let from_distances = null_edit_study_from_distances(NullEdit::Contrast90, &[d(&a, &b)], &[d(&a, &c), d(&b, &a)]).unwrap();
        assert_eq!(from_maps, from_distances);
        assert!(null_edit_study_from_distances(NullEdit::Jpeg90, &[0.1], &[]).is_err());
        assert!(null_edit_study_from_distances(NullEdit::Jpeg90, &[f64::NAN], &[0.1]).is_err());
    }
}
