//! The runtime's REST routes under `/api/v1`: contacts, enrollment,
//! participants, their timelines, and agents' tasks.

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::http::Method;
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use sqlx::Row;

use app::core::contact::Contact;
use app::core::engine::{Event, ManualOutcome};

use app::auth::{Access, Role, Viewer};

use crate::audit;
use crate::auth::{Auth, Endpoint};
use crate::actor::Actor;
use crate::error::{Error, Json, Query, Result};
use crate::runtime::bulk::{self, BulkRequest, Criteria};
use crate::runtime::contacts::{self, ContactSearch};
use crate::runtime::{datafile, export, import};
use crate::AppState;
use crate::db::Pool;

/// The largest contact file an import takes: 2 GiB (streamed to disk, never held in memory).
pub const MAX_IMPORT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The runtime routes and who may use them. Agents reach their own tasks,
/// participants and contacts (`SignedIn`, narrowed by ownership below).
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Marketer, Public, SignedIn};
    vec![
        Endpoint::new(Method::POST, "/contacts", Marketer, create_contact),
        Endpoint::new(Method::GET, "/contacts", Marketer, list_contacts),
        Endpoint::new(Method::GET, "/contacts/export.csv", Marketer, export_contacts),
        Endpoint::new(Method::POST, "/contacts/imports", Marketer, import_contacts).with_body_limit(MAX_IMPORT_BYTES as usize),
        Endpoint::new(Method::GET, "/contacts/imports/{id}", Marketer, get_import),
        Endpoint::new(Method::GET, "/contacts/imports/{id}/errors.csv", Marketer, import_errors_csv),
        Endpoint::new(Method::GET, "/contacts/{id}", SignedIn, get_contact),
        Endpoint::new(Method::PUT, "/contacts/{id}", Marketer, update_contact),
        Endpoint::new(Method::DELETE, "/contacts/{id}", Marketer, delete_contact),
        Endpoint::new(Method::POST, "/contacts/{id}/lists", Marketer, add_to_list),
        Endpoint::new(Method::POST, "/flows/{id}/enroll", Marketer, enroll),
        Endpoint::new(Method::POST, "/flows/{id}/enroll/csv", Marketer, enroll_csv),
        Endpoint::new(Method::GET, "/flows/{id}/participants/counts", Marketer, counts),
        Endpoint::new(Method::POST, "/flows/{id}/migrate", Marketer, migrate),
        Endpoint::new(Method::GET, "/participants/{id}", SignedIn, get_participant),
        Endpoint::new(Method::GET, "/participants/{id}/timeline", SignedIn, timeline),
        Endpoint::new(Method::GET, "/participants/{id}/events", SignedIn, participant_events),
        Endpoint::new(Method::POST, "/participants/{id}/action", SignedIn, act),
        Endpoint::new(Method::POST, "/participants/{id}/retry", Marketer, retry),
        Endpoint::new(Method::GET, "/tasks", SignedIn, tasks),
        Endpoint::new(Method::POST, "/participants/bulk/preview", Marketer, bulk_preview),
        Endpoint::new(Method::POST, "/participants/bulk", Marketer, bulk_apply),
        Endpoint::new(Method::POST, "/participants/export.csv", Marketer, export_participants),
        Endpoint::new(Method::GET, "/participants/export.csv", Marketer, export_participants_link),
        Endpoint::new(Method::GET, "/bulk-runs", Marketer, list_runs),
        Endpoint::new(Method::GET, "/bulk-runs/{id}", Marketer, get_run),
        Endpoint::new(Method::POST, "/bulk-runs/{id}/undo", Marketer, undo_run),
        // Emailed to whoever asked for it: the signature and its 24-hour
        // expiry are the access check.
        Endpoint::new(Method::GET, "/data-files/{id}", Public, download_data_file),
    ]
}

