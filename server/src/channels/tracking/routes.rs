//! The public tracking routes, opened from mailboxes (no session is read,
//! no cookie is set; the signed token in the path is the only credential):
//!
//! | route | what |
//! |---|---|
//! | `GET /t/o/{token}` | the open pixel: a 43-byte GIF, never cached |
//! | `GET /t/c/{token}` | the click redirect (302) to the message's own link |
//! | `GET /u/{token}` | the preference page (email, SMS, calls) |
//! | `POST /u/{token}` | RFC 8058 one-click (`List-Unsubscribe=One-Click`) or the page's forms |
//!
//! A token that does not verify, or names a record that is gone, is
//! answered exactly as an unknown address is.
//!
//! And under `/api/v1`: the SMS provider's inbound webhook (STOP, START;
//! signed like the delivery reports), a contact's preference link, a
//! contact's messages, and generating a DKIM key.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use jiff::SignedDuration;
use serde::Deserialize;
use serde_json::json;

use app::auth::{Access, Viewer};

use super::{page, ConsentChange, Hit, Token};
use crate::audit;
use crate::auth::{not_found, Endpoint};
use crate::channels::settings::{self, Integrations};
use crate::error::{Error, Json, Result};
use crate::runtime::Runtime;
use crate::AppState;

/// The routes outside `/api/v1`, with their access, for the policy.
pub fn endpoints() -> Vec<(Method, &'static str, Access)> {
    vec![
        (Method::GET, "/t/o/{token}", Access::Public),
        (Method::GET, "/t/c/{token}", Access::Public),
        (Method::GET, "/u/{token}", Access::Public),
        (Method::POST, "/u/{token}", Access::Public),
    ]
}

/// Paths whose routes never read a session (see `auth::guard`).
pub const SESSIONLESS: &[&str] = &["/t/", "/u/"];

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/t/o/{token}", axum::routing::get(pixel))
        .route("/t/c/{token}", axum::routing::get(redirect))
        .route("/u/{token}", axum::routing::get(preferences).post(unsubscribe))
}

/// REST routes (under `/api/v1`).
pub fn api_endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::POST, "/channels/sms/inbound", Access::Public, sms_inbound),
        Endpoint::new(Method::GET, "/contacts/{id}/preference-link", Access::Marketer, preference_link),
        Endpoint::new(Method::GET, "/contacts/{id}/conversations", Access::Marketer, contact_conversations),
        Endpoint::new(Method::POST, "/settings/dkim/key", Access::Admin, generate_dkim_key),
    ]
}

/// A transparent 1×1 GIF (43 bytes).
pub const GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The headers of a pixel's or a redirect's answer, with room for those
/// the layers add (request id, security headers) so that the map is
/// allocated once, not grown as they arrive.
fn hit_headers() -> HeaderMap {
    HeaderMap::with_capacity(16)
}

fn gif() -> Response {
    let mut response = Response::new(axum::body::Body::from(Bytes::from_static(&GIF)));
    *response.headers_mut() = hit_headers();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    response
}

/// How long the pixel and the redirect keep the tracking settings they
/// read: they ask on every hit, and a database read per hit was most of
/// the pixel's cost. A change takes effect within this.
const SETTINGS_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// What a hit needs of the tracking settings (copied, not the settings'
/// strings, for each hit).
#[derive(Clone, Copy, Default)]
struct HitSettings {
    opens: bool,
    clicks: bool,
    scanner_secs: u64,
}

/// The tracking settings, read at most once per [`SETTINGS_FOR`] per database.
async fn hit_settings(pool: &crate::db::Pool) -> HitSettings {
    type Kept = std::collections::HashMap<String, (std::time::Instant, HitSettings)>;
    static KEPT: std::sync::LazyLock<std::sync::Mutex<Kept>> = std::sync::LazyLock::new(Default::default);
    let options = pool.connect_options();
    let database = options.database_url.as_str();
    if let Some((at, kept)) = KEPT.lock().unwrap_or_else(|p| p.into_inner()).get(database) {
        if at.elapsed() < SETTINGS_FOR {
            return *kept;
        }
    }
    let read = Integrations::tracking(pool).await.unwrap_or_default();
    let fresh = HitSettings { opens: read.opens, clicks: read.clicks, scanner_secs: read.scanner_secs };
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).insert(database.to_owned(), (std::time::Instant::now(), fresh));
    fresh
}

