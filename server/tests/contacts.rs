//! Contacts at scale on a real SQLite file: streamed CSV import (mapping,
//! dedupe, the per-row report), exports with formula escaping, and the bulk
//! actions that run as background jobs (delete, move to flow, callbacks,
//! reservations, data files, undo), through the store and through REST.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use tower::ServiceExt;

use app::core::contact::Contact;
use app::core::FlowDocument;
use server::channels::settings;
use server::runtime::bulk::{self, Action, BulkRequest, Criteria, Duplicates, MoveMode, Params};
use server::runtime::import::{self, Dedupe, ImportOptions};
use server::runtime::{contacts, Clock, ManualClock, Runtime};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};

mod support;
use support::SmtpSink;
use server::db::{Backend, Pool, Sql};

struct World {
    store: Store,
    clock: Arc<ManualClock>,
    runtime: Runtime,
    _db: support::TestDb,
    dir: tempfile::TempDir,
}

fn t0() -> Timestamp {
    "2026-11-23T09:00:00Z".parse().unwrap()
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let clock = ManualClock::new(t0());
    let runtime = Runtime::new(pool.clone(), clock.clone(), "worker-a")
        .with_files_dir(dir.path().join("files"))
        .with_public_url("http://waymark.test/");
    World { store: Store::new(pool), clock, runtime, _db: db, dir }
}

impl World {
    fn pool(&self) -> &Pool {
        self.runtime.pool()
    }

    async fn import(&self, text: &str, options: ImportOptions) -> import::ImportJob {
        let path = self.dir.path().join("in.csv");
        std::fs::write(&path, text).unwrap();
        import::check(&path, &options).await.unwrap();
        let job = import::create_job(&self.runtime, &path, Some("in.csv"), &options, "test").await.unwrap();
        import::run(&self.runtime, job, path, options).await.unwrap();
        let mut conn = self.pool().acquire().await.unwrap();
        import::job(&mut conn, job, 100).await.unwrap()
    }

    async fn contact_by_email(&self, email: &str) -> Contact {
        let id: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE lower(email) = lower($1)").bind(email).fetch_one(self.pool()).await.unwrap();
        let mut conn = self.pool().acquire().await.unwrap();
        contacts::load(&mut conn, id).await.unwrap()
    }

    /// A published flow: start -> call (agent-1's) -> exit.
    async fn call_flow(&self, name: &str) -> i64 {
        let doc = FlowDocument::from_value(&json!({
            "format": "waymark.flow/v1", "name": name,
            "steps": [{"id": "s", "kind": "start"},
                      {"id": "call", "kind": "call", "settings": {"owner": "user:agent-1"}},
                      {"id": "x", "kind": "exit"}],
            "edges": [{"from": "s", "port": "next", "to": "call"}, {"from": "call", "port": "next", "to": "x"}]}))
        .unwrap();
        let flow = self.store.create(name, Some(doc)).await.unwrap();
        self.store.publish(flow.id, None, "test").await.unwrap();
        flow.id
    }

    /// `n` contacts enrolled in `flow`, each waiting at its call.
    async fn waiting_at_call(&self, flow: i64, n: usize) -> Vec<i64> {
        let mut tx = self.pool().begin().await.unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let c: Contact = serde_json::from_value(json!({"email": format!("p{flow}-{i}@x.test"), "mobile": format!("+1555{flow:03}{i:04}"), "fields": {"region": if i % 2 == 0 { "north" } else { "south" }}})).unwrap();
            ids.push(contacts::insert(&mut tx, &c).await.unwrap());
        }
        tx.commit().await.unwrap();
        let (ps, _) = self.runtime.enroll(flow, &ids).await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
        ps
    }

    async fn bulk(&self, request: BulkRequest) -> server::error::Result<bulk::RunView> {
        self.bulk_by(request, "test").await
    }

    async fn bulk_by(&self, request: BulkRequest, by: &str) -> server::error::Result<bulk::RunView> {
        let id = bulk::start(&self.runtime, &request, by).await?;
        bulk::run(&self.runtime, id).await
    }

    /// SMTP without authentication on `port` (the local sink, or nothing).
    async fn smtp(&self, port: u16) {
        let smtp = json!({"host": "127.0.0.1", "port": port, "tls": "none", "from": "Waymark <files@waymark.test>", "timeout_secs": 5});
        settings::update(self.pool(), json!({"smtp": smtp}).as_object().unwrap().clone()).await.unwrap();
    }

    /// A participant's pending manual task: (owner, due at, why).
    async fn task(&self, participant: i64) -> (Option<String>, String, Option<String>) {
        sqlx::query_as("SELECT owner, due_at, why FROM participant_actions WHERE participant_id = $1 AND manual = 1 AND outcome = 'pending'")
            .bind(participant)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    async fn next_run(&self, participant: i64) -> (Option<i64>, Option<i64>) {
        sqlx::query_as("SELECT next_run_at, callback_at FROM participants WHERE id = $1").bind(participant).fetch_one(self.pool()).await.unwrap()
    }

    async fn statuses(&self, flow: i64) -> Vec<String> {
        sqlx::query_scalar("SELECT status FROM participants WHERE flow_id = $1 ORDER BY id").bind(flow).fetch_all(self.pool()).await.unwrap()
    }
}

fn request(action: Action, criteria: Criteria, params: Params) -> BulkRequest {
    BulkRequest { action, criteria, disposition: None, params }
}

fn in_flow(flow: i64) -> Criteria {
    Criteria { flow_ids: vec![flow], ..Criteria::default() }
}

mod importing {
    use super::*;

    #[tokio::test]
    async fn mapped_columns_dedupe_and_a_per_row_report() {
        let w = world().await;
        let mut tx = w.pool().begin().await.unwrap();
        let ada: Contact = serde_json::from_value(json!({"email": "ada@x.test", "owner": "ann", "fields": {"company": "Old Ltd", "keep": "me"}})).unwrap();
        contacts::insert(&mut tx, &ada).await.unwrap();
        tx.commit().await.unwrap();

        let file = "E-Mail,Phone,Zone,Firma,Notes,Tags\n\
                    ADA@x.test,,Europe/London,New Ltd,ignored,VIP\n\
                    bob@x.test,+1 (555) 010-0001,,Bob Co,,VIP;News\n\
                    not an email,,,,,\n\
                    ,,,,,\n\
                    bob@x.test,,America/New_York,,,\n\
                    ,'+15550100002,Mars/Base,,,\n\
                    ,+15550100003,,Carol Inc,,\n\
                    short,row\n";
        let options = ImportOptions {
            mapping: [("e-mail", "email"), ("Phone", "mobile"), ("zone", "timezone"), ("Firma", "company"), ("Notes", ""), ("Tags", "lists")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            list: Some("Imported".into()),
            ..ImportOptions::default()
        };
        let job = w.import(file, options).await;
        assert_eq!(job.status, "done");
        assert_eq!((job.rows_done, job.rows_total), (8, Some(8)));
        assert_eq!((job.created, job.updated, job.skipped, job.failed), (2, 2, 0, 4), "bob and carol created; ada and bob's second row update");
        let lines: Vec<i64> = job.errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, [4, 5, 7, 9], "{:?}", job.errors);
        assert!(job.errors[0].1.contains("not an email"));
        assert!(job.errors[1].1.contains("neither"));
        assert!(job.errors[2].1.contains("time zone"));
        assert!(job.errors[3].1.contains("columns"));
        assert_eq!(job.bytes_done, job.bytes_total);

        let ada = w.contact_by_email("ada@x.test").await;
        assert_eq!(ada.fields["company"], "New Ltd", "updated");
        assert_eq!(ada.fields["keep"], "me", "fields merge");
        assert!(!ada.fields.contains_key("notes"), "a column mapped to \"\" is left out");
        assert_eq!((ada.owner.as_deref(), ada.timezone.as_deref()), (Some("ann"), Some("Europe/London")));
        assert_eq!(ada.lists.iter().collect::<Vec<_>>(), ["Imported", "VIP"]);
        let bob = w.contact_by_email("bob@x.test").await;
        assert_eq!(bob.mobile.as_deref(), Some("+15550100001"));
        assert_eq!(bob.timezone.as_deref(), Some("America/New_York"), "the later row of the file updated it");
        assert_eq!(bob.lists.len(), 3);
        let carol: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE mobile = '+15550100003'").fetch_one(w.pool()).await.unwrap();
        assert_eq!(carol, 1);
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(w.pool()).await.unwrap();
        assert_eq!(total, 3, "refused rows wrote nothing");
    }

