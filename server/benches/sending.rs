//! Sending throughput: `--participants` (100,000) contacts enrolled in a
//! flow that sends each one email, `waymark serve` (this build's binary,
//! on SQLite) carrying them out through its outbox to Postfix's
//! `smtp-sink`; and, in the same run, Postfix's `smtp-source` sending as
//! many messages of the same size to another `smtp-sink` as the ceiling.
//!
//! ```sh
//! make bench-engagement          # the tracking bench, then this
//! cargo bench -p server --bench sending -- [--participants 100000]
//! ```
//!
//! A bench target (`harness = false`): `cargo test` neither builds nor runs
//! it. It needs Debian's `postfix` for `smtp-sink` and `smtp-source`
//! (`.ci/install-bench-tools`; the postfix service is not used).
//!
//! The emails are the product's own: tracked (open pixel, click redirect,
//! `List-Unsubscribe` with one-click), one conversation record each. The
//! rate is taken at the sink (its running count of completed DATA
//! commands): emails/s from the first message to the last, and from the
//! enrolment to the last (which includes the engine's moving 100,000
//! participants to the step). `smtp-source` runs `--sessions` SMTP
//! sessions at once (the outbox's connections), reusing each (`-d`),
//! messages of the size ours have. Exits 1 when a message is missing.

use std::io::Read;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

use server::store::{self, Store};

#[path = "../tests/support/mod.rs"]
mod support;

