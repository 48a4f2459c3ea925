//! The runtime on a real SQLite file, driven by a virtual clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use sqlx::Row;

use app::core::contact::Contact;
use app::core::engine::{Effect, Event, ManualOutcome, Outcome};
use app::core::FlowDocument;
use server::runtime::outbox::{Dispatcher, Executor, Failure, Job, RetryPolicy, Unconfigured};
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};

mod support;
use support::publish;

struct World {
    store: Store,
    clock: Arc<ManualClock>,
    runtime: Runtime,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

fn t0() -> Timestamp {
    "2026-11-23T09:00:00Z".parse().unwrap()
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let clock = ManualClock::new(t0());
    let runtime = Runtime::new(pool.clone(), clock.clone(), "worker-a");
    World { store: Store::new(pool), clock, runtime, _db: db, _dir: dir }
}

async fn add_contacts(runtime: &Runtime, count: usize, make: impl Fn(usize) -> Contact) -> Vec<i64> {
    let mut tx = runtime.pool().begin().await.unwrap();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        ids.push(contacts::insert(&mut tx, &make(i)).await.unwrap());
    }
    tx.commit().await.unwrap();
    ids
}

#[tokio::test]
async fn ten_thousand_participants_wait_update_branch_and_finish() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Scoring",
        json!([{"id": "start", "kind": "start"},
               {"id": "wait", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "score", "kind": "update_contact", "settings": {"changes": [{"field": "score", "op": "increment", "value": 10}]}},
               {"id": "hot", "kind": "condition", "settings": {"criteria": [{"field": "score", "op": "greater_than", "value": 50}]}},
               {"id": "vip", "kind": "add_to_list", "settings": {"list": "Hot leads"}},
               {"id": "done", "kind": "exit"}]),
        &["start->wait", "wait->score", "score->hot", "hot:yes->vip", "hot:no->done", "vip->done"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 10_000, |i| {
        serde_json::from_value(json!({"email": format!("c{i}@example.com"), "fields": {"score": i % 100}})).unwrap()
    })
    .await;
    let (participants, kept_out) = w.runtime.enroll(flow, &ids).await.unwrap();
    assert_eq!((participants.len(), kept_out), (10_000, 0));

    let first = w.runtime.run_until_idle().await.unwrap();
    assert_eq!(first.committed, 10_000);
    assert_eq!(first.transitions, 20_000, "each entered start and the wait");

    // nothing is due until a day has passed
    w.clock.advance(SignedDuration::from_hours(23));
    assert_eq!(w.runtime.run_until_idle().await.unwrap().claimed, 0);
    w.clock.advance(SignedDuration::from_hours(1));
    let second = w.runtime.run_until_idle().await.unwrap();
    assert_eq!(second.committed, 10_000);
    assert_eq!(second.transitions, 35_900, "score, hot, done for all; vip for 5,900");

    let pool = w.runtime.pool();
    let statuses: Vec<(String, i64)> = sqlx::query_as("SELECT status, count(*) FROM participants GROUP BY status").fetch_all(pool).await.unwrap();
    assert_eq!(statuses, [("completed".to_owned(), 10_000)]);
    // score was i % 100, now +10: above 50 for i % 100 in 41..=99, 59 of every 100
    let hot: i64 = sqlx::query_scalar("SELECT count(*) FROM list_members m JOIN lists l ON l.id = m.list_id WHERE l.name = 'Hot leads'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(hot, 5_900);
    let mut conn = pool.acquire().await.unwrap();
    let c = contacts::load(&mut conn, ids[45]).await.unwrap();
    assert_eq!(c.fields["score"], json!(55));

    // every timeline is exactly the path the contact took, each step once
    let rows = sqlx::query(
        "SELECT participant_id, group_concat(step || ':' || outcome, ' ') FROM
           (SELECT * FROM participant_actions ORDER BY participant_id, visit) AS a GROUP BY participant_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 10_000);
    let hot_path = "start:completed wait:completed score:completed hot:completed vip:completed done:completed";
    let cold_path = "start:completed wait:completed score:completed hot:completed done:completed";
    let hot_rows = rows.iter().filter(|r| r.get::<String, _>(1) == hot_path).count();
    let cold_rows = rows.iter().filter(|r| r.get::<String, _>(1) == cold_path).count();
    assert_eq!((hot_rows, cold_rows), (5_900, 4_100));
    let timeline = w.runtime.timeline(participants[0]).await.unwrap();
    assert_eq!(timeline[1].due_at, t0() + SignedDuration::from_hours(24));
    assert_eq!(timeline[1].why.as_deref(), Some("1 day after “start” finished at 2026-11-23T09:00:00Z"));
}

