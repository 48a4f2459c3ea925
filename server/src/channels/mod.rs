//! Channels: the executor behind the outbox. Each effect goes out over its
//! real protocol (SMTP, a Twilio-compatible SMS API, HTTP) with the
//! integration settings an admin stored; an effect whose channel is not
//! configured fails with [`Unconfigured`]'s sentence, never pretends to send.
//!
//! Settings are read on every effect, so a change applies to the next send.
//! Nothing here panics on bad configuration: every problem becomes a
//! [`Failure`] with a reason the participant's timeline shows.

pub mod api;
pub mod conversations;
pub mod crm;
pub mod email;
pub mod ftp;
pub mod http;
pub mod s3;
pub mod script;
pub mod settings;
pub mod sms;
pub mod webhook;

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sqlx::SqlitePool;

use app::core::engine::Effect;
use app::core::kinds::AttachmentRef;

use crate::runtime::outbox::{Executor, Failure, Unconfigured};
pub use crate::runtime::outbox::Job;
use conversations::Draft;
use email::{Mailer, Outgoing, MAX_ATTACHMENT_BYTES};
use settings::{Integrations, Secret, Sms, Smtp};
use sms::Texter;

pub struct Channels {
    pool: SqlitePool,
    mailer: Mailer,
    texter: Texter,
    uploader: s3::Uploader,
    pusher: crm::Pusher,
    http: Mutex<Option<(settings::Http, Arc<http::Client>)>>,
}

impl Channels {
    pub fn new(pool: SqlitePool) -> Channels {
        Channels { pool, mailer: Mailer::default(), texter: Texter::default(), uploader: s3::Uploader::default(),
            pusher: crm::Pusher::default(),
            http: Mutex::new(None) }
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

    /// Sends one email, fetching its attachments first, under one conversation record.
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
    ) -> Result<(), Failure> {
        let to = mail.to.join(", ");
        let draft = Draft { channel, address: &to, subject: Some(&mail.subject) };
        if conversations::open(&self.pool, job, draft).await?.is_some() {
            return Ok(()); // an earlier try sent it
        }
        mail.id = message_id(&job.key, smtp);
        let result = match fetch_attachments(http, attachments).await {
            Ok(files) => {
                mail.attachments = files;
                self.mailer.send(smtp, secret, mail).await.map(|id| (smtp.from.clone(), id))
            }
            Err(failure) => Err(failure),
        };
        conversations::close(&self.pool, job, &result).await;
        result.map(|_| ())
    }

    async fn text(&self, job: &Job, sms: &Sms, token: &Option<Secret>, to: &str, text: &str, channel: &str) -> Result<(), Failure> {
        if conversations::open(&self.pool, job, Draft { channel, address: to, subject: None }).await?.is_some() {
            return Ok(());
        }
        let result = self.texter.send(sms, token, to, text).await.map(|sent| (sent.from, sent.sid));
        conversations::close(&self.pool, job, &result).await;
        result.map(|_| ())
    }
}

/// A Message-ID from the idempotency key: the same for every try.
fn message_id(key: &str, smtp: &Smtp) -> String {
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

/// A notification's address: an email address or number as written. There
/// is no user directory yet to look a user id up in.
fn direct_address(to: &str, what: &str) -> Result<String, Failure> {
    let to = to.trim();
    let looks_right = if what == "email" { to.contains('@') } else { sms::is_e164(to) };
    if looks_right {
        Ok(to.to_owned())
    } else {
        Err(Failure::permanent(format!("“{to}” is not an {what} address, and users cannot be looked up yet")))
    }
}

#[async_trait::async_trait]
impl Executor for Channels {
    async fn execute(&self, job: &Job, effect: &Effect) -> Result<Map<String, Value>, Failure> {
        let settings = Integrations::load(&self.pool)
            .await
            .map_err(|err| Failure::transient(format!("the integration settings cannot be read: {}", err.public_message())))?;
        let http = self.http(&settings.http);
        match (effect, &settings.smtp, &settings.sms) {
            (Effect::Email { to, subject, html, cc, bcc, attachments }, Some((smtp, secret)), _) => {
                let mail = Outgoing {
                    to: vec![to.clone()],
                    cc: cc.clone(),
                    bcc: bcc.clone(),
                    subject: subject.clone(),
                    html: Some(html.clone()),
                    ..Outgoing::default()
                };
                self.email(job, smtp, secret, &http, mail, attachments, "email").await?;
            }
            (Effect::NotifyEmail { to, subject, text }, Some((smtp, secret)), _) => {
                let to = direct_address(to, "email")?;
                let mail = Outgoing { to: vec![to], subject: subject.clone(), text: text.clone(), ..Outgoing::default() };
                self.email(job, smtp, secret, &http, mail, &[], "notify_email").await?;
            }
            (Effect::Sms { to, text }, _, Some((sms, token))) => self.text(job, sms, token, to, text, "sms").await?,
            (Effect::NotifySms { to, text }, _, Some((sms, token))) => {
                let to = direct_address(to, "SMS")?;
                self.text(job, sms, token, &to, text, "notify_sms").await?
            }
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
}

async fn contact_of(pool: &SqlitePool, participant: i64) -> Result<Value, Failure> {
    let mut conn = pool.acquire().await.map_err(|err| Failure::transient(err.to_string()))?;
    let id: i64 = sqlx::query_scalar("SELECT contact_id FROM participants WHERE id = ?")
        .bind(participant)
        .fetch_one(&mut *conn)
        .await
        .map_err(|err| Failure::transient(err.to_string()))?;
    let contact = crate::runtime::contacts::load(&mut conn, id).await.map_err(|err| Failure::permanent(err.public_message()))?;
    Ok(serde_json::to_value(contact).unwrap_or(Value::Null))
}
