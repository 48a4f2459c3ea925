//! The engagement loop end to end, over real components: a flow sends an
//! email through a real SMTP server (aiosmtpd); the test reads the message
//! as it arrived, checks its List-Unsubscribe headers and its DKIM
//! signature (with dkimpy, an independent verifier, given the DNS record
//! the settings page shows), then acts as the recipient's mail client over
//! real HTTP against the whole app on a loopback port: loads the pixel,
//! follows a link, posts the one-click unsubscribe. Each reaches the
//! conversation record, the contact and a participant waiting on it. The
//! SMS STOP and START keywords come through the signed inbound webhook.
//! SQLite, or PostgreSQL with WAYMARK_TEST_POSTGRES.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use jiff::SignedDuration;
use serde_json::{json, Value};
use sqlx::Row;

use app::core::contact::Contact;
use server::channels::settings;
use server::channels::tracking::Token;
use server::channels::Channels;
use server::runtime::outbox::{Dispatcher, RetryPolicy};
use server::runtime::{contacts, ManualClock, Runtime};
use server::secrets::{self, Keyring};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};
use support::SmtpSink;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

struct World {
    store: Store,
    runtime: Runtime,
    /// `http://127.0.0.1:PORT`: the app, served.
    base: String,
    http: reqwest::Client,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let pool = store::connect(&db.url).await.unwrap();
    secrets::use_keyring(&pool, Keyring::generate());
    let clock = ManualClock::new("2026-11-23T09:00:00Z".parse().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let runtime = Runtime::new(pool.clone(), clock, "worker").with_public_url(base.clone());
    let store = Store::new(pool);
    let state = AppState::new(leptos_options(addr), store.clone(), runtime.clone());
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    World { store, runtime, base, http, _db: db, _dir: dir }
}

impl World {
    async fn configure(&self, body: Value) {
        settings::update(self.runtime.pool(), body.as_object().unwrap().clone()).await.unwrap();
    }

    async fn contact(&self, contact: Value) -> i64 {
        let contact: Contact = serde_json::from_value(contact).unwrap();
        let mut tx = self.runtime.pool().begin().await.unwrap();
        let id = contacts::insert(&mut tx, &contact).await.unwrap();
        tx.commit().await.unwrap();
        id
    }

    /// Sends what is due through the real channels, and lets participants move on.
    async fn dispatch(&self) {
        let policy = RetryPolicy { base: SignedDuration::from_secs(30), cap: SignedDuration::from_hours(1), max_tries: 2 };
        let channels = Channels::new(self.runtime.pool().clone()).with_public_url(self.base.clone());
        Dispatcher::new(self.runtime.clone(), Arc::new(channels)).with_policy(policy).dispatch().await.unwrap();
        self.runtime.run_until_idle().await.unwrap();
    }

    async fn step(&self, participant: i64) -> (String, Option<String>) {
        let view = self.runtime.participant(participant).await.unwrap();
        (view.status, view.step)
    }

    async fn opted_out(&self, contact: i64) -> Vec<String> {
        let mut conn = self.runtime.pool().acquire().await.unwrap();
        contacts::load(&mut conn, contact).await.unwrap().opted_out.into_iter().collect()
    }

    /// An admin's browser session: (cookie header, origin).
    async fn admin(&self) -> String {
        let pool = self.store.pool();
        let admin = server::auth::accounts::add_user(pool, "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password").await.unwrap();
        format!("waymark_session={}", server::auth::accounts::open_session(pool, admin.id).await.unwrap())
    }

    async fn api(&self, cookie: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("cookie", cookie).header("origin", &self.base);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), json_of(response).await)
    }

    async fn get(&self, url: &str, agent: &str) -> reqwest::Response {
        self.http.get(url).header("user-agent", agent).send().await.unwrap()
    }

    async fn conversation(&self, id: i64) -> sqlx::any::AnyRow {
        sqlx::query(
            "SELECT step, tracked, opened_at, open_count, machine_open_count, clicked_at, click_count, machine_click_count, unsubscribed_at
             FROM conversations WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.runtime.pool())
        .await
        .unwrap()
    }

    async fn events(&self, contact: i64) -> Vec<(String, i64, String)> {
        sqlx::query_as("SELECT kind, machine, source FROM contact_events WHERE contact_id = $1 ORDER BY id")
            .bind(contact)
            .fetch_all(self.runtime.pool())
            .await
            .unwrap()
    }
}

/// `text` with its last character changed to another hex digit.
fn flipped(text: &str) -> String {
    let (head, last) = text.split_at(text.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null)
}

fn smtp_settings(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port, "tls": "none", "from": "Shop <news@shop.test>", "timeout_secs": 5})
}

