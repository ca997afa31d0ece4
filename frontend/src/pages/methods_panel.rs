//! The study page's per-card panels from the trust checks: a record's attention map, Grad-CAM
//! and relative map side by side over the X-ray with their pairwise JS distance
//! ([`methods_panel`]), its deletion tests and sink check ([`trust_panel`]), and the sink cells
//! outlined on the overlay ([`outline_cells`]). Their view model is [`crate::methods`].

use std::collections::BTreeMap;

use leptos::prelude::*;
use radlens_shared::fusion::MapMethod;

use crate::api::{ApiError, Endpoint};
use crate::fetch;
use crate::methods::{MethodMapPayload, method_label, method_note, pairwise_js};
use crate::study::{MapPayload, OverlayOpts};

/// The side-by-side panel of one record, `methods` from [`crate::methods::panel_methods`] (nothing
/// when there is no other method's map).
pub fn methods_panel(run: String, index: usize, methods: Vec<MapMethod>, img: String, opts: RwSignal<OverlayOpts>) -> impl IntoView {
    if methods.is_empty() {
        return None;
    }
    let loaded: RwSignal<BTreeMap<String, Vec<f64>>> = RwSignal::new(BTreeMap::new());
    let own = methods[0];
    let figures = methods.iter().map(|&m| method_figure(run.clone(), index, m, m == own, img.clone(), opts, loaded)).collect_view();
    let order: Vec<MapMethod> = methods.iter().copied().filter(|m| crate::methods::in_js_table(*m)).collect();
    let table = move || {
        let maps = loaded.get();
        let list: Vec<(MapMethod, Option<&[f64]>)> = order.iter().map(|m| (*m, maps.get(&m.to_string()).map(Vec::as_slice))).collect();
        pairwise_js(&list)
            .into_iter()
            .map(|(a, b, d)| {
                view! {
                    <tr data-a=a.to_string() data-b=b.to_string() data-js=d.map(|d| format!("{d:e}")).unwrap_or_default()>
                        <td>{method_label(a)}</td>
                        <td>{method_label(b)}</td>
                        <td class="num">{d.map(|d| format!("{d:.3}")).unwrap_or_else(|| "—".into())}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    Some(view! {
        <section class="methods" data-testid="methods" data-index=index.to_string()>
            <h4>"Methods side by side"</h4>
            <div class="method-maps">{figures}</div>
            <table class="method-js" data-testid="method-js">
                <caption>"JS distance between methods (bits, shared js_distance); the occlusion map is compared in the grounding table"</caption>
                <thead><tr><th>"map"</th><th>"map"</th><th class="num">"JS distance"</th></tr></thead>
                <tbody>{table}</tbody>
            </table>
        </section>
    })
}

/// The record's deletion tests and sink check, from the stored record (nothing when the run
/// made neither).
pub fn trust_panel(index: usize, record: &radlens_shared::record::CaseRecord) -> Option<AnyView> {
    let trust = record.trust.as_ref()?;
    let deletions = crate::methods::deletion_rows(record).to_vec();
    if deletions.is_empty() && trust.sinks.is_none() && trust.notes.is_empty() {
        return None;
    }
    let deletion_table = (!deletions.is_empty()).then(|| {
        let draws = deletions[0].random_draws;
        view! {
            <table class="deletions" data-testid="deletions">
                <caption>{format!(
                    "Deletion test: change of the yes/no margin after replacing the map's top k% cells by the image mean (Δtop), against as many random cells (Δrandom, mean of {draws} draws). Not faithful: |Δtop| ≤ |Δrandom|."
                )}</caption>
                <thead><tr>
                    <th>"map"</th><th class="num">"k"</th><th class="num">"cells"</th><th class="num">"margin"</th>
                    <th class="num">"Δtop"</th><th class="num">"Δrandom"</th><th>"verdict"</th>
                </tr></thead>
                <tbody>
                    {deletions.into_iter().map(|f| view! {
                        <tr data-method=f.method.to_string() data-k=f.k_percent.to_string() data-flagged=f.flagged.to_string()
                            data-delta-top=format!("{:e}", f.delta_top) data-delta-random=format!("{:e}", f.delta_random)>
                            <td>{method_label(f.method)}</td>
                            <td class="num">{format!("{}%", f.k_percent)}</td>
                            <td class="num">{f.cells}</td>
                            <td class="num">{format!("{:.3}", f.margin)}</td>
                            <td class="num">{format!("{:+.3}", f.delta_top)}</td>
                            <td class="num">{format!("{:+.3}", f.delta_random)}</td>
                            <td>
                                <span class=if f.flagged { "badge warning" } else { "badge" } data-testid="verdict">
                                    {crate::methods::deletion_verdict(&f)}
                                </span>
                            </td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
    });
    let own = record.map.as_ref().map(|m| m.metrics);
    let sinks = trust.sinks.clone().map(|s| {
        let n = s.cells.len();
        let rows = own.map(|m| crate::methods::sink_metric_rows(&m, s.metrics_without.as_ref())).unwrap_or_default();
        view! {
            <p class="sinks" data-testid="sinks" data-cells=n.to_string() data-mass=format!("{:e}", s.mass)>
                {if n == 0 {
                    format!("No attention sink: no cell is above {}× the uniform share in every variant's map and in the map of \"{}\".", s.factor, s.generic_prompt)
                } else {
                    format!(
                        "{n} sink {} (above {}× the uniform share in every variant's map and in the map of \"{}\"), outlined on the map; they hold {:.3} of this map's mass.",
                        if n == 1 { "cell" } else { "cells" }, s.factor, s.generic_prompt, s.mass
                    )
                }}
            </p>
            {(!rows.is_empty()).then(|| view! {
                <table class="sink-metrics" data-testid="sink-metrics">
                    <thead><tr><th>"metric"</th><th class="num">"as is"</th><th class="num">"without sinks"</th></tr></thead>
                    <tbody>
                        {rows.into_iter().map(|(name, with, without)| view! {
                            <tr data-metric=name>
                                <td>{name}</td>
                                <td class="num">{format!("{with:.3}")}</td>
                                <td class="num">{without.map(|v| format!("{v:.3}")).unwrap_or_else(|| "— (the sinks hold all the mass)".into())}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        }
    });
    let notes = trust.notes.clone();
    Some(
        view! {
            <section class="trust" data-testid="trust" data-index=index.to_string()>
                <h4>"Can this map be trusted?"</h4>
                {deletion_table}
                {sinks}
                {(!notes.is_empty()).then(|| view! {
                    <ul class="trust-notes">{notes.into_iter().map(|n| view! { <li>{format!("check not made: {n}")}</li> }).collect_view()}</ul>
                })}
            </section>
        }
        .into_any(),
    )
}

/// Outlines `cells` of an `h x w` grid on an overlay canvas already painted by
/// `draw_overlay` (same bitmap size), in magenta, a colour none of the colour maps uses.
pub fn outline_cells(canvas: &web_sys::HtmlCanvasElement, h: usize, w: usize, cells: &[usize]) -> Result<(), wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast;
    let ctx = canvas.get_context("2d")?.ok_or("the canvas has no 2d context")?.dyn_into::<web_sys::CanvasRenderingContext2d>()?;
    ctx.set_stroke_style_str(crate::methods::SINK_OUTLINE);
    for (x, y, side, _) in crate::methods::sink_rects(h, w, cells) {
        let lw = (side as f64 / 6.0).max(1.0).round();
        ctx.set_line_width(lw);
        ctx.stroke_rect(x as f64 + lw / 2.0, y as f64 + lw / 2.0, side as f64 - lw, side as f64 - lw);
    }
    Ok(())
}

fn method_figure(
    run: String,
    index: usize,
    method: MapMethod,
    own: bool,
    img: String,
    opts: RwSignal<OverlayOpts>,
    loaded: RwSignal<BTreeMap<String, Vec<f64>>>,
) -> impl IntoView {
    let map: LocalResource<Result<MapPayload, ApiError>> = LocalResource::new(move || {
        let run = run.clone();
        async move {
            if own {
                fetch::get_json::<MapPayload>(&Endpoint::Map { run, index }).await
            } else {
                fetch::get_json::<MethodMapPayload>(&Endpoint::MethodMap { run, index, method }).await.map(MethodMapPayload::into_map)
            }
        }
    });
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let drawn = RwSignal::new(false);
    Effect::new(move |_| {
        let a = opts.get();
        let Some(Ok(m)) = map.get() else { return };
        loaded.update(|l| {
            l.insert(method.to_string(), m.values.clone());
        });
        let Some(canvas) = canvas_ref.get() else { return };
        match super::components::draw_overlay(&canvas, &m, &a) {
            Ok(()) => drawn.set(true),
            Err(err) => leptos::logging::error!("could not draw the {method} map of record {index}: {err:?}"),
        }
    });
    // `method-overlay`, not `overlay-map`: the card's own overlay stays the one its controls
    // and tests address.
    view! {
        <figure class="method-map" data-method=method.to_string()>
            <div class="overlay">
                <img src=img alt=format!("X-ray under the {} map", method_label(method)) />
                <canvas
                    node_ref=canvas_ref
                    class="method-overlay"
                    data-method=method.to_string()
                    data-drawn=move || drawn.get().to_string()
                    role="img"
                    aria-label=format!("{} map of record {index}", method_label(method))
                ></canvas>
            </div>
            <figcaption>
                <strong>{method_label(method)}</strong>
                {move || match map.get() {
                    None => " loading…".to_owned(),
                    Some(Ok(m)) => format!(" · focus {:.3} {}", m.metrics.focus, method_note(&m.provenance)),
                    Some(Err(e)) => format!(" · could not load: {e}"),
                }}
            </figcaption>
        </figure>
    }
}
