//! Rollups (DESIGN §12): counters per flow, version, step, UTC day and
//! metric, kept in the same transaction as the writes they count, so that
//! reports read a few hundred rows instead of the raw timeline.
//!
//! What each metric counts (`step` is '' for the flow as a whole):
//!
//! | metric | step | counts |
//! | --- | --- | --- |
//! | `entered` | '' | participants entering the flow (their first step run) |
//! | `completed`, `converted`, `exited`, `failed`, `cancelled` | where it ended | participants whose status became that (less those a bulk action took back) |
//! | `reached` | the step | timeline records made (one per visit) |
//! | `passed` | the step | timeline records closed completed or skipped |
//! | `step_failed` | the step | timeline records closed failed |
//! | `sent` | message step | emails and SMS handed to the outbox |
//! | `sent_email`, `sent_sms` | '' | the same, per channel (the home dashboard) |
//! | `delivered` | message step | messages the provider accepted (the send step completed) |
//! | `branch_entered`, `branch_converted` | `split/port` | participants taking a split's branch; of them, those converting later |
//! | `branch_clicked`, `branch_replied` | `split/port` | of them, those who clicked (replied) by a person after taking the branch, once |
//! | `opened`, `clicked`, `replied`, `bounced`, `complained`, `unsubscribed` | message step | participants for whom it happened (the first event per participant and step; `machine` apart) |
//!
//! Engagement is counted on the day the event happened, the rest on the
//! day of the write. `machine` is 1 for a privacy proxy's open, a link
//! scanner's click, an auto-reply. Unsubscribes name no step: they go to
//! the participant's latest message.
//!
//! Bulk actions (`runtime::bulk`) count like the engine: a participant a
//! run cancels, moves out (exited) or deletes counts as `cancelled` or
//! `exited` at its step; one a run takes out of a finished status (reset,
//! ready, pause, and their undo) is taken off that status's count on the
//! day of the run, so that `entered` less the finishing counts is always
//! who is still in the flow. A suppressed participant counts as the
//! status it keeps. See [`BulkChanges`]. A step a reset runs again is
//! reached (and passed) again: another visit, though the timeline keeps
//! it as the same record.
//!
//! This module only adds to counters: it never reads them back to decide
//! anything, and nothing but these counters is written here.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use sqlx::Row;

use app::core::engagement::ContactEvent;
use app::core::engine::{Advance, Effect, Outcome, Participant, Phase, Status};

use super::events::{NewEvent, Stored};
use crate::db::{Conn, Sql};
use crate::error::Result;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns keeping rollups off (or on again) for this process: only for the
/// benchmark that measures what they cost the engine. Reports are wrong
/// for whatever ran while they were off.
pub fn keep(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// One counter's address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub flow_id: i64,
    pub day: i64,
    pub version: i64,
    pub step: String,
    pub metric: &'static str,
    pub machine: bool,
}

/// The `step` a split's branch is counted under: `split/port`.
pub fn branch_step(split: &str, port: &str) -> String {
    format!("{split}/{port}")
}

/// Days since 1970-01-01, UTC.
pub fn day_of(at: Timestamp) -> i64 {
    at.as_second().div_euclid(86_400)
}

/// Counts gathered for one transaction, written with [`Tally::write`].
/// Ordered, so that every writer takes the counters' row locks in the
/// same order (no deadlock between two PostgreSQL workers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally(pub BTreeMap<Key, i64>);

/// Statuses counted when a participant takes them.
fn finishing(status: Status) -> Option<&'static str> {
    finishing_name(status.as_str(), None)
}

/// [`finishing`] for a status column; a suppressed participant counts as
/// the status it keeps (`prior`).
fn finishing_name(status: &str, prior: Option<&str>) -> Option<&'static str> {
    match status {
        "completed" => Some("completed"),
        "converted" => Some("converted"),
        "exited" => Some("exited"),
        "failed" => Some("failed"),
        "cancelled" => Some("cancelled"),
        "suppressed" => prior.and_then(|p| finishing_name(p, None)),
        _ => None,
    }
}

fn is_message_kind(kind: &str) -> bool {
    matches!(kind, "send_email" | "send_sms")
}

impl Tally {
    pub fn add(&mut self, key: Key, n: i64) {
        *self.0.entry(key).or_default() += n;
    }