#[tokio::test]
async fn reentry_rules_are_kept_and_unpublished_flows_refuse_enrollment() {
    let w = world().await;
    let flow = publish(&w.store, "Once", json!([{"id": "s", "kind": "start"}, {"id": "x", "kind": "exit"}]), &["s->x"]).await;
    let ids = add_contacts(&w.runtime, 2, |i| Contact { email: Some(format!("r{i}@x.test")), ..Contact::default() }).await;
    assert_eq!(w.runtime.enroll(flow, &ids).await.unwrap().0.len(), 2);
    let (again, kept_out) = w.runtime.enroll(flow, &ids).await.unwrap();
    assert_eq!((again.len(), kept_out), (0, 2), "reentry never (the default)");

    let draft = w.store.create("Draft only", None).await.unwrap();
    let err = w.runtime.enroll(draft.id, &ids).await.unwrap_err();
    assert_eq!(err.code(), "flow_not_published");
    let err = w.runtime.enroll(flow, &[999_999]).await.unwrap_err();
    assert_eq!(err.code(), "contact_not_found");

    // enrollment goes by chunks of contacts: a repeat in one call is kept
    // out like a repeat in the next call, across chunk boundaries too, and
    // one unknown contact anywhere refuses the whole call
    let many = add_contacts(&w.runtime, 1_500, |i| Contact { email: Some(format!("m{i}@x.test")), ..Contact::default() }).await;
    let twice: Vec<i64> = many.iter().chain(&many[..10]).copied().collect();
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM participants").fetch_one(w.runtime.pool()).await.unwrap();
    let err = w.runtime.enroll(flow, &[&twice[..], &[999_999]].concat()).await.unwrap_err();
    assert_eq!(err.code(), "contact_not_found");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM participants").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(after, before, "nothing enrolled from a refused call");
    let (made, kept_out) = w.runtime.enroll(flow, &twice).await.unwrap();
    assert_eq!((made.len(), kept_out), (1_500, 10));
    assert!(made.windows(2).all(|w| w[0] < w[1]), "ids in the order the contacts were given");
    let doc = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "Always", "settings": {"reentry": "always"},
        "steps": [{"id": "s", "kind": "start"}, {"id": "x", "kind": "exit"}], "edges": [{"from": "s", "port": "next", "to": "x"}]}))
    .unwrap();
    let always = w.store.create("Always", Some(doc)).await.unwrap().id;
    w.store.publish(always, None, "test").await.unwrap();
    let (made, kept_out) = w.runtime.enroll(always, &[ids[0], ids[0], ids[1]]).await.unwrap();
    assert_eq!((made.len(), kept_out), (3, 0), "reentry always: a repeat enrolls again");
    // a flow with participants cannot be deleted out from under them
    assert_eq!(w.store.delete(flow).await.unwrap_err().code(), "flow_has_participants");
}

#[tokio::test]
async fn agents_complete_manual_steps_and_the_next_wait_counts_from_then() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Calls",
        json!([{"id": "s", "kind": "start"}, {"id": "call", "kind": "call"},
               {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "x", "kind": "exit"}]),
        &["s->call", "call->w", "w->x"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 1, |_| Contact { mobile: Some("+15550100".into()), owner: Some("agent-7".into()), ..Contact::default() }).await;
    let p = w.runtime.enroll(flow, &ids).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    let view = w.runtime.participant(p).await.unwrap();
    assert_eq!((view.status.as_str(), view.step.as_deref(), view.next_run_at), ("waiting", Some("call"), None));
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!((timeline[1].manual, timeline[1].owner.as_deref()), (true, Some("agent-7")));

    // deferred, then completed 3 hours after it was due
    let later = t0() + SignedDuration::from_hours(2);
    w.runtime.deliver(p, Event::Manual { outcome: ManualOutcome::Deferred { until: later }, disposition: None }).await.unwrap();
    assert_eq!(w.runtime.timeline(p).await.unwrap()[1].outcome, Outcome::Deferred);
    w.clock.advance(SignedDuration::from_hours(3));
    w.runtime.deliver(p, Event::Manual { outcome: ManualOutcome::Completed, disposition: Some("interested".into()) }).await.unwrap();
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline[1].outcome, Outcome::Completed);
    assert_eq!(timeline[1].reason.as_deref(), Some("disposition: interested"));
    assert_eq!(timeline[1].owner.as_deref(), Some("agent-7"), "the owner survives the completion");
    assert_eq!(timeline[2].due_at, t0() + SignedDuration::from_hours(27), "one day after the completion");

    // completing again is refused: nothing is waiting for a person
    let err = w.runtime.deliver(p, Event::Manual { outcome: ManualOutcome::Completed, disposition: None }).await.unwrap_err();
    assert_eq!(err.code(), "nothing_to_do");
}