    #[tokio::test]
    async fn skip_leaves_existing_contacts_alone_and_mobile_matching_finds_them() {
        let w = world().await;
        w.import("email,mobile,score\na@x.test,+15550100001,1\n,+15550100002,2\n", ImportOptions::default()).await;
        let skip = ImportOptions { dedupe: Dedupe::Skip, ..ImportOptions::default() };
        let job = w.import("email,mobile,score\nA@X.test,,9\n,+15550100002,9\nnew@x.test,,9\n", skip).await;
        assert_eq!((job.created, job.updated, job.skipped, job.failed), (1, 0, 2, 0));
        assert_eq!(w.contact_by_email("a@x.test").await.fields["score"], "1");

        let by_mobile = ImportOptions { match_on: import::MatchOn::Mobile, ..ImportOptions::default() };
        let job = w.import("email,mobile,score\nchanged@x.test,+15550100002,5\nnew@x.test,+15550100001,5\n", by_mobile).await;
        assert_eq!((job.created, job.updated, job.failed), (0, 1, 1), "{:?}", job.errors);
        assert_eq!(w.contact_by_email("changed@x.test").await.fields["score"], "5", "found by its mobile, email set");
        assert!(job.errors[0].1.contains("belongs to contact"), "two people are never merged: {:?}", job.errors);
    }

    #[tokio::test]
    async fn a_file_that_cannot_work_is_refused_before_anything_is_written() {
        let w = world().await;
        let path = w.dir.path().join("bad.csv");
        std::fs::write(&path, "name,company\nAda,X\n").unwrap();
        assert_eq!(import::check(&path, &ImportOptions::default()).await.unwrap_err().code(), "invalid_import");
        std::fs::write(&path, "").unwrap();
        assert_eq!(import::check(&path, &ImportOptions::default()).await.unwrap_err().code(), "invalid_import");
    }

    #[tokio::test]
    async fn twenty_thousand_rows_in_several_batches_with_progress() {
        let w = world().await;
        let mut file = String::from("email,first_name\n");
        for i in 0..20_000 {
            if i % 1000 == 999 {
                file.push_str("broken,\n");
            } else {
                file.push_str(&format!("c{}@x.test,Name {i}\n", i % 15_000));
            }
        }
        let job = w.import(&file, ImportOptions::default()).await;
        assert_eq!(job.rows_done, 20_000);
        assert_eq!(job.failed, 20);
        assert_eq!(job.created + job.updated, 19_980);
        let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(w.pool()).await.unwrap();
        assert_eq!(contacts, job.created);
        assert_eq!(contacts, 15_000 - 15, "emails repeat after 15,000; every 1000th row broken");
    }
}

mod bulk_jobs {
    use super::*;

    #[tokio::test]
    async fn delete_erases_personal_data_and_keeps_the_history() {
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        let ps = w.waiting_at_call(flow, 4).await;
        let north = Criteria { contact: vec![bulk::FieldEquals { field: "region".into(), value: "north".into() }], ..in_flow(flow) };
        let history_before: i64 = sqlx::query_scalar("SELECT count(*) FROM participant_actions").fetch_one(w.pool()).await.unwrap();
        let preview = bulk::describe(w.pool(), &request(Action::Delete, north.clone(), Params::default()), w.clock.now()).await.unwrap();
        assert_eq!(preview.count, 2);
        assert!(preview.effect.contains("cannot be undone") && !preview.reversible);
        assert_eq!(preview.sample.len(), 2);

        let run = w.bulk(request(Action::Delete, north.clone(), Params::default())).await.unwrap();
        assert_eq!((run.status.as_str(), run.total, run.done, run.count), ("done", 2, 2, 2));
        let erased: Vec<(Option<String>, String, Option<String>)> =
            sqlx::query_as("SELECT email, fields, deleted_at FROM contacts WHERE id IN (SELECT contact_id FROM participants WHERE id IN ($1, $2))")
                .bind(ps[0])
                .bind(ps[2])
                .fetch_all(w.pool())
                .await
                .unwrap();
        assert!(erased.iter().all(|(email, fields, deleted)| email.is_none() && fields == "{}" && deleted.is_some()), "{erased:?}");
        assert_eq!(w.statuses(flow).await, ["cancelled", "waiting", "cancelled", "waiting"]);
        let history_after: i64 = sqlx::query_scalar("SELECT count(*) FROM participant_actions").fetch_one(w.pool()).await.unwrap();
        assert_eq!(history_after, history_before, "the timeline stays");
        // a deleted contact cannot be enrolled again, into any flow
        let gone: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(ps[0]).fetch_one(w.pool()).await.unwrap();
        let other = w.call_flow("After").await;
        assert!(matches!(w.runtime.enroll(other, &[gone]).await, Err(server::error::Error::ContactNotFound(id)) if id == gone));
        let participants: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1").bind(other).fetch_one(w.pool()).await.unwrap();
        assert_eq!(participants, 0);
        // deleting again matches nobody: refused, nothing changed
        assert_eq!(w.bulk(request(Action::Delete, north, Params::default())).await.unwrap_err().code(), "nothing_matched");
        let audit: (String, String, i64) = sqlx::query_as("SELECT action, run_by, count FROM bulk_runs WHERE id = $1").bind(run.id).fetch_one(w.pool()).await.unwrap();
        assert_eq!(audit, ("delete".to_owned(), "test".to_owned(), 2));
    }

