//! The dashboard against a real `radlens serve` (radlens::server::start) over a 2-study demo run
//! (both tiny random-weight models, text-only pass), in headless Chromium: sign-in through the
//! token URL, the runs list, the run overview's headline table, and the records explorer (the
//! "incorrect" count against records.jsonl, URL state surviving a reload, flipped-vs-base) and
//! the study view (one overlay canvas per variant x model, non-uniform pixels, opacity in the URL).
//! Screenshots land in `<target>/browser-e2e/dashboard-*.png`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use radlens::server::{RunningServer, ServeOptions};
use radlens_frontend::api::ApiRecord;
use radlens_frontend::explorer::flipped_vs_base;
use radlens_shared::filter::RecordFilter;
use radlens_shared::record::{Analysis, CaseRecord};
use serde_json::Value;

use super::driver::ChromeDriver;
use super::{
    Res, artifact_dir, check, connect, js, preflight, screenshot, wait_for_js, with_page_state,
};
use crate::support::{Scratch, workspace_root};

const RUN: &str = "demo";

struct DemoRun {
    _scratch: Scratch,
    runs: PathBuf,
    images: PathBuf,
}

/// The demo study on 2 studies, analysed (what `make demo` does, smaller).
fn demo_run() -> DemoRun {
    use candle_core::{DType, Device};
    use radlens::study::run::{StudyArgs, run_study};
    use radlens::study::runner::{CaseSettings, Progress};
    use radlens_shared::fusion::{HeadFusion, LayerRange, QueryMode};
    struct Quiet;
    impl Progress for Quiet {
        fn start(&mut self, _: usize) {}
        fn record(&mut self, _: &CaseRecord) {}
        fn message(&mut self, _: &str) {}
    }
    let scratch = Scratch::new("browser-dashboard");
    let root = scratch.path().to_path_buf();
    let runs = root.join("runs");
    let data = workspace_root().join("static/demo");
    let images = data.join("cxr");
    let models =
        radlens::commands::demo::write_demo_models(&root.join("models")).expect("demo models");
    let run_dir = runs.join(RUN);
    let args = StudyArgs {
        csv: data.join("demo-study.csv"),
        images: images.clone(),
        models,
        out: run_dir.clone(),
        settings: CaseSettings {
            max_new_tokens: 3,
            layer_range: LayerRange::LastQuarter,
            head_fusion: HeadFusion::Mean,
            query_mode: QueryMode::Query,
            text_only_pass: true,
            share_prefix: true,
        },
        dtype: DType::F32,
        device: Device::Cpu,
        n_studies: Some(2),
        seed: 0,
        resamples: 100,
        common_grid: 32,
        shard: None,
        force: true,
        strict: false,
        command_line: vec!["radlens".into(), "study".into()],
    };
    run_study(&args, &mut Quiet, &AtomicBool::new(false)).expect("demo study");
    radlens::commands::report::run(&run_dir, Some(&images)).expect("demo report");
    DemoRun {
        _scratch: scratch,
        runs,
        images,
    }
}

