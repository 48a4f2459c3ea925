//! The editor's Test run panel: a sample contact (fields filled in, or a
//! stored contact) runs through the draft on the server's engine with a
//! virtual clock. The timeline shows each step's due and done times in the
//! contact's zone, the outcome, the branch taken, why, and the effects that
//! would have been sent. Contact events (an open two hours in, a click on
//! day three) can be added to the run; what each did is listed.

use leptos::prelude::*;

use crate::api::error_text;
use crate::core::contact::Contact;
use crate::core::engine::{ActionRecord, Effect, Outcome};
use crate::core::flow::FlowDocument;
use crate::core::kinds::{ports, StepKind};
use crate::core::matcher_text::{counts_machines, names_step, parse_offset, EventRow, CHANNELS};
use crate::runtime_api::{test_run, TestRunRequest, TestRunResult};

/// Compact, in the contact's zone: `Mon 7 Dec 09:00 CET`.
const SHOWN: &str = "%a %-d %b %H:%M %Z";

/// The events a marketer may add, as the kind select offers them.
const EVENT_KINDS: &[(&str, &str)] = &[
    ("email_opened", "email opened"),
    ("link_clicked", "link clicked"),
    ("replied", "replied"),
    ("bounced", "bounced"),
    ("complained", "marked as spam"),
    ("unsubscribed", "unsubscribed"),
    ("custom", "custom event"),
];

/// `field=value` lines into custom fields; numbers stay numbers.
fn parse_fields(text: &str) -> serde_json::Map<String, serde_json::Value> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let value = match (v.parse::<i64>(), v.parse::<f64>()) {
                (Ok(n), _) => serde_json::Value::from(n),
                (_, Ok(x)) if x.is_finite() => serde_json::Value::from(x),
                _ => serde_json::Value::String(v.to_owned()),
            };
            (k.trim().to_owned(), value)
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn effect_summary(effect: &Effect) -> String {
    match effect {
        Effect::Email { to, subject, .. } => format!("email to {to}: “{subject}”"),
        Effect::Sms { to, text } => format!("SMS to {to}: “{text}”"),
        Effect::Webhook { method, url, .. } => format!("{method} {url}"),
        Effect::NotifyEmail { to, subject, .. } => format!("notify {to} by email: “{subject}”"),
        Effect::NotifySms { to, text } => format!("notify {to} by SMS: “{text}”"),
        Effect::Call { to, .. } => format!("automatic call to {to}"),
        other => other.kind().replace('_', " "),
    }
}

/// The output a branching step (a condition, a `wait_until`, a split…)
/// left by, for the timeline: the wire from it to the next step reached,
/// else (the output leads nowhere, or two outputs lead to the same step)
/// what its record says. `None` for steps with one output, or still pending.
pub fn port_taken(flow: &FlowDocument, actions: &[ActionRecord], index: usize) -> Option<String> {
    let record = actions.get(index)?;
    let step = flow.step(&record.step)?;
    if record.outcome == Outcome::Pending || ports(step).len() < 2 {
        return None;
    }
    if let Some(next) = actions.iter().filter(|a| a.visit > record.visit).min_by_key(|a| a.visit) {
        let wired: Vec<&str> = flow.edges.iter().filter(|e| e.from == record.step && e.to == next.step).map(|e| e.port.as_str()).collect();
        if let [port] = wired[..] {
            return Some(port.to_owned());
        }
    }
    let reason = record.reason.as_deref().unwrap_or_default();
    let port = match step.kind {
        StepKind::WaitUntil if reason.starts_with("met") => "met",
        StepKind::WaitUntil if reason.starts_with("timed out") => "timed_out",
        StepKind::Condition if reason == "criteria met" => "yes",
        StepKind::Condition if reason == "criteria not met" => "no",
        _ => return None,
    };
    Some(port.to_owned())
}

