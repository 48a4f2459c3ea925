//! Several real `waymark worker` processes (two scheduler loops each) on one PostgreSQL database: one
//! is killed (SIGKILL) and one paused (SIGSTOP) past its lease while they
//! work. Every participant still ends exactly once per step, the paused
//! worker cannot commit over work taken from it when it wakes, and every
//! effect reaches the webhook server at least once under one stable key.
//!
//! PostgreSQL only: `make test` runs it with `WAYMARK_TEST_POSTGRES` set.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use app::core::FlowDocument;
use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};

mod support;

use support::{HttpServer, TestDb};

struct Worker(Child);

impl Worker {
    fn start(url: &str, log: &std::path::Path) -> Worker {
        let child = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args([
                "worker",
                "--lease-secs",
                "2",
                "--batch",
                "100",
                // Two scheduler loops in each process (the PostgreSQL default, said here).
                "--concurrency",
                "2",
                "--idle-ms",
                "50",
            ])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("waymark worker starts");
        Worker(child)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn count(pool: &server::db::Pool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_and_paused_mid_run_lose_nothing_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path()).await;
    if !db.is_postgres() {
        eprintln!("SKIPPED: several workers share one PostgreSQL database; set WAYMARK_TEST_POSTGRES (make test does)");
        return;
    }
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let hooks = HttpServer::start("127.0.0.1").await;
    server::channels::settings::update(
        &pool,
        json!({"http": {"allowlist": ["127.0.0.1"]}})
            .as_object()
            .unwrap()
            .clone(),
    )
    .await
    .unwrap();

    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Scale out",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "touch", "kind": "update_contact", "settings": {"changes": [{"field": "touches", "op": "increment", "value": 1}]}},
                  {"id": "hook", "kind": "webhook", "settings": {"url": hooks.url("/hook"), "body": {"email": "{{ email }}"}}},
                  {"id": "tag", "kind": "add_to_list", "settings": {"list": "Done"}},
                  {"id": "x", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "touch"}, {"from": "touch", "port": "next", "to": "hook"},
                  {"from": "hook", "port": "next", "to": "tag"}, {"from": "tag", "port": "next", "to": "x"}]}))
    .unwrap();
    let flow = store.create("Scale out", Some(doc)).await.unwrap().id;
    store.publish(flow, None, "test").await.unwrap();

    const N: i64 = 10_000;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO contacts (email, created_at, updated_at)
         SELECT 'k' || g || '@x.test', '2026-11-22T00:00:00Z', '2026-11-22T00:00:00Z' FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(N)
    .fetch_all(&pool)
    .await
    .unwrap();
    let enroller = Runtime::new(pool.clone(), std::sync::Arc::new(SystemClock), "test");
    for chunk in ids.chunks(2_000) {
        enroller.enroll(flow, chunk).await.unwrap();
    }

    let logs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("worker-{i}.log")))
        .collect();
    let workers: Vec<Worker> = logs.iter().map(|log| Worker::start(&db.url, log)).collect();
    let completed = "SELECT count(*) FROM participants WHERE status = 'completed'";
    // Let them get going, then kill one and pause another past its lease.
    let started = Instant::now();
    while count(&pool, completed).await < N / 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the workers did not start working"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    workers[0].signal("KILL");
    workers[1].signal("STOP");
    let at_signals = count(&pool, completed).await;
    assert!(
        at_signals < N,
        "signalled mid-run ({at_signals} of {N} done)"
    );
    eprintln!(
        "killed worker 0 and paused worker 1 with {at_signals} of {N} participants completed"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    workers[1].signal("CONT");

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = count(&pool, completed).await;
        if done == N {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {N} completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The paused worker has woken and tried to commit what it held.
    tokio::time::sleep(Duration::from_secs(1)).await;

    assert_eq!(
        count(&pool, "SELECT count(*) FROM participants").await,
        N,
        "no participant lost or added"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM participant_actions").await,
        N * 5,
        "each step recorded once"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM participant_actions WHERE outcome = 'completed'"
        )
        .await,
        N * 5
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM contacts WHERE json_extract(fields, '$.touches') = '1'"
        )
        .await,
        N,
        "no contact updated twice, even by the worker that woke after losing its lease"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM list_members").await,
        N,
        "each contact joined the list once"
    );

    let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM outbox")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(keys.len() as i64, N, "one webhook per participant");
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len() as i64,
        N,
        "each under its own key"
    );
    let mut arrived: HashMap<String, usize> = HashMap::new();
    for arrival in hooks.arrivals() {
        let key = arrival
            .headers
            .get("idempotency-key")
            .expect("webhooks carry their key")
            .to_str()
            .unwrap()
            .to_owned();
        *arrived.entry(key).or_default() += 1;
    }
    let missing = keys.iter().filter(|k| !arrived.contains_key(*k)).count();
    assert_eq!(missing, 0, "every effect arrived at least once");
    let repeated = arrived.values().filter(|n| **n > 1).count();
    let lost_leases: usize = logs
        .iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("lease lost")
                .count()
        })
        .sum();
    eprintln!(
        "all {N} completed; {} webhook calls for {N} keys ({repeated} keys delivered more than once); \
         {lost_leases} commits refused because the lease was lost",
        arrived.values().sum::<usize>()
    );
}
