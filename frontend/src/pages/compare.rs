//! The compare page (`/compare`): upload an image and a question, every model of the server's
//! `--model` list answers with its map. Its view model is [`crate::compare`].

use leptos::prelude::*;
use radlens_shared::api::COMPARE_CONDITIONS;
use radlens_shared::grounding::ImageCondition;

use crate::api::{ApiError, Endpoint};
use crate::fetch::{self, enc};

use super::components::*;

/// `/compare`: upload an image and a question; every model of the server's `--model` list
/// answers, each card shows the upload with that model's map over the crop it covers, and a
/// table gives the cross-model JS divergence on the common grid. The question (not the image)
/// is kept in the URL (`?q=`).
#[component]
pub fn ComparePage() -> impl IntoView {
    use crate::compare::{CompareResponse, question_from_query};
    let question = RwSignal::new(question_from_query(&location_search()));
    let file_ref = NodeRef::<leptos::html::Input>::new();
    let image_url = RwSignal::new(None::<String>);
    // None: nothing asked yet; Some(None): waiting; Some(Some(..)): the answer.
    let result = RwSignal::new(None::<Option<Result<CompareResponse, ApiError>>>);
    let form_error = RwSignal::new(None::<String>);
    // The image conditions to run as well, and the box roi_occluded fills.
    let conditions = RwSignal::new(Vec::<ImageCondition>::new());
    let roi = RwSignal::new(String::new());
    let on_question = move |ev: leptos::ev::Event| {
        let q = event_target_value(&ev);
        replace_query(&if q.is_empty() { String::new() } else { format!("q={}", enc(&q)) });
        question.set(q);
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        form_error.set(None);
        let Some(input) = file_ref.get_untracked() else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            form_error.set(Some("Choose an image (PNG or JPEG) first.".into()));
            return;
        };
        let q = question.get_untracked().trim().to_owned();
        if q.is_empty() {
            form_error.set(Some("Type a question first.".into()));
            return;
        }
        let form = match web_sys::FormData::new() {
            Ok(f) => f,
            Err(e) => {
                form_error.set(Some(format!("{e:?}")));
                return;
            }
        };
        let asked = conditions.get_untracked();
        let names: Vec<&str> = COMPARE_CONDITIONS.iter().filter(|c| asked.contains(c)).map(|c| c.name()).collect();
        let roi_text = roi.get_untracked().trim().to_owned();
        if asked.contains(&ImageCondition::RoiOccluded) && roi_text.is_empty() {
            form_error.set(Some("roi_occluded needs the box to fill: x,y,w,h in the image's pixels.".into()));
            return;
        }
        let appended = form.append_with_blob_and_filename("image", &file, &file.name()).is_ok()
            && form.append_with_str("question", &q).is_ok()
            && (names.is_empty() || form.append_with_str("conditions", &names.join(",")).is_ok())
            && (roi_text.is_empty() || form.append_with_str("box", &roi_text).is_ok());
        if !appended {
            form_error.set(Some("could not build the upload".into()));
            return;
        }
        if let Some(old) = image_url.get_untracked() {
            let _ = web_sys::Url::revoke_object_url(&old);
        }
        image_url.set(web_sys::Url::create_object_url_with_blob(&file).ok());
        result.set(Some(None));
        leptos::task::spawn_local(async move {
            let r = fetch::post_form::<CompareResponse>(&Endpoint::Compare, &form).await;
            result.set(Some(Some(r)));
        });
    };
    view! {
        <SiteHeader title="Compare models" />
        <main class="page compare-page">
            <form id="compare-form" class="panel compare-form" on:submit=on_submit>
                <p class="lede">"Every model the server was started with (--model NAME=DIR) answers the question about the image; each map is drawn over the region its model saw."</p>
                <div class="field">
                    <label for="compare-image">"Image (PNG or JPEG)"</label>
                    <input type="file" id="compare-image" name="image" accept="image/png,image/jpeg" node_ref=file_ref />
                </div>
                <div class="field">
                    <label for="compare-question">"Question"</label>
                    <input
                        type="text"
                        id="compare-question"
                        name="question"
                        maxlength="2000"
                        placeholder="Is there a pleural effusion?"
                        prop:value=move || question.get()
                        on:input=on_question
                    />
                </div>
                <fieldset class="field compare-conditions">
                    <legend>"Also ask with the image changed (answers only)"</legend>
                    {COMPARE_CONDITIONS.iter().map(|&c| {
                        let on_change = move |ev: leptos::ev::Event| {
                            let on = event_target_checked(&ev);
                            conditions.update(|v| {
                                v.retain(|x| *x != c);
                                if on {
                                    v.push(c);
                                }
                            });
                        };
                        view! {
                            <label title=condition_meaning(c)>
                                <input type="checkbox" id=format!("cond-{}", c.name()) on:change=on_change />
                                {c.name()}
                            </label>
                        }
                    }).collect_view()}
                    <label for="compare-box">"Box for roi_occluded (x,y,w,h)"</label>
                    <input type="text" id="compare-box" name="box" placeholder="120,200,90,80" prop:value=move || roi.get() on:input=move |ev| roi.set(event_target_value(&ev)) />
                </fieldset>
                <button type="submit" id="compare-submit" disabled=move || matches!(result.get(), Some(None))>"Compare"</button>
                {move || form_error.get().map(|e| view! { <p class="error" role="alert" data-testid="form-error">{e}</p> })}
            </form>
            {move || match result.get() {
                None => ().into_any(),
                Some(None) => loading("the answers (every model runs in turn)"),
                Some(Some(Err(e))) => error_view("the comparison", &e),
                Some(Some(Ok(r))) => compare_result(r, image_url.get_untracked().unwrap_or_default()),
            }}
        </main>
    }
}

