//! Every request: an id, a span, one log line, and its metrics.
//!
//! The id is the caller's `X-Request-Id` when it is a plain token (a proxy
//! or load balancer's, up to 128 characters of letters, digits and
//! `-_.:`), else a new random one; it goes back in the response's
//! `X-Request-Id`, and every line logged while the request runs carries it
//! (the `request` span's `request_id`). Metrics and logs name the route's
//! template (`/api/v1/flows/{id}`), never the path as sent, so ids and
//! tokens in paths never become labels or log text.
//!
//! It runs for every request, so it allocates next to nothing: the route,
//! method and status are `&'static str` labels, the id is made without a
//! system call, and the span and the log line cost only a level check when
//! their level is off.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
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
    let id = match request.headers().get(&REQUEST_ID) {
        Some(sent) if acceptable(sent.as_bytes()) => sent.clone(),
        _ => new_id(),
    };
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => template(path.as_str()),
        // The browser code is a nested service, which axum gives no template.
        None if request.uri().path().starts_with("/pkg/") => PKG,
        None => UNMATCHED,
    };
    let method = method_label(request.method());
    // Handlers (and whatever they call) see the id the response carries.
    request.headers_mut().insert(REQUEST_ID, id.clone());
    // Its fields are read only when the span is enabled.
    let span = tracing::info_span!("request", request_id = %id.to_str().unwrap_or_default(), method = %method, route = %route);
    let mut response = if span.is_disabled() { next.run(request).await } else { next.run(request).instrument(span.clone()).await };
    let took = began.elapsed();
    let status = response.status().as_u16();
    response.headers_mut().insert(REQUEST_ID, id);
    super::metrics::http_request(method, route, status, took);
    // Probes and the browser code are many and dull: at debug level.
    span.in_scope(|| {
        let ms = took.as_secs_f64() * 1000.0;
        if matches!(route, "/healthz" | "/readyz" | "/metrics" | PKG) {
            tracing::debug!(status, ms, "answered");
        } else if status >= 500 {
            tracing::warn!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    response
}

/// The method as a metric label. (A method nobody routes is `other`:
/// callers choose methods, and each would be a series.)
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A route's template, kept for the life of the process so that labels
/// borrow it: templates come from the router's declarations only (never
/// from paths as sent), so there are as many as routes, each kept once.
fn template(route: &str) -> &'static str {
    static KNOWN: LazyLock<RwLock<HashSet<&'static str>>> = LazyLock::new(Default::default);
    if let Some(&known) = KNOWN.read().unwrap_or_else(|p| p.into_inner()).get(route) {
        return known;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    match known.get(route) {
        Some(&kept) => kept,
        None => {
            let kept: &'static str = Box::leak(route.into());
            known.insert(kept);
            kept
        }
    }
}

fn acceptable(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id: 96 bits, 24 hex digits. A counter hashed with two keys drawn
/// at random once per process (SipHash, std's `RandomState`): unique within
/// the process, unforeseeable outside it, and no system call per request.
fn new_id() -> HeaderValue {
    static KEYS: LazyLock<(std::collections::hash_map::RandomState, std::collections::hash_map::RandomState)> =
        LazyLock::new(|| (Default::default(), Default::default()));
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0_u8; 12];
    bytes[..8].copy_from_slice(&KEYS.0.hash_one(n).to_le_bytes());
    bytes[8..].copy_from_slice(&KEYS.1.hash_one(n).to_le_bytes()[..4]);
    let mut text = [0_u8; 24];
    hex::encode_to_slice(bytes, &mut text).expect("24 digits for 12 bytes");
    HeaderValue::from_bytes(&text).expect("hex digits are a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_only_when_it_is_a_plain_token() {
        assert!(acceptable(b"3f2a-41b0_x.y:z"));
        assert!(acceptable("a".repeat(128).as_bytes()));
        assert!(!acceptable(b""));
        assert!(!acceptable("a".repeat(129).as_bytes()));
        assert!(!acceptable(b"has space"));
        assert!(!acceptable(b"line\nbreak"));
        assert!(!acceptable(b"quote\"d"));
        assert_eq!(new_id().len(), 24);
        assert!(acceptable(new_id().as_bytes()));
    }

    #[test]
    fn new_ids_differ() {
        let ids: HashSet<Vec<u8>> = (0..10_000).map(|_| new_id().as_bytes().to_vec()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn a_template_is_kept_once() {
        let route = String::from("/api/v1/things/{id}");
        let kept = template(&route);
        assert_eq!(kept, route);
        assert!(std::ptr::eq(kept, template(&route.clone())));
    }
}
