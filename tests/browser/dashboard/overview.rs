//! Dashboard steps on the overview (`/runs/:id`) beyond the headline: group plots, paired
//! comparisons, disagreements and the trust tables.

use fantoccini::Client;
use radlens_shared::record::Analysis;
use serde_json::Value;

use super::super::{Res, check, js, wait_for_js};
use super::RUN;

/// The overview's per-strategy and per-finding plots (as many whiskers as the analysis has
/// intervals, each plot painted; full consistency per finding exactly when the analysis has it), the paired comparisons and the disagreement table (one row
/// per study the models answered differently, linking to its study view).
pub(super) async fn overview_breakdowns(c: &Client, analysis: &Analysis) -> Res<()> {
    for plot in radlens_frontend::overview::group_plots(analysis) {
        let id = plot.id;
        wait_for_js(c, &format!("return document.querySelector('#{id}[data-drawn=\"true\"]') ? true : null;"), id).await?;
        let v = js(c, &format!("const cv = document.getElementById('{id}'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; const s = new Set(); for (let i = 0; i < d.length; i += 4) s.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); return [cv.dataset.points, s.size];")).await?;
        check(
            v[0] == Value::String(plot.points.len().to_string()),
            format!("{id}: {} whiskers drawn, the analysis has {}", v[0], plot.points.len()),
        )?;
        check(v[1].as_u64().unwrap_or(0) > 4, format!("{id}: only {} colours", v[1]))?;
    }
    let strategy = radlens_frontend::overview::group_plot(
        analysis,
        radlens_frontend::overview::Breakdown::Strategy,
        radlens_frontend::overview::GroupMeasure::Accuracy,
    );
    check(!strategy.points.is_empty(), "the demo has per-strategy accuracy intervals")?;
    let consistency = analysis.models.iter().any(|m| m.by_finding.values().any(|g| g.full_consistency.is_some()));
    let plotted = js(c, "return !!document.getElementById('plot-finding-consistency');").await?;
    check(plotted == Value::Bool(consistency), format!("full consistency per finding in the analysis: {consistency}, plotted: {plotted}"))?;
    let pairs = js(
        c,
        "return [...document.querySelectorAll('#comparisons tbody tr')].map(tr => [tr.dataset.a, tr.dataset.b, tr.dataset.diff ?? null]);",
    )
    .await?;
    let want: Vec<Value> = analysis
        .comparisons
        .iter()
        .map(|p| serde_json::json!([p.model_a, p.model_b, p.accuracy_difference.as_ref().map(|i| i.estimate.to_string())]))
        .collect();
    check(!want.is_empty() && pairs == Value::Array(want.clone()), format!("comparison rows {pairs}, analysis {want:?}"))?;
    let disagree: Vec<&str> = analysis.disagreements.iter().filter(|d| d.answer_disagreements > 0).map(|d| d.study_id.as_str()).collect();
    let shown = js(c, "return [...document.querySelectorAll('#disagreements tbody tr')].map(tr => [tr.dataset.study, tr.querySelector('a').getAttribute('href')]);").await?;
    let want: Vec<Value> = disagree.iter().map(|s| serde_json::json!([s, format!("/runs/{RUN}/studies/{s}")])).collect();
    check(
        shown == Value::Array(want.clone()) || (want.is_empty() && shown.is_null()),
        format!("disagreement rows {shown}, analysis {want:?}"),
    )?;
    Ok(())
}

/// The overview's trust tables: one agreement row per method pair, one faithfulness row per
/// method and k (with the flagged count) and one sink row per model, as analysis.json has them.
pub(super) async fn overview_trust(c: &Client, analysis: &Analysis) -> Res<()> {
    let t = radlens_frontend::overview::trust_tables(analysis);
    check(
        !t.agreement.is_empty() && !t.faithfulness.is_empty() && !t.sinks.is_empty(),
        "the demo analysis has agreement, faithfulness and sink summaries",
    )?;
    let shown = js(c, "const n = id => document.querySelectorAll(`#${id} tbody tr`).length; return [n('trust-agreement'), n('trust-faithfulness'), n('trust-sinks')];").await?;
    check(
        shown == serde_json::json!([t.agreement.len(), t.faithfulness.len(), t.sinks.len()]),
        format!(
            "trust rows shown {shown}; analysis.json: {} agreement, {} faithfulness, {} sinks",
            t.agreement.len(),
            t.faithfulness.len(),
            t.sinks.len()
        ),
    )?;
    let flagged = js(c, "return [...document.querySelectorAll('#trust-faithfulness tbody tr')].map(tr => [tr.dataset.model, tr.dataset.method, tr.dataset.k, tr.dataset.flagged]);").await?;
    let want: Vec<Value> = t
        .faithfulness
        .iter()
        .map(|(m, f)| serde_json::json!([m, f.method.to_string(), f.k_percent.to_string(), f.flagged.to_string()]))
        .collect();
    check(flagged == Value::Array(want.clone()), format!("faithfulness rows {flagged}, analysis {want:?}"))
}
