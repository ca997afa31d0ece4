//! The run overview's headline table: one row per model from `analysis.json`.

use radlens_shared::record::{Analysis, ModelAnalysis};
use radlens_shared::stats::bootstrap::Interval;

/// The columns of the headline table: key (`data-col`), header.
pub const HEADLINE_COLUMNS: [(&str, &str); 4] = [
    ("accuracy", "Accuracy"),
    ("flip_rate", "Flip rate"),
    ("full_consistency", "Full consistency"),
    ("image_reliance", "Image reliance"),
];

/// The interval of one headline column for one model.
pub fn headline(m: &ModelAnalysis, key: &str) -> Option<Interval> {
    match key {
        "accuracy" => m.accuracy.clone(),
        "flip_rate" => m.flip_rate.clone(),
        "full_consistency" => m.full_consistency.clone(),
        "image_reliance" => m.image_reliance.as_ref().and_then(|r| r.rate.clone()),
        _ => None,
    }
}

/// `0.625 [0.400, 0.850]` (estimate and the interval at its level), or an em dash.
pub fn format_interval(i: Option<&Interval>) -> String {
    match i {
        Some(i) => format!("{:.3} [{:.3}, {:.3}]", i.estimate, i.lo, i.hi),
        None => "—".to_owned(),
    }
}

/// The interval's level as a percentage label, e.g. `95% CI`, from the first interval found.
pub fn ci_label(a: &Analysis) -> String {
    a.models
        .iter()
        .flat_map(|m| HEADLINE_COLUMNS.iter().filter_map(|(k, _)| headline(m, k)))
        .next()
        .map(|i| {
            format!(
                "{:.0}% CI",
                if i.level <= 1.0 {
                    i.level * 100.0
                } else {
                    i.level
                }
            )
        })
        .unwrap_or_else(|| "95% CI".to_owned())
}

/// One row of the forest plot: label, estimate, low, high and the column key.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestRow {
    pub label: String,
    pub key: &'static str,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Every headline interval of every model (rates in [0, 1]), model by model.
pub fn forest_rows(a: &Analysis) -> Vec<ForestRow> {
    a.models
        .iter()
        .flat_map(|m| {
            HEADLINE_COLUMNS.iter().filter_map(move |(key, label)| {
                headline(m, key).map(|i| ForestRow {
                    label: format!("{} · {label}", m.model),
                    key,
                    estimate: i.estimate,
                    lo: i.lo,
                    hi: i.hi,
                })
            })
        })
        .collect()
}
