//! The administration behind the admin pages' server functions: users,
//! API tokens, the audit log, and the review of validation warnings.

use jiff::Timestamp;
use leptos::prelude::ServerFnError;
use sqlx::Row;

use app::admin_api::{Ack, AdminBackend, AuditEntry, CreatedToken, UserForm, TokenInfo, UserInfo};

use crate::audit;
use crate::auth::accounts;
use crate::error::{Error, Result};
use crate::db::Pool;

/// The installation setting that makes publishing wait for an admin's
/// acknowledgement of every warning.
const REVIEW_REQUIRED: &str = "require_review";

pub async fn review_required(pool: &Pool) -> Result<bool> {
    let value: Option<String> =
        sqlx::query_scalar("SELECT value FROM installation WHERE key = $1").bind(REVIEW_REQUIRED).fetch_optional(pool).await?;
    Ok(value.as_deref() == Some("on"))
}

pub async fn set_review_required(pool: &Pool, actor: &str, required: bool) -> Result<()> {
    let value = if required { "on" } else { "off" };
    let mut tx = crate::db::begin_write(pool).await?;
    sqlx::query("INSERT INTO installation (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(REVIEW_REQUIRED)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    audit::record(&mut *tx, actor, "settings.review_required", "installation", value).await?;
    tx.commit().await?;
    Ok(())
}

/// The acknowledgements on a flow's steps.
pub async fn acks(pool: &Pool, flow: i64) -> Result<Vec<Ack>> {
    let rows = sqlx::query("SELECT step_id, code, note, acked_by, acked_at FROM finding_acks WHERE flow_id = $1 ORDER BY step_id, code")
        .bind(flow)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ack { step: r.get("step_id"), code: r.get("code"), note: r.get("note"), by: r.get("acked_by"), at: r.get("acked_at") })
        .collect())
}

pub async fn acknowledge(pool: &Pool, actor: &str, flow: i64, step: &str, code: &str, note: &str) -> Result<()> {
    if note.trim().is_empty() {
        return Err(Error::Invalid { code: "note_required", message: "Say why the warning is acceptable: marketers read the note on the step.".into() });
    }
    app::core::limits::check("note", note, app::core::limits::NOTE)?;
    let mut tx = crate::db::begin_write(pool).await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM flows WHERE id = $1").bind(flow).fetch_optional(&mut *tx).await?;
    if exists.is_none() {
        return Err(Error::FlowNotFound(flow));
    }
    sqlx::query(
        "INSERT INTO finding_acks (flow_id, step_id, code, note, acked_by, acked_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (flow_id, step_id, code) DO UPDATE SET note = excluded.note, acked_by = excluded.acked_by, acked_at = excluded.acked_at",
    )
    .bind(flow)
    .bind(step)
    .bind(code)
    .bind(note.trim())
    .bind(actor)
    .bind(Timestamp::now().to_string())
    .execute(&mut *tx)
    .await?;
    audit::record(&mut *tx, actor, "flow.warning_acknowledged", &format!("flow {flow}"), &format!("{step} {code}: {}", note.trim())).await?;
    tx.commit().await?;
    Ok(())
}

/// The administration, over the database.
#[derive(Clone)]
pub struct Admin {
    pub pool: Pool,
}

#[async_trait::async_trait]
impl AdminBackend for Admin {
    async fn setup_needed(&self) -> Result<bool, ServerFnError> {
        accounts::has_admin(&self.pool).await.map(|has| !has).map_err(Error::into_server_fn_error)
    }

    async fn users(&self) -> Result<Vec<UserInfo>, ServerFnError> {
        let users = accounts::users(&self.pool).await.map_err(Error::into_server_fn_error)?;
        Ok(users)
    }

