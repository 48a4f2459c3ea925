//! Channels over their real protocols, each against a real local server the
//! test starts: SMTP (aiosmtpd), HTTP (an axum server recording what
//! arrives), a Twilio-style SMS API. Flows run on the real runtime and
//! outbox over a SQLite file; assertions read what the servers received.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::Row;
use tower::ServiceExt;

use app::core::contact::Contact;
use app::core::engine::Outcome;
use app::core::FlowDocument;
use server::channels::http::{CallError, Client, Request as HttpRequest};
use server::channels::settings::{self, Http};
use server::channels::Channels;
use server::runtime::outbox::{Dispatcher, RetryPolicy};
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};
use support::{HttpServer, SmtpSink};

struct World {
    store: Store,
    clock: Arc<ManualClock>,
    runtime: Runtime,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let runtime = Runtime::new(pool.clone(), clock.clone(), "worker");
    World { store: Store::new(pool), clock, runtime, _db: db, _dir: dir }
}

impl World {
    /// Publishes `steps` wired start -> first -> ... in order, plus `extra` wires.
    async fn flow(&self, name: &str, steps: Value, wires: &[(&str, &str, &str)]) -> i64 {
        let edges: Vec<Value> = wires.iter().map(|(from, port, to)| json!({"from": from, "port": port, "to": to})).collect();
        let doc = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": name, "steps": steps, "edges": edges})).unwrap();
        let flow = self.store.create(name, Some(doc)).await.unwrap();
        self.store.publish(flow.id, None, "test").await.unwrap();
        flow.id
    }

    async fn enroll(&self, flow: i64, contact: Value) -> i64 {
        let contact: Contact = serde_json::from_value(contact).unwrap();
        let mut tx = self.runtime.pool().begin().await.unwrap();
        let id = contacts::insert(&mut tx, &contact).await.unwrap();
        tx.commit().await.unwrap();
        let p = self.runtime.enroll(flow, &[id]).await.unwrap().0[0];
        self.runtime.run_until_idle().await.unwrap();
        p
    }

    async fn configure(&self, body: Value) {
        settings::update(self.runtime.pool(), body.as_object().unwrap().clone()).await.unwrap();
    }

    fn dispatcher(&self, max_tries: u32) -> Dispatcher {
        let policy = RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries };
        Dispatcher::new(self.runtime.clone(), Arc::new(Channels::new(self.runtime.pool().clone()))).with_policy(policy)
    }

    /// Dispatches once and lets the participants move on.
    async fn dispatch(&self, dispatcher: &Dispatcher) {
        dispatcher.dispatch().await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
    }

    async fn reason(&self, participant: i64) -> (String, Option<String>) {
        let view = self.runtime.participant(participant).await.unwrap();
        (view.status, view.reason)
    }
}

fn smtp_settings(port: u16, username: Option<&str>, password: Option<&str>) -> Value {
    let mut smtp = json!({"host": "127.0.0.1", "port": port, "tls": "none", "from": "Waymark <news@waymark.test>", "timeout_secs": 5});
    if let Some(user) = username {
        smtp["username"] = json!(user);
    }
    if let Some(password) = password {
        smtp["password"] = json!(password);
    }
    smtp
}

#[tokio::test]
async fn an_email_arrives_with_cc_bcc_attachment_both_parts_and_escaped_merge_values() {
    let w = world().await;
    let smtp = SmtpSink::start(true);
    let files = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"smtp": smtp_settings(smtp.port, Some("user"), Some("secret")), "http": {"allowlist": ["127.0.0.1"]}})).await;
    let flow = w
        .flow(
            "Welcome",
            json!([{"id": "s", "kind": "start"},
                   {"id": "e", "kind": "send_email", "settings": {
                       "subject": "Hi {{first_name}}",
                       "body": "<h1>Welcome, {{first_name}}!</h1><p>Your <a href=\"https://waymark.test/guide\">guide</a> is attached.</p>",
                       "cc": "{{manager}}", "bcc": "audit@waymark.test",
                       "attachments": [{"name": "guide.pdf", "url": files.url("/files/guide.pdf")}]}}]),
            &[("s", "next", "e")],
        )
        .await;
    let p = w
        .enroll(flow, json!({"email": "ada@example.test", "fields": {"first_name": "<b>Ada</b> & Co", "manager": "boss@example.test"}}))
        .await;
    w.dispatch(&w.dispatcher(3)).await;

    let message = &smtp.wait_for(1)[0];
    let headers = &message["headers"];
    assert_eq!(headers["subject"], "Hi <b>Ada</b> & Co", "subjects are plain text, not escaped");
    assert_eq!(headers["from"], "Waymark <news@waymark.test>");
    assert_eq!(headers["to"], "ada@example.test");
    assert_eq!(headers["cc"], "boss@example.test");
    assert!(headers.get("bcc").is_none(), "Bcc never appears in the headers: {headers}");
    let mut rcpt: Vec<&str> = message["rcpt_tos"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    rcpt.sort();
    assert_eq!(rcpt, ["ada@example.test", "audit@waymark.test", "boss@example.test"]);
    let parts = message["parts"].as_array().unwrap();
    let types: Vec<&str> = parts.iter().map(|p| p["content_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"]);
    assert_eq!(parts[2]["text"].as_str().unwrap().replace("\r\n", "\n").trim(), "Welcome, <b>Ada</b> & Co!\n\nYour guide (https://waymark.test/guide) is attached.");
    assert!(
        parts[3]["text"].as_str().unwrap().contains("<h1>Welcome, &lt;b&gt;Ada&lt;/b&gt; &amp; Co!</h1>"),
        "merge values are escaped in HTML: {}",
        parts[3]["text"]
    );
    assert_eq!(parts[4]["filename"], "guide.pdf");
    assert_eq!(parts[4]["size"], 23);

    let row = sqlx::query("SELECT channel, address, sender, status, provider_id, contact_id, sent_at FROM conversations WHERE participant_id = $1")
        .bind(p)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("status"), "sent");
    assert_eq!(row.get::<String, _>("channel"), "email");
    assert_eq!(row.get::<String, _>("address"), "ada@example.test");
    assert_eq!(row.get::<String, _>("sender"), "Waymark <news@waymark.test>");
    assert_eq!(format!("<{}>", row.get::<String, _>("provider_id")), headers["message-id"].as_str().unwrap());
    assert!(row.get::<Option<i64>, _>("contact_id").is_some() && row.get::<Option<String>, _>("sent_at").is_some());
    assert_eq!(w.reason(p).await.0, "completed");
}

