//! `/healthz` and `/readyz`.
//!
//! Liveness says only that the process answers HTTP: no query, so a slow
//! database never gets a process restarted. Readiness says whether this
//! process can do its work now: the database answers within a second,
//! every migration this binary carries is applied (one newer binary having
//! applied more is fine: rolling deploys), and the scheduler loop of this
//! process finished a step within twice the lease (a pass's claimed
//! effects may take up to the lease). Both are JSON and never cached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::db::Backend;
use crate::runtime::Runtime;

/// How long the database may take to answer a probe.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Milliseconds after [`started`] of the scheduler loop's last step, plus
/// one (0: none yet).
static LAST_PASS: AtomicU64 = AtomicU64::new(0);

/// The scheduler loop finished a step (a claim pass or an outbox pass).
pub fn scheduler_passed() {
    let at = started().elapsed().as_millis() as u64 + 1;
    LAST_PASS.store(at, Ordering::Relaxed);
}

/// How long ago the scheduler loop last finished a step, if it ever did.
pub fn since_last_pass() -> Option<Duration> {
    match LAST_PASS.load(Ordering::Relaxed) {
        0 => None,
        at => Some(started().elapsed().saturating_sub(Duration::from_millis(at - 1))),
    }
}

/// After how long without a step the scheduler counts as stuck.
pub fn stale_after(runtime: &Runtime) -> Duration {
    Duration::try_from(runtime.lease()).unwrap_or_default().max(Duration::from_secs(5)) * 2
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /healthz`: 200 while the process answers.
pub async fn healthz() -> Response {
    started();
    json_response(StatusCode::OK, json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /readyz`: 200 when the database, the migrations and the scheduler
/// are fine, else 503; the body says which check failed.
pub async fn readyz(State(runtime): State<Runtime>) -> Response {
    let began = Instant::now();
    let migrations = match tokio::time::timeout(DATABASE_TIMEOUT, applied(&runtime)).await {
        Ok(Ok(applied)) => Ok(applied),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} ms", DATABASE_TIMEOUT.as_millis())),
    };
    let database = match &migrations {
        Ok(_) => json!({"ok": true, "latency_ms": began.elapsed().as_secs_f64() * 1000.0}),
        Err(error) => {
            tracing::warn!(%error, "readiness: the database does not answer");
            json!({"ok": false, "error": "the database does not answer"})
        }
    };
    let known = known_migrations(&runtime);
    let (migrations_ok, migrations) = match migrations {
        Ok(applied) => {
            let missing: Vec<i64> = known.iter().copied().filter(|v| !applied.contains(v)).collect();
            let newer = applied.iter().filter(|v| !known.contains(v)).count();
            (missing.is_empty(), json!({"ok": missing.is_empty(), "known": known.len(), "applied": applied.len(), "missing": missing, "newer": newer}))
        }
        Err(_) => (false, json!({"ok": false, "known": known.len()})),
    };
    let stale = stale_after(&runtime);
    let scheduler = match since_last_pass() {
        Some(ago) => json!({"ok": ago <= stale, "last_pass_seconds_ago": ago.as_secs_f64(), "stale_after_seconds": stale.as_secs()}),
        None => json!({"ok": false, "last_pass_seconds_ago": null, "stale_after_seconds": stale.as_secs(), "error": "no scheduler pass yet"}),
    };
    let ready = database["ok"] == true && migrations_ok && scheduler["ok"] == true;
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {"database": database, "migrations": migrations, "scheduler": scheduler},
    });
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

/// The migration versions applied successfully.
async fn applied(runtime: &Runtime) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE").fetch_all(runtime.pool()).await
}

/// The migration versions this binary carries for the pool's engine.
fn known_migrations(runtime: &Runtime) -> Vec<i64> {
    static SQLITE: OnceLock<Vec<i64>> = OnceLock::new();
    static POSTGRES: OnceLock<Vec<i64>> = OnceLock::new();
    let versions = |migrator: sqlx::migrate::Migrator| migrator.iter().filter(|m| !m.migration_type.is_down_migration()).map(|m| m.version).collect();
    match Backend::of(runtime.pool()) {
        Backend::Sqlite => SQLITE.get_or_init(|| versions(sqlx::migrate!("../migrations/sqlite"))).clone(),
        Backend::Postgres => POSTGRES.get_or_init(|| versions(sqlx::migrate!("../migrations/postgres"))).clone(),
    }
}
