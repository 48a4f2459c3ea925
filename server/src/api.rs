//! The REST API under `/api/v1`: flows, their drafts, validation,
//! publishing and versions. Bodies are JSON up to 2 MiB; every error is
//! `application/problem+json` with a stable `code` (see [`crate::error`]).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::http::Method;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;

use app::core::FlowDocument;

use app::auth::{Access, Viewer};

use crate::audit;
use crate::auth::Endpoint;
use crate::error::{Error, Json, Query, Result, MAX_STEPS};
use crate::AppState;

/// The flow routes and who may use them: marketers (and admins) build
/// flows; the audit log is for admins.
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Admin, Marketer};
    vec![
        Endpoint::new(Method::GET, "/flows", Marketer, list_flows),
        Endpoint::new(Method::POST, "/flows", Marketer, create_flow),
        Endpoint::new(Method::GET, "/flows/{id}", Marketer, get_flow),
        Endpoint::new(Method::PATCH, "/flows/{id}", Marketer, rename_flow),
        Endpoint::new(Method::DELETE, "/flows/{id}", Marketer, delete_flow),
        Endpoint::new(Method::GET, "/flows/{id}/draft", Marketer, get_draft),
        Endpoint::new(Method::PUT, "/flows/{id}/draft", Marketer, put_draft),
        Endpoint::new(Method::POST, "/flows/{id}/validate", Marketer, validate_draft),
        Endpoint::new(Method::POST, "/flows/{id}/publish", Marketer, publish),
        Endpoint::new(Method::GET, "/flows/{id}/versions", Marketer, list_versions),
        Endpoint::new(Method::GET, "/flows/{id}/versions/{number}", Marketer, get_version),
        Endpoint::new(Method::GET, "/flows/{id}/export", Marketer, export),
        Endpoint::new(Method::POST, "/validate", Marketer, validate_document),
        Endpoint::new(Method::GET, "/groups", Marketer, list_groups),
        Endpoint::new(Method::PUT, "/groups/{name}", Marketer, put_group),
        Endpoint::new(Method::GET, "/audit", Admin, audit_log),
    ]
}

#[derive(Deserialize)]
struct AuditQuery {
    action: Option<String>,
    limit: Option<i64>,
}

/// The audit log, newest first; `action` filters by prefix (`flow.`, `bulk.`…).
async fn audit_log(State(state): State<AppState>, Query(query): Query<AuditQuery>) -> Result<impl IntoResponse> {
    Ok(Json(audit::entries(state.store.pool(), query.action.as_deref(), query.limit.unwrap_or(200)).await?))
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

/// `{"name": ...}` for a fresh draft, or `{"document": ...}` to import one.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct NewFlow {
    name: Option<String>,
    /// A `waymark.flow/v1` document.
    #[schema(value_type = Option<Object>)]
    document: Option<Value>,
}

/// Creates a flow: `{"name": ...}` for a fresh draft, or `{"document": ...}`
/// (with an optional `name` that wins over the document's) to import one.
async fn create_flow(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(body): Json<NewFlow>) -> Result<Response> {
    let document = body.document.as_ref().map(document).transpose()?;
    let name = body.name.or_else(|| document.as_ref().map(|doc| doc.name.clone())).unwrap_or_default();
    let flow = state.store.create(&name, document).await?;
    audit::record(state.store.pool(), &viewer.actor(), "flow.created", &flow_subject(flow.id, &flow.name), "").await?;
    let location = format!("/api/v1/flows/{}", flow.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(flow)).into_response())
}

async fn get_flow(State(state): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse> {
    Ok(Json(state.store.summary(flow_id(&id)?).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct Rename {
    name: String,
}

async fn rename_flow(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Json(body): Json<Rename>,
) -> Result<impl IntoResponse> {
    let flow = state.store.rename(flow_id(&id)?, &body.name).await?;
    audit::record(state.store.pool(), &viewer.actor(), "flow.renamed", &flow_subject(flow.id, &flow.name), "").await?;
    Ok(Json(flow))
}

async fn delete_flow(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(id): Path<String>) -> Result<StatusCode> {
    let id = flow_id(&id)?;
    let name = state.store.summary(id).await?.name;
    state.store.delete(id).await?;
    audit::record(state.store.pool(), &viewer.actor(), "flow.deleted", &flow_subject(id, &name), "").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How the audit log names a flow.
pub fn flow_subject(id: i64, name: &str) -> String {
    format!("flow {id} “{name}”")
}

async fn get_draft(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let draft = state.store.draft(flow_id(&id)?).await?;
    let etag = format!("\"{}\"", draft.revision);
    Ok(([(header::ETAG, etag)], Json(draft)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct SaveDraft {
    /// The revision the edit started from.
    revision: i64,
    /// A `waymark.flow/v1` document.
    #[schema(value_type = Object)]
    document: Value,
}

async fn put_draft(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Json(body): Json<SaveDraft>,
) -> Result<Response> {
    let id = flow_id(&id)?;
    let doc = document(&body.document)?;
    let name = doc.name.clone();
    let draft = state.store.save_draft(id, body.revision, doc).await?;
    let detail = format!("revision {}", draft.revision);
    audit::record_coalesced(state.store.pool(), &viewer.actor(), "flow.draft_saved", &flow_subject(id, &name), &detail).await?;
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct Publish {
    /// When given, publish only if the draft is still at this revision.
    revision: Option<i64>,
}

/// The body is optional: an empty one publishes whatever the draft is now.
async fn publish(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Response> {
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
    let version = state.store.publish(flow_id(&id)?, revision, &viewer.actor()).await?;
    let subject = flow_subject(version.version.flow_id, &version.document.name);
    audit::record(state.store.pool(), &viewer.actor(), "flow.published", &subject, &format!("version {}", version.version.number)).await?;
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
async fn put_group(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Result<impl IntoResponse> {
    let findings = state.store.save_group(&name, document(&body)?).await?;
    audit::record(state.store.pool(), &viewer.actor(), "group.saved", &format!("action group “{name}”"), "").await?;
    Ok(Json(findings))
}
