//! The outbox: effects the engine asked for, carried out at least once each
//! by an [`Executor`], retried with capped exponential backoff. An awaited
//! effect's final outcome is fed back to its participant; when retries are
//! exhausted the participant takes the failure (the webhook's `failed`
//! port, or status `failed` with the reason). A call's outcome comes later
//! from its provider, so only a failure to place it is fed back here.
//!
//! A pass claims a batch (a lease), lets the executor prepare the batch
//! together ([`Executor::begin_pass`]), carries its effects out
//! concurrently (one participant's in order), then records all outcomes in
//! one transaction of multi-row statements ([`Runtime::record_outcomes`]).
//! A crash between carrying out and recording leaves the lease to expire
//! and the effect to be tried again, which the channels recognise by its
//! idempotency key (at least once, never twice on their side).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use sqlx::Row;

use app::core::engine::{self, Advance, Effect, EffectResult, Event, Participant, Status};

use super::writes::{self, Records, StateWrite};
use super::{millis, Runtime};
use crate::db::{Backend, Conn, Sql};
use crate::error::{Error, Result};

/// Why an effect did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// Worth trying again (timeouts, 5xx); false for bad configuration or 4xx.
    pub retryable: bool,
    /// The provider asked to wait this long (Retry-After).
    pub retry_after: Option<SignedDuration>,
}

impl Failure {
    pub fn permanent(reason: impl Into<String>) -> Self {
        Failure { reason: reason.into(), retryable: false, retry_after: None }
    }

    pub fn transient(reason: impl Into<String>) -> Self {
        Failure { reason: reason.into(), retryable: true, retry_after: None }
    }
}

/// Which outbox entry an effect comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The idempotency key, the same for every try: pass it to providers
    /// that deduplicate on it.
    pub key: String,
    pub participant: i64,
    /// The dispatch pass carrying it out (unique in this process; 0 when
    /// not run by a dispatcher): an executor may read its settings once
    /// per pass.
    pub pass: u64,
}

/// Dispatch passes so far in this process.
static PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Carries out effects.
#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Contact fields learned (data append), or why it failed.
    async fn execute(&self, job: &Job, effect: &Effect) -> Result<Map<String, Value>, Failure>;

    /// Called once before a dispatch pass carries out its effects, with all
    /// of them: an executor may prepare them together.
    async fn begin_pass(&self, _pass: u64, _jobs: &[(Job, &Effect)]) {}

    /// Called once all of a pass's effects were carried out.
    async fn end_pass(&self, _pass: u64) {}
}

/// The executor until channels are configured: every external effect fails
/// for good with a sentence saying what to set up. Nothing is pretended sent.
pub struct Unconfigured;

#[async_trait::async_trait]
impl Executor for Unconfigured {
    async fn execute(&self, _job: &Job, effect: &Effect) -> Result<Map<String, Value>, Failure> {
        let what = match effect {
            Effect::Email { .. } | Effect::NotifyEmail { .. } => "no email (SMTP) server is configured",
            Effect::Sms { .. } | Effect::NotifySms { .. } => "no SMS provider is configured",
            Effect::Call { .. } => "no telephony provider is configured (automatic calls use the SMS provider settings)",
            Effect::Webhook { .. } | Effect::DataAppend { .. } => "outbound HTTP calls are not enabled",
            Effect::S3Upload { .. } => "no S3 storage is configured",
            Effect::FtpUpload { .. } => "no FTP server is configured",
            Effect::CrmPush { .. } => "no CRM connection is configured",
            Effect::RunScript { .. } => "scripts are not enabled",
            Effect::CreateActivity { .. } => "activities are not enabled",
            Effect::RunActionGroup { .. } => "action groups are not available",
            Effect::GoToFlow { .. } => "moving between flows is handled by the runtime",
        };
        Err(Failure::permanent(what))
    }
}

/// How retries are spaced: `base`, doubling, never more than `cap`, at most `max_tries`.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub base: SignedDuration,
    pub cap: SignedDuration,
    pub max_tries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries: 6 }
    }
}

