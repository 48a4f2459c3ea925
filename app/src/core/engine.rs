//! The step semantics: one pure function moves a participant through a
//! published flow version.
//!
//! `advance(flow, participant, contact, event, now)` returns the participant's
//! new state, the contact as the steps changed it, the commands the shell
//! must carry out (send an email, call a webhook…) and the timeline records
//! (one per step reached). `next_wake` says when to call it again. No clock,
//! no IO: production, the simulator and the editor's test run all drive this
//! same function, tests with a virtual clock.
//!
//! Events that do not fit the participant's state (a timer for a participant
//! waiting on an agent, anything for a finished participant) change nothing:
//! the shell may deliver late or twice without harm.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::calendar::{next_time_of_day, zone_for, Calendar, Due};
use crate::core::contact::{Channel, Contact};
use crate::core::engagement::{criteria_met_at, ContactEvent, History, Received};
use crate::core::flow::{CalendarZone, Duration, FlowDocument, Step, WhenUnmet};
use crate::core::kinds::{FieldChange, StepKind, StepSettings};
use crate::core::merge::{render, Escape};

/// How often a held step re-checks its guard.
pub const HOLD_RECHECK: SignedDuration = SignedDuration::from_mins(15);
/// Steps one advance may take before the participant is failed: a cycle
/// without a wait would otherwise spin for ever (validation reports those).
pub const MAX_STEPS_PER_ADVANCE: usize = 1_000;
/// The longest an automatic call may last: the provider is asked to hang
/// up by then (Twilio's `TimeLimit`).
pub const CALL_TIME_LIMIT: SignedDuration = SignedDuration::from_hours(1);
/// How long a participant waits for an automatic call's final status: the
/// time limit, up to ten minutes of ringing, and room for the outbox's
/// retries and a slow callback. Past it the step fails, so a callback that
/// never comes cannot hold the participant for ever.
pub const CALL_OUTCOME_DEADLINE: SignedDuration = SignedDuration::from_mins(90);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Due to run now.
    Ready,
    /// Waiting for time to pass, an agent, or an effect's outcome.
    Waiting,
    /// A guard with `when_unmet: hold` is not met yet.
    Held,
    Paused,
    Cancelled,
    /// Stopped without losing its status (kept in `prior_status`).
    Suppressed,
    Completed,
    /// Met the flow's goal (a finished status, like `completed`).
    Converted,
    Exited,
    Failed,
    /// A copy made by a bulk move, not yet started.
    Transition,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Waiting => "waiting",
            Status::Held => "held",
            Status::Paused => "paused",
            Status::Cancelled => "cancelled",
            Status::Suppressed => "suppressed",
            Status::Completed => "completed",
            Status::Converted => "converted",
            Status::Exited => "exited",
            Status::Failed => "failed",
            Status::Transition => "transition",
        }
    }

    /// The engine moves only participants in these states.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Ready | Status::Waiting | Status::Held)
    }

    /// The participation is over: nothing moves it again.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Completed | Status::Converted | Status::Exited | Status::Failed | Status::Cancelled)
    }
}

/// Where the participant is within its current step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// The step runs when `next_run_at` comes (on arrival, or a send
    /// waiting for business hours).
    Due,
    /// A wait step is counting down; when it ends the participant moves on.
    Waiting,
    /// A `wait_until` step, entered at `since`: an event or criteria end it
    /// by `met`, its timeout (`next_run_at`) by `timed_out`.
    Until { since: Timestamp },
    /// A guard is unmet; re-checked until met or the timeout.
    Held { since: Timestamp },
    /// A person must complete, skip or defer the step.
    Manual { due_at: Timestamp },
    /// An effect was handed to the shell; its outcome comes back as an event.
    Effect { attempt: u32 },
}

/// One enrollment's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub status: Status,
    /// The status a suppressed participant had, restored by unsuppress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_status: Option<Status>,
    pub step: Option<String>,
    pub phase: Phase,
    pub next_run_at: Option<Timestamp>,
    pub pass_count: u32,
    pub restarts: u32,
    /// Counts steps reached; timeline records and effects are keyed by it.
    pub visit: u32,
    /// When the current step is due (kept so its timeline record keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// Random branch draws per split step (0 ≤ draw < 100), kept so a
    /// replay takes the same branch.
    #[serde(default)]
    pub draws: BTreeMap<String, f64>,
    /// The branch (port) taken at each split step passed, for reports
    /// comparing a split's branches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub branches: BTreeMap<String, String>,
    /// When each split's branch was taken (a branch's clicks and replies
    /// count from then).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub branched_at: BTreeMap<String, Timestamp>,
    /// Seeds this participant's draws.
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Messages sent and events received, for waits, engagement criteria
    /// and goals (bounded).
    #[serde(default, skip_serializing_if = "History::is_empty")]
    pub history: History,
}

