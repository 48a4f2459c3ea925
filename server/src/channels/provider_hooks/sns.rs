//! Amazon SNS messages carrying Amazon SES notifications.
//!
//! Every message is checked as Amazon documents it ("Verifying the
//! signatures of Amazon SNS messages"): the topic must be one the
//! settings list; the signing certificate is fetched only over HTTPS from
//! `sns.<region>.amazonaws.com` (`.com.cn` in China) and must be within
//! its validity; the signature (RSA PKCS#1 v1.5 over SHA-1 for
//! `SignatureVersion` 1, SHA-256 for 2) must match the fields Amazon signs,
//! in Amazon's order. A `SubscriptionConfirmation` that passes is
//! confirmed by fetching its `SubscribeURL` (again only from Amazon).
//!
//! The one exception is for tests: a loopback URL the settings name
//! (`test_cert_url`), whose certificates and confirmations are accepted
//! too. It cannot name anything but this machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::DecodePem;

use super::{bad_payload, bad_signature, SesSettings};
use crate::channels::feedback::{Feedback, Outcome};
use crate::error::{Error, Result};
use app::core::engagement::BounceType;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// An SNS message as posted (JSON, sent as `text/plain`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Message {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    #[serde(default)]
    pub token: Option<String>,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
}

/// What a checked message gave.
pub enum Received {
    /// A subscription confirmed.
    Confirmed,
    /// Signed, but nothing to record (a delivery, an unsubscribe confirmation).
    Nothing,
    Feedback(Vec<Feedback>),
}

/// Checks and reads one posted message.
pub async fn receive(settings: &SesSettings, body: &[u8]) -> Result<Received> {
    let message: Message = serde_json::from_slice(body).map_err(|_| bad_signature("Amazon SES", "the body is not a signed SNS message"))?;
    if !settings.topic_arns.iter().any(|arn| arn == &message.topic_arn) {
        return Err(bad_signature("Amazon SES", "the message comes from a topic the settings do not list"));
    }
    let test = settings.test_cert_url.as_deref();
    if !trusted_url(&message.signing_cert_url, test, true) {
        return Err(bad_signature("Amazon SES", "the signing certificate is not on an Amazon SNS host"));
    }
    let key = certificate_key(&message.signing_cert_url).await.map_err(|why| bad_signature("Amazon SES", &why))?;
    let text = string_to_sign(&message).ok_or_else(|| bad_signature("Amazon SES", "the message lacks a field Amazon signs"))?;
    if !verify(&key, &message.signature_version, text.as_bytes(), &message.signature) {
        return Err(bad_signature("Amazon SES", "the signature does not match"));
    }
    match message.kind.as_str() {
        "SubscriptionConfirmation" => {
            let url = message.subscribe_url.as_deref().unwrap_or_default();
            if !trusted_url(url, test, false) {
                return Err(bad_payload("Amazon SNS", "the SubscribeURL is not on an Amazon SNS host"));
            }
            let reply = client().get(url).send().await.map_err(|err| confirm_failed(&err.to_string()))?;
            if !reply.status().is_success() {
                return Err(confirm_failed(&format!("HTTP {}", reply.status())));
            }
            tracing::info!(topic = %message.topic_arn, "confirmed the SNS subscription for SES notifications");
            Ok(Received::Confirmed)
        }
        "Notification" => Ok(Received::Feedback(ses_feedback(&message.message_id, &message.message).map_err(|why| bad_payload("Amazon SES", &why))?)),
        _ => Ok(Received::Nothing),
    }
}

fn confirm_failed(why: &str) -> Error {
    Error::BadBody {
        status: axum::http::StatusCode::BAD_GATEWAY,
        code: "subscription_not_confirmed",
        message: format!("The SNS subscription could not be confirmed: {why}."),
    }
}

