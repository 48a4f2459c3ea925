//! The agent's workspace (DESIGN §11) on the server: the agent's queue of
//! due tasks, one task with its prefilled email and the contact's context,
//! and the sends. The edited email and the SMS become outbox entries like
//! the engine's own (the channels then track them, add List-Unsubscribe and
//! keep the conversation record); a call rings the agent's phone through
//! the Twilio-compatible provider and bridges the contact, its status
//! reports (`POST /api/v1/workspace/calls/status`) filling the record.
//!
//! A manual send is counted in the contact's recent sends (contact
//! pressure) but never held: the agent is shown the rule that would have
//! held an automatic one. Nothing here reaches a task an agent does not own
//! (the step's owner, the participant's reservation, else the flow's
//! default owner; or the contact's owner): to them it does not exist.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use jiff::Timestamp;
use leptos::prelude::ServerFnError;
use serde_json::{json, Value};
use sqlx::Row;

use app::auth::{Access, Role, Viewer};
use app::contacts_api::ContactsBackend;
use app::core::calendar::{zone_for, Calendar};
use app::core::contact::{Channel, Contact};
use app::core::engine::{Effect, Event, ManualOutcome};
use app::core::flow::CalendarZone;
use app::core::kinds::{read_settings, CallSettings, SendEmailSettings};
use app::core::merge::{render, Escape};
use app::core::pressure::{RecentSend, Verdict};
use app::core::FlowDocument;
use app::workspace_api::{
    addresses, sanitize_html, CallLeg, CallView, EmailDraft, EmailSend, QueueEntry, Reach, Template, ThreadItem, Workspace, WorkspaceBackend,
};

use crate::auth::Endpoint;
use crate::channels::settings::Integrations;
use crate::channels::sms::{is_e164, Texter};
use crate::db::{Conn, Pool};
use crate::error::{Error, Json, Result};
use crate::runtime::{contacts, millis, Runtime};
use crate::AppState;

/// Where the provider reports click-to-call progress, under `/api/v1`.
pub const CALL_STATUS_PATH: &str = "/workspace/calls/status";

pub fn endpoints() -> Vec<Endpoint> {
    // The provider's signature over the URL and fields is the credential.
    vec![Endpoint::new(Method::POST, CALL_STATUS_PATH, Access::Public, call_status)]
}

/// The server's store for the workspace pages.
pub struct Backend {
    pub runtime: Runtime,
    texter: Texter,
}

impl Backend {
    pub fn new(runtime: Runtime) -> Backend {
        Backend { runtime, texter: Texter::default() }
    }

    fn pool(&self) -> &Pool {
        self.runtime.pool()
    }
}

fn fail(err: impl Into<Error>) -> ServerFnError {
    err.into().into_server_fn_error()
}

fn invalid(message: impl Into<String>) -> ServerFnError {
    Error::Invalid { code: "invalid_send", message: message.into() }.into_server_fn_error()
}

/// A pending manual step, as the workspace reads it.
struct TaskRow {
    participant: i64,
    visit: i64,
    step: String,
    kind: String,
    subject: Option<String>,
    due_at: String,
    owner: Option<String>,
    contact_id: i64,
    contact_owner: Option<String>,
    flow_id: i64,
    flow_name: String,
    version: i64,
    email: Option<String>,
    mobile: Option<String>,
}

/// Whose a manual step is: the participant's reservation, else the step's
/// owner, else the flow's default owner (delegation at the flow's level);
/// the inbox (`runtime/pages.rs`, `GET /tasks`) reads it the same way.
const TASK_SELECT: &str = "SELECT a.participant_id, a.visit, a.step, a.kind, a.subject, a.due_at,
        coalesce(p.reserved_for, a.owner, f.task_owner) AS who, p.contact_id, c.owner AS contact_owner, p.flow_id, f.name, p.version,
        c.email, c.mobile
     FROM participant_actions a
     JOIN participants p ON p.id = a.participant_id
     JOIN flows f ON f.id = p.flow_id
     JOIN contacts c ON c.id = p.contact_id
     WHERE a.manual = 1 AND a.outcome IN ('pending', 'deferred') AND p.status = 'waiting' AND c.deleted_at IS NULL";

fn task_row(r: &crate::db::DbRow) -> TaskRow {
    TaskRow {
        participant: r.get(0),
        visit: r.get(1),
        step: r.get(2),
        kind: r.get(3),
        subject: r.get(4),
        due_at: r.get(5),
        owner: r.get(6),
        contact_id: r.get(7),
        contact_owner: r.get(8),
        flow_id: r.get(9),
        flow_name: r.get(10),
        version: r.get(11),
        email: r.get(12),
        mobile: r.get(13),
    }
}

impl TaskRow {
    /// Whether `viewer` may work it: anyone but an agent; an agent when it
    /// is theirs, or the contact is.
    fn visible_to(&self, viewer: &Viewer) -> bool {
        viewer.role != Role::Agent || [&self.owner, &self.contact_owner].iter().any(|o| o.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&viewer.email)))
    }

    fn label(&self) -> String {
        self.email.clone().or(self.mobile.clone()).unwrap_or_else(|| format!("Contact {}", self.contact_id))
    }
}

/// The pending manual step of `participant` the viewer may work, or "not found".
async fn owned_task(conn: &mut Conn, viewer: &Viewer, participant: i64) -> Result<TaskRow> {
    let sql = format!("{TASK_SELECT} AND a.participant_id = $1 ORDER BY a.visit DESC LIMIT 1");
    let row = sqlx::query(&sql).bind(participant).fetch_optional(&mut *conn).await?;
    match row.map(|r| task_row(&r)) {
        Some(task) if task.visible_to(viewer) => Ok(task),
        Some(_) => Err(Error::ParticipantNotFound(participant)),
        // Done already, or not theirs at all: an agent is not told which.
        None if viewer.role == Role::Agent => Err(Error::ParticipantNotFound(participant)),
        None => Err(Error::NoPendingAction(participant)),
    }
}

