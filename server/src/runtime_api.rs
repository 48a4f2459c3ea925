//! The runtime's REST routes under `/api/v1`: contacts, enrollment,
//! participants, their timelines, and agents' tasks.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
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
use crate::error::{Error, Json, Result};
use crate::runtime::contacts;
use crate::AppState;

/// The runtime routes and who may use them. Agents reach their own tasks,
/// participants and contacts (`SignedIn`, narrowed by ownership below).
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Marketer, SignedIn};
    vec![
        Endpoint::new(Method::POST, "/contacts", Marketer, create_contact),
        Endpoint::new(Method::GET, "/contacts/{id}", SignedIn, get_contact),
        Endpoint::new(Method::POST, "/contacts/{id}/lists", Marketer, add_to_list),
        Endpoint::new(Method::POST, "/flows/{id}/enroll", Marketer, enroll),
        Endpoint::new(Method::POST, "/flows/{id}/enroll/csv", Marketer, enroll_csv),
        Endpoint::new(Method::GET, "/flows/{id}/participants/counts", Marketer, counts),
        Endpoint::new(Method::POST, "/flows/{id}/migrate", Marketer, migrate),
        Endpoint::new(Method::GET, "/participants/{id}", SignedIn, get_participant),
        Endpoint::new(Method::GET, "/participants/{id}/timeline", SignedIn, timeline),
        Endpoint::new(Method::POST, "/participants/{id}/action", SignedIn, act),
        Endpoint::new(Method::POST, "/participants/{id}/retry", Marketer, retry),
        Endpoint::new(Method::GET, "/tasks", SignedIn, tasks),
        Endpoint::new(Method::POST, "/participants/bulk/preview", Marketer, bulk_preview),
        Endpoint::new(Method::POST, "/participants/bulk", Marketer, bulk_apply),
    ]
}

/// An agent sees a participant whose contact they own, or who has a manual
/// step assigned to them; to them any other does not exist.
pub async fn check_participant_owner(pool: &sqlx::SqlitePool, viewer: &Viewer, participant: i64) -> Result<()> {
    if viewer.role != Role::Agent {
        return Ok(());
    }
    let owned: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM participants p JOIN contacts c ON c.id = p.contact_id
         WHERE p.id = ?1 AND (lower(c.owner) = lower(?2) OR EXISTS (
             SELECT 1 FROM participant_actions a WHERE a.participant_id = p.id AND a.manual = 1 AND lower(a.owner) = lower(?2)))",
    )
    .bind(participant)
    .bind(&viewer.email)
    .fetch_optional(pool)
    .await?;
    owned.map(|_| ()).ok_or(Error::ParticipantNotFound(participant))
}

/// Enrollment is rate limited per caller.
fn enroll_allowed(auth: &Auth, viewer: &Viewer) -> Result<()> {
    auth.limits.enroll.check(&viewer.actor()).map_err(Error::RateLimited)
}

fn id(raw: &str, missing: fn(i64) -> Error) -> Result<i64> {
    raw.parse().map_err(|_| missing(0))
}

/// Creates a contact; lists it joins may enroll it into flows.
async fn create_contact(State(state): State<AppState>, Json(contact): Json<Contact>) -> Result<Response> {
    let mut tx = state.runtime.pool().begin().await?;
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
    let mut tx = state.runtime.pool().begin().await?;
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
    enroll_allowed(&auth, &viewer)?;
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
    body: String,
) -> Result<Response> {
    enroll_allowed(&auth, &viewer)?;
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
    let mut tx = state.runtime.pool().begin().await?;
    let mut ids = Vec::with_capacity(contacts_in_file.len());
    let mut created = 0;
    for contact in &contacts_in_file {
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM contacts WHERE (?1 IS NOT NULL AND lower(email) = lower(?1)) OR (?1 IS NULL AND mobile = ?2) LIMIT 1",
        )
        .bind(&contact.email)
        .bind(&contact.mobile)
        .fetch_optional(&mut *tx)
        .await?;
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
        "SELECT a.participant_id, a.step, a.kind, a.due_at, a.owner, a.subject, a.outcome, p.contact_id, p.flow_id
         FROM participant_actions a JOIN participants p ON p.id = a.participant_id
         WHERE a.manual = 1 AND a.outcome IN ('pending', 'deferred') AND (?1 IS NULL OR lower(a.owner) = lower(?1))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkRequest {
    action: crate::runtime::bulk::Action,
    #[serde(default)]
    criteria: crate::runtime::bulk::Criteria,
    disposition: Option<String>,
}

/// What an action would do and to how many, before it runs.
async fn bulk_preview(State(state): State<AppState>, Json(body): Json<BulkRequest>) -> Result<impl IntoResponse> {
    let (count, sample) = crate::runtime::bulk::preview(state.runtime.pool(), &body.criteria).await?;
    Ok(Json(json!({"action": body.action.as_str(), "effect": body.action.effect(), "count": count, "sample": sample})))
}

async fn bulk_apply(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(body): Json<BulkRequest>) -> Result<impl IntoResponse> {
    let changed = crate::runtime::bulk::apply(
        state.runtime.pool(),
        &body.criteria,
        &body.action,
        body.disposition.as_deref(),
        &viewer.actor(),
        state.runtime.now(),
    )
    .await?;
    let criteria = serde_json::to_string(&body.criteria).unwrap_or_default();
    let detail = format!("{changed} participant(s); criteria {criteria}");
    audit::record(state.runtime.pool(), &viewer.actor(), &format!("bulk.{}", body.action.as_str()), "participants", &detail).await?;
    Ok(Json(json!({"action": body.action.as_str(), "changed": changed})))
}
