//! The runtime behind the inbox and participant pages' server functions.

use leptos::prelude::ServerFnError;
use sqlx::Row;

use app::core::calendar::LocalClock;
use app::core::engine::{ActionRecord, Event, ManualOutcome};
use app::runtime_api::{ParticipantDetail, RuntimeBackend, Task};

use super::{contacts, Runtime};
use crate::audit;
use crate::error::Error;


fn contact_label(email: Option<String>, mobile: Option<String>, id: i64) -> String {
    email.or(mobile).unwrap_or_else(|| format!("Contact {id}"))
}

#[async_trait::async_trait]
impl RuntimeBackend for Runtime {
    async fn tasks(&self, owner: Option<String>) -> Result<Vec<Task>, ServerFnError> {
        let rows = sqlx::query(
            "SELECT a.participant_id, p.flow_id, f.name, p.contact_id, c.email, c.mobile, a.step, a.kind, a.subject,
                    coalesce(p.reserved_for, a.owner, f.task_owner), a.due_at, a.outcome
             FROM participant_actions a
             JOIN participants p ON p.id = a.participant_id
             JOIN flows f ON f.id = p.flow_id
             JOIN contacts c ON c.id = p.contact_id
             WHERE a.manual = 1 AND a.outcome IN ('pending', 'deferred') AND p.status = 'waiting'
               AND ($1 IS NULL OR lower(coalesce(p.reserved_for, a.owner, f.task_owner)) = lower($1))
             ORDER BY a.due_at LIMIT 500",
        )
        .bind(owner)
        .fetch_all(self.pool())
        .await
        .map_err(|err| Error::from(err).into_server_fn_error())?;
        Ok(rows
            .iter()
            .map(|r| Task {
                participant_id: r.get(0),
                flow_id: r.get(1),
                flow_name: r.get(2),
                contact_id: r.get(3),
                contact: contact_label(r.get(4), r.get(5), r.get(3)),
                step: r.get(6),
                kind: r.get(7),
                subject: r.get(8),
                owner: r.get(9),
                due_at: r.get(10),
                deferred: r.get::<String, _>(11) == "deferred",
            })
            .collect())
    }

    async fn task_owners(&self) -> Result<Vec<String>, ServerFnError> {
        sqlx::query_scalar(
            "SELECT DISTINCT coalesce(p.reserved_for, a.owner, f.task_owner) AS who FROM participant_actions a
             JOIN participants p ON p.id = a.participant_id JOIN flows f ON f.id = p.flow_id
             WHERE a.manual = 1 AND a.outcome IN ('pending', 'deferred') AND coalesce(p.reserved_for, a.owner, f.task_owner) IS NOT NULL ORDER BY who",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|err| Error::from(err).into_server_fn_error())
    }

    async fn act(&self, participant: i64, outcome: String, until: Option<String>, disposition: Option<String>) -> Result<(), ServerFnError> {
        let outcome = match outcome.as_str() {
            "completed" => ManualOutcome::Completed,
            "skipped" => ManualOutcome::Skipped,
            "deferred" => {
                let until = until.ok_or_else(|| ServerFnError::new("Say until when to defer it."))?;
                let until = until
                    .trim()
                    .parse()
                    .map_err(|_| ServerFnError::new(format!("“{until}” is not a date and time like 2026-12-01T09:00:00Z.")))?;
                ManualOutcome::Deferred { until }
            }
            other => return Err(ServerFnError::new(format!("“{other}” is not complete, skip or defer."))),
        };
        self.deliver(participant, Event::Manual { outcome, disposition }).await.map(|_| ()).map_err(Error::into_server_fn_error)
    }

    async fn flow_participants(&self, flow: i64) -> Result<app::runtime_api::ParticipantCounts, ServerFnError> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM flows WHERE id = $1")
            .bind(flow)
            .fetch_optional(self.pool())
            .await
            .map_err(|err| Error::from(err).into_server_fn_error())?;
        let flow_name = name.ok_or_else(|| Error::FlowNotFound(flow).into_server_fn_error())?;
        let newest: Option<(i64, String)> =
            sqlx::query_as("SELECT number, document FROM flow_versions WHERE flow_id = $1 ORDER BY number DESC LIMIT 1")
                .bind(flow)
                .fetch_optional(self.pool())
                .await
                .map_err(|err| Error::from(err).into_server_fn_error())?;
        let newest_steps = newest
            .as_ref()
            .and_then(|(_, text)| app::core::FlowDocument::from_json(text).ok())
            .map(|doc| doc.steps.iter().map(|s| (s.id.clone(), s.display_name().to_owned())).collect())
            .unwrap_or_default();
        Ok(app::runtime_api::ParticipantCounts {
            flow_id: flow,
            flow_name,
            newest_version: newest.map(|(n, _)| n),
            newest_steps,
            counts: self.counts(flow).await.map_err(Error::into_server_fn_error)?,
        })
    }

