//! Dashboard steps on image conditions and decision quality (issue 17; `fixtures/spec/grounding.md`
//! G6, G7): the overview's "Does the answer come from the image?" and "Would the model have
//! warned us?" tables against `analysis.json`; the study view's conditions strip (each
//! condition's image and answer as `records.jsonl` has them, the `not_run` reasons, the swap's
//! link to its partner study, the occluded thumbnail's fill); the near-tie badges; and the
//! explorer's pass, "same answer on a blank image" and "near tie" filters, each counted against
//! a computation from `records.jsonl` written here, with the browser's and the server's CSV
//! alike.

use std::path::Path;

use fantoccini::Client;
use radlens_shared::record::{Analysis, CaseRecord, Pass};
use radlens_shared::stats::bootstrap::Interval;
use serde_json::{Value, json};

use super::super::{Res, check, js, screenshot, wait_for_js};
use super::grounding::{csv_agrees, set_select};
use super::{RUN, count_shown, wait_count};

/// The run's near-tie threshold, from its manifest.
fn eps_of(run_dir: &Path) -> Res<f64> {
    let m = radlens::study::run_dir::RunDir::open(run_dir).and_then(|d| d.read_manifest()).map_err(|e| e.to_string())?;
    Ok(m.near_tie_eps())
}

/// `[estimate, lo, hi]` as the page writes them in `data-*` (strings), or nulls.
pub(super) fn interval_json(i: Option<&Interval>) -> Value {
    match i {
        Some(i) => json!([i.estimate.to_string(), i.lo.to_string(), i.hi.to_string()]),
        None => json!([null, null, null]),
    }
}

pub(super) const CELLS: &str = "[...tr.querySelectorAll('td[data-col]')].filter(td => td.dataset.estimate !== undefined || td.textContent === '—').map(td => [td.dataset.col, [td.dataset.estimate ?? null, td.dataset.lo ?? null, td.dataset.hi ?? null]])";