async fn document(conn: &mut Conn, flow: i64, version: i64) -> Result<FlowDocument> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT document FROM flow_versions WHERE flow_id = $1 AND number = $2").bind(flow).bind(version).fetch_optional(&mut *conn).await?;
    let text = text.ok_or(Error::VersionNotFound { flow, number: version })?;
    FlowDocument::from_json(&text).map_err(|err| Error::Internal(anyhow::anyhow!("flow {flow} version {version} unreadable: {err}")))
}

/// The contact's zone (else the flow's) and its name.
fn zone(contact: &Contact, doc: &FlowDocument) -> (jiff::tz::TimeZone, String) {
    let (zone, source) = zone_for(contact.timezone.as_deref(), doc.settings.timezone_or_default(), CalendarZone::Contact);
    let name = zone.iana_name().map(str::to_owned).unwrap_or(source);
    (zone, name)
}

/// Why `channel` cannot reach the contact at `address`, in words.
fn refusal_text(contact: &Contact, channel: Channel, address: Option<&str>) -> Option<String> {
    let what = match channel {
        Channel::Email => "email",
        Channel::Sms => "SMS",
        Channel::Call => "calls",
    };
    if let Some(refusal) = contact.refusal(channel) {
        return Some(match refusal {
            "blocked" => "The contact is blocked: nothing may be sent to them.".to_owned(),
            _ => format!("The contact opted out of {what}."),
        });
    }
    match (channel, address) {
        (Channel::Email, None) => Some("The contact has no email address.".into()),
        (Channel::Email, Some(to)) if contact.is_undeliverable(to) => Some(format!("{to} bounced for good: it is marked undeliverable.")),
        (Channel::Sms, None) => Some("The contact has no mobile number.".into()),
        (Channel::Sms, Some(to)) if !is_e164(to) => Some(format!("“{to}” is not a valid mobile number (E.164, like +15551234567).")),
        (Channel::Call, None) => Some("The contact has no phone number.".into()),
        (Channel::Call, Some(to)) if !is_e164(to) => Some(format!("“{to}” is not a valid phone number (E.164, like +15551234567).")),
        _ => None,
    }
}

/// What the contact-pressure policy would say of an automatic `channel`
/// send now: the rule, when it would have held it.
async fn pressure_warning(conn: &mut Conn, contact: &Contact, doc: &FlowDocument, channel: &str, now: Timestamp) -> Result<Option<String>> {
    if doc.settings.transactional == Some(true) {
        return Ok(None);
    }
    let policy = crate::runtime::pressure::load(conn).await?;
    let (zone, name) = zone(contact, doc);
    Ok(match policy.check(channel, &contact.recent, &zone, &name, now) {
        Verdict::Send => None,
        Verdict::Defer { why, .. } => {
            Some(format!("An automatic {channel} would have been held now by the contact-pressure policy: {why}. This one goes anyway and counts."))
        }
    })
}

fn mobile_of(contact: &Contact) -> Option<String> {
    contact.mobile.clone().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty())
}

fn phone_of(contact: &Contact) -> Option<String> {
    mobile_of(contact).or_else(|| Some(contact.field_text("phone").trim().to_owned()).filter(|p| !p.is_empty()))
}

/// Counts a manual send in the contact's recent sends (never held).
async fn count_send(conn: &mut Conn, contact_id: i64, channel: &str, at: Timestamp) -> Result<()> {
    for _ in 0..5 {
        let before = contacts::load(&mut *conn, contact_id).await?;
        let mut after = before.clone();
        after.recent.push(RecentSend { channel: channel.to_owned(), at });
        contacts::note_sends(&before, &mut after);
        if contacts::claim_sends(&mut *conn, contact_id, &before, &after).await? {
            return Ok(());
        }
    }
    Err(Error::Conflict { code: "contact_sends_changed", message: format!("contact {contact_id}'s sends kept changing; try again") })
}

/// An outbox entry for a send the agent made, and its conversation record
/// (opened now, with the agent, so the thread shows it at once; the
/// channel finds it by the key and sends).
struct Queued<'a> {
    task: &'a TaskRow,
    key: String,
    effect: Effect,
    channel: &'static str,
    address: &'a str,
    subject: Option<&'a str>,
    body: Option<&'a str>,
    agent: &'a str,
}

async fn enqueue(conn: &mut Conn, queued: &Queued<'_>, now: Timestamp) -> Result<i64> {
    let Queued { task, key, effect, channel, address, subject, body, agent } = queued;
    sqlx::query(
        "INSERT INTO outbox (participant_id, step, visit, idempotency_key, kind, effect, awaited, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
    )
    .bind(task.participant)
    .bind(&task.step)
    .bind(task.visit)
    .bind(key)
    .bind(effect.kind())
    .bind(serde_json::to_string(&effect).expect("effects serialize"))
    .bind(millis(now))
    .bind(now.to_string())
    .execute(&mut *conn)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, address, subject, status, created_at, updated_at, step, agent, body)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $8, $9, $10) RETURNING id",
    )
    .bind(key)
    .bind(task.participant)
    .bind(task.contact_id)
    .bind(channel)
    .bind(address)
    .bind(subject)
    .bind(now.to_string())
    .bind(&task.step)
    .bind(agent)
    .bind(body)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// A send from the workspace as one set of writes: the outbox entry, its
/// conversation record and the contact's counted send. A manual email's
/// are written in the transaction that completes its step
/// ([`Runtime::deliver_along`]), so there is never one without the other.
struct Sending<'a> {
    queued: Queued<'a>,
    now: Timestamp,
}

