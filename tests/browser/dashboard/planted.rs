//! The dashboard over a run of the planted-truth models (issue 18): the overview says what each
//! model was built to do, and its rates show the marker model's answer following the marker
//! (the "Confound change" row) as `analysis.json` has it.

use std::path::{Path, PathBuf};

use fantoccini::Client;
use radlens_shared::record::Analysis;
use serde_json::{Value, json};

use super::super::{Res, check, js, screenshot, wait_for_js};
use super::conditions::{CELLS, interval_json};
use crate::support::{radlens, workspace_root};

/// The run's id in the runs folder.
pub(super) const PLANTED_RUN: &str = "planted";

/// The three committed planted models on two held-out draws of every held-out source, with the
/// blank image and the box and confound occlusions, written to `runs/planted`.
pub(super) fn build(scratch: &Path, runs: &Path) {
    let data = scratch.join("planted-data");
    let run = |args: &[&str]| {
        let out = radlens(args);
        assert!(out.status.success(), "radlens {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["dev", "planted-data", "--out", &data.display().to_string(), "--seed", "0", "--per-source", "2", "--sets", "heldout"]);
    let mut args: Vec<String> =
        ["study", "--csv", &data.join("heldout.csv").display().to_string(), "--images", &data.display().to_string()]
            .map(String::from)
            .to_vec();
    args.extend(["--out", &runs.join(PLANTED_RUN).display().to_string(), "--resamples", "50", "--max-new-tokens", "2"].map(String::from));
    args.extend(["--conditions", "blank,roi_occluded,control_occluded,confound_occluded"].map(String::from));
    for m in ["planted-lesion", "planted-marker", "planted-shortcut"] {
        let dir: PathBuf = workspace_root().join("fixtures/planted-v1").join(m);
        args.extend(["--model".to_string(), format!("{m}={}", dir.display())]);
    }
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The overview of the planted run: no random-weights banner, each model's purpose as its
/// PURPOSE file says, and the rates table's "Confound change" row per model as analysis.json has
/// it, highest for the marker model.
pub(super) async fn planted_overview(c: &Client, base: &str, runs: &Path, artifacts: &Path) -> Res<()> {
    let run_dir = runs.join(PLANTED_RUN);
    let analysis: Analysis = serde_json::from_str(&std::fs::read_to_string(run_dir.join("analysis.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    c.goto(&format!("{base}/runs/{PLANTED_RUN}")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.querySelector('#conditions-rates tbody tr') ? true : null;", "the planted run's rates table").await?;

    let purposes = js(c, "return [...document.querySelectorAll('[data-testid=model-purpose]')].map(e => e.textContent);").await?;
    let want: Vec<String> = ["planted-lesion", "planted-marker", "planted-shortcut"]
        .iter()
        .map(|m| std::fs::read_to_string(workspace_root().join("fixtures/planted-v1").join(m).join("PURPOSE")).map(|p| p.trim().to_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    check(purposes == json!(want), format!("purposes shown {purposes}, PURPOSE files {want:?}"))?;
    let banner = js(c, "return !!document.querySelector('[data-testid=random-weights-banner]');").await?;
    check(banner == Value::Bool(false), "the planted models are trained: no random-weights banner")?;

    let shown = js(
        c,
        &format!("return [...document.querySelectorAll('#conditions-rates tbody tr[data-rate=confound_change_rate]')].map(tr => [tr.dataset.model, ...({CELLS})[0]]);"),
    )
    .await?;
    let rates: Vec<(&str, f64)> = analysis
        .models
        .iter()
        .filter_map(|m| Some((m.model.as_str(), m.conditions.as_ref()?.confound_change_rate.as_ref()?.estimate)))
        .collect();
    let want: Vec<Value> = analysis
        .models
        .iter()
        .filter_map(|m| Some((m.model.as_str(), m.conditions.as_ref()?)))
        .map(|(m, c)| json!([m, "confound_change_rate", interval_json(c.confound_change_rate.as_ref())]))
        .collect();
    check(rates.len() == 3 && shown == Value::Array(want.clone()), format!("confound rows shown {shown}\nanalysis.json {want:?}"))?;
    let marker = rates.iter().find(|(m, _)| *m == "planted-marker").map(|r| r.1).unwrap_or_default();
    check(
        rates.iter().all(|(m, r)| *m == "planted-marker" || *r < marker),
        format!("hiding the marker changes the marker model's answers most: {rates:?}"),
    )?;
    js(c, "document.getElementById('conditions').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("dashboard-planted-overview.png")).await?;
    js(c, "window.scrollTo(0, 0); return null;").await.map(drop)
}
