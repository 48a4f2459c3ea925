//! Opens, clicks and unsubscribing (DESIGN §10, FLOW_FORMAT "Engagement"):
//! what the recipient of a message does with it comes back here, is kept on
//! the message's conversation record and on the contact, and becomes an
//! event the flows hear.
//!
//! - Sending: each email to a contact gets an open pixel and its links the
//!   click redirect ([`links`]), unless the installation (integration
//!   setting `tracking`), its flow (`"tracking": false`) or the link
//!   (`data-waymark-notrack`) says not to; every email of a flow that is not
//!   `"transactional": true` carries `List-Unsubscribe` (https and mailto)
//!   and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058);
//!   `{{ unsubscribe_url }}` becomes the message's own preference page link.
//! - Hearing: the pixel, the redirect and the unsubscribe page ([`routes`])
//!   take a signed [`Token`] naming the message (and link), never a URL: a
//!   click redirects only to a link that message carried (its
//!   `conversation_links`), and a changed token is an unknown page.
//!   Machines are told from people by [`machine`].
//! - Consent: an unsubscribe (one-click, the preference page, the mailto,
//!   an SMS STOP) changes the contact's consent at once, in the same
//!   transaction that records the change (`consent_changes`: channel, on or
//!   off, when, through what) and writes the `unsubscribed` event; sends
//!   check consent every time (the engine's rule).
//!
//! The signing key is made once per installation, at random, and stored
//! encrypted like the integration secrets (row `tracking_key`; rotating the
//! master key re-encrypts it but never changes it, so links already sent
//! keep working). Nothing here sets a cookie or reads a session.

mod hits;
pub mod links;
pub mod machine;
mod page;
pub mod routes;
pub mod token;

use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};
use sqlx::Row;

use app::core::engagement::{ContactEvent, Received};
use app::core::merge::{escape_html, UNSUBSCRIBE_TAG};

use super::settings::Tracking;
use crate::db::{Conn, Pool};
use crate::error::{Error, Result};
use crate::runtime::events::{self, NewEvent};
use crate::runtime::{contacts, millis, Runtime};
pub use token::Token;

/// Opens and clicks of one message that become events; later ones are
/// still counted on its record. (A message opened every morning for a year
/// does not flood its flows.)
pub const EVENTS_PER_MESSAGE: i64 = 50;

/// The integration-settings row holding the tracking key.
const KEY_ROW: &str = "tracking_key";

/// Tracking keys by database, once read.
static KEYS: LazyLock<Mutex<HashMap<String, [u8; token::KEY_LEN]>>> = LazyLock::new(Mutex::default);

/// The installation's tracking key: read (and decrypted) once per process,
/// made on first use.
pub async fn key(pool: &Pool) -> Result<[u8; token::KEY_LEN]> {
    let options = pool.connect_options();
    let database = options.database_url.as_str();
    if let Some(key) = KEYS.lock().unwrap_or_else(|p| p.into_inner()).get(database) {
        return Ok(*key);
    }
    let keyring = crate::secrets::keyring(pool)
        .map_err(|err| Error::Internal(anyhow::anyhow!("the key for integration secrets cannot be loaded: {err:#}")))?;
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT secret FROM integration_settings WHERE channel = $1").bind(KEY_ROW).fetch_optional(pool).await?;
    let stored = match stored.flatten() {
        Some(stored) => stored,
        None => {
            let mut fresh = [0u8; token::KEY_LEN];
            getrandom::getrandom(&mut fresh).expect("the operating system's random source works");
            // Two processes making one at once: the first insert wins, both read it.
            sqlx::query(
                "INSERT INTO integration_settings (channel, settings, secret, updated_at) VALUES ($1, '{}', $2, $3)
                 ON CONFLICT (channel) DO NOTHING",
            )
            .bind(KEY_ROW)
            .bind(keyring.encrypt(KEY_ROW, &BASE64.encode(fresh)))
            .bind(Timestamp::now().to_string())
            .execute(pool)
            .await?;
            sqlx::query_scalar::<_, Option<String>>("SELECT secret FROM integration_settings WHERE channel = $1")
                .bind(KEY_ROW)
                .fetch_one(pool)
                .await?
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("the tracking key was not stored")))?
        }
    };
    let plain = keyring.decrypt(KEY_ROW, &stored).map_err(|err| Error::Conflict { code: "secret_unreadable", message: err.to_string() })?;
    let key: [u8; token::KEY_LEN] = BASE64
        .decode(plain.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the stored tracking key is not 32 bytes")))?;
    KEYS.lock().unwrap_or_else(|p| p.into_inner()).insert(database.to_owned(), key);
    Ok(key)
}