/// `<https://…>, <mailto:…>` as its two addresses.
fn list_unsubscribe(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split(',').map(|p| p.trim().trim_start_matches('<').trim_end_matches('>')).collect();
    assert_eq!(parts.len(), 2, "{value}");
    (parts[0].to_owned(), parts[1].to_owned())
}

fn html_part(message: &Value) -> String {
    let parts = message["parts"].as_array().unwrap();
    parts.iter().find(|p| p["content_type"] == "text/html").unwrap()["text"].as_str().unwrap().to_owned()
}

/// start → e1 (email) → w1 (until opened) → w2 (until the sale link is clicked)
/// → w3 (until unsubscribed) → done; each wait times out after 3 days to `late`.
async fn publish_flow(w: &World, settings: Value) -> i64 {
    let wait = |until: Value| json!({"until": [until], "timeout": {"amount": 3, "unit": "days"}});
    let body = "<html><body><h1>Hello {{ first_name }}</h1>\
        <p><a href=\"https://shop.test/sale?src=mail&amp;c=1\">The sale</a> · <a href=\"https://shop.test/help\">Help</a></p>\
        <p><a href=\"mailto:help@shop.test\">Write to us</a> · <a data-waymark-notrack href=\"https://shop.test/private\">Your account</a></p>\
        <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe or change what you get</a></p></body></html>";
    let doc = json!({"format": "waymark.flow/v1", "name": "Sale", "settings": settings,
        "steps": [
            {"id": "s", "kind": "start"},
            {"id": "e1", "kind": "send_email", "settings": {"subject": "The sale, {{ first_name }}", "body": body}},
            {"id": "w1", "kind": "wait_until", "settings": wait(json!({"event": "email_opened", "step": "e1"}))},
            {"id": "w2", "kind": "wait_until", "settings": wait(json!({"event": "link_clicked", "step": "e1", "url_contains": "sale"}))},
            {"id": "w3", "kind": "wait_until", "settings": wait(json!({"event": "unsubscribed"}))},
            {"id": "done", "kind": "task", "settings": {"subject": "Unsubscribed after buying"}},
            {"id": "late", "kind": "exit"}],
        "edges": [
            {"from": "s", "port": "next", "to": "e1"}, {"from": "e1", "port": "next", "to": "w1"},
            {"from": "w1", "port": "met", "to": "w2"}, {"from": "w1", "port": "timed_out", "to": "late"},
            {"from": "w2", "port": "met", "to": "w3"}, {"from": "w2", "port": "timed_out", "to": "late"},
            {"from": "w3", "port": "met", "to": "done"}, {"from": "w3", "port": "timed_out", "to": "late"}]});
    let doc = app::core::FlowDocument::from_value(&doc).unwrap();
    let flow = w.store.create(&format!("Sale {}", settings), Some(doc)).await.unwrap();
    w.store.publish(flow.id, None, "test").await.unwrap();
    flow.id
}

