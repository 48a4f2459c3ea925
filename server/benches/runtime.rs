//! Runtime benchmark on SQLite: `cargo bench -p server --bench runtime [-- N...]`.
//!
//! 1. Throughput: N participants through wait 1 day → update contact →
//!    condition → exit on a virtual clock; transitions (steps reached and
//!    recorded) per second, for N = 100,000 and 1,000,000 by default.
//! 2. Lateness without backlog: 5,000 participants due at times spread over
//!    10 s, the real scheduler loop on the system clock; how late each ran
//!    after it was due (p50 / p99).
//! 3. Bulk suppress then unsuppress of 1,000,000 participants.
//!
//! 4. Streamed CSV import of 1,000,000 generated contact rows (1 in 200 a
//!    repeat of an earlier email, 1 in 1,000 a bad email), on an empty database;
//!    then contact searches on those 1,000,000 contacts (median latency of
//!    a page of 50 with its count, and the old `LIKE` scan for comparison).
//!
//! 5. Contact pressure's cost (`-- pressure`): 100,000 participants through
//!    email → wait 1 day → SMS → exit with caps on every channel (never
//!    reached: every send is counted and checked) against no policy, in
//!    the same run; transitions per second and the ratio.
//!
//! `-- bulk` runs only the third, `-- import` only the fourth, `-- pressure`
//! only the fifth; `-- 250000` sets the throughput sizes.

use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use app::core::engine::Participant;
use app::core::FlowDocument;
use server::runtime::outbox::{Dispatcher, Unconfigured};
use server::runtime::{millis, spawn_workers, ManualClock, Runtime, SystemClock};
use server::store::{self, Store};
use server::db::{Pool, Sql};

async fn setup(dir: &std::path::Path) -> (Pool, i64) {
    let pool = store::connect(&format!("sqlite://{}/bench.db", dir.display())).await.unwrap();
    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Bench",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "wait", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
                  {"id": "score", "kind": "update_contact", "settings": {"changes": [{"field": "score", "op": "increment", "value": 1}]}},
                  {"id": "hot", "kind": "condition", "settings": {"criteria": [{"field": "score", "op": "greater_than", "value": 50}]}},
                  {"id": "done", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "wait"}, {"from": "wait", "port": "next", "to": "score"},
                  {"from": "score", "port": "next", "to": "hot"}, {"from": "hot", "port": "yes", "to": "done"},
                  {"from": "hot", "port": "no", "to": "done"}]}))
    .unwrap();
    let store = Store::new(pool.clone());
    let flow = store.create("Bench", Some(doc)).await.unwrap();
    store.publish(flow.id, None, "bench").await.unwrap();
    (pool, flow.id)
}

