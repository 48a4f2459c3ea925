//! Channels: the executor behind the outbox. Each effect goes out over its
//! real protocol (SMTP, a Twilio-compatible SMS API, HTTP) with the
//! integration settings an admin stored; an effect whose channel is not
//! configured fails with [`Unconfigured`]'s sentence, never pretends to send.
//!
//! Settings are read once per dispatch pass (every effect of a pass sees
//! the same), so a change applies from the next pass on.
//! Nothing here panics on bad configuration: every problem becomes a
//! [`Failure`] with a reason the participant's timeline shows.

pub mod api;
pub mod calls;
pub mod conversations;
pub mod crm;
pub mod dkim;
pub mod email;
pub mod feedback;
pub mod ftp;
pub mod http;
pub mod mailbox;
mod pass;
pub mod provider_hooks;
pub mod s3;
pub mod sealed;
pub mod script;
pub mod settings;
pub mod sms;
pub mod tracking;
pub mod webhook;

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use app::core::engine::Effect;
use app::core::kinds::AttachmentRef;

use crate::runtime::outbox::{Executor, Failure, Unconfigured};
pub use crate::runtime::outbox::Job;
use conversations::Draft;
use email::{Mailer, Outgoing, MAX_ATTACHMENT_BYTES};
use settings::{Integrations, Secret, Sms, Smtp};
use sms::Texter;
use crate::db::Pool;

pub struct Channels {
    pool: Pool,
    mailer: Mailer,
    texter: Texter,
    uploader: s3::Uploader,
    pusher: crm::Pusher,
    http: Mutex<Option<(settings::Http, Arc<http::Client>)>>,
    /// Where people reach this server: tracked links, pixels and unsubscribe
    /// pages start with it (unless the tracking settings name another).
    /// Without one, nothing is tracked and List-Unsubscribe is mailto only.
    public_url: Option<String>,
    /// Flows' tracking and transactional flags, by (flow, version): published
    /// versions never change.
    flags: Mutex<std::collections::HashMap<(i64, i64), tracking::FlowFlags>>,
    /// The settings as the latest dispatch pass read them.
    settings: tokio::sync::Mutex<Option<(u64, Arc<Integrations>)>>,
    /// Dispatch passes under way: their prepared emails and outcomes.
    passes: Mutex<std::collections::HashMap<u64, pass::Pass>>,
}

impl Channels {
    pub fn new(pool: Pool) -> Channels {
        Channels { pool, mailer: Mailer::default(), texter: Texter::default(), uploader: s3::Uploader::default(),
            pusher: crm::Pusher::default(),
            http: Mutex::new(None),
            public_url: None,
            flags: Mutex::default(),
            settings: tokio::sync::Mutex::default(),
            passes: Mutex::default() }
    }

