//! Contact pressure in the runtime, on a real store (SQLite here; also
//! PostgreSQL under `make pg`, where the two workers below really claim at
//! the same time): one contact in many flows due at once never gets more
//! than the cap, deferred sends go out when the window frees, and the
//! policy is an admin setting over REST.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use tower::ServiceExt;

use app::core::contact::Contact;
use server::runtime::{contacts, pressure, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};

mod support;
use support::publish;

fn t0() -> Timestamp {
    "2026-11-23T09:00:00Z".parse().unwrap()
}

async fn emails_to(runtime: &Runtime, contact: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT o.created_at FROM outbox o JOIN participants p ON p.id = o.participant_id WHERE p.contact_id = $1 AND o.kind = 'email' ORDER BY o.id",
    )
    .bind(contact)
    .fetch_all(runtime.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn two_workers_never_send_one_contact_more_than_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let clock = ManualClock::new(t0());
    // Batches of one: the workers take turns participant by participant.
    let a = Runtime::new(pool.clone(), clock.clone(), "worker-a").with_batch(1);
    let b = Runtime::new(pool.clone(), clock.clone(), "worker-b").with_batch(1);
    let policy = serde_json::from_value(json!({"caps": [{"channel": "email", "max": 1, "per": {"amount": 7, "unit": "days"}}]})).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    pressure::save(&mut conn, &policy, "test").await.unwrap();
    drop(conn);

    let mut tx = pool.begin().await.unwrap();
    let contact = contacts::insert(&mut tx, &serde_json::from_value::<Contact>(json!({"email": "busy@x.test"})).unwrap()).await.unwrap();
    tx.commit().await.unwrap();
    let mut flows = Vec::new();
    for i in 0..12 {
        let flow = publish(
            &store,
            &format!("Promo {i}"),
            json!([{"id": "s", "kind": "start"}, {"id": "e", "kind": "send_email", "settings": {"subject": format!("Offer {i}"), "body": "x"}}]),
            &["s->e"],
        )
        .await;
        a.enroll(flow, &[contact]).await.unwrap();
        flows.push(flow);
    }
    // Both claim one participant of the contact and work out its send
    // from the same sends; only the first to commit may send.
    let (x, y) = (a.claim_batch().await.unwrap(), b.claim_batch().await.unwrap());
    assert_eq!((x.len(), y.len()), (1, 1));
    let (x, y) = (a.commit_batch(x).await.unwrap(), b.commit_batch(y).await.unwrap());
    assert_eq!((x.committed, y.committed), (1, 0), "the second lost the race: released, not sent");
    assert_eq!(emails_to(&a, contact).await.len(), 1);
    // Both workers run until neither finds anything due.
    loop {
        let (x, y) = tokio::join!(a.tick(), b.tick());
        if x.unwrap().claimed == 0 && y.unwrap().claimed == 0 {
            break;
        }
    }
    assert_eq!(emails_to(&a, contact).await.len(), 1, "the cap holds across flows and workers");
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE contact_id = $1 AND status = 'waiting' AND step = 'e' AND next_run_at IS NOT NULL")
        .bind(contact)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(waiting, 11, "the rest wait for the window");
    let why: String = sqlx::query_scalar(
        "SELECT a.why FROM participant_actions a JOIN participants p ON p.id = a.participant_id
         WHERE p.contact_id = $1 AND p.next_run_at IS NOT NULL AND a.outcome = 'pending' AND a.step = 'e' LIMIT 1",
    )
    .bind(contact)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(why.contains("cap of 1 email per 7 days"), "{why}");

    // A week on, the window has room for one more.
    clock.advance(SignedDuration::from_hours(24 * 7));
    loop {
        let (x, y) = tokio::join!(a.tick(), b.tick());
        if x.unwrap().claimed == 0 && y.unwrap().claimed == 0 {
            break;
        }
    }
    assert_eq!(emails_to(&a, contact).await.len(), 2);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_sends WHERE contact_id = $1").bind(contact).fetch_one(&pool).await.unwrap();
    assert_eq!(kept, 2, "every send counted once");
}