impl Participant {
    /// A participant about to enter; `advance` with [`Event::Enroll`] starts it.
    pub fn new(seed: u64) -> Self {
        Participant {
            status: Status::Ready,
            prior_status: None,
            step: None,
            phase: Phase::Due,
            next_run_at: None,
            pass_count: 0,
            restarts: 0,
            visit: 0,
            due_at: None,
            draws: BTreeMap::new(),
            branches: BTreeMap::new(),
            branched_at: BTreeMap::new(),
            seed,
            reason: None,
            history: History::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Enter the flow at its start step.
    Enroll,
    /// `next_run_at` has come.
    Wake,
    /// A person completed, skipped or deferred the current manual step.
    Manual {
        outcome: ManualOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disposition: Option<String>,
    },
    /// The shell carried out (or finally failed) the current step's effect.
    Effect { result: EffectResult },
    /// A callback booked on the participant (a bulk "set callback") came
    /// due at `at`: its next run is now. `owner` is the agent it was booked
    /// for, who takes the task it brings.
    Callback {
        at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// The telephony provider's status for the automatic call placed at
    /// `visit` (`completed`, `busy`, `no-answer`, `failed`, `canceled`; others
    /// are not final and change nothing).
    CallEnded {
        visit: u32,
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_secs: Option<u64>,
    },
    /// Something the contact did (FLOW_FORMAT "Engagement"). Recorded on
    /// the participant; it moves a `wait_until`, a held guard or the goal
    /// that it meets, and changes nothing else. Delivered twice (same id),
    /// the second time changes nothing.
    Engagement { received: Received },
}

/// What a contact event did to the participant (the simulator's
/// `events[].effect`, the timeline's note).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventEffect {
    /// Ended a `wait_until` by `met` (or released a held guard).
    Met,
    /// Met the flow's goal: the participant converted.
    Goal,
    /// Not recorded: a duplicate, a finished participant, or about a
    /// message this participant was never sent.
    Ignored,
    /// Recorded; it moved nothing.
    Recorded,
}

/// What an automatic call's status means for its step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEnd {
    /// The call happened (answered, busy, unanswered): the step completes
    /// with the status as its disposition, as an agent's call would.
    Disposition,
    /// The call could not be made: the step fails with this reason.
    Failed(String),
    /// Not final (queued, initiated, ringing, in-progress): keep waiting.
    NotYet,
}

/// Reads a Twilio-style call status.
pub fn call_end(status: &str) -> CallEnd {
    match status {
        "completed" | "busy" | "no-answer" => CallEnd::Disposition,
        "failed" => CallEnd::Failed("the telephony provider could not place the call (status failed)".into()),
        "canceled" => CallEnd::Failed("the call was canceled before it connected".into()),
        _ => CallEnd::NotYet,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ManualOutcome {
    Completed,
    Skipped,
    Deferred { until: Timestamp },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EffectResult {
    /// Done; `updates` are contact fields the effect learned (data append).
    Done {
        #[serde(default)]
        updates: Map<String, Value>,
    },
    /// Failed for good (retries exhausted, or not retryable).
    Failed { reason: String },
}

/// What the shell must carry out for a step. Keyed for idempotency by
/// (participant, `step`, `visit`, `attempt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub step: String,
    pub visit: u32,
    pub attempt: u32,
    /// Position among this visit's commands (an action group makes several).
    #[serde(default)]
    pub seq: u32,
    /// Whether the participant waits for the outcome (as [`Event::Effect`]).
    pub awaited: bool,
    pub effect: Effect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    Email {
        to: String,
        subject: String,
        html: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cc: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bcc: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<crate::core::kinds::AttachmentRef>,
    },
    Sms { to: String, text: String },
    Webhook { method: String, url: String, format: String, headers: Map<String, Value>, body: Value },
    DataAppend { url: String, mapping: Map<String, Value> },
    S3Upload { bucket: String, key: String, format: String },
    FtpUpload { path: String, format: String },
    CrmPush { provider: String, operation: String },
    NotifyEmail { to: String, subject: String, text: String },
    NotifySms { to: String, text: String },
    /// An automatic call to `to` (E.164), saying `script` when it is not
    /// empty. Its outcome comes later, as [`Event::CallEnded`].
    Call { to: String, script: String },
    RunScript { script: String },
    CreateActivity { activity: String, title: String, owner: Option<String> },
    GoToFlow { flow: String, mode: String },
    RunActionGroup { group: String },
}

impl Effect {
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::Email { .. } => "email",
            Effect::Sms { .. } => "sms",
            Effect::Webhook { .. } => "webhook",
            Effect::DataAppend { .. } => "data_append",
            Effect::S3Upload { .. } => "s3_upload",
            Effect::FtpUpload { .. } => "ftp_upload",
            Effect::CrmPush { .. } => "crm_push",
            Effect::NotifyEmail { .. } => "notify_email",
            Effect::NotifySms { .. } => "notify_sms",
            Effect::Call { .. } => "call",
            Effect::RunScript { .. } => "run_script",
            Effect::CreateActivity { .. } => "create_activity",
            Effect::GoToFlow { .. } => "go_to_flow",
            Effect::RunActionGroup { .. } => "run_action_group",
        }
    }

    /// Whether the provider reports the outcome later (a callback) rather
    /// than when the shell carries the effect out: the shell then delivers
    /// only a failure to carry it out.
    pub fn outcome_comes_later(&self) -> bool {
        matches!(self, Effect::Call { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Skipped,
    Deferred,
    Failed,
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Skipped => "skipped",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
            Outcome::Pending => "pending",
        }
    }
}

/// The timeline: one record per step reached (per `visit`); a later record
/// with the same visit replaces the earlier one (pending → completed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub visit: u32,
    pub step: String,
    pub kind: String,
    pub due_at: Timestamp,
    pub done_at: Option<Timestamp>,
    pub outcome: Outcome,
    /// Why it was skipped, failed or took the branch it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub manual: bool,
    /// Who must do a manual step (a user id), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The task's subject, for manual steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How the due time was reached (wait rule, calendar, zone, skipped days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl ActionRecord {
    /// The times the record shows: when it was due, and when it was done.
    pub fn times(&self) -> impl Iterator<Item = Timestamp> {
        [Some(self.due_at), self.done_at].into_iter().flatten()
    }

    /// Folds a later record of the same visit into this one: the newer
    /// outcome and times win; what the newer one does not say is kept.
    pub fn update(&mut self, newer: ActionRecord) {
        debug_assert_eq!(self.visit, newer.visit);
        self.due_at = newer.due_at;
        self.done_at = newer.done_at;
        self.outcome = newer.outcome;
        self.manual |= newer.manual;
        self.reason = newer.reason.or(self.reason.take());
        self.owner = newer.owner.or(self.owner.take());
        self.subject = newer.subject.or(self.subject.take());
        self.why = newer.why.or(self.why.take());
    }
}

/// Everything one call to [`advance`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Advance {
    pub participant: Participant,
    pub contact: Contact,
    pub commands: Vec<Command>,
    pub actions: Vec<ActionRecord>,
    /// For [`Event::Engagement`]: what the event did.
    pub event_effect: Option<EventEffect>,
}

/// When the shell should wake this participant, if time alone can move it.
pub fn next_wake(participant: &Participant) -> Option<Timestamp> {
    if !participant.status.is_active() {
        return None;
    }
    match participant.phase {
        // An effect waits with a deadline only when its outcome comes later (calls).
        Phase::Due | Phase::Waiting | Phase::Until { .. } | Phase::Held { .. } | Phase::Effect { .. } => participant.next_run_at,
        Phase::Manual { .. } => None,
    }
}

/// Moves `participant` as far as it can go at `now` in response to `event`.
pub fn advance(flow: &FlowDocument, participant: &Participant, contact: &Contact, event: Event, now: Timestamp) -> Advance {
    advance_with(flow, &NoGroups, participant, contact, event, now)
}

/// Action groups a flow can run, found by name (case-insensitive).
pub trait Groups {
    fn group(&self, name: &str) -> Option<&FlowDocument>;

    /// The installation's contact-pressure policy (it goes with the action
    /// groups: both are installation-wide settings the engine reads).
    fn pressure(&self) -> Option<&crate::core::pressure::Policy> {
        None
    }

    /// What the runtime knows of a split's automatic-winner test (see
    /// [`winner`]); `None` where there is none (the simulator, a test run).
    fn split_state(&self, _step: &str) -> Option<&winner::SplitState> {
        None
    }
}

/// Action groups and the contact-pressure policy, as the runtime and the
/// simulator load them.
#[derive(Clone, Debug, Default)]
pub struct Installation {
    /// By lower-case name.
    pub groups: std::collections::HashMap<String, FlowDocument>,
    pub pressure: crate::core::pressure::Policy,
}

impl Groups for Installation {
    fn group(&self, name: &str) -> Option<&FlowDocument> {
        self.groups.get(&name.to_lowercase())
    }

    fn pressure(&self) -> Option<&crate::core::pressure::Policy> {
        Some(&self.pressure).filter(|p| !p.is_empty())
    }
}

/// For flows that run no action groups.
pub struct NoGroups;

impl Groups for NoGroups {
    fn group(&self, _name: &str) -> Option<&FlowDocument> {
        None
    }
}

/// Groups keyed by lower-case name.
impl Groups for std::collections::HashMap<String, FlowDocument> {
    fn group(&self, name: &str) -> Option<&FlowDocument> {
        self.get(&name.to_lowercase())
    }
}

/// Nesting deeper than this is refused at run time (validation refuses
/// recursion before publishing).
pub const MAX_GROUP_DEPTH: usize = 8;

/// [`advance`], for a flow that may run action groups.
pub fn advance_with(
    flow: &FlowDocument,
    groups: &dyn Groups,
    participant: &Participant,
    contact: &Contact,
    event: Event,
    now: Timestamp,
) -> Advance {
    let mut run = Run {
        flow,
        groups,
        p: participant.clone(),
        contact: contact.clone(),
        commands: Vec::new(),
        actions: Vec::new(),
        now,
        steps_taken: 0,
        event_effect: None,
    };
    run.handle(event);
    Advance { participant: run.p, contact: run.contact, commands: run.commands, actions: run.actions, event_effect: run.event_effect }
}

/// What executing a step decided.
enum Next {
    /// Leave by this port now.
    Port(&'static str),
    /// Leave by a port named at run time (split branches).
    Branch(String),
    /// Stay: the participant waits (state already set).
    Stay,
}

struct Run<'a> {
    flow: &'a FlowDocument,
    groups: &'a dyn Groups,
    p: Participant,
    contact: Contact,
    commands: Vec<Command>,
    actions: Vec<ActionRecord>,
    now: Timestamp,
    steps_taken: usize,
    event_effect: Option<EventEffect>,
}

