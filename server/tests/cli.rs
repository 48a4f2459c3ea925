//! The `waymark` binary as a user runs it: exit codes, output, and a real
//! SQLite file for import / export / migrate.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

fn waymark(args: &[&str], db: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_waymark"));
    command.args(args).env_remove("DATABASE_URL").env("RUST_LOG", "error");
    if let Some(db) = db {
        command.env("DATABASE_URL", format!("sqlite://{}", db.display()));
    }
    command.output().expect("waymark runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn clean_flow() -> Value {
    json!({"format": "waymark.flow/v1", "name": "Clean",
           "steps": [{"id": "start", "kind": "start"}, {"id": "x", "kind": "exit"}],
           "edges": [{"from": "start", "port": "next", "to": "x"}]})
}

#[test]
fn validate_exits_0_1_or_2_as_the_format_says() {
    let dir = tempfile::tempdir().unwrap();
    let clean = write(dir.path(), "clean.json", &clean_flow().to_string());
    let out = waymark(&["validate", &clean, "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result, json!({"errors": [], "warnings": []}));

    let mut looping = clean_flow();
    looping["steps"] = json!([{"id": "start", "kind": "start"}, {"id": "a", "kind": "block"}, {"id": "b", "kind": "opt_out"}]);
    looping["edges"] = json!([{"from": "start", "port": "next", "to": "a"}, {"from": "a", "port": "next", "to": "b"},
                              {"from": "b", "port": "next", "to": "a"}]);
    let bad = write(dir.path(), "loop.json", &looping.to_string());
    let out = waymark(&["validate", &bad, "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["errors"][0]["code"], "instant_loop");
    assert_eq!(result["errors"][0]["step"], "a");
    assert!(result["errors"][0]["message"].as_str().unwrap().contains("no wait"));
    assert_eq!(result["warnings"][0]["code"], "no_way_out");

    // without --json: one line per finding, readable
    let out = waymark(&["validate", &bad], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error") && text.contains("instant_loop") && text.contains("1 error(s)"), "{text}");

    // any JSON object is validated; a missing format is a finding, not a crash
    let object = write(dir.path(), "object.json", r#"{"hello": "world"}"#);
    let out = waymark(&["validate", &object, "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["errors"][0]["code"], "unsupported_format");

    for (name, text) in [("broken.json", "{\"steps\": ["), ("array.json", "[1, 2, 3]"), ("text.json", "hello")] {
        let path = write(dir.path(), name, text);
        let out = waymark(&["validate", &path, "--json"], None);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name), "{name}: the message names the file: {stderr}");
    }
    let out = waymark(&["validate", "/nonexistent/flow.json"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn import_then_export_round_trips_through_a_real_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/folder/waymark.db");
    let out = waymark(&["migrate"], Some(&db));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(db.exists(), "the database and its folder are created");

    let file = write(dir.path(), "clean.json", &clean_flow().to_string());
    let out = waymark(&["import", &file], Some(&db));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("“Clean” as flow 1"), "{said}");

    let again = waymark(&["import", &file], Some(&db));
    assert_eq!(again.status.code(), Some(1), "the name is taken");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let renamed = waymark(&["import", &file, "--name", "Clean copy"], Some(&db));
    assert!(renamed.status.success());

    let out = waymark(&["export", "1"], Some(&db));
    assert!(out.status.success());
    let exported = String::from_utf8(out.stdout).unwrap();
    let original = app::core::FlowDocument::from_value(&clean_flow()).unwrap().to_canonical_json();
    assert_eq!(exported, original);

    let target = dir.path().join("out.json");
    let out = waymark(&["export", "1", "--output", target.to_str().unwrap()], Some(&db));
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(target).unwrap(), original);

    let missing = waymark(&["export", "99"], Some(&db));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no flow with id 99"));

    let not_a_flow = write(dir.path(), "odd.json", r#"{"steps": "many"}"#);
    assert_eq!(waymark(&["import", &not_a_flow], Some(&db)).status.code(), Some(2));
}

#[test]
fn help_documents_the_configuration() {
    let out = waymark(&["--help"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in ["serve", "migrate", "validate", "import", "export", "--database-url", "DATABASE_URL"] {
        assert!(text.contains(expected), "--help mentions {expected}: {text}");
    }
    let serve = String::from_utf8_lossy(&waymark(&["serve", "--help"], None).stdout).into_owned();
    assert!(serve.contains("LEPTOS_SITE_ADDR") && serve.contains("127.0.0.1:3000"), "{serve}");
}

#[test]
fn simulate_prints_the_timeline_and_captured_effects() {
    let dir = tempfile::tempdir().unwrap();
    let flow = json!({"format": "waymark.flow/v1", "name": "Sim",
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "w1", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
                  {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi {{ first_name }}", "body": "Hello"}},
                  {"id": "call", "kind": "call"},
                  {"id": "s1", "kind": "send_sms", "settings": {"text": "Hi"}}],
        "edges": [{"from": "start", "port": "next", "to": "w1"}, {"from": "w1", "port": "next", "to": "e1"},
                  {"from": "e1", "port": "next", "to": "call"}, {"from": "call", "port": "next", "to": "s1"}]});
    let flow_file = write(dir.path(), "flow.json", &flow.to_string());
    let contact = write(dir.path(), "contact.json", r#"{"email": "ada@example.com", "fields": {"first_name": "Ada"}, "mobile": "+15550100"}"#);
    let args = ["simulate", &flow_file, "--contact", &contact, "--start", "2026-11-23T09:00:00Z", "--for", "30d", "--manual-after", "1h", "--json"];
    let out = waymark(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sim: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sim["status"], "completed");
    let steps: Vec<&str> = sim["actions"].as_array().unwrap().iter().map(|a| a["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["start", "w1", "e1", "call", "s1"]);
    assert_eq!(sim["actions"][1]["due_at"], "2026-11-24T09:00:00Z");
    assert_eq!(sim["actions"][3]["done_at"], "2026-11-24T10:00:00Z", "the call is done 1h after it was due");
    assert_eq!(sim["effects"][0], json!({"step": "e1", "kind": "email", "at": "2026-11-24T09:00:00Z",
                                        "to": "ada@example.com", "subject": "Hi Ada", "html": "Hello"}));
    assert_eq!(sim["effects"][1]["kind"], "sms");

    // no --manual-after: the call stays pending and the participant waits
    let out = waymark(&args[..args.len() - 3].iter().copied().chain(["--json"]).collect::<Vec<_>>(), None);
    let sim: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sim["status"], "waiting");
    assert_eq!(sim["actions"][3]["outcome"], "pending");
    assert_eq!(sim["actions"][3]["done_at"], Value::Null);

    let bad = waymark(&["simulate", &flow_file, "--contact", &contact, "--start", "tomorrow", "--for", "30d"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}

#[test]
fn simulate_delivers_contact_events_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let flow = json!({"format": "waymark.flow/v1", "name": "Engaged",
        "settings": {"goal": {"event": {"event": "custom", "name": "purchase"}}},
        "steps": [{"id": "start", "kind": "start"},
                  {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "Hello"}},
                  {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "email_opened", "step": "e1"}],
                                                                  "timeout": {"amount": 2, "unit": "days"}}},
                  {"id": "e2", "kind": "send_email", "settings": {"subject": "Glad you read it", "body": "More"}},
                  {"id": "w2", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}}],
        "edges": [{"from": "start", "port": "next", "to": "e1"}, {"from": "e1", "port": "next", "to": "w"},
                  {"from": "w", "port": "met", "to": "e2"}, {"from": "e2", "port": "next", "to": "w2"}]});
    let flow_file = write(dir.path(), "flow.json", &flow.to_string());
    let contact = write(dir.path(), "contact.json", r#"{"email": "ada@example.com"}"#);
    let events = write(dir.path(), "events.json", &json!([
        {"at": "2026-11-24T12:00:00Z", "event": "custom", "name": "purchase"},
        {"at": "2026-11-23T11:00:00Z", "event": "email_opened", "step": "e1"},
        {"at": "2026-11-23T10:00:00Z", "event": "email_opened", "step": "e9"}
    ]).to_string());
    let args = ["simulate", &flow_file, "--contact", &contact, "--events", &events, "--start", "2026-11-23T09:00:00Z", "--for", "30d", "--json"];
    let out = waymark(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sim: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sim["status"], "converted");
    assert_eq!(sim["events"], json!([
        {"at": "2026-11-23T10:00:00Z", "event": "email_opened", "step": "e9", "effect": "ignored"},
        {"at": "2026-11-23T11:00:00Z", "event": "email_opened", "step": "e1", "effect": "met"},
        {"at": "2026-11-24T12:00:00Z", "event": "custom", "effect": "goal"}
    ]));
    let subjects: Vec<&str> = sim["effects"].as_array().unwrap().iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects, ["Hi", "Glad you read it"]);
    let w2 = &sim["actions"][4];
    assert_eq!((&w2["step"], &w2["outcome"], &w2["reason"]), (&json!("w2"), &json!("skipped"), &json!("goal")));
    assert_eq!(w2["done_at"], "2026-11-24T12:00:00Z", "converted when the purchase came");

    // Without --events the result is as before: no `events` key.
    let plain: Vec<&str> = args.iter().copied().filter(|a| *a != "--events" && *a != events.as_str()).collect();
    let sim: Value = serde_json::from_slice(&waymark(&plain, None).stdout).unwrap();
    assert_eq!(sim["status"], "completed", "timed out, and nothing is connected there");
    assert!(sim.get("events").is_none());

    let bad = write(dir.path(), "bad.json", r#"{"event": "email_opened"}"#);
    let out = waymark(&["simulate", &flow_file, "--contact", &contact, "--events", &bad, "--start", "2026-11-23T09:00:00Z", "--for", "1d"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a list of events"));
}
