//! The store behind the pages' server functions. Errors become the sentence
//! a marketer reads; internal ones are logged and stay generic.

use app::api::{DraftError, FlowBackend, FlowDetail, FlowSummary, ReviewRow, SavedDraft};
use app::core::FlowDocument;
use leptos::prelude::ServerFnError;

use crate::api::flow_subject;
use crate::audit;
use crate::error::Error;
use crate::store::Store;


fn to_draft_error(err: Error) -> DraftError {
    match err {
        Error::StaleRevision { .. } => DraftError::Stale(err.public_message()),
        Error::PublishBlocked(_) | Error::ReviewPending(_) => DraftError::Blocked(err.public_message()),
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

    async fn create_flow(&self, actor: &str, name: String, document: Option<FlowDocument>) -> Result<FlowSummary, ServerFnError> {
        let flow = self.create(&name, document).await.map_err(Error::into_server_fn_error)?;
        audit::record(self.pool(), actor, "flow.created", &flow_subject(flow.id, &flow.name), "").await.map_err(Error::into_server_fn_error)?;
        Ok(flow)
    }

    async fn flow(&self, id: i64) -> Result<FlowDetail, ServerFnError> {
        self.detail(id).await.map_err(Error::into_server_fn_error)
    }

    async fn rename_flow(&self, actor: &str, id: i64, name: String) -> Result<FlowSummary, ServerFnError> {
        let flow = self.rename(id, &name).await.map_err(Error::into_server_fn_error)?;
        audit::record(self.pool(), actor, "flow.renamed", &flow_subject(flow.id, &flow.name), "").await.map_err(Error::into_server_fn_error)?;
        Ok(flow)
    }

    async fn delete_flow(&self, actor: &str, id: i64) -> Result<(), ServerFnError> {
        let name = self.summary(id).await.map_err(Error::into_server_fn_error)?.name;
        self.delete(id).await.map_err(Error::into_server_fn_error)?;
        audit::record(self.pool(), actor, "flow.deleted", &flow_subject(id, &name), "").await.map_err(Error::into_server_fn_error)
    }

    async fn review(&self) -> Result<Vec<ReviewRow>, ServerFnError> {
        Store::review(self).await.map_err(Error::into_server_fn_error)
    }

    async fn save_draft(&self, actor: &str, id: i64, revision: i64, document: FlowDocument) -> Result<SavedDraft, DraftError> {
        let subject = flow_subject(id, &document.name);
        let draft = Store::save_draft(self, id, revision, document).await.map_err(to_draft_error)?;
        let detail = format!("revision {}", draft.revision);
        audit::record_coalesced(self.pool(), actor, "flow.draft_saved", &subject, &detail).await.map_err(to_draft_error)?;
        Ok(SavedDraft { revision: draft.revision, findings: draft.findings })
    }

    async fn publish(&self, actor: &str, id: i64, revision: i64) -> Result<i64, DraftError> {
        let version = Store::publish(self, id, Some(revision), actor).await.map_err(to_draft_error)?;
        let subject = flow_subject(id, &version.document.name);
        let detail = format!("version {}", version.version.number);
        audit::record(self.pool(), actor, "flow.published", &subject, &detail).await.map_err(to_draft_error)?;
        Ok(version.version.number)
    }
}