/// The user agent's first 512 bytes are judged (a header is visible ASCII).
/// The request is borrowed, not its headers copied (as the `HeaderMap`
/// extractor would, for every hit).
fn hit(request: &Request) -> Hit {
    let user_agent = request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| &ua[..ua.len().min(512)]);
    Hit::of(request.method() == Method::HEAD, user_agent)
}

// The pixel and the redirect take the runtime, not the whole `AppState`
// (its page options and the rest), cloned for every hit.
async fn pixel(State(runtime): State<Runtime>, Path(text): Path<String>, request: Request) -> Response {
    let path = || format!("/t/o/{text}");
    let runtime = &runtime;
    let key = match super::key(runtime.pool()).await {
        Ok(key) => key,
        Err(err) => {
            tracing::error!(error = %err, "the tracking key cannot be read; an open was not recorded");
            return gif();
        }
    };
    let Some(Token::Open { conversation }) = Token::verify(&key, &text) else { return not_found(&path()) };
    let settings = hit_settings(runtime.pool()).await;
    if !settings.opens {
        return gif(); // tracking was turned off since: shown, not recorded
    }
    // A failure to record never breaks the message's display.
    match super::open(runtime, conversation, &hit(&request)).await {
        Ok(true) => gif(),
        Ok(false) => not_found(&path()),
        Err(err) => {
            tracing::error!(error = %err, conversation, "an open could not be recorded");
            gif()
        }
    }
}

async fn redirect(State(runtime): State<Runtime>, Path(text): Path<String>, request: Request) -> Response {
    let path = || format!("/t/c/{text}");
    let runtime = &runtime;
    let key = match super::key(runtime.pool()).await {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    let Some(Token::Click { conversation, link }) = Token::verify(&key, &text) else { return not_found(&path()) };
    let settings = hit_settings(runtime.pool()).await;
    let target = if settings.clicks {
        let scanner = SignedDuration::from_secs(settings.scanner_secs as i64);
        match super::click(runtime, conversation, link, &hit(&request), scanner).await {
            Ok(target) => target,
            Err(err) => {
                // Not recorded; the person still gets where the link goes.
                tracing::error!(error = %err, conversation, "a click could not be recorded");
                link_of(runtime, conversation, link).await
            }
        }
    } else {
        link_of(runtime, conversation, link).await
    };
    let Some(location) = target.and_then(|t| HeaderValue::from_str(&t).ok()) else { return not_found(&path()) };
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    *response.headers_mut() = hit_headers();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The target learns nothing of the token.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

async fn link_of(runtime: &Runtime, conversation: i64, link: u16) -> Option<String> {
    sqlx::query_scalar("SELECT url FROM conversation_links WHERE conversation_id = $1 AND position = $2")
        .bind(conversation)
        .bind(i64::from(link))
        .fetch_optional(runtime.pool())
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, conversation, "a tracked link cannot be read");
            None
        })
}

/// Whom an unsubscribe or preference token speaks for.
struct Subject {
    contact: i64,
    conversation: Option<i64>,
    participant: Option<i64>,
}

async fn subject(state: &AppState, text: &str) -> Result<Option<Subject>> {
    let pool = state.runtime.pool();
    let key = super::key(pool).await?;
    let subject = match Token::verify(&key, text) {
        Some(Token::Unsubscribe { conversation }) => super::conversation_contact(pool, conversation)
            .await?
            .map(|(contact, participant)| Subject { contact, conversation: Some(conversation), participant }),
        Some(Token::Preferences { contact }) => Some(Subject { contact, conversation: None, participant: None }),
        _ => None,
    };
    let Some(subject) = subject else { return Ok(None) };
    // An erased contact has nothing left to manage.
    let deleted: Option<Option<String>> =
        sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE id = $1").bind(subject.contact).fetch_optional(pool).await?;
    Ok(matches!(deleted, Some(None)).then_some(subject))
}