    async fn save_user(&self, actor: &str, user: UserForm) -> Result<UserInfo, ServerFnError> {
        let saved = match user.id {
            None => accounts::add_user(&self.pool, &user.email, &user.name, user.role, &user.password).await,
            Some(id) => accounts::update_user(&self.pool, id, &user.name, user.role, user.disabled, Some(&user.password)).await,
        }
        .map_err(Error::into_server_fn_error)?;
        let action = if user.id.is_none() { "user.created" } else { "user.changed" };
        let detail = format!("role {}{}", saved.role.as_str(), if saved.disabled { ", disabled" } else { "" });
        audit::record(&self.pool, actor, action, &saved.email, &detail).await.map_err(Error::into_server_fn_error)?;
        Ok(saved)
    }

    async fn tokens(&self) -> Result<Vec<TokenInfo>, ServerFnError> {
        let tokens = accounts::tokens(&self.pool).await.map_err(Error::into_server_fn_error)?;
        Ok(tokens)
    }

    async fn create_token(&self, actor: &str, name: String, scope: String) -> Result<CreatedToken, ServerFnError> {
        let (token, secret) = accounts::create_token(&self.pool, &name, &scope, actor).await.map_err(Error::into_server_fn_error)?;
        audit::record(&self.pool, actor, "token.created", &token.name, &format!("scope {}", token.scope))
            .await
            .map_err(Error::into_server_fn_error)?;
        Ok(CreatedToken { token, secret })
    }

    async fn revoke_token(&self, actor: &str, id: i64) -> Result<(), ServerFnError> {
        let token = accounts::revoke_token(&self.pool, id).await.map_err(Error::into_server_fn_error)?;
        audit::record(&self.pool, actor, "token.revoked", &token.name, "").await.map_err(Error::into_server_fn_error)
    }

    async fn audit(&self, prefix: Option<String>) -> Result<Vec<AuditEntry>, ServerFnError> {
        audit::entries(&self.pool, prefix.as_deref(), 500).await.map_err(Error::into_server_fn_error)
    }

    async fn acknowledge(&self, actor: &str, flow: i64, step: String, code: String, note: String) -> Result<(), ServerFnError> {
        acknowledge(&self.pool, actor, flow, &step, &code, &note).await.map_err(Error::into_server_fn_error)
    }

    async fn review_required(&self) -> Result<bool, ServerFnError> {
        review_required(&self.pool).await.map_err(Error::into_server_fn_error)
    }

    async fn integrations(&self) -> Result<String, ServerFnError> {
        let settings = crate::channels::settings::Integrations::load(&self.pool).await.map_err(Error::into_server_fn_error)?;
        Ok(settings.public_view().to_string())
    }

    async fn save_integration(&self, actor: &str, channel: String, settings: serde_json::Value, secret: Option<String>) -> Result<(), ServerFnError> {
        let mut settings = match settings {
            serde_json::Value::Object(fields) => fields,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => return Err(ServerFnError::new(format!("The {channel} settings must be a JSON object."))),
        };
        if let (Some(secret), Some(field)) = (secret, crate::channels::settings::secret_field(&channel)) {
            settings.insert(field.to_owned(), serde_json::Value::String(secret));
        }
        let body = serde_json::Map::from_iter([(channel.clone(), serde_json::Value::Object(settings))]);
        crate::channels::settings::update(&self.pool, body).await.map_err(Error::into_server_fn_error)?;
        audit::record(&self.pool, actor, "settings.integrations", "integrations", &channel).await.map_err(Error::into_server_fn_error)
    }

    async fn generate_dkim_key(&self, actor: &str, domain: String, selector: String, algorithm: String) -> Result<(), ServerFnError> {
        let algorithm = serde_json::from_value(serde_json::Value::String(algorithm.clone()))
            .map_err(|_| ServerFnError::new(format!("“{algorithm}” is not a DKIM algorithm: use rsa-sha256 or ed25519-sha256.")))?;
        crate::channels::tracking::routes::generate_and_store(&self.pool, actor, algorithm, Some(domain), Some(selector))
            .await
            .map(|_| ())
            .map_err(Error::into_server_fn_error)
    }

    async fn set_review_required(&self, actor: &str, required: bool) -> Result<(), ServerFnError> {
        set_review_required(&self.pool, actor, required).await.map_err(Error::into_server_fn_error)
    }
}