impl Run<'_> {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Enroll => {
                if self.p.step.is_some() {
                    return; // already enrolled: a duplicate delivery
                }
                let Some(start) = self.flow.steps.iter().find(|s| s.kind == StepKind::Start) else {
                    return self.fail("the flow has no start step");
                };
                self.p.pass_count = self.p.pass_count.max(1);
                self.enter(&start.id.clone());
                self.run();
            }
            Event::Wake => {
                // The contact may have changed since the last step: the
                // goal's criteria are checked on every wake.
                if self.p.step.is_some() && self.p.status.is_active() && self.goal_met(None) {
                    return self.convert();
                }
                if let (true, Phase::Until { since }) = (self.p.status.is_active(), &self.p.phase) {
                    // Before the timeout a wake re-checks the criteria (the contact may have changed).
                    return self.until_wake(*since);
                }
                if !self.p.status.is_active() || self.p.next_run_at.is_some_and(|at| at > self.now) {
                    return;
                }
                match self.p.phase {
                    Phase::Due | Phase::Held { .. } => self.run(),
                    Phase::Waiting => {
                        self.finish_current(Outcome::Completed, None);
                        if self.leave("next") {
                            self.run();
                        }
                    }
                    Phase::Effect { .. } if self.p.next_run_at.is_some() => {
                        let reason = format!(
                            "no final status from the telephony provider within {:#}; the call's outcome is unknown",
                            CALL_OUTCOME_DEADLINE
                        );
                        self.finish_current(Outcome::Failed, Some(reason.clone()));
                        self.fail(&reason);
                    }
                    Phase::Manual { .. } | Phase::Effect { .. } | Phase::Until { .. } => {}
                }
            }
            Event::Manual { outcome, disposition } => {
                let Phase::Manual { .. } = self.p.phase else { return };
                if !self.p.status.is_active() {
                    return;
                }
                match outcome {
                    ManualOutcome::Deferred { until } => {
                        self.p.phase = Phase::Manual { due_at: until };
                        self.p.due_at = Some(until);
                        let mut record = self.record(Outcome::Deferred, Some("deferred".into()));
                        record.done_at = None;
                        record.manual = true;
                        record.why = Some(format!("deferred to {until}"));
                        self.actions.push(record);
                    }
                    ManualOutcome::Completed => self.conclude(true, disposition.as_deref(), None),
                    ManualOutcome::Skipped => self.conclude(false, disposition.as_deref(), None),
                }
            }
            Event::CallEnded { visit, status, duration_secs } => {
                let Phase::Effect { .. } = self.p.phase else { return };
                let is_call = self.current_step().is_some_and(|s| s.kind == StepKind::Call);
                if !self.p.status.is_active() || visit != self.p.visit || !is_call {
                    return; // late, twice, or for another visit
                }
                match call_end(&status) {
                    CallEnd::Disposition => {
                        let length = duration_secs.filter(|_| status == "completed").map(|s| format!("the call lasted {s} s"));
                        self.conclude(true, Some(&status), length);
                    }
                    CallEnd::Failed(reason) => {
                        self.finish_current(Outcome::Failed, Some(reason.clone()));
                        self.fail(&reason);
                    }
                    CallEnd::NotYet => {}
                }
            }
            Event::Callback { at, owner } => self.call_back(at, owner),
            Event::Engagement { received } => self.engagement(received),
            Event::Effect { result } => {
                let Phase::Effect { .. } = self.p.phase else { return };
                if !self.p.status.is_active() {
                    return;
                }
                match result {
                    EffectResult::Done { updates } => {
                        for (field, value) in updates {
                            self.contact.set_field(&field, value);
                        }
                        self.apply_record_updates();
                        self.finish_current(Outcome::Completed, None);
                        if self.leave("next") {
                            self.run();
                        }
                    }
                    EffectResult::Failed { reason } => {
                        let has_failed_port = self.current_step().is_some_and(|s| s.kind == StepKind::Webhook);
                        self.finish_current(Outcome::Failed, Some(reason.clone()));
                        if has_failed_port {
                            if self.leave("failed") {
                                self.run();
                            }
                        } else {
                            self.fail(&reason);
                        }
                    }
                }
            }
        }
    }

    /// A booked callback came due (a dialer's scheduled callback: the lead
    /// is due again at that time, for that agent). A participant waiting
    /// for a person has that task brought round to the callback time; one
    /// waiting for time (a wait, a held guard, a step due later) runs now,
    /// a wait ending early; one waiting for an effect's outcome is left to
    /// it. The task the participant then waits on goes to `owner`.
    fn call_back(&mut self, at: Timestamp, owner: Option<String>) {
        if !self.p.status.is_active() {
            return;
        }
        match self.p.phase {
            Phase::Manual { .. } => {
                self.p.phase = Phase::Manual { due_at: at };
                self.p.due_at = Some(at);
                let mut record = self.record(Outcome::Pending, None);
                record.why = Some(format!("callback booked for {at}"));
                self.actions.push(record);
            }
            Phase::Waiting => {
                self.finish_current(Outcome::Completed, Some(format!("ended by the callback booked for {at}")));
                if self.leave("next") {
                    self.run();
                }
            }
            Phase::Until { .. } => {
                self.finish_current(Outcome::Completed, Some(format!("ended by the callback booked for {at}")));
                if self.leave("timed_out") {
                    self.run();
                }
            }
            Phase::Due | Phase::Held { .. } => self.run(),
            Phase::Effect { .. } => return,
        }
        if let (Some(owner), Phase::Manual { .. }) = (owner, &self.p.phase) {
            let visit = self.p.visit;
            if let Some(record) = self.actions.iter_mut().rev().find(|r| r.visit == visit && r.manual) {
                record.owner = Some(owner);
            }
        }
    }

    /// A contact event: recorded (unless a duplicate, for a finished
    /// participant, or about a message it was never sent), consent changed
    /// as the event says, then `exit_on_reply`, the goal, a `wait_until`
    /// or a held guard may move the participant. Nothing else changes.
    fn engagement(&mut self, received: Received) {
        let known_step = received.event.step().is_none_or(|step| self.p.history.was_sent(step));
        if self.p.step.is_none() || self.p.status.is_finished() || !known_step || self.p.history.is_duplicate(&received) {
            self.event_effect = Some(EventEffect::Ignored);
            return;
        }
        self.p.history.record(&received);
        self.consent(&received.event);
        self.event_effect = Some(EventEffect::Recorded);
        if !self.p.status.is_active() {
            return;
        }
        if self.flow.settings.exit_on_reply == Some(true) && received.event.is_human_reply() {
            self.finish_current(Outcome::Skipped, Some("replied".into()));
            return self.end(Status::Exited, Some("replied".into()));
        }
        if self.goal_met(Some(&received)) {
            self.event_effect = Some(EventEffect::Goal);
            return self.convert();
        }
        match self.p.phase {
            Phase::Until { since } => {
                if let Some(why) = self.until_met(since) {
                    self.event_effect = Some(EventEffect::Met);
                    self.finish_current(Outcome::Completed, Some(why));
                    if self.leave("met") {
                        self.run();
                    }
                }
            }
            Phase::Held { .. } => {
                let guard = self.current_step().and_then(|s| s.guard.clone());
                let met = guard.is_some_and(|g| criteria_met_at(&self.contact, &self.p.history, self.now, &g.criteria, g.logic.as_ref()));
                if met {
                    self.event_effect = Some(EventEffect::Met);
                    self.p.next_run_at = Some(self.now);
                    self.run();
                }
            }
            Phase::Due | Phase::Waiting | Phase::Manual { .. } | Phase::Effect { .. } => {}
        }
    }

    /// Unsubscribes and complaints turn consent off; a hard bounce marks
    /// the contact's email address undeliverable.
    fn consent(&mut self, event: &ContactEvent) {
        crate::core::engagement::apply_consent(&mut self.contact, event);
    }

    /// Is the flow's goal met, by its criteria or by `event`?
    fn goal_met(&self, event: Option<&Received>) -> bool {
        let Some(goal) = &self.flow.settings.goal else { return false };
        let by_event = match (&goal.event, event) {
            (Some(matcher), Some(received)) => matcher.matches_event(received, Timestamp::MIN, &self.p.history),
            _ => false,
        };
        let by_criteria = !goal.criteria.is_empty()
            && criteria_met_at(&self.contact, &self.p.history, self.now, &goal.criteria, goal.logic.as_ref());
        by_event || by_criteria
    }

    /// The goal is met: the current step is skipped (reason `goal`) and
    /// the participant leaves as converted.
    fn convert(&mut self) {
        self.finish_current(Outcome::Skipped, Some("goal".into()));
        self.end(Status::Converted, Some("goal".into()));
    }

    /// Enters a `wait_until`: met at once by an event already recorded (a
    /// message matcher naming a step counts events since that send) or by
    /// criteria that hold; otherwise waits for an event or the timeout.
    fn wait_until(&mut self, s: &crate::core::kinds::WaitUntilSettings) -> Next {
        let since = self.now;
        if let Some(why) = self.until_met_by(s, since) {
            return self.completed(Some(why), "met");
        }
        let deadline = s.timeout.as_ref().and_then(duration).map(|d| self.now + d);
        self.p.phase = Phase::Until { since };
        self.p.status = Status::Waiting;
        self.p.next_run_at = deadline;
        self.p.due_at = deadline.or(self.p.due_at);
        let mut record = self.record(Outcome::Pending, None);
        let what: Vec<String> = s.until.iter().map(describe_matcher).collect();
        record.why = Some(match deadline {
            Some(at) => format!("until {}, or timed out at {at}", what.join(" or ")),
            None => format!("until {}", what.join(" or ")),
        });
        self.actions.push(record);
        Next::Stay
    }

    /// Why the current `wait_until` (entered at `since`) is met, if it is.
    fn until_met(&self, since: Timestamp) -> Option<String> {
        let step = self.current_step()?;
        let settings = crate::core::kinds::read_settings::<crate::core::kinds::WaitUntilSettings>(step).ok()?;
        self.until_met_by(&settings, since)
    }

    fn until_met_by(&self, s: &crate::core::kinds::WaitUntilSettings, since: Timestamp) -> Option<String> {
        s.until.iter().find_map(|matcher| {
            if matcher.is_criteria() {
                return matcher.criteria_hold(&self.contact, &self.p.history, self.now).then(|| "met: criteria hold".to_owned());
            }
            let event = matcher.met_by_history(&self.p.history, since)?;
            Some(match event.event.step() {
                Some(step) => format!("met: {} ({step}) at {}", event.event.kind(), event.at),
                None => format!("met: {} at {}", event.event.kind(), event.at),
            })
        })
    }

    /// A wake for a `wait_until`: met now (criteria re-checked), else timed
    /// out once its timeout has come, else nothing.
    fn until_wake(&mut self, since: Timestamp) {
        let port = if let Some(why) = self.until_met(since) {
            self.finish_current(Outcome::Completed, Some(why));
            "met"
        } else if self.p.next_run_at.is_some_and(|at| at <= self.now) {
            self.finish_current(Outcome::Completed, Some("timed out".into()));
            "timed_out"
        } else {
            return;
        };
        if self.leave(port) {
            self.run();
        }
    }

    /// Ends a call or manual step: completed (its record updates and the
    /// disposition's action group run) or skipped, then on by `next`.
    fn conclude(&mut self, completed: bool, disposition: Option<&str>, detail: Option<String>) {
        let mut reason = disposition.map(|d| format!("disposition: {d}"));
        if let Some(detail) = detail {
            reason = Some(reason.map_or(detail.clone(), |r| format!("{r}; {detail}")));
        }
        if completed {
            if let Some(step) = self.current_step().filter(|s| s.kind == StepKind::SendEmail).map(|s| s.id.clone()) {
                self.p.history.record_send(&step, self.now);
            }
            self.apply_record_updates();
            // A disposition may run an action group.
            let group = disposition.and_then(|d| {
                let step = self.current_step()?;
                let groups = step.settings.get("dispositions")?.as_object()?;
                groups.iter().find(|(k, _)| k.eq_ignore_ascii_case(d)).and_then(|(_, g)| g.as_str()).map(str::to_owned)
            });
            if let Some(group) = group {
                let ran = self.run_group(&group, 0).unwrap_or_else(|why| why);
                reason = Some(format!("{}; {ran}", reason.unwrap_or_default()));
            }
        }
        self.finish_current(if completed { Outcome::Completed } else { Outcome::Skipped }, reason);
        if self.leave("next") {
            self.run();
        }
    }

    fn current_step(&self) -> Option<&Step> {
        self.p.step.as_deref().and_then(|id| self.flow.step(id))
    }

    fn record(&mut self, outcome: Outcome, reason: Option<String>) -> ActionRecord {
        let step = self.current_step().expect("records are made for the current step");
        let done = !matches!(outcome, Outcome::Pending);
        ActionRecord {
            visit: self.p.visit,
            step: step.id.clone(),
            kind: step.kind.as_str().to_owned(),
            due_at: self.p.due_at.unwrap_or(self.now),
            done_at: done.then_some(self.now),
            outcome,
            reason,
            manual: matches!(self.p.phase, Phase::Manual { .. }),
            owner: None,
            subject: None,
            why: None,
        }
    }

    /// Closes the current visit's record (keeping its due time if it had one).
    fn finish_current(&mut self, outcome: Outcome, reason: Option<String>) {
        let record = self.record(outcome, reason);
        self.actions.push(record);
    }

    fn enter(&mut self, step: &str) {
        self.p.step = Some(step.to_owned());
        self.p.visit += 1;
        self.p.due_at = Some(self.now);
        self.p.phase = Phase::Due;
        self.p.status = Status::Ready;
        self.p.next_run_at = Some(self.now);
    }

    /// Follows `port` from the current step. Returns false when the
    /// participant ended (nothing connected: it finished the flow).
    fn leave(&mut self, port: &str) -> bool {
        let from = self.p.step.clone().unwrap_or_default();
        match self.flow.edges.iter().find(|e| e.from == from && e.port == port) {
            Some(edge) => {
                let to = edge.to.clone();
                if self.flow.step(&to).is_none() {
                    self.fail(&format!("“{from}” leads to “{to}”, which does not exist"));
                    return false;
                }
                self.enter(&to);
                true
            }
            None => {
                self.end(Status::Completed, None);
                false
            }
        }
    }

    fn end(&mut self, status: Status, reason: Option<String>) {
        self.p.status = status;
        self.p.phase = Phase::Due;
        self.p.next_run_at = None;
        self.p.reason = reason;
    }

    fn fail(&mut self, reason: &str) {
        self.end(Status::Failed, Some(reason.to_owned()));
    }

    /// Runs steps until the participant must wait or ends.
    fn run(&mut self) {
        while self.p.status.is_active() && matches!(self.p.phase, Phase::Due | Phase::Held { .. }) {
            if self.p.next_run_at.is_some_and(|at| at > self.now) {
                return;
            }
            self.steps_taken += 1;
            if self.steps_taken > MAX_STEPS_PER_ADVANCE {
                return self.fail("the flow loops without a wait; stopped after 1,000 steps at one instant");
            }
            let Some(step) = self.current_step().cloned() else {
                let id = self.p.step.clone().unwrap_or_default();
                return self.fail(&format!("step “{id}” no longer exists in this version"));
            };
            if self.goal_met(None) {
                return self.convert();
            }
            let next = match self.check_guard(&step) {
                Some(next) => next,
                None => {
                    // A template that cannot be filled fails the step
                    // before anything half-filled is sent.
                    if let Some(why) = crate::core::merge::step_error(&step, &self.contact) {
                        return self.fail(&why);
                    }
                    self.execute(&step)
                }
            };
            let port = match next {
                Next::Stay => return,
                Next::Port(port) => port.to_owned(),
                Next::Branch(port) => port,
            };
            if !self.leave(&port) {
                return;
            }
        }
    }

    /// `Some` when the guard decides (skip or hold); `None` to run the step.
    fn check_guard(&mut self, step: &Step) -> Option<Next> {
        let guard = step.guard.as_ref().filter(|_| step.kind != StepKind::Start)?;
        if criteria_met_at(&self.contact, &self.p.history, self.now, &guard.criteria, guard.logic.as_ref()) {
            return None;
        }
        let skip_port = if crate::core::kinds::ports(step).contains(&"next") { "next" } else { "no" };
        match guard.when_unmet.unwrap_or(WhenUnmet::Skip) {
            WhenUnmet::Skip => {
                let record = self.record(Outcome::Skipped, Some("criteria_unmet".into()));
                self.actions.push(record);
                Some(Next::Port(skip_port))
            }
            WhenUnmet::Hold => {
                let since = match self.p.phase {
                    Phase::Held { since } => since,
                    _ => self.now,
                };
                let timeout = guard.hold_timeout.as_ref().and_then(duration);
                if let Some(timeout) = timeout {
                    if self.now >= since + timeout {
                        self.finish_current(Outcome::Skipped, Some("hold_timeout".into()));
                        return Some(Next::Port(skip_port));
                    }
                }
                let mut recheck = self.now + HOLD_RECHECK;
                if let Some(timeout) = timeout {
                    recheck = recheck.min(since + timeout);
                }
                if !matches!(self.p.phase, Phase::Held { .. }) {
                    let mut record = self.record(Outcome::Pending, Some("held: criteria unmet".into()));
                    record.why = Some(match timeout {
                        Some(t) => format!("held until its criteria are met, re-checked every 15 minutes, at most {t:#}"),
                        None => "held until its criteria are met, re-checked every 15 minutes".into(),
                    });
                    self.actions.push(record);
                }
                self.p.phase = Phase::Held { since };
                self.p.status = Status::Held;
                self.p.next_run_at = Some(recheck);
                Some(Next::Stay)
            }
        }
    }

    fn execute(&mut self, step: &Step) -> Next {
        let settings = match StepSettings::read(step) {
            Ok(settings) => settings,
            Err(problem) => {
                self.fail(&format!("“{}” has unusable settings: {problem:?}", step.id));
                return Next::Stay;
            }
        };
        match settings {
            StepSettings::Start(_) => self.completed(None, "next"),
            StepSettings::Wait(s) => self.wait(step, &s),
            StepSettings::WaitUntil(s) => self.wait_until(&s),
            StepSettings::Condition(s) => {
                let met = criteria_met_at(&self.contact, &self.p.history, self.now, &s.criteria, s.logic.as_ref());
                self.completed(Some(if met { "criteria met" } else { "criteria not met" }.into()), if met { "yes" } else { "no" })
            }
            StepSettings::Split(s) => {
                let draw = *self.p.draws.entry(step.id.clone()).or_insert_with(|| draw(self.p.seed, &step.id, self.p.visit));
                let routed = s.winner.as_ref().map(|w| winner::route(&s, w, self.groups.split_state(&step.id), draw, self.now));
                match routed {
                    Some(winner::Route::Branch { port, reason }) => {
                        let record = self.record(Outcome::Completed, Some(reason));
                        self.actions.push(record);
                        self.p.branches.insert(step.id.clone(), port.clone());
                        self.p.branched_at.insert(step.id.clone(), self.now);
                        return Next::Branch(port);
                    }
                    Some(winner::Route::Wait { until, why }) => {
                        self.p.phase = Phase::Due;
                        self.p.status = Status::Waiting;
                        self.p.next_run_at = Some(until);
                        self.p.due_at = Some(until);
                        let mut record = self.record(Outcome::Pending, None);
                        record.why = Some(why);
                        self.actions.push(record);
                        return Next::Stay;
                    }
                    Some(winner::Route::Percentages { .. }) | None => {}
                }
                let mut floor = 0.0;
                let branch = s.branches.iter().find(|b| {
                    floor += b.percent.unwrap_or(0.0);
                    draw < floor
                });
                match branch.or(s.branches.last()) {
                    Some(branch) => {
                        let record = self.record(Outcome::Completed, Some(format!("branch {} (draw {draw:.1})", branch.port)));
                        self.actions.push(record);
                        self.p.branches.insert(step.id.clone(), branch.port.clone());
                        self.p.branched_at.insert(step.id.clone(), self.now);
                        Next::Branch(branch.port.clone())
                    }
                    None => {
                        self.fail("the split has no branches");
                        Next::Stay
                    }
                }
            }
            StepSettings::Exit(s) => {
                match s.contact_permission.as_deref() {
                    Some("deny") => {
                        self.contact.opted_out.insert("call".into());
                    }
                    Some("allow") => {
                        self.contact.opted_out.remove("call");
                    }
                    _ => {}
                }
                let record = self.record(Outcome::Completed, None);
                self.actions.push(record);
                self.end(Status::Completed, Some("reached an exit".into()));
                Next::Stay
            }
            StepSettings::GoToFlow(s) => {
                let flow = s.flow.unwrap_or_default();
                let mode = s.mode.unwrap_or_else(|| "move".into());
                self.command(false, Effect::GoToFlow { flow: flow.clone(), mode: mode.clone() });
                if mode == "copy" {
                    return self.completed(Some(format!("copied into “{flow}”")), "next");
                }
                let record = self.record(Outcome::Completed, Some(format!("moved to “{flow}”")));
                self.actions.push(record);
                self.end(Status::Exited, Some(format!("moved to flow “{flow}”")));
                Next::Stay
            }
            StepSettings::Restart(s) => {
                if s.max_restarts.is_some_and(|max| self.p.restarts >= max) {
                    let record = self.record(Outcome::Completed, Some("restart limit reached".into()));
                    self.actions.push(record);
                    self.end(Status::Completed, Some("restart limit reached".into()));
                    return Next::Stay;
                }
                self.p.restarts += 1;
                self.p.pass_count += 1;
                let record = self.record(Outcome::Completed, Some(format!("restart {}", self.p.restarts)));
                self.actions.push(record);
                let start = self.flow.steps.iter().find(|s| s.kind == StepKind::Start).map(|s| s.id.clone());
                match start {
                    Some(start) => {
                        self.enter(&start);
                        self.run();
                    }
                    None => self.fail("the flow has no start step"),
                }
                Next::Stay
            }
            StepSettings::RunActionGroup(s) => {
                let name = s.group.unwrap_or_default();
                match self.run_group(&name, 0) {
                    Ok(summary) => self.completed(Some(summary), "next"),
                    Err(reason) => self.skipped(&reason),
                }
            }
            StepSettings::SendEmail(s) => self.send_email(s),
            StepSettings::SendSms(s) => {
                let Some(to) = self.contact.mobile.clone().filter(|m| !m.trim().is_empty()) else {
                    return self.missing_address("no_mobile", s.if_no_mobile.as_deref());
                };
                if let Some(refusal) = self.contact.refusal(Channel::Sms) {
                    return self.skipped(refusal);
                }
                let text = render(s.text.as_deref().unwrap_or_default(), &self.contact, Escape::None);
                self.awaited(Effect::Sms { to, text })
            }
            StepSettings::Call(s) => {
                if self.contact.mobile.as_deref().is_none_or(|m| m.trim().is_empty())
                    && self.contact.field_text("phone").trim().is_empty()
                {
                    return self.skipped("no_phone");
                }
                if let Some(refusal) = self.contact.refusal(Channel::Call) {
                    return self.skipped(refusal);
                }
                if s.activation.as_deref() == Some("automatic") {
                    return self.automatic_call(s.script.as_deref());
                }
                let owner = self.owner(s.owner.as_deref());
                self.manual(self.now, owner, Some(format!("Call {}", self.contact_label())), None)
            }
            StepSettings::ScheduleCallback(s) => {
                let (due, why) = match (&s.after, &s.at) {
                    (Some(after), _) => match duration(after) {
                        Some(d) => (self.now + d, format!("{} after the callback was booked", describe(after))),
                        None => {
                            self.fail("the callback delay is not usable");
                            return Next::Stay;
                        }
                    },
                    (None, Some(at)) => match at.parse::<Timestamp>() {
                        Ok(at) => (at.max(self.now), format!("booked for {at}")),
                        Err(_) => {
                            self.fail("the callback time is not usable");
                            return Next::Stay;
                        }
                    },
                    (None, None) => (self.now, "due at once".into()),
                };
                let owner = self.owner(None);
                self.manual(due, owner, Some(format!("Call back {}", self.contact_label())), Some(why))
            }
            StepSettings::Task(s) => {
                let subject = s
                    .subject
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| render(&t, &self.contact, Escape::None))
                    .unwrap_or_else(|| format!("{} {}", step.display_name(), self.now.strftime("%Y-%m-%d %H:%M")));
                let owner = self.owner(s.owner.as_deref());
                self.manual(self.now, owner, Some(subject), None)
            }
            StepSettings::NotifyEmail(_) | StepSettings::NotifySms(_) | StepSettings::CreateActivity(_) | StepSettings::RunScript(_) => {
                // Notifications, activities and scripts run beside the flow:
                // the participant does not wait for them.
                let effect = self.effect(settings).expect("these kinds have an effect");
                self.command(false, effect);
                self.completed(None, "next")
            }
            StepSettings::UpdateContact(s) => {
                let changes = apply_changes(&mut self.contact, &s.changes);
                self.completed(Some(changes), "next")
            }
            StepSettings::AddToList(s) => {
                self.contact.lists.insert(s.list.unwrap_or_default());
                self.completed(None, "next")
            }
            StepSettings::RemoveFromList(s) => {
                let list = s.list.unwrap_or_default();
                self.contact.lists.retain(|l| !l.eq_ignore_ascii_case(&list));
                self.completed(None, "next")
            }
            StepSettings::OptOut(s) => {
                self.contact.opted_out.insert(s.channel.unwrap_or_else(|| "all".into()));
                self.completed(None, "next")
            }
            StepSettings::Block => {
                self.contact.blocked = true;
                self.completed(None, "next")
            }
            StepSettings::DataAppend(s) => self.awaited(Effect::DataAppend {
                url: render(s.url.as_deref().unwrap_or_default(), &self.contact, Escape::Url),
                mapping: s.mapping,
            }),
            StepSettings::Webhook(_) => {
                let effect = self.effect(settings).expect("a webhook has an effect");
                self.awaited(effect)
            }
            StepSettings::S3Upload(s) => self.awaited(Effect::S3Upload {
                bucket: s.bucket.unwrap_or_default(),
                key: render(s.key.as_deref().unwrap_or_default(), &self.contact, Escape::PathSegment),
                format: s.format.unwrap_or_else(|| "json".into()),
            }),
            StepSettings::FtpUpload(s) => self.awaited(Effect::FtpUpload {
                path: render(s.path.as_deref().unwrap_or_default(), &self.contact, Escape::PathSegment),
                format: s.format.unwrap_or_else(|| "json".into()),
            }),
            StepSettings::CrmPush(s) => self.awaited(Effect::CrmPush {
                provider: s.provider.unwrap_or_default(),
                operation: s.operation.unwrap_or_default(),
            }),
            StepSettings::Unknown => {
                self.fail(&format!("“{}” is a kind of step this version cannot run", step.id));
                Next::Stay
            }
        }
    }

    /// What a notification, activity, script or webhook step sends, with
    /// its merge tags filled; `None` for other kinds. Flow steps and action
    /// groups both build their effects here.
    fn effect(&self, settings: StepSettings) -> Option<Effect> {
        let fill = |text: Option<String>| render(text.as_deref().unwrap_or_default(), &self.contact, Escape::None);
        Some(match settings {
            StepSettings::NotifyEmail(n) => Effect::NotifyEmail { to: self.notify_target(n.to.as_deref()), subject: fill(n.subject), text: fill(n.text) },
            StepSettings::NotifySms(n) => Effect::NotifySms { to: self.notify_target(n.to.as_deref()), text: fill(n.text) },
            StepSettings::CreateActivity(a) => Effect::CreateActivity {
                owner: self.owner(a.owner.as_deref()),
                activity: a.activity_type.unwrap_or_default(),
                title: fill(a.title),
            },
            StepSettings::RunScript(r) => Effect::RunScript { script: r.script.unwrap_or_default() },
            StepSettings::Webhook(h) => Effect::Webhook {
                method: h.method.unwrap_or_else(|| "POST".into()),
                url: render(h.url.as_deref().unwrap_or_default(), &self.contact, Escape::Url),
                format: h.format.unwrap_or_else(|| "json".into()),
                headers: match render_value(Value::Object(h.headers), &self.contact) {
                    Value::Object(headers) => headers,
                    _ => Map::new(),
                },
                body: render_value(h.body.unwrap_or(Value::Null), &self.contact),
            },
            _ => return None,
        })
    }

    /// Runs an action group inline, at this instant: its record updates,
    /// branches, notifications and fire-and-forget effects. Waits and manual
    /// steps cannot run inside a group and are passed over, said so in the
    /// summary. Returns what ran, or why the group could not run.
    fn run_group(&mut self, name: &str, depth: usize) -> Result<String, String> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(format!("action groups nest more than {MAX_GROUP_DEPTH} deep"));
        }
        let groups = self.groups;
        let group = groups.group(name).ok_or_else(|| format!("action group “{name}” does not exist"))?;
        let mut current = group.steps.iter().find(|s| s.kind == StepKind::Start).map(|s| s.id.clone());
        let mut ran: Vec<String> = Vec::new();
        let mut passed_over: Vec<String> = Vec::new();
        let mut taken = 0;
        while let Some(id) = current.take() {
            taken += 1;
            if taken > 200 {
                return Err(format!("action group “{name}” loops"));
            }
            let Some(step) = group.step(&id) else { break };
            let history = &self.p.history;
            let port: Option<String> = if step
                .guard
                .as_ref()
                .is_some_and(|g| !criteria_met_at(&self.contact, history, self.now, &g.criteria, g.logic.as_ref()))
            {
                passed_over.push(format!("{} (criteria unmet)", step.id));
                Some("next".into())
            } else {
                if let Some(why) = crate::core::merge::step_error(step, &self.contact) {
                    return Err(format!("action group “{name}”: {why}"));
                }
                match StepSettings::read(step) {
                    Ok(StepSettings::Start(_)) => Some("next".into()),
                    Ok(StepSettings::UpdateContact(u)) => {
                        apply_changes(&mut self.contact, &u.changes);
                        ran.push(step.id.clone());
                        Some("next".into())
                    }
                    Ok(StepSettings::AddToList(l)) => {
                        self.contact.lists.insert(l.list.unwrap_or_default());
                        ran.push(step.id.clone());
                        Some("next".into())
                    }
                    Ok(StepSettings::RemoveFromList(l)) => {
                        let list = l.list.unwrap_or_default();
                        self.contact.lists.retain(|x| !x.eq_ignore_ascii_case(&list));
                        ran.push(step.id.clone());
                        Some("next".into())
                    }
                    Ok(StepSettings::OptOut(o)) => {
                        self.contact.opted_out.insert(o.channel.unwrap_or_else(|| "all".into()));
                        ran.push(step.id.clone());
                        Some("next".into())
                    }
                    Ok(StepSettings::Block) => {
                        self.contact.blocked = true;
                        ran.push(step.id.clone());
                        Some("next".into())
                    }
                    Ok(StepSettings::Condition(c)) => {
                        let met = criteria_met_at(&self.contact, &self.p.history, self.now, &c.criteria, c.logic.as_ref());
                        ran.push(step.id.clone());
                        Some(if met { "yes" } else { "no" }.into())
                    }
                    Ok(StepSettings::Split(sp)) => {
                        let d = draw(self.p.seed, &format!("{name}/{}", step.id), self.p.visit);
                        let mut floor = 0.0;
                        ran.push(step.id.clone());
                        sp.branches.iter().find(|b| {
                            floor += b.percent.unwrap_or(0.0);
                            d < floor
                        }).or(sp.branches.last()).map(|b| b.port.clone())
                    }
                    Ok(
                        settings @ (StepSettings::NotifyEmail(_)
                        | StepSettings::NotifySms(_)
                        | StepSettings::CreateActivity(_)
                        | StepSettings::RunScript(_)
                        | StepSettings::Webhook(_)),
                    ) => {
                        let effect = self.effect(settings).expect("these kinds have an effect");
                        self.command(false, effect);
                        ran.push(step.id.clone());
                        Some("next".into())
                    }
                    Ok(StepSettings::GoToFlow(g)) => {
                        let mode = g.mode.unwrap_or_else(|| "copy".into());
                        self.command(false, Effect::GoToFlow { flow: g.flow.unwrap_or_default(), mode: "copy".into() });
                        ran.push(format!("{} ({mode} as copy)", step.id));
                        Some("next".into())
                    }
                    Ok(StepSettings::RunActionGroup(inner)) => {
                        let inner = inner.group.unwrap_or_default();
                        let summary = self.run_group(&inner, depth + 1)?;
                        ran.push(format!("{} [{summary}]", step.id));
                        Some("next".into())
                    }
                    Ok(StepSettings::Exit(_)) => None,
                    Ok(_) | Err(_) => {
                        passed_over.push(format!("{} ({} cannot run inside a group)", step.id, step.kind.label()));
                        Some("next".into())
                    }
                }
            };
            current = port.and_then(|port| group.edges.iter().find(|e| e.from == id && e.port == port)).map(|e| e.to.clone());
        }
        let mut summary = format!("ran “{name}”: {}", if ran.is_empty() { "nothing".to_owned() } else { ran.join(", ") });
        if !passed_over.is_empty() {
            summary.push_str(&format!("; passed over {}", passed_over.join(", ")));
        }
        Ok(summary)
    }

    fn contact_label(&self) -> String {
        let name = self.contact.field_text("first_name");
        if !name.is_empty() {
            return name;
        }
        self.contact.email.clone().or_else(|| self.contact.mobile.clone()).unwrap_or_else(|| "the contact".into())
    }

    /// The step ran and the participant leaves by `port`.
    fn completed(&mut self, reason: Option<String>, port: &'static str) -> Next {
        self.apply_record_updates();
        let record = self.record(Outcome::Completed, reason);
        self.actions.push(record);
        Next::Port(port)
    }

    fn skipped(&mut self, reason: &str) -> Next {
        let record = self.record(Outcome::Skipped, Some(reason.to_owned()));
        self.actions.push(record);
        Next::Port("next")
    }

    /// No address for the channel: skip the step, or leave the flow.
    fn missing_address(&mut self, reason: &str, policy: Option<&str>) -> Next {
        if policy == Some("exit") {
            let record = self.record(Outcome::Skipped, Some(reason.to_owned()));
            self.actions.push(record);
            self.end(Status::Exited, Some(reason.to_owned()));
            return Next::Stay;
        }
        self.skipped(reason)
    }

    fn command(&mut self, awaited: bool, effect: Effect) {
        let step = self.p.step.clone().unwrap_or_default();
        let attempt = match self.p.phase {
            Phase::Effect { attempt } => attempt,
            _ => 1,
        };
        let seq = self.commands.iter().filter(|c| c.step == step && c.visit == self.p.visit).count() as u32;
        self.commands.push(Command { step, visit: self.p.visit, attempt, seq, awaited, effect });
    }

    /// Hands an effect to the shell and waits for its outcome. A message
    /// to the contact (email, SMS, automatic call) first passes contact
    /// pressure, and is counted in the contact's recent sends.
    fn awaited(&mut self, effect: Effect) -> Next {
        let channel = match effect {
            Effect::Email { .. } => Some("email"),
            Effect::Sms { .. } => Some("sms"),
            Effect::Call { .. } => Some("call"),
            _ => None,
        };
        if let Some(channel) = channel.filter(|_| self.flow.settings.transactional != Some(true)) {
            if let Some(held) = self.pressure(channel) {
                return held;
            }
            self.contact.recent.push(crate::core::pressure::RecentSend { channel: channel.to_owned(), at: self.now });
            // Kept for the longest window a policy may have, so that a
            // policy turned on later counts what was already sent.
            let from = self.now - SignedDuration::from_hours(24 * crate::core::pressure::MAX_WINDOW_DAYS);
            self.contact.recent.retain(|r| r.at > from);
        }
        if matches!(effect, Effect::Email { .. } | Effect::Sms { .. }) {
            if let Some(step) = self.p.step.clone() {
                self.p.history.record_send(&step, self.now);
            }
        }
        self.p.phase = Phase::Effect { attempt: 1 };
        self.command(true, effect);
        self.p.status = Status::Waiting;
        self.p.next_run_at = None;
        let record = self.record(Outcome::Pending, None);
        self.actions.push(record);
        Next::Stay
    }

    /// Contact pressure before a message of `channel`: `None` to send now;
    /// else the step waits for the policy's next allowed moment (it runs
    /// again then, and is checked again), or is skipped (`when_capped:
    /// skip`, reason `capped`). The record's `why` names the rule.
    fn pressure(&mut self, channel: &str) -> Option<Next> {
        let policy = self.groups.pressure()?;
        let (zone, source) = zone_for(self.contact.timezone.as_deref(), self.flow.settings.timezone_or_default(), CalendarZone::Contact);
        let name = zone.iana_name().unwrap_or(source.as_str()).to_owned();
        let crate::core::pressure::Verdict::Defer { until, why } = policy.check(channel, &self.contact.recent, &zone, &name, self.now) else {
            return None;
        };
        if self.current_step().and_then(|s| s.setting_str("when_capped")) == Some("skip") {
            let mut record = self.record(Outcome::Skipped, Some("capped".into()));
            record.why = Some(why);
            self.actions.push(record);
            return Some(Next::Port("next"));
        }
        self.p.phase = Phase::Due;
        self.p.status = Status::Waiting;
        self.p.next_run_at = Some(until);
        self.p.due_at = Some(until);
        let mut record = self.record(Outcome::Pending, None);
        record.why = Some(why);
        self.actions.push(record);
        Some(Next::Stay)
    }

    /// Places the call through the provider and waits for its final status
    /// until [`CALL_OUTCOME_DEADLINE`].
    fn automatic_call(&mut self, script: Option<&str>) -> Next {
        let mobile = self.contact.mobile.clone().filter(|m| !m.trim().is_empty());
        let to = mobile.unwrap_or_else(|| self.contact.field_text("phone")).trim().to_owned();
        let script = render(script.unwrap_or_default(), &self.contact, Escape::None);
        let next = self.awaited(Effect::Call { to, script });
        if !matches!(self.p.phase, Phase::Effect { .. }) {
            return next; // held or skipped by contact pressure
        }
        let deadline = self.now + CALL_OUTCOME_DEADLINE;
        self.p.next_run_at = Some(deadline);
        if let Some(record) = self.actions.last_mut() {
            record.why = Some(format!("placed through the telephony provider; its final status is awaited until {deadline}"));
        }
        Next::Stay
    }

    fn manual(&mut self, due: Timestamp, owner: Option<String>, subject: Option<String>, why: Option<String>) -> Next {
        self.p.phase = Phase::Manual { due_at: due };
        self.p.status = Status::Waiting;
        self.p.next_run_at = None;
        self.p.due_at = Some(due);
        let mut record = self.record(Outcome::Pending, None);
        record.manual = true;
        record.owner = owner;
        record.subject = subject;
        record.why = why;
        self.actions.push(record);
        Next::Stay
    }

    /// `record_owner` (default), `user:ID`, or `field:NAME` (delegation).
    fn owner(&self, rule: Option<&str>) -> Option<String> {
        match rule.unwrap_or("record_owner") {
            "record_owner" => self.contact.owner.clone(),
            rule => match (rule.strip_prefix("user:"), rule.strip_prefix("field:")) {
                (Some(id), _) => Some(id.to_owned()),
                (_, Some(field)) => Some(self.contact.field_text(field)).filter(|o| !o.is_empty()).or(self.contact.owner.clone()),
                _ => None,
            },
        }
    }

    /// Whom a notification goes to: `user:ID` (a Waymark user, by id or
    /// email, looked up by the shell), or an address written out. The record
    /// owner (the default) becomes `user:OWNER`; with no owner it stays
    /// `record_owner`, which the shell refuses with the reason. `field:NAME`
    /// is the field's address, or the record owner when it is empty.
    fn notify_target(&self, rule: Option<&str>) -> String {
        let owner = || self.contact.owner.clone().filter(|o| !o.trim().is_empty()).map(|o| format!("user:{o}"));
        let rule = rule.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("record_owner");
        if rule == "record_owner" {
            return owner().unwrap_or_else(|| rule.to_owned());
        }
        match rule.strip_prefix("field:") {
            Some(field) => Some(self.contact.field_text(field).trim().to_owned())
                .filter(|v| !v.is_empty())
                .or_else(owner)
                .unwrap_or_else(|| "record_owner".into()),
            None => rule.to_owned(),
        }
    }

    fn send_email(&mut self, s: crate::core::kinds::SendEmailSettings) -> Next {
        let Some(to) = self.contact.email.clone().filter(|e| !e.trim().is_empty()) else {
            return self.missing_address("no_email", s.if_no_email.as_deref());
        };
        if let Some(refusal) = self.contact.refusal(Channel::Email) {
            return self.skipped(refusal);
        }
        if self.contact.is_undeliverable(&to) {
            return self.skipped("undeliverable");
        }
        let subject = render(s.subject.as_deref().unwrap_or_default(), &self.contact, Escape::None);
        if s.activation.as_deref() == Some("manual") {
            let owner = self.owner(None);
            return self.manual(self.now, owner, Some(subject), Some("a person reviews and sends this email".into()));
        }
        let timing = s.timing.as_deref().unwrap_or("immediate");
        if timing != "immediate" {
            let calendar = Calendar::from_settings(self.flow.settings.business_hours.as_ref());
            let calendar = if timing == "business_hours_any_day" { calendar.any_day() } else { calendar };
            let Some(due) = self.calendar_due(&calendar) else {
                self.fail("the business-hours calendar never opens");
                return Next::Stay;
            };
            if due.at > self.now {
                self.p.status = Status::Waiting;
                self.p.next_run_at = Some(due.at);
                self.p.due_at = Some(due.at);
                let mut record = self.record(Outcome::Pending, None);
                record.why = Some(format!("{timing}: {}", due.why));
                self.actions.push(record);
                return Next::Stay;
            }
        }
        let html = render(s.body.as_deref().unwrap_or_default(), &self.contact, Escape::Html);
        // The list is split as the marketer wrote it, then each entry is
        // filled: a merge value with commas stays one (invalid) address,
        // which the mailer refuses, instead of adding recipients.
        let addresses = |list: Option<String>| -> Vec<String> {
            let list = list.unwrap_or_default();
            list.split([',', ';'])
                .map(|entry| render(entry.trim(), &self.contact, Escape::None).trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect()
        };
        let (cc, bcc) = (addresses(s.cc), addresses(s.bcc));
        self.awaited(Effect::Email { to, subject, html, cc, bcc, attachments: s.attachments })
    }

    fn calendar_due(&self, calendar: &Calendar) -> Option<Due> {
        let rule = self.flow.settings.business_hours.as_ref().and_then(|b| b.zone).unwrap_or(CalendarZone::Contact);
        let (zone, source) = zone_for(self.contact.timezone.as_deref(), self.flow.settings.timezone_or_default(), rule);
        calendar.next_open(self.now, &zone).map(|due| Due { why: format!("{} in {source}", due.why), ..due })
    }

    fn wait(&mut self, step: &Step, s: &crate::core::kinds::WaitSettings) -> Next {
        let due = match s.mode.as_deref() {
            Some("duration") => {
                let length = Duration { amount: s.amount.unwrap_or(0), unit: s.unit.clone().unwrap_or(crate::core::flow::TimeUnit::Days) };
                let from = match self.actions.iter().rev().find(|a| a.visit + 1 == self.p.visit && a.done_at.is_some()) {
                    Some(previous) if previous.manual => format!("“{}” was completed by a person at {}", previous.step, self.now),
                    Some(previous) => format!("“{}” finished at {}", previous.step, self.now),
                    None => format!("the previous step finished at {}", self.now),
                };
                duration(&length).map(|d| Due { at: self.now + d, why: format!("{} after {from}", describe(&length)) })
            }
            Some("until") => s.at.as_deref().and_then(|at| at.parse::<Timestamp>().ok()).map(|at| Due { at, why: format!("until {at}") }),
            Some("time_of_day") => {
                let time = s.time.as_deref().and_then(|t| jiff::civil::Time::strptime("%H:%M", t).ok());
                let (zone, source) = zone_for(self.contact.timezone.as_deref(), self.flow.settings.timezone_or_default(), CalendarZone::Contact);
                time.and_then(|time| next_time_of_day(self.now, &zone, time, s.days.as_deref().unwrap_or_default()))
                    .map(|due| Due { why: format!("{} ({source})", due.why), ..due })
            }
            Some("business_hours") => {
                let calendar = Calendar::from_settings(self.flow.settings.business_hours.as_ref());
                self.calendar_due(&calendar)
            }
            _ => None,
        };
        let Some(due) = due else {
            self.fail(&format!("“{}” cannot work out how long to wait", step.id));
            return Next::Stay;
        };
        if due.at <= self.now {
            return self.completed(Some(due.why), "next");
        }
        self.p.phase = Phase::Waiting;
        self.p.status = Status::Waiting;
        self.p.next_run_at = Some(due.at);
        self.p.due_at = Some(due.at);
        let mut record = self.record(Outcome::Pending, None);
        record.why = Some(due.why);
        self.actions.push(record);
        Next::Stay
    }

    /// `updates` on any action step: field changes made when it is performed.
    fn apply_record_updates(&mut self) {
        let Some(step) = self.current_step() else { return };
        let Some(updates) = step.settings.get("updates").cloned() else { return };
        if let Ok(changes) = serde_json::from_value::<Vec<FieldChange>>(updates) {
            apply_changes(&mut self.contact, &changes);
        }
    }
}