/// An agent sees a participant whose contact they own, or who has a manual
/// step assigned to them; to them any other does not exist.
pub async fn check_participant_owner(pool: &Pool, viewer: &Viewer, participant: i64) -> Result<()> {
    if viewer.role != Role::Agent {
        return Ok(());
    }
    // A step's own owner, or the flow's default owner when the step names nobody.
    let owned: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM participants p JOIN contacts c ON c.id = p.contact_id JOIN flows f ON f.id = p.flow_id
         WHERE p.id = $1 AND (lower(c.owner) = lower($2) OR EXISTS (
             SELECT 1 FROM participant_actions a WHERE a.participant_id = p.id AND a.manual = 1
               AND lower(coalesce(a.owner, f.task_owner)) = lower($2)))",
    )
    .bind(participant)
    .bind(&viewer.email)
    .fetch_optional(pool)
    .await?;
    owned.map(|_| ()).ok_or(Error::ParticipantNotFound(participant))
}

/// Enrollment is rate limited per caller.
async fn enroll_allowed(auth: &Auth, viewer: &Viewer) -> Result<()> {
    auth.limits.enroll.check(&auth.pool, &viewer.actor()).await?.map_err(Error::RateLimited)
}

fn id(raw: &str, missing: fn(i64) -> Error) -> Result<i64> {
    raw.parse().map_err(|_| missing(0))
}

/// Creates a contact; lists it joins may enroll it into flows.
async fn create_contact(State(state): State<AppState>, Json(contact): Json<Contact>) -> Result<Response> {
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    let id = contacts::insert(&mut tx, &contact).await?;
    let lists: Vec<String> = contact.lists.iter().cloned().collect();
    let enrolled = state.runtime.enroll_by_lists(&mut tx, id, &lists).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "enrolled": enrolled}))).into_response())
}

#[derive(Deserialize)]
struct ListChange {
    list: String,
}

/// Adds a contact to a list (entry on list membership enrolls it).
async fn add_to_list(State(state): State<AppState>, Path(raw): Path<String>, Json(body): Json<ListChange>) -> Result<impl IntoResponse> {
    let id = id(&raw, Error::ContactNotFound)?;
    app::core::limits::check("list", body.list.trim(), app::core::limits::NAME)?;
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    let before = contacts::load(&mut tx, id).await?;
    let mut after = before.clone();
    after.lists.insert(body.list.trim().to_owned());
    contacts::save(&mut tx, id, &before, &after).await?;
    let enrolled = if before.lists.iter().any(|l| l.eq_ignore_ascii_case(body.list.trim())) {
        0
    } else {
        state.runtime.enroll_by_lists(&mut tx, id, &[body.list.trim().to_owned()]).await?
    };
    tx.commit().await?;
    Ok(Json(json!({"enrolled": enrolled})))
}

async fn get_contact(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let id = id(&raw, Error::ContactNotFound)?;
    let mut conn = state.runtime.pool().acquire().await?;
    let contact = contacts::load(&mut conn, id).await?;
    if !viewer.owns(contact.owner.as_deref()) {
        return Err(Error::ContactNotFound(id));
    }
    Ok(Json(crate::runtime::contacts::StoredContact { id, contact }))
}

#[derive(Deserialize)]
struct Enroll {
    #[serde(default)]
    contact_ids: Vec<i64>,
    /// Every member of this list.
    list: Option<String>,
}

async fn enroll(
    State(state): State<AppState>,
    State(auth): State<Auth>,
    Extension(viewer): Extension<Viewer>,
    Path(raw): Path<String>,
    Json(body): Json<Enroll>,
) -> Result<Response> {
    enroll_allowed(&auth, &viewer).await?;
    let flow = id(&raw, Error::FlowNotFound)?;
    let mut ids = body.contact_ids;
    if let Some(list) = &body.list {
        let mut conn = state.runtime.pool().acquire().await?;
        ids.extend(contacts::list_members(&mut conn, list).await?);
    }
    let (enrolled, kept_out) = state.runtime.enroll(flow, &ids).await?;
    let detail = format!("{} enrolled, {kept_out} kept out by re-entry rules", enrolled.len());
    audit::record(state.runtime.pool(), &viewer.actor(), "flow.enrolled", &format!("flow {flow}"), &detail).await?;
    Ok((StatusCode::CREATED, Json(json!({"enrolled": enrolled, "kept_out_by_reentry": kept_out}))).into_response())
}

