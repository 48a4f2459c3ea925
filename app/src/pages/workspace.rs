//! The agent's workspace (DESIGN §11): "My day" walks the agent's due
//! tasks one at a time (calls while the contact's business hours are
//! open, then emails, then tasks), with the contact beside it. A manual
//! email opens prefilled from its step and is edited, previewed and sent;
//! "Message" texts the contact from a template with the segment count;
//! "Call now" rings the agent's phone and bridges the contact, then a
//! disposition and notes close the task. Keys: s send, c call, m message,
//! k skip, d defer, n next (not while typing).
//!
//! The preview shows the sanitised email in a sandboxed frame that may
//! run nothing; the page never puts the email's markup into its own DOM.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::error_text;
use crate::components::rich_text::RichText;
use crate::pages::{textarea_text, ErrorNote};
use crate::workspace_api::{
    finish_task, list_templates, my_phone, my_queue, place_task_call, preview_email, save_my_phone, send_task_email, send_task_sms, task_call, workspace_task,
    CallView, EmailSend, QueueEntry, ThreadItem, Workspace,
};

/// `2026-11-23T09:00:12.5Z` as `2026-11-23 09:00`.
fn short(at: &str) -> String {
    at.get(..16).unwrap_or(at).replace('T', " ")
}

/// A click-to-call's leg to the contact, in words.
fn leg_text(leg: &crate::workspace_api::CallLeg) -> String {
    let mut text = format!("Contact {}", leg.status);
    if let Some(at) = &leg.answered_at {
        text.push_str(&format!(" · answered {}", short(at)));
    }
    if let Some(at) = &leg.ended_at {
        text.push_str(&format!(" · ended {}", short(at)));
    }
    if let Some(d) = leg.duration_secs {
        text.push_str(&format!(" · talked {d} s"));
    }
    text
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "call" => "Call",
        "schedule_callback" => "Call back",
        "send_email" => "Email",
        _ => "Task",
    }
}

#[component]
pub fn WorkspacePage() -> impl IntoView {
    let params = use_params_map();
    let chosen = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok());
    // Bumped after each send or outcome: the queue and the task load again.
    let done = RwSignal::new(0u32);
    let queue = Resource::new(move || done.get(), |_| my_queue());
    provide_context(SavePhone(Action::new(|phone: &String| save_my_phone(phone.clone()))));
    view! {
        <Title text="My day"/>
        <section class="page workspace">
            <div class="page-head">
                <h1>"My day"</h1>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let left = queue.await.map(|q| q.len()).unwrap_or_default();
                        view! { <p class="left" data-left=left.to_string()>{format!("{left} left")}</p> }
                    })}
                </Transition>
                <PhoneForm/>
            </div>
            <Transition fallback=|| view! { <p class="loading">"Loading your queue…"</p> }>
                {move || {
                    // Read before waiting, so that a change of address renders again.
                    let choice = chosen();
                    Suspend::new(async move {
                    let list = match queue.await {
                        Ok(list) => list,
                        Err(err) => return view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    };
                    let current = choice.or_else(|| list.first().map(|e| e.participant_id));
                    match current {
                        None => view! {
                            <p class="empty queue-empty">"Your queue is empty: nothing is due. "
                                <a href="/inbox">"See every task"</a></p>
                        }.into_any(),
                        Some(participant) => {
                            let next = list.iter().skip_while(|e| e.participant_id != participant).nth(1)
                                .or_else(|| list.iter().find(|e| e.participant_id != participant))
                                .map(|e| e.participant_id);
                            view! {
                                <QueueStrip list=list.clone() current=participant/>
                                <TaskView participant next done/>
                            }.into_any()
                        }
                    }
                    })
                }}
            </Transition>
        </section>
    }
}

/// The queue in order, the current task marked.
#[component]
fn QueueStrip(list: Vec<QueueEntry>, current: i64) -> impl IntoView {
    view! {
        <ol class="queue">
            {list.into_iter().map(|e| {
                let here = e.participant_id == current;
                view! {
                    <li class:current=here data-group=e.group.clone()>
                        <a href=format!("/workspace/{}", e.participant_id) title=e.why.clone()>
                            <span class="pill">{kind_label(&e.kind)}</span> " " {e.contact.clone()}
                        </a>
                    </li>
                }
            }).collect_view()}
        </ol>
    }
}

