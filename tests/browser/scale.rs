//! The records explorer on a large synthetic run (`support::synthetic_run`) served by the real
//! `radlens serve`, in headless Chromium, timed with the page's own `performance.now()`.
//!
//! * [`explorer_at_scale`] checks, for each of a few filters, that the page shows the count the
//!   shared code computes natively (`radlens_frontend::explorer::select`), and measures how long
//!   it took. The dashboard test runs it once on 2,000 records as a correctness check (no timing
//!   is asserted).
//! * [`csv_spans_every_page`] checks that the CSV download of a many-page view holds every
//!   matching record in the view's order.
//! * `dashboard_benchmark` (ignored; run it with
//!   `cargo test -p radlens-tests --test e2e -- --ignored dashboard_benchmark --nocapture`) does
//!   the same on 10,000 records, three times, and prints the figures: time to the first render
//!   of the explorer (navigation start to the table with every record counted) and time per
//!   filter change (the change event to the next frame after the new count is shown). Build the
//!   bundle you want to measure first (`scripts/build-web.sh release` for the shipped one).

use std::time::Duration;

use fantoccini::Client;
use radlens_frontend::api::ApiRecord;
use radlens_frontend::explorer::{Derived, ExplorerState, NullEditFlags, select};
use radlens_shared::record::CaseRecord;
use serde_json::{Value, json};

use super::{Res, check, js};

/// A filter the benchmark applies: control id, how it is set, its value, its query form.
struct FilterCase {
    label: String,
    id: &'static str,
    /// `select`, `text` (an input event) or `check` (a click).
    kind: &'static str,
    value: String,
    query: String,
}

fn filter_cases(records: &[CaseRecord]) -> Vec<FilterCase> {
    let model = records[0].model.clone();
    let strategy =
        records.iter().map(|r| r.strategy.clone()).find(|s| *s != records[0].strategy).unwrap_or_else(|| records[0].strategy.clone());
    vec![
        FilterCase {
            label: format!("model = {model}"),
            id: "f-model",
            kind: "select",
            value: model.clone(),
            query: format!("model={model}"),
        },
        FilterCase { label: "correct = no".into(), id: "f-correct", kind: "select", value: "false".into(), query: "correct=false".into() },
        FilterCase {
            label: format!("strategy = {strategy}"),
            id: "f-strategy",
            kind: "select",
            value: strategy.clone(),
            query: format!("strategy={strategy}"),
        },
        FilterCase { label: "search \"effusion\"".into(), id: "f-q", kind: "text", value: "effusion".into(), query: "q=effusion".into() },
        FilterCase { label: "flipped vs base".into(), id: "f-flipped", kind: "check", value: String::new(), query: "flipped=true".into() },
    ]
}

/// What one pass over the explorer measured (milliseconds, from the page's clock).
#[derive(Debug, Clone)]
pub struct Figures {
    pub first_render_ms: f64,
    /// (filter, matches, ms)
    pub filters: Vec<(String, usize, f64)>,
}