    #[tokio::test]
    async fn move_copy_transition_duplicates_and_the_same_flow() {
        let w = world().await;
        let from = w.call_flow("From").await;
        let to = w.call_flow("To").await;
        let ps = w.waiting_at_call(from, 3).await;
        // one of them is already in the target
        let contact0: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(ps[0]).fetch_one(w.pool()).await.unwrap();
        w.runtime.enroll(to, &[contact0]).await.unwrap();

        let same = Params { flow_id: Some(from), ..Params::default() };
        assert_eq!(w.bulk(request(Action::MoveToFlow, in_flow(from), same)).await.unwrap_err().code(), "same_flow");
        assert_eq!(w.bulk(request(Action::MoveToFlow, in_flow(from), Params::default())).await.unwrap_err().code(), "target_flow_required");

        let copy = Params { flow_id: Some(to), mode: MoveMode::Copy, mark_transition: true, ..Params::default() };
        let run = w.bulk(request(Action::MoveToFlow, in_flow(from), copy)).await.unwrap();
        assert_eq!((run.total, run.count), (2, 2), "the duplicate is ignored");
        assert_eq!(w.statuses(from).await, ["waiting", "waiting", "waiting"], "a copy leaves the originals");
        assert_eq!(w.statuses(to).await, ["ready", "transition", "transition"]);
        // transition copies do not start until made ready
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.statuses(to).await, ["waiting", "transition", "transition"]);
        let ready = Criteria { statuses: vec!["transition".into()], ..in_flow(to) };
        bulk::apply(&w.runtime, &ready, &Action::Ready, None, "test").await.unwrap();
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.statuses(to).await, ["waiting", "waiting", "waiting"]);

        // a move with duplicates moved: everyone leaves, the target gets another participant each
        let third = w.call_flow("Third").await;
        w.runtime.enroll(third, &[contact0]).await.unwrap();
        let moving = Params { flow_id: Some(third), duplicates: Duplicates::Move, ..Params::default() };
        let run = w.bulk(request(Action::MoveToFlow, in_flow(from), moving)).await.unwrap();
        assert_eq!(run.count, 3);
        let made: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE created_by_run = $1 AND flow_id = $2")
            .bind(run.id)
            .bind(third)
            .fetch_one(w.pool())
            .await
            .unwrap();
        assert_eq!(made, 3, "the run's new participants name it");
        assert_eq!(w.statuses(from).await, ["exited", "exited", "exited"]);
        assert_eq!(w.statuses(third).await.len(), 4);
        let reason: String = sqlx::query_scalar("SELECT json_extract(state, '$.reason') FROM participants WHERE id = $1").bind(ps[1]).fetch_one(w.pool()).await.unwrap();
        assert!(reason.contains(&format!("Moved to flow {third}")), "{reason}");
        // exited participants cannot be moved again
        let again = Params { flow_id: Some(to), ..Params::default() };
        assert_eq!(w.bulk(request(Action::MoveToFlow, in_flow(from), again)).await.unwrap_err().code(), "nothing_matched");
    }

    #[tokio::test]
    async fn reserve_routes_the_inbox_and_undo_gives_it_back() {
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        w.waiting_at_call(flow, 2).await;
        let owners = || async {
            let rows: Vec<Option<String>> = sqlx::query_scalar(
                "SELECT coalesce(p.reserved_for, a.owner) FROM participant_actions a JOIN participants p ON p.id = a.participant_id
                 WHERE a.manual = 1 AND a.outcome = 'pending' ORDER BY p.id",
            )
            .fetch_all(w.pool())
            .await
            .unwrap();
            rows
        };
        assert_eq!(owners().await, [Some("agent-1".to_owned()), Some("agent-1".to_owned())]);
        assert_eq!(w.bulk(request(Action::Reserve, in_flow(flow), Params::default())).await.unwrap_err().code(), "agent_required");
        let reserve = Params { agent: Some("agent-7".into()), ..Params::default() };
        let run = w.bulk(request(Action::Reserve, in_flow(flow), reserve)).await.unwrap();
        assert_eq!(owners().await, [Some("agent-7".to_owned()), Some("agent-7".to_owned())]);
        assert_eq!(bulk::undo(w.pool(), run.id, "test", w.clock.now()).await.unwrap(), 2);
        assert_eq!(owners().await, [Some("agent-1".to_owned()), Some("agent-1".to_owned())]);
        assert_eq!(bulk::undo(w.pool(), run.id, "test", w.clock.now()).await.unwrap_err().code(), "already_undone");
        assert_eq!(bulk::view(w.pool(), run.id).await.unwrap().undone_by.as_deref(), Some("test"));
    }

    #[tokio::test]
    async fn callbacks_set_cancel_and_undo_and_pause_undo_restores_each_status() {
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        let ps = w.waiting_at_call(flow, 2).await;
        let at = w.clock.now() + SignedDuration::from_hours(26);
        let past = Params { at: Some(w.clock.now() - SignedDuration::from_hours(1)), ..Params::default() };
        assert_eq!(w.bulk(request(Action::SetCallback, in_flow(flow), past)).await.unwrap_err().code(), "callback_in_past");
        let set = Params { at: Some(at), agent: Some("agent-2".into()), ..Params::default() };
        let run = w.bulk(request(Action::SetCallback, in_flow(flow), set)).await.unwrap();
        assert_eq!(run.count, 2);
        let callbacks = || async {
            let rows: Vec<(Option<i64>, Option<String>)> =
                sqlx::query_as("SELECT callback_at, callback_owner FROM participants ORDER BY id").fetch_all(w.pool()).await.unwrap();
            rows
        };
        assert_eq!(callbacks().await, vec![(Some(at.as_millisecond()), Some("agent-2".to_owned())); 2]);
        let cancel = w.bulk(request(Action::CancelCallback, in_flow(flow), Params::default())).await.unwrap();
        assert_eq!(callbacks().await, vec![(None, None); 2]);
        bulk::undo(w.pool(), cancel.id, "test", w.clock.now()).await.unwrap();
        assert_eq!(callbacks().await, vec![(Some(at.as_millisecond()), Some("agent-2".to_owned())); 2], "undoing the cancel brings them back");

        // pause forgets the status on the participant; its run remembers it
        bulk::apply(&w.runtime, &Criteria { statuses: vec!["waiting".into()], ..in_flow(flow) }, &Action::Ready, None, "t")
            .await
            .unwrap_or(0);
        sqlx::query("UPDATE participants SET status = 'held' WHERE id = $1").bind(ps[1]).execute(w.pool()).await.unwrap();
        let before = w.statuses(flow).await;
        let pause = w.bulk(request(Action::Pause, in_flow(flow), Params::default())).await.unwrap();
        assert_eq!(w.statuses(flow).await, ["paused", "paused"]);
        assert_eq!(bulk::undo(w.pool(), pause.id, "test", w.clock.now()).await.unwrap(), 2);
        assert_eq!(w.statuses(flow).await, before);
        let cancel_run = w.bulk(request(Action::Cancel, in_flow(flow), Params::default())).await.unwrap();
        assert_eq!(bulk::undo(w.pool(), cancel_run.id, "test", w.clock.now()).await.unwrap_err().code(), "not_reversible");
    }

    #[tokio::test]
    async fn a_due_callback_brings_the_call_round_to_its_agent_and_cancel_or_undo_take_it_back() {
        use app::runtime_api::RuntimeBackend;
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        let ps = w.waiting_at_call(flow, 3).await; // p0 and p2 north, p1 south
        let t0 = w.clock.now();
        let at = t0 + SignedDuration::from_hours(26);
        let north = Criteria { contact: vec![bulk::FieldEquals { field: "region".into(), value: "north".into() }], ..in_flow(flow) };
        let inbox = |agent: &'static str| {
            let runtime = w.runtime.clone();
            async move {
                let mut ids: Vec<i64> = runtime.tasks(Some(agent.into())).await.unwrap().iter().map(|t| t.participant_id).collect();
                ids.sort();
                ids
            }
        };
        assert_eq!(inbox("agent-1").await, ps);

        let set = Params { at: Some(at), agent: Some("agent-2".into()), ..Params::default() };
        let booked = w.bulk(request(Action::SetCallback, north.clone(), set)).await.unwrap();
        assert_eq!(booked.count, 2);
        assert_eq!(w.next_run(ps[0]).await, (Some(at.as_millisecond()), Some(at.as_millisecond())), "the callback is its next run");
        assert_eq!(w.next_run(ps[1]).await, (None, None));

        // p2's is cancelled (found by its email): it gets its own next run back (none: it waits for a person)
        let p2 = Criteria { contact: vec![bulk::FieldEquals { field: "email".into(), value: format!("P{flow}-2@x.test") }], ..Criteria::default() };
        let cancelled = w.bulk(request(Action::CancelCallback, p2, Params::default())).await.unwrap();
        assert_eq!(cancelled.count, 1);
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.next_run(ps[2]).await, (None, None));

        // before the time: nothing
        w.clock.set(at - SignedDuration::from_mins(1));
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.task(ps[0]).await.0.as_deref(), Some("agent-1"));
        assert!(inbox("agent-2").await.is_empty());
        // undoing the cancel books p2's callback again
        assert_eq!(bulk::undo(w.pool(), cancelled.id, "test", w.clock.now()).await.unwrap(), 1);
        assert_eq!(w.next_run(ps[2]).await, (Some(at.as_millisecond()), Some(at.as_millisecond())));

        // at the time: the call comes round, due then, in agent-2's inbox; the callback is used up
        w.clock.set(at + SignedDuration::from_secs(1));
        w.runtime.run_until_idle().await.unwrap();
        for p in [ps[0], ps[2]] {
            assert_eq!(w.task(p).await, (Some("agent-2".to_owned()), at.to_string(), Some(format!("callback booked for {at}"))));
            assert_eq!(w.next_run(p).await, (None, None));
        }
        assert_eq!(inbox("agent-2").await, [ps[0], ps[2]]);
        assert_eq!(inbox("agent-1").await, [ps[1]], "p1 had no callback");
        assert_eq!(w.statuses(flow).await, ["waiting", "waiting", "waiting"]);
        // a callback that came due cannot be undone
        assert_eq!(bulk::undo(w.pool(), booked.id, "test", w.clock.now()).await.unwrap(), 0);
        assert_eq!(w.task(ps[0]).await.0.as_deref(), Some("agent-2"));
        // the agent makes the call: the flow goes on
        w.runtime.deliver(ps[0], app::core::engine::Event::Manual { outcome: app::core::engine::ManualOutcome::Completed, disposition: None }).await.unwrap();
        assert_eq!(w.statuses(flow).await, ["completed", "waiting", "waiting"]);

        // a callback undone before its time never comes
        let soon = w.clock.now() + SignedDuration::from_hours(1);
        let south = Criteria { contact: vec![bulk::FieldEquals { field: "region".into(), value: "south".into() }], ..in_flow(flow) };
        let run = w.bulk(request(Action::SetCallback, south, Params { at: Some(soon), agent: Some("agent-3".into()), ..Params::default() })).await.unwrap();
        assert_eq!(bulk::undo(w.pool(), run.id, "test", w.clock.now()).await.unwrap(), 1);
        w.clock.set(soon + SignedDuration::from_mins(5));
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.task(ps[1]).await.0.as_deref(), Some("agent-1"));
        assert_eq!(w.next_run(ps[1]).await, (None, None));
        assert!(inbox("agent-3").await.is_empty());
    }

    #[tokio::test]
    async fn a_callback_ends_a_wait_at_its_time_and_the_call_it_reaches_is_its_agents() {
        let w = world().await;
        let doc = FlowDocument::from_value(&json!({
            "format": "waymark.flow/v1", "name": "Nurture",
            "steps": [{"id": "s", "kind": "start"},
                      {"id": "w", "kind": "wait", "settings": {"mode": "duration", "amount": 3, "unit": "days"}},
                      {"id": "call", "kind": "call", "settings": {"owner": "user:agent-1"}},
                      {"id": "x", "kind": "exit"}],
            "edges": [{"from": "s", "port": "next", "to": "w"}, {"from": "w", "port": "next", "to": "call"}, {"from": "call", "port": "next", "to": "x"}]}))
        .unwrap();
        let flow = w.store.create("Nurture", Some(doc)).await.unwrap().id;
        w.store.publish(flow, None, "test").await.unwrap();
        let mut tx = w.pool().begin().await.unwrap();
        let contact = contacts::insert(&mut tx, &serde_json::from_value(json!({"email": "lead@x.test", "mobile": "+15550199"})).unwrap()).await.unwrap();
        tx.commit().await.unwrap();
        let p = w.runtime.enroll(flow, &[contact]).await.unwrap().0[0];
        w.runtime.run_until_idle().await.unwrap();
        let at = w.clock.now() + SignedDuration::from_hours(2);
        w.bulk(request(Action::SetCallback, in_flow(flow), Params { at: Some(at), agent: Some("agent-2".into()), ..Params::default() })).await.unwrap();

        w.clock.set(at - SignedDuration::from_secs(1));
        w.runtime.run_until_idle().await.unwrap();
        assert_eq!(w.runtime.participant(p).await.unwrap().step.as_deref(), Some("w"), "nothing before the callback");
        w.clock.set(at);
        w.runtime.run_until_idle().await.unwrap();
        let view = w.runtime.participant(p).await.unwrap();
        assert_eq!((view.status.as_str(), view.step.as_deref()), ("waiting", Some("call")));
        assert_eq!(w.task(p).await.0.as_deref(), Some("agent-2"));
        let timeline = w.runtime.timeline(p).await.unwrap();
        let wait = timeline.iter().find(|a| a.step == "w").unwrap();
        assert_eq!(wait.reason.as_deref(), Some(format!("ended by the callback booked for {at}").as_str()));
        assert_eq!(wait.done_at, Some(at));
    }

    #[tokio::test]
    async fn email_data_file_needs_smtp_and_a_send_that_fails_leaves_nothing() {
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        w.waiting_at_call(flow, 2).await;
        let email = |to: Vec<String>| request(Action::EmailDataFile, in_flow(flow), Params { to, ..Params::default() });
        let runs = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM bulk_runs").fetch_one(w.pool()).await.unwrap() };

        // no SMTP settings: refused before anything is made, in the preview too
        assert_eq!(bulk::describe(w.pool(), &email(vec![]), w.clock.now()).await.unwrap_err().code(), "email_not_configured");
        let refused = w.bulk(email(vec!["boss@x.test".into()])).await.unwrap_err();
        assert_eq!(refused.code(), "email_not_configured");
        assert!(refused.public_message().contains("Email is not set up"), "{}", refused.public_message());
        assert_eq!(runs().await, 0);

        // an API token has no address: say whom to send it to
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        w.smtp(closed).await;
        assert_eq!(w.bulk_by(email(vec![]), "token:ci").await.unwrap_err().code(), "recipients_required");

        // the SMTP server cannot be reached: the run fails with the reason, and no file or link is kept
        let failed = w.bulk_by(email(vec![]), "m@x.test").await.unwrap_err();
        assert_eq!(failed.code(), "email_failed");
        let run_id: i64 = sqlx::query_scalar("SELECT max(id) FROM bulk_runs").fetch_one(w.pool()).await.unwrap();
        let run = bulk::view(w.pool(), run_id).await.unwrap();
        assert_eq!(run.status, "failed");
        let message = run.message.unwrap();
        assert!(message.starts_with("Nothing was sent and no file was kept:"), "{message}");
        assert!(message.contains(&format!("could not send through the SMTP server 127.0.0.1:{closed}")), "{message}");
        assert_eq!(run.link, None);
        let files: i64 = sqlx::query_scalar("SELECT count(*) FROM data_files").fetch_one(w.pool()).await.unwrap();
        assert_eq!(files, 0);
        let left = std::fs::read_dir(w.runtime.files_dir()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "no ZIP left behind");

        // the settings are removed after the run was accepted: it fails saying so, and makes nothing
        let started = bulk::start(&w.runtime, &email(vec!["boss@x.test".into()]), "m@x.test").await.unwrap();
        settings::update(w.pool(), json!({"smtp": null}).as_object().unwrap().clone()).await.unwrap();
        assert_eq!(bulk::run(&w.runtime, started).await.unwrap_err().code(), "email_not_configured");
        let run = bulk::view(w.pool(), started).await.unwrap();
        assert_eq!(run.status, "failed");
        assert!(run.message.unwrap().starts_with("Nothing was sent and no file was kept: Email is not set up"));
        let files: i64 = sqlx::query_scalar("SELECT count(*) FROM data_files").fetch_one(w.pool()).await.unwrap();
        assert_eq!(files, 0);
    }

    #[tokio::test]
    async fn unknown_criteria_or_params_are_refused_whole() {
        assert!(serde_json::from_value::<BulkRequest>(json!({"action": "pause", "criteria": {"flow": 1}})).is_err());
        assert!(serde_json::from_value::<BulkRequest>(json!({"action": "pause", "params": {"agnet": "x"}})).is_err());
        assert!(serde_json::from_value::<BulkRequest>(json!({"action": "explode"})).is_err());
    }
}