/// What a flow says about its emails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowFlags {
    /// Receipts and the like: no `List-Unsubscribe`.
    pub transactional: bool,
    /// `"tracking": false`: no pixel, no tracked links.
    pub untracked: bool,
}

/// An email about to go out, as tracking and unsubscribing change it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    pub html: Option<String>,
    pub text: String,
    pub subject: String,
    /// `List-Unsubscribe` (https, then mailto when there is one).
    pub list_unsubscribe: Option<String>,
    /// Whether `List-Unsubscribe-Post: List-Unsubscribe=One-Click` goes with it.
    pub one_click: bool,
    /// The pixel went in, or links went through the redirect.
    pub tracked: bool,
    /// The tracked links, by position.
    pub links: Vec<String>,
}

/// Where links point and what the installation allows, for one send.
pub struct Plan<'a> {
    pub key: &'a [u8; token::KEY_LEN],
    /// Our public base URL (no trailing slash); nothing is tracked and no
    /// https unsubscribe link is offered without one.
    pub base: Option<&'a str>,
    pub settings: &'a Tracking,
    pub flags: FlowFlags,
    /// The From address (its domain takes the mailto by default).
    pub from: &'a str,
}

impl Plan<'_> {
    /// `{base}/u/{token}`: the message's unsubscribe and preference page.
    pub fn unsubscribe_url(&self, conversation: i64) -> Option<String> {
        self.base.map(|base| format!("{base}/u/{}", Token::Unsubscribe { conversation }.sign(self.key)))
    }

    /// `mailto:unsubscribe+{token}@domain?subject=unsubscribe`.
    pub fn unsubscribe_mailto(&self, conversation: i64) -> Option<String> {
        let token = Token::Unsubscribe { conversation }.sign(self.key);
        let (user, domain): (String, String) = match self.settings.unsubscribe_mailbox.as_deref() {
            Some(mailbox) => mailbox.rsplit_once('@').map(|(u, d)| (u.to_owned(), d.to_owned()))?,
            None => ("unsubscribe".to_owned(), self.from.parse::<lettre::message::Mailbox>().ok()?.email.domain().to_owned()),
        };
        Some(format!("mailto:{user}+{token}@{domain}?subject=unsubscribe"))
    }

    /// The email for conversation `conversation`: `{{ unsubscribe_url }}`
    /// filled, links and pixel tracked, and the unsubscribe headers.
    pub fn prepare(&self, conversation: i64, subject: &str, html: Option<&str>, text: &str) -> Prepared {
        let url = self.unsubscribe_url(conversation).unwrap_or_default();
        let mut prepared = Prepared {
            subject: subject.replace(UNSUBSCRIBE_TAG, &url),
            text: text.replace(UNSUBSCRIBE_TAG, &url),
            ..Prepared::default()
        };
        if let Some(html) = html {
            let mut body = html.to_owned();
            let base = self.base.filter(|_| !self.flags.untracked);
            if let Some(base) = base {
                if self.settings.clicks {
                    let rewritten = links::rewrite(&body, base, |link| format!("{base}/t/c/{}", Token::Click { conversation, link }.sign(self.key)));
                    prepared.tracked |= !rewritten.links.is_empty();
                    body = rewritten.html;
                    prepared.links = rewritten.links;
                }
                if self.settings.opens {
                    body = links::add_pixel(&body, &format!("{base}/t/o/{}", Token::Open { conversation }.sign(self.key)));
                    prepared.tracked = true;
                }
            }
            prepared.html = Some(body.replace(UNSUBSCRIBE_TAG, &escape_html(&url)));
        }
        if !self.flags.transactional {
            let https = self.unsubscribe_url(conversation).map(|u| format!("<{u}>"));
            let mailto = self.unsubscribe_mailto(conversation).map(|u| format!("<{u}>"));
            prepared.one_click = https.is_some();
            let both: Vec<String> = https.into_iter().chain(mailto).collect();
            prepared.list_unsubscribe = (!both.is_empty()).then(|| both.join(", "));
        }
        prepared
    }
}

