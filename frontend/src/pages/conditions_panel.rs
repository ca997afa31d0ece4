//! The study page's image conditions (grounding G6) and near ties (G7): under each card, with
//! `conditions=1`, a row of small thumbnails, one per condition the row was run under, each the
//! image the model was shown with its answer beside the real one ([`conditions_strip`]); the
//! near-tie badge ([`near_tie_badge`]) on the study cards and in the explorer. The view model is
//! [`crate::conditions`].

use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::components::A;
use radlens_shared::record::CaseRecord;
use wasm_bindgen::{Clamped, JsCast, JsValue};

use crate::api::{ApiError, ApiRecord, Endpoint};
use crate::conditions::{ConditionCell, Shown, answer_text, condition_cells, near_tie_meaning, original_size, scale_box};
use crate::fetch;
use crate::site::href;

/// What the conditions strips of a study page share: whether they are shown (`conditions=1`),
/// every record of the study (fetched when first shown), and the run's near-tie threshold.
#[derive(Clone, Copy)]
pub struct ConditionsCtx {
    pub show: RwSignal<bool>,
    pub all: LocalResource<Option<Result<Arc<Vec<ApiRecord>>, ApiError>>>,
    pub eps: LocalResource<Result<f64, ApiError>>,
}

/// The `near tie` badge, with its meaning under the run's threshold on hover.
pub fn near_tie_badge(eps: f64) -> impl IntoView {
    view! { <span class="badge near-tie" data-testid="near-tie" title=near_tie_meaning(eps)>"near tie"</span> }
}

/// The badge for an image-pass record whose margin is a near tie, once the threshold is known.
pub fn card_near_tie(record: &CaseRecord, eps: LocalResource<Result<f64, ApiError>>) -> impl IntoView + use<> {
    let record = record.clone();
    move || match eps.get() {
        Some(Ok(eps)) => (radlens_shared::filter::near_tie(&record, eps) == Some(true)).then(|| near_tie_badge(eps).into_any()),
        Some(Err(e)) => Some(view! { <span class="error">{format!(" (near ties unknown: {e})")}</span> }.into_any()),
        None => None,
    }
}

/// Under a card (`real`, record `index`): one thumbnail per condition of its row and model.
pub fn conditions_strip(run: String, real: CaseRecord, index: usize, ctx: ConditionsCtx) -> impl IntoView {
    move || {
        if !ctx.show.get() {
            return None;
        }
        Some(match ctx.all.get() {
            None | Some(None) => view! { <p class="help" data-testid="conditions-loading">"loading the image conditions…"</p> }.into_any(),
            Some(Some(Err(e))) => {
                view! { <p class="error" role="alert">{format!("Could not load the image conditions: {e}")}</p> }.into_any()
            }
            Some(Some(Ok(all))) => {
                let cells = condition_cells(&real, &all);
                if cells.is_empty() {
                    return Some(
                        view! { <p class="help" data-testid="conditions" data-index=index.to_string()>"This row was not run under any image condition."</p> }
                            .into_any(),
                    );
                }
                let real_answer = answer_text(real.parsed_answer);
                view! {
                    <section class="conditions" data-testid="conditions" data-index=index.to_string()>
                        <h4>{format!("Image conditions (real image: {real_answer})")}</h4>
                        <div class="cond-row">
                            {cells.into_iter().map(|c| condition_figure(&run, &real, c)).collect_view()}
                        </div>
                    </section>
                }
                .into_any()
            }
        })
    }
}

