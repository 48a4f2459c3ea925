//! The living demo (issue 24): on a new installation, a published flow
//! whose last 30 days were run by the real engine on a virtual clock, for
//! a few thousand sample contacts, so that the report, the canvas counts,
//! the inbox and the participant pages have something real to show.
//!
//! What is real: the flow is published and run by the runtime (the same
//! `Runtime`, scheduler passes, outbox dispatcher, event delivery and
//! rollups as in production), only its clock is moved by hand. What is
//! made up: the contacts (fake names, `example.com` addresses, field
//! `sample` = `demo`, list "Demo sample contacts"), and what they did:
//! messages are recorded as sent without any network (nothing leaves the
//! machine), and opens, clicks, replies and purchases are drawn at rates
//! a marketer would find realistic, from a fixed seed. `waymark demo
//! --reset` removes the sample contacts, their participants and the demo
//! flow, and runs it again; `serve --no-demo` never seeds it.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Map, Value};
use sqlx::Row;

use app::core::contact::Contact;
use app::core::engagement::Received;
use app::core::engine::{Effect, Event, ManualOutcome};
use app::core::FlowDocument;

use crate::error::{Error, Result};
use crate::runtime::events::{self, NewEvent};
use crate::runtime::outbox::{Dispatcher, Executor, Failure, Job};
use crate::runtime::{ManualClock, Runtime};
use crate::store::Store;

/// The demo flow's name (also how `--reset` finds it).
pub const FLOW_NAME: &str = "Spring offer (live demo)";
/// Every sample contact is on this list and has `sample` = `demo`.
pub const LIST: &str = "Demo sample contacts";

#[derive(Clone, Debug)]
pub struct Options {
    pub contacts: usize,
    pub days: i64,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { contacts: 2_500, days: 30, seed: 20_261_207 }
    }
}

/// What a demo run made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub flow_id: i64,
    pub contacts: usize,
    pub participants: i64,
    pub sends: i64,
    pub events: usize,
}

