//! One flow: its graph drawn read-only, the findings panel, and the selected
//! step's details. (The drag-and-drop editor replaces the drawing later.)

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{error_text, get_flow, FlowDetail};
use crate::components::findings::FindingsPanel;
use crate::components::graph::FlowGraph;
use crate::components::test_run::TestRunPanel;
use crate::pages::ErrorNote;

#[component]
pub fn FlowPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok());
    let flow = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_flow(id).await,
            None => Err(ServerFnError::new("There is no such flow.")),
        }
    });
    // ?step=x (from the review page) selects that step.
    let selected = RwSignal::new(query.read_untracked().get("step"));

    view! {
        <section class="page flow-page">
            <Suspense fallback=|| view! { <p class="loading">"Loading the flow…"</p> }>
                {move || Suspend::new(async move {
                    match flow.await {
                        Ok(detail) => view! { <FlowView detail selected/> }.into_any(),
                        Err(err) => view! {
                            <h1>"Flow"</h1>
                            <ErrorNote message=error_text(&err)/>
                            <A href="/">"Back to your flows"</A>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn FlowView(detail: FlowDetail, selected: RwSignal<Option<String>>) -> impl IntoView {
    let FlowDetail { summary, document, findings } = detail;
    let id = summary.id;
    let details = {
        let document = document.clone();
        let findings = findings.clone();
        move || {
            let step_id = selected.get()?;
            let step = document.step(&step_id)?.clone();
            let settings = serde_json::to_string_pretty(&step.settings).unwrap_or_default();
            let notes: Vec<String> = findings.for_step(&step_id).map(|f| f.message.clone()).collect();
            Some(view! {
                <section class="step-details" aria-label="Selected step">
                    <h2>{step.kind.icon()} " " {step.display_name().to_owned()}</h2>
                    <p class="kind">{step.kind.label()} " · id " <code>{step.id.clone()}</code></p>
                    <pre class="settings">{settings}</pre>
                    <ul>{notes.into_iter().map(|note| view! { <li>{note}</li> }).collect_view()}</ul>
                </section>
            })
        }
    };
    view! {
        <Title text=summary.name.clone()/>
        <div class="page-head">
            <div>
                <p class="crumbs"><A href="/">"Flows"</A> " / "</p>
                <h1 class="flow-name">{summary.name.clone()}</h1>
                <p class="meta">
                    <span class="status">{summary.status()}</span>
                    " · " {document.steps.len()} " steps · revision " {summary.revision}
                </p>
            </div>
            <div class="actions">
                <a class="button" href=format!("/api/v1/flows/{id}/export") download>"Export JSON"</a>
            </div>
        </div>
        <div class="flow-layout">
            <div class="canvas">
                <FlowGraph document=document.clone() findings=findings.clone() selected/>
            </div>
            <div class="side">
                {details}
                <FindingsPanel findings selected/>
                <TestRunPanel document=Signal::stored(document.to_canonical_json())/>
            </div>
        </div>
    }
}
