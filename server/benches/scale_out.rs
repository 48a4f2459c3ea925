//! Scale-out benchmark on PostgreSQL:
//! `cargo bench -p server --bench scale_out [-- participants [background [rounds]]]`.
//!
//! 1. Transitions per second with 1, 2 and 4 `waymark worker` processes
//!    sharing one database, `participants` (default 100,000) due at once
//!    through start → update contact → condition → exit.
//! 2. The anchor, in the same run and alternating with 1.: graphile-worker
//!    0.17 (npm, `benches/graphile`) draining no-op jobs with the same
//!    number of processes, concurrency 10 each, in its default mode (a job
//!    fetched and completed per statement) and batched (`localQueue` 500,
//!    `completeJobBatchDelay` 0).
//! 3. The same due participants with `background` (default 10,000,000)
//!    others waiting in the table, with 1 and with 2 processes, and the
//!    plan of the claim query: first as loaded (analyzed, not vacuumed),
//!    then after a VACUUM.
//!
//! Each configuration runs `rounds` times (default 1), alternating; with
//! more than one round the table shows the median and the spread.
//!
//! The server comes from `WAYMARK_BENCH_POSTGRES`, or `.ci/postgres`.
//! `WAYMARK_BENCH_NO_ANCHOR=1` skips 2., a background of 0 skips 3.;
//! `WAYMARK_BENCH_SQL=<file>` runs the file's statements on each fresh
//! database after the migrations (to measure a schema variant);
//! `WAYMARK_BENCH_BIN=<path>` runs that `waymark` binary as the workers
//! (the build's own by default).

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

/// A fresh database on the server, by name and this process's id: two
/// runs at once on one server (two people benchmarking) must not drop each
/// other's database mid-run, as one did.
async fn fresh(server: &str, name: &str) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("{name}_{}", std::process::id());
    forget(server, &name).await;
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// Drops a database this run made (`name` as `fresh` named it).
async fn forget(server: &str, name: &str) {
    use sqlx::{Connection, Executor};
    let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
}

async fn setup(url: &str) -> (Pool, i64) {
    let pool = store::connect(url).await.unwrap();
    // WAYMARK_BENCH_SQL names a file of statements (`;` between them) run
    // on every fresh database after the migrations: a schema variant, or
    // the previous one, measured with the same binary.
    if let Some(path) = std::env::var_os("WAYMARK_BENCH_SQL") {
        let script = std::fs::read_to_string(&path).expect("WAYMARK_BENCH_SQL names a readable file");
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement).execute(&pool).await.unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
    }
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
    add_contacts(pool, from, to).await;
    add_participants(pool, flow, from, to, status, due_ms).await;
}

/// The same for a large range, in steps of a million, each step's
/// participants written while the next step's contacts are (both cores).
async fn populate_large(pool: &Pool, flow: i64, from: i64, to: i64, status: &str, due_ms: i64) {
    let step = 1_000_000;
    let steps: Vec<(i64, i64)> = (from..=to).step_by(step as usize).map(|first| (first, (first + step - 1).min(to))).collect();
    add_contacts(pool, steps[0].0, steps[0].1).await;
    for (i, &(first, last)) in steps.iter().enumerate() {
        let next = async {
            if let Some(&(first, last)) = steps.get(i + 1) {
                add_contacts(pool, first, last).await;
            }
        };
        tokio::join!(add_participants(pool, flow, first, last, status, due_ms), next);
    }
}

async fn add_contacts(pool: &Pool, from: i64, to: i64) {
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
}

