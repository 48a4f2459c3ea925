//! The API's OpenAPI 3.1 description: served publicly at
//! `/api/v1/openapi.json`, valid by a real validator (Python's
//! openapi-spec-validator), listing exactly the routes the router has, with
//! the problem+json error schema an actual error answer matches.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};

mod support;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, Value) {
    let request = Request::builder().uri(uri).header(header::HOST, "waymark.test").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn validator() {
    let present = || Command::new("python3").args(["-c", "import openapi_spec_validator"]).status().is_ok_and(|s| s.success());
    if !present() {
        let _ = Command::new("python3").args(["-m", "pip", "install", "--user", "--quiet", "openapi-spec-validator"]).status();
    }
    assert!(present(), "this test needs Python 3 with openapi-spec-validator");
}

#[tokio::test]
async fn the_description_is_valid_openapi_3_1_and_lists_every_route_the_router_has() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let runtime = Runtime::new(store.pool().clone(), Arc::new(SystemClock), "test");
    let app = router(AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store, runtime));

    // public: no cookie, no token
    let (status, content_type, document) = get(&app, "/api/v1/openapi.json").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(document["openapi"], "3.1.0");

    validator();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let check = Command::new("python3")
        .args(["-c", "import json, sys; from openapi_spec_validator import validate; from openapi_spec_validator.validation import OpenAPIV31SpecValidator; validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator); print('valid')"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));

    // exactly the router's routes: every endpoint it mounts, nothing else
    let routes: BTreeSet<(String, String)> =
        server::api_endpoints().iter().map(|e| (e.method.as_str().to_lowercase(), format!("/api/v1{}", e.path))).collect();
    let described: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    assert_eq!(described, routes);
    assert!(routes.len() > 50, "{} routes", routes.len());
    for probe in [("post", "/api/v1/flows"), ("post", "/api/v1/events"), ("get", "/api/v1/openapi.json"), ("put", "/api/v1/settings/integrations")] {
        assert!(described.contains(&(probe.0.to_owned(), probe.1.to_owned())), "{probe:?}");
    }
    // a described route the router does not have would answer route_not_found
    for (method, path) in &described {
        if method == "get" && !path.contains('{') && !path.ends_with(".csv") {
            let (status, _, body) = get(&app, path).await;
            assert_ne!(body["code"], "route_not_found", "{path}: {status}");
        }
    }

    // auth schemes, and the error schema an actual problem matches
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!((schemes["bearer"]["scheme"].as_str(), schemes["cookie"]["in"].as_str()), (Some("bearer"), Some("cookie")));
    assert_eq!(document["paths"]["/api/v1/openapi.json"]["get"]["security"], serde_json::json!([]));
    let problem = &document["components"]["schemas"]["Problem"];
    let (status, content_type, body) = get(&app, "/api/v1/flows").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::UNAUTHORIZED, "application/problem+json"));
    for field in problem["required"].as_array().unwrap() {
        assert!(body.get(field.as_str().unwrap()).is_some(), "{field} missing from {body}");
    }
    assert_eq!(problem["properties"]["type"]["type"], "string", "{problem}");
    let create = &document["paths"]["/api/v1/flows"]["post"];
    assert_eq!(create["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/NewFlow");
    assert!(document["components"]["schemas"]["SaveDraft"]["required"].as_array().unwrap().contains(&"revision".into()));
    assert_eq!(create["responses"]["default"]["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem");
}

/// What schemathesis found (`.ci/api-contract`): bodies (and queries) the
/// extractor refused before the handler ran were answered in plain text,
/// not as the problem the description promises.
#[tokio::test]
async fn bodies_refused_before_the_handler_are_problems_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let runtime = Runtime::new(store.pool().clone(), Arc::new(SystemClock), "test");
    let (_, token) = server::auth::accounts::create_token(store.pool(), "contract", "write", "test").await.unwrap();
    let flow = support::publish(&store, "F", serde_json::json!([{"id": "s", "kind": "start"}]), &[]).await;
    let app = router(AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store, runtime));
    for (uri, content_type, body, code) in [
        ("/api/v1/contacts/imports".to_owned(), None, b"x".to_vec(), "invalid_multipart"),
        ("/api/v1/contacts/imports".to_owned(), Some("multipart/form-data"), b"x".to_vec(), "invalid_multipart"),
        (format!("/api/v1/flows/{flow}/enroll/csv"), Some("text/csv"), vec![b'e', 0xff, 0xfe], "invalid_body"),
    ] {
        let mut request = Request::builder()
            .method("POST")
            .uri(&uri)
            .header(header::HOST, "waymark.test")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(status.is_client_error(), "{uri}: {status}");
        assert_eq!((kind.as_str(), problem["code"].as_str()), ("application/problem+json", Some(code)), "{uri}: {}", String::from_utf8_lossy(&bytes));
    }
    for uri in ["/api/v1/contacts?per_page=abc", "/api/v1/audit?limit=1.5", "/api/v1/data-files/1?expires=soon", "/api/v1/flows/1/report?from=1&from=2"] {
        let request = Request::builder().uri(uri).header(header::HOST, "waymark.test").header(header::AUTHORIZATION, format!("Bearer {token}"));
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let kind = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let expected = if uri.contains("audit") { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
        assert_eq!(status, expected, "{uri}: {}", String::from_utf8_lossy(&bytes));
        assert_eq!(kind, "application/problem+json", "{uri}");
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(problem["code"], "invalid_query", "{uri}: {problem}");
        }
    }
}