/// Fails the first `fail` tries of each effect (like a flaky provider), then
/// succeeds; counts tries per key.
struct Flaky {
    fail: usize,
    tries: AtomicUsize,
    keys: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Executor for Flaky {
    async fn execute(&self, job: &Job, _effect: &Effect) -> Result<Map<String, Value>, Failure> {
        self.keys.lock().unwrap().push(job.key.clone());
        if self.tries.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Err(Failure { reason: "HTTP 503".into(), retryable: true, retry_after: None });
        }
        Ok(Map::new())
    }
}

#[tokio::test]
async fn effects_retry_with_capped_backoff_under_one_key_then_take_the_failed_port() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Hooks",
        json!([{"id": "s", "kind": "start"}, {"id": "h", "kind": "webhook", "settings": {"url": "https://hooks.test/x"}},
               {"id": "ok", "kind": "exit"}, {"id": "bad", "kind": "block"}]),
        &["s->h", "h->ok", "h:failed->bad"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 2, |i| Contact { email: Some(format!("h{i}@x.test")), ..Contact::default() }).await;
    let policy = RetryPolicy { base: SignedDuration::from_secs(10), cap: SignedDuration::from_secs(25), max_tries: 4 };

    // succeeds on the third try: backoff 10 s, then 20 s
    let p = w.runtime.enroll(flow, &ids[..1]).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    let flaky = Arc::new(Flaky { fail: 2, tries: AtomicUsize::new(0), keys: Default::default() });
    let dispatcher = Dispatcher::new(w.runtime.clone(), flaky.clone()).with_policy(policy);
    assert_eq!(dispatcher.dispatch().await.unwrap().retried, 1);
    w.clock.advance(SignedDuration::from_secs(9));
    assert_eq!(dispatcher.dispatch().await.unwrap().retried, 0, "not before the backoff");
    w.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(dispatcher.dispatch().await.unwrap().retried, 1);
    w.clock.advance(SignedDuration::from_secs(20));
    assert_eq!(dispatcher.dispatch().await.unwrap().sent, 1);
    let keys = flaky.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k == &keys[0]), "one idempotency key for every try: {keys:?}");
    assert_eq!(w.runtime.participant(p).await.unwrap().status, "completed");

    // never succeeds: 4 tries (10 s, 20 s, then capped at 25 s), then the failed port
    let p = w.runtime.enroll(flow, &ids[1..]).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    let broken = Arc::new(Flaky { fail: usize::MAX, tries: AtomicUsize::new(0), keys: Default::default() });
    let dispatcher = Dispatcher::new(w.runtime.clone(), broken.clone()).with_policy(policy);
    for wait in [0, 10, 20, 25] {
        w.clock.advance(SignedDuration::from_secs(wait));
        dispatcher.dispatch().await.unwrap();
    }
    assert_eq!(broken.tries.load(Ordering::SeqCst), 4);
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline[1].outcome, Outcome::Failed);
    assert_eq!(timeline[1].reason.as_deref(), Some("HTTP 503 (after 4 tries)"));
    assert_eq!(timeline[2].step, "bad");
}

#[tokio::test]
async fn an_unconfigured_channel_fails_the_participant_with_a_readable_reason() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Mail",
        json!([{"id": "s", "kind": "start"}, {"id": "e", "kind": "send_email", "settings": {"subject": "Hi", "body": "Hello"}}]),
        &["s->e"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 1, |_| Contact { email: Some("m@x.test".into()), ..Contact::default() }).await;
    let p = w.runtime.enroll(flow, &ids).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    Dispatcher::new(w.runtime.clone(), Arc::new(Unconfigured)).dispatch().await.unwrap();
    let view = w.runtime.participant(p).await.unwrap();
    assert_eq!(view.status, "failed");
    assert_eq!(view.reason.as_deref(), Some("no email (SMTP) server is configured"));

    // retried (say, after the server is configured): the step runs again as a new visit
    assert_eq!(w.runtime.retry(p + 1000).await.unwrap_err().code(), "participant_not_found");
    let again = w.runtime.retry(p).await.unwrap();
    assert_eq!(again.status, "ready");
    w.runtime.run_until_idle().await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM outbox ORDER BY id").fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(keys, [format!("{p}:e:2:1"), format!("{p}:e:3:1")], "a new key for the new try");
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline.iter().map(|a| a.outcome).collect::<Vec<_>>(), [Outcome::Completed, Outcome::Failed, Outcome::Pending]);
    assert_eq!(w.runtime.retry(p).await.unwrap_err().code(), "not_failed");
}

