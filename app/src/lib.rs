//! Waymark's shared crate: the pure flow core, and the Leptos pages and
//! server functions that render it (SSR on the server, hydrated in the
//! browser).

#![recursion_limit = "256"]

pub mod admin_api;
pub mod api;
pub mod auth;
pub mod components;
pub mod contacts_api;
pub mod conversations;
pub mod core;
pub mod dashboard_api;
pub mod mailbox_api;
pub mod pages;
pub mod pressure_api;
pub mod report_api;
pub mod runtime_api;
pub mod workspace_api;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{path, Lazy, LazyRoute};

/// The page's Content-Security-Policy: scripts only from this site or
/// carrying this response's nonce (the hydration script), wasm allowed to
/// compile, nothing framed, forms posted only here.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>()) {
        let policy = content_security_policy(&nonce.to_string());
        if let Ok(value) = http::HeaderValue::from_str(&policy) {
            response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
    // The session's anti-forgery token, for the pages' script to send back
    // (see `auth::client`); none when signed out.
    #[cfg(feature = "ssr")]
    let csrf = auth::csrf_token();
    #[cfg(not(feature = "ssr"))]
    let csrf: Option<String> = None;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                {csrf.map(|token| view! { <meta name=auth::CSRF_META content=token/> })}
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Set once the browser has hydrated the page (its route's chunk loaded
    // and hydrated too): tests wait for it before clicking, since clicks on
    // a page not yet hydrated do nothing.
    let hydrated = Hydrated(RwSignal::new(false));
    provide_context(hydrated);
    // Who is signed in: the navigation shows only what their role may use.
    let viewer: ViewerResource = Resource::new(|| (), |_| admin_api::whoami());
    provide_context(viewer);

    view! {
        <Stylesheet id="leptos" href="/pkg/waymark.css"/>
        <Title formatter=page_title/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.0.get().then_some("true")>
                <header class="topbar">
                    <A href="/" attr:class="brand">
                        <span class="brand-mark">"◆"</span>
                        " Waymark"
                    </A>
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            let viewer = viewer.await.ok().flatten();
                            view! { <Navigation viewer/> }
                        })}
                    </Transition>
                </header>
                <main>
                    <Routes fallback=|| view! { <pages::NotFound/> }>
                        <Route path=path!("/login") view={Lazy::<LoginRoute>::new()}/>
                        <Route path=path!("/setup") view={Lazy::<SetupRoute>::new()}/>
                        <Route path=path!("/admin/users") view={Lazy::<UsersRoute>::new()}/>
                        <Route path=path!("/admin/tokens") view={Lazy::<TokensRoute>::new()}/>
                        <Route path=path!("/admin/integrations") view={Lazy::<IntegrationsRoute>::new()}/>
                        <Route path=path!("/admin/mailbox") view={Lazy::<MailboxRoute>::new()}/>
                        <Route path=path!("/admin/pressure") view={Lazy::<PressureRoute>::new()}/>
                        <Route path=path!("/audit") view={Lazy::<AuditRoute>::new()}/>
                        <Route path=path!("/") view={Lazy::<FlowsRoute>::new()}/>
                        <Route path=path!("/flows/:id") view={Lazy::<FlowRoute>::new()}/>
                        <Route path=path!("/flows/:id/participants") view={Lazy::<ParticipantsRoute>::new()}/>
                        <Route path=path!("/flows/:id/report") view={Lazy::<ReportRoute>::new()}/>
                        <Route path=path!("/review") view={Lazy::<ReviewRoute>::new()}/>
                        <Route path=path!("/inbox") view={Lazy::<InboxRoute>::new()}/>
                        <Route path=path!("/workspace") view={Lazy::<WorkspaceRoute>::new()}/>
                        <Route path=path!("/workspace/:id") view={Lazy::<WorkspaceRoute>::new()}/>
                        <Route path=path!("/templates") view={Lazy::<TemplatesRoute>::new()}/>
                        <Route path=path!("/participants/:id") view={Lazy::<ParticipantRoute>::new()}/>
                        <Route path=path!("/participants") view={Lazy::<ParticipantSearchRoute>::new()}/>
                        <Route path=path!("/bulk-runs/:id") view={Lazy::<BulkRunRoute>::new()}/>
                        <Route path=path!("/contacts") view={Lazy::<ContactsRoute>::new()}/>
                        <Route path=path!("/contacts/new") view={Lazy::<ContactEditRoute>::new()}/>
                        <Route path=path!("/contacts/import") view={Lazy::<ContactImportRoute>::new()}/>
                        <Route path=path!("/contacts/:id") view={Lazy::<ContactRoute>::new()}/>
                        <Route path=path!("/contacts/:id/edit") view={Lazy::<ContactEditRoute>::new()}/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}

/// Set once the page is hydrated; see [`App`].
#[derive(Clone, Copy)]
pub struct Hydrated(RwSignal<bool>);

