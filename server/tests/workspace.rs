//! The agent's workspace against real components: the edited manual email
//! arrives at a real SMTP server (aiosmtpd) as the agent wrote it, tracked
//! and with List-Unsubscribe like an automatic one; the SMS goes to a local
//! Twilio-compatible server and a signed inbound reply joins the thread;
//! click-to-call asks that server to ring the agent's phone and bridge the
//! contact, and its signed status reports fill the conversation record.
//! The same tests run on SQLite and, with `WAYMARK_TEST_POSTGRES`, on
//! PostgreSQL.

mod support;

use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::Row;

use app::auth::{Role, Viewer};
use app::core::contact::Contact;
use app::workspace_api::{EmailSend, WorkspaceBackend};
use server::channels::settings;
use server::channels::Channels;
use server::runtime::outbox::{Dispatcher, RetryPolicy};
use server::runtime::{contacts, ManualClock, Runtime};
use server::store::{self, Store};
use server::workspace::Backend;
use server::{leptos_options, router, AppState};
use support::{HttpServer, SmtpSink};

struct World {
    store: Store,
    runtime: Runtime,
    backend: Backend,
    agent: Viewer,
    other: Viewer,
    _clock: Arc<ManualClock>,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

/// Monday 2026-11-23 14:00 UTC: 09:00 in New York, 23:00 in Tokyo.
const NOW: &str = "2026-11-23T14:00:00Z";

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    let clock = ManualClock::new(NOW.parse().unwrap());
    let runtime = Runtime::new(pool.clone(), clock.clone(), "worker");
    let viewer =
        |user: app::admin_api::UserInfo, email: &str| Viewer { id: user.id, email: email.into(), name: "Agent".into(), role: Role::Agent, token: false };
    let a = server::auth::accounts::add_user(&pool, "agent@x.test", "Agent", Role::Agent, "a long enough password").await.unwrap();
    let b = server::auth::accounts::add_user(&pool, "other@x.test", "Other", Role::Agent, "a long enough password").await.unwrap();
    World {
        store: Store::new(pool),
        backend: Backend::new(runtime.clone()),
        runtime,
        agent: viewer(a, "agent@x.test"),
        other: viewer(b, "other@x.test"),
        _clock: clock,
        _db: db,
        _dir: dir,
    }
}

impl World {
    async fn flow(&self, name: &str, steps: Value, wires: &[&str]) -> i64 {
        support::publish(&self.store, name, steps, wires).await
    }

    async fn enroll(&self, flow: i64, contact: Value) -> i64 {
        let contact: Contact = serde_json::from_value(contact).unwrap();
        let mut tx = self.runtime.pool().begin().await.unwrap();
        let id = contacts::insert(&mut tx, &contact).await.unwrap();
        tx.commit().await.unwrap();
        let p = self.runtime.enroll(flow, &[id]).await.unwrap().0[0];
        self.runtime.run_until_idle().await.unwrap();
        p
    }

    async fn configure(&self, body: Value) {
        settings::update(self.runtime.pool(), body.as_object().unwrap().clone()).await.unwrap();
    }

    async fn dispatch(&self) {
        let policy = RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries: 2 };
        let channels = Channels::new(self.runtime.pool().clone()).with_public_url("https://wm.test");
        Dispatcher::new(self.runtime.clone(), Arc::new(channels)).with_policy(policy).dispatch().await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
    }

    async fn status(&self, p: i64) -> String {
        self.runtime.participant(p).await.unwrap().status
    }

    async fn served(&self) -> std::net::SocketAddr {
        let state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), self.store.clone(), self.runtime.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
}

fn smtp_settings(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port, "tls": "none", "from": "Sales <sales@waymark.test>", "timeout_secs": 5})
}

/// A manual email step, then a task so the flow goes on after it.
fn email_flow() -> Value {
    json!([{"id": "s", "kind": "start"},
           {"id": "e", "kind": "send_email", "settings": {"activation": "manual",
               "subject": "Hello {{first_name}}", "body": "<p>Template body for {{first_name}}</p>",
               "cc": "{{manager}}", "bcc": "audit@waymark.test"}},
           {"id": "after", "kind": "task", "settings": {"subject": "Follow up"}}])
}

fn text(err: leptos::prelude::ServerFnError) -> String {
    app::api::error_text(&err)
}