/// The demo flow: welcome email, two days' wait, an A/B offer (its branches
/// compared on clicks in the report), then a day later a reminder for
/// those who clicked and a sales call task for those who did not; a
/// purchase is the goal.
pub fn flow_document() -> FlowDocument {
    let email = |subject: &str, body: &str| json!({"subject": subject, "body": body, "activation": "automatic"});
    let doc = json!({
        "format": "waymark.flow/v1",
        "name": FLOW_NAME,
        "settings": {"reentry": "never", "goal": {"event": {"event": "custom", "name": "purchase"}}},
        "steps": [
            {"id": "start", "kind": "start", "name": "Joined the list", "position": {"x": 40, "y": 200}, "settings": {"entry": "list", "list": LIST}},
            {"id": "welcome", "kind": "send_email", "name": "Welcome email", "position": {"x": 260, "y": 200},
             "settings": email("Welcome to Northwind Outfitters, {{ first_name }}", "Hi {{ first_name }}, thanks for joining. Here is what is new this spring.")},
            {"id": "wait_2d", "kind": "wait", "name": "Wait 2 days", "position": {"x": 480, "y": 200}, "settings": {"mode": "duration", "amount": 2, "unit": "days"}},
            {"id": "offer_test", "kind": "split", "name": "Offer A/B test", "position": {"x": 700, "y": 200},
             "settings": {"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}]}},
            {"id": "offer_a", "kind": "send_email", "name": "Offer A: 20% off", "position": {"x": 920, "y": 100},
             "settings": email("20% off your first order", "Hi {{ first_name }}, take 20% off anything this week.")},
            {"id": "offer_b", "kind": "send_email", "name": "Offer B: free shipping", "position": {"x": 920, "y": 300},
             "settings": email("Free shipping, this week only", "Hi {{ first_name }}, shipping is on us until Sunday.")},
            {"id": "clicked", "kind": "wait_until", "name": "Clicked within 3 days?", "position": {"x": 1140, "y": 200},
             "settings": {"until": [{"event": "link_clicked"}], "timeout": {"amount": 3, "unit": "days"}}},
            {"id": "wait_1d", "kind": "wait", "name": "Wait a day", "position": {"x": 1360, "y": 40}, "settings": {"mode": "duration", "amount": 1, "unit": "days"}},
            {"id": "reminder", "kind": "send_email", "name": "Cart reminder", "position": {"x": 1580, "y": 100},
             "settings": email("Still thinking it over?", "Hi {{ first_name }}, your offer is waiting.")},
            {"id": "sales_call", "kind": "task", "name": "Sales call", "position": {"x": 1360, "y": 300},
             "settings": {"subject": "Call {{ first_name }} about the spring offer", "priority": "normal"}},
            {"id": "done", "kind": "exit", "name": "Done", "position": {"x": 1800, "y": 200}}
        ],
        "edges": [
            {"from": "start", "port": "next", "to": "welcome"},
            {"from": "welcome", "port": "next", "to": "wait_2d"},
            {"from": "wait_2d", "port": "next", "to": "offer_test"},
            {"from": "offer_test", "port": "a", "to": "offer_a"},
            {"from": "offer_test", "port": "b", "to": "offer_b"},
            {"from": "offer_a", "port": "next", "to": "clicked"},
            {"from": "offer_b", "port": "next", "to": "clicked"},
            {"from": "clicked", "port": "met", "to": "wait_1d"},
            {"from": "wait_1d", "port": "next", "to": "reminder"},
            {"from": "clicked", "port": "timed_out", "to": "sales_call"},
            {"from": "reminder", "port": "next", "to": "done"},
            {"from": "sales_call", "port": "next", "to": "done"}
        ]
    });
    FlowDocument::from_value(&doc).expect("the demo flow is a valid document")
}

/// Sends nothing: records every effect as done, without a network.
struct Recorded;

#[async_trait::async_trait]
impl Executor for Recorded {
    async fn execute(&self, _job: &Job, _effect: &Effect) -> std::result::Result<Map<String, Value>, Failure> {
        Ok(Map::new())
    }
}

/// splitmix64: a small, fixed-seed source of draws (no crate needed, and
/// the same demo every time).
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A delay up to `hours`, skewed early (most opens come soon).
    fn soon(&mut self, hours: f64) -> SignedDuration {
        let u = self.unit();
        SignedDuration::from_secs_f64(u * u * hours * 3_600.0)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luca", "Maya", "Nils", "Olga", "Priya", "Quinn",
    "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Archer", "Bianchi", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen", "Kowalski", "Larsen", "Moreau",
    "Nakamura", "Okafor", "Petrov", "Quispe", "Rossi", "Svensson", "Tanaka", "Umarov", "Varga", "Weber", "Yilmaz", "Zhang",
];
const ZONES: &[&str] = &["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London", "Europe/Berlin", "Asia/Tokyo"];

/// An engagement event waiting for the virtual clock to reach its time.
struct Planned {
    at: Timestamp,
    contact: i64,
    participant: Option<i64>,
    event: Value,
}

/// Seeds the demo on a new installation (once: a deleted demo stays deleted).
pub async fn seed_once(store: &Store, options: &Options) -> Result<Option<Summary>> {
    if !store.first_time("demo_data_seeded").await? {
        return Ok(None);
    }
    Ok(Some(run(store, options, Timestamp::now()).await?))
}

/// Removes the demo (flow, sample contacts and everything about them) and
/// runs it again, ending at `end`.
pub async fn reset(store: &Store, options: &Options, end: Timestamp) -> Result<Summary> {
    remove(store).await?;
    run(store, options, end).await
}

/// Removes the demo flow and the sample contacts, with their participants,
/// timeline, events and rollups.
pub async fn remove(store: &Store) -> Result<()> {
    let pool = store.pool();
    let mut tx = crate::db::begin_write(pool).await?;
    let flows: Vec<i64> = sqlx::query_scalar("SELECT id FROM flows WHERE name = $1").bind(FLOW_NAME).fetch_all(&mut *tx).await?;
    let contacts: Vec<i64> = sqlx::query_scalar(
        "SELECT m.contact_id FROM list_members m JOIN lists l ON l.id = m.list_id WHERE l.name = $1",
    )
    .bind(LIST)
    .fetch_all(&mut *tx)
    .await?;
    for chunk in contacts.chunks(1_000) {
        let ids = crate::db::id_list(chunk);
        for sql in [
            format!("DELETE FROM participant_events WHERE participant_id IN (SELECT id FROM participants WHERE contact_id IN ({ids}))"),
            format!("DELETE FROM participant_actions WHERE participant_id IN (SELECT id FROM participants WHERE contact_id IN ({ids}))"),
            format!("DELETE FROM outbox WHERE participant_id IN (SELECT id FROM participants WHERE contact_id IN ({ids}))"),
            format!("DELETE FROM contact_events WHERE contact_id IN ({ids})"),
            format!("DELETE FROM participants WHERE contact_id IN ({ids})"),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await?;
        }
    }
    for flow in &flows {
        for sql in [
            "DELETE FROM participant_events WHERE participant_id IN (SELECT id FROM participants WHERE flow_id = $1)",
            "DELETE FROM participant_actions WHERE participant_id IN (SELECT id FROM participants WHERE flow_id = $1)",
            "DELETE FROM outbox WHERE participant_id IN (SELECT id FROM participants WHERE flow_id = $1)",
            "DELETE FROM participants WHERE flow_id = $1",
            "DELETE FROM flow_rollups WHERE flow_id = $1",
            "DELETE FROM split_decisions WHERE flow_id = $1",
        ] {
            sqlx::query(sql).bind(flow).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    for flow in flows {
        store.delete(flow).await?;
    }
    for chunk in contacts.chunks(1_000) {
        let mut tx = crate::db::begin_write(pool).await?;
        sqlx::query(&format!("DELETE FROM contacts WHERE id IN ({})", crate::db::id_list(chunk))).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Runs the demo: the flow published, `options.contacts` sample contacts
/// joining over `options.days` days up to `end`, the engine run on a
/// virtual clock in two-hour passes with what they did fed back as events.
pub async fn run(store: &Store, options: &Options, end: Timestamp) -> Result<Summary> {
    let pool = store.pool().clone();
    let doc = flow_document();
    let flow = store.create(FLOW_NAME, Some(doc)).await?;
    store.publish(flow.id, None, "demo").await?;
    let start = end - SignedDuration::from_hours(24 * options.days);
    let clock = ManualClock::new(start);
    let runtime = Runtime::new(pool.clone(), clock.clone(), crate::runtime::worker_name("demo"));
    let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Recorded)).with_concurrency(8);
    let mut draws = Draws(options.seed);

    // The sample contacts, each with the time it joins (the first four
    // fifths of the period, more of them early on).
    let mut joins: Vec<(Timestamp, i64)> = Vec::with_capacity(options.contacts);
    let span = (options.days * 24 * 3_600) as f64 * 0.8;
    let mut tx = crate::db::begin_write(&pool).await?;
    for n in 0..options.contacts {
        let (first, last) = (draws.pick(FIRST), draws.pick(LAST));
        let contact: Contact = serde_json::from_value(json!({
            "email": format!("{}.{}.{n}@example.com", first.to_lowercase(), last.to_lowercase()),
            "timezone": draws.pick(ZONES),
            "fields": {"first_name": first, "last_name": last, "sample": "demo", "plan": draws.pick(&["free", "free", "pro", "team"])},
        }))
        .map_err(|err| Error::Internal(anyhow::anyhow!("sample contact: {err}")))?;
        let id = crate::runtime::contacts::insert(&mut tx, &contact).await?;
        let u = draws.unit();
        joins.push((start + SignedDuration::from_secs_f64(u.powf(1.3) * span), id));
    }
    tx.commit().await?;
    joins.sort();

    let step = SignedDuration::from_hours(2);
    let mut planned: Vec<Planned> = Vec::new();
    let mut seen_sends: i64 = 0;
    let mut seen_tasks: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut next_join = 0;
    let mut events_written = 0;
    let mut now = start;
    while now < end {
        now = (now + step).min(end);
        clock.set(now);
        // Those joining by now: onto the list (list entry enrolls them).
        let mut joining = Vec::new();
        while next_join < joins.len() && joins[next_join].0 <= now {
            joining.push(joins[next_join].1);
            next_join += 1;
        }
        if !joining.is_empty() {
            let mut tx = crate::db::begin_write(&pool).await?;
            let keep = crate::runtime::contacts::Keep { participants: &[], leased_by: None };
            for contact in &joining {
                let before = crate::runtime::contacts::load(&mut tx, *contact).await?;
                let mut after = before.clone();
                after.lists.insert(LIST.to_owned());
                // Joining the list enrolls them (the flow starts on it).
                runtime.save_contact(&mut tx, *contact, &before, &after, &keep).await?;
            }
            tx.commit().await?;
        }
        // The events due by now, then the engine and the outbox until idle.
        planned.sort_by_key(|p| p.at);
        let due: Vec<Planned> = planned.drain(..planned.partition_point(|p| p.at <= now)).collect();
        if !due.is_empty() {
            let new: Vec<NewEvent> = due
                .into_iter()
                .filter_map(|p| {
                    let mut body = p.event;
                    body["at"] = json!(p.at);
                    let received: Received = serde_json::from_value(body).ok()?;
                    Some(NewEvent { contact_id: p.contact, participant_id: p.participant, received, source: "api" })
                })
                .collect();
            events_written += new.len();
            let mut tx = crate::db::begin_write(&pool).await?;
            events::record(&runtime, &mut tx, &new).await?;
            tx.commit().await?;
            runtime.deliver_all_events().await?;
        }
        loop {
            let tick = runtime.run_until_idle().await?;
            let sent = dispatcher.dispatch().await?;
            if tick.claimed == 0 && sent == Default::default() {
                break;
            }
        }
        // What the people sent to will do: opens (and privacy proxies'),
        // clicks, replies, a few unsubscribes and bounces, purchases.
        let sends = sqlx::query(
            "SELECT o.id, o.participant_id, o.step, p.contact_id FROM outbox o JOIN participants p ON p.id = o.participant_id
             WHERE p.flow_id = $1 AND o.kind = 'email' AND o.status = 'sent' AND o.id > $2 ORDER BY o.id",
        )
        .bind(flow.id)
        .bind(seen_sends)
        .fetch_all(&pool)
        .await?;
        for row in &sends {
            seen_sends = seen_sends.max(row.get::<i64, _>("id"));
            let (participant, contact, step): (i64, i64, String) = (row.get("participant_id"), row.get("contact_id"), row.get("step"));
            let about = |event: Value| Planned { at: now, contact, participant: Some(participant), event };
            let offer = step.starts_with("offer_");
            // Offer B (free shipping) draws more clicks than offer A.
            let click_rate = match step.as_str() {
                "offer_a" => 0.09,
                "offer_b" => 0.16,
                _ => 0.06,
            };
            if draws.chance(0.012) {
                planned.push(Planned { at: now + draws.soon(1.0), ..about(json!({"event": "bounced", "step": step, "type": "hard"})) });
                continue;
            }
            if draws.chance(0.18) {
                planned.push(Planned { at: now + draws.soon(0.2), ..about(json!({"event": "email_opened", "step": step, "machine": true})) });
            }
            if draws.chance(0.42) {
                let opened = now + draws.soon(30.0);
                planned.push(Planned { at: opened, ..about(json!({"event": "email_opened", "step": step})) });
                if draws.chance(0.1) {
                    planned.push(Planned { at: opened, ..about(json!({"event": "email_opened", "step": step})) });
                }
                if draws.chance(click_rate / 0.42) {
                    let clicked = opened + draws.soon(2.0);
                    let url = format!("https://shop.example.com/spring?offer={step}");
                    planned.push(Planned { at: clicked, ..about(json!({"event": "link_clicked", "step": step, "url": url})) });
                    if offer && draws.chance(0.35) {
                        let bought = clicked + draws.soon(20.0);
                        planned.push(Planned {
                            at: bought,
                            contact,
                            participant: None,
                            event: json!({"event": "custom", "name": "purchase", "properties": {"total": 40 + (draws.next() % 160) as i64}}),
                        });
                    }
                }
                if draws.chance(0.02) {
                    planned.push(Planned { at: opened + draws.soon(6.0), ..about(json!({"event": "replied", "step": step})) });
                }
                if draws.chance(0.006) {
                    planned.push(Planned { at: opened + draws.soon(1.0), ..about(json!({"event": "unsubscribed", "channel": "email"})) });
                }
            }
        }
        // Agents work most sales-call tasks within a day; the rest stay in the inbox.
        let tasks = sqlx::query(
            "SELECT a.participant_id, a.due_at FROM participant_actions a JOIN participants p ON p.id = a.participant_id
             WHERE p.flow_id = $1 AND a.manual = 1 AND a.outcome = 'pending'",
        )
        .bind(flow.id)
        .fetch_all(&pool)
        .await?;
        for row in &tasks {
            let participant: i64 = row.get("participant_id");
            let due: Timestamp = row.get::<&str, _>("due_at").parse().unwrap_or(now);
            // Each task is looked at once, when a day has nearly passed.
            if now.duration_since(due) < SignedDuration::from_hours(20) || !seen_tasks.insert(participant) {
                continue;
            }
            if now < end - SignedDuration::from_hours(24 * 3) && draws.chance(0.8) {
                let outcome = if draws.chance(0.8) { ManualOutcome::Completed } else { ManualOutcome::Skipped };
                let _ = runtime.deliver(participant, Event::Manual { outcome, disposition: Some("called".into()) }).await;
            }
        }
    }
    let participants: i64 = sqlx::query_scalar("SELECT count(*) FROM participants WHERE flow_id = $1").bind(flow.id).fetch_one(&pool).await?;
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox o JOIN participants p ON p.id = o.participant_id WHERE p.flow_id = $1")
        .bind(flow.id)
        .fetch_one(&pool)
        .await?;
    Ok(Summary { flow_id: flow.id, contacts: options.contacts, participants, sends, events: events_written })
}

#[cfg(test)]
mod tests {
    use app::core::{validate, Context};

    use super::*;

    #[test]
    fn the_demo_flow_is_publishable() {
        let doc = flow_document();
        let findings = validate(&doc, &Context::default());
        assert!(findings.errors.is_empty(), "{:#?}", findings.errors);
    }

    #[test]
    fn draws_are_the_same_every_time_and_spread() {
        let (mut a, mut b) = (Draws(7), Draws(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next()).collect();
        assert_eq!(xs, (0..5).map(|_| b.next()).collect::<Vec<_>>());
        let mut d = Draws(1);
        let hits = (0..10_000).filter(|_| d.chance(0.3)).count();
        assert!((2_800..3_200).contains(&hits), "{hits}");
    }
}