#[tokio::test]
async fn a_stalled_workers_claim_is_taken_over_and_its_late_commit_is_refused() {
    let w = world().await;
    let flow = publish(&w.store, "Lease", json!([{"id": "s", "kind": "start"}, {"id": "x", "kind": "exit"}]), &["s->x"]).await;
    let ids = add_contacts(&w.runtime, 50, |i| Contact { email: Some(format!("l{i}@x.test")), ..Contact::default() }).await;
    w.runtime.enroll(flow, &ids).await.unwrap();

    let stalled = w.runtime.clone().with_lease(SignedDuration::from_secs(30));
    let other = Runtime::new(w.runtime.pool().clone(), w.clock.clone(), "worker-b");
    let batch = stalled.claim_batch().await.unwrap();
    assert_eq!(batch.len(), 50);
    assert_eq!(other.tick().await.unwrap().claimed, 0, "claimed work is not taken while the lease holds");

    w.clock.advance(SignedDuration::from_secs(31));
    let taken = other.tick().await.unwrap();
    assert_eq!((taken.claimed, taken.committed), (50, 50));
    let late = stalled.commit_batch(batch).await.unwrap();
    assert_eq!(late.committed, 0, "the stalled worker's writes are refused");
    let actions: i64 = sqlx::query_scalar("SELECT count(*) FROM participant_actions").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(actions, 100, "each participant's two steps recorded once");
}

#[tokio::test]
async fn a_participant_taken_over_mid_batch_is_skipped_and_the_rest_of_the_batch_commits() {
    let w = world().await;
    let steps = json!([{"id": "s", "kind": "start"},
                       {"id": "count", "kind": "update_contact", "settings": {"changes": [{"field": "n", "op": "increment", "value": 1}]}},
                       {"id": "x", "kind": "exit"}]);
    let first = publish(&w.store, "First", steps.clone(), &["s->count", "count->x"]).await;
    let second = publish(&w.store, "Second", steps, &["s->count", "count->x"]).await;
    let ids = add_contacts(&w.runtime, 10, |i| serde_json::from_value(json!({"email": format!("m{i}@x.test"), "fields": {"n": 0}})).unwrap()).await;
    let (in_first, _) = w.runtime.enroll(first, &ids).await.unwrap();
    // The first contact is in both flows: its second participant is worked
    // out over the first's change.
    let (in_second, _) = w.runtime.enroll(second, &ids[..1]).await.unwrap();

    let batch = w.runtime.claim_batch().await.unwrap();
    assert_eq!(batch.len(), 11);
    // Taken over while the batch was worked out: the first contact's first
    // participant, and a participant alone on its contact.
    let taken = [in_first[0], in_first[3]];
    for id in taken {
        sqlx::query("UPDATE participants SET lease_owner = 'worker-b', revision = revision + 1 WHERE id = $1")
            .bind(id)
            .execute(w.runtime.pool())
            .await
            .unwrap();
    }
    let tick = w.runtime.commit_batch(batch).await.unwrap();
    assert_eq!((tick.claimed, tick.committed), (11, 8), "the two taken over and the one worked out over a change not kept are left");

    let n = |i: usize| {
        let pool = w.runtime.pool().clone();
        let id = ids[i];
        async move {
            let mut conn = pool.acquire().await.unwrap();
            contacts::load(&mut conn, id).await.unwrap().fields["n"].as_f64()
        }
    };
    let records = |p: i64| {
        let pool = w.runtime.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM participant_actions WHERE participant_id = $1").bind(p).fetch_one(&pool).await.unwrap()
        }
    };
    for (i, p) in in_first.iter().enumerate() {
        let written = !taken.contains(p);
        assert_eq!(records(*p).await > 0, written, "participant {p}");
        assert_eq!(w.runtime.participant(*p).await.unwrap().status, if written { "completed" } else { "ready" });
        if i != 0 {
            assert_eq!(n(i).await, Some(if written { 1.0 } else { 0.0 }), "contact {i}");
        }
    }
    assert_eq!(n(0).await, Some(0.0), "nothing written for the first contact: its second participant saw the first's change");
    assert_eq!(records(in_second[0]).await, 0);
    let owners: Vec<Option<String>> = sqlx::query_scalar("SELECT lease_owner FROM participants WHERE id IN ($1, $2, $3) ORDER BY id")
        .bind(in_first[0])
        .bind(in_first[3])
        .bind(in_second[0])
        .fetch_all(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(owners, [Some("worker-b".to_owned()), Some("worker-b".to_owned()), None], "the other worker keeps its claims; ours is released");

    // The other worker gives them up: they run again, over the data as written.
    sqlx::query("UPDATE participants SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = 'worker-b'").execute(w.runtime.pool()).await.unwrap();
    assert_eq!(w.runtime.run_until_idle().await.unwrap().committed, 3);
    assert_eq!(n(0).await, Some(2.0), "each of the first contact's flows counted once");
    assert_eq!(n(3).await, Some(1.0));
}

