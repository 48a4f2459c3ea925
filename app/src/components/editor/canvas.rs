//! The canvas: steps, wires, the wire being pulled, the selection box and
//! the minimap, drawn from the editor state. Pointer events here only start
//! gestures; [`end_gesture`] turns a finished one into a [`Change`].

use leptos::prelude::*;

use super::state::{EditorState, Gesture};
use crate::core::editor::{self, dragged, move_by, new_step, position_of, step_at, steps_in_box, Change, MapFit, WireAnchor, GRID};
use crate::core::flow::{Edge, Position};
use crate::core::geometry::{bounds, edge_midpoint, edge_path, extent, num, output_point, Point, NODE_HEIGHT, NODE_WIDTH};
use crate::core::kinds::ports;
use crate::core::Level;

/// The canvas surface: the element that takes the pointer and wheel, and
/// whose box is the visible part of the canvas.
pub type Surface = NodeRef<leptos::html::Div>;

/// The canvas element's box on the page: `(left, top, width, height)`.
pub fn canvas_rect(surface: &Surface) -> (f64, f64, f64, f64) {
    #[cfg(feature = "hydrate")]
    if let Some(surface) = surface.get_untracked() {
        let rect = surface.get_bounding_client_rect();
        return (rect.left(), rect.top(), rect.width(), rect.height());
    }
    let _ = surface;
    (0.0, 0.0, 0.0, 0.0)
}

/// The canvas point under a point of the page.
pub fn to_canvas(state: EditorState, surface: &Surface, client: Point) -> Point {
    let (left, top, _, _) = canvas_rect(surface);
    state.viewport.get_untracked().to_canvas(Point { x: client.x - left, y: client.y - top })
}

pub fn client_point(ev: &leptos::ev::MouseEvent) -> Point {
    Point { x: f64::from(ev.client_x()), y: f64::from(ev.client_y()) }
}

/// The pointer moved: the gesture follows it.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn follow_gesture(state: EditorState, surface: &Surface, client: Point) {
    let Some(gesture) = state.gesture.get_untracked() else { return };
    // Asked only by the gestures that need it: the canvas's box on the page
    // makes the browser lay out first whatever changed since the last frame.
    let at = || to_canvas(state, surface, client);
    let next = match gesture.clone() {
        Gesture::Place { kind, .. } => Gesture::Place { kind, client },
        Gesture::Move { ids, from, .. } => {
            let at = at();
            Gesture::Move { ids, from, dx: at.x - from.x, dy: at.y - from.y }
        }
        Gesture::Connect { from, port, .. } => Gesture::Connect { from, port, pointer: at() },
        Gesture::Pan { from_client, start } => {
            state.viewport.set(editor::Viewport {
                x: start.x + client.x - from_client.x,
                y: start.y + client.y - from_client.y,
                zoom: start.zoom,
            });
            Gesture::Pan { from_client, start }
        }
        Gesture::Select { from, .. } => Gesture::Select { from, to: at() },
        // Followed by `follow_touch`, finger by finger.
        pinch @ Gesture::Pinch { .. } => pinch,
    };
    // A pan's gesture stays the same while the view moves: setting it again
    // would wake everything that watches the gesture, on every move.
    if next != gesture {
        state.gesture.set(Some(next));
    }
}

/// The pointer was released: a finished gesture becomes a change.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn end_gesture(state: EditorState, surface: &Surface, client: Point) {
    let Some(gesture) = state.gesture.get_untracked() else { return };
    state.gesture.set(None);
    match gesture {
        Gesture::Place { kind, .. } => {
            let (left, top, width, height) = canvas_rect(surface);
            let inside = client.x >= left && client.x <= left + width && client.y >= top && client.y <= top + height;
            if !inside {
                return;
            }
            let at = to_canvas(state, surface, client);
            // The card lands centred on the pointer.
            let corner = Position { x: at.x - NODE_WIDTH / 2.0, y: at.y - NODE_HEIGHT / 2.0 };
            let step = state.doc.with_untracked(|doc| new_step(doc, kind, corner));
            let id = step.id.clone();
            if state.change(Change::AddSteps { steps: vec![step], edges: vec![] }) {
                state.select_only(&id);
            }
        }
        Gesture::Move { ids, dx, dy, .. } => {
            if dx.abs() >= 1.0 || dy.abs() >= 1.0 {
                let change = state.doc.with_untracked(|doc| move_by(doc, &ids, dx, dy));
                state.change(change);
            }
        }
        Gesture::Connect { from, port, pointer } => {
            let to = state.doc.with_untracked(|doc| step_at(doc, pointer).map(str::to_owned));
            match to {
                Some(to) => {
                    state.change(Change::Connect(Edge { from, port, to }));
                }
                None => state.notice.set(Some("Drop the wire on the step it should lead to.".into())),
            }
        }
        Gesture::Pan { .. } | Gesture::Pinch { .. } => {}
        Gesture::Select { from, to } => {
            let ids = state.doc.with_untracked(|doc| steps_in_box(doc, from, to));
            state.selected.update(|selected| {
                for id in ids {
                    if !selected.contains(&id) {
                        selected.push(id);
                    }
                }
            });
        }
    }
}

