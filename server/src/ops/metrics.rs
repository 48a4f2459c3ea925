//! Prometheus metrics, through the `metrics` facade and its Prometheus
//! exporter. Code that does the work counts with the one-line functions
//! below; until [`install`] runs (the `--metrics-addr` listener) they cost
//! a no-op call. What needs a query (backlogs, outbox depth, running jobs)
//! is read when scraped, each query bounded (`BOUND` rows at most), so a
//! scrape costs the same on a small database and a huge one.
//!
//! | series | type | labels |
//! |---|---|---|
//! | `waymark_transitions_total` | counter | `kind`: the step kind entered |
//! | `waymark_lateness_seconds` | histogram | how late a due participant was claimed |
//! | `waymark_due_participants` | gauge | due now, not yet moved (at most 100,000 counted) |
//! | `waymark_due_oldest_age_seconds` | gauge | how long the earliest of them has been due |
//! | `waymark_outbox_queued` | gauge | `channel`: effects queued (due or retrying) |
//! | `waymark_outbox_oldest_due_age_seconds` | gauge | `channel`: how long the earliest due one has waited |
//! | `waymark_sends_total` | counter | `channel`, `outcome`: sent, failed, retried |
//! | `waymark_events_received_total` | counter | `kind`, `result`: accepted, duplicate (REST API) |
//! | `waymark_tracking_hits_total` / `waymark_tracking_commits_total` | counter | opens and clicks written, and the transactions that wrote them |
//! | `waymark_http_requests_total` | counter | `method`, `route` (the route's template), `status` |
//! | `waymark_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `waymark_db_pool_connections` | gauge | `state`: idle, in_use |
//! | `waymark_db_pool_max_connections` | gauge | |
//! | `waymark_import_rows_total` | counter | `outcome`: created, updated, skipped, refused |
//! | `waymark_bulk_participants_total` | counter | `action`, `result`: processed, changed |
//! | `waymark_jobs_running` | gauge | `kind`: import, bulk |
//! | `waymark_jobs_progress_done` / `_total` | gauge | `kind`: bytes of running imports, participants of running bulk runs |
//! | `waymark_scheduler_last_pass_age_seconds` | gauge | this process's scheduler loop |
//! | `waymark_build_info` | gauge | `version` |

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use jiff::Timestamp;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use app::core::engine::Advance;

use crate::error::Error;
use crate::runtime::Runtime;

/// The most rows a scrape query reads.
const BOUND: i64 = 100_000;

