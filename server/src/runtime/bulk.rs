//! Bulk participant actions by search criteria (DESIGN.md §7):
//!
//! - reset: pass count 0, status ready, next run now (the current step runs again)
//! - cancel: status cancelled; the prior status is not kept
//! - pause: as cancel, named paused (the run remembers the statuses, so it can be undone)
//! - ready: status ready; pass count and next run unchanged
//! - manual pass: pass count + 1, with a disposition (kept on the audit record)
//! - suppress: stops without changing its status (kept as the prior status)
//! - unsuppress: back to exactly the status it had
//! - delete: the contact's personal data is erased; its calls, messages and
//!   timeline stay; its active participants (in any flow) are cancelled
//! - move to flow: into another flow's newest version at its start; a move
//!   exits the original, a copy leaves it (copies may be marked
//!   `transition`: not started until made ready); contacts already active
//!   in the target are moved anyway or ignored
//! - set / cancel callback: a callback time (and agent) on the participant;
//!   it is the participant's next run until it comes due, when the
//!   scheduler calls it back (`engine::Event::Callback`: the task it waits
//!   on comes round for that agent, or a wait ends); cancel gives the
//!   participant its own next run back
//! - reserve / unreserve: the participant's manual steps go to one agent
//! - email data file: a ZIP of CSV of the participants, behind a signed
//!   link valid 24 h, emailed (SMTP settings) to the addresses given or to
//!   whoever asked for it
//!
//! A run is a background job: [`start`] checks everything and snapshots
//! the participants it applies to (with what each had before) in one
//! transaction, refusing bad input and empty matches with nothing written;
//! [`run`] then applies the action in chunks, each chunk one transaction
//! that also moves the progress. Every write bumps the revision, so a
//! worker that claimed a participant before the action cannot commit over
//! it. Pause, suppress, reserve/unreserve and set/cancel callback can be
//! undone ([`undo`]) from the snapshot. Every run is audited: who, when,
//! the criteria, the parameters and the count.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use app::core::engine::{Participant, Status};

use crate::error::{Error, Result};

use super::datafile;
use super::{contacts, export, jobs, millis, status_names, Runtime};
use crate::db::{Backend, Conn, Pool, Sql};

/// Participants changed per transaction.
const CHUNK: i64 = 20_000;

/// Participants whose flow is over: nothing runs them again.
const FINISHED: &str = "status IN ('completed', 'converted', 'exited', 'cancelled', 'failed')";

/// A participant's own next run, once a booked callback no longer holds
/// it: the scheduler looks at it now (a flow not started yet: at its
/// start), finds it not due, and writes back the flow's own next run. A
/// finished participant keeps what it has.
fn own_next_run(now: Timestamp) -> String {
    format!("CASE WHEN {FINISHED} THEN next_run_at WHEN step IS NULL THEN starts_at ELSE {} END", millis(now))
}