/// The overview's two tables equal `analysis.json`: one row per model and condition with its
/// counts, answer agreement and accuracy; one rate row per model; one decision row per model
/// (margin AUROC, flip screen AUROC, near ties, robust flip rate), each interval as stored.
pub(super) async fn overview_tables(c: &Client, base: &str, analysis: &Analysis, artifacts: &Path) -> Res<()> {
    c.goto(&format!("{base}/runs/{RUN}")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.querySelector('#decision-table tbody tr') ? true : null;", "the decision table").await?;
    let with: Vec<_> = analysis.models.iter().filter_map(|m| m.conditions.as_ref().map(|c| (m.model.as_str(), c))).collect();
    check(with.len() == analysis.models.len(), format!("{} of {} models have image conditions", with.len(), analysis.models.len()))?;
    let shown = js(c, &format!("return [...document.querySelectorAll('#conditions-table tbody tr')].map(tr => [tr.dataset.model, tr.dataset.condition, tr.querySelector('[data-col=rows]').textContent, tr.querySelector('[data-col=not_run]').textContent, ({CELLS}).map(x => x[1])]);")).await?;
    let want: Vec<Value> = with
        .iter()
        .flat_map(|(m, c)| {
            c.conditions.iter().map(move |s| {
                json!([
                    m,
                    s.condition.name(),
                    s.rows.to_string(),
                    s.not_run.to_string(),
                    [interval_json(s.answer_agreement.as_ref()), interval_json(s.accuracy.as_ref())]
                ])
            })
        })
        .collect();
    check(want.len() >= 2 * 8, format!("{} condition rows in analysis.json: every condition of both models", want.len()))?;
    check(shown == Value::Array(want.clone()), format!("condition rows shown {shown}\nanalysis.json {want:?}"))?;
    let not_run: usize = with.iter().flat_map(|(_, c)| &c.conditions).map(|s| s.not_run).sum();
    check(not_run > 0, "the demo's unboxed study leaves occlusions not run: counted in the table")?;

    let rates = js(
        c,
        &format!("return [...document.querySelectorAll('#conditions-rates tbody tr')].map(tr => [tr.dataset.model, ...({CELLS})[0]]);"),
    )
    .await?;
    let want: Vec<Value> = with
        .iter()
        .flat_map(|(m, c)| {
            [
                ("image_sensitivity", &c.image_sensitivity),
                ("visual_reliance", &c.visual_reliance),
                ("swap_following", &c.swap_following),
                ("causal_grounding_rate", &c.causal_grounding_rate),
                ("control_change_rate", &c.control_change_rate),
                ("image_invariant_flips", &c.image_invariant_flips),
            ]
            .map(|(k, i)| json!([m, k, interval_json(i.as_ref())]))
        })
        .collect();
    check(rates == Value::Array(want.clone()), format!("rate rows shown {rates}\nanalysis.json {want:?}"))?;
    check(with.iter().any(|(_, c)| c.image_sensitivity.is_some()), "the demo has an image sensitivity to show")?;

    let decision = js(c, &format!("return [...document.querySelectorAll('#decision-table tbody tr')].map(tr => [tr.dataset.model, tr.dataset.eps, tr.querySelector('[data-col=rows]').textContent, {CELLS}]);")).await?;
    let want: Vec<Value> = analysis
        .models
        .iter()
        .filter_map(|m| m.decision.as_ref().map(|d| (m.model.as_str(), d)))
        .map(|(m, d)| {
            json!([
                m,
                d.eps.to_string(),
                d.rows.to_string(),
                [
                    ["margin_auroc", interval_json(d.margin_auroc.as_ref())],
                    ["flip_screen_auroc", interval_json(d.flip_screen_auroc.as_ref())],
                    ["near_tie_share", interval_json(d.near_tie_share.as_ref())],
                    ["robust_flip_rate", interval_json(d.robust_flip_rate.as_ref())],
                ]
            ])
        })
        .collect();
    check(!want.is_empty(), "the demo analysis has decision summaries")?;
    check(decision == Value::Array(want.clone()), format!("decision rows shown {decision}\nanalysis.json {want:?}"))?;
    js(c, "document.getElementById('conditions').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("dashboard-overview-conditions.png")).await
}

/// The condition records of image-pass record `real` (same sample and model, every other pass)
/// with their positions, in `Pass::ALL`'s order.
fn condition_records<'a>(records: &'a [CaseRecord], real: &CaseRecord) -> Vec<(usize, &'a CaseRecord)> {
    let mut cells: Vec<(usize, &CaseRecord)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.pass != Pass::Image && r.sample_id == real.sample_id && r.model == real.model)
        .collect();
    cells.sort_by_key(|(_, r)| Pass::ALL.iter().position(|p| *p == r.pass));
    cells
}

/// The condition records of image-pass record `real`, in `Pass::ALL`'s order, as the page should
/// list them: `[pass, index, answer, agrees, truth, margin, not_run]`.
fn want_cells(records: &[CaseRecord], real: &CaseRecord) -> Vec<Value> {
    let cells = condition_records(records, real);
    let text = |a: Option<radlens_shared::answer::Answer>| a.map(|a| a.as_str().to_owned()).unwrap_or_default();
    cells
        .into_iter()
        .map(|(i, r)| {
            let agrees = match (r.parsed_answer, real.parsed_answer) {
                (Some(a), Some(b)) => (a == b).to_string(),
                _ => String::new(),
            };
            let not_run = r.condition.as_ref().and_then(|k| k.not_run.clone()).unwrap_or_default();
            json!([
                r.pass.name(),
                i.to_string(),
                text(r.parsed_answer),
                agrees,
                text(r.ground_truth),
                r.yes_no_margin.map(|m| format!("{m:e}")).unwrap_or_default(),
                not_run
            ])
        })
        .collect()
}

