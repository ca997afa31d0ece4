//! Dashboard steps on grounding (issue 16; `fixtures/spec/grounding.md` G1-G4): the occlusion map
//! beside the other maps and as the overlay, the G2 boxes drawn on the overlay (kept in the URL),
//! the grounding figures with their meanings on hover, and the explorer's "map beats controls"
//! and "null edit" filters counted against an independent computation from `records.jsonl` (and
//! the run's stored maps), in the browser's CSV and the server's `records.csv` alike.

use std::collections::BTreeMap;
use std::path::Path;

use fantoccini::Client;
use radlens_frontend::grounding::{Figure, map_cell, meaning};
use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{CaseRecord, Pass};
use serde_json::Value;

use super::super::{Res, check, js, screenshot, wait_for_js};
use super::{RUN, count_shown, wait_count};

fn image_records<'a>(records: &'a [CaseRecord], study: &'a str) -> impl Iterator<Item = (usize, &'a CaseRecord)> + 'a {
    records.iter().enumerate().filter(move |(_, r)| r.study_id == study && r.pass == Pass::Image && r.map.is_some())
}

fn has_occlusion_map(r: &CaseRecord) -> bool {
    r.trust.as_ref().is_some_and(|t| t.map(MapMethod::Occlusion).is_some())
}

/// The study of the first record with a radiologist box and a map (the demo run boxes its first
/// study).
pub(super) fn boxed_study(records: &[CaseRecord]) -> Res<String> {
    records
        .iter()
        .find(|r| r.roi.is_some() && r.map.is_some() && r.pass == Pass::Image)
        .map(|r| r.study_id.clone())
        .ok_or_else(|| "no image-pass record with a radiologist box and a map: the demo run must box a study".to_owned())
}

/// Every image-pass record with an occlusion map shows it drawn beside its other maps; choosing
/// "occlusion" as the overlay draws it on every such card (the URL keeps `overlay=occlusion`),
/// on its own grid.
pub(super) async fn occlusion_maps(c: &Client, base: &str, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let study = boxed_study(records)?;
    let with: Vec<usize> = image_records(records, &study).filter(|(_, r)| has_occlusion_map(r)).map(|(i, _)| i).collect();
    check(!with.is_empty(), format!("no record of study {study} has an occlusion map: is grounding on in the demo run?"))?;
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?opacity=0.8")).await.map_err(|e| e.to_string())?;
    for &i in &with {
        wait_for_js(
            c,
            &format!("return document.querySelector('[data-testid=methods][data-index=\"{i}\"] canvas.method-overlay[data-method=occlusion][data-drawn=\"true\"]') ? true : null;"),
            &format!("record {i}: its occlusion map drawn beside the others"),
        )
        .await?;
    }
    js(c, "const el = document.getElementById('overlay-method'); el.value = 'occlusion'; el.dispatchEvent(new Event('change', {bubbles: true})); return null;").await?;
    wait_for_js(c, "return location.search.includes('overlay=occlusion') || null;", "overlay=occlusion in the URL").await?;
    for &i in &with {
        let (h, w) = records[i]
            .trust
            .as_ref()
            .and_then(|t| t.map(MapMethod::Occlusion))
            .map(|m| (m.provenance.geometry.h, m.provenance.geometry.w))
            .unwrap_or((0, 0));
        let (pw, ph) = radlens_frontend::study::overlay_size(h, w);
        wait_for_js(
            c,
            &format!("const cv = document.querySelector('canvas.overlay-map[data-index=\"{i}\"]'); return cv && cv.dataset.method === 'occlusion' && cv.width === {pw} && cv.height === {ph} || null;"),
            &format!("record {i}: the occlusion map ({h} x {w}) as its overlay"),
        )
        .await?;
        let said = js(c, &format!("return document.querySelector('canvas.overlay-map[data-index=\"{i}\"]').closest('article').querySelector('[data-testid=overlay-shown]')?.dataset.method ?? null;")).await?;
        check(said.as_str() == Some("occlusion"), format!("record {i}: the card does not say its overlay is the occlusion map: {said}"))?;
    }
    screenshot(c, &artifacts.join("dashboard-study-occlusion.png")).await?;
    // Back to each record's own map.
    js(c, "const el = document.getElementById('overlay-method'); el.value = ''; el.dispatchEvent(new Event('change', {bubbles: true})); return null;").await?;
    wait_for_js(c, "return (!location.search.includes('overlay=') && [...document.querySelectorAll('canvas.overlay-map')].every(cv => cv.dataset.method !== 'occlusion')) || null;", "the own maps again").await?;
    Ok(())
}

