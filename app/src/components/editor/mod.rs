//! The flow editor: palette, canvas, inspector and findings around one
//! [`EditorState`]. Pointer and key handlers only produce
//! [`Change`](crate::core::editor::Change)s; the pure core applies them and
//! keeps the undo history. Drafts save themselves shortly after each edit.

mod canvas;
mod inspector;
mod palette;
mod state;

use leptos::prelude::*;

pub use state::{EditorState, SaveState};

use crate::api::{publish_flow, save_draft, DraftError};
use crate::components::findings::FindingsPanel;
use crate::components::test_run::TestRunPanel;
use crate::core::editor::{auto_layout, copies, move_by, positions, Change, Viewport, GRID};
use crate::core::export::flow_svg;
use crate::core::flow::{Edge, FlowDocument, Step};
use crate::core::geometry::{bounds, Point, NODE_HEIGHT, NODE_WIDTH};
use canvas::{Canvas, Minimap};
use inspector::Inspector;
use palette::Palette;
use state::Gesture;

/// How long after the last edit a draft is saved.
const AUTOSAVE_AFTER_MS: u64 = 700;

#[component]
pub fn Editor(
    flow_id: i64,
    document: FlowDocument,
    revision: i64,
    select: Option<String>,
    /// The server's findings at load: they include links to other flows.
    #[prop(optional)]
    findings: Option<crate::core::Findings>,
    /// Admins' acknowledgements of warnings, shown beside them.
    #[prop(optional)]
    acks: Vec<crate::admin_api::Ack>,
) -> impl IntoView {
    let name = document.name.clone();
    let state = EditorState::new(flow_id, document, revision);
    if let Some(findings) = findings {
        state.server_findings.set(findings.errors.into_iter().chain(findings.warnings).collect());
    }
    // Participant counts per step: loaded in the browser only (the page
    // renders the same with or without them), refreshed every 15 seconds.
    let counts = LocalResource::new(move || crate::runtime_api::step_counts(flow_id));
    Effect::new(move || {
        if let Some(Ok(rows)) = counts.get() {
            state.counts.set(rows.into_iter().map(|c| (c.step.clone(), c)).collect());
        }
    });
    #[cfg(feature = "hydrate")]
    {
        let refresh = leptos::prelude::set_interval_with_handle(move || counts.refetch(), std::time::Duration::from_secs(15)).ok();
        on_cleanup(move || {
            if let Some(handle) = refresh {
                handle.clear();
            }
        });
    }
    let surface = canvas::Surface::new();
    let space_held = RwSignal::new(false);
    let published = RwSignal::new(None::<Result<String, String>>);

    if let Some(step) = select.filter(|id| state.doc.with_untracked(|d| d.step(id).is_some())) {
        state.selected.set(vec![step]);
    }

    autosave(state);
    save_on_leave(state);
    #[cfg(feature = "hydrate")]
    browser::listen(state, surface, space_held);

    let zoom = move |factor: f64| {
        let (w, h) = state.canvas_size.get_untracked();
        state.viewport.update(|view| *view = view.zoom_around(Point { x: w / 2.0, y: h / 2.0 }, factor));
    };
    let error_count = move || state.findings.with(|f| f.errors.len());
    let publish_blocked = move || -> Option<String> {
        let errors = error_count();
        if errors > 0 {
            return Some(format!(
                "Fix the {errors} error{} listed under Findings to publish.",
                if errors == 1 { "" } else { "s" }
            ));
        }
        match state.save.get() {
            SaveState::Saved => None,
            SaveState::Stale(_) => Some("Reload the flow before publishing.".into()),
            _ => Some("Saving first…".into()),
        }
    };
    let publish = move |_| {
        let revision = state.revision.get_untracked();
        leptos::task::spawn_local(async move {
            published.set(Some(match publish_flow(flow_id, revision).await {
                Ok(number) => Ok(format!("Published as version {number}.")),
                Err(DraftError::Stale(message)) => {
                    state.save.set(SaveState::Stale(message.clone()));
                    Err(message)
                }
                Err(err) => Err(err.to_string()),
            }));
        });
    };
    let can_delete = move || state.selected.with(|s| !s.is_empty()) || state.selected_edge.with(Option::is_some);

    view! {
        // Only a step dragged from the palette marks the whole editor: the
        // pointer roams over all of it. The classes of gestures on the canvas
        // sit on the canvas, where they restyle nothing but its pane.
        <div class="editor" class:dragging=move || state.gesture.with(|g| matches!(g, Some(Gesture::Place { .. })))>
            <div class="toolbar" role="toolbar" aria-label="Editor">
                <button type="button" title="Undo (Ctrl/Cmd+Z)" aria-label="Undo" disabled=move || !state.history.with(|h| h.can_undo())
                    on:click=move |_| state.undo()>"↶ Undo"</button>
                <button type="button" title="Redo (Shift+Ctrl/Cmd+Z)" aria-label="Redo" disabled=move || !state.history.with(|h| h.can_redo())
                    on:click=move |_| state.redo()>"↷ Redo"</button>
                <span class="sep"></span>
                <button type="button" aria-label="Zoom out" title="Zoom out (-)" on:click=move |_| zoom(1.0 / 1.2)>"−"</button>
                <span class="zoom" aria-label="Zoom">{move || format!("{:.0}%", state.viewport.get().zoom * 100.0)}</span>
                <button type="button" aria-label="Zoom in" title="Zoom in (+)" on:click=move |_| zoom(1.2)>"+"</button>
                <button type="button" title="Fit the flow in view (0)" on:click=move |_| fit_view(state)>"Fit"</button>
                <button type="button" title="Arrange the steps left to right (undoable)" on:click=move |_| {
                    let change = state.doc.with_untracked(auto_layout);
                    if state.change(change) { fit_view(state); }
                }>"Auto-layout"</button>
                <span class="sep"></span>
                <button type="button" title="Duplicate (Ctrl/Cmd+D)" disabled=move || state.selected.with(Vec::is_empty)
                    on:click=move |_| duplicate(state)>"Duplicate"</button>
                <button type="button" class="danger" title="Delete (Delete key)" disabled=move || !can_delete()
                    on:click=move |_| state.delete_selection()>"Delete"</button>
                <span class="sep"></span>
                <a class="button" href="#" download=format!("{}.waymark.json", file_name(&name))
                    on:click=move |ev| set_download(&ev, "application/json", &state.doc.with_untracked(FlowDocument::to_canonical_json))>
                    "Export JSON"</a>
                <a class="button" href="#" download=format!("{}.svg", file_name(&name))
                    on:click=move |ev| set_download(&ev, "image/svg+xml", &state.doc.with_untracked(|d| flow_svg(d, &state.findings.get_untracked())))>
                    "Export SVG"</a>
                <button type="button" title="Keyboard shortcuts (?)" on:click=move |_| state.help_open.update(|open| *open = !*open)>"?"</button>
                <span class="grow"></span>
                <SaveStatus state/>
                {move || (error_count() > 0).then(|| {
                    let errors = error_count();
                    view! { <span class="publish-why">{format!("Fix {errors} error{} to publish", if errors == 1 { "" } else { "s" })}</span> }
                })}
                <button type="button" class="primary publish" disabled=move || publish_blocked().is_some()
                    title=move || publish_blocked().unwrap_or_else(|| "Freeze this draft as the next published version".into())
                    on:click=publish>"Publish"</button>
            </div>
            {move || published.get().map(|result| match result {
                Ok(message) => view! { <p class="notice ok" role="status">{message}</p> }.into_any(),
                Err(message) => view! { <p class="notice error" role="alert">{message}</p> }.into_any(),
            })}
            <StaleBanner state/>
            <div class="editor-body">
                <Palette state/>
                <div class="canvas-wrap">
                    <Canvas state surface space_held/>
                    <Minimap state/>
                    {move || state.notice.get().map(|message| view! {
                        <p class="canvas-notice" role="alert">
                            {message}
                            <button type="button" class="close" aria-label="Dismiss" on:click=move |_| state.notice.set(None)>"×"</button>
                        </p>
                    })}
                </div>
                <div class="side">
                    <Inspector state/>
                    <FindingsPanel findings=Signal::from(state.findings) acks=acks.clone() selected=Signal::derive(move || state.single_selected())
                        on_choose=Callback::new(move |step: String| choose_step(state, &step))/>
                </div>
            </div>
            // Read only when a run starts: the draft as it is on screen, saved or not.
            <TestRunPanel document=Signal::derive(move || state.doc.with(FlowDocument::to_canonical_json))
                message_steps=Memo::new(move |_| state.doc.with(|doc| {
                    doc.steps
                        .iter()
                        .filter(|s| matches!(s.kind, crate::core::StepKind::SendEmail | crate::core::StepKind::SendSms))
                        .map(|s| (s.id.clone(), format!("{} ({})", s.display_name(), s.id)))
                        .collect::<Vec<_>>()
                }))/>
            {move || match state.gesture.get() {
                Some(Gesture::Place { kind, client }) => Some(view! {
                    <div class="palette-ghost" style=format!("left: {}px; top: {}px", client.x, client.y)>
                        <span class="icon">{kind.icon()}</span> {kind.label()}
                    </div>
                }),
                _ => None,
            }}
            <Show when=move || state.help_open.get()>
                <HelpOverlay state/>
            </Show>
        </div>
    }
    .into_any()
}

