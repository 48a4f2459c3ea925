//! The bounce and reply mailbox: an IMAP folder where bounces (DSNs),
//! feedback-loop complaints (ARF) and replies to our emails arrive (the
//! address in our messages' Return-Path and Reply-To). A poller reads its
//! unseen messages, works out what each is ([`classify`]), records it on
//! the message's conversation and as a contact event ([`super::feedback`]),
//! then flags it `\Seen` or moves it to another folder.
//!
//! Each message is handled once: its UIDVALIDITY and UID are remembered
//! (`mailbox_messages`), in the transaction that records what it said, and
//! the event it writes is keyed by its Message-ID. A poll cut short (the
//! process stopped, the connection dropped) leaves the rest unseen for the
//! next one, and a message handled but not yet flagged is only flagged.
//! One process polls at a time (a lease in `mailbox_state`).
//!
//! A message sent to a `List-Unsubscribe` mailto address
//! (`unsubscribe+TOKEN@…`, the mailbox the tracking settings name)
//! unsubscribes the contact its signed token names from email. A hard
//! bounce, a complaint, or the soft bounce that makes `soft_bounce_limit`
//! in a row is also written to the contact's `consent_changes`, in the
//! transaction that records it.
//!
//! It never deletes a message, and never acts on one that names none of
//! our Message-IDs (or, sent to an unsubscribe address, no token of ours).

pub mod classify;
pub mod page;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use app::auth::{Access, Viewer};
use app::core::limits;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::Extension;

use super::feedback::{self, Applied, Feedback, Outcome};
use super::tracking;
use super::sealed::{self, SecretChange, SecretText};
use crate::db::Pool;
use crate::auth::Endpoint;
use crate::error::{Error, Json, Result};
use crate::runtime::Runtime;
use crate::AppState;
use classify::{Classified, Finding};

/// The `integration_settings` row.
const CHANNEL: &str = "mailbox";
/// Messages handled in one poll at most; the rest wait for the next.
pub const MAX_PER_POLL: usize = 200;
/// A message larger than this is not fetched (noted and flagged).
pub const MAX_MESSAGE_BYTES: u32 = 10 * 1024 * 1024;
/// How long a poll holds the lease at most (a process that died mid-poll
/// gives it up after this).
const LEASE_MS: i64 = 10 * 60 * 1000;
/// The longest `ca_file` path taken.
const CA_FILE_MAX: usize = 1024;
/// How often the poller looks at the settings while none are enabled.
const IDLE: Duration = Duration::from_secs(30);

/// How the connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapTls {
    /// TLS from the first byte (port 993).
    #[default]
    Tls,
    /// Plain first, upgraded with STARTTLS (port 143); refused if the
    /// server cannot.
    Starttls,
    /// No encryption: only to a server on this machine (tests).
    None,
}

/// What happens to a message once handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum After {
    /// Flagged `\Seen`, left in the folder.
    #[default]
    Flag,
    /// Moved to `move_to` (flagged `\Seen` there).
    Move,
}

/// The mailbox settings an admin stores (the password apart, write-only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSettings {
    /// Whether the poller reads the mailbox.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: ImapTls,
    /// A PEM file of CA certificates trusted for this server besides the
    /// Web PKI's roots (a private CA, or a self-signed server certificate);
    /// the server's name is checked against its certificate all the same.
    /// An absolute path (at most 1,024 bytes), read at each connection by
    /// the process that polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub username: String,
    #[serde(default = "default_folder")]
    pub folder: String,
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    #[serde(default)]
    pub after: After,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to: Option<String>,
    /// This many soft bounces in a row mark an address undeliverable
    /// (bounces from provider webhooks count too); 0 never.
    #[serde(default = "default_soft_bounces")]
    pub soft_bounce_limit: u32,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_port() -> u16 {
    993
}
fn default_folder() -> String {
    "INBOX".into()
}
fn default_poll() -> u64 {
    60
}
fn default_soft_bounces() -> u32 {
    feedback::SOFT_BOUNCE_LIMIT
}
fn default_timeout() -> u64 {
    30
}

impl Default for MailboxSettings {
    fn default() -> Self {
        serde_json::from_value(json!({})).expect("every field has a default")
    }
}

