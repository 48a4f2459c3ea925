//! Conversation records as the pages and the REST API show them: each
//! message to a contact with what became of it (sent, delivered, opened,
//! clicked per link, replied, bounced, complained, unsubscribed), and the
//! server functions the participant and contact pages load them with.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// One tracked link of a message and its clicks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClicks {
    pub position: i64,
    pub url: String,
    /// By people.
    pub clicks: i64,
    /// By link scanners.
    pub machine_clicks: i64,
    pub first_clicked_at: Option<String>,
}

/// A message (email, SMS, notification) or automatic call, and its fate.
/// Times are RFC 3339; counts of opens and clicks are people's, with the
/// machines' (privacy proxies, link scanners) beside them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: i64,
    #[serde(default)]
    pub participant_id: Option<i64>,
    #[serde(default)]
    pub contact_id: Option<i64>,
    /// The flow step that sent it.
    #[serde(default)]
    pub step: Option<String>,
    pub channel: String,
    pub address: String,
    pub sender: Option<String>,
    pub subject: Option<String>,
    /// queued, sent, failed; SMS also delivered, undelivered; calls their provider's status.
    pub status: String,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// Calls: how long it lasted, and when its final status came.
    pub duration_secs: Option<i64>,
    pub ended_at: Option<String>,
    /// It went out with an open pixel or tracked links.
    #[serde(default)]
    pub tracked: bool,
    #[serde(default)]
    pub delivered_at: Option<String>,
    /// The first open by a person (or a person's click, images off).
    #[serde(default)]
    pub opened_at: Option<String>,
    #[serde(default)]
    pub opens: i64,
    #[serde(default)]
    pub machine_opens: i64,
    #[serde(default)]
    pub clicked_at: Option<String>,
    #[serde(default)]
    pub clicks: i64,
    #[serde(default)]
    pub machine_clicks: i64,
    #[serde(default)]
    pub replied_at: Option<String>,
    /// The latest reply's own words (quoted text left out).
    #[serde(default)]
    pub reply_excerpt: Option<String>,
    /// An auto-reply (out of office); never counts as a reply.
    #[serde(default)]
    pub auto_replied_at: Option<String>,
    #[serde(default)]
    pub bounced_at: Option<String>,
    /// hard or soft.
    #[serde(default)]
    pub bounce: Option<String>,
    /// The remote server's words about the bounce (`5.1.1 user unknown`).
    #[serde(default)]
    pub bounce_diagnostic: Option<String>,
    #[serde(default)]
    pub complained_at: Option<String>,
    /// The recipient unsubscribed through this message.
    #[serde(default)]
    pub unsubscribed_at: Option<String>,
    #[serde(default)]
    pub links: Vec<LinkClicks>,
}

/// The messages of a participant or a contact, and their times as they
/// read in the contact's zone (UTC when it has none), as the participant's
/// timeline shows its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    pub clock: crate::core::calendar::LocalClock,
    pub list: Vec<Conversation>,
}

impl Messages {
    /// The list, with a clock in `zone` that has read every time it holds.
    pub fn new(zone: Option<&str>, list: Vec<Conversation>) -> Messages {
        let instants: Vec<jiff::Timestamp> = list.iter().flat_map(Conversation::times).collect();
        Messages { clock: crate::core::calendar::LocalClock::new(zone, instants), list }
    }
}

#[cfg(feature = "ssr")]
pub use backend::{ConversationsBackend, ConversationsHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    #[async_trait::async_trait]
    pub trait ConversationsBackend: Send + Sync + 'static {
        /// A participant's messages; an agent sees only a participant they own.
        async fn of_participant(&self, viewer: &crate::auth::Viewer, participant: i64) -> Result<Messages, ServerFnError>;
        /// A contact's messages, newest first.
        async fn of_contact(&self, contact: i64) -> Result<Messages, ServerFnError>;
    }

    pub type ConversationsHandle = Arc<dyn ConversationsBackend>;

    pub(crate) fn conversations() -> Result<ConversationsHandle, ServerFnError> {
        use_context::<ConversationsHandle>().ok_or_else(|| ServerFnError::new("conversation records are not available"))
    }
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn participant_conversations(participant: i64) -> Result<Messages, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::conversations()?.of_participant(&viewer, participant).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn contact_conversations(contact: i64) -> Result<Messages, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::conversations()?.of_contact(contact).await
}

impl Conversation {
    /// What happened to it, in order, as (what, when): sent, delivered,
    /// opened, clicked, replied, bounced, complained, unsubscribed.
    pub fn milestones(&self) -> Vec<(&'static str, &str)> {
        let all = [
            ("sent", &self.sent_at),
            ("delivered", &self.delivered_at),
            ("opened", &self.opened_at),
            ("clicked", &self.clicked_at),
            ("replied", &self.replied_at),
            ("auto-replied", &self.auto_replied_at),
            ("bounced", &self.bounced_at),
            ("complained", &self.complained_at),
            ("unsubscribed", &self.unsubscribed_at),
        ];
        all.into_iter().filter_map(|(what, when)| when.as_deref().map(|w| (what, w))).collect()
    }

    /// Every time the list shows of it: its milestones and its links' first clicks.
    pub fn times(&self) -> impl Iterator<Item = jiff::Timestamp> + '_ {
        self.milestones()
            .into_iter()
            .map(|(_, at)| at)
            .chain(self.links.iter().filter_map(|l| l.first_clicked_at.as_deref()))
            .filter_map(|at| at.parse().ok())
    }
}
