//! The widgets and browser helpers the pages share: the site header, the error, loading and
//! random-weights notes, the Share button, the URL helpers (`replace_query`: the page state
//! lives in the query, rewritten with `history.replaceState`, no history entry per keystroke,
//! no scrolling; web README F7), the file download, and the canvas drawing (overlay bitmap,
//! colour bar, the overview's group and forest plots with plotters).

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use wasm_bindgen::JsValue;

use crate::api::{ApiError, Endpoint};
use crate::fetch;
use crate::site::href;

/// The site header with the navigation.
#[component]
pub fn SiteHeader(#[prop(into)] title: String) -> impl IntoView {
    view! {
        <header class="site-header">
            <div class="brand">
                <span class="logo" aria-hidden="true"></span>
                <span class="name">"radlens"</span>
                <nav class="site-nav">
                    <A href=href("/") exact=true>"Runs"</A>
                    <A href=href("/playground")>"Metrics playground"</A>
                    // Compare runs the models: a static export has no server to run them.
                    {(!crate::site::mode().is_static()).then(|| view! { <A href=href("/compare")>"Compare"</A> })}
                </nav>
            </div>
            <h1>{title}</h1>
        </header>
    }
}

/// An API error as a readable alert.
pub fn error_view(what: &str, e: &ApiError) -> AnyView {
    view! {
        <div class="error" role="alert" data-testid="api-error">
            <strong>{format!("Could not load {what}. ")}</strong>
            <span class="error-detail">{e.to_string()}</span>
        </div>
    }
    .into_any()
}

pub(crate) fn loading(what: &str) -> AnyView {
    view! { <p class="loading-inline" role="status">{format!("Loading {what}…")}</p> }.into_any()
}

pub(crate) fn random_banner() -> AnyView {
    view! {
        <div class="banner warning" role="note" data-testid="random-weights-banner">
            <strong>"Random weights. "</strong>
            "At least one model of this run has random weights: the numbers exercise the pipeline and say nothing medical."
        </div>
    }
    .into_any()
}

/// "Share": a read-only link to this run that reopens the current view (path and query, in
/// the link's fragment), from `POST /api/share`.
#[component]
pub fn ShareButton(run: String) -> impl IntoView {
    // Share links are signed by a server; a static export is already shareable as it is.
    let on_server = !crate::site::mode().is_static();
    let result: RwSignal<Option<Result<String, ApiError>>> = RwSignal::new(None);
    let on_click = move |_| {
        let run = run.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let loc = web_sys::window().map(|w| w.location());
            let view =
                loc.as_ref().map(|l| format!("{}{}", l.pathname().unwrap_or_default(), l.search().unwrap_or_default())).unwrap_or_default();
            let origin = loc.and_then(|l| l.origin().ok()).unwrap_or_default();
            let r = fetch::post_json::<crate::api::ShareResponse>(&Endpoint::Share, &crate::api::share_request(&run, &view))
                .await
                .map(|s| format!("{origin}{}", s.url));
            if let (Ok(url), Some(w)) = (&r, web_sys::window()) {
                let _ = w.navigator().clipboard().write_text(url);
            }
            result.set(Some(r));
        });
    };
    on_server.then(|| view! {
        <span class="share">
            <button type="button" id="share" on:click=on_click>"Share (read-only, 72 h)"</button>
            {move || result.get().map(|r| match r {
                Ok(url) => view! {
                    <input type="text" readonly id="share-url" aria-label="Share link" prop:value=url />
                }.into_any(),
                Err(e) => view! { <span class="error" role="alert" data-testid="share-error">{format!("Could not make a share link: {e}")}</span> }.into_any(),
            })}
        </span>
    })
}

pub(crate) fn run_id() -> impl Fn() -> String + Copy + Send + Sync + 'static {
    let params = use_params_map();
    move || params.read().get("id").unwrap_or_default()
}

pub(crate) fn location_search() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

pub(crate) fn location_href() -> String {
    web_sys::window().and_then(|w| w.location().href().ok()).unwrap_or_default()
}