/// Opens `/runs/RUN/records` on `base` (signed in) and applies each filter from a cleared
/// state, checking every count against the native computation.
pub async fn explorer_at_scale(c: &Client, base: &str, run: &str, records: &[CaseRecord]) -> Res<Figures> {
    let api: Vec<ApiRecord> = records
        .iter()
        .enumerate()
        .map(|(index, r)| ApiRecord { index, image_id: radlens::server::runs::image_id(&r.image), prior_image_id: None, record: r.clone() })
        .collect();
    let derived = Derived::of(&api);
    let facts = facts_of(&api);
    let total = records.len();

    c.goto(&format!("{base}/runs/{run}/records")).await.map_err(|e| e.to_string())?;
    let first = c
        .execute_async(
            "const [want, done] = [arguments[0], arguments[arguments.length - 1]]; \
             const poll = () => { const el = document.getElementById('match-count'); \
               const err = document.querySelector('[data-testid=api-error]'); \
               if (err) done('error: ' + err.textContent); \
               else if (el && el.dataset.total === want && document.querySelector('#records tbody tr')) done(performance.now()); \
               else setTimeout(poll, 1); }; poll();",
            vec![json!(total.to_string())],
        )
        .await
        .map_err(|e| format!("waiting for the explorer: {e}"))?;
    let first_render_ms = first.as_f64().ok_or_else(|| format!("the explorer did not render: {first}"))?;

    let mut filters = Vec::new();
    for f in filter_cases(records) {
        js(c, "document.getElementById('clear').click(); return null;").await?;
        super::wait_for_js(
            c,
            &format!("return document.getElementById('match-count')?.dataset.count === '{total}' || null;"),
            "the cleared explorer",
        )
        .await?;
        let want = select(&api, &derived, &facts, &NullEditFlags::default(), &ExplorerState::from_query(&f.query)).len();
        let ms = c
            .execute_async(
                "const [id, kind, value, want, done] = [arguments[0], arguments[1], arguments[2], arguments[3], arguments[arguments.length - 1]]; \
                 const el = document.getElementById(id); const t0 = performance.now(); \
                 if (kind === 'check') el.click(); else { el.value = value; el.dispatchEvent(new Event(kind === 'text' ? 'input' : 'change', {bubbles: true})); } \
                 const deadline = t0 + 20000; \
                 const poll = () => { const n = document.getElementById('match-count').dataset.count; \
                   if (n === want) requestAnimationFrame(() => done(performance.now() - t0)); \
                   else if (performance.now() > deadline) done('count ' + n); else setTimeout(poll, 0); }; poll();",
                vec![json!(f.id), json!(f.kind), json!(f.value), json!(want.to_string())],
            )
            .await
            .map_err(|e| format!("{}: {e}", f.label))?;
        let ms = ms.as_f64().ok_or_else(|| format!("{}: the page shows {ms} matches, the shared code {want}", f.label))?;
        let search = js(c, "return location.search;").await?;
        check(
            search.as_str().is_some_and(|s| ExplorerState::from_query(s) == ExplorerState::from_query(&f.query)),
            format!("{}: URL {search} is not the view {}", f.label, f.query),
        )?;
        filters.push((f.label, want, ms));
    }
    check(filters.iter().any(|(_, n, _)| *n > 0 && *n < total), format!("no filter narrows the {total} records: {filters:?}"))?;
    Ok(Figures { first_render_ms, filters })
}

/// The CSV download of a view that spans many pages (`query`, already shown on `base`'s
/// `/runs/RUN/records`): every matching record, in the shared code's order, not only the page.
pub async fn csv_spans_every_page(c: &Client, base: &str, run: &str, records: &[CaseRecord], query: &str) -> Res<usize> {
    let api: Vec<ApiRecord> = records
        .iter()
        .enumerate()
        .map(|(index, r)| ApiRecord { index, image_id: String::new(), prior_image_id: None, record: r.clone() })
        .collect();
    let want: Vec<String> = select(&api, &Derived::of(&api), &facts_of(&api), &NullEditFlags::default(), &ExplorerState::from_query(query))
        .into_iter()
        .map(|i| i.to_string())
        .collect();
    check(want.len() > radlens_frontend::explorer::PAGE_SIZE, format!("{query} selects {} records: not more than a page", want.len()))?;
    c.goto(&format!("{base}/runs/{run}/records?{query}")).await.map_err(|e| e.to_string())?;
    super::wait_for_js(
        c,
        &format!("return document.getElementById('match-count')?.dataset.count === '{}' || null;", want.len()),
        &format!("{} matches of {query}", want.len()),
    )
    .await?;
    let file = super::click_download(c, "download-csv").await?;
    let mut csv = csv::Reader::from_reader(file.text.as_bytes());
    let got: Vec<String> = csv.records().map(|r| r.map(|r| r[0].to_owned())).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    check(
        got == want,
        format!(
            "{query}: the CSV lists {} records, the view {}; first {:?} vs {:?}",
            got.len(),
            want.len(),
            &got[..got.len().min(5)],
            &want[..want.len().min(5)]
        ),
    )?;
    Ok(got.len())
}