/// Saving the agent's phone: the form dispatches it, and the task on
/// screen reads its answer, so that "Call now" is enabled without a reload.
#[derive(Clone, Copy)]
struct SavePhone(Action<String, Result<Option<String>, ServerFnError>>);

/// The agent's own phone, which click-to-call rings first.
#[component]
fn PhoneForm() -> impl IntoView {
    let phone = Resource::new(|| (), |_| my_phone());
    let SavePhone(save) = expect_context::<SavePhone>();
    let typed = RwSignal::new(String::new());
    Effect::new(move || {
        if let Some(Ok(saved)) = save.value().get() {
            typed.set(saved.unwrap_or_default());
        }
    });
    view! {
        <form class="inline-form phone" on:submit=move |ev| { ev.prevent_default(); save.dispatch(typed.get_untracked()); }>
            <label>"Your phone "
                <Suspense fallback=|| view! { <input type="tel" disabled=true/> }>
                    {move || Suspend::new(async move {
                        let known = phone.await.ok().flatten().unwrap_or_default();
                        if typed.get_untracked().is_empty() {
                            typed.set(known.clone());
                        }
                        view! {
                            <input type="tel" name="phone" placeholder="+15551234567" prop:value=move || typed.get()
                                on:input=move |ev| typed.set(event_target_value(&ev))/>
                        }
                    })}
                </Suspense>
            </label>
            <button type="submit">"Save"</button>
            {move || match save.value().get() {
                Some(Err(err)) => Some(view! { <span class="error" role="alert">{error_text(&err)}</span> }.into_any()),
                Some(Ok(_)) => Some(view! { <span class="saved">"Saved"</span> }.into_any()),
                None => None,
            }}
        </form>
    }
}

