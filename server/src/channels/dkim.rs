//! DKIM (RFC 6376, Ed25519 per RFC 8463): outgoing mail is signed with the
//! installation's key when an admin configured one (Integrations → DKIM:
//! domain, selector, algorithm, and the private key, a write-only secret
//! stored encrypted like every other, see [`crate::secrets`]). The settings
//! page shows the TXT record to publish at `{selector}._domainkey.{domain}`.
//!
//! Keys are kept in the form lettre signs with: PKCS#1 PEM for RSA, the
//! base64 of the 32-byte seed for Ed25519. An admin may paste PKCS#1 or
//! PKCS#8 PEM (what `openssl genpkey` writes), which is converted on save;
//! or have one generated here (RSA-2048 or Ed25519).
//!
//! The signature covers the headers a receiver judges the message by, and
//! `List-Unsubscribe` with `List-Unsubscribe-Post`, which RFC 8058 requires
//! to be signed for one-click unsubscribing to be honoured. Header and body
//! are canonicalized `relaxed/relaxed`, which survives the re-folding and
//! whitespace changes relays make (lettre's default, `simple` headers,
//! does not). Nothing here ever logs or returns a private key.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use lettre::message::dkim::{DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey};
use lettre::message::header::HeaderName;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

/// The signing algorithm, as the `a=` tag names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSA with SHA-256: what every receiver verifies.
    #[default]
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    /// Ed25519 with SHA-256 (RFC 8463): short keys, not yet verified everywhere.
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

impl Algorithm {
    fn lettre(self) -> DkimSigningAlgorithm {
        match self {
            Algorithm::RsaSha256 => DkimSigningAlgorithm::Rsa,
            Algorithm::Ed25519Sha256 => DkimSigningAlgorithm::Ed25519,
        }
    }

    /// The DNS record's key type (`k=`).
    fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

/// The headers signed, in this order. A header a message lacks adds
/// nothing to the hash (RFC 6376 §5.4), and naming it still keeps anyone
/// from adding it later.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Why a key cannot be used (never quoting it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyProblem(pub String);

/// A new private key, in its stored form. RSA keys take a moment: call
/// this off the async threads.
pub fn generate(algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::RsaSha256 => {
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("an RSA-2048 key can be generated");
            key.to_pkcs1_pem(LineEnding::LF).expect("a generated key encodes").to_string()
        }
        Algorithm::Ed25519Sha256 => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).expect("the operating system's random source works");
            BASE64.encode(seed)
        }
    }
}

/// The pasted key in its stored form, or why it is not a key for `algorithm`.
pub fn normalize(algorithm: Algorithm, text: &str) -> Result<String, KeyProblem> {
    let text = text.trim();
    match algorithm {
        Algorithm::RsaSha256 => {
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(text)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(text))
                .map_err(|_| KeyProblem("is not an RSA private key in PEM form (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)".into()))?;
            let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
            if bits < 1024 {
                return Err(KeyProblem(format!("is an RSA key of {bits} bits; receivers need at least 1024 (2048 is usual)")));
            }
            Ok(key.to_pkcs1_pem(LineEnding::LF).map_err(|_| KeyProblem("cannot be encoded".into()))?.to_string())
        }
        Algorithm::Ed25519Sha256 => ed25519_seed(text).map(|seed| BASE64.encode(seed)),
    }
}

/// An Ed25519 seed: base64 of the 32 bytes, or PKCS#8 PEM.
fn ed25519_seed(text: &str) -> Result<[u8; 32], KeyProblem> {
    let bad = || KeyProblem("is not an Ed25519 private key (the base64 of its 32 bytes, or PKCS#8 PEM)".into());
    if let Ok(bytes) = BASE64.decode(text) {
        return <[u8; 32]>::try_from(bytes).map_err(|_| bad());
    }
    // PKCS#8 of an Ed25519 key (RFC 8410) is this fixed prefix and the seed.
    const PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = BASE64.decode(body.trim()).map_err(|_| bad())?;
    match der.strip_prefix(&PREFIX[..]) {
        Some(seed) => <[u8; 32]>::try_from(seed).map_err(|_| bad()),
        None => Err(bad()),
    }
}

