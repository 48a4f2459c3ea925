//! One flow, open in the editor.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::{error_text, get_flow, FlowDetail};
use crate::components::editor::Editor;
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
    let select = query.read_untracked().get("step");

    view! {
        <section class="page flow-page">
            <Suspense fallback=|| view! { <p class="loading">"Loading the flow…"</p> }>
                {move || {
                    let select = select.clone();
                    Suspend::new(async move {
                        match flow.await {
                            Ok(detail) => view! { <FlowView detail select/> }.into_any(),
                            Err(err) => view! {
                                <h1>"Flow"</h1>
                                <ErrorNote message=error_text(&err)/>
                                <A href="/">"Back to your flows"</A>
                            }.into_any(),
                        }
                    })
                }}
            </Suspense>
        </section>
    }
}

#[component]
fn FlowView(detail: FlowDetail, select: Option<String>) -> impl IntoView {
    let FlowDetail { summary, document, findings, acks } = detail;
    view! {
        <Title text=summary.name.clone()/>
        <div class="page-head compact">
            <div>
                <p class="crumbs"><A href="/">"Flows"</A> " / "</p>
                <h1 class="flow-name">{summary.name.clone()}</h1>
                <p class="meta"><span class="status">{summary.status()}</span></p>
            </div>
        </div>
        <Editor flow_id=summary.id document revision=summary.revision select findings acks/>
    }
}
