//! A flow's participants: how many sit on each step of each version, and,
//! when a newer version is published, moving those on older versions onto
//! it (by step id, or to a chosen step) with the counts shown before confirming.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::error_text;
use crate::pages::ErrorNote;
use crate::runtime_api::{flow_participants, MigrateParticipants, ParticipantCounts};

#[component]
pub fn ParticipantsPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(0);
    let migrate = ServerAction::<MigrateParticipants>::new();
    let data = Resource::new(move || (id(), migrate.version().get()), |(id, _)| flow_participants(id));
    view! {
        <section class="page">
            <Transition fallback=|| view! { <p class="loading">"Counting participants…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(data) => view! { <Counts data migrate/> }.into_any(),
                        Err(err) => view! { <h1>"Participants"</h1><ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Counts(data: ParticipantCounts, migrate: ServerAction<MigrateParticipants>) -> impl IntoView {
    let newest = data.newest_version.unwrap_or(0);
    // Active participants on older versions, per step: what a migration moves.
    let mut on_old: BTreeMap<String, i64> = BTreeMap::new();
    for (version, step, status, count) in &data.counts {
        if *version < newest && !matches!(status.as_str(), "completed" | "converted" | "exited" | "cancelled") {
            *on_old.entry(step.clone()).or_default() += count;
        }
    }
    let total_old: i64 = on_old.values().sum();
    let steps = data.newest_steps.clone();
    let choices = RwSignal::new(
        on_old
            .keys()
            .map(|old| (old.clone(), steps.iter().find(|(id, _)| id == old).map(|(id, _)| id.clone()).unwrap_or_default()))
            .collect::<BTreeMap<String, String>>(),
    );
    let rows = data
        .counts
        .iter()
        .map(|(version, step, status, count)| {
            view! {
                <tr data-version=*version data-step=step.clone() data-status=status.clone()>
                    <td>{format!("v{version}")}</td>
                    <td><code>{if step.is_empty() { "(not started)".to_owned() } else { step.clone() }}</code></td>
                    <td><span class=format!("pill {status}")>{status.clone()}</span></td>
                    <td class="count">{*count}</td>
                </tr>
            }
        })
        .collect_view();
    let mapping = on_old
        .iter()
        .map(|(old, count)| {
            let old = old.clone();
            let options = steps.clone();
            let key = old.clone();
            let leave = old.clone();
            view! {
                <tr data-old-step=old.clone()>
                    <td><code>{old.clone()}</code></td>
                    <td class="count">{*count}</td>
                    <td>
                        <select aria-label=format!("Move {old} to") on:change=move |ev| {
                            let value = event_target_value(&ev);
                            choices.update(|c| { c.insert(key.clone(), value); });
                        }>
                            <option value="" selected=move || choices.with(|c| c.get(&leave).is_none_or(String::is_empty))>"Leave on its version"</option>
                            {options.into_iter().map(|(id, name)| {
                                let (value, old) = (id.clone(), old.clone());
                                view! { <option value=value.clone() selected=move || choices.with(|c| c.get(&old) == Some(&value))>{format!("{name} ({id})")}</option> }
                            }).collect_view()}
                        </select>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let moving = Memo::new(move |_| {
        choices.with(|c| on_old.iter().filter(|(old, _)| c.get(*old).is_some_and(|t| !t.is_empty())).map(|(_, n)| n).sum::<i64>())
    });
    let flow_id = data.flow_id;
    view! {
        <Title text=format!("Participants · {}", data.flow_name)/>
        <div class="page-head">
            <div>
                <p class="crumbs"><a href=format!("/flows/{flow_id}")>{data.flow_name.clone()}</a> " / participants"</p>
                <h1>"Participants"</h1>
                <p class="meta">{match data.newest_version { Some(n) => format!("Newest version: v{n}"), None => "Not published yet".into() }}</p>
            </div>
        </div>
        {move || migrate.value().get().map(|result| match result {
            Ok(message) => view! { <p class="notice" role="status">{message}</p> }.into_any(),
            Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
        })}
        <table class="counts">
            <thead><tr><th>"Version"</th><th>"Step"</th><th>"Status"</th><th>"Participants"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        {(total_old > 0).then(|| view! {
            <section class="migrate">
                <h2>{format!("{total_old} participant(s) are on older versions")}</h2>
                <p>"Choose where each step's participants go in v" {newest} ". A step with the same id is chosen for you."</p>
                <table>
                    <thead><tr><th>"Old step"</th><th>"Participants"</th><th>"Move to"</th></tr></thead>
                    <tbody>{mapping}</tbody>
                </table>
                <ActionForm action=migrate attr:class="inline-form">
                    <input type="hidden" name="flow" value=flow_id/>
                    <input type="hidden" name="map" prop:value=move || serde_json::to_string(&choices.get()).unwrap_or_default()/>
                    <button type="submit" class="primary" disabled=move || moving.get() == 0>
                        {move || format!("Move {} participant(s) to v{newest}", moving.get())}
                    </button>
                </ActionForm>
            </section>
        })}
    }
    .into_any()
}
