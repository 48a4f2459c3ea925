//! Participants by criteria, with the bulk-action panel: choose an action,
//! see its effect (sentence, count, sample) before it runs, apply it, and
//! watch its progress to the end; and the page of one bulk run (progress,
//! outcome, audit, undo for the reversible ones).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};
use serde_json::{json, Value};

use crate::api::{error_text, list_flows};
use crate::contacts_api::{get_bulk_run, preview_bulk_action, search_participants, start_bulk_action, ActionPreview, RunInfo, UndoBulkRun};
use crate::pages::contacts::encode;
use crate::pages::ErrorNote;

/// (action, label) in the order the panel offers them.
const ACTIONS: [(&str, &str); 14] = [
    ("pause", "Pause"),
    ("suppress", "Suppress"),
    ("unsuppress", "Unsuppress"),
    ("ready", "Ready"),
    ("reset", "Reset"),
    ("cancel", "Cancel"),
    ("manual_pass", "Manual pass"),
    ("move_to_flow", "Move to flow"),
    ("set_callback", "Set callback"),
    ("cancel_callback", "Cancel callback"),
    ("reserve", "Reserve for agent"),
    ("unreserve", "Unreserve"),
    ("email_data_file", "Email data file"),
    ("delete", "Delete contacts' data"),
];

/// The search form's fields, from the page's query.
#[derive(Clone, Debug, Default, PartialEq)]
struct Search {
    flow: String,
    status: String,
    step: String,
    list: String,
    field: String,
    value: String,
}

impl Search {
    /// The criteria JSON the server takes.
    fn criteria(&self) -> Value {
        let mut criteria = json!({});
        if let Ok(flow) = self.flow.parse::<i64>() {
            criteria["flow_ids"] = json!([flow]);
        }
        let one = |s: &str| s.trim().to_owned();
        if !self.status.trim().is_empty() {
            criteria["statuses"] = json!([one(&self.status)]);
        }
        if !self.step.trim().is_empty() {
            criteria["steps"] = json!([one(&self.step)]);
        }
        if !self.list.trim().is_empty() {
            criteria["lists"] = json!([one(&self.list)]);
        }
        if !self.field.trim().is_empty() {
            criteria["contact"] = json!([{"field": one(&self.field), "value": one(&self.value)}]);
        }
        criteria
    }

    fn query(&self, page: i64) -> String {
        format!(
            "/participants?flow={}&status={}&step={}&list={}&field={}&value={}&page={page}",
            encode(&self.flow),
            encode(&self.status),
            encode(&self.step),
            encode(&self.list),
            encode(&self.field),
            encode(&self.value)
        )
    }
}

