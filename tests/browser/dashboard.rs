//! The dashboard against a real `radlens serve` (radlens::server::start) over a 2-study demo run
//! (both tiny random-weight models, text-only pass), in headless Chromium: sign-in through the
//! token URL, the runs list, the run overview's headline table, and the records explorer (the
//! "incorrect" count against records.jsonl, URL state surviving a reload, the filtered CSV
//! download against records.jsonl and records.csv, flipped-vs-base) and
//! the study view (one overlay canvas per variant x model, non-uniform pixels, opacity in the URL)
//! and the compare page (an uploaded image and question, one card per `--model`, a JS table).
//! Screenshots land in `<target>/browser-e2e/dashboard-*.png`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use radlens::server::{RunningServer, ServeOptions};
use radlens_frontend::api::ApiRecord;
use radlens_frontend::explorer::flipped_vs_base;
use radlens_shared::filter::RecordFilter;
use radlens_shared::record::{Analysis, CaseRecord};
use serde_json::Value;

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
    let outcome = run_scenario(
        &client,
        &artifacts,
        Duration::from_secs(120),
        scenario(&client, &server.url(), &demo.runs.join(RUN), &artifacts, demo.models.len()),
    )
    .await;
    close_session(client).await;
    drop(driver);
    tokio::task::spawn_blocking(move || server.stop()).await.ok();
    outcome.report("dashboard e2e");
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

