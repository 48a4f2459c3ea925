//! Contact events (FLOW_FORMAT "Engagement"; DESIGN §10): what a contact
//! did, written once by whoever heard it (the events API; tracked opens and
//! clicks, unsubscribes, bounces and replies write the same rows), then
//! delivered by a worker pass to the contact's active participants.
//!
//! Taking an event is one short insert, in the caller's transaction, and
//! idempotent by the caller's id; a custom event also enrolls its contact
//! into the flows that start on it, there and then (once, with the event).
//! Delivering is a pass like the scheduler's: the oldest pending events,
//! each to every active participant of its contact, each participant
//! written over the revision it was read at. A participant a worker holds
//! (claimed, not yet committed) is left for the next pass, the event
//! staying pending; a participant that already had an event (a row in
//! `participant_events`) is not given it again, so a pass cut short and
//! run again changes nothing twice. The contact's consent changes
//! (unsubscribe, complaint, hard bounce) are applied with or without
//! participants.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use app::core::contact::Contact;
use app::core::engagement::{apply_consent, ContactEvent, Received};
use app::core::engine::{self, ActionRecord, Command, Event, EventEffect, Participant, Status};

use super::writes::{self, Records, StateWrite};
use super::{contacts, load_groups, millis, read_state, Runtime};
use crate::db::{Backend, Conn, Sql};
use crate::error::{Error, Result};

/// Events one delivery pass takes at most.
pub const DELIVERY_BATCH: usize = 1_000;

/// An event to write: about `contact_id`, and about one participant's
/// message when the caller knows it (a tracked open or click).
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub contact_id: i64,
    pub participant_id: Option<i64>,
    pub received: Received,
    /// Who heard it: `api`, `pixel`, `click`, `unsubscribe`, `reply`, `bounce`, `sms`.
    pub source: &'static str,
}

/// How an event was taken: its row, and whether its caller's id had been
/// taken before (then nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stored {
    pub id: i64,
    pub duplicate: bool,
}

/// Rows per insert statement (12 binds each).
const INSERT_CHUNK: usize = 200;