/// Which participants an action applies to. Unknown keys are refused.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    #[serde(default)]
    pub flow_ids: Vec<i64>,
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default)]
    pub steps: Vec<String>,
    pub pass_count_min: Option<i64>,
    pub pass_count_max: Option<i64>,
    pub timezone: Option<String>,
    /// Members of any of these lists.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Contact fields: `email`, `mobile`, `owner` or a custom field equal to a value.
    #[serde(default)]
    pub contact: Vec<FieldEquals>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEquals {
    pub field: String,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
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

impl Action {
    pub const ALL: [Action; 14] = [
        Action::Reset,
        Action::Cancel,
        Action::Pause,
        Action::Ready,
        Action::ManualPass,
        Action::Suppress,
        Action::Unsuppress,
        Action::Delete,
        Action::MoveToFlow,
        Action::SetCallback,
        Action::CancelCallback,
        Action::Reserve,
        Action::Unreserve,
        Action::EmailDataFile,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Reset => "reset",
            Action::Cancel => "cancel",
            Action::Pause => "pause",
            Action::Ready => "ready",
            Action::ManualPass => "manual_pass",
            Action::Suppress => "suppress",
            Action::Unsuppress => "unsuppress",
            Action::Delete => "delete",
            Action::MoveToFlow => "move_to_flow",
            Action::SetCallback => "set_callback",
            Action::CancelCallback => "cancel_callback",
            Action::Reserve => "reserve",
            Action::Unreserve => "unreserve",
            Action::EmailDataFile => "email_data_file",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// What it does, in words, shown before it runs.
    pub fn effect(&self) -> &'static str {
        match self {
            Action::Reset => "Sets the pass count to 0 and the status to ready; each runs its current step again now.",
            Action::Cancel => "Stops each for good: status cancelled. The status it had is not kept.",
            Action::Pause => "Stops each: status paused. The status it had is not kept on the participant; this run remembers it, so it can be undone.",
            Action::Ready => "Sets the status to ready; pass count and next run stay as they are.",
            Action::ManualPass => "Adds one to each pass count, recording the disposition.",
            Action::Suppress => "Stops each without changing its status; unsuppress restores exactly that status.",
            Action::Unsuppress => "Suppressed participants go back to exactly the status they had.",
            Action::Delete => "Erases each contact's personal data (email, mobile, fields, lists) and cancels all its participants; its calls, messages and timeline are kept. This cannot be undone.",
            Action::MoveToFlow => "Puts each contact into the target flow's newest version at its start; a move exits the original participant, a copy leaves it where it is.",
            Action::SetCallback => "Books a callback at the given time (for the given agent): nothing runs before it; then the task each waits on comes round (to that agent), or its wait ends. Status and steps are unchanged until then.",
            Action::CancelCallback => "Removes the booked callback: each runs again when its own flow says.",
            Action::Reserve => "Reserves each for one agent: their manual steps go to that agent's inbox.",
            Action::Unreserve => "Removes the reservation: manual steps go back to the step's own owner.",
            Action::EmailDataFile => "Makes a ZIP of a CSV of these participants and emails a download link, valid 24 hours, to the recipients (or to you). Nothing about the participants changes.",
        }
    }

    /// Whether a run of it can be undone from its snapshot.
    pub fn reversible(&self) -> bool {
        matches!(self, Action::Pause | Action::Suppress | Action::Reserve | Action::Unreserve | Action::SetCallback | Action::CancelCallback)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveMode {
    #[default]
    Move,
    Copy,
}

/// What to do with contacts already active in the target flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Duplicates {
    /// Leave them where they are, not counted.
    #[default]
    Ignore,
    /// Move or copy them anyway: the target gets another participant.
    Move,
}

/// The settings some actions need. Unknown keys are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// manual_pass
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// move_to_flow: the target flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<i64>,
    #[serde(default)]
    pub mode: MoveMode,
    /// move_to_flow with copy: the copies wait as `transition` until made ready.
    #[serde(default)]
    pub mark_transition: bool,
    #[serde(default)]
    pub duplicates: Duplicates,
    /// set_callback: when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// set_callback (optional) and reserve: the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// email_data_file: the addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

/// One bulk action, as asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub action: Action,
    #[serde(default)]
    pub criteria: Criteria,
    /// Kept here for manual_pass, as before params existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    #[serde(default)]
    pub params: Params,
}

fn unprocessable(code: &'static str, message: String) -> Error {
    Error::BadBody { status: axum::http::StatusCode::UNPROCESSABLE_ENTITY, code, message }
}

impl Criteria {
    pub fn check(&self) -> Result<()> {
        let known = status_names();
        if let Some(bad) = self.statuses.iter().find(|s| !known.contains(&s.as_str())) {
            return Err(unprocessable("invalid_criteria", format!("“{bad}” is not a status ({}).", known.join(", "))));
        }
        if let Some(bad) = self.contact.iter().find(|f| !super::import::valid_field_name(&f.field)) {
            let shown: String = bad.field.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).take(80).collect();
            return Err(unprocessable("invalid_criteria", format!("“{shown}” is not a contact field name (at most {} bytes, no quotes, dots, brackets, $ or control characters).", app::core::limits::FIELD_NAME)));
        }
        if let Some(bad) = self.contact.iter().find(|f| f.value.len() > app::core::limits::FIELD_VALUE) {
            return Err(unprocessable("invalid_criteria", format!("The value for “{}” is longer than {} bytes.", bad.field, app::core::limits::FIELD_VALUE)));
        }
        if let (Some(min), Some(max)) = (self.pass_count_min, self.pass_count_max) {
            if min > max {
                return Err(unprocessable("invalid_criteria", format!("The pass count cannot be at least {min} and at most {max}.")));
            }
        }
        Ok(())
    }

    /// Appends `id IN (SELECT … matching)` (participants' id) to `query`.
    pub fn push_matching(&self, query: &mut Sql<'_>) {
        query.push("id IN (SELECT p.id FROM participants p JOIN contacts c ON c.id = p.contact_id WHERE 1 = 1");
        let list = |query: &mut Sql<'_>, column: &str, values: Vec<String>| {
            if values.is_empty() {
                return;
            }
            query.push(format!(" AND {column} IN ("));
            let mut separated = query.separated(", ");
            for value in values {
                separated.push_bind(value);
            }
            query.push(")");
        };
        if !self.flow_ids.is_empty() {
            query.push(" AND p.flow_id IN (");
            let mut separated = query.separated(", ");
            for id in &self.flow_ids {
                separated.push_bind(*id);
            }
            query.push(")");
        }
        list(query, "p.status", self.statuses.clone());
        list(query, "p.step", self.steps.clone());
        if let Some(min) = self.pass_count_min {
            query.push(" AND p.pass_count >= ").push_bind(min);
        }
        if let Some(max) = self.pass_count_max {
            query.push(" AND p.pass_count <= ").push_bind(max);
        }
        if let Some(zone) = &self.timezone {
            query.push(" AND c.timezone = ").push_bind(zone.clone());
        }
        if !self.lists.is_empty() {
            query.push(" AND EXISTS (SELECT 1 FROM list_members m JOIN lists l ON l.id = m.list_id WHERE m.contact_id = c.id AND l.name IN (");
            let mut separated = query.separated(", ");
            for name in &self.lists {
                separated.push_bind(name.clone());
            }
            query.push("))");
        }
        for field in &self.contact {
            match field.field.as_str() {
                // `IS NOT NULL` lets the partial indexes on email and mobile answer.
                "email" => {
                    query.push(" AND c.email IS NOT NULL AND lower(c.email) = lower(").push_bind(field.value.trim().to_owned()).push(")");
                }
                "mobile" => {
                    let value = super::import::normalize_mobile(&field.value).unwrap_or_else(|| field.value.trim().to_owned());
                    query.push(" AND c.mobile IS NOT NULL AND c.mobile = ").push_bind(value);
                }
                "owner" | "timezone" => {
                    query.push(format!(" AND lower(c.{}) = lower(", field.field)).push_bind(field.value.clone()).push(")");
                }
                name => {
                    // The field's JSON path is a bound value, not SQL text.
                    query
                        .push(" AND lower(CAST(json_extract(c.fields, ")
                        .push_bind(format!("$.\"{name}\""))
                        .push(") AS TEXT)) = lower(")
                        .push_bind(field.value.clone())
                        .push(")");
                }
            }
        }
        query.push(")");
    }
}

