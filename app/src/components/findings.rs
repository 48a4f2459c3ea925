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
    // A row asks whether its own step is the one selected, and wakes only
    // when that answer changes: a big flow lists hundreds of findings.
    let selection = Selector::new(move || selected.get());
    let row = move |(level, finding, _): (&'static str, Finding, usize)| {
        let ack = (level == "warning")
            .then(|| acks.iter().find(|a| Some(&a.step) == finding.step.as_ref() && a.code == finding.code.as_str()).cloned())
            .flatten();
        let step = finding.step.clone();
        let is_selected = {
            let (step, selection) = (step.clone(), selection.clone());
            move || step.is_some() && selection.selected(&step)
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
    // Each row keyed by its finding (and, for a finding listed twice, which
    // copy it is, so keys stay unique).
    let rows = move || {
        findings.with(|f| {
            let mut seen = std::collections::HashMap::new();
            let errors = f.errors.iter().map(|finding| ("error", finding));
            let warnings = f.warnings.iter().map(|finding| ("warning", finding));
            errors
                .chain(warnings)
                .map(|(level, finding)| {
                    let copy = seen.entry((level, finding)).or_insert(0_usize);
                    *copy += 1;
                    (level, finding.clone(), *copy)
                })
                .collect::<Vec<_>>()
        })
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
            // Keyed rows: an edit that leaves a finding as it was leaves its
            // row as it was.
            <ul>
                <For each=rows key=|row| row.clone() children=row/>
            </ul>
        </aside>
    }
    .into_any()
}