#[tokio::test]
async fn bad_email_configuration_fails_the_step_with_a_readable_reason() {
    let w = world().await;
    let smtp = SmtpSink::start(true);
    let files = HttpServer::start("127.0.0.1").await;
    let flow = w
        .flow(
            "Mail",
            json!([{"id": "s", "kind": "start"}, {"id": "e", "kind": "send_email", "settings": {"subject": "Hi", "body": "<p>Hello</p>"}}]),
            &[("s", "next", "e")],
        )
        .await;
    let dispatcher = w.dispatcher(1);

    // wrong password: the server's 535 is the reason
    w.configure(json!({"smtp": smtp_settings(smtp.port, Some("user"), Some("wrong"))})).await;
    let p = w.enroll(flow, json!({"email": "a@example.test"})).await;
    w.dispatch(&dispatcher).await;
    let (status, reason) = w.reason(p).await;
    assert_eq!(status, "failed");
    let reason = reason.unwrap();
    assert!(reason.starts_with(&format!("the SMTP server 127.0.0.1:{} refused the message", smtp.port)), "{reason}");
    assert!(reason.contains("535"), "{reason}");
    let error: String = sqlx::query_scalar("SELECT error FROM conversations WHERE participant_id = $1 AND status = 'failed'")
        .bind(p)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(error, reason);

    // nothing listening: worth retrying, then failed with the reason
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    w.configure(json!({"smtp": smtp_settings(closed, None, None)})).await;
    let p = w.enroll(flow, json!({"email": "b@example.test"})).await;
    w.dispatch(&dispatcher).await;
    let reason = w.reason(p).await.1.unwrap();
    assert!(reason.starts_with(&format!("could not send through the SMTP server 127.0.0.1:{closed}")), "{reason}");

    // more than 25 MB of attachments: refused before anything is sent
    w.configure(json!({"smtp": smtp_settings(smtp.port, Some("user"), Some("secret")), "http": {"allowlist": ["127.0.0.1"]}})).await;
    let heavy = w
        .flow(
            "Heavy",
            json!([{"id": "s", "kind": "start"}, {"id": "e", "kind": "send_email", "settings": {"subject": "Big", "body": "<p>x</p>",
                    "attachments": [{"name": "big.bin", "url": files.url("/big")}]}}]),
            &[("s", "next", "e")],
        )
        .await;
    let p = w.enroll(heavy, json!({"email": "c@example.test"})).await;
    w.dispatch(&dispatcher).await;
    assert_eq!(w.reason(p).await.1.unwrap(), "the attachments weigh more than the 25 MB an email may carry (at “big.bin”)");
    assert_eq!(smtp.count(), 0, "nothing reached the SMTP server");
}

#[tokio::test]
async fn webhooks_send_merged_json_and_form_bodies_and_record_the_reply() {
    let w = world().await;
    let server = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"http": {"allowlist": ["127.0.0.1"]}})).await;
    let flow = w
        .flow(
            "Hooks",
            json!([{"id": "s", "kind": "start"},
                   {"id": "j", "kind": "webhook", "settings": {"method": "PUT", "url": server.url("/hook/{{ external_id }}"),
                     "headers": {"X-Token": "t-{{ external_id }}"}, "body": {"name": "{{ first_name }}", "score": 3}}},
                   {"id": "f", "kind": "webhook", "settings": {"url": server.url("/form"), "format": "form",
                     "body": {"email": "{{ email }}", "note": "a&b=c"}}}]),
            &[("s", "next", "j"), ("j", "next", "f")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "ada@example.test", "fields": {"first_name": "Ada", "external_id": "x42"}})).await;
    let dispatcher = w.dispatcher(3);
    w.dispatch(&dispatcher).await;
    w.dispatch(&dispatcher).await;

    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 2);
    let json_call = &arrivals[0];
    assert_eq!((json_call.method.as_str(), json_call.path.as_str()), ("PUT", "/hook/x42"));
    assert_eq!(json_call.headers["x-token"], "t-x42");
    assert_eq!(json_call.headers["content-type"], "application/json");
    assert_eq!(json_call.headers["idempotency-key"], format!("{p}:j:2:1").as_str());
    assert_eq!(serde_json::from_str::<Value>(&json_call.body).unwrap(), json!({"name": "Ada", "score": 3}));
    let form_call = &arrivals[1];
    assert_eq!((form_call.method.as_str(), form_call.path.as_str()), ("POST", "/form"));
    assert_eq!(form_call.headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(form_call.body, "email=ada%40example.test&note=a%26b%3Dc");

    let calls: Vec<(String, i64, String)> = sqlx::query_as("SELECT url, status, excerpt FROM http_calls WHERE participant_id = $1 ORDER BY id")
        .bind(p)
        .fetch_all(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(calls, [(server.url("/hook/x42"), 200, "ok".into()), (server.url("/form"), 200, "ok".into())]);
    assert_eq!(w.reason(p).await.0, "completed");
}

#[tokio::test]
async fn a_busy_webhook_is_retried_after_its_retry_after_then_takes_the_failed_port() {
    let w = world().await;
    let server = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"http": {"allowlist": ["127.0.0.1"]}})).await;
    let flow = w
        .flow(
            "Busy",
            json!([{"id": "s", "kind": "start"}, {"id": "h", "kind": "webhook", "settings": {"url": server.url("/busy")}},
                   {"id": "ok", "kind": "exit"}, {"id": "bad", "kind": "block"}]),
            &[("s", "next", "h"), ("h", "next", "ok"), ("h", "failed", "bad")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "a@example.test"})).await;
    let dispatcher = w.dispatcher(2);
    w.dispatch(&dispatcher).await;
    let next: i64 = sqlx::query_scalar("SELECT next_attempt_at FROM outbox").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(next - w.runtime.now().as_millisecond(), 7_000, "Retry-After: 7, not the 30 s backoff");

    w.clock.advance(SignedDuration::from_secs(7));
    w.dispatch(&dispatcher).await;
    assert_eq!(server.arrivals().len(), 2);
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline[1].outcome, Outcome::Failed);
    assert_eq!(timeline[1].reason.as_deref(), Some("HTTP 503 Service Unavailable: busy (after 2 tries)"));
    assert_eq!(timeline[2].step, "bad", "the failed port was taken");
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_addresses_in_every_spelling_and_behind_redirects() {
    let public = HttpServer::start("127.0.0.1").await;
    let internal = HttpServer::start("127.0.0.2").await;
    let port = public.addr.port();
    let get = |url: String| HttpRequest { method: Method::GET, url, headers: Vec::new(), body: None };

    let guarded = Client::new(&Http::default());
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://user@127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.2:{}/", internal.addr.port()),
    ] {
        match guarded.send(get(url.clone()), 1024).await {
            Err(CallError::Refused(reason)) => {
                assert!(reason.contains("loopback") || reason.contains("user name"), "{url}: {reason}")
            }
            Err(other) => panic!("{url} failed for another reason: {other:?}"),
            Ok(reply) => panic!("{url} was called: {}", reply.status),
        }
    }
    assert!(public.arrivals().is_empty() && internal.arrivals().is_empty(), "nothing reached either server");

    // an allowlisted server may not redirect to an internal address
    let allowed = Client::new(&Http { allowlist: vec!["127.0.0.1".into()], ..Http::default() });
    let to_internal = format!("{}?to={}", public.url("/redirect"), internal.url("/secret"));
    match allowed.send(get(to_internal), 1024).await {
        Err(CallError::Refused(reason)) => assert_eq!(reason, "127.0.0.2 is a loopback address, which outbound calls may not reach"),
        other => panic!("the redirect was followed: {:?}", other.map(|r| r.status)),
    }
    assert!(internal.arrivals().is_empty(), "the internal server was never reached");
    assert_eq!(public.arrivals().len(), 1);

    // a redirect within the allowlist is followed, and the call arrives
    let within = format!("{}?to={}", public.url("/redirect"), public.url("/landing"));
    let reply = allowed.send(get(within), 1024).await.unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (StatusCode::OK, b"ok".as_slice()));
    assert_eq!(public.arrivals().last().unwrap().path, "/landing");
}

