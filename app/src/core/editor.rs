//! The editor's model, kept apart from the canvas that draws it: every edit
//! a marketer makes is a [`Change`] value, and one pure function, [`apply`],
//! carries it out and hands back the change that undoes it. Undo and redo
//! are then two stacks of changes ([`UndoStack`]), and the browser code only
//! turns pointer and key events into changes.
//!
//! What may connect is decided by [`validate::can_connect`], the same rule
//! the validator reports on save. A refused change leaves the document
//! exactly as it was.
//!
//! The viewport (pan and zoom) is view state: it is not part of the saved
//! document and is not undone, so it lives in [`Viewport`] beside the
//! document rather than in a [`Change`].
//!
//! Nothing here does IO or knows about Leptos.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::core::flow::{Edge, FlowDocument, FlowSettings, Guard, Position, Step};
use crate::core::geometry::{edge_midpoint, input_point, output_point, Point, NODE_HEIGHT, NODE_WIDTH};
use crate::core::kinds::{ports, StepKind};
use crate::core::validate::{self, ConnectRefusal};
use crate::core::{Findings, Level};

/// The canvas grid; dropped and moved steps snap to it.
pub const GRID: f64 = 20.0;

/// One edit of the document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Adds steps and wires as given (a new step, a paste, an undone
    /// removal). Refused when a step id is already taken or a wire exists.
    AddSteps { steps: Vec<Step>, edges: Vec<Edge> },
    /// Removes the steps with these ids together with every wire touching
    /// them, and the listed wires.
    RemoveSteps { ids: Vec<String>, edges: Vec<Edge> },
    /// Puts steps at these positions (`None`: no stored position).
    MoveSteps { moves: Vec<(String, Option<Position>)> },
    /// Draws a wire, if [`validate::can_connect`] allows it.
    Connect(Edge),
    /// Replaces a step's name, settings and guard (its id, kind and
    /// position stay).
    UpdateStep { id: String, name: Option<String>, settings: Map<String, Value>, guard: Option<Guard> },
    /// Replaces the flow's own settings (zone, business hours, drip, re-entry).
    SetFlowSettings(Box<FlowSettings>),
    /// Several changes as one undo step, applied in order, all or none.
    Batch(Vec<Change>),
}

impl Change {
    /// Removes one wire.
    pub fn disconnect(edge: Edge) -> Change {
        Change::RemoveSteps { ids: Vec::new(), edges: vec![edge] }
    }

    /// Sets `step`'s name, settings and guard to those of the given copy:
    /// the inspector edits a clone and hands it back through this.
    pub fn update(step: &Step) -> Change {
        Change::UpdateStep {
            id: step.id.clone(),
            name: step.name.clone(),
            settings: step.settings.clone(),
            guard: step.guard.clone(),
        }
    }
}

/// Why a change was not made, in words the marketer reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{}", .0.message())]
    Connect(ConnectRefusal),
    #[error("There is no step “{0}” any more.")]
    NoSuchStep(String),
    #[error("A step with id “{0}” already exists.")]
    DuplicateId(String),
    #[error("That wire does not exist any more.")]
    NoSuchEdge,
    #[error("That wire already exists.")]
    DuplicateEdge,
}

/// Applies `change` to `doc` and returns the change that undoes it. On a
/// refusal `doc` is left untouched.
///
/// Steps and wires are inserted where the canonical order puts them (steps
/// by id, wires sorted), so a canonical document stays canonical and an
/// undo gives back exactly the document that was there before.
pub fn apply(doc: &mut FlowDocument, change: Change) -> Result<Change, Refusal> {
    match change {
        Change::AddSteps { steps, edges } => {
            let mut fresh = HashSet::new();
            for step in &steps {
                // A wire already naming the id (a dangling one) would be
                // taken away by the undo, so such an id counts as taken.
                let named = doc.edges.iter().any(|edge| edge.from == step.id || edge.to == step.id);
                if doc.step(&step.id).is_some() || named || !fresh.insert(step.id.as_str()) {
                    return Err(Refusal::DuplicateId(step.id.clone()));
                }
            }
            if edges.iter().any(|edge| doc.edges.contains(edge)) {
                return Err(Refusal::DuplicateEdge);
            }
            let ids = steps.iter().map(|step| step.id.clone()).collect();
            let undo_edges = edges.clone();
            for step in steps {
                let at = doc.steps.partition_point(|other| other.id < step.id);
                doc.steps.insert(at, step);
            }
            for edge in edges {
                let at = doc.edges.partition_point(|other| *other < edge);
                doc.edges.insert(at, edge);
            }
            Ok(Change::RemoveSteps { ids, edges: undo_edges })
        }
        Change::RemoveSteps { ids, edges } => {
            if let Some(id) = ids.iter().find(|id| doc.step(id).is_none()) {
                return Err(Refusal::NoSuchStep(id.clone()));
            }
            if edges.iter().any(|edge| !doc.edges.contains(edge)) {
                return Err(Refusal::NoSuchEdge);
            }
            let gone: HashSet<&str> = ids.iter().map(String::as_str).collect();
            let (removed_steps, kept): (Vec<Step>, Vec<Step>) =
                std::mem::take(&mut doc.steps).into_iter().partition(|step| gone.contains(step.id.as_str()));
            doc.steps = kept;
            let (removed_edges, kept): (Vec<Edge>, Vec<Edge>) = std::mem::take(&mut doc.edges)
                .into_iter()
                .partition(|edge| gone.contains(edge.from.as_str()) || gone.contains(edge.to.as_str()) || edges.contains(edge));
            doc.edges = kept;
            Ok(Change::AddSteps { steps: removed_steps, edges: removed_edges })
        }
        Change::MoveSteps { moves } => {
            if let Some((id, _)) = moves.iter().find(|(id, _)| doc.step(id).is_none()) {
                return Err(Refusal::NoSuchStep(id.clone()));
            }
            let mut undo = Vec::with_capacity(moves.len());
            for (id, position) in moves {
                let step = doc.steps.iter_mut().find(|step| step.id == id).expect("checked above");
                undo.push((id, std::mem::replace(&mut step.position, position)));
            }
            // Undone in reverse, so a step moved twice in one change ends
            // where it started.
            undo.reverse();
            Ok(Change::MoveSteps { moves: undo })
        }
        Change::Connect(edge) => {
            validate::can_connect(doc, &edge.from, &edge.port, &edge.to).map_err(Refusal::Connect)?;
            let at = doc.edges.partition_point(|other| *other < edge);
            doc.edges.insert(at, edge.clone());
            Ok(Change::disconnect(edge))
        }
        Change::UpdateStep { id, name, settings, guard } => {
            let step = doc.steps.iter_mut().find(|step| step.id == id).ok_or_else(|| Refusal::NoSuchStep(id.clone()))?;
            let undo = Change::UpdateStep {
                id,
                name: std::mem::replace(&mut step.name, name),
                settings: std::mem::replace(&mut step.settings, settings),
                guard: std::mem::replace(&mut step.guard, guard),
            };
            Ok(undo)
        }
        Change::SetFlowSettings(settings) => Ok(Change::SetFlowSettings(Box::new(std::mem::replace(&mut doc.settings, *settings)))),
        Change::Batch(changes) => {
            let mut undo = Vec::with_capacity(changes.len());
            for change in changes {
                match apply(doc, change) {
                    Ok(inverse) => undo.push(inverse),
                    Err(refusal) => {
                        // All or nothing: take back what this batch did.
                        for inverse in undo.into_iter().rev() {
                            apply(doc, inverse).expect("an inverse applies to the document it came from");
                        }
                        return Err(refusal);
                    }
                }
            }
            undo.reverse();
            Ok(Change::Batch(undo))
        }
    }
}

/// The history of a document's edits. Each entry undoes one change; a new
/// change after an undo drops what could have been redone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UndoStack {
    undo: Vec<Entry>,
    redo: Vec<Change>,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    inverse: Change,
    /// Edits with the same key in a row (typing in one field) undo as one.
    merge_key: Option<String>,
}

/// How many changes can be undone.
pub const UNDO_LIMIT: usize = 500;

impl UndoStack {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a change and remembers how to undo it.
    pub fn apply(&mut self, doc: &mut FlowDocument, change: Change) -> Result<(), Refusal> {
        self.record(doc, change, None)
    }

    /// Like [`UndoStack::apply`], but a run of changes with the same `key`
    /// (each keystroke in the subject field, say) is undone in one step.
    pub fn apply_merging(&mut self, doc: &mut FlowDocument, change: Change, key: &str) -> Result<(), Refusal> {
        self.record(doc, change, Some(key))
    }

