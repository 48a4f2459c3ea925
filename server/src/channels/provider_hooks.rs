//! The email providers' event webhooks: Amazon SES through SNS, SendGrid,
//! Postmark and Mailgun report bounces, complaints (and Postmark
//! auto-responders) over HTTP; each becomes the same feedback the bounce
//! mailbox gives ([`super::feedback`]).
//!
//! The routes are public: the credential is each provider's own check,
//! made on the exact bytes received before anything is read from them
//! (SNS: an RSA signature by a certificate fetched from Amazon over HTTPS;
//! SendGrid: ECDSA P-256 over timestamp and body; Postmark: HTTP Basic or
//! a secret header; Mailgun: HMAC-SHA256 of timestamp and token, the token
//! good for one body). Anything that fails it is refused 403
//! `bad_signature` and changes nothing; a provider with no settings
//! refuses everything. Events are written once per provider event id, so
//! a delivery retried by the provider changes nothing the second time.
//!
//! Settings live in `integration_settings` rows `hook_ses`,
//! `hook_sendgrid`, `hook_postmark`, `hook_mailgun`, their keys encrypted
//! at rest and never shown ([`super::sealed`]).

pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod sns;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use app::auth::{Access, Viewer};
use app::core::limits;

use super::feedback::{self, Applied, Feedback};
use super::sealed::{self, SecretChange, SecretText};
use crate::auth::Endpoint;
use crate::db::Pool;
use crate::error::{Error, Json, Result};
use crate::AppState;

/// The providers, their settings rows, and the name of each one's secret.
pub const PROVIDERS: [(&str, Option<&str>); 4] =
    [("ses", None), ("sendgrid", Some("public_key")), ("postmark", Some("password")), ("mailgun", Some("signing_key"))];

/// The routes: settings for admins, the webhooks for everyone (signed).
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/settings/email-webhooks", Access::Admin, show),
        Endpoint::new(Method::PUT, "/settings/email-webhooks", Access::Admin, update),
        Endpoint::new(Method::POST, "/channels/ses/sns", Access::Public, ses),
        Endpoint::new(Method::POST, "/channels/sendgrid/events", Access::Public, sendgrid),
        Endpoint::new(Method::POST, "/channels/postmark/events", Access::Public, postmark),
        Endpoint::new(Method::POST, "/channels/mailgun/events", Access::Public, mailgun),
    ]
}

/// Amazon SES through SNS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesSettings {
    /// The SNS topics whose messages are taken (`arn:aws:sns:…`); others
    /// are refused.
    #[serde(default)]
    pub topic_arns: Vec<String>,
    /// Tests only: signing certificates and subscription confirmations
    /// are also fetched from under this loopback URL
    /// (`http://127.0.0.1:PORT/`), besides Amazon's own HTTPS hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_cert_url: Option<String>,
}

