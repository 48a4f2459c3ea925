//! Waymark's shared crate: the pure flow core, and the Leptos pages and
//! server functions that render it (SSR on the server, hydrated in the
//! browser).

#![recursion_limit = "256"]

pub mod api;
pub mod components;
pub mod contacts_api;
pub mod core;
pub mod pages;
pub mod runtime_api;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::path;

/// The HTML document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
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
    // Set once the browser has hydrated the page: tests wait for it before
    // clicking, since clicks on a page not yet hydrated do nothing.
    let hydrated = RwSignal::new(false);
    Effect::new(move || hydrated.set(true));

    view! {
        <Stylesheet id="leptos" href="/pkg/waymark.css"/>
        <Title formatter=|text: String| if text.is_empty() { "Waymark".to_owned() } else { format!("{text} · Waymark") }/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.get().then_some("true")>
                <header class="topbar">
                    <A href="/" attr:class="brand">
                        <span class="brand-mark">"◆"</span>
                        " Waymark"
                    </A>
                    <nav>
                        <A href="/">"Flows"</A>
                        <A href="/contacts">"Contacts"</A>
                        <A href="/participants">"Participants"</A>
                        <A href="/inbox">"Task inbox"</A>
                        <A href="/review">"Validation review"</A>
                    </nav>
                </header>
                <main>
                    <Routes fallback=|| view! { <pages::NotFound/> }>
                        <Route path=path!("/") view=pages::flows::FlowsPage/>
                        <Route path=path!("/flows/:id") view=pages::flow::FlowPage/>
                        <Route path=path!("/flows/:id/participants") view=pages::participants::ParticipantsPage/>
                        <Route path=path!("/review") view=pages::review::ReviewPage/>
                        <Route path=path!("/inbox") view=pages::inbox::InboxPage/>
                        <Route path=path!("/participants/:id") view=pages::participant::ParticipantPage/>
                        <Route path=path!("/participants") view=pages::bulk::ParticipantSearchPage/>
                        <Route path=path!("/bulk-runs/:id") view=pages::bulk::BulkRunPage/>
                        <Route path=path!("/contacts") view=pages::contacts::ContactsPage/>
                        <Route path=path!("/contacts/new") view=pages::contacts::ContactEditPage/>
                        <Route path=path!("/contacts/import") view=pages::contacts::ContactImportPage/>
                        <Route path=path!("/contacts/:id") view=pages::contacts::ContactPage/>
                        <Route path=path!("/contacts/:id/edit") view=pages::contacts::ContactEditPage/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}
