//! Waymark's shared crate: the pure flow core, and the Leptos pages and
//! server functions that render it (SSR on the server, hydrated in the
//! browser).

pub mod core;
