//! The opt-in trust checks, summarised per model: which map methods were stored (and how many
//! fell back), method agreement (JS distance between methods), faithfulness flag rates per
//! method and deletion size, and attention sinks. Rates and mean distances get study-clustered
//! intervals like every rate.

use std::collections::BTreeMap;

use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{
    AgreementSummary, CaseRecord, Faithfulness, FaithfulnessSummary, SinkCheck, SinkSummary, TrustRecord, TrustSummary,
};
use radlens_shared::stats::ClusterRatio;

use super::{Boot, ModelData, Result, summarize};

/// The trust checks' summary rows: method agreement, faithfulness flag rates per method and
/// size, sink counts. Rates and mean distances get study-clustered intervals like every rate.
pub(super) fn trust_summary(data: &ModelData, boot: &Boot) -> Result<Option<TrustSummary>> {
    let checked: Vec<(&CaseRecord, &TrustRecord)> =
        data.image.iter().filter(|r| r.error.is_none()).filter_map(|r| Some((*r, r.trust.as_ref()?))).collect();
    if checked.is_empty() {
        return Ok(None);
    }
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    let mut fallbacks = 0;
    for (r, t) in &checked {
        if let Some(m) = &r.map {
            *methods.entry(m.provenance.method.to_string()).or_default() += 1;
            fallbacks += usize::from(m.provenance.fallback_reason.is_some());
        }
        for m in &t.maps {
            *methods.entry(m.provenance.method.to_string()).or_default() += 1;
        }
    }
    // Per-study (num, den) parts of a per-record quantity, for the bootstrap.
    let parts = |f: &dyn Fn(&TrustRecord) -> Option<f64>| -> Vec<ClusterRatio> {
        let mut by_study: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for (r, t) in &checked {
            let e = by_study.entry(r.study_id.as_str()).or_default();
            if let Some(v) = f(t) {
                e.0 += v;
                e.1 += 1.0;
            }
        }
        by_study.into_iter().map(|(id, (num, den))| ClusterRatio::new(id, num, den)).collect()
    };

    let mut pairs: Vec<(MapMethod, MapMethod)> = Vec::new();
    for (_, t) in &checked {
        for p in &t.agreement {
            if !pairs.contains(&(p.a, p.b)) {
                pairs.push((p.a, p.b));
            }
        }
    }
    let mut agreement = Vec::new();
    for (a, b) in pairs {
        let of = |t: &TrustRecord| t.agreement.iter().find(|p| p.a == a && p.b == b).map(|p| p.js_distance);
        let values: Vec<f64> = checked.iter().filter_map(|(_, t)| of(t)).collect();
        let Some(js_distance) = summarize(&values) else { continue };
        agreement.push(AgreementSummary { a, b, rows: values.len(), js_distance, mean_js_distance: boot.interval(parts(&of))? });
    }

    let mut keys: Vec<(MapMethod, u32)> = Vec::new();
    for (_, t) in &checked {
        for f in &t.faithfulness {
            if !keys.contains(&(f.method, f.k_percent)) {
                keys.push((f.method, f.k_percent));
            }
        }
    }
    let mut faithfulness = Vec::new();
    for (method, k) in keys {
        let of = |t: &TrustRecord| t.faithfulness.iter().find(|f| f.method == method && f.k_percent == k).cloned();
        let rows: Vec<Faithfulness> = checked.iter().filter_map(|(_, t)| of(t)).collect();
        let top: Vec<f64> = rows.iter().map(|f| f.delta_top).collect();
        let random: Vec<f64> = rows.iter().map(|f| f.delta_random).collect();
        let (Some(delta_top), Some(delta_random)) = (summarize(&top), summarize(&random)) else { continue };
        faithfulness.push(FaithfulnessSummary {
            method,
            k_percent: k,
            rows: rows.len(),
            flagged: rows.iter().filter(|f| f.flagged).count(),
            flag_rate: boot.interval(parts(&|t| of(t).map(|f| f64::from(u8::from(f.flagged)))))?,
            delta_top,
            delta_random,
        });
    }

    let with_sinks: Vec<(&CaseRecord, &SinkCheck)> = checked.iter().filter_map(|(r, t)| Some((*r, t.sinks.as_ref()?))).collect();
    let sinks = if with_sinks.is_empty() {
        None
    } else {
        let mut per_study: BTreeMap<&str, usize> = BTreeMap::new();
        for (r, s) in &with_sinks {
            per_study.insert(r.study_id.as_str(), s.cells.len());
        }
        let cells: Vec<f64> = per_study.values().map(|&c| c as f64).collect();
        let mass: Vec<f64> = with_sinks.iter().map(|(_, s)| s.mass).collect();
        let focus: Vec<f64> = with_sinks.iter().filter_map(|(r, _)| r.map.as_ref().map(|m| m.metrics.focus)).collect();
        let focus_without: Vec<f64> = with_sinks.iter().filter_map(|(_, s)| s.metrics_without.map(|m| m.focus)).collect();
        match (summarize(&cells), summarize(&mass)) {
            (Some(cells), Some(mass)) => Some(SinkSummary {
                studies: per_study.len(),
                studies_with_sinks: per_study.values().filter(|&&c| c > 0).count(),
                cells,
                mass,
                focus: summarize(&focus),
                focus_without: summarize(&focus_without),
            }),
            _ => None,
        }
    };
    Ok(Some(TrustSummary {
        records: checked.len(),
        methods,
        fallbacks,
        records_with_notes: checked.iter().filter(|(_, t)| !t.notes.is_empty()).count(),
        agreement,
        faithfulness,
        sinks,
    }))
}
