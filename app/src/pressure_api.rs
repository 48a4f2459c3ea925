//! What the contact-pressure settings page asks the server for (DESIGN
//! §13): the installation's policy, and saving it. The rules live in
//! `core::pressure`; the storage in the server, behind [`PressureBackend`].
//! A policy the core refuses is answered with each of its problems, so
//! the page can show them one by one; it is never stored.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

use crate::core::pressure::Policy;

/// The policy in force, and who changed it last.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PressureSettings {
    pub policy: Policy,
    /// RFC 3339; none while it was never saved.
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

/// Why a policy was not saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PressureError {
    /// The policy's problems ([`Policy::problems`]), each a sentence
    /// starting with where it is (`caps[0].max: …`). Nothing was stored.
    #[error("The policy was not saved: {}.", .0.join("; "))]
    Refused(Vec<String>),
    /// Anything else: not allowed, the server unreachable, the store down.
    #[error("{0}")]
    Failed(String),
}

impl FromServerFnError for PressureError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(err: ServerFnErrorErr) -> Self {
        PressureError::Failed(match err {
            ServerFnErrorErr::Request(_) => "The server could not be reached; the policy was not saved.".into(),
            ServerFnErrorErr::ServerError(message) => message,
            other => other.to_string(),
        })
    }
}

impl From<ServerFnError> for PressureError {
    fn from(err: ServerFnError) -> Self {
        PressureError::Failed(crate::api::error_text(&err))
    }
}

#[cfg(feature = "ssr")]
pub use backend::{PressureBackend, PressureHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    /// Implemented by the server's runtime.
    #[async_trait::async_trait]
    pub trait PressureBackend: Send + Sync + 'static {
        async fn pressure(&self) -> Result<PressureSettings, ServerFnError>;
        /// Stores a policy already checked; `actor` is who, for the audit log.
        async fn save_pressure(&self, actor: &str, policy: Policy) -> Result<PressureSettings, ServerFnError>;
    }

    pub type PressureHandle = Arc<dyn PressureBackend>;

    pub(crate) fn pressure() -> Result<PressureHandle, ServerFnError> {
        use_context::<PressureHandle>().ok_or_else(|| ServerFnError::new("the contact-pressure settings are not available"))
    }
}

/// The installation's contact-pressure policy (empty: no caps, no quiet hours).
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn pressure_policy() -> Result<PressureSettings, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::pressure()?.pressure().await
}

/// Replaces the policy with `policy_json` (FLOW_FORMAT's policy document);
/// refused, with every problem, when the core cannot use it.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_pressure(policy_json: String) -> Result<PressureSettings, PressureError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let policy: Policy = serde_json::from_str(&policy_json)
        .map_err(|err| PressureError::Refused(vec![format!("the policy cannot be read: {err}")]))?;
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(PressureError::Refused(problems));
    }
    Ok(backend::pressure()?.save_pressure(&viewer.actor(), policy).await?)
}