impl MailboxSettings {
    /// `user@host:port/folder`: the mailbox's name in its log.
    pub fn key(&self) -> String {
        format!("{}@{}:{}/{}", self.username, self.host, self.port, self.folder)
    }
}

/// The stored settings and password; defaults (disabled) when none are stored.
pub async fn load(pool: &Pool) -> Result<(MailboxSettings, Option<SecretText>)> {
    match sealed::load(pool, CHANNEL).await? {
        None => Ok((MailboxSettings::default(), None)),
        Some((value, secret)) => {
            let settings = serde_json::from_value(value).map_err(|err| Error::Internal(anyhow::anyhow!("stored mailbox settings are unreadable: {err}")))?;
            Ok((settings, secret))
        }
    }
}

/// How many soft bounces in a row mark an address undeliverable (the
/// mailbox setting, which webhooks share).
pub async fn soft_bounce_limit(pool: &Pool) -> Result<u32> {
    Ok(load(pool).await?.0.soft_bounce_limit)
}

/// Replaces the settings from a `PUT` body: every field (missing ones take
/// their defaults) and `password` (absent keeps the stored one, `""`
/// clears it). Everything is checked before anything is written.
pub async fn save(pool: &Pool, mut body: Map<String, Value>) -> Result<MailboxSettings> {
    body.remove("password_set");
    body.remove("status");
    body.remove("recent");
    let secret = SecretChange::from_field(body.remove("password"), "mailbox.password")?;
    let settings: MailboxSettings = serde_path_to_error::deserialize(Value::Object(body)).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { "mailbox".to_owned() } else { format!("mailbox.{path}") };
        Error::InvalidIntegration { field, message: err.into_inner().to_string() }
    })?;
    check(&settings)?;
    sealed::save(pool, CHANNEL, Some(serde_json::to_value(&settings).expect("settings serialize")), secret).await?;
    Ok(settings)
}

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidIntegration { field: format!("mailbox.{field}"), message: message.to_owned() }
}

/// A folder name as IMAP takes it quoted: no quotes, backslashes or
/// control characters.
fn check_folder(field: &str, name: &str) -> Result<()> {
    limits::check(&format!("mailbox.{field}"), name, limits::MAILBOX_FOLDER)?;
    if name.trim().is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if name.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return Err(invalid(field, "may not hold quotes, backslashes or control characters"));
    }
    Ok(())
}

fn check(s: &MailboxSettings) -> Result<()> {
    limits::check("mailbox.host", &s.host, limits::MAILBOX_HOST)?;
    limits::check("mailbox.username", &s.username, limits::MAILBOX_USER)?;
    if s.host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(invalid("host", "is not a host name or address"));
    }
    if s.enabled && s.host.is_empty() {
        return Err(invalid("host", "is empty"));
    }
    if s.enabled && s.username.trim().is_empty() {
        return Err(invalid("username", "is empty"));
    }
    if s.port == 0 {
        return Err(invalid("port", "must be between 1 and 65535"));
    }
    check_folder("folder", &s.folder)?;
    match (&s.after, &s.move_to) {
        (After::Move, None) => return Err(invalid("move_to", "names no folder to move handled messages to")),
        (_, Some(to)) => check_folder("move_to", to)?,
        _ => {}
    }
    if s.after == After::Move && s.move_to.as_deref() == Some(s.folder.as_str()) {
        return Err(invalid("move_to", "is the folder read; name another"));
    }
    if !(10..=86_400).contains(&s.poll_secs) {
        return Err(invalid("poll_secs", "must be between 10 seconds and a day (86400)"));
    }
    if s.soft_bounce_limit > 20 {
        return Err(invalid("soft_bounce_limit", "must be between 0 (never) and 20"));
    }
    if !(1..=120).contains(&s.timeout_secs) {
        return Err(invalid("timeout_secs", "must be between 1 and 120 seconds"));
    }
    if s.tls == ImapTls::None && !is_loopback(&s.host) {
        return Err(invalid("tls", "may be none only for a server on this machine (127.0.0.1, ::1, localhost): use tls or starttls"));
    }
    if let Some(path) = &s.ca_file {
        limits::check("mailbox.ca_file", path, CA_FILE_MAX)?;
        if s.tls == ImapTls::None {
            return Err(invalid("ca_file", "is for tls or starttls; with none nothing is verified"));
        }
        if !std::path::Path::new(path).is_absolute() {
            return Err(invalid("ca_file", "must be an absolute path"));
        }
        ca_certificates(path).map_err(|message| invalid("ca_file", &message))?;
    }
    Ok(())
}

