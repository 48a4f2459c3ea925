//! Email over SMTP (lettre): one message per effect, HTML with a plain-text
//! part generated from it, Cc, Bcc (in the envelope, never in the headers)
//! and attachments up to 25 MB in all. The HTML arrives with its merge tags
//! already filled and escaped by the engine (`app::core::merge`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::{Dkim, Secret, Smtp, TlsMode};
use crate::runtime::outbox::Failure;

/// The most all attachments of one message may weigh together.
pub const MAX_ATTACHMENT_BYTES: usize = 25 * 1024 * 1024;

/// One message to send.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    /// The HTML body; `None` sends `text` alone.
    pub html: Option<String>,
    /// The plain-text body when there is no HTML.
    pub text: String,
    pub attachments: Vec<File>,
    /// Becomes the Message-ID (`<id>`), and so the provider id on record.
    pub id: String,
    /// `List-Unsubscribe`'s value (`<https://…>, <mailto:…>`), for mail to contacts.
    pub list_unsubscribe: Option<String>,
    /// With `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
    pub one_click: bool,
    /// Signed with this DKIM configuration and key.
    pub dkim: Option<(Dkim, Secret)>,
}

#[derive(Debug)]
pub struct File {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

type Transport = AsyncSmtpTransport<Tokio1Executor>;
/// The transport built for these settings and secret.
type Cached = (Smtp, Option<Secret>, Arc<Transport>);

/// Sends mail through the configured server, reusing its connections while
/// the settings stay the same.
///
/// Plain and STARTTLS connections are our own, opened with `TCP_NODELAY`:
/// lettre writes a message's closing `CRLF.CRLF` apart from its body, and
/// under Nagle's algorithm that small write waits for the body's
/// acknowledgement, which the server delays (40 ms on Linux) since it has
/// nothing to answer before the dot. That capped each connection at some
/// 25 messages a second, and lettre's pool cannot set the option. Implicit
/// TLS (port 465) keeps lettre's pooled transport.
#[derive(Default)]
pub struct Mailer {
    cached: Mutex<Option<Cached>>,
    idle: Mutex<Idle>,
}

/// Open connections waiting for the next message, for one configuration.
#[derive(Default)]
struct Idle {
    settings: Option<(Smtp, Option<Secret>)>,
    connections: Vec<(Instant, AsyncSmtpConnection)>,
}

/// How long an unused connection is kept (servers close idle ones).
const IDLE_FOR: Duration = Duration::from_secs(30);

impl Mailer {
    fn transport(&self, smtp: &Smtp, secret: &Option<Secret>) -> Result<Arc<Transport>, Failure> {
        let mut cached = self.cached.lock().expect("mailer lock");
        if let Some((s, p, transport)) = cached.as_ref() {
            if s == smtp && p == secret {
                return Ok(transport.clone());
            }
        }
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned()).map_err(|err| Failure::permanent(format!("TLS for {host} cannot be set up: {err}")))
        };
        let mut builder = Transport::builder_dangerous(smtp.host.as_str())
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(smtp.timeout_secs)))
            // as many open connections as the outbox sends at once
            .pool_config(PoolConfig::new().max_size(crate::runtime::outbox::CONCURRENCY as u32))
            .tls(match smtp.tls {
                TlsMode::None => Tls::None,
                TlsMode::Starttls => Tls::Required(tls(&smtp.host)?),
                TlsMode::Tls => Tls::Wrapper(tls(&smtp.host)?),
            });
        if let Some(user) = smtp.username.as_ref().filter(|u| !u.is_empty()) {
            let password = secret.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let transport = Arc::new(builder.build());
        *cached = Some((smtp.clone(), secret.clone(), transport.clone()));
        Ok(transport)
    }

    /// An idle connection for these settings, if one is fresh enough.
    fn reuse(&self, smtp: &Smtp, secret: &Option<Secret>) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().expect("mailer lock");
        if idle.settings.as_ref().is_none_or(|(s, p)| s != smtp || p != secret) {
            *idle = Idle { settings: Some((smtp.clone(), secret.clone())), connections: Vec::new() };
        }
        idle.connections.retain(|(since, _)| since.elapsed() < IDLE_FOR);
        idle.connections.pop().map(|(_, connection)| connection)
    }

    fn keep(&self, smtp: &Smtp, secret: &Option<Secret>, connection: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().expect("mailer lock");
        let same = idle.settings.as_ref().is_some_and(|(s, p)| s == smtp && p == secret);
        if same && idle.connections.len() < crate::runtime::outbox::CONCURRENCY {
            idle.connections.push((Instant::now(), connection));
        }
    }

    /// A new plain or STARTTLS connection, greeted, upgraded and signed in.
    async fn connect(smtp: &Smtp, secret: &Option<Secret>) -> Result<AsyncSmtpConnection, Failure> {
        let server = format!("{}:{}", smtp.host, smtp.port);
        let stream = tokio::net::TcpStream::connect((smtp.host.as_str(), smtp.port))
            .await
            .map_err(|err| Failure::transient(format!("could not send through the SMTP server {server}: {err}")))?;
        stream.set_nodelay(true).map_err(|err| Failure::transient(format!("could not send through the SMTP server {server}: {err}")))?;
        let hello = ClientId::default();
        let failed = |err| refused(&server, err);
        let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await.map_err(failed)?;
        if smtp.tls == TlsMode::Starttls {
            let tls = TlsParameters::new(smtp.host.clone())
                .map_err(|err| Failure::permanent(format!("TLS for {} cannot be set up: {err}", smtp.host)))?;
            connection.starttls(tls, &hello).await.map_err(failed)?;
        }
        if let Some(user) = smtp.username.as_ref().filter(|u| !u.is_empty()) {
            let password = secret.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default();
            connection.auth(DEFAULT_MECHANISMS, &Credentials::new(user.clone(), password)).await.map_err(failed)?;
        }
        Ok(connection)
    }

    /// Sends over a kept connection, or a new one when there is none or the
    /// kept one turns out closed before the server answered anything.
    async fn send_own(&self, smtp: &Smtp, secret: &Option<Secret>, message: &Message) -> Result<(), Failure> {
        let server = format!("{}:{}", smtp.host, smtp.port);
        let (envelope, bytes) = (message.envelope(), message.formatted());
        if let Some(mut connection) = self.reuse(smtp, secret) {
            match connection.send(envelope, &bytes).await {
                Ok(_) => {
                    self.keep(smtp, secret, connection);
                    return Ok(());
                }
                // The server said no: that is the answer.
                Err(err) if err.is_permanent() || err.is_transient() => return Err(refused(&server, err)),
                Err(_) => connection.abort().await,
            }
        }
        let mut connection = Self::connect(smtp, secret).await?;
        connection.send(envelope, &bytes).await.map_err(|err| refused(&server, err))?;
        self.keep(smtp, secret, connection);
        Ok(())
    }

    /// Sends `mail`; the `Ok` value is the Message-ID.
    pub async fn send(&self, smtp: &Smtp, secret: &Option<Secret>, mail: Outgoing) -> Result<String, Failure> {
        let message = build(smtp, &mail)?;
        let server = format!("{}:{}", smtp.host, smtp.port);
        if smtp.tls == TlsMode::Tls {
            self.transport(smtp, secret)?.send(message).await.map_err(|err| refused(&server, err))?;
        } else {
            let limit = Duration::from_secs(smtp.timeout_secs.max(1));
            match tokio::time::timeout(limit, self.send_own(smtp, secret, &message)).await {
                Ok(sent) => sent?,
                Err(_) => return Err(Failure::transient(format!("the SMTP server {server} did not answer in time"))),
            }
        }
        Ok(mail.id)
    }
}

