//! The editor's reactive state: the document, its history, the selection
//! and the gesture under way. Every edit goes through [`EditorState::change`],
//! which hands a [`Change`] to the pure core and records its inverse.

use leptos::prelude::*;

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::core::editor::{catch_up, step_index, step_levels, steps_drawn_in, wires_drawn_in, Area, Change, UndoStack, Viewport};
use crate::core::flow::{Edge, FlowDocument, Step};
use crate::core::geometry::Point;
use crate::core::kinds::StepKind;
use crate::core::validate::{validate, Code, Context, Finding};
use crate::core::{Findings, Level};

/// A pointer gesture in progress. Nothing is changed until it ends, so a
/// drag is one undo step.
#[derive(Clone, Debug, PartialEq)]
pub enum Gesture {
    /// A kind dragged from the palette; `client` is the pointer on the page.
    Place { kind: StepKind, client: Point },
    /// Steps dragged by `(dx, dy)` canvas units so far.
    Move { ids: Vec<String>, from: Point, dx: f64, dy: f64 },
    /// A wire pulled from `from`'s `port`, its loose end at `pointer`.
    Connect { from: String, port: String, pointer: Point },
    /// The background dragged: the view follows the pointer.
    Pan { from_client: Point, start: Viewport },
    /// A selection box between two canvas points.
    Select { from: Point, to: Point },
    /// Two fingers on the background: the view as they touched down, and
    /// where they were (points on the canvas element, whose top left corner
    /// on the page is `origin`, read once as the pinch began).
    Pinch { start: Viewport, a: Point, b: Point, origin: Point },
}

/// Where saving stands, as the toolbar shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveState {
    Saved,
    Unsaved,
    Saving,
    Failed(String),
    /// Another tab saved first: autosave stops until the marketer chooses.
    Stale(String),
}

#[derive(Clone, Copy)]
pub struct EditorState {
    pub flow_id: i64,
    pub doc: RwSignal<FlowDocument>,
    pub history: RwSignal<UndoStack>,
    pub viewport: RwSignal<Viewport>,
    pub selected: RwSignal<Vec<String>>,
    pub selected_edge: RwSignal<Option<Edge>>,
    pub gesture: RwSignal<Option<Gesture>>,
    /// A wheel or pinch zoom is under way: set by each notch, cleared a
    /// moment after the last (the canvas draws again at the scale it ends at).
    pub zooming: RwSignal<bool>,
    /// How far a drag has carried its steps (canvas units, before
    /// snapping), read from `gesture`; the steps it carries are `carried`.
    /// A pointer move changes `moved_by` alone, and only the dragged steps
    /// and their wires read it: the other thousand steps of a big flow are
    /// not touched.
    pub moved_by: ReadSignal<(f64, f64)>,
    /// Each step with its place in `doc.steps` (the first of a repeated
    /// id), read step by step: a card or wire reads its own steps here, not
    /// the document, and an edit wakes only those of the steps it changed.
    pub steps: Keyed<String, (usize, Step)>,
    /// Each step's badge, from `findings`, read step by step (see
    /// [`Keyed`]): a change of findings wakes only the cards whose badge
    /// changed.
    pub badges: Keyed<String, Level>,
    /// The part of the canvas drawn in full (see [`Area`]).
    pub drawn_area: ReadSignal<Area>,
    /// The steps and wires within `drawn_area`, the selected steps and the
    /// dragged ones, each asked about one key at a time (see [`Membership`]).
    pub shown_steps: Membership<String>,
    pub shown_wires: Membership<Edge>,
    pub selection: Membership<String>,
    pub carried: Membership<String>,
    /// Fingers on the canvas background: pointer id and page point.
    pub touches: StoredValue<Vec<(i32, Point)>>,
    /// A refused change or other note, shown over the canvas.
    pub notice: RwSignal<Option<String>>,
    pub findings: Memo<Findings>,
    /// What only the server can know (links to other flows and to action
    /// groups), from the page load and each save; merged into `findings`.
    pub server_findings: RwSignal<Vec<Finding>>,
    /// Counts the edits; autosave watches it.
    pub edits: RwSignal<u64>,
    pub revision: RwSignal<i64>,
    pub save: RwSignal<SaveState>,
    /// The steps copied with Ctrl/Cmd+C, and the wires among them.
    pub clipboard: StoredValue<Option<(Vec<Step>, Vec<Edge>)>>,
    pub help_open: RwSignal<bool>,
    /// The canvas's size on the page, for fit and centring.
    pub canvas_size: RwSignal<(f64, f64)>,
    /// Participants per step (here / passed / failed), loaded in the browser.
    pub counts: RwSignal<std::collections::HashMap<String, crate::runtime_api::StepCount>>,
}