#[derive(Deserialize)]
struct Shown {
    saved: Option<String>,
}

async fn preferences(State(state): State<AppState>, Path(text): Path<String>, Query(shown): Query<Shown>) -> Result<Response> {
    let Some(subject) = subject(&state, &text).await? else { return Ok(not_found(&format!("/u/{text}"))) };
    let pool = state.runtime.pool();
    let mut conn = pool.acquire().await?;
    let contact = crate::runtime::contacts::load(&mut conn, subject.contact).await?;
    drop(conn);
    let sender = sender(&state).await;
    let channels = super::CHANNELS.iter().map(|c| (*c, super::subscribed(&contact.opted_out, c))).collect();
    let saved = shown.saved.as_deref().map(|what| match what {
        "unsubscribed" => "You are unsubscribed from these emails.".to_owned(),
        "all" => "You are unsubscribed from everything we send.".to_owned(),
        _ => "Your preferences are saved.".to_owned(),
    });
    Ok(page::render(page::Preferences {
        token: text,
        address: contact.email.as_deref().map(page::masked),
        sender,
        channels,
        through_message: subject.conversation.is_some(),
        saved,
    }))
}

/// Who the mail comes from, for the page: the From name, else its domain.
async fn sender(state: &AppState) -> String {
    let from: Option<String> = sqlx::query_scalar("SELECT settings FROM integration_settings WHERE channel = 'smtp'")
        .fetch_optional(state.runtime.pool())
        .await
        .ok()
        .flatten()
        .and_then(|text: String| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("from").and_then(|f| f.as_str()).map(str::to_owned));
    let mailbox = from.and_then(|f| f.parse::<lettre::message::Mailbox>().ok());
    match mailbox {
        Some(m) => m.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| m.email.domain().to_owned()),
        None => "us".into(),
    }
}

/// Form fields a post may carry (the page's forms have four).
const MAX_FIELDS: usize = 16;

/// The fields of a form post: url-encoded, or multipart (RFC 8058 prefers it).
async fn form_fields(request: Request) -> Result<Vec<(String, String)>> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    let invalid = |message: &str| Error::BadBody { status: StatusCode::BAD_REQUEST, code: "invalid_form", message: message.to_owned() };
    let mut fields = Vec::new();
    if multipart {
        let mut parts = axum::extract::Multipart::from_request(request, &()).await.map_err(|_| invalid("The form cannot be read."))?;
        while let Some(field) = parts.next_field().await.map_err(|_| invalid("The form cannot be read."))? {
            let name = field.name().unwrap_or_default().to_owned();
            let value = field.text().await.map_err(|_| invalid("The form cannot be read."))?;
            fields.push((name, value));
            if fields.len() > MAX_FIELDS {
                return Err(invalid("The form has too many fields."));
            }
        }
    } else {
        let body = Bytes::from_request(request, &()).await.map_err(|_| invalid("The form cannot be read."))?;
        fields = url::form_urlencoded::parse(&body).into_owned().take(MAX_FIELDS + 1).collect();
        if fields.len() > MAX_FIELDS {
            return Err(invalid("The form has too many fields."));
        }
    }
    Ok(fields)
}

