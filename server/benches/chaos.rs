//! Chaos harness: a real workload across one `waymark serve` and one or two
//! `waymark worker` processes, which are killed (SIGKILL), paused (SIGSTOP,
//! then SIGCONT past the lease) or stopped (SIGTERM) at seeded random
//! moments and restarted, round after round; then, once everything is
//! quiet, the invariants are checked and printed. Exits 1 when one fails.
//!
//! ```sh
//! make chaos SEED=7 ROUNDS=200 DB=both
//! cargo bench -p server --bench chaos -- --seed 7 --rounds 200 --db sqlite|postgres|both [--help for the rest]
//! ```
//!
//! A bench target (`harness = false`): `cargo test` neither builds nor runs it.
//!
//! The workload, all through the real processes:
//! - a published flow: update contact (a counter) → wait 2 s → condition
//!   (tier gold?) → yes: email (to the local SMTP sink) → wait 1 s →
//!   webhook (to a local HTTP recorder) → exit; no: webhook → exit;
//! - `--contacts` (30,000) contacts enrolled through `POST /flows/{id}/enroll`,
//!   an equal share each round;
//! - CSV imports of `--import-rows` (200,000) rows (1 in 1,000 refused)
//!   through `POST /contacts/imports`, one after another with a gap;
//! - bulk runs (`manual_pass` on the flow's started participants) through
//!   `POST /participants/bulk`, one after another with a gap, so that runs
//!   and imports overlap.
//!
//! A round: the round's share of contacts is queued for enrollment; after
//! a seeded pause (0.2–1.5 s) one seeded process gets one seeded fault:
//! SIGKILL (then restarted after 0.1–0.6 s), SIGSTOP for the lease plus
//! 0.3–1.5 s then SIGCONT, or SIGTERM (its exit code and time are checked,
//! then it is restarted).
//!
//! Then, once nothing is pending, every process is stopped with SIGTERM and
//! the run checks (a failure exits 1): no participant lost (every contact
//! enrolled once, every participant completed), no step reached twice by
//! one participant and every timeline the path of its branch, every
//! contact updated once, every outbox effect delivered at least once (the
//! SMTP sink's Message-ID and the webhook's Idempotency-Key name its key;
//! duplicates are counted, at least once allows them), every import ended
//! with exactly the rows it reports committed (its tagged contacts, none
//! past its count, its refused rows listed), every bulk run done exactly
//! once (done = total, and each participant's pass count 1 + the runs that
//! changed it), every SIGTERM answered by exit 0 within the lease. It also
//! prints how long a restarted process took to commit its first transition
//! and how long a killed process's claims took to be taken over (p50/p99).
//!
//! The seed fixes the workload and every fault (which process, which
//! signal, when, for how long); the processes' own interleaving is not
//! fixed, so a seed replays the same faults at the same moments.
//!
//! PostgreSQL: a fresh database `waymark_chaos_<seed>` on `--postgres`
//! (default the local server; `WAYMARK_CHAOS_POSTGRES`), dropped after.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use app::core::FlowDocument;
use server::db::Pool;
use server::store::{self, Store};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{HttpServer, SmtpSink};

#[derive(Parser, Debug, Clone)]
#[command(name = "chaos", about = "Kills, pauses and stops Waymark processes under a real workload, then checks that nothing was lost or doubled")]
struct Opts {
    /// Fixes the workload and every fault.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults, one per round.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// sqlite, postgres or both (one after the other).
    #[arg(long, default_value = "both", value_parser = ["sqlite", "postgres", "both"])]
    db: String,
    /// `waymark worker` processes beside the one `serve`.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Every process's lease (`--lease-secs`); pauses outlast it.
    #[arg(long, default_value_t = 3)]
    lease_secs: u64,
    /// Contacts enrolled in all (an equal share each round).
    #[arg(long, default_value_t = 30_000)]
    contacts: usize,
    /// Rows of each CSV import.
    #[arg(long, default_value_t = 200_000)]
    import_rows: usize,
    /// Seconds from the end of one import to the start of the next.
    #[arg(long, default_value_t = 20)]
    import_gap_secs: u64,
    /// Seconds from the end of one bulk run to the start of the next.
    #[arg(long, default_value_t = 15)]
    bulk_gap_secs: u64,
    /// How long, after the last round, everything may take to finish.
    #[arg(long, default_value_t = 600)]
    settle_secs: u64,
    /// The PostgreSQL server the run's database is made on.
    #[arg(long, env = "WAYMARK_CHAOS_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// Keep the run's folder (SQLite file, process logs) and database.
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// SplitMix64: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let engines: Vec<&str> = match opts.db.as_str() {
        "both" => vec!["sqlite", "postgres"],
        one => vec![one],
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut passed = true;
    for engine in engines {
        let report = tokio.block_on(run(&opts, engine));
        match report {
            Ok(report) => {
                report.print();
                passed &= report.failures.is_empty();
            }
            Err(err) => {
                println!("chaos {engine} seed={}: the run could not be carried out: {err:#}", opts.seed);
                passed = false;
            }
        }
    }
    if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

// ---------------------------------------------------------------- processes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Serve,
    Worker(usize),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Serve => write!(f, "serve"),
            Role::Worker(i) => write!(f, "worker-{i}"),
        }
    }
}

