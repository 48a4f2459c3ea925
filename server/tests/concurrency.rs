//! Long writes sharing one database: a CSV import runs while the scheduler
//! moves due participants of a published flow, bulk runs write, and another
//! connection commits every few milliseconds (as job heartbeats and other
//! processes do). On SQLite a transaction that began as a reader and then
//! wrote used to fail with SQLITE_BUSY_SNAPSHOT (517, "database is
//! locked") as soon as another connection had committed in between; write
//! transactions now begin `BEGIN IMMEDIATE` (see `server::db`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use app::core::contact::Contact;
use server::runtime::bulk::{self, Action, BulkRequest, Criteria, Params};
use server::runtime::import::{self, ImportOptions};
use server::runtime::{contacts, millis, pressure, ManualClock, Runtime, SystemClock};
use server::store::{self, Store};

mod support;
use support::publish;

const ROWS: usize = 60_000;
const PARKED: usize = 10_000;

/// Row `i` of the generated file: every 10th joins "Imported" (which
/// enrolls into the fast flow), every 30th (from the 7th) updates a
/// parked contact; the rest are new contacts.
fn csv_row(i: usize) -> String {
    let email = if i % 30 == 7 { format!("parked{}@x.test", i / 30) } else { format!("row{i}@import.test") };
    let lists = if i.is_multiple_of(10) { "Imported" } else { "" };
    format!("{email},+1555{i:07},Name {i},{lists}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_import_commits_every_row_while_scheduler_bulk_runs_and_heartbeats_write() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), "worker-a").with_files_dir(dir.path().join("files"));

    // Contacts joining "Imported" enter a flow that waits a second, scores and ends.
    let fast = publish(
        &store,
        "Imported",
        json!([{"id": "s", "kind": "start", "settings": {"entry": "list", "list": "Imported"}},
               {"id": "wait", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "seconds"}},
               {"id": "score", "kind": "update_contact", "settings": {"changes": [{"field": "score", "op": "increment", "value": 1}]}},
               {"id": "x", "kind": "exit"}]),
        &["s->wait", "wait->score", "score->x"],
    )
    .await;
    // Participants waiting a day: what the bulk runs suppress and unsuppress.
    let parked = publish(
        &store,
        "Parked",
        json!([{"id": "s", "kind": "start"},
               {"id": "wait", "kind": "wait", "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
               {"id": "x", "kind": "exit"}]),
        &["s->wait", "wait->x"],
    )
    .await;
    let mut tx = pool.begin().await.unwrap();
    let mut ids = Vec::with_capacity(PARKED);
    for i in 0..PARKED {
        ids.push(contacts::insert(&mut tx, &Contact { email: Some(format!("parked{i}@x.test")), ..Contact::default() }).await.unwrap());
    }
    tx.commit().await.unwrap();
    assert_eq!(runtime.enroll(parked, &ids).await.unwrap().0.len(), PARKED);
    runtime.run_until_idle().await.unwrap();

    let path = dir.path().join("contacts.csv");
    let mut text = String::from("Email,Phone,Name,Lists\n");
    for i in 0..ROWS {
        text.push_str(&csv_row(i));
    }
    std::fs::write(&path, text).unwrap();
    let options: ImportOptions = serde_json::from_value(json!({"mapping": {"Email": "email", "Phone": "mobile", "Lists": "lists"}})).unwrap();
    import::check(&path, &options).await.unwrap();
    let job = import::create_job(&runtime, &path, Some("contacts.csv"), &options, "test").await.unwrap();
    eprintln!("set up in {:.1} s", started.elapsed().as_secs_f64());

    let done = Arc::new(AtomicBool::new(false));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (ticks, runs, beats) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // The longest a heartbeat waited, in ms.
    let slowest = Arc::new(AtomicUsize::new(0));

    // The scheduler, passing over due participants.
    let scheduler = {
        let (runtime, done, errors, ticks) = (runtime.clone(), done.clone(), errors.clone(), ticks.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                match runtime.tick().await {
                    Ok(tick) if tick.claimed == 0 => tokio::time::sleep(Duration::from_millis(20)).await,
                    Ok(tick) => {
                        ticks.fetch_add(tick.committed, Ordering::Relaxed);
                    }
                    Err(err) => errors.lock().unwrap().push(format!("scheduler: {err}")),
                }
            }
        })
    };
    // Bulk runs, one after another: suppress, unsuppress, suppress...
    let bulk_runs = {
        let (runtime, done, errors, runs) = (runtime.clone(), done.clone(), errors.clone(), runs.clone());
        tokio::spawn(async move {
            let mut actions = [Action::Suppress, Action::Unsuppress].into_iter().cycle();
            while !done.load(Ordering::Relaxed) {
                let action = actions.next().unwrap();
                let request = BulkRequest { action, criteria: Criteria { flow_ids: vec![parked], ..Criteria::default() }, disposition: None, params: Params::default() };
                let id = match bulk::start(&runtime, &request, "test").await {
                    Ok(id) => id,
                    Err(err) => {
                        errors.lock().unwrap().push(format!("bulk start {}: {err}", action.as_str()));
                        continue;
                    }
                };
                match bulk::run(&runtime, id).await {
                    Ok(view) if view.status == "done" && view.count == PARKED as i64 => {
                        runs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(view) => errors.lock().unwrap().push(format!("bulk run {id}: {} with {} changed: {:?}", view.status, view.count, view.message)),
                    Err(err) => errors.lock().unwrap().push(format!("bulk run {id} {}: {err}", action.as_str())),
                }
            }
        })
    };
    // A heartbeat on a connection of its own, committing every few ms.
    let heartbeat = {
        let other = store::connect(&db.url).await.unwrap();
        let (done, errors, beats, slowest) = (done.clone(), errors.clone(), beats.clone(), slowest.clone());
        tokio::spawn(async move {
            let mut conn = other.acquire().await.unwrap();
            while !done.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let beat = sqlx::query("UPDATE contact_imports SET heartbeat_at = $1 WHERE id = $2")
                    .bind(millis(jiff::Timestamp::now()))
                    .bind(job)
                    .execute(&mut *conn)
                    .await;
                slowest.fetch_max(asked.elapsed().as_millis() as usize, Ordering::Relaxed);
                match beat {
                    Ok(_) => {
                        beats.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => errors.lock().unwrap().push(format!("heartbeat: {err}")),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };

    let import_started = Instant::now();
    let imported = import::run(&runtime, job, path, options).await;
    let import_took = import_started.elapsed();
    done.store(true, Ordering::Relaxed);
    for task in [scheduler, bulk_runs, heartbeat] {
        task.await.unwrap();
    }
    let mut conn = pool.acquire().await.unwrap();
    let report = import::job(&mut conn, job, 10).await.unwrap();
    drop(conn);
    eprintln!(
        "import of {ROWS} rows: {:.1} s, {} ({} created, {} updated, {} refused; error {:?}); meanwhile {} participants committed, {} bulk runs done, {} heartbeats (the slowest {} ms)",
        import_took.as_secs_f64(),
        report.status,
        report.created,
        report.updated,
        report.failed,
        report.error,
        ticks.load(Ordering::Relaxed),
        runs.load(Ordering::Relaxed),
        beats.load(Ordering::Relaxed),
        slowest.load(Ordering::Relaxed)
    );
    let errors = errors.lock().unwrap().clone();
    for err in errors.iter().take(10) {
        eprintln!("  {err}");
    }
    if let Err(err) = &imported {
        panic!("the import failed after {} of {ROWS} rows: {err}", report.rows_done);
    }
    assert!(errors.is_empty(), "{} write(s) failed while the import ran, the first: {}", errors.len(), errors[0]);
    assert_eq!((report.status.as_str(), report.rows_done, report.error.as_deref()), ("done", ROWS as i64, None));
    assert_eq!((report.created, report.updated, report.skipped, report.failed), (58_000, 2_000, 0, 0));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&pool).await.unwrap();
    assert_eq!(stored, (PARKED + 58_000) as i64, "every row's contact is there");
    let phones: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE mobile IS NOT NULL").fetch_one(&pool).await.unwrap();
    assert_eq!(phones, ROWS as i64, "every row's update is there");
    assert!(runs.load(Ordering::Relaxed) > 0 && beats.load(Ordering::Relaxed) > 0, "the writers wrote while the import ran");

    // The 6,000 contacts the import enrolled all go through their flow.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        runtime.run_until_idle().await.unwrap();
        let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1 AND status = 'completed'")
            .bind(fast)
            .fetch_one(&pool)
            .await
            .unwrap();
        if completed == (ROWS / 10) as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "{completed} of {} imported participants completed", ROWS / 10);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let enrolled: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1").bind(fast).fetch_one(&pool).await.unwrap();
    assert_eq!(enrolled, (ROWS / 10) as i64, "each listed row enrolled once");
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Two workers whose batches share contacts, committing at the same time
/// (really at once on PostgreSQL; one after the other on SQLite, each over
/// what it read before the other wrote): every contact is in six flows
/// that each add 1 to its `n` and then email it, under a cap of 2 emails a
/// week. A batch written over a contact another worker changed meanwhile
/// must not be kept (its participants run again with the new data): every
/// increment is counted exactly once, and no contact gets a third email.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_sharing_contacts_count_each_change_once_and_keep_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let a = Runtime::new(pool.clone(), clock.clone(), "worker-a").with_batch(30);
    let b = Runtime::new(pool.clone(), clock.clone(), "worker-b").with_batch(30);
    let policy = serde_json::from_value(json!({"caps": [{"channel": "email", "max": 2, "per": {"amount": 7, "unit": "days"}}]})).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    pressure::save(&mut conn, &policy, "test").await.unwrap();
    drop(conn);

    const CONTACTS: usize = 20;
    const FLOWS: usize = 6;
    let ids = counted_contacts(&pool, "shared", CONTACTS).await;
    for f in 0..FLOWS {
        let flow = publish(
            &store,
            &format!("Count {f}"),
            json!([{"id": "s", "kind": "start"},
                   {"id": "count", "kind": "update_contact", "settings": {"changes": [{"field": "n", "op": "increment", "value": 1}]}},
                   {"id": "e", "kind": "send_email", "settings": {"subject": format!("Hello {f}"), "body": "x"}},
                   {"id": "x", "kind": "exit"}]),
            &["s->count", "count->e", "e->x"],
        )
        .await;
        a.enroll(flow, &ids).await.unwrap();
    }

    let mut rounds = 0;
    let mut refused = 0;
    loop {
        let (x, y) = (a.claim_batch().await.unwrap(), b.claim_batch().await.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        let claimed = x.len() + y.len();
        if rounds == 0 {
            let shared: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT contact_id) FROM participants WHERE lease_owner = 'worker-a'
                   AND contact_id IN (SELECT contact_id FROM participants WHERE lease_owner = 'worker-b')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(shared > 0, "the first two batches share contacts");
        }
        let (x, y) = tokio::join!(a.commit_batch(x), b.commit_batch(y));
        let committed = x.unwrap().committed + y.unwrap().committed;
        if rounds == 0 {
            refused = claimed - committed;
        }
        rounds += 1;
        assert!(rounds < 200, "the workers keep finding work");
    }
    assert!(refused > 0, "the batch committed second was worked out over contacts the first changed: not all of it is kept");

    let mut conn = pool.acquire().await.unwrap();
    for id in &ids {
        let contact = contacts::load(&mut conn, *id).await.unwrap();
        assert_eq!(contact.fields["n"].as_f64(), Some(FLOWS as f64), "contact {id}: each flow's increment counted once");
    }
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM participant_actions WHERE step = 'count'").fetch_one(&pool).await.unwrap();
    assert_eq!(counted, (CONTACTS * FLOWS) as i64, "one timeline record per participant's increment");
    let emails: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT p.contact_id, count(*) FROM outbox o JOIN participants p ON p.id = o.participant_id WHERE o.kind = 'email' GROUP BY p.contact_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(emails.len(), CONTACTS);
    assert!(emails.iter().all(|(_, n)| *n == 2), "two emails each, the cap: {emails:?}");
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_sends").fetch_one(&pool).await.unwrap();
    assert_eq!(sends, (CONTACTS * 2) as i64, "every email counted once against the cap");
    let deferred: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE status = 'waiting' AND step = 'e' AND next_run_at IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deferred, (CONTACTS * (FLOWS - 2)) as i64, "the rest wait for the window");
}

/// `n` contacts (`{prefix}{i}@x.test`) whose field `n` is 0.
async fn counted_contacts(pool: &server::db::Pool, prefix: &str, n: usize) -> Vec<i64> {
    let mut tx = pool.begin().await.unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let contact = serde_json::from_value::<Contact>(json!({"email": format!("{prefix}{i}@x.test"), "fields": {"n": 0}})).unwrap();
        ids.push(contacts::insert(&mut tx, &contact).await.unwrap());
    }
    tx.commit().await.unwrap();
    ids
}

