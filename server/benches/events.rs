//! Events API ingestion and delivery, through real processes:
//!
//! ```text
//! cargo bench -p server --bench events [-- sqlite|postgres|both] [--events N] [--contacts N]
//! ```
//! 100,000 contacts, 10% of them waiting in a published flow (`wait_until`
//! a `purchase`); a `waymark serve` process (plus two `waymark worker`
//! processes on PostgreSQL) takes 100 batches of 1,000 custom events over
//! HTTP from 4 concurrent clients with an API token; each batch has 100
//! events for waiting contacts (each once) and 900 for the others.
//! Printed: events/s accepted (first request sent to last 202), participants
//! moved per second, p50/p99/max from an event accepted (`received_at`) to
//! its participant moved (`participant_events.at`), and the anchor: the same
//! number of events written straight to the table by `events::record` in
//! batches of 1,000 (no HTTP, JSON, auth or delivery), with the ratio.
//! PostgreSQL: `WAYMARK_BENCH_POSTGRES` (default the local server).
//! `WAYMARK_BENCH_BIN` runs another `waymark` build (the anchor stays this one).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{json, Value};
use sqlx::Row;

use app::core::engagement::{ContactEvent, Received};
use server::db::Sql;
use server::runtime::events::{self, NewEvent};
use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};

const BATCH: usize = 1_000;
const CLIENTS: usize = 4;

