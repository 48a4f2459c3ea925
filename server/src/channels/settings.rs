//! Integration settings: what an admin configures for each channel, stored
//! one row per channel. The secret (SMTP password, SMS token) lives in its
//! own column as a [`Secret`], which cannot be serialized: the browser only
//! ever learns whether one is set. It is stored encrypted with a key kept
//! outside the database (see [`crate::secrets`]).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::error::{Error, Result};
use crate::db::Pool;
use crate::secrets::{self, Keyring, SecretError};

/// A password or token. Not `Serialize`, and `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP (a relay on the same machine or network).
    None,
    /// Plain first, then upgraded; refused if the server cannot upgrade.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    /// The From mailbox: `Name <address>` or a bare address.
    pub from: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// How an SMS sender number is chosen from the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderChoice {
    /// Each message takes the next number in turn.
    #[default]
    RoundRobin,
    /// A number with the recipient's area code if the pool has one, else the next in turn.
    AreaCode,
}

/// A Twilio-compatible SMS provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    /// e.g. `https://api.twilio.com`.
    pub base_url: String,
    pub account_sid: String,
    pub senders: Vec<String>,
    #[serde(default)]
    pub choice: SenderChoice,
    /// Where the provider reports delivery (our `/api/v1/channels/sms/status`,
    /// as the provider reaches it); no callbacks when absent.
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Automatic calls through the same account, token and sender numbers;
    /// none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
    /// Where the provider posts incoming messages (our
    /// `/api/v1/channels/sms/inbound`, as the provider reaches it): STOP,
    /// UNSUBSCRIBE and START there change the sender's SMS consent. The
    /// provider signs each post over this URL, so it must be exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_url: Option<String>,
}

/// Automatic calls (Twilio-compatible `Calls.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    /// Where the provider reports each call's progress (our
    /// `/api/v1/channels/calls/status`, as the provider reaches it). Required:
    /// a call's outcome comes only from there.
    pub status_callback: String,
    /// The TwiML a call runs when its step has no script (Twilio's `Url`).
    #[serde(default)]
    pub url: Option<String>,
    /// How long the phone rings before the call counts as unanswered.
    #[serde(default = "default_ring")]
    pub ring_secs: u64,
}

fn default_ring() -> u64 {
    60
}

/// S3 or an S3-compatible store, addressed path style.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    /// e.g. `https://s3.eu-west-1.amazonaws.com` or `http://minio.internal:9000`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// An FTP server uploads go to (plain FTP, passive mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ftp {
    pub host: String,
    #[serde(default = "default_ftp_port")]
    pub port: u16,
    pub username: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_ftp_port() -> u16 {
    21
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmProvider {
    Zoho,
    Keap,
}

/// The CRM contacts are pushed to, with an OAuth access token as its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crm {
    pub provider: CrmProvider,
    /// e.g. `https://www.zohoapis.com` or `https://api.infusionsoft.com`.
    pub base_url: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// Outbound HTTP (webhooks, data append, attachments): the SSRF guard's
/// allowlist and the timeout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Host names or addresses/CIDRs the guard lets through even when they
    /// are internal (`hooks.internal`, `10.1.2.0/24`, `127.0.0.1`).
    #[serde(default)]
    pub allowlist: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http { allowlist: Vec::new(), timeout_secs: default_timeout() }
    }
}

fn default_timeout() -> u64 {
    10
}

/// Opens, clicks and unsubscribe links for the whole installation
/// (`channels::tracking`). Flows may turn tracking off for themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    /// An open pixel in each email.
    #[serde(default = "yes")]
    pub opens: bool,
    /// Links through the click redirect.
    #[serde(default = "yes")]
    pub clicks: bool,
    /// Where pixels, redirects and unsubscribe pages point (a tracking
    /// domain that reaches this server); the server's public URL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The mailbox `List-Unsubscribe`'s mailto goes to, with the token after
    /// a `+` (`unsubscribe@bounces.example.com` gives
    /// `unsubscribe+TOKEN@bounces.example.com`); `unsubscribe@` the From
    /// address's domain when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_mailbox: Option<String>,
    /// Clicks this many seconds after a message was sent count as a link
    /// scanner's (`machine`); 0 turns the rule off.
    #[serde(default = "default_scanner_secs")]
    pub scanner_secs: u64,
}

fn yes() -> bool {
    true
}

