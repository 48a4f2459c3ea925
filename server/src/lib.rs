//! The `waymark` server: the REST API, the Leptos pages, the SQLite store
//! and the command line. Everything that touches a database, a socket or
//! the clock lives here; the flow rules live in `app::core`.

#![recursion_limit = "256"]

pub mod api;
pub mod backend;
pub mod channels;
pub mod cli;
pub mod error;
pub mod runtime;
pub mod runtime_api;
pub mod seed;
pub mod store;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{header, HeaderValue};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::MAX_BODY_BYTES;
use crate::runtime::Runtime;
use crate::store::Store;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub store: Store,
    pub runtime: Runtime,
}

/// Leptos options from the environment cargo-leptos (or the Makefile) sets,
/// with Waymark's defaults.
pub fn leptos_options(addr: std::net::SocketAddr) -> LeptosOptions {
    let site_root = std::env::var("LEPTOS_SITE_ROOT").unwrap_or_else(|_| "target/site".into());
    LeptosOptions::builder().output_name("waymark").site_root(site_root).site_pkg_dir("pkg").site_addr(addr).build()
}

/// The whole application: REST API, server functions, pages, static files.
pub fn router(state: AppState) -> Router {
    let backend: app::api::Backend = Arc::new(state.store.clone());
    let runtime: app::runtime_api::RuntimeHandle = Arc::new(state.runtime.clone());
    let routes = generate_route_list(app::App);
    let pages = {
        let (backend, runtime) = (backend.clone(), runtime.clone());
        move || {
            provide_context(backend.clone());
            provide_context(runtime.clone());
        }
    };
    let shell = {
        let options = state.leptos_options.clone();
        move || app::shell(options.clone())
    };
    Router::new()
        .nest("/api/v1", api::router().merge(runtime_api::router()).merge(channels::api::router()).fallback(|| async { error::Error::RouteNotFound }))
        .leptos_routes_with_context(&state, routes, pages.clone(), shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(pages, app::shell))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        .with_state(state)
}
