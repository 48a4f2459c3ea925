//! The email providers' webhooks over HTTP, in their documented shapes,
//! with real signatures made here by an independent implementation
//! (OpenSSL's command line): Amazon SNS (an RSA key and a self-signed
//! certificate served from a loopback server the test-only setting
//! allows), SendGrid (an ECDSA P-256 key), Postmark (HTTP Basic), Mailgun
//! (HMAC-SHA256). Emails go out through aiosmtpd first, so each event
//! names a real message; it must reach the conversation, the contact and
//! the waiting participant, once. A bad signature is 403 `bad_signature`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::Row;
use tower::ServiceExt;

use app::core::contact::Contact;
use server::channels::settings;
use server::channels::Channels;
use server::runtime::outbox::{Dispatcher, RetryPolicy};
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};
use support::SmtpSink;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:waymark-ses";

struct World {
    app: Router,
    store: Store,
    runtime: Runtime,
    clock: Arc<ManualClock>,
    admin: String,
    marketer: String,
    keys: tempfile::TempDir,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    // A key of this test's own: secrets never touch a shared key file.
    server::secrets::use_keyring(store.pool(), server::secrets::Keyring::generate());
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let runtime = Runtime::new(store.pool().clone(), clock.clone(), "worker-a");
    let state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store.clone(), runtime.clone());
    let pool = store.pool();
    let admin = server::auth::accounts::add_user(pool, "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password").await.unwrap();
    let marketer = server::auth::accounts::add_user(pool, "m@x.test", "M", app::auth::Role::Marketer, "a long enough password").await.unwrap();
    let admin = server::auth::accounts::open_session(pool, admin.id).await.unwrap();
    let marketer = server::auth::accounts::open_session(pool, marketer.id).await.unwrap();
    World { app: router(state), store, runtime, clock, admin, marketer, keys: tempfile::tempdir().unwrap(), _db: db, _dir: dir }
}

