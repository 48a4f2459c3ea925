//! Erasure (security audit finding 9): once a contact is deleted — through
//! `DELETE /api/v1/contacts/{id}` or the bulk `delete` action — none of its
//! personal data is left anywhere in the database: not in any table (every
//! text cell of every table is searched, on SQLite and on PostgreSQL) and,
//! on SQLite, not in the database file's bytes either. Its history stays:
//! the timeline's rows, times and outcomes, the messages' and calls'
//! statuses and times, the webhooks' outcomes.
//!
//! The contacts go through everything that copies their data: a CSV import
//! (the import job itself) with a refused row quoting the contact, a flow that emails, texts, calls
//! a webhook, notifies a user, places an automatic call (its provider
//! reports back) and creates a task, a message still queued when deleted,
//! and a bulk run whose criteria name the contact's address — all against
//! real local servers (SMTP sink, HTTP recorder as webhook target and as
//! Twilio-style SMS/voice provider).

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use jiff::SignedDuration;
use serde_json::{json, Value};
use tower::ServiceExt;

use app::core::FlowDocument;
use server::channels::{settings, Channels};
use server::db::{Backend, Pool};
use server::runtime::outbox::{Dispatcher, RetryPolicy};
use server::runtime::import::{self, ImportOptions};
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};
use support::{HttpServer, SmtpSink};

/// The two contacts' personal data, as the file and tables are searched for it.
const FIRST: Person = Person { email: "erase-me-7f3a@x.test", mobile: "+15550199871", first: "Zebulon", last: "Quirke" };
const SECOND: Person = Person { email: "erase-me-too-9c2e@x.test", mobile: "+15550199872", first: "Philomena", last: "Vantongeren" };

struct Person {
    email: &'static str,
    mobile: &'static str,
    first: &'static str,
    last: &'static str,
}

impl Person {
    /// What must not be found, lower-cased: the address (and its local part,
    /// which its URL-encoded form keeps), the number with and without `+`,
    /// each name.
    fn needles(&self) -> Vec<String> {
        let local = self.email.split('@').next().unwrap();
        [self.email, local, self.mobile, self.mobile.trim_start_matches('+'), self.first, self.last].iter().map(|s| s.to_lowercase()).collect()
    }
}

/// The whole app through axum, signed in as an admin.
struct Api {
    app: Router,
    cookie: String,
}

impl Api {
    async fn send(&self, method: Method, uri: &str, body: Vec<u8>, content_type: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={}", self.cookie))
            .body(Body::from(body))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        self.send(method, uri, serde_json::to_vec(&body).unwrap(), "application/json").await
    }