/// A flow's flags, from the version a participant is on.
pub async fn flow_flags(pool: &Pool, participant: i64) -> Result<(i64, i64, FlowFlags)> {
    let row = sqlx::query(
        "SELECT p.flow_id, p.version, v.document FROM participants p JOIN flow_versions v ON v.flow_id = p.flow_id AND v.number = p.version
         WHERE p.id = $1",
    )
    .bind(participant)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok((0, 0, FlowFlags::default())) };
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        settings: app::core::flow::FlowSettings,
    }
    let head: Head = serde_json::from_str(row.get("document")).map_err(|err| Error::Internal(anyhow::anyhow!("stored version unreadable: {err}")))?;
    let flags =
        FlowFlags { transactional: head.settings.transactional == Some(true), untracked: head.settings.tracking == Some(false) };
    Ok((row.get("flow_id"), row.get("version"), flags))
}

/// How a request reached the pixel or the redirect: whether the request
/// itself shows a machine ([`machine::by_request`], judged by the handler,
/// so the one writer of hits does not).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hit {
    pub machine: Option<&'static str>,
}

impl Hit {
    /// The hit of a request made with `HEAD` or not, and this user agent.
    pub fn of(head: bool, user_agent: Option<&str>) -> Hit {
        Hit { machine: machine::by_request(head, user_agent) }
    }
}

/// The message a token names, as hits need it.
struct Message {
    participant: Option<i64>,
    contact: Option<i64>,
    step: Option<String>,
    sent_at: Option<Timestamp>,
    /// Opens and clicks so far (events stop at [`EVENTS_PER_MESSAGE`]).
    hits: i64,
    opened: bool,
    /// The contact is erased: nothing more is recorded about it.
    erased: bool,
}

/// A click's message and link in one read: the link's target, the
/// message, and the latest click on another of its links (rule 4 of
/// [`machine`]). `None` when the message never had that link.
async fn clicked(conn: &mut Conn, conversation: i64, link: u16) -> Result<Option<(String, Message, Option<i64>)>> {
    let row = sqlx::query(
        "SELECT l.url, v.participant_id, v.contact_id, v.step, v.sent_at,
                v.open_count + v.machine_open_count + v.click_count + v.machine_click_count AS hits, v.opened_at, c.deleted_at,
                (SELECT max(o.last_clicked_ms) FROM conversation_links o WHERE o.conversation_id = l.conversation_id AND o.position <> l.position) AS other
         FROM conversation_links l JOIN conversations v ON v.id = l.conversation_id LEFT JOIN contacts c ON c.id = v.contact_id
         WHERE l.conversation_id = $1 AND l.position = $2",
    )
    .bind(conversation)
    .bind(i64::from(link))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| {
        let message = Message {
            participant: row.get("participant_id"),
            contact: row.get("contact_id"),
            step: row.get("step"),
            sent_at: row.get::<Option<String>, _>("sent_at").and_then(|t| t.parse().ok()),
            hits: row.get("hits"),
            opened: row.get::<Option<String>, _>("opened_at").is_some(),
            erased: row.get::<Option<String>, _>("deleted_at").is_some(),
        };
        (row.get("url"), message, row.get("other"))
    }))
}

/// An open of `conversation`: counted on its record, and an event while
/// the message has had fewer than [`EVENTS_PER_MESSAGE`]. False when no
/// such message exists. Answered once written (with the other hits that
/// came meanwhile, see [`hits`]).
pub async fn open(runtime: &Runtime, conversation: i64, hit: &Hit) -> Result<bool> {
    match hits::write(runtime, conversation, hits::Kind::Open, hit).await? {
        hits::Answer::Opened(found) => Ok(found),
        hits::Answer::Clicked(_) => Err(Error::Internal(anyhow::anyhow!("an open was answered as a click"))),
    }
}

