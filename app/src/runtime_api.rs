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
    pub contact_zone: Option<String>,
    pub status: String,
    pub step: Option<String>,
    pub reason: Option<String>,
    pub next_run_at: Option<String>,
    pub timeline: Vec<ActionRecord>,
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
    }

    pub type RuntimeHandle = Arc<dyn RuntimeBackend>;

    pub(crate) fn runtime() -> Result<RuntimeHandle, ServerFnError> {
        use_context::<RuntimeHandle>().ok_or_else(|| ServerFnError::new("the runtime is not available"))
    }
}

#[server(prefix = "/fn")]
pub async fn list_tasks(owner: Option<String>) -> Result<Vec<Task>, ServerFnError> {
    backend::runtime()?.tasks(owner.filter(|o| !o.is_empty())).await
}

#[server(prefix = "/fn")]
pub async fn list_task_owners() -> Result<Vec<String>, ServerFnError> {
    backend::runtime()?.task_owners().await
}

/// Completes, skips or defers (to `until`, RFC 3339) a participant's manual step.
#[server(prefix = "/fn")]
pub async fn act_on_task(participant: i64, outcome: String, until: Option<String>, disposition: Option<String>) -> Result<(), ServerFnError> {
    backend::runtime()?.act(participant, outcome, until.filter(|u| !u.is_empty()), disposition.filter(|d| !d.trim().is_empty())).await
}

#[server(prefix = "/fn")]
pub async fn get_participant(id: i64) -> Result<ParticipantDetail, ServerFnError> {
    backend::runtime()?.participant(id).await
}
