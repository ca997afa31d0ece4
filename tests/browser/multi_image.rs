//! Several images per question in the dashboard (issue 21): a run of the fixture's multi-image
//! Gemma3 over rows with a prior (and a lateral) image, run under `prior_blank` and `prior_swap`,
//! then opened from `radlens serve` and from its static export. The study page shows one panel
//! per image with its role, file and mass share (= the record's `image_mass_share`), each map
//! drawn over its own X-ray on its own grid and crop; the per-image method survives a reload
//! through the URL; the conditions strip shows the prior conditions' answers as records.jsonl
//! has them; the overview lists the prior change rates of analysis.json. Screenshots:
//! `<target>/browser-e2e/multi-image-study.png`, `multi-image-conditions.png`,
//! `multi-image-export.png`.

use std::path::Path;
use std::time::Duration;

use fantoccini::Client;
use radlens::server::{RunningServer, ServeOptions};
use radlens_shared::record::{Analysis, CaseRecord, Pass};
use radlens_shared::stats::bootstrap::Interval;
use serde_json::{Value, json};

use super::driver::ChromeDriver;
use super::server::StaticServer;
use super::{Res, artifact_dir, check, close_session, js, open_session, preflight, run_scenario, screenshot, wait_for_js};
use crate::support::{Scratch, fixture, radlens, run_records};

const RUN: &str = "multi";
const CURRENT: &str = "frontal_gray_96x120.png";
const PRIOR: &str = "prior_rgb_140x128.png";
/// The second study's prior: the same pixels under another name, so `prior_swap` has a
/// partner whose prior is another file.
const PRIOR2: &str = "prior_copy_140x128.png";
const LATERAL: &str = "lateral_gray_110x90.png";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_image_run_shows_each_image_with_its_own_map_share_and_prior_conditions() {
    let dist = preflight();
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser-e2e artifact dir");
    let scratch = Scratch::new("browser-multi-image");
    let images = scratch.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let src = fixture("multi-image-v1/images");
    for (from, to) in [(CURRENT, CURRENT), (PRIOR, PRIOR), (PRIOR, PRIOR2), (LATERAL, LATERAL)] {
        std::fs::copy(src.join(from), images.join(to)).expect("copy a fixture image");
    }
    let csv = scratch.write(
        "multi.csv",
        &format!(
            "study_id,image_path,prior_image_path,lateral_image_path,question,answer,polarity\n\
             s1,{CURRENT},{PRIOR},{LATERAL},Is the pleural effusion larger than before?,yes,1\n\
             s2,{CURRENT},{PRIOR2},,Is there a pleural effusion?,no,1\n"
        ),
    );
    let runs = scratch.path().join("runs");
    let run_dir = runs.join(RUN);
    let model = fixture("multi-image-v1/gemma3-tiny-multi");
    let out = radlens(&[
        "study",
        "--csv",
        csv.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--model",
        &format!("gemma3-multi={}", model.display()),
        "--max-new-tokens",
        "2",
        "--resamples",
        "50",
        "--conditions",
        "prior_blank,prior_swap",
        // Per-image Grad-CAM maps, so the method selector draws a second method.
        "--gradcam",
    ]);
    assert!(out.status.success(), "radlens study:\n{}", String::from_utf8_lossy(&out.stderr));
    let records = run_records(&run_dir);
    let analysis: Analysis = serde_json::from_str(&std::fs::read_to_string(run_dir.join("analysis.json")).expect("analysis.json"))
        .expect("analysis.json parses");

    // The static export: every image's map and every image as data files.
    let www = scratch.path().join("www");
    let site = www.join("site");
    let out = radlens(&["export", run_dir.to_str().unwrap(), "--out", site.to_str().unwrap(), "--images", images.to_str().unwrap()]);
    assert!(out.status.success(), "radlens export:\n{}", String::from_utf8_lossy(&out.stderr));
    for (i, r) in records.iter().enumerate() {
        for (k, image) in r.images.iter().enumerate() {
            let file = radlens_shared::static_site::DataFile::ImageMap(i, k, image.provenance.method).path();
            assert!(site.join(&file).is_file(), "the export lacks {file}");
            let png = radlens_shared::static_site::DataFile::Image(radlens::server::runs::image_id(&image.image)).path();
            assert!(site.join(&png).is_file(), "the export lacks the {} image {png}", image.role);
        }
    }

    let mut opts = ServeOptions::new(&runs);
    opts.port = 0;
    opts.images = Some(images.clone());
    opts.dist = Some(dist);
    opts.workers = Some(2);
    let server: RunningServer = radlens::server::start(opts).expect("start radlens serve");
    let files = StaticServer::start_plain(www).await.expect("start the plain file host");
    let driver = ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = open_session(&driver).await;
    let exported = format!("{}/site", files.base_url());
    let sign_in = server.url();
    let scenario = scenario(&client, &sign_in, &exported, &records, &analysis, &artifacts);
    let outcome = run_scenario(&client, &artifacts, Duration::from_secs(120), scenario).await;
    close_session(client).await;
    drop(driver);
    drop(files);
    tokio::task::spawn_blocking(move || server.stop()).await.ok();
    outcome.report("multi-image dashboard e2e");
}

