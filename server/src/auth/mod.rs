//! Who is asking, and may they? Every request passes [`guard`] before any
//! handler runs:
//!
//! 1. The caller is found from a bearer token (API) or a session cookie.
//! 2. A state-changing request that rides on a cookie (or signs in) must
//!    come from our own pages (`Sec-Fetch-Site: same-origin`, or an `Origin`
//!    naming this host); anything else is refused as cross-site.
//! 3. The [`Policy`] (built from the same tables the router is built from)
//!    says what the route needs; the caller's role must satisfy it.
//!
//! Handlers then read the [`Viewer`] from the request's extensions; agents'
//! row-level limits (their own tasks and participants) use `Viewer::owns`.

pub mod accounts;
pub mod limit;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};

use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use app::auth::Access;

use crate::error::Error;
use limit::Limiter;
use crate::db::Pool;

pub const SESSION_COOKIE: &str = "waymark_session";

/// The sign-in state shared by every request.
#[derive(Clone)]
pub struct Auth {
    pub pool: Pool,
    pub policy: Arc<Policy>,
    pub limits: Arc<Limits>,
    /// Mark cookies `Secure` (serve behind HTTPS).
    pub secure_cookies: bool,
}

pub struct Limits {
    /// Sign-in attempts per email.
    pub sign_in_per_email: Limiter,
    /// Sign-in attempts per client address.
    pub sign_in_per_address: Limiter,
    /// Enrollment requests per caller.
    pub enroll: Limiter,
    /// `POST /api/v1/events` requests (of up to 1,000 events) per caller.
    pub events: Limiter,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sign_in_per_email: Limiter::new("sign_in_email", 5, 5),
            sign_in_per_address: Limiter::new("sign_in_address", 30, 30),
            enroll: Limiter::new("enroll", 120, 600),
            events: Limiter::new("events", 300, 6_000),
        }
    }
}

/// What each route needs, by method and path.
pub struct Policy {
    routes: matchit::Router<Vec<(Method, Access)>>,
}

impl Policy {
    /// `routes` are (method, axum path, access); a path may appear with
    /// several methods. Panics on a route given twice: the tables are code.
    pub fn new(routes: impl IntoIterator<Item = (Method, String, Access)>) -> Policy {
        let mut by_path: Vec<(String, Vec<(Method, Access)>)> = Vec::new();
        for (method, path, access) in routes {
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => {
                    assert!(!methods.iter().any(|(m, _)| *m == method), "{method} {path} is in the policy twice");
                    methods.push((method, access));
                }
                None => by_path.push((path, vec![(method, access)])),
            }
        }
        let mut router = matchit::Router::new();
        for (path, methods) in by_path {
            router.insert(path.clone(), methods).unwrap_or_else(|err| panic!("policy route {path}: {err}"));
        }
        Policy { routes: router }
    }

    /// What `method path` needs: `Err(Unknown)` for a path nobody declared
    /// (refused, never allowed by default), `Err(Method)` for a declared
    /// path that does not take this method. The path must already be the
    /// canonical one ([`canonical_path`]), as the router sees it.
    pub fn access(&self, method: &Method, path: &str) -> Result<Access, NoRoute> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let found = self.routes.at(path).map_err(|_| NoRoute::Unknown)?;
        found.value.iter().find(|(m, _)| m == method).map(|(_, access)| *access).ok_or(NoRoute::Method)
    }

    /// Whether some method may reach `path`.
    pub fn knows(&self, path: &str) -> bool {
        self.routes.at(path).is_ok()
    }
}

/// Why a request matches no rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute {
    /// No route has this path.
    Unknown,
    /// The path exists, but not for this method.
    Method,
}

/// How a request's path compares with the one route it may name.
#[derive(Debug, PartialEq, Eq)]
pub enum PathForm {
    /// Already canonical: the policy and the router decide on it as it is.
    Canonical,
    /// A spelling of another path (a trailing slash, `//`): browsers are
    /// sent there, other requests refused.
    Alias(String),
    /// Never a route: an encoded slash, backslash or dot, a NUL, or any
    /// percent-encoding in a page's path (pages have numeric parameters
    /// only), which the page router might decode differently from the
    /// policy.
    Refused,
}

