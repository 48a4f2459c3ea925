//! What one message in the bounce and reply mailbox is: a delivery status
//! notification (RFC 3464), a feedback-loop complaint (ARF, RFC 5965), a
//! message to a `List-Unsubscribe` mailto address, a reply to one of our
//! messages (an auto-reply per RFC 3834 and the usual out-of-office signs,
//! or a person), or none of those.
//!
//! Pure: bytes in, a [`Classified`] out. It never looks anything up; which
//! of the Message-IDs it finds are ours is for the caller to say, so a
//! message naming none of ours changes nothing.

use app::core::engagement::BounceType;
use app::core::limits;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// Message-IDs taken from one message at most (a long `References`).
const MAX_ORIGINALS: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The message's own Message-ID, without angle brackets.
    pub message_id: Option<String>,
    pub finding: Finding,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A DSN (or a mailer daemon's plain-text bounce) with each recipient
    /// that failed. `originals`: the Message-IDs of the returned message.
    Bounce { originals: Vec<String>, failed: Vec<Failed> },
    /// A feedback-loop report: the recipient marked the message as spam.
    Complaint { originals: Vec<String>, recipient: Option<String>, feedback_type: String },
    /// Sent to a `List-Unsubscribe` mailto address: the recipients (To,
    /// Cc, Delivered-To, X-Original-To) whose local part carries a token
    /// after a `+` (`unsubscribe+TOKEN@…`). Whether a token is ours, the
    /// caller (who holds the key) says.
    Unsubscribe { to: Vec<String> },
    /// A message answering `originals` (In-Reply-To, References).
    Reply { originals: Vec<String>, auto: Option<&'static str>, excerpt: String },
    /// Nothing to act on, and why (a delay warning, a DMARC report, a
    /// message that answers nothing).
    Other(String),
}

/// One recipient a DSN reports as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    pub recipient: Option<String>,
    pub bounce: BounceType,
    /// The enhanced status code (RFC 3463), `5.1.1`.
    pub status: Option<String>,
    /// The remote server's words, cut to [`limits::BOUNCE_DIAGNOSTIC`].
    pub diagnostic: Option<String>,
}

/// Reads `raw` (an RFC 5322 message).
pub fn classify(raw: &[u8]) -> Classified {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Classified { message_id: None, finding: Finding::Other("not a readable message".into()) };
    };
    let message_id = message.message_id().map(|id| unbracket(id).to_owned()).filter(|id| !id.is_empty());
    let finding = report(&message).or_else(|| plain_bounce(&message)).or_else(|| unsubscribe(&message)).unwrap_or_else(|| reply(&message));
    Classified { message_id, finding }
}

/// A multipart/report: delivery status or feedback report.
fn report(message: &Message<'_>) -> Option<Finding> {
    let root = message.root_part().content_type()?;
    let is_report = root.ctype().eq_ignore_ascii_case("multipart") && root.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"));
    let kind = root.attribute("report-type").unwrap_or_default().to_ascii_lowercase();
    let has = |t: &str, s: &str| message.parts.iter().any(|p| p.is_content_type(t, s));
    if is_report && (kind == "delivery-status" || kind == "global-delivery-status" || has("message", "delivery-status")) {
        return Some(delivery_status(message));
    }
    if is_report && (kind == "feedback-report" || has("message", "feedback-report")) {
        return Some(feedback_report(message));
    }
    if is_report {
        return Some(Finding::Other(format!("a {kind} report")));
    }
    None
}