/// A click on the `link`-th link of `conversation`: where it leads (`None`
/// when the message never had that link), after counting it on the record
/// and the link and, while the message has had fewer than
/// [`EVENTS_PER_MESSAGE`] opens and clicks, as an event. A person's click
/// on a message not seen opened (images blocked) counts as its open too.
/// Answered once written, like [`open`].
pub async fn click(runtime: &Runtime, conversation: i64, link: u16, hit: &Hit, scanner: SignedDuration) -> Result<Option<String>> {
    match hits::write(runtime, conversation, hits::Kind::Click { link, scanner }, hit).await? {
        hits::Answer::Clicked(target) => Ok(target),
        hits::Answer::Opened(_) => Err(Error::Internal(anyhow::anyhow!("a click was answered as an open"))),
    }
}

/// Opens of one message (`hits`, in order of arrival), in the caller's
/// write transaction: one update of its counts, an event each while the
/// message has had fewer than [`EVENTS_PER_MESSAGE`] opens and clicks.
async fn opens_in(runtime: &Runtime, conn: &mut Conn, conversation: i64, hits: &[&Hit], now: Timestamp) -> Result<Written<bool>> {
    let machine: Vec<bool> = hits.iter().map(|hit| hit.machine.is_some()).collect();
    let machines = machine.iter().filter(|m| **m).count() as i64;
    let people = machine.len() as i64 - machines;
    // Counted and read back in one statement; nothing is counted for a
    // message whose contact is gone or erased.
    let row = sqlx::query(
        "UPDATE conversations SET open_count = open_count + $1, machine_open_count = machine_open_count + $2,
             opened_at = CASE WHEN $1 > 0 THEN coalesce(opened_at, $3) ELSE opened_at END
         WHERE id = $4 AND contact_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = conversations.contact_id AND c.deleted_at IS NOT NULL)
         RETURNING participant_id, contact_id, step, open_count + machine_open_count + click_count + machine_click_count AS hits",
    )
    .bind(people)
    .bind(machines)
    .bind(now.to_string())
    .bind(conversation)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        // The pixel of a message that exists still shows.
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1").bind(conversation).fetch_optional(&mut *conn).await?;
        return Ok(Written::nothing(exists.is_some()));
    };
    let message = Message {
        participant: row.get("participant_id"),
        contact: row.get("contact_id"),
        step: row.get("step"),
        sent_at: None,
        // As they were before these.
        hits: row.get::<i64, _>("hits") - machine.len() as i64,
        opened: false,
        erased: false,
    };
    let room = usize::try_from(EVENTS_PER_MESSAGE - message.hits).unwrap_or(0);
    let heard: Vec<ContactEvent> = machine.iter().take(room).map(|&machine| ContactEvent::EmailOpened { step: message.step.clone(), machine }).collect();
    let events = heard.len();
    hear(runtime, conn, &message, heard, "pixel", now).await?;
    Ok(Written { answer: true, events })
}