/// Why the SMTP server did not take a message, as a failure.
fn refused(server: &str, err: lettre::transport::smtp::Error) -> Failure {
    let why = super::http::chain(&err);
    if err.is_permanent() {
        Failure::permanent(format!("the SMTP server {server} refused the message: {why}"))
    } else if err.is_transient() {
        Failure::transient(format!("the SMTP server {server} asked to try later: {why}"))
    } else if err.is_timeout() {
        Failure::transient(format!("the SMTP server {server} did not answer in time"))
    } else {
        Failure::transient(format!("could not send through the SMTP server {server}: {why}"))
    }
}

fn mailbox(address: &str, role: &str) -> Result<Mailbox, Failure> {
    address.trim().parse().map_err(|_| Failure::permanent(format!("“{address}” is not a usable {role} address")))
}

/// The MIME message: multipart/alternative (text, HTML), inside
/// multipart/mixed when there are attachments.
pub fn build(smtp: &Smtp, mail: &Outgoing) -> Result<Message, Failure> {
    let total: usize = mail.attachments.iter().map(|a| a.bytes.len()).sum();
    if total > MAX_ATTACHMENT_BYTES {
        return Err(Failure::permanent(format!(
            "the attachments weigh {:.1} MB, more than the {} MB an email may carry",
            total as f64 / 1_048_576.0,
            MAX_ATTACHMENT_BYTES / 1_048_576
        )));
    }
    let mut builder = Message::builder()
        .from(mailbox(&smtp.from, "sender")?)
        .subject(mail.subject.clone())
        .message_id(Some(format!("<{}>", mail.id)));
    for to in &mail.to {
        builder = builder.to(mailbox(to, "recipient")?);
    }
    for cc in mail.cc.iter().filter(|a| !a.trim().is_empty()) {
        builder = builder.cc(mailbox(cc, "Cc")?);
    }
    for bcc in mail.bcc.iter().filter(|a| !a.trim().is_empty()) {
        builder = builder.bcc(mailbox(bcc, "Bcc")?);
    }
    let body = match &mail.html {
        Some(html) => MultiPart::alternative_plain_html(plain_text(html), html.clone()),
        None => MultiPart::mixed().singlepart(SinglePart::plain(mail.text.clone())),
    };
    let body = if mail.attachments.is_empty() {
        body
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for file in &mail.attachments {
            let content_type = ContentType::parse(&file.content_type).unwrap_or(ContentType::parse("application/octet-stream").expect("a valid type"));
            mixed = mixed.singlepart(Attachment::new(file.name.clone()).body(file.bytes.clone(), content_type));
        }
        mixed
    };
    if let Some(value) = &mail.list_unsubscribe {
        builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), value.clone()));
        if mail.one_click {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        }
    }
    let mut message = builder.multipart(body).map_err(|err| Failure::permanent(format!("the email cannot be built: {err}")))?;
    if let Some((dkim, key)) = &mail.dkim {
        let config = super::dkim::config(dkim.algorithm, &dkim.domain, &dkim.selector, key.expose())
            .map_err(|problem| Failure::permanent(format!("the email cannot be signed: {problem}")))?;
        message.sign(&config);
    }
    Ok(message)
}