    fn record(&mut self, doc: &mut FlowDocument, change: Change, key: Option<&str>) -> Result<(), Refusal> {
        let inverse = apply(doc, change)?;
        self.redo.clear();
        let merges = key.is_some() && self.undo.last().is_some_and(|last| last.merge_key.as_deref() == key);
        if !merges {
            // The earlier inverse of a merged run already restores what was
            // there before the run began.
            self.undo.push(Entry { inverse, merge_key: key.map(str::to_owned) });
            if self.undo.len() > UNDO_LIMIT {
                self.undo.remove(0);
            }
        }
        Ok(())
    }

    /// Ends a run of merged edits, so the next one is its own undo step.
    pub fn seal(&mut self) {
        if let Some(last) = self.undo.last_mut() {
            last.merge_key = None;
        }
    }

    /// Undoes the newest change; false when there is none.
    pub fn undo(&mut self, doc: &mut FlowDocument) -> bool {
        let Some(entry) = self.undo.pop() else { return false };
        match apply(doc, entry.inverse) {
            Ok(redo) => {
                self.redo.push(redo);
                true
            }
            // Only reachable if the document was changed behind the stack's
            // back; the history no longer fits it.
            Err(_) => {
                self.clear();
                false
            }
        }
    }

    /// Redoes the newest undone change; false when there is none.
    pub fn redo(&mut self, doc: &mut FlowDocument) -> bool {
        let Some(change) = self.redo.pop() else { return false };
        match apply(doc, change) {
            Ok(inverse) => {
                self.undo.push(Entry { inverse, merge_key: None });
                true
            }
            Err(_) => {
                self.clear();
                false
            }
        }
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
    }
}

/// A new step id for `kind`: `<kind>_<n>` with the smallest `n` that no
/// step (and no wire) uses.
pub fn new_step_id(doc: &FlowDocument, kind: &StepKind) -> String {
    let wired = doc.edges.iter().flat_map(|edge| [edge.from.as_str(), edge.to.as_str()]);
    let taken: HashSet<&str> = doc.steps.iter().map(|step| step.id.as_str()).chain(wired).collect();
    (1..)
        .map(|n| format!("{}_{n}", kind.as_str()))
        .find(|id| !taken.contains(id.as_str()))
        .expect("some number is free")
}

/// The settings a step starts with: enough that it reads sensibly, nothing
/// the marketer must decide (those are reported as missing).
pub fn default_settings(kind: &StepKind) -> Map<String, Value> {
    let settings = match kind {
        StepKind::Start => json!({"entry": "manual"}),
        StepKind::Wait => json!({"mode": "duration", "amount": 1, "unit": "days"}),
        StepKind::Condition => json!({"criteria": [], "logic": "all"}),
        StepKind::Split => json!({"branches": [{"port": "a", "percent": 50}, {"port": "b", "percent": 50}]}),
        StepKind::GoToFlow => json!({"mode": "move"}),
        StepKind::SendEmail => json!({"activation": "automatic", "timing": "immediate", "if_no_email": "skip"}),
        StepKind::SendSms => json!({"if_no_mobile": "skip"}),
        StepKind::Call => json!({"owner": "record_owner"}),
        StepKind::Task => json!({"priority": "normal", "owner": "record_owner"}),
        StepKind::ScheduleCallback => json!({"after": {"amount": 1, "unit": "days"}}),
        StepKind::UpdateContact => json!({"changes": []}),
        StepKind::OptOut => json!({"channel": "all"}),
        StepKind::Webhook => json!({"method": "POST", "format": "json"}),
        StepKind::S3Upload | StepKind::FtpUpload => json!({"format": "json"}),
        _ => json!({}),
    };
    settings.as_object().cloned().unwrap_or_default()
}

/// A new step of `kind` at `at` (snapped to the grid), with a fresh id.
pub fn new_step(doc: &FlowDocument, kind: StepKind, at: Position) -> Step {
    let mut step = Step::new(new_step_id(doc, &kind), kind.clone());
    step.settings = default_settings(&kind);
    step.position = Some(snap(at));
    step
}

/// The nearest grid point.
pub fn snap(at: Position) -> Position {
    let to_grid = |v: f64| (v / GRID).round() * GRID;
    // `+ 0.0` turns a -0 from rounding into 0, which serializes as 0.
    Position { x: to_grid(at.x) + 0.0, y: to_grid(at.y) + 0.0 }
}

/// Where a step is drawn: its own position, or a grid slot (from its index
/// in the document) for documents written without positions.
pub fn position_of(step: &Step, index: usize) -> Position {
    step.position.unwrap_or(Position { x: 40.0 + (index % 5) as f64 * 240.0, y: 40.0 + (index / 5) as f64 * 120.0 })
}

/// Every step's drawn position, by id.
pub fn positions(doc: &FlowDocument) -> HashMap<&str, Position> {
    doc.steps.iter().enumerate().map(|(i, step)| (step.id.as_str(), position_of(step, i))).collect()
}

/// Each step's place in `doc.steps`, by id (the first, should an id repeat:
/// the canvas draws that one).
pub fn step_index(doc: &FlowDocument) -> HashMap<String, usize> {
    let mut index = HashMap::with_capacity(doc.steps.len());
    for (i, step) in doc.steps.iter().enumerate() {
        index.entry(step.id.clone()).or_insert(i);
    }
    index
}

/// Where a step being dragged by `by` is drawn: where it would land.
pub fn dragged(at: Position, by: (f64, f64)) -> Position {
    snap(Position { x: at.x + by.0, y: at.y + by.1 })
}

/// What a wire hangs on, from the document alone: where its two steps are,
/// and which of the source's output slots its port takes. The canvas keeps
/// one per wire and redraws a wire only when its own anchor changes or one
/// of its steps is being dragged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WireAnchor {
    pub from: Position,
    pub slot: usize,
    pub slots: usize,
    pub to: Position,
}

impl WireAnchor {
    /// `None` when either step is missing (such a wire is not drawn).
    pub fn of(doc: &FlowDocument, index: &HashMap<String, usize>, edge: &Edge) -> Option<WireAnchor> {
        let (&i, &j) = (index.get(&edge.from)?, index.get(&edge.to)?);
        Some(WireAnchor::between((i, doc.steps.get(i)?), &edge.port, (j, doc.steps.get(j)?)))
    }

    /// The anchor of a wire from `port` of `source` to `target`, each with
    /// its place in the document.
    pub fn between(source: (usize, &Step), port: &str, target: (usize, &Step)) -> WireAnchor {
        let outputs = ports(source.1);
        WireAnchor {
            from: position_of(source.1, source.0),
            slot: outputs.iter().position(|p| *p == port).unwrap_or(0),
            slots: outputs.len().max(1),
            to: position_of(target.1, target.0),
        }
    }

    /// The wire's two ends, each step drawn where a drag by `from_by` /
    /// `to_by` (if it is being dragged) would land it.
    pub fn ends(self, from_by: Option<(f64, f64)>, to_by: Option<(f64, f64)>) -> (Point, Point) {
        let from = from_by.map_or(self.from, |by| dragged(self.from, by));
        let to = to_by.map_or(self.to, |by| dragged(self.to, by));
        (output_point(from, self.slot, self.slots), input_point(to))
    }
}

/// The steps whose card `area` shows, nearest its middle first: the order
/// they are drawn in when there are too many for one frame (see [`catch_up`]).
pub fn steps_drawn_in(doc: &FlowDocument, area: Area) -> Vec<String> {
    let shown = doc.steps.iter().enumerate().map(|(i, step)| (position_of(step, i), step)).filter(|(at, _)| area.shows_step(*at));
    area.middle_first(shown.map(|(at, step)| (Point { x: at.x + NODE_WIDTH / 2.0, y: at.y + NODE_HEIGHT / 2.0 }, step.id.clone())))
}

/// The wires `area` shows part of (a wire missing a step is never drawn),
/// nearest its middle first.
pub fn wires_drawn_in(doc: &FlowDocument, index: &HashMap<String, usize>, area: Area) -> Vec<Edge> {
    let shown = doc.edges.iter().filter_map(|edge| {
        let (start, end) = WireAnchor::of(doc, index, edge)?.ends(None, None);
        area.shows_wire(start, end).then(|| (edge_midpoint(start, end), edge.clone()))
    });
    area.middle_first(shown)
}

/// One frame's step from what is drawn towards what should be (`wanted`,
/// first to last in the order to draw them): what left goes at once, and at
/// most `budget` newcomers join, the first ones wanted. Drawing a hundred
/// cards at once, when a pan or a zoom reaches past the drawn area, took
/// several frames' time; a few per frame fit in the time a frame leaves.
/// Also says whether the result is all of `wanted`.
pub fn catch_up<K: Clone + Eq + std::hash::Hash>(drawn: &HashSet<K>, wanted: &[K], budget: usize) -> (HashSet<K>, bool) {
    let mut next = HashSet::with_capacity(wanted.len().min(drawn.len() + budget));
    let (mut joined, mut all) = (0, true);
    for key in wanted {
        if drawn.contains(key) {
            next.insert(key.clone());
        } else if next.contains(key) {
            // listed twice, and already let in
        } else if joined < budget {
            next.insert(key.clone());
            joined += 1;
        } else {
            all = false;
        }
    }
    (next, all)
}

