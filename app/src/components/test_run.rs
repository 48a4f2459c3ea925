//! The editor's Test run panel: a sample contact (fields filled in, or a
//! stored contact) runs through the draft on the server's engine with a
//! virtual clock. The timeline shows each step's due and done times in the
//! contact's zone, the outcome, why, and the effects that would have been sent.

use leptos::prelude::*;

use crate::api::error_text;
use crate::core::contact::Contact;
use crate::core::engine::Effect;
use crate::runtime_api::{test_run, TestRunRequest, TestRunResult};

/// Compact, in the contact's zone: `Mon 7 Dec 09:00 CET`.
const SHOWN: &str = "%a %-d %b %H:%M %Z";

/// `field=value` lines into custom fields; numbers stay numbers.
fn parse_fields(text: &str) -> serde_json::Map<String, serde_json::Value> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let value = v.parse::<f64>().map(serde_json::Value::from).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
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

#[component]
pub fn TestRunPanel(
    /// The draft as it is now, as JSON text.
    #[prop(into)]
    document: Signal<String>,
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
    let run = Action::new(move |request: &TestRunRequest| {
        let request = request.clone();
        async move { test_run(request).await }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
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
                <button type="submit" class="primary" disabled=move || run.pending().get()>
                    {move || if run.pending().get() { "Running…" } else { "Run test" }}
                </button>
            </form>
            {move || run.value().get().map(|result| match result {
                Ok(result) => view! { <TestRunTimeline result/> }.into_any(),
                Err(err) => view! { <p class="notice error" role="alert">{error_text(&err)}</p> }.into_any(),
            })}
        </section>
    }
    .into_any()
}

#[component]
fn TestRunTimeline(result: TestRunResult) -> impl IntoView {
    let TestRunResult { clock, simulation } = result;
    let rows = simulation
        .actions
        .iter()
        .map(|a| {
            let outcome = a.outcome.as_str();
            view! {
                <tr class=outcome data-step=a.step.clone()>
                    <td><code>{a.step.clone()}</code></td>
                    <td>{clock.show(a.due_at, SHOWN)}</td>
                    <td>{a.done_at.map(|d| clock.show(d, SHOWN)).unwrap_or_else(|| "—".into())}</td>
                    <td><span class=format!("pill {outcome}")>{outcome}</span></td>
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
    view! {
        <div class="test-run-result">
            <p class="meta">"Ended " <strong class="status">{simulation.status.clone()}</strong> " · times in " {clock.zone.clone()}</p>
            <table class="timeline">
                <thead><tr><th>"Step"</th><th>"Due"</th><th>"Done"</th><th>"Outcome"</th><th>"Why"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <h3>"Would have sent"</h3>
            <ul class="effects">{effects}</ul>
        </div>
    }
}