#[tokio::test]
async fn a_refused_webhook_fails_for_good_with_the_reason_on_the_timeline() {
    let w = world().await;
    let flow = w
        .flow(
            "Internal",
            json!([{"id": "s", "kind": "start"}, {"id": "h", "kind": "webhook", "settings": {"url": "http://169.254.169.254/latest/meta-data"}},
                   {"id": "bad", "kind": "block"}]),
            &[("s", "next", "h"), ("h", "failed", "bad")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "a@example.test"})).await;
    w.dispatch(&w.dispatcher(5)).await;
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(
        timeline[1].reason.as_deref(),
        Some("refused: 169.254.169.254 is a link-local address, which outbound calls may not reach"),
        "not retried: one try"
    );
    assert_eq!(timeline[2].step, "bad");
}

#[tokio::test]
async fn data_append_maps_reply_fields_onto_the_contact() {
    let w = world().await;
    let server = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"http": {"allowlist": ["127.0.0.1"]}})).await;
    let flow = w
        .flow(
            "Enrich",
            json!([{"id": "s", "kind": "start"},
                   {"id": "d", "kind": "data_append", "settings": {"url": server.url("/enrich?email={{ email }}"),
                     "mapping": {"company.name": "company", "company.size": "employees", "title": "job_title", "empty": "gone", "missing": "nope"}}}]),
            &[("s", "next", "d")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "ada@example.test", "fields": {"gone": "kept"}})).await;
    w.dispatch(&w.dispatcher(3)).await;
    assert_eq!(server.arrivals()[0].query, "email=ada%40example.test");
    assert_eq!(w.reason(p).await.0, "completed");
    let contact_id: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    let mut conn = w.runtime.pool().acquire().await.unwrap();
    let contact = contacts::load(&mut conn, contact_id).await.unwrap();
    assert_eq!(contact.fields["company"], json!("Acme & Sons"));
    assert_eq!(contact.fields["employees"], json!(120));
    assert_eq!(contact.fields["job_title"], json!("CTO"));
    assert_eq!(contact.fields["gone"], json!("kept"), "null and missing reply fields change nothing");
    assert!(!contact.fields.contains_key("nope"));
}

/// The whole app, and an admin's session cookie for it.
async fn signed_in_app(w: &World) -> (axum::Router, String) {
    let state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), w.store.clone(), w.runtime.clone());
    let pool = w.store.pool();
    let admin = server::auth::accounts::add_user(pool, "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password").await.unwrap();
    let cookie = server::auth::accounts::open_session(pool, admin.id).await.unwrap();
    (router(state), cookie)
}