#[tokio::test]
async fn slow_drip_starts_at_most_n_per_period() {
    let w = world().await;
    let steps = json!([{"id": "s", "kind": "start"}, {"id": "x", "kind": "exit"}]);
    let doc = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "name": "Drip",
        "settings": {"slow_drip": {"limit": 3, "per": "hour"}, "reentry": "always"},
        "steps": steps, "edges": [{"from": "s", "port": "next", "to": "x"}]}))
    .unwrap();
    let flow = w.store.create("Drip", Some(doc)).await.unwrap().id;
    w.store.publish(flow, None, "test").await.unwrap();
    let ids = add_contacts(&w.runtime, 7, |i| Contact { email: Some(format!("d{i}@x.test")), ..Contact::default() }).await;
    w.clock.set("2026-11-23T09:20:00Z".parse().unwrap());
    w.runtime.enroll(flow, &ids[..5]).await.unwrap();
    w.runtime.enroll(flow, &ids[5..]).await.unwrap();
    let starts: Vec<i64> = sqlx::query_scalar("SELECT starts_at FROM participants ORDER BY id").fetch_all(w.runtime.pool()).await.unwrap();
    let at = |t: &str| t.parse::<Timestamp>().unwrap().as_millisecond();
    assert_eq!(
        starts,
        [at("2026-11-23T09:20:00Z"), at("2026-11-23T09:20:00Z"), at("2026-11-23T09:20:00Z"),
         at("2026-11-23T10:00:00Z"), at("2026-11-23T10:00:00Z"), at("2026-11-23T10:00:00Z"), at("2026-11-23T11:00:00Z")]
    );
    assert_eq!(w.runtime.run_until_idle().await.unwrap().committed, 3, "only this hour's three start now");
    w.clock.set("2026-11-23T10:00:00Z".parse().unwrap());
    assert_eq!(w.runtime.run_until_idle().await.unwrap().committed, 3);
}

