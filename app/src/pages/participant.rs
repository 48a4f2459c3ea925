//! One participant: where it is, and its timeline — each step reached, when
//! it was due and done, the outcome, why, and how the due time was reached.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::error_text;
use crate::components::conversations::ConversationList;
use crate::pages::ErrorNote;
use crate::runtime_api::{get_participant, ParticipantDetail, RetryParticipant};

#[component]
pub fn ParticipantPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok());
    let retry = ServerAction::<RetryParticipant>::new();
    let detail = Resource::new(move || (id(), retry.version().get()), |(id, _)| async move {
        match id {
            Some(id) => get_participant(id).await,
            None => Err(ServerFnError::new("There is no such participant.")),
        }
    });
    view! {
        <section class="page">
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => view! { <Timeline detail retry/> }.into_any(),
                        Err(err) => view! { <h1>"Participant"</h1><ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// How the timeline shows a time (in the contact's zone, else UTC).
const SHOWN: &str = "%a %Y-%m-%d %H:%M %Z";

#[component]
fn Timeline(detail: ParticipantDetail, retry: ServerAction<RetryParticipant>) -> impl IntoView {
    let clock = &detail.clock;
    let rows = detail
        .timeline
        .iter()
        .map(|action| {
            let outcome = action.outcome.as_str();
            view! {
                <tr class=outcome data-step=action.step.clone()>
                    <td><code>{action.step.clone()}</code></td>
                    <td>{action.kind.replace('_', " ")} {action.manual.then_some(" (manual)")}</td>
                    <td>{clock.show(action.due_at, SHOWN)}</td>
                    <td>{action.done_at.map(|d| clock.show(d, SHOWN)).unwrap_or_else(|| "—".into())}</td>
                    <td><span class=format!("pill {outcome}")>{outcome}</span></td>
                    <td>
                        {action.reason.clone()}
                        {action.why.clone().map(|why| view! { <details><summary>"why then?"</summary>{why}</details> })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    let events = detail
        .events
        .iter()
        .map(|event| {
            view! {
                <tr class=format!("event {}", event.kind)>
                    <td>{clock.show(event.at, SHOWN)}</td>
                    <td>{event.what.clone()}</td>
                    <td><span class=format!("pill {}", event.kind)>{event.effect.clone()}</span></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <Title text=format!("Participant {}", detail.id)/>
        <div class="page-head">
            <div>
                <p class="crumbs"><a href=format!("/flows/{}", detail.flow_id)>{detail.flow_name.clone()}</a> " / participant"</p>
                <h1>{detail.contact.clone()}</h1>
                <p class="meta">
                    <span class="status">{detail.status.clone()}</span>
                    {detail.step.clone().map(|s| format!(" · at {s}"))}
                    {format!(" · version {}", detail.version)}
                    {detail.next_run_at.as_deref().and_then(|n| n.parse().ok()).map(|n| format!(" · next run {}", clock.show(n, SHOWN)))}
                    {detail.reason.clone().map(|r| format!(" · {r}"))}
                </p>
            </div>
        </div>
        {(detail.status == "failed").then(|| view! {
            <div class="notice error" role="alert">
                {format!("Failed: {}. ", detail.reason.clone().unwrap_or_default())}
                <ActionForm action=retry attr:class="inline-form">
                    <input type="hidden" name="participant" value=detail.id/>
                    <button type="submit" class="primary">"Retry this step"</button>
                </ActionForm>
            </div>
        })}
        {move || retry.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
        <table class="timeline">
            <thead><tr><th>"Step"</th><th>"Kind"</th><th>"Due"</th><th>"Done"</th><th>"Outcome"</th><th>"Why"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <h2>"Messages"</h2>
        <ConversationList participant=detail.id/>
        <h2>"Events"</h2>
        {if detail.events.is_empty() {
            view! { <p class="meta">"No opens, clicks, replies or custom events reached this participant yet."</p> }.into_any()
        } else {
            view! {
                <table class="timeline events">
                    <thead><tr><th>"When"</th><th>"Event"</th><th>"What it did"</th></tr></thead>
                    <tbody>{events}</tbody>
                </table>
            }.into_any()
        }}
    }
}