impl EditorState {
    pub fn new(flow_id: i64, doc: FlowDocument, revision: i64) -> Self {
        let doc = RwSignal::new(doc);
        let context = Context { flow_id: Some(flow_id.to_string()), ..Context::default() };
        let server_findings: RwSignal<Vec<Finding>> = RwSignal::new(Vec::new());
        let findings = Memo::new(move |_| {
            doc.with(|doc| {
                let mut findings = validate(doc, &context);
                server_findings.with(|extra| {
                    for finding in extra {
                        let cross_flow = matches!(finding.code, Code::UnknownTarget | Code::Recursion);
                        let still_there = finding.step.as_deref().is_some_and(|id| doc.step(id).is_some());
                        if cross_flow && still_there && !findings.errors.contains(finding) {
                            findings.errors.push(finding.clone());
                        }
                        // The server knows the contacts' fields: its
                        // warning stands while the setting still uses the tag.
                        if finding.code == Code::UnknownField && still_there && !findings.warnings.contains(finding) {
                            let uses = doc.step(finding.step.as_deref().unwrap_or_default()).is_some_and(|step| {
                                crate::core::merge::step_templates(step).iter().any(|t| {
                                    Some(&t.setting) == finding.setting.as_ref()
                                        && crate::core::merge::tags(&t.text).iter().any(|name| finding.message.contains(&format!("{{{{ {name} }}}}")))
                                })
                            });
                            if uses {
                                findings.warnings.push(finding.clone());
                            }
                        }
                    }
                });
                findings
            })
        });
        let gesture = RwSignal::new(None);
        let moved_by = settled(move |_| {
            gesture.with(|gesture| match gesture {
                Some(Gesture::Move { dx, dy, .. }) => (*dx, *dy),
                _ => (0.0, 0.0),
            })
        });
        let viewport = RwSignal::new(Viewport::default());
        let canvas_size = RwSignal::new((960.0, 600.0));
        let zooming = RwSignal::new(false);
        let view_moving = Memo::new(move |_| zooming.get() || gesture.with(|g| matches!(g, Some(Gesture::Pan { .. } | Gesture::Pinch { .. }))));
        let drawn_area = settled(move |before: Option<&Area>| {
            let (width, height) = canvas_size.get();
            Area::follow(before.copied(), viewport.get(), width, height, view_moving.get())
        });
        let index = Memo::new(move |_| doc.with(step_index));
        let levels = Memo::new(move |_| findings.with(step_levels));
        let badges = Keyed::new();
        keep(ImmediateEffect::new_isomorphic(move || levels.with(|levels| badges.sync(levels.iter(), |new, held| *new == held, |new| *new))));
        let steps = Keyed::new();
        keep(ImmediateEffect::new_isomorphic(move || {
            doc.with(|doc| {
                let entries = doc.steps.iter().enumerate().map(|(i, step)| (&step.id, (i, step)));
                steps.sync(entries, |(i, step), (j, old)| i == j && *step == old, |(i, step)| (i, step.clone()));
            })
        }));
        let selected = RwSignal::new(Vec::new());
        EditorState {
            flow_id,
            doc,
            history: RwSignal::new(UndoStack::new()),
            viewport,
            selected,
            selected_edge: RwSignal::new(None),
            gesture,
            zooming,
            moved_by,
            steps,
            badges,
            drawn_area,
            shown_steps: Membership::paced(move || doc.with(|doc| steps_drawn_in(doc, drawn_area.get())), STEPS_PER_FRAME),
            shown_wires: Membership::paced(move || index.with(|index| doc.with(|doc| wires_drawn_in(doc, index, drawn_area.get()))), WIRES_PER_FRAME),
            selection: Membership::new(move || selected.with(|ids| ids.iter().cloned().collect())),
            carried: Membership::new(move || {
                gesture.with(|gesture| match gesture {
                    Some(Gesture::Move { ids, .. }) => ids.iter().cloned().collect(),
                    _ => HashSet::new(),
                })
            }),
            touches: StoredValue::new(Vec::new()),
            notice: RwSignal::new(None),
            findings,
            server_findings,
            edits: RwSignal::new(0),
            revision: RwSignal::new(revision),
            save: RwSignal::new(SaveState::Saved),
            clipboard: StoredValue::new(None),
            help_open: RwSignal::new(false),
            canvas_size,
            counts: RwSignal::new(Default::default()),
        }
    }

