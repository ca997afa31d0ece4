//! `radlens export` end to end: the demo run exported by the real binary, served under a
//! sub-path (`/site/`) by a plain file host (no SPA fallback, folders redirected to their `/`,
//! no radlens server), in headless Chromium. Deep links typed into the address bar open the
//! overview (headline rows = analysis.json's models), the records explorer (total and
//! "incorrect" counts = records.jsonl's; its CSV download, made in the page) and a study view
//! (every map canvas drawn, the X-ray loaded) of a study whose id holds a space and a slash (the
//! demo CSV's first study renamed), through its encoded folder, typed and clicked; share and compare are
//! hidden; in-app links keep the sub-path. Screenshot:
//! `<target>/browser-e2e/export-study.png`.

use std::path::Path;
use std::time::Duration;

use fantoccini::Client;
use radlens_shared::filter::RecordFilter;
use radlens_shared::record::{Analysis, Pass};
use serde_json::Value;

use super::driver::ChromeDriver;
use super::server::StaticServer;
use super::{Res, artifact_dir, check, close_session, js, open_session, preflight, run_scenario, screenshot, wait_for_js};
use crate::support::{Scratch, radlens};

const RUN: &str = "demo";
/// The first demo study's id in this test: a space and a slash, which no folder name may hold.
const ODD_STUDY: &str = "pt 7/a b";
/// Its folder in the export (`static_site::study_segment`).
const ODD_FOLDER: &str = "pt~207~2Fa~20b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_site_works_from_a_plain_file_host_under_a_sub_path() {
    preflight();
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser-e2e artifact dir");
    let scratch = Scratch::new("browser-export");
    let root = scratch.path().to_path_buf();
    let run_dir = root.join("runs").join(RUN);
    let r2 = run_dir.clone();
    let m = root.join("models");
    // The demo CSV with its first study renamed (the study ids are its first column).
    let demo_csv = std::fs::read_to_string(crate::support::demo_run::demo_csv()).expect("demo CSV");
    let first = demo_csv.lines().nth(1).and_then(|l| l.split(',').next()).expect("a first study").to_owned();
    let csv = root.join("study.csv");
    let edited: Vec<String> = demo_csv
        .lines()
        .map(|l| match l.strip_prefix(&format!("{first},")) {
            Some(rest) => format!("{ODD_STUDY},{rest}"),
            None => l.to_owned(),
        })
        .collect();
    std::fs::write(&csv, edited.join("\n") + "\n").unwrap();
    let demo =
        tokio::task::spawn_blocking(move || crate::support::demo_run::build_from(&csv, &m, &r2, 2, vec!["radlens".into(), "study".into()]))
            .await
            .expect("demo run");

    // A folder holding someone's files is refused, by name, and left alone.
    let taken = root.join("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let out = radlens(&["export", run_dir.to_str().unwrap(), "--out", taken.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(taken.to_str().unwrap()) && err.contains("not a previous radlens export"),
        "export into a non-empty folder: {:?}\n{err}",
        out.status
    );
    assert_eq!(std::fs::read_to_string(taken.join("notes.txt")).unwrap(), "mine");

    // The export, twice (the second replaces the first).
    let www = root.join("www");
    let site = www.join("site");
    for _ in 0..2 {
        let images = demo.images.to_str().unwrap();
        let out = radlens(&["export", run_dir.to_str().unwrap(), "--out", site.to_str().unwrap(), "--images", images]);
        assert!(out.status.success(), "radlens export failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(site.join("runs/demo/records/index.html").is_file());
    // Every study has a deep-link folder directly under studies/, the odd id encoded.
    let mut folders: Vec<String> =
        std::fs::read_dir(site.join("runs/demo/studies")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    folders.sort();
    let mut want: Vec<String> =
        crate::support::run_records(&run_dir).iter().map(|r| radlens_shared::static_site::study_segment(&r.study_id)).collect();
    want.sort();
    want.dedup();
    assert_eq!(folders, want);
    assert!(site.join("runs/demo/studies").join(ODD_FOLDER).join("index.html").is_file(), "{folders:?}");

    let server = StaticServer::start_plain(www).await.expect("start the plain file host");
    let driver = ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = open_session(&driver).await;
    let base = format!("{}/site", server.base_url());
    let outcome = run_scenario(&client, &artifacts, Duration::from_secs(90), scenario(&client, &base, &run_dir, &artifacts)).await;
    close_session(client).await;
    drop(driver);
    drop(server);
    outcome.report("export e2e");
}

/// Waits until `ready` (a JS expression) is true, or fails with the page's API error.
async fn wait_ready(c: &Client, ready: &str, what: &str) -> Res<()> {
    let script = format!("return ({ready}) ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);");
    let v = wait_for_js(c, &script, what).await?;
    check(v == Value::Bool(true), format!("{what}: the page shows an error: {v}"))
}

async fn scenario(c: &Client, base: &str, run_dir: &Path, artifacts: &Path) -> Res<()> {
    let records = crate::support::run_records(run_dir);
    let analysis: Analysis = serde_json::from_str(&std::fs::read_to_string(run_dir.join("analysis.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;

    // 1. A typed deep link to the overview (the host redirects to the folder's `/`).
    c.goto(&format!("{base}/runs/{RUN}")).await.map_err(|e| e.to_string())?;
    wait_ready(c, "document.querySelector('#headline tbody tr')", "the overview's headline table").await?;
    let models = js(c, "return [...document.querySelectorAll('#headline tbody tr')].map(tr => tr.dataset.model);").await?;
    let want: Vec<&str> = analysis.models.iter().map(|m| m.model.as_str()).collect();
    check(models == serde_json::json!(want), format!("overview rows {models}, analysis models {want:?}"))?;
    let hidden =
        js(c, "return [!!document.getElementById('share'), [...document.querySelectorAll('.site-nav a')].map(a => a.textContent)];")
            .await?;
    check(hidden[0] == Value::Bool(false), "no Share button on a static site")?;
    check(!hidden[1].to_string().contains("Compare"), format!("no Compare link on a static site: nav {}", hidden[1]))?;
    screenshot(c, &artifacts.join("export-overview.png")).await?;

    // 2. An in-app link keeps the sub-path; the explorer shows every record.
    js(c, "document.querySelector('.subnav a[href$=\"/records\"]').click(); return null;").await?;
    wait_ready(c, "document.getElementById('match-count')", "the records explorer").await?;
    let path = js(c, "return location.pathname;").await?;
    check(path == serde_json::json!(format!("/site/runs/{RUN}/records")), format!("explorer path {path}"))?;
    let total = js(c, "return document.getElementById('match-count').dataset.total;").await?;
    check(total == serde_json::json!(records.len().to_string()), format!("explorer total {total}, records.jsonl {}", records.len()))?;

    // 3. A deep link with a filter: the "incorrect" count of records.jsonl; "Copy link" is there.
    let model = records[0].model.clone();
    let filter = RecordFilter::from_pairs([("correct", "false"), ("model", model.as_str())]).map_err(|e| e.to_string())?;
    let facts = crate::support::run_facts(run_dir, &records);
    let incorrect = records.iter().filter(|r| filter.matches(r, &facts)).count();
    check(incorrect > 0 && incorrect < records.len(), format!("{incorrect} incorrect records of {model}"))?;
    c.goto(&format!("{base}/runs/{RUN}/records?correct=false&model={model}")).await.map_err(|e| e.to_string())?;
    wait_ready(
        c,
        &format!("document.getElementById('match-count')?.dataset.count === '{incorrect}'"),
        &format!("{incorrect} incorrect records"),
    )
    .await?;
    let search = js(c, "return [location.search, !!document.getElementById('copy-link')];").await?;
    check(
        search[0] == serde_json::json!(format!("?correct=false&model={model}")) && search[1] == Value::Bool(true),
        format!("explorer URL and copy link: {search}"),
    )?;
    screenshot(c, &artifacts.join("export-records.png")).await?;
    // "Download CSV" needs no server: the file is made in the page, one row per match.
    let file = super::click_download(c, "download-csv").await?;
    check(file.name == format!("{RUN}-records-filtered.csv"), format!("downloaded as {}", file.name))?;
    let mut csv = csv::Reader::from_reader(file.text.as_bytes());
    let header = csv.headers().map_err(|e| e.to_string())?.clone();
    let sample = header.iter().position(|h| h == "sample_id").ok_or("no sample_id column")?;
    let mut got: Vec<String> =
        csv.records().map(|r| r.map(|r| r[sample].to_owned())).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let mut want: Vec<String> = records.iter().filter(|r| filter.matches(r, &facts)).map(|r| r.sample_id.clone()).collect();
    got.sort();
    want.sort();
    check(got == want, format!("CSV samples {got:?}, records.jsonl under the filter {want:?}"))?;

    // 4. A typed deep link to a study view whose id needs encoding: every map drawn, the X-ray
    // loaded from the export.
    let study = records[0].study_id.clone();
    check(study == ODD_STUDY, format!("the first study is {study:?}"))?;
    let maps = records.iter().filter(|r| r.study_id == study && r.pass == Pass::Image && r.map.is_some()).count();
    c.goto(&format!("{base}/runs/{RUN}/studies/{ODD_FOLDER}?opacity=0.7")).await.map_err(|e| e.to_string())?;
    wait_ready(
        c,
        &format!("document.querySelectorAll('canvas.overlay-map[data-drawn=\"true\"]').length === {maps} && [...document.querySelectorAll('figure.overlay img')].every(i => i.complete && i.naturalWidth > 0)"),
        &format!("{maps} drawn maps over loaded X-rays"),
    )
    .await?;
    let painted = js(c, "const cv = document.querySelector('canvas.overlay-map'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;").await?;
    check(painted.as_u64().unwrap_or(0) > 0, format!("the first map paints {painted} pixels"))?;
    screenshot(c, &artifacts.join("export-study.png")).await?;
    // The image conditions come from the export too (its whole record list; the partners' images
    // among its images), and the near-tie badges from its runs list's threshold.
    c.goto(&format!("{base}/runs/{RUN}/studies/{ODD_FOLDER}?conditions=1")).await.map_err(|e| e.to_string())?;
    let cards: Vec<usize> = (0..records.len()).filter(|&i| records[i].study_id == study && records[i].pass == Pass::Image).collect();
    let per_card = Pass::ALL.len() - 1;
    wait_ready(
        c,
        &format!("document.querySelectorAll('section[data-testid=conditions] figure.cond').length === {} && [...document.querySelectorAll('figure.cond img')].every(i => i.complete && i.naturalWidth > 0)", cards.len() * per_card),
        &format!("{per_card} condition thumbnails, loaded, under each of {} cards", cards.len()),
    )
    .await?;
    let eps = crate::support::run_facts(run_dir, &records).near_tie_eps();
    let ties = cards.iter().filter(|&&i| records[i].yes_no_margin.is_some_and(|m| m.abs() < eps)).count();
    wait_ready(
        c,
        &format!("document.querySelectorAll('#study-grid .facts [data-testid=near-tie]').length === {ties}"),
        &format!("{ties} near-tie badges"),
    )
    .await?;
    screenshot(c, &artifacts.join("export-study-conditions.png")).await?;
    // The explorer's link to that study is the same URL, and after a click the address bar
    // (what "copy link" or a reload uses) still names the folder.
    c.goto(&format!("{base}/runs/{RUN}/records")).await.map_err(|e| e.to_string())?;
    let want = format!("/site/runs/{RUN}/studies/{ODD_FOLDER}");
    wait_ready(c, &format!("document.querySelector('#records a[href=\"{want}\"]')"), "the explorer's link to the study").await?;
    js(c, &format!("document.querySelector('#records a[href=\"{want}\"]').click(); return null;")).await?;
    wait_ready(
        c,
        &format!(
            "location.pathname === '{want}' && document.querySelectorAll('canvas.overlay-map[data-drawn=\"true\"]').length === {maps}"
        ),
        "the study view after a click",
    )
    .await?;
    Ok(())
}