/// The plain-text part: the HTML's text, with paragraphs and line breaks
/// kept, links written out, and scripts, styles and the head left out.
pub fn plain_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut link: Option<String> = None;
    while let Some(open) = rest.find('<') {
        push_text(&mut out, &rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = &rest[open..];
            break;
        };
        let tag = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        let closing = tag.starts_with('/');
        match name.as_str() {
            "script" | "style" | "head" | "title" if !closing => {
                let end = format!("</{name}");
                let at = rest.to_ascii_lowercase().find(&end).unwrap_or(rest.len());
                rest = &rest[at..];
            }
            "br" => out.push('\n'),
            "p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "tr" | "table" | "ul" | "ol" | "blockquote"
                if !out.ends_with("\n\n") && !out.is_empty() =>
            {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
            "li" if !closing => {
                if !out.ends_with('\n') && !out.is_empty() {
                    out.push('\n');
                }
                out.push_str("- ");
            }
            "a" if !closing => link = attribute(tag, "href"),
            "a" => {
                if let Some(href) = link.take().filter(|h| !h.starts_with('#') && !out.ends_with(h.as_str())) {
                    out.push_str(&format!(" ({href})"));
                }
            }
            _ => {}
        }
    }
    push_text(&mut out, rest);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let mut text = String::new();
    let mut blank = 0;
    for line in lines {
        if line.is_empty() {
            blank += 1;
            if blank > 1 || text.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.trim_end().to_owned() + "\n"
}

/// Appends text between tags: entities decoded, runs of spaces made one.
fn push_text(out: &mut String, raw: &str) {
    let decoded = decode_entities(raw);
    for c in decoded.chars() {
        if c.is_whitespace() && c != '\u{a0}' {
            if !out.ends_with([' ', '\n']) && !out.is_empty() {
                out.push(' ');
            }
        } else {
            out.push(if c == '\u{a0}' { ' ' } else { c });
        }
    }
}

pub(crate) fn decode_entities(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&s| s <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let at = lower.find(&format!("{name}="))? + name.len() + 1;
    let value = &tag[at..];
    let value = match value.chars().next()? {
        q @ ('"' | '\'') => value[1..].split(q).next()?,
        _ => value.split(|c: char| c.is_whitespace()).next()?,
    };
    Some(decode_entities(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_keeps_paragraphs_links_and_decoded_text() {
        let html = "<html><head><title>x</title><style>p{color:red}</style></head><body>\
                    <h1>Hello &lt;Ada&gt;</h1><p>Read <a href=\"https://x.test/a?b=1&amp;c=2\">the guide</a>.<br>Bye&nbsp;now</p>\
                    <ul><li>one</li><li>two</li></ul><script>alert(1)</script></body></html>";
        assert_eq!(plain_text(html), "Hello <Ada>\n\nRead the guide (https://x.test/a?b=1&c=2).\nBye now\n\n- one\n- two\n");
    }

    #[test]
    fn attachments_over_25_mb_are_refused_before_sending() {
        let smtp = Smtp {
            host: "localhost".into(),
            port: 25,
            tls: TlsMode::None,
            username: None,
            from: "Waymark <noreply@waymark.test>".into(),
            timeout_secs: 5,
        };
        let file = |mb: usize| File { name: "a.bin".into(), content_type: "application/octet-stream".into(), bytes: vec![0; mb * 1024 * 1024] };
        let mail = |files| Outgoing { to: vec!["a@b.test".into()], html: Some("<p>x</p>".into()), attachments: files, id: "1@w".into(), ..Outgoing::default() };
        assert!(build(&smtp, &mail(vec![file(20), file(5)])).is_ok());
        let refused = build(&smtp, &mail(vec![file(20), file(6)])).unwrap_err();
        assert!(!refused.retryable);
        assert_eq!(refused.reason, "the attachments weigh 26.0 MB, more than the 25 MB an email may carry");
    }
}
