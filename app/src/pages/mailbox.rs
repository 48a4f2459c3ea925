//! "Bounces and replies" (admins): the mailbox bounces, complaints and
//! replies arrive in (read over IMAP), how the last poll went and what it
//! found, and the email providers' webhooks (Amazon SES, SendGrid,
//! Postmark, Mailgun). Passwords and keys are write-only.

use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::Value;

use crate::api::error_text;
use crate::mailbox_api::{mailbox_settings, PollMailbox, SaveEmailWebhook, SaveMailbox};
use crate::pages::ErrorNote;

/// `2026-11-22T13:26:30.857Z` as `2026-11-22 13:26 UTC`.
fn when(timestamp: &str) -> String {
    timestamp.parse::<jiff::Timestamp>().map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_else(|_| timestamp.to_owned())
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

#[component]
pub fn MailboxPage() -> impl IntoView {
    let save = ServerAction::<SaveMailbox>::new();
    let hooks = ServerAction::<SaveEmailWebhook>::new();
    let poll = ServerAction::<PollMailbox>::new();
    let settings = Resource::new(move || (save.version().get(), hooks.version().get(), poll.version().get()), |_| mailbox_settings());
    view! {
        <Title text="Bounces and replies"/>
        <section class="page mailbox-settings">
            <div class="page-head"><h1>"Bounces and replies"</h1></div>
            <p class="hint">"What comes back about the emails flows send: bounces (hard ones mark the address undeliverable), "
                "spam complaints (email consent off) and replies (auto-replies are flagged and never count as a reply). "
                "They reach the conversation record, the contact and the participants waiting on them. "
                "Passwords and keys are stored encrypted and never shown again: leave a field empty to keep the stored one."</p>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let all: Value = match settings.await {
                        Ok(text) => serde_json::from_str(&text).unwrap_or_default(),
                        Err(err) => return view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    };
                    let mailbox = all.get("mailbox").cloned().unwrap_or_default();
                    let webhooks = all.get("webhooks").cloned().unwrap_or_default();
                    view! {
                        {mailbox_form(&mailbox, save, poll)}
                        {mailbox_log(&mailbox)}
                        <h2>"Provider webhooks"</h2>
                        <p class="hint">"When mail goes out through a provider, point its event webhook at the address shown; "
                            "each request is checked against the provider's signature (or credentials) before anything is recorded."</p>
                        {outcome(move || hooks.value().get(), "webhooks")}
                        {["ses", "sendgrid", "postmark", "mailgun"].map(|provider| webhook_form(provider, webhooks.get(provider).cloned().unwrap_or_default(), hooks)).into_iter().collect_view()}
                    }
                    .into_any()
                })}
            </Transition>
        </section>
    }
}

/// What the last submission of a form did: "Saved.", or why not.
fn outcome(last: impl Fn() -> Option<Result<(), ServerFnError>> + Send + Sync + 'static, form: &'static str) -> impl IntoView {
    move || {
        last().map(|result| match result {
            Ok(()) => view! { <p class="notice ok" role="status" data-saved=form>"Saved."</p> }.into_any(),
            Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
        })
    }
}

fn mailbox_form(current: &Value, save: ServerAction<SaveMailbox>, poll: ServerAction<PollMailbox>) -> impl IntoView {
    let tls = text(current, "tls");
    let after = text(current, "after");
    let password_set = flag(current, "password_set");
    let port = Some(text(current, "port")).filter(|p| !p.is_empty()).unwrap_or_else(|| "993".into());
    let folder = Some(text(current, "folder")).filter(|f| !f.is_empty()).unwrap_or_else(|| "INBOX".into());
    let poll_secs = Some(text(current, "poll_secs")).filter(|p| !p.is_empty()).unwrap_or_else(|| "60".into());
    let soft = Some(text(current, "soft_bounce_limit")).filter(|p| !p.is_empty()).unwrap_or_else(|| "3".into());
    let (enabled, host, username, move_to) = (flag(current, "enabled"), text(current, "host"), text(current, "username"), text(current, "move_to"));
    let ca_file = text(current, "ca_file");
    view! {
        <h2>"Bounce and reply mailbox (IMAP)"</h2>
        {outcome(move || save.value().get(), "mailbox")}
        <ActionForm action=save attr:class="stack smtp" attr:data-form="mailbox">
            <label class="check"><input type="checkbox" name="mailbox[enabled]" value="on" checked=enabled/> " Read this mailbox"</label>
            <label>"Host" <input name="mailbox[host]" value=host placeholder="imap.example.com"/></label>
            <label>"Port" <input type="number" name="mailbox[port]" min="1" max="65535" value=port required/></label>
            <label>"Security"
                <select name="mailbox[tls]">
                    <option value="tls" selected=tls == "tls" || tls.is_empty()>"TLS (port 993)"</option>
                    <option value="starttls" selected=tls == "starttls">"STARTTLS (port 143)"</option>
                    <option value="none" selected=tls == "none">"None (a server on this machine only)"</option>
                </select>
            </label>
            <label>"CA certificates to trust (a PEM file's absolute path on the server; empty: the public roots)"
                <input name="mailbox[ca_file]" value=ca_file placeholder="/etc/waymark/imap-ca.pem"/>
            </label>
            <label>"User name" <input name="mailbox[username]" value=username autocomplete="off"/></label>
            <label>{if password_set { "Password (stored; empty keeps it)" } else { "Password" }}
                // Emptied after each save: the view is rebuilt in place, keeping what was typed.
                <input type="password" name="mailbox[password]" autocomplete="new-password" prop:value=move || { save.version().get(); String::new() }/>
            </label>
            {password_set.then(|| view! { <label class="check"><input type="checkbox" name="mailbox[clear_password]" value="on"/> " Remove the stored password"</label> })}
            <label>"Folder" <input name="mailbox[folder]" value=folder required/></label>
            <label>"Read every (seconds)" <input type="number" name="mailbox[poll_secs]" min="10" max="86400" value=poll_secs required/></label>
            <label>"Handled messages"
                <select name="mailbox[after]">
                    <option value="flag" selected=after != "move">"Flag as read, leave in the folder"</option>
                    <option value="move" selected=after == "move">"Move to another folder"</option>
                </select>
            </label>
            <label>"Folder to move them to" <input name="mailbox[move_to]" value=move_to placeholder="Processed"/></label>
            <label>"Soft bounces in a row that mark an address undeliverable (0: never)"
                <input type="number" name="mailbox[soft_bounce_limit]" min="0" max="20" value=soft required/>
            </label>
            <button type="submit" class="primary">"Save mailbox"</button>
        </ActionForm>
        <ActionForm action=poll attr:class="inline-form" attr:data-form="poll">
            <button type="submit">"Read the mailbox now"</button>
        </ActionForm>
        {move || poll.value().get().map(|result| match result {
            Ok(said) => view! { <p class="notice" role="status" data-polled="">{said}</p> }.into_any(),
            Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
        })}
    }
}