/// The text Amazon signs: `Name\nvalue\n` for each field it covers, in order.
pub fn string_to_sign(m: &Message) -> Option<String> {
    let mut fields: Vec<(&str, &str)> = vec![("Message", &m.message), ("MessageId", &m.message_id)];
    match m.kind.as_str() {
        "Notification" => {
            if let Some(subject) = &m.subject {
                fields.push(("Subject", subject));
            }
            fields.extend([("Timestamp", m.timestamp.as_str()), ("TopicArn", &m.topic_arn), ("Type", &m.kind)]);
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            fields.extend([
                ("SubscribeURL", m.subscribe_url.as_deref()?),
                ("Timestamp", &m.timestamp),
                ("Token", m.token.as_deref()?),
                ("TopicArn", &m.topic_arn),
                ("Type", &m.kind),
            ]);
        }
        _ => return None,
    }
    Some(fields.iter().map(|(name, value)| format!("{name}\n{value}\n")).collect())
}

/// RSA PKCS#1 v1.5: SHA-1 for version 1, SHA-256 for version 2.
pub fn verify(key: &[u8], version: &str, text: &[u8], signature_b64: &str) -> bool {
    use base64::Engine as _;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256};
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()) else { return false };
    let algorithm = match version {
        "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &RSA_PKCS1_2048_8192_SHA256,
        _ => return false,
    };
    UnparsedPublicKey::new(algorithm, key).verify(text, &signature).is_ok()
}

/// Whether `url` is where Amazon serves SNS certificates (`cert`) or
/// subscription confirmations from, or under the test-only loopback URL.
pub fn trusted_url(url: &str, test: Option<&str>, cert: bool) -> bool {
    if let Some(prefix) = test.filter(|p| is_loopback_url(p)) {
        if url.starts_with(prefix) && is_loopback_url(url) {
            return true;
        }
    }
    let Ok(parsed) = url::Url::parse(url) else { return false };
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let region_host = host
        .strip_prefix("sns.")
        .and_then(|rest| rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn")))
        .is_some_and(|region| !region.is_empty() && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    parsed.scheme() == "https"
        && region_host
        && parsed.port().is_none()
        && parsed.username().is_empty()
        && (!cert || parsed.path().ends_with(".pem"))
}

/// An http(s) URL on this machine.
pub fn is_loopback_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else { return false };
    let host_ok = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    matches!(parsed.scheme(), "http" | "https") && host_ok && parsed.username().is_empty()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client builds")
    })
}

/// The RSA public key (PKCS#1) of the certificate at `url`: fetched once
/// per process, checked to be within its validity every time.
async fn certificate_key(url: &str) -> std::result::Result<Arc<Vec<u8>>, String> {
    type Cache = Mutex<HashMap<String, (Arc<Vec<u8>>, u64, u64)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let now = jiff::Timestamp::now().as_second().max(0) as u64;
    let within = |from: u64, until: u64| from <= now && now <= until;
    if let Some((key, from, until)) = cache.lock().expect("certificate cache").get(url).cloned() {
        return if within(from, until) { Ok(key) } else { Err("the signing certificate is not valid now".into()) };
    }
    let reply = client().get(url).send().await.map_err(|err| format!("the signing certificate cannot be fetched: {err}"))?;
    if !reply.status().is_success() {
        return Err(format!("the signing certificate cannot be fetched: HTTP {}", reply.status()));
    }
    let pem = reply.bytes().await.map_err(|err| format!("the signing certificate cannot be fetched: {err}"))?;
    if pem.len() > 64 * 1024 {
        return Err("the signing certificate is too large".into());
    }
    let (key, from, until) = rsa_key(&pem)?;
    let key = Arc::new(key);
    let mut cache = cache.lock().expect("certificate cache");
    if cache.len() >= 32 {
        cache.clear();
    }
    cache.insert(url.to_owned(), (key.clone(), from, until));
    if within(from, until) {
        Ok(key)
    } else {
        Err("the signing certificate is not valid now".into())
    }
}

/// The RSA key of a PEM certificate, with its validity (unix seconds).
pub fn rsa_key(pem: &[u8]) -> std::result::Result<(Vec<u8>, u64, u64), String> {
    let cert = x509_cert::Certificate::from_pem(pem).map_err(|err| format!("the signing certificate cannot be read: {err}"))?;
    let info = &cert.tbs_certificate.subject_public_key_info;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err("the signing certificate does not hold an RSA key".into());
    }
    let validity = &cert.tbs_certificate.validity;
    Ok((
        info.subject_public_key.raw_bytes().to_vec(),
        validity.not_before.to_unix_duration().as_secs(),
        validity.not_after.to_unix_duration().as_secs(),
    ))
}

