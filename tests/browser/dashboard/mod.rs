//! The dashboard against a real `radlens serve` (radlens::server::start) over a 2-study demo run
//! (both tiny random-weight models, text-only pass), in headless Chromium: sign-in through the
//! token URL, the runs list, the run overview's headline table, and the records explorer (the
//! "incorrect" count against records.jsonl, URL state surviving a reload, the filtered CSV
//! download against records.jsonl and records.csv, flipped-vs-base) and
//! the study view (one overlay canvas per variant x model, non-uniform pixels, opacity in the URL)
//! and the compare page (an uploaded image and question, one card per `--model`, a JS table).
//! Screenshots land in `<target>/browser-e2e/dashboard-*.png`.
//!
//! One demo run, one server and one browser session serve every check (the demo run is the
//! expensive part); the checks are named steps ([`Steps`]), each reported on its own line with
//! its time, in the order of [`scenario`], which reads as the specification. A step may rely on
//! the page state an earlier one left (the explorer's filter); the first failing step ends the
//! run, and the report names it and the steps that did not run.
//!
//! - `mod.rs`: the runs list, the headline overview, the records explorer, scale, share links;
//! - [`overview`]: the overview's breakdown plots, comparisons, disagreements, trust tables;
//! - [`study`]: the study view; [`grounding`]: the occlusion map, the G2 boxes on the overlay,
//!   the grounding figures and the explorer's grounding filters; [`conditions`]: the image
//!   conditions under each study card, near ties, the explorer's condition filters and the
//!   overview's G6/G7 tables; [`compare`]: the compare page.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use radlens::server::{RunningServer, ServeOptions};
use radlens_frontend::api::ApiRecord;
use radlens_frontend::explorer::flipped_vs_base;
use radlens_shared::filter::RecordFilter;
use radlens_shared::record::{Analysis, CaseRecord};
use serde_json::Value;

mod compare;
mod conditions;
mod grounding;
mod overview;
mod planted;
mod study;

use super::driver::ChromeDriver;
use super::{Res, artifact_dir, check, close_session, js, open_session, preflight, run_scenario, screenshot, wait_for_js};
use crate::support::Scratch;

const RUN: &str = "demo";

struct DemoRun {
    _scratch: Scratch,
    runs: PathBuf,
    images: PathBuf,
    /// `(name, directory)` of the demo models, for `/api/compare`.
    models: Vec<(String, PathBuf)>,
}

