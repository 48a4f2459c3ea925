//! Sign-in, roles, CSRF, tokens, rate limits, audit and headers, through
//! the whole axum stack on a real SQLite file. The role × route matrix is
//! generated from the same tables the router is built from.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use app::auth::{Access, Role};
use server::auth::{accounts, Limits};
use server::runtime::{Runtime, SystemClock};
use server::store::{self, Store};
use server::{leptos_options, router, AppState};

mod support;

const HOST: &str = "waymark.test";
const PASSWORD: &str = "correct horse battery staple";

struct App {
    app: Router,
    store: Store,
    runtime: Runtime,
    _db: support::TestDb,
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

/// How a request proves who it is.
#[derive(Clone, Debug)]
enum Caller {
    Anonymous,
    Session(String),
    Token(String),
}

impl App {
    async fn with_limits(limits: Limits) -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = support::TestDb::new(dir.path()).await;
        let store = Store::new(store::connect(&db.url).await.unwrap());
        let runtime = Runtime::new(store.pool().clone(), Arc::new(SystemClock), "test");
        let mut state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), store.clone(), runtime.clone());
        state.configure().auth.limits = Arc::new(limits);
        App { app: router(state), store, runtime, _db: db, _dir: dir }
    }

    async fn new() -> App {
        App::with_limits(Limits::default()).await
    }

    /// The same database served by a second process, with limits of its own making.
    fn another_process(mut self, limits: Limits) -> App {
        let mut state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), self.store.clone(), self.runtime.clone());
        state.configure().auth.limits = Arc::new(limits);
        self.app = router(state);
        self
    }

    async fn request(&self, caller: &Caller, method: Method, uri: &str, body: Option<(&str, Vec<u8>)>, extra: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder().method(method).uri(uri).header(header::HOST, HOST);
        match caller {
            Caller::Anonymous => {}
            Caller::Session(cookie) => {
                request = request.header(header::COOKIE, format!("waymark_session={cookie}"));
                // As the pages' script does; a test that plays a plain form says so.
                if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(server::auth::CSRF_HEADER)) {
                    request = request.header(server::auth::CSRF_HEADER, server::auth::csrf_token(cookie));
                }
            }
            Caller::Token(token) => request = request.header(header::AUTHORIZATION, format!("Bearer {token}")),
        }
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("origin") || k.eq_ignore_ascii_case("sec-fetch-site")) {
            request = request.header(header::ORIGIN, format!("http://{HOST}"));
        }
        for (k, v) in extra.iter().filter(|(_, v)| !v.is_empty()) {
            request = request.header(*k, *v);
        }
        let request = match body {
            Some((content_type, bytes)) => request.header(header::CONTENT_TYPE, content_type).body(Body::from(bytes)).unwrap(),
            None => request.body(Body::empty()).unwrap(),
        };
        // A route that never answers fails here, named, instead of hanging the suite.
        let what = format!("{} {uri} as {caller:?}", request.method());
        let answer = async {
            let response = self.app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            (status, headers, response.into_body().collect().await.unwrap().to_bytes())
        };
        let (status, headers, bytes) =
            tokio::time::timeout(std::time::Duration::from_secs(60), answer).await.unwrap_or_else(|_| panic!("{what}: no answer within 60 s"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text }
    }

    async fn json(&self, caller: &Caller, method: Method, uri: &str, body: Value) -> Reply {
        self.request(caller, method, uri, Some(("application/json", serde_json::to_vec(&body).unwrap())), &[]).await
    }

    async fn get(&self, caller: &Caller, uri: &str) -> Reply {
        self.request(caller, Method::GET, uri, None, &[]).await
    }

    async fn sign_in(&self, email: &str, password: &str) -> Reply {
        let form = format!("email={}&password={}&next=%2Fflows%2F1", email.replace('@', "%40"), password.replace(' ', "+"));
        self.request(&Caller::Anonymous, Method::POST, "/auth/login", Some(("application/x-www-form-urlencoded", form.into_bytes())), &[])
            .await
    }

    /// Adds a user with `role` and signs them in.
    async fn user(&self, email: &str, role: Role) -> Caller {
        accounts::add_user(self.store.pool(), email, "", role, PASSWORD).await.unwrap();
        let reply = self.sign_in(email, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text);
        let cookie = reply.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        Caller::Session(cookie.trim_start_matches("waymark_session=").split(';').next().unwrap().to_owned())
    }
}

fn problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/problem+json", "{}", reply.text);
    assert_eq!(reply.body["code"], code, "{}", reply.text);
}

/// A concrete address for a route pattern: ids that do not exist, so an
/// allowed request finds nothing to change.
fn concrete(pattern: &str) -> String {
    pattern.replace("{id}", "999999").replace("{number}", "1").replace("{name}", "matrix-group").replace("{*file}", "waymark.css")
}

/// Refused by the guard (not by the handler, e.g. a bad download signature).
fn refused_by_policy(reply: &Reply) -> bool {
    match reply.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let code = reply.body["code"].as_str().unwrap_or("forbidden");
            ["unauthenticated", "invalid_token", "forbidden", "read_only_token", "cross_site_request"].contains(&code)
        }
        _ => false,
    }
}

fn allowed(role: Option<Role>, access: Access) -> bool {
    match role {
        None => access == Access::Public,
        Some(role) => role.may(access),
    }
}