/// Postmark: how its webhook requests prove themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostmarkAuth {
    /// HTTP Basic authentication (`https://user:password@…` as the webhook URL).
    #[default]
    Basic,
    /// A custom header the webhook sends (Postmark's “HTTP headers”).
    Header,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostmarkSettings {
    #[serde(default)]
    pub auth: PostmarkAuth,
    /// The Basic user name.
    #[serde(default)]
    pub username: String,
    /// The header's name, for `auth: header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// SendGrid and Mailgun have nothing but their key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyOnly {}

fn row(provider: &str) -> String {
    format!("hook_{provider}")
}

/// A provider's settings and secret; `None` when not set up.
pub async fn load<T: serde::de::DeserializeOwned>(pool: &Pool, provider: &str) -> Result<Option<(T, Option<SecretText>)>> {
    let Some((value, secret)) = sealed::load(pool, &row(provider)).await? else { return Ok(None) };
    let settings = serde_json::from_value(value).map_err(|err| Error::Internal(anyhow::anyhow!("stored {provider} webhook settings are unreadable: {err}")))?;
    Ok(Some((settings, secret)))
}

/// What admins see: each provider's settings, whether its key is set, and
/// the path its webhook posts to.
pub async fn view(pool: &Pool) -> Result<Value> {
    let mut out = Map::new();
    for (provider, secret_name) in PROVIDERS {
        let stored = sealed::load(pool, &row(provider)).await?;
        let path = match provider {
            "ses" => "/api/v1/channels/ses/sns",
            "sendgrid" => "/api/v1/channels/sendgrid/events",
            "postmark" => "/api/v1/channels/postmark/events",
            _ => "/api/v1/channels/mailgun/events",
        };
        let value = match stored {
            None => json!({"configured": false, "webhook_path": path}),
            Some((mut settings, secret)) => {
                settings["configured"] = Value::Bool(true);
                settings["webhook_path"] = Value::String(path.into());
                if let Some(name) = secret_name {
                    settings[format!("{name}_set")] = Value::Bool(secret.is_some());
                }
                settings
            }
        };
        out.insert(provider.to_owned(), value);
    }
    Ok(Value::Object(out))
}

/// Applies a `PUT`: each provider named is replaced (`null` removes it);
/// its key is kept when left out, cleared by `""`. Everything is checked
/// before anything is written.
pub async fn save(pool: &Pool, body: Map<String, Value>) -> Result<()> {
    let mut writes = Vec::new();
    for (provider, value) in body {
        let Some(&(_, secret_name)) = PROVIDERS.iter().find(|(name, _)| *name == provider) else {
            return Err(invalid(&provider, "is not a provider; use ses, sendgrid, postmark or mailgun"));
        };
        let mut fields = match value {
            Value::Null => {
                writes.push((provider, None, SecretChange::Keep));
                continue;
            }
            Value::Object(fields) => fields,
            _ => return Err(invalid(&provider, "must be an object, or null to remove it")),
        };
        for flag in ["configured", "webhook_path", "public_key_set", "password_set", "signing_key_set"] {
            fields.remove(flag);
        }
        let secret = match secret_name {
            Some(name) => SecretChange::from_field(fields.remove(name), &format!("{provider}.{name}"))?,
            None => SecretChange::Keep,
        };
        let settings = Value::Object(fields);
        let checked = match provider.as_str() {
            "ses" => serde_json::to_value(check_ses(parse::<SesSettings>(&provider, settings)?)?),
            "postmark" => serde_json::to_value(check_postmark(parse::<PostmarkSettings>(&provider, settings)?)?),
            _ => serde_json::to_value(parse::<KeyOnly>(&provider, settings)?),
        }
        .expect("settings serialize");
        if let (SecretChange::Set(key), "sendgrid") = (&secret, provider.as_str()) {
            if sendgrid::public_key(key).is_none() {
                return Err(invalid("sendgrid.public_key", "is not an ECDSA P-256 public key (the base64 verification key SendGrid shows)"));
            }
        }
        writes.push((provider, Some(checked), secret));
    }
    for (provider, settings, secret) in writes {
        sealed::save(pool, &row(&provider), settings, secret).await?;
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(provider: &str, value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { provider.to_owned() } else { format!("{provider}.{path}") };
        Error::InvalidIntegration { field, message: err.into_inner().to_string() }
    })
}

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidIntegration { field: field.to_owned(), message: message.to_owned() }
}

fn check_ses(ses: SesSettings) -> Result<SesSettings> {
    if ses.topic_arns.len() > limits::TOPIC_ARNS {
        return Err(invalid("ses.topic_arns", &format!("may list at most {} topics", limits::TOPIC_ARNS)));
    }
    for (i, arn) in ses.topic_arns.iter().enumerate() {
        limits::check(&format!("ses.topic_arns[{i}]"), arn, limits::TOPIC_ARN)?;
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "sns" || parts[5].is_empty() {
            return Err(invalid(&format!("ses.topic_arns[{i}]"), "is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"));
        }
    }
    if let Some(url) = &ses.test_cert_url {
        if !sns::is_loopback_url(url) {
            return Err(invalid("ses.test_cert_url", "is for tests only: an http(s) URL on 127.0.0.1, ::1 or localhost"));
        }
    }
    Ok(ses)
}

fn check_postmark(postmark: PostmarkSettings) -> Result<PostmarkSettings> {
    limits::check("postmark.username", &postmark.username, limits::NAME)?;
    match postmark.auth {
        PostmarkAuth::Basic if postmark.username.trim().is_empty() => Err(invalid("postmark.username", "is empty")),
        PostmarkAuth::Basic if postmark.username.contains(':') => Err(invalid("postmark.username", "may not hold a colon (HTTP Basic)")),
        PostmarkAuth::Header => {
            let name = postmark.header.as_deref().unwrap_or_default();
            let token = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let reserved = ["authorization", "cookie", "host", "content-type", "content-length"].contains(&name.to_ascii_lowercase().as_str());
            if token && !reserved {
                Ok(postmark)
            } else {
                Err(invalid("postmark.header", "must name a custom header (letters, digits, - and _), such as X-Waymark-Token"))
            }
        }
        PostmarkAuth::Basic => Ok(postmark),
    }
}