/// The certificates of a PEM file (at least one), or why there are none.
fn ca_certificates(path: &str) -> std::result::Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|err| format!("cannot be read: {err}"))?;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| format!("is not a PEM file of certificates: {err}"))?;
    if certificates.is_empty() {
        return Err("holds no certificate (BEGIN CERTIFICATE)".into());
    }
    Ok(certificates)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What the settings page and `GET /settings/mailbox` show: the settings,
/// `password_set`, how the last poll went, and the last messages handled.
pub async fn view(pool: &Pool) -> Result<Value> {
    let (settings, secret) = load(pool).await?;
    let mut out = serde_json::to_value(&settings).expect("settings serialize");
    out["password_set"] = Value::Bool(secret.is_some());
    let state: Option<(Option<String>, Option<String>, i64)> =
        sqlx::query_as("SELECT last_poll_at, last_error, handled FROM mailbox_state WHERE id = 1").fetch_optional(pool).await?;
    let (last_poll_at, last_error, handled) = state.unwrap_or((None, None, 0));
    out["status"] = json!({"last_poll_at": last_poll_at, "last_error": last_error, "handled": handled});
    /// kind, message id, note, when, conversation.
    type Logged = (String, Option<String>, String, String, Option<i64>);
    let recent: Vec<Logged> = sqlx::query_as(
        "SELECT kind, message_id, note, handled_at, conversation_id FROM mailbox_messages ORDER BY id DESC LIMIT 20",
    )
    .fetch_all(pool)
    .await?;
    out["recent"] = recent
        .into_iter()
        .map(|(kind, message_id, note, at, conversation)| {
            json!({"kind": kind, "message_id": message_id, "note": note, "handled_at": at, "conversation_id": conversation})
        })
        .collect();
    Ok(out)
}

/// Refuses anyone but an admin: the handlers say so themselves, whatever
/// the route table says.
pub fn require_admin(viewer: &Viewer) -> Result<()> {
    if viewer.may(Access::Admin) {
        Ok(())
    } else {
        Err(Error::Forbidden(viewer.role.as_str()))
    }
}

/// The mailbox's routes, for admins.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/settings/mailbox", Access::Admin, show),
        Endpoint::new(Method::PUT, "/settings/mailbox", Access::Admin, update),
        Endpoint::new(Method::POST, "/settings/mailbox/poll", Access::Admin, poll_now),
    ]
}

