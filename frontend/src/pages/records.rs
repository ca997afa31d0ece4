//! The records explorer page (`/runs/:id/records`): every record of the run, filtered, sorted
//! and paged in the browser, with its whole state in the URL query and a CSV download. Its view
//! model is [`crate::explorer`].

use std::sync::Arc;

use crate::explorer::{
    Derived, ExplorerState, NullEditFlags, PAGE_SIZE, SortKey, csv_button_label, csv_filename, distinct, null_edit_maps_needed, page_count,
    passes_present, select, to_csv,
};
use leptos::prelude::*;
use leptos_router::components::A;
use radlens_shared::filter::RunFacts;

use crate::api::{ApiError, ApiRecord};
use crate::fetch::{self, enc};
use crate::site::href;
use crate::url_state::study_path;

use super::components::*;
use super::conditions_panel::near_tie_badge;

/// The run's records, their derived views and the facts the filter needs (blank answers, the
/// manifest's near-tie threshold).
type Loaded = Result<Arc<(Vec<ApiRecord>, Derived, RunFacts)>, ApiError>;

/// The null-edit view of the run (`None` until first asked for: it needs the maps' values).
type Nulls = Option<Result<Arc<NullEditFlags>, String>>;

/// Computes the run's null-edit view (grounding G4) with the shared code from the stored maps
/// of the records that need one (`null_edit_maps_needed`: none in a run without null edits),
/// fetched one after another, as the server reads them for the same query.
async fn null_edit_view(
    run: String,
    d: Arc<(Vec<ApiRecord>, Derived, RunFacts)>,
    progress: RwSignal<(usize, usize)>,
) -> Result<Arc<NullEditFlags>, String> {
    let needed = null_edit_maps_needed(&d.0);
    let mut maps = std::collections::HashMap::new();
    for (k, &i) in needed.iter().enumerate() {
        progress.set((k, needed.len()));
        let index = d.0[i].index;
        let m = fetch::get_json::<crate::study::MapPayload>(&crate::api::Endpoint::Map { run: run.clone(), index })
            .await
            .map_err(|e| format!("could not load the map of record {index}: {e}"))?;
        let map = radlens_shared::AttentionMap::new(m.h, m.w, m.values).map_err(|e| format!("the map of record {index}: {e}"))?;
        maps.insert(i, map);
    }
    progress.set((needed.len(), needed.len()));
    NullEditFlags::of(&d.0, |i| maps.get(&i)).map(Arc::new)
}

/// `/runs/:id/records`: every record of the run, filtered and sorted in the browser.
#[component]
pub fn RecordsPage() -> impl IntoView {
    let id = run_id();
    let state = RwSignal::new(ExplorerState::from_query(&location_search()));
    let data: LocalResource<Loaded> = LocalResource::new(move || {
        let id = id();
        async move {
            let recs = fetch::all_records(&id).await?;
            let eps = fetch::run_summary(&id).await?.near_tie_eps;
            let d = Derived::of(&recs);
            let facts = RunFacts::of(&recs, eps);
            Ok(Arc::new((recs, d, facts)))
        }
    });
    let update = move |f: &dyn Fn(&mut ExplorerState)| {
        state.update(|s| f(s));
        replace_query(&state.with_untracked(|s| s.to_query()));
    };
    let copied = RwSignal::new(String::new());
    let copy_link = move |_| {
        let href = location_href();
        if let Some(w) = web_sys::window() {
            let p = w.navigator().clipboard().write_text(&href);
            wasm_bindgen_futures::spawn_local(async move {
                match wasm_bindgen_futures::JsFuture::from(p).await {
                    Ok(_) => copied.set("Link copied.".into()),
                    Err(e) => copied.set(format!("Could not copy ({e:?}); the link is in the address bar.")),
                }
            });
        }
    };

    view! {
        <SiteHeader title=format!("Records of run {}", id()) />
        <main class="page records-page">
            <nav class="subnav">
                <A href=move || href(&format!("/runs/{}", enc(&id())))>"Overview"</A>
                <ShareButton run=id() />
            </nav>
            {move || state.with(|s| s.error.clone()).map(|e| view! {
                <div class="error" role="alert">"The link's filter could not be read: " {e}</div>
            })}
            {move || match data.get() {
                None => loading("the records"),
                Some(Err(e)) => error_view("the records", &e),
                Some(Ok(d)) => explorer(id, d, state, update, copy_link, copied),
            }}
        </main>
    }
}

