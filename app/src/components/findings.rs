//! The findings panel: errors first, then warnings; choosing one selects the
//! step it concerns.

use leptos::prelude::*;

use crate::core::{Finding, Findings};

#[component]
pub fn FindingsPanel(findings: Findings, selected: RwSignal<Option<String>>) -> impl IntoView {
    let total = findings.errors.len() + findings.warnings.len();
    let row = move |finding: Finding, level: &'static str| {
        let step = finding.step.clone();
        let is_selected = {
            let step = step.clone();
            move || step.is_some() && selected.get() == step
        };
        view! {
            <li class=format!("finding {level}") class:selected=is_selected data-code=finding.code.as_str() data-step=finding.step.clone()>
                <button type="button" on:click=move |_| {
                    if let Some(step) = step.clone() {
                        selected.set(Some(step.clone()));
                        scroll_to_step(&step);
                    }
                }>
                    <span class="code">{finding.code.as_str()}</span>
                    <span class="message">{finding.message.clone()}</span>
                </button>
            </li>
        }
    };
    let errors = findings.errors.iter().cloned().map(|f| row(f, "error")).collect_view();
    let warnings = findings.warnings.iter().cloned().map(|f| row(f, "warning")).collect_view();
    view! {
        <aside class="findings" aria-label="Findings">
            <h2>
                "Findings "
                <span class="count error">{findings.errors.len()} " errors"</span>
                <span class="count warning">{findings.warnings.len()} " warnings"</span>
            </h2>
            {(total == 0).then(|| view! { <p class="empty">"No problems found. This flow can be published."</p> })}
            {(!findings.errors.is_empty()).then(|| view! {
                <p class="notice">"Errors block publishing; the draft can still be saved."</p>
            })}
            <ul>{errors}{warnings}</ul>
        </aside>
    }
}

/// Brings a step into view on the canvas (browser only).
fn scroll_to_step(step: &str) {
    #[cfg(feature = "hydrate")]
    {
        let selector = format!("g.step[data-step=\"{}\"]", step.replace('\\', "\\\\").replace('"', "\\\""));
        if let Some(element) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(&selector).ok().flatten())
        {
            let options = web_sys::ScrollIntoViewOptions::new();
            options.set_behavior(web_sys::ScrollBehavior::Smooth);
            options.set_block(web_sys::ScrollLogicalPosition::Center);
            element.scroll_into_view_with_scroll_into_view_options(&options);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = step;
}
