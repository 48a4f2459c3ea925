//! Reports on a real store (SQLite here; PostgreSQL too under `make pg`):
//! the rollups the runtime keeps equal a recount from the raw timeline,
//! outbox and events over random histories (proptest); the report API
//! reads them, its charts download as CSV and SVG, and it refuses bad
//! periods and people without the role.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Value};
use sqlx::Row;
use tower::ServiceExt;

use app::core::contact::Contact;
use app::core::engagement::Received;
use app::core::engine::{EffectResult, Event, Participant};
use server::runtime::events::{self, NewEvent};
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
    "2026-11-02T09:00:00Z".parse().unwrap()
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

impl World {
    async fn get(&self, uri: &str, cookie: &str) -> (StatusCode, String, Vec<u8>) {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::HOST, "waymark.test")
            .header(header::COOKIE, format!("waymark_session={cookie}"))
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, content_type, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    async fn contact(&self, n: usize) -> i64 {
        let mut tx = self.runtime.pool().begin().await.unwrap();
        let contact: Contact = serde_json::from_value(json!({"email": format!("person{n}@example.com")})).unwrap();
        let id = contacts::insert(&mut tx, &contact).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    async fn events(&self, new: Vec<NewEvent>) {
        let mut tx = server::db::begin_write(self.runtime.pool()).await.unwrap();
        events::record(&self.runtime, &mut tx, &new).await.unwrap();
        tx.commit().await.unwrap();
        self.runtime.deliver_all_events().await.unwrap();
    }
}

/// start → split (a 50 / b 50) → email A | email B → wait for a click (or 2 days) → update.
/// Goal: a custom `purchase` event.
async fn ab_flow(store: &Store) -> i64 {
    let steps = json!([
        {"id": "s", "kind": "start"},
        {"id": "sp", "kind": "split", "settings": {"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}]}},
        {"id": "ea", "kind": "send_email", "settings": {"subject": "A", "body": "Offer A"}},
        {"id": "eb", "kind": "send_email", "settings": {"subject": "B", "body": "Offer B"}},
        {"id": "w", "kind": "wait_until", "settings": {"until": [{"event": "link_clicked"}], "timeout": {"amount": 2, "unit": "days"}}},
        {"id": "u", "kind": "update_contact", "settings": {"changes": [{"field": "done", "op": "set", "value": "yes"}]}}
    ]);
    let id = publish(store, "A/B", steps, &["s->sp", "sp:a->ea", "sp:b->eb", "ea->w", "eb->w", "w:met->u", "w:timed_out->u"]).await;
    // The goal, published as version 2.
    let mut draft = store.draft(id).await.unwrap();
    draft.document.settings.goal = Some(serde_json::from_value(json!({"event": {"event": "custom", "name": "purchase"}})).unwrap());
    store.save_draft(id, draft.revision, draft.document).await.unwrap();
    store.publish(id, None, "test").await.unwrap();
    id
}

#[derive(Clone, Debug)]
enum Op {
    Enroll(usize),
    Later(u32),
    /// The `n`-th awaited send still open is done (or failed).
    Sent(usize, bool),
    /// An event about the `n`-th message sent: 0 open, 1 machine open, 2 click, 3 machine click, 4 reply, 5 auto-reply, 6 bounce, 7 unsubscribe.
    Engaged(usize, u8),
    /// The `n`-th contact buys (the goal).
    Purchase(usize),
    /// A bulk action on the flow's participants: 0 cancel the waiting, 1
    /// pause the waiting, 2 make the paused ready, 3 cancel the paused, 4
    /// suppress the finished, 5 unsuppress, 6 pause the finished, 7 undo
    /// the last pause. (A deletion erases the contact's events, which the
    /// recount would need, and a reset's rerun is a visit the timeline
    /// keeps as one record: `bulk_actions_count_in_the_report_like_the_engine`
    /// checks both.)
    Bulk(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1..4usize).prop_map(Op::Enroll),
        3 => (1..40u32).prop_map(Op::Later),
        4 => (0..8usize, prop::bool::weighted(0.85)).prop_map(|(n, ok)| Op::Sent(n, ok)),
        4 => (0..8usize, 0..8u8).prop_map(|(n, k)| Op::Engaged(n, k)),
        1 => (0..8usize).prop_map(Op::Purchase),
        2 => (0..8u8).prop_map(Op::Bulk),
    ]
}

/// Runs `ops` against the A/B flow, then checks every rollup against a recount.
async fn run_history(ops: Vec<Op>) {
    let w = world().await;
    let flow = ab_flow(&w.store).await;
    let mut contacts: Vec<i64> = Vec::new();
    let mut done_sends: BTreeSet<i64> = BTreeSet::new();
    let mut n = 0;
    let mut last_pause = None;
    // Finished participants paused and not yet undone or cancelled: made
    // ready, they would run their step again at the same visit, which the
    // timeline keeps as one record (as a reset's rerun, left out above).
    let mut finished_paused = false;
    for op in ops {
        match op {
            Op::Bulk(kind) => {
                use server::runtime::bulk::{self, Action, BulkRequest, Criteria, Params};
                let statuses = |s: &[&str]| Criteria { flow_ids: vec![flow], statuses: s.iter().map(|s| s.to_string()).collect(), ..Criteria::default() };
                let (action, criteria) = match kind {
                    0 => (Action::Cancel, statuses(&["waiting"])),
                    1 => (Action::Pause, statuses(&["waiting"])),
                    2 if finished_paused => continue,
                    2 => (Action::Ready, statuses(&["paused"])),
                    3 => (Action::Cancel, statuses(&["paused"])),
                    4 => (Action::Suppress, statuses(&["completed", "converted"])),
                    5 => (Action::Unsuppress, statuses(&["suppressed"])),
                    6 => (Action::Pause, statuses(&["completed", "converted"])),
                    _ => {
                        if let Some((run, finished)) = last_pause.take() {
                            let undone = bulk::undo(w.runtime.pool(), run, "test", w.runtime.now()).await;
                            if finished && undone.is_ok() {
                                finished_paused = false;
                            }
                        }
                        continue;
                    }
                };
                let request = BulkRequest { action, criteria, disposition: None, params: Params::default() };
                // Nothing matching is refused, with nothing written.
                if let Ok(run) = bulk::start(&w.runtime, &request, "test").await {
                    bulk::run(&w.runtime, run).await.unwrap();
                    if action == Action::Pause {
                        last_pause = Some((run, kind == 6));
                        finished_paused |= kind == 6;
                    }
                    if kind == 3 {
                        finished_paused = false; // every paused one cancelled
                    }
                }
                w.runtime.run_until_idle().await.unwrap();
            }
            Op::Enroll(k) => {
                let mut new = Vec::new();
                for _ in 0..k {
                    n += 1;
                    new.push(w.contact(n).await);
                }
                w.runtime.enroll(flow, &new).await.unwrap();
                contacts.extend(new);
                w.runtime.run_until_idle().await.unwrap();
            }
            Op::Later(hours) => {
                w.clock.advance(SignedDuration::from_hours(hours as i64));
                w.runtime.run_until_idle().await.unwrap();
            }
            Op::Sent(i, ok) => {
                let open: Vec<(i64, i64)> = sqlx::query("SELECT id, participant_id FROM outbox WHERE awaited = 1 ORDER BY id")
                    .fetch_all(w.runtime.pool())
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
                    .filter(|(id, _)| !done_sends.contains(id))
                    .collect();
                if let Some(&(id, participant)) = open.get(i % open.len().max(1)) {
                    done_sends.insert(id);
                    let result = if ok { EffectResult::Done { updates: Default::default() } } else { EffectResult::Failed { reason: "refused".into() } };
                    // A participant no longer waiting on it (converted meanwhile) is refused: nothing changes.
                    let _ = w.runtime.deliver(participant, Event::Effect { result }).await;
                }
            }
            Op::Engaged(i, kind) => {
                let sent: Vec<(i64, i64, String)> = sqlx::query(
                    "SELECT o.participant_id, p.contact_id, o.step FROM outbox o JOIN participants p ON p.id = o.participant_id WHERE o.kind = 'email' ORDER BY o.id",
                )
                .fetch_all(w.runtime.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
                if let Some((participant, contact, step)) = sent.get(i % sent.len().max(1)).cloned() {
                    let event = match kind {
                        0 => json!({"event": "email_opened", "step": step}),
                        1 => json!({"event": "email_opened", "step": step, "machine": true}),
                        2 => json!({"event": "link_clicked", "step": step, "url": "https://example.com/x"}),
                        3 => json!({"event": "link_clicked", "step": step, "url": "https://example.com/x", "machine": true}),
                        4 => json!({"event": "replied", "step": step}),
                        5 => json!({"event": "replied", "step": step, "auto": true}),
                        6 => json!({"event": "bounced", "step": step, "type": "soft"}),
                        _ => json!({"event": "unsubscribed", "channel": "email"}),
                    };
                    let mut received = event;
                    received["at"] = json!(w.runtime.now());
                    let received: Received = serde_json::from_value(received).unwrap();
                    w.events(vec![NewEvent { contact_id: contact, participant_id: Some(participant), received, source: "api" }]).await;
                }
            }
            Op::Purchase(i) => {
                if let Some(&contact) = contacts.get(i % contacts.len().max(1)) {
                    let received: Received = serde_json::from_value(json!({"event": "custom", "name": "purchase", "at": w.runtime.now()})).unwrap();
                    w.events(vec![NewEvent { contact_id: contact, participant_id: None, received, source: "api" }]).await;
                }
            }
        }
    }
    w.runtime.run_until_idle().await.unwrap();
    let (kept, recount) = (rollups(&w, flow).await, recount(&w, flow).await);
    assert_eq!(kept, recount, "rollups (left) differ from the recount (right)");
}

type Counts = BTreeMap<(i64, String, String, bool, Option<i64>), i64>;

/// The rollups as (version, step, metric, machine, day) → count; the day
/// is kept only for metrics the recount can date (see [`recount`]).
async fn rollups(w: &World, flow: i64) -> Counts {
    let mut out = Counts::new();
    for r in sqlx::query("SELECT version, step, metric, machine, day, count FROM flow_rollups WHERE flow_id = $1")
        .bind(flow)
        .fetch_all(w.runtime.pool())
        .await
        .unwrap()
    {
        let metric: String = r.get("metric");
        let dated = matches!(metric.as_str(), "passed" | "opened" | "clicked" | "replied" | "bounced" | "unsubscribed" | "complained");
        let day = dated.then(|| r.get::<i64, _>("day"));
        *out.entry((r.get("version"), r.get("step"), metric, r.get::<i64, _>("machine") != 0, day)).or_default() += r.get::<i64, _>("count");
    }
    // A count a bulk action took back to nothing is no count.
    out.retain(|_, n| *n != 0);
    out
}

fn day(at: &str) -> i64 {
    at.parse::<Timestamp>().unwrap().as_second().div_euclid(86_400)
}

/// The same figures counted from the raw records.
async fn recount(w: &World, flow: i64) -> Counts {
    let pool = w.runtime.pool();
    let mut out = Counts::new();
    let mut add = |version: i64, step: &str, metric: &str, machine: bool, day: Option<i64>| {
        *out.entry((version, step.to_owned(), metric.to_owned(), machine, day)).or_default() += 1;
    };
    let participants =
        sqlx::query("SELECT id, version, status, prior_status, step, state FROM participants WHERE flow_id = $1").bind(flow).fetch_all(pool).await.unwrap();
    let mut version_of = BTreeMap::new();
    for p in &participants {
        let (id, version, mut status): (i64, i64, String) = (p.get("id"), p.get("version"), p.get("status"));
        // A suppressed participant counts as the status it keeps.
        if status == "suppressed" {
            status = p.get::<Option<String>, _>("prior_status").unwrap_or_default();
        }
        version_of.insert(id, version);
        let step: Option<String> = p.get("step");
        let state: Participant = serde_json::from_str(p.get("state")).unwrap();
        if step.is_some() {
            add(version, "", "entered", false, None);
        }
        if matches!(status.as_str(), "completed" | "converted" | "exited" | "failed" | "cancelled") {
            add(version, step.as_deref().unwrap_or_default(), &status, false, None);
        }
        for (split, port) in &state.branches {
            add(version, &format!("{split}/{port}"), "branch_entered", false, None);
            if status == "converted" {
                add(version, &format!("{split}/{port}"), "branch_converted", false, None);
            }
        }
    }
    for r in sqlx::query("SELECT a.participant_id, a.step, a.kind, a.outcome, a.done_at FROM participant_actions a JOIN participants p ON p.id = a.participant_id WHERE p.flow_id = $1")
        .bind(flow)
        .fetch_all(pool)
        .await
        .unwrap()
    {
        let version = version_of[&r.get::<i64, _>(0)];
        let (step, kind, outcome): (String, String, String) = (r.get(1), r.get(2), r.get(3));
        add(version, &step, "reached", false, None);
        match outcome.as_str() {
            "completed" | "skipped" => add(version, &step, "passed", false, Some(day(r.get::<&str, _>(4)))),
            "failed" => add(version, &step, "step_failed", false, None),
            _ => {}
        }
        if outcome == "completed" && matches!(kind.as_str(), "send_email" | "send_sms") {
            add(version, &step, "delivered", false, None);
        }
    }
    for r in sqlx::query("SELECT o.participant_id, o.step, o.kind FROM outbox o JOIN participants p ON p.id = o.participant_id WHERE p.flow_id = $1 AND o.kind IN ('email', 'sms')")
        .bind(flow)
        .fetch_all(pool)
        .await
        .unwrap()
    {
        add(version_of[&r.get::<i64, _>(0)], r.get::<&str, _>(1), "sent", false, None);
        add(version_of[&r.get::<i64, _>(0)], "", &format!("sent_{}", r.get::<&str, _>(2)), false, None);
    }
    // Engagement: the first event per participant, step, kind and machine;
    // unsubscribes go to the participant's latest message (its last conversation).
    let rows = sqlx::query(
        "SELECT e.id, e.participant_id, coalesce(e.step, ''), e.kind, e.machine + e.auto, e.happened_at FROM contact_events e
         JOIN participants p ON p.id = e.participant_id WHERE p.flow_id = $1 AND e.kind <> 'custom' ORDER BY e.id",
    )
    .bind(flow)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut seen = BTreeSet::new();
    let mut seen_flow = BTreeSet::new();
    for r in rows {
        let (participant, step, kind, machine, at): (i64, String, String, bool, i64) =
            (r.get(1), r.get(2), r.get(3), r.get::<i64, _>(4) > 0, r.get(5));
        let version = version_of[&participant];
        let state: Participant = serde_json::from_str(
            participants.iter().find(|p| p.get::<i64, _>("id") == participant).unwrap().get::<&str, _>("state"),
        )
        .unwrap();
        let metric = match kind.as_str() {
            "email_opened" => "opened",
            "link_clicked" => "clicked",
            "replied" => "replied",
            "bounced" => "bounced",
            "complained" => "complained",
            _ => "unsubscribed",
        };
        if matches!(metric, "clicked" | "replied") && !machine {
            // The first by a person since the branch was taken.
            for (split, port) in &state.branches {
                let since = state.branched_at[split].as_millisecond();
                if at >= since && seen_flow.insert((participant, split.clone(), kind.clone())) {
                    add(version, &format!("{split}/{port}"), &format!("branch_{metric}"), false, None);
                }
            }
        }
        if !seen.insert((participant, step.clone(), kind.clone(), machine)) {
            continue;
        }
        let step = if metric == "unsubscribed" {
            sqlx::query_scalar::<_, String>(
                "SELECT step FROM conversations WHERE participant_id = $1 AND step IS NOT NULL AND channel IN ('email', 'sms') ORDER BY id DESC LIMIT 1",
            )
                .bind(participant)
                .fetch_optional(pool)
                .await
                .unwrap()
                .unwrap_or_default()
        } else {
            step
        };
        add(version, &step, metric, machine, Some((at / 1000).div_euclid(86_400)));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if std::env::var("WAYMARK_TEST_POSTGRES").is_ok() { 6 } else { 16 }, ..ProptestConfig::default() })]

    #[test]
    fn rollups_equal_a_recount_from_the_raw_records(ops in prop::collection::vec(op(), 5..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run_history(ops));
    }
}

/// A fixed history with every kind of count, checked through the API.
#[tokio::test]
async fn the_report_api_reads_the_rollups_and_its_charts_download() {
    let w = world().await;
    let flow = ab_flow(&w.store).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(w.contact(n).await);
    }
    w.runtime.enroll(flow, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    // Every send goes out; half the contacts open, a quarter click, five buy.
    let sends: Vec<(i64, i64, i64, String)> = sqlx::query("SELECT o.id, o.participant_id, p.contact_id, o.step FROM outbox o JOIN participants p ON p.id = o.participant_id ORDER BY o.id")
        .fetch_all(w.runtime.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(sends.len(), 40);
    for (_, participant, _, _) in &sends {
        w.runtime.deliver(*participant, Event::Effect { result: EffectResult::Done { updates: Default::default() } }).await.unwrap();
    }
    w.clock.advance(SignedDuration::from_hours(1));
    // Five buy first (converted: what they do later still counts as engagement).
    let mut purchases = Vec::new();
    for (_, _, contact, _) in sends.iter().take(5) {
        let received = serde_json::from_value(json!({"event": "custom", "name": "purchase", "at": w.runtime.now()})).unwrap();
        purchases.push(NewEvent { contact_id: *contact, participant_id: None, received, source: "api" });
    }
    w.events(purchases).await;
    let mut new = Vec::new();
    for (i, (_, participant, contact, step)) in sends.iter().enumerate() {
        let mut events = Vec::new();
        if i % 2 == 0 {
            events.push(json!({"event": "email_opened", "step": step}));
            events.push(json!({"event": "email_opened", "step": step})); // a second open counts once
        }
        if i % 4 == 0 {
            events.push(json!({"event": "link_clicked", "step": step, "url": "https://example.com/a"}));
        }
        events.push(json!({"event": "email_opened", "step": step, "machine": true}));
        for mut event in events {
            event["at"] = json!(w.runtime.now());
            new.push(NewEvent { contact_id: *contact, participant_id: Some(*participant), received: serde_json::from_value(event).unwrap(), source: "api" });
        }
    }
    w.events(new).await;
    w.clock.advance(SignedDuration::from_hours(49));
    w.runtime.run_until_idle().await.unwrap();

    let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report?from=2026-11-01&to=2026-11-30"), &w.cookie).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(content_type.starts_with("application/json"));
    let report: Value = serde_json::from_slice(&body).unwrap();
    let days = report["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let sum = |key: &str| days.iter().map(|d| d[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("entered"), 40);
    assert_eq!(sum("converted"), 5);
    assert_eq!(sum("completed"), 35);
    assert_eq!(days[1]["entered"], 40, "entered on 2 Nov");
    assert_eq!(days[29]["active"], 0);
    let messages = report["messages"].as_array().unwrap();
    let total = |key: &str| messages.iter().map(|m| m[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("sent"), total("delivered"), total("opened"), total("clicked"), total("machine_opened")), (40, 40, 20, 10, 40));
    let split = &report["splits"][0];
    let branches = split["branches"].as_array().unwrap();
    assert_eq!(branches.iter().map(|b| b["entered"].as_u64().unwrap()).sum::<u64>(), 40);
    assert_eq!(branches.iter().map(|b| b["converted"].as_u64().unwrap()).sum::<u64>(), 5);
    assert_eq!(branches.iter().map(|b| b["clicked"].as_u64().unwrap()).sum::<u64>(), 10);
    let funnel = report["steps"].as_array().unwrap();
    let start = funnel.iter().find(|s| s["step"] == "s").unwrap();
    assert_eq!((start["reached"].as_u64(), start["passed"].as_u64()), (Some(40), Some(40)));

    let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report/days.csv?from=2026-11-01&to=2026-11-30"), &w.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"));
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.starts_with("day,entered,active,completed,converted,exited,failed,cancelled\r\n"), "{csv}");
    assert!(csv.contains("2026-11-02,40,"), "{csv}");
    let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report/split-sp.svg?metric=click"), &w.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "image/svg+xml");
    let svg = String::from_utf8(body).unwrap();
    let parsed = scraper::Html::parse_fragment(&svg);
    let title = parsed.select(&scraper::Selector::parse("svg > title").unwrap()).next().unwrap().text().collect::<String>();
    assert!(title.contains("click rate per branch"), "{title}");

