//! What the agent's workspace (DESIGN §11) asks the server for: the
//! agent's queue of due tasks in working order, one task with what it takes
//! to work it (the email prefilled from its step, the contact's number, the
//! step's dispositions, the contact's thread), and the sends themselves:
//! the edited email and the SMS go through the outbox like automatic ones,
//! a call rings the agent's own phone and then bridges the contact.
//!
//! Every function checks the viewer itself; an agent reaches only the
//! tasks that are theirs (the step's owner, a reservation, or the flow's
//! default owner), anything else is "not found".

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The most an agent's email body may weigh (HTML, after editing).
pub const MAX_BODY: usize = 100 * 1024;
/// The longest subject (RFC 5322's line limit).
pub const MAX_SUBJECT: usize = 998;
/// The most recipients in Cc and in Bcc, each.
pub const MAX_COPIES: usize = 20;
/// The longest SMS an agent may send (ten segments of GSM-7).
pub const MAX_SMS: usize = 1_530;

/// A due task in the agent's queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub participant_id: i64,
    pub contact_id: i64,
    pub contact: String,
    pub flow_id: i64,
    pub flow_name: String,
    pub step: String,
    /// call, schedule_callback, send_email, task.
    pub kind: String,
    pub subject: Option<String>,
    pub due_at: String,
    pub owner: Option<String>,
    /// Where it stands in the day: `call` (the contact's business hours are
    /// open now), `email`, `task`, `later` (a call outside the contact's hours).
    pub group: String,
    /// Why it is where it is (`open in America/New_York`, `closed until …`).
    pub why: String,
}

/// The email a manual step sends, as the agent will edit it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailDraft {
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    /// HTML, merge tags filled (values escaped).
    pub body: String,
    /// The step's attachments, by name: they go with it.
    pub attachments: Vec<String>,
}

/// Whether a channel may reach the contact, and what the contact-pressure
/// policy would say of an automatic send now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// The address or number it would go to.
    pub address: Option<String>,
    /// Why nothing can be sent (no address, opted out, blocked, bounced).
    pub blocked: Option<String>,
    /// The rule that would have held an automatic send now; a manual send
    /// goes anyway, and is counted.
    pub pressure: Option<String>,
}

/// One task with what the agent needs to work it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub task: QueueEntry,
    /// For a manual email step: its email, prefilled.
    pub email: Option<EmailDraft>,
    pub email_reach: Reach,
    pub sms_reach: Reach,
    pub call_reach: Reach,
    /// The agent's own phone, which click-to-call rings first.
    pub agent_phone: Option<String>,
    /// A telephony provider is configured for click-to-call (else a `tel:` link).
    pub provider: bool,
    /// The step's configured dispositions (some run an action group).
    pub dispositions: Vec<String>,
    /// A call step's script, merge tags filled.
    pub script: Option<String>,
    pub contact: crate::contacts_api::ContactDetail,
    pub thread: Vec<ThreadItem>,
    /// Tasks due in the agent's queue, this one included.
    pub left: usize,
}

/// One email, SMS or call with a contact, out or in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadItem {
    pub id: i64,
    /// When it was made (RFC 3339).
    pub at: String,
    /// email, sms, call (and notify_* for notifications).
    pub channel: String,
    /// out or in.
    pub direction: String,
    pub address: String,
    pub subject: Option<String>,
    /// An SMS's text.
    pub body: Option<String>,
    pub status: String,
    /// The agent who sent it from the workspace; none when a flow did.
    pub agent: Option<String>,
    pub error: Option<String>,
    pub opened_at: Option<String>,
    pub clicked_at: Option<String>,
    pub replied_at: Option<String>,
    pub reply_excerpt: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_secs: Option<i64>,
    pub notes: Option<String>,
    /// A click-to-call's leg to the contact.
    pub contact_leg: Option<CallLeg>,
}

/// The leg of a click-to-call that rings the contact, as its status reports leave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLeg {
    pub status: String,
    pub started_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_secs: Option<i64>,
}

/// A click-to-call call as its status reports leave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallView {
    pub id: i64,
    pub status: String,
    pub started_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_secs: Option<i64>,
    pub error: Option<String>,
    /// The contact's leg, once the agent's call has dialled it.
    pub contact_leg: Option<CallLeg>,
}

impl CallView {
    /// The provider's last word on it has come (completed, busy, no-answer, failed, canceled).
    pub fn over(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "busy" | "no-answer" | "failed" | "canceled")
    }
}

/// A saved subject and body (email) or text (SMS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// 0 for a new one.
    pub id: i64,
    pub name: String,
    /// email or sms.
    pub channel: String,
    pub subject: Option<String>,
    pub body: String,
}

/// The email as the agent sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailSend {
    pub participant: i64,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    pub body: String,
    /// The step completes with it (and its action group, if it has one).
    pub disposition: Option<String>,
}