async fn show(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Result<impl IntoResponse> {
    super::mailbox::require_admin(&viewer)?;
    Ok(Json(view(state.runtime.pool()).await?))
}

async fn update(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(body): Json<Value>) -> Result<impl IntoResponse> {
    super::mailbox::require_admin(&viewer)?;
    let Value::Object(body) = body else {
        return Err(Error::BadBody { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_body", message: "Send the webhook settings as a JSON object.".into() });
    };
    let changed: Vec<String> = body.keys().cloned().collect();
    let pool = state.runtime.pool();
    save(pool, body).await?;
    crate::audit::record(pool, &viewer.actor(), "settings.email_webhooks", "email webhooks", &changed.join(", ")).await?;
    Ok(Json(view(pool).await?))
}

/// 403 `bad_signature`, saying whose check failed.
pub fn bad_signature(provider: &str, why: &str) -> Error {
    Error::BadBody { status: StatusCode::FORBIDDEN, code: "bad_signature", message: format!("This request is not signed as the {provider} webhook settings require: {why}.") }
}

/// 422 `invalid_body`: signed, but not the provider's documented shape.
pub fn bad_payload(provider: &str, why: &str) -> Error {
    Error::BadBody { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_body", message: format!("This is not a {provider} event payload: {why}.") }
}

async fn ses(State(state): State<AppState>, body: Bytes) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let Some((settings, _)) = load::<SesSettings>(pool, "ses").await? else {
        return Err(bad_signature("Amazon SES", "no SES webhook is set up"));
    };
    match sns::receive(&settings, &body).await? {
        sns::Received::Confirmed => Ok(Json(json!({"ok": true, "confirmed": true}))),
        sns::Received::Nothing => Ok(Json(json!({"ok": true, "recorded": 0, "unmatched": 0}))),
        sns::Received::Feedback(list) => record(&state, list).await,
    }
}

async fn sendgrid(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let Some((_, Some(key))) = load::<KeyOnly>(pool, "sendgrid").await? else {
        return Err(bad_signature("SendGrid", "no SendGrid verification key is set up"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let signature = header("x-twilio-email-event-webhook-signature");
    let timestamp = header("x-twilio-email-event-webhook-timestamp");
    if !sendgrid::verify(key.expose(), &timestamp, &body, &signature) {
        return Err(bad_signature("SendGrid", "the ECDSA signature does not match"));
    }
    let list = sendgrid::feedback(&body).map_err(|why| bad_payload("SendGrid", &why))?;
    record(&state, list).await
}

async fn postmark(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let Some((settings, Some(secret))) = load::<PostmarkSettings>(pool, "postmark").await? else {
        return Err(bad_signature("Postmark", "no Postmark webhook credentials are set up"));
    };
    if !postmark::authorized(&settings, secret.expose(), &headers) {
        return Err(bad_signature("Postmark", "its credentials are missing or wrong"));
    }
    let list = postmark::feedback(&body).map_err(|why| bad_payload("Postmark", &why))?;
    record(&state, list).await
}

async fn mailgun(State(state): State<AppState>, body: Bytes) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let Some((_, Some(key))) = load::<KeyOnly>(pool, "mailgun").await? else {
        return Err(bad_signature("Mailgun", "no Mailgun signing key is set up"));
    };
    let payload: mailgun::Payload = serde_json::from_slice(&body).map_err(|_| bad_signature("Mailgun", "there is no signature to check"))?;
    let now = jiff::Timestamp::now().as_second();
    mailgun::verify(key.expose(), &payload.signature, now).map_err(|why| bad_signature("Mailgun", why))?;
    mailgun::spend_token(pool, &payload.signature.token, &body).await?;
    let list = mailgun::feedback(&payload.event_data).map_err(|why| bad_payload("Mailgun", &why))?;
    record(&state, list).await
}

/// Records a signed request's feedback in one transaction.
async fn record(state: &AppState, list: Vec<Feedback>) -> Result<Json<Value>> {
    let runtime = &state.runtime;
    let limit = super::mailbox::soft_bounce_limit(runtime.pool()).await?;
    let (recorded, unmatched, events) = crate::db::retry_busy("recording provider webhook events", || async {
        let mut tx = crate::db::begin_write(runtime.pool()).await?;
        let (mut recorded, mut unmatched, mut events) = (0, 0, 0);
        for item in &list {
            match feedback::apply(runtime, &mut tx, item, limit).await? {
                Applied::Recorded { conversation, event, undeliverable } => {
                    recorded += 1;
                    events += usize::from(event);
                    if let Some((why, detail)) = feedback::consent_lost(&item.outcome, event, undeliverable, limit) {
                        super::tracking::record_feedback_consent(&mut tx, conversation, why, detail.as_deref(), runtime.now()).await?;
                    }
                }
                Applied::Duplicate { .. } => {}
                Applied::Unmatched => unmatched += 1,
            }
        }
        tx.commit().await?;
        Ok::<_, Error>((recorded, unmatched, events))
    })
    .await?;
    if events > 0 {
        runtime.events_arrived();
    }
    Ok(Json(json!({"ok": true, "recorded": recorded, "unmatched": unmatched})))
}

/// Compares secrets in constant time (their HMACs, checked with `verify_slice`,
/// so neither length nor content leaks through timing).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mac = |bytes: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"waymark secret comparison").expect("HMAC takes any key length");
        mac.update(bytes);
        mac
    };
    mac(a).verify_slice(&mac(b).finalize().into_bytes()).is_ok()
}