#[tokio::test]
async fn the_agent_edits_and_sends_the_manual_email_and_the_step_completes() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    w.configure(json!({"smtp": smtp_settings(smtp.port)})).await;
    let flow = w.flow("Outreach", email_flow(), &["s->e", "e->after"]).await;
    let p =
        w.enroll(flow, json!({"email": "ada@example.test", "owner": "agent@x.test", "fields": {"first_name": "Ada <3", "manager": "boss@example.test"}})).await;

    // The composer opens prefilled, merge tags filled for this contact.
    let work = w.backend.task(&w.agent, p).await.unwrap();
    let draft = work.email.clone().expect("a manual email has a draft");
    assert_eq!((draft.to.as_str(), draft.subject.as_str()), ("ada@example.test", "Hello Ada <3"));
    assert_eq!((draft.cc.as_str(), draft.bcc.as_str()), ("boss@example.test", "audit@waymark.test"));
    assert_eq!(draft.body, "<p>Template body for Ada &lt;3</p>", "merge values escaped in HTML");
    assert_eq!((work.email_reach.blocked.clone(), work.email_reach.pressure.clone()), (None, None));
    assert_eq!(work.left, 1);
    // Another agent does not see it at all.
    assert_eq!(text(w.backend.task(&w.other, p).await.unwrap_err()), format!("There is no participant with id {p}."));

    let edited = EmailSend {
        participant: p,
        to: "ada@example.test".into(),
        cc: "partner@example.test".into(),
        bcc: String::new(),
        subject: "Edited: our call on Tuesday".into(),
        body: "<p>Hi Ada, as promised <a href=\"https://example.test/deck\">the deck</a>.</p><script>alert(1)</script><img src=x onerror=alert(2)>".into(),
        disposition: Some("sent".into()),
    };
    // Another agent cannot send it either, and a bad Cc is refused with nothing sent.
    assert_eq!(text(w.backend.send_email(&w.other, edited.clone()).await.unwrap_err()), format!("There is no participant with id {p}."));
    let bad = EmailSend { cc: "not an address".into(), ..edited.clone() };
    assert!(text(w.backend.send_email(&w.agent, bad).await.unwrap_err()).contains("“not an address” in Cc is not an email address"));
    assert_eq!(w.status(p).await, "waiting");

    let said = w.backend.send_email(&w.agent, edited.clone()).await.unwrap();
    assert_eq!(said, "Sent to ada@example.test; the step is completed.");
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!((timeline[1].step.as_str(), timeline[1].outcome), ("e", app::core::engine::Outcome::Completed));
    assert_eq!(timeline[1].reason.as_deref(), Some("disposition: sent"));
    assert_eq!(w.runtime.participant(p).await.unwrap().step.as_deref(), Some("after"));
    // Sending twice is refused: the task is done.
    assert!(w.backend.send_email(&w.agent, edited).await.is_err());

    w.dispatch().await;
    let messages = smtp.wait_for(1);
    let message = &messages[0];
    let headers = &message["headers"];
    assert_eq!(headers["subject"], "Edited: our call on Tuesday", "the agent's subject, not the template's");
    assert_eq!(headers["to"], "ada@example.test");
    assert_eq!(headers["cc"], "partner@example.test", "the agent's Cc replaced the step's");
    let mut rcpt: Vec<&str> = message["rcpt_tos"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    rcpt.sort();
    assert_eq!(rcpt, ["ada@example.test", "partner@example.test"], "the Bcc the agent emptied is gone");
    assert!(headers["list-unsubscribe"].as_str().unwrap().contains("https://wm.test/u/"), "List-Unsubscribe like automatic mail: {headers}");
    let html = message["parts"].as_array().unwrap().iter().find(|p| p["content_type"] == "text/html").unwrap()["text"].as_str().unwrap().to_owned();
    assert!(html.contains("Hi Ada, as promised"), "the agent's body: {html}");
    assert!(!html.contains("Template body"), "not the template's: {html}");
    assert!(!html.contains("<script") && !html.contains("onerror") && !html.contains("alert(1)"), "sanitised: {html}");
    assert!(!html.contains("https://example.test/deck") && html.contains("https://wm.test/"), "links tracked: {html}");

    let row = sqlx::query("SELECT channel, status, agent, tracked, subject, step FROM conversations WHERE participant_id = $1")
        .bind(p)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!((row.get::<String, _>(0), row.get::<String, _>(1)), ("email".into(), "sent".into()));
    assert_eq!((row.get::<Option<String>, _>(2), row.get::<i64, _>(3)), (Some("agent@x.test".into()), 1));
    assert_eq!((row.get::<Option<String>, _>(4), row.get::<Option<String>, _>(5)), (Some("Edited: our call on Tuesday".into()), Some("e".into())));
    let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    let thread = w.backend.thread(&w.agent, contact).await.unwrap();
    assert_eq!((thread.len(), thread[0].status.as_str(), thread[0].agent.as_deref()), (1, "sent", Some("agent@x.test")));
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_sends WHERE contact_id = $1 AND channel = 'email'")
        .bind(contact)
        .fetch_one(w.runtime.pool())
        .await
        .unwrap();
    assert_eq!(sends, 1, "a manual send counts in the contact's recent sends");
}