/// RFC 3464: the per-recipient fields of the message/delivery-status part.
fn delivery_status(message: &Message<'_>) -> Finding {
    let originals = returned_ids(message);
    let status_part = message
        .parts
        .iter()
        .find(|p| p.is_content_type("message", "delivery-status") || p.is_content_type("message", "global-delivery-status"));
    let Some(part) = status_part else {
        return Finding::Other("a delivery report without its status part".into());
    };
    let text = String::from_utf8_lossy(part.contents());
    let groups = field_groups(&text);
    let mut failed = Vec::new();
    let mut seen_actions = Vec::new();
    // The first group is about the message, the rest one per recipient.
    for group in groups.iter().skip(1) {
        let field = |name: &str| group.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let action = field("action").unwrap_or("failed").trim().to_ascii_lowercase();
        seen_actions.push(action.clone());
        if action != "failed" {
            continue;
        }
        let diagnostic = field("diagnostic-code").map(|d| cut(d.split_once(';').map_or(d, |(_, text)| text).trim(), limits::BOUNCE_DIAGNOSTIC));
        let status = field("status").and_then(enhanced_code).or_else(|| diagnostic.as_deref().and_then(find_enhanced_code));
        let bounce = match status.as_deref().or(diagnostic.as_deref().and_then(basic_code)) {
            Some(code) if code.starts_with('5') => BounceType::Hard,
            _ => BounceType::Soft,
        };
        let recipient = field("final-recipient").or_else(|| field("original-recipient")).and_then(address_field);
        failed.push(Failed { recipient, bounce, status, diagnostic });
    }
    if failed.is_empty() {
        let actions = if seen_actions.is_empty() { "no recipient".to_owned() } else { seen_actions.join(", ") };
        return Finding::Other(format!("a delivery report with nothing failed ({actions})"));
    }
    Finding::Bounce { originals, failed }
}

/// RFC 5965: a complaint unless the report says otherwise (DMARC failure
/// reports use the same format, and are not complaints).
fn feedback_report(message: &Message<'_>) -> Finding {
    let originals = returned_ids(message);
    let fields = message
        .parts
        .iter()
        .find(|p| p.is_content_type("message", "feedback-report"))
        .map(|p| field_groups(&String::from_utf8_lossy(p.contents())).into_iter().flatten().collect::<Vec<_>>())
        .unwrap_or_default();
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim().to_owned());
    let feedback_type = field("feedback-type").unwrap_or_else(|| "abuse".into()).to_ascii_lowercase();
    if matches!(feedback_type.as_str(), "auth-failure" | "not-spam") {
        return Finding::Other(format!("a feedback report of type {feedback_type}"));
    }
    let recipient = field("original-rcpt-to")
        .or_else(|| field("removal-recipient"))
        .and_then(|v| address_field(&v))
        .or_else(|| returned_headers(message).and_then(|h| header_in(&h, "to")).and_then(|to| address_field(&to)));
    Finding::Complaint { originals, recipient, feedback_type }
}

/// A bounce that is not a multipart/report: from a mailer daemon, with a
/// bounce subject, quoting the message it returns. Its status is whatever
/// code it quotes; without one it counts as soft, which alone never marks
/// an address undeliverable.
fn plain_bounce(message: &Message<'_>) -> Option<Finding> {
    let from = message.from().and_then(|f| f.first()).and_then(|a| a.address()).unwrap_or_default().to_ascii_lowercase();
    let subject = message.subject().unwrap_or_default().to_ascii_lowercase();
    let daemon = ["mailer-daemon@", "postmaster@", "mail-daemon@"].iter().any(|p| from.starts_with(p));
    const SUBJECTS: [&str; 8] = [
        "undelivered mail",
        "delivery status notification",
        "mail delivery failed",
        "failure notice",
        "undeliverable",
        "returned mail",
        "delivery failure",
        "mail delivery subsystem",
    ];
    if !daemon || !SUBJECTS.iter().any(|s| subject.contains(s)) {
        return None;
    }
    let body = message.body_text(0).unwrap_or_default().into_owned();
    let mut originals = returned_ids(message);
    if originals.is_empty() {
        originals = quoted_ids(&body, message.message_id());
    }
    let status = find_enhanced_code(&body);
    let bounce = match status.as_deref().or_else(|| basic_code(&body)) {
        Some(code) if code.starts_with('5') => BounceType::Hard,
        _ => BounceType::Soft,
    };
    let diagnostic = body.lines().map(str::trim).find(|l| l.len() > 3 && (l.starts_with('5') || l.starts_with('4')) && basic_code(l).is_some());
    let failed = vec![Failed { recipient: None, bounce, status, diagnostic: diagnostic.map(|d| cut(d, limits::BOUNCE_DIAGNOSTIC)) }];
    Some(Finding::Bounce { originals, failed })
}

