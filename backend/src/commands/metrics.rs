//! `radlens metrics`: the spec's map metrics of a map file, as JSON on stdout.

use std::path::Path;

use radlens_shared::AttentionMap;
use radlens_shared::metrics::{MapMetrics, js_divergence_maps};
use serde::Serialize;

use crate::error::InputError;

#[derive(Serialize)]
struct Report {
    h: usize,
    w: usize,
    #[serde(flatten)]
    metrics: MapMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    js_divergence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    js_distance: Option<f64>,
}

pub fn run(map_path: &Path, other_path: Option<&Path>) -> anyhow::Result<()> {
    let map = read_map(map_path)?;
    let metrics = MapMetrics::of(&map).map_err(|source| InputError::InvalidMap { path: map_path.into(), source })?;
    let js_divergence = match other_path {
        Some(other_path) => {
            let other = read_map(other_path)?;
            let d = js_divergence_maps(&map, &other).map_err(|source| InputError::Incomparable {
                a: map_path.into(),
                b: other_path.into(),
                source,
            })?;
            Some(d)
        }
        None => None,
    };
    let report = Report { h: map.h, w: map.w, metrics, js_divergence, js_distance: js_divergence.map(f64::sqrt) };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Reads and validates a map file; every failure names the file (and the line for bad JSON).
pub fn read_map(path: &Path) -> Result<AttentionMap, InputError> {
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read { path: path.into(), source })?;
    // serde_json's message already names the line and column.
    let map: AttentionMap = serde_json::from_str(&text).map_err(|e| InputError::Parse { path: path.into(), message: e.to_string() })?;
    map.validate().map_err(|source| InputError::InvalidMap { path: path.into(), source })?;
    Ok(map)
}