#[component]
fn SaveStatus(state: EditorState) -> impl IntoView {
    move || match state.save.get() {
        SaveState::Saved => view! { <span class="save-status saved" role="status">"✓ Saved"</span> }.into_any(),
        SaveState::Unsaved => view! { <span class="save-status unsaved" role="status">"Unsaved changes"</span> }.into_any(),
        SaveState::Saving => view! { <span class="save-status saving" role="status">"Saving…"</span> }.into_any(),
        SaveState::Failed(message) => view! {
            <span class="save-status failed" role="alert" title=message.clone()>"Save failed: " {message.clone()}</span>
            <button type="button" on:click=move |_| save_now(state)>"Retry"</button>
        }
        .into_any(),
        SaveState::Stale(_) => view! { <span class="save-status failed" role="status">"Not saved"</span> }.into_any(),
    }
    .into_any()
}

/// Another tab saved first: say so, keep the work here, offer the choices.
#[component]
fn StaleBanner(state: EditorState) -> impl IntoView {
    move || match state.save.get() {
        SaveState::Stale(detail) => Some(view! {
            <div class="notice error stale" role="alert">
                <strong>"This flow was changed in another tab."</strong>
                " Your changes here were not saved and are still on screen. "
                <span class="detail">{detail}</span>
                <div class="actions">
                    <a class="button" href="#" download="my-version.waymark.json"
                        on:click=move |ev| set_download(&ev, "application/json", &state.doc.with_untracked(FlowDocument::to_canonical_json))>
                        "Download my version"</a>
                    <button type="button" class="primary" on:click=move |_| reload(state)>"Reload the saved flow"</button>
                </div>
            </div>
        }),
        _ => None,
    }
    .into_any()
}