/// How late a due participant may be claimed, in seconds: the scheduler
/// polls every 250 ms; minutes mean it falls behind.
const LATENESS_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls
/// return the same handle).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("waymark_lateness_seconds".into()), LATENESS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("waymark_http_request_duration_seconds".into()), HTTP_BUCKETS))
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            gauge!("waymark_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            // Histograms are summed up on upkeep; without it they only grow.
            let upkeep = handle.clone();
            if let Ok(tokio) = tokio::runtime::Handle::try_current() {
                tokio.spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        every.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!("waymark_transitions_total", "Steps entered by participants, by the kind of step.");
    describe_histogram!("waymark_lateness_seconds", Unit::Seconds, "How long after it was due a participant was claimed.");
    describe_gauge!("waymark_due_participants", "Participants due now and not yet moved (counted up to 100,000).");
    describe_gauge!("waymark_due_oldest_age_seconds", Unit::Seconds, "How long the earliest due participant has been due.");
    describe_gauge!("waymark_outbox_queued", "Effects queued in the outbox (due or waiting to retry), by channel.");
    describe_gauge!("waymark_outbox_oldest_due_age_seconds", Unit::Seconds, "How long the earliest due effect has waited, by channel.");
    describe_counter!("waymark_sends_total", "Effects carried out by the outbox, by channel and outcome (sent, failed, retried).");
    describe_counter!("waymark_events_received_total", "Contact events received by POST /api/v1/events, by kind and result.");
    describe_counter!("waymark_tracking_hits_total", "Opens and clicks written (the pixel and the redirect).");
    describe_counter!("waymark_tracking_commits_total", "Transactions that wrote opens and clicks (hits per commit: the two's ratio).");
    describe_counter!("waymark_http_requests_total", "HTTP requests answered, by method, route template and status.");
    describe_histogram!("waymark_http_request_duration_seconds", Unit::Seconds, "Time to answer an HTTP request (until its headers).");
    describe_gauge!("waymark_db_pool_connections", "Database connections of this process, idle or in use.");
    describe_gauge!("waymark_db_pool_max_connections", "The most database connections this process opens.");
    describe_counter!("waymark_import_rows_total", "Contact import rows settled, by outcome (created, updated, skipped, refused).");
    describe_counter!("waymark_bulk_participants_total", "Participants processed by bulk runs, and of them changed, by action.");
    describe_gauge!("waymark_jobs_running", "Background jobs running (any process), by kind.");
    describe_gauge!("waymark_jobs_progress_done", "Progress of running jobs: bytes read of imports, participants processed of bulk runs.");
    describe_gauge!("waymark_jobs_progress_total", "What running jobs have in all: bytes of imports, participants of bulk runs.");
    describe_gauge!("waymark_scheduler_last_pass_age_seconds", Unit::Seconds, "Since this process's scheduler loop last finished a step.");
    describe_gauge!("waymark_build_info", "The running version.");
}

/// A committed advance of a participant that was at visit `from`: one
/// transition per step entered.
pub fn transitions(from: u32, step: &Advance) {
    let mut entered = Entered::default();
    entered.note(from, step);
    entered.count();
}

/// The steps entered by the advances of one transaction (an event
/// delivery pass), counted once it commits.
#[derive(Default)]
pub struct Entered(Vec<String>);

impl Entered {
    /// An advance of a participant that was at visit `from`.
    pub fn note(&mut self, from: u32, step: &Advance) {
        self.0.extend(step.actions.iter().filter(|r| r.visit > from).map(|r| r.kind.clone()));
    }

    /// The transaction committed: one transition per step entered.
    pub fn count(self) {
        for kind in self.0 {
            counter!("waymark_transitions_total", "kind" => kind).increment(1);
        }
    }
}

/// A due participant (due at `due`, unix ms) claimed at `now`.
pub fn lateness(now: Timestamp, due: Option<i64>) {
    if let Some(due) = due {
        histogram!("waymark_lateness_seconds").record(((now.as_millisecond() - due).max(0) as f64) / 1000.0);
    }
}

/// An outbox effect on `channel` ended a try: `sent`, `failed` or `retried`.
pub fn send(channel: &'static str, outcome: &'static str) {
    counter!("waymark_sends_total", "channel" => channel, "outcome" => outcome).increment(1);
}

/// `n` events of one kind posted to the REST API were stored (or were duplicates).
pub fn events_received(kind: &'static str, duplicate: bool, n: u64) {
    counter!("waymark_events_received_total", "kind" => kind, "result" => if duplicate { "duplicate" } else { "accepted" }).increment(n);
}

/// A committed batch of `hits` opens and clicks.
pub fn hits_committed(hits: usize) {
    counter!("waymark_tracking_commits_total").increment(1);
    counter!("waymark_tracking_hits_total").increment(hits as u64);
}

/// A committed batch of a contact import.
pub fn import_rows(created: i64, updated: i64, skipped: i64, refused: i64) {
    for (outcome, n) in [("created", created), ("updated", updated), ("skipped", skipped), ("refused", refused)] {
        counter!("waymark_import_rows_total", "outcome" => outcome).increment(n.max(0) as u64);
    }
}

/// A committed chunk of a bulk run.
pub fn bulk_chunk(action: &'static str, processed: i64, changed: i64) {
    counter!("waymark_bulk_participants_total", "action" => action, "result" => "processed").increment(processed.max(0) as u64);
    counter!("waymark_bulk_participants_total", "action" => action, "result" => "changed").increment(changed.max(0) as u64);
}

/// An answered HTTP request: `method` and `route` as the request's
/// middleware labels them (a known method or `other`; the route's
/// template). Nothing is done before [`install`]: no recorder would keep it.
pub fn http_request(method: &'static str, route: &'static str, status: u16, took: Duration) {
    if HANDLE.get().is_none() {
        return;
    }
    let labels = [("method", method), ("route", route), ("status", status_label(status))];
    counter!("waymark_http_requests_total", &labels).increment(1);
    histogram!("waymark_http_request_duration_seconds", &labels).record(took.as_secs_f64());
}

/// A status code as a label, made once per code.
fn status_label(status: u16) -> &'static str {
    static LABELS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| (0..1000).map(|code: u16| code.to_string()).collect());
    LABELS.get(usize::from(status)).map_or("other", String::as_str)
}

/// The token scrapes must bring, if any (an extension of the metrics listener).
#[derive(Clone)]
pub struct ScrapeToken(pub Option<Arc<str>>);

