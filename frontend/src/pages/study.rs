//! The study page (`/runs/:id/studies/:study`): every variant x model of one study as a card
//! (X-ray, fused map overlay, colour bar, answer, metrics), the overlay and re-fusion controls
//! in the URL query, pinning and difference maps, and the JS-distance tables. Its view model is
//! [`crate::study`]; the per-card method and trust panels are in [`super::methods_panel`].

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::api::{ApiError, ApiRecord, Endpoint};
use crate::fetch::{self, enc};
use crate::site::href;

use super::components::*;

/// `/runs/:id/studies/:study`: every variant x model of one study, the X-ray with its fused map
/// drawn over it as one `ImageData` bitmap, answers and metrics beside it. The overlay opacity
/// lives in the URL (`?opacity=`).
#[component]
pub fn StudyPage() -> impl IntoView {
    let id = run_id();
    let params = use_params_map();
    // The route holds the study's export folder name (any id can be one), not the id itself.
    let study = move || crate::url_state::study_of_param(&params.read().get("study").unwrap_or_default());
    let opts = RwSignal::new(crate::study::OverlayOpts::from_query(&location_search()));
    let refuse_opts = RwSignal::new(crate::study::RefuseOpts::from_query(&location_search()));
    let cmp = Compare {
        pinned: RwSignal::new(
            crate::url_state::parse_query(&location_search())
                .into_iter()
                .find(|(k, _)| k == "pin")
                .and_then(|(_, v)| v.parse::<usize>().ok()),
        ),
        shown: RwSignal::new(std::collections::HashMap::new()),
        diff: RwSignal::new(crate::study::diff_from_query(&location_search())),
    };
    let records = LocalResource::new(move || {
        let (id, study) = (id(), study());
        async move { fetch::get_json::<crate::api::RecordsPage>(&Endpoint::Study { run: id, study }).await }
    });
    // The image conditions under each card (`conditions=1`): every record of the study, fetched
    // when first shown; and the run's near-tie threshold for the badges.
    // The per-image method of multi-image records (`images=`), read by every card's panel.
    let image_method = RwSignal::new(crate::images::image_method_from_query(&location_search()));
    provide_context(super::images_panel::ImageMethod(image_method));
    let show_conditions = RwSignal::new(crate::conditions::conditions_from_query(&location_search()));
    let conditions = super::conditions_panel::ConditionsCtx {
        show: show_conditions,
        all: LocalResource::new(move || {
            let (id, study, show) = (id(), study(), show_conditions.get());
            async move {
                if !show {
                    return None;
                }
                Some(fetch::study_records_all(&id, &study).await.map(std::sync::Arc::new))
            }
        }),
        eps: LocalResource::new(move || {
            let id = id();
            async move { fetch::run_summary(&id).await.map(|s| s.near_tie_eps) }
        }),
    };
    let set_conditions = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        show_conditions.set(on);
        set_query_key(crate::conditions::CONDITIONS_KEY, on.then(|| "1".to_owned()));
    };
    // Every control rewrites the whole overlay query (replaceState).
    let update = move |f: &dyn Fn(&mut crate::study::OverlayOpts)| {
        opts.update(|o| f(o));
        write_study_query(opts, refuse_opts);
    };
    let set_fusion = move |ev: leptos::ev::Event| {
        let v = event_target_value(&ev);
        refuse_opts.update(|r| r.fusion = v.parse().ok());
        write_study_query(opts, refuse_opts);
    };
    let toggle_layer = move |layer: usize, on: bool| {
        refuse_opts.update(|r| r.layers = crate::study::toggle_layer(&r.layers, layer, on));
        write_study_query(opts, refuse_opts);
    };
    // One checkbox per layer any map of this study captured; none checked = as stored.
    let layer_boxes = move || {
        let Some(Ok(page)) = records.get() else { return ().into_any() };
        let layers: std::collections::BTreeSet<usize> =
            page.records.iter().filter_map(|r| r.record.map.as_ref()).flat_map(|m| crate::study::record_layers(&m.provenance)).collect();
        view! {
            <fieldset class="layer-boxes" id="layers">
                <legend>"Layers (none checked: as stored)"</legend>
                {layers.into_iter().map(|l| view! {
                    <label class="check">
                        <input
                            type="checkbox"
                            class="layer"
                            data-layer=l.to_string()
                            prop:checked=move || crate::study::checked_layers(&refuse_opts.get().layers).contains(&l)
                            on:change=move |ev| toggle_layer(l, event_target_checked(&ev))
                        />
                        {l.to_string()}
                    </label>
                }).collect_view()}
            </fieldset>
        }
        .into_any()
    };
    let set_opacity = move |ev: leptos::ev::Event| {
        if let Ok(v) = event_target_value(&ev).parse::<f64>() {
            update(&|o| o.opacity = v.clamp(0.0, 1.0));
        }
    };
    let set_threshold = move |ev: leptos::ev::Event| {
        if let Ok(v) = event_target_value(&ev).parse::<f64>() {
            update(&|o| o.threshold = v.clamp(0.0, 1.0));
        }
    };
    let set_clip = move |ev: leptos::ev::Event| {
        if let Ok(v) = event_target_value(&ev).parse::<f64>() {
            update(&|o| o.clip = v.clamp(50.0, 100.0));
        }
    };
    let set_cmap = move |ev: leptos::ev::Event| {
        if let Some(c) = crate::colormap::Colormap::parse(&event_target_value(&ev)) {
            update(&|o| o.colormap = c);
        }
    };
    let set_smooth = move |ev: leptos::ev::Event| {
        let smooth = event_target_value(&ev) == "smooth";
        update(&|o| o.smooth = smooth);
    };
    let set_overlay = move |ev: leptos::ev::Event| {
        let m = crate::grounding::overlay_method_of(&event_target_value(&ev));
        update(&|o| o.method = m);
    };
    let set_boxes = move |ev: leptos::ev::Event| {
        let on = event_target_checked(&ev);
        update(&|o| o.boxes = on);
    };
    // The other methods' maps the study's records have (Grad-CAM, relative, occlusion), each
    // selectable as the overlay.
    let overlay_choices = move || {
        let Some(Ok(page)) = records.get() else { return Vec::new() };
        let mut out: Vec<radlens_shared::fusion::MapMethod> = Vec::new();
        for m in page.records.iter().flat_map(|r| r.record.trust.iter().flat_map(|t| &t.maps)).map(|m| m.provenance.method) {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    };
    let cmap_options = crate::colormap::Colormap::ALL
        .into_iter()
        .map(|c| {
            let name = c.as_str();
            view! { <option value=name selected=move || opts.get().colormap == c>{name}</option> }
        })
        .collect_view();
    view! {
        <SiteHeader title=format!("Study {} of run {}", study(), id()) />
        <main class="page study-page">
            <nav class="subnav">
                <A href=move || href(&format!("/runs/{}", enc(&id())))>"Overview"</A>
                <A href=move || href(&format!("/runs/{}/records", enc(&id())))>"Records explorer"</A>
                <ShareButton run=id() />
            </nav>
            <section class="panel study-controls">
                <label for="opacity">"Map opacity"</label>
                <input
                    type="range"
                    id="opacity"
                    min="0"
                    max="1"
                    step="0.05"
                    prop:value=move || opts.get().opacity.to_string()
                    on:input=set_opacity
                />
                <output for="opacity" id="opacity-value">{move || format!("{:.2}", opts.get().opacity)}</output>
                <label for="threshold">"Hide below"</label>
                <input
                    type="range"
                    id="threshold"
                    min="0"
                    max="1"
                    step="0.05"
                    prop:value=move || opts.get().threshold.to_string()
                    on:input=set_threshold
                />
                <output for="threshold" id="threshold-value">{move || format!("{:.0}% of max", 100.0 * opts.get().threshold)}</output>
                <label for="clip">"Clip at percentile"</label>
                <input
                    type="range"
                    id="clip"
                    min="50"
                    max="100"
                    step="1"
                    prop:value=move || opts.get().clip.to_string()
                    on:input=set_clip
                />
                <output for="clip" id="clip-value">{move || format!("p{:.0}", opts.get().clip)}</output>
                <label for="colormap">"Colours"</label>
                <select id="colormap" on:change=set_cmap>{cmap_options}</select>
                <label for="upsample">"Upsampling"</label>
                <select id="upsample" on:change=set_smooth>
                    <option value="nearest" selected=move || !opts.get().smooth>"nearest"</option>
                    <option value="smooth" selected=move || opts.get().smooth>"smooth (bilinear)"</option>
                </select>
                <label for="fusion">"Head fusion"</label>
                <select id="fusion" on:change=set_fusion>
                    <option value="" selected=move || refuse_opts.get().fusion.is_none()>"as stored"</option>
                    {[radlens_shared::fusion::HeadFusion::Mean, radlens_shared::fusion::HeadFusion::Max, radlens_shared::fusion::HeadFusion::EntropyWeighted]
                        .into_iter()
                        .map(|f| {
                            let key = crate::study::fusion_key(f);
                            view! { <option value=key selected=move || refuse_opts.get().fusion == Some(f)>{key}</option> }
                        })
                        .collect_view()}
                </select>
                {layer_boxes}
                <label for="overlay-method">"Overlay"</label>
                <select id="overlay-method" on:change=set_overlay>
                    <option value="" selected=move || opts.get().method.is_none()>"each record's own map"</option>
                    {move || overlay_choices()
                        .into_iter()
                        .map(|m| view! {
                            <option value=m.to_string() selected=move || opts.get().method == Some(m)>{crate::methods::method_label(m)}</option>
                        })
                        .collect_view()}
                </select>
                <label class="check" title=crate::grounding::meaning(crate::grounding::Figure::ControlBoxesToggle)>
                    <input type="checkbox" id="boxes" prop:checked=move || opts.get().boxes on:change=set_boxes />
                    " control boxes"
                </label>
                <label class="check" title=crate::conditions::CONDITIONS_TOGGLE_MEANING>
                    <input type="checkbox" id="conditions" prop:checked=move || show_conditions.get() on:change=set_conditions />
                    " image conditions"
                </label>
                <span class="help">"scaled to each map's hottest cell (or the clip percentile); the map covers the part of the image the model saw"</span>
            </section>
            {move || match records.get() {
                None => loading("the study"),
                Some(Err(e)) => error_view("the study", &e),
                Some(Ok(page)) if page.records.is_empty() => view! {
                    <p class="error" role="alert">"This run has no image-pass records for this study."</p>
                }.into_any(),
                Some(Ok(page)) => view! {
                    {super::images_panel::image_method_select(&page.records, image_method)}
                    {study_grid(id(), page.records, opts, refuse_opts, cmp, conditions)}
                }
                .into_any(),
            }}
        </main>
    }
}