fn mailbox_log(current: &Value) -> impl IntoView {
    let status = current.get("status").cloned().unwrap_or_default();
    let last = text(&status, "last_poll_at");
    let error = text(&status, "last_error");
    let handled = status.get("handled").and_then(Value::as_i64).unwrap_or(0);
    let recent: Vec<Value> = current.get("recent").and_then(Value::as_array).cloned().unwrap_or_default();
    view! {
        <h3>"Last read"</h3>
        <p class="mailbox-status" data-handled=handled>
            {if last.is_empty() { "Never read yet.".to_owned() } else { format!("{} · {handled} message(s) handled in all", when(&last)) }}
        </p>
        {(!error.is_empty()).then(|| view! { <p class="notice error" role="alert" data-mailbox-error="">{error.clone()}</p> })}
        {if recent.is_empty() {
            view! { <p class="empty">"No message handled yet."</p> }.into_any()
        } else {
            view! {
                <table class="mailbox-log">
                    <thead><tr><th>"When"</th><th>"What"</th><th>"Found"</th></tr></thead>
                    <tbody>{recent.into_iter().map(|row| view! {
                        <tr data-kind=text(&row, "kind")>
                            <td>{when(&text(&row, "handled_at"))}</td>
                            <td><span class="pill">{text(&row, "kind").replace('_', " ")}</span></td>
                            <td>{text(&row, "note")}</td>
                        </tr>
                    }).collect_view()}</tbody>
                </table>
            }.into_any()
        }}
    }
}

fn webhook_form(provider: &'static str, current: Value, save: ServerAction<SaveEmailWebhook>) -> impl IntoView {
    let configured = flag(&current, "configured");
    let path = text(&current, "webhook_path");
    let (title, key_label, key_set) = match provider {
        "ses" => ("Amazon SES (through SNS)", "", false),
        "sendgrid" => ("SendGrid", "Verification key (Mail Settings → Signed Event Webhook)", flag(&current, "public_key_set")),
        "postmark" => ("Postmark", "Password or header value", flag(&current, "password_set")),
        _ => ("Mailgun", "HTTP webhook signing key", flag(&current, "signing_key_set")),
    };
    let arns = current.get("topic_arns").and_then(Value::as_array).map(|list| list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n")).unwrap_or_default();
    let auth = text(&current, "auth");
    view! {
        <div class="provider-hook" data-provider=provider>
            <h3>{title} " " <span class=if configured { "pill completed" } else { "pill pending" }>{if configured { "set up" } else { "not set up" }}</span></h3>
            <ActionForm action=save attr:class="stack smtp">
                <input type="hidden" name="provider" value=provider/>
                <p class="hint">"Webhook address: " <code>{path}</code></p>
                {(provider == "ses").then(|| view! {
                    <label>"SNS topic ARNs (one per line)"
                        <textarea name="topic_arns" rows="3" placeholder="arn:aws:sns:us-east-1:123456789012:ses-feedback">{super::textarea_text(arns.clone())}</textarea>
                    </label>
                    <p class="hint">"Messages are checked with Amazon's signing certificate (fetched from sns.<region>.amazonaws.com over HTTPS); the subscription is confirmed by itself."</p>
                })}
                {(provider == "postmark").then(|| view! {
                    <label>"Credentials"
                        <select name="auth">
                            <option value="basic" selected=auth != "header">"HTTP Basic (user:password@ in the webhook URL)"</option>
                            <option value="header" selected=auth == "header">"A custom header"</option>
                        </select>
                    </label>
                    <label>"User name (Basic)" <input name="username" value=text(&current, "username") autocomplete="off"/></label>
                    <label>"Header name" <input name="header" value=text(&current, "header") placeholder="X-Waymark-Token"/></label>
                })}
                {(provider != "ses").then(|| view! {
                    <label>{if key_set { format!("{key_label} (stored; empty keeps it)") } else { key_label.to_owned() }}
                        <input type="password" name="key" autocomplete="new-password" prop:value=move || { save.version().get(); String::new() }/>
                    </label>
                })}
                {configured.then(|| view! { <label class="check"><input type="checkbox" name="remove" value="on"/> " Remove this webhook"</label> })}
                <button type="submit">"Save " {title}</button>
            </ActionForm>
        </div>
    }
}
