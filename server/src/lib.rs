//! The `waymark` server: the REST API, the Leptos pages, the SQLite store
//! and the command line. Everything that touches a database, a socket or
//! the clock lives here; the flow rules live in `app::core`.

#![recursion_limit = "256"]

pub mod admin;
pub mod actor;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod channels;
pub mod cli;
pub mod db;
pub mod demo;
pub mod error;
pub mod events_api;
pub mod ops;
pub mod openapi;
pub mod runtime;
pub mod reports;
pub mod runtime_api;
pub mod secrets;
pub mod seed;
pub mod store;
pub mod workspace;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::middleware;
use axum::http::{header, HeaderValue};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::{Auth, Limits};
use crate::error::MAX_BODY_BYTES;
use crate::runtime::Runtime;
use crate::store::Store;

/// What the handlers reach. The router clones it for every request (each
/// route's handler, each middleware with state), so it is one `Arc`; a
/// handler takes the part it needs (`State<Runtime>`, `State<Auth>`...).
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

#[derive(Clone)]
pub struct Parts {
    pub leptos_options: LeptosOptions,
    pub store: Store,
    pub runtime: Runtime,
    pub auth: Auth,
}

impl AppState {
    /// The state with the default rate limits; the policy is built from
    /// the routes when the router is.
    pub fn new(leptos_options: LeptosOptions, store: Store, runtime: Runtime) -> AppState {
        let auth = Auth {
            pool: store.pool().clone(),
            policy: Arc::new(auth::Policy::new([])),
            limits: Arc::new(Limits::default()),
            secure_cookies: false,
        };
        AppState(Arc::new(Parts { leptos_options, store, runtime, auth }))
    }

    /// The parts, to set up before serving (a clone made before then keeps
    /// what it had).
    pub fn configure(&mut self) -> &mut Parts {
        Arc::make_mut(&mut self.0)
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Self {
        state.store.clone()
    }
}

impl FromRef<AppState> for Runtime {
    fn from_ref(state: &AppState) -> Self {
        state.runtime.clone()
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Every REST endpoint under `/api/v1`, with the access each needs.
pub fn api_endpoints() -> Vec<auth::Endpoint> {
    api::endpoints()
        .into_iter()
        .chain(runtime_api::endpoints())
        .chain(events_api::endpoints())
        .chain(openapi::endpoints())
        .chain(runtime::pressure::endpoints())
        .chain(channels::api::endpoints())
        .chain(channels::tracking::routes::api_endpoints())
        .chain(reports::endpoints())
        .chain(workspace::endpoints())
        .collect()
}

/// Leptos options from the environment cargo-leptos (or the Makefile) sets,
/// with Waymark's defaults.
pub fn leptos_options(addr: std::net::SocketAddr) -> LeptosOptions {
    let site_root = ops::site::root();
    LeptosOptions::builder().output_name("waymark").site_root(site_root).site_pkg_dir("pkg").site_addr(addr).build()
}

/// The whole application: REST API, server functions, pages, static files.
pub fn router(mut state: AppState) -> Router {
    let backend: app::api::Backend = Arc::new(state.store.clone());
    let runtime: app::runtime_api::RuntimeHandle = Arc::new(state.runtime.clone());
    let admin: app::admin_api::AdminHandle = Arc::new(admin::Admin { pool: state.store.pool().clone() });
    let contacts: app::contacts_api::ContactsHandle = Arc::new(state.runtime.clone());
    let conversations: app::conversations::ConversationsHandle = Arc::new(state.runtime.clone());
    let pressure: app::pressure_api::PressureHandle = Arc::new(state.runtime.clone());
    let reports: app::report_api::ReportHandle = Arc::new(state.runtime.clone());
    let dashboard: app::dashboard_api::DashboardHandle = Arc::new(reports::DashboardBackend { runtime: state.runtime.clone(), store: state.store.clone() });
    let mailbox: app::mailbox_api::MailboxHandle = Arc::new(channels::mailbox::page::Backend { runtime: state.runtime.clone() });
    let workspace: app::workspace_api::WorkspaceHandle = Arc::new(workspace::Backend::new(state.runtime.clone()));
    // Generated once per process: leptos_server suppresses resource loads
    // process-wide while it runs (leptos#4773), so a page rendering at that
    // moment in another router (tests build many) would wait forever.
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| generate_route_list(app::App)).clone();
    let endpoints = api_endpoints();
    let pages: Vec<String> = routes.iter().map(|route| route.path().to_owned()).collect();
    state.configure().auth.policy = Arc::new(auth::routes::policy(&endpoints, &pages));
    let mut api = axum::Router::new();
    for endpoint in endpoints {
        api = api.route(endpoint.path, endpoint.handler);
    }
    let pages = {
        let (backend, runtime, admin, contacts) = (backend.clone(), runtime.clone(), admin.clone(), contacts.clone());
        let conversations = conversations.clone();
        let pressure = pressure.clone();
        let reports = reports.clone();
        let dashboard = dashboard.clone();
        let mailbox = mailbox.clone();
        let workspace = workspace.clone();
        move || {
            provide_context(backend.clone());
            provide_context(runtime.clone());
            provide_context(admin.clone());
            provide_context(contacts.clone());
            provide_context(conversations.clone());
            provide_context(pressure.clone());
            provide_context(reports.clone());
            provide_context(dashboard.clone());
            provide_context(mailbox.clone());
            ops::site::provide_split_manifest();
            provide_context(workspace.clone());
        }
    };
    let site_root = std::path::Path::new(&*state.leptos_options.site_root).to_owned();
    let pkg_dir = site_root.join(&*state.leptos_options.site_pkg_dir);
    let shell = {
        let options = state.leptos_options.clone();
        move || app::shell(options.clone())
    };
    Router::new()
        .nest("/api/v1", api.fallback(|| async { error::Error::RouteNotFound }))
        .merge(auth::routes::router())
        .merge(channels::tracking::routes::router())
        .leptos_routes_with_context(&state, routes, pages, shell)
        // The browser code, gzipped at build time (.ci/package-site), goes
        // out compressed to browsers that take it. Its file names are not
        // hashed, so a browser asks again each time (a 304 when unchanged)
        // and never mixes a cached chunk with a newer first module.
        // From the site folder, or from inside the binary (see ops::site).
        .nest_service("/pkg", ops::site::pkg(pkg_dir))
        .route_service("/favicon.svg", ops::site::public(&site_root, "favicon.svg"))
        .merge(ops::probes())
        // The guard refuses every path it has no rule for, so nothing
        // reaches here but a declared route the router lacks: never render
        // the app for it (the page router would match looser spellings).
        .fallback(|| async { error::Error::RouteNotFound })
        .layer(middleware::from_fn_with_state(state.auth.clone(), auth::guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ))
        // Outermost: a request id, a log line and metrics for every request.
        .layer(middleware::from_fn(ops::http::observe))
        .with_state(state)
}
