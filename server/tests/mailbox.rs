//! The bounce and reply mailbox against real servers: flows send email
//! through aiosmtpd, real DSN (RFC 3464), ARF (RFC 5965) and reply
//! messages naming those emails are delivered into Dovecot over IMAP, and
//! the poller reads them, as it reads mail sent to the List-Unsubscribe
//! mailto address. Each reaches the conversation record, the contact
//! (undeliverable, email consent, its consent history) and the
//! participant waiting on it; every message is handled once. SQLite here, PostgreSQL too under
//! `make pg`.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::Row;
use tower::ServiceExt;

use app::core::contact::Contact;
use app::core::FlowDocument;
use server::channels::mailbox::{self, PollError};
use server::channels::settings;
use server::channels::Channels;
use server::runtime::outbox::{Dispatcher, RetryPolicy};
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};
use support::dovecot::{Dovecot, TestCa};
use support::SmtpSink;

struct World {
    app: Router,
    store: Store,
    runtime: Runtime,
    clock: Arc<ManualClock>,
    admin: String,
    marketer: String,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
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
    World { app: router(state), store, runtime, clock, admin, marketer, _db: db, _dir: dir }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl World {
    async fn call(&self, cookie: &str, method: Method, uri: &str, body: Value) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={cookie}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, content_type, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    /// Publishes a flow with flow-level settings.
    async fn flow(&self, name: &str, flow_settings: Value, steps: Value, wires: &[&str]) -> i64 {
        let edges: Vec<Value> = wires
            .iter()
            .map(|w| {
                let (from, to) = w.split_once("->").unwrap();
                let (from, port) = from.split_once(':').unwrap_or((from, "next"));
                json!({"from": from, "port": port, "to": to})
            })
            .collect();
        let doc = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": name, "settings": flow_settings, "steps": steps, "edges": edges})).unwrap();
        let flow = self.store.create(name, Some(doc)).await.unwrap();
        self.store.publish(flow.id, None, "test").await.unwrap();
        flow.id
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

    async fn status(&self, participant: i64) -> (String, Option<String>) {
        let view = self.runtime.participant(participant).await.unwrap();
        (view.status, view.reason)
    }

    /// Sends what is due, then lets participants move on.
    async fn dispatch(&self) {
        let policy = RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries: 3 };
        let dispatcher = Dispatcher::new(self.runtime.clone(), Arc::new(Channels::new(self.runtime.pool().clone()))).with_policy(policy);
        self.runtime.run_until_idle().await.unwrap();
        dispatcher.dispatch().await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
    }

    /// One poll, then the events delivered and the participants moved.
    async fn poll(&self) -> mailbox::Poll {
        let poll = mailbox::poll_once(&self.runtime).await.unwrap_or_else(|err| panic!("poll: {err}"));
        self.runtime.deliver_all_events().await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
        poll
    }

    async fn conversation(&self, participant: i64) -> sqlx::any::AnyRow {
        sqlx::query(
            "SELECT bounced_at, bounce_type, bounce_status, bounce_diagnostic, complained_at, replied_at, auto_replied_at, reply_excerpt, provider_id
             FROM conversations WHERE participant_id = $1 AND channel = 'email' ORDER BY id DESC LIMIT 1",
        )
        .bind(participant)
        .fetch_one(self.runtime.pool())
        .await
        .unwrap()
    }

    /// The contact's consent history: (channel, opted out, source, detail).
    async fn consent_changes(&self, contact: i64) -> Vec<(String, i64, String, Option<String>)> {
        sqlx::query_as("SELECT channel, opted_out, source, detail FROM consent_changes WHERE contact_id = $1 ORDER BY id")
            .bind(contact)
            .fetch_all(self.runtime.pool())
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.runtime.pool()).await.unwrap()
    }
}

fn smtp(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port, "tls": "none", "from": "Waymark <news@waymark.test>", "timeout_secs": 5})
}

fn mailbox_settings(imap: &Dovecot) -> Value {
    json!({"enabled": true, "host": "127.0.0.1", "port": imap.port, "tls": "none", "username": imap.user, "password": imap.password,
           "folder": "INBOX", "poll_secs": 60, "soft_bounce_limit": 2, "timeout_secs": 10})
}

