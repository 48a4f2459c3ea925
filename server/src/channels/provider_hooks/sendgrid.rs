//! SendGrid's signed Event Webhook: an ECDSA P-256 signature (SHA-256,
//! ASN.1 DER, base64) over the `X-Twilio-Email-Event-Webhook-Timestamp`
//! header followed by the exact body, checked with the verification key
//! SendGrid shows (base64 of the DER SubjectPublicKeyInfo). The body is a
//! JSON array of events; `bounce` (type `bounce`: hard, `blocked`: soft)
//! and `spamreport` are feedback, the rest (processed, delivered, deferred,
//! dropped, opens, clicks, unsubscribes) are not ours to record here.

use app::core::engagement::BounceType;
use base64::Engine as _;
use serde_json::Value;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::spki::SubjectPublicKeyInfoRef;

use crate::channels::feedback::{Feedback, Outcome};

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// The uncompressed P-256 point of a verification key given as base64 DER
/// (SendGrid's form) or PEM.
pub fn public_key(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<String>()
        .split_whitespace()
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    let info = SubjectPublicKeyInfoRef::from_der(&der).ok()?;
    let curve = info.algorithm.parameters.as_ref()?.decode_as::<ObjectIdentifier>().ok()?;
    (info.algorithm.oid == EC_PUBLIC_KEY && curve == P256).then(|| info.subject_public_key.raw_bytes().to_vec())
}

/// Whether `signature` signs `timestamp` + `body` under `key`.
pub fn verify(key: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(point) = public_key(key) else { return false };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
    if timestamp.is_empty() {
        return false;
    }
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point).verify(&signed, &signature).is_ok()
}

/// The feedback in a batch of events.
pub fn feedback(body: &[u8]) -> Result<Vec<Feedback>, String> {
    let events: Vec<Value> = serde_json::from_slice(body).map_err(|_| "the body is not a JSON array of events".to_owned())?;
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let outcome = match text("event").as_deref() {
            Some("bounce") => {
                let bounce = if text("type").as_deref() == Some("blocked") { BounceType::Soft } else { BounceType::Hard };
                let status = text("status").filter(|s| s.split('.').count() == 3);
                Outcome::Bounce { bounce, status, diagnostic: text("reason") }
            }
            Some("spamreport") => Outcome::Complaint,
            Some(_) => continue,
            None => return Err(format!("event {i} has no `event`")),
        };
        let Some(id) = text("sg_event_id") else { return Err(format!("event {i} has no sg_event_id")) };
        out.push(Feedback {
            id: format!("sendgrid:{id}"),
            source: "sendgrid",
            originals: text("smtp-id").into_iter().collect(),
            recipient: text("email"),
            by_address: true,
            outcome,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector SendGrid's own libraries check against.
    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const TIMESTAMP: &str = "1588788367";
    const PAYLOAD: &str = r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    #[test]
    fn sendgrids_published_vector_verifies_and_any_change_does_not() {
        assert!(verify(KEY, TIMESTAMP, PAYLOAD.as_bytes(), SIGNATURE));
        assert!(!verify(KEY, "1588788368", PAYLOAD.as_bytes(), SIGNATURE));
        assert!(!verify(KEY, TIMESTAMP, b"payload", SIGNATURE));
        let other = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
        assert!(!verify(other, TIMESTAMP, PAYLOAD.as_bytes(), SIGNATURE));
        let altered = SIGNATURE.replace("H2j", "H3j");
        assert!(!verify(KEY, TIMESTAMP, PAYLOAD.as_bytes(), &altered));
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n", &KEY[..64], &KEY[64..]);
        assert!(verify(&pem, TIMESTAMP, PAYLOAD.as_bytes(), SIGNATURE));
        assert!(public_key("not a key").is_none());
    }

    #[test]
    fn bounces_blocks_and_spam_reports_are_feedback() {
        // Shapes from SendGrid's Event Webhook reference.
        let body = r#"[
          {"email":"ada@example.test","timestamp":1513299569,"smtp-id":"<12.e1.1.0@waymark.test>","event":"bounce","type":"bounce",
           "bounce_classification":"Invalid Address","reason":"550 5.1.1 The email account that you tried to reach does not exist.",
           "status":"5.1.1","sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
          {"email":"bob@example.test","timestamp":1740300320,"smtp-id":"<13.e1.1.0@waymark.test>","event":"bounce","type":"blocked",
           "bounce_classification":"Unclassified","reason":"unable to get mx info","sg_event_id":"Ym91bmNlLTQt","tls":0},
          {"email":"cy@example.test","timestamp":1513299569,"smtp-id":"<14.e1.1.0@waymark.test>","event":"spamreport","sg_event_id":"c3BhbXJlcG9ydC0x"},
          {"email":"dee@example.test","timestamp":1513299569,"event":"delivered","sg_event_id":"ZGVsaXZlcmVk"}
        ]"#;
        let list = feedback(body.as_bytes()).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].id, "sendgrid:6g4ZI7SA-xmRDv57GoPIPw==");
        assert_eq!(list[0].originals, ["<12.e1.1.0@waymark.test>"]);
        assert!(matches!(&list[0].outcome, Outcome::Bounce { bounce: BounceType::Hard, status: Some(s), .. } if s == "5.1.1"));
        assert!(matches!(&list[1].outcome, Outcome::Bounce { bounce: BounceType::Soft, status: None, .. }));
        assert_eq!((&list[2].outcome, list[2].recipient.as_deref()), (&Outcome::Complaint, Some("cy@example.test")));
        assert!(feedback(b"{}").is_err());
        assert!(feedback(br#"[{"event":"bounce","email":"x@y"}]"#).is_err(), "an event without its id cannot be taken once");
    }
}