/// Contacts each in `flows` flows that add 1 to their `n` and exit.
async fn counting_flows(store: &Store, runtime: &Runtime, contacts_n: usize, flows: usize) -> Vec<i64> {
    let ids = counted_contacts(store.pool(), "loop", contacts_n).await;
    for f in 0..flows {
        let flow = counting_flow(store, &format!("Count {f}")).await;
        runtime.enroll(flow, &ids).await.unwrap();
    }
    ids
}

/// A published flow that adds 1 to the contact's `n` and exits.
async fn counting_flow(store: &Store, name: &str) -> i64 {
    publish(
        store,
        name,
        json!([{"id": "s", "kind": "start"},
               {"id": "count", "kind": "update_contact", "settings": {"changes": [{"field": "n", "op": "increment", "value": 1}]}},
               {"id": "x", "kind": "exit"}]),
        &["s->count", "count->x"],
    )
    .await
}

/// Every contact's `n` is `flows` and each participant has one `count` record.
async fn counted_once(pool: &server::db::Pool, ids: &[i64], flows: usize) {
    let mut conn = pool.acquire().await.unwrap();
    for id in ids {
        let contact = contacts::load(&mut conn, *id).await.unwrap();
        assert_eq!(contact.fields["n"].as_f64(), Some(flows as f64), "contact {id}: each flow's increment counted once");
    }
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM participant_actions WHERE step = 'count'").fetch_one(pool).await.unwrap();
    assert_eq!(counted, (ids.len() * flows) as i64, "one timeline record per participant's increment");
}

