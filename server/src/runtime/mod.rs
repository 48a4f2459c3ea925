//! The runtime shell around the pure engine (`app::core::engine`): enroll
//! participants, claim the due ones in batches, run `advance`, and commit
//! the new state, the timeline and the outbox in one transaction.
//!
//! Durability rules: a claim is a lease with an expiry, so a crashed worker's
//! participants are picked up again once it runs out; a write commits only
//! over the revision it read and the lease it holds, so a worker that lost
//! its lease cannot overwrite work taken from it; effects are enqueued with
//! a unique idempotency key, so a replayed transition cannot enqueue twice.

pub mod bulk;
mod contact_pages;
pub mod contacts;
pub mod datafile;
pub mod events;
pub mod export;
pub mod import;
pub mod jobs;
pub mod outbox;
pub mod pressure;
mod writes;
mod pages;
pub mod rollups;
pub mod winner;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use sqlx::Row;

use app::core::contact::Contact;
use app::core::engine::{self, ActionRecord, Advance, Event, Participant, Status};
use app::core::flow::{FlowDocument, Reentry};

use crate::error::{Error, Result};
use crate::db::{Backend, Conn, Pool, Sql};

/// Where `now` comes from: the system clock in production, a hand-moved
/// one in tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock(Mutex::new(at)))
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().expect("clock lock") = at;
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

pub fn millis(at: Timestamp) -> i64 {
    at.as_millisecond()
}

/// A participant as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ParticipantView {
    pub id: i64,
    pub flow_id: i64,
    pub version: i64,
    pub contact_id: i64,
    pub status: String,
    pub step: Option<String>,
    pub next_run_at: Option<Timestamp>,
    pub pass_count: i64,
    pub reason: Option<String>,
}

/// Published versions by (flow, number): they never change, so never expire.
type VersionCache = HashMap<(i64, i64), Arc<FlowDocument>>;

#[derive(Clone)]
pub struct Runtime {
    pool: Pool,
    clock: Arc<dyn Clock>,
    // Strings behind `Arc`s: a runtime is cloned for every request that
    // takes it (`State<Runtime>`), a tracking hit among them.
    worker: Arc<str>,
    lease: SignedDuration,
    batch: usize,
    /// Scheduler loops a process runs at once (see [`Runtime::with_concurrency`]).
    concurrency: usize,
    versions: Arc<Mutex<VersionCache>>,
    /// Where data files (bulk "email data file" ZIPs) are written.
    files: Arc<std::path::Path>,
    /// The address people reach the app at, for links sent by email.
    public_url: Arc<str>,
    /// Rung when events were written, to deliver them without waiting for
    /// the next poll.
    events: Arc<tokio::sync::Notify>,
}

/// What one scheduler pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    pub claimed: usize,
    pub committed: usize,
    /// Steps entered (each a transition of one participant).
    pub transitions: usize,
}

/// Participants claimed by one worker, with their advances worked out.
pub struct Batch {
    now: Timestamp,
    claimed: Vec<Claimed>,
    steps: Vec<(Contact, Advance)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.claimed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.claimed.is_empty()
    }
}

struct Claimed {
    id: i64,
    flow_id: i64,
    version: i64,
    contact_id: i64,
    revision: i64,
    state: Participant,
    /// A booked callback that has come due (its time, its agent): it is
    /// what woke the participant, and it is used up by this run.
    callback: Option<(Timestamp, Option<String>)>,
}

/// One contact's participants in a batch (next to each other: a batch is
/// sorted by contact), each advance worked out over the contact as the one
/// before left it; which of them to write, and which to release (worked
/// out over a change that is not written: they run again).
struct Chain {
    contact: i64,
    /// Their places in the batch.
    members: std::ops::Range<usize>,
    write: Vec<usize>,
    release: Vec<usize>,
}

impl Chain {
    /// The batch's chains, but the participants `lost`.
    fn all(batch: &Batch, lost: &HashSet<i64>) -> Vec<Chain> {
        let mut chains: Vec<Chain> = Vec::new();
        for (i, claimed) in batch.claimed.iter().enumerate() {
            match chains.last_mut() {
                Some(chain) if chain.contact == claimed.contact_id => chain.members.end = i + 1,
                _ => chains.push(Chain { contact: claimed.contact_id, members: i..i + 1, write: Vec::new(), release: Vec::new() }),
            }
        }
        for chain in &mut chains {
            let mut broken = false;
            for i in chain.members.clone() {
                let (before, step) = &batch.steps[i];
                if lost.contains(&batch.claimed[i].id) {
                    // Not ours to write; those after it saw its change, if any.
                    broken |= step.contact != *before;
                } else if broken {
                    chain.release.push(i);
                } else {
                    chain.write.push(i);
                }
            }
        }
        chains
    }

    /// The contact as read and as the advances written leave it, when they change it.
    fn change<'b>(&self, batch: &'b Batch) -> Option<(i64, &'b Contact, &'b Contact)> {
        let before = &batch.steps[self.members.start].0;
        let after = &batch.steps[*self.write.last()?].1.contact;
        (after != before).then_some((self.contact, before, after))
    }

    fn changes(&self, batch: &Batch) -> bool {
        self.change(batch).is_some()
    }

    /// Another writer changed the contact meanwhile: the participants from
    /// the first that changed it on are released.
    fn cut_at_first_change(&mut self, batch: &Batch) {
        let changed = |&i: &usize| batch.steps[i].1.contact != batch.steps[i].0;
        if let Some(at) = self.write.iter().position(changed) {
            self.release.extend(self.write.drain(at..));
        }
    }
}

fn timestamp_from_millis(ms: Option<i64>) -> Option<Timestamp> {
    ms.and_then(|ms| Timestamp::from_millisecond(ms).ok())
}

/// A participant's stored engine state.
fn read_state(text: &str) -> Result<Participant> {
    serde_json::from_str(text).map_err(|err| Error::Internal(anyhow::anyhow!("participant state unreadable: {err}")))
}