/// Marks the page hydrated once the view this is called in has been: each
/// route calls it, and only after its chunk is loaded and hydrated does the
/// effect run.
pub fn mark_hydrated() {
    if let Some(Hydrated(hydrated)) = use_context::<Hydrated>() {
        Effect::new(move || hydrated.set(true));
    }
}

/// Pages load their code lazily, in a few groups: each group is one split
/// point, so its pages' code (and what only they use) becomes wasm chunks
/// fetched when one of them is first shown, and the first module every page
/// loads holds only the shell and the router. Groups, not one split point
/// per page: the splitter makes a chunk for each set of split points that
/// share code, and a page per split point made hundreds of chunks, which
/// cost more to fetch and instantiate than they saved (`load.bench.ts`).
/// Each group names the preload function `#[lazy]` makes for it.
macro_rules! lazy_pages {
    ($($group:ident ($preload:ident): $pages:ident { $($route:ident => $page:path,)* })*) => {$(
        // One variant per route type, named after it.
        #[derive(Clone, Copy)]
        #[allow(clippy::enum_variant_names)]
        enum $pages {
            $($route,)*
        }

        #[lazy]
        fn $group(page: $pages) -> AnyView {
            mark_hydrated();
            match page {
                $($pages::$route => $page().into_any(),)*
            }
        }

        $(
            struct $route;

            impl LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                async fn view(_: Self) -> AnyView {
                    $group($pages::$route).await
                }

                /// Fetches the group's chunks. The router waits for this
                /// before it hydrates the page, which it then renders at
                /// once, as the server did.
                async fn preload() {
                    #[cfg(feature = "hydrate")]
                    $preload().await;
                }
            }
        )*
    )*};
}

lazy_pages! {
    editor_pages (__preload_editor_pages): EditorPages {
        FlowRoute => pages::flow::FlowPage,
    }
    work_pages (__preload_work_pages): WorkPages {
        FlowsRoute => pages::flows::FlowsPage,
        ReviewRoute => pages::review::ReviewPage,
        InboxRoute => pages::inbox::InboxPage,
        WorkspaceRoute => pages::workspace::WorkspacePage,
        TemplatesRoute => pages::workspace_templates::TemplatesPage,
        ParticipantsRoute => pages::participants::ParticipantsPage,
        ReportRoute => pages::report::ReportPage,
        ParticipantRoute => pages::participant::ParticipantPage,
        ParticipantSearchRoute => pages::bulk::ParticipantSearchPage,
        BulkRunRoute => pages::bulk::BulkRunPage,
    }
    contact_pages (__preload_contact_pages): ContactPages {
        ContactsRoute => pages::contacts::ContactsPage,
        ContactEditRoute => pages::contacts::ContactEditPage,
        ContactImportRoute => pages::contacts::ContactImportPage,
        ContactRoute => pages::contacts::ContactPage,
    }
    account_pages (__preload_account_pages): AccountPages {
        LoginRoute => pages::login::LoginPage,
        SetupRoute => pages::login::SetupPage,
        UsersRoute => pages::admin::UsersPage,
        TokensRoute => pages::admin::TokensPage,
        IntegrationsRoute => pages::admin::IntegrationsPage,
        MailboxRoute => pages::mailbox::MailboxPage,
        PressureRoute => pages::pressure::PressurePage,
        AuditRoute => pages::admin::AuditPage,
    }
}

/// The document title. On the server it is escaped here: leptos_meta 0.8
/// writes the title into the HTML unescaped, so a flow named
/// `</title><script>…` would otherwise leave the element. (In the browser
/// it is set as `document.title`, plain text.)
fn page_title(text: String) -> String {
    let title = if text.is_empty() { "Waymark".to_owned() } else { format!("{text} · Waymark") };
    if cfg!(feature = "ssr") {
        core::merge::escape_html(&title)
    } else {
        title
    }
}

/// The signed-in viewer, loaded once per page by [`App`].
pub type ViewerResource = Resource<Result<Option<auth::Viewer>, ServerFnError>>;

/// The viewer's role, for components that show or hide by it (inside a
/// `Suspense`); `None` when nobody is signed in.
pub async fn current_viewer() -> Option<auth::Viewer> {
    match use_context::<ViewerResource>() {
        Some(resource) => resource.await.ok().flatten(),
        None => None,
    }
}

#[component]
fn Navigation(viewer: Option<auth::Viewer>) -> impl IntoView {
    match viewer {
        None => view! { <nav><A href="/login">"Sign in"</A></nav> }.into_any(),
        Some(viewer) => {
            let links = auth::NAV
                .iter()
                .filter(|(_, _, access)| viewer.may(*access))
                .map(|(href, label, _)| view! { <A href=*href>{*label}</A> })
                .collect_view();
            view! {
                <nav>{links}</nav>
                <form class="account" method="post" action="/auth/logout">
                    <span class="who" title=viewer.email.clone()>{viewer.name.clone()} " · " {viewer.role.as_str()}</span>
                    <button type="submit" class="link">"Sign out"</button>
                </form>
            }
            .into_any()
        }
    }
}
