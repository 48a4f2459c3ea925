//! Reports at scale, and what keeping rollups costs the engine:
//!
//! ```text
//! cargo bench -p server --bench reports [-- sqlite|postgres|both] [--actions N] [--events N] [--flows N]
//! ```
//! 1. Report data: 10,000,000 timeline records (1,000,000 participants,
//!    ten steps each) and 10,000,000 contact events across 20 flows,
//!    written with bulk SQL (not through the engine), with their rollups
//!    counted from them by bulk SQL too. Printed: the median and the worst
//!    of 20 reads of one flow's report (`reports::report`: rollups over the
//!    period plus the participants waiting at each step now), for 30 days
//!    and for a year. Target: ≤ 200 ms. Anchor, in the same run: the
//!    same counts taken from the raw records (median of 3), and the ratio.
//!    Then the split-test check each scheduler batch makes, with 2,000
//!    published versions (`--versions`), kept against read afresh.
//! 2. Engine throughput with rollups kept and not kept, in the same run:
//!    20,000 participants through a five-step flow, three rounds each way,
//!    alternating; transitions per second and the ratio. Target: ≥ 90%.
//!
//! PostgreSQL: `WAYMARK_BENCH_POSTGRES` (default the local server).

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use server::db::{Backend, Pool};
use server::runtime::{rollups, ManualClock, Runtime};
use server::store::{self, Store};

struct Options {
    engines: Vec<&'static str>,
    actions: i64,
    events: i64,
    flows: i64,
    participants: usize,
    versions: i64,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |name: &str, default: i64| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default);
    let engines = if args.iter().any(|a| a == "postgres") {
        vec!["postgres"]
    } else if args.iter().any(|a| a == "both") {
        vec!["sqlite", "postgres"]
    } else {
        vec!["sqlite"]
    };
    Options {
        engines,
        actions: value("--actions", 10_000_000),
        events: value("--events", 10_000_000),
        flows: value("--flows", 20),
        participants: value("--participants", 20_000) as usize,
        versions: value("--versions", 2_000),
    }
}

/// A fresh PostgreSQL database, dropped afterwards.
struct PgDb {
    server: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::{Connection, Executor};
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                }
            });
        })
        .join();
    }
}

async fn database(engine: &str, dir: &std::path::Path, tag: &str) -> (String, Option<PgDb>) {
    match engine {
        "sqlite" => (format!("sqlite://{}/{tag}.db", dir.display()), None),
        _ => {
            use sqlx::{Connection, Executor};
            let server = std::env::var("WAYMARK_BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("waymark_bench_reports_{tag}_{}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(&server).await.expect("a PostgreSQL server (WAYMARK_BENCH_POSTGRES)");
            admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
            let url = match server.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => format!("{server}/{name}"),
            };
            (url, Some(PgDb { server, name }))
        }
    }
}

/// Ten steps: start, an email, a split, and a chain of updates.
fn ten_steps(name: &str) -> app::core::FlowDocument {
    let mut steps = vec![json!({"id": "s0", "kind": "start"})];
    let mut edges = Vec::new();
    for i in 1..10 {
        steps.push(json!({"id": format!("s{i}"), "kind": "update_contact", "settings": {"changes": [{"field": "n", "op": "set", "value": i}]}}));
        edges.push(json!({"from": format!("s{}", i - 1), "port": "next", "to": format!("s{i}")}));
    }
    app::core::FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": name, "steps": steps, "edges": edges})).unwrap()
}

/// `SELECT i FROM` a series 1..=n, in the engine's words.
fn series(backend: Backend, n: i64) -> String {
    match backend {
        Backend::Sqlite => format!("(WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) SELECT i FROM g) AS s"),
        Backend::Postgres => format!("generate_series(1, {n}) AS s(i)"),
    }
}

