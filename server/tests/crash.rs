//! A real `waymark serve` process, killed with SIGKILL while it works, then
//! started again on the same database: no participant is lost, no step is
//! recorded twice, every effect is enqueued once under its key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    token: String,
}

/// A write token, made with the command line as an operator would.
fn token(db: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_waymark"))
        .args(["token", "add", "--name", "crash test", "--scope", "write"])
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Server {
    fn start(db: &std::path::Path, port: u16, token: &str) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_waymark"))
            .args(["serve", "--no-demo", "--addr", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", format!("sqlite://{}", db.display()))
            .env("WAYMARK_LEASE_SECS", "2")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("waymark starts");
        let server = Server { child, base: format!("http://127.0.0.1:{port}/api/v1"), token: format!("Bearer {token}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ureq::get(&format!("{}/flows", server.base)).header("Authorization", &server.token).call().is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("waymark did not start");
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let mut response =
            ureq::post(&format!("{}{path}", self.base)).header("Authorization", &self.token).send_json(&body).expect("request succeeds");
        response.body_mut().read_json().unwrap()
    }

    fn kill(mut self) {
        // SIGKILL: no shutdown handler runs
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print('\\n'.join('|'.join(map(str,r)) for r in c.execute(sys.argv[2])))"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn sigkill_mid_batch_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let token = token(&db);
    let server = Server::start(&db, free_port(), &token);

    let flow = server.post("/flows", json!({"document": {
        "format": "waymark.flow/v1", "name": "Crash",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "touch", "kind": "update_contact", "settings": {"changes": [{"field": "touches", "op": "increment", "value": 1}]}},
                  {"id": "tell", "kind": "notify_email", "settings": {"to": "user:1", "subject": "{{ email }} entered"}},
                  {"id": "tag", "kind": "add_to_list", "settings": {"list": "Done"}},
                  {"id": "x", "kind": "exit"}],
        "edges": [{"from": "start", "port": "next", "to": "touch"}, {"from": "touch", "port": "next", "to": "tell"},
                  {"from": "tell", "port": "next", "to": "tag"}, {"from": "tag", "port": "next", "to": "x"}]}}));
    let flow_id = flow["id"].as_i64().unwrap();
    server.post(&format!("/flows/{flow_id}/publish"), json!({}));

    const CONTACTS: usize = 20_000;
    let mut ids = Vec::with_capacity(CONTACTS);
    for i in 0..CONTACTS {
        ids.push(server.post("/contacts", json!({"email": format!("k{i}@x.test")}))["id"].as_i64().unwrap());
    }
    // enroll, then kill while the scheduler is working through them
    server.post(&format!("/flows/{flow_id}/enroll"), json!({"contact_ids": ids}));
    std::thread::sleep(Duration::from_millis(400));
    let done_before = sqlite(&db, "SELECT count(*) FROM participants WHERE status = 'completed'");
    server.kill();
    let done_at_kill: usize = done_before.parse().unwrap();
    assert!(done_at_kill < CONTACTS, "killed mid-run ({done_at_kill} of {CONTACTS} done)");
    eprintln!("killed with {done_at_kill} of {CONTACTS} participants completed");

    let _server = Server::start(&db, free_port(), &token);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: usize = sqlite(&db, "SELECT count(*) FROM participants WHERE status = 'completed'").parse().unwrap();
        if done == CONTACTS {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {CONTACTS} completed after the restart");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sqlite(&db, "SELECT count(*) FROM participants"), CONTACTS.to_string(), "no participant lost or added");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM participant_actions"), (CONTACTS * 5).to_string(), "each step recorded once");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM participant_actions WHERE outcome = 'completed'"), (CONTACTS * 5).to_string());
    assert_eq!(
        sqlite(&db, "SELECT count(*), count(DISTINCT idempotency_key) FROM outbox"),
        format!("{CONTACTS}|{CONTACTS}"),
        "one notification per participant, each under its own key"
    );
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM contacts WHERE json_extract(fields, '$.touches') = 1"),
        CONTACTS.to_string(),
        "no contact updated twice"
    );
}
