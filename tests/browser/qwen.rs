//! A Qwen2.5-VL run in the dashboard (issue 20): each record's map is drawn on its own
//! non-square token grid (a portrait and a landscape X-ray of the Qwen fixture), whole cells per
//! grid cell, over the whole X-ray (Qwen2.5-VL resizes without cropping), so the region the model
//! saw lies on the image where the record's geometry says. Screenshot:
//! `<target>/browser-e2e/qwen-study-<study>.png`.

use std::time::Duration;

use fantoccini::Client;
use radlens::server::{RunningServer, ServeOptions};
use radlens_shared::record::{CaseRecord, Pass};
use serde_json::Value;

use super::driver::ChromeDriver;
use super::{Res, artifact_dir, check, close_session, js, open_session, preflight, run_scenario, screenshot, wait_for_js};
use crate::support::{Scratch, radlens, run_records, workspace_root};

const RUN: &str = "qwen";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qwen_run_draws_each_map_on_its_own_non_square_grid_over_the_whole_image() {
    let dist = preflight();
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser-e2e artifact dir");
    let scratch = Scratch::new("browser-qwen");
    let runs = scratch.path().join("runs");
    let fixture = workspace_root().join("fixtures/qwen25vl-tiny-v1");
    let images = fixture.join("images");
    let csv = scratch.write(
        "qwen.csv",
        "study_id,image_path,question,answer,variant_index\n\
         portrait,img_a_gray_90x150.png,Is there a pleural effusion?,yes,0\n\
         portrait,img_a_gray_90x150.png,Is a pleural effusion present?,yes,1\n\
         landscape,img_b_rgb_290x140.png,Is there a pleural effusion?,no,0\n",
    );
    let out = radlens(&[
        "study",
        "--csv",
        &csv.display().to_string(),
        "--images",
        &images.display().to_string(),
        "--out",
        &runs.join(RUN).display().to_string(),
        "--model",
        &format!("qwen={}", fixture.join("qwen25vl-tiny").display()),
        "--max-new-tokens",
        "2",
        "--resamples",
        "50",
    ]);
    assert!(out.status.success(), "radlens study:\n{}", String::from_utf8_lossy(&out.stderr));
    let records = run_records(&runs.join(RUN));

    let mut opts = ServeOptions::new(&runs);
    opts.port = 0;
    opts.images = Some(images.clone());
    opts.dist = Some(dist);
    opts.workers = Some(2);
    let server: RunningServer = radlens::server::start(opts).expect("start radlens serve");
    let driver = ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = open_session(&driver).await;
    let outcome = run_scenario(&client, &artifacts, Duration::from_secs(90), scenario(&client, &server.url(), &records, &artifacts)).await;
    close_session(client).await;
    drop(driver);
    tokio::task::spawn_blocking(move || server.stop()).await.ok();
    outcome.report("qwen dashboard e2e");
}

async fn scenario(c: &Client, sign_in: &str, records: &[CaseRecord], artifacts: &std::path::Path) -> Res<()> {
    let base = sign_in.split("/?token=").next().unwrap_or_default().to_owned();
    c.goto(sign_in).await.map_err(|e| format!("open the sign-in URL: {e}"))?;
    wait_for_js(c, &format!("return document.querySelector('#runs tr[data-run=\"{RUN}\"]') ? true : null;"), "the runs table").await?;
    let mut grids = Vec::new();
    for study in ["portrait", "landscape"] {
        let mine: Vec<&CaseRecord> = records.iter().filter(|r| r.study_id == study && r.pass == Pass::Image && r.map.is_some()).collect();
        check(!mine.is_empty(), format!("{study}: image-pass records with maps"))?;
        let g = mine[0].map.as_ref().map(|m| m.provenance.geometry).expect("a map");
        check(g.h != g.w, format!("{study}: the fixture image gives a non-square grid ({} x {})", g.h, g.w))?;
        check(
            (g.crop.x0, g.crop.y0, g.crop.x1, g.crop.y1) == (0.0, 0.0, f64::from(g.image_w), f64::from(g.image_h)),
            format!("{study}: the grid covers the whole image: {:?}", g.crop),
        )?;
        c.goto(&format!("{base}/runs/{RUN}/studies/{study}")).await.map_err(|e| e.to_string())?;
        wait_for_js(
            c,
            &format!("return document.querySelectorAll('canvas.overlay-map[data-drawn=\"true\"]').length === {} && [...document.querySelectorAll('figure.overlay img')].every(i => i.complete && i.naturalWidth > 0) || null;", mine.len()),
            "every overlay drawn and every X-ray loaded",
        )
        .await?;
        // Per canvas: its bitmap size, and its box against its X-ray's box on the page.
        let shown = js(
            c,
            "return [...document.querySelectorAll('canvas.overlay-map')].map(cv => { const img = cv.closest('figure').querySelector('img'); const a = cv.getBoundingClientRect(), b = img.getBoundingClientRect(); return [cv.width, cv.height, a.left - b.left, a.top - b.top, a.width - b.width, a.height - b.height, img.naturalWidth, img.naturalHeight]; });",
        )
        .await?;
        let rows = shown.as_array().cloned().unwrap_or_default();
        check(rows.len() == mine.len(), format!("{study}: {} canvases for {} maps", rows.len(), mine.len()))?;
        for row in &rows {
            let v: Vec<f64> = row.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            check(v.len() == 8, format!("{study}: canvas facts {row}"))?;
            // Whole cells: the bitmap is (w k) x (h k) for one k.
            let (cw, ch) = (v[0] as usize, v[1] as usize);
            check(
                cw % g.w == 0 && ch % g.h == 0 && cw / g.w == ch / g.h,
                format!("{study}: a {cw} x {ch} bitmap for a {} x {} grid", g.h, g.w),
            )?;
            check(
                v[2..6].iter().all(|d| d.abs() <= 1.0),
                format!("{study}: the overlay's box differs from the X-ray's by {:?} px", &v[2..6]),
            )?;
            check(
                (v[6] / v[7] - f64::from(g.image_w) / f64::from(g.image_h)).abs() < 0.02,
                format!("{study}: the X-ray shown is {} x {}, the record's image {} x {}", v[6], v[7], g.image_w, g.image_h),
            )?;
        }
        screenshot(c, &artifacts.join(format!("qwen-study-{study}.png"))).await?;
        grids.push((g.h, g.w));
    }
    eprintln!("qwen dashboard e2e: grids {grids:?} drawn over their whole X-rays");
    check(grids[0].0 > grids[0].1 && grids[1].0 < grids[1].1, format!("a portrait and a landscape grid: {grids:?}"))
}