/// How many participants match, and a few of their ids (no action's guard).
pub async fn preview(pool: &Pool, criteria: &Criteria) -> Result<(i64, Vec<i64>)> {
    criteria.check()?;
    let mut count: Sql = Sql::new("SELECT count(*) FROM participants WHERE ");
    criteria.push_matching(&mut count);
    let total: i64 = count.build_query_scalar().fetch_one(pool).await?;
    let mut sample: Sql = Sql::new("SELECT id FROM participants WHERE ");
    criteria.push_matching(&mut sample);
    sample.push(" ORDER BY id LIMIT 10");
    let ids: Vec<i64> = sample.build_query_scalar().fetch_all(pool).await?;
    Ok((total, ids))
}

/// A checked request: what it will do, in words, and the target flow's
/// newest version for a move.
struct Checked {
    effect: String,
    target: Option<(i64, i64, String)>,
}

impl BulkRequest {
    fn disposition(&self) -> Option<&str> {
        self.params.disposition.as_deref().or(self.disposition.as_deref()).map(str::trim).filter(|d| !d.is_empty())
    }

    /// Refuses input that cannot work, before anything is written.
    async fn check(&self, conn: &mut Conn, now: Timestamp) -> Result<Checked> {
        self.criteria.check()?;
        let p = &self.params;
        let mut effect = self.action.effect().to_owned();
        let mut target = None;
        match self.action {
            Action::ManualPass => {
                let disposition = self.disposition().ok_or_else(|| unprocessable("disposition_required", "A manual pass needs a disposition.".into()))?;
                effect = format!("Adds one to each pass count, recording the disposition “{disposition}”.");
            }
            Action::MoveToFlow => {
                let flow = p.flow_id.ok_or_else(|| unprocessable("target_flow_required", "Say which flow to move them to (params.flow_id).".into()))?;
                if self.criteria.flow_ids.contains(&flow) {
                    return Err(unprocessable(
                        "same_flow",
                        format!("Flow {flow} is both where they are and where they would go; choose another flow, or leave it out of the criteria."),
                    ));
                }
                let row: Option<(String, Option<i64>)> =
                    sqlx::query_as("SELECT name, (SELECT max(number) FROM flow_versions WHERE flow_id = flows.id) FROM flows WHERE id = $1")
                        .bind(flow)
                        .fetch_optional(&mut *conn)
                        .await?;
                let (name, version) = row.ok_or(Error::FlowNotFound(flow))?;
                let version = version.ok_or(Error::NotPublished(flow))?;
                let verb = match (p.mode, p.mark_transition) {
                    (MoveMode::Move, _) => "Moves each contact to",
                    (MoveMode::Copy, false) => "Copies each contact into",
                    (MoveMode::Copy, true) => "Copies each contact, marked transition (not started until made ready), into",
                };
                let dupes = match p.duplicates {
                    Duplicates::Ignore => "contacts already active there are left out",
                    Duplicates::Move => "contacts already active there get another participant",
                };
                let original = if p.mode == MoveMode::Move { " The original participants exit." } else { "" };
                effect = format!("{verb} “{name}” (v{version}) at its start; {dupes}.{original}");
                target = Some((flow, version, name));
            }
            Action::SetCallback => {
                let at = p.at.ok_or_else(|| unprocessable("callback_time_required", "Say when to call back (params.at, RFC 3339).".into()))?;
                if at <= now {
                    return Err(unprocessable("callback_in_past", format!("{at} has passed; a callback is set in the future.")));
                }
                let agent = p.agent.as_deref().map(str::trim).filter(|a| !a.is_empty());
                effect = format!(
                    "Books a callback at {at}{}: nothing runs before it; then the task each waits on comes round{}, or its wait ends. Status and steps are unchanged until then.",
                    agent.map(|a| format!(" for {a}")).unwrap_or_default(),
                    agent.map(|a| format!(" to {a}")).unwrap_or_default()
                );
            }
            Action::Reserve => {
                let agent = p.agent.as_deref().map(str::trim).filter(|a| !a.is_empty());
                let agent = agent.ok_or_else(|| unprocessable("agent_required", "Say which agent to reserve them for (params.agent).".into()))?;
                effect = format!("Reserves each for {agent}: their manual steps go to {agent}'s inbox.");
            }
            Action::EmailDataFile => {
                let smtp: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_settings WHERE channel = 'smtp'").fetch_one(&mut *conn).await?;
                if smtp == 0 {
                    return Err(datafile::not_configured());
                }
                if p.to.len() > 20 {
                    return Err(unprocessable("recipients_required", "Give at most twenty email addresses (params.to).".into()));
                }
                if let Some(bad) = p.to.iter().find(|a| !super::import::valid_email(a.trim())) {
                    return Err(unprocessable("invalid_recipient", format!("“{bad}” is not an email address.")));
                }
                let to = if p.to.is_empty() { "you (whoever runs it)".to_owned() } else { p.to.join(", ") };
                effect = format!(
                    "Makes a ZIP of a CSV of these participants and emails a download link, valid 24 hours, to {to}. Nothing about the participants changes."
                );
            }
            _ => {}
        }
        Ok(Checked { effect, target })
    }