/// A finger on the canvas moved: with two down, the view pinches.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn follow_touch(state: EditorState, id: i32, client: Point) -> bool {
    let known = state.touches.try_update_value(|touches| match touches.iter_mut().find(|(t, _)| *t == id) {
        Some(touch) => {
            touch.1 = client;
            true
        }
        None => false,
    });
    if known != Some(true) {
        return false;
    }
    if let Some(Gesture::Pinch { start, a, b, origin }) = state.gesture.get_untracked() {
        let fingers = state.touches.with_value(|t| t.iter().map(|(_, p)| Point { x: p.x - origin.x, y: p.y - origin.y }).collect::<Vec<_>>());
        if let [a1, b1] = fingers[..] {
            state.viewport.set(start.pinch(a, b, a1, b1));
        }
        return true;
    }
    false
}

/// A finger lifted: a pinch ends when either finger does.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub fn lift_touch(state: EditorState, id: i32) -> bool {
    let had = state.touches.try_update_value(|touches| {
        let before = touches.len();
        touches.retain(|(t, _)| *t != id);
        before != touches.len()
    });
    if had == Some(true) && matches!(state.gesture.get_untracked(), Some(Gesture::Pinch { .. })) {
        state.gesture.set(None);
        return true;
    }
    false
}

#[component]
pub fn Canvas(state: EditorState, surface: Surface, space_held: RwSignal<bool>) -> impl IntoView {
    // Each step's counts (and a message's open and click rates), unless hidden.
    let show_counts = RwSignal::new(true);
    provide_context(ShowCounts(show_counts));
    // Each wheel notch bumps the count; the zoom has ended when a notch's
    // timer finds the count unchanged.
    let notches = StoredValue::new(0_u64);
    let on_background_down = move |ev: leptos::ev::PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        if state.zooming.get_untracked() {
            // The zoom is over: a press in the moments after the last notch
            // lands on the layer that kept the cards from being hit-tested
            // while they moved, and goes on to what is under the pointer.
            notches.update_value(|n| *n += 1);
            state.zooming.set(false);
            if press_under_overlay(&surface, &ev) {
                return;
            }
        }
        let client = client_point(&ev);
        if ev.pointer_type() == "touch" {
            state.touches.update_value(|touches| {
                touches.retain(|(id, _)| *id != ev.pointer_id());
                touches.push((ev.pointer_id(), client));
            });
            let fingers = state.touches.with_value(Clone::clone);
            if let [(_, a), (_, b)] = fingers[..] {
                // The second finger: a pinch replaces the pan the first began.
                let (left, top, _, _) = canvas_rect(&surface);
                let local = |p: Point| Point { x: p.x - left, y: p.y - top };
                let origin = Point { x: left, y: top };
                state.gesture.set(Some(Gesture::Pinch { start: state.viewport.get_untracked(), a: local(a), b: local(b), origin }));
                return;
            }
        }
        if ev.shift_key() && !space_held.get_untracked() {
            let at = to_canvas(state, &surface, client);
            state.gesture.set(Some(Gesture::Select { from: at, to: at }));
        } else {
            state.clear_selection();
            state.gesture.set(Some(Gesture::Pan { from_client: client, start: state.viewport.get_untracked() }));
        }
    };
    // The canvas's box, read at a zoom's first notch and kept while it
    // lasts: reading it makes the browser lay out what the last notch
    // changed, a second layout in the same frame. (The wheel over the
    // canvas never scrolls the page, so the box stays where it was.)
    let zoom_box = StoredValue::new((0.0, 0.0, 0.0, 0.0));
    let on_wheel = move |ev: leptos::ev::WheelEvent| {
        ev.prevent_default();
        let notch = notches.with_value(|n| n + 1);
        notches.set_value(notch);
        if !state.zooming.get_untracked() {
            zoom_box.set_value(canvas_rect(&surface));
            state.zooming.set(true);
        }
        set_timeout(
            move || {
                if notches.try_get_value() == Some(notch) {
                    state.zooming.set(false);
                }
            },
            std::time::Duration::from_millis(ZOOM_SETTLES_MS),
        );
        let (left, top, _, _) = zoom_box.get_value();
        let pointer = Point { x: f64::from(ev.client_x()) - left, y: f64::from(ev.client_y()) - top };
        // Pinch gestures arrive as wheel events with ctrl held and small
        // deltas; both zoom around the pointer.
        let speed = if ev.ctrl_key() { 0.01 } else { 0.0015 };
        let factor = (-ev.delta_y() * speed).exp();
        state.viewport.update(|view| *view = view.zoom_around(pointer, factor));
    };
    // The view moves as one CSS transform of an HTML box around the
    // drawing: the browser then pans and zooms what it has already laid
    // out. (An SVG transform inside the drawing, or a CSS one on the <svg>
    // itself, makes it lay out every card's text again at each zoom step,
    // for the new size of its letters on screen.) The dotted background
    // moves with it.
    let transform = move || {
        let view = state.viewport.get();
        format!("transform: translate({}px, {}px) scale({})", num(view.x), num(view.y), view.zoom)
    };
    let wordless = Memo::new(move |_| state.viewport.with(|view| view.zoom < editor::WORDLESS_ZOOM));
    // The dotted background is part of the drawing (it moves with it): it
    // covers the drawn area, and changes only when that does.
    let dots = move || {
        let area = state.drawn_area.get();
        (num(area.left), num(area.top), num(area.right - area.left), num(area.bottom - area.top))
    };
    let step_ids = move || {
        state.doc.with(|doc| {
            let mut seen = std::collections::HashSet::new();
            doc.steps.iter().filter(|s| seen.insert(s.id.clone())).map(|s| s.id.clone()).collect::<Vec<_>>()
        })
    };

    view! {
        <div
            node_ref=surface
            class="flow-canvas"
            class:panning=move || matches!(state.gesture.get(), Some(Gesture::Pan { .. })) || space_held.get()
            class:moving=move || matches!(state.gesture.get(), Some(Gesture::Pan { .. } | Gesture::Pinch { .. }))
            class:carrying=move || matches!(state.gesture.get(), Some(Gesture::Move { .. }))
            class:gesturing=move || matches!(state.gesture.get(), Some(Gesture::Pan { .. } | Gesture::Pinch { .. } | Gesture::Move { .. })) || state.zooming.get()
            role="application"
            aria-label="Flow canvas"
            on:pointerdown=on_background_down
            on:wheel=on_wheel
        >
            <label class="counts-toggle" on:pointerdown=|ev| ev.stop_propagation()>
                <input type="checkbox" checked=move || show_counts.get() on:change=move |ev| show_counts.set(event_target_checked(&ev))/>
                " Show counts"
            </label>
            <div class="flow-view" style=transform>
            <svg class="flow-graph" class:wordless=move || wordless.get()>
                <defs>
                    <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M0 0 L10 5 L0 10 z"/>
                    </marker>
                    <pattern id="dots" width=num(GRID) height=num(GRID) patternUnits="userSpaceOnUse">
                        <circle cx=num(GRID / 2.0) cy=num(GRID / 2.0) r="1.2"/>
                    </pattern>
                </defs>
                <rect class="dots" x=move || dots().0 y=move || dots().1 width=move || dots().2 height=move || dots().3/>
                <Wires state/>
                <g class="steps">
                    <For each=step_ids key=|id| id.clone() let:id>
                        <StepNode state id space_held surface/>
                    </For>
                </g>
                {move || match state.gesture.get() {
                    Some(Gesture::Connect { from, port, pointer }) => {
                        let start = state.doc.with(|doc| port_point(doc, &from, &port));
                        start.map(|start| view! { <path class="wire-preview" d=edge_path(start, pointer)/> }.into_any())
                    }
                    Some(Gesture::Select { from, to }) => Some(view! {
                        <rect class="selection-box" x=num(from.x.min(to.x)) y=num(from.y.min(to.y))
                            width=num((to.x - from.x).abs()) height=num((to.y - from.y).abs())/>
                    }.into_any()),
                    _ => None,
                }}
            </svg>
            </div>
        </div>
    }
    .into_any()
}

