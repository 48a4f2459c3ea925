//! Real local servers for channel tests: an SMTP server (Python's aiosmtpd,
//! installed with pip when missing) and an HTTP server that records what
//! arrives. Each is started by the test on a free port and stopped with it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A local SMTP server writing every message it receives to a folder.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// `auth`: only user `user` with password `secret` may send.
    pub fn start(auth: bool) -> SmtpSink {
        ensure_python("aiosmtpd", "aiosmtpd");
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut command = Command::new("python3");
        command.arg(script).arg(dir.path());
        if auth {
            command.arg("--auth");
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        SmtpSink { child, port, dir }
    }

    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count()
    }

    /// The messages received, in order, once there are `n` (10 s at most).
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count() < n {
            assert!(Instant::now() < deadline, "expected {n} messages, the SMTP server got {}", self.count());
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }
}

impl SmtpSink {
    /// The `n`-th message (from 1) as it arrived, headers and body.
    pub fn raw(&self, n: usize) -> Vec<u8> {
        std::fs::read(self.dir.path().join(format!("{n:06}.eml"))).unwrap()
    }
}

/// Verifies a message's DKIM signature with dkimpy, an independent
/// verifier, answering the key lookup of `name` with the TXT `record`
/// (no DNS is asked). Its verdict and what it said.
pub fn dkim_verify(raw: &[u8], name: &str, record: &str) -> (bool, String) {
    ensure_python("dkim", "dkimpy");
    ensure_python("nacl", "pynacl"); // dkimpy verifies Ed25519 (RFC 8463) with it
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), raw).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dkim_verify.py");
    let out = Command::new("python3").arg(script).arg(file.path()).arg(name).arg(record).output().expect("python3 runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request that reached the HTTP server.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
}

/// An HTTP server recording every request. Paths answer:
/// `/busy` 503 with `Retry-After: 7`; `/redirect?to=URL` 302 to URL;
/// `/files/NAME` a small PDF-typed file; `/big` 26 MB; `/enrich` a JSON
/// profile; `/2010-04-01/Accounts/{sid}/Messages.json` and `…/Calls.json`
/// a Twilio-style 201; under `/denied/` a Twilio-style 401; anything else
/// 200 `ok`.
#[derive(Clone)]
pub struct HttpServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Arrival>>>,
}

impl HttpServer {
    pub async fn start(ip: &str) -> HttpServer {
        let seen: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(answer).with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HttpServer { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(State(seen): State<Arc<Mutex<Vec<Arrival>>>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let arrival = Arrival { method, path: path.clone(), query: query.clone(), headers, body: String::from_utf8_lossy(&body).into_owned() };
    seen.lock().unwrap().push(arrival);
    if path == "/busy" {
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "7")], "busy").into_response();
    }
    if path == "/redirect" {
        let to = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "to").map(|(_, v)| v.into_owned()).unwrap_or_default();
        return (StatusCode::FOUND, [("location", to)]).into_response();
    }
    if path.starts_with("/files/") {
        return ([("content-type", "application/pdf")], b"%PDF-1.4 tiny test file".to_vec()).into_response();
    }
    if path == "/big" {
        return ([("content-type", "application/octet-stream")], vec![7u8; 26 * 1024 * 1024]).into_response();
    }
    if path == "/enrich" {
        return axum::Json(json!({"company": {"name": "Acme & Sons", "size": 120}, "title": "CTO", "empty": null})).into_response();
    }
    if path.starts_with("/denied/") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 20003, "message": "Authenticate", "status": 401}))).into_response();
    }
    if path.ends_with("/Calls.json") {
        let n = seen.lock().unwrap().len();
        return (StatusCode::CREATED, axum::Json(json!({"sid": format!("CA{n:032}"), "status": "queued"}))).into_response();
    }
    if path.ends_with("/Messages.json") {
        let n = seen.lock().unwrap().len();
        return (StatusCode::CREATED, axum::Json(json!({"sid": format!("SM{n:032}"), "status": "queued"}))).into_response();
    }
    "ok".into_response()
}

/// A Python module, or a loud failure after trying to install `package` with pip --user.
fn ensure_python(module: &str, package: &str) {
    let present = || Command::new("python3").args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success());
    if present() {
        return;
    }
    eprintln!("{module} is missing; installing {package} with pip --user");
    let installed = Command::new("python3").args(["-m", "pip", "install", "--user", "--quiet", package]).status();
    assert!(installed.is_ok_and(|s| s.success()) && present(), "these tests need Python 3 with {package}, and it could not be installed");
}

/// A local S3-compatible server (moto), for as long as the value lives.
pub struct MotoS3 {
    child: Child,
    pub endpoint: String,
}

impl MotoS3 {
    pub fn start() -> MotoS3 {
        ensure_python("moto.server", "moto[server]");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        MotoS3 { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local FTP server (pyftpdlib) with one writable user, `user`/`secret`,
/// whose home is a temporary folder.
pub struct FtpServer {
    child: Child,
    pub port: u16,
    pub home: tempfile::TempDir,
}

impl FtpServer {
    pub fn start() -> FtpServer {
        ensure_python("pyftpdlib", "pyftpdlib");
        let home = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-p", &port.to_string(), "-w", "-u", "user", "-P", "secret", "-d"])
            .arg(home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pyftpdlib did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        FtpServer { child, port, home }
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's database: a SQLite file in the test's folder, or, when
/// `WAYMARK_TEST_POSTGRES` names a PostgreSQL server (`make test` sets it),
/// a fresh database there, dropped with this guard. The same tests run on
/// both engines.
pub struct TestDb {
    pub url: String,
    /// The server URL and the database name, to drop it.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(dir: &std::path::Path) -> TestDb {
        let Ok(server) = std::env::var("WAYMARK_TEST_POSTGRES") else {
            return TestDb {
                url: format!("sqlite://{}/waymark.db", dir.display()),
                postgres: None,
            };
        };
        use sqlx::Connection;
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "wm_test_{}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|err| panic!("PostgreSQL at {server}: {err}"));
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        TestDb {
            url: url.to_string(),
            postgres: Some((server, name)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else {
            return;
        };
        // Drop may run inside the test's runtime: use a thread of our own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::Executor::execute(
                        &mut admin,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Creates and publishes a flow from steps and `from:port->to` wires.
pub async fn publish(store: &server::store::Store, name: &str, steps: Value, wires: &[&str]) -> i64 {
    let edges: Vec<Value> = wires
        .iter()
        .map(|w| {
            let (from, to) = w.split_once("->").unwrap();
            let (from, port) = from.split_once(':').unwrap_or((from, "next"));
            json!({"from": from, "port": port, "to": to})
        })
        .collect();
    let doc = app::core::FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": name, "steps": steps, "edges": edges})).unwrap();
    let flow = store.create(name, Some(doc)).await.unwrap();
    store.publish(flow.id, None, "test").await.unwrap();
    flow.id
}

/// Dovecot, the IMAP server the bounce-mailbox tests read from.
pub mod dovecot;
