//! The shapes of the API's answers and bodies, for the OpenAPI description.
//!
//! Each type here is the schema (derived by `utoipa::ToSchema`) of a type
//! a handler reads or writes, field for field as serde writes it, for the
//! types not derived where they live (the `app` crate's `*_api` types
//! derive it themselves with `ssr`: flow summaries, the audit log, the
//! report). These are kept beside the description because their types
//! live in the store, the runtime and `app::core` (which also builds for
//! the browser), modules other work changes. `server/tests/openapi.rs`
//! validates what every handler answers for a sample call against these
//! schemas (JSON Schema 2020-12, Python's `jsonschema`), so a field a
//! handler drops, renames, retypes or adds fails it (but within the
//! documents and settings described as open objects). Where the handler's type is a JSON
//! object of any shape (settings kept as JSON), so is the schema.
//!
//! `Option` fields may be absent or null; the rest are always written. The
//! answers' types are closed (`deny_unknown_fields`: no other field), so a
//! field a handler adds fails the test too, until it is described here.
//! (`Deserialize` is derived only for the serde attributes utoipa reads.)

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `app::core::FlowDocument`: a `waymark.flow/v1` document
/// (FLOW_FORMAT.md); steps' settings depend on their kind.
#[derive(ToSchema, Deserialize)]
pub struct FlowDocument {
    format: Option<String>,
    name: Option<String>,
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    steps: Option<Vec<Step>>,
    edges: Option<Vec<Edge>>,
}

/// `app::core::flow::Step`.
#[derive(ToSchema, Deserialize)]
pub struct Step {
    id: String,
    /// `start`, `send_email`, `wait`, `wait_until`, `webhook`, `exit`…
    kind: String,
    name: Option<String>,
    #[schema(value_type = Option<Object>)]
    position: Option<Value>,
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    #[schema(value_type = Option<Object>)]
    guard: Option<Value>,
}

/// `app::core::flow::Edge`: `from`'s `port` leads to `to`.
#[derive(ToSchema, Deserialize)]
pub struct Edge {
    from: String,
    port: String,
    to: String,
}

/// `app::core::Findings`: what the validator says.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Findings {
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

/// `app::core::Finding`: one problem, pointing at the step (and port or
/// setting) it concerns.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable: `unknown_field`, `unreachable_step`, `invalid_setting`…
    code: String,
    step: Option<String>,
    port: Option<String>,
    setting: Option<String>,
    message: String,
}

/// `store::Draft`: a flow's draft with the revision a save must name.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    revision: i64,
    document: FlowDocument,
    findings: Findings,
}

/// `store::Version`: a published version.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    flow_id: i64,
    number: i64,
    published_at: String,
    published_by: String,
}

/// `store::VersionDocument`: a published version with its frozen document.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionDocument {
    flow_id: i64,
    number: i64,
    published_at: String,
    published_by: String,
    document: FlowDocument,
}

/// `app::core::contact::Contact`: a contact as FLOW_FORMAT.md writes it.
#[derive(ToSchema, Deserialize)]
pub struct Contact {
    email: Option<String>,
    mobile: Option<String>,
    /// IANA zone such as `Europe/Paris`.
    timezone: Option<String>,
    /// The record owner (a user id).
    owner: Option<String>,
    #[schema(value_type = Option<Object>)]
    fields: Option<Value>,
    lists: Option<Vec<String>>,
    /// `email`, `sms`, `call`, `all`, `undeliverable:ADDRESS`.
    opted_out: Option<Vec<String>>,
    blocked: Option<bool>,
    /// Messages sent to the contact lately, by any flow.
    #[schema(value_type = Option<Vec<Object>>)]
    recent: Option<Vec<Value>>,
}

/// `runtime::contacts::StoredContact`: a stored contact with its id (and
/// the contact's fields beside it).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredContact {
    id: i64,
    email: Option<String>,
    mobile: Option<String>,
    timezone: Option<String>,
    owner: Option<String>,
    #[schema(value_type = Object)]
    fields: Value,
    lists: Vec<String>,
    opted_out: Option<Vec<String>>,
    blocked: Option<bool>,
    #[schema(value_type = Option<Vec<Object>>)]
    recent: Option<Vec<Value>>,
}

/// `POST /contacts`, `PUT /contacts/{id}`: the contact and the flows its
/// change enrolled it in.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSaved {
    id: i64,
    enrolled: i64,
}

/// `DELETE /contacts/{id}`: the contact's personal data erased.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactErased {
    id: i64,
    erased: bool,
}