struct Options {
    engines: Vec<&'static str>,
    events: usize,
    contacts: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |name: &str, default: usize| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let engines = if args.iter().any(|a| a == "postgres") {
        vec!["postgres"]
    } else if args.iter().any(|a| a == "both") {
        vec!["sqlite", "postgres"]
    } else {
        vec!["sqlite"]
    };
    Options { engines, events: value("--events", 100_000), contacts: value("--contacts", 100_000) }
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

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(args: &[&str], url: &str, dir: &std::path::Path, log: &str) -> Child {
    // `WAYMARK_BENCH_BIN`: another build to run, to compare two in one sitting.
    Command::new(std::env::var("WAYMARK_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_waymark").to_owned()))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env("WAYMARK_KEY_FILE", dir.join("waymark.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .expect("waymark starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` contacts, written many to a statement.
async fn add_contacts(pool: &server::db::Pool, n: usize) -> Vec<i64> {
    let at = Timestamp::now().to_string();
    let mut ids = Vec::with_capacity(n);
    let mut tx = pool.begin().await.unwrap();
    for start in (0..n).step_by(1_000) {
        let mut query: Sql = Sql::new("INSERT INTO contacts (email, fields, created_at, updated_at) ");
        query.push_values(start..(start + 1_000).min(n), |mut row, i| {
            row.push_bind(format!("buyer{i}@bench.test")).push_bind("{}").push_bind(at.clone()).push_bind(at.clone());
        });
        query.push(" RETURNING id");
        let mut made: Vec<i64> = query.build_query_scalar().fetch_all(&mut *tx).await.unwrap();
        made.sort_unstable();
        ids.extend(made);
    }
    tx.commit().await.unwrap();
    ids
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn run(engine: &'static str, opts: &Options) {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = match engine {
        "sqlite" => (format!("sqlite://{}/waymark.db", dir.path().display()), None),
        _ => {
            use sqlx::{Connection, Executor};
            let server = std::env::var("WAYMARK_BENCH_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("waymark_bench_events_{}", std::process::id());
            let mut admin = sqlx::PgConnection::connect(&server).await.expect("a PostgreSQL server (WAYMARK_BENCH_POSTGRES)");
            admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
            let mut url = url::Url::parse(&server).unwrap();
            url.set_path(&name);
            (url.to_string(), Some(PgDb { server, name }))
        }
    };
    std::env::set_var("WAYMARK_KEY_FILE", dir.path().join("waymark.key"));
    let store = Store::new(store::connect(&url).await.unwrap());
    let pool = store.pool().clone();
    let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), "bench-setup");

    // The flow, the contacts, and a tenth of them waiting on a purchase.
    let doc = app::core::FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Purchase",
        "steps": [{"id": "s", "kind": "start"},
                  {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "custom", "name": "purchase"}], "timeout": {"amount": 30, "unit": "days"}}},
                  {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "bought", "op": "set", "value": "yes"}]}}],
        "edges": [{"from": "s", "port": "next", "to": "w"}, {"from": "w", "port": "met", "to": "m"}]}))
    .unwrap();
    let flow = store.create("Purchase", Some(doc)).await.unwrap().id;
    store.publish(flow, None, "bench").await.unwrap();
    let started = Instant::now();
    let contacts = add_contacts(&pool, opts.contacts).await;
    let waiting: Vec<i64> = contacts.iter().copied().step_by(10).collect();
    runtime.enroll(flow, &waiting).await.unwrap();
    runtime.run_until_idle().await.unwrap();
    let (_, token) = server::auth::accounts::create_token(&pool, "bench", "write", "bench").await.unwrap();
    println!(
        "{engine}: {} contacts, {} waiting, set up in {:.1} s",
        contacts.len(),
        waiting.len(),
        started.elapsed().as_secs_f64()
    );

    // The batches: a tenth of each for waiting contacts, each once.
    let others: Vec<i64> = contacts.iter().copied().filter(|id| (id - contacts[0]) % 10 != 0).collect();
    let batches: Vec<Value> = (0..opts.events / BATCH)
        .map(|b| {
            let events: Vec<Value> = (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let contact = if i % 10 == 0 { waiting[(n / 10) % waiting.len()] } else { others[(n * 7919) % others.len()] };
                    json!({"id": format!("ev-{n}"), "contact": {"id": contact}, "event": "custom", "name": "purchase",
                           "properties": {"total": 70 + (n % 50), "sku": format!("SKU-{}", n % 97)}})
                })
                .collect();
            Value::Array(events)
        })
        .collect();
    let bodies: Vec<Vec<u8>> = batches.iter().map(|b| serde_json::to_vec(b).unwrap()).collect();
    drop(batches);

    let port = free_port();
    let mut procs = Procs(vec![spawn(&["serve", "--addr", &format!("127.0.0.1:{port}"), "--no-demo"], &url, dir.path(), "serve.log")]);
    if engine == "postgres" {
        for i in 0..2 {
            procs.0.push(spawn(&["worker", "--idle-ms", "100"], &url, dir.path(), &format!("worker{i}.log")));
        }
    }
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() || client.get(&base).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, bodies, next, token, base) = (client.clone(), bodies.clone(), next.clone(), token.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            let mut request_ms = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let reply = client
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = reply.status();
                let text = reply.text().await.unwrap();
                assert_eq!(status.as_u16(), 202, "{text}");
                request_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            request_ms
        }));
    }
    let mut request_ms = Vec::new();
    for c in clients {
        request_ms.extend(c.await.unwrap());
    }
    let accepted_in = sent.elapsed().as_secs_f64();
    // Wait for delivery to finish.
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_events WHERE delivered_at IS NULL").fetch_one(&pool).await.unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_in = sent.elapsed().as_secs_f64();
    drop(procs);

    let rows = sqlx::query(
        "SELECT e.received_at, pe.at FROM participant_events pe JOIN contact_events e ON e.id = pe.event_id WHERE pe.effect = 'met'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut lags: Vec<f64> = rows
        .iter()
        .map(|r| {
            let moved: Timestamp = r.get::<String, _>(1).parse().unwrap();
            (moved.as_millisecond() - r.get::<i64, _>(0)) as f64
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    request_ms.sort_by(f64::total_cmp);
    let total = bodies.len() * BATCH;
    let bought: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE status = 'completed'").fetch_one(&pool).await.unwrap();
    let api_rate = total as f64 / accepted_in;
    println!(
        "{engine}: {total} events in {} requests of {BATCH} from {CLIENTS} clients: accepted in {accepted_in:.2} s = {api_rate:.0} events/s \
         (request p50 {:.0} ms, p99 {:.0} ms); all delivered after {delivered_in:.2} s",
        bodies.len(),
        percentile(&request_ms, 0.5),
        percentile(&request_ms, 0.99)
    );
    println!(
        "{engine}: {} participants moved ({bought} completed) = {:.0} moved/s; accepted → moved p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lags.len(),
        lags.len() as f64 / delivered_in,
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );

    // The anchor: the same number of events straight into the table.
    let direct: Vec<NewEvent> = (0..total)
        .map(|n| NewEvent {
            contact_id: others[(n * 7919) % others.len()],
            participant_id: None,
            received: Received {
                id: Some(format!("direct-{n}")),
                at: Timestamp::now(),
                event: ContactEvent::Custom {
                    name: "purchase".into(),
                    properties: serde_json::from_value(json!({"total": 70 + (n % 50), "sku": format!("SKU-{}", n % 97)})).unwrap(),
                },
            },
            source: "api",
        })
        .collect();
    let t = Instant::now();
    for chunk in direct.chunks(BATCH) {
        let mut tx = server::db::begin_write(&pool).await.unwrap();
        events::record(&runtime, &mut tx, chunk).await.unwrap();
        tx.commit().await.unwrap();
    }
    let direct_rate = total as f64 / t.elapsed().as_secs_f64();
    println!(
        "{engine}: anchor, {total} events by events::record in batches of {BATCH} (no HTTP, no delivery): {direct_rate:.0} events/s; \
         the API reaches {:.2}× of it",
        api_rate / direct_rate
    );
}

#[tokio::main]
async fn main() {
    let opts = options();
    for engine in opts.engines.clone() {
        run(engine, &opts).await;
    }
}
