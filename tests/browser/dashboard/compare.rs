//! Dashboard step on the compare page (`/compare`).

use std::path::Path;

use fantoccini::{Client, Locator};
use serde_json::Value;

use super::super::{Res, check, js, screenshot, wait_for_js};

/// The compare page: the nav link leads there; an uploaded fixture image and a question (kept
/// in the URL) give one card per `--model` with a drawn, non-uniform overlay, and a table of
/// the cross-model JS divergence.
pub(super) async fn compare_page(c: &Client, base: &str, n_models: usize, artifacts: &Path) -> Res<()> {
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
    // Image conditions: roi_occluded without a box is refused in the form; blank and contrast90
    // give each card a row per condition with a parsed answer.
    js(c, "document.getElementById('cond-roi_occluded').click(); document.getElementById('compare-submit').click(); return null;").await?;
    let err = wait_for_js(c, "return document.querySelector('[data-testid=form-error]')?.textContent ?? null;", "the missing-box message")
        .await?;
    check(err.as_str().is_some_and(|t| t.contains("box")), format!("the form error without a box: {err}"))?;
    js(c, "document.getElementById('cond-roi_occluded').click(); document.getElementById('cond-blank').click(); document.getElementById('cond-contrast90').click(); document.getElementById('compare-submit').click(); return null;").await?;
    let rows = wait_for_js(
        c,
        &format!(
            "const t = [...document.querySelectorAll('article.compare-card [data-testid=condition-answers]')];             if (t.length !== {n_models}) return null;             return t.map(x => [...x.querySelectorAll('tbody tr')].map(r => [r.dataset.condition, r.dataset.parsed]));"
        ),
        "a condition table per compare card",
    )
    .await?;
    check(
        rows.as_array().is_some_and(|cards| {
            cards.iter().all(|rows| {
                rows.as_array().is_some_and(|r| {
                    r.len() == 2
                        && r[0][0] == "blank"
                        && r[1][0] == "contrast90"
                        && r.iter().all(|x| x[1].as_str().is_some_and(|p| ["yes", "no", "unknown"].contains(&p)))
                })
            })
        }),
        format!("condition rows per card: {rows}"),
    )?;
    screenshot(c, &artifacts.join("dashboard-compare-conditions.png")).await?;
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
    check(js(c, "return document.querySelectorAll('article.compare-card').length;").await? == 0, "no cards beside the error")?;
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
