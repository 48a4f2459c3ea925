//! The flow drawn read-only as SVG from the document's positions: steps with
//! their kind's icon and name, bezier wires labelled with their port, and a
//! badge on every step the validator has something to say about.

use std::collections::HashMap;

use leptos::prelude::*;

use crate::core::flow::Position;
use crate::core::geometry::{bounds, edge_midpoint, edge_path, input_point, num, output_point, NODE_HEIGHT, NODE_WIDTH};
use crate::core::kinds::ports;
use crate::core::{FlowDocument, Findings, Level};

/// Where a step is drawn: its own position, or a grid slot for documents
/// written without positions.
pub fn placed(doc: &FlowDocument) -> HashMap<&str, Position> {
    doc.steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let slot = Position { x: 40.0 + (i % 5) as f64 * 240.0, y: 40.0 + (i / 5) as f64 * 120.0 };
            (step.id.as_str(), step.position.unwrap_or(slot))
        })
        .collect()
}

#[component]
pub fn FlowGraph(document: FlowDocument, findings: Findings, selected: RwSignal<Option<String>>) -> impl IntoView {
    let at = placed(&document);
    let (x, y, width, height) = bounds(at.values().copied(), 40.0);
    let view_box = format!("{} {} {} {}", num(x), num(y), num(width), num(height));

    let wires = document
        .edges
        .iter()
        .filter_map(|edge| {
            let from_step = document.step(&edge.from)?;
            let to = *at.get(edge.to.as_str())?;
            let outputs = ports(from_step);
            let index = outputs.iter().position(|port| *port == edge.port).unwrap_or(0);
            let start = output_point(at[edge.from.as_str()], index, outputs.len().max(1));
            let end = input_point(to);
            let mid = edge_midpoint(start, end);
            let label = (edge.port != "next").then(|| edge.port.clone());
            Some(view! {
                <g class="wire" data-from=edge.from.clone() data-port=edge.port.clone() data-to=edge.to.clone()>
                    <path d=edge_path(start, end) marker-end="url(#arrow)"/>
                    {label.map(|label| view! {
                        <text class="port-label" x=num(mid.x) y=num(mid.y - 4.0) text-anchor="middle">{label}</text>
                    })}
                </g>
            })
        })
        .collect_view();

    let nodes = document
        .steps
        .iter()
        .map(|step| {
            let position = at[step.id.as_str()];
            let level = findings.for_step(&step.id).map(|f| f.code.level()).min_by_key(|level| *level != Level::Error);
            let badge = level.map(|level| {
                let (class, mark) = match level {
                    Level::Error => ("badge error", "!"),
                    Level::Warning => ("badge warning", "⚠"),
                };
                view! {
                    <g class=class>
                        <circle cx=num(NODE_WIDTH - 4.0) cy="4" r="10"/>
                        <text x=num(NODE_WIDTH - 4.0) y="8.5" text-anchor="middle">{mark}</text>
                    </g>
                }
            });
            let id = step.id.clone();
            let is_selected = {
                let id = id.clone();
                move || selected.get().as_deref() == Some(id.as_str())
            };
            let output_dots = {
                let outputs = ports(step);
                let count = outputs.len();
                (0..count)
                    .map(|i| {
                        let p = output_point(Position { x: 0.0, y: 0.0 }, i, count);
                        view! { <circle class="port" cx=num(p.x) cy=num(p.y) r="4"/> }
                    })
                    .collect_view()
            };
            let name = truncate(step.display_name(), 22);
            view! {
                <g
                    class="step"
                    class:selected=is_selected
                    data-step=id.clone()
                    data-kind=step.kind.as_str().to_owned()
                    transform=format!("translate({} {})", num(position.x), num(position.y))
                    on:click=move |_| selected.set(Some(id.clone()))
                >
                    <title>{format!("{} — {}", step.display_name(), step.kind.label())}</title>
                    <rect class=format!("card group-{:?}", step.kind.group()).to_lowercase() width=num(NODE_WIDTH) height=num(NODE_HEIGHT) rx="10"/>
                    <text class="icon" x="22" y="34" text-anchor="middle">{step.kind.icon()}</text>
                    <text class="name" x="42" y="25">{name}</text>
                    <text class="kind" x="42" y="42">{step.kind.label()}</text>
                    <circle class="port input" cx="0" cy=num(NODE_HEIGHT / 2.0) r="4"/>
                    {output_dots}
                    {badge}
                </g>
            }
        })
        .collect_view();

    view! {
        // Drawn at natural size: the canvas scrolls rather than shrinking text.
        <svg class="flow-graph" viewBox=view_box width=num(width) height=num(height) role="img" aria-label="Flow diagram">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                    <path d="M0 0 L10 5 L0 10 z"/>
                </marker>
            </defs>
            <g class="wires">{wires}</g>
            <g class="steps">{nodes}</g>
        </svg>
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}