/// The hex digits of a token after the `+`, at least and at most (the
/// tracking tokens are 50; anything else is no token of ours).
const TOKEN_HEX: std::ops::RangeInclusive<usize> = 32..=64;

/// A message to an unsubscribe address: some recipient's local part ends
/// in `+` and a run of hex digits (a mail client's "unsubscribe" sends one
/// to the `List-Unsubscribe` mailto; a reply goes to the From address).
fn unsubscribe(message: &Message<'_>) -> Option<Finding> {
    let mut candidates = Vec::new();
    for name in ["To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To"] {
        for value in message.header_values(name) {
            let texts: Vec<String> = match value {
                mail_parser::HeaderValue::Address(address) => address.iter().filter_map(|a| a.address()).map(str::to_owned).collect(),
                mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
                mail_parser::HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
                _ => Vec::new(),
            };
            for text in texts {
                for word in text.split(|c: char| c == ',' || c == '<' || c == '>' || c.is_whitespace()) {
                    let Some((local, domain)) = word.rsplit_once('@') else { continue };
                    let Some((_, token)) = local.rsplit_once('+') else { continue };
                    if TOKEN_HEX.contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit()) && !domain.is_empty() {
                        push_unique(&mut candidates, cut(word, 320));
                    }
                }
            }
        }
    }
    candidates.truncate(MAX_ORIGINALS);
    (!candidates.is_empty()).then_some(Finding::Unsubscribe { to: candidates })
}

/// Anything else answers the messages it names in In-Reply-To and References.
fn reply(message: &Message<'_>) -> Finding {
    let mut originals = Vec::new();
    for name in ["In-Reply-To", "References"] {
        for value in message.header_values(name) {
            let text = match value {
                mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
                mail_parser::HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
                _ => Vec::new(),
            };
            for id in text.iter().flat_map(|t| bracketed_ids(t)) {
                push_unique(&mut originals, id);
            }
        }
    }
    if originals.is_empty() {
        return Finding::Other("answers no message (no In-Reply-To or References)".into());
    }
    let body = message.body_text(0).unwrap_or_default();
    Finding::Reply { originals, auto: auto_reply(message), excerpt: reply_excerpt(&body) }
}

/// Why this is an automatic reply, if it is (RFC 3834 and the common
/// out-of-office signs).
pub fn auto_reply(message: &Message<'_>) -> Option<&'static str> {
    let raw = |name: &str| message.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if raw("Auto-Submitted").is_some_and(|v| !v.is_empty() && v.split(';').next().unwrap_or_default().trim() != "no") {
        return Some("Auto-Submitted");
    }
    if raw("X-Autoreply").is_some() || raw("X-Autorespond").is_some() || raw("X-Autoresponder").is_some() {
        return Some("X-Autoreply");
    }
    if raw("Precedence").is_some_and(|v| matches!(v.as_str(), "auto_reply" | "bulk" | "junk" | "list")) {
        return Some("Precedence");
    }
    // RFC 3834 sends auto-replies from the null path; a person's reply has one.
    if raw("Return-Path").is_some_and(|v| v.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace()).is_empty()) {
        return Some("Return-Path <>");
    }
    message.subject().filter(|s| out_of_office_subject(s)).map(|_| "out-of-office subject")
}

/// Subjects auto-responders use, in the languages our contacts write.
pub fn out_of_office_subject(subject: &str) -> bool {
    const PATTERNS: [&str; 28] = [
        "out of office",
        "out of the office",
        "automatic reply",
        "auto reply",
        "auto-reply",
        "autoreply",
        "auto response",
        "auto-response",
        "autoresponse",
        "vacation reply",
        "on vacation",
        "away from my desk",
        "abwesenheit",
        "automatische antwort",
        "außer haus",
        "réponse automatique",
        "absence du bureau",
        "absent du bureau",
        "respuesta automática",
        "fuera de la oficina",
        "risposta automatica",
        "fuori ufficio",
        "automatisch antwoord",
        "afwezig",
        "resposta automática",
        "fora do escritório",
        "автоответ",
        "自动回复",
    ];
    let subject = subject.to_lowercase();
    PATTERNS.iter().any(|p| subject.contains(p))
}