async fn show(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Result<impl IntoResponse> {
    require_admin(&viewer)?;
    Ok(Json(view(state.runtime.pool()).await?))
}

async fn update(State(state): State<AppState>, Extension(viewer): Extension<Viewer>, Json(body): Json<Value>) -> Result<impl IntoResponse> {
    require_admin(&viewer)?;
    let Value::Object(body) = body else {
        return Err(Error::BadBody { status: StatusCode::UNPROCESSABLE_ENTITY, code: "invalid_body", message: "Send the mailbox settings as a JSON object.".into() });
    };
    let pool = state.runtime.pool();
    let changed: Vec<String> = body.keys().cloned().collect();
    save(pool, body).await?;
    crate::audit::record(pool, &viewer.actor(), "settings.mailbox", "mailbox", &changed.join(", ")).await?;
    Ok(Json(view(pool).await?))
}

/// Reads the mailbox now (whoever holds the lease), answering what it did.
async fn poll_now(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Result<impl IntoResponse> {
    require_admin(&viewer)?;
    match poll_once(&state.runtime).await {
        Ok(poll) => Ok(Json(serde_json::to_value(poll).expect("polls serialize"))),
        Err(PollError::NotConfigured) => Err(Error::Invalid { code: "mailbox_not_configured", message: PollError::NotConfigured.to_string() }),
        Err(PollError::Mailbox(why)) => Err(Error::BadBody { status: StatusCode::BAD_GATEWAY, code: "mailbox_failed", message: why }),
        Err(PollError::Store(err)) => Err(err),
    }
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Poll {
    /// Unseen messages found (at most [`MAX_PER_POLL`] are taken).
    pub unseen: usize,
    /// Messages read and recorded in this poll.
    pub handled: usize,
    /// Contact events written.
    pub events: usize,
    /// Messages about none of our emails, or about nothing to act on.
    pub unmatched: usize,
    /// Handled in an earlier poll (only flagged or moved now).
    pub again: usize,
}

/// Why a poll could not run.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("the bounce mailbox is not set up (or not enabled)")]
    NotConfigured,
    #[error("{0}")]
    Mailbox(String),
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for PollError {
    fn from(err: sqlx::Error) -> Self {
        PollError::Store(err.into())
    }
}

/// Reads the mailbox once (whether or not another process holds the
/// lease: tests and a manual "poll now" call it), and records how it went.
pub async fn poll_once(runtime: &Runtime) -> std::result::Result<Poll, PollError> {
    let pool = runtime.pool();
    let (settings, password) = load(pool).await?;
    if !settings.enabled || settings.host.is_empty() {
        return Err(PollError::NotConfigured);
    }
    let result = tokio::time::timeout(Duration::from_secs(settings.timeout_secs * 10 + 60), read(runtime, &settings, password.as_ref()))
        .await
        .unwrap_or_else(|_| Err(PollError::Mailbox(format!("the poll of {} took too long and was cut short", settings.key()))));
    let error = match &result {
        Ok(_) => None,
        Err(err) => Some(classify::cut(&err.to_string(), limits::MAILBOX_NOTE)),
    };
    let handled = result.as_ref().map(|p| p.handled as i64).unwrap_or(0);
    sqlx::query("UPDATE mailbox_state SET last_poll_at = $1, last_error = $2, handled = handled + $3 WHERE id = 1")
        .bind(runtime.now().to_string())
        .bind(error)
        .bind(handled)
        .execute(pool)
        .await?;
    if result.as_ref().is_ok_and(|p| p.events > 0) {
        runtime.events_arrived();
    }
    result
}

/// The poller, spawned with the workers: polls every `poll_secs` while the
/// mailbox is enabled and this process holds the lease, until `stop`. A
/// poll under way when `stop` comes is dropped (its transaction rolls
/// back; the next poll, here or elsewhere, takes the message again).
pub async fn poll_until(runtime: Runtime, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let wait = match load(runtime.pool()).await {
            Ok((settings, _)) if settings.enabled => {
                match take_lease(&runtime).await {
                    Ok(true) => {
                        tokio::select! {
                            polled = poll_once(&runtime) => match polled {
                                Ok(poll) if poll.handled > 0 => tracing::info!(handled = poll.handled, events = poll.events, "bounce mailbox read"),
                                Ok(_) => {}
                                Err(err) => tracing::warn!(error = %err, "reading the bounce mailbox failed"),
                            },
                            _ = stop.cancelled() => {}
                        }
                        if let Err(err) = give_back_lease(&runtime).await {
                            tracing::warn!(error = %err, "giving back the mailbox lease failed; it runs out by itself");
                        }
                    }
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "the mailbox lease cannot be taken"),
                }
                Duration::from_secs(settings.poll_secs)
            }
            Ok(_) => IDLE,
            Err(err) => {
                tracing::warn!(error = %err, "the mailbox settings cannot be read");
                IDLE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {}
        }
    }
}

async fn take_lease(runtime: &Runtime) -> Result<bool> {
    let now = crate::runtime::millis(runtime.now());
    let taken = sqlx::query(
        "UPDATE mailbox_state SET lease_owner = $1, lease_until = $2
         WHERE id = 1 AND (lease_owner IS NULL OR lease_owner = $3 OR lease_until < $4)",
    )
    .bind(runtime.worker())
    .bind(now + LEASE_MS)
    .bind(runtime.worker())
    .bind(now)
    .execute(runtime.pool())
    .await?;
    Ok(taken.rows_affected() == 1)
}

async fn give_back_lease(runtime: &Runtime) -> Result<()> {
    sqlx::query("UPDATE mailbox_state SET lease_owner = NULL, lease_until = NULL WHERE id = 1 AND lease_owner = $1")
        .bind(runtime.worker())
        .execute(runtime.pool())
        .await?;
    Ok(())
}

/// Connects as the settings say, then reads.
async fn read(runtime: &Runtime, settings: &MailboxSettings, password: Option<&SecretText>) -> std::result::Result<Poll, PollError> {
    let server = format!("{}:{}", settings.host, settings.port);
    let limit = Duration::from_secs(settings.timeout_secs);
    let failed = |what: &str, err: &dyn std::fmt::Display| PollError::Mailbox(format!("{what} {server}: {err}"));
    let tcp = tokio::time::timeout(limit, tokio::net::TcpStream::connect((settings.host.as_str(), settings.port)))
        .await
        .map_err(|_| failed("no answer in time from", &"timed out"))?
        .map_err(|err| failed("cannot connect to", &err))?;
    match settings.tls {
        ImapTls::None => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, limit).await.map_err(|err| failed("no IMAP greeting from", &err))?;
            session(runtime, settings, password, client).await
        }
        ImapTls::Tls => {
            let stream = tls(settings, tcp, limit).await.map_err(|err| failed("TLS failed with", &err))?;
            let mut client = async_imap::Client::new(stream);
            greeting(&mut client, limit).await.map_err(|err| failed("no IMAP greeting from", &err))?;
            session(runtime, settings, password, client).await
        }
        ImapTls::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, limit).await.map_err(|err| failed("no IMAP greeting from", &err))?;
            tokio::time::timeout(limit, client.run_command_and_check_ok("STARTTLS", None))
                .await
                .map_err(|_| failed("no answer to STARTTLS from", &"timed out"))?
                .map_err(|err| failed("STARTTLS was refused by", &err))?;
            let stream = tls(settings, client.into_inner(), limit).await.map_err(|err| failed("TLS failed with", &err))?;
            session(runtime, settings, password, async_imap::Client::new(stream)).await
        }
    }
}