async fn unsubscribe(State(state): State<AppState>, Path(text): Path<String>, request: Request) -> Result<Response> {
    let Some(subject) = subject(&state, &text).await? else { return Ok(not_found(&format!("/u/{text}"))) };
    let fields = form_fields(request).await?;
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let change = |channels: Vec<(&'static str, bool)>, source: &'static str| ConsentChange {
        contact: subject.contact,
        channels,
        source,
        detail: None,
        conversation: subject.conversation,
        participant: subject.participant,
        external: None,
    };
    // RFC 8058: the mailbox provider posts this on the person's behalf.
    if field("List-Unsubscribe").is_some_and(|v| v.eq_ignore_ascii_case("One-Click")) {
        super::change_consent(&state.runtime, change(vec![("email", false)], "one_click")).await?;
        let mut response = (StatusCode::OK, "You are unsubscribed.\n").into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    }
    let (channels, saved): (Vec<(&'static str, bool)>, &str) = match field("action").unwrap_or("save") {
        "unsubscribe" => (vec![("email", false)], "unsubscribed"),
        "all" => (vec![("all", false)], "all"),
        "save" if field("form") == Some("preferences") => (super::CHANNELS.iter().map(|c| (*c, field(c) == Some("on"))).collect(), "saved"),
        _ => {
            return Err(Error::BadBody {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_form",
                message: "Send List-Unsubscribe=One-Click, or the preference page's form.".into(),
            })
        }
    };
    super::change_consent(&state.runtime, change(channels, "preference_page")).await?;
    // Back to the page, which shows the new state (a reload posts nothing).
    let mut response = StatusCode::SEE_OTHER.into_response();
    let location = HeaderValue::from_str(&format!("/u/{text}?saved={saved}")).expect("tokens are hex");
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// The SMS opt-out and opt-in keywords (the whole message, any case).
pub fn keyword(body: &str) -> Option<bool> {
    let word: String = body.trim().trim_end_matches(['.', '!']).to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT" | "REVOKE" => Some(false),
        "START" | "UNSTOP" => Some(true),
        _ => None,
    }
}

/// An incoming SMS (`From`, `Body`, `MessageSid`), signed like the
/// delivery reports but over the SMS settings' `inbound_url`. STOP and its
/// kin turn SMS off for every contact with that mobile number, START and
/// UNSTOP back on; anything else is acknowledged and left alone. The
/// answer is empty TwiML: the provider sends its own confirmation.
async fn sms_inbound(State(state): State<AppState>, headers: HeaderMap, body: String) -> Result<Response> {
    let pool = state.runtime.pool();
    let integrations = Integrations::load(pool).await?;
    let Some((sms, Some(token))) = integrations.sms else { return Err(Error::BadSignature) };
    let Some(url) = sms.inbound_url.filter(|u| !u.is_empty()) else { return Err(Error::BadSignature) };
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !crate::channels::api::signed(token.expose(), &url, &fields, signature) {
        return Err(Error::BadSignature);
    }
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(from), Some(text)) = (field("From"), field("Body")) else {
        return Err(Error::BadBody {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            message: "An incoming message needs From and Body.".into(),
        });
    };
    app::core::limits::check("Body", text, app::core::limits::SMS_INBOUND_TEXT)?;
    app::core::limits::check("From", from, app::core::limits::MOBILE)?;
    if let Some(subscribe) = keyword(text) {
        let contacts: Vec<i64> = sqlx::query_scalar("SELECT id FROM contacts WHERE mobile = $1 AND deleted_at IS NULL ORDER BY id")
            .bind(from.trim())
            .fetch_all(pool)
            .await?;
        let sid = field("MessageSid").filter(|s| !s.is_empty()).map(|s| s.chars().take(64).collect::<String>());
        for contact in contacts {
            // The latest text to that number answered: its record shows the unsubscribe.
            let latest: Option<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT id, participant_id FROM conversations WHERE contact_id = $1 AND channel = 'sms' AND address = $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(contact)
            .bind(from.trim())
            .fetch_optional(pool)
            .await?;
            let change = ConsentChange {
                contact,
                channels: vec![("sms", subscribe)],
                source: "sms_keyword",
                detail: Some(text.trim().chars().take(app::core::limits::CONSENT_DETAIL).collect()),
                conversation: latest.map(|(id, _)| id),
                participant: latest.and_then(|(_, participant)| participant),
                external: sid.as_ref().map(|sid| format!("sms:{sid}:{contact}")),
            };
            super::change_consent(&state.runtime, change).await?;
        }
    }
    // The reply joins the contact's thread (the agent's workspace).
    crate::workspace::record_inbound_sms(pool, from, text, field("MessageSid")).await?;
    let mut response = (StatusCode::OK, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>").into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"));
    Ok(response)
}