/// The badge each step wears: error if any of its findings is an error,
/// else warning if it has any.
pub fn step_levels(findings: &Findings) -> HashMap<String, Level> {
    let mut levels = HashMap::new();
    for finding in findings.iter() {
        let Some(step) = &finding.step else { continue };
        let level = finding.code.level();
        let worst = levels.entry(step.clone()).or_insert(level);
        if level == Level::Error {
            *worst = Level::Error;
        }
    }
    levels
}

/// The part of the canvas worth drawing: what a view shows, widened by
/// [`Area::MARGIN`] on every side and rounded outwards to that grid, so that
/// a pan changes it only when it crosses a grid line. The canvas keeps every
/// step's element (for Tab and screen readers) but draws the inside of
/// those outside the area, so a big flow's page holds the cards near the
/// view, not the whole flow. (Pan and zoom move one CSS transform and lay
/// nothing out; the area moves only every so often.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Area {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl Area {
    /// Canvas units, about a card's width: wide enough that a pan redraws a
    /// row or column of cards only every so often, narrow enough that a zoom
    /// does not lay out much more than is on screen.
    pub const MARGIN: f64 = 160.0;

    /// The area drawn for `view` on a canvas of `width` by `height`.
    pub fn around(view: Viewport, width: f64, height: f64) -> Area {
        let top_left = view.to_canvas(Point { x: 0.0, y: 0.0 });
        let bottom_right = view.to_canvas(Point { x: width, y: height });
        let down = |v: f64| ((v - Area::MARGIN) / Area::MARGIN).floor() * Area::MARGIN;
        let up = |v: f64| ((v + Area::MARGIN) / Area::MARGIN).ceil() * Area::MARGIN;
        Area { left: down(top_left.x), top: down(top_left.y), right: up(bottom_right.x), bottom: up(bottom_right.y) }
    }

    /// The area drawn as the view changes: the one before while it still
    /// covers [`Area::around`] the view and is not much bigger (zooming in,
    /// a short pan), else a new one with a quarter of the view to spare on
    /// each side, so that zooming out or panning far redraws every few
    /// steps instead of at each one. While the view is `moving` (a pan or
    /// zoom under way) a bigger area stays: zooming in and out again would
    /// otherwise drop cards only to draw them again; it shrinks once the
    /// view rests.
    pub fn follow(before: Option<Area>, view: Viewport, width: f64, height: f64, moving: bool) -> Area {
        let needed = Area::around(view, width, height);
        if let Some(before) = before {
            let covers = before.left <= needed.left && before.top <= needed.top && before.right >= needed.right && before.bottom >= needed.bottom;
            if covers && (moving || before.size() <= 4.0 * needed.size()) {
                return before;
            }
        }
        let (spare_x, spare_y) = ((needed.right - needed.left) / 4.0, (needed.bottom - needed.top) / 4.0);
        let down = |v: f64| (v / Area::MARGIN).floor() * Area::MARGIN;
        let up = |v: f64| (v / Area::MARGIN).ceil() * Area::MARGIN;
        Area { left: down(needed.left - spare_x), top: down(needed.top - spare_y), right: up(needed.right + spare_x), bottom: up(needed.bottom + spare_y) }
    }

    fn size(&self) -> f64 {
        (self.right - self.left) * (self.bottom - self.top)
    }

    /// The keys of `items`, sorted by how far their point lies from the
    /// area's middle, nearest first.
    fn middle_first<K>(&self, items: impl Iterator<Item = (Point, K)>) -> Vec<K> {
        let (mx, my) = ((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0);
        let mut items: Vec<(f64, K)> = items.map(|(p, key)| ((p.x - mx).powi(2) + (p.y - my).powi(2), key)).collect();
        items.sort_by(|a, b| a.0.total_cmp(&b.0));
        items.into_iter().map(|(_, key)| key).collect()
    }

    fn meets(&self, left: f64, top: f64, right: f64, bottom: f64) -> bool {
        left <= self.right && right >= self.left && top <= self.bottom && bottom >= self.top
    }

    /// Does a step's card at `at` (with its badge and counts) reach into the area?
    pub fn shows_step(&self, at: Position) -> bool {
        const SLACK: f64 = 24.0;
        self.meets(at.x - SLACK, at.y - SLACK, at.x + NODE_WIDTH + SLACK, at.y + NODE_HEIGHT + SLACK)
    }

    /// Does the wire between two points reach into the area? The curve lies
    /// within the box of its end and control points (see `edge_path`).
    pub fn shows_wire(&self, from: Point, to: Point) -> bool {
        const SLACK: f64 = 16.0; // the arrow head and the port label
        let reach = ((to.x - from.x).abs() / 2.0).max(48.0);
        let (left, right) = ((from.x).min(to.x - reach), (from.x + reach).max(to.x));
        let (top, bottom) = (from.y.min(to.y), from.y.max(to.y));
        self.meets(left - SLACK, top - SLACK, right + SLACK, bottom + SLACK)
    }
}

/// How the minimap shows a box of the canvas: fitted whole into the map,
/// centred, at one scale (map pixels per canvas unit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapFit {
    /// The canvas box shown: `(x, y, width, height)`.
    pub shown: (f64, f64, f64, f64),
    pub scale: f64,
    /// Where the box's top left corner lands on the map.
    pub offset: Point,
}

impl MapFit {
    pub fn new(shown: (f64, f64, f64, f64), width: f64, height: f64) -> MapFit {
        let (_, _, w, h) = shown;
        let scale = (width / w.max(1.0)).min(height / h.max(1.0));
        MapFit { shown, scale, offset: Point { x: (width - w * scale) / 2.0, y: (height - h * scale) / 2.0 } }
    }

    pub fn to_map(&self, at: Point) -> Point {
        Point { x: self.offset.x + (at.x - self.shown.0) * self.scale, y: self.offset.y + (at.y - self.shown.1) * self.scale }
    }

    pub fn to_canvas(&self, on_map: Point) -> Point {
        Point { x: self.shown.0 + (on_map.x - self.offset.x) / self.scale, y: self.shown.1 + (on_map.y - self.offset.y) / self.scale }
    }

    /// The CSS transform (`translate` in pixels, then `scale`, from the top
    /// left) that moves a map drawn with `self` to where `now` draws it: the
    /// map's cards are drawn once per edit, and a view that grows the box
    /// shown only moves that drawing.
    pub fn onto(&self, now: &MapFit) -> (Point, f64) {
        let k = now.scale / self.scale;
        let origin = now.to_map(self.to_canvas(Point { x: 0.0, y: 0.0 }));
        (origin, k)
    }
}

/// The step drawn under a canvas point (the one drawn last, on top), with
/// a little slack around each card so a wire dropped on its edge counts.
pub fn step_at(doc: &FlowDocument, point: Point) -> Option<&str> {
    const SLACK: f64 = 8.0;
    doc.steps.iter().enumerate().rev().find_map(|(i, step)| {
        let at = position_of(step, i);
        let inside = point.x >= at.x - SLACK
            && point.x <= at.x + NODE_WIDTH + SLACK
            && point.y >= at.y - SLACK
            && point.y <= at.y + NODE_HEIGHT + SLACK;
        inside.then_some(step.id.as_str())
    })
}

/// The steps whose cards lie wholly inside the box between two corners.
pub fn steps_in_box(doc: &FlowDocument, a: Point, b: Point) -> Vec<String> {
    let (left, right) = (a.x.min(b.x), a.x.max(b.x));
    let (top, bottom) = (a.y.min(b.y), a.y.max(b.y));
    doc.steps
        .iter()
        .enumerate()
        .filter(|(i, step)| {
            let at = position_of(step, *i);
            at.x >= left && at.x + NODE_WIDTH <= right && at.y >= top && at.y + NODE_HEIGHT <= bottom
        })
        .map(|(_, step)| step.id.clone())
        .collect()
}

/// Moves steps by `(dx, dy)`, each landing on the grid.
pub fn move_by(doc: &FlowDocument, ids: &[String], dx: f64, dy: f64) -> Change {
    let at = positions(doc);
    let moves = ids
        .iter()
        .filter_map(|id| {
            let from = at.get(id.as_str())?;
            Some((id.clone(), Some(snap(Position { x: from.x + dx, y: from.y + dy }))))
        })
        .collect();
    Change::MoveSteps { moves }
}

