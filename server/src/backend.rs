//! The store behind the pages' server functions. Errors become the sentence
//! a marketer reads; internal ones are logged and stay generic.

use app::api::{DraftError, FlowBackend, FlowDetail, FlowSummary, ReviewRow, SavedDraft};
use app::core::FlowDocument;
use leptos::prelude::ServerFnError;

use crate::error::Error;
use crate::store::Store;


fn to_draft_error(err: Error) -> DraftError {
    match err {
        Error::StaleRevision { .. } => DraftError::Stale(err.public_message()),
        Error::PublishBlocked(_) => DraftError::Blocked(err.public_message()),
        other => {
            if other.status().is_server_error() {
                tracing::error!(error = %other, "saving or publishing a draft failed");
            }
            DraftError::Failed(other.public_message())
        }
    }
}

#[async_trait::async_trait]
impl FlowBackend for Store {
    async fn list_flows(&self) -> Result<Vec<FlowSummary>, ServerFnError> {
        self.list().await.map_err(Error::into_server_fn_error)
    }

    async fn create_flow(&self, name: String, document: Option<FlowDocument>) -> Result<FlowSummary, ServerFnError> {
        self.create(&name, document).await.map_err(Error::into_server_fn_error)
    }

    async fn flow(&self, id: i64) -> Result<FlowDetail, ServerFnError> {
        self.detail(id).await.map_err(Error::into_server_fn_error)
    }

    async fn rename_flow(&self, id: i64, name: String) -> Result<FlowSummary, ServerFnError> {
        self.rename(id, &name).await.map_err(Error::into_server_fn_error)
    }

    async fn delete_flow(&self, id: i64) -> Result<(), ServerFnError> {
        self.delete(id).await.map_err(Error::into_server_fn_error)
    }

    async fn review(&self) -> Result<Vec<ReviewRow>, ServerFnError> {
        Store::review(self).await.map_err(Error::into_server_fn_error)
    }

    async fn save_draft(&self, id: i64, revision: i64, document: FlowDocument) -> Result<SavedDraft, DraftError> {
        let draft = Store::save_draft(self, id, revision, document).await.map_err(to_draft_error)?;
        Ok(SavedDraft { revision: draft.revision, findings: draft.findings })
    }

    async fn publish(&self, id: i64, revision: i64) -> Result<i64, DraftError> {
        let version = Store::publish(self, id, Some(revision), "editor").await.map_err(to_draft_error)?;
        Ok(version.version.number)
    }
}