/// Writes the study view's whole state into the URL query (replaceState).
fn write_study_query(opts: RwSignal<crate::study::OverlayOpts>, refuse_opts: RwSignal<crate::study::RefuseOpts>) {
    let mut pairs = opts.get_untracked().query_pairs();
    pairs.extend(refuse_opts.get_untracked().query_pairs());
    // The pin and the difference toggles are written by their own controls; keep them.
    let kept = crate::url_state::parse_query(&location_search())
        .into_iter()
        .filter(|(k, _)| k == "pin" || k == "diff" || k == crate::conditions::CONDITIONS_KEY || k == crate::images::IMAGES_KEY);
    pairs.extend(kept);
    let q: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={}", enc(&v))).collect();
    replace_query(&q.join("&"));
}

fn study_grid(
    run: String,
    records: Vec<ApiRecord>,
    opacity: RwSignal<crate::study::OverlayOpts>,
    refuse_opts: RwSignal<crate::study::RefuseOpts>,
    cmp: Compare,
    conditions: super::conditions_panel::ConditionsCtx,
) -> AnyView {
    let (models, rows) = crate::study::grid(&records);
    // Each card's stored map (by record index), for the study's null-edit comparison (G4).
    let stored: RwSignal<std::collections::HashMap<usize, radlens_shared::AttentionMap>> = RwSignal::new(Default::default());
    let all = std::sync::Arc::new(records.clone());
    let null_view: super::grounding_panel::NullView = Memo::new(move |_| {
        let needed = radlens_shared::views::null_edit_maps_needed(&all);
        if needed.is_empty() {
            return None;
        }
        stored.with(|maps| {
            needed
                .iter()
                .all(|&i| maps.contains_key(&all[i].index))
                .then(|| radlens_shared::views::NullEditFlags::of(&all, |i| maps.get(&all[i].index)))
        })
    });
    let models_for_matrix = models.clone();
    let variants_for_matrix: Vec<(u32, Vec<Option<usize>>)> = rows
        .iter()
        .map(|(v, cells)| (*v, cells.iter().map(|c| c.as_ref().filter(|r| r.record.map.is_some()).map(|r| r.index)).collect()))
        .collect();
    let ncols = models.len();
    let grid_class = format!("study-grid cols-{}", ncols.min(4));
    view! {
        <div class=grid_class id="study-grid">
            {rows
                .into_iter()
                .map(|(variant, cells)| {
                    let first = cells.iter().flatten().next().cloned();
                    let head = first
                        .map(|r| format!("Variant {variant} · {} · {}", r.record.strategy, r.record.question))
                        .unwrap_or_default();
                    view! {
                        <h2 class="variant-head">{head}</h2>
                        {cells
                            .into_iter()
                            .zip(models.clone())
                            .map(|(cell, model)| match cell {
                                Some(r) => case_card(run.clone(), r, opacity, refuse_opts, cmp, (stored, null_view), conditions).into_any(),
                                None => view! { <div class="case missing">{format!("{model}: no record")}</div> }.into_any(),
                            })
                            .collect_view()}
                    }
                })
                .collect_view()}
        </div>
        {js_matrices(models_for_matrix, variants_for_matrix, cmp)}
    }
    .into_any()
}