    /// Applies a change; a refusal is shown and changes nothing.
    pub fn change(&self, change: Change) -> bool {
        self.record(change, None)
    }

    /// Applies a change that merges with the previous one of the same key
    /// in the history (keystrokes in one field).
    pub fn change_merging(&self, change: Change, key: String) -> bool {
        self.record(change, Some(key))
    }

    fn record(&self, change: Change, key: Option<String>) -> bool {
        let mut result = Ok(());
        self.history.update_untracked(|history| {
            self.doc.update_untracked(|doc| {
                result = match &key {
                    Some(key) => history.apply_merging(doc, change, key),
                    None => history.apply(doc, change),
                };
            })
        });
        match result {
            Ok(()) => {
                self.edited();
                self.notice.set(None);
                true
            }
            Err(refusal) => {
                self.notice.set(Some(refusal.to_string()));
                false
            }
        }
    }

    /// Ends a run of merged edits (a field lost focus).
    pub fn seal(&self) {
        self.history.update_untracked(UndoStack::seal);
    }

    pub fn undo(&self) {
        let mut done = false;
        self.history.update_untracked(|history| self.doc.update_untracked(|doc| done = history.undo(doc)));
        if done {
            self.edited();
            self.forget_missing();
        }
    }

    pub fn redo(&self) {
        let mut done = false;
        self.history.update_untracked(|history| self.doc.update_untracked(|doc| done = history.redo(doc)));
        if done {
            self.edited();
            self.forget_missing();
        }
    }

    fn edited(&self) {
        self.doc.notify();
        self.history.notify();
        self.edits.update(|n| *n += 1);
    }

    /// Drops selected steps and wires that no longer exist.
    fn forget_missing(&self) {
        let doc = self.doc.read_untracked();
        self.selected.update(|ids| ids.retain(|id| doc.step(id).is_some()));
        if self.selected_edge.with_untracked(|edge| edge.as_ref().is_some_and(|e| !doc.edges.contains(e))) {
            self.selected_edge.set(None);
        }
    }

    pub fn select_only(&self, id: &str) {
        self.selected.set(vec![id.to_owned()]);
        self.clear_selected_edge();
    }

    /// Clears the selection. Every step on the canvas watches it, so an
    /// empty selection is left alone rather than set again.
    pub fn clear_selection(&self) {
        if self.selected.with_untracked(|ids| !ids.is_empty()) {
            self.selected.set(Vec::new());
        }
        self.clear_selected_edge();
    }

    pub fn clear_selected_edge(&self) {
        if self.selected_edge.with_untracked(Option::is_some) {
            self.selected_edge.set(None);
        }
    }

    pub fn is_selected(&self, id: &str) -> bool {
        self.selected.with(|ids| ids.iter().any(|s| s == id))
    }

    /// The one selected step, for the inspector.
    pub fn single_selected(&self) -> Option<String> {
        self.selected.with(|ids| match ids.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }

    /// Deletes the selected steps (with their wires) and the selected wire.
    pub fn delete_selection(&self) {
        let ids = self.selected.get_untracked();
        let edges: Vec<Edge> = self.selected_edge.get_untracked().into_iter().collect();
        if ids.is_empty() && edges.is_empty() {
            return;
        }
        if self.change(crate::core::editor::remove(ids, edges)) {
            self.selected.set(Vec::new());
            self.selected_edge.set(None);
        }
    }
}

/// A signal that follows `compute` (handed the value it has now) and is
/// written only when the result differs. A memo would do the same for its
/// value, but every change in what it reads still wakes all its readers to
/// check it; a thousand cards read the drawn area and the dragged steps, and
/// a pan step or a pointer move must reach only the few whose answer changed.
fn settled<T>(compute: impl Fn(Option<&T>) -> T + Send + Sync + 'static) -> ReadSignal<T>
where
    T: PartialEq + Send + Sync + 'static,
{
    let signal = RwSignal::new(untrack(|| compute(None)));
    keep(ImmediateEffect::new_isomorphic(move || {
        let next = signal.with_untracked(|now| compute(Some(now)));
        if signal.with_untracked(|now| *now != next) {
            signal.set(next);
        }
    }));
    signal.read_only()
}

/// How many cards, and wires, start to be drawn in one frame when the drawn
/// area moves (see [`catch_up`]). In a trace of the editor bench's zoom on
/// the 2-core machine, one such batch took 9–14 ms of script; a run with
/// batches of 8 and 12 was no smoother (more frames held a batch).
const STEPS_PER_FRAME: usize = 24;
const WIRES_PER_FRAME: usize = 32;

/// Membership of a changing set, asked key by key: each key asked about
/// gets a flag of its own, and a change of the set flips only the flags of
/// the keys that went in or out. A thousand cards asking "am I selected?"
/// or "am I drawn?" of one signal would all wake (and re-subscribe, which
/// costs the signal a shift of its whole subscriber list each) on every
/// change; here only the cards whose answer changed do.
pub struct Membership<K: 'static> {
    flags: StoredValue<HashMap<K, ArcRwSignal<bool>>>,
    members: StoredValue<HashSet<K>>,
}

impl<K> Clone for Membership<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Membership<K> {}

impl<K> Membership<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// Follows `source`, the set's members.
    pub fn new(source: impl Fn() -> HashSet<K> + Send + Sync + 'static) -> Self {
        let membership = Membership::empty();
        keep(ImmediateEffect::new_isomorphic(move || membership.set_members(source())));
        membership
    }