#[async_trait::async_trait]
impl crate::runtime::AlsoWrite for Sending<'_> {
    async fn write(&self, conn: &mut Conn) -> Result<()> {
        enqueue(&mut *conn, &self.queued, self.now).await?;
        count_send(conn, self.queued.task.contact_id, self.queued.channel, self.now).await
    }
}

/// The step's dispositions, as configured (`{"Interested": "group", …}`).
fn dispositions(doc: &FlowDocument, step: &str) -> Vec<String> {
    let Some(step) = doc.step(step) else { return Vec::new() };
    match step.settings.get("dispositions") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// The email a manual step would send, merge tags filled for the contact.
fn email_draft(doc: &FlowDocument, step: &str, contact: &Contact) -> Option<EmailDraft> {
    let step = doc.step(step)?;
    let settings: SendEmailSettings = read_settings(step).ok()?;
    let list = |text: Option<&String>| {
        addresses(text.map(String::as_str).unwrap_or_default())
            .iter()
            .map(|a| render(a, contact, Escape::None).trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(EmailDraft {
        to: contact.email.clone().unwrap_or_default(),
        cc: list(settings.cc.as_ref()),
        bcc: list(settings.bcc.as_ref()),
        subject: render(settings.subject.as_deref().unwrap_or_default(), contact, Escape::None),
        // Sanitised before it reaches the editor: it goes into the page's DOM.
        body: sanitize_html(&render(settings.body.as_deref().unwrap_or_default(), contact, Escape::Html)),
        attachments: settings.attachments.iter().map(|a| a.name.clone()).collect(),
    })
}

/// One plausible address: something@somewhere, no spaces or angle brackets.
fn plausible_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.contains(|c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'))
        && address.len() <= app::core::limits::EMAIL
}

impl Backend {
    async fn queue_rows(&self, viewer: &Viewer) -> Result<Vec<QueueEntry>> {
        let now = self.runtime.now();
        let mut conn = self.pool().acquire().await?;
        let sql = format!("{TASK_SELECT} AND lower(coalesce(p.reserved_for, a.owner, f.task_owner)) = lower($1) ORDER BY a.due_at LIMIT 500");
        let rows: Vec<TaskRow> = sqlx::query(&sql).bind(&viewer.email).fetch_all(&mut *conn).await?.iter().map(task_row).collect();
        let mut docs: HashMap<(i64, i64), FlowDocument> = HashMap::new();
        let mut entries = Vec::new();
        for task in rows {
            let due: Timestamp = task.due_at.parse().unwrap_or(now);
            if due > now {
                continue;
            }
            let (group, why) = match task.kind.as_str() {
                "call" | "schedule_callback" => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = docs.entry((task.flow_id, task.version)) {
                        slot.insert(document(&mut conn, task.flow_id, task.version).await?);
                    }
                    let doc = &docs[&(task.flow_id, task.version)];
                    let contact = contacts::load(&mut conn, task.contact_id).await?;
                    let (zone, name) = zone(&contact, doc);
                    let calendar = Calendar::from_settings(doc.settings.business_hours.as_ref());
                    if calendar.is_open(now, &zone) {
                        ("call", format!("business hours are open in {name}"))
                    } else {
                        let next = calendar.next_open(now, &zone).map(|due| format!("; they open {}", due.at.to_zoned(zone.clone()).strftime("%a %H:%M %Z")));
                        ("later", format!("outside business hours in {name}{}", next.unwrap_or_default()))
                    }
                }
                "send_email" => ("email", "a manual email".to_owned()),
                _ => ("task", "a task".to_owned()),
            };
            entries.push(QueueEntry {
                participant_id: task.participant,
                contact_id: task.contact_id,
                contact: task.label(),
                flow_id: task.flow_id,
                flow_name: task.flow_name.clone(),
                step: task.step.clone(),
                kind: task.kind.clone(),
                subject: task.subject.clone(),
                due_at: task.due_at.clone(),
                owner: task.owner.clone(),
                group: group.to_owned(),
                why,
            });
        }
        let rank = |group: &str| match group {
            "call" => 0,
            "email" => 1,
            "task" => 2,
            _ => 3,
        };
        // Stable: within a group, soonest due first (the query's order).
        entries.sort_by_key(|e| rank(&e.group));
        Ok(entries)
    }

    async fn thread_rows(&self, contact: i64) -> Result<Vec<ThreadItem>> {
        let rows = sqlx::query(
            "SELECT id, created_at, channel, direction, address, subject, body, status, agent, error, opened_at, clicked_at, replied_at,
                    reply_excerpt, answered_at, ended_at, duration_secs, notes,
                    contact_leg_status, contact_leg_started_at, contact_leg_answered_at, contact_leg_ended_at, contact_leg_duration_secs
             FROM conversations WHERE contact_id = $1 ORDER BY id DESC LIMIT 500",
        )
        .bind(contact)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| ThreadItem {
                id: r.get(0),
                at: r.get(1),
                channel: r.get(2),
                direction: r.get(3),
                address: r.get(4),
                subject: r.get(5),
                body: r.get(6),
                status: r.get(7),
                agent: r.get(8),
                error: r.get(9),
                opened_at: r.get(10),
                clicked_at: r.get(11),
                replied_at: r.get(12),
                reply_excerpt: r.get(13),
                answered_at: r.get(14),
                ended_at: r.get(15),
                duration_secs: r.get(16),
                notes: r.get(17),
                contact_leg: leg(r, 18),
            })
            .collect())
    }

    async fn call_view(&self, id: i64) -> Result<Option<CallView>> {
        let row = sqlx::query(
            "SELECT id, status, coalesce(sent_at, created_at), answered_at, ended_at, duration_secs, error,
                    contact_leg_status, contact_leg_started_at, contact_leg_answered_at, contact_leg_ended_at, contact_leg_duration_secs
             FROM conversations WHERE id = $1 AND channel = 'call'",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| CallView {
            id: r.get(0),
            status: r.get(1),
            started_at: r.get(2),
            answered_at: r.get(3),
            ended_at: r.get(4),
            duration_secs: r.get(5),
            error: r.get(6),
            contact_leg: leg(&r, 7),
        }))
    }

    async fn deliver_manual(&self, participant: i64, outcome: ManualOutcome, disposition: Option<String>) -> Result<()> {
        self.runtime.deliver(participant, Event::Manual { outcome, disposition }).await.map(|_| ())
    }
}