/// The feedback of one SES notification (`notificationType`, or
/// `eventType` when it comes from event publishing): bounces and
/// complaints, one per recipient. Deliveries, sends, opens and the rest
/// give none.
pub fn ses_feedback(sns_id: &str, message: &str) -> std::result::Result<Vec<Feedback>, String> {
    let value: Value = serde_json::from_str(message).map_err(|_| "the SNS Message is not an SES notification (JSON)".to_owned())?;
    let kind = value.get("notificationType").or_else(|| value.get("eventType")).and_then(Value::as_str).unwrap_or_default();
    let originals = original_ids(value.get("mail"));
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut out = Vec::new();
    match kind {
        "Bounce" => {
            let bounce = value.get("bounce").ok_or("a Bounce notification without its bounce object")?;
            let kind = match bounce.get("bounceType").and_then(Value::as_str) {
                Some("Permanent") => BounceType::Hard,
                _ => BounceType::Soft, // Transient, Undetermined
            };
            let id = text(bounce, "feedbackId").unwrap_or_else(|| sns_id.to_owned());
            for recipient in bounce.get("bouncedRecipients").and_then(Value::as_array).into_iter().flatten() {
                let Some(address) = text(recipient, "emailAddress") else { continue };
                let status = text(recipient, "status").filter(|s| s.split('.').count() == 3);
                let diagnostic = text(recipient, "diagnosticCode")
                    .map(|d| d.split_once(';').map_or(d.as_str(), |(_, t)| t).trim().to_owned())
                    .or_else(|| text(bounce, "bounceSubType").map(|s| format!("SES: {s}")));
                out.push(Feedback {
                    id: format!("ses:{id}:{}", address.to_lowercase()),
                    source: "ses",
                    originals: originals.clone(),
                    recipient: Some(address),
                    by_address: true,
                    outcome: Outcome::Bounce { bounce: kind, status, diagnostic },
                });
            }
        }
        "Complaint" => {
            let complaint = value.get("complaint").ok_or("a Complaint notification without its complaint object")?;
            if matches!(complaint.get("complaintFeedbackType").and_then(Value::as_str), Some("not-spam" | "auth-failure")) {
                return Ok(out);
            }
            let id = text(complaint, "feedbackId").unwrap_or_else(|| sns_id.to_owned());
            for recipient in complaint.get("complainedRecipients").and_then(Value::as_array).into_iter().flatten() {
                let Some(address) = text(recipient, "emailAddress") else { continue };
                out.push(Feedback {
                    id: format!("ses:{id}:{}", address.to_lowercase()),
                    source: "ses",
                    originals: originals.clone(),
                    recipient: Some(address),
                    by_address: true,
                    outcome: Outcome::Complaint,
                });
            }
        }
        "" => return Err("the SES notification has no notificationType".into()),
        _ => {}
    }
    Ok(out)
}