async fn exec(pool: &Pool, what: &str, sql: &str) {
    let started = Instant::now();
    sqlx::query(sql).execute(pool).await.unwrap_or_else(|err| panic!("{what}: {err}"));
    println!("  {what}: {:.1} s", started.elapsed().as_secs_f64());
}

/// The raw records and their rollups, by bulk SQL.
async fn generate(pool: &Pool, store: &Store, opts: &Options) -> Vec<i64> {
    let backend = Backend::of(pool);
    let mut flows = Vec::new();
    for f in 0..opts.flows {
        let flow = store.create(&format!("Bench {f}"), Some(ten_steps(&format!("Bench {f}")))).await.unwrap();
        store.publish(flow.id, None, "bench").await.unwrap();
        flows.push(flow.id);
    }
    let first_flow = flows[0];
    let nflows = opts.flows;
    let people = opts.actions / 10;
    // Days since 1970 for a participant: over the year before 2026-12-01.
    let base_day = Timestamp::from_second(20_423 * 86_400).unwrap(); // 2025-12-01
    let day_text = |expr: &str| match backend {
        Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', {} * 86400 + 36000, 'unixepoch')", expr),
        Backend::Postgres => format!("to_char(to_timestamp({} * 86400 + 36000) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')", expr),
    };
    let day = format!("({} + (s.i % 365))", base_day.as_second() / 86_400);
    exec(pool, &format!("{people} contacts"), &format!(
        "INSERT INTO contacts (email, fields, created_at, updated_at) SELECT NULL, '{{}}', '2025-12-01T00:00:00Z', '2025-12-01T00:00:00Z' FROM {}",
        series(backend, people)
    )).await;
    let min_contact: i64 = sqlx::query_scalar("SELECT min(id) FROM contacts").fetch_one(pool).await.unwrap();
    // 70% completed, 10% converted, 20% waiting at one of the ten steps.
    exec(pool, &format!("{people} participants"), &format!(
        "INSERT INTO participants (flow_id, version, contact_id, status, step, state, next_run_at, starts_at, enrolled_at, updated_at)
         SELECT {first_flow} + (s.i % {nflows}), 1, {min_contact} + s.i - 1,
                CASE WHEN s.i % 10 < 7 THEN 'completed' WHEN s.i % 10 = 7 THEN 'converted' ELSE 'waiting' END,
                's' || ((s.i / 7) % 10), '{{}}', NULL, CAST({day} AS BIGINT) * 86400000, {}, {}
         FROM {}",
        day_text(&day), day_text(&day), series(backend, people)
    )).await;
    let min_participant: i64 = sqlx::query_scalar("SELECT min(id) FROM participants").fetch_one(pool).await.unwrap();
    let pday = format!("({} + (((s.i - 1) / 10 + 1) % 365))", base_day.as_second() / 86_400);
    exec(pool, &format!("{} timeline records", opts.actions), &format!(
        "INSERT INTO participant_actions (participant_id, visit, step, kind, due_at, done_at, outcome, manual)
         SELECT {min_participant} + (s.i - 1) / 10, (s.i - 1) % 10 + 1, 's' || ((s.i - 1) % 10), 'update_contact', {}, {}, 'completed', 0
         FROM {}",
        day_text(&pday), day_text(&pday), series(backend, opts.actions)
    )).await;
    let eday = format!("({} + ((s.i % {people}) % 365))", base_day.as_second() / 86_400);
    exec(pool, &format!("{} contact events", opts.events), &format!(
        "INSERT INTO contact_events (contact_id, participant_id, kind, step, body, machine, auto, source, happened_at, received_at, delivered_at)
         SELECT {min_contact} + (s.i % {people}), {min_participant} + (s.i % {people}),
                CASE WHEN s.i % 3 = 0 THEN 'link_clicked' ELSE 'email_opened' END, 's1', '{{}}', CASE WHEN s.i % 5 = 0 THEN 1 ELSE 0 END, 0, 'api',
                CAST({eday} AS BIGINT) * 86400000, CAST({eday} AS BIGINT) * 86400000, CAST({eday} AS BIGINT) * 86400000
         FROM {}",
        series(backend, opts.events)
    )).await;
    // The rollups, counted from the raw records as the runtime would have kept them.
    let day_of_ms = |col: &str| format!("({col} / 86400000)");
    exec(pool, "rollups: entered and finished", &format!(
        "INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
         SELECT flow_id, {}, version, '', 'entered', 0, count(*) FROM participants GROUP BY flow_id, {}, version",
        day_of_ms("starts_at"), day_of_ms("starts_at")
    )).await;
    exec(pool, "rollups: statuses", &format!(
        "INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
         SELECT flow_id, {}, version, step, status, 0, count(*) FROM participants WHERE status IN ('completed', 'converted')
         GROUP BY flow_id, {}, version, step, status",
        day_of_ms("starts_at"), day_of_ms("starts_at")
    )).await;
    for metric in ["reached", "passed"] {
        exec(pool, &format!("rollups: {metric}"), &format!(
            "INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
             SELECT p.flow_id, {}, p.version, a.step, '{metric}', 0, count(*) FROM participant_actions a JOIN participants p ON p.id = a.participant_id
             GROUP BY p.flow_id, {}, p.version, a.step",
            day_of_ms("p.starts_at"), day_of_ms("p.starts_at")
        )).await;
    }
    exec(pool, "rollups: engagement", &format!(
        "INSERT INTO flow_rollups (flow_id, day, version, step, metric, machine, count)
         SELECT p.flow_id, {}, p.version, e.step, CASE WHEN e.kind = 'link_clicked' THEN 'clicked' ELSE 'opened' END, e.machine, count(DISTINCT e.participant_id)
         FROM contact_events e JOIN participants p ON p.id = e.participant_id
         GROUP BY p.flow_id, {}, p.version, e.step, CASE WHEN e.kind = 'link_clicked' THEN 'clicked' ELSE 'opened' END, e.machine",
        day_of_ms("e.happened_at"), day_of_ms("e.happened_at")
    )).await;
    exec(pool, "ANALYZE", "ANALYZE").await;
    flows
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// The anchor: the report's counts taken from the raw records instead of
/// the rollups (what a report would cost without them): participants per
/// day and status, the timeline per step and outcome, and the people
/// engaging per step, kind and machine, over the same period. Returns the
/// participants entered, to check both read the same period.
async fn raw_recount(pool: &Pool, flow: i64, from: jiff::civil::Date, to: jiff::civil::Date) -> i64 {
    let ms_of = |d: jiff::civil::Date| d.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp().as_millisecond();
    let (first, end) = (ms_of(from), ms_of(to) + 86_400_000);
    let (first_text, end_text) = (format!("{from}T00:00:00Z"), format!("{}T00:00:00Z", to.tomorrow().unwrap()));
    let days: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT starts_at / 86400000, status, count(*) FROM participants WHERE flow_id = $1 AND starts_at >= $2 AND starts_at < $3 GROUP BY 1, 2",
    )
    .bind(flow)
    .bind(first)
    .bind(end)
    .fetch_all(pool)
    .await
    .unwrap();
    let steps: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT a.step, a.outcome, count(*) FROM participant_actions a JOIN participants p ON p.id = a.participant_id
         WHERE p.flow_id = $1 AND a.done_at >= $2 AND a.done_at < $3 GROUP BY a.step, a.outcome",
    )
    .bind(flow)
    .bind(&first_text)
    .bind(&end_text)
    .fetch_all(pool)
    .await
    .unwrap();
    let engaged: Vec<(Option<String>, String, i64, i64)> = sqlx::query_as(
        "SELECT e.step, e.kind, e.machine, count(DISTINCT e.participant_id) FROM contact_events e JOIN participants p ON p.id = e.participant_id
         WHERE p.flow_id = $1 AND e.happened_at >= $2 AND e.happened_at < $3 GROUP BY e.step, e.kind, e.machine",
    )
    .bind(flow)
    .bind(first)
    .bind(end)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(!steps.is_empty() && !engaged.is_empty(), "the recount found the records");
    days.iter().map(|d| d.2).sum()
}