/// Enrolls the contacts of a CSV file (header row; `email` or `mobile`
/// required; `timezone`, `owner` and any other column become fields).
/// Existing contacts are found by email, or by mobile; new ones are created.
/// A row without either is reported by its line number and nothing is
/// written for the file.
async fn enroll_csv(
    State(state): State<AppState>,
    State(auth): State<Auth>,
    Extension(viewer): Extension<Viewer>,
    Path(raw): Path<String>,
    body: std::result::Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response> {
    let body = body.map_err(|err| Error::BadBody {
        status: err.status(),
        code: "invalid_body",
        message: format!("The body cannot be read as text: {}", err.body_text()),
    })?;
    enroll_allowed(&auth, &viewer).await?;
    let flow = id(&raw, Error::FlowNotFound)?;
    let bad = |message: String| Error::BadBody { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_csv", message };
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body.as_bytes());
    let headers: Vec<String> = reader.headers().map_err(|err| bad(format!("The CSV cannot be read: {err}")))?.iter().map(|h| h.to_lowercase()).collect();
    if !headers.iter().any(|h| h == "email" || h == "mobile") {
        return Err(bad("The CSV needs an `email` or a `mobile` column.".into()));
    }
    let mut contacts_in_file = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|err| bad(format!("Line {line}: {err}")))?;
        let mut contact = Contact::default();
        for (header, value) in headers.iter().zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            match header.as_str() {
                "email" => contact.email = Some(value.to_owned()),
                "mobile" => contact.mobile = Some(value.to_owned()),
                "timezone" => contact.timezone = Some(value.to_owned()),
                "owner" => contact.owner = Some(value.to_owned()),
                field => {
                    contact.fields.insert(field.to_owned(), serde_json::Value::String(value.to_owned()));
                }
            }
        }
        if contact.email.is_none() && contact.mobile.is_none() {
            return Err(bad(format!("Line {line} has neither an email nor a mobile number.")));
        }
        contacts_in_file.push(contact);
    }
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    let mut ids = Vec::with_capacity(contacts_in_file.len());
    let mut created = 0;
    for contact in &contacts_in_file {
        // One indexed look-up each (the partial indexes need `IS NOT NULL`).
        let existing: Option<i64> = match (&contact.email, &contact.mobile) {
            (Some(email), _) => {
                sqlx::query_scalar("SELECT id FROM contacts WHERE email IS NOT NULL AND lower(email) = lower($1) LIMIT 1")
                    .bind(email)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            (None, Some(mobile)) => {
                sqlx::query_scalar("SELECT id FROM contacts WHERE mobile IS NOT NULL AND mobile = $1 LIMIT 1")
                    .bind(mobile)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            (None, None) => None,
        };
        let id = match existing {
            Some(id) => id,
            None => {
                created += 1;
                contacts::insert(&mut tx, contact).await?
            }
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    tx.commit().await?;
    let (enrolled, kept_out) = state.runtime.enroll(flow, &ids).await?;
    let detail = format!("{} enrolled from a CSV of {} rows", enrolled.len(), contacts_in_file.len());
    audit::record(state.runtime.pool(), &viewer.actor(), "flow.enrolled", &format!("flow {flow}"), &detail).await?;
    Ok((StatusCode::CREATED, Json(json!({"rows": contacts_in_file.len(), "contacts_created": created, "enrolled": enrolled, "kept_out_by_reentry": kept_out}))).into_response())
}

async fn counts(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let flow = id(&raw, Error::FlowNotFound)?;
    let rows = state.runtime.counts(flow).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(version, step, status, count)| json!({"version": version, "step": step, "status": status, "count": count}))
            .collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
struct Migrate {
    /// old step id -> step of the newest version; steps with the same id map to themselves.
    #[serde(default)]
    map: std::collections::HashMap<String, String>,
}

/// Moves participants on older versions onto the newest published one.
async fn migrate(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(raw): Path<String>,
    Json(body): Json<Migrate>,
) -> Result<impl IntoResponse> {
    let flow = id(&raw, Error::FlowNotFound)?;
    let (moved, left) = state.runtime.migrate(flow, &body.map).await?;
    let detail = format!("{moved} moved to the newest version, {left} left");
    audit::record(state.runtime.pool(), &viewer.actor(), "flow.participants_migrated", &format!("flow {flow}"), &detail).await?;
    Ok(Json(json!({"moved": moved, "left_on_old_version": left})))
}

async fn get_participant(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let participant = id(&raw, Error::ParticipantNotFound)?;
    check_participant_owner(state.runtime.pool(), &viewer, participant).await?;
    Ok(Json(state.runtime.participant(participant).await?))
}

async fn timeline(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let participant = id(&raw, Error::ParticipantNotFound)?;
    check_participant_owner(state.runtime.pool(), &viewer, participant).await?;
    Ok(Json(state.runtime.timeline(participant).await?))
}

/// The contact events a participant received, with what each did.
async fn participant_events(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let participant = id(&raw, Error::ParticipantNotFound)?;
    check_participant_owner(state.runtime.pool(), &viewer, participant).await?;
    state.runtime.participant(participant).await?;
    Ok(Json(state.runtime.participant_events(participant).await?))
}

#[derive(Deserialize)]
struct Act {
    /// completed, skipped or deferred.
    outcome: String,
    /// For deferred: when it is due again (RFC 3339).
    until: Option<String>,
    disposition: Option<String>,
}

/// An agent completes, skips or defers the participant's manual step.
async fn act(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Path(raw): Path<String>, Json(body): Json<Act>) -> Result<impl IntoResponse> {
    let participant = id(&raw, Error::ParticipantNotFound)?;
    check_participant_owner(state.runtime.pool(), &viewer, participant).await?;
    let bad = |message: String| Error::BadBody { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_action", message };
    let outcome = match body.outcome.as_str() {
        "completed" => ManualOutcome::Completed,
        "skipped" => ManualOutcome::Skipped,
        "deferred" => {
            let until = body.until.as_deref().ok_or_else(|| bad("A deferral needs `until`, the time it is due again.".into()))?;
            let until = until.parse().map_err(|_| bad(format!("“{until}” is not an RFC 3339 time.")))?;
            ManualOutcome::Deferred { until }
        }
        other => return Err(bad(format!("“{other}” is not completed, skipped or deferred."))),
    };
    Ok(Json(state.runtime.deliver(participant, Event::Manual { outcome, disposition: body.disposition }).await?))
}

/// Runs a failed participant's step again.
async fn retry(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    Ok(Json(state.runtime.retry(id(&raw, Error::ParticipantNotFound)?).await?))
}

#[derive(Deserialize)]
struct TaskQuery {
    owner: Option<String>,
}

/// Pending manual steps (calls, manual emails, tasks, callbacks), soonest first.
async fn tasks(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Query(query): Query<TaskQuery>) -> Result<impl IntoResponse> {
    // An agent's inbox is their own, whatever they ask for.
    let owner = if viewer.role == Role::Agent { Some(viewer.email.clone()) } else { query.owner };
    let rows = sqlx::query(
        "SELECT a.participant_id, a.step, a.kind, a.due_at, coalesce(p.reserved_for, a.owner, f.task_owner), a.subject, a.outcome, p.contact_id, p.flow_id
         FROM participant_actions a JOIN participants p ON p.id = a.participant_id JOIN flows f ON f.id = p.flow_id
         WHERE a.manual = 1 AND a.outcome IN ('pending', 'deferred') AND ($1 IS NULL OR lower(coalesce(p.reserved_for, a.owner, f.task_owner)) = lower($1))
         ORDER BY a.due_at LIMIT 500",
    )
    .bind(owner)
    .fetch_all(state.runtime.pool())
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                json!({
                    "participant_id": r.get::<i64, _>(0), "step": r.get::<String, _>(1), "kind": r.get::<String, _>(2),
                    "due_at": r.get::<String, _>(3), "owner": r.get::<Option<String>, _>(4),
                    "subject": r.get::<Option<String>, _>(5), "outcome": r.get::<String, _>(6),
                    "contact_id": r.get::<i64, _>(7), "flow_id": r.get::<i64, _>(8),
                })
            })
            .collect::<Vec<_>>(),
    ))
}