/// One running `waymark` process.
struct Proc {
    role: Role,
    child: Child,
    /// When it was started again after a kill or a stop (None: the first start).
    restarted: Option<Instant>,
    /// When it logged its first committed transitions.
    first: Arc<Mutex<Option<Instant>>>,
}

struct Cluster {
    url: String,
    port: u16,
    lease: Duration,
    dir: std::path::PathBuf,
    procs: Vec<Proc>,
    /// Restart → the restarted process's first committed transition.
    recoveries: Vec<Duration>,
    /// Restarts whose process committed nothing before its next fault.
    unmeasured: usize,
    /// SIGTERM → exit: how long, and whether it exited 0.
    stops: Vec<(Role, Duration, Option<i32>)>,
}

impl Cluster {
    fn spawn(&self, role: Role) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_waymark"));
        let lease = self.lease.as_secs().to_string();
        match role {
            Role::Serve => command.args(["serve", "--addr", &format!("127.0.0.1:{}", self.port), "--no-demo", "--lease-secs", &lease]),
            Role::Worker(_) => command.args(["worker", "--lease-secs", &lease, "--batch", "200", "--idle-ms", "100"]),
        };
        let mut child = command
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn,server::runtime=info,waymark=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("waymark starts");
        let first: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{role}.log"))).unwrap();
        let seen = first.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("first transitions committed") {
                    seen.lock().unwrap().get_or_insert_with(Instant::now);
                }
                let _ = writeln!(log, "{line}");
            }
        });
        Proc { role, child, restarted: None, first }
    }

    fn start(url: &str, port: u16, lease: Duration, dir: &std::path::Path, workers: usize) -> Cluster {
        let mut cluster = Cluster {
            url: url.to_owned(),
            port,
            lease,
            dir: dir.to_owned(),
            procs: Vec::new(),
            recoveries: Vec::new(),
            unmeasured: 0,
            stops: Vec::new(),
        };
        let roles: Vec<Role> = std::iter::once(Role::Serve).chain((0..workers).map(Role::Worker)).collect();
        for role in roles {
            let proc = cluster.spawn(role);
            cluster.procs.push(proc);
        }
        cluster
    }

    /// Books the restart → first transition time of process `i` (if it was restarted).
    fn measure(&mut self, i: usize) {
        let proc = &self.procs[i];
        if let Some(restarted) = proc.restarted {
            match *proc.first.lock().unwrap() {
                Some(first) => self.recoveries.push(first.saturating_duration_since(restarted)),
                None => self.unmeasured += 1,
            }
        }
    }

    fn signal(&self, i: usize, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.procs[i].child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    fn restart(&mut self, i: usize) {
        let role = self.procs[i].role;
        let mut proc = self.spawn(role);
        proc.restarted = Some(Instant::now());
        self.procs[i] = proc;
    }

    fn kill(&mut self, i: usize) {
        self.measure(i);
        let _ = self.procs[i].child.kill();
        let _ = self.procs[i].child.wait();
    }

    /// SIGTERM, and waits for the exit (SIGKILL after the lease and 5 s more).
    async fn terminate(&mut self, i: usize) -> (Duration, Option<i32>) {
        self.measure(i);
        self.signal(i, "TERM");
        let sent = Instant::now();
        loop {
            if let Some(status) = self.procs[i].child.try_wait().unwrap() {
                let took = sent.elapsed();
                self.stops.push((self.procs[i].role, took, status.code()));
                return (took, status.code());
            }
            if sent.elapsed() > self.lease + Duration::from_secs(5) {
                self.kill(i);
                self.stops.push((self.procs[i].role, sent.elapsed(), None));
                return (sent.elapsed(), None);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for proc in &mut self.procs {
            let _ = Command::new("kill").args(["-CONT", &proc.child.id().to_string()]).stderr(Stdio::null()).status();
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

// ---------------------------------------------------------------- workload

/// What the background parts of the workload share with the rounds.
struct Workload {
    api: String,
    token: String,
    flow: i64,
    http: reqwest::Client,
    pool: Pool,
    /// Contacts waiting to be enrolled, a request each.
    queue: Mutex<VecDeque<Vec<i64>>>,
    enrolled: AtomicUsize,
    /// Requests tried again (refused connection, timeout, 5xx).
    retries: AtomicUsize,
    over: AtomicBool,
    imports: Mutex<Vec<ImportCheck>>,
    import_rows: usize,
    import_gap: Duration,
    bulk_gap: Duration,
    bulk_runs: AtomicUsize,
}

/// One import as it ended, checked against what it reported.
#[derive(Clone, Debug)]
struct ImportCheck {
    id: i64,
    status: String,
    rows_done: i64,
    created: i64,
    updated: i64,
    failed: i64,
    /// Contacts carrying this import's tag, and the highest row among them.
    tagged: i64,
    max_row: i64,
    listed_errors: i64,
    problems: Vec<String>,
}

impl Workload {
    async fn post(&self, path: &str, body: reqwest::Body, content_type: &str) -> Result<(u16, Value), String> {
        let reply = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let status = reply.status().as_u16();
        let value = reply.bytes().await.ok().and_then(|body| serde_json::from_slice(&body).ok()).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Enrolls the queued contacts, one request per share, until the rounds
    /// are over and the queue is empty. A failed request is tried again:
    /// the flow never lets a contact in twice, so a retry is harmless.
    async fn enroller(self: Arc<Self>) {
        loop {
            let next = self.queue.lock().unwrap().front().cloned();
            let Some(ids) = next else {
                if self.over.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let body = json!({"contact_ids": ids}).to_string();
            match self.post(&format!("/flows/{}/enroll", self.flow), body.into(), "application/json").await {
                Ok((200 | 201, _)) => {
                    self.queue.lock().unwrap().pop_front();
                    self.enrolled.fetch_add(ids.len(), Ordering::SeqCst);
                }
                Ok((status, body)) if status < 500 && status != 429 => panic!("enrolling was refused: {status} {body}"),
                _ => {
                    self.retries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Imports one CSV after another until the rounds are over, each
    /// checked once it has ended.
    async fn importer(self: Arc<Self>) {
        let mut k = 0;
        while !self.over.load(Ordering::SeqCst) {
            k += 1;
            let Some(job) = self.start_import(k).await else { return };
            loop {
                let status: String = scalar(&self.pool, &format!("SELECT status FROM contact_imports WHERE id = {job}")).await;
                if status != "running" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let check = check_import(&self.pool, job, &tag(k), self.import_rows).await;
            self.imports.lock().unwrap().push(check);
            let until = Instant::now() + self.import_gap;
            while Instant::now() < until && !self.over.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Uploads import `k`; its job, or None when the rounds ended first.
    async fn start_import(&self, k: usize) -> Option<i64> {
        let csv = import_csv(&tag(k), self.import_rows);
        let file_name = format!("chaos-{}.csv", tag(k));
        let boundary = "chaos-boundary-7d1f2a";
        let mut body = Vec::with_capacity(csv.len() + 512);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{{\"dedupe\": \"update\"}}\r\n").as_bytes(),
        );
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(csv.as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        loop {
            match self.post("/contacts/imports", reqwest::Body::from(body.clone()), &format!("multipart/form-data; boundary={boundary}")).await {
                Ok((202, view)) => return view["id"].as_i64(),
                Ok((status, body)) if status < 500 && status != 429 => panic!("the import was refused: {status} {body}"),
                _ => self.retries.fetch_add(1, Ordering::SeqCst),
            };
            // The reply was lost: the job may have been made all the same.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let made: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM contact_imports WHERE file_name = $1")
                .bind(&file_name)
                .fetch_one(&self.pool)
                .await
                .unwrap();
            if made.is_some() {
                return made;
            }
            if self.over.load(Ordering::SeqCst) {
                return None;
            }
        }
    }

    /// Starts one bulk run after another until the rounds are over.
    async fn bulker(self: Arc<Self>) {
        let mut k = 0;
        let mut wait = self.bulk_gap / 2;
        loop {
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if self.over.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            wait = self.bulk_gap;
            k += 1;
            let disposition = format!("chaos-{k}");
            // Started participants only (a participant not started yet
            // takes pass count 1 when it starts, whatever it had).
            let body = json!({"action": "manual_pass", "criteria": {"flow_ids": [self.flow], "statuses": ["waiting", "completed"]},
                              "params": {"disposition": disposition}})
            .to_string();
            let run = loop {
                match self.post("/participants/bulk", body.clone().into(), "application/json").await {
                    Ok((202, view)) => break view["id"].as_i64(),
                    Ok((422, view)) if view["code"] == "nothing_matched" => break None,
                    Ok((status, body)) if status < 500 && status != 429 => panic!("the bulk run was refused: {status} {body}"),
                    _ => {
                        self.retries.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let made: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM bulk_runs WHERE disposition = $1")
                    .bind(&disposition)
                    .fetch_one(&self.pool)
                    .await
                    .unwrap();
                if made.is_some() || self.over.load(Ordering::SeqCst) {
                    break made;
                }
            };
            let Some(run) = run else { continue };
            self.bulk_runs.fetch_add(1, Ordering::SeqCst);
            loop {
                let status: String = scalar(&self.pool, &format!("SELECT status FROM bulk_runs WHERE id = {run}")).await;
                if status != "running" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

fn tag(k: usize) -> String {
    format!("b{k}")
}

/// `rows` contacts (the same addresses in every import, so later imports
/// update them), tagged with the import and their row; 1 in 1,000 refused.
fn import_csv(tag: &str, rows: usize) -> String {
    let mut csv = String::with_capacity(rows * 48);
    csv.push_str("email,first_name,batch,row\n");
    for row in 1..=rows {
        if row % 1_000 == 500 {
            csv.push_str(&format!("not-an-address-{row},Bad,{tag},{row}\n"));
        } else {
            csv.push_str(&format!("i{row}@imp.chaos.test,Imp {row},{tag},{row}\n"));
        }
    }
    csv
}

async fn scalar<T>(pool: &Pool, sql: &str) -> T
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// An ended import against its own report: the rows it counts as done
/// are exactly the rows written (its tag), and none past them.
async fn check_import(pool: &Pool, id: i64, tag: &str, rows: usize) -> ImportCheck {
    let (status, rows_done, created, updated, skipped, failed): (String, i64, i64, i64, i64, i64) =
        sqlx::query_as("SELECT status, rows_done, created, updated, skipped, failed FROM contact_imports WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    let (tagged, max_row): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(max(CAST(json_extract(fields, '$.row') AS BIGINT)), 0) FROM contacts WHERE json_extract(fields, '$.batch') = $1",
    )
    .bind(tag)
    .fetch_one(pool)
    .await
    .unwrap();
    let listed_errors: i64 = scalar(pool, &format!("SELECT count(*) FROM import_errors WHERE import_id = {id}")).await;
    let mut problems = Vec::new();
    if status != "done" && status != "failed" {
        problems.push(format!("status {status}"));
    }
    if created + updated + skipped + failed != rows_done {
        problems.push(format!("{created} created + {updated} updated + {skipped} skipped + {failed} refused ≠ {rows_done} rows done"));
    }
    if tagged != created + updated {
        problems.push(format!("{tagged} contacts written ≠ {} reported", created + updated));
    }
    if max_row > rows_done {
        problems.push(format!("row {max_row} written past the {rows_done} rows reported"));
    }
    if listed_errors != failed {
        problems.push(format!("{listed_errors} refused rows listed ≠ {failed} reported"));
    }
    if status == "done" && (rows_done != rows as i64 || failed != (rows / 1_000 + usize::from(rows % 1_000 >= 500)) as i64) {
        problems.push(format!("done with {rows_done} rows ({failed} refused) of {rows}"));
    }
    ImportCheck { id, status, rows_done, created, updated, failed, tagged, max_row, listed_errors, problems }
}

// ---------------------------------------------------------------- the run

/// A PostgreSQL database made for the run, dropped with this guard.
struct PgDatabase {
    server: String,
    name: String,
    keep: bool,
}

impl PgDatabase {
    async fn create(server: &str, name: &str, keep: bool) -> anyhow::Result<(PgDatabase, String)> {
        use sqlx::{Connection, Executor};
        let mut admin = sqlx::PgConnection::connect(server).await?;
        admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
        let mut url = url::Url::parse(server)?;
        url.set_path(name);
        Ok((PgDatabase { server: server.to_owned(), name: name.to_owned(), keep }, url.to_string()))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.keep {
            println!("kept database {}", self.name);
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                use sqlx::{Connection, Executor};
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                }
            });
        })
        .join();
    }
}

/// The figures a run prints; `failures` names the invariants that failed.
struct Report {
    engine: String,
    seed: u64,
    rounds: usize,
    faults: HashMap<&'static str, usize>,
    seconds: f64,
    settle_seconds: f64,
    total_seconds: f64,
    lines: Vec<(String, String)>,
    failures: Vec<String>,
    dir: Option<std::path::PathBuf>,
}

impl Report {
    fn line(&mut self, name: &str, value: String, ok: bool) {
        self.lines.push((name.to_owned(), value));
        if !ok {
            self.failures.push(name.to_owned());
        }
    }

    fn print(&self) {
        let faults = ["kill", "pause", "term"].iter().map(|f| format!("{} {f}", self.faults.get(f).copied().unwrap_or(0))).collect::<Vec<_>>().join(", ");
        println!();
        println!(
            "chaos {} seed={} rounds={} ({faults}): rounds {:.0} s, quiet {:.0} s after them, {:.0} s in all",
            self.engine, self.seed, self.rounds, self.seconds, self.settle_seconds, self.total_seconds
        );
        for (name, value) in &self.lines {
            let dots = ".".repeat(48usize.saturating_sub(name.chars().count()));
            println!("  {name} {dots} {value}");
        }
        if let Some(dir) = &self.dir {
            println!("  logs: {}", dir.display());
        }
        if self.failures.is_empty() {
            println!("  RESULT: PASS");
        } else {
            println!("  RESULT: FAIL ({})", self.failures.join("; "));
        }
    }
}

/// After a SIGKILL: whether the killed process (worker name `owner`, a
/// LIKE pattern) held claims on participants, and if so, how long until
/// none is left in its name (another process claimed each once the lease
/// ran out), in `taken`.
async fn watch_claims(pool: Pool, owner: String, killed: Instant, taken: Arc<Mutex<Vec<Duration>>>) -> bool {
    let held = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participants WHERE lease_owner LIKE $1").bind(&owner).fetch_one(&pool).await.unwrap_or(1)
    };
    if held().await == 0 {
        return false;
    }
    while killed.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if held().await == 0 {
            taken.lock().unwrap().push(killed.elapsed());
            break;
        }
    }
    true
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(opts: &Opts, engine: &str) -> anyhow::Result<Report> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix(&format!("waymark-chaos-{engine}-{}-", opts.seed)).tempdir()?;
    let (_pg, url) = match engine {
        "sqlite" => (None, format!("sqlite://{}/chaos.db", dir.path().display())),
        _ => {
            let (db, url) = PgDatabase::create(&opts.postgres, &format!("waymark_chaos_{}", opts.seed), opts.keep).await?;
            (Some(db), url)
        }
    };
    let mut rng = Rng(opts.seed);
    let lease = Duration::from_secs(opts.lease_secs.max(1));
    println!(
        "chaos {engine} seed={} rounds={}: serve + {} worker(s), lease {} s, {} contacts, imports of {} rows; logs in {}",
        opts.seed,
        opts.rounds,
        opts.workers,
        lease.as_secs(),
        opts.contacts,
        opts.import_rows,
        dir.path().display()
    );

    // The database, the local servers, the flow, the contacts.
    let pool = store::connect(&url).await?;
    let smtp = SmtpSink::start(false);
    let hooks = HttpServer::start("127.0.0.1").await;
    server::channels::settings::update(
        &pool,
        json!({"smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "Waymark <news@waymark.test>", "timeout_secs": 10},
               "http": {"allowlist": ["127.0.0.1"]}})
        .as_object()
        .unwrap()
        .clone(),
    )
    .await?;
    let (_, token) = server::auth::accounts::create_token(&pool, "chaos", "write", "chaos").await?;
    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Chaos", "settings": {"reentry": "never"},
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "touch", "kind": "update_contact", "settings": {"changes": [{"field": "touches", "op": "increment", "value": 1}]}},
                  {"id": "pause", "kind": "wait", "settings": {"mode": "duration", "amount": 2, "unit": "seconds"}},
                  {"id": "tier", "kind": "condition", "settings": {"criteria": [{"field": "tier", "op": "equals", "value": "gold"}]}},
                  {"id": "mail", "kind": "send_email", "settings": {"subject": "Hello {{ email }}", "body": "<p>Gold news for {{ email }}.</p>"}},
                  {"id": "breath", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "seconds"}},
                  {"id": "hook", "kind": "webhook", "settings": {"url": hooks.url("/hook"), "body": {"email": "{{ email }}"}}},
                  {"id": "done", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "touch"}, {"from": "touch", "port": "next", "to": "pause"},
                  {"from": "pause", "port": "next", "to": "tier"}, {"from": "tier", "port": "yes", "to": "mail"},
                  {"from": "tier", "port": "no", "to": "hook"}, {"from": "mail", "port": "next", "to": "breath"},
                  {"from": "breath", "port": "next", "to": "hook"}, {"from": "hook", "port": "next", "to": "done"}]}))
    .map_err(|err| anyhow::anyhow!("the flow: {err}"))?;
    let store = Store::new(pool.clone());
    let flow = store.create("Chaos", Some(doc)).await?.id;
    store.publish(flow, None, "chaos").await?;
    let at = jiff::Timestamp::now();
    let mut contacts: Vec<i64> = sqlx::query_scalar(&format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {})
         INSERT INTO contacts (email, fields, created_at, updated_at)
         SELECT 'c' || n || '@chaos.test', CASE WHEN n % 3 = 0 THEN '{{\"tier\": \"gold\"}}' ELSE '{{\"tier\": \"silver\"}}' END, '{at}', '{at}' FROM g
         RETURNING id",
        opts.contacts
    ))
    .fetch_all(&pool)
    .await?;
    contacts.sort_unstable();

    // The processes.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut cluster = Cluster::start(&url, port, lease, dir.path(), opts.workers);
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "serve did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let workload = Arc::new(Workload {
        api: format!("http://127.0.0.1:{port}/api/v1"),
        token,
        flow,
        http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
        pool: pool.clone(),
        queue: Mutex::new(VecDeque::new()),
        enrolled: AtomicUsize::new(0),
        retries: AtomicUsize::new(0),
        over: AtomicBool::new(false),
        imports: Mutex::new(Vec::new()),
        import_rows: opts.import_rows,
        import_gap: Duration::from_secs(opts.import_gap_secs),
        bulk_gap: Duration::from_secs(opts.bulk_gap_secs),
        bulk_runs: AtomicUsize::new(0),
    });
    let tasks = [
        tokio::spawn(workload.clone().enroller()),
        tokio::spawn(workload.clone().importer()),
        tokio::spawn(workload.clone().bulker()),
    ];

    // The rounds.
    let mut log = std::fs::File::create(dir.path().join("rounds.log"))?;
    let share = contacts.len().div_ceil(opts.rounds.max(1)).max(1);
    let mut shares = contacts.chunks(share);
    let mut faults: HashMap<&'static str, usize> = HashMap::new();
    // SIGKILL → the participants the killed process had claimed are all
    // claimed again (by another process, once the lease ran out).
    let takeovers: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut watchers = Vec::new();
    let rounds_started = Instant::now();
    for round in 1..=opts.rounds {
        if let Some(ids) = shares.next() {
            workload.queue.lock().unwrap().push_back(ids.to_vec());
        }
        let wait = rng.millis(200, 1_500);
        tokio::time::sleep(wait).await;
        let i = rng.below(cluster.procs.len() as u64) as usize;
        let role = cluster.procs[i].role;
        let roll = rng.below(100);
        let line = if roll < 40 {
            *faults.entry("kill").or_default() += 1;
            let owner = format!("{}-%-{}-%", if role == Role::Serve { "serve" } else { "worker" }, cluster.procs[i].child.id());
            cluster.kill(i);
            watchers.push(tokio::spawn(watch_claims(pool.clone(), owner, Instant::now(), takeovers.clone())));
            let down = rng.millis(100, 600);
            tokio::time::sleep(down).await;
            cluster.restart(i);
            format!("SIGKILL {role}, restarted {:.2} s later", down.as_secs_f64())
        } else if roll < 80 {
            *faults.entry("pause").or_default() += 1;
            cluster.signal(i, "STOP");
            let paused = lease + rng.millis(300, 1_500);
            tokio::time::sleep(paused).await;
            cluster.signal(i, "CONT");
            format!("SIGSTOP {role}, SIGCONT {:.2} s later", paused.as_secs_f64())
        } else {
            *faults.entry("term").or_default() += 1;
            let (took, code) = cluster.terminate(i).await;
            cluster.restart(i);
            format!("SIGTERM {role}: exit {code:?} after {:.2} s; restarted", took.as_secs_f64())
        };
        writeln!(log, "round {round} at {:.2} s: after {:.2} s, {line}", rounds_started.elapsed().as_secs_f64(), wait.as_secs_f64())?;
        if round % 10 == 0 || round == opts.rounds {
            let completed: i64 = scalar(&pool, "SELECT count(*) FROM participants WHERE status = 'completed'").await;
            println!(
                "  round {round}/{} ({:.0} s): {} enrolled, {completed} completed, {} import(s) ended, {} bulk run(s)",
                opts.rounds,
                rounds_started.elapsed().as_secs_f64(),
                workload.enrolled.load(Ordering::SeqCst),
                workload.imports.lock().unwrap().len(),
                workload.bulk_runs.load(Ordering::SeqCst)
            );
        }
    }
    for ids in shares {
        workload.queue.lock().unwrap().push_back(ids.to_vec());
    }
    workload.over.store(true, Ordering::SeqCst);
    let rounds_took = rounds_started.elapsed();

    // Quiet: everything enrolled, imports and runs ended, nothing due.
    let settle = Instant::now();
    let deadline = settle + Duration::from_secs(opts.settle_secs);
    let mut report = Report {
        engine: engine.to_owned(),
        seed: opts.seed,
        rounds: opts.rounds,
        faults,
        seconds: rounds_took.as_secs_f64(),
        settle_seconds: 0.0,
        total_seconds: 0.0,
        lines: Vec::new(),
        failures: Vec::new(),
        dir: None,
    };
    let mut stuck = None;
    for task in tasks {
        match tokio::time::timeout_at(deadline.into(), task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => stuck = Some(format!("a workload task failed: {err}")),
            Err(_) => stuck = Some("the enrollments, imports or bulk runs did not end".into()),
        }
    }
    let pending_sql = "SELECT (SELECT count(*) FROM participants WHERE status IN ('ready', 'waiting', 'held'))
                            + (SELECT count(*) FROM outbox WHERE status = 'queued')
                            + (SELECT count(*) FROM contact_imports WHERE status = 'running')
                            + (SELECT count(*) FROM bulk_runs WHERE status = 'running')";
    loop {
        let pending: i64 = scalar(&pool, pending_sql).await;
        if pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            let (p, o, i, b): (i64, i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM participants WHERE status IN ('ready', 'waiting', 'held')),
                        (SELECT count(*) FROM outbox WHERE status = 'queued'),
                        (SELECT count(*) FROM contact_imports WHERE status = 'running'),
                        (SELECT count(*) FROM bulk_runs WHERE status = 'running')",
            )
            .fetch_one(&pool)
            .await?;
            stuck = Some(format!("{p} participants, {o} effects, {i} imports, {b} bulk runs still pending"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report.settle_seconds = settle.elapsed().as_secs_f64();
    report.line("everything finished (quiescence)", stuck.clone().unwrap_or_else(|| "yes".into()), stuck.is_none());

    // Graceful stops of every process at the end.
    for i in 0..cluster.procs.len() {
        cluster.terminate(i).await;
    }

    // Participants: lost (never enrolled, or not finished), enrolled twice.
    let requested = contacts.len() as i64;
    let distinct: i64 = scalar(&pool, &format!("SELECT count(DISTINCT contact_id) FROM participants WHERE flow_id = {flow}")).await;
    let participants: i64 = scalar(&pool, &format!("SELECT count(*) FROM participants WHERE flow_id = {flow}")).await;
    let unfinished: i64 = scalar(&pool, &format!("SELECT count(*) FROM participants WHERE flow_id = {flow} AND status <> 'completed'")).await;
    let lost = (requested - distinct) + unfinished;
    report.line(
        "participants lost",
        format!("{lost} (of {requested} enrolled: {} never enrolled, {unfinished} not completed)", requested - distinct),
        lost == 0,
    );
    report.line("participants enrolled twice", (participants - distinct).to_string(), participants == distinct);

    // Transitions: a step reached twice by one participant (the flow has no
    // loop), timelines not the path their tier takes, counters bumped twice.
    let twice: i64 = scalar(
        &pool,
        "SELECT count(*) FROM (SELECT participant_id, step FROM participant_actions GROUP BY participant_id, step HAVING count(*) > 1) AS d",
    )
    .await;
    report.line("transitions recorded twice for one visit", twice.to_string(), twice == 0);
    let off_path: i64 = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM participants p JOIN contacts c ON c.id = p.contact_id
             LEFT JOIN (SELECT participant_id, count(*) AS n, sum(CASE WHEN outcome = 'completed' THEN 1 ELSE 0 END) AS ok
                        FROM participant_actions GROUP BY participant_id) a ON a.participant_id = p.id
             WHERE p.flow_id = {flow}
               AND (coalesce(a.n, 0) <> CASE WHEN json_extract(c.fields, '$.tier') = 'gold' THEN 8 ELSE 6 END OR a.ok <> a.n)"
        ),
    )
    .await;
    report.line("timelines not the path of their branch", off_path.to_string(), off_path == 0);
    let bumped: i64 = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM participants p JOIN contacts c ON c.id = p.contact_id
             WHERE p.flow_id = {flow} AND coalesce(CAST(json_extract(c.fields, '$.touches') AS BIGINT), 0) <> 1"
        ),
    )
    .await;
    report.line("contacts updated other than once", bumped.to_string(), bumped == 0);

    // Effects and what the local servers received, per idempotency key.
    let effects: Vec<(String, String, String)> = sqlx::query_as("SELECT idempotency_key, kind, status FROM outbox").fetch_all(&pool).await?;
    let mut deliveries: HashMap<String, usize> = HashMap::new();
    for arrival in hooks.arrivals() {
        if let Some(key) = arrival.headers.get("idempotency-key").and_then(|k| k.to_str().ok()) {
            *deliveries.entry(key.to_owned()).or_default() += 1;
        }
    }
    let mut by_message_id: HashMap<String, usize> = HashMap::new();
    for message in smtp.wait_for(smtp.count()) {
        if let Some(id) = message["headers"]["message-id"].as_str() {
            *by_message_id.entry(id.to_owned()).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = Vec::with_capacity(effects.len());
    let (mut emails, mut webhooks, mut not_sent) = (0, 0, 0);
    for (key, kind, status) in &effects {
        not_sent += usize::from(status != "sent");
        let n = if kind == "email" {
            emails += 1;
            let local: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '.' }).collect();
            by_message_id.get(&format!("<{local}@waymark.test>")).copied().unwrap_or(0)
        } else {
            webhooks += 1;
            deliveries.get(key).copied().unwrap_or(0)
        };
        counts.push(n);
    }
    let undelivered = counts.iter().filter(|n| **n == 0).count();
    let failed_effects: Vec<(String, i64)> =
        sqlx::query_as("SELECT coalesce(last_error, status), count(*) FROM outbox WHERE status <> 'sent' GROUP BY coalesce(last_error, status)")
            .fetch_all(&pool)
            .await?;
    report.line(
        "outbox effects with no delivery",
        format!(
            "{undelivered} (of {}: {emails} emails, {webhooks} webhooks; {not_sent} not sent{})",
            effects.len(),
            if failed_effects.is_empty() { String::new() } else { format!(": {failed_effects:?}") }
        ),
        undelivered == 0 && not_sent == 0,
    );
    let duplicated = counts.iter().filter(|n| **n > 1).count();
    let extra: usize = counts.iter().map(|n| n.saturating_sub(1)).sum();
    report.line(
        "deliveries per idempotency key",
        format!(
            "min {}, max {}; {duplicated} keys delivered more than once ({extra} extra deliveries, at least once allows them)",
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0)
        ),
        counts.iter().all(|n| *n >= 1),
    );

    // Imports: each checked against its report when it ended.
    let imports = workload.imports.lock().unwrap().clone();
    let all_imports: i64 = scalar(&pool, "SELECT count(*) FROM contact_imports").await;
    let bad: Vec<&ImportCheck> = imports.iter().filter(|c| !c.problems.is_empty()).collect();
    let done = imports.iter().filter(|c| c.status == "done").count();
    let rows: i64 = imports.iter().map(|c| c.rows_done).sum();
    report.line(
        "imports ended with the rows they report",
        format!(
            "{} of {all_imports} ({done} done, {} failed; {rows} rows committed in all){}",
            imports.len() - bad.len(),
            imports.len() - done,
            if bad.is_empty() { String::new() } else { format!("; wrong: {bad:?}") }
        ),
        bad.is_empty() && imports.len() as i64 == all_imports && !imports.is_empty(),
    );
    let failed_imports: Vec<String> = imports
        .iter()
        .filter(|c| c.status == "failed")
        .map(|c| format!("#{} after {} rows ({} created, {} updated, {} refused, {} tagged, last row {}, {} listed)", c.id, c.rows_done, c.created, c.updated, c.failed, c.tagged, c.max_row, c.listed_errors))
        .collect();
    if !failed_imports.is_empty() {
        report.lines.push(("  failed imports (a process stopped)".into(), failed_imports.join("; ")));
    }
    let reasons: Vec<(String, i64)> =
        sqlx::query_as("SELECT coalesce(error, ''), count(*) FROM contact_imports WHERE status = 'failed' GROUP BY coalesce(error, '')").fetch_all(&pool).await?;
    if !reasons.is_empty() {
        report.lines.push(("  why imports failed".into(), format!("{reasons:?}")));
    }

    // Bulk runs: each finished, every chunk applied once.
    let runs: Vec<(i64, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT r.id, r.status, r.total, r.done, r.count, (SELECT count(*) FROM bulk_run_items i WHERE i.run_id = r.id AND i.changed = 1)
         FROM bulk_runs r ORDER BY r.id",
    )
    .fetch_all(&pool)
    .await?;
    let unfinished_runs: Vec<String> = runs
        .iter()
        .filter(|(_, status, total, done, count, changed)| status != "done" || done != total || count != changed)
        .map(|(id, status, total, done, count, changed)| format!("#{id} {status} {done}/{total}, count {count}, changed {changed}"))
        .collect();
    let passes_off: i64 = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM participants p LEFT JOIN (
                 SELECT i.participant_id, count(*) AS n FROM bulk_run_items i JOIN bulk_runs r ON r.id = i.run_id
                 WHERE i.changed = 1 AND r.action = 'manual_pass' GROUP BY i.participant_id) m ON m.participant_id = p.id
             WHERE p.flow_id = {flow} AND p.pass_count <> 1 + coalesce(m.n, 0)"
        ),
    )
    .await;
    let changed: i64 = runs.iter().map(|r| r.5).sum();
    report.line(
        "bulk runs finished exactly once",
        format!(
            "{} of {} ({changed} participant changes; {passes_off} participants whose pass count is not 1 + the runs that changed them){}",
            runs.len() - unfinished_runs.len(),
            runs.len(),
            if unfinished_runs.is_empty() { String::new() } else { format!("; not: {unfinished_runs:?}") }
        ),
        unfinished_runs.is_empty() && passes_off == 0 && !runs.is_empty(),
    );

    // Recovery and graceful stops.
    let mut orphaned = 0;
    for watcher in watchers {
        orphaned += usize::from(watcher.await.unwrap_or(false));
    }
    let mut taken = takeovers.lock().unwrap().clone();
    taken.sort();
    report.line(
        "SIGKILL → its claims taken over",
        format!(
            "p50 {:.2} s, p99 {:.2} s, max {:.2} s (n = {}: kills of a process holding claims; {} not taken over)",
            percentile(&taken, 50.0).as_secs_f64(),
            percentile(&taken, 99.0).as_secs_f64(),
            taken.last().copied().unwrap_or_default().as_secs_f64(),
            taken.len(),
            orphaned - taken.len()
        ),
        orphaned == taken.len(),
    );
    let mut recoveries = cluster.recoveries.clone();
    recoveries.sort();
    report.line(
        "restart → its first new transition",
        format!(
            "p50 {:.2} s, p99 {:.2} s, max {:.2} s (n = {}; {} restarted processes committed nothing before their next fault)",
            percentile(&recoveries, 50.0).as_secs_f64(),
            percentile(&recoveries, 99.0).as_secs_f64(),
            recoveries.last().copied().unwrap_or_default().as_secs_f64(),
            recoveries.len(),
            cluster.unmeasured
        ),
        true,
    );
    let bad_stops: Vec<String> = cluster
        .stops
        .iter()
        .filter(|(_, took, code)| *code != Some(0) || *took > lease)
        .map(|(role, took, code)| format!("{role}: exit {code:?} after {:.2} s", took.as_secs_f64()))
        .collect();
    let slowest = cluster.stops.iter().map(|s| s.1).max().unwrap_or_default();
    report.line(
        "SIGTERM: exit 0 within the lease",
        format!(
            "{} of {} (slowest {:.2} s; lease {} s){}",
            cluster.stops.len() - bad_stops.len(),
            cluster.stops.len(),
            slowest.as_secs_f64(),
            lease.as_secs(),
            if bad_stops.is_empty() { String::new() } else { format!("; not: {bad_stops:?}") }
        ),
        bad_stops.is_empty(),
    );
    report.lines.push((
        "workload".into(),
        format!(
            "{} enrolled, {} effects, {} imports, {} bulk runs; {} API requests tried again",
            workload.enrolled.load(Ordering::SeqCst),
            effects.len(),
            all_imports,
            runs.len(),
            workload.retries.load(Ordering::SeqCst)
        ),
    ));
    report.total_seconds = started.elapsed().as_secs_f64();
    drop(cluster);
    pool.close().await;
    if opts.keep || !report.failures.is_empty() {
        report.dir = Some(dir.keep());
    }
    Ok(report)
}
