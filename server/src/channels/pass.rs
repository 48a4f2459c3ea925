//! A dispatch pass's emails, written to the database together: before any
//! is sent, one statement opens all their conversation records and one
//! records all their tracked links; after, one statement closes the
//! records. One email's own statements, several in flight at once, were
//! what bounded sending (each a write of its own, waiting its turn).
//!
//! Nothing else changes: an email found already sent by an earlier try is
//! not sent again, an erased contact's is not sent, and an email the pass
//! could not prepare (the database failed meanwhile) goes the one-email way.

use std::collections::HashMap;

use app::core::engine::Effect;

use super::conversations::{self, Draft, Opened};
use super::email::Outgoing;
use super::settings::Integrations;
use super::{tracking, Channels, Job};
use crate::runtime::outbox::Failure;

/// What a pass prepared for one email. (`Mail` is much the largest; a pass
/// holds one of these per email of its batch, so boxing it would buy nothing.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Ready {
    /// An earlier try sent it.
    Sent,
    /// The contact was erased: it is not sent.
    Erased,
    /// Tracked and unsubscribable under its conversation record, to send.
    Mail { mail: Outgoing, tracked: bool },
}

/// One pass's prepared emails (by idempotency key) and the outcomes to record.
#[derive(Default)]
pub(super) struct Pass {
    ready: HashMap<String, Ready>,
    closings: Vec<conversations::Closing>,
}

/// The email an effect sends to a contact, before tracking.
pub(super) fn outgoing(effect: &Effect) -> Option<Outgoing> {
    let Effect::Email { to, subject, html, cc, bcc, .. } = effect else { return None };
    Some(Outgoing {
        to: vec![to.clone()],
        cc: cc.clone(),
        bcc: bcc.clone(),
        subject: subject.clone(),
        html: Some(html.clone()),
        ..Outgoing::default()
    })
}

/// Puts `plan`'s tracking and unsubscribing into `mail` (conversation
/// `id`): whether it now carries an open pixel or tracked links, and the
/// tracked links by position, for [`conversations::save_links_many`].
pub(super) fn apply(plan: &tracking::Plan<'_>, id: i64, mail: &mut Outgoing) -> (bool, Vec<String>) {
    let prepared = plan.prepare(id, &mail.subject, mail.html.as_deref(), &mail.text);
    mail.subject = prepared.subject;
    mail.html = prepared.html;
    mail.text = prepared.text;
    mail.list_unsubscribe = prepared.list_unsubscribe;
    mail.one_click = prepared.one_click;
    (prepared.tracked, prepared.links)
}

impl Channels {
    /// Opens the records of the pass's emails to contacts and tracks them.
    pub(super) async fn prepare_pass(&self, pass: u64, jobs: &[(Job, &Effect)], settings: &Integrations) {
        let Some((smtp, _)) = settings.smtp.as_ref() else { return };
        let emails: Vec<(&Job, Outgoing)> = jobs.iter().filter_map(|(job, effect)| outgoing(effect).map(|mail| (job, mail))).collect();
        if emails.is_empty() {
            return;
        }
        match self.prepare(&emails, settings, &smtp.from).await {
            Ok(ready) => self.passes.lock().expect("passes lock").entry(pass).or_default().ready.extend(ready),
            Err(failure) => tracing::warn!(reason = %failure.reason, "a dispatch pass's emails could not be prepared together; each goes on its own"),
        }
    }

    async fn prepare(&self, emails: &[(&Job, Outgoing)], settings: &Integrations, from: &str) -> Result<HashMap<String, Ready>, Failure> {
        let shown: Vec<String> = emails.iter().map(|(_, mail)| mail.subject.replace(app::core::merge::UNSUBSCRIBE_TAG, "…")).collect();
        let addresses: Vec<String> = emails.iter().map(|(_, mail)| mail.to.join(", ")).collect();
        let drafts: Vec<(&Job, Draft)> = emails
            .iter()
            .zip(&shown)
            .zip(&addresses)
            .map(|(((job, _), subject), address)| (*job, Draft { channel: "email", address, subject: Some(subject) }))
            .collect();
        let opened: HashMap<String, Opened> = conversations::open_many(&self.pool, &drafts).await?;
        let key = self.tracking_key().await?;
        let participants: Vec<i64> = emails.iter().map(|(job, _)| job.participant).collect();
        let flags = self.flow_flags_many(&participants).await?;
        let mut ready = HashMap::with_capacity(emails.len());
        let mut links: Vec<(i64, Vec<String>)> = Vec::new();
        for (job, mail) in emails {
            let Some(record) = opened.get(&job.key) else {
                ready.insert(job.key.clone(), Ready::Erased);
                continue;
            };
            if record.sent.is_some() {
                ready.insert(job.key.clone(), Ready::Sent);
                continue;
            }
            let plan = tracking::Plan {
                key: &key,
                base: self.base(&settings.tracking),
                settings: &settings.tracking,
                flags: flags.get(&job.participant).copied().unwrap_or_default(),
                from,
            };
            let mut mail = Outgoing {
                to: mail.to.clone(),
                cc: mail.cc.clone(),
                bcc: mail.bcc.clone(),
                subject: mail.subject.clone(),
                html: mail.html.clone(),
                ..Outgoing::default()
            };
            let (tracked, tracked_links) = apply(&plan, record.id, &mut mail);
            links.push((record.id, tracked_links));
            ready.insert(job.key.clone(), Ready::Mail { mail, tracked });
        }
        conversations::save_links_many(&self.pool, &links)
            .await
            .map_err(|err| Failure::transient(format!("the tracked links cannot be recorded: {err}")))?;
        Ok(ready)
    }

    /// The email the pass prepared for `job`, taken out of it.
    pub(super) fn take_ready(&self, job: &Job) -> Option<Ready> {
        if job.pass == 0 {
            return None;
        }
        self.passes.lock().expect("passes lock").get_mut(&job.pass)?.ready.remove(&job.key)
    }

    /// Keeps an email's outcome for the pass's end.
    pub(super) fn close_later(&self, job: &Job, result: &Result<(String, String), Failure>, tracked: bool) {
        let mut passes = self.passes.lock().expect("passes lock");
        passes.entry(job.pass).or_default().closings.push((job.key.clone(), result.clone(), tracked));
    }

    /// Closes the records of the pass's emails in one statement.
    pub(super) async fn finish_pass(&self, pass: u64) {
        let Some(done) = self.passes.lock().expect("passes lock").remove(&pass) else { return };
        conversations::close_many(&self.pool, &done.closings).await;
    }
}
