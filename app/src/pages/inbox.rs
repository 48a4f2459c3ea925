//! The task inbox: calls, manual emails, tasks and callbacks waiting for a
//! person, soonest first; complete (with a disposition), skip, or defer;
//! or work one in the workspace ("Work it", "Start my day": the email
//! composer, click-to-call, texts, the contact beside it).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::error_text;
use crate::pages::ErrorNote;
use crate::runtime_api::{list_task_owners, list_tasks, ActOnTask, Task};

#[component]
pub fn InboxPage() -> impl IntoView {
    let query = use_query_map();
    let owner = move || query.read().get("owner").filter(|o| !o.is_empty());
    let act = ServerAction::<ActOnTask>::new();
    let tasks = Resource::new(move || (owner(), act.version().get()), |(owner, _)| list_tasks(owner));
    // Agents see their own tasks only; others choose whose to see.
    let owners = Resource::new(
        || (),
        |_| async move {
            match crate::current_viewer().await {
                Some(viewer) if viewer.role == crate::auth::Role::Agent => Ok(None),
                _ => list_task_owners().await.map(Some),
            }
        },
    );

    view! {
        <Title text="Task inbox"/>
        <section class="page">
            <div class="page-head">
                <h1>"Task inbox"</h1>
                <a class="button primary" href="/workspace" id="start-my-day">"Start my day"</a>
                <form method="get" class="filters">
                    <label>"Owner "
                        <Suspense fallback=|| view! { <select name="owner"><option>"…"</option></select> }>
                            {move || Suspend::new(async move {
                                let Some(owners) = owners.await.unwrap_or_default() else {
                                    return view! { <select name="owner" disabled=true><option>"Only yours"</option></select> }.into_any();
                                };
                                let chosen = owner();
                                view! {
                                    <select name="owner">
                                        <option value="">"Everyone"</option>
                                        {owners.into_iter().map(|o| {
                                            let selected = chosen.as_deref() == Some(o.as_str());
                                            view! { <option value=o.clone() selected=selected>{o.clone()}</option> }
                                        }).collect_view()}
                                    </select>
                                }.into_any()
                            })}
                        </Suspense>
                    </label>
                    <button type="submit">"Show"</button>
                </form>
            </div>
            {move || act.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
            <Transition fallback=|| view! { <p class="loading">"Loading tasks…"</p> }>
                {move || Suspend::new(async move {
                    match tasks.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"Nothing is waiting for you."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="tasks">
                                <thead><tr><th>"Due"</th><th>"What"</th><th>"Contact"</th><th>"Flow"</th><th>"Owner"</th><th></th></tr></thead>
                                <tbody>{list.into_iter().map(|task| view! { <TaskRow task act/> }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// `2026-11-22T13:26:30.857Z` as `Sun 2026-11-22 13:26 UTC`.
fn readable(timestamp: &str) -> String {
    timestamp
        .parse::<jiff::Timestamp>()
        .map(|at| at.strftime("%a %Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| timestamp.to_owned())
}

#[component]
fn TaskRow(task: Task, act: ServerAction<ActOnTask>) -> impl IntoView {
    let deferring = RwSignal::new(false);
    let id = task.participant_id;
    let what = task.subject.clone().unwrap_or_else(|| task.step.clone());
    view! {
        <tr data-participant=id data-kind=task.kind.clone()>
            <td class="due">{readable(&task.due_at)} {task.deferred.then_some(" (deferred)")}</td>
            <td><span class="pill">{task.kind.replace('_', " ")}</span> " " {what}</td>
            <td data-label="Contact"><a href=format!("/participants/{id}")>{task.contact.clone()}</a></td>
            <td data-label="Flow"><a href=format!("/flows/{}", task.flow_id)>{task.flow_name.clone()}</a></td>
            <td data-label="Owner">{task.owner.clone().unwrap_or_else(|| "unassigned".into())}</td>
            <td class="row-actions">
                <a class="button" href=format!("/workspace/{id}")>"Work it"</a>
                <ActionForm action=act attr:class="inline-form">
                    <input type="hidden" name="participant" value=id/>
                    <input type="hidden" name="outcome" value="completed"/>
                    <input type="text" name="disposition" placeholder="Disposition" aria-label="Disposition"/>
                    <button type="submit" class="primary">"Complete"</button>
                </ActionForm>
                <ActionForm action=act attr:class="inline-form">
                    <input type="hidden" name="participant" value=id/>
                    <input type="hidden" name="outcome" value="skipped"/>
                    <button type="submit">"Skip"</button>
                </ActionForm>
                <button type="button" on:click=move |_| deferring.update(|d| *d = !*d)>"Defer…"</button>
                <Show when=move || deferring.get()>
                    <ActionForm action=act attr:class="inline-form">
                        <input type="hidden" name="participant" value=id/>
                        <input type="hidden" name="outcome" value="deferred"/>
                        <input type="text" name="until" placeholder="2026-12-01T09:00:00Z" aria-label="Defer until" required/>
                        <button type="submit">"Defer"</button>
                    </ActionForm>
                </Show>
            </td>
        </tr>
    }
}