fn condition_figure(run: &str, real: &CaseRecord, c: ConditionCell) -> impl IntoView {
    let img_url = |image_id: &str| fetch::url(&Endpoint::Image { run: run.to_owned(), image_id: image_id.to_owned() }).unwrap_or_default();
    let label = c.pass.label();
    let thumb = match &c.shown {
        None => view! { <div class="cond-thumb not-run" role="img" aria-label="not run">"—"</div> }.into_any(),
        Some(Shown::Blank) => view! { <div class="cond-thumb blank" data-testid="blank-thumb" role="img" aria-label="a blank (black) image"></div> }.into_any(),
        Some(Shown::Partner { study, image_id }) => {
            let img = view! { <img class="cond-thumb" src=img_url(image_id) alt=format!("the image of study {}", study.clone().unwrap_or_default()) /> };
            match study {
                Some(s) => {
                    let to = href(&format!("{}?{}=1", crate::url_state::study_path(run, s), crate::conditions::CONDITIONS_KEY));
                    view! { <A href=to attr:class="partner" attr:data-testid="partner-link" attr:data-study=s.clone() attr:title=format!("open study {s}, whose image this is")>{img}</A> }.into_any()
                }
                None => img.into_any(),
            }
        }
        Some(Shown::Occluded { image_id, fill }) => occluded_thumb(img_url(image_id), *fill, real.clone()).into_any(),
        Some(Shown::Prior { partner_study, prior_image_id, image_id, kept }) => {
            prior_thumb(run, partner_study.clone(), prior_image_id.as_ref().map(|id| img_url(id)), img_url(image_id), kept).into_any()
        }
        Some(Shown::Edited { image_id }) => view! {
            <img class="cond-thumb" src=img_url(image_id) alt=format!("the original image; the model saw it after {label}") title=format!("The original image; the model was shown it after the edit: {label}.") />
        }
        .into_any(),
    };
    let agrees = match c.agrees {
        Some(true) => "same as real",
        Some(false) => "differs from real",
        None => "not compared",
    };
    let truth = c.truth.map(|t| format!("truth {}", t.as_str()));
    let margin = c.margin.map(|m| format!("margin {m:+.2}"));
    let edited_note = matches!(c.shown, Some(Shown::Edited { .. })).then_some("edit applied to the model's input (original shown)");
    view! {
        <figure
            class="cond"
            class:cond-differs=c.agrees == Some(false)
            data-pass=c.pass.name()
            data-index=c.index.to_string()
            data-answer=c.parsed.map(|a| a.as_str()).unwrap_or_default()
            data-agrees=c.agrees.map(|a| a.to_string()).unwrap_or_default()
            data-truth=c.truth.map(|a| a.as_str()).unwrap_or_default()
            data-margin=c.margin.map(|m| format!("{m:e}")).unwrap_or_default()
            data-not-run=c.not_run.clone().unwrap_or_default()
            title=format!("{label}: {}", c.pass.name())
        >
            {thumb}
            <figcaption>
                <span class="cond-label">{label}</span>
                {match &c.not_run {
                    Some(reason) => view! { <span class="cond-not-run" data-testid="not-run">{format!("not run: {reason}")}</span> }.into_any(),
                    None => view! {
                        <span class="cond-answer">
                            <strong>{answer_text(c.parsed)}</strong>
                            {format!(" · {agrees}")}
                        </span>
                        <span class="cond-facts">{[truth, margin].into_iter().flatten().collect::<Vec<_>>().join(" · ")}</span>
                    }
                    .into_any(),
                }}
                {edited_note.map(|n| view! { <span class="help">{n}</span> })}
                {c.error.map(|e| view! { <span class="error">{format!("error: {e}")}</span> })}
            </figcaption>
        </figure>
    }
}

/// What a multi-image row was shown with its prior replaced: the prior (a black square, or a
/// link to the study whose prior it was) beside the row's current image, and the roles of its
/// other images, which were kept.
fn prior_thumb(run: &str, partner: Option<String>, partner_prior: Option<String>, current: String, kept: &[String]) -> impl IntoView {
    let prior = match &partner {
        None => view! { <div class="cond-thumb blank" data-testid="prior-blank-thumb" role="img" aria-label="a blank (black) prior image"></div> }.into_any(),
        Some(s) => {
            let to = href(&format!("{}?{}=1", crate::url_state::study_path(run, s), crate::conditions::CONDITIONS_KEY));
            // The partner's prior itself where the record names it (older runs: a link only).
            let label = match partner_prior {
                Some(src) => view! { <img class="cond-thumb" src=src alt=format!("study {s}'s prior image") /> }.into_any(),
                None => view! { <span>{format!("prior of study {s}")}</span> }.into_any(),
            };
            view! {
                <A href=to attr:class="partner cond-thumb prior-partner" attr:data-testid="prior-partner-link" attr:data-study=s.clone()
                    attr:title=format!("open study {s}, whose prior image the model was shown as this row's prior")>
                    {label}
                </A>
            }
            .into_any()
        }
    };
    let said = match &partner {
        None => "prior: blank image".to_owned(),
        Some(s) => format!("prior: study {s}'s prior"),
    };
    let kept = (!kept.is_empty()).then(|| format!("{} kept", kept.join(", ")));
    view! {
        <div class="cond-prior" data-testid="prior-shown" data-partner=partner.clone().unwrap_or_default()>
            <div class="cond-prior-pair">
                {prior}
                <img class="cond-thumb" src=current alt="the row's current image, as it was" title="The row's current image, as it was." />
            </div>
            <span class="help">{[Some(said), Some("current: as it was".to_owned()), kept].into_iter().flatten().collect::<Vec<_>>().join(" · ")}</span>
        </div>
    }
}