impl World {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, content_type, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    async fn as_user(&self, cookie: &str, method: Method, uri: &str, body: Value) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={cookie}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.send(request).await
    }

    /// A provider's POST: no cookie, its own headers, the exact body.
    async fn hook(&self, uri: &str, headers: &[(&str, String)], content_type: &str, body: &str) -> Reply {
        let mut request = Request::builder().method(Method::POST).uri(uri).header(header::HOST, "waymark.test").header(header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send(request.body(Body::from(body.to_owned())).unwrap()).await
    }

    async fn contact(&self, email: &str) -> i64 {
        let contact: Contact = serde_json::from_value(json!({"email": email})).unwrap();
        let mut tx = self.runtime.pool().begin().await.unwrap();
        let id = contacts::insert(&mut tx, &contact).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    async fn load(&self, contact: i64) -> Contact {
        let mut conn = self.runtime.pool().acquire().await.unwrap();
        contacts::load(&mut conn, contact).await.unwrap()
    }

    async fn settle(&self) {
        self.runtime.deliver_all_events().await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
    }

    async fn events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM contact_events").fetch_one(self.runtime.pool()).await.unwrap()
    }

    async fn conversation(&self, message_id: &str) -> sqlx::any::AnyRow {
        sqlx::query("SELECT bounce_type, bounce_status, bounce_diagnostic, complained_at, auto_replied_at FROM conversations WHERE provider_id = $1")
            .bind(message_id)
            .fetch_one(self.runtime.pool())
            .await
            .unwrap()
    }

    /// Runs OpenSSL in the keys folder, feeding `input`; its standard output.
    fn openssl(&self, args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .current_dir(self.keys.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("these tests need the openssl command");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn sign(&self, key: &str, digest: &str, text: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.openssl(&["dgst", digest, "-sign", key], text))
    }
}

/// A loopback HTTPS stand-in for Amazon: serves the signing certificate and
/// records subscription confirmations.
struct Amazon {
    base: String,
    confirmations: Arc<Mutex<Vec<String>>>,
}

async fn amazon(cert: String) -> Amazon {
    let confirmations: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = confirmations.clone();
    let app = axum::Router::new()
        .route("/SimpleNotificationService-test.pem", axum::routing::get(move || async move { cert.clone() }))
        .route(
            "/confirm",
            axum::routing::get(move |uri: axum::http::Uri| async move {
                seen.lock().unwrap().push(uri.query().unwrap_or_default().to_owned());
                "<ConfirmSubscriptionResponse/>"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Amazon { base, confirmations }
}

/// An SNS message signed as Amazon signs (string to sign, RSA, SHA1 for
/// version 1 or SHA256 for 2).
fn sns(w: &World, kind: &str, fields: &[(&str, &str)], version: &str, cert_url: &str) -> Value {
    let mut message = json!({"Type": kind, "TopicArn": TOPIC, "Timestamp": "2026-11-23T09:05:00.000Z",
                             "SignatureVersion": version, "SigningCertURL": cert_url});
    for (name, value) in fields {
        message[*name] = json!(value);
    }
    let order: &[&str] = if kind == "Notification" {
        &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    } else {
        &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    };
    let mut text = String::new();
    for name in order {
        if let Some(value) = message.get(*name).and_then(Value::as_str) {
            text.push_str(&format!("{name}\n{value}\n"));
        }
    }
    message["Signature"] = json!(w.sign("sns.key", if version == "1" { "-sha1" } else { "-sha256" }, text.as_bytes()));
    message
}

fn id_of(sink: &SmtpSink, n: usize, to: &str) -> String {
    let messages = sink.wait_for(n);
    let message = messages.iter().find(|m| m["headers"]["to"].as_str() == Some(to)).unwrap();
    message["headers"]["message-id"].as_str().unwrap().trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

#[tokio::test]
async fn each_providers_signed_events_reach_the_conversation_the_contact_and_the_waiting_participant() {
    let w = world().await;
    let sink = SmtpSink::start(false);
    let smtp = json!({"smtp": {"host": "127.0.0.1", "port": sink.port, "tls": "none", "from": "Waymark <news@waymark.test>", "timeout_secs": 5}});
    settings::update(w.runtime.pool(), smtp.as_object().unwrap().clone()).await.unwrap();

    // Keys made by OpenSSL: RSA + self-signed certificate for SNS, P-256 for SendGrid.
    w.openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "sns.key", "-out", "sns.pem", "-days", "2", "-subj", "/CN=sns.amazonaws.com"], b"");
    w.openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sendgrid.key"], b"");
    let sendgrid_public = base64::engine::general_purpose::STANDARD.encode(w.openssl(&["ec", "-in", "sendgrid.key", "-pubout", "-outform", "DER"], b""));
    let cert = std::fs::read_to_string(w.keys.path().join("sns.pem")).unwrap();
    let aws = amazon(cert).await;
    let cert_url = format!("{}SimpleNotificationService-test.pem", aws.base);

    let saved = w
        .as_user(
            &w.admin,
            Method::PUT,
            "/api/v1/settings/email-webhooks",
            json!({"ses": {"topic_arns": [TOPIC], "test_cert_url": aws.base},
                   "sendgrid": {"public_key": sendgrid_public},
                   "postmark": {"auth": "basic", "username": "postmark", "password": "pm-secret"},
                   "mailgun": {"signing_key": "key-mailgun-test"}}),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!((saved.body["sendgrid"]["public_key_set"].as_bool(), saved.body["mailgun"]["signing_key_set"].as_bool()), (Some(true), Some(true)));
    assert!(!saved.body.to_string().contains("pm-secret") && !saved.body.to_string().contains("key-mailgun-test"));
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel LIKE 'hook_%' AND secret IS NOT NULL").fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|s| s.starts_with("v1:") && !s.contains("pm-secret") && !s.contains("key-mailgun-test")));

    let flow = support::publish(
        &w.store,
        "Bounce watch",
        json!([{"id": "s", "kind": "start"},
               {"id": "e1", "kind": "send_email", "settings": {"subject": "Welcome", "body": "<p>Welcome!</p>"}},
               {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "bounced", "step": "e1"}], "timeout": {"amount": 3, "unit": "days"}}},
               {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "bounced"}]}}]),
        &["s->e1", "e1->w", "w:met->m"],
    )
    .await;
    let people = ["ada@example.test", "bob@example.test", "cy@example.test", "dee@example.test", "eve@example.test", "fay@example.test"];
    let mut ids = Vec::new();
    for email in people {
        ids.push(w.contact(email).await);
    }
    w.runtime.enroll(flow, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let policy = RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries: 3 };
    Dispatcher::new(w.runtime.clone(), Arc::new(Channels::new(w.runtime.pool().clone()))).with_policy(policy).dispatch().await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let sent: Vec<String> = people.iter().map(|to| id_of(&sink, people.len(), to)).collect();
    let [ada, bob, cy, dee, eve, fay] = [ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]];
    w.clock.advance(SignedDuration::from_mins(10));

    // Amazon SES through SNS: a subscription confirmed, then a permanent bounce.
    let confirm = sns(
        &w,
        "SubscriptionConfirmation",
        &[("MessageId", "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"), ("Token", "2336412f37fb687f5d51e6e2425f004aed"),
          ("Message", "You have chosen to subscribe to the topic. To confirm the subscription, visit the SubscribeURL included in this message."),
          ("SubscribeURL", &format!("{}confirm?Action=ConfirmSubscription&Token=2336412f37fb687f5d51e6e2425f004aed", aws.base))],
        "1",
        &cert_url,
    );
    let reply = w.hook("/api/v1/channels/ses/sns", &[("x-amz-sns-message-type", "SubscriptionConfirmation".into())], "text/plain; charset=UTF-8", &confirm.to_string()).await;
    assert_eq!((reply.status, reply.body["confirmed"].as_bool()), (StatusCode::OK, Some(true)), "{}", reply.body);
    assert_eq!(aws.confirmations.lock().unwrap().len(), 1, "the SubscribeURL was fetched");

    let ses_bounce = json!({"notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "feedbackId": "0100018f-ses-feedback-1",
                   "timestamp": "2026-11-23T09:06:00.000Z", "reportingMTA": "dns; a8-70.smtp-out.amazonses.com",
                   "bouncedRecipients": [{"emailAddress": "ada@example.test", "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
        "mail": {"timestamp": "2026-11-23T09:05:00.000Z", "source": "news@waymark.test", "messageId": "0100018f-ses-message-1",
                 "destination": ["ada@example.test"], "headersTruncated": false,
                 "headers": [{"name": "From", "value": "Waymark <news@waymark.test>"}, {"name": "Message-ID", "value": format!("<{}>", sent[0])}],
                 "commonHeaders": {"from": ["Waymark <news@waymark.test>"], "messageId": "0100018f-ses-message-1", "subject": "Welcome"}}});
    let notification = sns(
        &w,
        "Notification",
        &[("MessageId", "da41e39f-ea4d-435a-b922-c6aae3915ebe"), ("Message", &ses_bounce.to_string())],
        "2",
        &cert_url,
    );
    let reply = w.hook("/api/v1/channels/ses/sns", &[], "text/plain; charset=UTF-8", &notification.to_string()).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(1)), "{}", reply.body);
    // Retried by SNS: nothing new.
    let events = w.events().await;
    let reply = w.hook("/api/v1/channels/ses/sns", &[], "text/plain; charset=UTF-8", &notification.to_string()).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(0)));
    assert_eq!(w.events().await, events);
    // Altered, from another topic, or with a certificate from anywhere else: refused.
    let mut altered = notification.clone();
    altered["Message"] = json!(ses_bounce.to_string().replace("ada@", "bob@"));
    let mut other_topic = notification.clone();
    other_topic["TopicArn"] = json!("arn:aws:sns:us-east-1:123456789012:someone-else");
    let mut elsewhere = notification.clone();
    elsewhere["SigningCertURL"] = json!("http://127.0.0.2:1/SimpleNotificationService-test.pem");
    for bad in [altered, other_topic, elsewhere, json!({"Type": "Notification"})] {
        let reply = w.hook("/api/v1/channels/ses/sns", &[], "text/plain; charset=UTF-8", &bad.to_string()).await;
        assert_eq!((reply.status, reply.content_type.as_str(), reply.body["code"].as_str()), (StatusCode::FORBIDDEN, "application/problem+json", Some("bad_signature")), "{}", reply.body);
    }

    // SendGrid: a batch (a hard bounce, a spam report, a delivery), signed over timestamp + body.
    let batch = json!([
        {"email": "bob@example.test", "timestamp": 1795338000, "smtp-id": format!("<{}>", sent[1]), "event": "bounce", "type": "bounce",
         "bounce_classification": "Invalid Address", "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
         "status": "5.1.1", "sg_event_id": "sg-bounce-1", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
        {"email": "cy@example.test", "timestamp": 1795338001, "smtp-id": format!("<{}>", sent[2]), "event": "spamreport", "sg_event_id": "sg-spam-1"},
        {"email": "fay@example.test", "timestamp": 1795338002, "smtp-id": format!("<{}>", sent[5]), "event": "delivered", "sg_event_id": "sg-delivered-1"}
    ])
    .to_string()
        + "\r\n";
    let timestamp = "1795338003";
    let signature = w.sign("sendgrid.key", "-sha256", format!("{timestamp}{batch}").as_bytes());
    let signed = |signature: &str, timestamp: &str| {
        vec![("x-twilio-email-event-webhook-signature", signature.to_owned()), ("x-twilio-email-event-webhook-timestamp", timestamp.to_owned())]
    };
    let reply = w.hook("/api/v1/channels/sendgrid/events", &signed(&signature, timestamp), "application/json", &batch).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(2)), "{}", reply.body);
    let reply = w.hook("/api/v1/channels/sendgrid/events", &signed(&signature, "1795338004"), "application/json", &batch).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("bad_signature")));
    let reply = w.hook("/api/v1/channels/sendgrid/events", &signed(&signature, timestamp), "application/json", &batch.replace("bob@", "fay@")).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("bad_signature")));
    let reply = w.hook("/api/v1/channels/sendgrid/events", &[], "application/json", &batch).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // Postmark: HTTP Basic; its MessageID is its own, so the address finds the email.
    let postmark = json!({"RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807_u64, "Type": "HardBounce", "TypeCode": 1,
        "Name": "Hard bounce", "Tag": "", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Metadata": {}, "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.", "Email": "Dee@Example.test",
        "From": "news@waymark.test", "BouncedAt": "2026-11-23T09:07:00.000Z", "DumpAvailable": false, "Inactive": true,
        "CanActivate": true, "Subject": "Welcome"})
    .to_string();
    let basic = |user: &str, password: &str| vec![("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))];
    let reply = w.hook("/api/v1/channels/postmark/events", &basic("postmark", "wrong"), "application/json", &postmark).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("bad_signature")));
    let reply = w.hook("/api/v1/channels/postmark/events", &basic("postmark", "pm-secret"), "application/json", &postmark).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(1)), "{}", reply.body);
    let reply = w.hook("/api/v1/channels/postmark/events", &basic("postmark", "pm-secret"), "application/json", "[1]").await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")));

    // Mailgun: HMAC of timestamp + token; a token is good for its body only.
    let now = jiff::Timestamp::now().as_second().to_string();
    let mailgun = |token: &str, timestamp: &str, event: &str, severity: &str, key: &str| {
        let signature = server::channels::provider_hooks::mailgun::sign(key, timestamp, token);
        json!({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
               "event-data": {"id": format!("mg-{token}"), "timestamp": 1795338100.5, "log-level": "error", "event": event, "severity": severity,
                              "reason": "bounce", "recipient": "eve@example.test", "recipient-domain": "example.test",
                              "delivery-status": {"attempt-no": 1, "code": 550, "message": "5.1.1 The email account that you tried to reach does not exist.",
                                                  "description": "", "session-seconds": 0.1},
                              "message": {"headers": {"to": "eve@example.test", "message-id": sent[4].clone(), "from": "Waymark <news@waymark.test>", "subject": "Welcome"},
                                          "attachments": [], "size": 2345}}})
        .to_string()
    };
    let token = "5a4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d";
    let body = mailgun(token, &now, "failed", "permanent", "key-mailgun-test");
    let reply = w.hook("/api/v1/channels/mailgun/events", &[], "application/json", &body).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(1)), "{}", reply.body);
    let reply = w.hook("/api/v1/channels/mailgun/events", &[], "application/json", &body).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(0)), "a retry of the same request is a no-op");
    let replayed = mailgun(token, &now, "complained", "", "key-mailgun-test");
    let stale = mailgun("0123456789abcdef0123456789abcdef0123456789abcdef01", "1600000000", "failed", "permanent", "key-mailgun-test");
    let forged = mailgun("fedcba9876543210fedcba9876543210fedcba9876543210fe", &now, "failed", "permanent", "key-someone-else");
    for bad in [replayed, stale, forged] {
        let reply = w.hook("/api/v1/channels/mailgun/events", &[], "application/json", &bad).await;
        assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("bad_signature")), "{}", reply.body);
    }

    // What it all did.
    w.settle().await;
    for (contact, address) in [(ada, "ada@example.test"), (bob, "bob@example.test"), (dee, "dee@example.test"), (eve, "eve@example.test")] {
        let loaded = w.load(contact).await;
        assert!(loaded.is_undeliverable(address), "{address} is undeliverable");
        assert_eq!(loaded.field_text("path"), "bounced", "{address}'s participant left its wait by `met`");
    }
    assert!(w.load(cy).await.opted_out.contains("email"), "a spam report turns email consent off");
    // Each change of consent is on the contact's record, with its source.
    let consent = |contact: i64| {
        let pool = w.runtime.pool().clone();
        async move {
            sqlx::query_as::<_, (String, i64, String)>("SELECT channel, opted_out, source FROM consent_changes WHERE contact_id = $1 ORDER BY id")
                .bind(contact)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    for contact in [ada, bob, dee, eve] {
        assert_eq!(consent(contact).await, [("email".to_owned(), 1, "hard_bounce".to_owned())], "contact {contact}'s hard bounce");
    }
    assert_eq!(consent(cy).await, [("email".to_owned(), 1, "complaint".to_owned())]);
    assert!(consent(fay).await.is_empty(), "a delivery changes no consent");
    assert_eq!(w.load(fay).await.field_text("path"), "", "a delivery is not a bounce");
    let row = w.conversation(&sent[0]).await;
    assert_eq!(
        (row.get::<Option<String>, _>("bounce_type").as_deref(), row.get::<Option<String>, _>("bounce_status").as_deref(), row.get::<Option<String>, _>("bounce_diagnostic").as_deref()),
        (Some("hard"), Some("5.1.1"), Some("550 5.1.1 user unknown"))
    );
    assert!(w.conversation(&sent[2]).await.get::<Option<String>, _>("complained_at").is_some());
    assert_eq!(
        w.conversation(&sent[3]).await.get::<Option<String>, _>("bounce_diagnostic").as_deref(),
        Some("HardBounce: smtp;550 5.1.1 The email account that you tried to reach does not exist.")
    );
    assert_eq!(
        w.conversation(&sent[4]).await.get::<Option<String>, _>("bounce_diagnostic").as_deref(),
        Some("550 5.1.1 The email account that you tried to reach does not exist.")
    );
    let sources: Vec<String> = sqlx::query_scalar("SELECT source FROM contact_events ORDER BY id").fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(sources, ["ses", "sendgrid", "sendgrid", "postmark", "mailgun"]);
}

#[tokio::test]
async fn webhook_settings_are_for_admins_checked_and_unset_providers_refuse_everything() {
    let w = world().await;
    let url = "/api/v1/settings/email-webhooks";
    assert_eq!(w.as_user(&w.marketer, Method::GET, url, Value::Null).await.status, StatusCode::FORBIDDEN);
    assert_eq!(w.as_user(&w.marketer, Method::PUT, url, json!({"mailgun": {"signing_key": "x"}})).await.status, StatusCode::FORBIDDEN);

    for (path, body) in [
        ("/api/v1/channels/ses/sns", "{}"),
        ("/api/v1/channels/sendgrid/events", "[]"),
        ("/api/v1/channels/postmark/events", "{}"),
        ("/api/v1/channels/mailgun/events", r#"{"signature": {"timestamp": "1", "token": "t", "signature": "00"}, "event-data": {}}"#),
    ] {
        let reply = w.hook(path, &[], "application/json", body).await;
        assert_eq!((reply.status, reply.content_type.as_str(), reply.body["code"].as_str()), (StatusCode::FORBIDDEN, "application/problem+json", Some("bad_signature")), "{path}");
    }

    let world = &w;
    let check = move |body: Value| async move {
        let reply = world.as_user(&world.admin, Method::PUT, url, body).await;
        (reply.status, reply.body["code"].as_str().unwrap_or_default().to_owned(), reply.body["field"].as_str().unwrap_or_default().to_owned())
    };
    let unprocessable = |code: &str, field: &str| (StatusCode::UNPROCESSABLE_ENTITY, code.to_owned(), field.to_owned());
    assert_eq!(check(json!({"ses": {"topic_arns": ["not-an-arn"]}})).await, unprocessable("invalid_integration", "ses.topic_arns[0]"));
    assert_eq!(check(json!({"ses": {"topic_arns": [TOPIC], "test_cert_url": "https://evil.test/"}})).await, unprocessable("invalid_integration", "ses.test_cert_url"));
    assert_eq!(check(json!({"sendgrid": {"public_key": "bm90IGEga2V5"}})).await, unprocessable("invalid_integration", "sendgrid.public_key"));
    assert_eq!(check(json!({"postmark": {"auth": "header", "header": "Authorization", "password": "x"}})).await, unprocessable("invalid_integration", "postmark.header"));
    assert_eq!(check(json!({"mailgun": {"signing_key": "k".repeat(5_000)}})).await, unprocessable("too_long", "mailgun.signing_key"));
    assert_eq!(check(json!({"sparkpost": {}})).await, unprocessable("invalid_integration", "sparkpost"));
    assert_eq!(check(json!({"mailgun": {"colour": "blue"}})).await, unprocessable("invalid_integration", "mailgun.colour"));
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_settings").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(none, 0, "nothing refused was written");

    // Postmark by a secret header; removing a provider makes it refuse again.
    let saved = w.as_user(&w.admin, Method::PUT, url, json!({"postmark": {"auth": "header", "header": "X-Waymark-Token", "password": "tok-123"}})).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["postmark"]["password_set"], true);
    let delivery = r#"{"RecordType":"Delivery","ServerID":23,"MessageStream":"outbound","MessageID":"x","Recipient":"a@b.test","Tag":"","DeliveredAt":"2026-11-23T09:00:00Z","Details":"ok","Metadata":{}}"#;
    let reply = w.hook("/api/v1/channels/postmark/events", &[("x-waymark-token", "tok-123".into())], "application/json", delivery).await;
    assert_eq!((reply.status, reply.body["recorded"].as_i64()), (StatusCode::OK, Some(0)));
    let reply = w.hook("/api/v1/channels/postmark/events", &[("x-waymark-token", "tok-124".into())], "application/json", delivery).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    w.as_user(&w.admin, Method::PUT, url, json!({"postmark": null})).await;
    let reply = w.hook("/api/v1/channels/postmark/events", &[("x-waymark-token", "tok-123".into())], "application/json", delivery).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'settings.email_webhooks' AND detail NOT LIKE '%tok-123%'")
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(audit, 2);
}
