//! The simulator: one contact through a flow on the production engine, with
//! a virtual clock and effects captured instead of sent.
//!
//! Awaited effects succeed at once; manual steps are completed by a
//! simulated person `manual_after` their due time (or stay pending); the
//! clock jumps from one wake time to the next until the window ends.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::core::contact::Contact;
use crate::core::engine::{self, ActionRecord, Effect, EffectResult, Event, ManualOutcome, Participant, Phase, Status};
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
    let end = options.start + options.window;
    let mut now = options.start;
    let mut participant = Participant::new(options.seed);
    let mut contact = contact.clone();
    let mut actions: Vec<ActionRecord> = Vec::new();
    let mut effects: Vec<SimEffect> = Vec::new();
    let mut event = Some(Event::Enroll);

    for _ in 0..MAX_EVENTS {
        let Some(next) = event.take() else { break };
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

        if !participant.status.is_active() {
            break;
        }
        event = match participant.phase {
            // An automatic call is taken as answered.
            Phase::Effect { .. } if matches!(effects.last().map(|e| &e.effect), Some(Effect::Call { .. })) => {
                Some(Event::CallEnded { visit: participant.visit, status: "completed".into(), duration_secs: None })
            }
            Phase::Effect { .. } => Some(Event::Effect { result: EffectResult::Done { updates: Default::default() } }),
            Phase::Manual { due_at } => match options.manual_after {
                Some(after) if due_at.max(now) + after <= end => {
                    now = due_at.max(now) + after;
                    Some(Event::Manual { outcome: ManualOutcome::Completed, disposition: None })
                }
                _ => None,
            },
            Phase::Due | Phase::Waiting | Phase::Held { .. } => match engine::next_wake(&participant) {
                Some(at) if at <= end => {
                    now = now.max(at);
                    Some(Event::Wake)
                }
                _ => None,
            },
        };
    }

    let status = match participant.status {
        Status::Completed => "completed",
        Status::Exited => "exited",
        Status::Failed => "failed",
        Status::Held => "held",
        _ => "waiting",
    };
    Simulation {
        status: status.to_owned(),
        actions,
        effects,
        contact,
    }
}