/// Writes `events` in the caller's write transaction, in order. An event
/// whose caller id is already stored (before, or earlier in `events`) is
/// not written again; its first row is returned, marked duplicate. Custom
/// events enroll their contact into the published flows that start on
/// them (re-entry and slow drip apply); a duplicate enrolls no one.
pub async fn record(runtime: &Runtime, conn: &mut Conn, events: &[NewEvent]) -> Result<(Vec<Stored>, usize)> {
    let now = runtime.now();
    // Each event's row when it is a duplicate within `events`; the rest are
    // written unless their caller id is taken (see the insert).
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut fresh: Vec<usize> = Vec::with_capacity(events.len());
    let mut same_as: Vec<(usize, usize)> = Vec::new();
    let mut out: Vec<Option<Stored>> = vec![None; events.len()];
    for (i, event) in events.iter().enumerate() {
        match event.received.id.as_deref() {
            Some(id) if first_of.contains_key(id) => same_as.push((i, first_of[id])),
            Some(id) => {
                first_of.insert(id, i);
                fresh.push(i);
            }
            None => fresh.push(i),
        }
    }
    // An event for a contact without a participant in a flow, and that
    // changes nothing on the contact, has nothing to reach: it is written
    // delivered, and the delivery pass never reads it. (A participant
    // entering later does so after the event, which then does not count
    // for it: FLOW_FORMAT counts custom events from arrival.)
    let mut contacts_of: Vec<i64> = fresh.iter().map(|&i| events[i].contact_id).collect();
    contacts_of.sort_unstable();
    contacts_of.dedup();
    let reachable: HashSet<i64> = if contacts_of.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar::<_, i64>(&format!(
            "SELECT DISTINCT contact_id FROM participants
             WHERE contact_id IN ({}) AND status IN ('ready', 'waiting', 'held') AND step IS NOT NULL",
            crate::db::id_list(&contacts_of)
        ))
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let mut taken: Vec<(usize, &str)> = Vec::new();
    for chunk in fresh.chunks(INSERT_CHUNK) {
        let mut query: Sql = Sql::new(
            "INSERT INTO contact_events (contact_id, participant_id, kind, name, step, body, machine, auto, source, happened_at, received_at, external_id, delivered_at) ",
        );
        query.push_values(chunk, |mut row, &i| {
            let e = &events[i];
            let (machine, auto) = flags(&e.received.event);
            let name = match &e.received.event {
                ContactEvent::Custom { name, .. } => Some(name.clone()),
                _ => None,
            };
            row.push_bind(e.contact_id)
                .push_bind(e.participant_id)
                .push_bind(e.received.event.kind())
                .push_bind(name)
                .push_bind(e.received.event.step().map(str::to_owned))
                .push_bind(serde_json::to_string(&e.received).expect("events serialize"))
                .push_bind(i64::from(machine))
                .push_bind(i64::from(auto))
                .push_bind(e.source)
                .push_bind(millis(e.received.at))
                .push_bind(millis(now))
                .push_bind(e.received.id.clone());
            let consent_written = matches!(e.source, "unsubscribe" | "sms");
            let nothing_to_reach = !reachable.contains(&e.contact_id) && (consent_written || !changes_consent(&e.received.event));
            row.push_bind(nothing_to_reach.then(|| millis(now)));
        });
        // A caller id stored before (or by a transaction committing
        // meanwhile) is not written again: no lookup first, the unique
        // index decides, and only the duplicates are looked up after.
        query.push(" ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING id, external_id");
        let mut rows: Vec<(i64, Option<String>)> = query.build_query_as().fetch_all(&mut *conn).await?;
        // Both engines number one statement's rows in the order written.
        rows.sort_unstable_by_key(|row| row.0);
        let written: HashSet<&str> = rows.iter().filter_map(|row| row.1.as_deref()).collect();
        let mut ids = rows.iter().map(|row| row.0);
        for &i in chunk {
            match events[i].received.id.as_deref() {
                Some(external) if !written.contains(external) => taken.push((i, external)),
                _ => out[i] = Some(Stored { id: ids.next().expect("a row for each event written"), duplicate: false }),
            }
        }
    }
    if !taken.is_empty() {
        let external: Vec<&str> = taken.iter().map(|t| t.1).collect();
        let known = super::import::existing(conn, "SELECT id, external_id FROM contact_events WHERE external_id IN (", &external, "").await?;
        for (i, external) in taken {
            out[i] = Some(Stored { id: known[external], duplicate: true });
        }
    }
    for (i, first) in same_as {
        out[i] = out[first].map(|s| Stored { id: s.id, duplicate: true });
    }
    let fresh: Vec<usize> = fresh.into_iter().filter(|&i| out[i].is_some_and(|s| !s.duplicate)).collect();
    super::rollups::record_events(conn, events, &out).await?;
    // Entry on an event: each new custom event enrolls its contact into
    // the flows starting on its name (looked up once per name).
    let mut starting: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut enrolled = 0;
    for &i in &fresh {
        let ContactEvent::Custom { name, .. } = &events[i].received.event else { continue };
        if !starting.contains_key(name.as_str()) {
            let flows: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM flows WHERE entry_event = $1 AND EXISTS (SELECT 1 FROM flow_versions v WHERE v.flow_id = flows.id)",
            )
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
            starting.insert(name, flows);
        }
        for &flow in &starting[name.as_str()] {
            enrolled += runtime.enroll_in(conn, flow, &[events[i].contact_id]).await?.0.len();
        }
    }
    Ok((out.into_iter().map(|s| s.expect("every event is stored or a duplicate")).collect(), enrolled))
}

/// Does the event change the contact itself (FLOW_FORMAT: consent)?
fn changes_consent(event: &ContactEvent) -> bool {
    matches!(
        event,
        ContactEvent::Unsubscribed { .. } | ContactEvent::Complained { .. } | ContactEvent::Bounced { bounce: app::core::engagement::BounceType::Hard, .. }
    )
}

/// `machine` and `auto`, as the table keeps them for reports.
fn flags(event: &ContactEvent) -> (bool, bool) {
    match event {
        ContactEvent::EmailOpened { machine, .. } | ContactEvent::LinkClicked { machine, .. } => (*machine, false),
        ContactEvent::Replied { auto, .. } => (false, *auto),
        _ => (false, false),
    }
}

/// What one delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Events delivered to every active participant of their contact.
    pub events: usize,
    /// Participants an event moved (met a wait, a held guard, the goal, or
    /// ended them by a reply).
    pub moved: usize,
    /// Events left pending: a participant of theirs was held by a worker.
    pub deferred: usize,
}

/// A participant an event may reach, as read for a pass.
struct Reached {
    id: i64,
    flow_id: i64,
    version: i64,
    contact_id: i64,
    revision: i64,
    state: Participant,
    /// Held by a worker that has not committed yet.
    held: bool,
    /// Changed in this pass (written once, at the end).
    dirty: bool,
}

impl Runtime {
    /// Wakes this process's delivery pass (after events were written).
    pub fn events_arrived(&self) {
        self.events.notify_one();
    }

    /// Resolves when [`Runtime::events_arrived`] was called.
    pub(crate) fn events_signal(&self) -> Arc<tokio::sync::Notify> {
        self.events.clone()
    }

    /// One delivery pass: the oldest pending events (at most
    /// [`DELIVERY_BATCH`]), in one transaction. Safe to run again.
    pub async fn deliver_events(&self) -> Result<Delivered> {
        crate::db::retry_busy("an event delivery pass", || self.try_deliver_events()).await
    }

