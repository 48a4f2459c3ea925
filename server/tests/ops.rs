//! Operating a real `waymark serve` process (SQLite, or PostgreSQL under
//! `make pg`): the health probes; `/metrics` on its own address, behind
//! its token, scraped while the server does real work (webhooks to a
//! local HTTP server, one that refuses connections, events, an import, a
//! bulk run, a participant stuck in a dead worker's claim, participants
//! moved on by delivered events) and read with
//! Python's `prometheus_client` parser, whose values must have moved by
//! exactly that work; request ids; and the JSON log lines of requests and
//! jobs.

mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use support::{HttpServer, TestDb};

/// Contacts enrolled into the flow whose webhook is answered.
const N: usize = 24;

struct Serve {
    child: Child,
    log: std::path::PathBuf,
    base: String,
    metrics: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The binary under test: `WAYMARK_BIN` when set (as for the browser
/// tests: the target directory may be shared with another checkout, whose
/// build replaces `target/debug/waymark`), else cargo's.
fn waymark() -> String {
    std::env::var("WAYMARK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_waymark").to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A sample of a scrape: its name and labels.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;
/// A scraped sample as the Python parser prints it: family, name, labels, value.
type ScrapedRow = (String, String, Vec<(String, String)>, f64);

/// The scrape read by prometheus_client's text parser (installed by
/// `.ci/install-tools`, or here with pip --user when missing).
fn parse_with_prometheus_client(text: &str) -> Samples {
    let present = || Command::new("python3").args(["-c", "import prometheus_client"]).status().is_ok_and(|s| s.success());
    if !present() {
        let pip = Command::new("python3").args(["-m", "pip", "install", "--user", "--quiet", "prometheus_client"]).status();
        assert!(pip.is_ok_and(|s| s.success()) && present(), "this test needs Python 3 with prometheus_client (PyPI)");
    }
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.type, s.name, sorted(s.labels.items()), s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client refused the scrape: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<ScrapedRow> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter().map(|(_, name, labels, value)| ((name, labels), value)).collect()
}

/// The value of `name` with exactly `labels`, if scraped.
fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    samples.get(&(name.to_owned(), labels)).copied()
}

/// The sum of `name` over the samples whose labels include `labels`.
fn total(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, v)| v)
        .sum()
}

