//! Every request: an id, a span, one log line, and its metrics.
//!
//! The id is the caller's `X-Request-Id` when it is a plain token (a proxy
//! or load balancer's, up to 128 characters of letters, digits and
//! `-_.:`), else a new random one; it goes back in the response's
//! `X-Request-Id`, and every line logged while the request runs carries it
//! (the `request` span's `request_id`). Metrics and logs name the route's
//! template (`/api/v1/flows/{id}`), never the path as sent, so ids and
//! tokens in paths never become labels or log text.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route of requests no route matched (refused by the guard, or not found).
const UNMATCHED: &str = "unmatched";
/// The route of the browser code (as the guard's rule names it).
const PKG: &str = "/pkg/{*file}";

/// The middleware (outermost, so that the guard's refusals are counted too).
pub async fn observe(mut request: Request, next: Next) -> Response {
    let began = Instant::now();
    let id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|id| acceptable(id)).map(str::to_owned).unwrap_or_else(new_id);
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        // The browser code is a nested service, which axum gives no template.
        None if request.uri().path().starts_with("/pkg/") => PKG.to_owned(),
        None => UNMATCHED.to_owned(),
    };
    let method = request.method().clone();
    // Handlers (and whatever they call) see the id the response carries.
    let value = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let took = began.elapsed();
    let status = response.status().as_u16();
    response.headers_mut().insert(REQUEST_ID, value);
    super::metrics::http_request(method.as_str(), &route, status, took);
    let ms = took.as_secs_f64() * 1000.0;
    // Probes and the browser code are many and dull: at debug level.
    span.in_scope(|| {
        if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics" | PKG) {
            tracing::debug!(status, ms, "answered");
        } else if status >= 500 {
            tracing::warn!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    response
}

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_id() -> String {
    let mut bytes = [0_u8; 12];
    getrandom::getrandom(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_only_when_it_is_a_plain_token() {
        assert!(acceptable("3f2a-41b0_x.y:z"));
        assert!(acceptable(&"a".repeat(128)));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(129)));
        assert!(!acceptable("has space"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable("quote\"d"));
        assert_eq!(new_id().len(), 24);
        assert!(acceptable(&new_id()));
    }
}