#[component]
fn HelpOverlay(state: EditorState) -> impl IntoView {
    const KEYS: &[(&str, &str)] = &[
        ("Drag from the palette", "add a step where you drop it (Enter on a palette item adds it mid-view)"),
        ("Drag from an output dot", "connect to the step you drop on"),
        ("Click, Shift+click, Shift+drag", "select a step, add to the selection, select with a box"),
        ("Tab / Shift+Tab", "select the next / previous step"),
        ("Arrow keys (Shift: further)", "move the selected steps"),
        ("Delete or Backspace", "delete the selection, with its wires"),
        ("Ctrl/Cmd+Z, Shift+Ctrl/Cmd+Z", "undo, redo"),
        ("Ctrl/Cmd+C, V, D, A", "copy, paste, duplicate, select all"),
        ("Drag the background, Space+drag", "pan"),
        ("Click the minimap, or its arrow keys", "move the view there, or a quarter of the canvas (Shift: a whole one)"),
        ("Wheel or pinch, + and −", "zoom around the pointer, zoom in and out"),
        ("0", "fit the flow in view"),
        ("?", "show or hide this help"),
        ("Escape", "cancel, clear the selection"),
    ];
    view! {
        <div class="help-overlay" role="dialog" aria-label="Keyboard shortcuts" on:click=move |_| state.help_open.set(false)>
            <div class="help-card" on:click=|ev| ev.stop_propagation()>
                <h2>"Keyboard and mouse"</h2>
                <dl>{KEYS.iter().map(|(keys, what)| view! { <dt>{*keys}</dt><dd>{*what}</dd> }).collect_view()}</dl>
                <button type="button" on:click=move |_| state.help_open.set(false)>"Close"</button>
            </div>
        </div>
    }
    .into_any()
}

