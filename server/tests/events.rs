//! Contact events through `POST /api/v1/events` and the delivery pass, on
//! a real store (SQLite here; PostgreSQL too under `make pg`): waiting
//! participants move, goals convert, contact changes re-check criteria,
//! custom events enroll, re-delivery changes nothing, bad events are
//! refused naming the field.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use sqlx::Row;
use tower::ServiceExt;

use app::core::contact::Contact;
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};

mod support;
use support::publish;

struct World {
    app: Router,
    store: Store,
    runtime: Runtime,
    clock: Arc<ManualClock>,
    cookie: String,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

fn t0() -> Timestamp {
    "2026-11-23T09:00:00Z".parse().unwrap()
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let clock = ManualClock::new(t0());
    let runtime = Runtime::new(store.pool().clone(), clock.clone(), "worker-a");
    let state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store.clone(), runtime.clone());
    let admin = server::auth::accounts::add_user(store.pool(), "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password")
        .await
        .unwrap();
    let cookie = server::auth::accounts::open_session(store.pool(), admin.id).await.unwrap();
    World { app: router(state), store, runtime, clock, cookie, _db: db, _dir: dir }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl World {
    async fn send(&self, method: Method, uri: &str, body: Value) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={}", self.cookie))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply { status, content_type, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    async fn events(&self, body: Value) -> Reply {
        self.send(Method::POST, "/api/v1/events", body).await
    }

    async fn contact(&self, value: Value) -> i64 {
        let mut tx = self.runtime.pool().begin().await.unwrap();
        let id = contacts::insert(&mut tx, &serde_json::from_value::<Contact>(value).unwrap()).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    async fn field(&self, contact: i64, name: &str) -> String {
        let mut conn = self.runtime.pool().acquire().await.unwrap();
        contacts::load(&mut conn, contact).await.unwrap().field_text(name)
    }

    async fn status(&self, participant: i64) -> String {
        sqlx::query_scalar("SELECT status FROM participants WHERE id = $1").bind(participant).fetch_one(self.runtime.pool()).await.unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query(&format!("SELECT count(*) FROM {table}")).fetch_one(self.runtime.pool()).await.unwrap().get(0)
    }
}

/// start -> wait_until (purchase, or 3 days) -> met: path=met | timed_out: path=timed_out
fn purchase_wait() -> (Value, Vec<&'static str>) {
    (
        json!([{"id": "s", "kind": "start"},
               {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "custom", "name": "purchase", "where": [{"field": "total", "op": "greater_than", "value": 50}]}],
                                                              "timeout": {"amount": 3, "unit": "days"}}},
               {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "met"}]}},
               {"id": "t", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "timed_out"}]}}]),
        vec!["s->w", "w:met->m", "w:timed_out->t"],
    )
}

