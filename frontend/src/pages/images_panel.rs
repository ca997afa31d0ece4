//! The study page's side-by-side view of a multi-image record (issue 21): each image of the
//! prompt (prior, current, lateral) with its own map drawn over it on its own grid and crop (the
//! single-image card's overlay drawing), labelled with its role, file name and share of the
//! method's mass. The method (attention, or another method's per-image maps) is chosen once for
//! the page (`images=` in the URL); the view model is [`crate::images`].

use leptos::prelude::*;
use radlens_shared::api::ImageMapPayload;
use radlens_shared::fusion::MapMethod;
use radlens_shared::record::{CaseRecord, ImageMapRecord};

use super::components::draw_overlay;
use crate::api::{ApiError, Endpoint};
use crate::fetch;
use crate::images::{IMAGES_KEY, image_choice, image_methods, method_choice_label, share_percent};
use crate::study::OverlayOpts;

/// The per-image method the study page shows (`None`: attention), given to every card by
/// context so the cards' signatures stay as they are.
#[derive(Clone, Copy)]
pub struct ImageMethod(pub RwSignal<Option<MapMethod>>);

/// The page's selector of the per-image method, shown when a record of the study has several
/// images; it writes `images=` into the URL.
pub fn image_method_select(records: &[crate::api::ApiRecord], selected: RwSignal<Option<MapMethod>>) -> impl IntoView + use<> {
    if !crate::images::any_multi_image(records) {
        return None;
    }
    let mut choices: Vec<Option<MapMethod>> = std::iter::once(None).chain(image_methods(records).into_iter().map(Some)).collect();
    // A method the URL names that no image has stays selectable, so the page shows what the
    // URL asks for (each image then says it has no such map) rather than silently attention.
    if let Some(m) = selected.get_untracked().filter(|m| !choices.contains(&Some(*m))) {
        choices.push(Some(m));
    }
    let on_change = move |ev: leptos::ev::Event| {
        let m = crate::grounding::overlay_method_of(&event_target_value(&ev));
        selected.set(m);
        super::study::set_query_key(IMAGES_KEY, m.map(|m| m.to_string()));
    };
    Some(view! {
        <section class="panel image-method">
            <label for="image-method">"Per-image maps"</label>
            <select id="image-method" on:change=on_change>
                {choices
                    .into_iter()
                    .map(|m| {
                        let value = m.map(|m| m.to_string()).unwrap_or_default();
                        view! { <option value=value selected=move || selected.get() == m>{method_choice_label(m)}</option> }
                    })
                    .collect_view()}
            </select>
            <span class="help">"each image of a multi-image question with its own map and its share of the method's mass"</span>
        </section>
    })
}

/// Under a multi-image record's card: its images side by side, each with its map; nothing for a
/// single-image record.
pub fn images_panel(run: String, index: usize, rec: &CaseRecord, opts: RwSignal<OverlayOpts>) -> Option<impl IntoView + use<>> {
    if rec.images.is_empty() {
        return None;
    }
    let selected = use_context::<ImageMethod>().map(|m| m.0).unwrap_or_else(|| RwSignal::new(None));
    let n = rec.images.len();
    let figures =
        rec.images.iter().enumerate().map(|(k, image)| image_figure(run.clone(), index, k, image.clone(), selected, opts)).collect_view();
    Some(view! {
        <section class="images-panel" data-testid="images" data-index=index.to_string()
            data-method=move || selected.get().map(|m| m.to_string()).unwrap_or_default()>
            <h4>{move || format!("The question's {n} images, {} maps", method_choice_label(selected.get()))}</h4>
            <div class="image-row">{figures}</div>
        </section>
    })
}

fn image_figure(
    run: String,
    index: usize,
    k: usize,
    image: ImageMapRecord,
    selected: RwSignal<Option<MapMethod>>,
    opts: RwSignal<OverlayOpts>,
) -> impl IntoView {
    let im = image.clone();
    let choice = Memo::new(move |_| image_choice(&im, selected.get()));
    // The attention payload names the image's id (the X-ray's URL); the selected method's map
    // is fetched on its own when it is another one.
    let own = image.provenance.method;
    let run_a = run.clone();
    let attention: LocalResource<Result<ImageMapPayload, ApiError>> = LocalResource::new(move || {
        let run = run_a.clone();
        async move { fetch::get_json::<ImageMapPayload>(&Endpoint::ImageMap { run, index, k, method: own }).await }
    });
    let run_m = run.clone();
    let other: LocalResource<Option<Result<ImageMapPayload, ApiError>>> = LocalResource::new(move || {
        let (run, c) = (run_m.clone(), choice.get());
        async move {
            let (method, _) = c.filter(|(m, _)| *m != own)?;
            Some(fetch::get_json::<ImageMapPayload>(&Endpoint::ImageMap { run, index, k, method }).await)
        }
    });
    let shown = move || -> Option<Result<ImageMapPayload, ApiError>> {
        match choice.get()? {
            (m, _) if m == own => attention.get(),
            _ => other.get().flatten(),
        }
    };
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    // The grid and method drawn right now, for the page's data attributes.
    let drawn = RwSignal::new(None::<(usize, usize, String)>);
    let failed = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let o = opts.get();
        let Some(canvas) = canvas_ref.get() else { return };
        let p = match shown() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                canvas.set_width(0);
                failed.set(Some(format!("could not load the map: {e}")));
                drawn.set(None);
                return;
            }
            None => {
                // No map by this method: the previous one must not stay on the image.
                canvas.set_width(0);
                failed.set(None);
                drawn.set(None);
                return;
            }
        };
        let (h, w, method) = (p.h, p.w, p.provenance.method.to_string());
        match draw_overlay(&canvas, &p.into_map(), &o) {
            Ok(()) => {
                failed.set(None);
                drawn.set(Some((h, w, method)));
            }
            Err(err) => {
                failed.set(Some(format!("could not draw the map: {err:?}")));
                drawn.set(None);
            }
        }
    });
    let img = move || match attention.get() {
        Some(Ok(p)) => fetch::url(&Endpoint::Image { run: run.clone(), image_id: p.image_id }).unwrap_or_default(),
        _ => String::new(),
    };
    let role = image.role.clone();
    let alt = format!("the {} image {}", image.role, image.image);
    let share = move || choice.get().map(|(_, s)| share_percent(s));
    view! {
        <figure
            class="image-map"
            data-testid="image-map"
            data-k=k.to_string()
            data-role=role.clone()
            data-image=image.image.clone()
            data-share=move || share().unwrap_or_default()
        >
            <div class="overlay">
                <img src=img alt=alt />
                <canvas
                    node_ref=canvas_ref
                    class="image-overlay"
                    data-drawn=move || drawn.get().is_some().to_string()
                    data-h=move || drawn.get().map(|d| d.0.to_string()).unwrap_or_default()
                    data-w=move || drawn.get().map(|d| d.1.to_string()).unwrap_or_default()
                    data-method=move || drawn.get().map(|d| d.2).unwrap_or_default()
                    role="img"
                    aria-label=format!("the map of the {role} image")
                ></canvas>
            </div>
            <figcaption>
                <strong class="image-role">{image.role.clone()}</strong>
                <span class="image-file">{image.image.clone()}</span>
                <span class="image-share">
                    {move || match share() {
                        Some(s) => format!("{s}% of the {} mass", method_choice_label(selected.get())),
                        None => format!("no {} map of this image", method_choice_label(selected.get())),
                    }}
                </span>
                {move || failed.get().map(|e| view! { <span class="error">{e}</span> })}
            </figcaption>
        </figure>
    }
}