/// What an action would do (in words), to how many, and ten of them, before it runs.
async fn bulk_preview(State(state): State<AppState>, Json(body): Json<BulkRequest>) -> Result<impl IntoResponse> {
    Ok(Json(bulk::describe(state.runtime.pool(), &body, state.runtime.now()).await?))
}

/// Starts a bulk run in the background: 202 with the run, whose progress
/// `GET /bulk-runs/{id}` shows. Bad input and empty matches are refused
/// with nothing changed.
async fn bulk_apply(State(state): State<AppState>, actor: Actor, Json(body): Json<BulkRequest>) -> Result<Response> {
    let pool = state.runtime.pool().clone();
    let id = bulk::start(&state.runtime, &body, actor.as_str()).await?;
    let view = bulk::view(&pool, id).await?;
    let criteria = serde_json::to_string(&body.criteria).unwrap_or_default();
    audit::record(&pool, actor.as_str(), &format!("bulk.{}", body.action.as_str()), &format!("bulk run {id}"), &format!("criteria {criteria}")).await?;
    bulk::spawn(&state.runtime, id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, format!("/api/v1/bulk-runs/{id}"))], Json(view)).into_response())
}

async fn list_runs(State(state): State<AppState>) -> Result<impl IntoResponse> {
    Ok(Json(bulk::recent(state.runtime.pool(), 100).await?))
}