/// `a@x, b@y; c@z` as its addresses.
pub fn addresses(list: &str) -> Vec<String> {
    list.split([',', ';']).map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// An agent's or a template's HTML made safe to send and to preview, by
/// one sanitiser (ammonia, on the server): scripts, styles, frames, forms
/// and embedded objects go with what is inside them, event handlers and
/// `style` attributes go, and a link or image keeps its address only when
/// it is http(s), mailto, tel or relative. Text and ordinary formatting
/// (paragraphs, emphasis, links, lists, tables, images) stay.
#[cfg(feature = "ssr")]
pub fn sanitize_html(html: &str) -> String {
    use std::sync::OnceLock;
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER
        .get_or_init(|| {
            let mut builder = ammonia::Builder::default();
            builder.url_schemes(["http", "https", "mailto", "tel"].into()).link_rel(Some("noopener noreferrer"));
            builder
        })
        .clean(html)
        .to_string()
}

#[cfg(feature = "ssr")]
pub use backend::{WorkspaceBackend, WorkspaceHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;
    use crate::auth::Viewer;

    /// Implemented by the server. Each method is given the viewer and
    /// narrows to what is theirs when they are an agent.
    #[async_trait::async_trait]
    pub trait WorkspaceBackend: Send + Sync + 'static {
        /// The viewer's own due tasks, in working order.
        async fn queue(&self, viewer: &Viewer) -> Result<Vec<QueueEntry>, ServerFnError>;
        async fn task(&self, viewer: &Viewer, participant: i64) -> Result<Workspace, ServerFnError>;
        /// Queues the edited email and completes the step; a sentence saying so.
        async fn send_email(&self, viewer: &Viewer, email: EmailSend) -> Result<String, ServerFnError>;
        async fn send_sms(&self, viewer: &Viewer, participant: i64, to: String, text: String) -> Result<String, ServerFnError>;
        /// Rings the viewer's phone, then bridges the contact.
        async fn place_call(&self, viewer: &Viewer, participant: i64) -> Result<CallView, ServerFnError>;
        async fn call(&self, viewer: &Viewer, id: i64) -> Result<CallView, ServerFnError>;
        /// Completes, skips or defers the task; notes go on its latest call.
        async fn finish(
            &self,
            viewer: &Viewer,
            participant: i64,
            outcome: String,
            disposition: Option<String>,
            notes: Option<String>,
            until: Option<String>,
        ) -> Result<(), ServerFnError>;
        async fn thread(&self, viewer: &Viewer, contact: i64) -> Result<Vec<ThreadItem>, ServerFnError>;
        async fn templates(&self, channel: Option<String>) -> Result<Vec<Template>, ServerFnError>;
        async fn save_template(&self, viewer: &Viewer, template: Template) -> Result<Template, ServerFnError>;
        async fn delete_template(&self, viewer: &Viewer, id: i64) -> Result<(), ServerFnError>;
        async fn phone(&self, viewer: &Viewer) -> Result<Option<String>, ServerFnError>;
        async fn save_phone(&self, viewer: &Viewer, phone: String) -> Result<Option<String>, ServerFnError>;
        /// Flows (id, name, default task owner).
        async fn flow_owners(&self) -> Result<Vec<(i64, String, Option<String>)>, ServerFnError>;
        async fn set_flow_owner(&self, viewer: &Viewer, flow: i64, owner: Option<String>) -> Result<(), ServerFnError>;
    }

    pub type WorkspaceHandle = Arc<dyn WorkspaceBackend>;

    pub(crate) fn workspace() -> Result<WorkspaceHandle, ServerFnError> {
        use_context::<WorkspaceHandle>().ok_or_else(|| ServerFnError::new("the workspace is not available"))
    }
}

/// The viewer's due tasks: calls (within the contact's business hours)
/// first, then emails, then other tasks, then calls outside hours.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn my_queue() -> Result<Vec<QueueEntry>, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.queue(&viewer).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn workspace_task(participant: i64) -> Result<Workspace, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.task(&viewer, participant).await
}

/// Sends the edited email through the outbox and completes the step.
#[server(prefix = "/fn", client = crate::auth::client::Client, input = leptos::server_fn::codec::Json)]
pub async fn send_task_email(email: EmailSend) -> Result<String, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.send_email(&viewer, email).await
}

/// The email's body as it would be sent: sanitised by the server's one
/// sanitiser (the page shows it in a sandboxed frame).
#[server(prefix = "/fn", client = crate::auth::client::Client, input = leptos::server_fn::codec::Json)]
pub async fn preview_email(body: String) -> Result<String, ServerFnError> {
    crate::auth::require(crate::auth::Access::SignedIn)?;
    if body.len() > MAX_BODY {
        return Err(ServerFnError::new(format!("The body is over {} KB.", MAX_BODY / 1024)));
    }
    Ok(sanitize_html(&body))
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn send_task_sms(participant: i64, to: String, text: String) -> Result<String, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.send_sms(&viewer, participant, to, text).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn place_task_call(participant: i64) -> Result<CallView, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.place_call(&viewer, participant).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn task_call(id: i64) -> Result<CallView, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.call(&viewer, id).await
}

/// completed (with a disposition and notes), skipped, or deferred to `until` (RFC 3339).
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn finish_task(
    participant: i64,
    outcome: String,
    disposition: Option<String>,
    notes: Option<String>,
    until: Option<String>,
) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    let some = |text: Option<String>| text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    backend::workspace()?.finish(&viewer, participant, outcome, some(disposition), some(notes), some(until)).await
}

