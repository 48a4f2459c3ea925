//! Who may do what. One table says which role each page and server
//! function needs; the server enforces it for every request before any
//! handler runs (see `server::auth`), and the pages read the same table to
//! hide what the signed-in role cannot do.
//!
//! Roles are ordered: an admin may do everything a marketer may, and a
//! marketer everything an agent may. What an agent sees is further limited
//! to the tasks, participants and contacts they own.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Marketer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Agent, Role::Marketer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Marketer => "marketer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }

    pub fn may(self, access: Access) -> bool {
        match access {
            Access::Public | Access::SignedIn => true,
            Access::Marketer => self >= Role::Marketer,
            Access::Admin => self == Role::Admin,
        }
    }
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone, signed in or not (sign-in page, static files).
    Public,
    /// Any signed-in user; agents see only what they own.
    SignedIn,
    Marketer,
    Admin,
}

/// The signed-in user (or API token) a request acts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Signed in with an API token rather than a session cookie.
    #[serde(default)]
    pub token: bool,
}

impl Viewer {
    pub fn may(&self, access: Access) -> bool {
        self.role.may(access)
    }

    /// Whether this viewer sees a record owned by `owner`: everyone but an
    /// agent sees everything; an agent sees what is theirs.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.role != Role::Agent || owner.is_some_and(|owner| owner.eq_ignore_ascii_case(&self.email))
    }

    /// How this viewer is named in the audit log and on published versions.
    pub fn actor(&self) -> String {
        if self.token {
            format!("token:{}", self.name)
        } else {
            self.email.clone()
        }
    }
}

/// Every page (by its route, in axum's syntax) and the access it needs. The server
/// refuses to start if a route of the app is missing here.
pub const PAGES: &[(&str, Access)] = &[
    ("/login", Access::Public),
    ("/setup", Access::Public),
    ("/", Access::Marketer),
    ("/flows/{id}", Access::Marketer),
    ("/flows/{id}/participants", Access::Marketer),
    ("/flows/{id}/report", Access::Marketer),
    ("/inbox", Access::SignedIn),
    ("/workspace", Access::SignedIn),
    ("/workspace/{id}", Access::SignedIn),
    ("/templates", Access::Marketer),
    ("/participants/{id}", Access::SignedIn),
    ("/participants", Access::Marketer),
    ("/bulk-runs/{id}", Access::Marketer),
    ("/contacts", Access::Marketer),
    ("/contacts/new", Access::Marketer),
    ("/contacts/import", Access::Marketer),
    ("/contacts/{id}", Access::Marketer),
    ("/contacts/{id}/edit", Access::Marketer),
    ("/review", Access::Admin),
    ("/admin/users", Access::Admin),
    ("/admin/tokens", Access::Admin),
    ("/admin/integrations", Access::Admin),
    ("/admin/mailbox", Access::Admin),
    ("/admin/pressure", Access::Admin),
    ("/audit", Access::Admin),
];

