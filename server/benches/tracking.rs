//! The tracking endpoints under load, beside nginx serving a static GIF as
//! the ceiling, all in one run on this machine:
//!
//! ```sh
//! make bench-engagement          # this, then the sending bench
//! cargo bench -p server --bench tracking -- [--rounds 5] [--secs 5] [--connections 64] [--rate 2000]
//! ```
//!
//! A bench target (`harness = false`): `cargo test` neither builds nor runs
//! it. It needs Debian's `wrk` and `nginx` (`.ci/install-bench-tools`).
//!
//! 1. A real email: `waymark serve` (this build's binary, on SQLite) sends
//!    one through its outbox to a local SMTP server (aiosmtpd); its open
//!    pixel and its tracked link are read out of the message as it arrived.
//! 2. nginx, started here on a loopback port with a generated config (no
//!    access log), serving a 43-byte GIF with the same no-cache headers as
//!    ours.
//! 3. `wrk` against nginx, the pixel, the redirect and `/healthz` (our
//!    HTTP stack without a hit's work: a diagnostic), one after another,
//!    `--rounds` times (the order reversed every other round, so that
//!    neither side always runs first or last): requests/s, p99, and each
//!    round's ratio to nginx's rate in that round; the verdict reads the
//!    median ratio, and the spread (lowest and highest) is printed beside
//!    it. The machine is shared (2 cores, other work running), so one run
//!    pair can be off by half either way; the median of alternating runs
//!    is what can be compared from one day to the next.
//! 4. A paced client (open loop, like wrk2: each request has its moment,
//!    and its latency counts from that moment, so a stall is not hidden)
//!    at `--rate` requests/s against nginx, the pixel and the redirect:
//!    p50, p99.
//! 5. Every hit recorded: the message's open and click counters (people's
//!    and machines') against the responses wrk and the paced client got,
//!    after each run. A request still in flight when wrk stopped may be
//!    recorded without its response being counted, so recorded may exceed
//!    answered by at most the connections, never fall short.
//! 6. The kill test: wrk against the pixel, the server SIGKILLed halfway,
//!    restarted once wrk is done; every response wrk got is recorded.
//!
//! The comparison is kept even: both servers get the same wrk (the same
//! threads, connections, seconds and timeout; HTTP/1.1 keep-alive, which
//! both keep for the whole run: nginx's `keepalive_requests` is raised
//! past any run's count), the same number of request-serving threads
//! (nginx's `worker_processes` and Waymark's Tokio worker threads, through
//! `TOKIO_WORKER_THREADS`, are both the machine's core count), the same
//! loopback, and the same 43-byte body with the same caching headers.
//! nginx reads a file it keeps in the page cache and writes nothing;
//! Waymark checks an HMAC, records the hit in its database (committed
//! before it answers) and answers with its usual headers (request id,
//! security headers). Waymark also has threads nginx has no counterpart
//! for (SQLite's, one per database connection, and its scheduler).
//!
//! Exits 1 when a hit answered was not recorded; the targets (≥ 50 % of
//! nginx's rate, p99 ≤ 10 ms at 2,000 requests/s) are printed with a
//! verdict, not enforced: the machine is shared.

use std::io::Write;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

use server::db::Pool;
use server::store::{self, Store};

#[path = "../tests/support/mod.rs"]
mod support;

use support::SmtpSink;