/// Pixels of one card's overlay as a list (to compare before and after).
fn overlay_pixels(i: usize) -> String {
    format!(
        "const cv = document.querySelector('canvas.overlay-map[data-index=\"{i}\"]'); return cv ? Array.from(cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data) : null;"
    )
}

/// How many opaque pixels of the radiologist box's colour (`#00e5ff`) a card's overlay has.
fn roi_colour_pixels(i: usize) -> String {
    format!(
        "const cv = document.querySelector('canvas.overlay-map[data-index=\"{i}\"]'); const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data; let n = 0; for (let j = 0; j < d.length; j += 4) if (d[j] === 0 && d[j+1] === 229 && d[j+2] === 255 && d[j+3] === 255) n++; return n;"
    )
}

/// The boxes toggle: off, the overlay is the map alone; on, the radiologist box, its mirror and
/// as many control boxes as the shared enumeration finds on the map's grid (and as the run
/// stored as `n_controls`) are drawn, the pixels change, a legend names the three kinds; the
/// state is in the URL and survives a reload.
pub(super) async fn control_boxes(c: &Client, base: &str, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let study = boxed_study(records)?;
    let (i, r) = image_records(records, &study).find(|(_, r)| r.roi.is_some()).ok_or("no boxed record")?;
    let m = r.map.as_ref().ok_or("no map")?;
    let roi = r.roi.ok_or("no box")?;
    let controls = radlens_shared::grounding::control_boxes(&m.provenance.geometry, &roi).map_err(|e| e.to_string())?;
    let stored = r.grounding.as_ref().and_then(|g| g.of(m.provenance.method)).and_then(|g| g.box_controls.as_ref()).map(|b| b.n_controls);
    check(stored == Some(controls.len()), format!("record {i}: {} control boxes on its grid, the run stored {stored:?}", controls.len()))?;
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}?opacity=0.8")).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        &format!("return document.querySelector('canvas.overlay-map[data-index=\"{i}\"][data-drawn=\"true\"]') ? true : null;"),
        "the overlay",
    )
    .await?;
    let off = js(c, &overlay_pixels(i)).await?;
    check(js(c, &roi_colour_pixels(i)).await?.as_u64() == Some(0), "no box colour with the boxes off")?;
    js(c, "document.getElementById('boxes').click(); return null;").await?;
    wait_for_js(c, "return location.search.includes('boxes=1') || null;", "boxes=1 in the URL").await?;
    let want = (controls.len() + 2).to_string();
    wait_for_js(
        c,
        &format!("return document.querySelector('canvas.overlay-map[data-index=\"{i}\"]')?.dataset.boxes === '{want}' || null;"),
        &format!("record {i}: {want} boxes drawn"),
    )
    .await?;
    let on = js(c, &overlay_pixels(i)).await?;
    check(
        on != off && on.as_array().map(Vec::len) == off.as_array().map(Vec::len),
        format!("record {i}: the boxes do not change the overlay's pixels"),
    )?;
    let roi_px = js(c, &roi_colour_pixels(i)).await?;
    check(roi_px.as_u64().unwrap_or(0) > 0, format!("record {i}: no pixel in the radiologist box's colour"))?;
    let legend = js(c, &format!("const a = document.querySelector('canvas.overlay-map[data-index=\"{i}\"]').closest('article'); return [...a.querySelectorAll('[data-testid=box-legend] li')].map(li => [li.dataset.kind, li.textContent]);")).await?;
    let kinds: Vec<&str> = legend.as_array().into_iter().flatten().filter_map(|l| l[0].as_str()).collect();
    check(kinds == ["roi", "mirror", "control"], format!("record {i}: legend {legend}"))?;
    check(
        legend[2][1].as_str().is_some_and(|t| t.contains(&format!("({})", controls.len()))),
        format!("record {i}: the legend does not count the {} control boxes: {legend}", controls.len()),
    )?;
    js(c, &format!("document.querySelector('canvas.overlay-map[data-index=\"{i}\"]').scrollIntoView(); return null;")).await?;
    screenshot(c, &artifacts.join("dashboard-study-boxes.png")).await?;
    // The link reopens with the boxes drawn.
    let link = js(c, "return location.href;").await?;
    c.goto("about:blank").await.map_err(|e| e.to_string())?;
    c.goto(link.as_str().unwrap_or_default()).await.map_err(|e| e.to_string())?;
    wait_for_js(
        c,
        &format!("return (document.getElementById('boxes')?.checked && document.querySelector('canvas.overlay-map[data-index=\"{i}\"][data-drawn=\"true\"]')?.dataset.boxes === '{want}') || null;"),
        "the boxes after a reload",
    )
    .await?;
    check(js(c, &roi_colour_pixels(i)).await?.as_u64().unwrap_or(0) > 0, "the radiologist box after a reload")?;
    // Off again: the map alone.
    js(c, "document.getElementById('boxes').click(); return null;").await?;
    wait_for_js(c, "return location.search.includes('boxes=0') || null;", "boxes=0 in the URL").await?;
    wait_for_js(c, &format!("return (() => {{ {} }})() === 0 || null;", roi_colour_pixels(i)), "no box after switching off").await?;
    Ok(())
}