/// Replaces the query string (keeping the path and hash) without a history entry.
pub fn replace_query(query: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let loc = window.location();
    let url = format!(
        "{}{}{}{}",
        loc.pathname().unwrap_or_default(),
        if query.is_empty() { "" } else { "?" },
        query,
        loc.hash().unwrap_or_default()
    );
    if let Ok(h) = window.history()
        && let Err(err) = h.replace_state_with_url(&JsValue::NULL, "", Some(&url))
    {
        leptos::logging::error!("could not update the URL: {err:?}");
    }
}

/// Hands `text` to the browser as a file download named `name`: a Blob behind an object URL,
/// clicked through a temporary `<a download>` (no server involved, so a static export can do it
/// too). Returns the object URL, which the caller revokes once it is no longer needed.
pub(crate) fn save_text_file(name: &str, text: &str, mime: &str) -> Result<String, JsValue> {
    use wasm_bindgen::JsCast;
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let doc = web_sys::window().and_then(|w| w.document()).ok_or_else(|| JsValue::from_str("no document"))?;
    let a: web_sys::HtmlAnchorElement = doc.create_element("a")?.dyn_into()?;
    a.set_href(&url);
    a.set_download(name);
    let body = doc.body().ok_or_else(|| JsValue::from_str("no body"))?;
    body.append_child(&a)?;
    a.click();
    a.remove();
    Ok(url)
}

/// Paints a card's colour bar (the same colours as its overlay, see [`crate::study::ColorBar`]).
pub(crate) fn draw_colorbar(
    canvas: &web_sys::HtmlCanvasElement,
    bar: &crate::study::ColorBar,
    opts: &crate::study::OverlayOpts,
) -> Result<(), JsValue> {
    use wasm_bindgen::{Clamped, JsCast};
    let (w, h) = (canvas.width(), canvas.height());
    let px = bar.rgba(opts, w as usize, h as usize);
    let ctx = canvas.get_context("2d")?.ok_or("the canvas has no 2d context")?.dyn_into::<web_sys::CanvasRenderingContext2d>()?;
    let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&px), w, h)?;
    ctx.clear_rect(0.0, 0.0, w as f64, h as f64);
    ctx.put_image_data(&img, 0.0, 0.0)
}

/// Draws the overlay bitmap (one `putImageData`) and places the canvas over the crop the map covers.
pub(crate) fn draw_overlay(
    canvas: &web_sys::HtmlCanvasElement,
    m: &crate::study::MapPayload,
    opacity: &crate::study::OverlayOpts,
) -> Result<(), JsValue> {
    use wasm_bindgen::{Clamped, JsCast};
    let (pw, ph, px) = crate::study::overlay_rgba(m, opacity).ok_or("the map does not match its grid")?;
    if canvas.width() != pw as u32 || canvas.height() != ph as u32 {
        canvas.set_width(pw as u32);
        canvas.set_height(ph as u32);
    }
    let (left, top, width, height) = crate::study::overlay_box(&m.provenance);
    let style = web_sys::HtmlElement::style(canvas);
    style.set_property("left", &format!("{left}%"))?;
    style.set_property("top", &format!("{top}%"))?;
    style.set_property("width", &format!("{width}%"))?;
    style.set_property("height", &format!("{height}%"))?;
    let ctx = canvas.get_context("2d")?.ok_or("the canvas has no 2d context")?.dyn_into::<web_sys::CanvasRenderingContext2d>()?;
    let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&px), pw as u32, ph as u32)?;
    ctx.clear_rect(0.0, 0.0, pw as f64, ph as f64);
    ctx.put_image_data(&img, 0.0, 0.0)
}

/// Colour of the i-th model in the group plots (viridis stops, dark to light).
pub(crate) fn model_colour(i: usize) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    const C: [RGBColor; 5] = [
        RGBColor(0x44, 0x01, 0x54),
        RGBColor(0x21, 0x91, 0x8c),
        RGBColor(0xc2, 0x7c, 0x0e),
        RGBColor(0x3b, 0x52, 0x8b),
        RGBColor(0x5e, 0xc9, 0x62),
    ];
    C[i % C.len()]
}