fn default_scanner_secs() -> u64 {
    10
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking { opens: true, clicks: true, base_url: None, unsubscribe_mailbox: None, scanner_secs: default_scanner_secs() }
    }
}

/// DKIM signing of outgoing mail (`channels::dkim`); the private key is the secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// The signing domain (`d=`), normally the From address's.
    pub domain: String,
    /// The selector (`s=`): the record sits at `{selector}._domainkey.{domain}`.
    pub selector: String,
    #[serde(default)]
    pub algorithm: super::dkim::Algorithm,
}

/// Every channel's settings, with their secrets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Integrations {
    pub smtp: Option<(Smtp, Option<Secret>)>,
    pub sms: Option<(Sms, Option<Secret>)>,
    pub s3: Option<(S3, Option<Secret>)>,
    pub ftp: Option<(Ftp, Option<Secret>)>,
    pub crm: Option<(Crm, Option<Secret>)>,
    pub http: Http,
    pub tracking: Tracking,
    pub dkim: Option<(Dkim, Option<Secret>)>,
}

/// The channels an admin can configure, with the name of each one's secret.
const CHANNELS: &[(&str, Option<&str>)] = &[
    ("smtp", Some("password")),
    ("sms", Some("token")),
    ("s3", Some("secret_access_key")),
    ("ftp", Some("password")),
    ("crm", Some("token")),
    ("http", None),
    ("tracking", None),
    ("dkim", Some("private_key")),
];

/// The name of a channel's secret field (`password`, `token`…), if it has one.
pub fn secret_field(channel: &str) -> Option<&'static str> {
    CHANNELS.iter().find(|(name, _)| *name == channel).and_then(|(_, secret)| *secret)
}

impl Integrations {
    pub async fn load(pool: &Pool) -> Result<Integrations> {
        let rows = sqlx::query("SELECT channel, settings, secret FROM integration_settings").fetch_all(pool).await?;
        let mut all = Integrations::default();
        let mut keyring = None;
        for row in rows {
            let channel: String = row.get("channel");
            let settings: String = row.get("settings");
            let secret = match row.get::<Option<String>, _>("secret") {
                None => None,
                Some(stored) => {
                    let keyring = cached(&mut keyring, pool)?;
                    Some(Secret(keyring.decrypt(&channel, &stored).map_err(unreadable)?))
                }
            };
            let bad = |err: serde_json::Error| anyhow::anyhow!("stored {channel} settings are unreadable: {err}");
            match channel.as_str() {
                "smtp" => all.smtp = Some((serde_json::from_str(&settings).map_err(bad)?, secret)),
                "sms" => all.sms = Some((serde_json::from_str(&settings).map_err(bad)?, secret)),
                "s3" => all.s3 = Some((serde_json::from_str(&settings).map_err(bad)?, secret)),
                "ftp" => all.ftp = Some((serde_json::from_str(&settings).map_err(bad)?, secret)),
                "crm" => all.crm = Some((serde_json::from_str(&settings).map_err(bad)?, secret)),
                "http" => all.http = serde_json::from_str(&settings).map_err(bad)?,
                "tracking" => all.tracking = serde_json::from_str(&settings).map_err(bad)?,
                "dkim" => all.dkim = Some((serde_json::from_str(&settings).map_err(bad)?, secret)),
                _ => {}
            }
        }
        Ok(all)
    }

    /// The tracking settings alone (the pixel and the redirect read them
    /// on every hit; no secret is decrypted for it).
    pub async fn tracking(pool: &Pool) -> Result<Tracking> {
        let stored: Option<String> = sqlx::query_scalar("SELECT settings FROM integration_settings WHERE channel = 'tracking'").fetch_optional(pool).await?;
        match stored {
            None => Ok(Tracking::default()),
            Some(text) => serde_json::from_str(&text).map_err(|err| anyhow::anyhow!("stored tracking settings are unreadable: {err}").into()),
        }
    }