/// The Message-ID (without brackets) of the message the sink received for `to`.
fn message_id_for(sink: &SmtpSink, n: usize, to: &str) -> String {
    let messages = sink.wait_for(n);
    let message = messages.iter().find(|m| m["headers"]["to"].as_str() == Some(to)).unwrap_or_else(|| panic!("no message to {to}"));
    message["headers"]["message-id"].as_str().unwrap().trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

/// A DSN as Postfix writes one, returning the original's headers.
fn dsn(id: &str, n: u32, to: &str, status: &str, diagnostic: &str) -> String {
    format!(
        "Return-Path: <>\nDate: Mon, 23 Nov 2026 09:05:{n:02} +0000\nFrom: MAILER-DAEMON@mx.waymark.test (Mail Delivery System)\n\
         Subject: Undelivered Mail Returned to Sender\nTo: news@waymark.test\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"B{n}/mx.waymark.test\"\n\
         Message-Id: <2026112309050{n}.B{n}@mx.waymark.test>\n\n\
         This is a MIME-encapsulated message.\n\n--B{n}/mx.waymark.test\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n\
         I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n\
         <{to}>: host mx.example.test[192.0.2.10] said: {diagnostic}\n\n\
         --B{n}/mx.waymark.test\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n\
         Reporting-MTA: dns; mx.waymark.test\nX-Postfix-Queue-ID: B{n}\nArrival-Date: Mon, 23 Nov 2026 09:05:00 +0000\n\n\
         Final-Recipient: rfc822; {to}\nOriginal-Recipient: rfc822;{to}\nAction: failed\nStatus: {status}\nRemote-MTA: dns; mx.example.test\n\
         Diagnostic-Code: smtp; {diagnostic}\n\n\
         --B{n}/mx.waymark.test\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n\
         Return-Path: <news@waymark.test>\nFrom: Waymark <news@waymark.test>\nTo: {to}\nSubject: Welcome\nMessage-ID: <{id}>\n\n\
         --B{n}/mx.waymark.test--\n"
    )
}

/// An ARF report (RFC 5965) returning the whole original message.
fn arf(id: &str, to: &str) -> String {
    format!(
        "From: <feedback@fbl.example.test>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nSubject: FW: Welcome\nTo: <abuse@waymark.test>\n\
         Message-ID: <fbl-{to}@fbl.example.test>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=feedback-report;\n\
         \tboundary=\"part1_13d.2e68ed54_boundary\"\n\n--part1_13d.2e68ed54_boundary\nContent-Type: text/plain; charset=\"US-ASCII\"\n\n\
         This is an email abuse report for an email message received from IP 192.0.2.1.\n\n\
         --part1_13d.2e68ed54_boundary\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\n\
         Version: 1\nOriginal-Mail-From: <news@waymark.test>\nOriginal-Rcpt-To: <{to}>\nArrival-Date: Mon, 23 Nov 2026 09:10:00 +0000\n\
         Reported-Domain: waymark.test\nSource-IP: 192.0.2.1\n\n--part1_13d.2e68ed54_boundary\nContent-Type: message/rfc822\n\
         Content-Disposition: inline\n\nFrom: Waymark <news@waymark.test>\nTo: {to}\nSubject: Welcome\nMessage-ID: <{id}>\n\
         Date: Mon, 23 Nov 2026 09:00:00 +0000\n\nWelcome!\n--part1_13d.2e68ed54_boundary--\n"
    )
}

/// A reply as Gmail writes one, quoting the original.
fn reply(id: &str, from: &str, extra_headers: &str, subject: &str, text: &str, n: u32) -> String {
    format!(
        "From: <{from}>\nTo: Waymark <news@waymark.test>\nSubject: {subject}\nDate: Mon, 23 Nov 2026 11:00:{n:02} +0000\n\
         Message-ID: <CAF-reply-{n}@mail.example.test>\nIn-Reply-To: <{id}>\nReferences: <{id}>\n{extra_headers}\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=\"UTF-8\"\n\n{text}\n\n\
         On Mon, Nov 23, 2026 at 9:00 AM Waymark <news@waymark.test>\nwrote:\n\n> Welcome!\n"
    )
}

#[tokio::test]
async fn bounces_complaints_and_replies_reach_conversations_contacts_and_waiting_participants() {
    let w = world().await;
    let sink = SmtpSink::start(false);
    let imap = Dovecot::start();
    settings::update(w.runtime.pool(), json!({"smtp": smtp(sink.port)}).as_object().unwrap().clone()).await.unwrap();
    let saved = w.call(&w.admin, Method::PUT, "/api/v1/settings/mailbox", mailbox_settings(&imap)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);

    let email = json!({"id": "e1", "kind": "send_email", "settings": {"subject": "Welcome", "body": "<p>Welcome!</p>"}});
    let set = |value: &str| json!({"changes": [{"field": "path", "op": "set", "value": value}]});
    let wait_for = |event: &str| json!({"until": [{"event": event, "step": "e1"}], "timeout": {"amount": 3, "unit": "days"}});
    let bounced = w
        .flow(
            "Bounce watch",
            json!({}),
            json!([{"id": "s", "kind": "start"}, email,
                   {"id": "w", "kind": "wait_until", "settings": wait_for("bounced")},
                   {"id": "m", "kind": "update_contact", "settings": set("bounced")},
                   {"id": "t", "kind": "update_contact", "settings": set("timed_out")}]),
            &["s->e1", "e1->w", "w:met->m", "w:timed_out->t"],
        )
        .await;
    let replied = w
        .flow(
            "Reply watch",
            json!({}),
            json!([{"id": "s", "kind": "start"}, email,
                   {"id": "w", "kind": "wait_until", "settings": wait_for("replied")},
                   {"id": "m", "kind": "update_contact", "settings": set("replied")},
                   {"id": "t", "kind": "update_contact", "settings": set("timed_out")}]),
            &["s->e1", "e1->w", "w:met->m", "w:timed_out->t"],
        )
        .await;
    let sequence = w
        .flow(
            "Sales sequence",
            json!({"exit_on_reply": true}),
            json!([{"id": "s", "kind": "start"}, email,
                   {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}},
                   {"id": "n", "kind": "update_contact", "settings": set("nudged")}]),
            &["s->e1", "e1->w", "w->n"],
        )
        .await;

    let ada = w.contact("ada@example.test").await; // hard bounce
    let bob = w.contact("bob@example.test").await; // auto-reply, then a reply
    let cy = w.contact("cy@example.test").await; // replies to a sales sequence
    let dee = w.contact("dee@example.test").await; // complains
    let eve = w.contact("eve@example.test").await; // two soft bounces in a row
    let p_ada = w.runtime.enroll(bounced, &[ada]).await.unwrap().0[0];
    let p_bob = w.runtime.enroll(replied, &[bob]).await.unwrap().0[0];
    let p_cy = w.runtime.enroll(sequence, &[cy]).await.unwrap().0[0];
    let p_dee = w.runtime.enroll(bounced, &[dee]).await.unwrap().0[0];
    let p_eve1 = w.runtime.enroll(bounced, &[eve]).await.unwrap().0[0];
    let p_eve2 = w.runtime.enroll(replied, &[eve]).await.unwrap().0[0];
    w.dispatch().await;
    for p in [p_ada, p_bob, p_cy, p_dee, p_eve1, p_eve2] {
        assert_eq!(w.status(p).await.0, "waiting", "participant {p} waits after its email");
    }
    let id = |to: &str| message_id_for(&sink, 6, to);
    let (ada_id, bob_id, cy_id, dee_id) = (id("ada@example.test"), id("bob@example.test"), id("cy@example.test"), id("dee@example.test"));
    let eve_ids: Vec<String> = {
        let messages = sink.wait_for(6);
        messages
            .iter()
            .filter(|m| m["headers"]["to"].as_str() == Some("eve@example.test"))
            .map(|m| m["headers"]["message-id"].as_str().unwrap().trim_matches(|c| c == '<' || c == '>').to_owned())
            .collect()
    };
    assert_eq!(eve_ids.len(), 2);

    // First delivery: a hard bounce, a complaint, an auto-reply, the first
    // soft bounce, a reply to no message of ours, and a plain message.
    w.clock.advance(SignedDuration::from_mins(5));
    imap.append("INBOX", &dsn(&ada_id, 1, "ada@example.test", "5.1.1", "550 5.1.1 <ada@example.test>: Recipient address rejected: User unknown")).await;
    imap.append("INBOX", &arf(&dee_id, "dee@example.test")).await;
    imap.append("INBOX", &reply(&bob_id, "bob@example.test", "Auto-Submitted: auto-replied\n", "Automatic reply: Welcome", "I am out of the office until Monday.", 1)).await;
    imap.append("INBOX", &dsn(&eve_ids[0], 2, "eve@example.test", "4.2.2", "452 4.2.2 Mailbox full")).await;
    imap.append("INBOX", &reply("someone-else@elsewhere.test", "zed@example.test", "", "Re: lunch", "Sure!", 2)).await;
    imap.append("INBOX", "From: news@example.test\nSubject: Newsletter\nMessage-ID: <nl-1@example.test>\n\nHello\n").await;
    let poll = w.poll().await;
    assert_eq!((poll.unseen, poll.handled, poll.events, poll.unmatched, poll.again), (6, 6, 4, 2, 0), "{poll:?}\n{}", imap.log());
    assert!(imap.search("INBOX", "UNSEEN").await.is_empty(), "handled messages are flagged \\Seen");

    // The hard bounce: on the conversation, the contact, the waiting participant.
    let row = w.conversation(p_ada).await;
    assert!(row.get::<Option<String>, _>("bounced_at").is_some());
    assert_eq!(row.get::<Option<String>, _>("bounce_type").as_deref(), Some("hard"));
    assert_eq!(row.get::<Option<String>, _>("bounce_status").as_deref(), Some("5.1.1"));
    assert_eq!(
        row.get::<Option<String>, _>("bounce_diagnostic").as_deref(),
        Some("550 5.1.1 <ada@example.test>: Recipient address rejected: User unknown")
    );
    assert!(w.load(ada).await.is_undeliverable("ada@example.test"), "a hard bounce marks the address undeliverable");
    assert_eq!(w.load(ada).await.field_text("path"), "bounced", "the wait_until on `bounced` was met");

    // The complaint: email consent off; not a bounce.
    assert!(w.conversation(p_dee).await.get::<Option<String>, _>("complained_at").is_some());
    assert!(w.load(dee).await.opted_out.contains("email"), "a complaint turns email consent off");
    assert_eq!(w.status(p_dee).await.0, "waiting", "a complaint is not a bounce");

    // The auto-reply: recorded, never a reply.
    let row = w.conversation(p_bob).await;
    assert!(row.get::<Option<String>, _>("auto_replied_at").is_some());
    assert!(row.get::<Option<String>, _>("replied_at").is_none());
    assert_eq!(row.get::<Option<String>, _>("reply_excerpt").as_deref(), Some("I am out of the office until Monday."));
    assert_eq!(w.status(p_bob).await.0, "waiting", "an auto-reply does not meet a wait for a reply");

    // One soft bounce: recorded, and it meets the bounce wait, but the
    // address stays deliverable.
    let soft: Option<String> = sqlx::query_scalar("SELECT bounce_type FROM conversations WHERE provider_id = $1")
        .bind(&eve_ids[0])
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(soft.as_deref(), Some("soft"));
    assert!(!w.load(eve).await.is_undeliverable("eve@example.test"));

    // The hard bounce and the complaint are on the contacts' consent
    // history, with what turned email off; the soft bounce is not (yet).
    assert_eq!(w.consent_changes(ada).await, [("email".to_owned(), 1, "hard_bounce".to_owned(), Some("5.1.1 550 5.1.1 <ada@example.test>: Recipient address rejected: User unknown".to_owned()))]);
    assert_eq!(w.consent_changes(dee).await, [("email".to_owned(), 1, "complaint".to_owned(), None)]);
    assert!(w.consent_changes(eve).await.is_empty() && w.consent_changes(bob).await.is_empty());

    let kinds: Vec<(String, String)> = sqlx::query("SELECT kind, note FROM mailbox_messages ORDER BY uid")
        .fetch_all(w.runtime.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let kinds_only: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds_only, ["bounce", "complaint", "auto_reply", "bounce", "unmatched", "ignored"], "{kinds:?}");
    assert!(kinds[0].1.starts_with("hard bounce 5.1.1 for ada@example.test: 550"), "{}", kinds[0].1);

    // Second delivery: the reply from Bob and Cy, Eve's second soft bounce.
    w.clock.advance(SignedDuration::from_hours(1));
    imap.append("INBOX", &reply(&bob_id, "bob@example.test", "", "Re: Welcome", "Yes, please call me on Tuesday.\n\nBob", 3)).await;
    imap.append("INBOX", &reply(&cy_id, "cy@example.test", "", "Re: Welcome", "Not interested, thanks.", 4)).await;
    imap.append("INBOX", &dsn(&eve_ids[1], 3, "eve@example.test", "4.2.2", "452 4.2.2 Mailbox full")).await;
    let poll = w.poll().await;
    assert_eq!((poll.handled, poll.events), (3, 3), "{poll:?}");
    let row = w.conversation(p_bob).await;
    assert!(row.get::<Option<String>, _>("replied_at").is_some());
    assert_eq!(row.get::<Option<String>, _>("reply_excerpt").as_deref(), Some("Yes, please call me on Tuesday.\n\nBob"));
    assert_eq!(w.load(bob).await.field_text("path"), "replied", "the reply met the wait");
    assert_eq!(w.status(p_cy).await, ("exited".to_owned(), Some("replied".to_owned())), "exit_on_reply ended the sequence");
    assert!(w.load(eve).await.is_undeliverable("eve@example.test"), "two soft bounces in a row (the setting) mark the address undeliverable");
    assert_eq!(w.consent_changes(eve).await, [("email".to_owned(), 1, "soft_bounces".to_owned(), Some("2 soft bounces in a row".to_owned()))]);

    // Handled once: marked unseen again, nothing is recorded twice; the
    // same DSN delivered again (a new UID) writes no second event.
    let events = w.count("SELECT count(*) FROM contact_events").await;
    imap.mark_all_unseen("INBOX").await;
    let again = w.poll().await;
    assert_eq!((again.handled, again.again, again.events), (0, 9, 0), "{again:?}");
    imap.append("INBOX", &dsn(&ada_id, 1, "ada@example.test", "5.1.1", "550 5.1.1 User unknown")).await;
    let duplicate = w.poll().await;
    assert_eq!((duplicate.handled, duplicate.events), (1, 0), "{duplicate:?}");
    assert_eq!(w.count("SELECT count(*) FROM contact_events").await, events);
    assert_eq!(w.count("SELECT count(*) FROM mailbox_messages").await, 10);
    assert_eq!(w.count("SELECT count(*) FROM consent_changes").await, 3, "nothing read twice changes consent twice");

    // The settings page's view shows the poll and the log.
    let view = w.call(&w.admin, Method::GET, "/api/v1/settings/mailbox", Value::Null).await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["status"]["handled"], 10);
    assert!(view.body["status"]["last_error"].is_null());
    assert_eq!(view.body["recent"][0]["kind"], "bounce");
    assert!(view.body.get("password").is_none() && view.body["password_set"] == true);

    // Erasure forgets the words (reply text, bounce diagnostic, log notes), keeps the times.
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE participant_id IN ($1, $2)")
        .bind(p_bob)
        .bind(p_ada)
        .fetch_all(w.runtime.pool())
        .await
        .unwrap();
    let mut conn = w.runtime.pool().acquire().await.unwrap();
    server::channels::feedback::forget(&mut conn, &ids).await.unwrap();
    drop(conn);
    let (bob_row, ada_row) = (w.conversation(p_bob).await, w.conversation(p_ada).await);
    assert!(bob_row.get::<Option<String>, _>("reply_excerpt").is_none() && bob_row.get::<Option<String>, _>("replied_at").is_some());
    assert!(ada_row.get::<Option<String>, _>("bounce_diagnostic").is_none() && ada_row.get::<Option<String>, _>("bounce_type").is_some());
    let notes = w.count("SELECT count(*) FROM mailbox_messages WHERE note LIKE '%ada@example.test%' OR note LIKE '%Tuesday%'").await;
    assert_eq!(notes, 0);
}

