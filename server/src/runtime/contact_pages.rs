//! The store behind the contacts, participant search and bulk-run pages'
//! server functions: the same code the REST API runs.

use leptos::prelude::ServerFnError;
use sqlx::Row;

use app::contacts_api::{
    ActionPreview, ContactDetail, ContactPage, ContactRow, ContactsBackend, ImportInfo, MessageEntry, ParticipantPage, ParticipantRow, Participation, RunInfo,
    TaskEntry, TimelineEntry,
};
use app::core::contact::Contact;

use super::bulk::{self, BulkRequest, Criteria};
use super::contacts::{self, ContactSearch};
use super::Runtime;
use crate::error::Error;
use crate::db::Sql;

fn fail(err: impl Into<Error>) -> ServerFnError {
    err.into().into_server_fn_error()
}

fn time_text(ms: Option<i64>) -> Option<String> {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()).map(|t| t.to_string())
}

fn run_info(run: bulk::RunView) -> RunInfo {
    RunInfo {
        id: run.id,
        action: run.action,
        status: run.status,
        total: run.total,
        done: run.done,
        count: run.count,
        message: run.message,
        run_by: run.run_by,
        run_at: run.run_at,
        finished_at: run.finished_at,
        undone_by: run.undone_by,
        undone_at: run.undone_at,
        reversible: run.reversible,
        criteria: run.criteria.to_string(),
        params: run.params.to_string(),
        link: run.link,
        link_expires_at: run.link_expires_at,
        email_status: run.email_status,
    }
}

fn import_info(job: super::import::ImportJob) -> ImportInfo {
    ImportInfo {
        id: job.id,
        file_name: job.file_name,
        status: job.status,
        bytes_total: job.bytes_total,
        bytes_done: job.bytes_done,
        rows_done: job.rows_done,
        created: job.created,
        updated: job.updated,
        skipped: job.skipped,
        failed: job.failed,
        error: job.error,
        errors: job.errors,
        started_by: job.started_by,
        started_at: job.started_at,
        finished_at: job.finished_at,
    }
}

fn request(text: &str) -> Result<BulkRequest, ServerFnError> {
    serde_json::from_str(text).map_err(|err| ServerFnError::new(format!("The bulk action cannot be read: {err}")))
}

#[async_trait::async_trait]
impl ContactsBackend for Runtime {
    async fn search(&self, q: String, list: String, after: Option<String>) -> Result<ContactPage, ServerFnError> {
        const PER_PAGE: i64 = 50;
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let search = ContactSearch { q: Some(q), list: Some(list) };
        let found = contacts::search(&mut conn, &search, after.as_deref(), PER_PAGE).await.map_err(fail)?;
        Ok(ContactPage {
            total: found.total,
            more: found.more,
            next: found.next,
            rows: found
                .contacts
                .into_iter()
                .map(|c| ContactRow {
                    id: c.id,
                    email: c.contact.email,
                    mobile: c.contact.mobile,
                    owner: c.contact.owner,
                    timezone: c.contact.timezone,
                    lists: c.contact.lists.into_iter().collect(),
                })
                .collect(),
        })
    }