/// One answer of a sample call: the route it went to and what came back.
struct Sample {
    method: &'static str,
    route: &'static str,
    status: u16,
    content_type: String,
    body: Value,
}

/// Calls the API as an admin (session cookie, same origin) or with a
/// write token, recording each answer for the description's check.
struct Sampler {
    app: axum::Router,
    cookie: String,
    token: String,
    samples: Vec<Sample>,
}

impl Sampler {
    async fn call(&mut self, method: &'static str, route: &'static str, uri: &str, body: Option<(&str, Vec<u8>)>, admin: bool) -> Value {
        let mut request = Request::builder().method(method).uri(format!("/api/v1{uri}")).header(header::HOST, "waymark.test");
        if admin {
            request = request.header(header::COOKIE, format!("waymark_session={}", self.cookie)).header(header::ORIGIN, "http://waymark.test");
        } else {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let response = self.app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if content_type.contains("json") {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{method} {uri}: {content_type} that is not JSON"))
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        self.samples.push(Sample { method, route, status, content_type, body: body.clone() });
        body
    }

    async fn get(&mut self, route: &'static str, uri: &str) -> Value {
        self.call("GET", route, uri, None, false).await
    }

    async fn json(&mut self, method: &'static str, route: &'static str, uri: &str, body: Value) -> Value {
        self.call(method, route, uri, Some(("application/json", body.to_string().into_bytes())), false).await
    }

    async fn admin(&mut self, method: &'static str, route: &'static str, body: Option<Value>) -> Value {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.call(method, route, route, body, true).await
    }
}

/// Every operation of the description, called once with a sample that
/// succeeds (a few only with one that is refused, named below); each
/// answer must have a status the operation lists and a body its schema
/// allows (Python's jsonschema, Draft 2020-12). A field renamed, dropped
/// or retyped by a handler, or a schema that says otherwise, fails here.
#[tokio::test]
async fn every_operation_answers_in_the_shape_the_description_gives() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::TestDb::new(dir.path()).await;
    let store = Store::new(store::connect(&db.url).await.unwrap());
    let pool = store.pool().clone();
    let runtime = Runtime::new(pool.clone(), Arc::new(SystemClock), "test");
    let admin = server::auth::accounts::add_user(&pool, "admin@x.test", "Admin", app::auth::Role::Admin, "a long enough password").await.unwrap();
    let cookie = server::auth::accounts::open_session(&pool, admin.id).await.unwrap();
    let (_, token) = server::auth::accounts::create_token(&pool, "samples", "write", "test").await.unwrap();
    let tasks = support::publish(
        &store,
        "Tasks",
        json!([{"id": "s", "kind": "start"}, {"id": "t", "kind": "task", "settings": {"subject": "Call {{ first_name }}"}}, {"id": "x", "kind": "exit"}]),
        &["s->t", "t->x"],
    )
    .await;
    let app = router(AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store, runtime.clone()));
    let mut s = Sampler { app, cookie, token, samples: Vec::new() };
    let csv = "text/csv";