/// How long after the last wheel notch a zoom counts as ended.
const ZOOM_SETTLES_MS: u64 = 200;

/// Hands a press that landed on the canvas's gesture layer to the element
/// under it (a card, a port), as the same press; false when that is the
/// canvas itself, which then takes the press as its own.
fn press_under_overlay(surface: &Surface, ev: &leptos::ev::PointerEvent) -> bool {
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (surface, ev);
        false
    }
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(canvas) = surface.get_untracked() else { return false };
        if ev.target().as_ref() != Some(canvas.unchecked_ref::<web_sys::EventTarget>()) {
            return false; // not the layer: the press already has its element
        }
        // The layer goes now, not when the view next updates.
        let _ = canvas.class_list().remove_1("gesturing");
        let under = document().element_from_point(ev.client_x() as f32, ev.client_y() as f32);
        let Some(under) = under.filter(|el| el != canvas.unchecked_ref::<web_sys::Element>() && canvas.contains(Some(el))) else {
            return false;
        };
        let init = web_sys::PointerEventInit::new();
        init.set_bubbles(true);
        init.set_cancelable(true);
        init.set_composed(true);
        init.set_client_x(ev.client_x());
        init.set_client_y(ev.client_y());
        init.set_screen_x(ev.screen_x());
        init.set_screen_y(ev.screen_y());
        init.set_button(ev.button());
        init.set_buttons(ev.buttons());
        init.set_shift_key(ev.shift_key());
        init.set_ctrl_key(ev.ctrl_key());
        init.set_meta_key(ev.meta_key());
        init.set_alt_key(ev.alt_key());
        init.set_pointer_id(ev.pointer_id());
        init.set_pointer_type(&ev.pointer_type());
        init.set_is_primary(ev.is_primary());
        let Ok(press) = web_sys::PointerEvent::new_with_event_init_dict("pointerdown", &init) else { return false };
        ev.stop_propagation();
        under.dispatch_event(&press).is_ok()
    }
}

