//! Contacts: the searchable list, one contact's page (fields, lists, the
//! flows and steps it is in, its timeline, messages and tasks), and the
//! create / edit form.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use crate::api::error_text;
use crate::components::conversations::ConversationList;
use crate::contacts_api::{get_contact_detail, search_contacts, ChangeContactList, ContactDetail, SaveContact};
use crate::pages::ErrorNote;

#[component]
pub fn ContactsPage() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let list = move || query.read().get("list").unwrap_or_default();
    let after = move || query.read().get("after").unwrap_or_default();
    let found = Resource::new(move || (q(), list(), after()), |(q, list, after)| search_contacts(q, list, after));
    let link = move |after: &str| format!("/contacts?q={}&list={}&after={}", encode(&q()), encode(&list()), encode(after));
    view! {
        <Title text="Contacts"/>
        <section class="page">
            <div class="page-head">
                <h1>"Contacts"</h1>
                <div class="actions">
                    <a class="button" href=move || format!("/api/v1/contacts/export.csv?q={}&list={}", encode(&q()), encode(&list())) download="contacts.csv">"Export CSV"</a>
                    <a class="button" href="/contacts/import">"Import CSV"</a>
                    <a class="button primary" href="/contacts/new">"New contact"</a>
                </div>
            </div>
            <form method="get" class="filters" action="/contacts">
                <label>"Search " <input type="text" name="q" prop:value=q placeholder="email, name or mobile: how it starts"/></label>
                <label>"List " <input type="text" name="list" prop:value=list/></label>
                <button type="submit">"Search"</button>
            </form>
            <Transition fallback=|| view! { <p class="loading">"Loading contacts…"</p> }>
                {move || Suspend::new(async move {
                    match found.await {
                        Ok(found) if found.rows.is_empty() => view! { <p class="empty">"No contact matches."</p> }.into_any(),
                        Ok(found) => {
                            let first = !after().is_empty();
                            view! {
                                <p class="summary">{found.summary()}</p>
                                <table class="contacts">
                                    <thead><tr><th>"Contact"</th><th>"Mobile"</th><th>"Owner"</th><th>"Zone"</th><th>"Lists"</th></tr></thead>
                                    <tbody>
                                        {found.rows.into_iter().map(|c| view! {
                                            <tr data-contact=c.id>
                                                <td class="name"><a href=format!("/contacts/{}", c.id)>{c.label()}</a></td>
                                                <td>{c.mobile.clone()}</td>
                                                <td>{c.owner.clone()}</td>
                                                <td>{c.timezone.clone()}</td>
                                                <td>{c.lists.join(", ")}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                <nav class="pager">
                                    {first.then(|| view! { <a class="button" href=link("")>"← First page"</a> })}
                                    {found.next.clone().map(|next| view! { <a class="button" href=link(&next)>"Next →"</a> })}
                                </nav>
                            }.into_any()
                        }
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Enough URL encoding for a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[component]
pub fn ContactPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok()).unwrap_or(0);
    let change = ServerAction::<ChangeContactList>::new();
    let detail = Resource::new(move || (id(), change.version().get()), |(id, _)| get_contact_detail(id));
    view! {
        <section class="page">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => view! { <ContactView detail change/> }.into_any(),
                        Err(err) => view! { <h1>"Contact"</h1><ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn ContactView(detail: ContactDetail, change: ServerAction<ChangeContactList>) -> impl IntoView {
    let c = detail.contact.clone();
    let id = detail.id;
    let title = c.email.clone().or_else(|| c.mobile.clone()).unwrap_or_else(|| format!("Contact {id}"));
    let fields = c
        .fields
        .iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            view! { <tr><th>{name.clone()}</th><td>{value}</td></tr> }
        })
        .collect_view();
    let lists = c
        .lists
        .iter()
        .map(|list| {
            let (name, value, label) = (list.clone(), list.clone(), format!("Remove from {list}"));
            view! {
                <li data-list=list.clone()>
                    {name}
                    <ActionForm action=change attr:class="inline-form">
                        <input type="hidden" name="id" value=id/>
                        <input type="hidden" name="list" value=value/>
                        <input type="hidden" name="add" value="false"/>
                        <button type="submit" class="danger" aria-label=label>"×"</button>
                    </ActionForm>
                </li>
            }
        })
        .collect_view();
    let flows = detail
        .participations
        .iter()
        .map(|p| {
            view! {
                <tr data-participant=p.participant_id>
                    <td><a href=format!("/flows/{}", p.flow_id)>{p.flow_name.clone()}</a>{format!(" v{}", p.version)}</td>
                    <td><code>{p.step.clone().unwrap_or_else(|| "(not started)".into())}</code></td>
                    <td><span class=format!("pill {}", p.status)>{p.status.clone()}</span></td>
                    <td>{p.reserved_for.clone().map(|a| format!("reserved for {a}"))} {p.callback_at.clone().map(|t| format!(" callback {t}"))}</td>
                    <td><a href=format!("/participants/{}", p.participant_id)>"timeline"</a></td>
                </tr>
            }
        })
        .collect_view();
    let timeline = detail
        .timeline
        .iter()
        .map(|t| {
            view! {
                <tr class=t.outcome.clone()>
                    <td>{t.due_at.clone()}</td>
                    <td>{t.flow_name.clone()}</td>
                    <td><code>{t.step.clone()}</code> " " {t.kind.replace('_', " ")} {t.manual.then_some(" (manual)")}</td>
                    <td><span class=format!("pill {}", t.outcome)>{t.outcome.clone()}</span></td>
                    <td>{t.reason.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let tasks = detail
        .tasks
        .iter()
        .map(|t| {
            view! {
                <tr>
                    <td>{t.subject.clone().unwrap_or_else(|| t.kind.replace('_', " "))}</td>
                    <td>{t.flow_name.clone()}</td>
                    <td>{t.owner.clone().unwrap_or_else(|| "unassigned".into())}</td>
                    <td><span class=format!("pill {}", t.status)>{t.status.clone()}</span></td>
                    <td>{t.due_at.clone()}</td>
                    // Emails, calls and texts are worked in the agent's workspace.
                    <td>{matches!(t.status.as_str(), "pending" | "deferred").then(|| view! {
                        <a class="button" href=format!("/workspace/{}", t.participant_id)>"Work it"</a>
                    })}</td>
                </tr>
            }
        })
        .collect_view();
    let messages = detail
        .messages
        .iter()
        .map(|m| view! { <tr><td>{m.created_at.clone()}</td><td>{m.kind.clone()}</td><td>{m.status.clone()}</td><td>{m.last_error.clone()}</td></tr> })
        .collect_view();
    let deleted = detail.deleted_at.clone();
    view! {
        <Title text=title.clone()/>
        <div class="page-head">
            <div>
                <p class="crumbs"><a href="/contacts">"Contacts"</a> " / " {id}</p>
                <h1>{title}</h1>
                <p class="meta">
                    {c.mobile.clone()} {c.timezone.clone().map(|z| format!(" · {z}"))} {c.owner.clone().map(|o| format!(" · owner {o}"))}
                    {format!(" · created {}", detail.created_at.get(..16).unwrap_or(&detail.created_at).replace('T', " "))}
                    {(!c.opted_out.is_empty()).then(|| format!(" · opted out of {}", c.opted_out.iter().cloned().collect::<Vec<_>>().join(", ")))}
                    {c.blocked.then_some(" · blocked")}
                </p>
            </div>
            {deleted.is_none().then(|| view! { <div class="actions"><a class="button" href=format!("/contacts/{id}/edit")>"Edit"</a></div> })}
        </div>
        {deleted.map(|at| view! { <p class="notice error" role="status">{format!("Deleted {at}: personal data erased; its history stays.")}</p> })}
        {move || change.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
        <div class="contact-grid">
            <section>
                <h2>"Fields"</h2>
                <table class="fields"><tbody>{fields}</tbody></table>
            </section>
            <section>
                <h2>"Lists"</h2>
                <ul class="lists">{lists}</ul>
                <ActionForm action=change attr:class="inline-form">
                    <input type="hidden" name="id" value=id/>
                    <input type="hidden" name="add" value="true"/>
                    <input type="text" name="list" aria-label="List to add" placeholder="List name"/>
                    <button type="submit">"Add to list"</button>
                </ActionForm>
            </section>
        </div>
        <h2>"Flows"</h2>
        {if detail.participations.is_empty() {
            view! { <p class="empty">"Not in any flow."</p> }.into_any()
        } else {
            view! {
                <table class="participations">
                    <thead><tr><th>"Flow"</th><th>"Step"</th><th>"Status"</th><th>"Agent"</th><th></th></tr></thead>
                    <tbody>{flows}</tbody>
                </table>
            }.into_any()
        }}
        <h2>"Tasks and follow-ups"</h2>
        <table class="contact-tasks">
            <thead><tr><th>"Task"</th><th>"Flow"</th><th>"Owner"</th><th>"Status"</th><th>"Due"</th><th></th></tr></thead>
            <tbody>{tasks}</tbody>
        </table>
        <h2>"Timeline"</h2>
        <table class="contact-timeline">
            <thead><tr><th>"Due"</th><th>"Flow"</th><th>"Step"</th><th>"Outcome"</th><th>"Why"</th></tr></thead>
            <tbody>{timeline}</tbody>
        </table>
        <h2>"Conversation"</h2>
        <ContactThread contact=id/>
        <h2>"Messages"</h2>
        <ConversationList contact=id/>
        <h2>"Outbox: messages and calls out"</h2>
        <table class="messages">
            <thead><tr><th>"When"</th><th>"Kind"</th><th>"Status"</th><th>"Error"</th></tr></thead>
            <tbody>{messages}</tbody>
        </table>
    }
    .into_any()
}

/// Every email, SMS (both ways) and call with the contact, newest first.
#[component]
fn ContactThread(contact: i64) -> impl IntoView {
    let thread = Resource::new(move || contact, crate::workspace_api::contact_thread);
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading the conversation…"</p> }>
            {move || Suspend::new(async move {
                match thread.await {
                    Ok(items) => view! { <crate::pages::workspace::Thread items/> }.into_any(),
                    Err(err) => view! { <ErrorNote message=crate::api::error_text(&err)/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The create (no id) and edit form.
#[component]
pub fn ContactEditPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok());
    let existing = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_contact_detail(id).await.map(Some),
            None => Ok(None),
        }
    });
    view! {
        <section class="page">
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match existing.await {
                        Ok(detail) => view! { <ContactForm detail/> }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn ContactForm(detail: Option<ContactDetail>) -> impl IntoView {
    let save = ServerAction::<SaveContact>::new();
    let navigate = use_navigate();
    Effect::new(move || {
        if let Some(Ok(id)) = save.value().get() {
            navigate(&format!("/contacts/{id}"), Default::default());
        }
    });
    let c = detail.as_ref().map(|d| d.contact.clone()).unwrap_or_default();
    let id = detail.as_ref().map(|d| d.id);
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields: String = c
        .fields
        .iter()
        .map(|(k, v)| format!("{k} = {}\n", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect();
    let lists = c.lists.iter().cloned().collect::<Vec<_>>().join(", ");
    view! {
        <Title text=if id.is_some() { "Edit contact" } else { "New contact" }/>
        <div class="page-head">
            <div>
                <p class="crumbs"><a href="/contacts">"Contacts"</a></p>
                <h1>{if id.is_some() { "Edit contact" } else { "New contact" }}</h1>
            </div>
        </div>
        {move || save.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
        <ActionForm action=save attr:class="contact-form">
            {id.map(|id| view! { <input type="hidden" name="id" value=id/> })}
            <label>"Email" <input type="text" name="email" value=text(&c.email)/></label>
            <label>"Mobile" <input type="text" name="mobile" value=text(&c.mobile)/></label>
            <label>"Time zone" <input type="text" name="timezone" value=text(&c.timezone) placeholder="Europe/Paris"/></label>
            <label>"Owner" <input type="text" name="owner" value=text(&c.owner)/></label>
            <label>"Custom fields (one “name = value” a line)" <textarea name="fields" rows="6">{super::textarea_text(fields)}</textarea></label>
            <label>"Lists (comma-separated)" <input type="text" name="lists" value=lists/></label>
            <button type="submit" class="primary">"Save contact"</button>
        </ActionForm>
    }
    .into_any()
}

/// Upload a CSV (streamed to the server, imported in the background) and
/// watch its progress, counts and refused rows.
#[component]
pub fn ContactImportPage() -> impl IntoView {
    use std::time::Duration;

    use crate::contacts_api::{get_contact_import, list_contact_imports};

    let file = NodeRef::<leptos::html::Input>::new();
    let mapping = RwSignal::new(String::new());
    let dedupe = RwSignal::new("update".to_owned());
    let match_on = RwSignal::new("email".to_owned());
    let list = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let job = RwSignal::new(None::<i64>);
    let tick = RwSignal::new(0u32);
    let poller = StoredValue::new(None::<IntervalHandle>);
    let info = Resource::new(move || (job.get(), tick.get()), |(id, _)| async move {
        match id {
            Some(id) => Some(get_contact_import(id).await),
            None => None,
        }
    });
    // Bumped when an import ends, so the list of past imports shows it.
    let ended = RwSignal::new(0u32);
    let past = Resource::new(move || ended.get(), |_| list_contact_imports());
    Effect::new(move || {
        if let Some(Some(Ok(info))) = info.get() {
            if info.status != "running" {
                if let Some(handle) = poller.get_value() {
                    handle.clear();
                    poller.set_value(None);
                    ended.update(|e| *e += 1);
                }
            }
        }
    });
    let started = move |id: i64| {
        job.set(Some(id));
        if let Ok(handle) = set_interval_with_handle(move || tick.update(|t| *t += 1), Duration::from_millis(400)) {
            poller.set_value(Some(handle));
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let options = match crate::contacts_api::import_options(&mapping.get(), &dedupe.get(), &match_on.get(), &list.get()) {
            Ok(options) => options,
            Err(message) => return error.set(Some(message)),
        };
        upload(file, options, error, started);
    };
    view! {
        <Title text="Import contacts"/>
        <section class="page">
            <div class="page-head">
                <div>
                    <p class="crumbs"><a href="/contacts">"Contacts"</a></p>
                    <h1>"Import contacts"</h1>
                    <p class="meta">"A CSV of any size, with a header row. Columns keep their name (email, mobile, timezone, owner, lists, or a custom field) unless mapped."</p>
                </div>
            </div>
            {move || error.get().map(|message| view! { <ErrorNote message/> })}
            <form class="contact-form" on:submit=submit>
                <label>"CSV file" <input type="file" accept=".csv,text/csv" node_ref=file/></label>
                <label>"Column mapping (one “column = field” a line; an empty field leaves the column out)"
                    <textarea rows="4" on:input=move |ev| mapping.set(event_target_value(&ev))></textarea>
                </label>
                <label>"Existing contacts (same email, or mobile)"
                    <select on:change=move |ev| dedupe.set(event_target_value(&ev))>
                        <option value="update">"Update them with the file's values"</option>
                        <option value="skip">"Leave them as they are"</option>
                    </select>
                </label>
                <label>"Match by"
                    <select on:change=move |ev| match_on.set(event_target_value(&ev))>
                        <option value="email">"Email, then mobile"</option>
                        <option value="mobile">"Mobile, then email"</option>
                    </select>
                </label>
                <label>"Add everyone to the list" <input type="text" on:input=move |ev| list.set(event_target_value(&ev))/></label>
                <button type="submit" class="primary">"Import"</button>
            </form>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match info.await {
                        Some(Ok(info)) => view! {
                            <div class="progress-box import-progress" data-status=info.status.clone()>
                                <progress max="100" value=info.percent()></progress>
                                <p class="progress-text">
                                    {format!("Import {}: {} — {} row(s) read: {} created, {} updated, {} skipped, {} refused",
                                        info.id, info.status, info.rows_done, info.created, info.updated, info.skipped, info.failed)}
                                </p>
                                {info.error.clone().map(|e| view! { <p class="notice error">{e}</p> })}
                                {(!info.errors.is_empty()).then(|| view! {
                                    <table class="import-errors">
                                        <thead><tr><th>"Line"</th><th>"Why it was refused"</th></tr></thead>
                                        <tbody>{info.errors.iter().map(|(line, reason)| view! { <tr><td>{*line}</td><td>{reason.clone()}</td></tr> }).collect_view()}</tbody>
                                    </table>
                                    <a href=format!("/api/v1/contacts/imports/{}/errors.csv", info.id)>"All refused rows (CSV)"</a>
                                })}
                            </div>
                        }.into_any(),
                        Some(Err(err)) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                        None => ().into_any(),
                    }
                })}
            </Transition>
            <h2>"Past imports"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match past.await {
                        Ok(jobs) if jobs.is_empty() => view! { <p class="empty">"No import yet."</p> }.into_any(),
                        Ok(jobs) => view! { <PastImports jobs/> }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// When, who, which file, how many rows went where, and the refused rows' report.
#[component]
fn PastImports(jobs: Vec<crate::contacts_api::ImportInfo>) -> impl IntoView {
    view! {
        <table class="past-imports">
            <thead><tr>
                <th>"Started"</th><th>"By"</th><th>"File"</th><th>"Status"</th><th>"Rows"</th>
                <th>"Created"</th><th>"Updated"</th><th>"Skipped"</th><th>"Refused"</th><th>"Report"</th>
            </tr></thead>
            <tbody>
                {jobs.into_iter().map(|job| view! {
                    <tr data-import=job.id data-status=job.status.clone()>
                        <td>{crate::pages::flows::short_time(&job.started_at)}</td>
                        <td>{job.started_by.clone()}</td>
                        <td>{job.file_name.clone().unwrap_or_else(|| "(no name)".into())}</td>
                        <td><span class=format!("pill {}", job.status)>{job.status.clone()}</span></td>
                        <td>{job.rows_done}</td>
                        <td>{job.created}</td>
                        <td>{job.updated}</td>
                        <td>{job.skipped}</td>
                        <td>{job.failed}</td>
                        <td>
                            {(job.failed > 0).then(|| view! { <a href=format!("/api/v1/contacts/imports/{}/errors.csv", job.id)>"Refused rows (CSV)"</a> })}
                            {job.error.clone()}
                        </td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Sends the chosen file and the options to the import endpoint (multipart,
/// so the browser streams the file); `started` gets the job's id.
fn upload(file: NodeRef<leptos::html::Input>, options: String, error: RwSignal<Option<String>>, started: impl Fn(i64) + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(chosen) = file.get().and_then(|input| input.files()).and_then(|files| files.get(0)) else {
            return error.set(Some("Choose a CSV file.".into()));
        };
        leptos::task::spawn_local(async move {
            let sent = async {
                let form = web_sys::FormData::new()?;
                form.append_with_str("options", &options)?;
                form.append_with_blob_and_filename("file", &chosen, &chosen.name())?;
                let init = web_sys::RequestInit::new();
                init.set_method("POST");
                init.set_body(&form.into());
                // A multipart body is one a form could send: the session's
                // anti-forgery token shows it came from this page's script.
                let headers = web_sys::Headers::new()?;
                headers.set(crate::auth::CSRF_HEADER, &crate::auth::client::token())?;
                init.set_headers(&headers);
                let window = web_sys::window().ok_or_else(|| wasm_bindgen::JsValue::from_str("no window"))?;
                let response: web_sys::Response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str_and_init("/api/v1/contacts/imports", &init)).await?.dyn_into()?;
                let body = wasm_bindgen_futures::JsFuture::from(response.json()?).await?;
                let text = js_sys::JSON::stringify(&body)?.as_string().unwrap_or_default();
                Ok::<_, wasm_bindgen::JsValue>((response.status(), text))
            };
            match sent.await {
                Ok((202, text)) => match serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["id"].as_i64()) {
                    Some(id) => {
                        error.set(None);
                        started(id);
                    }
                    None => error.set(Some("The server's answer could not be read.".into())),
                },
                Ok((_, text)) => {
                    let detail = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["detail"].as_str().map(str::to_owned));
                    error.set(Some(detail.unwrap_or_else(|| "The import was refused.".into())));
                }
                Err(_) => error.set(Some("The file could not be sent.".into())),
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (file, options, error, started);
}