/// One process running three scheduler loops (`--concurrency 3`) over
/// small batches whose contacts overlap: every participant finishes, every
/// increment is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_with_several_scheduler_loops_counts_each_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), "worker-loops").with_batch(7).with_concurrency(3);
    const FLOWS: usize = 5;
    let ids = counting_flows(&store, &runtime, 40, FLOWS).await;

    let dispatcher = server::runtime::outbox::Dispatcher::new(runtime.clone(), Arc::new(server::channels::Channels::new(pool.clone())));
    let stop = tokio_util::sync::CancellationToken::new();
    let workers = server::runtime::spawn_workers_until(runtime.clone(), dispatcher, Duration::from_millis(10), stop.clone());
    let since = Instant::now();
    loop {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE status <> 'completed'").fetch_one(&pool).await.unwrap();
        if open == 0 {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(60), "{open} participants still not completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    workers.await.unwrap();
    counted_once(&pool, &ids, FLOWS).await;
}

/// Two loops of one process share its worker name, so the lease owner
/// cannot tell them apart: when one's lease ran out and the other claimed
/// the same participants, the revision does. The first to commit writes
/// them; the other's commit writes none of them.
#[tokio::test]
async fn loops_sharing_a_worker_name_are_fenced_by_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let lease = jiff::SignedDuration::from_secs(30);
    let first = Runtime::new(pool.clone(), clock.clone(), "worker-same").with_lease(lease);
    let second = Runtime::new(pool.clone(), clock.clone(), "worker-same").with_lease(lease);
    let ids = counting_flows(&store, &first, 6, 1).await;

    let late = first.claim_batch().await.unwrap();
    assert_eq!(late.len(), 6);
    clock.advance(jiff::SignedDuration::from_secs(31));
    let again = second.claim_batch().await.unwrap();
    assert_eq!(again.len(), 6, "a lease run out is claimed again, by the same name");
    assert_eq!(first.commit_batch(late).await.unwrap().committed, 6);
    assert_eq!(second.commit_batch(again).await.unwrap().committed, 0, "written over a revision no longer current");
    first.run_until_idle().await.unwrap();
    counted_once(&pool, &ids, 1).await;
}