#[derive(Parser, Debug, Clone)]
#[command(name = "sending", about = "Emails/s from the outbox to smtp-sink, beside smtp-source → smtp-sink")]
struct Opts {
    /// Contacts enrolled, one email each.
    #[arg(long, default_value_t = 100_000)]
    participants: usize,
    /// smtp-source's sessions at once (the outbox keeps as many connections).
    #[arg(long, default_value_t = server::runtime::outbox::CONCURRENCY)]
    sessions: usize,
    /// How long the emails may take in all.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Keep the run's folder (database, log).
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    match tokio.block_on(run(&opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            println!("sending bench: the run could not be carried out: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `waymark` binary: this build's, or `WAYMARK_BIN` (a copy of it, safe
/// from another build of the shared target directory meanwhile).
fn waymark_binary() -> String {
    std::env::var("WAYMARK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_waymark").to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16, what: &str) -> anyhow::Result<()> {
    let since = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(since.elapsed() < Duration::from_secs(60), "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn postfix_tool(name: &str) -> String {
    let path = format!("/usr/sbin/{name}");
    if std::path::Path::new(&path).exists() { path } else { name.to_owned() }
}

/// Postfix's `smtp-sink` on a loopback port, its running count of
/// messages (completed DATA commands) read as it prints it.
struct Sink {
    child: Child,
    port: u16,
    messages: Arc<AtomicU64>,
    /// When it counted its first message and its latest.
    first: Arc<std::sync::Mutex<Option<Instant>>>,
    last: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Sink {
    fn start() -> anyhow::Result<Sink> {
        let port = free_port();
        let mut command = Command::new(postfix_tool("smtp-sink"));
        if is_root() {
            command.args(["-u", "nobody"]); // it refuses to run as root
        }
        let mut child = command
            .args(["-c", &format!("127.0.0.1:{port}"), "1024"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| anyhow::anyhow!("smtp-sink cannot be started ({err}); `.ci/install-bench-tools` installs postfix"))?;
        let messages = Arc::new(AtomicU64::new(0));
        let first: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let last: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let mut out = child.stdout.take().unwrap();
        let (count, seen_first, seen_last) = (messages.clone(), first.clone(), last.clone());
        // `sess=N quit=N mesg=N\r`, over and over.
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut line = Vec::new();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    if b != b'\r' && b != b'\n' {
                        line.push(b);
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    if let Some(n) = text.split_whitespace().find_map(|w| w.strip_prefix("mesg=")).and_then(|n| n.parse::<u64>().ok()) {
                        let now = Instant::now();
                        if n > 0 {
                            seen_first.lock().unwrap().get_or_insert(now);
                        }
                        if n > count.swap(n, Ordering::SeqCst) {
                            *seen_last.lock().unwrap() = Some(now);
                        }
                    }
                    line.clear();
                }
            }
        });
        wait_listening(port, "smtp-sink")?;
        Ok(Sink { child, port, messages, first, last })
    }

    fn count(&self) -> u64 {
        self.messages.load(Ordering::SeqCst)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `waymark serve` on the bench's database, its log in `serve.log`.
struct Serve {
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let since = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && since.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

async fn run(opts: &Opts) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("waymark-bench-sending-").tempdir()?;
    let url = format!("sqlite://{}/sending.db", dir.path().display());
    let pool = store::connect(&url).await?;
    let port = free_port();
    let n = opts.participants as u64;

    // The flow, the contacts, the sink.
    let sink = Sink::start()?;
    server::channels::settings::update(
        &pool,
        json!({"smtp": {"host": "127.0.0.1", "port": sink.port, "tls": "none", "from": "Shop <news@shop.test>", "timeout_secs": 30}})
            .as_object()
            .unwrap()
            .clone(),
    )
    .await?;
    let store = Store::new(pool.clone());
    let body = "<html><body><h1>The winter sale</h1><p>Hello {{ email }},</p>\
        <p>Everything in the <a href=\"https://shop.test/winter?src=mail\">winter collection</a> is 30% off until Sunday, \
        and <a href=\"https://shop.test/boots\">boots</a> ship free.</p>\
        <p>See you soon,<br>The Shop</p><p style=\"font-size:small\"><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>";
    let steps = json!([{"id": "s", "kind": "start"},
        {"id": "mail", "kind": "send_email", "settings": {"subject": "The winter sale, {{ email }}", "body": body}},
        {"id": "done", "kind": "exit"}]);
    let flow = support::publish(&store, "Winter sale", steps, &["s->mail", "mail->done"]).await;
    let at = jiff::Timestamp::now().to_string();
    let mut contacts: Vec<i64> = sqlx::query_scalar(&format!(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {n})
         INSERT INTO contacts (email, fields, created_at, updated_at)
         SELECT 'c' || n || '@example.test', '{{}}', '{at}', '{at}' FROM g RETURNING id"
    ))
    .fetch_all(&pool)
    .await?;
    contacts.sort_unstable();

    // `waymark serve`: its scheduler and outbox do the sending.
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let child = Command::new(waymark_binary())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--no-demo"])
        .args(["--public-url", "https://waymark.shop.test"])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let serve = Serve { child };
    wait_listening(port, "waymark serve")?;
    println!(
        "sending bench: {n} participants on SQLite, a flow sending each one tracked email; `waymark serve` → smtp-sink; 2 cores shared by everything"
    );

    let runtime = server::runtime::Runtime::new(pool.clone(), Arc::new(server::runtime::SystemClock), "bench");
    let started = Instant::now();
    for chunk in contacts.chunks(10_000) {
        runtime.enroll(flow, chunk).await?;
    }
    let enrolled = started.elapsed();
    let deadline = started + Duration::from_secs(opts.timeout_secs);
    let mut shown = Instant::now();
    while sink.count() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if shown.elapsed() > Duration::from_secs(10) {
            println!("  … {} sent after {:.0} s", sink.count(), started.elapsed().as_secs_f64());
            shown = Instant::now();
        }
    }
    let got = sink.count();
    let first = sink.first.lock().unwrap().unwrap_or(started);
    let last = sink.last.lock().unwrap().unwrap_or(started);
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status = 'failed'").fetch_one(&pool).await?;
    drop(serve);
    let outbox_rate = rate(got, last.saturating_duration_since(first));
    let overall = rate(got, last.saturating_duration_since(started));
    println!(
        "  waymark: {got} of {n} emails at the sink ({failed} failed); enrolled in {:.1} s; first email after {:.1} s, last after {:.1} s",
        enrolled.as_secs_f64(),
        first.saturating_duration_since(started).as_secs_f64(),
        last.saturating_duration_since(started).as_secs_f64()
    );
    println!("  waymark: {outbox_rate:.0} emails/s first to last; {overall:.0} emails/s from the enrolment");

    // The ceiling: smtp-source → a fresh smtp-sink, same count, same size.
    let ceiling_sink = Sink::start()?;
    let bytes = message_size(body)?;
    let since = Instant::now();
    let out = Command::new(postfix_tool("smtp-source"))
        .args(["-s", &opts.sessions.to_string(), "-d", "-m", &n.to_string(), "-l", &bytes.to_string()])
        .args(["-f", "news@shop.test", "-t", "c1@example.test", &format!("127.0.0.1:{}", ceiling_sink.port)])
        .output()
        .map_err(|err| anyhow::anyhow!("smtp-source cannot be run ({err}); `.ci/install-bench-tools` installs postfix"))?;
    anyhow::ensure!(out.status.success(), "smtp-source failed: {}", String::from_utf8_lossy(&out.stderr));
    let took = since.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let ceiling = rate(n, took);
    println!(
        "  smtp-source: {n} messages of {bytes} bytes, {} sessions reused, to smtp-sink ({} counted): {ceiling:.0} messages/s",
        opts.sessions,
        ceiling_sink.count()
    );
    println!(
        "  ratio: {:.0}% of smtp-source's rate (first to last); target ≥ 1,000 emails/s on SQLite: {}",
        100.0 * outbox_rate / ceiling,
        if outbox_rate >= 1_000.0 { "met" } else { "NOT met" }
    );
    if opts.keep {
        println!("the run's folder is kept: {}", dir.keep().display());
    }
    let complete = got == n && failed == 0;
    if !complete {
        println!("FAILED: {got} of {n} emails reached the sink, {failed} failed");
    }
    Ok(complete)
}

/// The size of one of this bench's emails as the outbox builds it
/// (tracked links, pixel, List-Unsubscribe), for smtp-source's messages.
fn message_size(body: &str) -> anyhow::Result<usize> {
    use server::channels::{email, settings, tracking};
    let key = [7u8; tracking::token::KEY_LEN];
    let tracking = settings::Tracking::default();
    let from = "Shop <news@shop.test>";
    let plan = tracking::Plan { key: &key, base: Some("https://waymark.shop.test"), settings: &tracking, flags: Default::default(), from };
    let to = "c50000@example.test";
    let prepared = plan.prepare(50_000, &format!("The winter sale, {to}"), Some(&body.replace("{{ email }}", to)), "");
    let smtp = settings::Smtp { host: "127.0.0.1".into(), port: 25, tls: settings::TlsMode::None, username: None, from: from.into(), timeout_secs: 30 };
    let mail = email::Outgoing {
        to: vec![to.into()],
        subject: prepared.subject,
        html: prepared.html,
        list_unsubscribe: prepared.list_unsubscribe,
        one_click: prepared.one_click,
        id: "wm-0123456789abcdef0123456789abcdef@shop.test".into(),
        ..email::Outgoing::default()
    };
    let message = email::build(&smtp, &mail).map_err(|failure| anyhow::anyhow!("{}", failure.reason))?;
    Ok(message.formatted().len())
}
