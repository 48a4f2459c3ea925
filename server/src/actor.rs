//! Who is acting: the one place the acting user comes from. Until sign-in
//! lands this is the `local` placeholder; swap [`Actor`]'s extractor for the
//! signed-in user and every audited write (imports, bulk runs, undo, data
//! files) follows.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

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

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Actor("local".into()))
    }
}

/// The actor of the server function being handled (pages).
pub async fn for_server_fn() -> Result<Actor, leptos::prelude::ServerFnError> {
    leptos_axum::extract::<Actor>().await.map_err(|err| leptos::prelude::ServerFnError::new(err.to_string()))
}
