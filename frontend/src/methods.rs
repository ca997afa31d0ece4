//! Method agreement in the study view: a record's attention map, Grad-CAM and relative map side
//! by side over the X-ray, with their pairwise Jensen-Shannon distance computed in the browser by
//! the shared crate (the same code the backend stored in the record's `trust.agreement`).
//!
//! Shown only for records of runs made with `--gradcam` or `--sinks` (or the demo).

use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::metrics::{MapMetrics, js_distance};
use radlens_shared::record::{CaseRecord, Faithfulness};

use crate::study::overlay_size;

/// `GET /api/runs/{run}/records/{n}/maps/{method}`: a map by one method (the shared wire type).
pub use radlens_shared::api::MethodMapPayload;

/// The methods shown side by side: the record's own map first (attention, or the labelled
/// fallback standing in for it), then the checks' maps. Empty when the record has no other map.
pub fn panel_methods(record: &CaseRecord) -> Vec<MapMethod> {
    let others: Vec<MapMethod> = record.trust.iter().flat_map(|t| &t.maps).map(|m| m.provenance.method).collect();
    match (&record.map, others.is_empty()) {
        (Some(own), false) => std::iter::once(own.provenance.method).chain(others).collect(),
        _ => Vec::new(),
    }
}

/// What a method is called on the page.
pub fn method_label(m: MapMethod) -> &'static str {
    match m {
        MapMethod::QueryToVisual => "attention",
        MapMethod::TokenConditioned => "attention (term)",
        MapMethod::Gradcam => "Grad-CAM",
        MapMethod::Relative => "relative to a generic prompt",
        MapMethod::UniformFallback => "uniform (fallback)",
    }
}

/// The JS distance (bits) of every unordered pair of loaded maps, in the order given; `None`
/// where a map is missing or the grids differ.
pub fn pairwise_js(maps: &[(MapMethod, Option<&[f64]>)]) -> Vec<(MapMethod, MapMethod, Option<f64>)> {
    let mut out = Vec::new();
    for (i, (a, p)) in maps.iter().enumerate() {
        for (b, q) in &maps[i + 1..] {
            let d = match (p, q) {
                (Some(p), Some(q)) => js_distance(p, q).ok(),
                _ => None,
            };
            out.push((*a, *b, d));
        }
    }
    out
}

/// A line under a method's map: the block Grad-CAM differentiated at, or why a fallback stands in.
pub fn method_note(p: &MapProvenance) -> String {
    match (&p.fallback_reason, &p.site) {
        (Some(reason), _) => format!("fallback: {reason}"),
        (None, Some(site)) => format!("gradient at {site}"),
        (None, None) if p.method == MapMethod::Relative => format!("over \"{}\"", radlens_shared::trust::GENERIC_PROMPT),
        _ => String::new(),
    }
}

/// A record's deletion tests as the run stored them (per size, then per method); empty when the
/// run was made without `--faithfulness`.
pub fn deletion_rows(record: &CaseRecord) -> &[Faithfulness] {
    record.trust.as_ref().map(|t| t.faithfulness.as_slice()).unwrap_or(&[])
}

/// The badge of one deletion test. `flagged` is the stored verdict (shared `unfaithful`), not
/// recomputed here.
pub fn deletion_verdict(f: &Faithfulness) -> &'static str {
    if f.flagged { "not faithful" } else { "beats random" }
}

/// The colour sink cells are outlined in (no colour map reaches pure magenta).
pub const SINK_OUTLINE: &str = "#ff00ff";

/// A record's sink cells (row-major) on its own attention map; empty without `--sinks` or when
/// the study has none.
pub fn sink_cells(record: &CaseRecord) -> &[usize] {
    record.trust.as_ref().and_then(|t| t.sinks.as_ref()).map(|s| s.cells.as_slice()).unwrap_or(&[])
}

/// Pixel squares `(x, y, side, side)` of `cells` of an `h x w` grid on the overlay bitmap
/// ([`overlay_size`]: whole blocks per cell), for outlining; cells off the grid are skipped.
pub fn sink_rects(h: usize, w: usize, cells: &[usize]) -> Vec<(usize, usize, usize, usize)> {
    let (pw, _) = overlay_size(h, w);
    let k = pw / w.max(1);
    cells.iter().filter(|&&c| c < h * w).map(|&c| ((c % w) * k, (c / w) * k, k, k)).collect()
}

/// The map's metrics as stored and with the sinks zeroed (`None`: the sinks held all the mass),
/// one `(name, as is, without sinks)` row per metric.
pub fn sink_metric_rows(with: &MapMetrics, without: Option<&MapMetrics>) -> Vec<(&'static str, f64, Option<f64>)> {
    vec![
        ("focus", with.focus, without.map(|m| m.focus)),
        ("gini", with.gini, without.map(|m| m.gini)),
        ("top-10% mass", with.top10_mass, without.map(|m| m.top10_mass)),
        ("entropy (nats)", with.entropy_nats, without.map(|m| m.entropy_nats)),
    ]
}

#[cfg(target_arch = "wasm32")]
pub use view::methods_panel;
#[cfg(target_arch = "wasm32")]
pub use view::{outline_cells, trust_panel};