    /// What the browser may see: the settings, and `password_set`,
    /// `token_set`, `secret_access_key_set` in place of the secrets.
    pub fn public_view(&self) -> Value {
        fn with_flag<T: Serialize>(settings: &T, flag: &str, secret: &Option<Secret>) -> Value {
            let mut value = serde_json::to_value(settings).expect("settings serialize");
            value[flag] = Value::Bool(secret.is_some());
            value
        }
        json!({
            "smtp": self.smtp.as_ref().map(|(s, secret)| with_flag(s, "password_set", secret)),
            "sms": self.sms.as_ref().map(|(s, secret)| with_flag(s, "token_set", secret)),
            "s3": self.s3.as_ref().map(|(s, secret)| with_flag(s, "secret_access_key_set", secret)),
            "ftp": self.ftp.as_ref().map(|(s, secret)| with_flag(s, "password_set", secret)),
            "crm": self.crm.as_ref().map(|(s, secret)| with_flag(s, "token_set", secret)),
            "http": self.http,
            "tracking": self.tracking,
            "dkim": self.dkim.as_ref().map(|(d, secret)| {
                let mut view = with_flag(d, "private_key_set", secret);
                // What to publish, from the key's public half (never the key).
                view["dns_record"] = match secret.as_ref().map(|key| super::dkim::record_value(d.algorithm, key.expose())) {
                    Some(Ok(value)) => json!({"type": "TXT", "name": super::dkim::record_name(&d.selector, &d.domain), "value": value}),
                    Some(Err(problem)) => json!({"problem": problem.to_string()}),
                    None => Value::Null,
                };
                view
            }),
        })
    }
}

/// Applies a `PUT`: each channel named in `body` is replaced (`null`
/// removes it). Its secret is kept when the body leaves it out, cleared by
/// `""`, replaced otherwise. Everything is checked before anything is written.
pub async fn update(pool: &Pool, body: Map<String, Value>) -> Result<Integrations> {
    let mut writes = Vec::new();
    for (channel, value) in body {
        let Some(&(_, secret_name)) = CHANNELS.iter().find(|(name, _)| *name == channel) else {
            let names: Vec<&str> = CHANNELS.iter().map(|(name, _)| *name).collect();
            return Err(invalid(&channel, &format!("is not a channel; use {}", names.join(", "))));
        };
        let mut fields = match value {
            Value::Object(fields) => fields,
            Value::Null => {
                writes.push((channel, None));
                continue;
            }
            _ => return Err(invalid(&channel, "must be an object, or null to remove it")),
        };
        for flag in ["password_set", "token_set", "secret_access_key_set", "private_key_set", "dns_record"] {
            fields.remove(flag);
        }
        let mut secret = match secret_name.and_then(|name| fields.remove(name)) {
            None => SecretChange::Keep,
            Some(Value::String(s)) if s.is_empty() => SecretChange::Clear,
            Some(Value::String(s)) => SecretChange::Set(s),
            Some(_) => return Err(invalid(&format!("{channel}.{}", secret_name.unwrap_or_default()), "must be a string")),
        };
        let settings = Value::Object(fields);
        match channel.as_str() {
            "smtp" => check_smtp(&parse(&channel, settings.clone())?)?,
            "sms" => check_sms(&parse(&channel, settings.clone())?)?,
            "s3" => check_s3(&parse(&channel, settings.clone())?)?,
            "ftp" => check_ftp(&parse(&channel, settings.clone())?)?,
            "crm" => check_crm(&parse(&channel, settings.clone())?)?,
            "http" => check_http(&parse(&channel, settings.clone())?)?,
            "tracking" => check_tracking(&parse(&channel, settings.clone())?)?,
            "dkim" => {
                let dkim: Dkim = parse(&channel, settings.clone())?;
                check_dkim(&dkim)?;
                // A pasted key is stored in the form it signs with.
                if let SecretChange::Set(key) = &mut secret {
                    app::core::limits::check("dkim.private_key", key, app::core::limits::DKIM_PRIVATE_KEY)?;
                    *key = super::dkim::normalize(dkim.algorithm, key).map_err(|problem| invalid("dkim.private_key", &problem.to_string()))?;
                }
            }
            _ => unreachable!("channels are listed in CHANNELS"),
        }
        writes.push((channel, Some((settings, secret))));
    }
    let now = jiff::Timestamp::now().to_string();
    // Loaded only when a secret is written or kept: saving settings without
    // one needs no key.
    let mut keyring = None;
    let mut tx = crate::db::begin_write(pool).await?;
    for (channel, write) in writes {
        match write {
            None => {
                sqlx::query("DELETE FROM integration_settings WHERE channel = $1").bind(&channel).execute(&mut *tx).await?;
            }
            Some((settings, secret)) => {
                let (keep, value) = match secret {
                    SecretChange::Keep => (true, None),
                    SecretChange::Clear => (false, None),
                    SecretChange::Set(s) => (false, Some(cached(&mut keyring, pool)?.encrypt(&channel, &s))),
                };
                sqlx::query(
                    "INSERT INTO integration_settings (channel, settings, secret, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (channel) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at,
                       secret = CASE WHEN $5 THEN integration_settings.secret ELSE excluded.secret END",
                )
                .bind(&channel)
                .bind(settings.to_string())
                .bind(value)
                .bind(&now)
                .bind(keep)
                .execute(&mut *tx)
                .await?;
                // A kept secret still in plain text, or under an older key,
                // is encrypted with the current one. The upsert holds the
                // row, so no other save slips in between.
                if keep {
                    let stored: Option<String> = sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = $1")
                        .bind(&channel)
                        .fetch_one(&mut *tx)
                        .await?;
                    let Some(stored) = stored else { continue };
                    let keyring = cached(&mut keyring, pool)?;
                    if !keyring.is_current(&stored) {
                        let plain = keyring.decrypt(&channel, &stored).map_err(unreadable)?;
                        sqlx::query("UPDATE integration_settings SET secret = $1 WHERE channel = $2")
                            .bind(keyring.encrypt(&channel, &plain))
                            .bind(&channel)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
    }
    tx.commit().await?;
    Integrations::load(pool).await
}

enum SecretChange {
    Keep,
    Clear,
    Set(String),
}

/// The keys for the pool's database, loaded into `slot` the first time a
/// secret needs them. A key that cannot be loaded is an internal error
/// (logged with its cause, which names the key file).
fn cached<'a>(slot: &'a mut Option<Arc<Keyring>>, pool: &Pool) -> Result<&'a Keyring> {
    if slot.is_none() {
        let keyring = secrets::keyring(pool)
            .map_err(|err| Error::Internal(anyhow::anyhow!("the key for integration secrets cannot be loaded: {err:#}")))?;
        *slot = Some(keyring);
    }
    Ok(slot.as_deref().expect("the keyring was just loaded"))
}

/// A stored secret no key decrypts: the admin reads which channel and key.
fn unreadable(err: SecretError) -> Error {
    Error::Conflict { code: "secret_unreadable", message: err.to_string() }
}

fn invalid(field: &str, message: &str) -> Error {
    Error::InvalidIntegration { field: field.to_owned(), message: message.to_owned() }
}

fn parse<T: serde::de::DeserializeOwned>(channel: &str, value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { channel.to_owned() } else { format!("{channel}.{path}") };
        Error::InvalidIntegration { field, message: err.into_inner().to_string() }
    })
}