impl RetryPolicy {
    /// The wait after the `tries`-th failed try.
    pub fn delay(&self, tries: u32, asked: Option<SignedDuration>) -> SignedDuration {
        let doubled = self.base.checked_mul(1i32 << tries.saturating_sub(1).min(20)).unwrap_or(self.cap);
        asked.unwrap_or(doubled).min(self.cap).max(SignedDuration::ZERO)
    }
}

/// Effects carried out at once by a dispatch pass (SMTP connections, HTTP
/// requests in flight).
pub const CONCURRENCY: usize = 16;

pub struct Dispatcher {
    runtime: Runtime,
    executor: Arc<dyn Executor>,
    policy: RetryPolicy,
    batch: i64,
    concurrency: usize,
}

/// One claimed outbox entry.
struct Claimed {
    id: i64,
    participant: i64,
    key: String,
    awaited: bool,
    tries: u32,
    effect: std::result::Result<Effect, String>,
}

/// What one dispatch pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispatch {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// How one claimed outbox entry ended.
struct Outcome {
    id: i64,
    /// The claim's lease, its fencing token.
    lease: i64,
    tries: u32,
    status: &'static str,
    error: Option<String>,
    at: Timestamp,
}

/// A claimed entry's outcome, and the event it feeds back to its
/// participant when the participant awaits it.
pub(crate) struct Finished {
    outcome: Outcome,
    participant: i64,
    event: Option<Event>,
}

/// A participant an outcome may advance, as read in the pass's transaction.
struct Awaiting {
    flow_id: i64,
    version: i64,
    contact_id: i64,
    revision: i64,
    state: Participant,
    pending: bool,
    dirty: bool,
}

impl Runtime {
    /// Records a dispatch pass's outcomes and feeds the awaited ones back
    /// to their participants, in one transaction of a constant number of
    /// statements (but a contact's new sends): a crash keeps all of it or
    /// none (then the leases run out and the entries are tried again, which
    /// the channels recognise by their keys). An entry another worker took
    /// over after this one's lease ran out is left to that worker; a
    /// participant no longer waiting (paused, ended, deleted) gets only its
    /// entry closed.
    pub(crate) async fn record_outcomes(&self, finished: &[Finished]) -> Result<()> {
        if finished.is_empty() {
            return Ok(());
        }
        for _ in 0..5 {
            match crate::db::retry_busy("recording outcomes", || self.try_record_outcomes(finished)).await {
                // Another process recorded sends for a contact meanwhile
                // (PostgreSQL): read again and decide with them.
                Err(Error::Conflict { .. }) => continue,
                done => return done,
            }
        }
        Err(Error::Internal(anyhow::anyhow!("contacts kept changing; outcomes not recorded")))
    }