/// Every study's view with `conditions=1`: under each image-pass card, one figure per condition
/// record of its row and model, with the record's answer, agreement with the real answer, truth,
/// margin and `not_run` reason; blank thumbnails are black squares, swaps show the partner's
/// image, edits the row's. Off by default and toggled in the URL.
pub(super) async fn study_strips(c: &Client, base: &str, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let studies: std::collections::BTreeSet<&str> = records.iter().map(|r| r.study_id.as_str()).collect();
    let mut not_run_shown = 0;
    for study in &studies {
        let path = radlens_frontend::url_state::study_path(RUN, study);
        // Off by default: no strip, the toggle unchecked.
        c.goto(&format!("{base}{path}")).await.map_err(|e| e.to_string())?;
        wait_for_js(c, "return document.querySelector('#study-grid article.case') ? true : null;", "the study grid").await?;
        let off =
            js(c, "return [document.querySelectorAll('[data-testid=conditions]').length, document.getElementById('conditions').checked];")
                .await?;
        check(off == json!([0, false]), format!("{study}: without conditions=1 the strips are off: {off}"))?;
        // The toggle turns them on and writes conditions=1 into the URL, in place.
        js(c, "document.getElementById('conditions').click(); return null;").await?;
        let reals: Vec<(usize, &CaseRecord)> =
            records.iter().enumerate().filter(|(_, r)| r.study_id == *study && r.pass == Pass::Image).collect();
        wait_for_js(
            c,
            &format!("return document.querySelectorAll('section[data-testid=conditions]').length === {} ? true : null;", reals.len()),
            &format!("{study}: a conditions strip under each of its {} cards", reals.len()),
        )
        .await?;
        let search = js(c, "return location.search;").await?;
        check(search.as_str().is_some_and(|s| s.contains("conditions=1")), format!("{study}: URL after the toggle {search}"))?;
        for (i, real) in &reals {
            let shown = js(c, &format!("return [...document.querySelectorAll('section[data-testid=conditions][data-index=\"{i}\"] figure.cond')].map(f => [f.dataset.pass, f.dataset.index, f.dataset.answer, f.dataset.agrees, f.dataset.truth, f.dataset.margin, f.dataset.notRun]);")).await?;
            let want = want_cells(records, real);
            check(want.len() == Pass::ALL.len() - 1, format!("record {i}: {} condition records, one per condition", want.len()))?;
            check(shown == Value::Array(want.clone()), format!("record {i}: strip {shown}\nrecords.jsonl {want:?}"))?;
            // What each thumbnail is: a black square, the partner's image, the row's image.
            let thumbs = js(c, &format!("return [...document.querySelectorAll('section[data-testid=conditions][data-index=\"{i}\"] figure.cond')].map(f => {{ const t = f.querySelector('.cond-thumb'); return [f.dataset.pass, t.tagName, t.tagName === 'IMG' ? new URL(t.src).pathname : (t.tagName === 'DIV' ? getComputedStyle(t).backgroundColor : null), f.querySelector('[data-testid=not-run]')?.textContent ?? null]; }});")).await?;
            let thumbs = thumbs.as_array().cloned().unwrap_or_default();
            let cells = condition_records(records, real);
            check(thumbs.len() == cells.len(), format!("record {i}: {} thumbnails, {} condition records", thumbs.len(), cells.len()))?;
            for (t, (k, r)) in thumbs.iter().zip(cells) {
                let image = format!("/api/runs/{RUN}/images/{}", radlens::server::runs::image_id(&r.image));
                let reason = r.condition.as_ref().and_then(|x| x.not_run.clone());
                let want = match (r.pass, &reason) {
                    (_, Some(reason)) => json!([r.pass.name(), "DIV", null, format!("not run: {reason}")]),
                    (Pass::BlankImage, None) => json!([r.pass.name(), "DIV", "rgb(0, 0, 0)", null]),
                    (Pass::RoiOccluded | Pass::ControlOccluded, None) => json!([r.pass.name(), "CANVAS", null, null]),
                    (_, None) => json!([r.pass.name(), "IMG", image, null]),
                };
                // The not-run thumbnail is a striped DIV: its colour is not checked.
                let got = if reason.is_some() { json!([t[0], t[1], null, t[3]]) } else { t.clone() };
                check(got == want, format!("record {i}, condition record {k}: thumbnail {t}, expected {want}"))?;
                not_run_shown += usize::from(reason.is_some());
            }
        }
        let shot = artifacts.join(format!("dashboard-study-conditions-{}.png", if study == studies.first().unwrap() { 1 } else { 2 }));
        js(c, "document.querySelector('section[data-testid=conditions]').scrollIntoView({block: 'center'}); return null;").await?;
        screenshot(c, &shot).await?;
    }
    check(not_run_shown > 0, "some condition was not run (the unboxed study's occlusions): its reason must show")?;
    // Toggled off again: the strips go and the URL loses the key.
    js(c, "document.getElementById('conditions').click(); return null;").await?;
    wait_for_js(c, "return document.querySelectorAll('[data-testid=conditions]').length === 0 && !location.search.includes('conditions=') ? true : null;", "the strips off").await?;
    Ok(())
}