async fn report_reads(pool: &Pool, flow: i64) {
    for (label, from) in [("30 days", "2026-11-01"), ("a year", "2025-12-01")] {
        let (from, to): (jiff::civil::Date, jiff::civil::Date) = (from.parse().unwrap(), "2026-11-30".parse().unwrap());
        let mut times = Vec::new();
        let mut entered = 0;
        for _ in 0..20 {
            let mut conn = pool.acquire().await.unwrap();
            let started = Instant::now();
            let report = server::reports::report(&mut conn, flow, from, to).await.unwrap();
            times.push(ms(started.elapsed()));
            entered = report.days.iter().map(|d| d.entered).sum::<u64>();
        }
        times.sort_by(f64::total_cmp);
        let mut raw = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let recounted = raw_recount(pool, flow, from, to).await;
            raw.push(ms(started.elapsed()));
            assert_eq!(recounted as u64, entered, "the rollups and the raw records agree on who entered");
        }
        raw.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "  report of one flow over {label}: median {median:.1} ms, worst {:.1} ms ({entered} participants entered in the period) — target ≤ 200 ms",
            times[times.len() - 1]
        );
        println!("    anchor, the same counts from the raw records: median of 3 {:.0} ms ({:.0}× the report's median)", raw[1], raw[1] / median.max(0.001));
    }
}