#[tokio::test]
async fn an_email_is_signed_tracked_and_unsubscribed_in_one_click_and_the_flow_hears_each() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    // A click moments after sending is a scanner's: this test clicks at once, as a person.
    w.configure(json!({"smtp": smtp_settings(smtp.port), "tracking": {"scanner_secs": 0}})).await;
    let admin = w.admin().await;
    let (status, dkim) =
        w.api(&admin, reqwest::Method::POST, "/api/v1/settings/dkim/key", Some(json!({"algorithm": "rsa-sha256", "domain": "shop.test", "selector": "s2026"}))).await;
    assert_eq!(status, 200, "{dkim}");
    let record = &dkim["dns_record"];
    assert_eq!((record["type"].as_str(), record["name"].as_str()), (Some("TXT"), Some("s2026._domainkey.shop.test")), "{dkim}");
    let record_value = record["value"].as_str().unwrap().to_owned();
    assert!(record_value.starts_with("v=DKIM1; k=rsa; p=MIIB"), "{record_value}");
    assert_eq!(dkim["private_key_set"], true);
    assert!(!dkim.to_string().contains("PRIVATE KEY"), "the key never leaves the server: {dkim}");

    let flow = publish_flow(&w, json!({})).await;
    let contact = w.contact(json!({"email": "ada@example.test", "fields": {"first_name": "Ada"}})).await;
    let p = w.runtime.enroll(flow, &[contact]).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    w.dispatch().await;
    assert_eq!(w.step(p).await, ("waiting".into(), Some("w1".into())));

    // The message as it arrived.
    let message = &smtp.wait_for(1)[0];
    let headers = &message["headers"];
    let (https, mailto) = list_unsubscribe(headers["list-unsubscribe"].as_str().unwrap());
    assert_eq!(headers["list-unsubscribe-post"], "List-Unsubscribe=One-Click");
    assert!(https.starts_with(&format!("{}/u/", w.base)), "{https}");
    assert!(mailto.starts_with("mailto:unsubscribe+") && mailto.ends_with("@shop.test?subject=unsubscribe"), "{mailto}");
    let signature = headers["dkim-signature"].as_str().unwrap();
    assert!(signature.contains("d=shop.test") && signature.contains("s=s2026") && signature.contains("c=relaxed/relaxed"), "{signature}");
    let signed: String = signature.split(';').find(|t| t.trim().starts_with("h=")).unwrap().split_whitespace().collect();
    assert!(signed.contains("list-unsubscribe:list-unsubscribe-post"), "RFC 8058: both headers signed: {signed}");
    let (verified, said) = support::dkim_verify(&smtp.raw(1), "s2026._domainkey.shop.test", &record_value);
    assert!(verified, "dkimpy verifies the signature with the published record: {said}");
    // A changed byte in the body is caught by the same verifier.
    let tampered = String::from_utf8(smtp.raw(1)).unwrap().replacen("The sale", "The SALE", 1);
    assert!(!support::dkim_verify(tampered.as_bytes(), "s2026._domainkey.shop.test", &record_value).0);

    // Its links and pixel, as a mail client reads them.
    let html = html_part(message);
    let doc = scraper::Html::parse_document(&html);
    let select = |css: &str| doc.select(&scraper::Selector::parse(css).unwrap()).map(|e| e.value().attr(if css.starts_with("img") { "src" } else { "href" }).unwrap().to_owned()).collect::<Vec<_>>();
    let hrefs = select("a");
    assert_eq!(hrefs.len(), 5);
    assert!(hrefs[0].starts_with(&format!("{}/t/c/", w.base)) && hrefs[1].starts_with(&format!("{}/t/c/", w.base)), "{hrefs:?}");
    assert_eq!(&hrefs[2..], ["mailto:help@shop.test", "https://shop.test/private", https.as_str()], "mailto, notrack and the unsubscribe link stay");
    let pixels = select("img");
    assert_eq!(pixels.len(), 1);
    let pixel = &pixels[0];
    assert!(pixel.starts_with(&format!("{}/t/o/", w.base)));
    let conversation: i64 = sqlx::query_scalar("SELECT id FROM conversations WHERE participant_id = $1").bind(p).fetch_one(w.runtime.pool()).await.unwrap();
    let record = w.conversation(conversation).await;
    assert_eq!((record.get::<Option<String>, _>("step").as_deref(), record.get::<i64, _>("tracked")), (Some("e1"), 1));

    // A changed token, or one that names nothing, is an unknown page: the same answer as any.
    let unknown = w.get(&format!("{}/t/o/nothing-here", w.base), FIREFOX).await;
    let (unknown_status, unknown_body) = (unknown.status(), unknown.text().await.unwrap());
    let (start, rest) = pixel.split_at(pixel.len() - 20);
    let in_the_mac = format!("{}{}", flipped(&rest[..1]), &rest[1..]);
    for changed in [flipped(pixel), format!("{start}{in_the_mac}"), pixel.to_uppercase().replace("HTTP://", "http://"), format!("{pixel}00")] {
        let reply = w.get(&changed, FIREFOX).await;
        assert_eq!(reply.status(), 404, "{changed}");
        assert_eq!((reply.status(), reply.text().await.unwrap()), (unknown_status, unknown_body.clone()));
    }
    let click_zero = &hrefs[0];
    assert_eq!(w.get(&flipped(click_zero), FIREFOX).await.status(), 404);

    // The pixel, loaded by Gmail's image proxy first (a machine), then by a person.
    let proxy = w.get(pixel, "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)").await;
    assert_eq!(proxy.status(), 200);
    w.runtime.deliver_all_events().await.unwrap();
    assert_eq!(w.step(p).await.1.as_deref(), Some("w1"), "a proxy's open does not meet the wait");
    let open = w.get(pixel, FIREFOX).await;
    assert_eq!(open.status(), 200);
    let headers = open.headers().clone();
    assert_eq!(headers["content-type"], "image/gif");
    assert!(headers["cache-control"].to_str().unwrap().contains("no-store"));
    assert!(headers.get("set-cookie").is_none(), "tracking never sets a cookie");
    let gif = open.bytes().await.unwrap();
    assert_eq!((gif.len(), &gif[..6]), (43, &b"GIF89a"[..]));
    let record = w.conversation(conversation).await;
    assert!(record.get::<Option<String>, _>("opened_at").is_some());
    assert_eq!((record.get::<i64, _>("open_count"), record.get::<i64, _>("machine_open_count")), (1, 1));
    w.runtime.deliver_all_events().await.unwrap();
    assert_eq!(w.step(p).await, ("waiting".into(), Some("w2".into())), "the open met the wait");

    // A link: only the message's own, whatever else the request carries.
    let click = w.get(&format!("{click_zero}?url=https://evil.test/"), FIREFOX).await;
    assert_eq!(click.status(), 302);
    assert_eq!(click.headers()["location"], "https://shop.test/sale?src=mail&c=1");
    assert_eq!(click.headers()["referrer-policy"], "no-referrer");
    assert!(click.headers().get("set-cookie").is_none());
    // A correctly signed token for a link the message never had leads nowhere.
    let key = server::channels::tracking::key(w.runtime.pool()).await.unwrap();
    let foreign = Token::Click { conversation, link: 7 }.sign(&key);
    assert_eq!(w.get(&format!("{}/t/c/{foreign}", w.base), FIREFOX).await.status(), 404);
    let record = w.conversation(conversation).await;
    assert!(record.get::<Option<String>, _>("clicked_at").is_some());
    assert_eq!((record.get::<i64, _>("click_count"), record.get::<i64, _>("machine_click_count")), (1, 0));
    // A scanner probing the other link with HEAD is a machine.
    let probe = w.http.head(&hrefs[1]).header("user-agent", FIREFOX).send().await.unwrap();
    assert_eq!(probe.status(), 302);
    assert_eq!(w.conversation(conversation).await.get::<i64, _>("machine_click_count"), 1);
    w.runtime.deliver_all_events().await.unwrap();
    assert_eq!(w.step(p).await, ("waiting".into(), Some("w3".into())), "the click met the wait");

    // RFC 8058 one-click, posted by the mailbox provider (a session cookie
    // and a foreign origin, as a browser might add, change nothing).
    let reply = w
        .http
        .post(&https)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &admin)
        .header("origin", "https://mail.example")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(reply.headers().get("set-cookie").is_none());
    assert_eq!(w.opted_out(contact).await, ["email"], "consent changes at once");
    let change: (String, i64, String, Option<i64>) =
        sqlx::query_as("SELECT channel, opted_out, source, conversation_id FROM consent_changes WHERE contact_id = $1").bind(contact).fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(change, ("email".into(), 1, "one_click".into(), Some(conversation)));
    assert!(w.conversation(conversation).await.get::<Option<String>, _>("unsubscribed_at").is_some());
    w.runtime.deliver_all_events().await.unwrap();
    assert_eq!(w.step(p).await.1.as_deref(), Some("done"), "the unsubscribe met the last wait");
    let kinds: Vec<(String, i64, String)> = w.events(contact).await;
    assert_eq!(
        kinds,
        [
            ("email_opened".into(), 1, "pixel".into()),
            ("email_opened".into(), 0, "pixel".into()),
            ("link_clicked".into(), 0, "click".into()),
            ("link_clicked".into(), 1, "click".into()),
            ("unsubscribed".into(), 0, "unsubscribe".into())
        ]
    );

    // The conversation record, as the API lists it.
    let (status, body) = w.api(&admin, reqwest::Method::GET, &format!("/api/v1/participants/{p}/conversations"), None).await;
    assert_eq!(status, 200);
    let c = &body["conversations"][0];
    assert_eq!((c["step"].as_str(), c["opens"].as_i64(), c["machine_opens"].as_i64(), c["clicks"].as_i64()), (Some("e1"), Some(1), Some(1), Some(1)));
    for at in ["sent_at", "opened_at", "clicked_at", "unsubscribed_at"] {
        assert!(c[at].is_string(), "{at}: {c}");
    }
    assert_eq!(c["links"][0]["url"], "https://shop.test/sale?src=mail&c=1");
    assert_eq!((c["links"][0]["clicks"].as_i64(), c["links"][1]["machine_clicks"].as_i64()), (Some(1), Some(1)));
    let (status, body) = w.api(&admin, reqwest::Method::GET, &format!("/api/v1/contacts/{contact}/conversations"), None).await;
    assert_eq!((status, body["conversations"][0]["id"].as_i64()), (200, Some(conversation)));

    // A later send to the contact is skipped: consent is checked at every send.
    let next = publish_flow(&w, json!({"exit_on_reply": false})).await;
    let p2 = w.runtime.enroll(next, &[contact]).await.unwrap().0[0];
    w.runtime.run_until_idle().await.unwrap();
    let timeline = w.runtime.timeline(p2).await.unwrap();
    assert!(timeline.iter().any(|a| a.step == "e1" && a.reason.as_deref() == Some("opted_out_email")), "{timeline:?}");
}