/// Inserts `n` contacts and their participants, due at `due(i)`.
async fn populate(pool: &Pool, flow: i64, n: usize, due: impl Fn(usize) -> Timestamp) {
    let mut tx = pool.begin().await.unwrap();
    let at = Timestamp::now().to_string();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
        let mut contacts: Sql = Sql::new("INSERT INTO contacts (id, email, fields, created_at, updated_at) ");
        contacts.push_values(chunk, |mut row, &i| {
            row.push_bind(i as i64 + 1)
                .push_bind(format!("b{i}@bench.test"))
                .push_bind(format!("{{\"score\": {}}}", i % 100))
                .push_bind(&at)
                .push_bind(&at);
        });
        contacts.build().execute(&mut *tx).await.unwrap();
        let mut participants: Sql = Sql::new(
            "INSERT INTO participants (flow_id, version, contact_id, status, state, next_run_at, starts_at, enrolled_at, updated_at) ",
        );
        participants.push_values(chunk, |mut row, &i| {
            row.push_bind(flow)
                .push_bind(1i64)
                .push_bind(i as i64 + 1)
                .push_bind("ready")
                .push_bind(serde_json::to_string(&Participant::new(i as u64)).unwrap())
                .push_bind(millis(due(i)))
                .push_bind(millis(due(i)))
                .push_bind(&at)
                .push_bind(&at);
        });
        participants.build().execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn throughput(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (pool, flow) = setup(dir.path()).await;
    let t0: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
    let started = Instant::now();
    populate(&pool, flow, n, |_| t0).await;
    let load = started.elapsed();
    let clock = ManualClock::new(t0);
    let runtime = Runtime::new(pool.clone(), clock.clone(), "bench").with_batch(1_000);

    let started = Instant::now();
    let enter = runtime.run_until_idle().await.unwrap();
    let enter_time = started.elapsed();
    clock.advance(SignedDuration::from_hours(24));
    let started = Instant::now();
    let finish = runtime.run_until_idle().await.unwrap();
    let finish_time = started.elapsed();

    let transitions = enter.transitions + finish.transitions;
    let total = enter_time + finish_time;
    println!(
        "{n:>9} participants: loaded in {:.1} s; {} transitions in {:.2} s = {:.0} transitions/s \
         (enter: {:.0}/s, after the wait: {:.0}/s)",
        load.as_secs_f64(),
        transitions,
        total.as_secs_f64(),
        transitions as f64 / total.as_secs_f64(),
        enter.transitions as f64 / enter_time.as_secs_f64(),
        finish.transitions as f64 / finish_time.as_secs_f64(),
    );
    assert_eq!(finish.committed, n, "every participant finished");
}

async fn lateness() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let (pool, flow) = setup(dir.path()).await;
    let start = Timestamp::now() + SignedDuration::from_secs(2);
    let spread = SignedDuration::from_secs(10);
    let due = move |i: usize| start + SignedDuration::from_nanos((spread.as_nanos() as f64 * i as f64 / N as f64) as i64);
    populate(&pool, flow, N, due).await;
    let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), "bench-live");
    let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Unconfigured));
    let workers = spawn_workers(runtime, dispatcher, std::time::Duration::from_millis(20));
    tokio::time::sleep(std::time::Duration::from_secs(14)).await;
    workers.abort();
    // The wait step's timeline record is written at the instant the participant ran.
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT p.contact_id, a.due_at FROM participant_actions a JOIN participants p ON p.id = a.participant_id WHERE a.step = 'start'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut late: Vec<f64> = rows
        .iter()
        .map(|(contact, ran)| {
            let ran: Timestamp = ran.parse().unwrap();
            ran.duration_since(due(*contact as usize - 1)).as_secs_f64() * 1e3
        })
        .collect();
    late.sort_by(f64::total_cmp);
    let pct = |p: f64| late[((late.len() as f64 * p) as usize).min(late.len() - 1)];
    println!(
        "lateness, {} participants due over 10 s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        late.len(),
        pct(0.50),
        pct(0.99),
        late[late.len() - 1]
    );
    assert_eq!(late.len(), N, "every participant ran");
}

async fn bulk_suppress(n: usize) {
    use server::runtime::bulk::{apply, Action, Criteria};
    let dir = tempfile::tempdir().unwrap();
    let (pool, flow) = setup(dir.path()).await;
    let t0: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
    populate(&pool, flow, n, |_| t0).await;
    let all = Criteria { flow_ids: vec![flow], ..Criteria::default() };
    let runtime = Runtime::new(pool.clone(), ManualClock::new(t0), "bench").with_files_dir(dir.path().join("files"));
    for action in [Action::Suppress, Action::Unsuppress] {
        let started = Instant::now();
        let changed = apply(&runtime, &all, &action, None, "bench").await.unwrap();
        println!("{:>10} {changed} participants in {:.2} s", action.as_str(), started.elapsed().as_secs_f64());
        assert_eq!(changed as usize, n);
    }
}