async fn add_participants(pool: &Pool, flow: i64, from: i64, to: i64, status: &str, due_ms: i64) {
    let at = jiff::Timestamp::now().to_string();
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

/// Analyzes (and with `vacuum`, vacuums) and checkpoints after loading, so
/// the measurement that follows is of the workers, not of statistics,
/// autovacuum and checkpoints catching up with a bulk load. Analyzing is
/// what autovacuum does on its own shortly after a load this size (past 10%
/// of the table changed), and the server checkpoints by itself (1 GB of WAL
/// or 5 minutes); a VACUUM of a table just filled is the one step a
/// default-configured server would leave for later, so the large table is
/// measured without it first.
async fn settle(pool: &Pool, vacuum: bool) {
    let tables = if vacuum { "VACUUM (ANALYZE) participants, contacts" } else { "ANALYZE participants, contacts" };
    for sql in [tables, "CHECKPOINT"] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, n: usize) -> Workers {
        Workers(
            (0..n)
                .map(|_| {
                    Command::new(std::env::var_os("WAYMARK_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_waymark").into()))
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

/// Runs `workers` processes until none of the `due` participants is due any
/// more (each goes start to exit in one pass); returns (transitions,
/// seconds). What is left is counted through the claim's own index, so the
/// polling costs what is left, not what is done (on 2 cores a count of the
/// completed every 100 ms took a share of the CPU growing with the table).
async fn drain(url: &str, pool: &Pool, workers: usize, due: i64) -> (i64, f64) {
    let now = jiff::Timestamp::now().as_millisecond();
    let left = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participants WHERE next_run_at <= $1 AND status IN ('ready', 'waiting', 'held')")
            .bind(now)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let actions = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participant_actions").fetch_one(pool).await.unwrap() };
    assert_eq!(left().await, due, "due before the workers start");
    let actions_before = actions().await;
    let started = Instant::now();
    let _workers = Workers::start(url, workers);
    loop {
        let left = left().await;
        if left == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "{left} of {due} still due");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let completed = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participants WHERE status = 'completed'").fetch_one(pool).await.unwrap();
    assert!(completed >= due, "{completed} completed, {due} were due");
    (actions().await - actions_before, seconds)
}

/// The plan of `Runtime::claim`'s statement as run (a batch of 500 due
/// now), rolled back: what it read and how long it took.
async fn explain_claim(pool: &Pool) -> Vec<String> {
    let now = jiff::Timestamp::now().as_millisecond();
    let claim = format!(
        "EXPLAIN (ANALYZE, BUFFERS) UPDATE participants SET lease_owner = 'explain', lease_until = {now}
         WHERE id = ANY(ARRAY(
             SELECT id FROM participants
             WHERE next_run_at <= {now} AND status IN ('ready', 'waiting', 'held')
               AND (lease_until IS NULL OR lease_until < {now})
             ORDER BY next_run_at LIMIT 500 FOR UPDATE SKIP LOCKED))"
    );
    let mut tx = pool.begin().await.unwrap();
    let plan = sqlx::query_scalar(&claim).fetch_all(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    plan
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Graphile {
    /// Its defaults: each job fetched, and completed, by a statement of its own.
    Default,
    /// Its batching (performance docs): `localQueue` 500, `completeJobBatchDelay` 0.
    Batched,
}

/// graphile-worker's jobs per second draining `jobs` no-op jobs with
/// `processes` processes, concurrency 10 each.
fn graphile(url: &str, jobs: i64, processes: usize, mode: Graphile) -> f64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/graphile");
    if !std::path::Path::new(dir).join("node_modules/graphile-worker").exists() {
        let ok = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir).status().unwrap().success();
        assert!(ok, "npm ci in {dir}");
    }
    let mode = match mode {
        Graphile::Default => "default",
        Graphile::Batched => "batched",
    };
    let out = Command::new("node")
        .args(["drain.mjs", url, &jobs.to_string(), &processes.to_string(), "10", mode])
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

/// Median and spread of one configuration's rounds.
struct Rates(Vec<f64>);

impl Rates {
    fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (min, max) = self.0.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        match self.0.len() {
            0 => write!(f, "-"),
            1 => write!(f, "{}", thousands(self.0[0])),
            _ => write!(f, "{} ({}–{})", thousands(self.median()), thousands(min), thousands(max)),
        }
    }
}

fn thousands(rate: f64) -> String {
    let digits = format!("{:.0}", rate);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Waymark's transitions per second with `workers` processes, `due`
/// participants due in a fresh database.
async fn small_table(server: &str, due: i64, workers: usize) -> f64 {
    let url = fresh(server, "wm_bench").await;
    let (pool, flow) = setup(&url).await;
    populate(&pool, flow, 1, due, "ready", 0).await;
    settle(&pool, true).await;
    let (transitions, seconds) = drain(&url, &pool, workers, due).await;
    pool.close().await;
    let rate = transitions as f64 / seconds;
    println!("waymark  {workers} worker process(es): {transitions} transitions in {seconds:.2} s = {rate:.0} transitions/s");
    rate
}

#[tokio::main]
async fn main() {
    let args: Vec<i64> = std::env::args().skip(1).filter_map(|a| a.replace('_', "").parse().ok()).collect();
    let due = args.first().copied().unwrap_or(100_000);
    let background = args.get(1).copied().unwrap_or(10_000_000);
    let rounds = args.get(2).copied().unwrap_or(1).max(1);
    let server = server_url();
    println!("PostgreSQL at {server}; {due} participants due, 4 transitions each (start, update contact, condition, exit); {rounds} round(s)");

    // WAYMARK_BENCH_NO_ANCHOR=1 leaves graphile-worker out (a quick look
    // at Waymark alone); a background of 0 leaves out the large table.
    let anchor = std::env::var_os("WAYMARK_BENCH_NO_ANCHOR").is_none();
    // graphile's default mode manages about a thousand jobs a second: its
    // rate over 20,000 jobs is the same as over 100,000, in a fifth of the time.
    let default_jobs = due.min(20_000);
    let processes = [1usize, 2, 4];
    let mut waymark: Vec<Rates> = processes.iter().map(|_| Rates(Vec::new())).collect();
    let mut default: Vec<Rates> = processes.iter().map(|_| Rates(Vec::new())).collect();
    let mut batched: Vec<Rates> = processes.iter().map(|_| Rates(Vec::new())).collect();
    for _ in 0..rounds {
        for (i, &n) in processes.iter().enumerate() {
            waymark[i].0.push(small_table(&server, due, n).await);
            if anchor {
                // A fresh database each time, as for Waymark: graphile deletes
                // finished jobs, and without autovacuum (off on CI servers)
                // one run's dead rows slowed the next (489, 386, 264 jobs/s
                // in a row with one database).
                let rate = graphile(&fresh(&server, "wm_bench_graphile").await, default_jobs, n, Graphile::Default);
                println!("graphile {n} worker process(es), default: {default_jobs} no-op jobs at {rate:.0} jobs/s");
                default[i].0.push(rate);
                let rate = graphile(&fresh(&server, "wm_bench_graphile").await, due, n, Graphile::Batched);
                println!("graphile {n} worker process(es), batched: {due} no-op jobs at {rate:.0} jobs/s");
                batched[i].0.push(rate);
            }
        }
    }
    println!();
    println!("| processes | Waymark transitions/s | graphile default jobs/s | graphile batched jobs/s | Waymark / default | Waymark / batched |");
    println!("|---|---|---|---|---|---|");
    for (i, n) in processes.iter().enumerate() {
        let ratio = |anchor: &Rates| if anchor.0.is_empty() { "-".to_owned() } else { format!("{:.2}", waymark[i].median() / anchor.median()) };
        println!("| {n} | {} | {} | {} | {} | {} |", waymark[i], default[i], batched[i], ratio(&default[i]), ratio(&batched[i]));
    }
    println!();

    let pid = std::process::id();
    for name in ["wm_bench", "wm_bench_graphile"] {
        forget(&server, &format!("{name}_{pid}")).await;
    }
    if background == 0 {
        return;
    }
    // The same due participants among many waiting ones.
    let url = fresh(&server, "wm_bench").await;
    let (pool, flow) = setup(&url).await;
    let far = 4_102_444_800_000; // 2100-01-01
    let started = Instant::now();
    populate_large(&pool, flow, due + 1, due + background, "waiting", far).await;
    settle(&pool, false).await;
    println!("loaded {background} waiting participants in {:.0} s", started.elapsed().as_secs_f64());
    let mut next = due + background + 1;
    for vacuumed in [false, true] {
        let state = if vacuumed { "vacuumed" } else { "analyzed, not vacuumed" };
        let mut large: Vec<Rates> = processes[..2].iter().map(|_| Rates(Vec::new())).collect();
        for round in 0..rounds {
            for (i, &n) in processes[..2].iter().enumerate() {
                // `due` more come due each time, among the same waiting ones.
                populate(&pool, flow, next, next + due - 1, "ready", 0).await;
                next += due;
                settle(&pool, vacuumed).await;
                if round == 0 && i == 0 {
                    let plan = explain_claim(&pool).await;
                    println!("claim query plan, {} in the table, {state}:\n  {}", due + background, plan.join("\n  "));
                }
                let (transitions, seconds) = drain(&url, &pool, n, due).await;
                let rate = transitions as f64 / seconds;
                println!(
                    "waymark  {n} worker process(es), {} participants in the table ({state}): {transitions} transitions in {seconds:.2} s = {rate:.0} transitions/s",
                    next - 1,
                );
                large[i].0.push(rate);
            }
        }
        for (i, n) in processes[..2].iter().enumerate() {
            println!(
                "{n} process(es), {background} waiting, {state}: {} transitions/s = {:.2} of the rate with {due} in the table",
                large[i],
                large[i].median() / waymark[i].median()
            );
        }
    }
    pool.close().await;
    forget(&server, &format!("wm_bench_{}", std::process::id())).await;
}
