//! S3 upload: the participant's contact as JSON or CSV, `PUT` to
//! `{endpoint}/{bucket}/{key}` (path style, so any S3-compatible store
//! works) signed with AWS Signature Version 4. The endpoint is the admin's,
//! so this client is not behind the SSRF guard; it follows no redirects.

use std::time::Duration;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::settings::{Secret, S3};
use crate::runtime::outbox::Failure;

pub struct Uploader {
    http: reqwest::Client,
}

impl Default for Uploader {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Waymark/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Uploader { http }
    }
}

/// The contact as the file to upload: pretty JSON, or a CSV header and row
/// (email, mobile, timezone, then its fields by name).
pub fn contact_file(contact: &Value, format: &str) -> Result<(Vec<u8>, &'static str), Failure> {
    match format {
        "json" | "" => Ok((serde_json::to_vec_pretty(contact).expect("JSON serializes"), "application/json")),
        "csv" => {
            let text = |v: Option<&Value>| match v {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => String::new(),
                Some(other) => other.to_string(),
            };
            let mut header = vec!["email".to_owned(), "mobile".to_owned(), "timezone".to_owned()];
            let mut row = vec![text(contact.get("email")), text(contact.get("mobile")), text(contact.get("timezone"))];
            if let Some(Value::Object(fields)) = contact.get("fields") {
                let mut names: Vec<&String> = fields.keys().collect();
                names.sort();
                for name in names {
                    header.push(name.clone());
                    row.push(text(fields.get(name)));
                }
            }
            let mut out = csv::Writer::from_writer(Vec::new());
            out.write_record(&header).and_then(|_| out.write_record(&row)).map_err(|err| Failure::permanent(err.to_string()))?;
            Ok((out.into_inner().map_err(|err| Failure::permanent(err.to_string()))?, "text/csv"))
        }
        other => Err(Failure::permanent(format!("“{other}” is not an upload format; use json or csv"))),
    }
}

impl Uploader {
    pub async fn put(&self, s3: &S3, secret: &Option<Secret>, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), Failure> {
        let Some(secret) = secret else { return Err(Failure::permanent("the S3 secret access key is not set")) };
        if bucket.is_empty() || bucket.contains('/') {
            return Err(Failure::permanent(format!("“{bucket}” is not a bucket name")));
        }
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            return Err(Failure::permanent("the upload has no key (file name)"));
        }
        let endpoint = url::Url::parse(&s3.endpoint).map_err(|err| Failure::permanent(format!("the S3 endpoint is not a URL: {err}")))?;
        let path = format!("/{}/{}", encode(bucket), key.split('/').map(encode).collect::<Vec<_>>().join("/"));
        let url = format!("{}{}", s3.endpoint.trim_end_matches('/'), path);
        let host = match endpoint.port() {
            Some(port) => format!("{}:{port}", endpoint.host_str().unwrap_or_default()),
            None => endpoint.host_str().unwrap_or_default().to_owned(),
        };
        let signed = sign(&SignInput {
            method: "PUT",
            host: &host,
            path: &path,
            payload: &body,
            region: &s3.region,
            access_key: &s3.access_key_id,
            secret: secret.expose(),
            at: Timestamp::now(),
        });
        let response = self
            .http
            .put(&url)
            .header("x-amz-date", &signed.date)
            .header("x-amz-content-sha256", &signed.payload_hash)
            .header("authorization", &signed.authorization)
            .header("content-type", content_type)
            .body(body)
            .timeout(Duration::from_secs(s3.timeout_secs))
            .send()
            .await
            .map_err(|err| Failure::transient(format!("could not reach the S3 endpoint {}: {}", s3.endpoint, super::http::chain(&err))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let tag = |name: &str| text.split(&format!("<{name}>")).nth(1).and_then(|rest| rest.split(&format!("</{name}>")).next()).map(str::to_owned);
        let detail = match (tag("Code"), tag("Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => format!("HTTP {status}"),
        };
        let reason = format!("S3 refused the upload of {bucket}/{key}: {detail}");
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::transient(reason))
        } else {
            Err(Failure::permanent(reason))
        }
    }
}

/// RFC 3986 unreserved characters stay; everything else is %XX (AWS's URI encoding).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub struct SignInput<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// Already URI-encoded.
    pub path: &'a str,
    pub payload: &'a [u8],
    pub region: &'a str,
    pub access_key: &'a str,
    pub secret: &'a str,
    pub at: Timestamp,
}

pub struct Signed {
    pub date: String,
    pub payload_hash: String,
    pub authorization: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// AWS Signature Version 4 over host, x-amz-content-sha256 and x-amz-date.
pub fn sign(input: &SignInput<'_>) -> Signed {
    let date = input.at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let day = &date[..8];
    let payload_hash = hex(&Sha256::digest(input.payload));
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{}\n{}\n\nhost:{}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{date}\n\n{signed_headers}\n{payload_hash}",
        input.method, input.path, input.host
    );
    let scope = format!("{day}/{}/s3/aws4_request", input.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let key = ["s3", "aws4_request"].iter().fold(
        hmac(&hmac(format!("AWS4{}", input.secret).as_bytes(), day), input.region),
        |key, part| hmac(&key, part),
    );
    let signature = hex(&hmac(&key, &to_sign));
    let authorization =
        format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", input.access_key);
    Signed { date, payload_hash, authorization }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn signature_v4_matches_botocore() {
        // Expected value computed independently with botocore's SigV4Auth
        // for the same request, credentials and time.
        let signed = sign(&SignInput {
            method: "PUT",
            host: "127.0.0.1:9000",
            path: "/exports/contacts/ada%40x.test.json",
            payload: b"{\"email\":\"ada@x.test\"}",
            region: "us-east-1",
            access_key: "AKIDEXAMPLE",
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            at: "2026-11-23T09:00:00Z".parse().unwrap(),
        });
        assert_eq!(signed.date, "20261123T090000Z");
        assert_eq!(signed.authorization, BOTOCORE);
    }

    const BOTOCORE: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261123/us-east-1/s3/aws4_request, \
                            SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
                            Signature=6e6ad6166d19dca214181b2e256853f418433e9b8f9c478ad7617dc63810176a";

    #[test]
    fn contacts_become_json_or_a_csv_row() {
        let contact = json!({"email": "ada@x.test", "mobile": null, "fields": {"z": 1, "a": "x,y"}});
        let (csv, kind) = contact_file(&contact, "csv").unwrap();
        assert_eq!((String::from_utf8(csv).unwrap().as_str(), kind), ("email,mobile,timezone,a,z\nada@x.test,,,\"x,y\",1\n", "text/csv"));
        assert!(contact_file(&contact, "xml").is_err());
    }
}
