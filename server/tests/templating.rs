//! Merge-tag templates through the server: the validator's `unknown_field`
//! warning knows the fields the stored contacts have (SQLite, and
//! PostgreSQL with WAYMARK_TEST_POSTGRES), and a published email step fills
//! conditionals, loops and escaped values from the stored contact.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use std::sync::Arc;

use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};

mod support;

struct Api {
    app: Router,
    cookie: String,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
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
        Api { app: router(state), cookie, _db: db, _dir: dir }
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "waymark.test")
            .header(header::ORIGIN, "http://waymark.test")
            .header(header::COOKIE, format!("waymark_session={}", self.cookie))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn flow(subject: &str, body: &str) -> Value {
    json!({"format": "waymark.flow/v1", "name": "Welcome",
        "steps": [{"id": "s", "kind": "start"}, {"id": "e", "kind": "send_email", "settings": {"subject": subject, "body": body}}],
        "edges": [{"from": "s", "port": "next", "to": "e"}]})
}

fn unknown_fields(findings: &Value) -> Vec<(String, String)> {
    findings["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "unknown_field")
        .map(|f| (f["setting"].as_str().unwrap().to_owned(), f["message"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_tag_naming_a_field_no_stored_contact_has_is_a_warning_that_does_not_block_publish() {
    let api = Api::new().await;
    for contact in [
        json!({"email": "ada@x.test", "fields": {"first_name": "Ada", "interests": ["sailing", "chess"]}}),
        json!({"email": "bob@x.test", "fields": {"plan": "gold"}}),
    ] {
        let (status, body) = api.json(Method::POST, "/api/v1/contacts", contact).await;
        assert!(status.is_success(), "{status}: {body}");
    }
    let (status, created) = api
        .json(
            Method::POST,
            "/api/v1/flows",
            json!({"document": flow(
                "Hi {{ frist_name | default: 'there' }}",
                "{% if plan %}{{ plan | upper }}{% endif %}{% for i in interests %}<li>{{ i }}</li>{% endfor %} {{ email }} {{ unsubscribe_url }}"
            )}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, findings) = api.json(Method::POST, &format!("/api/v1/flows/{id}/validate"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{findings}");
    let unknown = unknown_fields(&findings);
    assert_eq!(unknown.len(), 1, "only the typo: {findings}");
    assert_eq!(unknown[0].0, "subject");
    assert!(unknown[0].1.contains("{{ frist_name }}"), "{}", unknown[0].1);
    // a warning: publishing goes ahead
    let (status, published) = api.json(Method::POST, &format!("/api/v1/flows/{id}/publish"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");

    // a template that cannot be read is an error, which blocks publishing
    let request = Request::builder()
        .uri(format!("/api/v1/flows/{id}/draft"))
        .header(header::HOST, "waymark.test")
        .header(header::COOKIE, format!("waymark_session={}", api.cookie))
        .body(Body::empty())
        .unwrap();
    let draft: Value = serde_json::from_slice(&api.app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes()).unwrap();
    let revision = draft["revision"].as_i64().unwrap();
    let (status, saved) = api.json(Method::PUT, &format!("/api/v1/flows/{id}/draft"), json!({"revision": revision, "document": flow("Hi {% if %}", "x")})).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let errors: Vec<&Value> = saved["findings"]["errors"].as_array().unwrap().iter().filter(|f| f["code"] == "invalid_setting").collect();
    assert_eq!(errors.len(), 1, "{saved}");
    assert_eq!(errors[0]["setting"], "subject");
    assert!(errors[0]["message"].as_str().unwrap().contains("syntax error"), "{}", errors[0]["message"]);
    let (status, refused) = api.json(Method::POST, &format!("/api/v1/flows/{id}/publish"), json!({})).await;
    assert!(status.is_client_error(), "{status}: {refused}");
}

/// An email's style sheet is text: `{#` in CSS starts no comment (comments
/// are `{## … ##}`), so a body with CSS publishes and its styles are kept.
#[tokio::test]
async fn css_in_an_email_body_is_not_a_comment() {
    let api = Api::new().await;
    let body = "<style>a{#x} .b{#id .c{color:red}}</style><p>Hi {{ first_name | default: 'there' }}</p>{## not sent ##}";
    let (status, created) = api.json(Method::POST, "/api/v1/flows", json!({"document": flow("Hello {#1}", body)})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, findings) = api.json(Method::POST, &format!("/api/v1/flows/{id}/validate"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{findings}");
    assert_eq!(findings["errors"], json!([]), "{findings}");
    let (status, published) = api.json(Method::POST, &format!("/api/v1/flows/{id}/publish"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");

    let contact: app::core::contact::Contact = serde_json::from_value(json!({"email": "ada@x.test", "fields": {"first_name": "Ada & co"}})).unwrap();
    let filled = app::core::merge::try_render(body, &contact, app::core::merge::Escape::Html).unwrap();
    assert_eq!(filled, "<style>a{#x} .b{#id .c{color:red}}</style><p>Hi Ada &amp; co</p>");
    // With Jinja's `{# … #}` comments, `{#x} .b{#id … {## not sent ##}` was one comment.
    assert_eq!(app::core::merge::try_render("a{#x} b {#y#}", &contact, app::core::merge::Escape::Html).unwrap(), "a{#x} b {#y#}");
}
