//! Engagement: what a contact did after a message reached it (opens,
//! clicks, replies, bounces, complaints, unsubscribes, custom events), as
//! data the engine reads (FLOW_FORMAT.md, "Engagement (v1 additions)").
//!
//! The participant keeps a bounded record of the messages it was sent and
//! the events it received ([`History`]); `wait_until` matchers, the
//! engagement operators of criteria and the flow's goal are answered from
//! that record and the event at hand, never from a clock or a store.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::contact::{combine, criteria_met, meets, Contact};
use crate::core::flow::{Criterion, FlowDocument, Logic, Operator};
use crate::core::kinds::StepKind;

/// Message sends a participant remembers; older ones are forgotten first.
pub const MAX_SENDS: usize = 100;
/// Events a participant remembers; older ones are forgotten first.
pub const MAX_EVENTS: usize = 200;
/// Event ids remembered for idempotency: a re-delivery older than this many
/// later events is no longer recognised.
pub const MAX_IDS: usize = 500;

/// One thing a contact did: `{"event": KIND, ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ContactEvent {
    EmailOpened {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// Made by a mail-privacy proxy, not a person.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        machine: bool,
    },
    LinkClicked {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        #[serde(default)]
        url: String,
        /// Made by a link scanner, not a person.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        machine: bool,
    },
    Replied {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        /// An auto-reply or out-of-office: never counts as a reply.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        auto: bool,
    },
    Bounced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        #[serde(rename = "type", default)]
        bounce: BounceType,
    },
    Complained {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
    },
    Unsubscribed {
        /// email, sms or all.
        #[serde(default = "all_channels")]
        channel: String,
    },
    Custom {
        name: String,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        properties: Map<String, Value>,
    },
}

fn all_channels() -> String {
    "all".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceType {
    /// The address does not exist: it is marked undeliverable.
    Hard,
    #[default]
    Soft,
}

impl ContactEvent {
    /// The `event` name, as FLOW_FORMAT writes it.
    pub fn kind(&self) -> &'static str {
        match self {
            ContactEvent::EmailOpened { .. } => "email_opened",
            ContactEvent::LinkClicked { .. } => "link_clicked",
            ContactEvent::Replied { .. } => "replied",
            ContactEvent::Bounced { .. } => "bounced",
            ContactEvent::Complained { .. } => "complained",
            ContactEvent::Unsubscribed { .. } => "unsubscribed",
            ContactEvent::Custom { .. } => "custom",
        }
    }

    /// The message step the event is about, for message events.
    pub fn step(&self) -> Option<&str> {
        match self {
            ContactEvent::EmailOpened { step, .. }
            | ContactEvent::LinkClicked { step, .. }
            | ContactEvent::Replied { step, .. }
            | ContactEvent::Bounced { step, .. }
            | ContactEvent::Complained { step } => step.as_deref(),
            ContactEvent::Unsubscribed { .. } | ContactEvent::Custom { .. } => None,
        }
    }

    /// Whether a person did it: machine opens and clicks count only when
    /// asked for (`include_machine`), auto-replies never.
    pub fn counts(&self, include_machine: bool) -> bool {
        match self {
            ContactEvent::EmailOpened { machine, .. } | ContactEvent::LinkClicked { machine, .. } => include_machine || !machine,
            ContactEvent::Replied { auto, .. } => !auto,
            _ => true,
        }
    }

    /// A human reply (what `exit_on_reply` and `replied` look for).
    pub fn is_human_reply(&self) -> bool {
        matches!(self, ContactEvent::Replied { auto: false, .. })
    }
}

/// An event as delivered: when it happened and the caller's id (for
/// idempotency), around the event itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Received {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: ContactEvent,
}

/// A message the participant was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub step: String,
    pub at: Timestamp,
}

/// What a participant was sent and what it received, newest last, bounded
/// by [`MAX_SENDS`], [`MAX_EVENTS`] and [`MAX_IDS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sends: Vec<Sent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Received>,
    /// Ids of events already delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

impl History {
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.events.is_empty() && self.ids.is_empty()
    }

    pub fn record_send(&mut self, step: &str, at: Timestamp) {
        self.sends.push(Sent { step: step.to_owned(), at });
        if self.sends.len() > MAX_SENDS {
            self.sends.remove(0);
        }
    }

    /// The first time `step` was sent at or before `at`.
    pub fn sent_before(&self, step: &str, at: Timestamp) -> Option<Timestamp> {
        self.sends.iter().filter(|s| s.step == step && s.at <= at).map(|s| s.at).min()
    }

    pub fn was_sent(&self, step: &str) -> bool {
        self.sends.iter().any(|s| s.step == step)
    }

    /// Delivered before: the same id, or (without an id) the same event at
    /// the same time.
    pub fn is_duplicate(&self, received: &Received) -> bool {
        match &received.id {
            Some(id) => self.ids.iter().any(|seen| seen == id),
            None => self.events.iter().any(|e| e.id.is_none() && e == received),
        }
    }

    pub fn record(&mut self, received: &Received) {
        if let Some(id) = &received.id {
            self.ids.push(id.clone());
            if self.ids.len() > MAX_IDS {
                self.ids.remove(0);
            }
        }
        self.events.push(received.clone());
        if self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
    }
}

