//! The one error type of the HTTP layer, answered as
//! `application/problem+json` with a stable `code`.
//!
//! Database and internal errors are logged and answered with a generic 500;
//! their text never reaches the client.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use app::core::{DocumentError, Finding};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most a request body may be: 2 MiB.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// The most steps a flow may have.
pub const MAX_STEPS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404 `flow_not_found`.
    #[error("There is no flow with id {0}.")]
    FlowNotFound(i64),
    /// 404 `version_not_found`.
    #[error("Flow {flow} has no published version {number}.")]
    VersionNotFound { flow: i64, number: i64 },
    /// 404 `contact_not_found`.
    #[error("There is no contact with id {0}.")]
    ContactNotFound(i64),
    /// 404 `participant_not_found`.
    #[error("There is no participant with id {0}.")]
    ParticipantNotFound(i64),
    /// 404 `import_not_found`.
    #[error("There is no contact import with id {0}.")]
    ImportNotFound(i64),
    /// 404 `bulk_run_not_found`.
    #[error("There is no bulk run with id {0}.")]
    RunNotFound(i64),
    /// 409 `job_taken_over`: the process went quiet past its heartbeat and
    /// another one carries the job on (see `runtime::jobs`).
    #[error("Job {0} was taken over by another process after this one went quiet; it carries on there.")]
    JobTakenOver(i64),
    /// 403 `link_invalid`: a download link whose signature does not match.
    #[error("This download link is not valid: it was changed or is incomplete. Ask for the data file again.")]
    LinkInvalid,
    /// 410 `link_expired`: a download link past its 24 hours.
    #[error("This download link expired at {0}; links are valid for 24 hours. Ask for the data file again.")]
    LinkExpired(String),
    /// 410 `data_file_removed`: a contact in the data file was erased since it was made.
    #[error("This data file was removed: a contact in it was erased since it was made. Ask for the data file again.")]
    DataFileRemoved,
    /// 409 `contact_exists`.
    #[error("A contact with the email “{0}” already exists.")]
    ContactExists(String),
    /// 409 `flow_has_participants`.
    #[error("Flow {0} has participants; cancel or move them before deleting it.")]
    FlowHasParticipants(i64),
    /// 409 `nothing_to_do`: the participant is not waiting for a person.
    #[error("Participant {0} is not waiting for a person to act.")]
    NoPendingAction(i64),
    /// 409 `not_failed`: only a failed participant can be retried.
    #[error("Participant {0} has not failed; only failed participants can be retried.")]
    NotFailed(i64),
    /// 422 `flow_not_published`.
    #[error("Flow {0} has no published version yet; publish it before enrolling.")]
    NotPublished(i64),
    /// 422 `invalid_integration`: an integration setting is missing or wrong.
    #[error("The integration setting {field} {message}.")]
    InvalidIntegration { field: String, message: String },
    /// 403 `bad_signature`: a provider callback that is not signed with the account's token.
    #[error("This callback is not signed by the configured SMS and call provider.")]
    BadSignature,
    /// 404 `message_not_found`: a delivery report for a message we did not send.
    #[error("No message with the provider id “{0}” was sent.")]
    MessageNotFound(String),
    /// 404 `call_not_found`: a status report for a call we did not place.
    #[error("No call with the provider id “{0}” was placed.")]
    CallNotFound(String),
    /// 404 `not_found`: no such route.
    #[error("There is nothing at this address.")]
    RouteNotFound,
    /// 405 `method_not_allowed`: the route exists, not for this method.
    #[error("This address does not take {0} requests.")]
    MethodNotAllowed(String),
    /// 403 `csrf_token_missing`: a form-encoded request riding on the
    /// session cookie without the session's anti-forgery token (an HTML
    /// form, possibly one injected into a page, cannot send it).
    #[error("This form was not sent by Waymark's own page script, so it was refused (forgery protection). Reload the page and try again.")]
    CsrfTokenMissing,
    /// 403 `session_changed`: a script sent a session token, but not this
    /// session's: a page loaded before the browser signed in again (here
    /// or in another tab). Only a script can send the header, so this is
    /// our own page gone stale (or a script that could read the page's
    /// token anyway). Nothing was done.
    #[error("You signed in again since this page was loaded (in this tab or another), so nothing was done. Reload the page to continue.")]
    SessionChanged,
    /// 422 `too_long`: a text over its documented limit (`app::core::limits`);
    /// the problem's `field` names it.
    #[error("{0}")]
    TooLong(app::core::limits::TooLong),
    /// 409 `flow_name_taken`.
    #[error("A flow named “{0}” already exists; choose another name.")]
    NameTaken(String),
    /// 409 `stale_revision`: the draft was saved elsewhere since it was read.
    #[error("This draft was changed elsewhere (now revision {current}, you had {given}). Reload it before saving, so nothing is lost.")]
    StaleRevision { current: i64, given: i64 },
    /// 422 `invalid_name`.
    #[error("A flow needs a name.")]
    EmptyName,
    /// 422 `invalid_document`: not a readable flow document.
    #[error("The flow document cannot be read at {}: {}.", .0.path, .0.message)]
    InvalidDocument(DocumentError),
    /// 422 `too_many_steps`.
    #[error("A flow may have at most {MAX_STEPS} steps; this one has {0}.")]
    TooManySteps(usize),
    /// 422 `publish_blocked`, listing the errors.
    #[error("The flow has {} error(s) to fix before it can be published.", .0.len())]
    PublishBlocked(Vec<Finding>),
    /// 400 `invalid_json` or 415 `unsupported_media_type`, from the body extractor.
    #[error("{message}")]
    BadBody { status: StatusCode, code: &'static str, message: String },
    /// 413 `payload_too_large`.
    #[error("The request body is larger than the {} MiB limit.", MAX_BODY_BYTES / 1024 / 1024)]
    PayloadTooLarge,
    /// 422 with its own code: a value that cannot be used.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// 422 with its own code, naming the field at fault (`events[3].name`).
    #[error("{message}")]
    InvalidField { code: &'static str, field: String, message: String },
    /// 409 with its own code: the request conflicts with what is stored.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 409 `review_pending`: publishing waits for an admin to acknowledge warnings.
    #[error("An admin must review this flow first: {0} warning(s) are not acknowledged yet (see Validation review).")]
    ReviewPending(usize),
    /// 401 `unauthenticated`: no valid session or token.
    #[error("Sign in first, or send a valid API token as “Authorization: Bearer …”.")]
    Unauthenticated,
    /// 401 `invalid_token`: a bearer token that is unknown or revoked.
    #[error("This API token is not valid; it may have been revoked.")]
    InvalidToken,
    /// 403 `forbidden`: signed in, but the role may not do this.
    #[error("Your role ({0}) may not do this.")]
    Forbidden(&'static str),
    /// 403 `read_only_token`.
    #[error("This API token may only read; ask an admin for a write token.")]
    ReadOnlyToken,
    /// 403 `cross_site_request`: a state-changing request from another site.
    #[error("This request did not come from Waymark's own pages, so it was refused (cross-site request protection).")]
    CrossSite,
    /// 429 `rate_limited`, with Retry-After.
    #[error("Too many attempts; try again in {} second(s).", .0.as_secs())]
    RateLimited(std::time::Duration),
    /// 500 `internal`; logged, never shown.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// 500 `internal`; logged, never shown.
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::FlowNotFound(_)
            | Error::VersionNotFound { .. }
            | Error::RouteNotFound
            | Error::ContactNotFound(_)
            | Error::ParticipantNotFound(_)
            | Error::ImportNotFound(_)
            | Error::RunNotFound(_)
            | Error::MessageNotFound(_)
            | Error::CallNotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::LinkInvalid | Error::BadSignature => StatusCode::FORBIDDEN,
            Error::LinkExpired(_) | Error::DataFileRemoved => StatusCode::GONE,
            Error::NameTaken(_)
            | Error::StaleRevision { .. }
            | Error::ContactExists(_)
            | Error::FlowHasParticipants(_)
            | Error::NoPendingAction(_)
            | Error::NotFailed(_)
            | Error::JobTakenOver(_) => StatusCode::CONFLICT,
            Error::EmptyName
            | Error::InvalidDocument(_)
            | Error::TooManySteps(_)
            | Error::PublishBlocked(_)
            | Error::InvalidIntegration { .. }
            | Error::NotPublished(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::BadBody { status, .. } => *status,
            Error::Invalid { .. } | Error::InvalidField { .. } | Error::TooLong(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { .. } | Error::ReviewPending(_) => StatusCode::CONFLICT,
            Error::Unauthenticated | Error::InvalidToken => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::ReadOnlyToken | Error::CrossSite | Error::CsrfTokenMissing | Error::SessionChanged => StatusCode::FORBIDDEN,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::FlowNotFound(_) => "flow_not_found",
            Error::VersionNotFound { .. } => "version_not_found",
            Error::RouteNotFound => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::TooLong(_) => "too_long",
            Error::CsrfTokenMissing => "csrf_token_missing",
            Error::SessionChanged => "session_changed",
            Error::InvalidIntegration { .. } => "invalid_integration",
            Error::BadSignature => "bad_signature",
            Error::MessageNotFound(_) => "message_not_found",
            Error::CallNotFound(_) => "call_not_found",
            Error::ContactNotFound(_) => "contact_not_found",
            Error::ParticipantNotFound(_) => "participant_not_found",
            Error::ContactExists(_) => "contact_exists",
            Error::ImportNotFound(_) => "import_not_found",
            Error::RunNotFound(_) => "bulk_run_not_found",
            Error::LinkInvalid => "link_invalid",
            Error::LinkExpired(_) => "link_expired",
            Error::DataFileRemoved => "data_file_removed",
            Error::FlowHasParticipants(_) => "flow_has_participants",
            Error::NoPendingAction(_) => "nothing_to_do",
            Error::NotFailed(_) => "not_failed",
            Error::JobTakenOver(_) => "job_taken_over",
            Error::NotPublished(_) => "flow_not_published",
            Error::NameTaken(_) => "flow_name_taken",
            Error::StaleRevision { .. } => "stale_revision",
            Error::EmptyName => "invalid_name",
            Error::InvalidDocument(_) => "invalid_document",
            Error::TooManySteps(_) => "too_many_steps",
            Error::PublishBlocked(_) => "publish_blocked",
            Error::BadBody { code, .. } | Error::Invalid { code, .. } | Error::InvalidField { code, .. } | Error::Conflict { code, .. } => code,
            Error::ReviewPending(_) => "review_pending",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidToken => "invalid_token",
            Error::Forbidden(_) => "forbidden",
            Error::ReadOnlyToken => "read_only_token",
            Error::CrossSite => "cross_site_request",
            Error::RateLimited(_) => "rate_limited",
            Error::PayloadTooLarge => "payload_too_large",
            Error::Database(_) | Error::Internal(_) => "internal",
        }
    }

    /// What a person reads: internal details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Database(_) | Error::Internal(_) => "Something went wrong on our side; it has been logged.".into(),
            other => other.to_string(),
        }
    }

    /// For the pages' server functions: the sentence a marketer reads;
    /// internal errors are logged and stay generic.
    pub fn into_server_fn_error(self) -> leptos::prelude::ServerFnError {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "server function failed");
        }
        leptos::prelude::ServerFnError::new(self.public_message())
    }

    /// Turns a unique-constraint violation on the flow name into `NameTaken`.
    pub fn from_insert(err: sqlx::Error, name: &str) -> Error {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Error::NameTaken(name.to_owned()),
            _ => Error::Database(err),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut body = json!({
            "type": format!("https://waymark.dev/problems/{}", self.code()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": self.code(),
            "detail": self.public_message(),
        });
        match &self {
            Error::PublishBlocked(errors) => body["errors"] = json!(errors),
            Error::StaleRevision { current, .. } => body["current_revision"] = json!(current),
            Error::InvalidDocument(err) => body["path"] = Value::String(err.path.clone()),
            Error::InvalidIntegration { field, .. } | Error::InvalidField { field, .. } => body["field"] = Value::String(field.clone()),
            Error::TooLong(err) => {
                body["field"] = Value::String(err.field.clone());
                body["limit"] = json!(err.limit);
            }
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Error::RateLimited(wait) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
        if matches!(self, Error::Unauthenticated | Error::InvalidToken) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"waymark\""));
        }
        response
    }
}

impl From<app::core::limits::TooLong> for Error {
    fn from(err: app::core::limits::TooLong) -> Self {
        Error::TooLong(err)
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        use std::error::Error as _;
        // A body over the limit surfaces as a length-limit error deep in the chain.
        let mut source = rejection.source();
        while let Some(err) = source {
            if err.to_string().contains("length limit exceeded") {
                return Error::PayloadTooLarge;
            }
            source = err.source();
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Error::BadBody {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "Send the body as JSON, with Content-Type: application/json.".into(),
            },
            JsonRejection::JsonDataError(err) => Error::BadBody {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_body",
                message: format!("The body does not have the expected fields: {}", err.body_text()),
            },
            other => Error::BadBody {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_json",
                message: format!("The body is not valid JSON: {}", other.body_text()),
            },
        }
    }
}

/// `axum::Json`, with its rejections answered as problems.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Self {
        Error::BadBody { status: StatusCode::BAD_REQUEST, code: "invalid_query", message: format!("The query cannot be read: {}", rejection.body_text()) }
    }
}

/// `axum::extract::Query`, with its rejections answered as problems
/// (`invalid_query`), not plain text.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);
