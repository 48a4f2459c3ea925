//! Many participants' writes in a constant number of statements: their
//! timeline records, outbox entries and states, each as multi-row
//! statements of at most [`ROWS`] rows. One statement per row costs a round
//! trip each on PostgreSQL, which bounds a lone worker; on SQLite it costs
//! a statement's preparation and its trip through the driver's thread.

use std::collections::hash_map::{Entry, HashMap};

use jiff::Timestamp;

use app::core::engine::{self, ActionRecord, Advance, Command, Participant};

use super::millis;
use crate::db::{Conn, Sql};
use crate::error::Result;

/// Rows per statement: the widest (a timeline record) binds 12 values, well
/// within both engines' limits on binds per statement.
pub(crate) const ROWS: usize = 500;

/// What advances wrote: a participant's timeline records and outbox entries.
pub(crate) struct Records<'a> {
    pub participant: i64,
    pub actions: &'a [ActionRecord],
    pub commands: &'a [Command],
}

impl<'a> Records<'a> {
    pub fn of(participant: i64, step: &'a Advance) -> Self {
        Records { participant, actions: &step.actions, commands: &step.commands }
    }
}

/// The timeline records and outbox entries of advances.
pub(crate) async fn write_records_many(conn: &mut Conn, advances: &[Records<'_>], now: Timestamp) -> Result<()> {
    // Later records of a visit replace earlier ones (a participant may be
    // given twice, advanced by two events): one row per visit.
    let mut actions: Vec<(i64, &ActionRecord)> = Vec::new();
    let mut row_of: HashMap<(i64, u32), usize> = HashMap::new();
    for Records { participant, actions: records, .. } in advances {
        for record in records.iter() {
            match row_of.entry((*participant, record.visit)) {
                Entry::Occupied(at) => actions[*at.get()].1 = record,
                Entry::Vacant(at) => {
                    at.insert(actions.len());
                    actions.push((*participant, record));
                }
            }
        }
    }
    for chunk in actions.chunks(ROWS) {
        let mut query: Sql = Sql::new(
            "INSERT INTO participant_actions (participant_id, visit, step, kind, due_at, done_at, outcome, reason, manual, owner, subject, why) ",
        );
        query.push_values(chunk, |mut row, (participant, r)| {
            row.push_bind(*participant)
                .push_bind(r.visit as i64)
                .push_bind(r.step.clone())
                .push_bind(r.kind.clone())
                .push_bind(r.due_at.to_string())
                .push_bind(r.done_at.map(|t| t.to_string()))
                .push_bind(r.outcome.as_str())
                .push_bind(r.reason.clone())
                .push_bind(r.manual as i64)
                .push_bind(r.owner.clone())
                .push_bind(r.subject.clone())
                .push_bind(r.why.clone());
        });
        query.push(
            " ON CONFLICT (participant_id, visit) DO UPDATE SET due_at = excluded.due_at, done_at = excluded.done_at,
                outcome = excluded.outcome, reason = coalesce(excluded.reason, participant_actions.reason),
                manual = CASE WHEN excluded.manual > participant_actions.manual THEN excluded.manual ELSE participant_actions.manual END,
                owner = coalesce(excluded.owner, participant_actions.owner),
                subject = coalesce(excluded.subject, participant_actions.subject), why = coalesce(excluded.why, participant_actions.why)",
        );
        query.build().execute(&mut *conn).await?;
    }

    let commands: Vec<(i64, &Command)> = advances.iter().flat_map(|r| r.commands.iter().map(move |c| (r.participant, c))).collect();
    let created = now.to_string();
    for chunk in commands.chunks(ROWS) {
        let mut query: Sql =
            Sql::new("INSERT INTO outbox (participant_id, step, visit, idempotency_key, kind, effect, awaited, next_attempt_at, created_at) ");
        query.push_values(chunk, |mut row, (participant, command)| {
            let mut key = format!("{participant}:{}:{}:{}", command.step, command.visit, command.attempt);
            if command.seq > 0 {
                key.push_str(&format!(":{}", command.seq));
            }
            row.push_bind(*participant)
                .push_bind(command.step.clone())
                .push_bind(command.visit as i64)
                .push_bind(key)
                .push_bind(command.effect.kind())
                .push_bind(serde_json::to_string(&command.effect).expect("effects serialize"))
                .push_bind(command.awaited as i64)
                .push_bind(millis(now))
                .push_bind(created.clone());
        });
        query.push(" ON CONFLICT (idempotency_key) DO NOTHING");
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A participant's new state, to be written over the revision it was read at.
pub(crate) struct StateWrite<'a> {
    pub id: i64,
    pub revision: i64,
    pub state: &'a Participant,
}

/// Writes participants' states, each over its revision, by participants
/// no worker holds (an event delivery pass). Returns how many were written;
/// fewer than given means a revision had moved. See [`save_states_fenced`].
pub(crate) async fn save_states(conn: &mut Conn, writes: &[StateWrite<'_>], now: Timestamp) -> Result<usize> {
    let writes: Vec<(&StateWrite, bool)> = writes.iter().map(|w| (w, false)).collect();
    Ok(save_states_fenced(conn, &writes, None, now).await?.len())
}

/// Writes participants' states, each over the revision it was read at and,
/// with `lease`, only while that worker's claim holds it (released by the
/// write). Returns the ids written: the others had moved on.
///
/// A booked callback is a participant's next run (it replaces the flow's
/// own, as a dialer's callback replaces the next dial time) while it is
/// active, until it comes due; a write marked `true` is that callback's
/// run, which uses it up.
pub(crate) async fn save_states_fenced(
    conn: &mut Conn,
    writes: &[(&StateWrite<'_>, bool)],
    lease: Option<&str>,
    now: Timestamp,
) -> Result<Vec<i64>> {
    let updated = now.to_string();
    let mut written = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(ROWS) {
        // `pid`, not `id`: the RETURNING below names the participant's id unqualified.
        let mut query: Sql = Sql::new("WITH v (pid, revision, status, step, state, next_run_at, pass_count, called_back) AS (");
        query.push_values(chunk, |mut row, (w, called_back)| {
            row.push_bind(w.id)
                .push_bind(w.revision)
                .push_bind(w.state.status.as_str())
                .push_bind(w.state.step.clone())
                .push_bind(serde_json::to_string(w.state).expect("participants serialize"))
                .push_bind(engine::next_wake(w.state).map(millis))
                .push_bind(w.state.pass_count as i64)
                .push_bind(i64::from(*called_back));
        });
        query.push(
            ") UPDATE participants SET status = v.status, step = v.step, state = v.state,
                 next_run_at = CASE WHEN v.called_back = 0 AND participants.callback_at IS NOT NULL AND v.status IN ('ready', 'waiting', 'held')
                                    THEN participants.callback_at ELSE v.next_run_at END,
                 callback_at = CASE WHEN v.called_back = 0 THEN participants.callback_at END,
                 callback_owner = CASE WHEN v.called_back = 0 THEN participants.callback_owner END,
                 pass_count = v.pass_count, revision = participants.revision + 1, ",
        );
        if lease.is_some() {
            query.push("lease_owner = NULL, lease_until = NULL, ");
        }
        query.push("updated_at = ");
        query.push_bind(updated.clone());
        query.push(" FROM v WHERE participants.id = v.pid AND participants.revision = v.revision");
        if let Some(owner) = lease {
            query.push(" AND participants.lease_owner = ");
            query.push_bind(owner.to_owned());
        }
        query.push(" RETURNING id");
        written.extend(query.build_query_scalar::<i64>().fetch_all(&mut *conn).await?);
    }
    Ok(written)
}