fn check_smtp(smtp: &Smtp) -> Result<()> {
    if smtp.host.trim().is_empty() {
        return Err(invalid("smtp.host", "is empty"));
    }
    if smtp.port == 0 {
        return Err(invalid("smtp.port", "must be between 1 and 65535"));
    }
    if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(invalid("smtp.from", "is not an email address (write `Name <address>` or `address`)"));
    }
    check_timeout("smtp", smtp.timeout_secs)
}

fn check_sms(sms: &Sms) -> Result<()> {
    match url::Url::parse(&sms.base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => return Err(invalid("sms.base_url", "is not an http(s) URL")),
    }
    if sms.account_sid.trim().is_empty() || sms.account_sid.contains('/') {
        return Err(invalid("sms.account_sid", "must be the provider's account id"));
    }
    if sms.senders.is_empty() {
        return Err(invalid("sms.senders", "needs at least one sender number"));
    }
    if let Some(bad) = sms.senders.iter().find(|n| !super::sms::is_e164(n)) {
        return Err(invalid("sms.senders", &format!("“{bad}” is not a number in E.164 form (+15551234567)")));
    }
    app::core::limits::check("sms.inbound_url", sms.inbound_url.as_deref().unwrap_or_default(), app::core::limits::TRACKED_URL)?;
    if sms.inbound_url.as_deref().is_some_and(|u| !u.is_empty() && !url::Url::parse(u).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))) {
        return Err(invalid("sms.inbound_url", "is not an http(s) URL (the provider posts incoming messages there)"));
    }
    if let Some(voice) = &sms.voice {
        let web = |text: &str| url::Url::parse(text).is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
        if !web(&voice.status_callback) {
            return Err(invalid("sms.voice.status_callback", "is not an http(s) URL (calls report their outcome there)"));
        }
        if voice.url.as_deref().is_some_and(|u| !u.is_empty() && !web(u)) {
            return Err(invalid("sms.voice.url", "is not an http(s) URL"));
        }
        if !(5..=600).contains(&voice.ring_secs) {
            return Err(invalid("sms.voice.ring_secs", "must be between 5 and 600 seconds"));
        }
    }
    check_timeout("sms", sms.timeout_secs)
}

