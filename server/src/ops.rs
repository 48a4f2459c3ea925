//! Running Waymark in production: health probes, Prometheus metrics,
//! request ids and JSON logs, and the site served from inside the binary.
//!
//! - `GET /healthz` (the process answers) and `GET /readyz` (the database
//!   answers, every migration this binary knows is applied, the scheduler
//!   loop passed recently) are public on the app's address, JSON, and cost
//!   one small query at most.
//! - `GET /metrics` (Prometheus text format) is served only on a separate
//!   address, `--metrics-addr` (with `/healthz` and `/readyz` beside it, so
//!   a `worker`, which serves no HTTP otherwise, can be probed too), and
//!   optionally asks for `Authorization: Bearer <--metrics-token>`. A
//!   separate address keeps the metrics off the public listener without a
//!   secret in every scraper, and the app's guard (which reads bearer
//!   tokens as API tokens) stays as it is.
//!
//! Nothing here may change what a request or a transition does: the
//! instrumentation only counts, and a failed scrape query leaves its gauges
//! out of that scrape.

pub mod health;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod site;

use std::net::SocketAddr;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::runtime::Runtime;

/// The probes, on the app's router (their rules are `app::auth::PROBES`).
pub fn probes<S>() -> Router<S>
where
    Runtime: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/healthz", get(health::healthz)).route("/readyz", get(health::readyz))
}

/// Where and how `/metrics` is served.
#[derive(Clone, Debug)]
pub struct MetricsListener {
    pub addr: SocketAddr,
    /// When set, scrapes must send `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Installs the metrics recorder and serves `/metrics`, `/healthz` and
/// `/readyz` on `listener.addr` until `stop`. Returns the bound address
/// (port 0 picks a free one) once it listens.
pub async fn serve_metrics(listener: MetricsListener, runtime: Runtime, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    metrics::install();
    let socket = tokio::net::TcpListener::bind(listener.addr)
        .await
        .map_err(|err| anyhow::anyhow!("--metrics-addr {}: {err}", listener.addr))?;
    let bound = socket.local_addr()?;
    let token = listener.token.filter(|t| !t.trim().is_empty());
    let app = Router::new()
        .route("/metrics", get(metrics::scrape))
        .merge(probes())
        .fallback(|| async { crate::error::Error::RouteNotFound })
        .layer(axum::Extension(metrics::ScrapeToken(token.map(std::sync::Arc::from))))
        .layer(axum::middleware::from_fn(http::observe))
        .with_state(runtime);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(socket, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %err, "the metrics listener stopped");
        }
    });
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(bound)
}