/// Removes steps and wires; the wires touching removed steps go with them.
pub fn remove(ids: Vec<String>, edges: Vec<Edge>) -> Change {
    let gone: HashSet<&str> = ids.iter().map(String::as_str).collect();
    // A wire that goes with its step anyway is not named twice.
    let edges = edges.into_iter().filter(|e| !gone.contains(e.from.as_str()) && !gone.contains(e.to.as_str())).collect();
    Change::RemoveSteps { ids, edges }
}

/// Copies of `steps` with fresh ids, shifted by `offset`, and the wires
/// among them (wires to steps outside the copy are left out). What paste
/// and duplicate add.
pub fn copies(doc: &FlowDocument, steps: &[Step], edges: &[Edge], offset: (f64, f64)) -> Change {
    let mut scratch = doc.clone();
    let mut renamed = HashMap::new();
    let mut added = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let mut copy = step.clone();
        copy.id = new_step_id(&scratch, &step.kind);
        let at = position_of(step, i);
        copy.position = Some(snap(Position { x: at.x + offset.0, y: at.y + offset.1 }));
        renamed.insert(step.id.clone(), copy.id.clone());
        scratch.steps.push(copy.clone());
        added.push(copy);
    }
    let edges = edges
        .iter()
        .filter_map(|edge| {
            Some(Edge { from: renamed.get(&edge.from)?.clone(), port: edge.port.clone(), to: renamed.get(&edge.to)?.clone() })
        })
        .collect();
    Change::AddSteps { steps: added, edges }
}

/// Lays the flow out in layers, left to right: a step sits one column to
/// the right of the furthest step leading into it (longest path from the
/// start, with the wires that close a cycle left out), and steps in a
/// column keep the order of their ports (a condition's "yes" above its
/// "no"). Steps the start cannot reach are laid out the same way from the
/// heads of their chains. Returned as one undoable move.
pub fn auto_layout(doc: &FlowDocument) -> Change {
    const COLUMN: f64 = NODE_WIDTH + 80.0;
    const ROW: f64 = NODE_HEIGHT + 40.0;
    const ORIGIN: f64 = 40.0;

    // The first step of each id is the one drawn and moved.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in doc.steps.iter().enumerate() {
        index.entry(step.id.as_str()).or_insert(i);
    }
    let n = doc.steps.len();
    let mut out: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for edge in &doc.edges {
        let (Some(&from), Some(&to)) = (index.get(edge.from.as_str()), index.get(edge.to.as_str())) else { continue };
        let rank = ports(&doc.steps[from]).iter().position(|port| *port == edge.port).unwrap_or(usize::MAX);
        out[from].push((rank, to));
    }
    for wires in &mut out {
        wires.sort();
    }

    // Breadth-first from the start (then from whatever is left) gives each
    // step its discovery order; a wire pointing back in that order closes a
    // cycle and does not push its target right.
    let mut order = vec![usize::MAX; n];
    let mut visited = Vec::with_capacity(n);
    let starts = index.values().copied().filter(|&i| doc.steps[i].kind == StepKind::Start);
    let mut roots: Vec<usize> = starts.collect();
    roots.sort();
    // Then steps nothing leads into (the heads of unreachable chains), so a
    // chain the start cannot reach still reads left to right; then the rest.
    let mut led_into = vec![false; n];
    for wires in &out {
        for &(_, to) in wires {
            led_into[to] = true;
        }
    }
    let mut rest: Vec<usize> = index.values().copied().collect();
    rest.sort_by_key(|&i| (led_into[i], i));
    for root in roots.into_iter().chain(rest) {
        if order[root] != usize::MAX {
            continue;
        }
        order[root] = visited.len();
        visited.push(root);
        let mut queue = VecDeque::from([root]);
        while let Some(at) = queue.pop_front() {
            for &(_, to) in &out[at] {
                if order[to] == usize::MAX {
                    order[to] = visited.len();
                    visited.push(to);
                    queue.push_back(to);
                }
            }
        }
    }
    let mut layer = vec![0usize; n];
    for &at in &visited {
        for &(_, to) in &out[at] {
            if order[to] > order[at] {
                layer[to] = layer[to].max(layer[at] + 1);
            }
        }
    }
    let mut columns: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &at in &visited {
        columns.entry(layer[at]).or_default().push(at);
    }
    let moves = columns
        .into_iter()
        .flat_map(|(column, steps)| {
            steps.into_iter().enumerate().map(move |(row, at)| {
                let position = Position { x: ORIGIN + column as f64 * COLUMN, y: ORIGIN + row as f64 * ROW };
                (doc.steps[at].id.clone(), Some(snap(position)))
            })
        })
        .collect();
    Change::MoveSteps { moves }
}

/// Pan and zoom: a canvas point `p` is drawn at `p * zoom + (x, y)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Viewport {
    pub x: f64,
    pub y: f64,
    pub zoom: f64,
}

impl Default for Viewport {
    fn default() -> Self {
        Viewport { x: 0.0, y: 0.0, zoom: 1.0 }
    }
}

pub const MIN_ZOOM: f64 = 0.25;
pub const MAX_ZOOM: f64 = 2.5;
/// Below this, step names are too small to read.
pub const READABLE_ZOOM: f64 = 0.6;
/// Below this, the cards' words are specks (a 13 px name under 6 px): the
/// canvas draws the cards without them, so a big flow zoomed out is a map
/// of shapes and colours, and is quick to draw.
pub const WORDLESS_ZOOM: f64 = 0.45;

impl Viewport {
    /// The canvas point under a point of the view.
    pub fn to_canvas(self, screen: Point) -> Point {
        Point { x: (screen.x - self.x) / self.zoom, y: (screen.y - self.y) / self.zoom }
    }

    pub fn to_screen(self, canvas: Point) -> Point {
        Point { x: canvas.x * self.zoom + self.x, y: canvas.y * self.zoom + self.y }
    }

    /// Zooms by `factor` keeping the canvas point under `screen` where it
    /// is, so the wheel zooms around the pointer.
    pub fn zoom_around(self, screen: Point, factor: f64) -> Viewport {
        let zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        let anchor = self.to_canvas(screen);
        Viewport { x: screen.x - anchor.x * zoom, y: screen.y - anchor.y * zoom, zoom }
    }

    /// Two fingers moved from `(a0, b0)` to `(a1, b1)` (screen points):
    /// the view zooms by how far they spread, and the canvas point that was
    /// under their midpoint stays under it as it moves.
    pub fn pinch(self, a0: Point, b0: Point, a1: Point, b1: Point) -> Viewport {
        let apart = |a: Point, b: Point| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        let mid = |a: Point, b: Point| Point { x: (a.x + b.x) / 2.0, y: (a.y + b.y) / 2.0 };
        let before = apart(a0, b0);
        let factor = if before < 1.0 { 1.0 } else { apart(a1, b1) / before };
        let zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        let anchor = self.to_canvas(mid(a0, b0));
        let now = mid(a1, b1);
        Viewport { x: now.x - anchor.x * zoom, y: now.y - anchor.y * zoom, zoom }
    }

    /// Shows the box `(x, y, width, height)` of canvas space whole and
    /// centred in a view of `width` by `height`, never enlarged past 1:1.
    pub fn fit(bounds: (f64, f64, f64, f64), width: f64, height: f64) -> Viewport {
        let (bx, by, bw, bh) = bounds;
        if bw <= 0.0 || bh <= 0.0 || width <= 0.0 || height <= 0.0 {
            return Viewport::default();
        }
        let zoom = (width / bw).min(height / bh).clamp(MIN_ZOOM, 1.0);
        Viewport { x: (width - bw * zoom) / 2.0 - bx * zoom, y: (height - bh * zoom) / 2.0 - by * zoom, zoom }
    }

    /// The view a flow opens with: as it is when it fits; otherwise zoomed
    /// out only as far as stays readable (`READABLE_ZOOM`), starting from its
    /// left edge (flows read left to right) and centred vertically when
    /// that fits.
    pub fn initial(bounds: (f64, f64, f64, f64), width: f64, height: f64) -> Viewport {
        let (bx, by, bw, bh) = bounds;
        if bw <= width && bh <= height && bx >= 0.0 && by >= 0.0 {
            return Viewport::default();
        }
        let fitted = Viewport::fit(bounds, width, height);
        if fitted.zoom >= READABLE_ZOOM {
            return fitted;
        }
        let zoom = READABLE_ZOOM;
        let y = if bh * zoom <= height { (height - bh * zoom) / 2.0 - by * zoom } else { -by * zoom };
        Viewport { x: -bx * zoom, y, zoom }
    }

