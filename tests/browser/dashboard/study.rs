//! Dashboard steps on the study view (`/runs/:id/studies/:study`): the drawn overlays, the
//! method and trust panels, the overlay controls and colour bar, re-fusion from rows.bin, and
//! pinning with difference maps and JS matrices.

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::Client;
use radlens_shared::record::CaseRecord;
use serde_json::Value;

use super::super::{Res, check, js, screenshot, wait_for_js};
use super::RUN;

/// The study view of the first study: one card per image-pass variant x model, every map drawn.
pub(super) async fn study_view(c: &Client, base: &str, records: &[CaseRecord]) -> Res<()> {
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
    Ok(())
}

/// Each map's provenance line, the X-rays loaded, the overlay's pixels non-uniform at
/// `opacity=0.8`, and the opacity slider (kept in the URL) changing them.
pub(super) async fn provenance_images_and_opacity(c: &Client, records: &[CaseRecord], artifacts: &Path) -> Res<()> {
    let study = records[0].study_id.clone();
    let maps = records.iter().filter(|r| r.study_id == study && r.pass == radlens_shared::record::Pass::Image && r.map.is_some()).count();
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
    let deadline = Instant::now() + super::super::WAIT;
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
    screenshot(c, &artifacts.join("dashboard-study-faint.png")).await
}

/// The demo run makes Grad-CAM and relative maps: each image-pass card shows its maps side by
/// side, every one drawn, with the pairwise JS distance the browser computes (shared code) equal
/// to what the run stored in the record.
pub(super) async fn methods_side_by_side(c: &Client, records: &[CaseRecord], study: &str) -> Res<()> {
    let mut checked = 0;
    for (i, r) in records.iter().enumerate() {
        if r.study_id != study || r.pass != radlens_shared::record::Pass::Image {
            continue;
        }
        let methods = radlens_frontend::methods::panel_methods(r);
        check(methods.len() >= 2, format!("record {i} has no other method's map: {:?}", r.trust))?;
        let sel = format!("[data-testid=methods][data-index=\"{i}\"]");
        // Every map drawn; the JS table pairs the maps on the attention grid (the occlusion map
        // is compared by the grounding figures instead).
        let in_js = methods.iter().filter(|m| radlens_frontend::methods::in_js_table(**m)).count();
        wait_for_js(
            c,
            &format!("const s = document.querySelector('{sel}'); return s && s.querySelectorAll('canvas.method-overlay[data-drawn=\"true\"]').length === {} && s.querySelectorAll('.method-js tr[data-js]:not([data-js=\"\"])').length === {} || null;", methods.len(), in_js * (in_js - 1) / 2),
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
pub(super) async fn trust_checks(c: &Client, records: &[CaseRecord], study: &str) -> Res<()> {
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
            (magenta.as_u64().unwrap_or(0) > 0) != cells.is_empty(),
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
pub(super) async fn overlay_controls(c: &Client, base: &str, study: &str, artifacts: &Path) -> Res<()> {
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
    screenshot(c, &artifacts.join("dashboard-study-controls.png")).await
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
pub(super) async fn refusion(c: &Client, base: &str, study: &str, artifacts: &Path) -> Res<()> {
    c.goto(&format!("{base}/runs/{RUN}/studies/{study}")).await.map_err(|e| e.to_string())?;
    let stored = wait_for_js(c, REFUSED, "re-fused metrics").await?;
    let rows = refused_rows(&stored)?;
    check(!rows.is_empty() && all_equal_stored(&rows), format!("re-fused as stored != stored metrics: {stored}"))?;
    set_control(c, "fusion", "max").await?;
    wait_for_js(c, "return location.search.includes('fusion=max') || null;", "fusion in the URL").await?;
    let deadline = Instant::now() + super::super::WAIT;
    loop {
        let v = js(c, REFUSED).await?;
        if let Ok(r) = refused_rows(&v)
            && !r.is_empty()
            && !all_equal_stored(&r)
        {
            break;
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
    let deadline = Instant::now() + super::super::WAIT;
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
    Ok(())
}

/// Pin a card: the other cards of its model show the JS distance to it (equal to the matrix
/// cell), one of them draws the difference map; the per-model JS matrix is symmetric with a
/// zero diagonal.
pub(super) async fn pin_and_compare(c: &Client, base: &str, study: &str, artifacts: &Path) -> Res<()> {
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
    let deadline = Instant::now() + super::super::WAIT;
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
    let deadline = Instant::now() + super::super::WAIT;
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