/// A contact edited through the API (or an import) while a scheduler batch
/// that read it is being worked out: the batch must not write its copy
/// over the edit. Its claim fails, its participant runs again with the
/// edited contact, and both changes are kept.
#[tokio::test]
async fn an_edit_made_while_a_batch_works_is_not_overwritten_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let store = Store::new(pool.clone());
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let runtime = Runtime::new(pool.clone(), clock.clone(), "worker-a");
    let ids = counting_flows(&store, &runtime, 1, 1).await;

    let batch = runtime.claim_batch().await.unwrap();
    assert_eq!(batch.len(), 1);
    let mut tx = server::db::begin_write(&pool).await.unwrap();
    let edited = serde_json::from_value::<Contact>(json!({"email": "loop0@x.test", "fields": {"n": 10, "plan": "gold"}})).unwrap();
    contacts::update(&mut tx, ids[0], &edited).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(runtime.commit_batch(batch).await.unwrap().committed, 0, "worked out over the contact before the edit");
    runtime.run_until_idle().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let contact = contacts::load(&mut conn, ids[0]).await.unwrap();
    assert_eq!(contact.fields["plan"], "gold", "the edit is kept");
    assert_eq!(contact.fields["n"].as_f64(), Some(11.0), "and the flow's increment is made over it");
    drop(conn);

    // The same with an import updating the contact.
    let flow = counting_flow(&store, "Count again").await;
    runtime.enroll(flow, &ids).await.unwrap();
    let batch = runtime.claim_batch().await.unwrap();
    assert_eq!(batch.len(), 1);
    let path = dir.path().join("edit.csv");
    std::fs::write(&path, "Email,Tier\nloop0@x.test,platinum\n").unwrap();
    let options: ImportOptions = serde_json::from_value(json!({"mapping": {"Email": "email", "Tier": "tier"}})).unwrap();
    let job = import::create_job(&runtime, &path, Some("edit.csv"), &options, "test").await.unwrap();
    import::run(&runtime, job, path, options).await.unwrap();
    assert_eq!(runtime.commit_batch(batch).await.unwrap().committed, 0, "worked out over the contact before the import");
    runtime.run_until_idle().await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let contact = contacts::load(&mut conn, ids[0]).await.unwrap();
    assert_eq!(contact.fields["tier"], "platinum", "the import's change is kept");
    assert_eq!(contact.fields["n"].as_f64(), Some(12.0));
}