/// The automatic-winner check each scheduler batch makes
/// (`winner::ready`), with `versions` published versions of the report
/// flows' ten-step documents and one flow with a split test, against its
/// anchor in the same run: the same check reading every document afresh
/// (`winner::load`, what each batch did before the tests were kept).
async fn winner_checks(store: &Store, versions: i64) {
    let pool = store.pool();
    let backend = Backend::of(pool);
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_versions").fetch_one(pool).await.unwrap();
    let per_flow = (versions / existing.max(1)).max(1);
    exec(pool, &format!("{} more published versions", existing * (per_flow - 1)), &format!(
        "INSERT INTO flow_versions (flow_id, number, document, published_at, published_by)
         SELECT v.flow_id, v.number + s.i, v.document, v.published_at, v.published_by FROM flow_versions v, {} WHERE v.number = 1 AND s.i < {per_flow}",
        series(backend, per_flow)
    )).await;
    let doc = app::core::FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "Test", "steps": [
        {"id": "s", "kind": "start"},
        {"id": "sp", "kind": "split", "settings": {"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}],
            "winner": {"metric": "click", "window": {"amount": 7, "unit": "days"}, "test_share": 20}}},
        {"id": "ea", "kind": "send_email", "settings": {"subject": "A", "body": "A"}},
        {"id": "eb", "kind": "send_email", "settings": {"subject": "B", "body": "B"}}],
        "edges": [{"from": "s", "port": "next", "to": "sp"}, {"from": "sp", "port": "a", "to": "ea"}, {"from": "sp", "port": "b", "to": "eb"}]}))
    .unwrap();
    let flow = store.create("Test", Some(doc)).await.unwrap();
    store.publish(flow.id, None, "bench").await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_versions").fetch_one(pool).await.unwrap();
    let runtime = Runtime::new(pool.clone(), ManualClock::new("2026-11-30T09:00:00Z".parse().unwrap()), "bench");
    let (mut fresh, mut kept) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut conn = pool.acquire().await.unwrap();
        let started = Instant::now();
        server::runtime::winner::load(&mut conn).await.unwrap();
        fresh.push(ms(started.elapsed()));
        drop(conn);
        let started = Instant::now();
        server::runtime::winner::ready(&runtime).await.unwrap();
        kept.push(ms(started.elapsed()));
    }
    fresh.sort_by(f64::total_cmp);
    kept.sort_by(f64::total_cmp);
    println!(
        "  winner check per scheduler batch, {total} published versions, one split test: median {:.2} ms with the tests kept (first {:.1} ms); \
         anchor, every document read afresh: {:.1} ms ({:.0}×)",
        kept[kept.len() / 2],
        kept.iter().copied().fold(0.0, f64::max),
        fresh[fresh.len() / 2],
        fresh[fresh.len() / 2] / kept[kept.len() / 2].max(0.001)
    );
}