/// Waits until `ready` (a JS expression) is true, or fails with the page's API error.
async fn wait_ready(c: &Client, ready: &str, what: &str) -> Res<()> {
    let script = format!("return ({ready}) ? true : (document.querySelector('[data-testid=api-error]')?.textContent ?? null);");
    let v = wait_for_js(c, &script, what).await?;
    check(v == Value::Bool(true), format!("{what}: the page shows an error: {v}"))
}

fn image_record<'a>(records: &'a [CaseRecord], study: &str) -> Res<(usize, &'a CaseRecord)> {
    records
        .iter()
        .enumerate()
        .find(|(_, r)| r.study_id == study && r.pass == Pass::Image)
        .ok_or_else(|| format!("no image-pass record of {study}"))
}

async fn scenario(c: &Client, sign_in: &str, exported: &str, records: &[CaseRecord], analysis: &Analysis, artifacts: &Path) -> Res<()> {
    let base = sign_in.split("/?token=").next().unwrap_or_default().to_owned();
    c.goto(sign_in).await.map_err(|e| format!("open the sign-in URL: {e}"))?;
    wait_for_js(c, &format!("return document.querySelector('#runs tr[data-run=\"{RUN}\"]') ? true : null;"), "the runs table").await?;
    let (index, s1) = image_record(records, "s1")?;
    check(s1.error.is_none(), format!("s1's record has no error: {:?}", s1.error))?;
    let roles: Vec<&str> = s1.images.iter().map(|i| i.role.as_str()).collect();
    check(roles == ["prior", "current", "lateral"], format!("s1's images in prompt order: {roles:?}"))?;

    // 1. The images side by side, each on its own grid, with its share (attention).
    let study_url = format!("{base}/runs/{RUN}/studies/s1");
    c.goto(&study_url).await.map_err(|e| e.to_string())?;
    check_images(c, s1, index, None, "served").await?;
    js(c, "document.querySelector('section[data-testid=images]').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("multi-image-study.png")).await?;

    // 2. The per-image method lives in the URL. A method no image has: each image says so, and
    // the choice survives a reload; choosing attention again draws the maps and drops the key.
    let other = s1.images.iter().flat_map(|i| &i.methods).map(|m| m.provenance.method).next();
    let absent = [radlens_shared::fusion::MapMethod::Gradcam, radlens_shared::fusion::MapMethod::Occlusion]
        .into_iter()
        .find(|m| s1.images.iter().all(|i| i.methods.iter().all(|x| x.provenance.method != *m)))
        .ok_or("every method has per-image maps: no absent one to try")?;
    c.goto(&format!("{study_url}?images={absent}")).await.map_err(|e| e.to_string())?;
    wait_ready(c, &format!("document.querySelector('#image-method')?.value === '{absent}'"), &format!("{absent} chosen by the URL"))
        .await?;
    // Another control rewrites the query: the choice stays in it, and so across a reload.
    js(c, "const o = document.querySelector('#opacity'); o.value = '0.35'; o.dispatchEvent(new Event('input', {bubbles: true})); return null;").await?;
    let search = js(c, "return location.search;").await?;
    check(
        search.as_str().is_some_and(|s| s.contains(&format!("images={absent}")) && s.contains("opacity=0.35")),
        format!("the URL after moving the opacity: {search}"),
    )?;
    c.refresh().await.map_err(|e| e.to_string())?;
    wait_ready(
        c,
        &format!(
            "document.querySelector('#image-method')?.value === '{absent}' && document.querySelectorAll('figure.image-map').length === {}",
            s1.images.len()
        ),
        &format!("{absent} still chosen after a reload"),
    )
    .await?;
    let shown = js(c, "return [...document.querySelectorAll('figure.image-map')].map(f => [f.dataset.share, f.querySelector('canvas').dataset.drawn, f.querySelector('.image-share').textContent]);").await?;
    for f in shown.as_array().into_iter().flatten() {
        check(
            f[0] == json!("") && f[1] == json!("false") && f[2].as_str().is_some_and(|t| t.starts_with("no ")),
            format!("an image without a {absent} map shows none and says so: {f}"),
        )?;
    }
    // Another method's per-image maps (the run's `--gradcam`): their own shares.
    let m = other.ok_or("the run asked for --gradcam but its records have no per-image method maps")?;
    select_image_method(c, &m.to_string()).await?;
    check_images(c, s1, index, Some(m), "served, another method").await?;
    select_image_method(c, "").await?;
    let search = js(c, "return location.search;").await?;
    check(!search.as_str().unwrap_or_default().contains("images="), format!("attention drops the key: {search}"))?;
    c.refresh().await.map_err(|e| e.to_string())?;
    check_images(c, s1, index, None, "served, after a reload").await?;

    // 3. The prior conditions under the card, as records.jsonl has them.
    c.goto(&format!("{study_url}?conditions=1")).await.map_err(|e| e.to_string())?;
    check_prior_conditions(c, records, s1, index).await?;
    js(c, "document.querySelector('section[data-testid=conditions]').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("multi-image-conditions.png")).await?;

    // 4. The overview's prior change rates, as analysis.json has them.
    c.goto(&format!("{base}/runs/{RUN}")).await.map_err(|e| e.to_string())?;
    wait_ready(c, "document.querySelector('#conditions-rates tbody tr')", "the rates table").await?;
    let cells = "[...tr.querySelectorAll('td[data-col]')].filter(td => td.dataset.estimate !== undefined || td.textContent === '—').map(td => [td.dataset.col, [td.dataset.estimate ?? null, td.dataset.lo ?? null, td.dataset.hi ?? null]])";
    let shown = js(
        c,
        &format!("return [...document.querySelectorAll('#conditions-rates tbody tr')].filter(tr => tr.dataset.rate.startsWith('prior_')).map(tr => [tr.dataset.model, ...({cells})]);"),
    )
    .await?;
    let interval = |i: &Interval| json!([i.estimate.to_string(), i.lo.to_string(), i.hi.to_string()]);
    let want: Vec<Value> = analysis
        .models
        .iter()
        .filter_map(|m| m.conditions.as_ref().map(|c| (m.model.as_str(), c)))
        .flat_map(|(m, c)| {
            [("prior_blank_change_rate", &c.prior_blank_change_rate), ("prior_swap_change_rate", &c.prior_swap_change_rate)]
                .into_iter()
                .filter_map(move |(k, i)| i.as_ref().map(|i| json!([m, [k, interval(i)]])))
        })
        .collect();
    check(want.len() == 2, format!("analysis.json has both prior rates: {want:?}"))?;
    check(shown == Value::Array(want.clone()), format!("prior rate rows shown {shown}\nanalysis.json {want:?}"))?;

    // 5. The static export: the same images, maps and shares from its data files.
    c.goto(&format!("{exported}/runs/{RUN}/studies/s1")).await.map_err(|e| e.to_string())?;
    check_images(c, s1, index, None, "exported").await?;
    js(c, "document.querySelector('section[data-testid=images]').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("multi-image-export.png")).await?;
    eprintln!("multi-image dashboard e2e: {} images of record {index}, shares and grids as stored", s1.images.len());
    Ok(())
}

/// Chooses `value` in the per-image method selector (as a person does: the change event).
async fn select_image_method(c: &Client, value: &str) -> Res<()> {
    let ok = js(
        c,
        &format!("const s = document.querySelector('#image-method'); if (!s || ![...s.options].some(o => o.value === '{value}')) return false; s.value = '{value}'; s.dispatchEvent(new Event('change', {{bubbles: true}})); return true;"),
    )
    .await?;
    check(ok == Value::Bool(true), format!("the per-image method selector offers {value:?}"))
}

/// One panel per image of `r` (record `index`): its role and file, the share shown (one
/// decimal of a percentage) equal to the record's, and its map drawn over its own X-ray on its
/// own grid (whole cells, the canvas over the crop's part of the image).
async fn check_images(c: &Client, r: &CaseRecord, index: usize, method: Option<radlens_shared::fusion::MapMethod>, when: &str) -> Res<()> {
    let n = r.images.len();
    let sel = format!("section[data-testid=images][data-index=\"{index}\"] figure.image-map");
    wait_ready(
        c,
        &format!("document.querySelectorAll('{sel} canvas.image-overlay[data-drawn=\"true\"]').length === {n} && [...document.querySelectorAll('{sel} img')].every(i => i.complete && i.naturalWidth > 0)"),
        &format!("{when}: {n} image maps drawn over loaded images"),
    )
    .await?;
    let facts = js(
        c,
        &format!("return [...document.querySelectorAll('{sel}')].map(f => {{ const cv = f.querySelector('canvas'), img = f.querySelector('img'); const a = cv.getBoundingClientRect(), b = img.getBoundingClientRect(); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; let painted = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++; return [f.dataset.role, f.dataset.image, f.dataset.share, f.querySelector('.image-share').textContent, +cv.dataset.h, +cv.dataset.w, cv.dataset.method, cv.width, cv.height, a.left - b.left, a.top - b.top, a.width, a.height, b.width, b.height, img.naturalWidth, img.naturalHeight, painted]; }});"),
    )
    .await?;
    let rows = facts.as_array().cloned().unwrap_or_default();
    check(rows.len() == n, format!("{when}: {} image panels for {n} images", rows.len()))?;
    for (image, f) in r.images.iter().zip(&rows) {
        let role = &image.role;
        let num = |i: usize| f[i].as_f64().unwrap_or(f64::NAN);
        check(f[0] == json!(role) && f[1] == json!(image.image), format!("{when}: panel {f} for the {role} image {}", image.image))?;
        let (share, provenance) = match method {
            None => (image.image_mass_share, &image.provenance),
            Some(m) => {
                let mm =
                    image.methods.iter().find(|x| x.provenance.method == m).ok_or(format!("{when}: no {m} map of the {role} image"))?;
                (mm.image_mass_share, &mm.provenance)
            }
        };
        let shown: f64 = f[2].as_str().and_then(|s| s.parse().ok()).ok_or(format!("{when}: {role}: share {} is not a number", f[2]))?;
        check((shown - 100.0 * share).abs() <= 0.05 + 1e-9, format!("{when}: {role}: {shown}% shown, record {share}"))?;
        check(
            f[3].as_str().is_some_and(|t| t.starts_with(&format!("{}%", f[2].as_str().unwrap_or_default()))),
            format!("{when}: {role}: the share's text {}", f[3]),
        )?;
        let g = provenance.geometry;
        check(
            (num(4) as usize, num(5) as usize) == (g.h, g.w) && f[6] == json!(provenance.method.to_string()),
            format!("{when}: {role}: grid {}x{} {} drawn, record {}x{} {}", f[4], f[5], f[6], g.h, g.w, provenance.method),
        )?;
        // Whole cells: the bitmap is (w k) x (h k) for one k.
        let (cw, ch) = (num(7) as usize, num(8) as usize);
        check(
            cw % g.w == 0 && ch % g.h == 0 && cw / g.w == ch / g.h,
            format!("{when}: {role}: a {cw} x {ch} bitmap for a {} x {} grid", g.h, g.w),
        )?;
        // The canvas lies over the crop's part of the image box.
        let (iw, ih) = (f64::from(g.image_w), f64::from(g.image_h));
        let (bw, bh) = (num(13), num(14));
        let want = [g.crop.x0 / iw * bw, g.crop.y0 / ih * bh, g.crop.width() / iw * bw, g.crop.height() / ih * bh];
        let got = [num(9), num(10), num(11), num(12)];
        check(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1.0),
            format!("{when}: {role}: the map's box {got:?} px on the image, the crop gives {want:?}"),
        )?;
        check(
            (num(15) / num(16) - iw / ih).abs() < 0.02,
            format!("{when}: {role}: the X-ray shown is {} x {}, the record's {} x {}", f[15], f[16], g.image_w, g.image_h),
        )?;
        check(num(17) > 0.0, format!("{when}: {role}: the map paints {} pixels", f[17]))?;
    }
    // The fixture's images have three sizes: each panel's geometry (checked above) is its own.
    let sizes: std::collections::BTreeSet<(u32, u32)> =
        r.images.iter().map(|i| (i.provenance.geometry.image_w, i.provenance.geometry.image_h)).collect();
    check(sizes.len() == n, format!("{when}: the images' sizes {sizes:?}"))
}

/// The prior conditions of `s1` (record `index`) under its card: what was shown, the answer, its
/// agreement with the real answer and the truth, as records.jsonl has them.
async fn check_prior_conditions(c: &Client, records: &[CaseRecord], s1: &CaseRecord, index: usize) -> Res<()> {
    let conds: Vec<(usize, &CaseRecord)> =
        records.iter().enumerate().filter(|(_, r)| r.pass != Pass::Image && r.sample_id == s1.sample_id && r.model == s1.model).collect();
    let strip = format!("section[data-testid=conditions][data-index=\"{index}\"]");
    wait_ready(
        c,
        &format!("document.querySelectorAll('{strip} figure.cond').length === {} && [...document.querySelectorAll('{strip} figure.cond img')].every(i => i.complete && i.naturalWidth > 0)", conds.len()),
        &format!("{} condition figures under record {index}, their images loaded", conds.len()),
    )
    .await?;
    for pass in [Pass::PriorBlank, Pass::PriorSwap] {
        let (i, r) = conds.iter().find(|(_, r)| r.pass == pass).ok_or(format!("no {} record of s1", pass.name()))?;
        check(r.error.is_none() && r.condition.as_ref().is_some_and(|k| k.not_run.is_none()), format!("{}: run: {r:?}", pass.name()))?;
        let f = js(
            c,
            &format!("const f = document.querySelector('{strip} figure.cond[data-pass={}]'); if (!f) return null; const p = f.querySelector('[data-testid=prior-shown]'); return [+f.dataset.index, f.dataset.answer, f.dataset.agrees, f.dataset.truth, p ? p.dataset.partner : null, !!f.querySelector('[data-testid=prior-blank-thumb]'), f.querySelector('[data-testid=prior-partner-link]')?.dataset.study ?? null, p ? p.textContent : null];", pass.name()),
        )
        .await?;
        check(!f.is_null(), format!("a {} figure", pass.name()))?;
        let answer = r.parsed_answer.map(|a| a.as_str()).unwrap_or_default();
        let agrees = match (r.parsed_answer, s1.parsed_answer) {
            (Some(a), Some(b)) => (a == b).to_string(),
            _ => String::new(),
        };
        let truth = r.ground_truth.map(|a| a.as_str()).unwrap_or_default();
        check(
            f[0] == json!(i) && f[1] == json!(answer) && f[2] == json!(agrees) && f[3] == json!(truth),
            format!("{}: shown {f}, record {i}: answer {answer:?}, agrees {agrees:?}, truth {truth:?}", pass.name()),
        )?;
        let partner = r.condition.as_ref().and_then(|k| k.partner_study.clone());
        match pass {
            Pass::PriorBlank => check(f[5] == json!(true) && f[4] == json!(""), format!("prior_blank shows a blank prior: {f}"))?,
            _ => {
                check(partner.as_deref() == Some("s2"), format!("prior_swap's partner is s2: {partner:?}"))?;
                check(truth.is_empty(), "prior_swap has no truth")?;
                check(f[4] == json!("s2") && f[6] == json!("s2"), format!("prior_swap names study s2's prior: {f}"))?;
                // And shows it: the partner's prior file, served under its own id and loaded.
                let prior = r.condition.as_ref().and_then(|k| k.prior_image.clone()).ok_or("prior_swap names the prior it showed")?;
                let id = radlens::server::runs::image_id(&prior);
                let src = js(
                    c,
                    &format!("const i = document.querySelector('{strip} figure.cond[data-pass=prior_swap] [data-testid=prior-partner-link] img'); return i && i.complete && i.naturalWidth > 0 ? i.getAttribute('src') : null;"),
                )
                .await?;
                check(src.as_str().is_some_and(|s| s.contains(&id)), format!("prior_swap shows {prior} (id {id}): {src}"))?;
            }
        }
        check(f[7].as_str().is_some_and(|t| t.contains("lateral kept")), format!("{}: the kept lateral is said: {}", pass.name(), f[7]))?;
    }
    Ok(())
}
