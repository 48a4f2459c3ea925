//! The audit log: who changed which flow, published, ran a bulk action,
//! changed users, tokens or settings, and when.

use jiff::{SignedDuration, Timestamp};
use sqlx::Row;

use app::admin_api::AuditEntry;

use crate::error::Result;
use crate::db::Pool;

pub async fn record<'e>(db: impl sqlx::Executor<'e, Database = sqlx::Any>, actor: &str, action: &str, subject: &str, detail: &str) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(Timestamp::now().to_string())
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .execute(db)
        .await?;
    Ok(())
}

/// Like [`record`], but a repeat of the same actor, action and subject
/// within ten minutes updates the last entry instead (draft autosaves).
pub async fn record_coalesced(pool: &Pool, actor: &str, action: &str, subject: &str, detail: &str) -> Result<()> {
    let since = (Timestamp::now() - SignedDuration::from_mins(10)).to_string();
    let updated = sqlx::query(
        "UPDATE audit_log SET at = $1, detail = $2 WHERE id = (
             SELECT id FROM audit_log WHERE actor = $3 AND action = $4 AND subject = $5 AND at >= $6 ORDER BY id DESC LIMIT 1)",
    )
    .bind(Timestamp::now().to_string())
    .bind(detail)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(since)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        record(pool, actor, action, subject, detail).await?;
    }
    Ok(())
}

/// The newest entries first, optionally only those whose action starts with `prefix`.
pub async fn entries(pool: &Pool, prefix: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, subject, detail FROM audit_log
         WHERE ($1 IS NULL OR action LIKE $1 || '%') ORDER BY id DESC LIMIT $2",
    )
    .bind(prefix)
    .bind(limit.clamp(1, 1000))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| AuditEntry {
            id: row.get("id"),
            at: row.get("at"),
            actor: row.get("actor"),
            action: row.get("action"),
            subject: row.get("subject"),
            detail: row.get("detail"),
        })
        .collect())
}