/// A click-to-call's contact leg from the five `contact_leg_*` columns starting at `at`.
fn leg(r: &crate::db::DbRow, at: usize) -> Option<CallLeg> {
    let status: Option<String> = r.get(at);
    status.map(|status| CallLeg { status, started_at: r.get(at + 1), answered_at: r.get(at + 2), ended_at: r.get(at + 3), duration_secs: r.get(at + 4) })
}

/// The disposition as the step's list spells it; any words when it has none.
fn chosen_disposition(list: &[String], given: Option<String>) -> Result<Option<String>, ServerFnError> {
    let Some(given) = given else { return Ok(None) };
    app::core::limits::check("disposition", &given, app::core::limits::NAME).map_err(fail)?;
    if list.is_empty() {
        return Ok(Some(given));
    }
    list.iter()
        .find(|d| d.eq_ignore_ascii_case(&given))
        .cloned()
        .map(Some)
        .ok_or_else(|| invalid(format!("“{given}” is not one of this step's dispositions: {}.", list.join(", "))))
}

#[async_trait::async_trait]
impl WorkspaceBackend for Backend {
    async fn queue(&self, viewer: &Viewer) -> Result<Vec<QueueEntry>, ServerFnError> {
        self.queue_rows(viewer).await.map_err(fail)
    }

    async fn task(&self, viewer: &Viewer, participant: i64) -> Result<Workspace, ServerFnError> {
        let now = self.runtime.now();
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let task = owned_task(&mut conn, viewer, participant).await.map_err(fail)?;
        let doc = document(&mut conn, task.flow_id, task.version).await.map_err(fail)?;
        let contact = contacts::load(&mut conn, task.contact_id).await.map_err(fail)?;
        let email = (task.kind == "send_email").then(|| email_draft(&doc, &task.step, &contact)).flatten();
        let to = contact.email.clone().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
        let email_reach = Reach {
            blocked: refusal_text(&contact, Channel::Email, to.as_deref()),
            pressure: pressure_warning(&mut conn, &contact, &doc, "email", now).await.map_err(fail)?,
            address: to,
        };
        let mobile = mobile_of(&contact);
        let sms_reach = Reach {
            blocked: refusal_text(&contact, Channel::Sms, mobile.as_deref()),
            pressure: pressure_warning(&mut conn, &contact, &doc, "sms", now).await.map_err(fail)?,
            address: mobile,
        };
        let phone = phone_of(&contact);
        let call_reach = Reach {
            blocked: refusal_text(&contact, Channel::Call, phone.as_deref()),
            pressure: pressure_warning(&mut conn, &contact, &doc, "call", now).await.map_err(fail)?,
            address: phone,
        };
        let script = doc
            .step(&task.step)
            .filter(|_| task.kind == "call")
            .and_then(|s| read_settings::<CallSettings>(s).ok())
            .and_then(|s| s.script)
            .map(|s| render(&s, &contact, Escape::None))
            .filter(|s| !s.trim().is_empty());
        let agent_phone: Option<String> =
            sqlx::query_scalar("SELECT phone FROM users WHERE id = $1").bind(viewer.id).fetch_optional(&mut *conn).await.map_err(fail)?.flatten();
        drop(conn);
        let integrations = Integrations::load(self.pool()).await.map_err(fail)?;
        let provider = integrations.sms.as_ref().is_some_and(|(sms, token)| sms.voice.is_some() && token.is_some() && !sms.senders.is_empty());
        let queue = self.queue_rows(viewer).await.map_err(fail)?;
        let left = queue.len() + usize::from(!queue.iter().any(|q| q.participant_id == participant));
        let detail = self.runtime.detail(task.contact_id).await?;
        let thread = self.thread_rows(task.contact_id).await.map_err(fail)?;
        let entry = QueueEntry {
            participant_id: task.participant,
            contact_id: task.contact_id,
            contact: task.label(),
            flow_id: task.flow_id,
            flow_name: task.flow_name.clone(),
            step: task.step.clone(),
            kind: task.kind.clone(),
            subject: task.subject.clone(),
            due_at: task.due_at.clone(),
            owner: task.owner.clone(),
            group: queue.iter().find(|q| q.participant_id == participant).map(|q| q.group.clone()).unwrap_or_else(|| "task".into()),
            why: queue.iter().find(|q| q.participant_id == participant).map(|q| q.why.clone()).unwrap_or_else(|| "not due yet".into()),
        };
        Ok(Workspace {
            task: entry,
            email,
            email_reach,
            sms_reach,
            call_reach,
            agent_phone,
            provider,
            dispositions: dispositions(&doc, &task.step),
            script,
            contact: detail,
            thread,
            left,
        })
    }