/// Each image-pass card of the boxed study shows its stored grounding figures, per map method
/// in the stored order, every number and row name with its meaning (from the one table) as
/// its hover title.
pub(super) async fn grounding_figures(c: &Client, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let study = boxed_study(records)?;
    let mut shown = 0;
    for (i, r) in image_records(records, &study) {
        let Some(g) = r.grounding.as_ref() else { continue };
        let sel = format!("[data-testid=grounding][data-index=\"{i}\"]");
        let heads = wait_for_js(
            c,
            &format!("const s = document.querySelector('{sel}'); return s ? [...s.querySelectorAll('table.grounding-maps thead th[data-method]')].map(t => t.dataset.method) : null;"),
            &format!("record {i}: its grounding table"),
        )
        .await?;
        let want: Vec<String> = g.maps.iter().map(|m| m.method.to_string()).collect();
        check(heads == serde_json::json!(want), format!("record {i}: grounding columns {heads}, stored {want:?}"))?;
        for f in Figure::MAP_ROWS {
            let cells = js(c, &format!("const tr = document.querySelector('{sel} table.grounding-maps tr[data-figure={}]'); return tr ? [tr.querySelector('th').title, [...tr.querySelectorAll('td')].map(td => [td.dataset.value, td.title])] : null;", f.key())).await?;
            let wanted: Vec<Option<f64>> = g.maps.iter().map(|m| map_cell(&m.figures, f).raw).collect();
            if cells.is_null() {
                // A row is left out only when no map has that part (no occlusion, or no box).
                check(wanted.iter().all(Option::is_none), format!("record {i}: no {} row, stored {wanted:?}", f.key()))?;
                continue;
            }
            check(cells[0].as_str() == Some(meaning(f)), format!("record {i}: the {} row's title is {}", f.key(), cells[0]))?;
            let tds = cells[1].as_array().cloned().unwrap_or_default();
            check(tds.len() == wanted.len(), format!("record {i}: {} cells in the {} row for {} maps", tds.len(), f.key(), wanted.len()))?;
            for (td, w) in tds.iter().zip(&wanted) {
                let got = td[0].as_str().filter(|s| !s.is_empty()).map(|s| s.parse::<f64>().map_err(|e| e.to_string())).transpose()?;
                check(got == *w, format!("record {i}: {} shows {got:?}, stored {w:?}", f.key()))?;
                check(td[1].as_str() == Some(meaning(f)), format!("record {i}: {} cell title {}", f.key(), td[1]))?;
            }
            shown += 1;
        }
        // Null edits of the own map, each with its stored numbers and meanings.
        let edits = radlens_shared::views::own_null_edits(r);
        let rows = js(c, &format!("return [...document.querySelectorAll('{sel} table.null-edits tbody tr')].map(tr => [tr.dataset.edit, [...tr.querySelectorAll('td')].map(td => [td.dataset.figure, td.dataset.value, td.title])]);")).await?;
        let rows = rows.as_array().cloned().unwrap_or_default();
        check(rows.len() == edits.len(), format!("record {i}: {} null-edit rows, {} stored", rows.len(), edits.len()))?;
        for (row, e) in rows.iter().zip(edits) {
            check(row[0].as_str() == Some(e.edit.name()), format!("record {i}: null-edit row {} for {}", row[0], e.edit))?;
            let by_key: BTreeMap<&str, (&str, &str)> = row[1]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|td| Some((td[0].as_str()?, (td[1].as_str().unwrap_or_default(), td[2].as_str().unwrap_or_default()))))
                .collect();
            let js_shown = by_key.get("js_distance").and_then(|(v, _)| v.parse::<f64>().ok());
            check(js_shown == Some(e.js_distance), format!("record {i}: {} JS {js_shown:?}, stored {}", e.edit, e.js_distance))?;
            for f in [Figure::NullAnswerEqual, Figure::NullMarginDelta, Figure::NullJsDistance] {
                check(
                    by_key.get(f.key()).map(|(_, t)| *t) == Some(meaning(f)),
                    format!("record {i}: {} has no meaning on hover", f.key()),
                )?;
            }
        }
        if !edits.is_empty() {
            // The study's comparison: its column heads carry their meanings (its rows appear
            // once the study's maps are in; `null_edit_views` checks their numbers).
            let heads = js(c, &format!("return [...document.querySelectorAll('{sel} table.null-study thead th[data-figure]')].map(th => [th.dataset.figure, th.title]);")).await?;
            let want: Vec<Value> = [Figure::ParaphraseJs, Figure::StudyNullJs, Figure::ParaphraseToNull, Figure::NullEditFlag]
                .iter()
                .map(|f| serde_json::json!([f.key(), meaning(*f)]))
                .collect();
            check(heads == Value::Array(want), format!("record {i}: the study comparison's heads {heads}"))?;
        }
    }
    check(shown > 0, format!("no grounding figure shown in study {study}: is grounding on in the demo run?"))?;
    js(c, "document.querySelector('[data-testid=grounding]').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("dashboard-study-grounding.png")).await
}