#[tokio::test]
async fn every_route_refuses_every_role_it_should() {
    let app = App::new().await;
    let admin = app.user("admin@x.test", Role::Admin).await;
    let marketer = app.user("marketer@x.test", Role::Marketer).await;
    let agent = app.user("agent@x.test", Role::Agent).await;
    let callers = [(None, Caller::Anonymous), (Some(Role::Agent), agent), (Some(Role::Marketer), marketer), (Some(Role::Admin), admin)];
    let mut checked = 0;

    // REST endpoints, from the list the router is built from.
    for endpoint in server::api_endpoints() {
        let uri = format!("/api/v1{}", concrete(endpoint.path));
        for (role, caller) in &callers {
            let body = (endpoint.method != Method::GET && endpoint.method != Method::DELETE).then(|| ("application/json", b"{}".to_vec()));
            let reply = app.request(caller, endpoint.method.clone(), &uri, body, &[]).await;
            let expected = allowed(*role, endpoint.access);
            let refused = refused_by_policy(&reply);
            assert_eq!(!refused, expected, "{} {uri} as {role:?}: {} {}", endpoint.method, reply.status, reply.text);
            if refused {
                assert_eq!(reply.headers[header::CONTENT_TYPE], "application/problem+json");
            }
            checked += 1;
        }
    }
    // Pages, from the app's route list.
    for (pattern, access) in app::auth::PAGES {
        let uri = concrete(pattern);
        for (role, caller) in &callers {
            let reply = app.get(caller, &uri).await;
            match (allowed(*role, *access), role) {
                (true, _) => assert_eq!(reply.status, StatusCode::OK, "{uri} as {role:?}"),
                (false, None) => {
                    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{uri} anonymously");
                    assert!(reply.headers[header::LOCATION].to_str().unwrap().starts_with("/login?next="));
                }
                (false, Some(_)) => assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri} as {role:?}"),
            }
            checked += 1;
        }
    }
    // Server functions, as registered.
    let functions: Vec<_> = leptos::server_fn::axum::server_fn_paths().collect();
    assert!(functions.len() >= app::auth::SERVER_FNS.len(), "every listed server function is registered");
    for (path, method) in functions {
        let access = app::auth::server_fn_access(path).expect("the policy covers every server function");
        for (role, caller) in &callers {
            let body = Some(("application/x-www-form-urlencoded", Vec::new()));
            let reply = app.request(caller, method.clone(), path, body, &[]).await;
            let refused = refused_by_policy(&reply);
            assert_eq!(!refused, allowed(*role, access), "{path} as {role:?}: {} {}", reply.status, reply.text);
            checked += 1;
        }
    }
    println!("role × route matrix: {checked} checks (routes × 4 callers), all as expected");
    assert!(checked > 200, "{checked}");
}

