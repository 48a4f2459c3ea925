//! The conversation record: one row per message to a person (email, SMS,
//! notifications) or automatic call, keyed by the outbox's idempotency key
//! so every try updates the same row and a message already sent (a call
//! already placed) is not sent again.

use std::collections::HashMap;

use jiff::Timestamp;
use sqlx::Row;

use super::Job;
use crate::runtime::outbox::Failure;
use crate::db::{Pool, Sql};

/// Rows per multi-row statement (seven binds each).
const ROWS: usize = 500;

/// What a channel is about to send.
pub struct Draft<'a> {
    pub channel: &'a str,
    pub address: &'a str,
    pub subject: Option<&'a str>,
}

/// A record [`open`] opened or found.
pub struct Opened {
    pub id: i64,
    /// The provider's id when an earlier try already sent the message.
    pub sent: Option<String>,
}

/// Opens the record (status `queued`), or finds the one an earlier try
/// opened. An erased contact's message has none: it is not sent.
pub async fn open(pool: &Pool, job: &Job, draft: Draft<'_>) -> Result<Opened, Failure> {
    let mut opened = open_many(pool, &[(job, draft)]).await?;
    opened.remove(&job.key).ok_or_else(|| Failure::permanent(crate::runtime::contacts::NOT_SENT))
}