    /// Narrows the matching participants to those the action would change.
    fn push_guard(&self, query: &mut Sql<'_>, target: Option<(i64, i64, String)>) {
        match self.action {
            // already suppressed participants keep the status they had before
            Action::Suppress => {
                query.push(" AND status <> 'suppressed'");
            }
            Action::Unsuppress => {
                query.push(" AND status = 'suppressed' AND prior_status IS NOT NULL");
            }
            Action::Pause => {
                query.push(" AND status <> 'paused'");
            }
            Action::Delete => {
                query.push(" AND contact_id IN (SELECT id FROM contacts WHERE deleted_at IS NULL)");
            }
            Action::CancelCallback => {
                query.push(" AND callback_at IS NOT NULL");
            }
            Action::Unreserve => {
                query.push(" AND reserved_for IS NOT NULL");
            }
            Action::Reserve => {
                query.push(" AND (reserved_for IS NULL OR reserved_for <> ").push_bind(self.params.agent.clone().unwrap_or_default().trim().to_owned()).push(")");
            }
            Action::MoveToFlow => {
                let (flow, _, _) = target.expect("a checked move has a target");
                // Moving exits the original: only participants still in their flow can move.
                if self.params.mode == MoveMode::Move {
                    query.push(" AND status NOT IN ('completed', 'converted', 'exited', 'cancelled')");
                }
                if self.params.duplicates == Duplicates::Ignore {
                    query
                        .push(" AND contact_id NOT IN (SELECT contact_id FROM participants WHERE flow_id = ")
                        .push_bind(flow)
                        .push(" AND status NOT IN ('completed', 'converted', 'exited', 'cancelled', 'failed'))");
                }
                query.push(" AND flow_id <> ").push_bind(flow);
            }
            _ => {}
        }
    }
}

/// One participant of a preview's sample.
#[derive(Clone, Debug, Serialize)]
pub struct SampleRow {
    pub participant_id: i64,
    pub contact_id: i64,
    pub contact: String,
    pub flow: String,
    pub status: String,
    pub step: Option<String>,
}

/// What a bulk action would do, before it runs.
#[derive(Clone, Debug, Serialize)]
pub struct Preview {
    pub action: &'static str,
    pub effect: String,
    /// Participants it would change.
    pub count: i64,
    pub sample: Vec<SampleRow>,
    pub reversible: bool,
}