/// What a mail client sends to a `List-Unsubscribe` mailto (Gmail's words).
fn unsubscribe_mail(to: &str, n: u32) -> String {
    format!(
        "From: Hal <hal@example.test>\nTo: {to}\nSubject: unsubscribe\nDate: Mon, 23 Nov 2026 12:00:{n:02} +0000\n\
         Message-ID: <CAF-unsub-{n}@mail.example.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=\"UTF-8\"\n\n\
         This message was automatically generated by Gmail.\n"
    )
}

#[tokio::test]
async fn mail_to_the_list_unsubscribe_address_unsubscribes_the_contact_once() {
    let w = world().await;
    let sink = SmtpSink::start(false);
    let imap = Dovecot::start();
    settings::update(w.runtime.pool(), json!({"smtp": smtp(sink.port)}).as_object().unwrap().clone()).await.unwrap();
    let saved = w.call(&w.admin, Method::PUT, "/api/v1/settings/mailbox", mailbox_settings(&imap)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let flow = w
        .flow(
            "Unsubscribe watch",
            json!({}),
            json!([{"id": "s", "kind": "start"}, {"id": "e1", "kind": "send_email", "settings": {"subject": "News", "body": "<p>News</p>"}},
                   {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "unsubscribed"}], "timeout": {"amount": 3, "unit": "days"}}},
                   {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "unsubscribed"}]}},
                   {"id": "t", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "timed_out"}]}}]),
            &["s->e1", "e1->w", "w:met->m", "w:timed_out->t"],
        )
        .await;
    let hal = w.contact("hal@example.test").await;
    let ivy = w.contact("ivy@example.test").await;
    let p_hal = w.runtime.enroll(flow, &[hal]).await.unwrap().0[0];
    w.runtime.enroll(flow, &[ivy]).await.unwrap();
    w.dispatch().await;
    let messages = sink.wait_for(2);
    let mailto = |to: &str| -> String {
        let message = messages.iter().find(|m| m["headers"]["to"].as_str() == Some(to)).unwrap();
        let header = message["headers"]["list-unsubscribe"].as_str().unwrap_or_else(|| panic!("no List-Unsubscribe: {message}"));
        let at = header.find("<mailto:").unwrap_or_else(|| panic!("no mailto in {header}")) + "<mailto:".len();
        header[at..].split(['?', '>']).next().unwrap().to_owned()
    };
    let (hal_to, ivy_to) = (mailto("hal@example.test"), mailto("ivy@example.test"));
    assert!(hal_to.starts_with("unsubscribe+") && hal_to.ends_with("@waymark.test"), "{hal_to}");

    // Hal's client mails the unsubscribe address; a forged token (Ivy's,
    // one digit changed) and an upper-cased copy of Hal's come too.
    let (local, domain) = ivy_to.split_once('@').unwrap();
    let forged = format!("{}{}@{domain}", &local[..local.len() - 1], if local.ends_with('0') { "1" } else { "0" });
    imap.append("INBOX", &unsubscribe_mail(&hal_to, 1)).await;
    imap.append("INBOX", &unsubscribe_mail(&forged, 2)).await;
    let poll = w.poll().await;
    assert_eq!((poll.handled, poll.events, poll.unmatched), (2, 1, 1), "{poll:?}\n{}", imap.log());

    assert!(w.load(hal).await.opted_out.contains("email"), "email consent is off");
    assert_eq!(w.consent_changes(hal).await, [("email".to_owned(), 1, "mailto".to_owned(), None)]);
    let unsubscribed: Option<String> = sqlx::query_scalar("SELECT unsubscribed_at FROM conversations WHERE participant_id = $1")
        .bind(p_hal)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert!(unsubscribed.is_some(), "the message's record shows the unsubscribe");
    assert_eq!(w.load(hal).await.field_text("path"), "unsubscribed", "the wait for an unsubscribe was met");
    assert!(!w.load(ivy).await.opted_out.contains("email"), "a forged token unsubscribes no one");
    assert!(w.consent_changes(ivy).await.is_empty());
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM mailbox_messages ORDER BY uid").fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(kinds, ["unsubscribe", "unmatched"]);

    // Read again (marked unseen) and sent again (a new message, the
    // address upper-cased by some mail system): nothing changes twice.
    imap.mark_all_unseen("INBOX").await;
    imap.append("INBOX", &unsubscribe_mail(&hal_to.to_uppercase(), 3)).await;
    let again = w.poll().await;
    assert_eq!((again.handled, again.again), (1, 2), "{again:?}");
    assert_eq!(w.consent_changes(hal).await.len(), 1);
    assert_eq!(w.count("SELECT count(*) FROM contact_events WHERE kind = 'unsubscribed'").await, 1);
}