/// [`open`] for many messages, by idempotency key, in a statement per
/// [`ROWS`]. An erased contact is not written to (its entry was cancelled;
/// this try began before), nor is its address recorded again: its message
/// is left out.
pub async fn open_many(pool: &Pool, drafts: &[(&Job, Draft<'_>)]) -> Result<HashMap<String, Opened>, Failure> {
    let now = Timestamp::now().to_string();
    let mut opened = HashMap::with_capacity(drafts.len());
    for chunk in drafts.chunks(ROWS) {
        let mut query: Sql = Sql::new("WITH v (k, participant, channel, address, subject) AS (");
        query.push_values(chunk, |mut row, (job, draft)| {
            row.push_bind(job.key.clone()).push_bind(job.participant).push_bind(draft.channel).push_bind(draft.address).push_bind(draft.subject);
        });
        // (`WHERE` before `ON CONFLICT` keeps SQLite's parser from reading
        // the join's `ON` as the upsert's.)
        query.push(
            ") INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, address, subject, status, created_at, updated_at, step)
             SELECT v.k, p.id, p.contact_id, v.channel, v.address, v.subject, 'queued', ",
        );
        query.push_bind(now.clone()).push(", ").push_bind(now.clone());
        query.push(
            ", (SELECT step FROM outbox WHERE idempotency_key = v.k)
             FROM v JOIN participants p ON p.id = v.participant JOIN contacts c ON c.id = p.contact_id WHERE c.deleted_at IS NULL
             ON CONFLICT (idempotency_key) DO UPDATE SET updated_at = conversations.updated_at
             RETURNING id, idempotency_key, status, provider_id",
        );
        let rows = query.build().fetch_all(pool).await.map_err(|err| Failure::transient(format!("the conversation record cannot be written: {err}")))?;
        for row in rows {
            // The provider id is written only once the provider took the
            // message (or call), so it alone says whether a try got through.
            let status: String = row.get("status");
            let sent = if status == "failed" { None } else { row.get("provider_id") };
            opened.insert(row.get("idempotency_key"), Opened { id: row.get("id"), sent });
        }
    }
    Ok(opened)
}

/// Records the tracked links of messages, each `(conversation, links by
/// position)`, in a statement per [`ROWS`] links (a retry writes the same again).
pub async fn save_links_many(pool: &Pool, messages: &[(i64, Vec<String>)]) -> sqlx::Result<()> {
    let links: Vec<(i64, i64, &String)> =
        messages.iter().flat_map(|(id, links)| links.iter().enumerate().map(move |(i, url)| (*id, i as i64, url))).collect();
    for chunk in links.chunks(ROWS) {
        let mut query: Sql = Sql::new("INSERT INTO conversation_links (conversation_id, position, url) ");
        query.push_values(chunk, |mut row, (id, position, url)| {
            row.push_bind(*id).push_bind(*position).push_bind((*url).clone());
        });
        query.push(" ON CONFLICT (conversation_id, position) DO NOTHING");
        query.build().execute(pool).await?;
    }
    Ok(())
}

/// Records how the try went: `sent` with the sender and provider id, or
/// `failed` with why; `tracked` when it carries an open pixel or tracked links.
pub async fn close(pool: &Pool, job: &Job, result: &Result<(String, String), Failure>, tracked: bool) {
    finish(pool, job, result, "sent", tracked).await
}

/// [`close`] for a call: on success its status is the provider's first
/// (`queued` as a rule); `sent_at` is when it was placed.
pub async fn close_call(pool: &Pool, job: &Job, result: &Result<(String, String), Failure>, status: &str) {
    finish(pool, job, result, status, false).await
}

async fn finish(pool: &Pool, job: &Job, result: &Result<(String, String), Failure>, sent: &str, tracked: bool) {
    close_as(pool, &[(job.key.clone(), result.clone(), tracked)], sent).await
}

/// A message's ending: its idempotency key, what sending it gave (the
/// provider's id and the sender, or why it failed), and whether it was tracked.
pub type Closing = (String, Result<(String, String), Failure>, bool);

/// [`close`] for many messages, in a statement per [`ROWS`].
pub async fn close_many(pool: &Pool, done: &[Closing]) {
    close_as(pool, done, "sent").await
}

async fn close_as(pool: &Pool, done: &[Closing], sent: &str) {
    let now = Timestamp::now().to_string();
    for chunk in done.chunks(ROWS) {
        let mut query: Sql = Sql::new("WITH v (k, ok, status, sender, provider_id, error, tracked) AS (");
        query.push_values(chunk, |mut row, (key, result, tracked)| {
            let (sender, provider_id) = result.as_ref().ok().cloned().unzip();
            row.push_bind(key.clone())
                .push_bind(i64::from(result.is_ok()))
                .push_bind(if result.is_ok() { sent } else { "failed" })
                .push_bind(sender)
                .push_bind(provider_id)
                .push_bind(result.as_ref().err().map(|failure| failure.reason.clone()))
                .push_bind(i64::from(*tracked));
        });
        // A failure keeps what an earlier try recorded of its sending.
        query.push(
            ") UPDATE conversations SET status = v.status, error = v.error, updated_at = ",
        );
        query.push_bind(now.clone());
        query.push(
            ", sender = CASE WHEN v.ok = 1 THEN v.sender ELSE conversations.sender END,
               provider_id = CASE WHEN v.ok = 1 THEN v.provider_id ELSE conversations.provider_id END,
               sent_at = CASE WHEN v.ok = 1 THEN ",
        );
        query.push_bind(now.clone());
        query.push(
            " ELSE conversations.sent_at END,
               tracked = CASE WHEN v.tracked = 1 THEN 1 ELSE conversations.tracked END
             FROM v WHERE conversations.idempotency_key = v.k",
        );
        if let Err(err) = query.build().execute(pool).await {
            tracing::warn!(error = %err, messages = chunk.len(), "could not record messages' outcomes");
        }
    }
}

/// What the provider later reported about an SMS: delivered, undelivered
/// or failed. Statuses only move forward. `false` when no message has that id.
pub async fn delivery(pool: &Pool, provider_id: &str, status: &str, error: Option<&str>) -> sqlx::Result<bool> {
    let found: Option<String> = sqlx::query_scalar("SELECT status FROM conversations WHERE provider_id = $1 AND channel IN ('sms', 'notify_sms')")
        .bind(provider_id)
        .fetch_optional(pool)
        .await?;
    let Some(current) = found else { return Ok(false) };
    let rank = |s: &str| match s {
        "queued" => 0,
        "sent" => 1,
        _ => 2,
    };
    let next = match status {
        "delivered" | "read" => "delivered",
        "undelivered" => "undelivered",
        "failed" => "failed",
        "sent" => "sent",
        _ => return Ok(true),
    };
    if rank(next) > rank(&current) {
        sqlx::query(
            "UPDATE conversations SET status = $1, error = coalesce($2, error), updated_at = $3,
                 delivered_at = CASE WHEN $1 = 'delivered' THEN coalesce(delivered_at, $3) ELSE delivered_at END
             WHERE provider_id = $4",
        )
            .bind(next)
            .bind(error)
            .bind(Timestamp::now().to_string())
            .bind(provider_id)
            .execute(pool)
            .await?;
    }
    Ok(true)
}

/// An automatic call's record after a status report.
#[derive(Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The status on record now (the report's, unless it came out of order).
    pub status: String,
    pub duration_secs: Option<i64>,
    pub participant_id: Option<i64>,
    /// The visit of the step that placed it, to hand the outcome to that visit only.
    pub visit: Option<i64>,
}

/// What the provider reported about a call: its status (moving forward
/// only, see [`super::calls::rank`]), its duration once over, and the
/// carrier's error. `None` when no call has that sid.
pub async fn call_status(pool: &Pool, sid: &str, status: &str, duration: Option<i64>, error: Option<&str>) -> sqlx::Result<Option<CallRecord>> {
    let row = sqlx::query(
        "SELECT c.status, c.duration_secs, c.participant_id, o.visit FROM conversations c
         LEFT JOIN outbox o ON o.idempotency_key = c.idempotency_key
         WHERE c.provider_id = $1 AND c.channel = 'call'",
    )
    .bind(sid)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut record = CallRecord {
        status: row.get("status"),
        duration_secs: row.get("duration_secs"),
        participant_id: row.get("participant_id"),
        visit: row.get("visit"),
    };
    let (now, then) = (super::calls::rank(status), super::calls::rank(&record.status));
    if now.is_some_and(|now| then.is_none_or(|then| now > then)) {
        let at = Timestamp::now().to_string();
        let ended = (now == Some(4)).then_some(at.as_str());
        sqlx::query(
            "UPDATE conversations SET status = $1, duration_secs = coalesce($2, duration_secs), ended_at = coalesce($3, ended_at),
                 error = coalesce($4, error), updated_at = $5
             WHERE provider_id = $6 AND channel = 'call'",
        )
        .bind(status)
        .bind(duration)
        .bind(ended)
        .bind(error)
        .bind(&at)
        .bind(sid)
        .execute(pool)
        .await?;
        record.status = status.to_owned();
        record.duration_secs = duration.or(record.duration_secs);
    }
    Ok(Some(record))
}

pub use app::conversations::{Conversation, LinkClicks, Messages};

/// Whose messages to list.
#[derive(Clone, Copy, Debug)]
pub enum Of {
    /// One participant's, oldest first.
    Participant(i64),
    /// Every message to a contact, newest first (the latest 500).
    Contact(i64),
}

pub async fn of_participant(pool: &Pool, participant: i64) -> sqlx::Result<Vec<Conversation>> {
    list(pool, Of::Participant(participant)).await
}

pub async fn of_contact(pool: &Pool, contact: i64) -> sqlx::Result<Vec<Conversation>> {
    list(pool, Of::Contact(contact)).await
}

/// The messages with what became of them: sent, delivered, opened and
/// clicked (with each link's clicks), unsubscribed through, replied to
/// (with the reply's words), bounced, complained about. The reply mailbox
/// and provider webhooks write the last three on the record; events that
/// came another way (`POST /api/v1/events`) are tied to the message too:
/// an event about a step goes to that step's message sent last before it.
pub async fn list(pool: &Pool, of: Of) -> sqlx::Result<Vec<Conversation>> {
    let (filter, order, id) = match of {
        Of::Participant(id) => ("participant_id = $1", "id", id),
        Of::Contact(id) => ("contact_id = $1", "id DESC LIMIT 500", id),
    };
    let rows = sqlx::query(&format!(
        "SELECT id, participant_id, contact_id, step, channel, address, sender, subject, status, provider_id, error, created_at, sent_at,
                duration_secs, ended_at, tracked, delivered_at, opened_at, open_count, machine_open_count, clicked_at, click_count,
                machine_click_count, unsubscribed_at, replied_at, auto_replied_at, reply_excerpt, bounced_at, bounce_type,
                bounce_status, bounce_diagnostic, complained_at
         FROM conversations WHERE {filter} ORDER BY {order}"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut list: Vec<Conversation> = rows
        .into_iter()
        .map(|r| Conversation {
            id: r.get("id"),
            participant_id: r.get("participant_id"),
            contact_id: r.get("contact_id"),
            step: r.get("step"),
            channel: r.get("channel"),
            address: r.get("address"),
            sender: r.get("sender"),
            subject: r.get("subject"),
            status: r.get("status"),
            provider_id: r.get("provider_id"),
            error: r.get("error"),
            created_at: r.get("created_at"),
            sent_at: r.get("sent_at"),
            duration_secs: r.get("duration_secs"),
            ended_at: r.get("ended_at"),
            tracked: r.get::<i64, _>("tracked") != 0,
            delivered_at: r.get("delivered_at"),
            opened_at: r.get("opened_at"),
            opens: r.get("open_count"),
            machine_opens: r.get("machine_open_count"),
            clicked_at: r.get("clicked_at"),
            clicks: r.get("click_count"),
            machine_clicks: r.get("machine_click_count"),
            unsubscribed_at: r.get("unsubscribed_at"),
            replied_at: r.get("replied_at"),
            auto_replied_at: r.get("auto_replied_at"),
            reply_excerpt: r.get("reply_excerpt"),
            bounced_at: r.get("bounced_at"),
            bounce: r.get("bounce_type"),
            bounce_diagnostic: match (r.get::<Option<String>, _>("bounce_status"), r.get::<Option<String>, _>("bounce_diagnostic")) {
                (Some(status), Some(words)) if !words.contains(&status) => Some(format!("{status} {words}")),
                (status, words) => words.or(status),
            },
            complained_at: r.get("complained_at"),
            ..Conversation::default()
        })
        .collect();
    if list.is_empty() {
        return Ok(list);
    }
    let ids = crate::db::id_list(&list.iter().map(|c| c.id).collect::<Vec<_>>());
    let links = sqlx::query(&format!(
        "SELECT conversation_id, position, url, clicks, machine_clicks, first_clicked_at FROM conversation_links
         WHERE conversation_id IN ({ids}) ORDER BY conversation_id, position"
    ))
    .fetch_all(pool)
    .await?;
    for row in links {
        let id: i64 = row.get("conversation_id");
        if let Some(c) = list.iter_mut().find(|c| c.id == id) {
            c.links.push(LinkClicks {
                position: row.get("position"),
                url: row.get("url"),
                clicks: row.get("clicks"),
                machine_clicks: row.get("machine_clicks"),
                first_clicked_at: row.get("first_clicked_at"),
            });
        }
    }
    let mut contacts: Vec<i64> = list.iter().filter_map(|c| c.contact_id).collect();
    contacts.sort_unstable();
    contacts.dedup();
    if contacts.is_empty() {
        return Ok(list);
    }
    let events = sqlx::query(&format!(
        "SELECT contact_id, participant_id, step, kind, happened_at, auto, body FROM contact_events
         WHERE contact_id IN ({}) AND kind IN ('replied', 'bounced', 'complained') AND step IS NOT NULL ORDER BY happened_at, id",
        crate::db::id_list(&contacts)
    ))
    .fetch_all(pool)
    .await?;
    let sent_ms = |c: &Conversation| {
        c.sent_at.as_deref().unwrap_or(&c.created_at).parse::<Timestamp>().map(|t| t.as_millisecond()).unwrap_or(i64::MIN)
    };
    for row in events {
        let (contact, participant, step): (i64, Option<i64>, String) = (row.get("contact_id"), row.get("participant_id"), row.get("step"));
        let happened: i64 = row.get("happened_at");
        let about = |c: &&mut Conversation| {
            c.step.as_deref() == Some(step.as_str())
                && match participant {
                    Some(p) => c.participant_id == Some(p),
                    None => c.contact_id == Some(contact),
                }
        };
        // The one sent last at or before the event, else the first.
        let mut candidates: Vec<&mut Conversation> = list.iter_mut().filter(about).collect();
        candidates.sort_by_key(|c| sent_ms(c));
        let at = candidates.iter().rposition(|c| sent_ms(c) <= happened).unwrap_or(0);
        let Some(c) = candidates.into_iter().nth(at) else { continue };
        let when = Timestamp::from_millisecond(happened).map(|t| t.to_string()).ok();
        match row.get::<String, _>("kind").as_str() {
            "replied" if row.get::<i64, _>("auto") != 0 => c.auto_replied_at = c.auto_replied_at.take().or(when),
            "replied" => c.replied_at = c.replied_at.take().or(when),
            "bounced" => {
                if c.bounced_at.is_none() {
                    let body: serde_json::Value = serde_json::from_str(row.get("body")).unwrap_or_default();
                    c.bounce = body.get("type").and_then(|t| t.as_str()).map(str::to_owned).or(Some("soft".into()));
                    c.bounced_at = when;
                }
            }
            _ => c.complained_at = c.complained_at.take().or(when),
        }
    }
    Ok(list)
}

/// A contact's time zone, as its pages show times in.
async fn zone_of(pool: &Pool, contact: i64) -> sqlx::Result<Option<String>> {
    let zone: Option<Option<String>> = sqlx::query_scalar("SELECT timezone FROM contacts WHERE id = $1").bind(contact).fetch_optional(pool).await?;
    Ok(zone.flatten())
}

#[async_trait::async_trait]
impl app::conversations::ConversationsBackend for crate::runtime::Runtime {
    async fn of_participant(&self, viewer: &app::auth::Viewer, participant: i64) -> Result<Messages, leptos::prelude::ServerFnError> {
        use crate::error::Error;
        crate::runtime_api::check_participant_owner(self.pool(), viewer, participant).await.map_err(Error::into_server_fn_error)?;
        let read = async {
            let contact: Option<i64> =
                sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(participant).fetch_optional(self.pool()).await?;
            let zone = match contact {
                Some(contact) => zone_of(self.pool(), contact).await?,
                None => None,
            };
            Ok::<_, sqlx::Error>(Messages::new(zone.as_deref(), of_participant(self.pool(), participant).await?))
        };
        read.await.map_err(|err| Error::from(err).into_server_fn_error())
    }

    async fn of_contact(&self, contact: i64) -> Result<Messages, leptos::prelude::ServerFnError> {
        let read = async { Ok::<_, sqlx::Error>(Messages::new(zone_of(self.pool(), contact).await?.as_deref(), of_contact(self.pool(), contact).await?)) };
        read.await.map_err(|err| crate::error::Error::from(err).into_server_fn_error())
    }
}