    /// Follows `source` (the members, in the order to let them in) like
    /// [`Membership::new`], but once it has filled, a change lets in at most
    /// `per_frame` newcomers per animation frame; those that left go at once.
    pub fn paced(source: impl Fn() -> Vec<K> + Send + Sync + 'static, per_frame: usize) -> Self {
        // The server renders one frame: all of it, as the browser hydrates it.
        let per_frame = if cfg!(feature = "hydrate") { per_frame } else { usize::MAX };
        let membership = Membership::empty();
        let wanted = StoredValue::new(Vec::new());
        let booked = StoredValue::new(false);
        let filled = StoredValue::new(false);
        keep(ImmediateEffect::new_isomorphic(move || {
            wanted.set_value(source());
            if filled.get_value() {
                membership.catch_up(wanted, per_frame, booked);
            } else {
                filled.set_value(true);
                membership.set_members(wanted.with_value(|wanted| wanted.iter().cloned().collect()));
            }
        }));
        membership
    }

    /// An empty set: no flag exists yet for the first fill to flip.
    fn empty() -> Self {
        Membership { flags: StoredValue::new(HashMap::new()), members: StoredValue::new(HashSet::new()) }
    }

    /// Makes `now` the set, flipping the flags of the keys that went in or out.
    fn set_members(self, now: HashSet<K>) {
        let Some(before) = self.members.try_update_value(|members| std::mem::replace(members, now.clone())) else { return };
        self.flags.with_value(|flags| {
            for key in before.symmetric_difference(&now) {
                if let Some(flag) = flags.get(key) {
                    flag.set(now.contains(key));
                }
            }
        });
    }

    /// One frame's step towards `wanted`; books the next frame's while
    /// some are still to come (one booking at a time).
    fn catch_up(self, wanted: StoredValue<Vec<K>>, per_frame: usize, booked: StoredValue<bool>) {
        let step = wanted.try_with_value(|wanted| self.members.try_with_value(|drawn| catch_up(drawn, wanted, per_frame)));
        let Some(Some((next, all))) = step else { return }; // the editor has gone
        self.set_members(next);
        if all || booked.get_value() {
            return;
        }
        booked.set_value(true);
        #[cfg(feature = "hydrate")]
        request_animation_frame(move || {
            if booked.try_update_value(|booked| *booked = false).is_some() {
                self.catch_up(wanted, per_frame, booked);
            }
        });
    }

    /// Whether `key` is in the set; a reactive read of that key alone.
    pub fn contains(&self, key: &K) -> bool {
        let flag = self.flags.try_update_value(|flags| match flags.get(key) {
            Some(flag) => flag.clone(),
            None => {
                let inside = self.members.with_value(|members| members.contains(key));
                let flag = ArcRwSignal::new(inside);
                flags.insert(key.clone(), flag.clone());
                flag
            }
        });
        flag.is_some_and(|flag| flag.get())
    }
}

/// A map read key by key: each key asked about gets a signal of its own,
/// set only when that key's value changes, comes or goes. A thousand cards
/// each reading the whole document woke at every edit and subscribed to it
/// again, and each re-subscription costs the document's signal a shift of
/// its whole subscriber list: 100–160 ms per keystroke in the inspector on
/// the 1,000-step flow.
pub struct Keyed<K: 'static, V: 'static> {
    cells: StoredValue<HashMap<K, ArcRwSignal<Option<V>>>>,
    values: StoredValue<HashMap<K, V>>,
}

