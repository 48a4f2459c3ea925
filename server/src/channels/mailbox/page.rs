//! The "Bounces and replies" page's server functions, over the same code
//! as the REST routes (`/settings/mailbox`, `/settings/email-webhooks`):
//! same checks, same audit entries.

use leptos::prelude::ServerFnError;
use serde_json::{json, Value};

use crate::channels::provider_hooks;
use crate::error::Error;
use crate::runtime::Runtime;

pub struct Backend {
    pub runtime: Runtime,
}

fn failed(err: Error) -> ServerFnError {
    err.into_server_fn_error()
}

fn object(value: Value) -> Result<serde_json::Map<String, Value>, ServerFnError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ServerFnError::new("The settings are not a JSON object.")),
    }
}

#[async_trait::async_trait]
impl app::mailbox_api::MailboxBackend for Backend {
    async fn view(&self) -> Result<String, ServerFnError> {
        let pool = self.runtime.pool();
        let mailbox = super::view(pool).await.map_err(failed)?;
        let webhooks = provider_hooks::view(pool).await.map_err(failed)?;
        Ok(json!({"mailbox": mailbox, "webhooks": webhooks}).to_string())
    }

    async fn save_mailbox(&self, actor: &str, settings: Value) -> Result<(), ServerFnError> {
        let pool = self.runtime.pool();
        let body = object(settings)?;
        let changed: Vec<String> = body.keys().cloned().collect();
        super::save(pool, body).await.map_err(failed)?;
        crate::audit::record(pool, actor, "settings.mailbox", "mailbox", &changed.join(", ")).await.map_err(failed)
    }

    async fn save_webhooks(&self, actor: &str, settings: Value) -> Result<(), ServerFnError> {
        let pool = self.runtime.pool();
        let body = object(settings)?;
        let changed: Vec<String> = body.keys().cloned().collect();
        provider_hooks::save(pool, body).await.map_err(failed)?;
        crate::audit::record(pool, actor, "settings.email_webhooks", "email webhooks", &changed.join(", ")).await.map_err(failed)
    }

    async fn poll(&self) -> Result<String, ServerFnError> {
        match super::poll_once(&self.runtime).await {
            Ok(poll) if poll.unseen == 0 => Ok("Read the mailbox: no new message.".into()),
            Ok(poll) => Ok(format!(
                "Read the mailbox: {} message(s) handled, {} event(s) recorded, {} about none of our emails or nothing to act on.",
                poll.handled, poll.events, poll.unmatched
            )),
            Err(super::PollError::Store(err)) => Err(failed(err)),
            Err(other) => Err(ServerFnError::new(other.to_string())),
        }
    }
}