/// A swapped image links to its partner study's view (conditions still on); following it opens
/// that study's cards.
pub(super) async fn swap_link(c: &Client, base: &str, records: &[CaseRecord]) -> Res<()> {
    let (i, r) = records
        .iter()
        .enumerate()
        .find(|(_, r)| {
            matches!(r.pass, Pass::SwapOpposite | Pass::SwapSame) && r.condition.as_ref().is_some_and(|k| k.partner_study.is_some())
        })
        .ok_or("no swap record with a partner study in the demo run")?;
    let partner = r.condition.as_ref().and_then(|k| k.partner_study.clone()).unwrap_or_default();
    check(partner != r.study_id, format!("record {i}: swapped with its own study {partner}"))?;
    c.goto(&format!("{base}{}?conditions=1", radlens_frontend::url_state::study_path(RUN, &r.study_id)))
        .await
        .map_err(|e| e.to_string())?;
    let href = wait_for_js(
        c,
        &format!("const a = document.querySelector('figure.cond[data-index=\"{i}\"] a[data-testid=partner-link]'); return a ? a.getAttribute('href') : null;"),
        &format!("record {i}'s partner link"),
    )
    .await?;
    let want = format!("{}?conditions=1", radlens_frontend::url_state::study_path(RUN, &partner));
    check(href.as_str() == Some(want.as_str()), format!("record {i}: partner link {href}, expected {want}"))?;
    js(c, &format!("document.querySelector('figure.cond[data-index=\"{i}\"] a[data-testid=partner-link]').click(); return null;")).await?;
    let partner_cards: Vec<String> =
        records.iter().enumerate().filter(|(_, p)| p.study_id == partner && p.pass == Pass::Image).map(|(k, _)| k.to_string()).collect();
    let got = wait_for_js(
        c,
        &format!("const ids = [...document.querySelectorAll('#study-grid article.case')].map(a => a.dataset.index); return location.pathname + location.search === {} && JSON.stringify(ids) === {} ? ids : null;", json!(want), json!(serde_json::to_string(&partner_cards).unwrap())),
        &format!("the partner study {partner}'s view with its {} cards", partner_cards.len()),
    )
    .await?;
    check(got.as_array().map(Vec::len) == Some(partner_cards.len()), format!("partner cards {got}"))
}