/// Several processes on one database: a job belongs to the process that
/// started it while its heart beats; another takes it over once it went
/// quiet, and the quiet one writes nothing more to it.
mod job_owners {
    use super::*;
    use server::runtime::jobs;

    /// A second process on the world's database and clock.
    fn other_process(w: &World) -> Runtime {
        Runtime::new(w.pool().clone(), w.clock.clone(), "worker-b").with_files_dir(w.dir.path().join("files"))
    }

    async fn owner_of_run(w: &World, run: i64) -> Option<String> {
        sqlx::query_scalar("SELECT owner FROM bulk_runs WHERE id = $1").bind(run).fetch_one(w.pool()).await.unwrap()
    }

    #[tokio::test]
    async fn a_bulk_run_whose_process_went_quiet_is_finished_by_another_and_the_quiet_one_writes_nothing() {
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        w.waiting_at_call(flow, 30).await;
        // worker-a starts the run and stops before applying any of it
        let run = bulk::start(&w.runtime, &request(Action::Pause, in_flow(flow), Params::default()), "test").await.unwrap();
        assert_eq!(owner_of_run(&w, run).await.as_deref(), Some("worker-a"));
        let b = other_process(&w);

        // still fresh: nobody takes it
        w.clock.advance(jobs::STALE - SignedDuration::from_secs(1));
        assert_eq!(jobs::recover(&b).await.unwrap(), jobs::Recovered::default());
        assert_eq!(owner_of_run(&w, run).await.as_deref(), Some("worker-a"));

        // quiet past STALE: worker-b takes it over and finishes it
        w.clock.advance(SignedDuration::from_secs(2));
        assert_eq!(jobs::recover(&b).await.unwrap(), jobs::Recovered { runs: vec![run], imports: 0 });
        assert_eq!(jobs::recover(&w.runtime).await.unwrap(), jobs::Recovered::default(), "taken once");
        let view = loop {
            let view = bulk::view(w.pool(), run).await.unwrap();
            if view.status != "running" {
                break view;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!((view.status.as_str(), view.done, view.count), ("done", 30, 30));
        assert_eq!(owner_of_run(&w, run).await.as_deref(), Some("worker-b"));
        assert!(w.statuses(flow).await.iter().all(|s| s == "paused"));

        // worker-a wakes up and carries on: refused, nothing written
        let again = bulk::start(&w.runtime, &request(Action::Ready, in_flow(flow), Params::default()), "test").await.unwrap();
        sqlx::query("UPDATE bulk_runs SET owner = 'worker-b' WHERE id = $1").bind(again).execute(w.pool()).await.unwrap();
        assert_eq!(bulk::run(&w.runtime, again).await.unwrap_err().code(), "job_taken_over");
        let view = bulk::view(w.pool(), again).await.unwrap();
        assert_eq!((view.status.as_str(), view.done), ("running", 0), "left for its owner");
        assert!(w.statuses(flow).await.iter().all(|s| s == "paused"), "the chunk was rolled back");
    }

    #[tokio::test]
    async fn an_import_whose_process_went_quiet_is_marked_failed_and_imports_nothing_more() {
        let w = world().await;
        let path = w.dir.path().join("in.csv");
        std::fs::write(&path, "email\nada@x.test\nbob@x.test\n").unwrap();
        let options = ImportOptions::default();
        let job = import::create_job(&w.runtime, &path, Some("in.csv"), &options, "test").await.unwrap();
        let b = other_process(&w);
        assert_eq!(jobs::recover(&b).await.unwrap().imports, 0, "its owner is alive");

        w.clock.advance(jobs::STALE + SignedDuration::from_secs(1));
        assert_eq!(jobs::recover(&b).await.unwrap().imports, 1);
        let mut conn = w.pool().acquire().await.unwrap();
        let view = import::job(&mut conn, job, 0).await.unwrap();
        assert_eq!(view.status, "failed");
        assert_eq!(view.error.as_deref(), Some("The process running the import stopped; the rows counted as done were imported."));

        // the quiet process wakes up: its first batch is refused and rolled back
        assert_eq!(import::run(&w.runtime, job, path, options).await.unwrap_err().code(), "job_taken_over");
        let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(w.pool()).await.unwrap();
        assert_eq!(contacts, 0);
        let view = import::job(&mut conn, job, 0).await.unwrap();
        assert_eq!((view.status.as_str(), view.rows_done), ("failed", 0));
    }
}

/// The REST API through the whole axum stack, on the world's clock.
struct Api {
    app: Router,
    w: World,
    /// A marketer's session: requests are signed in and same-origin.
    cookie: String,
}

async fn api() -> Api {
    let w = world().await;
    let state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), w.store.clone(), w.runtime.clone());
    let pool = w.store.pool();
    let marketer = server::auth::accounts::add_user(pool, "m@x.test", "M", app::auth::Role::Marketer, "a long enough password").await.unwrap();
    let cookie = server::auth::accounts::open_session(pool, marketer.id).await.unwrap();
    Api { app: router(state), w, cookie }
}

