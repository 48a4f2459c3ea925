//! CRM push: the contact upserted into Zoho CRM or Keap, in each API's
//! request shape, with the admin's OAuth access token. Only `upsert` (the
//! default operation) exists so far. The base URL is the admin's, so this
//! client is not behind the SSRF guard; it follows no redirects.
//!
//! - Zoho: `POST {base}/crm/v2/Contacts/upsert`, `Authorization: Zoho-oauthtoken …`,
//!   `{"data": [{Email, First_Name, Last_Name, Mobile}], "duplicate_check_fields": ["Email"]}`.
//! - Keap: `PUT {base}/crm/rest/v1/contacts`, `Authorization: Bearer …`,
//!   `{"duplicate_option": "Email", "email_addresses": [...], "given_name", "family_name", "phone_numbers": [...]}`.

use std::time::Duration;

use serde_json::{json, Value};

use super::settings::{Crm, CrmProvider, Secret};
use crate::runtime::outbox::Failure;

pub struct Pusher {
    http: reqwest::Client,
}

impl Default for Pusher {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Waymark/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Pusher { http }
    }
}

fn field<'a>(contact: &'a Value, name: &str) -> Option<&'a str> {
    contact.get(name).or_else(|| contact.get("fields").and_then(|f| f.get(name))).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The request a provider expects: method, path under the base URL, body.
pub fn request(provider: CrmProvider, contact: &Value) -> (reqwest::Method, &'static str, Value) {
    let (email, mobile) = (field(contact, "email"), field(contact, "mobile"));
    let (first, last) = (field(contact, "first_name"), field(contact, "last_name"));
    match provider {
        CrmProvider::Zoho => {
            let mut record = json!({"Email": email, "First_Name": first, "Last_Name": last.or(email), "Mobile": mobile});
            record.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            (reqwest::Method::POST, "/crm/v2/Contacts/upsert", json!({"data": [record], "duplicate_check_fields": ["Email"]}))
        }
        CrmProvider::Keap => {
            let mut body = json!({"duplicate_option": "Email", "given_name": first, "family_name": last});
            if let Some(email) = email {
                body["email_addresses"] = json!([{"email": email, "field": "EMAIL1"}]);
            }
            if let Some(mobile) = mobile {
                body["phone_numbers"] = json!([{"number": mobile, "field": "PHONE1"}]);
            }
            body.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            (reqwest::Method::PUT, "/crm/rest/v1/contacts", body)
        }
    }
}

impl Pusher {
    pub async fn push(&self, crm: &Crm, token: &Option<Secret>, operation: &str, contact: &Value) -> Result<(), Failure> {
        if !matches!(operation, "" | "upsert") {
            return Err(Failure::permanent(format!("the CRM operation “{operation}” is not supported; use upsert")));
        }
        let Some(token) = token else { return Err(Failure::permanent("the CRM access token is not set")) };
        let (method, path, body) = request(crm.provider, contact);
        let authorization = match crm.provider {
            CrmProvider::Zoho => format!("Zoho-oauthtoken {}", token.expose()),
            CrmProvider::Keap => format!("Bearer {}", token.expose()),
        };
        let url = format!("{}{path}", crm.base_url.trim_end_matches('/'));
        let response = self
            .http
            .request(method, &url)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(crm.timeout_secs))
            .send()
            .await
            .map_err(|err| Failure::transient(format!("could not reach the CRM at {}: {}", crm.base_url, super::http::chain(&err))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(300).collect();
        let reason = format!("the CRM answered HTTP {status}: {}", excerpt.trim());
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::transient(reason))
        } else {
            Err(Failure::permanent(reason))
        }
    }
}
