//! The run overview's headline table: one row per model from `analysis.json`.

use radlens_shared::record::{AgreementSummary, Analysis, FaithfulnessSummary, ModelAnalysis, SinkSummary, TrustSummary};
use radlens_shared::stats::bootstrap::Interval;

/// The columns of the headline table: key (`data-col`), header.
pub const HEADLINE_COLUMNS: [(&str, &str); 4] =
    [("accuracy", "Accuracy"), ("flip_rate", "Flip rate"), ("full_consistency", "Full consistency"), ("image_reliance", "Image reliance")];

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
        .map(|i| format!("{:.0}% CI", if i.level <= 1.0 { i.level * 100.0 } else { i.level }))
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

/// Which breakdown of `analysis.json` a group plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakdown {
    Strategy,
    Finding,
}

/// Which rate of a group a plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMeasure {
    Accuracy,
    FlipRate,
    /// The share of studies answered alike across all their variants (per finding only).
    FullConsistency,
}

/// One whisker of a group plot: the group (category on the x axis), the model, the interval.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPoint {
    /// Index into [`GroupPlot::groups`].
    pub group: usize,
    /// Index into [`GroupPlot::models`].
    pub model: usize,
    pub estimate: f64,
    pub lo: f64,
    pub hi: f64,
}

/// A dot-and-whisker plot: one category per strategy (or finding), one whisker per model.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlot {
    pub id: &'static str,
    pub title: String,
    pub groups: Vec<String>,
    pub models: Vec<String>,
    /// Only the (group, model) pairs with an interval.
    pub points: Vec<GroupPoint>,
}

/// The plot of `measure` per `by` group and model, from the analysis' `by_strategy` /
/// `by_finding` intervals (cluster bootstrap, computed by `radlens_shared::stats`).
pub fn group_plot(a: &Analysis, by: Breakdown, measure: GroupMeasure) -> GroupPlot {
    fn groups_of(m: &ModelAnalysis, by: Breakdown) -> &std::collections::BTreeMap<String, radlens_shared::record::GroupStats> {
        match by {
            Breakdown::Strategy => &m.by_strategy,
            Breakdown::Finding => &m.by_finding,
        }
    }
    let groups: Vec<String> =
        a.models.iter().flat_map(|m| groups_of(m, by).keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let models: Vec<String> = a.models.iter().map(|m| m.model.clone()).collect();
    let mut points = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (mi, m) in a.models.iter().enumerate() {
            let Some(stats) = groups_of(m, by).get(g) else { continue };
            let i = match measure {
                GroupMeasure::Accuracy => stats.accuracy.as_ref(),
                GroupMeasure::FlipRate => stats.flip_rate.as_ref(),
                GroupMeasure::FullConsistency => stats.full_consistency.as_ref(),
            };
            if let Some(i) = i {
                points.push(GroupPoint { group: gi, model: mi, estimate: i.estimate, lo: i.lo, hi: i.hi });
            }
        }
    }
    let (id, title) = match (by, measure) {
        (Breakdown::Strategy, GroupMeasure::Accuracy) => ("plot-strategy-accuracy", "Accuracy per question strategy"),
        (Breakdown::Strategy, GroupMeasure::FlipRate) => ("plot-strategy-flip", "Flip rate per question strategy (vs the base question)"),
        (Breakdown::Finding, GroupMeasure::Accuracy) => ("plot-finding-accuracy", "Accuracy per finding"),
        (Breakdown::Finding, GroupMeasure::FlipRate) => ("plot-finding-flip", "Flip rate per finding"),
        (Breakdown::Strategy, GroupMeasure::FullConsistency) => ("plot-strategy-consistency", "Full consistency per question strategy"),
        (Breakdown::Finding, GroupMeasure::FullConsistency) => {
            ("plot-finding-consistency", "Full consistency per finding (share of studies answered alike in every variant)")
        }
    };
    GroupPlot { id, title: title.to_owned(), groups, models, points }
}