/// Where the record is published: `{selector}._domainkey.{domain}`.
pub fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{}", domain.trim_end_matches('.'))
}

/// The TXT record's value for the stored key: `v=DKIM1; k=rsa; p=…`.
pub fn record_value(algorithm: Algorithm, stored: &str) -> Result<String, KeyProblem> {
    let public = match algorithm {
        Algorithm::RsaSha256 => {
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(stored.trim())
                .map_err(|_| KeyProblem("the stored key is not an RSA key: save the key again, or generate one".into()))?;
            rsa::RsaPublicKey::from(&key).to_public_key_der().map_err(|_| KeyProblem("cannot be encoded".into()))?.as_bytes().to_vec()
        }
        Algorithm::Ed25519Sha256 => {
            let seed = ed25519_seed(stored.trim())
                .map_err(|_| KeyProblem("the stored key is not an Ed25519 key: save the key again, or generate one".into()))?;
            ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes().to_vec()
        }
    };
    Ok(format!("v=DKIM1; k={}; p={}", algorithm.key_type(), BASE64.encode(public)))
}

/// The signing configuration for one message.
pub fn config(algorithm: Algorithm, domain: &str, selector: &str, stored: &str) -> Result<DkimConfig, KeyProblem> {
    let key = DkimSigningKey::new(stored.trim(), algorithm.lettre())
        .map_err(|_| KeyProblem(format!("the stored DKIM key is not an {} key: save the key again, or generate one", algorithm.key_type())))?;
    let headers = SIGNED_HEADERS.iter().map(|name| HeaderName::new_from_ascii_str(name)).collect();
    let relaxed = DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed };
    Ok(DkimConfig::new(selector.to_owned(), domain.trim_end_matches('.').to_owned(), key, headers, relaxed))
}

/// Whether `text` is usable as a DNS name (a domain) or, with `label`, one
/// label (a selector): letters, digits, hyphens, dots between labels.
pub fn valid_dns(text: &str, label: bool) -> bool {
    let text = text.trim_end_matches('.');
    let labels: Vec<&str> = text.split('.').collect();
    !text.is_empty()
        && (!label || labels.len() == 1)
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_round_trip_and_their_record_is_the_public_key() {
        let stored = generate(Algorithm::Ed25519Sha256);
        assert_eq!(normalize(Algorithm::Ed25519Sha256, &stored).unwrap(), stored);
        // RFC 8463 appendix A.2: the example key and its public half.
        let seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
        assert_eq!(record_value(Algorithm::Ed25519Sha256, seed).unwrap(), "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
        assert_eq!(normalize(Algorithm::Ed25519Sha256, pem).unwrap(), seed, "PKCS#8 PEM is taken too");
        assert!(config(Algorithm::Ed25519Sha256, "example.com", "brisbane", seed).is_ok());
        assert!(normalize(Algorithm::Ed25519Sha256, "not a key").is_err());
        assert!(normalize(Algorithm::RsaSha256, seed).is_err(), "an Ed25519 seed is no RSA key");
    }

    #[test]
    fn a_problem_never_quotes_the_key() {
        let secret = "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END RSA PRIVATE KEY-----";
        let err = normalize(Algorithm::RsaSha256, secret).unwrap_err().to_string();
        assert!(!err.contains("TOPSECRET"), "{err}");
    }

    #[test]
    fn names_are_dns_names() {
        assert!(valid_dns("mail2026", true) && valid_dns("s1-waymark", true));
        assert!(!valid_dns("a.b", true) && !valid_dns("", true) && !valid_dns("-x", true) && !valid_dns("a b", true));
        assert!(valid_dns("example.com", false) && valid_dns("mail.example.co.uk.", false));
        assert!(!valid_dns("example..com", false) && !valid_dns("exa mple.com", false) && !valid_dns("x\".com", false));
        assert_eq!(record_name("s1", "example.com."), "s1._domainkey.example.com");
    }
}
