//! Method agreement in the study view: a record's attention map, Grad-CAM and relative map side
//! by side over the X-ray, with their pairwise Jensen-Shannon distance computed in the browser by
//! the shared crate (the same code the backend stored in the record's `trust.agreement`).
//!
//! Shown only for records of runs made with `--gradcam` or `--sinks` (or the demo).

use radlens_shared::fusion::{MapMethod, MapProvenance};
use radlens_shared::metrics::{js_distance, MapMetrics};
use radlens_shared::record::CaseRecord;
use serde::Deserialize;

use crate::study::MapJson;

/// `GET /api/runs/{run}/records/{n}/maps/{method}`: a map by one method.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MethodMapJson {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f64>,
    pub provenance: MapProvenance,
    pub metrics: MapMetrics,
}

impl MethodMapJson {
    /// As the overlay drawing code takes it (no attention mass on the image: 0).
    pub fn into_map_json(self) -> MapJson {
        MapJson { h: self.h, w: self.w, values: self.values, provenance: self.provenance, image_share: 0.0, metrics: self.metrics }
    }
}

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

#[cfg(target_arch = "wasm32")]
pub use view::methods_panel;

#[cfg(target_arch = "wasm32")]
mod view {
    use std::collections::BTreeMap;

    use leptos::prelude::*;
    use radlens_shared::fusion::MapMethod;

    use super::{method_label, method_note, pairwise_js, MethodMapJson};
    use crate::api::{ApiError, Endpoint};
    use crate::fetch;
    use crate::study::{MapJson, OverlayOpts};

    /// The side-by-side panel of one record, `methods` from [`super::panel_methods`] (nothing
    /// when there is no other method's map).
    pub fn methods_panel(run: String, index: usize, methods: Vec<MapMethod>, img: String, opts: RwSignal<OverlayOpts>) -> impl IntoView {
        if methods.is_empty() {
            return None;
        }
        let loaded: RwSignal<BTreeMap<String, Vec<f64>>> = RwSignal::new(BTreeMap::new());
        let own = methods[0];
        let figures = methods
            .iter()
            .map(|&m| method_figure(run.clone(), index, m, m == own, img.clone(), opts, loaded))
            .collect_view();
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

    fn method_figure(
        run: String,
        index: usize,
        method: MapMethod,
        own: bool,
        img: String,
        opts: RwSignal<OverlayOpts>,
        loaded: RwSignal<BTreeMap<String, Vec<f64>>>,
    ) -> impl IntoView {
        let map: LocalResource<Result<MapJson, ApiError>> = LocalResource::new(move || {
            let run = run.clone();
            async move {
                if own {
                    fetch::get_json::<MapJson>(&Endpoint::Map { run, index }).await
                } else {
                    fetch::get_json::<MethodMapJson>(&Endpoint::MethodMap { run, index, method }).await.map(MethodMapJson::into_map_json)
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
