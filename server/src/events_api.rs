//! `POST /api/v1/events`: contact events from other systems (a purchase, a
//! form, a provider's bounce), one or a batch of up to 1,000.
//!
//! ```json
//! {"id": "order-1001", "contact": {"email": "ada@example.com"}, "create_contact": true,
//!  "event": "custom", "name": "purchase", "properties": {"total": 120}, "at": "2026-12-07T09:00:00Z"}
//! ```
//! `contact` names the contact by `id`, `email` (any case) or `mobile`; an
//! unknown one is refused unless `create_contact` is true (email or mobile).
//! `at` defaults to now; `participant` may name the one participant a
//! message event is about. `id` (the caller's) makes a retry harmless: an
//! event whose id was taken before is answered `duplicate` and changes
//! nothing. A batch is all or nothing: one bad event refuses the batch,
//! naming it (`events[3].name`). Accepted events are answered 202 and
//! reach the flows within a moment (`runtime::events`).

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use jiff::Timestamp;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use app::auth::{Access, Viewer};
use app::core::contact::Contact;
use app::core::engagement::{check_event, ContactEvent, Received};
use app::core::limits::EVENTS_PER_BATCH;

use crate::auth::{Auth, Endpoint};
use crate::error::{Error, Json, Result};
use crate::runtime::events::{self, NewEvent};
use crate::runtime::import::{existing, normalize_mobile, refused_email, refused_mobile, valid_email};
use crate::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    vec![Endpoint::new(Method::POST, "/events", Access::Marketer, post_events)]
}

/// Who an event is about, as the caller knows them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactRef {
    id: Option<i64>,
    email: Option<String>,
    mobile: Option<String>,
}

/// One event as posted.
#[derive(Debug, Deserialize)]
struct Posted {
    #[serde(default)]
    id: Option<String>,
    contact: ContactRef,
    #[serde(default)]
    create_contact: bool,
    #[serde(default)]
    at: Option<Timestamp>,
    #[serde(default)]
    participant: Option<i64>,
    #[serde(flatten)]
    event: ContactEvent,
}

fn bad(field: String, code: &'static str, message: impl Into<String>) -> Error {
    Error::InvalidField { code, field, message: message.into() }
}

/// How the caller named the contact, checked: (id, lower-cased email, normalized mobile).
enum Key {
    Id(i64),
    Email(String),
    Mobile(String),
}

fn key_of(at: &str, contact: &ContactRef) -> Result<Key> {
    let field = format!("{at}.contact");
    match (contact.id, contact.email.as_deref(), contact.mobile.as_deref()) {
        (Some(id), None, None) => Ok(Key::Id(id)),
        (None, Some(email), None) => {
            let email = email.trim();
            if !valid_email(email) {
                return Err(refused_email(format!("{field}.email"), email));
            }
            Ok(Key::Email(email.to_lowercase()))
        }
        (None, None, Some(mobile)) => normalize_mobile(mobile.trim())
            .map(Key::Mobile)
            .ok_or_else(|| refused_mobile(format!("{field}.mobile"), mobile)),
        _ => Err(bad(field, "invalid_contact", "Name the contact by exactly one of id, email or mobile.")),
    }
}

/// One checked event: where it was in the body (`events[3]`), how the
/// caller named its contact, and the event itself.
struct Item {
    at: String,
    key: Key,
    create_contact: bool,
    participant: Option<i64>,
    received: Received,
}

