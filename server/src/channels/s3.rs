//! S3 upload: the participant's contact as JSON or CSV, `PUT` to
//! `{endpoint}/{bucket}/{key}` (path style, so any S3-compatible store
//! works). The request is signed (AWS Signature Version 4, as a presigned
//! URL) by rusty-s3, a small sans-IO crate: it builds and signs the URL,
//! our own HTTP client sends it, so uploads keep this client's timeouts and
//! its refusal to follow redirects. The endpoint is the admin's, so this
//! client is not behind the SSRF guard.

use std::time::Duration;

use rusty_s3::actions::{PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use serde_json::Value;

use super::settings::{Secret, S3};
use crate::runtime::outbox::Failure;

/// How long a signed upload URL is valid: long enough to send the file,
/// short enough that a URL seen in a log is soon worthless.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);

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
        let bucket_at = Bucket::new(endpoint, UrlStyle::Path, bucket.to_owned(), s3.region.clone())
            .map_err(|err| Failure::permanent(format!("the S3 endpoint {} cannot be used: {err}", s3.endpoint)))?;
        let credentials = Credentials::new(s3.access_key_id.clone(), secret.expose().to_owned());
        let mut action = PutObject::new(&bucket_at, Some(&credentials), key);
        action.headers_mut().insert("content-type", content_type);
        let url = action.sign(SIGNED_FOR);
        let response = self
            .http
            .put(url)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn contacts_become_json_or_a_csv_row() {
        let contact = json!({"email": "ada@x.test", "mobile": null, "fields": {"z": 1, "a": "x,y"}});
        let (csv, kind) = contact_file(&contact, "csv").unwrap();
        assert_eq!((String::from_utf8(csv).unwrap().as_str(), kind), ("email,mobile,timezone,a,z\nada@x.test,,,\"x,y\",1\n", "text/csv"));
        assert!(contact_file(&contact, "xml").is_err());
    }
}