/// A duration as elapsed time; `None` when unusable.
pub fn duration(length: &Duration) -> Option<SignedDuration> {
    length.as_seconds().and_then(|s| i64::try_from(s).ok()).map(SignedDuration::from_secs)
}

/// A `wait_until` matcher in words, for the timeline.
fn describe_matcher(matcher: &crate::core::engagement::Matcher) -> String {
    match (&matcher.event, &matcher.step, &matcher.name) {
        (Some(kind), _, Some(name)) if kind == "custom" => format!("event “{name}”"),
        (Some(kind), Some(step), _) => format!("{kind} ({step})"),
        (Some(kind), None, _) => kind.clone(),
        (None, _, _) => "its criteria hold".into(),
    }
}

pub(crate) fn describe(length: &Duration) -> String {
    let unit = length.unit.as_str();
    let unit = if length.amount == 1 { unit.trim_end_matches('s') } else { unit };
    format!("{} {unit}", length.amount)
}

/// A draw in [0, 100) from the participant's seed, the step and the visit.
fn draw(seed: u64, step: &str, visit: u32) -> f64 {
    // FNV-1a over the inputs, then splitmix64 to spread the bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in step.bytes().chain(visit.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

/// String values may use merge tags; other JSON is kept.
fn render_value(value: Value, contact: &Contact) -> Value {
    match value {
        Value::String(text) => Value::String(render(&text, contact, Escape::None)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| render_value(v, contact)).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, render_value(v, contact))).collect()),
        other => other,
    }
}