/// Selects a step and brings it to the middle of the view.
pub fn choose_step(state: EditorState, id: &str) {
    let at = state.doc.with_untracked(|doc| positions(doc).get(id).copied());
    let Some(at) = at else { return };
    state.select_only(id);
    let (w, h) = state.canvas_size.get_untracked();
    let centre = Point { x: at.x + NODE_WIDTH / 2.0, y: at.y + NODE_HEIGHT / 2.0 };
    state.viewport.update(|view| *view = view.centre_on(centre, w, h));
}

pub fn fit_view(state: EditorState) {
    let area = state.doc.with_untracked(|doc| bounds(positions(doc).into_values(), 40.0));
    let (w, h) = state.canvas_size.get_untracked();
    state.viewport.set(Viewport::fit(area, w, h));
}

fn selection(state: EditorState) -> (Vec<Step>, Vec<Edge>) {
    let ids = state.selected.get_untracked();
    state.doc.with_untracked(|doc| {
        let steps = doc.steps.iter().filter(|s| ids.contains(&s.id)).cloned().collect();
        let edges = doc.edges.iter().filter(|e| ids.contains(&e.from) && ids.contains(&e.to)).cloned().collect();
        (steps, edges)
    })
}

fn add_copies(state: EditorState, steps: &[Step], edges: &[Edge]) {
    if steps.is_empty() {
        return;
    }
    let change = state.doc.with_untracked(|doc| copies(doc, steps, edges, (2.0 * GRID, 2.0 * GRID)));
    let new_ids = match &change {
        Change::AddSteps { steps, .. } => steps.iter().map(|s| s.id.clone()).collect(),
        _ => Vec::new(),
    };
    if state.change(change) {
        state.selected.set(new_ids);
        state.selected_edge.set(None);
    }
}

pub fn duplicate(state: EditorState) {
    let (steps, edges) = selection(state);
    add_copies(state, &steps, &edges);
}

pub fn copy(state: EditorState) {
    let picked = selection(state);
    if !picked.0.is_empty() {
        state.clipboard.set_value(Some(picked));
    }
}

pub fn paste(state: EditorState) {
    if let Some((steps, edges)) = state.clipboard.get_value() {
        add_copies(state, &steps, &edges);
        // The next paste lands a little further on, from these copies.
        state.clipboard.set_value(Some(selection(state)));
    }
}

pub fn nudge(state: EditorState, dx: f64, dy: f64) {
    let ids = state.selected.get_untracked();
    if ids.is_empty() {
        return;
    }
    let change = state.doc.with_untracked(|doc| move_by(doc, &ids, dx, dy));
    state.change(change);
}

/// Saves shortly after the last edit, and again if edits came in while a
/// save was on its way.
fn autosave(state: EditorState) {
    Effect::new(move |_| {
        let edits = state.edits.get();
        if edits == 0 {
            return;
        }
        if !matches!(state.save.get_untracked(), SaveState::Stale(_) | SaveState::Saving) {
            state.save.set(SaveState::Unsaved);
        }
        set_timeout(
            move || {
                // `try_`: the editor may have been left in the meantime.
                if state.edits.try_get_untracked() == Some(edits) {
                    save_now(state);
                }
            },
            std::time::Duration::from_millis(AUTOSAVE_AFTER_MS),
        );
    });
}