/// The base URL links are made with: the tracking domain, else the server's.
pub async fn base_url(state: &AppState) -> String {
    let settings = Integrations::tracking(state.runtime.pool()).await.unwrap_or_default();
    settings.base_url.unwrap_or_else(|| state.runtime.public_url().to_owned()).trim_end_matches('/').to_owned()
}

fn contact_id(raw: &str) -> Result<i64> {
    raw.parse().map_err(|_| Error::ContactNotFound(0))
}

async fn preference_link(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let id = contact_id(&raw)?;
    let exists: Option<Option<String>> =
        sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE id = $1").bind(id).fetch_optional(state.runtime.pool()).await?;
    if !matches!(exists, Some(None)) {
        return Err(Error::ContactNotFound(id));
    }
    let url = super::preferences_link(state.runtime.pool(), &base_url(&state).await, id).await?;
    Ok(Json(json!({"url": url})))
}

async fn contact_conversations(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let id = contact_id(&raw)?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM contacts WHERE id = $1").bind(id).fetch_optional(state.runtime.pool()).await?;
    exists.ok_or(Error::ContactNotFound(id))?;
    Ok(Json(json!({"conversations": crate::channels::conversations::of_contact(state.runtime.pool(), id).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    algorithm: crate::channels::dkim::Algorithm,
    /// Domain and selector: kept from the stored settings when left out.
    domain: Option<String>,
    selector: Option<String>,
}

/// Generates a DKIM key (RSA-2048 or Ed25519), stores it encrypted as the
/// DKIM secret, and answers the DKIM settings with the DNS record to publish.
async fn generate_dkim_key(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(body): Json<NewKey>) -> Result<impl IntoResponse> {
    let view = generate_and_store(state.runtime.pool(), &viewer.actor(), body.algorithm, body.domain, body.selector).await?;
    Ok(Json(view))
}

/// Generates and stores a DKIM key; the public view of the DKIM settings.
pub async fn generate_and_store(
    pool: &crate::db::Pool,
    actor: &str,
    algorithm: crate::channels::dkim::Algorithm,
    domain: Option<String>,
    selector: Option<String>,
) -> Result<serde_json::Value> {
    let current = Integrations::load(pool).await?.dkim.map(|(d, _)| d);
    let domain = domain.or_else(|| current.as_ref().map(|d| d.domain.clone())).unwrap_or_default();
    let selector = selector.or_else(|| current.as_ref().map(|d| d.selector.clone())).unwrap_or_default();
    let key = tokio::task::spawn_blocking(move || crate::channels::dkim::generate(algorithm))
        .await
        .map_err(|err| Error::Internal(anyhow::anyhow!("generating a DKIM key failed: {err}")))?;
    let body = json!({"dkim": {"domain": domain.trim(), "selector": selector.trim(), "algorithm": algorithm, "private_key": key}});
    let saved = settings::update(pool, body.as_object().expect("an object").clone()).await?;
    audit::record(pool, actor, "settings.integrations", "integrations", "dkim (generated key)").await?;
    Ok(saved.public_view()["dkim"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pixel_is_a_43_byte_gif() {
        assert_eq!(GIF.len(), 43);
        assert!(GIF.starts_with(b"GIF89a") && GIF.ends_with(b";"));
    }

    #[test]
    fn sms_keywords_are_the_whole_message_in_any_case() {
        for stop in ["STOP", "stop", " Stop. ", "STOPALL", "unsubscribe", "Cancel", "END", "quit"] {
            assert_eq!(keyword(stop), Some(false), "{stop}");
        }
        for start in ["START", "start", "Unstop!"] {
            assert_eq!(keyword(start), Some(true), "{start}");
        }
        for other in ["please stop", "STOP IT", "", "HELP", "yes"] {
            assert_eq!(keyword(other), None, "{other}");
        }
    }
}