    async fn send_email(&self, viewer: &Viewer, email: EmailSend) -> Result<String, ServerFnError> {
        let now = self.runtime.now();
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let task = owned_task(&mut conn, viewer, email.participant).await.map_err(fail)?;
        if task.kind != "send_email" {
            return Err(invalid("This task is not a manual email."));
        }
        let doc = document(&mut conn, task.flow_id, task.version).await.map_err(fail)?;
        let contact = contacts::load(&mut conn, task.contact_id).await.map_err(fail)?;
        let to = email.to.trim().to_owned();
        if let Some(why) = refusal_text(&contact, Channel::Email, contact.email.as_deref().map(str::trim).filter(|e| !e.is_empty())) {
            return Err(invalid(format!("Not sent. {why}")));
        }
        if !plausible_email(&to) {
            return Err(invalid(format!("“{to}” is not one email address.")));
        }
        let (cc, bcc) = (addresses(&email.cc), addresses(&email.bcc));
        for (list, name) in [(&cc, "Cc"), (&bcc, "Bcc")] {
            if list.len() > app::workspace_api::MAX_COPIES {
                return Err(invalid(format!("{name} takes at most {} addresses.", app::workspace_api::MAX_COPIES)));
            }
            if let Some(bad) = list.iter().find(|a| !plausible_email(a)) {
                return Err(invalid(format!("“{bad}” in {name} is not an email address.")));
            }
        }
        let subject = email.subject.trim().to_owned();
        if subject.is_empty() {
            return Err(invalid("Write a subject."));
        }
        if subject.contains(['\r', '\n']) {
            return Err(invalid("A subject is one line."));
        }
        app::core::limits::check("subject", &subject, app::workspace_api::MAX_SUBJECT).map_err(fail)?;
        app::core::limits::check("body", &email.body, app::workspace_api::MAX_BODY).map_err(fail)?;
        let html = sanitize_html(&email.body);
        if html.trim().is_empty() {
            return Err(invalid("Write the email's body."));
        }
        let disposition = chosen_disposition(&dispositions(&doc, &task.step), email.disposition)?;
        let attachments = doc.step(&task.step).and_then(|s| read_settings::<SendEmailSettings>(s).ok()).map(|s| s.attachments).unwrap_or_default();
        drop(conn);
        let key = format!("{}:{}:{}:manual", task.participant, task.step, task.visit);
        let effect = Effect::Email { to: to.clone(), subject: subject.clone(), html, cc, bcc, attachments };
        let queued = Queued { task: &task, key, effect, channel: "email", address: &to, subject: Some(&subject), body: None, agent: &viewer.email };
        // One transaction: the step completes (only a task still pending
        // does) and the email is queued with its record, or nothing is.
        let event = Event::Manual { outcome: ManualOutcome::Completed, disposition };
        self.runtime.deliver_along(task.participant, event, &Sending { queued, now }).await.map_err(fail)?;
        Ok(format!("Sent to {to}; the step is completed."))
    }