/// A request from the admin's browser (`cookie`), or from a provider (none).
async fn call(app: &axum::Router, cookie: Option<&str>, method: Method, uri: &str, content_type: &str, body: String, signature: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri).header("content-type", content_type);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("waymark_session={cookie}")).header("host", "waymark.test").header("origin", "http://waymark.test");
    }
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn sms_goes_to_the_provider_and_its_delivery_report_updates_the_conversation() {
    let w = world().await;
    let provider = HttpServer::start("127.0.0.1").await;
    let callback = "https://waymark.example/api/v1/channels/sms/status";
    w.configure(json!({"sms": {"base_url": provider.url(""), "account_sid": "AC123", "token": "tok",
                                "senders": ["+12125550100", "+14155550100"], "choice": "area_code", "status_callback": callback}}))
        .await;
    let flow = w
        .flow(
            "Texts",
            json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "send_sms", "settings": {"text": "Hi {{ first_name }} & welcome"}}]),
            &[("s", "next", "t")],
        )
        .await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234", "fields": {"first_name": "Ada"}})).await;
    w.dispatch(&w.dispatcher(3)).await;

    let arrival = &provider.arrivals()[0];
    assert_eq!((arrival.method.as_str(), arrival.path.as_str()), ("POST", "/2010-04-01/Accounts/AC123/Messages.json"));
    assert_eq!(arrival.headers["authorization"], "Basic QUMxMjM6dG9r", "basic auth AC123:tok");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(arrival.body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap();
    assert_eq!(field("To"), "+14155551234");
    assert_eq!(field("From"), "+14155550100", "the sender with the same area code");
    assert_eq!(field("Body"), "Hi Ada & welcome");
    assert_eq!(field("StatusCallback"), callback);
    let sid: String = sqlx::query_scalar("SELECT provider_id FROM conversations WHERE participant_id = $1 AND status = 'sent'")
        .bind(p)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert!(sid.starts_with("SM"));

    let (app, cookie) = signed_in_app(&w).await;
    let fields = vec![("MessageSid".to_owned(), sid.clone()), ("MessageStatus".to_owned(), "delivered".to_owned())];
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields.iter()).finish();
    let form = "application/x-www-form-urlencoded";
    let forged = server::channels::api::signature("not-the-token", callback, &fields);
    let (status, problem) = call(&app, None, Method::POST, "/api/v1/channels/sms/status", form, body.clone(), Some(&forged)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("bad_signature")));
    let signed = server::channels::api::signature("tok", callback, &fields);
    let (status, _) = call(&app, None, Method::POST, "/api/v1/channels/sms/status", form, body, Some(&signed)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, list) = call(&app, Some(&cookie), Method::GET, &format!("/api/v1/participants/{p}/conversations"), "application/json", String::new(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["conversations"][0]["status"], "delivered");
    assert_eq!(list["conversations"][0]["sender"], "+14155550100");
}