/// The effect in words, how many participants it would change and ten of them.
pub async fn describe(pool: &Pool, request: &BulkRequest, now: Timestamp) -> Result<Preview> {
    let mut conn = pool.acquire().await?;
    let checked = request.check(&mut conn, now).await?;
    let mut count: Sql = Sql::new("SELECT count(*) FROM participants WHERE ");
    request.criteria.push_matching(&mut count);
    request.push_guard(&mut count, checked.target.clone());
    let total: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
    let mut sample: Sql = Sql::new(
        "SELECT p.id, p.contact_id, coalesce(c.email, c.mobile, 'Contact ' || c.id), f.name, p.status, p.step
         FROM participants p JOIN contacts c ON c.id = p.contact_id JOIN flows f ON f.id = p.flow_id
         WHERE p.id IN (SELECT id FROM participants WHERE ",
    );
    request.criteria.push_matching(&mut sample);
    request.push_guard(&mut sample, checked.target);
    sample.push(" ORDER BY id LIMIT 10) ORDER BY p.id");
    let rows = sample.build().fetch_all(&mut *conn).await?;
    Ok(Preview {
        action: request.action.as_str(),
        effect: checked.effect,
        count: total,
        sample: rows
            .iter()
            .map(|r| SampleRow {
                participant_id: r.get(0),
                contact_id: r.get(1),
                contact: r.get(2),
                flow: r.get(3),
                status: r.get(4),
                step: r.get(5),
            })
            .collect(),
        reversible: request.action.reversible(),
    })
}

/// Checks the request and snapshots the participants it applies to, in one
/// transaction: the run is `running` with its total. Refused (nothing
/// written) for bad input or when nothing would change. [`run`] does the rest.
pub async fn start(runtime: &Runtime, request: &BulkRequest, by: &str) -> Result<i64> {
    let now = runtime.now();
    let mut tx = crate::db::begin_write(runtime.pool()).await?;
    let checked = request.check(&mut tx, now).await?;
    let mut params = request.params.clone();
    params.disposition = request.disposition().map(str::to_owned);
    params.to = params.to.iter().map(|a| a.trim().to_owned()).collect();
    if request.action == Action::EmailDataFile && params.to.is_empty() {
        // Sent to whoever asked; an API token has no address of its own.
        if !super::import::valid_email(by) {
            return Err(unprocessable("recipients_required", format!("Say whom to email it to (params.to): “{by}” has no email address.")));
        }
        params.to = vec![by.to_owned()];
    }
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO bulk_runs (action, criteria, disposition, params, count, status, run_by, run_at, message, owner, heartbeat_at)
         VALUES ($1, $2, $3, $4, 0, 'running', $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(request.action.as_str())
    .bind(serde_json::to_string(&request.criteria).expect("criteria serialize"))
    .bind(params.disposition.as_deref())
    .bind(serde_json::to_string(&params).expect("params serialize"))
    .bind(by)
    .bind(now.to_string())
    .bind(&checked.effect)
    .bind(runtime.worker())
    .bind(millis(now))
    .fetch_one(&mut *tx)
    .await?;
    let mut snapshot: Sql = Sql::new(
        "INSERT INTO bulk_run_items (run_id, participant_id, prior_status, prior_reserved, prior_callback_at, prior_callback_by) SELECT ",
    );
    snapshot.push_bind(run).push(", id, status, reserved_for, callback_at, callback_owner FROM participants WHERE ");
    request.criteria.push_matching(&mut snapshot);
    request.push_guard(&mut snapshot, checked.target);
    let total = snapshot.build().execute(&mut *tx).await?.rows_affected();
    if total == 0 {
        return Err(unprocessable(
            "nothing_matched",
            format!("No participant matches these criteria for “{}”; nothing changed.", request.action.as_str()),
        ));
    }
    sqlx::query("UPDATE bulk_runs SET total = $1 WHERE id = $2").bind(total as i64).bind(run).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(run)
}

/// A run as the API and the job page show it.
#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    pub id: i64,
    pub action: String,
    pub criteria: serde_json::Value,
    pub params: serde_json::Value,
    pub status: String,
    pub total: i64,
    pub done: i64,
    /// Participants (contacts, for delete; rows, for a data file) changed.
    pub count: i64,
    pub message: Option<String>,
    pub run_by: String,
    pub run_at: String,
    pub finished_at: Option<String>,
    pub undone_by: Option<String>,
    pub undone_at: Option<String>,
    pub reversible: bool,
    /// For a data file: the signed download link (path and query).
    pub link: Option<String>,
    pub link_expires_at: Option<String>,
    pub email_status: Option<String>,
}

pub async fn view(pool: &Pool, id: i64) -> Result<RunView> {
    let row = sqlx::query(
        "SELECT r.id, r.action, r.criteria, r.params, r.status, r.total, r.done, r.count, r.message, r.run_by, r.run_at,
                r.finished_at, r.undone_by, r.undone_at, d.link, d.expires_at, d.email_status
         FROM bulk_runs r LEFT JOIN data_files d ON d.run_id = r.id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(Error::RunNotFound(id))?;
    let action: String = row.get("action");
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(serde_json::Value::Null);
    Ok(RunView {
        id: row.get("id"),
        reversible: Action::parse(&action).is_some_and(|a| a.reversible()),
        action,
        criteria: json(row.get("criteria")),
        params: json(row.get("params")),
        status: row.get("status"),
        total: row.get("total"),
        done: row.get("done"),
        count: row.get("count"),
        message: row.get("message"),
        run_by: row.get("run_by"),
        run_at: row.get("run_at"),
        finished_at: row.get("finished_at"),
        undone_by: row.get("undone_by"),
        undone_at: row.get("undone_at"),
        link: row.get("link"),
        link_expires_at: row.get("expires_at"),
        email_status: row.get("email_status"),
    })
}

/// The newest runs first.
pub async fn recent(pool: &Pool, limit: i64) -> Result<Vec<RunView>> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM bulk_runs ORDER BY id DESC LIMIT $1").bind(limit).fetch_all(pool).await?;
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids {
        runs.push(view(pool, id).await?);
    }
    Ok(runs)
}

/// Runs a started run in the background, in this process (its owner).
pub fn spawn(runtime: &Runtime, id: i64) {
    let runtime = runtime.clone();
    tokio::spawn(async move {
        let _ = run(&runtime, id).await;
    });
}

/// Applies a started run in chunks until it is done, then records how it
/// ended. A failure stops it as `failed` with the reason; the chunks before
/// it stay applied and counted (`done` says how far it got). The runtime
/// must own the run (it started it, or took it over): another process
/// taking it over meanwhile stops this one with nothing more written.
#[tracing::instrument(name = "job", skip_all, fields(job_kind = "bulk", job_id = id))]
pub async fn run(runtime: &Runtime, id: i64) -> Result<RunView> {
    let pool = runtime.pool();
    let outcome = jobs::beating(runtime, jobs::Table::BulkRuns, id, run_chunks(runtime, id)).await;
    let now = Timestamp::now().to_string();
    let (status, message) = match &outcome {
        Err(Error::JobTakenOver(_)) => return Err(Error::JobTakenOver(id)),
        Ok(message) => ("done", message.clone()),
        Err(err) => {
            tracing::error!(run = id, error = %err, "bulk run failed");
            let action: Option<String> = sqlx::query_scalar("SELECT action FROM bulk_runs WHERE id = $1").bind(id).fetch_optional(pool).await?;
            let message = if action.as_deref() == Some(Action::EmailDataFile.as_str()) {
                format!("Nothing was sent and no file was kept: {}", err.public_message())
            } else {
                format!("Stopped part-way (the participants counted as done were changed): {}", err.public_message())
            };
            ("failed", Some(message))
        }
    };
    sqlx::query("UPDATE bulk_runs SET status = $1, finished_at = $2, message = coalesce($3, message) WHERE id = $4 AND owner = $5")
        .bind(status)
        .bind(&now)
        .bind(message)
        .bind(id)
        .bind(runtime.worker())
        .execute(pool)
        .await?;
    tracing::info!(status, "bulk run ended");
    outcome?;
    view(pool, id).await
}

async fn run_chunks(runtime: &Runtime, id: i64) -> Result<Option<String>> {
    let (pool, delivery) = (runtime.pool(), &runtime.delivery());
    let row = sqlx::query("SELECT action, params, run_at, run_by, cursor, status FROM bulk_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::RunNotFound(id))?;
    let action = Action::parse(row.get("action")).ok_or_else(|| Error::Internal(anyhow::anyhow!("run {id} has an unknown action")))?;
    let params: Params = serde_json::from_str(row.get::<Option<&str>, _>("params").unwrap_or("{}")).unwrap_or_default();
    let started: Timestamp = row.get::<&str, _>("run_at").parse().unwrap_or_else(|_| Timestamp::now());
    let by: String = row.get("run_by");
    let mut cursor: i64 = row.get("cursor");
    let target_version: Option<i64> = match params.flow_id {
        Some(flow) if action == Action::MoveToFlow => {
            sqlx::query_scalar("SELECT max(number) FROM flow_versions WHERE flow_id = $1").bind(flow).fetch_one(pool).await?
        }
        _ => None,
    };
    // A chunk is one transaction, all or nothing: safe to run again.
    let params = &params;
    while let Some(last) = crate::db::retry_busy("a bulk run's chunk", move || async move {
        let mut tx = crate::db::begin_write(pool).await?;
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT max(participant_id) FROM (SELECT participant_id FROM bulk_run_items WHERE run_id = $1 AND participant_id > $2
             ORDER BY participant_id LIMIT $3) AS chunk",
        )
        .bind(id)
        .bind(cursor)
        .bind(CHUNK)
        .fetch_one(&mut *tx)
        .await?;
        let Some(last) = last else { return Ok(None) };
        let chunk = Chunk { run: id, after: cursor, last };
        let counted = super::rollups::BulkChanges::before(&mut tx, action.as_str(), &chunk.ids()).await?;
        let (seen, changed) = apply_chunk(&mut tx, action, params, target_version, chunk, started).await?;
        counted.count(&mut tx, started).await?;
        let mine = sqlx::query("UPDATE bulk_runs SET cursor = $1, done = done + $2, count = count + $3 WHERE id = $4 AND owner = $5")
            .bind(last)
            .bind(seen)
            .bind(changed)
            .bind(id)
            .bind(runtime.worker())
            .execute(&mut *tx)
            .await?;
        if mine.rows_affected() == 0 {
            // Taken over while this process was quiet: the chunk is rolled back.
            return Err(Error::JobTakenOver(id));
        }
        tx.commit().await?;
        crate::ops::metrics::bulk_chunk(action.as_str(), seen, changed);
        Ok(Some(last))
    })
    .await?
    {
        cursor = last;
    }
    match action {
        Action::EmailDataFile => {
            let file = datafile::make(pool, delivery, id, &params.to, &by, started).await?;
            sqlx::query("UPDATE bulk_runs SET count = $1 WHERE id = $2").bind(file.rows as i64).bind(id).execute(pool).await?;
            Ok(Some(format!(
                "A ZIP of {} participant row(s) was made; its link, valid until {}, was emailed to {}.",
                file.rows,
                file.expires_at,
                params.to.join(", ")
            )))
        }
        _ => Ok(None),
    }
}

/// The participants of a run with ids in (after, last].
#[derive(Clone, Copy)]
struct Chunk {
    run: i64,
    after: i64,
    last: i64,
}

impl Chunk {
    fn ids(&self) -> String {
        format!(
            "SELECT participant_id FROM bulk_run_items WHERE run_id = {} AND participant_id > {} AND participant_id <= {}",
            self.run, self.after, self.last
        )
    }
}

/// Applies the action to one chunk; returns (participants in the chunk, changed).
async fn apply_chunk(
    tx: &mut Conn,
    action: Action,
    params: &Params,
    target_version: Option<i64>,
    chunk: Chunk,
    now: Timestamp,
) -> Result<(i64, i64)> {
    let ids = chunk.ids();
    let seen: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM ({ids}) AS chunk")).fetch_one(&mut *tx).await?;
    let at = now.to_string();
    let db = Backend::of_conn(tx);
    let status = |value: &str| db.json_set("state", &[("status", value)]);
    let set = match action {
        Action::Reset => format!(
            "status = 'ready', pass_count = 0, next_run_at = {ms}, state = {state}",
            ms = millis(now),
            state = db.json_set(
                "state",
                &[
                    ("status", "'ready'"),
                    ("pass_count", "0"),
                    ("phase", &db.json_literal(r#"{"phase":"due"}"#)),
                    ("next_run_at", &format!("'{at}'")),
                ],
            ),
        ),
        Action::Cancel => format!("status = 'cancelled', prior_status = NULL, state = {}", status("'cancelled'")),
        Action::Pause => format!("status = 'paused', prior_status = NULL, state = {}", status("'paused'")),
        Action::Ready => format!("status = 'ready', state = {}", status("'ready'")),
        Action::ManualPass => format!("pass_count = pass_count + 1, state = {}", db.json_set("state", &[("pass_count", "pass_count + 1")])),
        Action::Suppress => format!("prior_status = status, status = 'suppressed', state = {}", status("'suppressed'")),
        Action::Unsuppress => format!("status = prior_status, prior_status = NULL, state = {}", status("prior_status")),
        // The callback is the next run of a participant still in its flow.
        Action::SetCallback => format!("callback_at = $1, callback_owner = coalesce($2, callback_owner), next_run_at = CASE WHEN {FINISHED} THEN next_run_at ELSE $1 END"),
        Action::CancelCallback => format!("callback_at = NULL, callback_owner = NULL, next_run_at = {}", own_next_run(now)),
        Action::Reserve => "reserved_for = $2".into(),
        Action::Unreserve => "reserved_for = NULL".into(),
        Action::Delete => {
            let erased = contacts::erase(tx, &format!("SELECT contact_id FROM participants WHERE id IN ({ids})"), &at).await?;
            return Ok((seen, erased as i64));
        }
        Action::MoveToFlow => {
            let changed = move_chunk(tx, params, target_version, chunk, now).await?;
            return Ok((seen, changed));
        }
        Action::EmailDataFile => return Ok((seen, 0)),
    };
    // The same conditions the snapshot used, checked again: a participant
    // changed since (by the scheduler or another run) is left as it is now.
    let guard = match action {
        Action::Suppress => " AND status <> 'suppressed'",
        Action::Unsuppress => " AND status = 'suppressed' AND prior_status IS NOT NULL",
        Action::CancelCallback => " AND callback_at IS NOT NULL",
        Action::Unreserve => " AND reserved_for IS NOT NULL",
        _ => "",
    };
    // $1 and $2 (callback time, agent) are named in every statement, so the same two binds fit all.
    let changed: Vec<i64> = sqlx::query_scalar(&format!(
        "UPDATE participants SET {set}, revision = revision + 1, updated_at = '{at}'
         WHERE id IN ({ids}){guard} AND coalesce(CAST($1 AS TEXT), CAST($2 AS TEXT), '') IS NOT NULL RETURNING id"
    ))
    .bind(params.at.map(millis))
    .bind(params.agent.as_deref().map(str::trim).filter(|a| !a.is_empty()))
    .fetch_all(&mut *tx)
    .await?;
    mark_changed(tx, chunk.run, &changed).await?;
    Ok((seen, changed.len() as i64))
}

async fn mark_changed(tx: &mut Conn, run: i64, ids: &[i64]) -> Result<()> {
    for part in ids.chunks(10_000) {
        // Ids written as numbers, not binds: SQLite looks each numbered
        // bind up by name, which makes thousands of them quadratic.
        let sql = format!("UPDATE bulk_run_items SET changed = 1 WHERE run_id = {run} AND participant_id IN ({})", crate::db::id_list(part));
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Moves or copies one chunk into the target flow: new participants at its
/// start (set-based), and for a move the originals exit with the reason.
async fn move_chunk(tx: &mut Conn, params: &Params, version: Option<i64>, chunk: Chunk, now: Timestamp) -> Result<i64> {
    let flow = params.flow_id.expect("a checked move has a target");
    let version = version.ok_or(Error::NotPublished(flow))?;
    let ids = chunk.ids();
    let status = if params.mode == MoveMode::Copy && params.mark_transition { Status::Transition } else { Status::Ready };
    let mut template = Participant::new(0);
    template.status = status;
    let at = now.to_string();
    let run = chunk.run;
    // Only contacts active in the target before this run count as duplicates;
    // a contact gets one new participant however its participants fall into chunks.
    let dupes = match params.duplicates {
        Duplicates::Ignore => format!(
            " AND contact_id NOT IN (SELECT contact_id FROM participants WHERE flow_id = {flow}
               AND status NOT IN ('completed', 'converted', 'exited', 'cancelled', 'failed') AND coalesce(created_by_run, 0) <> {run})"
        ),
        Duplicates::Move => String::new(),
    };
    let active = if params.mode == MoveMode::Move { " AND status NOT IN ('completed', 'converted', 'exited', 'cancelled')" } else { "" };
    let db = Backend::of_conn(tx);
    let seeded = db.json_set("$4", &[("seed", "min(id) * 40503 + $5")]);
    let exited = db.json_set("state", &[("status", "'exited'"), ("reason", "$2")]);
    let created = sqlx::query(&format!(
        "INSERT INTO participants (flow_id, version, contact_id, status, state, next_run_at, starts_at, enrolled_at, updated_at, created_by_run)
         SELECT $1, $2, contact_id, $3, {seeded}, $5, $5, $6, $6, {run}
         FROM participants WHERE id IN ({ids}){active}{dupes}
           AND contact_id NOT IN (SELECT contact_id FROM participants WHERE created_by_run = {run})
         GROUP BY contact_id"
    ))
    .bind(flow)
    .bind(version)
    .bind(status.as_str())
    .bind(serde_json::to_string(&template).expect("participants serialize"))
    .bind(millis(now))
    .bind(&at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if params.mode == MoveMode::Move {
        let moved: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE participants SET status = 'exited', prior_status = NULL, next_run_at = NULL, revision = revision + 1, updated_at = $1,
                 state = {exited}
             WHERE id IN ({ids}){active}{dupes} RETURNING id"
        ))
        .bind(&at)
        .bind(format!("Moved to flow {flow} by bulk run {}.", chunk.run))
        .fetch_all(&mut *tx)
        .await?;
        mark_changed(tx, chunk.run, &moved).await?;
    }
    Ok(created as i64)
}

/// Runs a bulk action to the end, waiting for it: [`start`] then [`run`].
/// Returns how many changed. (The API starts runs in the background.)
pub async fn apply(runtime: &Runtime, criteria: &Criteria, action: &Action, disposition: Option<&str>, by: &str) -> Result<u64> {
    let request = BulkRequest { action: *action, criteria: criteria.clone(), disposition: disposition.map(str::to_owned), params: Params::default() };
    let id = start(runtime, &request, by).await?;
    Ok(run(runtime, id).await?.count as u64)
}

/// Undoes a finished reversible run for the participants it changed that
/// are still as it left them; returns how many went back.
pub async fn undo(pool: &Pool, id: i64, by: &str, now: Timestamp) -> Result<u64> {
    let mut tx = crate::db::begin_write(pool).await?;
    let row = sqlx::query("SELECT action, status, params FROM bulk_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::RunNotFound(id))?;
    let action = Action::parse(row.get("action")).filter(Action::reversible).ok_or_else(|| {
        unprocessable("not_reversible", format!("A “{}” run cannot be undone.", row.get::<&str, _>("action")))
    })?;
    let params: Params = serde_json::from_str(row.get::<Option<&str>, _>("params").unwrap_or("{}")).unwrap_or_default();
    match row.get::<&str, _>("status") {
        "done" => {}
        "undone" => return Err(Error::BadBody { status: axum::http::StatusCode::CONFLICT, code: "already_undone", message: format!("Run {id} was already undone.") }),
        other => return Err(Error::BadBody { status: axum::http::StatusCode::CONFLICT, code: "run_not_finished", message: format!("Run {id} is {other}; undo it once it is done.") }),
    }
    let at = now.to_string();
    let own = own_next_run(now);
    let db = Backend::of_conn(&tx);
    let (set, still) = match action {
        Action::Pause => {
            (format!("status = i.prior_status, state = {}", db.json_set("state", &[("status", "i.prior_status")])), "participants.status = 'paused'")
        }
        Action::Suppress => (
            format!("status = participants.prior_status, prior_status = NULL, state = {}", db.json_set("state", &[("status", "participants.prior_status")])),
            "participants.status = 'suppressed' AND participants.prior_status IS NOT NULL",
        ),
        Action::Reserve => ("reserved_for = i.prior_reserved".to_owned(), "participants.reserved_for IS NOT DISTINCT FROM $1"),
        Action::Unreserve => ("reserved_for = i.prior_reserved".to_owned(), "participants.reserved_for IS NULL"),
        // Only callbacks that have not come due yet go back.
        Action::SetCallback => (
            format!("callback_at = i.prior_callback_at, callback_owner = i.prior_callback_by, next_run_at = CASE WHEN i.prior_callback_at IS NOT NULL AND NOT {FINISHED} THEN i.prior_callback_at ELSE {own} END"),
            "participants.callback_at IS NOT DISTINCT FROM $2",
        ),
        Action::CancelCallback => (
            format!("callback_at = i.prior_callback_at, callback_owner = i.prior_callback_by, next_run_at = CASE WHEN {FINISHED} THEN next_run_at ELSE i.prior_callback_at END"),
            "participants.callback_at IS NULL",
        ),
        _ => unreachable!("only reversible actions get here"),
    };
    let counted = super::rollups::BulkChanges::before(&mut tx, action.as_str(), &format!("SELECT participant_id FROM bulk_run_items WHERE run_id = {id} AND changed = 1")).await?;
    let undone = sqlx::query(&format!(
        "UPDATE participants SET {set}, revision = revision + 1, updated_at = $3
         FROM bulk_run_items i WHERE i.run_id = $4 AND i.changed = 1 AND i.participant_id = participants.id AND {still}"
    ))
    .bind(params.agent.as_deref().map(str::trim))
    .bind(params.at.map(millis))
    .bind(&at)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    counted.count(&mut tx, now).await?;
    sqlx::query("UPDATE bulk_runs SET status = 'undone', undone_by = $1, undone_at = $2, message = $3 WHERE id = $4")
        .bind(by)
        .bind(&at)
        .bind(format!("Undone by {by}: {undone} participant(s) went back to what they had before this run."))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(undone)
}

/// The participants a run applies to, as a CSV export (for its data file).
pub(crate) fn run_export(run: i64) -> export::ParticipantsExport {
    export::ParticipantsExport { criteria: Criteria::default(), run: Some(run) }
}
