//! One module per page.

pub mod admin;
pub mod bulk;
pub mod contacts;
pub mod dashboard;
pub mod flow;
pub mod flows;
pub mod inbox;
pub mod login;
pub mod mailbox;
pub mod participant;
pub mod participants;
pub mod pressure;
pub mod report;
pub mod review;
pub mod workspace;
pub mod workspace_templates;

use leptos::prelude::*;
use leptos_router::components::A;

#[component]
pub fn NotFound() -> impl IntoView {
    crate::mark_hydrated();
    view! {
        <section class="page">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. " <A href="/">"Back to your flows"</A></p>
        </section>
    }
}

/// A `<textarea>`'s initial text. The framework writes a textarea's
/// children into the server's HTML unescaped (as it does a script's), so a
/// stored value `</textarea><form …>` would leave the element and add
/// markup. On the server the text is escaped here: a textarea's content is
/// RCDATA, which the browser decodes back to exactly this text. In the
/// browser it becomes a text node as it is. Every textarea with children
/// goes through this; `security.rs` parses the rendered pages to prove it.
pub fn textarea_text(text: String) -> String {
    if cfg!(feature = "ssr") {
        crate::core::merge::escape_html(&text)
    } else {
        text
    }
}

/// A failed server call, in words.
#[component]
pub fn ErrorNote(message: String) -> impl IntoView {
    view! { <p class="notice error" role="alert">{message}</p> }
}
