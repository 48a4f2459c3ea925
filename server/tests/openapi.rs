//! The API's OpenAPI 3.1 description: served publicly at
//! `/api/v1/openapi.json`, valid by a real validator (Python's
//! openapi-spec-validator), listing exactly the routes the router has, with
//! the problem+json error schema an actual error answer matches.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
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

/// What schemathesis found (`.ci/api-contract`): bodies the extractor
/// refused before the handler ran were answered in plain text, not as the
/// problem the description promises.
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
}
