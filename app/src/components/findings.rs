//! The findings panel: errors first, then warnings, live as the flow is
//! edited; choosing one selects (and shows) the step it concerns.

use leptos::prelude::*;

use crate::admin_api::Ack;
use crate::core::{Finding, Findings};

#[component]
pub fn FindingsPanel(
    findings: Signal<Findings>,
    selected: Signal<Option<String>>,
    on_choose: Callback<String>,
    /// Admins' acknowledgements: their notes show under the warnings.
    #[prop(optional)]
    acks: Vec<Ack>,
) -> impl IntoView {
    let row = move |finding: Finding, level: &'static str| {
        let ack = (level == "warning")
            .then(|| acks.iter().find(|a| Some(&a.step) == finding.step.as_ref() && a.code == finding.code.as_str()).cloned())
            .flatten();
        let step = finding.step.clone();
        let is_selected = {
            let step = step.clone();
            move || step.is_some() && selected.get() == step
        };
        view! {
            <li class=format!("finding {level}") class:selected=is_selected data-code=finding.code.as_str() data-step=finding.step.clone()>
                <button type="button" disabled=step.is_none() on:click=move |_| {
                    if let Some(step) = step.clone() {
                        on_choose.run(step);
                    }
                }>
                    <span class="code">{finding.code.as_str()}</span>
                    <span class="message">{finding.message.clone()}</span>
                </button>
                {ack.map(|ack| view! {
                    <p class="ack">"Acknowledged by " {ack.by} ": " <q>{ack.note}</q></p>
                })}
            </li>
        }
    };
    view! {
        <aside class="findings" aria-label="Findings">
            <h2>
                "Findings "
                <span class="count error">{move || findings.with(|f| f.errors.len())} " errors"</span>
                <span class="count warning">{move || findings.with(|f| f.warnings.len())} " warnings"</span>
            </h2>
            {move || findings.with(|f| {
                if f.errors.is_empty() && f.warnings.is_empty() {
                    view! { <p class="empty">"No problems found. This flow can be published."</p> }.into_any()
                } else if !f.errors.is_empty() {
                    view! { <p class="notice">"Errors block publishing; the draft can still be saved."</p> }.into_any()
                } else {
                    ().into_any()
                }
            })}
            <ul>
                {move || {
                    let f = findings.get();
                    let errors = f.errors.into_iter().map(|finding| row(finding, "error")).collect_view();
                    let warnings = f.warnings.into_iter().map(|finding| row(finding, "warning")).collect_view();
                    view! { {errors}{warnings} }
                }}
            </ul>
        </aside>
    }
    .into_any()
}
