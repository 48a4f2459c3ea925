//! Server functions of the "Bounces and replies" settings page: the bounce
//! and reply mailbox (IMAP) and the email providers' webhooks. Admins
//! only; passwords and keys are write-only (the page learns whether one is
//! set, never its value). The server implements [`MailboxBackend`].

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub use backend::{MailboxBackend, MailboxHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use leptos::prelude::*;

    /// Implemented by the server. `actor` is who does it, for the audit log.
    #[async_trait::async_trait]
    pub trait MailboxBackend: Send + Sync + 'static {
        /// `{"mailbox": …, "webhooks": …}` as `GET /settings/mailbox` and
        /// `GET /settings/email-webhooks` answer them.
        async fn view(&self) -> Result<String, ServerFnError>;
        /// Replaces the mailbox settings (as `PUT /settings/mailbox` takes them).
        async fn save_mailbox(&self, actor: &str, settings: serde_json::Value) -> Result<(), ServerFnError>;
        /// Replaces providers' webhook settings (as `PUT /settings/email-webhooks` takes them).
        async fn save_webhooks(&self, actor: &str, settings: serde_json::Value) -> Result<(), ServerFnError>;
        /// Reads the mailbox now; what the poll did, in words.
        async fn poll(&self) -> Result<String, ServerFnError>;
    }

    pub type MailboxHandle = Arc<dyn MailboxBackend>;

    pub(crate) fn mailbox() -> Result<MailboxHandle, ServerFnError> {
        use_context::<MailboxHandle>().ok_or_else(|| ServerFnError::new("the mailbox settings are not available"))
    }
}

/// The mailbox and webhook settings, as JSON text.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn mailbox_settings() -> Result<String, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::mailbox()?.view().await
}

/// A number from a form field, or the sentence saying what it must be.
#[cfg(feature = "ssr")]
fn number<T: std::str::FromStr>(field: &str, text: &str, what: &str) -> Result<T, ServerFnError> {
    text.trim().parse().map_err(|_| ServerFnError::new(format!("{field} must be {what}.")))
}

/// The mailbox form as the page posts it (`mailbox[host]`, …); numbers as
/// typed, checked on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxForm {
    /// `on` when checked.
    pub enabled: Option<String>,
    pub host: String,
    pub port: String,
    pub tls: String,
    /// A PEM file of CA certificates to trust for the server (empty: the Web PKI's roots alone).
    #[serde(default)]
    pub ca_file: String,
    pub username: String,
    /// Empty keeps the stored password.
    pub password: String,
    /// `on` removes the stored password.
    pub clear_password: Option<String>,
    pub folder: String,
    pub poll_secs: String,
    pub after: String,
    pub move_to: String,
    pub soft_bounce_limit: String,
}

/// Saves the mailbox from the page's form.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_mailbox(mailbox: MailboxForm) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let form = mailbox;
    let mut settings = serde_json::json!({
        "enabled": form.enabled.is_some(),
        "host": form.host.trim(),
        "port": number::<u16>("The port", &form.port, "a number between 1 and 65535")?,
        "tls": form.tls,
        "username": form.username.trim(),
        "folder": form.folder.trim(),
        "poll_secs": number::<u64>("The poll interval", &form.poll_secs, "a number of seconds")?,
        "after": form.after,
        "soft_bounce_limit": number::<u32>("Soft bounces in a row", &form.soft_bounce_limit, "a number from 0 to 20")?,
    });
    if !form.ca_file.trim().is_empty() {
        settings["ca_file"] = serde_json::Value::String(form.ca_file.trim().to_owned());
    }
    if !form.move_to.trim().is_empty() {
        settings["move_to"] = serde_json::Value::String(form.move_to.trim().to_owned());
    }
    if form.clear_password.is_some() {
        settings["password"] = serde_json::Value::String(String::new());
    } else if !form.password.is_empty() {
        settings["password"] = serde_json::Value::String(form.password);
    }
    backend::mailbox()?.save_mailbox(&viewer.actor(), settings).await
}

/// Saves one provider's webhook settings (`remove` deletes them). Fields a
/// provider does not use are ignored; an empty key keeps the stored one.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_email_webhook(
    provider: String,
    topic_arns: Option<String>,
    auth: Option<String>,
    username: Option<String>,
    header: Option<String>,
    key: Option<String>,
    remove: Option<String>,
) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Admin)?;
    let mut settings = serde_json::Map::new();
    let key = key.filter(|k| !k.trim().is_empty()).map(|k| k.trim().to_owned());
    let value = match (remove.is_some(), provider.as_str()) {
        (true, _) => serde_json::Value::Null,
        (false, "ses") => {
            let arns: Vec<String> = topic_arns.unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
            settings.insert("topic_arns".into(), serde_json::json!(arns));
            serde_json::Value::Object(settings)
        }
        (false, "postmark") => {
            let auth = auth.unwrap_or_else(|| "basic".into());
            settings.insert("auth".into(), serde_json::json!(auth));
            settings.insert("username".into(), serde_json::json!(username.unwrap_or_default().trim()));
            if auth == "header" {
                settings.insert("header".into(), serde_json::json!(header.unwrap_or_default().trim()));
            }
            if let Some(key) = key {
                settings.insert("password".into(), serde_json::json!(key));
            }
            serde_json::Value::Object(settings)
        }
        (false, "sendgrid" | "mailgun") => {
            if let Some(key) = key {
                let name = if provider == "sendgrid" { "public_key" } else { "signing_key" };
                settings.insert(name.into(), serde_json::json!(key));
            }
            serde_json::Value::Object(settings)
        }
        (false, other) => return Err(ServerFnError::new(format!("“{other}” is not a provider; use ses, sendgrid, postmark or mailgun."))),
    };
    backend::mailbox()?.save_webhooks(&viewer.actor(), serde_json::json!({ provider: value })).await
}

/// Reads the mailbox now.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn poll_mailbox() -> Result<String, ServerFnError> {
    crate::auth::require(crate::auth::Access::Admin)?;
    backend::mailbox()?.poll().await
}