/// Transitions per second through a five-step flow, `n` participants.
async fn throughput(engine: &str, n: usize, keep: bool, round: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = database(engine, dir.path(), &format!("tp{round}{}", if keep { "on" } else { "off" })).await;
    let store = Store::new(store::connect(&url).await.unwrap());
    let doc = app::core::FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "T", "steps": [
        {"id": "s", "kind": "start"},
        {"id": "a", "kind": "update_contact", "settings": {"changes": [{"field": "a", "op": "set", "value": 1}]}},
        {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "hours"}},
        {"id": "b", "kind": "update_contact", "settings": {"changes": [{"field": "b", "op": "set", "value": 1}]}},
        {"id": "x", "kind": "exit"}],
        "edges": [{"from": "s", "port": "next", "to": "a"}, {"from": "a", "port": "next", "to": "w"}, {"from": "w", "port": "next", "to": "b"}, {"from": "b", "port": "next", "to": "x"}]}))
    .unwrap();
    let flow = store.create("T", Some(doc)).await.unwrap();
    store.publish(flow.id, None, "bench").await.unwrap();
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let runtime = Runtime::new(store.pool().clone(), clock.clone(), "bench");
    let pool = store.pool();
    let backend = Backend::of(pool);
    sqlx::query(&format!("INSERT INTO contacts (email, fields, created_at, updated_at) SELECT NULL, '{{}}', 'x', 'x' FROM {}", series(backend, n as i64)))
        .execute(pool)
        .await
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM contacts ORDER BY id").fetch_all(pool).await.unwrap();
    runtime.enroll(flow.id, &ids).await.unwrap();
    rollups::keep(keep);
    let started = Instant::now();
    let first = runtime.run_until_idle().await.unwrap();
    clock.advance(SignedDuration::from_hours(2));
    let second = runtime.run_until_idle().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    rollups::keep(true);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_rollups").fetch_one(pool).await.unwrap();
    assert_eq!(kept > 0, keep, "rollups kept only when on");
    (first.transitions + second.transitions) as f64 / secs
}

fn main() {
    let opts = options();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for engine in &opts.engines {
            println!("== {engine}: report data ({} timeline records, {} events, {} flows)", opts.actions, opts.events, opts.flows);
            let dir = tempfile::tempdir().unwrap();
            let (url, _pg) = database(engine, dir.path(), "data").await;
            let store = Store::new(store::connect(&url).await.unwrap());
            let flows = generate(store.pool(), &store, &opts).await;
            report_reads(store.pool(), flows[0]).await;
            winner_checks(&store, opts.versions).await;
            drop(store);

            println!("== {engine}: engine throughput, {} participants through five steps", opts.participants);
            let (mut on, mut off) = (Vec::new(), Vec::new());
            for round in 0..3 {
                off.push(throughput(engine, opts.participants, false, round).await);
                on.push(throughput(engine, opts.participants, true, round).await);
                println!("  round {}: without rollups {:.0}/s, with {:.0}/s", round + 1, off[round], on[round]);
            }
            on.sort_by(f64::total_cmp);
            off.sort_by(f64::total_cmp);
            println!(
                "  median: without rollups {:.0} transitions/s, with {:.0}/s: {:.1}% — target ≥ 90%",
                off[1],
                on[1],
                on[1] / off[1] * 100.0
            );
        }
    });
}