    /// Delivers until nothing is pending (tests and benchmarks).
    pub async fn deliver_all_events(&self) -> Result<Delivered> {
        let mut total = Delivered::default();
        loop {
            let pass = self.deliver_events().await?;
            total.events += pass.events;
            total.moved += pass.moved;
            total.deferred += pass.deferred;
            if pass.events == 0 {
                return Ok(total);
            }
        }
    }

    async fn try_deliver_events(&self) -> Result<Delivered> {
        let backend = Backend::of(self.pool());
        let mut tx = crate::db::begin_write(self.pool()).await?;
        // Read once the write turn is ours: what it writes happens now.
        let now = self.now();
        // Several workers on PostgreSQL: each takes events no other holds.
        let rows = sqlx::query(&format!(
            "SELECT id, contact_id, participant_id, body, source FROM contact_events WHERE delivered_at IS NULL ORDER BY id LIMIT {DELIVERY_BATCH}{}",
            backend.skip_locked()
        ))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(Delivered::default());
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let received: Received = serde_json::from_str(row.get("body"))
                .map_err(|err| Error::Internal(anyhow::anyhow!("stored event {} unreadable: {err}", row.get::<i64, _>("id"))))?;
            // The unsubscribe page and SMS keywords change consent when they
            // write the event (with its time and source); a later opt-in
            // must not be undone by delivering the older event.
            let consent_written = matches!(row.get::<&str, _>("source"), "unsubscribe" | "sms");
            events.push((row.get::<i64, _>("id"), row.get::<i64, _>("contact_id"), row.get::<Option<i64>, _>("participant_id"), received, consent_written));
        }
        let event_ids: Vec<i64> = events.iter().map(|e| e.0).collect();
        let mut contact_ids: Vec<i64> = events.iter().map(|e| e.1).collect();
        contact_ids.sort_unstable();
        contact_ids.dedup();