/// The filter's run facts of a synthetic run: it keeps the demo manifest, which sets no near-tie
/// threshold (the spec's default applies).
fn facts_of(api: &[ApiRecord]) -> radlens_shared::filter::RunFacts {
    radlens_shared::filter::RunFacts::of(api, radlens_shared::grounding::DEFAULT_NEAR_TIE_EPS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The 10,000-record benchmark (see the module doc). Not a pass/fail timing test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored dashboard_benchmark --nocapture"]
async fn dashboard_benchmark() {
    use crate::support::Scratch;
    const N: usize = 10_000;
    let dist = super::preflight();
    let artifacts = super::artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let scratch = Scratch::new("dashboard-bench");
    let root = scratch.path().to_path_buf();
    let runs = root.join("runs");
    let (records, images) = tokio::task::spawn_blocking({
        let root = root.clone();
        let runs = runs.clone();
        move || {
            let demo =
                crate::support::demo_run::build(&root.join("models"), &root.join("template"), 2, vec!["radlens".into(), "study".into()]);
            let records = crate::support::synthetic_run::scale_up(&root.join("template"), &runs.join("bench"), N, 7);
            (records, demo.images)
        }
    })
    .await
    .expect("synthetic run");
    let wasm = dist.join("radlens_frontend_bg.wasm");
    let mut opts = radlens::server::ServeOptions::new(&runs);
    opts.port = 0;
    opts.images = Some(images);
    opts.dist = Some(dist);
    opts.workers = Some(2);
    let server = radlens::server::start(opts).expect("start radlens serve");
    let driver = super::driver::ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = super::connect(&driver).await.unwrap_or_else(|e| panic!("{e}"));
    let sign_in = server.url();
    let base = sign_in.split("/?token=").next().unwrap_or_default().to_owned();
    client.goto(&sign_in).await.expect("sign in");
    super::wait_for_js(&client, "return document.querySelector('#runs tr[data-run=\"bench\"]') ? true : null;", "the runs list")
        .await
        .expect("signed in");
    let mut passes = Vec::new();
    for _ in 0..3 {
        match explorer_at_scale(&client, &base, "bench", &records).await {
            Ok(f) => passes.push(f),
            Err(e) => {
                let e = super::with_page_state(&client, &artifacts, e).await;
                let _ = client.close().await;
                panic!("dashboard benchmark: {e}");
            }
        }
    }
    let _ = super::screenshot(&client, &artifacts.join("benchmark-explorer.png")).await;
    let _ = client.close().await;
    drop(driver);
    tokio::task::spawn_blocking(move || server.stop()).await.ok();
    let report = json!({
        "records": N,
        "bundle_wasm_bytes": std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0),
        "first_render_ms": passes.iter().map(|p| p.first_render_ms).collect::<Vec<_>>(),
        "first_render_ms_median": median(passes.iter().map(|p| p.first_render_ms).collect()),
        "filters": passes[0].filters.iter().enumerate().map(|(i, (label, n, _))| json!({
            "filter": label,
            "matches": n,
            "ms": passes.iter().map(|p| p.filters[i].2).collect::<Vec<_>>(),
            "ms_median": median(passes.iter().map(|p| p.filters[i].2).collect()),
        })).collect::<Vec<Value>>(),
    });
    let text = serde_json::to_string_pretty(&report).expect("json");
    std::fs::write(artifacts.join("dashboard-benchmark.json"), &text).expect("write the figures");
    println!("dashboard benchmark (headless Chromium, {} records):\n{text}", N);
}