    /// The app's public base URL (`https://waymark.example.com`), for the
    /// links put into messages.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Channels {
        let url = url.into().trim_end_matches('/').to_owned();
        self.public_url = Some(url).filter(|u| !u.is_empty());
        self
    }

    /// The integration settings for a job: read once per dispatch pass
    /// (on every call outside one).
    async fn settings(&self, job: &Job) -> Result<Arc<Integrations>, Failure> {
        let load = || async {
            Integrations::load(&self.pool)
                .await
                .map(Arc::new)
                .map_err(|err| Failure::transient(format!("the integration settings cannot be read: {}", err.public_message())))
        };
        if job.pass == 0 {
            return load().await;
        }
        let mut cached = self.settings.lock().await;
        match cached.as_ref() {
            Some((pass, settings)) if *pass == job.pass => Ok(settings.clone()),
            _ => {
                let settings = load().await?;
                *cached = Some((job.pass, settings.clone()));
                Ok(settings)
            }
        }
    }

    /// The base tracked links and unsubscribe pages use.
    fn base<'a>(&'a self, tracking: &'a settings::Tracking) -> Option<&'a str> {
        tracking.base_url.as_deref().map(|b| b.trim_end_matches('/')).or(self.public_url.as_deref())
    }

    /// The flags of the flow version a participant is on.
    async fn flow_flags(&self, participant: i64) -> Result<tracking::FlowFlags, Failure> {
        let unreadable = |err: crate::error::Error| Failure::transient(format!("the flow's settings cannot be read: {}", err.public_message()));
        let at: Option<(i64, i64)> = sqlx::query_as("SELECT flow_id, version FROM participants WHERE id = $1")
            .bind(participant)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| unreadable(err.into()))?;
        let Some(at) = at else { return Ok(tracking::FlowFlags::default()) };
        if let Some(flags) = self.flags.lock().expect("flags lock").get(&at) {
            return Ok(*flags);
        }
        let (_, _, flags) = tracking::flow_flags(&self.pool, participant).await.map_err(unreadable)?;
        self.flags.lock().expect("flags lock").insert(at, flags);
        Ok(flags)
    }

    /// The flags of the flow versions participants are on, by participant.
    async fn flow_flags_many(&self, participants: &[i64]) -> Result<std::collections::HashMap<i64, tracking::FlowFlags>, Failure> {
        let rows: Vec<(i64, i64, i64)> =
            sqlx::query_as(&format!("SELECT id, flow_id, version FROM participants WHERE id IN ({})", crate::db::id_list(participants)))
                .fetch_all(&self.pool)
                .await
                .map_err(|err| Failure::transient(format!("the flows' settings cannot be read: {err}")))?;
        let mut flags = std::collections::HashMap::with_capacity(rows.len());
        for (participant, flow, version) in rows {
            let known = self.flags.lock().expect("flags lock").get(&(flow, version)).copied();
            flags.insert(participant, match known {
                Some(known) => known,
                None => self.flow_flags(participant).await?,
            });
        }
        Ok(flags)
    }

    /// The key tracked links, pixels and unsubscribe links are signed with.
    async fn tracking_key(&self) -> Result<[u8; tracking::token::KEY_LEN], Failure> {
        tracking::key(&self.pool)
            .await
            .map_err(|err| Failure::transient(format!("the tracking key cannot be read: {}", err.public_message())))
    }

    /// Tracking and unsubscribing for an email to a contact, on conversation
    /// `id`: whether the message now carries an open pixel or tracked links.
    async fn track(&self, job: &Job, id: i64, tracking: &settings::Tracking, from: &str, mail: &mut Outgoing) -> Result<bool, Failure> {
        let key = self.tracking_key().await?;
        let flags = self.flow_flags(job.participant).await?;
        let plan = tracking::Plan { key: &key, base: self.base(tracking), settings: tracking, flags, from };
        let (tracked, links) = pass::apply(&plan, id, mail);
        conversations::save_links_many(&self.pool, &[(id, links)])
            .await
            .map_err(|err| Failure::transient(format!("the tracked links cannot be recorded: {err}")))?;
        Ok(tracked)
    }

    /// The guarded client for the current HTTP settings (rebuilt when they change).
    fn http(&self, settings: &settings::Http) -> Arc<http::Client> {
        let mut cached = self.http.lock().expect("http client lock");
        match cached.as_ref() {
            Some((s, client)) if s == settings => client.clone(),
            _ => {
                let client = Arc::new(http::Client::new(settings));
                *cached = Some((settings.clone(), client.clone()));
                client
            }
        }
    }

    /// Sends one email, fetching its attachments first, under one conversation
    /// record: to a contact (`channel` email) tracked and unsubscribable as
    /// its flow and the installation say; DKIM-signed when a key is set.
    #[allow(clippy::too_many_arguments)]
    async fn email(
        &self,
        job: &Job,
        smtp: &Smtp,
        secret: &Option<Secret>,
        http: &http::Client,
        mut mail: Outgoing,
        attachments: &[AttachmentRef],
        channel: &str,
        integrations: &Integrations,
    ) -> Result<(), Failure> {
        // Prepared with the rest of its dispatch pass, or on its own.
        let (mut mail, tracked, in_pass) = match self.take_ready(job).filter(|_| channel == "email") {
            Some(pass::Ready::Sent) => return Ok(()), // an earlier try sent it
            Some(pass::Ready::Erased) => return Err(Failure::permanent(crate::runtime::contacts::NOT_SENT)),
            Some(pass::Ready::Mail { mail: prepared, tracked }) => (prepared, tracked, true),
            None => {
                let to = mail.to.join(", ");
                let shown = mail.subject.replace(app::core::merge::UNSUBSCRIBE_TAG, "…");
                let draft = Draft { channel, address: &to, subject: Some(&shown) };
                let opened = conversations::open(&self.pool, job, draft).await?;
                if opened.sent.is_some() {
                    return Ok(()); // an earlier try sent it
                }
                let mut tracked = false;
                if channel == "email" {
                    match self.track(job, opened.id, &integrations.tracking, &smtp.from, &mut mail).await {
                        Ok(yes) => tracked = yes,
                        Err(failure) => {
                            conversations::close(&self.pool, job, &Err(failure.clone()), false).await;
                            return Err(failure);
                        }
                    }
                }
                (mail, tracked, false)
            }
        };
        mail.dkim = integrations.dkim.as_ref().and_then(|(dkim, key)| key.clone().map(|key| (dkim.clone(), key)));
        mail.id = message_id(&job.key, smtp);
        let result = match fetch_attachments(http, attachments).await {
            Ok(files) => {
                mail.attachments = files;
                self.mailer.send(smtp, secret, mail).await.map(|id| (smtp.from.clone(), id))
            }
            Err(failure) => Err(failure),
        };
        if in_pass {
            self.close_later(job, &result, tracked);
        } else {
            conversations::close(&self.pool, job, &result, tracked).await;
        }
        result.map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    async fn text(&self, job: &Job, sms: &Sms, token: &Option<Secret>, to: &str, text: &str, channel: &str, tracking: &settings::Tracking) -> Result<(), Failure> {
        let opened = conversations::open(&self.pool, job, Draft { channel, address: to, subject: None }).await?;
        if opened.sent.is_some() {
            return Ok(());
        }
        let mut text = text.to_owned();
        if text.contains(app::core::merge::UNSUBSCRIBE_TAG) {
            let id = opened.id;
            let key = self.tracking_key().await?;
            let plan = tracking::Plan { key: &key, base: self.base(tracking), settings: tracking, flags: Default::default(), from: "" };
            text = text.replace(app::core::merge::UNSUBSCRIBE_TAG, &plan.unsubscribe_url(id).unwrap_or_default());
        }
        let result = self.texter.send(sms, token, to, &text).await.map(|sent| (sent.from, sent.sid));
        conversations::close(&self.pool, job, &result, false).await;
        result.map(|_| ())
    }

    /// Places an automatic call under one conversation record. Its outcome
    /// comes later, at the status callback.
    async fn call(&self, job: &Job, sms: &Sms, token: &Option<Secret>, to: &str, script: &str) -> Result<(), Failure> {
        let Some(voice) = sms.voice.as_ref() else {
            return Err(Failure::permanent(
                "automatic calls are not set up: add `voice` with its `status_callback` to the SMS provider settings",
            ));
        };
        still_waiting(&self.pool, job).await?;
        if conversations::open(&self.pool, job, Draft { channel: "call", address: to, subject: None }).await?.sent.is_some() {
            return Ok(()); // an earlier try placed it
        }
        let result = self.texter.call(sms, token, voice, to, script).await;
        let status = result.as_ref().map(|sent| sent.status.clone()).unwrap_or_default();
        let result = result.map(|sent| (sent.from, sent.sid));
        conversations::close_call(&self.pool, job, &result, &status).await;
        result.map(|_| ())
    }
}