async fn get_run(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    Ok(Json(bulk::view(state.runtime.pool(), id(&raw, Error::RunNotFound)?).await?))
}

/// Undoes a finished pause, suppress, reserve/unreserve or set/cancel callback.
async fn undo_run(State(state): State<AppState>, actor: Actor, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let run = id(&raw, Error::RunNotFound)?;
    let undone = bulk::undo(state.runtime.pool(), run, actor.as_str(), state.runtime.now()).await?;
    audit::record(state.runtime.pool(), actor.as_str(), "bulk.undo", &format!("bulk run {run}"), &format!("{undone} participant(s) restored")).await?;
    Ok(Json(json!({"undone": undone, "run": bulk::view(state.runtime.pool(), run).await?})))
}

fn csv_response(name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response()
}

/// Participants matching criteria (JSON body), as CSV, streamed.
async fn export_participants(State(state): State<AppState>, Json(criteria): Json<Criteria>) -> Result<Response> {
    criteria.check()?;
    let body = Body::from_stream(export::stream(state.runtime.pool().clone(), export::ParticipantsExport { criteria, run: None }));
    Ok(csv_response("participants.csv", body))
}

#[derive(Deserialize)]
struct CriteriaQuery {
    /// The criteria JSON, as the POST takes it.
    #[serde(default)]
    criteria: Option<String>,
}