/// Clicks on one link of one message (`hits`, in order of arrival, none
/// on another link of it in between), in the caller's write transaction:
/// where the link leads (`None`: the message never had it), one update of
/// the link's and the message's counts, and the events (see [`click`]).
/// Each click is judged person or machine on its own; the timing rules
/// read the wall clock once for the run.
async fn clicks_in(runtime: &Runtime, conn: &mut Conn, conversation: i64, link: u16, hits: &[&Hit], scanner: SignedDuration, now: Timestamp) -> Result<Written<Option<String>>> {
    let Some((url, message, other)) = clicked(conn, conversation, link).await? else { return Ok(Written::nothing(None)) };
    if message.erased || message.contact.is_none() {
        return Ok(Written::nothing(Some(url)));
    }
    // Timing rules compare wall-clock times: when it was sent, when this came.
    let wall = Timestamp::now();
    let since_other = other.map(|ms| SignedDuration::from_millis(millis(wall) - ms));
    let since_sent = message.sent_at.map(|sent| wall.duration_since(sent));
    let machine: Vec<bool> = hits.iter().map(|hit| machine::by_timing(hit.machine, since_sent, scanner, since_other).is_some()).collect();
    let machines = machine.iter().filter(|m| **m).count() as i64;
    let people = machine.len() as i64 - machines;
    let at = now.to_string();
    sqlx::query(
        "UPDATE conversation_links SET clicks = clicks + $1, machine_clicks = machine_clicks + $2,
             first_clicked_at = CASE WHEN $1 > 0 THEN coalesce(first_clicked_at, $3) ELSE first_clicked_at END, last_clicked_ms = $4
         WHERE conversation_id = $5 AND position = $6",
    )
    .bind(people)
    .bind(machines)
    .bind(&at)
    .bind(millis(wall))
    .bind(conversation)
    .bind(i64::from(link))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE conversations SET click_count = click_count + $1, machine_click_count = machine_click_count + $2,
             clicked_at = CASE WHEN $1 > 0 THEN coalesce(clicked_at, $3) ELSE clicked_at END,
             opened_at = CASE WHEN $1 > 0 THEN coalesce(opened_at, $3) ELSE opened_at END
         WHERE id = $4",
    )
    .bind(people)
    .bind(machines)
    .bind(&at)
    .bind(conversation)
    .execute(&mut *conn)
    .await?;
    // As if one by one: each click an event while the message has had
    // fewer than EVENTS_PER_MESSAGE hits, and a person's first click on a
    // message not seen opened its open too.
    let (mut seen, mut opened) = (message.hits, message.opened);
    let mut heard = Vec::new();
    for &machine in &machine {
        if seen < EVENTS_PER_MESSAGE {
            if !machine && !opened {
                heard.push(ContactEvent::EmailOpened { step: message.step.clone(), machine: false });
            }
            heard.push(ContactEvent::LinkClicked { step: message.step.clone(), url: url.clone(), machine });
        }
        opened |= !machine;
        seen += 1;
    }
    let events = heard.len();
    hear(runtime, conn, &message, heard, "click", now).await?;
    Ok(Written { answer: Some(url), events })
}

/// What writing hits answered, and how many events it wrote.
struct Written<T> {
    answer: T,
    events: usize,
}

impl<T> Written<T> {
    fn nothing(answer: T) -> Self {
        Written { answer, events: 0 }
    }
}

/// Writes events about a message's participant.
async fn hear(runtime: &Runtime, conn: &mut Conn, message: &Message, heard: Vec<ContactEvent>, source: &'static str, now: Timestamp) -> Result<()> {
    let Some(contact_id) = message.contact else { return Ok(()) };
    if heard.is_empty() {
        return Ok(());
    }
    let new: Vec<NewEvent> = heard
        .into_iter()
        .map(|event| NewEvent { contact_id, participant_id: message.participant, received: Received { id: None, at: now, event }, source })
        .collect();
    events::record(runtime, conn, &new).await?;
    Ok(())
}

/// Channels a person can be asked about on the preference page.
pub const CHANNELS: [&str; 3] = ["email", "sms", "call"];

/// Whether `opted_out` lets the contact be reached on `channel`.
pub fn subscribed(opted_out: &BTreeSet<String>, channel: &str) -> bool {
    !opted_out.contains("all") && !opted_out.contains(channel)
}

/// Sets one channel's consent in `opted_out`, spelling `all` out into the
/// other channels when one is turned back on. True when it changed.
pub fn set_consent(opted_out: &mut BTreeSet<String>, channel: &str, subscribe: bool) -> bool {
    let before = opted_out.clone();
    if channel == "all" {
        for c in CHANNELS {
            set_consent(opted_out, c, subscribe);
        }
        if subscribe {
            opted_out.remove("all");
        } else {
            opted_out.insert("all".into());
        }
    } else if subscribe {
        if opted_out.remove("all") {
            opted_out.extend(CHANNELS.iter().filter(|c| **c != channel).map(|c| c.to_string()));
        }
        opted_out.remove(channel);
    } else if !opted_out.contains("all") {
        opted_out.insert(channel.to_owned());
    }
    *opted_out != before
}

