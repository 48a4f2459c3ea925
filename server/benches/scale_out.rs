//! Scale-out benchmark on PostgreSQL:
//! `cargo bench -p server --bench scale_out [-- participants [background]]`.
//!
//! 1. Transitions per second with 1, 2 and 4 `waymark worker` processes
//!    sharing one database, `participants` (default 100,000) due at once
//!    through start → update contact → condition → exit.
//! 2. The anchor, in the same run: graphile-worker (npm, `benches/graphile`)
//!    draining the same number of no-op jobs with the same number of
//!    processes (concurrency 1 each, its default, and 10).
//! 3. The same 100,000 due participants with `background` (default
//!    10,000,000) others waiting in the table, with 1 and with 2 processes,
//!    and the plan of the claim query.
//!
//! The server comes from `WAYMARK_BENCH_POSTGRES`, or `.ci/postgres`.
//! `WAYMARK_BENCH_NO_ANCHOR=1` skips 2., a background of 0 skips 3.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use app::core::engine::Participant;
use app::core::FlowDocument;
use server::db::Pool;
use server::store::{self, Store};

fn server_url() -> String {
    if let Ok(url) = std::env::var("WAYMARK_BENCH_POSTGRES") {
        return url;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/postgres");
    let out = Command::new(script).output().expect(".ci/postgres runs");
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!url.is_empty(), "no PostgreSQL server: {}", String::from_utf8_lossy(&out.stderr));
    url
}

/// A fresh database on the server, by name.
async fn fresh(server: &str, name: &str) -> String {
    use sqlx::{Connection, Executor};
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(name);
    url.to_string()
}

async fn setup(url: &str) -> (Pool, i64) {
    let pool = store::connect(url).await.unwrap();
    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Bench",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "score", "kind": "update_contact", "settings": {"changes": [{"field": "score", "op": "increment", "value": 1}]}},
                  {"id": "hot", "kind": "condition", "settings": {"criteria": [{"field": "score", "op": "greater_than", "value": 50}]}},
                  {"id": "done", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "score"}, {"from": "score", "port": "next", "to": "hot"},
                  {"from": "hot", "port": "yes", "to": "done"}, {"from": "hot", "port": "no", "to": "done"}]}))
    .unwrap();
    let store = Store::new(pool.clone());
    let flow = store.create("Bench", Some(doc)).await.unwrap();
    store.publish(flow.id, None, "bench").await.unwrap();
    (pool, flow.id)
}

/// Contacts `from..=to` and a participant each, in `status`, due at `due_ms`,
/// set-based (one statement each).
async fn populate(pool: &Pool, flow: i64, from: i64, to: i64, status: &str, due_ms: i64) {
    let at = jiff::Timestamp::now().to_string();
    sqlx::query(
        "INSERT INTO contacts (id, email, fields, created_at, updated_at)
         SELECT g, 'b' || g || '@bench.test', '{\"score\": ' || (g % 100) || '}', $1, $1 FROM generate_series($2, $3) g",
    )
    .bind(&at)
    .bind(from)
    .bind(to)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO participants (flow_id, version, contact_id, status, state, next_run_at, starts_at, enrolled_at, updated_at)
         SELECT $1, 1, g, $2, $3, $4, $4, $5, $5 FROM generate_series($6, $7) g",
    )
    .bind(flow)
    .bind(status)
    .bind(serde_json::to_string(&Participant::new(7)).unwrap())
    .bind(due_ms)
    .bind(&at)
    .bind(from)
    .bind(to)
    .execute(pool)
    .await
    .unwrap();
}

/// Vacuums and checkpoints after loading, so the measurement that follows
/// is of the workers, not of autovacuum and checkpoints catching up with a
/// bulk load (a table that grew to this size over months has neither to do).
async fn settle(pool: &Pool) {
    for sql in ["VACUUM (ANALYZE) participants", "VACUUM (ANALYZE) contacts", "CHECKPOINT"] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, n: usize) -> Workers {
        Workers(
            (0..n)
                .map(|_| {
                    Command::new(env!("CARGO_BIN_EXE_waymark"))
                        .args(["worker", "--batch", "500", "--idle-ms", "20"])
                        .env("DATABASE_URL", url)
                        .env("RUST_LOG", "error")
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("waymark worker starts")
                })
                .collect(),
        )
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `workers` processes until `due` more participants completed than
/// before; returns (transitions, seconds).
async fn drain(url: &str, pool: &Pool, workers: usize, due: i64) -> (i64, f64) {
    let completed = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participants WHERE status = 'completed'").fetch_one(pool).await.unwrap()
    };
    let actions = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participant_actions").fetch_one(pool).await.unwrap() };
    let (done_before, actions_before) = (completed().await, actions().await);
    let started = Instant::now();
    let _workers = Workers::start(url, workers);
    loop {
        let done = completed().await - done_before;
        if done >= due {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "only {done} of {due} done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    (actions().await - actions_before, seconds)
}

fn graphile(url: &str, jobs: i64, processes: usize, concurrency: usize) -> f64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/graphile");
    if !std::path::Path::new(dir).join("node_modules/graphile-worker").exists() {
        let ok = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir).status().unwrap().success();
        assert!(ok, "npm ci in {dir}");
    }
    let out = Command::new("node")
        .args(["drain.mjs", url, &jobs.to_string(), &processes.to_string(), &concurrency.to_string()])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let seconds = text
        .lines()
        .find_map(|line| line.split("seconds=").nth(1))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("graphile-worker run failed: {text}"));
    jobs as f64 / seconds
}