#[tokio::test]
async fn transactional_and_untracked_flows_go_out_as_written() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    w.configure(json!({"smtp": smtp_settings(smtp.port)})).await;
    let quiet = publish_flow(&w, json!({"transactional": true, "tracking": false})).await;
    let contact = w.contact(json!({"email": "bob@example.test"})).await;
    w.runtime.enroll(quiet, &[contact]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    w.dispatch().await;
    let message = &smtp.wait_for(1)[0];
    assert!(message["headers"].get("list-unsubscribe").is_none() && message["headers"].get("list-unsubscribe-post").is_none());
    assert!(message["headers"].get("dkim-signature").is_none(), "no key, no signature");
    let html = html_part(message);
    assert!(html.contains("href=\"https://shop.test/sale?src=mail&amp;c=1\"") && !html.contains("/t/o/"), "{html}");
    assert!(html.contains(&format!("href=\"{}/u/", w.base)), "{{{{ unsubscribe_url }}}} is still filled: {html}");

    // Installation-wide off: no pixel, no redirect; List-Unsubscribe stays.
    w.configure(json!({"tracking": {"opens": false, "clicks": false}})).await;
    let marketing = publish_flow(&w, json!({})).await;
    let other = w.contact(json!({"email": "cy@example.test"})).await;
    w.runtime.enroll(marketing, &[other]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    w.dispatch().await;
    let message = &smtp.wait_for(2)[1];
    assert!(message["headers"]["list-unsubscribe"].as_str().unwrap().contains("/u/"));
    let html = html_part(message);
    assert!(!html.contains("/t/c/") && !html.contains("/t/o/"), "{html}");
}

#[tokio::test]
async fn an_ed25519_key_signs_what_dkimpy_verifies_with_the_k_ed25519_record() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    w.configure(json!({"smtp": smtp_settings(smtp.port)})).await;
    let admin = w.admin().await;
    let (status, dkim) = w
        .api(&admin, reqwest::Method::POST, "/api/v1/settings/dkim/key", Some(json!({"algorithm": "ed25519-sha256", "domain": "shop.test", "selector": "ed2026"})))
        .await;
    assert_eq!(status, 200, "{dkim}");
    assert_eq!(dkim["algorithm"], "ed25519-sha256", "{dkim}");
    let record = &dkim["dns_record"];
    assert_eq!((record["type"].as_str(), record["name"].as_str()), (Some("TXT"), Some("ed2026._domainkey.shop.test")), "{dkim}");
    let record_value = record["value"].as_str().unwrap().to_owned();
    // RFC 8463: the 32-byte public key itself, base64 (44 characters).
    let public = record_value.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap_or_else(|| panic!("{record_value}"));
    assert_eq!(public.len(), 44, "{record_value}");
    // The same record as the settings (what the settings page shows).
    let (status, view) = w.api(&admin, reqwest::Method::GET, "/api/v1/settings/integrations", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["dkim"]["dns_record"]["value"].as_str(), Some(record_value.as_str()), "{view}");

    let flow = publish_flow(&w, json!({})).await;
    let contact = w.contact(json!({"email": "eve@example.test", "fields": {"first_name": "Eve"}})).await;
    w.runtime.enroll(flow, &[contact]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    w.dispatch().await;
    let message = &smtp.wait_for(1)[0];
    let signature = message["headers"]["dkim-signature"].as_str().unwrap();
    assert!(signature.contains("a=ed25519-sha256") && signature.contains("d=shop.test") && signature.contains("s=ed2026"), "{signature}");
    let (verified, said) = support::dkim_verify(&smtp.raw(1), "ed2026._domainkey.shop.test", &record_value);
    assert!(verified, "dkimpy (with PyNaCl) verifies the Ed25519 signature with the published record: {said}");
    let tampered = String::from_utf8(smtp.raw(1)).unwrap().replacen("The sale", "The SALE", 1);
    assert!(!support::dkim_verify(tampered.as_bytes(), "ed2026._domainkey.shop.test", &record_value).0, "a changed body fails");
    // Another key's record does not verify it.
    let other = server::channels::dkim::record_value(server::channels::dkim::Algorithm::Ed25519Sha256, &server::channels::dkim::generate(server::channels::dkim::Algorithm::Ed25519Sha256)).unwrap();
    assert!(!support::dkim_verify(&smtp.raw(1), "ed2026._domainkey.shop.test", &other).0, "another key fails");
}

#[tokio::test]
async fn the_message_list_reads_its_times_in_the_contacts_zone() {
    use app::conversations::ConversationsBackend;
    let w = world().await;
    let smtp = SmtpSink::start(false);
    w.configure(json!({"smtp": smtp_settings(smtp.port)})).await;
    let flow = publish_flow(&w, json!({})).await;
    let paris = w.contact(json!({"email": "pia@example.test", "timezone": "Europe/Paris"})).await;
    let nowhere = w.contact(json!({"email": "nia@example.test"})).await;
    let enrolled = w.runtime.enroll(flow, &[paris, nowhere]).await.unwrap().0;
    w.runtime.run_until_idle().await.unwrap();
    w.dispatch().await;
    smtp.wait_for(2);

    let messages = w.runtime.of_contact(paris).await.unwrap();
    assert_eq!((messages.clock.zone.as_str(), messages.list.len()), ("Europe/Paris", 1));
    let sent: jiff::Timestamp = messages.list[0].sent_at.as_deref().unwrap().parse().unwrap();
    let local = sent.to_zoned(jiff::tz::TimeZone::get("Europe/Paris").unwrap()).strftime("%Y-%m-%d %H:%M %Z").to_string();
    assert!(local.ends_with(" CET"), "{local}");
    assert_eq!(messages.clock.show(sent, "%Y-%m-%d %H:%M %Z"), local, "read in Paris, the zone named");
    let viewer = app::auth::Viewer { id: 0, email: "m@x.test".into(), name: "M".into(), role: app::auth::Role::Marketer, token: false };
    let of_participant = w.runtime.of_participant(&viewer, enrolled[0]).await.unwrap();
    assert_eq!(of_participant.clock, messages.clock, "the participant page reads them as the contact page does");
    let plain = w.runtime.of_contact(nowhere).await.unwrap();
    assert_eq!(plain.clock.zone, "UTC");
    let sent: jiff::Timestamp = plain.list[0].sent_at.as_deref().unwrap().parse().unwrap();
    assert!(plain.clock.show(sent, "%H:%M %Z").ends_with(" UTC"));
}

#[tokio::test]
async fn the_preference_page_shows_and_saves_consent_per_channel() {
    let w = world().await;
    let admin = w.admin().await;
    let contact = w.contact(json!({"email": "dee@example.test", "mobile": "+14155550123"})).await;
    let (status, body) = w.api(&admin, reqwest::Method::GET, &format!("/api/v1/contacts/{contact}/preference-link"), None).await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().unwrap().to_owned();
    let page = w.get(&url, FIREFOX).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("form-action 'self'"), "{csp}");
    assert!(page.headers().get("set-cookie").is_none());
    let html = page.text().await.unwrap();
    let doc = scraper::Html::parse_document(&html);
    let boxes: Vec<(String, bool)> = doc
        .select(&scraper::Selector::parse("input[type=checkbox]").unwrap())
        .map(|i| (i.value().attr("name").unwrap().to_owned(), i.value().attr("checked").is_some()))
        .collect();
    assert_eq!(boxes, [("email".into(), true), ("sms".into(), true), ("call".into(), true)]);
    assert!(html.contains("de•••@example.test") && !html.contains("dee@example.test"), "the address is partly hidden");

    // Keep email, stop texts and calls.
    let reply = w.http.post(&url).form(&[("form", "preferences"), ("email", "on"), ("action", "save")]).send().await.unwrap();
    assert_eq!(reply.status(), 303);
    assert_eq!(w.opted_out(contact).await, ["call", "sms"]);
    let page = w.get(&format!("{url}?saved=saved"), FIREFOX).await.text().await.unwrap();
    assert!(page.contains("Your preferences are saved."));
    // Everything, then texts back on.
    assert_eq!(w.http.post(&url).form(&[("action", "all")]).send().await.unwrap().status(), 303);
    assert_eq!(w.opted_out(contact).await, ["all", "call", "email", "sms"]);
    w.http.post(&url).form(&[("form", "preferences"), ("sms", "on")]).send().await.unwrap();
    assert_eq!(w.opted_out(contact).await, ["call", "email"]);
    let sources: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT channel, opted_out, source FROM consent_changes WHERE contact_id = $1 ORDER BY id").bind(contact).fetch_all(w.runtime.pool()).await.unwrap();
    let page = |channel: &str, off: i64| (channel.to_owned(), off, "preference_page".to_owned());
    assert_eq!(sources, [page("sms", 1), page("call", 1), page("all", 1), page("sms", 0)], "one row per change, with how it came");
    // Bad input is a problem with a stable code; a token for nothing is an unknown page.
    let reply = w.http.post(&url).form(&[("action", "explode")]).send().await.unwrap();
    assert_eq!(reply.status(), 422);
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
    assert_eq!(json_of(reply).await["code"], "invalid_form");
    let key = server::channels::tracking::key(w.runtime.pool()).await.unwrap();
    let nobody = Token::Preferences { contact: 999_999 }.sign(&key);
    assert_eq!(w.get(&format!("{}/u/{nobody}", w.base), FIREFOX).await.status(), 404);
    assert_eq!(w.http.post(format!("{}/u/{nobody}", w.base)).body("List-Unsubscribe=One-Click").send().await.unwrap().status(), 404);
}

