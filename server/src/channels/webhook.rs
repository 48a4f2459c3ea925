//! Webhooks and data append: calls to URLs a marketer wrote, through the
//! guarded [`Client`](super::http::Client). Each call is recorded in
//! `http_calls` with the status and the start of the reply.
//!
//! Outcomes map onto the outbox's retry rules: 429 and 5xx (and network
//! trouble) are worth retrying, honouring `Retry-After`; other 4xx and
//! refused URLs are not.

use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::http::{CallError, Client, Reply, Request};
use super::Job;
use crate::runtime::outbox::Failure;
use crate::db::Pool;

/// How much of a reply is kept on record.
const EXCERPT_BYTES: usize = 2048;
/// How much of a data-append reply is read.
const APPEND_BYTES: usize = 1024 * 1024;

pub struct Webhook<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub format: &'a str,
    pub headers: &'a Map<String, Value>,
    pub body: &'a Value,
}

pub async fn call(pool: &Pool, client: &Client, job: &Job, hook: Webhook<'_>) -> Result<(), Failure> {
    let method = Method::from_bytes(hook.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::permanent(format!("“{}” is not an HTTP method", hook.method)))?;
    let mut headers = vec![("Idempotency-Key".to_owned(), job.key.clone())];
    for (name, value) in hook.headers {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        headers.push((name.clone(), value));
    }
    if let Some(reason) = unusable_header(&headers) {
        // Refused before sending: a value with a line break (a merge value
        // can bring one) must not become a second header, and trying again
        // would not help.
        record(pool, job, "webhook", method.as_str(), hook.url, &Err(CallError::Invalid(reason.clone()))).await;
        return Err(Failure::permanent(reason));
    }
    let body = if method == Method::GET || method == Method::HEAD || hook.body.is_null() {
        None
    } else if hook.format == "form" {
        let Value::Object(fields) = hook.body else {
            return Err(Failure::permanent("a form body must be an object of fields"));
        };
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            form.append_pair(name, &text(value));
        }
        Some(("application/x-www-form-urlencoded", form.finish().into_bytes()))
    } else {
        Some(("application/json", hook.body.to_string().into_bytes()))
    };
    let request = Request { method: method.clone(), url: hook.url.to_owned(), headers, body };
    let reply = client.send(request, EXCERPT_BYTES).await;
    record(pool, job, "webhook", method.as_str(), hook.url, &reply).await;
    let reply = reply.map_err(failure)?;
    judge(&reply)
}

/// Data append: GET the URL, read the JSON reply, and map its fields
/// (`a.b` reaches into objects) onto contact fields.
pub async fn append(pool: &Pool, client: &Client, job: &Job, url: &str, mapping: &Map<String, Value>) -> Result<Map<String, Value>, Failure> {
    let request = Request {
        method: Method::GET,
        url: url.to_owned(),
        headers: vec![("Accept".into(), "application/json".into())],
        body: None,
    };
    let reply = client.send(request, APPEND_BYTES).await;
    record(pool, job, "data_append", "GET", url, &reply).await;
    let reply = reply.map_err(failure)?;
    judge(&reply)?;
    if reply.truncated {
        return Err(Failure::permanent(format!("the data append reply is larger than {} KiB", APPEND_BYTES / 1024)));
    }
    let data: Value = serde_json::from_slice(&reply.body)
        .map_err(|err| Failure::permanent(format!("the data append reply is not JSON: {err}")))?;
    let mut updates = Map::new();
    for (from, to) in mapping {
        let Some(field) = to.as_str().filter(|f| !f.trim().is_empty()) else { continue };
        let found = from.split('.').try_fold(&data, |value, key| value.get(key));
        if let Some(value) = found.filter(|v| !v.is_null()) {
            updates.insert(field.to_owned(), value.clone());
        }
    }
    Ok(updates)
}

/// Why a header cannot be sent as written: a name that is not a header
/// name, or a value with a line break or another character headers cannot
/// carry. The value itself is not repeated (it may be a secret).
fn unusable_header(headers: &[(String, String)]) -> Option<String> {
    headers.iter().find_map(|(name, value)| {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            Some(format!("“{name}” is not a usable header name"))
        } else if reqwest::header::HeaderValue::from_str(value).is_err() {
            Some(format!("the {name} header's value has a line break or another character a header cannot carry"))
        } else {
            None
        }
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn failure(err: CallError) -> Failure {
    match err {
        CallError::Refused(reason) => Failure::permanent(format!("refused: {reason}")),
        CallError::Invalid(reason) => Failure::permanent(reason),
        CallError::Network(reason) => Failure::transient(reason),
    }
}

/// 2xx is done; 429 and 5xx may be tried again; the rest is final.
fn judge(reply: &Reply) -> Result<(), Failure> {
    let status = reply.status;
    if status.is_success() {
        return Ok(());
    }
    let excerpt = excerpt(&reply.body);
    let reason = if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") };
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let retry_after = reply.headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| retry_after(v, Timestamp::now()));
        Err(Failure { reason, retryable: true, retry_after })
    } else {
        Err(Failure::permanent(reason))
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: Timestamp) -> Option<SignedDuration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(SignedDuration::from_secs(secs.into()));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(at.duration_since(now).max(SignedDuration::ZERO))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(EXCERPT_BYTES)]);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Keeps the call on record; a failure to record is logged, never fatal to the call.
async fn record(pool: &Pool, job: &Job, kind: &str, method: &str, url: &str, reply: &Result<Reply, CallError>) {
    let (status, text) = match reply {
        Ok(reply) => (Some(reply.status.as_u16() as i64), String::from_utf8_lossy(&reply.body[..reply.body.len().min(EXCERPT_BYTES)]).into_owned()),
        Err(err) => (None, err.reason().to_owned()),
    };
    let result = sqlx::query(
        "INSERT INTO http_calls (idempotency_key, participant_id, kind, method, url, status, excerpt, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&job.key)
    .bind(job.participant)
    .bind(kind)
    .bind(method)
    .bind(url)
    .bind(status)
    .bind(text)
    .bind(Timestamp::now().to_string())
    .execute(pool)
    .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not record an HTTP call");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_with_line_breaks_are_refused_by_name() {
        let header = |value: &str| vec![("Idempotency-Key".to_owned(), "k".to_owned()), ("X-Name".to_owned(), value.to_owned())];
        assert_eq!(unusable_header(&header("bob")), None);
        let reason = "the X-Name header's value has a line break or another character a header cannot carry";
        assert_eq!(unusable_header(&header("bob\r\nX-Admin: true")).as_deref(), Some(reason));
        assert_eq!(unusable_header(&header("bob\nX-Admin: true")).as_deref(), Some(reason));
        assert_eq!(unusable_header(&[("Bad Name".into(), "v".into())]).as_deref(), Some("“Bad Name” is not a usable header name"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now: Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(retry_after("120", now), Some(SignedDuration::from_secs(120)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(SignedDuration::from_secs(60)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(SignedDuration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }
}