fn opt_str(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

fn explorer(
    id: impl Fn() -> String + Copy + Send + Sync + 'static,
    d: Arc<(Vec<ApiRecord>, Derived, RunFacts)>,
    state: RwSignal<ExplorerState>,
    update: impl Fn(&dyn Fn(&mut ExplorerState)) + Copy + Send + Sync + 'static,
    copy_link: impl Fn(leptos::ev::MouseEvent) + Copy + 'static,
    copied: RwSignal<String>,
) -> AnyView {
    let models = distinct(&d.0, |r| Some(r.model.clone()));
    let strategies = distinct(&d.0, |r| Some(r.strategy.clone()));
    let findings = distinct(&d.0, |r| r.finding.clone());
    let passes = passes_present(&d.0);
    let eps = d.2.near_tie_eps();
    let total = d.0.len();
    // The null-edit view, computed the first time the filter is set (it fetches maps).
    let nulls: RwSignal<Nulls> = RwSignal::new(None);
    let null_progress = RwSignal::new((0usize, 0usize));
    {
        let d = d.clone();
        Effect::new(move |started: Option<bool>| {
            let wanted = state.with(|s| s.null_edit_moves.is_some());
            if started == Some(true) || !wanted {
                return started.unwrap_or(false);
            }
            let (run, d) = (id(), d.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let out = null_edit_view(run, d, null_progress).await;
                nulls.set(Some(out));
            });
            true
        });
    }
    // Whether the count is final: the null-edit filter waits for its view.
    let ready = move || state.with(|s| s.null_edit_moves.is_none()) || matches!(nulls.with(|n| n.as_ref().map(Result::is_ok)), Some(true));
    let d2 = d.clone();
    let selected = Memo::new(move |_| {
        nulls.with(|n| {
            let empty = NullEditFlags::default();
            let flags = match n {
                Some(Ok(f)) => &**f,
                _ => &empty,
            };
            state.with(|s| select(&d2.0, &d2.1, &d2.2, flags, s))
        })
    });

    let select_box = move |label: &'static str,
                           key: &'static str,
                           options: Vec<String>,
                           get: fn(&ExplorerState) -> Option<String>,
                           set: fn(&mut ExplorerState, Option<String>)| {
        view! {
            <label class="field">
                <span>{label}</span>
                <select
                    id=format!("f-{key}")
                    prop:value=move || state.with(|s| get(s).unwrap_or_default())
                    on:change=move |ev| {
                        let v = opt_str(&event_target_value(&ev));
                        update(&|s| { set(s, v.clone()); s.page = 0; });
                    }
                >
                    <option value="">"any"</option>
                    {options.into_iter().map(|o| view! { <option value=o.clone()>{o.clone()}</option> }).collect_view()}
                </select>
            </label>
        }
    };
    let flag_box = move |label: &'static str,
                         key: &'static str,
                         title: Option<&'static str>,
                         get: fn(&ExplorerState) -> Option<bool>,
                         set: fn(&mut ExplorerState, Option<bool>)| {
        view! {
            <label class="field" title=title>
                <span>{label}</span>
                <select
                    id=format!("f-{key}")
                    prop:value=move || state.with(|s| get(s).map(|b| b.to_string()).unwrap_or_default())
                    on:change=move |ev| {
                        let v = event_target_value(&ev).parse::<bool>().ok();
                        update(&|s| { set(s, v); s.page = 0; });
                    }
                >
                    <option value="">"any"</option>
                    <option value="true">"yes"</option>
                    <option value="false">"no"</option>
                </select>
            </label>
        }
    };
    let num_box =
        move |label: &'static str, key: &'static str, get: fn(&ExplorerState) -> Option<f64>, set: fn(&mut ExplorerState, Option<f64>)| {
            view! {
                <label class="field narrow">
                    <span>{label}</span>
                    <input
                        type="number"
                        step="0.05"
                        id=format!("f-{key}")
                        prop:value=move || state.with(|s| get(s).map(|v| v.to_string()).unwrap_or_default())
                        on:change=move |ev| {
                            let v = event_target_value(&ev).trim().parse::<f64>().ok().filter(|x| x.is_finite());
                            update(&|s| { set(s, v); s.page = 0; });
                        }
                    />
                </label>
            }
        };
    let check = move |label: &'static str, key: &'static str, get: fn(&ExplorerState) -> bool, set: fn(&mut ExplorerState, bool)| {
        view! {
            <label class="check">
                <input
                    type="checkbox"
                    id=format!("f-{key}")
                    prop:checked=move || state.with(get)
                    on:change=move |ev| {
                        let v = event_target_checked(&ev);
                        update(&|s| { set(s, v); s.page = 0; });
                    }
                />
                <span>{label}</span>
            </label>
        }
    };

    let header = move |key: SortKey, label: &'static str| {
        let mark = move || state.with(|s| if s.sort == key { if s.desc { " ▼" } else { " ▲" } } else { "" });
        view! {
            <th>
                <button type="button" class="sort" data-sort=key.key() on:click=move |_| update(&|s| s.toggle_sort(key))>
                    {label}{mark}
                </button>
            </th>
        }
    };

    let rows = {
        let d = d.clone();
        move || {
            let page = state.with(|s| s.page);
            selected.with(|sel| {
                sel.iter()
                    .skip(page * PAGE_SIZE)
                    .take(PAGE_SIZE)
                    .map(|&i| {
                        let r = &d.0[i];
                        let rec = &r.record;
                        let study_href = href(&study_path(&id(), &rec.study_id));
                        let sample = rec.sample_id.clone();
                        let fmt_ans = |a: Option<radlens_shared::answer::Answer>| a.map(|a| a.as_str().to_owned()).unwrap_or_else(|| "—".into());
                        view! {
                            <tr data-index=r.index.to_string() class:error-row=rec.error.is_some()>
                                <td class="num">{r.index}</td>
                                <td><A href=study_href>{sample}</A></td>
                                <td>{rec.model.clone()}</td>
                                <td>{rec.pass.label()}</td>
                                <td>{rec.strategy.clone()}</td>
                                <td>{rec.finding.clone().unwrap_or_default()}</td>
                                <td class="question">{rec.question.clone()}</td>
                                <td>{fmt_ans(rec.parsed_answer)}</td>
                                <td>{fmt_ans(rec.ground_truth)}</td>
                                <td>{match rec.correct { Some(true) => "✓", Some(false) => "✗", None => "—" }}</td>
                                <td class="num">
                                    {rec.yes_no_margin.map(|m| format!("{m:.2}")).unwrap_or_else(|| "—".into())}
                                    {(radlens_shared::filter::near_tie(rec, eps) == Some(true)).then(|| near_tie_badge(eps))}
                                </td>
                                <td class="num">{rec.map.as_ref().map(|m| format!("{:.3}", m.metrics.focus)).unwrap_or_else(|| "—".into())}</td>
                                <td>
                                    {d.1.flipped[i].then_some("flipped")}
                                    {d.1.disagree[i].then_some(" disagree")}
                                    {(radlens_shared::filter::beats_controls(rec) == Some(true)).then_some(" beats controls")}
                                    {nulls.with(|n| matches!(n, Some(Ok(f)) if f.flag(i) == Some(true))).then_some(" moves under a null edit")}
                                    {rec.error.as_ref().map(|e| format!(" error: {}", e.message))}
                                </td>
                            </tr>
                        }
                    })
                    .collect_view()
            })
        }
    };

    let count = move || selected.with(|s| s.len());
    let pages = move || page_count(count());
    // The last download's object URL: revoked when the next one is made or the page goes,
    // not at once, since the browser may still be reading it.
    let last_download = StoredValue::new(None::<String>);
    on_cleanup(move || {
        if let Some(url) = last_download.get_value() {
            let _ = web_sys::Url::revoke_object_url(&url);
        }
    });
    let download_status = RwSignal::new(String::new());
    let download_csv = {
        let d = d.clone();
        move |_| {
            let text = selected.with(|sel| to_csv(&d.0, &d.1, sel));
            let name = state.with_untracked(|s| csv_filename(&id(), s));
            match save_text_file(&name, &text, "text/csv;charset=utf-8") {
                Ok(url) => {
                    if let Some(old) = last_download.get_value() {
                        let _ = web_sys::Url::revoke_object_url(&old);
                    }
                    last_download.set_value(Some(url));
                    download_status.set(String::new());
                }
                Err(e) => download_status.set(format!("Could not make the CSV: {e:?}")),
            }
        }
    };
    view! {
        <section class="panel filters" aria-label="Filters">
            <div class="filter-grid">
                {select_box("Model", "model", models, |s| s.filter.model.clone(), |s, v| s.filter.model = v)}
                {select_box("Strategy", "strategy", strategies, |s| s.filter.strategy.clone(), |s, v| s.filter.strategy = v)}
                {select_box("Finding", "finding", findings, |s| s.filter.finding.clone(), |s, v| s.filter.finding = v)}
                <label class="field">
                    <span>"Pass"</span>
                    <select
                        id="f-pass"
                        prop:value=move || state.with(|s| s.filter.pass.map(|p| p.name().to_owned()).unwrap_or_default())
                        on:change=move |ev| {
                            let v = radlens_shared::record::Pass::from_name(&event_target_value(&ev));
                            update(&|s| { s.filter.pass = v; s.page = 0; });
                        }
                    >
                        <option value="">"any"</option>
                        {passes.iter().map(|p| view! { <option value=p.name()>{p.label()}</option> }).collect_view()}
                    </select>
                </label>
                {flag_box("Correct", "correct", None, |s| s.filter.correct, |s, v| s.filter.correct = v)}
                {flag_box("Error", "error", None, |s| s.filter.error, |s, v| s.filter.error = v)}
                <label class="field wide">
                    <span>"Search"</span>
                    <input
                        type="search"
                        id="f-q"
                        placeholder="question, answer, sample…"
                        prop:value=move || state.with(|s| s.filter.text.clone().unwrap_or_default())
                        on:input=move |ev| {
                            let v = opt_str(&event_target_value(&ev));
                            update(&|s| { s.filter.text = v.clone(); s.page = 0; });
                        }
                    />
                </label>
                {num_box("Focus ≥", "focus_min", |s| s.filter.focus.min, |s, v| s.filter.focus.min = v)}
                {num_box("Focus ≤", "focus_max", |s| s.filter.focus.max, |s, v| s.filter.focus.max = v)}
                {check("Flipped vs base", "flipped", |s| s.flipped, |s, v| s.flipped = v)}
                {check("Models disagree", "disagree", |s| s.disagree, |s, v| s.disagree = v)}
                {flag_box(
                    "Map beats controls",
                    "beats-controls",
                    Some(crate::grounding::meaning(crate::grounding::Figure::BeatsControlsFilter)),
                    |s| s.filter.beats_controls,
                    |s, v| s.filter.beats_controls = v,
                )}
                {flag_box(
                    "Same answer on a blank image",
                    "blank-same",
                    Some(crate::conditions::BLANK_SAME_MEANING),
                    |s| s.filter.blank_same,
                    |s, v| s.filter.blank_same = v,
                )}
                {flag_box(
                    "Near tie",
                    "near-tie",
                    Some(crate::conditions::NEAR_TIE_FILTER_MEANING),
                    |s| s.filter.near_tie,
                    |s, v| s.filter.near_tie = v,
                )}
                {flag_box(
                    "Map moves more under a null edit than under rewording",
                    "null-edit",
                    Some(crate::grounding::meaning(crate::grounding::Figure::NullEditFilter)),
                    |s| s.null_edit_moves,
                    |s, v| s.null_edit_moves = v,
                )}
            </div>
            <div class="actions">
                <span
                    class="count"
                    id="match-count"
                    data-count=move || if ready() { count().to_string() } else { String::new() }
                    data-total=total.to_string()
                >
                    {move || match (ready(), nulls.get()) {
                        (true, _) => format!("{} of {} records", count(), total),
                        (false, Some(Err(e))) => format!("The null-edit view could not be computed: {e}"),
                        (false, _) => {
                            let (k, n) = null_progress.get();
                            format!("measuring the null-edit view (map {k} of {n})…")
                        }
                    }}
                </span>
                <button type="button" id="clear" on:click=move |_| update(&|s| *s = ExplorerState::default())>"Clear filters"</button>
                <button type="button" id="copy-link" on:click=copy_link>"Copy link"</button>
                <button type="button" id="download-csv" on:click=download_csv disabled=move || !ready()>
                    {move || csv_button_label(count())}
                </button>
                <span class="copied" role="status">{move || copied.get()}</span>
                <span class="copied" role="status" id="download-status">{move || download_status.get()}</span>
            </div>
        </section>
        <section class="panel">
            <div class="pager">
                <button type="button" id="prev" disabled=move || state.with(|s| s.page == 0) on:click=move |_| update(&|s| s.page = s.page.saturating_sub(1))>"← Prev"</button>
                <span id="page-label">{move || format!("page {} of {}", state.with(|s| s.page) + 1, pages())}</span>
                <button type="button" id="next" disabled=move || state.with(|s| s.page + 1 >= page_count(selected.with(|x| x.len()))) on:click=move |_| update(&|s| s.page += 1)>"Next →"</button>
            </div>
            <div class="table-wrap">
                <table class="data records" id="records">
                    <thead>
                        <tr>
                            {header(SortKey::Index, "#")}
                            {header(SortKey::SampleId, "Sample")}
                            {header(SortKey::Model, "Model")}
                            <th>"Pass"</th>
                            {header(SortKey::Strategy, "Strategy")}
                            <th>"Finding"</th>
                            <th>"Question"</th>
                            <th>"Answer"</th>
                            <th>"Truth"</th>
                            {header(SortKey::Correct, "Correct")}
                            {header(SortKey::Margin, "Margin")}
                            {header(SortKey::Focus, "Focus")}
                            <th>"Notes"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}
