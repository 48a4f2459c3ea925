//! The REST API against a real SQLite file, through the whole axum stack
//! (routing, body limits, extractors, problem+json) without a socket.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use std::sync::Arc;

use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use server::{leptos_options, router, seed, AppState};

mod support;

struct Api {
    app: Router,
    store: Store,
    /// An admin's session: every request is signed in and same-origin.
    cookie: String,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let db = support::TestDb::new(dir.path()).await;
        let store = Store::new(store::connect(&db.url).await.unwrap());
        let runtime = Runtime::new(store.pool().clone(), Arc::new(SystemClock), "test");
        let state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store.clone(), runtime);
        let admin = server::auth::accounts::add_user(store.pool(), "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password").await.unwrap();
        let cookie = server::auth::accounts::open_session(store.pool(), admin.id).await.unwrap();
        Api { app: router(state), store, cookie, _db: db, _dir: dir }
    }

    async fn send(&self, method: Method, uri: &str, body: Option<Vec<u8>>, content_type: Option<&str>) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={}", self.cookie));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, content_type, headers, body, text }
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> Reply {
        self.send(method, uri, Some(serde_json::to_vec(&body).unwrap()), Some("application/json")).await
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, None, None).await
    }
}

fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.content_type, "application/problem+json");
    assert_eq!(reply.body["code"], code, "{}", reply.text);
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

/// start -> email (no subject: missing_setting error) -> exit
fn draft_with_an_error(name: &str) -> Value {
    json!({
        "format": "waymark.flow/v1", "name": name,
        "steps": [
            {"id": "start", "kind": "start", "settings": {"entry": "manual"}},
            {"id": "e1", "kind": "send_email", "settings": {"body": "Hello"}},
            {"id": "x", "kind": "exit"}
        ],
        "edges": [{"from": "start", "port": "next", "to": "e1"}, {"from": "e1", "port": "next", "to": "x"}]
    })
}