#[tokio::test]
async fn an_opted_out_contact_or_one_without_email_cannot_be_sent_to_and_pressure_only_warns() {
    let w = world().await;
    let flow = w.flow("Outreach", email_flow(), &["s->e", "e->after"]).await;
    let p = w.enroll(flow, json!({"email": "bo@example.test", "owner": "agent@x.test", "fields": {"first_name": "Bo"}})).await;
    let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    let send = EmailSend { participant: p, to: "bo@example.test".into(), subject: "Hi".into(), body: "<p>Hi</p>".into(), ..EmailSend::default() };

    // Opted out after the task was made.
    sqlx::query("UPDATE contacts SET opted_out = '[\"email\"]' WHERE id = $1").bind(contact).execute(w.runtime.pool()).await.unwrap();
    let work = w.backend.task(&w.agent, p).await.unwrap();
    assert_eq!(work.email_reach.blocked.as_deref(), Some("The contact opted out of email."));
    assert_eq!(text(w.backend.send_email(&w.agent, send.clone()).await.unwrap_err()), "Not sent. The contact opted out of email.");
    // No email address at all.
    sqlx::query("UPDATE contacts SET opted_out = '[]', email = NULL WHERE id = $1").bind(contact).execute(w.runtime.pool()).await.unwrap();
    assert_eq!(w.backend.task(&w.agent, p).await.unwrap().email_reach.blocked.as_deref(), Some("The contact has no email address."));
    assert!(text(w.backend.send_email(&w.agent, send.clone()).await.unwrap_err()).contains("The contact has no email address."));
    assert_eq!(w.status(p).await, "waiting", "nothing sent, the task still open");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(queued, 0);

    // A cap the contact has reached: the composer says which rule; the send goes and counts.
    sqlx::query("UPDATE contacts SET email = 'bo@example.test' WHERE id = $1").bind(contact).execute(w.runtime.pool()).await.unwrap();
    let mut conn = w.runtime.pool().acquire().await.unwrap();
    let policy: app::core::pressure::Policy =
        serde_json::from_value(json!({"caps": [{"channel": "email", "max": 1, "per": {"amount": 7, "unit": "days"}}]})).unwrap();
    server::runtime::pressure::save(&mut conn, &policy, "admin@x.test").await.unwrap();
    let earlier = server::runtime::millis(NOW.parse::<jiff::Timestamp>().unwrap() - SignedDuration::from_hours(24));
    sqlx::query("INSERT INTO contact_sends (contact_id, channel, at) VALUES ($1, 'email', $2)").bind(contact).bind(earlier).execute(&mut *conn).await.unwrap();
    drop(conn);
    let warning = w.backend.task(&w.agent, p).await.unwrap().email_reach.pressure.expect("a warning");
    assert!(warning.contains("cap of 1 email per 7 days") && warning.contains("goes anyway"), "{warning}");
    w.backend.send_email(&w.agent, send).await.unwrap();
    let sends: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_sends WHERE contact_id = $1").bind(contact).fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(sends, 2);
    assert_eq!(w.runtime.participant(p).await.unwrap().step.as_deref(), Some("after"));
}

fn voice(base_url: &str, callback: &str, inbound: &str) -> Value {
    json!({"sms": {"base_url": base_url, "account_sid": "AC123", "token": "tok", "senders": ["+12125550100", "+14155550100"],
                   "choice": "area_code", "inbound_url": inbound, "voice": {"status_callback": callback, "ring_secs": 25}}})
}