        // The contacts' active participants that have entered their flow,
        // locked on PostgreSQL (in id order, as every writer takes them).
        let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let rows = sqlx::query(&format!(
            "SELECT id, flow_id, version, contact_id, revision, state, lease_owner, lease_until FROM participants
             WHERE contact_id IN ({}) AND status IN ('ready', 'waiting', 'held') AND step IS NOT NULL ORDER BY id{lock}",
            crate::db::id_list(&contact_ids)
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut reached: Vec<Reached> = Vec::with_capacity(rows.len());
        for row in &rows {
            let lease_until: Option<i64> = row.get("lease_until");
            reached.push(Reached {
                id: row.get("id"),
                flow_id: row.get("flow_id"),
                version: row.get("version"),
                contact_id: row.get("contact_id"),
                revision: row.get("revision"),
                state: read_state(row.get("state"))?,
                held: row.get::<Option<String>, _>("lease_owner").is_some() && lease_until.is_some_and(|until| until >= millis(now)),
                dirty: false,
            });
        }
        let mut of_contact: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, p) in reached.iter().enumerate() {
            of_contact.entry(p.contact_id).or_default().push(i);
        }
        let had: HashSet<(i64, i64)> = sqlx::query(&format!(
            "SELECT participant_id, event_id FROM participant_events WHERE event_id IN ({})",
            crate::db::id_list(&event_ids)
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
        .collect();

        // Only the contacts an event may change: those with participants
        // to reach, and those whose consent it changes.
        let mut needed: Vec<i64> = reached.iter().map(|p| p.contact_id).collect();
        needed.extend(events.iter().filter(|e| changes_consent(&e.3.event) && !e.4).map(|e| e.1));
        needed.sort_unstable();
        needed.dedup();
        let originals = contacts::load_many(&mut tx, &needed).await?;
        let mut current: HashMap<i64, Contact> = originals.clone();
        let groups = load_groups(&mut tx).await?;
        let mut notes: Vec<(i64, i64, &'static str, Option<String>)> = Vec::new();
        let mut records: Vec<(i64, Vec<ActionRecord>, Vec<Command>)> = Vec::new();
        let mut tally = super::rollups::Tally::default();
        let mut entered = crate::ops::metrics::Entered::default();
        let mut done: Vec<i64> = Vec::with_capacity(events.len());
        let mut outcome = Delivered::default();
        for (event_id, contact_id, only, received, consent_written) in &events {
            let Some(contact) = current.get_mut(contact_id) else {
                done.push(*event_id); // nothing to reach or change (or the contact is gone)
                continue;
            };
            if !consent_written {
                apply_consent(contact, &received.event);
            }
            let mut deferred = false;
            for &i in of_contact.get(contact_id).map(Vec::as_slice).unwrap_or_default() {
                let p = &mut reached[i];
                if only.is_some_and(|only| only != p.id) || had.contains(&(p.id, *event_id)) {
                    continue;
                }
                if p.held {
                    deferred = true;
                    continue;
                }
                let doc = self.version(&mut tx, p.flow_id, p.version).await?;
                let contact = current.get_mut(contact_id).expect("present above");
                let mut step = engine::advance_with(&doc, &groups, &p.state, contact, Event::Engagement { received: received.clone() }, now);
                contacts::note_sends(contact, &mut step.contact);
                let effect = match step.event_effect {
                    Some(EventEffect::Met) => "met",
                    Some(EventEffect::Goal) => "goal",
                    Some(EventEffect::Ignored) | None => "ignored",
                    Some(EventEffect::Recorded) if step.participant.status == Status::Exited => "exited",
                    Some(EventEffect::Recorded) => "recorded",
                };
                if matches!(effect, "met" | "goal" | "exited") {
                    outcome.moved += 1;
                }
                notes.push((p.id, *event_id, effect, p.state.step.clone()));
                if step.participant != p.state || !step.actions.is_empty() || !step.commands.is_empty() {
                    entered.note(p.state.visit, &step);
                    tally.advance(p.flow_id, p.version, &p.state, &step, now);
                    p.state = step.participant.clone();
                    p.dirty = true;
                    records.push((p.id, std::mem::take(&mut step.actions), std::mem::take(&mut step.commands)));
                }
                let opted_out = contact.opted_out.clone();
                *contact = step.contact;
                if *consent_written {
                    contact.opted_out = opted_out; // as the writer left it
                }
            }
            if deferred {
                outcome.deferred += 1;
            } else {
                done.push(*event_id);
            }
        }

        // What the events did, written many participants to a statement.
        let records: Vec<Records> = records.iter().map(|(id, actions, commands)| Records { participant: *id, actions, commands }).collect();
        writes::write_records_many(&mut tx, &records, now).await?;
        tally.write(&mut tx).await?;
        let states: Vec<StateWrite> =
            reached.iter().filter(|p| p.dirty).map(|p| StateWrite { id: p.id, revision: p.revision, state: &p.state }).collect();
        if writes::save_states(&mut tx, &states, now).await? != states.len() {
            // Locked above (PostgreSQL) or the only writer (SQLite): a
            // moved revision means another writer broke the rules.
            return Err(Error::Internal(anyhow::anyhow!("a participant changed during an event delivery pass")));
        }
        let advanced: Vec<i64> = states.iter().map(|s| s.id).collect();
        // Another process sent to a contact meanwhile (an agent's action):
        // a conflict, the pass rolls back and runs again.
        self.commit_contacts(&mut tx, &originals, &current, &advanced, None).await?;
        let at = now.to_string();
        for chunk in notes.chunks(INSERT_CHUNK) {
            let mut query: Sql = Sql::new("INSERT INTO participant_events (participant_id, event_id, effect, step, at) ");
            query.push_values(chunk, |mut row, (participant, event, effect, step)| {
                row.push_bind(*participant).push_bind(*event).push_bind(*effect).push_bind(step.clone()).push_bind(at.clone());
            });
            query.push(" ON CONFLICT DO NOTHING");
            query.build().execute(&mut *tx).await?;
        }
        if !done.is_empty() {
            sqlx::query(&format!("UPDATE contact_events SET delivered_at = $1 WHERE id IN ({})", crate::db::id_list(&done)))
                .bind(millis(now))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        entered.count();
        outcome.events = done.len();
        Ok(outcome)
    }

    /// The events a participant received, oldest first, with what each did.
    pub async fn participant_events(&self, participant: i64) -> Result<Vec<EventNote>> {
        let rows = sqlx::query(
            "SELECT e.body, e.source, pe.effect, pe.step, pe.at FROM participant_events pe JOIN contact_events e ON e.id = pe.event_id
             WHERE pe.participant_id = $1 ORDER BY e.happened_at, e.id LIMIT 1000",
        )
        .bind(participant)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let received: Received = serde_json::from_str(row.get("body"))
                    .map_err(|err| Error::Internal(anyhow::anyhow!("stored event unreadable: {err}")))?;
                Ok(EventNote {
                    at: received.at,
                    event: received.event,
                    source: row.get("source"),
                    effect: row.get("effect"),
                    step: row.get("step"),
                })
            })
            .collect()
    }
}

/// One event on a participant's page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventNote {
    pub at: Timestamp,
    /// As FLOW_FORMAT writes it: `"event": KIND` and its fields.
    #[serde(flatten)]
    pub event: ContactEvent,
    pub source: String,
    /// met, goal, exited, recorded, ignored.
    pub effect: String,
    /// Where the participant was when it came.
    pub step: Option<String>,
}
