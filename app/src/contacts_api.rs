//! What the contacts, participant search and bulk-run pages ask the server
//! for. Like [`crate::api`], the server functions only forward to a backend
//! the server provides as context; criteria and bulk requests travel as the
//! same JSON the REST API takes, so both are checked by the same code.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// A contact in the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRow {
    pub id: i64,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub owner: Option<String>,
    pub timezone: Option<String>,
    pub lists: Vec<String>,
}

impl ContactRow {
    pub fn label(&self) -> String {
        self.email.clone().or_else(|| self.mobile.clone()).unwrap_or_else(|| format!("Contact {}", self.id))
    }
}

/// A page of a contact search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPage {
    /// How many match, counted up to a cap.
    pub total: i64,
    /// More match than `total`.
    pub more: bool,
    pub rows: Vec<ContactRow>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

impl ContactPage {
    pub fn summary(&self) -> String {
        if self.more {
            format!("More than {} contacts match", self.total)
        } else {
            format!("{} contact(s)", self.total)
        }
    }
}

/// A flow the contact is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participation {
    pub participant_id: i64,
    pub flow_id: i64,
    pub flow_name: String,
    pub version: i64,
    pub status: String,
    pub step: Option<String>,
    pub reserved_for: Option<String>,
    pub callback_at: Option<String>,
}

/// One step the contact reached in some flow: an action, a message, a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub participant_id: i64,
    pub flow_name: String,
    pub step: String,
    pub kind: String,
    pub due_at: String,
    pub done_at: Option<String>,
    pub outcome: String,
    pub manual: bool,
    pub owner: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
}

/// A message or other effect sent (or tried) for the contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEntry {
    pub participant_id: i64,
    pub kind: String,
    pub status: String,
    pub created_at: String,
    pub last_error: Option<String>,
}

/// A task or follow-up created for the contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    pub participant_id: i64,
    pub flow_name: String,
    pub step: String,
    pub kind: String,
    pub subject: Option<String>,
    pub owner: Option<String>,
    pub status: String,
    pub due_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactDetail {
    pub id: i64,
    pub contact: crate::core::contact::Contact,
    pub deleted_at: Option<String>,
    pub created_at: String,
    pub participations: Vec<Participation>,
    pub timeline: Vec<TimelineEntry>,
    pub tasks: Vec<TaskEntry>,
    pub messages: Vec<MessageEntry>,
}

/// A participant in the search results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRow {
    pub id: i64,
    pub contact_id: i64,
    pub contact: String,
    pub flow_id: i64,
    pub flow_name: String,
    pub status: String,
    pub step: Option<String>,
    pub pass_count: i64,
    pub reserved_for: Option<String>,
    pub callback_at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantPage {
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
    pub rows: Vec<ParticipantRow>,
}

/// What a bulk action would do, before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionPreview {
    pub effect: String,
    pub count: i64,
    pub reversible: bool,
    /// (participant id, contact, flow, status, step)
    pub sample: Vec<(i64, String, String, String, Option<String>)>,
}

/// A bulk run as its job page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: i64,
    pub action: String,
    pub status: String,
    pub total: i64,
    pub done: i64,
    pub count: i64,
    pub message: Option<String>,
    pub run_by: String,
    pub run_at: String,
    pub finished_at: Option<String>,
    pub undone_by: Option<String>,
    pub undone_at: Option<String>,
    pub reversible: bool,
    pub criteria: String,
    pub params: String,
    pub link: Option<String>,
    pub link_expires_at: Option<String>,
    pub email_status: Option<String>,
}

impl RunInfo {
    pub fn running(&self) -> bool {
        self.status == "running"
    }

    /// Whole percent done.
    pub fn percent(&self) -> i64 {
        if self.total == 0 {
            100
        } else {
            self.done * 100 / self.total
        }
    }
}