/// What `wait_until` waits for, and what a goal may name: an event
/// (`{"event": KIND, "step"?, "url_contains"?, "name"?, "where"?,
/// "include_machine"?}`) or criteria over the contact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Criteria over a custom event's properties.
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub where_: Vec<Criterion>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_machine: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<Criterion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logic: Option<Logic>,
}

/// The event kinds a matcher may name.
pub const EVENT_KINDS: &[&str] = &["email_opened", "link_clicked", "replied", "bounced", "complained", "unsubscribed", "custom"];

impl Matcher {
    /// Does `received` meet this matcher for a participant that began
    /// waiting at `since`? A matcher naming a message step also takes
    /// events after that step's send but before `since`; others (custom
    /// events included) count only from `since`.
    pub fn matches_event(&self, received: &Received, since: Timestamp, history: &History) -> bool {
        let Some(kind) = self.event.as_deref() else { return false };
        let event = &received.event;
        if event.kind() != kind || !event.counts(self.include_machine) {
            return false;
        }
        let in_time = match (self.step.as_deref(), event) {
            (_, ContactEvent::Custom { .. } | ContactEvent::Unsubscribed { .. }) | (None, _) => received.at >= since,
            (Some(step), _) => event.step() == Some(step) && history.sent_before(step, received.at).is_some(),
        };
        if !in_time {
            return false;
        }
        if let (Some(part), ContactEvent::LinkClicked { url, .. }) = (self.url_contains.as_deref(), event) {
            if !url.to_lowercase().contains(&part.to_lowercase()) {
                return false;
            }
        }
        if let ContactEvent::Custom { name, properties } = event {
            if self.name.as_deref().is_some_and(|wanted| wanted != name) {
                return false;
            }
            if !self.where_.is_empty() {
                let props = Contact { fields: properties.clone(), ..Contact::default() };
                if !criteria_met(&props, &self.where_, None) {
                    return false;
                }
            }
        }
        true
    }

    /// The event already recorded that meets this matcher, if any.
    pub fn met_by_history<'h>(&self, history: &'h History, since: Timestamp) -> Option<&'h Received> {
        history.events.iter().find(|e| self.matches_event(e, since, history))
    }

    /// A criteria matcher over the contact (re-checked when it changes).
    pub fn is_criteria(&self) -> bool {
        self.event.is_none()
    }

    /// Criteria matchers: do the criteria hold now?
    pub fn criteria_hold(&self, contact: &Contact, history: &History, now: Timestamp) -> bool {
        self.is_criteria() && !self.criteria.is_empty() && criteria_met_at(contact, history, now, &self.criteria, self.logic.as_ref())
    }
}

/// Does the participant's record meet an engagement criterion at `now`?
/// `value` is a step id or `any` (any message step it was sent); for
/// `unsubscribed` a channel; for `did_event` an event name.
pub fn engagement_met(contact: &Contact, history: &History, now: Timestamp, criterion: &Criterion) -> bool {
    let value = criterion.value.as_ref().and_then(Value::as_str).unwrap_or_default().trim();
    let about = |event: &Received| {
        let step = event.event.step();
        step.is_some_and(|s| value == "any" && history.was_sent(s) || s == value)
    };
    let happened = |wanted: &dyn Fn(&ContactEvent) -> bool| {
        history
            .events
            .iter()
            .any(|e| e.at <= now && about(e) && e.event.counts(criterion.include_machine) && wanted(&e.event))
    };
    let opened = || happened(&|e| matches!(e, ContactEvent::EmailOpened { .. }));
    let clicked = || {
        let part = criterion.url_contains.as_deref().unwrap_or_default().to_lowercase();
        happened(&|e| matches!(e, ContactEvent::LinkClicked { url, .. } if url.to_lowercase().contains(&part)))
    };
    let replied = || happened(&|e| e.is_human_reply());
    let did = || {
        let from = criterion.within.as_ref().and_then(crate::core::engine::duration).map(|d| now - d);
        history.events.iter().any(|e| {
            matches!(&e.event, ContactEvent::Custom { name, .. } if name == value)
                && e.at <= now
                && from.is_none_or(|from| e.at >= from)
        })
    };
    match criterion.op {
        Operator::Opened => opened(),
        Operator::NotOpened => !opened(),
        Operator::Clicked => clicked(),
        Operator::NotClicked => !clicked(),
        Operator::Replied => replied(),
        Operator::NotReplied => !replied(),
        Operator::Bounced => happened(&|e| matches!(e, ContactEvent::Bounced { .. })),
        Operator::Unsubscribed => {
            let out = &contact.opted_out;
            match value {
                "any" => out.iter().any(|c| !c.starts_with(crate::core::contact::UNDELIVERABLE_PREFIX)),
                "all" => out.contains("all"),
                channel => out.contains("all") || out.contains(channel),
            }
        }
        Operator::DidEvent => did(),
        Operator::DidNotEvent => !did(),
        _ => meets(contact, criterion),
    }
}

