//! Settings rows of the feedback channels (the bounce mailbox, the email
//! providers' webhooks) in `integration_settings`, each with one
//! write-only secret encrypted at rest like every integration secret
//! (`crate::secrets`: the row's channel name is the associated data, and
//! `waymark secrets rotate` re-encrypts them with the rest). The browser
//! only ever learns whether a secret is set.

use std::fmt;

use serde_json::Value;
use sqlx::Row;

use crate::db::Pool;
use crate::error::{Error, Result};

/// A password, token or key. Not `Serialize`, and `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(…)")
    }
}

/// What a save does to the stored secret.
#[derive(Debug)]
pub enum SecretChange {
    Keep,
    Clear,
    Set(String),
}

impl SecretChange {
    /// From a request's field: absent keeps the stored secret, `""` clears
    /// it, a string replaces it (at most [`app::core::limits::INTEGRATION_SECRET`]).
    pub fn from_field(value: Option<Value>, field: &str) -> Result<SecretChange> {
        match value {
            None | Some(Value::Null) => Ok(SecretChange::Keep),
            Some(Value::String(s)) if s.is_empty() => Ok(SecretChange::Clear),
            Some(Value::String(s)) => {
                app::core::limits::check(field, &s, app::core::limits::INTEGRATION_SECRET)?;
                Ok(SecretChange::Set(s))
            }
            Some(_) => Err(Error::InvalidIntegration { field: field.to_owned(), message: "must be a string".into() }),
        }
    }
}

/// The settings stored for `channel` and their secret, if any are stored.
pub async fn load(pool: &Pool, channel: &str) -> Result<Option<(Value, Option<SecretText>)>> {
    let row = sqlx::query("SELECT settings, secret FROM integration_settings WHERE channel = $1").bind(channel).fetch_optional(pool).await?;
    let Some(row) = row else { return Ok(None) };
    let settings: Value = serde_json::from_str(row.get("settings"))
        .map_err(|err| Error::Internal(anyhow::anyhow!("stored {channel} settings are unreadable: {err}")))?;
    let secret = match row.get::<Option<String>, _>("secret") {
        None => None,
        Some(stored) => {
            let plain = keyring(pool)?
                .decrypt(channel, &stored)
                .map_err(|err| Error::Conflict { code: "secret_unreadable", message: err.to_string() })?;
            Some(SecretText(plain))
        }
    };
    Ok(Some((settings, secret)))
}

/// Replaces `channel`'s settings (`None` removes the row), changing its
/// secret as `secret` says. A kept secret is re-encrypted with the
/// current key when it was stored under an older one.
pub async fn save(pool: &Pool, channel: &str, settings: Option<Value>, secret: SecretChange) -> Result<()> {
    let mut tx = crate::db::begin_write(pool).await?;
    let Some(settings) = settings else {
        sqlx::query("DELETE FROM integration_settings WHERE channel = $1").bind(channel).execute(&mut *tx).await?;
        tx.commit().await?;
        return Ok(());
    };
    let now = jiff::Timestamp::now().to_string();
    let (keep, value) = match &secret {
        SecretChange::Keep => (true, None),
        SecretChange::Clear => (false, None),
        SecretChange::Set(plain) => (false, Some(keyring(pool)?.encrypt(channel, plain))),
    };
    sqlx::query(
        "INSERT INTO integration_settings (channel, settings, secret, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (channel) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at,
           secret = CASE WHEN $5 THEN integration_settings.secret ELSE excluded.secret END",
    )
    .bind(channel)
    .bind(settings.to_string())
    .bind(value)
    .bind(&now)
    .bind(keep)
    .execute(&mut *tx)
    .await?;
    if keep {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = $1").bind(channel).fetch_one(&mut *tx).await?;
        if let Some(stored) = stored {
            let keyring = keyring(pool)?;
            if !keyring.is_current(&stored) {
                let plain = keyring
                    .decrypt(channel, &stored)
                    .map_err(|err| Error::Conflict { code: "secret_unreadable", message: err.to_string() })?;
                sqlx::query("UPDATE integration_settings SET secret = $1 WHERE channel = $2")
                    .bind(keyring.encrypt(channel, &plain))
                    .bind(channel)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

fn keyring(pool: &Pool) -> Result<std::sync::Arc<crate::secrets::Keyring>> {
    crate::secrets::keyring(pool).map_err(|err| Error::Internal(anyhow::anyhow!("the key for integration secrets cannot be loaded: {err:#}")))
}