/// One task with what it takes to work it, and the contact beside it.
#[component]
fn TaskView(participant: i64, next: Option<i64>, done: RwSignal<u32>) -> impl IntoView {
    let task = Resource::new(move || (participant, done.get()), |(participant, _)| workspace_task(participant));
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading the task…"</p> }>
            {move || Suspend::new(async move {
                match task.await {
                    Ok(work) => view! { <Work work next done/> }.into_any(),
                    Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Work(work: Workspace, next: Option<i64>, done: RwSignal<u32>) -> impl IntoView {
    let navigate = use_navigate();
    let participant = work.task.participant_id;
    let message_open = RwSignal::new(work.email.is_none() && work.task.kind != "call" && work.task.kind != "schedule_callback");
    let defer_open = RwSignal::new(false);
    let finish = Action::new(|args: &(i64, String, Option<String>, Option<String>, Option<String>)| {
        let (p, outcome, disposition, notes, until) = args.clone();
        finish_task(p, outcome, disposition, notes, until)
    });
    // Once the task is closed: on to the queue's next one.
    {
        let navigate = navigate.clone();
        Effect::new(move || {
            if let Some(Ok(())) = finish.value().get() {
                navigate("/workspace", Default::default());
                done.update(|d| *d += 1);
            }
        });
    }
    let go_next = {
        let navigate = navigate.clone();
        move || {
            if let Some(next) = next {
                navigate(&format!("/workspace/{next}"), Default::default());
            }
        }
    };
    keyboard(go_next.clone(), message_open, defer_open);
    let disposition = RwSignal::new(String::new());
    let notes = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let dispositions = work.dispositions.clone();
    let has_email = work.email.is_some();
    let task = work.task.clone();
    let sms_reach = work.sms_reach.clone();
    // Bumped by a text sent or a call over: the thread beside loads again.
    let refresh = RwSignal::new(0u32);
    view! {
        <div class="work" data-participant=participant data-kind=task.kind.clone()>
            <div class="work-main">
                <div class="task-head">
                    <h2><span class="pill">{kind_label(&task.kind)}</span> " " {task.subject.clone().unwrap_or_else(|| task.step.clone())}</h2>
                    <p class="meta">
                        <a href=format!("/contacts/{}", task.contact_id)>{task.contact.clone()}</a>
                        " · " <a href=format!("/participants/{participant}")>{task.flow_name.clone()}</a>
                        " · due " {short(&task.due_at)} " · " {task.why.clone()}
                    </p>
                </div>
                {work.email.clone().map(|draft| view! { <Composer participant draft reach=work.email_reach.clone() dispositions=dispositions.clone() done/> })}
                <CallPanel work=work.clone() refresh/>
                <Show when=move || message_open.get() fallback=move || view! {
                    <button type="button" id="ws-message" on:click=move |_| message_open.set(true)>"Message (m)"</button>
                }>
                    <SmsPanel participant reach=sms_reach.clone() refresh/>
                </Show>
                <div class="outcome">
                    <h3>"Outcome"</h3>
                    {(!has_email).then(|| view! {
                        <label>"Disposition "
                            {if dispositions.is_empty() {
                                view! { <input type="text" name="disposition" prop:value=move || disposition.get()
                                    on:input=move |ev| disposition.set(event_target_value(&ev))/> }.into_any()
                            } else {
                                view! {
                                    <select name="disposition" on:change=move |ev| disposition.set(event_target_value(&ev))>
                                        <option value="">"Choose…"</option>
                                        {dispositions.iter().map(|d| view! { <option value=d.clone()>{d.clone()}</option> }).collect_view()}
                                    </select>
                                }.into_any()
                            }}
                        </label>
                        <label>"Notes "
                            <textarea name="notes" rows="2" prop:value=move || notes.get() on:input=move |ev| notes.set(event_target_value(&ev))>
                                {textarea_text(String::new())}
                            </textarea>
                        </label>
                        <button type="button" class="primary" id="ws-complete"
                            on:click=move |_| { finish.dispatch((participant, "completed".into(), Some(disposition.get_untracked()), Some(notes.get_untracked()), None)); }>
                            "Complete"
                        </button>
                    })}
                    <button type="button" id="ws-skip"
                        on:click=move |_| { finish.dispatch((participant, "skipped".into(), None, Some(notes.get_untracked()), None)); }>"Skip (k)"</button>
                    <button type="button" id="ws-defer" on:click=move |_| defer_open.update(|d| *d = !*d)>"Defer… (d)"</button>
                    <button type="button" id="ws-next" disabled=next.is_none() on:click=move |_| go_next()>"Next (n)"</button>
                    <Show when=move || defer_open.get()>
                        <span class="inline-form">
                            <input type="datetime-local" name="until" aria-label="Defer until"
                                on:input=move |ev| until.set(event_target_value(&ev))/>
                            <button type="button" id="ws-defer-go" on:click=move |_| {
                                // The field's local time, read as UTC: said beside it.
                                let at = until.get_untracked();
                                let at = if at.len() == 16 { format!("{at}:00Z") } else { at };
                                finish.dispatch((participant, "deferred".into(), None, None, Some(at)));
                            }>"Defer (UTC)"</button>
                        </span>
                    </Show>
                    {move || finish.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
                </div>
            </div>
            <aside class="work-context">
                <ContactContext work refresh/>
            </aside>
        </div>
    }
}

/// Shortcuts, unless the agent is typing: they press the page's own buttons.
fn keyboard(go_next: impl Fn() + Clone + 'static, message_open: RwSignal<bool>, defer_open: RwSignal<bool>) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let click = |id: &str| {
            if let Some(el) = document().get_element_by_id(id).and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
                el.click();
            }
        };
        let handle = window_event_listener(leptos::ev::keydown, move |ev| {
            let typing = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()).is_some_and(|el| {
                matches!(el.tag_name().to_ascii_lowercase().as_str(), "input" | "textarea" | "select")
                    || el.dyn_ref::<web_sys::HtmlElement>().is_some_and(|el| el.is_content_editable())
            });
            if typing || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
                return;
            }
            match ev.key().as_str() {
                "s" => click("ws-send"),
                "c" => click("ws-call"),
                "k" => click("ws-skip"),
                "d" => defer_open.update(|d| *d = !*d),
                "m" => message_open.set(true),
                "n" => go_next(),
                _ => return,
            }
            ev.prevent_default();
        });
        on_cleanup(move || handle.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (go_next, message_open, defer_open);
}

/// The manual email, prefilled from its step: edited, previewed, sent.
#[component]
fn Composer(
    participant: i64,
    draft: crate::workspace_api::EmailDraft,
    reach: crate::workspace_api::Reach,
    dispositions: Vec<String>,
    done: RwSignal<u32>,
) -> impl IntoView {
    let navigate = use_navigate();
    let to = RwSignal::new(draft.to.clone());
    let cc = RwSignal::new(draft.cc.clone());
    let bcc = RwSignal::new(draft.bcc.clone());
    let subject = RwSignal::new(draft.subject.clone());
    let body = RwSignal::new(draft.body.clone());
    let disposition = RwSignal::new(String::new());
    let previewing = RwSignal::new(false);
    let preview = Action::new(|body: &String| preview_email(body.clone()));
    let send = Action::new(|email: &EmailSend| send_task_email(email.clone()));
    Effect::new(move || {
        if let Some(Ok(_)) = send.value().get() {
            navigate("/workspace", Default::default());
            done.update(|d| *d += 1);
        }
    });
    let templates = Resource::new(|| (), |_| list_templates(Some("email".into())));
    let blocked = reach.blocked.clone();
    let attachments = draft.attachments.clone();
    view! {
        <form class="composer" on:submit=move |ev| {
            ev.prevent_default();
            send.dispatch(EmailSend {
                participant,
                to: to.get_untracked(),
                cc: cc.get_untracked(),
                bcc: bcc.get_untracked(),
                subject: subject.get_untracked(),
                body: body.get_untracked(),
                disposition: Some(disposition.get_untracked()).filter(|d| !d.is_empty()),
            });
        }>
            <h3>"Email"</h3>
            {blocked.clone().map(|why| view! { <p class="notice error blocked" role="alert">{format!("Cannot be sent: {why}")}</p> })}
            {reach.pressure.clone().map(|why| view! { <p class="notice warning pressure">{why}</p> })}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let list = templates.await.unwrap_or_default();
                    (!list.is_empty()).then(|| {
                        let choices = list.clone();
                        view! {
                            <label>"Template "
                                <select name="template" on:change=move |ev| {
                                    let id: i64 = event_target_value(&ev).parse().unwrap_or_default();
                                    if let Some(t) = choices.iter().find(|t| t.id == id) {
                                        if let Some(s) = t.subject.clone().filter(|s| !s.is_empty()) {
                                            subject.set(s);
                                        }
                                        body.set(t.body.clone());
                                    }
                                }>
                                    <option value="">"Insert a template…"</option>
                                    {list.into_iter().map(|t| view! { <option value=t.id.to_string()>{t.name}</option> }).collect_view()}
                                </select>
                            </label>
                        }
                    })
                })}
            </Suspense>
            <label>"To " <input type="email" name="to" prop:value=move || to.get() on:input=move |ev| to.set(event_target_value(&ev))/></label>
            <label>"Cc " <input type="text" name="cc" prop:value=move || cc.get() on:input=move |ev| cc.set(event_target_value(&ev))/></label>
            <label>"Bcc " <input type="text" name="bcc" prop:value=move || bcc.get() on:input=move |ev| bcc.set(event_target_value(&ev))/></label>
            <label>"Subject " <input type="text" name="subject" prop:value=move || subject.get() on:input=move |ev| subject.set(event_target_value(&ev))/></label>
            <div class="field">
                <span class="label" id="ws-body-label">"Body"</span>
                <RichText html=body label="Body" id="ws-body"/>
            </div>
            {(!attachments.is_empty()).then(|| view! { <p class="meta">"Attached: " {attachments.join(", ")}</p> })}
            {(!dispositions.is_empty()).then(|| view! {
                <label>"Disposition "
                    <select name="disposition" on:change=move |ev| disposition.set(event_target_value(&ev))>
                        <option value="">"None"</option>
                        {dispositions.iter().map(|d| view! { <option value=d.clone()>{d.clone()}</option> }).collect_view()}
                    </select>
                </label>
            })}
            <div class="buttons">
                <button type="button" id="ws-preview" on:click=move |_| {
                    previewing.set(true);
                    preview.dispatch(body.get_untracked());
                }>"Preview"</button>
                <button type="submit" class="primary" id="ws-send" disabled=blocked.is_some()>"Send (s)"</button>
            </div>
            <Show when=move || previewing.get()>
                <div class="preview">
                    <p class="meta">{move || format!("To {} · Cc {} · Subject: {}", to.get(), cc.get(), subject.get())}</p>
                    // As the server's sanitiser leaves it, in a frame sandboxed with no
                    // permissions: scripts, forms and navigation cannot run.
                    {move || match preview.value().get() {
                        Some(Ok(html)) => view! { <iframe title="Email preview" sandbox="" srcdoc=html></iframe> }.into_any(),
                        Some(Err(err)) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                        None => view! { <p class="loading">"Preparing the preview…"</p> }.into_any(),
                    }}
                    <button type="button" id="ws-preview-close" on:click=move |_| previewing.set(false)>"Close the preview"</button>
                </div>
            </Show>
            {move || send.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
        </form>
    }
}

/// "Message": a text from a template or typed, its segments counted live.
#[component]
fn SmsPanel(participant: i64, reach: crate::workspace_api::Reach, refresh: RwSignal<u32>) -> impl IntoView {
    let to = RwSignal::new(reach.address.clone().unwrap_or_default());
    let text = RwSignal::new(String::new());
    let send = Action::new(|args: &(i64, String, String)| {
        let (p, to, text) = args.clone();
        send_task_sms(p, to, text)
    });
    // The task stays open: the text is cleared, the thread shows it.
    Effect::new(move || {
        if let Some(Ok(_)) = send.value().get() {
            text.set(String::new());
            refresh.update(|r| *r += 1);
        }
    });
    let templates = Resource::new(|| (), |_| list_templates(Some("sms".into())));
    let blocked = reach.blocked.clone();
    view! {
        <form class="sms" on:submit=move |ev| { ev.prevent_default(); send.dispatch((participant, to.get_untracked(), text.get_untracked())); }>
            <h3>"Message"</h3>
            {blocked.clone().map(|why| view! { <p class="notice error blocked" role="alert">{format!("Cannot be texted: {why}")}</p> })}
            {reach.pressure.clone().map(|why| view! { <p class="notice warning pressure">{why}</p> })}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let list = templates.await.unwrap_or_default();
                    (!list.is_empty()).then(|| {
                        let choices = list.clone();
                        view! {
                            <label>"Template "
                                <select name="sms-template" on:change=move |ev| {
                                    let id: i64 = event_target_value(&ev).parse().unwrap_or_default();
                                    if let Some(t) = choices.iter().find(|t| t.id == id) {
                                        text.set(t.body.clone());
                                    }
                                }>
                                    <option value="">"Insert a template…"</option>
                                    {list.into_iter().map(|t| view! { <option value=t.id.to_string()>{t.name}</option> }).collect_view()}
                                </select>
                            </label>
                        }
                    })
                })}
            </Suspense>
            <label>"To " <input type="tel" name="sms-to" prop:value=move || to.get() on:input=move |ev| to.set(event_target_value(&ev))/></label>
            <textarea name="sms-text" rows="3" aria-label="Text" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))>
                {textarea_text(String::new())}
            </textarea>
            <p class="meta segments">{move || {
                let length = crate::core::sms::measure(&text.get());
                let encoding = match length.encoding { crate::core::sms::SmsEncoding::Gsm7 => "GSM-7", crate::core::sms::SmsEncoding::Ucs2 => "Unicode" };
                format!("{} characters · {} segment(s) · {encoding}", length.units, length.segments)
            }}</p>
            <button type="submit" id="ws-sms-send" disabled=blocked.is_some()>"Send text"</button>
            {move || match send.value().get() {
                Some(Ok(said)) => Some(view! { <p class="notice" role="status">{said}</p> }.into_any()),
                Some(Err(err)) => Some(view! { <ErrorNote message=error_text(&err)/> }.into_any()),
                None => None,
            }}
        </form>
    }
}

