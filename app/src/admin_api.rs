//! What the sign-in and administration pages ask the server for: the
//! signed-in viewer, users, API tokens, the audit log, and admins'
//! acknowledgements of validation warnings.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::auth::{Role, Viewer};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scope: String,
    pub created_by: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A token just created, with its secret: shown once, never again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: TokenInfo,
    pub secret: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

/// An admin's acknowledgement of a warning on a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub step: String,
    pub code: String,
    pub note: String,
    pub by: String,
    pub at: String,
}

#[cfg(feature = "ssr")]
pub use backend::{AdminBackend, AdminHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    /// Implemented by the server. `actor` is who does it, for the audit log.
    #[async_trait::async_trait]
    pub trait AdminBackend: Send + Sync + 'static {
        async fn setup_needed(&self) -> Result<bool, ServerFnError>;
        async fn users(&self) -> Result<Vec<UserInfo>, ServerFnError>;
        async fn save_user(&self, actor: &str, user: UserForm) -> Result<UserInfo, ServerFnError>;
        async fn tokens(&self) -> Result<Vec<TokenInfo>, ServerFnError>;
        async fn create_token(&self, actor: &str, name: String, scope: String) -> Result<CreatedToken, ServerFnError>;
        async fn revoke_token(&self, actor: &str, id: i64) -> Result<(), ServerFnError>;
        async fn audit(&self, prefix: Option<String>) -> Result<Vec<AuditEntry>, ServerFnError>;
        async fn acknowledge(&self, actor: &str, flow: i64, step: String, code: String, note: String) -> Result<(), ServerFnError>;
        async fn review_required(&self) -> Result<bool, ServerFnError>;
        /// The integration settings as JSON, secrets reduced to `*_set` flags.
        async fn integrations(&self) -> Result<String, ServerFnError>;
        /// Replaces one channel's settings; `secret` none keeps the stored one, `""` clears it.
        async fn save_integration(&self, actor: &str, channel: String, settings: serde_json::Value, secret: Option<String>) -> Result<(), ServerFnError>;
        async fn set_review_required(&self, actor: &str, required: bool) -> Result<(), ServerFnError>;
        /// Generates a DKIM key (`rsa-sha256` or `ed25519-sha256`) and stores it with the domain and selector.
        async fn generate_dkim_key(&self, actor: &str, domain: String, selector: String, algorithm: String) -> Result<(), ServerFnError>;
    }

    pub type AdminHandle = Arc<dyn AdminBackend>;

    pub(crate) fn admin() -> Result<AdminHandle, ServerFnError> {
        use_context::<AdminHandle>().ok_or_else(|| ServerFnError::new("administration is not available"))
    }
}

/// A user to create (`id` none) or change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserForm {
    pub id: Option<i64>,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// A new password; empty keeps the current one.
    pub password: String,
}

/// Who is signed in, if anyone.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn whoami() -> Result<Option<Viewer>, ServerFnError> {
    Ok(crate::auth::viewer())
}

/// Whether no admin exists yet (the set-up page is open).
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn setup_needed() -> Result<bool, ServerFnError> {
    backend::admin()?.setup_needed().await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_users() -> Result<Vec<UserInfo>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.users().await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_user(user: UserForm) -> Result<UserInfo, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.save_user(&viewer.actor(), user).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_tokens() -> Result<Vec<TokenInfo>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.tokens().await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn create_token(name: String, scope: String) -> Result<CreatedToken, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.create_token(&viewer.actor(), name, scope).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn revoke_token(id: i64) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.revoke_token(&viewer.actor(), id).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_audit(prefix: Option<String>) -> Result<Vec<AuditEntry>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.audit(prefix.filter(|p| !p.is_empty())).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn acknowledge_finding(flow: i64, step: String, code: String, note: String) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.acknowledge(&viewer.actor(), flow, step, code, note).await
}

/// Whether publishing waits for an admin to acknowledge every warning; with
/// `required`, changes it.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn set_review_required(required: Option<bool>) -> Result<bool, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let admin = backend::admin()?;
    if let Some(required) = required {
        admin.set_review_required(&viewer.actor(), required).await?;
    }
    admin.review_required().await
}

/// The integration settings (SMTP, SMS, S3, FTP, CRM, outbound HTTP) as
/// JSON; secrets appear only as `password_set`-style flags.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn integration_settings() -> Result<String, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.integrations().await
}

/// Saves one channel's settings from JSON text. An empty `secret` keeps the
/// stored one; `clear_secret` removes it.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_integration(channel: String, settings: String, secret: String, clear_secret: Option<String>) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let settings: serde_json::Value =
        serde_json::from_str(&settings).map_err(|err| ServerFnError::new(format!("The {channel} settings are not JSON: {err}")))?;
    let secret = if clear_secret.is_some() { Some(String::new()) } else { Some(secret).filter(|s| !s.is_empty()) };
    backend::admin()?.save_integration(&viewer.actor(), channel, settings, secret).await
}

/// Saves the DKIM signing settings from the settings page's form; an empty
/// `private_key` keeps the stored key.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_dkim(domain: String, selector: String, algorithm: String, private_key: String) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let settings = serde_json::json!({"domain": domain.trim(), "selector": selector.trim(), "algorithm": algorithm});
    let key = Some(private_key).filter(|k| !k.trim().is_empty());
    backend::admin()?.save_integration(&viewer.actor(), "dkim".into(), settings, key).await
}

/// Generates a new DKIM key for the domain and selector (the old key is
/// replaced: publish the new record before mail is signed with it).
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn generate_dkim_key(domain: String, selector: String, algorithm: String) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    backend::admin()?.generate_dkim_key(&viewer.actor(), domain, selector, algorithm).await
}

/// Saves the SMTP server from the settings page's form.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_smtp(host: String, port: u16, tls: String, username: String, from: String, password: String) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let settings = serde_json::json!({
        "host": host.trim(), "port": port, "tls": tls,
        "username": Some(username.trim()).filter(|u| !u.is_empty()), "from": from.trim(),
    });
    backend::admin()?.save_integration(&viewer.actor(), "smtp".into(), settings, Some(password).filter(|p| !p.is_empty())).await
}