/// The reply's own words: the text before the quoted message (attribution
/// lines, `>` quotes, forwarded-message separators, a signature), cut to
/// [`limits::REPLY_EXCERPT`].
pub fn reply_excerpt(body: &str) -> String {
    let lines: Vec<&str> = body.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        // `On … wrote:`, `Am … schrieb Ada <ada@x>:`, `Le … a écrit :`.
        let attribution = |l: &str| {
            let l = l.to_lowercase();
            l.ends_with(':')
                && ["wrote", "schrieb", "a écrit", "escribió", "ha scritto", "schreef", "escreveu", "написал"].iter().any(|word| l.contains(word))
        };
        let quoted = t.starts_with('>')
            || attribution(t)
            || ((t.starts_with("On ") || t.starts_with("Am ") || t.starts_with("Le ") || t.starts_with("El ")) && attribution(next))
            || t.contains("Original Message")
            || t.contains("Ursprüngliche Nachricht")
            || t.starts_with("________________")
            || (t.starts_with("From:") && !kept.is_empty() && (next.starts_with("Sent:") || next.starts_with("Date:")))
            || *line == "-- ";
        if quoted {
            break;
        }
        kept.push(line.trim_end());
    }
    let mut text = String::new();
    let mut blank = 0;
    for line in kept {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        text.push_str(line);
    }
    cut(&text, limits::REPLY_EXCERPT)
}

/// `text` cut to `limit` characters, the cut marked with `…`.
pub fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The Message-IDs of the message a report returns (message/rfc822, or
/// its headers alone as text/rfc822-headers).
fn returned_ids(message: &Message<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    for part in &message.parts {
        if let PartType::Message(inner) = &part.body {
            if let Some(id) = inner.message_id() {
                push_unique(&mut ids, unbracket(id).to_owned());
            }
        }
    }
    if let Some(headers) = returned_headers(message) {
        if let Some(id) = header_in(&headers, "message-id") {
            for id in bracketed_ids(&id) {
                push_unique(&mut ids, id);
            }
        }
    }
    ids.retain(|id| !id.is_empty());
    ids.truncate(MAX_ORIGINALS);
    ids
}

/// The returned message's header block, as text.
fn returned_headers(message: &Message<'_>) -> Option<String> {
    for part in &message.parts {
        let headers_only = part.is_content_type("text", "rfc822-headers")
            || part.is_content_type("text", "rfc822-header")
            || part.is_content_type("message", "global-headers");
        if headers_only {
            return Some(String::from_utf8_lossy(part.contents()).into_owned());
        }
        if let PartType::Message(inner) = &part.body {
            let raw = inner.raw_message();
            let end = find_blank_line(raw).unwrap_or(raw.len());
            return Some(String::from_utf8_lossy(&raw[..end]).into_owned());
        }
    }
    None
}

fn find_blank_line(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
}

/// Message-IDs quoted in a plain-text bounce (`Message-ID: <…>` lines),
/// other than the bounce's own.
fn quoted_ids(body: &str, own: Option<&str>) -> Vec<String> {
    let own = own.map(unbracket);
    let mut ids = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        if t.len() > 11 && t[..11].eq_ignore_ascii_case("message-id:") {
            for id in bracketed_ids(&t[11..]) {
                if Some(id.as_str()) != own {
                    push_unique(&mut ids, id);
                }
            }
        }
    }
    ids.truncate(MAX_ORIGINALS);
    ids
}

/// A header's unfolded value in a header block.
fn header_in(block: &str, name: &str) -> Option<String> {
    field_groups(block).into_iter().flatten().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Header-style fields (`Name: value`, continuation lines folded in),
/// grouped by blank lines; names in lower case.
fn field_groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !groups.last().is_some_and(Vec::is_empty) {
                groups.push(Vec::new());
            }
            continue;
        }
        let group = groups.last_mut().expect("never empty");
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// `rfc822; Ada@Example.test` → `ada@example.test`.
fn address_field(value: &str) -> Option<String> {
    let address = value.split_once(';').map_or(value, |(_, a)| a).trim().trim_matches(|c| c == '<' || c == '>');
    (address.contains('@') && address.len() <= limits::EMAIL).then(|| address.to_lowercase())
}