    async fn step_counts(&self, flow: i64) -> Result<Vec<app::runtime_api::StepCount>, ServerFnError> {
        // Passed, delivered, opened and clicked come from the rollups
        // (runtime/rollups.rs), not the raw timeline.
        let rows: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT step, CAST(sum(here) AS BIGINT), CAST(sum(passed) AS BIGINT), CAST(sum(failed) AS BIGINT),
                    CAST(sum(delivered) AS BIGINT), CAST(sum(opened) AS BIGINT), CAST(sum(clicked) AS BIGINT) FROM (
                 SELECT step, count(*) AS here, 0 AS passed, 0 AS failed, 0 AS delivered, 0 AS opened, 0 AS clicked FROM participants
                   WHERE flow_id = $1 AND step IS NOT NULL AND status IN ('ready', 'waiting', 'held') GROUP BY step
                 UNION ALL
                 SELECT step, 0, 0, count(*), 0, 0, 0 FROM participants WHERE flow_id = $1 AND step IS NOT NULL AND status = 'failed' GROUP BY step
                 UNION ALL
                 SELECT step, 0, sum(CASE WHEN metric = 'passed' THEN count ELSE 0 END), 0, sum(CASE WHEN metric = 'delivered' THEN count ELSE 0 END),
                        sum(CASE WHEN metric = 'opened' THEN count ELSE 0 END), sum(CASE WHEN metric = 'clicked' THEN count ELSE 0 END)
                   FROM flow_rollups WHERE flow_id = $1 AND machine = 0 AND metric IN ('passed', 'delivered', 'opened', 'clicked') GROUP BY step) AS counts
             GROUP BY step ORDER BY step",
        )
        .bind(flow)
        .fetch_all(self.pool())
        .await
        .map_err(|err| Error::from(err).into_server_fn_error())?;
        Ok(rows
            .into_iter()
            .map(|(step, here, passed, failed, delivered, opened, clicked)| app::runtime_api::StepCount { step, here, passed, failed, delivered, opened, clicked })
            .collect())
    }

    async fn retry(&self, actor: &str, participant: i64) -> Result<(), ServerFnError> {
        Runtime::retry(self, participant).await.map_err(Error::into_server_fn_error)?;
        audit::record(self.pool(), actor, "participant.retried", &format!("participant {participant}"), "")
            .await
            .map_err(Error::into_server_fn_error)
    }

    async fn migrate(&self, actor: &str, flow: i64, map: std::collections::HashMap<String, String>) -> Result<(usize, usize), ServerFnError> {
        let (moved, left) = Runtime::migrate(self, flow, &map).await.map_err(Error::into_server_fn_error)?;
        let detail = format!("{moved} moved to the newest version, {left} left");
        audit::record(self.pool(), actor, "flow.participants_migrated", &format!("flow {flow}"), &detail)
            .await
            .map_err(Error::into_server_fn_error)?;
        Ok((moved, left))
    }

    async fn check_owner(&self, viewer: &app::auth::Viewer, participant: i64) -> Result<(), ServerFnError> {
        crate::runtime_api::check_participant_owner(self.pool(), viewer, participant).await.map_err(Error::into_server_fn_error)
    }

    async fn test_run_inputs(
        &self,
        contact_id: Option<i64>,
    ) -> Result<(Option<app::core::contact::Contact>, app::core::engine::Installation), ServerFnError> {
        let mut conn = self.pool().acquire().await.map_err(|err| Error::from(err).into_server_fn_error())?;
        let contact = match contact_id {
            Some(id) => Some(contacts::load(&mut conn, id).await.map_err(Error::into_server_fn_error)?),
            None => None,
        };
        let groups = super::load_groups(&mut conn).await.map_err(Error::into_server_fn_error)?;
        Ok((contact, groups))
    }

    async fn participant(&self, id: i64) -> Result<ParticipantDetail, ServerFnError> {
        let view = Runtime::participant(self, id).await.map_err(Error::into_server_fn_error)?;
        let timeline = self.timeline(id).await.map_err(Error::into_server_fn_error)?;
        let flow_name: String = sqlx::query("SELECT name FROM flows WHERE id = $1")
            .bind(view.flow_id)
            .fetch_one(self.pool())
            .await
            .map_err(|err| Error::from(err).into_server_fn_error())?
            .get(0);
        let mut conn = self.pool().acquire().await.map_err(|err| Error::from(err).into_server_fn_error())?;
        let contact = contacts::load(&mut conn, view.contact_id).await.map_err(Error::into_server_fn_error)?;
        // 0 is "woken to re-check now" (a contact change): shown as no time.
        let next_run_at = view.next_run_at.filter(|t| t.as_millisecond() > 0);
        let events: Vec<app::runtime_api::EventLine> = self
            .participant_events(id)
            .await
            .map_err(Error::into_server_fn_error)?
            .into_iter()
            .map(|note| app::runtime_api::EventLine {
                at: note.at,
                what: app::core::engagement::describe_event(&note.event),
                effect: app::core::engagement::describe_effect(&note.effect, note.step.as_deref()),
                kind: note.effect,
            })
            .collect();
        let instants = timeline.iter().flat_map(ActionRecord::times).chain(next_run_at).chain(events.iter().map(|e| e.at));
        let next_run_at = next_run_at.map(|t| t.to_string());
        Ok(ParticipantDetail {
            id,
            flow_id: view.flow_id,
            flow_name,
            version: view.version,
            contact: contact_label(contact.email.clone(), contact.mobile.clone(), view.contact_id),
            clock: LocalClock::new(contact.timezone.as_deref(), instants),
            status: view.status,
            step: view.step,
            reason: view.reason,
            next_run_at,
            timeline,
            events,
        })
    }
}
