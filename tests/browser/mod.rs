//! Browser end-to-end test of the dashboard bundle in `dist/` (built by `scripts/build-web.sh`):
//! a tiny static server + chromedriver + headless Debian Chromium, driven with fantoccini.
//!
//! `dashboard`: the pages over a real `radlens serve` (runs, overview, records explorer, study
//! view, compare, share links), as named steps over one server and one browser session.
//! The playground test (at `/playground`) checks that the metrics playground renders the four metrics, that a URL reproduces its
//! state (the numbers are recomputed natively here with `radlens_frontend` + `radlens_shared`,
//! the same code the page runs as wasm), that moving a slider rewrites the query with
//! `history.replaceState`, that the heatmap canvas holds the expected viridis pixels, and that an
//! all-zero map shows an error message instead of numbers. Screenshots land in
//! `<target>/browser-e2e/`.
//!
//! Needs: `scripts/build-web.sh debug` (or `release`) run beforehand, and Debian `chromium` +
//! `chromium-driver`. Without them the test fails and says so; it never skips silently.

mod dashboard;
mod driver;
mod export;
mod multi_image;
mod qwen;
mod scale;
mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use radlens_frontend::colormap::heatmap_rgba;
use radlens_frontend::playground::{Evaluation, MAP_METRICS, evaluate, format_metric};
use radlens_frontend::url_state::PlaygroundState;
use serde_json::{Value, json};

use driver::{CHROMEDRIVER, CHROMIUM, ChromeDriver};
use server::StaticServer;

/// Upper bound for the whole browser scenario (the debug bundle loads in well under a second).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for any single wait on the page.
const WAIT: Duration = Duration::from_secs(20);

type Res<T> = Result<T, String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// `<target>/browser-e2e`, found from the test executable (`<target>/<profile>/deps/…`), so it
/// follows `CARGO_TARGET_DIR`.
fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| workspace_root().join("target"));
    target.join("browser-e2e")
}