async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug>(client: &mut async_imap::Client<T>, limit: Duration) -> std::result::Result<(), String> {
    match tokio::time::timeout(limit, client.read_response()).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(None)) => Err("the connection closed".into()),
        Ok(Ok(Some(_))) => Ok(()),
    }
}

/// TLS with the Web PKI's roots and the settings' `ca_file`, checking the
/// server's name.
async fn tls(settings: &MailboxSettings, tcp: tokio::net::TcpStream, limit: Duration) -> std::result::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let host = settings.host.trim_start_matches('[').trim_end_matches(']');
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.ca_file {
        let certificates = ca_certificates(path).map_err(|err| format!("the CA file {path} {err}"))?;
        let (_, refused) = roots.add_parsable_certificates(certificates);
        if refused > 0 {
            return Err(format!("the CA file {path} holds {refused} certificate(s) that are not CA certificates rustls can use"));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|err| err.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(limit, connector.connect(name, tcp)).await.map_err(|_| "timed out".to_owned())?.map_err(|err| err.to_string())
}

/// Logs in, reads the unseen messages, handles and flags (or moves) them.
async fn session<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug>(
    runtime: &Runtime,
    settings: &MailboxSettings,
    password: Option<&SecretText>,
    client: async_imap::Client<T>,
) -> std::result::Result<Poll, PollError> {
    let limit = Duration::from_secs(settings.timeout_secs);
    let key = settings.key();
    let imap = |what: &str, err: &dyn std::fmt::Display| PollError::Mailbox(format!("{what} ({key}): {err}"));
    let mut session = tokio::time::timeout(limit, client.login(&settings.username, password.map(SecretText::expose).unwrap_or_default()))
        .await
        .map_err(|_| imap("signing in timed out", &"no answer"))?
        .map_err(|(err, _)| imap("the mailbox refused to sign in", &err))?;
    let selected = timed(limit, session.select(&settings.folder)).await.map_err(|err| imap(&format!("the folder “{}” cannot be opened", settings.folder), &err))?;
    let validity = i64::from(selected.uid_validity.unwrap_or(0));
    let mut unseen: Vec<u32> = timed(limit, session.uid_search("UNSEEN")).await.map_err(|err| imap("searching for unseen messages failed", &err))?.into_iter().collect();
    unseen.sort_unstable();
    let mut poll = Poll { unseen: unseen.len(), ..Poll::default() };
    unseen.truncate(MAX_PER_POLL);
    if unseen.is_empty() {
        let _ = timed(limit, session.logout()).await;
        return Ok(poll);
    }
    let soft_limit = settings.soft_bounce_limit;
    let known = handled_before(runtime.pool(), &key, validity, &unseen).await?;
    let set = uid_set(&unseen);
    // Sizes first, so that a huge message is never downloaded.
    let mut sizes = std::collections::HashMap::new();
    {
        let fetches: Vec<_> = timed(limit, async { session.uid_fetch(&set, "(UID RFC822.SIZE)").await?.try_collect::<Vec<_>>().await })
            .await
            .map_err(|err| imap("reading message sizes failed", &err))?;
        for fetch in fetches {
            if let (Some(uid), Some(size)) = (fetch.uid, fetch.size) {
                sizes.insert(uid, size);
            }
        }
    }
    let mut done: Vec<u32> = Vec::with_capacity(unseen.len());
    for uid in unseen {
        if known.contains(&uid) {
            poll.again += 1;
            done.push(uid);
            continue;
        }
        let size = sizes.get(&uid).copied().unwrap_or(0);
        let raw = if size > MAX_MESSAGE_BYTES {
            None
        } else {
            let fetched: Vec<_> = timed(limit * 4, async { session.uid_fetch(uid.to_string(), "(UID BODY.PEEK[])").await?.try_collect::<Vec<_>>().await })
                .await
                .map_err(|err| imap(&format!("message {uid} cannot be read"), &err))?;
            let Some(body) = fetched.iter().find(|f| f.uid == Some(uid)).and_then(|f| f.body()).map(<[u8]>::to_vec) else {
                continue; // expunged meanwhile
            };
            Some(body)
        };
        let handled = match raw {
            Some(raw) => handle(runtime, &key, validity, uid, &raw, soft_limit).await?,
            None => {
                let note = format!("not read: {size} bytes, more than the {} MB a message may have", MAX_MESSAGE_BYTES / 1_048_576);
                remember(runtime.pool(), &key, validity, uid, None, "ignored", None, &note).await?;
                Handled::default()
            }
        };
        poll.handled += 1;
        poll.events += handled.events;
        if handled.unmatched {
            poll.unmatched += 1;
        }
        done.push(uid);
        // Flag as we go, so that a poll cut short leaves little to redo.
        while let Ok(_unsolicited) = session.unsolicited_responses.try_recv() {}
    }
    if !done.is_empty() {
        let set = uid_set(&done);
        timed(limit, async { session.uid_store(&set, "+FLAGS.SILENT (\\Seen)").await?.try_collect::<Vec<_>>().await })
            .await
            .map_err(|err| imap("flagging handled messages failed", &err))?;
        if let (After::Move, Some(to)) = (settings.after, settings.move_to.as_deref()) {
            // Made when missing; an error here only means it exists.
            let _ = timed(limit, session.create(to)).await;
            timed(limit, session.uid_mv(&set, to)).await.map_err(|err| imap(&format!("moving handled messages to “{to}” failed"), &err))?;
        }
    }
    let _ = timed(limit, session.logout()).await;
    Ok(poll)
}

/// A server step within `limit`.
async fn timed<T>(limit: Duration, step: impl std::future::Future<Output = async_imap::error::Result<T>>) -> std::result::Result<T, String> {
    match tokio::time::timeout(limit, step).await {
        Err(_) => Err("the server did not answer in time".into()),
        Ok(result) => result.map_err(|err| err.to_string()),
    }
}

/// `1,2,5` (IMAP sequence sets may list numbers).
fn uid_set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

async fn handled_before(pool: &Pool, key: &str, validity: i64, uids: &[u32]) -> Result<HashSet<u32>> {
    let list = uids.iter().map(|u| i64::from(*u)).collect::<Vec<_>>();
    let rows: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT uid FROM mailbox_messages WHERE mailbox = $1 AND uid_validity = $2 AND uid IN ({})",
        crate::db::id_list(&list)
    ))
    .bind(key)
    .bind(validity)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|u| u32::try_from(u).ok()).collect())
}