/// Every server function (by name) and the access it needs. A server
/// function missing here is refused to everyone, and the server's tests fail.
pub const SERVER_FNS: &[(&str, Access)] = &[
    ("whoami", Access::Public),
    ("setup_needed", Access::Public),
    // flows and the editor
    ("list_flows", Access::Marketer),
    ("create_flow", Access::Marketer),
    ("import_flow", Access::Marketer),
    ("get_flow", Access::Marketer),
    ("rename_flow", Access::Marketer),
    ("delete_flow", Access::Marketer),
    ("save_draft", Access::Marketer),
    ("publish_flow", Access::Marketer),
    ("test_run", Access::Marketer),
    ("flow_participants", Access::Marketer),
    ("migrate_participants", Access::Marketer),
    ("step_counts", Access::Marketer),
    ("get_flow_report", Access::Marketer),
    ("home_dashboard", Access::Marketer),
    ("choose_branch", Access::Marketer),
    ("retry_participant", Access::Marketer),
    ("list_task_owners", Access::Marketer),
    // contacts and bulk actions
    ("search_contacts", Access::Marketer),
    ("get_contact_detail", Access::Marketer),
    ("save_contact", Access::Marketer),
    ("change_contact_list", Access::Marketer),
    ("search_participants", Access::Marketer),
    ("preview_bulk_action", Access::Marketer),
    ("start_bulk_action", Access::Marketer),
    ("get_bulk_run", Access::Marketer),
    ("undo_bulk_run", Access::Marketer),
    ("get_contact_import", Access::Marketer),
    ("list_contact_imports", Access::Marketer),
    // the task inbox: agents see their own
    ("list_tasks", Access::SignedIn),
    ("act_on_task", Access::SignedIn),
    ("get_participant", Access::SignedIn),
    ("participant_conversations", Access::SignedIn),
    ("contact_conversations", Access::Marketer),
    // the agent's workspace: agents work their own tasks
    ("my_queue", Access::SignedIn),
    ("workspace_task", Access::SignedIn),
    ("send_task_email", Access::SignedIn),
    ("preview_email", Access::SignedIn),
    ("send_task_sms", Access::SignedIn),
    ("place_task_call", Access::SignedIn),
    ("task_call", Access::SignedIn),
    ("finish_task", Access::SignedIn),
    ("contact_thread", Access::SignedIn),
    ("list_templates", Access::SignedIn),
    ("save_template", Access::Marketer),
    ("delete_template", Access::Marketer),
    ("my_phone", Access::SignedIn),
    ("save_my_phone", Access::SignedIn),
    ("flow_task_owners", Access::Marketer),
    ("set_flow_task_owner", Access::Marketer),
    // administration
    ("validation_review", Access::Admin),
    ("acknowledge_finding", Access::Admin),
    ("set_review_required", Access::Admin),
    ("list_users", Access::Admin),
    ("save_user", Access::Admin),
    ("list_tokens", Access::Admin),
    ("create_token", Access::Admin),
    ("revoke_token", Access::Admin),
    ("list_audit", Access::Admin),
    ("integration_settings", Access::Admin),
    ("save_integration", Access::Admin),
    ("save_smtp", Access::Admin),
    // the bounce and reply mailbox, provider webhooks
    ("mailbox_settings", Access::Admin),
    ("save_mailbox", Access::Admin),
    ("save_email_webhook", Access::Admin),
    ("poll_mailbox", Access::Admin),
    ("pressure_policy", Access::Admin),
    ("save_pressure", Access::Admin),
    ("save_dkim", Access::Admin),
    ("generate_dkim_key", Access::Admin),
];

/// The health probes (`server::ops`), outside the pages and the API: public,
/// JSON. (`/metrics` is served on its own address only: `--metrics-addr`.)
pub const PROBES: &[(&str, Access)] = &[("/healthz", Access::Public), ("/readyz", Access::Public)];

/// The API's OpenAPI description (`server::openapi`), under `/api/v1`:
/// public, like the shape of the API it tells.
pub const API_DESCRIPTION: (&str, Access) = ("/openapi.json", Access::Public);

pub fn page_access(pattern: &str) -> Option<Access> {
    PAGES.iter().find(|(page, _)| *page == pattern).map(|(_, access)| *access)
}

/// The access a server function needs, by the last segment of its URL
/// (`/fn/list_flows12345…`: its name followed by a numeric hash).
pub fn server_fn_access(url: &str) -> Option<Access> {
    let last = url.rsplit('/').next()?;
    let name = last.trim_end_matches(|c: char| c.is_ascii_digit());
    SERVER_FNS.iter().find(|(known, _)| *known == name).map(|(_, access)| *access)
}

