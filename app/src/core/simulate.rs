//! The simulator: one contact through a flow on the production engine, with
//! a virtual clock and effects captured instead of sent.
//!
//! Awaited effects succeed at once; manual steps are completed by a
//! simulated person `manual_after` their due time (or stay pending); the
//! clock jumps from one wake time to the next until the window ends.
//! Contact events (`--events`) are delivered on the same clock in time
//! order; one at the same instant as a wake comes after it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::core::contact::Contact;
use crate::core::engagement::Received;
use crate::core::engine::{self, ActionRecord, Effect, EffectResult, Event, EventEffect, ManualOutcome, Participant, Phase, Status};
use crate::core::flow::FlowDocument;

/// How many events one simulation may process (a guard, not a limit
/// anybody should meet: each wait or manual step is one event).
const MAX_EVENTS: usize = 100_000;

#[derive(Clone, Debug)]
pub struct Options {
    pub start: Timestamp,
    pub window: SignedDuration,
    pub manual_after: Option<SignedDuration>,
    pub seed: u64,
}

/// `{"status", "actions", "effects"}` as FLOW_FORMAT.md shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    pub status: String,
    /// The timeline, one record per step reached (FLOW_FORMAT's fields,
    /// plus `visit`, `manual`, `owner`, `subject` and `why`).
    pub actions: Vec<ActionRecord>,
    pub effects: Vec<SimEffect>,
    /// The contact events delivered and what each did (only when some were given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SimEvent>,
    /// The contact as the flow left it (not part of the CLI's output).
    #[serde(skip)]
    pub contact: Contact,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimEffect {
    pub step: String,
    pub at: Timestamp,
    #[serde(flatten)]
    pub effect: Effect,
}

/// `{"at", "event", "step"?, "effect"}`: a delivered contact event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimEvent {
    pub at: Timestamp,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub effect: EventEffect,
}

/// Parses `30d`, `1h`, `90m`, `2w`, `45s` or sums like `1d12h`.
pub fn parse_span(text: &str) -> Result<SignedDuration, String> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    let bad = || format!("“{text}” is not a duration like 30d, 12h, 90m, 2w or 45s");
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let amount: i64 = digits.parse().map_err(|_| bad())?;
        total = amount.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 && text.trim().is_empty() {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(total))
}

pub fn simulate(flow: &FlowDocument, contact: &Contact, options: &Options) -> Simulation {
    simulate_with(flow, &engine::NoGroups, contact, options)
}

/// [`simulate`], for a flow that runs action groups.
pub fn simulate_with(flow: &FlowDocument, groups: &dyn engine::Groups, contact: &Contact, options: &Options) -> Simulation {
    simulate_events(flow, groups, contact, options, &[])
}

/// [`simulate_with`], with contact events delivered on the virtual clock
/// (those after the window are not delivered).
pub fn simulate_events(
    flow: &FlowDocument,
    groups: &dyn engine::Groups,
    contact: &Contact,
    options: &Options,
    events: &[Received],
) -> Simulation {
    let end = options.start + options.window;
    let mut now = options.start;
    let mut participant = Participant::new(options.seed);
    let mut contact = contact.clone();
    let mut actions: Vec<ActionRecord> = Vec::new();
    let mut effects: Vec<SimEffect> = Vec::new();
    let mut delivered: Vec<SimEvent> = Vec::new();
    let mut queue: Vec<Received> = events.iter().filter(|e| e.at <= end).cloned().collect();
    queue.sort_by_key(|e| e.at);
    let mut queue = std::collections::VecDeque::from(queue);
    let mut scheduled = Some((options.start, Event::Enroll));

    for _ in 0..MAX_EVENTS {
        let contact_first = match (&scheduled, queue.front()) {
            (Some((at, _)), Some(received)) => received.at < *at,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let (at, next) = match (contact_first, queue.pop_front()) {
            (true, Some(received)) => (received.at, Event::Engagement { received }),
            (_, front) => {
                if let Some(front) = front {
                    queue.push_front(front);
                }
                match scheduled.take() {
                    Some(next) => next,
                    None => break,
                }
            }
        };
        now = now.max(at);
        let about = match &next {
            Event::Engagement { received } => Some((received.at, received.event.kind().to_owned(), received.event.step().map(str::to_owned))),
            _ => None,
        };
        let step = engine::advance_with(flow, groups, &participant, &contact, next, now);
        participant = step.participant;
        contact = step.contact;
        for record in step.actions {
            match actions.iter_mut().find(|r| r.visit == record.visit) {
                Some(existing) => existing.update(record),
                None => actions.push(record),
            }
        }
        effects.extend(step.commands.into_iter().map(|c| SimEffect { step: c.step, at: now, effect: c.effect }));
        if let Some((at, event, step_id)) = about {
            delivered.push(SimEvent { at, event, step: step_id, effect: step.event_effect.unwrap_or(EventEffect::Ignored) });
        }
        scheduled = if participant.status.is_active() { next_scheduled(&participant, &effects, now, end, options) } else { None };
    }

    let status = match participant.status {
        Status::Completed => "completed",
        Status::Converted => "converted",
        Status::Exited => "exited",
        Status::Failed => "failed",
        Status::Held => "held",
        _ => "waiting",
    };
    Simulation {
        status: status.to_owned(),
        actions,
        effects,
        events: delivered,
        contact,
    }
}

/// What moves an active participant next, and when: an effect's outcome
/// at once, a simulated person `manual_after` a manual step's due time, or
/// its wake time, within the window.
fn next_scheduled(participant: &Participant, effects: &[SimEffect], now: Timestamp, end: Timestamp, options: &Options) -> Option<(Timestamp, Event)> {
    match participant.phase {
        // An automatic call is taken as answered.
        Phase::Effect { .. } if matches!(effects.last().map(|e| &e.effect), Some(Effect::Call { .. })) => {
            Some((now, Event::CallEnded { visit: participant.visit, status: "completed".into(), duration_secs: None }))
        }
        Phase::Effect { .. } => Some((now, Event::Effect { result: EffectResult::Done { updates: Default::default() } })),
        Phase::Manual { due_at } => match options.manual_after {
            Some(after) if due_at.max(now) + after <= end => {
                Some((due_at.max(now) + after, Event::Manual { outcome: ManualOutcome::Completed, disposition: None }))
            }
            _ => None,
        },
        Phase::Due | Phase::Waiting | Phase::Until { .. } | Phase::Held { .. } => match engine::next_wake(participant) {
            Some(at) if at <= end => Some((now.max(at), Event::Wake)),
            _ => None,
        },
    }
}