/// The same export as a link (`?criteria=` the JSON, URL-encoded), for the
/// participants page's button.
async fn export_participants_link(State(state): State<AppState>, Query(query): Query<CriteriaQuery>) -> Result<Response> {
    let text = query.criteria.unwrap_or_else(|| "{}".into());
    let criteria: Criteria = serde_json::from_str(&text)
        .map_err(|err| Error::Invalid { code: "invalid_criteria", message: format!("The criteria cannot be read: {err}.") })?;
    export_participants(State(state), Json(criteria)).await
}

/// Contacts matching `q` / `list`, as CSV with a column per custom field, streamed.
async fn export_contacts(State(state): State<AppState>, Query(search): Query<ContactSearch>) -> Result<Response> {
    let export = export::ContactsExport::new(state.runtime.pool(), search).await?;
    Ok(csv_response("contacts.csv", Body::from_stream(export::stream(state.runtime.pool().clone(), export))))
}

#[derive(Deserialize)]
struct Page {
    /// The `next` of the previous page.
    after: Option<String>,
    per_page: Option<i64>,
    #[serde(flatten)]
    search: ContactSearch,
}

/// A page of contacts matching `q` (email, name or mobile starting with it)
/// and `list`: newest first without `q`; `next` is the following page's `after`.
async fn list_contacts(State(state): State<AppState>, Query(query): Query<Page>) -> Result<impl IntoResponse> {
    let per_page = query.per_page.unwrap_or(50).clamp(1, 200);
    let mut conn = state.runtime.pool().acquire().await?;
    let page = contacts::search(&mut conn, &query.search, query.after.as_deref(), per_page).await?;
    Ok(Json(json!({"total": page.total, "more": page.more, "per_page": per_page, "contacts": page.contacts, "next": page.next})))
}

/// Replaces a contact's data (email, mobile, zone, owner, fields, lists, consent).
async fn update_contact(State(state): State<AppState>, Path(raw): Path<String>, Json(contact): Json<Contact>) -> Result<impl IntoResponse> {
    let id = id(&raw, Error::ContactNotFound)?;
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    let before = contacts::load(&mut tx, id).await?;
    contacts::update(&mut tx, id, &contact).await?;
    let joined: Vec<String> = contact.lists.difference(&before.lists).cloned().collect();
    let enrolled = state.runtime.enroll_by_lists(&mut tx, id, &joined).await?;
    tx.commit().await?;
    Ok(Json(json!({"id": id, "enrolled": enrolled})))
}

/// Erases one contact's personal data; its history stays.
async fn delete_contact(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let id = id(&raw, Error::ContactNotFound)?;
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    contacts::load(&mut tx, id).await?;
    let erased = contacts::erase(&mut tx, &format!("SELECT {id}"), &state.runtime.now().to_string()).await?;
    tx.commit().await?;
    Ok(Json(json!({"id": id, "erased": erased == 1})))
}

