//! The outbox: effects the engine asked for, carried out at least once each
//! by an [`Executor`], retried with capped exponential backoff. An awaited
//! effect's final outcome is fed back to its participant; when retries are
//! exhausted the participant takes the failure (the webhook's `failed`
//! port, or status `failed` with the reason).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};
use sqlx::Row;

use app::core::engine::{Effect, EffectResult, Event};

use super::{millis, Runtime};
use crate::error::Result;

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
}

/// Carries out effects.
#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Contact fields learned (data append), or why it failed.
    async fn execute(&self, job: &Job, effect: &Effect) -> Result<Map<String, Value>, Failure>;
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

pub struct Dispatcher {
    runtime: Runtime,
    executor: Arc<dyn Executor>,
    policy: RetryPolicy,
    batch: i64,
}

/// What one dispatch pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dispatch {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

impl Dispatcher {
    pub fn new(runtime: Runtime, executor: Arc<dyn Executor>) -> Self {
        Dispatcher { runtime, executor, policy: RetryPolicy::default(), batch: 100 }
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Claims due effects, carries them out, records the outcomes.
    pub async fn dispatch(&self) -> Result<Dispatch> {
        let now = self.runtime.now();
        let pool = self.runtime.pool();
        let rows = sqlx::query(
            "UPDATE outbox SET lease_until = ?
             WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?
                          AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?)
             RETURNING id, participant_id, idempotency_key, effect, awaited, tries",
        )
        .bind(millis(now + SignedDuration::from_mins(5)))
        .bind(millis(now))
        .bind(millis(now))
        .bind(self.batch)
        .fetch_all(pool)
        .await?;
        let mut report = Dispatch::default();
        for row in rows {
            let id: i64 = row.get("id");
            let participant: i64 = row.get("participant_id");
            let key: String = row.get("idempotency_key");
            let awaited = row.get::<i64, _>("awaited") != 0;
            let tries = row.get::<i64, _>("tries") as u32 + 1;
            let effect: Effect = match serde_json::from_str(row.get::<&str, _>("effect")) {
                Ok(effect) => effect,
                Err(err) => {
                    self.finish(id, participant, awaited, Err(Failure::permanent(format!("unreadable effect: {err}"))), now).await?;
                    report.failed += 1;
                    continue;
                }
            };
            let result = match &effect {
                Effect::GoToFlow { flow, mode } => self.go_to_flow(participant, flow, mode).await,
                other => self.executor.execute(&Job { key, participant }, other).await,
            };
            match result {
                Err(failure) if failure.retryable && tries < self.policy.max_tries => {
                    let next = now + self.policy.delay(tries, failure.retry_after);
                    sqlx::query("UPDATE outbox SET tries = ?, next_attempt_at = ?, lease_until = NULL, last_error = ? WHERE id = ?")
                        .bind(tries as i64)
                        .bind(millis(next))
                        .bind(&failure.reason)
                        .bind(id)
                        .execute(pool)
                        .await?;
                    report.retried += 1;
                }
                result => {
                    if result.is_ok() {
                        report.sent += 1;
                    } else {
                        report.failed += 1;
                    }
                    let result = result.map_err(|failure| Failure {
                        reason: if tries > 1 { format!("{} (after {tries} tries)", failure.reason) } else { failure.reason },
                        ..failure
                    });
                    sqlx::query("UPDATE outbox SET tries = ? WHERE id = ?").bind(tries as i64).bind(id).execute(pool).await?;
                    self.finish(id, participant, awaited, result, now).await?;
                }
            }
        }
        Ok(report)
    }

    async fn finish(&self, id: i64, participant: i64, awaited: bool, result: Result<Map<String, Value>, Failure>, now: Timestamp) -> Result<()> {
        let (status, error) = match &result {
            Ok(_) => ("sent", None),
            Err(failure) => ("failed", Some(failure.reason.clone())),
        };
        sqlx::query("UPDATE outbox SET status = ?, last_error = ?, lease_until = NULL, done_at = ? WHERE id = ?")
            .bind(status)
            .bind(error)
            .bind(now.to_string())
            .bind(id)
            .execute(self.runtime.pool())
            .await?;
        if awaited {
            let result = match result {
                Ok(updates) => EffectResult::Done { updates },
                Err(failure) => EffectResult::Failed { reason: failure.reason },
            };
            self.runtime.deliver(participant, Event::Effect { result }).await?;
        }
        Ok(())
    }

    /// go_to_flow: enroll the participant's contact into the named flow
    /// (by id or name). Moving already ended the participant here.
    async fn go_to_flow(&self, participant: i64, flow: &str, _mode: &str) -> Result<Map<String, Value>, Failure> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM flows WHERE CAST(id AS TEXT) = ? OR name = ? COLLATE NOCASE")
            .bind(flow)
            .bind(flow)
            .fetch_optional(self.runtime.pool())
            .await
            .map_err(|err| Failure::transient(err.to_string()))?;
        let Some(target) = found else { return Err(Failure::permanent(format!("there is no flow “{flow}”"))) };
        let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = ?")
            .bind(participant)
            .fetch_one(self.runtime.pool())
            .await
            .map_err(|err| Failure::transient(err.to_string()))?;
        self.runtime.enroll(target, &[contact]).await.map_err(|err| Failure::permanent(err.public_message()))?;
        Ok(Map::new())
    }
}