/// [`criteria_met`] with the engagement operators answered from `history`.
pub fn criteria_met_at(contact: &Contact, history: &History, now: Timestamp, criteria: &[Criterion], logic: Option<&Logic>) -> bool {
    let results: Vec<bool> = criteria.iter().map(|c| engagement_met(contact, history, now, c)).collect();
    combine(&results, logic)
}

/// What an event changes on the contact, with or without a participant:
/// an unsubscribe turns that channel's consent off, a complaint email's,
/// and a hard bounce marks the email address undeliverable. True when the
/// contact changed.
pub fn apply_consent(contact: &mut Contact, event: &ContactEvent) -> bool {
    match event {
        ContactEvent::Unsubscribed { channel } => contact.opted_out.insert(channel.clone()),
        ContactEvent::Complained { .. } => contact.opted_out.insert("email".into()),
        ContactEvent::Bounced { bounce: BounceType::Hard, .. } => match contact.email.clone().filter(|e| !e.trim().is_empty()) {
            Some(email) => {
                let before = contact.opted_out.len();
                contact.mark_undeliverable(&email);
                contact.opted_out.len() != before
            }
            None => false,
        },
        _ => false,
    }
}

/// Does `event` enrol its contact into `flow` (a start with `entry:
/// "event"` naming this custom event)? Re-entry and slow drip are the
/// caller's to apply.
pub fn enrolls(flow: &FlowDocument, event: &ContactEvent) -> bool {
    let ContactEvent::Custom { name, .. } = event else { return false };
    flow.steps.iter().any(|s| {
        s.kind == StepKind::Start && s.setting_str("entry") == Some("event") && s.setting_str("event") == Some(name.as_str())
    })
}

/// The message steps (send_email, send_sms) of `flow`, which engagement
/// matchers and operators may name.
pub fn is_message_step(flow: &FlowDocument, id: &str) -> bool {
    flow.step(id).is_some_and(|s| matches!(s.kind, StepKind::SendEmail | StepKind::SendSms))
}


/// An event in a few words, for timelines: `opened e1`, `clicked
/// https://x.test/pricing in e1`, `purchase {"total":120}`.
pub fn describe_event(event: &ContactEvent) -> String {
    let about = |step: &Option<String>| step.as_deref().map(|s| format!(" {s}")).unwrap_or_default();
    let machine = |m: &bool| if *m { " (machine)" } else { "" };
    match event {
        ContactEvent::EmailOpened { step, machine: m } => format!("opened{}{}", about(step), machine(m)),
        ContactEvent::LinkClicked { step, url, machine: m } => {
            format!("clicked {url}{}{}", step.as_deref().map(|s| format!(" in {s}")).unwrap_or_default(), machine(m))
        }
        ContactEvent::Replied { step, auto } => format!("{}{}", if *auto { "auto-replied to" } else { "replied to" }, about(step)),
        ContactEvent::Bounced { step, bounce } => {
            format!("{} bounce{}", if *bounce == BounceType::Hard { "hard" } else { "soft" }, about(step))
        }
        ContactEvent::Complained { step } => format!("complained about{}", about(step)),
        ContactEvent::Unsubscribed { channel } => format!("unsubscribed from {channel}"),
        ContactEvent::Custom { name, properties } if properties.is_empty() => name.clone(),
        ContactEvent::Custom { name, properties } => {
            let mut text = serde_json::to_string(properties).expect("maps serialize");
            if text.chars().count() > 120 {
                text = format!("{}…", text.chars().take(120).collect::<String>());
            }
            format!("{name} {text}")
        }
    }
}

/// What an event did to a participant, in a few words (`effect` as the
/// runtime records it: met, goal, exited, recorded, ignored, with the step
/// the participant was at).
pub fn describe_effect(effect: &str, step: Option<&str>) -> String {
    let at = step.unwrap_or("?");
    match effect {
        "met" => format!("met wait {at}"),
        "goal" => "goal reached".into(),
        "exited" => "exited: replied".into(),
        "recorded" => format!("recorded; not waiting on it (at {at})"),
        _ => "ignored: not about this participant's messages".into(),
    }
}

