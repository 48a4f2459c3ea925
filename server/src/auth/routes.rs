//! Sign in, sign out, and the one-time set-up of the first admin. Plain
//! HTML form posts, so they work before (and without) the page's wasm.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use app::auth::{Access, Role};

use super::accounts::{self, SESSION_LIFETIME};
use super::{client_address, cookie, local_target, urlencoding, Auth, Endpoint, SESSION_COOKIE};
use crate::audit;
use crate::error::{Error, Result};
use crate::AppState;

/// The routes of this module, with their access (all public: they are how
/// one gets in).
pub fn endpoints() -> Vec<(Method, &'static str, Access)> {
    vec![
        (Method::POST, "/auth/login", Access::Public),
        (Method::POST, "/auth/logout", Access::Public),
        (Method::POST, "/auth/setup", Access::Public),
    ]
}

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/auth/login", axum::routing::post(sign_in))
        .route("/auth/logout", axum::routing::post(sign_out))
        .route("/auth/setup", axum::routing::post(set_up))
}

fn session_cookie(auth: &Auth, value: &str, max_age: i64) -> HeaderValue {
    let secure = if auth.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"))
        .expect("cookie values are URL-safe")
}

fn signed_in(auth: &Auth, value: &str, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(auth, value, SESSION_LIFETIME.as_secs()));
    response
}

#[derive(Deserialize)]
struct SignIn {
    email: String,
    password: String,
    next: Option<String>,
}

async fn sign_in(State(auth): State<Auth>, request: Request) -> Result<Response> {
    let address = client_address(&request);
    let Form(form): Form<SignIn> = Form::from_request(request, &()).await?;
    let email = form.email.trim().to_lowercase();
    let next = local_target(form.next.as_deref());
    let allowed = match auth.limits.sign_in_per_address.check(&auth.pool, &address).await? {
        Ok(()) => auth.limits.sign_in_per_email.check(&auth.pool, &email).await?,
        refused => refused,
    };
    if let Err(wait) = allowed {
        audit::record(&auth.pool, &email, "user.sign_in_throttled", &email, &address).await?;
        return Ok(throttled_page(wait));
    }
    match accounts::verify(&auth.pool, &email, &form.password).await? {
        Some(user) => {
            // The flows list is not an agent's: their home is the inbox.
            let next = if user.role == Role::Agent && next == "/" { "/inbox" } else { next };
            let value = accounts::open_session(&auth.pool, user.id).await?;
            audit::record(&auth.pool, &user.email, "user.signed_in", &user.email, &address).await?;
            Ok(signed_in(&auth, &value, next))
        }
        None => {
            audit::record(&auth.pool, &email, "user.sign_in_failed", &email, &address).await?;
            Ok(Redirect::to(&format!("/login?error=invalid&next={}", urlencoding(next))).into_response())
        }
    }
}

async fn sign_out(State(auth): State<Auth>, request: Request) -> Result<Response> {
    if let Some(value) = cookie(request.headers(), SESSION_COOKIE) {
        accounts::close_session(&auth.pool, value).await?;
    }
    let mut response = Redirect::to("/login?signed_out=1").into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&auth, "", 0));
    Ok(response)
}

#[derive(Deserialize)]
struct SetUp {
    email: String,
    name: String,
    password: String,
    confirm: String,
}

/// Creates the first admin, once: afterwards admins add users. A refusal
/// goes back to the form with the reason.
async fn set_up(State(auth): State<Auth>, Form(form): Form<SetUp>) -> Response {
    match create_first_admin(&auth, form).await {
        Ok(response) => response,
        Err(err) if err.status().is_client_error() => {
            Redirect::to(&format!("/setup?error={}", urlencoding(&err.public_message()))).into_response()
        }
        Err(err) => err.into_response(),
    }
}

async fn create_first_admin(auth: &Auth, form: SetUp) -> Result<Response> {
    if form.password != form.confirm {
        return Err(Error::Invalid { code: "passwords_differ", message: "The two passwords differ.".into() });
    }
    let Some(admin) = accounts::add_first_admin(&auth.pool, &form.email, &form.name, &form.password).await? else {
        return Err(Error::Conflict { code: "already_set_up", message: "Waymark already has an admin; sign in instead.".into() });
    };
    let value = accounts::open_session(&auth.pool, admin.id).await?;
    let detail = format!("role {} (first admin, set-up page)", Role::Admin.as_str());
    audit::record(&auth.pool, &admin.email, "user.created", &admin.email, &detail).await?;
    Ok(signed_in(auth, &value, "/"))
}

/// Too many sign-in attempts: 429 with Retry-After, as a readable page
/// (the form is posted by a browser).
pub fn throttled_page(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let body = format!("<p>Wait {seconds} second(s), then <a href=\"/login\">try again</a>.</p>");
    let mut response = super::html_page(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", &body);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

use axum::extract::FromRequest;

impl From<axum::extract::rejection::FormRejection> for Error {
    fn from(rejection: axum::extract::rejection::FormRejection) -> Self {
        Error::BadBody { status: rejection.status(), code: "invalid_form", message: rejection.body_text() }
    }
}

/// Every route with its access: the REST endpoints, the pages, the server
/// functions, sign-in, and the static files. Panics if a page or a server
/// function has no rule, so a forgotten one stops the server from starting.
pub fn policy(api: &[Endpoint], pages: &[String]) -> super::Policy {
    let mut routes: Vec<(Method, String, Access)> = Vec::new();
    for endpoint in api {
        routes.push((endpoint.method.clone(), format!("/api/v1{}", endpoint.path), endpoint.access));
    }
    for page in pages {
        let access = app::auth::page_access(page).unwrap_or_else(|| panic!("page {page} has no rule in app::auth::PAGES"));
        routes.push((Method::GET, page.clone(), access));
    }
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        let access =
            app::auth::server_fn_access(path).unwrap_or_else(|| panic!("server function {path} has no rule in app::auth::SERVER_FNS"));
        routes.push((method, path.to_owned(), access));
    }
    for (method, path, access) in endpoints().into_iter().chain(crate::channels::tracking::routes::endpoints()) {
        routes.push((method, path.to_owned(), access));
    }
    for (path, access) in app::auth::PROBES {
        routes.push((Method::GET, (*path).to_owned(), *access));
    }
    routes.push((Method::GET, "/pkg/{*file}".to_owned(), Access::Public));
    routes.push((Method::GET, "/favicon.svg".to_owned(), Access::Public));
    super::Policy::new(routes)
}
