//! Saved templates agents pick from in their workspace (marketers and
//! admins keep them), and each flow's default owner for its manual steps
//! whose owner rule names nobody (delegation at the flow level).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::error_text;
use crate::pages::{textarea_text, ErrorNote};
use crate::workspace_api::{delete_template, flow_task_owners, list_templates, save_template, set_flow_task_owner, Template};

#[component]
pub fn TemplatesPage() -> impl IntoView {
    let save = Action::new(|t: &Template| save_template(t.clone()));
    let delete = Action::new(|id: &i64| delete_template(*id));
    let owner = Action::new(|args: &(i64, String)| set_flow_task_owner(args.0, Some(args.1.clone())));
    let templates = Resource::new(move || (save.version().get(), delete.version().get()), |_| list_templates(None));
    let flows = Resource::new(move || owner.version().get(), |_| flow_task_owners());
    let editing = RwSignal::new(Template { channel: "email".into(), ..Template::default() });
    view! {
        <Title text="Templates"/>
        <section class="page">
            <h1>"Templates"</h1>
            <p class="meta">"Agents insert these into the emails and texts they send from their workspace. Email bodies are HTML, sanitised on save."</p>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match templates.await {
                        Ok(list) if list.is_empty() => view! { <p class="empty">"No templates yet."</p> }.into_any(),
                        Ok(list) => view! {
                            <table class="templates">
                                <thead><tr><th>"Name"</th><th>"Channel"</th><th>"Subject"</th><th></th></tr></thead>
                                <tbody>{list.into_iter().map(|t| {
                                    let (edit, id) = (t.clone(), t.id);
                                    view! {
                                        <tr data-template=t.id>
                                            <td>{t.name.clone()}</td><td>{t.channel.clone()}</td><td>{t.subject.clone().unwrap_or_default()}</td>
                                            <td class="row-actions">
                                                <button type="button" on:click=move |_| editing.set(edit.clone())>"Edit"</button>
                                                <button type="button" on:click=move |_| { delete.dispatch(id); }>"Delete"</button>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}</tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
            <form class="template-form" on:submit=move |ev| { ev.prevent_default(); save.dispatch(editing.get_untracked()); }>
                <h2>{move || if editing.with(|t| t.id == 0) { "New template" } else { "Edit template" }}</h2>
                <label>"Name " <input type="text" name="name" prop:value=move || editing.with(|t| t.name.clone())
                    on:input=move |ev| editing.update(|t| t.name = event_target_value(&ev))/></label>
                <label>"Channel "
                    <select name="channel" prop:value=move || editing.with(|t| t.channel.clone())
                        on:change=move |ev| editing.update(|t| t.channel = event_target_value(&ev))>
                        <option value="email">"Email"</option>
                        <option value="sms">"SMS"</option>
                    </select>
                </label>
                <label>"Subject " <input type="text" name="subject" prop:value=move || editing.with(|t| t.subject.clone().unwrap_or_default())
                    on:input=move |ev| editing.update(|t| t.subject = Some(event_target_value(&ev)))/></label>
                <label>"Body "
                    <textarea name="body" rows="6" prop:value=move || editing.with(|t| t.body.clone())
                        on:input=move |ev| editing.update(|t| t.body = event_target_value(&ev))>{textarea_text(String::new())}</textarea>
                </label>
                <button type="submit" class="primary">"Save template"</button>
                <button type="button" on:click=move |_| editing.set(Template { channel: "email".into(), ..Template::default() })>"New"</button>
                {move || save.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
                {move || delete.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
            </form>
            <h2>"Default task owners"</h2>
            <p class="meta">"Manual steps whose owner rule names nobody go to their flow's default owner."</p>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match flows.await {
                        Ok(list) => view! {
                            <table class="flow-owners"><tbody>
                                {list.into_iter().map(|(id, name, current)| {
                                    let typed = RwSignal::new(current.clone().unwrap_or_default());
                                    view! {
                                        <tr data-flow=id>
                                            <td>{name}</td>
                                            <td><form class="inline-form" on:submit=move |ev| { ev.prevent_default(); owner.dispatch((id, typed.get_untracked())); }>
                                                <input type="email" name="task_owner" placeholder="agent@example.com" prop:value=move || typed.get()
                                                    on:input=move |ev| typed.set(event_target_value(&ev))/>
                                                <button type="submit">"Set"</button>
                                            </form></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody></table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
            {move || owner.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
        </section>
    }
}