/// Refuses to place a call for a participant that no longer waits on it
/// (paused, cancelled, or past its deadline while the outbox retried).
async fn still_waiting(pool: &Pool, job: &Job) -> Result<(), Failure> {
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT p.status, p.state, o.visit FROM outbox o JOIN participants p ON p.id = o.participant_id WHERE o.idempotency_key = $1",
    )
    .bind(&job.key)
    .fetch_optional(pool)
    .await
    .map_err(|err| Failure::transient(format!("the participant cannot be read: {err}")))?;
    let waiting = row.is_some_and(|(status, state, visit)| {
        let state = serde_json::from_str::<app::core::engine::Participant>(&state).ok();
        status == "waiting"
            && state.is_some_and(|p| i64::from(p.visit) == visit && matches!(p.phase, app::core::engine::Phase::Effect { .. }))
    });
    if waiting {
        Ok(())
    } else {
        Err(Failure::permanent("the participant no longer waits for this call, so it was not placed"))
    }
}

/// A Message-ID from the idempotency key: the same for every try.
pub(crate) fn message_id(key: &str, smtp: &Smtp) -> String {
    let domain = smtp.from.rsplit('@').next().unwrap_or("waymark").trim_end_matches('>').trim();
    let local: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '.' }).collect();
    format!("{local}@{domain}")
}