/// `GET /contacts`: one page of the search.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPage {
    /// Matching contacts (counted up to a bound).
    total: i64,
    /// More than `total` match.
    more: bool,
    per_page: i64,
    contacts: Vec<StoredContact>,
    /// Pass as `after` for the next page.
    next: Option<String>,
}

/// `runtime_api::ListChange`: the list to add the contact to.
#[derive(ToSchema, Deserialize)]
pub struct ListChange {
    list: String,
}

/// Participants a change enrolled.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolled {
    enrolled: i64,
}

/// `runtime_api::Enroll`: contacts by id, or every member of a list.
#[derive(ToSchema, Deserialize)]
pub struct Enroll {
    #[serde(default)]
    contact_ids: Vec<i64>,
    list: Option<String>,
}

/// `POST /flows/{id}/enroll`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The participants made.
    enrolled: Vec<i64>,
    /// Contacts the flow's re-entry rule kept out.
    kept_out_by_reentry: i64,
}

/// `POST /flows/{id}/enroll/csv`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvEnrollment {
    rows: i64,
    contacts_created: i64,
    enrolled: Vec<i64>,
    kept_out_by_reentry: i64,
}

/// `GET /flows/{id}/participants/counts`: participants per version, step
/// and status.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantCount {
    version: i64,
    step: Option<String>,
    status: String,
    count: i64,
}

/// `runtime_api::Migrate`: old step id → step of the newest version.
#[derive(ToSchema, Deserialize)]
pub struct Migrate {
    #[serde(default)]
    #[schema(value_type = Object)]
    map: Value,
}

/// `POST /flows/{id}/migrate`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migrated {
    moved: i64,
    left_on_old_version: i64,
}

/// `runtime::ParticipantView`: a participant.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantView {
    id: i64,
    flow_id: i64,
    version: i64,
    contact_id: i64,
    /// ready, waiting, held, paused, cancelled, suppressed, completed,
    /// converted, exited, failed, transition.
    status: String,
    step: Option<String>,
    /// RFC 3339.
    next_run_at: Option<String>,
    pass_count: i64,
    reason: Option<String>,
}

/// `app::core::engine::ActionRecord`: one step reached, on the timeline.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRecord {
    visit: u32,
    step: String,
    kind: String,
    due_at: String,
    done_at: Option<String>,
    /// pending, completed, skipped, deferred, failed…
    outcome: String,
    reason: Option<String>,
    manual: bool,
    owner: Option<String>,
    subject: Option<String>,
    why: Option<String>,
}

/// `runtime::events::EventNote`: an event a participant received; the
/// event's own fields (`event`: its kind, and what that kind carries) beside.
#[derive(ToSchema, Deserialize)]
pub struct EventNote {
    at: String,
    event: String,
    source: String,
    /// met, goal, exited, recorded, ignored.
    effect: String,
    step: Option<String>,
}

/// `runtime_api::Act`: an agent's answer to a manual step.
#[derive(ToSchema, Deserialize)]
pub struct Act {
    /// completed, skipped or deferred.
    outcome: String,
    /// For deferred: when it is due again (RFC 3339).
    until: Option<String>,
    disposition: Option<String>,
}

/// `GET /tasks`: a pending manual step.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    participant_id: i64,
    step: String,
    kind: String,
    due_at: String,
    owner: Option<String>,
    subject: Option<String>,
    outcome: String,
    contact_id: i64,
    flow_id: i64,
}

/// `runtime::bulk::Criteria`: which participants an action applies to.
#[derive(ToSchema, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default)]
    flow_ids: Vec<i64>,
    #[serde(default)]
    statuses: Vec<String>,
    #[serde(default)]
    steps: Vec<String>,
    pass_count_min: Option<i64>,
    pass_count_max: Option<i64>,
    timezone: Option<String>,
    #[serde(default)]
    lists: Vec<String>,
    #[serde(default)]
    contact: Vec<FieldEquals>,
}

/// `runtime::bulk::FieldEquals`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEquals {
    field: String,
    value: String,
}

/// `runtime::bulk::BulkRequest`: one bulk action.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// reset, cancel, pause, ready, manual_pass, suppress, unsuppress,
    /// delete, move_to_flow, set_callback, cancel_callback, reserve,
    /// unreserve, email_data_file.
    action: BulkAction,
    #[serde(default)]
    criteria: Criteria,
    disposition: Option<String>,
    #[serde(default)]
    params: BulkParams,
}

/// `runtime::bulk::Action`.
#[derive(ToSchema, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    Reset,
    Cancel,
    Pause,
    Ready,
    ManualPass,
    Suppress,
    Unsuppress,
    Delete,
    MoveToFlow,
    SetCallback,
    CancelCallback,
    Reserve,
    Unreserve,
    EmailDataFile,
}