/// Leaving the editor inside the app (a link, the back button) does not
/// fire `beforeunload`; an edit still waiting for its autosave is sent on
/// the way out instead of being dropped.
fn save_on_leave(state: EditorState) {
    on_cleanup(move || {
        let pending = state.save.try_with_untracked(|save| matches!(save, SaveState::Unsaved | SaveState::Failed(_)));
        let in_flight = state.save.try_with_untracked(|save| matches!(save, SaveState::Saving));
        let json = state.doc.try_with_untracked(FlowDocument::to_canonical_json);
        let revision = state.revision.try_get_untracked();
        if let (Some(true), Some(json)) = (in_flight, json.clone()) {
            // A save is on its way with an older revision: hand the latest
            // document to it, to send once it knows the next revision.
            LEFT_BEHIND.with(|left| *left.borrow_mut() = Some((state.flow_id, json)));
            return;
        }
        if let (Some(true), Some(json), Some(revision)) = (pending, json, revision) {
            let flow_id = state.flow_id;
            // Nothing on screen is left to report to; the next visit shows
            // whatever the server kept.
            leptos::task::spawn_local(async move {
                let _ = save_draft(flow_id, revision, json).await;
            });
        }
    });
}

thread_local! {
    /// The draft as it was when the editor was left during a save: sent by
    /// that save when it returns, with the revision it was given.
    static LEFT_BEHIND: std::cell::RefCell<Option<(i64, String)>> = const { std::cell::RefCell::new(None) };
}

/// Saves the draft now, unless a save is under way (it saves again when it
/// ends) or another tab's save made this one stale.
pub fn save_now(state: EditorState) {
    if matches!(state.save.get_untracked(), SaveState::Saving | SaveState::Stale(_)) {
        return;
    }
    let edits = state.edits.get_untracked();
    let json = state.doc.with_untracked(FlowDocument::to_canonical_json);
    let revision = state.revision.get_untracked();
    state.save.set(SaveState::Saving);
    leptos::task::spawn_local(async move {
        let result = save_draft(state.flow_id, revision, json).await;
        // The editor may have been left while the save was on its way: then
        // send what was on screen when it was left.
        let Some(edits_now) = state.edits.try_get_untracked() else {
            let left = LEFT_BEHIND.with(|left| left.borrow_mut().take());
            if let (Ok(saved), Some((flow, json))) = (&result, left) {
                if flow == state.flow_id {
                    let _ = save_draft(flow, saved.revision, json).await;
                }
            }
            return;
        };
        match result {
            Ok(saved) => {
                state.revision.set(saved.revision);
                state.server_findings.set(saved.findings.errors.into_iter().chain(saved.findings.warnings).collect());
                if edits_now == edits {
                    state.save.set(SaveState::Saved);
                } else {
                    state.save.set(SaveState::Unsaved);
                    save_now(state);
                }
            }
            Err(DraftError::Stale(message)) => state.save.set(SaveState::Stale(message)),
            Err(err) => state.save.set(SaveState::Failed(err.to_string())),
        }
    });
}

/// Loads the saved flow again, dropping what is on screen (the marketer
/// chose this, after being offered a download).
fn reload(state: EditorState) {
    state.save.set(SaveState::Saved); // no "leave the page?" prompt now
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().reload();
    }
}

fn file_name(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "flow".into()
    } else {
        trimmed.to_lowercase()
    }
}

/// Points the clicked download link at `text` just before the browser
/// follows it.
fn set_download(ev: &leptos::ev::MouseEvent, mime: &str, text: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let url = format!("data:{mime};charset=utf-8,{}", String::from(js_sys::encode_uri_component(text)));
        if let Some(link) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
            let _ = link.set_attribute("href", &url);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (ev, mime, text);
}

/// The window-wide listeners: pointer moves and releases end gestures
/// wherever the pointer goes, keys are shortcuts, and leaving with unsaved
/// work asks first.
#[cfg(feature = "hydrate")]
mod browser {
    use leptos::ev;
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;

    use super::canvas::{canvas_rect, client_point, end_gesture, follow_gesture, follow_touch, lift_touch};
    use super::*;