fn compare_result(r: crate::compare::CompareResponse, image_url: String) -> AnyView {
    let cards = r.models.iter().cloned().map(|m| compare_card(m, image_url.clone())).collect_view();
    let cross = r.cross_model.clone();
    view! {
        <section class="compare-results" data-testid="compare-results">
            <p class="compare-question">{format!("“{}” on a {}×{} px image", r.question, r.image.width, r.image.height)}</p>
            <div class="compare-cards">{cards}</div>
            <h2>"Cross-model Jensen-Shannon"</h2>
            {if cross.is_empty() {
                view! { <p class="muted" data-testid="no-cross">"No pair of models to compare."</p> }.into_any()
            } else {
                view! {
                    <table class="cross-js" data-testid="cross-js">
                        <thead><tr><th>"Model A"</th><th>"Model B"</th><th>"Grid"</th><th>"JS divergence"</th><th>"JS distance"</th></tr></thead>
                        <tbody>
                            {cross.into_iter().map(|c| view! {
                                <tr data-a=c.model_a.clone() data-b=c.model_b.clone() data-js=format!("{:e}", c.js_divergence)>
                                    <td>{c.model_a.clone()}</td>
                                    <td>{c.model_b.clone()}</td>
                                    <td>{format!("{0}×{0}", c.grid)}</td>
                                    <td>{format!("{:.4}", c.js_divergence)}</td>
                                    <td>{format!("{:.4}", c.js_distance)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

fn compare_card(m: crate::compare::ModelAnswer, image_url: String) -> impl IntoView {
    use crate::compare::{architecture_text, metrics_line};
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let drawn = RwSignal::new(false);
    let map = m.map.clone();
    let name = m.model.clone();
    Effect::new(move |_| {
        let (Some(canvas), Some(map)) = (canvas_ref.get(), map.as_ref()) else {
            return;
        };
        match draw_overlay(&canvas, map, &crate::study::OverlayOpts::default()) {
            Ok(()) => drawn.set(true),
            Err(err) => leptos::logging::error!("could not draw the map of {name}: {err:?}"),
        }
    });
    let has_map = m.map.is_some();
    let fmt_ans = m.parsed_answer.map(|a| a.as_str().to_owned()).unwrap_or_else(|| "—".into());
    view! {
        <article class="case compare-card" data-model=m.model.clone()>
            <div class="map-col">
                <figure class="overlay">
                    <img src=image_url alt=format!("The uploaded image, with the map of {}", m.model) />
                    {has_map.then(|| view! {
                        <canvas
                            node_ref=canvas_ref
                            class="overlay-map"
                            data-model=m.model.clone()
                            data-drawn=move || drawn.get().to_string()
                            role="img"
                            aria-label=format!("Attention map of {}", m.model)
                        ></canvas>
                    })}
                </figure>
            </div>
            <div class="case-body">
                <h3>{m.model.clone()}</h3>
                {m.error.clone().map(|e| view! { <p class="error" role="alert" data-testid="model-error">{e}</p> })}
                <dl class="facts">
                    <dt>"Architecture"</dt><dd>{architecture_text(&m.architecture)}</dd>
                    <dt>"Answer"</dt><dd class="answer">{m.answer.clone().unwrap_or_else(|| "—".into())}</dd>
                    <dt>"Parsed"</dt><dd class="parsed">{fmt_ans}</dd>
                    <dt>"Margin"</dt><dd class="margin">{m.yes_no_margin.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into())}</dd>
                    <dt>"Map"</dt><dd class="metrics">{m.map.as_ref().map(metrics_line).unwrap_or_else(|| "no map".into())}</dd>
                    <dt>"Latency"</dt><dd>{m.latency_ms.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "—".into())}</dd>
                </dl>
            </div>
            {(!m.conditions.is_empty()).then(|| condition_table(&m.conditions))}
            <p class="provenance" data-testid="provenance">
                {m.map.as_ref().map(|mp| crate::study::provenance_line(&mp.provenance, mp.image_share)).unwrap_or_else(|| "no map".into())}
            </p>
        </article>
    }
}

/// What each upload condition does to the image (the checkboxes' hover text).
fn condition_meaning(c: ImageCondition) -> &'static str {
    match c {
        ImageCondition::Blank => "a black image instead of the upload: does the answer need the image at all?",
        ImageCondition::Jpeg90 => "the upload re-encoded as JPEG quality 90: a change that should mean nothing",
        ImageCondition::Contrast90 => "the upload with 10% less contrast: a change that should mean nothing",
        ImageCondition::RoiOccluded => "the box filled with the image's mean: does the answer come from there?",
        _ => "",
    }
}

/// One model's answers under the image conditions asked for.
fn condition_table(rows: &[radlens_shared::api::ConditionAnswer]) -> impl IntoView + use<> {
    let rows = rows.to_vec();
    view! {
        <table class="compare-conditions-table" data-testid="condition-answers">
            <thead><tr><th>"Image"</th><th>"Parsed"</th><th>"Margin"</th><th>"Same as the upload"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|r| view! {
                    <tr data-condition=r.condition.name() data-parsed=r.parsed_answer.map(|a| a.as_str()).unwrap_or("")>
                        <td title=condition_meaning(r.condition)>{r.condition.name()}</td>
                        <td>{r.error.clone().unwrap_or_else(|| r.parsed_answer.map_or("—", |a| a.as_str()).to_owned())}</td>
                        <td>{r.yes_no_margin.map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"))}</td>
                        <td>{match r.same_as_real { Some(true) => "yes", Some(false) => "changed", None => "—" }}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