#[component]
pub fn TestRunPanel(
    /// The draft as it is now, as JSON text.
    #[prop(into)]
    document: Signal<String>,
    /// The draft's message steps, `(id, shown name)`, for the events' step choice.
    #[prop(into)]
    message_steps: Signal<Vec<(String, String)>>,
) -> impl IntoView {
    let email = RwSignal::new("sample@example.com".to_owned());
    let mobile = RwSignal::new("+15550100".to_owned());
    let timezone = RwSignal::new("America/New_York".to_owned());
    let fields = RwSignal::new("first_name=Sam\nscore=10".to_owned());
    let lists = RwSignal::new(String::new());
    let contact_id = RwSignal::new(String::new());
    let start = RwSignal::new(String::new());
    let window = RwSignal::new("30d".to_owned());
    let manual_after = RwSignal::new("1h".to_owned());
    let events = RwSignal::new(Vec::<EventRow>::new());
    let refused = RwSignal::new(None::<String>);
    let run = Action::new(move |request: &TestRunRequest| {
        let request = request.clone();
        async move {
            let flow = FlowDocument::from_json(&request.document).ok();
            test_run(request).await.map(|result| (flow, result))
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let rows = events.get_untracked();
        // Said here, before the run: the server would refuse it too.
        if let Some(why) = rows.iter().enumerate().find_map(|(i, row)| parse_offset(&row.after).err().map(|why| format!("Event {}: {why}.", i + 1))) {
            refused.set(Some(why));
            return;
        }
        refused.set(None);
        let sample = Contact {
            email: Some(email.get()).filter(|e| !e.trim().is_empty()),
            mobile: Some(mobile.get()).filter(|m| !m.trim().is_empty()),
            timezone: Some(timezone.get()).filter(|t| !t.trim().is_empty()),
            fields: parse_fields(&fields.get()),
            lists: lists.get().split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect(),
            ..Contact::default()
        };
        run.dispatch(TestRunRequest {
            document: document.get(),
            contact_id: contact_id.get().trim().parse().ok(),
            sample,
            start: Some(start.get()),
            window: window.get(),
            manual_after: Some(manual_after.get()),
            events: rows.iter().map(EventRow::to_event).collect(),
        });
    };
    let input = |label: &'static str, signal: RwSignal<String>, placeholder: &'static str| {
        view! {
            <label>{label}
                <input type="text" placeholder=placeholder prop:value=move || signal.get() on:input=move |ev| signal.set(event_target_value(&ev))/>
            </label>
        }
        .into_any()
    };
    let add_event = move |_| {
        let step = message_steps.with_untracked(|steps| steps.first().map(|(id, _)| id.clone())).unwrap_or_default();
        events.update(|rows| rows.push(EventRow { step, ..EventRow::default() }));
    };
    view! {
        <section class="test-run" aria-label="Test run">
            <h2>"Test run"</h2>
            <form class="test-run-form" on:submit=submit>
                {input("Email", email, "ada@example.com")}
                {input("Mobile", mobile, "+15550100")}
                {input("Time zone", timezone, "Europe/Paris")}
                {input("Lists", lists, "Newsletter, VIP")}
                <label>"Fields (one field=value per line)"
                    <textarea rows="3" prop:value=move || fields.get() on:input=move |ev| fields.set(event_target_value(&ev))></textarea>
                </label>
                {input("…or a stored contact's id", contact_id, "42")}
                {input("Start (RFC 3339, empty = now)", start, "2026-12-01T09:00:00Z")}
                {input("Run for", window, "30d")}
                {input("A person does manual steps after", manual_after, "1h (empty: never)")}
                <fieldset class="test-events">
                    <legend>"Contact events"</legend>
                    <p class="hint">"What the contact does during the run, each at a time after the start (like +2h, +3d or +1d12h)."</p>
                    <For each=move || 0..events.with(Vec::len) key=|i| *i children=move |i| view! { <EventRowForm i events message_steps/> }/>
                    <button type="button" class="add" on:click=add_event>"+ Add an event"</button>
                </fieldset>
                {move || refused.get().map(|why| view! { <p class="notice error" role="alert">{why}</p> })}
                <button type="submit" class="primary" disabled=move || run.pending().get()>
                    {move || if run.pending().get() { "Running…" } else { "Run test" }}
                </button>
            </form>
            {move || run.value().get().map(|result| match result {
                Ok((flow, result)) => view! { <TestRunTimeline result flow/> }.into_any(),
                Err(err) => view! { <p class="notice error" role="alert">{error_text(&err)}</p> }.into_any(),
            })}
        </section>
    }
    .into_any()
}

/// One contact event of the run: when, what, about which message, and
/// what the kind takes besides (a URL, a name, a channel, a bounce type, a
/// machine or auto-reply flag).
#[component]
fn EventRowForm(i: usize, events: RwSignal<Vec<EventRow>>, message_steps: Signal<Vec<(String, String)>>) -> impl IntoView {
    let n = i + 1;
    let label = move |what: &str| format!("Event {n}: {what}");
    let row = move || events.with(|rows| rows.get(i).cloned().unwrap_or_default());
    let edit = move |change: &dyn Fn(&mut EventRow)| {
        events.update(|rows| {
            if let Some(row) = rows.get_mut(i) {
                change(row)
            }
        })
    };
    let kind = Memo::new(move |_| events.with(|rows| rows.get(i).map(|r| r.kind.clone()).unwrap_or_default()));
    let bad_offset = Memo::new(move |_| events.with(|rows| rows.get(i).and_then(|r| parse_offset(&r.after).err())));
    let choose = |choices: Vec<(String, String)>, current: String| {
        choices
            .into_iter()
            .map(|(value, text)| {
                let selected = value == current;
                view! { <option value=value selected=selected>{text}</option> }
            })
            .collect_view()
    };
    // What the kind takes besides the time: drawn again when the kind changes.
    let details = move || {
        let kind = kind.get();
        let step = names_step(&kind).then(|| view! {
            <select aria-label=label("message") on:change=move |ev| { let step = event_target_value(&ev); edit(&|r| r.step = step.clone()) }>
                {move || {
                    let mut choices = vec![(String::new(), "no message".to_owned())];
                    choices.extend(message_steps.get());
                    let current = row().step;
                    if !choices.iter().any(|(id, _)| *id == current) {
                        choices.push((current.clone(), format!("{current} (not a message step)")));
                    }
                    choose(choices, current)
                }}
            </select>
        });
        let detail = match kind.as_str() {
            "link_clicked" | "custom" => {
                let (what, placeholder) = if kind == "custom" { ("event name", "purchased") } else { ("URL", "https://example.com/pricing") };
                Some(view! {
                    <input type="text" aria-label=label(what) placeholder=placeholder prop:value=move || row().detail
                        on:input=move |ev| { let text = event_target_value(&ev); edit(&|r| r.detail = text.clone()) }/>
                }
                .into_any())
            }
            "unsubscribed" | "bounced" => {
                let (what, choices): (&str, Vec<(String, String)>) = if kind == "bounced" {
                    ("bounce type", vec![("soft".into(), "soft bounce".into()), ("hard".into(), "hard bounce".into())])
                } else {
                    ("channel", CHANNELS.iter().map(|c| ((*c).to_owned(), format!("from {c}"))).collect())
                };
                let first = choices[0].0.clone();
                Some(view! {
                    <select aria-label=label(what) on:change=move |ev| { let value = event_target_value(&ev); edit(&|r| r.detail = value.clone()) }>
                        {move || { let current = row().detail; choose(choices.clone(), if current.is_empty() { first.clone() } else { current }) }}
                    </select>
                }
                .into_any())
            }
            _ => None,
        };
        let flag = EventRow::flag_label(&kind).map(|what| {
            let title = if counts_machines(&kind) { "Made by a mail-privacy proxy or link scanner" } else { "An out-of-office or other automatic reply" };
            view! {
                <label class="check" title=title>
                    <input type="checkbox" aria-label=label(what) prop:checked=move || row().flag
                        on:change=move |ev| { let on = event_target_checked(&ev); edit(&|r| r.flag = on) }/>
                    {what}
                </label>
            }
        });
        view! { {step} {detail} {flag} }
    };
    view! {
        <div class="event-row" data-row=n>
            <input type="text" class="offset" aria-label=label("time after the start") placeholder="+2h"
                class:invalid=move || bad_offset.get().is_some()
                prop:value=move || row().after
                on:input=move |ev| { let text = event_target_value(&ev); edit(&|r| r.after = text.clone()) }/>
            <select aria-label=label("kind") on:change=move |ev| {
                let kind = event_target_value(&ev);
                edit(&|r| {
                    r.kind = kind.clone();
                    r.detail.clear();
                    r.flag = false;
                })
            }>
                {move || choose(EVENT_KINDS.iter().map(|(v, t)| ((*v).to_owned(), (*t).to_owned())).collect(), kind.get())}
            </select>
            {details}
            <button type="button" class="remove" aria-label=format!("Remove event {n}")
                on:click=move |_| events.update(|rows| if i < rows.len() { rows.remove(i); })>"×"</button>
            {move || bad_offset.get().map(|why| view! { <p class="field-error">{why}</p> })}
        </div>
    }
    .into_any()
}

#[component]
fn TestRunTimeline(result: TestRunResult, flow: Option<FlowDocument>) -> impl IntoView {
    let TestRunResult { clock, simulation } = result;
    let rows = simulation
        .actions
        .iter()
        .enumerate()
        .map(|(index, a)| {
            let outcome = a.outcome.as_str();
            let port = flow.as_ref().and_then(|flow| port_taken(flow, &simulation.actions, index));
            let taken = port.as_ref().map(|port| {
                view! { <span class="port-taken" title="the output it left by">{format!("→ {}", port.replace('_', " "))}</span> }
            });
            view! {
                <tr class=outcome data-step=a.step.clone() data-port=port.clone()>
                    <td><code>{a.step.clone()}</code></td>
                    <td>{clock.show(a.due_at, SHOWN)}</td>
                    <td>{a.done_at.map(|d| clock.show(d, SHOWN)).unwrap_or_else(|| "—".into())}</td>
                    <td>
                        <span class=format!("pill {outcome}")>{outcome}</span>
                        {taken}
                    </td>
                    <td>{a.reason.clone()} {a.why.clone().map(|why| view! { <details><summary>"why then?"</summary>{why}</details> })}</td>
                </tr>
            }
        })
        .collect_view();
    let effects = simulation
        .effects
        .iter()
        .map(|e| view! { <li data-kind=e.effect.kind()><code>{e.step.clone()}</code> " " {clock.show(e.at, SHOWN)} ": " {effect_summary(&e.effect)}</li> })
        .collect_view();
    let events = (!simulation.events.is_empty()).then(|| {
        let rows = simulation
            .events
            .iter()
            .map(|e| {
                let effect = serde_json::to_value(e.effect).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                view! {
                    <tr data-event=e.event.clone() data-effect=effect.clone()>
                        <td>{clock.show(e.at, SHOWN)}</td>
                        <td>{e.event.replace('_', " ")}</td>
                        <td>{e.step.clone().map(|step| view! { <code>{step}</code> }.into_any()).unwrap_or_else(|| "—".into_any())}</td>
                        <td><span class=format!("pill effect-{effect}")>{effect.clone()}</span></td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <h3>"Events"</h3>
            <table class="timeline events">
                <thead><tr><th>"At"</th><th>"Event"</th><th>"Step"</th><th>"Effect"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        }
    });
    view! {
        <div class="test-run-result">
            <p class="meta">"Ended " <strong class="status">{simulation.status.clone()}</strong> " · times in " {clock.zone.clone()}</p>
            <table class="timeline">
                <thead><tr><th>"Step"</th><th>"Due"</th><th>"Done"</th><th>"Outcome"</th><th>"Why"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            {events}
            <h3>"Would have sent"</h3>
            <ul class="effects">{effects}</ul>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flow() -> FlowDocument {
        FlowDocument::from_value(&json!({
            "steps": [
                {"id": "start", "kind": "start"},
                {"id": "w", "kind": "wait_until"},
                {"id": "c", "kind": "condition"},
                {"id": "t", "kind": "task"},
                {"id": "x", "kind": "exit"}
            ],
            "edges": [
                {"from": "start", "port": "next", "to": "w"},
                {"from": "w", "port": "met", "to": "t"},
                {"from": "w", "port": "timed_out", "to": "c"},
                {"from": "c", "port": "yes", "to": "x"},
                {"from": "c", "port": "no", "to": "x"}
            ]
        }))
        .unwrap()
    }

    fn record(visit: u32, step: &str, outcome: Outcome, reason: Option<&str>) -> ActionRecord {
        serde_json::from_value(json!({
            "visit": visit, "step": step, "kind": "k", "due_at": "2026-12-01T09:00:00Z", "done_at": null,
            "outcome": outcome.as_str(), "reason": reason, "manual": false
        }))
        .unwrap()
    }

    #[test]
    fn the_branch_taken_is_read_from_the_wires_or_the_reason() {
        let flow = flow();
        let met = [record(1, "start", Outcome::Completed, None), record(2, "w", Outcome::Completed, Some("met: email_opened (e1)")), record(3, "t", Outcome::Pending, None)];
        assert_eq!(port_taken(&flow, &met, 0), None, "one output");
        assert_eq!(port_taken(&flow, &met, 1).as_deref(), Some("met"));
        assert_eq!(port_taken(&flow, &met, 2), None, "pending");
        let timed_out = [record(2, "w", Outcome::Completed, Some("timed out")), record(3, "c", Outcome::Completed, Some("criteria not met"))];
        assert_eq!(port_taken(&flow, &timed_out, 0).as_deref(), Some("timed_out"));
        // both of c's outputs lead to x: the reason says which
        let both = [record(3, "c", Outcome::Completed, Some("criteria not met")), record(4, "x", Outcome::Completed, None)];
        assert_eq!(port_taken(&flow, &both, 0).as_deref(), Some("no"));
        let pending = [record(2, "w", Outcome::Pending, None)];
        assert_eq!(port_taken(&flow, &pending, 0), None);
    }

    #[test]
    fn fields_keep_whole_numbers_whole() {
        let fields = parse_fields("first_name=Sam\nscore=10\nratio=0.5\n=x\nbad line");
        assert_eq!(serde_json::Value::Object(fields), json!({"first_name": "Sam", "score": 10, "ratio": 0.5}));
    }
}