    /// The counts of one participant's advance from `before`.
    pub fn of(flow_id: i64, version: i64, before: &Participant, step: &Advance, now: Timestamp) -> Tally {
        let mut tally = Tally::default();
        tally.advance(flow_id, version, before, step, now);
        tally
    }

    /// Adds the counts of one participant's advance from `before`.
    pub fn advance(&mut self, flow_id: i64, version: i64, before: &Participant, step: &Advance, now: Timestamp) {
        let day = day_of(now);
        let mut add = |step: &str, metric: &'static str| {
            self.add(Key { flow_id, day, version, step: step.to_owned(), metric, machine: false }, 1);
        };
        let after = &step.participant;
        if before.step.is_none() && after.step.is_some() {
            add("", "entered");
        }
        if before.status != after.status {
            if let Some(metric) = finishing(after.status) {
                add(after.step.as_deref().unwrap_or_default(), metric);
            }
        }
        // The record of the visit the participant was at already exists,
        // unless it had only just entered that step (due, not yet run:
        // the engine records a step when it runs it, and every stay writes one).
        let recorded_before = before.step.is_some() && !(before.phase == Phase::Due && before.status == Status::Ready);
        // The last record of each visit is what the timeline keeps.
        let mut last: Vec<&app::core::engine::ActionRecord> = Vec::new();
        for record in &step.actions {
            match last.iter().position(|r| r.visit == record.visit) {
                Some(i) => last[i] = record,
                None => last.push(record),
            }
        }
        for record in last {
            if !(recorded_before && record.visit == before.visit) {
                add(&record.step, "reached");
            }
            match record.outcome {
                Outcome::Completed | Outcome::Skipped => add(&record.step, "passed"),
                Outcome::Failed => add(&record.step, "step_failed"),
                Outcome::Pending | Outcome::Deferred => {}
            }
            if record.outcome == Outcome::Completed && is_message_kind(&record.kind) {
                add(&record.step, "delivered");
            }
        }
        // Splits: who took each branch, and who of them converted.
        for (split, port) in &after.branches {
            if before.branches.get(split) != Some(port) {
                add(&branch_step(split, port), "branch_entered");
            }
        }
        if before.status != after.status && after.status == Status::Converted {
            for (split, port) in &after.branches {
                add(&branch_step(split, port), "branch_converted");
            }
        }
        for command in &step.commands {
            let channel = match command.effect {
                Effect::Email { .. } => "sent_email",
                Effect::Sms { .. } => "sent_sms",
                _ => continue,
            };
            add(&command.step, "sent");
            add("", channel);
        }
    }

    /// Adds the counters up in the database: one multi-row upsert per 200
    /// counters.
    pub async fn write(&self, conn: &mut Conn) -> Result<()> {
        if !ENABLED.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rows: Vec<(&Key, &i64)> = self.0.iter().filter(|(_, n)| **n != 0).collect();
        for chunk in rows.chunks(200) {
            let mut query = Sql::new("INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)");
            // Numbers and our own metric names are written in; the step id is bound.
            query.push_values(chunk, |mut row, (key, n)| {
                row.push(key.flow_id).push(key.day).push(key.version).push_bind(key.step.clone());
                row.push(format!("'{}'", key.metric)).push(i64::from(key.machine)).push(**n);
            });
            query.push(
                " ON CONFLICT (flow_id, day, version, step, metric, machine) DO UPDATE SET count = flow_rollups.count + excluded.count",
            );
            query.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Bulk actions that can change what a participant counts as (and so
/// their undo: only a pause's can): the rest (a manual pass, callbacks,
/// reservations, suppress and unsuppress, a data file) leave every
/// finishing count as it is.
fn bulk_may_finish(action: &str) -> bool {
    matches!(action, "reset" | "cancel" | "pause" | "ready" | "delete" | "move_to_flow")
}

/// One participant as a bulk action found it (or left it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Counted {
    flow_id: i64,
    version: i64,
    step: String,
    outcome: Option<&'static str>,
    /// The split branches it took, when it passed a split.
    branches: Vec<(String, String)>,
}

/// The participants a bulk action is about to change, read in its
/// transaction before it writes; [`BulkChanges::count`] reads them again
/// after and counts the difference, as the engine would have.
#[derive(Debug, Default)]
pub struct BulkChanges {
    ids: String,
    before: HashMap<i64, Counted>,
}

impl BulkChanges {
    /// `action` is a bulk action's name (the undone one's, for an undo);
    /// `ids` a query of the participants it applies to. A deletion also cancels the contacts'
    /// participants in other flows: those are read too.
    pub async fn before(conn: &mut Conn, action: &str, ids: &str) -> Result<BulkChanges> {
        if !bulk_may_finish(action) || !ENABLED.load(Ordering::Relaxed) {
            return Ok(BulkChanges::default());
        }
        let ids = match action {
            "delete" => format!("SELECT id FROM participants WHERE contact_id IN (SELECT contact_id FROM participants WHERE id IN ({ids}))"),
            _ => ids.to_owned(),
        };
        let before = Self::read(conn, &ids).await?;
        Ok(BulkChanges { ids, before })
    }

    async fn read(conn: &mut Conn, ids: &str) -> Result<HashMap<i64, Counted>> {
        let rows = sqlx::query(&format!(
            "SELECT id, flow_id, version, step, status, prior_status, CASE WHEN state LIKE '%\"branches\":%' THEN state END AS state
             FROM participants WHERE id IN ({ids})"
        ))
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let branches = r
                    .get::<Option<String>, _>("state")
                    .and_then(|s| serde_json::from_str::<Participant>(&s).ok())
                    .map(|p| p.branches.into_iter().collect())
                    .unwrap_or_default();
                let counted = Counted {
                    flow_id: r.get("flow_id"),
                    version: r.get("version"),
                    step: r.get::<Option<String>, _>("step").unwrap_or_default(),
                    outcome: finishing_name(r.get("status"), r.get::<Option<&str>, _>("prior_status")),
                    branches,
                };
                (r.get::<i64, _>("id"), counted)
            })
            .collect())
    }

    /// Reads the participants again and adds up what changed, on `now`'s day.
    pub async fn count(self, conn: &mut Conn, now: Timestamp) -> Result<()> {
        if self.before.is_empty() {
            return Ok(());
        }
        let after = Self::read(conn, &self.ids).await?;
        let mut tally = Tally::default();
        let day = day_of(now);
        for (id, old) in &self.before {
            let Some(new) = after.get(id) else { continue };
            if old.outcome == new.outcome {
                continue;
            }
            for (p, sign) in [(old, -1), (new, 1)] {
                let Some(metric) = p.outcome else { continue };
                let mut add = |step: String, metric: &'static str| {
                    tally.add(Key { flow_id: p.flow_id, day, version: p.version, step, metric, machine: false }, sign);
                };
                add(p.step.clone(), metric);
                if metric == "converted" {
                    for (split, port) in &p.branches {
                        add(branch_step(split, port), "branch_converted");
                    }
                }
            }
        }
        tally.write(conn).await
    }
}