/// Applies field changes; returns what changed, for the timeline.
pub fn apply_changes(contact: &mut Contact, changes: &[FieldChange]) -> String {
    let mut done = Vec::new();
    for change in changes {
        let field = change.field.as_str();
        let value = change.value.clone().map(|v| render_value(v, contact));
        let number = |v: Option<Value>| v.as_ref().and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()));
        let current = contact.field(field);
        let new = match change.op.as_str() {
            "set" => value.unwrap_or(Value::Null),
            "clear" => Value::Null,
            "increment" | "decrement" => {
                let by = number(value).unwrap_or(1.0);
                let base = number(current).unwrap_or(0.0);
                let result = if change.op == "increment" { base + by } else { base - by };
                if result.fract() == 0.0 && result.abs() < 9e15 { Value::from(result as i64) } else { Value::from(result) }
            }
            "append" => match current {
                Some(Value::Array(mut items)) => {
                    items.push(value.unwrap_or(Value::Null));
                    Value::Array(items)
                }
                Some(Value::String(text)) if !text.is_empty() => {
                    Value::String(format!("{text}{}", value.as_ref().and_then(Value::as_str).unwrap_or_default()))
                }
                _ => Value::Array(vec![value.unwrap_or(Value::Null)]),
            },
            "remove" => match current {
                Some(Value::Array(items)) => Value::Array(items.into_iter().filter(|i| Some(i) != value.as_ref()).collect()),
                Some(other) if Some(&other) == value.as_ref() => Value::Null,
                Some(other) => other,
                None => Value::Null,
            },
            _ => continue,
        };
        done.push(format!("{field} {}", change.op));
        contact.set_field(field, new);
    }
    done.join(", ")
}

pub mod winner;

#[cfg(test)]
mod tests;