/// Where `port` of step `id` sits on the canvas.
fn port_point(doc: &crate::core::FlowDocument, id: &str, port: &str) -> Option<Point> {
    let index = doc.steps.iter().position(|s| s.id == id)?;
    let step = &doc.steps[index];
    let outputs = ports(step);
    let slot = outputs.iter().position(|p| *p == port)?;
    Some(output_point(position_of(step, index), slot, outputs.len()))
}

/// Every wire, each drawn by its own [`Wire`]: an edit redraws the wires
/// whose ends it moved, a drag only those of the steps it carries.
#[component]
fn Wires(state: EditorState) -> impl IntoView {
    let edges = move || {
        state.doc.with(|doc| {
            let mut seen = std::collections::HashSet::new();
            doc.edges.iter().filter(|e| seen.insert(*e)).cloned().collect::<Vec<_>>()
        })
    };
    view! {
        <For each=edges key=|edge| edge.clone() let:edge>
            <Wire state edge/>
        </For>
    }
    .into_any()
}

#[component]
fn Wire(state: EditorState, edge: Edge) -> impl IntoView {
    let anchor = {
        let (source, target, port) = (state.steps.cell(&edge.from), state.steps.cell(&edge.to), edge.port.clone());
        Memo::new(move |_| {
            source.with(|source| target.with(|target| Some(WireAnchor::between(source.as_ref().map(|(i, s)| (*i, s))?, &port, target.as_ref().map(|(j, t)| (*j, t))?))))
        })
    };
    let carried = {
        let edge = edge.clone();
        Memo::new(move |_| (state.carried.contains(&edge.from), state.carried.contains(&edge.to)))
    };
    let ends = Memo::new(move |_| {
        let anchor = anchor.get()?;
        let (from, to) = carried.get();
        // Only a wire of a dragged step listens to the drag.
        let by = (from || to).then(|| state.moved_by.get());
        Some(anchor.ends(by.filter(|_| from), by.filter(|_| to)))
    });
    let path = Memo::new(move |_| ends.get().map(|(start, end)| edge_path(start, end)).unwrap_or_default());
    // The group is always there; its lines only near the view (or dragged).
    let exists = Memo::new(move |_| anchor.with(Option::is_some));
    let drawn = {
        let edge = edge.clone();
        Memo::new(move |_| {
            let (from, to) = carried.get();
            exists.get() && (from || to || state.shown_wires.contains(&edge))
        })
    };
    let selected = {
        let edge = edge.clone();
        move || state.selected_edge.with(|s| s.as_ref() == Some(&edge))
    };
    let choose = {
        let edge = edge.clone();
        move |ev: leptos::ev::PointerEvent| {
            ev.stop_propagation();
            state.clear_selection();
            state.selected_edge.set(Some(edge.clone()));
        }
    };
    let label = (edge.port != "next").then(|| port_label(&edge.port));
    let mid = move || ends.get().map(|(start, end)| edge_midpoint(start, end)).unwrap_or(Point { x: 0.0, y: 0.0 });
    view! {
        <Show when=move || exists.get()>
            <g class="wire" class:selected=selected.clone() data-from=edge.from.clone() data-port=edge.port.clone() data-to=edge.to.clone()
                on:pointerdown=choose.clone()>
                {
                    let label = label.clone();
                    move || drawn.get().then(|| view! {
                        <path class="hit" d=move || path.get()/>
                        <path class="line" d=move || path.get() marker-end="url(#arrow)"/>
                        {label.clone().map(|label| view! {
                            <text class="port-label" x=move || num(mid().x) y=move || num(mid().y - 4.0) text-anchor="middle">{label}</text>
                        })}
                    })
                }
            </g>
        </Show>
    }
    .into_any()
}

