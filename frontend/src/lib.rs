#![recursion_limit = "256"]
//! The browser entry point. It only hydrates the server-rendered page; every
//! component and all domain logic live in `app`. Hydration is asynchronous:
//! each page's code is a lazily loaded wasm chunk, fetched (the server
//! preloads it) before that page hydrates.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_lazy(app::App);
}