async fn scenario(c: &Client, sign_in: &str, run_dir: &Path, artifacts: &Path, n_models: usize) -> Res<()> {
    let base = sign_in.split("/?token=").next().unwrap_or_default().to_owned();

    // 1. Sign in through the token URL; the runs list shows the run with its random-weights badge.
    c.goto(sign_in).await.map_err(|e| format!("open the sign-in URL: {e}"))?;
    wait_for_js(c, &format!("return document.querySelector('#runs tr[data-run=\"{RUN}\"]') ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);"), "the runs table").await
        .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the runs page shows an error: {v}")) })?;
    let badge =
        js(c, &format!("return !!document.querySelector('#runs tr[data-run=\"{RUN}\"] [data-testid=random-weights-badge]');")).await?;
    check(badge == Value::Bool(true), "the demo run has a random-weights badge")?;
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
    let analysis: Analysis = serde_json::from_str(&std::fs::read_to_string(run_dir.join("analysis.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
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
    screenshot(c, &artifacts.join("dashboard-overview.png")).await?;
    overview_breakdowns(c, &analysis).await?;
    js(c, "document.getElementById('group-plots').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("dashboard-overview-plots.png")).await?;
    js(c, "window.scrollTo(0, 0); return null;").await?;

    // 3. The explorer: every record, the "incorrect" count equal to records.jsonl's.
    let records = crate::support::run_records(run_dir);
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
    let incorrect = records.iter().filter(|r| filter.matches(r)).count();
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
    let incorrect_model = records.iter().filter(|r| both.matches(r) && r.model == model && r.correct == Some(false)).count();
    check(incorrect_model > 0 && incorrect_model < records.len(), format!("{incorrect_model} incorrect records of {model}"))?;
    js(c, &format!("const el = document.getElementById('f-model'); el.value = {}; el.dispatchEvent(new Event('change', {{bubbles: true}})); return null;", Value::String(model.clone()))).await?;
    wait_count(c, incorrect_model, "correct = no and one model").await?;
    let incorrect = incorrect_model;
    let filter = both;
    screenshot(c, &artifacts.join("dashboard-records.png")).await?;

    // 4. The copied link restores the view after a reload.
    c.find(Locator::Id("copy-link")).await.map_err(|e| e.to_string())?.click().await.map_err(|e| e.to_string())?;
    let link = js(c, "return location.href;").await?;
    let link = link.as_str().unwrap_or_default().to_owned();
    check(link.contains("correct=false"), format!("copied link {link}"))?;
    c.goto("about:blank").await.map_err(|e| e.to_string())?;
    c.goto(&link).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count') ? true : null;", "the explorer after reload").await?;
    wait_count(c, incorrect, &format!("after reloading {search}")).await?;
    let sel = js(c, "return [document.getElementById('f-correct').value, document.getElementById('f-model').value];").await?;
    check(sel[0].as_str() == Some("false") && sel[1].as_str() == Some(model.as_str()), format!("the selects after reload are {sel}"))?;

    // 4b. "Download CSV": every matching row (not one page), in the order shown.
    csv_download(c, run_dir, &records, &filter, incorrect).await?;

    // 5. Flipped vs base, computed natively from the same records, combined with the filter.
    let api: Vec<ApiRecord> =
        records.iter().enumerate().map(|(i, r)| ApiRecord { index: i, image_id: String::new(), record: r.clone() }).collect();
    let flipped = flipped_vs_base(&api);
    let want_flipped = records.iter().zip(&flipped).filter(|(r, f)| **f && filter.matches(r)).count();
    js(c, "document.getElementById('f-flipped').click(); return null;").await?;
    wait_count(c, want_flipped, "incorrect and flipped vs base").await?;
    let search = js(c, "return location.search;").await?;
    check(
        search.as_str().is_some_and(|s| s.contains("flipped=true") && s.contains("correct=false")),
        format!("URL after flipped: {search}"),
    )?;

    // 6. The study view.
    study_view(c, &base, &records, artifacts).await?;

    // 6b. The compare page: upload an image and a question, one card per model.
    compare_page(c, &base, n_models, artifacts).await?;

    // 6c. The explorer at scale: 2,000 synthetic records (whole demo studies copied under new
    // ids) beside the demo run; each filter's count equals the shared code's.
    let template = run_dir.to_path_buf();
    let big = run_dir.with_file_name("scale");
    let synthetic = tokio::task::spawn_blocking(move || crate::support::synthetic_run::scale_up(&template, &big, 2000, 1))
        .await
        .map_err(|e| e.to_string())?;
    let figures = super::scale::explorer_at_scale(c, &base, "scale", &synthetic).await?;
    eprintln!("dashboard e2e: 2,000 records: {figures:?} (ms, not asserted)");
    super::scale::csv_spans_every_page(c, &base, "scale", &synthetic, "correct=false&sort=-focus").await?;

    // 7. A share link (POST /api/share) reopens the explorer view read-only, without the
    // sign-in cookie.
    let query = format!("correct=false&model={model}");
    c.goto(&format!("{base}/runs/{RUN}/records?{query}")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count') ? true : null;", "the explorer").await?;
    wait_count(c, incorrect, "before sharing").await?;
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
    wait_count(c, incorrect, "through the share link").await?;
    screenshot(c, &artifacts.join("dashboard-shared.png")).await?;
    Ok(())
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
        .filter(|r| filter.matches(r))
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

/// The study view: one card per variant x model, each canvas drawn with non-uniform pixels, and
/// the opacity slider (kept in the URL) changing them.
async fn study_view(c: &Client, base: &str, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let study = records[0].study_id.clone();
    let cards = records.iter().filter(|r| r.study_id == study && r.pass == radlens_shared::record::Pass::Image).count();
    let maps = records.iter().filter(|r| r.study_id == study && r.pass == radlens_shared::record::Pass::Image && r.map.is_some()).count();
    check(maps > 0, format!("study {study} has no maps"))?;
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?opacity=0.8")).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        &format!("const n = document.querySelectorAll('canvas.overlay-map[data-drawn=\"true\"]').length; return n === {maps} ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);"),
        &format!("{maps} drawn maps"),
    )
    .await
    .and_then(|v| if v == Value::Bool(true) { Ok(()) } else { Err(format!("the study view shows an error: {v}")) })?;
    let n_cards = js(c, "return document.querySelectorAll('article.case').length;").await?;
    check(n_cards.as_u64() == Some(cards as u64), format!("{n_cards} cards for {cards} image-pass records"))?;
    methods_side_by_side(c, records, &study).await?;
    trust_checks(c, records, &study).await?;
    let prov = js(c, "return [...document.querySelectorAll('[data-testid=provenance]')].map(p => p.textContent);").await?;
    check(
        prov.as_array().is_some_and(|a| {
            a.iter().filter(|t| t.as_str().is_some_and(|t| t.contains("grid") && t.contains("image share"))).count() == maps
        }),
        format!("provenance lines: {prov}"),
    )?;
    // Images loaded (through the cookie-authenticated API).
    wait_for_js(
        c,
        "return [...document.querySelectorAll('figure.overlay img')].every(i => i.complete && i.naturalWidth > 0) || null;",
        "the X-ray images",
    )
    .await?;
    let pixels = "const cv = document.querySelector('canvas.overlay-map'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; \
        const seen = new Set(); let alpha = 0, sum = 0; for (let i = 0; i < d.length; i += 4) { seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); alpha += d[i+3]; sum += d[i] + d[i+1] + d[i+2]; } \
        return [seen.size, alpha / (d.length / 4), sum, cv.width, cv.height];";
    let before = js(c, pixels).await?;
    check(before[0].as_u64().unwrap_or(0) > 1, format!("the overlay is uniform: {before}"))?;
    check((before[1].as_f64().unwrap_or(0.0) - 204.0).abs() < 1.5, format!("alpha at opacity 0.8: {before}"))?;
    screenshot(c, &artifacts.join("dashboard-study.png")).await?;
    js(c, "const el = document.getElementById('opacity'); el.value = '0.3'; el.dispatchEvent(new Event('input', {bubbles: true})); return null;").await?;
    wait_for_js(c, "return location.search.includes('opacity=0.3') || null;", "opacity=0.3 in the URL").await?;
    let deadline = Instant::now() + super::WAIT;
    loop {
        let after = js(c, pixels).await?;
        if after != before && (after[1].as_f64().unwrap_or(0.0) - 76.5).abs() < 1.5 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("changing the opacity did not change the overlay: {before} -> {after}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screenshot(c, &artifacts.join("dashboard-study-faint.png")).await?;
    overlay_controls(c, base, &study, artifacts).await
}

/// The demo run makes Grad-CAM and relative maps: each image-pass card shows its maps side by
/// side, every one drawn, with the pairwise JS distance the browser computes (shared code) equal
/// to what the run stored in the record.
async fn methods_side_by_side(c: &Client, records: &[CaseRecord], study: &str) -> Res<()> {
    let mut checked = 0;
    for (i, r) in records.iter().enumerate() {
        if r.study_id != study || r.pass != radlens_shared::record::Pass::Image {
            continue;
        }
        let methods = radlens_frontend::methods::panel_methods(r);
        check(methods.len() >= 2, format!("record {i} has no other method's map: {:?}", r.trust))?;
        let sel = format!("[data-testid=methods][data-index=\"{i}\"]");
        wait_for_js(
            c,
            &format!("const s = document.querySelector('{sel}'); return s && s.querySelectorAll('canvas.method-overlay[data-drawn=\"true\"]').length === {} && s.querySelectorAll('.method-js tr[data-js]:not([data-js=\"\"])').length === {} || null;", methods.len(), methods.len() * (methods.len() - 1) / 2),
            &format!("record {i}: {} maps drawn side by side with their JS", methods.len()),
        )
        .await?;
        let rows = js(c, &format!("return [...document.querySelectorAll('{sel} .method-js tr[data-js]')].map(t => [t.dataset.a, t.dataset.b, parseFloat(t.dataset.js)]);")).await?;
        let stored = &r.trust.as_ref().expect("trust").agreement;
        for row in rows.as_array().into_iter().flatten() {
            let (a, b, got) =
                (row[0].as_str().unwrap_or_default(), row[1].as_str().unwrap_or_default(), row[2].as_f64().unwrap_or(f64::NAN));
            let want = stored.iter().find(|p| p.a.to_string() == a && p.b.to_string() == b).map(|p| p.js_distance);
            check(
                want.is_some_and(|w| (w - got).abs() < 1e-4),
                format!("record {i}: JS {a} vs {b} is {got} in the browser, {want:?} stored"),
            )?;
        }
        checked += 1;
    }
    check(checked > 0, format!("no image-pass record in study {study}"))
}

/// The demo run makes deletion tests and sink checks: each image-pass card lists one deletion
/// row per stored test (method and k in the stored order) with a "not faithful" badge exactly
/// where the record is flagged, and the sink count, with the sink cells outlined in magenta on
/// its overlay.
async fn trust_checks(c: &Client, records: &[CaseRecord], study: &str) -> Res<()> {
    let mut deletions = 0;
    for (i, r) in records.iter().enumerate() {
        if r.study_id != study || r.pass != radlens_shared::record::Pass::Image || r.map.is_none() {
            continue;
        }
        let stored = radlens_frontend::methods::deletion_rows(r);
        check(!stored.is_empty(), format!("record {i} has no deletion test: {:?}", r.trust))?;
        let sel = format!("[data-testid=trust][data-index=\"{i}\"]");
        let rows = wait_for_js(
            c,
            &format!("const rows = [...document.querySelectorAll('{sel} table.deletions tbody tr')]; return rows.length ? rows.map(t => [t.dataset.method, t.dataset.k, t.dataset.flagged, t.querySelector('[data-testid=verdict]').textContent]) : null;"),
            &format!("record {i}: its deletion table"),
        )
        .await?;
        let want: Vec<Value> = stored
            .iter()
            .map(|f| {
                serde_json::json!([
                    f.method.to_string(),
                    f.k_percent.to_string(),
                    f.flagged.to_string(),
                    radlens_frontend::methods::deletion_verdict(f)
                ])
            })
            .collect();
        check(rows == Value::Array(want.clone()), format!("record {i}: deletion rows {rows}, stored {want:?}"))?;
        deletions += stored.len();
        let cells = radlens_frontend::methods::sink_cells(r);
        check(r.trust.as_ref().is_some_and(|t| t.sinks.is_some()), format!("record {i} has no sink check"))?;
        let shown = js(c, &format!("return [document.querySelector('{sel} [data-testid=sinks]')?.dataset.cells, document.querySelector('canvas.overlay-map[data-index=\"{i}\"]').dataset.sinks];")).await?;
        let list = cells.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        check(shown == serde_json::json!([cells.len().to_string(), list]), format!("record {i}: sinks shown {shown}, stored {cells:?}"))?;
        // Outlined cells: magenta pixels on the overlay exactly when the study has sinks.
        let magenta = js(c, &format!("const cv = document.querySelector('canvas.overlay-map[data-index=\"{i}\"]'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; let n = 0; for (let j = 0; j < d.length; j += 4) if (d[j] === 255 && d[j+1] === 0 && d[j+2] === 255 && d[j+3] === 255) n++; return n;")).await?;
        check(
            (magenta.as_u64().unwrap_or(0) > 0) == !cells.is_empty(),
            format!("record {i}: {magenta} magenta pixels for sink cells {cells:?}"),
        )?;
    }
    check(deletions > 0, format!("no deletion test shown in study {study}"))
}

/// Sets a control's value and fires `input` and `change`.
async fn set_control(c: &Client, id: &str, value: &str) -> Res<()> {
    js(c, &format!("const el = document.getElementById('{id}'); el.value = '{value}'; el.dispatchEvent(new Event('input', {{bubbles: true}})); el.dispatchEvent(new Event('change', {{bubbles: true}})); return null;")).await?;
    Ok(())
}

/// Waits until `pred` (a JS expression over `st`, the first overlay's pixel statistics) holds.
async fn wait_pixels(c: &Client, pred: &str, what: &str) -> Res<Value> {
    let script = format!(
        "const cv = document.querySelector('canvas.overlay-map'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; \
         const seen = new Set(); let hidden = 0, shown = 0; const has = (r, g, b) => {{ for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i+1] === g && d[i+2] === b) return true; return false; }}; \
         for (let i = 0; i < d.length; i += 4) {{ seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); if (d[i+3] === 0) hidden++; else shown++; }} \
         const st = {{colours: seen.size, hidden, shown, has}}; return ({pred}) ? [st.colours, hidden, shown] : null;"
    );
    wait_for_js(c, &script, what).await
}

/// Threshold, colour map, percentile clipping and upsampling (all in the URL), and the hover
/// status line under a map.
async fn overlay_controls(c: &Client, base: &str, study: &str, artifacts: &Path) -> Res<()> {
    // Hover: the cell at the middle of the first map's grid, checked against the map JSON.
    let idx = js(c, "return document.querySelector('canvas.overlay-map').dataset.index;").await?;
    let idx = idx.as_str().unwrap_or_default().to_owned();
    let map =
        js(c, &format!("return fetch('/api/runs/{RUN}/records/{idx}/map').then(r => r.json()).then(m => [m.h, m.w, m.values]);")).await?;
    let (h, w) = (map[0].as_u64().unwrap_or(1), map[1].as_u64().unwrap_or(1));
    let (row, col) = (h / 2, w / 2);
    let want = map[2][(row * w + col) as usize].as_f64().unwrap_or(f64::NAN);
    // clientX/Y are whole pixels: aim at the cell's centre.
    let hovered = wait_for_js(
        c,
        &format!("const cv = document.querySelector('canvas.overlay-map'); const r = cv.getBoundingClientRect(); \
         cv.parentElement.dispatchEvent(new MouseEvent('mousemove', {{clientX: r.left + r.width * {fx}, clientY: r.top + r.height * {fy}, bubbles: true}})); \
         const s = document.querySelector('[data-testid=cell-status][data-index=\"{idx}\"]'); \
         return s && s.dataset.row !== '' ? [+s.dataset.row, +s.dataset.col, +s.dataset.patch, +s.dataset.value, s.textContent] : null;",
            fx = (col as f64 + 0.5) / w as f64, fy = (row as f64 + 0.5) / h as f64),
        "the hover status line",
    )
    .await?;
    check(
        hovered[0].as_u64() == Some(row)
            && hovered[1].as_u64() == Some(col)
            && hovered[2].as_u64() == Some(row * w + col)
            && (hovered[3].as_f64().unwrap_or(f64::NAN) - want).abs() <= 1e-9 * want.abs().max(1.0)
            && hovered[4].as_str().is_some_and(|t| t.contains(&format!("row {row}, col {col}, patch {}", row * w + col))),
        format!("hover status {hovered}, want row {row} col {col} value {want}"),
    )?;
    // Threshold: some cells hidden, some shown.
    set_control(c, "threshold", "0.5").await?;
    wait_for_js(c, "return location.search.includes('threshold=0.5') || null;", "threshold in the URL").await?;
    wait_pixels(c, "st.hidden > 0 && st.shown > 0", "threshold hides the cool cells").await?;
    screenshot(c, &artifacts.join("dashboard-study-threshold.png")).await?;
    set_control(c, "threshold", "0").await?;
    wait_pixels(c, "st.hidden === 0", "threshold 0 shows every cell").await?;
    // Colour maps: the hottest cell takes the map's top colour (read back exactly only when
    // opaque: the canvas stores premultiplied alpha).
    set_control(c, "opacity", "1").await?;
    wait_for_js(c, "return location.search.includes('opacity=1&') || null;", "opacity 1 in the URL").await?;
    wait_pixels(c, "st.has(253, 231, 37)", "viridis' top colour").await?;
    set_control(c, "colormap", "inferno").await?;
    wait_for_js(c, "return location.search.includes('cmap=inferno') || null;", "cmap in the URL").await?;
    wait_pixels(c, "st.has(252, 255, 164) && !st.has(253, 231, 37)", "inferno's top colour").await?;
    // Smooth upsampling interpolates: many more colours than cells.
    let nearest = wait_pixels(c, "true", "pixels").await?;
    set_control(c, "upsample", "smooth").await?;
    wait_for_js(c, "return location.search.includes('smooth=1') || null;", "smooth in the URL").await?;
    let n_near = nearest[0].as_u64().unwrap_or(0);
    wait_pixels(c, &format!("st.colours > {n_near}"), "smooth upsampling adds colours").await?;
    screenshot(c, &artifacts.join("dashboard-study-inferno-smooth.png")).await?;
    // Clipping at p90 saturates more pixels (the top colour is reached below the max).
    set_control(c, "upsample", "nearest").await?;
    set_control(c, "colormap", "gray").await?;
    let count_white = "const cv = document.querySelector('canvas.overlay-map'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i+1] === 255 && d[i+2] === 255) n++; return n;";
    wait_for_js(
        c,
        "return (location.search.includes('cmap=gray') && location.search.includes('smooth=0')) || null;",
        "gray, nearest in the URL",
    )
    .await?;
    let white_before =
        wait_for_js(c, &format!("const n = (() => {{ {count_white} }})(); return n > 0 ? n : null;"), "gray top colour").await?;
    set_control(c, "clip", "90").await?;
    wait_for_js(c, "return location.search.includes('clip=90') || null;", "clip in the URL").await?;
    wait_for_js(
        c,
        &format!("const n = (() => {{ {count_white} }})(); return n > {} ? n : null;", white_before),
        "clipping at p90 saturates more cells",
    )
    .await?;
    // The state survives a reload from the URL.
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?opacity=0.5&threshold=0.2&cmap=inferno&clip=95&smooth=1"))
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        "return (document.getElementById('colormap')?.value === 'inferno' && document.getElementById('upsample')?.value === 'smooth' && document.getElementById('clip')?.value === '95' && document.getElementById('threshold')?.value === '0.2' && document.querySelector('canvas.overlay-map[data-drawn=\"true\"]') !== null) || null;",
        "controls restored from the URL",
    )
    .await?;
    colour_bar(c).await?;
    screenshot(c, &artifacts.join("dashboard-study-controls.png")).await?;
    refusion(c, base, study, artifacts).await
}

/// The first card's colour bar under `cmap=inferno&clip=95&threshold=0.2`: it ends at the
/// map's 95th percentile (at most the max, so under 1/0.2 of the cut), its pixels are the
/// native `ColorBar::rgba` of the same numbers (inferno, transparent below the threshold).
async fn colour_bar(c: &Client) -> Res<()> {
    use radlens_frontend::colormap::Colormap;
    use radlens_frontend::study::{ColorBar, OverlayOpts};
    let v = wait_for_js(
        c,
        "const bar = document.querySelector('[data-testid=colorbar]'); if (!bar || bar.dataset.scale === '') return null; \
        const cv = bar.querySelector('canvas'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, 1).data; \
        return [bar.dataset.cmap, +bar.dataset.scale, +bar.dataset.cut, cv.width, Array.from(d), bar.textContent];",
        "the colour bar",
    )
    .await?;
    let (scale, cut, width) = (v[1].as_f64().unwrap_or(f64::NAN), v[2].as_f64().unwrap_or(f64::NAN), v[3].as_u64().unwrap_or(0) as usize);
    check(v[0] == "inferno", format!("colour bar colour map {}", v[0]))?;
    check(scale > 0.0 && cut > 0.0 && scale <= cut / 0.2 * (1.0 + 1e-12), format!("colour bar scale {scale}, cut {cut}"))?;
    let opts = OverlayOpts { colormap: Colormap::Inferno, threshold: 0.2, clip: 95.0, ..OverlayOpts::default() };
    let want = ColorBar { scale, cut }.rgba(&opts, width, 1);
    let got: Vec<u8> = v[4].as_array().map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0) as u8).collect()).unwrap_or_default();
    check(got.len() == want.len(), format!("{} bar bytes, {} expected", got.len(), want.len()))?;
    // Transparent pixels read back as 0,0,0,0 from a canvas; compare colours where opaque.
    for (x, (g, w)) in got.chunks(4).zip(want.chunks(4)).enumerate() {
        let same = if w[3] == 0 { g[3] == 0 } else { g.iter().zip(w).all(|(a, b)| a.abs_diff(*b) <= 1) };
        check(same, format!("colour bar column {x}: {g:?} in the browser, {w:?} natively"))?;
    }
    check(want.chunks(4).any(|p| p[3] == 0), "the threshold hides the low end of the bar")?;
    check(v[5].as_str().is_some_and(|t| t.contains("p95") && t.contains("hidden")), format!("colour bar labels {}", v[5]))?;
    Ok(())
}

/// Every card's re-fused metrics (`[index, focus, gini, entropy, stored focus, gini, entropy]`)
/// once all are computed, or the first re-fusion error.
const REFUSED: &str = "const ps = [...document.querySelectorAll('[data-testid=refused]')]; \
    const bad = ps.find(p => p.textContent.includes('failed')); if (bad) return bad.textContent; \
    if (ps.length === 0 || ps.some(p => p.dataset.focus === '')) return null; \
    return ps.map(p => [p.dataset.index, +p.dataset.focus, +p.dataset.gini, +p.dataset.entropy, +p.dataset.storedFocus, +p.dataset.storedGini, +p.dataset.storedEntropy]);";

fn refused_rows(v: &Value) -> Res<Vec<Vec<f64>>> {
    let a = v.as_array().ok_or_else(|| format!("re-fusion: {v}"))?;
    Ok(a.iter()
        .map(|r| r.as_array().map(|r| r[1..].iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default())
        .collect())
}

fn all_equal_stored(rows: &[Vec<f64>]) -> bool {
    rows.iter().all(|r| r.len() == 6 && (0..3).all(|i| (r[i] - r[i + 3]).abs() <= 1e-6))
}

/// Re-fusion from rows.bin: as stored it reproduces the stored metrics to 1e-6; another head
/// fusion changes them; the choice lives in the URL.
async fn refusion(c: &Client, base: &str, study: &str, artifacts: &Path) -> Res<()> {
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}")).await.map_err(|e| e.to_string())?;
    let stored = wait_for_js(c, REFUSED, "re-fused metrics").await?;
    let rows = refused_rows(&stored)?;
    check(!rows.is_empty() && all_equal_stored(&rows), format!("re-fused as stored != stored metrics: {stored}"))?;
    set_control(c, "fusion", "max").await?;
    wait_for_js(c, "return location.search.includes('fusion=max') || null;", "fusion in the URL").await?;
    let deadline = Instant::now() + super::WAIT;
    loop {
        let v = js(c, REFUSED).await?;
        if let Ok(r) = refused_rows(&v) {
            if !r.is_empty() && !all_equal_stored(&r) {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("max head fusion did not change the metrics: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screenshot(c, &artifacts.join("dashboard-study-refused-max.png")).await?;
    // Back to the stored fusion with every layer checkbox checked (each map uses the layers
    // it captured, i.e. all of them): equal again.
    set_control(c, "fusion", "").await?;
    let layers = js(c, "const boxes = [...document.querySelectorAll('#layers input.layer')]; boxes.forEach(b => b.click()); return boxes.map(b => b.dataset.layer).join(',');").await?;
    let layers = layers.as_str().unwrap_or_default().to_owned();
    check(!layers.is_empty(), "the study view has layer checkboxes")?;
    wait_for_js(
        c,
        &format!(
            "return (location.search.includes('layers={}') && !location.search.includes('fusion=')) || null;",
            layers.replace(',', "%2C")
        ),
        "the checked layers in the URL",
    )
    .await?;
    let deadline = Instant::now() + super::WAIT;
    loop {
        let v = js(c, REFUSED).await?;
        if refused_rows(&v).is_ok_and(|r| !r.is_empty() && all_equal_stored(&r)) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("layers=all did not restore the stored metrics: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reload: the same boxes are checked.
    c.refresh().await.map_err(|e| e.to_string())?;
    wait_for_js(c, &format!("const b = [...document.querySelectorAll('#layers input.layer')]; return (b.length > 0 && b.every(x => x.checked) && b.map(x => x.dataset.layer).join(',') === '{layers}') || null;"), "the layer checkboxes restored by a reload").await?;
    // A layer that was not captured is an error message, not a panic.
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?layers=999")).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        "return [...document.querySelectorAll('[data-testid=refused]')].some(p => p.textContent.includes('not captured')) || null;",
        "the uncaptured-layer message",
    )
    .await?;
    pin_and_compare(c, base, study, artifacts).await
}

/// Pin a card: the other cards of its model show the JS distance to it (equal to the matrix
/// cell), one of them draws the difference map; the per-model JS matrix is symmetric with a
/// zero diagonal.
async fn pin_and_compare(c: &Client, base: &str, study: &str, artifacts: &Path) -> Res<()> {
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}")).await.map_err(|e| e.to_string())?;
    let matrix = wait_for_js(
        c,
        "const models = new Set([...document.querySelectorAll('article.case[data-model]')].map(a => a.dataset.model)); \
         const ts = [...document.querySelectorAll('table.js-matrix')]; if (ts.length !== models.size) return null; \
         const cells = ts.flatMap(t => [...t.querySelectorAll('td[data-a]')].filter(td => td.dataset.a !== '' && td.dataset.b !== '').map(td => [t.dataset.model, td.dataset.a, td.dataset.b, td.dataset.js])); \
         if (cells.length === 0 || cells.some(x => x[3] === '')) return null; return cells;",
        "the JS matrices",
    )
    .await?;
    let cells: Vec<(String, String, String, f64)> = matrix
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x[0].as_str().unwrap_or_default().to_owned(),
                        x[1].as_str().unwrap_or_default().to_owned(),
                        x[2].as_str().unwrap_or_default().to_owned(),
                        x[3].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let cell = |a: &str, b: &str| cells.iter().find(|x| x.1 == a && x.2 == b).map(|x| x.3);
    for (_, a, b, d) in &cells {
        check(d.is_finite() && *d >= 0.0 && *d <= 1.0, format!("JS distance {a}-{b}: {d}"))?;
        check(cell(b, a) == Some(*d), format!("matrix not symmetric at {a},{b}"))?;
        if a == b {
            check(*d < 1e-6, format!("diagonal {a}: {d}"))?;
        }
    }
    // Pin the first card.
    let pinned = js(
        c,
        "const b = document.querySelector('[data-testid=pin]'); b.click(); return [b.dataset.index, b.closest('article').dataset.model];",
    )
    .await?;
    let (pin, model) = (pinned[0].as_str().unwrap_or_default().to_owned(), pinned[1].as_str().unwrap_or_default().to_owned());
    wait_for_js(c, &format!("return location.search.includes('pin={pin}') || null;"), "the pin in the URL").await?;
    let others = js(c, &format!("return [...document.querySelectorAll('article.case[data-model=\"{model}\"]')].filter(a => a.querySelector('canvas') && a.dataset.index !== '{pin}').map(a => a.dataset.index);")).await?;
    let others: Vec<String> =
        others.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default();
    check(!others.is_empty(), format!("no other card of {model} to compare"))?;
    let shown = wait_for_js(
        c,
        &format!("const s = [...document.querySelectorAll('[data-testid=js-to-pin]')]; return s.length === {} ? s.map(e => [e.closest('article').dataset.index, e.closest('article').dataset.model, e.dataset.js]) : null;", others.len()),
        "the JS distances to the pinned card",
    )
    .await?;
    for row in shown.as_array().into_iter().flatten() {
        let idx = row[0].as_str().unwrap_or_default();
        let d: f64 = row[2].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        check(row[1].as_str() == Some(model.as_str()), format!("a card of another model compares to the pin: {row}"))?;
        let want = cell(&pin, idx).ok_or_else(|| format!("no matrix cell {pin},{idx}"))?;
        check((d - want).abs() <= 1e-9, format!("card {idx}: JS to pin {d}, matrix {want}"))?;
    }
    // The difference map of one of them.
    let other = &others[0];
    let sig = format!(
        "const cv = document.querySelector('canvas.overlay-map[data-index=\"{other}\"]'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; let h = 0; for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] * 7 + d[i+1] * 3 + d[i+2]) % 1000000007; return h;"
    );
    let before = js(c, &sig).await?;
    js(c, &format!("document.querySelector('input[data-testid=diff][data-index=\"{other}\"]').click(); return null;")).await?;
    wait_for_js(
        c,
        &format!("return document.querySelector('canvas.overlay-map[data-index=\"{other}\"]')?.dataset.diff === 'true' || null;"),
        "the difference map",
    )
    .await?;
    let deadline = Instant::now() + super::WAIT;
    while js(c, &sig).await? == before {
        if Instant::now() > deadline {
            return Err("the difference map did not change the pixels".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The toggle is in the URL: a reload draws the same difference map.
    wait_for_js(c, &format!("return location.search.includes('diff={other}') || null;"), "diff in the URL").await?;
    let diff_pixels = js(c, &sig).await?;
    c.refresh().await.map_err(|e| e.to_string())?;
    wait_for_js(c, &format!("const cv = document.querySelector('canvas.overlay-map[data-index=\"{other}\"]'); const box = document.querySelector('input[data-testid=diff][data-index=\"{other}\"]'); return (cv?.dataset.diff === 'true' && box?.checked) || null;"), "the difference map restored by a reload").await?;
    let deadline = Instant::now() + super::WAIT;
    while js(c, &sig).await? != diff_pixels {
        if Instant::now() > deadline {
            return Err("the reloaded difference map has other pixels".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    js(c, &format!("document.querySelector('article.case[data-index=\"{other}\"]').scrollIntoView({{block: 'center'}}); return null;"))
        .await?;
    screenshot(c, &artifacts.join("dashboard-study-pinned.png")).await?;
    js(c, "document.querySelector('#js-matrices').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("dashboard-study-js-matrix.png")).await?;
    // Unpin: the comparisons go away.
    js(c, &format!("document.querySelector('[data-testid=pin][data-index=\"{pin}\"]').click(); return null;")).await?;
    wait_for_js(
        c,
        "return (document.querySelectorAll('[data-testid=js-to-pin]').length === 0 && !location.search.includes('pin=')) || null;",
        "no comparisons (nor pin in the URL) after unpinning",
    )
    .await?;
    // A pin in the URL is restored on load.
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?pin={pin}")).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        &format!("return document.querySelectorAll('[data-testid=js-to-pin]').length === {} || null;", others.len()),
        "the pin restored from the URL",
    )
    .await?;
    Ok(())
}

/// The compare page: the nav link leads there; an uploaded fixture image and a question (kept
/// in the URL) give one card per `--model` with a drawn, non-uniform overlay, and a table of
/// the cross-model JS divergence.
async fn compare_page(c: &Client, base: &str, n_models: usize, artifacts: &Path) -> Res<()> {
    let image = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/reference-v1/images/img_b_rgb_300x240.png")
        .canonicalize()
        .map_err(|e| format!("the fixture image: {e}"))?;
    c.goto(&format!("{base}/")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.querySelector('.site-nav a[href=\"/compare\"]') ? true : null;", "the Compare nav link").await?;
    js(c, "document.querySelector('.site-nav a[href=\"/compare\"]').click(); return null;").await?;
    wait_for_js(
        c,
        "return (location.pathname === '/compare' && document.getElementById('compare-form')) ? true : null;",
        "the compare page",
    )
    .await?;
    // Submitting without an image says so.
    js(c, "document.getElementById('compare-submit').click(); return null;").await?;
    wait_for_js(c, "return document.querySelector('[data-testid=form-error]') ? true : null;", "the missing-image message").await?;
    c.find(Locator::Css("#compare-image"))
        .await
        .map_err(|e| e.to_string())?
        .send_keys(&image.to_string_lossy())
        .await
        .map_err(|e| format!("choose the file: {e}"))?;
    c.find(Locator::Css("#compare-question"))
        .await
        .map_err(|e| e.to_string())?
        .send_keys("Is there a pleural effusion?")
        .await
        .map_err(|e| e.to_string())?;
    wait_for_js(c, "return location.search.includes('q=Is%20there') || null;", "the question in the URL").await?;
    js(c, "document.getElementById('compare-submit').click(); return null;").await?;
    let v = wait_for_js(
        c,
        &format!(
            "const n = document.querySelectorAll('article.compare-card canvas.overlay-map[data-drawn=\"true\"]').length; \
            if (n === {n_models} && document.querySelector('table.cross-js')) return true; \
            return document.querySelector('[data-testid=api-error]')?.textContent ?? null;"
        ),
        &format!("{n_models} compare cards with drawn maps"),
    )
    .await?;
    check(v == Value::Bool(true), format!("the compare page shows an error: {v}"))?;
    let cards = js(c, "return [...document.querySelectorAll('article.compare-card')].map(a => a.dataset.model);").await?;
    check(cards.as_array().map(|a| a.len()) == Some(n_models), format!("compare cards {cards} for {n_models} models"))?;
    wait_for_js(c, "return [...document.querySelectorAll('article.compare-card figure.overlay img')].every(i => i.complete && i.naturalWidth === 300 && i.naturalHeight === 240) || null;", "the uploaded image in every card").await?;
    let uniform = js(c, "return [...document.querySelectorAll('article.compare-card canvas.overlay-map')].map(cv => { const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; \
        const seen = new Set(); for (let i = 0; i < d.length; i += 4) seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]); return seen.size; });").await?;
    check(
        uniform.as_array().is_some_and(|a| a.len() == n_models && a.iter().all(|n| n.as_u64().unwrap_or(0) > 1)),
        format!("distinct colours per compare canvas: {uniform}"),
    )?;
    let rows = js(c, "return [...document.querySelectorAll('table.cross-js tbody tr')].map(r => Number(r.dataset.js));").await?;
    let want_rows = n_models * n_models.saturating_sub(1) / 2;
    check(
        rows.as_array().is_some_and(|a| a.len() == want_rows && a.iter().all(|d| d.as_f64().is_some_and(|d| d.is_finite() && d >= 0.0))),
        format!("cross-model JS rows {rows}, want {want_rows}"),
    )?;
    let facts = js(c, "return [...document.querySelectorAll('article.compare-card')].map(a => [a.querySelector('.answer')?.textContent, a.querySelector('.metrics')?.textContent, a.querySelector('[data-testid=provenance]')?.textContent]);").await?;
    check(
        facts.as_array().is_some_and(|a| {
            a.iter().all(|f| f[1].as_str().is_some_and(|t| t.contains("focus")) && f[2].as_str().is_some_and(|t| t.contains("grid")))
        }),
        format!("compare card facts: {facts}"),
    )?;
    screenshot(c, &artifacts.join("dashboard-compare.png")).await?;
    // A file that is not an image: the server's error (415) is shown as text.
    let not_image = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    c.find(Locator::Css("#compare-image"))
        .await
        .map_err(|e| e.to_string())?
        .send_keys(&not_image.to_string_lossy())
        .await
        .map_err(|e| format!("choose the file: {e}"))?;
    js(c, "document.getElementById('compare-submit').click(); return null;").await?;
    let err = wait_for_js(
        c,
        "return document.querySelector('.compare-page [data-testid=api-error]')?.textContent ?? null;",
        "the server's error for a non-image",
    )
    .await?;
    check(
        err.as_str().is_some_and(|t| t.contains("415") || t.to_lowercase().contains("image")),
        format!("the error for a non-image: {err}"),
    )?;
    check(js(c, "return document.querySelectorAll('article.compare-card').length;").await? == Value::from(0), "no cards beside the error")?;
    screenshot(c, &artifacts.join("dashboard-compare-error.png")).await?;
    // The question survives a reload (the image does not).
    c.refresh().await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        "return document.getElementById('compare-question')?.value === 'Is there a pleural effusion?' || null;",
        "the question restored from the URL",
    )
    .await?;
    Ok(())
}

/// The overview's per-strategy and per-finding plots (as many whiskers as the analysis has
/// intervals, each plot painted; full consistency per finding exactly when the analysis has it), the paired comparisons and the disagreement table (one row
/// per study the models answered differently, linking to its study view).
async fn overview_breakdowns(c: &Client, analysis: &Analysis) -> Res<()> {
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
    overview_trust(c, analysis).await
}

/// The overview's trust tables: one agreement row per method pair, one faithfulness row per
/// method and k (with the flagged count) and one sink row per model, as analysis.json has them.
async fn overview_trust(c: &Client, analysis: &Analysis) -> Res<()> {
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
