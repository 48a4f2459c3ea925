//! What comes back about an email we sent, from the bounce and reply
//! mailbox or a provider's webhook: a bounce (hard or soft, with the
//! remote server's status and words), a complaint, a reply (a person's, or
//! an auto-reply). Each is recorded on the message's conversation record
//! and, for a message to a contact, written as a contact event
//! (FLOW_FORMAT "Engagement") for the delivery pass to apply: a hard
//! bounce marks the address undeliverable, a complaint turns email consent
//! off, and waiting participants move.
//!
//! A message is ours when one of the Message-IDs the feedback names is the
//! `provider_id` of a conversation (the Message-ID we set, see
//! `channels::message_id`); providers that replace the Message-ID are
//! matched by the recipient's address to the newest email sent to it.
//!
//! Soft bounces in a row: when the address's `soft_bounce_limit` most
//! recent emails all soft-bounced, the address is marked undeliverable on
//! the contact directly, in the same transaction (no event claims a hard
//! bounce that never happened; the soft bounce's own event is written as
//! soft).
//!
//! Everything happens in the caller's write transaction; the caller calls
//! `Runtime::events_arrived` after committing. Applying the same feedback
//! twice (its `id` is the event's idempotency key) changes nothing.

use app::core::engagement::{BounceType, ContactEvent, Received};
use app::core::limits;
use sqlx::Row;

use super::mailbox::classify::cut;
use crate::db::{Backend, Conn};
use crate::error::Result;
use crate::runtime::events::{self, NewEvent};
use crate::runtime::{contacts, Runtime};

/// What came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Bounce { bounce: BounceType, status: Option<String>, diagnostic: Option<String> },
    Complaint,
    Reply { auto: bool, excerpt: String },
}

/// One piece of feedback about one message.
#[derive(Clone, Debug)]
pub struct Feedback {
    /// Unique per piece of feedback (its event's idempotency key).
    pub id: String,
    /// Who heard it: bounce, complaint, reply (the mailbox), ses, sendgrid, postmark, mailgun.
    pub source: &'static str,
    /// Message-IDs that may be ours, with or without angle brackets.
    pub originals: Vec<String>,
    /// The address it is about, when known.
    pub recipient: Option<String>,
    /// Whether to fall back to the newest email sent to `recipient` when
    /// no Message-ID is ours.
    pub by_address: bool,
    pub outcome: Outcome,
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Recorded on the conversation; `event` when a contact event was
    /// written, `undeliverable` when soft bounces in a row marked the
    /// address undeliverable.
    Recorded { conversation: i64, event: bool, undeliverable: bool },
    /// The same feedback was applied before.
    Duplicate { conversation: i64 },
    /// About no message we sent.
    Unmatched,
}

/// The conversation feedback is about.
struct Sent {
    id: i64,
    participant_id: Option<i64>,
    contact_id: Option<i64>,
    channel: String,
    address: String,
    step: Option<String>,
}

/// Default number of soft bounces in a row that mark an address undeliverable.
pub const SOFT_BOUNCE_LIMIT: u32 = 3;

/// Records `feedback` in the caller's write transaction. `soft_bounce_limit`:
/// see the module notes (0 turns the rule off).
pub async fn apply(runtime: &Runtime, conn: &mut Conn, feedback: &Feedback, soft_bounce_limit: u32) -> Result<Applied> {
    let Some(sent) = find(conn, feedback).await? else { return Ok(Applied::Unmatched) };
    let id = event_id(&feedback.id);
    let known: Option<i64> = sqlx::query_scalar("SELECT id FROM contact_events WHERE external_id = $1").bind(&id).fetch_optional(&mut *conn).await?;
    if known.is_some() {
        return Ok(Applied::Duplicate { conversation: sent.id });
    }
    let now = runtime.now();
    let at = now.to_string();
    record_on_conversation(conn, sent.id, &feedback.outcome, &at).await?;

    // Only a message to the contact, about that contact's address, reaches
    // the contact: a bounce of a Cc or of a notification to a user does not.
    let addresses: Vec<String> = sent.address.split(',').map(bare_address).collect();
    let about_them = feedback.recipient.as_deref().is_none_or(|r| addresses.contains(&bare_address(r)));
    let (Some(contact_id), Some(participant_id), "email", true) = (sent.contact_id, sent.participant_id, sent.channel.as_str(), about_them) else {
        return Ok(Applied::Recorded { conversation: sent.id, event: false, undeliverable: false });
    };
    let step = sent.step.clone();
    let event = match &feedback.outcome {
        Outcome::Bounce { bounce, .. } => ContactEvent::Bounced { step, bounce: *bounce },
        Outcome::Complaint => ContactEvent::Complained { step },
        Outcome::Reply { auto, .. } => ContactEvent::Replied { step, auto: *auto },
    };
    let received = Received { id: Some(id), at: now, event };
    let new = NewEvent { contact_id, participant_id: Some(participant_id), received, source: feedback.source };
    events::record(runtime, conn, &[new]).await?;

    let mut undeliverable = false;
    if let (Outcome::Bounce { bounce: BounceType::Soft, .. }, Some(address)) = (&feedback.outcome, addresses.first()) {
        if soft_bounce_limit > 0 && soft_in_a_row(conn, contact_id, address, soft_bounce_limit).await? {
            undeliverable = mark_undeliverable(runtime, conn, contact_id, address).await?;
        }
    }
    Ok(Applied::Recorded { conversation: sent.id, event: true, undeliverable })
}