/// The row's image drawn on a canvas at its served size, with `fill` (original pixels) filled
/// with the image's per-channel mean computed from the canvas pixels (the shared `fill_box`, as
/// the study made the model's input) and outlined.
fn occluded_thumb(src: String, fill: radlens_shared::geometry::PixelBox, real: CaseRecord) -> impl IntoView {
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    // The box on the canvas and the fill colour, or why it could not be drawn.
    let done = RwSignal::new(None::<Result<(radlens_shared::geometry::PixelBox, Vec<u8>), String>>);
    Effect::new(move |_| {
        let Some(canvas) = canvas_ref.get() else { return };
        let Ok(img) = web_sys::HtmlImageElement::new() else {
            done.set(Some(Err("no image element".into())));
            return;
        };
        let loaded = img.clone();
        let real = real.clone();
        let onload = wasm_bindgen::closure::Closure::once_into_js(move || {
            done.set(Some(paint_occluded(&canvas, &loaded, &fill, &real)));
        });
        let onerror = wasm_bindgen::closure::Closure::once_into_js(move || done.set(Some(Err("the image could not be loaded".into()))));
        img.set_onload(Some(onload.unchecked_ref()));
        img.set_onerror(Some(onerror.unchecked_ref()));
        img.set_src(&src);
    });
    view! {
        <canvas
            node_ref=canvas_ref
            class="cond-thumb"
            data-testid="occluded-thumb"
            data-filled=move || matches!(done.get(), Some(Ok(_))).to_string()
            data-box=move || match done.get() {
                Some(Ok((b, _))) => format!("{},{},{},{}", b.x0, b.y0, b.x1, b.y1),
                _ => String::new(),
            }
            data-fill=move || match done.get() {
                Some(Ok((_, c))) => c.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
                _ => String::new(),
            }
            data-error=move || match done.get() {
                Some(Err(e)) => e,
                _ => String::new(),
            }
            role="img"
            aria-label="the image with the box filled with its mean colour"
        ></canvas>
    }
}

fn paint_occluded(
    canvas: &web_sys::HtmlCanvasElement,
    img: &web_sys::HtmlImageElement,
    fill: &radlens_shared::geometry::PixelBox,
    real: &CaseRecord,
) -> Result<(radlens_shared::geometry::PixelBox, Vec<u8>), String> {
    let js = |e: JsValue| format!("{e:?}");
    let (w, h) = (img.natural_width(), img.natural_height());
    if w == 0 || h == 0 {
        return Err("the image is empty".into());
    }
    let (ow, oh) = original_size(real, w, h).ok_or("the image's original size is unknown (no map geometry): the box cannot be placed")?;
    let b = scale_box(fill, ow, oh, f64::from(w), f64::from(h));
    canvas.set_width(w);
    canvas.set_height(h);
    let ctx = canvas
        .get_context("2d")
        .map_err(js)?
        .ok_or("no 2d context")?
        .dyn_into::<web_sys::CanvasRenderingContext2d>()
        .map_err(|_| "not a 2d context")?;
    ctx.draw_image_with_html_image_element(img, 0.0, 0.0).map_err(js)?;
    let data = ctx.get_image_data(0.0, 0.0, f64::from(w), f64::from(h)).map_err(js)?.data().0;
    let out = radlens_shared::grounding::fill_box(&data, w as usize, h as usize, 4, &b).map_err(|e| e.to_string())?;
    // The fill colour: the pixel at the box's centre.
    let (cx, cy) = (((b.x0 + b.x1) / 2.0).floor() as usize, ((b.y0 + b.y1) / 2.0).floor() as usize);
    let at = (cy.min(h as usize - 1) * w as usize + cx.min(w as usize - 1)) * 4;
    let colour = out[at..at + 3].to_vec();
    let image = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&out), w, h).map_err(js)?;
    ctx.put_image_data(&image, 0.0, 0.0).map_err(js)?;
    // The outline, drawn just outside the box so the filled pixels stay as filled.
    let line = (f64::from(w.max(h)) / 128.0).max(2.0);
    ctx.set_stroke_style_str("#00e5ff");
    ctx.set_line_width(line);
    ctx.stroke_rect(b.x0 - line / 2.0, b.y0 - line / 2.0, b.x1 - b.x0 + line, b.y1 - b.y0 + line);
    Ok((b, colour))
}
