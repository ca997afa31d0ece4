//! The leptos app (wasm32 only): the router, and the attention-map metrics playground
//! (`/playground`). The pages over the API are in [`crate::pages`].
//!
//! Routes: `/` runs list, `/runs/:id` overview, `/runs/:id/records` records explorer,
//! `/runs/:id/studies/:study` the case view, `/playground` the metrics playground, `/compare`
//! the model comparison on an uploaded image.
//!
//! State flow: the URL query is read once on load into one `RwSignal<PlaygroundState>`; every
//! control writes the signal and then the URL (with `history.replaceState`, so dragging a slider
//! adds no history entries and never scrolls, see F7 in the web README). The map and its metrics
//! are a `Memo` of the state; an `Effect` redraws the canvas when they change.

use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::{Clamped, JsCast, JsValue};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

use crate::colormap::heatmap_rgba;
use crate::playground::{Evaluation, JS_UNIFORM, MAP_METRICS, MetricInfo, evaluate, format_metric};
use crate::url_state::{Param, PlaygroundState};

/// Side of the heatmap canvas in pixels (its CSS size may differ; pixels stay crisp).
const CANVAS_PX: u32 = 480;

/// Mounts the app into `<body>` and removes the "Loading…" placeholder of `index.html`.
pub fn mount() {
    if let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("loading")) {
        el.remove();
    }
    // A static host serves a route folder as `/runs/x/` (or `.../index.html`); the router
    // matches `/runs/x`.
    if let Some(window) = web_sys::window() {
        let loc = window.location();
        let path = loc.pathname().unwrap_or_default();
        if let Some(clean) = crate::site::mode().clean_pathname(&path) {
            let url = format!("{clean}{}{}", loc.search().unwrap_or_default(), loc.hash().unwrap_or_default());
            if let Ok(h) = window.history() {
                let _ = h.replace_state_with_url(&JsValue::NULL, "", Some(&url));
            }
        }
    }
    leptos::mount::mount_to_body(App);
}

fn location_search() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

/// Writes `state` into the query string, keeping any other keys and the hash, without adding a
/// history entry.
fn write_url(state: &PlaygroundState) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let location = window.location();
    let query = state.merge_into_query(&location.search().unwrap_or_default());
    let url = format!("{}?{}{}", location.pathname().unwrap_or_default(), query, location.hash().unwrap_or_default());
    if let Ok(history) = window.history()
        && let Err(err) = history.replace_state_with_url(&JsValue::NULL, "", Some(&url))
    {
        leptos::logging::error!("could not update the URL: {err:?}");
    }
}

/// Paints the map onto the canvas, one block of pixels per cell.
fn draw(canvas: &HtmlCanvasElement, e: &Evaluation) -> Result<(), JsValue> {
    let ctx = canvas.get_context("2d")?.ok_or("the canvas has no 2d context")?.dyn_into::<CanvasRenderingContext2d>()?;
    let (w, h) = (canvas.width(), canvas.height());
    match heatmap_rgba(e.map.h, e.map.w, &e.map.values, w as usize, h as usize) {
        Some(px) => {
            let img = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&px), w, h)?;
            ctx.put_image_data(&img, 0.0, 0.0)
        }
        None => {
            ctx.clear_rect(0.0, 0.0, w as f64, h as f64);
            Ok(())
        }
    }
}

#[component]
fn App() -> impl IntoView {
    use crate::pages::{ComparePage, OverviewPage, RecordsPage, RunsPage, SiteHeader, StudyPage};
    use leptos_router::components::{Route, Router, Routes};
    use leptos_router::path;
    let base = crate::site::mode().router_base().unwrap_or_default();
    view! {
        <Router base=base>
            <Routes fallback=|| view! {
                <SiteHeader title="Not found" />
                <main class="page"><p class="error" role="alert">"There is no page at this address."</p></main>
            }>
                <Route path=path!("/") view=RunsPage />
                <Route path=path!("/runs/:id") view=OverviewPage />
                <Route path=path!("/runs/:id/records") view=RecordsPage />
                <Route path=path!("/runs/:id/studies/:study") view=StudyPage />
                <Route path=path!("/playground") view=Playground />
                <Route path=path!("/compare") view=ComparePage />
            </Routes>
        </Router>
    }
}