    /// Polls a background job until it is no longer running.
    async fn finished(&self, uri: &str) -> Value {
        for _ in 0..400 {
            let (status, job) = self.send(Method::GET, uri, Vec::new(), "text/plain").await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if job["status"] != "running" {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{uri} never finished");
    }
}

/// What a Twilio-compatible provider does after placing a call: POSTs its
/// progress to the StatusCallback, signed with the account's token.
async fn report_call(callback: &str, sid: &str, to: &str, status: &str, extra: &[(&str, &str)]) -> StatusCode {
    let mut fields: Vec<(String, String)> =
        [("AccountSid", "AC123"), ("CallSid", sid), ("CallStatus", status), ("To", to), ("From", "+12125550100")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    fields.sort();
    let signature = server::channels::api::signature("tok", callback, &fields);
    let response = reqwest::Client::new().post(callback).header("x-twilio-signature", signature).form(&fields).send().await.unwrap();
    StatusCode::from_u16(response.status().as_u16()).unwrap()
}

async fn publish(store: &Store, name: &str, steps: Value, chain: &[&str]) -> i64 {
    let edges: Vec<Value> = chain.windows(2).map(|w| json!({"from": w[0], "port": "next", "to": w[1]})).collect();
    let doc = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": name, "steps": steps, "edges": edges})).unwrap();
    let flow = store.create(name, Some(doc)).await.unwrap();
    store.publish(flow.id, None, "test").await.unwrap();
    flow.id
}

/// Dispatches and runs the scheduler until nothing moves.
async fn settle(runtime: &Runtime, dispatcher: &Dispatcher) {
    for _ in 0..12 {
        let sent = dispatcher.dispatch().await.unwrap();
        let ran = runtime.run_until_idle().await.unwrap();
        if sent == Default::default() && ran.claimed == 0 {
            return;
        }
    }
}

/// A timeline row: participant, visit, step, kind, due, done, outcome, manual.
type Action = (i64, i64, String, String, String, Option<String>, String, i64);
/// A message or call: id, participant, channel, status, provider id, created, sent, duration, ended.
type Message = (i64, Option<i64>, String, String, Option<String>, String, Option<String>, Option<i64>, Option<String>);
/// A webhook call: id, participant, kind, method, status, at.
type HttpCall = (i64, Option<i64>, String, String, Option<i64>, String);

/// The history a deletion must keep, row by row.
#[derive(Debug, PartialEq)]
struct History {
    timeline: Vec<Action>,
    conversations: Vec<Message>,
    http_calls: Vec<HttpCall>,
    /// id, participant, kind, tries, created (the status is checked apart: a queued one is cancelled)
    outbox: Vec<(i64, i64, String, i64, String)>,
}

async fn history(pool: &Pool, participants: &[i64]) -> History {
    let ids = participants.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    History {
        timeline: sqlx::query_as(&format!(
            "SELECT participant_id, visit, step, kind, due_at, done_at, outcome, manual FROM participant_actions
             WHERE participant_id IN ({ids}) ORDER BY participant_id, visit"
        ))
        .fetch_all(pool)
        .await
        .unwrap(),
        conversations: sqlx::query_as(&format!(
            "SELECT id, participant_id, channel, status, provider_id, created_at, sent_at, duration_secs, ended_at FROM conversations
             WHERE participant_id IN ({ids}) ORDER BY id"
        ))
        .fetch_all(pool)
        .await
        .unwrap(),
        http_calls: sqlx::query_as(&format!("SELECT id, participant_id, kind, method, status, at FROM http_calls WHERE participant_id IN ({ids}) ORDER BY id"))
            .fetch_all(pool)
            .await
            .unwrap(),
        outbox: sqlx::query_as(&format!("SELECT id, participant_id, kind, tries, created_at FROM outbox WHERE participant_id IN ({ids}) ORDER BY id"))
            .fetch_all(pool)
            .await
            .unwrap(),
    }
}

/// Every text cell of every table, as (table.column, text).
async fn every_text_cell(pool: &Pool) -> Vec<(String, String)> {
    let mut cells = Vec::new();
    match Backend::of(pool) {
        Backend::Sqlite => {
            let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetch_all(pool).await.unwrap();
            assert!(tables.len() > 20, "{tables:?}");
            for table in tables {
                let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)").bind(&table).fetch_all(pool).await.unwrap();
                assert!(!columns.is_empty(), "{table}");
                for column in columns {
                    // Whatever its type (text, JSON, blob, number), as its bytes.
                    let values: Vec<Option<Vec<u8>>> =
                        sqlx::query_scalar(&format!("SELECT CAST(\"{column}\" AS BLOB) FROM \"{table}\"")).fetch_all(pool).await.unwrap();
                    cells.extend(values.into_iter().flatten().map(|bytes| (format!("{table}.{column}"), String::from_utf8_lossy(&bytes).into_owned())));
                }
            }
        }
        Backend::Postgres => {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
                 JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                 WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' ORDER BY 1, 2",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            assert!(columns.len() > 100, "{columns:?}");
            for (table, column) in columns {
                let texts: Vec<Option<String>> =
                    sqlx::query_scalar(&format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"")).fetch_all(pool).await.unwrap();
                cells.extend(texts.into_iter().flatten().map(|text| (format!("{table}.{column}"), text)));
            }
        }
    }
    cells
}

#[tokio::test]
async fn deleted_contacts_leave_no_personal_data_in_any_table_or_the_database_file_and_keep_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let runtime = Runtime::new(pool.clone(), clock.clone(), "worker").with_files_dir(dir.path().join("files"));
    let store = Store::new(pool.clone());
    let admin = server::auth::accounts::add_user(&pool, "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password").await.unwrap();
    let cookie = server::auth::accounts::open_session(&pool, admin.id).await.unwrap();
    let app = router(AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store.clone(), runtime.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    let api = Api { app, cookie };

    // real local servers: SMTP, a webhook target, a Twilio-style SMS and voice provider
    let smtp = SmtpSink::start(false);
    let hooks = HttpServer::start("127.0.0.1").await;
    let provider = HttpServer::start("127.0.0.1").await;
    let callback = format!("http://{addr}/api/v1/channels/calls/status");
    let integrations = json!({
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "Waymark <news@waymark.test>", "timeout_secs": 5},
        "sms": {"base_url": provider.url(""), "account_sid": "AC123", "token": "tok", "senders": ["+12125550100"],
                "voice": {"status_callback": callback, "ring_secs": 25}},
        "http": {"allowlist": ["127.0.0.1"]},
    });
    settings::update(&pool, integrations.as_object().unwrap().clone()).await.unwrap();
    let policy = RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries: 1 };
    let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Channels::new(pool.clone()))).with_policy(policy);

    let outreach = publish(
        &store,
        "Outreach",
        json!([{"id": "s", "kind": "start"},
               {"id": "e", "kind": "send_email", "settings": {"subject": "Hello {{first_name}} {{last_name}}",
                 "body": "<p>Dear {{first_name}} {{last_name}}, we have {{email}} and {{mobile}} on file.</p>"}},
               {"id": "t", "kind": "send_sms", "settings": {"text": "Hi {{first_name}} {{last_name}}, this is Waymark"}},
               {"id": "h", "kind": "webhook", "settings": {"method": "POST",
                 "url": hooks.url("/hook/{{first_name}}?email={{email}}&mobile={{mobile}}"),
                 "headers": {"X-Contact": "{{email}}"},
                 "body": {"name": "{{first_name}} {{last_name}}", "email": "{{email}}", "mobile": "{{mobile}}"}}},
               {"id": "n", "kind": "notify_email", "settings": {"to": format!("user:{}", admin.id),
                 "subject": "{{first_name}} {{last_name}} is being called", "text": "Reach {{email}} or {{mobile}}."}},
               {"id": "c", "kind": "call", "settings": {"activation": "automatic", "script": "Hello {{first_name}} {{last_name}}"}},
               {"id": "k", "kind": "task", "settings": {"subject": "Phone {{first_name}} {{last_name}} on {{mobile}} about {{email}}"}}]),
        &["s", "e", "t", "h", "n", "c", "k"],
    )
    .await;
    let later = publish(
        &store,
        "Later",
        json!([{"id": "s", "kind": "start"}, {"id": "m", "kind": "send_email", "settings": {"subject": "Later, {{first_name}}", "body": "<p>{{email}}</p>"}}]),
        &["s", "m"],
    )
    .await;

    // the first contact comes from a CSV; its second row is refused, and the reason quotes it
    let file = format!(
        "email,mobile,first_name,last_name\n{e},{m},{f},{l}\n{e},{m} ext 9,{f},{l}\n",
        e = FIRST.email,
        m = FIRST.mobile,
        f = FIRST.first,
        l = FIRST.last
    );
    let path = dir.path().join("people.csv");
    std::fs::write(&path, file).unwrap();
    let options = ImportOptions { list: Some("Webinar".into()), ..ImportOptions::default() };
    import::check(&path, &options).await.unwrap();
    let job = import::create_job(&runtime, &path, Some("people.csv"), &options, "admin@x.test").await.unwrap();
    import::run(&runtime, job, path, options).await.unwrap();
    let job = import::job(&mut pool.acquire().await.unwrap(), job, 10).await.unwrap();
    assert_eq!((job.status.as_str(), job.created, job.failed), ("done", 1, 1), "{job:?}");
    assert!(job.errors[0].1.contains(FIRST.mobile), "the refused row's reason quotes the contact: {job:?}");
    let first: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE email = $1").bind(FIRST.email).fetch_one(&pool).await.unwrap();
    let second = {
        let contact = serde_json::from_value(json!({"email": SECOND.email, "mobile": SECOND.mobile, "timezone": "Europe/Paris",
            "fields": {"first_name": SECOND.first, "last_name": SECOND.last, "company": "Vantongeren Shipping"}, "lists": ["Webinar"]}))
        .unwrap();
        let mut tx = pool.begin().await.unwrap();
        let id = contacts::insert(&mut tx, &contact).await.unwrap();
        tx.commit().await.unwrap();
        id
    };

    // both go through the whole flow: email, text, webhook, notification, call (reported back), task
    let (status, enrolled) = api.json(Method::POST, &format!("/api/v1/flows/{outreach}/enroll"), json!({"contact_ids": [first, second]})).await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let ps: Vec<i64> = enrolled["enrolled"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    runtime.run_until_idle().await.unwrap();
    settle(&runtime, &dispatcher).await;
    let calls: Vec<(i64, String)> =
        sqlx::query_as("SELECT participant_id, provider_id FROM conversations WHERE channel = 'call' ORDER BY participant_id").fetch_all(&pool).await.unwrap();
    assert_eq!(calls.len(), 2, "both calls were placed");
    for ((_, sid), to) in calls.iter().zip([FIRST.mobile, SECOND.mobile]) {
        assert_eq!(report_call(&callback, sid, to, "ringing", &[]).await, StatusCode::OK);
        assert_eq!(report_call(&callback, sid, to, "completed", &[("CallDuration", "42")]).await, StatusCode::OK);
    }
    settle(&runtime, &dispatcher).await;
    for &p in &ps {
        let timeline = runtime.timeline(p).await.unwrap();
        let steps: Vec<(&str, &str)> = timeline.iter().map(|r| (r.step.as_str(), r.outcome.as_str())).collect();
        assert_eq!(
            steps,
            [("s", "completed"), ("e", "completed"), ("t", "completed"), ("h", "completed"), ("n", "completed"), ("c", "completed"), ("k", "pending")],
            "{timeline:?}"
        );
        assert!(timeline[6].subject.as_deref().unwrap().contains("Phone "), "{timeline:?}");
    }
    assert_eq!(smtp.wait_for(4).len(), 4, "two emails to the contacts, two notifications");
    assert_eq!(hooks.arrivals().len(), 2, "two webhooks");
    assert_eq!(provider.arrivals().len(), 4, "two texts, two calls");
    // a form the first contact filled: its fields are an event's
    // properties, which the participant's history copies
    let form = json!({"contact": {"id": first}, "event": "custom", "name": "form_filled",
        "properties": {"name": format!("{} {}", FIRST.first, FIRST.last), "phone": FIRST.mobile}});
    let (status, taken) = api.json(Method::POST, "/api/v1/events", form).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    assert_eq!(runtime.deliver_all_events().await.unwrap().events, 1);
    let state: String = sqlx::query_scalar("SELECT state FROM participants WHERE id = $1").bind(ps[0]).fetch_one(&pool).await.unwrap();
    assert!(state.contains(FIRST.last), "the history keeps the event: {state}");
    // a message for the second contact is still queued when it is deleted
    let (status, queued) = api.json(Method::POST, &format!("/api/v1/flows/{later}/enroll"), json!({"contact_ids": [second]})).await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let queued_p = queued["enrolled"][0].as_i64().unwrap();
    runtime.run_until_idle().await.unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM outbox WHERE participant_id = $1").bind(queued_p).fetch_one(&pool).await.unwrap();
    assert_eq!(status, "queued");

    let all_ps = [ps[0], ps[1], queued_p];
    let before = history(&pool, &all_ps).await;
    assert_eq!(before.conversations.len(), 8, "{:?}", before.conversations);
    assert_eq!(before.http_calls.len(), 2);
    // before the deletions the data is there, as the search below would find it
    let cells = every_text_cell(&pool).await;
    for needle in FIRST.needles().iter().chain(&SECOND.needles()) {
        assert!(cells.iter().any(|(_, text)| text.to_lowercase().contains(needle.as_str())), "{needle} is stored before");
    }

    // one contact through the REST API, the other through a bulk run whose criteria name its address
    let (status, erased) = api.json(Method::DELETE, &format!("/api/v1/contacts/{first}"), json!({})).await;
    assert_eq!((status, erased["erased"].as_bool()), (StatusCode::OK, Some(true)), "{erased}");
    let request = json!({"action": "delete", "criteria": {"contact": [{"field": "email", "value": SECOND.email}]}});
    let (status, run) = api.json(Method::POST, "/api/v1/participants/bulk", request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = api.finished(&format!("/api/v1/bulk-runs/{}", run["id"])).await;
    assert_eq!((run["status"].as_str(), run["count"].as_i64()), (Some("done"), Some(1)), "{run}");

    // nothing more goes out: the queued message is cancelled, not sent
    settle(&runtime, &dispatcher).await;
    assert_eq!(smtp.count(), 4);
    assert_eq!((hooks.arrivals().len(), provider.arrivals().len()), (2, 4));
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM outbox WHERE participant_id = $1").bind(queued_p).fetch_one(&pool).await.unwrap();
    assert_eq!((status.as_str(), error.as_deref()), ("cancelled", Some("The contact was deleted; not sent.")));
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM participants WHERE contact_id IN ($1, $2) ORDER BY id").bind(first).bind(second).fetch_all(&pool).await.unwrap();
    assert_eq!(statuses, ["cancelled", "cancelled", "cancelled"]);

    // the history stays: every timeline row with its times and outcome, every message's and call's status and times
    let after = history(&pool, &all_ps).await;
    assert_eq!(after, before);
    let addresses: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT contact_id, channel, address, subject FROM conversations WHERE channel IN ('email', 'sms', 'call') ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(addresses.len(), 6);
    for (contact, channel, address, subject) in addresses {
        assert_eq!((address, subject), (format!("erased-contact-{contact}"), None), "{channel}: a stable stand-in, no content");
    }
    let call: (String, Option<i64>) =
        sqlx::query_as("SELECT status, duration_secs FROM conversations WHERE channel = 'call' AND participant_id = $1").bind(ps[0]).fetch_one(&pool).await.unwrap();
    assert_eq!(call, ("completed".to_owned(), Some(42)), "the call's disposition stays");
    let task: Option<String> =
        sqlx::query_scalar("SELECT subject FROM participant_actions WHERE participant_id = $1 AND step = 'k'").bind(ps[0]).fetch_one(&pool).await.unwrap();
    assert_eq!(task.as_deref(), Some(format!("Phone erased-contact-{first} on erased-contact-{first} about erased-contact-{first}").as_str()));
    let reason: Option<String> =
        sqlx::query_scalar("SELECT reason FROM participant_actions WHERE participant_id = $1 AND step = 'c'").bind(ps[0]).fetch_one(&pool).await.unwrap();
    assert_eq!(reason.as_deref(), Some("disposition: completed; the call lasted 42 s"), "dispositions stay");
    // records everyone shares keep their sense, with a stand-in for the contact
    let refused: String = sqlx::query_scalar("SELECT reason FROM import_errors").fetch_one(&pool).await.unwrap();
    assert!(refused.starts_with(&format!("“erased-contact-{first} ext 9” is not a mobile number")), "{refused}");
    let criteria: String = sqlx::query_scalar("SELECT criteria FROM bulk_runs").fetch_one(&pool).await.unwrap();
    assert!(criteria.contains(&format!(r#""value":"erased-contact-{second}""#)), "{criteria}");
    let audited: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = 'bulk.delete'").fetch_one(&pool).await.unwrap();
    assert!(audited.contains(&format!("erased-contact-{second}")), "{audited}");
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM list_members").fetch_one(&pool).await.unwrap();
    assert_eq!(members, 0);

    // no table holds any of it
    let cells = every_text_cell(&pool).await;
    let mut found = Vec::new();
    for (person, needle) in FIRST.needles().into_iter().map(|n| (FIRST.email, n)).chain(SECOND.needles().into_iter().map(|n| (SECOND.email, n))) {
        for (column, text) in &cells {
            if text.to_lowercase().contains(&needle) {
                found.push(format!("{person}: “{needle}” in {column}: {text}"));
            }
        }
    }
    assert!(found.is_empty(), "personal data left after erasure:\n{}", found.join("\n"));

    // nor does the SQLite file, freed pages included
    if Backend::of(&pool) == Backend::Sqlite {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
        let mut bytes = std::fs::read(dir.path().join("waymark.db")).unwrap();
        bytes.extend(std::fs::read(dir.path().join("waymark.db-wal")).unwrap_or_default());
        bytes.make_ascii_lowercase();
        let mut in_file = Vec::new();
        for needle in FIRST.needles().into_iter().chain(SECOND.needles()) {
            let count = bytes.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count();
            if count > 0 {
                in_file.push(format!("“{needle}” {count} time(s)"));
            }
        }
        assert!(in_file.is_empty(), "the database file still holds: {}", in_file.join(", "));
    }
}