/// The event's idempotency key: the feedback's id, hashed when longer than
/// events allow.
fn event_id(id: &str) -> String {
    if id.chars().count() <= limits::EVENT_ID {
        return id.to_owned();
    }
    use sha2::Digest;
    let (source, _) = id.split_once(':').unwrap_or(("feedback", ""));
    format!("{}:{}", source.chars().take(32).collect::<String>(), hex::encode(sha2::Sha256::digest(id.as_bytes())))
}

/// `Ada <Ada@Example.test>` → `ada@example.test`.
pub fn bare_address(text: &str) -> String {
    let text = text.trim();
    let inner = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    inner.trim().to_lowercase()
}

async fn find(conn: &mut Conn, feedback: &Feedback) -> Result<Option<Sent>> {
    let ids: Vec<&str> = feedback
        .originals
        .iter()
        .map(|id| super::mailbox::classify::unbracket(id))
        .filter(|id| !id.is_empty() && id.len() <= 998)
        .take(50)
        .collect();
    let select = "SELECT c.id, c.participant_id, c.contact_id, c.channel, c.address, c.idempotency_key, o.step
                  FROM conversations c LEFT JOIN outbox o ON o.idempotency_key = c.idempotency_key ";
    let mut row = None;
    if !ids.is_empty() {
        let mut query: crate::db::Sql = crate::db::Sql::new(format!("{select} WHERE c.channel IN ('email', 'notify_email') AND c.provider_id IN ("));
        let mut list = query.separated(", ");
        for id in &ids {
            list.push_bind(id.to_string());
        }
        query.push(") ORDER BY c.id DESC LIMIT 1");
        row = query.build().fetch_optional(&mut *conn).await?;
    }
    if row.is_none() && feedback.by_address {
        if let Some(address) = feedback.recipient.as_deref().map(bare_address).filter(|a| a.contains('@')) {
            row = sqlx::query(&format!(
                "{select} WHERE c.channel = 'email' AND lower(c.address) = $1 AND c.sent_at IS NOT NULL ORDER BY c.id DESC LIMIT 1"
            ))
            .bind(address)
            .fetch_optional(&mut *conn)
            .await?;
        }
    }
    Ok(row.map(|row| {
        let key: String = row.get("idempotency_key");
        // `participant:step:visit:attempt`, when the outbox row is gone.
        let from_key = || {
            let parts: Vec<&str> = key.split(':').collect();
            (parts.len() >= 4).then(|| parts[1..parts.len() - 2].join(":"))
        };
        Sent {
            id: row.get("id"),
            participant_id: row.get("participant_id"),
            contact_id: row.get("contact_id"),
            channel: row.get("channel"),
            address: row.get("address"),
            step: row.get::<Option<String>, _>("step").or_else(from_key),
        }
    }))
}