/// A consent change asked for: through which message, if one, and how.
pub struct ConsentChange<'a> {
    pub contact: i64,
    /// (channel, subscribe) pairs, applied in order.
    pub channels: Vec<(&'a str, bool)>,
    /// one_click, preference_page, mailto, sms_keyword (and, written by
    /// [`record_feedback_consent`], hard_bounce, complaint, soft_bounces).
    pub source: &'static str,
    pub detail: Option<String>,
    pub conversation: Option<i64>,
    pub participant: Option<i64>,
    /// The caller's id for the events (an SMS's sid), for idempotency.
    pub external: Option<String>,
}

/// Applies a consent change at once, in one transaction: the contact's
/// consent (its participants re-check what waits on it), one
/// `consent_changes` row per channel that changed, an `unsubscribed` event
/// per channel turned off, and the message's `unsubscribed_at`. An erased
/// contact is left as it is. Returns the channels that changed.
pub async fn change_consent(runtime: &Runtime, change: ConsentChange<'_>) -> Result<Vec<(String, bool)>> {
    if let Some(detail) = &change.detail {
        app::core::limits::check("detail", detail, app::core::limits::CONSENT_DETAIL)?;
    }
    let now = runtime.now();
    let mut tx = crate::db::begin_write(runtime.pool()).await?;
    let deleted: Option<Option<String>> =
        sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE id = $1").bind(change.contact).fetch_optional(&mut *tx).await?;
    if !matches!(deleted, Some(None)) {
        return Ok(Vec::new());
    }
    let before = contacts::load(&mut tx, change.contact).await?;
    let mut after = before.clone();
    let mut changed = Vec::new();
    for (channel, subscribe) in &change.channels {
        if set_consent(&mut after.opted_out, channel, *subscribe) {
            changed.push((channel.to_string(), *subscribe));
        }
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    contacts::save(&mut tx, change.contact, &before, &after).await?;
    let mut new_events = Vec::new();
    for (n, (channel, subscribe)) in changed.iter().enumerate() {
        sqlx::query(
            "INSERT INTO consent_changes (contact_id, channel, opted_out, source, detail, conversation_id, at, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(change.contact)
        .bind(channel)
        .bind(i64::from(!subscribe))
        .bind(change.source)
        .bind(&change.detail)
        .bind(change.conversation)
        .bind(now.to_string())
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        if !subscribe {
            let id = change.external.as_ref().map(|id| format!("{id}:{n}"));
            let received = Received { id, at: now, event: ContactEvent::Unsubscribed { channel: channel.clone() } };
            let source = if change.source == "sms_keyword" { "sms" } else { "unsubscribe" };
            new_events.push(NewEvent { contact_id: change.contact, participant_id: change.participant, received, source });
        }
    }
    if !new_events.is_empty() {
        events::record(runtime, &mut tx, &new_events).await?;
    }
    if let (Some(conversation), true) = (change.conversation, changed.iter().any(|(_, subscribe)| !subscribe)) {
        sqlx::query("UPDATE conversations SET unsubscribed_at = coalesce(unsubscribed_at, $1) WHERE id = $2")
            .bind(now.to_string())
            .bind(conversation)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    runtime.events_arrived();
    Ok(changed)
}

/// Who a conversation's unsubscribe token speaks for: (contact, participant).
pub async fn conversation_contact(pool: &Pool, conversation: i64) -> Result<Option<(i64, Option<i64>)>> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT contact_id, participant_id FROM conversations WHERE id = $1").bind(conversation).fetch_optional(pool).await?;
    Ok(row.and_then(|(contact, participant)| contact.map(|c| (c, participant))))
}

/// Unsubscribes from email through a `mailto:` List-Unsubscribe: `to` is
/// the address the mail came to (`unsubscribe+TOKEN@…`). The bounce and
/// reply mailbox calls it on such a message. The conversation the token
/// names, or `None` when `to` holds no valid token. Unsubscribing someone
/// already unsubscribed changes nothing, so a message read twice is harmless.
pub async fn unsubscribe_by_mail(runtime: &Runtime, to: &str) -> Result<Option<i64>> {
    let local = to.trim().trim_start_matches('<').split('@').next().unwrap_or_default();
    let Some((_, text)) = local.rsplit_once('+') else { return Ok(None) };
    let key = key(runtime.pool()).await?;
    let Some(Token::Unsubscribe { conversation }) = Token::verify(&key, &text.to_ascii_lowercase()) else { return Ok(None) };
    let Some((contact, participant)) = conversation_contact(runtime.pool(), conversation).await? else { return Ok(None) };
    let change = ConsentChange {
        contact,
        channels: vec![("email", false)],
        source: "mailto",
        detail: None,
        conversation: Some(conversation),
        participant,
        external: None,
    };
    change_consent(runtime, change).await?;
    Ok(Some(conversation))
}

/// Why feedback about a message turned email off for its contact, without
/// the contact asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedbackConsent {
    /// A hard bounce: the address is undeliverable.
    HardBounce,
    /// A feedback-loop complaint: email consent off.
    Complaint,
    /// Soft bounces in a row (the mailbox's `soft_bounce_limit`) marked
    /// the address undeliverable.
    SoftBounces,
}

impl FeedbackConsent {
    /// The `consent_changes.source`.
    pub fn source(self) -> &'static str {
        match self {
            FeedbackConsent::HardBounce => "hard_bounce",
            FeedbackConsent::Complaint => "complaint",
            FeedbackConsent::SoftBounces => "soft_bounces",
        }
    }
}