/// Fetches the files an email carries, refusing more than 25 MB in all.
async fn fetch_attachments(http: &http::Client, refs: &[AttachmentRef]) -> Result<Vec<email::File>, Failure> {
    let mut files = Vec::with_capacity(refs.len());
    let mut total = 0;
    for attachment in refs {
        let request = http::Request { method: reqwest::Method::GET, url: attachment.url.clone(), headers: Vec::new(), body: None };
        let room = MAX_ATTACHMENT_BYTES - total;
        let reply = http.send(request, room + 1).await.map_err(|err| {
            let reason = format!("attachment “{}” could not be fetched: {}", attachment.name, err.reason());
            match err {
                http::CallError::Network(_) => Failure::transient(reason),
                _ => Failure::permanent(reason),
            }
        })?;
        if !reply.status.is_success() {
            let reason = format!("attachment “{}” could not be fetched: HTTP {}", attachment.name, reply.status);
            return Err(if reply.status.is_server_error() { Failure::transient(reason) } else { Failure::permanent(reason) });
        }
        if reply.body.len() > room {
            return Err(Failure::permanent(format!(
                "the attachments weigh more than the {} MB an email may carry (at “{}”)",
                MAX_ATTACHMENT_BYTES / 1_048_576,
                attachment.name
            )));
        }
        total += reply.body.len();
        let content_type = reply
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        files.push(email::File { name: attachment.name.clone(), content_type, bytes: reply.body });
    }
    Ok(files)
}

/// A notification's address: `user:ID` (a Waymark user, by id or email)
/// looked up in the users table, or an email address or number as written.
/// Users have no mobile number on record, so SMS needs a number.
async fn notify_address(pool: &Pool, to: &str, what: &str) -> Result<String, Failure> {
    let to = to.trim();
    if to == "record_owner" {
        return Err(Failure::permanent("the contact has no record owner to notify"));
    }
    if let Some(who) = to.strip_prefix("user:").map(str::trim) {
        let user = user_email(pool, who).await?;
        let Some((email, disabled)) = user else {
            return Err(Failure::permanent(format!("there is no Waymark user “{who}” to notify")));
        };
        if disabled {
            return Err(Failure::permanent(format!("the user {email} is disabled, so is not notified")));
        }
        if what != "email" {
            return Err(Failure::permanent(format!(
                "Waymark users have no mobile number on record, so {email} cannot be notified by SMS; write a number (+15551234567) in “to”"
            )));
        }
        return Ok(email);
    }
    let looks_right = if what == "email" { to.contains('@') } else { sms::is_e164(to) };
    if looks_right {
        Ok(to.to_owned())
    } else {
        let form = if what == "email" { "an email address" } else { "a mobile number in E.164 form (+15551234567)" };
        Err(Failure::permanent(format!("“{to}” is neither {form} nor a user (user:ID)")))
    }
}

/// A user's email and whether they are disabled, by id or by email.
async fn user_email(pool: &Pool, who: &str) -> Result<Option<(String, bool)>, Failure> {
    let query = match who.parse::<i64>() {
        Ok(id) => sqlx::query_as::<_, (String, i64)>("SELECT email, disabled FROM users WHERE id = $1").bind(id),
        Err(_) => sqlx::query_as::<_, (String, i64)>("SELECT email, disabled FROM users WHERE lower(email) = lower($1)").bind(who),
    };
    let found = query.fetch_optional(pool).await.map_err(|err| Failure::transient(format!("the users cannot be read: {err}")))?;
    Ok(found.map(|(email, disabled)| (email, disabled != 0)))
}

