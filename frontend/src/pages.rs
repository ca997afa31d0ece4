//! The dashboard's pages over the radlens API (wasm32 only): the runs list, a run's overview and
//! its records explorer. Data comes from typed fetches ([`crate::fetch`]); every API error is
//! shown as text. The explorer keeps its whole state in the URL query, rewritten with
//! `history.replaceState` (no history entry per keystroke, no scrolling; web README F7).

use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use wasm_bindgen::JsValue;

use crate::api::{ApiError, ApiRecord, Endpoint, RunList};
use crate::explorer::{Derived, ExplorerState, PAGE_SIZE, SortKey, csv_button_label, csv_filename, distinct, page_count, select, to_csv};
use crate::fetch::{self, enc};
use crate::overview::{HEADLINE_COLUMNS, ci_label, format_interval, headline};
use crate::site::href;
use crate::url_state::study_path;
use radlens_shared::record::{Analysis, Pass};

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

fn loading(what: &str) -> AnyView {
    view! { <p class="loading-inline" role="status">{format!("Loading {what}…")}</p> }.into_any()
}

fn random_banner() -> AnyView {
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

/// `/`: the runs under `--runs`. A share link lands here as `/?run=ID#VIEW` and is sent on to
/// the view (inside that run only, see [`crate::api::share_target`]).
#[component]
pub fn RunsPage() -> impl IntoView {
    let shared_run = crate::url_state::parse_query(&location_search()).into_iter().find(|(k, _)| k == "run").map(|(_, v)| v);
    if let Some(run) = shared_run {
        let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
        let target = crate::api::share_target(&run, &hash);
        let navigate = leptos_router::hooks::use_navigate();
        request_animation_frame(move || navigate(&target, leptos_router::NavigateOptions { replace: true, ..Default::default() }));
    }
    let runs = LocalResource::new(|| fetch::get_json::<RunList>(&Endpoint::Runs));
    view! {
        <SiteHeader title="Runs" />
        <main class="page runs-page">
            {move || match runs.get() {
                None => loading("the runs"),
                Some(Err(e)) => error_view("the runs", &e),
                Some(Ok(list)) if list.runs.is_empty() => {
                    view! { <p class="empty">"No runs yet. Start one with `radlens study --out <runs>/<name>`."</p> }.into_any()
                }
                Some(Ok(list)) => view! {
                    <table class="data runs-table" id="runs">
                        <thead>
                            <tr>
                                <th>"Run"</th>
                                <th>"Models"</th>
                                <th class="num" title="Studies in the study CSV">"Studies in CSV"</th>
                                <th class="num" title="Rows (study variants) this run plans per model">"Rows planned"</th>
                                <th>"Updated"</th>
                                <th>"Analysis"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {list
                                .runs
                                .into_iter()
                                .map(|r| {
                                    let href = href(&format!("/runs/{}", enc(&r.id)));
                                    let label = r.id.clone();
                                    view! {
                                        <tr data-run=r.id.clone()>
                                            <td>
                                                <A href=href>{label}</A>
                                                {r.random_weights.then(|| view! {
                                                    <span class="badge warning" data-testid="random-weights-badge" title="Some model of this run has random weights">"random weights"</span>
                                                })}
                                            </td>
                                            <td>{r.models.join(", ")}</td>
                                            <td class="num">{r.studies}</td>
                                            <td class="num">{r.rows}</td>
                                            <td>{r.updated.clone()}</td>
                                            <td>{if r.has_analysis { "yes" } else { "not yet (radlens report)" }}</td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                }
                .into_any(),
            }}
        </main>
    }
}

fn run_id() -> impl Fn() -> String + Copy + Send + Sync + 'static {
    let params = use_params_map();
    move || params.read().get("id").unwrap_or_default()
}

/// `/runs/:id`: the per-model headline table of `analysis.json`.
#[component]
pub fn OverviewPage() -> impl IntoView {
    let id = run_id();
    let analysis = LocalResource::new(move || {
        let id = id();
        async move { fetch::get_json::<Analysis>(&Endpoint::Analysis { run: id }).await }
    });
    let forest_ref = NodeRef::<leptos::html::Canvas>::new();
    let forest_drawn = RwSignal::new(false);
    Effect::new(move |_| {
        let Some(Ok(a)) = analysis.get() else { return };
        let Some(canvas) = forest_ref.get() else {
            return;
        };
        match draw_forest(canvas, &crate::overview::forest_rows(&a)) {
            Ok(()) => forest_drawn.set(true),
            Err(e) => leptos::logging::error!("could not draw the interval plot: {e}"),
        }
    });
    view! {
        <SiteHeader title=Signal::derive(move || format!("Run {}", id())).get_untracked() />
        <main class="page overview-page">
            <nav class="subnav">
                <A href=move || href(&format!("/runs/{}/records", enc(&id())))>"Records explorer"</A>
                <ShareButton run=id() />
            </nav>
            {move || match analysis.get() {
                None => loading("the analysis"),
                Some(Err(e)) => error_view("the analysis", &e),
                Some(Ok(a)) => view! {
                    {overview_table(&a, forest_ref, forest_drawn)}
                    {group_plots_view(&a)}
                    {trust_view(&a)}
                    {comparisons_table(&a)}
                    {disagreements_table(&id(), &a)}
                    {study_links(&id(), &a)}
                }
                .into_any(),
            }}
        </main>
    }
}

/// Accuracy and flip rate per strategy and per finding, one whisker per model.
fn group_plots_view(a: &Analysis) -> AnyView {
    let plots = crate::overview::group_plots(a);
    view! {
        <section class="panel" id="group-plots">
            <h2>"By question strategy and by finding"</h2>
            <p class="lede">"Estimate (dot) and interval (whisker) per model; a missing whisker means too few rows for that group."</p>
            <div class="group-plots">
                {plots.into_iter().map(|p| view! { <GroupPlotCanvas plot=p /> }).collect_view()}
            </div>
        </section>
    }
    .into_any()
}

#[component]
fn GroupPlotCanvas(plot: crate::overview::GroupPlot) -> impl IntoView {
    let canvas_ref = NodeRef::<leptos::html::Canvas>::new();
    let drawn = RwSignal::new(false);
    let (id, title, n) = (plot.id, plot.title.clone(), plot.points.len());
    let empty = plot.points.is_empty();
    Effect::new(move |_| {
        let Some(canvas) = canvas_ref.get() else { return };
        match draw_group_plot(canvas, &plot) {
            Ok(()) => drawn.set(true),
            Err(e) => leptos::logging::error!("could not draw {}: {e}", plot.id),
        }
    });
    view! {
        <figure class="group-plot">
            <figcaption>{title.clone()}</figcaption>
            {empty.then(|| view! { <p class="muted">"No intervals for this breakdown (the CSV names no strategy or finding, or too few rows)."</p> })}
            <canvas
                node_ref=canvas_ref
                id=id
                width="440"
                height="240"
                data-points=n.to_string()
                data-drawn=move || drawn.get().to_string()
                role="img"
                aria-label=title
            ></canvas>
        </figure>
    }
}

/// The trust checks of the run (`--gradcam`, `--faithfulness`, `--sinks`): how far the methods'
/// maps are apart, how often a map's top cells move the answer no more than random cells, and
/// the attention sinks, each as `analysis.json` summarises it. Nothing when no check was made.
fn trust_view(a: &Analysis) -> Option<AnyView> {
    use crate::methods::method_label;
    let t = crate::overview::trust_tables(a);
    if t.models.is_empty() {
        return None;
    }
    let ci = ci_label(a);
    let f3 = |v: f64| format!("{v:.3}");
    let opt3 = |v: Option<&radlens_shared::record::Summary>| v.map(|s| format!("{:.3}", s.mean)).unwrap_or_else(|| "—".into());
    Some(
        view! {
            <section class="panel" id="trust">
                <h2>"Can the maps be trusted?"</h2>
                <p class="lede">
                    {t.models.iter().map(|(m, s)| format!(
                        "{m}: {} records checked, {} with a fallback map (Grad-CAM or uniform, labelled), {} with a check that could not be made.",
                        s.records, s.fallbacks, s.records_with_notes
                    )).collect::<Vec<_>>().join(" ")}
                </p>
                {(!t.agreement.is_empty()).then(|| view! {
                    <h3>"Method agreement"</h3>
                    <div class="table-wrap">
                    <table class="data" id="trust-agreement">
                        <thead><tr>
                            <th>"Model"</th><th>"Map"</th><th>"Map"</th><th class="num">"Rows"</th>
                            <th class="num">{format!("Mean JS distance, bits ({ci})")}</th>
                            <th class="num">"Median"</th>
                        </tr></thead>
                        <tbody>
                            {t.agreement.iter().map(|(m, r)| view! {
                                <tr data-model=m.to_string() data-a=r.a.to_string() data-b=r.b.to_string()>
                                    <td>{m.to_string()}</td><td>{method_label(r.a)}</td><td>{method_label(r.b)}</td>
                                    <td class="num">{r.rows}</td>
                                    <td class="num">{format_interval(r.mean_js_distance.as_ref())}</td>
                                    <td class="num">{f3(r.js_distance.median)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                })}
                {(!t.faithfulness.is_empty()).then(|| view! {
                    <h3>"Faithfulness (deletion test)"</h3>
                    <p class="muted">"Flagged: deleting the map's top k% cells moved the yes/no margin no more than deleting as many random cells."</p>
                    <div class="table-wrap">
                    <table class="data" id="trust-faithfulness">
                        <thead><tr>
                            <th>"Model"</th><th>"Map"</th><th class="num">"k"</th><th class="num">"Rows"</th>
                            <th class="num">"Flagged"</th><th class="num">{format!("Flag rate ({ci})")}</th>
                            <th class="num">"Mean Δtop"</th><th class="num">"Mean Δrandom"</th>
                        </tr></thead>
                        <tbody>
                            {t.faithfulness.iter().map(|(m, r)| view! {
                                <tr data-model=m.to_string() data-method=r.method.to_string() data-k=r.k_percent.to_string()
                                    data-flagged=r.flagged.to_string() data-rate=r.flag_rate.as_ref().map(|i| i.estimate.to_string())>
                                    <td>{m.to_string()}</td><td>{method_label(r.method)}</td>
                                    <td class="num">{format!("{}%", r.k_percent)}</td>
                                    <td class="num">{r.rows}</td><td class="num">{r.flagged}</td>
                                    <td class="num">{format_interval(r.flag_rate.as_ref())}</td>
                                    <td class="num">{format!("{:+.3}", r.delta_top.mean)}</td>
                                    <td class="num">{format!("{:+.3}", r.delta_random.mean)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                })}
                {(!t.sinks.is_empty()).then(|| view! {
                    <h3>"Attention sinks"</h3>
                    <div class="table-wrap">
                    <table class="data" id="trust-sinks">
                        <thead><tr>
                            <th>"Model"</th><th class="num">"Studies with sinks"</th><th class="num">"Mean sink cells per study"</th>
                            <th class="num">"Mean mass on sinks"</th><th class="num">"Mean focus"</th><th class="num">"Mean focus without sinks"</th>
                        </tr></thead>
                        <tbody>
                            {t.sinks.iter().map(|(m, s)| view! {
                                <tr data-model=m.to_string() data-studies=s.studies.to_string() data-with-sinks=s.studies_with_sinks.to_string()>
                                    <td>{m.to_string()}</td>
                                    <td class="num">{format!("{} / {}", s.studies_with_sinks, s.studies)}</td>
                                    <td class="num">{f3(s.cells.mean)}</td>
                                    <td class="num">{f3(s.mass.mean)}</td>
                                    <td class="num">{opt3(s.focus.as_ref())}</td>
                                    <td class="num">{opt3(s.focus_without.as_ref())}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                })}
            </section>
        }
        .into_any(),
    )
}

/// Every pair of models on the rows both answered: accuracies, the difference with its
/// interval, and McNemar (clustered and exact).
fn comparisons_table(a: &Analysis) -> AnyView {
    use crate::overview::format_p;
    let ci = ci_label(a);
    let f3 = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
    view! {
        <section class="panel">
            <h2>"Paired model comparisons"</h2>
            {if a.comparisons.is_empty() {
                view! { <p class="muted">"One model only: nothing to pair."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                    <table class="data" id="comparisons">
                        <thead><tr>
                            <th>"Model A"</th><th>"Model B"</th>
                            <th class="num">"Paired rows"</th><th class="num">"Studies"</th>
                            <th class="num">"Accuracy A"</th><th class="num">"Accuracy B"</th>
                            <th class="num">{format!("A − B ({ci})")}</th>
                            <th class="num" title="Rows A answered right and B wrong">"A only right"</th>
                            <th class="num" title="Rows B answered right and A wrong">"B only right"</th>
                            <th class="num" title="Durkalski's clustered McNemar">"p (clustered)"</th>
                            <th class="num" title="Exact McNemar, ignores clustering">"p (exact)"</th>
                        </tr></thead>
                        <tbody>
                            {a.comparisons.iter().map(|c| view! {
                                <tr data-a=c.model_a.clone() data-b=c.model_b.clone()
                                    data-diff=c.accuracy_difference.as_ref().map(|i| i.estimate.to_string())>
                                    <td>{c.model_a.clone()}</td><td>{c.model_b.clone()}</td>
                                    <td class="num">{c.rows}</td><td class="num">{c.studies}</td>
                                    <td class="num">{f3(c.accuracy_a)}</td><td class="num">{f3(c.accuracy_b)}</td>
                                    <td class="num">{format_interval(c.accuracy_difference.as_ref())}</td>
                                    <td class="num">{c.mcnemar.b}</td><td class="num">{c.mcnemar.c}</td>
                                    <td class="num">{format_p(c.mcnemar.p_clustered)}</td>
                                    <td class="num">{format_p(c.mcnemar.p_exact)}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

/// The studies where the models answered some variant differently, most disagreeing first,
/// each linking to its study view.
fn disagreements_table(run: &str, a: &Analysis) -> AnyView {
    let rows: Vec<_> = a.disagreements.iter().filter(|d| d.answer_disagreements > 0).cloned().collect();
    let run = run.to_owned();
    view! {
        <section class="panel">
            <h2>{format!("Where the models disagree ({} {})", rows.len(), if rows.len() == 1 { "study" } else { "studies" })}</h2>
            {if rows.is_empty() {
                view! { <p class="muted">"No study where two models answered a variant differently."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                    <table class="data" id="disagreements">
                        <thead><tr>
                            <th>"Study"</th><th>"Finding"</th>
                            <th class="num" title="Variants two models answered differently">"Variants in disagreement"</th>
                            <th class="num" title="Flips vs the base question, summed over the models">"Flips"</th>
                            <th class="num" title="Mean cross-model JS distance of the maps (bits)">"Map JS distance"</th>
                        </tr></thead>
                        <tbody>
                            {rows.into_iter().map(|d| {
                                let link = href(&study_path(&run, &d.study_id));
                                let (key, label) = (d.study_id.clone(), d.study_id.clone());
                                view! {
                                    <tr data-study=key>
                                        <td><A href=link>{label}</A></td>
                                        <td>{d.finding.clone().unwrap_or_default()}</td>
                                        <td class="num">{d.answer_disagreements}</td>
                                        <td class="num">{d.flips}</td>
                                        <td class="num">{d.mean_js_distance.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into())}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

/// Links to each study's case view, with its finding.
fn study_links(run: &str, a: &Analysis) -> AnyView {
    let mut seen = std::collections::BTreeMap::new();
    for st in &a.studies {
        seen.entry(st.study_id.clone()).or_insert_with(|| st.finding.clone());
    }
    let run = run.to_owned();
    view! {
        <section class="panel">
            <h2>{format!("Studies ({})", seen.len())}</h2>
            <ul class="study-links" id="study-links">
                {seen
                    .into_iter()
                    .map(|(study, finding)| {
                        let href = href(&study_path(&run, &study));
                        let label = match finding {
                            Some(f) => format!("{study} ({f})"),
                            None => study.clone(),
                        };
                        view! { <li><A href=href>{label}</A></li> }
                    })
                    .collect_view()}
            </ul>
        </section>
    }
    .into_any()
}

fn overview_table(a: &Analysis, forest_ref: NodeRef<leptos::html::Canvas>, forest_drawn: RwSignal<bool>) -> AnyView {
    let ci = ci_label(a);
    view! {
        {a.random_weights.then(random_banner)}
        <section class="panel">
            <h2>"Headline per model"</h2>
            <p class="lede">
                {format!(
                    "Estimate and {ci} (study-clustered bootstrap, B = {}). {} records read.",
                    a.bootstrap.resamples, a.records.read
                )}
            </p>
            <table class="data headline" id="headline">
                <thead>
                    <tr>
                        <th>"Model"</th>
                        <th class="num">"Answered"</th>
                        {HEADLINE_COLUMNS
                            .iter()
                            .map(|(_, label)| view! { <th class="num">{format!("{label} ({ci})")}</th> })
                            .collect_view()}
                    </tr>
                </thead>
                <tbody>
                    {a.models
                        .iter()
                        .map(|m| {
                            view! {
                                <tr data-model=m.model.clone()>
                                    <th scope="row">
                                        {m.model.clone()}
                                        {m.random_weights.then(|| view! { <span class="badge warning">"random weights"</span> })}
                                    </th>
                                    <td class="num">{format!("{} / {}", m.answered, m.rows)}</td>
                                    {HEADLINE_COLUMNS
                                        .iter()
                                        .map(|(key, _)| {
                                            let i = headline(m, key);
                                            view! {
                                                <td
                                                    class="num"
                                                    data-col=*key
                                                    data-estimate=i.as_ref().map(|i| i.estimate.to_string())
                                                    data-lo=i.as_ref().map(|i| i.lo.to_string())
                                                    data-hi=i.as_ref().map(|i| i.hi.to_string())
                                                >
                                                    {format_interval(i.as_ref())}
                                                </td>
                                            }
                                        })
                                        .collect_view()}
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
            <h2 class="section-gap">"Intervals"</h2>
            <canvas
                node_ref=forest_ref
                id="forest"
                width="900"
                height="200"
                data-drawn=move || forest_drawn.get().to_string()
                role="img"
                aria-label="Estimates with their bootstrap intervals, per model and measure"
            ></canvas>
            {(!a.notes.is_empty()).then(|| view! {
                <details class="notes">
                    <summary>{format!("{} notes", a.notes.len())}</summary>
                    <ul>{a.notes.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view()}</ul>
                </details>
            })}
        </section>
    }
    .into_any()
}

fn location_search() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

fn location_href() -> String {
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

type Loaded = Result<Arc<(Vec<ApiRecord>, Derived)>, ApiError>;

/// `/runs/:id/records`: every record of the run, filtered and sorted in the browser.
#[component]
pub fn RecordsPage() -> impl IntoView {
    let id = run_id();
    let state = RwSignal::new(ExplorerState::from_query(&location_search()));
    let data: LocalResource<Loaded> = LocalResource::new(move || {
        let id = id();
        async move {
            let recs = fetch::all_records(&id).await?;
            let d = Derived::of(&recs);
            Ok(Arc::new((recs, d)))
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
    d: Arc<(Vec<ApiRecord>, Derived)>,
    state: RwSignal<ExplorerState>,
    update: impl Fn(&dyn Fn(&mut ExplorerState)) + Copy + Send + Sync + 'static,
    copy_link: impl Fn(leptos::ev::MouseEvent) + Copy + 'static,
    copied: RwSignal<String>,
) -> AnyView {
    let models = distinct(&d.0, |r| Some(r.model.clone()));
    let strategies = distinct(&d.0, |r| Some(r.strategy.clone()));
    let findings = distinct(&d.0, |r| r.finding.clone());
    let total = d.0.len();
    let d2 = d.clone();
    let selected = Memo::new(move |_| state.with(|s| select(&d2.0, &d2.1, s)));

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
                         get: fn(&ExplorerState) -> Option<bool>,
                         set: fn(&mut ExplorerState, Option<bool>)| {
        view! {
            <label class="field">
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
                                <td>{match rec.pass { Pass::Image => "image", Pass::BlankImage => "blank image" }}</td>
                                <td>{rec.strategy.clone()}</td>
                                <td>{rec.finding.clone().unwrap_or_default()}</td>
                                <td class="question">{rec.question.clone()}</td>
                                <td>{fmt_ans(rec.parsed_answer)}</td>
                                <td>{fmt_ans(rec.ground_truth)}</td>
                                <td>{match rec.correct { Some(true) => "✓", Some(false) => "✗", None => "—" }}</td>
                                <td class="num">{rec.yes_no_margin.map(|m| format!("{m:.2}")).unwrap_or_else(|| "—".into())}</td>
                                <td class="num">{rec.map.as_ref().map(|m| format!("{:.3}", m.metrics.focus)).unwrap_or_else(|| "—".into())}</td>
                                <td>{d.1.flipped[i].then_some("flipped")}{d.1.disagree[i].then_some(" disagree")}{rec.error.as_ref().map(|e| format!(" error: {}", e.message))}</td>
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
                {flag_box("Correct", "correct", |s| s.filter.correct, |s, v| s.filter.correct = v)}
                {flag_box("Error", "error", |s| s.filter.error, |s, v| s.filter.error = v)}
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
            </div>
            <div class="actions">
                <span class="count" id="match-count" data-count=move || count().to_string() data-total=total.to_string()>
                    {move || format!("{} of {} records", count(), total)}
                </span>
                <button type="button" id="clear" on:click=move |_| update(&|s| *s = ExplorerState::default())>"Clear filters"</button>
                <button type="button" id="copy-link" on:click=copy_link>"Copy link"</button>
                <button type="button" id="download-csv" on:click=download_csv>
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

/// Hands `text` to the browser as a file download named `name`: a Blob behind an object URL,
/// clicked through a temporary `<a download>` (no server involved, so a static export can do it
/// too). Returns the object URL, which the caller revokes once it is no longer needed.
fn save_text_file(name: &str, text: &str, mime: &str) -> Result<String, JsValue> {
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
                <span class="help">"scaled to each map's hottest cell (or the clip percentile); the map covers the part of the image the model saw"</span>
            </section>
            {move || match records.get() {
                None => loading("the study"),
                Some(Err(e)) => error_view("the study", &e),
                Some(Ok(page)) if page.records.is_empty() => view! {
                    <p class="error" role="alert">"This run has no image-pass records for this study."</p>
                }.into_any(),
                Some(Ok(page)) => study_grid(id(), page.records, opts, refuse_opts, cmp),
            }}
        </main>
    }
}

/// Writes the study view's whole state into the URL query (replaceState).
fn write_study_query(opts: RwSignal<crate::study::OverlayOpts>, refuse_opts: RwSignal<crate::study::RefuseOpts>) {
    let mut pairs = opts.get_untracked().query_pairs();
    pairs.extend(refuse_opts.get_untracked().query_pairs());
    // The pin and the difference toggles are written by their own controls; keep them.
    let kept = crate::url_state::parse_query(&location_search()).into_iter().filter(|(k, _)| k == "pin" || k == "diff");
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
) -> AnyView {
    let (models, rows) = crate::study::grid(&records);
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
                                Some(r) => case_card(run.clone(), r, opacity, refuse_opts, cmp).into_any(),
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
fn set_query_key(key: &str, value: Option<String>) {
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
    // The values drawn right now (stored, re-fused or the difference map), for the hover line.
    let displayed = RwSignal::new(None::<Vec<f64>>);
    Effect::new(move |_| {
        let a = opacity.get();
        let Some(Some(Ok(mut m))) = map.get() else {
            return;
        };
        let Some(values) = shown.get() else { return };
        m.values = values;
        let mut is_diff = false;
        if diff_on.get()
            && let Some(d) = pinned_map.get().and_then(|p| crate::study::difference_map(&p, &m.values))
        {
            m.values = d;
            is_diff = true;
        }
        diff_drawn.set(is_diff);
        displayed.set(Some(m.values.clone()));
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
        // Sink cells are outlined over whatever map is shown: they are the study's, not one map's.
        match draw_overlay(&canvas, &m, &a).and_then(|()| crate::methods::outline_cells(&canvas, m.h, m.w, &sinks)) {
            Ok(()) => drawn.set(true),
            Err(err) => {
                leptos::logging::error!("could not draw the map of record {index}: {err:?}")
            }
        }
    });
    // The cell under the pointer: (row, col, index, value).
    let hover = RwSignal::new(None::<(usize, usize, usize, f64)>);
    let on_move = move |ev: leptos::ev::MouseEvent| {
        let Some(Some(Ok(m))) = map.get_untracked() else {
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
        let values = displayed.get_untracked().unwrap_or(m.values);
        hover.set(crate::study::cell_at(m.h, m.w, fx, fy).and_then(|(row, col, i)| values.get(i).map(|&v| (row, col, i, v))));
    };
    let on_leave = move |_: leptos::ev::MouseEvent| hover.set(None);
    let rec = r.record;
    let img = fetch::url(&Endpoint::Image { run: run.clone(), image_id: r.image_id.clone() }).unwrap_or_default();
    let alt = format!("Chest X-ray {} ({})", rec.image, rec.sample_id);
    let methods = crate::methods::methods_panel(run.clone(), index, crate::methods::panel_methods(&rec), img.clone(), opacity);
    let trust = crate::methods::trust_panel(index, &rec);
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
                        role="img"
                        aria-label=format!("Attention map of {} for {}", rec.model, rec.sample_id)
                    ></canvas>
                })}
            </figure>
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
                    <dt>"Margin"</dt><dd>{rec.yes_no_margin.map(|m| format!("{m:.3}")).unwrap_or_else(|| "—".into())}</dd>
                    <dt>"Map"</dt><dd>{metrics.unwrap_or_else(|| "no map".into())}</dd>
                </dl>
                {rec.error.as_ref().map(|e| view! { <p class="error" role="alert">{format!("{:?} error: {}", e.stage, e.message)}</p> })}
            </div>
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
        </article>
    }
}

/// Paints a card's colour bar (the same colours as its overlay, see [`crate::study::ColorBar`]).
fn draw_colorbar(
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
fn model_colour(i: usize) -> plotters::style::RGBColor {
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
fn draw_group_plot(canvas: web_sys::HtmlCanvasElement, p: &crate::overview::GroupPlot) -> Result<(), String> {
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
fn draw_forest(canvas: web_sys::HtmlCanvasElement, rows: &[crate::overview::ForestRow]) -> Result<(), String> {
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
        if form.append_with_blob_and_filename("image", &file, &file.name()).is_err() || form.append_with_str("question", &q).is_err() {
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
            <p class="provenance" data-testid="provenance">
                {m.map.as_ref().map(|mp| crate::study::provenance_line(&mp.provenance, mp.image_share)).unwrap_or_else(|| "no map".into())}
            </p>
        </article>
    }
}
