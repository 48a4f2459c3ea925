//! SMS through a Twilio-compatible provider:
//! `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with a form body
//! (To, From, Body, StatusCallback) and basic auth (sid, token). The base
//! URL is the admin's, so this client is not behind the SSRF guard; it
//! never follows redirects.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::settings::{Secret, SenderChoice, Sms};
use crate::runtime::outbox::Failure;

/// `+` and 8 to 15 digits.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The North American area code of an E.164 number (`+1 AAA …`).
fn area_code(number: &str) -> Option<&str> {
    let digits = number.strip_prefix("+1")?;
    (digits.len() == 10).then(|| &digits[..3])
}

pub struct Texter {
    http: reqwest::Client,
    turn: AtomicUsize,
}

impl Default for Texter {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Waymark/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Texter { http, turn: AtomicUsize::new(0) }
    }
}

/// What the provider accepted.
pub struct Sent {
    pub sid: String,
    pub from: String,
    pub status: String,
}

/// What the provider accepted: its sid and first status.
#[derive(Deserialize)]
pub(super) struct Accepted {
    pub sid: String,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

impl Texter {
    /// The sender for `to`: one with its area code if asked and found,
    /// otherwise the next in turn.
    pub fn sender<'a>(&self, sms: &'a Sms, to: &str) -> &'a str {
        if sms.choice == SenderChoice::AreaCode {
            if let Some(found) = area_code(to).and_then(|code| sms.senders.iter().find(|s| area_code(s) == Some(code))) {
                return found;
            }
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        &sms.senders[turn % sms.senders.len()]
    }

    pub async fn send(&self, sms: &Sms, token: &Option<Secret>, to: &str, text: &str) -> Result<Sent, Failure> {
        if !is_e164(to) {
            return Err(Failure::permanent(format!("“{to}” is not a mobile number in E.164 form (+15551234567)")));
        }
        let Some(token) = token else { return Err(Failure::permanent("the SMS provider's token is not set")) };
        if sms.senders.is_empty() {
            return Err(Failure::permanent("no SMS sender number is configured"));
        }
        let from = self.sender(sms, to).to_owned();
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", sms.base_url.trim_end_matches('/'), sms.account_sid);
        let mut form = vec![("To", to), ("From", from.as_str()), ("Body", text)];
        if let Some(callback) = sms.status_callback.as_deref().filter(|c| !c.is_empty()) {
            form.push(("StatusCallback", callback));
        }
        let accepted = self.post(sms, token, &url, &form, "SMS provider", "message").await?;
        Ok(Sent { sid: accepted.sid, from, status: accepted.status.unwrap_or_else(|| "queued".into()) })
    }

    /// POSTs `form` to the provider with basic auth (account sid, token);
    /// what it accepted, or why not. `who` names the provider in reasons,
    /// `what` the thing whose sid the reply carries.
    pub(super) async fn post(&self, sms: &Sms, token: &Secret, url: &str, form: &[(&str, &str)], who: &str, what: &str) -> Result<Accepted, Failure> {
        let response = self
            .http
            .post(url)
            .basic_auth(&sms.account_sid, Some(token.expose()))
            .form(form)
            .timeout(Duration::from_secs(sms.timeout_secs))
            .send()
            .await
            .map_err(|err| Failure::transient(format!("could not reach the {who}: {}", super::http::chain(&err))))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::webhook::retry_after(v, jiff::Timestamp::now()));
        let body = response.bytes().await.map_err(|err| Failure::transient(format!("the {who}'s reply was cut off: {err}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|err| Failure::permanent(format!("the {who}'s reply has no {what} sid: {err}")));
        }
        let problem = serde_json::from_slice::<Problem>(&body).ok();
        let detail = match problem {
            Some(Problem { code: Some(code), message: Some(message) }) => format!("{message} (error {code})"),
            Some(Problem { message: Some(message), .. }) => message,
            _ => String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned(),
        };
        let reason = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!("the {who} refused the account id or token: {detail}"),
            _ => format!("the {who} answered HTTP {status}: {detail}"),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Failure { reason, retryable: true, retry_after })
        } else {
            Err(Failure::permanent(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(choice: SenderChoice) -> Sms {
        Sms {
            base_url: "http://127.0.0.1:1".into(),
            account_sid: "AC1".into(),
            senders: vec!["+12125550100".into(), "+14155550100".into(), "+13125550100".into()],
            choice,
            status_callback: None,
            timeout_secs: 5,
            voice: None,
            inbound_url: None,
        }
    }

    #[test]
    fn senders_take_turns_or_match_the_area_code() {
        let texter = Texter::default();
        let sms = pool(SenderChoice::RoundRobin);
        let picks: Vec<&str> = (0..4).map(|_| texter.sender(&sms, "+14155551234")).collect();
        assert_eq!(picks, ["+12125550100", "+14155550100", "+13125550100", "+12125550100"]);
        let sms = pool(SenderChoice::AreaCode);
        assert_eq!(texter.sender(&sms, "+14155551234"), "+14155550100");
        assert_eq!(texter.sender(&sms, "+13125559999"), "+13125550100");
        assert!(sms.senders.contains(&texter.sender(&sms, "+447700900123").to_owned()), "no match: the next in turn");
        assert!(is_e164("+447700900123") && !is_e164("4155551234") && !is_e164("+1-415"));
    }
}