/// A dot-and-whisker plot: categories on x, one whisker per model side by side, rates in [0, 1].
pub(crate) fn draw_group_plot(canvas: web_sys::HtmlCanvasElement, p: &crate::overview::GroupPlot) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters_canvas::CanvasBackend;
    let n = p.groups.len().max(1);
    let width = (110 * n as u32 + 80).clamp(440, 1080);
    canvas.set_width(width);
    canvas.set_height(250);
    let backend = CanvasBackend::with_canvas_object(canvas).ok_or("the canvas has no 2d context")?;
    let root = backend.into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .margin_top(28)
        .x_label_area_size(34)
        .y_label_area_size(40)
        .build_cartesian_2d(0f64..n as f64, 0f64..1f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_labels(6)
        .max_light_lines(1)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(|e| err(&e))?;
    let nm = p.models.len().max(1) as f64;
    let x = |g: usize, m: usize| g as f64 + 0.5 + (m as f64 - (nm - 1.0) / 2.0) * (0.6 / nm);
    for pt in &p.points {
        let c = model_colour(pt.model);
        let xx = x(pt.group, pt.model);
        chart.draw_series(std::iter::once(PathElement::new(vec![(xx, pt.lo), (xx, pt.hi)], c.stroke_width(2)))).map_err(|e| err(&e))?;
        chart.draw_series(std::iter::once(Circle::new((xx, pt.estimate), 4, c.filled()))).map_err(|e| err(&e))?;
    }
    let font = ("sans-serif", 12).into_font().color(&BLACK);
    for (gi, g) in p.groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(gi as f64 + 0.5, 0.0));
        let label: String = if g.chars().count() > 18 { g.chars().take(17).chain(['…']).collect() } else { g.clone() };
        let w = 6 * label.chars().count() as i32;
        root.draw(&Text::new(label, (px - w / 2, py + 8), font.clone())).map_err(|e| err(&e))?;
    }
    let mut lx = 50;
    for (mi, m) in p.models.iter().enumerate() {
        root.draw(&Circle::new((lx, 12), 4, model_colour(mi).filled())).map_err(|e| err(&e))?;
        root.draw(&Text::new(m.clone(), (lx + 8, 5), font.clone())).map_err(|e| err(&e))?;
        lx += 16 + 7 * m.chars().count() as i32;
    }
    root.present().map_err(|e| err(&e))
}

/// The forest plot of the headline intervals, drawn with plotters on the canvas.
pub(crate) fn draw_forest(canvas: web_sys::HtmlCanvasElement, rows: &[crate::overview::ForestRow]) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters_canvas::CanvasBackend;
    const ROW_PX: u32 = 26;
    const LEFT_PX: u32 = 300;
    let n = rows.len().max(1);
    canvas.set_width(900);
    canvas.set_height(50 + ROW_PX * n as u32);
    let backend = CanvasBackend::with_canvas_object(canvas).ok_or("the canvas has no 2d context")?;
    let root = backend.into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .margin_left(LEFT_PX)
        .x_label_area_size(28)
        .build_cartesian_2d(0f64..1f64, 0f64..n as f64)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_labels(11)
        .max_light_lines(1)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .draw()
        .map_err(|e| err(&e))?;
    let colour = |key: &str| match key {
        "accuracy" => RGBColor(0x44, 0x01, 0x54),
        "flip_rate" => RGBColor(0x31, 0x68, 0x8e),
        "full_consistency" => RGBColor(0x1f, 0x9e, 0x89),
        _ => RGBColor(0x8a, 0x7a, 0x00),
    };
    // Row i sits at y = n - i - 0.5 (first row on top).
    let y = |i: usize| n as f64 - i as f64 - 0.5;
    chart
        .draw_series(
            rows.iter().enumerate().map(|(i, r)| PathElement::new(vec![(r.lo, y(i)), (r.hi, y(i))], colour(r.key).stroke_width(2))),
        )
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| Circle::new((r.estimate, y(i)), 4, colour(r.key).filled())))
        .map_err(|e| err(&e))?;
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, r) in rows.iter().enumerate() {
        let (_, py) = chart.backend_coord(&(0.0, y(i)));
        root.draw(&Text::new(r.label.clone(), (10, py - 7), font.clone())).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