    let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report?from=2026-12-01&to=2026-11-01"), &w.cookie).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], "invalid_period");
    let (status, _, _) = w.get(&format!("/api/v1/flows/{flow}/report/nothing.png"), &w.cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An agent may not read reports.
    let agent = server::auth::accounts::add_user(w.store.pool(), "agent@x.test", "Agent", app::auth::Role::Agent, "a long enough password").await.unwrap();
    let agent_cookie = server::auth::accounts::open_session(w.store.pool(), agent.id).await.unwrap();
    let (status, _, _) = w.get(&format!("/api/v1/flows/{flow}/report"), &agent_cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// start → split (a 50 / b 50, automatic winner on clicks after a day, half
/// the arrivals in the test) → email A | email B.
async fn winner_flow(store: &Store) -> i64 {
    let steps = json!([
        {"id": "s", "kind": "start"},
        {"id": "sp", "kind": "split", "settings": {"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}],
                                                    "winner": {"metric": "click", "window": {"amount": 1, "unit": "days"}, "test_share": 50}}},
        {"id": "ea", "kind": "send_email", "settings": {"subject": "A", "body": "Offer A"}},
        {"id": "eb", "kind": "send_email", "settings": {"subject": "B", "body": "Offer B"}}
    ]);
    publish(store, "Winner", steps, &["s->sp", "sp:a->ea", "sp:b->eb"]).await
}

async fn at_step(w: &World, flow: i64, step: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM participants WHERE flow_id = $1 AND step = $2 ORDER BY id")
        .bind(flow)
        .bind(step)
        .fetch_all(w.runtime.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_split_with_a_winner_tests_on_a_share_then_sends_everyone_down_the_significant_leader() {
    let w = world().await;
    let flow = winner_flow(&w.store).await;
    // Published now (real time); the test's clock starts there.
    let published: String = sqlx::query_scalar("SELECT published_at FROM flow_versions WHERE flow_id = $1").bind(flow).fetch_one(w.runtime.pool()).await.unwrap();
    w.clock.set(published.parse::<Timestamp>().unwrap() + SignedDuration::from_mins(1));
    let mut ids = Vec::new();
    for n in 0..400 {
        ids.push(w.contact(n).await);
    }
    w.runtime.enroll(flow, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let (a, b, waiting) = (at_step(&w, flow, "ea").await, at_step(&w, flow, "eb").await, at_step(&w, flow, "sp").await);
    assert_eq!(a.len() + b.len() + waiting.len(), 400);
    assert!((150..250).contains(&waiting.len()), "about half wait for the winner: {}", waiting.len());
    assert!(a.len() > 60 && b.len() > 60, "the test share is split: {} / {}", a.len(), b.len());
    // B's email is clicked far more often than A's.
    let mut clicks = Vec::new();
    for (ids, step, every) in [(&a, "ea", 10), (&b, "eb", 2)] {
        for (i, participant) in ids.iter().enumerate() {
            if i % every == 0 {
                let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(participant).fetch_one(w.runtime.pool()).await.unwrap();
                let received = serde_json::from_value(json!({"event": "link_clicked", "step": step, "url": "https://example.com/", "at": w.runtime.now()})).unwrap();
                clicks.push(NewEvent { contact_id: contact, participant_id: Some(*participant), received, source: "api" });
            }
        }
    }
    w.events(clicks).await;
    // Nothing is decided before the window ends.
    w.clock.advance(SignedDuration::from_hours(12));
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(at_step(&w, flow, "sp").await.len(), waiting.len());
    w.clock.advance(SignedDuration::from_hours(13));
    w.runtime.run_until_idle().await.unwrap();
    assert!(at_step(&w, flow, "sp").await.is_empty(), "the waiting went on");
    assert_eq!(at_step(&w, flow, "eb").await.len(), b.len() + waiting.len(), "all of them down b");
    let timeline = w.runtime.timeline(waiting[0]).await.unwrap();
    let split = timeline.iter().find(|r| r.step == "sp").unwrap();
    let reason = split.reason.as_deref().unwrap();
    assert!(reason.starts_with("branch b: the test's winner (click rate: a ") && reason.contains("leads significantly"), "{reason}");

    // The report shows the decision; a person may choose the other branch.
    let report = w.runtime.flow_report(flow, None, None).await.unwrap();
    let decision = report.splits[0].decision.as_ref().unwrap();
    assert_eq!((decision.port.as_str(), decision.overridden_by.as_deref()), ("b", None));
    assert!(decision.figures.contains("p = "), "{}", decision.figures);
    server::runtime::winner::choose(&w.runtime, "user:1", flow, "sp", Some("a")).await.unwrap();
    let late = w.contact(1_000).await;
    w.runtime.enroll(flow, &[late]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let participant: i64 = sqlx::query_scalar("SELECT id FROM participants WHERE contact_id = $1").bind(late).fetch_one(w.runtime.pool()).await.unwrap();
    let timeline = w.runtime.timeline(participant).await.unwrap();
    assert!(timeline.iter().any(|r| r.step == "ea"), "the override sends later arrivals down a: {timeline:?}");
    assert!(server::runtime::winner::choose(&w.runtime, "user:1", flow, "sp", Some("z")).await.is_err(), "no such branch");
}

#[tokio::test]
async fn the_live_demo_runs_the_engine_and_a_reset_redoes_it() {
    let w = world().await;
    let options = server::demo::Options { contacts: 120, days: 6, seed: 7 };
    let end = w.runtime.now();
    let first = server::demo::run(&w.store, &options, end).await.unwrap();
    assert_eq!(first.contacts, 120);
    assert!(first.participants >= 100, "{first:?}");
    assert!(first.sends > first.participants, "welcome and offers sent: {first:?}");
    let report = w.runtime.flow_report(first.flow_id, None, None).await.unwrap();
    let entered: u64 = report.days.iter().map(|d| d.entered).sum();
    assert_eq!(entered as i64, first.participants);
    let welcome = report.messages.iter().find(|m| m.step == "welcome").unwrap();
    assert!(welcome.delivered > 0 && welcome.opened > 0 && welcome.machine_opened > 0, "{welcome:?}");
    assert!(report.splits[0].branches.iter().map(|b| b.entered).sum::<u64>() > 0);
    // Only sample contacts: example.com addresses, marked.
    let odd: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE email NOT LIKE '%@example.com'").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(odd, 0);
    let (kept, recount) = (rollups(&w, first.flow_id).await, recount(&w, first.flow_id).await);
    assert_eq!(kept, recount, "the demo's rollups equal a recount");

    let again = server::demo::reset(&w.store, &options, end).await.unwrap();
    assert_ne!(again.flow_id, first.flow_id);
    let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(contacts, 120, "the old sample contacts were removed");
    let flows: i64 = sqlx::query_scalar("SELECT count(*) FROM flows").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(flows, 1);
    // New contacts, new split draws: the same people and rates, not the same sends.
    assert_eq!(again.participants, first.participants);
    assert!(again.sends > again.participants, "{again:?}");
}

/// start → wait 2 days → update.
async fn waiting_flow(store: &Store, name: &str) -> i64 {
    let steps = json!([
        {"id": "s", "kind": "start"},
        {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 2, "unit": "days"}},
        {"id": "u", "kind": "update_contact", "settings": {"changes": [{"field": "done", "op": "set", "value": "yes"}]}}
    ]);
    publish(store, name, steps, &["s->w", "w->u"]).await
}

async fn bulk_run(w: &World, action: server::runtime::bulk::Action, criteria: server::runtime::bulk::Criteria, params: server::runtime::bulk::Params) -> i64 {
    use server::runtime::bulk::{self, BulkRequest};
    let request = BulkRequest { action, criteria, disposition: None, params };
    let run = bulk::start(&w.runtime, &request, "test").await.unwrap();
    bulk::run(&w.runtime, run).await.unwrap();
    run
}

fn totals(report: &app::report_api::FlowReport) -> [u64; 6] {
    let sum = |f: fn(&app::report_api::DayFigures) -> u64| report.days.iter().map(f).sum::<u64>();
    [sum(|d| d.entered), sum(|d| d.completed), sum(|d| d.exited), sum(|d| d.cancelled), report.days.last().unwrap().active, sum(|d| d.failed)]
}

/// The participants of `flow` in `statuses` whose contacts are in `group` (a custom field).
fn group(flow: i64, group: &str, statuses: &[&str]) -> server::runtime::bulk::Criteria {
    server::runtime::bulk::Criteria {
        flow_ids: vec![flow],
        statuses: statuses.iter().map(|s| s.to_string()).collect(),
        contact: vec![serde_json::from_value(json!({"field": "group", "value": group})).unwrap()],
        ..Default::default()
    }
}

/// Participants a bulk action moves, cancels, deletes, pauses (and its
/// undo) or resets count in the report as the engine's own transitions do.
#[tokio::test]
async fn bulk_actions_count_in_the_report_like_the_engine() {
    use server::runtime::bulk::{Action, MoveMode, Params};
    let w = world().await;
    let (source, target) = (waiting_flow(&w.store, "Source").await, waiting_flow(&w.store, "Target").await);
    let mut ids = Vec::new();
    for (n, name) in ["move"; 5].into_iter().chain(["cancel"; 3]).chain(["delete"; 2]).chain(["reset"; 2]).chain(["stay"; 8]).enumerate() {
        let mut tx = w.runtime.pool().begin().await.unwrap();
        let contact: Contact = serde_json::from_value(json!({"email": format!("person{n}@example.com"), "fields": {"group": name}})).unwrap();
        ids.push(contacts::insert(&mut tx, &contact).await.unwrap());
        tx.commit().await.unwrap();
    }
    w.runtime.enroll(source, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let report = |flow| w.runtime.flow_report(flow, Some("2026-11-01"), Some("2026-11-30"));
    assert_eq!(totals(&report(source).await.unwrap()), [20, 0, 0, 0, 20, 0]);

    // Five move to the target: they exit the source and enter the target when it runs them.
    let params = Params { flow_id: Some(target), mode: MoveMode::Move, ..Params::default() };
    bulk_run(&w, Action::MoveToFlow, group(source, "move", &["waiting"]), params).await;
    w.runtime.run_until_idle().await.unwrap();
    // Three are cancelled, two deleted (their participants cancelled).
    bulk_run(&w, Action::Cancel, group(source, "cancel", &["waiting"]), Params::default()).await;
    bulk_run(&w, Action::Delete, group(source, "delete", &[]), Params::default()).await;
    let source_report = report(source).await.unwrap();
    assert_eq!(totals(&source_report), [20, 0, 5, 5, 10, 0], "entered, completed, exited, cancelled, active, failed");
    assert_eq!(totals(&report(target).await.unwrap()), [5, 0, 0, 0, 5, 0]);
    // A pause of the three cancelled (finished → paused) takes them off `cancelled`; its undo puts them back.
    let pause = bulk_run(&w, Action::Pause, group(source, "cancel", &["cancelled"]), Params::default()).await;
    assert_eq!(totals(&report(source).await.unwrap()), [20, 0, 5, 2, 13, 0]);
    server::runtime::bulk::undo(w.runtime.pool(), pause, "test", w.runtime.now()).await.unwrap();
    assert_eq!(totals(&report(source).await.unwrap()), [20, 0, 5, 5, 10, 0]);

    // The rest finish; a reset of two finished ones takes them back, and they finish again.
    w.clock.advance(SignedDuration::from_hours(49));
    w.runtime.run_until_idle().await.unwrap();
    assert_eq!(totals(&report(source).await.unwrap()), [20, 10, 5, 5, 0, 0]);
    for flow in [source, target] {
        assert_eq!(rollups(&w, flow).await, recount(&w, flow).await, "flow {flow}: rollups (left) against the recount (right)");
    }
    bulk_run(&w, Action::Reset, group(source, "reset", &["completed"]), Params::default()).await;
    w.runtime.run_until_idle().await.unwrap();
    let after = report(source).await.unwrap();
    assert_eq!(totals(&after), [20, 10, 5, 5, 0, 0], "finished once each: {:?}", after.days);
    // The rerun is another visit of the last step (the timeline keeps it as the same record).
    let last = after.steps.iter().find(|s| s.step == "u").unwrap();
    assert_eq!((last.reached, last.passed), (12, 12));

    // From the day they finished on, nobody entered but steps were reached: the page says why.
    let (status, _, body) = w.get(&format!("/flows/{source}/report?from=2026-11-04&to=2026-11-30"), &w.cookie).await;
    assert_eq!(status, StatusCode::OK);
    let page = scraper::Html::parse_document(&String::from_utf8(body).unwrap());
    let note: String = page.select(&scraper::Selector::parse("[data-note=funnel]").unwrap()).flat_map(|n| n.text()).collect();
    assert!(note.contains("was reached 12 times while 0 participants entered in the period"), "{note}");
    assert!(note.contains("count visits, not people"), "{note}");
    let (_, _, body) = w.get(&format!("/flows/{source}/report?from=2026-11-01&to=2026-11-30"), &w.cookie).await;
    let page = scraper::Html::parse_document(&String::from_utf8(body).unwrap());
    assert_eq!(page.select(&scraper::Selector::parse("[data-note=funnel]").unwrap()).count(), 0, "no step shows more visits than the 20 entries");
}

/// A chart downloads as a PNG twice the size of its view box, with the
/// chart drawn on it (its first series' colour, dark text), not blank.
#[tokio::test]
async fn a_chart_downloads_as_a_png_of_its_size_with_the_chart_drawn() {
    let w = world().await;
    let flow = waiting_flow(&w.store, "Drawn").await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(w.contact(n).await);
    }
    w.runtime.enroll(flow, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let report = w.runtime.flow_report(flow, Some("2026-11-01"), Some("2026-11-30")).await.unwrap();
    let charts = app::report_api::charts(&report, app::report_api::Metric::Conversion, false);
    for (name, chart) in charts.iter().filter(|(name, _)| ["days", "funnel"].contains(&name.as_str())) {
        let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report/{name}.png?from=2026-11-01&to=2026-11-30"), &w.cookie).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(content_type, "image/png");
        assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
        let png = resvg::tiny_skia::Pixmap::decode_png(&body).expect("a PNG that decodes");
        let legend = if chart.legend.is_empty() { 0.0 } else { 22.0 };
        assert_eq!((png.width(), png.height()), ((chart.width * 2.0) as u32, ((chart.height + legend) * 2.0) as u32), "{name}");
        let pixels = png.pixels();
        let near = |p: &resvg::tiny_skia::PremultipliedColorU8, (r, g, b): (u8, u8, u8)| {
            p.red().abs_diff(r) < 24 && p.green().abs_diff(g) < 24 && p.blue().abs_diff(b) < 24 && p.alpha() == 255
        };
        let blue = pixels.iter().filter(|p| near(p, (0x00, 0x72, 0xB2))).count();
        let dark = pixels.iter().filter(|p| near(p, (0x11, 0x11, 0x11)) || near(p, (0x55, 0x55, 0x55))).count();
        let white = pixels.iter().filter(|p| near(p, (0xff, 0xff, 0xff))).count();
        assert!(blue > 200, "{name}: the first series is drawn ({blue} pixels)");
        assert!(dark > 200, "{name}: the labels are drawn ({dark} pixels)");
        assert!(white > pixels.len() / 2, "{name}: on a white ground");
    }
}

/// Markup and formulas typed into a flow's name, its steps' names and a
/// split's branch names stay text on the report page, in its SVG, PNG and
/// CSV downloads and on the home dashboard.
#[tokio::test]
async fn markup_and_formulas_in_names_stay_text_in_reports_and_the_dashboard() {
    let w = world().await;
    let attacks = [
        "<img src=x onerror=alert(1)>",
        "\"><svg onload=alert(2)>",
        "&lt;img src=x onerror=alert(3)&gt;",
        "=cmd|' /C calc'!A0",
        "' onmouseover='alert(4)",
    ];
    let steps = json!([
        {"id": "s", "kind": "start", "name": attacks[0]},
        {"id": "sp", "kind": "split", "name": attacks[1], "settings": {"branches": [{"port": attacks[0], "percent": 50}, {"port": attacks[3], "percent": 50}]}},
        {"id": "ea", "kind": "send_email", "name": attacks[3], "settings": {"subject": "A", "body": "A"}},
        {"id": "eb", "kind": "send_email", "name": attacks[2], "settings": {"subject": "B", "body": "B"}}
    ]);
    let wires = ["s->sp".to_owned(), format!("sp:{}->ea", attacks[0]), format!("sp:{}->eb", attacks[3])];
    let wires: Vec<&str> = wires.iter().map(String::as_str).collect();
    let flow = publish(&w.store, attacks[4], steps, &wires).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(w.contact(n).await);
    }
    w.runtime.enroll(flow, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    // A person's choice of a branch puts the branch's name on the home dashboard.
    server::runtime::winner::choose(&w.runtime, "admin@x.test", flow, "sp", Some(attacks[0])).await.unwrap();

    let no_markup = |what: &str, html: &str| {
        let document = scraper::Html::parse_document(html);
        for element in document.root_element().descendants().filter_map(scraper::ElementRef::wrap) {
            let value = element.value();
            assert!(!["img", "iframe"].contains(&value.name()), "{what}: an injected <{}>", value.name());
            if value.name() == "script" {
                let code: String = element.text().collect();
                assert!(!code.contains("<img") && !code.contains("<svg"), "{what}: markup unescaped in a script: {code}");
            }
            assert!(!(value.name() == "svg" && value.attr("onload").is_some()), "{what}: an injected <svg onload>");
            for (name, attr) in value.attrs() {
                assert!(!name.starts_with("on"), "{what}: <{} {name}={attr}>", value.name());
            }
        }
        document.root_element().text().collect::<String>()
    };
    let (status, _, body) = w.get(&format!("/flows/{flow}/report?from=2026-11-01&to=2026-11-30"), &w.cookie).await;
    assert_eq!(status, StatusCode::OK);
    let text = no_markup("the report page", &String::from_utf8(body).unwrap());
    for attack in attacks {
        assert!(text.contains(attack), "the report page shows “{attack}” as text");
    }
    let (status, _, body) = w.get("/", &w.cookie).await;
    assert_eq!(status, StatusCode::OK);
    let text = no_markup("the home dashboard", &String::from_utf8(body).unwrap());
    assert!(text.contains(&format!("admin@x.test chose branch “{}”", attacks[0])), "the dashboard names the branch as text: {text}");

    for (chart, shown) in [("funnel", attacks[0]), ("messages", attacks[2]), ("split-sp", attacks[0]), ("days", "")] {
        let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report/{chart}.svg"), &w.cookie).await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/svg+xml"), "{chart}");
        let text = no_markup(chart, &String::from_utf8(body).unwrap());
        assert!(text.contains(shown), "{chart} shows “{shown}” as text: {text}");
        let (status, content_type, body) = w.get(&format!("/api/v1/flows/{flow}/report/{chart}.png"), &w.cookie).await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "{chart}");
        assert!(resvg::tiny_skia::Pixmap::decode_png(&body).is_ok());
    }
    // In the CSV a formula is written as text (a leading '), quoted where it must be.
    let (_, _, body) = w.get(&format!("/api/v1/flows/{flow}/report/funnel.csv"), &w.cookie).await;
    let csv = String::from_utf8(body).unwrap();
    let firsts: Vec<&str> = csv.lines().map(|l| l.split(',').next().unwrap_or_default()).collect();
    assert!(firsts.iter().all(|f| !f.starts_with(['=', '+', '-', '@'])), "{csv}");
    assert!(csv.contains("'=cmd|' /C calc'!A0"), "{csv}");
    let (_, _, body) = w.get(&format!("/api/v1/flows/{flow}/report/split-sp.csv"), &w.cookie).await;
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.contains("\"'=cmd|' /C calc'!A0 (") || csv.contains("'=cmd|' /C calc'!A0 ("), "{csv}");
}