/// The one form of a path that the policy and the router both decide on.
/// Case is kept: `/ADMIN/users` is simply unknown, so refused.
pub fn canonical_path(path: &str) -> PathForm {
    if !path.starts_with('/') || path.contains('\\') {
        return PathForm::Refused;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%00"].iter().any(|bad| lower.contains(bad)) {
        return PathForm::Refused;
    }
    let page = !(path.starts_with("/api/") || path.starts_with("/pkg/"));
    if page && path.contains('%') {
        return PathForm::Refused;
    }
    let mut canonical = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return PathForm::Refused;
        }
        canonical.push('/');
        canonical.push_str(segment);
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    if canonical == path {
        PathForm::Canonical
    } else {
        PathForm::Alias(canonical)
    }
}

/// One REST route: its method, path (under `/api/v1`), the access it
/// needs, and its handler. The router and the policy are both built from
/// the same list, so no route can exist without a rule.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: axum::routing::MethodRouter<crate::AppState>,
}

impl Endpoint {
    pub fn new<H, T>(method: Method, path: &'static str, access: Access, handler: H) -> Endpoint
    where
        H: axum::handler::Handler<T, crate::AppState>,
        T: 'static,
    {
        let filter = axum::routing::MethodFilter::try_from(method.clone()).expect("a routable method");
        Endpoint { method, path, access, handler: axum::routing::on(filter, handler) }
    }

    /// Lets this route take bodies up to `bytes` (uploads), instead of the 2 MiB default.
    pub fn with_body_limit(mut self, bytes: usize) -> Endpoint {
        self.handler = self.handler.layer(axum::extract::DefaultBodyLimit::max(bytes));
        self
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a request came from this site's own pages.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            rest == Some(host)
        }
        _ => false,
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address, for rate limits.
pub fn client_address(request: &Request) -> String {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string())
}

fn wants_problem(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/fn/") || path.starts_with("/auth/")
}

/// The header the pages' script sends the session's anti-forgery token in.
pub const CSRF_HEADER: &str = "x-waymark-csrf";

/// The anti-forgery token of a session: derived from the session's secret
/// (which is `HttpOnly`, so no script or markup can read it), printed into
/// the pages as `<meta name="waymark-csrf">` for their script to send back.
pub fn csrf_token(session: &str) -> String {
    accounts::digest(&format!("waymark-csrf\0{session}"))
}

/// Whether an HTML form could have sent this body: a form always names
/// one of these three types (and only ever GETs or POSTs).
fn form_encoded(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return false };
    let essence = value.to_str().unwrap_or_default().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(essence.as_str(), "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain")
}

/// What an unknown route answers: nothing about what is there.
pub fn not_found(path: &str) -> Response {
    if wants_problem(path) {
        return Error::RouteNotFound.into_response();
    }
    html_page(axum::http::StatusCode::NOT_FOUND, "Page not found", "<p>There is nothing at this address. <a href=\"/\">Go to the start page</a>.</p>")
}