#[tokio::test]
async fn handled_messages_can_be_moved_and_the_timeout_still_runs_without_a_bounce() {
    let w = world().await;
    let sink = SmtpSink::start(false);
    let imap = Dovecot::start();
    settings::update(w.runtime.pool(), json!({"smtp": smtp(sink.port)}).as_object().unwrap().clone()).await.unwrap();
    let mut settings = mailbox_settings(&imap);
    settings["after"] = json!("move");
    settings["move_to"] = json!("Processed");
    let saved = w.call(&w.admin, Method::PUT, "/api/v1/settings/mailbox", settings).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    let flow = w
        .flow(
            "Bounce watch",
            json!({}),
            json!([{"id": "s", "kind": "start"}, {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "<p>Hi</p>"}},
                   {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "bounced", "step": "e1"}], "timeout": {"amount": 1, "unit": "days"}}},
                   {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "bounced"}]}},
                   {"id": "t", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "timed_out"}]}}]),
            &["s->e1", "e1->w", "w:met->m", "w:timed_out->t"],
        )
        .await;
    let fay = w.contact("fay@example.test").await;
    let gus = w.contact("gus@example.test").await;
    w.runtime.enroll(flow, &[fay, gus]).await.unwrap();
    w.dispatch().await;
    let fay_id = message_id_for(&sink, 2, "fay@example.test");
    imap.append("INBOX", &dsn(&fay_id, 1, "fay@example.test", "5.2.1", "550 5.2.1 Mailbox disabled")).await;
    let poll = w.poll().await;
    assert_eq!((poll.handled, poll.events), (1, 1));
    assert_eq!(imap.count("INBOX").await, 0, "moved out of the folder read");
    assert_eq!(imap.count("Processed").await, 1);
    assert_eq!(w.load(fay).await.field_text("path"), "bounced");
    w.clock.advance(SignedDuration::from_hours(25));
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(w.load(gus).await.field_text("path"), "timed_out", "no bounce: the wait times out");
}

