//! The REST API under `/api/v1`: flows, their drafts, validation,
//! publishing and versions. Bodies are JSON up to 2 MiB; every error is
//! `application/problem+json` with a stable `code` (see [`crate::error`]).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use app::core::FlowDocument;

use crate::error::{Error, Json, Result, MAX_STEPS};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/flows", get(list_flows).post(create_flow))
        .route("/flows/{id}", get(get_flow).patch(rename_flow).delete(delete_flow))
        .route("/flows/{id}/draft", get(get_draft).put(put_draft))
        .route("/flows/{id}/validate", post(validate_draft))
        .route("/flows/{id}/publish", post(publish))
        .route("/flows/{id}/versions", get(list_versions))
        .route("/flows/{id}/versions/{number}", get(get_version))
        .route("/flows/{id}/export", get(export))
        .route("/validate", post(validate_document))
        .route("/groups", get(list_groups))
        .route("/groups/{name}", axum::routing::put(put_group))
}

/// Reads a document from a JSON value, refusing unreadable shapes and
/// oversized flows before anything is written.
fn document(value: &Value) -> Result<FlowDocument> {
    let doc = FlowDocument::from_value(value).map_err(Error::InvalidDocument)?;
    if doc.steps.len() > MAX_STEPS {
        return Err(Error::TooManySteps(doc.steps.len()));
    }
    Ok(doc)
}

fn flow_id(raw: &str) -> Result<i64> {
    raw.parse().map_err(|_| Error::BadBody {
        status: StatusCode::NOT_FOUND,
        code: "flow_not_found",
        message: format!("There is no flow with id “{raw}”."),
    })
}

async fn list_flows(State(state): State<AppState>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.list().await?))
}

#[derive(Deserialize)]
struct NewFlow {
    name: Option<String>,
    document: Option<Value>,
}

/// Creates a flow: `{"name": ...}` for a fresh draft, or `{"document": ...}`
/// (with an optional `name` that wins over the document's) to import one.
async fn create_flow(State(state): State<AppState>, Json(body): Json<NewFlow>) -> Result<Response> {
    let document = body.document.as_ref().map(document).transpose()?;
    let name = body.name.or_else(|| document.as_ref().map(|doc| doc.name.clone())).unwrap_or_default();
    let flow = state.store.create(&name, document).await?;
    let location = format!("/api/v1/flows/{}", flow.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(flow)).into_response())
}

async fn get_flow(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.summary(flow_id(&id)?).await?))
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

async fn rename_flow(State(state): State<AppState>, Path(id): Path<String>, Json(body): Json<Rename>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.rename(flow_id(&id)?, &body.name).await?))
}

async fn delete_flow(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    state.store.delete(flow_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_draft(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let draft = state.store.draft(flow_id(&id)?).await?;
    let etag = format!("\"{}\"", draft.revision);
    Ok(([(header::ETAG, etag)], Json(draft)).into_response())
}

#[derive(Deserialize)]
struct SaveDraft {
    /// The revision the edit started from.
    revision: i64,
    document: Value,
}

async fn put_draft(State(state): State<AppState>, Path(id): Path<String>, Json(body): Json<SaveDraft>) -> Result<Response> {
    let id = flow_id(&id)?;
    let doc = document(&body.document)?;
    let draft = state.store.save_draft(id, body.revision, doc).await?;
    let etag = format!("\"{}\"", draft.revision);
    Ok(([(header::ETAG, etag)], Json(draft)).into_response())
}

async fn validate_draft(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.draft(flow_id(&id)?).await?.findings))
}

/// Validates a document that is not stored, as `waymark validate` does.
async fn validate_document(State(state): State<AppState>, Json(body): Json<Value>) -> Result<impl IntoResponse> {
    if !body.is_object() {
        return Err(Error::InvalidDocument(app::core::DocumentError {
            path: ".".into(),
            message: "a flow document must be a JSON object".into(),
        }));
    }
    if body["steps"].as_array().is_some_and(|steps| steps.len() > MAX_STEPS) {
        return Err(Error::TooManySteps(body["steps"].as_array().map_or(0, Vec::len)));
    }
    let findings = match FlowDocument::from_value(&body) {
        Ok(doc) => state.store.validate(None, &doc).await?,
        Err(_) => app::core::validate_value(&body, &Default::default()),
    };
    Ok(Json(findings))
}

#[derive(Deserialize, Default)]
struct Publish {
    /// When given, publish only if the draft is still at this revision.
    revision: Option<i64>,
}

/// The body is optional: an empty one publishes whatever the draft is now.
async fn publish(State(state): State<AppState>, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Response> {
    let body: Publish = if body.iter().all(u8::is_ascii_whitespace) {
        Publish::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| Error::BadBody {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_json",
            message: format!("The body is not a publish request: {err}"),
        })?
    };
    let revision = body.revision;
    let version = state.store.publish(flow_id(&id)?, revision, "local").await?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

async fn list_versions(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.versions(flow_id(&id)?).await?))
}

async fn get_version(State(state): State<AppState>, Path((id, number)): Path<(String, String)>) -> Result<impl IntoResponse> {
    let id = flow_id(&id)?;
    let number = number.parse().map_err(|_| Error::VersionNotFound { flow: id, number: 0 })?;
    Ok(Json(state.store.version(id, number).await?))
}

/// The draft as a downloadable `waymark.flow/v1` file.
async fn export(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let draft = state.store.draft(flow_id(&id)?).await?;
    let file: String = draft
        .document
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let disposition = format!("attachment; filename=\"{}.waymark.json\"", file.trim_matches('-'));
    Ok((
        [(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        draft.document.to_canonical_json(),
    )
        .into_response())
}

async fn list_groups(State(state): State<AppState>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.group_names().await?))
}

/// Creates or replaces an action group from a document; answers its findings.
async fn put_group(State(state): State<AppState>, Path(name): Path<String>, Json(body): Json<Value>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.save_group(&name, document(&body)?).await?))
}
