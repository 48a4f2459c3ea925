//! What the pages ask the server for: the shared data types and the server
//! functions. The functions only forward to a [`FlowBackend`] the server
//! provides as context, so all storage stays in the `server` crate.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::core::{FlowDocument, Finding, Findings, Level};

/// A flow as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// One line of the admins' validation review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRow {
    pub flow_id: i64,
    pub flow_name: String,
    pub level: Level,
    pub finding: Finding,
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
        async fn create_flow(&self, name: String, document: Option<FlowDocument>) -> Result<FlowSummary, ServerFnError>;
        async fn flow(&self, id: i64) -> Result<FlowDetail, ServerFnError>;
        async fn rename_flow(&self, id: i64, name: String) -> Result<FlowSummary, ServerFnError>;
        async fn delete_flow(&self, id: i64) -> Result<(), ServerFnError>;
        async fn review(&self) -> Result<Vec<ReviewRow>, ServerFnError>;
    }

    pub type Backend = Arc<dyn FlowBackend>;

    pub(crate) fn backend() -> Result<Backend, ServerFnError> {
        use_context::<Backend>().ok_or_else(|| ServerFnError::new("the flow store is not available"))
    }
}

#[server(prefix = "/fn")]
pub async fn list_flows() -> Result<Vec<FlowSummary>, ServerFnError> {
    backend::backend()?.list_flows().await
}

#[server(prefix = "/fn")]
pub async fn create_flow(name: String) -> Result<FlowSummary, ServerFnError> {
    backend::backend()?.create_flow(name, None).await
}

/// Imports a flow document given as JSON text; its name is the flow's.
#[server(prefix = "/fn")]
pub async fn import_flow(json: String) -> Result<FlowSummary, ServerFnError> {
    let document = FlowDocument::from_json(&json)
        .map_err(|err| ServerFnError::new(format!("That file is not a Waymark flow: {err}")))?;
    let name = document.name.clone();
    backend::backend()?.create_flow(name, Some(document)).await
}

#[server(prefix = "/fn")]
pub async fn get_flow(id: i64) -> Result<FlowDetail, ServerFnError> {
    backend::backend()?.flow(id).await
}

#[server(prefix = "/fn")]
pub async fn rename_flow(id: i64, name: String) -> Result<FlowSummary, ServerFnError> {
    backend::backend()?.rename_flow(id, name).await
}

#[server(prefix = "/fn")]
pub async fn delete_flow(id: i64) -> Result<(), ServerFnError> {
    backend::backend()?.delete_flow(id).await
}

#[server(prefix = "/fn")]
pub async fn validation_review() -> Result<Vec<ReviewRow>, ServerFnError> {
    backend::backend()?.review().await
}

/// The message to show for a failed server call, without Rust's wrapping.
pub fn error_text(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(message) => message.clone(),
        other => other.to_string(),
    }
}