async fn post_events(
    State(state): State<AppState>,
    State(auth): State<Auth>,
    Extension(viewer): Extension<Viewer>,
    Json(body): Json<Value>,
) -> Result<Response> {
    auth.limits.events.check(&auth.pool, &viewer.actor()).await?.map_err(Error::RateLimited)?;
    let (items, batch) = match body {
        Value::Array(items) => (items, true),
        one @ Value::Object(_) => (vec![one], false),
        _ => return Err(bad("events".into(), "invalid_events", "Send one event (a JSON object) or a batch (a JSON array of them).")),
    };
    if items.is_empty() || items.len() > EVENTS_PER_BATCH {
        return Err(bad("events".into(), "invalid_events", format!("A batch holds 1 to {EVENTS_PER_BATCH} events; this one has {}.", items.len())));
    }
    let now = state.runtime.now();
    let mut posted = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = if batch { format!("events[{i}]") } else { "event".to_owned() };
        let event: Posted = serde_json::from_value(item).map_err(|err| bad(at.clone(), "invalid_event", format!("{at} cannot be read: {err}.")))?;
        let received = Received { id: event.id, at: event.at.unwrap_or(now), event: event.event };
        check_event(&received).map_err(|err| bad(format!("{at}.{}", err.field), "invalid_event", err.message))?;
        if received.at > now + jiff::SignedDuration::from_mins(5) {
            return Err(bad(format!("{at}.at"), "invalid_event", "An event cannot have happened in the future."));
        }
        let key = key_of(&at, &event.contact)?;
        posted.push(Item { at, key, create_contact: event.create_contact, participant: event.participant, received });
    }

    // A contact created by two batches at once (`create_contact`, several
    // processes on PostgreSQL): the second insert meets the unique email
    // index; run the batch again, and it finds the contact. (Caller ids
    // taken at once need no retry: the insert skips them, see `record`.)
    let mut attempt = 0;
    let (stored, enrolled) = loop {
        attempt += 1;
        match write(&state, &posted).await {
            Err(Error::ContactExists(_)) if attempt < 3 => continue,
            other => break other?,
        }
    };
    state.runtime.events_arrived();
    let accepted = stored.iter().filter(|s| !s.duplicate).count();
    // Counted once per kind and result, not once per event.
    let mut counts: HashMap<(&'static str, bool), u64> = HashMap::new();
    for (s, item) in stored.iter().zip(&posted) {
        *counts.entry((item.received.event.kind(), s.duplicate)).or_default() += 1;
    }
    counts.into_iter().for_each(|((kind, duplicate), n)| crate::ops::metrics::events_received(kind, duplicate, n));
    let events: Vec<Answer> =
        stored.iter().zip(&posted).map(|(s, item)| Answer { id: item.received.id.as_deref(), event_id: s.id, duplicate: s.duplicate }).collect();
    let body = Answered { accepted, duplicates: stored.len() - accepted, enrolled, events };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The answer to a batch: what became of each event, in order.
#[derive(Serialize)]
struct Answered<'a> {
    accepted: usize,
    duplicates: usize,
    enrolled: usize,
    events: Vec<Answer<'a>>,
}

#[derive(Serialize)]
struct Answer<'a> {
    /// The caller's id (null when it sent none).
    id: Option<&'a str>,
    event_id: i64,
    duplicate: bool,
}

/// Finds (or creates) the contacts and writes the events, in one transaction.
async fn write(state: &AppState, posted: &[Item]) -> Result<(Vec<events::Stored>, usize)> {
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    let ids: Vec<i64> = posted.iter().filter_map(|item| if let Key::Id(id) = item.key { Some(id) } else { None }).collect();
    let emails: Vec<&str> = posted.iter().filter_map(|item| if let Key::Email(e) = &item.key { Some(e.as_str()) } else { None }).collect();
    let mobiles: Vec<&str> = posted.iter().filter_map(|item| if let Key::Mobile(m) = &item.key { Some(m.as_str()) } else { None }).collect();
    let mut by_id = std::collections::HashSet::new();
    if !ids.is_empty() {
        let sql = format!("SELECT id FROM contacts WHERE deleted_at IS NULL AND id IN ({})", crate::db::id_list(&ids));
        by_id.extend(sqlx::query_scalar::<_, i64>(&sql).fetch_all(&mut *tx).await?);
    }
    let mut by_email =
        existing(&mut tx, "SELECT id, lower(email) FROM contacts WHERE email IS NOT NULL AND deleted_at IS NULL AND lower(email) IN (", &emails, "")
            .await?;
    let mut by_mobile = existing(
        &mut tx,
        "SELECT min(id), mobile FROM contacts WHERE mobile IS NOT NULL AND deleted_at IS NULL AND mobile IN (",
        &mobiles,
        " GROUP BY mobile",
    )
    .await?;

    let mut events = Vec::with_capacity(posted.len());
    for Item { at, key, create_contact, participant, received } in posted {
        let found = match key {
            Key::Id(id) => by_id.contains(id).then_some(*id),
            Key::Email(email) => by_email.get(email).copied(),
            Key::Mobile(mobile) => by_mobile.get(mobile).copied(),
        };
        let contact_id = match (found, key) {
            (Some(id), _) => id,
            (None, Key::Id(id)) => return Err(bad(format!("{at}.contact.id"), "unknown_contact", format!("There is no contact with id {id}."))),
            (None, _) if !create_contact => {
                return Err(bad(
                    format!("{at}.contact"),
                    "unknown_contact",
                    "No contact has this email or mobile; send \"create_contact\": true to create it.",
                ))
            }
            (None, Key::Email(email)) => {
                let id = crate::runtime::contacts::insert(&mut tx, &Contact { email: Some(email.clone()), ..Contact::default() }).await?;
                by_email.insert(email.clone(), id);
                id
            }
            (None, Key::Mobile(mobile)) => {
                let id = crate::runtime::contacts::insert(&mut tx, &Contact { mobile: Some(mobile.clone()), ..Contact::default() }).await?;
                by_mobile.insert(mobile.clone(), id);
                id
            }
        };
        events.push(NewEvent { contact_id, participant_id: *participant, received: received.clone(), source: "api" });
    }
    let stored = events::record(&state.runtime, &mut tx, &events).await?;
    tx.commit().await?;
    Ok(stored)
}