/// The enhanced status code at the start of a Status field (`5.1.1 (…)`).
fn enhanced_code(value: &str) -> Option<String> {
    let code = value.split_whitespace().next()?;
    is_enhanced(code).then(|| code.to_owned())
}

/// The first enhanced status code (`4.2.2`) in a text.
fn find_enhanced_code(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_end_matches('.'))
        .find(|w| is_enhanced(w))
        .map(str::to_owned)
}

fn is_enhanced(code: &str) -> bool {
    let parts: Vec<&str> = code.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The first basic SMTP reply code (`550`, `421`) in a text.
fn basic_code(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 3 && (w.starts_with('4') || w.starts_with('5')))
}

/// Every `<id>` in a header value, without brackets; a bare id when there
/// are no brackets at all.
fn bracketed_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else { break };
        let id = rest[open + 1..open + close].trim();
        if !id.is_empty() && id.len() <= 998 {
            ids.push(id.to_owned());
        }
        rest = &rest[open + close + 1..];
    }
    if ids.is_empty() {
        let bare = value.trim();
        if bare.contains('@') && !bare.contains(char::is_whitespace) {
            ids.push(bare.to_owned());
        }
    }
    ids
}

/// An id without its angle brackets.
pub fn unbracket(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>').trim()
}

fn push_unique(list: &mut Vec<String>, id: String) {
    if !list.contains(&id) {
        list.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Postfix DSN, as Postfix 3.7 writes one (headers returned only).
    const POSTFIX_HARD: &str = "Return-Path: <>\r
Received: by mx.waymark.test (Postfix) id 3F2B81C0; Mon,  7 Dec 2026 09:02:11 +0000 (UTC)\r
Date: Mon,  7 Dec 2026 09:02:11 +0000 (UTC)\r
From: MAILER-DAEMON@mx.waymark.test (Mail Delivery System)\r
Subject: Undelivered Mail Returned to Sender\r
To: news@waymark.test\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"3F2B81C0.1765098131/mx.waymark.test\"\r
Message-Id: <20261207090211.3F2B81C0@mx.waymark.test>\r
\r
This is a MIME-encapsulated message.\r
\r
--3F2B81C0.1765098131/mx.waymark.test\r
Content-Description: Notification\r
Content-Type: text/plain; charset=us-ascii\r
\r
This is the mail system at host mx.waymark.test.\r
\r
I'm sorry to have to inform you that your message could not\r
be delivered to one or more recipients.\r
\r
<nobody@example.test>: host mx.example.test[192.0.2.10] said: 550 5.1.1\r
    <nobody@example.test>: Recipient address rejected: User unknown in virtual\r
    mailbox table (in reply to RCPT TO command)\r
\r
--3F2B81C0.1765098131/mx.waymark.test\r
Content-Description: Delivery report\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.waymark.test\r
X-Postfix-Queue-ID: 3F2B81C0\r
X-Postfix-Sender: rfc822; news@waymark.test\r
Arrival-Date: Mon,  7 Dec 2026 09:02:10 +0000 (UTC)\r
\r
Final-Recipient: rfc822; Nobody@Example.test\r
Original-Recipient: rfc822;nobody@example.test\r
Action: failed\r
Status: 5.1.1\r
Remote-MTA: dns; mx.example.test\r
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.test>: Recipient address\r
    rejected: User unknown in virtual mailbox table\r
\r
--3F2B81C0.1765098131/mx.waymark.test\r
Content-Description: Undelivered Message Headers\r
Content-Type: text/rfc822-headers\r
\r
Return-Path: <news@waymark.test>\r
From: Waymark <news@waymark.test>\r
To: nobody@example.test\r
Subject: Welcome\r
Message-ID: <12.e1.1.0@waymark.test>\r
Date: Mon, 7 Dec 2026 09:02:09 +0000\r
\r
--3F2B81C0.1765098131/mx.waymark.test--\r
";

    #[test]
    fn a_postfix_dsn_is_a_hard_bounce_of_the_returned_message() {
        let found = classify(POSTFIX_HARD.as_bytes());
        assert_eq!(found.message_id.as_deref(), Some("20261207090211.3F2B81C0@mx.waymark.test"));
        let Finding::Bounce { originals, failed } = found.finding else { panic!("{:?}", found.finding) };
        assert_eq!(originals, ["12.e1.1.0@waymark.test"]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].recipient.as_deref(), Some("nobody@example.test"));
        assert_eq!((failed[0].bounce, failed[0].status.as_deref()), (BounceType::Hard, Some("5.1.1")));
        assert_eq!(
            failed[0].diagnostic.as_deref(),
            Some("550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table")
        );
    }

    /// Exim-style give-up after retries (4.x.x with Action: failed), the
    /// whole message returned as message/rfc822.
    const SOFT_WITH_MESSAGE: &str = "From: Mail Delivery System <Mailer-Daemon@relay.example.test>\r
To: news@waymark.test\r
Subject: Mail delivery failed: returning message to sender\r
Message-ID: <E1tAbc-0001@relay.example.test>\r
Content-Type: multipart/report; report-type=\"delivery-status\"; boundary=\"b1\"\r
MIME-Version: 1.0\r
\r
--b1\r
Content-Type: text/plain\r
\r
A message could not be delivered: the mailbox is full.\r
--b1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; relay.example.test\r
\r
Action: failed\r
Final-Recipient: rfc822;full@example.test\r
Status: 4.2.2\r
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r
\r
--b1\r
Content-Type: message/rfc822\r
\r
From: Waymark <news@waymark.test>\r
To: full@example.test\r
Subject: Hello\r
Message-ID: <7.e2.1.0@waymark.test>\r
\r
Hello there.\r
--b1--\r
";

    #[test]
    fn a_4xx_failure_is_soft_and_the_returned_message_names_the_original() {
        let Finding::Bounce { originals, failed } = classify(SOFT_WITH_MESSAGE.as_bytes()).finding else { panic!() };
        assert_eq!(originals, ["7.e2.1.0@waymark.test"]);
        assert_eq!(failed[0].bounce, BounceType::Soft);
        assert_eq!(failed[0].status.as_deref(), Some("4.2.2"));
        assert_eq!(failed[0].diagnostic.as_deref(), Some("452 4.2.2 Mailbox full"));
    }

    #[test]
    fn a_delay_warning_is_not_a_bounce() {
        let delayed = SOFT_WITH_MESSAGE.replace("Action: failed", "Action: delayed");
        assert_eq!(classify(delayed.as_bytes()).finding, Finding::Other("a delivery report with nothing failed (delayed)".into()));
    }

    #[test]
    fn a_dsn_without_status_reads_the_diagnostic_code() {
        let dsn = POSTFIX_HARD.replace("Status: 5.1.1\r\n", "").replace("smtp; 550 5.1.1 <nobody", "smtp; 550 <nobody");
        let Finding::Bounce { failed, .. } = classify(dsn.as_bytes()).finding else { panic!() };
        assert_eq!((failed[0].bounce, failed[0].status.as_deref()), (BounceType::Hard, None));
    }

    /// An ARF report as Yahoo's and AOL's feedback loops send them.
    const ARF: &str = "From: <feedback@fbl.example.test>\r
Date: Mon, 07 Dec 2026 10:00:00 +0000\r
Subject: FW: Welcome\r
To: <abuse@waymark.test>\r
Message-ID: <fbl-123@fbl.example.test>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report;\r
     boundary=\"part1_13d.2e68ed54_boundary\"\r
\r
--part1_13d.2e68ed54_boundary\r
Content-Type: text/plain; charset=\"US-ASCII\"\r
Content-Transfer-Encoding: 7bit\r
\r
This is an email abuse report for an email message received from IP\r
192.0.2.1 on Mon, 07 Dec 2026 09:10:00 +0000.\r
For more information about this format please see\r
http://www.mipassoc.org/arf/.\r
\r
--part1_13d.2e68ed54_boundary\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: SomeGenerator/1.0\r
Version: 1\r
Original-Mail-From: <news@waymark.test>\r
Original-Rcpt-To: <Ada@Example.test>\r
Arrival-Date: Mon, 07 Dec 2026 09:10:00 +0000\r
Reported-Domain: waymark.test\r
Source-IP: 192.0.2.1\r
\r
--part1_13d.2e68ed54_boundary\r
Content-Type: message/rfc822\r
Content-Disposition: inline\r
\r
From: Waymark <news@waymark.test>\r
Received: from mailserver.waymark.test by example.test; Mon, 07 Dec 2026 09:10:00 +0000\r
To: Ada@Example.test\r
Subject: Welcome\r
Message-ID: <3.e1.1.0@waymark.test>\r
Date: Mon, 07 Dec 2026 09:09:58 +0000\r
\r
Spam Spam Spam\r
--part1_13d.2e68ed54_boundary--\r
";

    #[test]
    fn an_arf_report_is_a_complaint_about_the_returned_message() {
        let found = classify(ARF.as_bytes());
        assert_eq!(found.message_id.as_deref(), Some("fbl-123@fbl.example.test"));
        assert_eq!(
            found.finding,
            Finding::Complaint {
                originals: vec!["3.e1.1.0@waymark.test".into()],
                recipient: Some("ada@example.test".into()),
                feedback_type: "abuse".into()
            }
        );
        let dmarc = ARF.replace("Feedback-Type: abuse", "Feedback-Type: auth-failure");
        assert!(matches!(classify(dmarc.as_bytes()).finding, Finding::Other(_)));
    }

    fn reply_message(extra_headers: &str, subject: &str, body: &str) -> String {
        format!(
            "From: Ada <ada@example.test>\r\nTo: news@waymark.test\r\nSubject: {subject}\r\nMessage-ID: <CAF=ada-1@mail.example.test>\r\n\
             In-Reply-To: <12.e1.1.0@waymark.test>\r\nReferences: <older@elsewhere.test>\r\n <12.e1.1.0@waymark.test>\r\n{extra_headers}\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        )
    }

    const GMAIL_BODY: &str = "Yes, please call me on Tuesday.\r\n\r\nAda\r\n\r\nOn Mon, Dec 7, 2026 at 9:02 AM Waymark <news@waymark.test>\r\nwrote:\r\n\r\n> Welcome!\r\n> Can we talk?\r\n";

    #[test]
    fn a_person_replying_is_a_reply_with_their_words_only() {
        let found = classify(reply_message("", "Re: Welcome", GMAIL_BODY).as_bytes());
        let Finding::Reply { originals, auto, excerpt } = found.finding else { panic!() };
        assert_eq!(originals, ["12.e1.1.0@waymark.test", "older@elsewhere.test"]);
        assert_eq!(auto, None);
        assert_eq!(excerpt, "Yes, please call me on Tuesday.\n\nAda");
    }

    #[test]
    fn auto_replies_are_flagged_by_header_or_subject() {
        let auto = |headers: &str, subject: &str| match classify(reply_message(headers, subject, "I am away.").as_bytes()).finding {
            Finding::Reply { auto, .. } => auto,
            other => panic!("{other:?}"),
        };
        assert_eq!(auto("Auto-Submitted: auto-replied\r\n", "Re: Welcome"), Some("Auto-Submitted"));
        assert_eq!(auto("Auto-Submitted: no\r\n", "Re: Welcome"), None);
        assert_eq!(auto("X-Autoreply: yes\r\n", "Re: Welcome"), Some("X-Autoreply"));
        assert_eq!(auto("X-Autorespond: Welcome\r\n", "Re: Welcome"), Some("X-Autoreply"));
        assert_eq!(auto("Precedence: bulk\r\n", "Re: Welcome"), Some("Precedence"));
        assert_eq!(auto("Return-Path: <>\r\n", "Re: Welcome"), Some("Return-Path <>"));
        assert_eq!(auto("", "Automatic reply: Welcome"), Some("out-of-office subject"));
        assert_eq!(auto("", "Out of Office: Welcome"), Some("out-of-office subject"));
        assert_eq!(auto("", "Abwesenheitsnotiz: Welcome"), Some("out-of-office subject"));
        assert_eq!(auto("", "Réponse automatique : Welcome"), Some("out-of-office subject"));
        assert_eq!(auto("", "Re: Welcome (I'm in the office tomorrow)"), None);
    }

    #[test]
    fn outlook_and_quoted_replies_keep_only_the_new_text() {
        let outlook = "Thanks, see you then.\r\n\r\n________________________________\r\nFrom: Waymark <news@waymark.test>\r\nSent: Monday\r\n";
        assert_eq!(reply_excerpt(outlook), "Thanks, see you then.");
        assert_eq!(reply_excerpt("Sure.\n> quoted\nmore"), "Sure.");
        assert_eq!(reply_excerpt("Klar.\n\nAm 07.12.2026 um 09:02 schrieb Waymark:\n> Hallo"), "Klar.");
        assert_eq!(reply_excerpt("Hi\n-- \nAda Lovelace\nCTO"), "Hi");
        let long = "x".repeat(5_000);
        let cut = reply_excerpt(&long);
        assert_eq!(cut.chars().count(), limits::REPLY_EXCERPT);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_message_answering_nothing_is_left_alone() {
        let plain = "From: someone@example.test\r\nSubject: Hello\r\nMessage-ID: <x@y>\r\n\r\nHi";
        assert!(matches!(classify(plain.as_bytes()).finding, Finding::Other(_)));
        assert!(matches!(classify(b"").finding, Finding::Other(_)));
    }

    #[test]
    fn a_plain_text_bounce_from_a_mailer_daemon_is_read_too() {
        let qmail = "From: MAILER-DAEMON@old.example.test\r\nTo: news@waymark.test\r\nSubject: failure notice\r\n\r\n\
                     Hi. This is the qmail-send program at old.example.test.\r\nI'm afraid I wasn't able to deliver your message.\r\n\r\n\
                     <gone@old.example.test>:\r\n550 5.1.1 sorry, no mailbox here by that name.\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n\
                     From: news@waymark.test\r\nMessage-ID: <9.e1.1.0@waymark.test>\r\nSubject: Welcome\r\n";
        let Finding::Bounce { originals, failed } = classify(qmail.as_bytes()).finding else { panic!() };
        assert_eq!(originals, ["9.e1.1.0@waymark.test"]);
        assert_eq!((failed[0].bounce, failed[0].status.as_deref()), (BounceType::Hard, Some("5.1.1")));
        assert_eq!(failed[0].diagnostic.as_deref(), Some("550 5.1.1 sorry, no mailbox here by that name."));
    }

    #[test]
    fn a_message_to_an_unsubscribe_address_is_told_from_a_reply() {
        let token = "75".repeat(25);
        let gmail = format!(
            "From: Ada <ada@example.test>\r\nTo: unsubscribe+{token}@shop.test\r\nSubject: unsubscribe\r\n\
             Message-ID: <CAF-u-1@mail.example.test>\r\n\r\nThis message was automatically generated by Gmail.\r\n"
        );
        let found = classify(gmail.as_bytes()).finding;
        assert_eq!(found, Finding::Unsubscribe { to: vec![format!("unsubscribe+{token}@shop.test")] });
        // Delivered by the mailbox's server with the plus address in Delivered-To only.
        let forwarded = format!("Delivered-To: leave+{}@bounce.test\r\nFrom: b@example.test\r\nTo: list@shop.test\r\nSubject: x\r\n\r\nx", token.to_uppercase());
        assert!(matches!(classify(forwarded.as_bytes()).finding, Finding::Unsubscribe { to } if to.len() == 1));
        // A plus address without a token, answering our message, is a reply.
        let reply = "From: b@example.test\r\nTo: news+spring@shop.test\r\nIn-Reply-To: <1@shop.test>\r\nSubject: Re: x\r\n\r\nYes";
        assert!(matches!(classify(reply.as_bytes()).finding, Finding::Reply { .. }));
    }
}