/// A contact import's progress and outcome, polled while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportInfo {
    pub id: i64,
    pub file_name: Option<String>,
    pub status: String,
    pub bytes_total: i64,
    pub bytes_done: i64,
    pub rows_done: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    pub failed: i64,
    pub error: Option<String>,
    /// The first refused rows: (line, reason).
    pub errors: Vec<(i64, String)>,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
}

impl ImportInfo {
    pub fn percent(&self) -> i64 {
        if self.status != "running" || self.bytes_total == 0 {
            100
        } else {
            self.bytes_done * 100 / self.bytes_total
        }
    }
}

#[cfg(feature = "ssr")]
pub use backend::{ContactsBackend, ContactsHandle};

#[cfg(feature = "ssr")]
mod backend {
    use std::sync::Arc;

    use super::*;

    #[async_trait::async_trait]
    pub trait ContactsBackend: Send + Sync + 'static {
        /// A page of 50 after the cursor `after` (a page's `next`).
        async fn search(&self, q: String, list: String, after: Option<String>) -> Result<ContactPage, ServerFnError>;
        async fn detail(&self, id: i64) -> Result<ContactDetail, ServerFnError>;
        /// Creates (`id` None) or replaces a contact; returns its id.
        async fn save(&self, id: Option<i64>, contact: crate::core::contact::Contact) -> Result<i64, ServerFnError>;
        /// Adds or removes one list membership.
        async fn change_list(&self, id: i64, list: String, add: bool) -> Result<(), ServerFnError>;
        async fn participants(&self, criteria: String, page: i64) -> Result<ParticipantPage, ServerFnError>;
        async fn preview(&self, request: String) -> Result<ActionPreview, ServerFnError>;
        /// Starts a run in the background; its id.
        async fn start(&self, request: String) -> Result<i64, ServerFnError>;
        async fn run(&self, id: i64) -> Result<RunInfo, ServerFnError>;
        async fn undo(&self, id: i64) -> Result<String, ServerFnError>;
        async fn import(&self, id: i64) -> Result<ImportInfo, ServerFnError>;
        /// The newest imports first (without their refused rows).
        async fn imports(&self) -> Result<Vec<ImportInfo>, ServerFnError>;
    }

    pub type ContactsHandle = Arc<dyn ContactsBackend>;

    pub(crate) fn contacts() -> Result<ContactsHandle, ServerFnError> {
        use_context::<ContactsHandle>().ok_or_else(|| ServerFnError::new("the contacts store is not available"))
    }
}

/// Contacts whose email, name or mobile starts with `q`, in `list`; the page after `after` ("" for the first).
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn search_contacts(q: String, list: String, after: String) -> Result<ContactPage, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.search(q, list, Some(after).filter(|a| !a.is_empty())).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn get_contact_detail(id: i64) -> Result<ContactDetail, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.detail(id).await
}

/// Saves the contact form. `fields` is one `name = value` a line; `lists`
/// is comma-separated. Returns the contact's id.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn save_contact(
    id: Option<i64>,
    email: String,
    mobile: String,
    timezone: String,
    owner: String,
    fields: String,
    lists: String,
) -> Result<i64, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    let contact = contact_from_form(&email, &mobile, &timezone, &owner, &fields, &lists).map_err(ServerFnError::new)?;
    backend::contacts()?.save(id, contact).await
}