    async fn try_record_outcomes(&self, finished: &[Finished]) -> Result<()> {
        let backend = Backend::of(self.pool());
        let mut tx = crate::db::begin_write(self.pool()).await?;
        let now = self.now();
        let closed = close_entries(&mut tx, finished).await?;
        let awaited: Vec<(&Finished, &Event)> =
            finished.iter().filter(|f| closed.contains(&f.outcome.id)).filter_map(|f| f.event.as_ref().map(|e| (f, e))).collect();
        if awaited.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        let mut ids: Vec<i64> = awaited.iter().map(|(f, _)| f.participant).collect();
        ids.sort_unstable();
        ids.dedup();
        // Locked on PostgreSQL, in id order as every writer takes them.
        let lock = if backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let rows = sqlx::query(&format!(
            "SELECT id, flow_id, version, contact_id, state, revision, status FROM participants WHERE id IN ({}) ORDER BY id{lock}",
            crate::db::id_list(&ids)
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut participants: HashMap<i64, Awaiting> = HashMap::with_capacity(rows.len());
        for row in &rows {
            participants.insert(
                row.get("id"),
                Awaiting {
                    flow_id: row.get("flow_id"),
                    version: row.get("version"),
                    contact_id: row.get("contact_id"),
                    revision: row.get("revision"),
                    state: super::read_state(row.get("state"))?,
                    // Bulk actions write the status column: it is the truth.
                    pending: matches!(row.get::<&str, _>("status"), "ready" | "waiting" | "held"),
                    dirty: false,
                },
            );
        }
        let mut contact_ids: Vec<i64> = participants.values().map(|p| p.contact_id).collect();
        contact_ids.sort_unstable();
        contact_ids.dedup();
        let originals = super::contacts::load_many(&mut tx, &contact_ids).await?;
        let mut current = originals.clone();
        let groups = super::load_groups(&mut tx).await?;
        let mut tally = super::rollups::Tally::default();
        let mut advances: Vec<(i64, u32, Advance)> = Vec::with_capacity(awaited.len());
        for (f, event) in awaited {
            let Some(p) = participants.get_mut(&f.participant).filter(|p| p.pending) else { continue };
            let Some(contact) = current.get_mut(&p.contact_id) else { continue };
            let doc = self.version(&mut tx, p.flow_id, p.version).await?;
            let mut step = engine::advance_with(&doc, &groups, &p.state, contact, event.clone(), now);
            super::contacts::note_sends(contact, &mut step.contact);
            tally.advance(p.flow_id, p.version, &p.state, &step, now);
            *contact = step.contact.clone();
            let from = p.state.visit;
            p.state = step.participant.clone();
            p.pending = matches!(p.state.status, Status::Ready | Status::Waiting | Status::Held);
            p.dirty = true;
            advances.push((f.participant, from, step));
        }
        let records: Vec<Records> = advances.iter().map(|(id, _, step)| Records::of(*id, step)).collect();
        writes::write_records_many(&mut tx, &records, now).await?;
        tally.write(&mut tx).await?;
        let states: Vec<StateWrite> =
            participants.iter().filter(|(_, p)| p.dirty).map(|(id, p)| StateWrite { id: *id, revision: p.revision, state: &p.state }).collect();
        if writes::save_states(&mut tx, &states, now).await? != states.len() {
            // Locked above (PostgreSQL) or the only writer (SQLite).
            return Err(Error::Internal(anyhow::anyhow!("a participant changed while its outcome was recorded")));
        }
        let advanced: Vec<i64> = states.iter().map(|s| s.id).collect();
        self.commit_contacts(&mut tx, &originals, &current, &advanced, Some(&self.worker)).await?;
        tx.commit().await?;
        for (_, from, step) in &advances {
            crate::ops::metrics::transitions(*from, step);
        }
        Ok(())
    }
}

/// Closes the entries still held by the claims that carried them out, in
/// multi-row statements; the ids closed.
async fn close_entries(conn: &mut Conn, finished: &[Finished]) -> Result<HashSet<i64>> {
    let mut closed = HashSet::with_capacity(finished.len());
    for chunk in finished.chunks(500) {
        let mut query: Sql = Sql::new("WITH v (id, lease, status, last_error, tries, done_at) AS (");
        query.push_values(chunk, |mut row, f| {
            let o = &f.outcome;
            row.push_bind(o.id).push_bind(o.lease).push_bind(o.status).push_bind(o.error.clone()).push_bind(o.tries as i64).push_bind(o.at.to_string());
        });
        query.push(
            ") UPDATE outbox SET status = v.status, last_error = v.last_error, tries = v.tries, lease_until = NULL, done_at = v.done_at
             FROM v WHERE outbox.id = v.id AND outbox.status = 'queued' AND outbox.lease_until = v.lease RETURNING outbox.id",
        );
        closed.extend(query.build().fetch_all(&mut *conn).await?.iter().map(|row| row.get::<i64, _>(0)));
    }
    Ok(closed)
}

impl Dispatcher {
    pub fn new(runtime: Runtime, executor: Arc<dyn Executor>) -> Self {
        Dispatcher { runtime, executor, policy: RetryPolicy::default(), batch: 100, concurrency: CONCURRENCY }
    }

    /// Effects carried out at once (1: one after another).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Claims due effects, carries them out, records the outcomes.
    pub async fn dispatch(&self) -> Result<Dispatch> {
        let now = self.runtime.now();
        let pool = self.runtime.pool();
        // The worker's lease: a dead worker's effects are taken over as its
        // participants are (so the lease must outlast the slowest effect).
        // Its value is this claim's fencing token: a later claim sets a
        // later one, and every write below is made only over its own.
        let lease = millis(now + self.runtime.lease());
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET lease_until = $1
             WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $2
                          AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4{})
             RETURNING id, participant_id, idempotency_key, effect, awaited, tries",
            Backend::of(pool).skip_locked()
        ))
        .bind(lease)
        .bind(millis(now))
        .bind(millis(now))
        .bind(self.batch)
        .fetch_all(pool)
        .await?;
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(|row| Claimed {
                id: row.get("id"),
                participant: row.get("participant_id"),
                key: row.get("idempotency_key"),
                awaited: row.get::<i64, _>("awaited") != 0,
                tries: row.get::<i64, _>("tries") as u32 + 1,
                effect: serde_json::from_str(row.get::<&str, _>("effect")).map_err(|err| format!("unreadable effect: {err}")),
            })
            .collect();
        claimed.sort_by_key(|c| c.id);
        // A contact erased since its effect was queued: nothing is sent. (An
        // erasure cancelled the entry already, so the failure recorded below
        // is not written over it; an entry queued after the erasure fails.)
        let erased_before = if claimed.is_empty() {
            Default::default()
        } else {
            let participants: Vec<i64> = claimed.iter().map(|c| c.participant).collect();
            super::contacts::erased_participants(&mut *pool.acquire().await?, &participants).await?
        };
        let (skipped_entries, claimed): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(|c| erased_before.contains(&c.participant));
        let skipped: std::collections::HashSet<i64> = skipped_entries.iter().map(|c| c.id).collect();
        let mut done = self.carry_out(claimed).await;
        // Erased while being carried out: what the channels recorded since
        // (a message's record, a webhook's call) loses the contact's data.
        if !done.is_empty() {
            let mut conn = pool.acquire().await?;
            let participants: Vec<i64> = done.iter().map(|(entry, _)| entry.participant).collect();
            let erased = super::contacts::erased_participants(&mut conn, &participants).await?;
            let keys: Vec<String> = done.iter().filter(|(entry, _)| erased.contains(&entry.participant)).map(|(entry, _)| entry.key.clone()).collect();
            super::contacts::erase_in_flight(&mut conn, &keys).await?;
        }
        done.extend(skipped_entries.into_iter().map(|entry| (entry, None)));
        done.sort_by_key(|(entry, _)| entry.id);
        let mut report = Dispatch::default();
        let mut finished = Vec::with_capacity(done.len());
        for (entry, result) in done {
            let Claimed { id, participant, awaited, tries, .. } = entry;
            let later = entry.effect.as_ref().is_ok_and(Effect::outcome_comes_later);
            let channel = entry.effect.as_ref().map_or("unreadable", Effect::kind);
            let result = match (&entry.effect, result) {
                _ if skipped.contains(&id) => Err(Failure::permanent(super::contacts::NOT_SENT)),
                (Err(unreadable), _) => Err(Failure::permanent(unreadable.clone())),
                (Ok(Effect::GoToFlow { flow, mode }), _) => self.go_to_flow(participant, flow, mode).await,
                (Ok(_), Some(result)) => result,
                (Ok(_), None) => Err(Failure::transient("the effect was not carried out")),
            };
            match result {
                Err(failure) if failure.retryable && tries < self.policy.max_tries => {
                    let next = now + self.policy.delay(tries, failure.retry_after);
                    // Only while still queued: an erasure may have cancelled it meanwhile.
                    sqlx::query(
                        "UPDATE outbox SET tries = $1, next_attempt_at = $2, lease_until = NULL, last_error = $3
                         WHERE id = $4 AND lease_until = $5 AND status = 'queued'",
                    )
                    .bind(tries as i64)
                    .bind(millis(next))
                    .bind(&failure.reason)
                    .bind(id)
                    .bind(lease)
                    .execute(pool)
                    .await?;
                    report.retried += 1;
                    crate::ops::metrics::send(channel, "retried");
                }
                result => {
                    if result.is_ok() {
                        report.sent += 1;
                    } else {
                        report.failed += 1;
                    }
                    crate::ops::metrics::send(channel, if result.is_ok() { "sent" } else { "failed" });
                    let result = result.map_err(|failure| Failure {
                        reason: if tries > 1 { format!("{} (after {tries} tries)", failure.reason) } else { failure.reason },
                        ..failure
                    });
                    let outcome = Outcome {
                        id,
                        lease,
                        tries,
                        status: if result.is_ok() { "sent" } else { "failed" },
                        error: result.as_ref().err().map(|failure| failure.reason.clone()),
                        at: now,
                    };
                    // A call's outcome comes later, from its provider: only
                    // a failure to place it is fed back now.
                    let event = (awaited && !(later && result.is_ok())).then_some(Event::Effect {
                        result: match result {
                            Ok(updates) => EffectResult::Done { updates },
                            Err(failure) => EffectResult::Failed { reason: failure.reason },
                        },
                    });
                    finished.push(Finished { outcome, participant, event });
                }
            }
        }
        self.runtime.record_outcomes(&finished).await?;
        Ok(report)
    }

    /// Runs the executor over the claimed entries, `concurrency` at a time,
    /// each participant's in claim order; the results in claim order.
    /// `None` for entries the dispatcher carries out itself (go_to_flow,
    /// unreadable). A channel that panics fails that effect (retryably)
    /// instead of the worker.
    async fn carry_out(&self, claimed: Vec<Claimed>) -> Vec<(Claimed, Option<Result<Map<String, Value>, Failure>>)> {
        let pass = PASSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut groups: Vec<Vec<Claimed>> = Vec::new();
        let mut of_participant: HashMap<i64, usize> = HashMap::new();
        for entry in claimed {
            let at = *of_participant.entry(entry.participant).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(entry);
        }
        let jobs: Vec<(Job, &Effect)> = groups
            .iter()
            .flatten()
            .filter_map(|entry| entry.effect.as_ref().ok().map(|effect| (Job { key: entry.key.clone(), participant: entry.participant, pass }, effect)))
            .collect();
        self.executor.begin_pass(pass, &jobs).await;
        let runs = groups.into_iter().map(|group| {
            let executor = self.executor.clone();
            async move {
                let mut done = Vec::with_capacity(group.len());
                for entry in group {
                    let result = match &entry.effect {
                        Ok(Effect::GoToFlow { .. }) | Err(_) => None,
                        Ok(effect) => {
                            let (executor, effect) = (executor.clone(), effect.clone());
                            let job = Job { key: entry.key.clone(), participant: entry.participant, pass };
                            let run = tokio::spawn(async move { executor.execute(&job, &effect).await });
                            Some(run.await.unwrap_or_else(|err| {
                                tracing::error!(error = %err, key = %entry.key, "a channel failed unexpectedly");
                                Err(Failure::transient(format!("the channel failed unexpectedly: {err}")))
                            }))
                        }
                    };
                    done.push((entry, result));
                }
                done
            }
        });
        let mut done: Vec<_> = futures_util::stream::iter(runs).buffer_unordered(self.concurrency).collect::<Vec<_>>().await.into_iter().flatten().collect();
        self.executor.end_pass(pass).await;
        done.sort_by_key(|(entry, _)| entry.id);
        done
    }

    /// go_to_flow: enroll the participant's contact into the named flow
    /// (by id or name). Moving already ended the participant here.
    async fn go_to_flow(&self, participant: i64, flow: &str, _mode: &str) -> Result<Map<String, Value>, Failure> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM flows WHERE CAST(id AS TEXT) = $1 OR name = $2 COLLATE NOCASE")
            .bind(flow)
            .bind(flow)
            .fetch_optional(self.runtime.pool())
            .await
            .map_err(|err| Failure::transient(err.to_string()))?;
        let Some(target) = found else { return Err(Failure::permanent(format!("there is no flow “{flow}”"))) };
        let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1")
            .bind(participant)
            .fetch_one(self.runtime.pool())
            .await
            .map_err(|err| Failure::transient(err.to_string()))?;
        self.runtime.enroll(target, &[contact]).await.map_err(|err| Failure::permanent(err.public_message()))?;
        Ok(Map::new())
    }
}