/// Which card is pinned, the map each card currently shows (record index -> model, values),
/// and the cards that show their difference to the pinned map (`diff=` in the URL).
#[derive(Clone, Copy)]
struct Compare {
    pinned: RwSignal<Option<usize>>,
    shown: RwSignal<std::collections::HashMap<usize, (String, Vec<f64>)>>,
    diff: RwSignal<std::collections::BTreeSet<usize>>,
}

/// Sets (or with `None` removes) one key of the query string, keeping the others in order.
pub(super) fn set_query_key(key: &str, value: Option<String>) {
    let mut pairs: Vec<(String, String)> =
        crate::url_state::parse_query(&location_search()).into_iter().filter(|(k, _)| k != key).collect();
    if let Some(v) = value {
        pairs.push((key.to_owned(), v));
    }
    let q: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={}", enc(&v))).collect();
    replace_query(&q.join("&"));
}

/// One variant x variant JS-distance table per model, over the maps the cards show.
fn js_matrices(models: Vec<String>, variants: Vec<(u32, Vec<Option<usize>>)>, cmp: Compare) -> impl IntoView {
    view! {
        <section class="panel js-matrices" id="js-matrices">
            <h2>"JS distance between variants (bits, shared js_distance)"</h2>
            {models
                .into_iter()
                .enumerate()
                .map(|(mi, model)| {
                    let cells: Vec<(u32, Option<usize>)> = variants.iter().map(|(v, idx)| (*v, idx[mi])).collect();
                    let head = cells.iter().map(|(v, _)| view! { <th class="num">{format!("v{v}")}</th> }).collect_view();
                    let cells2 = cells.clone();
                    let body = move || {
                        let shown = cmp.shown.get();
                        let maps: Vec<Option<&[f64]>> = cells2
                            .iter()
                            .map(|(_, i)| i.and_then(|i| shown.get(&i)).map(|(_, v)| v.as_slice()))
                            .collect();
                        let m = crate::study::js_matrix(&maps);
                        cells2
                            .iter()
                            .zip(m)
                            .map(|((va, ia), row)| {
                                let tds = cells2
                                    .iter()
                                    .zip(row)
                                    .map(|((_, ib), d)| {
                                        view! {
                                            <td
                                                class="num"
                                                data-a=ia.map(|i| i.to_string()).unwrap_or_default()
                                                data-b=ib.map(|i| i.to_string()).unwrap_or_default()
                                                data-js=d.map(|d| format!("{d:e}")).unwrap_or_default()
                                            >
                                                {d.map(|d| format!("{d:.3}")).unwrap_or_else(|| "—".into())}
                                            </td>
                                        }
                                    })
                                    .collect_view();
                                view! { <tr><th>{format!("v{va}")}</th>{tds}</tr> }
                            })
                            .collect_view()
                    };
                    view! {
                        <table class="js-matrix" data-model=model.clone()>
                            <caption>{model.clone()}</caption>
                            <thead><tr><th></th>{head}</tr></thead>
                            <tbody>{body}</tbody>
                        </table>
                    }
                })
                .collect_view()}
        </section>
    }
}

