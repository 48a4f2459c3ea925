//! What the pages ask the server for: the shared data types and the server
//! functions. The functions only forward to a [`FlowBackend`] the server
//! provides as context, so all storage stays in the `server` crate.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

use crate::core::{FlowDocument, Finding, Findings, Level};

/// A flow as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct FlowSummary {
    pub id: i64,
    pub name: String,
    /// The draft's revision; a save must name the one it started from.
    pub revision: i64,
    /// The newest published version's number.
    pub published_version: Option<i64>,
    /// The draft differs from the newest published version.
    pub draft_changed: bool,
    pub errors: u32,
    pub warnings: u32,
    pub updated_at: String,
}

impl FlowSummary {
    /// "Draft", "Published v3", or "Published v3 · draft changed".
    pub fn status(&self) -> String {
        match (self.published_version, self.draft_changed) {
            (None, _) => "Draft".into(),
            (Some(n), false) => format!("Published v{n}"),
            (Some(n), true) => format!("Published v{n} · draft changed"),
        }
    }
}

/// A flow with its draft and what the validator says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowDetail {
    pub summary: FlowSummary,
    pub document: FlowDocument,
    pub findings: Findings,
    /// Admins' notes on warnings they acknowledged, shown on the steps.
    #[serde(default)]
    pub acks: Vec<crate::admin_api::Ack>,
}

/// One line of the admins' validation review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRow {
    pub flow_id: i64,
    pub flow_name: String,
    pub level: Level,
    pub finding: Finding,
    /// An admin's acknowledgement of this warning, if any.
    #[serde(default)]
    pub ack: Option<crate::admin_api::Ack>,
}

/// What a saved draft now is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedDraft {
    /// The revision the next save must name.
    pub revision: i64,
    pub findings: Findings,
}

/// Why a draft was not saved or published, kept apart so the editor can
/// answer each one differently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DraftError {
    /// Someone (another tab) saved since this draft was read; nothing was
    /// written.
    #[error("{0}")]
    Stale(String),
    /// Publishing refused: the draft has errors.
    #[error("{0}")]
    Blocked(String),
    /// Anything else: the server could not be reached, the flow is gone...
    #[error("{0}")]
    Failed(String),
}

impl FromServerFnError for DraftError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(err: ServerFnErrorErr) -> Self {
        DraftError::Failed(match err {
            ServerFnErrorErr::Request(_) => "The server could not be reached; your changes are kept here.".into(),
            ServerFnErrorErr::ServerError(message) => message,
            other => other.to_string(),
        })
    }
}

#[cfg(feature = "ssr")]
pub use backend::{Backend, FlowBackend};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    /// Implemented by the server's store. Errors carry the sentence the
    /// marketer should read.
    #[async_trait::async_trait]
    pub trait FlowBackend: Send + Sync + 'static {
        async fn list_flows(&self) -> Result<Vec<FlowSummary>, ServerFnError>;
        async fn create_flow(&self, actor: &str, name: String, document: Option<FlowDocument>) -> Result<FlowSummary, ServerFnError>;
        async fn flow(&self, id: i64) -> Result<FlowDetail, ServerFnError>;
        async fn rename_flow(&self, actor: &str, id: i64, name: String) -> Result<FlowSummary, ServerFnError>;
        async fn delete_flow(&self, actor: &str, id: i64) -> Result<(), ServerFnError>;
        async fn review(&self) -> Result<Vec<ReviewRow>, ServerFnError>;
        /// Saves the draft made from `revision`; a stale revision is
        /// [`DraftError::Stale`] and writes nothing.
        async fn save_draft(&self, actor: &str, id: i64, revision: i64, document: FlowDocument) -> Result<SavedDraft, DraftError>;
        /// Publishes the draft at `revision`; answers the new version's number.
        async fn publish(&self, actor: &str, id: i64, revision: i64) -> Result<i64, DraftError>;
    }

    pub type Backend = Arc<dyn FlowBackend>;

    pub(crate) fn backend() -> Result<Backend, ServerFnError> {
        use_context::<Backend>().ok_or_else(|| ServerFnError::new("the flow store is not available"))
    }
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_flows() -> Result<Vec<FlowSummary>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::backend()?.list_flows().await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn create_flow(name: String) -> Result<FlowSummary, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    let actor = viewer.actor();
    backend::backend()?.create_flow(&actor, name, None).await
}

/// Imports a flow document given as JSON text; its name is the flow's.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn import_flow(json: String) -> Result<FlowSummary, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    let document = FlowDocument::from_json(&json)
        .map_err(|err| ServerFnError::new(format!("That file is not a Waymark flow: {err}")))?;
    let name = document.name.clone();
    let actor = viewer.actor();
    backend::backend()?.create_flow(&actor, name, Some(document)).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn get_flow(id: i64) -> Result<FlowDetail, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::backend()?.flow(id).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn rename_flow(id: i64, name: String) -> Result<FlowSummary, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    let actor = viewer.actor();
    backend::backend()?.rename_flow(&actor, id, name).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn delete_flow(id: i64) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    let actor = viewer.actor();
    backend::backend()?.delete_flow(&actor, id).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn validation_review() -> Result<Vec<ReviewRow>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::backend()?.review().await
}

/// Saves the draft the editor holds. `document_json` is the whole
/// `waymark.flow/v1` document; `revision` is the one it was loaded or last
/// saved at.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_draft(id: i64, revision: i64, document_json: String) -> Result<SavedDraft, DraftError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer).map_err(|err| DraftError::Failed(error_text(&err)))?;
    let document = FlowDocument::from_json(&document_json)
        .map_err(|err| DraftError::Failed(format!("The flow could not be read: {err}")))?;
    let actor = viewer.actor();
    let backend = backend::backend().map_err(|err| DraftError::Failed(error_text(&err)))?;
    backend.save_draft(&actor, id, revision, document).await
}

/// Publishes the saved draft, if it is still at `revision` and has no errors.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn publish_flow(id: i64, revision: i64) -> Result<i64, DraftError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer).map_err(|err| DraftError::Failed(error_text(&err)))?;
    let actor = viewer.actor();
    let backend = backend::backend().map_err(|err| DraftError::Failed(error_text(&err)))?;
    backend.publish(&actor, id, revision).await
}

/// The message to show for a failed server call, without Rust's wrapping.
pub fn error_text(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(message) => message.clone(),
        other => other.to_string(),
    }
}
