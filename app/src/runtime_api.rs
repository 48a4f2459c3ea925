//! What the runtime pages (task inbox, participant timeline) ask the
//! server for. Like [`crate::api`], the server functions only forward to a
//! backend the server provides as context.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::core::engine::ActionRecord;

/// A manual step waiting for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub participant_id: i64,
    pub flow_id: i64,
    pub flow_name: String,
    pub contact_id: i64,
    pub contact: String,
    pub step: String,
    pub kind: String,
    pub subject: Option<String>,
    pub owner: Option<String>,
    pub due_at: String,
    pub deferred: bool,
}

/// A participant with its timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticipantDetail {
    pub id: i64,
    pub flow_id: i64,
    pub flow_name: String,
    pub version: i64,
    pub contact: String,
    /// The timeline's times in the contact's zone.
    pub clock: crate::core::calendar::LocalClock,
    pub status: String,
    pub step: Option<String>,
    pub reason: Option<String>,
    pub next_run_at: Option<String>,
    pub timeline: Vec<ActionRecord>,
    /// Contact events the participant received, oldest first.
    pub events: Vec<EventLine>,
}

/// One event on a participant's page: when, what, and what it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub at: jiff::Timestamp,
    /// `opened e1`, `purchase {"total":120}`.
    pub what: String,
    /// `met wait w2`, `goal reached`, `recorded; not waiting on it (at e3)`.
    pub effect: String,
    /// met, goal, exited, recorded, ignored (for styling).
    pub kind: String,
}

/// A test run: a sample contact through a draft on a virtual clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestRunRequest {
    /// The flow document as the editor has it now (JSON text).
    pub document: String,
    /// A stored contact to use, or else `sample`.
    pub contact_id: Option<i64>,
    pub sample: crate::core::contact::Contact,
    /// RFC 3339; now when empty.
    pub start: Option<String>,
    /// Like 30d.
    pub window: String,
    /// Like 1h; manual steps stay pending when empty.
    pub manual_after: Option<String>,
    /// Contact events delivered during the run, each `after` the start
    /// (`+2h`, `3d`): `{"after": "+2h", "event": "email_opened", "step": "e1"}`.
    #[serde(default)]
    pub events: Vec<crate::core::matcher_text::TimedEvent>,
}

/// What the test run did, with times shown in the contact's zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestRunResult {
    pub clock: crate::core::calendar::LocalClock,
    pub simulation: crate::core::simulate::Simulation,
}

/// Where a flow's participants are, per version, step and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantCounts {
    pub flow_id: i64,
    pub flow_name: String,
    pub newest_version: Option<i64>,
    /// The newest version's steps as (id, name).
    pub newest_steps: Vec<(String, String)>,
    /// (version, step, status, count)
    pub counts: Vec<(i64, String, String, i64)>,
}

/// Participants at one step of a flow, for the canvas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCount {
    pub step: String,
    /// Active participants at the step now (ready, waiting, held).
    pub here: i64,
    /// Times the step was completed or skipped.
    pub passed: i64,
    /// Participants that failed at the step.
    pub failed: i64,
    /// For message steps: messages the provider accepted, and the
    /// participants who opened and clicked them (people, not machines).
    #[serde(default)]
    pub delivered: i64,
    #[serde(default)]
    pub opened: i64,
    #[serde(default)]
    pub clicked: i64,
}

impl StepCount {
    /// `3 here · 10 passed · 1 failed`, leaving out zeros.
    pub fn label(&self) -> String {
        let parts: Vec<String> = [(self.here, "here"), (self.passed, "passed"), (self.failed, "failed")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        parts.join(" · ")
    }

    /// `42.0% opened · 8.5% clicked` for a message step that delivered.
    pub fn rates(&self) -> Option<String> {
        (self.delivered > 0).then(|| {
            let of = |n: i64| crate::core::stats::percent(n.max(0) as u64, self.delivered as u64);
            format!("{} opened · {} clicked", of(self.opened), of(self.clicked))
        })
    }
}

#[cfg(feature = "ssr")]
pub use backend::{RuntimeBackend, RuntimeHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    #[async_trait::async_trait]
    pub trait RuntimeBackend: Send + Sync + 'static {
        /// Pending manual steps, soonest first; `owner` filters to one person's.
        async fn tasks(&self, owner: Option<String>) -> Result<Vec<Task>, ServerFnError>;
        /// The people who have pending tasks.
        async fn task_owners(&self) -> Result<Vec<String>, ServerFnError>;
        async fn act(&self, participant: i64, outcome: String, until: Option<String>, disposition: Option<String>) -> Result<(), ServerFnError>;
        async fn participant(&self, id: i64) -> Result<ParticipantDetail, ServerFnError>;
        async fn flow_participants(&self, flow: i64) -> Result<ParticipantCounts, ServerFnError>;
        async fn step_counts(&self, flow: i64) -> Result<Vec<StepCount>, ServerFnError>;
        async fn retry(&self, actor: &str, participant: i64) -> Result<(), ServerFnError>;
        /// Refuses (as "not found") a participant an agent does not own.
        async fn check_owner(&self, viewer: &crate::auth::Viewer, participant: i64) -> Result<(), ServerFnError>;
        /// Moves participants on older versions to the newest; (moved, left).
        async fn migrate(&self, actor: &str, flow: i64, map: std::collections::HashMap<String, String>) -> Result<(usize, usize), ServerFnError>;
        /// Loads a stored contact and the action groups for a test run.
        async fn test_run_inputs(
            &self,
            contact_id: Option<i64>,
        ) -> Result<(Option<crate::core::contact::Contact>, crate::core::engine::Installation), ServerFnError>;
    }

