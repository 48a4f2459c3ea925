//! Mailgun's webhooks (the JSON form): `{"signature": {timestamp, token,
//! signature}, "event-data": {...}}`, the signature the hex HMAC-SHA256 of
//! timestamp and token under the webhook signing key ("Securing
//! Webhooks"). The signature does not cover the body, so each token is
//! good for the one body it first came with (`provider_hook_nonces`), and
//! a timestamp more than a day off is refused. `failed` events are
//! bounces (`severity` permanent: hard, temporary: soft), `complained`
//! ones complaints.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::bad_signature;
use crate::channels::feedback::{Feedback, Outcome};
use crate::db::Pool;
use crate::error::Result;
use app::core::engagement::BounceType;

/// How far a signature's timestamp may be from now, in seconds.
pub const TOLERANCE_SECS: i64 = 24 * 3600;

#[derive(Debug, Deserialize)]
pub struct Payload {
    pub signature: Signature,
    #[serde(rename = "event-data")]
    pub event_data: Value,
}

#[derive(Debug, Deserialize)]
pub struct Signature {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

/// The signature check, at `now` (unix seconds).
pub fn verify(key: &str, signature: &Signature, now: i64) -> std::result::Result<(), &'static str> {
    let Ok(given) = hex::decode(signature.signature.trim()) else { return Err("the signature is not hex") };
    if signature.token.len() > 200 {
        return Err("the token is too long");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(signature.timestamp.as_bytes());
    mac.update(signature.token.as_bytes());
    mac.verify_slice(&given).map_err(|_| "the HMAC does not match")?;
    let at: i64 = signature.timestamp.trim().parse().map_err(|_| "the timestamp is not a number")?;
    if (now - at).abs() > TOLERANCE_SECS {
        return Err("the timestamp is more than a day off");
    }
    Ok(())
}

/// The hex HMAC a request with `timestamp` and `token` carries (tests and docs).
pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Takes `token` for `body`: refused when it already came with another
/// body. Tokens older than two days are forgotten on the way.
pub async fn spend_token(pool: &Pool, token: &str, body: &[u8]) -> Result<()> {
    let digest = hex::encode(Sha256::digest(body));
    let now = jiff::Timestamp::now().as_millisecond();
    let mut tx = crate::db::begin_write(pool).await?;
    sqlx::query("DELETE FROM provider_hook_nonces WHERE seen_at < $1").bind(now - 2 * TOLERANCE_SECS * 1000).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO provider_hook_nonces (provider, nonce, body_sha256, seen_at) VALUES ('mailgun', $1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(token)
        .bind(&digest)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let first: String = sqlx::query_scalar("SELECT body_sha256 FROM provider_hook_nonces WHERE provider = 'mailgun' AND nonce = $1")
        .bind(token)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    if first != digest {
        return Err(bad_signature("Mailgun", "its token was already used with another body"));
    }
    Ok(())
}

/// The feedback of one event.
pub fn feedback(event: &Value) -> std::result::Result<Vec<Feedback>, String> {
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = text(event, "event").ok_or("the event-data has no event")?;
    let outcome = match kind.as_str() {
        "failed" => {
            let bounce = if text(event, "severity").as_deref() == Some("permanent") { BounceType::Hard } else { BounceType::Soft };
            let status = event.get("delivery-status").cloned().unwrap_or_default();
            let code = status.get("code").map(|c| c.to_string().trim_matches('"').to_owned()).filter(|c| !c.is_empty() && c != "null");
            let words = text(&status, "message").filter(|m| !m.trim().is_empty()).or_else(|| text(&status, "description")).or_else(|| text(event, "reason"));
            let diagnostic = match (code, words) {
                (Some(code), Some(words)) if !words.starts_with(&code) => Some(format!("{code} {words}")),
                (_, Some(words)) => Some(words),
                (code, None) => code,
            };
            Outcome::Bounce { bounce, status: text(&status, "enhanced-code").filter(|s| s.split('.').count() == 3), diagnostic }
        }
        "complained" => Outcome::Complaint,
        _ => return Ok(Vec::new()), // accepted, delivered, opened, clicked, unsubscribed, stored
    };
    let id = text(event, "id").ok_or("the event-data has no id")?;
    let message_id = event.get("message").and_then(|m| m.get("headers")).and_then(|h| text(h, "message-id"));
    Ok(vec![Feedback {
        id: format!("mailgun:{id}"),
        source: "mailgun",
        originals: message_id.into_iter().collect(),
        recipient: text(event, "recipient"),
        by_address: true,
        outcome,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hmac_covers_timestamp_and_token_under_the_signing_key() {
        // Computed independently: python3 -c "import hmac,hashlib;print(hmac.new(b'key-test',b'1770920772e0b5477167110d68991efc6b9f89f0a11066af27834600e123',hashlib.sha256).hexdigest())"
        let signed = sign("key-test", "1770920772", "e0b5477167110d68991efc6b9f89f0a11066af27834600e123");
        assert_eq!(signed, "097ff1603ce0947833a030fe6b23a46d9597fc9835f074f252b2e662274fb61c");
        let signature = Signature { timestamp: "1770920772".into(), token: "e0b5477167110d68991efc6b9f89f0a11066af27834600e123".into(), signature: signed };
        assert_eq!(verify("key-test", &signature, 1770920772), Ok(()));
        assert_eq!(verify("key-other", &signature, 1770920772), Err("the HMAC does not match"));
        assert_eq!(verify("key-test", &signature, 1770920772 + TOLERANCE_SECS + 1), Err("the timestamp is more than a day off"));
        let forged = Signature { token: "another-token".into(), ..signature };
        assert_eq!(verify("key-test", &forged, 1770920772), Err("the HMAC does not match"));
    }

    #[test]
    fn failed_and_complained_events_are_feedback() {
        // Mailgun's "failed" (permanent) example, abridged.
        let event: Value = serde_json::from_str(
            r#"{"id":"G9Bn5sl1TC6nu79C8C0bwg","timestamp":1521233195.375624,"log-level":"error","event":"failed","severity":"permanent",
               "reason":"suppress-bounce","envelope":{"sender":"bob@sandbox.mailgun.org","transport":"smtp","targets":"alice@example.com"},
               "delivery-status":{"attempt-no":1,"message":"","code":605,"description":"Not delivering to previously bounced address","session-seconds":0},
               "message":{"headers":{"to":"Alice <alice@example.com>","message-id":"12.e1.1.0@waymark.test","from":"Bob <bob@sandbox.mailgun.org>","subject":"Test"},
               "attachments":[],"size":111},"recipient":"alice@example.com","recipient-domain":"example.com"}"#,
        )
        .unwrap();
        let list = feedback(&event).unwrap();
        assert_eq!(list[0].id, "mailgun:G9Bn5sl1TC6nu79C8C0bwg");
        assert_eq!(list[0].originals, ["12.e1.1.0@waymark.test"]);
        assert_eq!(
            list[0].outcome,
            Outcome::Bounce { bounce: BounceType::Hard, status: None, diagnostic: Some("605 Not delivering to previously bounced address".into()) }
        );
        let mut temporary = event.clone();
        temporary["severity"] = "temporary".into();
        assert!(matches!(feedback(&temporary).unwrap()[0].outcome, Outcome::Bounce { bounce: BounceType::Soft, .. }));
        let mut complained = event.clone();
        complained["event"] = "complained".into();
        assert_eq!(feedback(&complained).unwrap()[0].outcome, Outcome::Complaint);
        let mut delivered = event;
        delivered["event"] = "delivered".into();
        assert!(feedback(&delivered).unwrap().is_empty());
    }
}
