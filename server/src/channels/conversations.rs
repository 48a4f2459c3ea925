//! The conversation record: one row per message to a person (email, SMS,
//! notifications), keyed by the outbox's idempotency key so every try of a
//! message updates the same row and a message already sent is not sent again.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::{Row, SqlitePool};

use super::Job;
use crate::runtime::outbox::Failure;

/// What a channel is about to send.
pub struct Draft<'a> {
    pub channel: &'a str,
    pub address: &'a str,
    pub subject: Option<&'a str>,
}

/// Opens the record (status `queued`), or finds the one an earlier try
/// opened. `Some(provider id)` when that try already sent the message.
pub async fn open(pool: &SqlitePool, job: &Job, draft: Draft<'_>) -> Result<Option<String>, Failure> {
    let now = Timestamp::now().to_string();
    let unreadable = |err: sqlx::Error| Failure::transient(format!("the conversation record cannot be written: {err}"));
    sqlx::query(
        "INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, address, subject, status, created_at, updated_at)
         VALUES (?, ?, (SELECT contact_id FROM participants WHERE id = ?), ?, ?, ?, 'queued', ?, ?)
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
    let row = sqlx::query("SELECT status, provider_id FROM conversations WHERE idempotency_key = ?")
        .bind(&job.key)
        .fetch_one(pool)
        .await
        .map_err(unreadable)?;
    let status: String = row.get("status");
    Ok(if status == "queued" || status == "failed" { None } else { row.get("provider_id") })
}

/// Records how the try went: `sent` with the sender and provider id, or `failed` with why.
pub async fn close(pool: &SqlitePool, job: &Job, result: &Result<(String, String), Failure>) {
    let now = Timestamp::now().to_string();
    let query = match result {
        Ok((sender, provider_id)) => sqlx::query(
            "UPDATE conversations SET status = 'sent', sender = ?, provider_id = ?, sent_at = ?, error = NULL, updated_at = ?
             WHERE idempotency_key = ?",
        )
        .bind(sender)
        .bind(provider_id)
        .bind(&now)
        .bind(&now)
        .bind(&job.key),
        Err(failure) => sqlx::query("UPDATE conversations SET status = 'failed', error = ?, updated_at = ? WHERE idempotency_key = ?")
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
pub async fn delivery(pool: &SqlitePool, provider_id: &str, status: &str, error: Option<&str>) -> sqlx::Result<bool> {
    let found: Option<String> = sqlx::query_scalar("SELECT status FROM conversations WHERE provider_id = ? AND channel IN ('sms', 'notify_sms')")
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
        sqlx::query("UPDATE conversations SET status = ?, error = coalesce(?, error), updated_at = ? WHERE provider_id = ?")
            .bind(next)
            .bind(error)
            .bind(Timestamp::now().to_string())
            .bind(provider_id)
            .execute(pool)
            .await?;
    }
    Ok(true)
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
}

pub async fn of_participant(pool: &SqlitePool, participant: i64) -> sqlx::Result<Vec<Conversation>> {
    let rows = sqlx::query(
        "SELECT id, channel, address, sender, subject, status, provider_id, error, created_at, sent_at
         FROM conversations WHERE participant_id = ? ORDER BY id",
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
        })
        .collect())
}