    /// Pans so the canvas point sits in the middle of the view.
    pub fn centre_on(self, canvas: Point, width: f64, height: f64) -> Viewport {
        Viewport { x: width / 2.0 - canvas.x * self.zoom, y: height / 2.0 - canvas.y * self.zoom, zoom: self.zoom }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pinching_zooms_by_the_spread_around_the_fingers() {
        use super::Viewport;
        use crate::core::geometry::Point;
        let p = |x, y| Point { x, y };
        let view = Viewport { x: 10.0, y: 20.0, zoom: 1.0 };
        let spread = view.pinch(p(100.0, 100.0), p(200.0, 100.0), p(50.0, 100.0), p(250.0, 100.0));
        assert!((spread.zoom - 2.0).abs() < 1e-9);
        // The canvas point under the midpoint (150, 100) is still under it.
        let under = view.to_canvas(p(150.0, 100.0));
        let after = spread.to_canvas(p(150.0, 100.0));
        assert!((under.x - after.x).abs() < 1e-9 && (under.y - after.y).abs() < 1e-9);
        // Moving both fingers together pans without zooming.
        let pan = view.pinch(p(100.0, 100.0), p(200.0, 100.0), p(130.0, 140.0), p(230.0, 140.0));
        assert_eq!(pan, Viewport { x: 40.0, y: 60.0, zoom: 1.0 });
        // Fingers on the same spot do not divide by zero.
        assert_eq!(view.pinch(p(5.0, 5.0), p(5.0, 5.0), p(9.0, 9.0), p(9.0, 9.0)).zoom, 1.0);
    }

    use super::*;
    use crate::core::flow::FORMAT_V1;
    use proptest::prelude::*;

    fn step(id: &str, kind: StepKind, x: f64) -> Step {
        let mut step = Step::new(id, kind.clone());
        step.settings = default_settings(&kind);
        step.position = Some(Position { x, y: 0.0 });
        step
    }

    fn edge(from: &str, port: &str, to: &str) -> Edge {
        Edge { from: from.into(), port: port.into(), to: to.into() }
    }

    /// start -> w1 -> c1 (yes: e1)
    fn sample() -> FlowDocument {
        let mut doc = FlowDocument::new_draft("Sample");
        doc.steps.push(step("w1", StepKind::Wait, 300.0));
        doc.steps.push(step("c1", StepKind::Condition, 600.0));
        doc.steps.push(step("e1", StepKind::SendEmail, 900.0));
        doc.edges = vec![edge("start", "next", "w1"), edge("w1", "next", "c1"), edge("c1", "yes", "e1")];
        doc.canonicalize();
        doc
    }

    #[test]
    fn adding_a_step_inserts_it_in_id_order_and_undo_takes_it_away() {
        let mut doc = sample();
        let before = doc.clone();
        let new = new_step(&doc, StepKind::SendSms, Position { x: 311.0, y: 149.0 });
        assert_eq!(new.id, "send_sms_1");
        assert_eq!(new.position, Some(Position { x: 320.0, y: 140.0 }));
        let undo = apply(&mut doc, Change::AddSteps { steps: vec![new], edges: vec![] }).unwrap();
        let ids: Vec<&str> = doc.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["c1", "e1", "send_sms_1", "start", "w1"]);
        apply(&mut doc, undo).unwrap();
        assert_eq!(doc, before);
    }

    #[test]
    fn a_taken_id_is_refused_and_nothing_changes() {
        let mut doc = sample();
        let before = doc.clone();
        let refusal =
            apply(&mut doc, Change::AddSteps { steps: vec![step("w1", StepKind::Exit, 0.0)], edges: vec![] }).unwrap_err();
        assert_eq!(refusal, Refusal::DuplicateId("w1".into()));
        assert_eq!(refusal.to_string(), "A step with id “w1” already exists.");
        assert_eq!(doc, before);
    }

    #[test]
    fn removing_a_step_takes_its_wires_and_undo_brings_both_back() {
        let mut doc = sample();
        let before = doc.clone();
        let undo = apply(&mut doc, remove(vec!["w1".into()], vec![])).unwrap();
        assert!(doc.step("w1").is_none());
        assert_eq!(doc.edges, [edge("c1", "yes", "e1")]);
        assert_eq!(
            undo,
            Change::AddSteps {
                steps: vec![before.step("w1").unwrap().clone()],
                edges: vec![edge("start", "next", "w1"), edge("w1", "next", "c1")],
            }
        );
        apply(&mut doc, undo).unwrap();
        assert_eq!(doc, before);
    }

    #[test]
    fn removing_a_missing_step_or_wire_is_refused() {
        let mut doc = sample();
        assert_eq!(apply(&mut doc, remove(vec!["ghost".into()], vec![])), Err(Refusal::NoSuchStep("ghost".into())));
        assert_eq!(apply(&mut doc, Change::disconnect(edge("e1", "next", "w1"))), Err(Refusal::NoSuchEdge));
        assert_eq!(doc, sample());
    }

    #[test]
    fn connect_asks_can_connect_and_passes_on_its_refusal() {
        let mut doc = sample();
        let cases = [
            (edge("w1", "next", "e1"), ConnectRefusal::PortInUse),
            (edge("e1", "next", "e1"), ConnectRefusal::ToItself),
            (edge("e1", "next", "start"), ConnectRefusal::IntoStart),
            (edge("c1", "maybe", "e1"), ConnectRefusal::NoSuchPort),
            (edge("e1", "next", "ghost"), ConnectRefusal::NoSuchStep),
        ];
        for (wire, why) in cases {
            let refusal = apply(&mut doc, Change::Connect(wire.clone())).unwrap_err();
            assert_eq!(refusal, Refusal::Connect(why), "{wire:?}");
            assert_eq!(refusal.to_string(), why.message());
        }
        assert_eq!(doc, sample());

        let undo = apply(&mut doc, Change::Connect(edge("c1", "no", "w1"))).unwrap();
        assert!(doc.edges.contains(&edge("c1", "no", "w1")));
        assert_eq!(undo, Change::disconnect(edge("c1", "no", "w1")));
        apply(&mut doc, undo).unwrap();
        assert_eq!(doc, sample());
    }

    #[test]
    fn moving_snaps_and_undo_restores_even_a_missing_position() {
        let mut doc = sample();
        doc.steps.iter_mut().find(|s| s.id == "e1").unwrap().position = None;
        let before = doc.clone();
        let change = move_by(&doc, &["w1".into(), "e1".into()], 13.0, 47.0);
        assert_eq!(
            change,
            Change::MoveSteps {
                moves: vec![
                    ("w1".into(), Some(Position { x: 320.0, y: 40.0 })),
                    // e1 had no position: it moves from its drawn slot (index 1)
                    ("e1".into(), Some(Position { x: 300.0, y: 80.0 })),
                ]
            }
        );
        let undo = apply(&mut doc, change).unwrap();
        apply(&mut doc, undo).unwrap();
        assert_eq!(doc, before);
        assert_eq!(
            apply(&mut doc, Change::MoveSteps { moves: vec![("nope".into(), None)] }),
            Err(Refusal::NoSuchStep("nope".into()))
        );
    }

    #[test]
    fn update_replaces_name_settings_and_guard_only() {
        let mut doc = sample();
        let mut edited = doc.step("e1").unwrap().clone();
        edited.name = Some("Welcome".into());
        edited.settings.insert("subject".into(), json!("Hi {{first_name}}"));
        edited.position = Some(Position { x: -500.0, y: -500.0 });
        let undo = apply(&mut doc, Change::update(&edited)).unwrap();
        let now = doc.step("e1").unwrap();
        assert_eq!(now.name.as_deref(), Some("Welcome"));
        assert_eq!(now.setting_str("subject"), Some("Hi {{first_name}}"));
        assert_eq!(now.position, Some(Position { x: 900.0, y: 0.0 }), "position is not the inspector's");
        apply(&mut doc, undo).unwrap();
        assert_eq!(doc, sample());
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let mut doc = sample();
        let bad = Change::Batch(vec![
            Change::Connect(edge("c1", "no", "w1")),
            move_by(&doc, &["w1".into()], 100.0, 0.0),
            Change::Connect(edge("c1", "no", "e1")), // the first one used "no"
        ]);
        assert_eq!(apply(&mut doc, bad), Err(Refusal::Connect(ConnectRefusal::PortInUse)));
        assert_eq!(doc, sample());

        let good = Change::Batch(vec![Change::Connect(edge("c1", "no", "w1")), remove(vec!["e1".into()], vec![])]);
        let undo = apply(&mut doc, good).unwrap();
        assert_eq!(doc.edges.len(), 3);
        apply(&mut doc, undo).unwrap();
        assert_eq!(doc, sample());
    }