/// `runtime::bulk::Params`: what some actions need.
#[derive(ToSchema, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BulkParams {
    disposition: Option<String>,
    flow_id: Option<i64>,
    /// move_to_flow: `move` or `copy`.
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    mark_transition: bool,
    /// move_to_flow: what to do with contacts already in the target flow.
    #[serde(default)]
    duplicates: Option<String>,
    /// set_callback: when (RFC 3339).
    at: Option<String>,
    agent: Option<String>,
    #[serde(default)]
    to: Vec<String>,
}

/// `runtime::bulk::Preview`: what an action would do, before it runs.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    action: String,
    effect: String,
    count: i64,
    sample: Vec<SampleRow>,
    reversible: bool,
}

/// `runtime::bulk::SampleRow`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRow {
    participant_id: i64,
    contact_id: i64,
    contact: String,
    flow: String,
    status: String,
    step: Option<String>,
}

/// `runtime::bulk::RunView`: a bulk run.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunView {
    id: i64,
    action: String,
    #[schema(value_type = Object)]
    criteria: Value,
    #[schema(value_type = Object)]
    params: Value,
    status: String,
    total: i64,
    done: i64,
    count: i64,
    message: Option<String>,
    run_by: String,
    run_at: String,
    finished_at: Option<String>,
    undone_by: Option<String>,
    undone_at: Option<String>,
    reversible: bool,
    link: Option<String>,
    link_expires_at: Option<String>,
    email_status: Option<String>,
}

/// `POST /bulk-runs/{id}/undo`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Undone {
    undone: i64,
    run: RunView,
}

/// `runtime::import::ImportJob`: a contact import.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportJob {
    id: i64,
    file_name: Option<String>,
    status: String,
    bytes_total: i64,
    bytes_done: i64,
    rows_done: i64,
    rows_total: Option<i64>,
    created: i64,
    updated: i64,
    skipped: i64,
    failed: i64,
    error: Option<String>,
    started_by: String,
    started_at: String,
    finished_at: Option<String>,
    /// The first refused rows: `[line, reason]`.
    #[schema(value_type = Vec<Vec<Value>>)]
    errors: Vec<Value>,
}

/// Settings kept as a JSON object (integrations, the mailbox, provider
/// webhooks, contact pressure, a DKIM key's record): secrets are never
/// shown, only whether one is set.
#[derive(ToSchema, Deserialize)]
pub struct Settings(BTreeMap<String, Value>);

/// A provider's callback was taken.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledged {
    ok: bool,
    /// Feedback rows written (bounces, complaints, unsubscribes).
    recorded: Option<i64>,
    /// Of them, those that matched no message we sent.
    unmatched: Option<i64>,
    /// SNS: the subscription was confirmed.
    confirmed: Option<bool>,
}

/// `GET …/conversations`: the messages and calls, newest first.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversations {
    #[schema(value_type = Vec<Object>)]
    conversations: Vec<Value>,
}

/// `GET /contacts/{id}/preference-link`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceLink {
    url: String,
}

/// `POST /settings/dkim/key`: the new key's algorithm, domain and
/// selector (the stored ones when left out).
#[derive(ToSchema, Deserialize)]
pub struct NewKey {
    #[serde(default)]
    algorithm: Option<DkimAlgorithm>,
    domain: Option<String>,
    selector: Option<String>,
}

/// `channels::dkim::Algorithm`.
#[derive(ToSchema, Deserialize)]
pub enum DkimAlgorithm {
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

/// `events_api::Posted`: one event about a contact; the event's own
/// fields (FLOW_FORMAT.md "Events") beside `event`, its kind.
#[derive(ToSchema, Deserialize)]
pub struct PostedEvent {
    /// The caller's id: an event posted twice with it is stored once.
    id: Option<String>,
    contact: ContactRef,
    #[serde(default)]
    create_contact: bool,
    /// When it happened (RFC 3339); now when left out.
    at: Option<String>,
    /// Only this participant of the contact.
    participant: Option<i64>,
    /// `email_opened`, `email_clicked`, `page_visited`, `custom`…
    event: String,
}

/// `events_api::ContactRef`: who the event is about.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRef {
    id: Option<i64>,
    email: Option<String>,
    mobile: Option<String>,
}

/// `POST /events`: what was stored.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsAccepted {
    accepted: i64,
    duplicates: i64,
    /// Participants the events enrolled (flows started by an event).
    enrolled: i64,
    /// One per posted event, in order.
    events: Vec<EventStored>,
}

/// One posted event, stored (or found stored before).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStored {
    id: Option<String>,
    event_id: i64,
    duplicate: bool,
}