/// The middleware in front of every route.
pub async fn guard(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The policy decides on the path the router will match, spelled one way.
    match canonical_path(&path) {
        PathForm::Canonical => {}
        PathForm::Alias(canonical) if is_safe(&method) && method != Method::OPTIONS && auth.policy.knows(&canonical) => {
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            return Redirect::permanent(&format!("{canonical}{query}")).into_response();
        }
        PathForm::Alias(_) | PathForm::Refused => return not_found(&path),
    }
    let access = match auth.policy.access(&method, &path) {
        Ok(access) => access,
        Err(NoRoute::Unknown) => return not_found(&path),
        Err(NoRoute::Method) => return Error::MethodNotAllowed(method.to_string()).into_response(),
    };
    // Tracking pixels, click redirects and unsubscribe links are opened
    // from mailboxes, by mail clients, proxies and mailbox providers (RFC
    // 8058's one-click POST comes from the provider's servers). They act
    // for no user: no session or token is read (a signed-in marketer who
    // clicks one is nobody there), so no cross-site or anti-forgery check
    // applies; the signed token in the path is the credential.
    if crate::channels::tracking::routes::SESSIONLESS.iter().any(|prefix| path.starts_with(prefix)) {
        if access != Access::Public {
            return not_found(&path);
        }
        return next.run(request).await;
    }
    let headers = request.headers();
    let mut csrf = None;
    let viewer = if let Some(token) = bearer(headers) {
        if !path.starts_with("/api/") {
            return Error::Forbidden("API token").into_response();
        }
        match accounts::token_viewer(&auth.pool, token).await {
            Ok(Some((viewer, may_write))) => {
                if !may_write && !is_safe(&method) {
                    return Error::ReadOnlyToken.into_response();
                }
                Some(viewer)
            }
            Ok(None) => return Error::InvalidToken.into_response(),
            Err(err) => return err.into_response(),
        }
    } else {
        // Cross-site requests are dangerous where the browser adds
        // credentials on its own (the session cookie), and at sign-in.
        let session = cookie(headers, SESSION_COOKIE);
        let ambient = session.is_some() || path.starts_with("/auth/");
        if ambient && !is_safe(&method) && !same_origin(headers) {
            return Error::CrossSite.into_response();
        }
        // A same-origin form (one injected into a page by stored markup,
        // say) must not ride the session either: what a form can send
        // needs the session's token, which only the pages' script sends.
        // Sign-in and sign-out stay plain forms.
        if let Some(session) = session {
            let token = csrf_token(session);
            if method == Method::POST && !path.starts_with("/auth/") && form_encoded(headers) {
                let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
                if sent.is_empty() {
                    return Error::CsrfTokenMissing.into_response();
                }
                if !constant_time_eq(sent.as_bytes(), token.as_bytes()) {
                    return Error::SessionChanged.into_response();
                }
            }
            csrf = Some(token);
        }
        match session {
            Some(value) => match accounts::session_viewer(&auth.pool, value).await {
                Ok(viewer) => viewer,
                Err(err) => return err.into_response(),
            },
            None => None,
        }
    };

    match (&viewer, access) {
        (_, Access::Public) => {}
        (None, _) if wants_problem(&path) => return Error::Unauthenticated.into_response(),
        (None, _) => {
            let next = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            return Redirect::to(&format!("/login?next={}", urlencoding(next))).into_response();
        }
        (Some(viewer), access) if !viewer.may(access) => {
            let refusal = Error::Forbidden(viewer.role.as_str());
            if wants_problem(&path) {
                return refusal.into_response();
            }
            return forbidden_page(&refusal.to_string());
        }
        _ => {}
    }
    // Server functions read their whole body before anything can answer: one
    // over the limit is refused here, as the REST API does, rather than
    // failing inside the framework with a 500. (They would buffer it anyway.)
    if path.starts_with("/fn/") {
        let (parts, body) = request.into_parts();
        match axum::body::to_bytes(body, crate::error::MAX_BODY_BYTES).await {
            Ok(bytes) => request = Request::from_parts(parts, axum::body::Body::from(bytes)),
            Err(_) => return Error::PayloadTooLarge.into_response(),
        }
    }
    if let Some(viewer) = viewer {
        request.extensions_mut().insert(viewer);
        if let Some(token) = csrf {
            request.extensions_mut().insert(app::auth::CsrfToken(token));
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn forbidden_page(message: &str) -> Response {
    let body = format!("<p>{}</p><p><a href=\"/inbox\">Go to your task inbox</a></p>", app::core::merge::escape_html(message));
    html_page(axum::http::StatusCode::FORBIDDEN, "Not allowed", &body)
}

/// A bare page for answers given before the app can render (refusals):
/// `title` is plain text, `body` trusted HTML.
pub fn html_page(status: axum::http::StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Waymark</title>\
         <link rel=\"stylesheet\" href=\"/pkg/waymark.css\"></head><body><main class=\"page\"><h1>{title}</h1>{body}</main></body></html>"
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // No script, only our stylesheet (the app-wide default allows nothing).
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    response
}

/// Percent-encodes a local path for a query value.
pub fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A `next` target we may send someone to after sign-in: a path on this
/// site only (never `//evil.example` or a full URL).
pub fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path,
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn same_origin_needs_fetch_metadata_or_a_matching_origin() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site"), ("origin", "http://a.test"), ("host", "a.test")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[("origin", "http://127.0.0.1:3000"), ("host", "127.0.0.1:3000")])));
        assert!(!same_origin(&headers(&[("origin", "http://evil.test"), ("host", "127.0.0.1:3000")])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "127.0.0.1:3000")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:3000")])), "no evidence is no pass");
    }

    #[test]
    fn policy_matches_method_and_path() {
        let policy = Policy::new([
            (Method::GET, "/api/v1/flows".to_owned(), Access::Marketer),
            (Method::POST, "/api/v1/flows".to_owned(), Access::Admin),
            (Method::GET, "/login".to_owned(), Access::Public),
            (Method::GET, "/flows/{id}".to_owned(), Access::Marketer),
        ]);
        assert_eq!(policy.access(&Method::GET, "/api/v1/flows"), Ok(Access::Marketer));
        assert_eq!(policy.access(&Method::HEAD, "/api/v1/flows"), Ok(Access::Marketer));
        assert_eq!(policy.access(&Method::POST, "/api/v1/flows"), Ok(Access::Admin));
        assert_eq!(policy.access(&Method::GET, "/flows/7"), Ok(Access::Marketer));
        assert_eq!(policy.access(&Method::DELETE, "/flows/7"), Err(NoRoute::Method));
        assert_eq!(policy.access(&Method::GET, "/nowhere"), Err(NoRoute::Unknown), "unknown is refused, not signed-in");
        assert_eq!(policy.access(&Method::GET, "/FLOWS/7"), Err(NoRoute::Unknown));
    }

    #[test]
    fn every_spelling_of_a_path_comes_to_one_or_is_refused() {
        use PathForm::*;
        assert_eq!(canonical_path("/admin/users"), Canonical);
        assert_eq!(canonical_path("/"), Canonical);
        assert_eq!(canonical_path("/admin/users/"), Alias("/admin/users".into()));
        assert_eq!(canonical_path("//admin//users"), Alias("/admin/users".into()));
        assert_eq!(canonical_path("/contacts/2/edit/"), Alias("/contacts/2/edit".into()));
        assert_eq!(canonical_path("//"), Alias("/".into()));
        for refused in [
            "/admin/%75sers",
            "/admin%2Fusers",
            "/admin%2fusers",
            "/contacts/2%2Fedit",
            "/participants/1/../../admin/users",
            "/participants/%2e%2e",
            "/admin/./users",
            "/admin\\users",
            "/inbox%00",
            "admin/users",
        ] {
            assert_eq!(canonical_path(refused), Refused, "{refused}");
        }
        // The API takes encoded names in its paths; the policy sees them raw, as axum does.
        assert_eq!(canonical_path("/api/v1/lists/My%20list"), Canonical);
        assert_eq!(canonical_path("/api/v1/lists/a%2Fb"), Refused);
    }

    #[test]
    fn cookies_and_targets() {
        let h = headers(&[("cookie", "a=1; waymark_session=abc; b=2")]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(local_target(Some("/flows/3")), "/flows/3");
        assert_eq!(local_target(Some("//evil.test")), "/");
        assert_eq!(local_target(Some("https://evil.test")), "/");
        assert_eq!(local_target(Some("/\\evil.test")), "/");
        assert_eq!(urlencoding("/flows/1?x=a b"), "/flows/1%3Fx%3Da%20b");
    }
}
