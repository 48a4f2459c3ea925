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

/// Elements dropped with everything inside them.
const DROPPED: &[&str] = &["script", "style", "iframe", "object", "embed", "form", "frame", "frameset", "applet", "base", "meta", "link", "svg", "math", "template", "noscript"];

/// An agent's HTML made safe to send and to preview, as templates are
/// meant to be: scripts, styles, frames, forms and embedded objects are
/// dropped with their content, event-handler attributes (`on…`) and
/// `style` removed, and links or images whose address is not http(s),
/// mailto, tel or relative lose it. Text and ordinary markup (paragraphs,
/// links, lists, emphasis, tables, images) stay as written.
pub fn sanitize_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        if let Some(comment) = after.strip_prefix("<!--") {
            rest = comment.find("-->").map(|end| &comment[end + 3..]).unwrap_or("");
            continue;
        }
        let Some(close) = tag_end(after) else {
            // An unclosed `<`: kept as text.
            out.push_str("&lt;");
            rest = &after[1..];
            continue;
        };
        let tag = &after[1..close];
        rest = &after[close + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        if name.is_empty() {
            if tag.starts_with('!') || tag.starts_with('?') {
                continue; // doctype, processing instruction
            }
            out.push_str("&lt;");
            out.push_str(&tag.replace('<', "&lt;").replace('>', "&gt;"));
            out.push_str("&gt;");
            continue;
        }
        if DROPPED.contains(&name.as_str()) {
            if !closing && !tag.ends_with('/') {
                let end = format!("</{name}");
                let lower = rest.to_ascii_lowercase();
                rest = match lower.find(&end) {
                    Some(at) => {
                        let tail = &rest[at..];
                        tail.find('>').map(|gt| &tail[gt + 1..]).unwrap_or("")
                    }
                    None => "",
                };
            }
            continue;
        }
        if closing {
            out.push_str(&format!("</{name}>"));
            continue;
        }
        out.push('<');
        out.push_str(&name);
        for (attr, value) in attributes(&tag[name.len()..]) {
            if attr.starts_with("on") || attr == "style" || attr == "srcdoc" || attr == "formaction" || attr.contains(':') {
                continue;
            }
            if matches!(attr.as_str(), "href" | "src" | "action" | "background" | "poster" | "xlink") && !safe_url(&value) {
                continue;
            }
            out.push(' ');
            out.push_str(&attr);
            out.push_str("=\"");
            out.push_str(&crate::core::merge::escape_html(&value));
            out.push('"');
        }
        if tag.trim_end().ends_with('/') {
            out.push_str(" /");
        }
        out.push('>');
    }
    out.push_str(&rest.replace('>', "&gt;"));
    out
}

/// Where the tag opened at 0 ends, skipping `>` inside quoted values.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// A tag's attributes as (lower-case name, decoded value).
fn attributes(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == '/') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' && chars[i] != '/' {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect::<String>().to_ascii_lowercase();
        if name.is_empty() {
            i += 1;
            continue;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                while i < chars.len() && chars[i] != q {
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && !chars[i].is_whitespace() {
                    value.push(chars[i]);
                    i += 1;
                }
            }
        }
        found.push((name, decode(&value)));
    }
    found
}

/// The few entities an attribute may hide a scheme behind.
fn decode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';').filter(|&s| s <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "colon" => Some(':'),
            "tab" | "Tab" => Some('\t'),
            "newline" | "NewLine" => Some('\n'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// http(s), mailto, tel, or no scheme at all (relative, `#anchor`).
fn safe_url(url: &str) -> bool {
    let squeezed: String = url.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect::<String>().to_ascii_lowercase();
    match squeezed.find(':') {
        None => true,
        Some(colon) if squeezed[..colon].contains(['/', '?', '#']) => true,
        Some(colon) => matches!(&squeezed[..colon], "http" | "https" | "mailto" | "tel"),
    }
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

    #[test]
    fn sanitizing_keeps_markup_and_drops_what_runs() {
        assert_eq!(
            sanitize_html("<p class=\"x\">Hi <b>Ada</b> &amp; <a href=\"https://x.test/a?b=1&amp;c=2\">guide</a></p>"),
            "<p class=\"x\">Hi <b>Ada</b> &amp; <a href=\"https://x.test/a?b=1&amp;c=2\">guide</a></p>"
        );
        assert_eq!(sanitize_html("a<script>alert('<p>')</script>b<style>p{}</style>c"), "abc");
        assert_eq!(sanitize_html("<img src=x onerror=alert(1)>"), "<img src=\"x\">");
        assert_eq!(sanitize_html("<a href=\"java&#x09;script:alert(1)\">x</a>"), "<a>x</a>");
        assert_eq!(sanitize_html("<a href=' JavaScript:alert(1)'>x</a>"), "<a>x</a>");
        assert_eq!(sanitize_html("<a href=\"mailto:a@b.test\" style=\"x\">m</a>"), "<a href=\"mailto:a@b.test\">m</a>");
        assert_eq!(sanitize_html("<iframe src=\"https://x\"></iframe><!-- <script> -->ok"), "ok");
        assert_eq!(sanitize_html("<p title=\"a>b\">x</p>"), "<p title=\"a&gt;b\">x</p>");
        assert_eq!(sanitize_html("1 < 2 > 0"), "1 &lt; 2 &gt; 0");
        assert_eq!(sanitize_html("<br/><SCRIPT SRC=//x></SCRIPT>"), "<br />");
    }

    #[test]
    fn address_lists_split_on_commas_and_semicolons() {
        assert_eq!(addresses(" a@x.test, b@y.test;;c@z.test "), ["a@x.test", "b@y.test", "c@z.test"]);
        assert!(addresses(" , ").is_empty());
    }
}
