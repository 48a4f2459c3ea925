//! Background jobs that one process runs at a time: bulk runs and contact
//! imports. Any number of `serve` and `worker` processes share a database,
//! so a job names its owner (the process's worker name) and the owner
//! shows it is alive every few seconds while it works.
//!
//! Every process looks now and then for running jobs whose owner went
//! quiet ([`recover`]): a bulk run is taken over and carries on from its
//! cursor; an import cannot resume (its upload was on the stopped process)
//! and is marked failed with what it did. A job's writes are made only
//! under its owner's name, so a process that wakes after its job was taken
//! from it writes nothing more to it.

use std::future::Future;

use jiff::SignedDuration;

use super::{bulk, millis, Runtime};
use crate::error::Result;

/// How often an owner shows it is alive.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// Quiet for this long, an owner is taken for stopped.
pub const STALE: SignedDuration = SignedDuration::from_secs(60);

/// Where a kind of job is kept.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Table {
    BulkRuns,
    Imports,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::BulkRuns => "bulk_runs",
            Table::Imports => "contact_imports",
        }
    }
}

/// Runs `work` for job `id` while its heart beats under the runtime's name.
pub(crate) async fn beating<F: Future>(runtime: &Runtime, table: Table, id: i64, work: F) -> F::Output {
    let beat = {
        let runtime = runtime.clone();
        let sql = format!("UPDATE {} SET heartbeat_at = $1 WHERE id = $2 AND owner = $3", table.name());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let beat = sqlx::query(&sql).bind(millis(runtime.now())).bind(id).bind(runtime.worker()).execute(runtime.pool()).await;
                if let Err(err) = beat {
                    tracing::warn!(job = id, table = table.name(), error = %err, "a job's heartbeat was not written");
                }
            }
        })
    };
    // Stops beating however `work` ends, a panic included.
    let _stop = AbortOnDrop(beat);
    work.await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one [`recover`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Bulk runs taken over, now carrying on in this process.
    pub runs: Vec<i64>,
    /// Imports marked failed.
    pub imports: u64,
}

/// Takes over the jobs whose owner has been quiet for [`STALE`] (or that
/// name none: left by a version before owners). Two processes recovering
/// at once take each job once: the update of the first to commit makes the
/// job fresh for the second.
pub async fn recover(runtime: &Runtime) -> Result<Recovered> {
    let now = runtime.now();
    let quiet = millis(now - STALE);
    let imports = sqlx::query(
        "UPDATE contact_imports SET status = 'failed', finished_at = $1,
             error = 'The process running the import stopped; the rows counted as done were imported.'
         WHERE status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < $2)",
    )
    .bind(now.to_string())
    .bind(quiet)
    .execute(runtime.pool())
    .await?
    .rows_affected();
    let runs: Vec<i64> = sqlx::query_scalar(
        "UPDATE bulk_runs SET owner = $1, heartbeat_at = $2
         WHERE status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < $3) RETURNING id",
    )
    .bind(runtime.worker())
    .bind(millis(now))
    .bind(quiet)
    .fetch_all(runtime.pool())
    .await?;
    for &run in &runs {
        tracing::warn!(run, "a bulk run whose process stopped carries on here");
        bulk::spawn(runtime, run);
    }
    if imports > 0 {
        tracing::warn!(imports, "contact imports whose process stopped were marked failed");
    }
    Ok(Recovered { runs, imports })
}