    pub type RuntimeHandle = Arc<dyn RuntimeBackend>;

    pub(crate) fn runtime() -> Result<RuntimeHandle, ServerFnError> {
        use_context::<RuntimeHandle>().ok_or_else(|| ServerFnError::new("the runtime is not available"))
    }
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_tasks(owner: Option<String>) -> Result<Vec<Task>, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    // An agent's inbox is their own, whatever they ask for.
    let owner = if viewer.role == crate::auth::Role::Agent { Some(viewer.email) } else { owner.filter(|o| !o.is_empty()) };
    backend::runtime()?.tasks(owner).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_task_owners() -> Result<Vec<String>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::runtime()?.task_owners().await
}

/// Completes, skips or defers (to `until`, RFC 3339) a participant's manual step.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn act_on_task(participant: i64, outcome: String, until: Option<String>, disposition: Option<String>) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::runtime()?.check_owner(&viewer, participant).await?;
    backend::runtime()?.act(participant, outcome, until.filter(|u| !u.is_empty()), disposition.filter(|d| !d.trim().is_empty())).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn get_participant(id: i64) -> Result<ParticipantDetail, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::runtime()?.check_owner(&viewer, id).await?;
    backend::runtime()?.participant(id).await
}

/// Runs a sample (or stored) contact through a draft with the production
/// engine on a virtual clock; effects are captured, never sent. Contact
/// events, when given, are delivered on the same clock. (Sent as JSON: the
/// events are tagged by kind, and numbers in the sample stay numbers.)
#[server(prefix = "/fn", client = crate::auth::client::Client, input = leptos::server_fn::codec::Json)]
pub async fn test_run(run: TestRunRequest) -> Result<TestRunResult, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    use crate::core::simulate::{parse_span, simulate_events, simulate_with, Options};
    let flow = crate::core::FlowDocument::from_json(&run.document).map_err(|err| ServerFnError::new(format!("The draft cannot be read: {err}")))?;
    let (stored, groups) = backend::runtime()?.test_run_inputs(run.contact_id).await?;
    let contact = stored.unwrap_or(run.sample);
    let start = match run.start.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => text.parse().map_err(|_| ServerFnError::new(format!("“{text}” is not a date and time like 2026-12-01T09:00:00Z.")))?,
        None => jiff::Timestamp::now(),
    };
    let window = parse_span(&run.window).map_err(ServerFnError::new)?;
    if window > jiff::SignedDuration::from_hours(24 * 366) {
        return Err(ServerFnError::new("A test run covers at most a year."));
    }
    let manual_after = run.manual_after.as_deref().filter(|m| !m.trim().is_empty()).map(parse_span).transpose().map_err(ServerFnError::new)?;
    let zone = contact.timezone.clone().filter(|z| crate::core::calendar::known_zone(z)).unwrap_or_else(|| flow.settings.timezone_or_default().to_owned());
    // The most contact events one run delivers.
    const MAX_TEST_EVENTS: usize = 1_000;
    if run.events.len() > MAX_TEST_EVENTS {
        return Err(ServerFnError::new(format!("A test run takes at most {MAX_TEST_EVENTS} events.")));
    }
    let events = crate::core::matcher_text::received_from(start, &run.events).map_err(ServerFnError::new)?;
    let options = Options { start, window, manual_after, seed: 42 };
    let simulation = if events.is_empty() {
        simulate_with(&flow, &groups, &contact, &options)
    } else {
        simulate_events(&flow, &groups, &contact, &options, &events)
    };
    let instants = simulation
        .actions
        .iter()
        .flat_map(ActionRecord::times)
        .chain(simulation.effects.iter().map(|e| e.at))
        .chain(simulation.events.iter().map(|e| e.at));
    let clock = crate::core::calendar::LocalClock::new(Some(&zone), instants);
    Ok(TestRunResult { clock, simulation })
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn flow_participants(flow: i64) -> Result<ParticipantCounts, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::runtime()?.flow_participants(flow).await
}

/// `map` is JSON: {"old step": "new step", ...}; steps left out keep their
/// id when the newest version has it.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn migrate_participants(flow: i64, map: String) -> Result<String, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    let map: std::collections::HashMap<String, String> =
        serde_json::from_str(&map).map_err(|err| ServerFnError::new(format!("The step mapping cannot be read: {err}")))?;
    let map = map.into_iter().filter(|(_, to)| !to.is_empty()).collect();
    let actor = viewer.actor();
    let (moved, left) = backend::runtime()?.migrate(&actor, flow, map).await?;
    Ok(match left {
        0 => format!("Moved {moved} participant(s) to the newest version."),
        left => format!("Moved {moved} participant(s); {left} stay on their version (their step has no match)."),
    })
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn step_counts(flow: i64) -> Result<Vec<StepCount>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::runtime()?.step_counts(flow).await
}

/// Runs a failed participant's step again.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn retry_participant(participant: i64) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    let actor = viewer.actor();
    backend::runtime()?.retry(&actor, participant).await
}