#[component]
pub fn ParticipantSearchPage() -> impl IntoView {
    let query = use_query_map();
    let search = Memo::new(move |_| {
        let q = query.read();
        let get = |k: &str| q.get(k).unwrap_or_default();
        Search { flow: get("flow"), status: get("status"), step: get("step"), list: get("list"), field: get("field"), value: get("value") }
    });
    let page = move || query.read().get("page").and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
    // Bumped when a run finishes, so the table shows what it changed.
    let refreshed = RwSignal::new(0u32);
    let found = Resource::new(move || (search.get(), page(), refreshed.get()), |(search, page, _)| search_participants(search.criteria().to_string(), page));
    let flows = Resource::new(|| (), |_| list_flows());
    let statuses = ["", "ready", "waiting", "held", "paused", "cancelled", "suppressed", "completed", "converted", "exited", "failed", "transition"];
    view! {
        <Title text="Participants"/>
        <section class="page">
            <div class="page-head">
                <h1>"Participants"</h1>
                <div class="actions">
                    // The same criteria as the table, streamed as CSV by the server.
                    <a class="button" download="participants.csv"
                        href=move || format!("/api/v1/participants/export.csv?criteria={}", encode(&search.get().criteria().to_string()))>
                        "Export CSV"
                    </a>
                </div>
            </div>
            <form method="get" class="filters" action="/participants">
                <label>"Flow "
                    <Suspense fallback=|| view! { <select name="flow"><option>"…"</option></select> }>
                        {move || Suspend::new(async move {
                            let flows = flows.await.unwrap_or_default();
                            let chosen = search.get_untracked().flow;
                            view! {
                                <select name="flow">
                                    <option value="">"Any flow"</option>
                                    {flows.into_iter().map(|f| {
                                        let selected = chosen == f.id.to_string();
                                        view! { <option value=f.id selected=selected>{f.name.clone()}</option> }
                                    }).collect_view()}
                                </select>
                            }
                        })}
                    </Suspense>
                </label>
                <label>"Status "
                    <select name="status">
                        {statuses.into_iter().map(|s| view! {
                            <option value=s selected=move || search.get().status == s>{if s.is_empty() { "Any" } else { s }}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"Step " <input type="text" name="step" size="10" prop:value=move || search.get().step/></label>
                <label>"List " <input type="text" name="list" size="10" prop:value=move || search.get().list/></label>
                <label>"Field " <input type="text" name="field" size="8" prop:value=move || search.get().field/></label>
                <label>"equals " <input type="text" name="value" size="10" prop:value=move || search.get().value/></label>
                <button type="submit">"Search"</button>
            </form>
            <div class="bulk-layout">
                <div>
                    <Transition fallback=|| view! { <p class="loading">"Searching…"</p> }>
                        {move || Suspend::new(async move {
                            match found.await {
                                Ok(found) => {
                                    let last = (found.total - 1).max(0) / found.per_page;
                                    let page = found.page;
                                    let s = search.get_untracked();
                                    view! {
                                        <p class="summary" data-total=found.total>{format!("{} participant(s) match · page {} of {}", found.total, page + 1, last + 1)}</p>
                                        <table class="participant-results">
                                            <thead><tr><th>"#"</th><th>"Contact"</th><th>"Flow"</th><th>"Status"</th><th>"Step"</th><th>"Passes"</th><th>"Agent / callback"</th></tr></thead>
                                            <tbody>
                                                {found.rows.into_iter().map(|p| view! {
                                                    <tr data-participant=p.id data-status=p.status.clone()>
                                                        <td><a href=format!("/participants/{}", p.id)>{p.id}</a></td>
                                                        <td><a href=format!("/contacts/{}", p.contact_id)>{p.contact.clone()}</a></td>
                                                        <td>{p.flow_name.clone()}</td>
                                                        <td><span class=format!("pill {}", p.status)>{p.status.clone()}</span></td>
                                                        <td><code>{p.step.clone()}</code></td>
                                                        <td>{p.pass_count}</td>
                                                        <td>{p.reserved_for.clone()} {p.callback_at.clone().map(|t| format!(" ☎ {t}"))}</td>
                                                    </tr>
                                                }).collect_view()}
                                            </tbody>
                                        </table>
                                        <nav class="pager">
                                            {(page > 0).then(|| view! { <a class="button" href=s.query(page - 1)>"← Previous"</a> })}
                                            {(page < last).then(|| view! { <a class="button" href=s.query(page + 1)>"Next →"</a> })}
                                        </nav>
                                    }.into_any()
                                }
                                Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                            }
                        })}
                    </Transition>
                </div>
                <BulkPanel search refreshed/>
            </div>
        </section>
    }
}

/// Choose → preview → apply → progress.
#[component]
fn BulkPanel(search: Memo<Search>, refreshed: RwSignal<u32>) -> impl IntoView {
    let action = RwSignal::new("pause".to_owned());
    let target = RwSignal::new(String::new());
    let mode = RwSignal::new("move".to_owned());
    let transition = RwSignal::new(false);
    let duplicates = RwSignal::new("ignore".to_owned());
    let at = RwSignal::new(String::new());
    let agent = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let disposition = RwSignal::new(String::new());
    let request = move || {
        let mut params = json!({});
        match action.get().as_str() {
            "move_to_flow" => {
                if let Ok(flow) = target.get().parse::<i64>() {
                    params["flow_id"] = json!(flow);
                }
                params["mode"] = json!(mode.get());
                params["mark_transition"] = json!(transition.get());
                params["duplicates"] = json!(duplicates.get());
            }
            "set_callback" => {
                // datetime-local gives minutes without a zone: read as UTC.
                let text = at.get();
                if !text.is_empty() {
                    params["at"] = json!(if text.len() == 16 { format!("{text}:00Z") } else { text });
                }
                if !agent.get().trim().is_empty() {
                    params["agent"] = json!(agent.get().trim());
                }
            }
            "reserve" => params["agent"] = json!(agent.get().trim()),
            "email_data_file" => {
                params["to"] = json!(to.get().split(',').map(str::trim).filter(|a| !a.is_empty()).collect::<Vec<_>>());
            }
            "manual_pass" => params["disposition"] = json!(disposition.get()),
            _ => {}
        }
        json!({"action": action.get(), "criteria": search.get().criteria(), "params": params}).to_string()
    };
    let preview = Action::new(|request: &String| preview_bulk_action(request.clone()));
    let start = Action::new(|request: &String| start_bulk_action(request.clone()));
    // A new choice needs a new preview.
    Effect::new(move || {
        request();
        preview.value().set(None);
    });
    let run_id = RwSignal::new(None::<i64>);
    let tick = RwSignal::new(0u32);
    let poller = StoredValue::new(None::<leptos::prelude::IntervalHandle>);
    Effect::new(move || {
        if let Some(Ok(id)) = start.value().get() {
            run_id.set(Some(id));
            if let Ok(handle) = set_interval_with_handle(move || tick.update(|t| *t += 1), Duration::from_millis(400)) {
                poller.set_value(Some(handle));
            }
        }
    });
    let run = Resource::new(move || (run_id.get(), tick.get()), |(id, _)| async move {
        match id {
            Some(id) => Some(get_bulk_run(id).await),
            None => None,
        }
    });
    Effect::new(move || {
        if let Some(Some(Ok(run))) = run.get() {
            if !run.running() {
                if let Some(handle) = poller.get_value() {
                    handle.clear();
                    poller.set_value(None);
                    refreshed.update(|r| *r += 1);
                }
            }
        }
    });
    let flows = Resource::new(|| (), |_| list_flows());
    view! {
        <aside class="bulk-panel">
            <h2>"Bulk action"</h2>
            <p class="meta">"Applies to every participant matching the search."</p>
            <label>"Action "
                <select aria-label="Action" on:change=move |ev| action.set(event_target_value(&ev))>
                    {ACTIONS.into_iter().map(|(value, label)| view! { <option value=value selected=move || action.get() == value>{label}</option> }).collect_view()}
                </select>
            </label>
            {move || match action.get().as_str() {
                "move_to_flow" => view! {
                    <label>"Target flow "
                        <Suspense fallback=|| "…">
                            {move || Suspend::new(async move {
                                let flows = flows.await.unwrap_or_default();
                                view! {
                                    <select aria-label="Target flow" on:change=move |ev| target.set(event_target_value(&ev))>
                                        <option value="">"Choose…"</option>
                                        {flows.into_iter().map(|f| view! { <option value=f.id>{f.name.clone()}</option> }).collect_view()}
                                    </select>
                                }
                            })}
                        </Suspense>
                    </label>
                    <label>"Mode "
                        <select aria-label="Mode" on:change=move |ev| mode.set(event_target_value(&ev))>
                            <option value="move">"Move (the original exits)"</option>
                            <option value="copy">"Copy (the original stays)"</option>
                        </select>
                    </label>
                    <label><input type="checkbox" on:change=move |ev| transition.set(event_target_checked(&ev))/>" Mark copies as transition"</label>
                    <label>"Already in the target "
                        <select aria-label="Duplicates" on:change=move |ev| duplicates.set(event_target_value(&ev))>
                            <option value="ignore">"Ignore them"</option>
                            <option value="move">"Move them anyway"</option>
                        </select>
                    </label>
                }.into_any(),
                "set_callback" => view! {
                    <label>"When (UTC) " <input type="datetime-local" aria-label="Callback time" on:input=move |ev| at.set(event_target_value(&ev))/></label>
                    <label>"Agent " <input type="text" aria-label="Agent" on:input=move |ev| agent.set(event_target_value(&ev))/></label>
                }.into_any(),
                "reserve" => view! {
                    <label>"Agent " <input type="text" aria-label="Agent" on:input=move |ev| agent.set(event_target_value(&ev))/></label>
                }.into_any(),
                "email_data_file" => view! {
                    <label>"To (comma-separated) " <input type="text" aria-label="Recipients" on:input=move |ev| to.set(event_target_value(&ev))/></label>
                }.into_any(),
                "manual_pass" => view! {
                    <label>"Disposition " <input type="text" aria-label="Disposition" on:input=move |ev| disposition.set(event_target_value(&ev))/></label>
                }.into_any(),
                _ => ().into_any(),
            }}
            <div class="actions">
                <button on:click=move |_| { preview.dispatch(request()); }>"Preview"</button>
            </div>
            {move || preview.value().get().map(|result| match result {
                Ok(p) => view! { <PreviewBox preview=p apply=move || { start.dispatch(request()); } starting=start.pending()/> }.into_any(),
                Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
            })}
            {move || start.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match run.await {
                        Some(Ok(run)) => view! { <Progress run/> }.into_any(),
                        Some(Err(err)) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                        None => ().into_any(),
                    }
                })}
            </Transition>
        </aside>
    }
}

#[component]
fn PreviewBox(preview: ActionPreview, apply: impl Fn() + Send + Sync + 'static, starting: Memo<bool>) -> impl IntoView {
    let count = preview.count;
    view! {
        <div class="preview" data-count=count>
            <p class="effect">{preview.effect.clone()}</p>
            <p><strong>{format!("{count} participant(s)")}</strong>{if preview.reversible { " · can be undone" } else { " · cannot be undone" }}</p>
            {(!preview.sample.is_empty()).then(|| view! {
                <table class="sample">
                    <thead><tr><th>"#"</th><th>"Contact"</th><th>"Flow"</th><th>"Status"</th></tr></thead>
                    <tbody>
                        {preview.sample.iter().map(|(id, contact, flow, status, _)| view! {
                            <tr><td>{*id}</td><td>{contact.clone()}</td><td>{flow.clone()}</td><td>{status.clone()}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            <button class="primary" disabled=move || count == 0 || starting.get() on:click=move |_| apply()>
                {format!("Apply to {count} participant(s)")}
            </button>
        </div>
    }
}

#[component]
fn Progress(run: RunInfo) -> impl IntoView {
    let percent = run.percent();
    view! {
        <div class="progress-box" data-status=run.status.clone()>
            <progress max="100" value=percent></progress>
            <p class="progress-text">
                {format!("Run {}: {} — {} of {} processed, {} changed", run.id, run.status, run.done, run.total, run.count)}
            </p>
            {run.message.clone().map(|m| view! { <p class="meta">{m}</p> })}
            <a href=format!("/bulk-runs/{}", run.id)>"Open the job page"</a>
        </div>
    }
}

#[component]
pub fn BulkRunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(0);
    let undo = ServerAction::<UndoBulkRun>::new();
    let run = Resource::new(move || (id(), undo.version().get()), |(id, _)| get_bulk_run(id));
    view! {
        <section class="page">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match run.await {
                        Ok(run) => view! { <RunView run undo/> }.into_any(),
                        Err(err) => view! { <h1>"Bulk run"</h1><ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn RunView(run: RunInfo, undo: ServerAction<UndoBulkRun>) -> impl IntoView {
    let id = run.id;
    let can_undo = run.reversible && run.status == "done";
    view! {
        <Title text=format!("Bulk run {id}")/>
        <div class="page-head">
            <div>
                <p class="crumbs"><a href="/participants">"Participants"</a> " / bulk run"</p>
                <h1>{format!("Bulk run {id}: {}", run.action.replace('_', " "))}</h1>
                <p class="meta">{format!("by {} at {}", run.run_by, run.run_at)} {run.finished_at.clone().map(|f| format!(" · finished {f}"))}</p>
            </div>
            {can_undo.then(|| view! {
                <ActionForm action=undo attr:class="inline-form">
                    <input type="hidden" name="id" value=id/>
                    <button type="submit" class="danger">"Undo this run"</button>
                </ActionForm>
            })}
        </div>
        {move || undo.value().get().map(|r| match r {
            Ok(message) => view! { <p class="notice" role="status">{message}</p> }.into_any(),
            Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
        })}
        <Progress run=run.clone()/>
        <table class="run-audit">
            <tbody>
                <tr><th>"Status"</th><td>{run.status.clone()}</td></tr>
                <tr><th>"Criteria"</th><td><code>{run.criteria.clone()}</code></td></tr>
                <tr><th>"Parameters"</th><td><code>{run.params.clone()}</code></td></tr>
                <tr><th>"Participants"</th><td>{format!("{} chosen, {} processed, {} changed", run.total, run.done, run.count)}</td></tr>
                {run.undone_at.clone().map(|at| view! { <tr><th>"Undone"</th><td>{format!("{at} by {}", run.undone_by.clone().unwrap_or_default())}</td></tr> })}
                {run.link.clone().map(|link| view! {
                    <tr><th>"Data file"</th><td>
                        <a href=link.clone()>"Download"</a>
                        {format!(" · link valid until {} · email: {}", run.link_expires_at.clone().unwrap_or_default(), run.email_status.clone().unwrap_or_default())}
                    </td></tr>
                })}
            </tbody>
        </table>
    }
    .into_any()
}