#[tokio::test]
async fn flows_are_created_listed_renamed_and_deleted() {
    let api = Api::new().await;
    let created = api.json(Method::POST, "/api/v1/flows", json!({"name": "  Onboarding  "})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_i64().unwrap();
    assert_eq!(created.headers[header::LOCATION], format!("/api/v1/flows/{id}"));
    assert_eq!(created.body["name"], "Onboarding");
    assert_eq!(created.body["published_version"], Value::Null);

    let list = api.get("/api/v1/flows").await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    let renamed = api.json(Method::PATCH, &format!("/api/v1/flows/{id}"), json!({"name": "Onboarding v2"})).await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["name"], "Onboarding v2");
    // the document carries the flow's name
    let draft = api.get(&format!("/api/v1/flows/{id}/draft")).await;
    assert_eq!(draft.body["document"]["name"], "Onboarding v2");

    let deleted = api.send(Method::DELETE, &format!("/api/v1/flows/{id}"), None, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_problem(&api.get(&format!("/api/v1/flows/{id}")).await, StatusCode::NOT_FOUND, "flow_not_found");
    assert_problem(&api.send(Method::DELETE, &format!("/api/v1/flows/{id}"), None, None).await, StatusCode::NOT_FOUND, "flow_not_found");
}

#[tokio::test]
async fn names_are_unique_regardless_of_case_and_never_empty() {
    let api = Api::new().await;
    api.json(Method::POST, "/api/v1/flows", json!({"name": "Nurture"})).await;
    assert_problem(&api.json(Method::POST, "/api/v1/flows", json!({"name": "NURTURE"})).await, StatusCode::CONFLICT, "flow_name_taken");
    assert_problem(&api.json(Method::POST, "/api/v1/flows", json!({"name": "   "})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_name");
    let other = api.json(Method::POST, "/api/v1/flows", json!({"name": "Other"})).await;
    let id = other.body["id"].as_i64().unwrap();
    let clash = api.json(Method::PATCH, &format!("/api/v1/flows/{id}"), json!({"name": "nurture"})).await;
    assert_problem(&clash, StatusCode::CONFLICT, "flow_name_taken");
    assert_eq!(api.get(&format!("/api/v1/flows/{id}")).await.body["name"], "Other", "a refused rename changes nothing");
}

#[tokio::test]
async fn drafts_save_with_errors_and_stale_revisions_are_refused() {
    let api = Api::new().await;
    let id = api.json(Method::POST, "/api/v1/flows", json!({"name": "Drip"})).await.body["id"].as_i64().unwrap();
    let draft = api.get(&format!("/api/v1/flows/{id}/draft")).await;
    assert_eq!(draft.headers[header::ETAG], "\"1\"");
    assert_eq!(draft.body["revision"], 1);

    // errors never block a save
    let saved = api.json(Method::PUT, &format!("/api/v1/flows/{id}/draft"), json!({"revision": 1, "document": draft_with_an_error("Drip")})).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(saved.body["revision"], 2);
    assert_eq!(saved.body["findings"]["errors"][0]["code"], "missing_setting");
    assert_eq!(saved.body["findings"]["errors"][0]["step"], "e1");
    let summary = api.get(&format!("/api/v1/flows/{id}")).await;
    assert_eq!((summary.body["errors"].as_u64(), summary.body["revision"].as_u64()), (Some(1), Some(2)));

    // a second tab still at revision 1 is refused, and nothing changes
    let mut other = draft_with_an_error("Drip");
    other["steps"][1]["settings"]["subject"] = json!("From the other tab");
    let stale = api.json(Method::PUT, &format!("/api/v1/flows/{id}/draft"), json!({"revision": 1, "document": other})).await;
    assert_problem(&stale, StatusCode::CONFLICT, "stale_revision");
    assert_eq!(stale.body["current_revision"], 2);
    let now = api.get(&format!("/api/v1/flows/{id}/draft")).await;
    assert_eq!(now.body["revision"], 2);
    assert!(now.body["document"]["steps"][1]["settings"].get("subject").is_none());

    // steps come back in id order
    let ids: Vec<&str> = now.body["document"]["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e1", "start", "x"]);
}

#[tokio::test]
async fn unreadable_documents_and_oversized_bodies_change_nothing() {
    let api = Api::new().await;
    let id = api.json(Method::POST, "/api/v1/flows", json!({"name": "Safe"})).await.body["id"].as_i64().unwrap();
    let uri = format!("/api/v1/flows/{id}/draft");

    let bad_shape = api.json(Method::PUT, &uri, json!({"revision": 1, "document": {"steps": [{"id": "a", "kind": "start", "position": {"x": "left"}}]}})).await;
    assert_problem(&bad_shape, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    assert!(bad_shape.body["path"].as_str().unwrap().starts_with("steps[0].position"));

    let not_json = api.send(Method::PUT, &uri, Some(b"{\"revision\": 1,".to_vec()), Some("application/json")).await;
    assert_problem(&not_json, StatusCode::BAD_REQUEST, "invalid_json");
    let no_type = api.send(Method::PUT, &uri, Some(b"{}".to_vec()), None).await;
    assert_problem(&no_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let missing_field = api.json(Method::PUT, &uri, json!({"document": {}})).await;
    assert_problem(&missing_field, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");

    let steps: Vec<Value> = (0..10_001).map(|i| json!({"id": format!("s{i}"), "kind": "exit"})).collect();
    let too_many = api.json(Method::PUT, &uri, json!({"revision": 1, "document": {"format": "waymark.flow/v1", "steps": steps}})).await;
    assert_problem(&too_many, StatusCode::UNPROCESSABLE_ENTITY, "too_many_steps");

    let huge = json!({"revision": 1, "document": {"name": "x".repeat(3 * 1024 * 1024)}});
    assert_problem(&api.json(Method::PUT, &uri, huge).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let draft = api.get(&uri).await;
    assert_eq!(draft.body["revision"], 1, "nothing was written");
    assert_eq!(draft.body["document"]["steps"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn publish_is_blocked_by_errors_and_versions_are_immutable() {
    let api = Api::new().await;
    let id = api.json(Method::POST, "/api/v1/flows", json!({"name": "Launch"})).await.body["id"].as_i64().unwrap();
    api.json(Method::PUT, &format!("/api/v1/flows/{id}/draft"), json!({"revision": 1, "document": draft_with_an_error("Launch")})).await;

    let blocked = api.send(Method::POST, &format!("/api/v1/flows/{id}/publish"), None, None).await;
    assert_problem(&blocked, StatusCode::UNPROCESSABLE_ENTITY, "publish_blocked");
    assert_eq!(blocked.body["errors"][0]["code"], "missing_setting");
    assert_eq!(api.get(&format!("/api/v1/flows/{id}/versions")).await.body, json!([]));

    let mut fixed = draft_with_an_error("Launch");
    fixed["steps"][1]["settings"]["subject"] = json!("Hello");
    let saved = api.json(Method::PUT, &format!("/api/v1/flows/{id}/draft"), json!({"revision": 2, "document": fixed})).await;
    assert_eq!(saved.body["findings"]["errors"], json!([]));

    let stale = api.json(Method::POST, &format!("/api/v1/flows/{id}/publish"), json!({"revision": 2})).await;
    assert_problem(&stale, StatusCode::CONFLICT, "stale_revision");
    let published = api.json(Method::POST, &format!("/api/v1/flows/{id}/publish"), json!({"revision": 3})).await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.text);
    assert_eq!(published.body["number"], 1);
    assert!(published.body["published_at"].as_str().is_some());
    assert_eq!(published.body["published_by"], "admin@x.test", "the signed-in user publishes");

    // editing the draft afterwards leaves version 1 as it was
    let mut edited = fixed.clone();
    edited["steps"][1]["settings"]["subject"] = json!("Changed after publishing");
    api.json(Method::PUT, &format!("/api/v1/flows/{id}/draft"), json!({"revision": 3, "document": edited})).await;
    let v1 = api.get(&format!("/api/v1/flows/{id}/versions/1")).await;
    assert_eq!(v1.body["document"]["steps"][0]["id"], "e1");
    assert_eq!(v1.body["document"]["steps"][0]["settings"]["subject"], "Hello");
    let summary = api.get(&format!("/api/v1/flows/{id}")).await;
    assert_eq!(summary.body["published_version"], 1);
    assert_eq!(summary.body["draft_changed"], true);

    let second = api.send(Method::POST, &format!("/api/v1/flows/{id}/publish"), None, None).await;
    assert_eq!(second.body["number"], 2);
    let versions = api.get(&format!("/api/v1/flows/{id}/versions")).await;
    let numbers: Vec<i64> = versions.body.as_array().unwrap().iter().map(|v| v["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 1]);
    assert_problem(&api.get(&format!("/api/v1/flows/{id}/versions/9")).await, StatusCode::NOT_FOUND, "version_not_found");

    // the database itself refuses to change a published version
    let tampered = sqlx::query("UPDATE flow_versions SET document = '{}' WHERE flow_id = $1").bind(id).execute(api.store.pool()).await;
    assert!(tampered.unwrap_err().to_string().contains("cannot be changed"));
}

#[tokio::test]
async fn export_then_import_round_trips_the_document() {
    let api = Api::new().await;
    let imported = api.json(Method::POST, "/api/v1/flows", json!({"document": serde_json::from_str::<Value>(seed::DEMO_FLOW).unwrap()})).await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.text);
    assert_eq!(imported.body["name"], "Welcome series (demo)");
    assert_eq!(imported.body["errors"], 0);
    assert!(imported.body["warnings"].as_u64().unwrap() >= 1);
    let id = imported.body["id"].as_i64().unwrap();

    let exported = api.get(&format!("/api/v1/flows/{id}/export")).await;
    assert_eq!(exported.status, StatusCode::OK);
    assert!(exported.headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains("welcome-series--demo.waymark.json"));
    let again = api.json(Method::POST, "/api/v1/flows", json!({"name": "Copy", "document": exported.body})).await;
    let copy_id = again.body["id"].as_i64().unwrap();
    let second_export = api.get(&format!("/api/v1/flows/{copy_id}/export")).await;
    assert_eq!(second_export.text.replace("\"Copy\"", "\"Welcome series (demo)\""), exported.text);
}

#[tokio::test]
async fn stateless_validation_answers_findings() {
    let api = Api::new().await;
    let reply = api.json(Method::POST, "/api/v1/validate", draft_with_an_error("Anything")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["errors"][0]["code"], "missing_setting");
    let shapeless = api.json(Method::POST, "/api/v1/validate", json!({"steps": 3})).await;
    assert_eq!(shapeless.body["errors"][0]["code"], "unsupported_format");
    assert_eq!(shapeless.body["errors"][1]["code"], "invalid_document");
    assert_problem(&api.json(Method::POST, "/api/v1/validate", json!([1])).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
}

#[tokio::test]
async fn go_to_flow_recursion_is_found_across_stored_flows() {
    let api = Api::new().await;
    let goto = |name: &str, target: &str| {
        json!({"format": "waymark.flow/v1", "name": name,
               "steps": [{"id": "start", "kind": "start"}, {"id": "g", "kind": "go_to_flow", "settings": {"flow": target, "mode": "move"}}],
               "edges": [{"from": "start", "port": "next", "to": "g"}]})
    };
    let a = api.json(Method::POST, "/api/v1/flows", json!({"document": goto("Alpha", "Beta")})).await;
    assert_eq!(a.body["errors"], 1, "Beta does not exist yet: unknown_target");
    let b = api.json(Method::POST, "/api/v1/flows", json!({"document": goto("Beta", "Alpha")})).await;
    let b_id = b.body["id"].as_i64().unwrap();
    let findings = api.json(Method::POST, &format!("/api/v1/flows/{b_id}/validate"), json!({})).await;
    assert_eq!(findings.body["errors"][0]["code"], "recursion", "{}", findings.text);
}

#[tokio::test]
async fn unknown_routes_and_ids_are_problems_too() {
    let api = Api::new().await;
    assert_problem(&api.get("/api/v1/nothing-here").await, StatusCode::NOT_FOUND, "not_found");
    assert_problem(&api.get("/api/v1/flows/abc").await, StatusCode::NOT_FOUND, "flow_not_found");
}

#[tokio::test]
async fn pages_render_on_the_server_with_the_demo_flow() {
    let api = Api::new().await;
    assert!(seed::seed_demo(&api.store).await.unwrap());
    assert!(!seed::seed_demo(&api.store).await.unwrap(), "seeded once per installation");
    let page = api.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text.contains("Welcome series (demo)"), "{}", page.text);
    assert_eq!(page.headers["x-content-type-options"], "nosniff");

    let id = api.get("/api/v1/flows").await.body[0]["id"].as_i64().unwrap();
    let flow = api.get(&format!("/flows/{id}")).await;
    assert!(flow.text.contains("sms_multi_segment"), "the findings panel is rendered");
    assert!(flow.text.contains("data-step=\"no_email_sms\""), "the graph is rendered");
    let review = api.get("/review").await;
    assert!(review.text.contains("sms_multi_segment"));
}

#[tokio::test]
async fn enrolling_from_csv_finds_or_creates_contacts_and_refuses_bad_rows_whole() {
    let api = Api::new().await;
    let doc = json!({"format": "waymark.flow/v1", "name": "CSV",
                     "steps": [{"id": "s", "kind": "start"}, {"id": "x", "kind": "exit"}],
                     "edges": [{"from": "s", "port": "next", "to": "x"}]});
    let id = api.json(Method::POST, "/api/v1/flows", json!({"document": doc})).await.body["id"].as_i64().unwrap();
    let csv_body = |text: &str| Some(text.as_bytes().to_vec());
    let early = api.send(Method::POST, &format!("/api/v1/flows/{id}/enroll/csv"), csv_body("email\na@x.test\n"), Some("text/csv")).await;
    assert_problem(&early, StatusCode::UNPROCESSABLE_ENTITY, "flow_not_published");
    api.send(Method::POST, &format!("/api/v1/flows/{id}/publish"), None, None).await;

    let existing = api.json(Method::POST, "/api/v1/contacts", json!({"email": "Ada@X.test"})).await;
    assert_eq!(existing.status, StatusCode::CREATED);
    let file = "email,first_name,timezone\nada@x.test,Ada,Europe/London\nbob@x.test,Bob,\nbob@x.test,Bob,\n";
    let reply = api.send(Method::POST, &format!("/api/v1/flows/{id}/enroll/csv"), csv_body(file), Some("text/csv")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["rows"], 3);
    assert_eq!(reply.body["contacts_created"], 1, "Ada existed; Bob is created once");
    assert_eq!(reply.body["enrolled"].as_array().unwrap().len(), 2);

    let bad = "email,mobile\ncarol@x.test,\n,\n";
    let reply = api.send(Method::POST, &format!("/api/v1/flows/{id}/enroll/csv"), csv_body(bad), Some("text/csv")).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv");
    assert!(reply.body["detail"].as_str().unwrap().contains("Line 3"));
    let carol: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE email = 'carol@x.test'").fetch_one(api.store.pool()).await.unwrap();
    assert_eq!(carol, 0, "nothing from a refused file is written");
}