/// What handling one message did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    pub events: usize,
    pub unmatched: bool,
}

/// Classifies one message and records what it says, with the message
/// itself in the mailbox's log, in one transaction.
pub async fn handle(runtime: &Runtime, key: &str, validity: i64, uid: u32, raw: &[u8], soft_limit: u32) -> Result<Handled> {
    let Classified { message_id, finding } = classify::classify(raw);
    if let Finding::Unsubscribe { to } = &finding {
        return unsubscribe(runtime, key, validity, uid, message_id.as_deref(), to).await;
    }
    let base = match &message_id {
        Some(id) => format!("mailbox:{id}"),
        None => format!("mailbox:{key}:{validity}:{uid}"),
    };
    let (kind, note, feedbacks) = feedbacks(&base, finding);
    crate::db::retry_busy("recording a mailbox message", || async {
        let mut tx = crate::db::begin_write(runtime.pool()).await?;
        let mut events = 0;
        let mut conversation = None;
        let mut matched = false;
        let mut notes = vec![note.clone()];
        for feedback in &feedbacks {
            match feedback::apply(runtime, &mut tx, feedback, soft_limit).await? {
                Applied::Recorded { conversation: id, event, undeliverable } => {
                    matched = true;
                    conversation = conversation.or(Some(id));
                    events += usize::from(event);
                    if undeliverable {
                        notes.push("soft bounces in a row: the address is now undeliverable".into());
                    }
                    if let Some((why, detail)) = feedback::consent_lost(&feedback.outcome, event, undeliverable, soft_limit) {
                        tracking::record_feedback_consent(&mut tx, id, why, detail.as_deref(), runtime.now()).await?;
                    }
                }
                Applied::Duplicate { conversation: id } => {
                    matched = true;
                    conversation = conversation.or(Some(id));
                    notes.push("already recorded".into());
                }
                Applied::Unmatched => {}
            }
        }
        let kind = if feedbacks.is_empty() {
            "ignored"
        } else if matched {
            kind
        } else {
            notes.push("about none of our emails".into());
            "unmatched"
        };
        let note = classify::cut(&notes.join("; "), limits::MAILBOX_NOTE);
        remember(&mut *tx, key, validity, uid, message_id.as_deref(), kind, conversation, &note).await?;
        tx.commit().await?;
        Ok::<_, Error>(Handled { events, unmatched: kind == "unmatched" || kind == "ignored" })
    })
    .await
}

