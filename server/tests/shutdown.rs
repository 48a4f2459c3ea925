//! Graceful shutdown of a real `waymark worker` process on SQLite: SIGTERM
//! mid-run stops it taking new work; the batch and the effects it claimed
//! are committed and recorded (or handed back), and it exits 0 well within
//! its lease. A second worker then carries on at once, not after the
//! lease, and every participant ends exactly once per step.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;

use app::core::FlowDocument;
use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};

/// The lease both workers claim under.
const LEASE_SECS: u64 = 30;

/// A webhook receiver that answers after `delay` milliseconds and counts
/// the calls per idempotency key.
#[derive(Clone, Default)]
struct SlowHooks {
    delay: Arc<AtomicU64>,
    /// Calls under way (received, not yet answered).
    inflight: Arc<AtomicU64>,
    keys: Arc<Mutex<HashMap<String, usize>>>,
}

async fn receive(State(hooks): State<SlowHooks>, headers: HeaderMap) -> &'static str {
    hooks.inflight.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(hooks.delay.load(Ordering::Relaxed))).await;
    let key = headers.get("idempotency-key").and_then(|k| k.to_str().ok()).unwrap_or_default().to_owned();
    *hooks.keys.lock().unwrap().entry(key).or_default() += 1;
    hooks.inflight.fetch_sub(1, Ordering::SeqCst);
    "ok"
}

fn start_worker(url: &str, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["worker", "--lease-secs", &LEASE_SECS.to_string(), "--batch", "50", "--idle-ms", "50"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("waymark worker starts")
}

async fn count(pool: &server::db::Pool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_finishes_or_hands_back_every_claim_and_exits_zero_within_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/waymark.db", dir.path().display());
    let pool = store::connect(&url).await.unwrap();
    let hooks = SlowHooks::default();
    hooks.delay.store(150, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(receive).with_state(hooks.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    server::channels::settings::update(&pool, json!({"http": {"allowlist": ["127.0.0.1"]}}).as_object().unwrap().clone()).await.unwrap();

    let store = Store::new(pool.clone());
    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Shutdown",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "touch", "kind": "update_contact", "settings": {"changes": [{"field": "touches", "op": "increment", "value": 1}]}},
                  {"id": "hook", "kind": "webhook", "settings": {"url": hook_url, "body": {"email": "{{ email }}"}}},
                  {"id": "x", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "touch"}, {"from": "touch", "port": "next", "to": "hook"},
                  {"from": "hook", "port": "next", "to": "x"}]}))
    .unwrap();
    let flow = store.create("Shutdown", Some(doc)).await.unwrap().id;
    store.publish(flow, None, "test").await.unwrap();
    const N: i64 = 1_500;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO contacts (email, created_at, updated_at)
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $1)
         SELECT 's' || n || '@x.test', '2026-11-22T00:00:00Z', '2026-11-22T00:00:00Z' FROM g RETURNING id",
    )
    .bind(N)
    .fetch_all(&pool)
    .await
    .unwrap();
    Runtime::new(pool.clone(), Arc::new(SystemClock), "test").enroll(flow, &ids).await.unwrap();

    // The first worker gets going, slowed by the webhook receiver, and is
    // told to stop mid-run, while webhooks it claimed are under way.
    let first_log = dir.path().join("worker-1.log");
    let mut first = start_worker(&url, &first_log);
    let completed = "SELECT count(*) FROM participants WHERE status = 'completed'";
    let started = Instant::now();
    while count(&pool, completed).await < N / 10 || hooks.inflight.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "the first worker did not get going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let term = Command::new("kill").args(["-TERM", &first.id().to_string()]).status().unwrap();
    assert!(term.success(), "kill -TERM");
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(LEASE_SECS) {
            let _ = first.kill();
            panic!("the worker was still running {LEASE_SECS} s (its lease) after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(&first_log).unwrap();
    assert!(status.success(), "a SIGTERM'd worker exits 0, not {status}:\n{log}");
    assert!(log.contains("handed back"), "the worker says what it handed back:\n{log}");
    let at_exit = count(&pool, completed).await;
    assert!(at_exit < N, "stopped mid-run ({at_exit} of {N} completed)");
    eprintln!("worker stopped {:.2} s after SIGTERM (lease {LEASE_SECS} s) with {at_exit} of {N} completed", took.as_secs_f64());

    // Nothing it claimed is left claimed: committed, or given back.
    assert_eq!(count(&pool, "SELECT count(*) FROM participants WHERE lease_owner IS NOT NULL OR lease_until IS NOT NULL").await, 0, "claimed participants committed or released");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM outbox WHERE status = 'queued' AND lease_until IS NOT NULL").await,
        0,
        "claimed effects carried out and recorded"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM outbox WHERE status = 'sent'").await,
        hooks.keys.lock().unwrap().len() as i64,
        "every effect the stopped worker carried out was recorded as sent"
    );

    // A second worker takes the rest at once: nothing waits for a lease
    // (30 s) to run out.
    hooks.delay.store(0, Ordering::Relaxed);
    let second_log = dir.path().join("worker-2.log");
    let mut second = start_worker(&url, &second_log);
    let resumed = Instant::now();
    loop {
        let done = count(&pool, completed).await;
        if done == N {
            break;
        }
        if resumed.elapsed() > Duration::from_secs(LEASE_SECS - 5) {
            let _ = second.kill();
            panic!("only {done} of {N} completed {} s after the second worker started: something waited for a lease", LEASE_SECS - 5);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the second worker finished the other {} in {:.2} s", N - at_exit, resumed.elapsed().as_secs_f64());
    let term = Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(second.wait().unwrap().success());

    assert_eq!(count(&pool, "SELECT count(*) FROM participants").await, N, "no participant lost or added");
    assert_eq!(count(&pool, "SELECT count(*) FROM participant_actions WHERE outcome = 'completed'").await, N * 4, "each step recorded once");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM contacts WHERE json_extract(fields, '$.touches') = 1").await,
        N,
        "no contact updated twice"
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM outbox").fetch_all(&pool).await.unwrap();
    assert_eq!(keys.len() as i64, N, "one webhook per participant");
    let arrived = hooks.keys.lock().unwrap().clone();
    assert_eq!(keys.iter().filter(|k| !arrived.contains_key(*k)).count(), 0, "every webhook arrived");
}