fn bad_import(message: String) -> Error {
    Error::BadBody { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_import", message }
}

/// Imports contacts from a CSV (multipart: an `options` part with JSON —
/// mapping, dedupe, match_on, list — and a `file` part). The file is
/// streamed to disk as it arrives, checked (header, mapping), then
/// imported in the background: 202 with the job to poll.
async fn import_contacts(
    State(state): State<AppState>,
    actor: Actor,
    multipart: std::result::Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response> {
    use tokio::io::AsyncWriteExt;
    // Not multipart, or no boundary: a problem like any other refusal
    // (axum's own answer is plain text).
    let mut multipart = multipart.map_err(|err| Error::BadBody {
        status: err.status(),
        code: "invalid_multipart",
        message: format!("The upload cannot be read: {}", err.body_text()),
    })?;
    let multipart_error = |err: axum::extract::multipart::MultipartError| Error::BadBody {
        status: err.status(),
        code: if err.status() == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_multipart" },
        message: format!("The upload cannot be read: {}", err.body_text()),
    };
    let mut options = import::ImportOptions::default();
    let mut file: Option<(tempfile::TempPath, Option<String>)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "options" => {
                let text = field.text().await.map_err(multipart_error)?;
                options = serde_json::from_str(&text).map_err(|err| bad_import(format!("The options cannot be read: {err}")))?;
            }
            "file" => {
                let name = field.file_name().map(str::to_owned);
                let (std_file, path) = tempfile::NamedTempFile::new().map_err(|err| Error::Internal(err.into()))?.into_parts();
                let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(std_file));
                let mut size = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    size += chunk.len() as u64;
                    if size > MAX_IMPORT_BYTES {
                        return Err(Error::BadBody {
                            status: StatusCode::PAYLOAD_TOO_LARGE,
                            code: "payload_too_large",
                            message: format!("A contact file may be at most {} GiB.", MAX_IMPORT_BYTES >> 30),
                        });
                    }
                    out.write_all(&chunk).await.map_err(|err| Error::Internal(err.into()))?;
                }
                out.flush().await.map_err(|err| Error::Internal(err.into()))?;
                file = Some((path, name));
            }
            other => return Err(bad_import(format!("“{other}” is not a part of an import; send `options` and `file`."))),
        }
    }
    let (path, name) = file.ok_or_else(|| bad_import("Send the CSV as a `file` part.".into()))?;
    import::check(&path, &options).await?;
    let job = import::create_job(&state.runtime, &path, name.as_deref(), &options, actor.as_str()).await?;
    let runtime = state.runtime.clone();
    tokio::spawn(async move {
        let _ = import::run(&runtime, job, path.to_path_buf(), options).await;
        drop(path); // the upload is removed once imported
    });
    let mut conn = state.runtime.pool().acquire().await?;
    let view = import::job(&mut conn, job, 0).await?;
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, format!("/api/v1/contacts/imports/{job}"))], Json(view)).into_response())
}

/// An import's progress and counts, with its first 100 refused rows.
async fn get_import(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let mut conn = state.runtime.pool().acquire().await?;
    Ok(Json(import::job(&mut conn, id(&raw, Error::ImportNotFound)?, 100).await?))
}

/// Every listed refused row of an import: line, reason.
async fn import_errors_csv(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response> {
    let job = id(&raw, Error::ImportNotFound)?;
    let mut conn = state.runtime.pool().acquire().await?;
    import::job(&mut conn, job, 0).await?;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT line, reason FROM import_errors WHERE import_id = $1 ORDER BY line").bind(job).fetch_all(&mut *conn).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["line", "reason"]).map_err(|err| Error::Internal(err.into()))?;
    for (line, reason) in rows {
        out.write_record([line.to_string(), export::escape_cell(&reason).into_owned()]).map_err(|err| Error::Internal(err.into()))?;
    }
    let bytes = out.into_inner().map_err(|err| Error::Internal(anyhow::anyhow!("{err}")))?;
    Ok(csv_response(&format!("import-{job}-errors.csv"), Body::from(bytes)))
}

#[derive(Deserialize)]
struct Signed {
    expires: Option<i64>,
    sig: Option<String>,
}

/// A data file behind its signed link: 403 `link_invalid` when the link was
/// changed, 410 `link_expired` after 24 hours, 410 `data_file_removed` when
/// a contact in it was erased since.
async fn download_data_file(State(state): State<AppState>, Path(raw): Path<String>, Query(signed): Query<Signed>) -> Result<Response> {
    let file = raw.parse::<i64>().map_err(|_| Error::LinkInvalid)?;
    let (Some(expires), Some(sig)) = (signed.expires, signed.sig) else { return Err(Error::LinkInvalid) };
    let path = datafile::open(state.runtime.pool(), file, expires, &sig, state.runtime.now()).await?;
    let opened = tokio::fs::File::open(&path).await.map_err(|err| Error::Internal(err.into()))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"waymark-data-{file}.zip\"")),
        ],
        body,
    )
        .into_response())
}