/// A message to a `List-Unsubscribe` mailto address: the contact whose
/// token it carries is unsubscribed from email at once (like the one-click
/// POST: consent, its `consent_changes` row and the `unsubscribed` event in
/// one transaction), then the message is remembered. Were the poll cut
/// short between the two, the message is read again, and unsubscribing an
/// unsubscribed contact changes nothing.
async fn unsubscribe(runtime: &Runtime, key: &str, validity: i64, uid: u32, message_id: Option<&str>, to: &[String]) -> Result<Handled> {
    let mut found = None;
    for address in to {
        if let Some(conversation) = tracking::unsubscribe_by_mail(runtime, address).await? {
            found = Some((conversation, address));
            break;
        }
    }
    let (kind, conversation, note) = match found {
        Some((conversation, address)) => ("unsubscribe", Some(conversation), format!("unsubscribe from email, sent to {address}")),
        None => ("unmatched", None, format!("sent to {}, an unsubscribe address with no token of ours", to.join(", "))),
    };
    let note = classify::cut(&note, limits::MAILBOX_NOTE);
    remember(runtime.pool(), key, validity, uid, message_id, kind, conversation, &note).await?;
    Ok(Handled { events: usize::from(found.is_some()), unmatched: found.is_none() })
}

/// The feedback a finding gives, with its kind and a note for the log.
fn feedbacks(base: &str, finding: Finding) -> (&'static str, String, Vec<Feedback>) {
    match finding {
        Finding::Bounce { originals, failed } => {
            let many = failed.len() > 1;
            let note = failed
                .iter()
                .map(|f| {
                    let kind = if f.bounce == app::core::engagement::BounceType::Hard { "hard" } else { "soft" };
                    format!(
                        "{kind} bounce{}{}{}",
                        f.status.as_deref().map(|s| format!(" {s}")).unwrap_or_default(),
                        f.recipient.as_deref().map(|r| format!(" for {r}")).unwrap_or_default(),
                        f.diagnostic.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let list = failed
                .into_iter()
                .enumerate()
                .map(|(i, f)| Feedback {
                    id: if many { format!("{base}#{i}") } else { base.to_owned() },
                    source: "bounce",
                    originals: originals.clone(),
                    recipient: f.recipient,
                    by_address: false,
                    outcome: Outcome::Bounce { bounce: f.bounce, status: f.status, diagnostic: f.diagnostic },
                })
                .collect();
            ("bounce", note, list)
        }
        Finding::Complaint { originals, recipient, feedback_type } => {
            let note = format!("complaint ({feedback_type}){}", recipient.as_deref().map(|r| format!(" from {r}")).unwrap_or_default());
            let feedback = Feedback { id: base.to_owned(), source: "complaint", originals, recipient, by_address: false, outcome: Outcome::Complaint };
            ("complaint", note, vec![feedback])
        }
        Finding::Reply { originals, auto, excerpt } => {
            let (kind, note) = match auto {
                Some(why) => ("auto_reply", format!("auto-reply ({why})")),
                None => ("reply", "reply".to_owned()),
            };
            let outcome = Outcome::Reply { auto: auto.is_some(), excerpt };
            (kind, note, vec![Feedback { id: base.to_owned(), source: "reply", originals, recipient: None, by_address: false, outcome }])
        }
        Finding::Other(why) => ("ignored", why, Vec::new()),
        Finding::Unsubscribe { .. } => ("ignored", "an unsubscribe, handled apart".into(), Vec::new()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn remember<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    key: &str,
    validity: i64,
    uid: u32,
    message_id: Option<&str>,
    kind: &str,
    conversation: Option<i64>,
    note: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO mailbox_messages (mailbox, uid_validity, uid, message_id, kind, conversation_id, note, handled_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (mailbox, uid_validity, uid) DO NOTHING",
    )
    .bind(key)
    .bind(validity)
    .bind(i64::from(uid))
    .bind(message_id.map(|m| classify::cut(m, 998)))
    .bind(kind)
    .bind(conversation)
    .bind(note)
    .bind(jiff::Timestamp::now().to_string())
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_a_disabled_tls_mailbox_on_993() {
        let s = MailboxSettings::default();
        assert_eq!((s.enabled, s.port, s.tls, s.folder.as_str(), s.poll_secs, s.soft_bounce_limit), (false, 993, ImapTls::Tls, "INBOX", 60, 3));
        assert!(check(&s).is_ok());
    }

    #[test]
    fn plain_imap_is_only_for_this_machine() {
        let plain = |host: &str| MailboxSettings { enabled: true, host: host.into(), username: "u".into(), tls: ImapTls::None, ..MailboxSettings::default() };
        assert!(check(&plain("127.0.0.1")).is_ok());
        assert!(check(&plain("::1")).is_ok());
        assert!(check(&plain("localhost")).is_ok());
        let err = check(&plain("imap.example.test")).unwrap_err();
        assert!(matches!(&err, Error::InvalidIntegration { field, .. } if field == "mailbox.tls"), "{err}");
    }

    #[test]
    fn folders_and_numbers_are_checked() {
        let base = || MailboxSettings { enabled: true, host: "imap.example.test".into(), username: "u".into(), ..MailboxSettings::default() };
        let field = |s: MailboxSettings| match check(&s).unwrap_err() {
            Error::InvalidIntegration { field, .. } => field,
            Error::TooLong(err) => err.field,
            other => panic!("{other}"),
        };
        assert_eq!(field(MailboxSettings { folder: "a\"b".into(), ..base() }), "mailbox.folder");
        assert_eq!(field(MailboxSettings { folder: "x".repeat(201), ..base() }), "mailbox.folder");
        assert_eq!(field(MailboxSettings { after: After::Move, ..base() }), "mailbox.move_to");
        assert_eq!(field(MailboxSettings { poll_secs: 5, ..base() }), "mailbox.poll_secs");
        assert_eq!(field(MailboxSettings { soft_bounce_limit: 21, ..base() }), "mailbox.soft_bounce_limit");
        assert_eq!(field(MailboxSettings { host: String::new(), ..base() }), "mailbox.host");
        assert_eq!(field(MailboxSettings { host: "a b".into(), ..base() }), "mailbox.host");
        assert_eq!(uid_set(&[1, 5, 9]), "1,5,9");
    }
}