/// The navigation links, with the access each needs.
pub const NAV: &[(&str, &str, Access)] = &[
    ("/", "Flows", Access::Marketer),
    ("/contacts", "Contacts", Access::Marketer),
    ("/participants", "Participants", Access::Marketer),
    ("/inbox", "Task inbox", Access::SignedIn),
    ("/workspace", "My day", Access::SignedIn),
    ("/templates", "Templates", Access::Marketer),
    ("/review", "Validation review", Access::Admin),
    ("/admin/users", "Users", Access::Admin),
    ("/admin/tokens", "API tokens", Access::Admin),
    ("/admin/integrations", "Integrations", Access::Admin),
    ("/admin/mailbox", "Bounces & replies", Access::Admin),
    ("/admin/pressure", "Contact pressure", Access::Admin),
    ("/audit", "Audit log", Access::Admin),
];

/// The signed-in viewer of the request being served (server side).
#[cfg(feature = "ssr")]
pub fn viewer() -> Option<Viewer> {
    leptos::prelude::use_context::<http::request::Parts>().and_then(|parts| parts.extensions.get::<Viewer>().cloned())
}

/// The first line of every server function that is not public: the viewer,
/// if their role gives them `access`. The guard in front of `/fn/` checks
/// the same table, but a page's server functions also run directly while
/// the page renders on the server, where no path-keyed check is passed:
/// the decision has to live here, with the code.
#[cfg(feature = "ssr")]
pub fn require(access: Access) -> Result<Viewer, leptos::prelude::ServerFnError> {
    use leptos::prelude::ServerFnError;
    match viewer() {
        Some(viewer) if viewer.may(access) => Ok(viewer),
        Some(viewer) => Err(ServerFnError::new(format!("{FORBIDDEN}: your role ({}) may not do this.", viewer.role.as_str()))),
        None if access == Access::Public => Err(ServerFnError::new("a public function has no viewer to require")),
        None => Err(ServerFnError::new(format!("{UNAUTHENTICATED}: sign in first."))),
    }
}

/// How [`require`]'s refusals begin, so tests and pages can tell them apart.
pub const FORBIDDEN: &str = "Not allowed";
pub const UNAUTHENTICATED: &str = "Not signed in";

/// The session's anti-forgery token, which the server's guard puts beside
/// the viewer and the page's `<head>` carries for the script (see
/// [`client`]). A form that markup might inject cannot send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrfToken(pub String);

/// The name of the `<meta>` the token is printed in, and of the header it
/// goes back in.
pub const CSRF_META: &str = "waymark-csrf";
pub const CSRF_HEADER: &str = "x-waymark-csrf";

/// The token of the request being rendered, for the page's `<head>`.
#[cfg(feature = "ssr")]
pub fn csrf_token() -> Option<String> {
    leptos::prelude::use_context::<http::request::Parts>().and_then(|parts| parts.extensions.get::<CsrfToken>().map(|t| t.0.clone()))
}

/// Whether a `Content-Type` is a problem document (RFC 9457).
pub fn is_problem(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/problem+json"))
}

/// The sentence to show for a problem document: its `detail`, else its
/// `title`; a body that is not one is shown as a generic failure (never
/// as raw text, which could be anything a proxy sent).
pub fn problem_sentence(body: &str) -> String {
    let problem: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let text = |key: &str| problem.get(key).and_then(|v| v.as_str()).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    text("detail").or_else(|| text("title")).unwrap_or_else(|| "The server refused this request.".to_owned())
}

/// The client every server function is called through from the browser:
/// the framework's fetch client, with the session's anti-forgery token
/// added to each request. On the server (where the functions run, not
/// their client) it is the framework's own.
pub mod client {
    #[cfg(not(feature = "hydrate"))]
    pub type Client = leptos::server_fn::client::browser::BrowserClient;

    #[cfg(feature = "hydrate")]
    pub use browser::{token, Client};

    #[cfg(feature = "hydrate")]
    mod browser {
        use leptos::server_fn::client::browser::BrowserClient;
        use leptos::server_fn::client::Client as ClientTrait;
        use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
        use leptos::server_fn::request::browser::BrowserRequest;
        use leptos::server_fn::response::browser::BrowserResponse;
        use leptos::server_fn::response::ClientRes;

        pub struct Client;

