//! The home dashboard (DESIGN §12): what is happening across flows today,
//! at a glance — sends by channel, participants active, tasks due,
//! failures needing a retry, and flows with something new to look at.
//! The figures come from the server, behind [`DashboardBackend`].

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Something new about a flow: a warning or error nobody acknowledged, or
/// a split test that was decided.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowNews {
    pub flow_id: i64,
    pub flow_name: String,
    pub what: String,
    /// Where to look: the editor or the report.
    pub href: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    /// `YYYY-MM-DD`, UTC.
    pub today: String,
    /// Messages handed to the outbox today, per channel (`email`, `sms`).
    pub sends_today: Vec<(String, u64)>,
    /// Participants in a flow now (ready, waiting, held).
    pub active: u64,
    /// Manual steps due now or overdue.
    pub tasks_due: u64,
    /// Participants stopped by a failure, which a retry may move on.
    pub failed_participants: u64,
    /// Effects that failed for good (sends, webhooks).
    pub failed_effects: u64,
    pub news: Vec<FlowNews>,
}

#[cfg(feature = "ssr")]
pub use backend::{DashboardBackend, DashboardHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    #[async_trait::async_trait]
    pub trait DashboardBackend: Send + Sync + 'static {
        async fn dashboard(&self) -> Result<Dashboard, ServerFnError>;
    }

    pub type DashboardHandle = Arc<dyn DashboardBackend>;

    pub(crate) fn dashboard() -> Result<DashboardHandle, ServerFnError> {
        use_context::<DashboardHandle>().ok_or_else(|| ServerFnError::new("the dashboard is not available"))
    }
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn home_dashboard() -> Result<Dashboard, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::dashboard()?.dashboard().await
}