#[tokio::test]
async fn joining_a_list_enrolls_into_flows_that_start_on_it() {
    let w = world().await;
    let welcome = publish(
        &w.store,
        "Welcome",
        json!([{"id": "s", "kind": "start", "settings": {"entry": "list", "list": "Signups"}}, {"id": "x", "kind": "exit"}]),
        &["s->x"],
    )
    .await;
    let tagger = publish(
        &w.store,
        "Tagger",
        json!([{"id": "s", "kind": "start"}, {"id": "tag", "kind": "add_to_list", "settings": {"list": "signups"}}]),
        &["s->tag"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 1, |_| Contact { email: Some("j@x.test".into()), ..Contact::default() }).await;
    w.runtime.enroll(tagger, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let in_welcome: Vec<(i64, String)> = sqlx::query_as("SELECT contact_id, status FROM participants WHERE flow_id = $1")
        .bind(welcome)
        .fetch_all(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(in_welcome, [(ids[0], "completed".to_owned())], "the list step enrolled the contact, which then ran");
}

#[tokio::test]
async fn participants_stay_on_their_version_until_migrated() {
    let w = world().await;
    let steps_v1 = json!([{"id": "s", "kind": "start"}, {"id": "call", "kind": "call"}, {"id": "x", "kind": "exit"}]);
    let flow = publish(&w.store, "Versions", steps_v1, &["s->call", "call->x"]).await;
    let ids = add_contacts(&w.runtime, 3, |i| Contact { mobile: Some(format!("+1555010{i}")), ..Contact::default() }).await;
    let ps = w.runtime.enroll(flow, &ids).await.unwrap().0;
    w.runtime.run_until_idle().await.unwrap();

    // v2 renames the call step: only a map can carry participants across
    let draft = w.store.draft(flow).await.unwrap();
    let mut doc = draft.document.clone();
    doc.steps.iter_mut().find(|s| s.id == "call").unwrap().id = "intro_call".into();
    for edge in &mut doc.edges {
        for end in [&mut edge.from, &mut edge.to] {
            if end == "call" {
                *end = "intro_call".into();
            }
        }
    }
    w.store.save_draft(flow, draft.revision, doc).await.unwrap();
    w.store.publish(flow, None, "test").await.unwrap();
    assert_eq!(w.runtime.participant(ps[0]).await.unwrap().version, 1, "pinned to the version it entered");
    assert_eq!(w.runtime.counts(flow).await.unwrap(), [(1, "call".to_owned(), "waiting".to_owned(), 3)]);

    assert_eq!(w.runtime.migrate(flow, &Default::default()).await.unwrap(), (0, 3), "no step of that id in v2");
    let err = w.runtime.migrate(flow, &[("call".to_owned(), "nowhere".to_owned())].into()).await.unwrap_err();
    assert_eq!(err.code(), "unknown_step");
    let map = [("call".to_owned(), "intro_call".to_owned())].into();
    assert_eq!(w.runtime.migrate(flow, &map).await.unwrap(), (3, 0));
    w.runtime.run_until_idle().await.unwrap();
    let view = w.runtime.participant(ps[0]).await.unwrap();
    assert_eq!((view.version, view.step.as_deref(), view.status.as_str()), (2, Some("intro_call"), "waiting"));
}

#[tokio::test]
async fn stored_action_groups_run_and_recursion_is_reported_before_publish() {
    let w = world().await;
    let group = |runs: &str| {
        FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "steps": [
            {"id": "s", "kind": "start"}, {"id": "u", "kind": "update_contact", "settings": {"changes": [{"field": "stage", "op": "set", "value": "qualified"}]}},
            {"id": "r", "kind": "run_action_group", "settings": {"group": runs}}],
            "edges": [{"from": "s", "port": "next", "to": "u"}, {"from": "u", "port": "next", "to": "r"}]}))
        .unwrap()
    };
    let findings = w.store.save_group("Qualify", group("Tag")).await.unwrap();
    assert_eq!(findings.errors[0].code, app::core::Code::UnknownTarget, "Tag does not exist yet");
    let tag = FlowDocument::from_value(&json!({"format": "waymark.flow/v1", "steps": [
        {"id": "s", "kind": "start"}, {"id": "l", "kind": "add_to_list", "settings": {"list": "Tagged"}}],
        "edges": [{"from": "s", "port": "next", "to": "l"}]})).unwrap();
    assert!(w.store.save_group("Tag", tag).await.unwrap().errors.is_empty());

    let flow = publish(
        &w.store,
        "Grouped",
        json!([{"id": "s", "kind": "start"}, {"id": "g", "kind": "run_action_group", "settings": {"group": "qualify"}}]),
        &["s->g"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 1, |_| Contact { email: Some("g@x.test".into()), ..Contact::default() }).await;
    w.runtime.enroll(flow, &ids).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    let mut conn = w.runtime.pool().acquire().await.unwrap();
    let contact = contacts::load(&mut conn, ids[0]).await.unwrap();
    assert_eq!(contact.fields["stage"], json!("qualified"));
    assert!(contact.lists.contains("Tagged"), "the nested group ran too");

    // Tag now runs Qualify, which runs Tag: the flow that runs them is told before publishing
    let findings = w.store.save_group("Tag", group("Qualify")).await.unwrap();
    assert!(findings.errors.iter().any(|f| f.code == app::core::Code::Recursion), "{findings:?}");
    let draft = w.store.draft(flow).await.unwrap();
    assert!(draft.findings.errors.iter().any(|f| f.code == app::core::Code::Recursion));
    assert_eq!(w.store.publish(flow, None, "test").await.unwrap_err().code(), "publish_blocked");
}

mod bulk {
    use server::runtime::bulk::{self, Action, Criteria, FieldEquals};
    use server::runtime::Clock;

    use super::*;

    async fn statuses(w: &World) -> Vec<(i64, String, Option<i64>, i64)> {
        sqlx::query_as("SELECT id, status, next_run_at, pass_count FROM participants ORDER BY id").fetch_all(w.runtime.pool()).await.unwrap()
    }

    /// Three participants: one waiting on a day's wait, one waiting on a call, one held by a guard.
    async fn three(w: &World) -> (i64, Vec<i64>) {
        let flow = publish(
            &w.store,
            "Bulk",
            json!([{"id": "s", "kind": "start"},
                   {"id": "route", "kind": "condition", "settings": {"criteria": [{"field": "kind", "op": "equals", "value": "wait"}]}},
                   {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
                   {"id": "call", "kind": "call", "guard": {"criteria": [{"field": "ok", "op": "equals", "value": "yes"}], "when_unmet": "hold"}},
                   {"id": "x", "kind": "exit"}]),
            &["s->route", "route:yes->w", "route:no->call", "w->x", "call->x"],
        )
        .await;
        let kinds = [("wait", "no"), ("call", "yes"), ("call", "no")];
        let ids = add_contacts(&w.runtime, 3, |i| {
            serde_json::from_value(json!({"email": format!("b{i}@x.test"), "mobile": "+15550100", "timezone": "Europe/Oslo",
                                          "fields": {"kind": kinds[i].0, "ok": kinds[i].1, "region": if i == 0 { "North" } else { "South" }}}))
            .unwrap()
        })
        .await;
        let ps = w.runtime.enroll(flow, &ids).await.unwrap().0;
        w.runtime.run_until_idle().await.unwrap();
        (flow, ps)
    }

    #[tokio::test]
    async fn suppress_keeps_the_status_and_unsuppress_restores_exactly_it() {
        let w = world().await;
        let (flow, ps) = three(&w).await;
        let before = statuses(&w).await;
        assert_eq!(before.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(), ["waiting", "waiting", "held"]);
        let all = Criteria { flow_ids: vec![flow], ..Criteria::default() };
        let (count, sample) = bulk::preview(w.runtime.pool(), &all).await.unwrap();
        assert_eq!((count, sample), (3, ps.clone()));

        assert_eq!(bulk::apply(&w.runtime, &all, &Action::Suppress, None, "test").await.unwrap(), 3);
        assert!(statuses(&w).await.iter().all(|s| s.1 == "suppressed"));
        // suppressing again changes nothing (the remembered status stays the original)
        assert_eq!(bulk::apply(&w.runtime, &all, &Action::Suppress, None, "test").await.unwrap_err().code(), "nothing_matched");
        // time passes: nothing suppressed moves, and an agent cannot complete the suppressed call
        w.clock.advance(SignedDuration::from_hours(25));
        assert_eq!(w.runtime.run_until_idle().await.unwrap().claimed, 0);
        let err = w.runtime.deliver(ps[1], Event::Manual { outcome: ManualOutcome::Completed, disposition: None }).await.unwrap_err();
        assert_eq!(err.code(), "nothing_to_do");

        assert_eq!(bulk::apply(&w.runtime, &all, &Action::Unsuppress, None, "test").await.unwrap(), 3);
        assert_eq!(statuses(&w).await, before, "exactly the statuses, next runs and pass counts they had");
        // and they carry on: the day's wait is over now
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.runtime.participant(ps[0]).await.unwrap().status, "completed");
    }

    #[tokio::test]
    async fn cancel_and_pause_forget_the_prior_status_ready_and_reset_do_what_they_say() {
        let w = world().await;
        let (flow, ps) = three(&w).await;
        let north = Criteria { flow_ids: vec![flow], contact: vec![FieldEquals { field: "region".into(), value: "north".into() }], ..Criteria::default() };
        assert_eq!(bulk::preview(w.runtime.pool(), &north).await.unwrap(), (1, vec![ps[0]]));

        bulk::apply(&w.runtime, &north, &Action::Cancel, None, "test").await.unwrap();
        assert_eq!(w.runtime.participant(ps[0]).await.unwrap().status, "cancelled");
        assert_eq!(bulk::apply(&w.runtime, &north, &Action::Unsuppress, None, "test").await.unwrap_err().code(), "nothing_matched");

        // ready: status only; the pass count and next run stay
        let before = statuses(&w).await[0].clone();
        bulk::apply(&w.runtime, &north, &Action::Ready, None, "test").await.unwrap();
        let after = statuses(&w).await[0].clone();
        assert_eq!((after.1.as_str(), after.2, after.3), ("ready", before.2, before.3));

        // manual pass: +1 with a disposition, audited
        let south = Criteria { flow_ids: vec![flow], contact: vec![FieldEquals { field: "region".into(), value: "South".into() }], ..Criteria::default() };
        assert_eq!(bulk::apply(&w.runtime, &south, &Action::ManualPass, None, "test").await.unwrap_err().code(), "disposition_required");
        bulk::apply(&w.runtime, &south, &Action::ManualPass, Some("no answer"), "test").await.unwrap();
        assert_eq!(statuses(&w).await.iter().map(|s| s.3).collect::<Vec<_>>(), [1, 2, 2]);
        let audit: (String, i64, Option<String>) = sqlx::query_as("SELECT action, count, disposition FROM bulk_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(w.runtime.pool()).await.unwrap();
        assert_eq!(audit, ("manual_pass".to_owned(), 2, Some("no answer".to_owned())));

        // reset: pass count 0, status ready, next run now; the held call re-checks at once
        bulk::apply(&w.runtime, &south, &Action::Pause, None, "test").await.unwrap();
        assert_eq!(statuses(&w).await[2].1, "paused");
        bulk::apply(&w.runtime, &south, &Action::Reset, None, "test").await.unwrap();
        let reset = statuses(&w).await;
        assert_eq!((reset[2].1.as_str(), reset[2].2, reset[2].3), ("ready", Some(w.clock.now().as_millisecond()), 0));
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.runtime.participant(ps[1]).await.unwrap().status, "waiting", "back at its call");
        assert_eq!(w.runtime.participant(ps[2]).await.unwrap().status, "held", "its guard still unmet");
    }

    #[tokio::test]
    async fn bad_criteria_and_empty_matches_change_nothing() {
        let w = world().await;
        let (flow, _) = three(&w).await;
        let before = statuses(&w).await;
        let bad_status = Criteria { flow_ids: vec![flow], statuses: vec!["sleeping".into()], ..Criteria::default() };
        assert_eq!(bulk::apply(&w.runtime, &bad_status, &Action::Pause, None, "t").await.unwrap_err().code(), "invalid_criteria");
        let nobody = Criteria { flow_ids: vec![flow + 100], ..Criteria::default() };
        assert_eq!(bulk::apply(&w.runtime, &nobody, &Action::Pause, None, "t").await.unwrap_err().code(), "nothing_matched");
        let odd_field = Criteria { contact: vec![FieldEquals { field: "x') OR 1=1 --".into(), value: "1".into() }], ..Criteria::default() };
        assert_eq!(bulk::apply(&w.runtime, &odd_field, &Action::Pause, None, "t").await.unwrap_err().code(), "invalid_criteria");
        assert!(serde_json::from_value::<Criteria>(json!({"flow_idz": [1]})).is_err(), "unknown criteria are refused");
        assert_eq!(statuses(&w).await, before);
        let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM bulk_runs").fetch_one(w.runtime.pool()).await.unwrap();
        assert_eq!(runs, 0);
    }

    #[tokio::test]
    async fn a_worker_that_claimed_before_a_bulk_action_cannot_commit_over_it() {
        let w = world().await;
        let (flow, _) = three(&w).await;
        w.clock.advance(SignedDuration::from_hours(25));
        let batch = w.runtime.claim_batch().await.unwrap();
        assert_eq!(batch.len(), 2, "the ended wait and the held guard's re-check");
        let all = Criteria { flow_ids: vec![flow], ..Criteria::default() };
        bulk::apply(&w.runtime, &all, &Action::Suppress, None, "t").await.unwrap();
        assert_eq!(w.runtime.commit_batch(batch).await.unwrap().committed, 0);
        assert!(statuses(&w).await.iter().all(|s| s.1 == "suppressed"));
    }
}

/// Takes 30 ms per effect, noting how many run at once and each
/// participant's order; panics on a webhook to a URL saying "panic".
#[derive(Default)]
struct Slow {
    running: AtomicUsize,
    most: AtomicUsize,
    done: std::sync::Mutex<Vec<(i64, String, &'static str)>>,
}

#[async_trait::async_trait]
impl Executor for Slow {
    async fn execute(&self, job: &Job, effect: &Effect) -> Result<Map<String, Value>, Failure> {
        if matches!(effect, Effect::Webhook { url, .. } if url.contains("panic")) {
            panic!("a channel bug");
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.done.lock().unwrap().push((job.participant, job.key.clone(), effect.kind()));
        Ok(Map::new())
    }
}

#[tokio::test]
async fn the_outbox_carries_effects_out_at_once_keeps_each_participants_order_and_survives_a_panicking_channel() {
    let w = world().await;
    let flow = publish(
        &w.store,
        "Many",
        json!([{"id": "s", "kind": "start"},
               {"id": "n", "kind": "notify_email", "settings": {"to": "ops@x.test", "subject": "New"}},
               {"id": "t", "kind": "notify_sms", "settings": {"to": "+14155550100", "text": "New"}},
               {"id": "h", "kind": "webhook", "settings": {"url": "https://hooks.test/{{ email }}"}}]),
        &["s->n", "n->t", "t->h"],
    )
    .await;
    let ids = add_contacts(&w.runtime, 20, |i| Contact { email: Some(format!("c{i}@x.test")), ..Contact::default() }).await;
    let panicky = add_contacts(&w.runtime, 1, |_| Contact { email: Some("panic@x.test".into()), ..Contact::default() }).await;
    let ps = w.runtime.enroll(flow, &ids).await.unwrap().0;
    let bad = w.runtime.enroll(flow, &panicky).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    let slow = Arc::new(Slow::default());
    let policy = RetryPolicy { base: SignedDuration::from_secs(10), cap: SignedDuration::from_secs(10), max_tries: 1 };
    let dispatcher = Dispatcher::new(w.runtime.clone(), slow.clone()).with_policy(policy).with_concurrency(4);
    let pass = dispatcher.dispatch().await.unwrap();
    assert_eq!((pass.sent, pass.failed), (62, 1), "the panic fails its own effect, not the pass");

    assert_eq!(slow.most.load(Ordering::SeqCst), 4, "four at once, never more");
    let done = slow.done.lock().unwrap().clone();
    for p in &ps {
        let kinds: Vec<&str> = done.iter().filter(|(who, _, _)| who == p).map(|(_, _, kind)| *kind).collect();
        assert_eq!(kinds, ["notify_email", "notify_sms", "webhook"], "participant {p} in its own order");
        assert_eq!(w.runtime.participant(*p).await.unwrap().status, "completed");
    }
    let hook = w.runtime.timeline(bad).await.unwrap().pop().unwrap();
    assert_eq!((hook.step.as_str(), hook.outcome), ("h", Outcome::Failed));
    assert!(hook.reason.as_deref().unwrap().starts_with("the channel failed unexpectedly"), "{:?}", hook.reason);

    // nothing is carried out twice
    assert_eq!(dispatcher.dispatch().await.unwrap(), Default::default());
    assert_eq!(slow.done.lock().unwrap().len(), 62);
}