#[component]
fn StepNode(state: EditorState, id: String, space_held: RwSignal<bool>, surface: Surface) -> impl IntoView {
    // The card reads its own step (see `Keyed`), and its place on the canvas
    // and content are memos of that: an edit elsewhere in the flow leaves
    // this card as it is, and only its own drag moves it.
    let entry = state.steps.cell(&id);
    let position = {
        let entry = entry.clone();
        Memo::new(move |_| entry.with(|entry| entry.as_ref().map(|(i, step)| position_of(step, *i))))
    };
    let step = Memo::new(move |_| entry.with(|entry| entry.as_ref().map(|(_, step)| step.clone())));
    let carried = {
        let id = id.clone();
        Memo::new(move |_| state.carried.contains(&id))
    };
    // The element is always there (Tab, screen readers); the card only near
    // the view, or while it is dragged.
    let shown = {
        let id = id.clone();
        Memo::new(move |_| carried.get() || state.shown_steps.contains(&id))
    };
    let transform = move || {
        let at = position.get()?;
        // Only a dragged step listens to the drag.
        let at = if carried.get() { dragged(at, state.moved_by.get()) } else { at };
        Some(format!("translate({} {})", num(at.x), num(at.y)))
    };
    let selected = {
        let id = id.clone();
        move || state.selection.contains(&id)
    };
    let level = {
        let badge = state.badges.cell(&id);
        move || badge.get()
    };
    let on_down = {
        let id = id.clone();
        move |ev: leptos::ev::PointerEvent| {
            if ev.button() != 0 || space_held.get_untracked() {
                return; // space-drag pans from anywhere
            }
            ev.stop_propagation();
            if ev.shift_key() {
                // No focus change, so focusing does not undo the toggle.
                ev.prevent_default();
                state.selected.update(|ids| match ids.iter().position(|s| *s == id) {
                    Some(at) => {
                        ids.remove(at);
                    }
                    None => ids.push(id.clone()),
                });
                return;
            }
            if !state.is_selected(&id) {
                state.select_only(&id);
            }
            state.clear_selected_edge();
            let from = to_canvas(state, &surface, client_point(&ev));
            state.gesture.set(Some(Gesture::Move { ids: state.selected.get_untracked(), from, dx: 0.0, dy: 0.0 }));
        }
    };
    let on_focus = {
        let id = id.clone();
        move |_| {
            if !state.is_selected(&id) {
                state.select_only(&id);
            }
        }
    };
    let inner = move || {
        let step = step.get()?;
        let outputs: Vec<String> = ports(&step).into_iter().map(str::to_owned).collect();
        let count = outputs.len();
        let dots = outputs
            .into_iter()
            .enumerate()
            .map(|(i, port)| {
                let p = output_point(Position { x: 0.0, y: 0.0 }, i, count);
                let from = step.id.clone();
                let pull = {
                    let port = port.clone();
                    move |ev: leptos::ev::PointerEvent| {
                        if ev.button() != 0 {
                            return;
                        }
                        ev.stop_propagation();
                        let pointer = to_canvas(state, &surface, client_point(&ev));
                        state.gesture.set(Some(Gesture::Connect { from: from.clone(), port: port.clone(), pointer }));
                    }
                };
                let label = (count > 1).then(|| {
                    view! { <text class="port-name" x=num(p.x - 8.0) y=num(p.y + 3.5) text-anchor="end">{port_label(&port)}</text> }
                });
                view! {
                    {label}
                    <circle class="port output" data-port=port.clone() cx=num(p.x) cy=num(p.y) r="6" on:pointerdown=pull>
                        <title>{format!("Drag to connect “{}”", port_label(&port))}</title>
                    </circle>
                }
            })
            .collect_view();
        // Output names share the card's right edge with the name: beside
        // them it is shorter (the whole name is in the card's title).
        let name = truncate(step.display_name(), if count > 1 { 12 } else { 22 });
        Some(view! {
            <title>{format!("{} — {}", step.display_name(), step.kind.label())}</title>
            <rect class=format!("card group-{:?}", step.kind.group()).to_lowercase() width=num(NODE_WIDTH) height=num(NODE_HEIGHT) rx="10"/>
            <text class="icon" x="22" y="34" text-anchor="middle">{step.kind.icon()}</text>
            <text class="name" x="42" y="25">{name}</text>
            <text class="kind" x="42" y="42">{step.kind.label()}</text>
            <circle class="port input" cx="0" cy=num(NODE_HEIGHT / 2.0) r="4"/>
            {dots}
        })
    };
    let badge = move || {
        level().map(|level| {
            let (class, mark, what) = match level {
                Level::Error => ("badge error", "!", "Has errors"),
                Level::Warning => ("badge warning", "⚠", "Has warnings"),
            };
            view! {
                <g class=class>
                    <title>{what}</title>
                    <circle cx=num(NODE_WIDTH - 4.0) cy="4" r="10"/>
                    <text x=num(NODE_WIDTH - 4.0) y="8.5" text-anchor="middle">{mark}</text>
                </g>
            }
        })
    };
    let show_counts = use_context::<ShowCounts>().map(|s| s.0);
    let counts = {
        let id = id.clone();
        move || {
            if show_counts.is_some_and(|s| !s.get()) {
                return None;
            }
            let (label, rates) = state.counts.with(|counts| counts.get(&id).map(|c| (c.label(), c.rates())))?;
            (!label.is_empty() || rates.is_some()).then(|| {
                view! {
                    <text class="step-counts" x="2" y=num(NODE_HEIGHT + 14.0)>{label}</text>
                    {rates.map(|rates| view! { <text class="step-counts step-rates" x="2" y=num(NODE_HEIGHT + 28.0)>{rates}</text> })}
                }
            })
        }
    };
    view! {
        <g class="step" class:selected=selected data-step=id.clone() transform=transform tabindex="0"
            aria-label=move || step.with(|s| s.as_ref().map(|s| format!("{} ({})", s.display_name(), s.kind.label())))
            on:pointerdown=on_down on:focus=on_focus>
            {move || shown.get().then(|| view! { {inner} {badge.clone()} {counts.clone()} })}
        </g>
    }
    .into_any()
}

