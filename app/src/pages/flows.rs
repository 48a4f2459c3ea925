//! The flows list: create, import, rename, export, delete, with each flow's
//! status and its error and warning counts.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use crate::api::{error_text, list_flows, CreateFlow, DeleteFlow, FlowSummary, RenameFlow};
use crate::pages::ErrorNote;

#[component]
pub fn FlowsPage() -> impl IntoView {
    let create = ServerAction::<CreateFlow>::new();
    let rename = ServerAction::<RenameFlow>::new();
    let delete = ServerAction::<DeleteFlow>::new();
    let imported = RwSignal::new(0u32);
    let import_error = RwSignal::new(None::<String>);
    let flows = Resource::new(
        move || (create.version().get(), rename.version().get(), delete.version().get(), imported.get()),
        |_| list_flows(),
    );

    let navigate = use_navigate();
    Effect::new(move || {
        if let Some(Ok(flow)) = create.value().get() {
            navigate(&format!("/flows/{}", flow.id), Default::default());
        }
    });


    view! {
        <Title text="Flows"/>
        <section class="page">
            <div class="page-head">
                <h1>"Flows"</h1>
                <div class="actions">
                    <ActionForm action=create attr:class="inline-form create-flow">
                        <input type="text" name="name" placeholder="New flow name" required aria-label="New flow name"/>
                        <button type="submit" class="primary">"Create flow"</button>
                    </ActionForm>
                    <label class="button import">
                        "Import JSON…"
                        <input type="file" accept=".json,application/json" class="visually-hidden"
                            on:change=move |ev| import_file(ev, imported, import_error)/>
                    </label>
                </div>
            </div>
            {move || failure(create.value().get()).map(|message| view! { <ErrorNote message/> })}
            {move || failure(rename.value().get()).map(|message| view! { <ErrorNote message/> })}
            {move || failure(delete.value().get()).map(|message| view! { <ErrorNote message/> })}
            {move || import_error.get().map(|message| view! { <ErrorNote message/> })}
            <crate::pages::dashboard::HomeDashboard/>
            <Transition fallback=|| view! { <p class="loading">"Loading flows…"</p> }>
                {move || Suspend::new(async move {
                    match flows.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No flows yet. Create one, or import a flow document."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <table class="flows">
                                <thead>
                                    <tr><th>"Name"</th><th>"Status"</th><th>"Errors"</th><th>"Warnings"</th><th>"Updated"</th><th></th></tr>
                                </thead>
                                <tbody>
                                    {list.into_iter().map(|flow| view! { <FlowRow flow rename delete/> }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                        Err(err) => view! { <ErrorNote message=error_text(&err)/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn FlowRow(flow: FlowSummary, rename: ServerAction<RenameFlow>, delete: ServerAction<DeleteFlow>) -> impl IntoView {
    let renaming = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let id = flow.id;
    let name = flow.name.clone();
    let warning = match flow.published_version.unwrap_or(0) {
        0 => format!("Delete “{}”? Its draft is removed for good.", flow.name),
        n => format!("Delete “{}”? Its draft and {n} published version(s) are removed for good.", flow.name),
    };
    view! {
        <tr data-flow=flow.name.clone()>
            <td class="name">
                {move || {
                    let name = name.clone();
                    if renaming.get() {
                        view! {
                            <ActionForm action=rename attr:class="inline-form" on:submit=move |_| renaming.set(false)>
                                <input type="hidden" name="id" value=id/>
                                <input type="text" name="name" value=name required aria-label="Flow name"/>
                                <button type="submit">"Save"</button>
                                <button type="button" on:click=move |_| renaming.set(false)>"Cancel"</button>
                            </ActionForm>
                        }.into_any()
                    } else {
                        view! { <a href=format!("/flows/{id}")>{name}</a> }.into_any()
                    }
                }}
            </td>
            <td class="status">{flow.status()}</td>
            <td class="errors" class:has={flow.errors > 0}>{flow.errors}</td>
            <td class="warnings" class:has={flow.warnings > 0}>{flow.warnings}</td>
            <td class="updated"><time datetime=flow.updated_at.clone()>{short_time(&flow.updated_at)}</time></td>
            <td class="row-actions">
                <button type="button" on:click=move |_| renaming.set(true)>"Rename"</button>
                <a class="button" href=format!("/flows/{id}/participants")>"Participants"</a>
                <a class="button" href=format!("/flows/{id}/report")>"Report"</a>
                <a class="button" href=format!("/api/v1/flows/{id}/export") download>"Export"</a>
                <button type="button" class="danger" on:click=move |_| confirming.set(true)>"Delete"</button>
                <Show when=move || confirming.get()>
                    <div class="confirm" role="alertdialog" aria-label="Confirm delete">
                        <p>{warning.clone()}</p>
                        <ActionForm action=delete attr:class="inline-form">
                            <input type="hidden" name="id" value=id/>
                            <button type="submit" class="danger">"Delete for good"</button>
                            <button type="button" on:click=move |_| confirming.set(false)>"Keep it"</button>
                        </ActionForm>
                    </div>
                </Show>
            </td>
        </tr>
    }
}

/// The message of a failed action, if the last run failed.
fn failure<T>(result: Option<Result<T, ServerFnError>>) -> Option<String> {
    result.and_then(Result::err).map(|err| error_text(&err))
}

/// `2026-11-22T12:14:46.123Z` as `2026-11-22 12:14 UTC`.
pub(crate) fn short_time(timestamp: &str) -> String {
    match timestamp.parse::<jiff::Timestamp>() {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => timestamp.to_owned(),
    }
}

/// Reads the chosen file in the browser and imports it.
fn import_file(ev: leptos::ev::Event, imported: RwSignal<u32>, error: RwSignal<Option<String>>) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
        input.set_value("");
        leptos::task::spawn_local(async move {
            let text = match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                Ok(text) => text.as_string().unwrap_or_default(),
                Err(_) => {
                    error.set(Some("The file could not be read.".into()));
                    return;
                }
            };
            match crate::api::import_flow(text).await {
                Ok(_) => {
                    error.set(None);
                    imported.update(|n| *n += 1);
                }
                Err(err) => error.set(Some(error_text(&err))),
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (ev, imported, error);
}
