//! Outbox throughput to a real local SMTP server (aiosmtpd):
//! `cargo bench -p server --bench channels [-- N]`.
//!
//! N participants (500 by default) each reach a send_email step; the
//! timer covers the dispatcher carrying out every queued email over SMTP
//! and feeding each outcome back to its participant, until the outbox is
//! empty. Five runs, each on a fresh database; the median is reported.
//!
//! Measured 2026-11-22 on the shared 2-core dev machine (load 5–10),
//! `cargo bench -p server --bench channels -- 300`: median 19 messages/s
//! with one effect at a time (a steady ~52 ms per message, while aiosmtpd
//! alone takes 650+ messages/s from Python's smtplib); median 110
//! messages/s (min 100, max 152) with 16 effects at once over 16 pooled
//! SMTP connections, outcomes still recorded one by one. What is probably
//! left per message (read from lettre's source, not confirmed with a packet
//! trace): lettre writes a message's body and its closing `.` in two writes
//! on a socket without TCP_NODELAY (it offers no switch), so Nagle holds the
//! `.` for the server's delayed ACK (~40 ms); and each outcome is its own
//! transaction (the participant's advance).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use app::core::contact::Contact;
use app::core::FlowDocument;
use server::channels::{settings, Channels};
use server::runtime::outbox::Dispatcher;
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};

async fn run(n: usize, smtp: &support::SmtpSink, already: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::connect(&format!("sqlite://{}/bench.db", dir.path().display())).await.unwrap();
    let body = json!({"smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "Bench <bench@waymark.test>"}});
    settings::update(&pool, body.as_object().unwrap().clone()).await.unwrap();
    let doc = FlowDocument::from_value(&json!({
        "format": "waymark.flow/v1", "name": "Mail",
        "steps": [{"id": "s", "kind": "start"},
                  {"id": "e", "kind": "send_email", "settings": {"subject": "Hello {{ first_name }}", "body": "<p>Hi <b>{{ first_name }}</b>, here is the news.</p>"}}],
        "edges": [{"from": "s", "port": "next", "to": "e"}]}))
    .unwrap();
    let store = Store::new(pool.clone());
    let flow = store.create("Mail", Some(doc)).await.unwrap();
    store.publish(flow.id, None, "bench").await.unwrap();
    let runtime = Runtime::new(pool.clone(), ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap()), "bench");
    let mut tx = pool.begin().await.unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let contact: Contact = serde_json::from_value(json!({"email": format!("c{i}@example.test"), "fields": {"first_name": format!("N{i}")}})).unwrap();
        ids.push(contacts::insert(&mut tx, &contact).await.unwrap());
    }
    tx.commit().await.unwrap();
    runtime.enroll(flow.id, &ids).await.unwrap();
    runtime.run_until_idle().await.unwrap();

    let dispatcher = Dispatcher::new(runtime.clone(), Arc::new(Channels::new(pool.clone())));
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let pass = dispatcher.dispatch().await.unwrap();
        assert_eq!((pass.retried, pass.failed), (0, 0), "every email was accepted");
        if pass.sent == 0 {
            break;
        }
        sent += pass.sent;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(sent, n);
    smtp.wait_for(already + n);
    n as f64 / elapsed
}

#[tokio::main]
async fn main() {
    let n = std::env::args().skip(1).find_map(|a| a.replace('_', "").parse().ok()).unwrap_or(500);
    let smtp = support::SmtpSink::start(false);
    let mut rates = Vec::new();
    for round in 0..5 {
        let rate = run(n, &smtp, round * n).await;
        println!("run {}: {n} emails over SMTP in {:.2} s, {rate:.0} messages/s", round + 1, n as f64 / rate);
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("outbox → local SMTP (aiosmtpd): median {:.0} messages/s over 5 runs of {n} (min {:.0}, max {:.0})", rates[2], rates[0], rates[4]);
}