/// Why an event cannot be taken: the field (as the caller wrote it) and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEvent {
    pub field: String,
    pub message: String,
}

/// Is `name` usable as a custom event's name: 1 to 64 letters, digits and
/// `_ . - :` (what a flow's `did_event` and `entry` can name unambiguously).
pub fn valid_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= crate::core::limits::EVENT_NAME
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'))
}

/// Checks an event against the limits of `app::core::limits` and the names
/// FLOW_FORMAT allows, before it is stored.
pub fn check_event(received: &Received) -> Result<(), BadEvent> {
    use crate::core::limits::{self, check};
    let bad = |field: &str, message: String| Err(BadEvent { field: field.to_owned(), message });
    let too_long = |err: limits::TooLong| BadEvent { field: err.field.clone(), message: err.to_string() };
    if let Some(id) = &received.id {
        if id.trim().is_empty() {
            return bad("id", "An event's id, when given, may not be empty.".into());
        }
        check("id", id, limits::EVENT_ID).map_err(too_long)?;
    }
    if let Some(step) = received.event.step() {
        check("step", step, limits::STEP_ID).map_err(too_long)?;
    }
    match &received.event {
        ContactEvent::Custom { name, properties } => {
            if !valid_event_name(name) {
                return bad(
                    "name",
                    format!("“{}” is not an event name: use 1 to 64 letters, digits and _ . - :", name.chars().take(80).collect::<String>()),
                );
            }
            let text = serde_json::to_string(properties).expect("maps serialize");
            check("properties", &text, limits::EVENT_PROPERTIES).map_err(too_long)?;
        }
        ContactEvent::LinkClicked { url, .. } => check("url", url, limits::EVENT_URL).map_err(too_long)?,
        ContactEvent::Unsubscribed { channel } if !matches!(channel.as_str(), "email" | "sms" | "call" | "all") => {
            return bad("channel", format!("“{channel}” is not a channel: use email, sms, call or all."));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod checks {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> Received {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn events_and_effects_read_as_a_timeline_says_them() {
        let text = |v| describe_event(&event(v).event);
        assert_eq!(text(json!({"at": "2026-12-07T09:00:00Z", "event": "email_opened", "step": "e1", "machine": true})), "opened e1 (machine)");
        assert_eq!(text(json!({"at": "2026-12-07T09:00:00Z", "event": "link_clicked", "step": "e1", "url": "https://x.test/p"})), "clicked https://x.test/p in e1");
        assert_eq!(text(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "purchase", "properties": {"total": 120}})), "purchase {\"total\":120}");
        assert_eq!(text(json!({"at": "2026-12-07T09:00:00Z", "event": "bounced", "step": "e2", "type": "hard"})), "hard bounce e2");
        assert!(text(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "p", "properties": {"k": "v".repeat(300)}})).ends_with('…'));
        assert_eq!(describe_effect("met", Some("w2")), "met wait w2");
        assert_eq!(describe_effect("goal", Some("w2")), "goal reached");
        assert!(describe_effect("recorded", Some("e3")).contains("not waiting"));
    }

    #[test]
    fn events_are_checked_against_their_limits_and_names() {
        let ok = event(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "order.paid", "properties": {"total": 12}}));
        assert_eq!(check_event(&ok), Ok(()));
        let field = |value| check_event(&event(value)).unwrap_err().field;
        assert_eq!(field(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "has space"})), "name");
        assert_eq!(field(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": ""})), "name");
        assert_eq!(field(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "<b>x</b>"})), "name");
        assert_eq!(field(json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "x".repeat(65)})), "name");
        let big = json!({"at": "2026-12-07T09:00:00Z", "event": "custom", "name": "p", "properties": {"blob": "y".repeat(17_000)}});
        assert_eq!(field(big), "properties");
        assert_eq!(field(json!({"id": "", "at": "2026-12-07T09:00:00Z", "event": "custom", "name": "p"})), "id");
        assert_eq!(field(json!({"id": "i".repeat(129), "at": "2026-12-07T09:00:00Z", "event": "custom", "name": "p"})), "id");
        assert_eq!(field(json!({"at": "2026-12-07T09:00:00Z", "event": "unsubscribed", "channel": "fax"})), "channel");
        assert_eq!(field(json!({"at": "2026-12-07T09:00:00Z", "event": "link_clicked", "url": "u".repeat(2_049)})), "url");
        assert!(valid_event_name("form:submitted-v2") && valid_event_name("übung"));
    }
}