        /// The token the page was served with (empty when signed out).
        pub fn token() -> String {
            web_sys::window()
                .and_then(|window| window.document())
                .and_then(|document| document.query_selector(&format!("meta[name=\"{}\"]", super::super::CSRF_META)).ok().flatten())
                .and_then(|meta| meta.get_attribute("content"))
                .unwrap_or_default()
        }

        impl<E: FromServerFnError, IS: FromServerFnError, OS: FromServerFnError> ClientTrait<E, IS, OS> for Client {
            type Request = BrowserRequest;
            type Response = BrowserResponse;

            /// A refusal the server answers before the function runs (the
            /// guard: signed out, a stale page, a role, a body too big) is a
            /// problem document, not the function's error encoding: it
            /// becomes the function's error with the problem's sentence,
            /// rather than a failure to read the answer.
            fn send(request: BrowserRequest) -> impl std::future::Future<Output = Result<BrowserResponse, E>> + Send {
                request.headers().set(super::super::CSRF_HEADER, &token());
                let sent = <BrowserClient as ClientTrait<E, IS, OS>>::send(request);
                async move {
                    let response = sent.await?;
                    let refused = (400..=599).contains(&ClientRes::<E>::status(&response));
                    let problem = response
                        .generate_headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(super::super::is_problem);
                    if !(refused && problem) {
                        return Ok(response);
                    }
                    let body = ClientRes::<E>::try_into_string(response).await?;
                    Err(E::from_server_fn_error(ServerFnErrorErr::ServerError(super::super::problem_sentence(&body))))
                }
            }

            #[allow(clippy::type_complexity)]
            fn open_websocket(
                path: &str,
            ) -> impl std::future::Future<
                Output = Result<
                    (
                        impl futures::Stream<Item = Result<leptos::server_fn::Bytes, leptos::server_fn::Bytes>> + Send + 'static,
                        impl futures::Sink<leptos::server_fn::Bytes> + Send + 'static,
                    ),
                    E,
                >,
            > + Send {
                <BrowserClient as ClientTrait<E, IS, OS>>::open_websocket(path)
            }

            fn spawn(future: impl std::future::Future<Output = ()> + Send + 'static) {
                <BrowserClient as ClientTrait<E, IS, OS>>::spawn(future)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.may(Access::Marketer));
        assert!(Role::Marketer.may(Access::SignedIn));
        assert!(!Role::Marketer.may(Access::Admin));
        assert!(!Role::Agent.may(Access::Marketer));
        assert!(Role::Agent.may(Access::Public));
    }

    #[test]
    fn a_problem_reads_as_its_sentence() {
        assert!(is_problem("application/problem+json"));
        assert!(is_problem("Application/Problem+JSON; charset=utf-8"));
        assert!(!is_problem("application/json"));
        assert!(!is_problem("text/plain"));
        let stale = r#"{"code":"session_changed","title":"Forbidden","detail":"You signed in again since this page was loaded."}"#;
        assert_eq!(problem_sentence(stale), "You signed in again since this page was loaded.");
        assert_eq!(problem_sentence(r#"{"title":"Payload Too Large","detail":"  "}"#), "Payload Too Large");
        assert_eq!(problem_sentence("<html>bad gateway</html>"), "The server refused this request.");
        assert_eq!(problem_sentence(r#"{"detail":42}"#), "The server refused this request.");
    }

    #[test]
    fn server_fn_names_lose_their_hash() {
        assert_eq!(server_fn_access("/fn/list_flows8812379871233"), Some(Access::Marketer));
        assert_eq!(server_fn_access("/fn/list_users"), Some(Access::Admin));
        assert_eq!(server_fn_access("/fn/unknown_thing123"), None);
    }

    #[test]
    fn agents_own_by_email_only() {
        let agent = Viewer { id: 1, email: "ann@example.com".into(), name: "Ann".into(), role: Role::Agent, token: false };
        assert!(agent.owns(Some("ANN@example.com")));
        assert!(!agent.owns(Some("bob@example.com")));
        assert!(!agent.owns(None));
        let marketer = Viewer { role: Role::Marketer, ..agent };
        assert!(marketer.owns(None));
    }
}
