//! The channels' REST routes under `/api/v1`: integration settings (secrets
//! never leave the server), the SMS provider's delivery and call status
//! callbacks, and a participant's conversations.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use axum::Extension;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};

use app::core::engine::{call_end, CallEnd, Event};

use super::conversations;
use super::settings::{self, Integrations};
use app::auth::{Access, Viewer};

use crate::audit;
use crate::auth::Endpoint;
use crate::error::{Error, Json, Result};
use crate::AppState;

/// Integration settings are for admins; the SMS provider's callbacks are
/// public, their signature being the credential.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/settings/integrations", Access::Admin, show),
        Endpoint::new(Method::PUT, "/settings/integrations", Access::Admin, update),
        Endpoint::new(Method::POST, "/channels/sms/status", Access::Public, sms_status),
        Endpoint::new(Method::POST, "/channels/calls/status", Access::Public, call_status),
        Endpoint::new(Method::GET, "/participants/{id}/conversations", Access::Marketer, of_participant),
    ]
    .into_iter()
    .chain(super::mailbox::endpoints())
    .chain(super::provider_hooks::endpoints())
    .collect()
}

async fn show(State(state): State<AppState>) -> Result<impl IntoResponse> {
    Ok(Json(Integrations::load(state.runtime.pool()).await?.public_view()))
}

async fn update(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(body): Json<Map<String, Value>>) -> Result<impl IntoResponse> {
    let changed: Vec<String> = body.keys().cloned().collect();
    let saved = settings::update(state.runtime.pool(), body).await?.public_view();
    audit::record(state.runtime.pool(), &viewer.actor(), "settings.integrations", "integrations", &changed.join(", ")).await?;
    Ok(Json(saved))
}

async fn of_participant(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse> {
    let id: i64 = raw.parse().map_err(|_| Error::ParticipantNotFound(0))?;
    Ok(Json(json!({"conversations": conversations::of_participant(state.runtime.pool(), id).await?})))
}

/// The provider reports a message's fate (`MessageSid`, `MessageStatus`,
/// `ErrorCode`), signed Twilio's way with the account token over the
/// callback URL it was given and the sorted form fields.
async fn sms_status(State(state): State<AppState>, headers: HeaderMap, body: String) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let integrations = Integrations::load(pool).await?;
    let Some((sms, Some(token))) = integrations.sms else { return Err(Error::BadSignature) };
    let Some(callback) = sms.status_callback.filter(|c| !c.is_empty()) else { return Err(Error::BadSignature) };
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !signed(token.expose(), &callback, &fields, signature) {
        return Err(Error::BadSignature);
    }
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(sid), Some(status)) = (field("MessageSid"), field("MessageStatus")) else {
        return Err(Error::BadBody {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            message: "A delivery report needs MessageSid and MessageStatus.".into(),
        });
    };
    let error = field("ErrorCode").filter(|c| !c.is_empty()).map(|code| format!("the carrier reported error {code}"));
    if !conversations::delivery(pool, sid, status, error.as_deref()).await? {
        return Err(Error::MessageNotFound(sid.to_owned()));
    }
    Ok(Json(json!({"ok": true})))
}

/// The provider reports a call's progress (`CallSid`, `CallStatus`,
/// `CallDuration`, `ErrorCode`), signed like the SMS reports but over the
/// voice settings' callback URL. The conversation record follows it; a final
/// status goes to the participant waiting on that call (at least once: a
/// repeated report is ignored by the engine).
async fn call_status(State(state): State<AppState>, headers: HeaderMap, body: String) -> Result<impl IntoResponse> {
    let pool = state.runtime.pool();
    let integrations = Integrations::load(pool).await?;
    let Some((sms, Some(token))) = integrations.sms else { return Err(Error::BadSignature) };
    let Some(voice) = sms.voice else { return Err(Error::BadSignature) };
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !signed(token.expose(), &voice.status_callback, &fields, signature) {
        return Err(Error::BadSignature);
    }
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let (Some(sid), Some(status)) = (field("CallSid"), field("CallStatus")) else {
        return Err(Error::BadBody {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            message: "A call status report needs CallSid and CallStatus.".into(),
        });
    };
    let duration = field("CallDuration").and_then(|d| d.parse::<i64>().ok());
    let error = field("ErrorCode").map(|code| format!("the provider reported error {code}"));
    let call = conversations::call_status(pool, sid, status, duration, error.as_deref()).await?.ok_or_else(|| Error::CallNotFound(sid.to_owned()))?;
    if let (Some(participant), Some(visit), false) = (call.participant_id, call.visit, call_end(&call.status) == CallEnd::NotYet) {
        let event = Event::CallEnded { visit: visit as u32, status: call.status, duration_secs: call.duration_secs.map(|d| d.max(0) as u64) };
        match state.runtime.deliver(participant, event).await {
            // The participant moved on (deadline passed, paused, cancelled): the record keeps the outcome.
            Ok(_) | Err(Error::NoPendingAction(_) | Error::ParticipantNotFound(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Json(json!({"ok": true})))
}

/// Twilio's request signature: HMAC-SHA1 of the URL followed by each field
/// name and value in name order, base64.
pub fn signature(token: &str, url: &str, fields: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(token, url, fields).finalize().into_bytes())
}

pub(crate) fn signed(token: &str, url: &str, fields: &[(String, String)], given: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given) else { return false };
    mac(token, url, fields).verify_slice(&given).is_ok()
}

fn mac(token: &str, url: &str, fields: &[(String, String)]) -> Hmac<sha1::Sha1> {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha1_over_url_and_sorted_fields() {
        // Expected value computed independently with Python's hmac module.
        let fields: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://example.com/myapp.php?foo=1&bar=2";
        let sig = signature("12345", url, &fields);
        assert_eq!(sig, "vNe7KK2kJwCsxc9K3OLkkKB3qqI=");
        assert!(signed("12345", url, &fields, &sig));
        assert!(!signed("12346", url, &fields, &sig));
    }
}