#[tokio::test]
async fn the_policy_is_an_admin_setting_checked_before_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let runtime = Runtime::new(store.pool().clone(), Arc::new(server::runtime::SystemClock), "test");
    let app = router(AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store.clone(), runtime));
    let mut cookies = Vec::new();
    for (email, role) in [("admin@x.test", app::auth::Role::Admin), ("m@x.test", app::auth::Role::Marketer)] {
        let user = server::auth::accounts::add_user(store.pool(), email, "U", role, "a long enough password").await.unwrap();
        cookies.push(server::auth::accounts::open_session(store.pool(), user.id).await.unwrap());
    }
    let send = |cookie: String, method: Method, body: Option<Value>| {
        let app = app.clone();
        async move {
            let mut request = Request::builder()
                .method(method)
                .uri("/api/v1/settings/pressure")
                .header(header::HOST, "waymark.test")
                .header(header::ORIGIN, "http://waymark.test")
                .header(header::COOKIE, format!("waymark_session={cookie}"));
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let request = request.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let admin = cookies[0].clone();
    let (status, empty) = send(admin.clone(), Method::GET, None).await;
    assert_eq!((status, empty), (StatusCode::OK, json!({})));
    let policy = json!({"caps": [{"channel": "sms", "max": 1, "per": {"amount": 1, "unit": "days"}}],
                        "quiet_hours": {"channels": ["sms", "call"], "from": "21:00", "to": "08:00"}});
    let (status, saved) = send(admin.clone(), Method::PUT, Some(policy.clone())).await;
    assert_eq!((status, &saved), (StatusCode::OK, &policy));
    let (status, bad) = send(admin.clone(), Method::PUT, Some(json!({"caps": [{"channel": "fax", "max": 1, "per": {"amount": 1, "unit": "days"}}]}))).await;
    assert_eq!((status, bad["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_policy")));
    assert!(bad["detail"].as_str().unwrap().contains("caps[0].channel"));
    let (_, kept) = send(admin, Method::GET, None).await;
    assert_eq!(kept, policy, "a refused policy changes nothing");
    let (status, _) = send(cookies[1].clone(), Method::PUT, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "marketers may not change it");
}

/// The admin page's server functions, called as the page calls them: they
/// keep what the REST API reads, answer a refusal with every problem (the
/// page shows each), and leave the stored policy as it was.
#[tokio::test]
async fn the_settings_page_saves_the_policy_and_lists_each_problem_of_a_refused_one() {
    use app::pressure_api::{pressure_policy, save_pressure, PressureError, PressureHandle};
    use leptos::prelude::provide_context;
    use leptos::reactive::computed::ScopedFuture;
    use leptos::reactive::owner::Owner;

    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let runtime = Runtime::new(store.pool().clone(), Arc::new(server::runtime::SystemClock), "test");
    let owner = Owner::new();
    let (mut parts, _) = Request::new(()).into_parts();
    parts.extensions.insert(app::auth::Viewer { id: 1, email: "admin@x.test".into(), name: "A".into(), role: app::auth::Role::Admin, token: false });
    let handle: PressureHandle = Arc::new(runtime.clone());
    owner.with(|| {
        provide_context(parts);
        provide_context(handle);
    });
    let call = |future| owner.with(|| ScopedFuture::new(future));

    let empty = call(pressure_policy()).await.unwrap();
    assert_eq!((empty.policy.is_empty(), empty.updated_by), (true, None), "never saved");
    let policy = json!({"caps": [{"channel": "email", "max": 2, "per": {"amount": 7, "unit": "days"}}],
                        "quiet_hours": {"channels": ["sms", "call"], "from": "21:00", "to": "08:00"}});
    let saved = owner.with(|| ScopedFuture::new(save_pressure(policy.to_string()))).await.unwrap();
    assert_eq!(serde_json::to_value(&saved.policy).unwrap(), policy);
    assert_eq!(saved.updated_by.as_deref(), Some("admin@x.test"));
    let mut conn = runtime.pool().acquire().await.unwrap();
    assert_eq!(serde_json::to_value(pressure::load(&mut conn).await.unwrap()).unwrap(), policy, "what the engine and the REST API read");

    let bad = json!({"caps": [{"channel": "email", "max": 0, "per": {"amount": 7, "unit": "days"}},
                              {"channel": "sms", "max": 1, "per": {"amount": 100, "unit": "days"}}],
                     "quiet_hours": {"channels": ["sms"], "from": "9pm", "to": "08:00"}});
    match owner.with(|| ScopedFuture::new(save_pressure(bad.to_string()))).await {
        Err(PressureError::Refused(problems)) => {
            assert_eq!(problems.len(), 3, "{problems:?}");
            assert!(problems[0].starts_with("caps[0].max: a cap of 0 would never send"), "{problems:?}");
            assert!(problems[1].starts_with("caps[1].per:"), "{problems:?}");
            assert!(problems[2].starts_with("quiet_hours.from:"), "{problems:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call(pressure_policy()).await.unwrap().policy, saved.policy, "a refused policy changes nothing");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'settings.pressure' AND actor = 'admin@x.test'")
        .fetch_one(runtime.pool())
        .await
        .unwrap();
    assert_eq!(audited, 1, "the save, not the refusal");
}

/// The editor's Test run applies the installation's policy: a stored
/// contact emailed two days ago under a cap of one email a week has its
/// email deferred to when the week is over, and the record says why.
#[tokio::test]
async fn the_editor_test_run_defers_by_the_installations_policy() {
    use app::runtime_api::{test_run, RuntimeHandle, TestRunRequest};
    use leptos::prelude::provide_context;
    use leptos::reactive::computed::ScopedFuture;
    use leptos::reactive::owner::Owner;

    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let runtime = Runtime::new(store.pool().clone(), Arc::new(server::runtime::SystemClock), "test");
    let mut conn = runtime.pool().acquire().await.unwrap();
    let policy: app::core::pressure::Policy =
        serde_json::from_value(json!({"caps": [{"channel": "email", "max": 1, "per": {"amount": 7, "unit": "days"}}]})).unwrap();
    pressure::save(&mut conn, &policy, "admin@x.test").await.unwrap();
    let contact = contacts::insert(&mut conn, &Contact { email: Some("ada@example.test".into()), ..Contact::default() }).await.unwrap();
    let start = t0();
    let earlier = start - SignedDuration::from_hours(48);
    sqlx::query("INSERT INTO contact_sends (contact_id, channel, at) VALUES ($1, 'email', $2)")
        .bind(contact)
        .bind(earlier.as_millisecond())
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let owner = Owner::new();
    let (mut parts, _) = Request::new(()).into_parts();
    parts.extensions.insert(app::auth::Viewer { id: 1, email: "m@x.test".into(), name: "M".into(), role: app::auth::Role::Marketer, token: false });
    let handle: RuntimeHandle = Arc::new(runtime.clone());
    owner.with(|| {
        provide_context(parts);
        provide_context(handle);
    });
    let flow = json!({"format": "waymark.flow/v1", "name": "Capped",
        "steps": [{"id": "s", "kind": "start"},
                  {"id": "e1", "kind": "send_email", "settings": {"subject": "Hello", "body": "Hi"}}],
        "edges": [{"from": "s", "port": "next", "to": "e1"}]});
    let run = |contact_id: Option<i64>| TestRunRequest {
        document: flow.to_string(),
        contact_id,
        sample: Contact { email: Some("sample@example.test".into()), ..Contact::default() },
        start: Some(start.to_string()),
        window: "14d".into(),
        manual_after: None,
        events: Vec::new(),
    };
    let capped = owner.with(|| ScopedFuture::new(test_run(run(Some(contact))))).await.unwrap().simulation;
    let email = capped.actions.iter().find(|a| a.step == "e1").expect("the email step is reached");
    let why = email.why.clone().unwrap_or_default();
    assert!(why.contains("1 email per 7 days"), "the record names the cap: {why:?}");
    let sent = capped.effects.iter().find(|e| e.step == "e1").expect("the email is sent once the week is over");
    assert_eq!(sent.at, earlier + SignedDuration::from_hours(7 * 24), "sent when the earlier email leaves the window");
    // The sample contact has no recent sends: sent at once.
    let free = owner.with(|| ScopedFuture::new(test_run(run(None)))).await.unwrap().simulation;
    assert_eq!(free.effects.iter().find(|e| e.step == "e1").map(|e| e.at), Some(start));
}