    async fn send_sms(&self, viewer: &Viewer, participant: i64, to: String, text: String) -> Result<String, ServerFnError> {
        let now = self.runtime.now();
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let task = owned_task(&mut conn, viewer, participant).await.map_err(fail)?;
        let contact = contacts::load(&mut conn, task.contact_id).await.map_err(fail)?;
        let to = to.trim().to_owned();
        if let Some(why) = refusal_text(&contact, Channel::Sms, Some(&to)) {
            return Err(invalid(format!("Not sent. {why}")));
        }
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(invalid("Write the message."));
        }
        app::core::limits::check("text", &text, app::workspace_api::MAX_SMS).map_err(fail)?;
        drop(conn);
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let key = format!("{}:{}:{}:sms:{}", task.participant, task.step, task.visit, now.as_millisecond());
        let effect = Effect::Sms { to: to.clone(), text: text.clone() };
        let queued = Queued { task: &task, key, effect, channel: "sms", address: &to, subject: None, body: Some(&text), agent: &viewer.email };
        crate::runtime::AlsoWrite::write(&Sending { queued, now }, &mut tx).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let length = app::core::sms::measure(&text);
        Ok(format!("Text to {to} queued ({} segment{}).", length.segments, if length.segments == 1 { "" } else { "s" }))
    }

    async fn place_call(&self, viewer: &Viewer, participant: i64) -> Result<CallView, ServerFnError> {
        let now = self.runtime.now();
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let task = owned_task(&mut conn, viewer, participant).await.map_err(fail)?;
        let contact = contacts::load(&mut conn, task.contact_id).await.map_err(fail)?;
        let number = phone_of(&contact);
        if let Some(why) = refusal_text(&contact, Channel::Call, number.as_deref()) {
            return Err(invalid(format!("Not called. {why}")));
        }
        let number = number.expect("checked above");
        let agent: Option<String> =
            sqlx::query_scalar("SELECT phone FROM users WHERE id = $1").bind(viewer.id).fetch_optional(&mut *conn).await.map_err(fail)?.flatten();
        let Some(agent) = agent.filter(|p| is_e164(p)) else {
            return Err(invalid("Add your own phone number first: the call rings it, then the contact."));
        };
        drop(conn);
        let integrations = Integrations::load(self.pool()).await.map_err(fail)?;
        let Some((sms, token)) = integrations.sms.as_ref() else {
            return Err(invalid("No telephony provider is configured: dial the number yourself."));
        };
        let Some(voice) = sms.voice.as_ref() else {
            return Err(invalid("Calls are not set up with the provider (its voice settings): dial the number yourself."));
        };
        let callback = status_url(&voice.status_callback).ok_or_else(|| invalid("The provider's status callback is not a usable URL."))?;
        let placed = self
            .texter
            .bridge(sms, token, &agent, &number, &callback, voice.ring_secs)
            .await
            .map_err(|failure| invalid(format!("The call was not placed: {}.", failure.reason)))?;
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let key = format!("agent-call:{}:{}:{}", task.participant, task.visit, placed.sid);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, address, sender, status, provider_id,
                 created_at, sent_at, updated_at, step, agent)
             VALUES ($1, $2, $3, 'call', $4, $5, $6, $7, $8, $8, $8, $9, $10) RETURNING id",
        )
        .bind(&key)
        .bind(task.participant)
        .bind(task.contact_id)
        .bind(&number)
        .bind(&placed.from)
        .bind(&placed.status)
        .bind(&placed.sid)
        .bind(now.to_string())
        .bind(&task.step)
        .bind(&viewer.email)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        count_send(&mut tx, task.contact_id, "call", now).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        self.call_view(id).await.map_err(fail)?.ok_or_else(|| fail(Error::CallNotFound(placed.sid)))
    }

    async fn call(&self, viewer: &Viewer, id: i64) -> Result<CallView, ServerFnError> {
        let who: Option<(Option<String>, Option<i64>)> = sqlx::query_as("SELECT agent, contact_id FROM conversations WHERE id = $1 AND channel = 'call'")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(fail)?;
        let mine = who.as_ref().is_some_and(|(agent, _)| viewer.role != Role::Agent || agent.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(&viewer.email)));
        let missing = || ServerFnError::new(format!("There is no call with id {id}."));
        if !mine {
            return Err(missing());
        }
        self.call_view(id).await.map_err(fail)?.ok_or_else(missing)
    }

    async fn finish(
        &self,
        viewer: &Viewer,
        participant: i64,
        outcome: String,
        disposition: Option<String>,
        notes: Option<String>,
        until: Option<String>,
    ) -> Result<(), ServerFnError> {
        let now = self.runtime.now();
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let task = owned_task(&mut conn, viewer, participant).await.map_err(fail)?;
        let doc = document(&mut conn, task.flow_id, task.version).await.map_err(fail)?;
        drop(conn);
        let outcome = match outcome.as_str() {
            "completed" => ManualOutcome::Completed,
            "skipped" => ManualOutcome::Skipped,
            "deferred" => {
                let until = until.ok_or_else(|| invalid("Say until when to defer it."))?;
                let until: Timestamp = until.parse().map_err(|_| invalid(format!("“{until}” is not a date and time like 2026-12-01T09:00:00Z.")))?;
                ManualOutcome::Deferred { until }
            }
            other => return Err(invalid(format!("“{other}” is not completed, skipped or deferred."))),
        };
        let disposition =
            if matches!(outcome, ManualOutcome::Completed) { chosen_disposition(&dispositions(&doc, &task.step), disposition)? } else { disposition };
        if let Some(notes) = &notes {
            app::core::limits::check("notes", notes, app::core::limits::NOTE).map_err(fail)?;
        }
        self.deliver_manual(participant, outcome, disposition).await.map_err(fail)?;
        if let Some(notes) = notes {
            // On the agent's latest call (or message) for this visit, else a note of its own.
            let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
            let latest: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM conversations WHERE participant_id = $1 AND step = $2 AND lower(agent) = lower($3) ORDER BY id DESC LIMIT 1",
            )
            .bind(participant)
            .bind(&task.step)
            .bind(&viewer.email)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
            match latest {
                Some(id) => {
                    sqlx::query("UPDATE conversations SET notes = $1, updated_at = $2 WHERE id = $3")
                        .bind(&notes)
                        .bind(now.to_string())
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, address, status, created_at, updated_at, step, agent, notes)
                         VALUES ($1, $2, $3, 'note', '', 'noted', $4, $4, $5, $6, $7)",
                    )
                    .bind(format!("note:{}:{}:{}", participant, task.visit, now.as_millisecond()))
                    .bind(participant)
                    .bind(task.contact_id)
                    .bind(now.to_string())
                    .bind(&task.step)
                    .bind(&viewer.email)
                    .bind(&notes)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                }
            }
            tx.commit().await.map_err(fail)?;
        }
        Ok(())
    }

    async fn thread(&self, viewer: &Viewer, contact: i64) -> Result<Vec<ThreadItem>, ServerFnError> {
        if viewer.role == Role::Agent {
            // Their contact, or a contact with a task of theirs.
            let sql = format!("{TASK_SELECT} AND p.contact_id = $1");
            let tasks: Vec<TaskRow> = sqlx::query(&sql).bind(contact).fetch_all(self.pool()).await.map_err(fail)?.iter().map(task_row).collect();
            let owner: Option<Option<String>> =
                sqlx::query_scalar("SELECT owner FROM contacts WHERE id = $1").bind(contact).fetch_optional(self.pool()).await.map_err(fail)?;
            let owns = owner.flatten().is_some_and(|o| o.eq_ignore_ascii_case(&viewer.email)) || tasks.iter().any(|t| t.visible_to(viewer));
            if !owns {
                return Err(fail(Error::ContactNotFound(contact)));
            }
        }
        self.thread_rows(contact).await.map_err(fail)
    }

    async fn templates(&self, channel: Option<String>) -> Result<Vec<Template>, ServerFnError> {
        let rows = sqlx::query("SELECT id, name, channel, subject, body FROM message_templates WHERE ($1 IS NULL OR channel = $1) ORDER BY channel, name")
            .bind(channel)
            .fetch_all(self.pool())
            .await
            .map_err(fail)?;
        // Email bodies were sanitised on save; again here, as they go into the editor.
        Ok(rows
            .iter()
            .map(|r| {
                let (channel, body): (String, String) = (r.get(2), r.get(4));
                let body = if channel == "email" { sanitize_html(&body) } else { body };
                Template { id: r.get(0), name: r.get(1), channel, subject: r.get(3), body }
            })
            .collect())
    }

    async fn save_template(&self, viewer: &Viewer, template: Template) -> Result<Template, ServerFnError> {
        let name = template.name.trim().to_owned();
        if name.is_empty() {
            return Err(invalid("Name the template."));
        }
        app::core::limits::check("name", &name, app::core::limits::NAME).map_err(fail)?;
        let (subject, body) = match template.channel.as_str() {
            "email" => {
                let subject = template.subject.as_deref().map(str::trim).unwrap_or_default().to_owned();
                if subject.contains(['\r', '\n']) {
                    return Err(invalid("A subject is one line."));
                }
                app::core::limits::check("subject", &subject, app::workspace_api::MAX_SUBJECT).map_err(fail)?;
                app::core::limits::check("body", &template.body, app::workspace_api::MAX_BODY).map_err(fail)?;
                (Some(subject).filter(|s| !s.is_empty()), sanitize_html(&template.body))
            }
            "sms" => {
                app::core::limits::check("body", template.body.trim(), app::workspace_api::MAX_SMS).map_err(fail)?;
                (None, template.body.trim().to_owned())
            }
            other => return Err(invalid(format!("“{other}” is not email or sms."))),
        };
        if body.trim().is_empty() {
            return Err(invalid("Write the template's body."));
        }
        let now = Timestamp::now().to_string();
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM message_templates WHERE channel = $1 AND lower(name) = lower($2) AND id <> $3")
            .bind(&template.channel)
            .bind(&name)
            .bind(template.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        if taken.is_some() {
            return Err(fail(Error::NameTaken(name)));
        }
        let id: i64 = if template.id > 0 {
            let changed =
                sqlx::query("UPDATE message_templates SET name = $1, subject = $2, body = $3, updated_by = $4, updated_at = $5 WHERE id = $6 AND channel = $7")
                    .bind(&name)
                    .bind(&subject)
                    .bind(&body)
                    .bind(viewer.actor())
                    .bind(&now)
                    .bind(template.id)
                    .bind(&template.channel)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            if changed.rows_affected() == 0 {
                return Err(invalid(format!("There is no {} template {}.", template.channel, template.id)));
            }
            template.id
        } else {
            sqlx::query_scalar(
                "INSERT INTO message_templates (name, channel, subject, body, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&name)
            .bind(&template.channel)
            .bind(&subject)
            .bind(&body)
            .bind(viewer.actor())
            .bind(&now)
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?
        };
        crate::audit::record(&mut *tx, &viewer.actor(), "template.saved", &format!("template {id}"), &name).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(Template { id, name, channel: template.channel, subject, body })
    }

    async fn delete_template(&self, viewer: &Viewer, id: i64) -> Result<(), ServerFnError> {
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let gone = sqlx::query("DELETE FROM message_templates WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(fail)?;
        if gone.rows_affected() == 0 {
            return Err(invalid(format!("There is no template {id}.")));
        }
        crate::audit::record(&mut *tx, &viewer.actor(), "template.deleted", &format!("template {id}"), "").await.map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    async fn phone(&self, viewer: &Viewer) -> Result<Option<String>, ServerFnError> {
        let phone: Option<Option<String>> =
            sqlx::query_scalar("SELECT phone FROM users WHERE id = $1").bind(viewer.id).fetch_optional(self.pool()).await.map_err(fail)?;
        Ok(phone.flatten())
    }

    async fn save_phone(&self, viewer: &Viewer, phone: String) -> Result<Option<String>, ServerFnError> {
        let phone: String = phone.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
        let phone = Some(phone).filter(|p| !p.is_empty());
        if let Some(p) = &phone {
            app::core::limits::check("phone", p, app::core::limits::MOBILE).map_err(fail)?;
            if !is_e164(p) {
                return Err(invalid(format!("“{p}” is not a phone number in E.164 form (+15551234567).")));
            }
        }
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        sqlx::query("UPDATE users SET phone = $1 WHERE id = $2").bind(&phone).bind(viewer.id).execute(&mut *tx).await.map_err(fail)?;
        crate::audit::record(&mut *tx, &viewer.actor(), "user.phone", &format!("user {}", viewer.id), if phone.is_some() { "set" } else { "removed" })
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(phone)
    }

    async fn flow_owners(&self) -> Result<Vec<(i64, String, Option<String>)>, ServerFnError> {
        sqlx::query_as("SELECT id, name, task_owner FROM flows ORDER BY name").fetch_all(self.pool()).await.map_err(fail)
    }

    async fn set_flow_owner(&self, viewer: &Viewer, flow: i64, owner: Option<String>) -> Result<(), ServerFnError> {
        if let Some(owner) = &owner {
            app::core::limits::check("owner", owner, app::core::limits::OWNER).map_err(fail)?;
            if !plausible_email(owner) {
                let message = format!("“{owner}” is not an email address: a default owner is the agent's email.");
                return Err(fail(Error::Invalid { code: "invalid_owner", message }));
            }
        }
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let changed = sqlx::query("UPDATE flows SET task_owner = $1 WHERE id = $2").bind(&owner).bind(flow).execute(&mut *tx).await.map_err(fail)?;
        if changed.rows_affected() == 0 {
            return Err(fail(Error::FlowNotFound(flow)));
        }
        let detail = owner.as_deref().map(|o| format!("default task owner {o}")).unwrap_or_else(|| "no default task owner".into());
        crate::audit::record(&mut *tx, &viewer.actor(), "flow.task_owner", &format!("flow {flow}"), &detail).await.map_err(fail)?;
        tx.commit().await.map_err(fail)
    }
}

/// Where the provider reports click-to-call progress: the voice settings'
/// status callback's origin (where the provider reaches this server),
/// with our path.
pub fn status_url(voice_callback: &str) -> Option<String> {
    let url = url::Url::parse(voice_callback).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| format!("{}/api/v1{CALL_STATUS_PATH}", origin.ascii_serialization()))
}

/// A click-to-call's progress (`CallSid`, `CallStatus`, `CallDuration`,
/// `ErrorCode`), signed Twilio's way over [`status_url`]. The record
/// follows it: answered when it goes in progress, ended with its duration.
async fn call_status(State(state): State<AppState>, headers: HeaderMap, body: String) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let integrations = Integrations::load(pool).await?;
    let Some((sms, Some(token))) = integrations.sms else { return Err(Error::BadSignature) };
    let Some(url) = sms.voice.as_ref().and_then(|v| status_url(&v.status_callback)) else { return Err(Error::BadSignature) };
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !crate::channels::api::signed(token.expose(), &url, &fields, signature) {
        return Err(Error::BadSignature);
    }
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let (Some(sid), Some(status)) = (field("CallSid"), field("CallStatus")) else {
        return Err(Error::BadBody {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            message: "A call status report needs CallSid and CallStatus.".into(),
        });
    };
    let duration = field("CallDuration").and_then(|d| d.parse::<i64>().ok());
    if let Some(parent) = field("ParentCallSid") {
        // The contact's leg, dialled by the agent's call.
        let ours: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE provider_id = $1 AND channel = 'call' AND agent IS NOT NULL")
            .bind(parent)
            .fetch_optional(pool)
            .await?;
        let Some(id) = ours else { return Err(Error::CallNotFound(parent.to_owned())) };
        let status = contact_leg(pool, id, sid, status, duration).await?;
        return Ok(Json(json!({"ok": true, "status": status})));
    }
    let ours: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE provider_id = $1 AND channel = 'call' AND agent IS NOT NULL")
        .bind(sid)
        .fetch_optional(pool)
        .await?;
    let Some(id) = ours else { return Err(Error::CallNotFound(sid.to_owned())) };
    let error = field("ErrorCode").map(|code| format!("the provider reported error {code}"));
    let record = crate::channels::conversations::call_status(pool, sid, status, duration, error.as_deref()).await?;
    if matches!(status, "in-progress" | "answered") {
        sqlx::query("UPDATE conversations SET answered_at = coalesce(answered_at, $1) WHERE id = $2")
            .bind(Timestamp::now().to_string())
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(Json(json!({"ok": true, "status": record.map(|r| r.status)})))
}

/// A report on the contact's leg of call `id`: its status moves only
/// forward (a late "ringing" does not undo "completed"); it started when
/// first reported, was answered when it went in progress, ended with its
/// final status and duration. The leg's status as it stands.
async fn contact_leg(pool: &Pool, id: i64, sid: &str, status: &str, duration: Option<i64>) -> Result<Option<String>> {
    let mut tx = crate::db::begin_write(pool).await?;
    let (known, leg): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT contact_leg_status, contact_leg_sid FROM conversations WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
    if leg.as_deref().is_some_and(|leg| leg != sid) {
        // Another leg than the one first reported (a redial): not ours to follow.
        return Ok(known);
    }
    let status = if status == "answered" { "in-progress" } else { status };
    let rank = |s: Option<&str>| s.and_then(crate::channels::calls::rank);
    let Some(new) = rank(Some(status)).filter(|new| rank(known.as_deref()).is_none_or(|old| *new > old)) else { return Ok(known) };
    let at = Timestamp::now().to_string();
    sqlx::query(
        "UPDATE conversations SET contact_leg_sid = $1, contact_leg_status = $2, contact_leg_started_at = coalesce(contact_leg_started_at, $3),
             contact_leg_answered_at = coalesce(contact_leg_answered_at, $4), contact_leg_ended_at = coalesce(contact_leg_ended_at, $5),
             contact_leg_duration_secs = coalesce($6, contact_leg_duration_secs), updated_at = $3
         WHERE id = $7",
    )
    .bind(sid)
    .bind(status)
    .bind(&at)
    .bind((new == 3).then_some(&at))
    .bind((new == 4).then_some(&at))
    .bind(duration)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(status.to_owned()))
}

/// An SMS that came in (the provider's inbound webhook): on the thread of
/// every contact with that mobile number, as a message in (channel
/// `sms_in`, so that nothing counting texts sent counts it).
pub async fn record_inbound_sms(pool: &Pool, from: &str, text: &str, sid: Option<&str>) -> Result<()> {
    let contacts: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM contacts WHERE mobile = $1 AND deleted_at IS NULL ORDER BY id").bind(from.trim()).fetch_all(pool).await?;
    let now = Timestamp::now().to_string();
    let sid = sid.filter(|s| !s.is_empty()).map(|s| s.chars().take(64).collect::<String>());
    for contact in contacts {
        let key = match &sid {
            Some(sid) => format!("sms-in:{sid}:{contact}"),
            None => format!("sms-in:{}:{contact}", Timestamp::now().as_nanosecond()),
        };
        // The participant of the latest text to that number, so the reply sits with it.
        let latest: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT participant_id, step FROM conversations WHERE contact_id = $1 AND channel = 'sms' AND direction = 'out' AND address = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(contact)
        .bind(from.trim())
        .fetch_optional(pool)
        .await?;
        let (participant, step) = latest.unwrap_or_default();
        sqlx::query(
            "INSERT INTO conversations (idempotency_key, participant_id, contact_id, channel, direction, address, status, provider_id, body,
                 created_at, sent_at, updated_at, step)
             VALUES ($1, $2, $3, 'sms_in', 'in', $4, 'received', $5, $6, $7, $7, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(participant)
        .bind(contact)
        .bind(from.trim())
        .bind(&sid)
        .bind(text)
        .bind(&now)
        .bind(step)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Erasure: the texts (both ways) and the agents' notes on these
/// conversations go, keeping when and what kind. Called by the contact
/// erasure with the erased contact's conversations, in its transaction.
pub async fn forget(conn: &mut Conn, conversations: &[i64]) -> Result<()> {
    for chunk in conversations.chunks(500) {
        let ids = crate::db::id_list(chunk);
        sqlx::query(&format!("UPDATE conversations SET body = NULL, notes = NULL WHERE id IN ({ids})")).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_url_keeps_the_callback_origin() {
        assert_eq!(
            status_url("https://wm.example.com:8443/api/v1/channels/calls/status?x=1").as_deref(),
            Some("https://wm.example.com:8443/api/v1/workspace/calls/status")
        );
        assert_eq!(status_url("not a url"), None);
    }

    #[test]
    fn plausible_addresses_are_one_address() {
        assert!(plausible_email("ada@example.test"));
        for bad in ["ada", "ada@example", "a b@x.test", "a@x.test, b@y.test", "<a@x.test>", "a@.test"] {
            assert!(!plausible_email(bad), "{bad}");
        }
    }
}