/// The rollup metric of an engagement event, and whether a machine (or
/// an auto-reply) made it.
fn engagement(event: &ContactEvent) -> Option<(&'static str, bool)> {
    Some(match event {
        ContactEvent::EmailOpened { machine, .. } => ("opened", *machine),
        ContactEvent::LinkClicked { machine, .. } => ("clicked", *machine),
        ContactEvent::Replied { auto, .. } => ("replied", *auto),
        ContactEvent::Bounced { .. } => ("bounced", false),
        ContactEvent::Complained { .. } => ("complained", false),
        ContactEvent::Unsubscribed { .. } => ("unsubscribed", false),
        ContactEvent::Custom { .. } => return None,
    })
}

/// Counts the engagement among `events` just written (`stored`, as
/// [`super::events::record`] returns it, duplicates skipped): each event
/// about a known participant's message that is the first of its kind for
/// that participant and step. Runs in the writer's transaction.
pub async fn record_events(conn: &mut Conn, events: &[NewEvent], stored: &[Option<Stored>]) -> Result<()> {
    let mut about: Vec<(i64, i64, &NewEvent, &'static str, bool)> = Vec::new();
    for (event, stored) in events.iter().zip(stored) {
        let (Some(stored), Some(participant)) = (stored, event.participant_id) else { continue };
        if stored.duplicate {
            continue;
        }
        if let Some((metric, machine)) = engagement(&event.received.event) {
            about.push((stored.id, participant, event, metric, machine));
        }
    }
    if about.is_empty() || !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut ids: Vec<i64> = about.iter().map(|a| a.1).collect();
    ids.sort_unstable();
    ids.dedup();
    let list = crate::db::id_list(&ids);
    // The state is read only for participants that passed a split.
    let rows = sqlx::query(&format!(
        "SELECT id, flow_id, version, CASE WHEN state LIKE '%\"branches\":%' THEN state END FROM participants WHERE id IN ({list})"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut flows: HashMap<i64, (i64, i64)> = HashMap::new();
    // (split, port, taken at in ms) per participant that passed a split.
    let mut branches: HashMap<i64, Vec<(String, String, i64)>> = HashMap::new();
    for r in &rows {
        let id: i64 = r.get(0);
        flows.insert(id, (r.get(1), r.get(2)));
        if let Some(state) = r.get::<Option<String>, _>(3).and_then(|s| serde_json::from_str::<Participant>(&s).ok()) {
            let taken = state
                .branches
                .iter()
                .map(|(split, port)| (split.clone(), port.clone(), state.branched_at.get(split).map(|t| t.as_millisecond()).unwrap_or(i64::MIN)))
                .collect();
            branches.insert(id, taken);
        }
    }
    // Unsubscribes are about the participant's latest message.
    let latest: HashMap<i64, String> = if about.iter().any(|a| a.3 == "unsubscribed") {
        sqlx::query(&format!(
            "SELECT participant_id, step FROM conversations WHERE participant_id IN ({list}) AND step IS NOT NULL
               AND channel IN ('email', 'sms') ORDER BY id"
        ))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
        .collect()
    } else {
        HashMap::new()
    };
    // The first event of each (participant, step, kind, machine): the new
    // rows are already written, so the minimum id tells.
    let firsts: HashMap<(i64, String, String, bool), i64> = sqlx::query(&format!(
        "SELECT participant_id, coalesce(step, ''), kind, machine + auto, min(id) FROM contact_events
         WHERE participant_id IN ({list}) AND kind <> 'custom' GROUP BY participant_id, coalesce(step, ''), kind, machine + auto"
    ))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| ((r.get::<i64, _>(0), r.get::<String, _>(1), r.get::<String, _>(2), r.get::<i64, _>(3) > 0), r.get::<i64, _>(4)))
    .collect();
    let mut tally = Tally::default();
    for (id, participant, event, metric, machine) in about {
        let Some(&(flow_id, version)) = flows.get(&participant) else { continue };
        let kind = event.received.event.kind().to_owned();
        let branch_metric = match metric {
            "clicked" => Some("branch_clicked"),
            "replied" => Some("branch_replied"),
            _ => None,
        };
        if let (Some(branch_metric), false, Some(taken)) = (branch_metric, machine, branches.get(&participant)) {
            // The first click (reply) by a person since the branch was taken.
            for (split, port, since) in taken {
                let first: Option<i64> = sqlx::query_scalar(
                    "SELECT min(id) FROM contact_events WHERE participant_id = $1 AND kind = $2 AND machine = 0 AND auto = 0 AND happened_at >= $3",
                )
                .bind(participant)
                .bind(&kind)
                .bind(*since)
                .fetch_one(&mut *conn)
                .await?;
                if first == Some(id) {
                    let step = branch_step(split, port);
                    tally.add(Key { flow_id, day: day_of(event.received.at), version, step, metric: branch_metric, machine: false }, 1);
                }
            }
        }
        let own_step = event.received.event.step().unwrap_or_default().to_owned();
        if firsts.get(&(participant, own_step.clone(), kind, machine)) != Some(&id) {
            continue;
        }
        let step = match metric {
            "unsubscribed" => latest.get(&participant).cloned().unwrap_or_default(),
            _ => own_step,
        };
        tally.add(Key { flow_id, day: day_of(event.received.at), version, step, metric, machine }, 1);
    }
    tally.write(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_floor_before_1970() {
        assert_eq!(day_of("1970-01-01T23:59:59Z".parse().unwrap()), 0);
        assert_eq!(day_of("1970-01-02T00:00:00Z".parse().unwrap()), 1);
        assert_eq!(day_of("1969-12-31T23:59:59Z".parse().unwrap()), -1);
        assert_eq!(day_of("2026-11-23T09:00:00+05:00".parse().unwrap()), day_of("2026-11-23T04:00:00Z".parse().unwrap()));
    }
}
