//! The API's description, OpenAPI 3.1, served at `/api/v1/openapi.json`.
//!
//! Its paths are the router's own: every [`Endpoint`] of
//! [`crate::api_endpoints`] becomes an operation (method, path parameters,
//! who may call it), so the description cannot miss a route the router has
//! (`server/tests/openapi.rs` checks both ways). Request bodies, and the
//! problem every error answers with, are schemas derived from the types the
//! handlers read (`utoipa::ToSchema`); answers whose types are not derived
//! yet are described as JSON of any shape. Every error is
//! `application/problem+json` ([`Problem`]); callers authenticate with an
//! API token (`Authorization: Bearer`) or the session cookie.
//! `.ci/api-contract` runs schemathesis against a running server with it.

use axum::http::Method;
use serde_json::{json, Map, Value};
use utoipa::{PartialSchema, ToSchema};

use app::auth::Access;

use crate::auth::Endpoint;

/// The body of every error answer (`application/problem+json`, RFC 9457),
/// as [`crate::error::Error`] writes it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `https://waymark.dev/problems/{code}`
    #[schema(rename = "type")]
    kind: String,
    /// The status's reason phrase.
    title: String,
    status: u16,
    /// Stable, for programs: `flow_not_found`, `too_long`, `invalid_json`…
    code: String,
    /// A sentence for people.
    detail: String,
    /// The field (or document path) at fault, when one is.
    field: Option<String>,
    path: Option<String>,
    /// `too_long`: the limit in characters.
    limit: Option<u64>,
    /// `stale_revision`: the draft's revision now.
    current_revision: Option<i64>,
    /// `publish_blocked`: the validator's errors.
    #[schema(value_type = Option<Vec<Object>>)]
    errors: Option<Vec<Value>>,
}

/// The description's own route: public, like the API's shape it tells.
pub fn endpoints() -> Vec<Endpoint> {
    let (path, access) = app::auth::API_DESCRIPTION;
    vec![Endpoint::new(Method::GET, path, access, serve)]
}

async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| document(&crate::api_endpoints()).to_string()).clone();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// The request body each operation that takes one reads: a schema derived
/// from the handler's type, `None` for a JSON value of any shape.
fn request_schema(method: &Method, path: &str) -> Option<(String, Value)> {
    fn derived<T: ToSchema>() -> Option<(String, Value)> {
        Some((T::name().into_owned(), serde_json::to_value(T::schema()).expect("a schema serialises")))
    }
    match (method.as_str(), path) {
        ("POST", "/flows") => derived::<crate::api::NewFlow>(),
        ("PATCH", "/flows/{id}") => derived::<crate::api::Rename>(),
        ("PUT", "/flows/{id}/draft") => derived::<crate::api::SaveDraft>(),
        ("POST", "/flows/{id}/publish") => derived::<crate::api::Publish>(),
        _ => None,
    }
}

/// What a successful answer carries, by how the route is written: files
/// for downloads, JSON otherwise.
fn success_media(path: &str) -> &'static str {
    if path.ends_with(".csv") || path.ends_with("/export") || path.starts_with("/data-files/") || path.ends_with("/pixel.gif") {
        "*/*"
    } else {
        "application/json"
    }
}

/// Bodies sent as something other than JSON (file uploads).
fn request_media(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/contacts/imports") => "multipart/form-data",
        ("POST", "/flows/{id}/enroll/csv") => "text/csv",
        _ => "application/json",
    }
}

fn operation_id(method: &Method, path: &str) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches(|c| c == '{' || c == '}').replace(['.', '-', '*'], "_"))
        .collect();
    format!("{}_{}", method.as_str().to_lowercase(), words.join("_"))
}

fn access_note(access: Access) -> &'static str {
    match access {
        Access::Public => "Public: no credentials.",
        Access::SignedIn => "Any signed-in user or API token.",
        Access::Marketer => "Marketers and admins (or a token).",
        Access::Admin => "Admins only.",
    }
}

/// The OpenAPI 3.1 document for `endpoints` (paths under `/api/v1`).
pub fn document(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(Problem::name().into_owned(), serde_json::to_value(Problem::schema()).expect("a schema serialises"));
    for endpoint in endpoints {
        let path = endpoint.path;
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let name = name.trim_start_matches('*');
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        let mut responses = Map::new();
        let success = json!({"description": "Done.", "content": {success_media(path): {"schema": {}}}});
        responses.insert("2XX".into(), success);
        responses.insert(
            "default".into(),
            json!({"description": "A problem: the request was refused or failed.",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
        );
        let mut operation = json!({
            "operationId": operation_id(&endpoint.method, path),
            "tags": [path.split('/').nth(1).unwrap_or("api")],
            "description": access_note(endpoint.access),
            "parameters": parameters,
            "responses": responses,
        });
        if endpoint.access == Access::Public {
            operation["security"] = json!([]);
        }
        if matches!(endpoint.method, Method::POST | Method::PUT | Method::PATCH) {
            let media = request_media(&endpoint.method, path);
            let schema = match request_schema(&endpoint.method, path) {
                Some((name, schema)) => {
                    schemas.insert(name.clone(), schema);
                    json!({"$ref": format!("#/components/schemas/{name}")})
                }
                None if media == "multipart/form-data" => {
                    json!({"type": "object", "properties": {"file": {"type": "string", "contentMediaType": "text/csv"}}})
                }
                None if media == "text/csv" => json!({"type": "string"}),
                None => json!({}),
            };
            // Publishing takes an empty body too.
            let required = !(endpoint.method == Method::POST && path.ends_with("/publish"));
            operation["requestBody"] = json!({"required": required, "content": {media: {"schema": schema}}});
        }
        let item = paths.entry(format!("/api/v1{path}")).or_insert_with(|| json!({}));
        item[endpoint.method.as_str().to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Waymark API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Flows, contacts, participants, events and settings. Every error is application/problem+json with a stable `code`; bodies are JSON up to 2 MiB.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (`waymark token add`)."},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "waymark_session", "description": "A signed-in browser's session; writes also need the same origin and the anti-forgery token."},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    })
}