/// The occluded thumbnails (`roi_occluded`, `control_occluded`): inside the box every pixel is
/// the image's per-channel mean (worked out here from the image file), just outside it the image
/// is as it was.
pub(super) async fn occluded_fill(c: &Client, base: &str, records: &[CaseRecord]) -> Res<()> {
    let images = crate::support::workspace_root().join("static/demo/cxr");
    let mut checked = 0;
    for pass in [Pass::RoiOccluded, Pass::ControlOccluded] {
        let (i, r) = records
            .iter()
            .enumerate()
            .find(|(_, r)| r.pass == pass && r.condition.as_ref().is_some_and(|k| k.occluded_box.is_some()))
            .ok_or(format!("no {} record with a box in the demo run", pass.name()))?;
        let b = r.condition.as_ref().and_then(|k| k.occluded_box).ok_or("a box")?;
        let original = image::open(images.join(&r.image)).map_err(|e| format!("{}: {e}", r.image))?.to_rgba8();
        let (ow, oh) = original.dimensions();
        let n = f64::from(ow) * f64::from(oh);
        let mean: Vec<i64> =
            (0..3).map(|ch| (original.pixels().map(|p| f64::from(p.0[ch])).sum::<f64>() / n).round_ties_even() as i64).collect();
        c.goto(&format!("{base}{}?conditions=1", radlens_frontend::url_state::study_path(RUN, &r.study_id)))
            .await
            .map_err(|e| e.to_string())?;
        let sel = format!("figure.cond[data-index=\"{i}\"] canvas[data-testid=occluded-thumb]");
        wait_for_js(
            c,
            &format!(
                "const cv = document.querySelector('{sel}'); return cv && (cv.dataset.filled === 'true' || cv.dataset.error) ? true : null;"
            ),
            &format!("record {i}'s occluded thumbnail"),
        )
        .await?;
        // The served image is at most 512 px a side: the box scales with it.
        let size = js(c, &format!("const cv = document.querySelector('{sel}'); return [cv.width, cv.height, cv.dataset.error];")).await?;
        check(size[2].as_str() == Some(""), format!("record {i}: the thumbnail says {}", size[2]))?;
        let (w, h) = (size[0].as_f64().unwrap_or(0.0), size[1].as_f64().unwrap_or(0.0));
        let (sx, sy) = (w / f64::from(ow), h / f64::from(oh));
        let (x0, y0, x1, y1) = (b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy);
        // Pixels whose centres are well inside (a 5 x 5 grid, 4 px in from the edges, clear of the
        // outline drawn outside), and pixels 8 px outside each edge.
        let inside: Vec<(i64, i64)> = (0..5)
            .flat_map(|a| (0..5).map(move |c| (a, c)))
            .map(|(a, c)| {
                let x = x0 + 4.0 + (x1 - x0 - 8.0) * f64::from(a) / 4.0;
                let y = y0 + 4.0 + (y1 - y0 - 8.0) * f64::from(c) / 4.0;
                (x.floor() as i64, y.floor() as i64)
            })
            .collect();
        let (cx, cy) = (((x0 + x1) / 2.0) as i64, ((y0 + y1) / 2.0) as i64);
        let outside: Vec<(i64, i64)> = [(x0 - 8.0, cy as f64), (x1 + 8.0, cy as f64), (cx as f64, y0 - 8.0), (cx as f64, y1 + 8.0)]
            .into_iter()
            .filter(|(x, y)| *x >= 0.0 && *y >= 0.0 && *x < w && *y < h)
            .map(|(x, y)| (x.floor() as i64, y.floor() as i64))
            .collect();
        let read = |pts: &[(i64, i64)]| {
            format!(
                "const cv = document.querySelector('{sel}'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; return {}.map(([x, y]) => {{ const k = (y * cv.width + x) * 4; return [d[k], d[k+1], d[k+2]]; }});",
                json!(pts)
            )
        };
        let got = js(c, &read(&inside)).await?;
        for (p, px) in inside.iter().zip(got.as_array().cloned().unwrap_or_default()) {
            let px: Vec<i64> = px.as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
            check(
                px.len() == 3 && px.iter().zip(&mean).all(|(a, b)| (a - b).abs() <= 1),
                format!("record {i} ({}): pixel {p:?} inside the box is {px:?}, the image's mean is {mean:?}", pass.name()),
            )?;
        }
        let got = js(c, &read(&outside)).await?;
        check(!outside.is_empty(), format!("record {i}: no pixel outside the box to compare"))?;
        for (p, px) in outside.iter().zip(got.as_array().cloned().unwrap_or_default()) {
            let px: Vec<i64> = px.as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
            // The served pixel at (x, y) of an image served at its own size is the original's.
            let o = original.get_pixel((p.0 as f64 / sx) as u32, (p.1 as f64 / sy) as u32).0;
            check(
                sx != 1.0 || (px.len() == 3 && (0..3).all(|k| (px[k] - i64::from(o[k])).abs() <= 1)),
                format!("record {i} ({}): pixel {p:?} outside the box is {px:?}, the image has {o:?}", pass.name()),
            )?;
        }
        // The inside is not the image as it was (the check above would pass on an unfilled box
        // only if the box were already flat at the mean).
        let untouched = inside.iter().filter(|(x, y)| {
            let o = original.get_pixel((*x as f64 / sx) as u32, (*y as f64 / sy) as u32).0;
            (0..3).all(|k| (i64::from(o[k]) - mean[k]).abs() <= 1)
        });
        check(untouched.count() < inside.len(), format!("record {i}: the box was already the mean colour: the check cannot fail"))?;
        checked += 1;
    }
    check(checked == 2, "both occlusions checked")
}

