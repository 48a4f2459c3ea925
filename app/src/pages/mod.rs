//! One module per page.

pub mod admin;
pub mod bulk;
pub mod contacts;
pub mod flow;
pub mod flows;
pub mod inbox;
pub mod login;
pub mod participant;
pub mod participants;
pub mod review;

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

/// A failed server call, in words.
#[component]
pub fn ErrorNote(message: String) -> impl IntoView {
    view! { <p class="notice error" role="alert">{message}</p> }
}