    #[test]
    fn undo_and_redo_walk_the_history() {
        let mut doc = sample();
        let mut history = UndoStack::new();
        assert!(!history.undo(&mut doc) && !history.redo(&mut doc));
        history.apply(&mut doc, Change::Connect(edge("c1", "no", "w1"))).unwrap();
        let connected = doc.clone();
        history.apply(&mut doc, remove(vec!["e1".into()], vec![])).unwrap();
        let removed = doc.clone();
        // a refused change is not recorded
        assert!(history.apply(&mut doc, Change::Connect(edge("w1", "next", "start"))).is_err());

        assert!(history.undo(&mut doc));
        assert_eq!(doc, connected);
        assert!(history.undo(&mut doc));
        assert_eq!(doc, sample());
        assert!(!history.can_undo() && history.can_redo());
        assert!(history.redo(&mut doc));
        assert_eq!(doc, connected);
        assert!(history.redo(&mut doc));
        assert_eq!(doc, removed);
        assert!(!history.can_redo());

        // a new change after an undo drops the redo
        history.undo(&mut doc);
        let nudge = move_by(&doc, &["w1".into()], 40.0, 0.0);
        history.apply(&mut doc, nudge).unwrap();
        assert!(!history.can_redo());
    }

    #[test]
    fn typing_in_one_field_undoes_as_one_step() {
        let mut doc = sample();
        let mut history = UndoStack::new();
        let mut e1 = doc.step("e1").unwrap().clone();
        for typed in ["H", "Hi", "Hi!"] {
            e1.settings.insert("subject".into(), json!(typed));
            history.apply_merging(&mut doc, Change::update(&e1), "e1/subject").unwrap();
        }
        e1.settings.insert("body".into(), json!("Hello"));
        history.apply_merging(&mut doc, Change::update(&e1), "e1/body").unwrap();
        history.undo(&mut doc);
        assert_eq!(doc.step("e1").unwrap().setting_str("subject"), Some("Hi!"));
        assert_eq!(doc.step("e1").unwrap().setting_str("body"), None);
        history.undo(&mut doc);
        assert_eq!(doc, sample());

        // after a seal, the same field starts a new undo step
        history.apply_merging(&mut doc, Change::update(&e1), "e1/subject").unwrap();
        history.seal();
        e1.settings.insert("subject".into(), json!("Later"));
        history.apply_merging(&mut doc, Change::update(&e1), "e1/subject").unwrap();
        history.undo(&mut doc);
        assert_eq!(doc.step("e1").unwrap().setting_str("subject"), Some("Hi!"));
    }

    #[test]
    fn new_ids_take_the_first_free_number() {
        let mut doc = sample();
        assert_eq!(new_step_id(&doc, &StepKind::Wait), "wait_1");
        doc.steps.push(step("wait_1", StepKind::Wait, 0.0));
        doc.steps.push(step("wait_3", StepKind::Wait, 0.0));
        assert_eq!(new_step_id(&doc, &StepKind::Wait), "wait_2");
    }

    #[test]
    fn snapping_rounds_to_the_nearest_grid_point() {
        assert_eq!(snap(Position { x: 9.9, y: 10.0 }), Position { x: 0.0, y: 20.0 });
        assert_eq!(snap(Position { x: -9.0, y: -31.0 }), Position { x: 0.0, y: -40.0 });
        assert_eq!(snap(Position { x: -9.0, y: 0.0 }).x.to_string(), "0", "no negative zero");
    }

