//! Postmark's webhooks. Postmark signs nothing; it proves itself as its
//! documentation says ("Protecting your webhook"): HTTP Basic credentials
//! in the webhook URL, or a custom header with a secret value. One JSON
//! object per request: `RecordType` `Bounce` (its `Type` says hard, soft,
//! or an auto-responder, which is an automatic reply) and `SpamComplaint`.
//! Postmark replaces the Message-ID, so a message is found by the
//! Message-ID quoted in the bounce's `Content` (when the webhook includes
//! it), else by the recipient's address.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::Value;

use super::{same, PostmarkAuth, PostmarkSettings};
use crate::channels::feedback::{Feedback, Outcome};
use crate::channels::mailbox::classify::{self, Finding};
use app::core::engagement::BounceType;

/// Whether the request carries the configured credentials.
pub fn authorized(settings: &PostmarkSettings, secret: &str, headers: &HeaderMap) -> bool {
    match settings.auth {
        PostmarkAuth::Basic => {
            let given = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let Some(encoded) = given.strip_prefix("Basic ").or_else(|| given.strip_prefix("basic ")) else { return false };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
            let expected = format!("{}:{secret}", settings.username);
            same(&decoded, expected.as_bytes())
        }
        PostmarkAuth::Header => {
            let name = settings.header.as_deref().unwrap_or_default();
            headers.get(name).is_some_and(|v| same(v.as_bytes(), secret.as_bytes()))
        }
    }
}

/// Bounce types whose address will never take mail.
const HARD: [&str; 3] = ["HardBounce", "BadEmailAddress", "DMARCPolicy"];
/// Bounce types that are not about delivery at all.
const NOT_BOUNCES: [&str; 8] =
    ["Unsubscribe", "Subscribe", "AddressChange", "OpenRelayTest", "ManuallyDeactivated", "Unconfirmed", "TemplateRenderingFailed", "SMTPApiError"];

/// The feedback of one webhook request.
pub fn feedback(body: &[u8]) -> Result<Vec<Feedback>, String> {
    let record: Value = serde_json::from_slice(body).map_err(|_| "the body is not a JSON object".to_owned())?;
    let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = text("RecordType").ok_or("there is no RecordType")?;
    let bounce_type = text("Type").unwrap_or_default();
    let outcome = match kind.as_str() {
        "SpamComplaint" => Outcome::Complaint,
        "Bounce" if bounce_type == "SpamComplaint" => Outcome::Complaint,
        "Bounce" if bounce_type == "AutoResponder" => {
            Outcome::Reply { auto: true, excerpt: text("Details").or_else(|| text("Description")).unwrap_or_default() }
        }
        "Bounce" if NOT_BOUNCES.contains(&bounce_type.as_str()) => return Ok(Vec::new()),
        "Bounce" => {
            // Postmark deactivates an address it will not send to again.
            let inactive = record.get("Inactive").and_then(Value::as_bool).unwrap_or(false);
            let bounce = if HARD.contains(&bounce_type.as_str()) || inactive { BounceType::Hard } else { BounceType::Soft };
            let details = text("Details").filter(|d| !d.trim().is_empty());
            let diagnostic = details.or_else(|| text("Description")).map(|d| format!("{bounce_type}: {d}"));
            let status = details_status(&record);
            Outcome::Bounce { bounce, status, diagnostic }
        }
        _ => return Ok(Vec::new()), // Delivery, Open, Click, SubscriptionChange
    };
    // Deliveries, opens and clicks carry no `ID`; bounces and complaints do.
    let id = record.get("ID").map(|v| v.to_string().trim_matches('"').to_owned()).ok_or("there is no ID")?;
    let originals = text("Content").map(|dump| ids_in_dump(&dump)).unwrap_or_default();
    Ok(vec![Feedback { id: format!("postmark:{kind}:{id}"), source: "postmark", originals, recipient: text("Email"), by_address: true, outcome }])
}

/// An enhanced status code in the bounce's details, if any.
fn details_status(record: &Value) -> Option<String> {
    let details = record.get("Details").and_then(Value::as_str)?;
    details
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_end_matches('.'))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3 && matches!(parts[0], "4" | "5") && parts[1..].iter().all(|p| !p.is_empty() && p.len() <= 3)
        })
        .map(str::to_owned)
}