/// Our Message-ID as the original message carried it: SES replaces the
/// header when it sends, and reports the original headers in `mail`.
fn original_ids(mail: Option<&Value>) -> Vec<String> {
    let Some(mail) = mail else { return Vec::new() };
    let mut ids = Vec::new();
    for header in mail.get("headers").and_then(Value::as_array).into_iter().flatten() {
        let name = header.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.eq_ignore_ascii_case("message-id") {
            if let Some(value) = header.get("value").and_then(Value::as_str) {
                ids.push(value.to_owned());
            }
        }
    }
    if let Some(id) = mail.get("commonHeaders").and_then(|h| h.get("messageId")).and_then(Value::as_str) {
        ids.push(id.to_owned());
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_amazon_sns_hosts_serve_certificates() {
        let cert = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem";
        assert!(trusted_url(cert, None, true));
        assert!(trusted_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem", None, true));
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com.evil.test/x.pem",
            "https://evil.test/sns.us-east-1.amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns..amazonaws.com/x.pem",
            "http://127.0.0.1:9000/cert.pem",
        ] {
            assert!(!trusted_url(bad, None, true), "{bad}");
        }
        let test = Some("http://127.0.0.1:9000/");
        assert!(trusted_url("http://127.0.0.1:9000/cert.pem", test, true));
        assert!(!trusted_url("http://127.0.0.1:9001/cert.pem", test, true));
        assert!(!trusted_url("http://evil.test/cert.pem", Some("http://evil.test/"), true), "only a loopback URL is ever trusted");
        assert!(is_loopback_url("http://[::1]:80/") && is_loopback_url("https://localhost/") && !is_loopback_url("http://10.0.0.1/"));
    }

    fn message(kind: &str) -> Message {
        Message {
            kind: kind.into(),
            message_id: "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324".into(),
            token: Some("2336412f37".into()),
            topic_arn: "arn:aws:sns:us-west-2:123456789012:MyTopic".into(),
            subject: Some("My First Message".into()),
            message: "Hello world!".into(),
            timestamp: "2012-05-02T00:54:06.655Z".into(),
            signature_version: "1".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: Some("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription".into()),
        }
    }

    #[test]
    fn the_string_to_sign_follows_amazons_order() {
        assert_eq!(
            string_to_sign(&message("Notification")).unwrap(),
            "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nMy First Message\n\
             Timestamp\n2012-05-02T00:54:06.655Z\nTopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nNotification\n"
        );
        let no_subject = Message { subject: None, ..message("Notification") };
        assert!(!string_to_sign(&no_subject).unwrap().contains("Subject"));
        assert_eq!(
            string_to_sign(&message("SubscriptionConfirmation")).unwrap(),
            "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
             SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n2012-05-02T00:54:06.655Z\n\
             Token\n2336412f37\nTopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\nType\nSubscriptionConfirmation\n"
        );
        assert!(string_to_sign(&message("Other")).is_none());
    }

    #[test]
    fn ses_bounces_and_complaints_become_feedback_per_recipient() {
        // The shape of SES's bounce notification (its documentation's example).
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
            "bouncedRecipients":[{"emailAddress":"jane@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"},
                                 {"emailAddress":"richard@example.com","action":"failed","status":"5.1.1"}],
            "timestamp":"2016-01-27T14:59:38.237Z","feedbackId":"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
            "reportingMTA":"dns; email.example.com"},
            "mail":{"timestamp":"2016-01-27T14:59:38.237Z","source":"john@example.com","messageId":"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            "destination":["jane@example.com","mary@example.com","richard@example.com"],"headersTruncated":false,
            "headers":[{"name":"From","value":"\"John Doe\" <john@example.com>"},{"name":"Message-ID","value":"<12.e1.1.0@waymark.test>"}],
            "commonHeaders":{"from":["John Doe <john@example.com>"],"messageId":"custom-message-ID","subject":"Hello"}}}"#;
        let list = ses_feedback("sns-1", bounce).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id, "ses:00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000:jane@example.com");
        assert_eq!(list[0].originals, ["<12.e1.1.0@waymark.test>", "custom-message-ID"]);
        assert_eq!(
            list[0].outcome,
            Outcome::Bounce { bounce: BounceType::Hard, status: Some("5.1.1".into()), diagnostic: Some("550 5.1.1 user unknown".into()) }
        );
        let transient = bounce.replace("Permanent", "Transient");
        assert!(matches!(ses_feedback("sns-1", &transient).unwrap()[0].outcome, Outcome::Bounce { bounce: BounceType::Soft, .. }));
        let complaint = r#"{"notificationType":"Complaint","complaint":{"userAgent":"AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients":[{"emailAddress":"richard@example.com"}],"complaintFeedbackType":"abuse",
            "arrivalDate":"2016-01-27T14:59:38.237Z","timestamp":"2016-01-27T14:59:38.237Z","feedbackId":"000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},
            "mail":{"messageId":"x","headers":[{"name":"Message-ID","value":"<3.e1.1.0@waymark.test>"}]}}"#;
        let list = ses_feedback("sns-2", complaint).unwrap();
        assert_eq!((list.len(), &list[0].outcome, list[0].recipient.as_deref()), (1, &Outcome::Complaint, Some("richard@example.com")));
        assert!(ses_feedback("sns-3", r#"{"eventType":"Delivery","mail":{}}"#).unwrap().is_empty());
        assert!(ses_feedback("sns-4", "not json").is_err());
    }
}