    #[test]
    fn copies_get_new_ids_and_keep_only_their_inner_wires() {
        let doc = sample();
        let picked: Vec<Step> = ["w1", "c1"].iter().map(|id| doc.step(id).unwrap().clone()).collect();
        let change = copies(&doc, &picked, &doc.edges, (40.0, 40.0));
        let Change::AddSteps { steps, edges } = &change else { panic!("{change:?}") };
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["wait_1", "condition_1"]);
        assert_eq!(steps[0].position, Some(Position { x: 340.0, y: 40.0 }));
        assert_eq!(edges, &[edge("wait_1", "next", "condition_1")]);
        let mut doc = doc;
        apply(&mut doc, change).unwrap();
        assert_eq!(doc.steps.len(), 6);
    }

    #[test]
    fn the_index_finds_each_step_and_keeps_the_first_of_a_repeated_id() {
        let mut doc = sample();
        let index = step_index(&doc);
        assert_eq!(index.len(), doc.steps.len());
        for (i, step) in doc.steps.iter().enumerate() {
            assert_eq!(index[&step.id], i);
        }
        doc.steps.push(step("w1", StepKind::Wait, 1200.0));
        let at = doc.steps.iter().position(|s| s.id == "w1").unwrap();
        assert_eq!(step_index(&doc)["w1"], at);
    }

    #[test]
    fn wire_ends_follow_a_dragged_step_to_where_it_would_land() {
        let doc = sample();
        let index = step_index(&doc);
        // c1 (condition at x 600) --yes--> e1 (at x 900): "yes" is the first of two slots.
        let anchor = WireAnchor::of(&doc, &index, &edge("c1", "yes", "e1")).unwrap();
        assert_eq!(anchor, WireAnchor { from: Position { x: 600.0, y: 0.0 }, slot: 0, slots: 2, to: Position { x: 900.0, y: 0.0 } });
        let still = anchor.ends(None, None);
        assert_eq!(still, (output_point(anchor.from, 0, 2), input_point(anchor.to)));
        // Dragging e1 by (33, 9) draws it on the grid point it would land on: (940, 0)...
        let (from, to) = anchor.ends(None, Some((33.0, 9.0)));
        assert_eq!(from, still.0);
        assert_eq!(to, input_point(Position { x: 940.0, y: 0.0 }));
        // ...and the same drag of both ends moves the whole wire alike.
        let (a, b) = anchor.ends(Some((33.0, 9.0)), Some((33.0, 9.0)));
        assert_eq!((a.x - still.0.x, b.x - still.1.x), (40.0, 40.0));
        assert_eq!(dragged(Position { x: 600.0, y: 0.0 }, (-11.0, 29.0)), Position { x: 580.0, y: 20.0 });
        // A wire to or from a missing step has no anchor; an unknown port takes the first slot.
        assert_eq!(WireAnchor::of(&doc, &index, &edge("c1", "yes", "gone")), None);
        assert_eq!(WireAnchor::of(&doc, &index, &edge("c1", "maybe", "e1")).unwrap().slot, 0);
    }

    #[test]
    fn a_step_wears_its_worst_finding() {
        use crate::core::{Code, Finding};
        let finding = |code: Code, step: Option<&str>| Finding {
            code,
            step: step.map(str::to_owned),
            port: None,
            setting: None,
            message: String::new(),
        };
        // Cross-flow errors are merged into `errors` after the warnings were
        // listed: the order of the lists does not decide the badge.
        let findings = Findings {
            errors: vec![finding(Code::MissingSetting, Some("e1")), finding(Code::NoStart, None)],
            warnings: vec![
                finding(Code::UnconnectedOutput, Some("c1")),
                finding(Code::SmsMultiSegment, Some("c1")),
                finding(Code::UnreachableStep, Some("e1")),
            ],
        };
        let mut levels: Vec<(String, Level)> = step_levels(&findings).into_iter().collect();
        levels.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(levels, [("c1".to_owned(), Level::Warning), ("e1".to_owned(), Level::Error)]);
        let late_error = Findings { errors: vec![], warnings: vec![finding(Code::NoWayOut, Some("w1")), finding(Code::Recursion, Some("w1"))] };
        assert_eq!(step_levels(&late_error).get("w1"), Some(&Level::Error));
    }

    #[test]
    fn the_map_fits_its_box_and_moves_a_drawing_onto_another_fit() {
        // 400 x 100 into 200 x 120: half scale, centred vertically.
        let fit = MapFit::new((-100.0, 0.0, 400.0, 100.0), 200.0, 120.0);
        assert_eq!(fit.scale, 0.5);
        assert_eq!(fit.to_map(Point { x: -100.0, y: 0.0 }), Point { x: 0.0, y: 35.0 });
        assert_eq!(fit.to_canvas(Point { x: 100.0, y: 60.0 }), Point { x: 100.0, y: 50.0 });
        // The view grew the box: the drawing made for `fit`, moved by
        // `onto`, puts every canvas point where the new fit does.
        let now = MapFit::new((-300.0, -50.0, 800.0, 300.0), 200.0, 120.0);
        let (origin, k) = fit.onto(&now);
        for p in [Point { x: -100.0, y: 0.0 }, Point { x: 300.0, y: 100.0 }, Point { x: 17.0, y: -3.0 }] {
            let drawn = fit.to_map(p);
            let moved = Point { x: origin.x + drawn.x * k, y: origin.y + drawn.y * k };
            let want = now.to_map(p);
            assert!((moved.x - want.x).abs() < 1e-9 && (moved.y - want.y).abs() < 1e-9, "{p:?}: {moved:?} != {want:?}");
        }
        // Unchanged box: no move at all.
        assert_eq!(fit.onto(&fit), (Point { x: 0.0, y: 0.0 }, 1.0));
    }

    #[test]
    fn the_drawn_area_covers_the_view_with_a_margin_on_a_grid() {
        let view = Viewport { x: -100.0, y: 50.0, zoom: 0.5 };
        // The view shows canvas x 200..2120, y -100..1100.
        let area = Area::around(view, 960.0, 600.0);
        assert_eq!(area, Area { left: 0.0, top: -320.0, right: 2400.0, bottom: 1280.0 });
        // A small pan leaves it as it is; a long one moves it by whole cells.
        assert_eq!(Area::around(Viewport { x: -140.0, ..view }, 960.0, 600.0), area);
        assert_eq!(Area::around(Viewport { x: -400.0, ..view }, 960.0, 600.0).left, 640.0);
        // Cards and wires are drawn when any part of them comes near it.
        assert!(area.shows_step(Position { x: -180.0, y: 0.0 }));
        assert!(!area.shows_step(Position { x: -200.0, y: 0.0 }));
        assert!(area.shows_step(Position { x: 0.0, y: 1300.0 }));
        assert!(!area.shows_step(Position { x: 0.0, y: 1320.0 }));
        let p = |x, y| Point { x, y };
        assert!(area.shows_wire(p(-1000.0, 500.0), p(3000.0, 500.0)), "a wire crossing the view");
        assert!(!area.shows_wire(p(3000.0, 0.0), p(3400.0, 900.0)), "a wire wholly to the right");
        // A wire running backwards bulges left of its target by its reach.
        assert!(area.shows_wire(p(2700.0, 100.0), p(2500.0, 200.0)));
        assert!(!area.shows_wire(p(2800.0, 100.0), p(2600.0, 200.0)));
    }

    #[test]
    fn the_drawn_sets_hold_the_cards_and_wires_near_the_area() {
        let mut doc = FlowDocument::new_draft("Drawn");
        doc.steps.clear();
        for (id, x) in [("near", 100.0), ("far", 5000.0), ("farther", 5400.0)] {
            let mut step = new_step(&doc, StepKind::Wait, Position { x, y: 100.0 });
            step.id = id.into();
            doc.steps.push(step);
        }
        let edge = |from: &str, to: &str| Edge { from: from.into(), port: "next".into(), to: to.into() };
        doc.edges = vec![edge("near", "far"), edge("far", "farther"), edge("near", "gone")];
        let area = Area::around(Viewport::default(), 960.0, 600.0);
        let index = step_index(&doc);
        assert_eq!(steps_drawn_in(&doc, area), vec!["near".to_owned()]);
        // The wire leaving the view is drawn; one wholly outside it is not,
        // nor one whose target is missing.
        assert_eq!(wires_drawn_in(&doc, &index, area), vec![edge("near", "far")]);
    }

    #[test]
    fn the_drawn_sets_list_what_is_nearest_the_middle_first() {
        let mut doc = FlowDocument::new_draft("Middle");
        doc.steps.clear();
        // The area around the default view is -160..1120 x -160..800: its
        // middle is (480, 320).
        for (id, x, y) in [("corner", 0.0, 0.0), ("middle", 400.0, 300.0), ("edge", 1000.0, 300.0)] {
            let mut step = new_step(&doc, StepKind::Wait, Position { x, y });
            step.id = id.into();
            doc.steps.push(step);
        }
        let edge = |from: &str, to: &str| Edge { from: from.into(), port: "next".into(), to: to.into() };
        doc.edges = vec![edge("corner", "edge"), edge("middle", "edge")];
        let area = Area::around(Viewport::default(), 960.0, 600.0);
        assert_eq!(steps_drawn_in(&doc, area), ["middle", "corner", "edge"]);
        // A wire counts by the point halfway between its ends: corner to
        // edge crosses the middle; middle to edge lies right of it.
        assert_eq!(wires_drawn_in(&doc, &step_index(&doc), area), [edge("corner", "edge"), edge("middle", "edge")]);
    }

    #[test]
    fn catching_up_drops_what_left_at_once_and_lets_in_a_budget_in_order() {
        let drawn: HashSet<&str> = HashSet::from(["a", "b", "gone"]);
        let wanted = ["c", "a", "d", "e", "b", "f"];
        let (next, all) = catch_up(&drawn, &wanted, 2);
        assert_eq!(next, HashSet::from(["a", "b", "c", "d"]));
        assert!(!all);
        let (next, all) = catch_up(&next, &wanted, 2);
        assert_eq!(next, HashSet::from(["a", "b", "c", "d", "e", "f"]));
        assert!(all);
        // Nothing new: done, whatever the budget.
        assert_eq!(catch_up(&next, &wanted, 0), (next.clone(), true));
        // A key listed twice joins once and costs the budget once.
        let (next, all) = catch_up(&HashSet::new(), &["x", "x", "y"], 2);
        assert_eq!((next, all), (HashSet::from(["x", "y"]), true));
        // Leaving costs nothing: an empty wish empties the drawing at once.
        assert_eq!(catch_up(&drawn, &[], 0), (HashSet::new(), true));
    }

    #[test]
    fn the_drawn_area_follows_the_view_only_when_it_must() {
        let view = Viewport { x: -100.0, y: 50.0, zoom: 0.5 };
        let first = Area::follow(None, view, 960.0, 600.0, false);
        // around() needs 0..2400 x -320..1280: a quarter of that to spare, on the grid
        assert_eq!(first, Area { left: -640.0, top: -800.0, right: 3040.0, bottom: 1760.0 });
        let follow = |view| Area::follow(Some(first), view, 960.0, 600.0, false);
        // zooming in a little, or panning within the spare room: no change
        assert_eq!(follow(view.zoom_around(Point { x: 480.0, y: 300.0 }, 1.2)), first);
        assert_eq!(follow(Viewport { x: -300.0, ..view }), first);
        // panning past it or zooming out beyond it: a new area around the view
        let far = Viewport { x: -1200.0, ..view };
        assert_eq!(follow(far), Area::follow(None, far, 960.0, 600.0, false));
        let out = view.zoom_around(Point { x: 480.0, y: 300.0 }, 0.5);
        assert_eq!(follow(out), Area::follow(None, out, 960.0, 600.0, false));
        // zooming far in: the area shrinks to the view again
        let close = view.zoom_around(Point { x: 480.0, y: 300.0 }, 4.0);
        assert_eq!(follow(close), Area::follow(None, close, 960.0, 600.0, false));
        assert!(follow(close).size() < first.size() / 4.0);
        // ... but not while the zoom is under way: the area it covers stays
        assert_eq!(Area::follow(Some(first), close, 960.0, 600.0, true), first);
        // and a moving view still gets a new area when it leaves the old one
        assert_eq!(Area::follow(Some(first), far, 960.0, 600.0, true), Area::follow(None, far, 960.0, 600.0, false));
    }

    #[test]
    fn hit_testing_and_box_selection_use_the_cards() {
        let doc = sample();
        assert_eq!(step_at(&doc, Point { x: 310.0, y: 20.0 }), Some("w1"));
        assert_eq!(step_at(&doc, Point { x: 295.0, y: 20.0 }), Some("w1"), "slack at the edge");
        assert_eq!(step_at(&doc, Point { x: 500.0, y: 20.0 }), None);
        assert_eq!(steps_in_box(&doc, Point { x: 700.0, y: 100.0 }, Point { x: 250.0, y: -10.0 }), ["w1"]);
    }

    #[test]
    fn auto_layout_puts_steps_in_columns_by_longest_path() {
        let mut doc = sample();
        doc.steps.push(step("x1", StepKind::Exit, 0.0));
        doc.edges.push(edge("c1", "no", "x1"));
        doc.edges.push(edge("e1", "next", "w1")); // a loop back: ignored for layering
        let Change::MoveSteps { moves } = auto_layout(&doc) else { panic!() };
        let at: HashMap<&str, Position> = moves.iter().map(|(id, p)| (id.as_str(), p.unwrap())).collect();
        let column = |id: &str| ((at[id].x - 40.0) / (NODE_WIDTH + 80.0)).round() as i64;
        assert_eq!(
            ["start", "w1", "c1", "e1", "x1"].map(column),
            [0, 1, 2, 3, 3]
        );
        assert!(at["e1"].y < at["x1"].y, "yes above no");
        let mut laid = doc.clone();
        let undo = apply(&mut laid, Change::MoveSteps { moves }).unwrap();
        apply(&mut laid, undo).unwrap();
        assert_eq!(laid, doc);
    }

    #[test]
    fn auto_layout_reads_unreachable_chains_left_to_right_too() {
        let mut doc = sample();
        // y -> x, with x first in the document: x must still land right of y
        doc.steps.push(step("x", StepKind::Exit, 0.0));
        doc.steps.push(step("y", StepKind::Wait, 0.0));
        doc.edges.push(edge("y", "next", "x"));
        let Change::MoveSteps { moves } = auto_layout(&doc) else { panic!() };
        let at: HashMap<&str, Position> = moves.iter().map(|(id, p)| (id.as_str(), p.unwrap())).collect();
        assert!(at["x"].x > at["y"].x, "{at:?}");
        assert_eq!(moves.len(), doc.steps.len(), "every step is placed");
    }

    #[test]
    fn zoom_keeps_the_point_under_the_pointer() {
        let view = Viewport { x: 30.0, y: -20.0, zoom: 1.0 };
        let pointer = Point { x: 400.0, y: 300.0 };
        let under = view.to_canvas(pointer);
        let zoomed = view.zoom_around(pointer, 1.5);
        assert_eq!(zoomed.zoom, 1.5);
        let after = zoomed.to_canvas(pointer);
        assert!((after.x - under.x).abs() < 1e-9 && (after.y - under.y).abs() < 1e-9);
        assert_eq!(view.zoom_around(pointer, 100.0).zoom, MAX_ZOOM);
        let p = Point { x: 12.0, y: 34.0 };
        let back = zoomed.to_canvas(zoomed.to_screen(p));
        assert!((back.x - p.x).abs() < 1e-9);
    }

    #[test]
    fn fit_shows_the_whole_flow_centred() {
        let view = Viewport::fit((0.0, 0.0, 2000.0, 500.0), 1000.0, 500.0);
        assert_eq!(view, Viewport { x: 0.0, y: 125.0, zoom: 0.5 });
        // a small flow is not blown up
        let view = Viewport::fit((100.0, 100.0, 200.0, 100.0), 1000.0, 500.0);
        assert_eq!(view, Viewport { x: 300.0, y: 100.0, zoom: 1.0 });
        assert_eq!(Viewport::default().centre_on(Point { x: 100.0, y: 50.0 }, 800.0, 600.0).x, 300.0);
    }

    #[test]
    fn a_flow_opens_readable_from_its_left_edge() {
        // fits: left as it is
        assert_eq!(Viewport::initial((40.0, 40.0, 500.0, 300.0), 800.0, 600.0), Viewport::default());
        // a bit too big: fitted
        assert_eq!(Viewport::initial((0.0, 0.0, 1000.0, 500.0), 800.0, 600.0).zoom, 0.8);
        // far too wide: readable zoom, left edge in view, centred vertically
        let view = Viewport::initial((40.0, 100.0, 4000.0, 400.0), 800.0, 600.0);
        assert_eq!(view, Viewport { x: -24.0, y: 120.0, zoom: READABLE_ZOOM });
        assert_eq!(view.to_screen(Point { x: 0.0, y: 100.0 + 200.0 }).y, 300.0, "its middle in the middle");
        assert_eq!(view.to_screen(Point { x: 40.0, y: 100.0 }).x, 0.0);
    }

    // -- properties -----------------------------------------------------

    const KINDS: [StepKind; 6] =
        [StepKind::Start, StepKind::Wait, StepKind::Condition, StepKind::SendEmail, StepKind::Exit, StepKind::Webhook];

    fn arb_doc() -> impl Strategy<Value = FlowDocument> {
        let steps = prop::collection::btree_map(
            "[a-e][0-9]",
            (prop::sample::select(KINDS.to_vec()), prop::option::of((-50i32..50, -50i32..50))),
            0..8,
        );
        steps.prop_flat_map(|steps| {
            let ids: Vec<String> = steps.keys().cloned().chain(["ghost".to_owned()]).collect();
            let edges = prop::collection::btree_set(
                (
                    prop::sample::select(ids.clone()),
                    prop::sample::select(vec!["next", "yes", "no", "failed"]),
                    prop::sample::select(ids),
                ),
                0..10,
            );
            (Just(steps), edges).prop_map(|(steps, edges)| FlowDocument {
                format: Some(FORMAT_V1.into()),
                name: "Fuzz".into(),
                settings: Default::default(),
                steps: steps
                    .into_iter()
                    .map(|(id, (kind, at))| {
                        let mut step = Step::new(id, kind.clone());
                        step.settings = default_settings(&kind);
                        step.position = at.map(|(x, y)| Position { x: f64::from(x) * 10.0, y: f64::from(y) * 10.0 });
                        step
                    })
                    .collect(),
                edges: edges.into_iter().map(|(from, port, to)| edge(&from, port, &to)).collect(),
            })
        })
    }

    /// A change made of names that may or may not exist in the document.
    fn arb_change() -> impl Strategy<Value = Change> {
        let id = || "[a-e][0-9]|ghost|wait_1";
        let some_edge =
            || (id(), prop::sample::select(vec!["next", "yes", "no", "failed"]), id()).prop_map(|(f, p, t)| edge(&f, p, &t));
        let leaf = prop_oneof![
            (prop::sample::select(KINDS.to_vec()), -20i32..20).prop_map(|(kind, x)| {
                // "ghost" is named by dangling wires in some documents
                let id = if x % 3 == 0 { "ghost".to_owned() } else { format!("{}_1", kind.as_str()) };
                let mut s = Step::new(id, kind);
                s.position = Some(Position { x: f64::from(x) * 20.0, y: 0.0 });
                Change::AddSteps { steps: vec![s], edges: vec![] }
            }),
            (prop::collection::vec(id(), 0..3), prop::collection::vec(some_edge(), 0..2))
                .prop_map(|(ids, edges)| Change::RemoveSteps { ids, edges }),
            prop::collection::vec((id(), prop::option::of((-9i32..9, -9i32..9))), 1..3).prop_map(|moves| {
                Change::MoveSteps {
                    moves: moves
                        .into_iter()
                        .map(|(id, at)| (id, at.map(|(x, y)| Position { x: f64::from(x) * 20.0, y: f64::from(y) * 20.0 })))
                        .collect(),
                }
            }),
            some_edge().prop_map(Change::Connect),
            (id(), ".{0,6}").prop_map(|(id, name)| Change::UpdateStep {
                id,
                name: Some(name.clone()),
                settings: json!({"subject": name}).as_object().unwrap().clone(),
                guard: None,
            }),
            prop::option::of("[A-Z][a-z]{2,8}/[A-Z][a-z]{2,8}").prop_map(|timezone| Change::SetFlowSettings(Box::new(FlowSettings {
                timezone,
                ..FlowSettings::default()
            }))),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| prop::collection::vec(inner, 0..4).prop_map(Change::Batch))
    }

    proptest! {
        #[test]
        fn apply_then_its_inverse_gives_back_the_document(doc in arb_doc(), change in arb_change()) {
            let mut edited = doc.clone();
            match apply(&mut edited, change.clone()) {
                Ok(inverse) => {
                    let after = edited.clone();
                    let redo = apply(&mut edited, inverse).expect("an inverse always applies");
                    prop_assert_eq!(&edited, &doc);
                    apply(&mut edited, redo).expect("a redo always applies");
                    prop_assert_eq!(&edited, &after);
                }
                Err(_) => prop_assert_eq!(&edited, &doc, "a refusal changes nothing"),
            }
        }

        #[test]
        fn undoing_everything_returns_to_the_start(doc in arb_doc(), changes in prop::collection::vec(arb_change(), 0..12)) {
            let mut edited = doc.clone();
            let mut history = UndoStack::new();
            let mut states = vec![doc.clone()];
            for change in changes {
                if history.apply(&mut edited, change).is_ok() {
                    states.push(edited.clone());
                }
            }
            let done = edited.clone();
            for expected in states.iter().rev().skip(1) {
                prop_assert!(history.undo(&mut edited));
                prop_assert_eq!(&edited, expected);
            }
            prop_assert!(!history.undo(&mut edited));
            while history.redo(&mut edited) {}
            prop_assert_eq!(&edited, &done);
        }

        #[test]
        fn connect_succeeds_exactly_when_can_connect_says_so(doc in arb_doc(), from in "[a-e][0-9]", port in "next|yes|no", to in "[a-e][0-9]") {
            let mut edited = doc.clone();
            let wire = edge(&from, &port, &to);
            let allowed = validate::can_connect(&doc, &from, &port, &to);
            let result = apply(&mut edited, Change::Connect(wire.clone()));
            prop_assert_eq!(result.is_ok(), allowed.is_ok());
            prop_assert_eq!(edited.edges.contains(&wire), allowed.is_ok() || doc.edges.contains(&wire));
        }
    }
}