/// "Call now": rings the agent, bridges the contact, shows the call's
/// progress from the provider's reports; a `tel:` link without a provider.
#[component]
fn CallPanel(work: Workspace, refresh: RwSignal<u32>) -> impl IntoView {
    let participant = work.task.participant_id;
    let reach = work.call_reach.clone();
    let place = Action::new(|p: &i64| place_task_call(*p));
    let call = RwSignal::new(None::<CallView>);
    Effect::new(move || {
        if let Some(Ok(view)) = place.value().get() {
            call.set(Some(view));
            refresh.update(|r| *r += 1);
        }
    });
    // Once over, the thread shows the call's times.
    Effect::new(move |was_over: Option<bool>| {
        let over = call.with(|c| c.as_ref().is_some_and(CallView::over));
        if over && was_over == Some(false) {
            refresh.update(|r| *r += 1);
        }
        over
    });
    // While the call is not over, ask for its state every two seconds.
    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || {
                if let Some(current) = call.get_untracked().filter(|c| !c.over()) {
                    leptos::task::spawn_local(async move {
                        if let Ok(view) = task_call(current.id).await {
                            call.set(Some(view));
                        }
                    });
                }
            },
            std::time::Duration::from_secs(2),
        );
        if let Ok(handle) = handle {
            on_cleanup(move || handle.clear());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = task_call;
    let is_call = matches!(work.task.kind.as_str(), "call" | "schedule_callback");
    let number = reach.address.clone();
    // The phone as the task was loaded, unless the agent saved one since.
    let (loaded_with_phone, saves) = (work.agent_phone.is_some(), use_context::<SavePhone>());
    let has_phone = move || match saves.and_then(|SavePhone(save)| save.value().get()) {
        Some(Ok(saved)) => saved.is_some(),
        _ => loaded_with_phone,
    };
    view! {
        <div class="call" class:primary-task=is_call>
            <h3>"Call"</h3>
            {reach.blocked.clone().map(|why| view! { <p class="notice error blocked" role="alert">{format!("Cannot be called: {why}")}</p> })}
            {reach.pressure.clone().map(|why| view! { <p class="notice warning pressure">{why}</p> })}
            {work.script.clone().map(|script| view! { <blockquote class="script">{script}</blockquote> })}
            {match (work.provider, reach.blocked.is_none(), number.clone()) {
                (true, true, Some(_)) => view! {
                    <button type="button" class="primary" id="ws-call" disabled=move || !has_phone()
                        on:click=move |_| { place.dispatch(participant); }>"Call now (c)"</button>
                    {move || (!has_phone()).then(|| view! { <span class="meta">" Add your phone above: the call rings it first."</span> })}
                }.into_any(),
                (false, true, Some(number)) => view! {
                    <a class="button" id="ws-call" href=format!("tel:{number}")>{format!("Dial {number}")}</a>
                    <span class="meta">" (no telephony provider is configured)"</span>
                }.into_any(),
                _ => ().into_any(),
            }}
            {move || call.get().map(|c| view! {
                <p class="call-state" data-status=c.status.clone()>
                    {format!("Call {} · started {}", c.status, short(&c.started_at))}
                    {c.answered_at.clone().map(|a| format!(" · answered {}", short(&a)))}
                    {c.ended_at.clone().map(|e| format!(" · ended {}", short(&e)))}
                    {c.duration_secs.map(|d| format!(" · {d} s"))}
                    {c.error.clone().map(|e| format!(" · {e}"))}
                </p>
                {c.contact_leg.clone().map(|leg| view! { <p class="call-state contact-leg" data-status=leg.status.clone()>{leg_text(&leg)}</p> })}
            })}
            {move || place.value().get().and_then(Result::err).map(|err| view! { <ErrorNote message=error_text(&err)/> })}
        </div>
    }
}