    async fn detail(&self, id: i64) -> Result<ContactDetail, ServerFnError> {
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let contact = contacts::load(&mut conn, id).await.map_err(fail)?;
        let (deleted_at, created_at): (Option<String>, String) =
            sqlx::query_as("SELECT deleted_at, created_at FROM contacts WHERE id = $1").bind(id).fetch_one(&mut *conn).await.map_err(fail)?;
        let participations = sqlx::query(
            "SELECT p.id, p.flow_id, f.name, p.version, p.status, p.step, p.reserved_for, p.callback_at
             FROM participants p JOIN flows f ON f.id = p.flow_id WHERE p.contact_id = $1 ORDER BY p.id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(fail)?
        .iter()
        .map(|r| Participation {
            participant_id: r.get(0),
            flow_id: r.get(1),
            flow_name: r.get(2),
            version: r.get(3),
            status: r.get(4),
            step: r.get(5),
            reserved_for: r.get(6),
            callback_at: time_text(r.get(7)),
        })
        .collect();
        let actions = sqlx::query(
            "SELECT a.participant_id, f.name, a.step, a.kind, a.due_at, a.done_at, a.outcome, a.manual, coalesce(p.reserved_for, a.owner),
                    a.subject, a.reason
             FROM participant_actions a JOIN participants p ON p.id = a.participant_id JOIN flows f ON f.id = p.flow_id
             WHERE p.contact_id = $1 ORDER BY a.due_at DESC, a.participant_id, a.visit DESC LIMIT 500",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(fail)?;
        let timeline: Vec<TimelineEntry> = actions
            .iter()
            .map(|r| TimelineEntry {
                participant_id: r.get(0),
                flow_name: r.get(1),
                step: r.get(2),
                kind: r.get(3),
                due_at: r.get(4),
                done_at: r.get(5),
                outcome: r.get(6),
                manual: r.get::<i64, _>(7) != 0,
                owner: r.get(8),
                subject: r.get(9),
                reason: r.get(10),
            })
            .collect();
        // Tasks and follow-ups: the manual steps (calls, tasks, manual emails,
        // callbacks) and the follow-ups / requests / sales flows created.
        let tasks = timeline
            .iter()
            .filter(|t| t.manual || matches!(t.kind.as_str(), "create_activity" | "create_follow_up" | "task" | "schedule_callback"))
            .map(|t| TaskEntry {
                participant_id: t.participant_id,
                flow_name: t.flow_name.clone(),
                step: t.step.clone(),
                kind: t.kind.clone(),
                subject: t.subject.clone(),
                owner: t.owner.clone(),
                status: t.outcome.clone(),
                due_at: t.due_at.clone(),
            })
            .collect();
        let messages = sqlx::query(
            "SELECT o.participant_id, o.kind, o.status, o.created_at, o.last_error FROM outbox o JOIN participants p ON p.id = o.participant_id
             WHERE p.contact_id = $1 ORDER BY o.id DESC LIMIT 200",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(fail)?
        .iter()
        .map(|r| MessageEntry { participant_id: r.get(0), kind: r.get(1), status: r.get(2), created_at: r.get(3), last_error: r.get(4) })
        .collect();
        Ok(ContactDetail { id, contact, deleted_at, created_at, participations, timeline, tasks, messages })
    }

    async fn save(&self, id: Option<i64>, contact: Contact) -> Result<i64, ServerFnError> {
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let (id, joined) = match id {
            None => {
                let id = contacts::insert(&mut tx, &contact).await.map_err(fail)?;
                (id, contact.lists.iter().cloned().collect::<Vec<_>>())
            }
            Some(id) => {
                let before = contacts::load(&mut tx, id).await.map_err(fail)?;
                contacts::update(&mut tx, id, &contact).await.map_err(fail)?;
                (id, contact.lists.difference(&before.lists).cloned().collect())
            }
        };
        self.enroll_by_lists(&mut tx, id, &joined).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(id)
    }

    async fn change_list(&self, id: i64, list: String, add: bool) -> Result<(), ServerFnError> {
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        let before = contacts::load(&mut tx, id).await.map_err(fail)?;
        let mut after = before.clone();
        if add {
            after.lists.insert(list.clone());
        } else {
            after.lists.retain(|l| !l.eq_ignore_ascii_case(&list));
        }
        contacts::update(&mut tx, id, &after).await.map_err(fail)?;
        if add && !before.lists.iter().any(|l| l.eq_ignore_ascii_case(&list)) {
            self.enroll_by_lists(&mut tx, id, &[list]).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    async fn participants(&self, criteria: String, page: i64) -> Result<ParticipantPage, ServerFnError> {
        const PER_PAGE: i64 = 50;
        let criteria: Criteria =
            serde_json::from_str(&criteria).map_err(|err| ServerFnError::new(format!("The search cannot be read: {err}")))?;
        criteria.check().map_err(fail)?;
        let mut count: Sql = Sql::new("SELECT count(*) FROM participants WHERE ");
        criteria.push_matching(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(self.pool()).await.map_err(fail)?;
        let mut query: Sql = Sql::new(
            "SELECT p.id, p.contact_id, coalesce(c.email, c.mobile, 'Contact ' || c.id), p.flow_id, f.name, p.status, p.step, p.pass_count,
                    p.reserved_for, p.callback_at
             FROM participants p JOIN contacts c ON c.id = p.contact_id JOIN flows f ON f.id = p.flow_id
             WHERE p.id IN (SELECT id FROM participants WHERE ",
        );
        criteria.push_matching(&mut query);
        query.push(" ORDER BY id LIMIT ").push_bind(PER_PAGE).push(" OFFSET ").push_bind(page.max(0) * PER_PAGE).push(") ORDER BY p.id");
        let rows = query.build().fetch_all(self.pool()).await.map_err(fail)?;
        Ok(ParticipantPage {
            total,
            page: page.max(0),
            per_page: PER_PAGE,
            rows: rows
                .iter()
                .map(|r| ParticipantRow {
                    id: r.get(0),
                    contact_id: r.get(1),
                    contact: r.get(2),
                    flow_id: r.get(3),
                    flow_name: r.get(4),
                    status: r.get(5),
                    step: r.get(6),
                    pass_count: r.get(7),
                    reserved_for: r.get(8),
                    callback_at: time_text(r.get(9)),
                })
                .collect(),
        })
    }

    async fn preview(&self, text: String) -> Result<ActionPreview, ServerFnError> {
        let preview = bulk::describe(self.pool(), &request(&text)?, self.now()).await.map_err(fail)?;
        Ok(ActionPreview {
            effect: preview.effect,
            count: preview.count,
            reversible: preview.reversible,
            sample: preview.sample.into_iter().map(|s| (s.participant_id, s.contact, s.flow, s.status, s.step)).collect(),
        })
    }

    async fn start(&self, text: String) -> Result<i64, ServerFnError> {
        let actor = crate::actor::for_server_fn().await?;
        let id = bulk::start(self, &request(&text)?, actor.as_str()).await.map_err(fail)?;
        bulk::spawn(self, id);
        Ok(id)
    }

    async fn run(&self, id: i64) -> Result<RunInfo, ServerFnError> {
        bulk::view(self.pool(), id).await.map(run_info).map_err(fail)
    }

    async fn undo(&self, id: i64) -> Result<String, ServerFnError> {
        let actor = crate::actor::for_server_fn().await?;
        let undone = bulk::undo(self.pool(), id, actor.as_str(), self.now()).await.map_err(fail)?;
        Ok(format!("Undone: {undone} participant(s) went back to what they had before run {id}."))
    }

    async fn import(&self, id: i64) -> Result<ImportInfo, ServerFnError> {
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        super::import::job(&mut conn, id, 100).await.map(import_info).map_err(fail)
    }

    async fn imports(&self) -> Result<Vec<ImportInfo>, ServerFnError> {
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        let jobs = super::import::recent(&mut conn, 20).await.map_err(fail)?;
        Ok(jobs.into_iter().map(import_info).collect())
    }
}