/// Fails (never skips) with instructions when the bundle or the browser is missing.
fn preflight() -> PathBuf {
    let dist = workspace_root().join("dist");
    let missing: Vec<&str> = ["index.html", "style.css", "boot.js", "radlens_frontend.js", "radlens_frontend_bg.wasm"]
        .into_iter()
        .filter(|f| !dist.join(f).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "browser e2e: the web bundle is not built ({} lacks {}).\n\
         Build it first with `scripts/build-web.sh debug` (needs the wasm32-unknown-unknown target and \
         wasm-bindgen-cli 0.2.130), then rerun the tests.",
        dist.display(),
        missing.join(", ")
    );
    for (bin, what) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
        assert!(
            Path::new(bin).exists(),
            "browser e2e: {bin} not found. Install the browser with `apt-get install -y chromium chromium-driver`, \
             build the bundle with `scripts/build-web.sh debug`, then rerun the tests (missing package: {what})."
        );
    }
    dist
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_playground_in_headless_chromium() {
    let dist = preflight();
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the browser-e2e artifact dir");

    let server = StaticServer::start(dist).await.expect("start the static file server");
    let driver = ChromeDriver::start(&artifacts, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{e}"));
    let client = open_session(&driver).await;
    let outcome = run_scenario(&client, &artifacts, SCENARIO_TIMEOUT, scenario(&client, &server.base_url(), &artifacts)).await;
    // Always end the session (and so the browser); the guards then stop chromedriver and the server.
    close_session(client).await;
    drop(driver);
    drop(server);
    outcome.report("browser e2e");
}

/// A WebDriver session in headless Chromium, or a panic that shows chromedriver's log.
async fn open_session(driver: &ChromeDriver) -> Client {
    tokio::time::timeout(Duration::from_secs(30), connect(driver))
        .await
        .unwrap_or_else(|_| panic!("no WebDriver session within 30 s; chromedriver log:\n{}", driver.log_tail()))
        .unwrap_or_else(|e| panic!("{e}\nchromedriver log:\n{}", driver.log_tail()))
}

async fn close_session(client: Client) {
    let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
}

/// How a scenario ended, reported once the browser and the servers are down.
struct Outcome {
    result: Result<Res<()>, tokio::time::error::Elapsed>,
    started: Instant,
    limit: Duration,
}

impl Outcome {
    fn report(self, name: &str) {
        match self.result {
            Ok(Ok(())) => eprintln!("{name} passed in {:.1} s", self.started.elapsed().as_secs_f64()),
            Ok(Err(e)) => panic!("{name} failed: {e}"),
            Err(_) => panic!("{name} did not finish within {:?}", self.limit),
        }
    }
}

/// Runs `scenario` within `limit`; a failure gains the page's state (its text and a screenshot).
async fn run_scenario(client: &Client, artifacts: &Path, limit: Duration, scenario: impl std::future::Future<Output = Res<()>>) -> Outcome {
    let started = Instant::now();
    let result = match tokio::time::timeout(limit, scenario).await {
        Ok(Err(e)) => Ok(Err(with_page_state(client, artifacts, e).await)),
        other => other,
    };
    Outcome { result, started, limit }
}

async fn connect(driver: &ChromeDriver) -> Res<Client> {
    let profile = format!("--user-data-dir={}", driver.profile_dir.display());
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1360,1200",
        profile.as_str(),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .map_err(|e| format!("could not open a Chromium session through chromedriver: {e}"))
}

async fn scenario(c: &Client, base: &str, artifacts: &Path) -> Res<()> {
    // 1. The default view: title, four metrics equal to the native computation, the canvas.
    c.goto(&format!("{base}/playground")).await.map_err(|e| format!("open {base}/: {e}"))?;
    wait_for_metrics(c).await?;
    let title = c.title().await.map_err(|e| e.to_string())?;
    check(title == "radlens", format!("page title is {title:?}, expected \"radlens\""))?;
    check_metrics(c, &PlaygroundState::default(), "default view").await?;
    check_canvas(c, &PlaygroundState::default(), "default view").await?;

    // 2. A shared link reproduces its state: sliders, numbers and pixels.
    let query = "n=32&cx=0.25&cy=0.7&sigma=2.5&floor=0.01&peak=0.8";
    let state = PlaygroundState::from_query(query);
    c.goto(&format!("{base}/playground?{query}")).await.map_err(|e| e.to_string())?;
    wait_for_metrics(c).await?;
    check_metrics(c, &state, "URL state").await?;
    check_canvas(c, &state, "URL state").await?;
    let sliders = js(c, "return ['n','cx','cy','sigma','floor','peak'].map(k => document.getElementById(k).value).join('&');").await?;
    check(sliders.as_str() == Some("32&0.25&0.7&2.5&0.01&0.8"), format!("slider values after loading ?{query}: {sliders}"))?;
    let labels =
        js(c, "return [...document.querySelectorAll('input')].every(i => i.id && document.querySelector(`label[for=\"${i.id}\"]`));")
            .await?;
    check(labels == Value::Bool(true), "every input has a <label for=…>")?;
    screenshot(c, &artifacts.join("playground.png")).await?;

    // 3. A real key press on a slider updates the numbers and replaces (not pushes) the URL.
    let history_before = js(c, "return history.length;").await?;
    let cx = c.find(Locator::Id("cx")).await.map_err(|e| format!("find #cx: {e}"))?;
    cx.send_keys("\u{E014}").await.map_err(|e| format!("press → on #cx: {e}"))?; // WebDriver "ArrowRight"
    let search = wait_for_js(c, "return location.search.includes('cx=0.26') ? location.search : null;", "cx=0.26 in the URL").await?;
    let search = search.as_str().unwrap_or_default().to_owned();
    let moved = PlaygroundState::from_query(&search);
    check(moved.cx == 0.26 && moved.n == 32 && moved.sigma == 2.5, format!("URL after → on cx: {search}"))?;
    wait_for_js(c, "return document.getElementById('cx-value').textContent.trim() === '0.26' || null;", "the cx readout to show 0.26")
        .await?;
    check_metrics(c, &moved, "after → on cx").await?;
    let history_after = js(c, "return history.length;").await?;
    check(history_before == history_after, format!("history grew from {history_before} to {history_after}: use replaceState"))?;

    // 4. A programmatic input event on another slider (grid size) is handled the same way.
    js(c, "const el = document.getElementById('n'); el.value = '12'; el.dispatchEvent(new Event('input', {bubbles: true})); return null;")
        .await?;
    let search = wait_for_js(c, "return location.search.includes('n=12') ? location.search : null;", "n=12 in the URL").await?;
    let twelve = PlaygroundState::from_query(search.as_str().unwrap_or_default());
    check(twelve.n == 12 && twelve.cx == 0.26, format!("URL after setting n = 12: {search}"))?;
    wait_for_js(
        c,
        "return document.querySelector('[data-testid=grid-dims]').textContent.includes('12 × 12') || null;",
        "the 12 × 12 caption",
    )
    .await?;
    check_metrics(c, &twelve, "after n = 12").await?;
    check_canvas(c, &twelve, "after n = 12").await?;

    // 5. An all-zero map: a readable error instead of numbers (and no panic).
    c.goto(&format!("{base}/playground?peak=0&floor=0")).await.map_err(|e| e.to_string())?;
    let alert = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[data-testid=metric-error]"))
        .await
        .map_err(|e| format!("no error message for an all-zero map: {e}"))?;
    let text = alert.text().await.map_err(|e| e.to_string())?;
    check(text.contains("zero"), format!("error message for an all-zero map: {text:?}"))?;
    check(alert.attr("role").await.ok().flatten().as_deref() == Some("alert"), "the error has role=alert")?;
    let shown = read_metrics(c).await?;
    for info in MAP_METRICS {
        let (value, text) = shown.get(info.key).cloned().unwrap_or_default();
        check(value.is_none() && text == "—", format!("{} on an all-zero map: value {value:?}, text {text:?}", info.key))?;
    }
    screenshot(c, &artifacts.join("playground-error.png")).await?;
    Ok(())
}

/// Adds what the page showed at the failure (its URL, a start-up error, a screenshot) to `e`.
async fn with_page_state(c: &Client, artifacts: &Path, e: String) -> String {
    let probe = "return [location.href, document.getElementById('loading')?.textContent ?? null];";
    let page = match tokio::time::timeout(Duration::from_secs(5), js(c, probe)).await {
        Ok(Ok(v)) => format!("page: {} ; loading placeholder: {}", v[0], v[1]),
        _ => "page state unavailable".to_owned(),
    };
    let shot = artifacts.join("failure.png");
    let shot = match tokio::time::timeout(Duration::from_secs(5), screenshot(c, &shot)).await {
        Ok(Ok(())) => format!("screenshot: {}", shot.display()),
        _ => "no screenshot".to_owned(),
    };
    format!("{e}\n{page}\n{shot}")
}

fn check(ok: bool, what: impl Into<String>) -> Res<()> {
    if ok { Ok(()) } else { Err(what.into()) }
}

async fn js(c: &Client, script: &str) -> Res<Value> {
    c.execute(script, vec![]).await.map_err(|e| format!("script failed: {e}\n{script}"))
}

/// A file the page handed to the browser to save: its `download` name, the Blob's type and text.
struct Download {
    name: String,
    mime: String,
    text: String,
}

/// Clicks the button `id` and returns the file it makes the page save. The Blob given to
/// `URL.createObjectURL` is kept and the `<a download>` click that would save it is caught, so
/// nothing lands on disk; the text is read from the Blob itself (fetching the `blob:` URL would
/// be refused by the CSP's `default-src 'self'`). The link must point at that Blob.
async fn click_download(c: &Client, id: &str) -> Res<Download> {
    let script = r#"
        const [id, done] = arguments;
        const made = [];
        const create = URL.createObjectURL;
        URL.createObjectURL = b => { const u = create.call(URL, b); made.push([u, b]); return u; };
        const click = HTMLAnchorElement.prototype.click;
        let saved = null;
        HTMLAnchorElement.prototype.click = function () {
            if (this.hasAttribute('download')) saved = [this.download, this.href, this.isConnected];
            else click.call(this);
        };
        try { document.getElementById(id).click(); }
        finally { URL.createObjectURL = create; HTMLAnchorElement.prototype.click = click; }
        const status = document.getElementById('download-status')?.textContent ?? '';
        if (!saved) return done({ error: 'no <a download> was clicked; status: ' + status });
        if (!saved[2]) return done({ error: 'the <a download> was not in the document when clicked' });
        const blob = made.find(([u]) => u === saved[1]);
        if (!blob) return done({ error: 'the link points at ' + saved[1] + ', not at a Blob the page made' });
        blob[1].text().then(t => done({ name: saved[0], mime: blob[1].type, text: t }), e => done({ error: String(e) }));
    "#;
    let v = c.execute_async(script, vec![json!(id)]).await.map_err(|e| format!("download script failed: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!("download from #{id}: {e}"));
    }
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or(format!("download from #{id}: no {k} in {v}"));
    Ok(Download { name: field("name")?, mime: field("mime")?, text: field("text")? })
}

/// Polls `script` until it returns something other than `null`/`false`, at most [`WAIT`].
async fn wait_for_js(c: &Client, script: &str, what: &str) -> Res<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = js(c, script).await?;
        if !v.is_null() && v != Value::Bool(false) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {WAIT:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The app has mounted and computed its metrics (the leptos effects run asynchronously).
async fn wait_for_metrics(c: &Client) -> Res<()> {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[data-metric=focus][data-value]"))
        .await
        .map(|_| ())
        .map_err(|e| format!("the metrics did not render within {WAIT:?} (is dist/ built from this source?): {e}"))
}

/// `data-metric` -> (`data-value` parsed, shown text).
async fn read_metrics(c: &Client) -> Res<std::collections::BTreeMap<String, (Option<f64>, String)>> {
    let v = js(
        c,
        "const out = {}; for (const el of document.querySelectorAll('[data-metric]')) \
         out[el.dataset.metric] = [el.dataset.value ?? null, el.textContent.trim()]; return out;",
    )
    .await?;
    let obj = v.as_object().ok_or_else(|| format!("metrics script returned {v}"))?;
    Ok(obj
        .iter()
        .map(|(k, pair)| {
            let value = pair[0].as_str().and_then(|s| s.parse::<f64>().ok());
            (k.clone(), (value, pair[1].as_str().unwrap_or_default().to_owned()))
        })
        .collect())
}

/// The page's numbers equal those computed natively for `state` (up to libm differences
/// between wasm and the host) and are printed with [`format_metric`].
async fn check_metrics(c: &Client, state: &PlaygroundState, when: &str) -> Res<()> {
    let expected: Evaluation = evaluate(state);
    check(expected.metrics.is_ok(), format!("{when}: the native metrics failed: {:?}", expected.metrics))?;
    let shown = read_metrics(c).await?;
    for info in MAP_METRICS {
        let want = expected.value(info.key).expect("metrics are Ok");
        let Some((Some(got), text)) = shown.get(info.key).cloned() else {
            return Err(format!("{when}: no value for data-metric={} (page shows {shown:?})", info.key));
        };
        check(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            format!("{when}: {} is {got} in the browser but {want} natively", info.key),
        )?;
        check(text == format_metric(got), format!("{when}: {} is shown as {text:?}", info.key))?;
    }
    Ok(())
}

/// The canvas shows the viridis heatmap of `state`: many distinct colours, the hottest pixel at
/// the blob, and every cell centre coloured as the native renderer colours it (±1 per channel).
async fn check_canvas(c: &Client, state: &PlaygroundState, when: &str) -> Res<()> {
    // Colour of the pixel at every cell centre, as `heatmap_rgba` places cells.
    let cells = state.n;
    let script = format!(
        "const cv = document.getElementById('heatmap'); const W = cv.width, H = cv.height, n = {cells}; \
         const d = cv.getContext('2d').getImageData(0, 0, W, H).data; \
         const seen = new Set(); let best = -1, bestAt = 0, opaque = true; \
         for (let i = 0; i < d.length; i += 4) {{ \
           seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); if (d[i + 3] !== 255) opaque = false; \
           const l = 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2]; if (l > best) {{ best = l; bestAt = i / 4; }} }} \
         const samples = []; \
         for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {{ \
           const x = Math.floor((c + 0.5) * W / n), y = Math.floor((r + 0.5) * H / n), i = (y * W + x) * 4; \
           samples.push([d[i], d[i + 1], d[i + 2], d[i + 3]]); }} \
         return {{ w: W, h: H, distinct: seen.size, opaque, bx: bestAt % W, by: Math.floor(bestAt / W), samples }};"
    );
    let v = js(c, &script).await?;
    let (w, h) = (v["w"].as_u64().unwrap_or(0) as usize, v["h"].as_u64().unwrap_or(0) as usize);
    let distinct = v["distinct"].as_u64().unwrap_or(0);
    check(w > 0 && h > 0, format!("{when}: canvas is {w} x {h}"))?;
    check(distinct >= 10, format!("{when}: the canvas holds only {distinct} distinct colours"))?;
    check(v["opaque"] == Value::Bool(true), format!("{when}: the heatmap has transparent pixels"))?;

    let n = state.n as f64;
    let cell = w as f64 / n;
    let (bx, by) = (v["bx"].as_f64().unwrap_or(-1.0), v["by"].as_f64().unwrap_or(-1.0));
    let (ex, ey) = (state.cx * w as f64, state.cy * h as f64);
    check(
        (bx - ex).abs() <= 1.5 * cell && (by - ey).abs() <= 1.5 * cell,
        format!("{when}: the hottest pixel is at ({bx}, {by}), the blob centre at ({ex:.0}, {ey:.0})"),
    )?;

    let samples = v["samples"].as_array().ok_or_else(|| format!("{when}: no pixel samples"))?;
    let map = evaluate(state).map;
    let native = heatmap_rgba(map.h, map.w, &map.values, w, h).ok_or("native heatmap failed")?;
    check(samples.len() == map.h * map.w, format!("{when}: {} samples for {} cells", samples.len(), map.h * map.w))?;
    for row in 0..map.h {
        for col in 0..map.w {
            let x = ((col as f64 + 0.5) * w as f64 / map.w as f64) as usize;
            let y = ((row as f64 + 0.5) * h as f64 / map.h as f64) as usize;
            let i = (y * w + x) * 4;
            let got: Vec<u8> = samples[row * map.w + col]
                .as_array()
                .map(|px| px.iter().map(|c| c.as_u64().unwrap_or(0) as u8).collect())
                .unwrap_or_default();
            let want = &native[i..i + 4];
            check(
                got.len() == 4 && got.iter().zip(want).all(|(a, b)| a.abs_diff(*b) <= 1),
                format!("{when}: cell ({row}, {col}) pixel ({x}, {y}) is {got:?} in the browser, {want:?} natively"),
            )?;
        }
    }
    Ok(())
}

async fn screenshot(c: &Client, path: &Path) -> Res<()> {
    let png = c.screenshot().await.map_err(|e| format!("screenshot: {e}"))?;
    check(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG")?;
    std::fs::write(path, png).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("browser e2e: screenshot saved to {}", path.display());
    Ok(())
}