async fn import_contacts(n: usize) {
    use server::runtime::import::{self, ImportOptions};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (pool, _) = setup(dir.path()).await;
    let path = dir.path().join("contacts.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "Email,Phone,First name,Company,Score,Zone").unwrap();
    let zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo", ""];
    for i in 0..n {
        let email = match i {
            i if i % 1_000 == 999 => "not-an-email".to_owned(),
            i if i % 200 == 199 => format!("person{}@import.test", i - 100),
            i => format!("person{i}@import.test"),
        };
        writeln!(file, "{email},+1555{:07},Name {i},Company {},{},{}", i, i % 5_000, i % 100, zones[i % 4]).unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), "bench");
    let options: ImportOptions = serde_json::from_value(json!({
        "mapping": {"Email": "email", "Phone": "mobile", "First name": "first_name", "Zone": "timezone"}
    }))
    .unwrap();
    let started = Instant::now();
    import::check(&path, &options).await.unwrap();
    let job = import::create_job(&runtime, &path, Some("contacts.csv"), &options, "bench").await.unwrap();
    import::run(&runtime, job, path.clone(), options).await.unwrap();
    let took = started.elapsed();
    let mut conn = pool.acquire().await.unwrap();
    let report = import::job(&mut conn, job, 0).await.unwrap();
    println!(
        "import {n} CSV rows ({:.0} MB): {:.1} s = {:.0} rows/s; {} created, {} updated, {} refused",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        report.created,
        report.updated,
        report.failed
    );
    assert_eq!(report.rows_done as usize, n);
    assert_eq!((report.created + report.updated + report.failed) as usize, n);
    drop(conn);
    search_contacts(&pool).await;
}

/// Median milliseconds of `runs` evaluations of an async block (after one to warm up).
macro_rules! median_ms {
    ($runs:expr, $body:expr) => {{
        $body;
        let mut times = Vec::with_capacity($runs);
        for _ in 0..$runs {
            let started = Instant::now();
            $body;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }};
}

/// A page of 50 and its count, as the contacts page asks, on the imported contacts.
async fn search_contacts(pool: &Pool) {
    use server::runtime::contacts::{self, ContactSearch};
    let mut conn = pool.acquire().await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&mut *conn).await.unwrap();
    let newest = contacts::search(&mut conn, &ContactSearch::default(), None, 50).await.unwrap();
    let deep = format!("{}", total / 2);
    let cases: [(&str, &str, Option<&str>); 8] = [
        ("an address", "person123456@import.test", None),
        ("an email prefix (narrow)", "person12345", None),
        ("an email prefix (broad)", "person1", None),
        ("a name prefix", "Name 4242", None),
        ("a mobile prefix", "+1555012", None),
        ("no q: the newest 50", "", None),
        ("no q: the next page", "", newest.next.as_deref()),
        ("no q: a page in the middle", "", Some(deep.as_str())),
    ];
    println!("contact search on {total} contacts, a page of 50 and its count (median of 21):");
    for (what, q, after) in cases {
        let search = ContactSearch { q: Some(q.into()), list: None };
        let found = contacts::search(&mut conn, &search, after, 50).await.unwrap();
        let ms = median_ms!(21, contacts::search(&mut conn, &search, after, 50).await.unwrap());
        let total = if found.more { format!("more than {}", found.total) } else { found.total.to_string() };
        println!("  {what:<34} {ms:>8.2} ms  ({} on the page, {total} counted)", found.contacts.len());
    }
    let plan = contacts::query_plan(&mut conn, &ContactSearch { q: Some("person1".into()), list: None }).await.unwrap();
    println!("  plan for \"person1\": {}", plan.join(" | "));

    // Before: `LIKE '%q%'` over email, mobile, owner and every field value, which reads every row.
    let like = "%person12345%";
    let filter = "c.deleted_at IS NULL AND (lower(coalesce(c.email, '')) LIKE $1 ESCAPE '\\' OR coalesce(c.mobile, '') LIKE $1 ESCAPE '\\'
         OR lower(coalesce(c.owner, '')) LIKE $1 ESCAPE '\\'
         OR EXISTS (SELECT 1 FROM json_each(c.fields) j WHERE lower(CAST(j.value AS TEXT)) LIKE $1 ESCAPE '\\'))";
    let (count, page) = (format!("SELECT count(*) FROM contacts c WHERE {filter}"), format!("SELECT c.id FROM contacts c WHERE {filter} ORDER BY c.id DESC LIMIT 50"));
    let old = median_ms!(5, {
        let _: i64 = sqlx::query_scalar(&count).bind(like).fetch_one(&mut *conn).await.unwrap();
        let _: Vec<i64> = sqlx::query_scalar(&page).bind(like).fetch_all(&mut *conn).await.unwrap();
    });
    println!("  before, LIKE '%person12345%' over every row (median of 5): {old:.0} ms");
}