/// Records in `consent_changes`, in the caller's write transaction, that
/// feedback about `conversation` turned email off for its contact: a hard
/// bounce or a complaint (which the event's delivery then applies to the
/// contact), or soft bounces in a row (already applied by the caller).
/// Nothing is written when it changes nothing: the contact is already
/// opted out of email (a complaint) or its address already undeliverable
/// (a hard bounce), the contact is erased or gone, or this conversation's
/// feedback already wrote the same row. True when a row was written.
pub async fn record_feedback_consent(conn: &mut Conn, conversation: i64, why: FeedbackConsent, detail: Option<&str>, now: Timestamp) -> Result<bool> {
    let row: Option<(Option<i64>, String)> =
        sqlx::query_as("SELECT contact_id, address FROM conversations WHERE id = $1").bind(conversation).fetch_optional(&mut *conn).await?;
    let Some((Some(contact), address)) = row else { return Ok(false) };
    let deleted: Option<Option<String>> =
        sqlx::query_scalar("SELECT deleted_at FROM contacts WHERE id = $1").bind(contact).fetch_optional(&mut *conn).await?;
    if !matches!(deleted, Some(None)) {
        return Ok(false);
    }
    let written: Option<i64> = sqlx::query_scalar("SELECT id FROM consent_changes WHERE conversation_id = $1 AND source = $2")
        .bind(conversation)
        .bind(why.source())
        .fetch_optional(&mut *conn)
        .await?;
    if written.is_some() {
        return Ok(false);
    }
    let current = contacts::load(conn, contact).await?;
    let address = address.split(',').next().unwrap_or_default().trim().to_owned();
    let already = match why {
        FeedbackConsent::Complaint => !subscribed(&current.opted_out, "email"),
        FeedbackConsent::HardBounce => current.is_undeliverable(&address),
        FeedbackConsent::SoftBounces => false,
    };
    if already {
        return Ok(false);
    }
    let detail = detail.map(|d| crate::channels::mailbox::classify::cut(d, app::core::limits::CONSENT_DETAIL));
    sqlx::query(
        "INSERT INTO consent_changes (contact_id, channel, opted_out, source, detail, conversation_id, at, at_ms)
         VALUES ($1, 'email', 1, $2, $3, $4, $5, $6)",
    )
    .bind(contact)
    .bind(why.source())
    .bind(detail)
    .bind(conversation)
    .bind(now.to_string())
    .bind(millis(now))
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// A contact's preference page link (`{base}/u/{token}`), for people who
/// help the contact (support, the API).
pub async fn preferences_link(pool: &Pool, base: &str, contact: i64) -> Result<String> {
    let key = key(pool).await?;
    Ok(format!("{}/u/{}", base.trim_end_matches('/'), Token::Preferences { contact }.sign(&key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn consent_is_set_per_channel_and_all_is_spelled_out_when_one_returns() {
        let mut out = set(&[]);
        assert!(set_consent(&mut out, "email", false));
        assert!(!set_consent(&mut out, "email", false), "already off");
        assert_eq!(out, set(&["email"]));
        assert!(set_consent(&mut out, "all", false));
        assert_eq!(out, set(&["all", "call", "email", "sms"]));
        assert!(set_consent(&mut out, "sms", true));
        assert_eq!(out, set(&["call", "email"]));
        assert!(subscribed(&out, "sms") && !subscribed(&out, "email"));
        let mut legacy = set(&["all", "undeliverable:a@b.test"]);
        assert!(set_consent(&mut legacy, "sms", true), "START after an old opt-out of everything");
        assert_eq!(legacy, set(&["call", "email", "undeliverable:a@b.test"]));
        assert!(set_consent(&mut legacy, "all", true));
        assert_eq!(legacy, set(&["undeliverable:a@b.test"]), "a hard bounce is not consent");
    }

    fn plan<'a>(key: &'a [u8; 32], settings: &'a Tracking, flags: FlowFlags) -> Plan<'a> {
        Plan { key, base: Some("https://wm.test"), settings, flags, from: "News <news@shop.test>" }
    }

    #[test]
    fn an_email_is_tracked_and_unsubscribable_as_its_flow_and_installation_say() {
        let key = [3u8; 32];
        let settings = Tracking::default();
        let html = "<html><body><p><a href=\"https://shop.test/sale\">Sale</a> · <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>";
        let out = plan(&key, &settings, FlowFlags::default()).prepare(7, "Hi {{ unsubscribe_url }}", Some(html), "");
        let u = format!("https://wm.test/u/{}", Token::Unsubscribe { conversation: 7 }.sign(&key));
        let html = out.html.unwrap();
        assert!(html.contains(&format!("href=\"https://wm.test/t/c/{}\"", Token::Click { conversation: 7, link: 0 }.sign(&key))), "{html}");
        assert!(html.contains(&format!("href=\"{u}\"")), "the unsubscribe link is filled, not tracked: {html}");
        assert!(html.contains(&format!("<img src=\"https://wm.test/t/o/{}\"", Token::Open { conversation: 7 }.sign(&key))));
        assert_eq!(out.links, ["https://shop.test/sale"]);
        assert_eq!(out.subject, format!("Hi {u}"));
        let mailto = format!("mailto:unsubscribe+{}@shop.test?subject=unsubscribe", Token::Unsubscribe { conversation: 7 }.sign(&key));
        assert_eq!(out.list_unsubscribe, Some(format!("<{u}>, <{mailto}>")));
        assert!(out.one_click && out.tracked);

        let quiet = plan(&key, &settings, FlowFlags { transactional: true, untracked: true }).prepare(7, "s", Some("<a href=\"https://x.test\">x</a>"), "");
        assert_eq!((quiet.html.as_deref(), quiet.list_unsubscribe, quiet.tracked), (Some("<a href=\"https://x.test\">x</a>"), None, false));
        let off = Tracking { opens: false, clicks: false, unsubscribe_mailbox: Some("leave@bounce.test".into()), ..Tracking::default() };
        let out = plan(&key, &off, FlowFlags::default()).prepare(8, "s", Some("<a href=\"https://x.test\">x</a>"), "");
        assert!(!out.tracked && out.list_unsubscribe.unwrap().contains("<mailto:leave+"));
        let nowhere = Plan { base: None, ..plan(&key, &settings, FlowFlags::default()) }.prepare(9, "s", Some("<a href=\"{{ unsubscribe_url }}\">u</a>"), "");
        assert_eq!(nowhere.html.as_deref(), Some("<a href=\"\">u</a>"));
        assert!(!nowhere.one_click && nowhere.list_unsubscribe.unwrap().starts_with("<mailto:"), "without a public address, the mailto alone");
    }
}