/// The outcome on the conversation record: the first time of each, the
/// stronger bounce, the latest person's reply.
async fn record_on_conversation(conn: &mut Conn, id: i64, outcome: &Outcome, at: &str) -> Result<()> {
    match outcome {
        Outcome::Bounce { bounce, status, diagnostic } => {
            let kind = if *bounce == BounceType::Hard { "hard" } else { "soft" };
            // A soft bounce after a hard one keeps the hard one's details.
            sqlx::query(
                "UPDATE conversations SET bounced_at = coalesce(bounced_at, $1),
                    bounce_status = CASE WHEN bounce_type = 'hard' AND $2 <> 'hard' THEN bounce_status ELSE $3 END,
                    bounce_diagnostic = CASE WHEN bounce_type = 'hard' AND $4 <> 'hard' THEN bounce_diagnostic ELSE $5 END,
                    bounce_type = CASE WHEN bounce_type = 'hard' THEN 'hard' ELSE $6 END,
                    updated_at = $7
                 WHERE id = $8",
            )
            .bind(at)
            .bind(kind)
            .bind(status.as_deref().map(|s| cut(s, 32)))
            .bind(kind)
            .bind(diagnostic.as_deref().map(|d| cut(d, limits::BOUNCE_DIAGNOSTIC)))
            .bind(kind)
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        Outcome::Complaint => {
            sqlx::query("UPDATE conversations SET complained_at = coalesce(complained_at, $1), updated_at = $2 WHERE id = $3")
                .bind(at)
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Outcome::Reply { auto: false, excerpt } => {
            sqlx::query("UPDATE conversations SET replied_at = coalesce(replied_at, $1), reply_excerpt = $2, updated_at = $3 WHERE id = $4")
                .bind(at)
                .bind(cut(excerpt, limits::REPLY_EXCERPT))
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        Outcome::Reply { auto: true, excerpt } => {
            // An auto-reply's text is kept only until a person answers.
            sqlx::query(
                "UPDATE conversations SET auto_replied_at = coalesce(auto_replied_at, $1),
                    reply_excerpt = CASE WHEN replied_at IS NULL THEN $2 ELSE reply_excerpt END, updated_at = $3
                 WHERE id = $4",
            )
            .bind(at)
            .bind(cut(excerpt, limits::REPLY_EXCERPT))
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Whether the `limit` newest emails sent to `address` for this contact
/// all soft-bounced (a message sent after them that did not bounce breaks
/// the run).
async fn soft_in_a_row(conn: &mut Conn, contact_id: i64, address: &str, limit: u32) -> Result<bool> {
    let kinds: Vec<Option<String>> = sqlx::query_scalar(&format!(
        "SELECT bounce_type FROM conversations
         WHERE contact_id = $1 AND channel = 'email' AND lower(address) = $2 AND sent_at IS NOT NULL
         ORDER BY id DESC LIMIT {limit}"
    ))
    .bind(contact_id)
    .bind(address)
    .fetch_all(&mut *conn)
    .await?;
    Ok(kinds.len() == limit as usize && kinds.iter().all(|k| k.as_deref() == Some("soft")))
}

/// Marks `address` undeliverable on the contact (true when it was not yet).
async fn mark_undeliverable(runtime: &Runtime, conn: &mut Conn, contact_id: i64, address: &str) -> Result<bool> {
    if Backend::of_conn(conn) == Backend::Postgres {
        sqlx::query("SELECT id FROM contacts WHERE id = $1 FOR UPDATE").bind(contact_id).execute(&mut *conn).await?;
    }
    let before = match contacts::load(conn, contact_id).await {
        Ok(contact) => contact,
        Err(crate::error::Error::ContactNotFound(_)) => return Ok(false),
        Err(err) => return Err(err),
    };
    if before.is_undeliverable(address) {
        return Ok(false);
    }
    let mut after = before.clone();
    after.mark_undeliverable(address);
    runtime.save_contact(conn, contact_id, &before, &after, &contacts::Keep::default()).await?;
    Ok(true)
}

/// Erasure: forgets what came back about these conversations (a reply's
/// text, a bounce's words, the mailbox log's notes on them), keeping when
/// and what kind. For the contact-erasure path to call with the erased
/// contact's conversations, in its transaction.
pub async fn forget(conn: &mut Conn, conversations: &[i64]) -> Result<()> {
    for chunk in conversations.chunks(500) {
        let ids = crate::db::id_list(chunk);
        sqlx::query(&format!("UPDATE conversations SET reply_excerpt = NULL, bounce_diagnostic = NULL WHERE id IN ({ids})"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("UPDATE mailbox_messages SET note = 'erased', message_id = NULL WHERE conversation_id IN ({ids})"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether feedback turned email off for the contact, and the words that
/// go with its `consent_changes` row: a hard bounce or a complaint that
/// reached the contact (`event`), or the soft bounce that made `limit` in a
/// row (`undeliverable`).
pub fn consent_lost(outcome: &Outcome, event: bool, undeliverable: bool, limit: u32) -> Option<(super::tracking::FeedbackConsent, Option<String>)> {
    use app::core::engagement::BounceType;
    use super::tracking::FeedbackConsent;
    match outcome {
        Outcome::Bounce { bounce: BounceType::Hard, status, diagnostic } if event => {
            let words = [status.as_deref(), diagnostic.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
            Some((FeedbackConsent::HardBounce, (!words.is_empty()).then_some(words)))
        }
        Outcome::Bounce { bounce: BounceType::Soft, .. } if undeliverable => {
            Some((FeedbackConsent::SoftBounces, Some(format!("{limit} soft bounces in a row"))))
        }
        Outcome::Complaint if event => Some((FeedbackConsent::Complaint, None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_bare_and_in_lower_case() {
        assert_eq!(bare_address(" Ada Lovelace <Ada@Example.TEST> "), "ada@example.test");
        assert_eq!(bare_address("bob@x.test"), "bob@x.test");
    }

    #[test]
    fn long_ids_are_hashed_within_the_event_id_limit() {
        assert_eq!(event_id("mailbox:abc@x"), "mailbox:abc@x");
        let long = format!("mailbox:{}", "y".repeat(300));
        let hashed = event_id(&long);
        assert!(hashed.starts_with("mailbox:") && hashed.len() <= limits::EVENT_ID, "{hashed}");
        assert_eq!(hashed, event_id(&long));
    }
}
