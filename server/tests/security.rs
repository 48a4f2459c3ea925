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
        state.auth.limits = Arc::new(limits);
        App { app: router(state), store, runtime, _db: db, _dir: dir }
    }

    async fn new() -> App {
        App::with_limits(Limits::default()).await
    }

    /// The same database served by a second process, with limits of its own making.
    fn another_process(mut self, limits: Limits) -> App {
        let mut state = AppState::new(leptos_options("127.0.0.1:0".parse().unwrap()), self.store.clone(), self.runtime.clone());
        state.auth.limits = Arc::new(limits);
        self.app = router(state);
        self
    }

    async fn request(&self, caller: &Caller, method: Method, uri: &str, body: Option<(&str, Vec<u8>)>, extra: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder().method(method).uri(uri).header(header::HOST, HOST);
        match caller {
            Caller::Anonymous => {}
            Caller::Session(cookie) => request = request.header(header::COOKIE, format!("waymark_session={cookie}")),
            Caller::Token(token) => request = request.header(header::AUTHORIZATION, format!("Bearer {token}")),
        }
        if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("origin") || k.eq_ignore_ascii_case("sec-fetch-site")) {
            request = request.header(header::ORIGIN, format!("http://{HOST}"));
        }
        for (k, v) in extra {
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
