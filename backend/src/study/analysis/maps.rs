//! Attention-map statistics: the stored single-map metrics and ROI means of a model
//! ([`map_summary`]), attention consistency across one study's variants, and the cross-model
//! Jensen-Shannon divergence on the common grid over the whole image. The loaded maps
//! themselves (`Maps`) live in `mod.rs`, beside the other shared state.

use std::collections::BTreeMap;

use radlens_shared::geometry::resample;
use radlens_shared::metrics::{consistency, js_divergence};
use radlens_shared::record::{CaseRecord, CrossModelMaps, CrossModelRow, MapSummary, Pass, RoiSummary};
use radlens_shared::stats::ClusterRatio;
use radlens_shared::{AttentionMap, MetricError};

use super::{Boot, Maps, ModelData, Result, summarize};

/// A map resampled by area onto the common `g x g` grid over its whole original image.
fn on_common_grid(r: &CaseRecord, map: &AttentionMap, g: usize) -> std::result::Result<Vec<f64>, MetricError> {
    let Some(m) = &r.map else {
        return Err(MetricError::Invalid("record has no map".to_owned()));
    };
    let geo = &m.provenance.geometry;
    resample(&map.normalized()?, map.h, map.w, &geo.crop, geo.image_w, geo.image_h, g)
}

/// Stored single-map metrics of the model's valid attention maps (errors excluded); ROI means
/// with intervals over the rows that have a box.
pub(super) fn map_summary(data: &ModelData, maps: &Maps, boot: &Boot) -> Result<Option<MapSummary>> {
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    let mut used = Vec::new();
    for r in data.image.iter().filter(|r| r.error.is_none()) {
        let Some(m) = &r.map else { continue };
        let method = serde_json::to_value(m.provenance.method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", m.provenance.method));
        *methods.entry(method).or_default() += 1;
        if maps.attention(&r.model, &r.sample_id).is_some() {
            used.push(*r);
        }
    }
    let metric = |f: fn(&CaseRecord) -> Option<f64>| summarize(&used.iter().filter_map(|r| f(r)).collect::<Vec<_>>());
    let (Some(focus), Some(gini), Some(top10_mass), Some(entropy_nats), Some(image_share)) = (
        metric(|r| r.map.as_ref().map(|m| m.metrics.focus)),
        metric(|r| r.map.as_ref().map(|m| m.metrics.gini)),
        metric(|r| r.map.as_ref().map(|m| m.metrics.top10_mass)),
        metric(|r| r.map.as_ref().map(|m| m.metrics.entropy_nats)),
        metric(|r| r.map.as_ref().map(|m| m.image_share)),
    ) else {
        return Ok(None);
    };

    let roi_rows: Vec<(&str, radlens_shared::roi::RoiMetrics)> =
        used.iter().filter_map(|r| Some((r.study_id.as_str(), r.map.as_ref()?.roi?))).collect();
    let roi = if roi_rows.is_empty() {
        None
    } else {
        let mean = |f: fn(&radlens_shared::roi::RoiMetrics) -> f64| {
            let mut per_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for (study, m) in &roi_rows {
                let e = per_study.entry(study).or_default();
                e.0 += f(m);
                e.1 += 1.0;
            }
            boot.interval(per_study.into_iter().map(|(s, (n, d))| ClusterRatio::new(s, n, d)).collect())
        };
        Some(RoiSummary {
            rows: roi_rows.len(),
            relevance_mass: mean(|m| m.relevance_mass)?,
            rank_accuracy: mean(|m| m.rank_accuracy)?,
            pointing_game: mean(|m| m.pointing_game)?,
        })
    };
    Ok(Some(MapSummary { maps: used.len(), methods, focus, gini, top10_mass, entropy_nats, image_share, roi }))
}

/// Attention consistency of one study's variants (all image-pass maps without an error, the
/// answer does not matter): mean pairwise `1 - js_distance`. Variants of one study share a
/// grid; should they not, they are compared on the common grid instead of failing.
pub(super) fn study_map_consistency<'a>(
    model: &str,
    records: impl Iterator<Item = &'a CaseRecord>,
    maps: &Maps,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let with_maps: Vec<(&CaseRecord, &AttentionMap)> = records.filter_map(|r| Some((r, maps.attention(model, &r.sample_id)?))).collect();
    if with_maps.len() < 2 {
        return None;
    }
    let list: Vec<AttentionMap> = with_maps.iter().map(|(_, m)| (*m).clone()).collect();
    match consistency(&list) {
        Ok(c) => Some(c),
        Err(MetricError::GridsDiffer { .. }) => {
            const G: usize = radlens_shared::geometry::DEFAULT_COMMON_GRID;
            let resampled: std::result::Result<Vec<AttentionMap>, MetricError> =
                with_maps.iter().map(|(r, m)| on_common_grid(r, m, G).and_then(|v| AttentionMap::new(G, G, v))).collect();
            match resampled.and_then(|l| consistency(&l)) {
                Ok(c) => Some(c),
                Err(e) => {
                    notes.push(format!("model {model}, study {}: map consistency: {e}", with_maps[0].0.study_id));
                    None
                }
            }
        }
        Err(e) => {
            notes.push(format!("model {model}, study {}: map consistency: {e}", with_maps[0].0.study_id));
            None
        }
    }
}