impl<K, V> Clone for Keyed<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Keyed<K, V> {}

impl<K, V> Keyed<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new() -> Self {
        Keyed { cells: StoredValue::new(HashMap::new()), values: StoredValue::new(HashMap::new()) }
    }

    /// Makes the map hold `entries` (the first of a repeated key counts):
    /// an entry `same` as the value held is left alone, a new or changed one
    /// is `make`d into a value, and keys no longer listed go. Only the cells
    /// of keys that changed, came or went are set.
    pub fn sync<'a, B>(self, entries: impl Iterator<Item = (&'a K, B)>, same: impl Fn(&B, &V) -> bool, make: impl Fn(B) -> V) {
        let mut changed = Vec::new();
        self.values.update_value(|values| {
            let mut listed = HashSet::new();
            for (key, entry) in entries {
                if !listed.insert(key) {
                    continue;
                }
                if !values.get(key).is_some_and(|held| same(&entry, held)) {
                    values.insert(key.clone(), make(entry));
                    changed.push(key.clone());
                }
            }
            let gone: Vec<K> = values.keys().filter(|key| !listed.contains(key)).cloned().collect();
            for key in gone {
                values.remove(&key);
                changed.push(key);
            }
        });
        self.cells.with_value(|cells| {
            for key in changed {
                if let Some(cell) = cells.get(&key) {
                    cell.set(self.values.with_value(|values| values.get(&key).cloned()));
                }
            }
        });
    }

    /// The signal of `key`'s value (`None` while it has none).
    pub fn cell(&self, key: &K) -> ArcRwSignal<Option<V>> {
        let cell = self.cells.try_update_value(|cells| {
            cells.entry(key.clone()).or_insert_with(|| ArcRwSignal::new(self.values.with_value(|values| values.get(key).cloned()))).clone()
        });
        // Once the editor has gone, a cell of its own that nothing sets.
        cell.unwrap_or_else(|| ArcRwSignal::new(None))
    }
}

/// Keeps an effect running as long as the component that made it. It runs
/// on the server too, so the page rendered there (a step selected from the
/// address, say) is the page the browser hydrates.
fn keep(effect: ImmediateEffect) {
    on_cleanup(move || effect.dispose());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// How many times `cell` has woke its readers since this was called.
    fn wakes(cell: ArcRwSignal<Option<u32>>) -> Arc<AtomicUsize> {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        std::mem::forget(ImmediateEffect::new_isomorphic(move || {
            cell.track();
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        count.fetch_sub(1, Ordering::SeqCst); // its first run
        count
    }

    #[test]
    fn a_keyed_map_wakes_only_the_keys_whose_value_changed_came_or_went() {
        let owner = Owner::new();
        owner.set();
        let map: Keyed<String, u32> = Keyed::new();
        let sync = |entries: &[(&str, u32)]| {
            let keys: Vec<String> = entries.iter().map(|(k, _)| k.to_string()).collect();
            map.sync(keys.iter().zip(entries.iter().map(|(_, v)| *v)), |new, held| new == held, |new| new);
        };
        sync(&[("a", 1), ("b", 2)]);
        let (a, b, c) = (map.cell(&"a".into()), map.cell(&"b".into()), map.cell(&"c".into()));
        assert_eq!((a.get_untracked(), b.get_untracked(), c.get_untracked()), (Some(1), Some(2), None));
        let (wa, wb, wc) = (wakes(a.clone()), wakes(b.clone()), wakes(c.clone()));

        sync(&[("a", 1), ("b", 3)]);
        assert_eq!(b.get_untracked(), Some(3));
        assert_eq!((wa.load(Ordering::SeqCst), wb.load(Ordering::SeqCst), wc.load(Ordering::SeqCst)), (0, 1, 0));

        // `a` goes, `c` comes; a repeated key keeps its first value.
        sync(&[("b", 3), ("c", 7), ("c", 9)]);
        assert_eq!((a.get_untracked(), c.get_untracked()), (None, Some(7)));
        assert_eq!((wa.load(Ordering::SeqCst), wb.load(Ordering::SeqCst), wc.load(Ordering::SeqCst)), (1, 1, 1));

        // A cell made after the fact starts from the value held.
        assert_eq!(map.cell(&"c".into()).get_untracked(), Some(7));
    }
}