#[tokio::test]
async fn integration_settings_keep_their_secrets_on_the_server() {
    let w = world().await;
    let (app, cookie) = signed_in_app(&w).await;
    let put = |body: Value| {
        let app = app.clone();
        let cookie = cookie.clone();
        async move { call(&app, Some(&cookie), Method::PUT, "/api/v1/settings/integrations", "application/json", body.to_string(), None).await }
    };
    let smtp = json!({"host": "smtp.example.test", "port": 587, "tls": "starttls", "username": "mailer", "password": "hunter2", "from": "Waymark <news@waymark.test>"});
    let (status, view) = put(json!({"smtp": smtp})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["smtp"]["password_set"], true);
    assert!(!view.to_string().contains("hunter2"), "the password never comes back: {view}");

    // a PUT without the password keeps it; "" clears it
    let mut changed = smtp.clone();
    changed.as_object_mut().unwrap().remove("password");
    changed["port"] = json!(2525);
    let (_, view) = put(json!({"smtp": changed.clone()})).await;
    assert_eq!((view["smtp"]["port"].as_i64(), view["smtp"]["password_set"].as_bool()), (Some(2525), Some(true)));
    let secret: Option<String> = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = 'smtp'").fetch_one(w.runtime.pool()).await.unwrap();
    // Kept, and encrypted at rest (server::secrets): never the plain text.
    assert!(secret.as_deref().is_some_and(|s| s.starts_with("v1:") && !s.contains("hunter2")), "{secret:?}");
    changed["password"] = json!("");
    let (_, view) = put(json!({"smtp": changed})).await;
    assert_eq!(view["smtp"]["password_set"], false);

    let (status, shown) = call(&app, Some(&cookie), Method::GET, "/api/v1/settings/integrations", "application/json", String::new(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["smtp"]["port"], 2525);
    assert_eq!(shown["sms"], Value::Null);
    assert_eq!(shown["http"], json!({"allowlist": [], "timeout_secs": 10}));

    for (body, field) in [
        (json!({"smtp": {"host": "x", "port": 0, "tls": "none", "from": "a@b.test"}}), "smtp.port"),
        (json!({"smtp": {"host": "x", "port": 25, "tls": "sometimes", "from": "a@b.test"}}), "smtp.tls"),
        (json!({"smtp": {"host": "x", "port": 25, "tls": "none", "from": "nobody"}}), "smtp.from"),
        (json!({"sms": {"base_url": "ftp://x", "account_sid": "AC1", "senders": ["+12125550100"]}}), "sms.base_url"),
        (json!({"sms": {"base_url": "https://api.twilio.com", "account_sid": "AC1", "senders": ["555"]}}), "sms.senders"),
        (json!({"http": {"allowlist": ["not a host!"]}}), "http.allowlist"),
        (json!({"pager": {}}), "pager"),
    ] {
        let (status, problem) = put(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(problem["code"], "invalid_integration");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (_, shown) = call(&app, Some(&cookie), Method::GET, "/api/v1/settings/integrations", "application/json", String::new(), None).await;
    assert_eq!(shown["smtp"]["port"], 2525, "a refused PUT changed nothing");
}

#[tokio::test]
async fn s3_upload_puts_the_contact_into_the_bucket_signed_v4() {
    let w = world().await;
    let moto = support::MotoS3::start();
    let http = reqwest::Client::new();
    assert!(http.put(format!("{}/exports", moto.endpoint)).send().await.unwrap().status().is_success(), "bucket created");
    w.configure(json!({"s3": {"endpoint": moto.endpoint, "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "s3cr3t"}}))
        .await;
    let flow = w
        .flow(
            "Export",
            json!([{"id": "s", "kind": "start"},
                   {"id": "j", "kind": "s3_upload", "settings": {"bucket": "exports", "key": "contacts/{{ email }}.json"}},
                   {"id": "c", "kind": "s3_upload", "settings": {"bucket": "exports", "key": "contacts/{{ email }}.csv", "format": "csv"}},
                   {"id": "m", "kind": "s3_upload", "settings": {"bucket": "missing", "key": "x.json"}}]),
            &[("s", "next", "j"), ("j", "next", "c"), ("c", "next", "m")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "ada@x.test", "fields": {"plan": "gold, yearly"}})).await;
    let dispatcher = w.dispatcher(1);
    for _ in 0..3 {
        w.dispatch(&dispatcher).await;
    }
    // moto wants reads signed too: a GET presigned by rusty-s3 for the object's key
    let bucket = rusty_s3::Bucket::new(moto.endpoint.parse().unwrap(), rusty_s3::UrlStyle::Path, "exports", "us-east-1").unwrap();
    let credentials = rusty_s3::Credentials::new("AKIDEXAMPLE", "s3cr3t");
    let get = |key: &str| {
        use rusty_s3::S3Action;
        let url = rusty_s3::actions::GetObject::new(&bucket, Some(&credentials), key).sign(std::time::Duration::from_secs(60));
        http.get(url).send()
    };
    let json_file: Value = serde_json::from_str(&get("contacts/ada@x.test.json").await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!((json_file["email"].as_str(), json_file["fields"]["plan"].as_str()), (Some("ada@x.test"), Some("gold, yearly")));
    let csv_file = get("contacts/ada@x.test.csv").await.unwrap().text().await.unwrap();
    assert_eq!(csv_file, "email,mobile,timezone,plan\nada@x.test,,,\"gold, yearly\"\n");
    let (status, reason) = w.reason(p).await;
    assert_eq!(status, "failed");
    assert!(reason.as_deref().unwrap().starts_with("S3 refused the upload of missing/x.json: NoSuchBucket"), "{reason:?}");
}

#[tokio::test]
async fn notifications_and_scripts_run_beside_the_flow_and_their_failures_stay_in_the_outbox() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    w.configure(json!({"smtp": smtp_settings(smtp.port, None, None)})).await;
    let flow = w
        .flow(
            "Beside",
            json!([{"id": "s", "kind": "start"},
                   {"id": "n", "kind": "notify_email", "settings": {"to": "owner@waymark.test", "subject": "New lead {{ email }}", "text": "Call <{{ email }}> today."}},
                   {"id": "r", "kind": "run_script", "settings": {"script": "loop { }"}},
                   {"id": "f", "kind": "ftp_upload", "settings": {"path": "/in/{{ email }}.json"}},
                   {"id": "x", "kind": "exit"}]),
            &[("s", "next", "n"), ("n", "next", "r"), ("r", "next", "f"), ("f", "next", "x")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "ada@example.test"})).await;
    assert_eq!(w.reason(p).await.0, "waiting", "only the FTP upload is awaited");
    w.dispatch(&w.dispatcher(1)).await;

    let message = &smtp.wait_for(1)[0];
    assert_eq!(message["headers"]["subject"], "New lead ada@example.test");
    assert_eq!(message["rcpt_tos"], json!(["owner@waymark.test"]));
    let texts: Vec<&str> = message["parts"].as_array().unwrap().iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(texts.len(), 1, "a notification is plain text only");
    assert_eq!(texts[0].trim(), "Call <ada@example.test> today.");

    let outcomes: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT kind, status, last_error FROM outbox WHERE participant_id = $1 ORDER BY id").bind(p).fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(outcomes[0], ("notify_email".into(), "sent".into(), None));
    assert_eq!(outcomes[1].1, "failed");
    assert!(outcomes[1].2.as_deref().unwrap().contains("was stopped"), "{:?}", outcomes[1]);
    assert_eq!(outcomes[2], ("ftp_upload".into(), "failed".into(), Some("no FTP server is configured".into())));
    let (status, reason) = w.reason(p).await;
    assert_eq!((status.as_str(), reason.as_deref()), ("failed", Some("no FTP server is configured")));
}

#[tokio::test]
async fn ftp_upload_stores_the_contact_in_new_folders_and_a_wrong_password_fails_readably() {
    let w = world().await;
    let ftp = support::FtpServer::start();
    w.configure(json!({"ftp": {"host": "127.0.0.1", "port": ftp.port, "username": "user", "password": "secret", "timeout_secs": 5}})).await;
    let flow = w
        .flow(
            "Drop",
            json!([{"id": "s", "kind": "start"},
                   {"id": "f", "kind": "ftp_upload", "settings": {"path": "/in/{{ email }}/contact.csv", "format": "csv"}}]),
            &[("s", "next", "f")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "ada@x.test", "fields": {"plan": "gold"}})).await;
    w.dispatch(&w.dispatcher(1)).await;
    assert_eq!(w.reason(p).await.0, "completed");
    let stored = std::fs::read_to_string(ftp.home.path().join("in/ada@x.test/contact.csv")).unwrap();
    assert_eq!(stored, "email,mobile,timezone,plan\nada@x.test,,,gold\n");

    w.configure(json!({"ftp": {"host": "127.0.0.1", "port": ftp.port, "username": "user", "password": "wrong", "timeout_secs": 5}})).await;
    let p = w.enroll(flow, json!({"email": "bob@x.test"})).await;
    w.dispatch(&w.dispatcher(1)).await;
    let reason = w.reason(p).await.1.unwrap();
    assert!(reason.starts_with(&format!("the FTP server 127.0.0.1:{} refused the login", ftp.port)), "{reason}");
}

#[tokio::test]
async fn crm_push_upserts_the_contact_in_zoho_and_keap_shapes() {
    let w = world().await;
    let crm = HttpServer::start("127.0.0.1").await;
    let flow = |provider: &'static str| {
        json!([{"id": "s", "kind": "start"}, {"id": "c", "kind": "crm_push", "settings": {"provider": provider, "operation": "upsert"}}])
    };
    let contact = json!({"email": "ada@x.test", "mobile": "+14155551234", "fields": {"first_name": "Ada", "last_name": "Lovelace"}});

    w.configure(json!({"crm": {"provider": "zoho", "base_url": crm.url(""), "token": "z-tok"}})).await;
    let zoho = w.flow("Zoho", flow("zoho"), &[("s", "next", "c")]).await;
    let p = w.enroll(zoho, contact.clone()).await;
    w.dispatch(&w.dispatcher(1)).await;
    assert_eq!(w.reason(p).await.0, "completed");
    let call = &crm.arrivals()[0];
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/crm/v2/Contacts/upsert"));
    assert_eq!(call.headers["authorization"], "Zoho-oauthtoken z-tok");
    assert_eq!(
        serde_json::from_str::<Value>(&call.body).unwrap(),
        json!({"data": [{"Email": "ada@x.test", "First_Name": "Ada", "Last_Name": "Lovelace", "Mobile": "+14155551234"}],
               "duplicate_check_fields": ["Email"]})
    );

    w.configure(json!({"crm": {"provider": "keap", "base_url": crm.url(""), "token": "k-tok"}})).await;
    let keap = w.flow("Keap", flow("keap"), &[("s", "next", "c")]).await;
    let p = w.enroll(keap, json!({"email": "grace@x.test", "mobile": "+14155551234", "fields": {"first_name": "Grace", "last_name": "Hopper"}})).await;
    w.dispatch(&w.dispatcher(1)).await;
    assert_eq!(w.reason(p).await.0, "completed");
    let call = &crm.arrivals()[1];
    assert_eq!((call.method.as_str(), call.path.as_str()), ("PUT", "/crm/rest/v1/contacts"));
    assert_eq!(call.headers["authorization"], "Bearer k-tok");
    assert_eq!(
        serde_json::from_str::<Value>(&call.body).unwrap(),
        json!({"duplicate_option": "Email", "given_name": "Grace", "family_name": "Hopper",
               "email_addresses": [{"email": "grace@x.test", "field": "EMAIL1"}],
               "phone_numbers": [{"number": "+14155551234", "field": "PHONE1"}]})
    );

    // the step names the other CRM: refused with the reason, nothing sent
    let p = w.enroll(zoho, json!({"email": "bob@x.test"})).await;
    w.dispatch(&w.dispatcher(1)).await;
    assert_eq!(w.reason(p).await.1.as_deref(), Some("the step pushes to “zoho”, but the CRM connection is Keap"));
    assert_eq!(crm.arrivals().len(), 2);
}

/// The whole app on a real port, as a provider reaches it.
async fn served_app(w: &World) -> std::net::SocketAddr {
    let (app, _) = signed_in_app(w).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// What a Twilio-compatible provider does after placing a call: POSTs the
/// call's progress to its StatusCallback, signed with `token`.
async fn report_call(callback: &str, token: &str, sid: &str, status: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut fields: Vec<(String, String)> =
        [("AccountSid", "AC123"), ("CallSid", sid), ("CallStatus", status), ("To", "+14155551234"), ("From", "+14155550100")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    fields.sort();
    let signature = server::channels::api::signature(token, callback, &fields);
    let response = reqwest::Client::new().post(callback).header("x-twilio-signature", signature).form(&fields).send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

fn voice_settings(base_url: &str, callback: &str) -> Value {
    json!({"sms": {"base_url": base_url, "account_sid": "AC123", "token": "tok", "senders": ["+12125550100", "+14155550100"],
                   "choice": "area_code", "voice": {"status_callback": callback, "ring_secs": 25}}})
}

async fn call_record(w: &World, p: i64) -> (String, Option<String>, Option<String>, Option<i64>, Option<String>, Option<String>) {
    sqlx::query_as("SELECT status, provider_id, sender, duration_secs, sent_at, ended_at FROM conversations WHERE participant_id = $1 AND channel = 'call'")
        .bind(p)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_automatic_call_is_placed_and_its_signed_status_reports_decide_the_step() {
    let w = world().await;
    let provider = HttpServer::start("127.0.0.1").await;
    let callback = format!("http://{}/api/v1/channels/calls/status", served_app(&w).await);
    w.configure(voice_settings(&provider.url(""), &callback)).await;
    let flow = w
        .flow(
            "Calls",
            json!([{"id": "s", "kind": "start"},
                   {"id": "c", "kind": "call", "settings": {"activation": "automatic", "script": "Hello {{ first_name }}, this is <Waymark>"}},
                   {"id": "after", "kind": "task", "settings": {"subject": "Follow up"}}]),
            &[("s", "next", "c"), ("c", "next", "after")],
        )
        .await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234", "owner": "agent@x.test", "fields": {"first_name": "Ada & Co"}})).await;
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!((timeline[1].step.as_str(), timeline[1].outcome, timeline[1].manual), ("c", Outcome::Pending, false), "no task for an agent");
    w.dispatch(&w.dispatcher(3)).await;

    let arrival = &provider.arrivals()[0];
    assert_eq!((arrival.method.as_str(), arrival.path.as_str()), ("POST", "/2010-04-01/Accounts/AC123/Calls.json"));
    assert_eq!(arrival.headers["authorization"], "Basic QUMxMjM6dG9r", "basic auth AC123:tok");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(arrival.body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(field("To"), ["+14155551234"]);
    assert_eq!(field("From"), ["+14155550100"], "the sender pool's number with the same area code");
    assert_eq!(field("Twiml"), ["<Response><Say>Hello Ada &amp; Co, this is &lt;Waymark&gt;</Say></Response>"]);
    assert!(field("Url").is_empty());
    assert_eq!(field("StatusCallback"), [callback.as_str()]);
    assert_eq!(field("StatusCallbackMethod"), ["POST"]);
    assert_eq!(field("StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
    assert_eq!((field("Timeout"), field("TimeLimit")), (vec!["25"], vec!["3600"]));
    let (status, sid, sender, duration, sent_at, ended_at) = call_record(&w, p).await;
    let sid = sid.unwrap();
    assert_eq!((status.as_str(), sender.as_deref(), duration), ("queued", Some("+14155550100"), None));
    assert!(sid.starts_with("CA") && sent_at.is_some() && ended_at.is_none());
    assert_eq!((w.reason(p).await.0.as_str(), w.runtime.participant(p).await.unwrap().step.as_deref()), ("waiting", Some("c")));

    // progress moves the record, not the participant
    assert_eq!(report_call(&callback, "tok", &sid, "ringing", &[]).await.0, StatusCode::OK);
    assert_eq!(call_record(&w, p).await.0, "ringing");
    // a report not signed with the account's token is refused and changes nothing
    let (status, problem) = report_call(&callback, "not-the-token", &sid, "completed", &[("CallDuration", "1")]).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("bad_signature")));
    assert_eq!(call_record(&w, p).await.0, "ringing");
    let (status, problem) = report_call(&callback, "tok", "CA-unknown", "completed", &[]).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("call_not_found")));
    assert_eq!(report_call(&callback, "tok", &sid, "in-progress", &[]).await.0, StatusCode::OK);
    assert_eq!(w.runtime.participant(p).await.unwrap().step.as_deref(), Some("c"));

    // the final status is the call's disposition; the participant moves on
    assert_eq!(report_call(&callback, "tok", &sid, "completed", &[("CallDuration", "42")]).await.0, StatusCode::OK);
    let (status, _, _, duration, _, ended_at) = call_record(&w, p).await;
    assert_eq!((status.as_str(), duration), ("completed", Some(42)));
    assert!(ended_at.is_some());
    let view = w.runtime.participant(p).await.unwrap();
    assert_eq!((view.status.as_str(), view.step.as_deref()), ("waiting", Some("after")));
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline[1].outcome, Outcome::Completed);
    assert_eq!(timeline[1].reason.as_deref(), Some("disposition: completed; the call lasted 42 s"));
    assert_eq!(timeline[2].step, "after");

    // a late or repeated report changes nothing
    assert_eq!(report_call(&callback, "tok", &sid, "ringing", &[]).await.0, StatusCode::OK);
    assert_eq!(report_call(&callback, "tok", &sid, "completed", &[("CallDuration", "42")]).await.0, StatusCode::OK);
    assert_eq!(call_record(&w, p).await.0, "completed");
    assert_eq!(w.runtime.timeline(p).await.unwrap().len(), 3);
    assert_eq!(provider.arrivals().len(), 1, "placed once");
}

#[tokio::test]
async fn a_call_that_fails_or_never_ends_fails_the_step_with_a_reason() {
    let w = world().await;
    let provider = HttpServer::start("127.0.0.1").await;
    let callback = format!("http://{}/api/v1/channels/calls/status", served_app(&w).await);
    w.configure(voice_settings(&provider.url(""), &callback)).await;
    let flow = w
        .flow(
            "Calls",
            json!([{"id": "s", "kind": "start"}, {"id": "c", "kind": "call", "settings": {"activation": "automatic", "script": "Hi"}}]),
            &[("s", "next", "c")],
        )
        .await;
    let dispatcher = w.dispatcher(1);

    // the carrier could not connect it
    let p = w.enroll(flow, json!({"mobile": "+14155551234"})).await;
    w.dispatch(&dispatcher).await;
    let sid = call_record(&w, p).await.1.unwrap();
    assert_eq!(report_call(&callback, "tok", &sid, "failed", &[("ErrorCode", "32009")]).await.0, StatusCode::OK);
    assert_eq!(w.reason(p).await, ("failed".into(), Some("the telephony provider could not place the call (status failed)".into())));
    let error: Option<String> = sqlx::query_scalar("SELECT error FROM conversations WHERE participant_id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(error.as_deref(), Some("the provider reported error 32009"));

    // no final status ever: past the deadline the step fails, and a late report is kept on the record only
    let p = w.enroll(flow, json!({"mobile": "+14155551234"})).await;
    w.dispatch(&dispatcher).await;
    let sid = call_record(&w, p).await.1.unwrap();
    w.clock.advance(app::core::engine::CALL_OUTCOME_DEADLINE - SignedDuration::from_secs(1));
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(w.reason(p).await.0, "waiting");
    w.clock.advance(SignedDuration::from_secs(1));
    w.runtime.run_until_idle().await.unwrap();
    let (status, reason) = w.reason(p).await;
    assert_eq!(status, "failed");
    assert_eq!(reason.as_deref(), Some("no final status from the telephony provider within 1h 30m; the call's outcome is unknown"));
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!((timeline[1].outcome, timeline[1].reason.as_deref()), (Outcome::Failed, reason.as_deref()));
    assert_eq!(report_call(&callback, "tok", &sid, "completed", &[("CallDuration", "5")]).await.0, StatusCode::OK);
    assert_eq!(call_record(&w, p).await.0, "completed");
    assert_eq!(w.reason(p).await.0, "failed");

    // bad configuration: each a readable reason, nothing placed
    let placed = provider.arrivals().len();
    let p = w.enroll(flow, json!({"mobile": "555-0100", "fields": {}})).await;
    w.dispatch(&dispatcher).await;
    assert_eq!(w.reason(p).await.1.as_deref(), Some("“555-0100” is not a phone number in E.164 form (+15551234567)"));
    let mut settings = voice_settings(&provider.url("/denied"), &callback);
    w.configure(settings.clone()).await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234"})).await;
    w.dispatch(&dispatcher).await;
    assert_eq!(w.reason(p).await.1.as_deref(), Some("the telephony provider refused the account id or token: Authenticate (error 20003)"));
    settings["sms"].as_object_mut().unwrap().remove("voice");
    w.configure(settings).await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234"})).await;
    w.dispatch(&dispatcher).await;
    let reason = w.reason(p).await.1.unwrap();
    assert!(reason.starts_with("automatic calls are not set up"), "{reason}");
    w.configure(json!({"sms": null})).await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234"})).await;
    w.dispatch(&dispatcher).await;
    assert!(w.reason(p).await.1.unwrap().starts_with("no telephony provider is configured"));
    assert_eq!(provider.arrivals().len(), placed + 1, "only the refused request reached the provider");

    // the voice settings are checked when saved
    let bad = json!({"sms": {"base_url": "https://api.twilio.com", "account_sid": "AC1", "senders": ["+12125550100"],
                              "voice": {"status_callback": "not a url"}}});
    let err = settings::update(w.runtime.pool(), bad.as_object().unwrap().clone()).await.unwrap_err();
    assert_eq!(err.to_string(), "The integration setting sms.voice.status_callback is not an http(s) URL (calls report their outcome there).");
}

#[tokio::test]
async fn notifications_go_to_a_user_by_id_or_as_the_record_owner() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    let provider = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"smtp": smtp_settings(smtp.port, None, None),
                       "sms": {"base_url": provider.url(""), "account_sid": "AC1", "token": "t", "senders": ["+12125550100"]}}))
        .await;
    let pool = w.store.pool();
    let grace = server::auth::accounts::add_user(pool, "Grace@Waymark.test", "Grace", app::auth::Role::Agent, "a long enough password").await.unwrap();
    let flow = w
        .flow(
            "Tell",
            json!([{"id": "s", "kind": "start"},
                   {"id": "by_id", "kind": "notify_email", "settings": {"to": format!("user:{}", grace.id), "subject": "By id: {{ email }}"}},
                   {"id": "owner", "kind": "notify_email", "settings": {"to": "record_owner", "subject": "As owner: {{ email }}"}},
                   {"id": "nobody", "kind": "notify_email", "settings": {"to": "user:999", "subject": "Lost"}},
                   {"id": "text", "kind": "notify_sms", "settings": {"to": format!("user:{}", grace.id), "text": "Hi"}}]),
            &[("s", "next", "by_id"), ("by_id", "next", "owner"), ("owner", "next", "nobody"), ("nobody", "next", "text")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "lead@x.test", "owner": "grace@waymark.test"})).await;
    let orphan = w.enroll(flow, json!({"email": "orphan@x.test"})).await;
    w.dispatch(&w.dispatcher(1)).await;

    let messages = smtp.wait_for(3);
    let mut got: Vec<(&str, &str)> = messages.iter().map(|m| (m["rcpt_tos"][0].as_str().unwrap(), m["headers"]["subject"].as_str().unwrap())).collect();
    got.sort();
    let grace = "Grace@Waymark.test";
    assert_eq!(got, [(grace, "As owner: lead@x.test"), (grace, "By id: lead@x.test"), (grace, "By id: orphan@x.test")]);
    let pool = w.runtime.pool().clone();
    let outcomes = |p: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, Option<String>)>("SELECT step, status, last_error FROM outbox WHERE participant_id = $1 ORDER BY id")
                .bind(p)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let sent = outcomes(p).await;
    assert_eq!(sent[0], ("by_id".into(), "sent".into(), None));
    assert_eq!(sent[1], ("owner".into(), "sent".into(), None));
    assert_eq!(sent[2], ("nobody".into(), "failed".into(), Some("there is no Waymark user “999” to notify".into())));
    assert_eq!(
        sent[3],
        ("text".into(), "failed".into(), Some("Waymark users have no mobile number on record, so Grace@Waymark.test cannot be notified by SMS; write a number (+15551234567) in “to”".into()))
    );
    assert_eq!(outcomes(orphan).await[1], ("owner".into(), "failed".into(), Some("the contact has no record owner to notify".into())));
    assert!(provider.arrivals().is_empty(), "no SMS went out");
    assert_eq!(w.reason(p).await.0, "completed", "the participant does not wait for notifications");
    assert_eq!(smtp.count(), 3);
}

