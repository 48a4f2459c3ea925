//! Who is acting, for audited writes (imports, bulk runs, undo, data
//! files): the signed-in user or API token the guard let through.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use app::auth::Viewer;

use crate::error::Error;

/// The user a request acts for, as recorded in audits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Viewer>().map(|viewer| Actor(viewer.actor())).ok_or(Error::Unauthenticated)
    }
}

/// The actor of the server function being handled (pages).
pub async fn for_server_fn() -> Result<Actor, leptos::prelude::ServerFnError> {
    leptos_axum::extract::<Actor>().await.map_err(|err| leptos::prelude::ServerFnError::new(err.to_string()))
}