#[tokio::test]
async fn mailbox_settings_are_for_admins_checked_and_the_password_never_leaves() {
    let w = world().await;
    let imap = Dovecot::start();
    let url = "/api/v1/settings/mailbox";
    let refused = w.call(&w.marketer, Method::GET, url, Value::Null).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = w.call(&w.marketer, Method::PUT, url, mailbox_settings(&imap)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let empty = w.call(&w.admin, Method::GET, url, Value::Null).await;
    assert_eq!((empty.body["enabled"].as_bool(), empty.body["port"].as_u64(), empty.body["password_set"].as_bool()), (Some(false), Some(993), Some(false)));

    let field = |reply: &Reply| (reply.status, reply.content_type.clone(), reply.body["code"].as_str().unwrap_or_default().to_owned(), reply.body["field"].as_str().unwrap_or_default().to_owned());
    let mut bad = mailbox_settings(&imap);
    bad["host"] = json!("imap.example.test");
    let reply = w.call(&w.admin, Method::PUT, url, bad).await;
    assert_eq!(field(&reply), (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json".into(), "invalid_integration".into(), "mailbox.tls".into()));
    let mut bad = mailbox_settings(&imap);
    bad["folder"] = json!("x".repeat(201));
    let reply = w.call(&w.admin, Method::PUT, url, bad).await;
    assert_eq!(field(&reply), (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json".into(), "too_long".into(), "mailbox.folder".into()));
    let mut bad = mailbox_settings(&imap);
    bad["password"] = json!("p".repeat(5_000));
    assert_eq!(field(&w.call(&w.admin, Method::PUT, url, bad).await).2, "too_long");
    let mut bad = mailbox_settings(&imap);
    bad["colour"] = json!("blue");
    assert_eq!(field(&w.call(&w.admin, Method::PUT, url, bad).await).3, "mailbox.colour");
    let reply = w.call(&w.admin, Method::PUT, url, json!([1, 2])).await;
    assert_eq!((reply.status, reply.body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")));

    let saved = w.call(&w.admin, Method::PUT, url, mailbox_settings(&imap)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(saved.body.get("password").is_none() && saved.body["password_set"] == true);
    assert!(!saved.body.to_string().contains(imap.password));
    let stored: String = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = 'mailbox'").fetch_one(w.runtime.pool()).await.unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(imap.password), "encrypted at rest");
    let audit: i64 = w.count("SELECT count(*) FROM audit_log WHERE action = 'settings.mailbox' AND detail NOT LIKE '%mailbox-secret%'").await;
    assert_eq!(audit, 1);

    // Leaving the password out keeps it; a wrong one is an error the page shows.
    let mut kept = mailbox_settings(&imap);
    kept.as_object_mut().unwrap().remove("password");
    kept["poll_secs"] = json!(120);
    let saved = w.call(&w.admin, Method::PUT, url, kept).await;
    assert_eq!((saved.body["password_set"].as_bool(), saved.body["poll_secs"].as_u64()), (Some(true), Some(120)));
    // `waymark secrets rotate` re-encrypts the mailbox password with the rest.
    let rotation = server::secrets::rotate(w.runtime.pool(), |_| {}).await.unwrap();
    assert!(rotation.secrets >= 1);
    let again: String = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = 'mailbox'").fetch_one(w.runtime.pool()).await.unwrap();
    assert!(again.starts_with(&format!("v1:{}:", rotation.new)), "{again}");
    let polled = w.call(&w.admin, Method::POST, "/api/v1/settings/mailbox/poll", Value::Null).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
    assert_eq!(polled.body["unseen"], 0, "signed in with the re-encrypted password");

    let mut wrong = mailbox_settings(&imap);
    wrong["password"] = json!("not the password");
    w.call(&w.admin, Method::PUT, url, wrong).await;
    let err = mailbox::poll_once(&w.runtime).await.unwrap_err();
    assert!(matches!(&err, PollError::Mailbox(why) if why.contains("refused to sign in")), "{err}");
    let view = w.call(&w.admin, Method::GET, url, Value::Null).await;
    assert!(view.body["status"]["last_error"].as_str().unwrap().contains("refused to sign in"), "{}", view.body);
    let polled = w.call(&w.admin, Method::POST, "/api/v1/settings/mailbox/poll", Value::Null).await;
    assert_eq!((polled.status, polled.body["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("mailbox_failed")));

    // Encryption asked for and not offered: refused, never sent in the clear.
    for (tls, said) in [("starttls", "STARTTLS was refused"), ("tls", "TLS failed")] {
        let mut secured = mailbox_settings(&imap);
        secured["tls"] = json!(tls);
        assert_eq!(w.call(&w.admin, Method::PUT, url, secured).await.status, StatusCode::OK);
        let err = mailbox::poll_once(&w.runtime).await.unwrap_err();
        assert!(matches!(&err, PollError::Mailbox(why) if why.contains(said)), "{tls}: {err}");
    }

    let off = w.call(&w.admin, Method::PUT, url, json!({"enabled": false})).await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert!(matches!(mailbox::poll_once(&w.runtime).await, Err(PollError::NotConfigured)));
}

#[tokio::test]
async fn the_mailbox_is_read_over_imaps_and_starttls_trusting_only_the_ca_file_it_is_given() {
    let w = world().await;
    let sink = SmtpSink::start(false);
    let ca = TestCa::new();
    let imap = Dovecot::start_tls(&ca);
    let imaps = imap.tls_port.expect("an IMAPS port");
    settings::update(w.runtime.pool(), json!({"smtp": smtp(sink.port)}).as_object().unwrap().clone()).await.unwrap();
    let url = "/api/v1/settings/mailbox";
    let secured = |tls: &str, port: u16, ca_file: Option<&std::path::Path>| {
        let mut settings = mailbox_settings(&imap);
        settings["tls"] = json!(tls);
        settings["port"] = json!(port);
        if let Some(path) = ca_file {
            settings["ca_file"] = json!(path.display().to_string());
        }
        settings
    };
    let flow = w
        .flow(
            "Bounce watch",
            json!({}),
            json!([{"id": "s", "kind": "start"}, {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "<p>Hi</p>"}}]),
            &["s->e1"],
        )
        .await;
    let ivy = w.contact("ivy@example.test").await;
    let jon = w.contact("jon@example.test").await;
    w.runtime.enroll(flow, &[ivy, jon]).await.unwrap();
    w.dispatch().await;
    let ivy_id = message_id_for(&sink, 2, "ivy@example.test");
    let jon_id = message_id_for(&sink, 2, "jon@example.test");
    imap.append("INBOX", &dsn(&ivy_id, 1, "ivy@example.test", "5.1.1", "550 5.1.1 User unknown")).await;

    // The Web PKI's roots alone do not know the test's CA: refused, nothing read.
    for (tls, port) in [("tls", imaps), ("starttls", imap.port)] {
        let saved = w.call(&w.admin, Method::PUT, url, secured(tls, port, None)).await;
        assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
        let err = mailbox::poll_once(&w.runtime).await.unwrap_err();
        assert!(matches!(&err, PollError::Mailbox(why) if why.contains("TLS failed") && why.contains("certificate")), "{tls}: {err}");
    }
    // Another CA's certificate is no better.
    let other = TestCa::new();
    assert_eq!(w.call(&w.admin, Method::PUT, url, secured("tls", imaps, Some(&other.ca_file()))).await.status, StatusCode::OK);
    let err = mailbox::poll_once(&w.runtime).await.unwrap_err();
    assert!(matches!(&err, PollError::Mailbox(why) if why.contains("certificate")), "{err}");
    assert_eq!(imap.search("INBOX", "UNSEEN").await.len(), 1, "nothing was read");

    // Trusting the test's CA: IMAPS reads the bounce.
    let saved = w.call(&w.admin, Method::PUT, url, secured("tls", imaps, Some(&ca.ca_file()))).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert_eq!(saved.body["ca_file"].as_str(), Some(ca.ca_file().display().to_string().as_str()), "the page shows the path");
    let poll = w.poll().await;
    assert_eq!((poll.handled, poll.events), (1, 1), "{poll:?}\n{}", imap.log());
    assert!(w.load(ivy).await.is_undeliverable("ivy@example.test"), "the hard bounce reached the contact");

    // STARTTLS on the plain port, the same CA trusted.
    imap.append("INBOX", &dsn(&jon_id, 2, "jon@example.test", "5.1.1", "550 5.1.1 User unknown")).await;
    assert_eq!(w.call(&w.admin, Method::PUT, url, secured("starttls", imap.port, Some(&ca.ca_file()))).await.status, StatusCode::OK);
    let poll = w.poll().await;
    assert_eq!((poll.handled, poll.events), (1, 1), "{poll:?}");
    assert!(w.load(jon).await.is_undeliverable("jon@example.test"));
    assert!(imap.search("INBOX", "UNSEEN").await.is_empty());

    // The CA file is checked when saved: a missing file, a relative path, a
    // file with no certificate, or none asked to verify anything.
    let field = |reply: &Reply| (reply.status, reply.body["field"].as_str().unwrap_or_default().to_owned());
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate").unwrap();
    let mut plain = mailbox_settings(&imap);
    plain["ca_file"] = json!(ca.ca_file().display().to_string());
    for bad in [
        secured("tls", imaps, Some(std::path::Path::new("/nonexistent/ca.pem"))),
        secured("tls", imaps, Some(std::path::Path::new("ca.pem"))),
        secured("tls", imaps, Some(not_pem.path())),
        plain,
    ] {
        let reply = w.call(&w.admin, Method::PUT, url, bad).await;
        assert_eq!(field(&reply), (StatusCode::UNPROCESSABLE_ENTITY, "mailbox.ca_file".into()), "{}", reply.body);
    }
}