/// The near-tie badge: in the explorer (image-pass records shown on one page) and in every
/// study view, on exactly the image-pass records with `|margin| < eps`, its meaning on hover.
pub(super) async fn near_tie_badges(c: &Client, base: &str, run_dir: &Path, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let eps = eps_of(run_dir)?;
    let ties: Vec<usize> =
        (0..records.len()).filter(|&i| records[i].pass == Pass::Image && records[i].yes_no_margin.is_some_and(|m| m.abs() < eps)).collect();
    let images = records.iter().filter(|r| r.pass == Pass::Image).count();
    eprintln!("dashboard e2e: {} of {images} image-pass records are near ties (eps {eps})", ties.len());
    c.goto(&format!("{base}/runs/{RUN}/records?pass=image")).await.map_err(|e| e.to_string())?;
    wait_count(c, images, "pass = image").await?;
    check(images <= radlens_frontend::explorer::PAGE_SIZE, "the image-pass records fit one page")?;
    let shown = js(c, "return [...document.querySelectorAll('#records tbody tr')].filter(tr => tr.querySelector('[data-testid=near-tie]')).map(tr => Number(tr.dataset.index));").await?;
    check(shown == json!(ties), format!("explorer badges on {shown}, near ties {ties:?}"))?;
    let title = js(c, "return document.querySelector('#records [data-testid=near-tie]')?.title ?? null;").await?;
    check(
        ties.is_empty() || title.as_str() == Some(radlens_frontend::conditions::near_tie_meaning(eps).as_str()),
        format!("badge title {title}"),
    )?;
    screenshot(c, &artifacts.join("dashboard-records-near-ties.png")).await?;
    let studies: std::collections::BTreeSet<&str> = records.iter().map(|r| r.study_id.as_str()).collect();
    let mut in_studies = Vec::new();
    for study in studies {
        c.goto(&format!("{base}{}", radlens_frontend::url_state::study_path(RUN, study))).await.map_err(|e| e.to_string())?;
        let cards = records.iter().filter(|r| r.study_id == study && r.pass == Pass::Image).count();
        wait_for_js(
            c,
            &format!("return document.querySelectorAll('#study-grid article.case').length === {cards} ? true : null;"),
            "the study cards",
        )
        .await?;
        // The badges appear once the run's threshold has come.
        let want: Vec<usize> = ties.iter().copied().filter(|&i| records[i].study_id == study).collect();
        let got = wait_for_js(
            c,
            &format!("const ids = [...document.querySelectorAll('#study-grid article.case')].filter(a => a.querySelector('.facts [data-testid=near-tie]')).map(a => Number(a.dataset.index)).sort((a, b) => a - b); return ids.length === {} ? ids : null;", want.len()),
            &format!("{} near-tie badges in study {study}", want.len()),
        )
        .await
        .unwrap_or(Value::Null);
        check(got == json!(want), format!("study {study}: badges on {got}, near ties {want:?}"))?;
        in_studies.extend(want);
    }
    in_studies.sort_unstable();
    check(in_studies == ties, format!("study badges {in_studies:?}, near ties {ties:?}"))
}

