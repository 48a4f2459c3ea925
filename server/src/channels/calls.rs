//! Automatic calls through a Twilio-compatible provider:
//! `POST {base}/2010-04-01/Accounts/{sid}/Calls.json` with a form body (To,
//! From, Twiml or Url, StatusCallback, StatusCallbackEvent, Timeout,
//! TimeLimit) and basic auth (sid, token), using the SMS provider's account,
//! token and sender numbers. Placing a call is all this does: its outcome
//! arrives later at the status callback (`api::call_status`), which updates
//! the conversation record and hands the final status to the participant.

use app::core::engine::CALL_TIME_LIMIT;

use super::settings::{Secret, Sms, Voice};
use super::sms::{is_e164, Sent, Texter};
use crate::runtime::outbox::Failure;

/// What the provider is asked to report: every step of the call's progress.
const EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

impl Texter {
    /// Places a call to `to` that says `script` (or runs the voice settings'
    /// TwiML URL when the script is empty); the provider's call sid.
    pub async fn call(&self, sms: &Sms, token: &Option<Secret>, voice: &Voice, to: &str, script: &str) -> Result<Sent, Failure> {
        if !is_e164(to) {
            return Err(Failure::permanent(format!("“{to}” is not a phone number in E.164 form (+15551234567)")));
        }
        let Some(token) = token else { return Err(Failure::permanent("the telephony provider's token is not set")) };
        if sms.senders.is_empty() {
            return Err(Failure::permanent("no caller number is configured (the SMS provider's senders)"));
        }
        let (say, twiml_url) = (twiml(script), voice.url.as_deref().filter(|u| !u.trim().is_empty()));
        let instructions = match (script.trim().is_empty(), twiml_url) {
            (false, _) => ("Twiml", say.as_str()),
            (true, Some(url)) => ("Url", url),
            (true, None) => {
                return Err(Failure::permanent(
                    "the automatic call has nothing to say: write the step's script, or set a TwiML URL (voice.url) in the SMS provider settings",
                ))
            }
        };
        let from = self.sender(sms, to).to_owned();
        let url = format!("{}/2010-04-01/Accounts/{}/Calls.json", sms.base_url.trim_end_matches('/'), sms.account_sid);
        let (ring, limit) = (voice.ring_secs.to_string(), CALL_TIME_LIMIT.as_secs().to_string());
        let mut form = vec![
            ("To", to),
            ("From", from.as_str()),
            instructions,
            ("StatusCallback", voice.status_callback.as_str()),
            ("StatusCallbackMethod", "POST"),
            ("Timeout", ring.as_str()),
            ("TimeLimit", limit.as_str()),
        ];
        form.extend(EVENTS.iter().map(|event| ("StatusCallbackEvent", *event)));
        let accepted = self.post(sms, token, &url, &form, "telephony provider", "call").await?;
        Ok(Sent { sid: accepted.sid, from, status: accepted.status.unwrap_or_else(|| "queued".into()) })
    }
}

impl Texter {
    /// Click-to-call (the agent's workspace): rings the agent's own phone
    /// `agent` from a caller number, and once they answer dials `contact`
    /// with that number shown (TwiML `<Dial>`), reporting the call's
    /// progress to `callback`; the contact's leg reports there too (with
    /// the agent's call as its ParentCallSid). The provider's call sid.
    pub async fn bridge(&self, sms: &Sms, token: &Option<Secret>, agent: &str, contact: &str, callback: &str, ring_secs: u64) -> Result<Sent, Failure> {
        for (number, whose) in [(agent, "your phone"), (contact, "the contact's number")] {
            if !is_e164(number) {
                return Err(Failure::permanent(format!("“{number}” ({whose}) is not a phone number in E.164 form (+15551234567)")));
            }
        }
        let Some(token) = token else { return Err(Failure::permanent("the telephony provider's token is not set")) };
        if sms.senders.is_empty() {
            return Err(Failure::permanent("no caller number is configured (the SMS provider's senders)"));
        }
        let from = self.sender(sms, contact).to_owned();
        let dial = format!(
            "<Response><Dial callerId=\"{}\"><Number statusCallback=\"{}\" statusCallbackMethod=\"POST\" statusCallbackEvent=\"{}\">{}</Number></Dial></Response>",
            escape(&from),
            escape(callback),
            EVENTS.join(" "),
            escape(contact)
        );
        let url = format!("{}/2010-04-01/Accounts/{}/Calls.json", sms.base_url.trim_end_matches('/'), sms.account_sid);
        let (ring, limit) = (ring_secs.to_string(), CALL_TIME_LIMIT.as_secs().to_string());
        let mut form = vec![
            ("To", agent),
            ("From", from.as_str()),
            ("Twiml", dial.as_str()),
            ("StatusCallback", callback),
            ("StatusCallbackMethod", "POST"),
            ("Timeout", ring.as_str()),
            ("TimeLimit", limit.as_str()),
        ];
        form.extend(EVENTS.iter().map(|event| ("StatusCallbackEvent", *event)));
        let accepted = self.post(sms, token, &url, &form, "telephony provider", "call").await?;
        Ok(Sent { sid: accepted.sid, from, status: accepted.status.unwrap_or_else(|| "queued".into()) })
    }
}

/// Text for TwiML: XML-escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// TwiML that says `script` (XML-escaped: merge values cannot add verbs).
pub fn twiml(script: &str) -> String {
    let mut escaped = String::with_capacity(script.len());
    for c in script.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    format!("<Response><Say>{}</Say></Response>", escaped.trim())
}

/// How far along a call status is; statuses only move forward. `None` for
/// a status we do not know (ignored).
pub fn rank(status: &str) -> Option<u8> {
    Some(match status {
        "queued" => 0,
        "initiated" => 1,
        "ringing" => 2,
        "in-progress" => 3,
        "completed" | "busy" | "no-answer" | "failed" | "canceled" => 4,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_spoken_as_escaped_twiml() {
        assert_eq!(twiml(" Hi Ada "), "<Response><Say>Hi Ada</Say></Response>");
        assert_eq!(
            twiml("</Say><Dial>+1900</Dial> & \"x\""),
            "<Response><Say>&lt;/Say&gt;&lt;Dial&gt;+1900&lt;/Dial&gt; &amp; &quot;x&quot;</Say></Response>"
        );
    }

    #[test]
    fn statuses_move_forward_and_finals_rank_alike() {
        let order: Vec<u8> = ["queued", "initiated", "ringing", "in-progress", "completed"].iter().map(|s| rank(s).unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(["busy", "no-answer", "failed", "canceled"].iter().all(|s| rank(s) == rank("completed")));
        assert_eq!(rank("answered-by-robot"), None);
    }
}