/// The form's text as a contact, or the sentence saying what is wrong.
pub fn contact_from_form(email: &str, mobile: &str, timezone: &str, owner: &str, fields: &str, lists: &str) -> Result<crate::core::contact::Contact, String> {
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut contact = crate::core::contact::Contact {
        email: text(email),
        mobile: text(mobile),
        timezone: text(timezone),
        owner: text(owner),
        ..Default::default()
    };
    if contact.email.is_none() && contact.mobile.is_none() {
        return Err("A contact needs an email or a mobile number.".into());
    }
    for (n, line) in fields.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (name, value) = line.split_once('=').ok_or_else(|| format!("Field line {} is not “name = value”.", n + 1))?;
        let name = name.trim();
        if name.is_empty() || name.contains(['"', '\'', '$', '.', '[', ']']) {
            return Err(format!("“{name}” is not a usable field name."));
        }
        contact.fields.insert(name.to_owned(), serde_json::Value::String(value.trim().to_owned()));
    }
    contact.lists = lists.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    Ok(contact)
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn change_contact_list(id: i64, list: String, add: bool) -> Result<(), ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    if list.trim().is_empty() {
        return Err(ServerFnError::new("Name the list."));
    }
    backend::contacts()?.change_list(id, list.trim().to_owned(), add).await
}

/// Participants matching `criteria` (the REST API's criteria JSON), a page of 50.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn search_participants(criteria: String, page: i64) -> Result<ParticipantPage, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.participants(criteria, page).await
}

/// `request` is the REST API's bulk request JSON: {"action", "criteria", "params"}.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn preview_bulk_action(request: String) -> Result<ActionPreview, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.preview(request).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn start_bulk_action(request: String) -> Result<i64, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.start(request).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn get_bulk_run(id: i64) -> Result<RunInfo, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.run(id).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn undo_bulk_run(id: i64) -> Result<String, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.undo(id).await
}

#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn get_contact_import(id: i64) -> Result<ImportInfo, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.import(id).await
}

/// The last 20 imports, newest first: when, who, which file, the counts.
#[server(prefix = "/fn", client = crate::auth::client::Client)]
pub async fn list_contact_imports() -> Result<Vec<ImportInfo>, ServerFnError> {
    crate::auth::require(crate::auth::Access::Marketer)?;
    backend::contacts()?.imports().await
}

/// The import form's mapping text (`column = field` a line) as the options JSON.
pub fn import_options(mapping: &str, dedupe: &str, match_on: &str, list: &str) -> Result<String, String> {
    let mut map = serde_json::Map::new();
    for (n, line) in mapping.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (column, field) = line.split_once('=').ok_or_else(|| format!("Mapping line {} is not “column = field”.", n + 1))?;
        map.insert(column.trim().to_owned(), serde_json::Value::String(field.trim().to_owned()));
    }
    let mut options = serde_json::json!({"mapping": map, "dedupe": dedupe, "match_on": match_on});
    if !list.trim().is_empty() {
        options["list"] = serde_json::Value::String(list.trim().to_owned());
    }
    Ok(options.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_a_contact_or_says_what_is_wrong() {
        let c = contact_from_form(" ada@x.test ", "", "Europe/Paris", "", "company = Acme\n\nscore=7", "VIP, News,").unwrap();
        assert_eq!(c.email.as_deref(), Some("ada@x.test"));
        assert_eq!(c.mobile, None);
        assert_eq!(c.fields["company"], "Acme");
        assert_eq!(c.lists.iter().collect::<Vec<_>>(), ["News", "VIP"]);
        assert!(contact_from_form("", " ", "", "", "", "").unwrap_err().contains("email or a mobile"));
        assert!(contact_from_form("a@x.test", "", "", "", "no equals", "").unwrap_err().contains("line 1"));
        assert!(contact_from_form("a@x.test", "", "", "", "a.b = 1", "").unwrap_err().contains("not a usable"));
    }

    #[test]
    fn the_import_form_becomes_options() {
        let options: serde_json::Value =
            serde_json::from_str(&import_options("E-mail = email\nNotes =\n", "skip", "email", " VIP ").unwrap()).unwrap();
        assert_eq!(options["mapping"]["E-mail"], "email");
        assert_eq!(options["mapping"]["Notes"], "");
        assert_eq!((options["dedupe"].as_str(), options["list"].as_str()), (Some("skip"), Some("VIP")));
        assert!(import_options("no equals sign", "update", "email", "").unwrap_err().contains("line 1"));
    }
}