fn read_records(run_dir: &Path) -> Vec<CaseRecord> {
    std::fs::read_to_string(run_dir.join("records.jsonl"))
        .expect("records.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a record line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_over_a_real_server_in_headless_chromium() {
    let dist = preflight();
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser-e2e artifact dir");
    let demo = tokio::task::spawn_blocking(demo_run)
        .await
        .expect("demo run");

    let mut opts = ServeOptions::new(&demo.runs);
    opts.port = 0;
    opts.images = Some(demo.images.clone());
    opts.dist = Some(dist);
    opts.workers = Some(2);
    let server: RunningServer = radlens::server::start(opts).expect("start radlens serve");

    let driver =
        ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = tokio::time::timeout(Duration::from_secs(30), connect(&driver))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no WebDriver session within 30 s; chromedriver log:\n{}",
                driver.log_tail()
            )
        })
        .unwrap_or_else(|e| panic!("{e}\nchromedriver log:\n{}", driver.log_tail()));

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        scenario(&client, &server.url(), &demo.runs.join(RUN), &artifacts),
    )
    .await;
    let outcome = match outcome {
        Ok(Err(e)) => Ok(Err(with_page_state(&client, &artifacts, e).await)),
        other => other,
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    drop(driver);
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .ok();
    match outcome {
        Ok(Ok(())) => eprintln!(
            "dashboard e2e passed in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Ok(Err(e)) => panic!("dashboard e2e failed: {e}"),
        Err(_) => panic!("dashboard e2e did not finish within 120 s"),
    }
}

async fn count_shown(c: &Client) -> Res<(usize, usize)> {
    let v = js(c, "const el = document.getElementById('match-count'); return el ? [el.dataset.count, el.dataset.total] : null;").await?;
    let n = |x: &Value| {
        x.as_str()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
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
            return Err(format!(
                "{what}: the explorer shows {n} matches, expected {want}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scenario(c: &Client, sign_in: &str, run_dir: &Path, artifacts: &Path) -> Res<()> {
    let base = sign_in
        .split("/?token=")
        .next()
        .unwrap_or_default()
        .to_owned();

    // 1. Sign in through the token URL; the runs list shows the run with its random-weights badge.
    c.goto(sign_in)
        .await
        .map_err(|e| format!("open the sign-in URL: {e}"))?;
    wait_for_js(c, &format!("return document.querySelector('#runs tr[data-run=\"{RUN}\"]') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);"), "the runs table").await
        .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the runs page shows an error: {v}")) })?;
    let badge = js(c, &format!("return !!document.querySelector('#runs tr[data-run=\"{RUN}\"] [data-testid=random-weights-badge]');")).await?;
    check(
        badge == Value::Bool(true),
        "the demo run has a random-weights badge",
    )?;
    screenshot(c, &artifacts.join("dashboard-runs.png")).await?;

    // 2. The overview (reached by clicking the run): one row per model, intervals around estimates.
    c.find(Locator::Css(&format!("#runs tr[data-run=\"{RUN}\"] a")))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.querySelector('#headline tbody tr') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);", "the headline table").await
        .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the overview shows an error: {v}")) })?;
    let analysis: Analysis = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("analysis.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let rows = js(c, "return [...document.querySelectorAll('#headline tbody tr')].map(tr => [tr.dataset.model, [...tr.querySelectorAll('td[data-col]')].map(td => [td.dataset.col, td.dataset.estimate ?? null, td.dataset.lo ?? null, td.dataset.hi ?? null, td.textContent])]);").await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    let models: Vec<&str> = rows.iter().filter_map(|r| r[0].as_str()).collect();
    let want: Vec<&str> = analysis.models.iter().map(|m| m.model.as_str()).collect();
    check(
        models == want,
        format!("overview rows {models:?}, analysis models {want:?}"),
    )?;
    for (row, m) in rows.iter().zip(&analysis.models) {
        let cells = row[1].as_array().cloned().unwrap_or_default();
        check(
            cells.len() == 4,
            format!("{}: {} headline cells", m.model, cells.len()),
        )?;
        let acc = &cells[0];
        let f = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
        let (est, lo, hi) = (f(&acc[1]), f(&acc[2]), f(&acc[3]));
        let want = m
            .accuracy
            .as_ref()
            .ok_or("the demo's accuracy has an interval")?;
        check(
            est == Some(want.estimate)
                && lo == Some(want.lo)
                && hi == Some(want.hi)
                && want.lo <= want.estimate
                && want.estimate <= want.hi,
            format!(
                "{} accuracy shown {est:?} [{lo:?}, {hi:?}], analysis {want:?}",
                m.model
            ),
        )?;
        check(
            acc[4]
                .as_str()
                .is_some_and(|t| t.contains('[') && t.contains(',')),
            format!("accuracy text {}", acc[4]),
        )?;
    }
    let banner = js(
        c,
        "return !!document.querySelector('[data-testid=random-weights-banner]');",
    )
    .await?;
    check(
        banner == Value::Bool(true),
        "the overview shows the random-weights banner",
    )?;
    // The interval plot (plotters on a canvas): drawn, with more than background pixels.
    wait_for_js(
        c,
        "return document.querySelector('#forest[data-drawn=\"true\"]') ? true : null;",
        "the interval plot",
    )
    .await?;
    let colours = js(c, "const cv = document.getElementById('forest'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; const s = new Set(); for (let i = 0; i < d.length; i += 4) s.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); return s.size;").await?;
    check(
        colours.as_u64().unwrap_or(0) > 4,
        format!("the interval plot has {colours} colours"),
    )?;
    let studies: std::collections::BTreeSet<&str> = analysis
        .studies
        .iter()
        .map(|s| s.study_id.as_str())
        .collect();
    let links = js(
        c,
        "return [...document.querySelectorAll('#study-links a')].map(a => a.getAttribute('href'));",
    )
    .await?;
    check(
        links.as_array().map(|l| l.len()) == Some(studies.len())
            && studies.iter().all(|s| {
                links.as_array().is_some_and(|l| {
                    l.iter()
                        .any(|h| h.as_str() == Some(&format!("/runs/{RUN}/studies/{s}")))
                })
            }),
        format!("study links {links}, studies {studies:?}"),
    )?;
    screenshot(c, &artifacts.join("dashboard-overview.png")).await?;

    // 3. The explorer: every record, the "incorrect" count equal to records.jsonl's.
    let records = read_records(run_dir);
    c.goto(&format!("{base}/runs/{RUN}/records"))
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);", "the explorer").await
        .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the explorer shows an error: {v}")) })?;
    let (n, total) = count_shown(c).await?;
    check(
        n == records.len() && total == records.len(),
        format!(
            "explorer shows {n} of {total}, records.jsonl has {}",
            records.len()
        ),
    )?;
    let incorrect_raw = records.iter().filter(|r| r.correct == Some(false)).count();
    let filter = RecordFilter::from_pairs([("correct", "false")]).map_err(|e| e.to_string())?;
    let incorrect = records.iter().filter(|r| filter.matches(r)).count();
    check(
        incorrect == incorrect_raw && incorrect > 0,
        format!(
            "incorrect: filter {incorrect}, raw {incorrect_raw}, of {}",
            records.len()
        ),
    )?;
    let history_before = js(c, "return history.length;").await?;
    js(c, "const el = document.getElementById('f-correct'); el.value = 'false'; el.dispatchEvent(new Event('change', {bubbles: true})); return null;").await?;
    wait_count(c, incorrect, "correct = no").await?;
    let search = wait_for_js(
        c,
        "return location.search.includes('correct=false') ? location.search : null;",
        "correct=false in the URL",
    )
    .await?;
    let history_after = js(c, "return history.length;").await?;
    check(
        history_before == history_after,
        format!("history grew from {history_before} to {history_after}: use replaceState"),
    )?;
    let shown_rows = js(
        c,
        "return document.querySelectorAll('#records tbody tr').length;",
    )
    .await?;
    check(
        shown_rows.as_u64() == Some(incorrect.min(50) as u64),
        format!("{shown_rows} table rows for {incorrect} matches"),
    )?;
    // Narrow further by model: the count is the intersection.
    let model = records[0].model.clone();
    let both = RecordFilter::from_pairs([("correct", "false"), ("model", model.as_str())])
        .map_err(|e| e.to_string())?;
    let incorrect_model = records
        .iter()
        .filter(|r| both.matches(r) && r.model == model && r.correct == Some(false))
        .count();
    check(
        incorrect_model > 0 && incorrect_model < records.len(),
        format!("{incorrect_model} incorrect records of {model}"),
    )?;
    js(c, &format!("const el = document.getElementById('f-model'); el.value = {}; el.dispatchEvent(new Event('change', {{bubbles: true}})); return null;", Value::String(model.clone()))).await?;
    wait_count(c, incorrect_model, "correct = no and one model").await?;
    let incorrect = incorrect_model;
    let filter = both;
    screenshot(c, &artifacts.join("dashboard-records.png")).await?;

    // 4. The copied link restores the view after a reload.
    c.find(Locator::Id("copy-link"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    let link = js(c, "return location.href;").await?;
    let link = link.as_str().unwrap_or_default().to_owned();
    check(
        link.contains("correct=false"),
        format!("copied link {link}"),
    )?;
    c.goto("about:blank").await.map_err(|e| e.to_string())?;
    c.goto(&link).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        "return document.getElementById('match-count') ? true : null;",
        "the explorer after reload",
    )
    .await?;
    wait_count(c, incorrect, &format!("after reloading {search}")).await?;
    let sel = js(c, "return [document.getElementById('f-correct').value, document.getElementById('f-model').value];").await?;
    check(
        sel[0].as_str() == Some("false") && sel[1].as_str() == Some(model.as_str()),
        format!("the selects after reload are {sel}"),
    )?;

    // 5. Flipped vs base, computed natively from the same records, combined with the filter.
    let api: Vec<ApiRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| ApiRecord {
            index: i,
            image_id: String::new(),
            record: r.clone(),
        })
        .collect();
    let flipped = flipped_vs_base(&api);
    let want_flipped = records
        .iter()
        .zip(&flipped)
        .filter(|(r, f)| **f && filter.matches(r))
        .count();
    js(
        c,
        "document.getElementById('f-flipped').click(); return null;",
    )
    .await?;
    wait_count(c, want_flipped, "incorrect and flipped vs base").await?;
    let search = js(c, "return location.search;").await?;
    check(
        search
            .as_str()
            .is_some_and(|s| s.contains("flipped=true") && s.contains("correct=false")),
        format!("URL after flipped: {search}"),
    )?;

    // 6. The study view.
    study_view(c, &base, &records, artifacts).await?;

    // 7. A share link (POST /api/share) reopens the explorer view read-only, without the
    // sign-in cookie.
    let query = format!("correct=false&model={model}");
    c.goto(&format!("{base}/runs/{RUN}/records?{query}"))
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        "return document.getElementById('match-count') ? true : null;",
        "the explorer",
    )
    .await?;
    wait_count(c, incorrect, "before sharing").await?;
    c.find(Locator::Id("share"))
        .await
        .map_err(|e| e.to_string())?
        .click()
        .await
        .map_err(|e| e.to_string())?;
    let url = wait_for_js(c, "return document.getElementById('share-url')?.value || (document.querySelector('[data-testid=share-error]')?.textContent ?? null);", "the share link").await?;
    let url = url.as_str().unwrap_or_default().to_owned();
    check(
        url.starts_with(&format!("{base}/share/"))
            && url.contains(&format!("#/runs/{RUN}/records?")),
        format!("share link {url}"),
    )?;
    c.delete_all_cookies().await.map_err(|e| e.to_string())?;
    c.goto(&url).await.map_err(|e| e.to_string())?;
    wait_for_js(c, &format!("return location.pathname === '/runs/{RUN}/records' && document.getElementById('match-count') ? true : null;"), "the shared explorer view").await?;
    wait_count(c, incorrect, "through the share link").await?;
    screenshot(c, &artifacts.join("dashboard-shared.png")).await?;
    Ok(())
}

/// The study view: one card per variant x model, each canvas drawn with non-uniform pixels, and
/// the opacity slider (kept in the URL) changing them.
async fn study_view(c: &Client, base: &str, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let study = records[0].study_id.clone();
    let cards = records
        .iter()
        .filter(|r| r.study_id == study && r.pass == radlens_shared::record::Pass::Image)
        .count();
    let maps = records
        .iter()
        .filter(|r| {
            r.study_id == study && r.pass == radlens_shared::record::Pass::Image && r.map.is_some()
        })
        .count();
    check(maps > 0, format!("study {study} has no maps"))?;
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?opacity=0.8"))
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        &format!("const n = document.querySelectorAll('canvas.overlay-map[data-drawn=\"true\"]').length; return n === {maps} ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);"),
        &format!("{maps} drawn maps"),
    )
    .await
    .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the study view shows an error: {v}")) })?;
    let n_cards = js(
        c,
        "return document.querySelectorAll('article.case').length;",
    )
    .await?;
    check(
        n_cards.as_u64() == Some(cards as u64),
        format!("{n_cards} cards for {cards} image-pass records"),
    )?;
    let prov = js(c, "return [...document.querySelectorAll('[data-testid=provenance]')].map(p => p.textContent);").await?;
    check(
        prov.as_array().is_some_and(|a| {
            a.iter()
                .filter(|t| {
                    t.as_str()
                        .is_some_and(|t| t.contains("grid") && t.contains("image share"))
                })
                .count()
                == maps
        }),
        format!("provenance lines: {prov}"),
    )?;
    // Images loaded (through the cookie-authenticated API).
    wait_for_js(c, "return [...document.querySelectorAll('figure.overlay img')].every(i => i.complete && i.naturalWidth > 0) || null;", "the X-ray images").await?;
    let pixels = "const cv = document.querySelector('canvas.overlay-map'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; \
        const seen = new Set(); let alpha = 0, sum = 0; for (let i = 0; i < d.length; i += 4) { seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); alpha += d[i+3]; sum += d[i] + d[i+1] + d[i+2]; } \
        return [seen.size, alpha / (d.length / 4), sum, cv.width, cv.height];";
    let before = js(c, pixels).await?;
    check(
        before[0].as_u64().unwrap_or(0) > 1,
        format!("the overlay is uniform: {before}"),
    )?;
    check(
        (before[1].as_f64().unwrap_or(0.0) - 204.0).abs() < 1.5,
        format!("alpha at opacity 0.8: {before}"),
    )?;
    screenshot(c, &artifacts.join("dashboard-study.png")).await?;
    js(c, "const el = document.getElementById('opacity'); el.value = '0.3'; el.dispatchEvent(new Event('input', {bubbles: true})); return null;").await?;
    wait_for_js(
        c,
        "return location.search.includes('opacity=0.3') || null;",
        "opacity=0.3 in the URL",
    )
    .await?;
    let deadline = Instant::now() + super::WAIT;
    loop {
        let after = js(c, pixels).await?;
        if after != before && (after[1].as_f64().unwrap_or(0.0) - 76.5).abs() < 1.5 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "changing the opacity did not change the overlay: {before} -> {after}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screenshot(c, &artifacts.join("dashboard-study-faint.png")).await?;
    Ok(())
}
