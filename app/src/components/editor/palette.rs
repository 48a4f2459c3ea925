//! The palette: every step kind, grouped as FLOW_FORMAT.md groups them and
//! searchable. Drag a kind onto the canvas, or press Enter on it to add it
//! in the middle of the view.

use leptos::prelude::*;

use super::canvas::client_point;
use super::state::{EditorState, Gesture};
use crate::core::editor::{new_step, Change};
use crate::core::flow::Position;
use crate::core::geometry::{Point, NODE_HEIGHT, NODE_WIDTH};
use crate::core::kinds::{KindGroup, StepKind};

/// Does `kind` match what was typed in the search box?
pub fn matches(kind: &StepKind, query: &str) -> bool {
    let query = query.trim().to_lowercase();
    query.is_empty()
        || kind.label().to_lowercase().contains(&query)
        || kind.as_str().replace('_', " ").contains(&query)
        || kind.group().label().to_lowercase().contains(&query)
}

#[component]
pub fn Palette(state: EditorState) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let groups = KindGroup::ALL
        .into_iter()
        .map(|group| {
            let kinds: Vec<StepKind> = StepKind::ALL.iter().filter(|k| k.group() == group).cloned().collect();
            let any_shown = {
                let kinds = kinds.clone();
                move || query.with(|q| kinds.iter().any(|k| matches(k, q)))
            };
            let items = kinds
                .into_iter()
                .map(|kind| {
                    let shown = {
                        let kind = kind.clone();
                        move || query.with(|q| matches(&kind, q))
                    };
                    let grab = {
                        let kind = kind.clone();
                        move |ev: leptos::ev::PointerEvent| {
                            if ev.button() != 0 {
                                return;
                            }
                            ev.prevent_default();
                            state.gesture.set(Some(Gesture::Place { kind: kind.clone(), client: client_point(&ev) }));
                        }
                    };
                    // A click from the keyboard (detail 0) adds the step in
                    // the middle of the view; a pointer drag places it.
                    let add = {
                        let kind = kind.clone();
                        move |ev: leptos::ev::MouseEvent| {
                            if ev.detail() == 0 {
                                add_in_view(state, kind.clone());
                            }
                        }
                    };
                    view! {
                        <li class:hidden=move || !shown()>
                            <button type="button" class="palette-item" data-kind=kind.as_str().to_owned()
                                title=format!("Drag onto the canvas to add a {} step", kind.label())
                                on:pointerdown=grab on:click=add>
                                <span class="icon">{kind.icon()}</span>
                                {kind.label()}
                            </button>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <section class="palette-group" class:hidden=move || !any_shown()>
                    <h3>{group.label()}</h3>
                    <ul>{items}</ul>
                </section>
            }
        })
        .collect_view();
    view! {
        <nav class="palette" aria-label="Step palette">
            <input type="search" class="palette-search" placeholder="Search steps…" aria-label="Search steps"
                prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev))/>
            {groups}
            <p class="empty" class:hidden=move || query.with(|q| StepKind::ALL.iter().any(|k| matches(k, q)))>
                "No step matches."
            </p>
        </nav>
    }
    .into_any()
}

/// Adds a step of `kind` in the middle of the visible canvas.
pub fn add_in_view(state: EditorState, kind: StepKind) {
    let (w, h) = state.canvas_size.get_untracked();
    let centre = state.viewport.get_untracked().to_canvas(Point { x: w / 2.0, y: h / 2.0 });
    let corner = Position { x: centre.x - NODE_WIDTH / 2.0, y: centre.y - NODE_HEIGHT / 2.0 };
    let step = state.doc.with_untracked(|doc| new_step(doc, kind, corner));
    let id = step.id.clone();
    if state.change(Change::AddSteps { steps: vec![step], edges: vec![] }) {
        state.select_only(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_matches_labels_kind_names_and_groups() {
        assert!(matches(&StepKind::SendSms, ""));
        assert!(matches(&StepKind::SendSms, "sms"));
        assert!(matches(&StepKind::NotifySms, " SMS "));
        assert!(matches(&StepKind::GoToFlow, "go to"));
        assert!(matches(&StepKind::Webhook, "integrations"));
        assert!(!matches(&StepKind::Wait, "email"));
        let found: Vec<&str> = StepKind::ALL.iter().filter(|k| matches(k, "list")).map(|k| k.as_str()).collect();
        assert_eq!(found, ["add_to_list", "remove_from_list"]);
    }
}