fn check_s3(s3: &S3) -> Result<()> {
    match url::Url::parse(&s3.endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.path() == "/" => {}
        _ => return Err(invalid("s3.endpoint", "is not an http(s) URL without a path")),
    }
    if s3.region.trim().is_empty() {
        return Err(invalid("s3.region", "is empty"));
    }
    if s3.access_key_id.trim().is_empty() {
        return Err(invalid("s3.access_key_id", "is empty"));
    }
    check_timeout("s3", s3.timeout_secs)
}

fn check_ftp(ftp: &Ftp) -> Result<()> {
    if ftp.host.trim().is_empty() {
        return Err(invalid("ftp.host", "is empty"));
    }
    if ftp.port == 0 {
        return Err(invalid("ftp.port", "must be between 1 and 65535"));
    }
    if ftp.username.trim().is_empty() {
        return Err(invalid("ftp.username", "is empty"));
    }
    check_timeout("ftp", ftp.timeout_secs)
}

fn check_crm(crm: &Crm) -> Result<()> {
    match url::Url::parse(&crm.base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        _ => return Err(invalid("crm.base_url", "is not an http(s) URL")),
    }
    check_timeout("crm", crm.timeout_secs)
}

fn check_http(http: &Http) -> Result<()> {
    for entry in &http.allowlist {
        if super::http::AllowEntry::parse(entry).is_none() {
            return Err(invalid("http.allowlist", &format!("“{entry}” is neither a host name nor an address or CIDR")));
        }
    }
    check_timeout("http", http.timeout_secs)
}

fn check_tracking(tracking: &Tracking) -> Result<()> {
    use app::core::limits;
    limits::check("tracking.base_url", tracking.base_url.as_deref().unwrap_or_default(), limits::TRACKED_URL)?;
    limits::check("tracking.unsubscribe_mailbox", tracking.unsubscribe_mailbox.as_deref().unwrap_or_default(), limits::EMAIL)?;
    if let Some(base) = tracking.base_url.as_deref() {
        match url::Url::parse(base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.query().is_none() && url.fragment().is_none() => {}
            _ => return Err(invalid("tracking.base_url", "is not an http(s) address without a query, like https://t.example.com")),
        }
    }
    if let Some(mailbox) = tracking.unsubscribe_mailbox.as_deref() {
        let valid = mailbox.parse::<lettre::Address>().is_ok_and(|a| a.user().len() <= 13 && !a.user().contains('+'));
        if !valid {
            return Err(invalid("tracking.unsubscribe_mailbox", "is not a plain address of at most 13 characters before the @ (the token takes the rest of the 64), like unsubscribe@example.com"));
        }
    }
    if tracking.scanner_secs > 3_600 {
        return Err(invalid("tracking.scanner_secs", "must be between 0 and 3600 seconds"));
    }
    Ok(())
}

fn check_dkim(dkim: &Dkim) -> Result<()> {
    use app::core::limits;
    limits::check("dkim.domain", &dkim.domain, limits::DKIM_DOMAIN)?;
    limits::check("dkim.selector", &dkim.selector, limits::DKIM_SELECTOR)?;
    if !super::dkim::valid_dns(&dkim.domain, false) {
        return Err(invalid("dkim.domain", "is not a domain name like example.com"));
    }
    if !super::dkim::valid_dns(&dkim.selector, true) {
        return Err(invalid("dkim.selector", "is not a selector: letters, digits and hyphens, like mail2026"));
    }
    Ok(())
}

fn check_timeout(channel: &str, secs: u64) -> Result<()> {
    if !(1..=120).contains(&secs) {
        return Err(invalid(&format!("{channel}.timeout_secs"), "must be between 1 and 120 seconds"));
    }
    Ok(())
}