/// The group plots of the overview, in page order: accuracy and flip rate per strategy and per
/// finding, then full consistency per finding when the analysis has any (older `analysis.json`
/// files, and runs whose findings are too small, have none; it is never per strategy).
pub fn group_plots(a: &Analysis) -> Vec<GroupPlot> {
    let mut plots: Vec<GroupPlot> = [
        (Breakdown::Strategy, GroupMeasure::Accuracy),
        (Breakdown::Strategy, GroupMeasure::FlipRate),
        (Breakdown::Finding, GroupMeasure::Accuracy),
        (Breakdown::Finding, GroupMeasure::FlipRate),
    ]
    .into_iter()
    .map(|(b, m)| group_plot(a, b, m))
    .collect();
    let consistency = group_plot(a, Breakdown::Finding, GroupMeasure::FullConsistency);
    if !consistency.points.is_empty() {
        plots.push(consistency);
    }
    plots
}

/// The overview's trust tables, model by model, each row as `analysis.json` has it (the
/// summaries are computed by the backend with the shared statistics; nothing is recomputed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrustTables<'a> {
    /// Records with checks, fallbacks and records with notes, per model that made checks.
    pub models: Vec<(&'a str, &'a TrustSummary)>,
    pub agreement: Vec<(&'a str, &'a AgreementSummary)>,
    pub faithfulness: Vec<(&'a str, &'a FaithfulnessSummary)>,
    pub sinks: Vec<(&'a str, &'a SinkSummary)>,
}

/// Every model's trust summary flattened into table rows; empty when the run made no checks.
pub fn trust_tables(a: &Analysis) -> TrustTables<'_> {
    let mut t = TrustTables::default();
    for m in &a.models {
        let Some(s) = &m.trust else { continue };
        let name = m.model.as_str();
        t.models.push((name, s));
        t.agreement.extend(s.agreement.iter().map(|r| (name, r)));
        t.faithfulness.extend(s.faithfulness.iter().map(|r| (name, r)));
        t.sinks.extend(s.sinks.iter().map(|r| (name, r)));
    }
    t
}

