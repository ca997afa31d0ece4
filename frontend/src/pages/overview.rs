//! The overview page (`/runs/:id`): a run's `analysis.json` as tables and plots (headline,
//! group plots, trust checks, model comparisons, disagreements, study links). Its view model is
//! [`crate::overview`].

use crate::overview::{HEADLINE_COLUMNS, ci_label, format_interval, headline};
use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::Endpoint;
use crate::fetch::{self, enc};
use crate::site::href;
use crate::url_state::study_path;
use radlens_shared::record::Analysis;

use super::components::*;

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
                    {conditions_view(&a)}
                    {decision_view(&a)}
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

/// An interval cell with its numbers in `data-*` (for tests and copy-paste).
fn interval_td(col: &'static str, i: Option<&radlens_shared::stats::bootstrap::Interval>, title: Option<&'static str>) -> impl IntoView {
    view! {
        <td
            class="num"
            data-col=col
            data-estimate=i.map(|i| i.estimate.to_string())
            data-lo=i.map(|i| i.lo.to_string())
            data-hi=i.map(|i| i.hi.to_string())
            title=title
        >
            {format_interval(i)}
        </td>
    }
}

/// Grounding G6 from `analysis.json`: per model and condition the answer agreement with the
/// real image and the accuracy, and per model the rates. Nothing when no model has conditions.
fn conditions_view(a: &Analysis) -> Option<AnyView> {
    use crate::conditions::{CONDITION_RATES, condition_rate, conditions_of, rate_listed};
    use radlens_shared::record::Pass;
    let models = conditions_of(a);
    if models.is_empty() {
        return None;
    }
    let ci = ci_label(a);
    let rows = models
        .iter()
        .flat_map(|(m, c)| c.conditions.iter().map(move |s| (*m, s)))
        .map(|(m, s)| {
            let pass = Pass::of(s.condition);
            let label = if pass == Pass::Image { "real image" } else { pass.label() };
            view! {
                <tr data-model=m.to_owned() data-condition=s.condition.name()>
                    <td>{m.to_owned()}</td>
                    <td title=s.condition.name()>{label}</td>
                    <td class="num" data-col="rows">{s.rows}</td>
                    <td class="num" data-col="not_run">{s.not_run}</td>
                    <td class="num" data-col="errors">{s.errors}</td>
                    {interval_td("answer_agreement", s.answer_agreement.as_ref(), None)}
                    {interval_td("accuracy", s.accuracy.as_ref(), None)}
                </tr>
            }
        })
        .collect_view();
    // One row per model and rate (narrow enough for any number of models).
    let rates = models
        .iter()
        .flat_map(|(m, c)| CONDITION_RATES.iter().map(move |r| (*m, *c, r)))
        // The confound and prior rates only where the run has them.
        .filter(|(_, c, (key, _, _))| rate_listed(c, key))
        .map(|(m, c, (key, label, meaning))| {
            view! {
                <tr data-model=m.to_string() data-rate=*key>
                    <td>{m.to_string()}</td>
                    <td title=*meaning>{*label}</td>
                    {interval_td(key, condition_rate(c, key), Some(meaning))}
                    <td class="num" data-col="flipping_pairs">{(*key == "image_invariant_flips").then(|| c.flipping_pairs.to_string())}</td>
                </tr>
            }
        })
        .collect_view();
    Some(
        view! {
            <section class="panel" id="conditions">
                <h2>"Does the answer come from the image?"</h2>
                <p class="lede">{format!(
                    "Each row asked again with its image replaced (grounding G6). Answer agreement: the parsed answer equals the real image's (unknown a value of its own); accuracy where the condition has a truth. Estimate and {ci}, study-clustered; rows a condition has no image for are counted as not run and left out."
                )}</p>
                <div class="table-wrap">
                <table class="data" id="conditions-table">
                    <thead><tr>
                        <th>"Model"</th><th>"Condition"</th><th class="num">"Rows"</th><th class="num">"Not run"</th><th class="num">"Errors"</th>
                        <th class="num">{format!("Answer agreement ({ci})")}</th><th class="num">{format!("Accuracy ({ci})")}</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                </div>
                <h3>"Rates"</h3>
                <div class="table-wrap">
                <table class="data" id="conditions-rates">
                    <thead><tr>
                        <th>"Model"</th><th>"Rate"</th><th class="num">{format!("Estimate ({ci})")}</th>
                        <th class="num" title="Flipping (base, rewording) pairs with a blank answer: the denominator of the image-invariant flips">"Flipping pairs"</th>
                    </tr></thead>
                    <tbody>{rates}</tbody>
                </table>
                </div>
            </section>
        }
        .into_any(),
    )
}

/// Grounding G7 from `analysis.json`: could the margin have warned of a wrong answer or a flip?
/// Nothing when no model has a decision summary.
fn decision_view(a: &Analysis) -> Option<AnyView> {
    use crate::conditions::{DECISION_COLUMNS, decision_value, decisions_of};
    let models = decisions_of(a);
    if models.is_empty() {
        return None;
    }
    let ci = ci_label(a);
    let rows = models
        .iter()
        .map(|(m, d)| {
            view! {
                <tr data-model=m.to_string() data-eps=d.eps.to_string()>
                    <td>{m.to_string()}</td>
                    <td class="num" data-col="rows">{d.rows}</td>
                    <td class="num" data-col="pairs">{d.pairs}</td>
                    <td class="num" data-col="eps">{d.eps.to_string()}</td>
                    {DECISION_COLUMNS.iter().map(|(key, _, meaning)| interval_td(key, decision_value(d, key), Some(meaning))).collect_view()}
                </tr>
            }
        })
        .collect_view();
    Some(
        view! {
            <section class="panel" id="decision">
                <h2>"Would the model have warned us?"</h2>
                <p class="lede">{format!(
                    "Decision quality (grounding G7) over the image-pass rows with a margin and a yes/no truth. Estimate and {ci} (cluster bootstrap, AUROC recomputed per resample); eps is the run's near-tie threshold."
                )}</p>
                <div class="table-wrap">
                <table class="data" id="decision-table">
                    <thead><tr>
                        <th>"Model"</th><th class="num">"Rows"</th><th class="num">"Pairs"</th><th class="num">"eps"</th>
                        {DECISION_COLUMNS.iter().map(|(_, label, meaning)| view! { <th class="num" title=*meaning>{format!("{label} ({ci})")}</th> }).collect_view()}
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                </div>
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
                                        {m.purpose.clone().map(|p| view! { <span class="model-purpose" data-testid="model-purpose">{p}</span> })}
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