#[tokio::test]
async fn api_tokens_are_hashed_scoped_and_revocable() {
    let app = App::new().await;
    let pool = app.store.pool();
    let (read, read_secret) = accounts::create_token(pool, "reporting", "read", "admin@x.test").await.unwrap();
    let (write, write_secret) = accounts::create_token(pool, "crm sync", "write", "admin@x.test").await.unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens").fetch_all(pool).await.unwrap();
    assert!(!stored.contains(&read_secret) && !stored.contains(&write_secret), "only digests are stored");

    let reader = Caller::Token(read_secret.clone());
    let writer = Caller::Token(write_secret.clone());
    assert_eq!(app.get(&reader, "/api/v1/flows").await.status, StatusCode::OK);
    problem(&app.json(&reader, Method::POST, "/api/v1/flows", json!({"name": "Nope"})).await, StatusCode::FORBIDDEN, "read_only_token");
    assert_eq!(app.json(&writer, Method::POST, "/api/v1/flows", json!({"name": "By token"})).await.status, StatusCode::CREATED);
    problem(&app.get(&writer, "/api/v1/audit").await, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.get(&writer, "/").await.status, StatusCode::FORBIDDEN, "tokens are for the API, not pages");
    // A token needs no Origin: it is not ambient like a cookie.
    let cross = app.request(&writer, Method::POST, "/api/v1/validate", Some(("application/json", b"{}".to_vec())), &[("origin", "https://evil.test")]).await;
    assert_eq!(cross.status, StatusCode::OK, "{}", cross.text);

    accounts::revoke_token(pool, write.id).await.unwrap();
    let refused = app.get(&writer, "/api/v1/flows").await;
    problem(&refused, StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(refused.headers.contains_key(header::WWW_AUTHENTICATE));
    problem(&app.get(&Caller::Token("wm_made_up".into()), "/api/v1/flows").await, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(app.get(&reader, "/api/v1/flows").await.status, StatusCode::OK, "revoking one token leaves the others");
    let used: Option<String> = sqlx::query_scalar("SELECT last_used_at FROM api_tokens WHERE id = $1").bind(read.id).fetch_one(pool).await.unwrap();
    assert!(used.is_some());
}

#[tokio::test]
async fn cross_site_requests_are_refused_and_change_nothing() {
    let app = App::new().await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    let flows = |reply: Reply| reply.body.as_array().map_or(0, Vec::len);
    let before = flows(app.get(&marketer, "/api/v1/flows").await);
    let json_body = || Some(("application/json", br#"{"name": "CSRF"}"#.to_vec()));
    let mut tried = 0;
    for headers in [
        vec![("origin", "https://evil.test")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site"), ("origin", "http://waymark.test")],
    ] {
        problem(&app.request(&marketer, Method::POST, "/api/v1/flows", json_body(), &headers).await, StatusCode::FORBIDDEN, "cross_site_request");
        tried += 1;
    }
    // A cross-site HTML form can only send simple content types.
    let text_plain = Some(("text/plain", br#"{"name": "CSRF"}"#.to_vec()));
    let reply = app.request(&marketer, Method::POST, "/api/v1/flows", text_plain.clone(), &[("origin", "https://evil.test")]).await;
    problem(&reply, StatusCode::FORBIDDEN, "cross_site_request");
    // Even from our own origin, JSON sent as text/plain is not read.
    let reply = app.request(&marketer, Method::POST, "/api/v1/flows", text_plain, &[]).await;
    problem(&reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // Server functions take forms: a cross-site form post is refused.
    let create = leptos::server_fn::axum::server_fn_paths().find(|(p, _)| p.contains("/create_flow")).unwrap().0;
    let form = Some(("application/x-www-form-urlencoded", b"name=CSRF".to_vec()));
    let reply = app.request(&marketer, Method::POST, create, form.clone(), &[("origin", "https://evil.test")]).await;
    problem(&reply, StatusCode::FORBIDDEN, "cross_site_request");
    // No Origin and no fetch metadata: no evidence, no write.
    let reply = app.request(&marketer, Method::POST, create, form.clone(), &[("sec-fetch-site", "none")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // Sign-in itself (login CSRF).
    let login = Some(("application/x-www-form-urlencoded", b"email=m%40x.test&password=x".to_vec()));
    problem(&app.request(&Caller::Anonymous, Method::POST, "/auth/login", login, &[("origin", "https://evil.test")]).await, StatusCode::FORBIDDEN, "cross_site_request");
    tried += 5;
    assert_eq!(flows(app.get(&marketer, "/api/v1/flows").await), before, "nothing was created");
    // The same form from our own page works.
    assert_eq!(app.request(&marketer, Method::POST, create, form, &[("sec-fetch-site", "same-origin")]).await.status, StatusCode::OK);
    println!("cross-site requests tried: {tried}, all refused");
}

#[tokio::test]
async fn sign_in_is_throttled_and_sessions_end() {
    let app = App::new().await;
    let agent = app.user("agent@x.test", Role::Agent).await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(app.store.pool()).await.unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains(PASSWORD));
    let Caller::Session(cookie) = &agent else { unreachable!() };
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_one(app.store.pool()).await.unwrap();
    assert_ne!(&stored, cookie, "the session table holds digests");

    // The first sign-in spent one of five attempts for this email.
    for _ in 0..4 {
        let reply = app.sign_in("agent@x.test", "wrong password!!").await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.headers[header::LOCATION], "/login?error=invalid&next=/flows/1");
        assert!(!reply.headers.contains_key(header::SET_COOKIE));
    }
    let throttled = app.sign_in("agent@x.test", PASSWORD).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    let wait: u64 = throttled.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(app.sign_in("other@x.test", "whatever password").await.status, StatusCode::SEE_OTHER, "per email");

    // Signing out ends the session; a disabled user's session ends too.
    assert_eq!(app.get(&agent, "/inbox").await.status, StatusCode::OK);
    let out = app.request(&agent, Method::POST, "/auth/logout", None, &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(app.get(&agent, "/inbox").await.status, StatusCode::SEE_OTHER);
    let marketer = app.user("m@x.test", Role::Marketer).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'm@x.test'").fetch_one(app.store.pool()).await.unwrap();
    app.user("a@x.test", Role::Admin).await;
    accounts::update_user(app.store.pool(), id, "M", Role::Marketer, true, None).await.unwrap();
    problem(&app.get(&marketer, "/api/v1/flows").await, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn the_first_admin_is_created_once() {
    let app = App::new().await;
    let form = |email: &str| {
        Some(("application/x-www-form-urlencoded", format!("email={email}&name=Ada&password=0123456789ab&confirm=0123456789ab").into_bytes()))
    };
    let first = app.request(&Caller::Anonymous, Method::POST, "/auth/setup", form("ada%40x.test"), &[]).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text);
    assert!(first.headers.contains_key(header::SET_COOKIE));
    let second = app.request(&Caller::Anonymous, Method::POST, "/auth/setup", form("eve%40x.test"), &[]).await;
    assert_eq!(second.status, StatusCode::SEE_OTHER);
    assert!(second.headers[header::LOCATION].to_str().unwrap().starts_with("/setup?error="));
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn enrollment_is_rate_limited() {
    let limits = Limits { enroll: server::auth::limit::Limiter::new("enroll", 2, 1), ..Limits::default() };
    let app = App::with_limits(limits).await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    for _ in 0..2 {
        let reply = app.json(&marketer, Method::POST, "/api/v1/flows/999999/enroll", json!({"contact_ids": []})).await;
        assert_ne!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    }
    // the limit is the database's: a second process does not grant more
    let limits = Limits { enroll: server::auth::limit::Limiter::new("enroll", 2, 1), ..Limits::default() };
    let app = app.another_process(limits);
    let reply = app.json(&marketer, Method::POST, "/api/v1/flows/999999/enroll", json!({"contact_ids": []})).await;
    problem(&reply, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(reply.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn a_shared_limit_lets_exactly_its_burst_through_requests_racing_for_it() {
    let app = App::new().await;
    let limiter = server::auth::limit::Limiter::new("race", 5, 1);
    let pool = app.store.pool();
    let verdicts = futures_util::future::join_all((0..20).map(|_| limiter.check(pool, "someone"))).await;
    let allowed = verdicts.into_iter().map(|v| v.unwrap()).filter(Result::is_ok).count();
    assert_eq!(allowed, 5, "each token taken once, however the requests interleave");
    assert!(limiter.check(pool, "someone else").await.unwrap().is_ok(), "keys are independent");
}

#[tokio::test]
async fn agents_see_only_their_own_tasks_and_participants() {
    let app = App::new().await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    let ann = app.user("ann@x.test", Role::Agent).await;
    let doc = json!({"format": "waymark.flow/v1", "name": "Calls",
        "steps": [{"id": "s", "kind": "start"}, {"id": "c", "kind": "call", "settings": {"owner": "record_owner"}}, {"id": "x", "kind": "exit"}],
        "edges": [{"from": "s", "port": "next", "to": "c"}, {"from": "c", "port": "next", "to": "x"}]});
    let flow = app.json(&marketer, Method::POST, "/api/v1/flows", json!({"document": doc})).await.body["id"].as_i64().unwrap();
    assert_eq!(app.request(&marketer, Method::POST, &format!("/api/v1/flows/{flow}/publish"), None, &[]).await.status, StatusCode::CREATED);
    let mut ids = Vec::new();
    for (email, owner) in [("c1@x.test", "ann@x.test"), ("c2@x.test", "bob@x.test")] {
        let contact = json!({"email": email, "mobile": "+15550100", "owner": owner});
        ids.push(app.json(&marketer, Method::POST, "/api/v1/contacts", contact).await.body["id"].as_i64().unwrap());
    }
    let enrolled = app.json(&marketer, Method::POST, &format!("/api/v1/flows/{flow}/enroll"), json!({"contact_ids": ids})).await;
    let participants: Vec<i64> = enrolled.body["enrolled"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    assert_eq!(participants.len(), 2, "{}", enrolled.text);

    app.runtime.tick().await.unwrap();
    // Ann's inbox, whatever owner she asks for.
    for uri in ["/api/v1/tasks", "/api/v1/tasks?owner=bob%40x.test"] {
        let tasks = app.get(&ann, uri).await.body;
        let tasks = tasks.as_array().unwrap();
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0]["participant_id"], participants[0]);
    }
    assert_eq!(app.get(&marketer, "/api/v1/tasks").await.body.as_array().unwrap().len(), 2);
    assert_eq!(app.get(&ann, &format!("/api/v1/participants/{}", participants[0])).await.status, StatusCode::OK);
    problem(&app.get(&ann, &format!("/api/v1/participants/{}", participants[1])).await, StatusCode::NOT_FOUND, "participant_not_found");
    problem(&app.get(&ann, &format!("/api/v1/contacts/{}", ids[1])).await, StatusCode::NOT_FOUND, "contact_not_found");
    let act = app.json(&ann, Method::POST, &format!("/api/v1/participants/{}/action", participants[1]), json!({"outcome": "completed"})).await;
    problem(&act, StatusCode::NOT_FOUND, "participant_not_found");
    assert_eq!(app.get(&marketer, &format!("/api/v1/participants/{}", participants[1])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn pages_carry_a_content_security_policy_they_satisfy() {
    let app = App::new().await;
    let admin = app.user("a@x.test", Role::Admin).await;
    let page = app.get(&admin, "/").await;
    let policy = page.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("object-src 'none'"), "{policy}");
    let nonce = policy.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(nonce.len() >= 16);
    // Every inline script carries this response's nonce.
    let scripts = page.text.matches("<script").count();
    assert!(scripts > 0);
    assert_eq!(page.text.matches(&format!("nonce=\"{nonce}\"")).count(), page.text.matches("<script").filter(|_| true).count(), "{}", page.text);
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let again = app.get(&admin, "/").await.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert_ne!(again, policy, "a fresh nonce per response");
    let api = app.get(&admin, "/api/v1/flows").await;
    assert!(api.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
}

#[tokio::test]
async fn stored_markup_is_rendered_inert() {
    let app = App::new().await;
    let admin = app.user("a@x.test", Role::Admin).await;
    let payloads = [
        "<svg onload=alert(1)>",
        "\"><img src=x onerror=alert(1)>",
        "javascript:alert(1)",
        "<script>alert(1)</script>",
        "</title><script>alert(1)</script>",
        "</script><script>alert(1)</script>",
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let name = format!("{payload} {i}");
        let created = app.json(&admin, Method::POST, "/api/v1/flows", json!({"name": name})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.body["id"].as_i64().unwrap();
        for uri in ["/".to_owned(), format!("/flows/{id}"), "/review".to_owned(), "/audit".to_owned()] {
            let page = app.get(&admin, &uri).await;
            assert_eq!(page.status, StatusCode::OK);
            for dangerous in ["<svg onload", "<img src=x", "<script>alert", "href=\"javascript:"] {
                if let Some(at) = page.text.find(dangerous) {
                    panic!("{uri} renders {dangerous} from {payload}: …{}…", &page.text[at.saturating_sub(300)..(at + 100).min(page.text.len())]);
                }
            }
        }
        let export = app.get(&admin, &format!("/api/v1/flows/{id}/export")).await;
        assert_eq!(export.headers[header::CONTENT_TYPE], "application/json");
        assert!(export.headers[header::CONTENT_DISPOSITION].to_str().unwrap().is_ascii());
    }
    println!("stored XSS payloads tried: {}, all rendered inert", payloads.len());
}

#[tokio::test]
async fn publishing_can_wait_for_an_admins_review_and_everything_is_audited() {
    let app = App::new().await;
    let admin = app.user("a@x.test", Role::Admin).await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    // An SMS of more than one segment is a warning, not an error.
    let doc = json!({"format": "waymark.flow/v1", "name": "Long SMS",
        "steps": [{"id": "s", "kind": "start"}, {"id": "t", "kind": "send_sms", "settings": {"text": "x".repeat(200)}}, {"id": "x", "kind": "exit"}],
        "edges": [{"from": "s", "port": "next", "to": "t"}, {"from": "t", "port": "next", "to": "x"}]});
    let flow = app.json(&marketer, Method::POST, "/api/v1/flows", json!({"document": doc})).await.body["id"].as_i64().unwrap();
    let warnings = app.request(&marketer, Method::POST, &format!("/api/v1/flows/{flow}/validate"), None, &[]).await.body["warnings"].clone();
    let warning = &warnings.as_array().expect("warnings")[0];
    server::admin::set_review_required(app.store.pool(), "a@x.test", true).await.unwrap();
    let refused = app.request(&marketer, Method::POST, &format!("/api/v1/flows/{flow}/publish"), None, &[]).await;
    problem(&refused, StatusCode::CONFLICT, "review_pending");

    let step = warning["step"].as_str().unwrap();
    let code = warning["code"].as_str().unwrap();
    server::admin::acknowledge(app.store.pool(), "a@x.test", flow, step, code, "Two segments are fine for this offer.").await.unwrap();
    assert_eq!(app.request(&marketer, Method::POST, &format!("/api/v1/flows/{flow}/publish"), None, &[]).await.status, StatusCode::CREATED);
    let page = app.get(&marketer, &format!("/flows/{flow}")).await;
    assert!(page.text.contains("Two segments are fine for this offer."), "marketers see the note on the step");

    let audit = app.get(&admin, "/api/v1/audit").await.body;
    let actions: Vec<(String, String)> =
        audit.as_array().unwrap().iter().map(|e| (e["actor"].as_str().unwrap().to_owned(), e["action"].as_str().unwrap().to_owned())).collect();
    for (actor, action) in [("m@x.test", "flow.created"), ("m@x.test", "flow.published"), ("a@x.test", "flow.warning_acknowledged"), ("a@x.test", "settings.review_required")] {
        assert!(actions.contains(&(actor.to_owned(), action.to_owned())), "{action} by {actor} in {actions:?}");
    }
}

/// The spellings of a path an attacker tries, with what each must get: a
/// trailing slash or doubled slashes send a browser to the one canonical
/// path (where the rule above applies); anything else is no route at all.
fn spellings(path: &str) -> Vec<(String, bool)> {
    let last = path.rfind('/').unwrap_or(0);
    let mut out = vec![
        (format!("{path}/"), true),
        (format!("/{path}"), true),
        (path.replacen('/', "//", 2).replacen("///", "//", 1), true),
        (path.to_uppercase(), false),
    ];
    // Percent-encode the last segment's first letter, and every slash after the first.
    if let Some(c) = path[last + 1..].chars().next().filter(char::is_ascii_alphabetic) {
        out.push((format!("{}%{:02X}{}", &path[..=last], c as u32, &path[last + 2..]), false));
    }
    if path.matches('/').count() > 1 {
        out.push((format!("/{}", path[1..].replace('/', "%2F")), false));
    }
    out.push((format!("{path}/%2e%2e/admin/users"), false));
    out.retain(|(variant, _)| variant != path);
    out
}

#[tokio::test]
async fn no_spelling_of_a_route_gets_past_its_rule() {
    let app = App::new().await;
    let admin = app.user("marker-admin@x.test", Role::Admin).await;
    let marketer = app.user("marketer@x.test", Role::Marketer).await;
    let agent = app.user("agent@x.test", Role::Agent).await;
    // Data that must not appear in anything an agent, a marketer or a
    // stranger is answered: another agent's contact, users, the audit log.
    let contact = json!({"email": "marker-contact@x.test", "owner": "someone-else@x.test", "fields": {"first_name": "Markerine"}});
    let id = app.json(&admin, Method::POST, "/api/v1/contacts", contact).await.body["id"].as_i64().unwrap();
    let callers = [(None, Caller::Anonymous), (Some(Role::Agent), agent), (Some(Role::Marketer), marketer)];
    let mut checked = 0;
    let pages = app::auth::PAGES.iter().map(|(pattern, _)| pattern.replace("{id}", &id.to_string()));
    let functions = leptos::server_fn::axum::server_fn_paths().map(|(path, _)| path.to_owned());
    for path in pages.chain(functions) {
        let is_page = !path.starts_with("/fn/");
        for (variant, alias) in spellings(&path) {
            for (role, caller) in &callers {
                let reply = if is_page {
                    app.get(caller, &variant).await
                } else {
                    app.request(caller, Method::POST, &variant, Some(("application/x-www-form-urlencoded", Vec::new())), &[]).await
                };
                let what = format!("{variant} (for {path}) as {role:?}: {}", reply.status);
                assert!(!reply.text.to_lowercase().contains("marker"), "{what} leaks data: {}", reply.text);
                if alias && is_page {
                    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT, "{what}");
                    assert_eq!(reply.headers[header::LOCATION], path.as_str(), "{what}");
                } else {
                    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{what} {}", reply.text);
                    assert!(!reply.text.contains("data-hydrated") && !reply.text.contains("<nav"), "{what}: the app rendered");
                }
                checked += 1;
            }
        }
    }
    // Unknown paths are refused to everyone, not allowed to the signed-in.
    for unknown in ["/nowhere", "/admin", "/contacts/1/delete", "/api/v1/nowhere", "/fn/not_a_function"] {
        for (role, caller) in &callers {
            let reply = app.get(caller, unknown).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{unknown} as {role:?}");
            checked += 1;
        }
    }
    // A declared route with another method is refused as such.
    problem(&app.request(&callers[2].1, Method::DELETE, "/api/v1/flows", None, &[]).await, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    println!("route spellings tried: {checked}, none got past its rule");
    assert!(checked > 500, "{checked}");
}

/// Every server function checks the role itself, in its body, as a page's
/// SSR calls it: directly, with no guard in front. A server function that
/// is in the table but not called here fails the test.
#[tokio::test]
async fn server_functions_check_the_role_themselves() {
    use app::{admin_api as admin, api, contacts_api as contacts, mailbox_api as mailbox, runtime_api as runtime};
    use leptos::prelude::provide_context;
    use leptos::reactive::computed::ScopedFuture;
    use leptos::reactive::owner::Owner;

    fn as_viewer(role: Option<Role>) -> Owner {
        let owner = Owner::new();
        let (mut parts, _) = axum::http::Request::new(()).into_parts();
        if let Some(role) = role {
            parts.extensions.insert(app::auth::Viewer { id: 1, email: "v@x.test".into(), name: "V".into(), role, token: false });
        }
        owner.with(|| provide_context(parts));
        owner
    }
    macro_rules! answers {
        ($role:expr; $($name:ident => $call:expr,)*) => {{
            let mut answers: Vec<(&str, Result<(), String>)> = Vec::new();
            $(
                let owner = as_viewer($role);
                let answer = owner.with(|| ScopedFuture::new(async { $call.await.map(|_| ()).map_err(|err| err.to_string()) })).await;
                answers.push((stringify!($name), answer));
            )*
            answers
        }};
    }
    let run = || async {
        let user = admin::UserForm { id: None, email: "e@x.test".into(), name: "E".into(), role: Role::Admin, disabled: false, password: "0123456789ab".into() };
        let test_run = runtime::TestRunRequest {
            document: "{}".into(),
            contact_id: None,
            sample: Default::default(),
            start: None,
            window: "1d".into(),
            manual_after: None,
            events: Vec::new(),
        };
        (user, test_run)
    };
    let mut checked = 0;
    for role in [None, Some(Role::Agent), Some(Role::Marketer)] {
        let (user, test_run) = run().await;
        let s = String::new;
        let answers = answers! { role;
            list_users => admin::list_users(),
            save_user => admin::save_user(user),
            list_tokens => admin::list_tokens(),
            create_token => admin::create_token(s(), s()),
            revoke_token => admin::revoke_token(1),
            list_audit => admin::list_audit(None),
            acknowledge_finding => admin::acknowledge_finding(1, s(), s(), s()),
            set_review_required => admin::set_review_required(None),
            integration_settings => admin::integration_settings(),
            save_integration => admin::save_integration(s(), s(), s(), None),
            save_smtp => admin::save_smtp(s(), 25, s(), s(), s(), s()),
            mailbox_settings => mailbox::mailbox_settings(),
            save_mailbox => mailbox::save_mailbox(Default::default()),
            save_email_webhook => mailbox::save_email_webhook(s(), None, None, None, None, None, None),
            poll_mailbox => mailbox::poll_mailbox(),
            save_dkim => admin::save_dkim(s(), s(), s(), s()),
            generate_dkim_key => admin::generate_dkim_key(s(), s(), s()),
            pressure_policy => app::pressure_api::pressure_policy(),
            save_pressure => app::pressure_api::save_pressure(s()),
            participant_conversations => app::conversations::participant_conversations(1),
            contact_conversations => app::conversations::contact_conversations(1),
            list_flows => api::list_flows(),
            create_flow => api::create_flow(s()),
            import_flow => api::import_flow(s()),
            get_flow => api::get_flow(1),
            rename_flow => api::rename_flow(1, s()),
            delete_flow => api::delete_flow(1),
            validation_review => api::validation_review(),
            save_draft => api::save_draft(1, 1, s()),
            publish_flow => api::publish_flow(1, 1),
            search_contacts => contacts::search_contacts(s(), s(), s()),
            get_contact_detail => contacts::get_contact_detail(1),
            save_contact => contacts::save_contact(None, s(), s(), s(), s(), s(), s()),
            change_contact_list => contacts::change_contact_list(1, s(), true),
            search_participants => contacts::search_participants(s(), 0),
            preview_bulk_action => contacts::preview_bulk_action(s()),
            start_bulk_action => contacts::start_bulk_action(s()),
            get_bulk_run => contacts::get_bulk_run(1),
            undo_bulk_run => contacts::undo_bulk_run(1),
            get_contact_import => contacts::get_contact_import(1),
            list_contact_imports => contacts::list_contact_imports(),
            list_tasks => runtime::list_tasks(None),
            list_task_owners => runtime::list_task_owners(),
            act_on_task => runtime::act_on_task(1, s(), None, None),
            get_participant => runtime::get_participant(1),
            test_run => runtime::test_run(test_run),
            flow_participants => runtime::flow_participants(1),
            migrate_participants => runtime::migrate_participants(1, s()),
            step_counts => runtime::step_counts(1),
            get_flow_report => app::report_api::get_flow_report(1, None, None),
            choose_branch => app::report_api::choose_branch(1, s(), None),
            home_dashboard => app::dashboard_api::home_dashboard(),
            retry_participant => runtime::retry_participant(1),
            my_queue => app::workspace_api::my_queue(),
            workspace_task => app::workspace_api::workspace_task(1),
            send_task_email => app::workspace_api::send_task_email(Default::default()),
            preview_email => app::workspace_api::preview_email(s()),
            send_task_sms => app::workspace_api::send_task_sms(1, s(), s()),
            place_task_call => app::workspace_api::place_task_call(1),
            task_call => app::workspace_api::task_call(1),
            finish_task => app::workspace_api::finish_task(1, s(), None, None, None),
            contact_thread => app::workspace_api::contact_thread(1),
            list_templates => app::workspace_api::list_templates(None),
            save_template => app::workspace_api::save_template(Default::default()),
            delete_template => app::workspace_api::delete_template(1),
            my_phone => app::workspace_api::my_phone(),
            save_my_phone => app::workspace_api::save_my_phone(s()),
            flow_task_owners => app::workspace_api::flow_task_owners(),
            set_flow_task_owner => app::workspace_api::set_flow_task_owner(1, None),
        };
        let called: std::collections::BTreeSet<&str> = answers.iter().map(|(name, _)| *name).collect();
        let listed: std::collections::BTreeSet<&str> =
            app::auth::SERVER_FNS.iter().filter(|(_, access)| *access != Access::Public).map(|(name, _)| *name).collect();
        assert_eq!(called, listed, "every non-public server function is called here");
        for (name, answer) in answers {
            let access = app::auth::SERVER_FNS.iter().find(|(n, _)| *n == name).unwrap().1;
            let expected = match role {
                None => Some(app::auth::UNAUTHENTICATED),
                Some(role) if !role.may(access) => Some(app::auth::FORBIDDEN),
                Some(_) => None,
            };
            match (expected, &answer) {
                (Some(refusal), Err(err)) => assert!(err.contains(refusal), "{name} as {role:?}: {err}"),
                (Some(_), Ok(())) => panic!("{name} as {role:?} ran"),
                // Allowed: it went on to its work (here without a backend, so it fails there).
                (None, Err(err)) => assert!(!err.contains(app::auth::FORBIDDEN) && !err.contains(app::auth::UNAUTHENTICATED), "{name} as {role:?}: {err}"),
                (None, Ok(())) => {}
            }
            checked += 1;
        }
    }
    println!("server functions called directly: {checked} checks, each refused in its own body where it should be");
}

/// A same-origin form, such as one stored markup could inject into a page,
/// cannot ride the session: it has no way to send the session's token.
#[tokio::test]
async fn an_injected_form_cannot_ride_the_session() {
    let app = App::new().await;
    let admin = app.user("a@x.test", Role::Admin).await;
    let Caller::Session(cookie) = &admin else { unreachable!() };
    let save_user = leptos::server_fn::axum::server_fn_paths().find(|(p, _)| p.contains("/save_user")).unwrap().0;
    let form = "user[email]=evil%40x.test&user[name]=Evil&user[role]=admin&user[disabled]=false&user[password]=0123456789ab";
    let users = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users").fetch_one(app.store.pool()).await.unwrap() };
    let before = users().await;
    for (content_type, token, code) in [
        ("application/x-www-form-urlencoded", "", "csrf_token_missing"),
        ("application/x-www-form-urlencoded", "forged", "session_changed"),
        ("multipart/form-data; boundary=x", "", "csrf_token_missing"),
        ("text/plain", "", "csrf_token_missing"),
    ] {
        let headers = [("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"), (server::auth::CSRF_HEADER, token)];
        let reply = app.request(&admin, Method::POST, save_user, Some((content_type, form.as_bytes().to_vec())), &headers).await;
        problem(&reply, StatusCode::FORBIDDEN, code);
    }
    // The token of another session (a page loaded before signing in
    // again) is no better, and says so.
    let other = server::auth::csrf_token("someone else's session");
    let headers = [(server::auth::CSRF_HEADER, other.as_str())];
    let reply = app.request(&admin, Method::POST, save_user, Some(("application/x-www-form-urlencoded", form.as_bytes().to_vec())), &headers).await;
    problem(&reply, StatusCode::FORBIDDEN, "session_changed");
    assert!(reply.text.contains("Reload the page"), "{}", reply.text);
    assert_eq!(users().await, before, "no user was made");
    // The page carries the token its script sends; with it the same call works.
    let page = app.get(&admin, "/admin/users").await;
    let document = scraper::Html::parse_document(&page.text);
    let meta = scraper::Selector::parse("meta[name=waymark-csrf]").unwrap();
    let token = document.select(&meta).next().expect("the page carries the token").value().attr("content").unwrap().to_owned();
    assert_eq!(token, server::auth::csrf_token(cookie));
    let reply = app.request(&admin, Method::POST, save_user, Some(("application/x-www-form-urlencoded", form.as_bytes().to_vec())), &[(server::auth::CSRF_HEADER, &token)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(users().await, before + 1);
}

/// Over-large server function calls get the REST API's 413 problem.
#[tokio::test]
async fn an_over_large_server_function_call_is_413() {
    let app = App::new().await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    let create = leptos::server_fn::axum::server_fn_paths().find(|(p, _)| p.contains("/create_flow")).unwrap().0;
    let body = format!("name={}", "x".repeat(server::error::MAX_BODY_BYTES + 10));
    let reply = app.request(&marketer, Method::POST, create, Some(("application/x-www-form-urlencoded", body.into_bytes())), &[]).await;
    problem(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

/// A payload for stored text, numbered so a finding names its field: it
/// tries to leave a textarea, a title, and both kinds of quoted attribute,
/// then to add an element with a handler, a form aimed at an admin-only
/// server function, and a merge tag.
fn payload(n: usize) -> String {
    format!("</textarea></title>\"'><b id=inj-{n} onmouseover=alert({n})>{{{{ first_name }}}}<form action=/fn/save_user id=injf-{n}>")
}

/// What of a parsed page came from a payload: elements carrying its ids,
/// handlers, forms aimed at server functions.
fn injected(html: &str) -> Vec<String> {
    let document = scraper::Html::parse_document(html);
    let mut found = Vec::new();
    for element in document.root_element().descendants().filter_map(scraper::ElementRef::wrap) {
        let value = element.value();
        if value.id().is_some_and(|id| id.starts_with("inj")) {
            found.push(format!("<{} id={}>", value.name(), value.id().unwrap_or_default()));
        }
        for (name, attr) in value.attrs() {
            if name.starts_with("on") {
                found.push(format!("<{} {name}={attr}>", value.name()));
            }
        }
        // The app's own forms post to `/fn/name<hash>`; the payload's has no hash.
        if value.name() == "form" && value.attr("action") == Some("/fn/save_user") {
            found.push(format!("<form action={}>", value.attr("action").unwrap_or_default()));
        }
    }
    found
}

/// The payload numbers a page shows as text (in text nodes or attribute
/// values, where the parser put them as data).
fn shown(html: &str) -> Vec<usize> {
    let document = scraper::Html::parse_document(html);
    let mut text: String = document.root_element().text().collect();
    for element in document.root_element().descendants().filter_map(scraper::ElementRef::wrap) {
        for (_, value) in element.value().attrs() {
            text.push_str(value);
        }
    }
    (1..=40).filter(|n| text.contains(&format!("id=inj-{n} onmouseover"))).collect()
}

#[tokio::test]
async fn stored_payloads_in_every_field_render_as_text() {
    let app = App::new().await;
    let admin = app.user("a@x.test", Role::Admin).await;
    let pool = app.store.pool().clone();
    let mut stored = std::collections::BTreeMap::new();
    let mut next = 0;
    let mut take = |what: &str| {
        next += 1;
        stored.insert(next, what.to_owned());
        payload(next)
    };
    // A contact: custom fields, owner, list, email's local part.
    let contact = json!({
        "email": format!("x{}@x.test", "\"'><b/id=inj-e>"),
        "owner": take("contact owner"),
        "fields": {"first_name": take("contact field first_name"), "city": take("contact field city")},
        "lists": [take("list name")],
    });
    let created = app.json(&admin, Method::POST, "/api/v1/contacts", contact).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let contact = created.body["id"].as_i64().unwrap();
    // A flow: its name, a step's name, an email's subject and body, a task's title.
    let flow_name = take("flow name");
    let doc = json!({"format": "waymark.flow/v1", "name": flow_name,
        "steps": [{"id": "s", "kind": "start"},
                  {"id": "m", "kind": "send_email", "name": take("step name"), "settings": {"subject": take("email subject"), "body": take("email body")}},
                  {"id": "t", "kind": "task", "name": take("task step name"), "settings": {"owner": "record_owner", "title": take("task title")}},
                  {"id": "x", "kind": "exit"}],
        "edges": [{"from": "s", "port": "next", "to": "m"}, {"from": "m", "port": "next", "to": "t"}, {"from": "t", "port": "next", "to": "x"}]});
    let created = app.json(&admin, Method::POST, "/api/v1/flows", json!({"document": doc})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let flow = created.body["id"].as_i64().unwrap();
    // People and settings: a user's name, a token's name, an admin's note, the SMTP sender.
    accounts::add_user(&pool, "agent@x.test", &take("user name"), Role::Agent, PASSWORD).await.unwrap();
    accounts::create_token(&pool, &take("token name"), "read", "a@x.test").await.unwrap();
    server::admin::acknowledge(&pool, "a@x.test", flow, "m", "x", &take("acknowledgement note")).await.unwrap();
    let smtp = json!({"smtp": {"host": "smtp.example.test", "port": 587, "tls": "starttls", "username": take("smtp user name"), "from": "news@x.test"}});
    let saved = app.json(&admin, Method::PUT, "/api/v1/settings/integrations", smtp).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    // A CSV import: a custom field, a list, the file's name, and a refused
    // row (shown only in the refused rows' CSV, so not counted below).
    let csv = format!("email,plan,lists\nimported@x.test,\"{}\",\"{}\"\n\"{}\",,\n", take("imported field").replace('"', "\"\""), take("imported list").replace('"', "\"\""), payload(99).replace('"', "\"\""));
    let file_name = take("import file name").replace('"', "'");
    let boundary = "XyZzy-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n{{}}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    let upload = app.request(&admin, Method::POST, "/api/v1/contacts/imports", Some((&format!("multipart/form-data; boundary={boundary}"), body.into_bytes())), &[]).await;
    assert_eq!(upload.status, StatusCode::ACCEPTED, "{}", upload.text);
    let import = upload.body["id"].as_i64().unwrap();
    for _ in 0..200 {
        let job = app.get(&admin, &format!("/api/v1/contacts/imports/{import}")).await.body;
        if job["status"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The participant, for its timeline and the inbox.
    assert_eq!(app.request(&admin, Method::POST, &format!("/api/v1/flows/{flow}/publish"), None, &[]).await.status, StatusCode::CREATED);
    let enrolled = app.json(&admin, Method::POST, &format!("/api/v1/flows/{flow}/enroll"), json!({"contact_ids": [contact]})).await;
    let participant = enrolled.body["enrolled"][0].as_i64().unwrap();
    app.runtime.tick().await.unwrap();

    let imported: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE email = 'imported@x.test'").fetch_one(&pool).await.unwrap();
    let pages = [
        format!("/contacts/{imported}"),
        format!("/contacts/{imported}/edit"),
        "/".to_owned(),
        format!("/flows/{flow}"),
        format!("/flows/{flow}/participants"),
        "/review".into(),
        "/audit".into(),
        "/admin/users".into(),
        "/admin/tokens".into(),
        "/admin/integrations".into(),
        "/admin/pressure".into(),
        "/contacts".into(),
        format!("/contacts/{contact}"),
        format!("/contacts/{contact}/edit"),
        "/contacts/import".into(),
        "/participants".into(),
        format!("/participants/{participant}"),
        "/inbox".into(),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for uri in &pages {
        let page = app.get(&admin, uri).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        let found = injected(&page.text);
        assert!(found.is_empty(), "{uri} has markup from stored text: {found:?}");
        let here = shown(&page.text);
        println!("{uri}: shows payloads {here:?} as text");
        seen.extend(here);
    }
    // Each payload reached at least one page (as text), so the check above
    // looked at it; a field no page shows would make this test prove nothing.
    let unseen: Vec<_> = stored.iter().filter(|(n, _)| !seen.contains(n)).map(|(_, what)| what.as_str()).collect();
    assert!(unseen.is_empty(), "never rendered: {unseen:?}");
    println!("{} stored payloads on {} pages, parsed: all text, no markup", stored.len(), pages.len());
}

#[tokio::test]
async fn stored_text_over_its_limit_is_refused_with_the_field_named() {
    let app = App::new().await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    let huge = "x".repeat(1_900_000);
    let too_long = |reply: &Reply, field: &str| {
        problem(reply, StatusCode::UNPROCESSABLE_ENTITY, if field == "name" && reply.body["code"] == "invalid_document" { "invalid_document" } else { "too_long" });
        assert_eq!(reply.body["field"].as_str().or(reply.body["path"].as_str()), Some(field), "{}", reply.text);
    };
    too_long(&app.json(&marketer, Method::POST, "/api/v1/flows", json!({"name": huge})).await, "name");
    let doc = json!({"format": "waymark.flow/v1", "name": "ok", "steps": [{"id": "s", "kind": "start", "name": "x".repeat(201)}], "edges": []});
    let reply = app.json(&marketer, Method::POST, "/api/v1/flows", json!({"document": doc})).await;
    problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    assert_eq!(reply.body["path"], "steps[0].name", "{}", reply.text);
    too_long(&app.json(&marketer, Method::POST, "/api/v1/contacts", json!({"email": "a@x.test", "fields": {"bio": huge}})).await, "fields.bio");
    let local = format!("{}@x.test", "a".repeat(1_000_000));
    too_long(&app.json(&marketer, Method::POST, "/api/v1/contacts", json!({"email": local})).await, "email");
    too_long(&app.json(&marketer, Method::POST, "/api/v1/contacts", json!({"email": format!("{}@x.test", "a".repeat(65))})).await, "email's local part");
    too_long(&app.json(&marketer, Method::POST, "/api/v1/contacts", json!({"email": "b@x.test", "lists": ["l".repeat(201)]})).await, "a list's name");
    let flows: i64 = sqlx::query_scalar("SELECT count(*) FROM flows").fetch_one(app.store.pool()).await.unwrap();
    let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!((flows, contacts), (0, 0), "nothing was stored");
    // At the limit is fine.
    let at_limit = app.json(&marketer, Method::POST, "/api/v1/flows", json!({"name": "é".repeat(200)})).await;
    assert_eq!(at_limit.status, StatusCode::CREATED, "{}", at_limit.text);
}

#[tokio::test]
async fn a_nul_or_markup_in_a_criteria_field_name_is_refused_not_run() {
    let app = App::new().await;
    let marketer = app.user("m@x.test", Role::Marketer).await;
    for field in ["first\u{0}name", "a\"b", "x') OR 1=1 --", "a.b", "$x", &"f".repeat(65)] {
        let criteria = json!({"contact": [{"field": field, "value": "x"}]});
        for (uri, body) in [
            ("/api/v1/participants/bulk/preview", json!({"action": "cancel", "criteria": criteria})),
            ("/api/v1/participants/export.csv", criteria.clone()),
        ] {
            let reply = app.json(&marketer, Method::POST, uri, body).await;
            problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_criteria");
            assert!(!reply.text.contains('\u{0}'), "{uri}: the NUL is not echoed");
        }
        let search = leptos::server_fn::axum::server_fn_paths().find(|(p, _)| p.contains("/search_participants")).unwrap().0;
        let form = format!("criteria={}&page=0", server::auth::urlencoding(&criteria.to_string()));
        let reply = app.request(&marketer, Method::POST, search, Some(("application/x-www-form-urlencoded", form.into_bytes())), &[]).await;
        assert_ne!(reply.status, StatusCode::OK, "{field:?}: {}", reply.text);
        assert!(reply.text.contains("not a contact field name"), "{field:?}: {}", reply.text);
    }
    // A good custom field name still finds its match (bound as a JSON path).
    let reply = app.json(&marketer, Method::POST, "/api/v1/participants/bulk/preview", json!({"action": "cancel", "criteria": {"contact": [{"field": "first_name", "value": "x"}]}})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}