impl Runtime {
    pub fn new(pool: Pool, clock: Arc<dyn Clock>, worker: impl Into<String>) -> Self {
        let worker: String = worker.into();
        Runtime {
            pool,
            clock,
            worker: Arc::from(worker),
            lease: SignedDuration::from_secs(30),
            batch: 500,
            concurrency: 1,
            versions: Arc::new(Mutex::new(HashMap::new())),
            files: std::env::temp_dir().join("waymark-files").into(),
            public_url: "http://127.0.0.1:3000".into(),
            events: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The app's public base URL (`https://waymark.example.com`): emailed links start with it.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into().trim_end_matches('/').into();
        self
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Where data files go and how their emailed links begin.
    pub fn delivery(&self) -> datafile::Delivery {
        datafile::Delivery { dir: self.files.to_path_buf(), public_url: self.public_url.to_string() }
    }

    pub fn with_files_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.files = dir.into().into();
        self
    }

    pub fn files_dir(&self) -> &std::path::Path {
        &self.files
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// How many scheduler loops [`spawn_workers_until`] runs in this
    /// process, each claiming batches of its own (1, the default, on
    /// SQLite, which writes one transaction at a time anyway). They share
    /// the worker's name: a participant two of them ever held (a lease run
    /// out) is written by whichever commits first over its revision, and
    /// the other's write of it is refused, as between processes.
    pub fn with_concurrency(mut self, loops: usize) -> Self {
        self.concurrency = loops.max(1);
        self
    }

    pub fn with_lease(mut self, lease: SignedDuration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a claim (on participants or on effects) lasts.
    pub fn lease(&self) -> SignedDuration {
        self.lease
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A published version's document (cached: versions never change).
    async fn version(&self, conn: &mut Conn, flow: i64, number: i64) -> Result<Arc<FlowDocument>> {
        if let Some(doc) = self.versions.lock().expect("cache lock").get(&(flow, number)) {
            return Ok(doc.clone());
        }
        let text: Option<String> = sqlx::query_scalar("SELECT document FROM flow_versions WHERE flow_id = $1 AND number = $2")
            .bind(flow)
            .bind(number)
            .fetch_optional(&mut *conn)
            .await?;
        let text = text.ok_or(Error::VersionNotFound { flow, number })?;
        let doc = Arc::new(
            FlowDocument::from_json(&text).map_err(|err| Error::Internal(anyhow::anyhow!("stored version unreadable: {err}")))?,
        );
        self.versions.lock().expect("cache lock").insert((flow, number), doc.clone());
        Ok(doc)
    }

    /// Enrolls contacts into a flow's newest published version, honouring
    /// its re-entry rule. Returns the new participants' ids; contacts the
    /// rule keeps out are skipped and counted in the second value.
    pub async fn enroll(&self, flow_id: i64, contact_ids: &[i64]) -> Result<(Vec<i64>, usize)> {
        let mut tx = crate::db::begin_write(&self.pool).await?;
        let enrolled = self.enroll_in(&mut tx, flow_id, contact_ids).await?;
        tx.commit().await?;
        Ok(enrolled)
    }

    /// Enrolls `contact` into every published flow whose start step admits
    /// the members of one of `lists` (entry on list membership).
    pub async fn enroll_by_lists(&self, conn: &mut Conn, contact: i64, lists: &[String]) -> Result<usize> {
        let mut enrolled = 0;
        for list in lists {
            let flows: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM flows WHERE entry_list = $1 COLLATE NOCASE AND EXISTS (SELECT 1 FROM flow_versions v WHERE v.flow_id = flows.id)",
            )
            .bind(list)
            .fetch_all(&mut *conn)
            .await?;
            for flow in flows {
                enrolled += self.enroll_in(conn, flow, &[contact]).await?.0.len();
            }
        }
        Ok(enrolled)
    }

    pub(crate) async fn enroll_in(&self, tx: &mut Conn, flow_id: i64, contact_ids: &[i64]) -> Result<(Vec<i64>, usize)> {
        let version: Option<i64> = sqlx::query_scalar("SELECT max(number) FROM flow_versions WHERE flow_id = $1")
            .bind(flow_id)
            .fetch_one(&mut *tx)
            .await?;
        let Some(version) = version else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM flows WHERE id = $1").bind(flow_id).fetch_optional(&mut *tx).await?;
            return Err(if exists.is_some() { Error::NotPublished(flow_id) } else { Error::FlowNotFound(flow_id) });
        };
        let doc = self.version(tx, flow_id, version).await?;
        let reentry = doc.settings.reentry.unwrap_or(Reentry::Never);
        let now = self.now();
        let at = now.to_string();
        let mut ids = Vec::with_capacity(contact_ids.len());
        let mut kept_out = 0;
        let mut slots: HashMap<i64, i64> = HashMap::new();
        // Contacts this call enrolled: under a re-entry rule a repeat in
        // the same call is kept out, as it would be in the next call.
        let mut enrolled_now: std::collections::HashSet<i64> = std::collections::HashSet::new();
        // A few statements per chunk, not a round trip per contact.
        for chunk in contact_ids.chunks(ENROLL_CHUNK) {
            // A deleted (erased) contact is gone for flows: only its
            // history stays.
            let known = ids_in(tx, "SELECT id FROM contacts WHERE deleted_at IS NULL AND id IN ", chunk, "").await?;
            if let Some(missing) = chunk.iter().find(|id| !known.contains(id)) {
                return Err(Error::ContactNotFound(*missing));
            }
            let blocked = match reentry {
                Reentry::Always => Default::default(),
                Reentry::Never => ids_in(tx, &format!("SELECT contact_id FROM participants WHERE flow_id = {flow_id} AND contact_id IN "), chunk, "").await?,
                Reentry::AfterExit => {
                    let open = " AND status NOT IN ('completed', 'converted', 'exited', 'cancelled', 'failed')";
                    ids_in(tx, &format!("SELECT contact_id FROM participants WHERE flow_id = {flow_id} AND contact_id IN "), chunk, open).await?
                }
            };
            let mut rows = Vec::with_capacity(chunk.len());
            for &contact_id in chunk {
                let repeat = reentry != Reentry::Always && !enrolled_now.insert(contact_id);
                if blocked.contains(&contact_id) || repeat {
                    kept_out += 1;
                    continue;
                }
                let seed = (contact_id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ now.as_nanosecond() as u64;
                let state = serde_json::to_string(&Participant::new(seed)).expect("participants serialize");
                let starts = match &doc.settings.slow_drip {
                    Some(drip) => drip_slot(tx, flow_id, drip, now, &mut slots).await?,
                    None => now,
                };
                rows.push((contact_id, state, millis(starts)));
            }
            if rows.is_empty() {
                continue;
            }
            let mut insert = Sql::new("INSERT INTO participants (flow_id, version, contact_id, status, state, next_run_at, starts_at, enrolled_at, updated_at)");
            // Only the state is bound; the rest are numbers and our own
            // timestamp, written in (few binds: see db::id_list).
            insert.push_values(rows, |mut row, (contact_id, state, starts)| {
                row.push(flow_id).push(version).push(contact_id).push("'ready'").push_bind(state);
                row.push(starts).push(starts).push(format!("'{at}'")).push(format!("'{at}'"));
            });
            insert.push(" RETURNING id");
            let mut made: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
            // Ids ascend with insertion order on both engines.
            made.sort_unstable();
            ids.extend(made);
        }
        Ok((ids, kept_out))
    }

    /// Claims due participants (a lease) and returns them.
    ///
    /// On PostgreSQL several processes claim at once: rows another worker is
    /// claiming are skipped, not waited for. SQLite has one writer at a time.
    async fn claim(&self, now: Timestamp) -> Result<Vec<Claimed>> {
        // The due range of participants_due (claimable statuses only), then
        // the rows by primary key. On PostgreSQL the ids come as one array
        // (`= ANY(ARRAY(…))`), not as a join: the prepared statement's
        // generic plan cannot see the LIMIT, guesses a tenth of the table
        // and joins it by a sequential scan (8.8 s a claim among 10,000,000),
        // so every claim was planned anew; as an array the generic plan is
        // the custom one (11 ms with 500 claimed) and is reused.
        let backend = Backend::of(&self.pool);
        let (open, close) = match backend {
            Backend::Sqlite => ("IN (", ")"),
            Backend::Postgres => ("= ANY(ARRAY(", "))"),
        };
        let sql = format!(
            "UPDATE participants SET lease_owner = $1, lease_until = $2
             WHERE id {open}
                 SELECT id FROM participants
                 WHERE next_run_at <= $3 AND status IN ('ready', 'waiting', 'held')
                   AND (lease_until IS NULL OR lease_until < $4)
                 ORDER BY next_run_at LIMIT $5{}{close}
             RETURNING id, flow_id, version, contact_id, revision, state, callback_at, callback_owner, next_run_at",
            backend.skip_locked()
        );
        // A write transaction of its own, to wait its turn with the others
        // (see `crate::db`); one statement, all or nothing: safe to run again.
        let sql = &sql;
        let mut rows = crate::db::retry_busy("a scheduler claim", move || async move {
            let mut tx = crate::db::begin_write(&self.pool).await?;
            let rows = sqlx::query(sql)
                .bind(&*self.worker)
                .bind(millis(now + self.lease))
                .bind(millis(now))
                .bind(millis(now))
                .bind(self.batch as i64)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        })
        .await?;
        // Committed in contact order, so that two workers whose batches
        // share contacts lock those rows in the same order.
        rows.sort_by_key(|row| (row.get::<i64, _>("contact_id"), row.get::<i64, _>("id")));
        rows.iter()
            .map(|row| {
                crate::ops::metrics::lateness(now, row.get("next_run_at"));
                Ok(Claimed {
                    id: row.get("id"),
                    flow_id: row.get("flow_id"),
                    version: row.get("version"),
                    contact_id: row.get("contact_id"),
                    revision: row.get("revision"),
                    state: read_state(row.get("state"))?,
                    callback: timestamp_from_millis(row.get("callback_at"))
                        .filter(|at| *at <= now)
                        .map(|at| (at, row.get("callback_owner"))),
                })
            })
            .collect()
    }

    /// One scheduler pass: claim due participants and move each as far as it goes now.
    pub async fn tick(&self) -> Result<Tick> {
        let batch = self.claim_batch().await?;
        self.commit_batch(batch).await
    }

    /// Claims due participants and works out their advances, writing
    /// nothing but the claim. [`Runtime::commit_batch`] writes the rest.
    pub async fn claim_batch(&self) -> Result<Batch> {
        let now = self.now();
        let claimed = self.claim(now).await?;
        let mut steps = Vec::with_capacity(claimed.len());
        if !claimed.is_empty() {
            let mut conn = self.pool.acquire().await?;
            let contact_ids: Vec<i64> = claimed.iter().map(|c| c.contact_id).collect();
            let mut contacts = contacts::load_many(&mut conn, &contact_ids).await?;
            let groups = load_groups(&mut conn).await?;
            let splits = winner::ready(self).await?;
            for participant in &claimed {
                let doc = self.version(&mut conn, participant.flow_id, participant.version).await?;
                let event = match (&participant.state.step, &participant.callback) {
                    (None, _) => Event::Enroll,
                    (Some(_), Some((at, owner))) => Event::Callback { at: *at, owner: owner.clone() },
                    (Some(_), None) => Event::Wake,
                };
                let before = contacts.get(&participant.contact_id).cloned().unwrap_or_default();
                let groups = splits.groups(&groups, participant.flow_id, participant.version);
                let mut step = engine::advance_with(&doc, &groups, &participant.state, &before, event, now);
                contacts::note_sends(&before, &mut step.contact);
                // Later participants of the same contact in this batch see the change.
                contacts.insert(participant.contact_id, step.contact.clone());
                steps.push((before, step));
            }
        }
        Ok(Batch { now, claimed, steps })
    }

    /// Commits a claimed batch in one transaction, in a constant number of
    /// statements (see [`writes`]). Participants whose lease was taken over
    /// meanwhile are left alone (not counted as committed).
    pub async fn commit_batch(&self, batch: Batch) -> Result<Tick> {
        if batch.claimed.is_empty() {
            return Ok(Tick::default());
        }
        // All or nothing, and written only over the revisions claimed: safe to run again.
        let batch = &batch;
        crate::db::retry_busy("a scheduler batch", move || async move {
            // A participant found taken over is left out, with what was
            // worked out over its changes, and the rest written again.
            let mut lost = HashSet::new();
            loop {
                match self.try_commit_batch(batch, &lost).await? {
                    Ok(tick) => return Ok(tick),
                    Err(taken) => lost.extend(taken),
                }
            }
        })
        .await
    }

    /// One attempt at [`Runtime::commit_batch`] without the participants
    /// `lost`: the tick, or (nothing written) more participants found lost.
    async fn try_commit_batch(&self, batch: &Batch, lost: &HashSet<i64>) -> Result<std::result::Result<Tick, Vec<i64>>> {
        let mut chains = Chain::all(batch, lost);
        let mut tx = crate::db::begin_write(&self.pool).await?;
        // Two workers whose batches change one contact write it one after
        // the other: on PostgreSQL the contacts are locked first, in id
        // order (SQLite has one writer at a time). The second then finds
        // its participants of the contact taken over (the first's change
        // woke them, moving their revision) and leaves them to be run again
        // with the new data.
        let changing: Vec<i64> = chains.iter().filter(|c| c.changes(batch)).map(|c| c.contact).collect();
        if Backend::of(&self.pool) == Backend::Postgres && !changing.is_empty() {
            sqlx::query(&format!("SELECT id FROM contacts WHERE id IN ({}) ORDER BY id FOR NO KEY UPDATE", crate::db::id_list(&changing)))
                .execute(&mut *tx)
                .await?;
        }
        // Contacts are written over the version read (contact pressure's
        // sends too), so that two workers can neither both take a cap's
        // last slot nor both change one field: the loser's participants
        // that changed the contact are released, and claimed again with it.
        let claims: Vec<(i64, &Contact, &Contact)> = chains.iter().filter_map(|c| c.change(batch)).collect();
        let changed = contacts::claim_many(&mut tx, &claims).await?;
        for chain in chains.iter_mut().filter(|c| changed.contains(&c.contact)) {
            tracing::debug!(contact = chain.contact, "the contact changed meanwhile; checked again next pass");
            // What stays changed nothing: nothing to claim.
            chain.cut_at_first_change(batch);
        }

        let writes: Vec<(writes::StateWrite, bool)> = chains
            .iter()
            .flat_map(|c| &c.write)
            .map(|&i| {
                let claimed = &batch.claimed[i];
                let write = writes::StateWrite { id: claimed.id, revision: claimed.revision, state: &batch.steps[i].1.participant };
                (write, claimed.callback.is_some())
            })
            .collect();
        let fenced: Vec<(&writes::StateWrite, bool)> = writes.iter().map(|(w, called_back)| (w, *called_back)).collect();
        let written: HashSet<i64> = writes::save_states_fenced(&mut tx, &fenced, Some(&*self.worker), batch.now).await?.into_iter().collect();
        if written.len() != writes.len() {
            let taken: Vec<i64> = writes.iter().map(|(w, _)| w.id).filter(|id| !written.contains(id)).collect();
            tracing::warn!(participants = ?taken, "lease lost; other workers own these participants now");
            return Ok(Err(taken)); // rolled back
        }

        let released: Vec<i64> = chains.iter().flat_map(|c| &c.release).map(|&i| batch.claimed[i].id).collect();
        if !released.is_empty() {
            sqlx::query(&format!(
                "UPDATE participants SET lease_owner = NULL, lease_until = NULL WHERE id IN ({}) AND lease_owner = $1",
                crate::db::id_list(&released)
            ))
            .bind(&*self.worker)
            .execute(&mut *tx)
            .await?;
        }
        let committed: Vec<usize> = chains.iter().flat_map(|c| c.write.iter().copied()).collect();
        let records: Vec<writes::Records> = committed.iter().map(|&i| writes::Records::of(batch.claimed[i].id, &batch.steps[i].1)).collect();
        writes::write_records_many(&mut tx, &records, batch.now).await?;
        let advanced: Vec<i64> = records.iter().map(|r| r.participant).collect();
        let changes: Vec<(i64, &Contact, &Contact)> = chains.iter().filter_map(|c| c.change(batch)).collect();
        self.save_contacts(&mut tx, &changes, &contacts::Keep { participants: &advanced, leased_by: Some(&*self.worker) }).await?;

        let mut tick = Tick { claimed: batch.claimed.len(), committed: committed.len(), transitions: 0 };
        let mut tally = rollups::Tally::default();
        for &i in &committed {
            let (participant, step) = (&batch.claimed[i], &batch.steps[i].1);
            tick.transitions += step.participant.visit.saturating_sub(participant.state.visit) as usize;
            tally.advance(participant.flow_id, participant.version, &participant.state, step, batch.now);
        }
        tally.write(&mut tx).await?;
        tx.commit().await?;
        committed.iter().for_each(|&i| crate::ops::metrics::transitions(batch.claimed[i].state.visit, &batch.steps[i].1));
        Ok(Ok(tick))
    }

    /// Feeds an event that is not a timer (an agent's action, an effect's
    /// outcome) to one participant, in one transaction.
    pub async fn deliver(&self, participant_id: i64, event: Event) -> Result<ParticipantView> {
        self.deliver_with(participant_id, event, None).await?;
        self.participant(participant_id).await
    }

    /// Delivers `event` and, in the same transaction once the step has
    /// moved, writes what `also` writes (the workspace's manual send: its
    /// outbox entry and conversation record): both are kept, or neither.
    pub async fn deliver_along(&self, participant_id: i64, event: Event, also: &dyn AlsoWrite) -> Result<()> {
        self.deliver_with(participant_id, event, Some(also)).await
    }

    async fn deliver_with(&self, participant_id: i64, event: Event, also: Option<&dyn AlsoWrite>) -> Result<()> {
        // A scheduler pass may commit the same participant meanwhile: write
        // only over the revision read, and read again if it moved.
        for _ in 0..5 {
            if self.try_deliver(participant_id, event.clone(), also).await? {
                return Ok(());
            }
        }
        Err(Error::Internal(anyhow::anyhow!("participant {participant_id} kept changing; event not delivered")))
    }

    async fn try_deliver(&self, participant_id: i64, event: Event, also: Option<&dyn AlsoWrite>) -> Result<bool> {
        let now = self.now();
        let mut tx = crate::db::begin_write(&self.pool).await?;
        let row = sqlx::query("SELECT flow_id, version, contact_id, state, revision, status FROM participants WHERE id = $1")
            .bind(participant_id)
            .fetch_optional(&mut *tx)
            .await?;
        // Bulk actions write the status column: it is the truth.
        let Some(row) = row else {
            tx.commit().await?;
            return Err(Error::ParticipantNotFound(participant_id));
        };
        let (flow_id, version, contact_id, revision): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(4));
        let state: Participant = read_state(row.get(3))?;
        let pending = matches!(row.get::<&str, _>(5), "ready" | "waiting" | "held");
        if !pending || (matches!(event, Event::Manual { .. }) && !matches!(state.phase, engine::Phase::Manual { .. })) {
            tx.commit().await?;
            return Err(Error::NoPendingAction(participant_id));
        }
        let doc = self.version(&mut tx, flow_id, version).await?;
        let before = contacts::load(&mut tx, contact_id).await?;
        let groups = load_groups(&mut tx).await?;
        let mut step = engine::advance_with(&doc, &groups, &state, &before, event, now);
        contacts::note_sends(&before, &mut step.contact);
        if !contacts::claim_sends(&mut tx, contact_id, &before, &step.contact).await? {
            return Ok(false);
        }
        let write = writes::StateWrite { id: participant_id, revision, state: &step.participant };
        if writes::save_states(&mut tx, &[write], now).await? != 1 {
            return Ok(false);
        }
        writes::write_records_many(&mut tx, &[writes::Records::of(participant_id, &step)], now).await?;
        let keep = contacts::Keep { participants: &[participant_id], leased_by: Some(&*self.worker) };
        self.save_contact(&mut tx, contact_id, &before, &step.contact, &keep).await?;
        rollups::Tally::of(flow_id, version, &state, &step, now).write(&mut tx).await?;
        if let Some(also) = also {
            also.write(&mut tx).await?;
        }
        tx.commit().await?;
        crate::ops::metrics::transitions(state.visit, &step);
        Ok(true)
    }

    pub async fn participant(&self, id: i64) -> Result<ParticipantView> {
        let row = sqlx::query(
            "SELECT id, flow_id, version, contact_id, status, step, next_run_at, pass_count, state FROM participants WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(Error::ParticipantNotFound(id))?;
        let state: Option<Participant> = serde_json::from_str(row.get::<&str, _>("state")).ok();
        Ok(ParticipantView {
            id: row.get("id"),
            flow_id: row.get("flow_id"),
            version: row.get("version"),
            contact_id: row.get("contact_id"),
            status: row.get("status"),
            step: row.get("step"),
            next_run_at: timestamp_from_millis(row.get("next_run_at")),
            pass_count: row.get("pass_count"),
            reason: state.and_then(|s| s.reason),
        })
    }

    /// The participant's timeline, in the order the steps were reached.
    pub async fn timeline(&self, id: i64) -> Result<Vec<ActionRecord>> {
        self.participant(id).await?;
        let rows = sqlx::query(
            "SELECT visit, step, kind, due_at, done_at, outcome, reason, manual, owner, subject, why
             FROM participant_actions WHERE participant_id = $1 ORDER BY visit",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let outcome: String = row.get("outcome");
                ActionRecord {
                    visit: row.get::<i64, _>("visit") as u32,
                    step: row.get("step"),
                    kind: row.get("kind"),
                    due_at: row.get::<&str, _>("due_at").parse().unwrap_or_default(),
                    done_at: row.get::<Option<&str>, _>("done_at").and_then(|t| t.parse().ok()),
                    outcome: serde_json::from_value(serde_json::Value::String(outcome)).unwrap_or(engine::Outcome::Pending),
                    reason: row.get("reason"),
                    manual: row.get::<i64, _>("manual") != 0,
                    owner: row.get("owner"),
                    subject: row.get("subject"),
                    why: row.get("why"),
                }
            })
            .collect())
    }

    /// Participants per version, step and status for a flow: for the canvas,
    /// and to show what a migration to a new version would move.
    pub async fn counts(&self, flow_id: i64) -> Result<Vec<(i64, String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT version, coalesce(step, ''), status, count(*) FROM participants WHERE flow_id = $1
             GROUP BY version, step, status ORDER BY version, step, status",
        )
        .bind(flow_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }

    /// Runs a failed participant's step again, as a new visit (the failed
    /// record stays on the timeline; effects get new idempotency keys).
    pub async fn retry(&self, id: i64) -> Result<ParticipantView> {
        let now = self.now();
        let mut tx = crate::db::begin_write(&self.pool).await?;
        let row = sqlx::query("SELECT state, revision FROM participants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::ParticipantNotFound(id))?;
        let mut state: Participant = read_state(row.get("state"))?;
        if state.status != Status::Failed || state.step.is_none() {
            return Err(Error::NotFailed(id));
        }
        state.status = Status::Ready;
        state.phase = engine::Phase::Due;
        state.reason = None;
        state.visit += 1;
        state.due_at = Some(now);
        state.next_run_at = Some(now);
        sqlx::query("UPDATE participants SET status = 'ready', state = $1, next_run_at = $2, revision = revision + 1, updated_at = $3 WHERE id = $4 AND revision = $5")
            .bind(serde_json::to_string(&state).expect("participants serialize"))
            .bind(millis(now))
            .bind(now.to_string())
            .bind(id)
            .bind(row.get::<i64, _>("revision"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.participant(id).await
    }

    /// Moves participants pinned to older versions of a flow onto its newest
    /// version. Each keeps its step when the new version has a step with the
    /// same id, or goes to `map[old step]`; participants whose step has
    /// neither stay where they are and are counted. Returns (moved, left).
    pub async fn migrate(&self, flow_id: i64, map: &HashMap<String, String>) -> Result<(usize, usize)> {
        let mut tx = crate::db::begin_write(&self.pool).await?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT max(number) FROM flow_versions WHERE flow_id = $1")
            .bind(flow_id)
            .fetch_one(&mut *tx)
            .await?;
        let newest = newest.ok_or(Error::NotPublished(flow_id))?;
        let doc = self.version(&mut tx, flow_id, newest).await?;
        for target in map.values() {
            if doc.step(target).is_none() {
                return Err(Error::BadBody {
                    status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    code: "unknown_step",
                    message: format!("Version {newest} has no step “{target}” to move participants to."),
                });
            }
        }
        let rows = sqlx::query(
            "SELECT id, state, revision FROM participants WHERE flow_id = $1 AND version < $2
             AND status NOT IN ('completed', 'converted', 'exited', 'cancelled')",
        )
        .bind(flow_id)
        .bind(newest)
        .fetch_all(&mut *tx)
        .await?;
        let (mut moved, mut left) = (0, 0);
        for row in rows {
            let mut state = read_state(row.get("state"))?;
            let target = match state.step.as_deref() {
                None => None,
                Some(step) => map.get(step).cloned().or_else(|| doc.step(step).map(|s| s.id.clone())),
            };
            let Some(target) = target.or_else(|| state.step.is_none().then(String::new)) else {
                left += 1;
                continue;
            };
            if !target.is_empty() && state.step.as_deref() != Some(target.as_str()) {
                // A different step: it starts that step afresh, now.
                state.step = Some(target);
                state.phase = engine::Phase::Due;
                state.status = Status::Ready;
                state.next_run_at = Some(self.now());
            }
            // A booked callback stays the next run.
            sqlx::query(
                "UPDATE participants SET version = $1, step = $2, status = $3, state = $4,
                     next_run_at = CASE WHEN callback_at IS NOT NULL THEN callback_at ELSE $5 END, revision = revision + 1
                 WHERE id = $6 AND revision = $7",
            )
            .bind(newest)
            .bind(&state.step)
            .bind(state.status.as_str())
            .bind(serde_json::to_string(&state).expect("participants serialize"))
            .bind(engine::next_wake(&state).map(millis))
            .bind(row.get::<i64, _>("id"))
            .bind(row.get::<i64, _>("revision"))
            .execute(&mut *tx)
            .await?;
            moved += 1;
        }
        tx.commit().await?;
        Ok((moved, left))
    }

    /// Runs scheduler passes until nothing is due at the clock's `now`.
    pub async fn run_until_idle(&self) -> Result<Tick> {
        let mut total = Tick::default();
        loop {
            let tick = self.tick().await?;
            if tick.claimed == 0 {
                return Ok(total);
            }
            total.claimed += tick.claimed;
            total.committed += tick.committed;
            total.transitions += tick.transitions;
        }
    }
}

impl Runtime {
/// A contact's changes by an advance (or an event): saved, its other
/// participants woken to re-check, and lists it joined may enroll it.
pub(crate) async fn save_contact(&self, conn: &mut Conn, contact_id: i64, before: &Contact, after: &Contact, keep: &contacts::Keep<'_>) -> Result<()> {
    self.save_contacts(conn, &[(contact_id, before, after)], keep).await
}

/// What a pass of advances did to contacts, `originals` as read and
/// `current` as the advances left them: the new sends claimed (a
/// [`Error::Conflict`] when another process recorded sends for one
/// meanwhile: the pass must be run again) and the changes saved, waking the
/// contacts' participants but `advanced` and those `leased_by` holds.
pub(crate) async fn commit_contacts(
    &self,
    conn: &mut Conn,
    originals: &HashMap<i64, Contact>,
    current: &HashMap<i64, Contact>,
    advanced: &[i64],
    leased_by: Option<&str>,
) -> Result<()> {
    let changes: Vec<(i64, &Contact, &Contact)> = originals.iter().map(|(id, before)| (*id, before, &current[id])).collect();
    if let Some(id) = contacts::claim_many(conn, &changes).await?.into_iter().next() {
        return Err(Error::Conflict { code: "contact_sends_changed", message: format!("contact {id}'s sends changed during a pass") });
    }
    self.save_contacts(conn, &changes, &contacts::Keep { participants: advanced, leased_by }).await
}

/// [`Runtime::save_contact`] for many contacts, in a constant number of
/// statements (but those joining lists).
pub(crate) async fn save_contacts(&self, conn: &mut Conn, changes: &[(i64, &Contact, &Contact)], keep: &contacts::Keep<'_>) -> Result<()> {
    contacts::save_many_except(conn, changes, keep).await?;
    for (contact_id, before, after) in changes {
        let joined: Vec<String> = after.lists.difference(&before.lists).cloned().collect();
        if !joined.is_empty() {
            self.enroll_by_lists(conn, *contact_id, &joined).await?;
        }
    }
    Ok(())
}
}

/// Statuses a participant can be searched by.
pub fn status_names() -> Vec<&'static str> {
    [
        Status::Ready,
        Status::Waiting,
        Status::Held,
        Status::Paused,
        Status::Cancelled,
        Status::Suppressed,
        Status::Completed,
        Status::Converted,
        Status::Exited,
        Status::Failed,
        Status::Transition,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect()
}

/// Action groups by lower-case name. Read per batch: groups are edited in
/// place, and a change applies from the next run.
async fn load_groups(conn: &mut Conn) -> Result<engine::Installation> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, document FROM action_groups").fetch_all(&mut *conn).await?;
    let groups = rows.into_iter().filter_map(|(name, text)| FlowDocument::from_json(&text).ok().map(|doc| (name.to_lowercase(), doc))).collect();
    Ok(engine::Installation { groups, pressure: pressure::load(conn).await? })
}

/// Slow drip: the start of the first period (hour or day, UTC) from `now`
/// with fewer than `limit` starts. `slots` counts starts per period index,
/// filled from the database the first time a period is looked at.
/// Contacts enrolled per statement (one bind each).
const ENROLL_CHUNK: usize = 1_000;

/// The ids `select` finds among `ids`: `select` ends in `IN `, `tail` follows the list.
async fn ids_in(conn: &mut Conn, select: &str, ids: &[i64], tail: &str) -> Result<std::collections::HashSet<i64>> {
    let sql = format!("{select}({}){tail}", crate::db::id_list(ids));
    Ok(sqlx::query_scalar::<_, i64>(&sql).fetch_all(&mut *conn).await?.into_iter().collect())
}

async fn drip_slot(
    conn: &mut Conn,
    flow_id: i64,
    drip: &app::core::flow::SlowDrip,
    now: Timestamp,
    slots: &mut HashMap<i64, i64>,
) -> Result<Timestamp> {
    let period = match drip.per {
        app::core::flow::DripPeriod::Hour => 3_600_000,
        app::core::flow::DripPeriod::Day => 86_400_000,
    };
    let limit = i64::from(drip.limit.max(1));
    let mut index = millis(now).div_euclid(period);
    loop {
        let used = match slots.get(&index) {
            Some(used) => *used,
            None => {
                let used: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1 AND starts_at >= $2 AND starts_at < $3")
                    .bind(flow_id)
                    .bind(index * period)
                    .bind((index + 1) * period)
                    .fetch_one(&mut *conn)
                    .await?;
                slots.insert(index, used);
                used
            }
        };
        if used < limit {
            slots.insert(index, used + 1);
            let start = Timestamp::from_millisecond(index * period).unwrap_or(now);
            return Ok(start.max(now));
        }
        index += 1;
    }
}

/// A worker name no other process shares, on this machine or another:
/// claims are made and checked under it.
pub fn worker_name(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let mut nonce = [0_u8; 4];
    getrandom::getrandom(&mut nonce).expect("the OS random source works");
    format!("{role}-{host}-{}-{}", std::process::id(), hex::encode(nonce))
}

/// How often a worker looks for background jobs whose process stopped
/// (and forgets rate-limit buckets that are full again).
const RECOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs the scheduler and the outbox dispatcher until the process ends:
/// busy while there is work, polling every `idle` when there is none.
pub fn spawn_workers(runtime: Runtime, dispatcher: outbox::Dispatcher, idle: std::time::Duration) -> tokio::task::JoinHandle<()> {
    spawn_workers_until(runtime, dispatcher, idle, tokio_util::sync::CancellationToken::new())
}

/// [`spawn_workers`] until `stop` is cancelled (SIGTERM): no pass starts
/// after that, and the pass under way (a claimed batch of participants,
/// claimed effects) runs to its end, committed and recorded, before the
/// task ends. See [`Runtime::wind_down`] for the rest of a graceful stop.
pub fn spawn_workers_until(
    runtime: Runtime,
    dispatcher: outbox::Dispatcher,
    idle: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    // Events are delivered by a task of their own, so that a long
    // scheduler or outbox pass does not hold them up.
    let events = tokio::spawn(deliver_events_until(runtime.clone(), idle, stop.clone()));
    // The bounce and reply mailbox, while it is enabled (one process at a time).
    let mailbox = tokio::spawn(crate::channels::mailbox::poll_until(runtime.clone(), stop.clone()));
    // The outbox too: its sends overlap the scheduler's passes, and a
    // campaign's emails go out as fast as they are queued, not a batch per
    // scheduler pass. The scheduler wakes it when a pass moved someone.
    let queued = Arc::new(tokio::sync::Notify::new());
    let outbox = tokio::spawn(dispatch_until(dispatcher, queued.clone(), idle, stop.clone()));
    // More scheduler loops beside the first, on PostgreSQL: each claims a
    // batch of its own (claims skip what another holds), so one waits on
    // the database while another works out its advances.
    let more: Vec<tokio::task::JoinHandle<()>> =
        (1..runtime.concurrency).map(|_| tokio::spawn(schedule_until(runtime.clone(), queued.clone(), idle, stop.clone(), false))).collect();
    tokio::spawn(async move {
        schedule_until(runtime, queued, idle, stop, true).await;
        for loop_ in more {
            let _ = loop_.await;
        }
        let _ = outbox.await;
        let _ = events.await;
        let _ = mailbox.await;
    })
}

/// A scheduler loop of [`spawn_workers_until`]: a pass after another while
/// there is work, else every `idle`, until `stop`; each pass that moved
/// someone wakes the outbox (`queued`). The loop that `recovers` also looks
/// for jobs of stopped processes, forgets full rate-limit buckets and
/// removes expired data files: at start, then every [`RECOVER_EVERY`],
/// between its passes.
async fn schedule_until(
    runtime: Runtime,
    queued: Arc<tokio::sync::Notify>,
    idle: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
    recovers: bool,
) {
    let mut recovered_at: Option<std::time::Instant> = None;
    let mut first = true;
    while !stop.is_cancelled() {
        if recovers && recovered_at.is_none_or(|at| at.elapsed() >= RECOVER_EVERY) {
            if let Err(err) = jobs::recover(&runtime).await {
                tracing::error!(error = %err, "looking for stopped jobs failed");
            }
            if let Err(err) = crate::auth::limit::forget_full(runtime.pool()).await {
                tracing::error!(error = %err, "forgetting full rate-limit buckets failed");
            }
            if let Err(err) = datafile::sweep(runtime.pool(), runtime.now()).await {
                tracing::error!(error = %err, "removing expired data files failed");
            }
            recovered_at = Some(std::time::Instant::now());
        }
        let busy = match runtime.tick().await {
            Ok(tick) => {
                crate::ops::health::scheduler_passed();
                if tick.transitions > 0 {
                    queued.notify_one();
                }
                if first && tick.transitions > 0 {
                    // When a (re)started process is working again.
                    first = false;
                    tracing::info!(worker = runtime.worker(), transitions = tick.transitions, "first transitions committed");
                }
                tick.claimed > 0
            }
            Err(err) => {
                tracing::error!(error = %err, "scheduler pass failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

/// The outbox loop of [`spawn_workers_until`]: a pass after another while
/// there are effects due, else when `queued` is notified or every `idle`,
/// until `stop`; the pass under way runs to its end.
async fn dispatch_until(dispatcher: outbox::Dispatcher, queued: Arc<tokio::sync::Notify>, idle: std::time::Duration, stop: tokio_util::sync::CancellationToken) {
    while !stop.is_cancelled() {
        let busy = match dispatcher.dispatch().await {
            Ok(done) => {
                crate::ops::health::scheduler_passed();
                done != outbox::Dispatch::default()
            }
            Err(err) => {
                tracing::error!(error = %err, "outbox pass failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = queued.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

/// The event delivery loop of [`spawn_workers_until`]: a pass as soon as
/// events are written in this process, else every `idle` (events written
/// by other processes), until `stop`; the pass under way runs to its end.
async fn deliver_events_until(runtime: Runtime, idle: std::time::Duration, stop: tokio_util::sync::CancellationToken) {
    let signal = runtime.events_signal();
    while !stop.is_cancelled() {
        let busy = match runtime.deliver_events().await {
            Ok(pass) => pass.events > 0,
            Err(err) => {
                tracing::error!(error = %err, "event delivery pass failed");
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

/// What a stopping process gave back ([`Runtime::hand_back`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandedBack {
    /// Claimed participants whose lease was released.
    pub participants: u64,
    /// Bulk runs left for another process to carry on.
    pub runs: u64,
    /// Imports marked failed, with the rows they had committed.
    pub imports: u64,
}

impl Runtime {
    /// How long a stopping process lets its work end by itself: two thirds
    /// of the lease, so that it has handed back the rest and exited before
    /// its claims would run out anyway.
    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::try_from(self.lease).unwrap_or_default() * 2 / 3
    }

    /// The rest of a graceful stop (SIGTERM), once the loop of
    /// [`spawn_workers_until`] was told to stop at `since`: waits, until
    /// [`Runtime::grace`] has passed, for the pass under way to end and
    /// for the background jobs this process runs (imports, bulk runs) to
    /// finish; then gives back what it still holds ([`Runtime::hand_back`]).
    /// A pass still under way then is cut short: its transaction rolls
    /// back, its participants are handed back, and effects it had claimed
    /// are tried again once their lease runs out (at least once, under the
    /// same key). Returns within nine tenths of the lease.
    pub async fn wind_down(&self, mut workers: tokio::task::JoinHandle<()>, since: tokio::time::Instant) -> Result<HandedBack> {
        let deadline = since + self.grace();
        if tokio::time::timeout_at(deadline, &mut workers).await.is_err() {
            tracing::warn!("the scheduler or outbox pass under way outlasted the grace period and was cut short");
            workers.abort();
            let _ = workers.await;
        }
        while tokio::time::Instant::now() < deadline {
            match self.running_jobs().await {
                Ok(0) | Err(_) => break,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let last = since + std::time::Duration::try_from(self.lease).unwrap_or_default() * 9 / 10;
        tokio::time::timeout_at(last, self.hand_back())
            .await
            .unwrap_or_else(|_| Err(Error::Internal(anyhow::anyhow!("handing back claims outlasted the lease; they run out by themselves"))))
    }

    /// Imports and bulk runs this process runs now.
    async fn running_jobs(&self) -> Result<i64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM contact_imports WHERE status = 'running' AND owner = $1)
                  + (SELECT count(*) FROM bulk_runs WHERE status = 'running' AND owner = $2)",
        )
        .bind(&*self.worker)
        .bind(&*self.worker)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Gives back what this process (its worker name) still holds, for a
    /// stop that is not a crash: participants it claimed but did not
    /// commit are released at once, not after their lease; its bulk runs
    /// lose their owner, so the next process to look for stopped jobs
    /// (within 15 s) carries them on from their cursor; its imports, whose
    /// upload is on this machine, are marked failed with the rows they
    /// committed. A job's writes are made only under its owner's name, so
    /// a chunk or batch still under way here is rolled back, not counted.
    pub async fn hand_back(&self) -> Result<HandedBack> {
        let now = self.now();
        let participants = sqlx::query(
            "UPDATE participants SET lease_owner = NULL, lease_until = NULL
             WHERE next_run_at <= $1 AND status IN ('ready', 'waiting', 'held') AND lease_owner = $2",
        )
        .bind(millis(now) + 1)
        .bind(&*self.worker)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let runs = sqlx::query("UPDATE bulk_runs SET owner = NULL, heartbeat_at = NULL WHERE status = 'running' AND owner = $1")
            .bind(&*self.worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let imports = sqlx::query(
            "UPDATE contact_imports SET status = 'failed', finished_at = $1,
                 error = 'The process running the import was stopped; the rows counted as done were imported.'
             WHERE status = 'running' AND owner = $2",
        )
        .bind(now.to_string())
        .bind(&*self.worker)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let handed = HandedBack { participants, runs, imports };
        tracing::info!(worker = self.worker(), ?handed, "stopped; handed back what was still held");
        Ok(handed)
    }
}

/// What a caller writes in a delivery's own transaction ([`Runtime::deliver_along`]).
#[async_trait::async_trait]
pub trait AlsoWrite: Send + Sync {
    async fn write(&self, conn: &mut Conn) -> Result<()>;
}