/// `0.0123` as `0.012`, tiny p-values as `<0.001`.
pub fn format_p(p: f64) -> String {
    if p < 0.001 { "<0.001".to_owned() } else { format!("{p:.3}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use radlens_shared::record::GroupStats;

    fn interval(estimate: f64) -> Interval {
        Interval {
            estimate,
            lo: estimate - 0.1,
            hi: estimate + 0.1,
            level: 0.95,
            resamples: 10,
            valid_resamples: 10,
            seed: 0,
            unit: "study".into(),
        }
    }

    fn group(acc: Option<f64>, flip: Option<f64>) -> GroupStats {
        GroupStats { rows: 4, studies: 2, accuracy: acc.map(interval), flip_rate: flip.map(interval), full_consistency: None }
    }

    #[test]
    fn group_plots_take_every_strategy_of_any_model_and_skip_missing_intervals() {
        let model = |name: &str| {
            serde_json::json!({
                "model": name, "random_weights": true, "rows": 4, "answered": 4, "errors": 0,
                "blank_image_rows": 0, "blank_image_errors": 0, "studies": 2, "cs_k": {},
                "by_strategy": {}, "by_finding": {}, "latency": {}
            })
        };
        let json = serde_json::json!({
            "schema_version": 1, "run_id": "r", "bootstrap": { "resamples": 10, "seed": 0, "unit": "study" },
            "random_weights": true, "records": serde_json::to_value(radlens_shared::record::RecordCounts::default()).unwrap(), "models": [model("a"), model("b")], "studies": [],
            "comparisons": [], "cross_model": [], "disagreements": [], "notes": []
        });
        let mut a: Analysis = serde_json::from_value(json).expect("a minimal analysis");
        a.models[0].by_strategy =
            [("base".to_owned(), group(Some(0.5), None)), ("negation".to_owned(), group(Some(0.25), Some(0.5)))].into();
        a.models[1].by_strategy = [("negation".to_owned(), group(Some(0.75), Some(0.0)))].into();
        let acc = group_plot(&a, Breakdown::Strategy, GroupMeasure::Accuracy);
        assert_eq!(acc.groups, ["base", "negation"]);
        assert_eq!(acc.points.len(), 3);
        assert_eq!(acc.points[2], GroupPoint { group: 1, model: 1, estimate: 0.75, lo: 0.65, hi: 0.85 });
        let flip = group_plot(&a, Breakdown::Strategy, GroupMeasure::FlipRate);
        // The base question's own strategy has no flip rate.
        assert_eq!(flip.points.iter().map(|p| (p.group, p.model)).collect::<Vec<_>>(), [(1, 0), (1, 1)]);
        // No finding has a full-consistency interval: no such plot.
        assert_eq!(
            group_plots(&a).iter().map(|p| p.id).collect::<Vec<_>>(),
            ["plot-strategy-accuracy", "plot-strategy-flip", "plot-finding-accuracy", "plot-finding-flip"]
        );
        let mut effusion = group(Some(0.5), Some(0.25));
        effusion.full_consistency = Some(interval(0.4));
        a.models[1].by_finding = [("effusion".to_owned(), effusion), ("mass".to_owned(), group(Some(0.5), None))].into();
        let plots = group_plots(&a);
        assert_eq!(plots.len(), 5);
        assert_eq!(plots[4].id, "plot-finding-consistency");
        assert_eq!(plots[4].groups, ["effusion", "mass"]);
        assert_eq!(plots[4].points, [GroupPoint { group: 0, model: 1, estimate: 0.4, lo: 0.30000000000000004, hi: 0.5 }]);
        assert_eq!(format_p(0.0004), "<0.001");
        assert_eq!(format_p(0.25), "0.250");
    }

    /// One row per stored summary row, each under its model; models without checks add none.
    #[test]
    fn trust_tables_hold_every_summary_row_of_every_model() {
        let summary = serde_json::json!({"n": 4, "mean": 0.2, "median": 0.2, "p95": 0.3, "min": 0.1, "max": 0.3});
        let trust = serde_json::json!({
            "records": 4, "methods": {"query_to_visual": 4, "gradcam": 4}, "fallbacks": 0, "records_with_notes": 0,
            "agreement": [{"a": "query_to_visual", "b": "gradcam", "rows": 4, "js_distance": summary, "mean_js_distance": null}],
            "faithfulness": [
                {"method": "query_to_visual", "k_percent": 10, "rows": 4, "flagged": 1, "flag_rate": null, "delta_top": summary, "delta_random": summary},
                {"method": "gradcam", "k_percent": 10, "rows": 4, "flagged": 3, "flag_rate": null, "delta_top": summary, "delta_random": summary}
            ],
            "sinks": {"studies": 2, "studies_with_sinks": 1, "cells": summary, "mass": summary, "focus": null, "focus_without": null}
        });
        let model = |name: &str, trust: Option<&serde_json::Value>| {
            let mut m = serde_json::json!({
                "model": name, "random_weights": true, "rows": 4, "answered": 4, "errors": 0,
                "blank_image_rows": 0, "blank_image_errors": 0, "studies": 2, "cs_k": {},
                "by_strategy": {}, "by_finding": {}, "latency": {}
            });
            if let Some(t) = trust {
                m["trust"] = t.clone();
            }
            m
        };
        let json = serde_json::json!({
            "schema_version": 1, "run_id": "r", "bootstrap": { "resamples": 10, "seed": 0, "unit": "study" },
            "random_weights": true, "records": serde_json::to_value(radlens_shared::record::RecordCounts::default()).unwrap(),
            "models": [model("a", Some(&trust)), model("b", None), model("c", Some(&trust))],
            "studies": [], "comparisons": [], "cross_model": [], "disagreements": [], "notes": []
        });
        let a: Analysis = serde_json::from_value(json).expect("an analysis with trust checks");
        let t = trust_tables(&a);
        assert_eq!(t.models.iter().map(|m| m.0).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(t.agreement.len(), 2);
        assert_eq!(t.faithfulness.iter().map(|(m, f)| (*m, f.flagged)).collect::<Vec<_>>(), [("a", 1), ("a", 3), ("c", 1), ("c", 3)]);
        assert_eq!(t.sinks.len(), 2);
    }
}
