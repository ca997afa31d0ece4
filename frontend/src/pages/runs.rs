//! The runs page (`/`): the runs under `--runs`, and where a share link lands.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::{Endpoint, RunList};
use crate::fetch::{self, enc};
use crate::site::href;

use super::components::*;

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