#[cfg(target_arch = "wasm32")]
mod view {
    use std::collections::BTreeMap;

    use leptos::prelude::*;
    use radlens_shared::fusion::MapMethod;

    use super::{MethodMapPayload, method_label, method_note, pairwise_js};
    use crate::api::{ApiError, Endpoint};
    use crate::fetch;
    use crate::study::{MapPayload, OverlayOpts};

    /// The side-by-side panel of one record, `methods` from [`super::panel_methods`] (nothing
    /// when there is no other method's map).
    pub fn methods_panel(run: String, index: usize, methods: Vec<MapMethod>, img: String, opts: RwSignal<OverlayOpts>) -> impl IntoView {
        if methods.is_empty() {
            return None;
        }
        let loaded: RwSignal<BTreeMap<String, Vec<f64>>> = RwSignal::new(BTreeMap::new());
        let own = methods[0];
        let figures = methods.iter().map(|&m| method_figure(run.clone(), index, m, m == own, img.clone(), opts, loaded)).collect_view();
        let order = methods.clone();
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
                    <caption>"JS distance between methods (bits, shared js_distance)"</caption>
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
        let deletions = super::deletion_rows(record).to_vec();
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
                                        {super::deletion_verdict(&f)}
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
            let rows = own.map(|m| super::sink_metric_rows(&m, s.metrics_without.as_ref())).unwrap_or_default();
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
        ctx.set_stroke_style_str(super::SINK_OUTLINE);
        for (x, y, side, _) in super::sink_rects(h, w, cells) {
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
            match crate::pages::draw_overlay(&canvas, &m, &a) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_in_order_with_missing_maps_left_blank() {
        let a = [0.5, 0.5];
        let b = [1.0, 0.0];
        let pairs = pairwise_js(&[(MapMethod::QueryToVisual, Some(&a)), (MapMethod::Gradcam, Some(&b)), (MapMethod::Relative, None)]);
        assert_eq!(pairs.len(), 3);
        assert_eq!((pairs[0].0, pairs[0].1), (MapMethod::QueryToVisual, MapMethod::Gradcam));
        let d = pairs[0].2.unwrap();
        assert!((d - js_distance(&a, &b).unwrap()).abs() < 1e-15 && d > 0.0);
        assert!(pairs[1].2.is_none() && pairs[2].2.is_none());
    }

    /// On a 2x3 grid (overlay blocks of 85 px: 256 / 3), cell 4 is row 1, column 1; cells off
    /// the grid are not outlined.
    #[test]
    fn sink_cells_are_outlined_on_their_overlay_blocks() {
        let (pw, ph) = overlay_size(2, 3);
        assert_eq!((pw, ph), (255, 170));
        assert_eq!(sink_rects(2, 3, &[4, 0, 6]), vec![(85, 85, 85, 85), (0, 0, 85, 85)]);
        assert!(sink_rects(2, 3, &[]).is_empty());
    }

    #[test]
    fn deletion_verdicts_follow_the_stored_flag() {
        let f = Faithfulness {
            method: MapMethod::Gradcam,
            k_percent: 10,
            cells: 2,
            margin: 0.5,
            delta_top: -0.1,
            delta_random: -0.3,
            random_draws: 3,
            flagged: true,
        };
        assert_eq!(deletion_verdict(&f), "not faithful");
        assert_eq!(deletion_verdict(&Faithfulness { flagged: false, ..f }), "beats random");
    }

    #[test]
    fn metrics_without_sinks_sit_beside_the_stored_ones() {
        let with = MapMetrics { entropy_nats: 1.0, focus: 0.2, gini: 0.3, top10_mass: 0.4 };
        let without = MapMetrics { entropy_nats: 2.0, focus: 0.1, gini: 0.2, top10_mass: 0.3 };
        let rows = sink_metric_rows(&with, Some(&without));
        assert_eq!(rows[0], ("focus", 0.2, Some(0.1)));
        assert_eq!(rows[3], ("entropy (nats)", 1.0, Some(2.0)));
        // The sinks held all the mass: nothing is left to measure.
        assert!(sink_metric_rows(&with, None).iter().all(|r| r.2.is_none()));
    }

    #[test]
    fn notes_say_where_a_map_comes_from() {
        let p: MapProvenance = serde_json::from_value(serde_json::json!({
            "model": "m", "method": "gradcam", "layer_range": "last-quarter", "layers": [], "head_fusion": "mean",
            "query_mode": "query", "query_positions": [9],
            "geometry": {"h": 2, "w": 2, "crop": {"x0": 0.0, "y0": 0.0, "x1": 4.0, "y1": 4.0}, "image_w": 4, "image_h": 4},
            "site": "vision.blocks.22.output"
        }))
        .unwrap();
        assert_eq!(method_note(&p), "gradient at vision.blocks.22.output");
        let fallback = MapProvenance { fallback_reason: Some("attention: no rows".into()), ..p.clone() };
        assert_eq!(method_note(&fallback), "fallback: attention: no rows");
        assert_eq!(method_label(MapMethod::Relative), "relative to a generic prompt");
    }
}