/// The contact beside the task: fields, flows, the thread, the timeline.
#[component]
fn ContactContext(work: Workspace, refresh: RwSignal<u32>) -> impl IntoView {
    let contact = work.contact.clone();
    let contact_id = contact.id;
    // Comes with the task, then loads again after each send. Not a
    // resource of its own: made this deep in a server-rendered page, one
    // was seen (about one load in fifteen) to ask the server again while
    // the page hydrated instead of reading what the server had sent with
    // the page, and its suspense then met markup it did not expect, which
    // stops the page's script (the agent spec's thread never updated).
    let thread = RwSignal::new(Ok::<_, ServerFnError>(work.thread.clone()));
    Effect::new(move |seen: Option<u32>| {
        let wanted = refresh.get();
        if seen.is_some_and(|seen| seen != wanted) {
            leptos::task::spawn_local(async move {
                let loaded = crate::workspace_api::contact_thread(contact_id).await;
                // An answer to an older ask never replaces a newer one's.
                if refresh.get_untracked() == wanted {
                    thread.set(loaded);
                }
            });
        }
        wanted
    });
    let fields: Vec<(String, String)> = contact
        .contact
        .fields
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            )
        })
        .collect();
    view! {
        <h3>"Contact"</h3>
        <dl class="fields">
            <dt>"Email"</dt><dd>{contact.contact.email.clone().unwrap_or_else(|| "—".into())}</dd>
            <dt>"Mobile"</dt><dd>{contact.contact.mobile.clone().unwrap_or_else(|| "—".into())}</dd>
            <dt>"Zone"</dt><dd>{contact.contact.timezone.clone().unwrap_or_else(|| "—".into())}</dd>
            {fields.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
        </dl>
        <h3>"Flows"</h3>
        <ul class="flows">
            {contact.participations.iter().map(|p| view! {
                <li>{p.flow_name.clone()} " · " {p.status.clone()} {p.step.clone().map(|s| format!(" at {s}"))}</li>
            }).collect_view()}
        </ul>
        <h3>"Conversation"</h3>
        {move || match thread.get() {
            Ok(items) => view! { <Thread items/> }.into_any(),
            Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
        }}
        <h3>"Timeline"</h3>
        <ul class="timeline">
            {contact.timeline.iter().take(20).map(|t| view! {
                <li>{short(&t.due_at)} " · " {t.flow_name.clone()} " · " {t.step.clone()} " · " {t.outcome.clone()}
                    {t.reason.clone().map(|r| format!(" ({r})"))}</li>
            }).collect_view()}
        </ul>
    }
}