/// The Message-IDs of the message a bounce dump returns.
fn ids_in_dump(dump: &str) -> Vec<String> {
    match classify::classify(dump.as_bytes()).finding {
        Finding::Bounce { originals, .. } | Finding::Complaint { originals, .. } => originals,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(auth: PostmarkAuth) -> PostmarkSettings {
        PostmarkSettings { auth, username: "postmark".into(), header: Some("X-Waymark-Token".into()) }
    }

    #[test]
    fn basic_or_header_credentials_are_checked() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("postmark:s3cret")).parse().unwrap());
        assert!(authorized(&settings(PostmarkAuth::Basic), "s3cret", &headers));
        assert!(!authorized(&settings(PostmarkAuth::Basic), "other", &headers));
        assert!(!authorized(&settings(PostmarkAuth::Header), "s3cret", &headers));
        let mut headers = HeaderMap::new();
        headers.insert("x-waymark-token", "s3cret".parse().unwrap());
        assert!(authorized(&settings(PostmarkAuth::Header), "s3cret", &headers));
        assert!(!authorized(&settings(PostmarkAuth::Header), "s3cre", &headers));
        assert!(!authorized(&settings(PostmarkAuth::Basic), "s3cret", &headers));
    }

    #[test]
    fn bounce_types_map_to_hard_soft_and_auto_replies() {
        // Postmark's bounce webhook example.
        let bounce = |kind: &str, inactive: bool| {
            format!(
                r#"{{"RecordType":"Bounce","MessageStream":"outbound","ID":4323372036854775807,"Type":"{kind}","TypeCode":1,"Name":"Hard bounce",
                "Tag":"Test","MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Metadata":{{"a_key":"a_value"}},"ServerID":23,
                "Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).",
                "Details":"smtp;550 5.1.1 The email account that you tried to reach does not exist.","Email":"john@example.com",
                "From":"sender@example.com","BouncedAt":"2019-11-05T16:33:54.9070259Z","DumpAvailable":true,"Inactive":{inactive},
                "CanActivate":true,"Subject":"Test subject","Content":"Return-Path: <>\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; john@example.com\nAction: failed\nStatus: 5.1.1\n\n--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: <12.e1.1.0@waymark.test>\n\n--b--\n"}}"#
            )
        };
        let list = feedback(bounce("HardBounce", true).as_bytes()).unwrap();
        assert_eq!(list[0].id, "postmark:Bounce:4323372036854775807");
        assert_eq!(list[0].originals, ["12.e1.1.0@waymark.test"]);
        assert_eq!(list[0].recipient.as_deref(), Some("john@example.com"));
        assert!(matches!(&list[0].outcome, Outcome::Bounce { bounce: BounceType::Hard, status: Some(s), .. } if s == "5.1.1"));
        assert!(matches!(feedback(bounce("SoftBounce", false).as_bytes()).unwrap()[0].outcome, Outcome::Bounce { bounce: BounceType::Soft, .. }));
        assert!(matches!(feedback(bounce("Transient", true).as_bytes()).unwrap()[0].outcome, Outcome::Bounce { bounce: BounceType::Hard, .. }));
        assert!(matches!(feedback(bounce("AutoResponder", false).as_bytes()).unwrap()[0].outcome, Outcome::Reply { auto: true, .. }));
        assert!(feedback(bounce("Subscribe", false).as_bytes()).unwrap().is_empty());
        let complaint = r#"{"RecordType":"SpamComplaint","MessageStream":"outbound","ID":42,"Type":"SpamComplaint","TypeCode":100001,
            "MessageID":"00000000-0000-0000-0000-000000000000","Email":"john@example.com","BouncedAt":"2019-11-05T16:33:54Z","Inactive":true}"#;
        assert_eq!(feedback(complaint.as_bytes()).unwrap()[0].outcome, Outcome::Complaint);
        assert!(feedback(br#"{"RecordType":"Delivery","ID":1,"Recipient":"x@y"}"#).unwrap().is_empty());
        assert!(feedback(b"[]").is_err());
    }
}
