//! Sign in, and the one-time set-up of the first admin. Both are plain
//! forms posted to the server, so they work before the page hydrates.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::admin_api::setup_needed;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_else(|| "/".into());
    let error = move || query.read().get("error").is_some();
    let signed_out = move || query.read().get("signed_out").is_some();
    let setup = Resource::new(|| (), |_| setup_needed());

    view! {
        <Title text="Sign in"/>
        <section class="page narrow">
            <h1>"Sign in to Waymark"</h1>
            {move || error().then(|| view! {
                <p class="notice error" role="alert">"That email and password do not match an active user."</p>
            })}
            {move || signed_out().then(|| view! { <p class="notice">"You are signed out."</p> })}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    setup.await.unwrap_or(false).then(|| view! {
                        <p class="notice">"Waymark has no admin yet. " <a href="/setup">"Set it up"</a> " first."</p>
                    })
                })}
            </Suspense>
            <form class="stack" method="post" action="/auth/login">
                <input type="hidden" name="next" value=next/>
                <label>"Email" <input type="email" name="email" autocomplete="username" required/></label>
                <label>"Password" <input type="password" name="password" autocomplete="current-password" required/></label>
                <button type="submit" class="primary">"Sign in"</button>
            </form>
        </section>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let setup = Resource::new(|| (), |_| setup_needed());
    let query = use_query_map();
    let error = move || query.read().get("error");
    view! {
        <Title text="Set up"/>
        <section class="page narrow">
            <h1>"Set up Waymark"</h1>
            {move || error().map(|message| view! { <p class="notice error" role="alert">{message}</p> })}
            <Suspense fallback=|| view! { <p class="loading">"Checking…"</p> }>
                {move || Suspend::new(async move {
                    if !setup.await.unwrap_or(false) {
                        return view! {
                            <p class="notice">"Waymark is set up: it has an admin. " <a href="/login">"Sign in"</a> "."</p>
                        }.into_any();
                    }
                    view! {
                        <p>"Create the first admin. Admins then add marketers and agents from the Users page."</p>
                        <form class="stack" method="post" action="/auth/setup">
                            <label>"Your name" <input name="name" autocomplete="name"/></label>
                            <label>"Email" <input type="email" name="email" autocomplete="username" required/></label>
                            <label>"Password (10 characters or more)"
                                <input type="password" name="password" autocomplete="new-password" minlength="10" required/>
                            </label>
                            <label>"Password again" <input type="password" name="confirm" autocomplete="new-password" minlength="10" required/></label>
                            <button type="submit" class="primary">"Create the admin"</button>
                        </form>
                    }.into_any()
                })}
            </Suspense>
        </section>
    }
}