/// `/playground`: a synthetic map and its metrics.
#[component]
fn Playground() -> impl IntoView {
    let state = RwSignal::new(PlaygroundState::from_query(&location_search()));
    let evaluation = Memo::new(move |_| evaluate(&state.get()));

    let canvas_ref = NodeRef::<html::Canvas>::new();
    Effect::new(move |_| {
        let e = evaluation.get();
        if let Some(canvas) = canvas_ref.get()
            && let Err(err) = draw(&canvas, &e)
        {
            leptos::logging::error!("could not draw the heatmap: {err:?}");
        }
    });

    let set = move |p: Param, text: String| {
        if let Ok(v) = text.trim().parse::<f64>() {
            state.update(|s| s.set(p, v));
            write_url(&state.get_untracked());
        }
    };
    let reset = move |_| {
        state.set(PlaygroundState::default());
        write_url(&state.get_untracked());
    };

    let canvas_label = move || {
        state.with(|s| {
            format!(
                "Heatmap of the synthetic {n} × {n} attention map: a blob at x = {:.2}, y = {:.2} with σ = {:.1} cells",
                s.cx,
                s.cy,
                s.sigma,
                n = s.n
            )
        })
    };
    let error = move || evaluation.with(|e| e.metrics.clone().err());

    view! {
        <header class="site-header">
            <div class="brand">
                <span class="logo" aria-hidden="true"></span>
                <span class="name">"radlens"</span>
                <nav class="site-nav">
                    <leptos_router::components::A href=crate::site::href("/") exact=true>"Runs"</leptos_router::components::A>
                    <leptos_router::components::A href=crate::site::href("/playground")>"Metrics playground"</leptos_router::components::A>
                    {(!crate::site::mode().is_static()).then(|| view! {
                        <leptos_router::components::A href=crate::site::href("/compare")>"Compare"</leptos_router::components::A>
                    })}
                </nav>
            </div>
            <h1>"Attention-map metrics playground"</h1>
            <p class="tagline">
                "Shape a synthetic attention map and watch the metrics that radlens reports for "
                "every map. The numbers come from the same Rust code as the backend, compiled to WebAssembly."
            </p>
        </header>
        <main class="playground">
            <section class="panel controls" aria-labelledby="controls-title">
                <h2 id="controls-title">"Synthetic map"</h2>
                <p class="lede">"A 2-D Gaussian blob over a uniform floor. Every setting is kept in the address bar, so a copied link reproduces this view."</p>
                {Param::ALL.into_iter().map(|p| control(p, state, set)).collect_view()}
                <div class="actions">
                    <button type="button" id="reset" on:click=reset>"Reset"</button>
                    <a class="permalink" id="permalink" href=move || format!("?{}", state.with(|s| s.to_query()))>
                        "Link to this view"
                    </a>
                </div>
            </section>
            <section class="panel heatmap" aria-labelledby="heatmap-title">
                <h2 id="heatmap-title">
                    "Heatmap "
                    <span class="dims" data-testid="grid-dims">
                        {move || state.with(|s| format!("{n} × {n}", n = s.n))}
                    </span>
                </h2>
                <canvas
                    node_ref=canvas_ref
                    id="heatmap"
                    width=CANVAS_PX.to_string()
                    height=CANVAS_PX.to_string()
                    role="img"
                    aria-label=canvas_label
                ></canvas>
                <div class="colorbar" aria-hidden="true"></div>
                <div class="colorbar-labels" aria-hidden="true">
                    <span>"0"</span>
                    <span>"viridis, scaled to the hottest cell"</span>
                    <span>"max"</span>
                </div>
            </section>
            <section class="panel metrics" aria-labelledby="metrics-title">
                <h2 id="metrics-title">"Metrics"</h2>
                {move || {
                    error()
                        .map(|msg| {
                            view! {
                                <div class="error" role="alert" data-testid="metric-error">
                                    <strong>"Metrics unavailable. "</strong>
                                    <span class="error-detail">{msg}</span>
                                </div>
                            }
                        })
                }}
                <dl class="metric-list">
                    {MAP_METRICS
                        .into_iter()
                        .chain([JS_UNIFORM])
                        .map(|info| metric_card(info, evaluation))
                        .collect_view()}
                </dl>
            </section>
        </main>
        <footer class="site-footer">
            "radlens · metrics from "
            <code>"radlens_shared::metrics"</code>
        </footer>
    }
}

/// One labelled slider with its current value and a help line.
fn control(p: Param, state: RwSignal<PlaygroundState>, set: impl Fn(Param, String) + Copy + Send + Sync + 'static) -> impl IntoView {
    let spec = p.spec();
    let help_id = format!("{}-help", spec.key);
    view! {
        <div class="control">
            <div class="control-head">
                <label for=spec.key>{spec.label}</label>
                <output for=spec.key id=format!("{}-value", spec.key)>
                    {move || state.with(|s| s.display(p))}
                </output>
            </div>
            <input
                type="range"
                id=spec.key
                name=spec.key
                min=spec.min.to_string()
                max=spec.max.to_string()
                step=spec.step.to_string()
                aria-describedby=help_id.clone()
                prop:value=move || state.with(|s| s.get(p).to_string())
                on:input=move |ev| set(p, event_target_value(&ev))
            />
            <p class="help" id=help_id>{spec.help}</p>
        </div>
    }
}

/// One metric: label, value (exact value in `data-value`, absent on error) and a hint.
fn metric_card(info: MetricInfo, evaluation: Memo<Evaluation>) -> impl IntoView {
    let value = move || evaluation.with(|e| e.value(info.key));
    let hint = move || {
        if info.key == "entropy" {
            format!("{} Here ln N = {:.4}.", info.hint, evaluation.with(|e| e.max_entropy()))
        } else {
            info.hint.to_owned()
        }
    };
    let secondary = info.key == JS_UNIFORM.key;
    let unit = (!info.unit.is_empty()).then(|| view! { <span class="unit">{info.unit}</span> });
    view! {
        <div class="metric" class:secondary=secondary>
            <dt id=format!("metric-{}-label", info.key)>{info.label} " " {unit}</dt>
            <dd
                class="value"
                data-metric=info.key
                data-value=move || value().map(|v| v.to_string())
                aria-labelledby=format!("metric-{}-label", info.key)
            >
                {move || value().map(format_metric).unwrap_or_else(|| "—".to_owned())}
            </dd>
            <dd class="hint">{hint}</dd>
        </div>
    }
}