#[tokio::test]
async fn a_merge_value_in_a_webhook_url_stays_one_query_value_and_body_strings_stay_strings() {
    let w = world().await;
    let server = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"http": {"allowlist": ["127.0.0.1"]}})).await;
    let flow = w
        .flow(
            "Escaped hook",
            json!([{"id": "s", "kind": "start"},
                   {"id": "h", "kind": "webhook", "settings": {"url": server.url("/hook?name={{ first_name }}"),
                     "body": {"note": "{{ last_name }}"}}}]),
            &[("s", "next", "h")],
        )
        .await;
    let last_name = r#""},"admin":true,"x":""#;
    let p = w.enroll(flow, json!({"email": "bob@example.test", "fields": {"first_name": "bob&admin=true#", "last_name": last_name}})).await;
    w.dispatch(&w.dispatcher(3)).await;

    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 1);
    let hook = &arrivals[0];
    assert_eq!(hook.path, "/hook", "the rest of the URL was not cut off");
    assert_eq!(hook.query, "name=bob%26admin%3Dtrue%23");
    let params: Vec<(String, String)> = url::form_urlencoded::parse(hook.query.as_bytes()).into_owned().collect();
    assert_eq!(params, [("name".to_owned(), "bob&admin=true#".to_owned())], "exactly one parameter, holding the whole value");
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body, json!({"note": last_name}), "the value stays one JSON string: no admin key");
    assert_eq!(w.reason(p).await.0, "completed");
}