/// What the provider does: a form POST signed with the account's token over `url`.
async fn provider_post(url: &str, token: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let signature = server::channels::api::signature(token, url, &fields);
    let response = reqwest::Client::new().post(url).header("x-twilio-signature", signature).form(&fields).send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_text_from_the_workspace_goes_to_the_provider_and_the_reply_joins_the_thread() {
    let w = world().await;
    let provider = HttpServer::start("127.0.0.1").await;
    let addr = w.served().await;
    let inbound = format!("http://{addr}/api/v1/channels/sms/inbound");
    w.configure(voice(&provider.url(""), &format!("http://{addr}/api/v1/channels/calls/status"), &inbound)).await;
    let flow =
        w.flow("Calls", json!([{"id": "s", "kind": "start"}, {"id": "c", "kind": "call", "settings": {"script": "Hi {{first_name}}"}}]), &["s->c"]).await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234", "owner": "agent@x.test", "fields": {"first_name": "Cy"}})).await;
    let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();

    let work = w.backend.task(&w.agent, p).await.unwrap();
    assert_eq!((work.sms_reach.address.as_deref(), work.sms_reach.blocked.clone()), (Some("+14155551234"), None));
    assert_eq!(work.script.as_deref(), Some("Hi Cy"));
    assert!(text(w.backend.send_sms(&w.agent, p, "4155551234".into(), "Hi".into()).await.unwrap_err()).contains("is not a valid mobile number"));
    assert_eq!(text(w.backend.send_sms(&w.other, p, "+14155551234".into(), "Hi".into()).await.unwrap_err()), format!("There is no participant with id {p}."));
    let said = w.backend.send_sms(&w.agent, p, "+14155551234".into(), "Hi Cy, can we talk at 3? — Ana".into()).await.unwrap();
    assert_eq!(said, "Text to +14155551234 queued (1 segment).");
    w.dispatch().await;

    let arrival = provider.arrivals().into_iter().find(|a| a.path.ends_with("/Messages.json")).expect("the text reached the provider");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(arrival.body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!((field("To").as_str(), field("Body").as_str()), ("+14155551234", "Hi Cy, can we talk at 3? — Ana"));
    assert_eq!(w.status(p).await, "waiting", "a text does not close the call task");

    // The contact answers through the provider's inbound webhook.
    let (status, _) = provider_post(&inbound, "tok", &[("From", "+14155551234"), ("Body", "Yes, 3 works"), ("MessageSid", "SMreply1")]).await;
    assert_eq!(status, 200);
    let (status, _) = provider_post(&inbound, "not-the-token", &[("From", "+14155551234"), ("Body", "forged"), ("MessageSid", "SMx")]).await;
    assert_eq!(status, 403);
    let thread = w.backend.thread(&w.agent, contact).await.unwrap();
    let shape: Vec<(&str, &str, Option<&str>)> = thread.iter().map(|t| (t.channel.as_str(), t.direction.as_str(), t.body.as_deref())).collect();
    assert_eq!(shape, [("sms_in", "in", Some("Yes, 3 works")), ("sms", "out", Some("Hi Cy, can we talk at 3? — Ana"))], "newest first");
    assert_eq!(thread[1].status, "sent");
    assert_eq!(text(w.backend.thread(&w.other, contact).await.unwrap_err()), format!("There is no contact with id {contact}."));

    // Erasing the contact forgets the texts both ways.
    let mut tx = w.runtime.pool().begin().await.unwrap();
    contacts::erase(&mut tx, &format!("SELECT {contact}"), NOW).await.unwrap();
    tx.commit().await.unwrap();
    let words: Vec<Option<String>> =
        sqlx::query_scalar("SELECT body FROM conversations WHERE contact_id = $1").bind(contact).fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(words, [None, None]);
}

#[tokio::test]
async fn call_now_rings_the_agent_then_bridges_the_contact_and_status_reports_fill_the_record() {
    let w = world().await;
    let provider = HttpServer::start("127.0.0.1").await;
    let addr = w.served().await;
    let flow = w
        .flow(
            "Calls",
            json!([{"id": "s", "kind": "start"},
                   {"id": "c", "kind": "call", "settings": {"dispositions": {"Interested": "", "No answer": ""}}},
                   {"id": "after", "kind": "task", "settings": {"subject": "Next"}}]),
            &["s->c", "c->after"],
        )
        .await;
    let p = w.enroll(flow, json!({"mobile": "+14155551234", "owner": "agent@x.test"})).await;

    // Without a provider: a tel: link, and Call now says why not.
    let work = w.backend.task(&w.agent, p).await.unwrap();
    assert!(!work.provider);
    assert_eq!(work.call_reach.address.as_deref(), Some("+14155551234"));
    assert_eq!(work.dispositions, ["Interested", "No answer"]);
    w.configure(voice(&provider.url(""), &format!("http://{addr}/api/v1/channels/calls/status"), "")).await;
    assert!(text(w.backend.place_call(&w.agent, p).await.unwrap_err()).contains("Add your own phone number first"));
    assert!(text(w.backend.save_phone(&w.agent, "555-1234".into()).await.unwrap_err()).contains("not a phone number in E.164 form"));
    assert_eq!(w.backend.save_phone(&w.agent, "+1 (212) 555-0199".into()).await.unwrap().as_deref(), Some("+12125550199"));
    let work = w.backend.task(&w.agent, p).await.unwrap();
    assert!(work.provider);
    assert_eq!(work.agent_phone.as_deref(), Some("+12125550199"));

    let call = w.backend.place_call(&w.agent, p).await.unwrap();
    assert_eq!(call.status, "queued");
    let arrivals = provider.arrivals();
    assert_eq!(arrivals.len(), 1);
    assert_eq!(arrivals[0].path, "/2010-04-01/Accounts/AC123/Calls.json");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(arrivals[0].body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(field("To"), ["+12125550199"], "the agent's phone rings first");
    assert_eq!(field("From"), ["+14155550100"]);
    let callback = format!("http://{addr}/api/v1/workspace/calls/status");
    let dial = format!(
        "<Response><Dial callerId=\"+14155550100\"><Number statusCallback=\"{callback}\" statusCallbackMethod=\"POST\" \
         statusCallbackEvent=\"initiated ringing answered completed\">+14155551234</Number></Dial></Response>"
    );
    assert_eq!(field("Twiml"), [dial.as_str()], "then the contact, whose leg reports too");
    assert_eq!(field("StatusCallback"), [callback.as_str()]);
    assert_eq!(field("StatusCallbackEvent"), ["initiated", "ringing", "answered", "completed"]);
    let sid: String = sqlx::query_scalar("SELECT provider_id FROM conversations WHERE id = $1").bind(call.id).fetch_one(w.runtime.pool()).await.unwrap();

    let report = |status: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let (callback, sid) = (callback.clone(), sid.clone());
        async move {
            let mut fields = vec![("AccountSid", "AC123"), ("CallSid", sid.as_str()), ("CallStatus", status)];
            fields.extend(extra);
            provider_post(&callback, "tok", &fields).await
        }
    };
    assert_eq!(report("ringing", vec![]).await.0, 200);
    assert_eq!(w.backend.call(&w.agent, call.id).await.unwrap().status, "ringing");
    assert_eq!(report("in-progress", vec![]).await.0, 200);
    let answered = w.backend.call(&w.agent, call.id).await.unwrap();
    assert!(answered.answered_at.is_some() && answered.ended_at.is_none());
    let forged = provider_post(&callback, "nope", &[("CallSid", sid.as_str()), ("CallStatus", "failed")]).await;
    assert_eq!(forged.0, 403);
    // The contact's leg, dialled once the agent answered, reports with the agent's call as its parent.
    let leg = |status: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let (callback, sid) = (callback.clone(), sid.clone());
        async move {
            let mut fields = vec![("AccountSid", "AC123"), ("CallSid", "CAcontactleg"), ("ParentCallSid", sid.as_str()), ("CallStatus", status)];
            fields.extend(extra);
            provider_post(&callback, "tok", &fields).await
        }
    };
    assert!(answered.contact_leg.is_none(), "no contact leg before it is dialled");
    assert_eq!(leg("ringing", vec![]).await.0, 200);
    let ringing = w.backend.call(&w.agent, call.id).await.unwrap().contact_leg.expect("the contact's leg");
    assert_eq!((ringing.status.as_str(), ringing.answered_at.is_none()), ("ringing", true));
    assert!(ringing.started_at.is_some());
    assert_eq!(leg("in-progress", vec![]).await.0, 200);
    assert_eq!(leg("ringing", vec![]).await.0, 200, "a late report is taken, and changes nothing");
    let talking = w.backend.call(&w.agent, call.id).await.unwrap().contact_leg.unwrap();
    assert_eq!(talking.status, "in-progress");
    assert!(talking.answered_at.is_some() && talking.ended_at.is_none());
    assert_eq!(leg("completed", vec![("CallDuration", "37")]).await.0, 200);
    let forged = provider_post(&callback, "nope", &[("CallSid", "CAcontactleg"), ("ParentCallSid", sid.as_str()), ("CallStatus", "failed")]).await;
    assert_eq!(forged.0, 403);
    let stranger = provider_post(&callback, "tok", &[("CallSid", "CAx"), ("ParentCallSid", "CAnotours"), ("CallStatus", "completed")]).await;
    assert_eq!(stranger.0, 404);
    assert_eq!(report("completed", vec![("CallDuration", "42")]).await.0, 200);
    let over = w.backend.call(&w.agent, call.id).await.unwrap();
    let contact_leg = over.contact_leg.clone().unwrap();
    assert_eq!((contact_leg.status.as_str(), contact_leg.duration_secs), ("completed", Some(37)), "the contact talked 37 s of the agent's 42");
    assert_eq!((contact_leg.started_at, contact_leg.answered_at), (ringing.started_at, talking.answered_at));
    assert!(contact_leg.ended_at.is_some());
    let contact: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    let thread = w.backend.thread(&w.agent, contact).await.unwrap();
    assert_eq!(thread[0].contact_leg.as_ref().and_then(|l| l.duration_secs), Some(37), "the thread shows the contact's leg");
    assert_eq!((over.status.as_str(), over.duration_secs), ("completed", Some(42)));
    assert!(over.over() && over.ended_at.is_some() && over.answered_at == answered.answered_at);
    assert_eq!(text(w.backend.call(&w.other, call.id).await.unwrap_err()), format!("There is no call with id {}.", call.id));
    assert_eq!(w.status(p).await, "waiting", "the agent's disposition closes the task, not the provider");

    // The disposition from the step's list, with notes.
    let refused = w.backend.finish(&w.agent, p, "completed".into(), Some("Maybe".into()), None, None).await.unwrap_err();
    assert!(text(refused).contains("“Maybe” is not one of this step's dispositions: Interested, No answer."));
    w.backend.finish(&w.agent, p, "completed".into(), Some("interested".into()), Some("Wants a demo Friday".into()), None).await.unwrap();
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!(timeline[1].outcome, app::core::engine::Outcome::Completed);
    assert!(timeline[1].reason.as_deref().unwrap().starts_with("disposition: Interested"), "{:?}", timeline[1].reason);
    let notes: Option<String> = sqlx::query_scalar("SELECT notes FROM conversations WHERE id = $1").bind(call.id).fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(notes.as_deref(), Some("Wants a demo Friday"));
    assert_eq!(w.runtime.participant(p).await.unwrap().step.as_deref(), Some("after"));
}

#[tokio::test]
async fn the_queue_puts_open_calls_first_then_emails_then_tasks_and_holds_closed_calls_last() {
    let w = world().await;
    let calls = w.flow("Calls", json!([{"id": "s", "kind": "start"}, {"id": "c", "kind": "call"}]), &["s->c"]).await;
    let emails = w.flow("Emails", email_flow(), &["s->e", "e->after"]).await;
    let tasks = w.flow("Tasks", json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "task", "settings": {"subject": "Research"}}]), &["s->t"]).await;
    let task = w.enroll(tasks, json!({"email": "t@example.test", "owner": "agent@x.test"})).await;
    let email = w.enroll(emails, json!({"email": "e@example.test", "owner": "agent@x.test", "fields": {"first_name": "E"}})).await;
    // 23:00 in Tokyo: closed; 09:00 in New York: open.
    let closed = w.enroll(calls, json!({"mobile": "+81312345678", "owner": "agent@x.test", "timezone": "Asia/Tokyo"})).await;
    let open = w.enroll(calls, json!({"mobile": "+12125551111", "owner": "agent@x.test", "timezone": "America/New_York"})).await;
    // Another agent's, and a task with no owner (until the flow names a default one).
    w.enroll(calls, json!({"mobile": "+12125552222", "owner": "other@x.test", "timezone": "America/New_York"})).await;
    let unowned = w.enroll(tasks, json!({"email": "u@example.test"})).await;

    let queue = w.backend.queue(&w.agent).await.unwrap();
    let order: Vec<(i64, &str)> = queue.iter().map(|e| (e.participant_id, e.group.as_str())).collect();
    assert_eq!(order, [(open, "call"), (email, "email"), (task, "task"), (closed, "later")]);
    assert!(queue[3].why.contains("outside business hours in Asia/Tokyo"), "{}", queue[3].why);
    assert_eq!(text(w.backend.task(&w.agent, unowned).await.unwrap_err()), format!("There is no participant with id {unowned}."));

    // A flow-level default owner joins the step-level one.
    w.backend.set_flow_owner(&w.other, tasks, Some("agent@x.test".into())).await.unwrap();
    let queue = w.backend.queue(&w.agent).await.unwrap();
    assert!(queue.iter().any(|e| e.participant_id == unowned && e.owner.as_deref() == Some("agent@x.test")));
    assert!(!w.backend.queue(&w.other).await.unwrap().iter().any(|e| e.participant_id == unowned));
    w.backend.finish(&w.agent, unowned, "skipped".into(), None, None, None).await.unwrap();
    w.backend.finish(&w.agent, task, "deferred".into(), None, None, Some("2026-11-30T09:00:00Z".into())).await.unwrap();
    let left: Vec<i64> = w.backend.queue(&w.agent).await.unwrap().iter().map(|e| e.participant_id).collect();
    assert_eq!(left, [open, email, closed], "done and deferred tasks leave the day's queue");
}