/// Transitions per second through email → wait → SMS → exit, with `policy`.
async fn sends(n: usize, policy: Option<serde_json::Value>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::connect(&format!("sqlite://{}/bench.db", dir.path().display())).await.unwrap();
    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Sends",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "mail", "kind": "send_email", "settings": {"subject": "Hello {{first_name}}", "body": "<p>Hi</p>"}},
                  {"id": "wait", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
                  {"id": "text", "kind": "send_sms", "settings": {"text": "Hi again"}},
                  {"id": "done", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "mail"}, {"from": "mail", "port": "next", "to": "wait"},
                  {"from": "wait", "port": "next", "to": "text"}, {"from": "text", "port": "next", "to": "done"}]}))
    .unwrap();
    let store = Store::new(pool.clone());
    let flow = store.create("Sends", Some(doc)).await.unwrap().id;
    store.publish(flow, None, "bench").await.unwrap();
    if let Some(policy) = policy {
        let mut conn = pool.acquire().await.unwrap();
        server::runtime::pressure::save(&mut conn, &serde_json::from_value(policy).unwrap(), "bench").await.unwrap();
    }
    let t0: Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
    populate(&pool, flow, n, |_| t0).await;
    sqlx::query("UPDATE contacts SET mobile = '+1555' || substr('0000000' || id, -7)").execute(&pool).await.unwrap();
    let clock = ManualClock::new(t0);
    let runtime = Runtime::new(pool.clone(), clock.clone(), "bench").with_batch(1_000);
    // Each email is an effect whose outcome comes back: done at once here.
    let started = Instant::now();
    let mut transitions = runtime.run_until_idle().await.unwrap().transitions;
    let emailed: Vec<i64> = sqlx::query_scalar("SELECT participant_id FROM outbox WHERE kind = 'email'").fetch_all(&pool).await.unwrap();
    assert_eq!(emailed.len(), n, "every participant was emailed");
    let outcome = app::core::engine::Event::Effect { result: app::core::engine::EffectResult::Done { updates: Default::default() } };
    for id in &emailed {
        runtime.deliver(*id, outcome.clone()).await.unwrap();
    }
    transitions += n; // each email step completed, and the wait entered
    clock.advance(SignedDuration::from_hours(24));
    transitions += runtime.run_until_idle().await.unwrap().transitions;
    transitions as f64 / started.elapsed().as_secs_f64()
}

async fn pressure_overhead(n: usize) {
    let policy = json!({"caps": [{"channel": "email", "max": 50, "per": {"amount": 7, "unit": "days"}},
                                 {"channel": "sms", "max": 50, "per": {"amount": 7, "unit": "days"}},
                                 {"channel": "call", "max": 50, "per": {"amount": 7, "unit": "days"}}]});
    let off = sends(n, None).await;
    let on = sends(n, Some(policy)).await;
    println!(
        "{n} participants through email → wait → SMS: no policy {off:.0} transitions/s; caps on every channel {on:.0} transitions/s = {:.2}× of it",
        on / off
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "pressure") {
        return pressure_overhead(100_000).await;
    }
    if args.iter().any(|a| a == "bulk") {
        return bulk_suppress(1_000_000).await;
    }
    if args.iter().any(|a| a == "import") {
        return import_contacts(1_000_000).await;
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.replace('_', "").parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![100_000, 1_000_000] } else { sizes };
    for n in sizes {
        throughput(n).await;
    }
    lateness().await;
    bulk_suppress(1_000_000).await;
    import_contacts(1_000_000).await;
}