#[async_trait::async_trait]
impl Executor for Channels {
    async fn execute(&self, job: &Job, effect: &Effect) -> Result<Map<String, Value>, Failure> {
        let settings = self.settings(job).await?;
        let http = self.http(&settings.http);
        match (effect, &settings.smtp, &settings.sms) {
            (Effect::Email { attachments, .. }, Some((smtp, secret)), _) => {
                let mail = pass::outgoing(effect).expect("an email");
                self.email(job, smtp, secret, &http, mail, attachments, "email", &settings).await?;
            }
            (Effect::NotifyEmail { to, subject, text }, Some((smtp, secret)), _) => {
                let to = notify_address(&self.pool, to, "email").await?;
                let mail = Outgoing { to: vec![to], subject: subject.clone(), text: text.clone(), ..Outgoing::default() };
                self.email(job, smtp, secret, &http, mail, &[], "notify_email", &settings).await?;
            }
            (Effect::Sms { to, text }, _, Some((sms, token))) => self.text(job, sms, token, to, text, "sms", &settings.tracking).await?,
            (Effect::NotifySms { to, text }, _, Some((sms, token))) => {
                let to = notify_address(&self.pool, to, "SMS").await?;
                self.text(job, sms, token, &to, text, "notify_sms", &settings.tracking).await?
            }
            (Effect::Call { to, script }, _, Some((sms, token))) => self.call(job, sms, token, to, script).await?,
            (Effect::Webhook { method, url, format, headers, body }, _, _) => {
                let hook = webhook::Webhook { method, url, format, headers, body };
                webhook::call(&self.pool, &http, job, hook).await?;
            }
            (Effect::DataAppend { url, mapping }, _, _) => return webhook::append(&self.pool, &http, job, url, mapping).await,
            (Effect::S3Upload { bucket, key, format }, _, _) if settings.s3.is_some() => {
                let (s3, secret) = settings.s3.as_ref().expect("checked above");
                let contact = contact_of(&self.pool, job.participant).await?;
                let (body, content_type) = s3::contact_file(&contact, format)?;
                self.uploader.put(s3, secret, bucket, key, body, content_type).await?;
            }
            (Effect::FtpUpload { path, format }, _, _) if settings.ftp.is_some() => {
                let (ftp, password) = settings.ftp.clone().expect("checked above");
                let contact = contact_of(&self.pool, job.participant).await?;
                let (body, _) = s3::contact_file(&contact, format)?;
                ftp::upload(ftp, password, path.clone(), body).await?;
            }
            (Effect::CrmPush { provider, operation }, _, _) if settings.crm.is_some() => {
                let (crm, token) = settings.crm.as_ref().expect("checked above");
                let wanted = serde_json::from_value::<settings::CrmProvider>(Value::String(provider.clone()));
                if wanted.ok() != Some(crm.provider) {
                    return Err(Failure::permanent(format!("the step pushes to “{provider}”, but the CRM connection is {:?}", crm.provider)));
                }
                let contact = contact_of(&self.pool, job.participant).await?;
                self.pusher.push(crm, token, operation, &contact).await?;
            }
            (Effect::RunScript { script }, _, _) => {
                let contact = contact_of(&self.pool, job.participant).await?;
                script::run(script.clone(), contact).await?;
            }
            _ => return Unconfigured.execute(job, effect).await,
        }
        Ok(Map::new())
    }

    async fn begin_pass(&self, pass: u64, jobs: &[(Job, &Effect)]) {
        let Some((first, _)) = jobs.first() else { return };
        match self.settings(first).await {
            Ok(settings) => self.prepare_pass(pass, jobs, &settings).await,
            Err(failure) => tracing::warn!(reason = %failure.reason, "a dispatch pass could not read the settings"),
        }
    }

    async fn end_pass(&self, pass: u64) {
        self.finish_pass(pass).await
    }
}

async fn contact_of(pool: &Pool, participant: i64) -> Result<Value, Failure> {
    let mut conn = pool.acquire().await.map_err(|err| Failure::transient(err.to_string()))?;
    let id: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = $1")
        .bind(participant)
        .fetch_one(&mut *conn)
        .await
        .map_err(|err| Failure::transient(err.to_string()))?;
    let contact = crate::runtime::contacts::load(&mut conn, id).await.map_err(|err| Failure::permanent(err.public_message()))?;
    Ok(serde_json::to_value(contact).unwrap_or(Value::Null))
}