#[tokio::test]
async fn templates_are_kept_by_marketers_and_sanitised() {
    let w = world().await;
    let marketer = Viewer { role: Role::Marketer, ..w.agent.clone() };
    let saved = w
        .backend
        .save_template(
            &marketer,
            app::workspace_api::Template {
                id: 0,
                name: "Follow-up".into(),
                channel: "email".into(),
                subject: Some("Following up".into()),
                body: "<p onclick=\"x()\">Hi</p><script>bad()</script>".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(saved.body, "<p>Hi</p>");
    let taken = app::workspace_api::Template { id: 0, ..saved.clone() };
    assert!(w.backend.save_template(&marketer, taken).await.is_err(), "one name per channel");
    let sms = app::workspace_api::Template { id: 0, name: "Nudge".into(), channel: "sms".into(), subject: None, body: "Still interested?".into() };
    w.backend.save_template(&marketer, sms).await.unwrap();
    let names: Vec<String> = w.backend.templates(Some("email".into())).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["Follow-up"]);
    assert_eq!(w.backend.templates(None).await.unwrap().len(), 2);
    w.backend.delete_template(&marketer, saved.id).await.unwrap();
    assert_eq!(w.backend.templates(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_send_completes_the_step_and_queues_the_email_in_one_transaction() {
    let w = world().await;
    let flow = w.flow("Outreach", email_flow(), &["s->e", "e->after"]).await;
    let p = w.enroll(flow, json!({"email": "ada@example.test", "owner": "agent@x.test", "fields": {"first_name": "Ada"}})).await;
    let pool = w.runtime.pool();
    let visit: i64 =
        sqlx::query_scalar("SELECT visit FROM participant_actions WHERE participant_id = $1 AND step = 'e'").bind(p).fetch_one(pool).await.unwrap();
    let key = format!("{p}:e:{visit}:manual");
    // Something already holds the key the send's outbox entry takes: that insert fails.
    sqlx::query(
        "INSERT INTO outbox (participant_id, step, visit, idempotency_key, kind, effect, awaited, status, next_attempt_at, created_at)
         VALUES ($1, 'elsewhere', 0, $2, 'email', '{}', 0, 'failed', 0, $3)",
    )
    .bind(p)
    .bind(&key)
    .bind(NOW)
    .execute(pool)
    .await
    .unwrap();
    let send = EmailSend {
        participant: p,
        to: "ada@example.test".into(),
        subject: "Hi".into(),
        body: "<p>Hi</p>".into(),
        disposition: Some("sent".into()),
        ..EmailSend::default()
    };
    assert!(w.backend.send_email(&w.agent, send.clone()).await.is_err());
    // The step is still open, and nothing of the send was kept.
    let view = w.runtime.participant(p).await.unwrap();
    assert_eq!((view.status.as_str(), view.step.as_deref()), ("waiting", Some("e")));
    assert_eq!(w.runtime.timeline(p).await.unwrap()[1].outcome, app::core::engine::Outcome::Pending);
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).bind(p).fetch_one(pool).await.unwrap() };
    assert_eq!(count("SELECT count(*) FROM conversations WHERE participant_id = $1").await, 0);
    assert_eq!(count("SELECT count(*) FROM outbox WHERE participant_id = $1 AND status = 'queued'").await, 0);
    assert_eq!(count("SELECT count(*) FROM contact_sends WHERE contact_id = (SELECT contact_id FROM participants WHERE id = $1)").await, 0);
    assert!(w.backend.queue(&w.agent).await.unwrap().iter().any(|e| e.participant_id == p), "still in the agent's queue");

    // With the key free, the same send completes the step with its disposition and queues one email.
    sqlx::query("DELETE FROM outbox WHERE idempotency_key = $1").bind(&key).execute(pool).await.unwrap();
    w.backend.send_email(&w.agent, send).await.unwrap();
    let timeline = w.runtime.timeline(p).await.unwrap();
    assert_eq!((timeline[1].outcome, timeline[1].reason.as_deref()), (app::core::engine::Outcome::Completed, Some("disposition: sent")));
    assert_eq!(count("SELECT count(*) FROM outbox WHERE participant_id = $1 AND kind = 'email' AND status = 'queued'").await, 1);
    assert_eq!(count("SELECT count(*) FROM conversations WHERE participant_id = $1 AND channel = 'email'").await, 1);
    assert_eq!(w.runtime.participant(p).await.unwrap().step.as_deref(), Some("after"));
}

/// Signs `email` in over HTTP; the session cookie (`waymark_session=…`).
async fn session(addr: std::net::SocketAddr, email: &str) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = format!("email={}&password=a+long+enough+password&next=%2F", email.replace('@', "%40"));
    let reply = client
        .post(format!("http://{addr}/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 303, "signed in");
    reply.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// A request with a session, as our own pages send it; status, content type, body.
async fn api(addr: std::net::SocketAddr, cookie: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("http://{addr}/api/v1{path}")).header("cookie", cookie).header("sec-fetch-site", "same-origin");
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let reply = request.send().await.unwrap();
    let kind = reply.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (reply.status().as_u16(), kind, serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_flow_default_owner_owns_steps_that_name_nobody_in_the_inbox_the_participant_page_and_the_workspace() {
    use app::runtime_api::RuntimeBackend;
    let w = world().await;
    let addr = w.served().await;
    let tasks = w.flow("Tasks", json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "task", "settings": {"subject": "Research"}}]), &["s->t"]).await;
    // Neither the step nor the contact names an owner.
    let p = w.enroll(tasks, json!({"email": "u@example.test"})).await;
    let in_inbox = |list: Vec<app::runtime_api::Task>| list.iter().any(|t| t.participant_id == p);
    assert!(!in_inbox(w.runtime.tasks(Some("agent@x.test".into())).await.unwrap()));
    let marketer = Viewer { role: Role::Marketer, ..w.other.clone() };
    w.backend.set_flow_owner(&marketer, tasks, Some("agent@x.test".into())).await.unwrap();

    // The inbox list and the owner filter.
    let inbox = w.runtime.tasks(Some("AGENT@x.test".into())).await.unwrap();
    assert!(inbox.iter().any(|t| t.participant_id == p && t.owner.as_deref() == Some("agent@x.test")), "{inbox:?}");
    assert!(!in_inbox(w.runtime.tasks(Some("other@x.test".into())).await.unwrap()));
    assert!(w.runtime.task_owners().await.unwrap().contains(&"agent@x.test".to_owned()));
    // The ownership check every participant route and page makes.
    server::runtime_api::check_participant_owner(w.runtime.pool(), &w.agent, p).await.unwrap();
    assert_eq!(server::runtime_api::check_participant_owner(w.runtime.pool(), &w.other, p).await.unwrap_err().code(), "participant_not_found");

    // Over HTTP, as each agent: the owner sees and acts; the other is refused with a problem.
    let (agent, other) = (session(addr, "agent@x.test").await, session(addr, "other@x.test").await);
    let (status, _, tasks_seen) = api(addr, &agent, reqwest::Method::GET, "/tasks", None).await;
    assert_eq!(status, 200);
    assert!(tasks_seen.as_array().unwrap().iter().any(|t| t["participant_id"] == p), "{tasks_seen}");
    let (status, _, others_seen) = api(addr, &other, reqwest::Method::GET, "/tasks", None).await;
    assert_eq!((status, others_seen.as_array().unwrap().iter().any(|t| t["participant_id"] == p)), (200, false));
    assert_eq!(api(addr, &agent, reqwest::Method::GET, &format!("/participants/{p}"), None).await.0, 200);
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/participants/{p}"), None),
        (reqwest::Method::GET, format!("/participants/{p}/timeline"), None),
        (reqwest::Method::POST, format!("/participants/{p}/action"), Some(json!({"outcome": "completed"}))),
    ] {
        let (status, kind, problem) = api(addr, &other, method, &path, body).await;
        assert_eq!((status, kind.as_str(), problem["code"].as_str()), (404, "application/problem+json", Some("participant_not_found")), "{path}");
    }
    assert_eq!(w.status(p).await, "waiting", "the other agent changed nothing");
    // The workspace: the other agent cannot open or finish it; its owner does.
    assert!(w.backend.task(&w.other, p).await.is_err());
    assert!(w.backend.finish(&w.other, p, "completed".into(), None, None, None).await.is_err());
    assert_eq!(w.backend.task(&w.agent, p).await.unwrap().task.owner.as_deref(), Some("agent@x.test"));
    let (status, _, _) = api(addr, &agent, reqwest::Method::POST, &format!("/participants/{p}/action"), Some(json!({"outcome": "completed"}))).await;
    assert_eq!(status, 200);
    assert_eq!(w.status(p).await, "completed");
}

/// Markup that would run if a page put it into its DOM as markup.
const LIVE: [&str; 9] = [
    "<script>alert",
    "<img src=x onerror",
    "<img src=\"x\" onerror",
    "<svg onload",
    "href=\"javascript:",
    "src=\"javascript:",
    "onclick=alert",
    "<iframe src",
    "expression(",
];

#[tokio::test]
async fn markup_in_every_field_is_shown_as_text_on_the_workspace_and_templates_pages() {
    let w = world().await;
    let addr = w.served().await;
    let marketer_user = server::auth::accounts::add_user(w.runtime.pool(), "m@x.test", "M", Role::Marketer, "a long enough password").await.unwrap();
    let marketer = Viewer { id: marketer_user.id, email: "m@x.test".into(), name: "M".into(), role: Role::Marketer, token: false };
    let steps = json!([{"id": "s", "kind": "start"},
        {"id": "e", "kind": "send_email", "name": "Step \"><script>alert(1)</script>", "settings": {"activation": "manual",
            "subject": "<img src=x onerror=alert(2)> {{first_name}}",
            "body": "<p>Hi {{first_name}}</p><script>alert(3)</script><a href=\"javascript:alert(4)\">x</a><a href=\"jav&#x61;script:alert(5)\">y</a>\
                     <p style=\"width:expression(alert(6))\" onclick=alert(7)>z</p><iframe src=\"https://x.test\"></iframe>",
            "dispositions": {"\"><script>alert(8)</script>": ""}}},
        {"id": "after", "kind": "task", "settings": {"subject": "Next"}}]);
    let flow = w.flow("Flow \"><script>alert(9)</script>", steps, &["s->e", "e->after"]).await;
    let p = w
        .enroll(
            flow,
            json!({"email": "ada@example.test", "mobile": "+14155551234", "owner": "agent@x.test", "timezone": "Europe/Paris",
            "fields": {"first_name": "<img src=x onerror=alert(10)>", "company": "\"><svg onload=alert(11)>", "site": "javascript:alert(12)"}}),
        )
        .await;
    let template = app::workspace_api::Template {
        id: 0,
        name: "<img src=x onerror=alert(13)>".into(),
        channel: "email".into(),
        subject: Some("\"><script>alert(14)</script>".into()),
        body: "<p onclick=alert(15)>t</p><img src=x onerror=alert(16)><a href=\"&#106;avascript:alert(17)\">l</a>".into(),
    };
    let saved = w.backend.save_template(&marketer, template).await.unwrap();
    assert_eq!(saved.body, "<p>t</p><img src=\"x\"><a rel=\"noopener noreferrer\">l</a>");
    let sms = app::workspace_api::Template {
        id: 0,
        name: "\"><script>alert(18)</script>".into(),
        channel: "sms".into(),
        subject: None,
        body: "<script>alert(19)</script>".into(),
    };
    w.backend.save_template(&marketer, sms).await.unwrap();
    // A text and a note in the contact's thread.
    w.backend.send_sms(&w.agent, p, "+14155551234".into(), "<script>alert(20)</script>".into()).await.unwrap();

    // What the agent's editor is given is sanitised: it goes into the page's DOM.
    let work = w.backend.task(&w.agent, p).await.unwrap();
    let draft = work.email.unwrap();
    assert_eq!(draft.body, "<p>Hi &lt;img src=x onerror=alert(10)&gt;</p><a rel=\"noopener noreferrer\">x</a><a rel=\"noopener noreferrer\">y</a><p>z</p>");
    for template in w.backend.templates(None).await.unwrap().iter().filter(|t| t.channel == "email") {
        assert!(LIVE.iter().all(|live| !template.body.contains(live)), "{}", template.body);
    }
    // A flow's default owner is one email address.
    let refused = w.backend.set_flow_owner(&marketer, flow, Some("\"><script>alert(21)</script>".into())).await.unwrap_err();
    assert!(text(refused).contains("is not an email address"));

    // The pages as served: every field is there, as text.
    let page = |cookie: String, path: String| async move {
        let reply = reqwest::Client::new().get(format!("http://{addr}{path}")).header("cookie", cookie).send().await.unwrap();
        assert_eq!(reply.status().as_u16(), 200, "{path}");
        reply.text().await.unwrap()
    };
    let agent = session(addr, "agent@x.test").await;
    let workspace = page(agent, format!("/workspace/{p}")).await;
    let templates = page(session(addr, "m@x.test").await, "/templates".into()).await;
    for (name, html) in [("workspace", &workspace), ("templates", &templates)] {
        for live in LIVE {
            assert!(!html.contains(live), "{name} page has live markup {live:?}: …{}…", around(html, live));
        }
    }
    for shown in ["alert(2)", "alert(8)", "alert(9)", "alert(10)", "alert(11)", "alert(12)", "alert(20)"] {
        assert!(workspace.contains(shown), "the workspace shows {shown}, escaped");
    }
    for shown in ["alert(13)", "alert(14)", "alert(18)", "alert(19)"] {
        assert!(templates.contains(shown), "the templates page shows {shown}, escaped");
    }
}

fn around<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html.find(needle).unwrap_or(0);
    (0..4).find_map(|slack| html.get(at.saturating_sub(120 + slack)..(at + 120 + slack).min(html.len()))).unwrap_or("")
}
