//! The installation's contact-pressure policy (FLOW_FORMAT "Contact
//! pressure"; DESIGN §13), kept as a JSON document in
//! `installation_settings` and read with the action groups for every
//! scheduler batch, so that a change applies from the next send.
//! `GET`/`PUT /api/v1/settings/pressure` (admins), and the store behind
//! the admin page `/admin/pressure` (`app::pressure_api`).

use axum::extract::State;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::Extension;

use app::auth::{Access, Viewer};
use app::core::pressure::Policy;
use app::pressure_api::{PressureBackend, PressureSettings};
use leptos::prelude::ServerFnError;

use crate::auth::Endpoint;
use crate::db::Conn;
use crate::error::{Error, Json, Result};
use crate::runtime::Runtime;
use crate::AppState;

/// The policy document at most, as JSON text.
pub const MAX_POLICY_BYTES: usize = 16 * 1024;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/settings/pressure", Access::Admin, get_policy),
        Endpoint::new(Method::PUT, "/settings/pressure", Access::Admin, put_policy),
    ]
}

/// The policy in force (empty: no caps, no quiet hours).
pub async fn load(conn: &mut Conn) -> Result<Policy> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT value FROM installation_settings WHERE name = 'pressure'").fetch_optional(&mut *conn).await?;
    match text {
        None => Ok(Policy::default()),
        Some(text) => serde_json::from_str(&text).map_err(|err| Error::Internal(anyhow::anyhow!("stored pressure policy unreadable: {err}"))),
    }
}

/// Checks and stores `policy`; refused with the problems a person can fix.
pub async fn save(conn: &mut Conn, policy: &Policy, by: &str) -> Result<()> {
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(Error::Invalid { code: "invalid_policy", message: format!("The contact-pressure policy cannot be used: {}.", problems.join("; ")) });
    }
    let text = serde_json::to_string(policy).expect("policies serialize");
    app::core::limits::check("policy", &text, MAX_POLICY_BYTES)?;
    sqlx::query(
        "INSERT INTO installation_settings (name, value, updated_at, updated_by) VALUES ('pressure', $1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(text)
    .bind(jiff::Timestamp::now().to_string())
    .bind(by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The policy with who changed it last, for the settings page.
async fn settings(conn: &mut Conn) -> Result<PressureSettings> {
    let policy = load(&mut *conn).await?;
    let changed: Option<(String, String)> =
        sqlx::query_as("SELECT updated_at, updated_by FROM installation_settings WHERE name = 'pressure'").fetch_optional(&mut *conn).await?;
    let (updated_at, updated_by) = changed.unzip();
    Ok(PressureSettings { policy, updated_at, updated_by })
}

/// The settings page's store. Its server functions check the viewer and
/// the policy's problems before they get here; `save` checks them again.
#[async_trait::async_trait]
impl PressureBackend for Runtime {
    async fn pressure(&self) -> Result<PressureSettings, ServerFnError> {
        let mut conn = self.pool().acquire().await.map_err(fail)?;
        settings(&mut conn).await.map_err(fail)
    }

    async fn save_pressure(&self, actor: &str, policy: Policy) -> Result<PressureSettings, ServerFnError> {
        let mut tx = crate::db::begin_write(self.pool()).await.map_err(fail)?;
        save(&mut tx, &policy, actor).await.map_err(fail)?;
        let saved = settings(&mut tx).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let detail = serde_json::to_string(&policy).expect("policies serialize");
        crate::audit::record(self.pool(), actor, "settings.pressure", "contact pressure", &detail).await.map_err(fail)?;
        Ok(saved)
    }
}

fn fail(err: impl Into<Error>) -> ServerFnError {
    err.into().into_server_fn_error()
}

async fn get_policy(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Result<impl IntoResponse> {
    if !viewer.may(Access::Admin) {
        return Err(Error::Forbidden(viewer.role.as_str()));
    }
    let mut conn = state.runtime.pool().acquire().await?;
    Ok(Json(load(&mut conn).await?))
}

async fn put_policy(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(policy): Json<Policy>) -> Result<impl IntoResponse> {
    if !viewer.may(Access::Admin) {
        return Err(Error::Forbidden(viewer.role.as_str()));
    }
    let mut tx = crate::db::begin_write(state.runtime.pool()).await?;
    save(&mut tx, &policy, &viewer.actor()).await?;
    tx.commit().await?;
    crate::audit::record(state.runtime.pool(), &viewer.actor(), "settings.pressure", "contact pressure", &serde_json::to_string(&policy).expect("policies serialize")).await?;
    Ok(Json(policy))
}