#[tokio::test]
async fn events_move_the_participants_waiting_on_them_once_and_only_them() {
    let w = world().await;
    let (steps, wires) = purchase_wait();
    let flow = publish(&w.store, "Purchase", steps, &wires).await;
    let ada = w.contact(json!({"email": "Ada@x.test"})).await;
    let bob = w.contact(json!({"email": "bob@x.test"})).await;
    let cy = w.contact(json!({"mobile": "+15550100"})).await;
    let dee = w.contact(json!({"email": "dee@x.test"})).await;
    let (ps, _) = w.runtime.enroll(flow, &[ada, bob, cy, dee]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(w.status(ps[0]).await, "waiting");

    w.clock.advance(SignedDuration::from_hours(2));
    let reply = w
        .events(json!([
            {"id": "order-1", "contact": {"email": "ADA@x.test"}, "event": "custom", "name": "purchase", "properties": {"total": 120}},
            {"id": "order-2", "contact": {"id": bob}, "event": "custom", "name": "purchase", "properties": {"total": 10}},
            {"contact": {"mobile": "+1 555-0100"}, "event": "custom", "name": "purchase", "properties": {"total": 99}},
            {"id": "order-3", "contact": {"email": "new@x.test"}, "create_contact": true, "event": "custom", "name": "purchase", "properties": {"total": 70}}
        ]))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!((reply.body["accepted"].as_i64(), reply.body["duplicates"].as_i64()), (Some(4), Some(0)));
    let created: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE email = 'new@x.test'").fetch_one(w.runtime.pool()).await.unwrap();
    assert!(created > dee);

    // The new contact has no participant: its event is written delivered.
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_events WHERE delivered_at IS NULL").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(pending, 3);
    let pass = w.runtime.deliver_all_events().await.unwrap();
    assert_eq!((pass.events, pass.moved, pass.deferred), (3, 2, 0));
    assert_eq!(w.field(ada, "path").await, "met", "a purchase over 50 meets the wait");
    assert_eq!(w.field(bob, "path").await, "", "a purchase of 10 does not");
    assert_eq!(w.field(cy, "path").await, "met", "found by mobile, written differently");
    let ada_notes = w.runtime.participant_events(ps[0]).await.unwrap();
    assert_eq!(ada_notes.len(), 1);
    assert_eq!((ada_notes[0].effect.as_str(), ada_notes[0].step.as_deref()), ("met", Some("w")));
    assert_eq!(w.runtime.participant_events(ps[1]).await.unwrap()[0].effect, "recorded");
    let listed = w.send(Method::GET, &format!("/api/v1/participants/{}/events", ps[0]), Value::Null).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!((listed.body[0]["effect"].as_str(), listed.body[0]["event"].as_str()), (Some("met"), Some("custom")));
    assert_eq!((listed.body[0]["name"].as_str(), &listed.body[0]["properties"]["total"]), (Some("purchase"), &json!(120)));

    // The same order again: a duplicate, nothing written, nothing moved;
    // it answers with the first one's row.
    let again = w.events(json!({"id": "order-2", "contact": {"id": bob}, "event": "custom", "name": "purchase", "properties": {"total": 500}})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!((again.body["accepted"].as_i64(), again.body["events"][0]["duplicate"].as_bool()), (Some(0), Some(true)));
    assert_eq!(again.body["events"][0]["event_id"], reply.body["events"][1]["event_id"]);
    assert_eq!(w.runtime.deliver_all_events().await.unwrap().events, 0);
    assert_eq!(w.field(bob, "path").await, "", "the retried order (with another total) changed nothing");
    assert_eq!(w.count("contact_events").await, 4);
    // In a batch: an old id, a new one, and the new one twice.
    let mixed = w
        .events(json!([
            {"id": "order-1", "contact": {"id": bob}, "event": "custom", "name": "purchase", "properties": {"total": 1}},
            {"id": "gift-1", "contact": {"id": dee}, "event": "custom", "name": "gift"},
            {"id": "gift-1", "contact": {"id": dee}, "event": "custom", "name": "gift"}
        ]))
        .await;
    assert_eq!(mixed.status, StatusCode::ACCEPTED, "{}", mixed.body);
    assert_eq!((mixed.body["accepted"].as_i64(), mixed.body["duplicates"].as_i64()), (Some(1), Some(2)));
    let flags: Vec<Option<bool>> = (0..3).map(|i| mixed.body["events"][i]["duplicate"].as_bool()).collect();
    assert_eq!(flags, [Some(true), Some(false), Some(true)]);
    assert_eq!(mixed.body["events"][0]["event_id"], reply.body["events"][0]["event_id"]);
    assert_eq!(mixed.body["events"][2]["event_id"], mixed.body["events"][1]["event_id"]);
    sqlx::query("DELETE FROM contact_events WHERE external_id = 'gift-1'").execute(w.runtime.pool()).await.unwrap();
    assert_eq!(w.count("contact_events").await, 4);

    // A delivery pass run twice over the same event gives it once.
    sqlx::query("UPDATE contact_events SET delivered_at = NULL").execute(w.runtime.pool()).await.unwrap();
    let rerun = w.runtime.deliver_all_events().await.unwrap();
    assert_eq!((rerun.events, rerun.moved), (4, 0));
    assert_eq!(w.runtime.participant_events(ps[1]).await.unwrap().len(), 1);

    // The rest time out at three days after they arrived.
    w.clock.advance(SignedDuration::from_hours(70));
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(w.field(bob, "path").await, "timed_out");
    assert_eq!(w.field(dee, "path").await, "timed_out");
    assert_eq!(w.field(ada, "path").await, "met");
}

#[tokio::test]
async fn a_goal_event_converts_and_a_contact_change_rechecks_waits_and_goals() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Trial",
        json!([{"id": "s", "kind": "start"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 5, "unit": "days"}},
               {"id": "e", "kind": "update_contact", "settings": {"changes": [{"field": "path", "op": "set", "value": "nudged"}]}}]),
        &["s->w", "w->e"],
    )
    .await;
    let draft = w.store.draft(flow).await.unwrap();
    let mut doc = draft.document.clone();
    doc.settings.goal = Some(serde_json::from_value(json!({"event": {"event": "custom", "name": "subscribed"}})).unwrap());
    w.store.save_draft(flow, draft.revision, doc).await.unwrap();
    w.store.publish(flow, None, "test").await.unwrap();

    let criteria_flow = publish(
        &w.store,
        "Stage",
        json!([{"id": "s", "kind": "start"},
               {"id": "w", "kind": "wait_until", "settings": {"until": [{"criteria": [{"field": "stage", "op": "equals", "value": "customer"}]}],
                                                              "timeout": {"amount": 7, "unit": "days"}}},
               {"id": "m", "kind": "update_contact", "settings": {"changes": [{"field": "seen", "op": "set", "value": "customer"}]}}]),
        &["s->w", "w:met->m"],
    )
    .await;
    let ada = w.contact(json!({"email": "ada@x.test"})).await;
    let (trial, _) = w.runtime.enroll(flow, &[ada]).await.unwrap();
    let (stage, _) = w.runtime.enroll(criteria_flow, &[ada]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();

    let reply = w.events(json!({"contact": {"id": ada}, "event": "custom", "name": "subscribed"})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    w.runtime.deliver_all_events().await.unwrap();
    assert_eq!(w.status(trial[0]).await, "converted");
    assert_eq!(w.runtime.participant_events(trial[0]).await.unwrap()[0].effect, "goal");
    assert_eq!(w.status(stage[0]).await, "waiting", "the other flow had nothing to meet");

    // A field changed through the API: the criteria wait re-checks at once.
    let reply = w.send(Method::PUT, &format!("/api/v1/contacts/{ada}"), json!({"email": "ada@x.test", "fields": {"stage": "customer"}})).await;
    assert!(reply.status.is_success(), "{}", reply.body);
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(w.field(ada, "seen").await, "customer");
    assert_eq!(w.status(stage[0]).await, "completed");
    assert_eq!(w.field(ada, "path").await, "", "the converted participant never reached its last step");
}

#[tokio::test]
async fn a_custom_event_enrolls_into_flows_that_start_on_it_once() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Welcome",
        json!([{"id": "s", "kind": "start", "settings": {"entry": "event", "event": "signed_up"}},
               {"id": "u", "kind": "update_contact", "settings": {"changes": [{"field": "welcomed", "op": "set", "value": "yes"}]}}]),
        &["s->u"],
    )
    .await;
    let one = json!({"id": "signup-7", "contact": {"email": "kim@x.test"}, "create_contact": true, "event": "custom", "name": "signed_up"});
    let reply = w.events(one.clone()).await;
    assert_eq!((reply.status, reply.body["enrolled"].as_i64()), (StatusCode::ACCEPTED, Some(1)), "{}", reply.body);
    let again = w.events(one).await;
    assert_eq!(again.body["enrolled"].as_i64(), Some(0), "a retried event enrolls no one again");
    let other = w.events(json!({"contact": {"email": "kim@x.test"}, "event": "custom", "name": "logged_in"})).await;
    assert_eq!(other.body["enrolled"].as_i64(), Some(0));
    w.runtime.run_until_idle().await.unwrap();
    let kim: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE email = 'kim@x.test'").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(w.field(kim, "welcomed").await, "yes");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1").bind(flow).fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn an_unsubscribe_turns_consent_off_even_without_a_participant() {
    let w = world().await;
    let ada = w.contact(json!({"email": "ada@x.test"})).await;
    let reply = w.events(json!({"contact": {"id": ada}, "event": "unsubscribed", "channel": "sms"})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    w.runtime.deliver_all_events().await.unwrap();
    let mut conn = w.runtime.pool().acquire().await.unwrap();
    let contact = contacts::load(&mut conn, ada).await.unwrap();
    assert!(contact.opted_out.contains("sms"));
    assert!(!contact.opted_out.contains("email"));
}

#[tokio::test]
async fn a_participant_a_worker_holds_gets_the_event_after_its_claim_commits() {
    let w = world().await;
    let (steps, wires) = purchase_wait();
    let flow = publish(&w.store, "Purchase", steps, &wires).await;
    let ada = w.contact(json!({"email": "ada@x.test"})).await;
    let (ps, _) = w.runtime.enroll(flow, &[ada]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    // A contact change makes the participant due; a worker claims it.
    let reply = w.send(Method::PUT, &format!("/api/v1/contacts/{ada}"), json!({"email": "ada@x.test", "fields": {"x": 1}})).await;
    assert!(reply.status.is_success());
    let batch = w.runtime.claim_batch().await.unwrap();
    assert_eq!(batch.len(), 1);
    w.events(json!({"contact": {"id": ada}, "event": "custom", "name": "purchase", "properties": {"total": 60}})).await;
    let held = w.runtime.deliver_events().await.unwrap();
    assert_eq!((held.events, held.deferred), (0, 1), "left pending while claimed");
    w.runtime.commit_batch(batch).await.unwrap();
    let after = w.runtime.deliver_all_events().await.unwrap();
    assert_eq!((after.events, after.moved), (1, 1));
    assert_eq!(w.field(ada, "path").await, "met");
    assert_eq!(w.status(ps[0]).await, "completed");
}

#[tokio::test]
async fn bad_events_are_refused_whole_naming_the_field() {
    let w = world().await;
    let ada = w.contact(json!({"email": "ada@x.test"})).await;
    let good = json!({"contact": {"id": ada}, "event": "custom", "name": "purchase"});
    let cases = [
        (json!([good.clone(), {"contact": {"id": ada}, "event": "custom", "name": "<script>"}]), "invalid_event", "events[1].name"),
        (json!([{"contact": {"email": "who@x.test"}, "event": "custom", "name": "p"}]), "unknown_contact", "events[0].contact"),
        (json!({"contact": {"id": 999_999}, "event": "custom", "name": "p"}), "unknown_contact", "event.contact.id"),
        (json!({"contact": {"id": ada, "email": "ada@x.test"}, "event": "custom", "name": "p"}), "invalid_contact", "event.contact"),
        (json!({"contact": {"email": "not an address"}, "event": "custom", "name": "p"}), "invalid_email", "event.contact.email"),
        (json!({"contact": {"id": ada}, "event": "custom", "name": "p", "properties": {"blob": "x".repeat(20_000)}}), "invalid_event", "event.properties"),
        (json!({"contact": {"id": ada}, "event": "teleported"}), "invalid_event", "event"),
        (json!({"contact": {"id": ada}, "event": "custom", "name": "p", "at": "2030-01-01T00:00:00Z"}), "invalid_event", "event.at"),
        (json!("purchase"), "invalid_events", "events"),
        (Value::Array(vec![good.clone(); 1_001]), "invalid_events", "events"),
    ];
    for (body, code, field) in cases {
        let reply = w.events(body).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json");
        assert_eq!((reply.body["code"].as_str(), reply.body["field"].as_str()), (Some(code), Some(field)), "{}", reply.body);
    }
    assert_eq!(w.count("contact_events").await, 0, "a refused batch writes nothing");
    assert_eq!(w.events(good).await.status, StatusCode::ACCEPTED);
}

/// Batches naming the same new contacts at the same moment (several
/// processes on PostgreSQL): each is accepted, and each contact is created
/// once; a batch that lost the race runs again and finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_creating_the_same_contacts_at_once_all_land() {
    let w = Arc::new(world().await);
    for round in 0..3 {
        let batch: Vec<Value> = (0..20)
            .map(|i| json!({"contact": {"email": format!("race-{round}-{i}@x.test")}, "create_contact": true, "event": "custom", "name": "signup"}))
            .collect();
        let sends: Vec<_> = (0..4)
            .map(|_| {
                let (w, batch) = (w.clone(), Value::Array(batch.clone()));
                tokio::spawn(async move { w.events(batch).await })
            })
            .collect();
        for send in sends {
            let reply = send.await.unwrap();
            assert_eq!(reply.status, StatusCode::ACCEPTED, "round {round}: {}", reply.body);
            assert_eq!(reply.body["accepted"].as_i64(), Some(20));
        }
        let made: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM contacts WHERE email LIKE 'race-{round}-%'"))
            .fetch_one(w.runtime.pool())
            .await
            .unwrap();
        assert_eq!(made, 20, "round {round}: each contact once");
    }
}