#[tokio::test]
async fn a_merge_value_with_a_line_break_in_a_webhook_header_fails_the_step_once_without_a_call() {
    let w = world().await;
    let server = HttpServer::start("127.0.0.1").await;
    w.configure(json!({"http": {"allowlist": ["127.0.0.1"]}})).await;
    let flow = w
        .flow(
            "Header hook",
            json!([{"id": "s", "kind": "start"},
                   {"id": "h", "kind": "webhook", "settings": {"url": server.url("/hook"), "headers": {"X-Name": "{{ first_name }}"}}},
                   {"id": "bad", "kind": "block"}]),
            &[("s", "next", "h"), ("h", "failed", "bad")],
        )
        .await;
    let p = w.enroll(flow, json!({"email": "bob@example.test", "fields": {"first_name": "bob\r\nX-Admin: true"}})).await;
    let dispatcher = w.dispatcher(5);
    w.dispatch(&dispatcher).await;
    w.clock.advance(SignedDuration::from_hours(2));
    w.dispatch(&dispatcher).await;

    assert!(server.arrivals().is_empty(), "no request went out, so no second header either");
    let (status, tries, error): (String, i64, Option<String>) =
        sqlx::query_as("SELECT status, tries, last_error FROM outbox WHERE participant_id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!((status.as_str(), tries), ("failed", 1), "not retried: {error:?}");
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline[1].outcome, Outcome::Failed);
    assert_eq!(timeline[1].reason.as_deref(), Some("the X-Name header's value has a line break or another character a header cannot carry"));
    assert_eq!(timeline[2].step, "bad", "the failed port was taken");
}