impl Api {
    async fn send(&self, method: Method, uri: &str, body: Vec<u8>, content_type: &str) -> (StatusCode, String, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={}", self.cookie))
            // as the pages' script does (a multipart upload is form-encoded)
            .header(server::auth::CSRF_HEADER, server::auth::csrf_token(&self.cookie))
            .body(Body::from(body))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, content_type, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send(method, uri, serde_json::to_vec(&body).unwrap(), "application/json").await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, uri: &str) -> (StatusCode, String, Vec<u8>) {
        self.send(Method::GET, uri, Vec::new(), "text/plain").await
    }

    /// A GET by someone who is not signed in (the recipient of an emailed link).
    async fn get_anonymous(&self, uri: &str) -> (StatusCode, String, Vec<u8>) {
        let request = Request::builder().uri(uri).header(header::HOST, "waymark.test").body(Body::empty()).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, content_type, response.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    async fn get_json(&self, uri: &str) -> Value {
        let (status, _, bytes) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Polls a job until it is no longer running.
    async fn finished(&self, uri: &str) -> Value {
        for _ in 0..200 {
            let job = self.get_json(uri).await;
            if job["status"] != "running" {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{uri} never finished");
    }
}

fn multipart(options: &str, file: &str) -> (Vec<u8>, String) {
    let boundary = "XyZzy-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{options}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"people.csv\"\r\nContent-Type: text/csv\r\n\r\n{file}\r\n\
         --{boundary}--\r\n"
    );
    (body.into_bytes(), format!("multipart/form-data; boundary={boundary}"))
}

fn problem(status: StatusCode, bytes: &[u8], want: StatusCode, code: &str) {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    assert_eq!((status, body["code"].as_str()), (want, Some(code)), "{body}");
}

#[tokio::test]
async fn rest_import_polls_to_done_and_lists_refused_rows() {
    let api = api().await;
    let (body, content_type) = multipart(r#"{"mapping": {"Mail": "email"}, "list": "Webinar"}"#, "Mail,plan\nada@x.test,=1+1\nnope,\n");
    let (status, _, bytes) = api.send(Method::POST, "/api/v1/contacts/imports", body, &content_type).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&bytes));
    let id = serde_json::from_slice::<Value>(&bytes).unwrap()["id"].as_i64().unwrap();
    let job = api.finished(&format!("/api/v1/contacts/imports/{id}")).await;
    assert_eq!((job["status"].as_str(), job["created"].as_i64(), job["failed"].as_i64()), (Some("done"), Some(1), Some(1)), "{job}");
    assert_eq!(job["errors"][0][0], 3);
    let (_, content_type, csv) = api.get(&format!("/api/v1/contacts/imports/{id}/errors.csv")).await;
    assert!(content_type.starts_with("text/csv"));
    assert!(String::from_utf8(csv).unwrap().starts_with("line,reason\n3,"));

    // a mapping naming a column the file lacks: 422, and no job, no contact
    let (body, content_type) = multipart(r#"{"mapping": {"E-mail": "email"}}"#, "Mail\nbob@x.test\n");
    let (status, _, bytes) = api.send(Method::POST, "/api/v1/contacts/imports", body, &content_type).await;
    problem(status, &bytes, StatusCode::UNPROCESSABLE_ENTITY, "invalid_import");
    let (body, content_type) = multipart(r#"{"dedupe": "merge"}"#, "email\nbob@x.test\n");
    let (status, _, bytes) = api.send(Method::POST, "/api/v1/contacts/imports", body, &content_type).await;
    problem(status, &bytes, StatusCode::UNPROCESSABLE_ENTITY, "invalid_import");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_imports").fetch_one(api.w.pool()).await.unwrap();
    assert_eq!(jobs, 1);

    // the export escapes formulas, has a column per custom field, and imports back as it was
    let (status, content_type, csv) = api.get("/api/v1/contacts/export.csv?list=Webinar").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"));
    let text = String::from_utf8(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,email,mobile,timezone,owner,lists,opted_out,blocked,created_at,plan"));
    let row = lines.next().unwrap();
    assert!(row.contains(",ada@x.test,") && row.ends_with(",'=1+1") && row.contains(",Webinar,"), "{row}");
    assert_eq!(lines.next(), None);
    let list = api.get_json("/api/v1/contacts?q=ADA&per_page=10").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["contacts"][0]["fields"]["plan"], "=1+1", "stored as given; only the export escapes");
}

#[tokio::test]
async fn a_data_file_goes_when_a_contact_in_it_is_erased_or_its_link_expires() {
    let api = api().await;
    let smtp = SmtpSink::start(false);
    api.w.smtp(smtp.port).await;
    let flow = api.w.call_flow("Calls").await;
    let participants = api.w.waiting_at_call(flow, 3).await;
    let pool = api.w.pool().clone();
    let make = || async {
        let request = json!({"action": "email_data_file", "criteria": {"flow_ids": [flow]}});
        let (status, run) = api.json(Method::POST, "/api/v1/participants/bulk", request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        let run = api.finished(&format!("/api/v1/bulk-runs/{}", run["id"])).await;
        let path: String = sqlx::query_scalar("SELECT path FROM data_files WHERE run_id = $1").bind(run["id"].as_i64().unwrap()).fetch_one(&pool).await.unwrap();
        assert!(std::path::Path::new(&path).exists(), "{path}");
        (run["link"].as_str().unwrap().to_owned(), path)
    };
    let removed = |path: String| {
        let pool = pool.clone();
        async move {
            let at: Option<String> = sqlx::query_scalar("SELECT removed_at FROM data_files WHERE path = $1").bind(&path).fetch_one(&pool).await.unwrap();
            (std::path::Path::new(&path).exists(), at)
        }
    };

    // Erasing a contact whose row is in a file removes the file; its
    // still-valid link says why.
    let (link, path) = make().await;
    let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(participants[0]).fetch_one(&pool).await.unwrap();
    let (status, erased) = api.json(Method::DELETE, &format!("/api/v1/contacts/{contact}"), json!({})).await;
    assert_eq!((status, erased["erased"].as_bool()), (StatusCode::OK, Some(true)), "{erased}");
    let (on_disk, removed_at) = removed(path.clone()).await;
    assert!(!on_disk && removed_at.is_some(), "{path}: {removed_at:?}");
    let (status, _, bytes) = api.get_anonymous(&link).await;
    problem(status, &bytes, StatusCode::GONE, "data_file_removed");

    // A file made since stays until its link expires; then the scheduler's
    // sweep removes it, and the record stays.
    let (link, path) = make().await;
    assert_eq!(server::runtime::datafile::sweep(&pool, api.w.clock.now()).await.unwrap(), 0);
    assert!(removed(path.clone()).await.0, "kept while its link works");
    api.w.clock.advance(SignedDuration::from_hours(25));
    assert_eq!(server::runtime::datafile::sweep(&pool, api.w.clock.now()).await.unwrap(), 1);
    let (on_disk, removed_at) = removed(path.clone()).await;
    assert!(!on_disk && removed_at.is_some(), "{path}: {removed_at:?}");
    assert_eq!(server::runtime::datafile::sweep(&pool, api.w.clock.now()).await.unwrap(), 0, "each file once");
    let (status, _, bytes) = api.get_anonymous(&link).await;
    problem(status, &bytes, StatusCode::GONE, "link_expired");
}

#[tokio::test]
async fn rest_bulk_runs_in_the_background_and_data_file_links_are_emailed_signed_and_expire() {
    let api = api().await;
    let smtp = SmtpSink::start(false);
    api.w.smtp(smtp.port).await;
    let flow = api.w.call_flow("Calls").await;
    api.w.waiting_at_call(flow, 3).await;
    let req = json!({"action": "email_data_file", "criteria": {"flow_ids": [flow]}, "params": {"to": ["boss@x.test"]}});
    let (status, preview) = api.json(Method::POST, "/api/v1/participants/bulk/preview", req.clone()).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["count"], 3);
    assert!(preview["effect"].as_str().unwrap().contains("boss@x.test"));

    let bad = json!({"action": "email_data_file", "criteria": {"flow_ids": [flow]}, "params": {"to": ["not-an-address"]}});
    let (status, body) = api.json(Method::POST, "/api/v1/participants/bulk", bad).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_recipient")));
    let (status, body) = api.json(Method::POST, "/api/v1/participants/bulk", json!({"action": "pause", "criteria": {"flows": [flow]}})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")));

    // without recipients it goes to whoever asked: the signed-in marketer
    let mine = json!({"action": "email_data_file", "criteria": {"flow_ids": [flow]}});
    let (status, run) = api.json(Method::POST, "/api/v1/participants/bulk", mine).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = api.finished(&format!("/api/v1/bulk-runs/{}", run["id"])).await;
    assert_eq!((run["status"].as_str(), run["total"].as_i64(), run["done"].as_i64(), run["count"].as_i64()), (Some("done"), Some(3), Some(3), Some(3)), "{run}");
    assert_eq!(run["email_status"], "sent to m@x.test", "{run}");
    assert_eq!(run["params"]["to"], json!(["m@x.test"]));
    let link = run["link"].as_str().unwrap().to_owned();

    // the email arrives with the absolute, signed link
    let mail = &smtp.wait_for(1)[0];
    assert_eq!(mail["rcpt_tos"], json!(["m@x.test"]));
    assert_eq!(mail["headers"]["subject"], format!("Your Waymark data file: 3 participant(s) from bulk run {}", run["id"]));
    let text = mail["parts"].as_array().unwrap().iter().find_map(|p| p["text"].as_str()).unwrap().replace("\r\n", "\n");
    let url = text.split_whitespace().find(|w| w.starts_with("http")).unwrap().to_owned();
    assert_eq!(url, format!("http://waymark.test{link}"), "{text}");
    assert!(text.contains(&format!("works until {}", run["link_expires_at"].as_str().unwrap())), "{text}");

    // the link works without signing in
    let path = url.strip_prefix("http://waymark.test").unwrap();
    let (status, content_type, zip) = api.get_anonymous(path).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/zip"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut csv = String::new();
    archive.by_name("participants.csv").unwrap().read_to_string(&mut csv).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("participant_id,flow_id,flow,"));

    let tampered = link.replace(&format!("data-files/{}?", run["id"]), "data-files/999?");
    let (status, _, bytes) = api.get(&tampered).await;
    problem(status, &bytes, StatusCode::FORBIDDEN, "link_invalid");
    let (status, _, bytes) = api.get(&link.replace("expires=", "expires=9")).await;
    problem(status, &bytes, StatusCode::FORBIDDEN, "link_invalid");
    api.w.clock.advance(SignedDuration::from_hours(25));
    let (status, content_type, bytes) = api.get_anonymous(path).await;
    problem(status, &bytes, StatusCode::GONE, "link_expired");
    assert_eq!(content_type, "application/problem+json");
    let detail = serde_json::from_slice::<Value>(&bytes).unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("links are valid for 24 hours"), "{detail}");

    // a paused run is undone over REST
    let (_, run) = api.json(Method::POST, "/api/v1/participants/bulk", json!({"action": "pause", "criteria": {"flow_ids": [flow]}})).await;
    let run = api.finished(&format!("/api/v1/bulk-runs/{}", run["id"])).await;
    assert_eq!(run["count"], 3);
    let (status, undone) = api.json(Method::POST, &format!("/api/v1/bulk-runs/{}/undo", run["id"]), json!({})).await;
    assert_eq!((status, undone["undone"].as_i64()), (StatusCode::OK, Some(3)), "{undone}");
    assert_eq!(api.w.statuses(flow).await, ["waiting", "waiting", "waiting"]);
    let runs = api.get_json("/api/v1/bulk-runs").await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["status"], "undone");
    assert_eq!(smtp.count(), 1, "one run, one email");
}

#[tokio::test]
async fn rest_contacts_are_edited_and_deleted_with_clear_errors() {
    let api = api().await;
    let (status, made) = api.json(Method::POST, "/api/v1/contacts", json!({"email": "e@x.test", "fields": {"a": "1"}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = made["id"].as_i64().unwrap();
    let edit = json!({"email": "e@x.test", "mobile": "+15550100", "fields": {"b": "2"}, "lists": ["L"]});
    let (status, _) = api.json(Method::PUT, &format!("/api/v1/contacts/{id}"), edit.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let stored = api.get_json(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!((stored["fields"].clone(), stored["lists"].clone()), (json!({"b": "2"}), json!(["L"])), "replaced, not merged");

    let (_, other) = api.json(Method::POST, "/api/v1/contacts", json!({"email": "f@x.test"})).await;
    let (status, body) = api.json(Method::PUT, &format!("/api/v1/contacts/{}", other["id"]), json!({"email": "E@x.test"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("contact_exists")));

    let (status, erased) = api.json(Method::DELETE, &format!("/api/v1/contacts/{id}"), json!({})).await;
    assert_eq!((status, erased["erased"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(api.get_json("/api/v1/contacts?q=e%40x.test").await["total"], 0, "deleted contacts are not listed");
    let stored = api.get_json(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!((stored.get("email"), stored["fields"].clone(), stored["lists"].clone()), (None, json!({}), json!([])));
    let (status, body) = api.json(Method::PUT, &format!("/api/v1/contacts/{id}"), edit).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("contact_deleted")));
    let (status, erased) = api.json(Method::DELETE, &format!("/api/v1/contacts/{id}"), json!({})).await;
    assert_eq!((status, erased["erased"].as_bool()), (StatusCode::OK, Some(false)), "erasing twice changes nothing");
}

#[tokio::test]
async fn rest_contacts_refuse_what_is_not_an_address_and_keep_what_was_stored() {
    let api = api().await;
    for (body, code, field) in [
        (json!({"email": "not an email"}), "invalid_email", "email"),
        (json!({"email": "a@x.test, b@y.test"}), "invalid_email", "email"),
        (json!({"email": "ada@localhost"}), "invalid_email", "email"),
        (json!({"email": "<b>ada</b>@x.test\r\nBcc: z@y.test"}), "invalid_email", "email"),
        (json!({"email": "ok@x.test", "mobile": "12"}), "invalid_mobile", "mobile"),
    ] {
        let (status, problem) = api.json(Method::POST, "/api/v1/contacts", body.clone()).await;
        assert_eq!(
            (status, problem["code"].as_str(), problem["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code), Some(field)),
            "{body}: {problem}"
        );
    }
    assert_eq!(api.get_json("/api/v1/contacts").await["total"], 0, "nothing was stored");

    // An edit is refused the same way, and the contact stays as it was.
    let (_, made) = api.json(Method::POST, "/api/v1/contacts", json!({"email": "ok@x.test", "mobile": "+1 (555) 010-0123"})).await;
    let id = made["id"].as_i64().unwrap();
    let (status, problem) = api.json(Method::PUT, &format!("/api/v1/contacts/{id}"), json!({"email": "ok@x.test; evil@y.test"})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_email")));
    let stored = api.get_json(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!((stored["email"].as_str(), stored["mobile"].as_str()), (Some("ok@x.test"), Some("+1 (555) 010-0123")));

    // An address stored before these rules does not stop other changes.
    sqlx::query("UPDATE contacts SET email = 'legacy address' WHERE id = $1").bind(id).execute(api.w.pool()).await.unwrap();
    let (status, _) = api.json(Method::POST, &format!("/api/v1/contacts/{id}/lists"), json!({"list": "VIP"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.json(Method::PUT, &format!("/api/v1/contacts/{id}"), json!({"email": "legacy address", "fields": {"x": "1"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.json(Method::PUT, &format!("/api/v1/contacts/{id}"), json!({"email": "other address"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a changed address is judged");
}

mod searching {
    use super::*;
    use server::runtime::contacts::ContactSearch;

    fn search(q: &str, list: &str) -> ContactSearch {
        ContactSearch { q: Some(q.into()), list: Some(list.into()) }
    }

    async fn emails(w: &World, s: &ContactSearch, after: Option<&str>, per_page: i64) -> (Vec<String>, i64, Option<String>) {
        let mut conn = w.pool().acquire().await.unwrap();
        let page = contacts::search(&mut conn, s, after, per_page).await.unwrap();
        let labels = page.contacts.iter().map(|c| c.contact.email.clone().or(c.contact.mobile.clone()).unwrap()).collect();
        (labels, page.total, page.next)
    }

    /// No search by `q` reads the whole table or sorts: each walks an index.
    fn assert_indexed(plan: &[String], index: &str) {
        if plan.iter().any(|line| line.contains("Seq Scan") || line.contains("Index Scan") || line.starts_with("Limit")) {
            // PostgreSQL's EXPLAIN: the index, or (when a list narrows the
            // search first) contacts fetched by their key; never a scan.
            let uses = |name: &str| plan.iter().any(|line| line.contains(&format!("using {name} ")) || line.ends_with(&format!("on {name}")));
            assert!(uses(index) || uses("contacts_pkey"), "{index} is used: {plan:#?}");
            assert!(!plan.iter().any(|line| line.contains("Seq Scan on contacts")), "no scan: {plan:#?}");
            return;
        }
        assert!(plan.iter().any(|line| line.contains(&format!("USING INDEX {index}"))), "{index} is used: {plan:#?}");
        assert!(!plan.iter().any(|line| line == "SCAN c" || line.starts_with("SCAN c ") || line.contains("TEMP B-TREE")), "no scan, no sort: {plan:#?}");
    }

    #[tokio::test]
    async fn prefix_search_by_email_name_and_mobile_pages_by_cursor_through_indexes() {
        let w = world().await;
        let mut tx = w.pool().begin().await.unwrap();
        for contact in [
            json!({"email": "ada@x.test", "fields": {"first_name": "Ada", "last_name": "Lovelace"}}),
            json!({"email": "zed@x.test", "fields": {"First name": "Adaline"}}),
            json!({"mobile": "+15550100", "fields": {"name": "Grace  Hopper"}}),
            json!({"email": "adams@x.test", "lists": ["VIP"]}),
            json!({"email": "ADA.b@x.test"}),
            json!({"email": "adx@x.test"}),
        ] {
            contacts::insert(&mut tx, &serde_json::from_value(contact).unwrap()).await.unwrap();
        }
        contacts::erase(&mut tx, "SELECT id FROM contacts WHERE email = 'adx@x.test'", "2026-11-23T09:00:00Z").await.unwrap();
        tx.commit().await.unwrap();

        // "ada": emails and names starting with it, in that order, each contact once; deleted ones never
        let ada = search("  Ada ", "");
        let (page, total, next) = emails(&w, &ada, None, 2).await;
        assert_eq!((page, total), (vec!["ADA.b@x.test".to_owned(), "ada@x.test".to_owned()], 4));
        let (page, _, last) = emails(&w, &ada, next.as_deref(), 2).await;
        assert_eq!(page, ["zed@x.test", "adams@x.test"], "Adaline by name, between ada@ and adams@");
        assert_eq!(last, None);
        assert_eq!(emails(&w, &search("grace h", ""), None, 10).await.0, ["+15550100"]);
        assert_eq!(emails(&w, &search("ada lov", ""), None, 10).await.0, ["ada@x.test"]);
        assert_eq!(emails(&w, &search("ada@", ""), None, 10).await.0, ["ada@x.test"], "an address is looked up by email alone");
        assert_eq!(emails(&w, &search("1 555", ""), None, 10).await.0, ["+15550100"], "a number with or without its +");
        assert_eq!(emails(&w, &search("+1555", ""), None, 10).await.0, ["+15550100"]);
        assert_eq!(emails(&w, &search("ada", "vip"), None, 10).await.0, ["adams@x.test"]);
        assert!(emails(&w, &search("lovelace", ""), None, 10).await.0.is_empty(), "names match from their start");

        // no q: newest first, five live contacts
        let everyone = search("", "");
        let (page, total, next) = emails(&w, &everyone, None, 3).await;
        assert_eq!((page, total), (vec!["ADA.b@x.test".to_owned(), "adams@x.test".to_owned(), "+15550100".to_owned()], 5));
        assert_eq!(emails(&w, &everyone, next.as_deref(), 3).await.0, ["zed@x.test", "ada@x.test"]);
        let mut conn = w.pool().acquire().await.unwrap();
        let bad = contacts::search(&mut conn, &ada, Some("12"), 2).await.unwrap_err();
        assert_eq!(bad.code(), "invalid_cursor");

        // the plans: every branch walks its index, in order
        assert_indexed(&contacts::query_plan(&mut conn, &ada).await.unwrap(), "contacts_email");
        assert_indexed(&contacts::query_plan(&mut conn, &ada).await.unwrap(), "contacts_search_name");
        assert_indexed(&contacts::query_plan(&mut conn, &search("+1555", "VIP")).await.unwrap(), "contacts_mobile");
    }

    #[tokio::test]
    async fn names_given_before_the_column_existed_are_filled_once() {
        let w = world().await;
        sqlx::query("INSERT INTO contacts (email, fields, created_at, updated_at) VALUES ('old@x.test', '{\"Full name\": \"Old  Timer\"}', 'x', 'x')")
            .execute(w.pool())
            .await
            .unwrap();
        sqlx::query("DELETE FROM installation WHERE key = 'search_names'").execute(w.pool()).await.unwrap();
        assert_eq!(contacts::fill_search_names(w.pool()).await.unwrap(), 1);
        assert_eq!(contacts::fill_search_names(w.pool()).await.unwrap(), 0, "once");
        assert_eq!(emails(&w, &search("old t", ""), None, 10).await.0, ["old@x.test"]);
    }

    #[tokio::test]
    async fn criteria_find_contacts_by_email_through_the_index() {
        let w = world().await;
        let flow = w.call_flow("Calls").await;
        w.waiting_at_call(flow, 3).await;
        let criteria = Criteria { contact: vec![bulk::FieldEquals { field: "email".into(), value: format!("P{flow}-1@X.test") }], ..Criteria::default() };
        let (count, _) = bulk::preview(w.pool(), &criteria).await.unwrap();
        assert_eq!(count, 1);
        let postgres = Backend::of(w.pool()) == Backend::Postgres;
        let mut conn = w.pool().acquire().await.unwrap();
        if postgres {
            // a few test rows: ask the planner to use an index where one serves
            sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
        }
        let (explain, column) = if postgres { ("EXPLAIN", "QUERY PLAN") } else { ("EXPLAIN QUERY PLAN", "detail") };
        let mut explain = Sql::new(format!("{explain} SELECT count(*) FROM participants WHERE "));
        criteria.push_matching(&mut explain);
        let plan: Vec<String> = explain.build().fetch_all(&mut *conn).await.unwrap().iter().map(|r| sqlx::Row::get::<String, _>(r, column)).collect();
        if postgres {
            assert!(plan.iter().any(|l| l.contains("contacts_email")), "{plan:#?}");
            assert!(!plan.iter().any(|l| l.contains("Seq Scan on contacts")), "{plan:#?}");
            return;
        }
        assert!(plan.iter().any(|l| l.contains("USING INDEX contacts_email")), "{plan:#?}");
        assert!(!plan.iter().any(|l| l == "SCAN c" || l.starts_with("SCAN c ")), "{plan:#?}");
    }
}