/// Every email, SMS and call with the contact, newest first.
#[component]
pub fn Thread(items: Vec<ThreadItem>) -> impl IntoView {
    if items.is_empty() {
        return view! { <p class="empty">"Nothing sent or received yet."</p> }.into_any();
    }
    view! {
        <ol class="thread">
            {items.into_iter().map(|t| {
                let inbound = t.direction == "in";
                let what = match t.channel.as_str() {
                    "call" => format!("Call {}", t.address),
                    "sms" | "notify_sms" => format!("Text to {}", t.address),
                    "sms_in" => format!("Text from {}", t.address),
                    "note" => "Note".to_owned(),
                    _ => t.subject.clone().unwrap_or_else(|| format!("Email to {}", t.address)),
                };
                let mut marks: Vec<String> = vec![t.status.clone()];
                if let Some(at) = &t.opened_at { marks.push(format!("opened {}", short(at))); }
                if let Some(at) = &t.clicked_at { marks.push(format!("clicked {}", short(at))); }
                if let Some(at) = &t.replied_at { marks.push(format!("replied {}", short(at))); }
                if let Some(at) = &t.answered_at { marks.push(format!("answered {}", short(at))); }
                if let Some(at) = &t.ended_at { marks.push(format!("ended {}", short(at))); }
                if let Some(d) = t.duration_secs { marks.push(format!("{d} s")); }
                if let Some(leg) = &t.contact_leg { marks.push(leg_text(leg)); }
                view! {
                    <li class:inbound=inbound data-channel=t.channel.clone() data-status=t.status.clone()>
                        <span class="when">{short(&t.at)}</span> " "
                        <strong>{what}</strong>
                        {t.agent.clone().map(|a| format!(" · by {a}"))}
                        <span class="meta">{format!(" · {}", marks.join(" · "))}</span>
                        {t.body.clone().map(|b| view! { <p class="body">{b}</p> })}
                        {t.reply_excerpt.clone().map(|b| view! { <p class="body reply">{b}</p> })}
                        {t.notes.clone().map(|n| view! { <p class="notes">"Notes: " {n}</p> })}
                        {t.error.clone().map(|e| view! { <p class="error">{e}</p> })}
                    </li>
                }
            }).collect_view()}
        </ol>
    }
    .into_any()
}