    // Flows.
    let flow = s.json("POST", "/flows", "/flows", json!({"name": "Sampled"})).await;
    let id = flow["id"].as_i64().unwrap();
    s.get("/flows", "/flows").await;
    s.get("/flows/{id}", &format!("/flows/{id}")).await;
    s.json("PATCH", "/flows/{id}", &format!("/flows/{id}"), json!({"name": "Sampled flow"})).await;
    let draft = s.get("/flows/{id}/draft", &format!("/flows/{id}/draft")).await;
    let document = json!({"format": "waymark.flow/v1", "name": "Sampled flow",
        "steps": [{"id": "s", "kind": "start"}, {"id": "x", "kind": "exit", "position": {"x": 1, "y": 2}}],
        "edges": [{"from": "s", "port": "next", "to": "x"}]});
    s.json("PUT", "/flows/{id}/draft", &format!("/flows/{id}/draft"), json!({"revision": draft["revision"], "document": document})).await;
    s.call("POST", "/flows/{id}/validate", &format!("/flows/{id}/validate"), None, false).await;
    s.json("POST", "/flows/{id}/publish", &format!("/flows/{id}/publish"), json!({})).await;
    s.get("/flows/{id}/versions", &format!("/flows/{id}/versions")).await;
    s.get("/flows/{id}/versions/{number}", &format!("/flows/{id}/versions/1")).await;
    s.get("/flows/{id}/export", &format!("/flows/{id}/export")).await;
    s.json("POST", "/validate", "/validate", json!({"name": "x", "steps": [{"id": "s", "kind": "start"}, {"id": "w", "kind": "wait"}]})).await;
    s.json("PUT", "/groups/{name}", "/groups/greet", json!({"format": "waymark.flow/v1", "name": "greet", "steps": [{"id": "x", "kind": "exit"}]})).await;
    s.get("/groups", "/groups").await;
    s.get("/flows/{id}/report", &format!("/flows/{tasks}/report")).await;
    s.get("/flows/{id}/report/{file}", &format!("/flows/{tasks}/report/days.csv")).await;
    let doomed = s.json("POST", "/flows", "/flows", json!({"name": "Doomed"})).await["id"].as_i64().unwrap();
    s.call("DELETE", "/flows/{id}", &format!("/flows/{doomed}"), None, false).await;