/// The demo study on 2 studies, analysed (what `make demo` does, smaller).
fn demo_run() -> DemoRun {
    let scratch = Scratch::new("browser-dashboard");
    let root = scratch.path().to_path_buf();
    let runs = root.join("runs");
    let demo = crate::support::demo_run::build(&root.join("models"), &runs.join(RUN), 2, vec!["radlens".into(), "study".into()]);
    planted::build(&root, &runs);
    let images = demo.images;
    DemoRun { _scratch: scratch, runs, images, models: demo.models }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_over_a_real_server_in_headless_chromium() {
    let dist = preflight();
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser-e2e artifact dir");
    let demo = tokio::task::spawn_blocking(demo_run).await.expect("demo run");

    let mut opts = ServeOptions::new(&demo.runs);
    opts.port = 0;
    opts.images = Some(demo.images.clone());
    opts.models = demo.models.clone();
    opts.dist = Some(dist);
    opts.workers = Some(2);
    let server: RunningServer = radlens::server::start(opts).expect("start radlens serve");

    let driver = ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = open_session(&driver).await;
    let mut steps = Steps::default();
    let outcome = run_scenario(
        &client,
        &artifacts,
        Duration::from_secs(180),
        scenario(&client, &server.url(), &demo.runs.join(RUN), &artifacts, demo.models.len(), &mut steps),
    )
    .await;
    steps.report("dashboard e2e");
    close_session(client).await;
    drop(driver);
    tokio::task::spawn_blocking(move || server.stop()).await.ok();
    outcome.report("dashboard e2e");
}

/// The named checks of one dashboard session, in order, with how each ended.
#[derive(Default)]
struct Steps {
    done: Vec<(&'static str, Result<f64, String>)>,
}

impl Steps {
    /// Runs one named check; its error names the step.
    async fn step<T>(&mut self, name: &'static str, check: impl std::future::Future<Output = Res<T>>) -> Res<T> {
        let started = Instant::now();
        let out = check.await;
        let secs = started.elapsed().as_secs_f64();
        match &out {
            Ok(_) => eprintln!("dashboard e2e: ok   {name} ({secs:.1} s)"),
            Err(e) => eprintln!("dashboard e2e: FAIL {name} ({secs:.1} s): {e}"),
        }
        self.done.push((name, out.as_ref().map(|_| secs).map_err(Clone::clone)));
        out.map_err(|e| format!("step \"{name}\": {e}"))
    }

    /// One line per step that ran, then the steps that did not (after a failure).
    fn report(&self, what: &str) {
        let passed = self.done.iter().filter(|(_, r)| r.is_ok()).count();
        eprintln!("{what}: {passed} of {} steps passed", STEPS.len());
        for name in STEPS.iter().filter(|n| !self.done.iter().any(|(d, _)| d == *n)) {
            eprintln!("{what}: not run  {name}");
        }
    }
}

const SIGN_IN: &str = "the token URL signs in; the runs list shows the run with its random-weights badge";
const OVERVIEW: &str =
    "the overview has one headline row per model (interval around the estimate), the banner, the interval plot and a link per study";
const BREAKDOWNS: &str = "the overview plots accuracy and flips per strategy and finding, with paired comparisons and disagreements";
const OVERVIEW_TRUST: &str = "the overview's trust tables match analysis.json";
const EXPLORER: &str = "the explorer's counts match records.jsonl; filters narrow them and rewrite the URL in place";
const RELOAD: &str = "a copied explorer link restores the view after a reload";
const CSV: &str = "Download CSV holds every matching row in the order shown, with records.csv's cells";
const FLIPPED: &str = "flipped vs base combines with the filter and is kept in the URL";
const STUDY: &str = "the study view draws one overlay per image-pass variant x model";
const METHODS: &str = "the study view shows attention, Grad-CAM and relative maps side by side with the stored JS";
const TRUST: &str = "the study view lists deletion tests and outlines the sink cells";
const OPACITY: &str = "the study view's provenance, images and opacity (kept in the URL)";
const CONTROLS: &str =
    "hover, threshold, colour map, clipping and smoothing act on the overlay and survive a reload; the colour bar matches";
const REFUSION: &str = "re-fusion from rows.bin reproduces the stored metrics and follows the fusion and layer choice";
const PINNING: &str = "pinning a card shows JS distances and difference maps; the JS matrices are symmetric";
const OCCLUSION: &str = "the study view draws the occlusion map beside the other maps and, chosen in the URL, as the overlay";
const BOXES: &str = "the control-box toggle draws the radiologist box, its mirror and the control boxes on the overlay, with a legend, and survives a reload";
const GROUNDING: &str = "the study view shows every map's stored grounding figures, each with its meaning on hover";
const GROUNDING_FILTERS: &str =
    "the explorer's 'map beats controls' and null-edit filters count what records.jsonl and the stored maps say; both CSVs agree";
const NULL_EDITS: &str =
    "on a copy with synthetic null edits, the null-edit filter and the study's paraphrase-to-null ratios match a computation by hand";
const OVERVIEW_CONDITIONS: &str =
    "the overview's 'Does the answer come from the image?' and 'Would the model have warned us?' tables equal analysis.json";
const CONDITION_STRIPS: &str =
    "with conditions=1 each study card shows every condition's image and answer as records.jsonl has them, and the not-run reasons";
const SWAP_LINK: &str = "a swapped image links to its partner study's view";
const OCCLUDED_FILL: &str = "the occluded thumbnails fill the box with the image's per-channel mean and leave the rest as it was";
const NEAR_TIES: &str = "the near-tie badge marks exactly the image-pass records with |margin| < eps, in the explorer and the study views";
const CONDITION_FILTERS: &str =
    "the explorer's pass, 'same answer on a blank image' and 'near tie' filters count what records.jsonl says; both CSVs agree";
const PLANTED: &str = "a run of the planted-truth models: the overview says what each was built to do and its confound-change rates equal analysis.json, the marker model's highest";
const COMPARE: &str = "the compare page gives one card per --model for an uploaded image and question, with the cross-model JS";
const SCALE: &str = "the explorer at 2,000 records: every filter's count equals the shared code's; the CSV spans every page";
const SHARE: &str = "a share link reopens the explorer view read-only, without the sign-in cookie";

/// Every step, in the order [`scenario`] runs them.
const STEPS: [&str; 30] = [
    SIGN_IN,
    OVERVIEW,
    BREAKDOWNS,
    OVERVIEW_TRUST,
    OVERVIEW_CONDITIONS,
    EXPLORER,
    RELOAD,
    CSV,
    FLIPPED,
    STUDY,
    METHODS,
    TRUST,
    OPACITY,
    CONTROLS,
    REFUSION,
    PINNING,
    OCCLUSION,
    BOXES,
    GROUNDING,
    GROUNDING_FILTERS,
    NULL_EDITS,
    CONDITION_STRIPS,
    SWAP_LINK,
    OCCLUDED_FILL,
    NEAR_TIES,
    CONDITION_FILTERS,
    PLANTED,
    COMPARE,
    SCALE,
    SHARE,
];

/// The explorer view the explorer steps narrow and the later ones reopen.
struct ExplorerView {
    model: String,
    filter: RecordFilter,
    /// Records matching `filter`.
    incorrect: usize,
    /// `location.search` after the first filter.
    search: Value,
    /// The run's filter facts (blank answers, near-tie threshold).
    facts: radlens_shared::filter::RunFacts,
}

async fn scenario(c: &Client, sign_in: &str, run_dir: &Path, artifacts: &Path, n_models: usize, s: &mut Steps) -> Res<()> {
    let base = sign_in.split("/?token=").next().unwrap_or_default().to_owned();
    s.step(SIGN_IN, runs_list(c, sign_in, artifacts)).await?;
    let analysis: Analysis = serde_json::from_str(&std::fs::read_to_string(run_dir.join("analysis.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    s.step(OVERVIEW, overview_headline(c, &analysis, artifacts)).await?;
    s.step(BREAKDOWNS, async {
        overview::overview_breakdowns(c, &analysis).await?;
        js(c, "document.getElementById('group-plots').scrollIntoView(); return null;").await?;
        screenshot(c, &artifacts.join("dashboard-overview-plots.png")).await?;
        js(c, "window.scrollTo(0, 0); return null;").await.map(drop)
    })
    .await?;
    s.step(OVERVIEW_TRUST, overview::overview_trust(c, &analysis)).await?;
    s.step(OVERVIEW_CONDITIONS, conditions::overview_tables(c, &base, &analysis, artifacts)).await?;
    let records = crate::support::run_records(run_dir);
    let view = s.step(EXPLORER, explorer_counts(c, &base, run_dir, &records, artifacts)).await?;
    s.step(RELOAD, explorer_reload(c, &view)).await?;
    s.step(CSV, csv_download(c, run_dir, &records, &view.filter, view.incorrect)).await?;
    s.step(FLIPPED, flipped_vs_base_view(c, &records, &view)).await?;
    let study = records[0].study_id.clone();
    s.step(STUDY, study::study_view(c, &base, &records)).await?;
    s.step(METHODS, study::methods_side_by_side(c, &records, &study)).await?;
    s.step(TRUST, study::trust_checks(c, &records, &study)).await?;
    s.step(OPACITY, study::provenance_images_and_opacity(c, &records, artifacts)).await?;
    s.step(CONTROLS, study::overlay_controls(c, &base, &study, artifacts)).await?;
    s.step(REFUSION, study::refusion(c, &base, &study, artifacts)).await?;
    s.step(PINNING, study::pin_and_compare(c, &base, &study, artifacts)).await?;
    s.step(OCCLUSION, grounding::occlusion_maps(c, &base, &records, artifacts)).await?;
    s.step(BOXES, grounding::control_boxes(c, &base, &records, artifacts)).await?;
    s.step(GROUNDING, grounding::grounding_figures(c, &records, artifacts)).await?;
    s.step(GROUNDING_FILTERS, grounding::explorer_filters(c, &base, run_dir, &records, artifacts)).await?;
    s.step(NULL_EDITS, grounding::null_edit_views(c, &base, run_dir, artifacts)).await?;
    s.step(CONDITION_STRIPS, conditions::study_strips(c, &base, &records, artifacts)).await?;
    s.step(SWAP_LINK, conditions::swap_link(c, &base, &records)).await?;
    s.step(OCCLUDED_FILL, conditions::occluded_fill(c, &base, &records)).await?;
    s.step(NEAR_TIES, conditions::near_tie_badges(c, &base, run_dir, &records, artifacts)).await?;
    s.step(CONDITION_FILTERS, conditions::explorer_filters(c, &base, run_dir, &records)).await?;
    let runs = run_dir.parent().ok_or("the run has a runs folder")?;
    s.step(PLANTED, planted::planted_overview(c, &base, runs, artifacts)).await?;
    s.step(COMPARE, compare::compare_page(c, &base, n_models, artifacts)).await?;
    s.step(SCALE, explorer_at_scale(c, &base, run_dir)).await?;
    s.step(SHARE, share_link(c, &base, &view, artifacts)).await
}

/// Sign in through the token URL; the runs list shows the run with its random-weights badge.
async fn runs_list(c: &Client, sign_in: &str, artifacts: &Path) -> Res<()> {
    c.goto(sign_in).await.map_err(|e| format!("open the sign-in URL: {e}"))?;
    wait_for_js(c, &format!("return document.querySelector('#runs tr[data-run=\"{RUN}\"]') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);"), "the runs table").await
        .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the runs page shows an error: {v}")) })?;
    let badge =
        js(c, &format!("return !!document.querySelector('#runs tr[data-run=\"{RUN}\"] [data-testid=random-weights-badge]');")).await?;
    check(badge == Value::Bool(true), "the demo run has a random-weights badge")?;
    screenshot(c, &artifacts.join("dashboard-runs.png")).await
}

/// The overview (reached by clicking the run): one row per model, intervals around estimates.
async fn overview_headline(c: &Client, analysis: &Analysis, artifacts: &Path) -> Res<()> {
    c.find(Locator::Css(&format!("#runs tr[data-run=\"{RUN}\"] a")))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.querySelector('#headline tbody tr') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);", "the headline table").await
        .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the overview shows an error: {v}")) })?;
    let rows = js(c, "return [...document.querySelectorAll('#headline tbody tr')].map(tr => [tr.dataset.model, [...tr.querySelectorAll('td[data-col]')].map(td => [td.dataset.col, td.dataset.estimate ?? null, td.dataset.lo ?? null, td.dataset.hi ?? null, td.textContent])]);").await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let models: Vec<&str> = rows.iter().filter_map(|r| r[0].as_str()).collect();
    let want: Vec<&str> = analysis.models.iter().map(|m| m.model.as_str()).collect();
    check(models == want, format!("overview rows {models:?}, analysis models {want:?}"))?;
    for (row, m) in rows.iter().zip(&analysis.models) {
        let cells = row[1].as_array().cloned().unwrap_or_default();
        check(cells.len() == 4, format!("{}: {} headline cells", m.model, cells.len()))?;
        let acc = &cells[0];
        let f = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
        let (est, lo, hi) = (f(&acc[1]), f(&acc[2]), f(&acc[3]));
        let want = m.accuracy.as_ref().ok_or("the demo's accuracy has an interval")?;
        check(
            est == Some(want.estimate)
                && lo == Some(want.lo)
                && hi == Some(want.hi)
                && want.lo <= want.estimate
                && want.estimate <= want.hi,
            format!("{} accuracy shown {est:?} [{lo:?}, {hi:?}], analysis {want:?}", m.model),
        )?;
        check(acc[4].as_str().is_some_and(|t| t.contains('[') && t.contains(',')), format!("accuracy text {}", acc[4]))?;
    }
    let banner = js(c, "return !!document.querySelector('[data-testid=random-weights-banner]');").await?;
    check(banner == Value::Bool(true), "the overview shows the random-weights banner")?;
    // The interval plot (plotters on a canvas): drawn, with more than background pixels.
    wait_for_js(c, "return document.querySelector('#forest[data-drawn=\"true\"]') ? true : null;", "the interval plot").await?;
    let colours = js(c, "const cv = document.getElementById('forest'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; const s = new Set(); for (let i = 0; i < d.length; i += 4) s.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); return s.size;").await?;
    check(colours.as_u64().unwrap_or(0) > 4, format!("the interval plot has {colours} colours"))?;
    let studies: std::collections::BTreeSet<&str> = analysis.studies.iter().map(|s| s.study_id.as_str()).collect();
    let links = js(c, "return [...document.querySelectorAll('#study-links a')].map(a => a.getAttribute('href'));").await?;
    check(
        links.as_array().map(|l| l.len()) == Some(studies.len())
            && studies
                .iter()
                .all(|s| links.as_array().is_some_and(|l| l.iter().any(|h| h.as_str() == Some(&format!("/runs/{RUN}/studies/{s}"))))),
        format!("study links {links}, studies {studies:?}"),
    )?;
    screenshot(c, &artifacts.join("dashboard-overview.png")).await
}

/// The explorer: every record, the "incorrect" count equal to records.jsonl's, narrowed by
/// model to the intersection; the query is rewritten without a history entry.
async fn explorer_counts(c: &Client, base: &str, run_dir: &Path, records: &[CaseRecord], artifacts: &Path) -> Res<ExplorerView> {
    c.goto(&format!("{base}/runs/{RUN}/records")).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        "return document.getElementById('match-count') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);",
        "the explorer",
    )
    .await
    .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the explorer shows an error: {v}")) })?;
    let (n, total) = count_shown(c).await?;
    check(n == records.len() && total == records.len(), format!("explorer shows {n} of {total}, records.jsonl has {}", records.len()))?;
    let incorrect_raw = records.iter().filter(|r| r.correct == Some(false)).count();
    let filter = RecordFilter::from_pairs([("correct", "false")]).map_err(|e| e.to_string())?;
    let facts = crate::support::run_facts(run_dir, records);
    let incorrect = records.iter().filter(|r| filter.matches(r, &facts)).count();
    check(
        incorrect == incorrect_raw && incorrect > 0,
        format!("incorrect: filter {incorrect}, raw {incorrect_raw}, of {}", records.len()),
    )?;
    let history_before = js(c, "return history.length;").await?;
    js(c, "const el = document.getElementById('f-correct'); el.value = 'false'; el.dispatchEvent(new Event('change', {bubbles: true})); return null;").await?;
    wait_count(c, incorrect, "correct = no").await?;
    let search =
        wait_for_js(c, "return location.search.includes('correct=false') ? location.search : null;", "correct=false in the URL").await?;
    let history_after = js(c, "return history.length;").await?;
    check(history_before == history_after, format!("history grew from {history_before} to {history_after}: use replaceState"))?;
    let shown_rows = js(c, "return document.querySelectorAll('#records tbody tr').length;").await?;
    check(shown_rows.as_u64() == Some(incorrect.min(50) as u64), format!("{shown_rows} table rows for {incorrect} matches"))?;
    // Narrow further by model: the count is the intersection.
    let model = records[0].model.clone();
    let both = RecordFilter::from_pairs([("correct", "false"), ("model", model.as_str())]).map_err(|e| e.to_string())?;
    let incorrect_model = records.iter().filter(|r| both.matches(r, &facts) && r.model == model && r.correct == Some(false)).count();
    check(incorrect_model > 0 && incorrect_model < records.len(), format!("{incorrect_model} incorrect records of {model}"))?;
    js(c, &format!("const el = document.getElementById('f-model'); el.value = {}; el.dispatchEvent(new Event('change', {{bubbles: true}})); return null;", Value::String(model.clone()))).await?;
    wait_count(c, incorrect_model, "correct = no and one model").await?;
    screenshot(c, &artifacts.join("dashboard-records.png")).await?;
    Ok(ExplorerView { model, filter: both, incorrect: incorrect_model, search, facts })
}

/// The copied link restores the view after a reload.
async fn explorer_reload(c: &Client, view: &ExplorerView) -> Res<()> {
    c.find(Locator::Id("copy-link")).await.map_err(|e| e.to_string())?.click().await.map_err(|e| e.to_string())?;
    let link = js(c, "return location.href;").await?;
    let link = link.as_str().unwrap_or_default().to_owned();
    check(link.contains("correct=false"), format!("copied link {link}"))?;
    c.goto("about:blank").await.map_err(|e| e.to_string())?;
    c.goto(&link).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count') ? true : null;", "the explorer after reload").await?;
    wait_count(c, view.incorrect, &format!("after reloading {}", view.search)).await?;
    let sel = js(c, "return [document.getElementById('f-correct').value, document.getElementById('f-model').value];").await?;
    check(sel[0].as_str() == Some("false") && sel[1].as_str() == Some(view.model.as_str()), format!("the selects after reload are {sel}"))?;
    Ok(())
}

/// Flipped vs base, computed natively from the same records, combined with the filter.
async fn flipped_vs_base_view(c: &Client, records: &[CaseRecord], view: &ExplorerView) -> Res<()> {
    let api: Vec<ApiRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| ApiRecord { index: i, image_id: String::new(), prior_image_id: None, record: r.clone() })
        .collect();
    let flipped = flipped_vs_base(&api);
    let want_flipped = records.iter().zip(&flipped).filter(|(r, f)| **f && view.filter.matches(r, &view.facts)).count();
    js(c, "document.getElementById('f-flipped').click(); return null;").await?;
    wait_count(c, want_flipped, "incorrect and flipped vs base").await?;
    let search = js(c, "return location.search;").await?;
    check(
        search.as_str().is_some_and(|s| s.contains("flipped=true") && s.contains("correct=false")),
        format!("URL after flipped: {search}"),
    )?;
    Ok(())
}

/// The explorer at scale: 2,000 synthetic records (whole demo studies copied under new ids)
/// beside the demo run; each filter's count equals the shared code's.
async fn explorer_at_scale(c: &Client, base: &str, run_dir: &Path) -> Res<()> {
    let template = run_dir.to_path_buf();
    let big = run_dir.with_file_name("scale");
    let synthetic = tokio::task::spawn_blocking(move || crate::support::synthetic_run::scale_up(&template, &big, 2000, 1))
        .await
        .map_err(|e| e.to_string())?;
    let figures = super::scale::explorer_at_scale(c, base, "scale", &synthetic).await?;
    eprintln!("dashboard e2e: 2,000 records: {figures:?} (ms, not asserted)");
    super::scale::csv_spans_every_page(c, base, "scale", &synthetic, "correct=false&sort=-focus").await?;
    Ok(())
}

/// A share link (POST /api/share) reopens the explorer view read-only, without the sign-in
/// cookie.
async fn share_link(c: &Client, base: &str, view: &ExplorerView, artifacts: &Path) -> Res<()> {
    let query = format!("correct=false&model={}", view.model);
    c.goto(&format!("{base}/runs/{RUN}/records?{query}")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count') ? true : null;", "the explorer").await?;
    wait_count(c, view.incorrect, "before sharing").await?;
    c.find(Locator::Id("share")).await.map_err(|e| e.to_string())?.click().await.map_err(|e| e.to_string())?;
    let url = wait_for_js(
        c,
        "return document.getElementById('share-url')?.value || (document.querySelector('[data-testid=share-error]')?.textContent ?? null);",
        "the share link",
    )
    .await?;
    let url = url.as_str().unwrap_or_default().to_owned();
    check(url.starts_with(&format!("{base}/share/")) && url.contains(&format!("#/runs/{RUN}/records?")), format!("share link {url}"))?;
    c.delete_all_cookies().await.map_err(|e| e.to_string())?;
    c.goto(&url).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        &format!("return location.pathname === '/runs/{RUN}/records' && document.getElementById('match-count') ? true : null;"),
        "the shared explorer view",
    )
    .await?;
    wait_count(c, view.incorrect, "through the share link").await?;
    screenshot(c, &artifacts.join("dashboard-shared.png")).await?;
    Ok(())
}

async fn count_shown(c: &Client) -> Res<(usize, usize)> {
    let v = js(c, "const el = document.getElementById('match-count'); return el ? [el.dataset.count, el.dataset.total] : null;").await?;
    let n = |x: &Value| x.as_str().and_then(|s| s.parse::<usize>().ok()).unwrap_or(usize::MAX);
    Ok((n(&v[0]), n(&v[1])))
}

async fn wait_count(c: &Client, want: usize, what: &str) -> Res<()> {
    let deadline = Instant::now() + super::WAIT;
    loop {
        let (n, _) = count_shown(c).await?;
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: the explorer shows {n} matches, expected {want}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The explorer's CSV download under `filter` (already set, `shown` rows): the file name says
/// it is filtered; the header is `index`, the run's `records.csv` columns, then the derived views;
/// the (sample_id, model, pass) rows are those `filter` selects from records.jsonl; each row's
/// cells equal the same record's row in the backend's `records.csv`; the first rows are the
/// table's, in its order.
async fn csv_download(c: &Client, run_dir: &Path, records: &[CaseRecord], filter: &RecordFilter, shown: usize) -> Res<()> {
    let label = js(c, "const b = document.getElementById('download-csv'); return b ? b.textContent : null;").await?;
    check(label.as_str() == Some(format!("Download CSV ({shown} rows)").as_str()), format!("the button reads {label} for {shown} rows"))?;
    let file = super::click_download(c, "download-csv").await?;
    check(file.name == format!("{RUN}-records-filtered.csv"), format!("downloaded as {}", file.name))?;
    check(file.mime.starts_with("text/csv"), format!("Blob type {}", file.mime))?;
    let mut got = csv::Reader::from_reader(file.text.as_bytes());
    let header: Vec<String> = got.headers().map_err(|e| e.to_string())?.iter().map(str::to_owned).collect();
    let rows: Vec<csv::StringRecord> = got.records().collect::<Result<_, _>>().map_err(|e| format!("the CSV does not parse: {e}"))?;

    let mut stored = csv::Reader::from_path(run_dir.join("records.csv")).map_err(|e| e.to_string())?;
    let stored_header: Vec<String> = stored.headers().map_err(|e| e.to_string())?.iter().map(str::to_owned).collect();
    let n = stored_header.len();
    check(
        header.len() == n + 3
            && header[0] == "index"
            && header[1..=n] == stored_header[..]
            && header[n + 1..] == ["flipped_vs_base", "models_disagree"],
        format!("CSV header {header:?}, records.csv header {stored_header:?}"),
    )?;
    check(rows.len() == shown, format!("{} CSV rows, the explorer shows {shown}", rows.len()))?;

    let col = |name: &str| header.iter().position(|h| h == name).ok_or(format!("no {name} column"));
    let (sample, model, pass) = (col("sample_id")?, col("model")?, col("pass")?);
    let key = |r: &csv::StringRecord, off: usize| (r[sample - off].to_owned(), r[model - off].to_owned(), r[pass - off].to_owned());
    let mut in_csv: Vec<_> = rows.iter().map(|r| key(r, 0)).collect();
    in_csv.sort();
    let mut want: Vec<_> = records
        .iter()
        .filter(|r| filter.matches(r, &crate::support::run_facts(run_dir, records)))
        .map(|r| (r.sample_id.clone(), r.model.clone(), radlens_shared::records_csv::pass_name(r.pass).to_owned()))
        .collect();
    want.sort();
    check(in_csv == want, format!("CSV rows {in_csv:?}\nrecords.jsonl under the filter {want:?}"))?;

    // The same cells as records.csv (numbers within float noise: both went through JSON).
    let stored: std::collections::HashMap<_, csv::StringRecord> =
        stored.records().map(|r| r.map(|r| (key(&r, 1), r))).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    for r in &rows {
        let s = stored.get(&key(r, 0)).ok_or(format!("{:?} is not in records.csv", key(r, 0)))?;
        for (j, name) in stored_header.iter().enumerate() {
            let (a, b) = (&r[j + 1], &s[j]);
            let same =
                a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if (x - y).abs() <= 1e-12 * x.abs().max(1.0));
            check(same, format!("{:?} {name}: CSV {a:?}, records.csv {b:?}", key(r, 0)))?;
        }
    }

    let table = js(c, "return [...document.querySelectorAll('#records tbody tr')].map(tr => tr.dataset.index);").await?;
    let table: Vec<&str> = table.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let first: Vec<&str> = rows.iter().take(table.len()).map(|r| &r[0]).collect();
    check(!table.is_empty() && first == table, format!("the CSV starts with indices {first:?}, the table shows {table:?}"))
}