// ---- the explorer's grounding filters, against an independent computation ----

/// The record's own map's G2 ROI percentile, read straight from the record.
fn own_roi_percentile(r: &CaseRecord) -> Option<f64> {
    let own = r.map.as_ref()?.provenance.method;
    r.grounding.as_ref()?.maps.iter().find(|g| g.method == own)?.figures.box_controls.as_ref()?.roi_percentile
}

/// JS distance in bits, written out here (not the shared code): `sqrt(JS(p, q))` with
/// `p`, `q` normalised and `0 log 0 = 0`.
fn js_distance_bits(a: &[f64], b: &[f64]) -> f64 {
    let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    let mut d = 0.0;
    for (x, y) in a.iter().zip(b) {
        let (p, q) = (x / sa, y / sb);
        let m = (p + q) / 2.0;
        if p > 0.0 {
            d += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            d += 0.5 * q * (q / m).log2();
        }
    }
    d.max(0.0).sqrt()
}

/// Per record: is its (study, model) flagged by G4 (`Some(true)`), compared but not flagged
/// (`Some(false)`), or not compared (`None`)? Worked out from the records and the maps in the
/// run's tensor store, by hand: paraphrase distances from the base variant's map, null
/// distances as stored, a flag where some edit's mean paraphrase distance is below its mean
/// null distance.
fn null_edit_verdicts(run_dir: &Path, records: &[CaseRecord]) -> Res<(Vec<Option<bool>>, Ratios)> {
    let dir = radlens::study::run_dir::RunDir::open(run_dir).map_err(|e| e.to_string())?;
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate().filter(|(_, r)| r.pass == Pass::Image) {
        groups.entry((r.study_id.as_str(), r.model.as_str())).or_default().push(i);
    }
    let mut out = vec![None; records.len()];
    let mut ratios_of = Ratios::new();
    for (&(study, model), group) in &groups {
        let edits = |i: usize| -> Vec<(String, f64)> {
            let r = &records[i];
            let Some(own) = r.map.as_ref().map(|m| m.provenance.method) else { return Vec::new() };
            r.grounding
                .as_ref()
                .and_then(|g| g.maps.iter().find(|m| m.method == own))
                .map(|m| m.figures.null_edits.iter().map(|e| (e.edit.name().to_owned(), e.js_distance)).collect())
                .unwrap_or_default()
        };
        if group.iter().all(|&i| edits(i).is_empty()) {
            continue;
        }
        let values = |i: usize| -> Res<Option<Vec<f64>>> {
            let Some(m) = records[i].map.as_ref() else { return Ok(None) };
            Ok(Some(dir.read_f32(&m.values).map_err(|e| e.to_string())?.into_iter().map(f64::from).collect()))
        };
        let base = group.iter().find(|&&i| records[i].variant_index == 0);
        let mut paraphrase = Vec::new();
        if let Some(Some(b)) = base.map(|&b| values(b)).transpose()? {
            for &i in group.iter().filter(|&&i| records[i].variant_index != 0) {
                if let Some(v) = values(i)? {
                    paraphrase.push(js_distance_bits(&b, &v));
                }
            }
        }
        let mut null: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for &i in group {
            for (e, d) in edits(i) {
                null.entry(e).or_default().push(d);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let per_edit: BTreeMap<String, Option<f64>> = null
            .iter()
            .map(|(e, n)| {
                let ratio = (!paraphrase.is_empty() && mean(n.as_slice()) != 0.0).then(|| mean(paraphrase.as_slice()) / mean(n.as_slice()));
                (e.clone(), ratio)
            })
            .collect();
        let ratios: Vec<f64> = per_edit.values().flatten().copied().collect();
        let verdict = (!ratios.is_empty()).then(|| ratios.iter().any(|r| *r < 1.0));
        for &i in group {
            out[i] = verdict;
        }
        ratios_of.insert((study.to_owned(), model.to_owned()), per_edit);
    }
    Ok((out, ratios_of))
}

/// Per (study, model), each null edit's paraphrase-to-null ratio (by edit name).
type Ratios = BTreeMap<(String, String), BTreeMap<String, Option<f64>>>;

/// Sets a yes/no/any select of the explorer.
pub(super) async fn set_select(c: &Client, id: &str, value: &str) -> Res<()> {
    js(c, &format!("const el = document.getElementById('{id}'); el.value = '{value}'; el.dispatchEvent(new Event('change', {{bubbles: true}})); return null;")).await.map(drop)
}

/// The explorer's CSV download of the view on screen equals the server's `records.csv` for the
/// same query, and lists exactly the records `want` (run indices, in run order).
pub(super) async fn csv_agrees(c: &Client, run: &str, query: &str, want: &[usize]) -> Res<()> {
    let file = super::super::click_download(c, "download-csv").await?;
    let server =
        js(c, &format!("return fetch('/api/runs/{run}/records.csv?{query}').then(r => r.ok ? r.text() : 'HTTP ' + r.status);")).await?;
    check(
        server.as_str() == Some(file.text.as_str()),
        format!("{query}: the server's records.csv differs from the download:\n{server}\n---\n{}", file.text),
    )?;
    let mut rows = csv::Reader::from_reader(file.text.as_bytes());
    let got: Vec<usize> = rows
        .records()
        .map(|r| r.map_err(|e| e.to_string()).and_then(|r| r[0].parse::<usize>().map_err(|e| e.to_string())))
        .collect::<Res<_>>()?;
    check(got == want, format!("{query}: CSV rows {got:?}, expected {want:?}"))
}

/// "Map beats controls" and "map moves more under a null edit than under rewording": each
/// yes/no count equals the independent computation, is kept in the URL, has its meaning on
/// hover, and the browser's CSV equals the server's `records.csv` for the same query.
pub(super) async fn explorer_filters(c: &Client, base: &str, run_dir: &Path, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let pct: Vec<Option<f64>> = records.iter().map(own_roi_percentile).collect();
    let beats = radlens_shared::grounding::controls::BEATS_CONTROLS_PERCENTILE;
    let pick = |f: &dyn Fn(usize) -> bool| (0..records.len()).filter(|&i| f(i)).collect::<Vec<_>>();
    let yes = pick(&|i| pct[i].is_some_and(|p| p >= beats));
    let no = pick(&|i| pct[i].is_some_and(|p| p < beats));
    check(!yes.is_empty() || !no.is_empty(), "no record has box controls on its own map: is the demo study boxed and grounded?")?;
    check(yes.len() + no.len() < records.len(), "every record has box controls: the unboxed records must match neither")?;
    c.goto(&format!("{base}/runs/{RUN}/records")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count')?.dataset.count ? true : null;", "the explorer").await?;
    let title = js(c, "return document.getElementById('f-beats-controls').closest('label').title;").await?;
    check(title.as_str() == Some(meaning(Figure::BeatsControlsFilter)), format!("beats-controls title {title}"))?;
    for (value, want) in [("true", &yes), ("false", &no)] {
        set_select(c, "f-beats-controls", value).await?;
        wait_count(c, want.len(), &format!("map beats controls = {value}")).await?;
        let search = js(c, "return location.search;").await?;
        check(search.as_str().is_some_and(|s| s.contains(&format!("beats_controls={value}"))), format!("URL {search}"))?;
        if !want.is_empty() {
            csv_agrees(c, RUN, &format!("beats_controls={value}"), want).await?;
        }
    }
    set_select(c, "f-beats-controls", "").await?;
    wait_count(c, records.len(), "map beats controls = any").await?;

    let (verdicts, _) = null_edit_verdicts(run_dir, records)?;
    let moved = pick(&|i| verdicts[i] == Some(true));
    let steady = pick(&|i| verdicts[i] == Some(false));
    let with_null_edits = records.iter().filter(|r| !radlens_shared::views::own_null_edits(r).is_empty()).count();
    // The demo run is made with --grounding, so its image-pass records carry both null edits.
    check(with_null_edits > 0, "the demo run's records carry null edits".to_string())?;
    check(
        moved.len() + steady.len() > 0,
        format!("{with_null_edits} records have null edits but no study has a paraphrase-to-null ratio"),
    )?;
    let title = js(c, "return document.getElementById('f-null-edit').closest('label').title;").await?;
    check(title.as_str() == Some(meaning(Figure::NullEditFilter)), format!("null-edit title {title}"))?;
    for (value, want) in [("true", &moved), ("false", &steady)] {
        set_select(c, "f-null-edit", value).await?;
        wait_count(c, want.len(), &format!("map moves more under a null edit = {value}")).await?;
        let search = js(c, "return location.search;").await?;
        check(search.as_str().is_some_and(|s| s.contains(&format!("null_edit_moves={value}"))), format!("URL {search}"))?;
        if !want.is_empty() {
            csv_agrees(c, RUN, &format!("null_edit_moves={value}"), want).await?;
        }
    }
    // Both filters together narrow to the intersection, and survive a reload.
    set_select(c, "f-beats-controls", "false").await?;
    let both: Vec<usize> = steady.iter().copied().filter(|i| no.contains(i)).collect();
    wait_count(c, both.len(), "both filters").await?;
    let link = js(c, "return location.href;").await?;
    c.goto(link.as_str().unwrap_or_default()).await.map_err(|e| e.to_string())?;
    wait_count(c, both.len(), "both filters after a reload").await?;
    let (n, total) = count_shown(c).await?;
    check(n == both.len() && total == records.len(), format!("after reload: {n} of {total}"))?;
    set_select(c, "f-null-edit", "").await?;
    set_select(c, "f-beats-controls", "true").await?;
    wait_count(c, yes.len(), "map beats controls = yes").await?;
    screenshot(c, &artifacts.join("dashboard-records-grounding.png")).await
}

/// The null-edit views on a copy of the demo run with synthetic null edits (alternating study
/// verdicts, see `support::synthetic_run::with_null_edits`): the explorer's yes/no counts equal
/// the independent computation from the stored maps (both non-empty), both CSVs agree; the study
/// view shows each edit's paraphrase-to-null ratio and verdict as computed by hand.
pub(super) async fn null_edit_views(c: &Client, base: &str, run_dir: &Path, artifacts: &Path) -> Res<()> {
    let template = run_dir.to_path_buf();
    let copy = run_dir.with_file_name("nulls");
    let copy2 = copy.clone();
    let records = tokio::task::spawn_blocking(move || crate::support::synthetic_run::with_null_edits(&template, &copy2))
        .await
        .map_err(|e| e.to_string())?;
    let (verdicts, ratios) = null_edit_verdicts(&copy, &records)?;
    let pick = |v: bool| (0..records.len()).filter(|&i| verdicts[i] == Some(v)).collect::<Vec<_>>();
    let (moved, steady) = (pick(true), pick(false));
    check(
        !moved.is_empty() && !steady.is_empty(),
        format!("{} flagged and {} unflagged records: both must occur", moved.len(), steady.len()),
    )?;
    c.goto(&format!("{base}/runs/nulls/records")).await.map_err(|e| e.to_string())?;
    wait_for_js(c, "return document.getElementById('match-count')?.dataset.count ? true : null;", "the explorer of the copy").await?;
    for (value, want) in [("true", &moved), ("false", &steady)] {
        set_select(c, "f-null-edit", value).await?;
        wait_count(c, want.len(), &format!("null edit = {value} on the copy")).await?;
        csv_agrees(c, "nulls", &format!("null_edit_moves={value}"), want).await?;
    }
    screenshot(c, &artifacts.join("dashboard-records-null-edits.png")).await?;
    // The study view of a flagged study: per card, per edit, the ratio and verdict.
    let study = records[moved[0]].study_id.clone();
    c.goto(&format!("{base}/runs/nulls/studies/{study}")).await.map_err(|e| e.to_string())?;
    let mut rows = 0;
    for (i, r) in image_records(&records, &study) {
        let Some(per_edit) = ratios.get(&(r.study_id.clone(), r.model.clone())) else { continue };
        for e in radlens_shared::views::own_null_edits(r) {
            let want = per_edit.get(e.edit.name()).copied().flatten();
            let got = wait_for_js(
                c,
                &format!("const tr = document.querySelector('[data-testid=grounding][data-index=\"{i}\"] table.null-study tr[data-edit={}]'); return tr && tr.dataset.flagged !== '' ? [tr.dataset.flagged, tr.querySelector('td[data-figure=paraphrase_to_null]').dataset.value] : null;", e.edit.name()),
                &format!("record {i}: the {} study figures", e.edit),
            )
            .await?;
            let ratio = got[1].as_str().and_then(|v| v.parse::<f64>().ok());
            let close = match (ratio, want) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                (a, b) => a == b,
            };
            check(close, format!("record {i}, {}: ratio {ratio:?} shown, {want:?} by hand", e.edit))?;
            let flagged = want.is_some_and(|w| w < 1.0).to_string();
            check(
                got[0].as_str() == Some(flagged.as_str()),
                format!("record {i}, {}: flagged {} shown, {flagged} by hand", e.edit, got[0]),
            )?;
            rows += 1;
        }
    }
    check(rows > 0, format!("no null-edit row checked in study {study}"))?;
    js(c, "document.querySelector('table.null-study').scrollIntoView(); return null;").await?;
    screenshot(c, &artifacts.join("dashboard-study-null-edits.png")).await
}