#[tokio::main]
async fn main() {
    let args: Vec<i64> = std::env::args().skip(1).filter_map(|a| a.replace('_', "").parse().ok()).collect();
    let due = args.first().copied().unwrap_or(100_000);
    let background = args.get(1).copied().unwrap_or(10_000_000);
    let server = server_url();
    println!("PostgreSQL at {server}; {due} participants due, 4 transitions each (start, update contact, condition, exit)");

    let mut waymark = Vec::new();
    for workers in [1, 2, 4] {
        let url = fresh(&server, "wm_bench").await;
        let (pool, flow) = setup(&url).await;
        populate(&pool, flow, 1, due, "ready", 0).await;
        settle(&pool).await;
        let (transitions, seconds) = drain(&url, &pool, workers, due).await;
        let rate = transitions as f64 / seconds;
        println!("waymark  {workers} worker process(es): {transitions} transitions in {seconds:.2} s = {rate:.0} transitions/s");
        waymark.push(rate);
        pool.close().await;
    }
    // WAYMARK_BENCH_NO_ANCHOR=1 leaves graphile-worker out (a quick look
    // at Waymark alone); a background of 0 leaves out the large table.
    let anchor = std::env::var_os("WAYMARK_BENCH_NO_ANCHOR").is_none();
    let jobs = due.min(50_000);
    let gw_url = fresh(&server, "wm_bench_graphile").await;
    for (i, workers) in [1, 2, 4].into_iter().enumerate().filter(|_| anchor) {
        let one = graphile(&gw_url, jobs, workers, 1);
        let ten = graphile(&gw_url, jobs, workers, 10);
        println!(
            "graphile {workers} worker process(es): {jobs} no-op jobs: {one:.0} jobs/s (concurrency 1), {ten:.0} jobs/s (concurrency 10); \
             waymark / graphile = {:.2} / {:.2}",
            waymark[i] / one,
            waymark[i] / ten
        );
    }

    if background == 0 {
        return;
    }
    // The same due participants among many waiting ones.
    let url = fresh(&server, "wm_bench").await;
    let (pool, flow) = setup(&url).await;
    let far = 4_102_444_800_000; // 2100-01-01
    let started = Instant::now();
    let step = 1_000_000;
    let mut from = due + 1;
    while from <= due + background {
        let to = (from + step - 1).min(due + background);
        populate(&pool, flow, from, to, "waiting", far).await;
        from = to + 1;
    }
    populate(&pool, flow, 1, due, "ready", 0).await;
    settle(&pool).await;
    println!("loaded {background} waiting participants in {:.0} s", started.elapsed().as_secs_f64());
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM participants
         WHERE next_run_at <= 1 AND status IN ('ready', 'waiting', 'held') AND (lease_until IS NULL OR lease_until < 1)
         ORDER BY next_run_at LIMIT 500 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    println!("claim query plan with {} participants in the table:\n  {}", due + background, plan.join("\n  "));
    // With 1 and with 2 processes: each time `due` more come due.
    for (i, workers) in [1, 2].into_iter().enumerate() {
        if i > 0 {
            let from = due + background + 1 + (i as i64 - 1) * due;
            populate(&pool, flow, from, from + due - 1, "ready", 0).await;
            settle(&pool).await;
        }
        let (transitions, seconds) = drain(&url, &pool, workers, due).await;
        let rate = transitions as f64 / seconds;
        println!(
            "waymark  {workers} worker process(es), {} participants in the table: {transitions} transitions in {seconds:.2} s = {rate:.0} transitions/s \
             ({:.2} of the rate with {due} in the table)",
            due + background,
            rate / waymark[i]
        );
    }
}