/// All of a model's image-pass records of one study, for [`StudySummary`] and consistency.
pub(super) fn study_records<'a>(data: &'a ModelData, id: &'a str) -> impl Iterator<Item = &'a CaseRecord> + 'a {
    data.image.iter().copied().filter(move |r| r.study_id == id && r.error.is_none())
}

/// JS divergence (bits) and distance of the two models' maps of every sample both mapped, on
/// the common grid over the whole image (the models' grids and crops differ).
pub(super) fn cross_model_maps(
    a: &str,
    b: &str,
    grid: usize,
    records: &[CaseRecord],
    maps: &Maps,
    notes: &mut Vec<String>,
) -> CrossModelMaps {
    let image: BTreeMap<(&str, &str), &CaseRecord> = records
        .iter()
        .filter(|r| r.pass == Pass::Image && r.error.is_none())
        .map(|r| ((r.model.as_str(), r.sample_id.as_str()), r))
        .collect();
    let mut per_row = Vec::new();
    let mut failed: Option<(usize, String)> = None;
    for ((model, sample), ra) in image.range((a, "")..) {
        if *model != a {
            break;
        }
        let (Some(ma), Some(rb)) = (maps.attention(a, sample), image.get(&(b, *sample))) else {
            continue;
        };
        let Some(mb) = maps.attention(b, sample) else {
            continue;
        };
        let js = on_common_grid(ra, ma, grid).and_then(|p| Ok((p, on_common_grid(rb, mb, grid)?))).and_then(|(p, q)| js_divergence(&p, &q));
        match js {
            Ok(d) => per_row.push(CrossModelRow {
                sample_id: (*sample).to_owned(),
                study_id: ra.study_id.clone(),
                js_divergence: d,
                js_distance: d.sqrt(),
            }),
            Err(e) => {
                let f = failed.get_or_insert((0, format!("{sample}: {e}")));
                f.0 += 1;
            }
        }
    }
    if let Some((n, first)) = failed {
        notes.push(format!("models {a} and {b}: {n} rows could not be compared on the common grid; first: {first}"));
    }
    CrossModelMaps {
        model_a: a.to_owned(),
        model_b: b.to_owned(),
        grid,
        rows: per_row.len(),
        js_divergence: summarize(&per_row.iter().map(|r| r.js_divergence).collect::<Vec<_>>()),
        js_distance: summarize(&per_row.iter().map(|r| r.js_distance).collect::<Vec<_>>()),
        per_row,
    }
}