fn case_card(
    run: String,
    r: ApiRecord,
    opacity: RwSignal<crate::study::OverlayOpts>,
    refuse_opts: RwSignal<crate::study::RefuseOpts>,
    cmp: Compare,
    (stored, null_view): (RwSignal<std::collections::HashMap<usize, radlens_shared::AttentionMap>>, super::grounding_panel::NullView),
    conditions: super::conditions_panel::ConditionsCtx,
) -> impl IntoView {
    use crate::study::{MapPayload, provenance_line};
    let index = r.index;
    let has_map = r.record.map.is_some();
    // A fallback map has no per-layer rows: say so instead of trying (and "failing") to re-fuse.
    let not_refusable = r.record.map.as_ref().and_then(|m| crate::study::refusion_not_applicable(&m.provenance));
    let refusable = has_map && not_refusable.is_none();
    let run2 = run.clone();
    let map: LocalResource<Option<Result<MapPayload, ApiError>>> = LocalResource::new(move || {
        let run = run2.clone();
        async move {
            if !has_map {
                return None;
            }
            Some(fetch::get_json::<MapPayload>(&Endpoint::Map { run, index }).await)
        }
    });
    // Another method's map, when the overlay shows one and this record has it.
    let overlay_method = Memo::new(move |_| opacity.get().method);
    let has_methods: Vec<radlens_shared::fusion::MapMethod> =
        r.record.trust.iter().flat_map(|t| &t.maps).map(|m| m.provenance.method).collect();
    let run4 = run.clone();
    let other: LocalResource<Option<Result<MapPayload, ApiError>>> = LocalResource::new(move || {
        let (run, method) = (run4.clone(), overlay_method.get().filter(|m| has_methods.contains(m)));
        async move {
            let method = method?;
            let payload = fetch::get_json::<crate::methods::MethodMapPayload>(&Endpoint::MethodMap { run, index, method }).await;
            Some(payload.map(crate::methods::MethodMapPayload::into_map))
        }
    });
    Effect::new(move |_| {
        if let Some(Some(Ok(m))) = map.get()
            && let Ok(a) = radlens_shared::AttentionMap::new(m.h, m.w, m.values)
        {
            stored.update(|s| {
                s.insert(index, a);
            });
        }
    });
    // The raw head rows, fetched once per record, re-fused on every choice.
    let run3 = run.clone();
    let head_shape: Vec<usize> = r.record.map.as_ref().map(|m| m.head_rows.shape.clone()).unwrap_or_default();
    let rows: LocalResource<Option<Result<Vec<f32>, ApiError>>> = LocalResource::new(move || {
        let run = run3.clone();
        async move {
            if !refusable {
                return None;
            }
            Some(fetch::get_bytes(&Endpoint::Rows { run, index }).await.map(|b| crate::study::f32_le(&b)))
        }
    });
    let refused = Memo::new(move |_| -> Option<Result<crate::study::Refused, String>> {
        let choice = refuse_opts.get();
        let Some(Some(Ok(m))) = map.get() else {
            return None;
        };
        let raw = match rows.get() {
            Some(Some(Ok(raw))) => raw,
            Some(Some(Err(e))) => return Some(Err(format!("could not load the head rows: {e}"))),
            _ => return None,
        };
        let shape = head_shape.clone();
        Some((|| {
            let captured = crate::study::captured_layers(&m.provenance, shape.get(1).copied().unwrap_or(0))?;
            let idx = crate::study::select_layers(&choice.layers, &captured, &m.provenance.layer_range)?;
            let fusion = choice.fusion.unwrap_or(m.provenance.head_fusion);
            crate::study::refuse(&raw, &shape, &idx, fusion, m.h, m.w)
        })())
    });
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let drawn = RwSignal::new(false);
    let model_name = r.record.model.clone();
    // The values this card shows: re-fused when a choice is made (the stored map stays while
    // it loads or on an error).
    let shown = Memo::new(move |_| -> Option<Vec<f64>> {
        let Some(Some(Ok(m))) = map.get() else {
            return None;
        };
        if refuse_opts.get() != crate::study::RefuseOpts::default()
            && let Some(Ok(r)) = refused.get()
        {
            return Some(r.values);
        }
        Some(m.values)
    });
    let model2 = model_name.clone();
    Effect::new(move |_| {
        if let Some(v) = shown.get() {
            let model = model2.clone();
            cmp.shown.update(|s| {
                s.insert(index, (model, v));
            });
        }
    });
    // The pinned map, when another card of this model is pinned.
    let model3 = model_name.clone();
    let pinned_map = Memo::new(move |_| -> Option<Vec<f64>> {
        let p = cmp.pinned.get()?;
        if p == index {
            return None;
        }
        cmp.shown.with(|s| s.get(&p).filter(|(m, _)| *m == model3).map(|(_, v)| v.clone()))
    });
    let js_to_pin = Memo::new(move |_| -> Option<f64> {
        let (a, b) = (pinned_map.get()?, shown.get()?);
        radlens_shared::metrics::js_distance(&a, &b).ok()
    });
    let sinks: Vec<usize> = crate::methods::sink_cells(&r.record).to_vec();
    let sinks_attr = sinks.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let diff_on = Memo::new(move |_| cmp.diff.with(|d| d.contains(&index)));
    let diff_drawn = RwSignal::new(false);
    let bar_ref = NodeRef::<leptos::html::Canvas>::new();
    let bar = RwSignal::new(None::<crate::study::ColorBar>);
    // The grid and values drawn right now (stored, re-fused, the difference map or another
    // method's map), for the hover line.
    let displayed = RwSignal::new(None::<(usize, usize, Vec<f64>)>);
    let shown_method = RwSignal::new(String::new());
    // The boxes drawn (radiologist, mirror and controls), empty when none is.
    let boxes_drawn = RwSignal::new(None::<Result<usize, String>>);
    let roi = r.record.roi;
    let own_method: String = r.record.map.as_ref().map(|m| m.provenance.method.to_string()).unwrap_or_default();
    Effect::new(move |_| {
        let a = opacity.get();
        let Some(Some(Ok(mut m))) = map.get() else {
            return;
        };
        let Some(values) = shown.get() else { return };
        m.values = values;
        let own_grid = (m.h, m.w);
        let mut is_diff = false;
        if a.method.is_some()
            && let Some(Some(Ok(o))) = other.get()
        {
            m = o;
        } else if diff_on.get()
            && let Some(d) = pinned_map.get().and_then(|p| crate::study::difference_map(&p, &m.values))
        {
            m.values = d;
            is_diff = true;
        }
        diff_drawn.set(is_diff);
        shown_method.set(m.provenance.method.to_string());
        displayed.set(Some((m.h, m.w, m.values.clone())));
        let legend = crate::study::ColorBar::of(&m.values, &a);
        if let Some(c) = bar_ref.get()
            && let Err(err) = draw_colorbar(&c, &legend, &a)
        {
            leptos::logging::error!("could not draw the colour bar of record {index}: {err:?}");
        }
        bar.set(Some(legend));
        let Some(canvas) = canvas_ref.get() else {
            return;
        };
        // The G2 boxes on the shown map's grid, by the shared enumeration.
        let boxes = (a.boxes).then_some(roi).flatten().map(|roi| crate::grounding::OverlayBoxes::of(&m.provenance.geometry, &roi));
        boxes_drawn.set(boxes.as_ref().map(|b| b.as_ref().map(|b| b.controls.len()).map_err(|e| e.to_string())));
        // Sink cells are outlined over whatever map of the attention grid is shown: they are the
        // study's, not one map's (an occlusion map has its own grid).
        let sinks_here: &[usize] = if (m.h, m.w) == own_grid { &sinks } else { &[] };
        let drawing = draw_overlay(&canvas, &m, &a)
            .and_then(|()| super::methods_panel::outline_cells(&canvas, m.h, m.w, sinks_here))
            .and_then(|()| match &boxes {
                Some(Ok(b)) => super::grounding_panel::draw_boxes(&canvas, &m.provenance.geometry.crop, b),
                _ => Ok(()),
            });
        match drawing {
            Ok(()) => drawn.set(true),
            Err(err) => {
                leptos::logging::error!("could not draw the map of record {index}: {err:?}")
            }
        }
    });
    // The cell under the pointer: (row, col, index, value).
    let hover = RwSignal::new(None::<(usize, usize, usize, f64)>);
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let Some((h, w, values)) = displayed.get_untracked() else {
            return;
        };
        let Some(canvas) = canvas_ref.get_untracked() else {
            return;
        };
        let rect = canvas.get_bounding_client_rect();
        if rect.width() <= 0.0 || rect.height() <= 0.0 {
            return;
        }
        let fx = (ev.client_x() as f64 - rect.left()) / rect.width();
        let fy = (ev.client_y() as f64 - rect.top()) / rect.height();
        hover.set(crate::study::cell_at(h, w, fx, fy).and_then(|(row, col, i)| values.get(i).map(|&v| (row, col, i, v))));
    };
    let on_leave = move |_: leptos::ev::MouseEvent| hover.set(None);
    let rec = r.record;
    let img = fetch::url(&Endpoint::Image { run: run.clone(), image_id: r.image_id.clone() }).unwrap_or_default();
    let alt = format!("Chest X-ray {} ({})", rec.image, rec.sample_id);
    let methods = super::methods_panel::methods_panel(run.clone(), index, crate::methods::panel_methods(&rec), img.clone(), opacity);
    let trust = super::methods_panel::trust_panel(index, &rec);
    let grounding = super::grounding_panel::grounding_panel(index, &rec, null_view);
    let near_tie = super::conditions_panel::card_near_tie(&rec, conditions.eps);
    let strip = super::conditions_panel::conditions_strip(run.clone(), rec.clone(), index, conditions);
    let images = super::images_panel::images_panel(run.clone(), index, &rec, opacity);
    let fmt_ans = |a: Option<radlens_shared::answer::Answer>| a.map(|a| a.as_str().to_owned()).unwrap_or_else(|| "—".into());
    let correct = match rec.correct {
        Some(true) => "correct",
        Some(false) => "wrong",
        None => "not scored",
    };
    let metrics = rec.map.as_ref().map(|m| {
        format!(
            "focus {:.3} · entropy {:.3} nats · gini {:.3} · top-10% {:.3} · image share {:.3}",
            m.metrics.focus, m.metrics.entropy_nats, m.metrics.gini, m.metrics.top10_mass, m.image_share
        )
    });
    view! {
        <article
            class=move || if cmp.pinned.get() == Some(index) { "case pinned" } else { "case" }
            data-index=index.to_string()
            data-model=rec.model.clone()
        >
            <div class="map-col">
            <figure class="overlay" on:mousemove=on_move on:mouseleave=on_leave>
                <img src=img alt=alt />
                {has_map.then(|| view! {
                    <canvas
                        node_ref=canvas_ref
                        class="overlay-map"
                        data-index=index.to_string()
                        data-drawn=move || drawn.get().to_string()
                        data-diff=move || diff_drawn.get().to_string()
                        data-sinks=sinks_attr.clone()
                        data-method=move || shown_method.get()
                        data-boxes=move || match boxes_drawn.get() {
                            Some(Ok(n)) => (n + 2).to_string(),
                            _ => String::new(),
                        }
                        role="img"
                        aria-label=format!("Attention map of {} for {}", rec.model, rec.sample_id)
                    ></canvas>
                })}
            </figure>
            {move || {
                let shown = shown_method.get();
                (!shown.is_empty() && shown != own_method).then(|| view! {
                    <p class="help" data-testid="overlay-shown" data-method=shown.clone()>
                        {format!(
                            "The overlay shows this record's {} map; the numbers below are its own ({}) map's.",
                            crate::grounding::overlay_method_of(&shown).map(crate::methods::method_label).unwrap_or("other"),
                            crate::grounding::overlay_method_of(&own_method).map(crate::methods::method_label).unwrap_or("own"),
                        )}
                    </p>
                })
            }}
            {move || match (opacity.get().boxes, boxes_drawn.get()) {
                (false, _) => None,
                (true, Some(Ok(n))) => Some(super::grounding_panel::boxes_legend(Some(n)).into_any()),
                (true, Some(Err(e))) => Some(view! { <p class="error">{format!("the boxes could not be laid out: {e}")}</p> }.into_any()),
                (true, None) if roi.is_none() => Some(view! { <p class="help" data-testid="no-box">"no radiologist box for this record: no box to draw"</p> }.into_any()),
                (true, None) => None,
            }}
            {has_map.then(|| view! {
                <div class="colorbar-map" data-testid="colorbar" data-index=index.to_string()
                    data-cmap=move || opacity.get().colormap.as_str()
                    data-scale=move || bar.get().map(|b| format!("{:e}", b.scale)).unwrap_or_default()
                    data-cut=move || bar.get().map(|b| format!("{:e}", b.cut)).unwrap_or_default()
                >
                    <canvas node_ref=bar_ref width="256" height="10" aria-hidden="true"></canvas>
                    <div class="colorbar-labels">
                        {move || bar.get().map(|b| {
                            let (lo, cut, hi) = b.labels(&opacity.get());
                            view! { <span>{lo}</span><span class="cut">{cut.unwrap_or_default()}</span><span>{hi}</span> }
                        })}
                    </div>
                </div>
            })}
            {has_map.then(|| view! {
                <p
                    class="cell-status"
                    data-testid="cell-status"
                    data-index=index.to_string()
                    data-row=move || hover.get().map(|h| h.0.to_string()).unwrap_or_default()
                    data-col=move || hover.get().map(|h| h.1.to_string()).unwrap_or_default()
                    data-patch=move || hover.get().map(|h| h.2.to_string()).unwrap_or_default()
                    data-value=move || hover.get().map(|h| format!("{:e}", h.3)).unwrap_or_default()
                >
                    {move || match hover.get() {
                        Some((row, col, i, v)) => format!("row {row}, col {col}, patch {i}: {v:.5}"),
                        None => "hover the map to read a cell".to_owned(),
                    }}
                </p>
            })}
            </div>
            <div class="case-body">
                <h3>{rec.model.clone()}</h3>
                <dl class="facts">
                    <dt>"Answer"</dt><dd class="answer">{rec.answer_text.clone().unwrap_or_else(|| "—".into())}</dd>
                    <dt>"Parsed"</dt><dd>{format!("{} (truth {}, {correct})", fmt_ans(rec.parsed_answer), fmt_ans(rec.ground_truth))}</dd>
                    <dt>"Margin"</dt><dd>{rec.yes_no_margin.map(|m| format!("{m:.3} ")).unwrap_or_else(|| "—".into())}{near_tie}</dd>
                    <dt>"Map"</dt><dd>{metrics.unwrap_or_else(|| "no map".into())}</dd>
                </dl>
                {rec.error.as_ref().map(|e| view! { <p class="error" role="alert">{format!("{:?} error: {}", e.stage, e.message)}</p> })}
            </div>
            {images}
            {strip}
            {rec.map.as_ref().map(|sm| {
                let st = sm.metrics;
                let note = not_refusable.clone();
                let applies = note.is_none().to_string();
                view! {
                    <p
                        class="refused"
                        data-testid="refused"
                        data-index=index.to_string()
                        data-applies=applies
                        data-stored-focus=format!("{:e}", st.focus)
                        data-stored-gini=format!("{:e}", st.gini)
                        data-stored-entropy=format!("{:e}", st.entropy_nats)
                        data-focus=move || refused.get().and_then(|r| r.ok()).map(|r| format!("{:e}", r.metrics.focus)).unwrap_or_default()
                        data-gini=move || refused.get().and_then(|r| r.ok()).map(|r| format!("{:e}", r.metrics.gini)).unwrap_or_default()
                        data-entropy=move || refused.get().and_then(|r| r.ok()).map(|r| format!("{:e}", r.metrics.entropy_nats)).unwrap_or_default()
                    >
                        {move || match (&note, refused.get()) {
                            (Some(note), _) => note.clone(),
                            (None, None) => "re-fusing…".to_owned(),
                            (None, Some(Err(e))) => format!("re-fusion failed: {e}"),
                            (None, Some(Ok(r))) => format!(
                                "re-fused: focus {:.3} · gini {:.3} · entropy {:.3} (stored {:.3} · {:.3} · {:.3})",
                                r.metrics.focus, r.metrics.gini, r.metrics.entropy_nats, st.focus, st.gini, st.entropy_nats
                            ),
                        }}
                    </p>
                }
            })}
            {has_map.then(|| view! {
                <div class="compare" data-testid="compare" data-index=index.to_string()>
                    <button
                        type="button"
                        class="pin"
                        data-testid="pin"
                        data-index=index.to_string()
                        aria-pressed=move || (cmp.pinned.get() == Some(index)).to_string()
                        on:click=move |_| {
                            cmp.pinned.update(|p| *p = if *p == Some(index) { None } else { Some(index) });
                            // Keep the pin in the URL next to the other study-view keys.
                            set_query_key("pin", cmp.pinned.get_untracked().map(|p| p.to_string()));
                        }
                    >
                        {move || if cmp.pinned.get() == Some(index) { "Unpin" } else { "Pin" }}
                    </button>
                    {move || js_to_pin.get().map(|d| view! {
                        <span class="js-to-pin" data-testid="js-to-pin" data-js=format!("{d:e}")>
                            {format!("JS distance to pinned: {d:.3} bits")}
                        </span>
                        <label class="diff-toggle">
                            <input
                                type="checkbox"
                                class="diff"
                                data-testid="diff"
                                data-index=index.to_string()
                                prop:checked=move || diff_on.get()
                                on:change=move |ev| {
                                    let on = event_target_checked(&ev);
                                    cmp.diff.update(|d| { if on { d.insert(index); } else { d.remove(&index); } });
                                    let list = cmp.diff.with_untracked(|d| d.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","));
                                    set_query_key("diff", (!list.is_empty()).then_some(list));
                                }
                            />
                            " difference map"
                        </label>
                    })}
                </div>
            })}
            <p class="provenance" data-testid="provenance">
                {move || match map.get() {
                    None if has_map => "loading the map…".to_owned(),
                    None | Some(None) => "no map for this record".to_owned(),
                    Some(Some(Ok(m))) => provenance_line(&m.provenance, m.image_share),
                    Some(Some(Err(e))) => format!("Could not load the map: {e}"),
                }}
            </p>
            {methods}
            {trust}
            {grounding}
        </article>
    }
}