/// What the SMS provider posts for an incoming message, signed with `token` over `url`.
async fn inbound(w: &World, url: &str, token: &str, from: &str, body: &str, sid: &str) -> reqwest::Response {
    let mut fields: Vec<(String, String)> =
        [("AccountSid", "AC123"), ("MessageSid", sid), ("From", from), ("To", "+14155550100"), ("Body", body)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    fields.sort();
    let signature = server::channels::api::signature(token, url, &fields);
    w.http.post(url).header("x-twilio-signature", signature).form(&fields).send().await.unwrap()
}

#[tokio::test]
async fn sms_stop_and_start_through_the_signed_inbound_webhook_change_consent() {
    let w = world().await;
    let url = format!("{}/api/v1/channels/sms/inbound", w.base);
    w.configure(json!({"sms": {"base_url": "http://127.0.0.1:9", "account_sid": "AC123", "token": "tok", "senders": ["+14155550100"], "inbound_url": url}}))
        .await;
    let contact = w.contact(json!({"mobile": "+14155551234", "email": "eve@example.test"})).await;
    let stranger = w.contact(json!({"mobile": "+14155559999"})).await;

    // Not signed with the account's token: refused, nothing changes.
    let reply = inbound(&w, &url, "not-the-token", "+14155551234", "STOP", "SM1").await;
    assert_eq!(reply.status(), 403);
    assert_eq!(json_of(reply).await["code"], "bad_signature");
    assert!(w.opted_out(contact).await.is_empty());

    let reply = inbound(&w, &url, "tok", "+14155551234", " Stop ", "SM2").await;
    assert_eq!(reply.status(), 200);
    assert!(reply.headers()["content-type"].to_str().unwrap().starts_with("text/xml"));
    assert_eq!(w.opted_out(contact).await, ["sms"]);
    assert!(w.opted_out(stranger).await.is_empty(), "only the sender's number");
    // The provider posts it again: nothing more happens.
    assert_eq!(inbound(&w, &url, "tok", "+14155551234", "STOP", "SM2").await.status(), 200);
    assert_eq!(w.events(contact).await, [("unsubscribed".into(), 0, "sms".into())]);
    // Anything else is acknowledged and left alone; START brings texts back.
    assert_eq!(inbound(&w, &url, "tok", "+14155551234", "stop sending me deals please", "SM3").await.status(), 200);
    assert_eq!(w.opted_out(contact).await, ["sms"]);
    assert_eq!(inbound(&w, &url, "tok", "+14155551234", "start", "SM4").await.status(), 200);
    assert!(w.opted_out(contact).await.is_empty());
    let changes: Vec<(String, i64, String, Option<String>)> =
        sqlx::query_as("SELECT channel, opted_out, source, detail FROM consent_changes WHERE contact_id = $1 ORDER BY id").bind(contact).fetch_all(w.runtime.pool()).await.unwrap();
    assert_eq!(changes, [("sms".into(), 1, "sms_keyword".into(), Some("Stop".into())), ("sms".into(), 0, "sms_keyword".into(), Some("start".into()))]);
    // Too long a message is refused with its limit.
    let reply = inbound(&w, &url, "tok", "+14155551234", &"x".repeat(1_601), "SM5").await;
    assert_eq!(reply.status(), 422);
    assert_eq!(json_of(reply).await["code"], "too_long");
}

#[tokio::test]
async fn erasing_a_contact_scrubs_its_tracked_links_forgets_its_choices_and_stops_recording() {
    let w = world().await;
    let smtp = SmtpSink::start(false);
    w.configure(json!({"smtp": smtp_settings(smtp.port)})).await;
    let steps = json!([{"id": "s", "kind": "start"},
        {"id": "e1", "kind": "send_email", "settings": {"subject": "Hi", "body": "<a href=\"https://shop.test/me?who={{ email }}\">You</a> <a href=\"{{ unsubscribe_url }}\">Stop</a>"}}]);
    let flow = support::publish(&w.store, "Erase", steps, &["s->e1"]).await;
    let contact = w.contact(json!({"email": "zed@example.test", "mobile": "+14155550777"})).await;
    w.runtime.enroll(flow, &[contact]).await.unwrap();
    w.runtime.run_until_idle().await.unwrap();
    w.dispatch().await;
    let html = html_part(&smtp.wait_for(1)[0]);
    let pixel = html.split("<img src=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let unsubscribe = html.split("href=\"").nth(2).unwrap().split('"').next().unwrap().to_owned();
    let url: String = sqlx::query_scalar("SELECT url FROM conversation_links").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(url, "https://shop.test/me?who=zed@example.test");
    w.http.post(&unsubscribe).form(&[("action", "all")]).send().await.unwrap();
    let count = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM consent_changes").fetch_one(w.runtime.pool()).await.unwrap() };
    assert_eq!(count().await, 1);

    let admin = w.admin().await;
    let (status, _) = w.api(&admin, reqwest::Method::DELETE, &format!("/api/v1/contacts/{contact}"), None).await;
    assert!(status < 300, "{status}");
    let url: String = sqlx::query_scalar("SELECT url FROM conversation_links").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(url, format!("https://shop.test/me?who=erased-contact-{contact}"));
    assert_eq!(count().await, 0, "its consent choices go with its consent");
    // Its links still lead somewhere; nothing more is recorded about it, and its page is gone.
    assert_eq!(w.get(&pixel, FIREFOX).await.status(), 200);
    let opens: i64 = sqlx::query_scalar("SELECT open_count FROM conversations").fetch_one(w.runtime.pool()).await.unwrap();
    assert_eq!(opens, 0);
    assert!(w.events(contact).await.is_empty());
    assert_eq!(w.get(&unsubscribe, FIREFOX).await.status(), 404);
}

#[tokio::test]
async fn dkim_and_tracking_settings_are_checked_and_the_private_key_never_leaves() {
    let w = world().await;
    let admin = w.admin().await;
    let put = |body: Value| {
        let (w, admin) = (&w, &admin);
        async move { w.api(admin, reqwest::Method::PUT, "/api/v1/settings/integrations", Some(body)).await }
    };
    for (body, field) in [
        (json!({"dkim": {"domain": "exa mple.com", "selector": "s1"}}), "dkim.domain"),
        (json!({"dkim": {"domain": "example.com", "selector": "a.b"}}), "dkim.selector"),
        (json!({"dkim": {"domain": "example.com", "selector": "s1", "private_key": "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----"}}), "dkim.private_key"),
        (json!({"dkim": {"domain": "example.com", "selector": "s1", "algorithm": "dsa"}}), "dkim.algorithm"),
        (json!({"tracking": {"base_url": "ftp://t.example.com"}}), "tracking.base_url"),
        (json!({"tracking": {"unsubscribe_mailbox": "a-very-long-mailbox@example.com"}}), "tracking.unsubscribe_mailbox"),
        (json!({"tracking": {"scanner_secs": 99999}}), "tracking.scanner_secs"),
        (json!({"tracking": {"pixels": true}}), "tracking"),
    ] {
        let (status, problem) = put(body.clone()).await;
        assert_eq!((status, problem["code"].as_str()), (422, Some("invalid_integration")), "{body}: {problem}");
        assert!(problem["field"].as_str().unwrap().starts_with(field), "{body}: {problem}");
        assert!(!problem.to_string().contains("nope"), "a key is never quoted back");
    }
    let (status, problem) = put(json!({"dkim": {"domain": "x".repeat(300), "selector": "s1"}})).await;
    assert_eq!((status, problem["code"].as_str(), problem["field"].as_str()), (422, Some("too_long"), Some("dkim.domain")));
    // A pasted PKCS#8 Ed25519 key is stored as its seed and shown only as its record.
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    let (status, view) = put(json!({"dkim": {"domain": "football.example.com", "selector": "brisbane", "algorithm": "ed25519-sha256", "private_key": pem}})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["dkim"]["dns_record"]["value"], "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "RFC 8463's example key");
    assert_eq!(view["dkim"]["dns_record"]["name"], "brisbane._domainkey.football.example.com");
    let stored: String = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = 'dkim'").fetch_one(w.runtime.pool()).await.unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains("nWGxne"), "encrypted at rest");
    let (_, shown) = w.api(&admin, reqwest::Method::GET, "/api/v1/settings/integrations", None).await;
    assert!(!shown.to_string().contains("nWGxne") && !shown.to_string().contains("PRIVATE"), "{shown}");
    assert!(shown.get("tracking_key").is_none() && !shown.to_string().contains("tracking_key"));
    // The tracking key is not a channel anyone can set.
    let (status, problem) = put(json!({"tracking_key": {}})).await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("tracking_key")));
}