/// The explorer's pass filter offers every pass of the run; "same answer on a blank image" and
/// "near tie" (yes/no) count what records.jsonl says, are kept in the URL, have their meaning on
/// hover, and the browser's CSV equals the server's for the same query.
pub(super) async fn explorer_filters(c: &Client, base: &str, run_dir: &Path, records: &[CaseRecord]) -> Res<()> {
    let eps = eps_of(run_dir)?;
    c.goto(&format!("{base}/runs/{RUN}/records")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count')?.dataset.count ? true : null;", "the explorer").await?;
    let options = js(c, "return [...document.querySelectorAll('#f-pass option')].map(o => o.value);").await?;
    let mut want = vec![String::new()];
    want.extend(Pass::ALL.iter().filter(|p| records.iter().any(|r| r.pass == **p)).map(|p| p.name().to_owned()));
    check(want.len() == Pass::ALL.len() + 1, format!("the demo run has every pass: {want:?}"))?;
    check(options == json!(want), format!("pass options {options}, passes of the run {want:?}"))?;
    for p in Pass::ALL {
        let want: Vec<usize> = (0..records.len()).filter(|&i| records[i].pass == p).collect();
        set_select(c, "f-pass", p.name()).await?;
        wait_count(c, want.len(), &format!("pass = {}", p.name())).await?;
        if p != Pass::Image {
            continue;
        }
        csv_agrees(c, RUN, "pass=image", &want).await?;
    }
    set_select(c, "f-pass", "").await?;
    wait_count(c, records.len(), "pass = any").await?;

    // Worked out here: the blank record of the same sample and model, its answer against the
    // image answer's; the margin against the manifest's eps.
    let same = |i: usize| -> Option<bool> {
        let r = &records[i];
        if r.pass != Pass::Image {
            return None;
        }
        let blank = records.iter().find(|b| b.pass == Pass::BlankImage && b.sample_id == r.sample_id && b.model == r.model)?;
        Some(r.parsed_answer? == blank.parsed_answer?)
    };
    let tie = |i: usize| (records[i].pass == Pass::Image).then_some(records[i].yes_no_margin?.abs() < eps);
    let pick = |f: &dyn Fn(usize) -> Option<bool>, v: bool| (0..records.len()).filter(|&i| f(i) == Some(v)).collect::<Vec<_>>();
    for (id, key, f, meaning) in [
        ("f-blank-same", "blank_same", &same as &dyn Fn(usize) -> Option<bool>, radlens_frontend::conditions::BLANK_SAME_MEANING),
        ("f-near-tie", "near_tie", &tie, radlens_frontend::conditions::NEAR_TIE_FILTER_MEANING),
    ] {
        let title = js(c, &format!("return document.getElementById('{id}').closest('label').title;")).await?;
        check(title.as_str() == Some(meaning), format!("{key} title {title}"))?;
        let (yes, no) = (pick(f, true), pick(f, false));
        check(!yes.is_empty() || !no.is_empty(), format!("{key}: no record is decided"))?;
        check(yes.len() + no.len() < records.len(), format!("{key}: every record is decided: other passes must match neither"))?;
        eprintln!("dashboard e2e: {key}: {} yes, {} no of {}", yes.len(), no.len(), records.len());
        for (value, want) in [("true", &yes), ("false", &no)] {
            set_select(c, id, value).await?;
            wait_count(c, want.len(), &format!("{key} = {value}")).await?;
            let search = js(c, "return location.search;").await?;
            check(search.as_str().is_some_and(|s| s.contains(&format!("{key}={value}"))), format!("URL {search}"))?;
            if !want.is_empty() {
                csv_agrees(c, RUN, &format!("{key}={value}"), want).await?;
            }
        }
        set_select(c, id, "").await?;
        wait_count(c, records.len(), &format!("{key} = any")).await?;
    }
    // Both together, with a pass: the intersection, after a reload.
    c.goto(&format!("{base}/runs/{RUN}/records?pass=image&blank_same=true&near_tie=false")).await.map_err(|e| e.to_string())?;
    let both = (0..records.len()).filter(|&i| same(i) == Some(true) && tie(i) == Some(false)).count();
    wait_count(c, both, "pass = image, same on blank, not a near tie").await?;
    let (n, total) = count_shown(c).await?;
    check(n == both && total == records.len(), format!("{n} of {total} shown"))?;
    let sel = js(c, "return ['f-pass', 'f-blank-same', 'f-near-tie'].map(id => document.getElementById(id).value);").await?;
    check(sel == json!(["image", "true", "false"]), format!("the selects after a reload: {sel}"))
}