    pub fn listen(state: EditorState, surface: super::canvas::Surface, space_held: RwSignal<bool>) {
        let measure = move || {
            let (_, _, w, h) = canvas_rect(&surface);
            if w > 0.0 {
                state.canvas_size.set((w, h));
            }
        };
        // Once mounted: measure, and open the flow readable.
        Effect::new(move |_| {
            // Only the canvas appearing runs this again; what it reads and
            // sets below must not (selecting would re-run it, forever).
            if surface.get().is_some() {
                untrack(|| open_view(state, measure));
            }
        });
        let handles = [
            window_event_listener(ev::resize, move |_| measure()),
            window_event_listener(ev::pointermove, move |ev| {
                if follow_touch(state, ev.pointer_id(), client_point(&ev)) {
                    return;
                }
                if state.gesture.with_untracked(Option::is_some) {
                    follow_gesture(state, &surface, client_point(&ev));
                }
            }),
            window_event_listener(ev::pointerup, move |ev| {
                if !lift_touch(state, ev.pointer_id()) {
                    end_gesture(state, &surface, client_point(&ev))
                }
            }),
            window_event_listener(ev::pointercancel, move |ev| {
                lift_touch(state, ev.pointer_id());
                state.gesture.set(None)
            }),
            window_event_listener(ev::keydown, move |ev| on_key(state, space_held, &ev)),
            window_event_listener(ev::keyup, move |ev| {
                if ev.key() == " " {
                    space_held.set(false);
                }
            }),
            window_event_listener(ev::beforeunload, move |ev| {
                if state.save.get_untracked() != SaveState::Saved {
                    ev.prevent_default();
                    ev.set_return_value("Your latest changes are not saved yet.");
                }
            }),
        ];
        on_cleanup(move || {
            for handle in handles {
                handle.remove();
            }
        });
    }

    fn open_view(state: EditorState, measure: impl Fn()) {
        measure();
        let (w, h) = state.canvas_size.get_untracked();
        let area = state.doc.with_untracked(|doc| bounds(positions(doc).into_values(), 40.0));
        state.viewport.set(Viewport::initial(area, w, h));
        // A step chosen in the address (from the review) is shown.
        if let Some(id) = state.single_selected() {
            choose_step(state, &id);
        }
    }

    fn typing(ev: &ev::KeyboardEvent) -> bool {
        ev.target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT") || el.has_attribute("contenteditable"))
    }

    fn on_key(state: EditorState, space_held: RwSignal<bool>, ev: &ev::KeyboardEvent) {
        let key = ev.key();
        let command = ev.ctrl_key() || ev.meta_key();
        if key == "Escape" {
            state.gesture.set(None);
            state.help_open.set(false);
            state.selected.set(Vec::new());
            state.selected_edge.set(None);
            return;
        }
        if typing(ev) {
            return;
        }
        let step = if ev.shift_key() { 5.0 * GRID } else { GRID };
        let handled = match (command, key.as_str()) {
            (true, "z" | "Z") if ev.shift_key() => {
                state.redo();
                true
            }
            (true, "z" | "Z") => {
                state.undo();
                true
            }
            (true, "y" | "Y") => {
                state.redo();
                true
            }
            (true, "c") => {
                copy(state);
                true
            }
            (true, "v") => {
                paste(state);
                true
            }
            (true, "d") => {
                duplicate(state);
                true
            }
            (true, "a") => {
                state.selected.set(state.doc.with_untracked(|d| d.steps.iter().map(|s| s.id.clone()).collect()));
                true
            }
            (false, "Delete" | "Backspace") => {
                state.delete_selection();
                true
            }
            (false, "ArrowLeft") => {
                nudge(state, -step, 0.0);
                true
            }
            (false, "ArrowRight") => {
                nudge(state, step, 0.0);
                true
            }
            (false, "ArrowUp") => {
                nudge(state, 0.0, -step);
                true
            }
            (false, "ArrowDown") => {
                nudge(state, 0.0, step);
                true
            }
            (false, "?") => {
                state.help_open.update(|open| *open = !*open);
                true
            }
            (false, "+" | "=") => {
                let (w, h) = state.canvas_size.get_untracked();
                state.viewport.update(|v| *v = v.zoom_around(Point { x: w / 2.0, y: h / 2.0 }, 1.2));
                true
            }
            (false, "-") => {
                let (w, h) = state.canvas_size.get_untracked();
                state.viewport.update(|v| *v = v.zoom_around(Point { x: w / 2.0, y: h / 2.0 }, 1.0 / 1.2));
                true
            }
            (false, "0") => {
                fit_view(state);
                true
            }
            (false, " ") => {
                space_held.set(true);
                true
            }
            _ => false,
        };
        if handled {
            ev.prevent_default();
        }
    }
}