/// A small map of the whole flow with the visible part outlined; a click
/// centres the view there.
#[component]
pub fn Minimap(state: EditorState) -> impl IntoView {
    const WIDTH: f64 = 200.0;
    const HEIGHT: f64 = 120.0;
    // The steps change with edits only; the view moves on every pan. The
    // cards are drawn once per edit, fitted to the flow; when the view
    // reaches past the flow, the map shows both, and the drawing of the
    // cards is only moved and scaled to fit (one CSS transform, drawn by
    // the compositor). The outline of the view is a box of its own.
    let steps = Memo::new(move |_| state.doc.with(|doc| doc.steps.iter().enumerate().map(|(i, step)| position_of(step, i)).collect::<Vec<_>>()));
    let drawn = Memo::new(move |_| steps.with(|steps| MapFit::new(bounds(steps.iter().copied(), 20.0), WIDTH, HEIGHT)));
    let span = Memo::new(move |_| steps.with(|steps| extent(steps.iter().copied())));
    let fit = Memo::new(move |_| {
        let (w, h) = state.canvas_size.get();
        let view = state.viewport.get();
        let top_left = view.to_canvas(Point { x: 0.0, y: 0.0 });
        let bottom_right = view.to_canvas(Point { x: w, y: h });
        let corners = [Position { x: top_left.x, y: top_left.y }, Position { x: bottom_right.x - NODE_WIDTH, y: bottom_right.y - NODE_HEIGHT }];
        let span = span.get().into_iter().flat_map(|(a, b)| [a, b]);
        let fit = MapFit::new(bounds(span.chain(corners), 20.0), WIDTH, HEIGHT);
        (fit, fit.to_map(top_left), fit.to_map(bottom_right))
    });
    let on_click = move |ev: leptos::ev::MouseEvent| {
        let (fit, _, _) = fit.get_untracked();
        let at = fit.to_canvas(Point { x: f64::from(ev.offset_x()), y: f64::from(ev.offset_y()) });
        let (w, h) = state.canvas_size.get_untracked();
        state.viewport.update(|view| *view = view.centre_on(at, w, h));
    };
    // Keyboard users move the view from the map: the arrows take it a
    // quarter of the canvas that way (Shift: a whole canvas). The keys stay
    // here, so they never move the selected steps.
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let (w, h) = state.canvas_size.get_untracked();
        let share = if ev.shift_key() { 1.0 } else { 0.25 };
        let (dx, dy) = match ev.key().as_str() {
            "ArrowLeft" => (w * share, 0.0),
            "ArrowRight" => (-w * share, 0.0),
            "ArrowUp" => (0.0, h * share),
            "ArrowDown" => (0.0, -h * share),
            _ => return,
        };
        ev.prevent_default();
        ev.stop_propagation();
        state.viewport.update(|view| {
            view.x += dx;
            view.y += dy;
        });
    };
    let placed = move || {
        let (origin, k) = drawn.get().onto(&fit.get().0);
        format!("transform: translate({}px, {}px) scale({k})", num(origin.x), num(origin.y))
    };
    let outline = move || {
        let (_, a, b) = fit.get();
        format!("left: {}px; top: {}px; width: {}px; height: {}px", num(a.x), num(a.y), num(b.x - a.x), num(b.y - a.y))
    };
    view! {
        <div class="minimap" role="group" tabindex="0" aria-label="Minimap: click, or use the arrow keys, to move the view" on:click=on_click on:keydown=on_key>
            <svg width=WIDTH height=HEIGHT style=placed
                viewBox=move || { let (x, y, w, h) = drawn.get().shown; format!("{} {} {} {}", num(x), num(y), num(w), num(h)) }>
                {move || steps.with(|steps| steps.iter().map(|at| view! {
                    <rect class="mini-step" x=num(at.x) y=num(at.y) width=num(NODE_WIDTH) height=num(NODE_HEIGHT) rx="8"/>
                }).collect_view())}
            </svg>
            <div class="mini-view" style=outline></div>
        </div>
    }
    .into_any()
}

/// A port as the canvas writes it: `timed_out` reads "timed out".
fn port_label(port: &str) -> String {
    port.replace('_', " ")
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

/// Whether the canvas shows each step's counts (a switch on the canvas).
#[derive(Clone, Copy)]
struct ShowCounts(RwSignal<bool>);
