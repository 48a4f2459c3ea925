//! The conversation record: one row per message to a person (email, SMS,
//! notifications) or automatic call, keyed by the outbox's idempotency key
//! so every try updates the same row and a message already sent (a call
//! already placed) is not sent again.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use super::Job;
use crate::runtime::outbox::Failure;
use crate::db::Pool;

/// What a channel is about to send.
pub struct Draft<'a> {
    pub channel: &'a str,
    pub address: &'a str,
    pub subject: Option<&'a str>,
}

/// Opens the record (status `queued`), or finds the one an earlier try
/// opened. `Some(provider id)` when that try already sent the message.
pub async fn open(pool: &Pool, job: &Job, draft: Draft<'_>) -> Result<Option<String>, Failure> {
    let now = Timestamp::now().to_string();
    let unreadable = |err: sqlx::Error| Failure::transient(format!("the conversation record cannot be written: {err}"));
    // An erased contact is not written to (its entry was cancelled; this
    // try began before), nor is its address recorded again.
    let deleted: Option<Option<String>> =
        sqlx::query_scalar("SELECT c.deleted_at FROM participants p JOIN contacts c ON c.id = p.contact_id WHERE p.id = $1")
            .bind(job.participant)
            .fetch_optional(pool)
            .await
            .map_err(unreadable)?;
    if matches!(deleted, Some(Some(_))) {
        return Err(Failure::permanent(crate::runtime::contacts::NOT_SENT));
    }
    sqlx::query(
        "INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, address, subject, status, created_at, updated_at)
         VALUES ($1, $2, (SELECT contact_id FROM participants WHERE id = $3), $4, $5, $6, 'queued', $7, $8)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&job.key)
    .bind(job.participant)
    .bind(job.participant)
    .bind(draft.channel)
    .bind(draft.address)
    .bind(draft.subject)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await
    .map_err(unreadable)?;
    let row = sqlx::query("SELECT status, provider_id FROM conversations WHERE idempotency_key = $1")
        .bind(&job.key)
        .fetch_one(pool)
        .await
        .map_err(unreadable)?;
    // The provider id is written only once the provider took the message
    // (or call), so it alone says whether an earlier try got through.
    let status: String = row.get("status");
    Ok(if status == "failed" { None } else { row.get("provider_id") })
}

/// Records how the try went: `sent` with the sender and provider id, or `failed` with why.
pub async fn close(pool: &Pool, job: &Job, result: &Result<(String, String), Failure>) {
    finish(pool, job, result, "sent").await
}

/// [`close`] for a call: on success its status is the provider's first
/// (`queued` as a rule); `sent_at` is when it was placed.
pub async fn close_call(pool: &Pool, job: &Job, result: &Result<(String, String), Failure>, status: &str) {
    finish(pool, job, result, status).await
}

async fn finish(pool: &Pool, job: &Job, result: &Result<(String, String), Failure>, sent: &str) {
    let now = Timestamp::now().to_string();
    let query = match result {
        Ok((sender, provider_id)) => sqlx::query(
            "UPDATE conversations SET status = $1, sender = $2, provider_id = $3, sent_at = $4, error = NULL, updated_at = $4
             WHERE idempotency_key = $5",
        )
        .bind(sent)
        .bind(sender)
        .bind(provider_id)
        .bind(&now)
        .bind(&job.key),
        Err(failure) => sqlx::query("UPDATE conversations SET status = 'failed', error = $1, updated_at = $2 WHERE idempotency_key = $3")
            .bind(&failure.reason)
            .bind(&now)
            .bind(&job.key),
    };
    if let Err(err) = query.execute(pool).await {
        tracing::warn!(error = %err, key = %job.key, "could not record a conversation's outcome");
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
        sqlx::query("UPDATE conversations SET status = $1, error = coalesce($2, error), updated_at = $3 WHERE provider_id = $4")
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

#[derive(Debug, Serialize)]
pub struct Conversation {
    pub id: i64,
    pub channel: String,
    pub address: String,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub status: String,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// Calls: how long it lasted, and when its final status came.
    pub duration_secs: Option<i64>,
    pub ended_at: Option<String>,
}

pub async fn of_participant(pool: &Pool, participant: i64) -> sqlx::Result<Vec<Conversation>> {
    let rows = sqlx::query(
        "SELECT id, channel, address, sender, subject, status, provider_id, error, created_at, sent_at, duration_secs, ended_at
         FROM conversations WHERE participant_id = $1 ORDER BY id",
    )
    .bind(participant)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Conversation {
            id: r.get("id"),
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
        })
        .collect())
}