/// Every email, SMS and call with a contact, newest first.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn contact_thread(contact: i64) -> Result<Vec<ThreadItem>, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.thread(&viewer, contact).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_templates(channel: Option<String>) -> Result<Vec<Template>, ServerFnError> {
    crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.templates(channel.filter(|c| !c.is_empty())).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client, input = leptos::server_fn::codec::Json)]
pub async fn save_template(template: Template) -> Result<Template, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    backend::workspace()?.save_template(&viewer, template).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn delete_template(id: i64) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    backend::workspace()?.delete_template(&viewer, id).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn my_phone() -> Result<Option<String>, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.phone(&viewer).await
}

/// The viewer's own phone (E.164), or none when empty.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_my_phone(phone: String) -> Result<Option<String>, ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::SignedIn)?;
    backend::workspace()?.save_phone(&viewer, phone).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn flow_task_owners() -> Result<Vec<(i64, String, Option<String>)>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::workspace()?.flow_owners().await
}

/// A flow's default owner for manual steps whose owner rule names nobody.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn set_flow_task_owner(flow: i64, owner: Option<String>) -> Result<(), ServerFnError> {
    let viewer = crate::auth::require(crate::auth::Access::Marketer)?;
    backend::workspace()?.set_flow_owner(&viewer, flow, owner.map(|o| o.trim().to_owned()).filter(|o| !o.is_empty())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ssr")]
    #[test]
    fn sanitizing_keeps_formatting_and_drops_what_runs() {
        // What the editor makes stays as written.
        let kept = "<p>Hi <b>Ada</b> &amp; <i>Bo</i>, <strong>read</strong> <em>this</em>:</p><ul><li>one</li></ul><ol><li>two</li></ol><br>";
        assert_eq!(sanitize_html(kept), kept);
        assert_eq!(
            sanitize_html("<a href=\"https://x.test/a?b=1&amp;c=2\">guide</a> <a href=\"mailto:a@b.test\">m</a> <a href=\"/rel\">r</a>"),
            "<a href=\"https://x.test/a?b=1&amp;c=2\" rel=\"noopener noreferrer\">guide</a> <a href=\"mailto:a@b.test\" rel=\"noopener noreferrer\">m</a> \
             <a href=\"/rel\" rel=\"noopener noreferrer\">r</a>"
        );
        for (attack, expected) in [
            ("a<script>alert('<p>')</script>b<style>p{}</style>c", "abc"),
            ("<SCRIPT SRC=//x.test/x.js></SCRIPT>ok", "ok"),
            ("<img src=x onerror=alert(1)>", "<img src=\"x\">"),
            ("<p onclick=\"x()\" onmouseover='y()'>Hi</p>", "<p>Hi</p>"),
            ("<a href=\"javascript:alert(1)\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<a href=\" JavaScript:alert(1)\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<a href=\"java&#x09;script:alert(1)\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<a href=\"&#106;avascript&colon;alert(1)\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<a href=\"data:text/html,<script>alert(1)</script>\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<img src=\"vbscript:msgbox(1)\">", "<img>"),
            ("<p style=\"width: expression(alert(1)); background: url(javascript:alert(2))\">s</p>", "<p>s</p>"),
            ("<div style=\"behavior: url(x.htc)\">b</div>", "<div>b</div>"),
            ("<iframe src=\"https://x\"></iframe><!-- <script> -->ok", "ok"),
            ("<svg><script>alert(1)</script></svg><math><mi>x</mi></math>ok", "ok"),
            ("<form action=\"https://x\"><input name=a><button formaction=javascript:alert(1)>b</button></form>ok", "bok"),
            ("<object data=x></object><embed src=x><meta http-equiv=refresh content=0;url=javascript:alert(1)>ok", "ok"),
            // Nested and broken markup cannot reassemble a tag.
            ("<scr<script>ipt>alert(1)</script>", "ipt&gt;alert(1)"),
            ("<<img src=x onerror=alert(1)//<", "&lt;"),
            ("\"><script>alert(1)</script>", "\"&gt;"),
            // Encoded markup stays text.
            ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("<p title=\"a&quot;><script>x</script>\">t</p>", "<p title=\"a&quot;&gt;&lt;script&gt;x&lt;/script&gt;\">t</p>"),
            ("1 < 2 > 0", "1 &lt; 2 &gt; 0"),
        ] {
            let clean = sanitize_html(attack);
            assert_eq!(clean, expected, "{attack}");
            let lower = clean.to_ascii_lowercase();
            assert!(
                !lower.contains("<script") && !lower.contains("onerror") && !lower.contains("javascript:") && !lower.contains("style="),
                "{attack} → {clean}"
            );
        }
    }

    #[test]
    fn address_lists_split_on_commas_and_semicolons() {
        assert_eq!(addresses(" a@x.test, b@y.test;;c@z.test "), ["a@x.test", "b@y.test", "c@z.test"]);
        assert!(addresses(" , ").is_empty());
    }
}