async fn wait_for(what: &str, serve: &Serve, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within 60 s\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_server_is_ready_and_its_metrics_logs_and_request_ids_report_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let hooks = HttpServer::start("127.0.0.1").await;
    let refused = format!("http://127.0.0.1:{}/hook", free_port());
    server::channels::settings::update(&pool, json!({"http": {"allowlist": ["127.0.0.1"]}}).as_object().unwrap().clone()).await.unwrap();
    let store = Store::new(pool.clone());
    let step = |url: &str| json!([{"id": "start", "kind": "start"}, {"id": "hook", "kind": "webhook", "settings": {"url": url}}, {"id": "x", "kind": "exit"}]);
    let answered = support::publish(&store, "Answered", step(&hooks.url("/hook")), &["start->hook", "hook->x"]).await;
    let unanswered = support::publish(&store, "Refused", step(&refused), &["start->hook", "hook->x"]).await;
    // Moved only by an event delivery pass: waiting for a purchase.
    let waits = json!([{"id": "start", "kind": "start"},
        {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "custom", "name": "purchase"}], "timeout": {"amount": 3, "unit": "days"}}},
        {"id": "bought", "kind": "update_contact", "settings": {"changes": [{"field": "bought", "op": "set", "value": "yes"}]}},
        {"id": "late", "kind": "exit"}]);
    let waiting = support::publish(&store, "Waits", waits, &["start->w", "w:met->bought", "w:timed_out->late"]).await;
    let mut contacts = Vec::new();
    for i in 0..N + 3 {
        let id: i64 = sqlx::query_scalar("INSERT INTO contacts (email, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id")
            .bind(format!("ops{i}@example.test"))
            .bind("2026-12-07T00:00:00Z")
            .fetch_one(&pool)
            .await
            .unwrap();
        contacts.push(id);
    }
    // A participant due an hour ago, in the claim of a worker that died
    // (its lease runs a day): the backlog the server cannot clear.
    let runtime = Runtime::new(pool.clone(), std::sync::Arc::new(SystemClock), "gone");
    let (stuck, _) = runtime.enroll(unanswered, &contacts[N + 2..]).await.unwrap();
    let hour_ago = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    sqlx::query("UPDATE participants SET next_run_at = $1, lease_owner = 'gone', lease_until = $2 WHERE id = $3")
        .bind(hour_ago)
        .bind(hour_ago + 86_400_000)
        .bind(stuck[0])
        .execute(&pool)
        .await
        .unwrap();
    let made = Command::new(waymark())
        .args(["token", "add", "--name", "ops", "--scope", "write"])
        .env("DATABASE_URL", &db.url)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token = String::from_utf8(made.stdout).unwrap().trim().to_owned();

    let (port, metrics_port) = (free_port(), free_port());
    let log = dir.path().join("serve.log");
    let child = Command::new(waymark())
        .args(["serve", "--no-demo", "--lease-secs", "5", "--log-format", "json"])
        .args(["--addr", &format!("127.0.0.1:{port}"), "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("DATABASE_URL", &db.url)
        .env("WAYMARK_METRICS_TOKEN", "scrape-secret")
        .env("RUST_LOG", "info,sqlx=warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let serve = Serve { child, log, base: format!("http://127.0.0.1:{port}"), metrics: format!("http://127.0.0.1:{metrics_port}") };
    let http = reqwest::Client::new();

    // Up, then ready (the scheduler has passed).
    wait_for("/healthz answers", &serve, async || http.get(format!("{}/healthz", serve.base)).send().await.is_ok_and(|r| r.status() == 200)).await;
    let health: Value = serde_json::from_slice(&http.get(format!("{}/healthz", serve.base)).send().await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(health["status"], "ok");
    wait_for("/readyz says ready", &serve, async || http.get(format!("{}/readyz", serve.base)).send().await.is_ok_and(|r| r.status() == 200)).await;
    let ready = http.get(format!("{}/readyz", serve.base)).send().await.unwrap();
    assert_eq!(ready.headers()["content-type"], "application/json");
    let ready: Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["database"]["ok"], true);
    assert_eq!(ready["checks"]["migrations"]["missing"], json!([]), "{ready}");
    let known = ready["checks"]["migrations"]["known"].as_u64().unwrap();
    assert!(known > 10 && ready["checks"]["migrations"]["applied"] == known, "{ready}");
    assert!(ready["checks"]["scheduler"]["last_pass_seconds_ago"].as_f64().unwrap() < 10.0, "{ready}");
    // The probes are the only ops routes on the app's address.
    assert_eq!(http.get(format!("{}/metrics", serve.base)).send().await.unwrap().status(), 404);

    // Work, through the API: enroll (with the caller's request id), events, an import, a bulk run.
    let api = |path: &str| format!("{}/api/v1{path}", serve.base);
    let enrolled = http
        .post(api(&format!("/flows/{answered}/enroll")))
        .bearer_auth(&token)
        .header("x-request-id", "ops-test-enroll-1")
        .header("content-type", "application/json").body(json!({"contact_ids": contacts[..N]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), 201);
    assert_eq!(enrolled.headers()["x-request-id"], "ops-test-enroll-1");
    let enrolled = http.post(api(&format!("/flows/{unanswered}/enroll"))).bearer_auth(&token).header("content-type", "application/json").body(json!({"contact_ids": contacts[N..N + 2]}).to_string()).send().await.unwrap();
    assert_eq!(enrolled.status(), 201);
    let generated = enrolled.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 24, "an id is made when the caller sends none: {generated}");
    let enrolled = http.post(api(&format!("/flows/{waiting}/enroll"))).bearer_auth(&token).header("content-type", "application/json").body(json!({"contact_ids": contacts[..2]}).to_string()).send().await.unwrap();
    assert_eq!(enrolled.status(), 201);
    let at_wait = format!("SELECT count(*) FROM participants WHERE flow_id = {waiting} AND step = 'w' AND status = 'waiting'");
    wait_for("both wait for a purchase", &serve, async || sqlx::query_scalar::<_, i64>(&at_wait).fetch_one(&pool).await.unwrap() == 2).await;
    let refused_id = http.get(format!("{}/healthz", serve.base)).header("x-request-id", "no spaces allowed").send().await.unwrap();
    assert_ne!(refused_id.headers()["x-request-id"], "no spaces allowed");
    let events = json!([
        {"id": "order-1", "contact": {"id": contacts[0]}, "event": "custom", "name": "purchase"},
        {"id": "order-2", "contact": {"id": contacts[1]}, "event": "custom", "name": "purchase"},
        {"id": "order-1", "contact": {"id": contacts[0]}, "event": "custom", "name": "purchase"},
    ]);
    let posted = http.post(api("/events")).bearer_auth(&token).header("content-type", "application/json").body(events.to_string()).send().await.unwrap();
    assert_eq!(posted.status(), 202, "{}", posted.text().await.unwrap());
    let csv = "email,first_name\nnew1@example.test,Ann\nnew2@example.test,Bob\nops0@example.test,Cy\nnot-an-email,Dee\n";
    let boundary = "ops-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"people.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    let import = http
        .post(api("/contacts/imports"))
        .bearer_auth(&token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(import.status(), 202, "{}", import.text().await.unwrap());
    let import_id = import.bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap()["id"].as_i64().unwrap();

    // The answered webhooks arrive, the refused ones wait to be tried again, the import ends.
    wait_for("every answered webhook arrives", &serve, async || hooks.arrivals().len() >= N).await;
    let retried = "SELECT count(*) FROM outbox WHERE status = 'queued' AND tries >= 1";
    wait_for("both refused webhooks wait for a retry", &serve, async || sqlx::query_scalar::<_, i64>(retried).fetch_one(&pool).await.unwrap() == 2).await;
    let imported = format!("SELECT count(*) FROM contact_imports WHERE id = {import_id} AND status = 'done'");
    wait_for("the import ends", &serve, async || sqlx::query_scalar::<_, i64>(&imported).fetch_one(&pool).await.unwrap() == 1).await;
    let bought = format!("SELECT count(*) FROM participants WHERE flow_id = {waiting} AND status = 'completed'");
    wait_for("the purchases move both waiting", &serve, async || sqlx::query_scalar::<_, i64>(&bought).fetch_one(&pool).await.unwrap() == 2).await;
    let sent = "SELECT count(*) FROM outbox WHERE status = 'sent'";
    wait_for("the sends are recorded", &serve, async || sqlx::query_scalar::<_, i64>(sent).fetch_one(&pool).await.unwrap() == N as i64).await;
    // The two waiting for their retry (the stuck one is in another's claim, and stays).
    let statuses: Vec<String> = sqlx::query_scalar(&format!("SELECT DISTINCT status FROM participants WHERE flow_id = {unanswered} AND id <> {}", stuck[0]))
        .fetch_all(&pool)
        .await
        .unwrap();
    let stuck_status: String = sqlx::query_scalar(&format!("SELECT status FROM participants WHERE id = {}", stuck[0])).fetch_one(&pool).await.unwrap();
    assert!(!statuses.contains(&stuck_status), "{statuses:?} {stuck_status}");
    let run = http
        .post(api("/participants/bulk"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"action": "pause", "criteria": {"flow_ids": [unanswered], "statuses": statuses}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 202, "{}", run.text().await.unwrap());
    let run_id = run.bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap()["id"].as_i64().unwrap();
    let ran = format!("SELECT count(*) FROM bulk_runs WHERE id = {run_id} AND status = 'done'");
    wait_for("the bulk run ends", &serve, async || sqlx::query_scalar::<_, i64>(&ran).fetch_one(&pool).await.unwrap() == 1).await;

    // /metrics: its token first.
    let metrics = format!("{}/metrics", serve.metrics);
    assert_eq!(http.get(&metrics).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&metrics).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let scraped = http.get(&metrics).bearer_auth("scrape-secret").send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = scraped.text().await.unwrap();
    let m = parse_with_prometheus_client(&text);

    // Transitions by step kind: each answered participant entered start,
    // webhook and exit; each refused one start and webhook (so far).
    assert_eq!(sample(&m, "waymark_transitions_total", &[("kind", "webhook")]), Some((N + 2) as f64), "{text}");
    assert_eq!(sample(&m, "waymark_transitions_total", &[("kind", "exit")]), Some(N as f64), "{text}");
    // The event delivery pass's: the two purchases moved their contacts on.
    assert_eq!(sample(&m, "waymark_transitions_total", &[("kind", "update_contact")]), Some(2.0), "{text}");
    assert_eq!(sample(&m, "waymark_transitions_total", &[("kind", "wait_until")]), Some(2.0), "{text}");
    assert_eq!(sample(&m, "waymark_sends_total", &[("channel", "webhook"), ("outcome", "sent")]), Some(N as f64), "{text}");
    // (Tried again 30 s after the first try: twice more if this test was that slow.)
    let retried = sample(&m, "waymark_sends_total", &[("channel", "webhook"), ("outcome", "retried")]).unwrap();
    assert!(retried == 2.0 || retried == 4.0, "{text}");
    // Claimed soon after enrollment: every claim in the histogram, none an hour late.
    let claims = sample(&m, "waymark_lateness_seconds_count", &[]).unwrap();
    assert!(claims >= (N + 2) as f64, "{text}");
    assert_eq!(sample(&m, "waymark_lateness_seconds_bucket", &[("le", "+Inf")]), Some(claims));
    assert!(sample(&m, "waymark_lateness_seconds_sum", &[]).unwrap() < claims * 60.0, "{text}");
    // The stuck participant: the backlog, an hour old.
    assert_eq!(sample(&m, "waymark_due_participants", &[]), Some(1.0), "{text}");
    let oldest = sample(&m, "waymark_due_oldest_age_seconds", &[]).unwrap();
    assert!((3_600.0..3_900.0).contains(&oldest), "{oldest}");
    // The two refused webhooks are queued for their retry, not yet due (within 30 s).
    assert_eq!(sample(&m, "waymark_outbox_queued", &[("channel", "webhook")]), Some(2.0), "{text}");
    let waited = sample(&m, "waymark_outbox_oldest_due_age_seconds", &[("channel", "webhook")]).unwrap();
    assert!(retried == 4.0 || waited == 0.0, "{text}");
    assert_eq!(sample(&m, "waymark_events_received_total", &[("kind", "custom"), ("result", "accepted")]), Some(2.0), "{text}");
    assert_eq!(sample(&m, "waymark_events_received_total", &[("kind", "custom"), ("result", "duplicate")]), Some(1.0), "{text}");
    // The import: two new, one existing updated, one refused; the bulk run paused both.
    assert_eq!(sample(&m, "waymark_import_rows_total", &[("outcome", "created")]), Some(2.0), "{text}");
    assert_eq!(sample(&m, "waymark_import_rows_total", &[("outcome", "updated")]), Some(1.0), "{text}");
    assert_eq!(sample(&m, "waymark_import_rows_total", &[("outcome", "refused")]), Some(1.0), "{text}");
    assert_eq!(sample(&m, "waymark_bulk_participants_total", &[("action", "pause"), ("result", "changed")]), Some(2.0), "{text}");
    assert_eq!(sample(&m, "waymark_jobs_running", &[("kind", "import")]), Some(0.0));
    assert_eq!(sample(&m, "waymark_jobs_running", &[("kind", "bulk")]), Some(0.0));
    // HTTP: by the route's template and status, never the path as sent.
    let enroll = "/api/v1/flows/{id}/enroll";
    assert_eq!(sample(&m, "waymark_http_requests_total", &[("method", "POST"), ("route", enroll), ("status", "201")]), Some(3.0), "{text}");
    assert_eq!(
        sample(&m, "waymark_http_request_duration_seconds_count", &[("method", "POST"), ("route", enroll), ("status", "201")]),
        Some(3.0)
    );
    assert!(total(&m, "waymark_http_requests_total", &[("route", "/readyz"), ("status", "200")]) >= 2.0);
    assert_eq!(total(&m, "waymark_http_requests_total", &[("route", "/api/v1/events"), ("status", "202")]), 1.0);
    for (name, labels) in m.keys() {
        for (key, value) in labels.iter().filter(|(k, _)| k == "route") {
            let raw = value.split('/').any(|segment| !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()));
            assert!(!raw, "{name} {key}={value}: a raw path became a label");
        }
    }
    let max = if db.is_postgres() { 16.0 } else { 8.0 };
    assert_eq!(sample(&m, "waymark_db_pool_max_connections", &[]), Some(max));
    let open = total(&m, "waymark_db_pool_connections", &[]);
    assert!((1.0..=max).contains(&open), "{open}");
    assert_eq!(sample(&m, "waymark_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));

    // Logs: one JSON object per line; the request's lines carry its id and
    // route, the import's lines its job id.
    let log = serve.log();
    let lines: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))).collect();
    let spans = |line: &Value, name: &str| -> Vec<Value> {
        line["spans"].as_array().into_iter().flatten().filter(|s| s["name"] == name).cloned().collect()
    };
    let answered_line = lines
        .iter()
        .find(|l| spans(l, "request").iter().any(|s| s["request_id"] == "ops-test-enroll-1"))
        .unwrap_or_else(|| panic!("no line of the enroll request:\n{log}"));
    assert_eq!(spans(answered_line, "request")[0]["route"], enroll);
    assert_eq!(answered_line["status"], 201);
    let done = lines.iter().find(|l| l["message"] == "contact import done").unwrap_or_else(|| panic!("no import line:\n{log}"));
    assert_eq!(spans(done, "job"), vec![json!({"name": "job", "job_kind": "import", "job_id": import_id})], "{done}");
    let ended = lines.iter().find(|l| l["message"] == "bulk run ended").unwrap_or_else(|| panic!("no bulk run line:\n{log}"));
    assert_eq!(spans(ended, "job"), vec![json!({"name": "job", "job_kind": "bulk", "job_id": run_id})], "{ended}");
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()));

    // The worker side: probes and metrics on a worker's own address.
    drop(serve);
    let worker_port = free_port();
    let mut worker = Command::new(waymark())
        .args(["worker", "--lease-secs", "5", "--metrics-addr", &format!("127.0.0.1:{worker_port}")])
        .env("DATABASE_URL", &db.url)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{worker_port}/readyz")).send().await {
            if r.status() == 200 {
                break r.bytes().await.map(|b| serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
            }
        }
        assert!(Instant::now() < deadline, "the worker's /readyz never said ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready["status"], "ready");
    let text = http.get(format!("http://127.0.0.1:{worker_port}/metrics")).send().await.unwrap().text().await.unwrap();
    let m = parse_with_prometheus_client(&text);
    assert_eq!(sample(&m, "waymark_due_participants", &[]), Some(1.0), "{text}");
    let _ = worker.kill();
    let _ = worker.wait();
}