/// `GET /metrics`.
pub async fn scrape(State(runtime): State<Runtime>, Extension(token): Extension<ScrapeToken>, headers: HeaderMap) -> Response {
    if let Some(token) = token.0 {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.split_once(' '));
        match sent {
            None => return Error::Unauthenticated.into_response(),
            Some((scheme, sent)) if scheme.eq_ignore_ascii_case("bearer") && equal(sent.trim().as_bytes(), token.as_bytes()) => {}
            Some(_) => return Error::InvalidToken.into_response(),
        }
    }
    let handle = install();
    // One scrape's queries at a time, whatever the number of scrapers.
    static QUERYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    {
        let _turn = QUERYING.lock().await;
        if let Err(err) = tokio::time::timeout(Duration::from_secs(5), read_gauges(&runtime)).await.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))) {
            tracing::warn!(error = %err, "metrics: the database gauges were not read");
        }
    }
    let mut response = handle.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Channels seen queued before: set to 0 once their queue is empty.
static CHANNELS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The gauges that need the database (and the pool's own counts).
async fn read_gauges(runtime: &Runtime) -> anyhow::Result<()> {
    let pool = runtime.pool();
    let idle = pool.num_idle() as f64;
    gauge!("waymark_db_pool_connections", "state" => "idle").set(idle);
    gauge!("waymark_db_pool_connections", "state" => "in_use").set((pool.size() as f64 - idle).max(0.0));
    gauge!("waymark_db_pool_max_connections").set(pool.options().get_max_connections() as f64);
    if let Some(ago) = super::health::since_last_pass() {
        gauge!("waymark_scheduler_last_pass_age_seconds").set(ago.as_secs_f64());
    }

    let now = runtime.now().as_millisecond();
    let age = |earliest: Option<i64>| earliest.map_or(0.0, |at| ((now - at).max(0) as f64) / 1000.0);
    // Due participants, earliest first, through the participants_due index.
    let (due, earliest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), min(next_run_at) FROM (SELECT next_run_at FROM participants
             WHERE next_run_at <= $1 AND status IN ('ready', 'waiting', 'held') ORDER BY next_run_at LIMIT $2) AS due",
    )
    .bind(now)
    .bind(BOUND)
    .fetch_one(pool)
    .await?;
    gauge!("waymark_due_participants").set(due as f64);
    gauge!("waymark_due_oldest_age_seconds").set(age(earliest));

    // Queued effects by channel, through the outbox_due index.
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT kind, count(*), min(CASE WHEN next_attempt_at <= $1 THEN next_attempt_at END) FROM
             (SELECT kind, next_attempt_at FROM outbox WHERE status = 'queued' ORDER BY next_attempt_at LIMIT $2) AS queued
         GROUP BY kind",
    )
    .bind(now)
    .bind(BOUND)
    .fetch_all(pool)
    .await?;
    {
        let mut seen = CHANNELS.lock().expect("channels lock");
        for channel in seen.iter() {
            if !rows.iter().any(|(kind, _, _)| kind == channel) {
                gauge!("waymark_outbox_queued", "channel" => channel.clone()).set(0.0);
                gauge!("waymark_outbox_oldest_due_age_seconds", "channel" => channel.clone()).set(0.0);
            }
        }
        for (channel, queued, earliest) in rows {
            gauge!("waymark_outbox_queued", "channel" => channel.clone()).set(queued as f64);
            gauge!("waymark_outbox_oldest_due_age_seconds", "channel" => channel.clone()).set(age(earliest));
            seen.insert(channel);
        }
    }

    // Running jobs, of every process (a handful at a time).
    let (imports, bytes_done, bytes_total): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT count(*), CAST(sum(bytes_done) AS BIGINT), CAST(sum(bytes_total) AS BIGINT) FROM contact_imports WHERE status = 'running'").fetch_one(pool).await?;
    let (runs, done, total): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT count(*), CAST(sum(done) AS BIGINT), CAST(sum(total) AS BIGINT) FROM bulk_runs WHERE status = 'running'").fetch_one(pool).await?;
    for (kind, running, done, total) in [("import", imports, bytes_done, bytes_total), ("bulk", runs, done, total)] {
        gauge!("waymark_jobs_running", "kind" => kind).set(running as f64);
        gauge!("waymark_jobs_progress_done", "kind" => kind).set(done.unwrap_or(0) as f64);
        gauge!("waymark_jobs_progress_total", "kind" => kind).set(total.unwrap_or(0) as f64);
    }
    Ok(())
}