    // Contacts.
    let ada = s.json("POST", "/contacts", "/contacts", json!({"email": "ada@x.test", "fields": {"first_name": "Ada"}, "lists": ["vip"]})).await["id"].as_i64().unwrap();
    let bob = s.json("POST", "/contacts", "/contacts", json!({"email": "bob@x.test", "mobile": "+15550100", "timezone": "Europe/Paris"})).await["id"].as_i64().unwrap();
    s.get("/contacts", "/contacts?per_page=1").await;
    s.get("/contacts/{id}", &format!("/contacts/{ada}")).await;
    s.json("PUT", "/contacts/{id}", &format!("/contacts/{bob}"), json!({"email": "bob@x.test", "fields": {"plan": "gold"}})).await;
    s.json("POST", "/contacts/{id}/lists", &format!("/contacts/{bob}/lists"), json!({"list": "newsletter"})).await;
    s.get("/contacts/export.csv", "/contacts/export.csv").await;
    s.get("/contacts/{id}/preference-link", &format!("/contacts/{ada}/preference-link")).await;
    s.get("/contacts/{id}/conversations", &format!("/contacts/{ada}/conversations")).await;
    let boundary = "sample-boundary";
    let upload = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\r\nContent-Type: text/csv\r\n\r\nemail\ncy@x.test\nnot-an-email\n\r\n--{boundary}--\r\n");
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let import = s.call("POST", "/contacts/imports", "/contacts/imports", Some((&content_type, upload.into_bytes())), false).await;
    let import = import["id"].as_i64().unwrap();
    for _ in 0..200 {
        if s.get("/contacts/imports/{id}", &format!("/contacts/imports/{import}")).await["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    s.get("/contacts/imports/{id}/errors.csv", &format!("/contacts/imports/{import}/errors.csv")).await;

    // Participants and their work.
    s.json("POST", "/flows/{id}/enroll", &format!("/flows/{tasks}/enroll"), json!({"contact_ids": [ada]})).await;
    s.call("POST", "/flows/{id}/enroll/csv", &format!("/flows/{tasks}/enroll/csv"), Some((csv, b"email\nbob@x.test\ndee@x.test\n".to_vec())), false).await;
    runtime.run_until_idle().await.unwrap();
    s.get("/flows/{id}/participants/counts", &format!("/flows/{tasks}/participants/counts")).await;
    let task = s.get("/tasks", "/tasks").await;
    let participant = task[0]["participant_id"].as_i64().unwrap();
    s.get("/participants/{id}", &format!("/participants/{participant}")).await;
    s.get("/participants/{id}/timeline", &format!("/participants/{participant}/timeline")).await;
    s.get("/participants/{id}/conversations", &format!("/participants/{participant}/conversations")).await;
    s.json("POST", "/events", "/events", json!([{"id": "e1", "contact": {"id": ada}, "event": "custom", "name": "purchase"}])).await;
    runtime.deliver_all_events().await.unwrap();
    s.get("/participants/{id}/events", &format!("/participants/{participant}/events")).await;
    s.json("POST", "/participants/{id}/action", &format!("/participants/{participant}/action"), json!({"outcome": "completed"})).await;
    s.call("POST", "/participants/{id}/retry", &format!("/participants/{participant}/retry"), None, false).await;
    s.json("POST", "/flows/{id}/migrate", &format!("/flows/{tasks}/migrate"), json!({})).await;
    let criteria = json!({"flow_ids": [tasks]});
    s.json("POST", "/participants/bulk/preview", "/participants/bulk/preview", json!({"action": "pause", "criteria": criteria})).await;
    let run = s.json("POST", "/participants/bulk", "/participants/bulk", json!({"action": "pause", "criteria": criteria})).await["id"].as_i64().unwrap();
    for _ in 0..200 {
        if s.get("/bulk-runs/{id}", &format!("/bulk-runs/{run}")).await["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    s.get("/bulk-runs", "/bulk-runs").await;
    s.call("POST", "/bulk-runs/{id}/undo", &format!("/bulk-runs/{run}/undo"), None, false).await;
    s.json("POST", "/participants/export.csv", "/participants/export.csv", criteria.clone()).await;
    s.get("/participants/export.csv", &format!("/participants/export.csv?criteria={}", server_urlencode(&criteria.to_string()))).await;
    s.call("DELETE", "/contacts/{id}", &format!("/contacts/{bob}"), None, false).await;

    // Admins' settings.
    s.admin("GET", "/audit", None).await;
    s.admin("GET", "/settings/integrations", None).await;
    s.admin("PUT", "/settings/integrations", Some(json!({"http": {"allowlist": ["127.0.0.1"]}}))).await;
    s.admin("GET", "/settings/mailbox", None).await;
    s.admin("PUT", "/settings/mailbox", Some(json!({}))).await;
    s.admin("POST", "/settings/mailbox/poll", None).await;
    s.admin("GET", "/settings/email-webhooks", None).await;
    s.admin("PUT", "/settings/email-webhooks", Some(json!({}))).await;
    s.admin("GET", "/settings/pressure", None).await;
    let policy = s.admin("GET", "/settings/pressure", None).await;
    s.admin("PUT", "/settings/pressure", Some(policy)).await;
    s.admin("POST", "/settings/dkim/key", Some(json!({"domain": "x.test", "selector": "wm1"}))).await;
    s.get("/openapi.json", "/openapi.json").await;

    // Providers' callbacks, unsigned: refused, as problems.
    let form = "application/x-www-form-urlencoded";
    for route in ["/channels/sms/status", "/channels/calls/status", "/workspace/calls/status", "/channels/sms/inbound"] {
        s.call("POST", route, route, Some((form, b"MessageSid=SM1&MessageStatus=delivered".to_vec())), false).await;
    }
    for route in ["/channels/ses/sns", "/channels/sendgrid/events", "/channels/postmark/events", "/channels/mailgun/events"] {
        s.call("POST", route, route, Some(("application/json", b"{}".to_vec())), false).await;
    }
    s.get("/data-files/{id}", "/data-files/1?expires=1&sig=x").await;

    // Check every answer against the description.
    let document = server::openapi::document(&server::api_endpoints());
    let samples: Vec<Value> = s
        .samples
        .iter()
        .map(|x| json!({"method": x.method.to_lowercase(), "path": format!("/api/v1{}", x.route), "status": x.status, "content_type": x.content_type, "body": x.body}))
        .collect();
    let file = dir.path().join("samples.json");
    std::fs::write(&file, json!({"document": document, "samples": samples}).to_string()).unwrap();
    validator();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
data = json.load(open(sys.argv[1]))
doc = data["document"]
failures, succeeded = [], set()
for s in data["samples"]:
    key = f'{s["method"].upper()} {s["path"]} -> {s["status"]}'
    op = doc["paths"].get(s["path"], {}).get(s["method"])
    if op is None:
        failures.append(f"{key}: not described"); continue
    response = op["responses"].get(str(s["status"])) or op["responses"].get("default")
    if response is None:
        failures.append(f"{key}: status not described"); continue
    if 200 <= s["status"] < 300:
        succeeded.add((s["method"], s["path"]))
    content = response.get("content")
    if content is None:
        if s["body"] not in ("", None):
            failures.append(f"{key}: a body where none is described")
        continue
    media = s["content_type"].split(";")[0].strip()
    if media in content:
        schema = content[media]["schema"]
    elif "*/*" in content:
        continue
    else:
        failures.append(f"{key}: {media} where {list(content)} is described"); continue
    root = dict(schema); root["components"] = doc["components"]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft202012Validator(root).iter_errors(s["body"])]
    if errors:
        failures.append(f"{key}: {errors[:3]} in {json.dumps(s['body'])[:400]}")
for path, item in doc["paths"].items():
    for method, op in item.items():
        if op.get("x-undescribed"):
            failures.append(f"{method.upper()} {path}: missing from the path table")
print(json.dumps({"failures": failures, "succeeded": sorted(f"{m.upper()} {p}" for m, p in succeeded)}))
"#;
    let out = Command::new("python3").args(["-c", script]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failures"], json!([]), "{:#}", report["failures"]);

    // Every operation answered a sample with success, but those that need a
    // provider's signature, a signed link, a reachable mailbox or a failed
    // participant (their refusals are checked above).
    let refused_only = [
        "POST /api/v1/channels/sms/status",
        "POST /api/v1/channels/calls/status",
        "POST /api/v1/workspace/calls/status",
        "POST /api/v1/channels/sms/inbound",
        "POST /api/v1/channels/ses/sns",
        "POST /api/v1/channels/sendgrid/events",
        "POST /api/v1/channels/postmark/events",
        "POST /api/v1/channels/mailgun/events",
        "GET /api/v1/data-files/{id}",
        "POST /api/v1/settings/mailbox/poll",
        "POST /api/v1/participants/{id}/retry",
    ];
    let succeeded: BTreeSet<String> = report["succeeded"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let all: BTreeSet<String> = server::api_endpoints().iter().map(|e| format!("{} /api/v1{}", e.method, e.path)).collect();
    let missing: Vec<&String> = all.iter().filter(|op| !succeeded.contains(*op) && !refused_only.contains(&op.as_str())).collect();
    assert!(missing.is_empty(), "no successful sample of {missing:?}");
    let sampled: BTreeSet<String> = s.samples.iter().map(|x| format!("{} /api/v1{}", x.method, x.route)).collect();
    assert_eq!(sampled, all, "every operation is called");
}

fn server_urlencode(text: &str) -> String {
    text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}
