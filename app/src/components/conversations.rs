//! The message list of the participant and contact pages: each message
//! with its sent, delivered, opened, clicked, replied, bounced, complained
//! and unsubscribed times, opens and clicks counted (machines' apart), and
//! each tracked link's clicks. Times read in the contact's zone, named
//! beside each (as the participant's timeline shows its own).

use leptos::prelude::*;

use crate::api::error_text;
use crate::conversations::{contact_conversations, participant_conversations, Conversation, Messages};
use crate::core::calendar::LocalClock;
use crate::pages::ErrorNote;

/// How a time is shown: `2026-11-23 10:00 CET` in the clock's zone.
const SHOWN: &str = "%Y-%m-%d %H:%M %Z";

/// `2026-11-23T09:00:12.5Z` in the clock's zone, its zone named.
fn short(clock: &LocalClock, at: &str) -> String {
    at.parse::<jiff::Timestamp>().map(|at| clock.show(at, SHOWN)).unwrap_or_else(|_| at.to_owned())
}

fn when(clock: &LocalClock, at: &Option<String>) -> String {
    at.as_deref().map(|at| short(clock, at)).unwrap_or_else(|| "—".into())
}

/// At most 160 characters of a reply or a diagnostic, on one line.
fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line
    }
}

/// `3× · +2 machine` beside a time.
fn counted(people: i64, machines: i64) -> Option<String> {
    let mut parts = Vec::new();
    if people > 1 {
        parts.push(format!("{people}×"));
    }
    if machines > 0 {
        parts.push(format!("+{machines} machine"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

#[component]
fn Row(c: Conversation, clock: LocalClock) -> impl IntoView {
    let when = |at: &Option<String>| when(&clock, at);
    let short = |at: &str| short(&clock, at);
    let what = match (&c.subject, c.channel.as_str()) {
        (Some(subject), _) if !subject.is_empty() => subject.clone(),
        (_, "call") => "Automatic call".into(),
        (_, channel) => channel.replace('_', " "),
    };
    let links = (!c.links.is_empty()).then(|| {
        let items = c
            .links
            .iter()
            .map(|l| {
                view! {
                    <li>
                        <span class="url">{l.url.clone()}</span>
                        " " {format!("{} click(s)", l.clicks)}
                        {(l.machine_clicks > 0).then(|| format!(" · +{} machine", l.machine_clicks))}
                    </li>
                }
            })
            .collect_view();
        view! { <details class="links"><summary>{format!("{} tracked link(s)", c.links.len())}</summary><ul>{items}</ul></details> }
    });
    let bounced = c.bounced_at.as_deref().map(|at| format!("{}{}", short(at), c.bounce.as_deref().map(|b| format!(" ({b})")).unwrap_or_default()));
    view! {
        <tr class=format!("conversation {}", c.status) data-conversation=c.id>
            <td>
                <span class="channel">{c.channel.replace('_', " ")}</span> " " {what}
                {c.step.clone().map(|s| view! { " " <code>{s}</code> })}
                <div class="meta">{c.address.clone()} {(!c.tracked && c.channel == "email").then_some(" · not tracked")}</div>
                {links}
            </td>
            <td><span class=format!("pill {}", c.status)>{c.status.clone()}</span>
                {c.error.clone().map(|e| view! { <div class="meta error">{e}</div> })}</td>
            <td data-at="sent">{when(&c.sent_at)}</td>
            <td data-at="delivered">{when(&c.delivered_at)}</td>
            <td data-at="opened">{when(&c.opened_at)} {counted(c.opens, c.machine_opens).map(|t| view! { <div class="meta">{t}</div> })}</td>
            <td data-at="clicked">{when(&c.clicked_at)} {counted(c.clicks, c.machine_clicks).map(|t| view! { <div class="meta">{t}</div> })}</td>
            <td data-at="replied">{when(&c.replied_at)} {c.auto_replied_at.as_deref().map(|at| view! { <div class="meta">{format!("auto-reply {}", short(at))}</div> })}
                {c.reply_excerpt.as_deref().map(|text| view! { <blockquote class="excerpt">{excerpt(text)}</blockquote> })}</td>
            <td data-at="bounced">{bounced.unwrap_or_else(|| "—".into())}
                {c.bounce_diagnostic.as_deref().map(|text| view! { <div class="meta">{excerpt(text)}</div> })}</td>
            <td data-at="complained">{when(&c.complained_at)}</td>
            <td data-at="unsubscribed">{when(&c.unsubscribed_at)}</td>
        </tr>
    }
}

/// The messages of a participant, or of a contact (times in the contact's zone).
#[component]
pub fn ConversationList(#[prop(optional)] participant: Option<i64>, #[prop(optional)] contact: Option<i64>) -> impl IntoView {
    let list = Resource::new(
        move || (participant, contact),
        |(participant, contact)| async move {
            match (participant, contact) {
                (Some(id), _) => participant_conversations(id).await,
                (None, Some(id)) => contact_conversations(id).await,
                (None, None) => Ok(Messages::default()),
            }
        },
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading messages…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(messages) if messages.list.is_empty() => view! { <p class="meta">"No messages yet."</p> }.into_any(),
                    Ok(Messages { clock, list }) => {
                        let zone = clock.zone.clone();
                        let rows = list.into_iter().map(|c| view! { <Row c clock=clock.clone()/> }).collect_view();
                        view! {
                            <table class="conversations">
                                <thead><tr>
                                    <th>"Message"</th><th>"Status"</th><th>"Sent"</th><th>"Delivered"</th><th>"Opened"</th>
                                    <th>"Clicked"</th><th>"Replied"</th><th>"Bounced"</th><th>"Complained"</th><th>"Unsubscribed"</th>
                                </tr></thead>
                                <tbody>{rows}</tbody>
                            </table>
                            <p class="hint">{format!("Times in the contact's zone ({zone}). ")}
                                "Opens and clicks count people; mail-privacy proxies and link scanners are counted apart as machine."</p>
                        }
                        .into_any()
                    }
                    Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_the_contacts_zone_with_the_zone_named() {
        let at = "2026-11-23T09:00:12.5Z";
        let paris = LocalClock::new(Some("Europe/Paris"), [at.parse().unwrap()]);
        assert_eq!(short(&paris, at), "2026-11-23 10:00 CET");
        let july = "2026-07-01T09:00:00Z";
        let paris = LocalClock::new(Some("Europe/Paris"), [july.parse().unwrap()]);
        assert_eq!(when(&paris, &Some(july.into())), "2026-07-01 11:00 CEST");
        let nowhere = LocalClock::new(None, [at.parse().unwrap()]);
        assert_eq!(short(&nowhere, at), "2026-11-23 09:00 UTC");
        assert_eq!(when(&nowhere, &None), "—");
    }
}