#[derive(Parser, Debug, Clone)]
#[command(name = "tracking", about = "The open pixel and the click redirect under wrk, beside nginx's static GIF")]
struct Opts {
    /// Rounds of wrk runs (nginx, the pixel, the redirect each).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of each wrk run (the kill test's run takes twice this).
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// wrk's threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// wrk's open connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The paced run's requests per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Seconds of each paced run.
    #[arg(long, default_value_t = 10)]
    paced_secs: u64,
    /// Keep the run's folder (database, logs, nginx config).
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
            println!("tracking bench: the run could not be carried out: {err:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- processes

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

/// The threads that serve requests, on either side: the machine's cores
/// (Tokio's default for Waymark, made explicit; nginx's worker processes).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `waymark serve` on the bench's database, its log appended to `serve.log`.
struct Serve {
    child: Child,
}

impl Serve {
    fn start(url: &str, port: u16, dir: &std::path::Path) -> anyhow::Result<Serve> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("serve.log"))?;
        let child = Command::new(waymark_binary())
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--no-demo", "--lease-secs", "5"])
            .args(["--public-url", &format!("http://127.0.0.1:{port}")])
            .env("DATABASE_URL", url)
            // `WAYMARK_BENCH_SERVE_LOG=warn,server::db=debug` shows the
            // write gate's breathers in the run's serve.log (with --keep).
            .env("RUST_LOG", std::env::var("WAYMARK_BENCH_SERVE_LOG").unwrap_or_else(|_| "warn".into()))
            .env("TOKIO_WORKER_THREADS", workers().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        wait_listening(port, "waymark serve")?;
        Ok(Serve { child })
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx serving `/pixel.gif` from the run's folder, on a loopback port,
/// with a config of its own (nothing of the system's is read or written).
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &std::path::Path) -> anyhow::Result<Nginx> {
        let port = free_port();
        let root = dir.join("nginx");
        std::fs::create_dir_all(root.join("www"))?;
        std::fs::write(root.join("www/pixel.gif"), server::channels::tracking::routes::GIF)?;
        // Its workers drop to `user`; as root that would be nobody, who may
        // not read a private temporary folder.
        let user = if is_root() { "user root;" } else { "" };
        let r = root.display();
        let workers = workers();
        let config = format!(
            "{user}
worker_processes {workers};
daemon off;
pid {r}/nginx.pid;
error_log {r}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {r}/body;
    proxy_temp_path {r}/proxy;
    fastcgi_temp_path {r}/fastcgi;
    uwsgi_temp_path {r}/uwsgi;
    scgi_temp_path {r}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {r}/www;
        location = /pixel.gif {{
            default_type image/gif;
            add_header Cache-Control \"no-store, no-cache, must-revalidate, max-age=0\";
            add_header Pragma no-cache;
            expires epoch;
        }}
    }}
}}
"
        );
        std::fs::write(root.join("nginx.conf"), config)?;
        let child = Command::new(nginx_binary())
            .args(["-p", &r.to_string(), "-e", &format!("{r}/error.log"), "-c", &format!("{r}/nginx.conf")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| anyhow::anyhow!("nginx cannot be started ({err}); `.ci/install-bench-tools` installs it"))?;
        wait_listening(port, "nginx")?;
        Ok(Nginx { child, port })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: the master stops its workers and exits.
        let _ = Command::new("kill").args(["-QUIT", &self.child.id().to_string()]).status();
        let since = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && since.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

// ---------------------------------------------------------------- wrk

/// What wrk reported.
#[derive(Clone, Debug, Default)]
struct WrkRun {
    /// Responses received.
    requests: u64,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// Connect, read, write and timeout errors.
    errors: u64,
    /// Responses other than 2xx and 3xx.
    bad_status: u64,
}

fn wrk(url: &str, threads: usize, connections: usize, secs: u64) -> anyhow::Result<WrkRun> {
    let out = Command::new("wrk")
        .args([&format!("-t{threads}"), &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", "--timeout", "5s", url])
        .output()
        .map_err(|err| anyhow::anyhow!("wrk cannot be run ({err}); `.ci/install-bench-tools` installs it"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("wrk's report was not understood:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => run.per_sec = n.parse().ok()?,
            [n, "requests", "in", ..] => run.requests = n.parse().ok()?,
            ["50%", t] => run.p50 = wrk_time(t)?,
            ["99%", t] => run.p99 = wrk_time(t)?,
            ["Non-2xx", "or", "3xx", "responses:", n] => run.bad_status = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                run.errors = rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum();
            }
            _ => {}
        }
    }
    (run.requests > 0).then_some(run)
}

/// `812.00us`, `1.23ms`, `2.00s`.
fn wrk_time(text: &str) -> Option<Duration> {
    let (number, unit) = text.find(|c: char| c.is_ascii_alphabetic()).map(|at| text.split_at(at))?;
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

// ---------------------------------------------------------------- paced client

/// What the paced run saw.
struct Paced {
    sent: u64,
    answered: u64,
    failed: u64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `rate` GETs per second for `secs`, each at its own moment whatever the
/// earlier ones are doing (open loop); a latency counts from the moment
/// the request was due, so time spent queued behind a slow answer shows.
async fn paced(url: &str, rate: u64, secs: u64) -> Paced {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let total = rate * secs;
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due).await;
        let (http, url, latencies, failed) = (http.clone(), url.to_owned(), latencies.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match http.get(&url).send().await {
                Ok(response) => (response.status().is_success() || response.status().is_redirection()) && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                latencies.lock().unwrap().push(due.elapsed());
            } else {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_unstable();
    let at = |p: f64| latencies.get(((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1)) - 1).copied().unwrap_or_default();
    Paced {
        sent: total,
        answered: latencies.len() as u64,
        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------- the run

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The message's hits so far: (opens, clicks), people's and machines'.
async fn hits(pool: &Pool, conversation: i64) -> anyhow::Result<(u64, u64)> {
    let (opens, clicks): (i64, i64) = sqlx::query_as(
        "SELECT open_count + machine_open_count, click_count + machine_click_count FROM conversations WHERE id = $1",
    )
    .bind(conversation)
    .fetch_one(pool)
    .await?;
    Ok((opens as u64, clicks as u64))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn lowest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn highest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Answered ≤ recorded ≤ answered + in flight, noted as a failure if not.
fn check_quiet(what: &str, answered: u64, recorded: u64, in_flight: u64, failures: &mut Vec<String>) -> bool {
    let ok = recorded >= answered && recorded <= answered + in_flight;
    if !ok {
        failures.push(format!("{what}: {answered} answered, {recorded} recorded"));
    }
    ok
}

/// Answered ≤ recorded ≤ answered + in flight: the verdict, printed.
fn check(what: &str, answered: u64, recorded: u64, in_flight: u64, failures: &mut Vec<String>) {
    let ok = recorded >= answered && recorded <= answered + in_flight;
    println!(
        "  {what}: {answered} answered, {recorded} recorded{}",
        if ok { format!(" (at most {in_flight} more may be recorded than answered: requests in flight at the end) ok") } else { " FAILED".into() }
    );
    if !ok {
        failures.push(format!("{what}: {answered} answered, {recorded} recorded"));
    }
}

async fn run(opts: &Opts) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("waymark-bench-tracking-").tempdir()?;
    let url = format!("sqlite://{}/tracking.db", dir.path().display());
    let pool = store::connect(&url).await?;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // 1. One real email, sent by `waymark serve` through its outbox.
    let smtp = SmtpSink::start(false);
    server::channels::settings::update(
        &pool,
        json!({"smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "Shop <news@shop.test>", "timeout_secs": 10}})
            .as_object()
            .unwrap()
            .clone(),
    )
    .await?;
    let store = Store::new(pool.clone());
    let steps = json!([{"id": "s", "kind": "start"},
        {"id": "mail", "kind": "send_email", "settings": {"subject": "The sale", "body":
            "<p>Hello {{ email }}, <a href=\"https://shop.test/sale?from=mail\">the sale</a> is on. <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"}},
        {"id": "done", "kind": "exit"}]);
    let flow = support::publish(&store, "Bench", steps, &["s->mail", "mail->done"]).await;
    let contact: i64 = sqlx::query_scalar("INSERT INTO contacts (email, fields, created_at, updated_at) VALUES ('ada@example.test', '{}', $1, $1) RETURNING id")
        .bind(jiff::Timestamp::now().to_string())
        .fetch_one(&pool)
        .await?;
    let mut serve = Serve::start(&url, port, dir.path())?;
    let runtime = server::runtime::Runtime::new(pool.clone(), Arc::new(server::runtime::SystemClock), "bench");
    runtime.enroll(flow, &[contact]).await?;
    let since = Instant::now();
    while smtp.count() < 1 {
        anyhow::ensure!(since.elapsed() < Duration::from_secs(30), "serve did not send the email (see {}/serve.log)", dir.path().display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let raw = smtp.raw(1);
    let message = mail_parser::MessageParser::default().parse(&raw).ok_or_else(|| anyhow::anyhow!("the email is not MIME"))?;
    let html = message.body_html(0).ok_or_else(|| anyhow::anyhow!("the email has no HTML"))?.into_owned();
    let find = |prefix: &str| -> anyhow::Result<String> {
        let at = html.find(&format!("{base}{prefix}")).ok_or_else(|| anyhow::anyhow!("no {prefix} link in the email: {html}"))?;
        Ok(html[at..].split('"').next().unwrap_or_default().to_owned())
    };
    let (pixel, click) = (find("/t/o/")?, find("/t/c/")?);
    let conversation: i64 = sqlx::query_scalar("SELECT id FROM conversations WHERE contact_id = $1").bind(contact).fetch_one(&pool).await?;
    println!("tracking bench: one email sent by `waymark serve` (SQLite) through aiosmtpd; its pixel {pixel}");
    println!(
        "  and its link {click}; wrk {} threads × {} connections × {} s, {} rounds; {} serving threads each side; {} cores shared by everything",
        opts.threads,
        opts.connections,
        opts.secs,
        opts.rounds,
        workers(),
        workers()
    );

    // 2. Both answer before anything is measured.
    let nginx = Nginx::start(dir.path())?;
    let static_gif = format!("http://127.0.0.1:{}/pixel.gif", nginx.port);
    let probe = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    for (what, url, status) in [("nginx", &static_gif, 200), ("the pixel", &pixel, 200), ("the redirect", &click, 302)] {
        let got = probe.get(url).send().await?.status().as_u16();
        anyhow::ensure!(got == status, "{what} answered {got}, not {status}");
    }

    // 3. wrk: nginx, the pixel, the redirect, in rounds.
    let mut failures = Vec::new();
    let in_flight = opts.connections as u64;
    // `/healthz` goes through the same stack (router, guard, headers, request
    // id, metrics) and touches no database: what is left of the gap to
    // nginx once a hit's own work (token, write, commit) is taken away.
    let stack = format!("{base}/healthz");
    let targets = [
        ("nginx static GIF", &static_gif),
        ("pixel GET /t/o/…", &pixel),
        ("redirect GET /t/c/…", &click),
        ("stack GET /healthz", &stack),
    ];
    // runs[target][round]
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); targets.len()];
    println!();
    println!("{:<7} {:<22} {:>12} {:>10} {:>10} {:>8}  recorded", "round", "wrk", "requests/s", "p50", "p99", "errors");
    for round in 0..opts.rounds {
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1, 2, 3] } else { vec![3, 2, 1, 0] };
        for t in order {
            let (what, url) = targets[t];
            let before = hits(&pool, conversation).await?;
            let run = wrk(url, opts.threads, opts.connections, opts.secs)?;
            let after = hits(&pool, conversation).await?;
            let recorded = match t {
                1 => Some((format!("pixel, round {}", round + 1), after.0 - before.0)),
                2 => Some((format!("redirect, round {}", round + 1), after.1 - before.1)),
                _ => None,
            };
            let note = match &recorded {
                Some((label, recorded)) => {
                    let ok = check_quiet(label, run.requests, *recorded, in_flight, &mut failures);
                    format!("{recorded} of {} answered{}", run.requests, if ok { "" } else { " FAILED" })
                }
                None => String::new(),
            };
            println!(
                "{:<7} {what:<22} {:>12.0} {:>10} {:>10} {:>8}  {note}",
                round + 1,
                run.per_sec,
                ms(run.p50),
                ms(run.p99),
                run.errors + run.bad_status
            );
            runs[t].push(run);
        }
        println!(
            "{:<7} of nginx's rate: pixel {:.0}%, redirect {:.0}%, stack alone {:.0}%",
            round + 1,
            100.0 * runs[1][round].per_sec / runs[0][round].per_sec,
            100.0 * runs[2][round].per_sec / runs[0][round].per_sec,
            100.0 * runs[3][round].per_sec / runs[0][round].per_sec
        );
    }
    let ratios = |t: usize| -> Vec<f64> { runs[t].iter().zip(&runs[0]).map(|(run, ceiling)| run.per_sec / ceiling.per_sec).collect() };
    println!();
    println!(
        "{:<22} {:>12} {:>19} {:>10} {:>9} {:>13}",
        format!("median of {}", opts.rounds),
        "requests/s",
        "(lowest–highest)",
        "p99",
        "of nginx",
        "(lowest–highest)"
    );
    for (t, (what, _)) in targets.iter().enumerate() {
        let rates: Vec<f64> = runs[t].iter().map(|r| r.per_sec).collect();
        let p99s: Vec<f64> = runs[t].iter().map(|r| r.p99.as_secs_f64()).collect();
        let (ratio, spread) = if t == 0 {
            (String::new(), String::new())
        } else {
            let r = ratios(t);
            (format!("{:.0}%", 100.0 * median(&r)), format!("({:.0}–{:.0}%)", 100.0 * lowest(&r), 100.0 * highest(&r)))
        };
        println!(
            "{what:<22} {:>12.0} {:>19} {:>10} {:>9} {:>13}",
            median(&rates),
            format!("({:.0}–{:.0})", lowest(&rates), highest(&rates)),
            ms(Duration::from_secs_f64(median(&p99s))),
            ratio,
            spread
        );
    }
    let (ratio_open, ratio_click) = (median(&ratios(1)), median(&ratios(2)));

    // 4. The paced runs.
    println!();
    println!("paced, open loop, {} requests/s for {} s (latency from each request's due moment):", opts.rate, opts.paced_secs);
    let mut paced_p99 = Vec::new();
    for (what, target) in [("nginx static GIF", &static_gif), ("pixel", &pixel), ("redirect", &click)] {
        let before = hits(&pool, conversation).await?;
        let run = paced(target, opts.rate, opts.paced_secs).await;
        let after = hits(&pool, conversation).await?;
        println!(
            "  {what:<18} sent {} answered {} failed {}  p50 {}  p99 {}  max {}",
            run.sent,
            run.answered,
            run.failed,
            ms(run.p50),
            ms(run.p99),
            ms(run.max)
        );
        match what {
            "pixel" => check("  pixel paced", run.answered, after.0 - before.0, run.failed, &mut failures),
            "redirect" => check("  redirect paced", run.answered, after.1 - before.1, run.failed, &mut failures),
            _ => {}
        }
        if what != "nginx static GIF" {
            paced_p99.push(run.p99);
        }
    }

    // 5. The kill test.
    println!();
    let before = hits(&pool, conversation).await?;
    let kill_after = Duration::from_secs(opts.secs);
    let (secs, threads, connections, target) = (2 * opts.secs, opts.threads, opts.connections, pixel.clone());
    let load = std::thread::spawn(move || wrk(&target, threads, connections, secs));
    std::thread::sleep(kill_after);
    serve.kill();
    let killed_at = Instant::now();
    let load = load.join().expect("wrk's thread")?;
    drop(serve);
    let serve = Serve::start(&url, port, dir.path())?;
    let after = hits(&pool, conversation).await?;
    println!(
        "kill test: wrk against the pixel, `waymark serve` SIGKILLed after {} s, restarted {:.1} s later (after wrk ended):",
        kill_after.as_secs(),
        killed_at.elapsed().as_secs_f64()
    );
    println!("  wrk: {} responses, {} socket errors (the refused connections after the kill)", load.requests, load.errors);
    check("pixel across the kill", load.requests, after.0 - before.0, in_flight, &mut failures);
    drop(serve);

    // The verdicts.
    let worst_p99 = paced_p99.iter().max().copied().unwrap_or_default();
    println!();
    println!(
        "targets: ≥ 50% of nginx's rate (median of {} rounds): pixel {:.0}%, redirect {:.0}% ({}); p99 ≤ 10 ms at {} requests/s: {} ({})",
        opts.rounds,
        100.0 * ratio_open,
        100.0 * ratio_click,
        if ratio_open.min(ratio_click) >= 0.5 { "met" } else { "NOT met" },
        opts.rate,
        ms(worst_p99),
        if worst_p99 <= Duration::from_millis(10) { "met" } else { "NOT met" }
    );
    for failure in &failures {
        println!("FAILED: {failure}");
    }
    if opts.keep {
        let kept = dir.keep();
        println!("the run's folder is kept: {}", kept.display());
    }
    let _ = std::io::stdout().flush();
    Ok(failures.is_empty())
}
